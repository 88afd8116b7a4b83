//! `raw_polling_echo`: the practical ceiling for an echo server on `polling`.
//!
//! ```text
//! raw_polling_echo [127.0.0.1:0]
//! ```
//!
//! One thread, one `polling::Poller`, every socket registered
//! level-triggered. Per readable event: one `read` into a reusable 64 KiB
//! buffer and an immediate `write` of what was read. Only what the socket
//! does not take is copied into the connection's own buffer, and only then
//! is writable interest turned on (and off again once drained); while more
//! than 1 MiB waits to be sent, the connection stops reading. Accepted
//! sockets get TCP_NODELAY. No timers, no tasks, no allocation per message:
//! whatever a framework spends above this is its overhead.
//!
//! When ready it prints `listening on ADDR` (the bound address) to stderr.
//! It runs until killed.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::process::exit;

use polling::{Event, Events, PollMode, Poller};
use twill_bench::{loopback_addr, Args, CliError};

/// Key of the listening socket; connections use their slab index + 1.
const LISTENER: usize = 0;
/// Stop reading a connection while this much is waiting to be written.
const HIGH_WATER: usize = 1 << 20;

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet written, oldest first.
    pending: Vec<u8>,
    /// The interest currently registered: (readable, writable).
    interest: (bool, bool),
}

fn main() {
    if let Err(e) = run() {
        eprintln!("raw_polling_echo: {e}");
        exit(1);
    }
}

fn run() -> Result<(), CliError> {
    let mut args = Args::from_env();
    if args.wants_help() {
        println!("usage: raw_polling_echo [127.0.0.1:PORT]");
        return Ok(());
    }
    let addr = loopback_addr(&args.positional().unwrap_or_else(|| "127.0.0.1:0".into()))?;
    args.finish()?;

    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let poller = Poller::new()?;
    // SAFETY: the listener lives until the end of `run`, and the poller is
    // dropped before it (declared later).
    unsafe { poller.add_with_mode(&listener, Event::readable(LISTENER), PollMode::Level)? };
    eprintln!("listening on {}", listener.local_addr()?);

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(NonZeroUsize::new(1024).unwrap());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        events.clear();
        poller.wait(&mut events, None)?;
        for ev in events.iter() {
            if ev.key == LISTENER {
                accept_all(&listener, &poller, &mut conns, &mut free)?;
                continue;
            }
            let slot = ev.key - 1;
            let Some(conn) = conns[slot].as_mut() else {
                continue;
            };
            let alive = serve(&poller, ev, conn, &mut buf).unwrap_or(false);
            if !alive {
                // Delete before the socket is closed (the `add` contract).
                let conn = conns[slot].take().expect("slot is occupied");
                let _ = poller.delete(&conn.stream);
                free.push(slot);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    poller: &Poller,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
) -> io::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // e.g. ECONNABORTED or EMFILE: drop this one, keep serving.
            Err(_) => return Ok(()),
        };
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let slot = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        // SAFETY: the stream is deleted from the poller before it is dropped
        // (see the close path in `run`).
        unsafe { poller.add_with_mode(&stream, Event::readable(slot + 1), PollMode::Level)? };
        conns[slot] = Some(Conn {
            stream,
            pending: Vec::new(),
            interest: (true, false),
        });
    }
}

/// Handles one event; returns `Ok(false)` when the connection is done.
fn serve(poller: &Poller, ev: Event, conn: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    if ev.writable && !conn.pending.is_empty() {
        let n = write_some(&conn.stream, &conn.pending)?;
        conn.pending.drain(..n);
    }
    if ev.readable && conn.interest.0 {
        match (&conn.stream).read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                let data = &buf[..n];
                if conn.pending.is_empty() {
                    let w = write_some(&conn.stream, data)?;
                    conn.pending.extend_from_slice(&data[w..]);
                } else {
                    conn.pending.extend_from_slice(data);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(false),
        }
    }
    let want = (conn.pending.len() < HIGH_WATER, !conn.pending.is_empty());
    if want != conn.interest {
        let key = ev.key;
        let interest = match want {
            (true, true) => Event::all(key),
            (true, false) => Event::readable(key),
            (false, true) => Event::writable(key),
            (false, false) => Event::none(key),
        };
        poller.modify_with_mode(&conn.stream, interest, PollMode::Level)?;
        conn.interest = want;
    }
    Ok(true)
}

/// One `write`; returns how many bytes the socket took (0 if it is full).
fn write_some(mut stream: &TcpStream, data: &[u8]) -> io::Result<usize> {
    loop {
        match stream.write(data) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
