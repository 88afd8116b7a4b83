//! DelimiterBasedFrameDecoder and FixedLengthFrameDecoder: Netty's rules at
//! every split point, and randomized runs against whole-input models.

mod support;

use support::XorShift;

use bytes::{Bytes, BytesMut};
use support::{chunked, drive, feed, maxima, plus, same_at_every_split, without_lengths, Event};
use twill_protocols::codec::{
    DecodeError, Decoder, DelimiterBasedFrameDecoder, Delimiters, FixedLengthFrameDecoder,
};

fn frame(bytes: &[u8]) -> Event<Bytes> {
    Event::Frame(Bytes::copy_from_slice(bytes))
}

fn error(s: &str) -> Event<Bytes> {
    Event::Error(s.to_owned())
}

fn delimited(max: usize, delimiters: &[&[u8]]) -> DelimiterBasedFrameDecoder {
    DelimiterBasedFrameDecoder::new(max, delimiters.iter().copied()).unwrap()
}

/// For fail-fast decoders: the same events, lengths aside, at every split
/// and byte by byte; returns the events of the whole input.
fn same_at_every_split_but_lengths(
    decoder: &DelimiterBasedFrameDecoder,
    input: &[u8],
) -> Vec<Event<Bytes>> {
    let whole = feed(decoder, &[input]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(
            without_lengths(feed(decoder, &[a, b])),
            without_lengths(feed(decoder, &[input])),
            "split at {at}"
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        without_lengths(feed(decoder, &bytes)),
        without_lengths(feed(decoder, &[input])),
        "byte by byte"
    );
    whole
}

// DelimiterBasedFrameDecoder.

#[test]
fn the_first_delimiter_in_the_input_wins_so_the_frame_is_the_shortest() {
    let decoder = DelimiterBasedFrameDecoder::line_delimiter(16).unwrap();
    assert_eq!(
        same_at_every_split(&decoder, b"ABC\nDEF\r\n"),
        [frame(b"ABC"), frame(b"DEF")]
    );
    // A lone \r is data, as with the line decoder.
    assert_eq!(same_at_every_split(&decoder, b"a\rb\n"), [frame(b"a\rb")]);
}

#[test]
fn delimiters_starting_at_the_same_byte_go_to_the_first_listed() {
    let input = b"a\r\n\r\nb\r\n";
    let decoder = delimited(16, &[b"\r\n\r\n", b"\r\n"]);
    assert_eq!(
        same_at_every_split(&decoder, input),
        [frame(b"a"), frame(b"b")]
    );
    let decoder = delimited(16, &[b"\r\n", b"\r\n\r\n"]);
    assert_eq!(
        same_at_every_split(&decoder, input),
        [frame(b"a"), frame(b""), frame(b"b")]
    );
}

#[test]
fn a_delimiter_still_arriving_that_gives_a_shorter_frame_is_waited_for() {
    // "abc" starts before "b": the frame is "x", however the input is split
    // (Netty cuts "xa" when a read ends after "xab").
    let decoder = delimited(16, &[b"b", b"abc"]);
    assert_eq!(
        same_at_every_split(&decoder, b"xabcyb"),
        [frame(b"x"), frame(b"y")]
    );
    // And when it does not complete, the other delimiter is used.
    assert_eq!(
        same_at_every_split(&decoder, b"xabd"),
        [frame(b"xa"), frame(b"d")]
    );
}

#[test]
fn multi_byte_delimiters_split_across_reads_are_found() {
    let decoder = delimited(16, &[b"END"]);
    assert_eq!(
        same_at_every_split(&decoder, b"oneENDtwoENENDEND"),
        [frame(b"one"), frame(b"twoEN"), frame(b"")]
    );
}

#[test]
fn delimiters_can_be_kept() {
    let decoder = DelimiterBasedFrameDecoder::line_delimiter(16)
        .unwrap()
        .strip_delimiter(false);
    assert_eq!(
        same_at_every_split(&decoder, b"hi\r\nyo\n"),
        [frame(b"hi\r\n"), frame(b"yo\n")]
    );
}

#[test]
fn nul_delimiter() {
    let decoder = DelimiterBasedFrameDecoder::nul_delimiter(16).unwrap();
    assert_eq!(
        same_at_every_split(&decoder, b"<a/>\0<b/>\0\0"),
        [frame(b"<a/>"), frame(b"<b/>"), frame(b"")]
    );
    assert_eq!(Delimiters::nul_delimiter(), [b"\0"]);
    assert_eq!(Delimiters::line_delimiter(), [&b"\r\n"[..], b"\n"]);
    assert_eq!(decoder.delimiters().collect::<Vec<_>>(), [&b"\0"[..]]);
    assert_eq!(decoder.max_frame_length(), 16);
}

#[test]
fn a_frame_of_exactly_max_length_is_accepted_even_with_a_split_delimiter() {
    // Netty declares it too long when a read ends after the \r.
    let decoder = delimited(3, &[b"\r\n"]);
    assert_eq!(
        same_at_every_split(&decoder, b"abc\r\nd\r\n"),
        [frame(b"abc"), frame(b"d")]
    );
}

#[test]
fn a_too_long_frame_is_skipped_and_decoding_goes_on() {
    let input = b"ok\ntoolong\nfin\n";
    let decoder = delimited(3, &[b"\n"]).fail_fast(false);
    assert_eq!(
        same_at_every_split(&decoder, input),
        [frame(b"ok"), error("too long 7 > 3"), frame(b"fin")]
    );
    let decoder = delimited(3, &[b"\n"]);
    assert_eq!(
        same_at_every_split_but_lengths(&decoder, input),
        [frame(b"ok"), error("too long 7 > 3"), frame(b"fin")]
    );
}

#[test]
fn fail_fast_reports_a_too_long_frame_as_soon_as_it_passes_the_limit() {
    let decoder = delimited(3, &[b"\n"]);
    let events = feed(&decoder, &[b"ok\ntool", b"ong\nfin\n"]);
    assert_eq!(
        events,
        [frame(b"ok"), error("too long 4 > 3"), frame(b"fin")]
    );

    let mut decoder = delimited(3, &[b"\n"]);
    let mut buffer = BytesMut::from(&b"tool"[..]);
    match decoder.decode(&mut buffer) {
        Err(DecodeError::TooLongFrame { length: 4, max: 3 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(buffer.is_empty());
    buffer.extend_from_slice(b"ong\nfin\n");
    // No second error; the next frame in the same call.
    assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap(), "fin");
}

#[test]
fn without_fail_fast_the_whole_length_is_reported_at_the_delimiter() {
    let mut decoder = delimited(3, &[b"END"]).fail_fast(false);
    let mut buffer = BytesMut::from(&b"toolong"[..]);
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    assert!(buffer.is_empty());
    buffer.extend_from_slice(b"erEN");
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    // The possible start of the delimiter is kept.
    assert_eq!(&buffer[..], b"EN");
    buffer.extend_from_slice(b"Dok");
    match decoder.decode(&mut buffer) {
        Err(DecodeError::TooLongFrame { length: 9, max: 3 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    assert_eq!(decoder.decode_eof(&mut buffer).unwrap().unwrap(), "ok");
}

#[test]
fn discard_mode_finds_a_delimiter_split_across_reads() {
    let decoder = delimited(2, &[b"END"]).fail_fast(false);
    assert_eq!(
        same_at_every_split(&decoder, b"xxxxxENDokEND"),
        [error("too long 5 > 2"), frame(b"ok")]
    );
    let decoder = delimited(2, &[b"END"]);
    assert_eq!(
        without_lengths(same_at_every_split_but_lengths(&decoder, b"xxxxxENDokEND")),
        [error("too long"), frame(b"ok")]
    );
}

#[test]
fn an_undelimited_tail_is_delivered_at_eof() {
    let decoder = DelimiterBasedFrameDecoder::line_delimiter(8).unwrap();
    assert_eq!(
        same_at_every_split(&decoder, b"one\ntwo"),
        [frame(b"one"), frame(b"two")]
    );
    // Even one that might have been the start of a delimiter.
    assert_eq!(same_at_every_split(&decoder, b"two\r"), [frame(b"two\r")]);
    assert_eq!(same_at_every_split(&decoder, b""), []);
}

#[test]
fn a_too_long_tail_at_eof_is_reported() {
    // Not yet known to be too long before EOF: it might have ended in "\r\n".
    let decoder = delimited(3, &[b"\r\n"]);
    assert_eq!(
        same_at_every_split_but_lengths(&decoder, b"ok\r\nabc\r"),
        [frame(b"ok"), error("too long 4 > 3")]
    );
    // Known too long before EOF: one error, at the end without fail_fast.
    for fail_fast in [true, false] {
        let decoder = delimited(3, &[b"\n"]).fail_fast(fail_fast);
        let events = same_at_every_split_but_lengths(&decoder, b"ok\ntoolong");
        assert_eq!(events, [frame(b"ok"), error("too long 7 > 3")]);
    }
}

#[test]
fn an_undelimited_frame_never_buffers_past_the_limit() {
    let mut decoder = delimited(100, &[b"\r\n", b"\n"]);
    let mut buffer = BytesMut::new();
    let mut errors = 0;
    for _ in 0..1000 {
        buffer.extend_from_slice(&[b'x'; 63]);
        buffer.extend_from_slice(b"\r");
        if decoder.decode(&mut buffer).is_err() {
            errors += 1;
        }
        assert!(buffer.len() <= 101, "buffered {}", buffer.len());
    }
    assert_eq!(errors, 1);
    buffer.extend_from_slice(b"\nhi\n");
    assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap(), "hi");
}

#[test]
fn scanning_is_linear() {
    // Many frames in one read, with a delimiter that never comes: each frame
    // must not rescan the whole buffer.
    let mut decoder = delimited(16, &[b"\0", b"\n"]);
    let mut buffer = BytesMut::from(&b"x\n".repeat(200_000)[..]);
    let mut frames = 0;
    while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
        assert_eq!(frame, "x");
        frames += 1;
    }
    assert_eq!(frames, 200_000);
    // A long frame arriving byte by byte is scanned once.
    let mut decoder = delimited(1 << 20, &[b"\r\n", b"\n"]);
    let mut buffer = BytesMut::new();
    for _ in 0..200_000 {
        buffer.extend_from_slice(b"y");
        assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    }
    buffer.extend_from_slice(b"\r\n");
    assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap().len(), 200_000);
}

#[test]
fn the_delimiter_configuration_is_checked() {
    assert!(DelimiterBasedFrameDecoder::new(0, [b"\n"]).is_err());
    assert!(DelimiterBasedFrameDecoder::line_delimiter(0).is_err());
    assert!(DelimiterBasedFrameDecoder::nul_delimiter(0).is_err());
    assert!(DelimiterBasedFrameDecoder::new(8, Vec::<Vec<u8>>::new()).is_err());
    let err = DelimiterBasedFrameDecoder::new(8, [&b"\n"[..], b""]).unwrap_err();
    assert_eq!(err.message(), "delimiters must not be empty");
    // Any byte container will do.
    assert!(DelimiterBasedFrameDecoder::new(8, vec![String::from("--")]).is_ok());
    assert!(DelimiterBasedFrameDecoder::new(8, ["\r\n", "\n"]).is_ok());
}

// FixedLengthFrameDecoder.

#[test]
fn fixed_length_frames_and_a_truncated_tail() {
    let decoder = FixedLengthFrameDecoder::new(3).unwrap();
    assert_eq!(decoder.frame_length(), 3);
    assert_eq!(
        same_at_every_split(&decoder, b"ABCDEFGH"),
        [frame(b"ABC"), frame(b"DEF"), error("truncated 2")]
    );
    assert_eq!(
        same_at_every_split(&decoder, b"ABCDEF"),
        [frame(b"ABC"), frame(b"DEF")]
    );
    let decoder = FixedLengthFrameDecoder::new(1).unwrap();
    assert_eq!(
        same_at_every_split(&decoder, b"xyz"),
        [frame(b"x"), frame(b"y"), frame(b"z")]
    );
}

#[test]
fn a_fixed_length_of_zero_is_rejected() {
    let err = FixedLengthFrameDecoder::new(0).unwrap_err();
    assert_eq!(err.message(), "frame_length must be positive");
}

// Randomized runs.

/// A byte from a small alphabet, so that delimiters are frequent.
fn symbol(rng: &mut XorShift) -> u8 {
    match rng.below(10) {
        0..=4 => b'a',
        5 => b'b',
        6 | 7 => b'\r',
        8 => b'\n',
        _ => b'\0',
    }
}

/// The delimiter rules applied to the whole input at once.
fn delimiter_model(
    delimiters: &[Vec<u8>],
    max: usize,
    strip: bool,
    input: &[u8],
) -> Vec<Event<Bytes>> {
    let mut events = Vec::new();
    let mut rest = input;
    loop {
        let mut best: Option<(usize, usize)> = None;
        for delimiter in delimiters {
            let at = rest
                .windows(delimiter.len())
                .position(|w| w == &delimiter[..]);
            if let Some(at) = at {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, delimiter.len()));
                }
            }
        }
        let Some((at, length)) = best else {
            if rest.len() > max {
                events.push(error(&format!("too long {} > {max}", rest.len())));
            } else if !rest.is_empty() {
                events.push(frame(rest));
            }
            return events;
        };
        if at > max {
            events.push(error(&format!("too long {at} > {max}")));
        } else if strip {
            events.push(frame(&rest[..at]));
        } else {
            events.push(frame(&rest[..at + length]));
        }
        rest = &rest[at + length..];
    }
}

