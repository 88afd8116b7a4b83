//! `Transport::send_file` over real loopback sockets (`sendfile(2)` on
//! Linux): exact order with writes and other files, ranges, a file that is
//! shorter than its range, a peer that resets or does not read,
//! `lose_connection`, `write_eof` and `abort_connection` behind a file, a
//! panic in a callback on its Deferred; and the copying path over TLS and
//! on a `StringTransport`.

#[cfg(feature = "tls")]
mod tls_support;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use twill::defer::Deferred;
use twill::defer::Failure;
use twill::producers::ConsumerGone;
use twill::testing::{
    assert_no_result, failure_result_of, loopback, success_result_of, StringTransport,
};
use twill::{Bytes, Protocol, Reactor, Reason, Transport};
use twill_test_support::files::TempDir;
use twill_test_support::pressure::{connect_small, memory, SMALL_RCVBUF};
use twill_test_support::reactor::{connect, serve, LIMIT};

/// Held by each test that moves a lot of data, so that the one that
/// measures the process's memory is not measuring another's.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Byte `i` of every file these tests send.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

/// A file of `len` bytes of [`pattern`], written a piece at a time.
fn pattern_file(dir: &TempDir, name: &str, len: u64) -> PathBuf {
    let path = dir.path().join(name);
    let mut out = BufWriter::new(File::create(&path).unwrap());
    let mut piece = Vec::with_capacity(1 << 20);
    let mut at = 0;
    while at < len {
        piece.clear();
        let end = (at + (1 << 20)).min(len);
        piece.extend((at..end).map(pattern));
        out.write_all(&piece).unwrap();
        at = end;
    }
    out.flush().unwrap();
    path
}

/// What a Deferred<u64> ended with, as the tests compare it.
type Outcome = Rc<RefCell<Vec<Result<u64, String>>>>;

fn record(d: Deferred<u64>, outcomes: &Outcome) {
    let outcomes = outcomes.clone();
    d.add_both(move |result: Result<u64, Failure>| {
        outcomes
            .borrow_mut()
            .push(result.as_ref().map(|n| *n).map_err(describe));
        result
    });
}

/// A failure as the tests match it: the kind of an `io::Error`, or
/// "ConsumerGone".
fn describe(failure: &Failure) -> String {
    if let Some(err) = failure.downcast_ref::<io::Error>() {
        format!("io:{:?}", err.kind())
    } else if failure.check::<ConsumerGone>() {
        "ConsumerGone".into()
    } else {
        format!("other:{failure}")
    }
}

/// What a server saw: its `connection_lost` reasons and the calls to
/// `pause_writing` / `resume_writing`, in order.
#[derive(Default)]
struct Seen {
    lost: RefCell<Vec<String>>,
    log: RefCell<Vec<&'static str>>,
}

/// Runs `script` on `connection_made`; records what happens after.
/// What a server does when its connection is made.
type Script = Box<dyn FnOnce(&Transport)>;

/// Stops the reactor (if it runs on one) once the connection is over.
struct Scripted {
    script: Option<Script>,
    seen: Rc<Seen>,
    stop: Option<twill::ReactorHandle>,
}

impl Protocol for Scripted {
    fn connection_made(&mut self, transport: &Transport) {
        (self.script.take().unwrap())(transport);
    }
    fn data_received(&mut self, _: Bytes) {
        self.seen.log.borrow_mut().push("data");
    }
    fn pause_writing(&mut self) {
        self.seen.log.borrow_mut().push("pause");
    }
    fn resume_writing(&mut self) {
        self.seen.log.borrow_mut().push("resume");
    }
    fn connection_lost(&mut self, reason: &Reason) {
        let described = match reason {
            Reason::Failed(err) => match err.downcast_ref::<io::Error>() {
                Some(err) => format!("failed io:{:?}", err.kind()),
                None => format!("failed {err}"),
            },
            other => format!("{other:?}").split('(').next().unwrap().to_string(),
        };
        self.seen.lost.borrow_mut().push(described);
        if let Some(reactor) = &self.stop {
            reactor.stop();
        }
    }
}

