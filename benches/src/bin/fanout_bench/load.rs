//! The fan-out load: N clients of one Spreader, each sending fixed-size
//! messages that every other client must receive, driven by one
//! level-triggered `polling` loop in this process.
//!
//! # Messages
//!
//! Every message is `size` bytes (at least [`MIN_SIZE`]):
//!
//! ```text
//! +-------+-------------+-------------+------------------------+-------+
//! | 0xB7  | sender: u16 | seq: u64    | filler: size - 12 bytes| 0xA5  |
//! +-------+-------------+-------------+------------------------+-------+
//! ```
//!
//! (integers little-endian). The filler is a function of sender and
//! sequence number, so a changed byte anywhere is caught; the last byte is
//! not whitespace, so no message, and no run of them, can read as `close`.
//!
//! # Flow
//!
//! Each client keeps `window` of its own messages outstanding. A message is
//! complete when all N - 1 other clients have received it (a counter per
//! outstanding message, bumped once per delivery); the sender then sends
//! its next one. A client's messages reach every receiver in order, so the
//! oldest outstanding message always completes first.
//!
//! # Verification
//!
//! Each receiver expects, from each sender, sequence numbers 0, 1, 2, …
//! exactly: a gap is a lost message, a repeat a duplicated one; a message
//! from itself, from a sender that does not exist, with a sequence number
//! not yet sent, or with any byte off is an error too. The servers relay
//! each chunk as they read it, so a receiver's stream is a concatenation of
//! chunks from different senders; the loader only ever writes whole
//! messages (and `size × window` is at most [`MAX_OUTSTANDING_BYTES`], so a
//! server reading 4 KiB or more at a time gets whole messages), so every
//! chunk holds whole messages. A receiver parses its stream by fixed size
//! from its own buffer; a message boundary out of place (a server that
//! split a chunk and interleaved another sender's data in the middle) shows
//! as a bad marker and is reported with the bytes around it. A message that
//! never arrives stops its sender; if a message stays incomplete for
//! `stall` seconds, the run fails naming the message and who lacks it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use twill_bench::Histogram;

/// The smallest message: marker, sender, sequence number, 4 filler bytes,
/// end marker.
pub const MIN_SIZE: usize = 16;
/// `size × window` at most: every read a server makes (4 KiB or more) then
/// takes whole messages.
pub const MAX_OUTSTANDING_BYTES: usize = 4096;
/// The most clients (sender ids are 16 bits).
pub const MAX_CLIENTS: usize = 10_000;

const MAGIC: u8 = 0xB7;
const END: u8 = 0xA5;
const HEADER: usize = 11;

/// How long connecting and reading every welcome may take in total.
const CONNECT_BUDGET: Duration = Duration::from_secs(20);
/// How long the loop sleeps at most between checks of the clock.
const TICK: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub clients: usize,
    pub size: usize,
    pub window: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// A run fails when a message stays incomplete for this long.
    pub stall: Duration,
}

/// Why a run failed.
#[derive(Debug)]
pub enum Failure {
    /// The server relayed something wrong: lost, duplicated, corrupted,
    /// misdirected or split messages, or a wrong welcome.
    Verify(String),
    /// Anything else: connecting, a closed connection, a stall, a timeout.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Verify(m) => write!(f, "VERIFY ERROR: {m}"),
            Failure::Other(m) => f.write_str(m),
        }
    }
}

/// An edge of the measured window, reported to the caller as it passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Start,
    End,
}

/// What one run measured.
pub struct Outcome {
    /// Receptions in the measured window.
    pub delivered: u64,
    /// Messages that reached every other client in the measured window.
    pub completed: u64,
    /// The measured window as it happened (from mark to mark).
    pub window: Duration,
    /// Latency of each reception in the window: from the moment the
    /// message was written to the moment the read that held it returned.
    pub hist: Histogram,
}

