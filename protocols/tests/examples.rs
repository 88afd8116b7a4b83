//! The twill-protocols example programs, run as child processes against
//! real loopback sockets: `chat_server` (Twisted's LineReceiver chat,
//! reference section 7.1, with join and leave announcements) and
//! `reverse_server` (five-digit length header, reversed body).
//!
//! The examples are built once with `cargo build -p twill-protocols
//! --examples`; each child listens on 127.0.0.1:0 and the test reads the
//! port from its `listening on ADDR` log line. Children are killed when a
//! test ends, pass or fail. Every wait is bounded.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long to wait for any one thing a child or a socket should do.
const WAIT: Duration = Duration::from_secs(10);

/// How long a socket must stay silent to count as "sent nothing".
const QUIET: Duration = Duration::from_millis(150);

// ---------------------------------------------------------------------------
// Building and running the examples (as in the twill crate's tests)
// ---------------------------------------------------------------------------

/// The path of the example binary `name`, building all examples on first
/// use.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<HashMap<String, PathBuf>, String>> = OnceLock::new();
    let built = BUILT.get_or_init(build_examples);
    match built {
        Ok(paths) => paths
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no example named {name}; built: {paths:?}")),
        Err(err) => panic!("building the examples failed:\n{err}"),
    }
}

/// Runs `cargo build -p twill-protocols --examples` and reads where each
/// example binary went from cargo's JSON messages (this honours
/// CARGO_TARGET_DIR and any build configuration).
fn build_examples() -> Result<HashMap<String, PathBuf>, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "twill-protocols",
            "--examples",
            "--message-format=json",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("could not run cargo: {err}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut paths = HashMap::new();
    for line in stdout.lines() {
        if !line.contains(r#""reason":"compiler-artifact""#)
            || !line.contains(r#""kind":["example"]"#)
        {
            continue;
        }
        let target = &line[line.find(r#""target":"#).unwrap_or(0)..];
        if let (Some(name), Some(exe)) =
            (json_string(target, "name"), json_string(line, "executable"))
        {
            paths.insert(name, PathBuf::from(exe));
        }
    }
    if paths.is_empty() {
        return Err(format!("cargo reported no example binaries:\n{stdout}"));
    }
    Ok(paths)
}

/// The first string value of `"key":"…"` in a line of JSON (enough for
/// cargo's messages: unescapes `\\` and `\"`).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

/// A running example; killed (if still running) when dropped.
struct Proc {
    name: String,
    child: Child,
    stderr: Receiver<Option<String>>,
    /// Every line so far, for failure messages.
    transcript: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts the example `name` listening on 127.0.0.1:0.
    fn spawn(name: &str) -> Proc {
        let mut child = Command::new(example(name))
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("could not start {name}: {err}"));
        let transcript = Arc::new(Mutex::new(Vec::new()));
        // Nobody waits on stdout, but it is drained (and recorded) so the
        // child never blocks on a full pipe.
        let _stdout = lines(child.stdout.take().unwrap(), "out", &transcript);
        let stderr = lines(child.stderr.take().unwrap(), "err", &transcript);
        Proc {
            name: name.to_owned(),
            child,
            stderr,
            transcript,
        }
    }

    fn transcript(&self) -> String {
        self.transcript.lock().unwrap().join("\n")
    }

    /// Waits for a line containing `needle` on stderr (where the log goes),
    /// and returns it; lines before it are skipped.
    fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => {}
                Ok(None) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} closed its stderr before printing {needle:?}:\n{}",
                    self.name,
                    self.transcript()
                ),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not print {needle:?} within {WAIT:?}:\n{}",
                    self.name,
                    self.transcript()
                ),
            }
        }
    }

    /// The address from the `listening on ADDR` log line.
    fn listening_addr(&self) -> SocketAddr {
        let line = self.wait_stderr("listening on ");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default();
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|_| panic!("no address in {line:?}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0);
        addr
    }

    /// Sends SIGTERM with `kill -TERM PID`.
    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for the child to exit: its stderr reaches EOF when it does.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(Some(_)) => {}
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not exit within {WAIT:?}:\n{}",
                    self.name,
                    self.transcript()
                ),
            }
        }
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} closed its stderr but did not exit within {WAIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Reads `pipe` line by line on a thread: `Some(line)` for each, `None` at
/// EOF.
fn lines(
    pipe: impl Read + Send + 'static,
    tag: &'static str,
    transcript: &Arc<Mutex<Vec<String>>>,
) -> Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    let transcript = transcript.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            transcript.lock().unwrap().push(format!("[{tag}] {line}"));
            // The receiver may be gone (stdout is not read): keep draining.
            let _ = tx.send(Some(line));
        }
        let _ = tx.send(None);
    });
    rx
}

