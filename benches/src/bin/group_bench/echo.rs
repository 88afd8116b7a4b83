//! The echo part: twill's group against one reactor and against tokio's
//! multi-thread runtime, per server CPU-second and per second.
//!
//! The method is `echo_bench`'s: for each scenario, round after round,
//! every server in turn (the order rotating, [`Rotation`]) is started,
//! loaded by `loadgen` through [`run_loader`], which reads the server's
//! CPU (all its threads) from `/proc` at the edges of the measured window,
//! and killed. Ratios are medians of per-round ratios.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use twill_bench::measure::{run_loader, CpuWindow, INTERFERENCE_PCT};
use twill_bench::report::{fmt, fmt_ratio};
use twill_bench::rotation::{Rotation, Samples};
use twill_bench::server::{RunningServer, ServerSpec};
use twill_bench::{cli_err, clk_tck, ksoftirqd_pids, median, CliError};

use super::Opts;

const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Beyond warm-up + duration: loadgen's connect budget plus slack.
const LOADER_GRACE: Duration = Duration::from_secs(20);
/// The reference on one core.
const TWILL: &str = "twill";
/// The reference on several.
const TOKIO_MT: &str = "tokio_mt";

/// A load shape: connections × message size × messages in flight.
pub struct Scenario {
    name: String,
    conns: usize,
    size: usize,
    inflight: usize,
}