/// Builds message `seq` of `sender` into `out` (`out.len()` is the size).
pub fn encode(out: &mut [u8], sender: u16, seq: u64) {
    let size = out.len();
    out[0] = MAGIC;
    out[1..3].copy_from_slice(&sender.to_le_bytes());
    out[3..HEADER].copy_from_slice(&seq.to_le_bytes());
    let h = mix(sender, seq);
    for (i, b) in out[HEADER..size - 1].iter_mut().enumerate() {
        *b = filler(h, i);
    }
    out[size - 1] = END;
}

fn mix(sender: u16, seq: u64) -> u64 {
    let mut x = seq ^ (u64::from(sender) << 48) ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[inline]
fn filler(h: u64, i: usize) -> u8 {
    (h >> ((i % 8) * 8)) as u8 ^ (i / 8) as u8
}

/// Reads the sender and sequence number of a message and checks its
/// markers and filler; `Err` describes what is wrong.
pub fn decode(msg: &[u8]) -> Result<(u16, u64), String> {
    let size = msg.len();
    if msg[0] != MAGIC || msg[size - 1] != END {
        return Err("no message boundary here (bad start or end marker)".into());
    }
    let sender = u16::from_le_bytes([msg[1], msg[2]]);
    let seq = u64::from_le_bytes(msg[3..HEADER].try_into().expect("8 bytes"));
    let h = mix(sender, seq);
    if let Some(i) = msg[HEADER..size - 1]
        .iter()
        .enumerate()
        .position(|(i, &b)| b != filler(h, i))
    {
        return Err(format!(
            "byte {} of message {seq} of client {sender} is corrupted",
            HEADER + i
        ));
    }
    Ok((sender, seq))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One client connection.
struct Client {
    stream: TcpStream,
    /// Bytes of a message not yet complete (the stream was cut mid-message
    /// by the reads, which TCP may do).
    partial: Vec<u8>,
    /// Bytes received since the welcome.
    received: u64,
    /// The next sequence number to send.
    next_seq: u64,
    /// Messages of this client that reached everyone.
    completed: u64,
}

/// The whole load's state. Counters are indexed `[sender * window + seq %
/// window]` (outstanding messages) and `[receiver * clients + sender]`
/// (next sequence number expected).
struct Load {
    cfg: Config,
    clients: Vec<Client>,
    /// Receptions so far of each outstanding message.
    counts: Vec<u32>,
    /// When each outstanding message was written.
    sent_at: Vec<Instant>,
    /// The sequence number each receiver expects next from each sender.
    expect: Vec<u64>,
    /// Senders whose oldest message just completed.
    to_send: Vec<usize>,
    msg: Vec<u8>,
    delivered: u64,
    completions: u64,
    hist: Histogram,
    measuring: bool,
    /// After the measured window: no new messages, waiting for the last
    /// ones to reach everyone.
    draining: bool,
    /// Messages sent and not yet complete, over all clients.
    outstanding: usize,
}

/// Connects the clients, checks their welcomes, runs warm-up and the
/// measured window, calling `on_mark` at the window's edges (the caller
/// samples CPU time there); everything is bounded in time.
pub fn run(
    cfg: Config,
    addr: SocketAddr,
    on_mark: &mut dyn FnMut(Mark),
) -> Result<Outcome, Failure> {
    let streams = connect(&cfg, addr)?;
    let poller = Poller::new().map_err(|e| Failure::Other(format!("poller: {e}")))?;
    let n = cfg.clients;
    let now = Instant::now();
    let mut load = Load {
        cfg,
        clients: streams
            .into_iter()
            .map(|stream| Client {
                stream,
                partial: Vec::with_capacity(cfg.size),
                received: 0,
                next_seq: 0,
                completed: 0,
            })
            .collect(),
        counts: vec![0; n * cfg.window],
        sent_at: vec![now; n * cfg.window],
        expect: vec![0; n * n],
        to_send: Vec::with_capacity(n),
        msg: vec![0; cfg.size * cfg.window],
        delivered: 0,
        completions: 0,
        hist: Histogram::new(),
        measuring: false,
        draining: false,
        outstanding: 0,
    };
    for (key, c) in load.clients.iter().enumerate() {
        // SAFETY: every stream is deleted from the poller below, before the
        // clients are dropped.
        unsafe { poller.add_with_mode(&c.stream, Event::readable(key), PollMode::Level) }
            .map_err(|e| Failure::Other(format!("register client {key}: {e}")))?;
    }
    let result = load.drive(&poller, on_mark);
    for c in &load.clients {
        let _ = poller.delete(&c.stream);
    }
    result
}

/// Opens the connections one after the other, each reading its welcome
/// before the next connects, so client `i` must be user number `i + 1`.
fn connect(cfg: &Config, addr: SocketAddr) -> Result<Vec<TcpStream>, Failure> {
    let deadline = Instant::now() + CONNECT_BUDGET;
    let mut out = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Other(format!(
                "connecting took longer than {CONNECT_BUDGET:?} ({i} of {} clients welcomed)",
                cfg.clients
            )));
        }
        let fail = |what: &str, e: io::Error| {
            Failure::Other(format!("client {i} of {}: {what}: {e}", cfg.clients))
        };
        let s = TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(5)))
            .map_err(|e| fail("connect", e))?;
        s.set_nodelay(true).map_err(|e| fail("nodelay", e))?;
        s.set_read_timeout(Some(left.min(Duration::from_secs(5))))
            .map_err(|e| fail("timeout", e))?;
        let want = format!(
            "Welcome to Spread Site, you are client user number {}!\n",
            i + 1
        );
        let mut got = Vec::with_capacity(want.len());
        let mut buf = [0u8; 256];
        while !got.contains(&b'\n') {
            match (&s).read(&mut buf) {
                Ok(0) => {
                    return Err(Failure::Other(format!(
                        "client {i}: the server closed the connection before the welcome \
                         (got {:?})",
                        String::from_utf8_lossy(&got)
                    )))
                }
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail("reading the welcome", e)),
            }
        }
        if got != want.as_bytes() {
            return Err(Failure::Verify(format!(
                "client {i}: welcome {:?}, expected {want:?}",
                String::from_utf8_lossy(&got)
            )));
        }
        s.set_nonblocking(true)
            .map_err(|e| fail("nonblocking", e))?;
        out.push(s);
    }
    Ok(out)
}

