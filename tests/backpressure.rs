//! Bounded memory against peers that do not read, over real loopback
//! sockets: flow control (a connection stops reading while its replies
//! cannot leave), the write buffer's hard cap, a closing connection that
//! stops reading a flood, and a broadcast group with a member that never
//! reads.
//!
//! The figures asserted are the server's own (`write_buffer_size`, the
//! group's `buffered`), so the tests do not depend on the kernel's buffer
//! sizes; the peers that do not read have a 4 KiB receive buffer.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use twill::broadcast::{BroadcastGroup, SlowClient};
use twill::transport::{WriteBufferFull, DEFAULT_HIGH_WATERMARK, DEFAULT_MAX_WRITE_BUFFER};
use twill::{Bytes, Protocol, Reactor, Reason, Transport};
use twill_test_support::events::{describe, Log};
use twill_test_support::pressure::{connect_small, SMALL_RCVBUF};
use twill_test_support::reactor::{connect, serve, LIMIT};

/// The most the reactor reads at once.
const READ_MAX: usize = 64 * 1024;

/// Writes `chunk` until a write has not gone through for `stall` (the
/// peer stopped taking data) or until `max` bytes; returns what got
/// through and the error that ended it, if one did.
fn send_until_stalled(
    stream: &mut TcpStream,
    chunk: &[u8],
    max: usize,
    stall: Duration,
) -> (usize, Option<ErrorKind>) {
    stream.set_write_timeout(Some(stall)).unwrap();
    let mut sent = 0;
    while sent < max {
        // Byte `i` of the stream is `chunk[i % chunk.len()]`.
        match stream.write(&chunk[sent % chunk.len()..]) {
            Ok(n) => sent += n,
            Err(err) => return (sent, Some(err.kind())),
        }
    }
    (sent, None)
}

/// Echoes, with flow control as asked, and keeps the largest write buffer
/// it saw after a write.
struct Echo {
    flow_control: bool,
    max_buffer: Option<usize>,
    transport: Option<Transport>,
    peak: Rc<Cell<usize>>,
    log: Log,
}

impl Echo {
    fn new(flow_control: bool, peak: &Rc<Cell<usize>>, log: &Log) -> Echo {
        Echo {
            flow_control,
            max_buffer: None,
            transport: None,
            peak: peak.clone(),
            log: log.clone(),
        }
    }
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_flow_control(self.flow_control);
        if let Some(max) = self.max_buffer {
            transport.set_write_buffer_max(max);
        }
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        let transport = self.transport.as_ref().unwrap();
        transport.write(data);
        self.peak
            .set(self.peak.get().max(transport.write_buffer_size()));
    }
    fn pause_writing(&mut self) {
        self.log.push("pause");
    }
    fn connection_lost(&mut self, reason: &Reason) {
        if let Reason::Failed(err) = reason {
            if let Some(full) = err.downcast_ref::<WriteBufferFull>() {
                self.log.push(format!("full at {}", full.limit));
            }
        }
        self.log.push(describe(reason));
    }
}

#[test]
fn flow_control_stops_reading_while_the_replies_cannot_leave_and_loses_nothing() {
    let reactor = Reactor::new().unwrap();
    let (peak, log) = (Rc::new(Cell::new(0)), Log::default());
    let (server_peak, server_log) = (peak.clone(), log.clone());
    let (received, sent) = serve(
        &reactor,
        move |_peer| Echo::new(true, &server_peak, &server_log),
        |addr, handle| {
            let mut stalled = connect_small(addr, SMALL_RCVBUF);
            let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
            let (sent, _) =
                send_until_stalled(&mut stalled, &chunk, 256 << 20, Duration::from_millis(500));
            // The server stopped reading long before 256 MiB.
            assert!(sent < 64 << 20, "sent {sent} bytes before stalling");

            // Meanwhile another client is served at once.
            let mut attentive = connect(addr);
            attentive.write_all(b"ping").unwrap();
            let mut pong = [0; 4];
            attentive.read_exact(&mut pong).unwrap();
            assert_eq!(&pong, b"ping");

            // The stalled client reads: everything it sent comes back.
            stalled.shutdown(std::net::Shutdown::Write).unwrap();
            let mut echoed = Vec::new();
            stalled.read_to_end(&mut echoed).unwrap();
            handle.stop();
            (echoed, sent)
        },
    );
    assert_eq!(received.len(), sent);
    assert!(received
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 65536 % 251) as u8));
    assert!(
        peak.get() <= DEFAULT_HIGH_WATERMARK + READ_MAX,
        "the server buffered {} bytes for a peer that did not read",
        peak.get()
    );
    assert!(log.events().contains(&"pause".to_owned()));
}

