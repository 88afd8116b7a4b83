//! `echo_bench`: runs echo servers side by side under `loadgen` and compares
//! how much server CPU each spends per message.
//!
//! ```text
//! echo_bench [--scenario NAME[,NAME..]|all] [--rounds 3] [--duration 5]
//!            [--warmup 1] [--threads 1] [--servers LIST] [--target-dir DIR]
//!            [--smoke]
//! ```
//!
//! Servers are programs that take the listen address as their first argument
//! and report `listening on ADDR` on stderr (possibly after a log prefix).
//! The defaults are those of [`twill_bench::server::echo_servers`]: twill's
//! Protocol echo, its streams (`async fn`) echo and its codec-layer echo,
//! the raw `polling` loop (the ceiling), `async-io`, tokio (current-thread
//! and multi-thread), and asyncio and uvloop (Protocol and streams) and
//! Twisted from the suite's virtualenv; a missing one is
//! skipped with a warning. `--servers` picks some of them by name or adds
//! others as `NAME=PATH`. The target directory is `--target-dir`, else
//! `$TWILL_BENCH_TARGET_DIR`, else the directory this binary is in.
//!
//! Scenarios are `CONNSxSIZExINFLIGHT`; the presets (the default set, also
//! `all`) are `64x16x1`, `64x16x16`, `16x4096x4` and `1000x64x1`.
//!
//! For each scenario and round, every server runs once (the order rotates
//! each round, so machine drift hits all alike): the server is started
//! (`RUST_LOG=info`), `loadgen` runs against it, and the server's CPU time
//! (utime + stime from `/proc/PID/stat`) is read when `loadgen` prints
//! `MARK measure_start` and `MARK measure_end`, i.e. over the measured
//! window only; then the server is killed. Loader and servers share the
//! machine's cores, so throughput alone says little; server CPU per message
//! is the figure to compare.
//!
//! The report gives, per server, medians over rounds of msgs/s, p50/p99
//! latency, server CPU %, CPU µs per message and messages per server
//! CPU-second, and that last figure as a ratio to `raw_polling`, to `twill`
//! and to `tokio_ct` (median of the per-round ratios). Tables are markdown. Each round
//! also shows where the machine's CPU went over the window — server,
//! loader, the kernel's `ksoftirqd` threads, everything else, hypervisor
//! steal — and is flagged `[interference]` when other work took a sizeable
//! share, so a noisy round can be told from a slow server.
//!
//! `--smoke` is one round of one scenario, 1 s after 0.2 s of warm-up, for
//! CI. Any failed run (a verification error, a crash, a timeout) makes the
//! exit status non-zero. Every child process is bounded in time and killed
//! at the end of its run.

use std::path::PathBuf;
use std::process::exit;
use std::time::Duration;

use twill_bench::echo::{run_on_tcp, Scenario};
use twill_bench::measure::Loader;
use twill_bench::rotation::Rotation;
use twill_bench::server::{echo_servers, select_servers, target_dir, ServerSpec};
use twill_bench::{check_run_shape, parsed_or_exit, Args, CliError};

mod report;

use report::{print_header, print_table};

const PRESETS: [&str; 4] = ["64x16x1", "64x16x16", "16x4096x4", "1000x64x1"];
const CEILING: &str = "raw_polling";
const TWILL: &str = "twill";
const TOKIO: &str = "tokio_ct";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The parsed command line.
struct Opts {
    scenarios: Vec<Scenario>,
    rounds: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    target_dir: PathBuf,
    servers: Vec<ServerSpec>,
}

fn main() {
    let opts = parsed_or_exit("echo_bench", parse());
    exit(run(&opts));
}

fn parse() -> Result<Opts, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let smoke = a.flag("--smoke");
    let mut names: Vec<String> = a
        .values("--scenario")?
        .iter()
        .flat_map(|v| v.split(',').map(str::to_string))
        .collect();
    if names.is_empty() && smoke {
        names = vec![PRESETS[0].to_string()];
    } else if names.is_empty() || names.iter().any(|n| n == "all") {
        names = PRESETS.iter().map(|s| s.to_string()).collect();
    }
    let scenarios = names
        .iter()
        .map(|n| Scenario::parse(n))
        .collect::<Result<_, _>>()?;
    let (rounds, duration, warmup) = if smoke { (1, 1.0, 0.2) } else { (3, 5.0, 1.0) };
    let rounds = a.parse_or("--rounds", rounds)?;
    let duration = a.parse_or("--duration", duration)?;
    let warmup = a.parse_or("--warmup", warmup)?;
    let threads = a.parse_or("--threads", 1usize)?;
    let target_dir = target_dir(a.value("--target-dir")?);
    let servers = select_servers(
        "echo_bench",
        a.value("--servers")?.as_deref(),
        echo_servers(&target_dir),
    )?;
    a.finish()?;
    check_run_shape(rounds, threads, duration, warmup)?;
    Ok(Opts {
        scenarios,
        rounds,
        duration,
        warmup,
        threads,
        target_dir,
        servers,
    })
}

const USAGE: &str = "usage: echo_bench [--scenario NAME[,NAME..]|all] [--rounds 3] \
[--duration 5] [--warmup 1] [--threads 1] [--servers NAME|NAME=PATH,..] \
[--target-dir DIR] [--smoke]
scenarios: CONNSxSIZExINFLIGHT, presets 64x16x1 64x16x16 16x4096x4 1000x64x1 (default: all)
servers: twill twill_async twill_codec raw_polling async_io tokio_ct tokio_mt asyncio uvloop
asyncio_streams uvloop_streams twisted
(default: all found)";

fn run(o: &Opts) -> i32 {
    let loadgen = o.target_dir.join("loadgen");
    if !loadgen.is_file() {
        eprintln!(
            "echo_bench: {} not found (build twill-bench first)",
            loadgen.display()
        );
        return 2;
    }
    let loader = Loader::new(loadgen, o.duration, o.warmup);
    print_header(o);
    let mut rotation = Rotation::new();
    for sc in &o.scenarios {
        println!(
            "\n## {}: {} conns, {} B, {} in flight\n",
            sc.name, sc.conns, sc.size, sc.inflight
        );
        let samples = rotation.rounds(&sc.name, o.rounds, &o.servers, |round, server| {
            let s = run_on_tcp(&loader, server, sc, o.threads, READY_TIMEOUT)?;
            s.print_round(
                round,
                o.rounds,
                &format!("{:<15}", server.name),
                6,
                o.duration,
            );
            Ok(s)
        });
        print_table(o, sc, &samples);
    }
    rotation.exit_status("echo_bench")
}
