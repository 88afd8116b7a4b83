//! The TCP contract of Protocol, Factory and Transport, over real loopback
//! sockets with plain `std::net` peers on other threads.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use twill::{Bytes, ClientFactory, Connector, Factory, Protocol, Reactor, Reason, Transport};
use twill_test_support::events::{describe, Log};
use twill_test_support::reactor::{connect, run, serve, LIMIT};

fn read_to_end(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all)?;
    Ok(all)
}

/// Echoes, and records what happens to it.
struct Echo {
    log: Log,
    transport: Option<Transport>,
    keep_open_on_eof: bool,
}

impl Echo {
    fn new(log: Log) -> Echo {
        Echo {
            log,
            transport: None,
            keep_open_on_eof: false,
        }
    }
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.log.push("made");
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.log
            .push(format!("data {}", String::from_utf8_lossy(&data)));
        if data.as_ref() == b"panic" {
            panic!("asked to panic");
        }
        self.transport.as_ref().unwrap().write(data);
    }
    fn eof_received(&mut self) -> bool {
        self.log.push("eof");
        if self.keep_open_on_eof {
            let transport = self.transport.as_ref().unwrap();
            transport.write("bye");
            transport.lose_connection();
        }
        self.keep_open_on_eof
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
    }
}

#[test]
fn echo_delivers_callbacks_in_order_and_a_peer_fin_is_a_clean_close() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| Echo::new(server_log.clone()))
        .unwrap();
    let addr = port.host().tcp().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "port 0 picks a real port");
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        stream.write_all(b"hello").unwrap();
        let mut echo = [0; 5];
        stream.read_exact(&mut echo).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let rest = read_to_end(&mut stream).unwrap();
        handle.stop();
        (echo, rest)
    });
    run(&reactor);
    let (echo, rest) = client.join().unwrap();
    assert_eq!(&echo, b"hello");
    assert!(rest.is_empty(), "server closes after the peer's FIN");
    assert_eq!(log.events(), ["made", "data hello", "eof", "lost: done"]);
}

#[test]
fn transport_knows_both_addresses_and_sets_nodelay_by_default() {
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let sink = seen.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |peer: twill::Address| {
            let sink = sink.clone();
            Inspect(move |t: &Transport| {
                t.set_tcp_keepalive(true).unwrap();
                *sink.borrow_mut() = Some((
                    peer.clone(),
                    t.peer(),
                    t.host(),
                    t.tcp_nodelay().unwrap(),
                    t.tcp_keepalive().unwrap(),
                ));
                t.lose_connection();
            })
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        let local = stream.local_addr().unwrap();
        read_to_end(&mut stream).unwrap();
        handle.stop();
        local
    });
    run(&reactor);
    let client_addr = client.join().unwrap();
    let (built_for, peer, host, nodelay, keepalive) = seen.borrow_mut().take().unwrap();
    assert_eq!(built_for, client_addr);
    assert_eq!(peer, client_addr);
    assert_eq!(host, addr);
    assert!(nodelay);
    assert!(keepalive);
}

/// Calls a closure on `connection_made`, ignores data.
struct Inspect<F>(F);

impl<F: FnMut(&Transport) + 'static> Protocol for Inspect<F> {
    fn connection_made(&mut self, transport: &Transport) {
        (self.0)(transport);
    }
    fn data_received(&mut self, _data: Bytes) {}
}

struct Refusing {
    log: Log,
}

impl Factory for Refusing {
    type Protocol = Echo;
    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Echo> {
        self.log.push("build");
        None
    }
    fn start_factory(&mut self) {
        self.log.push("start");
    }
    fn stop_factory(&mut self) {
        self.log.push("stop");
    }
}

#[test]
fn a_factory_that_returns_none_refuses_and_start_stop_bracket_listening() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let port = reactor
        .listen_tcp("127.0.0.1:0", Refusing { log: log.clone() })
        .unwrap();
    assert_eq!(log.events(), ["start"]);
    let addr = port.host();
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut stream = connect(addr.tcp().unwrap());
        let got = read_to_end(&mut stream);
        handle.stop();
        got
    });
    run(&reactor);
    let got = client.join().unwrap();
    assert!(
        matches!(got.as_deref(), Ok(b"")) || got.is_err(),
        "refused: closed at once"
    );
    assert_eq!(
        log.events(),
        ["start", "build", "stop"],
        "graceful stop stops listening"
    );
}

