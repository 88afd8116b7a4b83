//! The twill-protocols example programs, run as child processes against
//! real loopback sockets: the chat (Twisted's LineReceiver chat, reference
//! section 7.1, with join and leave announcements) in its three forms,
//! `reverse_server` (five-digit length header, reversed body) and
//! `codec_pipeline` (the pyboot-netty frames, as a server and as a client).
//!
//! The chat's specification is written once, as functions of the example's
//! name, and run against each form: `chat_server` (the codec layer),
//! `chat_protocol` (a Twisted-style `LineReceiver`) and `async_chat` (tasks
//! on `twill::stream`); each gets a module of tests named after it, e.g.
//! `async_chat::relays_each_line_to_every_other_registered_user_only`.
//!
//! The examples are built once with `cargo build -p twill-protocols
//! --examples` (by `twill_test_support::process`); each server child
//! listens on 127.0.0.1:0 and the test reads the port from its `listening
//! on ADDR` log line. Children are killed when a test ends, pass or fail.
//! Every wait is bounded.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use twill_test_support::client::Client;
use twill_test_support::process::Proc;

mod chat_support;
use chat_support::*;

/// The examples' cargo package.
const PACKAGE: &str = "twill-protocols";

// ---------------------------------------------------------------------------
// The chat: chat_server, chat_protocol, async_chat
// ---------------------------------------------------------------------------

// One module per chat example, each running every specification below;
// `chat_server_on_3_workers` is `chat_server --threads 3`, its users spread
// over three workers of a reactor group.
twill_test_support::tests_per_example!(
    [chat_server, chat_protocol, async_chat, chat_server_on_3_workers]
    [
        asks_for_a_name_and_refuses_a_taken_one_until_a_free_one_comes,
        relays_each_line_to_every_other_registered_user_only,
        announces_joins_and_leaves_to_the_others,
        frees_the_name_of_a_user_who_disconnects,
        takes_lf_or_crlf_split_anywhere_and_replies_with_crlf,
        closes_only_the_connection_that_sends_a_line_over_16384_bytes,
        takes_a_line_of_exactly_16384_bytes_however_it_ends_and_arrives,
        closes_a_connection_whose_line_passes_16384_bytes_by_its_last_byte,
        closes_a_connection_as_soon_as_its_line_passes_the_limit,
        closes_only_the_connection_that_sends_a_line_that_is_not_utf8,
        on_sigterm_closes_connections_cleanly_and_exits_with_status_0,
        with_a_bad_command_line_prints_its_usage_and_exits_with_status_2,
    ]
);

/// The example a module of the chat's specification runs, and the
/// arguments it takes after its address.
fn chat_command(chat: &str) -> (&str, &'static [&'static str]) {
    match chat {
        "chat_server_on_3_workers" => ("chat_server", &["--threads", "3"]),
        example => (example, &[]),
    }
}

/// A connection that has read the prompt and has no name yet.
fn newcomer(addr: SocketAddr) -> Client {
    let mut client = Client::connect(addr);
    assert_eq!(client.line_str(), PROMPT);
    client
}

/// Connects and registers as `name`; each of `others` (already registered)
/// reads the join announcement.
fn join(addr: SocketAddr, name: &str, others: &mut [Client]) -> Client {
    let mut client = newcomer(addr);
    client.send(format!("{name}\r\n").as_bytes());
    assert_eq!(client.line_str(), welcome(name));
    for other in others {
        assert_eq!(other.line_str(), joined(name));
    }
    client
}

/// The chat example `chat` with `names` registered, in order.
fn chat_with(chat: &str, names: &[&str]) -> (Proc, SocketAddr, Vec<Client>) {
    let (example, options) = chat_command(chat);
    let args: Vec<&str> = ["127.0.0.1:0"].iter().chain(options).copied().collect();
    let server = Proc::example(PACKAGE, example, &args);
    let addr = server.listening_addr();
    let mut clients = Vec::new();
    for name in names {
        let client = join(addr, name, &mut clients);
        clients.push(client);
    }
    (server, addr, clients)
}

fn asks_for_a_name_and_refuses_a_taken_one_until_a_free_one_comes(chat: &str) {
    let (_server, addr, mut users) = chat_with(chat, &["alice"]);
    let mut second = newcomer(addr);
    second.send(b"alice\r\n");
    assert_eq!(second.line_str(), TAKEN);
    // Still choosing: a second try is a name proposal again.
    second.send(b"alice\n");
    assert_eq!(second.line_str(), TAKEN);
    // Names are compared exactly, as in Twisted.
    second.send(b"Alice\r\n");
    assert_eq!(second.line_str(), welcome("Alice"));
    assert_eq!(users[0].line_str(), joined("Alice"));
    // The refused attempts were not announced to alice (she would have
    // read them before the join).
    second.send(b"hi\r\n");
    assert_eq!(users[0].line_str(), said("Alice", "hi"));
}

