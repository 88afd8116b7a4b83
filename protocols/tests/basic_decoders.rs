//! The framing of `basic` as codec-layer decoders and encoders:
//! LineDecoder, IntNDecoder/IntNEncoder, NetstringDecoder/NetstringEncoder
//! at every split point, and inside a `Framed`.

mod support;

use bytes::{Bytes, BytesMut};
use support::{assert_model, chunked, feed, maxima, plus, same_at_every_split, Event, XorShift};
use twill::testing::StringTransport;
use twill::Protocol;
use twill_protocols::basic::{
    IntNDecoder, IntNEncoder, LineDecoder, NetstringDecoder, NetstringEncoder,
};
use twill_protocols::codec::{Context, DecodeError, Decoder, Encoder, Framed, Handler};

fn frame(s: &str) -> Event<Bytes> {
    Event::Frame(Bytes::copy_from_slice(s.as_bytes()))
}

fn error(s: &str) -> Event<Bytes> {
    Event::Error(s.to_owned())
}

/// Frames as text and errors as "error", for inputs whose error details
/// depend on the cut.
fn kinds(events: Vec<Event<Bytes>>) -> Vec<String> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Frame(f) => String::from_utf8_lossy(&f).into_owned(),
            Event::Error(_) => "error".to_owned(),
        })
        .collect()
}

#[test]
fn line_decoder_cuts_at_the_exact_delimiter_and_reports_a_truncated_tail() {
    let events = same_at_every_split(&LineDecoder::default(), b"hello\r\nbare\nlf\r\npart");
    assert_eq!(
        events,
        [frame("hello"), frame("bare\nlf"), error("truncated 4")]
    );
    let events = same_at_every_split(&LineDecoder::new("\n", 100), b"hi\r\nyo\n");
    assert_eq!(events, [frame("hi\r"), frame("yo")]);
}

#[test]
fn line_decoder_line_receiver_rules_drop_the_buffer_with_a_long_line() {
    let decoder = LineDecoder::new("\r\n", 4);
    assert_eq!(decoder.max_length(), 4);
    assert_eq!(decoder.delimiter(), "\r\n");
    let events = feed(&decoder, &[b"ok\r\nabcdefgh\r\nfin\r\n"]);
    assert_eq!(events, [frame("ok"), error("too long 8 > 4")]);
    // A maximum-length line with a split delimiter is fine.
    let events = same_at_every_split(&decoder, b"abcd\r\n");
    assert_eq!(events, [frame("abcd")]);
}

