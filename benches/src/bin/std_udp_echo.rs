//! `std_udp_echo`: the simplest UDP echo there is, the ceiling for
//! `udp_bench`.
//!
//! ```text
//! std_udp_echo [127.0.0.1:0]
//! ```
//!
//! One blocking `std::net::UdpSocket` on one thread: `recv_from` into a
//! reused buffer, `send_to` the sender. No readiness polling at all (the
//! thread sleeps in `recvfrom`), so it costs two system calls per datagram
//! and nothing else. Prints `listening on ADDR` to stderr when bound; runs
//! until killed.

use std::io;
use std::net::UdpSocket;

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let socket = UdpSocket::bind(&addr)?;
    eprintln!("listening on {}", socket.local_addr()?);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        // A datagram the kernel cannot queue is a datagram lost, as on the
        // wire; the echo goes on.
        let _ = socket.send_to(&buf[..n], from);
    }
}
