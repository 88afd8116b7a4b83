//! `twill::stream` in the `futures` I/O ecosystem, over real loopback
//! sockets: a `StreamReader` read through `AsyncReadExt` and
//! `AsyncBufReadExt` (to the end, by lines, mixed with its own reads), a
//! `StreamWriter` through `AsyncWriteExt` (with `close` as a half-close),
//! `futures::io::copy` moving 256 MiB between two twill connections, and a
//! `futures-rustls` client running over a stream pair against twill's own
//! TLS server.

mod stream_support;

use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::pin::Pin;
use std::time::Instant;

use futures::channel::mpsc as async_mpsc;
use futures::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use futures::StreamExt;
use stream_support::{assert_pattern, pattern, read_to_end, run, send, Ending, Peer, Server};
use twill::stream::{self, StreamReader};

#[test]
fn read_to_end_reads_everything_the_peer_sent_until_its_eof() {
    const SIZE: usize = 1 << 20;
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, &pattern(0, SIZE));
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = server.accept().await;
        let mut all = Vec::new();
        assert_eq!(reader.read_to_end(&mut all).await.unwrap(), SIZE);
        assert_pattern(0, &all);
        peer.outcome().await;
    });
}

#[test]
fn lines_gives_each_line_without_its_ending_and_the_last_unfinished_one() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"first\nsecond\r\n");
            send(&mut socket, b"thi");
            send(&mut socket, b"rd");
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (reader, _writer) = server.accept().await;
        let lines: Vec<String> = reader.lines().map(Result::unwrap).collect().await;
        assert_eq!(lines, ["first", "second", "third"]);
        peer.outcome().await;
    });
}

#[test]
fn buffered_reads_mix_with_the_readers_own_reads_without_losing_a_byte() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"head:one\ntwo\nthree");
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = server.accept().await;
        let buffered = reader.fill_buf().await.unwrap();
        assert!(buffered.starts_with(b"head:"), "{buffered:?}");
        Pin::new(&mut reader).consume(5);
        assert_eq!(reader.buffered(), 13, "taken by fill_buf, not yet consumed");
        assert_eq!(reader.read_line().await.unwrap(), "one\n");

        let mut two = [0; 2];
        AsyncReadExt::read_exact(&mut reader, &mut two)
            .await
            .unwrap();
        assert_eq!(&two, b"tw");
        let mut rest = String::new();
        reader.read_line_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "o\n");
        assert_eq!(reader.read_exact(5).await.unwrap(), "three");
        assert_eq!(reader.fill_buf().await.unwrap(), b"", "at the end");
        assert!(reader.at_eof());
        peer.outcome().await;
    });
}

/// `AsyncBufReadExt::read_line` under the name of the reader's own
/// `read_line`.
trait ReadLineToString {
    async fn read_line_to_string(&mut self, line: &mut String) -> io::Result<usize>;
}

impl ReadLineToString for StreamReader {
    async fn read_line_to_string(&mut self, line: &mut String) -> io::Result<usize> {
        AsyncBufReadExt::read_line(self, line).await
    }
}

#[test]
fn write_all_then_close_is_a_half_close_the_peer_can_still_answer() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            let request = read_to_end(&mut socket);
            send(&mut socket, b"the answer");
            socket.shutdown(Shutdown::Write).unwrap();
            (request, read_to_end(&mut socket))
        });
        let (mut reader, mut writer) = server.accept().await;
        writer.write_all(b"a request").await.unwrap();
        writer.flush().await.unwrap();
        AsyncWriteExt::close(&mut writer).await.unwrap();
        assert!(!writer.is_closing(), "only the writing side is shut");

        let mut answer = Vec::new();
        reader.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"the answer");
        drop((reader, writer));
        let ((request, request_end), (after, after_end)) = peer.outcome().await;
        assert_eq!(
            (&request[..], request_end),
            (&b"a request"[..], Ending::Eof)
        );
        assert_eq!((after, after_end), (Vec::new(), Ending::Eof));
    });
}

#[test]
fn writing_through_async_write_after_the_peer_reset_fails_with_its_error() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |socket, _| stream_support::reset(socket));
        let (mut reader, mut writer) = server.accept().await;
        let mut all = Vec::new();
        let err = reader.read_to_end(&mut all).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        let err = writer.write_all(b"too late").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        peer.outcome().await;
    });
}

/// A stream of pseudo-random bytes that repeats every [`PERIOD`] bytes:
/// cheap to make in a debug build, hashed on both ends.
const PERIOD: usize = 65_521;

/// Two periods of the stream, so that any period-long piece of it is one
/// slice.
fn noise_block() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let period: Vec<u8> = (0..PERIOD)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    period.repeat(2)
}

/// Byte count and SHA-256 of what went through.
type Tally = (u64, Vec<u8>);

