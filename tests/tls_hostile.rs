//! TLS against hostile peers, over real loopback sockets: a twill TLS
//! server on the test thread's reactor, raw Rust clients (a std
//! `TcpStream`, with rustls where they speak TLS) on another thread.
//!
//! What a TLS port promises whatever a peer sends:
//!
//! - a peer that does not speak TLS (plaintext, garbage that looks like a
//!   handshake record, garbage after a completed handshake) ends its own
//!   connection with `Reason::Failed` holding the `TlsError` that says
//!   which (`NotTls`, `Handshake`, `Protocol`), and is closed at once;
//! - a peer that starts a handshake and stops is closed after the
//!   handshake timeout (`HandshakeTimeout`), timed by the acceptor's
//!   clock;
//! - no peer costs anything once it is gone: no descriptor, no memory per
//!   connection, no busy reactor; every protocol hears `connection_lost`
//!   once;
//! - the other connections, and the port, go on as if nothing happened;
//! - a peer that does not read costs at most the high watermark plus one
//!   write while the protocol honours `pause_writing`, and the hard cap
//!   when it does not.
//!
//! The tests that count descriptors and memory take the process for
//! themselves; the others share it.

#![cfg(feature = "tls")]

mod tls_support;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use twill::task::Clock;
use twill::tls::{
    HandshakeCompleted, StartTls, TlsAcceptor, TlsFactory, DEFAULT_HANDSHAKE_TIMEOUT,
};
use twill::transport::DEFAULT_HIGH_WATERMARK;
use twill::{Bytes, Event, Protocol, Reactor, Reason, Transport};
use twill_test_support::client::{QUIET, WAIT};
use twill_test_support::events::Log;
use twill_test_support::pressure::{
    connect, connect_small, memory, read_expected, read_until_quiet, when_stuck, End, MIB,
    SMALL_RCVBUF,
};

use tls_support::*;

// ---------------------------------------------------------------------------
// The process, its descriptors and its threads
// ---------------------------------------------------------------------------

/// Tests that count the process's descriptors or memory hold it alone.
static PROCESS: RwLock<()> = RwLock::new(());

fn shares_the_process() -> RwLockReadGuard<'static, ()> {
    PROCESS.read().unwrap_or_else(PoisonError::into_inner)
}

fn owns_the_process() -> RwLockWriteGuard<'static, ()> {
    PROCESS.write().unwrap_or_else(PoisonError::into_inner)
}

/// The process's open file descriptors.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// On the reactor thread: waits up to a second for `settled` to say the
/// connections that ended have left nothing behind (a closed connection's
/// socket and protocol go at the end of the reactor's turn), then stops
/// the reactor.
fn settle_then_stop(settled: impl Fn() -> bool + 'static) {
    fn check(settled: impl Fn() -> bool + 'static, deadline: Instant) {
        if settled() || Instant::now() >= deadline {
            twill::stop();
        } else {
            twill::call_later(Duration::from_millis(5), move || check(settled, deadline));
        }
    }
    check(settled, Instant::now() + Duration::from_secs(1));
}

/// This thread's `/proc` directory, to read its CPU time from another.
fn this_thread() -> PathBuf {
    std::fs::canonicalize("/proc/thread-self").unwrap()
}

/// The CPU time a thread has used (`/proc/PID/task/TID/schedstat`).
fn cpu_time(thread: &Path) -> Duration {
    let stat = std::fs::read_to_string(thread.join("schedstat")).unwrap();
    let nanos = stat.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_nanos(nanos)
}

/// Runs `f` on the reactor thread for each value sent on `rx`, polling
/// every 2 ms until the sender is gone.
fn on_the_reactor<T: 'static>(rx: Receiver<T>, mut f: impl FnMut(T) + 'static) {
    twill::call_later(Duration::from_millis(2), move || match rx.try_recv() {
        Ok(value) => {
            f(value);
            on_the_reactor(rx, f);
        }
        Err(TryRecvError::Empty) => on_the_reactor(rx, f),
        Err(TryRecvError::Disconnected) => {}
    });
}

/// Runs `then` on the reactor thread once `ready` says so, polling every
/// 5 ms.
fn when(ready: impl Fn() -> bool + 'static, then: impl FnOnce() + 'static) {
    twill::call_later(Duration::from_millis(5), move || {
        if ready() {
            then();
        } else {
            when(ready, then);
        }
    });
}