#[test]
fn stop_listening_refuses_new_connections_but_keeps_accepted_ones() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| Echo::new(server_log.clone()))
        .unwrap();
    let addr = port.host();
    let (to_reactor, from_client) = mpsc::channel::<()>();
    let handle = reactor.handle();
    let port_to_stop = port.clone();
    let client = thread::spawn(move || {
        let mut first = connect(addr.tcp().unwrap());
        first.write_all(b"one").unwrap();
        let mut buf = [0; 3];
        first.read_exact(&mut buf).unwrap();
        // Ask the reactor to stop listening, and wait until it has.
        let (stopped, wait) = mpsc::channel();
        handle
            .call_from_thread(move || {
                port_to_stop_listening();
                stopped.send(()).unwrap();
            })
            .unwrap();
        wait.recv_timeout(LIMIT).unwrap();
        let refused = TcpStream::connect(addr);
        first.write_all(b"two").unwrap();
        first.read_exact(&mut buf).unwrap();
        drop(to_reactor);
        handle.stop();
        (refused.map(|_| ()).map_err(|e| e.kind()), buf)
    });
    thread_local! {
        static PORT: RefCell<Option<twill::ListeningPort>> = const { RefCell::new(None) };
    }
    fn port_to_stop_listening() {
        PORT.with(|p| p.borrow().as_ref().unwrap().stop_listening());
    }
    PORT.with(|p| *p.borrow_mut() = Some(port_to_stop));
    run(&reactor);
    let (refused, buf) = client.join().unwrap();
    drop(from_client);
    assert_eq!(refused, Err(ErrorKind::ConnectionRefused));
    assert_eq!(&buf, b"two", "the accepted connection still works");
    assert!(!port.is_listening());
}

/// Writes `size` bytes on connect, then closes gracefully or aborts.
struct Burst {
    size: usize,
    abort: bool,
    log: Log,
}

impl Protocol for Burst {
    fn connection_made(&mut self, transport: &Transport) {
        // Writes all of it at once, on purpose: past the default hard cap.
        transport.set_write_buffer_max(usize::MAX);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut left = self.size;
        while left > 0 {
            let n = left.min(chunk.len());
            transport.write(chunk.slice(..n));
            left -= n;
        }
        if self.abort {
            transport.abort_connection();
        } else {
            transport.lose_connection();
            transport.lose_connection(); // idempotent
        }
        transport.write("after close is still sent");
    }
    fn data_received(&mut self, _data: Bytes) {
        self.log.push("data after close");
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
    }
}

#[test]
fn lose_connection_flushes_everything_buffered_then_closes_once() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let size = 8 * 1024 * 1024;
    let got = serve(
        &reactor,
        move |_peer| Burst {
            size,
            abort: false,
            log: server_log.clone(),
        },
        move |addr, handle| {
            let mut stream = connect(addr);
            stream.write_all(b"ignored").unwrap();
            let got = read_to_end(&mut stream).unwrap();
            handle.stop();
            got
        },
    );
    let tail = b"after close is still sent";
    assert_eq!(got.len(), size + tail.len());
    assert!(got[..size].iter().all(|&b| b == b'x'));
    assert_eq!(&got[size..], tail);
    assert_eq!(
        log.events(),
        ["lost: done"],
        "no data after lose_connection, one loss"
    );
}

#[test]
fn abort_connection_discards_the_buffer_and_resets() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    match serve(
        &reactor,
        move |_peer| Burst {
            size: 8 * 1024 * 1024,
            abort: true,
            log: server_log.clone(),
        },
        move |addr, handle| {
            let mut stream = connect(addr);
            let got = read_to_end(&mut stream);
            handle.stop();
            got
        },
    ) {
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset),
        Ok(data) => panic!("expected a reset, read {} bytes and EOF", data.len()),
    }
    assert_eq!(log.events(), ["lost: aborted"]);
}

#[test]
fn a_peer_reset_is_a_lost_connection_with_the_io_error() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| Echo::new(server_log.clone()))
        .unwrap();
    let addr = port.host();
    let client = thread::spawn(move || {
        let mut stream = connect(addr.tcp().unwrap());
        stream.write_all(b"x").unwrap();
        let mut buf = [0; 1];
        stream.read_exact(&mut buf).unwrap();
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream); // RST
    });
    let stopper = log.clone();
    reactor.call_later(Duration::ZERO, move || {
        poll_until(stopper, |events| events.len() == 3)
    });
    run(&reactor);
    client.join().unwrap();
    assert_eq!(
        log.events(),
        ["made", "data x", "lost: error ConnectionReset"]
    );
}

/// Stops the reactor once `done` holds for the log, checking every few ms.
fn poll_until(log: Log, done: impl Fn(&[String]) -> bool + 'static) {
    if done(&log.events()) {
        twill::stop();
    } else {
        twill::call_later(Duration::from_millis(2), move || poll_until(log, done));
    }
}

