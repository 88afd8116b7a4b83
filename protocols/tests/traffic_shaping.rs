//! `TrafficShapingHandler`: unit tests driven by `StringTransport` and a
//! hand-advanced `Clock` (no sleeps), and one loopback test of a read
//! limit slowing a real client's upload.
//!
//! The waits follow Netty's `TrafficCounter.readTimeToWait` and
//! `writeTimeToWait` (see `TrafficShapingHandlerTest` in Netty's
//! `handler` module for Netty's own, timing-based, tests).

use std::cell::Cell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::task::Clock;
use twill::testing::StringTransport;
use twill::{Bytes, BytesMut, Event, Protocol, Reactor, Reason, Transport};
use twill_protocols::handler::{LoggingHandler, ShapingHandle, TrafficShapingHandler};
use twill_test_support::events::{describe, Log};
use twill_test_support::reactor::{connect, serve};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type OnData = Box<dyn FnMut(&Transport, &Bytes)>;

/// Records what reaches it; runs `on_data` on each read.
struct Probe {
    log: Log,
    transport: Option<Transport>,
    on_data: OnData,
}

impl Probe {
    fn new(log: &Log) -> Probe {
        Probe::with(log, |_, _| {})
    }

    fn with(log: &Log, on_data: impl FnMut(&Transport, &Bytes) + 'static) -> Probe {
        Probe {
            log: log.clone(),
            transport: None,
            on_data: Box::new(on_data),
        }
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.log.push("made");
    }
    fn data_received(&mut self, data: Bytes) {
        self.log.push(format!("data {}", data.len()));
        let transport = self.transport.clone().unwrap();
        (self.on_data)(&transport, &data);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(describe(reason));
    }
    fn pause_writing(&mut self) {
        self.log.push("pause");
    }
    fn resume_writing(&mut self) {
        self.log.push("resume");
    }
}

fn on_clock<P: Protocol>(
    handler: TrafficShapingHandler<P>,
    clock: &Clock,
) -> TrafficShapingHandler<P> {
    handler.clock(Rc::new(clock.clone()))
}

/// A handler around a `Probe`, connected to a fresh `StringTransport`.
fn connected(
    clock: &Clock,
    configure: impl FnOnce(TrafficShapingHandler<Probe>) -> TrafficShapingHandler<Probe>,
    probe: Probe,
) -> (TrafficShapingHandler<Probe>, StringTransport) {
    let mut handler = configure(on_clock(TrafficShapingHandler::new(probe), clock));
    let recorder = StringTransport::new();
    handler.connection_made(&recorder.transport());
    (handler, recorder)
}

fn bytes(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}

// ---------------------------------------------------------------------------
// Reads

#[test]
fn reads_over_the_limit_are_delivered_then_reading_pauses_for_the_time_they_take() {
    let (log, clock) = (Log::default(), Clock::new());
    let (mut handler, recorder) = connected(&clock, |h| h.read_limit(1000), Probe::new(&log));

    handler.data_received(bytes(3000)); // 3 s worth at t = 0
    assert_eq!(log.events(), ["made", "data 3000"], "delivered first");
    assert!(recorder.reading_paused());
    assert!(handler.reads_shaped());
    clock.advance(ms(2990));
    assert!(recorder.reading_paused(), "not before 3 s");
    clock.advance(ms(10));
    assert!(!recorder.reading_paused(), "resumed at 3 s");
    assert!(!handler.reads_shaped());

    // At the rate: 500 bytes half a second after the last check.
    clock.advance(ms(500));
    handler.data_received(bytes(500));
    assert!(!recorder.reading_paused());
}

#[test]
fn a_wait_of_10_ms_or_less_does_not_pause() {
    let (log, clock) = (Log::default(), Clock::new());
    let (mut handler, recorder) = connected(&clock, |h| h.read_limit(1000), Probe::new(&log));
    handler.data_received(bytes(9)); // 9 ms
    assert!(!recorder.reading_paused());
    handler.data_received(bytes(1)); // 10 ms
    assert!(!recorder.reading_paused(), "10 ms is not over the minimum");
    handler.data_received(bytes(1)); // 11 ms
    assert!(recorder.reading_paused());
    clock.advance(ms(11));
    assert!(!recorder.reading_paused());
}

