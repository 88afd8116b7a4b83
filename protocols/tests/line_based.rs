//! LineBasedFrameDecoder: Netty's rules, at every split point.

mod support;

use bytes::Bytes;
use support::{
    assert_model, chunked, maxima, plus, same_at_every_split, without_lengths, Event, XorShift,
};
use twill_protocols::codec::LineBasedFrameDecoder;

fn frame(s: &str) -> Event<Bytes> {
    Event::Frame(Bytes::copy_from_slice(s.as_bytes()))
}

fn error(s: &str) -> Event<Bytes> {
    Event::Error(s.to_owned())
}

#[test]
fn lines_end_at_lf_or_crlf_and_a_lone_cr_is_data() {
    let events = same_at_every_split(&LineBasedFrameDecoder::new(16), b"hi\r\nyo\na\rb\n");
    assert_eq!(events, [frame("hi"), frame("yo"), frame("a\rb")]);
}

#[test]
fn delimiters_can_be_kept() {
    let decoder = LineBasedFrameDecoder::new(16).strip_delimiter(false);
    let events = same_at_every_split(&decoder, b"hi\r\nyo\n");
    assert_eq!(events, [frame("hi\r\n"), frame("yo\n")]);
}

#[test]
fn a_line_of_exactly_max_length_is_accepted_even_with_a_split_crlf() {
    let events = same_at_every_split(&LineBasedFrameDecoder::new(3), b"abc\r\nd\n");
    assert_eq!(events, [frame("abc"), frame("d")]);
}

#[test]
fn a_too_long_line_is_skipped_and_reported_at_its_end_then_decoding_goes_on() {
    let events = same_at_every_split(&LineBasedFrameDecoder::new(3), b"ok\ntoolong\nfin\n");
    assert_eq!(events, [frame("ok"), error("too long 7 > 3"), frame("fin")]);
}

#[test]
fn fail_fast_reports_a_too_long_line_as_soon_as_it_passes_the_limit() {
    let decoder = LineBasedFrameDecoder::new(3).fail_fast(true);
    let events = support::feed(&decoder, &[b"toolong", b"er\nok\n"]);
    assert_eq!(events, [error("too long 7 > 3"), frame("ok")]);
}

#[test]
fn an_unterminated_last_line_is_delivered_at_eof() {
    let events = same_at_every_split(&LineBasedFrameDecoder::new(8), b"one\ntwo");
    assert_eq!(events, [frame("one"), frame("two")]);
}

#[test]
fn input_never_buffers_past_the_limit() {
    let mut decoder = LineBasedFrameDecoder::new(100);
    let mut buffer = bytes::BytesMut::new();
    for _ in 0..1000 {
        buffer.extend_from_slice(&[b'x'; 64]);
        let _ = twill_protocols::codec::Decoder::decode(&mut decoder, &mut buffer);
        assert!(buffer.len() <= 101, "buffered {}", buffer.len());
    }
}

#[test]
fn a_too_long_last_line_is_reported_at_eof_not_dropped() {
    let events = support::feed(&LineBasedFrameDecoder::new(3), &[b"ok\ntoolong"]);
    assert_eq!(events, [frame("ok"), error("too long 7 > 3")]);
    let events = support::feed(&LineBasedFrameDecoder::new(3), &[b"abc\r"]);
    assert_eq!(events, [error("too long 4 > 3")]);
}

// "No limit" written as usize::MAX (issue 10): `max_length + 1` used to
// overflow when a read ended in "\r".

#[test]
fn no_limit_with_a_read_ending_in_cr_waits_for_the_lf() {
    let decoder = LineBasedFrameDecoder::new(usize::MAX);
    // Split right after the "\r": the read that ends in it must not panic.
    let events = support::feed(&decoder, &[b"first\r", b"\nsecond\r", b"\n"]);
    assert_eq!(events, [frame("first"), frame("second")]);
    // A "\r" that never gets its "\n" is data of the last line.
    let events = support::feed(&decoder, &[b"last\r"]);
    assert_eq!(events, [frame("last\r")]);
    let kept = decoder.clone().strip_delimiter(false);
    assert_eq!(
        same_at_every_split(&kept, b"a\r\n\r\rb\r\n\r"),
        [frame("a\r\n"), frame("\r\rb\r\n"), frame("\r")]
    );
}

#[test]
fn no_limit_decodes_netty_vectors() {
    // LineBasedFrameDecoderTest.testDecodeWithStrip and
    // testDecodeSplitsCorrectly, with usize::MAX instead of 8192.
    let decoder = LineBasedFrameDecoder::new(usize::MAX);
    assert_eq!(
        same_at_every_split(&decoder, b"first\r\nsecond\nthird"),
        [frame("first"), frame("second"), frame("third")]
    );
    let decoder = decoder.strip_delimiter(false);
    assert_eq!(
        same_at_every_split(&decoder, b"line\r\n.\r\n"),
        [frame("line\r\n"), frame(".\r\n")]
    );
}

