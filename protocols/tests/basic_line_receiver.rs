//! LineReceiver: every vector of Twisted's `test_basic` (reference §5.7,
//! 1–20) and every rule of §5.1, fed whole, at every split point and byte
//! by byte where Twisted's behaviour does not depend on the cut.

mod support_basic;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use support_basic::{feed, same_at_every_split, same_at_sampled_splits, text};
use twill::task::Clock;
use twill::testing::StringTransport;
use twill::{Protocol, Reason};
use twill_protocols::basic::{LineContext, LineReceiver, LineReceiverProtocol};

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Line(String),
    Raw(String),
    TooLong(String),
}

fn line(s: &str) -> Ev {
    Ev::Line(s.to_owned())
}

fn too_long(s: &[u8]) -> Ev {
    Ev::TooLong(text(s))
}

/// What a recorder does after recording an event.
type React = fn(&LineContext, &Ev);

/// Records every callback; `react` decides what else happens (nothing by
/// default, so a too-long line does not close).
struct Rec {
    events: Vec<Ev>,
    react: React,
}

fn rec(react: React) -> Rec {
    Rec {
        events: Vec::new(),
        react,
    }
}

fn nothing(_: &LineContext, _: &Ev) {}

/// Twisted's default: a too-long line closes.
fn close_on_too_long(ctx: &LineContext, ev: &Ev) {
    if let Ev::TooLong(_) = ev {
        ctx.lose_connection();
    }
}

impl Rec {
    fn record(&mut self, ctx: &LineContext, ev: Ev) {
        self.events.push(ev.clone());
        (self.react)(ctx, &ev);
    }
}

impl LineReceiver for Rec {
    fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
        self.record(ctx, Ev::Line(text(&line)));
    }
    fn raw_data_received(&mut self, ctx: &LineContext, data: Bytes) {
        self.record(ctx, Ev::Raw(text(&data)));
    }
    fn line_length_exceeded(&mut self, ctx: &LineContext, data: Bytes) {
        self.record(ctx, Ev::TooLong(text(&data)));
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Ev>,
    closed: bool,
    buffered: usize,
}

/// Feeds `chunks` to a recorder with `delimiter`, `max` and `react`.
fn outcome(delimiter: &'static [u8], max: usize, react: React, chunks: &[&[u8]]) -> Outcome {
    let protocol = LineReceiverProtocol::new(rec(react))
        .with_delimiter(delimiter)
        .with_max_length(max);
    let (protocol, transport) = feed(protocol, chunks);
    let events = protocol.receiver().events.clone();
    Outcome {
        events,
        closed: transport.disconnecting(),
        buffered: protocol.buffered(),
    }
}

fn crlf(max: usize, react: React, chunks: &[&[u8]]) -> Outcome {
    outcome(b"\r\n", max, react, chunks)
}

/// A receiver that only implements `line_received`: Twisted's defaults
/// for everything else.
#[derive(Default)]
struct Plain {
    lines: Vec<Bytes>,
}

impl LineReceiver for Plain {
    fn line_received(&mut self, _: &LineContext, line: Bytes) {
        self.lines.push(line);
    }
}

fn plain(chunks: &[&[u8]]) -> (Vec<Bytes>, bool) {
    let (protocol, transport) = feed(LineReceiverProtocol::new(Plain::default()), chunks);
    let lines = protocol.receiver().lines.clone();
    (lines, transport.disconnecting())
}

// ---------------------------------------------------------------- defaults

#[test]
fn defaults_are_twisteds() {
    assert_eq!(<Plain as LineReceiver>::DELIMITER, b"\r\n");
    assert_eq!(<Plain as LineReceiver>::MAX_LENGTH, 16384);
    let (protocol, _) = feed(LineReceiverProtocol::new(Plain::default()), &[]);
    let ctx = protocol.context().unwrap();
    assert_eq!(ctx.delimiter(), "\r\n");
    assert_eq!(ctx.max_length(), 16384);
    assert!(ctx.is_line_mode());
    assert!(!ctx.is_paused());
}

// ------------------------------------------------------- §5.7 vectors 1–12

