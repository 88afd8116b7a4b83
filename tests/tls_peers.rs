//! Wire compatibility of twill's TLS with peers twill did not write:
//! Python's `ssl` module, over asyncio streams and over blocking sockets
//! (`tests/support/tls_peer.py`), and the `openssl` command line
//! (`s_client`, `s_server`). Each test runs one twill side on a reactor on
//! the test thread against one peer process, in both directions where
//! there are two: twill as the server with the foreign client, twill as
//! the client with the foreign server.
//!
//! Certificates are made when each test runs (rcgen): a test CA, server
//! certificates for `localhost`, `a.test` and `b.test`, a client
//! certificate, and a `localhost` certificate from a CA nobody trusts,
//! written as PEM into a directory of their own under the system's temp
//! directory for the peers, and removed when the test ends.
//!
//! Python is `$TWILL_TWISTED_PYTHON` if set, else `python3` (3.11 or
//! later, standard library only). The `openssl` tests print why they are
//! skipped when there is no `openssl` command. Every wait is bounded: a
//! peer's lines are waited for with a time limit, a watchdog stops the
//! reactor if the test does not (or soon after the peer exited), and a
//! peer still running when its test ends is killed.

#![cfg(feature = "tls")]

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use ring::digest;
use twill::tls::config::{self, SniResolver};
use twill::tls::rustls::{self, CertificateError, ProtocolVersion};
use twill::tls::{
    CertificateDer, HandshakeCompleted, PrivateKeyDer, StartTls, TlsAcceptor, TlsConnector,
    TlsError, TlsInfo,
};
use twill::{Bytes, Event, Protocol, Reactor, Reason, Transport};

/// How long any one wait for a peer, and any one reactor run, may take.
const LIMIT: Duration = Duration::from_secs(20);
/// How long the reactor may go on after its peer exited.
const GRACE: Duration = Duration::from_secs(5);

// ------------------------------------------------------------ certificates

/// A certificate chain and its key, in DER for twill and in PEM files for
/// the peers.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: String,
    key_file: String,
}

impl Identity {
    fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    fn sha256(&self) -> String {
        hex(digest::digest(&digest::SHA256, &self.chain[0]).as_ref())
    }
}

/// The test's certificates, in a temporary directory removed on drop.
struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    ca_file: String,
    /// `localhost` and `127.0.0.1`.
    server: Identity,
    a: Identity,
    b: Identity,
    client: Identity,
    /// `localhost`, from a CA nobody trusts.
    rogue: Identity,
}

fn authority(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, Issuer::new(params, key))
}

impl Pki {
    fn new() -> Pki {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "twill-tls-peers-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, issuer) = authority("twill test CA");
        let (_, rogue_issuer) = authority("nobody's CA");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let leaf = |file: &str, issuer: &Issuer<'static, KeyPair>, names: &[&str], eku| {
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, names[0]);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![eku];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer).unwrap();
            let (cert_file, key_file) = (
                dir.join(format!("{file}.pem")),
                dir.join(format!("{file}.key")),
            );
            std::fs::write(&cert_file, cert.pem()).unwrap();
            std::fs::write(&key_file, key.serialize_pem()).unwrap();
            Identity {
                chain: vec![cert.der().clone()],
                key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                cert_file: path_arg(&cert_file),
                key_file: path_arg(&key_file),
            }
        };
        Pki {
            server: leaf(
                "server",
                &issuer,
                &["localhost", "127.0.0.1"],
                server.clone(),
            ),
            a: leaf("a", &issuer, &["a.test"], server.clone()),
            b: leaf("b", &issuer, &["b.test"], server.clone()),
            client: leaf(
                "client",
                &issuer,
                &["twill client"],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
            rogue: leaf("rogue", &rogue_issuer, &["localhost"], server),
            ca: ca.der().clone(),
            ca_file: path_arg(&ca_file),
            dir,
        }
    }

    /// A server presenting the `localhost` certificate, TLS 1.2 and 1.3.
    fn server_config(&self) -> rustls::ServerConfig {
        config::server_config(self.server.chain.clone(), self.server.key()).unwrap()
    }

    /// A client trusting the test CA, TLS 1.2 and 1.3.
    fn client_config(&self) -> rustls::ClientConfig {
        config::client_config_trusting(vec![self.ca.clone()]).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------------ peers

/// A peer process: stdin piped, stdout and stderr read line by line on
/// threads into one transcript; killed if still running when dropped.
struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Output>,
}

/// What a peer printed, `[out]` or `[err]` first, and how many of its two
/// streams are still open.
#[derive(Default)]
struct Output {
    state: Mutex<(Vec<String>, usize)>,
    changed: Condvar,
}

