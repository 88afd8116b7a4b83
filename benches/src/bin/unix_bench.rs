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

use std::path::{Path, PathBuf};
use std::process::{exit, ExitStatus};
use std::time::Duration;

use twill_bench::echo::{Sample, Scenario};
use twill_bench::measure::Loader;
use twill_bench::report::{fmt, fmt_ratio, print_run_header, this_command};
use twill_bench::rotation::{ratio_to, successes, Rotation, Samples};
use twill_bench::server::{
    on_unix_socket, require_twill_in_smoke, select_servers, target_dir, unix_servers, Endpoint,
    ProbedServer, RunningServer, ServerProcess, ServerSpec,
};
use twill_bench::{check_run_shape, median, parsed_or_exit, Args, CliError};

const USAGE: &str = "usage: unix_bench [--scenario NAME[,NAME..]] [--rounds 3] [--duration 5] \
[--warmup 1] [--servers NAME|NAME=PATH,..] [--target-dir DIR] [--smoke]
scenarios: CONNSxSIZExINFLIGHT, default 64x16x1,64x4096x4
servers: twill_unix twill_tcp tokio_unix tokio_tcp (default: all found)";

const DEFAULT_SCENARIOS: [&str; 2] = ["64x16x1", "64x4096x4"];
const TWILL_UNIX: &str = "twill_unix";
const TWILL_TCP: &str = "twill_tcp";
const TOKIO_UNIX: &str = "tokio_unix";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

struct Opts {
    scenarios: Vec<Scenario>,
    rounds: usize,
    duration: f64,
    warmup: f64,
    target_dir: PathBuf,
    servers: Vec<ServerSpec>,
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
    let opts = parsed_or_exit("unix_bench", parse());
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
    if names.is_empty() {
        names = DEFAULT_SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    let scenarios = names
        .iter()
        .map(|n| Scenario::parse(n))
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
        loader: Loader::new(loadgen, o.duration, o.warmup),
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
            let s = run_one(&ctx, server, sc)?;
            let label = format!("{:<11} {:<4}", server.name, transport(server));
            s.print_round(round, o.rounds, &label, 6, o.duration);
            Ok(s)
        });
        print_table(o, sc, &samples);
    }
    rotation.exit_status("unix_bench")
}

struct Ctx {
    loader: Loader,
    sockets: PathBuf,
}

/// A started server of either kind; killed when dropped.
enum Started {
    Unix(ProbedServer),
    Tcp(RunningServer),
}

impl ServerProcess for Started {
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

fn run_one(ctx: &Ctx, spec: &ServerSpec, sc: &Scenario) -> Result<Sample, String> {
    let mut cmd = ctx.loader.command(sc.loadgen_args());
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
    let run = ctx.loader.run(cmd, &mut server)?;
    drop(server);
    Sample::from_run(&run)
}

/// A socket path for server `name`, short enough for `sun_path` (108
/// bytes) under any usual temporary directory.
fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

fn print_table(o: &Opts, sc: &Scenario, samples: &Samples<Sample>) {
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
        let ok = successes(samples, &server.name);
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
            fmt_ratio(ratio_to(
                samples,
                &server.name,
                TOKIO_UNIX,
                Sample::msgs_per_cpu_s
            )),
            fmt_ratio(ratio_to(
                samples,
                &server.name,
                TWILL_TCP,
                Sample::msgs_per_cpu_s
            )),
        );
    }
}