#[test]
fn v01_lines_are_cut_and_the_tail_stays_buffered() {
    let out = same_at_every_split(b"hello\r\nworld\r\npart", |chunks| {
        crlf(16384, nothing, chunks)
    });
    assert_eq!(
        out,
        Outcome {
            events: vec![line("hello"), line("world")],
            closed: false,
            buffered: 4,
        }
    );
}

#[test]
fn v02_a_line_of_exactly_max_length_is_accepted() {
    let out = same_at_every_split(b"abcd\r\n", |chunks| crlf(4, nothing, chunks));
    assert_eq!(out.events, [line("abcd")]);
    assert!(!out.closed);
}

#[test]
fn v03_a_too_long_line_takes_the_rest_of_the_buffer_and_closes() {
    let input = b"abcde\r\nxy\r\n";
    // Fed at once: lineLengthExceeded gets line + delimiter + rest.
    let out = crlf(4, close_on_too_long, &[input]);
    assert_eq!(out.events, [too_long(input)]);
    assert!(out.closed);
    assert_eq!(out.buffered, 0);
    // However it is cut: no line is delivered and the connection closes
    // (what the callback gets then depends on the cut).
    same_at_every_split(input, |chunks| {
        let out = crlf(4, close_on_too_long, chunks);
        let lines = out
            .events
            .iter()
            .filter(|e| matches!(e, Ev::Line(_)))
            .count();
        (lines, out.closed)
    });
    // The default line_length_exceeded closes.
    let (lines, closed) = same_at_every_split(input, |chunks| {
        let protocol = LineReceiverProtocol::new(Plain::default()).with_max_length(4);
        let (protocol, transport) = feed(protocol, chunks);
        let lines = protocol.receiver().lines.clone();
        (lines, transport.disconnecting())
    });
    assert!(lines.is_empty());
    assert!(closed);
}

#[test]
fn v04_an_unterminated_tail_waits_until_max_length_plus_delimiter() {
    let out = same_at_every_split(b"abcde", |chunks| crlf(4, close_on_too_long, chunks));
    assert_eq!(out.events, []);
    assert!(!out.closed);
    assert_eq!(out.buffered, 5);
    let out = same_at_every_split(b"abcdef", |chunks| crlf(4, close_on_too_long, chunks));
    assert_eq!(out.events, [too_long(b"abcdef")]);
    assert!(out.closed);
}

#[test]
fn v05_test_maximum_line_length() {
    let mut input = vec![b'x'; 16385];
    input.extend_from_slice(b"\r\nr");
    let (lines, closed) = same_at_sampled_splits(&input, 1024, &[16384, 16385], plain);
    assert!(lines.is_empty());
    assert!(closed);
}

#[test]
fn v06_test_maximum_line_length_remaining() {
    let input = vec![b'x'; 16384 + 2];
    let (lines, closed) = same_at_sampled_splits(&input, 1024, &[16384], plain);
    assert!(lines.is_empty());
    assert!(closed);
}

#[test]
fn v07_not_quite_maximum_line_length_unfinished() {
    let mut input = vec![b'x'; 16384];
    input.push(b'\r');
    let (lines, closed) = same_at_sampled_splits(&input, 1024, &[16384], plain);
    assert!(lines.is_empty());
    assert!(!closed);
    // ... and the delimiter's end makes it a line of exactly MAX_LENGTH.
    input.push(b'\n');
    let (lines, closed) = same_at_sampled_splits(&input, 1024, &[16384], plain);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].len(), 16384);
    assert!(!closed);
}

#[test]
fn v08_maximum_line_length_partial_delimiter() {
    let out = outcome(b"\n", 4, close_on_too_long, &[b"xxx", b"", b"\nxxx"]);
    assert_eq!(out.events, [line("xxx")]);
    assert!(!out.closed);
    same_at_every_split(b"xxx\nxxx", |chunks| {
        outcome(b"\n", 4, close_on_too_long, chunks)
    });
}

