//! The load: rustls clients (or plain TCP ones, for the servers' `--plain`
//! runs) on a level-triggered `polling` loop, verifying every byte.
//!
//! - **Echo**: each connection keeps `inflight` messages of `size` bytes
//!   in flight, as `loadgen` does, with the same byte stream
//!   ([`Pattern`]); the plaintext of each new batch of messages goes to
//!   rustls in one write. A unit is one message echoed.
//! - **Bulk**: each connection only reads what the server sends (16 KiB
//!   chunks, [`bulk_body`]) and checks it; a unit is one chunk.
//! - **Handshake**: each connection slot runs one new connection after
//!   another: TCP connect, a full TLS handshake (the client config has
//!   resumption off), one 16-byte message echoed, then the client sends
//!   `close_notify` (a plain one shuts its writing side) and waits for the
//!   server to close. A unit is one connection whose echo came back.
//!
//! Each worker thread runs its share of the connections; one read per
//! readiness event, into a reused buffer.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use twill_bench::{bulk_body, Histogram, Pattern, BULK_CHUNK, BULK_COUNT, PATTERN_MAX_SLICE};

/// The name the clients ask for, and the certificate holds.
pub const SERVER_NAME: &str = "localhost";

/// The message each handshake-scenario connection has echoed.
const HANDSHAKE_MESSAGE: usize = 16;

/// How long setting up the echo and bulk connections may take.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Echo { size: usize, inflight: usize },
    Bulk,
    Handshake,
}

/// One run's load.
#[derive(Clone)]
pub struct Config {
    pub kind: Kind,
    pub conns: usize,
    /// The client's TLS configuration; `None` for a plain server.
    pub tls: Option<Arc<ClientConfig>>,
    pub warmup: Duration,
    pub duration: Duration,
    pub threads: usize,
}

/// The edges of the measured window.
pub enum Mark {
    Start,
    End,
}

/// Why a run failed.
pub enum Failure {
    Verify(String),
    Io(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Verify(m) => write!(f, "VERIFY ERROR: {m}"),
            Failure::Io(m) => f.write_str(m),
        }
    }
}

/// What a run measured.
pub struct Outcome {
    /// Units completed in the window: messages, chunks or handshakes.
    pub units: u64,
    /// Plaintext bytes received in the window.
    pub bytes: u64,
    /// Per unit: echo round trip, or connect to echo for a handshake.
    pub hist: Histogram,
    pub window: Duration,
    /// What the first connection negotiated (version, suite, group).
    pub negotiated: Option<String>,
}

struct Stats {
    units: u64,
    bytes: u64,
    hist: Histogram,
    negotiated: Option<String>,
}

/// Runs the load against `addr`, calling `on_mark` at the edges of the
/// measured window.
pub fn run(
    cfg: &Config,
    addr: SocketAddr,
    on_mark: &mut dyn FnMut(Mark),
) -> Result<Outcome, Failure> {
    let start = Instant::now();
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let threads = cfg.threads.clamp(1, cfg.conns);
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<usize> = (t..cfg.conns).step_by(threads).collect();
        let (cfg, tx) = (cfg.clone(), tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("tls-load-{t}"))
            .spawn(move || {
                let _ = tx.send(worker(&cfg, addr, ids, warm_end, end));
            });
        handles.push(spawned.map_err(|e| Failure::Io(format!("spawn: {e}")))?);
    }
    drop(tx);
    let mut results = Vec::new();
    let collect = |r: Result<Stats, Failure>, results: &mut Vec<Stats>| r.map(|s| results.push(s));
    for (mark, at) in [(Mark::Start, warm_end), (Mark::End, end)] {
        loop {
            let now = Instant::now();
            if now >= at {
                break;
            }
            match rx.recv_timeout(at - now) {
                Ok(r) => collect(r, &mut results)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()))
                }
            }
        }
        on_mark(mark);
    }
    while results.len() < threads {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => collect(r, &mut results)?,
            Err(_) => return Err(Failure::Io("a load thread did not stop in time".into())),
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let mut out = Outcome {
        units: 0,
        bytes: 0,
        hist: Histogram::new(),
        window: cfg.duration,
        negotiated: None,
    };
    for s in results {
        out.units += s.units;
        out.bytes += s.bytes;
        out.hist.merge(&s.hist);
        out.negotiated = out.negotiated.or(s.negotiated);
    }
    if out.units == 0 {
        return Err(Failure::Io(
            "nothing completed in the measured window".into(),
        ));
    }
    Ok(out)
}

