//! The load generators' driver: worker threads over shares of the
//! connections, the measured window marked on stdout, and the results
//! collected.
//!
//! `loadgen` and `http_loadgen` differ only in what a worker does with its
//! connections; the rest of a run — dealing the connections out, printing
//! `MARK measure_start` and `MARK measure_end` (the runners sample the
//! server's CPU time then), reading the loader's own CPU time at the same
//! moments, stopping at the first failed worker and waiting a bounded time
//! for the others — lives here, so both speak the same protocol to the
//! runners.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{self_cpu_ticks, Histogram};

/// How long the workers may take to report after the measured window ends.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Exit code for a check failure: a response that was not what the server
/// should have sent.
pub const EXIT_CHECK: i32 = 3;

/// Exit code for a failed connection or a worker that did not stop.
pub const EXIT_IO: i32 = 4;

/// Why a worker stopped early.
#[derive(Debug)]
pub enum Failure {
    /// The server answered wrongly (a verification error); exit code 3.
    Check(String),
    /// A socket or poller call failed, or the server closed; exit code 4.
    Io(String),
}

/// What one worker (or, merged, the whole run) measured.
#[derive(Default)]
pub struct Stats {
    /// Latencies of the completions inside the measured window.
    pub hist: Histogram,
    /// Completions inside the measured window.
    pub measured: u64,
    /// Completions in the whole run.
    pub total: u64,
}

impl Stats {
    /// Counts `done` completions at `now` on one connection: the oldest
    /// `done` queue times in `times` are taken and as many new ones (`now`,
    /// for the requests sent in their place) added; latencies are recorded
    /// only if `now` is inside `window`.
    ///
    /// ```
    /// use std::collections::VecDeque;
    /// use std::time::{Duration, Instant};
    /// use twill_bench::drive::{Stats, Window};
    ///
    /// let window = Window::after(Duration::ZERO, Duration::from_secs(60));
    /// let sent = Instant::now();
    /// let mut times = VecDeque::from([sent, sent]);
    /// let mut stats = Stats::default();
    /// stats.complete(&mut times, 1, Instant::now(), &window);
    /// assert_eq!((stats.measured, stats.total, times.len()), (1, 1, 2));
    /// ```
    pub fn complete(
        &mut self,
        times: &mut VecDeque<Instant>,
        done: u64,
        now: Instant,
        window: &Window,
    ) {
        let in_window = window.contains(now);
        for _ in 0..done {
            let sent_at = times.pop_front().expect("a time per request in flight");
            if in_window {
                self.hist.record((now - sent_at).as_nanos() as u64);
            }
            times.push_back(now);
        }
        if in_window {
            self.measured += done;
        }
        self.total += done;
    }

    /// Adds another worker's measurements to these.
    pub fn merge(&mut self, other: &Stats) {
        self.hist.merge(&other.hist);
        self.measured += other.measured;
        self.total += other.total;
    }
}

/// The measured window: it opens after the warm-up and closes when the run
/// ends.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// When the warm-up ends and measuring starts.
    pub warm_end: Instant,
    /// When measuring, and the run, end.
    pub end: Instant,
}

impl Window {
    /// The window that opens `warmup` from now and lasts `duration`.
    pub fn after(warmup: Duration, duration: Duration) -> Window {
        let warm_end = Instant::now() + warmup;
        Window {
            warm_end,
            end: warm_end + duration,
        }
    }

    /// Whether `at` is inside the window.
    pub fn contains(&self, at: Instant) -> bool {
        at >= self.warm_end && at < self.end
    }
}

/// What a run measured, all workers merged.
pub struct Outcome {
    /// The workers' measurements, merged.
    pub stats: Stats,
    /// The loader's own CPU time over the measured window, in clock ticks.
    pub client_ticks: u64,
}

/// Deals `items` round-robin into `threads` shares (at least one).
///
/// ```
/// let shares = twill_bench::drive::deal(0..5, 2);
/// assert_eq!(shares, vec![vec![0, 2, 4], vec![1, 3]]);
/// ```
pub fn deal<T>(items: impl IntoIterator<Item = T>, threads: usize) -> Vec<Vec<T>> {
    let threads = threads.max(1);
    let mut shares: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push(item);
    }
    shares
}

/// Names a load generator's messages: its program name prefixes every
/// line it writes to stderr, and a [`Failure::Check`] is reported as
/// `program: CHECK_LABEL: message`.
#[derive(Clone, Copy, Debug)]
pub struct Driver<'a> {
    /// The program's name, as in its messages.
    pub program: &'a str,
    /// The prefix of its worker threads' names (`PREFIX-N`).
    pub thread_prefix: &'a str,
    /// How a check failure is announced (`VERIFY ERROR`, ...).
    pub check_label: &'a str,
}

