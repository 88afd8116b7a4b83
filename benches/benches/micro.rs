//! Micro-benchmarks of twill: timers and frame decoders, each next to a
//! tokio/tokio-util baseline measured in the same run.
//!
//! Run it from the workspace root:
//!
//! ```text
//! cargo bench -p twill-bench --bench micro               # full run, ~15 s
//! cargo bench -p twill-bench --bench micro -- --smoke    # tiny sizes, 1 repetition, ~1 s
//! cargo bench -p twill-bench --bench micro -- --reps 7 --timers 2000000 --mib 128
//! cargo bench -p twill-bench --bench micro -- --only timers   # or --only decoders
//! ```
//!
//! # What it measures
//!
//! 1. **`call_later`** on a real twill `Reactor`. Schedule `--timers` calls
//!    (1,000,000 by default) with deterministic pseudo-random delays spread
//!    over 0–20 ms, keeping every `DelayedCall` in a `Vec`; cancel every other
//!    one; then `run` the reactor until the rest have fired (each call bumps a
//!    counter, the last one stops the reactor). Checked: exactly half (rounded
//!    up) fired, every kept call reports `called()`, every cancelled one
//!    `cancelled()`. Each phase is timed on the wall clock and in process CPU
//!    time (`CLOCK_PROCESS_CPUTIME_ID`); the table gives the median of the
//!    repetitions. Between the cancel and run phases the benchmark sleeps,
//!    untimed, until every call is due (20 ms + 2 ms after scheduling
//!    ended), so the run phase is work, not waiting for the clock: its CPU
//!    time should match its wall time, and the `wait at run start` column
//!    (how far in the future the latest call that fired was due when `run`
//!    began) should be 0.
//!    Target: total (schedule + cancel + run) < 0.5 s.
//!
//!    The baseline is tokio-util's `DelayQueue` (a hierarchical timer wheel)
//!    on a current-thread tokio runtime with the real clock: insert, remove
//!    every other key, drain the rest with `poll_expired`, calling each
//!    value (the same boxed closure twill stores).
//!
//!    Memory per pending timer comes from a counting global allocator
//!    (wrapping `System`) switched on only around the scheduling phase of
//!    separate, untimed runs: bytes requested from the allocator that are
//!    still live after scheduling, divided by the number of timers. Nothing
//!    is subtracted. Three twill variants tell the parts apart: with the
//!    `DelayedCall` handles kept in a `Vec` (the workload above), with the
//!    handles dropped at once (a dropped handle does not cancel: the call
//!    stays scheduled and fires; both of these runs are checked), and with
//!    handles dropped and a closure that captures nothing (so the closure
//!    box, which twill allocates for any capturing closure, is not counted
//!    either): that last row is what twill itself spends per timer. The
//!    `malloc footprint` column adds what glibc's malloc really reserves per
//!    allocation (`malloc_usable_size` + its 8-byte chunk header). Target:
//!    < 100 bytes per pending timer.
//!
//! 2. **Decoders**, in MiB/s of input: twill-protocols'
//!    `LineBasedFrameDecoder` (max 8192) over `--mib` MiB (64 by default) of
//!    lines of 32–80 bytes with `\n`, and `LengthFieldBasedFrameDecoder`
//!    (4-byte big-endian length, header stripped) over frames with payloads
//!    of 16 B, 256 B and 4 KiB. Input is fed in 64 KiB chunks as socket reads
//!    arrive, the way twill-protocols' `Framed` drives a decoder: append the
//!    chunk to a `BytesMut` and call `decode` until it returns `None`. Every
//!    decoder runs in the same driver; frames and their total length are
//!    counted and checked. Baselines: for lines, tokio-util's
//!    `AnyDelimiterCodec` with `\n` (the same work: bytes out, byte-by-byte
//!    search, no UTF-8 check) and `LinesCodec` (searches with `memchr` but
//!    checks UTF-8 and copies each line into a `String`); for length fields,
//!    `LengthDelimitedCodec` (4-byte big-endian, header stripped). The
//!    implementations alternate within each repetition; `twill / X` is the
//!    median of the per-repetition ratios of throughput (above 1 means twill
//!    is faster).
//!
//! # Reading it
//!
//! Each table row names what ran; baselines are marked. Figures are medians
//! over `--reps` repetitions (5 by default). The machine this was written on
//! is a shared 2-vCPU VM whose speed drifts: compare rows of one run, not
//! runs of different days. The exit status is 1 when any check failed (a
//! wrong count, a decode error), 2 for a usage error; missing a target is
//! reported in the output, not in the exit status.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Debug;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_util::codec::Decoder as TokioDecoder;
use twill::Reactor;
use twill_bench::report::{command_output, print_run_header};
use twill_protocols::codec::{
    Decoder as TwillDecoder, LengthFieldBasedFrameDecoder, LineBasedFrameDecoder,
};

