//! Racing connection attempts to the addresses of one host: "happy
//! eyeballs" (RFC 8305), as Twisted's `HostnameEndpoint` does it.
//!
//! A host name often has several addresses, IPv6 and IPv4, and some of them
//! may not work from here: a broken IPv6 route, a server behind one address
//! that is down. Trying them one after another, each with the full connect
//! timeout, makes a client hang for minutes; trying them all at once floods
//! the network. The RFC's middle way, step by step:
//!
//! 1. **Resolve** the name off the reactor thread
//!    ([`NameResolver`](super::NameResolver)); an IP address skips this.
//!    An empty answer or a failed lookup ends the race.
//! 2. **Order** the answers by interleaving address families, starting with
//!    the family of the first answer (RFC 8305 §4, with a "first address
//!    family count" of one): `[v6a, v6b, v4a, v4b]` is tried as
//!    `[v6a, v4a, v6b, v4b]`. The resolver's own order (RFC 6724) says
//!    which family leads, and a broken family then costs one delay, not
//!    one per address.
//! 3. **Start** the first attempt. Start the next one when the current one
//!    fails, or [`CONNECTION_ATTEMPT_DELAY`] (250 ms) after it started,
//!    whichever comes first (§5). Earlier attempts go on meanwhile, so
//!    several may be in flight.
//! 4. The **first to connect wins**: every other attempt is closed, and only
//!    then does the client factory build a protocol, once.
//! 5. When every attempt has **failed**, the race fails with the error of
//!    the attempt that failed last: with one family broken that is the other
//!    family's answer, usually the one that says what is wrong (refused, no
//!    route).
//!
//! One deadline (the connector's timeout) covers the whole race, the lookup
//! included: a resolver that never answers ends in `TimedOut` there.
//!
//! Why 250 ms: §5 recommends 250 ms as the default connection attempt
//! delay (its floor is 100 ms, its ceiling 2 s). A round trip on most
//! working paths is shorter, so a healthy first attempt wins before the
//! second starts, while a dead one is bypassed in a quarter of a second,
//! which people barely notice; Twisted uses 0.3 s.
//!
//! The race knows nothing of sockets: it starts, abandons and reports
//! attempts through the crate's `Attempts` trait, and takes its timers
//! from a [`ReactorTime`], so its tests run it on a
//! [`Clock`](crate::task::Clock) with fake attempts.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use socket2::SockAddr;

use crate::defer::{CancelledError, Deferred, Failure};
use crate::time::{DelayedCall, ReactorTime};

/// How long an attempt has before the next one starts beside it, when it
/// neither connects nor fails: RFC 8305 §5's recommended "Connection
/// Attempt Delay".
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// What a race starts and stops: connection attempts, each known by its
/// index in the ordered addresses.
pub(crate) trait Attempts {
    /// Starts attempt `index` to `addr`. An error means it failed at once;
    /// the race moves on to the next address.
    fn start(&self, index: usize, addr: &SockAddr) -> io::Result<()>;
    /// Closes attempt `index`: another one won, or the race is over.
    fn abandon(&self, index: usize);
    /// The race failed: the lookup failed, every attempt failed, or the
    /// deadline passed. Called once, after every attempt was abandoned.
    fn failed(&self, err: io::Error);
}

