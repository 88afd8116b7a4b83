//! End-to-end checks of `fanout_bench`: it measures twill's
//! `broadcast_server` and the tokio Spreader, and its verification catches a
//! Spreader that loses, duplicates, corrupts, misdirects or splits messages.
//!
//! The faulty Spreaders are plain blocking threads. The runner starts
//! servers as programs, so this test binary doubles as one: a small script
//! runs it with the `fake_spreader` test selected and
//! `TWILL_BENCH_FAKE_SPREADER` naming the fault.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const FANOUT_BENCH: &str = env!("CARGO_BIN_EXE_fanout_bench");
const FAKE_ENV: &str = "TWILL_BENCH_FAKE_SPREADER";

/// The directory the benchmark binaries (and this package's examples, under
/// `examples/`) were built into.
fn bench_dir() -> PathBuf {
    Path::new(FANOUT_BENCH).parent().unwrap().to_path_buf()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fanout(args: &[&str], servers: &str, env: Option<(&str, &str)>) -> Output {
    let mut cmd = Command::new(FANOUT_BENCH);
    cmd.args(["--smoke", "--duration", "0.5", "--clients", "8"])
        .args(args)
        .arg("--servers")
        .arg(servers)
        .arg("--target-dir")
        .arg(bench_dir())
        .stdin(Stdio::null());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn assert_ok(out: &Output, name: &str) -> String {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(&format!("| {name} | ")), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    stdout
}

/// twill's `broadcast_server` example, built (or found up to date) by
/// cargo in this test's profile.
fn broadcast_server() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-p",
        "twill",
        "--example",
        "broadcast_server",
        "--message-format=json",
        "--manifest-path",
    ])
    .arg(&manifest)
    .stdin(Stdio::null());
    if bench_dir().file_name().is_some_and(|d| d == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The executable's path, from cargo's JSON message about the example.
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains(r#""kind":["example"]"#) && l.contains(r#""executable":""#))
        .unwrap_or_else(|| panic!("cargo reported no example binary:\n{stdout}"));
    let start = line.find(r#""executable":""#).unwrap() + r#""executable":""#.len();
    let end = start + line[start..].find('"').unwrap();
    PathBuf::from(line[start..end].replace("\\\\", "\\"))
}

#[test]
fn measures_twill_broadcast_server() {
    let server = broadcast_server();
    let out = fanout(&[], &format!("twill={}", server.display()), None);
    let stdout = assert_ok(&out, "twill");
    assert!(stdout.contains("| 1.00× | 1.00× |"), "{stdout}");
}

#[test]
fn measures_tokio_spreader_if_built() {
    // `cargo test` builds this package's examples next to its binaries.
    if !bench_dir().join("examples/tokio_spreader").is_file() {
        eprintln!("tokio_spreader is not built; skipped");
        return;
    }
    let out = fanout(&["--window", "2"], "tokio_ct", None);
    assert_ok(&out, "tokio_ct");
}

/// Writes a script that runs this test binary as the fake Spreader.
fn fake_server_script(fault: &str) -> PathBuf {
    let script = std::env::temp_dir().join(format!(
        "twill-bench-fake-spreader-{}-{fault}.sh",
        std::process::id()
    ));
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' fake_spreader --exact --nocapture --test-threads=1\n",
            exe.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn run_fake(fault: &str, args: &[&str]) -> Output {
    let script = fake_server_script(fault);
    let out = fanout(
        args,
        &format!("fake={}", script.display()),
        Some((FAKE_ENV, fault)),
    );
    let _ = std::fs::remove_file(&script);
    out
}

/// Asserts that the run failed verification with a message containing
/// `needle`.
fn assert_caught(out: &Output, needle: &str) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("FAILED fake round 1: VERIFY ERROR") && stdout.contains(needle),
        "expected a verification error mentioning {needle:?}:\n{stdout}"
    );
    assert!(stdout.contains("| fake | failed |"), "{stdout}");
}

#[test]
fn a_correct_fake_spreader_passes() {
    let out = run_fake("none", &["--window", "3"]);
    assert_ok(&out, "fake");
}

#[test]
fn a_lost_message_is_caught() {
    // With two messages outstanding the next one shows the gap.
    let out = run_fake("drop", &["--window", "2"]);
    assert_caught(&out, "1 message(s) lost");
}

#[test]
fn a_lost_message_with_nothing_after_it_stalls_and_is_caught() {
    let out = run_fake("drop", &["--window", "1", "--stall", "0.5"]);
    assert_caught(&out, "still incomplete after 500ms");
}

#[test]
fn a_duplicated_message_is_caught() {
    let out = run_fake("duplicate", &[]);
    assert_caught(&out, "again (duplicated or reordered)");
}

#[test]
fn a_corrupted_message_is_caught() {
    let out = run_fake("corrupt", &[]);
    assert_caught(&out, "is corrupted");
}

#[test]
fn a_message_sent_back_to_its_sender_is_caught() {
    let out = run_fake("echo", &[]);
    assert_caught(&out, "its own message");
}

#[test]
fn a_chunk_split_around_another_is_caught() {
    let out = run_fake("split", &[]);
    assert_caught(&out, "no message boundary here");
}

#[test]
fn a_wrong_welcome_is_caught() {
    let out = run_fake("welcome", &[]);
    assert_caught(&out, "welcome");
}

/// What the fake does wrong, at one relay (one chunk to one receiver).
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Leaves out the chunk's first 16-byte message.
    Drop,
    /// Sends the chunk twice.
    Duplicate,
    /// Flips a bit in the chunk's last filler byte.
    Corrupt,
    /// Also sends the chunk back to its sender.
    Echo,
    /// Sends the first half of the chunk, the rest only after the
    /// receiver's next chunk.
    Split,
    /// Numbers the clients from 0.
    Welcome,
}

