//! User events (`Transport::fire_event` / `Protocol::event_received`),
//! write completion (`Protocol::write_complete`) and flush Deferreds
//! (`Transport::flushed`), over real loopback sockets with plain
//! `std::net` peers on other threads, then on `StringTransport`.
//!
//! The rules, from their documentation:
//!
//! - an event arrives once the code that fired it has returned: fired
//!   from outside the protocol (a timer, another connection's callback),
//!   when that code returns to the reactor; fired while the protocol runs,
//!   when that callback returns (never re-entering it); first fired first
//!   delivered; an event for a
//!   closed connection is dropped; a panic in `event_received` closes that
//!   connection only, with `Panicked { callback: "event_received", .. }`.
//!   (Netty's `userEventTriggered`, which Twisted lacks.)
//! - `write_complete` comes once per flush that empties a write buffer
//!   that held bytes (Netty's `channelWritabilityChanged`/write-completion
//!   listeners; asyncio's `drain` for the whole buffer).
//! - `flushed()` fires once every byte written before the call is in the
//!   kernel, in call order; bytes written after the call do not delay it;
//!   it fails with `NotSent` if the connection ends first (abort, reset by
//!   the peer, the hard cap). Netty's write promise.
//!
//! Every run is bounded by `twill_test_support::reactor::run`'s watchdog,
//! every client read and write by socket timeouts or channel timeouts.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use twill::defer::Deferred;
use twill::testing::{assert_no_result, failure_result_of, success_result_of, StringTransport};
use twill::transport::{NotSent, WriteBufferFull};
use twill::{Bytes, Event, Panicked, Protocol, Reactor, Reason, Transport};
use twill_test_support::events::{describe, Log};
use twill_test_support::pressure::when_stuck;
use twill_test_support::pressure::{connect_small, SMALL_RCVBUF};
use twill_test_support::reactor::{connect, serve, LIMIT};

const MIB: usize = 1 << 20;

/// Logs how `d` ends, as `"{name} sent"` or `"{name} not sent"`, and
/// consumes the failure.
fn record(d: &Deferred<()>, log: &Log, name: &'static str) {
    let log = log.clone();
    d.add_both(move |outcome| {
        match outcome {
            Ok(()) => log.push(format!("{name} sent")),
            Err(failure) if failure.check::<NotSent>() => log.push(format!("{name} not sent")),
            Err(failure) => log.push(format!("{name} failed with something else: {failure}")),
        }
        Ok(())
    });
}

/// As [`record`], and on success also how far the transport had sent.
fn record_progress(d: &Deferred<()>, log: &Log, name: &'static str, transport: &Transport) {
    let (log, transport) = (log.clone(), transport.clone());
    d.add_both(move |outcome| {
        match outcome {
            Ok(()) => log.push(format!(
                "{name} sent ({} of {} bytes sent)",
                transport.bytes_sent(),
                transport.bytes_written()
            )),
            Err(failure) if failure.check::<NotSent>() => log.push(format!("{name} not sent")),
            Err(failure) => log.push(format!("{name} failed with something else: {failure}")),
        }
        Ok(())
    });
}

/// The event's text (every event in these tests is a `&'static str`).
fn text(event: Event) -> &'static str {
    event
        .downcast::<&'static str>()
        .expect("a &'static str event")
}

// ---------------------------------------------------------------------------
// event_received
// ---------------------------------------------------------------------------

/// The first connection: announces itself, and logs the events it gets.
/// With `fire_back`, answers an event by firing one back at the firer.
struct Target {
    log: Log,
    shared: Rc<RefCell<Option<Transport>>>,
    firer: Rc<RefCell<Option<Transport>>>,
    fire_back: bool,
    panic_on_event: bool,
}

