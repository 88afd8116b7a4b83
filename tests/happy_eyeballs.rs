//! RFC 8305 over real loopback sockets: a host whose first address never
//! answers, or refuses, and one that works; every address refused; and
//! stopping in the middle. Names come from a `StaticResolver`, so the
//! addresses and their order are the test's. (The exact timings are
//! checked on a hand-driven clock in the race's own unit tests; here only
//! what real sockets add.) Addresses that never answer are on 127.0.0.2
//! and .3, refused ones elsewhere, so a port one test lets go of and
//! another binds cannot mix them up.

mod connect_probe;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use twill::net::StaticResolver;
use twill::{ConnectorState, Reactor};

use connect_probe::{refused_on, Ev, Events, Probe, Quiet, Unanswering};
use support::run_bounded;

const LIMIT: Duration = Duration::from_secs(10);

fn built(ev: &Ev) -> bool {
    matches!(ev, Ev::Built(_))
}

fn failed(ev: &Ev) -> bool {
    matches!(ev, Ev::Failed(_))
}

#[test]
#[cfg(target_os = "linux")]
fn an_address_that_never_answers_is_passed_after_the_attempt_delay() {
    let silent = Unanswering::on("127.0.0.2");
    let baseline = silent.connecting_to();
    let reactor = Reactor::new().unwrap();
    let server = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let working = server.host().to_string().parse::<SocketAddr>().unwrap();
    let names = StaticResolver::new();
    names.insert("pair.test", [silent.addr, working]);
    reactor.set_resolver(names);
    let events = Events::new();
    reactor
        .connect_tcp(("pair.test", 1), Probe::new(&events))
        .unwrap();
    // While the first attempt hangs, its SYNs are on the wire.
    let pending_seen = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = pending_seen.clone();
    let silent_addr = silent.addr;
    reactor.call_later(Duration::from_millis(150), move || {
        seen.set(Unanswering::count_for(silent_addr));
    });
    run_bounded(&reactor, LIMIT);

    let (at, _) = events.when(built).expect("connected");
    assert!(
        at >= Duration::from_millis(250),
        "the second attempt waited: {at:?}"
    );
    assert!(
        at < Duration::from_secs(2),
        "and did not wait for the timeout: {at:?}"
    );
    assert_eq!(
        events.count(built),
        1,
        "one protocol built: {:?}",
        events.kinds()
    );
    assert_eq!(
        events.when(|e| *e == Ev::Built(working)).map(|_| ()),
        Some(())
    );
    assert_eq!(events.count(failed), 0);
    assert_eq!(
        pending_seen.get(),
        baseline + 1,
        "the first attempt was pending"
    );
    assert_eq!(silent.connecting_to(), baseline, "and its socket is closed");
}

#[test]
#[cfg(target_os = "linux")]
fn families_alternate_so_an_ipv6_address_listed_last_is_tried_second() {
    let Ok(v6) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    drop(v6);
    let first = Unanswering::on("127.0.0.2");
    let third = Unanswering::on("127.0.0.3");
    let reactor = Reactor::new().unwrap();
    let server = reactor.listen_tcp("[::1]:0", |_peer| Quiet).unwrap();
    let working = server.host().to_string().parse::<SocketAddr>().unwrap();
    let names = StaticResolver::new();
    names.insert("mixed.test", [first.addr, third.addr, working]);
    reactor.set_resolver(names);
    let events = Events::new();
    let first_baseline = first.connecting_to();
    let third_baseline = third.connecting_to();
    let third_addr = third.addr;
    let third_tried = std::rc::Rc::new(std::cell::Cell::new(0));
    let tried = third_tried.clone();
    reactor.call_later(Duration::from_millis(200), move || {
        tried.set(Unanswering::count_for(third_addr));
    });
    reactor
        .connect_tcp(("mixed.test", 1), Probe::new(&events))
        .unwrap();
    run_bounded(&reactor, LIMIT);
    let (at, _) = events.when(built).expect("connected");
    assert!(
        at >= Duration::from_millis(250) && at < Duration::from_secs(2),
        "{at:?}"
    );
    assert_eq!(events.kinds()[2], Ev::Built(working));
    assert_eq!(events.count(built), 1);
    assert_eq!(
        third_tried.get(),
        third_baseline,
        "the third address was never tried"
    );
    assert_eq!(
        (first.connecting_to(), third.connecting_to()),
        (first_baseline, third_baseline),
        "the losing attempt is closed"
    );
}

