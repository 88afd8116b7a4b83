//! The servers under test: how each is started, and a handle on a running
//! one.
//!
//! A server is any program that takes its listen address where its command
//! line says [`ADDR`], listens there, and reports `listening on ADDR` (the
//! bound address) on stderr or stdout when ready, possibly after a log
//! prefix. [`RunningServer::start`] starts one on `127.0.0.1:0`, waits for
//! that line and kills the server when dropped.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{cli_err, parse_listening_line, CliError};

/// The placeholder in [`ServerSpec::args`] replaced by the listen address.
pub const ADDR: &str = "{addr}";

/// The placeholders in a TLS server's [`ServerSpec::args`] that stand for
/// its certificate chain and private key (PEM files); see
/// [`ServerSpec::with_tls_files`].
pub const CERT: &str = "{cert}";
pub const KEY: &str = "{key}";

/// The placeholder, inside any of [`ServerSpec::args`], replaced by a
/// Unix socket path (`unix:{path}` becomes `unix:/tmp/…/x.sock`); see
/// [`ProbedServer`].
pub const PATH: &str = "{path}";

/// How to start one server.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// The name in reports (`twill`, `tokio_ct`, `twisted`, …).
    pub name: String,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments; [`ADDR`] stands for the listen address.
    pub args: Vec<OsString>,
}

impl ServerSpec {
    /// A server run as `program ADDR extra..`.
    pub fn new(name: &str, program: impl Into<PathBuf>, extra: &[&str]) -> Self {
        let mut args = vec![OsString::from(ADDR)];
        args.extend(extra.iter().map(OsString::from));
        ServerSpec {
            name: name.to_string(),
            program: program.into(),
            args,
        }
    }

    /// A Python server run as `python script ADDR extra..`.
    pub fn python(name: &str, python: &Path, script: &Path, extra: &[&str]) -> Self {
        let mut spec = ServerSpec::new(name, python, extra);
        spec.args.insert(0, script.into());
        spec
    }

    /// This spec with `arg` added at the end.
    pub fn with_arg(&self, arg: &str) -> Self {
        let mut spec = self.clone();
        spec.args.push(arg.into());
        spec
    }

    /// This spec with the paths `cert` and `key` in place of [`CERT`] and
    /// [`KEY`].
    pub fn with_tls_files(&self, cert: &Path, key: &Path) -> Self {
        let mut spec = self.clone();
        for a in &mut spec.args {
            if a == CERT {
                *a = cert.into();
            } else if a == KEY {
                *a = key.into();
            }
        }
        spec
    }

    /// Whether the program (and a Python script, if any) exists.
    pub fn is_available(&self) -> bool {
        self.program.is_file()
            && self
                .args
                .iter()
                .filter(|a| a.to_string_lossy().ends_with(".py"))
                .all(|a| Path::new(a).is_file())
    }
}

