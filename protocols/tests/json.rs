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

// ---------------------------------------------------------------------------
// stream_array_elements: Netty's `JsonObjectDecoder(maxObjectLength,
// streamArrayElements = true)`.

fn streaming() -> JsonObjectDecoder {
    JsonObjectDecoder::with_max_object_length(usize::MAX).stream_array_elements(true)
}

fn frames(items: &[&str]) -> Vec<Event<Bytes>> {
    items.iter().map(|item| frame(item)).collect()
}

#[test]
fn each_element_of_a_top_level_array_is_a_frame() {
    let input = br#"[ {"a":1}, "str", 12, [1,2], null ]"#;
    assert_eq!(
        same_at_every_split(&streaming(), input),
        frames(&[r#"{"a":1}"#, r#""str""#, "12", "[1,2]", "null"])
    );
}

#[test]
fn stream_array_elements_simple_netty() {
    // JsonObjectDecoderTest.testStreamArrayElementsSimple: scalars of every
    // kind, blanks around them, an object holding an array, and an object
    // after the array, delivered whole.
    let array = concat!(
        r#"[  12, "bla"  , 13.4   "#,
        "\t  ,",
        r#"{"key0" : [1,2], "key1" : 12, "key2" : {}} , "#,
        r#"true, false, null, ["bla", {}, [1,2,3]] ]"#,
    );
    let object = r#"{"bla" : "blub"}"#;
    let input = format!("{array}{object}");
    assert_eq!(
        same_at_every_split(&streaming(), input.as_bytes()),
        frames(&[
            "12",
            r#""bla""#,
            "13.4",
            r#"{"key0" : [1,2], "key1" : 12, "key2" : {}}"#,
            "true",
            "false",
            "null",
            r#"["bla", {}, [1,2,3]]"#,
            object,
        ])
    );
}

#[test]
fn stream_json_array_over_multiple_writes_netty() {
    // JsonObjectDecoderTest.testStreamJsonArrayOverMultipleWrites1, 2 and 3,
    // in Netty's writes and at every split point; the first element comes
    // only once the comma after it has.
    let first = r#"{"testcase"  : "\"}]Escaped dou\"ble quotes \" in JSON str\"ing"  }"#;
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                r#"   [{"test"#,
                r#"case"  : "\"}]Escaped dou\"ble quotes \" in JSON str\"ing""#,
                "  }\n\n    , ",
                r#"{"testcase" : "Streaming string me"#,
                r#"ssage"} ]      "#,
            ],
            r#"{"testcase" : "Streaming string message"}"#,
        ),
        (
            &[
                r#"   [{"test"#,
                r#"case"  : "\"}]Escaped dou\"ble quotes \" in JSON str\"ing""#,
                "  }\n\n    , {\"test",
                r#"case" : "Streaming string me"#,
                r#"ssage"} ]      "#,
            ],
            r#"{"testcase" : "Streaming string message"}"#,
        ),
        (
            &[
                r#"   [{"test"#,
                r#"case"  : "\"}]Escaped dou\"ble quotes \" in JSON str\"ing""#,
                "  }\n\n    , [{\"test",
                r#"case" : "Streaming string me"#,
                r#"ssage"}] ]      "#,
            ],
            r#"[{"testcase" : "Streaming string message"}]"#,
        ),
    ];
    for (writes, second) in cases {
        let chunks: Vec<&[u8]> = writes.iter().map(|w| w.as_bytes()).collect();
        let unfinished = feed(&streaming(), &chunks[..2]);
        assert!(
            matches!(&unfinished[..], [Event::Error(e)] if e.starts_with("truncated")),
            "{unfinished:?}"
        );
        assert_eq!(feed(&streaming(), &chunks[..3])[0], frame(first));
        assert_eq!(feed(&streaming(), &chunks), frames(&[first, second]));
        let whole = writes.concat();
        assert_eq!(
            same_at_every_split(&streaming(), whole.as_bytes()),
            frames(&[first, second])
        );
    }
}

