//! Arbitrary input never panics a decoder and never makes it buffer more
//! than its maximum, in any chunking, with a small maximum and with
//! `usize::MAX` ("no limit", issue 10).

mod support;

use bytes::BytesMut;
use support::{maxima, plus, XorShift};
use twill_protocols::codec::{Decoder, LineBasedFrameDecoder};

/// Feeds `input` in `chunks` to `decoder` like `Framed` does, checking after
/// each pass that at most `limit` bytes stay buffered.
fn check<D: Decoder>(decoder: &mut D, chunks: &[&[u8]], limit: usize) {
    let mut buffer = BytesMut::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let before = buffer.len();
            match decoder.decode(&mut buffer) {
                Ok(Some(_)) => {}
                Ok(None) if buffer.len() < before && !buffer.is_empty() => {}
                Ok(None) => break,
                Err(err) if err.is_recoverable() => {}
                Err(_) => return,
            }
        }
        assert!(buffer.len() <= limit, "buffered {} > {limit}", buffer.len());
    }
    let _ = decoder.decode_eof(&mut buffer);
}

fn random_input(rng: &mut XorShift, alphabet: &[u8]) -> Vec<u8> {
    let length = rng.below(600) as usize;
    (0..length)
        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
        .collect()
}

#[test]
fn line_based_survives_random_input() {
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    for _ in 0..3000 {
        let small = 1 + rng.below(40) as usize;
        let fail_fast = rng.chance(50);
        let input = random_input(&mut rng, b"ab\r\n\n\r\x00\xff");
        let chunks = rng.chunks(&input, 50);
        for max in maxima(small) {
            let mut decoder = LineBasedFrameDecoder::new(max).fail_fast(fail_fast);
            // A line of max bytes plus a pending "\r" may wait for its "\n".
            check(&mut decoder, &chunks, plus(max, 1));
        }
    }
}

#[cfg(feature = "json")]
#[test]
fn json_object_decoder_survives_random_input() {
    use twill_protocols::codec::JsonObjectDecoder;
    let mut rng = XorShift(0x0dd_ba11_cafe_f00d);
    for _ in 0..3000 {
        let small = 1 + rng.below(64) as usize;
        let input = random_input(&mut rng, b"{}[]\"\\ a1,:\n");
        let chunks = rng.chunks(&input, 40);
        for max in maxima(small) {
            let mut decoder = JsonObjectDecoder::with_max_object_length(max);
            check(&mut decoder, &chunks, max);
        }
    }
}

#[test]
fn twisted_framers_decoders_survive_random_input() {
    use twill_protocols::basic::{IntNDecoder, LineDecoder, NetstringDecoder};
    let mut rng = XorShift(0xfee1_600d_1234_5678);
    for _ in 0..2000 {
        let small = 1 + rng.below(40) as usize;
        let input = random_input(&mut rng, b"ab\r\n0123:,\x00\x01\xff");
        let chunks = rng.chunks(&input, 30);
        let prefix = [1usize, 2, 4][rng.below(3) as usize];
        for max in maxima(small) {
            // Twisted tolerates an unterminated tail of max + delimiter - 1.
            let mut lines = LineDecoder::new(&b"\r\n"[..], max);
            check(&mut lines, &chunks, plus(max, 1));
            let mut lines = LineDecoder::line_only(&b"\r\n"[..], max);
            check(&mut lines, &chunks, plus(max, 1));
            check(
                &mut IntNDecoder::new(prefix, max),
                &chunks,
                plus(max, prefix),
            );
            // A netstring's header is its digits and ':'.
            check(&mut NetstringDecoder::new(max), &chunks, plus(max, 24));
        }
    }
}
