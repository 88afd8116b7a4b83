//! twill's HTTP/1.1 server ([`HttpServer`]) against real clients over
//! 127.0.0.1: `curl` (keep-alive, uploads plain, chunked and with
//! `Expect: 100-continue`, a 32 MiB download, ranges, `If-Modified-Since`,
//! HTTP/1.0, `HEAD`) and Python's `http.client` and raw sockets
//! (`http_peer.py`: keep-alive, chunked bodies both ways, large bodies
//! checked by SHA-256, ten pipelined requests), plus the `http_server`
//! example run as a process.
//!
//! Without `curl` on the PATH the curl tests print "skipped: no curl" and
//! pass. The Python interpreter is `$TWILL_TWISTED_PYTHON` if set, else
//! `target/twisted-venv/bin/python` under the workspace root (only the
//! standard library is used); with neither, the Python tests print
//! "skipped: no python" and pass.
//!
//! Every client runs with a time limit (curl's `--max-time`, Python's
//! socket timeouts and a kill after [`PEER_LIMIT`]), the reactor under a
//! watchdog, and the reactor is stopped however the client ends.
#![cfg(feature = "http")]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use twill::defer::{succeed, Deferred};
use twill::{Bytes, Reactor, ReactorHandle};
use twill_protocols::http::{Body, BodyWriter, ConnectionInfo, HttpServer, StaticFiles};
use twill_test_support::files::TempDir;
use twill_test_support::process::Proc;
use twill_test_support::reactor::serve;

/// How long one client process may run before it is killed.
const PEER_LIMIT: Duration = Duration::from_secs(15);

/// The `max_body` of the server under test: room for the large uploads.
const MAX_BODY: usize = 64 << 20;

// ------------------------------------------------------------ the server

/// What the server saw: the connections its requests came on.
#[derive(Clone, Default)]
struct Seen {
    peers: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    fn requests(&self) -> usize {
        self.peers.lock().unwrap().len()
    }

    fn connections(&self) -> usize {
        let peers = self.peers.lock().unwrap();
        peers.iter().collect::<HashSet<_>>().len()
    }
}

/// The routes `http_peer.py` and the curl tests expect, like the
/// `http_server` example's: `/` (`hello`), `POST /echo`, `/stream?lines=N`
/// and `/files/` from `root`. Notes each request's connection in `seen`.
fn routes(
    root: &Path,
    seen: Seen,
) -> impl Fn(Request<Bytes>) -> Deferred<Response<Body>> + 'static {
    let files = Rc::new(StaticFiles::new(root).expect("a folder to serve"));
    move |request: Request<Bytes>| {
        if let Some(info) = request.extensions().get::<ConnectionInfo>() {
            seen.peers.lock().unwrap().push(info.peer.to_string());
        }
        let path = request.uri().path().to_owned();
        let response = match (request.method(), path.as_str()) {
            (&Method::GET | &Method::HEAD, "/") => Response::new(Body::from("hello\n")),
            (&Method::POST, "/echo") => Response::new(Body::Full(request.into_body())),
            (&Method::GET | &Method::HEAD, "/stream") => {
                let lines = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("lines="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(10);
                Response::new(Body::stream(move |writer| write_lines(writer, 1, lines)))
            }
            (_, path) if path.starts_with("/files/") => {
                files.serve_path(&request, &path["/files".len()..])
            }
            _ => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from("not found\n"))
                .unwrap(),
        };
        succeed(response)
    }
}

/// Writes `line N\n` for `next..=last`, only while the connection takes
/// more (a slow client must not make the server buffer the whole body).
fn write_lines(writer: BodyWriter, mut next: u64, last: u64) {
    while next <= last {
        if !writer.is_open() {
            return;
        }
        if !writer.is_writable() {
            let again = writer.clone();
            writer.when_writable(move || write_lines(again, next, last));
            return;
        }
        writer.write(format!("line {next}\n"));
        next += 1;
    }
    writer.finish();
}

/// Stops the reactor when dropped, so a client that panics ends the test
/// at once instead of at the watchdog.
struct StopOnDrop(ReactorHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Serves `root` with the test routes (and `max_body` as given) and runs
/// `client` with the base URL; returns what it returned and what the
/// server saw. A panic in the client fails the test.
fn with_server<R: Send + 'static>(
    root: &Path,
    max_body: usize,
    client: impl FnOnce(SocketAddr) -> R + Send + 'static,
) -> (R, Seen) {
    let _ = env_logger::builder().is_test(true).try_init();
    let seen = Seen::default();
    let reactor = Reactor::new().unwrap();
    let server = HttpServer::new(routes(root, seen.clone())).max_body(max_body);
    let outcome = serve(&reactor, server, move |addr, handle| {
        let _stop = StopOnDrop(handle);
        catch_unwind(AssertUnwindSafe(|| client(addr)))
    });
    match outcome {
        Ok(value) => (value, seen),
        Err(panic) => resume_unwind(panic),
    }
}

