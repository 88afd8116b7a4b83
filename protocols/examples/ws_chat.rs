//! The line chat of `chat_server`, with a web page: users on a TCP port
//! (telnet, nc) and users in a browser (a WebSocket) talk in the same room.
//!
//! ```text
//! cargo run -p twill-protocols --features http,websocket --example ws_chat -- [ADDR] [--tcp ADDR]
//! nc 127.0.0.1 8007                    # the line chat (--tcp, default 127.0.0.1:8007)
//! xdg-open http://127.0.0.1:8080/      # the page (ADDR, default 127.0.0.1:8080)
//! python -m websockets ws://127.0.0.1:8080/ws
//! ```
//!
//! One reactor serves both ports. SIGINT or SIGTERM stops it; every
//! connection is closed then, and nobody is told of the others leaving.
//!
//! # The chat
//!
//! On the TCP port the chat is `chat_server`'s, to the byte: the prompt
//! `What's your name?`, then name proposals until one is free
//! (`Name taken, please choose another.` or `Welcome, NAME!`), then each
//! line goes to every *other* named user as `<NAME> line`, and the others
//! are told `* NAME has joined` and `* NAME has left`. Lines end in `\n`
//! (a `\r` before it is dropped) and replies in `\r\n`; a line over 16384
//! bytes, or one that is not UTF-8, closes that connection.
//!
//! # The page and the WebSocket
//!
//! `GET /` serves a page with no external resources (a log, an input box
//! and a Send button) whose script connects to `ws://HOST/ws`. Everything
//! else answers `404`.
//!
//! `GET /ws` upgrades to a WebSocket, where each *text message* is one
//! chat line, in both directions: the server sends the prompt, the
//! answers, the announcements and the others' lines as one text message
//! each, without a line ending; the user's first messages are name
//! proposals, the later ones chat lines. Names are shared: a name held on
//! either side is taken on both. The rules that keep a line a line:
//!
//! - A message over 16384 bytes closes the connection with code 1009, as
//!   a long line does on TCP (the WebSocket codec refuses it from the frame
//!   header, before buffering it).
//! - A message containing `\n` closes it with 1008: on TCP it would read
//!   as two lines, the second one forged.
//! - A binary message closes it with 1003; text that is not UTF-8 with
//!   1007 (the codec).
//!
//! The page takes query parameters, for scripted users (tests):
//! `?name=NAME` sends `NAME` once connected, `&say=LINE` then sends
//! `LINE`, and `&echo=MARKER` answers every message containing `MARKER`
//! (but not one containing `saw: `, so two such pages cannot loop) with a
//! line `saw: MESSAGE`. So a program that drives a browser can tell the
//! page received a line without reading the page. (`name` and `say` are
//! sent one after the other without waiting: if the name is taken, `LINE`
//! is the next name proposal, as it would be on TCP.)
//!
//! # Slow readers
//!
//! The room has two [`BroadcastGroup`]s: the TCP users', who are sent each
//! line encoded once as `line\r\n`, and the WebSocket users', who are sent
//! it encoded once as a server's (unmasked) text frame, the same bytes for
//! all of them. Both groups have `chat_server`'s policy,
//! [`SlowClient::Disconnect`] with its defaults: while a user is over its
//! high watermark (64 KiB unsent) and catching up, the server stops
//! reading from the user who talks, so a user that reads misses nothing;
//! a user not on course to catch up within 2 s, still behind after 2 s,
//! or that would have over 4 MiB unsent is disconnected (a WebSocket user
//! without a Close frame: its connection is aborted), and the others are
//! told it left. So a user that never reads costs the server at most
//! 4 MiB, whichever side it is on, and a talker is held back while anyone
//! on either side is catching up.
//!
//! The frames go to the WebSocket users' transports around their
//! [`WebSocket`] handles, so the room takes a user out of its group as
//! soon as that user's close handshake begins: no message may follow a
//! Close frame.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::{Rc, Weak};

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use twill::broadcast::{BroadcastGroup, SlowClient};
use twill::{Address, Bytes, BytesMut, Factory, Reactor, Reason, Transport};
use twill_protocols::codec::{
    Context, Decoder, Encoder, Framed, Handler, LineBasedFrameDecoder, LineEncoder, StringDecoder,
};
use twill_protocols::http::{Body, HttpServer};
use twill_protocols::websocket::{
    close_code, Message, MessageCodec, Role, WebSocket, WebSocketAcceptor, WebSocketConfig,
    WebSocketHandler,
};