/// The echo servers the suite knows, by name, with their binaries looked up
/// in the release directory `target_dir`:
///
/// | name | what |
/// |---|---|
/// | `twill` | twill's `echo_server` example: a `Protocol` writing back what it gets |
/// | `twill_async` | twill's `async_echo` example: a task per connection on `twill::stream`, `read` / `write` / `drain` |
/// | `twill_codec` | twill-protocols' `frame_echo_server`: length-field decoder + prepender |
/// | `raw_polling` | a hand-written level-triggered `polling` loop: the ceiling |
/// | `async_io` | one task per connection on `async-io` + `async-executor` |
/// | `tokio_ct` / `tokio_mt` | one task per connection on tokio's current-thread / multi-thread runtime |
/// | `asyncio` / `uvloop` | an asyncio `Protocol`, on the default loop / on uvloop |
/// | `asyncio_streams` / `uvloop_streams` | asyncio's `start_server` with `read` / `write` / `drain`, on the default loop / on uvloop |
/// | `twisted` | a Twisted `Protocol` on the epoll reactor |
pub fn echo_servers(target_dir: &Path) -> Vec<ServerSpec> {
    let python = venv_python(target_dir);
    let py = python_dir();
    vec![
        ServerSpec::new("twill", target_dir.join("examples/echo_server"), &[]),
        ServerSpec::new("twill_async", target_dir.join("examples/async_echo"), &[]),
        ServerSpec::new(
            "twill_codec",
            target_dir.join("examples/frame_echo_server"),
            &[],
        ),
        ServerSpec::new("raw_polling", target_dir.join("raw_polling_echo"), &[]),
        ServerSpec::new("async_io", target_dir.join("async_io_echo"), &[]),
        ServerSpec::new(
            "tokio_ct",
            target_dir.join("examples/tokio_echo"),
            &["current_thread"],
        ),
        ServerSpec::new(
            "tokio_mt",
            target_dir.join("examples/tokio_echo"),
            &["multi_thread"],
        ),
        ServerSpec::python("asyncio", &python, &py.join("echo_asyncio.py"), &[]),
        ServerSpec::python(
            "uvloop",
            &python,
            &py.join("echo_asyncio.py"),
            &["--uvloop"],
        ),
        ServerSpec::python(
            "asyncio_streams",
            &python,
            &py.join("echo_asyncio_streams.py"),
            &[],
        ),
        ServerSpec::python(
            "uvloop_streams",
            &python,
            &py.join("echo_asyncio_streams.py"),
            &["--uvloop"],
        ),
        ServerSpec::python("twisted", &python, &py.join("echo_twisted.py"), &[]),
    ]
}

/// The TLS echo servers `tls_bench` compares, each run as
/// `program ADDR CERT KEY [flags]` (a `--bulk` flag makes each a bulk
/// sender), with their binaries looked up in `target_dir`:
///
/// | name | what |
/// |---|---|
/// | `twill` | twill's `tls_echo_server` example: `echo_server`'s protocol inside `listen_tls` |
/// | `twill_plain` | the same program with `--plain`: no TLS, what the layer costs |
/// | `tokio_rustls` | `tokio_rustls_echo`: tokio-rustls on the current-thread runtime, `tokio_echo`'s shape |
/// | `tokio_plain` | the same with `--plain` |
/// | `asyncio_ssl` / `uvloop_ssl` | an asyncio `Protocol` with the standard library's ssl (OpenSSL); default loop / uvloop |
pub fn tls_servers(target_dir: &Path) -> Vec<ServerSpec> {
    let python = venv_python(target_dir);
    let script = python_dir().join("echo_asyncio_ssl.py");
    let tls = |name: &str, program: PathBuf, extra: &[&str]| {
        let mut args = vec![CERT, KEY];
        args.extend(extra);
        ServerSpec::new(name, program, &args)
    };
    let twill = target_dir.join("examples/tls_echo_server");
    let tokio = target_dir.join("examples/tokio_rustls_echo");
    let asyncio = ServerSpec::python("asyncio_ssl", &python, &script, &[CERT, KEY]);
    let mut uvloop = asyncio.with_arg("--uvloop");
    uvloop.name = "uvloop_ssl".into();
    vec![
        tls("twill", twill.clone(), &[]),
        tls("twill_plain", twill, &["--plain"]),
        tls("tokio_rustls", tokio.clone(), &[]),
        tls("tokio_plain", tokio, &["--plain"]),
        asyncio,
        uvloop,
    ]
}