/// A folder of files for `/files/`: `small.txt` (1000 bytes) and, with
/// `big`, `big.bin` (32 MiB of a fixed pseudo-random pattern).
fn files(big: bool) -> TempDir {
    let dir = TempDir::new("http-peers");
    dir.write("small.txt", pattern(1000, 7));
    if big {
        dir.write("big.bin", pattern(32 << 20, 11));
    }
    dir
}

/// `len` bytes of xorshift output from `seed`: incompressible, and any
/// misplaced block shows.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    data
}

// ------------------------------------------------------------ running peers

/// Runs `command`, killing it after [`PEER_LIMIT`]; its stdout and stderr.
fn run_peer(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("could not start {command:?}: {err}"));
    let pid = child.id();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    // The watchdog kills the peer by its id if it outlives its limit, so
    // a hung peer fails the test instead of hanging it.
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(PEER_LIMIT).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let started = Instant::now();
    let output = child.wait_with_output().expect("wait for the peer");
    let _ = done.send(());
    watchdog.join().unwrap();
    assert!(
        started.elapsed() < PEER_LIMIT,
        "{command:?} was killed after {PEER_LIMIT:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn have_curl() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        println!("skipped: no curl");
    }
    found
}

/// `curl -sS --max-time 10 ARGS`, which must succeed.
fn curl(args: &[&str]) -> Output {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "10"]).args(args);
    let output = run_peer(command);
    assert!(
        output.status.success(),
        "curl {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first interpreter that runs: `$TWILL_TWISTED_PYTHON`, then the
/// workspace's `target/twisted-venv`.
fn python() -> Option<PathBuf> {
    twill_test_support::python::interpreter_with("http.client, hashlib")
}

/// Runs the scenario of `http_peer.py` against `addr`; it must print its
/// `OK` line and exit 0. Returns that line.
fn python_peer(python: &Path, addr: SocketAddr, scenario: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http_peer.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(scenario)
        .arg(addr.port().to_string())
        .args(args);
    let output = run_peer(command);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success() && stdout.starts_with(&format!("OK {scenario}")),
        "http_peer.py {scenario} failed ({}):\n{stdout}{}",
        output.status,
        text(&output.stderr)
    );
    stdout.trim().to_owned()
}

// ------------------------------------------------------------ curl

#[test]
fn curl_reuses_one_connection_for_several_urls() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let (output, seen) = with_server(dir.path(), MAX_BODY, |addr| {
        let base = format!("http://{addr}");
        curl(&[
            "-v",
            &format!("{base}/"),
            &format!("{base}/stream?lines=3"),
            &format!("{base}/files/small.txt"),
            &format!("{base}/"),
        ])
    });
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.matches("Re-using existing connection").count(),
        3,
        "{stderr}"
    );
    let mut wanted = b"hello\nline 1\nline 2\nline 3\n".to_vec();
    wanted.extend(pattern(1000, 7));
    wanted.extend(b"hello\n");
    assert_eq!(output.stdout, wanted);
    assert_eq!((seen.requests(), seen.connections()), (4, 1));
}

#[test]
fn curl_posts_a_form_body_and_gets_it_back() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let (output, _) = with_server(dir.path(), MAX_BODY, |addr| {
        curl(&[
            "-d",
            "name=twill&kind=server",
            &format!("http://{addr}/echo"),
        ])
    });
    assert_eq!(text(&output.stdout), "name=twill&kind=server");
}

#[test]
fn curl_uploads_a_chunked_body() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let upload = dir.write("upload.bin", pattern(300_000, 3));
    let (output, _) = with_server(dir.path(), MAX_BODY, move |addr| {
        curl(&[
            "-v",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", upload.display()),
            &format!("http://{addr}/echo"),
        ])
    });
    assert!(
        text(&output.stderr).contains("Transfer-Encoding: chunked"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(output.stdout, pattern(300_000, 3));
}

#[test]
fn curl_waits_for_100_continue_before_a_large_upload() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let upload = dir.write("upload.bin", pattern(3 << 20, 5));
    let (output, _) = with_server(dir.path(), MAX_BODY, move |addr| {
        curl(&[
            "-v",
            "--data-binary",
            &format!("@{}", upload.display()),
            &format!("http://{addr}/echo"),
        ])
    });
    let stderr = text(&output.stderr);
    assert!(stderr.contains("> Expect: 100-continue"), "{stderr}");
    assert!(stderr.contains("< HTTP/1.1 100 Continue"), "{stderr}");
    assert!(stderr.contains("< HTTP/1.1 200 OK"), "{stderr}");
    assert!(output.stdout == pattern(3 << 20, 5), "the echo differs");
}

