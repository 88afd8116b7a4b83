//! End-to-end checks of `http_loadgen` over loopback: it counts whole
//! HTTP responses (split across writes, pipelined), opens WebSockets and
//! checks their echoes, and fails with its documented exit codes on a
//! wrong body, a wrong handshake, a corrupted or reordered echo and a
//! server that closes.
//!
//! The runners `http_bench` and `ws_bench` run such servers as programs
//! and compare them, and fail when one answers wrongly.
//!
//! The servers are small blocking threads in this test process; for the
//! runners, which start servers as programs, this test binary doubles as
//! one: a small script runs it with the `fake_server` test selected and
//! `TWILL_BENCH_FAKE_SERVER` naming the server. Every `http_loadgen` run is
//! a fraction of a second and ends by itself, and the runners kill their
//! servers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};

const HTTP_LOADGEN: &str = env!("CARGO_BIN_EXE_http_loadgen");
const HTTP_BENCH: &str = env!("CARGO_BIN_EXE_http_bench");
const WS_BENCH: &str = env!("CARGO_BIN_EXE_ws_bench");

/// The environment variable that makes [`fake_server`] serve.
const FAKE_SERVER: &str = "TWILL_BENCH_FAKE_SERVER";

/// RFC 6455's example accept value for its example key, which
/// `http_loadgen` sends.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

#[derive(Clone, Copy)]
enum Fault {
    None,
    /// The sixth response on each connection has another body (HTTP); the
    /// third echo has its first payload byte flipped (WebSocket).
    Corrupt,
    /// The first two echoes swap places (WebSocket).
    Reorder,
    /// The connection closes after three responses.
    Close,
    /// The handshake's `Sec-WebSocket-Accept` is wrong.
    BadAccept,
}

/// Starts a server in this process running `serve` on every connection;
/// it lives until the process ends.
fn listen(serve: fn(TcpStream, Fault), fault: Fault) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s, fault));
        }
    });
    addr
}

fn find(buf: &[u8], what: &[u8]) -> Option<usize> {
    buf.windows(what.len()).position(|w| w == what)
}

/// Answers every request head with `Hello, World!`, the head and the body
/// in separate writes so that the client sees partial responses.
fn serve_http(mut s: TcpStream, fault: Fault) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut pending = Vec::new();
    let mut answered = 0;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = find(&pending, b"\r\n\r\n") {
            pending.drain(..end + 4);
            let body: &[u8] = match fault {
                Fault::Corrupt if answered == 5 => b"Hello, Wrld!!",
                Fault::Close if answered == 3 => return,
                _ => b"Hello, World!",
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nServer: fake\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
                return;
            }
            answered += 1;
        }
    }
}