#[test]
fn a_half_closing_protocol_can_still_write_after_the_peer_eof() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    assert_eq!(
        serve(
            &reactor,
            move |_peer| Echo {
                keep_open_on_eof: true,
                ..Echo::new(server_log.clone())
            },
            move |addr, handle| {
                let mut stream = connect(addr);
                stream.write_all(b"hi").unwrap();
                let mut hi = [0; 2];
                stream.read_exact(&mut hi).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
                let rest = read_to_end(&mut stream).unwrap();
                handle.stop();
                rest
            }
        ),
        b"bye"
    );
    assert_eq!(log.events(), ["made", "data hi", "eof", "lost: done"]);
}

/// Sends a greeting and half-closes, then keeps reading.
struct HalfCloser {
    log: Log,
}

impl Protocol for HalfCloser {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write("request");
        transport.write_eof();
        transport.write("dropped: the writing side is shut");
    }
    fn data_received(&mut self, data: Bytes) {
        self.log
            .push(format!("data {}", String::from_utf8_lossy(&data)));
    }
    fn eof_received(&mut self) -> bool {
        self.log.push("eof");
        true
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

#[test]
fn write_eof_half_closes_and_the_connection_ends_when_both_sides_are_shut() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (request, after) = serve(
        &reactor,
        move |_peer| HalfCloser {
            log: server_log.clone(),
        },
        move |addr, handle| {
            let mut stream = connect(addr);
            let request = read_to_end(&mut stream).unwrap();
            stream.write_all(b"response").unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let mut rest = [0; 1];
            let after = stream.read(&mut rest);
            let _ = handle;
            (request, after.map_err(|e| e.kind()))
        },
    );
    assert_eq!(request, b"request", "the peer reads EOF after the data");
    assert_eq!(after, Ok(0));
    assert_eq!(log.events(), ["data response", "eof", "lost: done"]);
}

#[test]
fn a_panic_in_a_callback_closes_only_that_connection() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (doomed_end, buf, fresh_buf) = serve(
        &reactor,
        move |_peer| Echo::new(server_log.clone()),
        move |addr, handle| {
            let mut healthy = connect(addr);
            let mut doomed = connect(addr);
            healthy.write_all(b"before").unwrap();
            let mut buf = [0; 6];
            healthy.read_exact(&mut buf).unwrap();
            doomed.write_all(b"panic").unwrap();
            let doomed_end = read_to_end(&mut doomed).map_err(|e| e.kind());
            healthy.write_all(b"after!").unwrap();
            healthy.read_exact(&mut buf).unwrap();
            // And new connections are still served.
            let mut fresh = connect(addr);
            fresh.write_all(b"fresh").unwrap();
            let mut fresh_buf = [0; 5];
            fresh.read_exact(&mut fresh_buf).unwrap();
            handle.stop();
            (doomed_end, buf, fresh_buf)
        },
    );
    assert_eq!(
        doomed_end,
        Ok(Vec::new()),
        "the failed connection is closed with a FIN"
    );
    assert_eq!(&buf, b"after!");
    assert_eq!(&fresh_buf, b"fresh");
    let events = log.events();
    assert!(
        events.contains(&"lost: failed data_received panicked: asked to panic".to_string()),
        "{events:?}"
    );
}

/// Echoes, and panics when dropped (a bug in a protocol's cleanup).
struct PanicsWhenDropped(Option<Transport>);

impl Protocol for PanicsWhenDropped {
    fn connection_made(&mut self, transport: &Transport) {
        self.0 = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.0.as_ref().unwrap().write(data);
    }
}

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("drop fails");
        }
    }
}

#[test]
fn a_protocol_whose_drop_panics_at_the_end_of_its_connection_stops_nothing_else() {
    let reactor = Reactor::new().unwrap();
    let fresh = serve(
        &reactor,
        |_peer| PanicsWhenDropped(None),
        |addr, handle| {
            let mut first = connect(addr);
            first.write_all(b"one").unwrap();
            let mut buf = [0; 3];
            first.read_exact(&mut buf).unwrap();
            drop(first);
            // The reactor dropped the first protocol (which panicked) and
            // serves the next connection.
            let mut second = connect(addr);
            second.write_all(b"two").unwrap();
            second.read_exact(&mut buf).unwrap();
            handle.stop();
            buf
        },
    );
    assert_eq!(&fresh, b"two");
}

struct PanickyFactory {
    calls: Rc<Cell<usize>>,
}

impl Factory for PanickyFactory {
    type Protocol = Inspect<Box<dyn FnMut(&Transport)>>;
    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Self::Protocol> {
        self.calls.set(self.calls.get() + 1);
        match self.calls.get() {
            1 => panic!("build_protocol fails once"),
            2 => Some(Inspect(Box::new(|_: &Transport| {
                panic!("connection_made fails once")
            }))),
            _ => Some(Inspect(Box::new(|t: &Transport| t.write("ok")))),
        }
    }
}

