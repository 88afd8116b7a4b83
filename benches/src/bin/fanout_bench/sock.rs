//! Connecting a slow client with a small receive buffer.
//!
//! `SO_RCVBUF` must be set before `connect`: the window the client
//! advertises, and the window scale, are settled in the handshake, and a
//! buffer shrunk afterwards leaves the server free to send into a window
//! the client no longer has room for (the kernel then drops and the server
//! retransmits). `std` cannot set socket options before connecting and
//! this crate takes no dependency for it (the suite's library is plain
//! `std`), so the three calls are made directly on the C library that
//! `std` links anyway. That needs the Linux constants below, which are the
//! same on the architectures listed; elsewhere (and for an IPv6 address)
//! the client connects as usual and shrinks its buffer right after, which
//! [`connect_small_rcvbuf`] reports so the run can say so.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How a slow client's receive buffer was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RcvbufSet {
    /// Before connecting, as intended.
    BeforeConnect,
    /// After connecting (IPv6 or an architecture without the constants):
    /// the handshake advertised the default window.
    AfterConnect,
}

/// Connects to `addr` with `SO_RCVBUF` set to `bytes` (the kernel doubles
/// it for its own bookkeeping), waiting at most `timeout`.
pub fn connect_small_rcvbuf(
    addr: SocketAddr,
    bytes: u32,
    timeout: Duration,
) -> io::Result<(TcpStream, RcvbufSet)> {
    #[cfg(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        )
    ))]
    if let SocketAddr::V4(v4) = addr {
        return linux::connect_v4(v4, bytes, timeout).map(|s| (s, RcvbufSet::BeforeConnect));
    }
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    #[cfg(target_os = "linux")]
    linux::set_rcvbuf(&s, bytes)?;
    Ok((s, RcvbufSet::AfterConnect))
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::raw::{c_int, c_void};

    use std::net::TcpStream;

    // The generic Linux values (not those of mips, sparc, alpha or parisc).
    const SOL_SOCKET: c_int = 1;
    const SO_RCVBUF: c_int = 8;

    extern "C" {
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }

    /// Sets `SO_RCVBUF` on an open socket.
    pub fn set_rcvbuf(s: &impl AsRawFd, bytes: u32) -> io::Result<()> {
        let value = c_int::try_from(bytes).unwrap_or(c_int::MAX);
        // SAFETY: the descriptor is open (borrowed from its owner for the
        // call) and the option value is a live c_int whose size is passed.
        let rc = unsafe {
            setsockopt(
                s.as_raw_fd(),
                SOL_SOCKET,
                SO_RCVBUF,
                (&value as *const c_int).cast(),
                std::mem::size_of::<c_int>() as u32,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    pub use v4::connect_v4;

    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    mod v4 {
        use super::*;
        use std::net::SocketAddrV4;
        use std::time::Duration;

        const AF_INET: c_int = 2;
        const SOCK_STREAM: c_int = 1;
        const SOCK_CLOEXEC: c_int = 0o2_000_000;

        /// `struct sockaddr_in`: port and address in network byte order.
        #[repr(C)]
        struct SockaddrIn {
            family: u16,
            port: u16,
            addr: u32,
            zero: [u8; 8],
        }

        extern "C" {
            fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
            fn connect(fd: c_int, addr: *const SockaddrIn, len: u32) -> c_int;
        }

        /// A blocking IPv4 connect with `SO_RCVBUF` set first.
        pub fn connect_v4(
            addr: SocketAddrV4,
            bytes: u32,
            timeout: Duration,
        ) -> io::Result<TcpStream> {
            // SAFETY: plain system call; the result is checked.
            let fd = unsafe { socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a new socket that nothing else owns; the
            // stream closes it, also on every error path below.
            let stream = unsafe { TcpStream::from_raw_fd(fd) };
            set_rcvbuf(&stream, bytes)?;
            // A blocking connect honours SO_SNDTIMEO on Linux: this bounds
            // it (a zero timeout would mean "none", which set_write_timeout
            // refuses).
            stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
            let sa = SockaddrIn {
                family: AF_INET as u16,
                port: addr.port().to_be(),
                addr: u32::from(*addr.ip()).to_be(),
                zero: [0; 8],
            };
            // SAFETY: `sa` is a live, correctly laid out sockaddr_in whose
            // size is passed. The loader installs no signal handlers, so
            // EINTR (which would leave the connect going on in the
            // background) does not happen; it would be reported as an error.
            let rc = unsafe {
                connect(
                    stream.as_raw_fd(),
                    &sa,
                    std::mem::size_of::<SockaddrIn>() as u32,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            stream.set_write_timeout(None)?;
            Ok(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn connects_with_a_small_receive_buffer() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut c, how) =
            connect_small_rcvbuf(l.local_addr().unwrap(), 4096, Duration::from_secs(5)).unwrap();
        if cfg!(target_arch = "x86_64") || cfg!(target_arch = "aarch64") {
            assert_eq!(how, RcvbufSet::BeforeConnect);
        }
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // The kernel reports the doubled value it set.
        #[cfg(target_os = "linux")]
        assert_eq!(rcvbuf(&c), 2 * 4096);
    }

    /// `SO_RCVBUF` of a socket, as the kernel reports it.
    #[cfg(target_os = "linux")]
    fn rcvbuf(s: &TcpStream) -> i32 {
        use std::os::fd::AsRawFd;
        use std::os::raw::{c_int, c_void};
        extern "C" {
            fn getsockopt(
                fd: c_int,
                level: c_int,
                name: c_int,
                value: *mut c_void,
                len: *mut u32,
            ) -> c_int;
        }
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as u32;
        // SAFETY: the descriptor is open; value and len are live and len
        // holds value's size.
        let rc = unsafe {
            getsockopt(
                s.as_raw_fd(),
                1, // SOL_SOCKET
                8, // SO_RCVBUF
                (&mut value as *mut c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }
}