#[test]
fn v09_line_length_exceeded_gets_everything_buffered() {
    let x14 = "x".repeat(14);
    let cases: [(String, &str); 4] = [
        // test_longUnendedLine
        (x14.clone(), &x14),
        // test_longLineAfterShortLine
        (format!("x\r\n{x14}"), &x14),
        // test_longLineWithDelimiter
        (format!("{x14}\r\n{x14}"), ""),
        // test_multipleLongLines
        (format!("{x14}\r\n{x14}\r\n"), ""),
    ];
    for (input, exceeded) in cases {
        let exceeded = if exceeded.is_empty() {
            input.as_str()
        } else {
            exceeded
        };
        let out = crlf(6, nothing, &[input.as_bytes()]);
        let long: Vec<_> = out
            .events
            .iter()
            .filter(|e| matches!(e, Ev::TooLong(_)))
            .collect();
        assert_eq!(long, [&too_long(exceeded.as_bytes())], "input {input:?}");
        assert!(!out.closed);
    }
}

#[test]
fn v10_with_a_lf_delimiter_a_cr_stays_in_the_line() {
    let out = same_at_every_split(b"hi\r\nyo\n", |chunks| {
        outcome(b"\n", 16384, nothing, chunks)
    });
    assert_eq!(out.events, [line("hi\r"), line("yo")]);
}

#[test]
fn v11_nothing_is_delivered_after_a_line_that_closes() {
    fn quit(ctx: &LineContext, ev: &Ev) {
        if *ev == line("quit") {
            ctx.lose_connection();
        }
    }
    let out = same_at_every_split(b"a\r\nquit\r\nb\r\n", |chunks| crlf(16384, quit, chunks));
    assert_eq!(out.events, [line("a"), line("quit")]);
    assert!(out.closed);
}

#[test]
fn v12_send_line_appends_the_delimiter() {
    let (protocol, transport) = feed(LineReceiverProtocol::new(Plain::default()), &[]);
    let ctx = protocol.context().unwrap();
    ctx.send_line("x");
    assert_eq!(transport.value(), b"x\r\n");
    transport.clear();
    ctx.set_delimiter("\n");
    ctx.send_line(b"y");
    assert_eq!(transport.value(), b"y\n");
}

// ------------------------------------------------------ vectors 13–16: modes

fn raw_on_raw(ctx: &LineContext, ev: &Ev) {
    if *ev == line("raw") {
        ctx.set_raw_mode();
    }
}

#[test]
fn v13_raw_mode_takes_the_rest_of_the_buffer() {
    let input = b"a\r\nraw\r\nxyz\r\nq";
    let out = crlf(16384, raw_on_raw, &[input]);
    assert_eq!(
        out.events,
        [line("a"), line("raw"), Ev::Raw("xyz\r\nq".into())]
    );
    // Cut anywhere: the same lines, then raw data in the pieces it came in.
    same_at_every_split(input, |chunks| {
        let out = crlf(16384, raw_on_raw, chunks);
        let mut lines = Vec::new();
        let mut raw = String::new();
        for ev in out.events {
            match ev {
                Ev::Line(l) => lines.push(l),
                Ev::Raw(r) => raw.push_str(&r),
                Ev::TooLong(_) => panic!("too long"),
            }
        }
        assert_eq!(raw, "xyz\r\nq");
        lines
    });
}

#[test]
fn v14_clear_line_buffer_drops_the_rest_of_the_packet() {
    #[derive(Default)]
    struct Clearing {
        line: Bytes,
        rest: Bytes,
    }
    impl LineReceiver for Clearing {
        fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
            self.line = line;
            self.rest = ctx.clear_line_buffer();
        }
    }
    let (mut protocol, _) = feed(
        LineReceiverProtocol::new(Clearing::default()),
        &[b"foo\r\nbar\r\nbaz"],
    );
    assert_eq!(protocol.receiver().line, "foo");
    assert_eq!(protocol.receiver().rest, "bar\r\nbaz");
    protocol.data_received(Bytes::from_static(b"quux\r\n"));
    assert_eq!(protocol.receiver().line, "quux");
    assert_eq!(protocol.receiver().rest, "");
}

/// Twisted's `FlippingLineTester`: raw after each line, and back to lines
/// with all but the first raw byte.
#[derive(Default)]
struct Flipping {
    lines: Vec<u8>,
}

impl LineReceiver for Flipping {
    const DELIMITER: &'static [u8] = b"\n";
    fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
        self.lines.extend_from_slice(&line);
        ctx.set_raw_mode();
    }
    fn raw_data_received(&mut self, ctx: &LineContext, data: Bytes) {
        ctx.set_line_mode(&data[1..]);
    }
}