#[test]
fn max_time_caps_the_pause() {
    let (log, clock) = (Log::default(), Clock::new());
    let (mut handler, recorder) = connected(&clock, |h| h.read_limit(1000), Probe::new(&log));
    handler.data_received(bytes(100_000)); // 100 s worth
    clock.advance(ms(14_999));
    assert!(recorder.reading_paused());
    clock.advance(ms(1));
    assert!(!recorder.reading_paused(), "Netty's default: 15 s at most");

    let (mut handler, recorder) = connected(
        &clock,
        |h| h.read_limit(1000).max_time(secs(2)),
        Probe::new(&log),
    );
    handler.data_received(bytes(100_000));
    clock.advance(secs(2));
    assert!(!recorder.reading_paused());
}

#[test]
fn more_input_during_a_pause_makes_it_longer() {
    let (log, clock) = (Log::default(), Clock::new());
    let (mut handler, recorder) = connected(&clock, |h| h.read_limit(1000), Probe::new(&log));
    handler.data_received(bytes(2000)); // until 2 s
    clock.advance(ms(500));
    // A transport that had more in hand delivers it anyway: 3000 bytes
    // over 0.5 s need 2.5 s more.
    handler.data_received(bytes(1000));
    clock.advance(ms(1500)); // 2 s
    assert!(recorder.reading_paused());
    clock.advance(ms(1000)); // 3 s
    assert!(!recorder.reading_paused());
}

#[test]
fn a_pause_the_protocol_made_itself_outlives_the_shapers() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut handler = on_clock(
        TrafficShapingHandler::with_handle(|handle: ShapingHandle| {
            // Paused on its own account, from the read that trips the
            // limit.
            Probe::with(&log, move |_, _| handle.pause_reading())
        }),
        &clock,
    )
    .read_limit(1000);
    let handle = handler.handle();
    let recorder = StringTransport::new();
    handler.connection_made(&recorder.transport());

    handler.data_received(bytes(3000));
    assert!(recorder.reading_paused() && handler.reads_shaped());
    clock.advance(secs(3));
    assert!(!handler.reads_shaped(), "the shaper's pause is over");
    assert!(recorder.reading_paused(), "the protocol's is not");
    handle.resume_reading();
    assert!(!recorder.reading_paused());

    // The other way round: the protocol resumes while the shaper holds.
    handle.pause_reading();
    handler.data_received(bytes(3000)); // pauses (its own), shaped until 6 s
    handle.resume_reading();
    assert!(recorder.reading_paused(), "the shaper still holds reading");
    clock.advance(secs(3));
    assert!(!recorder.reading_paused());
}

#[test]
fn a_protocol_paused_before_the_connection_starts_paused() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut handler = on_clock(
        TrafficShapingHandler::with_handle(|handle: ShapingHandle| {
            handle.pause_reading();
            Probe::new(&log)
        }),
        &clock,
    );
    assert!(handler.handle().transport().is_none());
    let recorder = StringTransport::new();
    handler.connection_made(&recorder.transport());
    assert!(recorder.reading_paused());
    assert!(handler.handle().transport().is_some());
}

/// Gathers lines in a buffer of its own, read into by the reactor.
#[derive(Default)]
struct Lines {
    pending: BytesMut,
    lines: Vec<String>,
}

impl Protocol for Lines {
    fn data_received(&mut self, data: Bytes) {
        self.pending.extend_from_slice(&data);
        self.buffer_updated(data.len());
    }
    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        Some(&mut self.pending)
    }
    fn buffer_updated(&mut self, _appended: usize) {
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line = self.pending.split_to(end + 1);
            self.lines
                .push(String::from_utf8_lossy(&line[..end]).into_owned());
        }
    }
}

