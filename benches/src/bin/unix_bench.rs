//! `unix_bench`: stream echo over Unix sockets against the same over TCP,
//! per server CPU-second, under `loadgen`.
//!
//! ```text
//! unix_bench [--scenario NAME[,NAME..]] [--rounds 3] [--duration 5]
//!            [--warmup 1] [--servers LIST] [--target-dir DIR] [--smoke]
//! ```
//!
//! Servers ([`twill_bench::server::unix_servers`]): twill's `echo_server`
//! on `unix:PATH` (`twill_unix`) and on `127.0.0.1:PORT` (`twill_tcp`),
//! tokio's echo on a `UnixListener` (`tokio_unix_echo`) and on TCP
//! (`tokio_echo`, current-thread). A Unix server gets a fresh socket path
//! in a temporary directory made for the run (removed at the end) and is
//! ready once the path accepts a connection; a TCP one reports
//! `listening on ADDR` as in `echo_bench`. A server not built is skipped
//! with a warning, except twill's in a `--smoke` run, which is an error.
//!
//! Scenarios are `echo_bench`'s `CONNSxSIZExINFLIGHT`: `64x16x1` (small
//! messages, one at a time) and `64x4096x4` (4 KiB, four in flight) by
//! default. `loadgen` drives both transports alike (`--unix PATH` or
//! `--addr`): the same framing, every echoed byte verified. The method is
//! `echo_bench`'s (rotation, CPU from `/proc` over the measured window,
//! medians of per-round ratios); the table adds, per server, its transport
//! and the ratio of its messages per server CPU-second to `tokio_unix` and
//! to `twill_tcp`.
//!
//! `--smoke` is one round of each scenario, 0.5 s after 0.2 s of warm-up.
//! A failed run (a verification error, a crash, a timeout) makes the exit
//! status non-zero.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{exit, Command, ExitStatus};
use std::time::Duration;

use twill_bench::measure::{run_loader, CpuWindow, INTERFERENCE_PCT};
use twill_bench::report::{fmt, fmt_ratio, print_run_header, this_command};
use twill_bench::rotation::Rotation;
use twill_bench::server::{
    on_unix_socket, require_twill_in_smoke, select_servers, target_dir, unix_servers, Endpoint,
    ProbedServer, RunningServer, ServerSpec,
};
use twill_bench::{check_run_shape, cli_err, clk_tck, ksoftirqd_pids, median, Args, CliError};

const USAGE: &str = "usage: unix_bench [--scenario NAME[,NAME..]] [--rounds 3] [--duration 5] \
[--warmup 1] [--servers NAME|NAME=PATH,..] [--target-dir DIR] [--smoke]
scenarios: CONNSxSIZExINFLIGHT, default 64x16x1,64x4096x4
servers: twill_unix twill_tcp tokio_unix tokio_tcp (default: all found)";

const DEFAULT_SCENARIOS: [&str; 2] = ["64x16x1", "64x4096x4"];
const TWILL_UNIX: &str = "twill_unix";
const TWILL_TCP: &str = "twill_tcp";
const TOKIO_UNIX: &str = "tokio_unix";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Beyond warm-up + duration: loadgen's connect budget plus slack.
const LOADER_GRACE: Duration = Duration::from_secs(20);

struct Opts {
    scenarios: Vec<Scenario>,
    rounds: usize,
    duration: f64,
    warmup: f64,
    target_dir: PathBuf,
    servers: Vec<ServerSpec>,
}

struct Scenario {
    name: String,
    conns: usize,
    size: usize,
    inflight: usize,
}

/// One server's numbers from one round.
struct Sample {
    msgs: f64,
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    cpu: CpuWindow,
}

impl Sample {
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu.server_cpu_s * 1e6 / self.msgs
    }
    fn msgs_per_cpu_s(&self) -> f64 {
        if self.cpu.server_cpu_s > 0.0 {
            self.msgs / self.cpu.server_cpu_s
        } else {
            f64::NAN
        }
    }
}

/// The run's directory of socket paths, removed with everything in it
/// when dropped.
struct SocketDir(PathBuf);

