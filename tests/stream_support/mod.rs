//! Helpers shared by the stream tests: an `async` test body run on a
//! reactor under a watchdog, servers whose connections come to that body
//! as stream pairs, blocking peers on threads of their own that the body
//! cues step by step, a timer future, a way to poll a read again only when
//! the connection woke it, and deterministic byte patterns.
//!
//! Every wait is bounded: the body by the watchdog of
//! `twill_test_support::reactor::run_bounded`, the peers by their sockets'
//! timeouts and by [`WAIT`] on every cue.

#![allow(dead_code)]

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use futures::channel::{mpsc as async_mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use twill::defer::Deferred;
use twill::stream::{self, StreamReader, StreamWriter};
use twill::{ListeningPort, Reactor};

pub use twill_test_support::client::WAIT;

/// How long a whole stream test may run before its watchdog stops it.
pub const LIMIT: Duration = twill_test_support::reactor::LIMIT;

/// Runs `body` as a task on a new reactor until it finishes, and gives
/// what it returned; a panic in the body fails the test with that panic.
/// The reactor stops once the body is done (with a 1 s shutdown timeout
/// for the connections left open), or after [`LIMIT`], which fails the
/// test.
pub fn run<T: 'static>(body: impl Future<Output = T> + 'static) -> T {
    let reactor = Reactor::new().expect("a reactor");
    let outcome = run_on(&reactor, body);
    drop(reactor);
    outcome
}

/// [`run`] on a reactor the test made (and keeps, to drop it when it
/// chooses).
pub fn run_on<T: 'static>(reactor: &Reactor, body: impl Future<Output = T> + 'static) -> T {
    let outcome = Rc::new(RefCell::new(None));
    let slot = outcome.clone();
    twill::spawn(async move {
        let result = AssertUnwindSafe(body).catch_unwind().await;
        *slot.borrow_mut() = Some(result);
        twill::stop();
    });
    reactor.set_shutdown_timeout(Duration::from_secs(1));
    twill_test_support::reactor::run_bounded(reactor, LIMIT);
    let result = outcome.borrow_mut().take();
    match result {
        Some(Ok(value)) => value,
        Some(Err(panic)) => resume_unwind(panic),
        None => panic!("the reactor stopped before the test body finished"),
    }
}

/// A stream server on 127.0.0.1 that gives the body its connections, in
/// the order they are accepted, instead of running a handler.
pub struct Server {
    port: ListeningPort,
    accepted: async_mpsc::UnboundedReceiver<(StreamReader, StreamWriter)>,
}

impl Server {
    /// Listens on a free loopback port of the current reactor.
    pub fn start() -> Server {
        let (tx, accepted) = async_mpsc::unbounded();
        let port = stream::start_server("127.0.0.1:0", move |reader, writer| {
            let _ = tx.unbounded_send((reader, writer));
            async {}
        })
        .expect("listen on 127.0.0.1");
        Server { port, accepted }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.port.host().tcp().unwrap()
    }

    /// The next connection's streams.
    pub async fn accept(&mut self) -> (StreamReader, StreamWriter) {
        self.accepted
            .next()
            .await
            .expect("the server stopped accepting")
    }
}

/// A deterministic, non-repeating-looking pattern: byte `offset` of a
/// stream, for checking long transfers byte for byte.
pub fn pattern_byte(offset: u64) -> u8 {
    let mixed = offset.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 56) as u8 ^ (offset as u8)
}

/// Fills `buf` with the pattern from `offset` on (the shape
/// `twill_test_support::pressure` helpers take).
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = pattern_byte(offset + i as u64);
    }
}

/// The pattern's bytes `offset..offset + len`.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    fill_pattern(offset, &mut buf);
    buf
}

/// Fails the test unless `got` is the pattern from `offset` on, naming
/// the first byte that differs.
#[track_caller]
pub fn assert_pattern(offset: u64, got: &[u8]) {
    if let Some(i) = (0..got.len()).find(|&i| got[i] != pattern_byte(offset + i as u64)) {
        panic!(
            "byte {} of the stream is {:#04x}, the pattern has {:#04x}",
            offset + i as u64,
            got[i],
            pattern_byte(offset + i as u64)
        );
    }
}

/// A Deferred that fires `delay` from now, on the current reactor's timers.
pub fn sleep(delay: Duration) -> Deferred<()> {
    let elapsed = Deferred::new();
    let resolver = elapsed.resolver();
    twill::call_later(delay, move || resolver.callback(()));
    elapsed
}

/// Whether `future` finishes within `limit`: for a read expected to
/// finish on an event that a defect would keep from coming (the body's
/// watchdog bounds a test that hangs outright).
pub async fn within<F: Future + Unpin>(limit: Duration, future: F) -> Option<F::Output> {
    match futures::future::select(future, sleep(limit)).await {
        futures::future::Either::Left((output, _)) => Some(output),
        futures::future::Either::Right(_) => None,
    }
}

/// A connection from this reactor to `server`, both ends as streams:
/// (client reader, client writer, server reader, server writer).
pub async fn pair(server: &mut Server) -> (StreamReader, StreamWriter, StreamReader, StreamWriter) {
    let (client_reader, client_writer) = stream::open_connection(server.addr()).await.unwrap();
    let (server_reader, server_writer) = server.accept().await;
    (client_reader, client_writer, server_reader, server_writer)
}