#[test]
fn v15_mode_flips_in_one_packet_take_no_stack() {
    for count in [1000, 20_000] {
        let input = b"x\nx".repeat(count);
        let (protocol, _) = feed(LineReceiverProtocol::new(Flipping::default()), &[&input]);
        assert_eq!(protocol.receiver().lines, vec![b'x'; count]);
    }
}

/// Twisted's `LineTester`: `\n`, MAX_LENGTH 64; an empty line starts raw
/// mode for the length given by a previous `len N` line; `pause`,
/// `rawpause` and `stop` exercise producing.
struct LineTester {
    received: Vec<Vec<u8>>,
    length: usize,
    clock: Option<Clock>,
}

impl LineTester {
    fn new(clock: Option<Clock>) -> Self {
        LineTester {
            received: Vec::new(),
            length: 0,
            clock,
        }
    }

    fn resume_later(&self, ctx: &LineContext) {
        let ctx = ctx.clone();
        let clock = self.clock.as_ref().expect("a clock");
        clock.call_later(Duration::ZERO, move || ctx.resume_producing());
    }
}

impl LineReceiver for LineTester {
    const DELIMITER: &'static [u8] = b"\n";
    const MAX_LENGTH: usize = 64;

    fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
        self.received.push(line.to_vec());
        if line.is_empty() {
            ctx.set_raw_mode();
        } else if line == "pause" {
            ctx.pause_producing();
            self.resume_later(ctx);
        } else if line == "rawpause" {
            ctx.pause_producing();
            ctx.set_raw_mode();
            self.received.push(Vec::new());
            self.resume_later(ctx);
        } else if line == "stop" {
            ctx.stop_producing();
        } else if let Some(n) = line.strip_prefix(b"len ") {
            self.length = std::str::from_utf8(n).unwrap().parse().unwrap();
        }
    }

    fn raw_data_received(&mut self, ctx: &LineContext, data: Bytes) {
        let take = self.length.min(data.len());
        self.length -= take;
        self.received
            .last_mut()
            .unwrap()
            .extend_from_slice(&data[..take]);
        if self.length == 0 {
            ctx.set_line_mode(&data[take..]);
        }
    }

    fn line_length_exceeded(&mut self, ctx: &LineContext, data: Bytes) {
        if data.len() > Self::MAX_LENGTH + 1 {
            ctx.set_line_mode(&data[Self::MAX_LENGTH + 1..]);
        }
    }
}

fn strings(lines: &[Vec<u8>]) -> Vec<String> {
    lines.iter().map(|l| text(l)).collect()
}

#[test]
fn v16_test_buffer_mixes_lines_raw_data_and_long_lines() {
    let input = b"len 10\n\n0123456789len 5\n\n1234\nlen 20\nfoo 123\n\n0123456789\n012345678len 0\nfoo 5\n\n1234567890123456789012345678901234567890123456789012345678901234567890\nlen 1\n\na";
    let expected = [
        "len 10",
        "0123456789",
        "len 5",
        "1234\n",
        "len 20",
        "foo 123",
        "0123456789\n012345678",
        "len 0",
        "foo 5",
        "",
        "67890",
        "len 1",
        "a",
    ];
    let received = same_at_every_split(input, |chunks| {
        let (protocol, transport) = feed(LineReceiverProtocol::new(LineTester::new(None)), chunks);
        assert!(!transport.disconnecting());
        let received = strings(&protocol.receiver().received);
        received
    });
    assert_eq!(received, expected);
}

/// Feeds `chunks` to a LineTester with a clock; returns what it received
/// before and after the clock runs the scheduled `resume_producing`.
fn paused_run(chunks: &[&[u8]]) -> (Vec<String>, Vec<String>, bool) {
    let clock = Clock::new();
    let (protocol, transport) = feed(
        LineReceiverProtocol::new(LineTester::new(Some(clock.clone()))),
        chunks,
    );
    let before = strings(&protocol.receiver().received);
    let paused = transport.reading_paused();
    clock.advance(Duration::ZERO);
    let after = strings(&protocol.receiver().received);
    assert!(!transport.reading_paused());
    (before, after, paused)
}

