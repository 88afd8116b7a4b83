//! `udp_bench`: UDP echo servers side by side under `udp_loadgen`,
//! datagrams per server CPU-second.
//!
//! ```text
//! udp_bench [--sizes 64,1200] [--clients 64] [--inflight 1] [--rounds 3]
//!           [--duration 5] [--warmup 1] [--servers LIST] [--target-dir DIR]
//!           [--smoke]
//! ```
//!
//! Servers ([`twill_bench::server::udp_servers`]): twill's `udp_echo`,
//! tokio (`tokio_udp_echo`, current-thread), a blocking `std` socket loop
//! (`std_udp_echo`, the ceiling) and an asyncio `DatagramProtocol` on the
//! default loop and on uvloop. Each is run as `program 127.0.0.1:PORT` on
//! a free port and is ready once a probe datagram comes back. A server not
//! built is skipped with a warning, except twill's in a `--smoke` run, which
//! is an error: CI must notice.
//!
//! The method is `echo_bench`'s: for each size, round after round, each
//! server in turn (the order rotating each round) is started, loaded by
//! `udp_loadgen` (`--clients` sockets, `--inflight` datagrams each, every
//! echo verified, a datagram lost resent after 200 ms) and its CPU time read
//! from `/proc` at the edges of the measured window, then killed. The table
//! gives medians over rounds of msgs/s, latency, server CPU and datagrams
//! per server CPU-second, that figure's ratio to `tokio_ct` and to
//! `std_blocking` (median of per-round ratios), and the datagrams lost in
//! the measured windows of all rounds.
//!
//! `--smoke` is one round of each size, 0.5 s after 0.2 s of warm-up. A
//! failed run (a verification error, a crash, a timeout) makes the exit
//! status non-zero.

use std::path::PathBuf;
use std::process::exit;
use std::time::Duration;

use twill_bench::measure::{CpuWindow, Loader};
use twill_bench::report::{fmt, fmt_ratio, print_round, print_run_header, this_command};
use twill_bench::rotation::{ratio_to, successes, Rotation};
use twill_bench::server::{
    free_udp_addr, require_twill_in_smoke, select_servers, target_dir, udp_servers, Endpoint,
    ProbedServer, ServerSpec,
};
use twill_bench::{check_run_shape, cli_err, median, parsed_or_exit, Args, CliError};

const USAGE: &str = "usage: udp_bench [--sizes 64,1200] [--clients 64] [--inflight 1] \
[--rounds 3] [--duration 5] [--warmup 1] [--servers NAME|NAME=PATH,..] [--target-dir DIR] \
[--smoke]
servers: twill tokio_ct std_blocking asyncio uvloop (default: all found)";

const TWILL: &str = "twill";
const TOKIO: &str = "tokio_ct";
const CEILING: &str = "std_blocking";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

struct Opts {
    sizes: Vec<usize>,
    clients: usize,
    inflight: usize,
    rounds: usize,
    duration: f64,
    warmup: f64,
    target_dir: PathBuf,
    servers: Vec<ServerSpec>,
}

/// One server's numbers from one round.
struct Sample {
    msgs: f64,
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    lost: f64,
    cpu: CpuWindow,
}

/// Each server's samples, one per round (`None`: the run failed).
type Rounds = twill_bench::rotation::Samples<Sample>;

impl Sample {
    fn msgs_per_cpu_s(&self) -> f64 {
        if self.cpu.server_cpu_s > 0.0 {
            self.msgs / self.cpu.server_cpu_s
        } else {
            f64::NAN
        }
    }
}

fn main() {
    let opts = parsed_or_exit("udp_bench", parse());
    exit(run(&opts));
}

fn parse() -> Result<Opts, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let smoke = a.flag("--smoke");
    let sizes = match a.value("--sizes")? {
        None => vec![64, 1200],
        Some(list) => list
            .split(',')
            .map(|s| s.parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| cli_err!("bad --sizes {list:?}: {e}"))?,
    };
    if sizes.iter().any(|&s| !(13..=65_507).contains(&s)) {
        return Err(cli_err!("--sizes must be 13 to 65507 bytes"));
    }
    let (rounds, duration, warmup) = if smoke { (1, 0.5, 0.2) } else { (3, 5.0, 1.0) };
    let clients = a.parse_or("--clients", 64usize)?;
    let inflight = a.parse_or("--inflight", 1usize)?;
    let rounds = a.parse_or("--rounds", rounds)?;
    let duration = a.parse_or("--duration", duration)?;
    let warmup = a.parse_or("--warmup", warmup)?;
    let target_dir = target_dir(a.value("--target-dir")?);
    let list = a.value("--servers")?;
    let known = udp_servers(&target_dir);
    if smoke {
        require_twill_in_smoke(&known, list.as_deref(), &[TWILL])?;
    }
    warn_if_twill_missing(&known, list.as_deref());
    let servers = select_servers("udp_bench", list.as_deref(), known)?;
    a.finish()?;
    check_run_shape(rounds, 1, duration, warmup)?;
    if clients == 0 || inflight == 0 {
        return Err(cli_err!("--clients and --inflight must be positive"));
    }
    Ok(Opts {
        sizes,
        clients,
        inflight,
        rounds,
        duration,
        warmup,
        target_dir,
        servers,
    })
}

