//! Shared pieces of twill's benchmark suite.
//!
//! The binaries under `src/bin/` are load generators (`loadgen` for
//! streams over TCP or Unix sockets, `udp_loadgen`, `http_loadgen` for
//! HTTP and WebSocket servers), baseline echo servers
//! (`raw_polling_echo`, `async_io_echo`, `std_udp_echo`) and the runners
//! that compare servers side by side (`echo_bench`, `fanout_bench`,
//! `tls_bench`, `udp_bench`, `unix_bench`, `http_bench`, `ws_bench`, ...).
//! This library holds what
//! they share: a tiny argument parser, the verification byte patterns, a
//! latency histogram, the `/proc` CPU-time reader, the measured window and
//! the load generator's run ([`measure`]), the load generators' worker
//! threads and measured window ([`drive`]), the parsing of the
//! `listening on ADDR` ready line and of `key=value` result lines, the
//! rounds in rotation and their paired ratios ([`rotation`]), the
//! reports' header and round line ([`report`]), the stream-echo
//! scenarios and samples ([`echo`]), and the request-response runners'
//! rounds and tables ([`request`]).
//!
//! Everything here is plain `std`; no extra dependencies.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

pub mod drive;
pub mod echo;
pub mod measure;
pub mod report;
pub mod request;
pub mod rotation;
pub mod server;

