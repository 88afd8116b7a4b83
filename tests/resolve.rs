//! Name resolution for TCP clients: the system resolver off the reactor
//! thread, a resolver per reactor, lookups that fail, answer nothing or
//! never answer, stopping during a lookup, and `Reactor::resolve`.

mod connect_probe;
mod support;

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use twill::defer::{defer_to_thread, Deferred};
use twill::net::{NameResolver, StaticResolver, SystemResolver};
use twill::{ConnectorState, Reactor};

use connect_probe::{Ev, Events, Probe, Quiet};
use support::run_bounded;

const LIMIT: Duration = Duration::from_secs(10);

fn built(ev: &Ev) -> bool {
    matches!(ev, Ev::Built(_))
}

/// The system resolver, after 200 ms of blocking work on the thread pool
/// (a slow DNS server): which thread ran it is kept.
struct SlowSystem {
    pool_thread: Arc<Mutex<Option<ThreadId>>>,
}

impl NameResolver for SlowSystem {
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>> {
        let host = host.to_owned();
        let pool_thread = self.pool_thread.clone();
        defer_to_thread(move || {
            *pool_thread.lock().unwrap() = Some(thread::current().id());
            thread::sleep(Duration::from_millis(200));
            Ok(())
        })
        .then(move |()| SystemResolver.resolve(&host, port))
    }
}

#[test]
fn localhost_resolves_off_the_reactor_thread_and_connects() {
    let reactor = Reactor::new().unwrap();
    let server = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let port = server.host().port().unwrap();
    let pool_thread = Arc::new(Mutex::new(None));
    reactor.set_resolver(SlowSystem {
        pool_thread: pool_thread.clone(),
    });
    let events = Events::new();
    let timer_ran_at = Rc::new(Cell::new(None));
    let (ran_at, clock) = (timer_ran_at.clone(), events.clone());
    reactor.call_later(Duration::from_millis(10), move || {
        ran_at.set(Some(clock.elapsed()))
    });
    reactor
        .connect_tcp(("localhost", port), Probe::new(&events))
        .unwrap();
    run_bounded(&reactor, LIMIT);

    let (connected_at, _) = events.when(built).expect("connected");
    assert!(
        connected_at >= Duration::from_millis(200),
        "{connected_at:?}"
    );
    let timer = timer_ran_at.get().expect("the timer ran");
    assert!(
        timer < Duration::from_millis(150),
        "the 10 ms timer ran during the 200 ms lookup, at {timer:?}"
    );
    let pool = pool_thread.lock().unwrap().expect("the lookup ran");
    assert_ne!(pool, thread::current().id(), "not on the reactor thread");
    assert_eq!(events.count(built), 1);
    let Some(Ev::Built(peer)) = events.kinds().into_iter().find(built) else {
        unreachable!()
    };
    assert!(peer.ip().is_loopback() && peer.port() == port, "{peer}");
}

#[test]
fn an_ip_address_never_reaches_the_resolver() {
    let reactor = Reactor::new().unwrap();
    let server = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let names = StaticResolver::new();
    reactor.set_resolver(names.clone());
    let events = Events::new();
    reactor
        .connect_tcp(server.host(), Probe::new(&events))
        .unwrap();
    run_bounded(&reactor, LIMIT);
    assert_eq!(events.count(built), 1);
    assert!(names.lookups().is_empty());
}

fn failure_of(reactor: &Reactor, host: &str, timeout: Duration) -> (Vec<Ev>, Duration, String) {
    let events = Events::new();
    reactor
        .connect_tcp_with_timeout((host, 80), timeout, Probe::new(&events))
        .unwrap();
    run_bounded(reactor, LIMIT);
    let (at, message) = events.when(|e| matches!(e, Ev::Failed(_))).expect("failed");
    (events.kinds(), at, message)
}

#[test]
fn a_failed_lookup_reaches_the_factory_with_its_kind_and_the_host() {
    let reactor = Reactor::new().unwrap();
    let names = StaticResolver::new();
    names.insert_failure(
        "flaky.test",
        io::ErrorKind::ConnectionReset,
        "server went away",
    );
    reactor.set_resolver(names);
    let (kinds, _, message) = failure_of(&reactor, "flaky.test", LIMIT);
    assert_eq!(
        kinds,
        [
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::Failed(io::ErrorKind::ConnectionReset),
            Ev::StopFactory
        ]
    );
    assert_eq!(message, "could not resolve flaky.test: server went away");
}

#[test]
fn an_unknown_name_fails_with_not_found() {
    let reactor = Reactor::new().unwrap();
    reactor.set_resolver(StaticResolver::new());
    let (kinds, _, message) = failure_of(&reactor, "unknown.test", LIMIT);
    assert_eq!(kinds[2], Ev::Failed(io::ErrorKind::NotFound));
    assert!(message.contains("unknown.test"), "{message}");
}

