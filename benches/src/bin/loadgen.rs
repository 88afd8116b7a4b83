//! `loadgen`: a cheap, verifying echo load generator.
//!
//! ```text
//! loadgen (--addr 127.0.0.1:PORT | --unix PATH) [--conns 64] [--size 16]
//!         [--inflight 1] [--duration 5] [--warmup 1] [--threads 1]
//! ```
//!
//! Opens `--conns` TCP connections (TCP_NODELAY) to a loopback echo server,
//! or with `--unix` as many connections to a Unix stream socket (the same
//! load and the same checks, for `unix_bench`).
//! Each connection keeps `--inflight` messages of `--size` bytes in flight
//! (each a 4-byte big-endian length and `size - 4` payload bytes, so a
//! length-field framing echo serves the same load as a plain one):
//! it writes them back to back (pipelined) and sends a new one each time a
//! whole message has come back. Every echoed byte is compared with the
//! connection's deterministic byte stream ([`twill_bench::Pattern`]), so
//! lost, duplicated, corrupted, reordered or cross-connection bytes are
//! caught; a mismatch ends the run at once with exit code 3.
//!
//! The connections are driven by a level-triggered, non-blocking event loop
//! on `polling` — one thread by default, or `--threads T` loops that split
//! the connections — so the generator costs little CPU next to the server.
//! Latency is measured per message from the moment it is queued for sending
//! to the moment its last echoed byte is read, and only messages completed
//! inside the measured window (after `--warmup`) count.
//!
//! Output on stdout: `MARK measure_start` and `MARK measure_end` at the edges
//! of the measured window (the runner samples the server's CPU time then), a
//! human-readable summary, and a final machine-readable line:
//!
//! ```text
//! RESULT msgs=... msgs_per_s=... mib_per_s=... p50_us=... p99_us=... ...
//! ```
//!
//! `mib_per_s` counts echoed payload (one direction). The run always ends by
//! itself after connecting (at most ~10 s) + warm-up + duration.
//! Exit codes: 0 ok, 2 usage or connect error, 3 verification error, 4 the
//! connection failed or no message completed in the measured window.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::exit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use twill_bench::drive::{deal, Driver, Failure, Stats, Window, EXIT_IO};
use twill_bench::{
    cli_err, clk_tck, loopback_addr, Args, CliError, Histogram, Pattern, FRAME_HEADER,
    PATTERN_MAX_SLICE,
};

const USAGE: &str =
    "usage: loadgen (--addr 127.0.0.1:PORT | --unix PATH) [--conns 64] [--size 16] \
[--inflight 1] [--duration 5] [--warmup 1] [--threads 1]";

/// How long connecting all connections may take in total.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);

/// Where the echo server listens.
#[derive(Clone)]
enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "{addr}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connection to the server, over either transport: the event loop only
/// reads, writes and polls it.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

#[derive(Clone)]
struct Config {
    target: Target,
    conns: usize,
    size: usize,
    inflight: usize,
    duration: Duration,
    warmup: Duration,
    threads: usize,
}

fn main() {
    let cfg = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            exit(2);
        }
    };
    exit(run(cfg));
}

fn parse() -> Result<Config, CliError> {
    let mut a = Args::from_env();
    if a.wants_help() {
        println!("{USAGE}");
        exit(0);
    }
    let target = match (a.value("--addr")?, a.value("--unix")?) {
        (Some(addr), None) => Target::Tcp(loopback_addr(&addr)?),
        (None, Some(path)) => Target::Unix(PathBuf::from(path)),
        _ => return Err(cli_err!("one of --addr and --unix is required")),
    };
    let cfg = Config {
        target,
        conns: a.parse_or("--conns", 64)?,
        size: a.parse_or("--size", 16)?,
        inflight: a.parse_or("--inflight", 1)?,
        duration: a.seconds_or("--duration", 5.0)?,
        warmup: a.seconds_or("--warmup", 1.0)?,
        threads: a.parse_or("--threads", 1)?,
    };
    a.finish()?;
    if cfg.conns == 0 || cfg.inflight == 0 || cfg.threads == 0 {
        return Err(cli_err!(
            "--conns, --inflight and --threads must be positive"
        ));
    }
    if cfg.size <= FRAME_HEADER {
        return Err(cli_err!(
            "--size must be more than the {FRAME_HEADER}-byte length header"
        ));
    }
    if cfg.duration.is_zero() {
        return Err(cli_err!("--duration must be positive"));
    }
    if cfg.size > 1 << 20 || cfg.inflight > 1024 {
        return Err(cli_err!(
            "--size is limited to 1 MiB and --inflight to 1024"
        ));
    }
    Ok(cfg)
}