fn relays_each_line_to_every_other_registered_user_only(chat: &str) {
    let (_server, addr, mut users) = chat_with(chat, &["alice", "bob", "carol"]);
    // Connected, but still choosing a name.
    let mut dave = newcomer(addr);

    users[0].send("h\u{e9}llo, everyone \u{2603}\r\n".as_bytes());
    let expected = said("alice", "h\u{e9}llo, everyone \u{2603}");
    assert_eq!(users[1].line_str(), expected);
    assert_eq!(users[2].line_str(), expected);
    // Had alice got her own line back, she would read it before this.
    users[1].send(b"hi alice\r\n");
    assert_eq!(users[0].line_str(), said("bob", "hi alice"));
    assert_eq!(users[2].line_str(), said("bob", "hi alice"));
    users[2].send(b"hi both\r\n");
    assert_eq!(users[0].line_str(), said("carol", "hi both"));
    assert_eq!(users[1].line_str(), said("carol", "hi both"));

    // dave got none of it: his next line answers his name.
    dave.send(b"dave\r\n");
    assert_eq!(dave.line_str(), welcome("dave"));
    for user in &mut users {
        assert_eq!(user.line_str(), joined("dave"));
    }
    dave.send(b"hello\r\n");
    for user in &mut users {
        assert_eq!(user.line_str(), said("dave", "hello"));
    }
}

fn announces_joins_and_leaves_to_the_others(chat: &str) {
    // chat_with checks that alice read "* bob has joined".
    let (server, addr, mut users) = chat_with(chat, &["alice", "bob"]);
    let mut carol = join(addr, "carol", &mut users);
    // carol is not told about her own join: her next line is alice's.
    users[0].send(b"hi carol\r\n");
    assert_eq!(carol.line_str(), said("alice", "hi carol"));
    assert_eq!(users[1].line_str(), said("alice", "hi carol"));

    // bob leaves: both others are told.
    drop(users.remove(1));
    assert_eq!(users[0].line_str(), left("bob"));
    assert_eq!(carol.line_str(), left("bob"));

    // Someone who never chose a name leaves unannounced.
    let nameless = newcomer(addr);
    drop(nameless);
    server.wait_stderr("left without a name");
    users[0].send(b"still two of us\r\n");
    assert_eq!(carol.line_str(), said("alice", "still two of us"));
}

fn frees_the_name_of_a_user_who_disconnects(chat: &str) {
    let (_server, addr, mut users) = chat_with(chat, &["alice", "bob"]);
    let mut impostor = newcomer(addr);
    impostor.send(b"alice\r\n");
    assert_eq!(impostor.line_str(), TAKEN);

    drop(users.remove(0));
    assert_eq!(users[0].line_str(), left("alice"));
    // The waiting connection and a new one may both ask for it; the first
    // gets it.
    impostor.send(b"alice\r\n");
    assert_eq!(impostor.line_str(), welcome("alice"));
    assert_eq!(users[0].line_str(), joined("alice"));
    let mut late = newcomer(addr);
    late.send(b"alice\r\n");
    assert_eq!(late.line_str(), TAKEN);

    users[0].send(b"welcome back\r\n");
    assert_eq!(impostor.line_str(), said("bob", "welcome back"));
}

fn takes_lf_or_crlf_split_anywhere_and_replies_with_crlf(chat: &str) {
    let (_server, addr, mut users) = chat_with(chat, &["alice", "bob"]);
    // nc sends "\n", telnet "\r\n"; a line may come in pieces, the "\r\n"
    // split too. A lone "\r" inside a line is data.
    let pieces: [&[u8]; 7] = [
        b"from nc\n",
        b"from telnet\r\n",
        b"in ",
        b"pieces\r",
        b"\n",
        b"a\rb\n",
        b"two\nat once\r\n",
    ];
    for piece in pieces {
        users[0].send(piece);
        std::thread::sleep(Duration::from_millis(20));
    }
    for line in [
        "from nc",
        "from telnet",
        "in pieces",
        "a\rb",
        "two",
        "at once",
    ] {
        assert_eq!(users[1].line_str(), said("alice", line));
    }
    // Names too.
    let mut carol = newcomer(addr);
    carol.send(b"ca");
    std::thread::sleep(Duration::from_millis(20));
    carol.send(b"rol\n");
    assert_eq!(carol.line_str(), welcome("carol"));
}

