//! `http_loadgen`: a cheap, checking load generator for HTTP/1.1 servers
//! and for WebSocket echo servers.
//!
//! ```text
//! http_loadgen --addr 127.0.0.1:PORT [--ws] [--conns 64] [--inflight 1]
//!              [--size 64] [--duration 5] [--warmup 1] [--threads 1]
//! ```
//!
//! Opens `--conns` keep-alive TCP connections (TCP_NODELAY) to a loopback
//! server and keeps `--inflight` requests in flight on each: it writes them
//! back to back (pipelined, when more than one) and sends a new one each
//! time a whole response has come back.
//!
//! - HTTP (the default): each request is `GET / HTTP/1.1` with a `Host`
//!   header. A response counts once its head and its `Content-Length`
//!   bytes of body are in; its status must be 200 and its body
//!   `Hello, World!` ([`http`]).
//! - `--ws`: each connection first opens a WebSocket (the HTTP/1.1
//!   upgrade, its `Sec-WebSocket-Accept` checked), then every request is a
//!   masked binary message of `--size` bytes and its response the echo,
//!   one unmasked frame, compared byte for byte ([`ws`]).
//!
//! The requests are made once, before the run, so sending one is a copy
//! out of a prepared buffer; the connections are driven by a
//! level-triggered, non-blocking event loop on `polling` — one thread by
//! default, or `--threads T` loops that split the connections — so the
//! generator costs little CPU next to the server. Latency is measured per
//! request from the moment it is queued for sending to the moment its
//! response is complete, and only responses completed inside the measured
//! window (after `--warmup`) count.
//!
//! Output on stdout is `loadgen`'s: `MARK measure_start` and
//! `MARK measure_end` at the edges of the measured window, a summary, and
//!
//! ```text
//! RESULT msgs=... msgs_per_s=... p50_us=... p99_us=... total_msgs=... ...
//! ```
//!
//! where a "msg" is one request answered. The run always ends by itself
//! after connecting (at most ~10 s) + warm-up + duration. Exit codes: 0
//! ok, 2 usage, connect or handshake error, 3 a wrong response, 4 the
//! connection failed or no response completed in the measured window.

mod http;
mod ws;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::process::exit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use twill_bench::drive::{deal, Driver, Failure, Stats, Window, EXIT_IO};
use twill_bench::{cli_err, clk_tck, loopback_addr, Args, CliError, Histogram};

const USAGE: &str = "usage: http_loadgen --addr 127.0.0.1:PORT [--ws] [--conns 64] \
[--inflight 1] [--size 64] [--duration 5] [--warmup 1] [--threads 1]";

/// How long connecting (and, with `--ws`, opening) all connections may
/// take in total.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);

/// The most requests in flight on one connection.
const MAX_INFLIGHT: usize = 1024;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone)]
struct Config {
    addr: SocketAddr,
    ws: bool,
    conns: usize,
    inflight: usize,
    /// The WebSocket message size, in bytes.
    size: usize,
    duration: Duration,
    warmup: Duration,
    threads: usize,
}

/// The requests a connection sends, one after another for ever: a period
/// of whole requests, all of one length, followed by a copy of its start,
/// so that any `inflight` requests from any offset are one contiguous
/// slice.
struct Requests {
    buf: Vec<u8>,
    /// Bytes of one request.
    len: usize,
    /// Bytes after which the stream repeats.
    period: usize,
}

impl Requests {
    /// The stream that repeats `period` (whole requests of `len` bytes
    /// each), with room for `inflight` requests past any offset.
    fn new(period: Vec<u8>, len: usize, inflight: usize) -> Requests {
        assert!(len > 0 && period.len() % len == 0 && !period.is_empty());
        let n = period.len();
        let tail = inflight * len;
        let buf: Vec<u8> = period.iter().copied().cycle().take(n + tail).collect();
        Requests {
            buf,
            len,
            period: n,
        }
    }

    /// The `len` bytes (at most `inflight` requests) from stream offset
    /// `offset`.
    fn slice(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % self.period as u64) as usize;
        &self.buf[start..start + len]
    }
}

/// What a connection checks its responses with.
enum Responses {
    /// HTTP responses, parsed out of `pending`, the bytes read and not yet
    /// part of a whole response.
    Http { pending: Vec<u8> },
    /// WebSocket echoes: every byte compared with the expected stream.
    Ws {
        expected: Arc<ws::Expected>,
        /// Bytes read and checked so far.
        recvd: u64,
    },
}

impl Responses {
    /// Takes `got`, just read, and returns how many responses it
    /// completed; `answered` responses were complete before and `sent` are
    /// the requests written so far, so a response to a request not yet
    /// sent is caught.
    fn take(&mut self, got: &[u8], answered: u64, sent: u64) -> Result<u64, String> {
        let done = match self {
            Responses::Http { pending } => {
                pending.extend_from_slice(got);
                let (done, used) = http::complete_responses(pending)?;
                pending.drain(..used);
                done
            }
            Responses::Ws { expected, recvd } => {
                let done = expected.check(*recvd, got)?;
                *recvd += got.len() as u64;
                done
            }
        };
        if answered + done > sent {
            return Err(format!(
                "{} responses to {sent} requests sent",
                answered + done
            ));
        }
        Ok(done)
    }
}

