//! `udp_loadgen`: a verifying UDP echo load generator.
//!
//! ```text
//! udp_loadgen --addr 127.0.0.1:PORT [--clients 64] [--size 64] [--inflight 1]
//!             [--duration 5] [--warmup 1] [--resend-ms 200]
//! ```
//!
//! Each of `--clients` clients has its own UDP socket, connected to the
//! server (so the kernel drops datagrams from anyone else), and keeps
//! `--inflight` datagrams of `--size` bytes outstanding, sending a new one
//! each time one comes back. A datagram is its sequence number (8 bytes,
//! big-endian), the client's number (4 bytes) and `size − 12` bytes cut
//! from the client's deterministic stream at that sequence number
//! ([`twill_bench::Pattern`]), so every echoed byte is checked: a datagram
//! of the wrong length, from another client, with a sequence number never
//! sent or a damaged byte stops the run (exit code 3), and so does
//! receiving more datagrams than were sent.
//!
//! UDP may drop datagrams. One not back after `--resend-ms` is counted as
//! lost and sent again with the same sequence number, so a loss never
//! stalls a client; whichever copy comes back first completes it (a later
//! copy is a duplicate, checked and counted), and its latency runs from its
//! first send. Latency and counts cover messages completed inside the
//! measured window (after `--warmup`); `lost` counts the resends made in it.
//!
//! One thread drives every socket: a level-triggered `polling` loop doing
//! one `recv` per readiness event into a reused buffer and no allocation per
//! datagram. Output on stdout, as `loadgen`'s: `MARK measure_start` and
//! `MARK measure_end` at the edges of the measured window, a summary, and
//!
//! ```text
//! RESULT msgs=... msgs_per_s=... p50_us=... p99_us=... lost=... dups=... ...
//! ```
//!
//! Exit codes: 0 ok, 2 usage or socket setup error, 3 verification error,
//! 4 a socket error (the server gone: connection refused) or no datagram
//! completed in the measured window.

use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::process::exit;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use twill_bench::{
    cli_err, clk_tck, loopback_addr, self_cpu_ticks, Args, CliError, Histogram, Pattern,
};

const USAGE: &str = "usage: udp_loadgen --addr 127.0.0.1:PORT [--clients 64] [--size 64] \
[--inflight 1] [--duration 5] [--warmup 1] [--resend-ms 200]";

/// Sequence number and client number in front of every datagram.
const HEADER: usize = 12;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

struct Config {
    addr: SocketAddr,
    clients: usize,
    size: usize,
    inflight: usize,
    duration: Duration,
    warmup: Duration,
    resend_after: Duration,
}

/// Why the run stopped early.
enum Failure {
    Verify(String),
    Io(String),
}

/// A datagram sent and not yet echoed.
struct Outstanding {
    seq: u64,
    /// When it was first sent: its latency runs from here.
    first_sent: Instant,
    /// When it was last (re)sent.
    last_sent: Instant,
}

struct Client {
    socket: UdpSocket,
    id: u32,
    phase: usize,
    next_seq: u64,
    outstanding: Vec<Outstanding>,
    /// Datagrams sent, resends included, and echoes received: an echo
    /// more than was sent is a verification error.
    sends: u64,
    receives: u64,
}

#[derive(Default)]
struct Stats {
    hist: Histogram,
    /// Datagrams completed in the measured window, and in the whole run.
    measured: u64,
    total: u64,
    /// Resends made in the measured window, and in the whole run.
    lost: u64,
    lost_total: u64,
    /// Echoes of a datagram already completed (the other copy of a resend).
    dups: u64,
}

fn main() {
    let cfg = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("udp_loadgen: {e}\n{USAGE}");
            exit(2);
        }
    };
    exit(run(&cfg));
}

fn parse() -> Result<Config, CliError> {
    let mut a = Args::from_env();
    if a.wants_help() {
        println!("{USAGE}");
        exit(0);
    }
    let addr = a
        .value("--addr")?
        .ok_or_else(|| cli_err!("--addr is required"))?;
    let cfg = Config {
        addr: loopback_addr(&addr)?,
        clients: a.parse_or("--clients", 64)?,
        size: a.parse_or("--size", 64)?,
        inflight: a.parse_or("--inflight", 1)?,
        duration: a.seconds_or("--duration", 5.0)?,
        warmup: a.seconds_or("--warmup", 1.0)?,
        resend_after: Duration::from_millis(a.parse_or("--resend-ms", 200)?),
    };
    a.finish()?;
    if cfg.clients == 0 || cfg.inflight == 0 || cfg.duration.is_zero() {
        return Err(cli_err!(
            "--clients, --inflight and --duration must be positive"
        ));
    }
    if cfg.size <= HEADER || cfg.size > MAX_DATAGRAM {
        return Err(cli_err!("--size must be {} to {MAX_DATAGRAM}", HEADER + 1));
    }
    if cfg.inflight > 1024 || cfg.clients > 10_000 || cfg.resend_after.is_zero() {
        return Err(cli_err!(
            "--inflight is limited to 1024, --clients to 10000; --resend-ms must be positive"
        ));
    }
    Ok(cfg)
}