#[test]
fn brackets_commas_and_escaped_quotes_inside_strings_do_not_cut_elements() {
    let input = br#"[ "a,b", "]", "[", "\"", "\\", {"k":"],[\"}"}, ["x,]"] ]"#;
    assert_eq!(
        same_at_every_split(&streaming(), input),
        frames(&[
            r#""a,b""#,
            r#""]""#,
            r#""[""#,
            r#""\"""#,
            r#""\\""#,
            r#"{"k":"],[\"}"}"#,
            r#"["x,]"]"#,
        ])
    );
}

#[test]
fn nested_arrays_inside_an_element_are_not_split() {
    let input = b"[[1,[2,3]],[[]],[ ] , 4]";
    assert_eq!(
        same_at_every_split(&streaming(), input),
        frames(&["[1,[2,3]]", "[[]]", "[ ]", "4"])
    );
}

#[test]
fn objects_and_arrays_follow_each_other_and_only_arrays_are_streamed() {
    let input = b" {\"a\":[1,2]}\n[1, 2]\t{} [3] ";
    assert_eq!(
        same_at_every_split(&streaming(), input),
        frames(&["{\"a\":[1,2]}", "1", "2", "{}", "3"])
    );
    // Without streaming, the same input gives whole values.
    assert_eq!(
        same_at_every_split(&JsonObjectDecoder::new(), input),
        frames(&["{\"a\":[1,2]}", "[1, 2]", "{}", "[3]"])
    );
    assert_eq!(
        same_at_every_split(&streaming().stream_array_elements(false), input),
        frames(&["{\"a\":[1,2]}", "[1, 2]", "{}", "[3]"])
    );
}

#[test]
fn empty_elements_are_not_delivered() {
    // Netty delivers an empty buffer for each of these.
    assert_eq!(same_at_every_split(&streaming(), b"[] [ ] [\n]"), []);
    assert_eq!(
        same_at_every_split(&streaming(), b"[1,,2,] [,]"),
        frames(&["1", "2"])
    );
}

#[test]
fn the_maximum_bounds_each_element() {
    // Elements of exactly 4 bytes, however long the array.
    let decoder = JsonObjectDecoder::with_max_object_length(4).stream_array_elements(true);
    let input = b"[1234, \"ab\",  [12],{}, 1234,1234]";
    assert_eq!(
        same_at_every_split(&decoder, input),
        frames(&["1234", "\"ab\"", "[12]", "{}", "1234", "1234"])
    );
    // One byte more is too long, wherever the chunks end; the rest is
    // dropped.
    let events = same_at_every_split(&decoder, b"[1, 12345, 2]");
    assert_eq!(events, [frame("1"), Event::Error("too long 5 > 4".into())]);
    // Blanks before an element do not count; blanks after it do.
    assert_eq!(
        same_at_every_split(&decoder, b"[        1234]"),
        frames(&["1234"])
    );
    assert_eq!(
        same_at_every_split(&decoder, b"[12  ,12   ]"),
        [frame("12"), Event::Error("too long 5 > 4".into())]
    );
    // testMaxObjectLength, streaming: each element is short.
    assert_eq!(
        same_at_every_split(
            &JsonObjectDecoder::with_max_object_length(6).stream_array_elements(true),
            b"[2,4,5]"
        ),
        frames(&["2", "4", "5"])
    );
}

#[test]
fn an_unfinished_streamed_array_is_truncated_at_eof() {
    assert_eq!(
        feed(&streaming(), &[b"[1, 2"]),
        [frame("1"), Event::Error("truncated 1".into())]
    );
    assert_eq!(
        feed(&streaming(), &[b"[1, 2,  "]),
        [frame("1"), frame("2"), Event::Error("truncated 0".into())]
    );
    assert_eq!(
        feed(&streaming(), &[b" [ "]),
        [Event::Error("truncated 0".into())]
    );
}

