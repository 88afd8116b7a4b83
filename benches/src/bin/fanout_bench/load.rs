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
//!
//! # Slow clients
//!
//! With `slow` > 0, that many clients (spread evenly over the connection
//! order, see [`is_slow`]) read slowly: each connects with a 4 KiB
//! `SO_RCVBUF` ([`SLOW_RCVBUF`]) and is not polled; every [`SLOW_TICK`]
//! the loop reads from it what its budget of `slow_rate` bytes per second
//! allows. They send like everyone else: their messages must still reach
//! every attentive client, so the server keeps reading from them and
//! relaying their data while it holds back what it owes them, which is
//! the situation a bounded server has to handle. (Receive-only slow
//! clients would only make the load lighter, and the attentive figure
//! would then not compare with the run without slow clients.)
//!
//! The attentive clients are verified as above. A message is complete,
//! and its sender sends the next one, when every *attentive* client other
//! than its sender has it, so a slow client never holds the load back, and
//! the stall check looks at attentive clients only. A slow client's stream
//! is verified as strictly as any, except that gaps are allowed: a server
//! bounding its memory drops messages for a client that does not read.
//! Each gap counts as missed messages; a repeat, a message out of order or
//! a damaged one is still an error. A server closing a slow client's
//! connection is counted, not an error; messages that client had
//! outstanding then no longer need to complete (the server may have
//! dropped them with the connection), though an attentive client that gets
//! them must still get them in order.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use twill_bench::Histogram;

use super::sock::connect_small_rcvbuf;

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
/// A slow client's `SO_RCVBUF`: small, so that what it does not read
/// stays in the server rather than in this machine's socket buffers.
pub const SLOW_RCVBUF: usize = 4096;
/// How often the slow clients are read. Short enough that a budget of a
/// few KiB/s is read in small pieces, as a slow reader would.
pub const SLOW_TICK: Duration = Duration::from_millis(10);
/// The most a slow client may read in one go (its budget does not pile up
/// beyond this while nothing is there to read).
const SLOW_BURST: f64 = SLOW_RCVBUF as f64;

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
    /// How many clients read slowly (0: none; at most `clients - 2`, so
    /// that every message has an attentive receiver).
    pub slow: usize,
    /// Bytes per second each slow client reads at most.
    pub slow_rate: u64,
}

/// Whether client `i` of `clients` is one of the `slow` slow ones: they
/// are spread evenly over the connection order (exactly `slow` of them),
/// so that a server treating early or late clients differently treats
/// slow and attentive ones alike.
pub fn is_slow(i: usize, clients: usize, slow: usize) -> bool {
    (i + 1) * slow / clients > i * slow / clients
}

/// What the slow clients saw, over the whole run (warm-up, measured window
/// and the drain after it).
#[derive(Clone, Copy, Debug, Default)]
pub struct SlowStats {
    /// Messages they received (all verified).
    pub received: u64,
    /// Bytes they received.
    pub bytes: u64,
    /// Messages missing in their streams: gaps, each followed by a later
    /// message of the same sender (dropped by the server).
    pub missed: u64,
    /// At the end, messages sent to the slow clients still connected that
    /// they had neither received nor shown as missed: still queued in the
    /// server or the kernel, or dropped with nothing after them yet.
    pub behind: u64,
    /// Slow clients whose connection the server closed.
    pub disconnected: u64,
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

/// A moment of the run, reported to the caller as it passes: the edges
/// of the measured window, and ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The measured window starts.
    Start,
    /// The measured window ends.
    End,
    /// About every [`TICK`], from the first message to the end of the run:
    /// a moment to sample what changes during it (memory).
    Tick,
}

/// What one run measured.
pub struct Outcome {
    /// Receptions by attentive clients in the measured window.
    pub delivered: u64,
    /// Messages that reached every other attentive client in the measured
    /// window.
    pub completed: u64,
    /// The measured window as it happened (from mark to mark).
    pub window: Duration,
    /// Latency of each reception by an attentive client in the window:
    /// from the moment the message was written to the moment the read that
    /// held it returned.
    pub hist: Histogram,
    /// What the slow clients saw.
    pub slow: SlowStats,
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
    /// Messages of this client that reached every attentive client.
    completed: u64,
    /// One of the slow readers.
    slow: bool,
    /// A slow client whose connection the server closed.
    gone: bool,
    /// A slow client's read budget, in bytes.
    budget: f64,
}