/// The longest line accepted, without its line ending (Twisted's
/// `LineReceiver.MAX_LENGTH`); also the longest WebSocket message.
const MAX_LINE: usize = 16384;

/// The page at `/`.
const PAGE: &str = include_str!("ws_chat.html");

const PROMPT: &str = "What's your name?";
const TAKEN: &str = "Name taken, please choose another.";

/// Who is in the room, and the two ways of writing to them.
struct Room {
    names: RefCell<HashSet<String>>,
    /// The named TCP users.
    lines: BroadcastGroup,
    /// The named WebSocket users.
    frames: BroadcastGroup,
    /// The handles of the WebSocket users in `frames`, to see whose close
    /// handshake has begun.
    sockets: RefCell<Vec<WebSocket>>,
    /// The talkers whose reading is paused until both groups keep up.
    held: RefCell<Vec<Transport>>,
}

/// How a user is written to.
#[derive(Clone, Copy)]
enum Member<'a> {
    Tcp(&'a Context<String>),
    Ws(&'a WebSocket),
}

impl Member<'_> {
    fn transport(&self) -> &Transport {
        match self {
            Member::Tcp(ctx) => ctx.transport(),
            Member::Ws(ws) => ws.transport(),
        }
    }

    /// Writes `line` to this user alone.
    fn tell(&self, line: &str) {
        match self {
            Member::Tcp(ctx) => ctx.write(line.to_owned()),
            // Refused only once the connection is closing: nothing to do.
            Member::Ws(ws) => {
                let _ = ws.send_text(line);
            }
        }
    }
}

impl Room {
    fn new() -> Rc<Room> {
        Rc::new(Room {
            names: RefCell::new(HashSet::new()),
            lines: BroadcastGroup::new(SlowClient::Disconnect),
            frames: BroadcastGroup::new(SlowClient::Disconnect),
            sockets: RefCell::new(Vec::new()),
            held: RefCell::new(Vec::new()),
        })
    }

    /// Takes `name` for `member` if it is free, and tells it either way.
    /// Returns whether it was free.
    fn claim(self: &Rc<Self>, member: Member<'_>, name: &str) -> bool {
        if !self.names.borrow_mut().insert(name.to_owned()) {
            member.tell(TAKEN);
            return false;
        }
        member.tell(&format!("Welcome, {name}!"));
        self.say(None, format!("* {name} has joined"));
        match member {
            Member::Tcp(ctx) => {
                self.lines.add(ctx.transport());
            }
            Member::Ws(ws) => {
                self.frames.add(ws.transport());
                self.sockets.borrow_mut().push(ws.clone());
            }
        }
        log::info!(
            "{name} joined ({}, {} users)",
            member.transport().peer(),
            self.names.borrow().len()
        );
        true
    }

    /// `name`, of `member`, has left: frees the name and tells the others.
    fn leave(self: &Rc<Self>, member: Member<'_>, name: &str) {
        self.names.borrow_mut().remove(name);
        match member {
            Member::Tcp(ctx) => {
                self.lines.remove(ctx.transport());
            }
            Member::Ws(ws) => {
                self.frames.remove(ws.transport());
                self.sockets.borrow_mut().retain(|s| !s.same_connection(ws));
            }
        }
        self.say(None, format!("* {name} has left"));
    }

    /// Writes `line` to every named user but `from`, each group's encoding
    /// made once; then holds `from` while someone is behind.
    fn say(self: &Rc<Self>, from: Option<&Transport>, line: String) {
        let Some((crlf, frame)) = encode(line) else {
            return;
        };
        self.drop_closing_sockets();
        match from {
            Some(sender) => {
                self.lines.broadcast_except(sender, crlf);
                self.frames.broadcast_except(sender, frame);
                self.hold(sender);
            }
            None => {
                self.lines.broadcast(crlf);
                self.frames.broadcast(frame);
            }
        }
    }

