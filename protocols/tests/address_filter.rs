//! AddressFilter's hooks, Netty's `AbstractRemoteAddressFilter`
//! `channelAccepted` / `channelRejected`: unit tests with `StringTransport`
//! and a hand-advanced `Clock`, and loopback tests with `std::net` peers on
//! other threads. (The rules themselves are tested in `handlers.rs`.)

use std::cell::RefCell;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use twill::task::Clock;
use twill::testing::StringTransport;
use twill::{Bytes, BytesMut, Event, Factory, Protocol, Reactor, Reason, Transport};
use twill_protocols::handler::{AddressFilter, FilterAction, Filtered};
use twill_test_support::client::Client;
use twill_test_support::events::{describe, Log};
use twill_test_support::pressure::{connect_small, SMALL_RCVBUF};
use twill_test_support::reactor::{serve, LIMIT};

fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Records every event, and offers a buffer of its own to read into.
struct Recording {
    log: Log,
    buffer: BytesMut,
}

impl Protocol for Recording {
    fn connection_made(&mut self, transport: &Transport) {
        self.log.push(format!("made {}", transport.peer()));
    }
    fn data_received(&mut self, data: Bytes) {
        self.log
            .push(format!("data {}", String::from_utf8_lossy(&data)));
    }
    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        self.log.push("get_buffer");
        Some(&mut self.buffer)
    }
    fn buffer_updated(&mut self, appended: usize) {
        let read = self.buffer.split_to(appended);
        self.log
            .push(format!("updated {}", String::from_utf8_lossy(&read)));
    }
    fn eof_received(&mut self) -> bool {
        self.log.push("eof");
        true
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
    fn write_complete(&mut self) {
        self.log.push("write complete");
    }
    fn event_received(&mut self, event: Event) {
        match event.downcast::<&'static str>() {
            Ok(name) => self.log.push(format!("event {name}")),
            Err(other) => self.log.push(format!("event {other:?}")),
        }
    }
}

/// A filter over a factory of `Recording`s that logs what it builds,
/// denying 192.0.2.0/24.
fn filter(log: &Log) -> AddressFilter<impl Factory<Protocol = Recording>> {
    let log = log.clone();
    AddressFilter::new(move |peer: twill::Address| {
        log.push(format!("built for {peer}"));
        Recording {
            log: log.clone(),
            buffer: BytesMut::new(),
        }
    })
    .deny("192.0.2.0/24".parse().unwrap())
}

/// A rejected hook that writes a goodbye line and logs the peer.
fn goodbye_line(log: &Log) -> impl FnMut(&Transport, twill::Address) + 'static {
    let log = log.clone();
    move |transport: &Transport, peer: twill::Address| {
        log.push(format!("rejected {peer}"));
        transport.write("access denied\r\n");
    }
}

#[test]
fn the_accepted_hook_sees_every_accepted_peer_before_the_inner_factory() {
    let log = Log::default();
    let hook_log = log.clone();
    let mut factory =
        filter(&log).on_accepted(move |peer| hook_log.push(format!("accepted {peer}")));
    assert!(factory
        .build_protocol((peer("198.51.100.1:1")).into())
        .is_some());
    assert!(factory
        .build_protocol((peer("192.0.2.1:2")).into())
        .is_none());
    assert!(factory
        .build_protocol((peer("[2001:db8::1]:3")).into())
        .is_some());
    assert_eq!(
        log.events(),
        [
            "accepted 198.51.100.1:1",
            "built for 198.51.100.1:1",
            "accepted [2001:db8::1]:3",
            "built for [2001:db8::1]:3",
        ]
    );
    assert_eq!(factory.refused(), 1);
}

