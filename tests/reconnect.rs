//! `ClientFactory` callbacks and `ReconnectingClientFactory` back-off
//! (reference section 3.3), against real loopback sockets: a port that
//! refuses connections and a listening twill port. Retries are scheduled on
//! a `task::Clock`, which the tests advance from reactor callbacks, so no
//! test waits for a back-off delay in real time.

mod support;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use twill::task::Clock;
use twill::{
    Bytes, ClientFactory, Connector, ConnectorState, Factory, ListeningPort, Protocol, Reactor,
    Reason, ReconnectingClientFactory, Transport,
};

use support::{refused_addr, run_bounded};

const LIMIT: Duration = Duration::from_secs(10);
const E: f64 = std::f64::consts::E;

/// What the client factory and its protocol were told, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    StartFactory,
    StopFactory,
    StartedConnecting,
    Failed(io::ErrorKind),
    BuildProtocol,
    ConnectionMade,
    ConnectionLost { clean: bool },
    ClientConnectionLost,
}

type Events = Rc<RefCell<Vec<Ev>>>;

/// Called synchronously with each event, after it is recorded.
type Hook = Rc<dyn Fn(&Ev)>;

fn no_hook() -> Hook {
    Rc::new(|_: &Ev| {})
}

/// Runs `f` after the current callback returns (in the next timer pass),
/// when the factory has finished reacting to the event.
fn later(f: impl FnOnce() + 'static) {
    twill::call_later(Duration::ZERO, f);
}

fn count(events: &Events, ev: &Ev) -> usize {
    events.borrow().iter().filter(|e| *e == ev).count()
}

/// A client factory that records every callback.
struct Probe {
    events: Events,
    hook: Hook,
    /// The protocol closes the connection as soon as it is made.
    close_on_connect: bool,
    /// `build_protocol` returns `None`.
    refuse: bool,
}

impl Probe {
    fn new(events: &Events, hook: Hook) -> Probe {
        Probe {
            events: events.clone(),
            hook,
            close_on_connect: false,
            refuse: false,
        }
    }

    fn record(&self, ev: Ev) {
        record(&self.events, &self.hook, ev);
    }
}

fn record(events: &Events, hook: &Hook, ev: Ev) {
    events.borrow_mut().push(ev.clone());
    hook(&ev);
}

struct ProbeProtocol {
    events: Events,
    hook: Hook,
    close_on_connect: bool,
}

impl Protocol for ProbeProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        record(&self.events, &self.hook, Ev::ConnectionMade);
        if self.close_on_connect {
            transport.lose_connection();
        }
    }
    fn data_received(&mut self, _data: Bytes) {}
    fn connection_lost(&mut self, reason: &Reason) {
        let clean = reason.is_clean();
        record(&self.events, &self.hook, Ev::ConnectionLost { clean });
    }
}

impl Factory for Probe {
    type Protocol = ProbeProtocol;

    fn build_protocol(&mut self, _peer: twill::Address) -> Option<ProbeProtocol> {
        self.record(Ev::BuildProtocol);
        if self.refuse {
            return None;
        }
        Some(ProbeProtocol {
            events: self.events.clone(),
            hook: self.hook.clone(),
            close_on_connect: self.close_on_connect,
        })
    }
    fn start_factory(&mut self) {
        self.record(Ev::StartFactory);
    }
    fn stop_factory(&mut self) {
        self.record(Ev::StopFactory);
    }
}

impl ClientFactory for Probe {
    fn started_connecting(&mut self, _connector: &Connector) {
        self.record(Ev::StartedConnecting);
    }
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        self.record(Ev::Failed(reason.kind()));
    }
    fn client_connection_lost(&mut self, _connector: &Connector, _reason: &Reason) {
        self.record(Ev::ClientConnectionLost);
    }
}

/// A server protocol that only holds the connection open.
struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _data: Bytes) {}
}

/// A server protocol that closes each connection at once.
struct CloseAtOnce;

impl Protocol for CloseAtOnce {
    fn connection_made(&mut self, transport: &Transport) {
        transport.lose_connection();
    }
    fn data_received(&mut self, _data: Bytes) {}
}

type Rcf = ReconnectingClientFactory<Probe>;

/// Holds the factory handle for hooks created before the factory.
type Slot<T> = Rc<RefCell<Option<T>>>;

fn get<T: Clone>(slot: &Slot<T>) -> T {
    slot.borrow()
        .clone()
        .expect("slot filled before the reactor runs")
}