impl Protocol for Target {
    fn connection_made(&mut self, transport: &Transport) {
        *self.shared.borrow_mut() = Some(transport.clone());
        transport.write("ready");
    }
    fn data_received(&mut self, _: Bytes) {}
    fn event_received(&mut self, event: Event) {
        let name = text(event);
        self.log.push(format!("target got {name}"));
        if self.panic_on_event {
            panic!("target cannot take {name}");
        }
        if self.fire_back {
            let firer = self.firer.borrow().clone().unwrap();
            firer.fire_event(Event::new("pong"));
            self.log.push("target: fire_event back returned");
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        // Only a failure is logged: when a clean close comes depends on
        // when the client thread closes.
        if let Reason::Failed(err) = reason {
            match err.downcast_ref::<Panicked>() {
                Some(p) => self.log.push(format!(
                    "target lost: {} panicked: {}",
                    p.callback, p.message
                )),
                None => self.log.push(format!("target lost: failed {err}")),
            }
        }
    }
}

/// The second connection: for each read, fires `ping` at the target, then
/// echoes.
struct Firer {
    log: Log,
    transport: Option<Transport>,
    me: Rc<RefCell<Option<Transport>>>,
    target: Rc<RefCell<Option<Transport>>>,
}

impl Protocol for Firer {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        *self.me.borrow_mut() = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.log.push("firer: firing");
        let target = self.target.borrow().clone().unwrap();
        target.fire_event(Event::new("ping"));
        self.log.push("firer: fire_event returned");
        self.transport.as_ref().unwrap().write(data);
    }
    fn event_received(&mut self, event: Event) {
        self.log.push(format!("firer got {}", text(event)));
    }
}

/// Serves a `Target` to the first connection and a `Firer` to the others.
fn target_and_firer(
    log: &Log,
    fire_back: bool,
    panic_on_event: bool,
) -> impl FnMut(twill::Address) -> Box<dyn Protocol> {
    let (log, target, firer) = (log.clone(), Rc::default(), Rc::default());
    let mut accepted = 0;
    move |_peer| -> Box<dyn Protocol> {
        accepted += 1;
        if accepted == 1 {
            Box::new(Target {
                log: log.clone(),
                shared: Rc::clone(&target),
                firer: Rc::clone(&firer),
                fire_back,
                panic_on_event,
            })
        } else {
            Box::new(Firer {
                log: log.clone(),
                transport: None,
                me: Rc::clone(&firer),
                target: Rc::clone(&target),
            })
        }
    }
}

fn read_n(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream
        .read_exact(&mut buf)
        .expect("read within the timeout");
    buf
}

#[test]
fn an_event_fired_from_another_connections_callback_arrives_once_that_callback_returns() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    serve(
        &reactor,
        target_and_firer(&log, false, false),
        |addr, handle| {
            let mut target = connect(addr);
            assert_eq!(read_n(&mut target, 5), b"ready");
            let mut firer = connect(addr);
            firer.write_all(b"go").unwrap();
            assert_eq!(read_n(&mut firer, 2), b"go");
            handle.stop();
        },
    );
    assert_eq!(
        log.events(),
        [
            "firer: firing",
            "firer: fire_event returned",
            "target got ping",
        ]
    );
}

#[test]
fn an_event_fired_back_at_a_protocol_that_is_running_waits_until_its_callback_returns() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    serve(
        &reactor,
        target_and_firer(&log, true, false),
        |addr, handle| {
            let mut target = connect(addr);
            assert_eq!(read_n(&mut target, 5), b"ready");
            let mut firer = connect(addr);
            firer.write_all(b"go").unwrap();
            assert_eq!(read_n(&mut firer, 2), b"go");
            handle.stop();
        },
    );
    assert_eq!(
        log.events(),
        [
            "firer: firing",
            "firer: fire_event returned",
            "target got ping",
            "target: fire_event back returned",
            "firer got pong",
        ],
        "no protocol is entered by the code that fires at it"
    );
}

/// Fires events at itself from its own callbacks, and logs when each
/// callback starts and returns.
struct SelfFiring {
    log: Log,
    transport: Option<Transport>,
}

impl Protocol for SelfFiring {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.log.push("connection_made");
        transport.fire_event(Event::new("from connection_made"));
        self.log.push("connection_made returns");
    }
    fn data_received(&mut self, _: Bytes) {
        let transport = self.transport.as_ref().unwrap();
        self.log.push("data_received");
        transport.fire_event(Event::new("first"));
        transport.fire_event(Event::new("second"));
        self.log.push("data_received returns");
    }
    fn event_received(&mut self, event: Event) {
        let name = text(event);
        self.log.push(format!("event {name}"));
        let transport = self.transport.as_ref().unwrap();
        match name {
            "first" => {
                transport.fire_event(Event::new("fired from event_received"));
                self.log.push("event first returns");
            }
            "fired from event_received" => transport.write("done"),
            _ => {}
        }
    }
}

