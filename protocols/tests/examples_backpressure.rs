//! Issue 10, "a peer that does not read makes the server's memory grow
//! without limit", tried on the twill-protocols example programs run as
//! child processes, with real loopback sockets:
//!
//! - `reverse_server` (on `Framed`, so with flow control): a client that
//!   pipelines requests and never reads the replies is stalled by the
//!   server, which holds flat memory and still serves others at once; the
//!   client gets every reply, in order, once it reads.
//! - the chat, in each of its three forms (`chat_server`, `chat_protocol`,
//!   `async_chat`; a `BroadcastGroup` with `SlowClient::Disconnect`): users
//!   that never read are disconnected within the grace time, the others are
//!   told they left, an attentive user receives every line, and the
//!   server's memory stays bounded, with one such user or ten (the issue's
//!   "478 MiB for 50 MiB sent").
//!
//! A peer that does not read is a socket whose receive buffer was set to
//! 4 KiB before connecting. Memory is the child's `VmRSS` and `VmHWM`
//! (peak) from `/proc/PID/status`, compared with its RSS right after it
//! started. Run with `--nocapture` to see the measured figures.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use twill::broadcast::DEFAULT_GRACE;
use twill_test_support::client::Client;
use twill_test_support::pressure::{
    assert_stalled_with_flat_memory, connect, connect_small, memory, mib, read_expected,
    read_until_quiet, send_paced, send_until_stalled, End, MIB, SMALL_RCVBUF,
};
use twill_test_support::process::Proc;

/// The examples' cargo package.
const PACKAGE: &str = "twill-protocols";

/// How much a client that never reads tries to send.
const LIMIT: u64 = 200 * MIB;

/// A write that makes no progress for this long means the sending stalled.
const STALL: Duration = Duration::from_secs(1);

/// How much more than its RSS right after start the server may ever hold
/// (the write buffers it may keep, its read buffers, allocator slack):
/// far below what the clients send.
const REVERSE_RSS_MARGIN: u64 = 48 * MIB;
const CHAT_RSS_MARGIN: u64 = 64 * MIB;

/// Reads exactly `expected` from `stream` (within 10 s).
fn expect(stream: &mut TcpStream, expected: &[u8]) {
    read_expected(
        stream,
        0,
        expected.len() as u64,
        Instant::now() + Duration::from_secs(10),
        |at, buf| buf.copy_from_slice(&expected[at as usize..][..buf.len()]),
        |_| {},
    );
}

// ---------------------------------------------------------------------------
// reverse_server
// ---------------------------------------------------------------------------

/// The longest body five digits announce.
const BODY: usize = 99_999;
/// A request or reply: the header and the body.
const FRAME: u64 = 5 + BODY as u64;

/// The body of request `seq`: its number in ten digits, then bytes that
/// differ from one position to the next (so a body reversed or shifted
/// does not match).
fn body(seq: u64) -> Vec<u8> {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    let mut body = TEMPLATE
        .get_or_init(|| {
            (0..BODY)
                .map(|j| ((j * 31 + j / 251) % 251) as u8)
                .collect()
        })
        .clone();
    body[..10].copy_from_slice(format!("{seq:010}").as_bytes());
    body
}

/// A stream of frames, `frame(seq)` being frame `seq` (header and body, of
/// [`FRAME`] bytes), as a `fill(offset, buf)` for the pressure helpers;
/// keeps the last frame it made.
fn frames(frame: impl Fn(u64) -> Vec<u8>) -> impl FnMut(u64, &mut [u8]) {
    let mut last: Option<(u64, Vec<u8>)> = None;
    move |mut offset, buf| {
        let mut done = 0;
        while done < buf.len() {
            let (seq, at) = (offset / FRAME, (offset % FRAME) as usize);
            if last.as_ref().is_none_or(|(made, _)| *made != seq) {
                last = Some((seq, frame(seq)));
            }
            let bytes = &last.as_ref().unwrap().1;
            let n = (bytes.len() - at).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[at..at + n]);
            done += n;
            offset += n as u64;
        }
    }
}