#[test]
fn v17_pausing_holds_lines_until_resumed() {
    let (before, after, paused) =
        same_at_every_split(b"twiddle1\ntwiddle2\npause\ntwiddle3\n", paused_run);
    assert_eq!(before, ["twiddle1", "twiddle2", "pause"]);
    assert!(paused);
    assert_eq!(after, ["twiddle1", "twiddle2", "pause", "twiddle3"]);
}

#[test]
fn v18_pausing_in_raw_mode() {
    let (before, after, _) = same_at_every_split(
        b"twiddle1\ntwiddle2\nlen 5\nrawpause\n12345twiddle3\n",
        paused_run,
    );
    assert_eq!(before, ["twiddle1", "twiddle2", "len 5", "rawpause", ""]);
    assert_eq!(
        after,
        ["twiddle1", "twiddle2", "len 5", "rawpause", "12345", "twiddle3"]
    );
}

#[test]
fn v19_stop_producing_delivers_nothing_more_and_closes() {
    let (received, closed) =
        same_at_every_split(b"twiddle1\ntwiddle2\nstop\nmore\nstuff\n", |chunks| {
            let (protocol, transport) =
                feed(LineReceiverProtocol::new(LineTester::new(None)), chunks);
            let received = strings(&protocol.receiver().received);
            (received, transport.disconnecting())
        });
    assert_eq!(received, ["twiddle1", "twiddle2", "stop"]);
    assert!(closed);
}

/// Twisted's `ConsumingProtocol`: echoes each line, then pauses itself.
struct Consuming;

impl LineReceiver for Consuming {
    fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
        ctx.write(line);
        ctx.pause_producing();
    }
}

#[test]
fn v20_pause_resume() {
    let (mut p, t) = feed(LineReceiverProtocol::new(Consuming), &[]);
    let ctx = p.context().unwrap();
    let state = |t: &StringTransport| (t.value(), t.reading_paused(), ctx.is_paused());

    p.data_received(Bytes::from_static(b"hello, "));
    assert_eq!(state(&t), (b"".to_vec(), false, false));

    p.data_received(Bytes::from_static(b"world\r\n"));
    assert_eq!(state(&t), (b"hello, world".to_vec(), true, true));

    ctx.resume_producing();
    assert_eq!(state(&t), (b"hello, world".to_vec(), false, false));

    p.data_received(Bytes::from_static(b"hello\r\nworld\r\n"));
    assert_eq!(state(&t), (b"hello, worldhello".to_vec(), true, true));

    ctx.resume_producing();
    assert_eq!(state(&t), (b"hello, worldhelloworld".to_vec(), true, true));

    p.data_received(Bytes::from_static(b"goodbye\r\n"));
    assert_eq!(state(&t), (b"hello, worldhelloworld".to_vec(), true, true));

    ctx.resume_producing();
    assert_eq!(
        state(&t),
        (b"hello, worldhelloworldgoodbye".to_vec(), true, true)
    );

    ctx.resume_producing();
    assert_eq!(
        state(&t),
        (b"hello, worldhelloworldgoodbye".to_vec(), false, false)
    );
}

// ------------------------------------------------------- further §5.1 rules

#[test]
fn a_mode_switch_inside_a_callback_applies_to_the_rest_of_the_buffer() {
    // Raw, then back to lines with the unread bytes, inside one packet.
    struct Header {
        events: Vec<Ev>,
    }
    impl LineReceiver for Header {
        fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
            self.events.push(Ev::Line(text(&line)));
            if line == "BODY" {
                ctx.set_raw_mode();
            }
        }
        fn raw_data_received(&mut self, ctx: &LineContext, data: Bytes) {
            let end = data.iter().position(|&b| b == b'.').unwrap_or(data.len());
            self.events.push(Ev::Raw(text(&data[..end])));
            if end < data.len() {
                ctx.set_line_mode(&data[end + 1..]);
            }
        }
    }
    let events = same_at_every_split(b"HEAD\r\nBODY\r\nab\r\n.TAIL\r\n", |chunks| {
        let (p, _) = feed(
            LineReceiverProtocol::new(Header { events: Vec::new() }),
            chunks,
        );
        let events = p.receiver().events.clone();
        // Raw pieces depend on the cut; join them.
        let mut joined: Vec<Ev> = Vec::new();
        for ev in events {
            match (joined.last_mut(), ev) {
                (Some(Ev::Raw(a)), Ev::Raw(b)) => a.push_str(&b),
                (_, ev) => joined.push(ev),
            }
        }
        joined
    });
    assert_eq!(
        events,
        [
            line("HEAD"),
            line("BODY"),
            Ev::Raw("ab\r\n".into()),
            line("TAIL")
        ]
    );
}