#[test]
fn corrupt_input_between_values_is_still_reported_when_streaming() {
    // JsonObjectDecoderTest.testNonJsonContent2, streaming.
    let events = feed(&streaming(), &[b"  [1,2,3]  ", b" a {\"key\" : 10}"]);
    assert_eq!(events.len(), 4);
    assert_eq!(events[..3], frames(&["1", "2", "3"]));
    assert!(matches!(&events[3], Event::Error(e) if e.contains("outside a value")));
}

/// The streamed scan applied to the whole input at once: a top-level
/// array's elements, trimmed, non-empty; anything else as [`model`].
fn streaming_model(max: usize, input: &[u8]) -> Vec<Event<Bytes>> {
    let blank = |b: &u8| b.is_ascii_whitespace();
    let mut events = Vec::new();
    let mut rest = input;
    loop {
        rest = &rest[rest.iter().take_while(|b| blank(b)).count()..];
        if rest.first() != Some(&b'[') {
            // Not an array: the plain model decides this value.
            let mut plain = model(max, rest);
            let Some(first) = plain.first() else {
                return events;
            };
            let taken = match first {
                Event::Frame(value) => value.len(),
                Event::Error(_) => {
                    events.push(plain.remove(0));
                    return events;
                }
            };
            events.push(plain.remove(0));
            rest = &rest[taken..];
            continue;
        }
        rest = &rest[1..];
        let (mut depth, mut in_string, mut escaped) = (1usize, false, false);
        let mut start = None;
        let mut i = 0;
        loop {
            let Some(&byte) = rest.get(i) else {
                // Input ends inside the array.
                let pending = start.map_or(0, |s| rest.len() - s);
                if pending > max {
                    events.push(Event::Error(format!("too long {} > {max}", max + 1)));
                } else {
                    events.push(Event::Error(format!("truncated {pending}")));
                }
                return events;
            };
            if start.is_none() && !blank(&byte) {
                start = Some(i);
            }
            if let Some(s) = start {
                if i - s >= max.saturating_add(1) {
                    events.push(Event::Error(format!("too long {} > {max}", max + 1)));
                    return events;
                }
            }
            i += 1;
            if in_string {
                match byte {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            let cut = match byte {
                b'"' => {
                    in_string = true;
                    false
                }
                b'{' | b'[' => {
                    depth += 1;
                    false
                }
                b',' => depth == 1,
                b'}' | b']' => {
                    depth -= 1;
                    depth == 0
                }
                _ => false,
            };
            if cut {
                if let Some(s) = start {
                    let element = rest[s..i - 1].trim_ascii_end();
                    if !element.is_empty() {
                        events.push(frame(std::str::from_utf8(element).unwrap()));
                    }
                }
                if depth == 0 {
                    rest = &rest[i..];
                    break;
                }
                rest = &rest[i..];
                i = 0;
                start = None;
            }
        }
    }
}

#[test]
fn random_streamed_arrays_in_random_chunks_match_the_model() {
    let mut rng = XorShift(0x5eed_a77a_e1e3_e175);
    let mut counts = [0usize; 3]; // frames, too long, corrupt or truncated
    for _ in 0..3000 {
        let small = 1 + rng.below(24) as usize;
        let input = random_input(&mut rng);
        let chunks = chunked(&mut rng, &input, 16);
        for max in maxima(small) {
            let expected = streaming_model(max, &input);
            for event in &expected {
                match event {
                    Event::Frame(_) => counts[0] += 1,
                    Event::Error(s) if s.starts_with("too long") => counts[1] += 1,
                    Event::Error(_) => counts[2] += 1,
                }
            }
            let decoder =
                JsonObjectDecoder::with_max_object_length(max).stream_array_elements(true);
            let context = format!("max {max}, input {:?}", input.escape_ascii().to_string());
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