impl Driver<'_> {
    /// Runs `work` on each share in its own thread, prints
    /// `MARK measure_start` and `MARK measure_end` at the edges of `window`
    /// and collects the results. The first failed worker ends the run at
    /// once: its message goes to stderr and its exit code is returned as
    /// the error; so is [`EXIT_IO`] if a worker has not reported a few
    /// seconds after the window closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use twill_bench::drive::{Driver, Stats, Window};
    ///
    /// let driver = Driver { program: "demo", thread_prefix: "demo", check_label: "WRONG" };
    /// let window = Window::after(Duration::ZERO, Duration::from_millis(10));
    /// let outcome = driver
    ///     .run(vec![1u64, 2], window, |n| Ok(Stats { total: n, ..Stats::default() }))
    ///     .unwrap();
    /// assert_eq!(outcome.stats.total, 3);
    /// ```
    pub fn run<S, W>(&self, shares: Vec<S>, window: Window, work: W) -> Result<Outcome, i32>
    where
        S: Send + 'static,
        W: Fn(S) -> Result<Stats, Failure> + Send + Sync + 'static,
    {
        let threads = shares.len();
        let work = Arc::new(work);
        let (tx, rx) = mpsc::channel();
        for (i, share) in shares.into_iter().enumerate() {
            let tx = tx.clone();
            let work = Arc::clone(&work);
            std::thread::Builder::new()
                .name(format!("{}-{i}", self.thread_prefix))
                .spawn(move || {
                    let _ = tx.send(work(share));
                })
                .expect("spawn worker thread");
        }
        drop(tx);

        let mut results = Vec::new();
        let mut cpu = [0u64; 2];
        for (i, (mark, at)) in [
            ("measure_start", window.warm_end),
            ("measure_end", window.end),
        ]
        .into_iter()
        .enumerate()
        {
            self.wait_until(at, &rx, &mut results)?;
            println!("MARK {mark}");
            let _ = io::stdout().flush();
            cpu[i] = self_cpu_ticks().unwrap_or(0);
        }
        while results.len() < threads {
            match rx.recv_timeout(STOP_GRACE) {
                Ok(r) => self.collect(r, &mut results)?,
                Err(_) => {
                    eprintln!("{}: error: a worker did not stop in time", self.program);
                    return Err(EXIT_IO);
                }
            }
        }

        let mut stats = Stats::default();
        for s in &results {
            stats.merge(s);
        }
        Ok(Outcome {
            stats,
            client_ticks: cpu[1].saturating_sub(cpu[0]),
        })
    }

    /// Sleeps until `at`, collecting worker results that arrive meanwhile;
    /// a failed worker yields the exit code.
    fn wait_until(
        &self,
        at: Instant,
        rx: &mpsc::Receiver<Result<Stats, Failure>>,
        results: &mut Vec<Stats>,
    ) -> Result<(), i32> {
        loop {
            let now = Instant::now();
            if now >= at {
                return Ok(());
            }
            match rx.recv_timeout(at - now) {
                Ok(r) => self.collect(r, results)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                }
            }
        }
    }

    fn collect(&self, r: Result<Stats, Failure>, results: &mut Vec<Stats>) -> Result<(), i32> {
        match r {
            Ok(s) => {
                results.push(s);
                Ok(())
            }
            Err(Failure::Check(msg)) => {
                eprintln!("{}: {}: {msg}", self.program, self.check_label);
                Err(EXIT_CHECK)
            }
            Err(Failure::Io(msg)) => {
                eprintln!("{}: error: {msg}", self.program);
                Err(EXIT_IO)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVER: Driver<'static> = Driver {
        program: "test",
        thread_prefix: "test",
        check_label: "WRONG",
    };

    #[test]
    fn a_failed_worker_ends_the_run_with_its_exit_code() {
        let window = Window::after(Duration::from_secs(30), Duration::from_secs(30));
        let started = Instant::now();
        let r = DRIVER.run(vec![0, 1], window, |i| {
            if i == 1 {
                Err(Failure::Check("bad byte".into()))
            } else {
                Ok(Stats::default())
            }
        });
        assert_eq!(r.err(), Some(EXIT_CHECK));
        assert!(started.elapsed() < Duration::from_secs(10));
        let r = DRIVER.run(vec![0], window, |_| Err(Failure::Io("reset".into())));
        assert_eq!(r.err(), Some(EXIT_IO));
    }

    #[test]
    fn completions_outside_the_window_count_only_in_the_total() {
        let window = Window::after(Duration::from_secs(60), Duration::from_secs(1));
        let mut times = VecDeque::from([Instant::now(); 3]);
        let mut stats = Stats::default();
        stats.complete(&mut times, 2, Instant::now(), &window);
        assert_eq!((stats.measured, stats.total, stats.hist.count()), (0, 2, 0));
        assert_eq!(times.len(), 3);
    }
}