// ---------------------------------------------------------------------------
// A raw TCP client
// ---------------------------------------------------------------------------

struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    fn send(&mut self, data: &[u8]) {
        self.reader.get_mut().write_all(data).expect("send");
    }

    /// The next line, with its `\n`.
    fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) if line.ends_with(b"\n") => line,
            Ok(_) => panic!(
                "EOF instead of a line (got {:?})",
                String::from_utf8_lossy(&line)
            ),
            Err(err) => panic!(
                "no line within {WAIT:?}: {err} (got {:?})",
                String::from_utf8_lossy(&line)
            ),
        }
    }

    /// The next line as text, with its line ending.
    fn line_str(&mut self) -> String {
        String::from_utf8(self.line()).expect("UTF-8 line")
    }

    /// Exactly `n` bytes.
    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut data = vec![0; n];
        self.reader
            .read_exact(&mut data)
            .unwrap_or_else(|err| panic!("could not read {n} bytes within {WAIT:?}: {err}"));
        data
    }

    /// Nothing arrives for a while.
    fn expect_silence(&mut self) {
        assert!(
            self.reader.buffer().is_empty(),
            "unexpected data: {:?}",
            self.reader.buffer().escape_ascii().to_string()
        );
        self.stream().set_read_timeout(Some(QUIET)).unwrap();
        let mut byte = [0];
        let got = self.reader.get_mut().read(&mut byte);
        self.stream().set_read_timeout(Some(WAIT)).unwrap();
        match got {
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Ok(0) => panic!("the connection was closed"),
            Ok(_) => panic!("unexpected data: {:?}", byte.escape_ascii().to_string()),
            Err(err) => panic!("the connection failed: {err}"),
        }
    }

    /// The server closed the connection (a clean EOF, or a reset if our
    /// unread input was still in its socket), sending nothing more.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) if rest.is_empty() => {}
            Ok(_) => panic!("data before EOF: {:?}", rest.escape_ascii().to_string()),
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset && rest.is_empty() => {}
            Err(err) => panic!(
                "not closed within {WAIT:?}: {err} (after {:?})",
                rest.escape_ascii().to_string()
            ),
        }
    }

    /// The server closed the connection cleanly: EOF, with nothing unread
    /// before it and no reset.
    fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) if rest.is_empty() => {}
            Ok(_) => panic!("data before EOF: {:?}", rest.escape_ascii().to_string()),
            Err(err) => panic!("no clean EOF: {err} ({:?})", err.kind()),
        }
    }
}

// ---------------------------------------------------------------------------
// chat_server
// ---------------------------------------------------------------------------

const PROMPT: &str = "What's your name?\r\n";
const TAKEN: &str = "Name taken, please choose another.\r\n";
/// Twisted's LineReceiver.MAX_LENGTH.
const MAX_LINE: usize = 16384;

fn welcome(name: &str) -> String {
    format!("Welcome, {name}!\r\n")
}

fn said(name: &str, line: &str) -> String {
    format!("<{name}> {line}\r\n")
}

fn joined(name: &str) -> String {
    format!("* {name} has joined\r\n")
}

fn left(name: &str) -> String {
    format!("* {name} has left\r\n")
}

/// A connection that has read the prompt and has no name yet.
fn newcomer(addr: SocketAddr) -> Client {
    let mut client = Client::connect(addr);
    assert_eq!(client.line_str(), PROMPT);
    client
}