fn closes_only_the_connection_that_sends_a_line_over_16384_bytes(chat: &str) {
    let (_server, addr, mut users) = chat_with(chat, &["alice", "bob", "carol"]);
    // A line of exactly the maximum is fine.
    let longest = "x".repeat(MAX_LINE);
    users[0].send(format!("{longest}\r\n").as_bytes());
    assert_eq!(users[1].line_str(), said("alice", &longest));
    assert_eq!(users[2].line_str(), said("alice", &longest));

    // One byte more closes carol's connection, and only hers.
    let too_long = format!("{}\r\n", "y".repeat(MAX_LINE + 1));
    let _ = users[2].try_send(too_long.as_bytes());
    users[2].expect_closed();
    drop(users.remove(2));
    assert_eq!(users[0].line_str(), left("carol"));
    assert_eq!(users[1].line_str(), left("carol"));

    // Nothing of the long line was relayed; the others chat on.
    users[0].send(b"what happened?\r\n");
    assert_eq!(users[1].line_str(), said("alice", "what happened?"));
    users[1].send(b"carol said too much\r\n");
    assert_eq!(users[0].line_str(), said("bob", "carol said too much"));
    // Her name is free again.
    let mut carol = join(addr, "carol", &mut users);
    users[0].send(b"hi again\r\n");
    assert_eq!(carol.line_str(), said("alice", "hi again"));
}