/// Orders addresses as RFC 8305 §4 does: without repeats, alternating
/// address families, the family of the first address first.
pub(crate) fn interleave(addrs: Vec<SockAddr>) -> Vec<SockAddr> {
    let mut unique: Vec<SockAddr> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if !unique.contains(&addr) {
            unique.push(addr);
        }
    }
    let Some(first) = unique.first().map(SockAddr::domain) else {
        return unique;
    };
    let (mut leading, mut other): (Vec<SockAddr>, Vec<SockAddr>) =
        unique.into_iter().partition(|addr| addr.domain() == first);
    let mut ordered = Vec::with_capacity(leading.len() + other.len());
    let (mut leading, mut other) = (leading.drain(..), other.drain(..));
    loop {
        match (leading.next(), other.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Resolving,
    Racing,
    Done,
}

/// One race: from the lookup to a winner, a failure or a cancel.
pub(crate) struct Race {
    me: Weak<Race>,
    time: Rc<dyn ReactorTime>,
    attempt_delay: Duration,
    timeout: Duration,
    /// The destination, for messages.
    name: String,
    /// Held weakly: the deadline's timer holds it strongly, so the owner
    /// (which holds the race) lives while the race runs, and nothing is
    /// kept in a cycle once the race ends or its clock goes away.
    attempts: Weak<dyn Attempts>,
    state: RefCell<State>,
}

struct State {
    phase: Phase,
    host: String,
    lookup: Option<Deferred<Vec<SocketAddr>>>,
    addrs: Vec<SockAddr>,
    next: usize,
    in_flight: Vec<usize>,
    last_error: Option<io::Error>,
    next_timer: Option<DelayedCall>,
    deadline: Option<DelayedCall>,
}

/// What a race that just ended still has to let go of.
struct Ended {
    in_flight: Vec<usize>,
    timers: Vec<DelayedCall>,
    lookup: Option<Deferred<Vec<SocketAddr>>>,
}

impl Race {
    /// A race to `name`, with its deadline `timeout` from now on `time`.
    pub(crate) fn new(
        time: Rc<dyn ReactorTime>,
        attempt_delay: Duration,
        timeout: Duration,
        name: String,
        attempts: &Rc<dyn Attempts>,
    ) -> Rc<Race> {
        let race = Rc::new_cyclic(|me| Race {
            me: me.clone(),
            time,
            attempt_delay,
            timeout,
            name,
            attempts: Rc::downgrade(attempts),
            state: RefCell::new(State {
                phase: Phase::Waiting,
                host: String::new(),
                lookup: None,
                addrs: Vec::new(),
                next: 0,
                in_flight: Vec::new(),
                last_error: None,
                next_timer: None,
                deadline: None,
            }),
        });
        let keep_alive = attempts.clone();
        let weak = race.me.clone();
        let deadline = race.time.call_later(
            timeout,
            Box::new(move || {
                if let Some(race) = weak.upgrade() {
                    race.timed_out();
                }
                drop(keep_alive);
            }),
        );
        race.state.borrow_mut().deadline = Some(deadline);
        race
    }

    /// Waits for `lookup`, the addresses of `host`, then races them.
    pub(crate) fn resolve(&self, host: &str, lookup: Deferred<Vec<SocketAddr>>) {
        {
            let mut st = self.state.borrow_mut();
            if st.phase != Phase::Waiting {
                return;
            }
            st.phase = Phase::Resolving;
            st.host = host.to_owned();
        }
        let weak = self.me.clone();
        lookup.add_both(move |answer| {
            if let Some(race) = weak.upgrade() {
                race.resolved(answer);
            }
            Ok(Vec::new())
        });
        let mut st = self.state.borrow_mut();
        if st.phase == Phase::Resolving {
            st.lookup = Some(lookup);
        }
    }

    fn resolved(&self, answer: Result<Vec<SocketAddr>, Failure>) {
        let host = {
            let mut st = self.state.borrow_mut();
            if st.phase != Phase::Resolving {
                return;
            }
            // The lookup is over: nothing is left to cancel in it.
            st.phase = Phase::Waiting;
            std::mem::take(&mut st.host)
        };
        match answer {
            Err(failure) if failure.check::<CancelledError>() => {
                self.fail(io::Error::new(
                    io::ErrorKind::Interrupted,
                    format!("the lookup of {host} was cancelled"),
                ));
            }
            Err(failure) => {
                let kind = failure
                    .downcast_ref::<io::Error>()
                    .map_or(io::ErrorKind::Other, io::Error::kind);
                self.fail(io::Error::new(
                    kind,
                    format!("could not resolve {host}: {failure}"),
                ));
            }
            Ok(addrs) if addrs.is_empty() => {
                self.fail(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} resolved to no address"),
                ));
            }
            Ok(addrs) => {
                log::debug!("{host} resolved to {addrs:?}");
                self.begin(addrs.into_iter().map(SockAddr::from).collect());
            }
        }
    }

    /// Races `addrs` (ordered by [`interleave`] first).
    pub(crate) fn begin(&self, addrs: Vec<SockAddr>) {
        {
            let mut st = self.state.borrow_mut();
            if st.phase != Phase::Waiting {
                return;
            }
            st.phase = Phase::Racing;
            st.addrs = interleave(addrs);
        }
        self.start_next();
    }

    /// Starts the next address's attempt; moves on at once past attempts
    /// that fail to start; ends the race when nothing is left to wait for.
    fn start_next(&self) {
        loop {
            let (index, addr) = {
                let mut st = self.state.borrow_mut();
                if st.phase != Phase::Racing {
                    return;
                }
                if st.next >= st.addrs.len() {
                    if !st.in_flight.is_empty() {
                        return;
                    }
                    let err = st.last_error.take().unwrap_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("no address to connect to for {}", self.name),
                        )
                    });
                    drop(st);
                    self.fail(err);
                    return;
                }
                let index = st.next;
                st.next += 1;
                (index, st.addrs[index].clone())
            };
            let Some(attempts) = self.attempts.upgrade() else {
                return;
            };
            match attempts.start(index, &addr) {
                Ok(()) => {
                    let mut st = self.state.borrow_mut();
                    if st.phase != Phase::Racing {
                        return;
                    }
                    st.in_flight.push(index);
                    if st.next < st.addrs.len() {
                        let weak = self.me.clone();
                        let timer = self.time.call_later(
                            self.attempt_delay,
                            Box::new(move || {
                                if let Some(race) = weak.upgrade() {
                                    race.state.borrow_mut().next_timer = None;
                                    race.start_next();
                                }
                            }),
                        );
                        st.next_timer = Some(timer);
                    }
                    return;
                }
                Err(err) => {
                    log::debug!("attempt {index} to {} failed to start: {err}", self.name);
                    self.state.borrow_mut().last_error = Some(err);
                }
            }
        }
    }

    /// Attempt `index` failed: the next one starts now.
    pub(crate) fn attempt_failed(&self, index: usize, err: io::Error) {
        let timer = {
            let mut st = self.state.borrow_mut();
            let Some(position) = st.in_flight.iter().position(|&i| i == index) else {
                return;
            };
            if st.phase != Phase::Racing {
                return;
            }
            st.in_flight.remove(position);
            log::debug!("attempt {index} to {} failed: {err}", self.name);
            st.last_error = Some(err);
            st.next_timer.take()
        };
        if let Some(timer) = timer {
            let _ = timer.cancel();
        }
        self.start_next();
    }

    /// Attempt `index` connected. Returns whether it won: then every other
    /// attempt has been abandoned and the race is over.
    pub(crate) fn attempt_connected(&self, index: usize) -> bool {
        {
            let st = self.state.borrow();
            if st.phase != Phase::Racing || !st.in_flight.contains(&index) {
                return false;
            }
        }
        let attempts = self.attempts.upgrade();
        if let Some(ended) = self.end() {
            self.release(ended, attempts.as_ref(), Some(index));
        }
        true
    }

    /// Ends the race with no report: every attempt is abandoned, the lookup
    /// cancelled (its late answer is ignored).
    pub(crate) fn cancel(&self) {
        let attempts = self.attempts.upgrade();
        if let Some(ended) = self.end() {
            self.release(ended, attempts.as_ref(), None);
        }
    }

    fn timed_out(&self) {
        let err = {
            let st = self.state.borrow();
            match st.phase {
                Phase::Done => return,
                Phase::Resolving => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("resolving {} timed out after {:?}", st.host, self.timeout),
                ),
                _ => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "connection to {} timed out after {:?}",
                        self.name, self.timeout
                    ),
                ),
            }
        };
        self.fail(err);
    }

    fn fail(&self, err: io::Error) {
        let attempts = self.attempts.upgrade();
        let Some(ended) = self.end() else { return };
        self.release(ended, attempts.as_ref(), None);
        if let Some(attempts) = attempts {
            attempts.failed(err);
        }
    }

    fn end(&self) -> Option<Ended> {
        let mut st = self.state.borrow_mut();
        if st.phase == Phase::Done {
            return None;
        }
        let resolving = st.phase == Phase::Resolving;
        st.phase = Phase::Done;
        Some(Ended {
            in_flight: std::mem::take(&mut st.in_flight),
            timers: st
                .next_timer
                .take()
                .into_iter()
                .chain(st.deadline.take())
                .collect(),
            lookup: if resolving { st.lookup.take() } else { None },
        })
    }

    fn release(&self, ended: Ended, attempts: Option<&Rc<dyn Attempts>>, winner: Option<usize>) {
        for timer in ended.timers {
            let _ = timer.cancel();
        }
        if let Some(lookup) = ended.lookup {
            lookup.cancel();
        }
        if let Some(attempts) = attempts {
            for index in ended.in_flight {
                if Some(index) != winner {
                    attempts.abandon(index);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "happy_eyeballs_tests.rs"]
mod tests;