/// The hello-world HTTP/1.1 servers `http_bench` compares, each run as
/// `program ADDR`, with their binaries looked up in `target_dir`; every
/// one answers `GET /` with `Hello, World!` and a `Content-Length`:
///
/// | name | what |
/// |---|---|
/// | `twill` | `twill_http_hello`: `twill_protocols::http::HttpServer` with a handler returning the body |
/// | `hyper` | `hyper_hello`: hyper 1.x's HTTP/1 connection on tokio's current-thread runtime, `pipeline_flush(true)` |
/// | `twisted_web` | a `twisted.web` `Resource` served by `Site`, on the epoll reactor |
/// | `aiohttp` | an `aiohttp.web.Application` with one route, on asyncio's default loop |
/// | `aiohttp_uvloop` | the same application on uvloop |
pub fn http_servers(target_dir: &Path) -> Vec<ServerSpec> {
    let python = venv_python(target_dir);
    let py = python_dir();
    let aiohttp = ServerSpec::python("aiohttp", &python, &py.join("http_aiohttp.py"), &[]);
    let mut aiohttp_uvloop = aiohttp.with_arg("--uvloop");
    aiohttp_uvloop.name = "aiohttp_uvloop".into();
    vec![
        ServerSpec::new("twill", target_dir.join("examples/twill_http_hello"), &[]),
        ServerSpec::new("hyper", target_dir.join("examples/hyper_hello"), &[]),
        ServerSpec::python("twisted_web", &python, &py.join("http_twisted.py"), &[]),
        aiohttp,
        aiohttp_uvloop,
    ]
}

/// The WebSocket echo servers `ws_bench` compares, each run as
/// `program ADDR`, with their binaries looked up in `target_dir`; every
/// one opens a WebSocket on `GET /` and sends each message back:
///
/// | name | what |
/// |---|---|
/// | `twill` | `twill_ws_echo`: twill's HTTP server and `websocket::accept` with an echoing handler, on its WebSocket API |
/// | `twill_session` | `twill_ws_echo --session`: the same handshake by hand, the upgraded connection a `Protocol` around a `WebSocketSession` (the codec layer) |
/// | `tungstenite` | `tungstenite_echo`: tokio-tungstenite on tokio's current-thread runtime, its defaults |
/// | `tungstenite_4k` | the same with a 4 KiB read buffer instead of its default 128 KiB, which it zero-fills as it reads |
pub fn ws_servers(target_dir: &Path) -> Vec<ServerSpec> {
    let twill = target_dir.join("examples/twill_ws_echo");
    let tungstenite = target_dir.join("examples/tungstenite_echo");
    vec![
        ServerSpec::new("twill", twill.clone(), &[]),
        ServerSpec::new("twill_session", twill, &["--session"]),
        ServerSpec::new("tungstenite", tungstenite.clone(), &[]),
        ServerSpec::new("tungstenite_4k", tungstenite, &["--read-buffer", "4096"]),
    ]
}

/// The UDP echo servers `udp_bench` compares, each run as `program ADDR`
/// (an address the runner picked: they need print nothing), with their
/// binaries looked up in `target_dir`:
///
/// | name | what |
/// |---|---|
/// | `twill` | twill's `udp_echo` example: every datagram sent back to its sender |
/// | `tokio_ct` | `tokio_udp_echo`: one `UdpSocket`, a `recv_from` / `send_to` loop on the current-thread runtime |
/// | `std_blocking` | `std_udp_echo`: the same loop on a blocking `std::net::UdpSocket`: the ceiling |
/// | `asyncio` / `uvloop` | an asyncio `DatagramProtocol` answering with `sendto`; default loop / uvloop |
pub fn udp_servers(target_dir: &Path) -> Vec<ServerSpec> {
    let python = venv_python(target_dir);
    let script = python_dir().join("udp_echo_asyncio.py");
    vec![
        ServerSpec::new("twill", target_dir.join("examples/udp_echo"), &[]),
        ServerSpec::new("tokio_ct", target_dir.join("examples/tokio_udp_echo"), &[]),
        ServerSpec::new("std_blocking", target_dir.join("std_udp_echo"), &[]),
        ServerSpec::python("asyncio", &python, &script, &[]),
        ServerSpec::python("uvloop", &python, &script, &["--uvloop"]),
    ]
}