/// An error with a message for the user; binaries print it and exit non-zero.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// The options a runner's `parse` returned, or, if it failed, the error on
/// stderr after `program: ` and exit status 2.
pub fn parsed_or_exit<T>(program: &str, parsed: Result<T, CliError>) -> T {
    parsed.unwrap_or_else(|e| {
        eprintln!("{program}: {e}");
        std::process::exit(2)
    })
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Builds a [`CliError`] from a format string.
#[macro_export]
macro_rules! cli_err {
    ($($arg:tt)*) => { $crate::CliError(format!($($arg)*)) };
}

/// Checks a run's shape as the echo-style benchmarks take it: `rounds`
/// and `threads` positive, `duration` (positive) and `warmup` within an
/// hour.
pub fn check_run_shape(
    rounds: usize,
    threads: usize,
    duration: f64,
    warmup: f64,
) -> Result<(), CliError> {
    let secs_ok = |v: f64| v.is_finite() && (0.0..=3600.0).contains(&v);
    if rounds == 0 || threads == 0 || duration == 0.0 || !secs_ok(duration) || !secs_ok(warmup) {
        return Err(cli_err!(
            "--rounds and --threads must be positive, --duration and --warmup 0 to 3600 s"
        ));
    }
    Ok(())
}

/// A minimal command-line parser: `--key value`, `--key=value`, `--flag` and
/// positional arguments.
///
/// Options are taken out one by one; [`Args::finish`] then rejects anything
/// left over, so a typo is an error rather than silently ignored.
#[derive(Debug)]
pub struct Args {
    rest: Vec<String>,
}

impl Args {
    /// Collects the process arguments (without the program name).
    pub fn from_env() -> Self {
        Args::from_vec(std::env::args().skip(1).collect())
    }

    /// Collects the process arguments, after printing `usage` and exiting
    /// with status 0 if `-h`/`--help` is among them.
    pub fn from_env_or_usage(usage: &str) -> Self {
        let a = Args::from_env();
        if a.wants_help() {
            println!("{usage}");
            std::process::exit(0);
        }
        a
    }

    /// Builds a parser over the given arguments (without the program name).
    pub fn from_vec(args: Vec<String>) -> Self {
        // Normalise `--key=value` into `--key value`.
        let mut rest = Vec::with_capacity(args.len());
        for a in args {
            match a.split_once('=') {
                Some((k, v)) if k.starts_with("--") => {
                    rest.push(k.to_string());
                    rest.push(v.to_string());
                }
                _ => rest.push(a),
            }
        }
        Args { rest }
    }

    /// Whether `-h`/`--help` was given.
    pub fn wants_help(&self) -> bool {
        self.rest.iter().any(|a| a == "-h" || a == "--help")
    }

    /// Removes `--name` and returns whether it was present.
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|a| a != name);
        self.rest.len() != before
    }

    /// Removes every `--name VALUE` pair and returns the values, in order.
    pub fn values(&mut self, name: &str) -> Result<Vec<String>, CliError> {
        let mut out = Vec::new();
        while let Some(i) = self.rest.iter().position(|a| a == name) {
            if i + 1 >= self.rest.len() {
                return Err(cli_err!("{name} needs a value"));
            }
            out.push(self.rest.remove(i + 1));
            self.rest.remove(i);
        }
        Ok(out)
    }

    /// Removes `--name VALUE` and returns the last value given, if any.
    pub fn value(&mut self, name: &str) -> Result<Option<String>, CliError> {
        Ok(self.values(name)?.pop())
    }

    /// Removes `--name SECONDS` (a decimal number from 0 to 3600) and
    /// returns it as a duration, or `default` seconds if it is absent.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut a = twill_bench::Args::from_vec(vec!["--warmup".into(), "0.5".into()]);
    /// assert_eq!(a.seconds_or("--warmup", 1.0).unwrap(), Duration::from_millis(500));
    /// assert_eq!(a.seconds_or("--duration", 5.0).unwrap(), Duration::from_secs(5));
    /// let mut a = twill_bench::Args::from_vec(vec!["--duration".into(), "-1".into()]);
    /// assert!(a.seconds_or("--duration", 5.0).is_err());
    /// ```
    pub fn seconds_or(&mut self, name: &str, default: f64) -> Result<Duration, CliError> {
        let v: f64 = self.parse_or(name, default)?;
        if v.is_finite() && (0.0..=3600.0).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(cli_err!("{name} must be between 0 and 3600 seconds"))
        }
    }

    /// Removes `--name VALUE` and parses it, or returns `default`.
    pub fn parse_or<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, CliError>
    where
        T::Err: fmt::Display,
    {
        match self.value(name)? {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| cli_err!("bad value {v:?} for {name}: {e}")),
        }
    }

    /// Removes and returns the first positional (not `--`-prefixed) argument.
    pub fn positional(&mut self) -> Option<String> {
        let i = self.rest.iter().position(|a| !a.starts_with("--"))?;
        Some(self.rest.remove(i))
    }

    /// Fails if any argument was not consumed.
    pub fn finish(self) -> Result<(), CliError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(cli_err!("unexpected arguments: {}", self.rest.join(" ")))
        }
    }
}

/// Parses a socket address and refuses anything but a loopback address: the
/// benchmarks must never send traffic off this machine.
pub fn loopback_addr(s: &str) -> Result<SocketAddr, CliError> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|e| cli_err!("bad address {s:?}: {e} (expected 127.0.0.1:PORT)"))?;
    if !addr.ip().is_loopback() {
        return Err(cli_err!(
            "refusing non-loopback address {addr}: benchmarks run on loopback only"
        ));
    }
    Ok(addr)
}

/// Parses the address out of a server's ready line.
///
/// The line may carry a log prefix, e.g.
/// `[2025-01-01T00:00:00Z INFO  twill] listening on 127.0.0.1:41234`;
/// the address is what follows `listening on ` up to the first character
/// that cannot be part of an address.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let (_, after) = line.split_once("listening on ")?;
    // Stop at whatever cannot be part of an address: a space, punctuation
    // or a colour escape sequence.
    let end = after
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(after.len());
    let token = &after[..end];
    token
        .parse()
        .ok()
        .or_else(|| token.strip_suffix(']')?.parse().ok())
}

