//! Twisted's classic `LineReceiver` chat, on the codec layer, with join and
//! leave announcements.
//!
//! The same chat comes in two other forms, which behave alike (the tests in
//! `tests/examples.rs` run this specification against all three):
//! `chat_protocol`, a plain `Protocol` built on twill-protocols'
//! Twisted-style `basic::LineReceiver`, as Twisted writes it; and
//! `async_chat`, one `async` task per connection on `twill::stream`, as
//! asyncio's streams would have it.
//!
//! ```text
//! cargo run -p twill-protocols --example chat_server [ENDPOINT]   # default 127.0.0.1:8007
//! telnet 127.0.0.1 8007      # or: nc 127.0.0.1 8007
//! cargo run -p twill-protocols --example chat_server -- unix:/tmp/chat.sock
//! nc -U /tmp/chat.sock
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/chat.sock`), listened on
//! with [`Reactor::server_from_string`]. On a Unix socket the socket file
//! is removed when the server stops.
//!
//! The same chat over TLS, with a certificate and its key in PEM files
//! (README.md's "TLS" section makes a test pair with openssl):
//!
//! ```text
//! cargo run -p twill-protocols --example chat_server -- [ENDPOINT] --tls CERT KEY
//! openssl s_client -connect 127.0.0.1:8007 -servername localhost -quiet
//! cargo run --example tls_echo_client --features tls -- --ca CERT --server-name localhost 127.0.0.1:8007
//! ```
//!
//! `--tls` works on a Unix socket as on a TCP port; an endpoint string
//! `tls:8007:privateKey=KEY:certKey=CERT` is the same as
//! `tcp:8007 --tls CERT KEY`.
//!
//! TLS changes nothing in the chat: a [`TlsFactory`] (what
//! [`Reactor::listen_tls`] listens with) runs each
//! connection's `Framed` stack inside a `TlsProtocol`, which hands it the
//! decrypted bytes and encrypts what it writes, and the broadcast group's
//! lines are encrypted once per user. (Examples are built with the
//! dev-dependencies, and this crate's dev-dependency on twill turns its
//! `tls` feature on, so no feature needs asking for here.)
//!
//! What a client sees:
//!
//! 1. On connect: `What's your name?`
//! 2. Each line is a name proposal until one is accepted. A name another
//!    user holds gets `Name taken, please choose another.` (try again); any
//!    other gets `Welcome, NAME!`. Names are compared exactly, as in
//!    Twisted (case and spaces count; an empty line is a name too).
//! 3. Each line after that goes to every *other* user who has a name, as
//!    `<NAME> line`; it is not echoed back, and connections still choosing
//!    a name get nothing.
//! 4. Beyond Twisted, the others are told `* NAME has joined` when a user
//!    gets a name and `* NAME has left` when that user disconnects; the
//!    name is then free again.
//!
//! Lines are read up to `\n`, with or without a `\r` before it, so both
//! telnet (`\r\n`) and nc (`\n`) work; Twisted's `LineReceiver` accepts
//! only `\r\n`, which leaves an nc user's lines unfinished forever. Replies
//! end in `\r\n`, which telnet needs (a bare `\n` only moves a telnet
//! terminal down a row) and which nc shows the same as `\n`.
//!
//! A line longer than 16384 bytes (Twisted's `MAX_LENGTH`, not counting the
//! line ending) closes that connection as soon as the limit is passed, as
//! does a line that is not UTF-8 (the codec's `StringDecoder`); the other
//! users go on chatting and are told that user has left.
//!
//! Chat lines go out through a [`BroadcastGroup`] of the named users, each
//! line encoded once and shared by every recipient. While a user is behind
//! (over its high watermark, 64 KiB unsent) and catching up, the server
//! stops reading from the users who talk, so a user that reads misses
//! nothing. The group's policy is [`SlowClient::Disconnect`]: a user not on
//! course to catch up within 2 s (judged every 100 ms while the others
//! wait), still behind after 2 s, or that would have over 4 MiB unsent, is
//! disconnected, and the others are told that user has left. A chat should not skip lines silently, and a user that
//! cannot take them is gone in all but name. A client that never reads so
//! costs the server at most 4 MiB, and one that reads at full speed
//! receives every line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use twill::Address;

use twill::broadcast::{BroadcastGroup, SlowClient};
use twill::net::endpoint::{parse_server_or_addr, ServerDescription};
use twill::tls::config::{certs_from_pem_file, key_from_pem_file, server_config};
use twill::tls::TlsFactory;
use twill::{BytesMut, Factory, ListeningPort, Reactor, Reason};
use twill_protocols::codec::{
    Context, Decoder, Encoder, Framed, Handler, LineBasedFrameDecoder, LineEncoder, StringDecoder,
};

