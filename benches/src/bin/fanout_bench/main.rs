//! `fanout_bench`: the broadcast fan-out benchmark. N clients of a
//! "Spreader" (each chunk a client sends is relayed to every other client),
//! every client sending fixed-size messages; delivered messages per second
//! and per server CPU-second, twill's `broadcast_server` against the same
//! Spreader on tokio and on Twisted.
//!
//! ```text
//! fanout_bench [--clients 200] [--size 16] [--window 1] [--rounds 3]
//!              [--duration 5] [--warmup 1] [--stall 5] [--servers LIST]
//!              [--target-dir DIR] [--smoke]
//! ```
//!
//! Servers (`--servers`, comma-separated; default `twill,tokio_ct,twisted`,
//! those found):
//!
//! | name | what |
//! |---|---|
//! | `twill` | twill's `broadcast_server` example |
//! | `tokio_ct` / `tokio_mt` | `tokio_spreader` on tokio's current-thread / multi-thread runtime |
//! | `twisted` | `py/spreader_twisted.py` on the epoll reactor, in the suite's virtualenv |
//! | `NAME=PATH` | any program taking the listen address as first argument and printing `listening on ADDR` |
//!
//! A missing one is skipped with a warning. The binaries are looked up in
//! `--target-dir`, else `$TWILL_BENCH_TARGET_DIR`, else the directory this
//! binary is in; Python is `$TWILL_BENCH_PYTHON`, else
//! `twisted-venv/bin/python` next to that directory.
//!
//! For each round, every server in turn (the order rotates each round, so
//! slow drifts of the machine hit every server alike): the server is
//! started on `127.0.0.1:0`; `--clients` connections are opened one after
//! the other (TCP_NODELAY), each checking its welcome line (client `i` must
//! be user number `i + 1`); then every client keeps `--window` messages of
//! `--size` bytes outstanding, a message being complete when all the other
//! clients have received it (see `load.rs` for the message format and what
//! is verified: every reception, exactly once, in order, from the right
//! sender, intact). After `--warmup` seconds the measured window of
//! `--duration` seconds starts; receptions in it are counted, and at its
//! edges the server's CPU time (utime + stime from `/proc/PID/stat`), this
//! process's (the loader's), the kernel's `ksoftirqd` threads' and the
//! machine's are read. Then the clients are closed and the server killed.
//!
//! The report gives, per server, medians over rounds of delivered messages
//! per second, p50/p99 delivery latency (write of a message to the read
//! that got it, per reception), server CPU %, server CPU ns per delivery,
//! deliveries per server CPU-second and the server's resident memory at the
//! end of the window; and, against `twill`, the median of the per-round
//! ratios of deliveries per second and per server CPU-second.
//!
//! `--smoke` is one round of 1 s after 0.2 s warm-up with 20 clients (unless
//! given). Exit status: 0 when every run succeeded, 1 when any failed
//! (a verification error, a stall, a crash, a timeout), 2 for usage errors
//! or when no server is found. Every run is bounded in time: connecting
//! 20 s, the run warm-up + duration, a stall `--stall` seconds; the server
//! is killed at the end of each run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Duration;

use twill_bench::server::{
    python_dir, select_servers, target_dir, venv_python, RunningServer, ServerSpec,
};
use twill_bench::{
    cli_err, clk_tck, cpu_ticks, ksoftirqd_pids, self_cpu_ticks, system_ticks, total_cpu_ticks,
    Args, CliError,
};

mod load;
mod report;

use load::{Config, Failure, Mark, MAX_CLIENTS, MAX_OUTSTANDING_BYTES, MIN_SIZE};
use report::{print_header, print_round, print_table};

const TWILL: &str = "twill";
const DEFAULT_SERVERS: &str = "twill,tokio_ct,twisted";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "usage: fanout_bench [--clients 200] [--size 16] [--window 1] \
[--rounds 3] [--duration 5] [--warmup 1] [--stall 5] [--servers NAME|NAME=PATH,..] \
[--target-dir DIR] [--smoke]
servers: twill tokio_ct tokio_mt twisted (default: twill,tokio_ct,twisted, those found)";