#[test]
fn line_decoder_line_only_rules_skip_only_the_long_line() {
    let decoder = LineDecoder::line_only("\r\n", 4);
    let input = b"ok\r\ntoo long\r\nfin\r\n";
    let whole = kinds(feed(&decoder, &[input]));
    assert_eq!(whole, ["ok", "error", "fin"]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(kinds(feed(&decoder, &[a, b])), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(kinds(feed(&decoder, &bytes)), whole);
    // A skipped tail at EOF is not reported as truncated.
    assert_eq!(kinds(feed(&decoder, &[b"abcdefg"])), ["error"]);
}

#[test]
fn intn_decoder_skips_a_too_long_string_and_goes_on() {
    for n in [1usize, 2, 4] {
        let mut input = Vec::new();
        for s in [&b"a"[..], &[b'x'; 60][..], b"", b"fin"] {
            input.extend_from_slice(&(s.len() as u64).to_be_bytes()[8 - n..]);
            input.extend_from_slice(s);
        }
        let events = same_at_every_split(&IntNDecoder::new(n, 50), &input);
        assert_eq!(
            events,
            [
                frame("a"),
                error("too long 60 > 50"),
                frame(""),
                frame("fin")
            ],
            "prefix {n}"
        );
    }
    let events = same_at_every_split(&IntNDecoder::new(4, 50), b"\x00\x00\x00\x05ab");
    assert_eq!(events, [error("truncated 6")]);
}

#[test]
#[should_panic(expected = "1, 2 or 4")]
fn intn_prefixes_are_1_2_or_4_bytes() {
    let _ = IntNDecoder::new(3, 10);
}

#[test]
fn intn_encoder_refuses_what_the_prefix_cannot_announce() {
    let mut out = BytesMut::new();
    IntNEncoder::new(2)
        .encode(vec![1u8; 65535], &mut out)
        .unwrap();
    assert_eq!(out.len(), 65537);
    let err = IntNEncoder::new(2)
        .encode(vec![1u8; 65536], &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "message of 65536 bytes is longer than the maximum of 65535"
    );
}

#[test]
fn netstring_decoder_stops_at_malformed_input() {
    let events = same_at_every_split(&NetstringDecoder::new(50), b"3:abc,0:,4:1:a,,");
    assert_eq!(events, [frame("abc"), frame(""), frame("1:a,")]);
    let events = same_at_every_split(&NetstringDecoder::new(50), b"1:a,2:abc,1:b,");
    assert_eq!(
        events,
        [
            frame("a"),
            error("corrupt input: The received netstring is not terminated by a comma.")
        ]
    );
    let events = same_at_every_split(&NetstringDecoder::new(50), b"1:a,3:ab");
    assert_eq!(events, [frame("a"), error("truncated 2")]);
    let mut huge = BytesMut::from(&b"99999999999999999999999999999999999999"[..]);
    let err = NetstringDecoder::new(usize::MAX)
        .decode(&mut huge)
        .unwrap_err();
    assert!(!err.is_recoverable());
}

#[test]
fn netstring_encoder_writes_length_colon_payload_comma() {
    let mut out = BytesMut::new();
    NetstringEncoder.encode("", &mut out).unwrap();
    NetstringEncoder.encode(b"1:a,", &mut out).unwrap();
    assert_eq!(out, "0:,4:1:a,,");
}

/// Echoes every message; records errors.
#[derive(Default)]
struct Echo {
    errors: Vec<String>,
}

impl Handler for Echo {
    type Message = Bytes;
    type Reply = Bytes;

    fn message_received(&mut self, ctx: &Context<Bytes>, message: Bytes) {
        ctx.write(message);
    }

    fn exception_caught(&mut self, ctx: &Context<Bytes>, error: DecodeError) {
        self.errors.push(error.to_string());
        ctx.fail(error);
    }
}

#[test]
fn netstrings_in_a_framed() {
    let transport = StringTransport::new();
    let mut framed = Framed::new(
        NetstringDecoder::new(100),
        NetstringEncoder,
        Echo::default(),
    );
    framed.connection_made(&transport.transport());
    framed.data_received(Bytes::from_static(b"5:hello,3:ab"));
    framed.data_received(Bytes::from_static(b"c,"));
    assert_eq!(transport.value(), b"5:hello,3:abc,");
    framed.data_received(Bytes::from_static(b"x"));
    assert!(transport.disconnecting());
    assert_eq!(framed.handler().errors.len(), 1);
}

#[test]
fn int16_strings_in_a_framed() {
    let transport = StringTransport::new();
    let mut framed = Framed::new(
        IntNDecoder::new(2, 10),
        IntNEncoder::new(2),
        Echo::default(),
    );
    framed.connection_made(&transport.transport());
    framed.data_received(Bytes::from_static(
        b"\x00\x02hi\x00\x0bxxxxxxxxxxx\x00\x01!",
    ));
    assert_eq!(transport.value(), b"\x00\x02hi");
    assert!(transport.disconnecting(), "the handler closes on the error");
    assert_eq!(
        framed.handler().errors,
        ["frame length (11) exceeds the allowed maximum (10)"]
    );
}

#[test]
fn twisted_lines_in_a_framed() {
    let transport = StringTransport::new();
    let encoder = twill_protocols::codec::BytesEncoder;
    let mut framed = Framed::new(LineDecoder::new(";", 16), encoder, Echo::default());
    framed.connection_made(&transport.transport());
    framed.data_received(Bytes::from_static(b"a;bc;d"));
    assert_eq!(transport.value(), b"abc");
    assert!(!transport.disconnecting());
}

/// Reports a too-long frame without skipping anything: a broken decoder.
#[derive(Debug, Clone)]
struct StuckDecoder;

impl twill_protocols::codec::Decoder for StuckDecoder {
    type Item = bytes::Bytes;
    fn decode(
        &mut self,
        src: &mut bytes::BytesMut,
    ) -> Result<Option<bytes::Bytes>, twill_protocols::codec::DecodeError> {
        if src.is_empty() {
            return Ok(None);
        }
        Err(twill_protocols::codec::DecodeError::TooLongFrame { length: 1, max: 0 })
    }
}

/// Ignores decode errors (does not close).
struct Tolerant;

impl twill_protocols::codec::Handler for Tolerant {
    type Message = bytes::Bytes;
    type Reply = bytes::Bytes;
    fn message_received(
        &mut self,
        _: &twill_protocols::codec::Context<bytes::Bytes>,
        _: bytes::Bytes,
    ) {
    }
    fn exception_caught(
        &mut self,
        _: &twill_protocols::codec::Context<bytes::Bytes>,
        _: twill_protocols::codec::DecodeError,
    ) {
    }
}

#[test]
fn a_recoverable_error_that_skips_nothing_closes_instead_of_looping() {
    use twill::Protocol;
    let transport = twill::testing::StringTransport::new();
    let mut framed = twill_protocols::codec::Framed::new(
        StuckDecoder,
        twill_protocols::codec::BytesEncoder,
        Tolerant,
    );
    framed.connection_made(&transport.transport());
    framed.data_received(bytes::Bytes::from_static(b"x"));
    assert!(
        transport.disconnecting(),
        "closed rather than looping forever"
    );
}

// "No limit" written as usize::MAX (issue 10): `max_length + delimiter`
// overflowed in LineDecoder when a read ended without a delimiter.

#[test]
fn line_decoder_with_no_limit_waits_for_a_delimiter_split_after_its_cr() {
    for decoder in [
        LineDecoder::new("\r\n", usize::MAX),
        LineDecoder::line_only("\r\n", usize::MAX),
    ] {
        let events = feed(&decoder, &[b"hello\r", b"\nworld\r", b"\n"]);
        assert_eq!(events, [frame("hello"), frame("world")]);
        let events = same_at_every_split(&decoder, b"a\r\nb\nc\r\r\nd\r");
        assert_eq!(events, [frame("a"), frame("b\nc\r"), error("truncated 2")]);
    }
}

#[test]
fn line_only_with_a_delimiter_longer_than_the_tail_does_not_underflow() {
    // A one-byte tail, a maximum of 0 and a three-byte delimiter: the
    // partial-delimiter check used to compute `1 - 2` before checking that
    // the tail ends with two bytes of the delimiter.
    let decoder = LineDecoder::line_only("abc", 0);
    let input = b"xabcabc";
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(
            kinds(feed(&decoder, &[a, b])),
            ["error", ""],
            "split at {at}"
        );
    }
    assert_eq!(kinds(feed(&decoder, &[b"x"])), ["error"]);
}

// Randomized: the decoders of `basic` against whole-input models, each
// also with usize::MAX.

/// A byte from a small alphabet, so that delimiters are frequent.
fn symbol(rng: &mut XorShift) -> u8 {
    [b'a', b'a', b'a', b'b', b'\r', b'\n'][rng.below(6) as usize]
}

/// `input` cut at the first `delimiter` of the rest each time: the lines
/// and the unterminated tail.
fn split_lines<'a>(delimiter: &[u8], input: &'a [u8]) -> (Vec<&'a [u8]>, &'a [u8]) {
    let mut lines = Vec::new();
    let mut rest = input;
    while let Some(at) = rest.windows(delimiter.len()).position(|w| w == delimiter) {
        lines.push(&rest[..at]);
        rest = &rest[at + delimiter.len()..];
    }
    (lines, rest)
}

