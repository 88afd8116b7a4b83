//! The header, the per-round lines, the tables and the summary.

use twill_bench::median;
use twill_bench::report::{fmt, fmt_ratio, print_run_header, this_command};
use twill_bench::rotation::{ratio_to, successes};
use twill_bench::server::ServerSpec;

use super::{Opts, Sample, Samples, Scenario, TOKIO, TWILL};

pub fn print_header(o: &Opts) {
    print_run_header("twill TLS benchmark", &this_command("tls_bench"));
    println!(
        "- {} round(s), {} s measured after {} s warm-up, load threads: {}",
        o.rounds, o.duration, o.warmup, o.threads
    );
    println!(
        "- certificate: ECDSA P-256, self-signed for localhost (rcgen); clients: rustls 0.23 \
         with the ring provider, TLS 1.2 and 1.3 offered, no session resumption"
    );
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}", names.join(", "));
}

pub fn print_round(o: &Opts, sc: &Scenario, round: usize, server: &ServerSpec, s: &Sample) {
    println!(
        "round {}/{} {:<13} {:>9.0} {}/s {:>8.1} MiB/s  p50 {:>7} us  p99 {:>7} us  \
         {:>7.2} us/{} | CPU %: server {:.0}, loader {:.0}, ksoftirqd {:.0}, other {:.0}, \
         steal {:.0} | {}{}",
        round + 1,
        o.rounds,
        server.name,
        s.per_s(),
        sc.unit(),
        s.mib_per_s(),
        fmt(s.p50_us, 1),
        fmt(s.p99_us, 1),
        s.cpu_us_per_unit(),
        sc.unit(),
        s.server_cpu_pct(),
        s.cpu.loader_pct,
        s.cpu.ksoftirqd_pct,
        s.cpu.other_pct,
        s.cpu.steal_pct,
        s.negotiated.as_deref().unwrap_or("plain TCP"),
        if s.cpu.interference() {
            "  [interference]"
        } else {
            ""
        }
    );
}

/// Median over rounds of the per-round ratio of units per server
/// CPU-second between `name` and `reference`.
fn paired_ratio(samples: &Samples, name: &str, reference: &str) -> f64 {
    ratio_to(samples, name, reference, Sample::per_cpu_s)
}

/// The lowest server CPU per unit over the rounds.
fn best_cpu_per_unit(samples: &Samples, name: &str) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .flatten()
        .map(Sample::cpu_us_per_unit)
        .fold(f64::NAN, f64::min)
}

fn med(ok: &[&Sample], f: &dyn Fn(&Sample) -> f64) -> f64 {
    median(&ok.iter().map(|s| f(s)).collect::<Vec<_>>())
}

