//! Unix domain sockets, as the OS and Twisted's `listenUNIX` /
//! `connectUNIX` define them: the same protocols and transports as TCP,
//! a socket file that is created with its mode, replaced only when it is
//! stale and removed when the port stops, abstract names, the peer's
//! credentials, and clear errors for what cannot work.

use std::cell::RefCell;
use std::fs;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use twill::net::{Address, UnixAddress, DEFAULT_UNIX_MODE, MAX_UNIX_PATH};
use twill::{Bytes, ClientFactory, Connector, Factory, Protocol, Reactor, Reason, Transport};
use twill_test_support::reactor::{run, LIMIT};

/// A directory of its own for each test, removed when it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("twill-unix-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}

/// Echoes, and records what its transport says about both ends.
struct Echo {
    transport: Option<Transport>,
    seen: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        let creds = transport.peer_credentials();
        self.seen.borrow_mut().push(format!(
            "made peer={} host={} creds={}",
            transport.peer(),
            transport.host(),
            creds.map_or("none".into(), |c| format!("{}/{}/{}", c.pid, c.uid, c.gid))
        ));
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        self.transport.as_ref().unwrap().write(data);
    }

    fn eof_received(&mut self) -> bool {
        self.seen.borrow_mut().push("eof".into());
        self.transport.as_ref().unwrap().write("bye");
        false
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.seen.borrow_mut().push(format!("lost {reason}"));
    }
}

fn echo(seen: &Rc<RefCell<Vec<String>>>) -> impl Factory {
    let seen = seen.clone();
    move |peer: Address| {
        seen.borrow_mut().push(format!("built for {peer}"));
        Echo {
            transport: None,
            seen: seen.clone(),
        }
    }
}

fn current_ids() -> (u32, u32, u32) {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (std::process::id(), field("Uid:"), field("Gid:"))
}

#[test]
fn a_path_socket_serves_protocols_as_tcp_does_and_names_both_ends() {
    let dir = TempDir::new("serve");
    let path = dir.path("echo.sock");
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let port = reactor.listen_unix(&path, 0o600, echo(&seen)).unwrap();
    assert_eq!(port.host(), Address::Unix(UnixAddress::Path(path.clone())));
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "the mode given");

    let handle = reactor.handle();
    let client_path = path.clone();
    let client = thread::spawn(move || {
        let mut stream = connect(&client_path);
        stream.write_all(b"hello over unix").unwrap();
        let mut echoed = [0; 15];
        stream.read_exact(&mut echoed).unwrap();
        // Half-close: the protocol sees EOF, may still write, then closes.
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        handle.stop();
        (echoed, rest)
    });
    run(&reactor);
    let (echoed, rest) = client.join().unwrap();
    assert_eq!(&echoed, b"hello over unix");
    assert_eq!(rest, b"bye", "written after the peer's EOF, then closed");

    let (pid, uid, gid) = current_ids();
    let seen = seen.borrow();
    assert_eq!(seen[0], "built for unix:(unnamed)");
    assert_eq!(
        seen[1],
        format!(
            "made peer=unix:(unnamed) host=unix:{} creds={pid}/{uid}/{gid}",
            path.display()
        )
    );
    assert_eq!(seen[2], "eof");
    assert!(seen[3].starts_with("lost "), "{seen:?}");
    drop(seen);
    assert!(!path.exists(), "the reactor's stop removed the socket file");
}

/// A client that records how its attempt went.
struct Client {
    seen: Rc<RefCell<Vec<String>>>,
    send: &'static str,
}

struct Talker {
    seen: Rc<RefCell<Vec<String>>>,
    send: &'static str,
}

impl Protocol for Talker {
    fn connection_made(&mut self, transport: &Transport) {
        self.seen.borrow_mut().push(format!(
            "connected peer={} creds={}",
            transport.peer(),
            transport.peer_credentials().is_some()
        ));
        transport.write(self.send);
    }

    fn data_received(&mut self, data: Bytes) {
        self.seen
            .borrow_mut()
            .push(format!("got {}", String::from_utf8_lossy(&data)));
        twill::stop();
    }
}

impl Factory for Client {
    type Protocol = Talker;

    fn build_protocol(&mut self, _peer: Address) -> Option<Talker> {
        Some(Talker {
            seen: self.seen.clone(),
            send: self.send,
        })
    }
}

impl ClientFactory for Client {
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        self.seen
            .borrow_mut()
            .push(format!("failed {:?}: {reason}", reason.kind()));
        twill::stop();
    }
}