impl Scenario {
    /// Parses `CONNSxSIZExINFLIGHT`.
    pub fn parse(name: &str) -> Result<Scenario, CliError> {
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
}

/// The echo servers this part compares, with `workers` workers where
/// they have several:
///
/// | name | what |
/// |---|---|
/// | `twill` | `echo_server ADDR`: one reactor, this thread |
/// | `twill_1w` | `echo_server ADDR 1 --placement least`: a group of one worker and its boss |
/// | `twill_Nw` | `echo_server ADDR N`: N workers, the boss placing by least connections |
/// | `twill_Nw_reuse` | `echo_server ADDR N --placement reuse-port`: N workers, each listening (SO_REUSEPORT) |
/// | `tokio_mt` | `tokio_echo ADDR multi_thread N`: tokio's work-stealing runtime, N workers |
/// | `tokio_ct` | `tokio_echo ADDR current_thread` |
pub fn servers(target_dir: &Path, workers: usize) -> Vec<ServerSpec> {
    let twill = target_dir.join("examples/echo_server");
    let tokio = target_dir.join("examples/tokio_echo");
    let n = workers.to_string();
    let mut specs = vec![
        ServerSpec::new(TWILL, &twill, &[]),
        ServerSpec::new("twill_1w", &twill, &["1", "--placement", "least"]),
    ];
    if workers > 1 {
        specs.push(ServerSpec::new(
            &format!("twill_{n}w"),
            &twill,
            &[&n, "--placement", "least"],
        ));
    }
    specs.push(ServerSpec::new(
        &format!("twill_{n}w_reuse"),
        &twill,
        &[&n, "--placement", "reuse-port"],
    ));
    specs.push(ServerSpec::new(TOKIO_MT, &tokio, &["multi_thread", &n]));
    specs.push(ServerSpec::new("tokio_ct", &tokio, &["current_thread"]));
    specs
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

/// Runs every scenario over every server and prints a table for each,
/// then the targets.
pub fn run(o: &Opts, rotation: &mut Rotation) {
    let loadgen = o.target_dir.join("loadgen");
    let clk = clk_tck() as f64;
    let ksoftirqd = ksoftirqd_pids();
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("\n## echo: {}", names.join(", "));
    let mut all = Vec::new();
    for sc in &o.scenarios {
        println!(
            "\n### {}: {} conns, {} B, {} in flight\n",
            sc.name, sc.conns, sc.size, sc.inflight
        );
        let samples = rotation.rounds(&sc.name, o.rounds, &o.servers, |round, server| {
            let s = run_one(o, &loadgen, clk, &ksoftirqd, server, sc)?;
            print_round(o, round, server, &s);
            Ok(s)
        });
        print_table(o, sc, &samples);
        all.push(samples);
    }
    print_targets(o, &all);
}

fn run_one(
    o: &Opts,
    loadgen: &Path,
    clk: f64,
    ksoftirqd: &[u32],
    spec: &ServerSpec,
    sc: &Scenario,
) -> Result<Sample, String> {
    let mut server = RunningServer::start(spec, READY_TIMEOUT)?;
    let mut cmd = Command::new(loadgen);
    cmd.arg("--addr").arg(server.addr.to_string());
    for (k, v) in [
        ("--conns", sc.conns.to_string()),
        ("--size", sc.size.to_string()),
        ("--inflight", sc.inflight.to_string()),
        ("--duration", o.duration.to_string()),
        ("--warmup", o.warmup.to_string()),
        ("--threads", o.threads.to_string()),
    ] {
        cmd.arg(k).arg(v);
    }
    let deadline = Duration::from_secs_f64(o.warmup + o.duration) + LOADER_GRACE;
    let run = run_loader(cmd, server.pid, ksoftirqd, clk, o.duration, deadline)?;
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

fn print_round(o: &Opts, round: usize, server: &ServerSpec, s: &Sample) {
    let w = &s.cpu;
    println!(
        "round {}/{} {:<15} {:>8.0} msg/s  p50 {:>7.1} us  p99 {:>7.1} us  \
         {:>5.2} us/msg | CPU %: server {:.0}, loader {:.0}, ksoftirqd {:.0}, other {:.0}, \
         steal {:.0}{}",
        round + 1,
        o.rounds,
        server.name,
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

/// Median over rounds of the per-round ratio of `figure` between `name`
/// and `reference`.
fn paired_ratio(
    samples: &Samples<Sample>,
    name: &str,
    reference: &str,
    figure: fn(&Sample) -> f64,
) -> f64 {
    let (Some(a), Some(b)) = (samples.get(name), samples.get(reference)) else {
        return f64::NAN;
    };
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| Some(figure(x.as_ref()?) / figure(y.as_ref()?)))
        .collect();
    median(&ratios)
}

fn per_cpu_s(s: &Sample) -> f64 {
    s.msgs_per_cpu_s()
}

fn per_s(s: &Sample) -> f64 {
    s.msgs_per_s
}

fn print_table(o: &Opts, sc: &Scenario, samples: &Samples<Sample>) {
    println!(
        "\n{} — {} conns × {} B × {} in flight; median of {} round(s), {} s each \
         (ratios: median of per-round ratios)\n",
        sc.name, sc.conns, sc.size, sc.inflight, o.rounds, o.duration
    );
    println!(
        "| server | msgs/s | p50 µs | p99 µs | server CPU % | loader CPU % | server CPU µs/msg \
         | msgs per server CPU-s | per CPU-s vs {TWILL} | per CPU-s vs {TOKIO_MT} \
         | msgs/s vs {TWILL} | msgs/s vs {TOKIO_MT} |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for server in &o.servers {
        let ok: Vec<&Sample> = samples
            .get(&server.name)
            .map(|v| v.iter().flatten().collect())
            .unwrap_or_default();
        if ok.is_empty() {
            println!("| {} | failed | | | | | | | | | | |", server.name);
            continue;
        }
        let med = |f: &dyn Fn(&Sample) -> f64| median(&ok.iter().map(|s| f(s)).collect::<Vec<_>>());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            server.name,
            fmt(med(&|s| s.msgs_per_s), 0),
            fmt(med(&|s| s.p50_us), 1),
            fmt(med(&|s| s.p99_us), 1),
            fmt(med(&|s| s.cpu.server_cpu_s / o.duration * 100.0), 0),
            fmt(med(&|s| s.cpu.loader_pct), 0),
            fmt(med(&|s| s.cpu_us_per_msg()), 2),
            fmt(med(&|s| s.msgs_per_cpu_s()), 0),
            fmt_ratio(paired_ratio(samples, &server.name, TWILL, per_cpu_s)),
            fmt_ratio(paired_ratio(samples, &server.name, TOKIO_MT, per_cpu_s)),
            fmt_ratio(paired_ratio(samples, &server.name, TWILL, per_s)),
            fmt_ratio(paired_ratio(samples, &server.name, TOKIO_MT, per_s)),
        );
    }
}

/// The targets, per scenario: each twill group against one
/// reactor per CPU-second (≥ 1.0×: the handoff costs nothing that shows),
/// and against tokio's multi-thread runtime (≥ 1.0× on the
/// 1,000-connection scenario).
fn print_targets(o: &Opts, all: &[Samples<Sample>]) {
    let groups: Vec<&str> = o
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.starts_with("twill_"))
        .collect();
    if groups.is_empty() || o.scenarios.is_empty() {
        return;
    }
    let heads: Vec<&str> = o.scenarios.iter().map(|s| s.name.as_str()).collect();
    println!(
        "\n### targets (median of per-round ratios; per server CPU-second, in brackets msgs/s)\n"
    );
    println!("| ratio | {} |", heads.join(" | "));
    println!("|---|{}", "---:|".repeat(heads.len()));
    let mut rows: Vec<(String, &str, &str)> = Vec::new();
    for g in &groups {
        rows.push((format!("`{g}` / `{TWILL}` (≥ 1.0×)"), g, TWILL));
    }
    for g in &groups {
        rows.push((
            format!("`{g}` / `{TOKIO_MT}` (≥ 1.0× at 1,000 conns)"),
            g,
            TOKIO_MT,
        ));
    }
    for (label, name, reference) in rows {
        let cells: Vec<String> = all
            .iter()
            .map(|samples| {
                format!(
                    "{} ({})",
                    fmt_ratio(paired_ratio(samples, name, reference, per_cpu_s)),
                    fmt_ratio(paired_ratio(samples, name, reference, per_s))
                )
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_and_servers() {
        let sc = Scenario::parse("1000x64x1").unwrap();
        assert_eq!((sc.conns, sc.size, sc.inflight), (1000, 64, 1));
        assert!(Scenario::parse("1000x4x1").is_err());
        assert!(Scenario::parse("64x16").is_err());
        let names: Vec<String> = servers(Path::new("/t"), 2)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            [
                "twill",
                "twill_1w",
                "twill_2w",
                "twill_2w_reuse",
                "tokio_mt",
                "tokio_ct"
            ]
        );
        let one: Vec<String> = servers(Path::new("/t"), 1)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            one,
            [
                "twill",
                "twill_1w",
                "twill_1w_reuse",
                "tokio_mt",
                "tokio_ct"
            ]
        );
    }
}
