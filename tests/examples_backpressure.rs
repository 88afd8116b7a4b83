//! Issue 10, "a peer that does not read makes the server's memory grow
//! without limit", tried on the example programs of the twill package run
//! as child processes, with real loopback sockets:
//!
//! - `echo_server` (flow control on): a client that sends as much as it can
//!   and never reads is stalled by the server, which holds flat memory and
//!   still serves others at once; what the client sent comes back whole
//!   once it reads.
//! - `broadcast_server` (a `BroadcastGroup` with `SlowClient::DropMessages`):
//!   a client that never reads costs the server a bounded amount of memory
//!   and misses messages, while an attentive one receives every byte.
//!
//! A peer that does not read is a socket whose receive buffer was set to
//! 4 KiB before connecting. Memory is the child's `VmRSS` and `VmHWM`
//! (peak) from `/proc/PID/status`, compared with its RSS right after it
//! started. Run with `--nocapture` to see the measured figures.

use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use twill_test_support::client::Client;
use twill_test_support::pressure::{
    assert_stalled_with_flat_memory, connect, connect_small, memory, mib, read_expected,
    read_until_quiet, send_paced, send_until_stalled, End, MIB, SMALL_RCVBUF,
};
use twill_test_support::process::Proc;

/// The examples' cargo package.
const PACKAGE: &str = "twill";

/// The length of each line of the test streams.
const LINE: u64 = 1024;

/// How much a client that never reads tries to send.
const LIMIT: u64 = 200 * MIB;

/// A write that makes no progress for this long means the sending stalled.
const STALL: Duration = Duration::from_secs(1);

/// How much more than its RSS right after start the server may ever hold
/// (the write buffers it may keep, its read buffers, allocator slack):
/// far below what the clients send.
const ECHO_RSS_MARGIN: u64 = 48 * MIB;
const BROADCAST_RSS_MARGIN: u64 = 64 * MIB;

/// Line `seq` of a test stream: its number in ten digits, a space, 1012
/// bytes of letters (not periodic in a way that lines up with the line),
/// and `\n`; 1024 bytes in all.
fn line(seq: u64) -> [u8; LINE as usize] {
    static TEMPLATE: OnceLock<[u8; LINE as usize]> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let mut line = [0; LINE as usize];
        for (j, byte) in line.iter_mut().enumerate() {
            *byte = b'a' + ((j * 7 + j / 26) % 26) as u8;
        }
        line[10] = b' ';
        line[LINE as usize - 1] = b'\n';
        line
    });
    let mut line = *template;
    let mut n = seq;
    for digit in line[..10].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    line
}

/// Fills `buf` with the line stream (line 0, line 1, …) from byte `offset`.
fn fill_lines(mut offset: u64, buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let (seq, at) = (offset / LINE, (offset % LINE) as usize);
        let n = (LINE as usize - at).min(buf.len() - done);
        buf[done..done + n].copy_from_slice(&line(seq)[at..at + n]);
        done += n;
        offset += n as u64;
    }
}

// ---------------------------------------------------------------------------
// echo_server
// ---------------------------------------------------------------------------

