//! The example programs, run as child processes against real loopback
//! sockets: the Spreader broadcast server (reference section 7.3) and its
//! client, the echo server and client, and a graceful stop on SIGTERM.
//!
//! The examples are built once with `cargo build --examples`; each child
//! listens on 127.0.0.1:0 and the test reads the port from its
//! `listening on ADDR` log line. Children are killed when a test ends, pass
//! or fail.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long to wait for any one thing a child or a socket should do.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Building and running the examples
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

/// Runs `cargo build --examples` and reads where each example binary went
/// from cargo's JSON messages (this honours CARGO_TARGET_DIR and any build
/// configuration).
fn build_examples() -> Result<HashMap<String, PathBuf>, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
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
    stdout: Receiver<Option<String>>,
    stderr: Receiver<Option<String>>,
    /// Every line so far, for failure messages.
    transcript: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(name: &str, args: &[&str]) -> Proc {
        let mut command = Command::new(example(name));
        command.args(args);
        Proc::start(name, command)
    }

    /// Starts `command`, which runs the example `name`.
    fn start(name: &str, mut command: Command) -> Proc {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("could not start {name}: {err}"));
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let stdout = lines(child.stdout.take().unwrap(), "out", &transcript);
        let stderr = lines(child.stderr.take().unwrap(), "err", &transcript);
        Proc {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            transcript,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn transcript(&self) -> String {
        self.transcript.lock().unwrap().join("\n")
    }

    /// Waits for a line containing `needle` on stdout (`err` false) or
    /// stderr, and returns it; lines before it are skipped.
    fn wait_for(&self, stderr: bool, needle: &str) -> String {
        let lines = if stderr { &self.stderr } else { &self.stdout };
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => {}
                Ok(None) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} closed its {} before printing {needle:?}:\n{}",
                    self.name,
                    if stderr { "stderr" } else { "stdout" },
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

    fn wait_stdout(&self, needle: &str) -> String {
        self.wait_for(false, needle)
    }

    fn wait_stderr(&self, needle: &str) -> String {
        self.wait_for(true, needle)
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
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the child to exit: its stdout and stderr reach EOF when it
    /// does.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        for lines in [&self.stdout, &self.stderr] {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => panic!(
                        "{} did not exit within {WAIT:?}:\n{}",
                        self.name,
                        self.transcript()
                    ),
                }
            }
        }
        self.child.wait().expect("wait for the child")
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
            if tx.send(Some(line)).is_err() {
                return;
            }
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
        Client {
            reader: BufReader::new(stream),
        }
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

    fn line_str(&mut self) -> String {
        String::from_utf8(self.line()).expect("UTF-8 line")
    }

    /// Reads EOF: the peer closed the connection cleanly, with nothing
    /// unread before it and no reset.
    fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) if rest.is_empty() => {}
            Ok(_) => panic!("data before EOF: {:?}", String::from_utf8_lossy(&rest)),
            Err(err) => panic!("no clean EOF: {err} ({:?})", err.kind()),
        }
    }
}

fn welcome(number: usize) -> String {
    format!("Welcome to Spread Site, you are client user number {number}!\n")
}

/// Starts `broadcast_server` and connects `n` clients, each after the
/// previous one was welcomed (so their numbers are 1..=n).
fn spreader_with_clients(n: usize) -> (Proc, SocketAddr, Vec<Client>) {
    let server = Proc::spawn("broadcast_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut clients = Vec::new();
    for number in 1..=n {
        let mut client = Client::connect(addr);
        assert_eq!(client.line_str(), welcome(number));
        clients.push(client);
    }
    (server, addr, clients)
}

// ---------------------------------------------------------------------------
// broadcast_server
// ---------------------------------------------------------------------------

#[test]
fn broadcast_server_welcomes_each_client_with_the_number_connected_now() {
    // The welcome is checked inside spreader_with_clients: 1, 2, 3.
    let (server, addr, mut clients) = spreader_with_clients(3);
    // Numbers are the current count, so they are reused after a client
    // leaves.
    drop(clients.remove(0));
    server.wait_stderr("lost connect: 2");
    let mut fourth = Client::connect(addr);
    assert_eq!(fourth.line_str(), welcome(3));
}

#[test]
fn broadcast_server_relays_a_message_unchanged_to_every_other_client_but_not_the_sender() {
    let (_server, _addr, mut clients) = spreader_with_clients(3);
    let message: &[u8] = "h\u{e9}llo,\tevery one \u{2603}\r\n".as_bytes();
    clients[0].send(message);
    assert_eq!(clients[1].line(), message);
    assert_eq!(clients[2].line(), message);
    // Had the sender received its own message, it would read it before this.
    clients[1].send(b"reply from 2\n");
    assert_eq!(clients[0].line(), b"reply from 2\n");
    assert_eq!(clients[2].line(), b"reply from 2\n");
    clients[2].send(b"reply from 3\n");
    assert_eq!(clients[0].line(), b"reply from 3\n");
    assert_eq!(clients[1].line(), b"reply from 3\n");
}

/// `close` (as sent) ends the sender's connection only.
fn close_ends_only_the_senders_connection(close: &[u8]) {
    let (server, addr, mut clients) = spreader_with_clients(3);
    clients[0].send(close);
    clients[0].expect_eof();
    drop(clients.remove(0));
    server.wait_stderr("lost connect: 2");
    clients[0].send(b"still here\n");
    assert_eq!(clients[1].line(), b"still here\n");
    let mut newcomer = Client::connect(addr);
    assert_eq!(newcomer.line_str(), welcome(3), "the closed client left");
    clients[1].send(b"hello again\n");
    assert_eq!(clients[0].line(), b"hello again\n");
    assert_eq!(newcomer.line(), b"hello again\n");
}

#[test]
fn broadcast_server_closes_the_connection_of_a_client_that_sends_close() {
    close_ends_only_the_senders_connection(b"close");
}

#[test]
fn broadcast_server_accepts_close_with_a_newline() {
    close_ends_only_the_senders_connection(b"close\n");
}

#[test]
fn broadcast_server_accepts_close_with_crlf() {
    close_ends_only_the_senders_connection(b"close\r\n");
}

#[test]
fn broadcast_server_on_sigterm_closes_connections_cleanly_and_exits_with_status_0() {
    let (mut server, _addr, mut clients) = spreader_with_clients(2);
    // Traffic still flows right before the signal.
    clients[0].send(b"last words\n");
    assert_eq!(clients[1].line(), b"last words\n");
    server.terminate();
    for client in &mut clients {
        client.expect_eof();
    }
    drop(clients);
    let status = server.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}:\n{}",
        server.transcript()
    );
}