/// `Closed::end` for a FIN or a reset: the peer's connection is gone
/// either way.
#[track_caller]
fn assert_gone(closed: &Closed, within: Duration) {
    assert!(
        matches!(
            closed.end,
            Ok(()) | Err(std::io::ErrorKind::ConnectionReset)
        ),
        "{closed:?}"
    );
    assert!(
        closed.after < within,
        "closed after {:?}, not within {within:?}",
        closed.after
    );
}

// ---------------------------------------------------------------------------
// Peers that do not speak TLS
// ---------------------------------------------------------------------------

#[test]
fn plaintext_to_a_tls_port_fails_with_not_tls_closes_the_peer_at_once_and_the_port_serves_on() {
    let _shared = shares_the_process();
    let pki = Pki::new("plaintext CA");
    let client_config = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let http = serve_tls(
        &reactor,
        pki.server_config(),
        numbered(&log),
        move |addr, handle| {
            let mut http = connect(addr);
            http.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let closed = read_until_closed(&mut http);
            let mut tls = tls_connect(addr, &client_config);
            echo(&mut tls, b"still serving");
            close_cleanly(tls).unwrap();
            handle.stop();
            closed
        },
    );
    assert_gone(&http, Duration::from_secs(1));
    assert_eq!(
        http.records(),
        [0x15],
        "the plaintext peer gets one TLS alert, then the close: {http:?}"
    );
    assert_eq!(
        log.events(),
        [
            "conn 1: lost Failed(NotTls)",
            "conn 2: handshake",
            "conn 2: eof_received",
            "conn 2: lost Done",
        ]
    );
}

#[test]
fn garbage_that_looks_like_a_handshake_record_fails_the_handshake_without_a_busy_reactor() {
    let _shared = shares_the_process();
    let pki = Pki::new("garbage CA");
    let client_config = pki.client_config();
    // A handshake record header and 512 random bytes for its body; then
    // 0x16 and 4 KiB of random bytes.
    let mut noise = Noise::new(0x16);
    let mut record = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    record.extend(noise.bytes(512));
    let mut random = vec![0x16];
    random.extend(noise.bytes(4096));
    let reactor_thread = this_thread();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let (closes, idle_cpu) = serve_tls(
        &reactor,
        pki.server_config(),
        numbered(&log),
        move |addr, handle| {
            let mut healthy = tls_connect(addr, &client_config);
            echo(&mut healthy, b"before");
            let closes: Vec<Closed> = [record, random]
                .iter()
                .map(|garbage| {
                    let mut sock = connect(addr);
                    sock.write_all(garbage).unwrap();
                    read_until_closed(&mut sock)
                })
                .collect();
            echo(&mut healthy, b"after");
            // Nothing happens for 300 ms: the reactor sleeps through them.
            let before = cpu_time(&reactor_thread);
            std::thread::sleep(Duration::from_millis(300));
            let idle_cpu = cpu_time(&reactor_thread) - before;
            echo(&mut healthy, b"after the pause");
            close_cleanly(healthy).unwrap();
            handle.stop();
            (closes, idle_cpu)
        },
    );
    for closed in &closes {
        assert_gone(closed, Duration::from_secs(1));
        assert!(
            closed.records().iter().all(|&t| t == 0x15),
            "nothing but an alert: {closed:?}"
        );
    }
    assert!(
        idle_cpu < Duration::from_millis(30),
        "the reactor used {idle_cpu:?} of CPU in 300 ms with nothing to do"
    );
    let events = log.events();
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(events[0], "conn 1: handshake");
    for (event, conn) in events[1..3].iter().zip(["conn 2", "conn 3"]) {
        assert!(
            event.starts_with(&format!("{conn}: lost Failed(Handshake: ")),
            "{events:?}"
        );
    }
    assert_eq!(events[3..], ["conn 1: eof_received", "conn 1: lost Done"]);
}

