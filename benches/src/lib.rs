//! Shared pieces of twill's benchmark suite.
//!
//! The binaries under `src/bin/` are a load generator (`loadgen`), two
//! baseline echo servers (`raw_polling_echo`, `async_io_echo`) and the runner
//! that compares servers side by side (`echo_bench`). This library holds what
//! they share: a tiny argument parser, the verification byte pattern, a
//! latency histogram, the `/proc` CPU-time reader and the parsing of the
//! `listening on ADDR` ready line and of `key=value` result lines.
//!
//! Everything here is plain `std`; no extra dependencies.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;

/// An error with a message for the user; binaries print it and exit non-zero.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

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

/// Length of one period of the verification pattern: a prime, so two
/// messages of the same connection can only carry equal bytes if they are a
/// multiple of this many messages apart — far more than any in-flight window.
pub const PATTERN_PERIOD: usize = 65_521;

/// The largest slice a caller may take from [`Pattern::slice`].
pub const PATTERN_MAX_SLICE: usize = 64 * 1024;

/// The deterministic byte stream each load-generator connection sends.
///
/// Connection `c` sends, at stream offset `o`, the byte
/// `base[(phase(c) + o) % PATTERN_PERIOD]`, where `base` is a fixed
/// pseudo-random sequence. The echo must reproduce it exactly, so lost,
/// duplicated, corrupted or reordered bytes are detected, and so are bytes
/// from another connection (each connection has its own phase). One buffer
/// (period plus [`PATTERN_MAX_SLICE`], ~128 KiB) serves all connections and
/// stays in cache; writing and checking are plain `memcpy`/`memcmp`-speed
/// slice operations.
pub struct Pattern {
    buf: Vec<u8>,
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

impl Pattern {
    /// Builds the pattern (xorshift64* bytes, fixed seed).
    pub fn new() -> Self {
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
        let mut buf = Vec::with_capacity(PATTERN_PERIOD + PATTERN_MAX_SLICE);
        buf.extend_from_slice(&base);
        while buf.len() < PATTERN_PERIOD + PATTERN_MAX_SLICE {
            let take = (PATTERN_PERIOD + PATTERN_MAX_SLICE - buf.len()).min(PATTERN_PERIOD);
            buf.extend_from_slice(&base[..take]);
        }
        Pattern { buf }
    }

    /// The starting phase of connection number `conn`.
    pub fn phase(conn: usize) -> usize {
        // 7919 is prime and coprime to the period, so phases are distinct
        // for every connection count we will ever use.
        (conn.wrapping_mul(7919)) % PATTERN_PERIOD
    }

    /// The `len` bytes (at most [`PATTERN_MAX_SLICE`]) of the stream with
    /// phase `phase` starting at stream offset `offset`.
    pub fn slice(&self, phase: usize, offset: u64, len: usize) -> &[u8] {
        assert!(len <= PATTERN_MAX_SLICE);
        let start = ((phase as u64 + offset) % PATTERN_PERIOD as u64) as usize;
        &self.buf[start..start + len]
    }
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
    fn pattern_phases_differ_and_wrap() {
        let p = Pattern::new();
        assert_ne!(
            p.slice(Pattern::phase(0), 0, 16),
            p.slice(Pattern::phase(1), 0, 16)
        );
        let period = PATTERN_PERIOD as u64;
        assert_eq!(p.slice(3, 10, 100), p.slice(3, 10 + period, 100));
        assert_eq!(p.slice(0, period - 5, 10)[5..], p.slice(0, 0, 5)[..]);
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
