//! End-to-end checks of the benchmark suite over loopback: `loadgen`
//! verifies echoes (and catches corrupted or reordered ones), refuses
//! non-loopback targets, reports connect failures, and `echo_bench` runs the
//! baselines and fails when a server echoes garbage.
//!
//! Faulty servers are simple blocking threads in this test process. For the
//! runner, which starts servers as programs, this test binary doubles as one:
//! a small script runs it with the `fake_echo_server` test selected and
//! `TWILL_BENCH_FAKE_ECHO` set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const ECHO_BENCH: &str = env!("CARGO_BIN_EXE_echo_bench");

#[derive(Clone, Copy)]
enum Mode {
    Echo,
    /// Flips one bit of the byte at stream offset 1000.
    Corrupt,
    /// Swaps the first two messages of `size` bytes.
    Reorder(usize),
}

fn serve(mut s: TcpStream, mode: Mode) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    let mut held: Vec<u8> = Vec::new();
    let mut reordered = false;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut data = buf[..n].to_vec();
        match mode {
            Mode::Echo => {}
            Mode::Corrupt => {
                if total <= 1000 && total + n > 1000 {
                    data[1000 - total] ^= 0x01;
                }
            }
            Mode::Reorder(size) if !reordered => {
                held.extend_from_slice(&data);
                if held.len() < 2 * size {
                    continue;
                }
                held[..2 * size].rotate_left(size);
                data = std::mem::take(&mut held);
                reordered = true;
            }
            Mode::Reorder(_) => {}
        }
        total += n;
        if s.write_all(&data).is_err() {
            return;
        }
    }
}

/// Starts a threaded server in this process; it lives until the process ends.
fn listen(mode: Mode) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s, mode));
        }
    });
    addr
}

fn loadgen(addr: SocketAddr, extra: &[&str]) -> Output {
    Command::new(LOADGEN)
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

#[test]
fn loadgen_measures_a_correct_echo() {
    let addr = listen(Mode::Echo);
    let out = loadgen(
        addr,
        &[
            "--conns",
            "4",
            "--size",
            "100",
            "--inflight",
            "3",
            "--threads",
            "2",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let result = stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap();
    let kv = twill_bench::parse_kv(result);
    assert!(kv["msgs"].parse::<u64>().unwrap() > 0, "{result}");
    assert!(stdout.contains("MARK measure_start\n"));
    assert!(stdout.contains("MARK measure_end\n"));
}

#[test]
fn loadgen_detects_corruption() {
    let addr = listen(Mode::Corrupt);
    let out = loadgen(addr, &["--conns", "2", "--size", "64", "--inflight", "4"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("VERIFY ERROR"));
}

#[test]
fn loadgen_detects_reordering() {
    let addr = listen(Mode::Reorder(16));
    let out = loadgen(addr, &["--conns", "1", "--size", "16", "--inflight", "2"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("message 0"));
}

#[test]
fn loadgen_reports_connect_failure() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The listener is closed now, so connecting is refused.
    let out = loadgen(addr, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn loadgen_refuses_non_loopback() {
    let out = Command::new(LOADGEN)
        .args(["--addr", "192.0.2.1:7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("non-loopback"));
}

fn bench_dir() -> PathBuf {
    PathBuf::from(LOADGEN).parent().unwrap().to_path_buf()
}

#[test]
fn echo_bench_smoke_runs_the_baselines() {
    let out = Command::new(ECHO_BENCH)
        .args([
            "--smoke",
            "--duration",
            "0.5",
            "--servers",
            "raw_polling,async_io",
        ])
        .arg("--target-dir")
        .arg(bench_dir())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("| raw_polling | "), "{stdout}");
    assert!(stdout.contains("| async_io | "), "{stdout}");
    assert!(stdout.contains("| 1.00× |"), "{stdout}");
}

#[test]
fn echo_bench_fails_on_a_corrupting_server() {
    let script = std::env::temp_dir().join(format!("twill-bench-fake-{}.sh", std::process::id()));
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' fake_echo_server --exact --nocapture --test-threads=1\n",
            exe.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(ECHO_BENCH)
        .args(["--smoke", "--duration", "0.3", "--servers"])
        .arg(format!("faulty={}", script.display()))
        .arg("--target-dir")
        .arg(bench_dir())
        .env("TWILL_BENCH_FAKE_ECHO", "corrupt")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&script);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("FAILED") && stdout.contains("VERIFY ERROR"),
        "{stdout}"
    );
}

/// Not a test on its own: with `TWILL_BENCH_FAKE_ECHO=corrupt` set, this
/// process serves as a corrupting echo server for the runner test above,
/// announcing itself with a log-style prefix, until it is killed.
#[test]
fn fake_echo_server() {
    if std::env::var("TWILL_BENCH_FAKE_ECHO").as_deref() != Ok("corrupt") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    eprintln!("[fake INFO] listening on {}", l.local_addr().unwrap());
    for s in l.incoming().flatten() {
        std::thread::spawn(move || serve(s, Mode::Corrupt));
    }
}