#[test]
fn random_bytes_after_a_completed_handshake_fail_with_a_protocol_error_and_spare_the_others() {
    let _shared = shares_the_process();
    let pki = Pki::new("after-handshake CA");
    let client_config = pki.client_config();
    let mut noise = Noise::new(0x17);
    // An application-data record whose body does not decrypt, and plain
    // random bytes.
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    forged.extend(noise.bytes(64));
    let random = noise.bytes(1024);
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let closes = serve_tls(
        &reactor,
        pki.server_config(),
        numbered(&log),
        move |addr, handle| {
            let mut healthy = tls_connect(addr, &client_config);
            echo(&mut healthy, b"before");
            let closes: Vec<Closed> = [forged, random]
                .iter()
                .map(|garbage| {
                    let mut hostile = tls_connect(addr, &client_config);
                    echo(&mut hostile, b"all is well");
                    hostile.sock.write_all(garbage).unwrap();
                    read_until_closed(&mut hostile.sock)
                })
                .collect();
            echo(&mut healthy, b"after");
            close_cleanly(healthy).unwrap();
            handle.stop();
            closes
        },
    );
    for closed in &closes {
        assert_gone(closed, Duration::from_secs(1));
    }
    let events = log.events();
    assert_eq!(events.len(), 7, "{events:?}");
    assert_eq!(events[0], "conn 1: handshake");
    for (pair, conn) in events[1..5].chunks(2).zip(["conn 2", "conn 3"]) {
        assert_eq!(pair[0], format!("{conn}: handshake"));
        assert!(
            pair[1].starts_with(&format!("{conn}: lost Failed(Protocol: ")),
            "{events:?}"
        );
    }
    assert_eq!(events[5..], ["conn 1: eof_received", "conn 1: lost Done"]);
}

// ---------------------------------------------------------------------------
// Handshakes that stop halfway
// ---------------------------------------------------------------------------

#[test]
fn a_handshake_that_stops_after_the_client_hello_times_out_closes_the_peer_and_leaks_nothing() {
    let _only = owns_the_process();
    let pki = Pki::new("timeout CA");
    let hello = client_hello(&pki.client_config());
    let acceptor =
        TlsAcceptor::new(pki.server_config()).handshake_timeout(Duration::from_millis(200));
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    // Counted once the reactor runs (its signal pipe open), before the
    // client connects; again once the client has closed its socket.
    let (baseline, after) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (go, wait_for_go) = mpsc::channel();
    let (client_gone, gone) = mpsc::channel();
    let (counted, settled) = (baseline.clone(), after.clone());
    reactor.call_when_running(move || {
        counted.set(open_fds());
        go.send(()).unwrap();
        on_the_reactor(gone, move |()| {
            let (baseline, after) = (counted.clone(), settled.clone());
            settle_then_stop(move || {
                after.set(open_fds());
                after.get() == baseline.get()
            });
        });
    });
    let closed = serve_tls(
        &reactor,
        acceptor,
        move |_| Echo::new("server", &server_log),
        move |addr, _handle| {
            wait_for_go.recv_timeout(WAIT).unwrap();
            let mut sock = connect(addr);
            sock.write_all(&hello).unwrap();
            let closed = read_until_closed(&mut sock);
            drop(sock);
            client_gone.send(()).unwrap();
            closed
        },
    );
    assert_eq!(closed.bytes[0], 0x16, "the server answered the hello");
    assert_gone(&closed, Duration::from_secs(2));
    assert!(
        closed.after >= Duration::from_millis(150),
        "closed after {:?}, before the timeout",
        closed.after
    );
    assert_eq!(
        log.events(),
        ["server: lost Failed(HandshakeTimeout(200ms))"]
    );
    assert_eq!(
        after.get(),
        baseline.get(),
        "open descriptors before and after"
    );
}

#[test]
fn the_handshake_timeout_is_10_s_by_default_and_runs_on_the_acceptors_clock() {
    let _shared = shares_the_process();
    assert_eq!(DEFAULT_HANDSHAKE_TIMEOUT, Duration::from_secs(10));
    let pki = Pki::new("clock CA");
    let hello = client_hello(&pki.client_config());
    let clock = Clock::new();
    let acceptor = TlsAcceptor::new(pki.server_config());
    assert_eq!(acceptor.timeout(), DEFAULT_HANDSHAKE_TIMEOUT);
    let timed_on = Rc::new(clock.clone());
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    // The client thread asks the reactor to advance the clock; it answers
    // with how many calls are left pending on it.
    let (advance, advances) = mpsc::channel::<Duration>();
    let (pending_tx, pending) = mpsc::channel::<usize>();
    reactor.call_when_running(move || {
        on_the_reactor(advances, move |by| {
            clock.advance(by);
            pending_tx.send(clock.delayed_calls().len()).unwrap();
        })
    });
    let (steps, closed) = serve_wrapped(
        &reactor,
        TlsFactory::new(StartTls::Server(acceptor), move |_| {
            Echo::new("server", &server_log).stopping()
        })
        .clock(timed_on),
        move |addr, _handle| {
            let mut sock = connect(addr);
            sock.write_all(&hello).unwrap();
            let mut first = [0];
            sock.read_exact(&mut first).unwrap();
            assert_eq!(first[0], 0x16, "the server answered the hello");
            let step = |by: Duration| {
                advance.send(by).unwrap();
                pending.recv_timeout(WAIT).unwrap()
            };
            let armed = step(Duration::ZERO);
            let almost = step(DEFAULT_HANDSHAKE_TIMEOUT - Duration::from_millis(1));
            let (_, end) = read_until_quiet(&mut sock, QUIET, 1 << 20, Instant::now() + WAIT);
            let still_open = matches!(end, End::Quiet);
            let due = step(Duration::from_millis(1));
            (
                (armed, almost, still_open, due),
                read_until_closed(&mut sock),
            )
        },
    );
    assert_eq!(
        steps,
        (1, 1, true, 0),
        "one call pending on the clock; 1 ms short of 10 s the connection \
         is still open; at 10 s the call ran"
    );
    assert_gone(&closed, Duration::from_secs(1));
    assert_eq!(log.events(), ["server: lost Failed(HandshakeTimeout(10s))"]);
}