/// The stream echo servers `unix_bench` compares, with their binaries
/// looked up in `target_dir`. Those over a Unix socket take its path where
/// their arguments say [`PATH`]; those over TCP are `echo_bench`'s:
///
/// | name | what |
/// |---|---|
/// | `twill_unix` | twill's `echo_server` example on `unix:PATH` (a Twisted endpoint string) |
/// | `twill_tcp` | the same program on `127.0.0.1:PORT` |
/// | `tokio_unix` | `tokio_unix_echo`: `tokio_echo`'s shape on a `UnixListener`, current-thread runtime |
/// | `tokio_tcp` | `tokio_echo` on the current-thread runtime |
pub fn unix_servers(target_dir: &Path) -> Vec<ServerSpec> {
    let twill = target_dir.join("examples/echo_server");
    let on_path = |name: &str, program: PathBuf, arg: &str| ServerSpec {
        name: name.to_string(),
        program,
        args: vec![OsString::from(arg)],
    };
    vec![
        on_path("twill_unix", twill.clone(), "unix:{path}"),
        ServerSpec::new("twill_tcp", twill, &[]),
        on_path(
            "tokio_unix",
            target_dir.join("examples/tokio_unix_echo"),
            PATH,
        ),
        ServerSpec::new(
            "tokio_tcp",
            target_dir.join("examples/tokio_echo"),
            &["current_thread"],
        ),
    ]
}

/// Whether `spec` listens on a Unix socket (its arguments name a [`PATH`]).
pub fn on_unix_socket(spec: &ServerSpec) -> bool {
    spec.args.iter().any(|a| a.to_string_lossy().contains(PATH))
}

/// In a smoke run (CI's check), a twill server that is not built is an
/// error rather than a skip: `known` is the runner's list, `list` its
/// `--servers`, `twill` the names of twill's servers in it.
pub fn require_twill_in_smoke(
    known: &[ServerSpec],
    list: Option<&str>,
    twill: &[&str],
) -> Result<(), CliError> {
    let wanted = |name: &str| list.is_none_or(|l| l.split(',').any(|item| item == name));
    for spec in known {
        if twill.contains(&spec.name.as_str()) && wanted(&spec.name) && !spec.is_available() {
            return Err(cli_err!(
                "server {} is not built ({} not found), and a smoke run must measure twill \
                 (bash benches/run.sh builds it once its source is there)",
                spec.name,
                spec.program.display()
            ));
        }
    }
    Ok(())
}

/// The release directory the binaries are in: `--target-dir` if given,
/// else `$TWILL_BENCH_TARGET_DIR`, else the directory this program is in.
pub fn target_dir(arg: Option<String>) -> PathBuf {
    arg.map(PathBuf::from)
        .or_else(|| std::env::var_os("TWILL_BENCH_TARGET_DIR").map(PathBuf::from))
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

/// The servers a run uses: those of `known` named in `list`
/// (comma-separated; `NAME=PATH` adds any other program), or all of `known`
/// without a list. One that is not built is skipped with a warning from
/// `program`; none left is an error.
pub fn select_servers(
    program: &str,
    list: Option<&str>,
    known: Vec<ServerSpec>,
) -> Result<Vec<ServerSpec>, CliError> {
    let wanted: Vec<ServerSpec> = match list {
        None => known,
        Some(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|item| match item.split_once('=') {
                Some((name, path)) => Ok(ServerSpec::new(name, path, &[])),
                None => known
                    .iter()
                    .find(|s| s.name == item)
                    .cloned()
                    .ok_or_else(|| cli_err!("unknown server {item:?} (use NAME=PATH)")),
            })
            .collect::<Result<_, _>>()?,
    };
    let mut servers = Vec::new();
    for spec in wanted {
        if spec.is_available() {
            servers.push(spec);
        } else {
            eprintln!(
                "{program}: warning: skipping {}: {} not found (`bash benches/run.sh` builds \
                 every server; benches/venv.sh makes the Python virtualenv)",
                spec.name,
                spec.program.display()
            );
        }
    }
    if servers.is_empty() {
        return Err(cli_err!(
            "no server found (build them first: bash benches/run.sh)"
        ));
    }
    Ok(servers)
}

/// Where the suite's Python servers are.
pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py")
}