#[test]
fn panics_in_build_protocol_and_connection_made_close_that_connection_only() {
    let reactor = Reactor::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let port = reactor
        .listen_tcp(
            "127.0.0.1:0",
            PanickyFactory {
                calls: calls.clone(),
            },
        )
        .unwrap();
    let addr = port.host();
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut results = Vec::new();
        for _ in 0..3 {
            let mut stream = connect(addr.tcp().unwrap());
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0; 2];
            results.push(match stream.read(&mut buf) {
                Ok(n) => buf[..n].to_vec(),
                Err(e) => format!("{:?}", e.kind()).into_bytes(),
            });
        }
        handle.stop();
        results
    });
    run(&reactor);
    let results = client.join().unwrap();
    assert_eq!(results, [b"".to_vec(), b"".to_vec(), b"ok".to_vec()]);
    assert_eq!(calls.get(), 3);
}

/// Streams `total` bytes in 16 KiB chunks, one burst per reactor turn, for
/// as long as it is not paused: the usual shape of a push producer.
struct Producer {
    state: Rc<RefCell<ProducerState>>,
}

struct ProducerState {
    transport: Option<Transport>,
    sent: usize,
    total: usize,
    paused: bool,
    log: Log,
    max_buffered: Rc<Cell<usize>>,
}

fn produce(state: Rc<RefCell<ProducerState>>) {
    let mut st = state.borrow_mut();
    let transport = st.transport.clone().unwrap();
    let chunk = Bytes::from(vec![7u8; 16 * 1024]);
    // One burst: up to the high watermark, then let the reactor flush.
    while !st.paused && st.sent < st.total && transport.write_buffer_size() <= 64 * 1024 {
        transport.write(chunk.clone());
        st.sent += chunk.len();
        st.max_buffered
            .set(st.max_buffered.get().max(transport.write_buffer_size()));
    }
    if st.sent >= st.total {
        transport.lose_connection();
    } else if !st.paused {
        let again = state.clone();
        twill::call_later(Duration::ZERO, move || produce(again));
    }
}

impl Protocol for Producer {
    fn connection_made(&mut self, transport: &Transport) {
        self.state.borrow_mut().transport = Some(transport.clone());
        produce(self.state.clone());
    }
    fn data_received(&mut self, _data: Bytes) {}
    fn pause_writing(&mut self) {
        let mut st = self.state.borrow_mut();
        st.log.push("pause");
        st.paused = true;
    }
    fn resume_writing(&mut self) {
        {
            let mut st = self.state.borrow_mut();
            st.log.push("resume");
            st.paused = false;
        }
        produce(self.state.clone());
    }
}

#[test]
fn a_peer_that_does_not_read_pauses_the_producer_and_memory_stays_bounded() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let max_buffered = Rc::new(Cell::new(0));
    let (server_log, max) = (log.clone(), max_buffered.clone());
    let total = 32 * 1024 * 1024;
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| Producer {
            state: Rc::new(RefCell::new(ProducerState {
                transport: None,
                sent: 0,
                total,
                paused: false,
                log: server_log.clone(),
                max_buffered: max.clone(),
            })),
        })
        .unwrap();
    let addr = port.host();
    let (go, wait_for_go) = mpsc::channel::<()>();
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut stream = connect(addr.tcp().unwrap());
        // Don't read until the test says so: the server must pause.
        wait_for_go.recv_timeout(LIMIT).unwrap();
        let got = read_to_end(&mut stream).unwrap();
        handle.stop();
        got
    });
    let check_log = log.clone();
    reactor.call_later(Duration::ZERO, move || {
        wait_for_pause(check_log, go);
    });
    run(&reactor);
    let got = client.join().unwrap();
    assert_eq!(got.len(), total, "every byte arrives once the peer reads");
    assert!(got.iter().all(|&b| b == 7));
    let events = log.events();
    assert_eq!(events.first().map(String::as_str), Some("pause"));
    assert!(events.contains(&"resume".to_string()));
    assert!(
        max_buffered.get() <= 64 * 1024 + 16 * 1024,
        "the write buffer stopped near the high watermark, peaked at {}",
        max_buffered.get()
    );
}

fn wait_for_pause(log: Log, go: mpsc::Sender<()>) {
    if log.events().iter().any(|e| e == "pause") {
        go.send(()).unwrap();
    } else {
        twill::call_later(Duration::from_millis(2), move || wait_for_pause(log, go));
    }
}