impl Peer {
    fn spawn(name: &str, mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("could not start {name} ({command:?}): {err}"));
        let out = Arc::new(Output::default());
        out.state.lock().unwrap().1 = 2;
        read_lines(child.stdout.take().unwrap(), "[out] ", out.clone());
        read_lines(child.stderr.take().unwrap(), "[err] ", out.clone());
        Peer {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            out,
        }
    }

    /// `tls_peer.py MODE ARGS...`
    fn python(mode: &str, args: &[&str]) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls_peer.py");
        let mut command = Command::new(python());
        command.arg("-u").arg(script).arg(mode).args(args);
        Peer::spawn(&format!("python tls_peer.py {mode}"), command)
    }

    /// `openssl ARGS...`
    fn openssl(args: &[&str]) -> Peer {
        let mut command = Command::new("openssl");
        command.args(args);
        Peer::spawn(&format!("openssl {}", args[0]), command)
    }

    /// Waits until `find` finds what it looks for in the lines printed so
    /// far, failing the test if the peer exits first or `LIMIT` passes.
    fn wait_for<T>(&self, what: &str, mut find: impl FnMut(&[String]) -> Option<T>) -> T {
        let deadline = Instant::now() + LIMIT;
        let mut state = self.out.state.lock().unwrap();
        loop {
            if let Some(found) = find(&state.0) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                state.1 > 0 && !left.is_zero(),
                "{} {} before printing {what}:\n{}",
                self.name,
                if state.1 == 0 { "exited" } else { "timed out" },
                state.0.join("\n")
            );
            state = self.out.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// The first line containing `needle`.
    fn line_with(&self, needle: &str) -> String {
        self.wait_for(&format!("a line with {needle:?}"), |lines| {
            lines.iter().find(|line| line.contains(needle)).cloned()
        })
    }

    /// The values of the first `n` `KEY VALUE` lines on stdout.
    fn values(&self, key: &str, n: usize) -> Vec<String> {
        let prefix = format!("[out] {key}");
        self.wait_for(&format!("{n} {key:?} lines"), |lines| {
            let found: Vec<String> = lines
                .iter()
                .filter_map(|line| match line.strip_prefix(&prefix)? {
                    "" => Some(String::new()),
                    rest => rest.strip_prefix(' ').map(str::to_owned),
                })
                .take(n)
                .collect();
            (found.len() == n).then_some(found)
        })
    }

    /// The value of the first `KEY VALUE` line on stdout.
    fn value(&self, key: &str) -> String {
        self.values(key, 1).remove(0)
    }

    /// The port of a server: from tls_peer.py's `listening on
    /// 127.0.0.1:PORT`, or `openssl s_server`'s `ACCEPT 127.0.0.1:PORT`.
    fn port(&self) -> u16 {
        self.wait_for("the port it listens on", |lines| {
            lines.iter().find_map(|line| {
                let rest = line
                    .split("listening on 127.0.0.1:")
                    .nth(1)
                    .or_else(|| line.split("ACCEPT 127.0.0.1:").nth(1))?;
                rest.trim().parse().ok()
            })
        })
    }

    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the peer's stdin");
    }

    fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin still open")
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the peer to close its output and exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        let mut state = self.out.state.lock().unwrap();
        while state.1 > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} did not exit:\n{}",
                self.name,
                state.0.join("\n")
            );
            state = self.out.changed.wait_timeout(state, left).unwrap().0;
        }
        drop(state);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} closed its output but did not exit",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn transcript(&self) -> String {
        self.out.state.lock().unwrap().0.join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn read_lines(pipe: impl Read + Send + 'static, tag: &'static str, out: Arc<Output>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            out.state.lock().unwrap().0.push(format!("{tag}{line}"));
            out.changed.notify_all();
        }
        out.state.lock().unwrap().1 -= 1;
        out.changed.notify_all();
    });
}

/// `$TWILL_TWISTED_PYTHON` if set, else `python3`.
fn python() -> OsString {
    std::env::var_os("TWILL_TWISTED_PYTHON")
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Whether there is an `openssl` command; if not, says the test is
/// skipped.
fn have_openssl(test: &str) -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if !found {
        eprintln!("skipped {test}: no `openssl` command on PATH (.ci/run installs it)");
    }
    found
}

/// Runs `reactor` until the test stops it. A watchdog stops it instead,
/// failing the test with what `peer` printed, after [`LIMIT`] or
/// [`GRACE`] after the peer exited.
fn run(reactor: &Reactor, peer: &Peer) {
    reactor.set_shutdown_timeout(Duration::from_secs(1));
    let handle = reactor.handle();
    let out = peer.out.clone();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        let start = Instant::now();
        let mut exited: Option<Instant> = None;
        while let Err(mpsc::RecvTimeoutError::Timeout) =
            finished.recv_timeout(Duration::from_millis(20))
        {
            if exited.is_none() && out.state.lock().unwrap().1 == 0 {
                exited = Some(Instant::now());
            }
            let why = if start.elapsed() > LIMIT {
                format!("the test did not stop the reactor within {LIMIT:?}")
            } else if exited.is_some_and(|at| at.elapsed() > GRACE) {
                format!("the peer exited, and the test did not stop the reactor within {GRACE:?}")
            } else {
                continue;
            };
            handle.stop();
            return Some(why);
        }
        None
    });
    reactor.run().expect("the reactor runs");
    drop(done);
    if let Some(why) = watchdog.join().unwrap() {
        panic!("{why}; {} printed:\n{}", peer.name, peer.transcript());
    }
}

// -------------------------------------------------------- twill's side

/// How a connection ended, as twill's protocol saw it.
#[derive(Debug, Clone)]
enum Ended {
    /// `Reason::Done`.
    Done,
    /// `Reason::Lost` with an `UnexpectedEof` holding `TlsError::Truncated`.
    Truncated,
    /// `Reason::Failed` with `TlsError::Handshake`.
    Handshake(rustls::Error),
    /// Anything else, as text (read through `Debug` in failure messages).
    #[allow(dead_code)]
    Other(String),
}

fn classify(reason: &Reason) -> Ended {
    match reason {
        Reason::Done => Ended::Done,
        Reason::Lost(err)
            if err.kind() == std::io::ErrorKind::UnexpectedEof
                && matches!(
                    err.get_ref().and_then(|e| e.downcast_ref::<TlsError>()),
                    Some(TlsError::Truncated)
                ) =>
        {
            Ended::Truncated
        }
        Reason::Failed(err) => match err.downcast_ref::<TlsError>() {
            Some(TlsError::Handshake(err)) => Ended::Handshake(err.clone()),
            _ => Ended::Other(format!("{reason} ({reason:?})")),
        },
        _ => Ended::Other(format!("{reason} ({reason:?})")),
    }
}

/// What twill's protocols saw, over all the connections of a test.
#[derive(Default)]
struct Seen {
    /// "handshake", "eof", "lost", in order.
    log: Vec<String>,
    data: Vec<u8>,
    /// How much data had arrived when `eof_received` came.
    data_at_eof: Option<usize>,
    /// `Transport::tls()` when each `HandshakeCompleted` arrived.
    tls: Vec<TlsInfo>,
    ended: Vec<Ended>,
    /// How many connections end before the reactor is stopped.
    stop_after: usize,
    flow: Flow,
    /// Lets a slow reader read (see `watch_stall`).
    release: Option<Box<dyn FnOnce()>>,
}

type Shared = Rc<RefCell<Seen>>;

fn seen(stop_after: usize) -> Shared {
    Rc::new(RefCell::new(Seen {
        stop_after,
        ..Seen::default()
    }))
}

fn on_event(seen: &Shared, transport: &Transport, event: &Event) {
    if let Some(done) = event.downcast_ref::<HandshakeCompleted>() {
        let info = transport.tls().expect("a TLS transport");
        assert!(info.handshake_complete && done.info.handshake_complete);
        assert_eq!(info.protocol_version, done.info.protocol_version);
        let mut seen = seen.borrow_mut();
        seen.log.push("handshake".into());
        seen.tls.push(info);
    }
}

