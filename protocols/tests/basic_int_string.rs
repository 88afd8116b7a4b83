//! Int32/Int16/Int8StringReceiver: the vectors of reference §5.7 (24–32)
//! and the rules of §5.3, for each prefix size, fed whole, at every split
//! point and byte by byte.

mod support_basic;

use std::time::Duration;

use bytes::Bytes;
use support_basic::{feed, same_at_every_split, text};
use twill::task::Clock;
use twill::Protocol;
use twill_protocols::basic::{
    Int16StringReceiver, Int32StringReceiver, Int8StringReceiver, IntNStringReceiver,
    StringContext, StringReceiver, StringTooLongError,
};

/// Twisted's `TestMixin`: records strings; MAX_LENGTH 50.
#[derive(Default)]
struct Rec {
    received: Vec<String>,
    exceeded: Vec<u64>,
    /// Record length_limit_exceeded instead of closing.
    keep_open: bool,
}

impl StringReceiver for Rec {
    const MAX_LENGTH: usize = 50;

    fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
        self.received.push(text(&string));
        if string == "quit" {
            ctx.lose_connection();
        }
    }

    fn length_limit_exceeded(&mut self, ctx: &StringContext, length: u64) {
        self.exceeded.push(length);
        if !self.keep_open {
            ctx.lose_connection();
        }
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    received: Vec<String>,
    exceeded: Vec<u64>,
    closed: bool,
}

fn run<const N: usize>(rec: Rec, chunks: &[&[u8]]) -> Outcome {
    let (p, t) = feed(IntNStringReceiver::<Rec, N>::new(rec), chunks);
    let r = p.receiver();
    Outcome {
        received: r.received.clone(),
        exceeded: r.exceeded.clone(),
        closed: t.disconnecting(),
    }
}

/// `string` with an `N`-byte big-endian prefix (Python's `struct.pack`).
fn framed<const N: usize>(string: &[u8]) -> Vec<u8> {
    let mut out = (string.len() as u64).to_be_bytes()[8 - N..].to_vec();
    out.extend_from_slice(string);
    out
}

/// Runs `check` for every prefix size.
macro_rules! for_each_prefix {
    ($check:ident) => {
        $check::<4>();
        $check::<2>();
        $check::<1>();
    };
}

#[test]
fn defaults_are_twisteds() {
    struct Plain;
    impl StringReceiver for Plain {
        fn string_received(&mut self, _: &StringContext, _: Bytes) {}
    }
    assert_eq!(<Plain as StringReceiver>::MAX_LENGTH, 99999);
    let (p, _) = feed(Int32StringReceiver::new(Plain), &[]);
    assert_eq!(p.context().unwrap().max_length(), 99999);
}

#[test]
fn v24_send_string_prefixes_the_length() {
    fn check<const N: usize>() {
        let (p, t) = feed(IntNStringReceiver::<Rec, N>::new(Rec::default()), &[]);
        p.context().unwrap().send_string("foo").unwrap();
        assert_eq!(t.value(), framed::<N>(b"foo"));
    }
    for_each_prefix!(check);
    let (p, t) = feed(Int32StringReceiver::new(Rec::default()), &[]);
    p.context().unwrap().send_string(b"foo").unwrap();
    assert_eq!(t.value(), b"\x00\x00\x00\x03foo");
    let (p, t) = feed(Int16StringReceiver::new(Rec::default()), &[]);
    p.context().unwrap().send_string(b"foo").unwrap();
    assert_eq!(t.value(), b"\x00\x03foo");
    let (p, t) = feed(Int8StringReceiver::new(Rec::default()), &[]);
    p.context().unwrap().send_string(b"foo").unwrap();
    assert_eq!(t.value(), b"\x03foo");
}

#[test]
fn v25_a_string_is_received() {
    for (input, n) in [
        (&b"\x00\x00\x00\x04ubar"[..], 4),
        (&b"\x00\x04ubar"[..], 2),
        (&b"\x04ubar"[..], 1),
    ] {
        let out = same_at_every_split(input, |chunks| match n {
            4 => run::<4>(Rec::default(), chunks),
            2 => run::<2>(Rec::default(), chunks),
            _ => run::<1>(Rec::default(), chunks),
        });
        assert_eq!(out.received, ["ubar"]);
        assert!(!out.closed);
    }
}

#[test]
fn v26_strings_fed_one_byte_at_a_time_arrive_in_order() {
    fn check<const N: usize>() {
        let strings = ["a".to_owned(), "b".repeat(16)];
        let input: Vec<u8> = strings
            .iter()
            .flat_map(|s| framed::<N>(s.as_bytes()))
            .collect();
        let out = same_at_every_split(&input, |chunks| run::<N>(Rec::default(), chunks));
        assert_eq!(out.received, strings);
    }
    for_each_prefix!(check);
}

