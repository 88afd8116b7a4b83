//! Edge cases of `twill::stream` that the other stream tests leave out:
//! what a reader's buffer really holds in memory, writes after the
//! writing side is shut, a connection handed over while its reading is
//! paused, TLS clients that cannot connect, and streams used after their
//! reactor is gone.
//!

#[path = "stream_support/counting_alloc.rs"]
mod counting_alloc;
mod stream_support;

use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind};
use std::rc::Rc;
use std::time::Duration;

use counting_alloc::{live, LIVE};
use futures::channel::mpsc as async_mpsc;
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use stream_support::{pair, run, run_on, sleep, within, Server};
use twill::stream::{self, StreamReader, StreamWriter};
use twill::{Bytes, Protocol, Reactor, Transport};

// ------------------------------------------------------------ memory

/// Moves about `bytes` through the reactor's shared read buffer and
/// throws them away: every read of the reactor after this comes from a
/// fresh 64 KiB block.
async fn churn_read_buffer(
    flood_writer: &StreamWriter,
    flood_reader: &mut StreamReader,
    bytes: usize,
) {
    flood_writer.write(vec![b'.'; bytes]);
    let mut got = 0;
    while got < bytes {
        // `read` of everything takes the buffer without a split: the
        // flood connection itself keeps nothing.
        got += flood_reader.read(usize::MAX).await.unwrap().len();
    }
}

#[test]
fn an_idle_reader_that_read_everything_holds_no_read_block() {
    const IDLE: usize = 16;
    run(async {
        let mut server = Server::start();
        let (mut flood_reader, _fc, _fs, flood_writer) = pair(&mut server).await;
        churn_read_buffer(&flood_writer, &mut flood_reader, 256 * 1024).await;
        let mut idle = Vec::new();
        // Two connections before the count, so that every allocation made
        // once per reactor (the executor's queues growing...) is made.
        for round in 0..IDLE + 2 {
            let (client_reader, client_writer, mut server_reader, server_writer) =
                pair(&mut server).await;
            client_writer.write("hello\n");
            // A chat server's read: the whole line, and nothing is left.
            assert_eq!(&server_reader.read_line().await.unwrap()[..], b"hello\n");
            assert_eq!(server_reader.buffered(), 0);
            churn_read_buffer(&flood_writer, &mut flood_reader, 128 * 1024).await;
            idle.push((client_reader, client_writer, server_reader, server_writer));
            if round == 1 {
                // The baseline: two idle connections; the next are counted.
                LIVE.with(|l| l.set(0));
            }
        }
        let held = live();
        let per_connection = held / (IDLE as isize);
        assert!(
            per_connection < 16 * 1024,
            "each idle connection (both ends) holds {per_connection} bytes: \
             an empty reader buffer keeps its 64 KiB read block alive"
        );
        drop(idle);
    });
}

#[test]
fn a_reader_holding_a_partial_line_holds_only_that_line() {
    const IDLE: usize = 16;
    run(async {
        let mut server = Server::start();
        let (mut flood_reader, _fc, _fs, flood_writer) = pair(&mut server).await;
        churn_read_buffer(&flood_writer, &mut flood_reader, 256 * 1024).await;
        let mut idle = Vec::new();
        // Two connections before the count, so that every allocation made
        // once per reactor (the executor's queues growing...) is made.
        for round in 0..IDLE + 2 {
            let (client_reader, client_writer, mut server_reader, server_writer) =
                pair(&mut server).await;
            // Half a line: the server's read_line waits for the rest.
            client_writer.write("hel");
            let mut line = Box::pin(server_reader.read_line());
            assert!(futures::poll!(&mut line).is_pending());
            let _ = stream_support::poll_when_woken(&mut line).await;
            drop(line);
            assert_eq!(server_reader.buffered(), 3);
            churn_read_buffer(&flood_writer, &mut flood_reader, 128 * 1024).await;
            idle.push((client_reader, client_writer, server_reader, server_writer));
            if round == 1 {
                LIVE.with(|l| l.set(0));
            }
        }
        let held = live();
        let per_connection = held / (IDLE as isize);
        assert!(
            per_connection < 16 * 1024,
            "each connection with 3 unread bytes holds {per_connection} bytes"
        );
        drop(idle);
    });
}

