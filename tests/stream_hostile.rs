//! `twill::stream` and `Transport::set_protocol` against hostile peers
//! and careless code: a line far over the limit, a delimiter in one-byte
//! pieces, a reset during `drain`, many short connections; `drain` after
//! `write_eof`; protocol changes that panic or come from a timer.

#[path = "stream_support/counting_alloc.rs"]
mod counting_alloc;
mod stream_support;

use std::io::ErrorKind;
use std::time::Duration;

use counting_alloc::live;
use futures::channel::mpsc as async_mpsc;
use futures::{AsyncWriteExt, StreamExt};
use stream_support::{pair, run, sleep, within, Peer, Server};
use twill::stream::{self, ReadError, StreamReader};
use twill::{Bytes, Protocol, Transport};

/// Reads until the end of the stream; what came.
async fn read_all(reader: &mut StreamReader) -> Result<Vec<u8>, ReadError> {
    let mut got = Vec::new();
    loop {
        let bytes = reader.read(usize::MAX).await?;
        if bytes.is_empty() {
            return Ok(got);
        }
        got.extend_from_slice(&bytes);
    }
}

// ------------------------------------------------------ drain, write_eof

#[test]
fn drain_after_write_eof_waits_for_what_was_written_before_it() {
    run(async {
        let mut server = Server::start();
        let (_cr, client_writer, mut server_reader, _sw) = pair(&mut server).await;
        // asyncio: write, write_eof, then drain waits for the buffer to go
        // under the high watermark; nothing written was dropped.
        client_writer.write(vec![b'x'; 1 << 20]);
        client_writer.write_eof();
        let drained = client_writer.drain().await;
        let got = read_all(&mut server_reader).await.unwrap();
        assert_eq!(
            got.len(),
            1 << 20,
            "every byte written before write_eof came"
        );
        drained.expect("nothing was dropped, and drain says BrokenPipe");
    });
}

// ----------------------------------------------------- hostile peers

#[test]
fn a_10_mib_line_is_a_limit_overrun_with_bounded_buffering() {
    run(async {
        let mut server = Server::start();
        let (_cr, mut client_writer, mut server_reader, _sw) = pair(&mut server).await;
        let transport = client_writer.transport().clone();
        twill::spawn(async move {
            let line = vec![b'x'; 10 << 20];
            let _ = client_writer.write_all(&line).await;
            let _ = client_writer.write_all(b"\n").await;
        });
        let err = server_reader.read_line().await.unwrap_err();
        assert!(
            matches!(err, ReadError::LimitOverrun { .. }),
            "not a LimitOverrun: {err:?}"
        );
        let stuck = twill::defer::Deferred::new();
        let resolver = stuck.resolver();
        twill_test_support::pressure::when_stuck(transport, move || resolver.callback(()));
        let _ = within(Duration::from_secs(5), stuck).await;
        let held = server_reader.buffered();
        assert!(
            held <= 64 * 1024 + 256 * 1024,
            "a reader with the default limit holds {held} bytes of an unfinished line"
        );
        // Asked again, the same answer at once (the bytes stay).
        let again = within(Duration::from_secs(1), Box::pin(server_reader.read_line())).await;
        assert!(matches!(again, Some(Err(ReadError::LimitOverrun { .. }))));
    });
}

#[test]
fn read_until_a_long_delimiter_arriving_one_byte_at_a_time() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, cues| {
            // Overlapping near-misses of the delimiter, one byte per
            // segment, each sent after the server polled again.
            let message = b"ab\r\n\r\r\n\r\n\r\nrest";
            for byte in message {
                cues.wait();
                stream_support::send(&mut socket, &[*byte]);
            }
            cues.wait();
        });
        let (mut reader, _writer) = server.accept().await;
        let mut read = Box::pin(reader.read_until(b"\r\n\r\n"));
        assert!(futures::poll!(&mut read).is_pending());
        let mut result = None;
        for _ in 0..14 {
            if result.is_none() {
                peer.cue();
                // Whatever next wakes the read.
                if let std::task::Poll::Ready(r) = stream_support::poll_when_woken(&mut read).await
                {
                    result = Some(r);
                }
            }
        }
        drop(read);
        let head = result.expect("the delimiter was found").unwrap();
        assert_eq!(&head[..], b"ab\r\n\r\r\n\r\n");
        for _ in 0..16 {
            peer.cue();
        }
        let _ = peer.outcome().await;
        let mut rest = Vec::new();
        while rest.len() < 6 {
            rest.extend_from_slice(&reader.read(100).await.unwrap());
        }
        assert_eq!(rest, b"\r\nrest");
    });
}

