//! The header, the per-round lines and the markdown tables.

use twill_bench::measure::INTERFERENCE_PCT;
use twill_bench::median;
use twill_bench::report::{fmt, fmt_ratio, print_run_header, this_command};
use twill_bench::rotation;
use twill_bench::server::ServerSpec;

use super::load::{SLOW_RCVBUF, SLOW_TICK};
use super::{Opts, Sample, Samples, TWILL};

/// One line per run, as it ends.
pub fn print_round(o: &Opts, round: usize, case: usize, server: &ServerSpec, s: &Sample) {
    let name = match o.slow[case] {
        p if p > 0.0 => format!("{} slow{p}%", server.name),
        _ => server.name.clone(),
    };
    let slow = if o.config(case).slow > 0 {
        format!(
            " | slow clients: received {} msgs / {:.1} KiB, missed {}, behind {}, \
             disconnected {}; the server dropped {}",
            s.slow.received,
            s.slow.bytes as f64 / 1024.0,
            s.slow.missed,
            s.slow.behind,
            s.slow.disconnected,
            s.server_dropped.map_or("n/a".into(), |d| d.to_string())
        )
    } else {
        String::new()
    };
    println!(
        "round {}/{} {:<10} {:>9.0} deliveries/s ({:>6.0} msgs/s fanned out)  p50 {:>7.1} us  \
         p99 {:>7.1} us  {:>6.1} ns/delivery | CPU %: server {:.0}, loader {:.0}, ksoftirqd {:.0}, \
         other {:.0}, steal {:.0} | RSS {:.1} MiB, peak {:.1} MiB, kernel TCP +{:.1} MiB{slow}{}",
        round + 1,
        o.rounds,
        name,
        s.per_s(),
        s.completed / s.window_s,
        s.p50_us,
        s.p99_us,
        s.cpu_ns_per_delivery(),
        s.server_cpu_pct(),
        s.loader_cpu_pct,
        s.ksoftirqd_pct,
        s.other_pct,
        s.steal_pct,
        s.rss_mib,
        s.peak_mib,
        s.tcp_mib,
        if s.other_pct + s.steal_pct > INTERFERENCE_PCT {
            "  [interference]"
        } else {
            ""
        }
    );
}

/// The report's title and the lines that say what ran.
pub fn print_header(o: &Opts) {
    print_run_header("twill fan-out benchmark", &this_command("fanout_bench"));
    let c = &o.load;
    println!(
        "- {} clients × {} B messages × {} outstanding per client; each message goes to the \
         {} others",
        c.clients,
        c.size,
        c.window,
        c.clients - 1
    );
    println!(
        "- {} round(s), {} s measured after {} s warm-up; loader: one thread in this process",
        o.rounds,
        c.duration.as_secs_f64(),
        c.warmup.as_secs_f64()
    );
    if o.slow.iter().any(|&p| p > 0.0) {
        let cases: Vec<String> = (0..o.slow.len())
            .map(|i| format!("{} % ({} clients)", o.slow[i], o.config(i).slow))
            .collect();
        println!(
            "- slow clients: {}; each reads at most {} B/s (every {} ms) with a {} B SO_RCVBUF \
             and sends like the others; deliveries, latency and CPU-s figures count attentive \
             clients only",
            cases.join(", "),
            c.slow_rate,
            SLOW_TICK.as_millis(),
            SLOW_RCVBUF
        );
    }
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}", names.join(", "));
}

/// Median over rounds of the per-round ratio `f(a) / f(b)`, `a` and `b`
/// being (server, case) keys.
fn paired_ratio(
    samples: &Samples,
    a: (&str, usize),
    b: (&str, usize),
    f: fn(&Sample) -> f64,
) -> f64 {
    match (
        samples.get(&(a.0.to_string(), a.1)),
        samples.get(&(b.0.to_string(), b.1)),
    ) {
        (Some(a), Some(b)) => rotation::paired_ratio(a, b, f),
        _ => f64::NAN,
    }
}

/// The server's count of messages dropped for slow clients, NaN when it
/// gives none.
fn dropped(s: &Sample) -> f64 {
    s.server_dropped.map_or(f64::NAN, |d| d as f64)
}

/// The successful samples of a server in a case.
fn successes<'a>(samples: &'a Samples, name: &str, case: usize) -> Vec<&'a Sample> {
    samples
        .get(&(name.to_string(), case))
        .map(|v| v.iter().flatten().collect())
        .unwrap_or_default()
}

/// The median over `ok` of `f`.
fn med(ok: &[&Sample], f: &dyn Fn(&Sample) -> f64) -> f64 {
    median(&ok.iter().map(|s| f(s)).collect::<Vec<_>>())
}

