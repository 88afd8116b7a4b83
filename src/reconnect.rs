//! [`ReconnectingClientFactory`]: reconnect with exponential back-off.

use crate::net::Address;
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use crate::net::{Connector, ConnectorState};
use crate::protocol::{ClientFactory, Factory, Reason};
use crate::reactor::Reactor;
use crate::time::{DelayedCall, ReactorTime};

/// Twisted's defaults.
const INITIAL_DELAY: f64 = 1.0;
const MAX_DELAY: f64 = 3600.0;
const FACTOR: f64 = std::f64::consts::E;
const JITTER: f64 = 0.119626565582;

/// A client factory that reconnects whenever an attempt fails or the
/// connection is lost, waiting longer each time: Twisted's
/// `ReconnectingClientFactory`, wrapped around your own [`ClientFactory`].
///
/// The first retry comes after `initial_delay` (1 s), then each delay is
/// multiplied by `factor` (e) up to `max_delay` (3600 s), each drawn from a
/// normal distribution around it with relative deviation `jitter` (0.1196)
/// so that many clients do not reconnect in lockstep. A successful
/// connection resets the delay. `max_retries` (unlimited by default) gives
/// up after that many retries in a row.
///
/// The factory is a shared handle: keep a clone to call
/// [`stop_trying`](Self::stop_trying) later.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use twill::{Protocol, Reactor, ReconnectingClientFactory};
///
/// struct Printer;
/// impl Protocol for Printer {
///     fn data_received(&mut self, data: Bytes) {
///         println!("{}", String::from_utf8_lossy(&data));
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let factory = ReconnectingClientFactory::new(|_peer| Printer)
///     .max_delay(Duration::from_secs(60))
///     .max_retries(10);
/// let keeper = factory.clone();
/// reactor.connect_tcp("127.0.0.1:8007", factory)?;
/// keeper.stop_trying(); // e.g. when the user quits
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ReconnectingClientFactory<F> {
    shared: Rc<Shared<F>>,
}

struct Shared<F> {
    inner: RefCell<F>,
    state: RefCell<Backoff>,
}

struct Backoff {
    initial_delay: f64,
    max_delay: f64,
    factor: f64,
    jitter: f64,
    max_retries: Option<u32>,
    delay: f64,
    retries: u32,
    continue_trying: bool,
    pending: Option<DelayedCall>,
    connector: Option<Connector>,
    clock: Option<Rc<dyn ReactorTime>>,
    rng: u64,
}

impl<F> Clone for ReconnectingClientFactory<F> {
    fn clone(&self) -> Self {
        ReconnectingClientFactory {
            shared: self.shared.clone(),
        }
    }
}

impl<F: ClientFactory> ReconnectingClientFactory<F> {
    /// Wraps `inner`, which builds the protocols and still hears every
    /// callback.
    pub fn new(inner: F) -> Self {
        ReconnectingClientFactory {
            shared: Rc::new(Shared {
                inner: RefCell::new(inner),
                state: RefCell::new(Backoff {
                    initial_delay: INITIAL_DELAY,
                    max_delay: MAX_DELAY,
                    factor: FACTOR,
                    jitter: JITTER,
                    max_retries: None,
                    delay: INITIAL_DELAY,
                    retries: 0,
                    continue_trying: true,
                    pending: None,
                    connector: None,
                    clock: None,
                    rng: seed(),
                }),
            }),
        }
    }

    /// The delay before the first retry (1 s).
    pub fn initial_delay(self, delay: Duration) -> Self {
        {
            let mut st = self.shared.state.borrow_mut();
            st.initial_delay = delay.as_secs_f64();
            st.delay = st.initial_delay;
        }
        self
    }

    /// The longest delay between retries (3600 s).
    pub fn max_delay(self, delay: Duration) -> Self {
        self.shared.state.borrow_mut().max_delay = delay.as_secs_f64();
        self
    }

    /// How much each delay grows (e).
    pub fn factor(self, factor: f64) -> Self {
        self.shared.state.borrow_mut().factor = factor;
        self
    }

    /// The standard deviation of each delay relative to it (0.1196); 0
    /// makes the delays exact.
    pub fn jitter(self, jitter: f64) -> Self {
        self.shared.state.borrow_mut().jitter = jitter;
        self
    }

    /// Gives up after this many retries in a row.
    pub fn max_retries(self, retries: u32) -> Self {
        self.shared.state.borrow_mut().max_retries = Some(retries);
        self
    }

    /// Schedules retries on `clock` instead of the current reactor (for
    /// tests, with a [`Clock`](crate::task::Clock)).
    pub fn clock(self, clock: Rc<dyn ReactorTime>) -> Self {
        self.shared.state.borrow_mut().clock = Some(clock);
        self
    }