// ---------------------------------------------------------------------------
// Many peers that reset
// ---------------------------------------------------------------------------

/// What the server of many connections saw.
#[derive(Default)]
struct Tally {
    /// Per connection, in the order accepted, its `connection_lost` calls.
    lost: Vec<u32>,
    /// Resident memory once 200 connections had ended, and at the end.
    rss: Vec<u64>,
    /// Protocols dropped.
    dropped: usize,
}

/// Echoes, and counts its `connection_lost` calls in the tally.
struct Counted {
    tally: Rc<RefCell<Tally>>,
    me: usize,
    transport: Option<Transport>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.tally.borrow_mut().dropped += 1;
    }
}

impl Protocol for Counted {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.transport.as_ref().unwrap().write(data);
    }
    fn connection_lost(&mut self, _: &Reason) {
        let mut tally = self.tally.borrow_mut();
        tally.lost[self.me] += 1;
        let ended = tally.lost.iter().filter(|&&n| n > 0).count();
        if ended == 200 && tally.rss.is_empty() {
            tally.rss.push(memory(std::process::id()).rss);
        }
    }
}

/// Where a resetting client gives up.
#[derive(Debug, Clone, Copy)]
enum ResetAt {
    BeforeHello,
    MidHello,
    AfterHello,
    AfterServerFlight,
    AfterHandshake,
    AfterData,
}

const RESET_POINTS: [ResetAt; 6] = [
    ResetAt::BeforeHello,
    ResetAt::MidHello,
    ResetAt::AfterHello,
    ResetAt::AfterServerFlight,
    ResetAt::AfterHandshake,
    ResetAt::AfterData,
];