/// Pauses reading on connect; resumes when told.
struct Pausable {
    received: Rc<Cell<usize>>,
}

impl Protocol for Pausable {
    fn connection_made(&mut self, transport: &Transport) {
        transport.pause_reading();
        PAUSED.with(|p| *p.borrow_mut() = Some(transport.clone()));
    }
    fn data_received(&mut self, data: Bytes) {
        self.received.set(self.received.get() + data.len());
    }
}

thread_local! {
    static PAUSED: RefCell<Option<Transport>> = const { RefCell::new(None) };
}

#[test]
fn pause_reading_pushes_back_on_the_peer_and_resume_reading_delivers_everything() {
    let reactor = Reactor::new().unwrap();
    let received = Rc::new(Cell::new(0));
    let sink = received.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| Pausable {
            received: sink.clone(),
        })
        .unwrap();
    let addr = port.host();
    let handle = reactor.handle();
    let (sent_tx, sent_rx) = mpsc::channel();
    let client = thread::spawn(move || {
        let mut stream = connect(addr.tcp().unwrap());
        stream.set_nonblocking(true).unwrap();
        let chunk = [1u8; 64 * 1024];
        let mut sent = 0usize;
        let mut blocked_for = 0;
        // Write until the kernel's buffers on both sides are full.
        while blocked_for < 50 {
            match stream.write(&chunk) {
                Ok(n) => {
                    sent += n;
                    blocked_for = 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    blocked_for += 1;
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("{e}"),
            }
            assert!(
                sent < 256 * 1024 * 1024,
                "the server kept reading while paused"
            );
        }
        sent_tx.send(sent).unwrap();
        let _ = handle;
        stream
    });
    let total = Rc::new(Cell::new(None));
    let total_seen = total.clone();
    let counted = received.clone();
    reactor.call_later(Duration::ZERO, move || {
        wait_for_total(sent_rx, total_seen, counted);
    });
    run(&reactor);
    let _stream = client.join().unwrap();
    let sent = total.get().expect("the client reported what it sent");
    assert!(sent > 0);
    assert_eq!(
        received.get(),
        sent,
        "everything sent arrives after resume_reading"
    );
}

fn wait_for_total(
    rx: mpsc::Receiver<usize>,
    total: Rc<Cell<Option<usize>>>,
    received: Rc<Cell<usize>>,
) {
    match total.get() {
        None => {
            if let Ok(sent) = rx.try_recv() {
                assert_eq!(
                    received.get(),
                    0,
                    "nothing is delivered while reading is paused"
                );
                total.set(Some(sent));
                PAUSED.with(|p| p.borrow().as_ref().unwrap().resume_reading());
            }
        }
        Some(sent) if received.get() == sent => {
            twill::stop();
            return;
        }
        Some(_) => {}
    }
    twill::call_later(Duration::from_millis(2), move || {
        wait_for_total(rx, total, received)
    });
}

#[test]
fn connections_opened_and_dropped_leak_no_file_descriptors() {
    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0)
    }
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let lost = Rc::new(Cell::new(0usize));
    let server_lost = lost.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| Counter {
            lost: server_lost.clone(),
        })
        .unwrap();
    let addr = port.host();
    let before = open_fds();
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 150;
    let client = thread::spawn(move || {
        for round in 0..ROUNDS {
            let streams: Vec<TcpStream> = (0..PER_ROUND)
                .map(|_| connect(addr.tcp().unwrap()))
                .collect();
            for (i, mut stream) in streams.into_iter().enumerate() {
                match (round + i) % 3 {
                    0 => drop(stream),
                    1 => {
                        let _ = stream.write_all(b"data then reset");
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        drop(stream);
                    }
                    _ => {
                        let _ = stream.shutdown(Shutdown::Write);
                        let _ = read_to_end(&mut stream);
                    }
                }
            }
        }
    });
    let counted = lost.clone();
    reactor.call_later(Duration::ZERO, move || {
        poll_until(log, move |_| counted.get() == ROUNDS * PER_ROUND);
    });
    run(&reactor);
    client.join().unwrap();
    assert_eq!(
        lost.get(),
        ROUNDS * PER_ROUND,
        "every connection was lost exactly once"
    );
    let after = open_fds();
    assert!(after <= before + 2, "fds before {before}, after {after}");
}

struct Counter {
    lost: Rc<Cell<usize>>,
}

impl Protocol for Counter {
    fn data_received(&mut self, _data: Bytes) {}
    fn connection_lost(&mut self, _reason: &Reason) {
        self.lost.set(self.lost.get() + 1);
    }
}