#[test]
fn set_line_mode_with_extra_inside_line_received_appends_to_the_buffer() {
    // Twisted: "do not pass extra data from lineReceived"; if you do, it is
    // parsed after what is already buffered.
    struct Extra {
        lines: Vec<String>,
    }
    impl LineReceiver for Extra {
        fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
            self.lines.push(text(&line));
            if line == "a" {
                ctx.set_line_mode(b"z\r\n");
            }
        }
    }
    let (p, _) = feed(
        LineReceiverProtocol::new(Extra { lines: Vec::new() }),
        &[b"a\r\nb\r\nc"],
    );
    assert_eq!(p.receiver().lines, ["a", "b", "cz"]);
}

#[test]
fn set_line_mode_with_extra_from_outside_parses_it_now() {
    let (p, _) = feed(LineReceiverProtocol::new(rec(nothing)), &[]);
    let ctx = p.context().unwrap();
    ctx.set_raw_mode();
    ctx.set_line_mode(b"one\r\ntwo\r\nthr");
    assert_eq!(p.receiver().events, [line("one"), line("two")]);
    assert_eq!(p.buffered(), 3);
    // Switching to raw from outside only takes effect with the next data.
    ctx.set_raw_mode();
    assert_eq!(p.receiver().events.len(), 2);
}

#[test]
fn resume_producing_inside_a_callback_goes_on_with_the_buffer() {
    struct PauseResume {
        lines: Vec<String>,
    }
    impl LineReceiver for PauseResume {
        fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
            self.lines.push(text(&line));
            ctx.pause_producing();
            ctx.resume_producing();
        }
    }
    let (p, t) = feed(
        LineReceiverProtocol::new(PauseResume { lines: Vec::new() }),
        &[b"a\r\nb\r\nc\r\n"],
    );
    assert_eq!(p.receiver().lines, ["a", "b", "c"]);
    assert!(!t.reading_paused());
}

#[test]
fn input_received_while_paused_waits_and_closing_drops_it() {
    let (mut p, t) = feed(LineReceiverProtocol::new(rec(nothing)), &[]);
    let ctx = p.context().unwrap();
    ctx.pause_producing();
    p.data_received(Bytes::from_static(b"a\r\nb\r\n"));
    assert_eq!(p.receiver().events, []);
    assert_eq!(p.buffered(), 6);
    ctx.lose_connection();
    ctx.resume_producing();
    assert_eq!(p.receiver().events, [], "nothing is delivered once closing");
    assert!(t.disconnecting());
}

#[test]
fn failing_stops_delivery_too() {
    fn fail_on_b(ctx: &LineContext, ev: &Ev) {
        if *ev == line("b") {
            ctx.fail("bad line");
        }
    }
    let out = same_at_every_split(b"a\r\nb\r\nc\r\n", |chunks| crlf(100, fail_on_b, chunks));
    assert_eq!(out.events, [line("a"), line("b")]);
    let (_, t) = feed(LineReceiverProtocol::new(rec(fail_on_b)), &[b"b\r\n"]);
    assert_eq!(t.failure().as_deref(), Some("bad line"));
}

#[test]
fn stop_delivering_raw_data_once_closing() {
    fn close_on_raw(ctx: &LineContext, ev: &Ev) {
        match ev {
            Ev::Line(_) => ctx.set_raw_mode(),
            Ev::Raw(data) => {
                ctx.lose_connection();
                // Bytes handed back are not parsed any more.
                ctx.set_line_mode(data.as_bytes());
            }
            Ev::TooLong(_) => {}
        }
    }
    let out = crlf(100, close_on_raw, &[b"go\r\nraw\r\n"]);
    assert_eq!(out.events, [line("go"), Ev::Raw("raw\r\n".into())]);
    assert!(out.closed);
}