/// The plaintext stream of one connection and where it stands. Offsets
/// count bytes since the connection started; `recvd <= sent <= issued`.
struct Flow {
    id: usize,
    phase: usize,
    /// Bytes of whole messages queued for sending.
    issued: u64,
    /// Bytes handed to rustls (or, plain, written to the socket).
    sent: u64,
    /// Bytes received and verified.
    recvd: u64,
    /// Queue time of each message in flight, oldest first.
    times: VecDeque<Instant>,
    /// When the connection started (handshake scenario).
    started: Instant,
    /// The unit is done and the client is closing.
    closing: bool,
}

struct Conn {
    sock: TcpStream,
    tls: Option<ClientConnection>,
    flow: Flow,
    /// Whether writable interest is registered.
    writing: bool,
}

/// What every connection of a worker shares.
struct Ctx<'a> {
    cfg: &'a Config,
    addr: SocketAddr,
    pattern: Pattern,
    body: Vec<u8>,
    warm_end: Instant,
    end: Instant,
    stats: Stats,
}

impl Ctx<'_> {
    fn in_window(&self, now: Instant) -> bool {
        now >= self.warm_end && now < self.end
    }

    fn message_size(&self) -> usize {
        match self.cfg.kind {
            Kind::Echo { size, .. } => size,
            Kind::Handshake => HANDSHAKE_MESSAGE,
            Kind::Bulk => BULK_CHUNK,
        }
    }

    /// Opens connection number `id`.
    fn open(&self, id: usize, deadline: Instant) -> Result<Conn, Failure> {
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        if left.is_zero() {
            return Err(Failure::Io(format!(
                "connecting to {} took longer than {CONNECT_BUDGET:?}",
                self.addr
            )));
        }
        let sock = TcpStream::connect_timeout(&self.addr, left.min(Duration::from_secs(2)))
            .map_err(|e| Failure::Io(format!("cannot connect to {}: {e}", self.addr)))?;
        sock.set_nodelay(true)
            .and_then(|()| sock.set_nonblocking(true))
            .map_err(|e| Failure::Io(format!("socket options: {e}")))?;
        let tls = match &self.cfg.tls {
            None => None,
            Some(config) => {
                let name = ServerName::try_from(SERVER_NAME).expect("a valid name");
                let mut tls = ClientConnection::new(config.clone(), name)
                    .map_err(|e| Failure::Io(format!("rustls: {e}")))?;
                tls.set_buffer_limit(None);
                Some(tls)
            }
        };
        let mut flow = Flow {
            id,
            phase: self.pattern.phase(id),
            issued: 0,
            sent: 0,
            recvd: 0,
            times: VecDeque::new(),
            started,
            closing: false,
        };
        match self.cfg.kind {
            Kind::Echo { size, inflight } => {
                flow.times.extend(std::iter::repeat_n(started, inflight));
                flow.issued = (size * inflight) as u64;
            }
            // A plain connection is ready at once; a TLS one once its
            // handshake completes.
            Kind::Handshake if tls.is_none() => flow.issued = HANDSHAKE_MESSAGE as u64,
            Kind::Handshake | Kind::Bulk => {}
        }
        Ok(Conn {
            sock,
            tls,
            flow,
            writing: false,
        })
    }

    /// Checks received plaintext and counts what it completes.
    fn deliver(&mut self, f: &mut Flow, data: &[u8]) -> Result<(), Failure> {
        if f.closing {
            return Err(Failure::Verify(format!(
                "connection {}: {} bytes after the echo",
                f.id,
                data.len()
            )));
        }
        let size = self.message_size() as u64;
        let n = data.len() as u64;
        if self.cfg.kind == Kind::Bulk {
            verify_bulk(f.recvd, data, &self.body)
                .map_err(|m| Failure::Verify(format!("connection {}: {m}", f.id)))?;
        } else {
            if f.recvd + n > f.sent {
                return Err(Failure::Verify(format!(
                    "connection {}: received {} bytes but only {} were sent",
                    f.id,
                    f.recvd + n,
                    f.sent
                )));
            }
            let mut at = 0;
            while at < data.len() {
                let len = (data.len() - at).min(PATTERN_MAX_SLICE);
                let want = self.pattern.slice(f.phase, f.recvd + at as u64, len);
                let got = &data[at..at + len];
                if got != want {
                    let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                    let off = f.recvd + (at + i) as u64;
                    return Err(Failure::Verify(format!(
                        "connection {}: echoed byte {off} (message {}, byte {} of it) is {:#04x}, \
                         expected {:#04x}",
                        f.id,
                        off / size,
                        off % size,
                        got[i],
                        want[i]
                    )));
                }
                at += len;
            }
        }
        let before = f.recvd / size;
        f.recvd += n;
        let done = f.recvd / size - before;
        let now = Instant::now();
        let in_window = self.in_window(now);
        if in_window {
            self.stats.bytes += n;
        }
        if done == 0 {
            return Ok(());
        }
        match self.cfg.kind {
            Kind::Echo { .. } => {
                for _ in 0..done {
                    let sent_at = f.times.pop_front().expect("a time per message in flight");
                    if in_window {
                        self.stats.hist.record((now - sent_at).as_nanos() as u64);
                    }
                    f.times.push_back(now);
                }
                f.issued += done * size;
            }
            Kind::Handshake => {
                if in_window {
                    self.stats.hist.record((now - f.started).as_nanos() as u64);
                }
                f.closing = true;
            }
            Kind::Bulk => {}
        }
        if in_window {
            self.stats.units += done;
        }
        Ok(())
    }
}