fn on_eof(seen: &Shared) {
    let mut seen = seen.borrow_mut();
    seen.log.push("eof".into());
    seen.data_at_eof = Some(seen.data.len());
}

fn on_lost(seen: &Shared, reason: &Reason) {
    let mut seen = seen.borrow_mut();
    seen.log.push("lost".into());
    seen.ended.push(classify(reason));
    if seen.ended.len() >= seen.stop_after {
        twill::stop();
    }
}

/// Echoes what it reads.
struct Echo {
    transport: Option<Transport>,
    seen: Shared,
}

fn echo(seen: &Shared) -> impl FnMut(twill::Address) -> Echo {
    let seen = seen.clone();
    move |_| Echo {
        transport: None,
        seen: seen.clone(),
    }
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.seen.borrow_mut().data.extend_from_slice(&data);
        self.transport.as_ref().unwrap().write(data);
    }
    fn event_received(&mut self, event: Event) {
        on_event(&self.seen, self.transport.as_ref().unwrap(), &event);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        on_lost(&self.seen, reason);
    }
}

/// Writes its message as soon as it is connected (before the handshake
/// completes: it goes right after), reads as many bytes back, then closes
/// with close_notify. Records everything else, as `Collect` does.
struct Ask {
    transport: Option<Transport>,
    seen: Shared,
    message: &'static str,
}

fn ask(seen: &Shared, message: &'static str) -> impl FnMut(twill::Address) -> Ask {
    let seen = seen.clone();
    move |_| Ask {
        transport: None,
        seen: seen.clone(),
        message,
    }
}

impl Protocol for Ask {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        transport.write(self.message);
    }
    fn data_received(&mut self, data: Bytes) {
        let mut seen = self.seen.borrow_mut();
        seen.data.extend_from_slice(&data);
        if seen.data.len() >= self.message.len() {
            self.transport.as_ref().unwrap().lose_connection();
        }
    }
    fn eof_received(&mut self) -> bool {
        on_eof(&self.seen);
        false
    }
    fn event_received(&mut self, event: Event) {
        on_event(&self.seen, self.transport.as_ref().unwrap(), &event);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        on_lost(&self.seen, reason);
    }
}

/// Writes nothing; records what arrives and how the connection ends.
struct Collect {
    transport: Option<Transport>,
    seen: Shared,
}

fn collect(seen: &Shared) -> impl FnMut(twill::Address) -> Collect {
    let seen = seen.clone();
    move |_| Collect {
        transport: None,
        seen: seen.clone(),
    }
}

impl Protocol for Collect {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.seen.borrow_mut().data.extend_from_slice(&data);
    }
    fn eof_received(&mut self) -> bool {
        on_eof(&self.seen);
        false
    }
    fn event_received(&mut self, event: Event) {
        on_event(&self.seen, self.transport.as_ref().unwrap(), &event);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        on_lost(&self.seen, reason);
    }
}

/// Answers the first line with `twill heard: LINE` and closes.
struct LineReply {
    transport: Option<Transport>,
    seen: Shared,
}

impl Protocol for LineReply {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        let mut seen = self.seen.borrow_mut();
        seen.data.extend_from_slice(&data);
        if let Some(end) = seen.data.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&seen.data[..end]).into_owned();
            let transport = self.transport.as_ref().unwrap();
            transport.write(format!("twill heard: {line}\n"));
            transport.lose_connection();
        }
    }
    fn event_received(&mut self, event: Event) {
        on_event(&self.seen, self.transport.as_ref().unwrap(), &event);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        on_lost(&self.seen, reason);
    }
}

/// What a producer saw of flow control.
#[derive(Default, Debug)]
struct Flow {
    written: usize,
    sent_sha256: Option<String>,
    received: usize,
    received_sha256: Option<String>,
    pauses: usize,
    resumes: usize,
    /// The most `Transport::write_buffer_size()` ever was, looked at right
    /// after each write and in each `pause_writing`.
    max_buffered: usize,
    /// When the slow reader was let go: how much twill had written, and
    /// how much of it was still in its buffer.
    at_release: Option<(usize, usize)>,
}

/// The bytes a twill producer sends: xorshift64*, the same for a seed.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let word = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Writes `to_send` bytes of a pattern in pieces of `piece` bytes, as
/// flow control allows: while the transport is writable, and again on
/// `resume_writing` and `write_complete`. Meanwhile reads `expect` bytes.
/// Both hashed; closes with close_notify once both are done.
struct Bulk {
    transport: Option<Transport>,
    seen: Shared,
    to_send: usize,
    piece: usize,
    expect: usize,
    /// Watermarks to set, `(high, low)`, instead of the defaults.
    limits: Option<(usize, usize)>,
    pattern: Pattern,
    out: Option<digest::Context>,
    into: Option<digest::Context>,
    producing: bool,
    closed: bool,
}

impl Bulk {
    fn new(seen: &Shared, to_send: usize, piece: usize, expect: usize) -> Bulk {
        Bulk {
            transport: None,
            seen: seen.clone(),
            to_send,
            piece,
            expect,
            limits: None,
            pattern: Pattern(0x7477_696c_6c21),
            out: Some(digest::Context::new(&digest::SHA256)),
            into: Some(digest::Context::new(&digest::SHA256)),
            producing: false,
            closed: false,
        }
    }

    fn produce(&mut self) {
        let transport = self.transport.clone().unwrap();
        if !self.producing || self.out.is_none() {
            return;
        }
        let mut seen = self.seen.borrow_mut();
        // `is_writable` turns false only when the reactor flushes after
        // this callback; the buffer's size says at once when a piece took
        // it over the high watermark.
        let high = transport.write_buffer_limits().0;
        while seen.flow.written < self.to_send
            && transport.is_writable()
            && transport.write_buffer_size() <= high
        {
            let mut piece = vec![0; self.piece.min(self.to_send - seen.flow.written)];
            self.pattern.fill(&mut piece);
            self.out.as_mut().unwrap().update(&piece);
            seen.flow.written += piece.len();
            transport.write(piece);
            seen.flow.max_buffered = seen.flow.max_buffered.max(transport.write_buffer_size());
        }
        let mut never_stalled = None;
        if seen.flow.written == self.to_send {
            let sha = self.out.take().unwrap().finish();
            seen.flow.sent_sha256 = Some(hex(sha.as_ref()));
            // All written and a slow reader still waits: it never held
            // twill back (the test fails); let it read anyway.
            never_stalled = seen.release.take();
        }
        drop(seen);
        if let Some(release) = never_stalled {
            release();
        }
        self.finish();
    }

