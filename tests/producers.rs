//! Producers over real loopback sockets: a push producer paused and
//! resumed by a slow reader, `FileSender` streaming a large file in bounded
//! memory, `lose_connection` waiting for a pull producer, and
//! `stop_producing` when the peer goes away; plus the registration rules
//! on a `StringTransport`.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use twill::defer::Failure;
use twill::producers::{ConsumerGone, FileSender, Producer, RegisterError};
use twill::testing::StringTransport;
use twill::transport::DEFAULT_HIGH_WATERMARK;
use twill::{Protocol, Reactor, Transport};
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

/// Byte `i` of every stream these tests send.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

/// Reads to EOF in `piece`-sized reads, checking every byte against
/// [`pattern`]; returns how many came.
fn read_pattern(stream: &mut impl Read, piece: usize) -> u64 {
    let mut buf = vec![0; piece];
    let mut at = 0u64;
    loop {
        let n = stream.read(&mut buf).expect("read");
        if n == 0 {
            return at;
        }
        for &byte in &buf[..n] {
            assert_eq!(byte, pattern(at), "byte {at}");
            at += 1;
        }
    }
}

/// A file of `len` bytes of [`pattern`], written a piece at a time.
fn pattern_file(dir: &TempDir, len: u64) -> PathBuf {
    let path = dir.path().join("data");
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

/// Writes `total` bytes in pieces of `piece` on timers while not paused;
/// counts pauses and resumes.
struct Ticker {
    transport: Transport,
    total: u64,
    piece: u64,
    sent: Cell<u64>,
    paused: Cell<bool>,
    pauses: Rc<Cell<u32>>,
    resumes: Rc<Cell<u32>>,
    /// Told of the first pause: the reader starts then.
    first_pause: mpsc::Sender<()>,
    me: RefCell<Option<std::rc::Weak<Ticker>>>,
}

impl Ticker {
    fn schedule(&self) {
        let me = self.me.borrow().clone().unwrap();
        twill::call_later(Duration::ZERO, move || {
            if let Some(me) = me.upgrade() {
                me.tick();
            }
        });
    }

    fn tick(&self) {
        if self.paused.get() || self.sent.get() >= self.total {
            return;
        }
        let start = self.sent.get();
        let end = (start + self.piece).min(self.total);
        let data: Vec<u8> = (start..end).map(pattern).collect();
        self.transport.write(data);
        self.sent.set(end);
        if end == self.total {
            self.transport.unregister_producer();
            self.transport.lose_connection();
        } else {
            self.schedule();
        }
    }
}

impl Producer for Ticker {
    fn pause_producing(&self) {
        assert!(!self.paused.replace(true), "paused twice");
        self.pauses.set(self.pauses.get() + 1);
        let _ = self.first_pause.send(());
    }
    fn resume_producing(&self) {
        assert!(self.paused.replace(false), "resumed while not paused");
        self.resumes.set(self.resumes.get() + 1);
        self.schedule();
    }
    fn stop_producing(&self) {}
}

struct PushServer {
    total: u64,
    pauses: Rc<Cell<u32>>,
    resumes: Rc<Cell<u32>>,
    first_pause: mpsc::Sender<()>,
    ticker: Option<Rc<Ticker>>,
}

impl Protocol for PushServer {
    fn connection_made(&mut self, transport: &Transport) {
        let ticker = Rc::new(Ticker {
            transport: transport.clone(),
            total: self.total,
            // Each piece alone takes the buffer over the high watermark.
            piece: 2 * DEFAULT_HIGH_WATERMARK as u64,
            sent: Cell::new(0),
            paused: Cell::new(false),
            pauses: self.pauses.clone(),
            resumes: self.resumes.clone(),
            first_pause: self.first_pause.clone(),
            me: RefCell::new(None),
        });
        *ticker.me.borrow_mut() = Some(Rc::downgrade(&ticker));
        transport.register_producer(ticker.clone(), true).unwrap();
        ticker.schedule();
        self.ticker = Some(ticker);
    }
    fn data_received(&mut self, _: twill::Bytes) {}
}

#[test]
fn push_producer_is_paused_and_resumed_by_a_slow_reader() {
    let _heavy = heavy();
    let reactor = Reactor::new().unwrap();
    // Far more than the kernel's buffers hold while the reader waits.
    let total = 32 << 20;
    let (paused_tx, paused_rx) = mpsc::channel();
    let (pauses, resumes) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (p, r) = (pauses.clone(), resumes.clone());
    let received = serve(
        &reactor,
        move |_peer| PushServer {
            total,
            pauses: p.clone(),
            resumes: r.clone(),
            first_pause: paused_tx.clone(),
            ticker: None,
        },
        move |addr, handle| {
            let mut stream = connect_small(addr, SMALL_RCVBUF);
            // Reads nothing until the producer was paused, then drains.
            paused_rx
                .recv_timeout(LIMIT)
                .expect("the producer was paused");
            let got = read_pattern(&mut stream, 4096);
            handle.stop();
            got
        },
    );
    assert_eq!(received, total);
    assert!(resumes.get() >= 1, "never resumed");
    assert!(
        resumes.get() == pauses.get() || resumes.get() + 1 == pauses.get(),
        "{} pauses, {} resumes",
        pauses.get(),
        resumes.get()
    );
}

/// Sends the file at `path` with `FileSender` on connect, watching the
/// write buffer before each read; closes at once if `close_early`, else
/// when the transfer is done. Records the Deferred's outcome.
struct FileServer {
    path: PathBuf,
    close_early: bool,
    outcome: Rc<RefCell<Option<Result<u64, String>>>>,
    peak: Rc<Cell<usize>>,
}

/// A reader that notes the write buffer's size at each read.
struct Watched {
    file: File,
    transport: Transport,
    peak: Rc<Cell<usize>>,
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.transport.write_buffer_size();
        self.peak.set(self.peak.get().max(size));
        self.file.read(buf)
    }
}