/// Parses a line of `key=value` pairs separated by whitespace (the first
/// word, e.g. `RESULT`, is skipped if it has no `=`).
pub fn parse_kv(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Length of the pseudo-random byte sequence message payloads are cut
/// from: a prime, so payloads do not line up with any message size.
pub const PATTERN_PERIOD: usize = 65_521;

/// The largest slice a caller may take from [`Pattern::slice`].
pub const PATTERN_MAX_SLICE: usize = 64 * 1024;

/// Bytes of the length header in front of every message.
pub const FRAME_HEADER: usize = 4;

/// The deterministic byte stream each load-generator connection sends.
///
/// The stream is a sequence of length-prefixed messages of `size` bytes
/// each, so that a plain echo server and a framing one (a length-field
/// decoder with a prepender) can be driven by the same load:
///
/// ```text
/// +--------------------+---------------------------------------+
/// | len: u32 BE        | payload: len = size - 4 bytes         |
/// +--------------------+---------------------------------------+
/// ```
///
/// Payloads are consecutive cuts of a fixed pseudo-random sequence, so the
/// stream repeats only after `period()` bytes (at least 251 messages, and
/// at least ~64 KiB). Connection `c` starts at its own message phase, so
/// bytes crossing between connections are caught too. The echo must
/// reproduce the stream exactly, so lost, duplicated, corrupted or reordered
/// bytes are detected. One buffer (period plus [`PATTERN_MAX_SLICE`]) serves
/// all connections; writing and checking are plain `memcpy`/`memcmp`-speed
/// slice operations.
pub struct Pattern {
    buf: Vec<u8>,
    size: usize,
    messages: usize,
}

impl Pattern {
    /// Builds the stream of `size`-byte messages (`size` > [`FRAME_HEADER`],
    /// at most 1 MiB).
    pub fn new(size: usize) -> Self {
        assert!(
            size > FRAME_HEADER && size <= 1 << 20,
            "bad message size {size}"
        );
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut base = Vec::with_capacity(PATTERN_PERIOD);
        while base.len() < PATTERN_PERIOD {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            for b in v.to_le_bytes() {
                if base.len() < PATTERN_PERIOD {
                    base.push(b);
                }
            }
        }
        // 251 is prime: connection phases (below) spread over all of them.
        let messages = (PATTERN_PERIOD / size)
            .max(251.min((8 << 20) / size))
            .max(1);
        let period = messages * size;
        let header = ((size - FRAME_HEADER) as u32).to_be_bytes();
        let mut buf = Vec::with_capacity(period + PATTERN_MAX_SLICE);
        let mut cut = 0;
        while buf.len() < period {
            let at = buf.len() % size;
            if at < FRAME_HEADER {
                buf.push(header[at]);
            } else {
                buf.push(base[cut % PATTERN_PERIOD]);
                cut += 1;
            }
        }
        // The tail repeats the start, so any slice is contiguous.
        for i in 0..PATTERN_MAX_SLICE {
            buf.push(buf[i % period]);
        }
        Pattern {
            buf,
            size,
            messages,
        }
    }

    /// The message size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The number of bytes after which the stream repeats.
    pub fn period(&self) -> usize {
        self.messages * self.size
    }

    /// The starting phase (in bytes, on a message boundary) of connection
    /// number `conn`.
    pub fn phase(&self, conn: usize) -> usize {
        // 7919 is prime, so phases differ for up to `messages` connections.
        (conn.wrapping_mul(7919) % self.messages) * self.size
    }

    /// The `len` bytes (at most [`PATTERN_MAX_SLICE`]) of the stream with
    /// phase `phase` starting at stream offset `offset`.
    pub fn slice(&self, phase: usize, offset: u64, len: usize) -> &[u8] {
        assert!(len <= PATTERN_MAX_SLICE);
        let start = ((phase as u64 + offset) % self.period() as u64) as usize;
        &self.buf[start..start + len]
    }
}

/// The size of each write of a bulk sender (`tls_bench`'s bulk
/// scenario): 16 KiB, one full TLS record.
pub const BULK_CHUNK: usize = 16 * 1024;

/// Bytes of the count at the front of each bulk chunk.
pub const BULK_COUNT: usize = 8;

/// The fixed bytes after each bulk chunk's count: byte `j` is
/// `(131 j + j / 256) mod 256`.
///
/// A bulk sender sends chunk `i` as `i` (8 bytes, big-endian) followed by
/// these [`BULK_CHUNK`] − [`BULK_COUNT`] bytes, so the receiver can verify
/// every byte, and a lost, repeated or reordered chunk changes the count.
/// twill's `tls_echo_server` and the Python server compute the same bytes
/// with the same formula.
pub fn bulk_body() -> Vec<u8> {
    (0..BULK_CHUNK - BULK_COUNT)
        .map(|j| (j.wrapping_mul(131) + (j >> 8)) as u8)
        .collect()
}

/// Number of sub-buckets per power of two in [`Histogram`] (relative
/// bucket width ≤ 1/64, i.e. under 1.6 %).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (63 - SUB_BITS as usize) * SUB + 2 * SUB;

/// A log-linear latency histogram over nanoseconds, HDR-style: exact below
/// 128 ns, then 64 buckets per power of two. Recording is a few integer
/// operations; histograms from several threads merge by addition.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < (2 * SUB) as u64 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // floor(log2 v) >= SUB_BITS + 1
        let shift = e - SUB_BITS;
        (shift as usize) * SUB + (v >> shift) as usize
    }

    /// Lowest value and width of bucket `i`.
    fn bucket_range(i: usize) -> (u64, u64) {
        if i < 2 * SUB {
            return (i as u64, 1);
        }
        let shift = (i / SUB - 1) as u32;
        let m = (i % SUB + SUB) as u64;
        (m << shift, 1u64 << shift)
    }

    /// Records one value (nanoseconds).
    #[inline]
    pub fn record(&mut self, nanos: u64) {
        self.counts[Self::index(nanos)] += 1;
        self.total += 1;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Adds `other`'s counts to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.total += other.total;
    }

    /// The value at quantile `q` (0.0–1.0), in nanoseconds (bucket
    /// midpoint), or 0 if empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = Self::bucket_range(i);
                return low + width / 2;
            }
        }
        unreachable!("rank is at most total")
    }
}

