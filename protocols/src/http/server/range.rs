//! The `Range` field of a `GET` (RFC 9110 §14.2), for byte ranges of a
//! representation whose length is known.

use std::ops::Range;

/// What a `Range` field asks of a body of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// The whole body: no field, a field this server ignores (another
    /// unit, bad syntax, or several ranges, which it may answer whole).
    Whole,
    /// One satisfiable range: a `206` with these bytes.
    Part(Range<u64>),
    /// No range overlaps the body: `416`.
    Unsatisfiable,
}

/// Reads `field` (its value) against a body of `len` bytes.
pub(crate) fn parse(field: &str, len: u64) -> Ranged {
    let Some(set) = field.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut satisfiable = Vec::new();
    for spec in &specs {
        let Some((first, last)) = spec.split_once('-') else {
            return Ranged::Whole;
        };
        let range = if first.is_empty() {
            // The final `last` bytes.
            let Some(suffix) = digits(last) else {
                return Ranged::Whole;
            };
            (suffix > 0 && len > 0).then(|| len.saturating_sub(suffix)..len)
        } else {
            let Some(start) = digits(first) else {
                return Ranged::Whole;
            };
            let end = if last.is_empty() {
                len
            } else {
                match digits(last) {
                    Some(last) if last >= start => last.saturating_add(1).min(len),
                    _ => return Ranged::Whole,
                }
            };
            (start < len).then_some(start..end)
        };
        satisfiable.extend(range);
    }
    match satisfiable.len() {
        0 if !specs.is_empty() => Ranged::Unsatisfiable,
        1 if specs.len() == 1 => Ranged::Part(satisfiable.remove(0)),
        _ => Ranged::Whole,
    }
}

fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_examples() {
        // RFC 9110 §14.1.2, on a 10,000-byte body.
        assert_eq!(parse("bytes=0-499", 10_000), Ranged::Part(0..500));
        assert_eq!(parse("bytes=500-999", 10_000), Ranged::Part(500..1000));
        assert_eq!(parse("bytes=-500", 10_000), Ranged::Part(9500..10_000));
        assert_eq!(parse("bytes=9500-", 10_000), Ranged::Part(9500..10_000));
        assert_eq!(parse("bytes=0-0,-1", 10_000), Ranged::Whole);
    }

    #[test]
    fn ends_past_the_body_are_cut_and_starts_past_it_are_unsatisfiable() {
        assert_eq!(parse("bytes=5-100", 10), Ranged::Part(5..10));
        assert_eq!(parse("bytes=-100", 10), Ranged::Part(0..10));
        assert_eq!(parse("bytes=10-", 10), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 10), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Ranged::Unsatisfiable);
        assert_eq!(
            parse("bytes=0-18446744073709551615", 10),
            Ranged::Part(0..10)
        );
    }

    #[test]
    fn what_it_does_not_understand_means_the_whole_body() {
        for field in [
            "items=0-5",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "bytes=",
        ] {
            assert_eq!(parse(field, 10), Ranged::Whole, "{field}");
        }
    }
}