#[test]
fn a_thousand_clients_that_reset_at_every_point_of_the_handshake_leave_nothing_behind() {
    const CLIENTS: usize = 1000;
    let _only = owns_the_process();
    let pki = Pki::new("reset CA");
    let client_config = pki.client_config();
    let hello = client_hello(&client_config);
    let reactor = Reactor::new().unwrap();
    let tally = Rc::new(RefCell::new(Tally::default()));
    let (baseline, after) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let clients_done = Arc::new(AtomicBool::new(false));
    let (go, wait_for_go) = mpsc::channel();
    {
        let (tally, baseline, after, done) = (
            tally.clone(),
            baseline.clone(),
            after.clone(),
            clients_done.clone(),
        );
        reactor.call_when_running(move || {
            baseline.set(open_fds());
            go.send(()).unwrap();
            let ended = tally.clone();
            let all_ended =
                move || done.load(Ordering::SeqCst) && ended.borrow().lost.iter().all(|&n| n > 0);
            when(all_ended, move || {
                tally.borrow_mut().rss.push(memory(std::process::id()).rss);
                settle_then_stop(move || {
                    after.set(open_fds());
                    let tally = tally.borrow();
                    after.get() == baseline.get() && tally.dropped == tally.lost.len()
                });
            });
        });
    }
    let (factory_tally, done) = (tally.clone(), clients_done.clone());
    let started = Instant::now();
    serve_tls(
        &reactor,
        pki.server_config(),
        move |_| {
            let me = {
                let mut tally = factory_tally.borrow_mut();
                tally.lost.push(0);
                tally.lost.len() - 1
            };
            Counted {
                tally: factory_tally.clone(),
                me,
                transport: None,
            }
        },
        move |addr, _handle| {
            wait_for_go.recv_timeout(WAIT).unwrap();
            for i in 0..CLIENTS {
                let at = RESET_POINTS[i % RESET_POINTS.len()];
                let mut sock = connect(addr);
                linger_zero(&sock);
                match at {
                    ResetAt::BeforeHello => {}
                    ResetAt::MidHello => sock.write_all(&hello[..hello.len() / 2]).unwrap(),
                    ResetAt::AfterHello => sock.write_all(&hello).unwrap(),
                    ResetAt::AfterServerFlight => {
                        sock.write_all(&hello).unwrap();
                        sock.read_exact(&mut [0; 5]).unwrap();
                    }
                    ResetAt::AfterHandshake | ResetAt::AfterData => {
                        let mut tls = handshake(sock, &client_config);
                        if let ResetAt::AfterData = at {
                            echo(&mut tls, &[i as u8; 1000]);
                        }
                        sock = tls.sock;
                    }
                }
                drop(sock);
            }
            // The port still serves, fully.
            let mut last = tls_connect(addr, &client_config);
            echo(&mut last, b"still here");
            close_cleanly(last).unwrap();
            done.store(true, Ordering::SeqCst);
        },
    );
    let took = started.elapsed();
    let tally = tally.borrow();
    assert_eq!(tally.lost.len(), CLIENTS + 1, "every client was accepted");
    let not_once: Vec<_> = (tally.lost.iter().enumerate())
        .filter(|(_, &n)| n != 1)
        .collect();
    assert!(
        not_once.is_empty(),
        "connection_lost once per connection; (connection, calls) otherwise: {not_once:?}"
    );
    assert_eq!(
        after.get(),
        baseline.get(),
        "open descriptors before and after"
    );
    assert_eq!(tally.dropped, CLIENTS + 1, "every protocol was dropped");
    let grown = tally.rss[1].saturating_sub(tally.rss[0]);
    assert!(
        grown <= 2 * MIB,
        "resident memory grew by {:.1} MiB from the 200th to the last connection",
        grown as f64 / MIB as f64
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

// ---------------------------------------------------------------------------
// Peers that do not read
// ---------------------------------------------------------------------------

/// The byte at `offset` of what a `Producer` writes.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = ((offset + i as u64) % 251) as u8;
    }
}

/// One TLS record's worth of plaintext: what a `Producer` writes at once.
const CHUNK: usize = 16 * 1024;

/// What a TLS 1.3 record adds to its plaintext: the header, the content
/// type and the AEAD tag.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;

#[derive(Default)]
struct Produced {
    offset: u64,
    paused: bool,
    pauses: u32,
    resumes: u32,
    /// The largest `write_buffer_size` right after a write.
    peak: usize,
    transport: Option<Transport>,
}

/// Writes the `pattern` stream once the handshake completes, one chunk a
/// turn of the reactor; honours `pause_writing` unless `reckless`. Tells
/// `ended` when the connection is lost, and stops the reactor.
struct Producer {
    state: Rc<RefCell<Produced>>,
    reckless: bool,
    log: Log,
    ended: mpsc::Sender<()>,
}

impl Producer {
    fn produce(state: Rc<RefCell<Produced>>, reckless: bool) {
        let mut st = state.borrow_mut();
        let transport = st.transport.clone().unwrap();
        if transport.is_closing() || st.paused && !reckless {
            return;
        }
        let mut chunk = vec![0; CHUNK];
        pattern(st.offset, &mut chunk);
        st.offset += CHUNK as u64;
        transport.write(chunk);
        st.peak = st.peak.max(transport.write_buffer_size());
        drop(st);
        twill::call_later(Duration::ZERO, move || Producer::produce(state, reckless));
    }
}

impl Protocol for Producer {
    fn connection_made(&mut self, transport: &Transport) {
        self.state.borrow_mut().transport = Some(transport.clone());
        if self.reckless {
            transport.set_write_buffer_max(MIB as usize);
        }
    }
    fn data_received(&mut self, _: Bytes) {}
    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() {
            self.log.push("handshake");
            Producer::produce(self.state.clone(), self.reckless);
        }
    }
    fn pause_writing(&mut self) {
        let mut st = self.state.borrow_mut();
        st.paused = true;
        st.pauses += 1;
    }
    fn resume_writing(&mut self) {
        {
            let mut st = self.state.borrow_mut();
            st.paused = false;
            st.resumes += 1;
        }
        let (state, reckless) = (self.state.clone(), self.reckless);
        twill::call_later(Duration::ZERO, move || Producer::produce(state, reckless));
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(format!("lost {}", tls_reason(reason)));
        let _ = self.ended.send(());
        twill::stop();
    }
}

