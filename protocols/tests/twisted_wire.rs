//! Wire compatibility with Twisted: twill's LineReceiver, Int32/16/8
//! StringReceivers and NetstringReceiver talk over 127.0.0.1 to real
//! Twisted peers using Twisted's own classes (`twisted_peer.py`), in both
//! directions.
//!
//! The Python interpreter is `$TWILL_TWISTED_PYTHON` if set, else
//! `target/twisted-venv/bin/python` under the workspace root; the first of
//! them that can `import twisted` is used. With neither, each test prints
//! "skipped: no twisted" and passes (CI provides one). To run them
//! locally:
//!
//! ```text
//! python3 -m venv target/twisted-venv && target/twisted-venv/bin/pip install twisted
//! ```
//!
//! Every scenario is bounded: the peer gives up after 30 s, the reactor
//! after 40 s, and the peer process is killed if it outlives the test.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use bytes::Bytes;
use twill::{Reactor, Reason};
use twill_protocols::basic::{
    Int16StringReceiver, Int32StringReceiver, Int8StringReceiver, LineContext, LineReceiver,
    LineReceiverProtocol, NetstringReceiver, StringContext, StringReceiver,
};

const REACTOR_TIMEOUT: Duration = Duration::from_secs(40);
const PEER_TIMEOUT: Duration = Duration::from_secs(45);

// ------------------------------------------------------------ the Python peer

/// The first interpreter that can import twisted.
fn twisted_python() -> Option<PathBuf> {
    twill_test_support::python::interpreter_with("twisted")
}

/// A running `twisted_peer.py`, killed if the test ends first.
struct Peer {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    fn spawn(python: &Path, args: &[&str]) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/twisted_peer.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start twisted_peer.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The port a server peer printed.
    fn port(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => match line.strip_prefix("PORT ") {
                    Some(port) => return port.parse().expect("a port number"),
                    None => self.seen.push(line),
                },
                Err(_) => break,
            }
        }
        panic!(
            "the Twisted server printed no port; output: {:?}",
            self.seen
        );
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the peer to exit; returns its exit code and output.
    fn finish(mut self) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + PEER_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the peer") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the Twisted peer did not exit; output: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status.code(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------- what both sides exchange

/// What the client sends (mirrors `messages` in twisted_peer.py).
#[derive(Clone)]
enum Item {
    Message(Vec<u8>),
    /// Line framing only: "raw N" then N raw bytes.
    Raw(Vec<u8>),
}

fn messages(framing: &str) -> Vec<Item> {
    use Item::Message;
    if framing == "line" {
        return vec![
            Message(b"hello".to_vec()),
            Message(b"".to_vec()),
            Message(b"MiXeD case 123".to_vec()),
            Message(b"lone\rcr and\nlf".to_vec()),
            Item::Raw(b"ab\r\ncd\r\nef".to_vec()),
            Message(b"after raw".to_vec()),
            Message(vec![b'x'; 16384]),
            Message(b"last".to_vec()),
        ];
    }
    let every_byte: Vec<u8> = (0..=255).collect();
    if framing == "int8" {
        return vec![
            Message(Vec::new()),
            Message(b"hello".to_vec()),
            Message(every_byte[..255].to_vec()),
        ];
    }
    let big = if framing == "int16" { 65535 } else { 99999 };
    vec![
        Message(Vec::new()),
        Message(b"hello".to_vec()),
        Message(b"1:a,".to_vec()),
        Message(every_byte),
        Message(vec![b'q'; big]),
    ]
}