#[test]
fn random_lines_match_the_model_at_the_exact_limit_and_without_one() {
    let mut rng = XorShift(0xa076_1d64_78bd_642f);
    for _ in 0..3000 {
        let delimiter: Vec<u8> = (0..1 + rng.below(3)).map(|_| symbol(&mut rng)).collect();
        let input: Vec<u8> = (0..rng.below(100)).map(|_| symbol(&mut rng)).collect();
        let chunks = chunked(&mut rng, &input, 16);
        // No line is too long: each is delivered, and an unterminated tail
        // is truncated at EOF.
        let (lines, tail) = split_lines(&delimiter, &input);
        let mut expected: Vec<Event<Bytes>> = lines
            .iter()
            .map(|line| Event::Frame(Bytes::copy_from_slice(line)))
            .collect();
        if !tail.is_empty() {
            expected.push(error(&format!("truncated {}", tail.len())));
        }
        // The longest line, or the tail, is exactly at the limit.
        let exact = lines
            .iter()
            .map(|line| line.len())
            .chain([tail.len()])
            .max();
        let exact = exact.unwrap_or(0);
        for max in maxima(exact) {
            for decoder in [
                LineDecoder::new(delimiter.clone(), max),
                LineDecoder::line_only(delimiter.clone(), max),
            ] {
                let most = plus(max, delimiter.len() - 1);
                let context = format!("{delimiter:?} max {max} {decoder:?}");
                assert_model(&decoder, &input, &chunks, most, &expected, |e| e, &context);
            }
        }
    }
}