#[test]
fn without_a_rejected_hook_a_denied_peer_is_refused_at_once() {
    let log = Log::default();
    let mut factory = filter(&log);
    assert!(factory
        .build_protocol((peer("192.0.2.9:1")).into())
        .is_none());
    assert!(factory
        .build_protocol((peer("[::ffff:192.0.2.9]:1")).into())
        .is_none());
    assert_eq!(factory.refused(), 2);
    assert!(log.events().is_empty(), "the inner factory was not asked");
}

#[test]
fn an_accepted_connection_gets_every_event() {
    let log = Log::default();
    let mut factory = filter(&log).on_rejected(goodbye_line(&log));
    let recorder = StringTransport::with_addresses(peer("198.51.100.1:1"), peer("10.0.0.1:80"));
    let mut protocol = factory.build_protocol(recorder.transport().peer()).unwrap();
    assert!(protocol.accepted().is_some());
    protocol.connection_made(&recorder.transport());
    protocol.data_received(Bytes::from_static(b"one"));
    protocol
        .get_buffer()
        .expect("the inner protocol's buffer")
        .extend_from_slice(b"two");
    protocol.buffer_updated(3);
    protocol.pause_writing();
    protocol.resume_writing();
    protocol.write_complete();
    protocol.event_received(Event::new("hi"));
    assert!(protocol.eof_received(), "the inner protocol's answer");
    protocol.connection_lost(&Reason::Done);
    assert_eq!(
        log.events(),
        [
            "built for 198.51.100.1:1",
            "made 198.51.100.1:1",
            "data one",
            "get_buffer",
            "updated two",
            "pause",
            "resume",
            "write complete",
            "event hi",
            "eof",
            "lost: done",
        ]
    );
    assert!(protocol.accepted_mut().is_some());
    assert_eq!(factory.refused(), 0);
}

#[test]
fn a_rejected_connection_gets_the_goodbye_then_is_closed_gracefully() {
    let log = Log::default();
    let mut factory = filter(&log).on_rejected(goodbye_line(&log));
    let recorder = StringTransport::with_addresses(peer("192.0.2.7:1234"), peer("10.0.0.1:80"));
    let mut protocol = factory.build_protocol(recorder.transport().peer()).unwrap();
    let Filtered::Rejected(goodbye) = &protocol else {
        panic!("a goodbye, not the inner protocol");
    };
    assert_eq!(goodbye.peer(), peer("192.0.2.7:1234"));
    assert!(protocol.accepted().is_none());
    assert_eq!(factory.refused(), 1, "still counted as refused");
    assert!(recorder.value().is_empty(), "nothing before the connection");

    protocol.connection_made(&recorder.transport());
    assert_eq!(recorder.value(), b"access denied\r\n");
    assert!(recorder.disconnecting());
    assert!(!recorder.aborted(), "what was written is sent first");

    // Whatever still arrives is dropped; no buffer is offered; EOF closes.
    assert!(protocol.get_buffer().is_none());
    protocol.data_received(Bytes::from_static(b"let me in\n"));
    assert!(!protocol.eof_received());
    protocol.pause_writing();
    protocol.resume_writing();
    protocol.write_complete();
    protocol.event_received(Event::new("hi"));
    protocol.connection_lost(&Reason::Done);
    assert_eq!(recorder.value(), b"access denied\r\n");
    assert_eq!(
        log.events(),
        ["rejected 192.0.2.7:1234"],
        "the inner factory never heard of it"
    );
}