/// The Python interpreter of the suite's virtualenv (which `venv.sh`
/// creates with Twisted and uvloop installed): `$TWILL_BENCH_PYTHON`, else
/// `twisted-venv/bin/python` next to the release directory `target_dir`.
pub fn venv_python(target_dir: &Path) -> PathBuf {
    match std::env::var_os("TWILL_BENCH_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => target_dir
            .parent()
            .unwrap_or(Path::new("target"))
            .join("twisted-venv/bin/python"),
    }
}

/// Kills and reaps a child process when dropped.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A started server a load generator runs against
/// ([`Loader::run`](crate::measure::Loader::run)).
pub trait ServerProcess {
    /// Its process id.
    fn pid(&self) -> u32;
    /// The exit status, if it has exited.
    fn exited(&mut self) -> Option<ExitStatus>;
}

impl ServerProcess for RunningServer {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn exited(&mut self) -> Option<ExitStatus> {
        RunningServer::exited(self)
    }
}

impl ServerProcess for ProbedServer {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn exited(&mut self) -> Option<ExitStatus> {
        ProbedServer::exited(self)
    }
}

/// A server started by [`RunningServer::start`]; killed when dropped.
pub struct RunningServer {
    child: Reaper,
    /// Its process id.
    pub pid: u32,
    /// The address it reported.
    pub addr: SocketAddr,
    /// Its output lines (stderr and stdout), still being read.
    pub output: mpsc::Receiver<String>,
}

impl RunningServer {
    /// Starts `spec` on `127.0.0.1:0` (with `RUST_LOG=info`) and waits up to
    /// `ready_timeout` for its `listening on` line.
    pub fn start(spec: &ServerSpec, ready_timeout: Duration) -> Result<Self, String> {
        let (mut child, pid, output) = spawn(spec, Some(OsStr::new("127.0.0.1:0")), None)?;
        let mut log: Vec<String> = Vec::new();
        let ready_by = Instant::now() + ready_timeout;
        let addr = loop {
            match output.recv_timeout(ready_by.saturating_duration_since(Instant::now())) {
                Ok(l) => match parse_listening_line(&l) {
                    Some(a) => break a,
                    None if log.len() < 20 => log.push(l),
                    None => {}
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no 'listening on' line within {ready_timeout:?}; its output: {}",
                        log.join(" | ")
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.0.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!(
                        "server exited before it was ready ({status}); its output: {}",
                        log.join(" | ")
                    ));
                }
            }
        };
        if !addr.ip().is_loopback() {
            return Err(format!("server listens on non-loopback {addr}; refusing"));
        }
        Ok(RunningServer {
            child,
            pid,
            addr,
            output,
        })
    }

    /// The exit status, if the server has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.0.try_wait().ok().flatten()
    }
}

/// Starts `spec` with `addr` in place of [`ADDR`] and `path` in place of
/// [`PATH`] inside any argument, each if given (`RUST_LOG=info`, output
/// forwarded line by line).
fn spawn(
    spec: &ServerSpec,
    addr: Option<&OsStr>,
    path: Option<&Path>,
) -> Result<(Reaper, u32, mpsc::Receiver<String>), String> {
    let args = spec.args.iter().map(|a| {
        if let (Some(addr), true) = (addr, a == ADDR) {
            return addr.to_os_string();
        }
        match (path, a.to_str()) {
            (Some(path), Some(s)) if s.contains(PATH) => {
                OsString::from(s.replace(PATH, &path.to_string_lossy()))
            }
            _ => a.clone(),
        }
    });
    let mut child = Command::new(&spec.program)
        .args(args)
        .env("RUST_LOG", "info")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
    let pid = child.id();
    let (tx, output) = mpsc::channel();
    forward_lines(child.stderr.take().expect("piped stderr"), tx.clone());
    forward_lines(child.stdout.take().expect("piped stdout"), tx);
    Ok((Reaper(child), pid, output))
}

