//! A flood of datagrams does not starve the loop or grow memory: the port
//! reads in bounded batches, so a timer fires while the flood runs, and it
//! holds no queue of received datagrams. Echoing to a peer that never reads
//! leaves the send queue empty on loopback (Linux drops at the full
//! receiver rather than making the sender wait; the queue's pause and cap
//! are tested with a simulated full socket in the crate's unit tests).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use twill::{Bytes, DatagramProtocol, DatagramTransport, Reactor};
use twill_test_support::reactor::run;

/// Bytes allocated and not yet freed, by every thread.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as the caller's contract for `alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FLOOD: usize = 1_000_000;
const FLOOD_TIME: Duration = Duration::from_secs(10);

/// Sends up to [`FLOOD`] datagrams of `size` bytes to `to` (or for
/// [`FLOOD_TIME`]), sets `done`, and returns how many it sent.
fn flood(socket: &UdpSocket, to: SocketAddr, size: usize, done: &AtomicBool) -> usize {
    let payload = vec![0x5a; size];
    let deadline = Instant::now() + FLOOD_TIME;
    let mut sent = 0;
    while sent < FLOOD && Instant::now() < deadline {
        for _ in 0..1000 {
            if socket.send_to(&payload, to).is_ok() {
                sent += 1;
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    sent
}

struct Sink {
    transport: Option<DatagramTransport>,
    echo: bool,
    received: Rc<Cell<u64>>,
    /// Live bytes when the first datagram came, and the most seen since.
    baseline: Rc<Cell<isize>>,
    peak: Rc<Cell<isize>>,
    max_queue: Rc<Cell<usize>>,
    on_first: Option<Box<dyn FnOnce()>>,
}

impl DatagramProtocol for Sink {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        self.transport = Some(transport.clone());
    }
    fn datagram_received(&mut self, data: Bytes, from: SocketAddr) {
        let n = self.received.get() + 1;
        self.received.set(n);
        if n == 1 {
            self.baseline.set(LIVE.load(Ordering::Relaxed));
            if let Some(first) = self.on_first.take() {
                first();
            }
        }
        if n % 256 == 0 {
            self.peak
                .set(self.peak.get().max(LIVE.load(Ordering::Relaxed)));
        }
        if self.echo {
            let transport = self.transport.as_ref().unwrap();
            transport
                .write(data, from)
                .expect("never refused on loopback");
            self.max_queue
                .set(self.max_queue.get().max(transport.send_queue_size()));
        }
    }
}

struct Outcome {
    sent: usize,
    received: u64,
    growth: isize,
    max_queue: usize,
}

fn run_flood(
    echo: bool,
    size: usize,
    done: Arc<AtomicBool>,
    on_first: impl FnOnce() + 'static,
) -> Outcome {
    let reactor = Reactor::new().unwrap();
    let (received, baseline, peak, max_queue) = Default::default();
    let sink = Sink {
        transport: None,
        echo,
        received: Rc::clone(&received),
        baseline: Rc::clone(&baseline),
        peak: Rc::clone(&peak),
        max_queue: Rc::clone(&max_queue),
        on_first: Some(Box::new(on_first)),
    };
    let server = reactor.listen_udp("127.0.0.1:0", sink).unwrap().host();
    let handle = reactor.handle();
    let flooder = thread::spawn(move || {
        // Never reads: the echoes pile up in its receive buffer and then
        // are dropped by the kernel.
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = flood(&socket, server, size, &done);
        handle.stop();
        sent
    });
    run(&reactor);
    let sent = flooder.join().unwrap();
    Outcome {
        sent,
        received: received.get(),
        growth: peak.get() - baseline.get(),
        max_queue: max_queue.get(),
    }
}

#[test]
fn a_timer_fires_on_time_while_a_flood_of_datagrams_runs_and_memory_stays_flat() {
    let flood_done = Arc::new(AtomicBool::new(false));
    let fired = Rc::new(Cell::new(None::<(Duration, bool)>));
    let record = fired.clone();
    let watch = flood_done.clone();
    let outcome = run_flood(false, 32, flood_done.clone(), move || {
        let scheduled = Instant::now();
        twill::call_later(Duration::from_millis(20), move || {
            record.set(Some((scheduled.elapsed(), watch.load(Ordering::SeqCst))));
        });
    });
    let (late, after_flood) = fired.get().expect("the timer fired");
    assert!(!after_flood, "the timer waited for the flood to end");
    assert!(
        late < Duration::from_millis(500),
        "the timer fired {late:?} after scheduling"
    );
    assert!(
        outcome.received > 1000,
        "{} of {} received",
        outcome.received,
        outcome.sent
    );
    assert!(
        outcome.growth < 8 << 20,
        "memory grew by {} bytes over the flood",
        outcome.growth
    );
}

#[test]
fn echoing_a_flood_to_a_peer_that_never_reads_keeps_the_send_queue_and_memory_bounded() {
    let outcome = run_flood(true, 512, Arc::default(), || {});
    assert!(
        outcome.received > 1000,
        "{} of {} received",
        outcome.received,
        outcome.sent
    );
    assert!(outcome.max_queue <= twill::net::DEFAULT_SEND_QUEUE_MAX);
    assert!(
        outcome.growth < 8 << 20,
        "memory grew by {} bytes over the flood",
        outcome.growth
    );
}