/// Total CPU time (user + system, all threads) of process `pid`, in clock
/// ticks, read from `/proc/PID/stat` (fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc stat"))
}

/// PIDs of the kernel's per-CPU `ksoftirqd/N` threads.
///
/// On loopback, the network stack's receive work normally runs inside the
/// sending process and is charged to it; under heavy load the kernel defers
/// it to these threads instead, which moves CPU time out of the processes'
/// own accounting. The runner reports their share so such rounds stand out.
pub fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// Sum of [`cpu_ticks`] over `pids`, skipping any that vanished.
pub fn total_cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| cpu_ticks(p).ok()).sum()
}

/// Machine-wide CPU time from the first line of `/proc/stat`, in clock
/// ticks summed over all CPUs: `(busy, steal)`, where busy is user + nice +
/// system + irq + softirq and steal is time the hypervisor gave to others.
pub fn system_ticks() -> io::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    parse_system_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/stat"))
}

/// Parses `(busy, steal)` out of the text of `/proc/stat` (see
/// [`system_ticks`]).
pub fn parse_system_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    Some((busy, f.get(7).copied().unwrap_or(0)))
}

/// CPU time of the calling process in clock ticks (see [`cpu_ticks`]).
pub fn self_cpu_ticks() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    parse_stat_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc stat"))
}