/// Where a [`ProbedServer`] listens: the runner picks the address, since
/// these servers need not say where they are.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// A UDP port on loopback, ready once a probe datagram comes back.
    Udp(SocketAddr),
    /// A Unix stream socket, ready once it accepts a connection.
    Unix(PathBuf),
}

/// A server started on an [`Endpoint`] the runner chose and found ready
/// by probing it rather than by a `listening on` line; killed when
/// dropped.
pub struct ProbedServer {
    child: Reaper,
    /// Its process id.
    pub pid: u32,
}

impl ProbedServer {
    /// Starts `spec` on `endpoint` (a UDP address in place of [`ADDR`], a
    /// socket path in place of [`PATH`]) and probes it until it answers,
    /// for up to `ready_timeout`.
    pub fn start(
        spec: &ServerSpec,
        endpoint: &Endpoint,
        ready_timeout: Duration,
    ) -> Result<Self, String> {
        let (mut child, pid, output) = match endpoint {
            Endpoint::Udp(addr) => spawn(spec, Some(OsStr::new(&addr.to_string())), None)?,
            Endpoint::Unix(path) => spawn(spec, None, Some(path))?,
        };
        let mut log: Vec<String> = Vec::new();
        let ready_by = Instant::now() + ready_timeout;
        loop {
            while let Ok(l) = output.try_recv() {
                if log.len() < 20 {
                    log.push(l);
                }
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                return Err(format!(
                    "server exited before it was ready ({status}); its output: {}",
                    log.join(" | ")
                ));
            }
            let ready = match endpoint {
                Endpoint::Udp(addr) => udp_echoes(*addr),
                Endpoint::Unix(path) => UnixStream::connect(path).is_ok(),
            };
            if ready {
                return Ok(ProbedServer { child, pid });
            }
            if Instant::now() >= ready_by {
                return Err(format!(
                    "{endpoint:?} did not answer within {ready_timeout:?}; its output: {}",
                    log.join(" | ")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status, if the server has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.0.try_wait().ok().flatten()
    }
}

/// Whether a datagram sent to `addr` comes back within 50 ms.
fn udp_echoes(addr: SocketAddr) -> bool {
    const PROBE: &[u8] = b"twill-bench readiness probe";
    let attempt = || -> io::Result<bool> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        socket.send(PROBE)?;
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf)?;
        Ok(&buf[..n] == PROBE)
    };
    attempt().unwrap_or(false)
}

/// A free UDP port on loopback, for a server to bind next.
pub fn free_udp_addr() -> io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// Reads a pipe line by line on a helper thread (so the child never blocks
/// on a full pipe) and sends the lines to `tx`.
pub fn forward_lines(pipe: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            // Once nobody listens, keep draining so the child never blocks
            // on a full pipe.
            let _ = tx.send(line);
        }
    });
}

/// The resident memory of process `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))
}

/// Parses the `VmRSS:` line of `/proc/PID/status` into bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss() {
        let s = "Name:\techo\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(s), Some(2048 * 1024));
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn tls_spec_gets_its_files() {
        let s = ServerSpec::new("x", "/bin/x", &[CERT, KEY, "--plain"])
            .with_tls_files(Path::new("/c.pem"), Path::new("/k.pem"))
            .with_arg("--bulk");
        assert_eq!(s.args, [ADDR, "/c.pem", "/k.pem", "--plain", "--bulk"]);
    }

    #[test]
    fn python_spec_puts_the_script_first() {
        let s = ServerSpec::python("x", Path::new("/py"), Path::new("/s.py"), &["--uvloop"]);
        assert_eq!(s.args, ["/s.py", ADDR, "--uvloop"]);
    }
}