#[test]
fn finished_connections_free_what_they_held() {
    const ROUNDS: usize = 64;
    run(async {
        let done = Rc::new(Cell::new(0usize));
        let (done_tx, mut done_rx) = async_mpsc::unbounded::<()>();
        let counter = done.clone();
        let port = stream::start_server("127.0.0.1:0", move |mut reader, writer| {
            let counter = counter.clone();
            let done_tx = done_tx.clone();
            async move {
                let line = reader.read_line().await.unwrap();
                writer.write(line);
                writer.close();
                let _ = writer.wait_closed().await;
                counter.set(counter.get() + 1);
                let _ = done_tx.unbounded_send(());
            }
        })
        .unwrap();
        let addr = port.host().tcp().unwrap();
        let one = |addr| async move {
            let (mut reader, writer) = stream::open_connection(addr).await.unwrap();
            writer.write("ping\n");
            assert_eq!(&reader.read_line().await.unwrap()[..], b"ping\n");
            // The server's close.
            assert!(reader.read(10).await.unwrap().is_empty());
            drop(reader);
            writer.close();
            let _ = writer.wait_closed().await;
        };
        for _ in 0..4 {
            one(addr).await;
            done_rx.next().await.unwrap();
        }
        // Let the tasks that just finished be dropped.
        let _ = sleep(Duration::from_millis(1)).await;
        let before = live();
        for _ in 0..ROUNDS {
            one(addr).await;
            done_rx.next().await.unwrap();
        }
        let _ = sleep(Duration::from_millis(1)).await;
        let grown = live() - before;
        assert!(
            grown < (ROUNDS * 256) as isize,
            "{ROUNDS} finished connections left {grown} bytes allocated"
        );
    });
}

// ------------------------------------------------------- AsyncWrite

#[test]
fn async_write_after_close_is_an_error() {
    run(async {
        let mut server = Server::start();
        let (_cr, mut client_writer, mut server_reader, _sw) = pair(&mut server).await;
        client_writer.write_all(b"before\n").await.unwrap();
        AsyncWriteExt::close(&mut client_writer).await.unwrap();
        let after = client_writer.write_all(b"after\n").await;
        // What the server got: only what came before the FIN.
        let mut got = Vec::new();
        loop {
            let bytes = server_reader.read(1024).await.unwrap();
            if bytes.is_empty() {
                break;
            }
            got.extend_from_slice(&bytes);
        }
        assert_eq!(got, b"before\n");
        let err = after.expect_err("`after\\n` was never sent: the write must say so");
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    });
}

#[test]
fn drain_after_write_eof_reports_the_writes_it_drops() {
    run(async {
        let mut server = Server::start();
        let (_cr, client_writer, _sr, _sw) = pair(&mut server).await;
        client_writer.write_eof();
        client_writer.write("lost\n");
        assert!(
            client_writer.drain().await.is_err(),
            "a write after write_eof was dropped, and drain says all is well"
        );
    });
}

// --------------------------------------------------------- hand_over

/// Pauses reading when connected (it has some checking to do first) and
/// gives its transport to the test, which hands the connection over to
/// streams later, from outside any callback.
struct PausesFirst(async_mpsc::UnboundedSender<Transport>);

impl Protocol for PausesFirst {
    fn connection_made(&mut self, transport: &Transport) {
        transport.pause_reading();
        let _ = self.0.unbounded_send(transport.clone());
    }

    fn data_received(&mut self, _data: Bytes) {
        unreachable!("reading is paused");
    }
}

#[test]
fn a_connection_handed_over_while_paused_is_read() {
    run(async {
        let (tx, mut transports) = async_mpsc::unbounded();
        let port = twill::reactor()
            .listen_tcp("127.0.0.1:0", move |_| PausesFirst(tx.clone()))
            .unwrap();
        let (_client_reader, client_writer) = stream::open_connection(port.host()).await.unwrap();
        client_writer.write("hello\n");
        let transport = transports.next().await.unwrap();
        let (mut reader, _writer) = stream::hand_over(&transport, b"").unwrap();
        let line = within(Duration::from_secs(1), Box::pin(reader.read_line())).await;
        let line = line.expect("the handed-over reader never got the line: reading stays paused");
        assert_eq!(&line.unwrap()[..], b"hello\n");
    });
}

