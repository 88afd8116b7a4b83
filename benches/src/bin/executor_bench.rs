//! Two ways to run `!Send` futures on a reactor's thread, side by side in
//! one run: `async_executor::LocalExecutor` against a hand-written queue of
//! `async_task` runnables (what twill's reactor does as of commit 02d77eb:
//! `src/reactor/remote.rs`, `schedule` and `run_tasks`).
//!
//! Both sides are driven as a reactor would drive them, one "turn" at a
//! time:
//!
//! - **LocalExecutor**: a long-lived ticker future,
//!   `ex.run(std::future::pending::<()>())`, kept in a
//!   `Pin<Box<dyn Future>>` and polled once per turn when its waker has
//!   fired. That waker only sets an `AtomicBool` (a reactor would also call
//!   its poller's `notify` when woken from another thread). Tasks are
//!   spawned with `ex.spawn(..).detach()`.
//! - **async-task queue**: `async_task::spawn_local(future, schedule)`,
//!   where `schedule` pushes the `Runnable` into a `Mutex<VecDeque>` and sets
//!   an `AtomicBool` (where twill calls `poller.notify()`); a turn that finds
//!   the flag set takes the whole queue out (`mem::take`, as twill does) and
//!   runs each runnable inside `catch_unwind`.
//!
//! Workloads, each checking its counts so nothing is optimised away:
//!
//! - `spawn`: spawn a future that completes at once (it bumps a counter),
//!   run one turn, check that it ran (tasks per second);
//! - `wake`: one long-lived task awaits a local one-shot flag (an
//!   `Rc`-shared `Cell<bool>` and `Cell<Option<Waker>>`) N times; each time
//!   the flag is set and its waker woken, one turn runs, and the task must
//!   have been re-polled and counted it (wakes per second);
//! - `cross`: one long-lived task is woken from another thread through its
//!   `Waker` N times. The task registers its waker and publishes which wake
//!   it waits for; the other thread waits for that, bumps a sequence number
//!   and wakes it; the reactor thread spins on its notification flag and runs
//!   a turn when it is set. A round trip is one wake travelling through the
//!   side's queue to the task and the task's next registration travelling
//!   back (round trips per second). Both threads spin, and both give up
//!   after `--timeout` seconds.
//!
//! Each workload and side is calibrated so that one repetition lasts about
//! `--rep-time` seconds, then timed `--reps` times on `Instant`, the two
//! sides alternated (which goes first alternates too). The table gives each
//! side's median repetition and their ratio. `--smoke` runs tiny sizes once.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_task::Runnable;
use twill_bench::report::{fmt, fmt_ratio, print_run_header, this_command};
use twill_bench::{cli_err, median, Args, CliError};

const WORKLOADS: [&str; 3] = ["spawn", "wake", "cross"];

const USAGE: &str = "\
usage: executor_bench [--batch N] [--cross N] [--reps N] [--rep-time S]
                      [--workloads spawn,wake,cross] [--timeout S] [--smoke]

  --batch N         spawns or wakes per call of spawn / wake (default 1000)
  --cross N         round trips per call of cross (default 10000)
  --reps N          timed repetitions per side and workload (default 5)
  --rep-time S      seconds per repetition, after calibration (default 0.1)
  --timeout S       cross: give up after S seconds in one call (default 10)
  --smoke           --batch 10 --cross 10 --reps 1 --rep-time 0";

// --- the two sides --------------------------------------------------------------

/// A reactor's view of an executor: spawn on it, and run one turn.
trait Driver {
    /// Spawns `future`, detached.
    fn spawn(&self, future: impl Future<Output = ()> + 'static);
    /// One turn of the reactor's loop: if the executor asked to be run
    /// since the last turn, runs what was woken. Returns whether it did.
    fn turn(&mut self) -> bool;
}

/// A notification flag: what a reactor's poller `notify` stands for here.
#[derive(Default)]
struct Notify(AtomicBool);

impl Notify {
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Takes the notification, if there is one (a load first, so a spinning
    /// reader does not write the cache line while nothing happens).
    fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::Acquire)
    }
}

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        self.set();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.set();
    }
}

/// `LocalExecutor`, run by a long-lived ticker future polled once per turn.
struct ExecutorDriver {
    ex: Rc<LocalExecutor<'static>>,
    ticker: Pin<Box<dyn Future<Output = ()>>>,
    woken: Arc<Notify>,
    waker: Waker,
}