/// Connects and registers as `name`; each of `others` (already registered)
/// reads the join announcement.
fn join(addr: SocketAddr, name: &str, others: &mut [Client]) -> Client {
    let mut client = newcomer(addr);
    client.send(format!("{name}\r\n").as_bytes());
    assert_eq!(client.line_str(), welcome(name));
    for other in others {
        assert_eq!(other.line_str(), joined(name));
    }
    client
}

/// A chat server with `names` registered, in order.
fn chat_with(names: &[&str]) -> (Proc, SocketAddr, Vec<Client>) {
    let server = Proc::spawn("chat_server");
    let addr = server.listening_addr();
    let mut clients = Vec::new();
    for name in names {
        let client = join(addr, name, &mut clients);
        clients.push(client);
    }
    (server, addr, clients)
}

#[test]
fn chat_server_asks_for_a_name_and_refuses_a_taken_one_until_a_free_one_comes() {
    let (_server, addr, mut users) = chat_with(&["alice"]);
    let mut second = newcomer(addr);
    second.send(b"alice\r\n");
    assert_eq!(second.line_str(), TAKEN);
    // Still choosing: a second try is a name proposal again.
    second.send(b"alice\n");
    assert_eq!(second.line_str(), TAKEN);
    // Names are compared exactly, as in Twisted.
    second.send(b"Alice\r\n");
    assert_eq!(second.line_str(), welcome("Alice"));
    assert_eq!(users[0].line_str(), joined("Alice"));
    // The refused attempts were not announced to alice (she would have
    // read them before the join).
    second.send(b"hi\r\n");
    assert_eq!(users[0].line_str(), said("Alice", "hi"));
}

#[test]
fn chat_server_relays_each_line_to_every_other_registered_user_only() {
    let (_server, addr, mut users) = chat_with(&["alice", "bob", "carol"]);
    // Connected, but still choosing a name.
    let mut dave = newcomer(addr);

    users[0].send("h\u{e9}llo, everyone \u{2603}\r\n".as_bytes());
    let expected = said("alice", "h\u{e9}llo, everyone \u{2603}");
    assert_eq!(users[1].line_str(), expected);
    assert_eq!(users[2].line_str(), expected);
    // Had alice got her own line back, she would read it before this.
    users[1].send(b"hi alice\r\n");
    assert_eq!(users[0].line_str(), said("bob", "hi alice"));
    assert_eq!(users[2].line_str(), said("bob", "hi alice"));
    users[2].send(b"hi both\r\n");
    assert_eq!(users[0].line_str(), said("carol", "hi both"));
    assert_eq!(users[1].line_str(), said("carol", "hi both"));

    // dave got none of it: his next line answers his name.
    dave.send(b"dave\r\n");
    assert_eq!(dave.line_str(), welcome("dave"));
    for user in &mut users {
        assert_eq!(user.line_str(), joined("dave"));
    }
    dave.send(b"hello\r\n");
    for user in &mut users {
        assert_eq!(user.line_str(), said("dave", "hello"));
    }
}

#[test]
fn chat_server_announces_joins_and_leaves_to_the_others() {
    // chat_with checks that alice read "* bob has joined".
    let (server, addr, mut users) = chat_with(&["alice", "bob"]);
    let mut carol = join(addr, "carol", &mut users);
    // carol is not told about her own join: her next line is alice's.
    users[0].send(b"hi carol\r\n");
    assert_eq!(carol.line_str(), said("alice", "hi carol"));
    assert_eq!(users[1].line_str(), said("alice", "hi carol"));

    // bob leaves: both others are told.
    drop(users.remove(1));
    assert_eq!(users[0].line_str(), left("bob"));
    assert_eq!(carol.line_str(), left("bob"));

    // Someone who never chose a name leaves unannounced.
    let nameless = newcomer(addr);
    drop(nameless);
    server.wait_stderr("left without a name");
    users[0].send(b"still two of us\r\n");
    assert_eq!(carol.line_str(), said("alice", "still two of us"));
}