    /// Stops reconnecting: cancels a scheduled retry and abandons an attempt
    /// under way. A connection that is up stays up, but is not re-made when
    /// it ends.
    pub fn stop_trying(&self) {
        let connector = {
            let mut st = self.shared.state.borrow_mut();
            st.continue_trying = false;
            if let Some(pending) = st.pending.take() {
                let _ = pending.cancel();
            }
            st.connector.clone()
        };
        if let Some(connector) = connector {
            if connector.state() == ConnectorState::Connecting {
                connector.stop_connecting();
            }
        }
    }

    /// Restores the initial delay and the retry count, and resumes trying
    /// (Twisted's `resetDelay`). Done automatically on each successful
    /// connection.
    pub fn reset_delay(&self) {
        let mut st = self.shared.state.borrow_mut();
        st.delay = st.initial_delay;
        st.retries = 0;
        st.continue_trying = true;
    }

    /// Retries made since the last successful connection.
    pub fn retries(&self) -> u32 {
        self.shared.state.borrow().retries
    }

    /// The delay the next retry will be based on.
    pub fn current_delay(&self) -> Duration {
        Duration::from_secs_f64(self.shared.state.borrow().delay)
    }

    /// Whether it will still reconnect.
    pub fn is_trying(&self) -> bool {
        self.shared.state.borrow().continue_trying
    }

    /// Schedules the next attempt, as Twisted's `retry`.
    fn retry(&self, connector: &Connector) {
        let mut st = self.shared.state.borrow_mut();
        st.connector = Some(connector.clone());
        if !st.continue_trying {
            return;
        }
        if st.clock.is_none() && Reactor::current().is_some_and(|reactor| reactor.is_stopping()) {
            // The reactor is going down: a retry would never run.
            return;
        }
        st.retries += 1;
        if let Some(max) = st.max_retries {
            if st.retries > max {
                log::info!(
                    "abandoning {} after {} retries",
                    connector.destination(),
                    st.retries - 1
                );
                return;
            }
        }
        if st.jitter > 0.0 {
            let (delay, jitter) = (st.delay, st.jitter);
            st.delay = normal(&mut st.rng, delay, delay * jitter).max(0.0);
        }
        let delay = Duration::from_secs_f64(st.delay);
        log::info!("will retry {} in {delay:?}", connector.destination());
        let clock = st
            .clock
            .clone()
            .or_else(|| Reactor::current().map(|r| Rc::new(r) as Rc<dyn ReactorTime>));
        let connector = connector.clone();
        st.pending =
            clock.map(|clock| clock.call_later(delay, Box::new(move || connector.connect())));
        st.delay = (st.delay * st.factor).min(st.max_delay);
    }
}

impl<F: ClientFactory> Factory for ReconnectingClientFactory<F> {
    type Protocol = F::Protocol;

    fn build_protocol(&mut self, peer: Address) -> Option<F::Protocol> {
        let protocol = self.shared.inner.borrow_mut().build_protocol(peer)?;
        // Connected: the next loss starts the back-off from the beginning.
        let mut st = self.shared.state.borrow_mut();
        st.delay = st.initial_delay;
        st.retries = 0;
        Some(protocol)
    }

    fn start_factory(&mut self) {
        self.shared.inner.borrow_mut().start_factory();
    }

    fn stop_factory(&mut self) {
        self.shared.inner.borrow_mut().stop_factory();
    }
}

impl<F: ClientFactory> ClientFactory for ReconnectingClientFactory<F> {
    fn started_connecting(&mut self, connector: &Connector) {
        self.shared.state.borrow_mut().connector = Some(connector.clone());
        self.shared.inner.borrow_mut().started_connecting(connector);
    }

    fn client_connection_failed(&mut self, connector: &Connector, reason: &io::Error) {
        self.shared
            .inner
            .borrow_mut()
            .client_connection_failed(connector, reason);
        self.retry(connector);
    }

    fn client_connection_lost(&mut self, connector: &Connector, reason: &Reason) {
        self.shared
            .inner
            .borrow_mut()
            .client_connection_lost(connector, reason);
        self.retry(connector);
    }
}

impl<F> fmt::Debug for ReconnectingClientFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.state.borrow();
        f.debug_struct("ReconnectingClientFactory")
            .field("delay", &st.delay)
            .field("retries", &st.retries)
            .field("continue_trying", &st.continue_trying)
            .finish()
    }
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish() | 1
}

/// xorshift64*: plenty for spreading reconnections.
fn next_unit(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
    (bits as f64 + 0.5) / (1u64 << 53) as f64
}

/// A normal sample (Box–Muller).
fn normal(state: &mut u64, mean: f64, deviation: f64) -> f64 {
    let (u1, u2) = (next_unit(state), next_unit(state));
    mean + deviation * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
