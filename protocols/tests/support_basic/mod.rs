//! Helpers shared by the `basic_*` tests: feeding an input to a protocol,
//! in every way TCP could cut it.

#![allow(dead_code)]

use std::fmt::Debug;

use bytes::Bytes;
use twill::testing::StringTransport;
use twill::Protocol;

/// Connects `protocol` to a new `StringTransport` and feeds it `chunks`,
/// one `data_received` each; returns both for inspection.
pub fn feed<P: Protocol>(mut protocol: P, chunks: &[&[u8]]) -> (P, StringTransport) {
    let transport = StringTransport::new();
    protocol.connection_made(&transport.transport());
    for chunk in chunks {
        protocol.data_received(Bytes::copy_from_slice(chunk));
    }
    (protocol, transport)
}

/// The ways `input` may arrive: whole, in two pieces at every split point,
/// byte by byte, and in packets of 2 to 9 bytes (Twisted's `test_buffer`
/// sizes), each with a name for failure messages.
pub fn cuts(input: &[u8]) -> Vec<(String, Vec<&[u8]>)> {
    let mut cuts = vec![("whole".to_owned(), vec![input])];
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        cuts.push((format!("split at {at}"), vec![a, b]));
    }
    for size in 1..=9 {
        cuts.push((format!("packets of {size}"), input.chunks(size).collect()));
    }
    cuts
}

/// Runs `run` on every cut of `input` (see [`cuts`]), checks that each
/// gives the same result as the whole input, and returns that result.
pub fn same_at_every_split<T, F>(input: &[u8], run: F) -> T
where
    T: PartialEq + Debug,
    F: Fn(&[&[u8]]) -> T,
{
    let mut all = cuts(input).into_iter();
    let (_, whole) = all.next().expect("the whole input comes first");
    let expected = run(&whole);
    for (name, chunks) in all {
        assert_eq!(run(&chunks), expected, "input {input:?} fed as {name}");
    }
    expected
}

/// Like [`same_at_every_split`], for long inputs: the two-piece splits are
/// taken every `step` bytes and around `near` (± 3 bytes), plus byte by
/// byte and the packet sizes.
pub fn same_at_sampled_splits<T, F>(input: &[u8], step: usize, near: &[usize], run: F) -> T
where
    T: PartialEq + Debug,
    F: Fn(&[&[u8]]) -> T,
{
    let expected = run(&[input]);
    let mut points: Vec<usize> = (0..=input.len()).step_by(step.max(1)).collect();
    for &n in near {
        points.extend(n.saturating_sub(3)..=(n + 3).min(input.len()));
    }
    points.push(input.len());
    for at in points {
        let (a, b) = input.split_at(at);
        assert_eq!(run(&[a, b]), expected, "split at {at}");
    }
    for size in 1..=9 {
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        assert_eq!(run(&chunks), expected, "packets of {size}");
    }
    expected
}

/// Shows bytes as text for readable assertion failures.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