/// IntN strings applied to the whole input at once: a too-long string is
/// reported and skipped (as much of it as there is).
fn intn_model(n: usize, max: usize, input: &[u8]) -> Vec<Event<Bytes>> {
    let mut events = Vec::new();
    let mut rest = input;
    while rest.len() >= n {
        let length = rest[..n].iter().fold(0u64, |v, &b| v << 8 | u64::from(b));
        if length > max as u64 {
            events.push(error(&format!("too long {length} > {max}")));
            let skip = (length as usize).min(rest.len() - n);
            rest = &rest[n + skip..];
            continue;
        }
        let length = length as usize;
        if rest.len() - n < length {
            break;
        }
        events.push(Event::Frame(Bytes::copy_from_slice(&rest[n..n + length])));
        rest = &rest[n + length..];
    }
    if !rest.is_empty() {
        events.push(error(&format!("truncated {}", rest.len())));
    }
    events
}

#[test]
fn random_intn_strings_match_the_model_with_any_maximum() {
    let mut rng = XorShift(0xe703_7ed1_a0b4_28db);
    let mut counts = [0usize; 3]; // frames, too long, truncated
    for _ in 0..3000 {
        let n = [1usize, 2, 4][rng.below(3) as usize];
        let small = rng.below(30) as usize;
        let mut input = Vec::new();
        for _ in 0..rng.below(6) {
            let length = rng.below(small as u64 + 10);
            input.extend_from_slice(&length.to_be_bytes()[8 - n..]);
            // Mostly the announced length, sometimes less (a truncated or
            // misaligned stream).
            let body = if rng.chance(90) {
                length
            } else {
                rng.below(10)
            };
            input.extend((0..body).map(|_| rng.next() as u8));
        }
        let chunks = chunked(&mut rng, &input, 16);
        for max in maxima(small) {
            let expected = intn_model(n, max, &input);
            for event in &expected {
                match event {
                    Event::Frame(_) => counts[0] += 1,
                    Event::Error(s) if s.starts_with("too long") => counts[1] += 1,
                    Event::Error(_) => counts[2] += 1,
                }
            }
            let decoder = IntNDecoder::new(n, max);
            let context = format!("prefix {n} max {max}");
            assert_model(
                &decoder,
                &input,
                &chunks,
                plus(max, n),
                &expected,
                |e| e,
                &context,
            );
        }
    }
    assert!(counts.iter().all(|&c| c > 300), "{counts:?}");
}