/// Checks `data`, found at offset `off` of a bulk stream.
fn verify_bulk(mut off: u64, mut data: &[u8], body: &[u8]) -> Result<(), String> {
    let chunk = BULK_CHUNK as u64;
    while !data.is_empty() {
        let (index, pos) = (off / chunk, (off % chunk) as usize);
        let count = index.to_be_bytes();
        let want: &[u8] = if pos < BULK_COUNT {
            &count[pos..]
        } else {
            &body[pos - BULK_COUNT..]
        };
        let len = want.len().min(data.len());
        if data[..len] != want[..len] {
            let i = data.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!(
                "byte {} (chunk {index}, byte {} of it) is {:#04x}, expected {:#04x}",
                off + i as u64,
                pos + i,
                data[i],
                want[i]
            ));
        }
        off += len as u64;
        data = &data[len..];
    }
    Ok(())
}

fn io_fail(f: &Flow, what: &str, e: impl fmt::Display) -> Failure {
    Failure::Io(format!("connection {}: {what}: {e}", f.id))
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl Conn {
    /// Hands queued plaintext on and writes what the socket takes;
    /// registers writable interest only while something is left.
    fn flush(&mut self, poller: &Poller, key: usize, pattern: &Pattern) -> Result<(), Failure> {
        let f = &mut self.flow;
        let ready = self.tls.as_ref().is_none_or(|t| !t.is_handshaking());
        while ready && f.sent < f.issued {
            let len = ((f.issued - f.sent) as usize).min(PATTERN_MAX_SLICE);
            let data = pattern.slice(f.phase, f.sent, len);
            match &mut self.tls {
                Some(tls) => {
                    // Without a buffer limit rustls takes it all.
                    tls.writer()
                        .write_all(data)
                        .map_err(|e| io_fail(f, "rustls write", e))?;
                    f.sent += len as u64;
                }
                None => match (&self.sock).write(data) {
                    Ok(n) => {
                        f.sent += n as u64;
                        if n < len {
                            break;
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(io_fail(f, "write", e)),
                },
            }
        }
        let pending = match &mut self.tls {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if would_block(&e) => break,
                        Err(e) => return Err(io_fail(f, "write", e)),
                    }
                }
                tls.wants_write()
            }
            None => f.sent < f.issued,
        };
        if pending != self.writing {
            let interest = if pending {
                Event::all(key)
            } else {
                Event::readable(key)
            };
            poller
                .modify_with_mode(&self.sock, interest, PollMode::Level)
                .map_err(|e| io_fail(f, "modify", e))?;
            self.writing = pending;
        }
        Ok(())
    }

    /// One read, and what it brings. Returns whether the connection is
    /// over (the server closed it after the handshake scenario's echo).
    fn on_readable(&mut self, buf: &mut [u8], ctx: &mut Ctx) -> Result<bool, Failure> {
        let f = &mut self.flow;
        let n = match (&self.sock).read(buf) {
            Ok(0) if f.closing => return Ok(true),
            Ok(0) => {
                return Err(Failure::Io(format!(
                    "connection {}: closed by the server after {} bytes",
                    f.id, f.recvd
                )))
            }
            Ok(n) => n,
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) if f.closing && e.kind() == io::ErrorKind::ConnectionReset => return Ok(true),
            Err(e) => return Err(io_fail(f, "read", e)),
        };
        let Some(tls) = &mut self.tls else {
            ctx.deliver(f, &buf[..n])?;
            return Ok(false);
        };
        let mut input = &buf[..n];
        while !input.is_empty() {
            tls.read_tls(&mut input)
                .map_err(|e| io_fail(f, "rustls read", e))?;
            tls.process_new_packets()
                .map_err(|e| io_fail(f, "TLS", e))?;
            let mut reader = tls.reader();
            loop {
                match reader.fill_buf() {
                    Ok([]) => break,
                    Ok(chunk) => {
                        let len = chunk.len();
                        ctx.deliver(f, chunk)?;
                        reader.consume(len);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(io_fail(f, "TLS read", e)),
                }
            }
        }
        if ctx.stats.negotiated.is_none() && !tls.is_handshaking() {
            let version = tls.protocol_version().map(|v| format!("{v:?}"));
            let suite = tls
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()));
            let group = tls
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()));
            ctx.stats.negotiated = Some(
                [version, suite, group]
                    .map(|v| v.unwrap_or_else(|| "?".into()))
                    .join(" "),
            );
        }
        if ctx.cfg.kind == Kind::Handshake && f.issued == 0 && !tls.is_handshaking() {
            f.issued = HANDSHAKE_MESSAGE as u64;
        }
        Ok(false)
    }

    /// The handshake scenario's echo is back: close (the server closes
    /// its side in answer).
    fn start_close(&mut self) -> Result<(), Failure> {
        match &mut self.tls {
            Some(tls) => {
                tls.send_close_notify();
                Ok(())
            }
            None => self
                .sock
                .shutdown(Shutdown::Write)
                .map_err(|e| io_fail(&self.flow, "shutdown", e)),
        }
    }
}