impl SocketDir {
    fn create() -> std::io::Result<SocketDir> {
        let dir = std::env::temp_dir().join(format!("twill-unix-bench-{}", std::process::id()));
        // A directory left by a killed run of the same pid is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        Ok(SocketDir(dir))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("unix_bench: {e}");
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
    let mut names: Vec<String> = a
        .values("--scenario")?
        .iter()
        .flat_map(|v| v.split(',').map(str::to_string))
        .collect();
    if names.is_empty() {
        names = DEFAULT_SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    let scenarios = names
        .iter()
        .map(|n| parse_scenario(n))
        .collect::<Result<_, _>>()?;
    let (rounds, duration, warmup) = if smoke { (1, 0.5, 0.2) } else { (3, 5.0, 1.0) };
    let rounds = a.parse_or("--rounds", rounds)?;
    let duration = a.parse_or("--duration", duration)?;
    let warmup = a.parse_or("--warmup", warmup)?;
    let target_dir = target_dir(a.value("--target-dir")?);
    let list = a.value("--servers")?;
    let known = unix_servers(&target_dir);
    if smoke {
        require_twill_in_smoke(&known, list.as_deref(), &[TWILL_UNIX, TWILL_TCP])?;
    }
    let servers = select_servers("unix_bench", list.as_deref(), known)?;
    a.finish()?;
    check_run_shape(rounds, 1, duration, warmup)?;
    Ok(Opts {
        scenarios,
        rounds,
        duration,
        warmup,
        target_dir,
        servers,
    })
}

fn parse_scenario(name: &str) -> Result<Scenario, CliError> {
    let bad = || cli_err!("bad scenario {name:?}: expected CONNSxSIZExINFLIGHT");
    let parts: Vec<usize> = name
        .split('x')
        .map(|p| p.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    match parts[..] {
        [conns, size, inflight] if conns > 0 && size > 4 && inflight > 0 => Ok(Scenario {
            name: name.to_string(),
            conns,
            size,
            inflight,
        }),
        _ => Err(bad()),
    }
}

fn run(o: &Opts) -> i32 {
    let loadgen = o.target_dir.join("loadgen");
    if !loadgen.is_file() {
        eprintln!(
            "unix_bench: {} not found (build twill-bench first)",
            loadgen.display()
        );
        return 2;
    }
    let sockets = match SocketDir::create() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("unix_bench: cannot make a directory for the sockets: {e}");
            return 2;
        }
    };
    let ctx = Ctx {
        loadgen,
        clk: clk_tck() as f64,
        ksoftirqd: ksoftirqd_pids(),
        sockets: sockets.0.clone(),
    };
    print_run_header(
        "twill Unix-socket echo benchmark",
        &this_command("unix_bench"),
    );
    println!(
        "- {} round(s), {} s measured after {} s warm-up",
        o.rounds, o.duration, o.warmup
    );
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}", names.join(", "));

    let mut rotation = Rotation::new();
    for sc in &o.scenarios {
        println!(
            "\n## {}: {} conns, {} B, {} in flight\n",
            sc.name, sc.conns, sc.size, sc.inflight
        );
        let samples = rotation.rounds(&sc.name, o.rounds, &o.servers, |round, server| {
            let s = run_one(o, &ctx, server, sc)?;
            print_round(o, round, server, &s);
            Ok(s)
        });
        print_table(o, sc, &samples);
    }
    rotation.exit_status("unix_bench")
}

struct Ctx {
    loadgen: PathBuf,
    clk: f64,
    ksoftirqd: Vec<u32>,
    sockets: PathBuf,
}

/// A started server of either kind; killed when dropped.
enum Started {
    Unix(ProbedServer),
    Tcp(RunningServer),
}

impl Started {
    fn pid(&self) -> u32 {
        match self {
            Started::Unix(s) => s.pid,
            Started::Tcp(s) => s.pid,
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        match self {
            Started::Unix(s) => s.exited(),
            Started::Tcp(s) => s.exited(),
        }
    }
}

fn transport(spec: &ServerSpec) -> &'static str {
    if on_unix_socket(spec) {
        "unix"
    } else {
        "tcp"
    }
}

