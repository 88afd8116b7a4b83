//! Echoes back whatever each client sends.
//!
//! ```text
//! cargo run --example echo_server [ENDPOINT] [THREADS] [--placement least|round-robin|reuse-port]
//! cargo run --example echo_server                        # 127.0.0.1:8007, one reactor
//! cargo run --example echo_server -- unix:/tmp/echo.sock
//! cargo run --example echo_server -- 127.0.0.1:8007 4    # 4 workers, least connections
//! cargo run --example echo_server -- 127.0.0.1:8007 4 --placement reuse-port
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/echo.sock`), listened on
//! with [`Reactor::server_from_string`].
//!
//! With `THREADS` of 2 or more, or with `--placement` (then `THREADS`
//! defaults to 1), the server is a [`ReactorGroup`] of `THREADS` worker
//! reactors, one thread each: how a twill server uses several cores. Each
//! connection lives on one worker all its life. `--placement` says which:
//!
//! - `least` (the default): this thread (the boss) accepts every
//!   connection and hands it to the worker with the fewest open;
//! - `round-robin`: the boss hands them to the workers in turn;
//! - `reuse-port`: every worker listens on the port itself
//!   (SO_REUSEPORT) and the kernel picks one by a hash of the client's
//!   address and port: no boss, but uneven with few connections.
//!
//! A Unix socket cannot be shared that way: on one, the boss hands the
//! connections out (`least` or `round-robin`). When a group stops (SIGINT, SIGTERM), the server logs one
//! line per worker, `worker I: N connections, M open at stop`: how many it
//! was given over the run, and how many it held when the stop began. The
//! benchmarks read those lines to see how evenly each placement spreads
//! the load.
//!
//! A client that sends and never reads its echo does not make the server
//! buffer what it sends: with flow control on, a connection whose replies
//! cannot leave (its write buffer over the 64 KiB high watermark) stops
//! reading until they drain, so the client's data waits in the kernel's
//! buffers and then in the client. Twisted writes this as
//! `transport.registerProducer(transport, True)`; asyncio as
//! `await writer.drain()` after each write.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use twill::group::{worker_index, GroupPort, Placement, ReactorGroup};
use twill::net::endpoint::{parse_server_or_addr, ServerDescription};
use twill::{Bytes, Factory, Phase, Protocol, Reactor, SystemEvent, Transport};

struct Echo {
    transport: Option<Transport>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_flow_control(true);
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        if let Some(transport) = &self.transport {
            transport.write(data);
        }
    }
}

const USAGE: &str = "usage: echo_server [ENDPOINT] [THREADS] \
                     [--placement least|round-robin|reuse-port]   (ENDPOINT: an address \
                     (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/echo.sock))";

/// Reports a command line that cannot work, as the usage does.
fn bad_command_line(problem: impl std::fmt::Display) -> ! {
    eprintln!("echo_server: {problem}\n{USAGE}");
    std::process::exit(2);
}

/// The command line: the positional endpoint and thread count, and the
/// placement if one was asked for.
struct CommandLine {
    endpoint: String,
    threads: Option<usize>,
    placement: Option<Placement>,
}

fn parse_command_line() -> CommandLine {
    let mut positional = Vec::new();
    let mut placement = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = if arg == "--placement" {
            Some(
                args.next()
                    .unwrap_or_else(|| bad_command_line("--placement needs a value")),
            )
        } else {
            arg.strip_prefix("--placement=").map(str::to_owned)
        };
        match value {
            Some(name) => {
                placement = Some(name.parse().unwrap_or_else(|err| bad_command_line(err)))
            }
            None if arg.starts_with("--") => bad_command_line(format!("unknown option {arg}")),
            None => positional.push(arg),
        }
    }
    if positional.len() > 2 {
        bad_command_line(format!("unexpected argument {:?}", positional[2]));
    }
    let mut positional = positional.into_iter();
    let endpoint = positional.next().unwrap_or_else(|| "127.0.0.1:8007".into());
    let threads = positional.next().map(|n| match n.parse() {
        Ok(0) => bad_command_line("THREADS must be at least 1"),
        Ok(n) => n,
        Err(err) => bad_command_line(format!("THREADS {n:?}: {err}")),
    });
    CommandLine {
        endpoint,
        threads,
        placement,
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let line = parse_command_line();
    let description =
        parse_server_or_addr(&line.endpoint).unwrap_or_else(|err| bad_command_line(err));
    let threads = line.threads.unwrap_or(1);
    if threads == 1 && line.placement.is_none() {
        let reactor = Reactor::new()?;
        let port = reactor.server_from_string(&line.endpoint, |_peer| Echo { transport: None })?;
        log::info!("listening on {}", port.host());
        return reactor.run();
    }
    let placement = line.placement.unwrap_or_default();
    match description {
        ServerDescription::Tcp {
            interface, port, ..
        } => serve_on_group(threads, |group, make| {
            group.listen_tcp_with(SocketAddr::new(interface, port), placement, make)
        }),
        ServerDescription::Unix { address, mode, .. } if placement != Placement::ReusePort => {
            serve_on_group(threads, |group, make| {
                group.listen_unix(address, mode, placement, make)
            })
        }
        _ => bad_command_line(format!(
            "{threads} worker threads with {placement:?} need a TCP endpoint \
             (or a Unix socket with a boss placement), not {:?}",
            line.endpoint
        )),
    }
}

/// Builds a worker's factory, on that worker.
type MakeEchoFactory = Box<dyn Fn() -> EchoFactory + Send + Sync>;

/// A worker's factory: counts the connections its worker is given.
struct EchoFactory {
    given: Arc<[AtomicUsize]>,
    worker: usize,
}

impl Factory for EchoFactory {
    type Protocol = Echo;

    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Echo> {
        self.given[self.worker].fetch_add(1, Ordering::Relaxed);
        Some(Echo { transport: None })
    }
}

/// Serves on a group of `threads` workers, listening with `listen` (given
/// the group and each worker's factory maker), and logs how many
/// connections each got when it stops.
fn serve_on_group(
    threads: usize,
    listen: impl FnOnce(&ReactorGroup, MakeEchoFactory) -> io::Result<GroupPort>,
) -> io::Result<()> {
    let group = ReactorGroup::new(threads)?;
    // One counter per worker, bumped by that worker's factory only: a
    // count of what the placement gave it, not touched on the hot path.
    let given: Arc<[AtomicUsize]> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    let counters = given.clone();
    let port = listen(
        &group,
        Box::new(move || EchoFactory {
            given: counters.clone(),
            worker: worker_index().expect("a group's factory is built on its worker"),
        }),
    )?;
    let placement = port.placement();
    log::info!(
        "listening on {} with {threads} worker threads ({placement:?})",
        port.host()
    );
    // Read before the workers close their connections: what each held.
    let workers = group.workers().to_vec();
    let open_at_stop: Arc<[AtomicUsize]> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    let open = open_at_stop.clone();
    group.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        for (worker, open) in workers.iter().zip(open.iter()) {
            open.store(worker.load(), Ordering::Relaxed);
        }
    });
    let ran = group.run();
    for (index, (given, open)) in given.iter().zip(open_at_stop.iter()).enumerate() {
        log::info!(
            "worker {index}: {} connections, {} open at stop",
            given.load(Ordering::Relaxed),
            open.load(Ordering::Relaxed)
        );
    }
    ran
}
