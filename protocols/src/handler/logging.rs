//! Netty's `LoggingHandler` in two forms: [`LoggingHandler`], a protocol
//! wrapper, and [`LoggingStage`], a pipeline stage; and [`hex_dump`],
//! Netty's dump format.

use std::fmt;

use log::Level;
use twill::{Bytes, Event, Protocol, Reason, Transport};

use super::output::OutputMeter;

mod format;
mod stage;

pub use format::hex_dump;
use format::{On, Settings};
pub use stage::LoggingStage;

/// How a [`LoggingHandler`] or [`LoggingStage`] shows bytes: Netty's
/// `ByteBufFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteFormat {
    /// The length, then a [`hex_dump`] of the bytes (the default).
    #[default]
    HexDump,
    /// The length only.
    Simple,
}

/// Wraps any protocol and logs what happens to its connection through the
/// `log` crate: Netty's `LoggingHandler`.
///
/// Every event is passed on unchanged. Each line starts with the
/// connection, as Netty prints a channel:
/// `[id: 0x0000002a, L:127.0.0.1:8007 - R:127.0.0.1:53412]` (` ! ` instead
/// of ` - ` once it is closed). Logged, with the [target](log::Record::target)
/// set by [`name`](Self::name):
///
/// | event | line | level |
/// |---|---|---|
/// | `connection_made` | `ACTIVE` | [`level`](Self::level) (info) |
/// | `data_received` | `READ: <n>B` and a [`hex_dump`] | [`traffic_level`](Self::traffic_level) (debug) |
/// | bytes written during a callback | `WRITE: <n>B` (length only) | traffic level |
/// | `write_complete` | `WRITE COMPLETE` | traffic level |
/// | `pause_writing` / `resume_writing` | `WRITABILITY CHANGED: paused` / `resumed` | traffic level |
/// | `event_received` | `USER_EVENT: <type>` | level |
/// | `eof_received` | `READ EOF` | level |
/// | `connection_lost` | `INACTIVE: <reason>` | level |
///
/// An event is shown by its type's name (`USER_EVENT: u32`), or as it
/// displays for an [`IdleStateEvent`](crate::handler::IdleStateEvent)
/// (`USER_EVENT: IdleStateEvent(READER_IDLE, first)`). Dumps are built
/// only when their level is enabled.
///
/// Writes are seen through the transport's counters during the inner
/// protocol's callbacks (see [Seeing writes](crate::handler#seeing-writes)),
/// so the wrapper logs their length only, never their bytes. To log the
/// payloads of writes, and decoded messages, user events and exceptions
/// as they travel a [`Pipeline`](crate::codec::pipeline::Pipeline), use
/// the stage form, [`LoggingStage`], which takes the same options.
///
/// # Examples
///
/// ```
/// use twill::{testing::StringTransport, Bytes, Protocol};
/// use twill_protocols::handler::{ByteFormat, LoggingHandler};
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// // Logs "[id: 0x..., L:127.0.0.1:12345 - R:127.0.0.1:54321] ACTIVE" and
/// // "... READ: 5B" with a dump, under the target "echo".
/// let mut handler = LoggingHandler::new(Discard)
///     .name("echo")
///     .format(ByteFormat::HexDump);
/// handler.connection_made(&StringTransport::new().transport());
/// handler.data_received(Bytes::from_static(b"hello"));
/// ```
pub struct LoggingHandler<P> {
    inner: P,
    settings: Settings,
    transport: Option<Transport>,
    meter: OutputMeter,
}

impl<P: Protocol> LoggingHandler<P> {
    /// Wraps `inner`, logging under the target
    /// `twill_protocols::handler::logging`, lifecycle events at info and
    /// traffic at debug, with hex dumps.
    pub fn new(inner: P) -> Self {
        LoggingHandler {
            inner,
            settings: Settings::new(),
            transport: None,
            meter: OutputMeter::new(),
        }
    }

    /// Logs under the target `name` (Netty's logger name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// The level for the connection made and lost, user events and EOF.
    pub fn level(mut self, level: Level) -> Self {
        self.settings.level = level;
        self
    }

    /// The level for reads, writes, write completions and writability
    /// changes.
    pub fn traffic_level(mut self, level: Level) -> Self {
        self.settings.traffic_level = level;
        self
    }

    /// How reads are shown.
    pub fn format(mut self, format: ByteFormat) -> Self {
        self.settings.format = format;
        self
    }

    /// This connection's id, as printed.
    pub fn id(&self) -> u32 {
        self.settings.id
    }

    /// The wrapped protocol.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped protocol, mutably.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    fn on(&self) -> On<'_> {
        On {
            transport: self.transport.as_ref(),
            open: true,
        }
    }

    fn log(&self, level: Level, line: &str) {
        self.settings.log(level, self.on(), line);
    }

    /// Calls into the protocol and logs what it wrote.
    fn call_inner<R>(&mut self, f: impl FnOnce(&mut P) -> R) -> R {
        if let Some(transport) = &self.transport {
            self.meter.look(transport);
        }
        let result = f(&mut self.inner);
        if let Some(transport) = &self.transport {
            let written = self.meter.added(transport);
            if written > 0 {
                let level = self.settings.traffic_level;
                self.settings
                    .log(level, self.on(), format_args!("WRITE: {written}B"));
            }
        }
        result
    }
}

impl<P: Protocol> Protocol for LoggingHandler<P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.log(self.settings.level, "ACTIVE");
        self.call_inner(|inner| inner.connection_made(transport));
    }

    fn data_received(&mut self, data: Bytes) {
        self.settings.log_bytes(self.on(), "READ", &data);
        self.call_inner(|inner| inner.data_received(data));
    }

    fn eof_received(&mut self) -> bool {
        self.log(self.settings.level, "READ EOF");
        self.call_inner(|inner| inner.eof_received())
    }

    fn connection_lost(&mut self, reason: &Reason) {
        let on = On {
            transport: self.transport.as_ref(),
            open: false,
        };
        let level = self.settings.level;
        self.settings
            .log(level, on, format_args!("INACTIVE: {reason}"));
        self.inner.connection_lost(reason);
        self.transport = None;
    }

    fn pause_writing(&mut self) {
        self.log(self.settings.traffic_level, "WRITABILITY CHANGED: paused");
        self.call_inner(|inner| inner.pause_writing());
    }

    fn resume_writing(&mut self) {
        self.log(self.settings.traffic_level, "WRITABILITY CHANGED: resumed");
        self.call_inner(|inner| inner.resume_writing());
    }

    fn write_complete(&mut self) {
        self.log(self.settings.traffic_level, "WRITE COMPLETE");
        self.call_inner(|inner| inner.write_complete());
    }

    fn event_received(&mut self, event: Event) {
        self.settings.log_event(self.on(), &event);
        self.call_inner(|inner| inner.event_received(event));
    }
}

impl<P> fmt::Debug for LoggingHandler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Settings {
            name,
            level,
            traffic_level,
            format,
            id,
        } = &self.settings;
        f.debug_struct("LoggingHandler")
            .field("id", id)
            .field("name", name)
            .field("level", level)
            .field("traffic_level", traffic_level)
            .field("format", format)
            .finish_non_exhaustive()
    }
}