/// Hands its connection over to streams at once, from `connection_made`.
struct HandsOverAtOnce(async_mpsc::UnboundedSender<io::Result<(StreamReader, StreamWriter)>>);

impl Protocol for HandsOverAtOnce {
    fn connection_made(&mut self, transport: &Transport) {
        let _ = self.0.unbounded_send(stream::hand_over(transport, b""));
    }

    fn data_received(&mut self, _data: Bytes) {}
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use twill::tls::{config, TlsAcceptor, TlsConnector};

    pub struct Certs {
        pub acceptor: TlsAcceptor,
        pub connector: TlsConnector,
    }

    /// A server certificate for `localhost` and a connector that trusts
    /// it.
    pub fn certs() -> Certs {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let certs = config::certs_from_pem(made.cert.pem().as_bytes()).unwrap();
        let key = config::key_from_pem(made.signing_key.serialize_pem().as_bytes()).unwrap();
        Certs {
            acceptor: TlsAcceptor::new(config::server_config(certs.clone(), key).unwrap()),
            connector: TlsConnector::new(config::client_config_trusting(certs).unwrap()),
        }
    }

    #[test]
    fn hand_over_works_over_tls() {
        run(async {
            let server = certs();
            let (tx, mut handed) = async_mpsc::unbounded();
            let port = twill::reactor()
                .listen_tls("127.0.0.1:0", server.acceptor, move |_| {
                    HandsOverAtOnce(tx.clone())
                })
                .unwrap();
            let (_reader, _writer) =
                stream::open_tls_connection(port.host(), "localhost", server.connector)
                    .await
                    .unwrap();
            let result = handed.next().await.unwrap();
            assert!(result.is_ok(), "hand_over over TLS: {:?}", result.map(drop));
        });
    }

    #[test]
    fn open_tls_connection_to_an_untrusted_server_fails_and_its_handler_never_runs() {
        run(async {
            let server = certs();
            let other = certs();
            let ran = Rc::new(Cell::new(false));
            let flag = ran.clone();
            let port = twill::reactor()
                .listen_tls(
                    "127.0.0.1:0",
                    server.acceptor,
                    stream::serve(move |_reader, _writer| {
                        flag.set(true);
                        async {}
                    }),
                )
                .unwrap();
            let result =
                stream::open_tls_connection(port.host(), "localhost", other.connector).await;
            let err = io::Error::from(result.map(drop).unwrap_err());
            assert!(
                err.to_string().to_lowercase().contains("certificate"),
                "the error says why: {err}"
            );
            // The server's side fails too; let its alert reach it.
            let _ = sleep(Duration::from_millis(50)).await;
            assert!(!ran.get(), "the handler ran for a failed handshake");
        });
    }

    #[test]
    fn open_tls_connection_to_a_silent_server_fails_at_the_handshake_timeout() {
        run(async {
            let client = certs();
            // Accepts the TCP connection and never answers.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let connector = client
                .connector
                .handshake_timeout(Duration::from_millis(200));
            let result = stream::open_tls_connection(addr, "localhost", connector).await;
            let err = io::Error::from(result.map(drop).unwrap_err());
            assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
            drop(listener);
        });
    }

    #[test]
    fn open_tls_connection_to_a_plain_server_that_closes_fails() {
        run(async {
            let client = certs();
            let port = stream::start_server("127.0.0.1:0", |_reader, _writer| async {}).unwrap();
            let result =
                stream::open_tls_connection(port.host(), "localhost", client.connector).await;
            assert!(result.is_err());
        });
    }

    /// Reads a name line with callbacks, answers it, then gives the
    /// connection to a task that upper-cases every line after it.
    #[derive(Default)]
    struct Greeting {
        transport: Option<Transport>,
        pending: Vec<u8>,
    }

    impl Protocol for Greeting {
        fn connection_made(&mut self, transport: &Transport) {
            self.transport = Some(transport.clone());
        }

