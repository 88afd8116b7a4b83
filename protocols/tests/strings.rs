//! StringDecoder, LossyStringDecoder and LineEncoder: Netty's
//! `StringDecoder` (which replaces malformed UTF-8) and `LineEncoder` (any
//! separator).

mod support;

use bytes::{Bytes, BytesMut};
use support::same_at_every_split;
use twill_protocols::codec::{
    Decoder, Encoder, LineBasedFrameDecoder, LineEncoder, LossyStringDecoder, MessageDecoder,
    StringDecoder,
};

fn lossy(bytes: &[u8]) -> String {
    LossyStringDecoder
        .decode_message(Bytes::copy_from_slice(bytes))
        .unwrap()
}

fn strict(bytes: &[u8]) -> Option<String> {
    StringDecoder
        .decode_message(Bytes::copy_from_slice(bytes))
        .ok()
}

const R: char = char::REPLACEMENT_CHARACTER;

#[test]
fn lossy_decodes_valid_input_as_the_strict_decoder_does() {
    for valid in [
        &b""[..],
        b"plain ascii",
        "héllo wörld".as_bytes(),
        "日本語".as_bytes(),
        "🦀 and 𝄞".as_bytes(),
        "\u{0}\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}".as_bytes(),
        "\u{FFFD} itself".as_bytes(),
    ] {
        assert_eq!(Some(lossy(valid)), strict(valid), "{valid:?}");
    }
}

#[test]
fn lossy_replaces_bytes_that_never_start_a_character() {
    assert_eq!(lossy(b"\xff"), R.to_string());
    assert_eq!(lossy(b"a\xffb"), format!("a{R}b"));
    assert_eq!(lossy(b"\xfe\xff"), format!("{R}{R}"));
    // A continuation byte with nothing before it.
    assert_eq!(lossy(b"x\x80y"), format!("x{R}y"));
    assert_eq!(lossy(b"\x80\xbf"), format!("{R}{R}"));
    // Latin-1 mistaken for UTF-8.
    assert_eq!(lossy(b"caf\xe9"), format!("caf{R}"));
    assert_eq!(strict(b"caf\xe9"), None);
}

#[test]
fn a_truncated_multi_byte_sequence_is_one_replacement() {
    // 😀 is F0 9F 98 80; é is C3 A9; € is E2 82 AC.
    assert_eq!(lossy(b"\xf0\x9f\x98"), R.to_string());
    assert_eq!(lossy(b"\xf0\x9f\x98 ok"), format!("{R} ok"));
    assert_eq!(lossy(b"\xf0\x9f"), R.to_string());
    assert_eq!(lossy(b"\xe2\x82"), R.to_string());
    assert_eq!(lossy(b"\xc3"), R.to_string());
    // Cut short by the start of the next character, which survives.
    assert_eq!(lossy(b"\xe2\x82\xc3\xa9"), format!("{R}é"));
    assert_eq!(lossy(b"\xf0\x9f\x98\xf0\x9f\x98\x80"), format!("{R}😀"));
    for cut in [&b"\xf0\x9f\x98"[..], b"\xe2\x82", b"\xc3"] {
        assert_eq!(strict(cut), None);
    }
}

#[test]
fn overlong_encodings_and_surrogates_are_replaced_byte_by_byte() {
    // '/' (2F) as C0 AF and E0 80 AF; NUL as C0 80; U+D800 as ED A0 80.
    assert_eq!(lossy(b"\xc0\xaf"), format!("{R}{R}"));
    assert_eq!(lossy(b"\xe0\x80\xaf"), format!("{R}{R}{R}"));
    assert_eq!(lossy(b"\xf0\x80\x80\xaf"), format!("{R}{R}{R}{R}"));
    assert_eq!(lossy(b"a\xc0\x80b"), format!("a{R}{R}b"));
    assert_eq!(lossy(b"\xed\xa0\x80"), format!("{R}{R}{R}"));
    // Past U+10FFFF.
    assert_eq!(lossy(b"\xf4\x90\x80\x80"), format!("{R}{R}{R}{R}"));
    for bad in [&b"\xc0\xaf"[..], b"\xe0\x80\xaf", b"\xed\xa0\x80"] {
        assert_eq!(strict(bad), None);
    }
}

