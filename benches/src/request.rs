//! What the request-response runners (`http_bench`, `ws_bench`) share:
//! their command line, the rounds of every server under `http_loadgen` at
//! each depth (requests in flight per connection), and the table with
//! twill's ratio to every other server.
//!
//! The method is `echo_bench`'s: for each depth, round after round, each
//! server in turn (the order rotating each round) is started, loaded by
//! `http_loadgen` and its CPU time read from `/proc` at the edges of the
//! measured window, then killed. A "msg" in the round lines is one
//! request answered.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::echo::Sample;
use crate::measure::Loader;
use crate::report::{fmt, fmt_ratio, print_run_header, this_command};
use crate::rotation::{ratio_to, successes, Rotation, Samples};
use crate::server::{
    require_twill_in_smoke, select_servers, target_dir, RunningServer, ServerSpec,
};
use crate::{check_run_shape, cli_err, median, Args, CliError};

/// The server every other is compared with.
pub const TWILL: &str = "twill";

/// How long a server may take to say `listening on`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most requests in flight per connection the runners allow
/// (`http_loadgen`'s own maximum).
const MAX_DEPTH: usize = 1024;

/// The parsed command line shared by the request-response runners.
pub struct RequestOpts {
    /// Requests in flight per connection, one table each.
    pub depths: Vec<usize>,
    pub conns: usize,
    pub rounds: usize,
    /// The measured window, in seconds.
    pub duration: f64,
    /// The warm-up before it, in seconds.
    pub warmup: f64,
    /// `http_loadgen`'s event-loop threads.
    pub threads: usize,
    pub target_dir: PathBuf,
    pub servers: Vec<ServerSpec>,
}

impl RequestOpts {
    /// Takes `[--depths 1,16] [--conns 64] [--rounds 3] [--duration 5]
    /// [--warmup 1] [--threads 1] [--servers LIST] [--target-dir DIR]
    /// [--smoke]` out of `a`; the servers are `known`'s (its argument is
    /// the target directory). `--smoke` is one round at each depth, 0.5 s
    /// after 0.2 s of warm-up, and twill's server must be built.
    pub fn parse(
        program: &str,
        a: &mut Args,
        known: impl FnOnce(&Path) -> Vec<ServerSpec>,
    ) -> Result<RequestOpts, CliError> {
        let smoke = a.flag("--smoke");
        let depths = match a.value("--depths")? {
            None => vec![1, 16],
            Some(list) => list
                .split(',')
                .map(|s| s.parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|e| cli_err!("bad --depths {list:?}: {e}"))?,
        };
        if depths.is_empty() || depths.iter().any(|d| !(1..=MAX_DEPTH).contains(d)) {
            return Err(cli_err!("--depths must be 1 to {MAX_DEPTH} each"));
        }
        let (rounds, duration, warmup) = if smoke { (1, 0.5, 0.2) } else { (3, 5.0, 1.0) };
        let conns = a.parse_or("--conns", 64usize)?;
        let rounds = a.parse_or("--rounds", rounds)?;
        let duration = a.parse_or("--duration", duration)?;
        let warmup = a.parse_or("--warmup", warmup)?;
        let threads = a.parse_or("--threads", 1usize)?;
        let target_dir = target_dir(a.value("--target-dir")?);
        let list = a.value("--servers")?;
        let known = known(&target_dir);
        if smoke {
            require_twill_in_smoke(&known, list.as_deref(), &[TWILL])?;
        }
        let servers = select_servers(program, list.as_deref(), known)?;
        check_run_shape(rounds, threads, duration, warmup)?;
        if conns == 0 {
            return Err(cli_err!("--conns must be positive"));
        }
        Ok(RequestOpts {
            depths,
            conns,
            rounds,
            duration,
            warmup,
            threads,
            target_dir,
            servers,
        })
    }
}