#[test]
fn the_default_raw_data_received_fails_the_connection() {
    struct LinesOnly;
    impl LineReceiver for LinesOnly {
        fn line_received(&mut self, ctx: &LineContext, _: Bytes) {
            ctx.set_raw_mode();
        }
    }
    let (_, t) = feed(LineReceiverProtocol::new(LinesOnly), &[b"a\r\nraw"]);
    assert!(t.disconnecting());
    assert!(t.failure().unwrap().contains("raw_data_received"));
}

#[test]
fn the_default_line_length_exceeded_closes_cleanly() {
    let (_, t) = feed(
        LineReceiverProtocol::new(Plain::default()).with_max_length(2),
        &[b"abcd"],
    );
    assert!(t.disconnecting());
    assert_eq!(t.failure(), None);
    assert!(!t.aborted());
}

#[test]
fn a_too_long_line_handed_back_is_parsed_at_once() {
    // Twisted stops after lineLengthExceeded even if it called
    // setLineMode(rest); here the rest is parsed, whatever the cut.
    fn skip_long(ctx: &LineContext, ev: &Ev) {
        if let Ev::TooLong(data) = ev {
            if let Some(at) = data.find('\n') {
                ctx.set_line_mode(&data.as_bytes()[at + 1..]);
            }
        }
    }
    let out = outcome(b"\n", 3, skip_long, &[b"ok\nlong line\nfin\n"]);
    assert_eq!(
        out.events,
        [
            line("ok"),
            Ev::TooLong("long line\nfin\n".into()),
            line("fin")
        ]
    );
}

#[test]
fn max_length_and_delimiter_can_change_per_type_connection_and_at_run_time() {
    struct Semicolons {
        lines: Vec<String>,
    }
    impl LineReceiver for Semicolons {
        const DELIMITER: &'static [u8] = b";";
        const MAX_LENGTH: usize = 3;
        fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
            self.lines.push(text(&line));
            if line == "nl" {
                ctx.set_delimiter("\n");
                ctx.set_max_length(10);
            }
        }
    }
    let (p, t) = feed(
        LineReceiverProtocol::new(Semicolons { lines: Vec::new() }),
        &[b"a;bcd;nl;long line\nx;y\n"],
    );
    assert_eq!(p.receiver().lines, ["a", "bcd", "nl", "long line", "x;y"]);
    assert!(!t.disconnecting());
    let (p, _) = feed(
        LineReceiverProtocol::new(Semicolons { lines: Vec::new() })
            .with_delimiter("--")
            .with_max_length(1),
        &[b"a--b-c--"],
    );
    assert_eq!(p.receiver().lines, ["a"]);
}

#[test]
#[should_panic(expected = "cannot be empty")]
fn an_empty_delimiter_is_refused() {
    let _ = LineReceiverProtocol::new(Plain::default()).with_delimiter("");
}

#[test]
fn a_multi_byte_delimiter_split_anywhere_is_found() {
    let out = same_at_every_split(b"one<END>two<EN<END>three<E", |chunks| {
        outcome(b"<END>", 100, nothing, chunks)
    });
    assert_eq!(out.events, [line("one"), line("two<EN")]);
    assert_eq!(out.buffered, 7);
}

#[test]
fn a_bare_lf_is_data_with_the_default_delimiter() {
    let (lines, closed) = same_at_every_split(b"a\nb\r\n\r\n", plain);
    assert_eq!(lines, ["a\nb", ""]);
    assert!(!closed);
}