/// The longest line is relayed whatever its line ending and however it is
/// cut, even between its `\r` and its `\n`, when the `\r` may still be
/// the start of the line ending or one byte too many.
fn takes_a_line_of_exactly_16384_bytes_however_it_ends_and_arrives(chat: &str) {
    let (_server, _addr, mut users) = chat_with(chat, &["alice", "bob"]);
    let longest = "x".repeat(MAX_LINE);
    let (head, tail) = longest.split_at(MAX_LINE / 2);
    let cuts: [&[&str]; 4] = [
        &[&format!("{longest}\n")],
        &[&format!("{longest}\r\n")],
        &[&format!("{longest}\r"), "\n"],
        &[head, &format!("{tail}\r"), "\n"],
    ];
    for pieces in cuts {
        for piece in pieces {
            users[0].send(piece.as_bytes());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(users[1].line_str(), said("alice", &longest), "{pieces:?}");
    }
}

/// One byte past the limit closes the connection whatever the byte: one
/// that ends the line, or one after a `\r` that could have ended the
/// longest line.
fn closes_a_connection_whose_line_passes_16384_bytes_by_its_last_byte(chat: &str) {
    let (_server, _addr, mut users) = chat_with(chat, &["alice", "bob", "carol"]);
    let _ = users[2].try_send(format!("{}\n", "y".repeat(MAX_LINE + 1)).as_bytes());
    users[2].expect_closed();
    drop(users.remove(2));
    assert_eq!(users[0].line_str(), left("carol"));
    assert_eq!(users[1].line_str(), left("carol"));

    users[1].send(format!("{}\r", "z".repeat(MAX_LINE)).as_bytes());
    std::thread::sleep(Duration::from_millis(20));
    let _ = users[1].try_send(b"z\n");
    users[1].expect_closed();
    drop(users.remove(1));
    assert_eq!(users[0].line_str(), left("bob"));
}

fn closes_a_connection_as_soon_as_its_line_passes_the_limit(chat: &str) {
    let (_server, _addr, mut users) = chat_with(chat, &["alice", "bob"]);
    // No line ending ever comes: the limit alone closes the connection.
    let _ = users[1].try_send("z".repeat(MAX_LINE + 1).as_bytes());
    users[1].expect_closed();
    drop(users.remove(1));
    assert_eq!(users[0].line_str(), left("bob"));
}

fn closes_only_the_connection_that_sends_a_line_that_is_not_utf8(chat: &str) {
    let (_server, _addr, mut users) = chat_with(chat, &["alice", "bob", "carol"]);
    users[1].send(b"caf\xe9\r\n");
    users[1].expect_closed();
    drop(users.remove(1));
    assert_eq!(users[0].line_str(), left("bob"));
    assert_eq!(users[1].line_str(), left("bob"));
    users[0].send(b"ok\r\n");
    assert_eq!(users[1].line_str(), said("alice", "ok"));
}

fn on_sigterm_closes_connections_cleanly_and_exits_with_status_0(chat: &str) {
    let (mut server, addr, mut users) = chat_with(chat, &["alice", "bob"]);
    let mut nameless = newcomer(addr);
    users[0].send(b"last words\r\n");
    assert_eq!(users[1].line_str(), said("alice", "last words"));
    server.terminate();
    for user in &mut users {
        user.expect_eof();
    }
    nameless.expect_eof();
    drop((users, nameless));
    server.expect_clean_exit();
}

fn with_a_bad_command_line_prints_its_usage_and_exits_with_status_2(chat: &str) {
    for args in [
        &["--tls", "cert.pem"][..],
        &["--tsl"],
        &["127.0.0.1:0", "extra"],
    ] {
        // Only the example's own name: these command lines are bad anyway.
        let (chat, _) = chat_command(chat);
        let mut server = Proc::example(PACKAGE, chat, args);
        server.wait_stderr(&format!("usage: {chat} [ENDPOINT] [--tls CERT KEY]"));
        let status = server.wait_exit();
        assert_eq!(status.code(), Some(2), "{args:?}: {}", server.transcript());
    }
}

// ---------------------------------------------------------------------------
// reverse_server
// ---------------------------------------------------------------------------

/// A request (or reply): the five-digit header and the body.
fn framed(body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= 99_999);
    let mut out = format!("{:05}", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn reversed(body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.reverse();
    framed(&body)
}

/// Sends `requests` in one write and checks the replies, in order.
fn round_trip(client: &mut Client, bodies: &[&[u8]]) {
    let request: Vec<u8> = bodies.iter().flat_map(|body| framed(body)).collect();
    let expected: Vec<u8> = bodies.iter().flat_map(|body| reversed(body)).collect();
    client.send(&request);
    let reply = client.read_exact(expected.len());
    assert_eq!(
        reply.escape_ascii().to_string(),
        expected.escape_ascii().to_string()
    );
}

fn reverse_server() -> (Proc, SocketAddr) {
    let server = Proc::example(PACKAGE, "reverse_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    (server, addr)
}

#[test]
fn reverse_server_replies_with_the_same_header_and_the_body_reversed() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    client.send(b"00005abcde");
    assert_eq!(client.read_exact(10), b"00005edcba");
    client.send(b"00000");
    assert_eq!(client.read_exact(5), b"00000");
    client.send(b"00001a");
    assert_eq!(client.read_exact(6), b"00001a");
    client.expect_silence();
}

#[test]
fn reverse_server_reverses_bytes_not_characters() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    // "é" is two bytes: they come back swapped (not UTF-8 any more).
    client.send(&framed("h\u{e9}!".as_bytes()));
    assert_eq!(client.read_exact(9), b"00004!\xa9\xc3h");
    // Any bytes, line endings and NULs included.
    round_trip(&mut client, &[b"\xff\x00\x80\r\n 12345"]);
}

#[test]
fn reverse_server_answers_pipelined_requests_in_order() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    let bodies: Vec<Vec<u8>> = (0..500)
        .map(|i: usize| (0..i % 37).map(|j| b'a' + ((i + j) % 26) as u8).collect())
        .collect();
    let bodies: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    round_trip(&mut client, &bodies);
    // The connection goes on.
    round_trip(&mut client, &[b"after"]);
}

#[test]
fn reverse_server_handles_requests_split_at_every_byte() {
    let (_server, addr) = reverse_server();
    let bodies: [&[u8]; 3] = [b"hello", b"", b"world!"];
    let stream: Vec<u8> = bodies.iter().flat_map(|body| framed(body)).collect();
    let expected: Vec<u8> = bodies.iter().flat_map(|body| reversed(body)).collect();

    // Split in two at each position, one connection per split.
    for at in 1..stream.len() {
        let mut client = Client::connect(addr);
        client.send(&stream[..at]);
        std::thread::sleep(Duration::from_millis(5));
        client.send(&stream[at..]);
        let reply = client.read_exact(expected.len());
        assert_eq!(reply, expected, "split at byte {at}");
    }

    // One byte at a time: no reply before a request's last byte.
    let mut client = Client::connect(addr);
    let first = framed(b"hello");
    for byte in &first[..first.len() - 1] {
        client.send(&[*byte]);
        std::thread::sleep(Duration::from_millis(5));
    }
    client.expect_silence();
    client.send(&first[first.len() - 1..]);
    assert_eq!(client.read_exact(10), b"00005olleh");
    for byte in &stream[first.len()..] {
        client.send(&[*byte]);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(client.read_exact(expected.len() - 10), &expected[10..]);
}

#[test]
fn reverse_server_takes_the_longest_body_five_digits_allow() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    let body: Vec<u8> = (0..99_999u32).map(|i| (i % 251) as u8).collect();
    round_trip(&mut client, &[&body]);
}

