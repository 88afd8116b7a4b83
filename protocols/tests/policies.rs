//! The policies of `twill_protocols::policies`: unit tests driven by
//! `StringTransport` and a hand-advanced `Clock` (Twisted's own test
//! timelines where it has them), and loopback tests with `std::net` peers.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::task::Clock;
use twill::testing::StringTransport;
use twill::{Bytes, Factory, Protocol, Reactor, Reason, Transport};
use twill_protocols::policies::{
    LimitConnectionsByPeer, LimitTotalConnections, ThrottlingFactory, TimeoutAware, TimeoutHandle,
    TimeoutProtocol,
};
use twill_test_support::events::{describe, Log};
use twill_test_support::reactor::{connect, serve, LIMIT};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn secs_f(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Advances `clock` by each step, in seconds (Twisted's `Clock.pump`).
fn pump(clock: &Clock, steps: &[f64]) {
    for &step in steps {
        clock.advance(secs_f(step));
    }
}

// ---------------------------------------------------------------------------
// TimeoutProtocol

/// A protocol under a timeout, as Twisted's `TimeoutTester`.
struct Timed {
    log: Log,
    timeout: TimeoutHandle,
    /// Restart the countdown on data (Twisted's tester does).
    reset_on_data: bool,
    /// Say goodbye instead of closing when the timeout expires.
    polite: bool,
    clock: Option<(Clock, Duration)>,
}

impl Timed {
    fn new(log: &Log, timeout: TimeoutHandle) -> Timed {
        Timed {
            log: log.clone(),
            timeout,
            reset_on_data: true,
            polite: false,
            clock: None,
        }
    }
}

impl Protocol for Timed {
    fn connection_made(&mut self, _: &Transport) {
        self.log.push("made");
    }
    fn data_received(&mut self, data: Bytes) {
        self.log
            .push(format!("data {}", String::from_utf8_lossy(&data)));
        if self.reset_on_data {
            self.timeout.reset_timeout();
        }
        if let Some((clock, by)) = &self.clock {
            clock.advance(*by);
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
    }
}

impl TimeoutAware for Timed {
    fn timeout_connection(&mut self, transport: &Transport) {
        self.log.push("timed out");
        if self.polite {
            transport.write("bye");
        } else {
            transport.lose_connection();
        }
    }
}

/// A `Timed` with a 3 s timeout (Twisted's `timeOut = 3`) on `clock`.
fn timed(log: &Log, clock: &Clock) -> (TimeoutProtocol<Timed>, StringTransport) {
    let mut protocol = TimeoutProtocol::with_handle(|handle| Timed::new(log, handle))
        .timeout(secs(3))
        .clock(Rc::new(clock.clone()));
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    (protocol, recorder)
}

#[test]
fn timeout_expires_after_the_period_twisted_test_timeout() {
    let (log, clock) = (Log::default(), Clock::new());
    let (protocol, recorder) = timed(&log, &clock);
    pump(&clock, &[0.0, 0.5, 1.0, 1.0]);
    assert!(!recorder.disconnecting());
    assert!(protocol.handle().is_pending());
    pump(&clock, &[0.0, 1.0]);
    assert!(recorder.disconnecting());
    assert!(!protocol.handle().is_pending());
    assert_eq!(log.events(), ["made", "timed out"]);
}

#[test]
fn reset_timeout_postpones_expiry_twisted_test_no_timeout() {
    let (log, clock) = (Log::default(), Clock::new());
    let (mut protocol, recorder) = timed(&log, &clock);
    pump(&clock, &[0.0, 0.5, 1.0, 1.0]);
    protocol.data_received(Bytes::from_static(b"hello there"));
    pump(&clock, &[0.0, 1.0, 1.0, 0.5]);
    assert!(!recorder.disconnecting(), "expiry moved to 5.5 s");
    pump(&clock, &[0.0, 1.0]);
    assert!(recorder.disconnecting());
}

#[test]
fn set_timeout_none_cancels_twisted_test_reset_timeout() {
    let (log, clock) = (Log::default(), Clock::new());
    let (protocol, recorder) = timed(&log, &clock);
    assert_eq!(protocol.handle().set_timeout(None), Some(secs(3)));
    pump(&clock, &[0.0, 5.0, 5.0, 5.0]);
    assert!(!recorder.disconnecting());
    assert!(clock.delayed_calls().is_empty());
    protocol.handle().reset_timeout();
    assert!(!protocol.handle().is_pending(), "nothing to reset");
}

#[test]
fn set_timeout_returns_the_previous_period_twisted_test_return() {
    let (log, clock) = (Log::default(), Clock::new());
    let protocol = TimeoutProtocol::with_handle(|handle| Timed::new(&log, handle))
        .timeout(secs(5))
        .clock(Rc::new(clock.clone()));
    let handle = protocol.handle();
    assert_eq!(handle.set_timeout(Some(secs(10))), Some(secs(5)));
    assert_eq!(handle.set_timeout(None), Some(secs(10)));
    assert_eq!(handle.timeout(), None);
    assert_eq!(handle.set_timeout(Some(secs(1))), None);
}

#[test]
fn set_timeout_while_running_restarts_the_countdown_with_the_new_period() {
    let (log, clock) = (Log::default(), Clock::new());
    let (protocol, recorder) = timed(&log, &clock);
    clock.advance(secs(2));
    protocol.handle().set_timeout(Some(secs(5))); // now due at 7
    clock.advance(secs(4));
    assert!(!recorder.disconnecting());
    clock.advance(secs(1));
    assert!(recorder.disconnecting());
}

#[test]
fn an_overridden_timeout_connection_keeps_the_connection_and_may_start_again() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut protocol = TimeoutProtocol::with_handle(|handle| Timed {
        polite: true,
        ..Timed::new(&log, handle)
    })
    .timeout(secs(3))
    .clock(Rc::new(clock.clone()));
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    clock.advance(secs(3));
    assert_eq!(recorder.value(), b"bye");
    assert!(!recorder.disconnecting());
    let handle = protocol.handle();
    assert!(!handle.is_pending(), "the countdown is over");
    protocol.data_received(Bytes::from_static(b"x")); // resets nothing
    clock.advance(secs(10));
    assert_eq!(recorder.value(), b"bye");
    assert_eq!(handle.set_timeout(Some(secs(2))), Some(secs(3)));
    clock.advance(secs(2));
    assert_eq!(recorder.value(), b"byebye");
    assert_eq!(log.events(), ["made", "timed out", "data x", "timed out"]);
}

#[test]
fn the_default_timeout_connection_closes_gracefully() {
    struct Plain;
    impl Protocol for Plain {
        fn data_received(&mut self, _: Bytes) {}
    }
    impl TimeoutAware for Plain {}

    let clock = Clock::new();
    let mut protocol = TimeoutProtocol::new(Plain)
        .timeout(secs(1))
        .clock(Rc::new(clock.clone()));
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    clock.advance(secs(1));
    assert!(recorder.disconnecting());
    assert!(!recorder.aborted());
    assert!(recorder.failure().is_none());
}

#[test]
fn a_timeout_set_before_or_during_connection_made_starts_with_it() {
    struct SetsItself {
        timeout: TimeoutHandle,
    }
    impl Protocol for SetsItself {
        fn connection_made(&mut self, _: &Transport) {
            // Twisted's usual `self.setTimeout(self.timeOut)`.
            self.timeout.set_timeout(Some(secs(4)));
        }
        fn data_received(&mut self, _: Bytes) {}
    }
    impl TimeoutAware for SetsItself {}

    let clock = Clock::new();
    let mut protocol = TimeoutProtocol::with_handle(|timeout| SetsItself { timeout })
        .clock(Rc::new(clock.clone()));
    assert!(clock.delayed_calls().is_empty());
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    clock.advance(secs(3));
    assert!(!recorder.disconnecting());
    clock.advance(secs(1));
    assert!(recorder.disconnecting());

    let (log, clock) = (Log::default(), Clock::new());
    let mut early = TimeoutProtocol::with_handle(|handle| Timed::new(&log, handle))
        .clock(Rc::new(clock.clone()));
    early.handle().set_timeout(Some(secs(2)));
    assert!(clock.delayed_calls().is_empty(), "armed at connection_made");
    let recorder = StringTransport::new();
    early.connection_made(&recorder.transport());
    clock.advance(secs(2));
    assert!(recorder.disconnecting());
}

#[test]
fn connection_lost_cancels_the_countdown() {
    let (log, clock) = (Log::default(), Clock::new());
    let (mut protocol, recorder) = timed(&log, &clock);
    protocol.connection_lost(&Reason::Done);
    assert!(clock.delayed_calls().is_empty());
    let handle = protocol.handle();
    assert_eq!(handle.set_timeout(Some(secs(1))), Some(secs(3)));
    assert!(clock.delayed_calls().is_empty(), "not restarted once lost");
    clock.advance(secs(10));
    assert!(!recorder.disconnecting());
    assert_eq!(log.events(), ["made", "lost: done"]);
    assert_eq!(protocol.inner().log.events().len(), 2);
}

#[test]
fn reset_on_activity_restarts_on_every_read_twisted_timeout_protocol() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut protocol = TimeoutProtocol::with_handle(|handle| Timed {
        reset_on_data: false,
        ..Timed::new(&log, handle)
    })
    .timeout(secs(3))
    .reset_on_activity(true)
    .clock(Rc::new(clock.clone()));
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    pump(&clock, &[0.0, 0.5, 1.0, 1.0, 0.4]);
    assert!(!recorder.disconnecting());
    protocol.data_received(Bytes::from_static(b"x")); // at 2.9: due at 5.9
    pump(&clock, &[2.9]);
    assert!(!recorder.disconnecting());
    pump(&clock, &[0.1]);
    assert!(recorder.disconnecting());
    assert!(format!("{protocol:?}").contains("reset_on_activity: true"));
}

#[test]
fn a_timeout_due_inside_a_callback_expires_when_the_callback_returns() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut protocol = TimeoutProtocol::with_handle(|handle| Timed {
        reset_on_data: false,
        clock: Some((clock.clone(), secs(5))),
        ..Timed::new(&log, handle)
    })
    .timeout(secs(3))
    .clock(Rc::new(clock.clone()));
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    protocol.data_received(Bytes::from_static(b"x"));
    assert_eq!(log.events(), ["made", "data x", "timed out"]);
    assert!(recorder.disconnecting());
}

