//! Peers that do not read, and what they cost a server: for the
//! backpressure tests of the examples (issue 10).
//!
//! - [`connect_small`]: a connection whose receive buffer is set small
//!   *before* connecting, so the window it offers stays small and a server
//!   writing to it fills its own buffers at once.
//! - [`send_until_stalled`]: write a stream until the writes stop going
//!   through (the server stopped reading and the kernel's buffers are
//!   full), counting what got through.
//! - [`read_expected`]: read a stream back and check it byte for byte,
//!   reporting progress.
//! - [`send_paced`]: send lines in bursts, each once an attentive reader
//!   has all of the previous one.
//! - [`memory`]: a child process's resident memory, now and at its peak
//!   (`VmRSS` and `VmHWM` of `/proc/PID/status`).
//! - [`when_stuck`]: on the server's side, run something once a
//!   connection's write buffer stopped draining.
//!
//! Every wait is bounded: by socket timeouts and by explicit deadlines.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::client::WAIT;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// The receive buffer of a peer that does not read (Linux doubles it for
/// its bookkeeping, and the window it offers is smaller still).
pub const SMALL_RCVBUF: usize = 4 * 1024;

/// Connects to `addr` with `SO_RCVBUF` set to `rcvbuf` before the
/// handshake (so the window scale and window stay small), `TCP_NODELAY`,
/// and [`WAIT`] as the connect, read and write timeout.
pub fn connect_small(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .expect("create a socket");
    socket.set_recv_buffer_size(rcvbuf).expect("set SO_RCVBUF");
    socket.connect_timeout(&addr.into(), WAIT).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Connects to `addr` with default buffers, `TCP_NODELAY`, and [`WAIT`] as
/// the connect, read and write timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes the stream that `fill(offset, buf)` describes (it fills `buf`
/// with the stream's bytes from `offset` on) until `limit` bytes went
/// through or one write made no progress for `stall` (the write timeout
/// while sending); returns how many bytes went through, that is, were
/// accepted by the kernel. The write timeout is [`WAIT`] again afterwards.
pub fn send_until_stalled(
    stream: &mut TcpStream,
    limit: u64,
    stall: Duration,
    mut fill: impl FnMut(u64, &mut [u8]),
) -> u64 {
    const CHUNK: usize = 256 * 1024;
    stream.set_write_timeout(Some(stall)).unwrap();
    let mut buf = vec![0; CHUNK];
    let mut sent = 0u64;
    'sending: while sent < limit {
        let len = CHUNK.min(usize::try_from(limit - sent).unwrap_or(CHUNK));
        fill(sent, &mut buf[..len]);
        let mut done = 0;
        while done < len {
            match stream.write(&buf[done..len]) {
                Ok(0) => panic!("the connection accepts no more data after {sent} bytes"),
                Ok(n) => {
                    done += n;
                    sent += n as u64;
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break 'sending
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => panic!("sending failed after {sent} bytes: {err}"),
            }
        }
    }
    stream.set_write_timeout(Some(WAIT)).unwrap();
    sent
}

/// Reads `len` bytes from `stream` and checks that they are the stream
/// `fill` describes from `start` on (see [`send_until_stalled`]), calling
/// `progress` with the offset reached after each read. Fails the test at
/// the first difference, on EOF or an error, or once `deadline` passed.
pub fn read_expected(
    stream: &mut impl Read,
    start: u64,
    len: u64,
    deadline: Instant,
    mut fill: impl FnMut(u64, &mut [u8]),
    mut progress: impl FnMut(u64),
) {
    const CHUNK: usize = 256 * 1024;
    let mut got = vec![0; CHUNK];
    let mut want = vec![0; CHUNK];
    let (mut at, end) = (start, start + len);
    while at < end {
        assert!(
            Instant::now() < deadline,
            "only {} of {len} bytes arrived before the deadline",
            at - start
        );
        let room = CHUNK.min(usize::try_from(end - at).unwrap_or(CHUNK));
        let n = match stream.read(&mut got[..room]) {
            Ok(0) => panic!("EOF after {} of {len} bytes", at - start),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => panic!("reading failed after {} of {len} bytes: {err}", at - start),
        };
        fill(at, &mut want[..n]);
        if got[..n] != want[..n] {
            let first = (0..n).find(|&i| got[i] != want[i]).unwrap();
            panic!(
                "byte {} of the stream differs: got {:?}, expected {:?}",
                at + first as u64,
                got[first..n.min(first + 40)].escape_ascii().to_string(),
                want[first..n.min(first + 40)].escape_ascii().to_string()
            );
        }
        at += n as u64;
        progress(at);
    }
}

/// How a [`read_until_quiet`] ended.
#[derive(Debug)]
pub enum End {
    /// Nothing arrived for the quiet time.
    Quiet,
    /// The peer closed the connection cleanly.
    Eof,
    /// The maximum was read.
    Full,
    /// Reading failed (a reset, typically).
    Failed(io::Error),
}

/// Reads whatever arrives until nothing has for `quiet`, or EOF, or an
/// error (a reset), or `max` bytes; returns the bytes and how it ended.
/// Fails the test if data keeps arriving past `deadline`.
pub fn read_until_quiet(
    stream: &mut TcpStream,
    quiet: Duration,
    max: usize,
    deadline: Instant,
) -> (Vec<u8>, End) {
    stream.set_read_timeout(Some(quiet)).unwrap();
    let mut data = Vec::new();
    let mut buf = vec![0; 256 * 1024];
    let end = loop {
        assert!(
            Instant::now() < deadline,
            "data kept arriving until the deadline ({} bytes)",
            data.len()
        );
        let room = buf.len().min(max - data.len());
        if room == 0 {
            break End::Full;
        }
        match stream.read(&mut buf[..room]) {
            Ok(0) => break End::Eof,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break End::Quiet
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => break End::Failed(err),
        }
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    (data, end)
}

/// Sends `lines` lines, `line(seq, buf)` appending line `seq` to `buf`, in
/// bursts of `per_burst` lines; before each burst after the first it waits
/// until `received` (the count of lines an attentive reader has, reported
/// as they arrive) reaches the end of the previous one, so a burst never
/// meets a reader that is still behind. Fails the test if a wait passes
/// `deadline` or the reader stops reporting.
pub fn send_paced(
    stream: &mut TcpStream,
    lines: u64,
    per_burst: u64,
    mut line: impl FnMut(u64, &mut Vec<u8>),
    received: &Receiver<u64>,
    deadline: Instant,
) {
    let mut burst = Vec::new();
    let mut has = 0;
    let mut seq = 0;
    while seq < lines {
        while has < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(count) => has = has.max(count),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the attentive reader had {has} of {seq} lines at the deadline")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the attentive reader stopped at {has} of {seq} lines")
                }
            }
        }
        burst.clear();
        let end = lines.min(seq + per_burst);
        for seq in seq..end {
            line(seq, &mut burst);
        }
        stream
            .write_all(&burst)
            .unwrap_or_else(|err| panic!("sending lines {seq}..{end} failed: {err}"));
        seq = end;
    }
}

