//! The echo part: twill's group against one reactor and against tokio's
//! multi-thread runtime, per server CPU-second and per second.
//!
//! The method is `echo_bench`'s: for each scenario, round after round,
//! every server in turn (the order rotating, [`Rotation`]) is started,
//! loaded by `loadgen` through a [`Loader`], which reads the server's
//! CPU (all its threads) from `/proc` at the edges of the measured window,
//! and killed. Ratios are medians of per-round ratios.

use std::path::Path;
use std::time::Duration;

use twill_bench::echo::{run_on_tcp, Sample};
use twill_bench::measure::Loader;
use twill_bench::median;
use twill_bench::report::{fmt, fmt_ratio};
use twill_bench::rotation::{ratio_to, successes, Rotation, Samples};
use twill_bench::server::ServerSpec;

use super::Opts;

pub use twill_bench::echo::Scenario;

const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The reference on one core.
const TWILL: &str = "twill";
/// The reference on several.
const TOKIO_MT: &str = "tokio_mt";

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

/// Runs every scenario over every server and prints a table for each,
/// then the targets.
pub fn run(o: &Opts, rotation: &mut Rotation) {
    let loader = Loader::new(o.target_dir.join("loadgen"), o.duration, o.warmup);
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("\n## echo: {}", names.join(", "));
    let mut all = Vec::new();
    for sc in &o.scenarios {
        println!(
            "\n### {}: {} conns, {} B, {} in flight\n",
            sc.name, sc.conns, sc.size, sc.inflight
        );
        let samples = rotation.rounds(&sc.name, o.rounds, &o.servers, |round, server| {
            let s = run_on_tcp(&loader, server, sc, o.threads, READY_TIMEOUT)?;
            s.print_round(
                round,
                o.rounds,
                &format!("{:<15}", server.name),
                7,
                o.duration,
            );
            Ok(s)
        });
        print_table(o, sc, &samples);
        all.push(samples);
    }
    print_targets(o, &all);
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
        let ok = successes(samples, &server.name);
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
            fmt_ratio(ratio_to(samples, &server.name, TWILL, per_cpu_s)),
            fmt_ratio(ratio_to(samples, &server.name, TOKIO_MT, per_cpu_s)),
            fmt_ratio(ratio_to(samples, &server.name, TWILL, per_s)),
            fmt_ratio(ratio_to(samples, &server.name, TOKIO_MT, per_s)),
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
                    fmt_ratio(ratio_to(samples, name, reference, per_cpu_s)),
                    fmt_ratio(ratio_to(samples, name, reference, per_s))
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
    fn servers_by_workers() {
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