    fn finish(&mut self) {
        let mut seen = self.seen.borrow_mut();
        if seen.flow.received >= self.expect {
            if let Some(into) = self.into.take() {
                seen.flow.received_sha256 = Some(hex(into.finish().as_ref()));
            }
        }
        if self.out.is_none() && self.into.is_none() && !self.closed {
            self.closed = true;
            self.transport.as_ref().unwrap().lose_connection();
        }
    }
}

impl Protocol for Bulk {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        if let Some((high, low)) = self.limits {
            transport.set_write_buffer_limits(high, low);
        }
    }
    fn data_received(&mut self, data: Bytes) {
        self.seen.borrow_mut().flow.received += data.len();
        match self.into.as_mut() {
            Some(into) => into.update(&data),
            None => panic!(
                "{} bytes more than the {} expected",
                data.len(),
                self.expect
            ),
        }
        self.finish();
    }
    fn event_received(&mut self, event: Event) {
        on_event(&self.seen, self.transport.as_ref().unwrap(), &event);
        if event.is::<HandshakeCompleted>() {
            self.producing = true;
            if self.seen.borrow().release.is_some() {
                watch_stall(self.seen.clone(), self.transport.clone().unwrap(), 0, 0);
            }
            self.produce();
        }
    }
    fn pause_writing(&mut self) {
        let transport = self.transport.as_ref().unwrap();
        let mut seen = self.seen.borrow_mut();
        seen.flow.pauses += 1;
        seen.flow.max_buffered = seen.flow.max_buffered.max(transport.write_buffer_size());
    }
    fn resume_writing(&mut self) {
        self.seen.borrow_mut().flow.resumes += 1;
        self.produce();
    }
    fn write_complete(&mut self) {
        self.produce();
    }
    fn connection_lost(&mut self, reason: &Reason) {
        on_lost(&self.seen, reason);
    }
}

/// For a slow reader: every `TICK`, whether anything went to the kernel;
/// once nothing has for `STALL` while twill holds bytes (the kernel's
/// buffers are full, and so is twill's), lets the reader read.
fn watch_stall(seen: Shared, transport: Transport, last_sent: u64, ticks: u32) {
    const TICK: Duration = Duration::from_millis(50);
    twill::call_later(TICK, move || {
        let mut st = seen.borrow_mut();
        if st.release.is_none() {
            return;
        }
        let sent = transport.bytes_sent();
        let buffered = transport.write_buffer_size();
        let ticks = if sent == last_sent && buffered > 0 {
            ticks + 1
        } else {
            0
        };
        if TICK * ticks < STALL {
            drop(st);
            return watch_stall(seen, transport, sent, ticks);
        }
        st.flow.at_release = Some((st.flow.written, buffered));
        let release = st.release.take().unwrap();
        drop(st);
        release();
    });
}

/// The plaintext line protocol of the STARTTLS tests: `220 ready`,
/// `STARTTLS`, `220 go ahead`, then TLS both ways and `echo: LINE` for
/// each line.
struct StartTlsServer {
    transport: Option<Transport>,
    seen: Shared,
    acceptor: TlsAcceptor,
    upgraded: bool,
    buf: Vec<u8>,
}

impl Protocol for StartTlsServer {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        transport.write("220 ready\r\n");
    }
    fn data_received(&mut self, data: Bytes) {
        let transport = self.transport.clone().unwrap();
        self.buf.extend_from_slice(&data);
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = self.buf.drain(..end + 2).collect();
            if self.upgraded {
                self.seen.borrow_mut().data.extend_from_slice(&line);
                let mut reply = b"echo: ".to_vec();
                reply.extend_from_slice(&line);
                transport.write(reply);
            } else {
                assert_eq!(line, b"STARTTLS\r\n");
                assert!(self.buf.is_empty(), "TLS before the go-ahead");
                transport.write("220 go ahead\r\n");
                transport.start_tls(self.acceptor.clone()).unwrap();
                self.upgraded = true;
            }
        }
    }
    fn eof_received(&mut self) -> bool {
        on_eof(&self.seen);
        false
    }
    fn event_received(&mut self, event: Event) {
        on_event(&self.seen, self.transport.as_ref().unwrap(), &event);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        on_lost(&self.seen, reason);
    }
}

/// The client side: waits for `220 ready`, asks `STARTTLS`, upgrades on
/// `220 go ahead`, sends a line and closes when its echo is back.
struct StartTlsClient {
    transport: Option<Transport>,
    seen: Shared,
    connector: TlsConnector,
    lines: usize,
    buf: Vec<u8>,
}

impl Protocol for StartTlsClient {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        let transport = self.transport.clone().unwrap();
        self.buf.extend_from_slice(&data);
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = self.buf.drain(..end + 2).collect();
            self.lines += 1;
            match self.lines {
                1 => {
                    assert_eq!(line, b"220 ready\r\n");
                    transport.write("STARTTLS\r\n");
                }
                2 => {
                    assert_eq!(line, b"220 go ahead\r\n");
                    assert!(self.buf.is_empty(), "TLS before the upgrade");
                    let side = StartTls::client(self.connector.clone(), "localhost").unwrap();
                    transport.start_tls(side).unwrap();
                    transport.write("hello over starttls\r\n");
                }
                _ => {
                    self.seen.borrow_mut().data.extend_from_slice(&line);
                    transport.lose_connection();
                }
            }
        }
    }
    fn eof_received(&mut self) -> bool {
        on_eof(&self.seen);
        false
    }
    fn event_received(&mut self, event: Event) {
        on_event(&self.seen, self.transport.as_ref().unwrap(), &event);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        on_lost(&self.seen, reason);
    }
}

// ------------------------------------------------------------ assertions

fn version(info: &TlsInfo) -> ProtocolVersion {
    info.protocol_version.expect("a negotiated version")
}

fn only(seen: &Shared) -> (TlsInfo, Ended) {
    let seen = seen.borrow();
    assert_eq!(seen.tls.len(), 1, "one handshake: {:?}", seen.log);
    assert_eq!(seen.ended.len(), 1, "one connection: {:?}", seen.log);
    (seen.tls[0].clone(), seen.ended[0].clone())
}

