//! The header, the per-round lines and the markdown tables.

use std::collections::HashMap;

use twill_bench::measure::INTERFERENCE_PCT;
use twill_bench::median;
use twill_bench::report::{fmt, fmt_ratio, print_run_header, this_command};

use twill_bench::server::ServerSpec;

use super::{Opts, Sample, Scenario, CEILING, TOKIO, TWILL};

pub fn print_round(o: &Opts, round: usize, server: &ServerSpec, s: &Sample) {
    println!(
        "round {}/{} {:<15} {:>8.0} msg/s  p50 {:>6.1} us  p99 {:>6.1} us  \
         {:>5.2} us/msg | CPU %: server {:.0}, loader {:.0}, ksoftirqd {:.0}, other {:.0}, \
         steal {:.0}{}",
        round + 1,
        o.rounds,
        server.name,
        s.msgs_per_s,
        s.p50_us,
        s.p99_us,
        s.cpu_us_per_msg(),
        s.server_cpu_s / o.duration * 100.0,
        s.client_cpu_pct,
        s.ksoftirqd_pct,
        s.other_pct,
        s.steal_pct,
        if s.other_pct + s.steal_pct > INTERFERENCE_PCT {
            "  [interference]"
        } else {
            ""
        }
    );
}

pub fn print_header(o: &Opts) {
    print_run_header("twill echo benchmark", &this_command("echo_bench"));
    println!(
        "- {} round(s), {} s measured after {} s warm-up, loadgen threads: {}",
        o.rounds, o.duration, o.warmup, o.threads
    );
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}", names.join(", "));
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

/// The lowest server CPU per message over the rounds: the round that ran in
/// the machine's fast mode, if any did.
fn best_cpu_per_msg(samples: &HashMap<String, Vec<Option<Sample>>>, name: &str) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .flatten()
        .map(Sample::cpu_us_per_msg)
        .fold(f64::NAN, f64::min)
}

pub fn print_table(o: &Opts, sc: &Scenario, samples: &HashMap<String, Vec<Option<Sample>>>) {
    println!(
        "\n{} — {} conns × {} B × {} in flight; median of {} round(s), {} s each \
         (ratios: messages per server CPU-second, median of per-round ratios; \
         best: the round with the least server CPU per message)\n",
        sc.name, sc.conns, sc.size, sc.inflight, o.rounds, o.duration
    );
    println!(
        "| server | msgs/s | p50 µs | p99 µs | server CPU % | ksoftirqd % | other load % | server CPU µs/msg \
         | msgs per server CPU-s | vs {CEILING} | vs {TWILL} | vs {TOKIO} | best µs/msg | best vs {TWILL} |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let twill_best = best_cpu_per_msg(samples, TWILL);
    for server in &o.servers {
        let ok: Vec<&Sample> = samples
            .get(&server.name)
            .map(|v| v.iter().flatten().collect())
            .unwrap_or_default();
        if ok.is_empty() {
            println!("| {} | failed | | | | | | | | | | | | |", server.name);
            continue;
        }
        let med = |f: &dyn Fn(&Sample) -> f64| median(&ok.iter().map(|s| f(s)).collect::<Vec<_>>());
        let cpu_per_msg = med(&|s| s.cpu_us_per_msg());
        let best = best_cpu_per_msg(samples, &server.name);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            server.name,
            fmt(med(&|s| s.msgs_per_s), 0),
            fmt(med(&|s| s.p50_us), 1),
            fmt(med(&|s| s.p99_us), 1),
            fmt(med(&|s| s.server_cpu_s / o.duration * 100.0), 0),
            fmt(med(&|s| s.ksoftirqd_pct), 0),
            fmt(med(&|s| s.other_pct), 0),
            fmt(cpu_per_msg, 2),
            fmt(med(&|s| s.msgs_per_cpu_s()), 0),
            fmt_ratio(paired_ratio(samples, &server.name, CEILING)),
            fmt_ratio(paired_ratio(samples, &server.name, TWILL)),
            fmt_ratio(paired_ratio(samples, &server.name, TOKIO)),
            fmt(best, 2),
            fmt_ratio(twill_best / best),
        );
    }
}
