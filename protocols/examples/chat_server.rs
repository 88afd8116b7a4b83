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
//! cargo run -p twill-protocols --example chat_server -- 127.0.0.1:8007 --threads 4 [--placement least|round-robin|reuse-port]
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
//!
//! # Several threads
//!
//! With `--threads N`, a [`ReactorGroup`] of N worker reactors serves the
//! port, one thread each; the main thread accepts and hands each
//! connection to a worker (`--placement least`, the default: the worker
//! with the fewest connections; `round-robin`: in turn), or every worker
//! listens itself with SO_REUSEPORT (`reuse-port`). It needs a TCP
//! endpoint (a Unix socket is a usage error); `--tls CERT KEY` and `tls:`
//! endpoint strings work as above, each worker running its own
//! [`TlsFactory`]. The chat is the same, group-wide.
//!
//! The threads share no protocol and take no lock around one: they talk by
//! message, each through an [`Inbox`] on its thread.
//!
//! - The names belong to an inbox on the main thread. A connection's name
//!   proposal is a claim sent there; the answer comes back through the
//!   worker's inbox, and until it does the connection reads nothing more
//!   (its codec's automatic reading is off), so the lines sent right after
//!   a name wait, in order, for the answer. A user who leaves gives the
//!   name back there, and the names tell every worker `* NAME has left`:
//!   in each worker's inbox the leave comes before any later grant of that
//!   name.
//! - Each worker has its own group of named users, as above. A line, or a
//!   join, goes to the users of its own worker and, encoded once, to each
//!   other worker's inbox, whose handler writes it to that worker's users.
//!   So [`SlowClient::Disconnect`] still applies to each user on its own
//!   worker, and a line relayed from another worker never waits for one.
//! - When the group stops (SIGINT, SIGTERM), nobody is told of the others
//!   leaving, as on one reactor, where all connections close at once.
//!
//! Every inbox holds at most 1024 messages not yet handled. A line for a worker whose inbox is full (a worker that far
//! behind the others) is dropped for that worker's users, counted, and
//! logged once at the start of each run of refusals and once, with the
//! count, when the worker takes lines again. A claim, its answer and a
//! giving back of a name are not dropped: they are sent again every 10 ms
//! until the inbox takes them, and there is at most one of each per
//! connection. So the relay holds at most 1024 lines per worker, each
//! at most 32 KiB (a name and a line of 16 KiB each), and a user costs at
//! most 4 MiB, as above, whatever the others send.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use twill::Address;

use twill::broadcast::{BroadcastGroup, SlowClient};
use twill::group::{worker_index, Inbox, InboxSender, Placement, ReactorGroup, SendError};
use twill::net::endpoint::{parse_server_or_addr, ServerDescription};
use twill::tls::config::{certs_from_pem_file, key_from_pem_file, server_config};
use twill::tls::TlsFactory;
use twill::{Bytes, BytesMut, Factory, ListeningPort, Phase, Reactor, Reason, SystemEvent};
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

// ---------------------------------------------------------------------------
// With --threads: the same chat on a group of worker reactors
// ---------------------------------------------------------------------------

/// How many messages may wait for one worker, or for the names.
const INBOX_CAPACITY: usize = 1024;

/// How long a message that must arrive (a claim, its answer, a release)
/// waits before it is sent again to a full inbox.
const RETRY: Duration = Duration::from_millis(10);

/// To the names, on the main thread.
enum ToNames {
    /// Connection `conn` of the worker `reply` reaches asks for `name`.
    Claim {
        name: String,
        conn: u64,
        reply: InboxSender<ToWorker>,
    },
    /// A user who held `name` has left.
    Release { name: String },
}

/// To a worker.
enum ToWorker {
    /// Whether connection `conn` got the `name` it claimed.
    Answer {
        conn: u64,
        name: String,
        granted: bool,
    },
    /// A chat line or an announcement from another worker, encoded, for
    /// every named user here.
    Line(Bytes),
}

/// Sends `message`, again every [`RETRY`] while the inbox is full: for
/// the messages that must not be lost. Each waiting connection has at most
/// one claim out and each user one release, so what waits so is bounded by
/// the connections.
fn send_surely<T: Send + 'static>(to: InboxSender<T>, message: T) {
    if let Err(SendError::Full(message)) = to.send(message) {
        twill::call_later(RETRY, move || send_surely(to, message));
    }
    // Closed: the group is stopping, and nobody waits for the answer.
}

/// Encodes `line` as the users read it.
fn encode_line(line: String) -> Option<Bytes> {
    let mut encoded = BytesMut::new();
    match LineEncoder::crlf().encode(line, &mut encoded) {
        Ok(()) => Some(encoded.freeze()),
        Err(err) => {
            log::error!("could not encode a chat line: {err}");
            None
        }
    }
}