/// Polls `read` (pending already) once more, after whatever next wakes the
/// task: the connection's bytes, its EOF or its end. Gives what that poll
/// gave: still `Pending` means what came did not finish the read.
pub async fn poll_when_woken<F: Future + Unpin>(read: &mut F) -> Poll<F::Output> {
    let mut waited = false;
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if !waited {
            waited = true;
            return Poll::Pending;
        }
        Poll::Ready(Pin::new(&mut *read).poll(cx))
    })
    .await
}

/// A blocking peer on a thread of its own: a script that the body cues
/// step by step, that can report numbers back, and whose result the body
/// awaits without blocking the reactor.
pub struct Peer<R> {
    cues: mpsc::Sender<()>,
    notes: async_mpsc::UnboundedReceiver<u64>,
    done: oneshot::Receiver<()>,
    thread: thread::JoinHandle<R>,
}

/// What a [`Peer`]'s script gets besides its socket.
pub struct Cues {
    cues: mpsc::Receiver<()>,
    notes: async_mpsc::UnboundedSender<u64>,
}

impl Cues {
    /// Waits for the body's next [`Peer::cue`], at most [`WAIT`].
    pub fn wait(&self) {
        self.cues
            .recv_timeout(WAIT)
            .expect("the test body gave no cue in time");
    }

    /// Reports `n` to the body ([`Peer::note`]).
    pub fn note(&self, n: u64) {
        let _ = self.notes.unbounded_send(n);
    }
}

impl<R: Send + 'static> Peer<R> {
    /// Connects to `addr` (with [`WAIT`] as the read and write timeout and
    /// `TCP_NODELAY`, so each write leaves as a segment of its own) and runs
    /// `script` on a new thread.
    pub fn connect(
        addr: SocketAddr,
        script: impl FnOnce(TcpStream, &Cues) -> R + Send + 'static,
    ) -> Peer<R> {
        Peer::on(twill_test_support::pressure::connect(addr), script)
    }

    /// Runs `script` on a new thread with a socket the test connected.
    pub fn on(
        socket: TcpStream,
        script: impl FnOnce(TcpStream, &Cues) -> R + Send + 'static,
    ) -> Peer<R> {
        Peer::spawn(move |cues| script(socket, cues))
    }

    /// Accepts one connection on `listener` (within [`WAIT`]) on a new
    /// thread and runs `script` with it.
    pub fn accept(
        listener: TcpListener,
        script: impl FnOnce(TcpStream, &Cues) -> R + Send + 'static,
    ) -> Peer<R> {
        Peer::spawn(move |cues| {
            // On Linux the receive timeout bounds `accept` too.
            socket2::SockRef::from(&listener)
                .set_read_timeout(Some(WAIT))
                .unwrap();
            let (socket, _) = listener.accept().expect("a connection within the wait");
            socket.set_read_timeout(Some(WAIT)).unwrap();
            socket.set_write_timeout(Some(WAIT)).unwrap();
            socket.set_nodelay(true).unwrap();
            script(socket, cues)
        })
    }

    fn spawn(script: impl FnOnce(&Cues) -> R + Send + 'static) -> Peer<R> {
        let (cue_tx, cue_rx) = mpsc::channel();
        let (note_tx, note_rx) = async_mpsc::unbounded();
        let (done_tx, done_rx) = oneshot::channel();
        let thread = thread::spawn(move || {
            let cues = Cues {
                cues: cue_rx,
                notes: note_tx,
            };
            let outcome = script(&cues);
            let _ = done_tx.send(());
            outcome
        });
        Peer {
            cues: cue_tx,
            notes: note_rx,
            done: done_rx,
            thread,
        }
    }

    /// Lets the script go past its next [`Cues::wait`].
    pub fn cue(&self) {
        let _ = self.cues.send(());
    }

    /// The next number the script reported.
    pub async fn note(&mut self) -> u64 {
        match self.notes.next().await {
            Some(n) => n,
            // Ended without reporting: its panic, if it panicked.
            None => panic!("the peer ended before reporting"),
        }
    }

    /// What the script returned, once it has (without blocking the
    /// reactor); the script's panic if it panicked.
    pub async fn outcome(self) -> R {
        let _ = self.done.await;
        join(self.thread)
    }

    /// What the script returned, blocking until it has: for after the
    /// reactor stopped.
    pub fn join(self) -> R {
        join(self.thread)
    }
}

fn join<R>(thread: thread::JoinHandle<R>) -> R {
    match thread.join() {
        Ok(outcome) => outcome,
        Err(panic) => resume_unwind(panic),
    }
}

/// Writes `data` and waits for nothing: one segment on loopback.
pub fn send(socket: &mut TcpStream, data: &[u8]) {
    io::Write::write_all(socket, data).expect("the peer's write");
}

/// How a peer's reading ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A FIN: the server closed cleanly.
    Eof,
    /// An error (a reset): its kind.
    Error(io::ErrorKind),
}

/// Reads until the server ends the connection (a timeout fails the test);
/// gives what came and how it ended.
pub fn read_to_end(socket: &mut TcpStream) -> (Vec<u8>, Ending) {
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match io::Read::read(socket, &mut buf) {
            Ok(0) => return (got, Ending::Eof),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "the server did not end the connection within {WAIT:?} ({} bytes came)",
                    got.len()
                )
            }
            Err(err) => return (got, Ending::Error(err.kind())),
        }
    }
}

/// Closes `socket` with a reset (`SO_LINGER` 0), not a FIN.
pub fn reset(socket: TcpStream) {
    socket2::SockRef::from(&socket)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER");
    drop(socket);
}