#[test]
fn a_protocol_that_reads_into_its_own_buffer_gets_the_bytes_through_data_received_and_they_count() {
    let clock = Clock::new();
    let mut handler = on_clock(TrafficShapingHandler::new(Lines::default()), &clock).read_limit(4);
    let recorder = StringTransport::new();
    handler.connection_made(&recorder.transport());

    // The shaper does not lend the protocol's buffer out: its timers call
    // into the protocol too, and must find its input where it belongs.
    assert!(handler.get_buffer().is_none());
    handler.data_received(Bytes::from_static(b"one\ntw"));
    assert!(recorder.reading_paused(), "6 bytes at 4 B/s");
    assert_eq!(handler.inner().pending.as_ref(), b"tw");
    handler.data_received(Bytes::from_static(b"o\n"));
    assert_eq!(handler.inner().lines, ["one", "two"]);
    assert!(handler.inner().pending.is_empty());
    assert_eq!(handler.counter().cumulative_read_bytes(), 8);
}

// ---------------------------------------------------------------------------
// Writes

#[test]
fn writes_over_the_limit_pause_the_producer_once_for_the_time_they_take() {
    let (log, clock) = (Log::default(), Clock::new());
    let probe = Probe::with(&log, |transport, _| transport.write(vec![b'w'; 5000]));
    let (mut handler, recorder) = connected(&clock, |h| h.write_limit(1000), probe);

    handler.data_received(Bytes::from_static(b"go"));
    assert_eq!(recorder.value().len(), 5000, "nothing is held back");
    assert_eq!(log.events(), ["made", "data 2", "pause"]);
    assert!(handler.writes_shaped());
    clock.advance(ms(4990));
    assert_eq!(log.events().len(), 3, "not before 5 s");
    clock.advance(ms(10));
    assert_eq!(log.events(), ["made", "data 2", "pause", "resume"]);
    assert!(!handler.writes_shaped());
    clock.advance(secs(10));
    assert_eq!(log.events().len(), 4);
}

#[test]
fn writes_made_outside_the_callbacks_are_seen_by_the_timers() {
    let (log, clock) = (Log::default(), Clock::new());
    let (handler, recorder) = connected(&clock, |h| h.write_limit(1000), Probe::new(&log));
    recorder.transport().write(vec![b'w'; 3000]); // from elsewhere, at 0
    clock.advance(ms(500)); // nothing looked yet
    assert_eq!(log.events(), ["made"]);
    clock.advance(ms(500)); // the check at 1 s sees it: 2 s more
    assert_eq!(log.events(), ["made", "pause"]);
    assert_eq!(handler.counter().last_written_bytes(), 3000);
    clock.advance(ms(1990));
    assert_eq!(log.events().len(), 2);
    clock.advance(ms(10));
    assert_eq!(log.events(), ["made", "pause", "resume"]);
}

#[test]
fn a_producer_that_ignores_the_pause_is_only_paused_longer() {
    let (log, clock) = (Log::default(), Clock::new());
    let probe = Probe::with(&log, |transport, _| transport.write(vec![b'w'; 1000]));
    let (mut handler, recorder) = connected(&clock, |h| h.write_limit(1000), probe);
    handler.data_received(Bytes::from_static(b"1")); // 1 s
    handler.data_received(Bytes::from_static(b"2")); // 2 s: still one pause
    handler.data_received(Bytes::from_static(b"3")); // 3 s
    assert_eq!(recorder.value().len(), 3000, "every write went through");
    assert_eq!(
        log.events(),
        ["made", "data 1", "pause", "data 1", "data 1"]
    );
    clock.advance(ms(2990));
    assert_eq!(log.events().len(), 5);
    clock.advance(ms(10));
    assert_eq!(log.events().last().unwrap(), "resume");
}

#[test]
fn the_shapers_and_the_transports_pauses_merge_into_one() {
    let (log, clock) = (Log::default(), Clock::new());
    let probe = Probe::with(&log, |transport, _| transport.write(vec![b'w'; 5000]));
    let (mut handler, _recorder) = connected(&clock, |h| h.write_limit(1000), probe);

    // The shaper first, then the transport; the shaper ends first.
    handler.data_received(Bytes::from_static(b"a")); // shaped until 5 s
    handler.pause_writing(); // the buffer went over its high watermark
    clock.advance(secs(5));
    assert_eq!(log.take(), ["made", "data 1", "pause"], "still paused");
    handler.resume_writing();
    assert_eq!(log.take(), ["resume"]);

    // The transport first, then the shaper; the transport ends first.
    handler.pause_writing();
    handler.data_received(Bytes::from_static(b"b")); // shaped until 10 s
    handler.resume_writing();
    assert_eq!(log.take(), ["pause", "data 1"], "the shaper still holds");
    clock.advance(secs(5));
    assert_eq!(log.take(), ["resume"]);

    // The transport's own pauses pass straight through.
    handler.pause_writing();
    handler.pause_writing();
    handler.resume_writing();
    assert_eq!(log.take(), ["pause", "resume"]);
}

