//! NetstringReceiver: the vectors of reference §5.7 (33–39) and the rules
//! of §5.4, fed whole, at every split point and byte by byte.

mod support_basic;

use bytes::Bytes;
use support_basic::{feed, same_at_every_split, text};
use twill::Protocol;
use twill_protocols::basic::{NetstringReceiver, StringContext, StringReceiver};

/// Twisted's `TestNetstring`: records and echoes each string; MAX_LENGTH
/// 50.
#[derive(Default)]
struct Rec {
    received: Vec<String>,
}

impl StringReceiver for Rec {
    const MAX_LENGTH: usize = 50;
    fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
        self.received.push(text(&string));
        ctx.write(string);
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    received: Vec<String>,
    closed: bool,
    failure: Option<String>,
}

fn run_max(max: usize, chunks: &[&[u8]]) -> Outcome {
    let (p, t) = feed(
        NetstringReceiver::new(Rec::default()).with_max_length(max),
        chunks,
    );
    let received = p.receiver().received.clone();
    assert_eq!(p.is_broken_peer(), t.failure().is_some());
    Outcome {
        received,
        closed: t.disconnecting(),
        failure: t.failure(),
    }
}

fn run(chunks: &[&[u8]]) -> Outcome {
    run_max(50, chunks)
}

#[test]
fn defaults_are_twisteds() {
    struct Plain;
    impl StringReceiver for Plain {
        fn string_received(&mut self, _: &StringContext, _: Bytes) {}
    }
    let (p, _) = feed(NetstringReceiver::new(Plain), &[]);
    assert_eq!(p.context().unwrap().max_length(), 99999);
}

#[test]
fn v33_accepted_netstrings() {
    let cases: [(&[u8], &[&str]); 6] = [
        (b"0:,", &[""]),
        (b"1:a,", &["a"]),
        (b"2:ab,", &["ab"]),
        (b"4:1:a,,", &["1:a,"]),
        (b"3:abc,3:def,", &["abc", "def"]),
        (b"3:ab", &[]),
    ];
    for (input, expected) in cases {
        let out = same_at_every_split(input, run);
        assert_eq!(out.received, expected, "{input:?}");
        assert!(!out.closed, "{input:?}");
    }
}

#[test]
fn v34_split_delivery() {
    assert_eq!(run(&[b"4:aa", b"aa,"]).received, ["aaaa"]);
    assert_eq!(
        run(&[b"1", b"0:01234", b"56789", b","]).received,
        ["0123456789"]
    );
    assert_eq!(run(&[b"2", b":", b"a", b"b", b","]).received, ["ab"]);
    let (mut p, _) = feed(NetstringReceiver::new(Rec::default()), &[b"1:a,1"]);
    assert_eq!(p.receiver().received, ["a"]);
    p.data_received(Bytes::from_static(b":b,"));
    assert_eq!(p.receiver().received, ["a", "b"]);
}

#[test]
fn v35_malformed_input_closes_and_delivers_nothing() {
    let cases: [&[u8]; 10] = [
        b"2:aaa,", b"0:a,", b":aaa,", b"3aaa,", b"aaa,", b"aaa", b"03:abc,", b"3:abc;", b"-1:",
        b" 3:abc,",
    ];
    for input in cases {
        let out = same_at_every_split(input, run);
        assert!(out.received.is_empty(), "{input:?}");
        assert!(out.closed, "{input:?}");
        assert!(out.failure.is_some(), "{input:?}");
    }
    assert_eq!(
        run(&[b"2:aaa,"]).failure.unwrap(),
        "corrupt input: The received netstring is not terminated by a comma."
    );
    assert_eq!(
        run(&[b":aaa,"]).failure.unwrap(),
        "corrupt input: The received netstring does not start with a length specification."
    );
}

#[test]
fn v36_test_illegal_fed_bytewise() {
    let long_payload = format!("51:{}b,", "a".repeat(50));
    let cases: [&[u8]; 4] = [
        b"9999999999999999999999",
        b"abc",
        b"4:abcde",
        long_payload.as_bytes(),
    ];
    for input in cases {
        let out = same_at_every_split(input, run);
        assert!(out.closed, "{input:?}");
        assert!(out.received.is_empty());
    }
    // Too many digits are rejected before the colon, and without reading
    // them all.
    let (p, t) = feed(NetstringReceiver::new(Rec::default()), &[b"999"]);
    assert!(t.disconnecting());
    assert!(p.is_broken_peer());
    assert!(t.failure().unwrap().contains("longer than the maximum 50"));
}