/// The names held on every worker: owned by an inbox on the main thread,
/// which answers each claim to the claiming worker's inbox, and tells
/// every worker of a user's leaving once it has taken the name back.
/// Going through here orders the leave before any grant of the name
/// again, in every worker's inbox.
fn names_inbox(workers: Workers, stopping: Arc<AtomicBool>) -> Inbox<ToNames> {
    let mut held = HashSet::new();
    let fanout = Fanout::new("the names".into(), workers);
    Inbox::new(INBOX_CAPACITY, move |message| match message {
        ToNames::Claim { name, conn, reply } => {
            let granted = held.insert(name.clone());
            send_surely(
                reply,
                ToWorker::Answer {
                    conn,
                    name,
                    granted,
                },
            );
        }
        ToNames::Release { name } => {
            held.remove(&name);
            // At a stop the users all go at once, as on one reactor.
            if !stopping.load(Ordering::Acquire) {
                if let Some(line) = encode_line(format!("* {name} has left")) {
                    fanout.send(&line, None);
                }
            }
        }
    })
}

/// Each worker's inbox sender, set by that worker as it builds its
/// factory.
type Workers = Arc<[OnceLock<InboxSender<ToWorker>>]>;

/// Sends lines to the workers' inboxes, dropping a line for a worker
/// whose inbox is full, with a count and a log of each run of refusals.
struct Fanout {
    from: String,
    workers: Workers,
    /// Lines dropped for each worker since its inbox last took one:
    /// nonzero while a run of refusals lasts.
    refused_run: Vec<Cell<u64>>,
}

impl Fanout {
    fn new(from: String, workers: Workers) -> Fanout {
        Fanout {
            from,
            refused_run: (0..workers.len()).map(|_| Cell::new(0)).collect(),
            workers,
        }
    }

    /// Sends `line` to every worker but `except`.
    fn send(&self, line: &Bytes, except: Option<usize>) {
        for (index, slot) in self.workers.iter().enumerate() {
            if Some(index) == except {
                continue;
            }
            // An empty slot is a worker not started yet, with no user.
            let Some(inbox) = slot.get() else { continue };
            let run = &self.refused_run[index];
            match inbox.send(ToWorker::Line(line.clone())) {
                Ok(()) if run.get() > 0 => log::warn!(
                    "worker {index} takes lines again; {} from {} were dropped for its users",
                    run.replace(0),
                    self.from
                ),
                Ok(()) => {}
                Err(SendError::Full(_)) => {
                    if run.get() == 0 {
                        log::warn!(
                            "worker {index} is {INBOX_CAPACITY} messages behind; dropping \
                             lines for its users until it catches up"
                        );
                    }
                    run.set(run.get() + 1);
                }
                // The group is stopping.
                Err(SendError::Closed(_)) => {}
            }
        }
    }
}

/// What the workers share, made on the main thread before the group runs.
#[derive(Clone)]
struct Shared {
    names: InboxSender<ToNames>,
    workers: Workers,
}

/// A connection waiting for the answer to its claim, reading nothing
/// meanwhile.
struct Waiting {
    ctx: Context<String>,
    name: Rc<RefCell<Option<String>>>,
}

/// One worker's chat: its named users, its inbox, and its way to the
/// other workers and to the names.
struct Worker {
    me: usize,
    shared: Shared,
    /// The named users of this worker.
    room: BroadcastGroup,
    waiting: RefCell<HashMap<u64, Waiting>>,
    next_conn: Cell<u64>,
    fanout: Fanout,
    /// Kept for as long as this worker's users may be written to.
    inbox: RefCell<Option<Inbox<ToWorker>>>,
}

impl Worker {
    /// This worker's chat, with its inbox made and its sender published.
    fn start(shared: Shared) -> Rc<Worker> {
        let me = worker_index().expect("the workers build their factories");
        let worker = Rc::new(Worker {
            me,
            fanout: Fanout::new(format!("worker {me}"), shared.workers.clone()),
            shared,
            room: BroadcastGroup::new(SlowClient::Disconnect),
            waiting: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            inbox: RefCell::new(None),
        });
        // Weak: the inbox belongs to the worker, not the other way round.
        let weak = Rc::downgrade(&worker);
        let inbox = Inbox::new(INBOX_CAPACITY, move |message| {
            if let Some(worker) = weak.upgrade() {
                worker.receive(message);
            }
        });
        let _ = worker.shared.workers[me].set(inbox.sender());
        *worker.inbox.borrow_mut() = Some(inbox);
        worker
    }

