//! Sockets, names and endpoint strings from the outside: what a new user
//! types and what a hostile or broken peer does. Unix listeners next to
//! foreign servers and odd files, connectors stopped at every phase and
//! against many dead addresses, descriptors that must not leak, reactor
//! stops in the middle of a lookup, and addresses and endpoint strings
//! that must read back as they were written.
//!
//! The tests run one at a time (`SERIAL`): some count the process's open
//! file descriptors, and one sends the process SIGTERM.

use std::cell::RefCell;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{mpsc, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket, Type};
use twill::net::endpoint::{parse_client, parse_server, ClientDescription, ServerDescription};
use twill::net::{Address, StaticResolver, UnixAddress, DEFAULT_UNIX_MODE};
use twill::{
    Bytes, ClientFactory, Connector, ConnectorState, Factory, Protocol, Reactor, Reason,
    ReconnectingClientFactory, Transport,
};
use twill_test_support::files::TempDir;
use twill_test_support::reactor::{run, run_bounded};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the lock that runs these tests one at a time. The first run of
/// a reactor in the process allocates descriptors once for good (the
/// signal handlers' socket pair, the I/O driver's poller): that is done
/// here, so the tests that count descriptors count only their own.
fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    static WARM_UP: Once = Once::new();
    WARM_UP.call_once(|| {
        let reactor = Reactor::new().unwrap();
        reactor.stop();
        run(&reactor);
    });
    guard
}

type Log = Rc<RefCell<Vec<String>>>;

/// What a [`Recorder`] does on a failure instead of stopping the reactor.
type OnFailed = Box<dyn FnMut(&Connector)>;

fn log() -> Log {
    Rc::default()
}

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Records what its connector reports; optionally stops the reactor on a
/// failure or a loss, or refuses to build a protocol.
struct Recorder {
    log: Log,
    stop_on_end: bool,
    refuse: bool,
    on_failed: Option<OnFailed>,
}

impl Recorder {
    fn new(log: &Log) -> Recorder {
        Recorder {
            log: log.clone(),
            stop_on_end: true,
            refuse: false,
            on_failed: None,
        }
    }
}

/// Says hello, then closes.
struct Hello {
    log: Log,
}

impl Protocol for Hello {
    fn connection_made(&mut self, transport: &Transport) {
        self.log.borrow_mut().push("made".into());
        transport.write("hello");
        transport.lose_connection();
    }
    fn data_received(&mut self, _: Bytes) {}
    fn connection_lost(&mut self, _: &Reason) {
        self.log.borrow_mut().push("protocol lost".into());
    }
}

impl Factory for Recorder {
    type Protocol = Hello;
    fn build_protocol(&mut self, peer: Address) -> Option<Hello> {
        self.log.borrow_mut().push(format!("build {peer}"));
        (!self.refuse).then(|| Hello {
            log: self.log.clone(),
        })
    }
    fn start_factory(&mut self) {
        self.log.borrow_mut().push("start".into());
    }
    fn stop_factory(&mut self) {
        self.log.borrow_mut().push("stop".into());
    }
}

impl ClientFactory for Recorder {
    fn started_connecting(&mut self, _: &Connector) {
        self.log.borrow_mut().push("connecting".into());
    }
    fn client_connection_failed(&mut self, connector: &Connector, reason: &io::Error) {
        self.log
            .borrow_mut()
            .push(format!("failed {:?}", reason.kind()));
        if let Some(f) = self.on_failed.as_mut() {
            f(connector);
        } else if self.stop_on_end {
            twill::stop();
        }
    }
    fn client_connection_lost(&mut self, _: &Connector, _: &Reason) {
        self.log.borrow_mut().push("lost".into());
        if self.stop_on_end {
            twill::stop();
        }
    }
}

/// A server protocol that ignores what it gets.
struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _: Bytes) {}
}

/// Stops the reactor after `delay`, whatever happens.
fn stop_after(reactor: &Reactor, delay: Duration) {
    let handle = reactor.handle();
    reactor.call_later(delay, move || handle.stop());
}