#[test]
fn lossy_after_a_frame_decoder_never_fails_the_stream() {
    let decoder = LineBasedFrameDecoder::new(80).and_then(LossyStringDecoder);
    let events = same_at_every_split(&decoder, b"ok\nbad \xff\xfe\ncaf\xc3\xa9\r\n\xe2\x82\n");
    let lines: Vec<String> = events
        .into_iter()
        .map(|event| match event {
            support::Event::Frame(line) => line,
            support::Event::Error(err) => panic!("{err}"),
        })
        .collect();
    assert_eq!(
        lines,
        ["ok", &format!("bad {R}{R}"), "café", &R.to_string()]
    );
}

#[test]
fn string_decoder_is_still_a_unit_value() {
    // The strict decoder is used as the value `StringDecoder` everywhere.
    let mut decoder = LineBasedFrameDecoder::new(80).and_then(StringDecoder);
    let mut input = BytesMut::from(&b"\xff\n"[..]);
    assert!(decoder.decode(&mut input).is_err());
}

// ---------------------------------------------------------------------------
// LineEncoder

fn encode(encoder: &LineEncoder, lines: &[&str]) -> Vec<u8> {
    let mut encoder = encoder.clone();
    let mut out = BytesMut::new();
    for line in lines {
        encoder.encode(*line, &mut out).unwrap();
    }
    out.to_vec()
}

#[test]
fn line_encoder_appends_lf_or_crlf() {
    assert_eq!(encode(&LineEncoder::new(), &["a", "bc"]), b"a\nbc\n");
    assert_eq!(encode(&LineEncoder::default(), &["a"]), b"a\n");
    assert_eq!(encode(&LineEncoder::crlf(), &["a", "bc"]), b"a\r\nbc\r\n");
    assert_eq!(LineEncoder::new().separator(), b"\n");
    assert_eq!(LineEncoder::crlf().separator(), b"\r\n");
}

#[test]
fn line_encoder_takes_any_separator() {
    let pipes = LineEncoder::with_separator("||").unwrap();
    assert_eq!(encode(&pipes, &["a", "", "bc"]), b"a||||bc||");
    let nuls = LineEncoder::with_separator(&b"\0\0"[..]).unwrap();
    assert_eq!(encode(&nuls, &["x", "y"]), b"x\0\0y\0\0");
    let owned = LineEncoder::with_separator(vec![0xff, b'\n']).unwrap();
    assert_eq!(
        encode(&owned, &["é"]),
        "é".bytes().chain([0xff, b'\n']).collect::<Vec<_>>()
    );
    let crlf = LineEncoder::with_separator(Bytes::from_static(b"\r\n")).unwrap();
    assert_eq!(encode(&crlf, &["a"]), encode(&LineEncoder::crlf(), &["a"]));
}

#[test]
fn an_empty_line_is_the_separator_alone() {
    assert_eq!(encode(&LineEncoder::new(), &[""]), b"\n");
    assert_eq!(encode(&LineEncoder::crlf(), &["", ""]), b"\r\n\r\n");
    assert_eq!(
        encode(&LineEncoder::with_separator("||").unwrap(), &[""]),
        b"||"
    );
}

#[test]
fn an_empty_separator_is_a_config_error() {
    let err = LineEncoder::with_separator("").unwrap_err();
    assert!(err.message().contains("separator"), "{err}");
    assert!(LineEncoder::with_separator(Vec::new()).is_err());
}

#[test]
fn what_line_encoder_writes_the_line_decoder_reads_back() {
    let lines = ["first", "", "ünïcödé", "last"];
    for encoder in [LineEncoder::new(), LineEncoder::crlf()] {
        let wire = encode(&encoder, &lines);
        let decoder = LineBasedFrameDecoder::new(80).and_then(StringDecoder);
        let events = same_at_every_split(&decoder, &wire);
        let expected: Vec<support::Event<String>> = lines
            .iter()
            .map(|line| support::Event::Frame(line.to_string()))
            .collect();
        assert_eq!(events, expected, "{:?}", encoder.separator());
    }
}