fn swapcase(data: &[u8]) -> Vec<u8> {
    data.iter()
        .map(|&b| match b {
            b'a'..=b'z' => b.to_ascii_uppercase(),
            b'A'..=b'Z' => b.to_ascii_lowercase(),
            _ => b,
        })
        .collect()
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// The server's answer to an item.
fn answer(item: &Item) -> Vec<u8> {
    match item {
        Item::Message(m) => swapcase(m),
        Item::Raw(data) => format!("RAW {}", hex(data)).into_bytes(),
    }
}

/// Connections open on the twill side, and errors it saw.
#[derive(Default)]
struct Tally {
    open: Cell<usize>,
    closed: Cell<usize>,
    errors: RefCell<Vec<String>>,
}

impl Tally {
    fn made(&self) {
        self.open.set(self.open.get() + 1);
    }
    fn lost(&self, reason: &Reason) {
        self.open.set(self.open.get() - 1);
        self.closed.set(self.closed.get() + 1);
        if let Reason::Failed(err) = reason {
            self.errors.borrow_mut().push(err.to_string());
        }
    }
    fn error(&self, error: String) {
        self.errors.borrow_mut().push(error);
    }
}

// ---------------------------------------------------------- twill servers

/// Answers lines with their swapcase; "raw N" reads N raw bytes.
struct LineServer {
    tally: Rc<Tally>,
    raw_left: usize,
    raw: Vec<u8>,
}

impl LineReceiver for LineServer {
    fn connection_made(&mut self, _: &LineContext) {
        self.tally.made();
    }

    fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
        match line.strip_prefix(b"raw ") {
            Some(n) => {
                self.raw_left = std::str::from_utf8(n).unwrap().parse().unwrap();
                self.raw.clear();
                ctx.set_raw_mode();
            }
            None => ctx.send_line(swapcase(&line)),
        }
    }

    fn raw_data_received(&mut self, ctx: &LineContext, data: Bytes) {
        let take = self.raw_left.min(data.len());
        self.raw.extend_from_slice(&data[..take]);
        self.raw_left -= take;
        if self.raw_left == 0 {
            ctx.send_line(answer(&Item::Raw(self.raw.clone())));
            ctx.set_line_mode(&data[take..]);
        }
    }

    fn line_length_exceeded(&mut self, ctx: &LineContext, data: Bytes) {
        self.tally
            .error(format!("line too long: {} bytes", data.len()));
        ctx.lose_connection();
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.tally.lost(reason);
    }
}

/// Answers strings with their swapcase.
struct StringServer {
    tally: Rc<Tally>,
}

impl StringReceiver for StringServer {
    fn connection_made(&mut self, _: &StringContext) {
        self.tally.made();
    }

    fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
        ctx.send_string(swapcase(&string)).unwrap();
    }

    fn length_limit_exceeded(&mut self, ctx: &StringContext, length: u64) {
        self.tally.error(format!("length limit exceeded: {length}"));
        ctx.lose_connection();
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.tally.lost(reason);
    }
}

/// Listens with the twill server for `framing` on 127.0.0.1.
fn listen(reactor: &Reactor, framing: &str, tally: &Rc<Tally>) -> SocketAddr {
    let tally = tally.clone();
    let port = match framing {
        "line" => reactor.listen_tcp("127.0.0.1:0", move |_| {
            LineReceiverProtocol::new(LineServer {
                tally: tally.clone(),
                raw_left: 0,
                raw: Vec::new(),
            })
        }),
        "int32" => reactor.listen_tcp("127.0.0.1:0", move |_| {
            Int32StringReceiver::new(StringServer {
                tally: tally.clone(),
            })
        }),
        "int16" => reactor.listen_tcp("127.0.0.1:0", move |_| {
            Int16StringReceiver::new(StringServer {
                tally: tally.clone(),
            })
        }),
        "int8" => reactor.listen_tcp("127.0.0.1:0", move |_| {
            Int8StringReceiver::new(StringServer {
                tally: tally.clone(),
            })
        }),
        "netstring" => reactor.listen_tcp("127.0.0.1:0", move |_| {
            NetstringReceiver::new(StringServer {
                tally: tally.clone(),
            })
        }),
        other => panic!("unknown framing {other}"),
    };
    (port.expect("listen on 127.0.0.1").host()).tcp().unwrap()
}