impl Protocol for FileServer {
    fn connection_made(&mut self, transport: &Transport) {
        let reader = Watched {
            file: File::open(&self.path).unwrap(),
            transport: transport.clone(),
            peak: self.peak.clone(),
        };
        let outcome = self.outcome.clone();
        let closer = transport.clone();
        let close_early = self.close_early;
        FileSender::begin_file_transfer(reader, transport).add_both(
            move |result: Result<u64, Failure>| {
                *outcome.borrow_mut() = Some(match &result {
                    Ok(n) => Ok(*n),
                    Err(failure) => Err(failure.to_string()),
                });
                if !close_early {
                    closer.lose_connection();
                }
                result
            },
        );
        if self.close_early {
            // Waits for the producer to unregister (Twisted's rule).
            transport.lose_connection();
        }
    }
    fn data_received(&mut self, _: twill::Bytes) {}
}

fn send_file_with(
    len: u64,
    close_early: bool,
    client: impl FnOnce(std::net::SocketAddr) -> u64 + Send + 'static,
) -> (u64, Option<Result<u64, String>>, usize) {
    let dir = TempDir::new("producers");
    let path = pattern_file(&dir, len);
    let reactor = Reactor::new().unwrap();
    let outcome = Rc::new(RefCell::new(None));
    let peak = Rc::new(Cell::new(0));
    let (o, pk) = (outcome.clone(), peak.clone());
    let received = serve(
        &reactor,
        move |_peer| FileServer {
            path: path.clone(),
            close_early,
            outcome: o.clone(),
            peak: pk.clone(),
        },
        move |addr, handle| {
            let got = client(addr);
            handle.stop();
            got
        },
    );
    let outcome = outcome.borrow_mut().take();
    (received, outcome, peak.get())
}

#[test]
fn file_sender_streams_a_large_file_in_bounded_memory() {
    let _heavy = heavy();
    let len = 64 << 20;
    let before = memory(std::process::id());
    let (received, outcome, peak) = send_file_with(len, false, |addr| {
        let mut stream = connect_small(addr, SMALL_RCVBUF);
        read_pattern(&mut stream, 4096)
    });
    let after = memory(std::process::id());
    assert_eq!(received, len);
    assert_eq!(outcome, Some(Ok(len)));
    // At most the high watermark plus one chunk waits in the buffer.
    assert!(
        peak <= DEFAULT_HIGH_WATERMARK + FileSender::CHUNK_SIZE,
        "write buffer reached {peak}"
    );
    // The resident size does not follow the file's 64 MiB.
    assert!(
        after.peak < before.peak + (16 << 20),
        "memory grew from {before} to {after}"
    );
}

