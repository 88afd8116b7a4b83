//! Where the machine's CPU went over a measured window, from `/proc`: the
//! server's time, the loader's, the kernel's `ksoftirqd` threads', and the
//! rest of the machine's, sampled at both edges of the window.
//!
//! The runners (`echo_bench`, `fanout_bench`, `tls_bench`) take a
//! [`Probe`] when the window opens and another when it closes;
//! [`CpuWindow::between`] turns the pair into the figures their reports
//! print. Those that drive `loadgen` or `udp_loadgen` do it through a
//! [`Loader`], which runs it with [`run_loader`].

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::server::{forward_lines, Reaper, ServerProcess};
use crate::{
    clk_tck, cpu_ticks, ksoftirqd_pids, parse_kv, self_cpu_ticks, system_ticks, total_cpu_ticks,
};

/// Other load plus hypervisor steal, in % of one CPU, above which a round
/// is flagged `[interference]`.
pub const INTERFERENCE_PCT: f64 = 15.0;

/// CPU tick counters sampled at one edge of the measured window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Probe {
    /// The server's `utime + stime`, all threads.
    pub server: u64,
    /// The load generator's.
    pub loader: u64,
    /// The kernel's `ksoftirqd` threads', summed.
    pub ksoftirqd: u64,
    /// The machine's busy time, all CPUs ([`system_ticks`]).
    pub busy: u64,
    /// Time the hypervisor stole, all CPUs.
    pub steal: u64,
}

impl Probe {
    /// Samples the counters now, for server `server` and the loader
    /// `loader` (a process id, or `None` for this process).
    pub fn take(server: u32, loader: Option<u32>, ksoftirqd: &[u32]) -> io::Result<Probe> {
        let (busy, steal) = system_ticks()?;
        Ok(Probe {
            server: cpu_ticks(server)?,
            loader: match loader {
                Some(pid) => cpu_ticks(pid)?,
                None => self_cpu_ticks()?,
            },
            ksoftirqd: total_cpu_ticks(ksoftirqd),
            busy,
            steal,
        })
    }
}

/// What the CPU did between two [`Probe`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuWindow {
    /// The server's CPU time in the window, in seconds.
    pub server_cpu_s: f64,
    /// The loader's CPU, in % of one CPU.
    pub loader_pct: f64,
    /// The `ksoftirqd` threads' CPU, in % of one CPU.
    pub ksoftirqd_pct: f64,
    /// Busy CPU of everything else on the machine (other programs, and the
    /// runner itself when the loader is another process), in % of one
    /// CPU: interference.
    pub other_pct: f64,
    /// CPU time the hypervisor stole, in % of one CPU.
    pub steal_pct: f64,
}

impl CpuWindow {
    /// The window from `t0` to `t1`, `window_s` seconds long, with `clk`
    /// ticks per second.
    pub fn between(t0: &Probe, t1: &Probe, clk: f64, window_s: f64) -> CpuWindow {
        let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / clk;
        let pct = |a: u64, b: u64| secs(a, b) / window_s * 100.0;
        CpuWindow {
            server_cpu_s: secs(t0.server, t1.server),
            loader_pct: pct(t0.loader, t1.loader),
            ksoftirqd_pct: pct(t0.ksoftirqd, t1.ksoftirqd),
            other_pct: (pct(t0.busy, t1.busy)
                - pct(
                    t0.server + t0.loader + t0.ksoftirqd,
                    t1.server + t1.loader + t1.ksoftirqd,
                ))
            .max(0.0),
            steal_pct: pct(t0.steal, t1.steal),
        }
    }

    /// Whether other load and steal took more than [`INTERFERENCE_PCT`].
    pub fn interference(&self) -> bool {
        self.other_pct + self.steal_pct > INTERFERENCE_PCT
    }
}

/// What a load generator run by [`run_loader`] reported.
pub struct LoaderRun {
    /// The fields of its `RESULT key=value ..` line.
    pub result: HashMap<String, String>,
    /// The machine's CPU between its two marks.
    pub window: CpuWindow,
}

impl LoaderRun {
    /// The `RESULT` field `key` as a number.
    pub fn num(&self, key: &str) -> Result<f64, String> {
        self.result
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("RESULT line lacks {key}"))
    }
}

