//! `idle_bench`: resident memory per idle connection, server by server.
//!
//! ```text
//! idle_bench [--conns 10000] [--rounds 3] [--servers LIST] [--target-dir DIR]
//!            [--smoke]
//! ```
//!
//! For each round, every server in turn (the order rotates each round):
//!
//! 1. start it on `127.0.0.1:0` and wait for its `listening on` line;
//! 2. open one connection, echo one message over it and close it, so that
//!    whatever the server allocates lazily for its first connection (read
//!    buffers, tables, code pages) exists; wait until its resident memory
//!    (`VmRSS`) is steady and read it: the *empty* figure;
//! 3. open `--conns` connections and echo one 16-byte message over each:
//!    at most [`WINDOW`] connections are being set up at a time, each
//!    connecting (non-blocking), sending its message and reading the whole
//!    echo back before the next one starts, so the server's accept backlog
//!    is never overrun and every connection is known to be accepted and to
//!    have run the server's per-connection read path once (the realistic
//!    state of an idle connection: a task's read buffer, say, exists);
//! 4. wait until `VmRSS` is steady again (two readings 200 ms apart within
//!    1 %, for at most a few seconds) and read it: the *loaded* figure;
//! 5. close every connection and kill the server.
//!
//! Memory per connection = (loaded − empty) ÷ connections. `VmRSS` counts
//! the process's own pages only; the kernel's socket buffers and socket
//! structures are not in it, so this is what the server itself (runtime,
//! framework, application) spends per connection.
//!
//! Every message is a length-prefixed frame (a 4-byte big-endian length
//! and 12 payload bytes; connection `i` sends its own bytes), so a plain
//! echo and a framing one serve it alike; an echo that differs from what
//! was sent fails the run.
//!
//! The servers are those of [`twill_bench::server::echo_servers`] (twill,
//! twill_async, twill_codec, raw_polling, async_io, tokio_ct, tokio_mt,
//! asyncio, uvloop, asyncio_streams, uvloop_streams, twisted); a missing one is skipped with a warning, `--servers` picks
//! some by name or adds others as `NAME=PATH`. The target directory is
//! `--target-dir`, else `$TWILL_BENCH_TARGET_DIR`, else this binary's
//! directory. `--smoke` is 1 round of 200 connections.
//!
//! The report is a markdown table of medians over rounds. This process
//! holds one descriptor per connection and so does the server, which
//! inherits the limit: when the soft `RLIMIT_NOFILE` is too low and the
//! hard limit allows more, the program re-runs itself under
//! `sh -c 'ulimit -n HARD; exec ..'`.
//!
//! Exit status: 0 when every run succeeded; 1 when any failed (a server
//! that crashed or never became ready, a connection that failed or timed
//! out, an echo that did not match); 2 for usage errors, missing binaries or
//! too few file descriptors.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{exit, Command};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use twill_bench::report::{fmt, print_run_header, this_command};
use twill_bench::server::{
    echo_servers, rss_bytes, select_servers, target_dir, RunningServer, ServerSpec,
};
use twill_bench::{cli_err, median, parsed_or_exit, Args, CliError, Pattern};

const USAGE: &str = "usage: idle_bench [--conns 10000] [--rounds 3] \
[--servers NAME|NAME=PATH,..] [--target-dir DIR] [--smoke]
servers: twill twill_async twill_codec raw_polling async_io tokio_ct tokio_mt asyncio uvloop
asyncio_streams uvloop_streams twisted
(default: all found)";

const TWILL: &str = "twill";
/// The target for twill, in bytes per idle connection.
const TARGET_BYTES: f64 = 2048.0;
/// Size of the one message echoed on every connection (header included).
const MESSAGE: usize = 16;
/// Connections being set up (connect + echo) at once at most: below
/// Twisted's default listen backlog of 50.
const WINDOW: usize = 32;
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Budget for opening and echoing all connections: this plus
/// [`CONNECT_PER_CONN`] per connection.
const CONNECT_BASE: Duration = Duration::from_secs(20);
const CONNECT_PER_CONN: Duration = Duration::from_millis(3);
/// Steady `VmRSS`: two readings this far apart within [`SETTLE_TOLERANCE`].
const SETTLE_STEP: Duration = Duration::from_millis(200);
const SETTLE_TOLERANCE: f64 = 0.01;
/// How long to wait for a steady reading at most (it is used anyway).
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// Descriptors beyond one per connection that this process and the
/// servers may need.
const SPARE_FDS: u64 = 256;
/// Set when the program re-runs itself with a raised descriptor limit.
const REEXEC_ENV: &str = "TWILL_IDLE_BENCH_RAISED_NOFILE";

