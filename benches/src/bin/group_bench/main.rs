//! `group_bench`: twill on several cores. How evenly a
//! [`ReactorGroup`](twill::group::ReactorGroup) spreads connections over
//! its workers, what the group costs per message next to one reactor and
//! to tokio's multi-thread runtime, and the fan-out split over workers.
//!
//! ```text
//! group_bench [--parts balance,echo,fanout] [--workers 2] [--conns 8,64,1000]
//!             [--churn 1000] [--scenario 64x16x1,1000x64x1] [--rounds 3]
//!             [--duration 5] [--warmup 1] [--threads 1] [--servers LIST]
//!             [--clients 200] [--target-dir DIR] [--smoke]
//! ```
//!
//! Three parts, each run by default:
//!
//! - **balance** ([`balance`]): for each count of `--conns` and each
//!   placement (`round-robin`, `least`, `reuse-port`), `echo_server ADDR
//!   N --placement P` is started with `--workers` workers, that many
//!   connections are opened one after the other (each echoing a message,
//!   checked), then the server is stopped with SIGTERM and its
//!   `worker I: N connections, M open at stop` lines say where they went;
//!   the table gives each worker's count, min, max and spread. A churn
//!   case (`--churn`, 0 to leave it out) opens that many connections with
//!   two lifetimes, alternating: one that stays open, one that closes
//!   after its echo, so what counts is the connections each worker holds
//!   at the end, not those it was given.
//! - **echo** ([`echo`]): `echo_bench`'s method (rotation, server CPU
//!   from `/proc` over the measured window, medians of per-round ratios)
//!   on the scenarios of `--scenario`, over twill on one reactor, twill's
//!   group with 1 worker, with `--workers` workers (least connections)
//!   and with as many on SO_REUSEPORT, and tokio's multi-thread runtime
//!   with `--workers` workers and its current-thread runtime; messages
//!   per server CPU-second and per second, each against twill's one
//!   reactor and against tokio's multi-thread runtime.
//! - **fanout**: `fanout_bench` (run as a program, its report printed as
//!   it comes) with twill's `broadcast_server` on one reactor, the same
//!   with `--threads N` (`twill_Nw`), and the tokio Spreader on the
//!   multi-thread runtime with N workers (`tokio_mt`).
//!
//! `--smoke` is one round of everything, tiny (8 and 64 connections, a
//! churn of 64; the echo's first scenario for 0.5 s after 0.2 s; the
//! fan-out's smoke with 20 clients): CI's check that every part runs.
//! A failed run (a wrong echo, a server that does not stop cleanly, a
//! crash, a timeout) makes the exit status non-zero.

use std::path::PathBuf;
use std::process::{exit, Command, Stdio};

use twill_bench::report::{print_run_header, this_command};
use twill_bench::rotation::Rotation;
use twill_bench::server::{require_twill_in_smoke, select_servers, target_dir, ServerSpec};
use twill_bench::{check_run_shape, cli_err, parsed_or_exit, Args, CliError};

mod balance;
mod echo;

const USAGE: &str = "usage: group_bench [--parts balance,echo,fanout] [--workers 2] \
[--conns 8,64,1000] [--churn 1000] [--scenario 64x16x1,1000x64x1] [--rounds 3] \
[--duration 5] [--warmup 1] [--threads 1] [--servers NAME|NAME=PATH,..] [--clients 200] \
[--target-dir DIR] [--smoke]
parts: balance (placements), echo (throughput), fanout (fanout_bench over workers)
echo servers: twill twill_1w twill_Nw twill_Nw_reuse tokio_mt tokio_ct (N = --workers)";

const PARTS: [&str; 3] = ["balance", "echo", "fanout"];

/// The parsed command line.
pub struct Opts {
    parts: Vec<String>,
    /// Workers of the groups (and of tokio's multi-thread runtime).
    pub workers: usize,
    /// The connection counts of the balance part.
    pub conns: Vec<usize>,
    /// Connections of the balance part's churn case; 0 for none.
    pub churn: usize,
    pub scenarios: Vec<echo::Scenario>,
    pub rounds: usize,
    pub duration: f64,
    pub warmup: f64,
    /// loadgen's event-loop threads.
    pub threads: usize,
    /// Fan-out clients.
    pub clients: usize,
    smoke: bool,
    pub target_dir: PathBuf,
    pub servers: Vec<ServerSpec>,
}

fn main() {
    let opts = parsed_or_exit("group_bench", parse());
    exit(run(&opts));
}

fn list(a: &mut Args, name: &str) -> Result<Vec<String>, CliError> {
    Ok(a.values(name)?
        .iter()
        .flat_map(|v| v.split(',').map(str::to_string))
        .filter(|s| !s.is_empty())
        .collect())
}