#[test]
fn a_resume_due_inside_a_callback_is_told_when_the_callback_returns() {
    let (log, clock) = (Log::default(), Clock::new());
    let inner_clock = clock.clone();
    let inner_log = log.clone();
    let probe = Probe::with(&log, move |transport, data| {
        if data.as_ref() == b"write" {
            transport.write(vec![b'w'; 2000]);
        } else {
            inner_clock.advance(secs(2)); // the hold ends in here
            inner_log.push("advanced");
        }
    });
    let (mut handler, _recorder) = connected(&clock, |h| h.write_limit(1000), probe);
    handler.data_received(Bytes::from_static(b"write"));
    handler.data_received(Bytes::from_static(b"wait"));
    assert_eq!(
        log.events(),
        ["made", "data 5", "pause", "data 4", "advanced", "resume"]
    );
}

/// Writes 1000 bytes at a time, the next one when the last is sent.
struct Pull {
    log: Log,
    transport: Option<Transport>,
}

impl Protocol for Pull {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        transport.write(vec![b'p'; 1000]);
    }
    fn data_received(&mut self, _: Bytes) {}
    fn write_complete(&mut self) {
        self.log.push("complete");
        self.transport.as_ref().unwrap().write(vec![b'p'; 1000]);
    }
    fn pause_writing(&mut self) {
        self.log.push("pause");
    }
    fn resume_writing(&mut self) {
        self.log.push("resume");
    }
}

#[test]
fn a_pull_producer_gets_write_complete_when_the_hold_ends() {
    let (log, clock) = (Log::default(), Clock::new());
    let pull = Pull {
        log: log.clone(),
        transport: None,
    };
    let mut handler = on_clock(TrafficShapingHandler::new(pull), &clock).write_limit(1000);
    let recorder = StringTransport::new();
    handler.connection_made(&recorder.transport());
    // StringTransport sends at once; the reactor would say so.
    handler.write_complete();
    assert_eq!(log.take(), ["pause"], "held back for 1 s");
    assert_eq!(recorder.value().len(), 1000);
    clock.advance(ms(990));
    assert_eq!(recorder.value().len(), 1000);
    clock.advance(ms(10));
    assert_eq!(log.take(), ["resume", "complete", "pause"]);
    assert_eq!(recorder.value().len(), 2000);
    handler.write_complete();
    clock.advance(secs(1));
    assert_eq!(recorder.value().len(), 3000, "1000 B/s");

    // A hold that ends with bytes still buffered does not pass on the
    // write_complete held back: the flush that empties the buffer will.
    handler.write_complete(); // held until 3 s
    recorder.set_write_buffer_size(10);
    clock.advance(secs(1));
    assert_eq!(log.take(), ["resume", "complete", "pause", "resume"]);
    assert_eq!(recorder.value().len(), 3000);
    recorder.set_write_buffer_size(0);
    handler.write_complete(); // not held now
    assert_eq!(log.take(), ["complete", "pause"]);
    assert_eq!(recorder.value().len(), 4000);
}

#[test]
fn events_pass_through() {
    struct Listener(Log);
    impl Protocol for Listener {
        fn data_received(&mut self, _: Bytes) {}
        fn event_received(&mut self, event: Event) {
            self.0
                .push(format!("event {}", event.downcast_ref::<u32>().unwrap()));
        }
    }
    let (log, clock) = (Log::default(), Clock::new());
    let mut handler = on_clock(TrafficShapingHandler::new(Listener(log.clone())), &clock);
    handler.connection_made(&StringTransport::new().transport());
    handler.event_received(Event::new(7u32));
    assert_eq!(log.events(), ["event 7"]);
}

// ---------------------------------------------------------------------------
// No limits, statistics, the end

