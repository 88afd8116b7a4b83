//! `tokio_udp_echo`: the UDP echo server a tokio user would write, as a
//! baseline for `udp_bench`.
//!
//! ```text
//! cargo run --release -p twill-bench --example tokio_udp_echo -- [127.0.0.1:0]
//! ```
//!
//! One `UdpSocket` on the current-thread runtime (one thread, like twill),
//! a loop of `recv_from` into a 64 KiB buffer and `send_to` the sender.
//! When bound it prints `listening on ADDR` to stderr. It runs until killed.

use std::io;

use tokio::net::UdpSocket;

async fn serve(addr: String) -> io::Result<()> {
    let socket = UdpSocket::bind(&addr).await?;
    eprintln!("listening on {}", socket.local_addr()?);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        // A datagram the kernel cannot queue is lost, as on the wire; the
        // sender resends it.
        let _ = socket.send_to(&buf[..n], from).await;
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr))
}
