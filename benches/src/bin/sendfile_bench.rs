//! `sendfile_bench`: a large file sent to one client over loopback, by
//! twill's `Transport::send_file`, by twill's read-and-write path
//! (`FileSender`) and by tokio, per second and per server CPU-second.
//!
//! ```text
//! sendfile_bench [--size 1024] [--rounds 3] [--servers LIST]
//!                [--target-dir DIR] [--smoke]
//! ```
//!
//! A file of `--size` MiB (1 GiB by default) is written in a temporary
//! directory made for the run, read once so it is in the page cache, and
//! removed at the end. Servers:
//!
//! | name | what |
//! |---|---|
//! | `twill_sendfile` | `twill_file_server ADDR FILE sendfile`: `Transport::send_file`, `sendfile(2)` from the file to the socket |
//! | `twill_copy` | `twill_file_server ADDR FILE copy`: `FileSender`, 64 KiB reads into the write buffer |
//! | `tokio` | `tokio_file_server`: `tokio::io::copy_buf` from a `tokio::fs::File` (64 KiB `BufReader`), current-thread runtime |
//!
//! Each round starts every server in turn (rotated, as in the other
//! benchmarks), connects one client in this process, which reads and
//! discards the whole file (256 KiB reads) and checks its length, and
//! measures from the connect to the EOF: the rate in Gbit/s and the
//! server's CPU time (all its threads, from `/proc`). The table gives the
//! medians over rounds and, per server, the median of its per-round ratios
//! to `twill_copy` and to `tokio`: throughput, and server CPU-seconds per
//! byte (below 1× is less CPU).
//!
//! `--smoke` is one round of an 8 MiB file. A failed run makes the exit
//! status non-zero.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::{Duration, Instant};

use twill_bench::measure::{CpuWindow, Probe};
use twill_bench::report::{fmt, fmt_ratio, print_round, print_run_header, this_command};
use twill_bench::rotation::{ratio_to, successes, Rotation, Samples};
use twill_bench::server::{
    require_twill_in_smoke, select_servers, target_dir, RunningServer, ServerSpec,
};
use twill_bench::{
    check_run_shape, clk_tck, ksoftirqd_pids, median, parsed_or_exit, Args, CliError,
};

const USAGE: &str = "usage: sendfile_bench [--size MIB] [--rounds 3] \
[--servers NAME|NAME=PATH,..] [--target-dir DIR] [--smoke]
servers: twill_sendfile twill_copy tokio (default: all found)";

const TWILL_SENDFILE: &str = "twill_sendfile";
const TWILL_COPY: &str = "twill_copy";
const TOKIO: &str = "tokio";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one transfer may take before the round fails.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
const READ_SIZE: usize = 256 * 1024;
const MIB: u64 = 1 << 20;

struct Opts {
    size: u64,
    rounds: usize,
    servers: Vec<ServerSpec>,
}

/// One transfer: what came and what it cost.
struct Sample {
    bytes: u64,
    secs: f64,
    cpu: CpuWindow,
}

impl Sample {
    fn gbits(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e9
    }

    /// Server CPU-seconds per GiB sent.
    fn cpu_per_gib(&self) -> f64 {
        self.cpu.server_cpu_s / (self.bytes as f64 / (1u64 << 30) as f64)
    }
}

/// The run's temporary directory with its file, removed when dropped.
struct DataFile {
    dir: PathBuf,
    path: PathBuf,
}

impl DataFile {
    fn create(size: u64) -> io::Result<DataFile> {
        let dir = std::env::temp_dir().join(format!("twill-sendfile-bench-{}", std::process::id()));
        // A directory left by a killed run of the same pid is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        let data = DataFile {
            path: dir.join("data"),
            dir,
        };
        let mut out = BufWriter::new(File::create(&data.path)?);
        let block: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
        let mut left = size;
        while left > 0 {
            let n = left.min(MIB) as usize;
            out.write_all(&block[..n])?;
            left -= n as u64;
        }
        out.flush()?;
        drop(out);
        // Into the page cache, so no server pays for the first read.
        io::copy(&mut File::open(&data.path)?, &mut io::sink())?;
        Ok(data)
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn main() {
    let opts = parsed_or_exit("sendfile_bench", parse());
    exit(run(&opts));
}

fn servers(target_dir: &Path) -> Vec<ServerSpec> {
    let twill = target_dir.join("twill_file_server");
    vec![
        ServerSpec::new(TWILL_SENDFILE, twill.clone(), &["{file}", "sendfile"]),
        ServerSpec::new(TWILL_COPY, twill, &["{file}", "copy"]),
        ServerSpec::new(
            TOKIO,
            target_dir.join("examples/tokio_file_server"),
            &["{file}"],
        ),
    ]
}

fn parse() -> Result<Opts, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let smoke = a.flag("--smoke");
    let (size, rounds) = if smoke { (8, 1) } else { (1024, 3) };
    let size: u64 = a.parse_or("--size", size)?;
    let rounds = a.parse_or("--rounds", rounds)?;
    let target_dir = target_dir(a.value("--target-dir")?);
    let list = a.value("--servers")?;
    let known = servers(&target_dir);
    if smoke {
        require_twill_in_smoke(&known, list.as_deref(), &[TWILL_SENDFILE, TWILL_COPY])?;
    }
    let servers = select_servers("sendfile_bench", list.as_deref(), known)?;
    a.finish()?;
    if size == 0 {
        return Err(CliError("--size must be at least 1 (MiB)".into()));
    }
    check_run_shape(rounds, 1, 1.0, 0.0)?;
    Ok(Opts {
        size: size * MIB,
        rounds,
        servers,
    })
}

