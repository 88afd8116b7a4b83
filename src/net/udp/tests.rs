//! The send queue on a real socket, with the kernel's push-back played by
//! a switch: on loopback Linux never makes a UDP send wait (a receiver
//! that does not read drops datagrams instead), so without the switch the
//! queue would never fill here.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;

use super::send_queue::DATAGRAM_OVERHEAD;
use super::{DatagramConfig, DatagramProtocol, SendQueueFull};
use crate::Reactor;

thread_local! {
    static SENDS_BLOCKED: Cell<bool> = const { Cell::new(false) };
}

/// Whether sends on this thread fail with `WouldBlock`, as from a full
/// socket buffer.
pub(super) fn sends_blocked() -> bool {
    SENDS_BLOCKED.with(Cell::get)
}

fn block_sends(on: bool) {
    SENDS_BLOCKED.with(|blocked| blocked.set(on));
}

type Events = Rc<RefCell<Vec<String>>>;

/// Records the flow-control calls and errors; stops the reactor on resume
/// or on an error.
struct Recorder {
    events: Events,
}

impl DatagramProtocol for Recorder {
    fn datagram_received(&mut self, _: Bytes, _: SocketAddr) {}
    fn error_received(&mut self, error: io::Error) {
        self.events
            .borrow_mut()
            .push(format!("error {:?}", error.kind()));
        crate::stop();
    }
    fn pause_writing(&mut self) {
        self.events.borrow_mut().push("pause".into());
    }
    fn resume_writing(&mut self) {
        self.events.borrow_mut().push("resume".into());
        crate::stop();
    }
}

/// Runs `reactor`, stopped from another thread after 10 s if the test has
/// not stopped it.
fn run_bounded(reactor: &Reactor) {
    let (done, wait) = mpsc::channel::<()>();
    let handle = reactor.handle();
    let watchdog = std::thread::spawn(move || {
        let timed_out = matches!(
            wait.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if timed_out {
            handle.stop();
        }
        timed_out
    });
    reactor.run().unwrap();
    drop(done);
    assert!(
        !watchdog.join().unwrap(),
        "the watchdog stopped the reactor"
    );
}

fn peer() -> (UdpSocket, SocketAddr) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addr = peer.local_addr().unwrap();
    (peer, addr)
}

#[test]
fn a_blocked_socket_queues_pauses_refuses_at_the_cap_then_drains_in_order_and_resumes() {
    let each = 1000 + DATAGRAM_OVERHEAD;
    let config = DatagramConfig::new().send_queue_limits(4 * each, each, 8 * each);
    let reactor = Reactor::new().unwrap();
    let events = Events::default();
    let port = reactor
        .listen_udp_with(
            "127.0.0.1:0",
            &config,
            Recorder {
                events: events.clone(),
            },
        )
        .unwrap();
    let (peer, to) = peer();

    block_sends(true);
    for i in 0..8u8 {
        port.write(vec![i; 1000], to).unwrap();
    }
    assert_eq!(port.send_queue_len(), 8);
    assert_eq!(port.send_queue_size(), 8 * each);
    let refused = port.write(vec![8; 1000], to).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
    let full = SendQueueFull::from_io(&refused).expect("a SendQueueFull");
    assert_eq!((full.queued, full.max), (8 * each, 8 * each));
    assert_eq!(port.refused_datagrams(), 1);
    assert!(
        events.borrow().is_empty(),
        "pause_writing waits for the turn's end"
    );

    // A call scheduled from a timed call runs after the next poll, so
    // after the end of the first turn.
    let seen = events.clone();
    let later = reactor.clone();
    reactor.call_later(Duration::ZERO, move || {
        later.call_later(Duration::ZERO, move || {
            assert_eq!(*seen.borrow(), ["pause"]);
            block_sends(false);
        });
    });
    run_bounded(&reactor);
    assert_eq!(*events.borrow(), ["pause", "resume"]);
    assert_eq!(port.send_queue_size(), 0);
    let mut buf = [0; 2000];
    for i in 0..8u8 {
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((n, buf[0], from), (1000, i, port.host()), "in order, whole");
    }
}

#[test]
fn a_queued_datagram_that_fails_later_reaches_error_received_and_is_counted_out() {
    let reactor = Reactor::new().unwrap();
    let events = Events::default();
    // Watermarks above the datagram, so the error is the only event.
    let config = DatagramConfig::new().send_queue_limits(256 * 1024, 128 * 1024, 1024 * 1024);
    let recorder = Recorder {
        events: events.clone(),
    };
    let port = reactor
        .listen_udp_with("127.0.0.1:0", &config, recorder)
        .unwrap();
    let (peer, to) = peer();
    block_sends(true);
    // One byte over the IPv4 maximum: queued now, EMSGSIZE once sent.
    port.write(vec![0; 65_508], to).unwrap();
    port.write("after", to).unwrap();
    block_sends(false);
    run_bounded(&reactor);
    let events = events.borrow();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("error"), "{events:?}");
    let mut buf = [0; 16];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after", "the next datagram still went");
}