/// The retry a failure left behind, seen once the factory has reacted.
#[derive(Debug, Clone, Copy)]
struct Retry {
    /// Calls pending on the clock.
    pending: usize,
    /// The delay of the first pending call, from the clock's now.
    delay: Duration,
    /// What the factory will base the next delay on.
    next: Duration,
    retries: u32,
}

fn observe(clock: &Clock, factory: &Rcf) -> Retry {
    let pending = clock.delayed_calls();
    Retry {
        pending: pending.len(),
        delay: pending
            .first()
            .map(|call| call.time() - clock.now())
            .unwrap_or_default(),
        next: factory.current_delay(),
        retries: factory.retries(),
    }
}

fn assert_secs(actual: Duration, expected: f64, what: &str) {
    let diff = (actual.as_secs_f64() - expected).abs();
    assert!(diff < 1e-6, "{what}: {actual:?} is not {expected} s");
}

/// Where the driven factory connects.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// A loopback port that refuses connections.
    Refused,
    /// A listening twill port, with a client factory that refuses to build
    /// a protocol (`build_protocol` returns `None`).
    ListeningButProtocolRefused,
}

/// Connects `configure(factory)` to a port that refuses connections; after
/// each failure records the scheduled retry and advances the clock to it,
/// until `failures` failures (or the factory gives up). Returns what was
/// seen after each failure and every event.
fn drive_refused(configure: impl FnOnce(Rcf) -> Rcf, failures: usize) -> (Vec<Retry>, Events) {
    drive(Target::Refused, configure, failures)
}

/// As [`drive_refused`], for any [`Target`]; an attempt ends with either
/// `client_connection_failed` or `client_connection_lost`.
fn drive(
    target: Target,
    configure: impl FnOnce(Rcf) -> Rcf,
    failures: usize,
) -> (Vec<Retry>, Events) {
    let reactor = Reactor::new().unwrap();
    let clock = Clock::new();
    let events = Events::default();
    let seen: Rc<RefCell<Vec<Retry>>> = Rc::default();
    let slot: Slot<Rcf> = Rc::default();
    let hook: Hook = {
        let (clock, seen, slot) = (clock.clone(), seen.clone(), slot.clone());
        Rc::new(move |ev: &Ev| {
            if !matches!(ev, Ev::Failed(_) | Ev::ClientConnectionLost) {
                return;
            }
            let (clock, seen, slot) = (clock.clone(), seen.clone(), slot.clone());
            later(move || {
                let retry = observe(&clock, &get(&slot));
                seen.borrow_mut().push(retry);
                if retry.pending == 0 || seen.borrow().len() >= failures {
                    twill::stop();
                } else {
                    clock.advance(retry.delay);
                }
            });
        })
    };
    let mut probe = Probe::new(&events, hook);
    let addr = match target {
        Target::Refused => refused_addr(),
        Target::ListeningButProtocolRefused => {
            probe.refuse = true;
            reactor
                .listen_tcp("127.0.0.1:0", |_peer| Quiet)
                .unwrap()
                .host()
                .tcp()
                .unwrap()
        }
    };
    let factory = configure(ReconnectingClientFactory::new(probe)).clock(Rc::new(clock.clone()));
    *slot.borrow_mut() = Some(factory.clone());
    reactor.connect_tcp(addr, factory).unwrap();
    run_bounded(&reactor, LIMIT);
    let seen = seen.borrow().clone();
    (seen, events)
}

// ---------------------------------------------------------------------------
// Plain ClientFactory callbacks
// ---------------------------------------------------------------------------

#[test]
fn a_refused_connect_calls_started_connecting_then_client_connection_failed() {
    let reactor = Reactor::new().unwrap();
    let events = Events::default();
    let hook: Hook = Rc::new(|ev: &Ev| {
        if *ev == Ev::StopFactory {
            twill::stop();
        }
    });
    let connector = reactor
        .connect_tcp(refused_addr(), Probe::new(&events, hook))
        .unwrap();
    assert_eq!(connector.state(), ConnectorState::Connecting);
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        *events.borrow(),
        vec![
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::Failed(io::ErrorKind::ConnectionRefused),
            Ev::StopFactory,
        ]
    );
    assert_eq!(connector.state(), ConnectorState::Disconnected);
}