#[test]
fn curl_gets_413_and_no_100_continue_for_an_upload_over_max_body() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let upload = dir.write("upload.bin", pattern(3 << 20, 5));
    let (output, seen) = with_server(dir.path(), 1 << 20, move |addr| {
        curl(&[
            "-v",
            "--data-binary",
            &format!("@{}", upload.display()),
            &format!("http://{addr}/echo"),
        ])
    });
    let stderr = text(&output.stderr);
    assert!(stderr.contains("> Expect: 100-continue"), "{stderr}");
    assert!(!stderr.contains("< HTTP/1.1 100"), "{stderr}");
    assert!(
        stderr.contains("< HTTP/1.1 413 Payload Too Large"),
        "{stderr}"
    );
    assert_eq!(seen.requests(), 0, "the handler saw the refused request");
}

#[test]
fn curl_downloads_32_mib_from_files_intact() {
    if !have_curl() {
        return;
    }
    let dir = files(true);
    let target = dir.path().join("downloaded.bin");
    let out = target.clone();
    let started = Instant::now();
    let (output, _) = with_server(dir.path(), MAX_BODY, move |addr| {
        curl(&[
            "-w",
            "%{http_code} %{size_download}",
            "-o",
            &out.display().to_string(),
            &format!("http://{addr}/files/big.bin"),
        ])
    });
    println!("32 MiB download with curl: {:?}", started.elapsed());
    assert_eq!(text(&output.stdout), format!("200 {}", 32 << 20));
    let got = std::fs::read(&target).unwrap();
    assert!(got == pattern(32 << 20, 11), "the download differs");
}

#[test]
fn curl_gets_byte_ranges() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let (outputs, _) = with_server(dir.path(), MAX_BODY, |addr| {
        let url = format!("http://{addr}/files/small.txt");
        ["0-99", "990-", "-10", "2000-"].map(|range| curl(&["-i", "-r", range, &url]))
    });
    let whole = pattern(1000, 7);
    for (output, (status, body)) in outputs.iter().zip([
        ("206", &whole[..100]),
        ("206", &whole[990..]),
        ("206", &whole[990..]),
        ("416", &b""[..]),
    ]) {
        let response = &output.stdout;
        let split = find(response, b"\r\n\r\n").expect("a head") + 4;
        let head = text(&response[..split]);
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        if status == "206" {
            assert_eq!(&response[split..], body, "{head}");
            assert!(head.contains("content-range: bytes "), "{head}");
        }
    }
}

#[test]
fn curl_if_modified_since_the_file_gets_304() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let file = dir.path().join("small.txt");
    let (outputs, _) = with_server(dir.path(), MAX_BODY, move |addr| {
        let url = format!("http://{addr}/files/small.txt");
        let file = file.display().to_string();
        (
            // -z FILE: If-Modified-Since the file's own mtime.
            curl(&["-w", "%{http_code}", "-z", &file, &url]),
            // Modified since 1970: the whole file.
            curl(&[
                "-w",
                "%{http_code}",
                "-z",
                "Thu, 01 Jan 1970 00:00:00 GMT",
                &url,
            ]),
        )
    });
    assert_eq!(text(&outputs.0.stdout), "304");
    let mut whole = pattern(1000, 7);
    whole.extend(b"200");
    assert_eq!(outputs.1.stdout, whole);
}

#[test]
fn curl_http_1_0_gets_answers_and_the_connection_closed() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let (outputs, seen) = with_server(dir.path(), MAX_BODY, |addr| {
        let base = format!("http://{addr}");
        (
            curl(&["--http1.0", "-i", &format!("{base}/")]),
            curl(&["--http1.0", "-i", &format!("{base}/stream?lines=4")]),
        )
    });
    let plain = text(&outputs.0.stdout);
    assert!(plain.contains("\r\nconnection: close\r\n"), "{plain}");
    assert!(plain.ends_with("\r\n\r\nhello\n"), "{plain}");
    // A stream of unknown length to HTTP/1.0: framed by the close.
    let streamed = text(&outputs.1.stdout);
    assert!(!streamed.contains("transfer-encoding"), "{streamed}");
    assert!(!streamed.contains("content-length"), "{streamed}");
    assert!(
        streamed.ends_with("\r\n\r\nline 1\nline 2\nline 3\nline 4\n"),
        "{streamed}"
    );
    assert_eq!(seen.connections(), 2);
}