#[test]
fn a_goodbye_that_cannot_leave_is_aborted_after_the_timeout() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut factory = filter(&log)
        .on_rejected(goodbye_line(&log))
        .goodbye_timeout(secs(3))
        .clock(Rc::new(clock.clone()));
    let recorder = StringTransport::with_addresses(peer("192.0.2.7:1"), peer("10.0.0.1:80"));
    // The peer reads nothing: what is written stays in the buffer.
    recorder.set_write_buffer_size(1000);
    let mut protocol = factory.build_protocol(recorder.transport().peer()).unwrap();
    protocol.connection_made(&recorder.transport());
    assert!(recorder.disconnecting() && !recorder.aborted());
    clock.advance(Duration::from_millis(2999));
    assert!(!recorder.aborted());
    clock.advance(Duration::from_millis(1));
    assert!(recorder.aborted(), "the goodbye took too long");
    protocol.connection_lost(&Reason::Aborted);
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn a_connection_that_ends_in_time_cancels_the_goodbye_timer() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut factory = filter(&log)
        .on_rejected(goodbye_line(&log))
        .clock(Rc::new(clock.clone()));
    let recorder = StringTransport::new();
    recorder.set_write_buffer_size(1000);
    let mut protocol = factory
        .build_protocol((peer("192.0.2.7:1")).into())
        .unwrap();
    protocol.connection_made(&recorder.transport());
    assert_eq!(clock.delayed_calls().len(), 1, "5 s by default");
    assert_eq!(clock.delayed_calls()[0].time() - clock.now(), secs(5));
    recorder.set_write_buffer_size(0);
    protocol.connection_lost(&Reason::Done);
    assert!(clock.delayed_calls().is_empty());
    clock.advance(secs(10));
    assert!(!recorder.aborted());
}

#[test]
fn no_timer_when_nothing_waits_to_be_sent_or_the_timeout_is_zero() {
    // No clock given and no reactor on this thread: starting a timer would
    // panic, so these show none is started.
    let log = Log::default();
    let mut quiet = filter(&log).on_rejected(|_: &Transport, _| {});
    let recorder = StringTransport::new();
    let mut protocol = quiet.build_protocol((peer("192.0.2.7:1")).into()).unwrap();
    protocol.connection_made(&recorder.transport());
    assert!(recorder.disconnecting() && recorder.value().is_empty());

    let mut unbounded = filter(&log)
        .on_rejected(goodbye_line(&log))
        .goodbye_timeout(Duration::ZERO);
    let recorder = StringTransport::new();
    recorder.set_write_buffer_size(1000);
    let mut protocol = unbounded
        .build_protocol((peer("192.0.2.7:1")).into())
        .unwrap();
    protocol.connection_made(&recorder.transport());
    assert!(recorder.disconnecting() && !recorder.aborted());
}

#[test]
fn debug_shows_the_hooks_and_the_rules() {
    let log = Log::default();
    let factory = filter(&log)
        .on_rejected(goodbye_line(&log))
        .if_no_match(FilterAction::Reject);
    let shown = format!("{factory:?}");
    for part in [
        "prefix_len: 24",
        "if_no_match: Reject",
        "on_accepted: false",
        "on_rejected: true",
        "goodbye_timeout: 5s",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    let mut factory = factory;
    let protocol = factory
        .build_protocol((peer("192.0.2.7:1")).into())
        .unwrap();
    let Filtered::Rejected(goodbye) = protocol else {
        panic!("a goodbye");
    };
    assert!(format!("{goodbye:?}").contains("192.0.2.7:1"));
}

// ---------------------------------------------------------------------------
// Loopback

/// Says hello, then echoes.
struct Echo {
    transport: Option<Transport>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write("hello\n");
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.transport.as_ref().unwrap().write(data);
    }
}

fn echo(_peer: twill::Address) -> Echo {
    Echo { transport: None }
}

#[test]
fn loopback_a_denied_client_reads_the_goodbye_then_eof() {
    let reactor = Reactor::new().unwrap();
    let accepted = Rc::new(RefCell::new(Vec::new()));
    let seen = accepted.clone();
    let factory = AddressFilter::new(echo)
        .deny("127.0.0.0/8".parse().unwrap())
        .on_accepted(move |peer| seen.borrow_mut().push(peer))
        .on_rejected(|transport: &Transport, _| transport.write("access denied\r\n"));
    serve(&reactor, factory, |addr, handle| {
        let mut client = Client::connect(addr);
        // Input the server never reads does not turn its close into a
        // reset that would destroy the goodbye.
        client.send(b"let me in\n");
        assert_eq!(client.line(), b"access denied\r\n");
        client.expect_eof();
        handle.stop();
    });
    assert!(accepted.borrow().is_empty());
}