#[test]
fn an_event_fired_from_the_protocols_own_callback_arrives_after_it_returns_in_firing_order() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    serve(
        &reactor,
        move |_peer| SelfFiring {
            log: server_log.clone(),
            transport: None,
        },
        |addr, handle| {
            let mut client = connect(addr);
            client.write_all(b"x").unwrap();
            assert_eq!(read_n(&mut client, 4), b"done");
            handle.stop();
        },
    );
    assert_eq!(
        log.events(),
        [
            "connection_made",
            "connection_made returns",
            "event from connection_made",
            "data_received",
            "data_received returns",
            "event first",
            "event first returns",
            "event second",
            "event fired from event_received",
        ]
    );
}

/// Fires an event at itself from a timer.
struct TimerFired {
    log: Log,
}

impl Protocol for TimerFired {
    fn connection_made(&mut self, transport: &Transport) {
        let (transport, log) = (transport.clone(), self.log.clone());
        twill::call_later(Duration::ZERO, move || {
            log.push("timer: firing");
            transport.fire_event(Event::new("tick"));
            log.push("timer: fire_event returned");
            transport.write("done");
        });
    }
    fn data_received(&mut self, _: Bytes) {}
    fn event_received(&mut self, event: Event) {
        self.log.push(format!("event {}", text(event)));
    }
}

#[test]
fn an_event_fired_from_a_timer_arrives_once_the_timer_returns() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    serve(
        &reactor,
        move |_peer| TimerFired {
            log: server_log.clone(),
        },
        |addr, handle| {
            let mut client = connect(addr);
            assert_eq!(read_n(&mut client, 4), b"done");
            handle.stop();
        },
    );
    assert_eq!(
        log.events(),
        ["timer: firing", "timer: fire_event returned", "event tick"]
    );
}

/// Fires events at its own connection once it is closed: from
/// `connection_lost`, and from a timer after it.
struct FiresWhenClosed {
    log: Log,
    transport: Option<Transport>,
}

impl Protocol for FiresWhenClosed {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, _: Bytes) {}
    fn event_received(&mut self, event: Event) {
        self.log.push(format!("event {}", text(event)));
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
        let transport = self.transport.clone().unwrap();
        transport.fire_event(Event::new("from connection_lost"));
        let log = self.log.clone();
        twill::call_later(Duration::ZERO, move || {
            transport.fire_event(Event::new("from a timer after the loss"));
            log.push("fired at the closed connection");
            twill::stop();
        });
    }
}

#[test]
fn an_event_for_a_closed_connection_is_dropped() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    serve(
        &reactor,
        move |_peer| FiresWhenClosed {
            log: server_log.clone(),
            transport: None,
        },
        |addr, _handle| {
            let client = connect(addr);
            client.shutdown(Shutdown::Write).unwrap();
        },
    );
    assert_eq!(
        log.events(),
        ["lost: done", "fired at the closed connection"],
        "no event reached the protocol after connection_lost"
    );
}

#[test]
fn a_panic_in_event_received_closes_only_that_connection_and_not_the_firers() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let (doomed_end, replies) = serve(
        &reactor,
        target_and_firer(&log, false, true),
        |addr, handle| {
            let mut doomed = connect(addr);
            assert_eq!(read_n(&mut doomed, 5), b"ready");
            let mut healthy = connect(addr);
            healthy.write_all(b"ping").unwrap();
            let first = read_n(&mut healthy, 4);
            let mut rest = Vec::new();
            let doomed_end = doomed.read_to_end(&mut rest).map(|_| rest);
            // The firer keeps being served; its events for the closed
            // target are dropped now.
            healthy.write_all(b"again").unwrap();
            let second = read_n(&mut healthy, 5);
            handle.stop();
            (doomed_end.map_err(|e| e.kind()), [first, second])
        },
    );
    assert_eq!(
        doomed_end,
        Ok(Vec::new()),
        "the failed connection is closed with a FIN"
    );
    assert_eq!(replies, [b"ping".to_vec(), b"again".to_vec()]);
    assert_eq!(
        log.events(),
        [
            "firer: firing",
            "firer: fire_event returned",
            "target got ping",
            "target lost: event_received panicked: target cannot take ping",
            "firer: firing",
            "firer: fire_event returned",
        ]
    );
}

