//! The pyboot-netty client configuration on twill's runtime pipeline
//! (Netty's `ChannelPipeline`), as a server and as a client.
//!
//! ```text
//! cargo run -p twill-protocols --example codec_pipeline [ENDPOINT]   # serve; default 127.0.0.1:8007
//! cargo run -p twill-protocols --example codec_pipeline -- --client ENDPOINT [MESSAGE...]
//! # options, before the endpoint and the messages: --idle-ms MS (default 20000)
//! cargo run -p twill-protocols --example codec_pipeline -- unix:/tmp/pipeline.sock
//! cargo run -p twill-protocols --example codec_pipeline -- --client unix:/tmp/pipeline.sock hello
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1` to serve, `tcp:host=127.0.0.1:port=8007`
//! to connect, `unix:/tmp/pipeline.sock` for both), taken by
//! [`Reactor::server_from_string`] and [`Reactor::client_from_string`].
//!
//! A frame is a 4-byte header (ignored on input, zero on output), a 4-byte
//! big-endian body length, and the body:
//!
//! ```text
//! | 0x00000000 | 0x00000007 | "  hi!  " |   ->   | 0x00000000 | 0x00000003 | "hi!" |
//! ```
//!
//! The server answers each message with itself, trimmed, in the same frame
//! format. The client sends each MESSAGE (or, without any, each line of
//! stdin) as a frame, prints each reply on its own line, and exits (status
//! 0) once every message is answered; it exits with status 1 if the
//! connection ends first.
//!
//! # The pipeline, first (nearest the socket) to last
//!
//! 1. `IdleStateHandler`: tells the handler when the connection has been
//!    idle. Reader idle (nothing read for 3 × `--idle-ms`, 60 s by
//!    default): the handler closes the connection. Writer idle (client
//!    only; nothing written for `--idle-ms`): the client sends a heartbeat,
//!    a frame with an empty body, which the server answers like any
//!    message; so a client waiting for its replies is not cut off by the
//!    server's reader-idle limit.
//! 2. `LoggingHandler`: logs the connection's events (active, user
//!    events, EOF, inactive) at info level, and the bytes read and written
//!    as hex dumps at debug level (`RUST_LOG=debug`).
//! 3. `WriteTimeoutHandler`: closes the connection when a write is not
//!    taken by the peer within 10 s.
//! 4. `LengthFieldBasedFrameDecoder` (inbound; length field at offset 4, 4
//!    bytes, adjustment 0, strip 8; at most 64 KiB a frame, header
//!    included): cuts the byte stream into frame bodies.
//! 5. `StringDecoder` (inbound): decodes each body as UTF-8.
//! 6. The prepender (outbound): writes each outgoing string as the 4 zero
//!    header bytes and a 4-byte `LengthFieldPrepender` length field, the
//!    body following uncopied (`Encoder::encode_parts`).
//! 7. The handler: the server's trims and answers; the client's sends,
//!    prints and counts.
//!
//! Stages 1 to 3 are twill protocol wrappers around a `PipelineProtocol`;
//! 4 to 6 are the runtime pipeline's `Stage`s, named `frameDecoder`,
//! `stringDecoder` and `frameEncoder`; 7 is its `PipelineHandler`. Idle
//! events (`IdleStateEvent`) pass through the wrappers and every stage to
//! the handler's `event_received`, as Netty's `userEventTriggered`.
//!
//! A length past the maximum frame length, a body that is not UTF-8, an
//! idle peer or a write timeout closes that connection only.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, BufRead};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use twill::defer::defer_to_thread;
use twill::net::endpoint::{parse_client_or_addr, parse_server_or_addr};
use twill::{ClientFactory, Connector, Event, Factory, Protocol, Reactor, Reason, Transport};
use twill_protocols::codec::pipeline::{
    Message, Pipeline, PipelineContext, PipelineHandler, PipelineProtocol, Stage,
};
use twill_protocols::codec::{
    EncodeError, Encoder, LengthFieldBasedFrameDecoder, LengthFieldPrepender, StringDecoder,
};
use twill_protocols::handler::{
    IdleState, IdleStateEvent, IdleStateHandler, LoggingHandler, WriteTimeoutHandler,
};

/// The largest frame accepted, header included.
const MAX_FRAME: usize = 64 * 1024;
/// The header before the length field: ignored on input, zeros on output.
const HEADER: usize = 4;
/// The client's writer-idle time; reader idle is three times as long.
const IDLE: Duration = Duration::from_secs(20);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "usage: codec_pipeline [--idle-ms MS] [ENDPOINT]
       codec_pipeline --client ENDPOINT [--idle-ms MS] [MESSAGE...]
ENDPOINT: an address (127.0.0.1:8007, the default) or an endpoint string
(tcp:8007:interface=127.0.0.1 to serve, tcp:host=127.0.0.1:port=8007 to connect,
unix:/tmp/pipeline.sock for both)";