// ---------------------------------------------------------------------------
// broadcast_client
// ---------------------------------------------------------------------------

#[test]
fn broadcast_client_prints_what_it_receives_and_says_hello_on_its_interval() {
    let (server, addr, mut clients) = spreader_with_clients(1);
    let addr = addr.to_string();
    let mut client = Proc::spawn("broadcast_client", &[&addr, "tester", "0.2"]);
    client.wait_stdout("Started to connect.");
    client.wait_stdout("Connected.");
    let welcomed = client.wait_stdout("Welcome to Spread Site");
    assert_eq!(format!("{welcomed}\n"), welcome(2));

    for _ in 0..2 {
        let hello = clients[0].line_str();
        let stamp = hello
            .strip_prefix("hello, I'm tester ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("not a hello: {hello:?}"));
        assert!(
            !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit()),
            "not a timestamp: {hello:?}"
        );
    }

    clients[0].send(b"hi, tester\n");
    client.wait_stdout("hi, tester");

    // The server going away ends the client too.
    server.terminate();
    client.wait_stdout("Lost connection.");
    let status = client.wait_exit();
    assert!(status.success(), "broadcast_client exited with {status}");
}

// ---------------------------------------------------------------------------
// echo_server, echo_client
// ---------------------------------------------------------------------------

#[test]
fn echo_server_echoes_what_it_receives() {
    let server = Proc::spawn("echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut client = Client::connect(addr);
    client.send(b"ping\n");
    assert_eq!(client.line(), b"ping\n");

    // A payload bigger than the socket buffers, written while reading.
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = client.reader.get_ref().try_clone().unwrap();
    let sent = payload.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent));
    let mut echoed = vec![0; payload.len()];
    client
        .reader
        .read_exact(&mut echoed)
        .expect("read the echo");
    writing.join().unwrap().expect("write the payload");
    assert!(echoed == payload, "the echo differs from what was sent");
}

#[test]
fn echo_client_prints_the_echo_and_exits() {
    let server = Proc::spawn("echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr().to_string();
    let mut client = Proc::spawn("echo_client", &[&addr, "hello from the test"]);
    let line = client.wait_stdout("hello");
    assert_eq!(line, "hello from the test");
    let status = client.wait_exit();
    assert!(status.success(), "echo_client exited with {status}");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn echo_server_out_of_file_descriptors_backs_off_instead_of_spinning() {
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=24:24")
        .arg(example("echo_server"))
        .arg("127.0.0.1:0");
    let server = Proc::start("echo_server", command);
    let addr = server.listening_addr();
    // Each accepted connection takes a descriptor; the kernel queues the
    // rest, so the listener stays readable while accept fails with EMFILE.
    let crowd: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    server.wait_stderr("pausing accepts");
    let before = cpu_ticks(server.pid());
    // A measurement window: a server that retried accept in a loop would
    // burn the whole second (100 ticks).
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(server.pid()) - before;
    assert!(
        used < 20,
        "the server used {used} ticks of CPU in 1 s while out of descriptors"
    );
    drop(crowd);
    // Once descriptors are free again, the server accepts and serves.
    let mut client = Client::connect(addr);
    client.send(b"still here\n");
    assert_eq!(client.line(), b"still here\n");
}
