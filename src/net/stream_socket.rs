//! The socket under a stream connection: TCP or Unix. One type, so a
//! connection, its transport and every protocol on it work the same over
//! both; each system call is the standard library's own.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;

use socket2::{SockRef, Socket};

use super::address::{Address, UnixAddress};

pub(crate) enum StreamSocket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl StreamSocket {
    /// Wraps a connected socket of the given kind.
    pub(crate) fn new(socket: Socket, unix: bool) -> StreamSocket {
        if unix {
            StreamSocket::Unix(socket.into())
        } else {
            StreamSocket::Tcp(socket.into())
        }
    }

    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            StreamSocket::Tcp(s) => s.set_nonblocking(on),
            StreamSocket::Unix(s) => s.set_nonblocking(on),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<Address> {
        match self {
            StreamSocket::Tcp(s) => s.local_addr().map(Address::Tcp),
            StreamSocket::Unix(s) => Ok(Address::Unix(local_unix_addr(s))),
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            StreamSocket::Tcp(s) => s.shutdown(how),
            StreamSocket::Unix(s) => s.shutdown(how),
        }
    }
}

/// A Unix socket's own address; the standard library's type hides an
/// abstract name behind a platform extension, socket2's shows all three
/// forms.
fn local_unix_addr(stream: &UnixStream) -> UnixAddress {
    match SockRef::from(stream).local_addr() {
        Ok(addr) => match Address::from_sock_addr(&addr) {
            Address::Unix(unix) => unix,
            Address::Tcp(_) => UnixAddress::Unnamed,
        },
        Err(_) => UnixAddress::Unnamed,
    }
}

impl AsFd for StreamSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            StreamSocket::Tcp(s) => s.as_fd(),
            StreamSocket::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for StreamSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Read for &StreamSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => (&*s).read(buf),
            StreamSocket::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &StreamSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => (&*s).write(buf),
            StreamSocket::Unix(s) => (&*s).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => (&*s).write_vectored(bufs),
            StreamSocket::Unix(s) => (&*s).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