// ---------------------------------------------------------------------------
// LimitConnectionsByPeer and LimitTotalConnections

struct Quiet {
    log: Log,
}

impl Protocol for Quiet {
    fn connection_made(&mut self, _: &Transport) {
        self.log.push("made");
    }
    fn data_received(&mut self, data: Bytes) {
        self.log
            .push(format!("data {}", String::from_utf8_lossy(&data)));
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
    }
    fn pause_writing(&mut self) {
        self.log.push("pause");
    }
    fn resume_writing(&mut self) {
        self.log.push("resume");
    }
}

fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Builds `Quiet`s, refusing peers on port 9.
fn quiet_factory(log: &Log) -> impl Factory<Protocol = Quiet> {
    struct F(Log);
    impl Factory for F {
        type Protocol = Quiet;
        fn build_protocol(&mut self, peer: twill::Address) -> Option<Quiet> {
            (peer.port() != Some(9)).then(|| Quiet {
                log: self.0.clone(),
            })
        }
    }
    F(log.clone())
}

#[test]
fn limit_by_peer_refuses_the_sixth_connection_from_one_address() {
    let log = Log::default();
    let mut factory = LimitConnectionsByPeer::new(quiet_factory(&log));
    let mut open: Vec<_> = (0..5)
        .map(|port| factory.build_protocol((peer(&format!("10.0.0.1:{}", 1000 + port))).into()))
        .collect::<Option<_>>()
        .expect("five are allowed");
    assert!(factory
        .build_protocol((peer("10.0.0.1:2000")).into())
        .is_none());
    assert!(factory
        .build_protocol((peer("[::ffff:10.0.0.1]:2000")).into())
        .is_none());
    assert!(factory
        .build_protocol((peer("10.0.0.2:2000")).into())
        .is_some());
    assert!(factory
        .build_protocol((peer("[2001:db8::1]:2000")).into())
        .is_some());
    assert_eq!(factory.connections_from("10.0.0.1".parse().unwrap()), 5);
    assert_eq!(factory.refused(), 2);

    let mut gone = open.remove(0);
    gone.connection_made(&StringTransport::new().transport());
    gone.data_received(Bytes::from_static(b"hi"));
    gone.connection_lost(&Reason::Done);
    assert!(!gone.is_counted());
    assert_eq!(factory.connections_from("10.0.0.1".parse().unwrap()), 4);
    drop(gone); // gives nothing back twice
    assert_eq!(factory.connections_from("10.0.0.1".parse().unwrap()), 4);
    drop(open.pop()); // a protocol dropped without connection_lost
    assert_eq!(factory.connections_from("10.0.0.1".parse().unwrap()), 3);
    assert!(factory
        .build_protocol((peer("10.0.0.1:3000")).into())
        .is_some());
    assert_eq!(log.events(), ["made", "data hi", "lost: done"]);
}