/// The table of case `case`: one row per server.
pub fn print_table(o: &Opts, case: usize, samples: &Samples) {
    let c = o.config(case);
    let slow = c.slow > 0;
    println!(
        "\n{} clients × {} B × {} outstanding{}; median of {} round(s), {} s each \
         (vs {TWILL}: median of per-round ratios)\n",
        c.clients,
        c.size,
        c.window,
        if slow {
            format!(
                ", {} of them ({} %) slow readers at {} B/s: figures for the {} attentive \
                 clients",
                c.slow,
                o.slow[case],
                c.slow_rate,
                c.clients - c.slow
            )
        } else {
            String::new()
        },
        o.rounds,
        c.duration.as_secs_f64()
    );
    let (slow_head, slow_rule) = if slow {
        (
            " slow: msgs received | slow: MiB received | slow: msgs missed | slow: msgs behind \
             at end | slow: disconnected | slow: msgs dropped, server's count |",
            "---:|---:|---:|---:|---:|---:|",
        )
    } else {
        ("", "")
    };
    println!(
        "| server | delivered msgs/s | p50 µs | p99 µs | server CPU % | loader CPU % \
         | ksoftirqd % | other load % | server CPU ns/delivery | deliveries per server CPU-s \
         | msgs/s vs {TWILL} | per CPU-s vs {TWILL} | server RSS MiB | server peak RSS MiB | kernel TCP MiB, peak rise |\
         {slow_head}"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{slow_rule}"
    );
    for server in &o.servers {
        let name = server.name.as_str();
        let ok = successes(samples, name, case);
        if ok.is_empty() {
            let cols = if slow { 19 } else { 13 };
            println!("| {name} | failed |{}", " |".repeat(cols));
            continue;
        }
        let m = |f: &dyn Fn(&Sample) -> f64| med(&ok, f);
        let slow_cols = if slow {
            format!(
                " {} | {} | {} | {} | {} | {} |",
                fmt(m(&|s| s.slow.received as f64), 0),
                fmt(m(&|s| s.slow.bytes as f64 / (1024.0 * 1024.0)), 2),
                fmt(m(&|s| s.slow.missed as f64), 0),
                fmt(m(&|s| s.slow.behind as f64), 0),
                fmt(m(&|s| s.slow.disconnected as f64), 0),
                fmt(m(&dropped), 0),
            )
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{slow_cols}",
            name,
            fmt(m(&Sample::per_s), 0),
            fmt(m(&|s| s.p50_us), 1),
            fmt(m(&|s| s.p99_us), 1),
            fmt(m(&Sample::server_cpu_pct), 0),
            fmt(m(&|s| s.loader_cpu_pct), 0),
            fmt(m(&|s| s.ksoftirqd_pct), 0),
            fmt(m(&|s| s.other_pct), 0),
            fmt(m(&Sample::cpu_ns_per_delivery), 1),
            fmt(m(&Sample::per_cpu_s), 0),
            fmt_ratio(paired_ratio(
                samples,
                (name, case),
                (TWILL, case),
                Sample::per_s
            )),
            fmt_ratio(paired_ratio(
                samples,
                (name, case),
                (TWILL, case),
                Sample::per_cpu_s
            )),
            fmt(m(&|s| s.rss_mib), 1),
            fmt(m(&|s| s.peak_mib), 1),
            fmt(m(&|s| s.tcp_mib), 1),
        );
    }
}

/// With `--slow 0,N..`: each server's attentive deliveries per server
/// CPU-second with slow clients against the same server without, paired by
/// round, and its peak memory both ways.
pub fn print_slow_summary(o: &Opts, samples: &Samples) {
    let Some(base) = o.slow.iter().position(|&p| p == 0.0) else {
        return;
    };
    let cases: Vec<usize> = (0..o.slow.len()).filter(|&c| c != base).collect();
    if cases.is_empty() {
        return;
    }
    println!(
        "\nslow clients against none: attentive deliveries per server CPU-second and peak \
         memory (medians; the ratio is the median of per-round ratios, same server)\n"
    );
    println!(
        "| server | slow % | per CPU-s, no slow clients | per CPU-s, with slow clients \
         | with / without | msgs/s with / without | peak RSS MiB without | peak RSS MiB with \
         | kernel TCP MiB without | kernel TCP MiB with | slow: msgs dropped, server's count \
         | slow: msgs missed | slow: disconnected |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for server in &o.servers {
        let name = server.name.as_str();
        let without = successes(samples, name, base);
        for &case in &cases {
            let with = successes(samples, name, case);
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                o.slow[case],
                fmt(med(&without, &Sample::per_cpu_s), 0),
                fmt(med(&with, &Sample::per_cpu_s), 0),
                fmt_ratio(paired_ratio(
                    samples,
                    (name, case),
                    (name, base),
                    Sample::per_cpu_s
                )),
                fmt_ratio(paired_ratio(
                    samples,
                    (name, case),
                    (name, base),
                    Sample::per_s
                )),
                fmt(med(&without, &|s| s.peak_mib), 1),
                fmt(med(&with, &|s| s.peak_mib), 1),
                fmt(med(&without, &|s| s.tcp_mib), 1),
                fmt(med(&with, &|s| s.tcp_mib), 1),
                fmt(med(&with, &dropped), 0),
                fmt(med(&with, &|s| s.slow.missed as f64), 0),
                fmt(med(&with, &|s| s.slow.disconnected as f64), 0),
            );
        }
    }
    if let Some(&case) = cases.first() {
        let r = paired_ratio(samples, (TWILL, case), (TWILL, base), Sample::per_cpu_s);
        if r.is_finite() {
            println!(
                "\n{TWILL}: attentive deliveries per server CPU-second with {} % slow clients: \
                 {} of the figure without",
                o.slow[case],
                fmt_ratio(r)
            );
        }
    }
}
