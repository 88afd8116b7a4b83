//! `tokio_rustls_echo`: the TLS echo server a tokio user would write, as
//! the baseline for twill's `tls_echo_server`.
//!
//! ```text
//! cargo run --release -p twill-bench --example tokio_rustls_echo -- ADDR CERT KEY [--bulk] [--plain]
//! ```
//!
//! tokio-rustls on the same rustls (0.23, the `ring` provider) and the
//! same server configuration as twill's (`ServerConfig` with rustls's
//! defaults, TLS 1.2 and 1.3, no client authentication), on tokio's
//! current-thread runtime, as `tokio_echo current_thread`: one task per
//! connection (TCP_NODELAY), which completes the handshake
//! (`TlsAcceptor::accept`), then reads into its own 16 KiB buffer and
//! writes back what it read with `write_all`; at the end of the client's
//! stream it sends `close_notify` (`shutdown`).
//!
//! `--bulk` sends instead: after the handshake, 16 KiB `write_all`s for as
//! long as the connection lasts, each an 8-byte big-endian count and
//! 16,376 fixed bytes (as twill's `tls_echo_server --bulk`). `--plain` is
//! the same without TLS (`CERT` and `KEY` are then not read).
//!
//! When ready it prints `listening on ADDR` to stderr. It runs until killed.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use twill_bench::{bulk_body, BULK_CHUNK, BULK_COUNT};

const BUFFER: usize = 16 * 1024;

#[derive(Clone, Copy)]
enum Mode {
    Echo,
    Bulk,
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn bulk<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut chunk = Vec::with_capacity(BULK_CHUNK);
    chunk.extend_from_slice(&[0; BULK_COUNT]);
    chunk.extend_from_slice(&bulk_body());
    for count in 0u64.. {
        chunk[..BULK_COUNT].copy_from_slice(&count.to_be_bytes());
        stream.write_all(&chunk).await?;
    }
    Ok(())
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, mode: Mode) -> io::Result<()> {
    match mode {
        Mode::Echo => echo(stream).await,
        Mode::Bulk => bulk(stream).await,
    }
}

async fn handle(stream: TcpStream, tls: Option<TlsAcceptor>, mode: Mode) -> io::Result<()> {
    stream.set_nodelay(true)?;
    match tls {
        Some(acceptor) => serve(acceptor.accept(stream).await?, mode).await,
        None => serve(stream, mode).await,
    }
}

async fn listen(addr: String, tls: Option<TlsAcceptor>, mode: Mode) -> io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = handle(stream, tls, mode).await;
        });
    }
}

fn server_config(cert: &str, key: &str) -> io::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{cert}: {e}")))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{key}: {e}")))?;
    ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(tokio_rustls::rustls::ALL_VERSIONS)
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: tokio_rustls_echo ADDR CERT KEY [--bulk] [--plain]",
        )
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let mode = if flag("--bulk") {
        Mode::Bulk
    } else {
        Mode::Echo
    };
    let plain = flag("--plain");
    if args
        .iter()
        .any(|a| a.starts_with("--") && !matches!(a.as_str(), "--bulk" | "--plain"))
    {
        return Err(usage());
    }
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [addr, cert, key] = positional[..] else {
        return Err(usage());
    };
    let tls = match plain {
        true => None,
        false => Some(TlsAcceptor::from(Arc::new(server_config(cert, key)?))),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(listen(addr.clone(), tls, mode))
}