#[test]
fn limit_by_peer_counts_only_what_the_inner_factory_built() {
    let mut factory = LimitConnectionsByPeer::new(quiet_factory(&Log::default())).max_per_peer(1);
    assert!(factory
        .build_protocol((peer("10.0.0.1:9")).into())
        .is_none());
    assert_eq!(factory.connections_from("10.0.0.1".parse().unwrap()), 0);
    assert_eq!(
        factory.refused(),
        0,
        "the inner factory refused, not the limit"
    );
    let _one = factory.build_protocol((peer("10.0.0.1:1")).into()).unwrap();
    assert!(factory
        .build_protocol((peer("10.0.0.1:2")).into())
        .is_none());
    assert_eq!(factory.refused(), 1);
}

#[test]
fn limit_total_refuses_over_the_limit_and_counts_down_on_connection_lost() {
    let log = Log::default();
    let mut factory = LimitTotalConnections::new(quiet_factory(&log), 2);
    assert_eq!(factory.limit(), 2);
    let mut first = factory.build_protocol((peer("10.0.0.1:1")).into()).unwrap();
    assert!(factory
        .build_protocol((peer("10.0.0.1:9")).into())
        .is_none());
    let _second = factory.build_protocol((peer("10.0.0.2:1")).into()).unwrap();
    assert_eq!(factory.connection_count(), 2);
    assert!(factory
        .build_protocol((peer("10.0.0.3:1")).into())
        .is_none());
    assert_eq!(factory.refused(), 1);
    first.connection_lost(&Reason::Aborted);
    assert_eq!(factory.connection_count(), 1);
    assert!(factory
        .build_protocol((peer("10.0.0.3:1")).into())
        .is_some());
    assert_eq!(log.events(), ["lost: aborted"]);

    let mut none = LimitTotalConnections::new(quiet_factory(&log), 0);
    assert!(none.build_protocol((peer("10.0.0.1:1")).into()).is_none());
}