/// Answers, then fires an event at itself whose delivery panics.
struct PanicsOnOwnEvent {
    log: Log,
    transport: Option<Transport>,
}

impl Protocol for PanicsOnOwnEvent {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, _: Bytes) {
        let transport = self.transport.as_ref().unwrap();
        transport.write("ok");
        transport.fire_event(Event::new("bad news"));
        self.log.push("data_received returns");
    }
    fn event_received(&mut self, event: Event) {
        panic!("cannot take {}", text(event));
    }
    fn connection_lost(&mut self, reason: &Reason) {
        if let Reason::Failed(err) = reason {
            if let Some(p) = err.downcast_ref::<Panicked>() {
                self.log
                    .push(format!("lost: {} panicked: {}", p.callback, p.message));
            }
        }
        twill::stop();
    }
}

#[test]
fn a_panic_in_a_queued_event_closes_the_connection_after_sending_what_was_written() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let got = serve(
        &reactor,
        move |_peer| PanicsOnOwnEvent {
            log: server_log.clone(),
            transport: None,
        },
        |addr, _handle| {
            let mut client = connect(addr);
            client.write_all(b"x").unwrap();
            let mut all = Vec::new();
            client
                .read_to_end(&mut all)
                .map(|_| all)
                .map_err(|e| e.kind())
        },
    );
    assert_eq!(got, Ok(b"ok".to_vec()));
    assert_eq!(
        log.events(),
        [
            "data_received returns",
            "lost: event_received panicked: cannot take bad news"
        ]
    );
}

// ---------------------------------------------------------------------------
// write_complete
// ---------------------------------------------------------------------------

/// Writes 1 MiB eight times when connected, then echoes; logs write
/// completion with the transport's counters.
struct BigWriter {
    log: Log,
    transport: Option<Transport>,
    /// Told when the protocol is paused: the client reads only then.
    paused: mpsc::Sender<()>,
}

impl Protocol for BigWriter {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        for _ in 0..8 {
            transport.write(vec![b'x'; MIB]);
        }
    }
    fn data_received(&mut self, data: Bytes) {
        self.log.push(format!("data {}", data.len()));
        self.transport.as_ref().unwrap().write(data);
    }
    fn pause_writing(&mut self) {
        self.log.push("pause_writing");
        let _ = self.paused.send(());
    }
    fn write_complete(&mut self) {
        let transport = self.transport.as_ref().unwrap();
        self.log.push(format!(
            "write_complete: {} of {} bytes sent, {} buffered",
            transport.bytes_sent(),
            transport.bytes_written(),
            transport.write_buffer_size()
        ));
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

/// The loopback kernel takes a few MiB at once even from a peer with a
/// 4 KiB receive window (the send buffer is sized from the loopback MSS),
/// and more if the peer reads meanwhile, so the client reads only once the
/// protocol was paused: eight 1 MiB writes then need many flushes, and the
/// one `write_complete` comes after the last.
#[test]
fn write_complete_comes_once_after_8_writes_of_1_mib_are_all_sent_then_once_per_emptying_flush() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (paused_tx, paused) = mpsc::channel();
    serve(
        &reactor,
        move |_peer| BigWriter {
            log: server_log.clone(),
            transport: None,
            paused: paused_tx.clone(),
        },
        move |addr, _handle| {
            // A 4 KiB receive window, and nothing read before the pause.
            let mut client = connect_small(addr, SMALL_RCVBUF);
            paused
                .recv_timeout(LIMIT)
                .expect("the protocol was never paused");
            let big = read_n(&mut client, 8 * MIB);
            assert!(big.iter().all(|&b| b == b'x'));
            client.write_all(b"y").unwrap();
            assert_eq!(read_n(&mut client, 1), b"y");
        },
    );
    let events = log.events();
    assert_eq!(
        events.first().map(String::as_str),
        Some("pause_writing"),
        "the MiB did not go out in one flush: {events:?}"
    );
    let completions: Vec<_> = events
        .iter()
        .filter(|e| e.starts_with("write_complete") || e.starts_with("data"))
        .cloned()
        .collect();
    assert_eq!(
        completions,
        [
            format!("write_complete: {0} of {0} bytes sent, 0 buffered", 8 * MIB),
            "data 1".to_owned(),
            format!(
                "write_complete: {0} of {0} bytes sent, 0 buffered",
                8 * MIB + 1
            ),
        ]
    );
    assert_eq!(events.last().map(String::as_str), Some("lost: done"));
}

