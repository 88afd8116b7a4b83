//! LineOnlyReceiver: the vectors of reference §5.7 (21–23) and the rules
//! of §5.2, fed whole, at every split point and byte by byte.

mod support_basic;

use bytes::Bytes;
use support_basic::{feed, same_at_every_split, same_at_sampled_splits, text};
use twill::{Protocol, Reason};
use twill_protocols::basic::{LineOnlyContext, LineOnlyReceiver, LineOnlyReceiverProtocol};

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Line(String),
    TooLong(String),
}

/// Records lines; a too-long line closes only if `close_on_too_long`.
#[derive(Default)]
struct Rec {
    events: Vec<Ev>,
    keep_open: bool,
    quit_closes: bool,
}

impl LineOnlyReceiver for Rec {
    fn line_received(&mut self, ctx: &LineOnlyContext, line: Bytes) {
        self.events.push(Ev::Line(text(&line)));
        if self.quit_closes && line == "quit" {
            ctx.lose_connection();
        }
    }
    fn line_length_exceeded(&mut self, ctx: &LineOnlyContext, line: Bytes) {
        self.events.push(Ev::TooLong(text(&line)));
        if !self.keep_open {
            ctx.lose_connection();
        }
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Ev>,
    closed: bool,
}

fn run(protocol: LineOnlyReceiverProtocol<Rec>, chunks: &[&[u8]]) -> Outcome {
    let (protocol, transport) = feed(protocol, chunks);
    Outcome {
        events: protocol.receiver().events.clone(),
        closed: transport.disconnecting(),
    }
}

fn lines(items: &[&str]) -> Vec<Ev> {
    items.iter().map(|l| Ev::Line((*l).to_owned())).collect()
}

/// A receiver relying on every default.
struct Plain(Vec<Bytes>);

impl LineOnlyReceiver for Plain {
    fn line_received(&mut self, _: &LineOnlyContext, line: Bytes) {
        self.0.push(line);
    }
}

#[test]
fn defaults_are_twisteds() {
    assert_eq!(<Plain as LineOnlyReceiver>::DELIMITER, b"\r\n");
    assert_eq!(<Plain as LineOnlyReceiver>::MAX_LENGTH, 16384);
}

#[test]
fn v21_test_buffer_byte_by_byte() {
    let input = b"foo\n    bleakness\n    desolation\n    plastic forks\n";
    let out = same_at_every_split(input, |chunks| {
        run(
            LineOnlyReceiverProtocol::new(Rec::default())
                .with_delimiter("\n")
                .with_max_length(64),
            chunks,
        )
    });
    let expected: Vec<&str> = std::str::from_utf8(input).unwrap().split('\n').collect();
    assert_eq!(out.events, lines(&expected[..expected.len() - 1]));
    assert!(!out.closed);
}

#[test]
fn v22_a_long_line_closes_and_an_unterminated_tail_has_no_delimiter_allowance() {
    // (What the callback gets depends on the cut: "abcde", "abcde\r".)
    let (first, count, closed) = same_at_every_split(b"abcd\r\nabcde\r\n", |chunks| {
        let out = run(
            LineOnlyReceiverProtocol::new(Rec::default()).with_max_length(4),
            chunks,
        );
        (out.events[0].clone(), out.events.len(), out.closed)
    });
    assert_eq!(first, Ev::Line("abcd".into()));
    assert_eq!(count, 2);
    assert!(closed);
    // Fed at once, the callback gets only the long line.
    let out = run(
        LineOnlyReceiverProtocol::new(Rec::default()).with_max_length(4),
        &[b"abcd\r\nabcde\r\n"],
    );
    assert_eq!(out.events[1], Ev::TooLong("abcde".into()));
    // Unterminated and past MAX_LENGTH: closed at once (LineReceiver would
    // wait for MAX_LENGTH + 2 bytes).
    let out = same_at_every_split(b"abcde", |chunks| {
        run(
            LineOnlyReceiverProtocol::new(Rec::default()).with_max_length(4),
            chunks,
        )
    });
    assert_eq!(out.events, [Ev::TooLong("abcde".into())]);
    assert!(out.closed);
    // The default line_length_exceeded closes.
    let (p, t) = feed(
        LineOnlyReceiverProtocol::new(Plain(Vec::new())).with_max_length(4),
        &[b"abcde"],
    );
    assert!(p.receiver().0.is_empty());
    assert!(t.disconnecting());
    assert_eq!(t.failure(), None);
}

#[test]
fn v23_test_greater_than_maximum_line_length() {
    let mut input = vec![b'x'; 64 + 1 + 1];
    input.extend_from_slice(b"\r\nr");
    let (lines, closed) = same_at_sampled_splits(&input, 1, &[], |chunks| {
        let (p, t) = feed(
            LineOnlyReceiverProtocol::new(Plain(Vec::new()))
                .with_delimiter("\n")
                .with_max_length(64),
            chunks,
        );
        let lines = p.receiver().0.clone();
        (lines, t.disconnecting())
    });
    assert!(lines.is_empty());
    assert!(closed);
}

#[test]
fn a_line_of_exactly_max_length_is_accepted_however_its_delimiter_is_cut() {
    // Twisted's LineOnlyReceiver rejects "abcd\r" (5 > 4) when a packet
    // ends between "\r" and "\n"; twill waits for the rest of the delimiter.
    let out = same_at_every_split(b"abcd\r\nefgh\r\n", |chunks| {
        run(
            LineOnlyReceiverProtocol::new(Rec::default()).with_max_length(4),
            chunks,
        )
    });
    assert_eq!(out.events, lines(&["abcd", "efgh"]));
    assert!(!out.closed);
    // Past the limit by a byte that is not the delimiter's start: too long.
    let out = same_at_every_split(b"abcd\n", |chunks| {
        run(
            LineOnlyReceiverProtocol::new(Rec::default()).with_max_length(4),
            chunks,
        )
    });
    assert_eq!(out.events, [Ev::TooLong("abcd\n".into())]);
}

#[test]
fn a_long_line_is_reported_once_and_the_next_lines_are_delivered() {
    // With a line_length_exceeded that keeps the connection, only the long
    // line is dropped (Twisted also drops the rest of that packet).
    let kinds = same_at_every_split(b"ok\r\ntoo long\r\nfin\r\n", |chunks| {
        let out = run(
            LineOnlyReceiverProtocol::new(Rec {
                keep_open: true,
                ..Rec::default()
            })
            .with_max_length(4),
            chunks,
        );
        assert!(!out.closed);
        out.events
            .into_iter()
            .map(|e| match e {
                Ev::Line(l) => l,
                Ev::TooLong(_) => "<too long>".to_owned(),
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(kinds, ["ok", "<too long>", "fin"]);
}

#[test]
fn nothing_is_delivered_after_a_line_that_closes() {
    let out = same_at_every_split(b"a\r\nquit\r\nb\r\n", |chunks| {
        run(
            LineOnlyReceiverProtocol::new(Rec {
                quit_closes: true,
                ..Rec::default()
            }),
            chunks,
        )
    });
    assert_eq!(out.events, lines(&["a", "quit"]));
    assert!(out.closed);
}

#[test]
fn the_delimiter_is_matched_exactly() {
    let out = same_at_every_split(b"a\nb\rc\r\n\r\n", |chunks| {
        run(LineOnlyReceiverProtocol::new(Rec::default()), chunks)
    });
    assert_eq!(out.events, lines(&["a\nb\rc", ""]));
}

#[test]
fn send_line_writes_the_line_and_the_delimiter() {
    struct Greeter;
    impl LineOnlyReceiver for Greeter {
        const DELIMITER: &'static [u8] = b"\n";
        fn connection_made(&mut self, ctx: &LineOnlyContext) {
            ctx.send_line("hello");
            assert_eq!(ctx.delimiter(), "\n");
        }
        fn line_received(&mut self, ctx: &LineOnlyContext, line: Bytes) {
            ctx.send_line(line);
        }
    }
    let (_, t) = feed(LineOnlyReceiverProtocol::new(Greeter), &[b"x\n"]);
    assert_eq!(t.value(), b"hello\nx\n");
}

#[test]
fn eof_and_connection_lost_reach_the_receiver() {
    #[derive(Default)]
    struct Ends {
        lines: usize,
        lost: bool,
    }
    impl LineOnlyReceiver for Ends {
        fn line_received(&mut self, _: &LineOnlyContext, _: Bytes) {
            self.lines += 1;
        }
        fn eof_received(&mut self, _: &LineOnlyContext) -> bool {
            true
        }
        fn connection_lost(&mut self, _: &Reason) {
            self.lost = true;
        }
    }
    let (mut p, _) = feed(
        LineOnlyReceiverProtocol::new(Ends::default()),
        &[b"a\r\nunfinished"],
    );
    assert!(p.eof_received());
    p.connection_lost(&Reason::Done);
    assert_eq!(p.receiver().lines, 1);
    assert!(p.receiver().lost);
}
