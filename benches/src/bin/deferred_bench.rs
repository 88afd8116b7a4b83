//! twill's side of the Deferred benchmark (`benches/deferred.sh`), and the
//! step that turns both sides' result lines into the comparison table.
//!
//! The same seven workloads as `benches/deferred_twisted.py`, on
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
//!   last with 0 → N − 1 at the outermost (Deferreds per second);
//! - `gather`: N unfired Deferreds, `gather_results` over them, each fired
//!   with its index → `[0, 1, .., N − 1]` (unit `gathers`: whole gathers of
//!   N Deferreds per second; N is `--size`);
//! - `coroutine`: `Deferred::from_future(async move { Ok(d.await? + 1) })`
//!   where `d` is `succeed(1)`: the future completes at once → 2 (unit
//!   `round_trips`; `--single-batch` of them per call, as `single`);
//! - `coroutine_wait`: the same with `d` unfired: the future waits (the
//!   Deferred is checked not to have fired), then `d` is fired with 1 → 2
//!   (round trips per second). No reactor runs: a future that awaits only
//!   Deferreds is resumed inside the `callback` that fires what it awaits.
//!
//! Every result is checked. Each workload is calibrated so that one
//! repetition lasts about `--rep-time` seconds, then timed `--reps` times
//! with `Instant` (monotonic); the median and best repetitions are printed as
//! `RESULT impl=twill round=R workload=chain n=1000 unit=callbacks
//! ops_per_s=… best_ops_per_s=… reps=5 iters=…`. `--workloads` picks some of
//! them, comma-separated (default: all seven).
//!
//! `deferred_bench summarize FILE` reads the `RESULT` lines of both sides
//! (any number of rounds) and prints the table: per workload the median over
//! rounds of each side's ops/s, and their ratio.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use twill::defer::{gather_results, succeed, Deferred, Failure, Resolver};
use twill_bench::{cli_err, median, parse_kv, Args, CliError};

const WORKLOADS: [&str; 7] = [
    "chain",
    "single",
    "steal",
    "nested",
    "gather",
    "coroutine",
    "coroutine_wait",
];
const TARGET_RATIO: f64 = 50.0;

const USAGE: &str = "\
usage: deferred_bench [--size N] [--single-batch N] [--reps N] [--rep-time S]
                      [--workloads chain,single,steal,nested,gather,coroutine,coroutine_wait]
                      [--round R]
       deferred_bench summarize FILE

  --size N          chain length / nesting depth / Deferreds per gather
                    (default 1000)
  --single-batch N  Deferreds (single) or round trips (coroutine,
                    coroutine_wait) per call (default 1000)
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
    let fire_innermost = innermost.resolver();
    let mut cur = innermost;
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
    fire_innermost.callback(0);
    check("nested", result_of(&cur, "nested"), n as i64 - 1);
}

fn gather(n: usize) {
    let ds: Vec<Deferred<i64>> = (0..n).map(|_| Deferred::new()).collect();
    let fire: Vec<Resolver<i64>> = ds.iter().map(Deferred::resolver).collect();
    let g = gather_results(ds);
    for (i, r) in fire.iter().enumerate() {
        r.callback(black_box(i as i64));
    }
    match g.result() {
        Some(Ok(v)) if v.iter().copied().eq(0..n as i64) => {}
        other => panic!(
            "gather: got {:.80}, expected [0, .., {}]",
            format!("{other:?}"),
            n as i64 - 1
        ),
    }
}

fn coroutine(n: usize) {
    for _ in 0..n {
        let d = succeed(black_box(1i64));
        let c = Deferred::from_future(async move { Ok(d.await? + 1) });
        check("coroutine", result_of(&c, "coroutine"), 2);
    }
}

fn coroutine_wait(n: usize) {
    for _ in 0..n {
        let d = Deferred::<i64>::new();
        let fire = d.resolver();
        let c = Deferred::from_future(async move { Ok(d.await? + 1) });
        if c.called() {
            panic!("coroutine_wait: the future did not wait");
        }
        fire.callback(black_box(1));
        check("coroutine_wait", result_of(&c, "coroutine_wait"), 2);
    }
}

/// Which option gives a workload's `n`.
#[derive(Clone, Copy)]
enum SizeFrom {
    /// `--size`
    Size,
    /// `--single-batch`
    Batch,
}

/// How many operations of its unit one call `f(n)` does.
#[derive(Clone, Copy)]
enum Ops {
    /// `n` (callbacks, Deferreds, round trips)
    All,
    /// one (a gather of `n` Deferreds)
    One,
}

/// A workload: its function, the unit of its operations, where its `n`
/// comes from, and how many operations a call does.
type Workload = (fn(usize), &'static str, SizeFrom, Ops);

fn workload(name: &str) -> Option<Workload> {
    use {Ops::*, SizeFrom::*};
    Some(match name {
        "chain" => (chain, "callbacks", Size, All),
        "single" => (single, "deferreds", Batch, All),
        "steal" => (steal, "callbacks", Size, All),
        "nested" => (nested, "deferreds", Size, All),
        "gather" => (gather, "gathers", Size, One),
        "coroutine" => (coroutine, "round_trips", Batch, All),
        "coroutine_wait" => (coroutine_wait, "round_trips", Batch, All),
        _ => return None,
    })
}

/// Returns (median ops/s, best ops/s, iterations per repetition), `ops`
/// operations per call of `f(n)`.
fn measure(f: fn(usize), n: usize, ops: u64, reps: usize, rep_time: f64) -> (f64, f64, u64) {
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
        rates.push((iters * ops) as f64 / dt);
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
        let (f, unit, size_from, ops) = workload(name).ok_or_else(|| {
            cli_err!(
                "unknown workload {name:?} (known: {})",
                WORKLOADS.join(", ")
            )
        })?;
        chosen.push((name, f, unit, size_from, ops));
    }
    println!("INFO impl=twill");
    for (name, f, unit, size_from, ops) in chosen {
        let n = match size_from {
            SizeFrom::Size => size,
            SizeFrom::Batch => batch,
        };
        let ops_per_call = match ops {
            Ops::All => n as u64,
            Ops::One => 1,
        };
        let (med, best, iters) = measure(f, n, ops_per_call, reps, rep_time);
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
            "nested" => format!("nested: {} unfired Deferreds", field(w, "n")),
            "gather" => format!(
                "gather: {} unfired Deferreds, fired in order",
                field(w, "n")
            ),
            "coroutine" => "coroutine: await a fired Deferred, +1".to_string(),
            _ => "coroutine_wait: await an unfired Deferred, fire it, +1".to_string(),
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
