//! Connecting a slow client with a small receive buffer.
//!
//! `SO_RCVBUF` must be set before `connect`: the window the client
//! advertises, and the window scale, are settled in the handshake, and a
//! buffer shrunk afterwards leaves the server free to send into a window
//! the client no longer has room for (the kernel then drops and the server
//! retransmits). `std` cannot set socket options before connecting;
//! `socket2` (twill's own dependency for the same job) can.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Connects to `addr` with `SO_RCVBUF` set to `bytes` (the kernel doubles
/// it for its own bookkeeping), waiting at most `timeout`.
pub fn connect_small_rcvbuf(
    addr: SocketAddr,
    bytes: usize,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_recv_buffer_size(bytes)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}