/// Connects every connection, runs the workers and reports; returns the exit
/// code.
fn run(cfg: Config) -> i32 {
    let streams = match connect_all(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            return 2;
        }
    };
    let pattern = Arc::new(Pattern::new(cfg.size));
    let window = Window::after(cfg.warmup, cfg.duration);
    let threads = cfg.threads.min(cfg.conns);
    let shares = deal(streams.into_iter().enumerate(), threads);
    let driver = Driver {
        program: "loadgen",
        thread_prefix: "loadgen",
        check_label: "VERIFY ERROR",
    };
    let work_cfg = cfg.clone();
    let outcome = match driver.run(shares, window, move |share| {
        worker(&work_cfg, share, &pattern, &window)
    }) {
        Ok(outcome) => outcome,
        Err(code) => return code,
    };
    let stats = &outcome.stats;
    report(
        &cfg,
        &stats.hist,
        stats.measured,
        stats.total,
        outcome.client_ticks,
    );
    if stats.measured == 0 {
        eprintln!("loadgen: error: no message completed in the measured window");
        return EXIT_IO;
    }
    0
}

fn connect_all(cfg: &Config) -> Result<Vec<Stream>, CliError> {
    let deadline = Instant::now() + CONNECT_BUDGET;
    let mut out = Vec::with_capacity(cfg.conns);
    for i in 0..cfg.conns {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(cli_err!(
                "connecting to {} took longer than {CONNECT_BUDGET:?} ({i} of {} connected)",
                cfg.target,
                cfg.conns
            ));
        }
        let connect_failed = |e: io::Error| {
            cli_err!(
                "cannot connect to {} (connection {} of {}): {e} — is the server running?",
                cfg.target,
                i + 1,
                cfg.conns
            )
        };
        let stream = match &cfg.target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, left.min(Duration::from_secs(2)))
                    .map_err(connect_failed)?;
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Stream::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path).map_err(connect_failed)?;
                s.set_nonblocking(true)?;
                Stream::Unix(s)
            }
        };
        out.push(stream);
    }
    Ok(out)
}

/// One connection's state. Stream offsets count bytes since the start of
/// the connection; `recvd <= sent <= issued`.
struct Conn {
    stream: Stream,
    id: usize,
    phase: usize,
    /// Bytes of messages queued for sending (whole messages).
    issued: u64,
    /// Bytes written to the socket.
    sent: u64,
    /// Bytes read back and verified.
    recvd: u64,
    /// Queue time of each message in flight, oldest first.
    times: std::collections::VecDeque<Instant>,
    /// Whether writable interest is registered.
    writing: bool,
}

fn io_fail(c: &Conn, what: &str, e: io::Error) -> Failure {
    Failure::Io(format!("connection {}: {what}: {e}", c.id))
}

fn worker(
    cfg: &Config,
    share: Vec<(usize, Stream)>,
    pattern: &Pattern,
    window: &Window,
) -> Result<Stats, Failure> {
    let poller = Poller::new().map_err(|e| Failure::Io(format!("poller: {e}")))?;
    let size = cfg.size as u64;
    let mut conns: Vec<Conn> = share
        .into_iter()
        .map(|(id, stream)| Conn {
            stream,
            id,
            phase: pattern.phase(id),
            issued: 0,
            sent: 0,
            recvd: 0,
            times: std::collections::VecDeque::with_capacity(cfg.inflight),
            writing: false,
        })
        .collect();
    for (key, c) in conns.iter().enumerate() {
        // SAFETY: every stream is deleted from the poller below, before the
        // stream is dropped.
        unsafe { poller.add_with_mode(&c.stream, Event::readable(key), PollMode::Level) }
            .map_err(|e| io_fail(c, "register", e))?;
    }
    let result = drive(cfg, &poller, &mut conns, pattern, window, size);
    for c in &conns {
        let _ = poller.delete(&c.stream);
    }
    result
}