struct Opts {
    conns: usize,
    rounds: usize,
    target_dir: PathBuf,
    servers: Vec<ServerSpec>,
}

/// One server's figures from one round.
struct Sample {
    empty: u64,
    loaded: u64,
    /// `RssAnon` before and after, for the round line (heap and stacks,
    /// without file-backed pages such as code).
    anon_empty: u64,
    anon_loaded: u64,
    conns: usize,
    open_secs: f64,
    settled: bool,
}

impl Sample {
    fn per_conn(&self) -> f64 {
        (self.loaded as f64 - self.empty as f64) / self.conns as f64
    }
    fn anon_per_conn(&self) -> f64 {
        (self.anon_loaded as f64 - self.anon_empty as f64) / self.conns as f64
    }
}

fn main() {
    let opts = parsed_or_exit("idle_bench", parse());
    if let Err(e) = ensure_fd_limit(opts.conns) {
        eprintln!("idle_bench: {e}");
        exit(2);
    }
    exit(run(&opts));
}

fn parse() -> Result<Opts, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let smoke = a.flag("--smoke");
    let (conns, rounds) = if smoke { (200, 1) } else { (10_000, 3) };
    let conns = a.parse_or("--conns", conns)?;
    let rounds = a.parse_or("--rounds", rounds)?;
    let target_dir = target_dir(a.value("--target-dir")?);
    let servers = select_servers(
        "idle_bench",
        a.value("--servers")?.as_deref(),
        echo_servers(&target_dir),
    )?;
    a.finish()?;
    if conns == 0 || rounds == 0 || conns > 1_000_000 {
        return Err(cli_err!(
            "--rounds must be positive and --conns 1 to 1000000\n{USAGE}"
        ));
    }
    Ok(Opts {
        conns,
        rounds,
        target_dir,
        servers,
    })
}

/// The soft and hard `RLIMIT_NOFILE` of this process, from
/// `/proc/self/limits` (`None` stands for unlimited).
fn nofile_limits() -> Option<(Option<u64>, Option<u64>)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    let value = |v: &str| -> Option<Option<u64>> {
        if v == "unlimited" {
            Some(None)
        } else {
            v.parse().ok().map(Some)
        }
    };
    Some((value(f.next()?)?, value(f.next()?)?))
}