#[test]
fn random_delimited_inputs_in_random_chunks_match_the_model() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut counts = [0usize; 3]; // frames, too long, runs with usize::MAX
    for _ in 0..4000 {
        let delimiters: Vec<Vec<u8>> = (0..1 + rng.below(3))
            .map(|_| (0..1 + rng.below(3)).map(|_| symbol(&mut rng)).collect())
            .collect();
        let longest = delimiters.iter().map(Vec::len).max().unwrap();
        let small = 1 + rng.below(12) as usize;
        let strip = rng.chance(70);
        let fail_fast = rng.chance(50);
        let input: Vec<u8> = (0..rng.below(120)).map(|_| symbol(&mut rng)).collect();
        let chunks = chunked(&mut rng, &input, 16);
        // The same input and chunks with "no limit" too (issue 10).
        for max in maxima(small) {
            let decoder = DelimiterBasedFrameDecoder::new(max, &delimiters)
                .unwrap()
                .strip_delimiter(strip)
                .fail_fast(fail_fast);
            let expected = delimiter_model(&delimiters, max, strip, &input);
            for event in &expected {
                match event {
                    Event::Frame(f) => {
                        assert!(f.len() <= plus(max, if strip { 0 } else { longest }));
                        counts[0] += 1;
                    }
                    Event::Error(_) => counts[1] += 1,
                }
            }
            counts[2] += usize::from(max == usize::MAX);
            let bound = plus(max, longest - 1);
            let whole = drive(decoder.clone(), &[&input], bound);
            let split = drive(decoder.clone(), &chunks, bound);
            let context = format!("{delimiters:?} max {max} fail_fast {fail_fast} {chunks:?}");
            if fail_fast {
                // Lengths of early errors depend on the split.
                let expected = without_lengths(expected);
                assert_eq!(without_lengths(whole), expected, "{context}");
                assert_eq!(without_lengths(split), expected, "{context}");
            } else {
                assert_eq!(whole, expected, "{context}");
                assert_eq!(split, expected, "{context}");
            }
        }
    }
    assert!(counts.iter().all(|&n| n > 1000), "{counts:?}");
}

