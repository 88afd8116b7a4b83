//! End-to-end checks of `fanout_bench`: it measures twill's
//! `broadcast_server` and the tokio Spreader, with and without slow
//! clients, and its verification catches a Spreader that loses,
//! duplicates, corrupts, misdirects or splits messages; with slow clients
//! it lets a server drop messages for (or disconnect) a slow client, but
//! not for an attentive one, and still catches a slow client's duplicate.
//!
//! The faulty Spreaders are plain threads: one reading each client, one
//! writing each client (fed by a channel, so that a slow reader holds up
//! nobody else). The runner starts servers as programs, so this test
//! binary doubles as one: a small script runs it with the `fake_spreader`
//! test selected and `TWILL_BENCH_FAKE_SPREADER` naming the fault.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
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

/// With a quarter of the clients (2 of 8) reading slowly, and the same run
/// without for the comparison: twill's server passes verification and the
/// report has the slow-client table and the summary.
#[test]
fn measures_twill_broadcast_server_with_slow_clients() {
    let server = broadcast_server();
    let out = fanout(
        &["--slow", "0,25", "--slow-rate", "4096"],
        &format!("twill={}", server.display()),
        None,
    );
    let stdout = assert_ok(&out, "twill");
    assert!(stdout.contains("2 of them (25 %) slow readers"), "{stdout}");
    assert!(stdout.contains("| twill | 25 | "), "{stdout}");
    // twill's server logs what it skipped for each client as it goes.
    assert!(stdout.contains("; the server dropped "), "{stdout}");
    assert!(!stdout.contains("; the server dropped n/a"), "{stdout}");
    assert!(
        stdout.contains("twill: attentive deliveries per server CPU-second with 25 % slow"),
        "{stdout}"
    );
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
    assert_failed(out, "fake round 1: VERIFY ERROR", needle);
}

/// Asserts that the run failed with `what` after `FAILED ` and a message
/// containing `needle`.
fn assert_failed(out: &Output, what: &str, needle: &str) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("FAILED {what}")) && stdout.contains(needle),
        "expected a failure {what:?} mentioning {needle:?}:\n{stdout}"
    );
    assert!(stdout.contains("| fake | failed |"), "{stdout}");
}

/// The number after `label ` in the round line of a run with slow clients.
fn slow_figure(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("round ") && l.contains("slow clients:"))
        .unwrap_or_else(|| panic!("no round line with slow clients:\n{stdout}"));
    let at = line.find(&format!("{label} ")).unwrap() + label.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

// With `--clients 8 --slow 25` clients 3 and 7 are the slow ones (spread
// evenly: see `is_slow` in the benchmark's load.rs).
const SLOW_ARGS: [&str; 2] = ["--slow", "25"];

#[test]
fn a_slow_client_may_miss_messages() {
    let out = run_fake("drop-to:3", &SLOW_ARGS);
    let stdout = assert_ok(&out, "fake");
    assert!(slow_figure(&stdout, "missed") > 0, "{stdout}");
    assert_eq!(slow_figure(&stdout, "disconnected"), 0, "{stdout}");
}

#[test]
fn a_message_dropped_for_an_attentive_client_is_caught_with_slow_clients() {
    let out = run_fake(
        "drop-to:2",
        &["--slow", "25", "--window", "2", "--stall", "1"],
    );
    // Seen as a gap when the sender's next message gets there; as a stall
    // when the fake's read held both of its outstanding messages.
    let stdout = text(&out.stdout);
    let needle = if stdout.contains("message(s) lost") {
        "message(s) lost"
    } else {
        "missing at client(s) 2"
    };
    assert_failed(&out, "fake (slow 25 %) round 1: VERIFY ERROR", needle);
}

#[test]
fn a_message_dropped_for_an_attentive_client_stalls_and_is_caught_with_slow_clients() {
    let out = run_fake("drop-to:2", &["--slow", "25", "--stall", "0.5"]);
    assert_failed(
        &out,
        "fake (slow 25 %) round 1: VERIFY ERROR",
        "missing at client(s) 2",
    );
}

#[test]
fn a_duplicate_for_a_slow_client_is_caught() {
    let out = run_fake("duplicate-to:3", &SLOW_ARGS);
    assert_failed(
        &out,
        "fake (slow 25 %) round 1: VERIFY ERROR",
        "again (duplicated or reordered)",
    );
}

#[test]
fn a_slow_client_disconnected_is_counted_not_failed() {
    let out = run_fake("close-to:3", &SLOW_ARGS);
    let stdout = assert_ok(&out, "fake");
    assert_eq!(slow_figure(&stdout, "disconnected"), 1, "{stdout}");
}

#[test]
fn an_attentive_client_disconnected_fails() {
    let out = run_fake("close-to:2", &SLOW_ARGS);
    assert_failed(&out, "fake (slow 25 %) round 1: ", "client 2");
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
    /// Leaves out every [`DROP_EVERY`]th chunk for client N, as a server
    /// bounding its memory does for a slow client.
    DropTo(usize),
    /// Sends one chunk twice to client N.
    DuplicateTo(usize),
    /// Closes client N's connection after a few chunks, as a server may do
    /// to a slow client.
    CloseTo(usize),
}