#[test]
fn a_successful_connect_calls_build_protocol_connection_made_connection_lost_then_client_connection_lost(
) {
    let reactor = Reactor::new().unwrap();
    let port = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let events = Events::default();
    let hook: Hook = Rc::new(|ev: &Ev| {
        if *ev == Ev::StopFactory {
            twill::stop();
        }
    });
    let mut probe = Probe::new(&events, hook);
    probe.close_on_connect = true;
    let connector = reactor.connect_tcp(port.host(), probe).unwrap();
    assert_eq!(connector.destination(), port.host().tcp().unwrap());
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        *events.borrow(),
        vec![
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::BuildProtocol,
            Ev::ConnectionMade,
            Ev::ConnectionLost { clean: true },
            Ev::ClientConnectionLost,
            Ev::StopFactory,
        ]
    );
}

#[test]

fn a_connect_whose_factory_refuses_the_protocol_is_a_failed_attempt() {
    let reactor = Reactor::new().unwrap();
    let port = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let events = Events::default();
    let hook: Hook = Rc::new(|ev: &Ev| {
        if *ev == Ev::StopFactory {
            twill::stop();
        }
    });
    let mut probe = Probe::new(&events, hook);
    probe.refuse = true;
    reactor.connect_tcp(port.host(), probe).unwrap();
    run_bounded(&reactor, LIMIT);
    let events = events.borrow();
    assert_eq!(
        events[..3],
        [Ev::StartFactory, Ev::StartedConnecting, Ev::BuildProtocol]
    );
    assert!(
        matches!(events[3..], [Ev::Failed(_), Ev::StopFactory]),
        "no connection was made, so the attempt failed: {events:?}"
    );
}

// ---------------------------------------------------------------------------
// Back-off
// ---------------------------------------------------------------------------

#[test]
fn without_jitter_retries_come_after_1s_then_e_then_e_squared_capped_at_max_delay() {
    let (seen, events) = drive_refused(
        |factory| factory.jitter(0.0).max_delay(Duration::from_secs(30)),
        6,
    );
    assert_eq!(seen.len(), 6, "{seen:?}");
    let delays = [1.0, E, E * E, E * E * E, 30.0, 30.0];
    let next = [E, E * E, E * E * E, 30.0, 30.0, 30.0];
    for (k, retry) in seen.iter().enumerate() {
        assert_eq!(retry.pending, 1, "retry {}: one call scheduled", k + 1);
        assert_secs(retry.delay, delays[k], &format!("delay of retry {}", k + 1));
        assert_secs(
            retry.next,
            next[k],
            &format!("current_delay after retry {}", k + 1),
        );
        assert_eq!(retry.retries, k as u32 + 1);
    }
    assert_eq!(count(&events, &Ev::StartedConnecting), 6);
    assert_eq!(
        count(&events, &Ev::Failed(io::ErrorKind::ConnectionRefused)),
        6,
        "every attempt was refused: {events:?}"
    );
}

#[test]
fn initial_delay_and_factor_shape_the_retry_delays() {
    let (seen, _) = drive_refused(
        |factory| {
            factory
                .jitter(0.0)
                .initial_delay(Duration::from_millis(250))
                .factor(2.0)
        },
        4,
    );
    let delays: Vec<f64> = seen.iter().map(|r| r.delay.as_secs_f64()).collect();
    for (actual, expected) in delays.iter().zip([0.25, 0.5, 1.0, 2.0]) {
        assert!((actual - expected).abs() < 1e-6, "{delays:?}");
    }
    assert_eq!(delays.len(), 4);
}

#[test]
fn max_retries_gives_up_after_that_many_retries() {
    let (seen, events) = drive_refused(|factory| factory.jitter(0.0).max_retries(3), 10);
    let pending: Vec<usize> = seen.iter().map(|r| r.pending).collect();
    assert_eq!(
        pending,
        vec![1, 1, 1, 0],
        "three retries are scheduled, then none"
    );
    assert_eq!(
        count(&events, &Ev::StartedConnecting),
        4,
        "the first attempt and 3 retries"
    );
    assert_eq!(events.borrow().last(), Some(&Ev::StopFactory));
}

#[test]