#[test]
fn curl_head_gets_the_head_only() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let (outputs, _) = with_server(dir.path(), MAX_BODY, |addr| {
        (
            curl(&["-I", &format!("http://{addr}/")]),
            curl(&["-I", &format!("http://{addr}/files/small.txt")]),
        )
    });
    let root = text(&outputs.0.stdout);
    assert!(root.starts_with("HTTP/1.1 200 OK\r\n"), "{root}");
    assert!(root.contains("\r\ncontent-length: 6\r\n"), "{root}");
    assert!(root.ends_with("\r\n\r\n"), "{root}");
    let file = text(&outputs.1.stdout);
    assert!(file.contains("\r\ncontent-length: 1000\r\n"), "{file}");
    assert!(file.contains("\r\nlast-modified: "), "{file}");
    assert!(file.ends_with("\r\n\r\n"), "{file}");
}

/// The `http_server` example as a process: its routes answer curl, and
/// SIGTERM stops it cleanly.
#[test]
fn curl_against_the_http_server_example() {
    if !have_curl() {
        return;
    }
    let dir = files(false);
    let root = dir.path().display().to_string();
    let mut server = Proc::example_with_features(
        "twill-protocols",
        &["http"],
        "http_server",
        &["127.0.0.1:0", "--root", &root],
    );
    let line = server.wait_stderr("serving http://");
    let addr = line
        .split("serving http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let base = format!("http://{addr}");
    assert_eq!(
        text(&curl(&[&format!("{base}/")]).stdout),
        "Hello, World!\n"
    );
    let echo = curl(&[
        "-H",
        "Content-Type: text/x-test",
        "-d",
        "some data",
        "-D",
        "-",
        &format!("{base}/echo"),
    ]);
    let echo = text(&echo.stdout);
    assert!(echo.contains("content-type: text/x-test\r\n"), "{echo}");
    assert!(echo.ends_with("\r\n\r\nsome data"), "{echo}");
    let lines: String = (1..=5).map(|n| format!("line {n}\n")).collect();
    assert_eq!(
        text(&curl(&[&format!("{base}/stream?lines=5")]).stdout),
        lines
    );
    let range = curl(&["-r", "10-19", &format!("{base}/files/small.txt")]);
    assert_eq!(range.stdout, &pattern(1000, 7)[10..20]);
    server.terminate();
    server.expect_clean_exit();
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ------------------------------------------------------------ Python

#[test]
fn python_keep_alive_uses_one_tcp_connection() {
    let Some(python) = python() else { return };
    let dir = files(false);
    let (line, seen) = with_server(dir.path(), MAX_BODY, move |addr| {
        python_peer(&python, addr, "keepalive", &[])
    });
    println!("{line}");
    assert_eq!((seen.requests(), seen.connections()), (6, 1));
}

#[test]
fn python_sends_a_chunked_body() {
    let Some(python) = python() else { return };
    let dir = files(false);
    let (line, _) = with_server(dir.path(), MAX_BODY, move |addr| {
        python_peer(&python, addr, "chunked-upload", &[])
    });
    println!("{line}");
}

#[test]
fn python_reads_a_chunked_response() {
    let Some(python) = python() else { return };
    let dir = files(false);
    let (line, seen) = with_server(dir.path(), MAX_BODY, move |addr| {
        python_peer(&python, addr, "chunked-response", &[])
    });
    println!("{line}");
    assert_eq!(seen.connections(), 1);
}

#[test]
fn python_uploads_and_downloads_large_bodies_intact() {
    let Some(python) = python() else { return };
    let dir = files(true);
    let big = dir.path().join("big.bin").display().to_string();
    let (lines, _) = with_server(dir.path(), MAX_BODY, move |addr| {
        let started = Instant::now();
        let upload = python_peer(&python, addr, "upload", &[&(8 << 20).to_string()]);
        let uploaded = started.elapsed();
        let started = Instant::now();
        let download = python_peer(&python, addr, "download", &[&big]);
        (upload, uploaded, download, started.elapsed())
    });
    println!("{} in {:?}\n{} in {:?}", lines.0, lines.1, lines.2, lines.3);
}

#[test]
fn python_pipelines_ten_requests_in_one_write() {
    let Some(python) = python() else { return };
    let dir = files(false);
    let (line, seen) = with_server(dir.path(), MAX_BODY, move |addr| {
        python_peer(&python, addr, "pipeline", &[])
    });
    println!("{line}");
    assert_eq!((seen.requests(), seen.connections()), (10, 1));
}

/// An echo is a `Body::Full` answer, written whole into the connection's
/// buffer; one over the transport's hard write-buffer limit (16 MiB) makes
/// the transport abort the connection instead of answering, though
/// `max_body` let the request in.
#[test]
fn python_gets_an_echo_larger_than_the_transport_write_buffer_limit() {
    let Some(python) = python() else { return };
    let dir = files(false);
    let (line, _) = with_server(dir.path(), MAX_BODY, move |addr| {
        python_peer(&python, addr, "upload", &[&(16 << 20).to_string()])
    });
    println!("{line}");
}
