//! The race on a hand-driven clock with fake attempts: every timing of
//! RFC 8305 §5 checked to the millisecond, without a socket or a wait.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::{interleave, Attempts, Race, CONNECTION_ATTEMPT_DELAY};
use crate::defer::Deferred;
use crate::task::Clock;
use crate::time::ReactorTime;

const TIMEOUT: Duration = Duration::from_secs(30);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sock(addr: &str) -> SockAddr {
    addr.parse::<SocketAddr>().unwrap().into()
}

fn text(addr: &SockAddr) -> String {
    addr.as_socket().unwrap().to_string()
}

/// Records what the race asks for, with the clock's time in milliseconds.
struct Fake {
    clock: Clock,
    epoch: Instant,
    log: RefCell<Vec<String>>,
    /// Attempts that fail as they start, by index.
    refuse_start: RefCell<HashMap<usize, io::ErrorKind>>,
    failures: RefCell<Vec<io::Error>>,
}

impl Fake {
    fn new(clock: &Clock) -> Rc<Fake> {
        Rc::new(Fake {
            clock: clock.clone(),
            epoch: clock.now(),
            log: RefCell::new(Vec::new()),
            refuse_start: RefCell::new(HashMap::new()),
            failures: RefCell::new(Vec::new()),
        })
    }

    fn at(&self) -> u128 {
        (self.clock.now() - self.epoch).as_millis()
    }

    fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    fn failure(&self) -> Option<(io::ErrorKind, String)> {
        let failures = self.failures.borrow();
        assert!(failures.len() <= 1, "failed more than once: {failures:?}");
        failures.first().map(|e| (e.kind(), e.to_string()))
    }
}

impl Attempts for Fake {
    fn start(&self, index: usize, addr: &SockAddr) -> io::Result<()> {
        let at = self.at();
        self.log
            .borrow_mut()
            .push(format!("{at}ms start {index} {}", text(addr)));
        match self.refuse_start.borrow().get(&index) {
            Some(kind) => Err(io::Error::new(*kind, "refused at once")),
            None => Ok(()),
        }
    }

    fn abandon(&self, index: usize) {
        let at = self.at();
        self.log
            .borrow_mut()
            .push(format!("{at}ms abandon {index}"));
    }

    fn failed(&self, err: io::Error) {
        let at = self.at();
        self.log
            .borrow_mut()
            .push(format!("{at}ms failed {:?}", err.kind()));
        self.failures.borrow_mut().push(err);
    }
}

fn race(clock: &Clock, fake: &Rc<Fake>) -> Rc<Race> {
    let attempts: Rc<dyn Attempts> = fake.clone();
    let time: Rc<dyn ReactorTime> = Rc::new(clock.clone());
    Race::new(
        time,
        CONNECTION_ATTEMPT_DELAY,
        TIMEOUT,
        "example.test:80".to_owned(),
        &attempts,
    )
}

#[test]
fn families_interleave_starting_with_the_first_answers_family() {
    let v6_first = [
        "[::1]:80",
        "[::2]:80",
        "[::3]:80",
        "10.0.0.1:80",
        "10.0.0.2:80",
    ];
    let ordered: Vec<String> = interleave(v6_first.iter().map(|a| sock(a)).collect())
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        ordered,
        [
            "[::1]:80",
            "10.0.0.1:80",
            "[::2]:80",
            "10.0.0.2:80",
            "[::3]:80"
        ]
    );
    let v4_first = ["10.0.0.1:80", "[::1]:80", "10.0.0.2:80", "10.0.0.1:80"];
    let ordered: Vec<String> = interleave(v4_first.iter().map(|a| sock(a)).collect())
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        ordered,
        ["10.0.0.1:80", "[::1]:80", "10.0.0.2:80"],
        "repeats go"
    );
    assert!(interleave(Vec::new()).is_empty());
}