/// A TCP port nobody listens on (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A listening socket whose accept queue is full: a new connection to it
/// (TCP: the SYN is dropped; Unix: connect waits or says EAGAIN) neither
/// connects nor fails. The sockets that filled it are returned with it.
fn full_backlog(addr: &SockAddr) -> (Socket, Vec<Socket>) {
    let domain = addr.domain();
    let listener = Socket::new(domain, Type::STREAM, None).unwrap();
    listener.bind(addr).unwrap();
    listener.listen(0).unwrap();
    let target = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = Socket::new(domain, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&target);
        fillers.push(s);
    }
    // Let the handshakes finish, so the queue is really full.
    thread::sleep(Duration::from_millis(100));
    (listener, fillers)
}

// ---------------------------------------------------------------------
// Unix listeners
// ---------------------------------------------------------------------

#[test]
fn listen_unix_next_to_a_busy_foreign_server_fails_promptly_instead_of_hanging() {
    let _serial = serial();
    let dir = TempDir::new("review-busy");
    let path = dir.path().join("busy.sock");
    // Another program's server (no lock file), overwhelmed: its accept
    // queue is full and it does not accept.
    let (foreign, fillers) = full_backlog(&SockAddr::unix(&path).unwrap());
    let (tx, rx) = mpsc::channel();
    let probe_path = path.clone();
    let worker = thread::spawn(move || {
        let reactor = Reactor::new().unwrap();
        let result = reactor
            .listen_unix(&probe_path, DEFAULT_UNIX_MODE, |_peer| Quiet)
            .map(|_| ());
        let _ = tx.send(result.map_err(|err| err.kind()));
    });
    let answer = rx.recv_timeout(Duration::from_secs(3));
    // Unblock the worker whatever happened, so the test ends.
    drop(fillers);
    drop(foreign);
    worker.join().unwrap();
    assert_eq!(
        answer,
        Ok(Err(io::ErrorKind::AddrInUse)),
        "listen_unix must not wait on a server that does not accept"
    );
}

#[test]
fn an_abstract_name_taken_twice_is_addr_in_use() {
    let _serial = serial();
    let name = format!("@twill-review-{}", std::process::id());
    let reactor = Reactor::new().unwrap();
    let first = reactor
        .listen_unix(name.as_str(), DEFAULT_UNIX_MODE, |_peer| Quiet)
        .unwrap();
    let err = reactor
        .listen_unix(name.as_str(), DEFAULT_UNIX_MODE, |_peer| Quiet)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    first.stop_listening();
    let again = reactor
        .listen_unix(name.as_str(), DEFAULT_UNIX_MODE, |_peer| Quiet)
        .expect("an abstract name is free once its port stops");
    again.stop_listening();
}