/// The prepender: 4 zero header bytes, then what a 4-byte
/// `LengthFieldPrepender` writes (the length, then the body, uncopied).
#[derive(Debug, Clone, Copy)]
struct FrameEncoder {
    length: LengthFieldPrepender,
}

impl FrameEncoder {
    fn new() -> FrameEncoder {
        let length = LengthFieldPrepender::new(4).expect("4 is a length field size");
        FrameEncoder { length }
    }
}

impl<B: Into<Bytes>> Encoder<B> for FrameEncoder {
    fn encode(&mut self, item: B, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if let Some(body) = self.encode_parts(item, dst)? {
            dst.extend_from_slice(&body);
        }
        Ok(())
    }

    fn encode_parts(&mut self, item: B, dst: &mut BytesMut) -> Result<Option<Bytes>, EncodeError> {
        let start = dst.len();
        dst.put_bytes(0, HEADER);
        self.length.encode_parts(item, dst).inspect_err(|_| {
            // Nothing written on an error.
            dst.truncate(start);
        })
    }
}

/// Stages 4 to 6 of the module docs.
fn pipeline() -> Pipeline {
    let frames = LengthFieldBasedFrameDecoder::builder(MAX_FRAME)
        .length_field_offset(HEADER)
        .length_field_length(4)
        .length_adjustment(0)
        .initial_bytes_to_strip(HEADER + 4)
        .build()
        .expect("a valid length-field configuration");
    let pipeline = Pipeline::new();
    pipeline
        .add_last("frameDecoder", Stage::decoder(frames))
        .and_then(|p| p.add_last("stringDecoder", Stage::message_decoder(StringDecoder)))
        .and_then(|p| {
            p.add_last(
                "frameEncoder",
                Stage::encoder::<String, _>(FrameEncoder::new()),
            )
        })
        .expect("distinct stage names");
    pipeline
}

/// The whole configuration around `handler`: stages 1 to 3 wrap the
/// pipeline. `writer_idle` is zero (off) for the server.
fn protocol(handler: impl PipelineHandler, idle: Duration, writer_idle: Duration) -> impl Protocol {
    let codec = PipelineProtocol::new(pipeline(), handler);
    let timed = WriteTimeoutHandler::new(codec, WRITE_TIMEOUT);
    let logged = LoggingHandler::new(timed).name("codec_pipeline");
    IdleStateHandler::new(logged, 3 * idle, writer_idle, Duration::ZERO)
}

/// Closes the connection on reader idle; the other idle events are ignored.
fn close_if_reader_idle(ctx: &PipelineContext, idle: &IdleStateEvent) {
    if idle.state() == IdleState::ReaderIdle {
        log::info!("{} has been silent too long; closing", ctx.peer());
        ctx.lose_connection();
    }
}

// ---------------------------------------------------------------------------
// The server

/// Answers each message with itself, trimmed.
struct Trimmer;

impl PipelineHandler for Trimmer {
    fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
        let Ok(text) = message.downcast::<String>() else {
            return;
        };
        log::info!("{}: {text:?}", ctx.peer());
        ctx.write(text.trim().to_owned());
    }

    fn event_received(&mut self, ctx: &PipelineContext, event: Event) {
        if let Some(idle) = event.downcast_ref::<IdleStateEvent>() {
            close_if_reader_idle(ctx, idle);
        }
    }
}

fn serve(endpoint: &str, idle: Duration) -> io::Result<ExitCode> {
    let reactor = Reactor::new()?;
    let port = reactor.server_from_string(endpoint, move |_peer| {
        protocol(Trimmer, idle, Duration::ZERO)
    })?;
    log::info!("listening on {}", port.host());
    reactor.run()?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------
// The client

/// A line of stdin (`None` at its end), fired at the connection as an
/// event from the thread that reads it.
struct StdinLine(Option<String>);

/// Reads one line of stdin on a thread and fires it at `transport`.
fn read_stdin_line(transport: Transport) {
    defer_to_thread(|| {
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let end = line.trim_end_matches(['\r', '\n']).len();
        line.truncate(end);
        Ok(Some(line))
    })
    .add_both(move |read| {
        let line = read.unwrap_or_else(|failure| {
            log::error!("reading stdin: {failure}");
            None
        });
        transport.fire_event(Event::new(StdinLine(line)));
        Ok(None)
    });
}

/// What a reply, in order, answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Message,
    Heartbeat,
}

/// Sends the messages (or stdin's lines), prints the replies, and closes
/// once every message is answered.
struct Sender {
    /// The messages to send; `None`: stdin's lines.
    messages: Option<Vec<String>>,
    /// Everything sent and not answered yet: the server answers in order.
    sent: VecDeque<Sent>,
    /// No more messages will come.
    input_done: bool,
    /// Every message was answered.
    answered: Rc<Cell<bool>>,
}

impl Sender {
    fn send(&mut self, ctx: &PipelineContext, message: String) {
        ctx.write(message);
        self.sent.push_back(Sent::Message);
    }