/// The whole load's state. Counters are indexed `[sender * window + seq %
/// window]` (outstanding messages) and `[receiver * clients + sender]`
/// (next sequence number expected).
struct Load {
    cfg: Config,
    clients: Vec<Client>,
    /// Receptions by attentive clients so far of each outstanding message.
    counts: Vec<u32>,
    /// Per sender, the receptions that complete one of its messages: the
    /// attentive clients other than itself.
    need: Vec<u32>,
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
    slow_stats: SlowStats,
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
    let attentive = (n - cfg.slow) as u32;
    let mut load = Load {
        cfg,
        clients: streams
            .into_iter()
            .enumerate()
            .map(|(i, stream)| Client {
                stream,
                partial: Vec::with_capacity(cfg.size),
                received: 0,
                next_seq: 0,
                completed: 0,
                slow: is_slow(i, n, cfg.slow),
                gone: false,
                budget: 0.0,
            })
            .collect(),
        counts: vec![0; n * cfg.window],
        need: (0..n)
            .map(|i| attentive - u32::from(!is_slow(i, n, cfg.slow)))
            .collect(),
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
        slow_stats: SlowStats::default(),
    };
    // Slow clients are read on a timer instead: polled level-triggered,
    // their unread data would wake the loop all the time.
    for (key, c) in load.clients.iter().enumerate().filter(|(_, c)| !c.slow) {
        // SAFETY: every stream is deleted from the poller below, before the
        // clients are dropped.
        unsafe { poller.add_with_mode(&c.stream, Event::readable(key), PollMode::Level) }
            .map_err(|e| Failure::Other(format!("register client {key}: {e}")))?;
    }
    let result = load.drive(&poller, on_mark);
    for c in load.clients.iter().filter(|c| !c.slow) {
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
        let timeout = left.min(Duration::from_secs(5));
        let s = if is_slow(i, cfg.clients, cfg.slow) {
            connect_small_rcvbuf(addr, SLOW_RCVBUF, timeout)
                .map_err(|e| fail("connect (slow client)", e))?
        } else {
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail("connect", e))?
        };
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
        let mut slow_read_at = start;
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
                    slow: SlowStats::default(),
                });
                // From now on nothing new is sent: the run ends once every
                // message sent has reached everyone, so a message lost at
                // the very end is caught too.
                self.draining = true;
            }
            if self.draining && self.outstanding == 0 {
                let mut out = result.expect("set when draining starts");
                out.slow = self.final_slow_stats();
                return Ok(out);
            }
            if now.duration_since(checked) >= TICK {
                checked = now;
                self.check_stall(now)?;
                on_mark(Mark::Tick);
            }
            let mut timeout = match (started, &result) {
                (None, _) => warm_end - now,
                (Some(_), None) => end - now,
                (Some(_), Some(_)) => TICK,
            };
            if self.cfg.slow > 0 {
                let next = slow_read_at + SLOW_TICK;
                if now >= next {
                    self.read_slow(now.duration_since(slow_read_at), &mut buf)?;
                    slow_read_at = now;
                    timeout = timeout.min(SLOW_TICK);
                } else {
                    timeout = timeout.min(next - now);
                }
            }
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

    /// Gives every connected slow client `elapsed` worth of its read budget
    /// and reads what the budget allows.
    fn read_slow(&mut self, elapsed: Duration, buf: &mut [u8]) -> Result<(), Failure> {
        let earned = self.cfg.slow_rate as f64 * elapsed.as_secs_f64();
        for r in 0..self.clients.len() {
            let c = &mut self.clients[r];
            if !c.slow || c.gone {
                continue;
            }
            c.budget = (c.budget + earned).min(SLOW_BURST);
            let want = (c.budget as usize).min(buf.len());
            if want == 0 {
                continue;
            }
            let got = self.on_readable(r, &mut buf[..want])?;
            self.clients[r].budget -= got as f64;
        }
        Ok(())
    }

    /// One read from client `r` into `buf` (its length is the most read):
    /// parses, verifies and counts the messages in it, then sends the next
    /// message of every sender that completed. Returns the bytes read.
    fn on_readable(&mut self, r: usize, buf: &mut [u8]) -> Result<usize, Failure> {
        let n = match (&self.clients[r].stream).read(buf) {
            // A server may close a slow client to bound its memory.
            Ok(0) if self.clients[r].slow => {
                self.slow_client_gone(r);
                return Ok(0);
            }
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
                return Ok(0)
            }
            // A server that gives up on a slow client may reset it.
            Err(e) if self.clients[r].slow && is_disconnect(&e) => {
                self.slow_client_gone(r);
                return Ok(0);
            }
            Err(e) => return Err(Failure::Other(format!("client {r}: read: {e}"))),
        };
        let now = Instant::now();
        let size = self.cfg.size;
        let slow = self.clients[r].slow;
        if slow {
            self.slow_stats.bytes += n as u64;
        }
        let mut data = &buf[..n];
        let mut partial = std::mem::take(&mut self.clients[r].partial);
        if !partial.is_empty() {
            let need = size - partial.len();
            if data.len() < need {
                partial.extend_from_slice(data);
                self.clients[r].partial = partial;
                return Ok(n);
            }
            partial.extend_from_slice(&data[..need]);
            data = &data[need..];
            let res = if slow {
                self.deliver_slow(r, &partial)
            } else {
                self.deliver(r, &partial, now)
            };
            partial.clear();
            res?;
        }
        let mut chunks = data.chunks_exact(size);
        if slow {
            for msg in &mut chunks {
                self.deliver_slow(r, msg)?;
            }
        } else {
            for msg in &mut chunks {
                self.deliver(r, msg, now)?;
            }
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
        Ok(n)
    }

    /// The server closed slow client `r`: counted, and its messages still
    /// outstanding no longer need to complete.
    fn slow_client_gone(&mut self, r: usize) {
        let c = &mut self.clients[r];
        if c.gone {
            return;
        }
        c.gone = true;
        self.outstanding -= (c.next_seq - c.completed) as usize;
        self.slow_stats.disconnected += 1;
    }

    /// Verifies message `msg` received by client `r` and returns its sender
    /// and sequence number: what every receiver's stream must satisfy
    /// (markers, filler, an existing sender other than itself, nothing not
    /// yet sent, nothing repeated or out of order), and for an attentive
    /// receiver no gap either. Moves `r`'s byte offset on.
    #[inline]
    fn check(&mut self, r: usize, msg: &[u8]) -> Result<(usize, u64), Failure> {
        let n = self.clients.len();
        let offset = self.clients[r].received;
        self.clients[r].received += msg.len() as u64;
        let (s, q) = decode(msg).map_err(|e| {
            bad(
                r,
                offset,
                msg,
                format!(
                    "{e} (a server that relays a chunk holding part of a message, \
                     then another client's data, interleaves them like this)"
                ),
            )
        })?;
        let s = s as usize;
        if s >= n {
            return Err(bad(
                r,
                offset,
                msg,
                format!("sender {s} does not exist ({n} clients)"),
            ));
        }
        if s == r {
            return Err(bad(
                r,
                offset,
                msg,
                format!("it got its own message {q} back (a Spreader sends to the others only)"),
            ));
        }
        if q >= self.clients[s].next_seq {
            return Err(bad(
                r,
                offset,
                msg,
                format!(
                    "message {q} of client {s} was never sent (it sent {})",
                    self.clients[s].next_seq
                ),
            ));
        }
        let exp = self.expect[r * n + s];
        if q < exp {
            return Err(bad(
                r,
                offset,
                msg,
                format!("message {q} of client {s} again (duplicated or reordered)"),
            ));
        }
        if q > exp && !self.clients[r].slow {
            return Err(bad(
                r,
                offset,
                msg,
                format!(
                    "message {q} of client {s} where {exp} was expected: {} message(s) lost",
                    q - exp
                ),
            ));
        }
        Ok((s, q))
    }

    /// Checks one message received by attentive client `r` and counts it.
    #[inline]
    fn deliver(&mut self, r: usize, msg: &[u8], now: Instant) -> Result<(), Failure> {
        let n = self.clients.len();
        let (s, q) = self.check(r, msg)?;
        self.expect[r * n + s] += 1;
        let w = self.cfg.window;
        let slot = s * w + (q % w as u64) as usize;
        if self.measuring {
            self.hist
                .record(now.saturating_duration_since(self.sent_at[slot]).as_nanos() as u64);
        }
        self.delivered += 1;
        if self.clients[s].gone {
            // Its outstanding messages were written off when it went.
            return Ok(());
        }
        self.counts[slot] += 1;
        if self.counts[slot] == self.need[s] {
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

    /// Checks one message received by slow client `r`, which may have
    /// missed earlier ones, and counts it; it completes nothing.
    #[inline]
    fn deliver_slow(&mut self, r: usize, msg: &[u8]) -> Result<(), Failure> {
        let n = self.clients.len();
        let (s, q) = self.check(r, msg)?;
        let exp = &mut self.expect[r * n + s];
        self.slow_stats.missed += q - *exp;
        self.slow_stats.received += 1;
        *exp = q + 1;
        Ok(())
    }

    /// The slow clients' figures at the end, with what they are behind.
    fn final_slow_stats(&self) -> SlowStats {
        let n = self.clients.len();
        let mut stats = self.slow_stats;
        for (r, c) in self.clients.iter().enumerate() {
            if c.slow && !c.gone {
                stats.behind += (0..n)
                    .filter(|&s| s != r)
                    .map(|s| self.clients[s].next_seq - self.expect[r * n + s])
                    .sum::<u64>();
            }
        }
        stats
    }

    /// Writes the next `count` messages of client `s` in one write.
    fn send(&mut self, s: usize, count: usize, now: Instant) -> Result<(), Failure> {
        if self.clients[s].gone {
            return Ok(());
        }
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
        let written = loop {
            match (&c.stream).write(bytes) {
                Ok(k) if k == bytes.len() => break true,
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
                // The server closed a slow client: found here before its
                // next read would.
                Err(e) if c.slow && is_disconnect(&e) => break false,
                Err(e) => return Err(Failure::Other(format!("client {s}: write: {e}"))),
            }
        };
        if !written {
            self.slow_client_gone(s);
            return Ok(());
        }
        c.next_seq += count as u64;
        self.outstanding += count;
        Ok(())
    }

    /// Fails if a message has been outstanding for longer than the stall
    /// limit, naming it and the attentive clients that lack it.
    fn check_stall(&self, now: Instant) -> Result<(), Failure> {
        let n = self.clients.len();
        let w = self.cfg.window;
        let oldest = (0..n)
            .filter(|&s| {
                !self.clients[s].gone && self.clients[s].completed < self.clients[s].next_seq
            })
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
            .filter(|&r| r != s && !self.clients[r].slow && self.expect[r * n + s] <= q)
            .collect();
        let shown: Vec<String> = missing.iter().take(10).map(|r| r.to_string()).collect();
        let need = self.need[s] as usize;
        Err(Failure::Verify(format!(
            "message {q} of client {s} still incomplete after {:?}: it reached {} of the {need} \
             other attentive clients; missing at client(s) {}{} (lost by the server, or it \
             stopped relaying)",
            self.cfg.stall,
            need - missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        )))
    }
}

/// A verification error about the message at byte `offset` of what client
/// `r` received, with its bytes.
fn bad(r: usize, offset: u64, msg: &[u8], why: String) -> Failure {
    Failure::Verify(format!(
        "client {r}, message at byte {offset} of what it received: {why}; bytes: {}",
        hex(msg)
    ))
}

/// Whether an I/O error means the server closed or reset the connection.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
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

    #[test]
    fn slow_clients_are_exactly_as_many_as_asked_and_spread() {
        for (n, k) in [(8, 2), (200, 20), (200, 1), (10, 8), (5, 0)] {
            let slow: Vec<usize> = (0..n).filter(|&i| is_slow(i, n, k)).collect();
            assert_eq!(slow.len(), k, "{n} clients, {k} slow");
        }
        // Every tenth client, the last of each ten.
        let slow: Vec<usize> = (0..200).filter(|&i| is_slow(i, 200, 20)).collect();
        assert_eq!(slow, (0..20).map(|j| j * 10 + 9).collect::<Vec<_>>());
        assert!(is_slow(3, 8, 2) && is_slow(7, 8, 2) && !is_slow(2, 8, 2));
    }
}