#[test]
fn the_next_attempt_starts_exactly_at_the_attempt_delay() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let race = race(&clock, &fake);
    race.begin(vec![
        sock("[::1]:80"),
        sock("[::2]:80"),
        sock("10.0.0.1:80"),
    ]);
    assert_eq!(fake.log(), ["0ms start 0 [::1]:80"]);
    clock.advance(ms(249));
    assert_eq!(fake.log().len(), 1, "nothing new before 250 ms");
    clock.advance(ms(1));
    assert_eq!(
        fake.log()[1],
        "250ms start 1 10.0.0.1:80",
        "the other family second"
    );
    clock.advance(ms(250));
    assert_eq!(fake.log()[2], "500ms start 2 [::2]:80");
    clock.advance(ms(5000));
    assert_eq!(fake.log().len(), 3, "no address left, all three in flight");
    assert_eq!(fake.failure(), None);
}

#[test]
fn a_failed_attempt_starts_the_next_at_once_and_its_timer_is_dropped() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let race = race(&clock, &fake);
    race.begin(vec![
        sock("10.0.0.1:80"),
        sock("10.0.0.2:80"),
        sock("10.0.0.3:80"),
    ]);
    clock.advance(ms(10));
    race.attempt_failed(0, io::ErrorKind::ConnectionRefused.into());
    assert_eq!(
        fake.log(),
        ["0ms start 0 10.0.0.1:80", "10ms start 1 10.0.0.2:80"]
    );
    clock.advance(ms(249));
    assert_eq!(fake.log().len(), 2, "the delay counts from the new attempt");
    clock.advance(ms(1));
    assert_eq!(fake.log()[2], "260ms start 2 10.0.0.3:80");
}

#[test]
fn an_attempt_that_fails_to_start_moves_on_at_once() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    fake.refuse_start
        .borrow_mut()
        .insert(0, io::ErrorKind::AddrNotAvailable);
    let race = race(&clock, &fake);
    race.begin(vec![sock("[::1]:80"), sock("10.0.0.1:80")]);
    assert_eq!(
        fake.log(),
        ["0ms start 0 [::1]:80", "0ms start 1 10.0.0.1:80"]
    );
}

#[test]
fn the_first_to_connect_wins_and_every_other_attempt_is_abandoned() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let race = race(&clock, &fake);
    race.begin(vec![
        sock("10.0.0.1:80"),
        sock("10.0.0.2:80"),
        sock("10.0.0.3:80"),
        sock("10.0.0.4:80"),
    ]);
    clock.pump(&[ms(250), ms(250)]);
    assert!(race.attempt_connected(1));
    let log = fake.log();
    assert_eq!(&log[3..], ["500ms abandon 0", "500ms abandon 2"]);
    assert!(!race.attempt_connected(2), "a late success loses");
    race.attempt_failed(0, io::ErrorKind::ConnectionRefused.into());
    clock.advance(TIMEOUT);
    assert_eq!(fake.log().len(), 5, "no start, no failure after the win");
    assert_eq!(fake.failure(), None);
    assert!(clock.delayed_calls().is_empty(), "timers cancelled");
}

#[test]
fn when_every_attempt_fails_the_last_error_is_reported_once() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let race = race(&clock, &fake);
    race.begin(vec![sock("[::1]:80"), sock("10.0.0.1:80")]);
    clock.advance(ms(250));
    race.attempt_failed(1, io::ErrorKind::ConnectionRefused.into());
    assert_eq!(fake.failure(), None, "attempt 0 is still in flight");
    clock.advance(ms(20));
    race.attempt_failed(0, io::ErrorKind::HostUnreachable.into());
    assert_eq!(fake.failure().unwrap().0, io::ErrorKind::HostUnreachable);
    assert_eq!(fake.log().last().unwrap(), "270ms failed HostUnreachable");
    race.attempt_failed(0, io::ErrorKind::ConnectionRefused.into());
    clock.advance(TIMEOUT);
    assert_eq!(fake.failures.borrow().len(), 1);
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn the_deadline_abandons_the_attempts_in_flight() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let race = race(&clock, &fake);
    race.begin(vec![sock("10.0.0.1:80"), sock("10.0.0.2:80")]);
    clock.advance(TIMEOUT);
    let log = fake.log();
    assert_eq!(
        &log[2..],
        [
            "30000ms abandon 0",
            "30000ms abandon 1",
            "30000ms failed TimedOut"
        ]
    );
    assert!(fake.failure().unwrap().1.contains("example.test:80"));
}