#[test]
fn a_reset_while_blocked_in_drain_ends_the_drain() {
    run(async {
        let mut server = Server::start();
        // A peer that never reads; the test resets it once drain waits.
        // (The kernel completes the connect from its backlog.)
        let socket = twill_test_support::pressure::connect(server.addr());
        let (_reader, writer) = server.accept().await;
        // Fill the connection until a drain waits for longer than a
        // loopback peer that read would take.
        let mut chunks = 0;
        loop {
            writer.write(vec![b'x'; 256 * 1024]);
            chunks += 1;
            assert!(chunks < 400, "drain never waited");
            if within(Duration::from_millis(300), Box::pin(writer.drain()))
                .await
                .is_none()
            {
                break;
            }
        }
        let mut drain = Box::pin(writer.drain());
        assert!(futures::poll!(&mut drain).is_pending());
        stream_support::reset(socket);
        let result = within(Duration::from_secs(2), drain).await;
        let result = result.expect("a drain blocked on a peer that reset never ends");
        let err = result.expect_err("drain on a reset connection is Ok");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    });
}

// ----------------------------------------------------- set_protocol

/// Sends what it receives, tagged, to the test.
struct Tape {
    tag: &'static str,
    seen: async_mpsc::UnboundedSender<(&'static str, Bytes)>,
}

impl Protocol for Tape {
    fn data_received(&mut self, data: Bytes) {
        let _ = self.seen.unbounded_send((self.tag, data));
    }

    fn connection_lost(&mut self, reason: &twill::Reason) {
        let _ = self
            .seen
            .unbounded_send((self.tag, Bytes::from(format!("lost: {reason}"))));
    }
}

/// Gives its connection to a `Tape` at its first bytes; its own drop
/// panics (a bug in the protocol being replaced).
struct PanicsWhenDropped {
    transport: Option<Transport>,
    seen: async_mpsc::UnboundedSender<(&'static str, Bytes)>,
}

impl Protocol for PanicsWhenDropped {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        let tape = Box::new(Tape {
            tag: "tape",
            seen: self.seen.clone(),
        });
        self.transport.as_ref().unwrap().set_protocol(tape).unwrap();
        let _ = self.seen.unbounded_send(("switched", data));
    }
}

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if self.transport.is_some() && !std::thread::panicking() {
            panic!("a replaced protocol's drop panics");
        }
    }
}

#[test]
fn a_replaced_protocol_whose_drop_panics_leaves_the_connection_to_its_replacement() {
    run(async {
        let (seen_tx, mut seen) = async_mpsc::unbounded();
        let port = twill::reactor()
            .listen_tcp("127.0.0.1:0", move |_| PanicsWhenDropped {
                transport: None,
                seen: seen_tx.clone(),
            })
            .unwrap();
        let (_reader, writer) = stream::open_connection(port.host()).await.unwrap();
        writer.write("switch");
        let (tag, _) = seen.next().await.unwrap();
        assert_eq!(tag, "switched");
        // The old protocol's drop panicked (logged); the reactor goes on,
        // and the connection is the replacement's.
        writer.write("after");
        let (tag, data) = seen.next().await.unwrap();
        assert_eq!((tag, &data[..]), ("tape", &b"after"[..]));
    });
}

/// Pauses reading when connected and gives its transport to the test.
struct Waits(async_mpsc::UnboundedSender<Transport>);

impl Protocol for Waits {
    fn connection_made(&mut self, transport: &Transport) {
        transport.pause_reading();
        let _ = self.0.unbounded_send(transport.clone());
    }

    fn data_received(&mut self, _data: Bytes) {
        unreachable!("reading is paused");
    }
}

#[test]
fn hand_over_from_a_timer_outside_any_callback() {
    run(async {
        let (tx, mut transports) = async_mpsc::unbounded();
        let port = twill::reactor()
            .listen_tcp("127.0.0.1:0", move |_| Waits(tx.clone()))
            .unwrap();
        let (mut client_reader, client_writer) =
            stream::open_connection(port.host()).await.unwrap();
        client_writer.write("one\n");
        let transport = transports.next().await.unwrap();
        let (handed_tx, mut handed) = async_mpsc::unbounded();
        twill::call_later(Duration::from_millis(1), move || {
            let _ = handed_tx.unbounded_send(stream::hand_over(&transport, b"zero\n"));
        });
        let (mut reader, writer) = handed.next().await.unwrap().unwrap();
        assert_eq!(&reader.read_line().await.unwrap()[..], b"zero\n");
        assert_eq!(&reader.read_line().await.unwrap()[..], b"one\n");
        client_writer.write("two\n");
        assert_eq!(&reader.read_line().await.unwrap()[..], b"two\n");
        writer.write("back\n");
        assert_eq!(&client_reader.read_line().await.unwrap()[..], b"back\n");
        drop((reader, writer));
        assert!(client_reader.read(10).await.unwrap().is_empty());
    });
}

