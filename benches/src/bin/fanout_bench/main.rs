//! `fanout_bench`: the broadcast fan-out benchmark. N clients of a
//! "Spreader" (each chunk a client sends is relayed to every other client),
//! every client sending fixed-size messages; delivered messages per second
//! and per server CPU-second, twill's `broadcast_server` against the same
//! Spreader on tokio and on Twisted.
//!
//! ```text
//! fanout_bench [--clients 200] [--size 16] [--window 1] [--rounds 3]
//!              [--duration 5] [--warmup 1] [--stall 5] [--servers LIST]
//!              [--slow PERCENT[,PERCENT..]] [--slow-rate BYTES_PER_S]
//!              [--workers N] [--target-dir DIR] [--smoke]
//! ```
//!
//! Servers (`--servers`, comma-separated; default `twill,tokio_ct,twisted`,
//! those found):
//!
//! | name | what |
//! |---|---|
//! | `twill` | twill's `broadcast_server` example |
//! | `twill_Nw` | the same with `--threads N`: the chat split over N workers (N = `--workers`, 2 by default) |
//! | `tokio_ct` / `tokio_mt` | `tokio_spreader` on tokio's current-thread / multi-thread runtime (N workers if `--workers` is given, else one per core) |
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
//! deliveries per server CPU-second, the server's resident memory at the
//! end of the window and its peak resident memory (`VmHWM`, read from
//! `/proc/PID/status` after the run, before the server is killed); and,
//! against `twill`, the median of the per-round ratios of deliveries per
//! second and per server CPU-second.
//!
//! # Slow clients
//!
//! `--slow 10` makes 10 % of the clients (rounded, at least one, at most
//! all but two) slow readers: each connects with a 4 KiB `SO_RCVBUF` and
//! reads at most `--slow-rate` bytes per second (default 16 KiB/s: with 200
//! clients each client is sent 0.5 to 0.9 MiB/s on the 2-core machine, so
//! a slow one reads 2 to 3 % of what it is owed). Slow clients send their
//! messages like the others (see `load.rs` for why and for what is
//! verified: attentive clients must get everything, slow ones may see gaps
//! but nothing out of order, repeated or damaged; a slow client the server
//! disconnects is counted, not a failure). The load only waits for
//! attentive clients, so deliveries, latency, deliveries per server
//! CPU-second and the ratios count attentive clients only; the server
//! still spends CPU on the slow ones, which is the point.
//!
//! Per server the report adds what the slow clients received, the
//! messages they saw missing (gaps), how far behind they were at the end,
//! how many were disconnected, and the messages the server says it dropped
//! for them (twill's `broadcast_server` logs its count for each connection
//! as it closes; the tokio and Twisted Spreaders drop nothing and say
//! nothing: `n/a`). A slow client only sees a gap once it has read up to
//! it, which at 16 KiB/s and megabytes behind takes minutes, so in a short
//! run the server's count is the one that tells.
//!
//! Where the backlog sits: on loopback the server's socket send buffer
//! grows to `net.ipv4.tcp_wmem`'s maximum (4 MiB by default; loopback's
//! 64 KiB segments let it), so some 4 MiB per slow client wait in the
//! kernel before the server's own buffer grows at all; at the fan-out rate
//! that takes 3 to 5 s, and only then does a server's slow-client policy
//! come into play (twill's group, after its grace time or at its cap). A
//! run meant to show the steady state therefore wants a warm-up of 10 s
//! or so (`--warmup 10`). The kernel's part does
//! not show in the server's resident memory; the report gives the rise of
//! the machine's TCP memory (`/proc/net/sockstat`, sampled every 100 ms)
//! next to it. The tokio and Twisted Spreaders queue without bound, which
//! is what they are there to show: the run's length is their bound (some
//! 250 MiB for tokio over a 15 s run with 20 slow clients of 200).
//!
//! `--slow` takes a list: `--slow 0,10` runs every server both ways in each
//! round (paired, interleaved) and adds a table of each server's attentive
//! deliveries per server CPU-second with slow clients against the run
//! without (the median of the per-round ratios), with both peak memories.
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

use twill_bench::measure::{CpuWindow, Probe};
use twill_bench::server::{
    python_dir, select_servers, target_dir, venv_python, RunningServer, ServerSpec,
};
use twill_bench::{cli_err, clk_tck, ksoftirqd_pids, parsed_or_exit, Args, CliError};

mod load;
mod report;

mod sock;

use load::{Config, Failure, Mark, SlowStats, MAX_CLIENTS, MAX_OUTSTANDING_BYTES, MIN_SIZE};
use report::{print_header, print_round, print_slow_summary, print_table};

const TWILL: &str = "twill";
const DEFAULT_SERVERS: &str = "twill,tokio_ct,twisted";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes per second a slow client reads by default.
const DEFAULT_SLOW_RATE: u64 = 16 * 1024;

