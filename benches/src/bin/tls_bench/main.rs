//! `tls_bench`: TLS servers side by side, per server CPU-second.
//!
//! ```text
//! tls_bench [--scenario NAME[,NAME..]|all] [--rounds 3] [--duration 5]
//!           [--warmup 1] [--threads 1] [--bulk-conns 4] [--handshake-conns 16]
//!           [--servers LIST] [--target-dir DIR] [--smoke]
//! ```
//!
//! Scenarios: echo `CONNSxSIZExINFLIGHT` (`64x16x1` and `16x4096x4` by
//! default; any other shape too), `bulk` (`--bulk-conns` connections, each
//! sent 16 KiB writes by the server, one direction) and `handshake`
//! (`--handshake-conns` connections at a time, each new: TCP connect, full
//! TLS handshake, one 16-byte echo, `close_notify`, the server closes).
//! The load is this program's own rustls client ([`load`]), in this
//! process, verifying every byte.
//!
//! Servers ([`twill_bench::server::tls_servers`]): twill's
//! `tls_echo_server`, tokio-rustls (`tokio_rustls_echo`), both also with
//! `--plain` (the same program without TLS: what the TLS layer costs), and
//! asyncio with the standard library's ssl, on its default loop and on
//! uvloop (skipped when the venv has no uvloop). `--servers` picks some by
//! name or adds others as `NAME=PATH`, run as `PATH ADDR CERT KEY` (a
//! known name given a path keeps its flags: `twill_plain=PATH`). The
//! certificate (ECDSA P-256, for `localhost`, self-signed) is made at
//! start with rcgen and written to a temporary directory for the servers;
//! the clients trust it and nothing else, offer TLS 1.2 and 1.3 and never
//! resume a session, so every handshake is a full one.
//!
//! The method is `echo_bench`'s: for each scenario, round after round,
//! each server in turn (the order rotating each round) is started, loaded
//! for `--warmup` then `--duration` seconds, and its CPU time read from
//! `/proc` at the edges of the measured window; the figure is units
//! (messages, 16 KiB chunks, handshakes) per server CPU-second, and the
//! ratios are medians of per-round ratios. The report ends with twill
//! against tokio-rustls per scenario and with what TLS costs twill (and
//! tokio) over plain TCP.
//!
//! `--smoke` is one round of every scenario at tiny sizes, 0.5 s each, for
//! CI. A failed run (a verification error, a crash, a timeout) makes the
//! exit status non-zero.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::exit;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use twill_bench::measure::{CpuWindow, Probe};
use twill_bench::server::{
    select_servers, target_dir, tls_servers, RunningServer, ServerSpec, CERT, KEY,
};
use twill_bench::{
    check_run_shape, cli_err, clk_tck, ksoftirqd_pids, parsed_or_exit, Args, CliError, BULK_CHUNK,
};

mod load;
mod report;

use load::{Config, Kind, Mark};

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SCENARIOS: [&str; 4] = ["64x16x1", "16x4096x4", "bulk", "handshake"];
pub const TWILL: &str = "twill";
pub const TOKIO: &str = "tokio_rustls";

/// The parsed command line.
pub struct Opts {
    pub scenarios: Vec<Scenario>,
    pub rounds: usize,
    pub duration: f64,
    pub warmup: f64,
    pub threads: usize,
    pub servers: Vec<ServerSpec>,
}

/// A load shape.
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    pub conns: usize,
}

impl Scenario {
    /// What one unit is, in the tables.
    pub fn unit(&self) -> &'static str {
        match self.kind {
            Kind::Echo { .. } => "msg",
            Kind::Bulk => "chunk",
            Kind::Handshake => "handshake",
        }
    }

    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Echo { size, inflight } => format!(
                "echo, {} conns × {size} B × {inflight} in flight",
                self.conns
            ),
            Kind::Bulk => format!(
                "bulk, {} conns, the server writing {} KiB chunks, one direction",
                self.conns,
                BULK_CHUNK / 1024
            ),
            Kind::Handshake => format!(
                "handshakes, {} conns at a time, each new: connect, full handshake, \
                 one 16 B echo, close_notify, the server closes",
                self.conns
            ),
        }
    }
}

/// One server's numbers from one round.
pub struct Sample {
    pub units: f64,
    pub bytes: f64,
    pub window_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu: CpuWindow,
    pub negotiated: Option<String>,
}

impl Sample {
    pub fn per_s(&self) -> f64 {
        self.units / self.window_s
    }
    pub fn mib_per_s(&self) -> f64 {
        self.bytes / self.window_s / (1024.0 * 1024.0)
    }
    pub fn cpu_us_per_unit(&self) -> f64 {
        self.cpu.server_cpu_s * 1e6 / self.units
    }
    pub fn per_cpu_s(&self) -> f64 {
        if self.cpu.server_cpu_s > 0.0 {
            self.units / self.cpu.server_cpu_s
        } else {
            f64::NAN
        }
    }
    pub fn server_cpu_pct(&self) -> f64 {
        self.cpu.server_cpu_s / self.window_s * 100.0
    }
}