fn run(o: &Opts) -> i32 {
    let data = match DataFile::create(o.size) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("sendfile_bench: cannot write the file to send: {e}");
            return 2;
        }
    };
    print_run_header(
        "twill file-sending benchmark",
        &this_command("sendfile_bench"),
    );
    println!(
        "- {} round(s), one client reading a {} MiB file over loopback",
        o.rounds,
        o.size / MIB
    );
    let names: Vec<&str> = o.servers.iter().map(|s| s.name.as_str()).collect();
    println!("- servers: {}\n", names.join(", "));
    let ksoftirqd = ksoftirqd_pids();
    let clk = clk_tck() as f64;
    let mut rotation = Rotation::new();
    let samples = rotation.rounds("file", o.rounds, &o.servers, |round, spec| {
        let spec = with_file(spec, &data.path);
        let mut server = RunningServer::start(&spec, READY_TIMEOUT)?;
        let sample = transfer(server.addr, server.pid, &ksoftirqd, clk, o.size)?;
        if let Some(status) = server.exited() {
            return Err(format!("the server exited ({status})"));
        }
        print_round(
            round,
            o.rounds,
            format_args!(
                "{:<15} {:>7} Gbit/s, server {:>6} CPU-s/GiB",
                spec.name,
                fmt(sample.gbits(), 2),
                fmt(sample.cpu_per_gib(), 3)
            ),
            &sample.cpu,
            sample.secs,
        );
        Ok(sample)
    });
    print_table(o, &samples);
    rotation.exit_status("sendfile_bench")
}

/// `spec` with the `{file}` placeholder replaced by `path`, or with
/// `path` added at the end (a server given as `NAME=PATH`: `PATH ADDR
/// FILE`).
fn with_file(spec: &ServerSpec, path: &Path) -> ServerSpec {
    let mut spec = spec.clone();
    let placeholder = spec.args.iter().position(|arg| arg == "{file}");
    match placeholder {
        Some(i) => spec.args[i] = path.as_os_str().to_owned(),
        None => spec.args.push(path.as_os_str().to_owned()),
    }
    spec
}

/// Connects to `addr`, reads everything to EOF, and measures the server
/// `pid`'s CPU over the transfer.
fn transfer(
    addr: SocketAddr,
    pid: u32,
    ksoftirqd: &[u32],
    clk: f64,
    size: u64,
) -> Result<Sample, String> {
    let t0 = Probe::take(pid, None, ksoftirqd).map_err(|e| format!("probe: {e}"))?;
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(TRANSFER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0; READ_SIZE];
    let mut bytes = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {bytes} bytes: {e}")),
        }
        if start.elapsed() > TRANSFER_TIMEOUT {
            return Err(format!("not done within {TRANSFER_TIMEOUT:?}"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let t1 = Probe::take(pid, None, ksoftirqd).map_err(|e| format!("probe: {e}"))?;
    if bytes != size {
        return Err(format!("received {bytes} bytes of {size}"));
    }
    Ok(Sample {
        bytes,
        secs,
        cpu: CpuWindow::between(&t0, &t1, clk, secs),
    })
}

fn print_table(o: &Opts, samples: &Samples<Sample>) {
    println!(
        "\n{} MiB to one client; median of {} round(s) (ratios: median of per-round ratios; \
         CPU ratios are server CPU-seconds per byte, below 1× is less)\n",
        o.size / MIB,
        o.rounds
    );
    println!(
        "| server | Gbit/s | server CPU-s per GiB | Gbit/s vs {TWILL_COPY} | Gbit/s vs {TOKIO} \
         | CPU vs {TWILL_COPY} | CPU vs {TOKIO} |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for server in &o.servers {
        let ok = successes(samples, &server.name);
        let gbits = median(&ok.iter().map(|s| s.gbits()).collect::<Vec<_>>());
        let cpu = median(&ok.iter().map(|s| s.cpu_per_gib()).collect::<Vec<_>>());
        let vs = |reference: &str, figure: fn(&Sample) -> f64| {
            fmt_ratio(ratio_to(samples, &server.name, reference, figure))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            server.name,
            fmt(gbits, 2),
            fmt(cpu, 3),
            vs(TWILL_COPY, Sample::gbits),
            vs(TOKIO, Sample::gbits),
            vs(TWILL_COPY, Sample::cpu_per_gib),
            vs(TOKIO, Sample::cpu_per_gib),
        );
    }
}