/// One connection's state. `answered <= sent <= issued`, in requests.
struct Conn {
    stream: TcpStream,
    id: usize,
    /// Bytes of requests queued for sending (whole requests).
    issued: u64,
    /// Bytes written to the socket.
    written: u64,
    /// Responses complete.
    answered: u64,
    responses: Responses,
    /// Queue time of each request in flight, oldest first.
    times: VecDeque<Instant>,
    /// Whether writable interest is registered.
    writing: bool,
}

fn main() {
    let cfg = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("http_loadgen: {e}\n{USAGE}");
            exit(2);
        }
    };
    exit(run(cfg));
}

fn parse() -> Result<Config, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let addr = match a.value("--addr")? {
        Some(addr) => loopback_addr(&addr)?,
        None => return Err(cli_err!("--addr is required")),
    };
    let cfg = Config {
        addr,
        ws: a.flag("--ws"),
        conns: a.parse_or("--conns", 64)?,
        inflight: a.parse_or("--inflight", 1)?,
        size: a.parse_or("--size", 64)?,
        duration: a.seconds_or("--duration", 5.0)?,
        warmup: a.seconds_or("--warmup", 1.0)?,
        threads: a.parse_or("--threads", 1)?,
    };
    a.finish()?;
    if cfg.conns == 0 || cfg.threads == 0 || cfg.duration.is_zero() {
        return Err(cli_err!(
            "--conns, --threads and --duration must be positive"
        ));
    }
    if !(1..=MAX_INFLIGHT).contains(&cfg.inflight) {
        return Err(cli_err!("--inflight must be 1 to {MAX_INFLIGHT}"));
    }
    if !(1..=ws::MAX_MESSAGE).contains(&cfg.size) {
        return Err(cli_err!("--size must be 1 to {} bytes", ws::MAX_MESSAGE));
    }
    Ok(cfg)
}

/// Connects every connection, runs the workers and reports; returns the exit
/// code.
fn run(cfg: Config) -> i32 {
    let streams = match connect_all(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("http_loadgen: error: {e}");
            return 2;
        }
    };
    let (requests, expected) = if cfg.ws {
        let frames = ws::Frames::new(cfg.size);
        (
            Arc::new(Requests::new(
                frames.requests,
                frames.request_len,
                cfg.inflight,
            )),
            Some(Arc::new(frames.expected)),
        )
    } else {
        let request = http::request(cfg.addr);
        let len = request.len();
        (Arc::new(Requests::new(request, len, cfg.inflight)), None)
    };
    let window = Window::after(cfg.warmup, cfg.duration);
    let threads = cfg.threads.min(cfg.conns);
    let conns = streams.into_iter().enumerate().map(|(id, stream)| {
        let responses = match &expected {
            Some(expected) => Responses::Ws {
                expected: Arc::clone(expected),
                recvd: 0,
            },
            None => Responses::Http {
                pending: Vec::with_capacity(READ_CHUNK),
            },
        };
        Conn {
            stream,
            id,
            issued: 0,
            written: 0,
            answered: 0,
            responses,
            times: VecDeque::with_capacity(cfg.inflight),
            writing: false,
        }
    });
    let shares = deal(conns, threads);
    let driver = Driver {
        program: "http_loadgen",
        thread_prefix: "http-loadgen",
        check_label: "WRONG RESPONSE",
    };
    let work_cfg = cfg.clone();
    let outcome = match driver.run(shares, window, move |share| {
        worker(&work_cfg, share, &requests, &window)
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
        eprintln!("http_loadgen: error: no response completed in the measured window");
        return EXIT_IO;
    }
    0
}

/// Connects (and with `--ws` opens the WebSocket on) every connection,
/// blocking, within [`CONNECT_BUDGET`]; returns them non-blocking.
fn connect_all(cfg: &Config) -> Result<Vec<TcpStream>, CliError> {
    let deadline = Instant::now() + CONNECT_BUDGET;
    let mut out = Vec::with_capacity(cfg.conns);
    for i in 0..cfg.conns {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(cli_err!(
                "connecting to {} took longer than {CONNECT_BUDGET:?} ({i} of {} connected)",
                cfg.addr,
                cfg.conns
            ));
        }
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            cli_err!(
                "{what} {} (connection {} of {}): {e} — is the server running?",
                cfg.addr,
                i + 1,
                cfg.conns
            )
        };
        let stream = TcpStream::connect_timeout(&cfg.addr, left.min(Duration::from_secs(2)))
            .map_err(|e| failed("cannot connect to", &e))?;
        stream.set_nodelay(true)?;
        if cfg.ws {
            stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            ws::open(&stream, cfg.addr).map_err(|e| failed("no WebSocket from", &e))?;
            stream.set_read_timeout(None)?;
        }
        stream.set_nonblocking(true)?;
        out.push(stream);
    }
    Ok(out)
}