impl Load {
    fn drive(
        &mut self,
        poller: &Poller,
        on_mark: &mut dyn FnMut(Mark),
    ) -> Result<Outcome, Failure> {
        let start = Instant::now();
        let warm_end = start + self.cfg.warmup;
        let end = warm_end + self.cfg.duration;
        let mut checked = start;
        for s in 0..self.clients.len() {
            self.send(s, self.cfg.window, start)?;
        }
        let mut events = Events::with_capacity(NonZeroUsize::new(1024).unwrap());
        let mut buf = vec![0u8; 64 * 1024];
        let mut started: Option<(Instant, u64, u64)> = None;
        let mut result = None;
        loop {
            let now = Instant::now();
            if started.is_none() && now >= warm_end {
                on_mark(Mark::Start);
                started = Some((Instant::now(), self.delivered, self.completions));
                self.measuring = true;
            }
            if result.is_none() && now >= end {
                let (t0, d0, c0) = started.expect("warm-up ends before the window does");
                let window = t0.elapsed();
                self.measuring = false;
                on_mark(Mark::End);
                result = Some(Outcome {
                    delivered: self.delivered - d0,
                    completed: self.completions - c0,
                    window,
                    hist: std::mem::take(&mut self.hist),
                });
                // From now on nothing new is sent: the run ends once every
                // message sent has reached everyone, so a message lost at
                // the very end is caught too.
                self.draining = true;
            }
            if self.draining && self.outstanding == 0 {
                return Ok(result.expect("set when draining starts"));
            }
            if now.duration_since(checked) >= TICK {
                checked = now;
                self.check_stall(now)?;
            }
            let timeout = match (started, &result) {
                (None, _) => warm_end - now,
                (Some(_), None) => end - now,
                (Some(_), Some(_)) => TICK,
            };
            events.clear();
            poller
                .wait(&mut events, Some(timeout.min(TICK)))
                .map_err(|e| Failure::Other(format!("poll: {e}")))?;
            for ev in events.iter() {
                if ev.readable {
                    self.on_readable(ev.key, &mut buf)?;
                }
            }
        }
    }

