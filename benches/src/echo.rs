//! What the stream-echo runners (`echo_bench`, `unix_bench` and
//! `group_bench`'s echo part) share: their load shapes, what one run under
//! `loadgen` gives, and its line in the round-by-round log.

use std::time::Duration;

use crate::measure::{CpuWindow, Loader, LoaderRun};
use crate::report::print_round;
use crate::server::{RunningServer, ServerSpec};
use crate::{cli_err, CliError, FRAME_HEADER};

/// A load shape: connections × message size × messages in flight.
pub struct Scenario {
    /// As given, `CONNSxSIZExINFLIGHT`.
    pub name: String,
    pub conns: usize,
    /// Bytes a message, its length header included.
    pub size: usize,
    pub inflight: usize,
}

impl Scenario {
    /// Parses `CONNSxSIZExINFLIGHT`; a message must be larger than its
    /// length header, as `loadgen` requires.
    pub fn parse(name: &str) -> Result<Scenario, CliError> {
        let bad = || cli_err!("bad scenario {name:?}: expected CONNSxSIZExINFLIGHT");
        let parts: Vec<usize> = name
            .split('x')
            .map(|p| p.parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        match parts[..] {
            [conns, size, inflight] if conns > 0 && size > FRAME_HEADER && inflight > 0 => {
                Ok(Scenario {
                    name: name.to_string(),
                    conns,
                    size,
                    inflight,
                })
            }
            _ => Err(bad()),
        }
    }

    /// `loadgen`'s flags for this load, for
    /// [`Loader::command`](crate::measure::Loader::command).
    pub fn loadgen_args(&self) -> [(&'static str, String); 3] {
        [
            ("--conns", self.conns.to_string()),
            ("--size", self.size.to_string()),
            ("--inflight", self.inflight.to_string()),
        ]
    }
}

/// One server's numbers from one round.
pub struct Sample {
    /// Messages echoed in the measured window.
    pub msgs: f64,
    pub msgs_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Where the machine's CPU went over the window.
    pub cpu: CpuWindow,
}

impl Sample {
    /// The figures of `loadgen`'s `RESULT` line and the CPU window.
    pub fn from_run(run: &LoaderRun) -> Result<Sample, String> {
        Ok(Sample {
            msgs: run.num("msgs")?,
            msgs_per_s: run.num("msgs_per_s")?,
            p50_us: run.num("p50_us")?,
            p99_us: run.num("p99_us")?,
            cpu: run.window,
        })
    }

    /// Server CPU per message, in µs.
    pub fn cpu_us_per_msg(&self) -> f64 {
        self.cpu.server_cpu_s * 1e6 / self.msgs
    }

    /// Messages per server CPU-second (NaN if the server took no CPU).
    pub fn msgs_per_cpu_s(&self) -> f64 {
        if self.cpu.server_cpu_s > 0.0 {
            self.msgs / self.cpu.server_cpu_s
        } else {
            f64::NAN
        }
    }

    /// Prints the run's round line ([`print_round`]): `label` (padded by
    /// the caller), msgs/s, the latencies `latency_width` characters wide,
    /// server CPU per message and where the CPU went over the `duration` s
    /// window.
    pub fn print_round(
        &self,
        round: usize,
        rounds: usize,
        label: &str,
        latency_width: usize,
        duration: f64,
    ) {
        print_round(
            round,
            rounds,
            format_args!(
                "{label} {:>8.0} msg/s  p50 {:>w$.1} us  p99 {:>w$.1} us  {:>5.2} us/msg",
                self.msgs_per_s,
                self.p50_us,
                self.p99_us,
                self.cpu_us_per_msg(),
                w = latency_width,
            ),
            &self.cpu,
            duration,
        );
    }
}

/// Starts `spec` on TCP (ready once it says `listening on`, within
/// `ready_timeout`), runs `loader` (`loadgen`) against it with `sc`'s load
/// on `threads` event-loop threads, and kills it.
pub fn run_on_tcp(
    loader: &Loader,
    spec: &ServerSpec,
    sc: &Scenario,
    threads: usize,
    ready_timeout: Duration,
) -> Result<Sample, String> {
    let mut server = RunningServer::start(spec, ready_timeout)?;
    let mut cmd = loader.command(sc.loadgen_args());
    cmd.arg("--addr").arg(server.addr.to_string());
    cmd.arg("--threads").arg(threads.to_string());
    let run = loader.run(cmd, &mut server)?;
    drop(server);
    Sample::from_run(&run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios() {
        let sc = Scenario::parse("1000x64x1").unwrap();
        assert_eq!((sc.conns, sc.size, sc.inflight), (1000, 64, 1));
        assert!(Scenario::parse("1000x4x1").is_err());
        assert!(Scenario::parse("64x16").is_err());
        assert!(Scenario::parse("0x16x1").is_err());
    }
}