#[test]
fn chat_server_frees_the_name_of_a_user_who_disconnects() {
    let (_server, addr, mut users) = chat_with(&["alice", "bob"]);
    let mut impostor = newcomer(addr);
    impostor.send(b"alice\r\n");
    assert_eq!(impostor.line_str(), TAKEN);

    drop(users.remove(0));
    assert_eq!(users[0].line_str(), left("alice"));
    // The waiting connection and a new one may both ask for it; the first
    // gets it.
    impostor.send(b"alice\r\n");
    assert_eq!(impostor.line_str(), welcome("alice"));
    assert_eq!(users[0].line_str(), joined("alice"));
    let mut late = newcomer(addr);
    late.send(b"alice\r\n");
    assert_eq!(late.line_str(), TAKEN);

    users[0].send(b"welcome back\r\n");
    assert_eq!(impostor.line_str(), said("bob", "welcome back"));
}

#[test]
fn chat_server_takes_lf_or_crlf_split_anywhere_and_replies_with_crlf() {
    let (_server, addr, mut users) = chat_with(&["alice", "bob"]);
    // nc sends "\n", telnet "\r\n"; a line may come in pieces, the "\r\n"
    // split too. A lone "\r" inside a line is data.
    let pieces: [&[u8]; 7] = [
        b"from nc\n",
        b"from telnet\r\n",
        b"in ",
        b"pieces\r",
        b"\n",
        b"a\rb\n",
        b"two\nat once\r\n",
    ];
    for piece in pieces {
        users[0].send(piece);
        std::thread::sleep(Duration::from_millis(20));
    }
    for line in [
        "from nc",
        "from telnet",
        "in pieces",
        "a\rb",
        "two",
        "at once",
    ] {
        assert_eq!(users[1].line_str(), said("alice", line));
    }
    // Names too.
    let mut carol = newcomer(addr);
    carol.send(b"ca");
    std::thread::sleep(Duration::from_millis(20));
    carol.send(b"rol\n");
    assert_eq!(carol.line_str(), welcome("carol"));
}

#[test]
fn chat_server_closes_only_the_connection_that_sends_a_line_over_16384_bytes() {
    let (_server, addr, mut users) = chat_with(&["alice", "bob", "carol"]);
    // A line of exactly the maximum is fine.
    let longest = "x".repeat(MAX_LINE);
    users[0].send(format!("{longest}\r\n").as_bytes());
    assert_eq!(users[1].line_str(), said("alice", &longest));
    assert_eq!(users[2].line_str(), said("alice", &longest));

    // One byte more closes carol's connection, and only hers.
    let too_long = format!("{}\r\n", "y".repeat(MAX_LINE + 1));
    let _ = users[2].reader.get_mut().write_all(too_long.as_bytes());
    users[2].expect_closed();
    drop(users.remove(2));
    assert_eq!(users[0].line_str(), left("carol"));
    assert_eq!(users[1].line_str(), left("carol"));

    // Nothing of the long line was relayed; the others chat on.
    users[0].send(b"what happened?\r\n");
    assert_eq!(users[1].line_str(), said("alice", "what happened?"));
    users[1].send(b"carol said too much\r\n");
    assert_eq!(users[0].line_str(), said("bob", "carol said too much"));
    // Her name is free again.
    let mut carol = join(addr, "carol", &mut users);
    users[0].send(b"hi again\r\n");
    assert_eq!(carol.line_str(), said("alice", "hi again"));
}

#[test]
fn chat_server_closes_a_connection_as_soon_as_its_line_passes_the_limit() {
    let (_server, _addr, mut users) = chat_with(&["alice", "bob"]);
    // No line ending ever comes: the limit alone closes the connection.
    let _ = users[1]
        .reader
        .get_mut()
        .write_all("z".repeat(MAX_LINE + 1).as_bytes());
    users[1].expect_closed();
    drop(users.remove(1));
    assert_eq!(users[0].line_str(), left("bob"));
}