#[test]
fn an_empty_answer_fails_as_resolved_to_no_address() {
    let reactor = Reactor::new().unwrap();
    let names = StaticResolver::new();
    names.insert("empty.test", []);
    reactor.set_resolver(names);
    let (kinds, _, message) = failure_of(&reactor, "empty.test", LIMIT);
    assert_eq!(kinds[2], Ev::Failed(io::ErrorKind::NotFound));
    assert_eq!(message, "empty.test resolved to no address");
}

#[test]
fn a_resolver_that_never_answers_times_out_at_the_connector_timeout() {
    let reactor = Reactor::new().unwrap();
    let names = StaticResolver::new();
    names.insert_silence("silent.test");
    reactor.set_resolver(names);
    let (kinds, at, message) = failure_of(&reactor, "silent.test", Duration::from_millis(300));
    assert_eq!(kinds[2], Ev::Failed(io::ErrorKind::TimedOut));
    assert!(message.contains("resolving silent.test"), "{message}");
    assert!(
        at >= Duration::from_millis(300) && at < Duration::from_millis(1500),
        "{at:?}"
    );
}

#[test]
fn stop_connecting_during_the_lookup_ignores_its_late_answer() {
    let reactor = Reactor::new().unwrap();
    let accepted = Rc::new(Cell::new(0));
    let count = accepted.clone();
    let server = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| {
            count.set(count.get() + 1);
            Quiet
        })
        .unwrap();
    let names = StaticResolver::new();
    names.insert("later.test", [server.host().to_string().parse().unwrap()]);
    names.set_delay("later.test", Duration::from_millis(100));
    reactor.set_resolver(names);
    let events = Events::new();
    let mut probe = Probe::new(&events);
    probe.keep_running = true;
    let connector = reactor.connect_tcp(("later.test", 1), probe).unwrap();
    let stopper = reactor.clone();
    reactor.call_later(Duration::from_millis(20), move || {
        connector.stop_connecting();
        assert_eq!(connector.state(), ConnectorState::Disconnected);
        twill::call_later(Duration::from_millis(300), move || stopper.stop());
    });
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        events.kinds(),
        [
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::Failed(io::ErrorKind::Interrupted),
            Ev::StopFactory
        ]
    );
    assert_eq!(
        accepted.get(),
        0,
        "the answer that came at 100 ms connected nothing"
    );
}

#[test]
fn connecting_again_after_a_failed_lookup_resolves_again() {
    let reactor = Reactor::new().unwrap();
    let server = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let working: SocketAddr = server.host().to_string().parse().unwrap();
    let names = StaticResolver::new();
    reactor.set_resolver(names.clone());
    let events = Events::new();
    let mut probe = Probe::new(&events);
    let table = names.clone();
    probe.on_failed = Some(Box::new(move |connector| {
        table.insert("late.test", [working]);
        connector.connect();
    }));
    reactor.connect_tcp(("late.test", 1), probe).unwrap();
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        events.kinds(),
        [
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::Failed(io::ErrorKind::NotFound),
            Ev::StartedConnecting,
            Ev::Built(working),
            Ev::Made,
            Ev::Lost,
            Ev::StopFactory
        ]
    );
    assert_eq!(names.lookups(), ["late.test", "late.test"]);
}

#[test]
fn each_reactor_has_its_own_resolver_and_resolve_gives_ip_addresses() {
    let first = Reactor::new().unwrap();
    let second = Reactor::new().unwrap();
    let (a, b) = (StaticResolver::new(), StaticResolver::new());
    a.insert_ips("host.test", ["10.0.0.1".parse().unwrap()]);
    b.insert(
        "host.test",
        ["10.0.0.2:7".parse().unwrap(), "10.0.0.2:8".parse().unwrap()],
    );
    first.set_resolver(a.clone());
    second.set_resolver(b.clone());
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        first.resolve("host.test").result().unwrap().unwrap(),
        [ip("10.0.0.1")]
    );
    assert_eq!(
        second.resolve("host.test").result().unwrap().unwrap(),
        [ip("10.0.0.2")],
        "one address, once"
    );
    assert_eq!((a.lookups().len(), b.lookups().len()), (1, 1));
    drop(first);
    let third = Reactor::new().unwrap();
    let system = third.resolve("localhost");
    let answer = Rc::new(Cell::new(None));
    let got = answer.clone();
    system.add_both(move |result| {
        got.set(Some(result.clone().map_err(|f| f.to_string())));
        twill::stop();
        result
    });
    run_bounded(&third, LIMIT);
    let ips = answer
        .take()
        .expect("answered")
        .expect("localhost resolves");
    assert!(
        ips.iter().all(IpAddr::is_loopback) && !ips.is_empty(),
        "{ips:?}"
    );
}