/// Extracts `utime + stime` from the text of a `/proc/PID/stat` file.
///
/// The command name (field 2) is in parentheses and may contain spaces, so
/// fields are counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // `after` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second for [`cpu_ticks`], from `getconf CLK_TCK`
/// (100 on every Linux we run on, used as the fallback).
pub fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The median of `values` (mean of the two middle ones for an even count),
/// or NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_accurate() {
        let mut prev_end = 0;
        for i in 0..BUCKETS {
            let (low, width) = Histogram::bucket_range(i);
            assert_eq!(low, prev_end, "bucket {i}");
            assert_eq!(Histogram::index(low), i);
            assert_eq!(Histogram::index(low + (width - 1)), i);
            prev_end = low.wrapping_add(width);
        }
        assert_eq!(prev_end, 0, "buckets cover all of u64");
        assert_eq!(Histogram::index(u64::MAX), BUCKETS - 1);
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.02, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.02, "{p99}");
    }

    #[test]
    fn stat_parsing_handles_spaces_in_name() {
        let s = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194304 100 0 0 0 \
                 250 75 0 0 20 0 3 0 100 1000 100";
        assert_eq!(parse_stat_cpu_ticks(s), Some(325));
        assert!(self_cpu_ticks().is_ok());
        let s = "cpu  10 1 20 500 3 4 5 6 0 0\ncpu0 5 0 10 250 1 2 2 3 0 0\n";
        assert_eq!(parse_system_ticks(s), Some((40, 6)));
        assert!(system_ticks().is_ok());
    }

    #[test]
    fn listening_line_with_log_prefix() {
        let a = parse_listening_line(
            "[2025-01-01T00:00:00Z INFO  twill::reactor] listening on 127.0.0.1:4321",
        );
        assert_eq!(a, Some("127.0.0.1:4321".parse().unwrap()));
        assert_eq!(
            parse_listening_line("listening on 127.0.0.1:80, backlog 128"),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("listening on 127.0.0.1:9\x1b[0m"),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("(listening on [::1]:7)"),
            Some("[::1]:7".parse().unwrap())
        );
        assert_eq!(parse_listening_line("starting"), None);
    }

    #[test]
    fn pattern_is_framed_phases_differ_and_wrap() {
        for size in [5, 16, 64, 4096, 1 << 20] {
            let p = Pattern::new(size);
            let period = p.period() as u64;
            assert_eq!(period as usize % size, 0);
            assert!(p.period() >= PATTERN_PERIOD.min(size * 251) || size == 1 << 20);
            // Every message starts with its payload length, big-endian.
            for m in [0u64, 1, 7, period / size as u64 - 1] {
                let at = m * size as u64;
                let header = p.slice(p.phase(3), at, FRAME_HEADER);
                assert_eq!(
                    u32::from_be_bytes(header.try_into().unwrap()) as usize,
                    size - 4
                );
            }
            assert_eq!(p.slice(size, 10, 100), p.slice(size, 10 + period, 100));
            assert_eq!(
                p.slice(0, period - 5, 10)[5..],
                p.slice(0, 0, 5)[..],
                "size {size}"
            );
        }
        let p = Pattern::new(16);
        assert_ne!(p.slice(p.phase(0), 0, 16), p.slice(p.phase(1), 0, 16));
        // Consecutive messages differ: a reordering is visible.
        assert_ne!(p.slice(0, 0, 16), p.slice(0, 16, 16));
    }

    #[test]
    fn args_parse() {
        let mut a = Args::from_vec(
            ["--conns", "8", "--smoke", "--size=32", "x"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        assert!(a.flag("--smoke"));
        assert_eq!(a.parse_or("--conns", 1usize).unwrap(), 8);
        assert_eq!(a.parse_or("--size", 1usize).unwrap(), 32);
        assert_eq!(a.parse_or("--inflight", 1usize).unwrap(), 1);
        assert_eq!(a.positional().as_deref(), Some("x"));
        a.finish().unwrap();
        assert!(loopback_addr("10.0.0.1:80").is_err());
        assert!(loopback_addr("127.0.0.1:80").is_ok());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