#[test]
fn v27_partial_input_delivers_nothing() {
    let partial: [(usize, &[&[u8]]); 3] = [
        (4, &[b"\x00\x00\x00", b"hello there", b""]),
        (2, &[b"\x00", b"hello there", b""]),
        (1, &[b"\x08", b"dzadz", b""]),
    ];
    for (n, inputs) in partial {
        for input in inputs {
            let out = same_at_every_split(input, |chunks| match n {
                4 => run::<4>(Rec::default(), chunks),
                2 => run::<2>(Rec::default(), chunks),
                _ => run::<1>(Rec::default(), chunks),
            });
            // ("hello there" announces a huge length: nothing delivered,
            // and the connection closes.)
            assert!(out.received.is_empty(), "{n} {input:?}");
        }
    }
}

#[test]
fn v28_illegal_lengths_close() {
    let out = same_at_every_split(b"\x10\x00\x00\x00aaaaaa", |c| run::<4>(Rec::default(), c));
    assert_eq!(out.exceeded, [268435456]);
    assert!(out.received.is_empty());
    assert!(out.closed);
    let out = same_at_every_split(b"\x10\x00aaaaaa", |c| run::<2>(Rec::default(), c));
    assert_eq!(out.exceeded, [4096]);
    assert!(out.received.is_empty());
    assert!(out.closed);
    let out = same_at_every_split(b"\x00\x00aaaaaa", |c| run::<1>(Rec::default(), c));
    assert_eq!(out.received, ["", ""]);
    assert_eq!(out.exceeded, [97]);
    assert!(out.closed);
}

#[test]
fn v29_length_limit_exceeded_gets_the_length_and_the_string_is_not_delivered() {
    fn check<const N: usize>() {
        // test_lengthLimitExceeded: the prefix alone.
        let prefix = &framed::<N>(&[b'x'; 11])[..N];
        let (p, t) = feed(
            IntNStringReceiver::<Rec, N>::new(Rec {
                keep_open: true,
                ..Rec::default()
            })
            .with_max_length(10),
            &[prefix],
        );
        assert_eq!(p.receiver().exceeded, [11]);
        assert!(!t.disconnecting());
        // test_longStringNotDelivered: prefix and string together.
        let out = same_at_every_split(&framed::<N>(&[b'x'; 11]), |chunks| {
            let (p, t) = feed(
                IntNStringReceiver::<Rec, N>::new(Rec::default()).with_max_length(10),
                chunks,
            );
            let r = p.receiver();
            (r.received.clone(), r.exceeded.clone(), t.disconnecting())
        });
        assert_eq!(out, (vec![], vec![11], true));
    }
    for_each_prefix!(check);
}

#[test]
fn v30_send_string_refuses_what_the_prefix_cannot_announce() {
    let (p, t) = feed(Int16StringReceiver::new(Rec::default()), &[]);
    let ctx = p.context().unwrap();
    let err = ctx.send_string(vec![b'b'; (1 << 16) + 1]).unwrap_err();
    assert_eq!(
        err,
        StringTooLongError {
            length: 65537,
            max: 65535
        }
    );
    assert_eq!(
        err.to_string(),
        "Try to send 65537 bytes whereas maximum is 65535"
    );
    assert!(ctx.send_string(vec![b'b'; 65536]).is_err());
    assert!(t.value().is_empty(), "nothing is written");
    ctx.send_string(vec![b'b'; 65535]).unwrap();
    assert_eq!(t.value().len(), 2 + 65535);
    assert_eq!(&t.value()[..2], b"\xff\xff");

    let (p, t) = feed(Int8StringReceiver::new(Rec::default()), &[]);
    let ctx = p.context().unwrap();
    assert!(ctx.send_string(vec![b'b'; (1 << 8) + 1]).is_err());
    assert!(ctx.send_string(vec![b'b'; 256]).is_err());
    ctx.send_string(vec![b'b'; 255]).unwrap();
    assert_eq!(t.value().len(), 1 + 255);
}

#[test]
fn v31_the_default_max_length_is_99999() {
    struct Plain(Vec<Bytes>);
    impl StringReceiver for Plain {
        fn string_received(&mut self, _: &StringContext, s: Bytes) {
            self.0.push(s);
        }
    }
    let closed = same_at_every_split(b"\x00\x01\x86\xa0", |chunks| {
        let (_, t) = feed(Int32StringReceiver::new(Plain(Vec::new())), chunks);
        t.disconnecting()
    });
    assert!(closed, "100000 > MAX_LENGTH");
    let (p, t) = feed(
        Int32StringReceiver::new(Plain(Vec::new())),
        &[b"\x00\x01\x86\x9f"],
    );
    assert!(!t.disconnecting(), "99999 waits");
    assert_eq!(p.buffered(), 4);
    let mut p = p;
    p.data_received(Bytes::from(vec![b'z'; 99999]));
    assert_eq!(p.receiver().0.len(), 1);
    assert_eq!(p.receiver().0[0].len(), 99999);
    assert_eq!(t.failure(), None);
}