pub fn print_table(o: &Opts, sc: &Scenario, samples: &Samples) {
    let u = sc.unit();
    println!(
        "\n{}: {}; median of {} round(s), {} s each (ratios: {u}s per server CPU-second, \
         median of per-round ratios; best: the round with the least server CPU per {u})\n",
        sc.name,
        sc.describe(),
        o.rounds,
        o.duration
    );
    println!(
        "| server | {u}/s | MiB/s | p50 µs | p99 µs | server CPU % | loader CPU % | ksoftirqd % \
         | other load % | server CPU µs/{u} | {u}s per server CPU-s | MiB per server CPU-s \
         | vs {TOKIO} | vs {TWILL} | best µs/{u} | best vs {TWILL} |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let twill_best = best_cpu_per_unit(samples, TWILL);
    for server in &o.servers {
        let ok = successes(samples, &server.name);
        if ok.is_empty() {
            println!("| {} | failed |{}", server.name, " |".repeat(15));
            continue;
        }
        let best = best_cpu_per_unit(samples, &server.name);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            server.name,
            fmt(med(&ok, &|s| s.per_s()), 0),
            fmt(med(&ok, &|s| s.mib_per_s()), 1),
            fmt(med(&ok, &|s| s.p50_us), 1),
            fmt(med(&ok, &|s| s.p99_us), 1),
            fmt(med(&ok, &|s| s.server_cpu_pct()), 0),
            fmt(med(&ok, &|s| s.cpu.loader_pct), 0),
            fmt(med(&ok, &|s| s.cpu.ksoftirqd_pct), 0),
            fmt(med(&ok, &|s| s.cpu.other_pct), 0),
            fmt(med(&ok, &|s| s.cpu_us_per_unit()), 2),
            fmt(med(&ok, &|s| s.per_cpu_s()), 0),
            fmt(
                med(&ok, &|s| s.bytes / s.cpu.server_cpu_s / (1024.0 * 1024.0)),
                1
            ),
            fmt_ratio(paired_ratio(samples, &server.name, TOKIO)),
            fmt_ratio(paired_ratio(samples, &server.name, TWILL)),
            fmt(best, 2),
            fmt_ratio(twill_best / best),
        );
    }
    let negotiated: Vec<String> = o
        .servers
        .iter()
        .filter_map(|s| {
            let n = successes(samples, &s.name)
                .iter()
                .find_map(|x| x.negotiated.clone())?;
            Some(format!("{} {n}", s.name))
        })
        .collect();
    if !negotiated.is_empty() {
        println!("\nnegotiated: {}", negotiated.join("; "));
    }
}

/// The TLS server and its plain twin.
const PAIRS: [(&str, &str); 2] = [(TWILL, "twill_plain"), (TOKIO, "tokio_plain")];

pub fn print_summary(o: &Opts, all: &[Samples]) {
    println!("\n## Summary\n");
    println!(
        "twill against tokio-rustls: units per server CPU-second, twill's over tokio-rustls's \
         (target ≥ 1.00×)\n"
    );
    println!(
        "| scenario | unit | median of per-round ratios | best round vs best round | target |"
    );
    println!("|---|---|---:|---:|---|");
    for (sc, samples) in o.scenarios.iter().zip(all) {
        let ratio = paired_ratio(samples, TWILL, TOKIO);
        let best = best_cpu_per_unit(samples, TOKIO) / best_cpu_per_unit(samples, TWILL);
        // Judged on the ratios as printed, to two decimals.
        let at_least_one = |r: f64| (r * 100.0).round() >= 100.0;
        let verdict = match (ratio.is_finite(), at_least_one(ratio), at_least_one(best)) {
            (false, _, _) => "not measured",
            (true, true, true) => "met",
            (true, true, false) | (true, false, true) => "mixed",
            (true, false, false) => "not met",
        };
        println!(
            "| {} | {} | {} | {} | {verdict} |",
            sc.name,
            sc.unit(),
            fmt_ratio(ratio),
            fmt_ratio(best)
        );
    }
    println!(
        "\nWhat TLS costs: server CPU per unit with TLS and on plain TCP (the same program \
         with `--plain`), medians; the plain run's units per CPU-second over the TLS run's is \
         how many times more work the server does without TLS\n"
    );
    println!(
        "| scenario | server | TLS µs/unit | plain µs/unit | TLS adds µs/unit | plain / TLS per CPU-s |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (sc, samples) in o.scenarios.iter().zip(all) {
        for (tls, plain) in PAIRS {
            let (t, p) = (successes(samples, tls), successes(samples, plain));
            if t.is_empty() || p.is_empty() {
                continue;
            }
            let (tu, pu) = (
                med(&t, &|s| s.cpu_us_per_unit()),
                med(&p, &|s| s.cpu_us_per_unit()),
            );
            println!(
                "| {} | {tls} | {} | {} | {} | {} |",
                sc.name,
                fmt(tu, 2),
                fmt(pu, 2),
                fmt(tu - pu, 2),
                fmt_ratio(paired_ratio(samples, plain, tls)),
            );
        }
    }
}