/// Never writes.
struct Silent {
    log: Log,
}

impl Protocol for Silent {
    fn data_received(&mut self, _: Bytes) {
        self.log.push("data");
    }
    fn write_complete(&mut self) {
        self.log.push("write_complete");
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

#[test]
fn no_write_complete_for_a_connection_that_wrote_nothing() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    serve(
        &reactor,
        move |_peer| Silent {
            log: server_log.clone(),
        },
        |addr, _handle| {
            let mut client = connect(addr);
            client.write_all(b"hello").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).unwrap();
        },
    );
    assert_eq!(log.events(), ["data", "lost: done"]);
}

// ---------------------------------------------------------------------------
// flushed
// ---------------------------------------------------------------------------

/// Takes flush Deferreds between small writes when connected.
struct FlushOrder {
    log: Log,
}

impl Protocol for FlushOrder {
    fn connection_made(&mut self, transport: &Transport) {
        let nothing = transport.flushed();
        self.log.push(format!(
            "with nothing written: {}",
            if nothing.called() {
                "fired at once"
            } else {
                "pending"
            }
        ));
        success_result_of(&nothing);
        transport.write("a");
        let first = transport.flushed();
        transport.write("bc");
        let second = transport.flushed();
        assert_no_result(&first);
        assert_no_result(&second);
        record_progress(&first, &self.log, "first", transport);
        record_progress(&second, &self.log, "second", transport);
        self.log.push("connection_made returns");
    }
    fn data_received(&mut self, _: Bytes) {}
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

#[test]
fn flushed_fires_once_the_bytes_before_it_are_in_the_kernel_in_call_order() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    serve(
        &reactor,
        move |_peer| FlushOrder {
            log: server_log.clone(),
        },
        |addr, _handle| {
            let mut client = connect(addr);
            assert_eq!(read_n(&mut client, 3), b"abc");
        },
    );
    assert_eq!(
        log.events(),
        [
            "with nothing written: fired at once",
            "connection_made returns",
            "first sent (3 of 3 bytes sent)",
            "second sent (3 of 3 bytes sent)",
            "lost: done",
        ]
    );
}

/// What the test does once the 8 MiB are stuck.
#[derive(Clone, Copy, PartialEq)]
enum OnStuck {
    /// The server aborts.
    Abort,
    /// The client is told to read everything.
    PeerReads,
    /// The client is told to reset the connection.
    PeerResets,
}

/// Writes a small head, then 8 MiB, to a peer that does not read, taking
/// a flush Deferred after each; acts as `on_stuck` says once stuck.
struct Stuffer {
    log: Log,
    on_stuck: OnStuck,
    tell_peer: mpsc::Sender<()>,
}

impl Protocol for Stuffer {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_write_buffer_max(64 * MIB);
        transport.write("head");
        let head = transport.flushed();
        record(&head, &self.log, "head");
        transport.write(vec![b'x'; 8 * MIB]);
        let body = transport.flushed();
        record_progress(&body, &self.log, "body", transport);

        let (log, on_stuck, tell_peer) = (self.log.clone(), self.on_stuck, self.tell_peer.clone());
        let stuck = transport.clone();
        when_stuck(transport.clone(), move || {
            log.push("stuck");
            assert_no_result(&body);
            match on_stuck {
                OnStuck::Abort => {
                    stuck.abort_connection();
                    record(&stuck.flushed(), &log, "flushed after the abort");
                    tell_peer.send(()).unwrap();
                }
                OnStuck::PeerReads | OnStuck::PeerResets => tell_peer.send(()).unwrap(),
            }
        });
    }
    fn data_received(&mut self, _: Bytes) {}
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