// ------------------------------------------------ many connections

#[test]
fn thousands_of_short_connections_leave_nothing_behind() {
    const ROUNDS: usize = 1500;
    run(async {
        let (done_tx, mut done) = async_mpsc::unbounded::<()>();
        let port = stream::start_server("127.0.0.1:0", move |mut reader, writer| {
            let done_tx = done_tx.clone();
            async move {
                // Whatever the client does, the handler ends.
                while let Ok(line) = reader.read_line().await {
                    if line.is_empty() {
                        break;
                    }
                    writer.write(line);
                    if writer.drain().await.is_err() {
                        break;
                    }
                }
                let _ = done_tx.unbounded_send(());
            }
        })
        .unwrap();
        let addr = port.host().tcp().unwrap();
        // Three ways to leave: a clean close after an echo, a reset in the
        // middle of a line, a close with half a line sent.
        let one = |i: usize| async move {
            let (mut reader, writer) = stream::open_connection(addr).await.unwrap();
            match i % 3 {
                0 => {
                    writer.write("ping\n");
                    assert_eq!(&reader.read_line().await.unwrap()[..], b"ping\n");
                }
                1 => {
                    writer.write("half a li");
                    writer.transport().abort_connection();
                }
                _ => {
                    writer.write("half a li");
                }
            }
            drop(reader);
            drop(writer);
        };
        for i in 0..30 {
            one(i).await;
            done.next().await.unwrap();
        }
        let _ = sleep(Duration::from_millis(5)).await;
        let before = live();
        for i in 0..ROUNDS {
            one(i).await;
            done.next().await.unwrap();
        }
        let _ = sleep(Duration::from_millis(5)).await;
        let grown = live() - before;
        assert!(
            grown < (ROUNDS * 64) as isize,
            "{ROUNDS} finished connections left {grown} bytes allocated"
        );
    });
}

/// Whose drop panics, with no protocol change at all.
struct JustPanicsWhenDropped;

impl Protocol for JustPanicsWhenDropped {
    fn data_received(&mut self, _data: Bytes) {}
}

impl Drop for JustPanicsWhenDropped {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a protocol's drop panics");
        }
    }
}

#[test]
fn set_protocol_from_a_timer_over_a_protocol_whose_drop_panics_still_ends_the_connection() {
    run(async {
        let (tx, mut transports) = async_mpsc::unbounded();
        let port = twill::reactor()
            .listen_tcp("127.0.0.1:0", move |_| {
                /// Gives its transport to the test; panics when dropped.
                struct Both(
                    async_mpsc::UnboundedSender<Transport>,
                    JustPanicsWhenDropped,
                );
                impl Protocol for Both {
                    fn connection_made(&mut self, transport: &Transport) {
                        let _ = self.0.unbounded_send(transport.clone());
                    }
                    fn data_received(&mut self, _data: Bytes) {}
                }
                Both(tx.clone(), JustPanicsWhenDropped)
            })
            .unwrap();
        let (mut reader, writer) = stream::open_connection(port.host()).await.unwrap();
        let transport = transports.next().await.unwrap();
        let (seen_tx, mut seen) = async_mpsc::unbounded();
        let (done_tx, mut done) = async_mpsc::unbounded::<()>();
        twill::call_later(Duration::from_millis(1), move || {
            // Says the call is over, however it ends.
            struct Done(async_mpsc::UnboundedSender<()>);
            impl Drop for Done {
                fn drop(&mut self) {
                    let _ = self.0.unbounded_send(());
                }
            }
            let _done = Done(done_tx);
            let tape = Box::new(Tape {
                tag: "tape",
                seen: seen_tx,
            });
            // The panic of the old protocol's drop ends this timer call
            // (the reactor logs it).
            let _ = transport.set_protocol(tape);
        });
        done.next().await;
        writer.write("after\n");
        writer.write_eof();
        // The tape has the connection and reads on, or the connection
        // failed; either way the client sees its end once it closes.
        let ended = within(Duration::from_secs(2), Box::pin(read_all(&mut reader))).await;
        let got = seen.try_recv().ok();
        assert!(
            ended.is_some(),
            "the connection is never read nor closed (the tape got {got:?})"
        );
    });
}