/// Makes sure this process (and so the servers it starts) may open a
/// descriptor per connection and some: if the soft limit is too low but the
/// hard one allows it, re-runs this program with the soft limit raised to
/// the hard one (std has no `setrlimit`, the shell's `ulimit` does it).
fn ensure_fd_limit(conns: usize) -> Result<(), CliError> {
    let need = conns as u64 + SPARE_FDS;
    let Some((soft, hard)) = nofile_limits() else {
        return Ok(()); // cannot tell; connecting will say if it fails
    };
    if soft.is_none_or(|s| s >= need) {
        return Ok(());
    }
    if hard.is_some_and(|h| h < need) || std::env::var_os(REEXEC_ENV).is_some() {
        return Err(cli_err!(
            "{conns} connections need about {need} file descriptors, but the limit is {} \
             (hard {}); raise it (ulimit -n) or use fewer --conns",
            soft.unwrap_or(0),
            hard.map_or("unlimited".to_string(), |h| h.to_string())
        ));
    }
    let raise = hard.map_or("unlimited".to_string(), |h| h.to_string());
    let exe = std::env::current_exe()?;
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("ulimit -n {raise} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(REEXEC_ENV, "1")
        .status()
        .map_err(|e| cli_err!("cannot re-run with a raised descriptor limit: {e}"))?;
    exit(status.code().unwrap_or(1));
}

fn run(o: &Opts) -> i32 {
    print_header(o);
    let pattern = Pattern::new(MESSAGE);
    let mut samples: HashMap<String, Vec<Sample>> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new(); // servers dropped after a failure
    println!();
    for round in 0..o.rounds {
        let n = o.servers.len();
        for i in 0..n {
            let server = &o.servers[(i + round) % n];
            if failed.contains(&server.name) {
                continue;
            }
            match run_one(o, server, &pattern) {
                Ok(s) => {
                    print_round(o, round, server, &s);
                    samples.entry(server.name.clone()).or_default().push(s);
                }
                Err(e) => {
                    let msg = format!("{} round {}: {e}", server.name, round + 1);
                    println!("FAILED {msg}");
                    failures.push(msg);
                    failed.push(server.name.clone());
                }
            }
        }
    }
    print_table(o, &samples);
    if failures.is_empty() {
        0
    } else {
        eprintln!("\nidle_bench: {} run(s) failed:", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        1
    }
}

/// Starts the server, measures it empty and with `o.conns` idle
/// connections, closes them and kills it.
fn run_one(o: &Opts, spec: &ServerSpec, pattern: &Pattern) -> Result<Sample, String> {
    let mut server = RunningServer::start(spec, READY_TIMEOUT)?;
    let (pid, addr) = (server.pid, server.addr);
    let proc_err = |e: io::Error| format!("cannot read /proc/{pid}/status: {e}");

    // One connection, one echo, closed: lazily made process-wide state
    // exists before the empty reading.
    let warm_deadline = Instant::now() + CONNECT_BASE;
    let first = open_connections(addr, 1, pattern, warm_deadline)?;
    drop(first);
    let (empty, _) = settled_rss(pid).map_err(proc_err)?;
    let anon_empty = rss_anon_bytes(pid).map_err(proc_err)?;

    let started = Instant::now();
    let deadline = started + CONNECT_BASE + CONNECT_PER_CONN * o.conns as u32;
    let streams = open_connections(addr, o.conns, pattern, deadline)?;
    let open_secs = started.elapsed().as_secs_f64();
    let (loaded, settled) = settled_rss(pid).map_err(proc_err)?;
    let anon_loaded = rss_anon_bytes(pid).map_err(proc_err)?;
    if let Some(status) = server.exited() {
        return Err(format!("server exited during the run ({status})"));
    }
    drop(streams);
    drop(server);
    Ok(Sample {
        empty,
        loaded,
        anon_empty,
        anon_loaded,
        conns: o.conns,
        open_secs,
        settled,
    })
}

/// Opens `conns` connections to `addr`, [`WINDOW`] at a time, and echoes one
/// message over each (connection `i` sends the first message of its own
/// [`Pattern`] stream); returns them open and idle. Everything must be done
/// by `deadline`.
fn open_connections(
    addr: SocketAddr,
    conns: usize,
    pattern: &Pattern,
    deadline: Instant,
) -> Result<Vec<TcpStream>, String> {
    let next = Cell::new(0usize);
    let stop = Cell::new(false);
    let streams: RefCell<Vec<TcpStream>> = RefCell::new(Vec::with_capacity(conns));
    let error: RefCell<Option<String>> = RefCell::new(None);
    {
        let (next, stop, streams, error) = (&next, &stop, &streams, &error);
        let worker = || async move {
            while !stop.get() {
                let i = next.get();
                if i >= conns {
                    return;
                }
                next.set(i + 1);
                let message = pattern.slice(pattern.phase(i), 0, MESSAGE);
                let attempt = future::or(echo_once(addr, message), async {
                    Timer::at(deadline).await;
                    Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
                });
                match attempt.await {
                    Ok(s) => streams.borrow_mut().push(s),
                    Err(e) => {
                        stop.set(true);
                        let done = streams.borrow().len();
                        error.borrow_mut().get_or_insert_with(|| {
                            format!(
                                "connection {} of {conns} ({done} open and echoed): {e}",
                                i + 1
                            )
                        });
                        return;
                    }
                }
            }
        };
        let ex = LocalExecutor::new();
        let tasks: Vec<_> = (0..WINDOW.min(conns)).map(|_| ex.spawn(worker())).collect();
        async_io::block_on(ex.run(async {
            for t in tasks {
                t.await;
            }
        }));
    }
    if let Some(e) = error.into_inner() {
        return Err(e);
    }
    Ok(streams.into_inner())
}

/// Connects (non-blocking), writes `message`, reads the echo back and checks
/// it; returns the connection, idle.
async fn echo_once(addr: SocketAddr, message: &[u8]) -> io::Result<TcpStream> {
    let mut s = Async::<TcpStream>::connect(addr).await?;
    s.write_all(message).await?;
    let mut got = [0u8; MESSAGE];
    let got = &mut got[..message.len()];
    s.read_exact(got).await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(
            e.kind(),
            "the server closed the connection before echoing the message",
        ),
        _ => e,
    })?;
    if got != message {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("VERIFY ERROR: echoed {got:02x?}, sent {message:02x?}"),
        ));
    }
    s.into_inner()
}