impl ExecutorDriver {
    fn new() -> Self {
        let ex = Rc::new(LocalExecutor::new());
        let runner = ex.clone();
        let ticker: Pin<Box<dyn Future<Output = ()>>> =
            Box::pin(async move { runner.run(std::future::pending::<()>()).await });
        let woken = Arc::new(Notify::default());
        // The first turn polls the ticker, which registers it as a sleeper.
        woken.set();
        let waker = Waker::from(woken.clone());
        ExecutorDriver {
            ex,
            ticker,
            woken,
            waker,
        }
    }
}

impl Driver for ExecutorDriver {
    fn spawn(&self, future: impl Future<Output = ()> + 'static) {
        self.ex.spawn(future).detach();
    }

    fn turn(&mut self) -> bool {
        if !self.woken.take() {
            return false;
        }
        let mut cx = Context::from_waker(&self.waker);
        // `pending()` never completes, so neither does the ticker.
        let _ = self.ticker.as_mut().poll(&mut cx);
        true
    }
}

/// The woken runnables, as twill's `Remote` keeps them (as of 02d77eb).
#[derive(Default)]
struct Queue {
    runnables: Mutex<VecDeque<Runnable>>,
    notify: Notify,
}

impl Queue {
    fn schedule(&self, runnable: Runnable) {
        self.runnables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(runnable);
        self.notify.set();
    }

    /// Runs the runnables queued so far; those queued meanwhile wait for the
    /// next turn.
    fn run_tasks(&self) {
        let ready = {
            let mut queue = self
                .runnables
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if queue.is_empty() {
                return;
            }
            std::mem::take(&mut *queue)
        };
        for runnable in ready {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runnable.run())).is_err() {
                eprintln!("executor_bench: a task panicked");
            }
        }
    }
}

/// `async_task::spawn_local` with a `Mutex<VecDeque<Runnable>>`, drained
/// once per turn.
struct QueueDriver {
    queue: Arc<Queue>,
}

impl QueueDriver {
    fn new() -> Self {
        QueueDriver {
            queue: Arc::default(),
        }
    }
}

impl Driver for QueueDriver {
    fn spawn(&self, future: impl Future<Output = ()> + 'static) {
        let queue = self.queue.clone();
        let (runnable, task) =
            async_task::spawn_local(future, move |runnable| queue.schedule(runnable));
        runnable.schedule();
        task.detach();
    }

    fn turn(&mut self) -> bool {
        if !self.queue.notify.take() {
            return false;
        }
        self.queue.run_tasks();
        true
    }
}

impl Drop for QueueDriver {
    fn drop(&mut self) {
        // Runnables left over hold the schedule closure, which holds the
        // queue: drop them here, on this thread.
        let left = std::mem::take(
            &mut *self
                .queue
                .runnables
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        drop(left);
    }
}

// --- the futures ----------------------------------------------------------------

/// A one-shot flag on this thread: `fire` sets it and wakes the waiter.
#[derive(Default)]
struct Signal {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn wait(&self) -> SignalWait<'_> {
        SignalWait(self)
    }
}

struct SignalWait<'a>(&'a Signal);

impl Future for SignalWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.replace(false) {
            Poll::Ready(())
        } else {
            self.0.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// What the reactor thread and the other thread share in `cross`.
#[derive(Default)]
struct Cross {
    /// The last wake the other thread sent.
    sent: AtomicU64,
    /// The wake the task waits for, published once its waker is in `slot`.
    waiting: AtomicU64,
    slot: Mutex<Option<Waker>>,
    /// Set by either side when it gives up.
    abort: AtomicBool,
}

struct CrossWait<'a> {
    shared: &'a Cross,
    target: u64,
}

impl Future for CrossWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self
            .shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.shared.sent.load(Ordering::Acquire) >= self.target {
            return Poll::Ready(());
        }
        *slot = Some(cx.waker().clone());
        self.shared.waiting.store(self.target, Ordering::Release);
        Poll::Pending
    }
}

// --- the workloads ----------------------------------------------------------------

fn spawn_workload<D: Driver>(d: &mut D, n: u64, _timeout: Duration) -> Result<(), String> {
    let done = Rc::new(Cell::new(0u64));
    for i in 1..=n {
        let counter = done.clone();
        d.spawn(async move { counter.set(counter.get() + 1) });
        d.turn();
        if done.get() != i {
            return Err(format!("spawn: task {i} did not run in its turn"));
        }
    }
    if Rc::strong_count(&done) != 1 {
        return Err("spawn: a finished task still holds its future".into());
    }
    Ok(())
}

