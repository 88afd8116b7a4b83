//! [`LoggingStage`]: the pipeline-stage form of the logging handler, which
//! sees the messages themselves, written ones too.

use std::fmt;

use log::Level;
use twill::{Event, Reason};

use super::format::{On, Settings};
use super::ByteFormat;
use crate::codec::pipeline::{Message, StageContext, StageHandler};
use crate::codec::{DecodeError, EncodeError};

/// A pipeline stage that logs every event going by, both ways, through the
/// `log` crate: Netty's `LoggingHandler` as it sits in a `ChannelPipeline`.
/// Add it with [`Stage::handler`](crate::codec::pipeline::Stage::handler).
///
/// Unlike the [`LoggingHandler`](super::LoggingHandler) wrapper, which sees
/// writes only through the transport's counters and logs their length, the
/// stage sees each outbound message and logs its payload. Where it sits
/// decides what it sees: first in the pipeline, the raw bytes read and the
/// bytes about to be written (as Netty's usual place for it); after a
/// decoder, the decoded messages.
///
/// Every event is passed on unchanged. Lines start with the connection as
/// the wrapper's do (`[id: 0x0000002a, L:127.0.0.1:8007 - R:127.0.0.1:53412]`,
/// ` ! ` once it is lost), go to the [target](log::Record::target) set by
/// [`name`](Self::name), and the same builder options apply:
///
/// | event | line | level |
/// |---|---|---|
/// | `handler_added` / `handler_removed` | `HANDLER ADDED` / `HANDLER REMOVED` | debug |
/// | `connection_made` | `ACTIVE` | [`level`](Self::level) (info) |
/// | `message_received` | `READ: <message>` | [`traffic_level`](Self::traffic_level) (debug) |
/// | `read_complete` | `READ COMPLETE` | traffic level |
/// | `event_received` | `USER_EVENT: <type>` | level |
/// | `exception_caught` | `EXCEPTION: <error>` | level |
/// | `eof_received` | `READ EOF` | level |
/// | `writability_changed` | `WRITABILITY CHANGED: paused` / `resumed` | traffic level |
/// | `write_complete` | `WRITE COMPLETE` | traffic level |
/// | `write` | `WRITE: <message>` | traffic level |
/// | `read` (a request for input) | `READ REQUEST` | traffic level |
/// | `connection_lost` | `INACTIVE: <reason>` | level |
///
/// A message is shown as:
/// - bytes (`Bytes`, `BytesMut`, `Vec<u8>`): `<n>B`, then on the next
///   lines a [`hex_dump`](super::hex_dump) unless it is empty or the
///   [`format`](Self::format) is [`ByteFormat::Simple`];
/// - text (`String`, `&'static str`): quoted and escaped, `"hi\n"`;
/// - anything else: `<message of a type that cannot be shown>`, since a
///   [`Message`] (`Box<dyn Any>`) does not carry its type's name.
///
/// An event is shown by its type's name (`USER_EVENT: u32`), or as it
/// displays for an [`IdleStateEvent`](crate::handler::IdleStateEvent)
/// (`USER_EVENT: IdleStateEvent(READER_IDLE, first)`).
///
/// Lines, dumps included, are built only when their level is enabled.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::{testing::StringTransport, Protocol};
/// use twill_protocols::codec::pipeline::*;
/// use twill_protocols::handler::{ByteFormat, LoggingStage};
///
/// struct Echo;
/// impl PipelineHandler for Echo {
///     fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
///         ctx.write(message);
///     }
/// }
///
/// let pipeline = Pipeline::new();
/// let logging = LoggingStage::new().name("echo").format(ByteFormat::HexDump);
/// pipeline.add_first("logging", Stage::handler(logging))?;
/// let mut protocol = PipelineProtocol::new(pipeline, Echo);
/// let recorder = StringTransport::new();
/// // Logs, under the target "echo": "[id: 0x..., L:127.0.0.1:12345 -
/// // R:127.0.0.1:54321] HANDLER ADDED" (debug), "... ACTIVE", then
/// // "... READ: 5B" and "... WRITE: 5B", each with a dump of "hello",
/// // and "... READ COMPLETE".
/// protocol.connection_made(&recorder.transport());
/// protocol.data_received(Bytes::from("hello"));
/// assert_eq!(recorder.value(), b"hello");
/// # Ok::<(), PipelineError>(())
/// ```
pub struct LoggingStage {
    settings: Settings,
    /// The connection was lost: lines show ` ! `.
    lost: bool,
}

