//! twill's side of the Deferred benchmark (`benches/deferred.sh`), and the
//! step that turns both sides' result lines into the comparison table.
//!
//! The same four workloads as `benches/deferred_twisted.py`, on
//! [`twill::defer::Deferred`]:
//!
//! - `chain`: one Deferred, N callbacks that each add 1, fired with 0 → N
//!   (callbacks per second);
//! - `single`: create a Deferred, add one callback (+1), fire it, read the
//!   result (Deferreds per second);
//! - `steal`: one Deferred, N callbacks that each return `succeed(x + 1)`,
//!   an already-fired Deferred whose result the chain takes over → N
//!   (callbacks per second);
//! - `nested`: N Deferreds, each fired and waiting on the next (its callback
//!   returns an unfired Deferred, then it adds 1); the innermost is fired
//!   last with 0 → N − 1 at the outermost (Deferreds per second).
//!
//! Every result is checked. Each workload is calibrated so that one
//! repetition lasts about `--rep-time` seconds, then timed `--reps` times
//! with `Instant` (monotonic); the median and best repetitions are printed as
//! `RESULT impl=twill round=R workload=chain n=1000 unit=callbacks
//! ops_per_s=… best_ops_per_s=… reps=5 iters=…`.
//!
//! `deferred_bench summarize FILE` reads the `RESULT` lines of both sides
//! (any number of rounds) and prints the table: per workload the median over
//! rounds of each side's ops/s, and their ratio.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use twill::defer::{succeed, Deferred, Failure};
use twill_bench::{cli_err, median, parse_kv, Args, CliError};

const WORKLOADS: [&str; 4] = ["chain", "single", "steal", "nested"];
const TARGET_RATIO: f64 = 50.0;

const USAGE: &str = "\
usage: deferred_bench [--size N] [--single-batch N] [--reps N] [--rep-time S]
                      [--workloads chain,single,steal,nested] [--round R]
       deferred_bench summarize FILE

  --size N          chain length / nesting depth (default 1000)
  --single-batch N  Deferreds per call of the single workload (default 1000)
  --reps N          timed repetitions per workload (default 5)
  --rep-time S      seconds per repetition, after calibration (default 0.1)
  --round R         echoed in the RESULT lines (default 1)";

fn check(workload: &str, got: Result<i64, Failure>, expected: i64) {
    match got {
        Ok(v) if v == expected => {}
        other => panic!("{workload}: got {other:?}, expected {expected}"),
    }
}

fn result_of(d: &Deferred<i64>, workload: &str) -> Result<i64, Failure> {
    d.result()
        .unwrap_or_else(|| panic!("{workload}: the Deferred has no result"))
}

fn chain(n: usize) {
    let d = Deferred::<i64>::new();
    for _ in 0..n {
        d.add_callback(|x: i64| Ok::<_, Failure>(black_box(x + 1)));
    }
    d.callback(0);
    check("chain", result_of(&d, "chain"), n as i64);
}

fn single(n: usize) {
    for i in 0..n as i64 {
        let d = Deferred::<i64>::new();
        d.add_callback(|x: i64| Ok::<_, Failure>(black_box(x + 1)));
        d.callback(black_box(i));
        check("single", result_of(&d, "single"), i + 1);
    }
}

fn steal(n: usize) {
    let d = Deferred::<i64>::new();
    for _ in 0..n {
        d.add_callback(|x: i64| succeed(black_box(x + 1)));
    }
    d.callback(0);
    check("steal", result_of(&d, "steal"), n as i64);
}

fn nested(n: usize) {
    let innermost = Deferred::<i64>::new();
    let mut cur = innermost.clone();
    for _ in 1..n {
        let outer = Deferred::<i64>::new();
        let inner = cur;
        outer.add_callback(move |_: i64| inner);
        outer.add_callback(|x: i64| Ok::<_, Failure>(black_box(x + 1)));
        outer.callback(0);
        cur = outer;
    }
    if n > 1 && cur.result().is_some() {
        panic!("nested: the outermost Deferred is not waiting");
    }
    innermost.callback(0);
    check("nested", result_of(&cur, "nested"), n as i64 - 1);
}