        fn data_received(&mut self, data: Bytes) {
            self.pending.extend_from_slice(&data);
            let Some(end) = self.pending.iter().position(|&b| b == b'\n') else {
                return;
            };
            let name: Vec<u8> = self.pending.drain(..=end).collect();
            let transport = self.transport.as_ref().unwrap();
            transport.write(format!("hello, {}", String::from_utf8_lossy(&name)));
            let (mut reader, writer) = stream::hand_over(transport, &self.pending).unwrap();
            twill::spawn(async move {
                while let Ok(line) = reader.read_line().await {
                    if line.is_empty() {
                        break;
                    }
                    writer.write(line.to_ascii_uppercase());
                }
            });
        }
    }

    #[test]
    fn a_protocol_hands_a_tls_connection_to_a_task_that_reads_and_writes_plaintext() {
        run(async {
            let server = certs();
            let port = twill::reactor()
                .listen_tls("127.0.0.1:0", server.acceptor, |_| Greeting::default())
                .unwrap();
            let (mut reader, writer) =
                stream::open_tls_connection(port.host(), "localhost", server.connector)
                    .await
                    .unwrap();
            // The greeting and the first line in one record: the task gets
            // the line the protocol read past its greeting.
            writer.write("ada\nfirst\n");
            assert_eq!(reader.read_line().await.unwrap(), "hello, ada\n");
            assert_eq!(reader.read_line().await.unwrap(), "FIRST\n");
            writer.write("second\n");
            assert_eq!(reader.read_line().await.unwrap(), "SECOND\n");
            writer.write_eof();
            assert_eq!(reader.read_line().await.unwrap(), "");
        });
    }
}

// ------------------------------------------------------ the reactor's end

#[test]
fn streams_that_outlive_their_reactor_see_the_connection_gone() {
    let reactor = Reactor::new().unwrap();
    type Ends = (StreamReader, StreamWriter, StreamReader, StreamWriter);
    let kept: Rc<RefCell<Option<Ends>>> = Rc::default();
    let slot = kept.clone();
    run_on(&reactor, async move {
        let mut server = Server::start();
        // Both ends kept past the reactor, the connection open.
        *slot.borrow_mut() = Some(pair(&mut server).await);
    });
    drop(reactor);
    let (mut reader, writer, server_reader, server_writer) = kept.borrow_mut().take().unwrap();
    drop((server_reader, server_writer));
    // Nothing panics when used, and dropping them is quiet.
    writer.write("after\n");
    let read = reader.read(10).now_or_never();
    let closing = writer.is_closing();
    drop(reader);
    drop(writer);
    assert!(
        read.is_some(),
        "a read of a connection whose reactor is gone waits forever"
    );
    assert!(
        closing,
        "the writer of a connection whose reactor is gone is not closing"
    );
}

// ------------------------------------------------- the reader's limit

#[test]
fn a_cancelled_large_read_leaves_the_limit_in_force() {
    const LIMIT: usize = 4 * 1024;
    run(async {
        let mut server = Server::start();
        let (_cr, client_writer, mut server_reader, _sw) = pair(&mut server).await;
        server_reader.set_limit(LIMIT);
        // A read of 8 MiB that a timer wins against before any byte came.
        let read = Box::pin(server_reader.read_exact(8 << 20));
        assert!(within(Duration::from_millis(10), read).await.is_none());
        // The task reads nothing more; the peer sends 12 MiB.
        client_writer.write(vec![0u8; 12 << 20]);
        let stuck = twill::defer::Deferred::new();
        let resolver = stuck.resolver();
        twill_test_support::pressure::when_stuck(client_writer.transport().clone(), move || {
            resolver.callback(())
        });
        // Bounded: with everything read there is nothing stuck.
        let _ = within(Duration::from_secs(3), stuck).await;
        let held = server_reader.buffered();
        assert!(
            held <= LIMIT + 64 * 1024,
            "a reader with a limit of {LIMIT} and no read waiting holds {held} bytes"
        );
    });
}

// ----------------------------------------------------- set_protocol

