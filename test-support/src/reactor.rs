//! Running a reactor in a test without risking a hang: [`run_bounded`]
//! (and [`run_group`], for a reactor group) has a watchdog thread stop it
//! after a time limit and fails the test if it had to; [`serve`] runs a server on 127.0.0.1 against a client
//! thread; [`connect`] opens a loopback connection with timeouts.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use twill::group::ReactorGroup;
use twill::{Factory, Reactor, ReactorHandle};

/// The time limit of [`run`] and [`serve`], and the read and write timeout
/// of [`connect`].
pub const LIMIT: Duration = Duration::from_secs(20);

/// Stops a reactor from another thread if the test has not finished within
/// its time limit, so a broken rule fails the test instead of hanging it.
/// Dropping it ends its thread.
struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts a watchdog that calls `stop` after `limit`.
    fn new(stop: impl FnOnce() + Send + 'static, limit: Duration) -> Watchdog {
        let (done, wait) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                flag.store(true, Ordering::SeqCst);
                stop();
            }
        });
        Watchdog {
            done: Some(done),
            fired,
            thread: Some(thread),
        }
    }
}

impl Watchdog {
    /// Ends the watchdog (first, so it cannot fire after the check) and
    /// fails the test if it had fired.
    fn check(self, limit: Duration) {
        let fired = self.fired.clone();
        drop(self);
        assert!(
            !fired.load(Ordering::SeqCst),
            "the test did not stop the reactor within {limit:?}: the watchdog did"
        );
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `reactor` until the test stops it, failing the test if a watchdog
/// had to stop it after `limit` instead.
pub fn run_bounded(reactor: &Reactor, limit: Duration) {
    let handle = reactor.handle();
    let watchdog = Watchdog::new(move || handle.stop(), limit);
    reactor.run().expect("reactor runs");
    watchdog.check(limit);
}

/// Runs a reactor group until the test stops it, failing the test if a
/// watchdog had to stop it after [`LIMIT`] instead; returns what
/// [`ReactorGroup::run`] returned.
pub fn run_group(group: &ReactorGroup) -> io::Result<()> {
    let handle = group.handle();
    let watchdog = Watchdog::new(move || handle.stop(), LIMIT);
    let result = group.run();
    watchdog.check(LIMIT);
    result
}

/// [`run_bounded`] with [`LIMIT`].
pub fn run(reactor: &Reactor) {
    run_bounded(reactor, LIMIT);
}

/// Listens with `factory` on 127.0.0.1, runs `client` on another thread
/// with the port's address and a handle on the reactor, runs the reactor
/// (see [`run`]) until it is stopped, and returns what the client returned.
pub fn serve<R: Send + 'static>(
    reactor: &Reactor,
    factory: impl Factory,
    client: impl FnOnce(SocketAddr, ReactorHandle) -> R + Send + 'static,
) -> R {
    let port = reactor.listen_tcp("127.0.0.1:0", factory).unwrap();
    let (addr, handle) = (port.host().tcp().unwrap(), reactor.handle());
    let client = thread::spawn(move || client(addr, handle));
    run(reactor);
    client.join().unwrap()
}

/// Connects to `addr` with [`LIMIT`] as the read and write timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}