/// Serves one connection with `script`, runs `client` against it until
/// the server's connection is over, and returns what the client returned
/// and what the server saw.
fn serve_script<R: Send + 'static>(
    script: impl FnOnce(&Transport) + 'static,
    client: impl FnOnce(std::net::SocketAddr) -> R + Send + 'static,
) -> (R, Rc<Seen>) {
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(Seen::default());
    let script: RefCell<Option<Script>> = RefCell::new(Some(Box::new(script)));
    let s = seen.clone();
    let stop = reactor.handle();
    let got = serve(
        &reactor,
        move |_peer| Scripted {
            script: script.borrow_mut().take(),
            seen: s.clone(),
            stop: Some(stop.clone()),
        },
        move |addr, _| client(addr),
    );
    (got, seen)
}

/// Reads until EOF or an error; returns the bytes and how it ended.
fn read_all(stream: &mut impl Read) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = vec![0; 256 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => return (got, Err(err)),
        }
    }
}

/// The bytes of `range` of a [`pattern_file`].
fn slice(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(pattern).collect()
}

#[test]
fn whole_file_a_middle_range_and_an_empty_one_in_order_with_writes() {
    let dir = TempDir::new("send-file");
    let path = pattern_file(&dir, "data", 100_000);
    let outcomes: Outcome = Rc::default();
    let o = outcomes.clone();
    let ((got, end), seen) = serve_script(
        move |t| {
            t.write("<");
            record(t.send_file(File::open(&path).unwrap(), 0..100_000), &o);
            t.write("|");
            record(t.send_file(File::open(&path).unwrap(), 1000..1100), &o);
            record(t.send_file(File::open(&path).unwrap(), 500..500), &o);
            t.write_with(|buf| buf.extend_from_slice(b">"));
            assert_eq!(t.bytes_written(), 100_103);
            assert!(!t.is_writable(), "a file in flight");
            t.lose_connection();
        },
        |addr| read_all(&mut connect(addr)),
    );
    end.unwrap();
    let mut want = b"<".to_vec();
    want.extend(slice(0..100_000));
    want.push(b'|');
    want.extend(slice(1000..1100));
    want.push(b'>');
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the stream differs from what was sent");
    // The empty range fired at once, the others in order once sent.
    assert_eq!(*outcomes.borrow(), [Ok(0), Ok(100_000), Ok(100)]);
    assert_eq!(*seen.lost.borrow(), ["Done"]);
}

#[test]
fn a_range_past_the_end_of_the_file_fails_and_resets_the_connection() {
    let dir = TempDir::new("send-file");
    let path = pattern_file(&dir, "short", 1000);
    let outcomes: Outcome = Rc::default();
    let o = outcomes.clone();
    let ((got, end), seen) = serve_script(
        move |t| {
            t.write("hdr");
            record(t.send_file(File::open(&path).unwrap(), 0..2000), &o);
            t.write("never");
        },
        |addr| read_all(&mut connect(addr)),
    );
    assert_eq!(*outcomes.borrow(), [Err("io:UnexpectedEof".to_string())]);
    assert_eq!(*seen.lost.borrow(), ["failed io:UnexpectedEof"]);
    // The peer never sees a clean end: a reset, after at most the bytes
    // the file had.
    assert_eq!(
        end.expect_err("a reset").kind(),
        io::ErrorKind::ConnectionReset
    );
    assert!(got.len() <= 1003, "{} bytes", got.len());
}

