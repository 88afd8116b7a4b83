//! Echoes length-prefixed frames through the codec layer: a
//! `LengthFieldBasedFrameDecoder` takes each frame off the stream, the
//! handler writes the payload back, and a `LengthFieldPrepender` puts the
//! length in front again.
//!
//! ```text
//! +----------------+---------------------------+
//! | length: u32 BE | payload: `length` bytes   |
//! +----------------+---------------------------+
//! ```
//!
//! ```text
//! cargo run -p twill-protocols --example frame_echo_server [ADDR]   # default 127.0.0.1:8007
//! ```
//!
//! It is the codec-layer server of the benchmark suite (`benches/`), which
//! compares it with the plain `Protocol` echo.

use bytes::Bytes;
use twill::Reactor;
use twill_protocols::codec::{Context, Framed, Handler, LengthFieldPrepender};

/// The largest payload accepted; a longer frame is an error that closes
/// only its connection.
const MAX_FRAME: usize = 1 << 20;

struct Echo;

impl Handler for Echo {
    type Message = Bytes;
    type Reply = Bytes;

    fn message_received(&mut self, ctx: &Context<Bytes>, payload: Bytes) {
        ctx.write(payload);
    }
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    let prepender = LengthFieldPrepender::new(4).expect("4 is a valid field length");
    let decoder = prepender
        .matching_decoder(MAX_FRAME + 4)
        .expect("a valid length-field configuration");
    let reactor = Reactor::new()?;
    let port = reactor.listen_tcp(addr.as_str(), move |_peer| {
        Framed::new(decoder.clone(), prepender, Echo)
    })?;
    log::info!("listening on {}", port.host());
    reactor.run()
}