/// The relay (counted over all) at which the fault happens.
const FAULT_AT: usize = 300;

struct Peer {
    id: usize,
    stream: TcpStream,
    /// The rest of a split chunk, sent after the next one.
    tail: Option<Vec<u8>>,
}

fn relay(peers: &mut [Peer], from: usize, chunk: &[u8], fault: Fault, count: &AtomicUsize) {
    let mut echo = false;
    for p in peers.iter_mut().filter(|p| p.id != from) {
        let at = count.fetch_add(1, Ordering::Relaxed) == FAULT_AT;
        let _ = match (at, fault) {
            // The first message of the chunk (there may be more).
            (true, Fault::Drop) => p.stream.write_all(&chunk[16.min(chunk.len())..]),
            (true, Fault::Duplicate) => p
                .stream
                .write_all(chunk)
                .and_then(|()| p.stream.write_all(chunk)),
            (true, Fault::Corrupt) => {
                let mut bad = chunk.to_vec();
                let i = bad.len() - 2;
                bad[i] ^= 0x04;
                p.stream.write_all(&bad)
            }
            (true, Fault::Split) => {
                let half = chunk.len() / 2;
                p.tail = Some(chunk[half..].to_vec());
                p.stream.write_all(&chunk[..half])
            }
            _ => {
                echo |= at && fault == Fault::Echo;
                let r = p.stream.write_all(chunk);
                match p.tail.take() {
                    Some(tail) => r.and_then(|()| p.stream.write_all(&tail)),
                    None => r,
                }
            }
        };
    }
    if echo {
        if let Some(me) = peers.iter_mut().find(|p| p.id == from) {
            let _ = me.stream.write_all(chunk);
        }
    }
}

fn serve(
    mut stream: TcpStream,
    id: usize,
    peers: Arc<Mutex<Vec<Peer>>>,
    fault: Fault,
    count: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if buf[..n].trim_ascii_end() == b"close" {
            break;
        }
        relay(&mut peers.lock().unwrap(), id, &buf[..n], fault, &count);
    }
    peers.lock().unwrap().retain(|p| p.id != id);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Not a test on its own: with `TWILL_BENCH_FAKE_SPREADER` set to a fault
/// (or `none`), this process serves as a Spreader with that fault for the
/// tests above, announcing itself with a log-style prefix, until killed.
#[test]
fn fake_spreader() {
    let fault = match std::env::var(FAKE_ENV).as_deref() {
        Ok("none") => Fault::None,
        Ok("drop") => Fault::Drop,
        Ok("duplicate") => Fault::Duplicate,
        Ok("corrupt") => Fault::Corrupt,
        Ok("echo") => Fault::Echo,
        Ok("split") => Fault::Split,
        Ok("welcome") => Fault::Welcome,
        _ => return,
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    eprintln!("[fake INFO] listening on {}", l.local_addr().unwrap());
    let peers: Arc<Mutex<Vec<Peer>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    for (id, s) in l.incoming().flatten().enumerate() {
        let _ = s.set_nodelay(true);
        let mut list = peers.lock().unwrap();
        let number = list.len() + usize::from(fault != Fault::Welcome);
        let mut writer = s.try_clone().unwrap();
        let _ = writer.write_all(
            format!("Welcome to Spread Site, you are client user number {number}!\n").as_bytes(),
        );
        list.push(Peer {
            id,
            stream: writer,
            tail: None,
        });
        drop(list);
        let (peers, count) = (peers.clone(), count.clone());
        std::thread::spawn(move || serve(s, id, peers, fault, count));
    }
}