/// The parsed command line.
pub struct Opts {
    pub load: Config,
    pub rounds: usize,
    pub target_dir: PathBuf,
    pub servers: Vec<ServerSpec>,
}

/// One server's numbers from one round.
pub struct Sample {
    pub delivered: f64,
    pub completed: f64,
    pub window_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_s: f64,
    pub loader_cpu_pct: f64,
    pub ksoftirqd_pct: f64,
    /// Busy CPU of everything but server, loader and ksoftirqd, in % of
    /// one CPU: interference.
    pub other_pct: f64,
    pub steal_pct: f64,
    pub rss_mib: f64,
}

impl Sample {
    pub fn per_s(&self) -> f64 {
        self.delivered / self.window_s
    }
    pub fn server_cpu_pct(&self) -> f64 {
        self.server_cpu_s / self.window_s * 100.0
    }
    pub fn cpu_ns_per_delivery(&self) -> f64 {
        self.server_cpu_s * 1e9 / self.delivered
    }
    pub fn per_cpu_s(&self) -> f64 {
        if self.server_cpu_s > 0.0 {
            self.delivered / self.server_cpu_s
        } else {
            f64::NAN
        }
    }
}

fn main() {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fanout_bench: {e}");
            exit(2);
        }
    };
    exit(run(&opts));
}

fn parse() -> Result<Opts, CliError> {
    let mut a = Args::from_env();
    if a.wants_help() {
        println!("{USAGE}");
        exit(0);
    }
    let smoke = a.flag("--smoke");
    let (rounds, duration, warmup, clients) = if smoke {
        (1, 1.0, 0.2, 20)
    } else {
        (3, 5.0, 1.0, 200)
    };
    let clients = a.parse_or("--clients", clients)?;
    let size = a.parse_or("--size", MIN_SIZE)?;
    let window = a.parse_or("--window", 1usize)?;
    let rounds = a.parse_or("--rounds", rounds)?;
    let duration: f64 = a.parse_or("--duration", duration)?;
    let warmup: f64 = a.parse_or("--warmup", warmup)?;
    let stall: f64 = a.parse_or("--stall", 5.0)?;
    let target_dir = target_dir(a.value("--target-dir")?);
    let list = a.value("--servers")?;
    a.finish()?;
    let secs_ok = |v: f64| v.is_finite() && (0.0..=3600.0).contains(&v);
    if rounds == 0 || !secs_ok(duration) || duration == 0.0 || !secs_ok(warmup) {
        return Err(cli_err!(
            "--rounds must be positive, --duration more than 0 and --warmup 0 to 3600 s"
        ));
    }
    if !secs_ok(stall) || stall == 0.0 {
        return Err(cli_err!("--stall must be more than 0 and at most 3600 s"));
    }
    if !(2..=MAX_CLIENTS).contains(&clients) {
        return Err(cli_err!("--clients must be 2 to {MAX_CLIENTS}"));
    }
    if size < MIN_SIZE || window == 0 || size * window > MAX_OUTSTANDING_BYTES {
        return Err(cli_err!(
            "--size must be at least {MIN_SIZE}, --window positive, and size × window at most \
             {MAX_OUTSTANDING_BYTES} bytes (so that every read a server makes holds whole messages)"
        ));
    }
    let servers = select_servers(
        "fanout_bench",
        Some(list.as_deref().unwrap_or(DEFAULT_SERVERS)),
        spreaders(&target_dir),
    )?;
    Ok(Opts {
        load: Config {
            clients,
            size,
            window,
            warmup: Duration::from_secs_f64(warmup),
            duration: Duration::from_secs_f64(duration),
            stall: Duration::from_secs_f64(stall),
        },
        rounds,
        target_dir,
        servers,
    })
}

/// The Spreaders the benchmark knows, by name, with their programs looked
/// up in the release directory `target_dir`.
fn spreaders(target_dir: &Path) -> Vec<ServerSpec> {
    let tokio = target_dir.join("examples/tokio_spreader");
    vec![
        ServerSpec::new(TWILL, target_dir.join("examples/broadcast_server"), &[]),
        ServerSpec::new("tokio_ct", &tokio, &["current_thread"]),
        ServerSpec::new("tokio_mt", &tokio, &["multi_thread"]),
        ServerSpec::python(
            "twisted",
            &venv_python(target_dir),
            &python_dir().join("spreader_twisted.py"),
            &[],
        ),
    ]
}

