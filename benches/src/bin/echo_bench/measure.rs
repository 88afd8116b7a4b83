//! Running one server under loadgen and sampling CPU time from `/proc`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use twill_bench::measure::run_loader;
use twill_bench::server::{RunningServer, ServerSpec};

use super::{Opts, Sample, Scenario};

const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Beyond warm-up + duration: loadgen's connect budget plus slack.
const LOADGEN_GRACE: Duration = Duration::from_secs(20);

/// What every run needs besides the options.
pub struct Ctx {
    pub loadgen: PathBuf,
    pub clk: f64,
    pub ksoftirqd: Vec<u32>,
}

/// Starts the server, runs loadgen against it, samples the server's CPU
/// time over the measured window, kills the server.
pub fn run_one(o: &Opts, ctx: &Ctx, server: &ServerSpec, sc: &Scenario) -> Result<Sample, String> {
    let mut server = RunningServer::start(server, READY_TIMEOUT)?;
    let (pid, addr) = (server.pid, server.addr);

    let mut lg = Command::new(&ctx.loadgen);
    lg.arg("--addr").arg(addr.to_string());
    for (k, v) in [
        ("--conns", sc.conns.to_string()),
        ("--size", sc.size.to_string()),
        ("--inflight", sc.inflight.to_string()),
        ("--duration", o.duration.to_string()),
        ("--warmup", o.warmup.to_string()),
        ("--threads", o.threads.to_string()),
    ] {
        lg.arg(k).arg(v);
    }
    let deadline = Duration::from_secs_f64(o.warmup + o.duration) + LOADGEN_GRACE;
    let run = run_loader(lg, pid, &ctx.ksoftirqd, ctx.clk, o.duration, deadline)?;
    if let Some(st) = server.exited() {
        return Err(format!("server exited during the run ({st})"));
    }
    drop(server);
    let w = &run.window;
    Ok(Sample {
        msgs: run.num("msgs")?,
        msgs_per_s: run.num("msgs_per_s")?,
        p50_us: run.num("p50_us")?,
        p99_us: run.num("p99_us")?,
        server_cpu_s: w.server_cpu_s,
        client_cpu_pct: w.loader_pct,
        ksoftirqd_pct: w.ksoftirqd_pct,
        other_pct: w.other_pct,
        steal_pct: w.steal_pct,
    })
}