#[test]
fn v32_two_strings_and_a_partial_prefix_in_one_packet() {
    let input = b"\x00\x00\x00\x04ubar\x00\x00\x00\x00\x00\x00";
    let (received, buffered) = same_at_every_split(input, |chunks| {
        let (p, _) = feed(Int32StringReceiver::new(Rec::default()), chunks);
        let received = p.receiver().received.clone();
        (received, p.buffered())
    });
    assert_eq!(received, ["ubar", ""]);
    assert_eq!(buffered, 2);
}

// ---------------------------------------------------------- further rules

#[test]
fn nothing_is_delivered_after_a_string_that_closes() {
    fn check<const N: usize>() {
        let input: Vec<u8> = ["a", "quit", "b"]
            .iter()
            .flat_map(|s| framed::<N>(s.as_bytes()))
            .collect();
        let out = same_at_every_split(&input, |c| run::<N>(Rec::default(), c));
        assert_eq!(out.received, ["a", "quit"]);
        assert!(out.closed);
    }
    for_each_prefix!(check);
}

#[test]
fn a_length_limit_exceeded_that_keeps_the_connection_skips_that_string() {
    fn check<const N: usize>() {
        let mut input = framed::<N>(b"ok");
        input.extend(framed::<N>(&[b'x'; 60]));
        input.extend(framed::<N>(b"fin"));
        let out = same_at_every_split(&input, |c| {
            run::<N>(
                Rec {
                    keep_open: true,
                    ..Rec::default()
                },
                c,
            )
        });
        assert_eq!(out.received, ["ok", "fin"]);
        assert_eq!(out.exceeded, [60]);
        assert!(!out.closed);
    }
    for_each_prefix!(check);
}

#[test]
fn max_length_can_change_at_run_time() {
    let (mut p, t) = feed(Int16StringReceiver::new(Rec::default()), &[]);
    let ctx = p.context().unwrap();
    assert_eq!(ctx.max_length(), 50);
    ctx.set_max_length(100);
    p.data_received(Bytes::from(framed::<2>(&[b'y'; 80])));
    assert_eq!(p.receiver().received.len(), 1);
    assert!(!t.disconnecting());
}

/// Pauses after each string, like Twisted's `ConsumingProtocol`.
struct Consuming;

impl StringReceiver for Consuming {
    fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
        ctx.write(string);
        ctx.pause_producing();
    }
}

#[test]
fn pausing_holds_strings_until_resumed() {
    let (mut p, t) = feed(Int8StringReceiver::new(Consuming), &[]);
    let ctx = p.context().unwrap();
    p.data_received(Bytes::from_static(b"\x05hello\x05world"));
    assert_eq!(t.value(), b"hello");
    assert!(t.reading_paused() && ctx.is_paused());
    p.data_received(Bytes::from_static(b"\x01!"));
    assert_eq!(t.value(), b"hello");
    ctx.resume_producing();
    assert_eq!(t.value(), b"helloworld");
    assert!(ctx.is_paused());
    ctx.resume_producing();
    assert_eq!(t.value(), b"helloworld!");
    ctx.resume_producing();
    assert!(!t.reading_paused() && !ctx.is_paused());
    assert_eq!(p.buffered(), 0);
}

#[test]
fn resuming_from_a_timer_delivers_what_arrived_meanwhile() {
    struct Pauser {
        clock: Clock,
        received: Vec<String>,
    }
    impl StringReceiver for Pauser {
        fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
            self.received.push(text(&string));
            if string == "pause" {
                ctx.pause_producing();
                let ctx = ctx.clone();
                self.clock
                    .call_later(Duration::ZERO, move || ctx.resume_producing());
            }
        }
    }
    let input: Vec<u8> = ["one", "pause", "two", "three"]
        .iter()
        .flat_map(|s| framed::<4>(s.as_bytes()))
        .collect();
    let (before, after) = same_at_every_split(&input, |chunks| {
        let clock = Clock::new();
        let (p, _) = feed(
            Int32StringReceiver::new(Pauser {
                clock: clock.clone(),
                received: Vec::new(),
            }),
            chunks,
        );
        let before = p.receiver().received.clone();
        clock.advance(Duration::ZERO);
        let after = p.receiver().received.clone();
        (before, after)
    });
    assert_eq!(before, ["one", "pause"]);
    assert_eq!(after, ["one", "pause", "two", "three"]);
}

#[test]
fn stop_producing_closes_and_delivers_nothing_more() {
    struct Stopper(Vec<String>);
    impl StringReceiver for Stopper {
        fn string_received(&mut self, ctx: &StringContext, s: Bytes) {
            self.0.push(text(&s));
            ctx.stop_producing();
        }
    }
    let (p, t) = feed(
        Int8StringReceiver::new(Stopper(Vec::new())),
        &[b"\x01a\x01b"],
    );
    assert_eq!(p.receiver().0, ["a"]);
    assert!(t.disconnecting());
}