/// The longest line accepted, without its line ending (Twisted's
/// `LineReceiver.MAX_LENGTH`).
const MAX_LINE: usize = 16384;

/// The registered users: Twisted's `ChatFactory.users`, with the group
/// their lines go out through.
struct Users {
    names: HashMap<String, Context<String>>,
    room: BroadcastGroup,
}

impl Users {
    fn new() -> Users {
        Users {
            names: HashMap::new(),
            room: BroadcastGroup::new(SlowClient::Disconnect),
        }
    }

    /// Writes `line` to every registered user but `except`, encoded once.
    /// A connection that is closing has left already, as far as chatting
    /// goes (the group skips it); `connection_lost` will take its name.
    fn announce(&self, except: Option<&Context<String>>, line: String) {
        let mut encoded = BytesMut::new();
        if let Err(err) = LineEncoder::crlf().encode(line, &mut encoded) {
            log::error!("could not encode a chat line: {err}");
            return;
        }
        match except {
            // Holds the sender while someone is behind and catching up.
            Some(sender) => self.room.broadcast_from(sender.transport(), encoded),
            None => self.room.broadcast(encoded),
        };
    }
}

/// One connection: Twisted's `Chat` protocol.
struct Chat {
    users: Rc<RefCell<Users>>,
    peer: Address,
    /// `None` while choosing a name (Twisted's GETNAME state), then the
    /// registered name (CHAT).
    name: Option<String>,
}

impl Chat {
    fn handle_name(&mut self, ctx: &Context<String>, name: String) {
        let mut users = self.users.borrow_mut();
        if users.names.contains_key(&name) {
            ctx.write("Name taken, please choose another.".to_owned());
            return;
        }
        ctx.write(format!("Welcome, {name}!"));
        users.announce(None, format!("* {name} has joined"));
        log::info!(
            "{name} joined ({}, {} users)",
            self.peer,
            users.names.len() + 1
        );
        users.names.insert(name.clone(), ctx.clone());
        users.room.add(ctx.transport());
        self.name = Some(name);
    }

    fn handle_chat(&self, ctx: &Context<String>, name: &str, message: &str) {
        let users = self.users.borrow();
        users.announce(Some(ctx), format!("<{name}> {message}"));
    }
}

impl Handler for Chat {
    type Message = String;
    type Reply = String;

    fn connection_made(&mut self, ctx: &Context<String>) {
        log::info!("new connection from {}", self.peer);
        ctx.write("What's your name?".to_owned());
    }

    fn message_received(&mut self, ctx: &Context<String>, line: String) {
        match &self.name {
            None => self.handle_name(ctx, line),
            Some(name) => self.handle_chat(ctx, name, &line),
        }
    }

    fn connection_lost(&mut self, ctx: &Context<String>, reason: &Reason) {
        let Some(name) = self.name.take() else {
            log::info!("{} left without a name ({reason})", self.peer);
            return;
        };
        let mut users = self.users.borrow_mut();
        users.names.remove(&name);
        users.room.remove(ctx.transport());
        users.announce(None, format!("* {name} has left"));
        log::info!(
            "{name} left ({}: {reason}; {} users)",
            self.peer,
            users.names.len()
        );
    }
}

/// Every connection's protocol: Twisted's `ChatFactory.buildProtocol`.
fn chat_factory(users: Rc<RefCell<Users>>) -> impl Factory {
    move |peer| {
        Framed::new(
            LineBasedFrameDecoder::new(MAX_LINE)
                .fail_fast(true)
                .and_then(StringDecoder),
            LineEncoder::crlf(),
            Chat {
                users: users.clone(),
                peer,
                name: None,
            },
        )
    }
}

const USAGE: &str = "usage: chat_server [ENDPOINT] [--tls CERT KEY]   (ENDPOINT: an address \
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
                eprintln!("chat_server: {err}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(err) = serve(&args) {
        eprintln!("chat_server: {err}");
        std::process::exit(1);
    }
}

fn serve(args: &Args) -> std::io::Result<()> {
    let reactor = Reactor::new()?;
    let factory = chat_factory(Rc::new(RefCell::new(Users::new())));
    match &args.tls {
        None => {
            let port = reactor.server_from_string(&args.endpoint, factory)?;
            log::info!("listening on {}", port.host());
        }
        Some(files) => {
            let port = listen_tls(&reactor, &args.endpoint, files, factory)?;
            log::info!("listening on {} with TLS", port.host());
        }
    }
    reactor.run()
}
