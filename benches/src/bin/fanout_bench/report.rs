//! The header, the per-round lines and the markdown table.

use std::collections::HashMap;

use twill_bench::median;
use twill_bench::report::{fmt, fmt_ratio, print_run_header, this_command};
use twill_bench::server::ServerSpec;

use super::{Opts, Sample, TWILL};

/// Other load plus steal (% of one CPU) above which a round is flagged.
const INTERFERENCE_PCT: f64 = 15.0;

pub fn print_round(o: &Opts, round: usize, server: &ServerSpec, s: &Sample) {
    println!(
        "round {}/{} {:<10} {:>9.0} deliveries/s ({:>6.0} msgs/s fanned out)  p50 {:>7.1} us  \
         p99 {:>7.1} us  {:>6.1} ns/delivery | CPU %: server {:.0}, loader {:.0}, ksoftirqd {:.0}, \
         other {:.0}, steal {:.0} | RSS {:.1} MiB{}",
        round + 1,
        o.rounds,
        server.name,
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
        if s.other_pct + s.steal_pct > INTERFERENCE_PCT {
            "  [interference]"
        } else {
            ""
        }
    );
}

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
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}", names.join(", "));
}

/// Median over rounds of the per-round ratio `f(name) / f(reference)`.
fn paired_ratio(
    samples: &HashMap<String, Vec<Option<Sample>>>,
    name: &str,
    reference: &str,
    f: fn(&Sample) -> f64,
) -> f64 {
    let (Some(a), Some(b)) = (samples.get(name), samples.get(reference)) else {
        return f64::NAN;
    };
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| Some(f(x.as_ref()?) / f(y.as_ref()?)))
        .collect();
    median(&ratios)
}

pub fn print_table(o: &Opts, samples: &HashMap<String, Vec<Option<Sample>>>) {
    let c = &o.load;
    println!(
        "\n{} clients × {} B × {} outstanding; median of {} round(s), {} s each \
         (vs {TWILL}: median of per-round ratios)\n",
        c.clients,
        c.size,
        c.window,
        o.rounds,
        c.duration.as_secs_f64()
    );
    println!(
        "| server | delivered msgs/s | p50 µs | p99 µs | server CPU % | loader CPU % \
         | ksoftirqd % | other load % | server CPU ns/delivery | deliveries per server CPU-s \
         | msgs/s vs {TWILL} | per CPU-s vs {TWILL} | server RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for server in &o.servers {
        let ok: Vec<&Sample> = samples
            .get(&server.name)
            .map(|v| v.iter().flatten().collect())
            .unwrap_or_default();
        if ok.is_empty() {
            println!("| {} | failed | | | | | | | | | | | |", server.name);
            continue;
        }
        let med = |f: &dyn Fn(&Sample) -> f64| median(&ok.iter().map(|s| f(s)).collect::<Vec<_>>());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            server.name,
            fmt(med(&Sample::per_s), 0),
            fmt(med(&|s| s.p50_us), 1),
            fmt(med(&|s| s.p99_us), 1),
            fmt(med(&Sample::server_cpu_pct), 0),
            fmt(med(&|s| s.loader_cpu_pct), 0),
            fmt(med(&|s| s.ksoftirqd_pct), 0),
            fmt(med(&|s| s.other_pct), 0),
            fmt(med(&Sample::cpu_ns_per_delivery), 1),
            fmt(med(&Sample::per_cpu_s), 0),
            fmt_ratio(paired_ratio(samples, &server.name, TWILL, Sample::per_s)),
            fmt_ratio(paired_ratio(
                samples,
                &server.name,
                TWILL,
                Sample::per_cpu_s
            )),
            fmt(med(&|s| s.rss_mib), 1),
        );
    }
}