#[test]
fn reverse_server_closes_only_the_connection_with_a_non_numeric_header() {
    let (server, addr) = reverse_server();
    let mut good = Client::connect(addr);
    round_trip(&mut good, &[b"before"]);

    // The connection closes as soon as the bad byte arrives, without
    // waiting for the rest of the header.
    let mut bad = Client::connect(addr);
    bad.send(b"12a");
    bad.expect_closed();
    server.wait_stderr("is not 5 ASCII digits");

    for header in [&b" 0005"[..], b"+0005", b"-0001", b"0x005", b"abcde"] {
        let mut bad = Client::connect(addr);
        bad.send(header);
        bad.expect_closed();
    }

    // Good requests before a bad one are answered, then the connection
    // closes.
    let mut mixed = Client::connect(addr);
    mixed.send(b"00002ok00002hi0000?");
    assert_eq!(mixed.read_exact(14), b"00002ko00002ih");
    mixed.expect_closed();

    // The others are still served.
    round_trip(&mut good, &[b"after", b"x"]);
    let mut newcomer = Client::connect(addr);
    round_trip(&mut newcomer, &[b"new"]);
}

#[test]
fn reverse_server_answers_then_closes_when_the_client_closes_its_side() {
    let (_server, addr) = reverse_server();
    let mut client = Client::connect(addr);
    client.send(b"00003abc00002de");
    client.stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.read_exact(15), b"00003cba00002ed");
    client.expect_eof();

    // An unfinished request at EOF is dropped and the connection closed.
    let mut client = Client::connect(addr);
    client.send(b"00003ab");
    client.stream().shutdown(Shutdown::Write).unwrap();
    client.expect_closed();
}

// ---------------------------------------------------------------------------
// codec_pipeline

/// A frame of the pyboot-netty format: 4 header bytes, a 4-byte big-endian
/// body length, the body.
fn pipeline_frame(header: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut frame = header.to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

fn codec_pipeline() -> (Proc, SocketAddr) {
    codec_pipeline_with(&[])
}

/// The server, with `options` before its address.
fn codec_pipeline_with(options: &[&str]) -> (Proc, SocketAddr) {
    let mut args = options.to_vec();
    args.push("127.0.0.1:0");
    let server = Proc::example(PACKAGE, "codec_pipeline", &args);
    let addr = server.listening_addr();
    (server, addr)
}

/// The client, connecting to `addr` with `options`, sending `messages`.
fn codec_pipeline_client(addr: SocketAddr, options: &[&str], messages: &[&str]) -> Proc {
    let addr = addr.to_string();
    let mut args = vec!["--client", addr.as_str()];
    args.extend_from_slice(options);
    args.extend_from_slice(messages);
    Proc::example(PACKAGE, "codec_pipeline", &args)
}

/// The server side of one connection from the client example, played by
/// the test.
struct FramePeer {
    stream: TcpStream,
}

impl FramePeer {
    /// Accepts one connection on `listener` within 10 s.
    fn accept(listener: &TcpListener) -> FramePeer {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the client did not connect");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) => panic!("accept: {err}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        FramePeer { stream }
    }

    /// The next frame's header and body; `None` at EOF between frames.
    fn frame(&mut self) -> Option<([u8; 4], Vec<u8>)> {
        let mut head = [0u8; 8];
        let first = self
            .stream
            .read(&mut head[..1])
            .expect("a frame within 10 s");
        if first == 0 {
            return None;
        }
        self.stream
            .read_exact(&mut head[1..])
            .expect("a whole header");
        let mut body = vec![0; u32::from_be_bytes(head[4..].try_into().unwrap()) as usize];
        self.stream.read_exact(&mut body).expect("a whole body");
        Some((head[..4].try_into().unwrap(), body))
    }

    /// Reads frames up to EOF (within 10 s each) and returns how many
    /// there were; each must be a heartbeat (an empty body).
    fn heartbeats_until_eof(&mut self) -> usize {
        let mut count = 0;
        while let Some(frame) = self.frame() {
            assert_eq!(frame, ([0; 4], Vec::new()), "only heartbeats");
            count += 1;
        }
        count
    }

    fn send(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).unwrap();
    }
}