    /// Takes the WebSocket users whose close handshake has begun out of
    /// their group: they have left as far as chatting goes, and a frame
    /// written after their Close would break the protocol. `on_close`
    /// will free their names.
    fn drop_closing_sockets(&self) {
        self.sockets.borrow_mut().retain(|ws| {
            let open = ws.is_open();
            if !open {
                self.frames.remove(ws.transport());
            }
            open
        });
    }

    /// [`BroadcastGroup::pause_while_behind`] over both groups: pauses
    /// reading from `sender` until neither has a user behind within its
    /// grace time. (Each group's own hold would resume it as soon as that
    /// group alone keeps up.)
    fn hold(self: &Rc<Self>, sender: &Transport) {
        if self.lines.is_writable() && self.frames.is_writable() {
            return;
        }
        {
            let mut held = self.held.borrow_mut();
            if held.iter().any(|h| h.same_connection(sender)) {
                return;
            }
            held.push(sender.clone());
        }
        sender.pause_reading();
        let waiting = Rc::new(Cell::new(2));
        for group in [&self.lines, &self.frames] {
            let (room, sender, waiting) = (Rc::downgrade(self), sender.clone(), waiting.clone());
            group.when_writable(move || {
                waiting.set(waiting.get() - 1);
                if waiting.get() == 0 {
                    release(&room, &sender);
                }
            });
        }
    }
}

/// Resumes reading from `sender`, held by `room`.
fn release(room: &Weak<Room>, sender: &Transport) {
    if let Some(room) = room.upgrade() {
        room.held
            .borrow_mut()
            .retain(|h| !h.same_connection(sender));
    }
    sender.resume_reading();
}

/// `line` as the TCP users read it, and as a WebSocket text frame.
fn encode(line: String) -> Option<(Bytes, Bytes)> {
    let mut frame = BytesMut::new();
    if let Err(err) =
        MessageCodec::new(Role::Server).encode(Message::Text(line.clone()), &mut frame)
    {
        log::error!("could not encode a chat line as a frame: {err}");
        return None;
    }
    let mut crlf = BytesMut::new();
    if let Err(err) = LineEncoder::crlf().encode(line, &mut crlf) {
        log::error!("could not encode a chat line: {err}");
        return None;
    }
    Some((crlf.freeze(), frame.freeze()))
}

// ---------------------------------------------------------------------------
// TCP users
// ---------------------------------------------------------------------------

/// A TCP user: `chat_server`'s `Chat`, in the shared room.
struct TcpUser {
    room: Rc<Room>,
    peer: Address,
    /// `None` while choosing a name, then the name.
    name: Option<String>,
}

impl Handler for TcpUser {
    type Message = String;
    type Reply = String;

    fn connection_made(&mut self, ctx: &Context<String>) {
        log::info!("new connection from {}", self.peer);
        ctx.write(PROMPT.to_owned());
    }

    fn message_received(&mut self, ctx: &Context<String>, line: String) {
        match &self.name {
            None => {
                if self.room.claim(Member::Tcp(ctx), &line) {
                    self.name = Some(line);
                }
            }
            Some(name) => self
                .room
                .say(Some(ctx.transport()), format!("<{name}> {line}")),
        }
    }

    fn connection_lost(&mut self, ctx: &Context<String>, reason: &Reason) {
        match self.name.take() {
            Some(name) => {
                self.room.leave(Member::Tcp(ctx), &name);
                log::info!("{name} left ({}: {reason})", self.peer);
            }
            None => log::info!("{} left without a name ({reason})", self.peer),
        }
    }
}

fn tcp_factory(room: Rc<Room>) -> impl Factory {
    move |peer| {
        Framed::new(
            LineBasedFrameDecoder::new(MAX_LINE)
                .fail_fast(true)
                .and_then(StringDecoder),
            LineEncoder::crlf(),
            TcpUser {
                room: room.clone(),
                peer,
                name: None,
            },
        )
    }
}