fn run(cfg: &Config) -> i32 {
    let (poller, mut clients) = match open_clients(cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("udp_loadgen: error: {e}");
            return 2;
        }
    };
    let pattern = Pattern::new(cfg.size);
    let mut stats = Stats::default();
    let mut cpu = [0u64; 2];
    let result = drive(cfg, &poller, &mut clients, &pattern, &mut stats, &mut cpu);
    for c in &clients {
        let _ = poller.delete(&c.socket);
    }
    match result {
        Ok(()) => {}
        Err(Failure::Verify(msg)) => {
            eprintln!("udp_loadgen: VERIFY ERROR: {msg}");
            return 3;
        }
        Err(Failure::Io(msg)) => {
            eprintln!("udp_loadgen: error: {msg}");
            return 4;
        }
    }
    report(cfg, &stats, cpu[1].saturating_sub(cpu[0]));
    if stats.measured == 0 {
        eprintln!("udp_loadgen: error: no datagram came back in the measured window");
        return 4;
    }
    0
}

fn open_clients(cfg: &Config) -> Result<(Poller, Vec<Client>), CliError> {
    let poller = Poller::new()?;
    let mut clients = Vec::with_capacity(cfg.clients);
    let pattern_phases = Pattern::new(cfg.size);
    for id in 0..cfg.clients {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(cfg.addr)?;
        socket.set_nonblocking(true)?;
        clients.push(Client {
            socket,
            id: id as u32,
            phase: pattern_phases.phase(id),
            next_seq: 0,
            outstanding: Vec::with_capacity(cfg.inflight),
            sends: 0,
            receives: 0,
        });
    }
    for (key, c) in clients.iter().enumerate() {
        // SAFETY: every socket is deleted from the poller in `run`, before
        // the sockets are dropped.
        unsafe { poller.add_with_mode(&c.socket, Event::readable(key), PollMode::Level) }?;
    }
    Ok((poller, clients))
}

fn drive(
    cfg: &Config,
    poller: &Poller,
    clients: &mut [Client],
    pattern: &Pattern,
    stats: &mut Stats,
    cpu: &mut [u64; 2],
) -> Result<(), Failure> {
    let start = Instant::now();
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let mut datagram = vec![0u8; cfg.size];
    let mut buf = vec![0u8; MAX_DATAGRAM];
    for c in clients.iter_mut() {
        for _ in 0..cfg.inflight {
            send_new(c, pattern, &mut datagram, start)?;
        }
    }
    // Timeouts are looked for a few times per resend period, not on every
    // wake-up: the scan walks every outstanding datagram.
    let scan_every = cfg.resend_after / 4;
    let mut next_scan = start + scan_every;
    let mut marked_start = false;
    let mut events = Events::with_capacity(NonZeroUsize::new(1024).unwrap());
    loop {
        let now = Instant::now();
        if !marked_start && now >= warm_end {
            mark("measure_start");
            cpu[0] = self_cpu_ticks().unwrap_or(0);
            marked_start = true;
        }
        if now >= end {
            mark("measure_end");
            cpu[1] = self_cpu_ticks().unwrap_or(0);
            return Ok(());
        }
        if now >= next_scan {
            let in_window = now >= warm_end;
            for c in clients.iter_mut() {
                resend_overdue(c, cfg, pattern, &mut datagram, now, in_window, stats)?;
            }
            next_scan = now + scan_every;
        }
        let wake = if marked_start { end } else { warm_end }.min(next_scan);
        events.clear();
        poller
            .wait(&mut events, Some(wake.saturating_duration_since(now)))
            .map_err(|e| Failure::Io(format!("poll: {e}")))?;
        for ev in events.iter() {
            let c = &mut clients[ev.key];
            on_readable(c, &mut buf, &mut datagram, pattern, warm_end, end, stats)?;
        }
    }
}

fn mark(name: &str) {
    println!("MARK {name}");
    let _ = io::stdout().flush();
}

/// Writes datagram `seq` of client `c` into `datagram`.
fn fill(c: &Client, pattern: &Pattern, seq: u64, datagram: &mut [u8]) {
    let size = datagram.len();
    datagram[..8].copy_from_slice(&seq.to_be_bytes());
    datagram[8..HEADER].copy_from_slice(&c.id.to_be_bytes());
    // The bytes after the header are those at the same place of message
    // `seq` of the client's stream: past its 4-byte length, all payload.
    datagram[HEADER..].copy_from_slice(pattern.slice(
        c.phase,
        seq * size as u64 + HEADER as u64,
        size - HEADER,
    ));
}

/// Sends `datagram`; a full socket buffer is as good as a loss on the
/// wire (the resend timer sends it again).
fn send(c: &mut Client, datagram: &[u8]) -> Result<(), Failure> {
    c.sends += 1;
    match c.socket.send(datagram) {
        Ok(_) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(105 /* ENOBUFS */) =>
        {
            Ok(())
        }
        Err(e) => Err(socket_failure(c, "send", e)),
    }
}