/// Runs a `Stuffer` against a client that does not read until told; then
/// reads everything (`PeerReads`), resets (`PeerResets`) or reads what is
/// left until the server's reset (`Abort`).
fn stuff(on_stuck: OnStuck) -> Vec<String> {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (tell_peer, told) = mpsc::channel();
    serve(
        &reactor,
        move |_peer| Stuffer {
            log: server_log.clone(),
            on_stuck,
            tell_peer: tell_peer.clone(),
        },
        move |addr, _handle| {
            let mut client = connect_small(addr, SMALL_RCVBUF);
            match on_stuck {
                OnStuck::Abort => {
                    told.recv_timeout(LIMIT).expect("told of the abort");
                    // Reading what is left ends with the server's reset.
                    let mut rest = Vec::new();
                    let _ = client.read_to_end(&mut rest);
                }
                OnStuck::PeerReads => {
                    told.recv_timeout(LIMIT).expect("told to read");
                    let all = read_n(&mut client, 4 + 8 * MIB);
                    assert_eq!(&all[..4], b"head");
                    assert!(all[4..].iter().all(|&b| b == b'x'));
                }
                OnStuck::PeerResets => {
                    told.recv_timeout(LIMIT).expect("told to reset");
                    socket2::SockRef::from(&client)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                    drop(client);
                }
            }
        },
    );
    log.events()
}

#[test]
fn flushed_stays_pending_while_a_peer_does_not_read_and_fails_with_not_sent_on_abort() {
    assert_eq!(
        stuff(OnStuck::Abort),
        [
            "head sent",
            "stuck",
            "body not sent",
            "flushed after the abort not sent",
            "lost: aborted",
        ],
        "bytes written after `head`'s flushed() did not delay it; the \
         Deferreds fail in call order, before connection_lost"
    );
}

#[test]
fn flushed_fires_when_a_stuck_peer_finally_reads() {
    let total = 4 + 8 * MIB;
    assert_eq!(
        stuff(OnStuck::PeerReads),
        [
            "head sent".to_owned(),
            "stuck".to_owned(),
            format!("body sent ({total} of {total} bytes sent)"),
            "lost: done".to_owned(),
        ]
    );
}

#[test]
fn flushed_fails_with_not_sent_when_the_peer_resets() {
    let events = stuff(OnStuck::PeerResets);
    assert_eq!(events[..3], ["head sent", "stuck", "body not sent"]);
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(
        events[3] == "lost: error ConnectionReset" || events[3] == "lost: error BrokenPipe",
        "{events:?}"
    );
}

/// Goes over a 1 MiB hard cap in one callback, taking flush Deferreds on
/// the way.
struct OverTheCap {
    log: Log,
}

impl Protocol for OverTheCap {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_write_buffer_max(MIB);
        transport.write(vec![b'x'; MIB / 2]);
        record(&transport.flushed(), &self.log, "before the cap");
        transport.write(vec![b'x'; MIB]);
        record(&transport.flushed(), &self.log, "after the cap");
        self.log.push("connection_made returns");
    }
    fn data_received(&mut self, _: Bytes) {}
    fn connection_lost(&mut self, reason: &Reason) {
        if let Reason::Failed(err) = reason {
            if let Some(full) = err.downcast_ref::<WriteBufferFull>() {
                self.log.push(format!("lost: full at {}", full.limit));
            }
        }
        twill::stop();
    }
}

#[test]
fn flushed_fails_with_not_sent_when_the_hard_cap_aborts() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    serve(
        &reactor,
        move |_peer| OverTheCap {
            log: server_log.clone(),
        },
        |addr, _handle| {
            let mut client = connect_small(addr, SMALL_RCVBUF);
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest);
        },
    );
    assert_eq!(
        log.events(),
        [
            "connection_made returns".to_owned(),
            "before the cap not sent".to_owned(),
            "after the cap not sent".to_owned(),
            format!("lost: full at {MIB}"),
        ]
    );
}

/// Says goodbye and closes gracefully; asks for a flush again once closed.
struct Goodbye {
    log: Log,
    transport: Option<Transport>,
}