#[test]
fn chat_server_closes_only_the_connection_that_sends_a_line_that_is_not_utf8() {
    let (_server, _addr, mut users) = chat_with(&["alice", "bob", "carol"]);
    users[1].send(b"caf\xe9\r\n");
    users[1].expect_closed();
    drop(users.remove(1));
    assert_eq!(users[0].line_str(), left("bob"));
    assert_eq!(users[1].line_str(), left("bob"));
    users[0].send(b"ok\r\n");
    assert_eq!(users[1].line_str(), said("alice", "ok"));
}

#[test]
fn chat_server_on_sigterm_closes_connections_cleanly_and_exits_with_status_0() {
    let (mut server, addr, mut users) = chat_with(&["alice", "bob"]);
    let mut nameless = newcomer(addr);
    users[0].send(b"last words\r\n");
    assert_eq!(users[1].line_str(), said("alice", "last words"));
    server.terminate();
    for user in &mut users {
        user.expect_eof();
    }
    nameless.expect_eof();
    drop((users, nameless));
    let status = server.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}:\n{}",
        server.transcript()
    );
}

// ---------------------------------------------------------------------------
// reverse_server
// ---------------------------------------------------------------------------

/// A request (or reply): the five-digit header and the body.
fn framed(body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= 99_999);
    let mut out = format!("{:05}", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn reversed(body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.reverse();
    framed(&body)
}

/// Sends `requests` in one write and checks the replies, in order.
fn round_trip(client: &mut Client, bodies: &[&[u8]]) {
    let request: Vec<u8> = bodies.iter().flat_map(|body| framed(body)).collect();
    let expected: Vec<u8> = bodies.iter().flat_map(|body| reversed(body)).collect();
    client.send(&request);
    let reply = client.read_exact(expected.len());
    assert_eq!(
        reply.escape_ascii().to_string(),
        expected.escape_ascii().to_string()
    );
}

fn reverse_server() -> (Proc, SocketAddr) {
    let server = Proc::spawn("reverse_server");
    let addr = server.listening_addr();
    (server, addr)
}

#[test]
fn reverse_server_replies_with_the_same_header_and_the_body_reversed() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    client.send(b"00005abcde");
    assert_eq!(client.read_exact(10), b"00005edcba");
    client.send(b"00000");
    assert_eq!(client.read_exact(5), b"00000");
    client.send(b"00001a");
    assert_eq!(client.read_exact(6), b"00001a");
    client.expect_silence();
}

#[test]
fn reverse_server_reverses_bytes_not_characters() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    // "é" is two bytes: they come back swapped (not UTF-8 any more).
    client.send(&framed("h\u{e9}!".as_bytes()));
    assert_eq!(client.read_exact(9), b"00004!\xa9\xc3h");
    // Any bytes, line endings and NULs included.
    round_trip(&mut client, &[b"\xff\x00\x80\r\n 12345"]);
}

#[test]
fn reverse_server_answers_pipelined_requests_in_order() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    let bodies: Vec<Vec<u8>> = (0..500)
        .map(|i: usize| (0..i % 37).map(|j| b'a' + ((i + j) % 26) as u8).collect())
        .collect();
    let bodies: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    round_trip(&mut client, &bodies);
    // The connection goes on.
    round_trip(&mut client, &[b"after"]);
}

#[test]
fn reverse_server_handles_requests_split_at_every_byte() {
    let (_server, addr) = reverse_server();
    let bodies: [&[u8]; 3] = [b"hello", b"", b"world!"];
    let stream: Vec<u8> = bodies.iter().flat_map(|body| framed(body)).collect();
    let expected: Vec<u8> = bodies.iter().flat_map(|body| reversed(body)).collect();

    // Split in two at each position, one connection per split.
    for at in 1..stream.len() {
        let mut client = Client::connect(addr);
        client.send(&stream[..at]);
        std::thread::sleep(Duration::from_millis(5));
        client.send(&stream[at..]);
        let reply = client.read_exact(expected.len());
        assert_eq!(reply, expected, "split at byte {at}");
    }

    // One byte at a time: no reply before a request's last byte.
    let mut client = Client::connect(addr);
    let first = framed(b"hello");
    for byte in &first[..first.len() - 1] {
        client.send(&[*byte]);
        std::thread::sleep(Duration::from_millis(5));
    }
    client.expect_silence();
    client.send(&first[first.len() - 1..]);
    assert_eq!(client.read_exact(10), b"00005olleh");
    for byte in &stream[first.len()..] {
        client.send(&[*byte]);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(client.read_exact(expected.len() - 10), &expected[10..]);
}

#[test]
fn reverse_server_takes_the_longest_body_five_digits_allow() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    let body: Vec<u8> = (0..99_999u32).map(|i| (i % 251) as u8).collect();
    round_trip(&mut client, &[&body]);
}