fn client(seen: &Rc<RefCell<Vec<String>>>, send: &'static str) -> Client {
    Client {
        seen: seen.clone(),
        send,
    }
}

#[test]
fn connect_unix_reaches_a_twill_server_on_a_path_and_on_an_abstract_name() {
    let dir = TempDir::new("connect");
    let name = format!("@twill-test-{}", std::process::id());
    let path = dir.path("echo.sock");
    let path_text = path.to_str().unwrap().to_owned();
    for address in [path_text.as_str(), name.as_str()] {
        let reactor = Reactor::new().unwrap();
        let server_seen = Rc::new(RefCell::new(Vec::new()));
        let port = reactor
            .listen_unix(address, DEFAULT_UNIX_MODE, echo(&server_seen))
            .unwrap();
        assert_eq!(port.host(), Address::Unix(UnixAddress::parse(address)));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let connector = reactor
            .connect_unix(address, client(&seen, "ping"))
            .unwrap();
        assert_eq!(
            connector.destination().to_string(),
            format!("unix:{address}")
        );
        run(&reactor);
        assert_eq!(
            *seen.borrow(),
            [
                format!("connected peer=unix:{address} creds=true"),
                "got ping".to_owned()
            ]
        );
    }
}

#[test]
fn a_stale_socket_file_is_replaced_but_a_live_one_is_not() {
    let dir = TempDir::new("stale");
    let path = dir.path("app.sock");
    // A server that crashed leaves its file behind: bound, closed, unlinked
    // by nobody.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let port = reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, echo(&seen))
        .expect("a stale file is replaced");
    port.stop_listening();
    assert!(!path.exists());

    // A live server that does not use twill's lock: its file stays.
    let live = UnixListener::bind(&path).unwrap();
    let err = reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, echo(&seen))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("another process listens"), "{err}");
    assert!(path.exists());
    drop(live);
    fs::remove_file(&path).unwrap();

    // A file that is not a socket is never removed.
    fs::write(&path, "precious").unwrap();
    let err = reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, echo(&seen))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn a_second_server_on_the_same_path_is_refused_by_the_lock_and_stopping_frees_it() {
    let dir = TempDir::new("lock");
    let path = dir.path("app.sock");
    let lock = dir.path("app.sock.lock");
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let first = reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, echo(&seen))
        .unwrap();
    assert!(lock.exists());
    // Another reactor, as another process would: the lock is held.
    let other = thread::spawn({
        let path = path.clone();
        move || {
            let reactor = Reactor::new().unwrap();
            let seen = Rc::new(RefCell::new(Vec::new()));
            reactor
                .listen_unix(&path, DEFAULT_UNIX_MODE, echo(&seen))
                .map(|_| ())
                .unwrap_err()
        }
    })
    .join()
    .unwrap();
    assert_eq!(other.kind(), io::ErrorKind::AddrInUse, "{other}");
    assert!(other.to_string().contains(".lock"), "{other}");
    assert!(path.exists(), "the first server's socket is untouched");

    first.stop_listening();
    assert!(!path.exists() && !lock.exists(), "both files removed");
    let again = reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, echo(&seen))
        .unwrap();
    again.stop_listening();
}

#[test]
fn a_path_too_long_for_the_os_is_a_clear_error_on_both_sides() {
    let dir = TempDir::new("long");
    let long = dir.path(&"x".repeat(MAX_UNIX_PATH));
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let err = reactor
        .listen_unix(&long, DEFAULT_UNIX_MODE, echo(&seen))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("too long"), "{err}");
    assert!(
        err.to_string().contains(&format!("{MAX_UNIX_PATH}")),
        "{err}"
    );
    assert!(!long.exists());
    let err = reactor
        .connect_unix(&long, client(&seen, ""))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn connecting_to_no_socket_or_a_dead_one_reaches_the_factory_as_a_failure() {
    let dir = TempDir::new("fail");
    let missing = dir.path("missing.sock");
    let dead = dir.path("dead.sock");
    drop(UnixListener::bind(&dead).unwrap());
    for (path, kind) in [
        (&missing, io::ErrorKind::NotFound),
        (&dead, io::ErrorKind::ConnectionRefused),
    ] {
        let reactor = Reactor::new().unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        reactor.connect_unix(path, client(&seen, "")).unwrap();
        run(&reactor);
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].starts_with(&format!("failed {kind:?}")), "{seen:?}");
    }
}