fn assert_done(seen: &Shared) {
    let ended = seen.borrow().ended.clone();
    assert!(
        ended.iter().all(|e| matches!(e, Ended::Done)),
        "every connection closed cleanly: {ended:?}"
    );
}

// ---------------------------------------------------- 1. echo, 1.3 and 1.2

/// Python (asyncio) client, twill server: a TLS echo exchange.
fn echo_python_client(pki: &Pki, server: rustls::ServerConfig, expect: ProtocolVersion, py: &str) {
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let port = reactor
        .listen_tls("127.0.0.1:0", server, echo(&seen))
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    let peer = Peer::python(
        "echo-client",
        &[
            "--port",
            &port,
            "--ca",
            &pki.ca_file,
            "--message",
            "hello twill",
        ],
    );
    run(&reactor, &peer);
    assert_eq!(peer.value("echo"), "hello twill");
    assert_eq!(peer.value("version"), py);
    assert_eq!(peer.value("closed"), "");
    let (tls, ended) = only(&seen);
    assert_eq!(version(&tls), expect);
    assert!(tls.cipher_suite.is_some());
    assert_eq!(seen.borrow().data, b"hello twill");
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

#[test]
fn echo_tls13_python_client_twill_server() {
    let pki = Pki::new();
    echo_python_client(
        &pki,
        pki.server_config(),
        ProtocolVersion::TLSv1_3,
        "TLSv1.3",
    );
}

#[test]
fn echo_tls12_python_client_twill_server() {
    // twill's server speaks TLS 1.2 only; Python's client offers both.
    let pki = Pki::new();
    let server = config::server_builder(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.server.chain.clone(), pki.server.key())
        .unwrap();
    echo_python_client(&pki, server, ProtocolVersion::TLSv1_2, "TLSv1.2");
}

/// twill client, Python (asyncio) server with `py_args`: an echo exchange.
fn echo_twill_client(
    client: rustls::ClientConfig,
    pki: &Pki,
    py_args: &[&str],
) -> (Peer, TlsInfo, Ended) {
    let mut args = vec![
        "--cert",
        &pki.server.cert_file,
        "--key",
        &pki.server.key_file,
    ];
    args.extend_from_slice(py_args);
    let peer = Peer::python("echo-server", &args);
    let port = peer.port();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    reactor
        .connect_tls(
            ("127.0.0.1", port),
            "localhost",
            client,
            ask(&seen, "hello python"),
        )
        .unwrap();
    run(&reactor, &peer);
    assert_eq!(seen.borrow().data, b"hello python", "{}", peer.transcript());
    assert_eq!(peer.value("eof"), "", "Python saw twill's close_notify");
    assert_eq!(peer.value("closed"), "");
    let (tls, ended) = only(&seen);
    (peer, tls, ended)
}

#[test]
fn echo_tls13_twill_client_python_server() {
    let pki = Pki::new();
    let (peer, tls, ended) = echo_twill_client(pki.client_config(), &pki, &[]);
    assert_eq!(version(&tls), ProtocolVersion::TLSv1_3);
    assert_eq!(peer.value("version"), "TLSv1.3");
    assert_eq!(tls.peer_certificates, pki.server.chain);
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

#[test]
fn echo_tls12_twill_client_python_server() {
    // Python's server speaks TLS 1.2 only; twill's client offers both.
    let pki = Pki::new();
    let (peer, tls, ended) = echo_twill_client(pki.client_config(), &pki, &["--tls", "1.2"]);
    assert_eq!(version(&tls), ProtocolVersion::TLSv1_2);
    assert_eq!(peer.value("version"), "TLSv1.2");
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

// ------------------------------------------------------------------ 2. ALPN

#[test]
fn alpn_python_client_twill_server() {
    let pki = Pki::new();
    let mut server = pki.server_config();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let port = reactor
        .listen_tls("127.0.0.1:0", server, echo(&seen))
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    let peer = Peer::python(
        "echo-client",
        &["--port", &port, "--ca", &pki.ca_file, "--alpn", "http/1.1"],
    );
    run(&reactor, &peer);
    assert_eq!(peer.value("alpn"), "http/1.1");
    assert_eq!(peer.value("echo"), "hello twill");
    let (tls, _) = only(&seen);
    assert_eq!(tls.alpn_protocol.as_deref(), Some(&b"http/1.1"[..]));
    assert_done(&seen);
}

#[test]
fn alpn_twill_client_python_server() {
    let pki = Pki::new();
    let mut client = pki.client_config();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (peer, tls, ended) = echo_twill_client(client, &pki, &["--alpn", "h2,http/1.1"]);
    assert_eq!(peer.value("alpn"), "http/1.1");
    assert_eq!(tls.alpn_protocol.as_deref(), Some(&b"http/1.1"[..]));
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

// ------------------------------------------------------------------- 3. SNI

#[test]
fn sni_chooses_the_certificate_for_each_name() {
    let pki = Pki::new();
    let resolver = SniResolver::new()
        .add("a.test", pki.a.chain.clone(), pki.a.key())
        .unwrap()
        .add("b.test", pki.b.chain.clone(), pki.b.key())
        .unwrap();
    let server = config::server_config_with_sni(resolver).unwrap();
    let reactor = Reactor::new().unwrap();
    let seen = seen(2);
    let port = reactor
        .listen_tls("127.0.0.1:0", server, echo(&seen))
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    // One connection per name, one after the other; Python checks that
    // the certificate is valid for the name it asked for.
    let peer = Peer::python(
        "echo-client",
        &[
            "--port",
            &port,
            "--ca",
            &pki.ca_file,
            "--server-name",
            "a.test",
            "--server-name",
            "b.test",
        ],
    );
    run(&reactor, &peer);
    assert_eq!(peer.values("echo", 2), ["hello twill", "hello twill"]);
    assert_eq!(peer.values("peer-cn", 2), ["a.test", "b.test"]);
    assert_eq!(peer.values("peer-san", 2), ["DNS:a.test", "DNS:b.test"]);
    assert_eq!(
        peer.values("peer-cert-sha256", 2),
        [pki.a.sha256(), pki.b.sha256()],
        "the DER of each certificate Python got"
    );
    let names: Vec<_> = seen
        .borrow()
        .tls
        .iter()
        .map(|t| t.server_name.clone())
        .collect();
    assert_eq!(
        names,
        [Some("a.test".to_owned()), Some("b.test".to_owned())]
    );
    assert_done(&seen);
}

// ------------------------------------------------------------ 4. mutual TLS

fn client_auth_server(pki: &Pki) -> rustls::ServerConfig {
    config::server_config_with_client_auth(
        pki.server.chain.clone(),
        pki.server.key(),
        vec![pki.ca.clone()],
        true,
    )
    .unwrap()
}

#[test]
fn mutual_tls_python_client_with_certificate() {
    let pki = Pki::new();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let port = reactor
        .listen_tls("127.0.0.1:0", client_auth_server(&pki), echo(&seen))
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    let peer = Peer::python(
        "echo-client",
        &[
            "--port",
            &port,
            "--ca",
            &pki.ca_file,
            "--cert",
            &pki.client.cert_file,
            "--key",
            &pki.client.key_file,
        ],
    );
    run(&reactor, &peer);
    assert_eq!(peer.value("echo"), "hello twill");
    let (tls, ended) = only(&seen);
    // OpenSSL completes the chain it sends from its trust store: the
    // client's certificate, then the CA's.
    assert_eq!(
        tls.peer_certificates,
        [pki.client.chain[0].clone(), pki.ca.clone()],
        "twill sees the client's chain"
    );
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

#[test]
fn mutual_tls_python_client_without_certificate_is_refused() {
    let pki = Pki::new();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let port = reactor
        .listen_tls("127.0.0.1:0", client_auth_server(&pki), echo(&seen))
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    // It only reads: in TLS 1.3 its handshake completes before the server
    // has seen its (empty) certificate, and the refusal arrives as an
    // alert on its first read.
    let peer = Peer::python("read-client", &["--port", &port, "--ca", &pki.ca_file]);
    run(&reactor, &peer);
    let error = peer.value("error");
    assert!(
        error.starts_with("SSLError") && error.contains("CERTIFICATE_REQUIRED"),
        "Python gets TLS's certificate_required alert: {error}"
    );
    let seen = seen.borrow();
    assert!(
        seen.tls.is_empty(),
        "no handshake completed: {:?}",
        seen.log
    );
    assert!(
        matches!(
            seen.ended[..],
            [Ended::Handshake(rustls::Error::NoCertificatesPresented)]
        ),
        "{:?}",
        seen.ended
    );
}

#[test]
fn mutual_tls_twill_client_presents_certificate() {
    let pki = Pki::new();
    let client = config::client_config_with_client_auth(
        vec![pki.ca.clone()],
        pki.client.chain.clone(),
        pki.client.key(),
    )
    .unwrap();
    let (peer, _, ended) = echo_twill_client(client, &pki, &["--client-ca", &pki.ca_file]);
    assert_eq!(peer.value("peer-cn"), "twill client");
    assert_eq!(peer.value("peer-cert-sha256"), pki.client.sha256());
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

// ------------------------------------------------- 5. verification failures

/// twill connects as `name` to a Python server presenting `identity`, and
/// must refuse it: returns rustls's error and what Python was told.
fn refused_by_twill(pki: &Pki, identity: &Identity, name: &str) -> (rustls::Error, String) {
    let peer = Peer::python(
        "handshake-server",
        &["--cert", &identity.cert_file, "--key", &identity.key_file],
    );
    let port = peer.port();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    reactor
        .connect_tls(
            ("127.0.0.1", port),
            name,
            pki.client_config(),
            collect(&seen),
        )
        .unwrap();
    run(&reactor, &peer);
    let seen = seen.borrow();
    assert!(
        seen.tls.is_empty() && seen.data.is_empty(),
        "{:?}",
        seen.log
    );
    match &seen.ended[..] {
        [Ended::Handshake(err)] => (err.clone(), peer.value("error")),
        other => panic!("expected a TlsError::Handshake, got {other:?}"),
    }
}

#[test]
fn twill_client_refuses_unknown_ca() {
    let pki = Pki::new();
    let (err, python) = refused_by_twill(&pki, &pki.rogue, "localhost");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
    assert!(
        python.contains("UNKNOWN_CA"),
        "Python gets the unknown_ca alert: {python}"
    );
}

#[test]
fn twill_client_refuses_wrong_name() {
    let pki = Pki::new();
    let (err, python) = refused_by_twill(&pki, &pki.server, "other.test");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
    assert!(
        python.contains("BAD_CERTIFICATE"),
        "Python gets the bad_certificate alert: {python}"
    );
}

// --------------------------------------------------------------- 6. STARTTLS

#[test]
fn starttls_python_client_twill_server() {
    let pki = Pki::new();
    let acceptor = TlsAcceptor::new(pki.server_config());
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let shared = seen.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_| StartTlsServer {
            transport: None,
            seen: shared.clone(),
            acceptor: acceptor.clone(),
            upgraded: false,
            buf: Vec::new(),
        })
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    let peer = Peer::python(
        "starttls-client",
        &[
            "--port",
            &port,
            "--ca",
            &pki.ca_file,
            "--message",
            "hello over starttls",
        ],
    );
    run(&reactor, &peer);
    assert_eq!(peer.value("greeting"), "220 ready");
    assert_eq!(peer.value("answer"), "220 go ahead");
    assert_eq!(peer.value("version"), "TLSv1.3");
    assert_eq!(peer.value("reply"), "echo: hello over starttls");
    assert_eq!(peer.value("closed"), "");
    let (tls, ended) = only(&seen);
    assert_eq!(version(&tls), ProtocolVersion::TLSv1_3);
    assert_eq!(seen.borrow().data, b"hello over starttls\r\n");
    assert_eq!(seen.borrow().log, ["handshake", "eof", "lost"]);
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

#[test]
fn starttls_twill_client_python_server() {
    let pki = Pki::new();
    let peer = Peer::python(
        "starttls-server",
        &[
            "--cert",
            &pki.server.cert_file,
            "--key",
            &pki.server.key_file,
        ],
    );
    let port = peer.port();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let shared = seen.clone();
    let connector = TlsConnector::new(pki.client_config());
    reactor
        .connect_tcp(("127.0.0.1", port), move |_| StartTlsClient {
            transport: None,
            seen: shared.clone(),
            connector: connector.clone(),
            lines: 0,
            buf: Vec::new(),
        })
        .unwrap();
    run(&reactor, &peer);
    assert_eq!(peer.value("command"), "STARTTLS");
    assert_eq!(peer.value("version"), "TLSv1.3");
    assert_eq!(peer.value("line"), "hello over starttls");
    assert_eq!(peer.value("eof"), "", "Python saw twill's close_notify");
    let (tls, ended) = only(&seen);
    assert_eq!(version(&tls), ProtocolVersion::TLSv1_3);
    assert_eq!(tls.peer_certificates, pki.server.chain);
    assert_eq!(seen.borrow().data, b"echo: hello over starttls\r\n");
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

// --------------------------------------------------------- 7. 16 MiB each way

const BULK: usize = 16 * 1024 * 1024;
/// What twill writes at a time.
const PIECE: usize = 64 * 1024;

/// Python sends `random.Random(BULK).randbytes(BULK)`; twill sends its
/// pattern. Each side hashes what it got; the hashes must cross-match.
fn check_bulk(peer: &Peer, seen: &Shared) {
    let flow = &seen.borrow().flow;
    let (got, got_sha) = peer
        .value("received")
        .split_once(' ')
        .map(|(n, sha)| (n.to_owned(), sha.to_owned()))
        .unwrap();
    assert_eq!(got, BULK.to_string(), "Python got all of twill's bytes");
    assert_eq!(Some(got_sha), flow.sent_sha256, "Python got twill's bytes");
    assert_eq!(flow.received, BULK, "twill got all of Python's bytes");
    assert_eq!(
        Some(peer.value("sent-sha256")),
        flow.received_sha256,
        "twill got Python's bytes"
    );
    assert_eq!(
        peer.value("eof"),
        "clean",
        "Python saw twill's close_notify"
    );
    assert!(
        flow.pauses > 0 && flow.resumes > 0,
        "flow control worked: {flow:?}"
    );
    assert_done(seen);
}

#[test]
fn large_transfer_python_client_twill_server() {
    let pki = Pki::new();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let shared = seen.clone();
    let port = reactor
        .listen_tls("127.0.0.1:0", pki.server_config(), move |_| {
            Bulk::new(&shared, BULK, PIECE, BULK)
        })
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    let peer = Peer::python(
        "bulk-client",
        &[
            "--port",
            &port,
            "--ca",
            &pki.ca_file,
            "--size",
            &BULK.to_string(),
        ],
    );
    let started = Instant::now();
    run(&reactor, &peer);
    eprintln!("16 MiB each way, Python client: {:?}", started.elapsed());
    check_bulk(&peer, &seen);
}

#[test]
fn large_transfer_twill_client_python_server() {
    let pki = Pki::new();
    let peer = Peer::python(
        "bulk-server",
        &[
            "--cert",
            &pki.server.cert_file,
            "--key",
            &pki.server.key_file,
            "--size",
            &BULK.to_string(),
        ],
    );
    let port = peer.port();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let shared = seen.clone();
    reactor
        .connect_tls(
            ("127.0.0.1", port),
            "localhost",
            pki.client_config(),
            move |_| Bulk::new(&shared, BULK, PIECE, BULK),
        )
        .unwrap();
    let started = Instant::now();
    run(&reactor, &peer);
    eprintln!("16 MiB each way, Python server: {:?}", started.elapsed());
    check_bulk(&peer, &seen);
}

// ------------------------------------------ 8. close_notify and truncation

/// twill's client reads what a Python server sends before it closes in
/// the way `how` says.
fn closed_by_python(how: &str) -> (Peer, Shared) {
    let pki = Pki::new();
    let peer = Peer::python(
        "close-server",
        &[
            "--cert",
            &pki.server.cert_file,
            "--key",
            &pki.server.key_file,
            "--how",
            how,
            "--message",
            "last words",
        ],
    );
    let port = peer.port();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    reactor
        .connect_tls(
            ("127.0.0.1", port),
            "localhost",
            pki.client_config(),
            collect(&seen),
        )
        .unwrap();
    run(&reactor, &peer);
    assert_eq!(seen.borrow().data, b"last words\n");
    (peer, seen)
}

#[test]
fn close_notify_from_python_is_eof_then_a_clean_close() {
    let (peer, seen) = closed_by_python("unwrap");
    let seen = seen.borrow();
    assert_eq!(seen.log, ["handshake", "eof", "lost"]);
    assert_eq!(
        seen.data_at_eof,
        Some(seen.data.len()),
        "eof after all the data"
    );
    assert!(matches!(seen.ended[..], [Ended::Done]), "{:?}", seen.ended);
    // Python's unwrap returns once twill answered with its close_notify.
    assert_eq!(peer.value("unwrapped"), "");
}

#[test]
fn truncation_by_python_is_reported_as_lost() {
    let (peer, seen) = closed_by_python("shutdown");
    assert_eq!(peer.value("cut"), "");
    let seen = seen.borrow();
    assert_eq!(
        seen.log,
        ["handshake", "lost"],
        "no eof_received without close_notify"
    );
    assert!(
        matches!(seen.ended[..], [Ended::Truncated]),
        "{:?}",
        seen.ended
    );
}

/// Writes a line and closes at once (before the handshake completes; both
/// go right after it).
struct Goodbye {
    transport: Option<Transport>,
    seen: Shared,
}

impl Protocol for Goodbye {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        transport.write("goodbye from twill\n");
        transport.lose_connection();
    }
    fn data_received(&mut self, _: Bytes) {}
    fn event_received(&mut self, event: Event) {
        on_event(&self.seen, self.transport.as_ref().unwrap(), &event);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        on_lost(&self.seen, reason);
    }
}

#[test]
fn lose_connection_sends_close_notify_to_python() {
    let pki = Pki::new();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let shared = seen.clone();
    let port = reactor
        .listen_tls("127.0.0.1:0", pki.server_config(), move |_| Goodbye {
            transport: None,
            seen: shared.clone(),
        })
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    // Ragged EOFs are not suppressed: without close_notify, Python's read
    // raises SSLEOFError instead of returning b"".
    let mut peer = Peer::python("read-client", &["--port", &port, "--ca", &pki.ca_file]);
    run(&reactor, &peer);
    assert_eq!(peer.value("text"), "goodbye from twill");
    assert_eq!(peer.value("eof"), "clean");
    assert!(peer.wait_exit().success());
    assert!(
        !peer.transcript().contains("error"),
        "{}",
        peer.transcript()
    );
    assert_done(&seen);
}

// ------------------------------------------------- 9. a slow reader over TLS

/// More than the kernel's buffers take (a sender's grows to 4 MiB on
/// Linux by default), so that twill's own buffer has to hold back.
const STREAM: usize = 16 * 1024 * 1024;
/// How long nothing goes to the kernel before the slow reader reads.
const STALL: Duration = Duration::from_millis(300);
const HIGH: usize = 64 * 1024;
const LOW: usize = 16 * 1024;

#[test]
fn slow_python_reader_keeps_the_server_buffer_bounded() {
    let pki = Pki::new();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let shared = seen.clone();
    let port = reactor
        .listen_tls("127.0.0.1:0", pki.server_config(), move |_| Bulk {
            limits: Some((HIGH, LOW)),
            ..Bulk::new(&shared, STREAM, PIECE, 0)
        })
        .unwrap();
    let port = port.host().port().unwrap().to_string();
    // A small receive buffer, and no reading until it gets `go`.
    let mut peer = Peer::python(
        "read-client",
        &[
            "--port",
            &port,
            "--ca",
            &pki.ca_file,
            "--rcvbuf",
            "16384",
            "--wait-stdin",
        ],
    );
    let mut stdin = peer.take_stdin();
    // Once nothing has gone to the kernel for STALL: let it read.
    seen.borrow_mut().release = Some(Box::new(move || {
        writeln!(stdin, "go").expect("tell the reader to read");
    }));
    run(&reactor, &peer);
    let flow = &seen.borrow().flow;
    // One write: a piece, encrypted into records of at most 16 KiB plus
    // 22 bytes each (TLS 1.3: header, content type, tag; 64 allowed), and
    // up to 1 KiB of post-handshake messages (session tickets) at first.
    let one_write = PIECE + PIECE.div_ceil(16 * 1024) * 64 + 1024;
    assert!(
        flow.pauses > 0,
        "the slow reader paused the server: {flow:?}"
    );
    assert!(
        flow.max_buffered <= HIGH + one_write,
        "at most the high watermark plus one write buffered: {flow:?}"
    );
    let (written, buffered) = flow.at_release.unwrap_or_else(|| {
        panic!(
            "the kernel took the whole stream without a stall (is net.ipv4.tcp_wmem's \
                 maximum far above Linux's 4 MiB?): {flow:?}"
        )
    });
    assert!(
        written < STREAM && buffered > 0 && buffered <= HIGH + one_write,
        "held back mid-stream, and bounded, while the reader did not read: {flow:?}"
    );
    assert_eq!(peer.value("reading"), "go");
    assert_eq!(
        peer.value("received"),
        format!("{STREAM} {}", flow.sent_sha256.clone().unwrap()),
        "the reader got everything"
    );
    assert_eq!(peer.value("eof"), "clean");
    assert!(peer.wait_exit().success());
    assert_done(&seen);
}

// ------------------------------------------------------ 10. openssl peers

/// `openssl s_client` sends a line to twill's server, which answers and
/// closes.
fn s_client_to_twill(version_flag: &str, expect: ProtocolVersion, openssl_name: &str) {
    let pki = Pki::new();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    let shared = seen.clone();
    let port = reactor
        .listen_tls("127.0.0.1:0", pki.server_config(), move |_| LineReply {
            transport: None,
            seen: shared.clone(),
        })
        .unwrap();
    let connect = format!("127.0.0.1:{}", port.host().port().unwrap());
    // -ign_eof: stay after stdin's end, until twill closes.
    let mut peer = Peer::openssl(&[
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-CAfile",
        &pki.ca_file,
        "-verify_return_error",
        "-ign_eof",
        version_flag,
    ]);
    peer.write_line("hello from s_client");
    peer.close_stdin();
    run(&reactor, &peer);
    peer.line_with("twill heard: hello from s_client");
    peer.line_with(&format!("New, {openssl_name}, Cipher is"));
    peer.line_with("Verify return code: 0 (ok)");
    assert!(peer.wait_exit().success(), "{}", peer.transcript());
    let (tls, ended) = only(&seen);
    assert_eq!(version(&tls), expect);
    assert_eq!(tls.server_name.as_deref(), Some("localhost"));
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

#[test]
fn openssl_s_client_twill_server_tls13() {
    if have_openssl("openssl_s_client_twill_server_tls13") {
        s_client_to_twill("-tls1_3", ProtocolVersion::TLSv1_3, "TLSv1.3");
    }
}

#[test]
fn openssl_s_client_twill_server_tls12() {
    if have_openssl("openssl_s_client_twill_server_tls12") {
        s_client_to_twill("-tls1_2", ProtocolVersion::TLSv1_2, "TLSv1.2");
    }
}

/// twill's client sends a line to `openssl s_server -rev`, reads it back
/// reversed, and closes.
fn twill_to_s_server(version_flag: &str, expect: ProtocolVersion, openssl_name: &str) {
    let pki = Pki::new();
    let mut peer = Peer::openssl(&[
        "s_server",
        "-accept",
        "127.0.0.1:0",
        "-naccept",
        "1",
        "-rev",
        "-cert",
        &pki.server.cert_file,
        "-key",
        &pki.server.key_file,
        version_flag,
    ]);
    let port = peer.port();
    let reactor = Reactor::new().unwrap();
    let seen = seen(1);
    reactor
        .connect_tls(
            ("127.0.0.1", port),
            "localhost",
            pki.client_config(),
            ask(&seen, "hello s_server\n"),
        )
        .unwrap();
    run(&reactor, &peer);
    assert_eq!(
        seen.borrow().data,
        b"revres_s olleh\n",
        "{}",
        peer.transcript()
    );
    peer.line_with(&format!("Protocol version: {openssl_name}"));
    peer.line_with("CONNECTION CLOSED");
    assert!(peer.wait_exit().success(), "{}", peer.transcript());
    let (tls, ended) = only(&seen);
    assert_eq!(version(&tls), expect);
    assert_eq!(tls.peer_certificates, pki.server.chain);
    assert!(matches!(ended, Ended::Done), "{ended:?}");
}

#[test]
fn twill_client_openssl_s_server_tls13() {
    if have_openssl("twill_client_openssl_s_server_tls13") {
        twill_to_s_server("-tls1_3", ProtocolVersion::TLSv1_3, "TLSv1.3");
    }
}

#[test]
fn twill_client_openssl_s_server_tls12() {
    if have_openssl("twill_client_openssl_s_server_tls12") {
        twill_to_s_server("-tls1_2", ProtocolVersion::TLSv1_2, "TLSv1.2");
    }
}