#[test]
fn reverse_server_closes_only_the_connection_with_a_non_numeric_header() {
    let (server, addr) = reverse_server();
    let mut good = Client::connect(addr);
    round_trip(&mut good, &[b"before"]);

    // The connection closes as soon as the bad byte arrives, without
    // waiting for the rest of the header.
    let mut bad = Client::connect(addr);
    bad.send(b"12a");
    bad.expect_closed();
    server.wait_stderr("is not 5 ASCII digits");

    for header in [&b" 0005"[..], b"+0005", b"-0001", b"0x005", b"abcde"] {
        let mut bad = Client::connect(addr);
        bad.send(header);
        bad.expect_closed();
    }

    // Good requests before a bad one are answered, then the connection
    // closes.
    let mut mixed = Client::connect(addr);
    mixed.send(b"00002ok00002hi0000?");
    assert_eq!(mixed.read_exact(14), b"00002ko00002ih");
    mixed.expect_closed();

    // The others are still served.
    round_trip(&mut good, &[b"after", b"x"]);
    let mut newcomer = Client::connect(addr);
    round_trip(&mut newcomer, &[b"new"]);
}

#[test]
fn reverse_server_answers_then_closes_when_the_client_closes_its_side() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    client.send(b"00003abc00002de");
    client.stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.read_exact(15), b"00003cba00002ed");
    client.expect_eof();

    // An unfinished request at EOF is dropped and the connection closed.
    let mut client = Client::connect(addr);
    client.send(b"00003ab");
    client.stream().shutdown(Shutdown::Write).unwrap();
    client.expect_closed();
}

// ---------------------------------------------------------------------------
// codec_pipeline

/// A frame of the pyboot-netty format: 4 header bytes, a 4-byte big-endian
/// body length, the body.
fn pipeline_frame(header: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut frame = header.to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

fn codec_pipeline() -> (Proc, SocketAddr) {
    let server = Proc::spawn("codec_pipeline");
    let addr = server.listening_addr();
    (server, addr)
}

#[test]
fn codec_pipeline_answers_each_message_trimmed_in_the_same_frame_format() {
    let (_server, addr) = codec_pipeline();
    let mut client = Client::connect(addr);
    client.send(&pipeline_frame([9, 9, 9, 9], b"  hello, world \n"));
    assert_eq!(
        client.read_exact(20),
        pipeline_frame([0; 4], b"hello, world")
    );
    // Pipelined and split anywhere.
    let mut both = pipeline_frame([1, 2, 3, 4], b"\tone ");
    both.extend(pipeline_frame([0; 4], "  déjà vu".as_bytes()));
    for piece in both.chunks(3) {
        client.send(piece);
    }
    assert_eq!(client.read_exact(11), pipeline_frame([0; 4], b"one"));
    assert_eq!(
        client.read_exact(17),
        pipeline_frame([0; 4], "déjà vu".as_bytes())
    );
    client.expect_silence();
}

#[test]
fn codec_pipeline_closes_only_the_connection_whose_length_is_past_the_maximum() {
    let (_server, addr) = codec_pipeline();
    let mut bad = Client::connect(addr);
    let mut good = Client::connect(addr);
    let mut huge = vec![0u8; 4];
    huge.extend_from_slice(&(10 * 1024 * 1024u32).to_be_bytes());
    bad.send(&huge);
    bad.expect_closed();
    good.send(&pipeline_frame([0; 4], b" still served "));
    assert_eq!(good.read_exact(20), pipeline_frame([0; 4], b"still served"));
}
