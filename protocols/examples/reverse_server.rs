//! The length-prefixed "reverse" protocol of the non-blocking-framework
//! article, with a hand-written [`Decoder`] and [`Encoder`].
//!
//! ```text
//! cargo run -p twill-protocols --example reverse_server [ENDPOINT]   # default 127.0.0.1:8007
//! printf '00005abcde00003xyz' | nc -q1 127.0.0.1 8007                 # 00005edcba00003zyx
//! cargo run -p twill-protocols --example reverse_server -- unix:/tmp/reverse.sock
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/reverse.sock`), listened on
//! with [`Reactor::server_from_string`].
//!
//! A request is a length header of exactly five ASCII decimal digits
//! (`00000` to `99999`) followed by that many bytes of body; the reply is
//! the same header and the body reversed. Requests may be pipelined and may
//! arrive split anywhere; replies come in request order.
//!
//! The body is reversed byte by byte, not character by character: the
//! protocol counts bytes and the body need not be text. (A multi-byte UTF-8
//! character comes back with its bytes in reverse order, which is not UTF-8.)
//!
//! A header byte that is not a digit closes that connection as soon as it
//! arrives (the input has no way back into step), and so does closing the
//! writing side in the middle of a request; other connections are not
//! affected.
//!
//! A client that sends requests and never reads the replies costs the
//! server about 64 KiB of replies, not everything it sends: [`Framed`]
//! turns the transport's flow control on, so while the replies cannot
//! leave, the connection stops reading (see `twill_protocols::codec`,
//! "Backpressure").

use bytes::{BufMut, Bytes, BytesMut};
use twill::net::endpoint::parse_server_or_addr;
use twill::Reactor;
use twill_protocols::codec::{
    Context, DecodeError, Decoder, EncodeError, Encoder, Framed, Handler,
};

/// The length of the header.
const HEADER: usize = 5;
/// The longest body five digits can announce.
const MAX_BODY: usize = 99_999;

/// Cuts the input into request bodies (header removed).
#[derive(Debug, Clone, Copy, Default)]
struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = BytesMut;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        // Check the header bytes that are there, so a bad one fails now
        // rather than once five bytes arrived.
        let header = &src[..src.len().min(HEADER)];
        if !header.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::Corrupt(format!(
                "length header \"{}\" is not {HEADER} ASCII digits",
                header.escape_ascii()
            )));
        }
        if header.len() < HEADER {
            return Ok(None);
        }
        let body = header
            .iter()
            .fold(0, |n, digit| n * 10 + usize::from(digit - b'0'));
        if src.len() < HEADER + body {
            // Make room for the rest of the request in one go.
            src.reserve(HEADER + body - src.len());
            return Ok(None);
        }
        let _ = src.split_to(HEADER);
        Ok(Some(src.split_to(body)))
    }
}

/// Writes a reply: the five-digit header, then the body.
#[derive(Debug, Clone, Copy, Default)]
struct ReplyEncoder;

impl Encoder<Bytes> for ReplyEncoder {
    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if body.len() > MAX_BODY {
            return Err(EncodeError::TooLong {
                length: body.len(),
                max: MAX_BODY,
            });
        }
        dst.reserve(HEADER + body.len());
        dst.put_slice(format!("{:05}", body.len()).as_bytes());
        dst.put_slice(&body);
        Ok(())
    }
}

/// Reverses each request's body.
struct Reverse;

impl Handler for Reverse {
    type Message = BytesMut;
    type Reply = Bytes;

    fn message_received(&mut self, ctx: &Context<Bytes>, mut body: BytesMut) {
        // The body is a piece split off the connection's input buffer, so
        // it is reversed in place.
        body.reverse();
        ctx.write(body.freeze());
    }
}

const USAGE: &str = "usage: reverse_server [ENDPOINT]   (ENDPOINT: an address \
                     (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/reverse.sock))";

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    if let Err(err) = parse_server_or_addr(&endpoint) {
        eprintln!("reverse_server: {err}\n{USAGE}");
        std::process::exit(2);
    }
    let reactor = Reactor::new()?;
    let port = reactor.server_from_string(&endpoint, |_peer| {
        Framed::new(RequestDecoder, ReplyEncoder, Reverse)
    })?;
    log::info!("listening on {}", port.host());
    reactor.run()
}
