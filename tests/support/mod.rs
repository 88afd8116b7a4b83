//! Helpers shared by some of the twill crate's integration tests: a bounded
//! reactor run, a capturing logger, and a loopback port that refuses
//! connections. Helpers shared with twill-protocols' tests live in the
//! `twill-test-support` crate.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, Once};
use std::time::Duration;

use twill::Reactor;

/// Runs `reactor` until the test stops it (with a 1 s shutdown timeout),
/// failing the test if the watchdog of
/// [`twill_test_support::reactor::run_bounded`] has to stop it after
/// `limit` instead.
pub fn run_bounded(reactor: &Reactor, limit: Duration) {
    reactor.set_shutdown_timeout(Duration::from_secs(1));
    twill_test_support::reactor::run_bounded(reactor, limit);
}

/// A loopback address where nothing listens: bound to find a free port,
/// then closed, so connecting is refused.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    drop(listener);
    addr
}

/// Log records captured by [`capture_logs`], as `"LEVEL message"`.
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        LOGS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Installs a logger that keeps every record in memory (once per test
/// binary); read them with [`logged`].
pub fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The captured log lines that contain `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|line| line.contains(needle))
        .cloned()
        .collect()
}