#[test]
fn a_lookup_that_never_answers_times_out_and_is_cancelled() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let race = race(&clock, &fake);
    let lookup: Deferred<Vec<SocketAddr>> = Deferred::new();
    let answer = lookup.resolver();
    race.resolve("example.test", lookup);
    clock.advance(TIMEOUT - ms(1));
    assert_eq!(fake.failure(), None);
    clock.advance(ms(1));
    let (kind, message) = fake.failure().unwrap();
    assert_eq!(kind, io::ErrorKind::TimedOut);
    assert!(message.contains("resolving example.test"), "{message}");
    assert!(answer.called(), "the lookup was cancelled");
    // A late answer is swallowed by the cancelled Deferred and starts nothing.
    answer.callback(vec!["10.0.0.1:80".parse().unwrap()]);
    assert_eq!(fake.log(), ["30000ms failed TimedOut"]);
}

#[test]
fn an_answer_starts_the_race_and_a_failed_or_empty_one_ends_it() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let race = race(&clock, &fake);
    let lookup: Deferred<Vec<SocketAddr>> = Deferred::new();
    let answer = lookup.resolver();
    race.resolve("example.test", lookup);
    clock.advance(ms(40));
    answer.callback(vec!["10.0.0.1:80".parse().unwrap()]);
    assert_eq!(fake.log(), ["40ms start 0 10.0.0.1:80"]);

    let fake = Fake::new(&clock);
    let race_failed = self::race(&clock, &fake);
    let lookup: Deferred<Vec<SocketAddr>> = Deferred::new();
    let answer = lookup.resolver();
    race_failed.resolve("nowhere.test", lookup);
    answer.errback(io::Error::new(io::ErrorKind::NotFound, "no such host"));
    let (kind, message) = fake.failure().unwrap();
    assert_eq!(kind, io::ErrorKind::NotFound);
    assert_eq!(message, "could not resolve nowhere.test: no such host");

    let fake = Fake::new(&clock);
    let race_empty = self::race(&clock, &fake);
    race_empty.resolve("empty.test", crate::defer::succeed(Vec::new()));
    assert_eq!(
        fake.failure().unwrap(),
        (
            io::ErrorKind::NotFound,
            "empty.test resolved to no address".to_owned()
        )
    );
    drop(race);
}

#[test]
fn cancelling_abandons_everything_and_reports_nothing() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let race = race(&clock, &fake);
    race.begin(vec![
        sock("10.0.0.1:80"),
        sock("10.0.0.2:80"),
        sock("10.0.0.3:80"),
    ]);
    clock.advance(ms(250));
    race.cancel();
    assert_eq!(&fake.log()[2..], ["250ms abandon 0", "250ms abandon 1"]);
    clock.advance(TIMEOUT);
    assert_eq!(fake.log().len(), 4, "no third attempt, no failure");
    assert!(clock.delayed_calls().is_empty());

    let fake = Fake::new(&clock);
    let resolving = self::race(&clock, &fake);
    let lookup: Deferred<Vec<SocketAddr>> = Deferred::new();
    let answer = lookup.resolver();
    resolving.resolve("example.test", lookup);
    resolving.cancel();
    assert!(answer.called(), "the lookup was cancelled");
    answer.callback(vec!["10.0.0.1:80".parse().unwrap()]);
    assert!(fake.log().is_empty(), "the late answer is ignored");
}

#[test]
fn the_deadline_holds_the_attempts_until_the_race_ends() {
    let clock = Clock::new();
    let fake = Fake::new(&clock);
    let weak = Rc::downgrade(&fake);
    let race = race(&clock, &fake);
    drop(fake);
    assert!(weak.upgrade().is_some(), "the running race keeps its owner");
    race.begin(vec![sock("10.0.0.1:80")]);
    assert!(race.attempt_connected(0));
    assert!(weak.upgrade().is_none(), "and lets go when it is over");
}