#[test]
fn codec_pipeline_answers_each_message_trimmed_in_the_same_frame_format() {
    let (_server, addr) = codec_pipeline();
    let mut client = Client::connect(addr);
    client.send(&pipeline_frame([9, 9, 9, 9], b"  hello, world \n"));
    assert_eq!(
        client.read_exact(20),
        pipeline_frame([0; 4], b"hello, world")
    );
    // Pipelined and split anywhere.
    let mut both = pipeline_frame([1, 2, 3, 4], b"\tone ");
    both.extend(pipeline_frame([0; 4], "  déjà vu".as_bytes()));
    for piece in both.chunks(3) {
        client.send(piece);
    }
    assert_eq!(client.read_exact(11), pipeline_frame([0; 4], b"one"));
    assert_eq!(
        client.read_exact(17),
        pipeline_frame([0; 4], "déjà vu".as_bytes())
    );
    client.expect_silence();
}

#[test]
fn codec_pipeline_closes_only_the_connection_whose_length_is_past_the_maximum() {
    let (_server, addr) = codec_pipeline();
    let mut bad = Client::connect(addr);
    let mut good = Client::connect(addr);
    let mut huge = vec![0u8; 4];
    huge.extend_from_slice(&(10 * 1024 * 1024u32).to_be_bytes());
    bad.send(&huge);
    bad.expect_closed();
    good.send(&pipeline_frame([0; 4], b" still served "));
    assert_eq!(good.read_exact(20), pipeline_frame([0; 4], b"still served"));
}

#[test]
fn codec_pipeline_closes_only_the_connection_that_sends_bad_utf8() {
    let (_server, addr) = codec_pipeline();
    let mut bad = Client::connect(addr);
    let mut good = Client::connect(addr);
    bad.send(&pipeline_frame([0; 4], b"ok \xff\xfe"));
    bad.expect_closed();
    good.send(&pipeline_frame([0; 4], b"fine"));
    assert_eq!(good.read_exact(12), pipeline_frame([0; 4], b"fine"));
}

#[test]
fn codec_pipeline_closes_a_connection_silent_for_three_idle_periods() {
    let (_server, addr) = codec_pipeline_with(&["--idle-ms", "100"]);
    let mut client = Client::connect(addr);
    let started = Instant::now();
    client.expect_eof();
    // The timer may fire late, never early.
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn codec_pipeline_client_prints_each_trimmed_reply_and_exits_0() {
    let (_server, addr) = codec_pipeline();
    let messages = ["  hello, world \n", "\tdéjà vu", "   ", "x"];
    let mut client = codec_pipeline_client(addr, &[], &messages);
    let status = client.wait_exit();
    assert!(status.success(), "{status}:\n{}", client.transcript());
    assert_eq!(client.stdout_text(), "hello, world\ndéjà vu\n\nx\n");
}

#[test]
fn codec_pipeline_client_sends_a_heartbeat_frame_when_writer_idle() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Heartbeat after 400 ms without writing; close after 1.2 s without
    // reading.
    let mut client = codec_pipeline_client(addr, &["--idle-ms", "400"], &[" ping "]);
    let mut peer = FramePeer::accept(&listener);
    assert_eq!(peer.frame(), Some(([0; 4], b" ping ".to_vec())));
    assert_eq!(peer.frame(), Some(([0; 4], Vec::new())), "a heartbeat");
    client.wait_stderr("writer idle: sending a heartbeat");
    // Answered, the client prints the reply, closes and exits 0.
    peer.send(&pipeline_frame([0; 4], b"ping"));
    peer.heartbeats_until_eof();
    let status = client.wait_exit();
    assert!(status.success(), "{status}:\n{}", client.transcript());
    assert_eq!(client.stdout_text(), "ping\n");
}

#[test]
fn codec_pipeline_client_closes_when_reader_idle_and_exits_1() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = codec_pipeline_client(addr, &["--idle-ms", "100"], &["unanswered"]);
    let mut peer = FramePeer::accept(&listener);
    assert_eq!(peer.frame(), Some(([0; 4], b"unanswered".to_vec())));
    // Heartbeats every 100 ms, then the close after 300 ms of silence.
    assert!(peer.heartbeats_until_eof() >= 1);
    let status = client.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", client.transcript());
    assert_eq!(client.stdout_text(), "");
    assert!(
        client.stderr_text().contains("1 message(s) unanswered"),
        "{}",
        client.transcript()
    );
}
