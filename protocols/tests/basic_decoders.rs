//! The framing of `basic` as codec-layer decoders and encoders:
//! LineDecoder, IntNDecoder/IntNEncoder, NetstringDecoder/NetstringEncoder
//! at every split point, and inside a `Framed`.

mod support;

use bytes::{Bytes, BytesMut};
use support::{feed, same_at_every_split, Event};
use twill::testing::StringTransport;
use twill::Protocol;
use twill_protocols::basic::{
    IntNDecoder, IntNEncoder, LineDecoder, NetstringDecoder, NetstringEncoder,
};
use twill_protocols::codec::{Context, DecodeError, Decoder, Encoder, Framed, Handler};

fn frame(s: &str) -> Event<Bytes> {
    Event::Frame(Bytes::copy_from_slice(s.as_bytes()))
}

fn error(s: &str) -> Event<Bytes> {
    Event::Error(s.to_owned())
}

/// Frames as text and errors as "error", for inputs whose error details
/// depend on the cut.
fn kinds(events: Vec<Event<Bytes>>) -> Vec<String> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Frame(f) => String::from_utf8_lossy(&f).into_owned(),
            Event::Error(_) => "error".to_owned(),
        })
        .collect()
}

#[test]
fn line_decoder_cuts_at_the_exact_delimiter_and_reports_a_truncated_tail() {
    let events = same_at_every_split(&LineDecoder::default(), b"hello\r\nbare\nlf\r\npart");
    assert_eq!(
        events,
        [frame("hello"), frame("bare\nlf"), error("truncated 4")]
    );
    let events = same_at_every_split(&LineDecoder::new("\n", 100), b"hi\r\nyo\n");
    assert_eq!(events, [frame("hi\r"), frame("yo")]);
}

#[test]
fn line_decoder_line_receiver_rules_drop_the_buffer_with_a_long_line() {
    let decoder = LineDecoder::new("\r\n", 4);
    assert_eq!(decoder.max_length(), 4);
    assert_eq!(decoder.delimiter(), "\r\n");
    let events = feed(&decoder, &[b"ok\r\nabcdefgh\r\nfin\r\n"]);
    assert_eq!(events, [frame("ok"), error("too long 8 > 4")]);
    // A maximum-length line with a split delimiter is fine.
    let events = same_at_every_split(&decoder, b"abcd\r\n");
    assert_eq!(events, [frame("abcd")]);
}