fn socket_failure(c: &Client, what: &str, e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Failure::Io(format!(
            "client {}: {what}: nothing listens any more (connection refused)",
            c.id
        ))
    } else {
        Failure::Io(format!("client {}: {what}: {e}", c.id))
    }
}

fn send_new(
    c: &mut Client,
    pattern: &Pattern,
    datagram: &mut [u8],
    now: Instant,
) -> Result<(), Failure> {
    let seq = c.next_seq;
    c.next_seq += 1;
    fill(c, pattern, seq, datagram);
    c.outstanding.push(Outstanding {
        seq,
        first_sent: now,
        last_sent: now,
    });
    send(c, datagram)
}

fn resend_overdue(
    c: &mut Client,
    cfg: &Config,
    pattern: &Pattern,
    datagram: &mut [u8],
    now: Instant,
    in_window: bool,
    stats: &mut Stats,
) -> Result<(), Failure> {
    for i in 0..c.outstanding.len() {
        if now.duration_since(c.outstanding[i].last_sent) < cfg.resend_after {
            continue;
        }
        c.outstanding[i].last_sent = now;
        let seq = c.outstanding[i].seq;
        fill(c, pattern, seq, datagram);
        send(c, datagram)?;
        stats.lost_total += 1;
        if in_window {
            stats.lost += 1;
        }
    }
    Ok(())
}

/// One `recv`: verifies the echo, completes its datagram and sends the next.
fn on_readable(
    c: &mut Client,
    buf: &mut [u8],
    datagram: &mut [u8],
    pattern: &Pattern,
    warm_end: Instant,
    end: Instant,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let n = match c.socket.recv(buf) {
        Ok(n) => n,
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            return Ok(())
        }
        Err(e) => return Err(socket_failure(c, "recv", e)),
    };
    let got = &buf[..n];
    let size = datagram.len();
    let id = c.id;
    let verify = |what: String| Failure::Verify(format!("client {id}: {what}"));
    if n != size {
        return Err(verify(format!("echo of {n} bytes, sent {size}")));
    }
    let seq = u64::from_be_bytes(got[..8].try_into().expect("8 bytes"));
    let from = u32::from_be_bytes(got[8..HEADER].try_into().expect("4 bytes"));
    if from != c.id {
        return Err(verify(format!("got client {from}'s datagram {seq}")));
    }
    if seq >= c.next_seq {
        return Err(verify(format!(
            "echo of datagram {seq}, only {} sent",
            c.next_seq
        )));
    }
    let want = pattern.slice(c.phase, seq * size as u64 + HEADER as u64, size - HEADER);
    if got[HEADER..] != *want {
        let i = got[HEADER..]
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(verify(format!(
            "datagram {seq}, byte {} is {:#04x}, expected {:#04x}",
            HEADER + i,
            got[HEADER + i],
            want[i]
        )));
    }
    c.receives += 1;
    if c.receives > c.sends {
        return Err(verify(format!(
            "{} echoes received, {} datagrams sent",
            c.receives, c.sends
        )));
    }
    let Some(i) = c.outstanding.iter().position(|o| o.seq == seq) else {
        stats.dups += 1;
        return Ok(());
    };
    let done = c.outstanding.swap_remove(i);
    let now = Instant::now();
    if now >= warm_end && now < end {
        stats.hist.record((now - done.first_sent).as_nanos() as u64);
        stats.measured += 1;
    }
    stats.total += 1;
    send_new(c, pattern, datagram, now)
}

fn report(cfg: &Config, stats: &Stats, client_ticks: u64) {
    let secs = cfg.duration.as_secs_f64();
    let per_s = stats.measured as f64 / secs;
    let p50 = stats.hist.quantile(0.50) as f64 / 1000.0;
    let p99 = stats.hist.quantile(0.99) as f64 / 1000.0;
    let client_cpu = client_ticks as f64 / clk_tck() as f64 / secs * 100.0;
    println!(
        "udp_loadgen: {} clients x {} B x {} in flight, {:.1} s measured after {:.1} s warm-up, \
         resend after {} ms",
        cfg.clients,
        cfg.size,
        cfg.inflight,
        secs,
        cfg.warmup.as_secs_f64(),
        cfg.resend_after.as_millis()
    );
    println!(
        "udp_loadgen: {} datagrams echoed ({per_s:.0}/s), latency p50 {p50:.1} us, p99 {p99:.1} us; \
         {} lost and resent ({} over the whole run), {} duplicate echoes; all bytes verified; \
         loader CPU {client_cpu:.0} %",
        stats.measured, stats.lost, stats.lost_total, stats.dups
    );
    println!(
        "RESULT msgs={} msgs_per_s={per_s:.1} p50_us={p50:.1} p99_us={p99:.1} lost={} \
         lost_total={} dups={} total_msgs={} clients={} size={} inflight={} duration_s={secs:.3} \
         client_cpu_pct={client_cpu:.1}",
        stats.measured,
        stats.lost,
        stats.lost_total,
        stats.dups,
        stats.total,
        cfg.clients,
        cfg.size,
        cfg.inflight
    );
}