// ---------------------------------------------------------------------------
// ThrottlingFactory

fn throttled(log: &Log, clock: &Clock) -> ThrottlingFactory<impl Factory<Protocol = Quiet>> {
    ThrottlingFactory::new(quiet_factory(log)).clock(Rc::new(clock.clone()))
}

#[test]
fn reads_over_the_limit_pause_every_connection_until_the_excess_is_used_up() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut factory = throttled(&log, &clock).read_limit(100);
    let (a, b) = (StringTransport::new(), StringTransport::new());
    let mut pa = factory.build_protocol(a.transport().peer()).unwrap();
    let mut pb = factory.build_protocol(b.transport().peer()).unwrap();
    pa.connection_made(&a.transport());
    pb.connection_made(&b.transport());

    pa.data_received(Bytes::from(vec![b'a'; 60]));
    pb.data_received(Bytes::from(vec![b'b'; 40]));
    assert!(!factory.reads_throttled(), "exactly the limit is allowed");
    pb.data_received(Bytes::from_static(b"b"));
    assert!(factory.reads_throttled());
    assert!(a.reading_paused() && b.reading_paused());
    pa.data_received(Bytes::from(vec![b'a'; 199])); // already read: delivered
    assert_eq!(factory.read_this_window(), 300);

    let c = StringTransport::new();
    let mut pc = factory.build_protocol(c.transport().peer()).unwrap();
    pc.connection_made(&c.transport());
    assert!(c.reading_paused(), "new connections start throttled");

    clock.advance(secs(1)); // 200 carried over
    assert!(a.reading_paused());
    clock.advance(secs(1)); // 100: within the limit again
    assert!(!factory.reads_throttled());
    assert!(!a.reading_paused() && !b.reading_paused() && !c.reading_paused());
    assert_eq!(factory.read_this_window(), 100);
    clock.advance(secs(1));
    assert_eq!(factory.read_this_window(), 0);
}