const USAGE: &str = "usage: fanout_bench [--clients 200] [--size 16] [--window 1] \
[--rounds 3] [--duration 5] [--warmup 1] [--stall 5] [--servers NAME|NAME=PATH,..] \
[--slow PERCENT[,PERCENT..]] [--slow-rate BYTES_PER_S] [--workers N] [--target-dir DIR] [--smoke]
servers: twill twill_Nw tokio_ct tokio_mt twisted (N = --workers, 2 by default;
default: twill,tokio_ct,twisted, those found)";

/// The parsed command line.
pub struct Opts {
    /// The load, without slow clients.
    pub load: Config,
    /// The cases run for every server in every round: the share of slow
    /// clients, in %.
    pub slow: Vec<f64>,
    pub rounds: usize,
    pub target_dir: PathBuf,
    pub servers: Vec<ServerSpec>,
}

impl Opts {
    /// The load of case `case` (an index into `slow`).
    pub fn config(&self, case: usize) -> Config {
        Config {
            slow: slow_count(self.load.clients, self.slow[case]),
            ..self.load
        }
    }
}

/// How many of `clients` are slow with `percent` % slow: rounded, at least
/// one when `percent` is above 0.
pub fn slow_count(clients: usize, percent: f64) -> usize {
    if percent <= 0.0 {
        0
    } else {
        ((clients as f64 * percent / 100.0).round() as usize).max(1)
    }
}

/// The samples of every run, by server name and case, one per round
/// (`None` for a failed or skipped run).
pub type Samples = HashMap<(String, usize), Vec<Option<Sample>>>;

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
    /// Resident memory at the end of the measured window.
    pub rss_mib: f64,
    /// Peak resident memory over the server's life (`VmHWM`), read after
    /// the run.
    pub peak_mib: f64,
    /// The peak rise of the kernel's TCP memory (all sockets of the
    /// machine, from `/proc/net/sockstat`, sampled every 100 ms) over its
    /// value before the run: mostly the server's unsent data, which its
    /// resident memory does not show.
    pub tcp_mib: f64,
    /// What the slow clients saw (zeros without any).
    pub slow: SlowStats,
    /// Messages the server says it skipped for slow clients, when it says.
    pub server_dropped: Option<u64>,
}

impl Sample {
    /// Delivered messages (to attentive clients) per second.
    pub fn per_s(&self) -> f64 {
        self.delivered / self.window_s
    }
    /// Server CPU time in % of one CPU.
    pub fn server_cpu_pct(&self) -> f64 {
        self.server_cpu_s / self.window_s * 100.0
    }
    /// Server CPU nanoseconds per delivery.
    pub fn cpu_ns_per_delivery(&self) -> f64 {
        self.server_cpu_s * 1e9 / self.delivered
    }
    /// Deliveries (to attentive clients) per server CPU-second.
    pub fn per_cpu_s(&self) -> f64 {
        if self.server_cpu_s > 0.0 {
            self.delivered / self.server_cpu_s
        } else {
            f64::NAN
        }
    }
}

fn main() {
    let opts = parsed_or_exit("fanout_bench", parse());
    exit(run(&opts));
}

fn parse() -> Result<Opts, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
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
    let slow = parse_slow(a.value("--slow")?.as_deref().unwrap_or("0"))?;
    let slow_rate = a.parse_or("--slow-rate", DEFAULT_SLOW_RATE)?;
    let workers: Option<usize> = a
        .value("--workers")?
        .map(|w| {
            w.parse()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| cli_err!("bad --workers {w:?}: 1 to 256"))
        })
        .transpose()?;
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
    if let Some(&p) = slow.iter().find(|&&p| slow_count(clients, p) + 2 > clients) {
        return Err(cli_err!(
            "--slow {p} leaves fewer than 2 attentive clients of {clients}"
        ));
    }
    if slow_rate == 0 || slow_rate > 1 << 30 {
        return Err(cli_err!("--slow-rate must be 1 to 2^30 bytes per second"));
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
        spreaders(&target_dir, workers),
    )?;
    Ok(Opts {
        load: Config {
            clients,
            size,
            window,
            warmup: Duration::from_secs_f64(warmup),
            duration: Duration::from_secs_f64(duration),
            stall: Duration::from_secs_f64(stall),
            slow: 0,
            slow_rate,
        },
        slow,
        rounds,
        target_dir,
        servers,
    })
}

/// Parses `--slow`: comma-separated percentages, each at least 0 and
/// below 100, no two alike.
fn parse_slow(list: &str) -> Result<Vec<f64>, CliError> {
    let mut out: Vec<f64> = Vec::new();
    for item in list.split(',').map(str::trim) {
        let p: f64 = item
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..100.0).contains(p))
            .ok_or_else(|| cli_err!("--slow: {item:?} is not a percentage from 0 to below 100"))?;
        if out.contains(&p) {
            return Err(cli_err!("--slow: {p} is given twice"));
        }
        out.push(p);
    }
    Ok(out)
}