fn run(o: &Opts) -> i32 {
    let clk = clk_tck() as f64;
    let ksoftirqd = ksoftirqd_pids();
    print_header(o);
    println!();
    let mut samples: HashMap<String, Vec<Option<Sample>>> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new(); // servers dropped after a failure
    for round in 0..o.rounds {
        let n = o.servers.len();
        for i in 0..n {
            let server = &o.servers[(i + round) % n];
            let slot = samples.entry(server.name.clone()).or_default();
            if failed.contains(&server.name) {
                slot.push(None);
                continue;
            }
            match run_one(o, clk, &ksoftirqd, server) {
                Ok(s) => {
                    print_round(o, round, server, &s);
                    slot.push(Some(s));
                }
                Err(e) => {
                    let msg = format!("{} round {}: {e}", server.name, round + 1);
                    println!("FAILED {msg}");
                    failures.push(msg);
                    failed.push(server.name.clone());
                    slot.push(None);
                }
            }
        }
    }
    print_table(o, &samples);
    if failures.is_empty() {
        0
    } else {
        eprintln!("\nfanout_bench: {} run(s) failed:", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        1
    }
}

/// CPU tick counters sampled at one edge of the measured window.
#[derive(Clone, Copy, Default)]
struct Probe {
    server: u64,
    loader: u64,
    ksoftirqd: u64,
    busy: u64,
    steal: u64,
}

/// Starts the server, runs the load against it while sampling CPU time at
/// the window's edges, then closes the clients and kills the server.
fn run_one(o: &Opts, clk: f64, ksoftirqd: &[u32], spec: &ServerSpec) -> Result<Sample, String> {
    let mut server = RunningServer::start(spec, READY_TIMEOUT)?;
    let pid = server.pid;
    let probe = || -> std::io::Result<Probe> {
        let (busy, steal) = system_ticks()?;
        Ok(Probe {
            server: cpu_ticks(pid)?,
            loader: self_cpu_ticks()?,
            ksoftirqd: total_cpu_ticks(ksoftirqd),
            busy,
            steal,
        })
    };
    let mut probes: [Option<std::io::Result<Probe>>; 2] = [None, None];
    let mut rss = None;
    let outcome = load::run(o.load, server.addr, &mut |mark| match mark {
        Mark::Start => probes[0] = Some(probe()),
        Mark::End => {
            probes[1] = Some(probe());
            rss = twill_bench::server::rss_bytes(pid).ok();
        }
    });
    let outcome = match outcome {
        Ok(out) => out,
        Err(e) => {
            let e = e.to_string();
            return Err(match server.exited() {
                Some(st) => format!("{e} (the server exited: {st})"),
                None => e,
            });
        }
    };
    if let Some(st) = server.exited() {
        return Err(format!("server exited during the run ({st})"));
    }
    drop(server);
    let [Some(Ok(t0)), Some(Ok(t1))] = probes else {
        return Err(Failure::Other("could not read CPU times from /proc".into()).to_string());
    };
    if outcome.delivered == 0 {
        return Err("no message was delivered in the measured window".into());
    }
    let window_s = outcome.window.as_secs_f64();
    let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / clk;
    let pct = |a: u64, b: u64| secs(a, b) / window_s * 100.0;
    Ok(Sample {
        delivered: outcome.delivered as f64,
        completed: outcome.completed as f64,
        window_s,
        p50_us: outcome.hist.quantile(0.50) as f64 / 1000.0,
        p99_us: outcome.hist.quantile(0.99) as f64 / 1000.0,
        server_cpu_s: secs(t0.server, t1.server),
        loader_cpu_pct: pct(t0.loader, t1.loader),
        ksoftirqd_pct: pct(t0.ksoftirqd, t1.ksoftirqd),
        other_pct: (pct(t0.busy, t1.busy)
            - pct(
                t0.server + t0.loader + t0.ksoftirqd,
                t1.server + t1.loader + t1.ksoftirqd,
            ))
        .max(0.0),
        steal_pct: pct(t0.steal, t1.steal),
        rss_mib: rss.map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0)),
    })
}
