//! JsonObjectDecoder and the serde codecs (feature `json`).
#![cfg(feature = "json")]

mod support;

use bytes::Bytes;
use support::{assert_model, chunked, feed, maxima, same_at_every_split, Event, XorShift};
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

// "No limit" written as usize::MAX (issue 10): `max + 1` overflowed, a
// panic in debug builds and a decoder that never emitted in release.

#[test]
fn no_limit_emits_every_object() {
    let decoder = JsonObjectDecoder::with_max_object_length(usize::MAX);
    // JsonObjectDecoderTest.testMultipleJsonObjectsInOneWrite.
    let (one, two, three) = (
        r#"{"key" : "value1"}"#,
        r#"{"key" : "value2"}"#,
        r#"{"key" : "value3"}"#,
    );
    let input = format!("{one}{two}{three}");
    assert_eq!(
        same_at_every_split(&decoder, input.as_bytes()),
        [frame(one), frame(two), frame(three)]
    );
    // JsonObjectDecoderTest.testJsonArrayOverMultipleWrites, in its five
    // writes.
    let parts = [
        r#"[{"test"#,
        r#"case"  : "\"}]Escaped dou\"ble quotes \" in JSON str\"ing""#,
        "  }\n\n    , ",
        r#"{"testcase" : "Streaming string me"#,
        r#"ssage"} ]"#,
    ];
    let writes = [
        format!("   {}", parts[0]),
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
        format!("{}      ", parts[4]),
    ];
    let writes: Vec<&[u8]> = writes.iter().map(|w| w.as_bytes()).collect();
    assert_eq!(feed(&decoder, &writes), [frame(&parts.concat())]);
    // JsonObjectDecoderTest.testSingleByteStream and the three
    // testBackslashInString cases.
    for json in [
        r#"{"foo" : {"bar" : [{},{}]}}"#,
        r#"{"foo" : "bar\""}"#,
        r#"{"foo" : "bar\\"}"#,
        r#"{"foo" : "bar\\\""}"#,
    ] {
        assert_eq!(
            same_at_every_split(&decoder, json.as_bytes()),
            [frame(json)]
        );
    }
}

#[test]
fn no_limit_still_reports_corrupt_input() {
    // JsonObjectDecoderTest.testNonJsonContent2, with usize::MAX.
    let decoder = JsonObjectDecoder::with_max_object_length(usize::MAX);
    let events = feed(&decoder, &[b"  [1,2,3]  ", b" a {\"key\" : 10}"]);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], frame("[1,2,3]"));
    assert!(matches!(&events[1], Event::Error(e) if e.contains("outside a value")));
}

#[test]
fn max_object_length_matches_netty() {
    // JsonObjectDecoderTest.testMaxObjectLength: 7 bytes with a maximum of 6.
    let events = feed(&JsonObjectDecoder::with_max_object_length(6), &[b"[2,4,5]"]);
    assert_eq!(events, [Event::Error("too long 7 > 6".into())]);
}

// Randomized: random values in random chunks give what a whole-input model
// gives, with a small maximum and with usize::MAX.

/// A JSON-like value: brackets, strings holding brackets and escapes,
/// scalars; not always valid JSON, which the decoder does not check.
fn value(rng: &mut XorShift, depth: u32, out: &mut Vec<u8>) {
    let (open, close) = if rng.chance(50) {
        (b'{', b'}')
    } else {
        (b'[', b']')
    };
    out.push(open);
    for _ in 0..rng.below(5) {
        match rng.below(8) {
            0 => out.extend_from_slice(b"1"),
            1 => out.extend_from_slice(b","),
            2 => out.extend_from_slice(b" :\n"),
            3 => out.extend_from_slice(br#""s""#),
            4 => out.extend_from_slice(br#""]}[{""#),
            5 => out.extend_from_slice(br#""\"}\\""#),
            _ if depth < 3 => value(rng, depth + 1, out),
            _ => out.extend_from_slice(b"null"),
        }
    }
    out.push(close);
}

fn random_input(rng: &mut XorShift) -> Vec<u8> {
    let mut input = Vec::new();
    for _ in 0..rng.below(6) {
        for _ in 0..rng.below(3) {
            input.push([b' ', b'\n', b'\t', b'\r'][rng.below(4) as usize]);
        }
        match rng.below(40) {
            0 => input.push(b'x'),                 // corrupt
            1 => input.extend_from_slice(b"[\"a"), // unfinished
            _ => value(rng, 0, &mut input),
        }
    }
    input
}

/// The scan applied to the whole input at once.
fn model(max: usize, input: &[u8]) -> Vec<Event<Bytes>> {
    let mut events = Vec::new();
    let mut rest = input;
    loop {
        let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        rest = &rest[skip..];
        match rest.first() {
            None => return events,
            Some(b'{' | b'[') => {}
            Some(_) => {
                events.push(Event::Error("corrupt".into()));
                return events;
            }
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut end = None;
        for (i, &byte) in rest.iter().enumerate() {
            if in_string {
                match byte {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end {
            Some(end) if end <= max => {
                events.push(frame(std::str::from_utf8(&rest[..end]).unwrap()));
                rest = &rest[end..];
            }
            // Known too long once one byte past the maximum was scanned;
            // then all input is dropped.
            _ if rest.len() > max => {
                events.push(Event::Error(format!("too long {} > {max}", max + 1)));
                return events;
            }
            _ => {
                events.push(Event::Error(format!("truncated {}", rest.len())));
                return events;
            }
        }
    }
}

fn corrupt_as_one(events: Vec<Event<Bytes>>) -> Vec<Event<Bytes>> {
    events
        .into_iter()
        .map(|event| match event {
            Event::Error(s) if s.starts_with("corrupt input") => Event::Error("corrupt".into()),
            other => other,
        })
        .collect()
}

#[test]
fn random_values_in_random_chunks_match_the_model_with_any_maximum() {
    let mut rng = XorShift(0x1f83_d9ab_fb41_bd6b);
    let mut counts = [0usize; 4]; // frames, too long, corrupt or truncated, usize::MAX runs
    for _ in 0..3000 {
        let small = 1 + rng.below(40) as usize;
        let input = random_input(&mut rng);
        let chunks = chunked(&mut rng, &input, 16);
        for max in maxima(small) {
            let expected = model(max, &input);
            for event in &expected {
                match event {
                    Event::Frame(_) => counts[0] += 1,
                    Event::Error(s) if s.starts_with("too long") => counts[1] += 1,
                    Event::Error(_) => counts[2] += 1,
                }
            }
            counts[3] += usize::from(max == usize::MAX);
            let decoder = JsonObjectDecoder::with_max_object_length(max);
            // An unfinished value is buffered up to its maximum.
            let context = format!("max {max}");
            assert_model(
                &decoder,
                &input,
                &chunks,
                max,
                &expected,
                corrupt_as_one,
                &context,
            );
        }
    }
    assert!(counts.iter().all(|&n| n > 500), "{counts:?}");
}

#[test]
fn a_buffer_that_shrank_behind_the_decoders_back_does_not_panic() {
    // A pipeline stage removed with its bytes keeps its scan state; added
    // again, it starts over on its new, shorter input.
    let mut decoder = JsonObjectDecoder::new();
    let mut buffer = bytes::BytesMut::from(&b"[[1,2,3"[..]);
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    let mut shorter = bytes::BytesMut::from(&b"{}"[..]);
    assert_eq!(decoder.decode(&mut shorter).unwrap().unwrap(), "{}");
}