#[test]
fn the_window_timer_runs_only_while_there_is_something_to_account_for() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut unlimited = throttled(&log, &clock).read_limit(0).write_limit(0);
    let _p = unlimited
        .build_protocol((peer("10.0.0.1:1")).into())
        .unwrap();
    assert!(clock.delayed_calls().is_empty(), "no limit, no timer");

    let mut factory = throttled(&log, &clock).read_limit(10).write_limit(10);
    assert!(
        clock.delayed_calls().is_empty(),
        "starts with the first connection"
    );
    let recorder = StringTransport::new();
    let mut protocol = factory.build_protocol(recorder.transport().peer()).unwrap();
    assert_eq!(clock.delayed_calls().len(), 1);
    protocol.connection_made(&recorder.transport());
    protocol.data_received(Bytes::from(vec![b'x'; 25]));
    protocol.connection_lost(&Reason::Done);
    assert_eq!(factory.connection_count(), 0);
    clock.advance(secs(1)); // 15 carried over
    clock.advance(secs(1)); // 5
    assert!(!factory.reads_throttled());
    assert_eq!(clock.delayed_calls().len(), 1);
    clock.advance(secs(1)); // 0: nothing left, the timer stops
    assert!(clock.delayed_calls().is_empty());
    assert_eq!(
        log.events(),
        ["made", &format!("data {}", "x".repeat(25)), "lost: done"]
    );
}

#[test]
fn max_connections_refuses_the_excess_and_frees_places_when_connections_end() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut factory = throttled(&log, &clock).max_connections(2);
    let mut first = factory.build_protocol((peer("10.0.0.1:1")).into()).unwrap();
    let second = factory.build_protocol((peer("10.0.0.1:2")).into()).unwrap();
    assert!(factory
        .build_protocol((peer("10.0.0.1:3")).into())
        .is_none());
    assert!(factory
        .build_protocol((peer("10.0.0.1:9")).into())
        .is_none());
    assert_eq!(factory.refused(), 2);
    first.connection_lost(&Reason::Done);
    assert!(factory
        .build_protocol((peer("10.0.0.1:4")).into())
        .is_some());
    drop(second);
    assert_eq!(factory.connection_count(), 0);
}