#[test]
fn the_hard_cap_aborts_a_protocol_that_ignores_a_peer_that_does_not_read() {
    let reactor = Reactor::new().unwrap();
    let (peak, log) = (Rc::new(Cell::new(0)), Log::default());
    let (server_peak, server_log) = (peak.clone(), log.clone());
    let cap = 1 << 20;
    let (sent, error) = serve(
        &reactor,
        move |_peer| Echo {
            max_buffer: Some(cap),
            ..Echo::new(false, &server_peak, &server_log)
        },
        |addr, handle| {
            let mut stream = connect_small(addr, SMALL_RCVBUF);
            let chunk = vec![b'x'; 64 * 1024];
            let result = send_until_stalled(&mut stream, &chunk, 1 << 30, LIMIT);
            handle.stop();
            result
        },
    );
    // The server read until the cap, then reset the connection.
    assert!(
        matches!(
            error,
            Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
        ),
        "{error:?} after {sent} bytes"
    );
    assert!(peak.get() <= cap + READ_MAX, "peak {}", peak.get());
    assert_eq!(
        log.events(),
        [
            "pause".to_owned(),
            format!("full at {cap}"),
            format!("lost: failed write buffer over {cap} bytes: peer not reading"),
        ]
    );
}

#[test]
fn without_any_setting_a_connection_holds_at_most_the_default_cap() {
    let reactor = Reactor::new().unwrap();
    let (peak, log) = (Rc::new(Cell::new(0)), Log::default());
    let (server_peak, server_log) = (peak.clone(), log.clone());
    let error = serve(
        &reactor,
        move |_peer| Echo::new(false, &server_peak, &server_log),
        |addr, handle| {
            let mut stream = connect_small(addr, SMALL_RCVBUF);
            let chunk = vec![b'x'; 64 * 1024];
            let (_, error) = send_until_stalled(&mut stream, &chunk, 1 << 30, LIMIT);
            handle.stop();
            error
        },
    );
    assert!(error.is_some());
    assert!(peak.get() <= DEFAULT_MAX_WRITE_BUFFER + READ_MAX);
    assert!(log
        .events()
        .contains(&format!("full at {DEFAULT_MAX_WRITE_BUFFER}")));
}

#[test]
fn pause_reading_holds_when_flow_control_would_read_again() {
    struct Paused {
        log: Log,
        transport: Option<Transport>,
        /// Told when the write buffer went over the high watermark.
        over_high: mpsc::Sender<()>,
    }
    impl Protocol for Paused {
        fn connection_made(&mut self, transport: &Transport) {
            transport.pause_reading();
            transport.set_flow_control(true);
            // More than the kernel's buffers take at once.
            transport.write(vec![b'x'; 16 << 20]);
            self.transport = Some(transport.clone());
        }
        fn data_received(&mut self, data: Bytes) {
            self.log
                .push(format!("data {}", String::from_utf8_lossy(&data)));
            twill::stop();
        }
        fn pause_writing(&mut self) {
            let _ = self.over_high.send(());
        }
        fn resume_writing(&mut self) {
            self.log.push("resume_writing");
            let (log, transport) = (self.log.clone(), self.transport.clone().unwrap());
            // `call_later(0)` made inside a timed call waits for the next
            // pass, after a poll: one that would have delivered the input
            // waiting in the socket had the drain turned reading back on.
            twill::call_later(Duration::ZERO, move || {
                twill::call_later(Duration::ZERO, move || {
                    log.push("resume_reading");
                    transport.resume_reading();
                });
            });
        }
    }
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (over_high, paused) = mpsc::channel();
    serve(
        &reactor,
        move |_peer| Paused {
            log: server_log.clone(),
            transport: None,
            over_high: over_high.clone(),
        },
        move |addr, _| {
            let mut stream = connect_small(addr, SMALL_RCVBUF);
            stream.write_all(b"x").unwrap();
            // Read only once the server is paused: a reader already
            // draining could let the kernel take the whole write in one
            // call, and there would be no pause to test.
            paused
                .recv_timeout(LIMIT)
                .expect("the server paused writing");
            let mut all = vec![0; 16 << 20];
            stream.read_exact(&mut all).unwrap();
            stream
        },
    );
    assert_eq!(log.events(), ["resume_writing", "resume_reading", "data x"]);
}

#[test]
fn a_closing_connection_does_not_read_a_flood_for_long() {
    /// Closes on the first input, as a decoder error does.
    struct CloseAtOnce;
    impl Protocol for CloseAtOnce {
        fn connection_made(&mut self, transport: &Transport) {
            let transport = transport.clone();
            transport.write("bye\n");
            transport.lose_connection();
        }
        fn data_received(&mut self, _data: Bytes) {}
    }
    let reactor = Reactor::new().unwrap();
    let (sent, error, reply) = serve(
        &reactor,
        |_peer| CloseAtOnce,
        |addr, handle| {
            let mut stream = connect(addr);
            let mut reply = [0; 4];
            stream.read_exact(&mut reply).unwrap();
            // Keeps sending after the server's FIN.
            let chunk = vec![b'f'; 64 * 1024];
            let (sent, error) = send_until_stalled(&mut stream, &chunk, 4 << 30, LIMIT);
            handle.stop();
            (sent, error, reply)
        },
    );
    assert_eq!(&reply, b"bye\n");
    // Before: the server read and discarded for 2 s, gigabytes on loopback.
    // Now it closes once 256 KiB are discarded; what else got through sits
    // in the kernel's buffers.
    assert!(
        matches!(
            error,
            Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
        ),
        "{error:?}"
    );
    assert!(
        sent < 64 << 20,
        "the peer sent {sent} bytes into a closed connection"
    );
}