/// Reads `VmRSS` until two readings [`SETTLE_STEP`] apart agree within
/// [`SETTLE_TOLERANCE`], for at most [`SETTLE_MAX`]; returns the last
/// reading and whether it was steady.
fn settled_rss(pid: u32) -> io::Result<(u64, bool)> {
    let deadline = Instant::now() + SETTLE_MAX;
    std::thread::sleep(SETTLE_STEP);
    let mut prev = rss_bytes(pid)?;
    loop {
        std::thread::sleep(SETTLE_STEP);
        let now = rss_bytes(pid)?;
        if (now as f64 - prev as f64).abs() <= SETTLE_TOLERANCE * prev as f64 {
            return Ok((now, true));
        }
        if Instant::now() >= deadline {
            return Ok((now, false));
        }
        prev = now;
    }
}

/// `RssAnon` of process `pid` in bytes (anonymous resident pages: heap,
/// stacks), or 0 if the kernel does not report it.
fn rss_anon_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024))
}

const MIB: f64 = 1024.0 * 1024.0;

fn print_round(o: &Opts, round: usize, server: &ServerSpec, s: &Sample) {
    println!(
        "round {}/{} {:<12} empty {:>7.1} MiB  loaded {:>7.1} MiB  {:>7.0} B/conn \
         (anon {:>7.0} B/conn) | {} conns opened and echoed in {:.2} s{}",
        round + 1,
        o.rounds,
        server.name,
        s.empty as f64 / MIB,
        s.loaded as f64 / MIB,
        s.per_conn(),
        s.anon_per_conn(),
        s.conns,
        s.open_secs,
        if s.settled {
            ""
        } else {
            "  [RSS still moving]"
        }
    );
}

fn print_header(o: &Opts) {
    print_run_header(
        "twill idle-connection memory benchmark",
        &this_command("idle_bench"),
    );
    println!(
        "- {} round(s); {} idle connections per server, each having echoed one {MESSAGE}-byte \
         frame; set up {WINDOW} at a time",
        o.rounds, o.conns
    );
    println!("- target dir: {}", o.target_dir.display());
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}", names.join(", "));
}

fn print_table(o: &Opts, samples: &HashMap<String, Vec<Sample>>) {
    let per_conn = |name: &str| -> f64 {
        samples.get(name).map_or(f64::NAN, |v| {
            median(&v.iter().map(Sample::per_conn).collect::<Vec<_>>())
        })
    };
    let twill = per_conn(TWILL);
    println!(
        "\nResident memory (VmRSS) per idle connection: (loaded − empty) ÷ {} connections; \
         medians of {} round(s). `vs twill` = this server's bytes per connection ÷ twill's \
         (> 1: twill uses less).\n",
        o.conns, o.rounds
    );
    println!("| server | empty RSS MiB | loaded RSS MiB | bytes per conn | vs twill | < 2 KiB |");
    println!("|---|---:|---:|---:|---:|---|");
    for server in &o.servers {
        let Some(v) = samples.get(&server.name).filter(|v| !v.is_empty()) else {
            println!("| {} | failed | | | | |", server.name);
            continue;
        };
        let med = |f: &dyn Fn(&Sample) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
        let bytes = per_conn(&server.name);
        let ratio = bytes / twill;
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            server.name,
            fmt(med(&|s| s.empty as f64 / MIB), 1),
            fmt(med(&|s| s.loaded as f64 / MIB), 1),
            fmt(bytes, 0),
            if ratio.is_finite() && twill > 0.0 {
                format!("{ratio:.2}×")
            } else {
                "n/a".into()
            },
            if bytes < TARGET_BYTES { "yes" } else { "no" },
        );
    }
    println!();
    if twill.is_finite() {
        println!(
            "twill: {twill:.0} bytes per idle connection: {} the < 2 KiB target.",
            if twill < TARGET_BYTES {
                "meets"
            } else {
                "does NOT meet"
            }
        );
    } else {
        println!("twill: not measured.");
    }
}