fn wake_workload<D: Driver>(d: &mut D, n: u64, _timeout: Duration) -> Result<(), String> {
    let signal = Rc::new(Signal::default());
    let seen = Rc::new(Cell::new(0u64));
    {
        let (signal, seen) = (signal.clone(), seen.clone());
        d.spawn(async move {
            for _ in 0..n {
                signal.wait().await;
                seen.set(seen.get() + 1);
            }
        });
    }
    d.turn(); // the task runs up to its first wait
    for i in 1..=n {
        signal.fire();
        d.turn();
        if seen.get() != i {
            return Err(format!("wake: wake {i} was seen {} times", seen.get()));
        }
    }
    if Rc::strong_count(&seen) != 1 {
        return Err("wake: the task did not finish".into());
    }
    Ok(())
}

fn cross_workload<D: Driver>(d: &mut D, n: u64, timeout: Duration) -> Result<(), String> {
    let shared = Arc::new(Cross::default());
    let seen = Rc::new(Cell::new(0u64));
    {
        let (shared, seen) = (shared.clone(), seen.clone());
        d.spawn(async move {
            for target in 1..=n {
                CrossWait {
                    shared: &shared,
                    target,
                }
                .await;
                seen.set(target);
            }
        });
    }
    let deadline = Instant::now() + timeout;
    let remote = {
        let shared = shared.clone();
        std::thread::spawn(move || -> Result<(), String> {
            for i in 1..=n {
                let mut spins = 0u32;
                while shared.waiting.load(Ordering::Acquire) < i {
                    std::hint::spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins % 1024 == 0
                        && (shared.abort.load(Ordering::Relaxed) || Instant::now() > deadline)
                    {
                        shared.abort.store(true, Ordering::Relaxed);
                        return Err(format!("cross: the task never waited for wake {i}"));
                    }
                }
                shared.sent.store(i, Ordering::Release);
                let waker = shared
                    .slot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                match waker {
                    Some(waker) => waker.wake(),
                    None => return Err(format!("cross: no waker for wake {i}")),
                }
            }
            Ok(())
        })
    };
    let mut spins = 0u32;
    let mut result = Ok(());
    while seen.get() < n {
        if !d.turn() {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0
                && (shared.abort.load(Ordering::Relaxed) || Instant::now() > deadline)
            {
                shared.abort.store(true, Ordering::Relaxed);
                result = Err(format!(
                    "cross: gave up after {} of {n} round trips",
                    seen.get()
                ));
                break;
            }
        }
    }
    let remote = remote
        .join()
        .unwrap_or_else(|_| Err("cross: the waking thread panicked".into()));
    result?;
    remote?;
    if seen.get() != n || Rc::strong_count(&seen) != 1 {
        return Err(format!("cross: {} of {n} round trips", seen.get()));
    }
    Ok(())
}

// --- measuring --------------------------------------------------------------------

type Workload<D> = fn(&mut D, u64, Duration) -> Result<(), String>;

/// One side of one workload: its driver, its workload function and the
/// calls per repetition found by calibration.
struct Side<D> {
    driver: D,
    f: Workload<D>,
    iters: u64,
    rates: Vec<f64>,
}

impl<D: Driver> Side<D> {
    fn new(driver: D, f: Workload<D>) -> Self {
        Side {
            driver,
            f,
            iters: 1,
            rates: Vec::new(),
        }
    }