fn a_connection_whose_protocol_the_inner_factory_refused_does_not_reset_the_back_off() {
    let (seen, events) = drive(
        Target::ListeningButProtocolRefused,
        |factory| factory.jitter(0.0).max_retries(3),
        10,
    );
    assert!(count(&events, &Ev::BuildProtocol) >= 1, "{events:?}");
    let delays: Vec<f64> = seen.iter().map(|r| r.delay.as_secs_f64()).collect();
    let pending: Vec<usize> = seen.iter().map(|r| r.pending).collect();
    assert_eq!(
        pending,
        vec![1, 1, 1, 0],
        "gives up after 3 retries: {delays:?}"
    );
    for (actual, expected) in delays.iter().zip([1.0, E, E * E]) {
        assert!((actual - expected).abs() < 1e-6, "delays {delays:?}");
    }
}

#[test]
fn with_default_jitter_first_delays_are_spread_around_one_second() {
    const CLIENTS: usize = 20;
    let reactor = Reactor::new().unwrap();
    let clock = Clock::new();
    let events = Events::default();
    let hook: Hook = {
        let events = events.clone();
        Rc::new(move |ev: &Ev| {
            if *ev == Ev::StopFactory && count(&events, ev) == CLIENTS {
                later(twill::stop);
            }
        })
    };
    let addr = refused_addr();
    for _ in 0..CLIENTS {
        let factory = ReconnectingClientFactory::new(Probe::new(&events, hook.clone()))
            .clock(Rc::new(clock.clone()));
        reactor.connect_tcp(addr, factory).unwrap();
    }
    run_bounded(&reactor, LIMIT);
    let delays: Vec<f64> = clock
        .delayed_calls()
        .iter()
        .map(|call| (call.time() - clock.now()).as_secs_f64())
        .collect();
    assert_eq!(delays.len(), CLIENTS, "one retry per client");
    let jitter = 0.119626565582;
    for d in &delays {
        assert!(
            (d - 1.0).abs() < 6.0 * jitter,
            "{d} s is more than 6 deviations from 1 s: {delays:?}"
        );
    }
    let n = CLIENTS as f64;
    let mean = delays.iter().sum::<f64>() / n;
    let deviation = (delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!((mean - 1.0).abs() < 0.12, "mean {mean} s: {delays:?}");
    assert!(
        (0.03..0.3).contains(&deviation),
        "standard deviation {deviation} s, expected about {jitter}: {delays:?}"
    );
}

#[test]
fn with_default_jitter_each_delay_is_drawn_around_factor_times_the_previous_one() {
    let (seen, _) = drive_refused(|factory| factory, 6);
    assert_eq!(seen.len(), 6);
    let delays: Vec<f64> = seen.iter().map(|r| r.delay.as_secs_f64()).collect();
    assert!((delays[0] - 1.0).abs() < 0.6, "first delay {delays:?}");
    for pair in delays.windows(2) {
        let ratio = pair[1] / pair[0] / E;
        assert!(
            (ratio - 1.0).abs() < 0.6,
            "a delay is not near e times the previous one: {delays:?}"
        );
    }
    let distinct = {
        let mut d = delays.clone();
        d.dedup();
        d.len()
    };
    assert!(distinct > 1);
    assert!(
        delays
            .iter()
            .zip([1.0, E, E * E, E.powi(3), E.powi(4), E.powi(5)])
            .any(|(d, exact)| (d - exact).abs() > 1e-9),
        "jitter changed the delays: {delays:?}"
    );
}

// ---------------------------------------------------------------------------
// stop_trying, reset
// ---------------------------------------------------------------------------

#[test]
fn stop_trying_cancels_the_pending_retry_and_nothing_reconnects() {
    let reactor = Reactor::new().unwrap();
    let clock = Clock::new();
    let events = Events::default();
    let slot: Slot<Rcf> = Rc::default();
    let after: Rc<RefCell<Option<(bool, usize, bool)>>> = Rc::default();
    let hook: Hook = {
        let (clock, slot, after) = (clock.clone(), slot.clone(), after.clone());
        Rc::new(move |ev: &Ev| {
            if !matches!(ev, Ev::Failed(_)) {
                return;
            }
            let (clock, slot, after) = (clock.clone(), slot.clone(), after.clone());
            later(move || {
                let factory = get(&slot);
                let retry = clock.delayed_calls().first().cloned();
                factory.stop_trying();
                *after.borrow_mut() = Some((
                    retry.is_some_and(|call| call.cancelled()),
                    clock.delayed_calls().len(),
                    factory.is_trying(),
                ));
                clock.advance(Duration::from_secs(24 * 3600));
                later(twill::stop);
            });
        })
    };
    let factory = ReconnectingClientFactory::new(Probe::new(&events, hook))
        .jitter(0.0)
        .clock(Rc::new(clock.clone()));
    *slot.borrow_mut() = Some(factory.clone());
    let connector = reactor.connect_tcp(refused_addr(), factory).unwrap();
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        *after.borrow(),
        Some((true, 0, false)),
        "(the retry was cancelled, calls left pending, still trying)"
    );
    assert_eq!(count(&events, &Ev::StartedConnecting), 1, "{events:?}");
    assert_eq!(connector.state(), ConnectorState::Disconnected);
}

