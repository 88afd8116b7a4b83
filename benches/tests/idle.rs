//! End-to-end checks of `idle_bench` over loopback: a smoke run against the
//! baseline servers prints the table, and a server whose echo differs from
//! what was sent fails the run.
//!
//! For the second test this test binary doubles as the faulty server: a
//! small script runs it with the `fake_idle_echo_server` test selected and
//! `TWILL_BENCH_FAKE_IDLE_ECHO` set.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

const IDLE_BENCH: &str = env!("CARGO_BIN_EXE_idle_bench");

/// Where the suite's binaries (and so the baseline servers) are.
fn bench_dir() -> PathBuf {
    PathBuf::from(IDLE_BENCH).parent().unwrap().to_path_buf()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn idle_bench_smoke_runs_the_baselines() {
    let out = Command::new(IDLE_BENCH)
        .args(["--smoke", "--servers", "raw_polling,async_io"])
        .arg("--target-dir")
        .arg(bench_dir())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("| server | empty RSS MiB | loaded RSS MiB | bytes per conn |"),
        "{stdout}"
    );
    assert!(stdout.contains("\n| raw_polling | "), "{stdout}");
    assert!(stdout.contains("\n| async_io | "), "{stdout}");
    assert!(
        stdout.contains("200 idle connections per server"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
    // Without twill in the run there is nothing to compare with.
    assert!(stdout.contains("twill: not measured."), "{stdout}");
}

#[test]
fn idle_bench_fails_on_a_corrupting_server() {
    let script =
        std::env::temp_dir().join(format!("twill-idle-bench-fake-{}.sh", std::process::id()));
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' fake_idle_echo_server --exact --nocapture --test-threads=1\n",
            exe.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(IDLE_BENCH)
        .args(["--smoke", "--conns", "20", "--servers"])
        .arg(format!("faulty={}", script.display()))
        .arg("--target-dir")
        .arg(bench_dir())
        .env("TWILL_BENCH_FAKE_IDLE_ECHO", "corrupt")
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
        stdout.contains("FAILED faulty") && stdout.contains("VERIFY ERROR"),
        "{stdout}"
    );
    assert!(stdout.contains("| faulty | failed |"), "{stdout}");
}

/// Not a test on its own: with `TWILL_BENCH_FAKE_IDLE_ECHO=corrupt` set,
/// this process serves as an echo server that flips a bit of the last byte
/// of every read, for the test above, until it is killed.
#[test]
fn fake_idle_echo_server() {
    if std::env::var("TWILL_BENCH_FAKE_IDLE_ECHO").as_deref() != Ok("corrupt") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    eprintln!("[fake INFO] listening on {}", l.local_addr().unwrap());
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            let mut buf = [0u8; 4096];
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf[n - 1] ^= 0x01;
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }
}