/// `bytes` in MiB, for messages.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Asserts what a server that stops reading a client which never reads
/// shows: less than a quarter of `limit` got through before the writes
/// stalled (`sent`), and the server's peak memory stayed within `margin` of
/// its resident memory at start.
#[track_caller]
pub fn assert_stalled_with_flat_memory(
    sent: u64,
    limit: u64,
    at_start: Memory,
    when_stalled: Memory,
    margin: u64,
) {
    assert!(
        sent < limit / 4,
        "{:.1} MiB got through: the server kept reading",
        mib(sent)
    );
    assert!(
        when_stalled.peak <= at_start.rss + margin,
        "the server grew from {at_start} to {when_stalled} for {:.1} MiB sent",
        mib(sent)
    );
}

/// A process's resident memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss: u64,
    /// The most it ever was resident (`VmHWM`).
    pub peak: u64,
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB (peak {:.1} MiB)",
            self.rss as f64 / MIB as f64,
            self.peak as f64 / MIB as f64
        )
    }
}

/// The resident memory of process `pid`, from `/proc/PID/status`.
pub fn memory(pid: u32) -> Memory {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
    let field = |name: &str| -> u64 {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {path}"));
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad {line:?} in {path}"));
        kib * 1024
    };
    Memory {
        rss: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

/// Runs `f` once `transport`'s write buffer holds bytes and nothing more
/// has been sent for 20 checks 5 ms apart: the peer is not reading and the
/// kernel's buffers are full. Polled on the current reactor's timers; the
/// run's watchdog bounds it.
pub fn when_stuck(transport: twill::Transport, f: impl FnOnce() + 'static) {
    fn check(transport: twill::Transport, last: u64, same: u32, f: Box<dyn FnOnce()>) {
        let sent = transport.bytes_sent();
        let same = if sent == last { same + 1 } else { 0 };
        if same >= 20 && transport.write_buffer_size() > 0 {
            f();
            return;
        }
        twill::call_later(std::time::Duration::from_millis(5), move || {
            check(transport, sent, same, f)
        });
    }
    check(transport, u64::MAX, 0, Box::new(f));
}