fn worker(
    cfg: &Config,
    addr: SocketAddr,
    ids: Vec<usize>,
    warm_end: Instant,
    end: Instant,
) -> Result<Stats, Failure> {
    let poller = Poller::new().map_err(|e| Failure::Io(format!("poller: {e}")))?;
    let mut ctx = Ctx {
        cfg,
        addr,
        pattern: Pattern::new(match cfg.kind {
            Kind::Echo { size, .. } => size,
            _ => HANDSHAKE_MESSAGE,
        }),
        body: bulk_body(),
        warm_end,
        end,
        stats: Stats {
            units: 0,
            bytes: 0,
            hist: Histogram::new(),
            negotiated: None,
        },
    };
    let mut conns: Vec<Conn> = Vec::with_capacity(ids.len());
    let deadline = Instant::now() + CONNECT_BUDGET;
    let result = (|| {
        for &id in &ids {
            let c = ctx.open(id, deadline)?;
            // SAFETY: every socket is deleted from the poller before it
            // is dropped (below, and when a connection is replaced).
            unsafe { poller.add_with_mode(&c.sock, Event::readable(conns.len()), PollMode::Level) }
                .map_err(|e| io_fail(&c.flow, "register", e))?;
            conns.push(c);
        }
        drive(&poller, &mut conns, &mut ctx, ids.len())
    })();
    for c in &conns {
        let _ = poller.delete(&c.sock);
    }
    result.map(|()| ctx.stats)
}