#[test]
fn a_refused_address_passes_to_the_next_at_once() {
    let reactor = Reactor::new().unwrap();
    let server = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let working = server.host().to_string().parse::<SocketAddr>().unwrap();
    let names = StaticResolver::new();
    names.insert("refusing.test", [refused_on("127.0.0.4"), working]);
    reactor.set_resolver(names);
    let events = Events::new();
    reactor
        .connect_tcp(("refusing.test", 1), Probe::new(&events))
        .unwrap();
    run_bounded(&reactor, LIMIT);
    let (at, _) = events.when(built).expect("connected");
    assert!(
        at < Duration::from_millis(200),
        "no 250 ms wait after a refusal: {at:?}"
    );
    assert_eq!(
        events.kinds(),
        [
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::Built(working),
            Ev::Made,
            Ev::Lost,
            Ev::StopFactory
        ]
    );
}

#[test]
fn when_every_address_refuses_the_factory_hears_it_once() {
    let reactor = Reactor::new().unwrap();
    let names = StaticResolver::new();
    names.insert(
        "nobody.test",
        [
            refused_on("127.0.0.4"),
            refused_on("127.0.0.5"),
            refused_on("127.0.0.6"),
        ],
    );
    reactor.set_resolver(names);
    let events = Events::new();
    reactor
        .connect_tcp(("nobody.test", 1), Probe::new(&events))
        .unwrap();
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        events.kinds(),
        [
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::Failed(std::io::ErrorKind::ConnectionRefused),
            Ev::StopFactory
        ]
    );
    let (at, _) = events.when(failed).unwrap();
    assert!(
        at < Duration::from_millis(200),
        "refusals chain without delays: {at:?}"
    );
}

#[test]
#[cfg(target_os = "linux")]
fn stop_connecting_during_the_race_closes_every_attempt() {
    let first = Unanswering::on("127.0.0.2");
    let second = Unanswering::on("127.0.0.3");
    let baseline = (first.connecting_to(), second.connecting_to());
    let reactor = Reactor::new().unwrap();
    let names = StaticResolver::new();
    names.insert("stuck.test", [first.addr, second.addr]);
    reactor.set_resolver(names);
    let events = Events::new();
    let mut probe = Probe::new(&events);
    probe.keep_running = true;
    let connector = reactor.connect_tcp(("stuck.test", 1), probe).unwrap();
    let (first_addr, second_addr) = (first.addr, second.addr);
    let in_flight = std::rc::Rc::new(std::cell::Cell::new((0, 0)));
    let seen = in_flight.clone();
    let stopper = reactor.clone();
    reactor.call_later(Duration::from_millis(400), move || {
        seen.set((
            Unanswering::count_for(first_addr),
            Unanswering::count_for(second_addr),
        ));
        connector.stop_connecting();
        assert_eq!(connector.state(), ConnectorState::Disconnected);
        // Anything the race would still do happens meanwhile.
        twill::call_later(Duration::from_millis(400), move || stopper.stop());
    });
    let began = std::time::Instant::now();
    run_bounded(&reactor, LIMIT);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "the reactor stopped promptly"
    );
    assert_eq!(
        in_flight.get(),
        (baseline.0 + 1, baseline.1 + 1),
        "both in flight"
    );
    assert_eq!(
        events.kinds(),
        [
            Ev::StartFactory,
            Ev::StartedConnecting,
            Ev::Failed(std::io::ErrorKind::Interrupted),
            Ev::StopFactory
        ]
    );
    assert_eq!(
        (first.connecting_to(), second.connecting_to()),
        baseline,
        "no socket left connecting"
    );
}