impl Fault {
    /// Parses the fault's name (`drop-to:3` names client 3).
    fn parse(name: &str) -> Option<Fault> {
        let target = |n: &str| n.parse::<usize>().ok();
        Some(match name.split_once(':') {
            None => match name {
                "none" => Fault::None,
                "drop" => Fault::Drop,
                "duplicate" => Fault::Duplicate,
                "corrupt" => Fault::Corrupt,
                "echo" => Fault::Echo,
                "split" => Fault::Split,
                "welcome" => Fault::Welcome,
                _ => return None,
            },
            Some(("drop-to", n)) => Fault::DropTo(target(n)?),
            Some(("duplicate-to", n)) => Fault::DuplicateTo(target(n)?),
            Some(("close-to", n)) => Fault::CloseTo(target(n)?),
            _ => return None,
        })
    }
}

/// The relay (counted over all) at which the fault happens.
const FAULT_AT: usize = 300;
/// The relay to its target client at which a targeted fault starts.
const TARGET_AT: usize = 30;
/// A `DropTo` fault leaves out every this many chunks.
const DROP_EVERY: usize = 10;

struct Peer {
    id: usize,
    /// What its writer thread is to send it.
    out: mpsc::Sender<Vec<u8>>,
    /// Its connection, to close it.
    stream: TcpStream,
    /// The rest of a split chunk, sent after the next one.
    tail: Option<Vec<u8>>,
    /// Chunks relayed to it so far.
    relays: usize,
}

fn relay(peers: &mut [Peer], from: usize, chunk: &[u8], fault: Fault, count: &AtomicUsize) {
    let mut echo = false;
    for p in peers.iter_mut().filter(|p| p.id != from) {
        let at = count.fetch_add(1, Ordering::Relaxed) == FAULT_AT;
        p.relays += 1;
        let to_target = |n: usize| p.id == n && p.relays >= TARGET_AT;
        // A send fails only once the writer gave up on a closed client.
        let send = |bytes: &[u8]| {
            let _ = p.out.send(bytes.to_vec());
        };
        match (at, fault) {
            // The first message of the chunk (there may be more).
            (true, Fault::Drop) => send(&chunk[16.min(chunk.len())..]),
            (true, Fault::Duplicate) => {
                send(chunk);
                send(chunk);
            }
            (true, Fault::Corrupt) => {
                let mut bad = chunk.to_vec();
                let i = bad.len() - 2;
                bad[i] ^= 0x04;
                send(&bad);
            }
            (true, Fault::Split) => {
                let half = chunk.len() / 2;
                p.tail = Some(chunk[half..].to_vec());
                send(&chunk[..half]);
            }
            (_, Fault::DropTo(n)) if to_target(n) && p.relays % DROP_EVERY == 0 => {}
            (_, Fault::DuplicateTo(n)) if to_target(n) && p.relays == TARGET_AT => {
                send(chunk);
                send(chunk);
            }
            (_, Fault::CloseTo(n)) if to_target(n) && p.relays == TARGET_AT => {
                let _ = p.stream.shutdown(Shutdown::Both);
            }
            _ => {
                echo |= at && fault == Fault::Echo;
                send(chunk);
                if let Some(tail) = p.tail.take() {
                    send(&tail);
                }
            }
        }
    }
    if echo {
        if let Some(me) = peers.iter_mut().find(|p| p.id == from) {
            let _ = me.out.send(chunk.to_vec());
        }
    }
}

/// Reads client `id` and relays what it sends until it closes.
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

/// Writes what is queued for one client, in order, until its queue is
/// dropped or the client is gone.
fn write_queue(mut stream: TcpStream, queue: mpsc::Receiver<Vec<u8>>) {
    for bytes in queue {
        if stream.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// Not a test on its own: with `TWILL_BENCH_FAKE_SPREADER` set to a fault
/// (or `none`), this process serves as a Spreader with that fault for the
/// tests above, announcing itself with a log-style prefix, until killed.
#[test]
fn fake_spreader() {
    let Some(fault) = std::env::var(FAKE_ENV)
        .ok()
        .as_deref()
        .and_then(Fault::parse)
    else {
        return;
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    eprintln!("[fake INFO] listening on {}", l.local_addr().unwrap());
    let peers: Arc<Mutex<Vec<Peer>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    for (id, s) in l.incoming().flatten().enumerate() {
        let _ = s.set_nodelay(true);
        let mut list = peers.lock().unwrap();
        let number = list.len() + usize::from(fault != Fault::Welcome);
        let (out, queue) = mpsc::channel();
        let _ = out.send(
            format!("Welcome to Spread Site, you are client user number {number}!\n").into_bytes(),
        );
        let writer = s.try_clone().unwrap();
        std::thread::spawn(move || write_queue(writer, queue));
        list.push(Peer {
            id,
            out,
            stream: s.try_clone().unwrap(),
            tail: None,
            relays: 0,
        });
        drop(list);
        let (peers, count) = (peers.clone(), count.clone());
        std::thread::spawn(move || serve(s, id, peers, fault, count));
    }
}