// ---------------------------------------------------------------------------
// WebSocket users
// ---------------------------------------------------------------------------

/// A WebSocket user: one chat line per text message.
struct WsUser {
    room: Rc<Room>,
    /// Set in `on_open`, dropped in `on_close`.
    ws: Option<WebSocket>,
    name: Option<String>,
}

impl WebSocketHandler for WsUser {
    fn on_open(&mut self, ws: &WebSocket) {
        log::info!("new WebSocket from {}", ws.peer());
        self.ws = Some(ws.clone());
        let _ = ws.send_text(PROMPT);
    }

    fn on_message(&mut self, ws: &WebSocket, message: Message) {
        let line = match message {
            Message::Text(line) if line.contains('\n') => {
                let _ = ws.close(close_code::POLICY_VIOLATION, "one line per message");
                return;
            }
            Message::Text(line) => line,
            _ => {
                let _ = ws.close(close_code::UNSUPPORTED_DATA, "text messages only");
                return;
            }
        };
        match &self.name {
            None => {
                if self.room.claim(Member::Ws(ws), &line) {
                    self.name = Some(line);
                }
            }
            Some(name) => self
                .room
                .say(Some(ws.transport()), format!("<{name}> {line}")),
        }
    }

    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        let Some(ws) = self.ws.take() else {
            return;
        };
        let code = code.map_or("no code".to_owned(), |code| code.to_string());
        match self.name.take() {
            Some(name) => {
                self.room.leave(Member::Ws(&ws), &name);
                log::info!("{name} left ({}: {code}, {reason})", ws.peer());
            }
            None => log::info!("{} left without a name ({code}, {reason})", ws.peer()),
        }
    }
}

/// The HTTP side: the page, the WebSocket upgrade, and 404.
fn http_server(room: Rc<Room>) -> impl Factory {
    let config = WebSocketConfig::builder()
        .max_frame_payload(MAX_LINE)
        .max_message_size(MAX_LINE)
        .build()
        .expect("limits within the codec's range");
    let acceptor = WebSocketAcceptor::new().config(config);
    HttpServer::new(move |request: Request<Bytes>| {
        let response = match (request.method(), request.uri().path()) {
            (&Method::GET | &Method::HEAD, "/") => Response::builder()
                .header(CONTENT_TYPE, "text/html; charset=utf-8")
                .header(CACHE_CONTROL, "no-store")
                .body(Body::from(PAGE))
                .expect("a valid response"),
            (_, "/ws") => acceptor.accept(
                &request,
                WsUser {
                    room: room.clone(),
                    ws: None,
                    name: None,
                },
            ),
            _ => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from("not found\n"))
                .expect("a valid response"),
        };
        twill::defer::succeed(response)
    })
}

const USAGE: &str = "usage: ws_chat [ADDR] [--tcp ADDR]   (HTTP and WebSocket on ADDR, \
                     default 127.0.0.1:8080; the line chat on --tcp, default 127.0.0.1:8007)";

/// Where to listen: HTTP, then TCP.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(String, String), String> {
    let mut http = None;
    let mut tcp = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tcp" => tcp = Some(args.next().ok_or("--tcp takes an address")?),
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ if http.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => http = Some(arg),
        }
    }
    Ok((
        http.unwrap_or_else(|| "127.0.0.1:8080".into()),
        tcp.unwrap_or_else(|| "127.0.0.1:8007".into()),
    ))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (http, tcp) = match parse_args(std::env::args().skip(1)) {
        Ok(addrs) => addrs,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("ws_chat: {err}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(err) = serve(&http, &tcp) {
        eprintln!("ws_chat: {err}");
        std::process::exit(1);
    }
}

fn serve(http: &str, tcp: &str) -> std::io::Result<()> {
    let reactor = Reactor::new()?;
    let room = Room::new();
    let tcp_port = reactor.listen_tcp(tcp, tcp_factory(room.clone()))?;
    let http_port = reactor.listen_tcp(http, http_server(room))?;
    log::info!(
        "listening on {} (line chat) and http://{}/ (page, WebSocket at /ws)",
        tcp_port.host(),
        http_port.host()
    );
    reactor.run()
}