#[test]
fn eof_does_not_deliver_an_unfinished_line_and_asks_the_receiver() {
    struct HalfOpen {
        lines: usize,
        lost: Option<String>,
    }
    impl LineReceiver for HalfOpen {
        fn line_received(&mut self, _: &LineContext, _: Bytes) {
            self.lines += 1;
        }
        fn eof_received(&mut self, ctx: &LineContext) -> bool {
            ctx.send_line("bye");
            true
        }
        fn connection_lost(&mut self, reason: &Reason) {
            self.lost = Some(reason.to_string());
        }
    }
    let (mut p, t) = feed(
        LineReceiverProtocol::new(HalfOpen {
            lines: 0,
            lost: None,
        }),
        &[b"a\r\npartial"],
    );
    assert!(p.eof_received());
    assert_eq!(p.receiver().lines, 1);
    assert_eq!(t.value(), b"bye\r\n");
    p.connection_lost(&Reason::Done);
    assert_eq!(
        p.receiver().lost.as_deref(),
        Some("connection was closed cleanly")
    );
    // The default eof_received closes.
    let (mut p, _) = feed(LineReceiverProtocol::new(Plain::default()), &[]);
    assert!(!p.eof_received());
}

#[test]
fn write_flow_control_reaches_the_receiver() {
    #[derive(Default)]
    struct Flow {
        calls: Vec<&'static str>,
    }
    impl LineReceiver for Flow {
        fn connection_made(&mut self, ctx: &LineContext) {
            ctx.send_line("hello");
            self.calls.push("made");
        }
        fn line_received(&mut self, _: &LineContext, _: Bytes) {}
        fn pause_writing(&mut self, _: &LineContext) {
            self.calls.push("pause");
        }
        fn resume_writing(&mut self, _: &LineContext) {
            self.calls.push("resume");
        }
    }
    let (mut p, t) = feed(LineReceiverProtocol::new(Flow::default()), &[]);
    p.pause_writing();
    p.resume_writing();
    assert_eq!(p.receiver().calls, ["made", "pause", "resume"]);
    assert_eq!(t.value(), b"hello\r\n");
}

#[test]
fn a_receiver_that_keeps_its_context_is_freed_with_its_protocol() {
    struct Keeper {
        ctx: Option<LineContext>,
        dropped: Rc<Cell<bool>>,
    }
    impl LineReceiver for Keeper {
        fn connection_made(&mut self, ctx: &LineContext) {
            self.ctx = Some(ctx.clone());
        }
        fn line_received(&mut self, _: &LineContext, _: Bytes) {}
    }
    impl Drop for Keeper {
        fn drop(&mut self) {
            self.dropped.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let (p, _) = feed(
        LineReceiverProtocol::new(Keeper {
            ctx: None,
            dropped: dropped.clone(),
        }),
        &[],
    );
    let outside = p.context().unwrap();
    drop(p);
    assert!(dropped.get());
    // A context that outlives its protocol still writes and is inert.
    outside.send_line("late");
    outside.resume_producing();
    outside.set_line_mode("x\r\n");
}

#[test]
fn a_context_kept_elsewhere_drives_the_protocol_later() {
    // A "server" pauses a connection and another party resumes it.
    let parked: Rc<RefCell<Option<LineContext>>> = Rc::default();
    struct Parking {
        parked: Rc<RefCell<Option<LineContext>>>,
        lines: Vec<String>,
    }
    impl LineReceiver for Parking {
        fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
            self.lines.push(text(&line));
            if line == "wait" {
                ctx.pause_producing();
                *self.parked.borrow_mut() = Some(ctx.clone());
            }
        }
    }
    let (p, t) = feed(
        LineReceiverProtocol::new(Parking {
            parked: parked.clone(),
            lines: Vec::new(),
        }),
        &[b"a\r\nwait\r\nb\r\n"],
    );
    assert_eq!(p.receiver().lines, ["a", "wait"]);
    assert!(t.reading_paused());
    let ctx = parked.borrow_mut().take().unwrap();
    ctx.resume_producing();
    assert_eq!(p.receiver().lines, ["a", "wait", "b"]);
}

#[test]
fn a_long_line_arriving_byte_by_byte_is_scanned_once() {
    // 16384 one-byte packets: quadratic rescanning would take seconds.
    let mut p = LineReceiverProtocol::new(Plain::default());
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    let started = std::time::Instant::now();
    for _ in 0..16384 {
        p.data_received(Bytes::from_static(b"x"));
    }
    p.data_received(Bytes::from_static(b"\r\n"));
    assert_eq!(p.receiver().lines[0].len(), 16384);
    assert!(started.elapsed() < Duration::from_secs(5));
}