fn run_one(o: &Opts, ctx: &Ctx, spec: &ServerSpec, sc: &Scenario) -> Result<Sample, String> {
    let mut cmd = Command::new(&ctx.loadgen);
    let mut server = if on_unix_socket(spec) {
        let path = socket_path(&ctx.sockets, &spec.name);
        let _ = std::fs::remove_file(&path);
        let server = ProbedServer::start(spec, &Endpoint::Unix(path.clone()), READY_TIMEOUT)?;
        cmd.arg("--unix").arg(&path);
        Started::Unix(server)
    } else {
        let server = RunningServer::start(spec, READY_TIMEOUT)?;
        cmd.arg("--addr").arg(server.addr.to_string());
        Started::Tcp(server)
    };
    for (k, v) in [
        ("--conns", sc.conns.to_string()),
        ("--size", sc.size.to_string()),
        ("--inflight", sc.inflight.to_string()),
        ("--duration", o.duration.to_string()),
        ("--warmup", o.warmup.to_string()),
    ] {
        cmd.arg(k).arg(v);
    }
    let deadline = Duration::from_secs_f64(o.warmup + o.duration) + LOADER_GRACE;
    let run = run_loader(
        cmd,
        server.pid(),
        &ctx.ksoftirqd,
        ctx.clk,
        o.duration,
        deadline,
    )?;
    if let Some(status) = server.exited() {
        return Err(format!("server exited during the run ({status})"));
    }
    drop(server);
    Ok(Sample {
        msgs: run.num("msgs")?,
        msgs_per_s: run.num("msgs_per_s")?,
        p50_us: run.num("p50_us")?,
        p99_us: run.num("p99_us")?,
        cpu: run.window,
    })
}

/// A socket path for server `name`, short enough for `sun_path` (108
/// bytes) under any usual temporary directory.
fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

fn print_round(o: &Opts, round: usize, server: &ServerSpec, s: &Sample) {
    let w = &s.cpu;
    println!(
        "round {}/{} {:<11} {:<4} {:>8.0} msg/s  p50 {:>6.1} us  p99 {:>6.1} us  \
         {:>5.2} us/msg | CPU %: server {:.0}, loader {:.0}, ksoftirqd {:.0}, other {:.0}, \
         steal {:.0}{}",
        round + 1,
        o.rounds,
        server.name,
        transport(server),
        s.msgs_per_s,
        s.p50_us,
        s.p99_us,
        s.cpu_us_per_msg(),
        w.server_cpu_s / o.duration * 100.0,
        w.loader_pct,
        w.ksoftirqd_pct,
        w.other_pct,
        w.steal_pct,
        if w.other_pct + w.steal_pct > INTERFERENCE_PCT {
            "  [interference]"
        } else {
            ""
        }
    );
}

/// Median over rounds of the per-round ratio of messages per server
/// CPU-second between `name` and `reference`.
fn paired_ratio(
    samples: &HashMap<String, Vec<Option<Sample>>>,
    name: &str,
    reference: &str,
) -> f64 {
    let (Some(a), Some(b)) = (samples.get(name), samples.get(reference)) else {
        return f64::NAN;
    };
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| Some(x.as_ref()?.msgs_per_cpu_s() / y.as_ref()?.msgs_per_cpu_s()))
        .collect();
    median(&ratios)
}

fn print_table(o: &Opts, sc: &Scenario, samples: &HashMap<String, Vec<Option<Sample>>>) {
    println!(
        "\n{} — {} conns × {} B × {} in flight; median of {} round(s), {} s each \
         (ratios: messages per server CPU-second, median of per-round ratios)\n",
        sc.name, sc.conns, sc.size, sc.inflight, o.rounds, o.duration
    );
    println!(
        "| server | transport | msgs/s | p50 µs | p99 µs | server CPU % | server CPU µs/msg \
         | msgs per server CPU-s | vs {TOKIO_UNIX} | vs {TWILL_TCP} |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for server in &o.servers {
        let ok: Vec<&Sample> = samples
            .get(&server.name)
            .map(|v| v.iter().flatten().collect())
            .unwrap_or_default();
        if ok.is_empty() {
            println!(
                "| {} | {} | failed | | | | | | | |",
                server.name,
                transport(server)
            );
            continue;
        }
        let med = |f: &dyn Fn(&Sample) -> f64| median(&ok.iter().map(|s| f(s)).collect::<Vec<_>>());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            server.name,
            transport(server),
            fmt(med(&|s| s.msgs_per_s), 0),
            fmt(med(&|s| s.p50_us), 1),
            fmt(med(&|s| s.p99_us), 1),
            fmt(med(&|s| s.cpu.server_cpu_s / o.duration * 100.0), 0),
            fmt(med(&|s| s.cpu_us_per_msg()), 2),
            fmt(med(&|s| s.msgs_per_cpu_s()), 0),
            fmt_ratio(paired_ratio(samples, &server.name, TOKIO_UNIX)),
            fmt_ratio(paired_ratio(samples, &server.name, TWILL_TCP)),
        );
    }
}