#[test]
fn a_directory_or_a_regular_file_at_the_path_is_left_alone_and_so_is_its_lock() {
    let _serial = serial();
    let dir = TempDir::new("review-notsocket");
    let reactor = Reactor::new().unwrap();
    let file = dir.path().join("file.sock");
    fs::write(&file, "precious").unwrap();
    let sub = dir.path().join("dir.sock");
    fs::create_dir(&sub).unwrap();
    for path in [&file, &sub] {
        let err = reactor
            .listen_unix(path, DEFAULT_UNIX_MODE, |_peer| Quiet)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        assert!(!Path::new(&lock).exists(), "no lock file left behind");
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "precious");
    assert!(sub.is_dir());

    // Connecting to them fails through the factory, not with a panic or
    // an error from connect_unix.
    for path in [&file, &sub] {
        let reactor = Reactor::new().unwrap();
        let events = log();
        reactor
            .connect_unix(path.as_path(), Recorder::new(&events))
            .unwrap();
        run(&reactor);
        let events = events.borrow();
        assert_eq!(events[0], "start");
        assert_eq!(events[1], "connecting");
        assert_eq!(
            events[2],
            format!("failed {:?}", io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(events[3], "stop");
    }
}

#[test]
fn a_path_whose_directory_does_not_exist_is_not_found_and_creates_nothing() {
    let _serial = serial();
    let dir = TempDir::new("review-nodir");
    let path = dir.path().join("missing").join("app.sock");
    let reactor = Reactor::new().unwrap();
    let err = reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, |_peer| Quiet)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_restrictive_mode_is_honoured_and_the_socket_file_goes_when_the_reactor_is_dropped() {
    let _serial = serial();
    let dir = TempDir::new("review-drop");
    let path = dir.path().join("app.sock");
    let lock = dir.path().join("app.sock.lock");
    let fds = open_fds();
    {
        let reactor = Reactor::new().unwrap();
        let port = reactor.listen_unix(&path, 0o600, |_peer| Quiet).unwrap();
        let mode = fs::symlink_metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(lock.exists());
        // Never run, never stopped: the port handle outlives the reactor.
        drop(reactor);
        assert!(!path.exists(), "socket file removed when the reactor goes");
        assert!(!lock.exists(), "lock file removed when the reactor goes");
        assert!(!port.is_listening());
    }
    assert_eq!(open_fds(), fds, "socket, lock and poller closed");
    // The path is free again.
    let reactor = Reactor::new().unwrap();
    reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, |_peer| Quiet)
        .unwrap()
        .stop_listening();
}

#[test]
fn sigterm_stops_a_unix_server_gracefully_and_removes_its_files() {
    let _serial = serial();
    let dir = TempDir::new("review-sigterm");
    let path = dir.path().join("app.sock");
    let lock = dir.path().join("app.sock.lock");
    let reactor = Reactor::new().unwrap();
    let events = log();
    let server_events = events.clone();
    let port = reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, move |_peer| {
            server_events.borrow_mut().push("accepted".into());
            Quiet
        })
        .unwrap();
    // A client that stays connected: the graceful stop closes it.
    let client_path = path.clone();
    let client = thread::spawn(move || {
        let mut stream = UnixStream::connect(&client_path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).map(|_| rest.len())
    });
    reactor.call_later(Duration::from_millis(200), || {
        // SAFETY: sends a signal to this process, whose running reactor
        // has a handler for it.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
    run(&reactor);
    assert_eq!(*events.borrow(), ["accepted"]);
    assert!(!port.is_listening());
    assert!(!path.exists() && !lock.exists(), "both files removed");
    assert_eq!(client.join().unwrap().unwrap(), 0, "the client saw EOF");
}

#[test]
fn peer_credentials_are_none_over_tcp_and_stay_readable_until_the_connection_ends() {
    let _serial = serial();
    let reactor = Reactor::new().unwrap();
    let events = log();
    struct Creds(Log, Option<Transport>);
    impl Protocol for Creds {
        fn connection_made(&mut self, transport: &Transport) {
            self.0
                .borrow_mut()
                .push(format!("made {}", transport.peer_credentials().is_some()));
            self.1 = Some(transport.clone());
        }
        fn data_received(&mut self, _: Bytes) {}
        fn eof_received(&mut self) -> bool {
            let t = self.1.as_ref().unwrap();
            self.0
                .borrow_mut()
                .push(format!("eof {}", t.peer_credentials().is_some()));
            false
        }
        fn connection_lost(&mut self, _: &Reason) {
            twill::stop();
        }
    }
    let tcp_events = events.clone();
    let tcp = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| Creds(tcp_events.clone(), None))
        .unwrap();
    let addr = tcp.host().tcp().unwrap();
    let client = thread::spawn(move || {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        thread::sleep(Duration::from_millis(100));
    });
    run(&reactor);
    client.join().unwrap();
    assert_eq!(*events.borrow(), ["made false", "eof false"]);

    let dir = TempDir::new("review-creds");
    let path = dir.path().join("app.sock");
    let reactor = Reactor::new().unwrap();
    let events = log();
    let unix_events = events.clone();
    reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, move |_peer| {
            Creds(unix_events.clone(), None)
        })
        .unwrap();
    let client = thread::spawn(move || {
        let stream = UnixStream::connect(&path).unwrap();
        // The peer is gone (closed, not half-closed) when the server
        // reads the EOF.
        drop(stream);
    });
    run(&reactor);
    client.join().unwrap();
    assert_eq!(*events.borrow(), ["made true", "eof true"]);
}