#[test]
fn a_too_long_line_has_the_same_length_wherever_its_crlf_is_split() {
    // LineBasedFrameDecoderTest.testTooLongLine2 (not fail fast): the
    // "\r" of a too-long line's "\r\n" arriving in an earlier read than the
    // "\n" is not counted in the line's length.
    let decoder = LineBasedFrameDecoder::new(16).strip_delimiter(false);
    let events = same_at_every_split(&decoder, b"12345678901234567890\r\nfirst\r\n");
    assert_eq!(events, [error("too long 20 > 16"), frame("first\r\n")]);
    let events = support::feed(&decoder, &[b"12345678901234567890\r", b"\nfirst\r\n"]);
    assert_eq!(events, [error("too long 20 > 16"), frame("first\r\n")]);
}

#[test]
fn fail_fast_matches_netty_and_keeps_a_split_crlf() {
    // LineBasedFrameDecoderTest.testTooLongLineWithFailFast.
    let decoder = LineBasedFrameDecoder::new(16)
        .strip_delimiter(false)
        .fail_fast(true);
    let events = support::feed(
        &decoder,
        &[b"12345678901234567", b"890", b"123\r\nfirst\r\n"],
    );
    assert_eq!(events, [error("too long 17 > 16"), frame("first\r\n")]);
    let events = support::feed(&decoder, &[b"12345678901234567\r", b"\nfirst\r\n"]);
    assert_eq!(events, [error("too long 17 > 16"), frame("first\r\n")]);
}

// Randomized: random lines in random chunks give what a whole-input model
// of the rules gives, with a small maximum and with usize::MAX.

/// The rules applied to the whole input at once.
fn model(max: usize, strip: bool, input: &[u8]) -> Vec<Event<Bytes>> {
    let mut events = Vec::new();
    let mut rest = input;
    while let Some(at) = rest.iter().position(|&b| b == b'\n') {
        let delimiter = if at > 0 && rest[at - 1] == b'\r' {
            2
        } else {
            1
        };
        let length = at + 1 - delimiter;
        if length > max {
            events.push(error(&format!("too long {length} > {max}")));
        } else if strip {
            events.push(Event::Frame(Bytes::copy_from_slice(&rest[..length])));
        } else {
            events.push(Event::Frame(Bytes::copy_from_slice(&rest[..=at])));
        }
        rest = &rest[at + 1..];
    }
    if rest.len() > max {
        events.push(error(&format!("too long {} > {max}", rest.len())));
    } else if !rest.is_empty() {
        events.push(Event::Frame(Bytes::copy_from_slice(rest)));
    }
    events
}

#[test]
fn random_lines_in_random_chunks_match_the_model_with_any_maximum() {
    let mut rng = XorShift(0x6c62_272e_07bb_0142);
    let mut counts = [0usize; 3]; // frames, too long, runs with usize::MAX
    for _ in 0..3000 {
        let small = rng.below(13) as usize;
        let strip = rng.chance(70);
        let fail_fast = rng.chance(50);
        let input: Vec<u8> = (0..rng.below(120))
            .map(|_| match rng.below(10) {
                0..=4 => b'a',
                5 => b'b',
                6 | 7 => b'\r',
                _ => b'\n',
            })
            .collect();
        let chunks = chunked(&mut rng, &input, 16);
        for max in maxima(small) {
            let decoder = LineBasedFrameDecoder::new(max)
                .strip_delimiter(strip)
                .fail_fast(fail_fast);
            let mut expected = model(max, strip, &input);
            for event in &expected {
                match event {
                    Event::Frame(_) => counts[0] += 1,
                    Event::Error(_) => counts[1] += 1,
                }
            }
            counts[2] += usize::from(max == usize::MAX);
            let normalize = if fail_fast {
                expected = without_lengths(expected);
                without_lengths
            } else {
                std::convert::identity
            };
            // A line of max bytes plus a "\r" may wait for its "\n".
            let most = plus(max, 1);
            let context = format!("max {max} strip {strip} fail_fast {fail_fast}");
            assert_model(
                &decoder, &input, &chunks, most, &expected, normalize, &context,
            );
        }
    }
    assert!(counts.iter().all(|&n| n > 1000), "{counts:?}");
}

#[test]
fn a_buffer_that_shrank_behind_the_decoders_back_does_not_panic() {
    // A pipeline stage removed with its bytes keeps its scan offset; added
    // again, it must not index past the end of its new, shorter input.
    use twill_protocols::codec::Decoder;
    let mut decoder = LineBasedFrameDecoder::new(64);
    let mut buffer = bytes::BytesMut::from(&b"abcdef"[..]);
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    let mut shorter = bytes::BytesMut::from(&b"x"[..]);
    assert_eq!(decoder.decode(&mut shorter).unwrap(), None);
    shorter.extend_from_slice(b"y\n");
    assert_eq!(decoder.decode(&mut shorter).unwrap().unwrap(), "xy");
}