#[test]
fn stop_trying_while_connecting_abandons_the_attempt_without_a_retry() {
    let reactor = Reactor::new().unwrap();
    let port = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let clock = Clock::new();
    let events = Events::default();
    let factory = ReconnectingClientFactory::new(Probe::new(&events, no_hook()))
        .clock(Rc::new(clock.clone()));
    let keeper = factory.clone();
    let connector = reactor.connect_tcp(port.host(), factory).unwrap();
    assert_eq!(connector.state(), ConnectorState::Connecting);
    keeper.stop_trying();
    assert_eq!(connector.state(), ConnectorState::Disconnected);
    assert!(clock.delayed_calls().is_empty(), "no retry scheduled");
    reactor.call_when_running(twill::stop);
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        *events.borrow(),
        vec![
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::Failed(io::ErrorKind::Interrupted),
            Ev::StopFactory,
        ]
    );
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn stop_trying_keeps_a_live_connection_but_does_not_remake_it_when_it_ends() {
    let reactor = Reactor::new().unwrap();
    let port = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let clock = Clock::new();
    let events = Events::default();
    let slot: Slot<Rcf> = Rc::default();
    let connector_slot: Slot<Connector> = Rc::default();
    let state_after_stop: Rc<RefCell<Option<ConnectorState>>> = Rc::default();
    let pending_after_loss: Rc<RefCell<Option<usize>>> = Rc::default();
    let hook: Hook = {
        let (slot, connector_slot, clock) = (slot.clone(), connector_slot.clone(), clock.clone());
        let (state_after_stop, pending_after_loss) =
            (state_after_stop.clone(), pending_after_loss.clone());
        Rc::new(move |ev: &Ev| match ev {
            Ev::ConnectionMade => {
                get(&slot).stop_trying();
                let connector = get(&connector_slot);
                *state_after_stop.borrow_mut() = Some(connector.state());
                later(move || connector.disconnect());
            }
            Ev::ClientConnectionLost => {
                let (clock, pending_after_loss) = (clock.clone(), pending_after_loss.clone());
                later(move || {
                    *pending_after_loss.borrow_mut() = Some(clock.delayed_calls().len());
                    twill::stop();
                });
            }
            _ => {}
        })
    };
    let factory = ReconnectingClientFactory::new(Probe::new(&events, hook))
        .jitter(0.0)
        .clock(Rc::new(clock.clone()));
    *slot.borrow_mut() = Some(factory.clone());
    let connector = reactor.connect_tcp(port.host(), factory.clone()).unwrap();
    *connector_slot.borrow_mut() = Some(connector);
    run_bounded(&reactor, LIMIT);
    assert_eq!(*state_after_stop.borrow(), Some(ConnectorState::Connected));
    assert_eq!(
        *pending_after_loss.borrow(),
        Some(0),
        "no retry after the loss"
    );
    assert!(!factory.is_trying());
    assert_eq!(count(&events, &Ev::StartedConnecting), 1);
    assert_eq!(count(&events, &Ev::ClientConnectionLost), 1);
}

