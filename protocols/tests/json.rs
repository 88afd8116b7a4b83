//! JsonObjectDecoder and the serde codecs (feature `json`).
#![cfg(feature = "json")]

mod support;

use bytes::Bytes;
use support::{feed, same_at_every_split, Event};
use twill_protocols::codec::{Decoder, JsonDecoder, JsonObjectDecoder, MessageDecoder};

fn frame(s: &str) -> Event<Bytes> {
    Event::Frame(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn top_level_objects_and_arrays_are_cut_out_whatever_the_chunking() {
    let input = br#" {"a":{"b":[1,2]}} [true,"]"]
{"s":"a \"quoted\" } brace"} "#;
    let events = same_at_every_split(&JsonObjectDecoder::new(), input);
    assert_eq!(
        events,
        [
            frame(r#"{"a":{"b":[1,2]}}"#),
            frame(r#"[true,"]"]"#),
            frame(r#"{"s":"a \"quoted\" } brace"}"#),
        ]
    );
}

#[test]
fn bytes_outside_a_value_are_corrupt_input() {
    let events = feed(&JsonObjectDecoder::new(), &[b"{}x{}"]);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], frame("{}"));
    assert!(matches!(&events[1], Event::Error(e) if e.contains("outside a value")));
}

#[test]
fn a_value_over_the_limit_is_too_long_and_the_rest_is_dropped() {
    let events = feed(
        &JsonObjectDecoder::with_max_object_length(8),
        &[b"{\"long\":", b"\"value\"}", b"{}"],
    );
    assert_eq!(events, [Event::Error("too long 9 > 8".into())]);
}

#[test]
fn an_unfinished_value_at_eof_is_reported() {
    let events = feed(&JsonObjectDecoder::new(), &[b"{\"a\":"]);
    assert_eq!(events, [Event::Error("truncated 5".into())]);
}

#[test]
fn json_decoder_deserializes_frames_and_reports_bad_documents() {
    let mut decoder = JsonObjectDecoder::new().and_then(JsonDecoder::<Vec<u32>>::new());
    let mut input = bytes::BytesMut::from(&b"[1,2,3]"[..]);
    assert_eq!(decoder.decode(&mut input).unwrap().unwrap(), vec![1, 2, 3]);
    assert!(JsonDecoder::<Vec<u32>>::new()
        .decode_message(Bytes::from_static(b"[\"x\"]"))
        .is_err());
}

#[test]
fn a_value_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
    let events = feed(
        &JsonObjectDecoder::with_max_object_length(4),
        &[b"[12][123]"],
    );
    assert_eq!(
        events,
        [frame("[12]"), Event::Error("too long 5 > 4".into())]
    );
}