/// Each server's samples, one slot per round (`None`: failed or skipped).
pub type Samples = HashMap<String, Vec<Option<Sample>>>;

fn main() {
    let opts = parsed_or_exit("tls_bench", parse());
    exit(run(&opts));
}

const USAGE: &str = "usage: tls_bench [--scenario NAME[,NAME..]|all] [--rounds 3] \
[--duration 5] [--warmup 1] [--threads 1] [--bulk-conns 4] [--handshake-conns 16] \
[--servers NAME|NAME=PATH,..] [--target-dir DIR] [--smoke]
scenarios: CONNSxSIZExINFLIGHT (echo), bulk, handshake; default 64x16x1 16x4096x4 bulk handshake
servers: twill twill_plain tokio_rustls tokio_plain asyncio_ssl uvloop_ssl (default: all found)";

fn parse() -> Result<Opts, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let smoke = a.flag("--smoke");
    let mut names: Vec<String> = a
        .values("--scenario")?
        .iter()
        .flat_map(|v| v.split(',').map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() || names.iter().any(|n| n == "all") {
        names = if smoke {
            ["4x16x1", "2x4096x2", "bulk", "handshake"]
                .map(String::from)
                .to_vec()
        } else {
            DEFAULT_SCENARIOS.map(String::from).to_vec()
        };
    }
    let (bulk_conns, hs_conns) = if smoke { (1, 2) } else { (4, 16) };
    let bulk_conns = a.parse_or("--bulk-conns", bulk_conns)?;
    let hs_conns = a.parse_or("--handshake-conns", hs_conns)?;
    let scenarios = names
        .iter()
        .map(|n| parse_scenario(n, bulk_conns, hs_conns))
        .collect::<Result<_, _>>()?;
    let (rounds, duration, warmup) = if smoke { (1, 0.5, 0.2) } else { (3, 5.0, 1.0) };
    let rounds = a.parse_or("--rounds", rounds)?;
    let duration = a.parse_or("--duration", duration)?;
    let warmup = a.parse_or("--warmup", warmup)?;
    let threads = a.parse_or("--threads", 1usize)?;
    let target_dir = target_dir(a.value("--target-dir")?);
    let list = a.value("--servers")?;
    a.finish()?;
    let known = available(tls_servers(&target_dir), list.is_some());
    let servers = select_servers("tls_bench", list.as_deref(), known.clone())?
        .into_iter()
        .map(|s| {
            if s.args.len() > 1 {
                return s;
            }
            // `NAME=PATH`: a known name keeps its arguments (`twill_plain=PATH`
            // still runs with `--plain`); any other runs as `PATH ADDR CERT KEY`.
            let args = match known.iter().find(|k| k.name == s.name) {
                Some(k) => k.args.clone(),
                None => ServerSpec::new("", "", &[CERT, KEY]).args,
            };
            ServerSpec { args, ..s }
        })
        .collect();
    check_run_shape(rounds, threads, duration, warmup)?;
    Ok(Opts {
        scenarios,
        rounds,
        duration,
        warmup,
        threads,
        servers,
    })
}