#[test]
fn a_successful_connection_resets_the_delay_and_a_loss_retries_after_the_initial_delay() {
    let reactor = Reactor::new().unwrap();
    let clock = Clock::new();
    let addr = refused_addr();
    let events = Events::default();
    let slot: Slot<Rcf> = Rc::default();
    let server: Slot<io::Result<ListeningPort>> = Rc::default();
    let failures: Rc<RefCell<Vec<Retry>>> = Rc::default();
    let at_connect: Rc<RefCell<Option<(Duration, u32)>>> = Rc::default();
    let after_loss: Rc<RefCell<Option<Retry>>> = Rc::default();
    let hook: Hook = {
        let (clock, slot, server) = (clock.clone(), slot.clone(), server.clone());
        let (failures, at_connect, after_loss) =
            (failures.clone(), at_connect.clone(), after_loss.clone());
        Rc::new(move |ev: &Ev| match ev {
            Ev::Failed(_) => {
                let (clock, slot, server, failures) = (
                    clock.clone(),
                    slot.clone(),
                    server.clone(),
                    failures.clone(),
                );
                later(move || {
                    let retry = observe(&clock, &get(&slot));
                    failures.borrow_mut().push(retry);
                    if failures.borrow().len() == 2 {
                        // Now something listens there: the next retry connects.
                        let port = twill::reactor().listen_tcp(addr, |_peer| CloseAtOnce);
                        let failed = port.is_err();
                        *server.borrow_mut() = Some(port);
                        if failed {
                            twill::stop();
                            return;
                        }
                    }
                    if failures.borrow().len() > 2 || retry.pending == 0 {
                        twill::stop();
                        return;
                    }
                    clock.advance(retry.delay);
                });
            }
            Ev::ConnectionMade => {
                let factory = get(&slot);
                *at_connect.borrow_mut() = Some((factory.current_delay(), factory.retries()));
            }
            Ev::ClientConnectionLost => {
                let (clock, slot, after_loss) = (clock.clone(), slot.clone(), after_loss.clone());
                later(move || {
                    *after_loss.borrow_mut() = Some(observe(&clock, &get(&slot)));
                    twill::stop();
                });
            }
            _ => {}
        })
    };
    let factory = ReconnectingClientFactory::new(Probe::new(&events, hook))
        .jitter(0.0)
        .clock(Rc::new(clock.clone()));
    *slot.borrow_mut() = Some(factory.clone());
    reactor.connect_tcp(addr, factory).unwrap();
    run_bounded(&reactor, LIMIT);

    if let Some(Err(err)) = &*server.borrow() {
        panic!("could not listen again on {addr}: {err}");
    }
    let failures = failures.borrow();
    assert_eq!(
        failures.len(),
        2,
        "two refused attempts first: {failures:?}"
    );
    assert_secs(failures[0].delay, 1.0, "first retry");
    assert_secs(failures[1].delay, E, "second retry");
    let (delay, retries) = at_connect.borrow().expect("the third attempt connected");
    assert_secs(delay, 1.0, "current_delay once connected");
    assert_eq!(retries, 0, "retries once connected");
    let after = after_loss.borrow().expect("the connection was lost");
    assert_eq!(after.pending, 1, "a loss schedules a retry");
    assert_secs(after.delay, 1.0, "retry after the loss");
    assert_secs(after.next, E, "current_delay after the loss");
    assert_eq!(after.retries, 1);
}

#[test]
fn reset_delay_restores_the_initial_delay_and_resumes_trying() {
    let _reactor = Reactor::new().unwrap();
    let clock = Clock::new();
    let events = Events::default();
    let factory = ReconnectingClientFactory::new(Probe::new(&events, no_hook()))
        .initial_delay(Duration::from_secs(2))
        .clock(Rc::new(clock));
    assert_eq!(factory.current_delay(), Duration::from_secs(2));
    assert!(factory.is_trying());
    factory.stop_trying();
    assert!(!factory.is_trying());
    factory.reset_delay();
    assert!(factory.is_trying());
    assert_eq!(factory.current_delay(), Duration::from_secs(2));
    assert_eq!(factory.retries(), 0);
    assert!(
        events.borrow().is_empty(),
        "no callbacks without a connector"
    );
}

/// Stops the reactor as soon as it is connected.
struct StopWhenConnected;

impl twill::Protocol for StopWhenConnected {
    fn connection_made(&mut self, _transport: &twill::Transport) {
        twill::stop();
    }
    fn data_received(&mut self, _data: twill::Bytes) {}
}

#[test]
fn a_connection_lost_while_the_reactor_stops_schedules_no_retry() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = server.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    });
    let reactor = twill::Reactor::new().unwrap();
    let factory = twill::ReconnectingClientFactory::new(|_peer| StopWhenConnected);
    reactor.connect_tcp(addr, factory.clone()).unwrap();
    let watchdog = reactor.call_later(Duration::from_secs(10), twill::stop);
    reactor.run().unwrap();
    assert!(watchdog.active(), "stopped by the watchdog");
    peer.join().unwrap();
    assert_eq!(
        factory.retries(),
        0,
        "no retry was scheduled during shutdown"
    );
}
