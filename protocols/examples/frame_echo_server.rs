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
//! cargo run -p twill-protocols --example frame_echo_server [ENDPOINT]   # default 127.0.0.1:8007
//! cargo run -p twill-protocols --example frame_echo_server -- unix:/tmp/frame.sock
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/frame.sock`), listened on
//! with [`Reactor::server_from_string`].
//!
//! It is the codec-layer server of the benchmark suite (`benches/`), which
//! compares it with the plain `Protocol` echo.

use bytes::Bytes;
use twill::net::endpoint::parse_server_or_addr;
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

const USAGE: &str = "usage: frame_echo_server [ENDPOINT]   (ENDPOINT: an address \
                     (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/frame.sock))";

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    if let Err(err) = parse_server_or_addr(&endpoint) {
        eprintln!("frame_echo_server: {err}\n{USAGE}");
        std::process::exit(2);
    }
    let prepender = LengthFieldPrepender::new(4).expect("4 is a valid field length");
    let decoder = prepender
        .matching_decoder(MAX_FRAME + 4)
        .expect("a valid length-field configuration");
    let reactor = Reactor::new()?;
    let port = reactor.server_from_string(&endpoint, move |_peer| {
        Framed::new(decoder.clone(), prepender, Echo)
    })?;
    log::info!("listening on {}", port.host());
    reactor.run()
}