/// Runs the reactor until `done` (checked every 20 ms) or the timeout.
fn run_until(reactor: &Reactor, done: impl Fn() -> bool + 'static) {
    fn poll(done: Rc<dyn Fn() -> bool>, deadline: Instant) {
        twill::call_later(Duration::from_millis(20), move || {
            if done() || Instant::now() > deadline {
                twill::stop();
            } else {
                poll(done, deadline);
            }
        });
    }
    poll(Rc::new(done), Instant::now() + REACTOR_TIMEOUT);
    reactor.run().expect("run the reactor");
}

/// A Twisted client of `framing` against a twill server.
fn twisted_client_to_twill_server(framing: &str) {
    let Some(python) = twisted_python() else {
        println!("skipped: no twisted (set TWILL_TWISTED_PYTHON or create target/twisted-venv)");
        return;
    };
    let reactor = Reactor::new().unwrap();
    let tally = Rc::new(Tally::default());
    let addr = listen(&reactor, framing, &tally);
    let peer = Rc::new(RefCell::new(Peer::spawn(
        &python,
        &["client", framing, &addr.to_string()],
    )));
    {
        let (peer, tally) = (peer.clone(), tally.clone());
        run_until(&reactor, move || {
            peer.borrow_mut().exited() && tally.open.get() == 0
        });
    }
    let peer = Rc::try_unwrap(peer).ok().expect("one owner").into_inner();
    let (code, output) = peer.finish();
    assert_eq!(
        code,
        Some(0),
        "the Twisted {framing} client failed: {output:?}"
    );
    assert!(output.iter().any(|l| l.starts_with("OK")), "{output:?}");
    assert_eq!(tally.closed.get(), 1, "one connection");
    assert_eq!(*tally.errors.borrow(), Vec::<String>::new());
}

// ---------------------------------------------------------- twill clients

/// Checks the answers against what was sent; the result ends up in
/// `result`.
struct Expect {
    expected: Vec<Vec<u8>>,
    received: usize,
    result: Rc<RefCell<Option<Result<(), String>>>>,
}

impl Expect {
    fn new(items: &[Item], result: &Rc<RefCell<Option<Result<(), String>>>>) -> Expect {
        Expect {
            expected: items.iter().map(answer).collect(),
            received: 0,
            result: result.clone(),
        }
    }

    /// Records one answer; returns whether the exchange is over.
    fn got(&mut self, message: &[u8]) -> bool {
        let n = self.received;
        self.received += 1;
        let verdict = if n >= self.expected.len() {
            Some(Err(format!("an extra answer: {} bytes", message.len())))
        } else if message != self.expected[n] {
            Some(Err(format!(
                "answer {n}: {} bytes {:?}..., expected {} bytes {:?}...",
                message.len(),
                String::from_utf8_lossy(&message[..message.len().min(40)]),
                self.expected[n].len(),
                String::from_utf8_lossy(&self.expected[n][..self.expected[n].len().min(40)]),
            )))
        } else if self.received == self.expected.len() {
            Some(Ok(()))
        } else {
            None
        };
        match verdict {
            Some(verdict) => {
                self.result.borrow_mut().get_or_insert(verdict);
                true
            }
            None => false,
        }
    }

    fn lost(&mut self, reason: &Reason) {
        self.result.borrow_mut().get_or_insert_with(|| {
            Err(format!(
                "closed after {} of {} answers: {reason}",
                self.received,
                self.expected.len()
            ))
        });
    }
}

struct LineClient {
    items: Vec<Item>,
    expect: Expect,
}

impl LineReceiver for LineClient {
    fn connection_made(&mut self, ctx: &LineContext) {
        for item in &self.items {
            match item {
                Item::Message(m) => ctx.send_line(m),
                Item::Raw(data) => {
                    ctx.send_line(format!("raw {}", data.len()));
                    ctx.write(data.clone());
                }
            }
        }
    }

    fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
        if self.expect.got(&line) {
            ctx.lose_connection();
        }
    }

    fn line_length_exceeded(&mut self, ctx: &LineContext, data: Bytes) {
        self.expect
            .result
            .borrow_mut()
            .get_or_insert(Err(format!("answer too long: {} bytes", data.len())));
        ctx.lose_connection();
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.expect.lost(reason);
    }
}

struct StringClient {
    items: Vec<Item>,
    expect: Expect,
}

impl StringReceiver for StringClient {
    fn connection_made(&mut self, ctx: &StringContext) {
        for item in &self.items {
            if let Item::Message(m) = item {
                ctx.send_string(m).unwrap();
            }
        }
    }

    fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
        if self.expect.got(&string) {
            ctx.lose_connection();
        }
    }

    fn length_limit_exceeded(&mut self, ctx: &StringContext, length: u64) {
        self.expect
            .result
            .borrow_mut()
            .get_or_insert(Err(format!("answer length limit exceeded: {length}")));
        ctx.lose_connection();
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.expect.lost(reason);
    }
}

/// A twill client of `framing` against a Twisted server.
fn twill_client_to_twisted_server(framing: &str) {
    let Some(python) = twisted_python() else {
        println!("skipped: no twisted (set TWILL_TWISTED_PYTHON or create target/twisted-venv)");
        return;
    };
    let mut peer = Peer::spawn(&python, &["server", framing]);
    let port = peer.port();
    let reactor = Reactor::new().unwrap();
    let result = Rc::new(RefCell::new(None));
    let items = messages(framing);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (r, i) = (result.clone(), items.clone());
    let connected = match framing {
        "line" => reactor.connect_tcp(addr, move |_| {
            LineReceiverProtocol::new(LineClient {
                items: i.clone(),
                expect: Expect::new(&i, &r),
            })
        }),
        "int32" => reactor.connect_tcp(addr, move |_| {
            Int32StringReceiver::new(StringClient {
                items: i.clone(),
                expect: Expect::new(&i, &r),
            })
        }),
        "int16" => reactor.connect_tcp(addr, move |_| {
            Int16StringReceiver::new(StringClient {
                items: i.clone(),
                expect: Expect::new(&i, &r),
            })
        }),
        "int8" => reactor.connect_tcp(addr, move |_| {
            Int8StringReceiver::new(StringClient {
                items: i.clone(),
                expect: Expect::new(&i, &r),
            })
        }),
        "netstring" => reactor.connect_tcp(addr, move |_| {
            NetstringReceiver::new(StringClient {
                items: i.clone(),
                expect: Expect::new(&i, &r),
            })
        }),
        other => panic!("unknown framing {other}"),
    };
    connected.expect("connect to the Twisted server");
    let peer = Rc::new(RefCell::new(peer));
    {
        let peer = peer.clone();
        let result = result.clone();
        // Done once the verdict is in and the server has seen the close
        // (it exits then), or the server is gone.
        run_until(&reactor, move || {
            let exited = peer.borrow_mut().exited();
            exited && result.borrow().is_some()
        });
    }
    let peer = Rc::try_unwrap(peer).ok().expect("one owner").into_inner();
    let (code, output) = peer.finish();
    let verdict = result.borrow_mut().take();
    assert_eq!(
        verdict,
        Some(Ok(())),
        "twill {framing} client; Twisted server output: {output:?}"
    );
    assert_eq!(
        code,
        Some(0),
        "the Twisted {framing} server failed: {output:?}"
    );
}

macro_rules! wire_tests {
    ($($framing:ident),*) => {
        mod twisted_client_twill_server {
            $(
                #[test]
                fn $framing() {
                    super::twisted_client_to_twill_server(stringify!($framing));
                }
            )*
        }
        mod twill_client_twisted_server {
            $(
                #[test]
                fn $framing() {
                    super::twill_client_to_twisted_server(stringify!($framing));
                }
            )*
        }
    };
}

wire_tests!(line, int32, int16, int8, netstring);