    /// Seconds for `iters` calls of the workload with `n` operations each.
    fn time(&mut self, iters: u64, n: u64, timeout: Duration) -> Result<f64, String> {
        let t0 = Instant::now();
        for _ in 0..iters {
            (self.f)(&mut self.driver, n, timeout)?;
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    fn calibrate(&mut self, n: u64, rep_time: f64, timeout: Duration) -> Result<(), String> {
        self.time(1, n, timeout)?; // warm-up, and a first check
        let mut iters: u64 = 1;
        loop {
            let dt = self.time(iters, n, timeout)?;
            if dt >= rep_time || iters >= 1 << 30 {
                break;
            }
            let scaled = (iters as f64 * rep_time / dt.max(1e-9) * 1.1) as u64 + 1;
            iters = scaled.max(iters * 2);
        }
        self.iters = iters;
        Ok(())
    }

    fn rep(&mut self, n: u64, timeout: Duration) -> Result<(), String> {
        let dt = self.time(self.iters, n, timeout)?;
        self.rates.push((self.iters * n) as f64 / dt);
        Ok(())
    }
}

struct Row {
    workload: &'static str,
    unit: &'static str,
    n: u64,
    executor: f64,
    queue: f64,
    iters: (u64, u64),
}

fn measure(
    workload: &'static str,
    n: u64,
    reps: usize,
    rep_time: f64,
    timeout: Duration,
) -> Result<Row, String> {
    let (fe, fq, unit): (Workload<ExecutorDriver>, Workload<QueueDriver>, _) = match workload {
        "spawn" => (spawn_workload, spawn_workload, "tasks"),
        "wake" => (wake_workload, wake_workload, "wakes"),
        _ => (cross_workload, cross_workload, "round trips"),
    };
    let mut ex = Side::new(ExecutorDriver::new(), fe);
    let mut q = Side::new(QueueDriver::new(), fq);
    ex.calibrate(n, rep_time, timeout)?;
    q.calibrate(n, rep_time, timeout)?;
    for r in 0..reps {
        if r % 2 == 0 {
            ex.rep(n, timeout)?;
            q.rep(n, timeout)?;
        } else {
            q.rep(n, timeout)?;
            ex.rep(n, timeout)?;
        }
    }
    Ok(Row {
        workload,
        unit,
        n,
        executor: median(&ex.rates),
        queue: median(&q.rates),
        iters: (ex.iters, q.iters),
    })
}

struct Opts {
    batch: u64,
    cross: u64,
    reps: usize,
    rep_time: f64,
    timeout: Duration,
    workloads: Vec<&'static str>,
}

fn parse(mut args: Args) -> Result<Opts, CliError> {
    let smoke = args.flag("--smoke");
    let batch: u64 = args.parse_or("--batch", if smoke { 10 } else { 1000 })?;
    let cross: u64 = args.parse_or("--cross", if smoke { 10 } else { 10_000 })?;
    let reps: usize = args.parse_or("--reps", if smoke { 1 } else { 5 })?;
    let rep_time: f64 = args.parse_or("--rep-time", if smoke { 0.0 } else { 0.1 })?;
    let timeout: f64 = args.parse_or("--timeout", 10.0)?;
    let workloads: String = args.parse_or("--workloads", WORKLOADS.join(","))?;
    args.finish()?;
    if batch < 1 || cross < 1 || reps < 1 {
        return Err(cli_err!("--batch, --cross and --reps must be >= 1"));
    }
    if !rep_time.is_finite() || rep_time < 0.0 || !timeout.is_finite() || timeout <= 0.0 {
        return Err(cli_err!("--rep-time must be >= 0 and --timeout > 0"));
    }
    let mut chosen = Vec::new();
    for name in workloads.split(',') {
        let name = WORKLOADS
            .into_iter()
            .find(|w| *w == name)
            .ok_or_else(|| cli_err!("unknown workload {name:?}"))?;
        chosen.push(name);
    }
    Ok(Opts {
        batch,
        cross,
        reps,
        rep_time,
        timeout: Duration::from_secs_f64(timeout),
        workloads: chosen,
    })
}

fn run(opts: Opts) -> Result<(), String> {
    let Opts {
        batch,
        cross,
        reps,
        rep_time,
        timeout,
        workloads,
    } = opts;

    print_run_header(
        "!Send futures on one thread: LocalExecutor against an async-task queue",
        &this_command("executor_bench"),
    );
    println!(
        "- {reps} repetition(s) per side, sides alternated, ~{rep_time} s each after \
         calibration; ops/s of the median repetition; ratio = LocalExecutor / queue"
    );
    println!();
    let mut rows = Vec::new();
    for w in workloads {
        let n = if w == "cross" { cross } else { batch };
        rows.push(measure(w, n, reps, rep_time, timeout)?);
    }
    println!(
        "| workload | unit | LocalExecutor ops/s | async-task queue ops/s | ratio | calls per rep (LocalExecutor/queue) |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for r in rows {
        let label = match r.workload {
            "spawn" => format!("spawn: {} × (spawn a ready future, one turn)", r.n),
            "wake" => format!("wake: {} × (wake one local task, one turn)", r.n),
            _ => format!("cross: {} wakes from another thread", r.n),
        };
        println!(
            "| {label} | {} | {} | {} | {} | {}/{} |",
            r.unit,
            fmt(r.executor, 0),
            fmt(r.queue, 0),
            fmt_ratio(r.executor / r.queue),
            r.iters.0,
            r.iters.1
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::from_env();
    if args.wants_help() {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse(args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("executor_bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("executor_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