#[test]
fn the_transports_own_pauses_pass_through() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut factory = throttled(&log, &clock).write_limit(1000);
    let recorder = StringTransport::new();
    let mut protocol = factory.build_protocol(recorder.transport().peer()).unwrap();
    protocol.connection_made(&recorder.transport());
    protocol.pause_writing();
    protocol.pause_writing();
    protocol.resume_writing();
    assert!(!factory.writes_throttled());
    assert_eq!(log.events(), ["made", "pause", "resume"]);
    assert_eq!(protocol.inner().log.events().len(), 3);
    assert!(format!("{factory:?}").contains("write_limit: Some(1000)"));
}

// ---------------------------------------------------------------------------
// Loopback

/// Says hello, so a client knows it was served.
struct Greeter;

impl Protocol for Greeter {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write("hi\n");
    }
    fn data_received(&mut self, _: Bytes) {}
}

/// Whether the server greeted this connection (else it closed it).
fn greeted(stream: &mut TcpStream) -> bool {
    let mut hello = [0; 3];
    match stream.read(&mut hello) {
        Ok(3) => &hello == b"hi\n",
        Ok(_) => false,
        Err(err) if err.kind() == ErrorKind::ConnectionReset => false,
        Err(err) => panic!("unexpected read error: {err}"),
    }
}

#[test]
fn loopback_limit_by_peer_refuses_the_sixth_connection_from_127_0_0_1() {
    let reactor = Reactor::new().unwrap();
    let factory = LimitConnectionsByPeer::new(|_peer| Greeter);
    let (served, sixth, after_close) = serve(&reactor, factory, |addr, handle| {
        let mut open: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
        let served = open.iter_mut().map(greeted).filter(|&g| g).count();
        let sixth = greeted(&mut connect(addr));
        // Close one; its place frees once the server has seen it go.
        drop(open.pop());
        let deadline = Instant::now() + LIMIT;
        let mut after_close = false;
        while !after_close && Instant::now() < deadline {
            after_close = greeted(&mut connect(addr));
        }
        handle.stop();
        (served, sixth, after_close)
    });
    assert_eq!(served, 5);
    assert!(!sixth, "the sixth connection is closed unserved");
    assert!(after_close, "a place frees when a connection ends");
}

#[test]
fn loopback_write_throttling_pauses_and_resumes_the_producer() {
    struct Producer {
        log: Log,
        clock: Clock,
        start: Instant,
        transport: Option<Transport>,
    }
    impl Producer {
        fn at(&self) -> Duration {
            self.clock.now().duration_since(self.start)
        }
    }
    impl Protocol for Producer {
        fn connection_made(&mut self, transport: &Transport) {
            self.transport = Some(transport.clone());
            transport.write(vec![b'x'; 20]);
            self.log.push(format!("{:?} wrote 20", self.at()));
        }
        fn data_received(&mut self, _: Bytes) {}
        fn pause_writing(&mut self) {
            self.log.push(format!("{:?} pause", self.at()));
            let clock = self.clock.clone();
            twill::call_later(Duration::ZERO, move || clock.advance(secs(1)));
        }
        fn resume_writing(&mut self) {
            self.log.push(format!("{:?} resume", self.at()));
            self.transport.as_ref().unwrap().lose_connection();
        }
        fn connection_lost(&mut self, reason: &Reason) {
            self.log.push(describe(reason));
            twill::stop();
        }
    }

    let reactor = Reactor::new().unwrap();
    let (log, clock) = (Log::default(), Clock::new());
    let (server_log, server_clock) = (log.clone(), clock.clone());
    let factory = ThrottlingFactory::new(move |_peer| Producer {
        log: server_log.clone(),
        clock: server_clock.clone(),
        start: server_clock.now(),
        transport: None,
    })
    .write_limit(10)
    .clock(Rc::new(clock.clone()));
    let got = serve(&reactor, factory, |addr, _| {
        let mut all = Vec::new();
        connect(addr).read_to_end(&mut all).map(|_| all.len())
    });
    assert_eq!(got.unwrap(), 20);
    assert_eq!(
        log.events(),
        ["0ns wrote 20", "0ns pause", "1s resume", "lost: done"]
    );
}