/// What one runner measures: its name, its report's title, the load in
/// words, and `http_loadgen`'s flags for it beyond the connections and
/// the depth.
pub struct RequestBench<'a> {
    /// The runner's name, for messages.
    pub program: &'a str,
    /// The report's title.
    pub title: &'a str,
    /// The load in words, for the tables' captions.
    pub load: &'a str,
    /// What one request is called in the tables (`req`, `msg`).
    pub unit: &'a str,
    /// `http_loadgen`'s extra arguments (`--ws`, `--size 64`).
    pub loader_args: &'a [&'a str],
}

impl RequestBench<'_> {
    /// Runs every server at every depth in rotation, prints each round's
    /// line and a table per depth; returns the exit status.
    pub fn run(&self, o: &RequestOpts) -> i32 {
        let loader = o.target_dir.join("http_loadgen");
        if !loader.is_file() {
            eprintln!(
                "{}: {} not found (build twill-bench first)",
                self.program,
                loader.display()
            );
            return 2;
        }
        let loader = Loader::new(loader, o.duration, o.warmup);
        print_run_header(self.title, &this_command(self.program));
        println!(
            "- {} round(s), {} s measured after {} s warm-up; {} connections; {}",
            o.rounds, o.duration, o.warmup, o.conns, self.load
        );
        let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
        println!("- servers: {}", names.join(", "));
        println!();

        let mut rotation = Rotation::new();
        let mut all = Vec::new();
        for &depth in &o.depths {
            let label = format!("depth {depth}");
            let samples = rotation.rounds(&label, o.rounds, &o.servers, |round, server| {
                let s = self.run_one(o, &loader, server, depth)?;
                let head = format!("depth {depth:>3} {:<14}", server.name);
                s.print_round(round, o.rounds, &head, 8, o.duration);
                Ok(s)
            });
            all.push((depth, samples));
        }
        for (depth, samples) in &all {
            self.print_table(o, *depth, samples);
        }
        rotation.exit_status(self.program)
    }

    fn run_one(
        &self,
        o: &RequestOpts,
        loader: &Loader,
        spec: &ServerSpec,
        depth: usize,
    ) -> Result<Sample, String> {
        let mut server = RunningServer::start(spec, READY_TIMEOUT)?;
        let mut cmd = loader.command([
            ("--conns", o.conns.to_string()),
            ("--inflight", depth.to_string()),
            ("--threads", o.threads.to_string()),
        ]);
        cmd.args(self.loader_args);
        cmd.arg("--addr").arg(server.addr.to_string());
        let run = loader.run(cmd, &mut server)?;
        drop(server);
        Sample::from_run(&run)
    }

    fn print_table(&self, o: &RequestOpts, depth: usize, samples: &Samples<Sample>) {
        let unit = self.unit;
        println!(
            "\n{} — {} connections × {depth} in flight; median of {} round(s), {} s each \
             (twill ÷ it: twill's figure over this server's, median of per-round ratios)\n",
            self.load, o.conns, o.rounds, o.duration
        );
        println!(
            "| server | {unit}/s | p50 µs | p99 µs | server CPU % | CPU µs/{unit} \
             | {unit} per server CPU-s | twill ÷ it, per CPU-s | twill ÷ it, {unit}/s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for server in &o.servers {
            let ok = successes(samples, &server.name);
            if ok.is_empty() {
                println!("| {} | failed | | | | | | | |", server.name);
                continue;
            }
            let med =
                |f: &dyn Fn(&Sample) -> f64| median(&ok.iter().map(|s| f(s)).collect::<Vec<_>>());
            let twill_over = |figure: fn(&Sample) -> f64| {
                if server.name == TWILL {
                    "—".to_string()
                } else {
                    fmt_ratio(ratio_to(samples, TWILL, &server.name, figure))
                }
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                server.name,
                fmt(med(&|s| s.msgs_per_s), 0),
                fmt(med(&|s| s.p50_us), 1),
                fmt(med(&|s| s.p99_us), 1),
                fmt(med(&|s| s.cpu.server_cpu_s / o.duration * 100.0), 0),
                fmt(med(&|s| s.cpu_us_per_msg()), 2),
                fmt(med(&|s| s.msgs_per_cpu_s()), 0),
                twill_over(Sample::msgs_per_cpu_s),
                twill_over(|s| s.msgs_per_s),
            );
        }
    }
}
