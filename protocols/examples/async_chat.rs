//! The chat of `chat_server`, written as `async` code on [`twill::stream`]:
//! one task per connection that awaits its lines, as asyncio's streams
//! would have it.
//!
//! ```text
//! cargo run -p twill-protocols --example async_chat [ENDPOINT]   # default 127.0.0.1:8007
//! telnet 127.0.0.1 8007      # or: nc 127.0.0.1 8007
//! cargo run -p twill-protocols --example async_chat -- unix:/tmp/chat.sock
//! cargo run -p twill-protocols --example async_chat -- [ENDPOINT] --tls CERT KEY
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/chat.sock`), as in
//! `chat_server`.
//!
//! What a client sees, the limits, the TLS option and how a user that does
//! not read is dealt with are all `chat_server`'s (its module doc is the
//! specification); the tests in `tests/examples.rs` run the same
//! specification against both, and against `chat_protocol`, the same chat
//! as a Twisted `LineReceiver`.
//!
//! What this form shows:
//!
//! - A connection's whole life is one `async fn` (`chat`): the prompt, the
//!   loop until a free name comes, the loop that relays lines. What the
//!   callback forms keep in fields and a state enum is local variables
//!   here.
//! - The tasks share the room (the names, and the [`BroadcastGroup`] of
//!   the named users) in an `Rc<RefCell<_>>`: they all run on the
//!   reactor's thread, so nothing needs a lock, only no borrow may be held
//!   across an `.await`.
//! - Lines come from the connection's [`StreamReader`] through
//!   [`FramedRead`], with the very decoders `chat_server` uses (a line
//!   decoder that fails as soon as a line passes 16384 bytes, `\r\n` or
//!   `\n` alike, then UTF-8): `lines.next().await` is the next line, an
//!   error, or `None` at the end. An error ends the task, which closes that
//!   connection only. (`StreamReader::read_line` would do for a chat that
//!   needs no more than asyncio's `readline`: it counts a `\r` against the
//!   limit as a byte of the line.)
//! - Every way a connection ends comes out of the same `next()`: `None`
//!   at the user's EOF, the connection's error after a reset.
//! - The fan-out is bounded as in `chat_server` ([`SlowClient::Disconnect`]).
//!   A sender waits for the group to be writable again by awaiting a
//!   [`Deferred`] fired by [`BroadcastGroup::when_writable`]: the async
//!   form of `pause_while_behind`, which would pause the transport's
//!   reading, and reading is the reader's to pause. A task that awaits
//!   reads nothing, so its reader's buffer fills to the limit, and then
//!   the reader stops reading the socket: the sender is held all the same.
//! - Leaving is a guard (`Member`) whose `Drop` frees the name and tells
//!   the others, however the task ends: it returned, it panicked, or it
//!   was dropped with the reactor.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::rc::Rc;

use futures::StreamExt;
use twill::broadcast::{BroadcastGroup, SlowClient};
use twill::defer::Deferred;
use twill::net::endpoint::{parse_server_or_addr, ServerDescription};
use twill::stream::{self, StreamReader, StreamWriter};
use twill::tls::config::{certs_from_pem_file, key_from_pem_file, server_config};
use twill::tls::TlsFactory;
use twill::{Bytes, Factory, ListeningPort, Reactor, Transport};
use twill_protocols::codec::{
    AndThen, DecodeError, Decoder, FramedRead, LineBasedFrameDecoder, StringDecoder,
};

/// The longest line accepted, without its line ending (Twisted's
/// `LineReceiver.MAX_LENGTH`).
const MAX_LINE: usize = 16384;

/// `line` with the `\r\n` every reply ends in (telnet needs the `\r`).
fn crlf(line: &str) -> Bytes {
    Bytes::from(format!("{line}\r\n"))
}

/// What the connections' tasks share: the names in use, and the group of
/// the named users' connections that lines go out through.
struct Room {
    names: HashSet<String>,
    group: BroadcastGroup,
}

impl Room {
    /// Gives `name` to the user on `transport` and tells the others; false
    /// if another user has it.
    fn join(&mut self, name: &str, transport: &Transport) -> bool {
        if !self.names.insert(name.to_owned()) {
            return false;
        }
        // Before joining the group: the newcomer is not told of itself.
        self.group.broadcast(crlf(&format!("* {name} has joined")));
        self.group.add(transport);
        true
    }

    fn leave(&mut self, name: &str, transport: &Transport) {
        self.names.remove(name);
        self.group.remove(transport);
        self.group.broadcast(crlf(&format!("* {name} has left")));
    }

    /// Fires once no user is behind and catching up: at once, usually.
    fn writable(&self) -> Deferred<()> {
        let writable = Deferred::new();
        let resolver = writable.resolver();
        self.group.when_writable(move || resolver.callback(()));
        writable
    }
}

/// A user with a name, until dropped.
struct Member {
    room: Rc<RefCell<Room>>,
    name: String,
    transport: Transport,
    /// Why the user left, for the log.
    why: String,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut room = self.room.borrow_mut();
        room.leave(&self.name, &self.transport);
        log::info!(
            "{} left ({}: {}; {} users)",
            self.name,
            self.transport.peer(),
            self.why,
            room.names.len()
        );
    }
}

/// One connection's chat, from the prompt to the end; returning closes the
/// connection (once what was written is sent).
async fn chat(room: Rc<RefCell<Room>>, reader: StreamReader, writer: StreamWriter) {
    let peer = writer.peer();
    log::info!("new connection from {peer}");
    let decoder = LineBasedFrameDecoder::new(MAX_LINE)
        .fail_fast(true)
        .and_then(StringDecoder);
    let mut lines = FramedRead::new(reader, decoder);
    writer.write(crlf("What's your name?"));
    let mut member = loop {
        let name = match next_line(&mut lines).await {
            Ok(name) => name,
            Err(end) => {
                log::info!("{peer} left without a name ({end})");
                return;
            }
        };
        if room.borrow_mut().join(&name, writer.transport()) {
            writer.write(crlf(&format!("Welcome, {name}!")));
            let users = room.borrow().names.len();
            log::info!("{name} joined ({peer}, {users} users)");
            break Member {
                room: room.clone(),
                name,
                transport: writer.transport().clone(),
                why: "the server stopped".into(),
            };
        }
        writer.write(crlf("Name taken, please choose another."));
        // A user who asks again and again without reading the answers is
        // read no faster than it reads them. (Should the connection be
        // closing, the next read says how it ended.)
        let _ = writer.drain().await;
    };
    let end = loop {
        let line = match next_line(&mut lines).await {
            Ok(line) => line,
            Err(end) => break end,
        };
        let said = crlf(&format!("<{}> {line}", member.name));
        room.borrow()
            .group
            .broadcast_except(writer.transport(), said);
        // Holds this sender while someone is behind and catching up. The
        // borrow must end before the await: hence two statements.
        let writable = room.borrow().writable();
        let _ = writable.await;
    };
    member.why = end.to_string();
}

/// Why a user's chat ended.
enum End {
    /// The connection was closed, by the user or by the server stopping.
    Closed,
    /// A line the chat does not take (too long, not UTF-8), or the
    /// connection failed: reset, a TLS error, disconnected for falling
    /// behind.
    Failed(DecodeError),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Closed => f.write_str("connection closed"),
            End::Failed(err) => err.fmt(f),
        }
    }
}

/// A connection's lines, without their line endings, as `String`s.
type Lines = FramedRead<AndThen<LineBasedFrameDecoder, StringDecoder>>;

/// The next line, or why there is none.
async fn next_line(lines: &mut Lines) -> Result<String, End> {
    match lines.next().await {
        Some(Ok(line)) => Ok(line),
        Some(Err(err)) => Err(End::Failed(err)),
        None => Err(End::Closed),
    }
}

const USAGE: &str = "usage: async_chat [ENDPOINT] [--tls CERT KEY]   (ENDPOINT: an address \
                     (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/chat.sock))";

/// The command line: where to listen, and the certificate and key files
/// for TLS.
struct Args {
    endpoint: String,
    tls: Option<(String, String)>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut endpoint = None;
    let mut tls = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls" => match (args.next(), args.next()) {
                (Some(cert), Some(key)) => tls = Some((cert, key)),
                _ => return Err("--tls takes two files: CERT KEY".into()),
            },
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ if endpoint.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => endpoint = Some(arg),
        }
    }
    let endpoint = endpoint.unwrap_or_else(|| "127.0.0.1:8007".into());
    let description = parse_server_or_addr(&endpoint).map_err(|err| err.to_string())?;
    if tls.is_some() && matches!(description, ServerDescription::Tls { .. }) {
        return Err(format!(
            "{endpoint:?} runs TLS already: give --tls with a tcp: or unix: endpoint"
        ));
    }
    Ok(Args { endpoint, tls })
}

/// Listens with TLS on `endpoint`, a TCP port or a Unix socket alike,
/// presenting the certificate chain in the PEM file `cert` with the
/// private key in the PEM file `key`.
fn listen_tls(
    reactor: &Reactor,
    endpoint: &str,
    (cert, key): &(String, String),
    factory: impl Factory,
) -> std::io::Result<ListeningPort> {
    let in_file =
        |file: &str, err: std::io::Error| std::io::Error::new(err.kind(), format!("{file}: {err}"));
    let config = server_config(
        certs_from_pem_file(cert).map_err(|err| in_file(cert, err))?,
        key_from_pem_file(key).map_err(|err| in_file(key, err))?,
    )?;
    reactor.server_from_string(endpoint, TlsFactory::new(config.into(), factory))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("async_chat: {err}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(err) = serve(&args) {
        eprintln!("async_chat: {err}");
        std::process::exit(1);
    }
}

fn serve(args: &Args) -> std::io::Result<()> {
    let reactor = Reactor::new()?;
    let room = Rc::new(RefCell::new(Room {
        names: HashSet::new(),
        group: BroadcastGroup::new(SlowClient::Disconnect),
    }));
    let handler = move |reader, writer| chat(room.clone(), reader, writer);
    match &args.tls {
        None => {
            let port = reactor.server_from_string(&args.endpoint, stream::serve(handler))?;
            log::info!("listening on {}", port.host());
        }
        Some(files) => {
            // Any factory can be served over TLS, the streams' too.
            let port = listen_tls(&reactor, &args.endpoint, files, stream::serve(handler))?;
            log::info!("listening on {} with TLS", port.host());
        }
    }
    reactor.run()
}