/// Sends what it receives, tagged, to the test; sets its flag when
/// dropped.
struct Tape {
    tag: &'static str,
    seen: async_mpsc::UnboundedSender<(&'static str, Bytes)>,
    dropped: Rc<Cell<bool>>,
}

impl Protocol for Tape {
    fn data_received(&mut self, data: Bytes) {
        let _ = self.seen.unbounded_send((self.tag, data));
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        self.dropped.set(true);
    }
}

/// Gives its connection to tape `a`, then at once to tape `b`, in
/// `connection_made`.
struct SwitchesTwice {
    seen: async_mpsc::UnboundedSender<(&'static str, Bytes)>,
    a_dropped: Rc<Cell<bool>>,
}

impl Protocol for SwitchesTwice {
    fn connection_made(&mut self, transport: &Transport) {
        let tape = |tag, dropped: &Rc<Cell<bool>>| {
            Box::new(Tape {
                tag,
                seen: self.seen.clone(),
                dropped: dropped.clone(),
            })
        };
        transport.set_protocol(tape("a", &self.a_dropped)).unwrap();
        transport.set_protocol(tape("b", &Rc::default())).unwrap();
    }

    fn data_received(&mut self, _data: Bytes) {
        unreachable!("replaced in connection_made");
    }
}

#[test]
fn set_protocol_twice_in_one_callback_gives_the_connection_to_the_last() {
    run(async {
        let (seen_tx, mut seen) = async_mpsc::unbounded();
        let a_dropped = Rc::new(Cell::new(false));
        let flag = a_dropped.clone();
        let port = twill::reactor()
            .listen_tcp("127.0.0.1:0", move |_| SwitchesTwice {
                seen: seen_tx.clone(),
                a_dropped: flag.clone(),
            })
            .unwrap();
        let (_reader, writer) = stream::open_connection(port.host()).await.unwrap();
        writer.write("x");
        let (tag, data) = seen.next().await.unwrap();
        assert_eq!((tag, &data[..]), ("b", &b"x"[..]));
        assert!(
            a_dropped.get(),
            "the protocol replaced in between was dropped"
        );
    });
}

/// Whose drop gives the connection to yet another protocol (a protocol
/// handing over as it is torn down).
struct HandsOnWhenDropped {
    transport: Option<Transport>,
    next: Option<Box<dyn Protocol>>,
    result: Rc<RefCell<Option<io::Result<()>>>>,
}

impl Protocol for HandsOnWhenDropped {
    fn data_received(&mut self, _data: Bytes) {}
}

impl Drop for HandsOnWhenDropped {
    fn drop(&mut self) {
        if let (Some(transport), Some(next)) = (self.transport.take(), self.next.take()) {
            *self.result.borrow_mut() = Some(transport.set_protocol(next));
        }
    }
}

/// Gives its connection to a `HandsOnWhenDropped` in `connection_made`.
struct Outer {
    seen: async_mpsc::UnboundedSender<(&'static str, Bytes)>,
    result: Rc<RefCell<Option<io::Result<()>>>>,
}

impl Protocol for Outer {
    fn connection_made(&mut self, transport: &Transport) {
        let tape = |tag| {
            Box::new(Tape {
                tag,
                seen: self.seen.clone(),
                dropped: Rc::default(),
            })
        };
        transport
            .set_protocol(Box::new(HandsOnWhenDropped {
                transport: Some(transport.clone()),
                next: Some(tape("from drop")),
                result: self.result.clone(),
            }))
            .unwrap();
        // Replaced in turn: its drop asks for "from drop".
        transport.set_protocol(tape("last")).unwrap();
    }

    fn data_received(&mut self, _data: Bytes) {}
}

#[test]
fn set_protocol_from_a_replaced_protocols_drop_is_not_lost_silently() {
    run(async {
        let (seen_tx, mut seen) = async_mpsc::unbounded();
        let result = Rc::new(RefCell::new(None));
        let slot = result.clone();
        let port = twill::reactor()
            .listen_tcp("127.0.0.1:0", move |_| Outer {
                seen: seen_tx.clone(),
                result: slot.clone(),
            })
            .unwrap();
        let (_reader, writer) = stream::open_connection(port.host()).await.unwrap();
        writer.write("x");
        let (tag, _) = seen.next().await.unwrap();
        let result = result.borrow_mut().take().expect("the drop ran");
        assert!(
            result.is_err() || tag == "from drop",
            "set_protocol from the drop said Ok, and the connection went to {tag:?}"
        );
    });
}