    /// Handles a message from another thread, on this worker's thread.
    fn receive(&self, message: ToWorker) {
        match message {
            ToWorker::Line(line) => {
                self.room.broadcast(line);
            }
            ToWorker::Answer {
                conn,
                name,
                granted,
            } => self.answered(conn, name, granted),
        }
    }

    /// The names answered connection `conn`'s claim.
    fn answered(&self, conn: u64, name: String, granted: bool) {
        let waiting = self.waiting.borrow_mut().remove(&conn);
        let Some(Waiting { ctx, name: slot }) = waiting else {
            // It left while it waited.
            if granted {
                self.release(name);
            }
            return;
        };
        if granted {
            ctx.write(format!("Welcome, {name}!"));
            self.announce(None, format!("* {name} has joined"));
            self.room.add(ctx.transport());
            log::info!("{name} joined ({}, worker {})", ctx.peer(), self.me);
            *slot.borrow_mut() = Some(name);
        } else {
            ctx.write("Name taken, please choose another.".to_owned());
        }
        // What the user sent after the name, read now.
        ctx.set_auto_read(true);
    }

    /// Asks the names for `name`, for the connection of `ctx`, whose
    /// name goes to `slot` if granted.
    fn claim(&self, ctx: &Context<String>, slot: &Rc<RefCell<Option<String>>>, name: String) {
        // Nothing more is read until the answer comes, so the lines after
        // the name are neither lost nor taken for another name.
        ctx.set_auto_read(false);
        let conn = self.next_conn.get();
        self.next_conn.set(conn + 1);
        self.waiting.borrow_mut().insert(
            conn,
            Waiting {
                ctx: ctx.clone(),
                name: slot.clone(),
            },
        );
        let reply = self.shared.workers[self.me]
            .get()
            .expect("published as the worker started")
            .clone();
        send_surely(
            self.shared.names.clone(),
            ToNames::Claim { name, conn, reply },
        );
    }

    /// Gives `name` back to the names, which tell everyone its user left.
    fn release(&self, name: String) {
        send_surely(self.shared.names.clone(), ToNames::Release { name });
    }

    /// Writes `line` to every named user on every worker but `except`,
    /// encoded once.
    fn announce(&self, except: Option<&Context<String>>, line: String) {
        let Some(encoded) = encode_line(line) else {
            return;
        };
        self.fanout.send(&encoded, Some(self.me));
        match except {
            Some(sender) => self.room.broadcast_from(sender.transport(), encoded),
            None => self.room.broadcast(encoded),
        };
    }
}

/// One connection on a worker: [`Chat`], with the names held by the main
/// thread.
struct GroupChat {
    worker: Rc<Worker>,
    peer: Address,
    /// Its registered name, set when the names grant it.
    name: Rc<RefCell<Option<String>>>,
}

impl Handler for GroupChat {
    type Message = String;
    type Reply = String;

    fn connection_made(&mut self, ctx: &Context<String>) {
        log::info!(
            "new connection from {} on worker {}",
            self.peer,
            self.worker.me
        );
        ctx.write("What's your name?".to_owned());
    }

    fn message_received(&mut self, ctx: &Context<String>, line: String) {
        let name = self.name.borrow().clone();
        match name {
            None => self.worker.claim(ctx, &self.name, line),
            Some(name) => self.worker.announce(Some(ctx), format!("<{name}> {line}")),
        }
    }

    fn connection_lost(&mut self, ctx: &Context<String>, reason: &Reason) {
        self.worker
            .waiting
            .borrow_mut()
            .retain(|_, waiting| !waiting.ctx.same_connection(ctx));
        let Some(name) = self.name.borrow_mut().take() else {
            log::info!("{} left without a name ({reason})", self.peer);
            return;
        };
        self.worker.room.remove(ctx.transport());
        // The names tell everyone, this worker's users included.
        self.worker.release(name.clone());
        log::info!("{name} left ({}: {reason})", self.peer);
    }
}

/// A worker's factory: [`chat_factory`] for [`GroupChat`].
fn group_chat_factory(shared: Shared) -> impl Factory {
    let worker = Worker::start(shared);
    move |peer| {
        Framed::new(
            LineBasedFrameDecoder::new(MAX_LINE)
                .fail_fast(true)
                .and_then(StringDecoder),
            LineEncoder::crlf(),
            GroupChat {
                worker: worker.clone(),
                peer,
                name: Rc::new(RefCell::new(None)),
            },
        )
    }
}

const USAGE: &str = "usage: chat_server [ENDPOINT] [--tls CERT KEY] \
                     [--threads N [--placement least|round-robin|reuse-port]]   \
                     (ENDPOINT: an address (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/chat.sock); --threads needs a \
                     TCP (or tls:) endpoint)";