fn parse() -> Result<Opts, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let smoke = a.flag("--smoke");
    let mut parts = list(&mut a, "--parts")?;
    if parts.is_empty() {
        parts = PARTS.iter().map(|s| s.to_string()).collect();
    }
    if let Some(p) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
        return Err(cli_err!("unknown part {p:?}: balance, echo or fanout"));
    }
    let workers = a.parse_or("--workers", 2usize)?;
    if !(1..=256).contains(&workers) {
        return Err(cli_err!("--workers must be 1 to 256"));
    }
    let conns = list(&mut a, "--conns")?
        .iter()
        .map(|c| {
            c.parse::<usize>()
                .ok()
                .filter(|&n| (1..=20_000).contains(&n))
                .ok_or_else(|| cli_err!("bad --conns {c:?}: 1 to 20000"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let conns = match (conns.is_empty(), smoke) {
        (false, _) => conns,
        (true, false) => vec![8, 64, 1000],
        (true, true) => vec![8, 64],
    };
    let churn = a.parse_or("--churn", if smoke { 64 } else { 1000 })?;
    let mut names = list(&mut a, "--scenario")?;
    if names.is_empty() {
        names = if smoke {
            vec!["64x16x1".into()]
        } else {
            vec!["64x16x1".into(), "1000x64x1".into()]
        };
    }
    let scenarios = names
        .iter()
        .map(|n| echo::Scenario::parse(n))
        .collect::<Result<_, _>>()?;
    let (rounds, duration, warmup) = if smoke { (1, 0.5, 0.2) } else { (3, 5.0, 1.0) };
    let rounds = a.parse_or("--rounds", rounds)?;
    let duration = a.parse_or("--duration", duration)?;
    let warmup = a.parse_or("--warmup", warmup)?;
    let threads = a.parse_or("--threads", 1usize)?;
    let clients = a.parse_or("--clients", if smoke { 20 } else { 200 })?;
    let target_dir = target_dir(a.value("--target-dir")?);
    let servers_list = a.value("--servers")?;
    a.finish()?;
    check_run_shape(rounds, threads, duration, warmup)?;
    let known = echo::servers(&target_dir, workers);
    let twill: Vec<&str> = known
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.starts_with("twill"))
        .collect();
    if smoke {
        require_twill_in_smoke(&known, servers_list.as_deref(), &twill)?;
    }
    let servers = if parts.iter().any(|p| p == "echo") {
        select_servers("group_bench", servers_list.as_deref(), known)?
    } else {
        Vec::new()
    };
    Ok(Opts {
        parts,
        workers,
        conns,
        churn,
        scenarios,
        rounds,
        duration,
        warmup,
        threads,
        clients,
        smoke,
        target_dir,
        servers,
    })
}

fn run(o: &Opts) -> i32 {
    print_run_header(
        "twill on several cores: ReactorGroup",
        &this_command("group_bench"),
    );
    println!(
        "- {} round(s); workers: {}; echo: {} s measured after {} s warm-up, loadgen threads: {}",
        o.rounds, o.workers, o.duration, o.warmup, o.threads
    );
    let mut rotation = Rotation::new();
    let mut status = 0;
    for part in &o.parts {
        match part.as_str() {
            "balance" => balance::run(o, &mut rotation),
            "echo" => echo::run(o, &mut rotation),
            _ => status = status.max(run_fanout(o)),
        }
    }
    status.max(rotation.exit_status("group_bench"))
}

/// Runs `fanout_bench` with twill's Spreader on one reactor and on
/// `--workers` workers, and tokio's on as many; its report goes straight
/// to this one's output. Returns its exit status (0, or 1 when it failed).
fn run_fanout(o: &Opts) -> i32 {
    println!(
        "\n## fanout: the Spreader on one reactor and on {} workers\n",
        o.workers
    );
    let program = o.target_dir.join("fanout_bench");
    let n = o.workers;
    let mut cmd = Command::new(&program);
    cmd.arg("--target-dir")
        .arg(&o.target_dir)
        .args(["--workers", &n.to_string()])
        .args(["--servers", &format!("twill,twill_{n}w,tokio_mt")])
        .args(["--clients", &o.clients.to_string()])
        .stdin(Stdio::null());
    if o.smoke {
        cmd.arg("--smoke");
    } else {
        cmd.args(["--rounds", &o.rounds.to_string()])
            .args(["--duration", &o.duration.to_string()])
            .args(["--warmup", &o.warmup.to_string()]);
    }
    match cmd.status() {
        Ok(status) if status.success() => 0,
        Ok(status) => {
            println!("FAILED fanout: fanout_bench exited with {status}");
            1
        }
        Err(e) => {
            println!("FAILED fanout: cannot start {}: {e}", program.display());
            1
        }
    }
}