/// Leaves uvloop out of the default list when the venv lacks it.
fn available(known: Vec<ServerSpec>, listed: bool) -> Vec<ServerSpec> {
    if listed {
        return known;
    }
    known
        .into_iter()
        .filter(|s| {
            if !s.args.iter().any(|a| a == "--uvloop") || !s.program.is_file() {
                return true;
            }
            let ok = std::process::Command::new(&s.program)
                .args(["-c", "import uvloop"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                eprintln!(
                    "tls_bench: warning: skipping {}: no uvloop in {}",
                    s.name,
                    s.program.display()
                );
            }
            ok
        })
        .collect()
}

fn parse_scenario(name: &str, bulk_conns: usize, hs_conns: usize) -> Result<Scenario, CliError> {
    let positive = |n: usize, what: &str| {
        if n == 0 {
            Err(cli_err!("{what} must be positive"))
        } else {
            Ok(n)
        }
    };
    match name {
        "bulk" => Ok(Scenario {
            name: name.into(),
            kind: Kind::Bulk,
            conns: positive(bulk_conns, "--bulk-conns")?,
        }),
        "handshake" => Ok(Scenario {
            name: name.into(),
            kind: Kind::Handshake,
            conns: positive(hs_conns, "--handshake-conns")?,
        }),
        _ => {
            let bad = || cli_err!("bad scenario {name:?}: CONNSxSIZExINFLIGHT, bulk or handshake");
            let parts: Vec<usize> = name
                .split('x')
                .map(|p| p.parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            match parts[..] {
                [conns, size, inflight]
                    if conns > 0
                        && size > twill_bench::FRAME_HEADER
                        && size <= 1 << 20
                        && (1..=1024).contains(&inflight) =>
                {
                    Ok(Scenario {
                        name: name.into(),
                        kind: Kind::Echo { size, inflight },
                        conns,
                    })
                }
                _ => Err(bad()),
            }
        }
    }
}

/// The certificate and key the servers use, in a temporary directory
/// removed when this is dropped.
pub struct Credentials {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Arc<ClientConfig>,
}

impl Credentials {
    fn make() -> Result<Credentials, String> {
        let made = rcgen::generate_simple_self_signed(vec![load::SERVER_NAME.into()])
            .map_err(|e| format!("rcgen: {e}"))?;
        let dir = std::env::temp_dir().join(format!("twill-tls-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let creds = Credentials {
            dir,
            cert,
            key,
            client: Arc::new(client_config(&made.cert)?),
        };
        std::fs::write(&creds.cert, made.cert.pem())
            .and_then(|()| std::fs::write(&creds.key, made.signing_key.serialize_pem()))
            .map_err(|e| format!("writing the PEM files: {e}"))?;
        Ok(creds)
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Trusts `cert` only, offers TLS 1.2 and 1.3 with rustls's ring
/// provider's defaults, never resumes.
fn client_config(cert: &rcgen::Certificate) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(cert.der().clone())
        .map_err(|e| format!("trust anchor: {e}"))?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

fn is_plain(spec: &ServerSpec) -> bool {
    spec.args.iter().any(|a| a == "--plain")
}

fn run(o: &Opts) -> i32 {
    let creds = match Credentials::make() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tls_bench: {e}");
            return 2;
        }
    };
    let clk = clk_tck() as f64;
    let ksoftirqd = ksoftirqd_pids();
    report::print_header(o);
    let mut failures: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut all: Vec<Samples> = Vec::new();
    for sc in &o.scenarios {
        println!("\n## {}: {}\n", sc.name, sc.describe());
        let mut samples = Samples::new();
        for round in 0..o.rounds {
            let n = o.servers.len();
            for i in 0..n {
                let server = &o.servers[(i + round) % n];
                let slot = samples.entry(server.name.clone()).or_default();
                if failed.contains(&server.name) {
                    slot.push(None);
                    continue;
                }
                match run_one(o, sc, &creds, clk, &ksoftirqd, server) {
                    Ok(s) => {
                        report::print_round(o, sc, round, server, &s);
                        slot.push(Some(s));
                    }
                    Err(e) => {
                        let msg = format!("{} {} round {}: {e}", sc.name, server.name, round + 1);
                        println!("FAILED {msg}");
                        failures.push(msg);
                        failed.push(server.name.clone());
                        slot.push(None);
                    }
                }
            }
        }
        report::print_table(o, sc, &samples);
        all.push(samples);
    }
    report::print_summary(o, &all);
    if failures.is_empty() {
        0
    } else {
        eprintln!("\ntls_bench: {} run(s) failed:", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        1
    }
}

/// Starts the server, runs the load against it while sampling CPU time at
/// the window's edges, kills the server.
fn run_one(
    o: &Opts,
    sc: &Scenario,
    creds: &Credentials,
    clk: f64,
    ksoftirqd: &[u32],
    spec: &ServerSpec,
) -> Result<Sample, String> {
    let mut spec = spec.with_tls_files(&creds.cert, &creds.key);
    if sc.kind == Kind::Bulk {
        spec = spec.with_arg("--bulk");
    }
    let mut server = RunningServer::start(&spec, READY_TIMEOUT)?;
    let pid = server.pid;
    let cfg = Config {
        kind: sc.kind,
        conns: sc.conns,
        tls: (!is_plain(&spec)).then(|| creds.client.clone()),
        warmup: Duration::from_secs_f64(o.warmup),
        duration: Duration::from_secs_f64(o.duration),
        threads: o.threads,
    };
    let mut probes = [None, None];
    let outcome = load::run(&cfg, server.addr, &mut |mark| {
        let i = match mark {
            Mark::Start => 0,
            Mark::End => 1,
        };
        probes[i] = Some(Probe::take(pid, None, ksoftirqd));
    });
    let outcome = match outcome {
        Ok(out) => out,
        Err(e) => {
            let e = e.to_string();
            return Err(match server.exited() {
                Some(st) => format!("{e} (the server exited: {st})"),
                None => e,
            });
        }
    };
    if let Some(st) = server.exited() {
        return Err(format!("server exited during the run ({st})"));
    }
    drop(server);
    let [Some(Ok(t0)), Some(Ok(t1))] = probes else {
        return Err("could not read CPU times from /proc".into());
    };
    let window_s = outcome.window.as_secs_f64();
    let latency = sc.kind != Kind::Bulk;
    let quantile = |q| {
        if latency {
            outcome.hist.quantile(q) as f64 / 1000.0
        } else {
            f64::NAN
        }
    };
    Ok(Sample {
        units: outcome.units as f64,
        bytes: outcome.bytes as f64,
        window_s,
        p50_us: quantile(0.50),
        p99_us: quantile(0.99),
        cpu: CpuWindow::between(&t0, &t1, clk, window_s),
        negotiated: outcome.negotiated,
    })
}
