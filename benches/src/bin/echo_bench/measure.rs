//! Running one server under loadgen and sampling CPU time from `/proc`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use twill_bench::measure::{CpuWindow, Probe};
use twill_bench::parse_kv;
use twill_bench::server::{forward_lines, Reaper, RunningServer, ServerSpec};

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
    let mut lg = lg
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start loadgen: {e}"))?;
    let (tx, lg_out) = mpsc::channel();
    forward_lines(lg.stdout.take().expect("piped stdout"), tx);
    let mut lg = Reaper(lg);

    let deadline = Instant::now() + Duration::from_secs_f64(o.warmup + o.duration) + LOADGEN_GRACE;
    let lg_pid = lg.0.id();
    let probe = || Probe::take(pid, Some(lg_pid), &ctx.ksoftirqd);
    let (mut t0, mut t1, mut result) = (None, None, None);
    loop {
        match lg_out.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l == "MARK measure_start" => t0 = Some(probe()),
            Ok(l) if l == "MARK measure_end" => t1 = Some(probe()),
            Ok(l) if l.starts_with("RESULT ") => result = Some(parse_kv(&l)),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err("loadgen did not finish in time (killed)".into())
            }
        }
    }
    let status = lg.0.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(match status.code() {
            Some(3) => "VERIFY ERROR: the echo did not match what was sent".into(),
            Some(2) => "loadgen could not connect".into(),
            _ => format!("loadgen failed ({status})"),
        });
    }
    if let Some(st) = server.exited() {
        return Err(format!("server exited during the run ({st})"));
    }
    drop(server);

    let (Some(Ok(t0)), Some(Ok(t1)), Some(r)) = (t0, t1, result) else {
        return Err("loadgen output lacked MARK/RESULT lines, or /proc was unreadable".into());
    };
    let w = CpuWindow::between(&t0, &t1, ctx.clk, o.duration);
    let num = |k: &str| -> Result<f64, String> {
        r.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("RESULT line lacks {k}"))
    };
    Ok(Sample {
        msgs: num("msgs")?,
        msgs_per_s: num("msgs_per_s")?,
        p50_us: num("p50_us")?,
        p99_us: num("p99_us")?,
        server_cpu_s: w.server_cpu_s,
        client_cpu_pct: w.loader_pct,
        ksoftirqd_pct: w.ksoftirqd_pct,
        other_pct: w.other_pct,
        steal_pct: w.steal_pct,
    })
}