#[test]
fn a_large_file_between_writes_and_two_files_in_a_row() {
    let _heavy = heavy();
    let dir = TempDir::new("send-file");
    // Several times what the kernel's buffers hold on either side.
    let len = 24 << 20;
    let path = pattern_file(&dir, "large", len);
    let data = std::fs::read(&path).unwrap();
    let outcomes: Outcome = Rc::default();
    let o = outcomes.clone();
    let (got, seen) = serve_script(
        move |t| {
            t.write("start");
            record(t.send_file(File::open(&path).unwrap(), 0..len), &o);
            t.write("mid");
            record(t.send_file(File::open(&path).unwrap(), 0..len), &o);
            record(t.send_file(File::open(&path).unwrap(), 7..len), &o);
            t.write("end");
            t.lose_connection();
        },
        |addr| {
            let mut got = Vec::new();
            connect(addr).read_to_end(&mut got).map(|_| got)
        },
    );
    let got = got.expect("a clean end");
    let mut want = b"start".to_vec();
    want.extend_from_slice(&data);
    want.extend_from_slice(b"mid");
    want.extend_from_slice(&data);
    want.extend_from_slice(&data[7..]);
    want.extend_from_slice(b"end");
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the stream differs from what was sent");
    assert_eq!(*outcomes.borrow(), [Ok(len), Ok(len), Ok(len - 7)]);
    assert_eq!(*seen.lost.borrow(), ["Done"]);
}

#[test]
fn a_peer_that_resets_mid_file_fails_the_deferred_once() {
    let _heavy = heavy();
    let dir = TempDir::new("send-file");
    let len = 64 << 20;
    let path = pattern_file(&dir, "large", len);
    let outcomes: Outcome = Rc::default();
    let o = outcomes.clone();
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    let (_, seen) = serve_script(
        move |t| {
            /// Tells when the closure (and the file it holds) is gone.
            struct Flag(Rc<Cell<bool>>);
            impl Drop for Flag {
                fn drop(&mut self) {
                    self.0.set(true);
                }
            }
            let flag = Flag(d);
            let sent = t.send_file(File::open(&path).unwrap(), 0..len);
            sent.add_both(move |r: Result<u64, Failure>| {
                let _keep = &flag;
                r
            });
            record(sent, &o);
        },
        |addr| {
            let mut stream = connect_small(addr, SMALL_RCVBUF);
            let mut buf = vec![0; 1 << 20];
            stream.read_exact(&mut buf).unwrap();
            // Dropped with unread data: the server sees a reset.
        },
    );
    assert_eq!(*outcomes.borrow(), [Err("ConsumerGone".to_string())]);
    assert_eq!(seen.lost.borrow().len(), 1, "{:?}", seen.lost.borrow());
    assert!(seen.lost.borrow()[0].starts_with("Lost"));
    assert!(
        dropped.get(),
        "the callbacks (and the file) were not dropped"
    );
}

#[test]
fn a_peer_that_does_not_read_holds_no_memory_and_gets_the_file_later() {
    let _heavy = heavy();
    let dir = TempDir::new("send-file");
    let len = 64 << 20;
    let path = pattern_file(&dir, "large", len);
    let outcomes: Outcome = Rc::default();
    let o = outcomes.clone();
    let (go_tx, go_rx) = mpsc::channel();
    let peak = Rc::new(Cell::new(0usize));
    let pk = peak.clone();
    let before = memory(std::process::id());
    let order = Rc::new(RefCell::new(Vec::new()));
    let (on_sent, on_writable) = (order.clone(), order.clone());
    let (got, seen) = serve_script(
        move |t| {
            // A file holds no memory: a cap far under its size is no limit.
            t.set_write_buffer_max(64 * 1024);
            let sent = t.send_file(File::open(&path).unwrap(), 0..len);
            sent.add_callback(move |n| {
                on_sent.borrow_mut().push("sent");
                Ok(n)
            });
            record(sent, &o);
            // Waits for the file, then closes.
            let closer = t.clone();
            t.when_writable(move || {
                on_writable.borrow_mut().push("writable");
                closer.lose_connection();
            });
            // Watches the transport until nothing moves for 100 ms: the
            // peer's buffers are full. Then lets it read.
            fn watch(
                t: Transport,
                last: u64,
                same: u32,
                peak: Rc<Cell<usize>>,
                go: mpsc::Sender<()>,
            ) {
                peak.set(peak.get().max(t.write_buffer_size()));
                let sent = t.bytes_sent();
                let same = if sent == last { same + 1 } else { 0 };
                if same >= 20 {
                    assert!(sent < t.bytes_written(), "the whole file went already");
                    let _ = go.send(());
                    return;
                }
                twill::call_later(Duration::from_millis(5), move || {
                    watch(t, sent, same, peak, go)
                });
            }
            watch(t.clone(), u64::MAX, 0, pk, go_tx);
        },
        move |addr| {
            let mut stream = connect_small(addr, SMALL_RCVBUF);
            go_rx.recv_timeout(LIMIT).expect("the server stalled");
            let mut buf = vec![0; 1 << 16];
            let mut at = 0u64;
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break at;
                }
                for &byte in &buf[..n] {
                    assert_eq!(byte, pattern(at), "byte {at}");
                    at += 1;
                }
            }
        },
    );
    let after = memory(std::process::id());
    assert_eq!(got, len);
    assert_eq!(*outcomes.borrow(), [Ok(len)]);
    assert_eq!(peak.get(), 0, "the file took room in the write buffer");
    // The file paused the protocol; it resumed once the file was sent.
    assert_eq!(*seen.log.borrow(), ["pause", "resume"]);
    assert_eq!(*order.borrow(), ["sent", "writable"]);
    assert!(
        after.peak < before.peak + (16 << 20),
        "memory grew from {before} to {after}"
    );
}