#[test]
fn a_protocol_that_fails_closes_with_its_error_after_flushing() {
    #[derive(Debug)]
    struct BadInput;
    impl std::fmt::Display for BadInput {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bad input")
        }
    }
    impl std::error::Error for BadInput {}

    struct Strict {
        transport: Option<Transport>,
        log: Log,
    }
    impl Protocol for Strict {
        fn connection_made(&mut self, transport: &Transport) {
            self.transport = Some(transport.clone());
        }
        fn data_received(&mut self, _data: Bytes) {
            let transport = self.transport.as_ref().unwrap();
            transport.write("error: bad input\n");
            transport.fail(BadInput);
        }
        fn connection_lost(&mut self, reason: &Reason) {
            let is_ours =
                matches!(reason, Reason::Failed(e) if e.downcast_ref::<BadInput>().is_some());
            self.log
                .push(format!("{} ours={is_ours}", describe(reason)));
        }
    }

    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    assert_eq!(
        serve(
            &reactor,
            move |_peer| Strict {
                transport: None,
                log: server_log.clone(),
            },
            move |addr, handle| {
                let mut stream = connect(addr);
                stream.write_all(b"garbage").unwrap();
                let got = read_to_end(&mut stream).unwrap();
                handle.stop();
                got
            }
        ),
        b"error: bad input\n"
    );
    assert_eq!(log.events(), ["lost: failed bad input ours=true"]);
}

#[test]
fn listening_on_ipv6_loopback_works() {
    let Ok(probe) = TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    drop(probe);
    let reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tcp("[::1]:0", |_peer| Echo::new(Log::default()))
        .unwrap();
    let addr = port.host().tcp().unwrap();
    assert!(addr.is_ipv6());
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        stream.write_all(b"v6").unwrap();
        let mut buf = [0; 2];
        stream.read_exact(&mut buf).unwrap();
        handle.stop();
        buf
    });
    run(&reactor);
    assert_eq!(&client.join().unwrap(), b"v6");
}

/// A client factory that records the callbacks it gets.
struct Recording {
    log: Log,
    send: &'static str,
}

impl Factory for Recording {
    type Protocol = Echo;
    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Echo> {
        self.log.push("build");
        Some(Echo::new(self.log.clone()))
    }
    fn start_factory(&mut self) {
        self.log.push("start");
    }
    fn stop_factory(&mut self) {
        self.log.push("stop");
        twill::stop();
    }
}

impl ClientFactory for Recording {
    fn started_connecting(&mut self, _connector: &Connector) {
        self.log.push("started");
    }
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &std::io::Error) {
        self.log.push(format!("failed {:?}", reason.kind()));
    }
    fn client_connection_lost(&mut self, connector: &Connector, reason: &Reason) {
        assert_eq!(connector.state(), twill::ConnectorState::Disconnected);
        self.log.push(format!("client {}", describe(reason)));
        let _ = self.send;
    }
}

#[test]
fn a_refused_connection_reports_connection_failed() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    reactor
        .connect_tcp(
            addr,
            Recording {
                log: log.clone(),
                send: "",
            },
        )
        .unwrap();
    run(&reactor);
    assert_eq!(
        log.events(),
        ["start", "started", "failed ConnectionRefused", "stop"]
    );
}

#[test]
fn a_client_connection_runs_its_protocol_then_reports_the_loss() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut stream, _) = server.accept().unwrap();
        stream.write_all(b"greeting").unwrap();
        let mut buf = [0; 8];
        stream.read_exact(&mut buf).unwrap();
        buf
    });
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let connector = reactor
        .connect_tcp(
            addr,
            Recording {
                log: log.clone(),
                send: "",
            },
        )
        .unwrap();
    assert_eq!(connector.destination(), addr);
    assert_eq!(connector.state(), twill::ConnectorState::Connecting);
    run(&reactor);
    assert_eq!(&peer.join().unwrap(), b"greeting", "the client echoed");
    assert_eq!(
        log.events(),
        [
            "start",
            "started",
            "build",
            "made",
            "data greeting",
            "eof",
            "lost: done",
            "client lost: done",
            "stop"
        ]
    );
}

#[test]
fn a_connect_that_gets_no_answer_times_out() {
    // A listener that never accepts, with its accept queue full: further
    // SYNs are dropped and the connect hangs until our timeout.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let filler =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        filler.set_nonblocking(true).unwrap();
        let _ = filler.connect(&addr.into());
        fillers.push(filler);
    }
    thread::sleep(Duration::from_millis(50));
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    reactor
        .connect_tcp_with_timeout(
            addr,
            Duration::from_millis(300),
            Recording {
                log: log.clone(),
                send: "",
            },
        )
        .unwrap();
    run(&reactor);
    assert_eq!(
        log.events(),
        ["start", "started", "failed TimedOut", "stop"]
    );
    drop(fillers);
}