fn drive(
    cfg: &Config,
    poller: &Poller,
    conns: &mut [Conn],
    pattern: &Pattern,
    window: &Window,
    size: u64,
) -> Result<Stats, Failure> {
    let end = window.end;
    let mut stats = Stats::default();
    let now = Instant::now();
    for (key, c) in conns.iter_mut().enumerate() {
        c.times.extend(std::iter::repeat_n(now, cfg.inflight));
        c.issued += cfg.inflight as u64 * size;
        flush(poller, key, c, pattern)?;
    }
    let mut events = Events::with_capacity(NonZeroUsize::new(1024).unwrap());
    let mut buf = vec![0u8; PATTERN_MAX_SLICE];
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(stats);
        }
        events.clear();
        poller
            .wait(&mut events, Some(end - now))
            .map_err(|e| Failure::Io(format!("poll: {e}")))?;
        for ev in events.iter() {
            let c = &mut conns[ev.key];
            if ev.readable {
                on_readable(c, &mut buf, pattern, size, window, &mut stats)?;
                flush(poller, ev.key, c, pattern)?;
            } else if ev.writable {
                flush(poller, ev.key, c, pattern)?;
            }
        }
    }
}

/// One read; verifies the bytes, completes whole messages and queues as
/// many new ones.
fn on_readable(
    c: &mut Conn,
    buf: &mut [u8],
    pattern: &Pattern,
    size: u64,
    window: &Window,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let n = match (&c.stream).read(buf) {
        Ok(0) => {
            return Err(Failure::Io(format!(
                "connection {}: closed by the server after {} echoed bytes",
                c.id, c.recvd
            )))
        }
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
        Err(e) => return Err(io_fail(c, "read", e)),
    };
    let got = &buf[..n];
    if c.recvd + n as u64 > c.sent {
        return Err(Failure::Check(format!(
            "connection {}: received {} bytes but only {} were sent",
            c.id,
            c.recvd + n as u64,
            c.sent
        )));
    }
    let want = pattern.slice(c.phase, c.recvd, n);
    if got != want {
        let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
        let off = c.recvd + i as u64;
        return Err(Failure::Check(format!(
            "connection {}: echoed byte {off} (message {}, byte {} of it) is {:#04x}, expected {:#04x}",
            c.id,
            off / size,
            off % size,
            got[i],
            want[i]
        )));
    }
    let before = c.recvd / size;
    c.recvd += n as u64;
    let done = c.recvd / size - before;
    if done == 0 {
        return Ok(());
    }
    stats.complete(&mut c.times, done, Instant::now(), window);
    c.issued += done * size;
    Ok(())
}

/// Writes as much of the queued stream as the socket takes; registers
/// writable interest only while something is left.
fn flush(poller: &Poller, key: usize, c: &mut Conn, pattern: &Pattern) -> Result<(), Failure> {
    while c.sent < c.issued {
        let len = ((c.issued - c.sent) as usize).min(PATTERN_MAX_SLICE);
        match (&c.stream).write(pattern.slice(c.phase, c.sent, len)) {
            Ok(n) => {
                c.sent += n as u64;
                if n < len {
                    break; // the socket buffer is full; wait for writable
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_fail(c, "write", e)),
        }
    }
    let pending = c.sent < c.issued;
    if pending != c.writing {
        let interest = if pending {
            Event::all(key)
        } else {
            Event::readable(key)
        };
        poller
            .modify_with_mode(&c.stream, interest, PollMode::Level)
            .map_err(|e| io_fail(c, "modify", e))?;
        c.writing = pending;
    }
    Ok(())
}

fn report(cfg: &Config, hist: &Histogram, measured: u64, total: u64, client_ticks: u64) {
    let secs = cfg.duration.as_secs_f64();
    let per_s = measured as f64 / secs;
    let mib_s = per_s * cfg.size as f64 / (1024.0 * 1024.0);
    let p50 = hist.quantile(0.50) as f64 / 1000.0;
    let p99 = hist.quantile(0.99) as f64 / 1000.0;
    let client_cpu = client_ticks as f64 / clk_tck() as f64 / secs * 100.0;
    println!(
        "loadgen: {} conns x {} B x {} in flight, {} thread(s), {:.1} s measured after {:.1} s warm-up",
        cfg.conns,
        cfg.size,
        cfg.inflight,
        cfg.threads.min(cfg.conns),
        secs,
        cfg.warmup.as_secs_f64()
    );
    println!(
        "loadgen: {measured} messages ({per_s:.0} msg/s, {mib_s:.2} MiB/s echoed), \
         latency p50 {p50:.1} us, p99 {p99:.1} us; all bytes verified; loader CPU {client_cpu:.0} %"
    );
    println!(
        "RESULT msgs={measured} msgs_per_s={per_s:.1} mib_per_s={mib_s:.3} p50_us={p50:.1} \
         p99_us={p99:.1} total_msgs={total} conns={} size={} inflight={} duration_s={secs:.3} \
         client_cpu_pct={client_cpu:.1}",
        cfg.conns, cfg.size, cfg.inflight
    );
}