impl LoggingStage {
    /// A stage logging under the target `twill_protocols::handler::logging`,
    /// lifecycle events at info and traffic at debug, with hex dumps (the
    /// [`LoggingHandler`](super::LoggingHandler)'s defaults).
    pub fn new() -> LoggingStage {
        LoggingStage {
            settings: Settings::new(),
            lost: false,
        }
    }

    /// Logs under the target `name` (Netty's logger name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// The level for the connection made and lost, user events,
    /// exceptions and EOF.
    pub fn level(mut self, level: Level) -> Self {
        self.settings.level = level;
        self
    }

    /// The level for messages read and written, read completions and read
    /// requests.
    pub fn traffic_level(mut self, level: Level) -> Self {
        self.settings.traffic_level = level;
        self
    }

    /// How byte messages are shown.
    pub fn format(mut self, format: ByteFormat) -> Self {
        self.settings.format = format;
        self
    }

    /// This stage's id, as printed (one stage per connection, as one
    /// pipeline is).
    pub fn id(&self) -> u32 {
        self.settings.id
    }

    fn on<'a>(&self, ctx: &'a StageContext<'_>) -> On<'a> {
        On {
            transport: Some(ctx.transport()),
            open: !self.lost,
        }
    }

    fn log(&self, ctx: &StageContext<'_>, level: Level, line: &str) {
        self.settings.log(level, self.on(ctx), line);
    }
}

impl Default for LoggingStage {
    fn default() -> Self {
        LoggingStage::new()
    }
}

impl StageHandler for LoggingStage {
    fn handler_added(&mut self, ctx: &mut StageContext<'_>) {
        self.log(ctx, Level::Debug, "HANDLER ADDED");
    }

    fn handler_removed(&mut self, ctx: &mut StageContext<'_>) {
        self.log(ctx, Level::Debug, "HANDLER REMOVED");
    }

    fn connection_made(&mut self, ctx: &mut StageContext<'_>) {
        self.log(ctx, self.settings.level, "ACTIVE");
    }

    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        self.settings.log_message(self.on(ctx), "READ", &*message);
        ctx.fire_message(message);
    }

    fn read_complete(&mut self, ctx: &mut StageContext<'_>) {
        self.log(ctx, self.settings.traffic_level, "READ COMPLETE");
        ctx.fire_read_complete();
    }

    fn event_received(&mut self, ctx: &mut StageContext<'_>, event: Event) {
        self.settings.log_event(self.on(ctx), &event);
        ctx.fire_event(event);
    }

    fn exception_caught(&mut self, ctx: &mut StageContext<'_>, error: DecodeError) {
        let level = self.settings.level;
        self.settings
            .log(level, self.on(ctx), format_args!("EXCEPTION: {error}"));
        ctx.fire_exception(error);
    }

    fn eof_received(&mut self, ctx: &mut StageContext<'_>) {
        self.log(ctx, self.settings.level, "READ EOF");
        ctx.fire_eof();
    }

    fn writability_changed(&mut self, ctx: &mut StageContext<'_>, writable: bool) {
        let line = if writable {
            "WRITABILITY CHANGED: resumed"
        } else {
            "WRITABILITY CHANGED: paused"
        };
        self.log(ctx, self.settings.traffic_level, line);
        ctx.fire_writability_changed(writable);
    }

    fn write_complete(&mut self, ctx: &mut StageContext<'_>) {
        self.log(ctx, self.settings.traffic_level, "WRITE COMPLETE");
        ctx.fire_write_complete();
    }

    fn connection_lost(&mut self, ctx: &mut StageContext<'_>, reason: &Reason) {
        self.lost = true;
        let level = self.settings.level;
        self.settings
            .log(level, self.on(ctx), format_args!("INACTIVE: {reason}"));
    }

    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        self.settings.log_message(self.on(ctx), "WRITE", &*message);
        ctx.write(message);
        Ok(())
    }

    fn read(&mut self, ctx: &mut StageContext<'_>) {
        self.log(ctx, self.settings.traffic_level, "READ REQUEST");
        ctx.read();
    }
}

impl fmt::Debug for LoggingStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Settings {
            name,
            level,
            traffic_level,
            format,
            id,
        } = &self.settings;
        f.debug_struct("LoggingStage")
            .field("id", id)
            .field("name", name)
            .field("level", level)
            .field("traffic_level", traffic_level)
            .field("format", format)
            .field("lost", &self.lost)
            .finish()
    }
}