#[test]
fn write_eof_after_a_file_half_closes_after_it() {
    let dir = TempDir::new("send-file");
    let path = pattern_file(&dir, "data", 300_000);
    let outcomes: Outcome = Rc::default();
    let o = outcomes.clone();
    let ((got, end), seen) = serve_script(
        move |t| {
            record(t.send_file(File::open(&path).unwrap(), 0..300_000), &o);
            t.write_eof();
        },
        |addr| {
            let mut stream = connect(addr);
            let read = read_all(&mut stream);
            // Still open the other way.
            stream.write_all(b"after eof").unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            read
        },
    );
    end.unwrap();
    assert!(got == slice(0..300_000));
    assert_eq!(*outcomes.borrow(), [Ok(300_000)]);
    assert!(
        seen.log.borrow().contains(&"data"),
        "{:?}",
        seen.log.borrow()
    );
}

#[test]
fn abort_drops_the_file_and_fails_the_deferred() {
    let dir = TempDir::new("send-file");
    let len = 64 << 20;
    let path = pattern_file(&dir, "large", len);
    let outcomes: Outcome = Rc::default();
    let o = outcomes.clone();
    let ((got, end), seen) = serve_script(
        move |t| {
            record(t.send_file(File::open(&path).unwrap(), 0..len), &o);
            let aborter = t.clone();
            twill::call_later(Duration::from_millis(20), move || {
                aborter.abort_connection()
            });
        },
        |addr| read_all(&mut connect_small(addr, SMALL_RCVBUF)),
    );
    assert_eq!(*outcomes.borrow(), [Err("ConsumerGone".to_string())]);
    assert_eq!(*seen.lost.borrow(), ["Aborted"]);
    assert!((got.len() as u64) < len);
    assert_eq!(end.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
}

#[test]
fn a_panic_in_a_callback_on_the_deferred_leaves_the_connection_alone() {
    let dir = TempDir::new("send-file");
    let path = pattern_file(&dir, "data", 200_000);
    let ((got, end), seen) = serve_script(
        move |t| {
            let writer = t.clone();
            t.send_file(File::open(&path).unwrap(), 0..200_000)
                .add_callback(|_: u64| -> Result<u64, Failure> { panic!("a bug in the callback") })
                .add_both(move |r: Result<u64, Failure>| {
                    writer.write("after");
                    writer.lose_connection();
                    r
                });
        },
        |addr| read_all(&mut connect(addr)),
    );
    end.unwrap();
    let mut want = slice(0..200_000);
    want.extend_from_slice(b"after");
    assert!(got == want);
    assert_eq!(*seen.lost.borrow(), ["Done"]);
}

#[test]
fn sending_a_file_on_a_closed_connection_fails_at_once() {
    let dir = TempDir::new("send-file");
    let path = pattern_file(&dir, "data", 10);
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    transport.abort_connection();
    let failure = failure_result_of(&transport.send_file(File::open(&path).unwrap(), 0..10));
    assert!(failure.check::<ConsumerGone>());
}

#[test]
fn the_copying_path_keeps_order_and_holds_writes_behind_the_file() {
    let dir = TempDir::new("send-file");
    let len = 1 << 20;
    let path = pattern_file(&dir, "data", len);
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    // The peer reads nothing: the buffer is over its high watermark.
    recorder.set_write_buffer_size(100_000);
    transport.write("<");
    let first = transport.send_file(File::open(&path).unwrap(), 0..len);
    transport.write(">");
    let second = transport.send_file(File::open(&path).unwrap(), 10..20);
    transport.write_with(|buf| buf.extend_from_slice(b"!"));
    let flushed = transport.flushed();
    transport.write_eof();
    assert_no_result(&first);
    assert!(!transport.is_writable());
    assert_eq!(recorder.value(), b"<", "nothing of the file while paused");
    // What waits behind the file counts as buffered.
    assert_eq!(transport.write_buffer_size(), 100_000 + 2);
    recorder.set_write_buffer_size(0);
    assert_eq!(success_result_of(&first), len);
    assert_eq!(success_result_of(&second), 10);
    success_result_of(&flushed);
    let mut want = b"<".to_vec();
    want.extend(slice(0..len));
    want.push(b'>');
    want.extend(slice(10..20));
    want.push(b'!');
    assert!(recorder.value() == want);
    assert!(recorder.eof_written());
    assert!(transport.is_writable());
}

#[test]
fn the_copying_path_fails_on_a_short_file_and_aborts() {
    let dir = TempDir::new("send-file");
    let path = pattern_file(&dir, "data", 100);
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    let sent = transport.send_file(File::open(&path).unwrap(), 50..500);
    let failure = failure_result_of(&sent);
    assert_eq!(
        failure.downcast_ref::<io::Error>().map(io::Error::kind),
        Some(io::ErrorKind::UnexpectedEof)
    );
    assert!(recorder.aborted());
    assert!(recorder.value() == slice(50..100));
}

#[test]
fn the_copying_path_fails_when_the_connection_is_aborted() {
    let dir = TempDir::new("send-file");
    let path = pattern_file(&dir, "data", 1 << 20);
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    recorder.set_write_buffer_size(100_000);
    let sent = transport.send_file(File::open(&path).unwrap(), 0..1 << 20);
    let flushed = transport.flushed();
    transport.abort_connection();
    assert!(failure_result_of(&sent).check::<ConsumerGone>());
    failure_result_of(&flushed);
}

/// The copying path under TLS: the same order, writes before, between and
/// after two files (one larger than the watermarks), then a close.
#[cfg(feature = "tls")]
#[test]
fn the_copying_path_under_tls_keeps_order() {
    use std::sync::Arc;
    use tls_support::{tls_connect, Pki};
    use twill_test_support::reactor::run;

    let dir = TempDir::new("send-file-tls");
    let len = 4 << 20;
    let path = pattern_file(&dir, "data", len);
    let pki = Pki::new("send-file");
    let client_config: Arc<_> = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let outcomes: Outcome = Rc::default();
    let seen = Rc::new(Seen::default());
    let script = RefCell::new(Some(Box::new({
        let o = outcomes.clone();
        move |t: &Transport| {
            t.write("<");
            record(t.send_file(File::open(&path).unwrap(), 0..len), &o);
            t.write("|");
            record(t.send_file(File::open(&path).unwrap(), 3..300), &o);
            t.write(">");
            t.lose_connection();
        }
    }) as Script));
    let (s, stop) = (seen.clone(), reactor.handle());
    let port = reactor
        .listen_tls("127.0.0.1:0", pki.server_config(), move |_| Scripted {
            script: script.borrow_mut().take(),
            seen: s.clone(),
            stop: Some(stop.clone()),
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let client = std::thread::spawn(move || {
        let mut stream = tls_connect(addr, &client_config);
        stream.flush().unwrap();
        let mut got = Vec::new();
        // A TLS close after the data: a clean end.
        stream.read_to_end(&mut got).map(|_| got)
    });
    run(&reactor);
    let got = client.join().unwrap().expect("a clean end");
    let mut want = b"<".to_vec();
    want.extend(slice(0..len));
    want.push(b'|');
    want.extend(slice(3..300));
    want.push(b'>');
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the stream differs from what was sent");
    assert_eq!(*outcomes.borrow(), [Ok(len), Ok(297)]);
    assert_eq!(*seen.lost.borrow(), ["Done"]);
}

/// Records what it receives.
struct Tape(Rc<RefCell<Vec<u8>>>);

impl Protocol for Tape {
    fn data_received(&mut self, data: Bytes) {
        self.0.borrow_mut().extend_from_slice(&data);
    }
}

#[test]
fn the_copying_path_on_the_loopback_pair() {
    let dir = TempDir::new("send-file");
    let len = 1 << 20;
    let path = pattern_file(&dir, "data", len);
    let outcomes: Outcome = Rc::default();
    let o = outcomes.clone();
    let seen = Rc::new(Seen::default());
    let server = Scripted {
        script: Some(Box::new(move |t: &Transport| {
            t.write("<");
            record(t.send_file(File::open(&path).unwrap(), 0..len), &o);
            t.write(">");
            // Held behind the file: no room for the whole file at once.
            assert!(t.write_buffer_size() <= 2 * 64 * 1024 + 2);
            t.lose_connection();
        })),
        seen: seen.clone(),
        stop: None,
    };
    let got = Rc::new(RefCell::new(Vec::new()));
    let pair = loopback(server, Tape(got.clone()));
    pair.flush();
    let mut want = b"<".to_vec();
    want.extend(slice(0..len));
    want.push(b'>');
    assert!(*got.borrow() == want);
    assert_eq!(*outcomes.borrow(), [Ok(len)]);
    assert_eq!(*seen.lost.borrow(), ["Done"]);
}

#[test]
fn over_a_unix_socket_in_order_with_writes() {
    use std::os::unix::net::UnixStream;
    use twill_test_support::reactor::run;

    let dir = TempDir::new("send-file-unix");
    let len = 8 << 20;
    let path = pattern_file(&dir, "data", len);
    let socket = dir.path().join("s.sock");
    let reactor = Reactor::new().unwrap();
    let outcomes: Outcome = Rc::default();
    let seen = Rc::new(Seen::default());
    let script = RefCell::new(Some(Box::new({
        let o = outcomes.clone();
        move |t: &Transport| {
            t.write("<");
            record(t.send_file(File::open(&path).unwrap(), 0..len), &o);
            t.write(">");
            t.lose_connection();
        }
    }) as Script));
    let (s, stop) = (seen.clone(), reactor.handle());
    reactor
        .listen_unix(&socket, 0o600, move |_| Scripted {
            script: script.borrow_mut().take(),
            seen: s.clone(),
            stop: Some(stop.clone()),
        })
        .unwrap();
    let client = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(&socket).expect("connect");
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).map(|_| got)
    });
    run(&reactor);
    let got = client.join().unwrap().expect("a clean end");
    let mut want = b"<".to_vec();
    want.extend(slice(0..len));
    want.push(b'>');
    assert!(got == want, "the stream differs from what was sent");
    assert_eq!(*outcomes.borrow(), [Ok(len)]);
    assert_eq!(*seen.lost.borrow(), ["Done"]);
}

#[test]
fn writes_held_behind_a_copied_file_count_toward_the_hard_cap() {
    let dir = TempDir::new("send-file");
    let path = pattern_file(&dir, "data", 1 << 20);
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    transport.set_write_buffer_max(200_000);
    recorder.set_write_buffer_size(100_000); // the peer reads nothing
    let sent = transport.send_file(File::open(&path).unwrap(), 0..1 << 20);
    transport.write(vec![0; 50_000]);
    assert!(!recorder.aborted());
    transport.write(vec![0; 60_000]);
    assert!(
        recorder.aborted(),
        "past the cap with what waits behind the file"
    );
    assert_eq!(
        recorder.failure().unwrap(),
        "write buffer over 200000 bytes: peer not reading"
    );
    assert!(failure_result_of(&sent).check::<ConsumerGone>());
}
