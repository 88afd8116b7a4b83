//! The chat of `chat_server`, written as Twisted writes it: a plain
//! [`Protocol`](twill::Protocol) per connection, made from a
//! [`LineReceiver`] (Twisted's `servers/chat.py`, with join and leave
//! announcements).
//!
//! ```text
//! cargo run -p twill-protocols --example chat_protocol [ENDPOINT]   # default 127.0.0.1:8007
//! telnet 127.0.0.1 8007      # or: nc 127.0.0.1 8007
//! cargo run -p twill-protocols --example chat_protocol -- unix:/tmp/chat.sock
//! cargo run -p twill-protocols --example chat_protocol -- [ENDPOINT] --tls CERT KEY
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/chat.sock`), as in
//! `chat_server`.
//!
//! What a client sees, the limits, the TLS option and how a user that does
//! not read is dealt with are all `chat_server`'s (its module doc is the
//! specification); the tests in `tests/examples.rs` run the same
//! specification against both, and against `async_chat`, the same chat as
//! `async` tasks on `twill::stream`.
//!
//! What this form shows: Twisted's callbacks one for one.
//! `ChatFactory.users` is `Users`; `Chat.connectionMade`, `lineReceived`
//! (with its GETNAME and CHAT states) and `connectionLost` are the
//! [`LineReceiver`] methods of `Chat`; the factory is a closure. Where it
//! departs from Twisted's `LineReceiver` defaults, it is to accept nc's
//! bare `\n` as well as telnet's `\r\n`: the delimiter is `\n` and a `\r`
//! before it is stripped, which makes `\r` count towards `MAX_LENGTH` (see
//! `Chat::line_length_exceeded`).
//!
//! Lines go out through a [`BroadcastGroup`] with
//! [`SlowClient::Disconnect`], and
//! [`broadcast_from`](BroadcastGroup::broadcast_from) stops reading from a
//! user who talks while another is behind and catching up, as in
//! `chat_server`: a protocol may let the group pause and resume its
//! transport's reading, since it does not pause reading for reasons of its
//! own.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use twill::broadcast::{BroadcastGroup, SlowClient};
use twill::net::endpoint::{parse_server_or_addr, ServerDescription};
use twill::tls::config::{certs_from_pem_file, key_from_pem_file, server_config};
use twill::tls::TlsFactory;
use twill::{Bytes, Factory, ListeningPort, Reactor, Reason, Transport};
use twill_protocols::basic::{LineContext, LineReceiver, LineReceiverProtocol};

/// The longest line accepted, without its line ending (Twisted's
/// `LineReceiver.MAX_LENGTH`).
const MAX_LINE: usize = 16384;

/// `line` with the `\r\n` every reply ends in (telnet needs the `\r`).
fn crlf(line: &str) -> Bytes {
    Bytes::from(format!("{line}\r\n"))
}

/// The registered users: Twisted's `ChatFactory.users`, with the group
/// their lines go out through.
struct Users {
    names: HashSet<String>,
    room: BroadcastGroup,
}

/// One connection: Twisted's `Chat` protocol.
struct Chat {
    users: Rc<RefCell<Users>>,
    peer: twill::Address,
    /// Kept for `connection_lost`, which gets no context.
    transport: Option<Transport>,
    /// `None` while choosing a name (Twisted's GETNAME state), then the
    /// registered name (CHAT).
    name: Option<String>,
}

impl Chat {
    fn handle_name(&mut self, ctx: &LineContext, name: &str) {
        let mut users = self.users.borrow_mut();
        if users.names.contains(name) {
            ctx.write(crlf("Name taken, please choose another."));
            return;
        }
        ctx.write(crlf(&format!("Welcome, {name}!")));
        // Before joining the group: the newcomer is not told of itself.
        users.room.broadcast(crlf(&format!("* {name} has joined")));
        users.names.insert(name.to_owned());
        users.room.add(ctx.transport());
        log::info!("{name} joined ({}, {} users)", self.peer, users.names.len());
        self.name = Some(name.to_owned());
    }
}

impl LineReceiver for Chat {
    // Lines end at "\n"; `line_received` strips a "\r" before it.
    const DELIMITER: &'static [u8] = b"\n";
    const MAX_LENGTH: usize = MAX_LINE;

    fn connection_made(&mut self, ctx: &LineContext) {
        log::info!("new connection from {}", self.peer);
        self.transport = Some(ctx.transport().clone());
        ctx.write(crlf("What's your name?"));
    }

    fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
        // `line_length_exceeded` may have let one line in one byte over.
        ctx.set_max_length(MAX_LINE);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let line = match std::str::from_utf8(line) {
            Ok(line) => line,
            Err(err) => {
                log::warn!("closing the connection with {}: {err}", self.peer);
                ctx.fail(err);
                return;
            }
        };
        match &self.name {
            None => self.handle_name(ctx, line),
            Some(name) => {
                let said = crlf(&format!("<{name}> {line}"));
                // Holds the sender while someone is behind and catching up.
                self.users
                    .borrow()
                    .room
                    .broadcast_from(ctx.transport(), said);
            }
        }
    }

    /// A line past `MAX_LENGTH`, with everything buffered after it.
    ///
    /// With `\n` as the delimiter, a line's `\r` counts towards the limit,
    /// so the longest line sent with `\r\n` (16384 bytes, `\r`, `\n`), or
    /// its start up to the `\r`, lands here too: it is handed back with
    /// the limit one byte higher for it alone. Anything else closes the
    /// connection.
    fn line_length_exceeded(&mut self, ctx: &LineContext, data: Bytes) {
        let longest_with_crlf = data.get(MAX_LINE) == Some(&b'\r')
            && matches!(data.get(MAX_LINE + 1), None | Some(b'\n'));
        if longest_with_crlf && ctx.max_length() == MAX_LINE {
            ctx.set_max_length(MAX_LINE + 1);
            ctx.set_line_mode(data);
            return;
        }
        let why = format!("a line over {MAX_LINE} bytes");
        log::warn!("closing the connection with {}: {why}", self.peer);
        ctx.fail(why);
    }

    fn eof_received(&mut self, ctx: &LineContext) -> bool {
        // Twisted drops an unfinished last line; chat_server relays it, so
        // this one does too (nc sends one when its input does not end in a
        // newline).
        let unfinished = ctx.clear_line_buffer();
        if !unfinished.is_empty() {
            self.line_received(ctx, unfinished);
        }
        false
    }

    fn connection_lost(&mut self, reason: &Reason) {
        let Some(name) = self.name.take() else {
            log::info!("{} left without a name ({reason})", self.peer);
            return;
        };
        let mut users = self.users.borrow_mut();
        users.names.remove(&name);
        if let Some(transport) = &self.transport {
            users.room.remove(transport);
        }
        users.room.broadcast(crlf(&format!("* {name} has left")));
        log::info!(
            "{name} left ({}: {reason}; {} users)",
            self.peer,
            users.names.len()
        );
    }
}

/// Every connection's protocol: Twisted's `ChatFactory.buildProtocol`.
fn chat_factory() -> impl Factory {
    let users = Rc::new(RefCell::new(Users {
        names: HashSet::new(),
        room: BroadcastGroup::new(SlowClient::Disconnect),
    }));
    move |peer| {
        LineReceiverProtocol::new(Chat {
            users: users.clone(),
            peer,
            transport: None,
            name: None,
        })
    }
}

const USAGE: &str = "usage: chat_protocol [ENDPOINT] [--tls CERT KEY]   (ENDPOINT: an address \
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
                eprintln!("chat_protocol: {err}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(err) = serve(&args) {
        eprintln!("chat_protocol: {err}");
        std::process::exit(1);
    }
}

fn serve(args: &Args) -> std::io::Result<()> {
    let reactor = Reactor::new()?;
    match &args.tls {
        None => {
            let port = reactor.server_from_string(&args.endpoint, chat_factory())?;
            log::info!("listening on {}", port.host());
        }
        Some(files) => {
            let port = listen_tls(&reactor, &args.endpoint, files, chat_factory())?;
            log::info!("listening on {} with TLS", port.host());
        }
    }
    reactor.run()
}