/// Opens the WebSocket and echoes every binary frame unmasked.
fn serve_ws(mut s: TcpStream, fault: Fault) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut pending = Vec::new();
    while find(&pending, b"\r\n\r\n").is_none() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
    pending.drain(..find(&pending, b"\r\n\r\n").unwrap() + 4);
    let accept = match fault {
        Fault::BadAccept => "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        _ => ACCEPT,
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if s.write_all(response.as_bytes()).is_err() {
        return;
    }
    let mut echoed = 0;
    let mut held: Option<Vec<u8>> = None;
    loop {
        while let Some((frame_len, mut echo)) = unmask_one(&pending) {
            pending.drain(..frame_len);
            match fault {
                Fault::Corrupt if echoed == 2 => {
                    let at = echo.len() - 1;
                    echo[at] ^= 0x01;
                }
                Fault::Reorder if echoed == 0 => {
                    held = Some(echo);
                    echoed += 1;
                    continue;
                }
                Fault::Close if echoed == 3 => return,
                _ => {}
            }
            if s.write_all(&echo).is_err() {
                return;
            }
            if let Some(first) = held.take() {
                if s.write_all(&first).is_err() {
                    return;
                }
            }
            echoed += 1;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// The first whole masked client frame of `buf`: its length and its echo
/// (an unmasked final binary frame with the same payload).
fn unmask_one(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[0], 0x82, "a final binary frame");
    assert_eq!(buf[1] & 0x80, 0x80, "masked");
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        126 => return None,
        len => (len as usize, 2),
    };
    if buf.len() < at + 4 + len {
        return None;
    }
    let mask = &buf[at..at + 4];
    let mut echo = vec![0x82];
    if len <= 125 {
        echo.push(len as u8);
    } else {
        echo.push(126);
        echo.extend_from_slice(&(len as u16).to_be_bytes());
    }
    echo.extend(
        buf[at + 4..at + 4 + len]
            .iter()
            .enumerate()
            .map(|(j, b)| b ^ mask[j % 4]),
    );
    Some((at + 4 + len, echo))
}

fn http_loadgen(addr: SocketAddr, extra: &[&str]) -> Output {
    Command::new(HTTP_LOADGEN)
        .args([
            "--addr",
            &addr.to_string(),
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The run succeeded and answered requests in its window.
fn assert_measured(out: &Output) {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("MARK measure_start\n"));
    assert!(stdout.contains("MARK measure_end\n"));
    let result = stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap();
    let kv = twill_bench::parse_kv(result);
    assert!(kv["msgs"].parse::<u64>().unwrap() > 0, "{result}");
}

fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn counts_http_responses_one_at_a_time_and_pipelined() {
    let addr = listen(serve_http, Fault::None);
    for inflight in ["1", "16"] {
        let out = http_loadgen(
            addr,
            &["--conns", "4", "--inflight", inflight, "--threads", "2"],
        );
        assert_measured(&out);
    }
}

#[test]
fn a_wrong_http_body_is_caught() {
    let addr = listen(serve_http, Fault::Corrupt);
    let out = http_loadgen(addr, &["--conns", "2", "--inflight", "4"]);
    assert_fails(&out, 3, "WRONG RESPONSE");
    assert!(text(&out.stderr).contains("Hello, Wrld!!"));
}

#[test]
fn an_http_server_closing_fails_the_run() {
    let addr = listen(serve_http, Fault::Close);
    let out = http_loadgen(addr, &["--conns", "1"]);
    assert_fails(&out, 4, "closed by the server after 3 responses");
}

#[test]
fn echoes_websocket_messages_small_and_large() {
    let addr = listen(serve_ws, Fault::None);
    for (size, inflight) in [("64", "1"), ("64", "16"), ("1000", "3")] {
        let out = http_loadgen(
            addr,
            &[
                "--ws",
                "--conns",
                "3",
                "--size",
                size,
                "--inflight",
                inflight,
            ],
        );
        assert_measured(&out);
    }
}

#[test]
fn a_wrong_websocket_accept_is_a_setup_error() {
    let addr = listen(serve_ws, Fault::BadAccept);
    let out = http_loadgen(addr, &["--ws", "--conns", "1"]);
    assert_fails(&out, 2, "Sec-WebSocket-Accept");
}

#[test]
fn a_corrupted_websocket_echo_is_caught() {
    let addr = listen(serve_ws, Fault::Corrupt);
    let out = http_loadgen(addr, &["--ws", "--conns", "1", "--inflight", "2"]);
    assert_fails(&out, 3, "message 2");
}

#[test]
fn reordered_websocket_echoes_are_caught() {
    let addr = listen(serve_ws, Fault::Reorder);
    let out = http_loadgen(addr, &["--ws", "--conns", "1", "--inflight", "2"]);
    assert_fails(&out, 3, "message 0");
}

#[test]
fn refuses_bad_arguments_and_other_hosts() {
    for args in [
        &["--addr", "192.0.2.1:80"][..],
        &["--addr", "127.0.0.1:80", "--inflight", "0"],
        &["--addr", "127.0.0.1:80", "--ws", "--size", "70000"],
        &["--conns", "1"],
    ] {
        let out = Command::new(HTTP_LOADGEN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// A script that runs this test binary as the fake server named `fake`
/// (`http`, `http_corrupt`, `ws`); `tag` keeps concurrent tests' scripts
/// apart. Removed when dropped.
struct FakeServer(PathBuf);

impl FakeServer {
    fn new(tag: &str) -> FakeServer {
        let script =
            std::env::temp_dir().join(format!("twill-bench-fake-{tag}-{}.sh", std::process::id()));
        let exe = std::env::current_exe().unwrap();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec '{}' fake_server --exact --nocapture --test-threads=1\n",
                exe.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeServer(script)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `runner --smoke` on the fake server `fake`, started as the
/// servers `names` (comma-separated), 0.3 s a round.
fn run_bench(runner: &str, fake: &str, names: &[&str]) -> Output {
    let script = FakeServer::new(&format!("{fake}-{}", names.join("-")));
    let servers: Vec<String> = names
        .iter()
        .map(|name| format!("{name}={}", script.0.display()))
        .collect();
    Command::new(runner)
        .args(["--smoke", "--duration", "0.3", "--conns", "4", "--servers"])
        .arg(servers.join(","))
        .arg("--target-dir")
        .arg(PathBuf::from(HTTP_LOADGEN).parent().unwrap())
        .env(FAKE_SERVER, fake)
        .output()
        .unwrap()
}

#[test]
fn http_bench_compares_twill_with_the_others_at_both_depths() {
    let out = run_bench(HTTP_BENCH, "http", &["twill", "other"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(stdout.matches("| twill | ").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("| other | ").count(), 2, "{stdout}");
    assert!(stdout.contains("× 1 in flight") && stdout.contains("× 16 in flight"));
    assert!(stdout.contains("| twill ÷ it, per CPU-s |"), "{stdout}");
}

#[test]
fn http_bench_fails_on_a_wrong_response() {
    let out = run_bench(HTTP_BENCH, "http_corrupt", &["twill"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("VERIFY ERROR"),
        "{stdout}"
    );
}

#[test]
fn ws_bench_compares_twill_with_the_others() {
    let out = run_bench(WS_BENCH, "ws", &["twill", "other"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(stdout.matches("| other | ").count(), 2, "{stdout}");
    assert!(
        stdout.contains("WebSocket echo of 64 B binary messages"),
        "{stdout}"
    );
}

#[test]
fn runners_refuse_bad_arguments() {
    for (runner, args) in [
        (HTTP_BENCH, &["--depths", "0"][..]),
        (HTTP_BENCH, &["--conns", "0"]),
        (WS_BENCH, &["--size", "0"]),
        (WS_BENCH, &["--bogus"]),
    ] {
        let out = Command::new(runner).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{runner} {args:?}");
    }
}

/// Not a test on its own: with `TWILL_BENCH_FAKE_SERVER` set to `http`,
/// `http_corrupt` or `ws`, this process serves as that server for the
/// runner tests above, announcing itself with a log-style prefix, until it
/// is killed.
#[test]
fn fake_server() {
    let (serve, fault): (fn(TcpStream, Fault), Fault) = match std::env::var(FAKE_SERVER).as_deref()
    {
        Ok("http") => (serve_http, Fault::None),
        Ok("http_corrupt") => (serve_http, Fault::Corrupt),
        Ok("ws") => (serve_ws, Fault::None),
        _ => return,
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    eprintln!("[fake INFO] listening on {}", l.local_addr().unwrap());
    for s in l.incoming().flatten() {
        std::thread::spawn(move || serve(s, fault));
    }
}