impl Protocol for Goodbye {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        transport.write("bye");
        record(&transport.flushed(), &self.log, "bye");
        transport.lose_connection();
    }
    fn data_received(&mut self, _: Bytes) {}
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
        let late = self.transport.as_ref().unwrap().flushed();
        self.log.push(format!(
            "flushed in connection_lost: {}",
            if late.called() { "at once" } else { "pending" }
        ));
        record(&late, &self.log, "late");
        twill::stop();
    }
}

#[test]
fn flushed_before_a_graceful_close_fires_and_one_after_the_loss_fails_at_once() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let got = serve(
        &reactor,
        move |_peer| Goodbye {
            log: server_log.clone(),
            transport: None,
        },
        |addr, _handle| {
            let mut client = connect(addr);
            let mut all = Vec::new();
            client.read_to_end(&mut all).unwrap();
            all
        },
    );
    assert_eq!(got, b"bye");
    assert_eq!(
        log.events(),
        [
            "bye sent",
            "lost: done",
            "flushed in connection_lost: at once",
            "late not sent"
        ]
    );
}

// ---------------------------------------------------------------------------
// StringTransport
// ---------------------------------------------------------------------------

#[test]
fn string_transport_flushed_fires_at_once_when_nothing_is_held_back() {
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    success_result_of(&transport.flushed());
    transport.write("reply");
    success_result_of(&transport.flushed());
    assert_eq!(recorder.value(), b"reply");
}

#[test]
fn string_transport_flushed_waits_for_the_held_back_bytes_to_drain_to_zero_in_call_order() {
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    recorder.set_write_buffer_size(100);
    let log = Log::default();
    let first = transport.flushed();
    let second = transport.flushed();
    record(&first, &log, "first");
    record(&second, &log, "second");
    recorder.set_write_buffer_size(40);
    assert_no_result(&first);
    assert_no_result(&second);
    recorder.set_write_buffer_size(0);
    assert_eq!(log.events(), ["first sent", "second sent"]);
    success_result_of(&transport.flushed());
}

#[test]
fn string_transport_flushed_fails_with_not_sent_on_abort_and_after_it() {
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    recorder.set_write_buffer_size(100);
    let pending = transport.flushed();
    transport.abort_connection();
    assert!(failure_result_of(&pending).check::<NotSent>());
    assert!(failure_result_of(&transport.flushed()).check::<NotSent>());
}

/// A cap above the default high watermark (the cap is never below it).
const DEFAULT_HIGH_WATERMARK_PLUS: usize = twill::transport::DEFAULT_HIGH_WATERMARK + 1000;

#[test]
fn string_transport_flushed_fails_with_not_sent_when_a_write_passes_the_hard_cap() {
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    transport.set_write_buffer_max(DEFAULT_HIGH_WATERMARK_PLUS);
    recorder.set_write_buffer_size(DEFAULT_HIGH_WATERMARK_PLUS - 10);
    let pending = transport.flushed();
    transport.write(vec![0; 11]);
    assert!(recorder.aborted());
    assert!(failure_result_of(&pending).check::<NotSent>());
}

#[test]
fn string_transport_keeps_fired_events_in_order_for_take_events() {
    struct Reload(u32);
    let recorder = StringTransport::new();
    let transport = recorder.transport();
    assert!(recorder.take_events().is_empty());
    transport.fire_event(Event::new(Reload(1)));
    transport.fire_event(Event::new("note"));
    transport.fire_event(Event::new(Reload(2)));
    let events = recorder.take_events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].downcast_ref::<Reload>().map(|r| r.0), Some(1));
    assert_eq!(events[1].downcast_ref::<&str>(), Some(&"note"));
    assert!(events[1].type_name().contains("str"));
    assert_eq!(events[2].downcast_ref::<Reload>().map(|r| r.0), Some(2));
    assert!(recorder.take_events().is_empty(), "taken once");
}

#[test]
fn an_event_gives_back_a_value_of_another_type_unchanged() {
    let event = Event::new(7u32);
    assert!(event.is::<u32>() && !event.is::<u64>());
    let event = event.downcast::<u64>().unwrap_err();
    assert_eq!(event.downcast::<u32>().unwrap(), 7);
}