#[test]
fn lose_connection_waits_for_the_pull_producer() {
    let _heavy = heavy();
    let len = 3 << 20;
    let (received, outcome, _) = send_file_with(len, true, |addr| {
        let mut stream = connect(addr);
        read_pattern(&mut stream, 64 * 1024)
    });
    assert_eq!(received, len, "closed before the file was sent");
    assert_eq!(outcome, Some(Ok(len)));
}

#[test]
fn the_producer_is_stopped_when_the_peer_goes_away() {
    let _heavy = heavy();
    let (received, outcome, _) = send_file_with(64 << 20, false, |addr| {
        let mut stream = connect_small(addr, SMALL_RCVBUF);
        let mut buf = vec![0; 1 << 20];
        stream.read_exact(&mut buf).unwrap();
        // Dropped with unread data: the server sees a reset.
        1 << 20
    });
    assert_eq!(received, 1 << 20);
    let error = outcome.expect("the Deferred fired").unwrap_err();
    assert_eq!(error, ConsumerGone.to_string());
}

/// Counts what the transport asks of it; writes `piece` per resume.
#[derive(Default)]
struct Counting {
    resumes: Cell<u32>,
    stops: Cell<u32>,
    transport: RefCell<Option<Transport>>,
}

impl Producer for Counting {
    fn resume_producing(&self) {
        self.resumes.set(self.resumes.get() + 1);
        if let Some(transport) = &*self.transport.borrow() {
            transport.write("piece");
        }
    }
    fn stop_producing(&self) {
        self.stops.set(self.stops.get() + 1);
    }
}

#[test]
fn registration_rules() {
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    // Kept over the high watermark, so a pull producer writes once.
    recorder.set_write_buffer_size(1 << 20);
    let producer = Rc::new(Counting::default());
    *producer.transport.borrow_mut() = Some(transport.clone());
    transport
        .register_producer(producer.clone(), false)
        .unwrap();
    assert_eq!(producer.resumes.get(), 1, "asked once at registration");
    assert_eq!(
        transport.register_producer(producer.clone(), false),
        Err(RegisterError::AlreadyRegistered)
    );
    assert!(transport.has_producer());

    // The close waits for the pull producer.
    transport.lose_connection();
    assert!(!recorder.disconnecting());
    transport.unregister_producer();
    assert!(recorder.disconnecting());
    assert!(!transport.has_producer());

    // On a closing transport: stopped at once.
    let late = Rc::new(Counting::default());
    transport.register_producer(late.clone(), true).unwrap();
    assert_eq!((late.resumes.get(), late.stops.get()), (0, 1));
    assert!(!transport.has_producer());
}

#[test]
fn abort_stops_the_producer() {
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    let producer = Rc::new(Counting::default());
    transport.register_producer(producer.clone(), true).unwrap();
    transport.abort_connection();
    assert_eq!(producer.stops.get(), 1);
    assert!(!transport.has_producer());
}

#[test]
fn file_sender_over_a_unix_socket() {
    let _heavy = heavy();
    let len = 4 << 20;
    let dir = TempDir::new("producers-unix");
    let path = pattern_file(&dir, len);
    let socket = dir.path().join("socket");
    let reactor = Reactor::new().unwrap();
    let outcome = Rc::new(RefCell::new(None));
    let peak = Rc::new(Cell::new(0));
    let (o, pk) = (outcome.clone(), peak.clone());
    reactor
        .listen_unix(&socket, 0o600, move |_peer| FileServer {
            path: path.clone(),
            close_early: false,
            outcome: o.clone(),
            peak: pk.clone(),
        })
        .unwrap();
    let handle = reactor.handle();
    let client = std::thread::spawn(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let got = read_pattern(&mut stream, 4096);
        handle.stop();
        got
    });
    twill_test_support::reactor::run(&reactor);
    assert_eq!(client.join().unwrap(), len);
    assert_eq!(*outcome.borrow(), Some(Ok(len)));
    assert!(peak.get() <= DEFAULT_HIGH_WATERMARK + FileSender::CHUNK_SIZE);
}
