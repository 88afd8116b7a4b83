//! The pyboot-netty client configuration, as a server: logging, idle-state
//! and write-timeout handlers around a length-field codec and a string
//! handler.
//!
//! ```text
//! cargo run -p twill-protocols --example codec_pipeline [ADDR]   # default 127.0.0.1:8007
//! ```
//!
//! A frame is a 4-byte header (ignored on input, zero on output), a 4-byte
//! big-endian body length, and the body:
//!
//! ```text
//! | 0x00000000 | 0x00000007 | "  hi!  " |   ->   | 0x00000000 | 0x00000003 | "hi!" |
//! ```
//!
//! Each message is decoded as UTF-8, trimmed, and sent back in the same
//! frame format. A length past the maximum frame length (64 KiB), a body
//! that is not UTF-8, a peer silent for 60 s, or a reply the peer does not
//! take within 10 s closes that connection only.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use twill::{Event, Protocol, Reactor};
use twill_protocols::codec::{
    Context, DecodeError, Decoder, EncodeError, Encoder, Framed, Handler,
    LengthFieldBasedFrameDecoder, StringDecoder,
};
use twill_protocols::handler::{
    IdleState, IdleStateEvent, IdleStateHandler, LoggingHandler, WriteTimeoutHandler,
};

/// The largest frame accepted, header included.
const MAX_FRAME: usize = 64 * 1024;
const READER_IDLE: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a reply as 4 zero bytes, the body's length and the body.
#[derive(Debug, Clone, Copy)]
struct ReplyEncoder;

impl Encoder<String> for ReplyEncoder {
    fn encode(&mut self, reply: String, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let length = u32::try_from(reply.len()).map_err(|_| EncodeError::TooLong {
            length: reply.len(),
            max: u32::MAX as usize,
        })?;
        dst.reserve(8 + reply.len());
        dst.put_u32(0);
        dst.put_u32(length);
        dst.extend_from_slice(reply.as_bytes());
        Ok(())
    }
}

/// Answers each message with itself, trimmed.
struct Trimmer;

impl Handler for Trimmer {
    type Message = String;
    type Reply = String;

    fn message_received(&mut self, ctx: &Context<String>, message: String) {
        log::info!("{}: {message:?}", ctx.peer());
        ctx.write(message);
    }

    fn event_received(&mut self, ctx: &Context<String>, event: Event) {
        let Some(idle) = event.downcast_ref::<IdleStateEvent>() else {
            return;
        };
        if idle.state() == IdleState::ReaderIdle {
            log::info!(
                "{} has been silent for {READER_IDLE:?}; closing",
                ctx.peer()
            );
            ctx.lose_connection();
        }
    }
}

fn build() -> impl Protocol {
    let frames = LengthFieldBasedFrameDecoder::builder(MAX_FRAME)
        .length_field_offset(4)
        .length_field_length(4)
        .length_adjustment(0)
        .initial_bytes_to_strip(8)
        .build()
        .expect("a valid length-field configuration");
    let decoder = frames
        .and_then(StringDecoder)
        .and_then(|text: String| Ok::<_, DecodeError>(text.trim().to_owned()));
    let framed = Framed::new(decoder, ReplyEncoder, Trimmer);
    let idle = IdleStateHandler::new(framed, READER_IDLE, Duration::ZERO, Duration::ZERO);
    LoggingHandler::new(WriteTimeoutHandler::new(idle, WRITE_TIMEOUT)).name("codec_pipeline")
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    let reactor = Reactor::new()?;
    let port = reactor.listen_tcp(addr.as_str(), |_peer| build())?;
    log::info!("listening on {}", port.host());
    reactor.run()
}