#[test]
fn loopback_an_allowed_client_is_served_and_the_accepted_hook_saw_its_address() {
    let reactor = Reactor::new().unwrap();
    let accepted = Rc::new(RefCell::new(Vec::new()));
    let seen = accepted.clone();
    let factory = AddressFilter::new(echo)
        .allow("127.0.0.1".parse().unwrap())
        .if_no_match(FilterAction::Reject)
        .on_accepted(move |peer| seen.borrow_mut().push(peer))
        .on_rejected(|transport: &Transport, _| transport.write("access denied\r\n"));
    let client_addr = serve(&reactor, factory, |addr, handle| {
        let mut client = Client::connect(addr);
        assert_eq!(client.line(), b"hello\n");
        client.send(b"ping\n");
        assert_eq!(client.line(), b"ping\n");
        let local = client.stream().local_addr().unwrap();
        handle.stop();
        local
    });
    assert_eq!(*accepted.borrow(), [client_addr]);
}

/// Serves a filter denying 127.0.0.0/8 whose goodbye is `goodbye` bytes,
/// to a client that does not read until the server's side of the
/// connection is over; returns how long that took on the server, and what
/// the client then read (its length, and whether it ended in a reset).
fn goodbye_to_a_peer_that_does_not_read(
    goodbye: usize,
    timeout: Duration,
) -> (Duration, usize, bool) {
    let reactor = Reactor::new().unwrap();
    let (over, wait_over) = mpsc::channel::<Duration>();
    let factory = AddressFilter::new(echo)
        .deny("127.0.0.0/8".parse().unwrap())
        .goodbye_timeout(timeout)
        .on_rejected(move |transport: &Transport, _| {
            let start = Instant::now();
            transport.write(vec![b'x'; goodbye]);
            let (transport, over) = (transport.clone(), over.clone());
            // After connection_made the connection is closing, so this runs
            // once it is over (after the Goodbye's connection_lost).
            twill::call_later(Duration::ZERO, move || {
                transport.when_writable(move || {
                    let _ = over.send(start.elapsed());
                });
            });
        });
    serve(&reactor, factory, move |addr, handle| {
        let mut stream = connect_small(addr, SMALL_RCVBUF);
        let took = wait_over
            .recv_timeout(LIMIT)
            .expect("the server let go of a peer that does not read");
        let mut got = Vec::new();
        let reset = match stream.read_to_end(&mut got) {
            Ok(_) => false,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => true,
            Err(err) => panic!("unexpected read error: {err}"),
        };
        handle.stop();
        (took, got.len(), reset)
    })
}

#[test]
fn loopback_a_small_goodbye_to_a_peer_that_does_not_read_ends_at_once() {
    // The line fits in the kernel's buffers: the server's side is over
    // without the peer reading, and the peer still gets all of it.
    let (took, read, reset) = goodbye_to_a_peer_that_does_not_read(15, secs(30));
    assert!(took < secs(10), "took {took:?}");
    assert_eq!((read, reset), (15, false));
}

#[test]
fn loopback_a_goodbye_that_cannot_leave_is_aborted_after_the_timeout() {
    // 8 MiB cannot leave to a peer that offers a 4 KiB window (the kernel
    // takes at most its 4 MiB send buffer): after the timeout the server
    // aborts, and the peer sees a reset.
    let goodbye = 8 << 20;
    let timeout = Duration::from_millis(200);
    let (took, read, _reset) = goodbye_to_a_peer_that_does_not_read(goodbye, timeout);
    assert!(took >= timeout, "aborted after {took:?}");
    assert!(took < LIMIT / 2, "aborted after {took:?}");
    assert!(read < goodbye, "read all {read} bytes");
}
