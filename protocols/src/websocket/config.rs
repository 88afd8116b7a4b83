//! [`WebSocketConfig`]: the options of a WebSocket connection, checked
//! once by their builder.

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use twill::ReactorTime;

use super::frame::DEFAULT_MAX_FRAME_PAYLOAD;
use super::message::{MessageCodec, DEFAULT_MAX_MESSAGE_SIZE};
use super::Role;
use crate::codec::ConfigError;

/// How long a connection waits for the peer's answer to its Close frame
/// (and, on a client, for the server to close the TCP connection) before
/// aborting it, unless configured: 5 s.
pub const DEFAULT_CLOSING_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest closing timeout a connection can be configured with: 10
/// minutes. A peer that never answers holds the connection that long.
pub const MAX_CLOSING_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a keep-alive ping waits for its pong, unless configured: 20 s.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(20);

/// The shortest keep-alive ping interval and pong timeout: 1 ms.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// The options of a WebSocket connection ([`WebSocketProtocol`](super::WebSocketProtocol),
/// [`accept`](super::accept), [`WebSocketClient`](super::WebSocketClient)):
/// the codec's limits, the closing timeout, keep-alive pings, the write
/// buffer's hard cap and the clock the timers run on. Made by
/// [`WebSocketConfig::builder`], which checks them; the default is valid.
/// Clones share the clock.
///
/// ```
/// use std::time::Duration;
/// use twill_protocols::websocket::WebSocketConfig;
///
/// let config = WebSocketConfig::builder()
///     .max_message_size(4 * 1024 * 1024)
///     .max_frame_payload(64 * 1024)
///     .closing_timeout(Duration::from_secs(2))
///     .ping_interval(Duration::from_secs(30))
///     .pong_timeout(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(config.ping_interval(), Some(Duration::from_secs(30)));
/// assert!(WebSocketConfig::builder().max_message_size(0).build().is_err());
/// # Ok::<(), twill_protocols::codec::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct WebSocketConfig {
    max_frame_payload: usize,
    max_message_size: usize,
    closing_timeout: Duration,
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    write_buffer_max: Option<usize>,
    clock: Option<Rc<dyn ReactorTime>>,
}

impl Default for WebSocketConfig {
    fn default() -> WebSocketConfig {
        WebSocketConfig {
            max_frame_payload: DEFAULT_MAX_FRAME_PAYLOAD,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            closing_timeout: DEFAULT_CLOSING_TIMEOUT,
            ping_interval: None,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            write_buffer_max: None,
            clock: None,
        }
    }
}

impl WebSocketConfig {
    /// A builder starting from the defaults: 1 MiB frames and messages, a
    /// 5 s closing timeout, no keep-alive pings, the transport's own write
    /// buffer cap, the reactor's clock.
    pub fn builder() -> WebSocketConfigBuilder {
        WebSocketConfigBuilder {
            config: WebSocketConfig::default(),
        }
    }

    /// The longest frame payload accepted.
    pub fn max_frame_payload(&self) -> usize {
        self.max_frame_payload
    }

    /// The longest message accepted, all its fragments together.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// How long to wait for the peer once this side has sent its Close.
    pub fn closing_timeout(&self) -> Duration {
        self.closing_timeout
    }

    /// The period of keep-alive pings, if they are on.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.ping_interval
    }

    /// How long a keep-alive ping waits for its pong.
    pub fn pong_timeout(&self) -> Duration {
        self.pong_timeout
    }

    /// The write buffer's hard cap set on the transport, if configured.
    pub fn write_buffer_max(&self) -> Option<usize> {
        self.write_buffer_max
    }

    /// The clock the timers run on: the configured one, else the current
    /// thread's reactor.
    ///
    /// # Panics
    ///
    /// With no clock configured and no reactor on this thread.
    pub(crate) fn time(&self) -> Rc<dyn ReactorTime> {
        match &self.clock {
            Some(clock) => clock.clone(),
            None => Rc::new(twill::reactor()),
        }
    }

    /// The message codec for `role` with these limits.
    pub(crate) fn codec(&self, role: Role) -> MessageCodec {
        MessageCodec::builder(role)
            .max_frame_payload(self.max_frame_payload)
            .max_message_size(self.max_message_size)
            .build()
            .expect("checked by WebSocketConfigBuilder::build")
    }
}

