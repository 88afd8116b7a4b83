//! LengthFieldBasedFrameDecoder and LengthFieldPrepender: Netty's javadoc
//! examples, error cases and discard mode, at every split point; both byte
//! orders and every field size; prepender round trips; and a randomized
//! run against a whole-input model.

mod support;

use support::XorShift;

use bytes::{Bytes, BytesMut};
use support::{chunked, drive, feed, maxima, same_at_every_split, Event};
use twill_protocols::codec::{
    ByteOrder, DecodeError, Decoder, EncodeError, Encoder, LengthFieldBasedFrameDecoder,
    LengthFieldPrepender,
};

const HW: &[u8] = b"HELLO, WORLD";

fn frame(bytes: &[u8]) -> Event<Bytes> {
    Event::Frame(Bytes::copy_from_slice(bytes))
}

fn error(s: &str) -> Event<Bytes> {
    Event::Error(s.to_owned())
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Corrupt-input errors reduced to "corrupt" (their texts are checked
/// separately).
fn normalized(events: Vec<Event<Bytes>>) -> Vec<Event<Bytes>> {
    events
        .into_iter()
        .map(|event| match event {
            Event::Error(s) if s.starts_with("corrupt input") => error("corrupt"),
            other => other,
        })
        .collect()
}

/// `value` as an `n`-byte field.
fn field(value: u64, n: usize, order: ByteOrder) -> Vec<u8> {
    let be = value.to_be_bytes()[8 - n..].to_vec();
    match order {
        ByteOrder::BigEndian => be,
        ByteOrder::LittleEndian => be.into_iter().rev().collect(),
    }
}

/// A javadoc example: one frame from the input, at every split, in both
/// fail-fast modes; and two frames from the input twice.
fn example(decoder: LengthFieldBasedFrameDecoder, input: &[u8], expected: &[u8]) {
    for fail_fast in [true, false] {
        let decoder = rebuild(&decoder, fail_fast);
        assert_eq!(same_at_every_split(&decoder, input), [frame(expected)]);
        let twice = cat(&[input, input]);
        assert_eq!(
            same_at_every_split(&decoder, &twice),
            [frame(expected), frame(expected)]
        );
    }
}

fn rebuild(
    decoder: &LengthFieldBasedFrameDecoder,
    fail_fast: bool,
) -> LengthFieldBasedFrameDecoder {
    LengthFieldBasedFrameDecoder::builder(decoder.max_frame_length())
        .byte_order(decoder.byte_order())
        .length_field_offset(decoder.length_field_offset())
        .length_field_length(decoder.length_field_length())
        .length_adjustment(decoder.length_adjustment())
        .initial_bytes_to_strip(decoder.initial_bytes_to_strip())
        .fail_fast(fail_fast)
        .build()
        .unwrap()
}

fn netty(offset: usize, len: usize, adj: i64, strip: usize) -> LengthFieldBasedFrameDecoder {
    LengthFieldBasedFrameDecoder::new(1024, offset, len, adj, strip).unwrap()
}

// §1.3: the seven javadoc examples.

#[test]
fn netty_example_1_two_byte_length_nothing_stripped() {
    let input = cat(&[b"\x00\x0c", HW]);
    example(netty(0, 2, 0, 0), &input, &input);
}

#[test]
fn netty_example_2_two_byte_length_stripped() {
    let input = cat(&[b"\x00\x0c", HW]);
    example(netty(0, 2, 0, 2), &input, HW);
}

#[test]
fn netty_example_3_length_counts_the_whole_message() {
    let input = cat(&[b"\x00\x0e", HW]);
    example(netty(0, 2, -2, 0), &input, &input);
}

#[test]
fn netty_example_4_three_byte_length_after_a_two_byte_header() {
    let input = cat(&[b"\xca\xfe\x00\x00\x0c", HW]);
    assert_eq!(input.len(), 17);
    example(netty(2, 3, 0, 0), &input, &input);
}

#[test]
fn netty_example_5_three_byte_length_then_a_two_byte_header() {
    let input = cat(&[b"\x00\x00\x0c\xca\xfe", HW]);
    example(netty(0, 3, 2, 0), &input, &input);
}

#[test]
fn netty_example_6_header_length_header_first_two_stripped() {
    let input = cat(&[b"\xca\x00\x0c\xfe", HW]);
    assert_eq!(input.len(), 16);
    example(netty(1, 2, 1, 3), &input, &cat(&[b"\xfe", HW]));
}

#[test]
fn netty_example_7_as_6_with_the_length_counting_the_whole_message() {
    let input = cat(&[b"\xca\x00\x10\xfe", HW]);
    example(netty(1, 2, -3, 3), &input, &cat(&[b"\xfe", HW]));
}

// §1.2: the formula's edges.

#[test]
fn a_frame_of_exactly_max_frame_length_header_included_is_accepted() {
    let decoder = LengthFieldBasedFrameDecoder::new(8, 0, 1, 0, 1).unwrap();
    // 1 + 7 = 8 bytes: accepted; 1 + 8 = 9: too long.
    let input = cat(&[b"\x07abcdefg", b"\x08abcdefgh", b"\x01z"]);
    assert_eq!(
        same_at_every_split(&decoder, &input),
        [frame(b"abcdefg"), error("too long 9 > 8"), frame(b"z")]
    );
}

#[test]
fn empty_frames_are_delivered() {
    let decoder = netty(0, 2, 0, 2);
    let input = b"\x00\x00\x00\x00\x00\x01x";
    assert_eq!(
        same_at_every_split(&decoder, input),
        [frame(b""), frame(b""), frame(b"x")]
    );
}

#[test]
fn the_length_field_can_be_preceded_by_a_header_kept_in_the_frame() {
    // offset 3, no strip: the whole frame.
    let decoder = netty(3, 2, 0, 0);
    let input = b"abc\x00\x02xyabc\x00\x00";
    assert_eq!(
        same_at_every_split(&decoder, input),
        [frame(b"abc\x00\x02xy"), frame(b"abc\x00\x00")]
    );
}

// Byte orders and field sizes.

#[test]
fn every_field_size_in_both_byte_orders() {
    for order in [ByteOrder::BigEndian, ByteOrder::LittleEndian] {
        for n in [1, 2, 3, 4, 8] {
            // A value whose bytes differ, so that the order matters.
            let value: u64 = if n == 1 { 0xfe } else { 0x0102 };
            let body: Vec<u8> = (0..value).map(|i| i as u8).collect();
            let input = cat(&[&field(value, n, order), &body, &field(1, n, order), b"!"]);
            let decoder = LengthFieldBasedFrameDecoder::builder(1024)
                .byte_order(order)
                .length_field_length(n)
                .initial_bytes_to_strip(n)
                .build()
                .unwrap();
            let events = feed(&decoder, &[&input]);
            assert_eq!(events, [frame(&body), frame(b"!")], "{order:?} {n}");
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(feed(&decoder, &bytes), events, "{order:?} {n} byte by byte");
        }
    }
}

#[test]
fn little_endian_vectors() {
    let cases: [(usize, &[u8]); 5] = [
        (1, b"\x0c"),
        (2, b"\x0c\x00"),
        (3, b"\x0c\x00\x00"),
        (4, b"\x0c\x00\x00\x00"),
        (8, b"\x0c\x00\x00\x00\x00\x00\x00\x00"),
    ];
    for (n, header) in cases {
        let decoder = LengthFieldBasedFrameDecoder::builder(64)
            .byte_order(ByteOrder::LittleEndian)
            .length_field_length(n)
            .initial_bytes_to_strip(n)
            .build()
            .unwrap();
        assert_eq!(
            same_at_every_split(&decoder, &cat(&[header, HW])),
            [frame(HW)],
            "{n}"
        );
    }
}

#[test]
fn one_to_four_byte_fields_are_unsigned() {
    // 0xffffffff is 4 GiB, not -1: too long, not corrupt.
    let decoder = netty(0, 4, 0, 4);
    let events = feed(&decoder, &[b"\xff\xff\xff\xff"]);
    assert_eq!(events, [error("too long 4294967299 > 1024")]);
    let decoder = LengthFieldBasedFrameDecoder::new(100, 0, 1, 0, 1).unwrap();
    let events = feed(&decoder, &[b"\xff"]);
    assert_eq!(events, [error("too long 256 > 100")]);
}

// §1.4: errors.

#[test]
fn a_negative_eight_byte_length_is_corrupt_and_stops_the_decoder() {
    let decoder = netty(0, 8, 0, 8);
    let input = cat(&[
        b"\x00\x00\x00\x00\x00\x00\x00\x02ok",
        b"\x80\x00\x00\x00\x00\x00\x00\x00",
        b"\x00\x00\x00\x00\x00\x00\x00\x01x",
    ]);
    let events = same_at_every_split(&decoder, &input);
    assert_eq!(
        events,
        [
            frame(b"ok"),
            error("corrupt input: negative pre-adjustment length field: -9223372036854775808")
        ]
    );
}

#[test]
fn an_adjusted_length_shorter_than_the_header_is_corrupt() {
    // Example 3's configuration: the field counts itself, so 1 is too small.
    let decoder = netty(0, 2, -2, 0);
    let input = b"\x00\x03a\x00\x01\x00\x03b";
    let events = same_at_every_split(&decoder, input);
    assert_eq!(
        events,
        [
            frame(b"\x00\x03a"),
            error("corrupt input: adjusted frame length (1) is less than the length field's end offset: 2")
        ]
    );
}

#[test]
fn a_frame_shorter_than_the_bytes_to_strip_is_corrupt() {
    // Stripping more than the length field's end: a small length cannot
    // hold what is stripped.
    let decoder = netty(0, 1, 0, 3);
    let input = b"\x03abc\x01z\x03abc";
    let events = same_at_every_split(&decoder, input);
    assert_eq!(
        events,
        [
            frame(b"c"),
            error(
                "corrupt input: adjusted frame length (2) is less than initial_bytes_to_strip: 3"
            )
        ]
    );
}

#[test]
fn after_corrupt_input_the_decoder_drops_everything_quietly() {
    // Netty's quirk Q1 re-raised the strip error forever without consuming.
    let mut decoder = netty(0, 1, 0, 3);
    let mut buffer = BytesMut::from(&b"\x01z\x03abc"[..]);
    let err = decoder.decode(&mut buffer).unwrap_err();
    assert!(matches!(err, DecodeError::Corrupt(_)));
    assert!(!err.is_recoverable());
    assert!(buffer.is_empty());
    for _ in 0..3 {
        buffer.extend_from_slice(b"\x03abc");
        assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
        assert!(buffer.is_empty());
    }
    buffer.extend_from_slice(b"\x03");
    assert_eq!(decoder.decode_eof(&mut buffer).unwrap(), None);
}

#[test]
fn a_too_long_frame_already_buffered_is_skipped_and_decoding_goes_on() {
    for fail_fast in [true, false] {
        let decoder = LengthFieldBasedFrameDecoder::builder(8)
            .length_field_length(1)
            .initial_bytes_to_strip(1)
            .fail_fast(fail_fast)
            .build()
            .unwrap();
        let input = cat(&[b"\x02ok", b"\x09123456789", b"\x01x"]);
        let events = same_at_every_split(&decoder, &input);
        assert_eq!(
            events,
            [frame(b"ok"), error("too long 10 > 8"), frame(b"x")],
            "fail_fast {fail_fast}"
        );
    }
}

#[test]
fn the_frames_behind_a_too_long_one_come_in_the_same_pass() {
    // Netty's quirk Q2: they waited for the next read.
    let mut decoder = LengthFieldBasedFrameDecoder::new(8, 0, 1, 0, 1).unwrap();
    let mut buffer = BytesMut::from(&cat(&[b"\x09123456789", b"\x01x"])[..]);
    let err = decoder.decode(&mut buffer).unwrap_err();
    assert!(err.is_recoverable());
    assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap(), "x");
}

#[test]
fn fail_fast_reports_a_too_long_frame_when_its_header_arrives() {
    let mut decoder = LengthFieldBasedFrameDecoder::new(8, 0, 1, 0, 1).unwrap();
    assert!(decoder.is_fail_fast());
    let mut buffer = BytesMut::from(&b"\x02ok\x20ab"[..]);
    assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap(), "ok");
    match decoder.decode(&mut buffer) {
        Err(DecodeError::TooLongFrame { length: 33, max: 8 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(buffer.is_empty(), "discard mode buffers nothing");
    // 30 bytes of the frame to go.
    buffer.extend_from_slice(&[b'.'; 10]);
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    assert!(buffer.is_empty());
    buffer.extend_from_slice(&[b'.'; 20]);
    buffer.extend_from_slice(b"\x01x");
    // No second error; the next frame comes in the same call.
    assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap(), "x");
}

#[test]
fn without_fail_fast_a_too_long_frame_is_reported_once_skipped() {
    let mut decoder = LengthFieldBasedFrameDecoder::builder(8)
        .length_field_length(1)
        .initial_bytes_to_strip(1)
        .fail_fast(false)
        .build()
        .unwrap();
    let mut buffer = BytesMut::from(&b"\x20ab"[..]);
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    assert!(buffer.is_empty());
    buffer.extend_from_slice(&[b'.'; 29]);
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    buffer.extend_from_slice(b".\x01x");
    match decoder.decode(&mut buffer) {
        Err(DecodeError::TooLongFrame { length: 33, max: 8 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap(), "x");
}

#[test]
fn discard_mode_gives_one_error_per_frame_at_every_split() {
    for fail_fast in [true, false] {
        let decoder = LengthFieldBasedFrameDecoder::builder(6)
            .length_field_length(2)
            .initial_bytes_to_strip(2)
            .fail_fast(fail_fast)
            .build()
            .unwrap();
        let long = cat(&[b"\x00\x0a", b"0123456789"]);
        let input = cat(&[b"\x00\x01a", &long, &long, b"\x00\x01b", &long]);
        assert_eq!(
            same_at_every_split(&decoder, &input),
            [
                frame(b"a"),
                error("too long 12 > 6"),
                error("too long 12 > 6"),
                frame(b"b"),
                error("too long 12 > 6"),
            ],
            "fail_fast {fail_fast}"
        );
    }
}

#[test]
fn a_too_long_frame_cut_by_eof_is_reported_once() {
    for fail_fast in [true, false] {
        let decoder = LengthFieldBasedFrameDecoder::builder(6)
            .length_field_length(2)
            .initial_bytes_to_strip(2)
            .fail_fast(fail_fast)
            .build()
            .unwrap();
        let input = b"\x00\x01a\x00\x0a0123";
        assert_eq!(
            same_at_every_split(&decoder, input),
            [frame(b"a"), error("too long 12 > 6")],
            "fail_fast {fail_fast}"
        );
    }
}

#[test]
fn discard_mode_buffers_nothing_of_a_huge_frame() {
    let mut decoder = LengthFieldBasedFrameDecoder::new(1024, 0, 4, 0, 4).unwrap();
    let mut buffer = BytesMut::from(&b"\x00\x10\x00\x00"[..]); // 1 MiB
    assert!(decoder.decode(&mut buffer).unwrap_err().is_recoverable());
    for _ in 0..1023 {
        buffer.extend_from_slice(&[0; 1024]);
        assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
        assert!(buffer.is_empty());
    }
    buffer.extend_from_slice(&[0; 1024]);
    buffer.extend_from_slice(b"\x00\x00\x00\x02hi");
    assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap(), "hi");
}

#[test]
fn eight_byte_arithmetic_does_not_overflow() {
    // Netty's quirk Q3: i64::MAX + a positive adjustment wrapped negative.
    let decoder = netty(0, 8, 100, 8);
    let events = feed(&decoder, &[b"\x7f\xff\xff\xff\xff\xff\xff\xff"]);
    assert_eq!(events, [error("too long 9223372036854775915 > 1024")]);
    // Past u64: the reported length saturates.
    let decoder = netty(0, 8, i64::MAX, 8);
    let events = feed(&decoder, &[b"\x7f\xff\xff\xff\xff\xff\xff\xff"]);
    assert_eq!(events, [error(&format!("too long {} > 1024", u64::MAX))]);
    // A very negative adjustment: corrupt, not a wrap to a huge length.
    let decoder = netty(0, 8, i64::MIN, 8);
    let events = normalized(feed(&decoder, &[b"\x00\x00\x00\x00\x00\x00\x00\x01"]));
    assert_eq!(events, [error("corrupt")]);
}

#[test]
fn an_unfinished_frame_at_eof_is_truncated() {
    let decoder = netty(0, 2, 0, 2);
    assert_eq!(
        same_at_every_split(&decoder, b"\x00\x01a\x00\x05ab"),
        [frame(b"a"), error("truncated 4")]
    );
    assert_eq!(
        same_at_every_split(&decoder, b"\x00"),
        [error("truncated 1")]
    );
    assert_eq!(same_at_every_split(&decoder, b""), []);
}

#[test]
fn the_configuration_is_checked_when_built() {
    let bad = [
        LengthFieldBasedFrameDecoder::builder(0).build(),
        LengthFieldBasedFrameDecoder::builder(64)
            .length_field_length(0)
            .build(),
        LengthFieldBasedFrameDecoder::builder(64)
            .length_field_length(5)
            .build(),
        LengthFieldBasedFrameDecoder::builder(64)
            .length_field_length(7)
            .build(),
        LengthFieldBasedFrameDecoder::builder(64)
            .length_field_length(9)
            .build(),
        // The field must end within the maximum.
        LengthFieldBasedFrameDecoder::builder(4)
            .length_field_offset(1)
            .build(),
        LengthFieldBasedFrameDecoder::builder(64)
            .length_field_offset(usize::MAX)
            .build(),
        // Stripping more than any frame can hold.
        LengthFieldBasedFrameDecoder::builder(64)
            .initial_bytes_to_strip(65)
            .build(),
    ];
    for result in bad {
        let err = result.unwrap_err();
        assert!(err.to_string().starts_with("invalid codec configuration: "));
        assert!(!err.message().is_empty());
    }
    for n in [1, 2, 3, 4, 8] {
        assert!(LengthFieldBasedFrameDecoder::builder(n)
            .length_field_length(n)
            .build()
            .is_ok());
    }
    let err = LengthFieldBasedFrameDecoder::new(64, 0, 5, 0, 0).unwrap_err();
    assert_eq!(
        err.message(),
        "length_field_length must be 1, 2, 3, 4 or 8, not 5"
    );
}

#[test]
fn the_builder_defaults_are_nettys() {
    let decoder = LengthFieldBasedFrameDecoder::builder(100).build().unwrap();
    assert_eq!(decoder.byte_order(), ByteOrder::BigEndian);
    assert_eq!(decoder.length_field_offset(), 0);
    assert_eq!(decoder.length_field_length(), 4);
    assert_eq!(decoder.length_adjustment(), 0);
    assert_eq!(decoder.initial_bytes_to_strip(), 0);
    assert!(decoder.is_fail_fast());
    assert_eq!(ByteOrder::default(), ByteOrder::BigEndian);
}

// §2: the prepender.

fn encoded<T>(mut prepender: LengthFieldPrepender, message: T) -> Result<Vec<u8>, EncodeError>
where
    LengthFieldPrepender: Encoder<T>,
{
    let mut out = BytesMut::from(&b"before"[..]);
    match prepender.encode(message, &mut out) {
        Ok(()) => Ok(out[6..].to_vec()),
        Err(err) => {
            assert_eq!(&out[..], b"before", "nothing written on error");
            Err(err)
        }
    }
}

#[test]
fn prepender_vectors() {
    let p = |n| LengthFieldPrepender::new(n).unwrap();
    assert_eq!(encoded(p(1), "HELLO").unwrap(), b"\x05HELLO");
    assert_eq!(encoded(p(2), "HELLO").unwrap(), b"\x00\x05HELLO");
    assert_eq!(encoded(p(3), "HELLO").unwrap(), b"\x00\x00\x05HELLO");
    assert_eq!(encoded(p(4), "HELLO").unwrap(), b"\x00\x00\x00\x05HELLO");
    assert_eq!(
        encoded(p(8), "HELLO").unwrap(),
        b"\x00\x00\x00\x00\x00\x00\x00\x05HELLO"
    );
    assert_eq!(
        encoded(p(2).length_includes_length_field_length(true), "HELLO").unwrap(),
        b"\x00\x07HELLO"
    );
    assert_eq!(
        encoded(p(2).length_adjustment(1), "HELLO").unwrap(),
        b"\x00\x06HELLO"
    );
    assert_eq!(
        encoded(p(2).length_adjustment(-5), "HELLO").unwrap(),
        b"\x00\x00HELLO"
    );
    assert_eq!(
        encoded(p(3).byte_order(ByteOrder::LittleEndian), vec![b'x'; 0x0102]).unwrap()[..3],
        *b"\x02\x01\x00"
    );
    assert_eq!(encoded(p(2), "").unwrap(), b"\x00\x00");
    assert_eq!(p(2).length_field_length(), 2);
}

#[test]
fn prepender_takes_any_byte_container() {
    let p = LengthFieldPrepender::new(1).unwrap();
    let expected = b"\x02hi".to_vec();
    assert_eq!(encoded(p, Bytes::from_static(b"hi")).unwrap(), expected);
    assert_eq!(encoded(p, &b"hi"[..]).unwrap(), expected);
    assert_eq!(encoded(p, b"hi".to_vec()).unwrap(), expected);
    assert_eq!(encoded(p, "hi").unwrap(), expected);
    assert_eq!(encoded(p, String::from("hi")).unwrap(), expected);
    assert_eq!(encoded(p, BytesMut::from("hi")).unwrap(), expected);
}

#[test]
fn prepender_rejects_lengths_the_field_cannot_hold() {
    let p = |n| LengthFieldPrepender::new(n).unwrap();
    assert_eq!(encoded(p(1), vec![0; 255]).unwrap().len(), 256);
    let too_long = |result: Result<Vec<u8>, EncodeError>| match result {
        Err(EncodeError::TooLong { length, max }) => (length, max),
        other => panic!("{other:?}"),
    };
    assert_eq!(too_long(encoded(p(1), vec![0; 256])), (256, 255));
    assert_eq!(
        too_long(encoded(
            p(1).length_includes_length_field_length(true),
            vec![0; 255]
        )),
        (255, 254)
    );
    assert_eq!(
        too_long(encoded(p(1).length_adjustment(10), vec![0; 250])),
        (250, 245)
    );
    assert_eq!(too_long(encoded(p(2), vec![0; 65536])), (65536, 65535));
    assert!(encoded(p(2), vec![0; 65535]).is_ok());
    assert_eq!(
        too_long(encoded(p(3), vec![0; 1 << 24])),
        (1 << 24, (1 << 24) - 1)
    );
    // An adjustment past what the field holds: nothing fits.
    assert_eq!(too_long(encoded(p(1).length_adjustment(300), "")), (0, 0));
    for n in [1, 2, 3, 4, 8] {
        assert!(LengthFieldPrepender::new(n).is_ok());
    }
    for n in [0, 5, 6, 7, 9, 16] {
        assert!(LengthFieldPrepender::new(n).is_err(), "{n}");
    }
}

#[test]
fn prepender_rejects_a_negative_length() {
    let p = LengthFieldPrepender::new(2).unwrap().length_adjustment(-4);
    assert!(encoded(p, "abcd").is_ok());
    match encoded(p, "abc") {
        Err(err @ EncodeError::Other(_)) => {
            assert!(err.to_string().contains("negative"), "{err}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn prepender_and_nettys_matching_decoder_by_hand() {
    // LengthFieldPrepender(4, true) <-> LengthFieldBasedFrameDecoder(max, 0, 4, -4, 4).
    let mut p = LengthFieldPrepender::new(4)
        .unwrap()
        .length_includes_length_field_length(true);
    let mut wire = BytesMut::new();
    p.encode(HW, &mut wire).unwrap();
    assert_eq!(&wire[..4], b"\x00\x00\x00\x10");
    let decoder = LengthFieldBasedFrameDecoder::new(64, 0, 4, -4, 4).unwrap();
    assert_eq!(same_at_every_split(&decoder, &wire), [frame(HW)]);
}

#[test]
fn prepender_round_trips_through_its_matching_decoder() {
    let long: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let slices: [&[u8]; 5] = [b"", b"a", HW, b"\x00\xff\x00", &long];
    let messages = slices.map(Bytes::copy_from_slice);
    for order in [ByteOrder::BigEndian, ByteOrder::LittleEndian] {
        for n in [1, 2, 3, 4, 8] {
            for includes in [false, true] {
                for adjustment in [-1, 0, 3] {
                    let mut prepender = LengthFieldPrepender::new(n)
                        .unwrap()
                        .byte_order(order)
                        .length_adjustment(adjustment)
                        .length_includes_length_field_length(includes);
                    let decoder = prepender.matching_decoder(1024).unwrap();
                    let mut wire = BytesMut::new();
                    let mut expected = Vec::new();
                    for message in &messages {
                        match prepender.encode(message.clone(), &mut wire) {
                            Ok(()) => expected.push(frame(message)),
                            Err(EncodeError::TooLong { .. }) => assert_eq!(n, 1),
                            Err(EncodeError::Other(_)) => assert!(message.is_empty()),
                            Err(err) => panic!("{err}"),
                        }
                    }
                    assert!(expected.len() >= 3);
                    assert_eq!(
                        same_at_every_split(&decoder, &wire),
                        expected,
                        "{order:?} n {n} includes {includes} adjustment {adjustment}"
                    );
                }
            }
        }
    }
    let prepender = LengthFieldPrepender::new(4).unwrap();
    assert!(prepender.matching_decoder(3).is_err());
    assert!(prepender.matching_decoder(4).is_ok());
}

// Randomized: random configurations and inputs in random chunkings never
// panic, never buffer a whole frame's worth between calls, and give what a
// whole-input model of Netty's rules gives.

#[derive(Debug, Clone, Copy)]
struct Config {
    order: ByteOrder,
    max: usize,
    offset: usize,
    len: usize,
    adjustment: i64,
    strip: usize,
    fail_fast: bool,
}

/// Netty's rules applied to the whole input at once.
fn model(c: &Config, input: &[u8]) -> Vec<Event<Bytes>> {
    let mut events = Vec::new();
    let end = c.offset + c.len;
    let mut rest = input;
    loop {
        if rest.len() < end {
            if !rest.is_empty() {
                events.push(error(&format!("truncated {}", rest.len())));
            }
            return events;
        }
        let be: Vec<u8> = match c.order {
            ByteOrder::BigEndian => rest[c.offset..end].to_vec(),
            ByteOrder::LittleEndian => rest[c.offset..end].iter().rev().copied().collect(),
        };
        let unsigned = be.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        let raw = if c.len == 8 {
            i128::from(unsigned as i64)
        } else {
            i128::from(unsigned)
        };
        let length = raw + i128::from(c.adjustment) + end as i128;
        if raw < 0 || length < end as i128 {
            events.push(error("corrupt"));
            return events;
        }
        if length > c.max as i128 {
            let reported = u64::try_from(length).unwrap_or(u64::MAX);
            events.push(error(&format!("too long {reported} > {}", c.max)));
            if length >= rest.len() as i128 {
                return events;
            }
            rest = &rest[length as usize..];
            continue;
        }
        let length = length as usize;
        if length < c.strip {
            events.push(error("corrupt"));
            return events;
        }
        if rest.len() < length {
            events.push(error(&format!("truncated {}", rest.len())));
            return events;
        }
        events.push(frame(&rest[c.strip..length]));
        rest = &rest[length..];
    }
}

fn random_input(rng: &mut XorShift, c: &Config) -> Vec<u8> {
    let mut input = Vec::new();
    let field_max = if c.len == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * c.len)) - 1
    };
    for _ in 0..rng.below(8) {
        if rng.chance(10) {
            // Junk.
            for _ in 0..rng.below(12) {
                input.push(rng.next() as u8);
            }
            continue;
        }
        for _ in 0..c.offset {
            input.push(rng.next() as u8);
        }
        let raw = if rng.chance(10) {
            rng.next() & field_max
        } else {
            rng.below(c.max as u64 + 8).min(field_max)
        };
        input.extend_from_slice(&field(raw, c.len, c.order));
        let body = if rng.chance(80) {
            (raw as i64).saturating_add(c.adjustment).clamp(0, 200) as usize
        } else {
            rng.below(30) as usize
        };
        for _ in 0..body {
            input.push(rng.next() as u8);
        }
    }
    input
}

#[test]
fn random_inputs_in_random_chunks_match_the_model() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut built = 0;
    // Frames, too long, corrupt, truncated, runs with usize::MAX.
    let mut events_seen = [0usize; 5];
    for _ in 0..4000 {
        let len = [1, 2, 3, 4, 8][rng.below(5) as usize];
        let offset = rng.below(4) as usize;
        let end = offset + len;
        let c = Config {
            order: if rng.chance(50) {
                ByteOrder::BigEndian
            } else {
                ByteOrder::LittleEndian
            },
            max: end + rng.below(60) as usize,
            offset,
            len,
            adjustment: rng.range(-4, 4),
            strip: rng.below(end as u64 + 3) as usize,
            fail_fast: rng.chance(50),
        };
        let input = random_input(&mut rng, &c);
        let chunks = chunked(&mut rng, &input, 24);
        // The input is made for the small maximum; it runs with "no limit"
        // (usize::MAX) too (issue 10).
        for max in maxima(c.max) {
            let c = Config { max, ..c };
            let result = LengthFieldBasedFrameDecoder::builder(c.max)
                .byte_order(c.order)
                .length_field_offset(c.offset)
                .length_field_length(c.len)
                .length_adjustment(c.adjustment)
                .initial_bytes_to_strip(c.strip)
                .fail_fast(c.fail_fast)
                .build();
            let decoder = match result {
                Ok(decoder) => decoder,
                Err(_) => {
                    assert!(c.max == 0 || c.strip > c.max);
                    continue;
                }
            };
            built += usize::from(max != usize::MAX);
            let expected = model(&c, &input);
            for event in &expected {
                match event {
                    Event::Frame(f) => {
                        assert!(f.len() + c.strip <= c.max);
                        events_seen[0] += 1;
                    }
                    Event::Error(s) if s.starts_with("too long") => events_seen[1] += 1,
                    Event::Error(s) if s == "corrupt" => events_seen[2] += 1,
                    Event::Error(_) => events_seen[3] += 1,
                }
            }
            events_seen[4] += usize::from(max == usize::MAX);
            // Fewer than `max` bytes stay buffered.
            let whole = normalized(drive(decoder.clone(), &[&input], c.max - 1));
            assert_eq!(whole, expected, "{c:?} {input:02x?}");
            assert_eq!(
                normalized(drive(decoder.clone(), &chunks, c.max - 1)),
                expected,
                "{c:?} {chunks:02x?}"
            );
            assert_eq!(normalized(feed(&decoder, &chunks)), expected);
        }
    }
    assert!(built > 3000, "{built}");
    assert!(events_seen.iter().all(|&n| n > 100), "{events_seen:?}");
}
