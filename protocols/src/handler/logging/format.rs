//! What both forms of the logging handler share: their settings, the line
//! prefix, how messages and events are shown, and [`hex_dump`].

use std::any::Any;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::{Bytes, BytesMut};
use log::Level;
use twill::{Event, Transport};

use super::ByteFormat;
use crate::handler::IdleStateEvent;

/// Connection ids, as Netty's channel ids (sequential here).
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The builder options of [`LoggingHandler`](super::LoggingHandler) and
/// [`LoggingStage`](super::LoggingStage), and the logging itself.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) name: String,
    pub(super) level: Level,
    pub(super) traffic_level: Level,
    pub(super) format: ByteFormat,
    pub(super) id: u32,
}

impl Settings {
    /// The defaults: target `twill_protocols::handler::logging`, lifecycle
    /// at info, traffic at debug, hex dumps; a new id.
    pub(super) fn new() -> Settings {
        Settings {
            name: "twill_protocols::handler::logging".to_owned(),
            level: Level::Info,
            traffic_level: Level::Debug,
            format: ByteFormat::HexDump,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether a line at `level` would be logged: check before building
    /// anything costly.
    pub(super) fn enabled(&self, level: Level) -> bool {
        log::log_enabled!(target: self.name.as_str(), level)
    }

    /// Logs `message` at `level`, after the connection's prefix, if that
    /// level is enabled. `message` is formatted only then.
    pub(super) fn log(&self, level: Level, on: On<'_>, message: impl fmt::Display) {
        if self.enabled(level) {
            let prefix = Prefix { id: self.id, on };
            log::log!(target: self.name.as_str(), level, "{prefix} {message}");
        }
    }

    /// `<what>: <message>`, the message shown as [`Shown`] says, at the
    /// traffic level.
    pub(super) fn log_message(&self, on: On<'_>, what: &str, message: &dyn Any) {
        let format = self.format;
        self.log(
            self.traffic_level,
            on,
            format_args!("{what}: {}", Shown { message, format }),
        );
    }

    /// `<what>: <n>B` and, with [`ByteFormat::HexDump`], a dump of `bytes`,
    /// at the traffic level.
    pub(super) fn log_bytes(&self, on: On<'_>, what: &str, bytes: &[u8]) {
        let format = self.format;
        self.log(
            self.traffic_level,
            on,
            format_args!("{what}: {}", Payload { bytes, format }),
        );
    }

    /// `USER_EVENT: <event>` at the lifecycle level.
    pub(super) fn log_event(&self, on: On<'_>, event: &Event) {
        self.log(
            self.level,
            on,
            format_args!("USER_EVENT: {}", EventName(event)),
        );
    }
}

/// The connection a line is about, for its prefix.
#[derive(Clone, Copy)]
pub(super) struct On<'a> {
    /// `None` before the connection is made.
    pub(super) transport: Option<&'a Transport>,
    /// `false` once the connection is lost.
    pub(super) open: bool,
}

/// Netty's channel `toString`: `[id: 0x0000002a, L:<host> - R:<peer>]`,
/// ` ! ` once closed, `[id: 0x0000002a]` without a connection.
struct Prefix<'a> {
    id: u32,
    on: On<'a>,
}

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.on.transport {
            Some(transport) => {
                let sep = if self.on.open { " - " } else { " ! " };
                write!(
                    f,
                    "[id: 0x{:08x}, L:{}{sep}R:{}]",
                    self.id,
                    transport.host(),
                    transport.peer()
                )
            }
            None => write!(f, "[id: 0x{:08x}]", self.id),
        }
    }
}

/// `<n>B`, then a newline and a [`hex_dump`] unless the format is
/// [`ByteFormat::Simple`] or there are no bytes.
struct Payload<'a> {
    bytes: &'a [u8],
    format: ByteFormat,
}

impl fmt::Display for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.bytes.len())?;
        if self.format == ByteFormat::HexDump && !self.bytes.is_empty() {
            f.write_char('\n')?;
            write_hex_dump(f, self.bytes)?;
        }
        Ok(())
    }
}

/// What a [`LoggingStage`](super::LoggingStage) line shows of a pipeline
/// message: bytes (`Bytes`, `BytesMut`, `Vec<u8>`) as a [`Payload`], text
/// (`String`, `&'static str`) quoted and escaped, anything else as
/// [`UNKNOWN`]: a `Box<dyn Any>` does not know its type's name.
struct Shown<'a> {
    message: &'a dyn Any,
    format: ByteFormat,
}

/// How a message that is neither bytes nor text is shown.
pub(super) const UNKNOWN: &str = "<message of a type that cannot be shown>";

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.message;
        let bytes: Option<&[u8]> = if let Some(bytes) = message.downcast_ref::<Bytes>() {
            Some(bytes)
        } else if let Some(bytes) = message.downcast_ref::<BytesMut>() {
            Some(bytes)
        } else {
            message.downcast_ref::<Vec<u8>>().map(Vec::as_slice)
        };
        if let Some(bytes) = bytes {
            let format = self.format;
            return Payload { bytes, format }.fmt(f);
        }
        let text: Option<&str> = if let Some(text) = message.downcast_ref::<String>() {
            Some(text)
        } else {
            message.downcast_ref::<&'static str>().copied()
        };
        match text {
            Some(text) => write!(f, "{text:?}"),
            None => f.write_str(UNKNOWN),
        }
    }
}

/// An event's type name, or its `Display` for an [`IdleStateEvent`].
struct EventName<'a>(&'a Event);

impl fmt::Display for EventName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.downcast_ref::<IdleStateEvent>() {
            Some(idle) => idle.fmt(f),
            None => f.write_str(self.0.type_name()),
        }
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
    let rows = bytes.len().div_ceil(16);
    let mut out = String::with_capacity((rows + 4) * (RULE.len() + 1));
    let _ = write_hex_dump(&mut out, bytes);
    out
}

const RULE: &str = "+--------+-------------------------------------------------+----------------+";

/// Writes [`hex_dump`]'s text to `out`.
fn write_hex_dump(out: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    if bytes.is_empty() {
        return Ok(());
    }
    out.write_str("         +-------------------------------------------------+\n")?;
    out.write_str("         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |\n")?;
    out.write_str(RULE)?;
    for (row, chunk) in bytes.chunks(16).enumerate() {
        write!(out, "\n|{:08x}|", row * 16)?;
        for byte in chunk {
            write!(out, " {byte:02x}")?;
        }
        for _ in chunk.len()..16 {
            out.write_str("   ")?;
        }
        out.write_str(" |")?;
        for &byte in chunk {
            out.write_char(if (0x20..0x7f).contains(&byte) {
                char::from(byte)
            } else {
                '.'
            })?;
        }
        for _ in chunk.len()..16 {
            out.write_char(' ')?;
        }
        out.write_char('|')?;
    }
    out.write_char('\n')?;
    out.write_str(RULE)
}