#[test]
fn stopping_the_reactor_closes_connections_gracefully_and_runs_shutdown_triggers() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| Echo::new(server_log.clone()))
        .unwrap();
    let addr = port.host();
    for phase in [
        twill::Phase::Before,
        twill::Phase::During,
        twill::Phase::After,
    ] {
        let trigger_log = log.clone();
        reactor.add_system_event_trigger(phase, twill::SystemEvent::Shutdown, move || {
            trigger_log.push(format!("{phase:?}"));
        });
    }
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut stream = connect(addr.tcp().unwrap());
        stream.write_all(b"x").unwrap();
        let mut buf = [0; 1];
        stream.read_exact(&mut buf).unwrap();
        handle.stop();
        read_to_end(&mut stream).map_err(|e| e.kind())
    });
    run(&reactor);
    assert_eq!(
        client.join().unwrap(),
        Ok(Vec::new()),
        "the client sees a clean EOF"
    );
    assert_eq!(
        log.events(),
        ["made", "data x", "Before", "lost: done", "During", "After"]
    );
}

#[test]
fn a_shutdown_that_cannot_flush_aborts_at_the_deadline() {
    let reactor = Reactor::new().unwrap();
    reactor.set_shutdown_timeout(Duration::from_millis(200));
    let log = Log::default();
    let server_log = log.clone();
    drop(serve(
        &reactor,
        move |_peer| Burst {
            size: 64 * 1024 * 1024,
            abort: false,
            log: server_log.clone(),
        },
        move |addr, handle| {
            let mut stream = connect(addr);
            // Read one byte so the server has surely taken the connection, then
            // stop reading: the server cannot flush what it wrote.
            let mut first = [0; 1];
            stream.read_exact(&mut first).unwrap();
            handle.stop();
            stream
        },
    ));
    assert_eq!(log.events(), ["lost: aborted"]);
}

/// Serves `left` connections, then stops its own port from inside
/// `build_protocol`.
struct Limited {
    left: usize,
    log: Log,
}

impl Factory for Limited {
    type Protocol = Echo;
    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Echo> {
        self.left -= 1;
        if self.left == 0 {
            PORT_TO_STOP.with(|p| p.borrow().as_ref().unwrap().stop_listening());
        }
        Some(Echo::new(self.log.clone()))
    }
    fn stop_factory(&mut self) {
        self.log.push("stop");
    }
}

thread_local! {
    static PORT_TO_STOP: RefCell<Option<twill::ListeningPort>> = const { RefCell::new(None) };
}

#[test]
fn a_factory_may_stop_its_own_port_from_build_protocol() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let port = reactor
        .listen_tcp(
            "127.0.0.1:0",
            Limited {
                left: 2,
                log: log.clone(),
            },
        )
        .unwrap();
    PORT_TO_STOP.with(|p| *p.borrow_mut() = Some(port.clone()));
    let addr = port.host();
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut served = Vec::new();
        for _ in 0..2 {
            let mut stream = connect(addr.tcp().unwrap());
            stream.write_all(b"ok").unwrap();
            let mut buf = [0; 2];
            stream.read_exact(&mut buf).unwrap();
            served.push(stream);
        }
        let third = TcpStream::connect(addr).map(|_| ()).map_err(|e| e.kind());
        handle.stop();
        third
    });
    run(&reactor);
    assert_eq!(client.join().unwrap(), Err(ErrorKind::ConnectionRefused));
    assert_eq!(log.events().iter().filter(|e| *e == "stop").count(), 1);
    assert!(!port.is_listening());
}

/// Says goodbye and closes as soon as it connects.
struct Goodbye {
    log: Log,
}

impl Protocol for Goodbye {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write("bye");
        transport.lose_connection();
    }
    fn data_received(&mut self, _data: Bytes) {
        self.log.push("data after lose_connection");
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

#[test]
fn connection_lost_comes_once_the_close_is_flushed_without_waiting_for_the_peer() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (reading_done, wait) = mpsc::channel();
    let peer = serve(
        &reactor,
        move |_peer| Goodbye {
            log: server_log.clone(),
        },
        move |addr, _handle| {
            let mut stream = connect(addr);
            // Send something the server never reads: the close must still
            // not become a reset that destroys "bye".
            stream.write_all(b"unread input").unwrap();
            let got = read_to_end(&mut stream).unwrap();
            reading_done.send(()).unwrap();
            (stream, got)
        },
    );
    let (stream, got) = peer;
    assert_eq!(got, b"bye");
    wait.recv_timeout(LIMIT).unwrap();
    // The reactor stopped from connection_lost while this side was still
    // open: the protocol did not wait for the peer to close.
    assert_eq!(log.events(), ["lost: done"]);
    drop(stream);
}