#[test]
fn line_decoder_line_only_rules_skip_only_the_long_line() {
    let decoder = LineDecoder::line_only("\r\n", 4);
    let input = b"ok\r\ntoo long\r\nfin\r\n";
    let whole = kinds(feed(&decoder, &[input]));
    assert_eq!(whole, ["ok", "error", "fin"]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(kinds(feed(&decoder, &[a, b])), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(kinds(feed(&decoder, &bytes)), whole);
    // A skipped tail at EOF is not reported as truncated.
    assert_eq!(kinds(feed(&decoder, &[b"abcdefg"])), ["error"]);
}

#[test]
fn intn_decoder_skips_a_too_long_string_and_goes_on() {
    for n in [1usize, 2, 4] {
        let mut input = Vec::new();
        for s in [&b"a"[..], &[b'x'; 60][..], b"", b"fin"] {
            input.extend_from_slice(&(s.len() as u64).to_be_bytes()[8 - n..]);
            input.extend_from_slice(s);
        }
        let events = same_at_every_split(&IntNDecoder::new(n, 50), &input);
        assert_eq!(
            events,
            [
                frame("a"),
                error("too long 60 > 50"),
                frame(""),
                frame("fin")
            ],
            "prefix {n}"
        );
    }
    let events = same_at_every_split(&IntNDecoder::new(4, 50), b"\x00\x00\x00\x05ab");
    assert_eq!(events, [error("truncated 6")]);
}

#[test]
#[should_panic(expected = "1, 2 or 4")]
fn intn_prefixes_are_1_2_or_4_bytes() {
    let _ = IntNDecoder::new(3, 10);
}

#[test]
fn intn_encoder_refuses_what_the_prefix_cannot_announce() {
    let mut out = BytesMut::new();
    IntNEncoder::new(2)
        .encode(vec![1u8; 65535], &mut out)
        .unwrap();
    assert_eq!(out.len(), 65537);
    let err = IntNEncoder::new(2)
        .encode(vec![1u8; 65536], &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "message of 65536 bytes is longer than the maximum of 65535"
    );
}

#[test]
fn netstring_decoder_stops_at_malformed_input() {
    let events = same_at_every_split(&NetstringDecoder::new(50), b"3:abc,0:,4:1:a,,");
    assert_eq!(events, [frame("abc"), frame(""), frame("1:a,")]);
    let events = same_at_every_split(&NetstringDecoder::new(50), b"1:a,2:abc,1:b,");
    assert_eq!(
        events,
        [
            frame("a"),
            error("corrupt input: The received netstring is not terminated by a comma.")
        ]
    );
    let events = same_at_every_split(&NetstringDecoder::new(50), b"1:a,3:ab");
    assert_eq!(events, [frame("a"), error("truncated 2")]);
    let mut huge = BytesMut::from(&b"99999999999999999999999999999999999999"[..]);
    let err = NetstringDecoder::new(usize::MAX)
        .decode(&mut huge)
        .unwrap_err();
    assert!(!err.is_recoverable());
}

#[test]
fn netstring_encoder_writes_length_colon_payload_comma() {
    let mut out = BytesMut::new();
    NetstringEncoder.encode("", &mut out).unwrap();
    NetstringEncoder.encode(b"1:a,", &mut out).unwrap();
    assert_eq!(out, "0:,4:1:a,,");
}

/// Echoes every message; records errors.
#[derive(Default)]
struct Echo {
    errors: Vec<String>,
}

impl Handler for Echo {
    type Message = Bytes;
    type Reply = Bytes;

    fn message_received(&mut self, ctx: &Context<Bytes>, message: Bytes) {
        ctx.write(message);
    }

    fn exception_caught(&mut self, ctx: &Context<Bytes>, error: DecodeError) {
        self.errors.push(error.to_string());
        ctx.fail(error);
    }
}

#[test]
fn netstrings_in_a_framed() {
    let transport = StringTransport::new();
    let mut framed = Framed::new(
        NetstringDecoder::new(100),
        NetstringEncoder,
        Echo::default(),
    );
    framed.connection_made(&transport.transport());
    framed.data_received(Bytes::from_static(b"5:hello,3:ab"));
    framed.data_received(Bytes::from_static(b"c,"));
    assert_eq!(transport.value(), b"5:hello,3:abc,");
    framed.data_received(Bytes::from_static(b"x"));
    assert!(transport.disconnecting());
    assert_eq!(framed.handler().errors.len(), 1);
}

#[test]
fn int16_strings_in_a_framed() {
    let transport = StringTransport::new();
    let mut framed = Framed::new(
        IntNDecoder::new(2, 10),
        IntNEncoder::new(2),
        Echo::default(),
    );
    framed.connection_made(&transport.transport());
    framed.data_received(Bytes::from_static(
        b"\x00\x02hi\x00\x0bxxxxxxxxxxx\x00\x01!",
    ));
    assert_eq!(transport.value(), b"\x00\x02hi");
    assert!(transport.disconnecting(), "the handler closes on the error");
    assert_eq!(
        framed.handler().errors,
        ["frame length (11) exceeds the allowed maximum (10)"]
    );
}

#[test]
fn twisted_lines_in_a_framed() {
    let transport = StringTransport::new();
    let encoder = twill_protocols::codec::BytesEncoder;
    let mut framed = Framed::new(LineDecoder::new(";", 16), encoder, Echo::default());
    framed.connection_made(&transport.transport());
    framed.data_received(Bytes::from_static(b"a;bc;d"));
    assert_eq!(transport.value(), b"abc");
    assert!(!transport.disconnecting());
}

/// Reports a too-long frame without skipping anything: a broken decoder.
#[derive(Debug, Clone)]
struct StuckDecoder;

impl twill_protocols::codec::Decoder for StuckDecoder {
    type Item = bytes::Bytes;
    fn decode(
        &mut self,
        src: &mut bytes::BytesMut,
    ) -> Result<Option<bytes::Bytes>, twill_protocols::codec::DecodeError> {
        if src.is_empty() {
            return Ok(None);
        }
        Err(twill_protocols::codec::DecodeError::TooLongFrame { length: 1, max: 0 })
    }
}

/// Ignores decode errors (does not close).
struct Tolerant;

impl twill_protocols::codec::Handler for Tolerant {
    type Message = bytes::Bytes;
    type Reply = bytes::Bytes;
    fn message_received(
        &mut self,
        _: &twill_protocols::codec::Context<bytes::Bytes>,
        _: bytes::Bytes,
    ) {
    }
    fn exception_caught(
        &mut self,
        _: &twill_protocols::codec::Context<bytes::Bytes>,
        _: twill_protocols::codec::DecodeError,
    ) {
    }
}

#[test]
fn a_recoverable_error_that_skips_nothing_closes_instead_of_looping() {
    use twill::Protocol;
    let transport = twill::testing::StringTransport::new();
    let mut framed = twill_protocols::codec::Framed::new(
        StuckDecoder,
        twill_protocols::codec::BytesEncoder,
        Tolerant,
    );
    framed.connection_made(&transport.transport());
    framed.data_received(bytes::Bytes::from_static(b"x"));
    assert!(
        transport.disconnecting(),
        "closed rather than looping forever"
    );
}