#[test]
fn futures_copy_moves_256_mib_between_two_twill_connections() {
    const SIZE: u64 = 256 << 20;
    let started = Instant::now();
    run(async {
        // B checks what arrives and reports it.
        let (report, mut reports) = async_mpsc::unbounded::<Tally>();
        let b = stream::start_server("127.0.0.1:0", move |mut reader, _writer| {
            let report = report.clone();
            async move {
                let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
                let mut count = 0u64;
                loop {
                    let chunk = reader.read(256 * 1024).await.unwrap();
                    if chunk.is_empty() {
                        break;
                    }
                    digest.update(&chunk);
                    count += chunk.len() as u64;
                }
                let _ = report.unbounded_send((count, digest.finish().as_ref().to_vec()));
            }
        })
        .unwrap();

        // A copies its client's bytes to B.
        let b_addr = b.host().tcp().unwrap();
        let a = stream::start_server("127.0.0.1:0", move |reader, _writer| async move {
            let (_from_b, mut to_b) = stream::open_connection(b_addr).await.unwrap();
            let copied = futures::io::copy(reader, &mut to_b).await.unwrap();
            assert_eq!(copied, SIZE);
            AsyncWriteExt::close(&mut to_b).await.unwrap();
        })
        .unwrap();

        let client = Peer::connect(a.host().tcp().unwrap(), |mut socket, _| {
            let block = noise_block();
            let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
            let mut sent = 0u64;
            while sent < SIZE {
                let at = (sent % PERIOD as u64) as usize;
                let len = (SIZE - sent).min(PERIOD as u64) as usize;
                let piece = &block[at..at + len];
                send(&mut socket, piece);
                digest.update(piece);
                sent += len as u64;
            }
            socket.shutdown(Shutdown::Write).unwrap();
            let (rest, ending) = read_to_end(&mut socket);
            assert_eq!((rest, ending), (Vec::new(), Ending::Eof));
            (sent, digest.finish().as_ref().to_vec())
        });

        let arrived = reports.next().await.unwrap();
        let sent = client.outcome().await;
        assert_eq!(arrived.0, SIZE);
        assert_eq!(arrived, sent, "what B received is not what the client sent");
    });
    eprintln!(
        "256 MiB copied through two twill connections in {:?}",
        started.elapsed()
    );
}

#[test]
fn futures_copy_buf_moves_bytes_straight_from_the_readers_buffer() {
    const SIZE: usize = 16 << 20;
    run(async {
        let mut sink = Server::start();
        let a = stream::start_server("127.0.0.1:0", {
            let sink_addr = sink.addr();
            move |reader, _writer| async move {
                let (_from_sink, mut to_sink) = stream::open_connection(sink_addr).await.unwrap();
                let copied = futures::io::copy_buf(reader, &mut to_sink).await.unwrap();
                assert_eq!(copied, SIZE as u64);
            }
        })
        .unwrap();
        let client = Peer::connect(a.host().tcp().unwrap(), |mut socket, _| {
            send(&mut socket, &pattern(0, SIZE));
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = sink.accept().await;
        let mut at = 0;
        loop {
            let chunk = reader.read(256 * 1024).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            assert_pattern(at, &chunk);
            at += chunk.len() as u64;
        }
        assert_eq!(at, SIZE as u64);
        client.outcome().await;
    });
}

/// A TLS client crate, written against the `futures` traits, over a
/// stream pair.
#[cfg(feature = "tls")]
mod over_tls {
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use futures::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use twill::stream::{self, StreamReader, StreamWriter};

    use super::run;
    use crate::tls_support::{Noise, Pki};

    /// A stream pair as one byte stream both ways, for crates that want a
    /// single `AsyncRead + AsyncWrite` (a TLS client, say).
    struct Duplex {
        reader: StreamReader,
        writer: StreamWriter,
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.reader).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.writer).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.writer).poll_flush(cx)
        }

        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.writer).poll_close(cx)
        }
    }

    #[test]
    fn a_futures_rustls_client_over_a_stream_pair_talks_to_twills_tls_server() {
        const SIZE: usize = 1 << 20;
        let pki = Pki::new("stream interop CA");
        let (server_config, client_config) = (pki.server_config(), pki.client_config());
        run(async move {
            // The server's streams run over twill's TLS: it greets, then
            // echoes until the client's close_notify.
            let port = twill::reactor()
                .listen_tls(
                    "127.0.0.1:0",
                    server_config,
                    stream::serve(|reader, mut writer| async move {
                        assert!(writer.transport().tls().is_some());
                        writer.write("hello over TLS\n");
                        futures::io::copy(reader, &mut writer).await.unwrap();
                    }),
                )
                .unwrap();

            let (reader, writer) = stream::open_connection(port.host()).await.unwrap();
            let connector = futures_rustls::TlsConnector::from(Arc::clone(&client_config));
            let name = "localhost".try_into().unwrap();
            let tls = connector
                .connect(name, Duplex { reader, writer })
                .await
                .expect("TLS handshake over the stream pair");
            let (mut tls_reader, mut tls_writer) = tls.split();
            let mut tls_reader = futures::io::BufReader::new(&mut tls_reader);

            let mut greeting = String::new();
            tls_reader.read_line(&mut greeting).await.unwrap();
            assert_eq!(greeting, "hello over TLS\n");

            let sent = Noise::new(7).bytes(SIZE);
            let sending = async {
                tls_writer.write_all(&sent).await.unwrap();
                // close_notify, then the FIN.
                tls_writer.close().await.unwrap();
            };
            let mut echoed = Vec::new();
            let receiving = tls_reader.read_to_end(&mut echoed);
            let ((), received) = futures::join!(sending, receiving);
            assert_eq!(received.unwrap(), SIZE);
            assert!(echoed == sent, "the echo differs from what was sent");
        });
    }
}

#[cfg(feature = "tls")]
#[path = "tls_support/mod.rs"]
mod tls_support;