fn io_fail(c: &Conn, what: &str, e: io::Error) -> Failure {
    Failure::Io(format!("connection {}: {what}: {e}", c.id))
}

fn worker(
    cfg: &Config,
    mut conns: Vec<Conn>,
    requests: &Requests,
    window: &Window,
) -> Result<Stats, Failure> {
    let poller = Poller::new().map_err(|e| Failure::Io(format!("poller: {e}")))?;
    for (key, c) in conns.iter().enumerate() {
        // SAFETY: every stream is deleted from the poller below, before the
        // stream is dropped.
        unsafe { poller.add_with_mode(&c.stream, Event::readable(key), PollMode::Level) }
            .map_err(|e| io_fail(c, "register", e))?;
    }
    let result = drive(cfg, &poller, &mut conns, requests, window);
    for c in &conns {
        let _ = poller.delete(&c.stream);
    }
    result
}

fn drive(
    cfg: &Config,
    poller: &Poller,
    conns: &mut [Conn],
    requests: &Requests,
    window: &Window,
) -> Result<Stats, Failure> {
    let end = window.end;
    let mut stats = Stats::default();
    let now = Instant::now();
    for (key, c) in conns.iter_mut().enumerate() {
        c.times.extend(std::iter::repeat_n(now, cfg.inflight));
        c.issued += (cfg.inflight * requests.len) as u64;
        flush(poller, key, c, requests)?;
    }
    let mut events = Events::with_capacity(NonZeroUsize::new(1024).unwrap());
    let mut buf = vec![0u8; READ_CHUNK];
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
                on_readable(c, &mut buf, requests, window, &mut stats)?;
                flush(poller, ev.key, c, requests)?;
            } else if ev.writable {
                flush(poller, ev.key, c, requests)?;
            }
        }
    }
}

/// One read; checks the bytes, completes whole responses and queues as
/// many new requests.
fn on_readable(
    c: &mut Conn,
    buf: &mut [u8],
    requests: &Requests,
    window: &Window,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let n = match (&c.stream).read(buf) {
        Ok(0) => {
            return Err(Failure::Io(format!(
                "connection {}: closed by the server after {} responses",
                c.id, c.answered
            )))
        }
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
        Err(e) => return Err(io_fail(c, "read", e)),
    };
    let sent = c.written / requests.len as u64;
    let done = c
        .responses
        .take(&buf[..n], c.answered, sent)
        .map_err(|e| Failure::Check(format!("connection {}: {e}", c.id)))?;
    if done == 0 {
        return Ok(());
    }
    c.answered += done;
    stats.complete(&mut c.times, done, Instant::now(), window);
    c.issued += done * requests.len as u64;
    Ok(())
}

/// Writes as much of the queued requests as the socket takes; registers
/// writable interest only while something is left.
fn flush(poller: &Poller, key: usize, c: &mut Conn, requests: &Requests) -> Result<(), Failure> {
    while c.written < c.issued {
        let len = (c.issued - c.written) as usize;
        match (&c.stream).write(requests.slice(c.written, len)) {
            Ok(n) => {
                c.written += n as u64;
                if n < len {
                    break; // the socket buffer is full; wait for writable
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_fail(c, "write", e)),
        }
    }
    let pending = c.written < c.issued;
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
    let p50 = hist.quantile(0.50) as f64 / 1000.0;
    let p99 = hist.quantile(0.99) as f64 / 1000.0;
    let client_cpu = client_ticks as f64 / clk_tck() as f64 / secs * 100.0;
    let what = if cfg.ws {
        format!("WebSocket {} B binary messages", cfg.size)
    } else {
        "HTTP GET /".to_string()
    };
    println!(
        "http_loadgen: {what}, {} conns x {} in flight, {} thread(s), {secs:.1} s measured after \
         {:.1} s warm-up",
        cfg.conns,
        cfg.inflight,
        cfg.threads.min(cfg.conns),
        cfg.warmup.as_secs_f64()
    );
    println!(
        "http_loadgen: {measured} responses ({per_s:.0}/s), latency p50 {p50:.1} us, p99 \
         {p99:.1} us; all checked; loader CPU {client_cpu:.0} %"
    );
    println!(
        "RESULT msgs={measured} msgs_per_s={per_s:.1} p50_us={p50:.1} p99_us={p99:.1} \
         total_msgs={total} conns={} inflight={} ws={} size={} duration_s={secs:.3} \
         client_cpu_pct={client_cpu:.1}",
        cfg.conns, cfg.inflight, cfg.ws, cfg.size
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_stream_wraps_contiguously() {
        let r = Requests::new(b"abcdef".to_vec(), 2, 4);
        assert_eq!(r.slice(0, 8), b"abcdefab");
        assert_eq!(r.slice(4, 8), b"efabcdef");
        assert_eq!(r.slice(6, 2), b"ab");
    }
}