#[test]
fn half_close_and_write_eof_work_over_unix_in_both_directions() {
    let _serial = serial();
    let dir = TempDir::new("review-halfclose");
    let path = dir.path().join("app.sock");
    let reactor = Reactor::new().unwrap();
    let events = log();
    /// Keeps the connection open after the peer's EOF, answers, then
    /// half-closes its own side with write_eof.
    struct HalfCloser(Log, Option<Transport>, Vec<u8>);
    impl Protocol for HalfCloser {
        fn connection_made(&mut self, transport: &Transport) {
            self.1 = Some(transport.clone());
        }
        fn data_received(&mut self, data: Bytes) {
            self.2.extend_from_slice(&data);
        }
        fn eof_received(&mut self) -> bool {
            let t = self.1.as_ref().unwrap();
            self.0
                .borrow_mut()
                .push(format!("eof after {}", String::from_utf8_lossy(&self.2)));
            t.write(Bytes::from(self.2.to_ascii_uppercase()));
            t.write_eof();
            true
        }
        fn connection_lost(&mut self, _: &Reason) {
            self.0.borrow_mut().push("lost".into());
            twill::stop();
        }
    }
    let server_events = events.clone();
    reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, move |_peer| {
            HalfCloser(server_events.clone(), None, Vec::new())
        })
        .unwrap();
    let client = thread::spawn(move || {
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"quiet please").unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    });
    run(&reactor);
    assert_eq!(client.join().unwrap(), "QUIET PLEASE");
    assert_eq!(*events.borrow(), ["eof after quiet please", "lost"]);
}

// ---------------------------------------------------------------------
// Connectors
// ---------------------------------------------------------------------

#[test]
fn thirty_refusing_addresses_give_one_failure_and_leak_no_descriptor() {
    let _serial = serial();
    let reactor = Reactor::new().unwrap();
    let port = closed_port();
    let names = StaticResolver::new();
    names.insert_ips(
        "many.test",
        (1..=30).map(|i| std::net::IpAddr::from([127, 0, 0, i])),
    );
    reactor.set_resolver(names.clone());
    // Warm up what the first connect allocates once (the poller, the
    // executor's notifier).
    let fds = open_fds();
    let events = log();
    let connector = reactor
        .connect_tcp(("many.test", port), Recorder::new(&events))
        .unwrap();
    drop(connector);
    run(&reactor);
    assert_eq!(
        *events.borrow(),
        [
            "start",
            "connecting",
            &format!("failed {:?}", io::ErrorKind::ConnectionRefused),
            "stop"
        ]
    );
    assert_eq!(names.lookups(), ["many.test"]);
    assert!(open_fds() <= fds, "{} open, {fds} before", open_fds());
}

#[test]
fn an_attempt_that_never_answers_times_out_once_and_stop_connecting_frees_its_socket() {
    let _serial = serial();
    let (listener, fillers) = full_backlog(&SockAddr::from(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    ));
    let dest = listener.local_addr().unwrap().as_socket().unwrap();

    // Timed out: one failure, TimedOut, the socket closed.
    let reactor = Reactor::new().unwrap();
    let fds = open_fds();
    let events = log();
    let started = Instant::now();
    reactor
        .connect_tcp_with_timeout(dest, Duration::from_millis(300), Recorder::new(&events))
        .unwrap();
    run(&reactor);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        *events.borrow(),
        [
            "start",
            "connecting",
            &format!("failed {:?}", io::ErrorKind::TimedOut),
            "stop"
        ]
    );
    assert_eq!(open_fds(), fds);

    // Stopped by hand while in flight: Interrupted, the socket closed, and
    // the timeout never fires afterwards.
    drop(reactor);
    let fds = open_fds();
    let reactor = Reactor::new().unwrap();
    let events = log();
    let mut recorder = Recorder::new(&events);
    recorder.stop_on_end = false;
    let connector = reactor
        .connect_tcp_with_timeout(dest, Duration::from_millis(200), recorder)
        .unwrap();
    let stopper = connector.clone();
    reactor.call_later(Duration::from_millis(50), move || stopper.stop_connecting());
    stop_after(&reactor, Duration::from_millis(500));
    run(&reactor);
    assert_eq!(
        *events.borrow(),
        [
            "start",
            "connecting",
            &format!("failed {:?}", io::ErrorKind::Interrupted),
            "stop"
        ]
    );
    assert_eq!(connector.state(), ConnectorState::Disconnected);
    drop(connector);
    drop(reactor);
    assert_eq!(open_fds(), fds);
    drop((listener, fillers));
}

#[test]
fn a_reactor_stop_interrupts_an_attempt_in_flight() {
    let _serial = serial();
    let (listener, fillers) = full_backlog(&SockAddr::from(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    ));
    let dest = listener.local_addr().unwrap().as_socket().unwrap();
    let reactor = Reactor::new().unwrap();
    let events = log();
    let mut recorder = Recorder::new(&events);
    recorder.stop_on_end = false;
    reactor.connect_tcp(dest, recorder).unwrap();
    stop_after(&reactor, Duration::from_millis(100));
    run(&reactor);
    assert_eq!(
        *events.borrow(),
        [
            "start",
            "connecting",
            &format!("failed {:?}", io::ErrorKind::Interrupted),
            "stop"
        ]
    );
    drop((listener, fillers));
}