fn request(seq: u64) -> Vec<u8> {
    let mut request = b"99999".to_vec();
    request.extend_from_slice(&body(seq));
    request
}

fn reply(seq: u64) -> Vec<u8> {
    let mut reply = b"99999".to_vec();
    reply.extend(body(seq).iter().rev());
    reply
}

/// A client that pipelines requests with 99999-byte bodies and never reads
/// the replies (4 KiB receive buffer) is stalled long before 200 MiB: the
/// server stops reading it once its replies cannot leave, so its memory
/// stays flat (within 48 MiB of its RSS at start); meanwhile another
/// client's request is answered at once; and when the stalled client reads
/// (and finishes the request it was cut off in), it gets every reply,
/// correct and in order, then a clean EOF: nothing was lost, only delayed.
#[test]
fn reverse_server_stalls_a_client_that_never_reads_with_flat_memory_and_answers_everything() {
    let server = Proc::example(PACKAGE, "reverse_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let at_start = memory(server.pid());
    let began = Instant::now();

    let mut stalled = connect_small(addr, SMALL_RCVBUF);
    let sent = send_until_stalled(&mut stalled, LIMIT, STALL, frames(request));
    let stalled_after = began.elapsed();
    let when_stalled = memory(server.pid());
    eprintln!(
        "reverse_server: {:.1} MiB ({} requests) got through before the writes stalled \
         ({stalled_after:.1?}); server at start {at_start}, when stalled {when_stalled}",
        mib(sent),
        sent / FRAME
    );
    assert_stalled_with_flat_memory(sent, LIMIT, at_start, when_stalled, REVERSE_RSS_MARGIN);

    // Another client is answered at once while the first one is stalled.
    let mut attentive = Client::connect(addr);
    let asked = Instant::now();
    attentive.send(b"00005abcde");
    assert_eq!(attentive.read_exact(10), b"00005edcba");
    let round_trip = asked.elapsed();
    assert!(
        round_trip < Duration::from_secs(2),
        "a round trip took {round_trip:?}"
    );

    // Still stalled: the server did not go back to reading.
    let mut more_requests = frames(request);
    let more = send_until_stalled(&mut stalled, MIB, Duration::from_millis(300), |at, buf| {
        more_requests(sent + at, buf)
    });
    assert!(
        more < 256 * 1024,
        "{more} more bytes went through a stalled connection"
    );
    let sent = sent + more;

    // Reading, the client gets every reply, in order, and then EOF once it
    // has finished its last request and closed its side.
    let (whole, cut) = (sent / FRAME, (sent % FRAME) as usize);
    let replies = whole + u64::from(cut > 0);
    let mut reading = stalled.try_clone().unwrap();
    let read_from = Instant::now();
    let reader = thread::spawn(move || {
        read_expected(
            &mut reading,
            0,
            replies * FRAME,
            Instant::now() + Duration::from_secs(60),
            frames(reply),
            |_| {},
        );
        let read_back = read_from.elapsed();
        let (rest, end) = read_until_quiet(
            &mut reading,
            Duration::from_secs(10),
            1024,
            Instant::now() + Duration::from_secs(15),
        );
        assert!(
            rest.is_empty() && matches!(end, End::Eof),
            "after the replies: {:?} ({end:?}) instead of EOF",
            rest.escape_ascii().to_string()
        );
        read_back
    });
    if cut > 0 {
        stalled.write_all(&request(whole)[cut..]).unwrap();
    }
    stalled.shutdown(Shutdown::Write).unwrap();
    let read_back = reader.join().expect("the stalled client's replies");
    let at_end = memory(server.pid());
    eprintln!(
        "reverse_server: round trip of the other client {round_trip:.1?}; {more} bytes more got \
         through after it; {replies} replies ({:.1} MiB) read back in {read_back:.1?}; \
         server at end {at_end}",
        mib(replies * FRAME)
    );
    assert!(
        at_end.peak <= at_start.rss + REVERSE_RSS_MARGIN,
        "the server grew from {at_start} to {at_end}"
    );
}

// ---------------------------------------------------------------------------
// The chat: chat_server, chat_protocol, async_chat
// ---------------------------------------------------------------------------

const PROMPT: &str = "What's your name?\r\n";

/// The name of the user who sends the chat lines.
const SENDER: &str = "sender";

/// The length of each chat line sent, with its `\n`.
const LINE: u64 = 1024;

/// How many lines go in one burst: 1 MiB.
const PER_BURST: u64 = MIB / LINE;

/// The broadcast group's grace time, which `chat_server` keeps: a user
/// unwritable for longer is disconnected.
const GRACE: Duration = DEFAULT_GRACE;

fn welcome(name: &str) -> String {
    format!("Welcome, {name}!\r\n")
}

fn joined(name: &str) -> String {
    format!("* {name} has joined\r\n")
}

fn left(name: &str) -> String {
    format!("* {name} has left\r\n")
}

/// Chat line `seq` as sent, without its `\n`: its number in ten digits, a
/// space and 1012 letters.
fn chat_line(seq: u64) -> String {
    static FILLER: OnceLock<String> = OnceLock::new();
    let filler = FILLER.get_or_init(|| {
        (0..LINE as usize - 12)
            .map(|j| char::from(b'a' + ((j * 7 + j / 26) % 26) as u8))
            .collect()
    });
    format!("{seq:010} {filler}")
}

/// Chat line `seq` as the others receive it.
fn said(seq: u64) -> String {
    format!("<{SENDER}> {}\r\n", chat_line(seq))
}

/// Connects with a 4 KiB receive buffer and registers as `name`, reading
/// only the prompt and the welcome.
fn join_silent(addr: SocketAddr, name: &str) -> TcpStream {
    let mut stream = connect_small(addr, SMALL_RCVBUF);
    expect(&mut stream, PROMPT.as_bytes());
    stream.write_all(format!("{name}\n").as_bytes()).unwrap();
    expect(&mut stream, welcome(name).as_bytes());
    stream
}

/// Connects and registers as `name`; `attentive`, if there, reads the
/// join announcement.
fn join(addr: SocketAddr, name: &str, attentive: Option<&mut TcpStream>) -> TcpStream {
    let mut stream = connect(addr);
    expect(&mut stream, PROMPT.as_bytes());
    stream.write_all(format!("{name}\n").as_bytes()).unwrap();
    expect(&mut stream, welcome(name).as_bytes());
    if let Some(attentive) = attentive {
        expect(attentive, joined(name).as_bytes());
    }
    stream
}

/// What the attentive user saw.
struct Attentive {
    stream: TcpStream,
    /// When each of the users that were to leave was announced as gone,
    /// and after how many chat lines.
    leaves: Vec<(String, Instant, u64)>,
}

/// Reads `lines` chat lines from `SENDER` on a thread, each checked, and
/// one leave announcement for each of `leavers` among them, anywhere;
/// reports the count of chat lines read to `progress` as it goes. Fails
/// on anything else, or once `deadline` passed.
fn attentive_reader(
    stream: TcpStream,
    lines: u64,
    leavers: Vec<String>,
    progress: Sender<u64>,
    deadline: Instant,
) -> thread::JoinHandle<Attentive> {
    thread::spawn(move || {
        let mut reader = BufReader::with_capacity(256 * 1024, stream);
        let mut waiting: Vec<(String, String)> = leavers
            .into_iter()
            .map(|name| (left(&name), name))
            .collect();
        let mut leaves = Vec::new();
        let mut line = Vec::new();
        let mut seq = 0;
        let mut expected = said(0);
        while seq < lines || !waiting.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the attentive user had {seq} of {lines} lines at the deadline, \
                 and {} leaves still to see",
                waiting.len()
            );
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(_) if line.ends_with(b"\n") => {}
                Ok(_) => panic!(
                    "EOF at line {seq} (after {:?})",
                    line.escape_ascii().to_string()
                ),
                Err(err) => panic!("reading line {seq} failed: {err}"),
            }
            if seq < lines && line == expected.as_bytes() {
                seq += 1;
                let _ = progress.send(seq);
                expected = said(seq);
            } else if let Some(at) = waiting
                .iter()
                .position(|(announcement, _)| line == announcement.as_bytes())
            {
                let (_, name) = waiting.remove(at);
                leaves.push((name, Instant::now(), seq));
            } else {
                panic!(
                    "the attentive user expected line {seq} and got {:?}",
                    line[..line.len().min(80)].escape_ascii().to_string()
                );
            }
        }
        assert!(
            reader.buffer().is_empty(),
            "more after the last line: {:?}",
            reader.buffer().escape_ascii().to_string()
        );
        Attentive {
            stream: reader.into_inner(),
            leaves,
        }
    })
}

