//! Helpers shared by the codec tests.

#![allow(dead_code)]

use bytes::BytesMut;
use twill_protocols::codec::{DecodeError, Decoder};

/// What a decoder made of an input: frames and errors, in order, then what
/// `decode_eof` gave.
#[derive(Debug, PartialEq)]
pub enum Event<T> {
    Frame(T),
    Error(String),
}

/// Too-long errors without their length, which depends on where the input
/// was split when the error comes early (fail fast).
pub fn without_lengths<T>(events: Vec<Event<T>>) -> Vec<Event<T>> {
    events
        .into_iter()
        .map(|event| match event {
            Event::Error(s) if s.starts_with("too long") => Event::Error("too long".to_owned()),
            other => other,
        })
        .collect()
}

/// Feeds `chunks` one by one to a fresh clone of `decoder`, decoding after
/// each like `Framed` does (errors included), then ends with `decode_eof`.
pub fn feed<D>(decoder: &D, chunks: &[&[u8]]) -> Vec<Event<D::Item>>
where
    D: Decoder + Clone,
{
    let mut decoder = decoder.clone();
    let mut buffer = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        drain(&mut decoder, &mut buffer, &mut events, false);
    }
    drain(&mut decoder, &mut buffer, &mut events, true);
    events
}

fn drain<D: Decoder>(
    decoder: &mut D,
    buffer: &mut BytesMut,
    events: &mut Vec<Event<D::Item>>,
    eof: bool,
) {
    loop {
        let before = buffer.len();
        let result = if eof {
            decoder.decode_eof(buffer)
        } else {
            decoder.decode(buffer)
        };
        match result {
            Ok(Some(frame)) => events.push(Event::Frame(frame)),
            Ok(None) if !eof && buffer.len() < before && !buffer.is_empty() => {}
            Ok(None) => return,
            Err(err) => {
                let stop = !err.is_recoverable();
                events.push(Event::Error(describe(&err)));
                if stop {
                    return;
                }
            }
        }
    }
}

/// Like [`feed`], for randomized runs: feeds `chunks` to `decoder`,
/// checking that every frame consumes input and that at most `most` bytes
/// stay buffered after each `Ok(None)`.
pub fn drive<D: Decoder>(mut decoder: D, chunks: &[&[u8]], most: usize) -> Vec<Event<D::Item>> {
    let mut buffer = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let before = buffer.len();
            match decoder.decode(&mut buffer) {
                Ok(Some(item)) => {
                    assert!(buffer.len() < before, "a frame consumes input");
                    events.push(Event::Frame(item));
                }
                Ok(None) => {
                    assert!(buffer.len() <= most, "buffered {} of {most}", buffer.len());
                    if buffer.len() == before || buffer.is_empty() {
                        break;
                    }
                }
                Err(err) => {
                    let stop = !err.is_recoverable();
                    events.push(Event::Error(describe(&err)));
                    if stop {
                        break;
                    }
                }
            }
        }
    }
    loop {
        match decoder.decode_eof(&mut buffer) {
            Ok(Some(item)) => events.push(Event::Frame(item)),
            Ok(None) => return events,
            Err(err) => {
                let stop = !err.is_recoverable();
                events.push(Event::Error(describe(&err)));
                if stop {
                    return events;
                }
            }
        }
    }
}

fn describe(err: &DecodeError) -> String {
    match err {
        DecodeError::TooLongFrame { length, max } => format!("too long {length} > {max}"),
        DecodeError::Truncated { remaining } => format!("truncated {remaining}"),
        other => other.to_string(),
    }
}

/// Checks that `input` decodes to the same events in one piece, split at
/// every byte boundary, and byte by byte; returns the events.
pub fn same_at_every_split<D>(decoder: &D, input: &[u8]) -> Vec<Event<D::Item>>
where
    D: Decoder + Clone,
    D::Item: PartialEq + std::fmt::Debug,
{
    let whole = feed(decoder, &[input]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(feed(decoder, &[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed(decoder, &bytes), whole, "byte by byte");
    whole
}

/// A small deterministic PRNG (xorshift64) for randomized tests.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Splits `input` into random chunks of 1 to `max` bytes.
    pub fn chunks<'a>(&mut self, input: &'a [u8], max: u64) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = (1 + self.below(max)).min(rest.len() as u64) as usize;
            let (chunk, tail) = rest.split_at(n);
            chunks.push(chunk);
            rest = tail;
        }
        chunks
    }
}

/// Splits `input` at random places into chunks of 1 to `max` bytes, or
/// (one time in ten) byte by byte.
pub fn chunked<'a>(rng: &mut XorShift, input: &'a [u8], max: usize) -> Vec<&'a [u8]> {
    if rng.chance(10) {
        return input.chunks(1).collect();
    }
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let at = 1 + rng.below(rest.len().min(max) as u64) as usize;
        let (chunk, tail) = rest.split_at(at);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// The maxima every randomized decoder test runs with: the test's own
/// small one, which exercises the limit, and `usize::MAX`, the way to say
/// "no limit", which must not overflow any arithmetic on the maximum
/// (issue 10: `max + 1` panicked in debug builds and wrapped to 0 in
/// release).
pub fn maxima(small: usize) -> [usize; 2] {
    [small, usize::MAX]
}

/// `max + extra` for a buffering bound given to [`drive`], saturating so
/// that the bound stays meaningful (and the test does not overflow) when
/// `max` is `usize::MAX`.
pub fn plus(max: usize, extra: usize) -> usize {
    max.saturating_add(extra)
}

/// Checks `decoder` against the events a whole-input model predicts
/// (`expected`): `input` in one piece and in `chunks`, through [`drive`] (at most `most` bytes
/// buffered after each `Ok(None)`) and [`feed`], each compared after
/// `normalize` (for error details the model does not predict).
pub fn assert_model<D>(
    decoder: &D,
    input: &[u8],
    chunks: &[&[u8]],
    most: usize,
    expected: &[Event<D::Item>],
    normalize: impl Fn(Vec<Event<D::Item>>) -> Vec<Event<D::Item>>,
    context: &dyn std::fmt::Debug,
) where
    D: Decoder + Clone,
    D::Item: PartialEq + std::fmt::Debug,
{
    let whole = normalize(drive(decoder.clone(), &[input], most));
    assert_eq!(whole, expected, "whole input, {context:?}");
    let split = normalize(drive(decoder.clone(), chunks, most));
    assert_eq!(split, expected, "in chunks {chunks:?}, {context:?}");
    assert_eq!(
        normalize(feed(decoder, chunks)),
        expected,
        "fed, {context:?}"
    );
}