#[test]
fn endpoint_strings_listen_and_connect_over_unix() {
    let dir = TempDir::new("strports");
    let path = dir.path("app.sock");
    let reactor = Reactor::new().unwrap();
    let server_seen = Rc::new(RefCell::new(Vec::new()));
    let port = reactor
        .server_from_string(
            &format!("unix:{}:mode=640:backlog=8", path.display()),
            echo(&server_seen),
        )
        .unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    let seen = Rc::new(RefCell::new(Vec::new()));
    reactor
        .client_from_string(
            &format!("unix:path={}:timeout=5", path.display()),
            client(&seen, "strports"),
        )
        .unwrap();
    run(&reactor);
    assert_eq!(seen.borrow().last().unwrap(), "got strports");
    drop(port);
    assert!(!path.exists());
}

/// Writes a large reply to every line; tells when it is asked to pause.
struct Flood {
    transport: Option<Transport>,
    paused: Rc<RefCell<Vec<usize>>>,
}

impl Protocol for Flood {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        // 8 MiB at once: far more than the socket takes.
        for _ in 0..128 {
            transport.write(chunk.clone());
        }
    }

    fn data_received(&mut self, _data: Bytes) {}

    fn pause_writing(&mut self) {
        let buffered = self.transport.as_ref().unwrap().write_buffer_size();
        self.paused.borrow_mut().push(buffered);
    }
}

#[test]
fn a_peer_that_does_not_read_pauses_the_writer_and_then_gets_everything() {
    let dir = TempDir::new("pressure");
    let path = dir.path("flood.sock");
    let reactor = Reactor::new().unwrap();
    let paused = Rc::new(RefCell::new(Vec::new()));
    let factory_paused = paused.clone();
    reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, move |_peer| Flood {
            transport: None,
            paused: factory_paused.clone(),
        })
        .unwrap();
    let (connected, wait_connected) = std::sync::mpsc::channel();
    let (go, wait_go) = std::sync::mpsc::channel::<()>();
    let handle = reactor.handle();
    let client_path = path.clone();
    let client = thread::spawn(move || {
        let mut stream = connect(&client_path);
        connected.send(()).unwrap();
        wait_go.recv_timeout(LIMIT).unwrap();
        let mut total = 0;
        let mut buf = vec![0; 256 * 1024];
        while total < 8 * 1024 * 1024 {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed early at {total}");
            assert!(buf[..n].iter().all(|&b| b == b'x'));
            total += n;
        }
        handle.stop();
        total
    });
    wait_connected.recv_timeout(LIMIT).unwrap();
    let check = paused.clone();
    // The client reads only once the writer was told to pause.
    fn wait_for_pause(
        reactor: &Reactor,
        paused: Rc<RefCell<Vec<usize>>>,
        go: std::sync::mpsc::Sender<()>,
    ) {
        let again = reactor.clone();
        reactor.call_later(Duration::from_millis(5), move || {
            if paused.borrow().is_empty() {
                wait_for_pause(&again, paused, go);
            } else {
                let _ = go.send(());
            }
        });
    }
    wait_for_pause(&reactor, check, go);
    run(&reactor);
    assert_eq!(
        client.join().unwrap(),
        8 * 1024 * 1024,
        "every byte arrived"
    );
    let paused = paused.borrow();
    assert_eq!(paused.len(), 1, "paused once: {paused:?}");
}

#[test]
fn python_asyncio_talks_to_a_twill_unix_server() {
    let python = std::env::var("TWILL_TWISTED_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = TempDir::new("python");
    let path = dir.path("py.sock");
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    reactor
        .listen_unix(&path, DEFAULT_UNIX_MODE, echo(&seen))
        .unwrap();
    let script = r#"
import asyncio, sys
async def main(path):
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b"from asyncio")
    await writer.drain()
    echoed = await reader.readexactly(12)
    writer.write_eof()
    rest = await reader.read()
    writer.close()
    await writer.wait_closed()
    print(echoed.decode(), rest.decode())
asyncio.run(asyncio.wait_for(main(sys.argv[1]), 15))
"#;
    let handle = reactor.handle();
    let child_path = path.clone();
    let child = thread::spawn(move || {
        let output = std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(&child_path)
            .output();
        handle.stop();
        output
    });
    run(&reactor);
    let output = match child.join().unwrap() {
        Ok(output) => output,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            eprintln!("no python: the asyncio peer test is skipped");
            return;
        }
        Err(err) => panic!("{err}"),
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "from asyncio bye\n"
    );
}