/// A workload doing `n` operations per call, and the unit of those.
type Workload = (fn(usize), &'static str);

fn workload(name: &str) -> Option<Workload> {
    Some(match name {
        "chain" => (chain, "callbacks"),
        "single" => (single, "deferreds"),
        "steal" => (steal, "callbacks"),
        "nested" => (nested, "deferreds"),
        _ => return None,
    })
}

/// Returns (median ops/s, best ops/s, iterations per repetition).
fn measure(f: fn(usize), n: usize, reps: usize, rep_time: f64) -> (f64, f64, u64) {
    f(n); // warm-up, and a first check
    let mut iters: u64 = 1;
    loop {
        let t0 = Instant::now();
        for _ in 0..iters {
            f(n);
        }
        let dt = t0.elapsed().as_secs_f64();
        if dt >= rep_time || iters >= 1 << 30 {
            break;
        }
        let scaled = (iters as f64 * rep_time / dt.max(1e-9) * 1.1) as u64 + 1;
        iters = scaled.max(iters * 2);
    }
    let mut rates = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        for _ in 0..iters {
            f(n);
        }
        let dt = t0.elapsed().as_secs_f64();
        rates.push((iters * n as u64) as f64 / dt);
    }
    let best = rates.iter().copied().fold(0.0, f64::max);
    (median(&rates), best, iters)
}

fn run(mut args: Args) -> Result<(), CliError> {
    let size: usize = args.parse_or("--size", 1000)?;
    let batch: usize = args.parse_or("--single-batch", 1000)?;
    let reps: usize = args.parse_or("--reps", 5)?;
    let rep_time: f64 = args.parse_or("--rep-time", 0.1)?;
    let workloads: String = args.parse_or("--workloads", WORKLOADS.join(","))?;
    let round: String = args.parse_or("--round", "1".to_string())?;
    args.finish()?;
    if size < 1 || batch < 1 || reps < 1 {
        return Err(cli_err!("--size, --single-batch and --reps must be >= 1"));
    }
    let mut chosen = Vec::new();
    for name in workloads.split(',') {
        let (f, unit) = workload(name).ok_or_else(|| cli_err!("unknown workload {name:?}"))?;
        chosen.push((name, f, unit));
    }
    println!("INFO impl=twill");
    for (name, f, unit) in chosen {
        let n = if name == "single" { batch } else { size };
        let (med, best, iters) = measure(f, n, reps, rep_time);
        println!(
            "RESULT impl=twill round={round} workload={name} n={n} unit={unit} \
             ops_per_s={med:.1} best_ops_per_s={best:.1} reps={reps} iters={iters}"
        );
    }
    Ok(())
}

/// Prints the comparison table from the `RESULT` lines in `path`.
fn summarize(path: &str) -> Result<(), CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| cli_err!("{path}: {e}"))?;
    let lines: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("RESULT "))
        .map(parse_kv)
        .collect();
    if lines.is_empty() {
        return Err(cli_err!("{path}: no RESULT lines"));
    }
    let rates = |imp: &str, w: &str| -> Vec<f64> {
        lines
            .iter()
            .filter(|kv| {
                kv.get("impl").map(String::as_str) == Some(imp)
                    && kv.get("workload").map(String::as_str) == Some(w)
            })
            .filter_map(|kv| kv.get("ops_per_s")?.parse().ok())
            .collect()
    };
    let field = |w: &str, key: &str| -> String {
        lines
            .iter()
            .find(|kv| kv.get("workload").map(String::as_str) == Some(w))
            .and_then(|kv| kv.get(key).cloned())
            .unwrap_or_default()
    };
    println!("| workload | unit | twill ops/s | Twisted ops/s | ratio | rounds (twill/Twisted) |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut below = Vec::new();
    for w in WORKLOADS {
        let (t, p) = (rates("twill", w), rates("twisted", w));
        if t.is_empty() && p.is_empty() {
            continue;
        }
        let label = match w {
            "chain" => format!("chain: {} callbacks +1", field(w, "n")),
            "single" => "single: create, 1 callback, fire, read".to_string(),
            "steal" => format!("steal: {} callbacks → fired Deferred", field(w, "n")),
            _ => format!("nested: {} unfired Deferreds", field(w, "n")),
        };
        let (tm, pm) = (median(&t), median(&p));
        let ratio = if p.is_empty() {
            "n/a".to_string()
        } else {
            if tm / pm < TARGET_RATIO {
                below.push(w);
            }
            format!("{:.1}×", tm / pm)
        };
        let fmt = |x: f64| {
            if x.is_nan() {
                "n/a".to_string()
            } else {
                format!("{x:.0}")
            }
        };
        println!(
            "| {label} | {} | {} | {} | {ratio} | {}/{} |",
            field(w, "unit"),
            fmt(tm),
            fmt(pm),
            t.len(),
            p.len()
        );
    }
    if !below.is_empty() {
        println!("\nbelow the {TARGET_RATIO}× target: {}", below.join(", "));
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = Args::from_env();
    if args.wants_help() {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = if std::env::args().nth(1).as_deref() == Some("summarize") {
        let _ = args.positional();
        match (args.positional(), args.finish()) {
            (Some(path), Ok(())) => summarize(&path),
            _ => Err(cli_err!("usage: deferred_bench summarize FILE")),
        }
    } else {
        run(args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deferred_bench: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