/// A comparison without twill is not what this benchmark is for: say so
/// where nobody can miss it.
fn warn_if_twill_missing(known: &[ServerSpec], list: Option<&str>) {
    let wanted = list.is_none_or(|l| l.split(',').any(|item| item == TWILL));
    if let Some(twill) = known.iter().find(|s| s.name == TWILL) {
        if wanted && !twill.is_available() {
            eprintln!(
                "udp_bench: WARNING: twill's UDP echo ({}) is not built: this run measures the \
                 baselines only",
                twill.program.display()
            );
        }
    }
}

fn run(o: &Opts) -> i32 {
    let loader = o.target_dir.join("udp_loadgen");
    if !loader.is_file() {
        eprintln!(
            "udp_bench: {} not found (build twill-bench first)",
            loader.display()
        );
        return 2;
    }
    let loader = Loader::new(loader, o.duration, o.warmup);
    print_run_header("twill UDP echo benchmark", &this_command("udp_bench"));
    println!(
        "- {} round(s), {} s measured after {} s warm-up; {} clients, {} datagram(s) in flight each",
        o.rounds, o.duration, o.warmup, o.clients, o.inflight
    );
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}", names.join(", "));
    println!();

    let mut rotation = Rotation::new();
    let mut all: Vec<(usize, Rounds)> = Vec::new();
    for &size in &o.sizes {
        let label = format!("{size} B");
        let samples = rotation.rounds(&label, o.rounds, &o.servers, |round, server| {
            let s = run_one(o, &loader, server, size)?;
            print_round(
                round,
                o.rounds,
                format_args!(
                    "{size:>5} B {:<13} {:>8.0} msg/s  p50 {:>7.1} us  p99 {:>7.1} us  \
                     lost {:>4} | {:>8.0} msgs per server CPU-s",
                    server.name,
                    s.msgs_per_s,
                    s.p50_us,
                    s.p99_us,
                    s.lost,
                    s.msgs_per_cpu_s(),
                ),
                &s.cpu,
                o.duration,
            );
            Ok(s)
        });
        all.push((size, samples));
    }
    print_table(o, &all);
    rotation.exit_status("udp_bench")
}

fn run_one(o: &Opts, loader: &Loader, spec: &ServerSpec, size: usize) -> Result<Sample, String> {
    let addr = free_udp_addr().map_err(|e| format!("no free UDP port: {e}"))?;
    let mut server = ProbedServer::start(spec, &Endpoint::Udp(addr), READY_TIMEOUT)?;
    let mut cmd = loader.command([
        ("--clients", o.clients.to_string()),
        ("--size", size.to_string()),
        ("--inflight", o.inflight.to_string()),
    ]);
    cmd.arg("--addr").arg(addr.to_string());
    let run = loader.run(cmd, &mut server)?;
    drop(server);
    Ok(Sample {
        msgs: run.num("msgs")?,
        msgs_per_s: run.num("msgs_per_s")?,
        p50_us: run.num("p50_us")?,
        p99_us: run.num("p99_us")?,
        lost: run.num("lost")?,
        cpu: run.window,
    })
}

fn print_table(o: &Opts, all: &[(usize, Rounds)]) {
    println!(
        "\nUDP echo — {} clients × {} datagram(s) in flight; median of {} round(s), {} s each \
         (ratios: datagrams per server CPU-second, median of per-round ratios; lost: datagrams \
         resent after 200 ms, measured windows of all rounds)\n",
        o.clients, o.inflight, o.rounds, o.duration
    );
    println!(
        "| server | size B | msgs/s | p50 µs | p99 µs | server CPU % | server CPU-s \
         | msgs per server CPU-s | vs {TOKIO} | vs {CEILING} | lost |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (size, samples) in all {
        for server in &o.servers {
            let ok = successes(samples, &server.name);
            if ok.is_empty() {
                println!("| {} | {size} | failed | | | | | | | | |", server.name);
                continue;
            }
            let med =
                |f: &dyn Fn(&Sample) -> f64| median(&ok.iter().map(|s| f(s)).collect::<Vec<_>>());
            println!(
                "| {} | {size} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                server.name,
                fmt(med(&|s| s.msgs_per_s), 0),
                fmt(med(&|s| s.p50_us), 1),
                fmt(med(&|s| s.p99_us), 1),
                fmt(med(&|s| s.cpu.server_cpu_s / o.duration * 100.0), 0),
                fmt(med(&|s| s.cpu.server_cpu_s), 2),
                fmt(med(&|s| s.msgs_per_cpu_s()), 0),
                fmt_ratio(ratio_to(
                    samples,
                    &server.name,
                    TOKIO,
                    Sample::msgs_per_cpu_s
                )),
                fmt_ratio(ratio_to(
                    samples,
                    &server.name,
                    CEILING,
                    Sample::msgs_per_cpu_s
                )),
                ok.iter().map(|s| s.lost).sum::<f64>(),
            );
        }
    }
}