#[test]
fn the_transport_counts_bytes_written_and_bytes_sent() {
    let reactor = Reactor::new().unwrap();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let seen = counts.clone();
    let got = serve(
        &reactor,
        move |_peer| {
            let seen = seen.clone();
            Inspect(move |t: &Transport| {
                t.write("hello, ");
                t.write_sequence(["wor", "ld"]);
                seen.borrow_mut().push((t.bytes_written(), t.bytes_sent()));
                let (later, transport) = (seen.clone(), t.clone());
                twill::call_later(Duration::from_millis(1), move || {
                    later
                        .borrow_mut()
                        .push((transport.bytes_written(), transport.bytes_sent()));
                    transport.lose_connection();
                });
            })
        },
        |addr, handle| {
            let mut stream = connect(addr);
            let got = read_to_end(&mut stream).unwrap();
            handle.stop();
            got
        },
    );
    assert_eq!(got, b"hello, world");
    assert_eq!(
        *counts.borrow(),
        [(12, 0), (12, 12)],
        "queued first, sent after the turn"
    );
}

#[test]
fn reactors_on_several_threads_can_share_a_port_and_the_kernel_spreads_connections() {
    let reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tcp_reuse_port("127.0.0.1:0", |_peer| Inspect(|t: &Transport| t.write("A")))
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let second = thread::spawn(move || {
        let reactor = Reactor::new().unwrap();
        reactor
            .listen_tcp_reuse_port(addr, |_peer| Inspect(|t: &Transport| t.write("B")))
            .unwrap();
        ready_tx.send(reactor.handle()).unwrap();
        run(&reactor);
    });
    let second_handle = ready_rx.recv_timeout(LIMIT).unwrap();
    let handle = reactor.handle();
    let client = thread::spawn(move || {
        let mut served_by = std::collections::BTreeSet::new();
        let mut streams = Vec::new();
        for _ in 0..64 {
            let mut stream = connect(addr);
            let mut who = [0; 1];
            stream.read_exact(&mut who).unwrap();
            served_by.insert(who[0]);
            streams.push(stream);
        }
        handle.stop();
        second_handle.stop();
        served_by
    });
    run(&reactor);
    let served_by = client.join().unwrap();
    second.join().unwrap();
    assert_eq!(
        served_by.into_iter().collect::<Vec<_>>(),
        b"AB",
        "both reactors served connections"
    );
}

/// Reads straight into its own buffer (`get_buffer`), echoes each complete
/// line, and records how it was called.
struct BufferedLines {
    log: Log,
    pending: twill::BytesMut,
    transport: Option<Transport>,
}

impl Protocol for BufferedLines {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, _data: Bytes) {
        self.log.push("data_received");
    }
    fn get_buffer(&mut self) -> Option<&mut twill::BytesMut> {
        Some(&mut self.pending)
    }
    fn buffer_updated(&mut self, appended: usize) {
        assert!(appended > 0 && appended <= self.pending.len());
        if self.pending.starts_with(b"panic") {
            panic!("asked to panic");
        }
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line = self.pending.split_to(end + 1).freeze();
            self.transport.as_ref().unwrap().write(line);
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
    }
}

#[test]
fn a_protocol_with_its_own_buffer_gets_every_byte_read_into_it() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (echoed, sent, doomed_end) = serve(
        &reactor,
        move |_peer| BufferedLines {
            log: server_log.clone(),
            pending: twill::BytesMut::new(),
            transport: None,
        },
        |addr, handle| {
            // Far more than one read's worth, in lines of every length.
            let mut sent = Vec::new();
            for i in 0..20_000 {
                sent.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 97));
                sent.push(b'\n');
            }
            let mut stream = connect(addr);
            let writer = {
                let mut stream = stream.try_clone().unwrap();
                let sent = sent.clone();
                thread::spawn(move || {
                    stream.write_all(&sent).unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                })
            };
            let echoed = read_to_end(&mut stream).unwrap();
            writer.join().unwrap();
            // A panic in buffer_updated closes only that connection.
            let mut doomed = connect(addr);
            doomed.write_all(b"panic\n").unwrap();
            let doomed_end = read_to_end(&mut doomed).map_err(|e| e.kind());
            handle.stop();
            (echoed, sent, doomed_end)
        },
    );
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "every byte, in order");
    assert_eq!(doomed_end, Ok(Vec::new()));
    assert_eq!(
        log.events(),
        [
            "lost: done",
            "lost: failed buffer_updated panicked: asked to panic"
        ],
        "data_received is never called"
    );
}