#[test]
fn random_fixed_length_inputs_in_random_chunks() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for _ in 0..3000 {
        let small = 1 + rng.below(10) as usize;
        let input: Vec<u8> = (0..rng.below(100)).map(|_| rng.next() as u8).collect();
        let chunks = chunked(&mut rng, &input, 16);
        // A frame length of usize::MAX is no maximum but the same kind of
        // extreme: no frame ever completes, and nothing may overflow.
        for length in maxima(small) {
            let decoder = FixedLengthFrameDecoder::new(length).unwrap();
            let mut expected: Vec<Event<Bytes>> = input.chunks_exact(length).map(frame).collect();
            let tail = input.len() % length;
            if tail > 0 {
                expected.push(error(&format!("truncated {tail}")));
            }
            assert_eq!(
                drive(decoder, &chunks, length - 1),
                expected,
                "{length} {chunks:?}"
            );
        }
    }
}

#[test]
fn no_limit_delimiters_work_like_netty_line_and_nul_delimiters() {
    // DelimiterBasedFrameDecoderTest.testFailSlowTooLongFrameRecovery's
    // input, which is not too long without a limit.
    let decoder = DelimiterBasedFrameDecoder::nul_delimiter(usize::MAX)
        .unwrap()
        .fail_fast(false);
    assert_eq!(
        same_at_every_split(&decoder, b"\x01\x02\0A\0"),
        [frame(b"\x01\x02"), frame(b"A")]
    );
    // DelimiterBasedFrameDecoderTest.testDecode, with usize::MAX for 8192
    // (the tail is delivered at EOF here, see the type's docs).
    let decoder = DelimiterBasedFrameDecoder::line_delimiter(usize::MAX).unwrap();
    assert_eq!(
        same_at_every_split(&decoder, b"first\r\nsecond\nthird"),
        [frame(b"first"), frame(b"second"), frame(b"third")]
    );
}