/// A client that sends and never reads its echo (4 KiB receive buffer) is
/// stalled long before 200 MiB: the server stops reading it once its
/// replies cannot leave, so its memory stays flat (within 48 MiB of its
/// RSS at start); meanwhile another client's round trip is served at once;
/// and when the stalled client reads, it gets back exactly what it sent,
/// then a clean EOF: nothing was lost, only delayed.
#[test]
fn echo_server_stalls_a_client_that_never_reads_with_flat_memory_and_loses_nothing() {
    let server = Proc::example(PACKAGE, "echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let at_start = memory(server.pid());
    let began = Instant::now();

    let mut stalled = connect_small(addr, SMALL_RCVBUF);
    let sent = send_until_stalled(&mut stalled, LIMIT, STALL, fill_lines);
    let stalled_after = began.elapsed();
    let when_stalled = memory(server.pid());
    eprintln!(
        "echo_server: {:.1} MiB got through before the writes stalled ({stalled_after:.1?}); \
         server at start {at_start}, when stalled {when_stalled}",
        mib(sent)
    );
    assert_stalled_with_flat_memory(sent, LIMIT, at_start, when_stalled, ECHO_RSS_MARGIN);

    // Another client is served at once while the first one is stalled.
    let mut attentive = Client::connect(addr);
    let asked = Instant::now();
    attentive.send(b"anyone there?\n");
    assert_eq!(attentive.line(), b"anyone there?\n");
    let round_trip = asked.elapsed();
    assert!(
        round_trip < Duration::from_secs(2),
        "a round trip took {round_trip:?}"
    );

    // Still stalled: the server did not go back to reading.
    let more = send_until_stalled(&mut stalled, MIB, Duration::from_millis(300), |at, buf| {
        fill_lines(sent + at, buf)
    });
    assert!(
        more < 256 * 1024,
        "{more} more bytes went through a stalled connection"
    );
    let sent = sent + more;

    // Reading, the client gets back exactly what it sent.
    let read_from = Instant::now();
    read_expected(
        &mut stalled,
        0,
        sent,
        Instant::now() + Duration::from_secs(60),
        fill_lines,
        |_| {},
    );
    let read_back = read_from.elapsed();
    stalled.shutdown(Shutdown::Write).unwrap();
    let (rest, end) = read_until_quiet(
        &mut stalled,
        Duration::from_secs(10),
        1024,
        Instant::now() + Duration::from_secs(15),
    );
    assert!(
        rest.is_empty() && matches!(end, End::Eof),
        "after the echo: {:?} ({end:?}) instead of EOF",
        rest.escape_ascii().to_string()
    );
    let at_end = memory(server.pid());
    eprintln!(
        "echo_server: round trip of the other client {round_trip:.1?}; {more} bytes more got \
         through after it; {:.1} MiB read back in {read_back:.1?}; server at end {at_end}",
        mib(sent)
    );
    assert!(
        at_end.peak <= at_start.rss + ECHO_RSS_MARGIN,
        "the server grew from {at_start} to {at_end}"
    );
}

// ---------------------------------------------------------------------------
// broadcast_server
// ---------------------------------------------------------------------------

fn welcome(number: usize) -> Vec<u8> {
    format!("Welcome to Spread Site, you are client user number {number}!\n").into_bytes()
}

/// With a client that never reads (4 KiB receive buffer) in the group, a
/// sender relays 200 MiB of 1 KiB numbered lines: an attentive client
/// receives all 200 MiB exactly; the server's memory stays within 64 MiB of
/// its RSS at start; the silent client, reading at last, finds a whole
/// prefix of the stream and nothing after it (the messages it missed were
/// skipped, counted in the server's log), and once it has drained it gets
/// the next message again.
///
/// The Spreader relays what it reads as it reads it, so its messages are
/// its reads, not lines: what the silent client gets ends where a read
/// ended, which may be inside a line.
///
/// The sender goes in bursts of 1 MiB, each once the attentive client has
/// the previous one: short bursts to an attentive client must not trip it.
/// A sender at full speed could outrun the attentive client on a loaded
/// two-core machine, and a client that stays behind past the grace time, or
/// by 4 MiB, misses messages by design.
#[test]
fn broadcast_server_gives_an_attentive_client_everything_and_a_silent_one_a_bounded_prefix() {
    const LINES: u64 = LIMIT / LINE;
    const PER_BURST: u64 = MIB / LINE;
    let server = Proc::example(PACKAGE, "broadcast_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let at_start = memory(server.pid());

    let mut silent = connect_small(addr, SMALL_RCVBUF);
    let silent_peer = silent.local_addr().unwrap();
    server.wait_stderr("new connect: 1");
    let mut attentive = connect(addr);
    read_expected(
        &mut attentive,
        0,
        welcome(2).len() as u64,
        Instant::now() + Duration::from_secs(10),
        |at, buf| buf.copy_from_slice(&welcome(2)[at as usize..][..buf.len()]),
        |_| {},
    );
    let mut sender = connect(addr);
    read_expected(
        &mut sender,
        0,
        welcome(3).len() as u64,
        Instant::now() + Duration::from_secs(10),
        |at, buf| buf.copy_from_slice(&welcome(3)[at as usize..][..buf.len()]),
        |_| {},
    );

    let began = Instant::now();
    let deadline = began + Duration::from_secs(120);
    let (received, lines_received) = mpsc::channel();
    let reader = thread::spawn(move || {
        read_expected(&mut attentive, 0, LIMIT, deadline, fill_lines, |at| {
            let _ = received.send(at / LINE);
        });
        attentive
    });
    send_paced(
        &mut sender,
        LINES,
        PER_BURST,
        |seq, buf| buf.extend_from_slice(&line(seq)),
        &lines_received,
        deadline,
    );
    let mut attentive = reader.join().expect("the attentive client");
    let relayed_in = began.elapsed();
    let after_relay = memory(server.pid());
    eprintln!(
        "broadcast_server: 200 MiB relayed to the attentive client in {relayed_in:.1?}; \
         server at start {at_start}, after {after_relay}"
    );
    assert!(
        after_relay.peak <= at_start.rss + BROADCAST_RSS_MARGIN,
        "the server grew from {at_start} to {after_relay} for 200 MiB relayed"
    );

    // The silent client got a whole prefix of the stream, and no more.
    let (got, end) = read_until_quiet(
        &mut silent,
        Duration::from_secs(1),
        usize::try_from(LIMIT).unwrap(),
        Instant::now() + Duration::from_secs(30),
    );
    assert!(
        matches!(end, End::Quiet),
        "the silent client's connection ended: {end:?}"
    );
    let greeting = welcome(1);
    assert_eq!(
        got[..greeting.len().min(got.len())],
        greeting[..],
        "the silent client's welcome"
    );
    let prefix = &got[greeting.len()..];
    let mut expected = vec![0; prefix.len()];
    fill_lines(0, &mut expected);
    if let Some(first) = (0..prefix.len()).find(|&i| prefix[i] != expected[i]) {
        panic!(
            "byte {first} of what the silent client got is not the stream's (got {:?})",
            prefix[first..prefix.len().min(first + 40)]
                .escape_ascii()
                .to_string()
        );
    }
    eprintln!(
        "broadcast_server: the silent client got the first {:.2} MiB ({} lines) of 200 MiB",
        mib(prefix.len() as u64),
        prefix.len() as u64 / LINE
    );
    assert!(
        !prefix.is_empty() && (prefix.len() as u64) < 32 * MIB,
        "the silent client got {} bytes of the stream",
        prefix.len()
    );

    // Drained, it is sent messages again: the next line reaches both.
    sender.write_all(&line(LINES)).unwrap();
    let soon = Instant::now() + Duration::from_secs(10);
    read_expected(&mut attentive, LIMIT, LINE, soon, fill_lines, |_| {});
    read_expected(&mut silent, LIMIT, LINE, soon, fill_lines, |_| {});

    // The server counted what it skipped for the silent client.
    drop(silent);
    let lost = server.wait_stderr(&format!("({silent_peer}: "));
    let skipped: u64 = lost
        .split("; ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of skipped messages in {lost:?}"));
    assert!(skipped > 0, "nothing was skipped: {lost:?}");
    let log = server.stderr_text();
    assert!(
        log.contains(&format!("{silent_peer} fell behind the broadcast")),
        "{log}"
    );
    let at_end = memory(server.pid());
    eprintln!("broadcast_server: {skipped} messages skipped for the silent client; server at end {at_end}");
    assert!(
        at_end.peak <= at_start.rss + BROADCAST_RSS_MARGIN,
        "the server grew from {at_start} to {at_end}"
    );
}