#[test]
fn limit_zero_is_unlimited() {
    let (log, clock) = (Log::default(), Clock::new());
    let probe = Probe::with(&log, |transport, _| transport.write(vec![b'w'; 1 << 20]));
    let (mut handler, recorder) = connected(&clock, |h| h.read_limit(0).write_limit(0), probe);
    handler.data_received(bytes(1 << 20));
    assert!(!recorder.reading_paused());
    assert_eq!(log.events(), ["made", "data 1048576"]);
    let counter = handler.counter();
    assert_eq!(counter.cumulative_read_bytes(), 1 << 20);
    assert_eq!(counter.cumulative_written_bytes(), 1 << 20);
    // Only the statistics timer runs.
    assert_eq!(clock.delayed_calls().len(), 1);
}

#[test]
fn the_counter_closes_an_interval_every_check() {
    let (log, clock) = (Log::default(), Clock::new());
    let probe = Probe::with(&log, |transport, data| transport.write(data.clone()));
    let (mut handler, _recorder) = connected(&clock, |h| h, probe);
    assert_eq!(handler.counter().check_interval(), secs(1));

    clock.advance(ms(500));
    handler.data_received(bytes(500)); // echoed
    let counter = handler.counter();
    assert_eq!(counter.current_read_bytes(), 500);
    assert_eq!(counter.current_written_bytes(), 500);
    assert_eq!(counter.last_read_bytes(), 0);

    clock.advance(ms(500)); // the check at 1 s
    let counter = handler.counter();
    assert_eq!(counter.current_read_bytes(), 0);
    assert_eq!(counter.last_read_bytes(), 500);
    assert_eq!(counter.last_written_bytes(), 500);
    assert_eq!(counter.last_read_throughput(), 500);
    assert_eq!(counter.last_write_throughput(), 500);
    assert_eq!(
        counter.real_write_throughput(),
        500,
        "StringTransport sends at once"
    );

    handler.data_received(bytes(2000));
    clock.advance(secs(1)); // 2 s
    let counter = handler.counter();
    assert_eq!(counter.last_read_bytes(), 2000);
    assert_eq!(counter.last_read_throughput(), 2000);
    assert_eq!(counter.cumulative_read_bytes(), 2500);
    assert_eq!(counter.cumulative_written_bytes(), 2500);
    clock.advance(secs(1)); // 3 s: a quiet interval
    assert_eq!(handler.counter().last_read_bytes(), 0);
    assert_eq!(handler.counter().last_read_throughput(), 0);
    assert_eq!(handler.counter().cumulative_read_bytes(), 2500);
    assert_eq!(handler.handle().counter(), handler.counter());

    // connection_lost closes the last, partial, interval.
    handler.data_received(bytes(100));
    clock.advance(ms(250));
    handler.connection_lost(&Reason::Done);
    let counter = handler.counter();
    assert_eq!(counter.last_read_bytes(), 100);
    assert_eq!(counter.last_read_throughput(), 400);
}

#[test]
fn with_no_check_interval_the_limit_holds_on_average_since_the_start() {
    let (log, clock) = (Log::default(), Clock::new());
    let (mut handler, recorder) = connected(
        &clock,
        |h| h.read_limit(1000).check_interval(Duration::ZERO),
        Probe::new(&log),
    );
    assert!(clock.delayed_calls().is_empty(), "no statistics timer");
    clock.advance(secs(5));
    handler.data_received(bytes(5000)); // 5 s worth, over 5 s
    assert!(!recorder.reading_paused());
    handler.data_received(bytes(1000)); // 6 s worth, over 5 s
    assert!(recorder.reading_paused());
    clock.advance(secs(1));
    assert!(!recorder.reading_paused());
    assert_eq!(handler.counter().current_read_bytes(), 6000);
}

#[test]
fn connection_lost_stops_every_timer() {
    let (log, clock) = (Log::default(), Clock::new());
    let probe = Probe::with(&log, |transport, _| transport.write(vec![b'w'; 5000]));
    let (mut handler, recorder) =
        connected(&clock, |h| h.read_limit(1000).write_limit(1000), probe);
    handler.data_received(bytes(5000)); // reads and writes held
    assert!(recorder.reading_paused());
    assert_eq!(clock.delayed_calls().len(), 3);
    handler.connection_lost(&Reason::Done);
    assert!(clock.delayed_calls().is_empty());
    clock.advance(secs(60));
    assert_eq!(log.events(), ["made", "data 5000", "pause", "lost: done"]);
    assert!(recorder.reading_paused(), "nothing resumed after the end");
    assert!(!handler.reads_shaped() && !handler.writes_shaped());
}