#[test]
fn a_reactor_stop_interrupts_a_lookup_as_it_does_an_attempt() {
    let _serial = serial();
    let reactor = Reactor::new().unwrap();
    let names = StaticResolver::new();
    names.insert_silence("silent.test");
    reactor.set_resolver(names);
    let events = log();
    let mut recorder = Recorder::new(&events);
    recorder.stop_on_end = false;
    let connector = reactor.connect_tcp(("silent.test", 80), recorder).unwrap();
    stop_after(&reactor, Duration::from_millis(100));
    run_bounded(&reactor, Duration::from_secs(10));
    assert_eq!(
        *events.borrow(),
        [
            "start",
            "connecting",
            &format!("failed {:?}", io::ErrorKind::Interrupted),
            "stop"
        ]
    );
    assert_eq!(connector.state(), ConnectorState::Disconnected);
}

#[test]
fn a_winner_the_factory_refuses_fails_the_connector_and_closes_the_socket() {
    let _serial = serial();
    let reactor = Reactor::new().unwrap();
    let server_events = log();
    let accepted = server_events.clone();
    let server = reactor
        .listen_tcp("127.0.0.1:0", move |_peer| {
            accepted.borrow_mut().push("accepted".into());
            struct Closed(Log);
            impl Protocol for Closed {
                fn data_received(&mut self, _: Bytes) {}
                fn connection_lost(&mut self, _: &Reason) {
                    self.0.borrow_mut().push("server lost".into());
                }
            }
            Closed(accepted.clone())
        })
        .unwrap();
    let fds = open_fds();
    let events = log();
    let mut recorder = Recorder::new(&events);
    recorder.refuse = true;
    recorder.stop_on_end = false;
    reactor.connect_tcp(server.host(), recorder).unwrap();
    stop_after(&reactor, Duration::from_millis(300));
    run(&reactor);
    let peer = server.host().to_string();
    assert_eq!(
        *events.borrow(),
        [
            "start".to_owned(),
            "connecting".to_owned(),
            format!("build {peer}"),
            format!("failed {:?}", io::ErrorKind::ConnectionAborted),
            "stop".to_owned()
        ]
    );
    assert_eq!(*server_events.borrow(), ["accepted", "server lost"]);
    drop(reactor);
    assert!(open_fds() <= fds);
}

#[test]
fn retrying_a_name_from_client_connection_failed_resolves_each_time() {
    let _serial = serial();
    let reactor = Reactor::new().unwrap();
    let names = StaticResolver::new();
    names.insert_failure("flaky.test", io::ErrorKind::NotFound, "not yet");
    reactor.set_resolver(names.clone());
    let server = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let events = log();
    let mut recorder = Recorder::new(&events);
    let table = names.clone();
    let tries = Rc::new(RefCell::new(0));
    let counter = tries.clone();
    let addr = server.host().tcp().unwrap();
    recorder.on_failed = Some(Box::new(move |connector: &Connector| {
        *counter.borrow_mut() += 1;
        if *counter.borrow() == 2 {
            table.insert("flaky.test", [addr]);
        }
        // At once, from inside the callback, as a Twisted retry loop does.
        connector.connect();
    }));
    reactor
        .connect_tcp(("flaky.test", addr.port()), recorder)
        .unwrap();
    run(&reactor);
    assert_eq!(*tries.borrow(), 2);
    assert_eq!(names.lookups(), ["flaky.test"; 3]);
    let events = events.borrow();
    // One start and one stop for the whole retry loop.
    assert_eq!(
        events.iter().filter(|e| *e == "start").count(),
        1,
        "{events:?}"
    );
    assert_eq!(events.last().unwrap(), "stop", "{events:?}");
    assert!(events.contains(&"made".to_owned()), "{events:?}");
}