/// Runs a load generator that prints `MARK measure_start`,
/// `MARK measure_end` and a `RESULT` line (`loadgen`, `udp_loadgen`),
/// probing the CPU of server `server_pid` at each mark; it is killed if it
/// has not finished within `deadline`. `window_s` is the measured window's
/// length. Exit status 3 is a verification error, 2 a setup error.
pub fn run_loader(
    mut loader: Command,
    server_pid: u32,
    ksoftirqd: &[u32],
    clk: f64,
    window_s: f64,
    deadline: Duration,
) -> Result<LoaderRun, String> {
    let mut child = loader
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", loader.get_program()))?;
    let (tx, lines) = mpsc::channel();
    forward_lines(child.stdout.take().expect("piped stdout"), tx);
    let mut child = Reaper(child);
    let loader_pid = child.0.id();
    let probe = || Probe::take(server_pid, Some(loader_pid), ksoftirqd);
    let deadline = Instant::now() + deadline;
    let (mut t0, mut t1, mut result) = (None, None, None);
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l == "MARK measure_start" => t0 = Some(probe()),
            Ok(l) if l == "MARK measure_end" => t1 = Some(probe()),
            Ok(l) if l.starts_with("RESULT ") => result = Some(parse_kv(&l)),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err("the load generator did not finish in time (killed)".into())
            }
        }
    }
    let status = child.0.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(match status.code() {
            Some(3) => "VERIFY ERROR: the echo did not match what was sent".into(),
            Some(2) => "the load generator could not set up (connect, bind)".into(),
            _ => format!("the load generator failed ({status})"),
        });
    }
    let (Some(Ok(t0)), Some(Ok(t1)), Some(result)) = (t0, t1, result) else {
        return Err(
            "load generator output lacked MARK/RESULT lines, or /proc was unreadable".into(),
        );
    };
    Ok(LoaderRun {
        result,
        window: CpuWindow::between(&t0, &t1, clk, window_s),
    })
}

/// How long a load generator run by a [`Loader`] may take beyond its
/// warm-up and measured window: its connect (or socket setup) budget plus
/// slack.
pub const LOADER_GRACE: Duration = Duration::from_secs(20);

/// A load generator (`loadgen`, `udp_loadgen`) as the runners drive it,
/// one run a server: the program, the measured window, and what
/// [`run_loader`] needs to read the CPU over it.
pub struct Loader {
    /// The load generator's path.
    pub program: PathBuf,
    /// The measured window, in seconds.
    pub duration: f64,
    /// The warm-up before it, in seconds.
    pub warmup: f64,
    clk: f64,
    ksoftirqd: Vec<u32>,
}

impl Loader {
    /// `program` with a window of `duration` s after `warmup` s; reads the
    /// clock tick and the `ksoftirqd` threads once.
    pub fn new(program: PathBuf, duration: f64, warmup: f64) -> Loader {
        Loader {
            program,
            duration,
            warmup,
            clk: clk_tck() as f64,
            ksoftirqd: ksoftirqd_pids(),
        }
    }

    /// The load generator's command: `args`, each a flag and its value,
    /// then the window's `--duration` and `--warmup`. The caller adds the
    /// server's address and anything else its load generator takes.
    pub fn command<'a>(&self, args: impl IntoIterator<Item = (&'a str, String)>) -> Command {
        let mut cmd = Command::new(&self.program);
        for (flag, value) in args {
            cmd.arg(flag).arg(value);
        }
        cmd.arg("--duration").arg(self.duration.to_string());
        cmd.arg("--warmup").arg(self.warmup.to_string());
        cmd
    }

    /// Runs `cmd` against `server` with [`run_loader`], allowing the
    /// warm-up, the window and [`LOADER_GRACE`]; a server that exited
    /// during the run is a failure too.
    pub fn run(&self, cmd: Command, server: &mut impl ServerProcess) -> Result<LoaderRun, String> {
        let deadline = Duration::from_secs_f64(self.warmup + self.duration) + LOADER_GRACE;
        let run = run_loader(
            cmd,
            server.pid(),
            &self.ksoftirqd,
            self.clk,
            self.duration,
            deadline,
        )?;
        if let Some(status) = server.exited() {
            return Err(format!("server exited during the run ({status})"));
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_figures() {
        let t0 = Probe {
            server: 100,
            loader: 50,
            ksoftirqd: 10,
            busy: 1000,
            steal: 5,
        };
        let t1 = Probe {
            server: 300,
            loader: 230,
            ksoftirqd: 10,
            busy: 1420,
            steal: 15,
        };
        // 2 s at 100 ticks a second.
        let w = CpuWindow::between(&t0, &t1, 100.0, 2.0);
        assert_eq!(w.server_cpu_s, 2.0);
        assert_eq!(w.loader_pct, 90.0);
        assert_eq!(w.ksoftirqd_pct, 0.0);
        assert_eq!(w.other_pct, 20.0);
        assert_eq!(w.steal_pct, 5.0);
        assert!(w.interference());
        assert!(Probe::take(std::process::id(), None, &[]).is_ok());
    }
}