/// The Spreader of `examples/broadcast_server.rs`, with its group shared
/// with the test.
struct Spreader {
    group: BroadcastGroup,
    transport: Option<Transport>,
    peak: Rc<Cell<usize>>,
}

impl Protocol for Spreader {
    fn connection_made(&mut self, transport: &Transport) {
        self.group.add(transport);
        transport.write("in\n");
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        let me = self.transport.as_ref().unwrap();
        self.group.broadcast_from(me, data);
        self.peak.set(self.peak.get().max(self.group.buffered()));
    }
    fn connection_lost(&mut self, _reason: &Reason) {
        if let Some(me) = self.transport.take() {
            self.group.remove(&me);
        }
    }
}

#[test]
fn a_broadcast_group_bounds_a_member_that_never_reads_and_serves_the_others_in_full() {
    let reactor = Reactor::new().unwrap();
    let max_buffer = 1 << 20;
    let group = BroadcastGroup::new(SlowClient::DropMessages).max_buffer(max_buffer);
    let peak = Rc::new(Cell::new(0));
    let (server_group, server_peak) = (group.clone(), peak.clone());
    let total: usize = 64 << 20;
    let (attentive_got, silent_got) = serve(
        &reactor,
        move |_peer| Spreader {
            group: server_group.clone(),
            transport: None,
            peak: server_peak.clone(),
        },
        move |addr, handle| {
            let mut silent = connect_small(addr, SMALL_RCVBUF);
            let mut attentive = connect(addr);
            let mut sender = connect(addr);
            // Every connection is a member before anything is sent.
            for client in [&mut silent, &mut attentive, &mut sender] {
                let mut joined = [0; 3];
                client.read_exact(&mut joined).unwrap();
            }
            let reader = thread::spawn(move || {
                let mut got = 0;
                let mut buf = vec![0; 256 * 1024];
                while got < total {
                    let n = attentive.read(&mut buf).unwrap();
                    assert!(n > 0, "the attentive client was cut off at {got}");
                    assert!(buf[..n].iter().all(|&b| b == b'm'));
                    got += n;
                }
                got
            });
            let chunk = vec![b'm'; 64 * 1024];
            for _ in 0..total / chunk.len() {
                sender.write_all(&chunk).unwrap();
            }
            let attentive_got = reader.join().unwrap();
            silent
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut silent_got = 0;
            let mut buf = vec![0; 256 * 1024];
            while let Ok(n) = silent.read(&mut buf) {
                if n == 0 {
                    break;
                }
                silent_got += n;
            }
            handle.stop();
            (attentive_got, silent_got)
        },
    );
    assert_eq!(attentive_got, total);
    assert!(silent_got < total / 2, "the silent client got {silent_got}");
    assert!(group.total_dropped() > 0);
    // Each member's buffer is under the maximum plus one read.
    assert!(
        peak.get() <= 2 * (max_buffer + READ_MAX),
        "the group held {} bytes",
        peak.get()
    );
}

/// Writes 16 KiB pieces while `is_writable` says so, then waits with
/// `when_writable` and goes on: Netty's "write while writable" producer.
struct WhileWritable {
    transport: Option<Transport>,
    left: usize,
    most_buffered: Rc<Cell<usize>>,
}

impl WhileWritable {
    fn produce(&mut self) {
        let transport = self.transport.clone().unwrap();
        while self.left > 0 && transport.is_writable() {
            let piece = self.left.min(16 * 1024);
            transport.write(vec![b'w'; piece]);
            self.left -= piece;
            self.most_buffered
                .set(self.most_buffered.get().max(transport.write_buffer_size()));
        }
        if self.left == 0 {
            transport.lose_connection();
        }
    }
}

impl Protocol for WhileWritable {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.produce();
    }
    fn data_received(&mut self, _: Bytes) {}
    fn resume_writing(&mut self) {
        self.produce();
    }
    fn write_complete(&mut self) {
        self.produce();
    }
}

#[test]
fn is_writable_turns_false_at_the_write_that_passes_the_high_watermark() {
    const TOTAL: usize = 8 << 20;
    let most_buffered = Rc::new(Cell::new(0));
    let seen = most_buffered.clone();
    let reactor = Reactor::new().unwrap();
    let received = serve(
        &reactor,
        move |_| WhileWritable {
            transport: None,
            left: TOTAL,
            most_buffered: seen.clone(),
        },
        |addr, handle| {
            let mut stream = connect(addr);
            let mut received = 0;
            let mut buf = vec![0; 64 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => received += n,
                    Err(err) => panic!("read: {err}"),
                }
            }
            handle.stop();
            received
        },
    );
    assert_eq!(received, TOTAL);
    // A loop on `is_writable` stops one piece past the watermark, within
    // the callback that passed it.
    assert!(
        most_buffered.get() <= DEFAULT_HIGH_WATERMARK + 16 * 1024,
        "buffered {} bytes",
        most_buffered.get()
    );
}