#[test]
fn a_reconnecting_factory_gives_up_on_a_name_that_never_resolves_after_its_retries() {
    let _serial = serial();
    let reactor = Reactor::new().unwrap();
    let names = StaticResolver::new();
    names.insert_failure("nowhere.test", io::ErrorKind::NotFound, "no such host");
    reactor.set_resolver(names.clone());
    let events = log();
    let mut recorder = Recorder::new(&events);
    recorder.stop_on_end = false;
    let factory = ReconnectingClientFactory::new(recorder)
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
        .jitter(0.0)
        .max_retries(3);
    let watch = factory.clone();
    reactor.connect_tcp(("nowhere.test", 80), factory).unwrap();
    stop_after(&reactor, Duration::from_millis(500));
    run(&reactor);
    assert_eq!(names.lookups().len(), 4, "{:?}", names.lookups());
    let failed = events
        .borrow()
        .iter()
        .filter(|e| e.starts_with("failed NotFound"))
        .count();
    assert_eq!(failed, 4);
    assert_eq!(events.borrow().last().unwrap(), "stop");
    assert_eq!(watch.retries(), 4);
}

#[test]
fn an_immediate_unix_failure_reaches_the_factory_with_the_handle_dropped() {
    let _serial = serial();
    let dir = TempDir::new("review-dropped");
    let reactor = Reactor::new().unwrap();
    let events = log();
    drop(
        reactor
            .connect_unix(dir.path().join("nothing.sock"), Recorder::new(&events))
            .unwrap(),
    );
    let tcp_events = log();
    let mut recorder = Recorder::new(&tcp_events);
    recorder.stop_on_end = false;
    drop(
        reactor
            .connect_tcp(("127.0.0.1", closed_port()), recorder)
            .unwrap(),
    );
    run(&reactor);
    for events in [&events, &tcp_events] {
        let events = events.borrow();
        assert_eq!(events.len(), 4, "{events:?}");
        assert!(events[2].starts_with("failed"), "{events:?}");
    }
}

#[test]
fn stop_connecting_from_build_protocol_is_not_both_a_failure_and_a_connection() {
    let _serial = serial();
    let reactor = Reactor::new().unwrap();
    let server = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet).unwrap();
    let events = log();
    /// Changes its mind while building the protocol.
    struct Fickle(Log, Option<Connector>);
    impl Factory for Fickle {
        type Protocol = Hello;
        fn build_protocol(&mut self, _peer: Address) -> Option<Hello> {
            self.0.borrow_mut().push("build".into());
            if let Some(connector) = &self.1 {
                connector.stop_connecting();
            }
            Some(Hello {
                log: self.0.clone(),
            })
        }
    }
    impl ClientFactory for Fickle {
        fn started_connecting(&mut self, connector: &Connector) {
            self.1 = Some(connector.clone());
        }
        fn client_connection_failed(&mut self, _: &Connector, reason: &io::Error) {
            self.0
                .borrow_mut()
                .push(format!("failed {:?}", reason.kind()));
        }
        fn client_connection_lost(&mut self, _: &Connector, _: &Reason) {
            self.0.borrow_mut().push("lost".into());
        }
    }
    reactor
        .connect_tcp(server.host(), Fickle(events.clone(), None))
        .unwrap();
    stop_after(&reactor, Duration::from_millis(300));
    run(&reactor);
    let events = events.borrow();
    let failed = events.iter().any(|e| e.starts_with("failed"));
    let made = events.iter().any(|e| e == "made");
    assert!(
        failed != made,
        "either the attempt failed or it connected, not both: {events:?}"
    );
}

// ---------------------------------------------------------------------
// Addresses and endpoint strings
// ---------------------------------------------------------------------

#[test]
fn a_unix_path_that_starts_with_an_at_sign_reads_back_as_a_path() {
    let address = Address::Unix(UnixAddress::Path(PathBuf::from("@not-abstract.sock")));
    let text = address.to_string();
    assert_eq!(text, "unix:./@not-abstract.sock");
    // The same file, named from the current directory.
    assert_eq!(
        text.parse::<Address>().unwrap(),
        Address::Unix(UnixAddress::Path(PathBuf::from("./@not-abstract.sock"))),
        "{text}"
    );
}

#[test]
fn unusual_unix_paths_read_back_as_they_were_written() {
    for path in [
        "/tmp/with space.sock",
        "/tmp/colon:in:name.sock",
        "/tmp/equals=sign.sock",
        "relative/dir.sock",
        "./@at.sock",
        "/tmp/ünïcode.sock",
    ] {
        let address = Address::Unix(UnixAddress::Path(path.into()));
        let text = address.to_string();
        assert_eq!(text.parse::<Address>().unwrap(), address, "{text}");
        let server = ServerDescription::Unix {
            address: UnixAddress::Path(path.into()),
            mode: 0o600,
            backlog: 5,
            lockfile: false,
        };
        let text = server.to_string();
        assert_eq!(parse_server(&text).unwrap(), server, "{text}");
    }
}