    /// One read from client `r`: parses, verifies and counts the messages
    /// in it, then sends the next message of every sender that completed.
    fn on_readable(&mut self, r: usize, buf: &mut [u8]) -> Result<(), Failure> {
        let n = match (&self.clients[r].stream).read(buf) {
            Ok(0) => {
                return Err(Failure::Other(format!(
                    "the server closed client {r}'s connection after {} bytes",
                    self.clients[r].received
                )))
            }
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return Ok(())
            }
            Err(e) => return Err(Failure::Other(format!("client {r}: read: {e}"))),
        };
        let now = Instant::now();
        let size = self.cfg.size;
        let mut data = &buf[..n];
        let mut partial = std::mem::take(&mut self.clients[r].partial);
        if !partial.is_empty() {
            let need = size - partial.len();
            if data.len() < need {
                partial.extend_from_slice(data);
                self.clients[r].partial = partial;
                return Ok(());
            }
            partial.extend_from_slice(&data[..need]);
            data = &data[need..];
            let res = self.deliver(r, &partial, now);
            partial.clear();
            res?;
        }
        let mut chunks = data.chunks_exact(size);
        for msg in &mut chunks {
            self.deliver(r, msg, now)?;
        }
        partial.extend_from_slice(chunks.remainder());
        self.clients[r].partial = partial;
        if !self.to_send.is_empty() && self.draining {
            self.to_send.clear();
        } else if !self.to_send.is_empty() {
            let senders = std::mem::take(&mut self.to_send);
            for &s in &senders {
                self.send(s, 1, now)?;
            }
            self.to_send = senders;
            self.to_send.clear();
        }
        Ok(())
    }

    /// Checks one message received by `r` and counts it.
    #[inline]
    fn deliver(&mut self, r: usize, msg: &[u8], now: Instant) -> Result<(), Failure> {
        let n = self.clients.len();
        let offset = self.clients[r].received;
        self.clients[r].received += msg.len() as u64;
        let bad = |why: String| {
            Failure::Verify(format!(
                "client {r}, message at byte {offset} of what it received: {why}; bytes: {}",
                hex(msg)
            ))
        };
        let (s, q) = decode(msg).map_err(|e| {
            bad(format!(
                "{e} (a server that relays a chunk holding part of a message, \
                 then another client's data, interleaves them like this)"
            ))
        })?;
        let s = s as usize;
        if s >= n {
            return Err(bad(format!("sender {s} does not exist ({n} clients)")));
        }
        if s == r {
            return Err(bad(format!(
                "it got its own message {q} back (a Spreader sends to the others only)"
            )));
        }
        let exp = &mut self.expect[r * n + s];
        if q != *exp {
            let what = if q < *exp {
                format!("message {q} of client {s} again (duplicated or reordered)")
            } else {
                format!(
                    "message {q} of client {s} where {} was expected: {} message(s) lost",
                    *exp,
                    q - *exp
                )
            };
            return Err(bad(what));
        }
        if q >= self.clients[s].next_seq {
            return Err(bad(format!(
                "message {q} of client {s} was never sent (it sent {})",
                self.clients[s].next_seq
            )));
        }
        *exp += 1;
        let w = self.cfg.window;
        let slot = s * w + (q % w as u64) as usize;
        if self.measuring {
            self.hist
                .record(now.saturating_duration_since(self.sent_at[slot]).as_nanos() as u64);
        }
        self.delivered += 1;
        self.counts[slot] += 1;
        if self.counts[slot] as usize == n - 1 {
            // Every receiver gets a sender's messages in order, so this is
            // the sender's oldest outstanding message.
            debug_assert_eq!(q, self.clients[s].completed);
            self.counts[slot] = 0;
            self.clients[s].completed += 1;
            self.completions += 1;
            self.outstanding -= 1;
            self.to_send.push(s);
        }
        Ok(())
    }

    /// Writes the next `count` messages of client `s` in one write.
    fn send(&mut self, s: usize, count: usize, now: Instant) -> Result<(), Failure> {
        let size = self.cfg.size;
        let w = self.cfg.window as u64;
        let c = &mut self.clients[s];
        debug_assert!(c.next_seq + count as u64 <= c.completed + w);
        for i in 0..count {
            let seq = c.next_seq + i as u64;
            encode(&mut self.msg[i * size..(i + 1) * size], s as u16, seq);
            self.sent_at[s * w as usize + (seq % w) as usize] = now;
        }
        let bytes = &self.msg[..count * size];
        loop {
            match (&c.stream).write(bytes) {
                Ok(k) if k == bytes.len() => break,
                // A part of a message in a server's read would break the
                // message boundaries of everyone's streams: the loader must
                // never cause that. With at most 4 KiB outstanding per client
                // the socket always has room.
                Ok(k) => {
                    return Err(Failure::Other(format!(
                        "client {s}: short write ({k} of {} bytes); message boundaries \
                         cannot be kept",
                        bytes.len()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(Failure::Other(format!(
                        "client {s}: its socket is full: the server stopped reading from it"
                    )))
                }
                Err(e) => return Err(Failure::Other(format!("client {s}: write: {e}"))),
            }
        }
        c.next_seq += count as u64;
        self.outstanding += count;
        Ok(())
    }

    /// Fails if a message has been outstanding for longer than the stall
    /// limit, naming it and the clients that lack it.
    fn check_stall(&self, now: Instant) -> Result<(), Failure> {
        let n = self.clients.len();
        let w = self.cfg.window;
        let oldest = (0..n)
            .filter(|&s| self.clients[s].completed < self.clients[s].next_seq)
            .map(|s| {
                let q = self.clients[s].completed;
                (self.sent_at[s * w + (q % w as u64) as usize], s, q)
            })
            .min();
        let Some((at, s, q)) = oldest else {
            return Ok(());
        };
        if now.saturating_duration_since(at) <= self.cfg.stall {
            return Ok(());
        }
        let missing: Vec<usize> = (0..n)
            .filter(|&r| r != s && self.expect[r * n + s] <= q)
            .collect();
        let shown: Vec<String> = missing.iter().take(10).map(|r| r.to_string()).collect();
        Err(Failure::Verify(format!(
            "message {q} of client {s} still incomplete after {:?}: it reached {} of the {} \
             other clients; missing at client(s) {}{} (lost by the server, or it stopped \
             relaying)",
            self.cfg.stall,
            n - 1 - missing.len(),
            n - 1,
            shown.join(", "),
            if missing.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_catch_changes() {
        for size in [MIN_SIZE, 17, 64, 4096] {
            let mut m = vec![0u8; size];
            encode(&mut m, 513, 1 << 40);
            assert_eq!(decode(&m), Ok((513, 1 << 40)));
            assert_ne!(m.trim_ascii_end(), b"close");
            for i in 0..size {
                let mut bad = m.clone();
                bad[i] ^= 0x10;
                assert_ne!(decode(&bad), Ok((513, 1 << 40)), "size {size} byte {i}");
            }
        }
        // Two messages of different senders or numbers differ.
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        encode(&mut a, 1, 7);
        encode(&mut b, 2, 7);
        assert_ne!(a, b);
        // Half of one message followed by half of another is no message.
        let mut spliced = a;
        spliced[8..].copy_from_slice(&b[..8]);
        assert!(decode(&spliced).is_err());
    }
}