// ---------------------------------------------------------------------------
// Counting allocator

/// Forwards to `System`; while `COUNTING` is on, keeps the net bytes
/// requested, the net bytes malloc made usable, and the net number of
/// allocations made since the counters were reset.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicIsize = AtomicIsize::new(0);
static NET_USABLE: AtomicIsize = AtomicIsize::new(0);
static NET_ALLOCS: AtomicIsize = AtomicIsize::new(0);

fn usable(ptr: *mut u8) -> isize {
    // SAFETY: `ptr` is a live block from `System`, which is glibc's malloc
    // (or posix_memalign) on Linux.
    unsafe { libc::malloc_usable_size(ptr.cast()) as isize }
}

fn note_alloc(ptr: *mut u8, size: usize) {
    NET_BYTES.fetch_add(size as isize, Relaxed);
    NET_USABLE.fetch_add(usable(ptr), Relaxed);
    NET_ALLOCS.fetch_add(1, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counting only
// reads the blocks' sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() && COUNTING.load(Relaxed) {
            note_alloc(ptr, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() && COUNTING.load(Relaxed) {
            note_alloc(ptr, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Relaxed) {
            NET_BYTES.fetch_sub(layout.size() as isize, Relaxed);
            NET_USABLE.fetch_sub(usable(ptr), Relaxed);
            NET_ALLOCS.fetch_sub(1, Relaxed);
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let counting = COUNTING.load(Relaxed);
        let old_usable = if counting { usable(ptr) } else { 0 };
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() && counting {
            NET_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
            NET_USABLE.fetch_add(usable(new) - old_usable, Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Net allocation figures over a window of the program.
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    bytes: isize,
    usable: isize,
    allocs: isize,
}

impl Mem {
    fn start() {
        NET_BYTES.store(0, Relaxed);
        NET_USABLE.store(0, Relaxed);
        NET_ALLOCS.store(0, Relaxed);
        COUNTING.store(true, Relaxed);
    }

    fn stop() -> Mem {
        COUNTING.store(false, Relaxed);
        Mem {
            bytes: NET_BYTES.load(Relaxed),
            usable: NET_USABLE.load(Relaxed),
            allocs: NET_ALLOCS.load(Relaxed),
        }
    }

    /// glibc's chunk: the usable size plus its 8-byte size header.
    fn footprint(&self) -> isize {
        self.usable + 8 * self.allocs
    }
}

// ---------------------------------------------------------------------------
// Clocks

fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall and process CPU time of one phase.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    wall: Duration,
    cpu: Duration,
}

struct Meter {
    wall: Instant,
    cpu: Duration,
}

impl Meter {
    fn start() -> Meter {
        Meter {
            cpu: cpu_time(),
            wall: Instant::now(),
        }
    }

    fn stop(self) -> Span {
        let wall = self.wall.elapsed();
        Span {
            wall,
            cpu: cpu_time().saturating_sub(self.cpu),
        }
    }
}

impl std::ops::Add for Span {
    type Output = Span;
    fn add(self, other: Span) -> Span {
        Span {
            wall: self.wall + other.wall,
            cpu: self.cpu + other.cpu,
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// xorshift64*: deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const DELAY_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
/// Timer delays are spread over 0..=MAX_DELAY_NANOS.
const MAX_DELAY_NANOS: u64 = 20_000_000;
/// From the end of scheduling, after this long every call is due (tokio
/// rounds deadlines up to the next millisecond).
const ALL_DUE_AFTER: Duration = Duration::from_millis(20 + 2);

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty());
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn median_by<T>(items: &[T], f: impl Fn(&T) -> f64) -> f64 {
    let mut values: Vec<f64> = items.iter().map(f).collect();
    median(&mut values)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Thousands separators: 1000000 -> 1,000,000.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// Timers

/// What fires: counts, and stops the reactor at the expected count.
struct Counter {
    fired: Cell<usize>,
    expect: usize,
    stop_reactor: bool,
}

impl Counter {
    fn hit(&self) {
        let fired = self.fired.get() + 1;
        self.fired.set(fired);
        if fired == self.expect && self.stop_reactor {
            twill::stop();
        }
    }
}

thread_local! {
    /// For the closure that captures nothing: fired count and target.
    static BARE_FIRED: Cell<usize> = const { Cell::new(0) };
    static BARE_EXPECT: Cell<usize> = const { Cell::new(0) };
}

fn bare_hit() {
    let fired = BARE_FIRED.with(|f| {
        let n = f.get() + 1;
        f.set(n);
        n
    });
    if fired == BARE_EXPECT.with(Cell::get) {
        twill::stop();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Handles kept, every other one cancelled; the closure captures an Rc.
    Workload,
    /// Handles dropped right away; nothing cancelled; closure captures an Rc.
    NoHandles,
    /// Handles dropped; the closure captures nothing.
    NoHandlesBare,
}

#[derive(Debug, Clone, Copy, Default)]
struct TimerRun {
    schedule: Span,
    cancel: Span,
    run: Span,
    /// How far in the future the latest call that fired was due when `run`
    /// started (twill only).
    wait_at_start: Option<Duration>,
    mem: Mem,
}

impl TimerRun {
    fn total(&self) -> Span {
        self.schedule + self.cancel + self.run
    }
}

fn twill_timers(n: usize, variant: Variant, count_mem: bool) -> Result<TimerRun, String> {
    let reactor = Reactor::new().map_err(|e| format!("Reactor::new: {e}"))?;
    let keep = variant == Variant::Workload;
    let expect = if keep { n.div_ceil(2) } else { n };
    let counter = Rc::new(Counter {
        fired: Cell::new(0),
        expect,
        stop_reactor: true,
    });
    BARE_FIRED.with(|f| f.set(0));
    BARE_EXPECT.with(|e| e.set(expect));
    // A watchdog, so a lost call fails the run instead of hanging it.
    let timed_out = Rc::new(Cell::new(false));
    let flag = timed_out.clone();
    let watchdog = reactor.call_later(Duration::from_secs(60), move || {
        flag.set(true);
        twill::stop();
    });
    let mut rng = Rng(DELAY_SEED);
    let mut out = TimerRun::default();

    if count_mem {
        Mem::start();
    }
    let meter = Meter::start();
    let mut handles = Vec::with_capacity(if keep { n } else { 0 });
    for _ in 0..n {
        let delay = Duration::from_nanos(rng.below(MAX_DELAY_NANOS + 1));
        match variant {
            Variant::Workload => {
                let c = counter.clone();
                handles.push(reactor.call_later(delay, move || c.hit()));
            }
            Variant::NoHandles => {
                let c = counter.clone();
                drop(reactor.call_later(delay, move || c.hit()));
            }
            Variant::NoHandlesBare => {
                drop(reactor.call_later(delay, bare_hit));
            }
        }
    }
    out.schedule = meter.stop();
    if count_mem {
        out.mem = Mem::stop();
    }
    let all_due = Instant::now() + ALL_DUE_AFTER;

    let meter = Meter::start();
    let mut cancel_errors = 0usize;
    for handle in handles.iter().skip(1).step_by(2) {
        if handle.cancel().is_err() {
            cancel_errors += 1;
        }
    }
    out.cancel = meter.stop();

    // Untimed: let every call come due, so the run phase is all work.
    sleep_until(all_due);
    let run_start = Instant::now();
    let meter = Meter::start();
    reactor.run().map_err(|e| format!("Reactor::run: {e}"))?;
    out.run = meter.stop();

    if timed_out.get() {
        return Err(format!(
            "twill {variant:?}: the watchdog fired: calls were lost"
        ));
    }
    let _ = watchdog.cancel();
    if cancel_errors > 0 {
        return Err(format!(
            "twill {variant:?}: {cancel_errors} cancel() calls failed"
        ));
    }
    let fired = match variant {
        Variant::NoHandlesBare => BARE_FIRED.with(Cell::get),
        _ => counter.fired.get(),
    };
    if fired != expect {
        return Err(format!(
            "twill {variant:?}: {fired} calls fired, expected {expect}"
        ));
    }
    let mut latest: Option<Instant> = None;
    for (i, handle) in handles.iter().enumerate() {
        let ok = if i % 2 == 0 {
            handle.called()
        } else {
            handle.cancelled() && !handle.called()
        };
        if !ok {
            return Err(format!(
                "twill: call {i} is in the wrong state after the run: {handle:?}"
            ));
        }
        if i % 2 == 0 {
            let due = handle.time();
            latest = Some(latest.map_or(due, |l| l.max(due)));
        }
    }
    if keep {
        out.wait_at_start = latest.map(|l| l.saturating_duration_since(run_start));
    }
    Ok(out)
}

fn tokio_timers(n: usize, count_mem: bool) -> Result<TimerRun, String> {
    use tokio_util::time::DelayQueue;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async move {
        let expect = n.div_ceil(2);
        let counter = Rc::new(Counter {
            fired: Cell::new(0),
            expect,
            stop_reactor: false,
        });
        let mut queue: DelayQueue<Box<dyn FnOnce()>> = DelayQueue::new();
        let mut rng = Rng(DELAY_SEED);
        let mut out = TimerRun::default();

        if count_mem {
            Mem::start();
        }
        let meter = Meter::start();
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let delay = Duration::from_nanos(rng.below(MAX_DELAY_NANOS + 1));
            let c = counter.clone();
            keys.push(queue.insert(Box::new(move || c.hit()), delay));
        }
        out.schedule = meter.stop();
        if count_mem {
            out.mem = Mem::stop();
        }
        let all_due = Instant::now() + ALL_DUE_AFTER;

        let meter = Meter::start();
        for key in keys.iter().skip(1).step_by(2) {
            drop(queue.remove(key));
        }
        out.cancel = meter.stop();

        // Untimed, as for twill (a blocking sleep is fine here: nothing
        // else runs on this runtime).
        sleep_until(all_due);
        let meter = Meter::start();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut drained = 0u64;
        while let Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)).await {
            (expired.into_inner())();
            drained += 1;
            if drained % 4096 == 0 && Instant::now() > deadline {
                return Err("tokio DelayQueue: still draining after 60 s".to_string());
            }
        }
        out.run = meter.stop();

        let fired = counter.fired.get();
        if fired != expect {
            return Err(format!(
                "tokio DelayQueue: {fired} calls fired, expected {expect}"
            ));
        }
        Ok(out)
    })
}

fn timers_section(cfg: &Config) -> Result<(), String> {
    let n = cfg.timers;
    let half = n.div_ceil(2);
    println!(
        "## call_later: {} timers, delays 0–20 ms, every other one cancelled\n",
        grouped(n)
    );

    let mut twill_runs = Vec::new();
    let mut tokio_runs = Vec::new();
    for rep in 0..cfg.reps {
        // Alternate which goes first, so a drift of the machine hits both.
        if rep % 2 == 0 {
            twill_runs.push(twill_timers(n, Variant::Workload, false)?);
            tokio_runs.push(tokio_timers(n, false)?);
        } else {
            tokio_runs.push(tokio_timers(n, false)?);
            twill_runs.push(twill_timers(n, Variant::Workload, false)?);
        }
    }

    println!(
        "| implementation | schedule {} ms | cancel {} ms | run ({} fire) ms | total ms | total CPU ms | run CPU ms | wait at run start ms | ns per timer (total / n) |",
        grouped(n),
        grouped(n / 2),
        grouped(half)
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, runs) in [
        ("twill `Reactor::call_later`", &twill_runs),
        (
            "baseline: tokio-util `DelayQueue` (real clock)",
            &tokio_runs,
        ),
    ] {
        let total = median_by(runs, |r| ms(r.total().wall));
        let wait = if runs.iter().all(|r| r.wait_at_start.is_some()) {
            format!(
                "{:.1}",
                median_by(runs, |r| ms(r.wait_at_start.unwrap_or_default()))
            )
        } else {
            "n/a".to_string()
        };
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {wait} | {:.0} |",
            median_by(runs, |r| ms(r.schedule.wall)),
            median_by(runs, |r| ms(r.cancel.wall)),
            median_by(runs, |r| ms(r.run.wall)),
            total,
            median_by(runs, |r| ms(r.total().cpu)),
            median_by(runs, |r| ms(r.run.cpu)),
            total * 1e6 / n as f64,
        );
    }
    let ratios: Vec<f64> = twill_runs
        .iter()
        .zip(&tokio_runs)
        .map(|(t, k)| t.total().wall.as_secs_f64() / k.total().wall.as_secs_f64())
        .collect();
    let mut ratios = ratios;
    let ratio = median(&mut ratios);
    let twill_total = median_by(&twill_runs, |r| r.total().wall.as_secs_f64());
    println!();
    println!(
        "Per operation (twill, medians): schedule {:.0} ns, cancel {:.0} ns, fire {:.0} ns. \
         Total time twill / tokio-util = {ratio:.2} (median of per-repetition ratios; below 1 means twill is faster).",
        median_by(&twill_runs, |r| r.schedule.wall.as_secs_f64()) * 1e9 / n as f64,
        median_by(&twill_runs, |r| r.cancel.wall.as_secs_f64()) * 1e9 / (n / 2).max(1) as f64,
        median_by(&twill_runs, |r| r.run.wall.as_secs_f64()) * 1e9 / half.max(1) as f64,
    );
    let scaled = if n == 1_000_000 {
        String::new()
    } else {
        format!(" (for {} timers; the target is for 1,000,000)", grouped(n))
    };
    println!(
        "\n**Target: total < 0.5 s for 1,000,000 timers — twill {:.3} s{scaled}: {}.**\n",
        twill_total,
        if twill_total < 0.5 { "met" } else { "MISSED" }
    );

    // Memory: separate, untimed runs with the counting allocator on during
    // scheduling.
    let workload = twill_timers(n, Variant::Workload, true)?;
    let no_handles = twill_timers(n, Variant::NoHandles, true)?;
    let bare = twill_timers(n, Variant::NoHandlesBare, true)?;
    let tokio = tokio_timers(n, true)?;
    println!(
        "### Memory per pending timer (live bytes after scheduling − before, ÷ {})\n",
        grouped(n)
    );
    println!("| what is counted | bytes requested / timer | allocations / timer | malloc footprint / timer |");
    println!("|---|---:|---:|---:|");
    let per = |m: &Mem| {
        (
            m.bytes as f64 / n as f64,
            m.allocs as f64 / n as f64,
            m.footprint() as f64 / n as f64,
        )
    };
    for (name, run) in [
        ("twill: heap + entries + closure boxes (8 B each) + the `Vec<DelayedCall>` of handles (the workload above)", &workload),
        ("twill: heap + entries + closure boxes (handles dropped: the calls still fire)", &no_handles),
        ("twill: heap + entries only (handles dropped, closure captures nothing: twill's own cost)", &bare),
        ("baseline: tokio-util `DelayQueue` slab + wheel + closure boxes + the `Vec<Key>`", &tokio),
    ] {
        let (bytes, allocs, footprint) = per(&run.mem);
        println!("| {name} | {bytes:.1} | {allocs:.2} | {footprint:.1} |");
    }
    let own = per(&bare.mem).0;
    let with_handles = per(&workload.mem).0;
    println!(
        "\n**Target: < 100 bytes per pending timer — twill's own {own:.1} B ({}), {with_handles:.1} B with an 8-byte closure and the handles kept ({}).**\n",
        if own < 100.0 { "met" } else { "MISSED" },
        if with_handles < 100.0 { "met" } else { "MISSED" },
    );
    println!(
        "\"bytes requested\" is what the program asked the allocator for; the heap's `Vec` counts with its whole capacity \
         (it grows by doubling). \"malloc footprint\" is what glibc reserved for those blocks (usable size + 8-byte header), \
         not counted against the target.\n"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Decoders

const CHUNK: usize = 64 * 1024;
const LINE_MAX: usize = 8192;
const LF_MAX: usize = 1 << 20;

/// Totals a decoding pass produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decoded {
    frames: u64,
    bytes: u64,
}

/// Feeds `input` in 64 KiB chunks into a cumulation buffer and calls
/// `decode` until it returns `None`, as `Framed::data_received` does.
fn drive<T, E: Debug>(
    input: &[u8],
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
    len: impl Fn(&T) -> usize,
) -> Result<Decoded, String> {
    let mut buffer = BytesMut::new();
    let mut out = Decoded {
        frames: 0,
        bytes: 0,
    };
    for chunk in input.chunks(CHUNK) {
        buffer.extend_from_slice(chunk);
        loop {
            let before = buffer.len();
            match decode(&mut buffer) {
                Ok(Some(_)) if buffer.len() == before => {
                    return Err("a decoder produced a frame without consuming input".into());
                }
                Ok(Some(frame)) => {
                    out.frames += 1;
                    out.bytes += len(&frame) as u64;
                }
                Ok(None) if buffer.len() < before && !buffer.is_empty() => {}
                Ok(None) => break,
                Err(e) => return Err(format!("decode error: {e:?}")),
            }
        }
    }
    if !buffer.is_empty() {
        return Err(format!("{} bytes left undecoded", buffer.len()));
    }
    Ok(out)
}

/// Lines of 32–80 bytes including their `\n`, printable ASCII.
fn make_lines(target: usize) -> (Vec<u8>, Decoded) {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut data = Vec::with_capacity(target + 128);
    let mut expect = Decoded {
        frames: 0,
        bytes: 0,
    };
    while data.len() < target {
        let len = 31 + rng.below(49) as usize; // 31..=79 bytes before '\n'
        let word = rng.next();
        for i in 0..len {
            data.push(b' ' + ((word >> (i % 58)) as u8 % 94) + 1);
        }
        data.push(b'\n');
        expect.frames += 1;
        expect.bytes += len as u64;
    }
    (data, expect)
}

/// Frames of a 4-byte big-endian length and `payload` bytes.
fn make_length_prefixed(target: usize, payload: usize) -> (Vec<u8>, Decoded) {
    let mut data = Vec::with_capacity(target + payload + 4);
    let mut expect = Decoded {
        frames: 0,
        bytes: 0,
    };
    let mut i = 0u64;
    while data.len() < target {
        data.extend_from_slice(&(payload as u32).to_be_bytes());
        data.extend((0..payload).map(|j| (i as usize + j) as u8));
        expect.frames += 1;
        expect.bytes += payload as u64;
        i += 1;
    }
    (data, expect)
}

type Runner<'a> = Box<dyn Fn(&[u8]) -> Result<Decoded, String> + 'a>;

struct Contender<'a> {
    name: &'a str,
    run: Runner<'a>,
}

fn decoder_workload(
    cfg: &Config,
    title: &str,
    input: &[u8],
    expect: Decoded,
    contenders: &[Contender<'_>],
) -> Result<(), String> {
    // times[c][rep] in seconds
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for rep in 0..cfg.reps {
        for k in 0..contenders.len() {
            // Rotate the order every repetition.
            let c = (k + rep) % contenders.len();
            let start = Instant::now();
            let got = (contenders[c].run)(input)?;
            let elapsed = start.elapsed().as_secs_f64();
            if got != expect {
                return Err(format!(
                    "{title}, {}: decoded {} frames / {} bytes, expected {} / {}",
                    contenders[c].name, got.frames, got.bytes, expect.frames, expect.bytes
                ));
            }
            times[c].push(elapsed);
        }
    }
    let mib = input.len() as f64 / (1024.0 * 1024.0);
    for (c, contender) in contenders.iter().enumerate() {
        let mut t = times[c].clone();
        let secs = median(&mut t);
        let ratio = if c == 0 {
            "1.00".to_string()
        } else {
            let mut r: Vec<f64> = times[0]
                .iter()
                .zip(&times[c])
                .map(|(twill, other)| other / twill)
                .collect();
            format!("{:.2}", median(&mut r))
        };
        println!(
            "| {title} | {} | {:.0} | {:.1} | {ratio} |",
            contender.name,
            mib / secs,
            secs * 1e9 / expect.frames as f64,
        );
    }
    Ok(())
}

fn decoders_section(cfg: &Config) -> Result<(), String> {
    let target = cfg.mib * 1024 * 1024;
    println!(
        "## Decoders: {} MiB of input fed in 64 KiB chunks, `decode` until `None` (as `Framed`)\n",
        cfg.mib
    );
    println!("| input | decoder | MiB/s | ns per frame | twill / this (throughput) |");
    println!("|---|---|---:|---:|---:|");

    let (lines, expect) = make_lines(target);
    let title = format!("lines 32–80 B ({} lines)", grouped(expect.frames as usize));
    let contenders = [
        Contender {
            name: "twill `LineBasedFrameDecoder::new(8192)`",
            run: Box::new(|input| {
                let mut d = LineBasedFrameDecoder::new(LINE_MAX);
                drive(input, |b| d.decode(b), |f| f.len())
            }),
        },
        Contender {
            name: "baseline: tokio-util `AnyDelimiterCodec` (`\\n`, max 8192; bytes out)",
            run: Box::new(|input| {
                let mut d = tokio_util::codec::AnyDelimiterCodec::new_with_max_length(
                    b"\n".to_vec(),
                    b"\n".to_vec(),
                    LINE_MAX,
                );
                drive(input, |b| d.decode(b), |f| f.len())
            }),
        },
        Contender {
            name: "baseline: tokio-util `LinesCodec` (max 8192; memchr, UTF-8 check, `String` out)",
            run: Box::new(|input| {
                let mut d = tokio_util::codec::LinesCodec::new_with_max_length(LINE_MAX);
                drive(input, |b| d.decode(b), |f| f.len())
            }),
        },
    ];
    decoder_workload(cfg, &title, &lines, expect, &contenders)?;
    drop(lines);

    for payload in [16usize, 256, 4096] {
        let (input, expect) = make_length_prefixed(target, payload);
        let title = format!(
            "length field, {payload} B payloads ({} frames)",
            grouped(expect.frames as usize)
        );
        let contenders = [
            Contender {
                name: "twill `LengthFieldBasedFrameDecoder` (4-byte BE, strip 4)",
                run: Box::new(|input| {
                    let mut d = LengthFieldBasedFrameDecoder::new(LF_MAX, 0, 4, 0, 4)
                        .map_err(|e| e.to_string())?;
                    drive(input, |b| d.decode(b), |f| f.len())
                }),
            },
            Contender {
                name: "baseline: tokio-util `LengthDelimitedCodec` (4-byte BE, strip 4)",
                run: Box::new(|input| {
                    let mut d = tokio_util::codec::LengthDelimitedCodec::builder()
                        .length_field_length(4)
                        .big_endian()
                        .max_frame_length(LF_MAX)
                        .new_codec();
                    drive(input, |b| d.decode(b), |f| f.len())
                }),
            },
        ];
        decoder_workload(cfg, &title, &input, expect, &contenders)?;
    }
    println!(
        "\n`twill / this` is the median over repetitions of twill's throughput divided by that row's \
         (above 1: twill is faster). Every decoder runs in the same driver, which copies each chunk \
         into the cumulation buffer as `Framed` does.\n"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Main

struct Config {
    smoke: bool,
    /// `timers` or `decoders`: run one section only.
    only: Option<String>,
    reps: usize,
    timers: usize,
    mib: usize,
}

const USAGE: &str = "usage: cargo bench -p twill-bench --bench micro [-- [--smoke] [--reps N] [--timers N] [--mib N] [--only timers|decoders]]";

fn parse_args() -> Result<(Config, Vec<String>), String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut cfg = Config {
        smoke: false,
        only: None,
        reps: 5,
        timers: 1_000_000,
        mib: 64,
    };
    let mut explicit: Vec<(String, usize)> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        match key {
            "--smoke" => cfg.smoke = true,
            "--only" => {
                let value = inline
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| "--only needs a value".to_string())?;
                if value != "timers" && value != "decoders" {
                    return Err(format!("--only: timers or decoders, not {value}"));
                }
                cfg.only = Some(value);
            }
            "--reps" | "--timers" | "--mib" => {
                let value = inline
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{key} needs a value"))?;
                let value: usize = value
                    .parse()
                    .map_err(|_| format!("{key}: not a number: {value}"))?;
                if value == 0 {
                    return Err(format!("{key} must be positive"));
                }
                explicit.push((key.to_string(), value));
            }
            "--help" | "-h" => return Err(String::new()),
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    if cfg.smoke {
        cfg.reps = 1;
        cfg.timers = 10_000;
        cfg.mib = 1;
    }
    for (key, value) in explicit {
        match key.as_str() {
            "--reps" => cfg.reps = value,
            "--timers" => cfg.timers = value,
            _ => cfg.mib = value,
        }
    }
    Ok((cfg, args))
}

fn print_header(cfg: &Config, args: &[String]) {
    let mut command = "cargo bench -p twill-bench --bench micro".to_string();
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    print_run_header("twill micro-benchmarks", &command);
    if let Some(rustc) = command_output("rustc", &["--version"]) {
        println!("- {rustc}");
    }
    println!(
        "- {} repetition(s), medians; {} timers; {} MiB per decoder input{}\n",
        cfg.reps,
        grouped(cfg.timers),
        cfg.mib,
        if cfg.smoke { " (smoke)" } else { "" }
    );
}

fn main() -> ExitCode {
    let (cfg, args) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("micro: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    print_header(&cfg, &args);
    let started = Instant::now();
    let wants = |section: &str| cfg.only.as_deref().is_none_or(|only| only == section);
    let mut result = Ok(());
    if wants("timers") {
        result = timers_section(&cfg);
    }
    if result.is_ok() && wants("decoders") {
        result = decoders_section(&cfg);
    }
    match result {
        Ok(()) => {
            println!(
                "All checks passed ({:.1} s).",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("micro: CHECK FAILED: {message}");
            ExitCode::from(1)
        }
    }
}