#[test]
fn a_unix_path_that_starts_with_a_bracket_reads_back_from_its_endpoint_string() {
    let server = ServerDescription::Unix {
        address: UnixAddress::Path("[odd:name.sock".into()),
        mode: 0o600,
        backlog: 50,
        lockfile: true,
    };
    let text = server.to_string();
    assert_eq!(parse_server(&text), Ok(server), "{text}");
    let client = ClientDescription::Tcp {
        host: "[odd".into(),
        port: 80,
        timeout: Duration::from_secs(5),
        bind_address: None,
    };
    let text = client.to_string();
    assert_eq!(parse_client(&text), Ok(client), "{text}");
}

#[test]
fn what_a_twisted_user_types_parses_as_twisted_means_it() {
    let _serial = serial();
    let server = parse_server("tcp:port=8007").unwrap();
    assert_eq!(server.to_string(), "tcp:8007");
    let server = parse_server("TCP:8007:interface=\\:\\:1").unwrap();
    assert_eq!(
        server,
        ServerDescription::Tcp {
            interface: "::1".parse().unwrap(),
            port: 8007,
            backlog: 50
        }
    );
    let server = parse_server("unix:address=/tmp/s:lockfile=0:mode=0600").unwrap();
    assert_eq!(
        server,
        ServerDescription::Unix {
            address: UnixAddress::Path("/tmp/s".into()),
            mode: 0o600,
            backlog: 50,
            lockfile: false
        }
    );
    let server = parse_server("ssl:443:privateKey=key.pem:certKey=cert.pem").unwrap();
    assert_eq!(
        server.to_string(),
        "tls:443:privateKey=key.pem:certKey=cert.pem"
    );
    assert!(parse_server("tls:443")
        .unwrap_err()
        .to_string()
        .contains("privateKey"));
    let client = parse_client("tcp:host=example.com:port=80:timeout=10").unwrap();
    assert_eq!(client.to_string(), "tcp:example.com:80:timeout=10");
    let client = parse_client("unix:path=/tmp/s:timeout=3").unwrap();
    assert_eq!(client.to_string(), "unix:/tmp/s:timeout=3");
    let client = parse_client("unix:@name").unwrap();
    assert_eq!(
        client,
        ClientDescription::Unix {
            address: UnixAddress::Abstract(b"name".to_vec()),
            timeout: Duration::from_secs(30),
            lockfile: false
        }
    );
    // An unclosed bracket is an error that names a field, not a hang or a
    // panic.
    assert!(parse_server("tcp:8007:interface=[::1").is_err());
    assert!(parse_client("tcp:[::1:80").is_err());
    // A timeout too large for the clock is taken, not a panic later.
    let huge = parse_client("tcp:127.0.0.1:80:timeout=18446744073709551615").unwrap();
    let reactor = Reactor::new().unwrap();
    reactor
        .client_from_string(&huge.to_string(), |_peer: Address| Quiet)
        .unwrap()
        .stop_connecting();
}

#[test]
fn a_unix_client_with_lockfile_refuses_a_server_that_holds_no_lock() {
    let _serial = serial();
    let dir = TempDir::new("review-checkpid");
    let path = dir.path().join("app.sock");
    // A live server of another program, without twill's lock file.
    let foreign = UnixListener::bind(&path).unwrap();
    let reactor = Reactor::new().unwrap();
    let events = log();
    let mut recorder = Recorder::new(&events);
    recorder.stop_on_end = false;
    reactor
        .client_from_string(&format!("unix:{}:lockfile=1", path.display()), recorder)
        .unwrap();
    stop_after(&reactor, Duration::from_millis(300));
    run(&reactor);
    drop(foreign);
    let events = events.borrow();
    assert!(
        events.iter().any(|e| e.starts_with("failed")),
        "the lock file was not checked: {events:?}"
    );
}

