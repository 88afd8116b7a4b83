//! The "Spreader": relays what each client sends to every other client.
//!
//! Each client is welcomed with its number (the count of clients connected
//! now, as in the original); the message `close` ends the sender's
//! connection.
//!
//! ```text
//! cargo run --example broadcast_server [ENDPOINT]   # default 127.0.0.1:8007
//! cargo run --example broadcast_server -- unix:/tmp/broadcast.sock
//! cargo run --example broadcast_server -- 127.0.0.1:8007 --threads 4 [--placement least|round-robin|reuse-port]
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/broadcast.sock`), listened on
//! with [`Reactor::server_from_string`].
//!
//! The relaying goes through a [`BroadcastGroup`], which bounds what a
//! client that does not keep up can cost:
//!
//! - While a client is behind (over its high watermark, 64 KiB unsent)
//!   and catching up, the server stops reading from the clients that send
//!   ([`BroadcastGroup::broadcast_from`]): a client that reads at full
//!   speed misses nothing, however fast the others send.
//! - A client not on course to catch up within 2 s (judged every 100 ms
//!   while the senders wait), still behind after 2 s, or that would have
//!   over 4 MiB unsent, is given up on by the policy,
//!   [`SlowClient::DropMessages`], the one a relay of a live stream wants:
//!   from then on it misses the messages sent while it is behind (each one
//!   whole or not at all, counted, and logged when it leaves), and nobody
//!   waits for it again.
//!
//! So a client that never reads costs the server at most 4 MiB and the
//! senders one pause of 100 ms, and one that reads at full speed receives
//! everything.
//!
//! # Several threads
//!
//! With `--threads N`, a [`ReactorGroup`] of N worker reactors serves the
//! port, one thread each; the main thread accepts and hands each
//! connection to a worker (`--placement least`, the default: the worker
//! with the fewest connections; `round-robin`: in turn), or every worker
//! listens itself with SO_REUSEPORT (`reuse-port`). A Unix socket cannot
//! be shared that way, so `--threads` needs a TCP endpoint.
//!
//! A client lives on one worker all its life, and each worker has its own
//! [`BroadcastGroup`] of its clients, as above. The workers talk by
//! message, not through locks around the protocols: each has an
//! [`Inbox`] of messages relayed from the others, whose handler broadcasts
//! them to its clients. A message from a client goes to the clients of its
//! own worker with [`BroadcastGroup::broadcast_from`] (so it holds its
//! sender while one of them is behind, as above) and, copied once, to each
//! other worker's inbox. The workers learn each other's inbox senders from
//! a table made before the group runs, one slot per worker, which each
//! worker fills as it builds its factory; a worker whose slot is still
//! empty has no clients yet, so it has nothing to miss. The welcome number
//! counts the clients of every worker.
//!
//! A relayed message does not hold its sender: a worker's inbox holds at
//! most 512 messages not yet handed to its clients. When a worker's inbox is full (the worker is that far behind
//! the others), the message is dropped for that worker's clients, counted,
//! and logged once at the start of each run of refusals and once, with
//! the count, when the worker takes messages again. Each message is one
//! read, at most 64 KiB, held in one copy shared by every inbox it waits
//! in, so the relay holds at most 512 × 64 KiB (32 MiB) per worker,
//! however fast the clients send; what a client that does not read costs
//! is bounded by its worker's group, as above.
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use twill::broadcast::{BroadcastGroup, SlowClient};
use twill::group::{worker_index, Inbox, InboxSender, Placement, ReactorGroup, SendError};
use twill::net::endpoint::{parse_server_or_addr, ServerDescription};
use twill::{Bytes, Protocol, Reactor, Reason, Transport};

/// How many relayed messages may wait for one worker.
const INBOX_CAPACITY: usize = 512;

struct Spreader {
    clients: BroadcastGroup,
    transport: Option<Transport>,
    /// With `--threads`: the way to the other workers' clients.
    relay: Option<Rc<Relay>>,
}

impl Spreader {
    /// The clients connected now, on every worker.
    fn connected(&self) -> usize {
        match &self.relay {
            Some(relay) => relay.connected.load(Ordering::Relaxed),
            None => self.clients.len(),
        }
    }
}

impl Protocol for Spreader {
    fn connection_made(&mut self, transport: &Transport) {
        self.clients.add(transport);
        let number = match &self.relay {
            Some(relay) => {
                let number = relay.connected.fetch_add(1, Ordering::Relaxed) + 1;
                log::info!(
                    "new connect: {number} ({}) on worker {}",
                    transport.peer(),
                    relay.me
                );
                number
            }
            None => {
                let number = self.clients.len();
                log::info!("new connect: {number} ({})", transport.peer());
                number
            }
        };
        transport.write(format!(
            "Welcome to Spread Site, you are client user number {number}!\n"
        ));
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        let Some(me) = &self.transport else { return };
        if data.trim_ascii_end() == b"close" {
            me.lose_connection();
            return;
        }
        if let Some(relay) = &self.relay {
            relay.to_others(&data);
        }
        self.clients.broadcast_from(me, data);
    }

    fn connection_lost(&mut self, reason: &Reason) {
        if let Some(me) = self.transport.take() {
            let skipped = self.clients.dropped(&me).unwrap_or(0);
            self.clients.remove(&me);
            if let Some(relay) = &self.relay {
                relay.connected.fetch_sub(1, Ordering::Relaxed);
            }
            log::info!(
                "lost connect: {} ({}: {reason}; {skipped} messages skipped for it)",
                self.connected(),
                me.peer()
            );
        }
    }
}

/// What the workers share, made on the main thread before the group runs.
#[derive(Clone)]
struct Shared {
    /// Each worker's inbox sender, set by that worker as it builds its
    /// factory.
    inboxes: Arc<[OnceLock<InboxSender<Bytes>>]>,
    /// The clients connected now, on every worker.
    connected: Arc<AtomicUsize>,
}

/// One worker's side of the relay: its inbox, and its senders to the
/// others' with a count of what they refused.
struct Relay {
    me: usize,
    shared: Shared,
    connected: Arc<AtomicUsize>,
    /// Messages dropped for each worker since its inbox last took one:
    /// nonzero while a run of refusals lasts.
    refused_run: Vec<Cell<u64>>,
    /// Kept for as long as this worker's clients may be sent to.
    _inbox: Inbox<Bytes>,
}

impl Relay {
    /// Makes this worker's inbox, which broadcasts what comes in to
    /// `clients`, and publishes its sender.
    fn new(shared: Shared, clients: BroadcastGroup) -> Relay {
        let me = worker_index().expect("the workers build their factories");
        let inbox = Inbox::new(INBOX_CAPACITY, move |message: Bytes| {
            clients.broadcast(message);
        });
        let _ = shared.inboxes[me].set(inbox.sender());
        Relay {
            me,
            connected: shared.connected.clone(),
            refused_run: (0..shared.inboxes.len()).map(|_| Cell::new(0)).collect(),
            shared,
            _inbox: inbox,
        }
    }

    /// Sends `data` to every other worker's inbox, dropping it for those
    /// whose inbox is full.
    fn to_others(&self, data: &Bytes) {
        // One copy for every inbox: the read it came in may share a 64 KiB
        // buffer with others, which a message waiting in an inbox would
        // otherwise keep whole.
        let message = Bytes::copy_from_slice(data);
        for (index, slot) in self.shared.inboxes.iter().enumerate() {
            if index == self.me {
                continue;
            }
            // An empty slot is a worker not started yet, with no client.
            let Some(inbox) = slot.get() else { continue };
            let run = &self.refused_run[index];
            match inbox.send(message.clone()) {
                Ok(()) if run.get() > 0 => {
                    log::warn!(
                        "worker {index} takes messages again; {} from worker {} were dropped \
                         for its clients",
                        run.replace(0),
                        self.me
                    );
                }
                Ok(()) => {}
                Err(SendError::Full(_)) => {
                    if run.get() == 0 {
                        log::warn!(
                            "worker {index} is {INBOX_CAPACITY} messages behind; dropping \
                             messages for its clients until it catches up"
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

impl Drop for Relay {
    fn drop(&mut self) {
        for (index, run) in self.refused_run.iter().enumerate() {
            if run.get() > 0 {
                log::warn!(
                    "{} messages from worker {} were dropped for worker {index}'s clients \
                     at the end",
                    run.get(),
                    self.me
                );
            }
        }
    }
}

const USAGE: &str = "usage: broadcast_server [ENDPOINT] [--threads N [--placement least|round-robin|reuse-port]]   \
                     (ENDPOINT: an address (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/broadcast.sock); --threads needs a \
                     TCP endpoint)";

/// Reports a command line that cannot work, with the usage.
fn bad_command_line(problem: impl std::fmt::Display) -> ! {
    let problem = problem.to_string();
    if !problem.is_empty() {
        eprintln!("broadcast_server: {problem}");
    }
    eprintln!("{USAGE}");
    std::process::exit(2);
}

/// The command line: where to listen, and the workers, if any.
struct Args {
    endpoint: String,
    threads: Option<usize>,
    placement: Placement,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut endpoint = None;
    let mut threads = None;
    let mut placement = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
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
    if placement.is_some() && threads.is_none() {
        return Err("--placement goes with --threads".into());
    }
    Ok(Args {
        endpoint: endpoint.unwrap_or_else(|| "127.0.0.1:8007".into()),
        threads,
        placement: placement.unwrap_or_default(),
    })
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = parse_args(std::env::args().skip(1)).unwrap_or_else(|err| bad_command_line(err));
    let description =
        parse_server_or_addr(&args.endpoint).unwrap_or_else(|err| bad_command_line(err));
    let Some(threads) = args.threads else {
        return serve(&args.endpoint);
    };
    let ServerDescription::Tcp {
        interface, port, ..
    } = description
    else {
        bad_command_line(format!(
            "--threads shares a TCP port among the workers, not {:?}",
            args.endpoint
        ));
    };
    serve_threads(SocketAddr::new(interface, port), threads, args.placement)
}

/// One reactor on this thread.
fn serve(endpoint: &str) -> std::io::Result<()> {
    let reactor = Reactor::new()?;
    let clients = BroadcastGroup::new(SlowClient::DropMessages);
    let port = reactor.server_from_string(endpoint, move |_peer| Spreader {
        clients: clients.clone(),
        transport: None,
        relay: None,
    })?;
    log::info!("listening on {}", port.host());
    reactor.run()
}

/// A group of `threads` workers, each with its clients, relaying to each
/// other through their inboxes.
fn serve_threads(addr: SocketAddr, threads: usize, placement: Placement) -> std::io::Result<()> {
    let group = ReactorGroup::new(threads)?;
    let shared = Shared {
        inboxes: (0..threads).map(|_| OnceLock::new()).collect(),
        connected: Arc::new(AtomicUsize::new(0)),
    };
    let port = group.listen_tcp_with(addr, placement, move || {
        let clients = BroadcastGroup::new(SlowClient::DropMessages);
        let relay = Rc::new(Relay::new(shared.clone(), clients.clone()));
        move |_peer| Spreader {
            clients: clients.clone(),
            transport: None,
            relay: Some(relay.clone()),
        }
    })?;
    log::info!(
        "listening on {} with {threads} worker threads ({placement:?})",
        port.host()
    );
    group.run()
}
