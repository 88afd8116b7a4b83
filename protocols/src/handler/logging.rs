//! [`LoggingHandler`]: logs what happens to a connection, and
//! [`hex_dump`], Netty's dump format.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU32, Ordering};

use log::Level;
use twill::{Bytes, Protocol, Reason, Transport};

use super::output::OutputMeter;

/// How a [`LoggingHandler`] shows the bytes read: Netty's `ByteBufFormat`.
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
/// | bytes written during a callback | `WRITE: <n>B` | traffic level |
/// | `eof_received` | `READ EOF` | level |
/// | `pause_writing` / `resume_writing` | `WRITABILITY CHANGED: paused` / `resumed` | traffic level |
/// | `connection_lost` | `INACTIVE: <reason>` | level |
///
/// Writes are seen through the transport's counters during the inner
/// protocol's callbacks (see [Seeing writes](crate::handler#seeing-writes)),
/// so they are logged by length, without their bytes; call [`hex_dump`]
/// yourself to log what you send. Dumps are built only when their level is
/// enabled.
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
    name: String,
    level: Level,
    traffic_level: Level,
    format: ByteFormat,
    id: u32,
    transport: Option<Transport>,
    meter: OutputMeter,
}

/// Connection ids, as Netty's channel ids (sequential here).
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

impl<P: Protocol> LoggingHandler<P> {
    /// Wraps `inner`, logging under the target
    /// `twill_protocols::handler::logging`, lifecycle events at info and
    /// traffic at debug, with hex dumps.
    pub fn new(inner: P) -> Self {
        LoggingHandler {
            inner,
            name: module_path!().to_owned(),
            level: Level::Info,
            traffic_level: Level::Debug,
            format: ByteFormat::HexDump,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            transport: None,
            meter: OutputMeter::new(),
        }
    }

    /// Logs under the target `name` (Netty's logger name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The level for connection made, EOF and connection lost.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// The level for reads, writes and writability changes.
    pub fn traffic_level(mut self, level: Level) -> Self {
        self.traffic_level = level;
        self
    }

    /// How reads are shown.
    pub fn format(mut self, format: ByteFormat) -> Self {
        self.format = format;
        self
    }

    /// This connection's id, as printed.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The wrapped protocol.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped protocol, mutably.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    fn enabled(&self, level: Level) -> bool {
        log::log_enabled!(target: self.name.as_str(), level)
    }

    fn log(&self, level: Level, message: fmt::Arguments<'_>) {
        if self.enabled(level) {
            log::log!(target: self.name.as_str(), level, "{} {message}", self.prefix(true));
        }
    }

    /// Netty's channel `toString`.
    fn prefix(&self, open: bool) -> String {
        match &self.transport {
            Some(transport) => {
                let sep = if open { " - " } else { " ! " };
                format!(
                    "[id: 0x{:08x}, L:{}{sep}R:{}]",
                    self.id,
                    transport.host(),
                    transport.peer()
                )
            }
            None => format!("[id: 0x{:08x}]", self.id),
        }
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
                self.log(self.traffic_level, format_args!("WRITE: {written}B"));
            }
        }
        result
    }
}

impl<P: Protocol> Protocol for LoggingHandler<P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.log(self.level, format_args!("ACTIVE"));
        self.call_inner(|inner| inner.connection_made(transport));
    }

    fn data_received(&mut self, data: Bytes) {
        if self.enabled(self.traffic_level) {
            match self.format {
                ByteFormat::HexDump if !data.is_empty() => self.log(
                    self.traffic_level,
                    format_args!("READ: {}B\n{}", data.len(), hex_dump(&data)),
                ),
                _ => self.log(self.traffic_level, format_args!("READ: {}B", data.len())),
            }
        }
        self.call_inner(|inner| inner.data_received(data));
    }

    fn eof_received(&mut self) -> bool {
        self.log(self.level, format_args!("READ EOF"));
        self.call_inner(|inner| inner.eof_received())
    }

    fn connection_lost(&mut self, reason: &Reason) {
        if self.enabled(self.level) {
            log::log!(
                target: self.name.as_str(),
                self.level,
                "{} INACTIVE: {reason}",
                self.prefix(false)
            );
        }
        self.inner.connection_lost(reason);
        self.transport = None;
    }

    fn pause_writing(&mut self) {
        self.log(
            self.traffic_level,
            format_args!("WRITABILITY CHANGED: paused"),
        );
        self.call_inner(|inner| inner.pause_writing());
    }

    fn resume_writing(&mut self) {
        self.log(
            self.traffic_level,
            format_args!("WRITABILITY CHANGED: resumed"),
        );
        self.call_inner(|inner| inner.resume_writing());
    }

    fn write_complete(&mut self) {
        self.log(self.traffic_level, format_args!("WRITE COMPLETE"));
        self.call_inner(|inner| inner.write_complete());
    }

    fn event_received(&mut self, event: twill::Event) {
        self.log(
            self.level,
            format_args!("USER_EVENT: {}", event.type_name()),
        );
        self.call_inner(|inner| inner.event_received(event));
    }
}

impl<P> fmt::Debug for LoggingHandler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggingHandler")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("level", &self.level)
            .field("traffic_level", &self.traffic_level)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// `bytes` as Netty's `ByteBufUtil.prettyHexDump` shows them: a header,
/// one row of 16 bytes per line (offset, hex, printable characters with
/// everything outside `0x20..=0x7e` as `.`), a closing rule; no trailing
/// newline. Empty input gives an empty string.
///
/// # Examples
///
/// ```
/// use twill_protocols::handler::hex_dump;
///
/// assert_eq!(
///     hex_dump(b"GET / HTTP/1.1\r\nHost: x\r\n"),
///     "         +-------------------------------------------------+\n\
///      \x20        |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |\n\
///      +--------+-------------------------------------------------+----------------+\n\
///      |00000000| 47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a |GET / HTTP/1.1..|\n\
///      |00000010| 48 6f 73 74 3a 20 78 0d 0a                      |Host: x..       |\n\
///      +--------+-------------------------------------------------+----------------+"
/// );
/// ```
pub fn hex_dump(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    const RULE: &str =
        "+--------+-------------------------------------------------+----------------+";
    let rows = bytes.len().div_ceil(16);
    let mut out = String::with_capacity((rows + 4) * (RULE.len() + 1));
    out.push_str("         +-------------------------------------------------+\n");
    out.push_str("         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |\n");
    out.push_str(RULE);
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "\n|{:08x}|", row * 16);
        for byte in chunk {
            let _ = write!(out, " {byte:02x}");
        }
        for _ in chunk.len()..16 {
            out.push_str("   ");
        }
        out.push_str(" |");
        for &byte in chunk {
            out.push(if (0x20..0x7f).contains(&byte) {
                char::from(byte)
            } else {
                '.'
            });
        }
        for _ in chunk.len()..16 {
            out.push(' ');
        }
        out.push('|');
    }
    out.push('\n');
    out.push_str(RULE);
    out
}