#[test]
fn v37_the_default_max_length_is_99999() {
    struct Plain;
    impl StringReceiver for Plain {
        fn string_received(&mut self, _: &StringContext, _: Bytes) {}
    }
    let waits = same_at_every_split(b"99999:", |chunks| {
        let (_, t) = feed(NetstringReceiver::new(Plain), chunks);
        !t.disconnecting()
    });
    assert!(waits);
    let closed = same_at_every_split(b"100000:", |chunks| {
        let (_, t) = feed(NetstringReceiver::new(Plain), chunks);
        t.disconnecting()
    });
    assert!(closed);
}

#[test]
fn v38_length_specification_border() {
    // MAX_LENGTH 12: "12:" is accepted and 13 more bytes (with the comma)
    // make the string.
    let out = same_at_every_split(b"12:", |c| run_max(12, c));
    assert!(!out.closed);
    let out = same_at_every_split(b"12:abcdefghijkl,", |c| run_max(12, c));
    assert_eq!(out.received, ["abcdefghijkl"]);
    // MAX_LENGTH 11: rejected.
    assert!(same_at_every_split(b"12:", |c| run_max(11, c)).closed);
    assert!(same_at_every_split(b"1000:", |c| run_max(11, c)).closed);
}

#[test]
fn v39_round_trip() {
    let (p, t) = feed(NetstringReceiver::new(Rec::default()), &[]);
    p.context().unwrap().send_string(b"hello").unwrap();
    assert_eq!(t.value(), b"5:hello,");

    let strings = [
        "hello".to_owned(),
        "world".to_owned(),
        "how".to_owned(),
        "are".to_owned(),
        "you123".to_owned(),
        ":today".to_owned(),
        "a".repeat(515),
    ];
    let (p, t) = feed(NetstringReceiver::new(Rec::default()), &[]);
    let ctx = p.context().unwrap();
    for s in &strings {
        ctx.send_string(s).unwrap();
    }
    let wire = t.value();
    let received = same_at_every_split(&wire, |chunks| run_max(699, chunks).received);
    assert_eq!(received, strings);
}

#[test]
fn nothing_is_parsed_after_malformed_input() {
    let (mut p, t) = feed(NetstringReceiver::new(Rec::default()), &[b"1:a,x"]);
    assert_eq!(p.receiver().received, ["a"]);
    assert!(p.is_broken_peer());
    p.data_received(Bytes::from_static(b"1:b,"));
    assert_eq!(p.receiver().received, ["a"]);
    assert_eq!(p.buffered(), 0);
    assert!(t.failure().is_some());
}

#[test]
fn nothing_is_delivered_after_a_string_that_closes() {
    struct Quit(Vec<String>);
    impl StringReceiver for Quit {
        fn string_received(&mut self, ctx: &StringContext, s: Bytes) {
            self.0.push(text(&s));
            if s == "quit" {
                ctx.lose_connection();
            }
        }
    }
    let received = same_at_every_split(b"1:a,4:quit,1:b,", |chunks| {
        let (p, t) = feed(NetstringReceiver::new(Quit(Vec::new())), chunks);
        assert!(t.disconnecting());
        let received = p.receiver().0.clone();
        received
    });
    assert_eq!(received, ["a", "quit"]);
}

#[test]
fn netstrings_can_pause() {
    struct Consuming;
    impl StringReceiver for Consuming {
        fn string_received(&mut self, ctx: &StringContext, s: Bytes) {
            ctx.write(s);
            ctx.pause_producing();
        }
    }
    let (mut p, t) = feed(NetstringReceiver::new(Consuming), &[b"1:a,1:b,"]);
    assert_eq!(t.value(), b"a");
    let ctx = p.context().unwrap();
    p.data_received(Bytes::from_static(b"1:c,"));
    ctx.resume_producing();
    assert_eq!(t.value(), b"ab");
    ctx.resume_producing();
    assert_eq!(t.value(), b"abc");
    ctx.resume_producing();
    assert!(!ctx.is_paused() && !t.reading_paused());
}
