//! Waiting for readiness: one `epoll_wait` per turn on Linux.
//!
//! `polling`'s `Poller::wait` costs five system calls on Linux: it arms a
//! timerfd for the timeout and re-registers it, waits, then drains and
//! re-registers its wake-up eventfd, whether or not anything woke it. A
//! busy loop waits thousands of times a second, so on Linux the reactor
//! calls `epoll_wait` on the poller's own epoll descriptor instead, with a
//! millisecond timeout (the loop rounds its waits up to whole milliseconds
//! anyway), and hands the wait to `Poller::wait` only when the poller's
//! reserved key shows up, i.e. when another thread called `notify`, so that
//! `polling` clears and re-arms its eventfd as it expects. Registration
//! stays with `polling` throughout; elsewhere `Poller::wait` is used as is.

use std::io;
use std::time::Duration;

use polling::{Events, Poller};

/// One readiness event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub(crate) key: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

/// Reusable buffers for the loop's waits.
pub(crate) struct Waiter {
    events: Events,
    ready: Vec<Ready>,
    #[cfg(target_os = "linux")]
    raw: Vec<libc::epoll_event>,
}

/// The key `polling` reserves for its own wake-up and timer descriptors.
#[cfg(target_os = "linux")]
const POLLER_KEY: u64 = usize::MAX as u64;

/// Events taken per wait at most.
const CAPACITY: usize = 1024;

impl Waiter {
    pub(crate) fn new() -> Waiter {
        Waiter {
            events: Events::new(),
            ready: Vec::with_capacity(CAPACITY),
            #[cfg(target_os = "linux")]
            raw: vec![libc::epoll_event { events: 0, u64: 0 }; CAPACITY],
        }
    }

    /// Waits up to `timeout` (forever if `None`) and returns what is ready.
    /// An interrupted wait returns nothing.
    pub(crate) fn wait(
        &mut self,
        poller: &Poller,
        timeout: Option<Duration>,
    ) -> io::Result<&[Ready]> {
        self.ready.clear();
        #[cfg(target_os = "linux")]
        let timeout = {
            if self.wait_epoll(poller, timeout)? {
                return Ok(&self.ready);
            }
            // The poller was notified: let it clear and re-arm its eventfd.
            // What the direct wait saw is reported again (level-triggered).
            self.ready.clear();
            Some(Duration::ZERO)
        };
        self.wait_poller(poller, timeout)
    }

    fn wait_poller(&mut self, poller: &Poller, timeout: Option<Duration>) -> io::Result<&[Ready]> {
        self.events.clear();
        match poller.wait(&mut self.events, timeout) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
        self.ready.extend(self.events.iter().map(|event| Ready {
            key: event.key,
            readable: event.readable,
            writable: event.writable,
        }));
        Ok(&self.ready)
    }

    /// One `epoll_wait` on the poller's descriptor; false if the poller's
    /// own key came up and `Poller::wait` must run.
    #[cfg(target_os = "linux")]
    fn wait_epoll(&mut self, poller: &Poller, timeout: Option<Duration>) -> io::Result<bool> {
        use std::os::fd::AsRawFd;

        let millis = match timeout {
            None => -1,
            Some(t) => i32::try_from(t.as_millis()).unwrap_or(i32::MAX),
        };
        // SAFETY: `raw` is a live buffer of `raw.len()` epoll_event structs,
        // which the kernel fills at most `raw.len()` of; the descriptor is
        // the poller's epoll instance, alive as long as `poller` is.
        let n = unsafe {
            libc::epoll_wait(
                poller.as_raw_fd(),
                self.raw.as_mut_ptr(),
                self.raw.len() as i32,
                millis,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::Interrupted => Ok(true),
                _ => Err(err),
            };
        }
        const READ: u32 = (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLPRI) as u32;
        const WRITE: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        for event in &self.raw[..n as usize] {
            let (flags, key) = (event.events, event.u64);
            if key == POLLER_KEY {
                return Ok(false);
            }
            self.ready.push(Ready {
                key: key as usize,
                readable: flags & READ != 0,
                writable: flags & WRITE != 0,
            });
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn reports_readiness_times_out_and_wakes_on_notify() {
        let poller = Arc::new(Poller::new().unwrap());
        let mut waiter = Waiter::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        // SAFETY: deleted below, before `server` is dropped.
        unsafe {
            poller
                .add_with_mode(&server, polling::Event::all(7), polling::PollMode::Level)
                .unwrap()
        };

        // Writable at once, not readable.
        let ready = waiter.wait(&poller, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready.len(), 1);
        assert!(ready[0].key == 7 && ready[0].writable && !ready[0].readable);

        poller
            .modify_with_mode(
                &server,
                polling::Event::readable(7),
                polling::PollMode::Level,
            )
            .unwrap();
        let started = Instant::now();
        assert!(waiter
            .wait(&poller, Some(Duration::from_millis(20)))
            .unwrap()
            .is_empty());
        assert!(started.elapsed() >= Duration::from_millis(20));

        client.write_all(b"x").unwrap();
        let ready = waiter.wait(&poller, None).unwrap();
        assert!(ready.len() == 1 && ready[0].key == 7 && ready[0].readable);

        // A notify from another thread ends a wait with no timeout, and
        // the next notify does too (the wake-up is re-armed).
        for _ in 0..2 {
            let remote = poller.clone();
            let notifier = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                remote.notify().unwrap();
            });
            poller
                .modify_with_mode(&server, polling::Event::none(7), polling::PollMode::Level)
                .unwrap();
            let ready = waiter.wait(&poller, Some(Duration::from_secs(5))).unwrap();
            assert!(ready.is_empty());
            notifier.join().unwrap();
        }
        poller.delete(&server).unwrap();
    }
}