/// Serves one `Producer` to a client with a 4 KiB receive buffer that
/// completes the handshake, then does what `client` does with the stream
/// (nothing, or reading when told to), then waits for the server to end
/// the connection. `on_running` gets the producer's state once the
/// reactor runs.
fn produce_for_a_slow_reader(
    reckless: bool,
    on_running: impl FnOnce(Rc<RefCell<Produced>>) + 'static,
    client: impl FnOnce(&mut TlsStream) + Send + 'static,
) -> (Rc<RefCell<Produced>>, Log) {
    let pki = Pki::new("slow reader CA");
    let client_config = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let state = Rc::new(RefCell::new(Produced::default()));
    let (ended, end) = mpsc::channel();
    let on_state = state.clone();
    reactor.call_when_running(move || on_running(on_state));
    let (server_state, server_log) = (state.clone(), log.clone());
    let mut ended = Some(ended);
    serve_tls(
        &reactor,
        pki.server_config(),
        move |_| Producer {
            state: server_state.clone(),
            reckless,
            log: server_log.clone(),
            ended: ended.take().expect("one connection"),
        },
        move |addr, _handle| {
            let mut stream = handshake(connect_small(addr, SMALL_RCVBUF), &client_config);
            client(&mut stream);
            end.recv_timeout(WAIT)
                .expect("the server ends the connection");
        },
    );
    (state, log)
}

/// Runs `f` with the connection's transport once it is stuck: its write
/// buffer holds bytes and nothing more has left for 100 ms.
fn when_connection_stuck(state: Rc<RefCell<Produced>>, f: impl FnOnce(Transport) + 'static) {
    let transport = state.borrow().transport.clone();
    match transport {
        Some(transport) => when_stuck(transport.clone(), move || f(transport)),
        None => {
            twill::call_later(Duration::from_millis(5), move || {
                when_connection_stuck(state, f)
            });
        }
    }
}

#[test]
fn a_producer_that_honours_pause_writing_holds_at_most_the_high_watermark_and_one_write_for_a_peer_that_does_not_read(
) {
    let _shared = shares_the_process();
    let bound = DEFAULT_HIGH_WATERMARK + CHUNK + RECORD_OVERHEAD;
    let (tell_client, told) = mpsc::channel::<()>();
    let (client_read, read_done) = mpsc::channel::<()>();
    let stuck = Rc::new(RefCell::new(Vec::new()));
    let stuck_sizes = stuck.clone();
    // Stuck once: the client reads 1 MiB, which resumes the producer;
    // stuck again: the server aborts.
    let (state, log) = produce_for_a_slow_reader(
        false,
        move |state| {
            let again = state.clone();
            when_connection_stuck(state, move |transport| {
                stuck.borrow_mut().push(transport.write_buffer_size());
                tell_client.send(()).unwrap();
                on_the_reactor(read_done, move |()| {
                    when_connection_stuck(again.clone(), {
                        let stuck = stuck.clone();
                        move |transport| {
                            stuck.borrow_mut().push(transport.write_buffer_size());
                            transport.abort_connection();
                        }
                    });
                });
            });
        },
        move |stream| {
            told.recv_timeout(WAIT).expect("stuck");
            read_expected(stream, 0, MIB, Instant::now() + WAIT, pattern, |_| {});
            client_read.send(()).unwrap();
        },
    );
    let st = state.borrow();
    let stuck = stuck_sizes.borrow();
    assert_eq!(stuck.len(), 2, "stuck twice");
    for &size in stuck.iter().chain([&st.peak]) {
        assert!(
            size <= bound,
            "{size} bytes buffered, over the high watermark and one write ({bound})"
        );
    }
    assert!(
        st.pauses >= 2 && st.resumes >= 1,
        "paused {} times, resumed {} times",
        st.pauses,
        st.resumes
    );
    assert!(st.offset > MIB, "wrote {} bytes", st.offset);
    assert_eq!(log.events(), ["handshake", "lost Aborted"]);
}

#[test]
fn a_producer_that_ignores_pause_writing_is_aborted_at_the_hard_cap_with_write_buffer_full() {
    let _shared = shares_the_process();
    let (state, log) = produce_for_a_slow_reader(true, |_| {}, |_| {});
    let st = state.borrow();
    assert!(st.pauses >= 1, "it was told to pause");
    assert_eq!(
        log.events(),
        [
            "handshake".to_owned(),
            format!("lost Failed(WriteBufferFull {MIB})")
        ]
    );
}