#[test]
fn a_server_endpoint_string_listens_again_after_stop_listening() {
    let _serial = serial();
    let dir = TempDir::new("review-relisten");
    let path = dir.path().join("app.sock");
    let reactor = Reactor::new().unwrap();
    let description = format!("unix:{}:mode=600", path.display());
    for _ in 0..3 {
        let port = reactor
            .server_from_string(&description, |_peer| Quiet)
            .unwrap();
        let mode = fs::symlink_metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        port.stop_listening();
        assert!(!path.exists());
    }
}

#[test]
fn a_busy_unix_server_is_not_reported_as_refusing() {
    let _serial = serial();
    let dir = TempDir::new("review-busyclient");
    let path = dir.path().join("busy.sock");
    // A live server that is slow to accept: its queue is full now, and it
    // accepts everything 200 ms later.
    let (foreign, fillers) = full_backlog(&SockAddr::unix(&path).unwrap());
    let acceptor = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        foreign.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut accepted = Vec::new();
        while Instant::now() < deadline {
            if let Ok((s, _)) = foreign.accept() {
                accepted.push(s);
            }
            thread::sleep(Duration::from_millis(5));
        }
        drop(fillers);
    });
    let reactor = Reactor::new().unwrap();
    let events = log();
    let mut recorder = Recorder::new(&events);
    recorder.stop_on_end = false;
    reactor
        .connect_unix_with_timeout(path.as_path(), Duration::from_secs(1), recorder)
        .unwrap();
    stop_after(&reactor, Duration::from_millis(1500));
    run(&reactor);
    acceptor.join().unwrap();
    let events = events.borrow();
    assert!(
        !events.contains(&format!("failed {:?}", io::ErrorKind::ConnectionRefused)),
        "a server that is there but busy does not refuse: {events:?}"
    );
}

#[test]
fn an_ipv6_scope_id_reaches_the_connection_attempt() {
    let _serial = serial();
    let reactor = Reactor::new().unwrap();
    // A link-local destination needs its interface: fe80::1%1.
    let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
        "fe80::1".parse().unwrap(),
        closed_port(),
        0,
        1,
    ));
    let events = log();
    let mut recorder = Recorder::new(&events);
    recorder.stop_on_end = false;
    let connector = reactor.connect_tcp(scoped, recorder).unwrap();
    connector.stop_connecting();
    assert!(
        connector.destination() == scoped,
        "{} lost the scope of {scoped}",
        connector.destination()
    );
}

#[test]
fn a_connector_left_in_a_lookup_or_an_attempt_is_freed_with_its_reactor() {
    let _serial = serial();
    /// Sets its flag when dropped.
    struct Tracked(Rc<RefCell<bool>>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            *self.0.borrow_mut() = true;
        }
    }
    impl Factory for Tracked {
        type Protocol = Quiet;
        fn build_protocol(&mut self, _peer: Address) -> Option<Quiet> {
            Some(Quiet)
        }
    }
    impl ClientFactory for Tracked {}

    let (listener, fillers) = full_backlog(&SockAddr::from(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    ));
    let stuck = listener.local_addr().unwrap().as_socket().unwrap();
    let fds = open_fds();
    for ran in [false, true] {
        let reactor = Reactor::new().unwrap();
        let names = StaticResolver::new();
        names.insert_silence("silent.test");
        reactor.set_resolver(names);
        let in_lookup = Rc::new(RefCell::new(false));
        let in_attempt = Rc::new(RefCell::new(false));
        reactor
            .connect_tcp(("silent.test", 80), Tracked(in_lookup.clone()))
            .unwrap();
        reactor
            .connect_tcp(stuck, Tracked(in_attempt.clone()))
            .unwrap();
        if ran {
            stop_after(&reactor, Duration::from_millis(100));
            run(&reactor);
        }
        drop(reactor);
        assert!(*in_lookup.borrow(), "the factory of a lookup (ran: {ran})");
        assert!(
            *in_attempt.borrow(),
            "the factory of an attempt (ran: {ran})"
        );
    }
    assert!(open_fds() <= fds, "{} open, {fds} before", open_fds());
    drop((listener, fillers));
}

#[test]
fn an_unnamed_unix_address_does_not_read_back_as_a_file() {
    let text = Address::Unix(UnixAddress::Unnamed).to_string();
    let read = text.parse::<Address>();
    assert!(
        !matches!(read, Ok(Address::Unix(UnixAddress::Path(_)))),
        "{text} read back as {read:?}"
    );
}