/// What a silent user finds once it reads after being disconnected: the
/// lines in `before` (the announcements it never read), then chat lines
/// 0, 1, 2, … — every complete line exactly, and a cut-off last one only
/// the start of the next — up to EOF or a reset. Returns how many chat
/// lines it had.
fn check_silent_user(name: &str, stream: &mut TcpStream, before: &[String]) -> u64 {
    let (got, end) = read_until_quiet(
        stream,
        Duration::from_secs(5),
        64 << 20,
        Instant::now() + Duration::from_secs(20),
    );
    match end {
        End::Eof => {}
        End::Failed(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
        end => panic!("{name}'s connection was not closed: {end:?}"),
    }
    let mut rest = &got[..];
    let mut seq = 0;
    let mut expected_lines = before.iter().cloned().chain((0..).map(said));
    while !rest.is_empty() {
        let expected = expected_lines.next().unwrap();
        let n = expected.len().min(rest.len());
        assert!(
            rest[..n] == expected.as_bytes()[..n],
            "{name} got {:?} instead of {:?} (after {seq} chat lines)",
            rest[..n.min(80)].escape_ascii().to_string(),
            expected[..n.min(80)].escape_default().to_string()
        );
        if n == expected.len() && expected.starts_with('<') {
            seq += 1;
        }
        rest = &rest[n..];
    }
    seq
}

/// Runs the chat example `chat` with `silent` users that never read (4 KiB receive
/// buffers, registered first), then an attentive user and the sender, who
/// sends `total` bytes of 1 KiB lines in 1 MiB bursts, each once the
/// attentive user has the previous one (short bursts to an attentive user
/// must not trip it; a sender at full speed could outrun it on a loaded
/// two-core machine, and a user that stays behind past the grace time, or
/// by 4 MiB, is disconnected by design).
///
/// Checks that the attentive user receives every line, in order, and is
/// told each silent user has left; that each silent user is disconnected
/// by the server (logged as falling behind and leaving) within the grace
/// time and a margin of the first line sent, and finds only whole lines,
/// in order, when it reads; and that the server's memory stays within
/// 64 MiB of its RSS at start.
fn chat_with_silent_users(chat: &str, silent: usize, total: u64) {
    let lines = total / LINE;
    let server = Proc::example(PACKAGE, chat, &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let at_start = memory(server.pid());

    let names: Vec<String> = if silent == 1 {
        vec!["silent".to_owned()]
    } else {
        (0..silent).map(|k| format!("silent{k}")).collect()
    };
    let mut silents: Vec<TcpStream> = names.iter().map(|name| join_silent(addr, name)).collect();
    let mut attentive = join(addr, "attentive", None);
    let mut sender = join(addr, SENDER, Some(&mut attentive));

    let began = Instant::now();
    let deadline = began + Duration::from_secs(120);
    let (progress, lines_received) = mpsc::channel();
    let reader = attentive_reader(attentive, lines, names.clone(), progress, deadline);
    send_paced(
        &mut sender,
        lines,
        PER_BURST,
        |seq, buf| {
            buf.extend_from_slice(chat_line(seq).as_bytes());
            buf.push(b'\n');
        },
        &lines_received,
        deadline,
    );
    let attentive = reader.join().expect("the attentive user");
    let relayed_in = began.elapsed();
    let after_relay = memory(server.pid());
    eprintln!(
        "{chat} with {silent} silent users: {:.0} MiB relayed to the attentive user in \
         {relayed_in:.1?}; server at start {at_start}, after {after_relay}",
        mib(lines * LINE)
    );
    assert!(
        after_relay.peak <= at_start.rss + CHAT_RSS_MARGIN,
        "the server grew from {at_start} to {after_relay} for {:.0} MiB relayed",
        mib(lines * LINE)
    );

    // Each silent user was disconnected within the grace time and a
    // margin, and the server says why.
    for (name, when, after_lines) in &attentive.leaves {
        let took = when.duration_since(began);
        eprintln!(
            "{chat}: {name} was disconnected {took:.1?} after the first line, \
             after {after_lines} lines ({:.1} MiB)",
            mib(after_lines * LINE)
        );
        assert!(
            took <= GRACE + Duration::from_secs(5),
            "{name} was disconnected {took:?} after the first line"
        );
    }
    let log_deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = server.stderr_text();
        if names
            .iter()
            .all(|name| log.contains(&format!("{name} left (")))
        {
            break log;
        }
        assert!(
            Instant::now() < log_deadline,
            "not every silent user's leaving was logged:\n{log}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    for (name, stream) in names.iter().zip(&silents) {
        let peer = stream.local_addr().unwrap();
        assert!(
            log.contains(&format!("disconnecting {peer}: fell behind the broadcast")),
            "{name} ({peer}) was not disconnected for falling behind:\n{log}"
        );
    }

    // What the silent users find when they read at last: the
    // announcements they missed, then whole chat lines in order.
    for (k, (name, stream)) in names.iter().zip(&mut silents).enumerate() {
        let mut before: Vec<String> = names[k + 1..].iter().map(|name| joined(name)).collect();
        before.push(joined("attentive"));
        before.push(joined(SENDER));
        let had = check_silent_user(name, stream, &before);
        eprintln!("{chat}: {name} had received {had} chat lines");
        assert!(had < lines, "{name} received every line");
    }

    // The attentive user is still served.
    let mut stream = attentive.stream;
    sender.write_all(b"still there?\n").unwrap();
    expect(
        &mut stream,
        format!("<{SENDER}> still there?\r\n").as_bytes(),
    );
    let at_end = memory(server.pid());
    eprintln!("{chat}: server at end {at_end}");
    assert!(
        at_end.peak <= at_start.rss + CHAT_RSS_MARGIN,
        "the server grew from {at_start} to {at_end}"
    );
}

/// One user that never reads, 200 MiB of chat: the attentive user gets
/// every line and is told the silent one left; the silent one is
/// disconnected within the grace time; memory stays bounded.
fn disconnects_a_user_that_never_reads_and_relays_every_line_to_the_others(chat: &str) {
    chat_with_silent_users(chat, 1, 200 * MIB);
}

/// The case: ten users that never read while 50 MiB of chat is
/// sent (478 MiB resident before the fix). Each is disconnected, the
/// attentive user gets every line, and memory stays within 64 MiB of the
/// start.
fn with_ten_users_that_never_read_stays_bounded_for_50_mib_sent(chat: &str) {
    chat_with_silent_users(chat, 10, 50 * MIB);
}

// The same bounds for the chat written three ways.
twill_test_support::tests_per_example!(
    [chat_server, chat_protocol, async_chat]
    [
        disconnects_a_user_that_never_reads_and_relays_every_line_to_the_others,
        with_ten_users_that_never_read_stays_bounded_for_50_mib_sent,
    ]
);
