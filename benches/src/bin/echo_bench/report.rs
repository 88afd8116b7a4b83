//! The header, the per-round lines and the markdown tables.

use twill_bench::echo::{Sample, Scenario};
use twill_bench::median;
use twill_bench::report::{fmt, fmt_ratio, print_run_header, this_command};
use twill_bench::rotation::{ratio_to, successes, Samples};

use super::{Opts, CEILING, TOKIO, TWILL};

pub fn print_header(o: &Opts) {
    print_run_header("twill echo benchmark", &this_command("echo_bench"));
    println!(
        "- {} round(s), {} s measured after {} s warm-up, loadgen threads: {}",
        o.rounds, o.duration, o.warmup, o.threads
    );
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}", names.join(", "));
}

/// The lowest server CPU per message over the rounds: the round that ran in
/// the machine's fast mode, if any did.
fn best_cpu_per_msg(samples: &Samples<Sample>, name: &str) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .flatten()
        .map(Sample::cpu_us_per_msg)
        .fold(f64::NAN, f64::min)
}

pub fn print_table(o: &Opts, sc: &Scenario, samples: &Samples<Sample>) {
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
        let ok = successes(samples, &server.name);
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
            fmt(med(&|s| s.cpu.server_cpu_s / o.duration * 100.0), 0),
            fmt(med(&|s| s.cpu.ksoftirqd_pct), 0),
            fmt(med(&|s| s.cpu.other_pct), 0),
            fmt(cpu_per_msg, 2),
            fmt(med(&|s| s.msgs_per_cpu_s()), 0),
            fmt_ratio(ratio_to(
                samples,
                &server.name,
                CEILING,
                Sample::msgs_per_cpu_s
            )),
            fmt_ratio(ratio_to(
                samples,
                &server.name,
                TWILL,
                Sample::msgs_per_cpu_s
            )),
            fmt_ratio(ratio_to(
                samples,
                &server.name,
                TOKIO,
                Sample::msgs_per_cpu_s
            )),
            fmt(best, 2),
            fmt_ratio(twill_best / best),
        );
    }
}