    /// Closes the connection once nothing more is to come.
    fn finish_if_done(&mut self, ctx: &PipelineContext) {
        if self.input_done && !self.sent.contains(&Sent::Message) {
            self.answered.set(true);
            ctx.lose_connection();
        }
    }
}

impl PipelineHandler for Sender {
    fn connection_made(&mut self, ctx: &PipelineContext) {
        log::info!("connected to {}", ctx.peer());
        match self.messages.take() {
            Some(messages) => {
                for message in messages {
                    self.send(ctx, message);
                }
                self.input_done = true;
                self.finish_if_done(ctx);
            }
            None => read_stdin_line(ctx.transport().clone()),
        }
    }

    fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
        let Ok(reply) = message.downcast::<String>() else {
            return;
        };
        match self.sent.pop_front() {
            Some(Sent::Message) => println!("{reply}"),
            Some(Sent::Heartbeat) => log::debug!("heartbeat answered"),
            None => log::warn!("unasked-for reply: {reply:?}"),
        }
        self.finish_if_done(ctx);
    }

    fn event_received(&mut self, ctx: &PipelineContext, event: Event) {
        if let Some(idle) = event.downcast_ref::<IdleStateEvent>() {
            if idle.state() == IdleState::WriterIdle {
                log::info!("writer idle: sending a heartbeat");
                ctx.write(String::new());
                self.sent.push_back(Sent::Heartbeat);
            }
            close_if_reader_idle(ctx, idle);
        } else if let Ok(StdinLine(line)) = event.downcast::<StdinLine>() {
            match line {
                Some(line) => {
                    self.send(ctx, line);
                    read_stdin_line(ctx.transport().clone());
                }
                None => {
                    self.input_done = true;
                    self.finish_if_done(ctx);
                }
            }
        }
    }

    fn connection_lost(&mut self, _ctx: &PipelineContext, reason: &Reason) {
        let unanswered = self.sent.iter().filter(|s| **s == Sent::Message).count();
        if unanswered > 0 {
            log::error!("connection lost with {unanswered} message(s) unanswered: {reason}");
        }
    }
}

/// Builds the one connection's protocol and stops the reactor when it ends.
struct OneConnection {
    messages: Option<Vec<String>>,
    idle: Duration,
    answered: Rc<Cell<bool>>,
}

impl Factory for OneConnection {
    type Protocol = Box<dyn Protocol>;

    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Box<dyn Protocol>> {
        let sender = Sender {
            messages: self.messages.take(),
            sent: VecDeque::new(),
            input_done: false,
            answered: self.answered.clone(),
        };
        Some(Box::new(protocol(sender, self.idle, self.idle)))
    }
}

impl ClientFactory for OneConnection {
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        log::error!("connection failed: {reason}");
        twill::stop();
    }

    fn client_connection_lost(&mut self, _connector: &Connector, reason: &Reason) {
        log::info!("connection closed: {reason}");
        twill::stop();
    }
}

fn connect(endpoint: &str, messages: Vec<String>, idle: Duration) -> io::Result<ExitCode> {
    let answered = Rc::new(Cell::new(false));
    let factory = OneConnection {
        messages: (!messages.is_empty()).then_some(messages),
        idle,
        answered: answered.clone(),
    };
    let reactor = Reactor::new()?;
    reactor.client_from_string(endpoint, factory)?;
    reactor.run()?;
    Ok(if answered.get() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------

/// The command line: options first, then the endpoint (server) or the
/// messages (client).
struct Options {
    client: Option<String>,
    idle: Duration,
    rest: Vec<String>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        client: None,
        idle: IDLE,
        rest: Vec::new(),
    };
    let mut args = args.peekable();
    while let Some(flag) = args.next_if(|arg| arg.starts_with("--")) {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--client" => options.client = Some(value()?),
            "--idle-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--idle-ms: {e}"))?;
                options.idle = Duration::from_millis(ms);
            }
            "--" => break,
            other => return Err(format!("unknown option {other}")),
        }
    }
    options.rest.extend(args);
    Ok(options)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(why) => {
            eprintln!("{why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match options.client {
        Some(endpoint) => {
            if let Err(err) = parse_client_or_addr(&endpoint) {
                eprintln!("{err}\n{USAGE}");
                return ExitCode::from(2);
            }
            connect(&endpoint, options.rest, options.idle)
        }
        None if options.rest.len() > 1 => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        None => {
            let endpoint = options
                .rest
                .first()
                .map_or("127.0.0.1:8007", String::as_str);
            if let Err(err) = parse_server_or_addr(endpoint) {
                eprintln!("{err}\n{USAGE}");
                return ExitCode::from(2);
            }
            serve(endpoint, options.idle)
        }
    };
    result.unwrap_or_else(|error| {
        log::error!("{error}");
        ExitCode::FAILURE
    })
}
