//! LineBasedFrameDecoder: Netty's rules, at every split point.

mod support;

use bytes::Bytes;
use support::{same_at_every_split, Event};
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