/// Netstrings applied to the whole input at once: malformed input stops
/// the decoder.
fn netstring_model(max: usize, input: &[u8]) -> Vec<Event<Bytes>> {
    const MISSING_LENGTH: &str =
        "corrupt input: The received netstring does not start with a length specification.";
    const MISSING_COMMA: &str =
        "corrupt input: The received netstring is not terminated by a comma.";
    let too_long = format!(
        "corrupt input: The received netstring is longer than the maximum {max} specified by \
         MAX_LENGTH"
    );
    let mut events = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let mut value: u128 = 0;
        let mut colon = None;
        for (i, &byte) in rest.iter().enumerate() {
            match byte {
                b':' if i > 0 => {
                    colon = Some(i);
                    break;
                }
                b'0'..=b'9' if i == 1 && rest[0] == b'0' => {
                    events.push(error(MISSING_LENGTH));
                    return events;
                }
                b'0'..=b'9' => {
                    let next = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u128::from(byte - b'0')));
                    match next {
                        Some(v) if v <= max as u128 => value = v,
                        _ => {
                            events.push(error(&too_long));
                            return events;
                        }
                    }
                }
                _ => {
                    events.push(error(MISSING_LENGTH));
                    return events;
                }
            }
        }
        let Some(colon) = colon else {
            events.push(error(&format!("truncated {}", rest.len())));
            return events;
        };
        let payload = &rest[colon + 1..];
        let length = value as usize;
        if payload.len() <= length {
            events.push(error(&format!("truncated {}", payload.len())));
            return events;
        }
        if payload[length] != b',' {
            events.push(error(MISSING_COMMA));
            return events;
        }
        events.push(Event::Frame(Bytes::copy_from_slice(&payload[..length])));
        rest = &payload[length + 1..];
    }
    events
}

#[test]
fn random_netstrings_match_the_model_with_any_maximum() {
    let mut rng = XorShift(0x8ebc_6af0_9c88_c6e3);
    let mut counts = [0usize; 3]; // frames, malformed, truncated
    for _ in 0..3000 {
        let small = rng.below(20) as usize;
        let mut input = Vec::new();
        for _ in 0..rng.below(5) {
            match rng.below(30) {
                0 => input.extend_from_slice(b"01:a,"),
                1 => input.extend_from_slice(b"x"),
                2 => input.extend_from_slice(b"2:abX"),
                // More than usize::MAX: too long even without a limit.
                3 => input.extend_from_slice(b"123456789012345678901234567890:"),
                // Unfinished, if last.
                4 => input.extend_from_slice(b"1"),
                5 => input.extend_from_slice(b"3:a"),
                _ => {
                    let length = rng.below(small as u64 + 6) as usize;
                    input.extend_from_slice(length.to_string().as_bytes());
                    input.push(b':');
                    input.extend((0..length).map(|_| b"ab:,0"[rng.below(5) as usize]));
                    input.push(b',');
                }
            }
        }
        let chunks = chunked(&mut rng, &input, 16);
        for max in maxima(small) {
            let expected = netstring_model(max, &input);
            for event in &expected {
                match event {
                    Event::Frame(_) => counts[0] += 1,
                    Event::Error(s) if s.starts_with("corrupt") => counts[1] += 1,
                    Event::Error(_) => counts[2] += 1,
                }
            }
            let decoder = NetstringDecoder::new(max);
            let context = format!("max {max}");
            // The digits of a length and its ':' come on top of the payload.
            assert_model(
                &decoder,
                &input,
                &chunks,
                plus(max, 24),
                &expected,
                |e| e,
                &context,
            );
        }
    }
    assert!(counts.iter().all(|&c| c > 300), "{counts:?}");
}