fn drive(poller: &Poller, conns: &mut [Conn], ctx: &mut Ctx, stride: usize) -> Result<(), Failure> {
    for (key, c) in conns.iter_mut().enumerate() {
        c.flush(poller, key, &ctx.pattern)?;
    }
    let mut events = Events::with_capacity(NonZeroUsize::new(1024).unwrap());
    let mut buf = vec![0u8; 256 * 1024];
    // Handshake scenario: the number of the next connection.
    let mut next_id = conns.iter().map(|c| c.flow.id).max().unwrap_or(0) + 1;
    loop {
        let now = Instant::now();
        if now >= ctx.end {
            return Ok(());
        }
        events.clear();
        poller
            .wait(&mut events, Some(ctx.end - now))
            .map_err(|e| Failure::Io(format!("poll: {e}")))?;
        for ev in events.iter() {
            let key = ev.key;
            let c = &mut conns[key];
            if ev.readable {
                let was_closing = c.flow.closing;
                if c.on_readable(&mut buf, ctx)? {
                    // Over: the next connection takes its place.
                    poller
                        .delete(&c.sock)
                        .map_err(|e| io_fail(&c.flow, "deregister", e))?;
                    let deadline = Instant::now() + CONNECT_BUDGET;
                    *c = ctx.open(next_id, deadline)?;
                    next_id += stride;
                    // SAFETY: as in `worker`.
                    unsafe { poller.add_with_mode(&c.sock, Event::readable(key), PollMode::Level) }
                        .map_err(|e| io_fail(&c.flow, "register", e))?;
                } else if c.flow.closing && !was_closing {
                    c.start_close()?;
                }
            }
            c.flush(poller, key, &ctx.pattern)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_stream_is_checked_across_chunks() {
        let body = bulk_body();
        let mut stream = Vec::new();
        for i in 0..3u64 {
            stream.extend_from_slice(&i.to_be_bytes());
            stream.extend_from_slice(&body);
        }
        for cut in [1, 7, 8, 9, 100, BULK_CHUNK - 1, BULK_CHUNK, BULK_CHUNK + 3] {
            assert!(verify_bulk(0, &stream[..cut], &body).is_ok());
            assert!(verify_bulk(cut as u64, &stream[cut..], &body).is_ok());
        }
        // A lost chunk shows in the count.
        let err = verify_bulk(BULK_CHUNK as u64, &stream[2 * BULK_CHUNK..], &body).unwrap_err();
        assert!(err.contains("chunk 1, byte 7"), "{err}");
        let mut bad = stream.clone();
        bad[BULK_CHUNK + 500] ^= 1;
        let err = verify_bulk(0, &bad, &body).unwrap_err();
        assert!(err.contains("chunk 1, byte 500"), "{err}");
    }
}