#[test]
fn the_timers_do_not_keep_the_handler_alive() {
    let (log, clock) = (Log::default(), Clock::new());
    let (mut handler, _recorder) = connected(&clock, |h| h.read_limit(1000), Probe::new(&log));
    handler.data_received(bytes(5000));
    drop(handler);
    clock.advance(secs(60)); // the timers find nothing to run
    assert_eq!(log.events(), ["made", "data 5000"]);
}

#[test]
fn it_stacks_under_a_logging_handler() {
    let (log, clock) = (Log::default(), Clock::new());
    let mut stack = LoggingHandler::new(
        on_clock(TrafficShapingHandler::new(Probe::new(&log)), &clock).read_limit(1000),
    );
    let recorder = StringTransport::new();
    stack.connection_made(&recorder.transport());
    stack.data_received(bytes(2000));
    assert!(recorder.reading_paused());
    clock.advance(secs(2));
    assert!(!recorder.reading_paused());
    assert!(format!("{:?}", stack.inner()).contains("read_limit: Some(1000)"));
}

// ---------------------------------------------------------------------------
// Loopback

/// Counts an upload; once it has all of it, says so and hangs up.
struct Upload {
    size: usize,
    received: usize,
    started: Option<Instant>,
    transport: Option<Transport>,
    took: Rc<Cell<Option<Duration>>>,
}

impl Protocol for Upload {
    fn connection_made(&mut self, transport: &Transport) {
        self.started = Some(twill::reactor().now());
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.received += data.len();
        if self.received >= self.size {
            let started = self.started.unwrap();
            self.took.set(Some(twill::reactor().now() - started));
            let transport = self.transport.as_ref().unwrap();
            transport.write("got it");
            transport.lose_connection();
        }
    }
    fn connection_lost(&mut self, _: &Reason) {
        twill::stop();
    }
}

#[test]
fn loopback_a_read_limit_slows_an_upload() {
    // At most 64 KiB come in one read, so the last read can start no
    // sooner than (128 - 64) KiB / 32 KiB/s = 2 s in.
    const LIMIT: u64 = 32 * 1024;
    const SIZE: usize = 128 * 1024;
    let reactor = Reactor::new().unwrap();
    let took = Rc::new(Cell::new(None));
    let server_took = took.clone();
    let factory = move |_peer| {
        TrafficShapingHandler::new(Upload {
            size: SIZE,
            received: 0,
            started: None,
            transport: None,
            took: server_took.clone(),
        })
        .read_limit(LIMIT)
    };
    let reply = serve(&reactor, factory, |addr, _| {
        let mut stream = connect(addr);
        stream.write_all(&vec![b'u'; SIZE]).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).map(|_| reply)
    });
    assert_eq!(reply.unwrap(), b"got it");
    let took = took.get().expect("the whole upload arrived");
    assert!(
        took >= ms(1500),
        "128 KiB at 32 KiB/s arrived in {took:?}: not slowed down"
    );
}

/// The shaper's timer calls `resume_writing` from outside the connection's
/// own guard: a panic there closes this connection with `Panicked`, as a
/// panic in any of its callbacks does, instead of only being logged by the
/// timer queue while the connection stays open.
#[test]
fn a_panic_in_resume_writing_from_the_shapers_timer_closes_the_connection() {
    struct Fragile;
    impl Protocol for Fragile {
        fn connection_made(&mut self, transport: &Transport) {
            transport.write(vec![b'w'; 5000]);
        }
        fn data_received(&mut self, _: Bytes) {}
        fn resume_writing(&mut self) {
            panic!("cannot resume");
        }
    }
    let clock = Clock::new();
    let mut handler = on_clock(TrafficShapingHandler::new(Fragile), &clock).write_limit(1000);
    let recorder = StringTransport::new();
    handler.connection_made(&recorder.transport());
    assert!(recorder.failure().is_none());
    clock.advance(secs(5));
    assert_eq!(
        recorder.failure().unwrap(),
        "resume_writing panicked: cannot resume"
    );
}