impl fmt::Debug for WebSocketConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketConfig")
            .field("max_frame_payload", &self.max_frame_payload)
            .field("max_message_size", &self.max_message_size)
            .field("closing_timeout", &self.closing_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("write_buffer_max", &self.write_buffer_max)
            .field("clock", &self.clock.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// Builds a [`WebSocketConfig`]; from [`WebSocketConfig::builder`].
#[derive(Debug, Clone)]
pub struct WebSocketConfigBuilder {
    config: WebSocketConfig,
}

impl WebSocketConfigBuilder {
    /// The longest frame payload accepted (default 1 MiB, at most 16 MiB);
    /// a longer frame is refused from its header with close code 1009.
    pub fn max_frame_payload(mut self, max: usize) -> Self {
        self.config.max_frame_payload = max;
        self
    }

    /// The longest message accepted, all its fragments together (default
    /// 1 MiB, at most 64 MiB); past it, close code 1009.
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.config.max_message_size = max;
        self
    }

    /// How long to wait, once this side has sent a Close frame, for the
    /// peer's Close (and, on a client, for the server to close the TCP
    /// connection) before aborting the connection. Default
    /// [`DEFAULT_CLOSING_TIMEOUT`] (5 s), at least 1 ms, at most
    /// [`MAX_CLOSING_TIMEOUT`].
    pub fn closing_timeout(mut self, timeout: Duration) -> Self {
        self.config.closing_timeout = timeout;
        self
    }

    /// Sends a keep-alive ping every `interval` (off by default); a peer
    /// that does not answer one within the
    /// [`pong_timeout`](Self::pong_timeout) is closed with code 1011.
    /// At least 1 ms.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = Some(interval);
        self
    }

    /// How long a keep-alive ping waits for its pong (default
    /// [`DEFAULT_PONG_TIMEOUT`], 20 s; at least 1 ms).
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.config.pong_timeout = timeout;
        self
    }

    /// The hard cap of the connection's write buffer
    /// ([`Transport::set_write_buffer_max`](twill::Transport::set_write_buffer_max)):
    /// a send that takes the buffer past it aborts the connection. By
    /// default the transport's own (16 MiB).
    pub fn write_buffer_max(mut self, max: usize) -> Self {
        self.config.write_buffer_max = Some(max);
        self
    }

    /// The clock the closing and keep-alive timers run on (by default the
    /// reactor's): a [`Clock`](twill::task::Clock) lets tests move time by
    /// hand.
    pub fn clock(mut self, clock: Rc<dyn ReactorTime>) -> Self {
        self.config.clock = Some(clock);
        self
    }

    /// The configuration.
    ///
    /// # Errors
    ///
    /// A limit out of its range (see each option).
    pub fn build(self) -> Result<WebSocketConfig, ConfigError> {
        let config = self.config;
        MessageCodec::builder(Role::Server)
            .max_frame_payload(config.max_frame_payload)
            .max_message_size(config.max_message_size)
            .build()?;
        if !(MIN_PERIOD..=MAX_CLOSING_TIMEOUT).contains(&config.closing_timeout) {
            return Err(ConfigError::new(format!(
                "closing_timeout must be from 1 ms to {MAX_CLOSING_TIMEOUT:?}, not {:?}",
                config.closing_timeout
            )));
        }
        if config
            .ping_interval
            .is_some_and(|interval| interval < MIN_PERIOD)
        {
            return Err(ConfigError::new("ping_interval must be at least 1 ms"));
        }
        if config.pong_timeout < MIN_PERIOD {
            return Err(ConfigError::new("pong_timeout must be at least 1 ms"));
        }
        if config.write_buffer_max == Some(0) {
            return Err(ConfigError::new("write_buffer_max must be positive"));
        }
        Ok(config)
    }
}