/// The command line: where to listen, the certificate and key files for
/// TLS, and the workers, if any.
struct Args {
    endpoint: String,
    tls: Option<(String, String)>,
    threads: Option<usize>,
    placement: Placement,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut endpoint = None;
    let mut tls = None;
    let mut threads = None;
    let mut placement = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls" => match (args.next(), args.next()) {
                (Some(cert), Some(key)) => tls = Some((cert, key)),
                _ => return Err("--tls takes two files: CERT KEY".into()),
            },
            "--threads" => {
                let n = args.next().ok_or("--threads takes a number")?;
                match n.parse::<usize>() {
                    Ok(n) if n > 0 => threads = Some(n),
                    _ => return Err(format!("--threads {n:?}: not a number of threads")),
                }
            }
            "--placement" => {
                let name = args
                    .next()
                    .ok_or("--placement takes least, round-robin or reuse-port")?;
                placement = Some(name.parse::<Placement>().map_err(|err| err.to_string())?);
            }
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
    if placement.is_some() && threads.is_none() {
        return Err("--placement goes with --threads".into());
    }
    if threads.is_some() && matches!(description, ServerDescription::Unix { .. }) {
        return Err(format!(
            "--threads shares a TCP port among the workers, not {endpoint:?}"
        ));
    }
    Ok(Args {
        endpoint,
        tls,
        threads,
        placement: placement.unwrap_or_default(),
    })
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
    let config = tls_config(cert, key)?;
    reactor.server_from_string(endpoint, TlsFactory::new(config.into(), factory))
}

/// The server's TLS configuration: the certificate chain in the PEM file
/// `cert`, with the private key in the PEM file `key`.
fn tls_config(cert: &str, key: &str) -> std::io::Result<twill::tls::rustls::ServerConfig> {
    let in_file =
        |file: &str, err: std::io::Error| std::io::Error::new(err.kind(), format!("{file}: {err}"));
    server_config(
        certs_from_pem_file(cert).map_err(|err| in_file(cert, err))?,
        key_from_pem_file(key).map_err(|err| in_file(key, err))?,
    )
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
    let served = match args.threads {
        Some(threads) => serve_threads(&args, threads),
        None => serve(&args),
    };
    if let Err(err) = served {
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

/// A group of `threads` workers, each with its users, relaying to each
/// other through their inboxes; the names are held on this thread.
fn serve_threads(args: &Args, threads: usize) -> std::io::Result<()> {
    let description = parse_server_or_addr(&args.endpoint).map_err(std::io::Error::from)?;
    let (addr, tls) = match description {
        ServerDescription::Tcp {
            interface, port, ..
        } => (SocketAddr::new(interface, port), args.tls.clone()),
        ServerDescription::Tls {
            interface,
            port,
            private_key,
            cert_key,
            ..
        } => (
            SocketAddr::new(interface, port),
            Some((
                cert_key.display().to_string(),
                private_key.display().to_string(),
            )),
        ),
        ServerDescription::Unix { .. } => unreachable!("refused by parse_args"),
    };
    let group = ReactorGroup::new(threads)?;
    let workers: Workers = (0..threads).map(|_| OnceLock::new()).collect();
    // Set while every connection is still open, before the workers stop.
    let stopping = Arc::new(AtomicBool::new(false));
    let stop = stopping.clone();
    group.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        stop.store(true, Ordering::Release);
    });
    // Made here, on the boss: the names live on this thread.
    let names = names_inbox(workers.clone(), stopping);
    let shared = Shared {
        names: names.sender(),
        workers,
    };
    let placement = args.placement;
    let port = match tls {
        None => {
            group.listen_tcp_with(addr, placement, move || group_chat_factory(shared.clone()))?
        }
        Some((cert, key)) => {
            let config = Arc::new(tls_config(&cert, &key)?);
            group.listen_tcp_with(addr, placement, move || {
                TlsFactory::new(config.clone().into(), group_chat_factory(shared.clone()))
            })?
        }
    };
    let with_tls = if args.tls.is_some() || port_is_tls(&args.endpoint) {
        " with TLS"
    } else {
        ""
    };
    log::info!(
        "listening on {}{with_tls} on {threads} worker threads ({placement:?})",
        port.host()
    );
    let ran = group.run();
    drop(names);
    ran
}

/// Whether `endpoint` is a `tls:` endpoint string.
fn port_is_tls(endpoint: &str) -> bool {
    matches!(
        parse_server_or_addr(endpoint),
        Ok(ServerDescription::Tls { .. })
    )
}