/// The Spreaders the benchmark knows, by name, with their programs looked
/// up in the release directory `target_dir`; `workers` (`--workers`) is
/// the thread count of twill's several-worker Spreader and of tokio's
/// multi-thread one (tokio's own default, one per core, without it).
fn spreaders(target_dir: &Path, workers: Option<usize>) -> Vec<ServerSpec> {
    let tokio = target_dir.join("examples/tokio_spreader");
    let twill = target_dir.join("examples/broadcast_server");
    let n = workers.unwrap_or(2).to_string();
    let tokio_mt = match workers {
        Some(_) => ServerSpec::new("tokio_mt", &tokio, &["multi_thread", &n]),
        None => ServerSpec::new("tokio_mt", &tokio, &["multi_thread"]),
    };
    vec![
        ServerSpec::new(TWILL, &twill, &[]),
        ServerSpec::new(&format!("twill_{n}w"), &twill, &["--threads", &n]),
        ServerSpec::new("tokio_ct", &tokio, &["current_thread"]),
        tokio_mt,
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
    let mut samples: Samples = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    // Every (server, case) pair runs once per round; the order rotates each
    // round, so slow drifts of the machine hit every pair alike.
    let pairs: Vec<(usize, usize)> = (0..o.servers.len())
        .flat_map(|s| (0..o.slow.len()).map(move |c| (s, c)))
        .collect();
    let mut failed: Vec<(usize, usize)> = Vec::new(); // pairs dropped after a failure
    for round in 0..o.rounds {
        for k in 0..pairs.len() {
            let (s, case) = pairs[(k + round) % pairs.len()];
            let server = &o.servers[s];
            let slot = samples.entry((server.name.clone(), case)).or_default();
            if failed.contains(&(s, case)) {
                slot.push(None);
                continue;
            }
            match run_one(o, case, clk, &ksoftirqd, server) {
                Ok(sample) => {
                    print_round(o, round, case, server, &sample);
                    slot.push(Some(sample));
                }
                Err(e) => {
                    let msg = format!("{} round {}: {e}", run_name(o, s, case), round + 1);
                    println!("FAILED {msg}");
                    failures.push(msg);
                    failed.push((s, case));
                    slot.push(None);
                }
            }
        }
    }
    for case in 0..o.slow.len() {
        print_table(o, case, &samples);
    }
    print_slow_summary(o, &samples);
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

/// The name of server `s` in case `case`, as the report shows it: the
/// server's name, followed by the share of slow clients when there are
/// any.
pub fn run_name(o: &Opts, s: usize, case: usize) -> String {
    let name = &o.servers[s].name;
    match o.slow[case] {
        p if p > 0.0 => format!("{name} (slow {p} %)"),
        _ => name.clone(),
    }
}

/// Starts the server, runs the load against it while sampling CPU time at
/// the window's edges, then closes the clients and kills the server.
fn run_one(
    o: &Opts,
    case: usize,
    clk: f64,
    ksoftirqd: &[u32],
    spec: &ServerSpec,
) -> Result<Sample, String> {
    let mut server = RunningServer::start(spec, READY_TIMEOUT)?;
    let pid = server.pid;
    let probe = || Probe::take(pid, None, ksoftirqd);
    let mut probes: [Option<std::io::Result<Probe>>; 2] = [None, None];
    let mut rss = None;
    // The kernel's TCP memory is machine-wide: its rise over the value
    // before the clients connect is what this run's sockets hold (the
    // server's unsent data above all), give or take other programs'.
    let tcp_before = tcp_mem_bytes().ok();
    let mut tcp_peak = 0u64;
    let outcome = load::run(o.config(case), server.addr, &mut |mark| {
        match mark {
            Mark::Start => probes[0] = Some(probe()),
            Mark::End => {
                probes[1] = Some(probe());
                rss = twill_bench::server::rss_bytes(pid).ok();
            }
            Mark::Tick => {}
        }
        if let Ok(m) = tcp_mem_bytes() {
            tcp_peak = tcp_peak.max(m);
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
    // The clients are closed now; a server that counts what it skipped
    // for each says so as it sees them go.
    let server_dropped = server_skipped(&server.output, o.load.clients);
    // Before the server is killed: the peak over its whole life, which
    // holds the run.
    let peak = peak_rss_bytes(pid).ok();
    drop(server);
    let [Some(Ok(t0)), Some(Ok(t1))] = probes else {
        return Err(Failure::Other("could not read CPU times from /proc".into()).to_string());
    };
    if outcome.delivered == 0 {
        return Err("no message was delivered in the measured window".into());
    }
    let window_s = outcome.window.as_secs_f64();
    let w = CpuWindow::between(&t0, &t1, clk, window_s);
    Ok(Sample {
        delivered: outcome.delivered as f64,
        completed: outcome.completed as f64,
        window_s,
        p50_us: outcome.hist.quantile(0.50) as f64 / 1000.0,
        p99_us: outcome.hist.quantile(0.99) as f64 / 1000.0,
        server_cpu_s: w.server_cpu_s,
        loader_cpu_pct: w.loader_pct,
        ksoftirqd_pct: w.ksoftirqd_pct,
        other_pct: w.other_pct,
        steal_pct: w.steal_pct,
        rss_mib: rss.map_or(f64::NAN, mib),
        peak_mib: peak.map_or(f64::NAN, mib),
        tcp_mib: tcp_before.map_or(f64::NAN, |b| mib(tcp_peak.saturating_sub(b))),
        slow: outcome.slow,
        server_dropped,
    })
}

/// How long the server may be quiet before it is taken to have said all
/// it had to about the closed clients.
const QUIET: Duration = Duration::from_millis(300);

/// The messages the server skipped for its clients (all of them slow ones:
/// an attentive client missing anything fails verification), by its own
/// count: the sum of the `… N messages skipped for it)` that twill's
/// `broadcast_server` logs as each connection closes. Read until every
/// client's line came, or the server was quiet for [`QUIET`], or 3 s;
/// `None` if it logged no such line (the other servers skip nothing).
fn server_skipped(output: &std::sync::mpsc::Receiver<String>, clients: usize) -> Option<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let (mut seen, mut total) = (0usize, 0u64);
    while seen < clients {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = output.recv_timeout(left.min(QUIET)) else {
            break;
        };
        if let Some(k) = parse_skipped(&line) {
            seen += 1;
            total += k;
        }
    }
    (seen > 0).then_some(total)
}

/// The `N` of a `… N messages skipped for it` log line.
fn parse_skipped(line: &str) -> Option<u64> {
    let before = &line[..line.find(" messages skipped for it")?];
    before
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The memory of all TCP sockets (of this network namespace) in bytes:
/// the `mem` pages of the `TCP:` line of `/proc/net/sockstat`.
fn tcp_mem_bytes() -> std::io::Result<u64> {
    let s = std::fs::read_to_string("/proc/net/sockstat")?;
    parse_tcp_mem_pages(&s)
        .map(|pages| pages * page_size())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no TCP mem"))
}

/// The `mem` field (pages) of the `TCP:` line of `/proc/net/sockstat`.
fn parse_tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|&w| w == "mem")?;
    words.next()?.parse().ok()
}

/// The page size the kernel counts socket memory in: the
/// `KernelPageSize` of this process's first mapping (read once), else
/// 4 KiB.
fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        std::fs::read_to_string("/proc/self/smaps")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("KernelPageSize:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(4096, |kib| kib * 1024)
    })
}

/// The peak resident memory of process `pid` in bytes (`VmHWM`).
fn peak_rss_bytes(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_hwm(&status)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no VmHWM line"))
}

/// Parses the `VmHWM:` line of `/proc/PID/status` into bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm() {
        let s = "Name:\tx\nVmHWM:\t  5120 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(parse_vm_hwm(s), Some(5120 * 1024));
        let me = std::process::id();
        assert!(peak_rss_bytes(me).unwrap() >= twill_bench::server::rss_bytes(me).unwrap());
    }

    #[test]
    fn skipped() {
        let line = "[2026-12-02T04:40:00Z INFO  broadcast_server] lost connect: 3 \
                    (127.0.0.1:5000: connection done; 1234 messages skipped for it)";
        assert_eq!(parse_skipped(line), Some(1234));
        assert_eq!(parse_skipped("new connect: 3 (127.0.0.1:5000)"), None);
    }

    #[test]
    fn tcp_mem() {
        let s =
            "sockets: used 12\nTCP: inuse 1 orphan 0 tw 188 alloc 1 mem 195\nUDP: inuse 0 mem 0\n";
        assert_eq!(parse_tcp_mem_pages(s), Some(195));
        assert!(tcp_mem_bytes().is_ok());
    }

    #[test]
    fn slow_shares() {
        assert_eq!(slow_count(200, 0.0), 0);
        assert_eq!(slow_count(200, 10.0), 20);
        assert_eq!(slow_count(8, 1.0), 1);
        assert_eq!(slow_count(8, 25.0), 2);
        assert_eq!(parse_slow("0,10").unwrap(), vec![0.0, 10.0]);
        assert!(parse_slow("10,10").is_err());
        assert!(parse_slow("100").is_err());
        assert!(parse_slow("-1").is_err());
        assert!(parse_slow("x").is_err());
    }
}
