//! The pipeline's stage-level capabilities, one test per rule of Netty's
//! `ChannelPipeline` (netty.md §11), `ByteToMessageDecoder` (§9) and
//! `FlowControlHandler` (§10.5): the lifecycle (`handler_added`,
//! `handler_removed`), `read_complete`, user events, exceptions travelling
//! through the stages, duplex stages, mutation (self-removal, the upgrade,
//! generated names, `remove_first/last/type`), pull reading with and
//! without a `FlowControlHandler`, and a stage that panics.
//!
//! Where a test ports one of Netty's, its doc comment names it; the
//! assertions are Netty's, adapted to twill's API: `EmbeddedChannel` becomes
//! a `StringTransport` driven by hand, `readInbound()` the handler's log,
//! `writeInbound` a `data_received`. The loopback tests run the server on
//! the test thread under `twill_test_support`'s watchdog, every client read
//! bounded by a timeout.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use twill::task::Clock;
use twill::testing::StringTransport;
use twill::{Event, Protocol, Reactor, ReactorHandle, Reason};
use twill_protocols::codec::pipeline::{
    Message, Pipeline, PipelineContext, PipelineError, PipelineHandler, PipelineProtocol, Stage,
    StageContext, StageHandler,
};
use twill_protocols::codec::{
    DecodeError, EncodeError, FixedLengthFrameDecoder, LengthFieldBasedFrameDecoder,
    LineBasedFrameDecoder, LineEncoder, StringDecoder,
};
use twill_protocols::handler::{FlowControlHandler, IdleStateEvent, IdleStateHandler};
use twill_test_support::client::Client;
use twill_test_support::events::{self, Log};
use twill_test_support::pressure::{self, mib, MIB};
use twill_test_support::reactor::serve;

// ------------------------------------------------------------------ helpers

fn describe(message: &Message) -> String {
    if let Some(s) = message.downcast_ref::<String>() {
        format!("str {s}")
    } else if let Some(b) = message.downcast_ref::<Bytes>() {
        format!("bytes {}", b.escape_ascii())
    } else if let Some(n) = message.downcast_ref::<u32>() {
        format!("u32 {n}")
    } else if let Some(n) = message.downcast_ref::<u8>() {
        format!("u8 {n}")
    } else {
        "other".into()
    }
}

fn describe_event(event: &Event) -> String {
    if let Some(s) = event.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = event.downcast_ref::<String>() {
        s.clone()
    } else if let Some(n) = event.downcast_ref::<u32>() {
        format!("u32 {n}")
    } else if let Some(idle) = event.downcast_ref::<IdleStateEvent>() {
        idle.to_string()
    } else {
        event.type_name().to_owned()
    }
}

/// A stage that logs every callback as `"<name> <what>"` and passes
/// everything on, as `StageHandler`'s defaults do.
struct Tap {
    name: &'static str,
    log: Log,
}

fn tap(log: &Log, name: &'static str) -> Stage {
    Stage::handler(Tap {
        name,
        log: log.clone(),
    })
}

impl Tap {
    fn note(&self, what: impl std::fmt::Display) {
        self.log.push(format!("{} {what}", self.name));
    }
}

impl StageHandler for Tap {
    fn handler_added(&mut self, _ctx: &mut StageContext<'_>) {
        self.note("added");
    }
    fn handler_removed(&mut self, _ctx: &mut StageContext<'_>) {
        self.note("removed");
    }
    fn connection_made(&mut self, _ctx: &mut StageContext<'_>) {
        self.note("made");
    }
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        self.note(format_args!("msg {}", describe(&message)));
        ctx.fire_message(message);
    }
    fn read_complete(&mut self, ctx: &mut StageContext<'_>) {
        self.note("complete");
        ctx.fire_read_complete();
    }
    fn event_received(&mut self, ctx: &mut StageContext<'_>, event: Event) {
        self.note(format_args!("event {}", describe_event(&event)));
        ctx.fire_event(event);
    }
    fn exception_caught(&mut self, ctx: &mut StageContext<'_>, error: DecodeError) {
        self.note(format_args!("error {error}"));
        ctx.fire_exception(error);
    }
    fn eof_received(&mut self, ctx: &mut StageContext<'_>) {
        self.note("eof");
        ctx.fire_eof();
    }
    fn writability_changed(&mut self, ctx: &mut StageContext<'_>, writable: bool) {
        self.note(format_args!("writable {writable}"));
        ctx.fire_writability_changed(writable);
    }
    fn write_complete(&mut self, ctx: &mut StageContext<'_>) {
        self.note("write complete");
        ctx.fire_write_complete();
    }
    fn connection_lost(&mut self, _ctx: &mut StageContext<'_>, _reason: &Reason) {
        self.note("lost");
    }
    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        self.note(format_args!("write {}", describe(&message)));
        ctx.write(message);
        Ok(())
    }
    fn read(&mut self, ctx: &mut StageContext<'_>) {
        self.note("read");
        ctx.read();
    }
}

type Hook = Box<dyn FnMut(&PipelineContext, &Message)>;

/// The handler after the last stage: logs what reaches it as `"h <what>"`,
/// runs `hook` on every message, never closes on an error (unlike the
/// default `exception_caught`), and answers `keep_open` to the EOF.
struct Sink {
    log: Log,
    hook: Option<Hook>,
    ctx: Option<PipelineContext>,
    keep_open: bool,
}

impl Sink {
    fn new(log: &Log) -> Sink {
        Sink {
            log: log.clone(),
            hook: None,
            ctx: None,
            keep_open: false,
        }
    }

    fn hook(mut self, hook: impl FnMut(&PipelineContext, &Message) + 'static) -> Sink {
        self.hook = Some(Box::new(hook));
        self
    }
}

impl PipelineHandler for Sink {
    fn connection_made(&mut self, ctx: &PipelineContext) {
        self.ctx = Some(ctx.clone());
        self.log.push("h made");
    }
    fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
        self.log.push(format!("h msg {}", describe(&message)));
        if let Some(hook) = &mut self.hook {
            hook(ctx, &message);
        }
    }
    fn read_complete(&mut self, _ctx: &PipelineContext) {
        self.log.push("h complete");
    }
    fn event_received(&mut self, _ctx: &PipelineContext, event: Event) {
        self.log.push(format!("h event {}", describe_event(&event)));
    }
    fn exception_caught(&mut self, _ctx: &PipelineContext, error: DecodeError) {
        self.log.push(format!("h error {error}"));
    }
    fn eof_received(&mut self, _ctx: &PipelineContext) -> bool {
        self.log.push("h eof");
        self.keep_open
    }
    fn connection_lost(&mut self, _ctx: &PipelineContext, _reason: &Reason) {
        self.log.push("h lost");
    }
    fn pause_writing(&mut self, _ctx: &PipelineContext) {
        self.log.push("h pause");
    }
    fn resume_writing(&mut self, _ctx: &PipelineContext) {
        self.log.push("h resume");
    }
    fn write_complete(&mut self, _ctx: &PipelineContext) {
        self.log.push("h write complete");
    }
}

/// Connects `handler` behind `pipeline` to a fresh `StringTransport`.
fn connect<H: PipelineHandler>(
    pipeline: Pipeline,
    handler: H,
) -> (PipelineProtocol<H>, StringTransport) {
    let mut protocol = PipelineProtocol::new(pipeline, handler);
    let transport = StringTransport::new();
    protocol.connection_made(&transport.transport());
    (protocol, transport)
}

fn ctx_of(protocol: &PipelineProtocol<Sink>) -> PipelineContext {
    protocol.handler().ctx.clone().expect("connected")
}

fn pipeline_of(stages: Vec<(&str, Stage)>) -> Pipeline {
    let pipeline = Pipeline::new();
    for (name, stage) in stages {
        pipeline.add_last(name, stage).unwrap();
    }
    pipeline
}

/// The log entries that contain `part`.
fn only(events: Vec<String>, part: &str) -> Vec<String> {
    events.into_iter().filter(|e| e.contains(part)).collect()
}

fn lines(n: usize) -> String {
    (0..n).map(|i| format!("{i}\n")).collect()
}

/// Netty's `OneByteToThreeStringsDecoder` (FlowControlHandlerTest): every
/// byte read becomes the messages "1", "2" and "3".
fn one_byte_to_three_strings() -> Stage {
    Stage::inbound(|message, out| {
        let bytes = message.downcast::<Bytes>().expect("bytes");
        for _ in 0..bytes.len() {
            for s in ["1", "2", "3"] {
                out.push(Box::new(s.to_owned()));
            }
        }
        Ok(())
    })
}

/// Runs `client` and stops the reactor whatever happens to it, so that a
/// failed client assertion fails the test instead of the watchdog.
fn then_stop<R>(handle: &ReactorHandle, client: impl FnOnce() -> R) -> R {
    let result = catch_unwind(AssertUnwindSafe(client));
    handle.stop();
    result.unwrap_or_else(|panic| resume_unwind(panic))
}

// ---------------------------------------------------------------- lifecycle

/// Netty §11.2: `handlerAdded` for every handler, then `channelActive` head
/// to tail; here the handler (the tail) last.
#[test]
fn handler_added_reaches_every_stage_before_any_connection_made_and_stages_are_made_before_the_handler(
) {
    let log = Log::default();
    let pipeline = pipeline_of(vec![("a", tap(&log, "a")), ("b", tap(&log, "b"))]);
    assert!(log.take().is_empty(), "no connection yet: no callback");
    let (_protocol, _t) = connect(pipeline, Sink::new(&log));
    assert_eq!(
        log.take(),
        ["a added", "b added", "a made", "b made", "h made"]
    );
}

/// DefaultChannelPipelineTest.testAddInListener: on a live connection,
/// `handlerAdded` has run when `addLast` returns, and an event fired next is
/// seen by the new handler. A stage added late is not told
/// `connection_made`: that event has passed.
#[test]
fn a_stage_added_on_a_live_connection_gets_handler_added_before_add_returns() {
    let log = Log::default();
    let (mut protocol, _t) = connect(pipeline_of(vec![("a", tap(&log, "a"))]), Sink::new(&log));
    log.take();
    let pipeline = protocol.pipeline();
    pipeline.add_last("c", tap(&log, "c")).unwrap();
    assert_eq!(log.take(), ["c added"]);
    pipeline.add_first("z", tap(&log, "z")).unwrap();
    assert_eq!(log.take(), ["z added"]);
    pipeline.add_before("c", "b", tap(&log, "b")).unwrap();
    assert_eq!(log.take(), ["b added"]);
    pipeline.add_after("c", "d", tap(&log, "d")).unwrap();
    assert_eq!(log.take(), ["d added"]);
    assert_eq!(pipeline.add(tap(&log, "t")), "Tap#0");
    assert_eq!(log.take(), ["t added"]);

    protocol.event_received(Event::new("ping"));
    assert_eq!(
        log.take(),
        [
            "z event ping",
            "a event ping",
            "b event ping",
            "c event ping",
            "d event ping",
            "t event ping",
            "h event ping"
        ]
    );
}

/// Netty §11.3 (`replace`): the new handler's `handlerAdded` runs before
/// the old one's `handlerRemoved`, so what the old one forwards reaches an
/// initialised new one (testAddHandlerBeforeRegisteredThenReplace).
#[test]
fn replace_runs_the_new_stage_handler_added_before_the_old_stage_handler_removed() {
    let log = Log::default();
    let (protocol, _t) = connect(
        pipeline_of(vec![("old", tap(&log, "old"))]),
        Sink::new(&log),
    );
    log.take();
    protocol
        .pipeline()
        .replace("old", "new", tap(&log, "new"))
        .unwrap();
    assert_eq!(log.take(), ["new added", "old removed"]);
    assert_eq!(protocol.pipeline().names(), ["new"]);
}

/// DefaultChannelPipelineTest.testHandlerAddedAndRemovedCalledInCorrectOrder:
/// handlers added before and after registration are all added in order;
/// when the channel closes they are removed tail to head. Here
/// `connection_lost` goes head to tail through the stages, then to the
/// handler, and only then is the pipeline torn down.
#[test]
fn connection_lost_reaches_stages_then_the_handler_then_handler_removed_runs_tail_to_head() {
    let log = Log::default();
    let (mut protocol, _t) = connect(pipeline_of(vec![("1", tap(&log, "1"))]), Sink::new(&log));
    for name in ["2", "3", "4"] {
        protocol.pipeline().add_last(name, tap(&log, name)).unwrap();
    }
    assert_eq!(
        only(log.take(), "added"),
        ["1 added", "2 added", "3 added", "4 added"]
    );
    protocol.connection_lost(&Reason::Done);
    assert_eq!(
        log.take(),
        [
            "1 lost",
            "2 lost",
            "3 lost",
            "4 lost",
            "h lost",
            "4 removed",
            "3 removed",
            "2 removed",
            "1 removed"
        ]
    );
}

// ------------------------------------------------------------ read_complete

/// Netty §11.2: `channelReadComplete` once per read batch, however many
/// messages the read decoded.
#[test]
fn one_read_of_100_frames_gives_the_handler_100_messages_and_one_read_complete() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("before", tap(&log, "before")),
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(16))),
        ("after", tap(&log, "after")),
    ]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from(lines(100)));
    let events = log.take();
    let expected: Vec<String> = (0..100).map(|i| format!("h msg bytes {i}")).collect();
    assert_eq!(only(events.clone(), "h msg"), expected);
    assert_eq!(
        only(events.clone(), "complete"),
        ["before complete", "after complete", "h complete"]
    );
    assert_eq!(events.last().unwrap(), "h complete", "after the messages");
}

/// Netty's ByteToMessageDecoder passes `channelReadComplete` on to the
/// tail even when the read decoded nothing; twill's handler hears
/// `read_complete` only for a read that brought it a message
/// (`PipelineHandler::read_complete`), while the stages see every end of
/// read.
#[test]
fn a_read_that_completes_no_frame_gives_the_handler_no_read_complete_but_stages_see_it() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("before", tap(&log, "before")),
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(16))),
        ("after", tap(&log, "after")),
    ]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from("part"));
    assert_eq!(
        log.take(),
        ["before msg bytes part", "before complete", "after complete"]
    );
    protocol.data_received(Bytes::from("ial\n"));
    assert_eq!(
        log.take(),
        [
            "before msg bytes ial\\n",
            "after msg bytes partial",
            "h msg bytes partial",
            "before complete",
            "after complete",
            "h complete"
        ]
    );
}

/// Counts messages and `read_complete`s; once it has 100 messages it tells
/// the client both counts at the next `read_complete`.
struct CountReads {
    messages: usize,
    completes: usize,
}

impl PipelineHandler for CountReads {
    fn message_received(&mut self, _ctx: &PipelineContext, _message: Message) {
        self.messages += 1;
    }
    fn read_complete(&mut self, ctx: &PipelineContext) {
        self.completes += 1;
        if self.messages >= 100 {
            ctx.write(Bytes::from(format!(
                "{} {}\n",
                self.messages, self.completes
            )));
        }
    }
}

/// The 100-frame read of the test above, over a real loopback socket.
#[test]
fn one_write_of_100_small_frames_over_loopback_gives_one_read_complete() {
    let reactor = Reactor::new().unwrap();
    let factory = |_peer| {
        let pipeline = pipeline_of(vec![(
            "lines",
            Stage::decoder(LineBasedFrameDecoder::new(16)),
        )]);
        PipelineProtocol::new(
            pipeline,
            CountReads {
                messages: 0,
                completes: 0,
            },
        )
    };
    let reply = serve(&reactor, factory, |addr, handle| {
        then_stop(&handle, || {
            let mut client = Client::connect(addr);
            // Assumption: 290 bytes written by one write_all on loopback
            // leave in one segment and are read by the server's first read
            // (its buffer takes 64 KiB). Were they split, the reply would
            // say "100 2".
            let burst = lines(100);
            assert!(burst.len() < 300);
            client.send(burst.as_bytes());
            client.line_str()
        })
    });
    assert_eq!(reply, "100 1\n");
}

// -------------------------------------------------------------- user events

/// Netty §11.2 `userEventTriggered` (pipeline.fireUserEventTriggered starts
/// at the head): an event fired at the connection, through the transport or
/// the handler's context, enters at the first stage and passes them all in
/// order. A `StringTransport` keeps fired events; the test hands them to
/// the protocol as the reactor would.
#[test]
fn an_event_fired_at_the_connection_enters_at_the_first_stage_and_passes_every_stage() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![("a", tap(&log, "a")), ("b", tap(&log, "b"))]);
    let (mut protocol, transport) = connect(pipeline, Sink::new(&log));
    log.take();
    ctx_of(&protocol).fire_event(Event::new("one"));
    transport.transport().fire_event(Event::new("two"));
    assert!(
        log.take().is_empty(),
        "not delivered before the reactor does"
    );
    for event in transport.take_events() {
        protocol.event_received(event);
    }
    assert_eq!(
        log.take(),
        [
            "a event one",
            "b event one",
            "h event one",
            "a event two",
            "b event two",
            "h event two"
        ]
    );
}

/// On a message, fires an event at its connection and writes "fired";
/// writes back the events that reach it.
struct FireBack;

impl PipelineHandler for FireBack {
    fn message_received(&mut self, ctx: &PipelineContext, _message: Message) {
        ctx.fire_event(Event::new("from handler"));
        ctx.write(Bytes::from_static(b"fired\n"));
    }
    fn event_received(&mut self, ctx: &PipelineContext, event: Event) {
        ctx.write(Bytes::from(format!("event {}\n", describe_event(&event))));
    }
}

/// The same over a real connection, where the reactor delivers the event:
/// fired from the handler's callback, it arrives after that callback
/// returns, at the first stage.
#[test]
fn an_event_the_handler_fires_over_loopback_comes_back_through_the_first_stage() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let factory = move |_peer| {
        let pipeline = pipeline_of(vec![("tap", tap(&server_log, "tap"))]);
        PipelineProtocol::new(pipeline, FireBack)
    };
    let replies = serve(&reactor, factory, |addr, handle| {
        then_stop(&handle, || {
            let mut client = Client::connect(addr);
            client.send(b"x");
            [client.line_str(), client.line_str()]
        })
    });
    assert_eq!(replies, ["fired\n", "event from handler\n"]);
    assert_eq!(only(log.take(), "tap event"), ["tap event from handler"]);
}

/// Swallows "secret" events and turns `u32` events into strings.
struct EventFilter;

impl StageHandler for EventFilter {
    fn event_received(&mut self, ctx: &mut StageContext<'_>, event: Event) {
        if event.downcast_ref::<&str>() == Some(&"secret") {
            return;
        }
        match event.downcast::<u32>() {
            Ok(n) => ctx.fire_event(Event::new(format!("n={n}"))),
            Err(other) => ctx.fire_event(other),
        }
    }
}

#[test]
fn a_stage_can_consume_or_transform_an_event() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("before", tap(&log, "before")),
        ("filter", Stage::handler(EventFilter)),
        ("after", tap(&log, "after")),
    ]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.event_received(Event::new("secret"));
    protocol.event_received(Event::new(7u32));
    protocol.event_received(Event::new("plain"));
    assert_eq!(
        log.take(),
        [
            "before event secret",
            "before event u32 7",
            "after event n=7",
            "h event n=7",
            "before event plain",
            "after event plain",
            "h event plain"
        ]
    );
}

/// Fires "up" at `connection_made`, and "greeted" after each message.
struct Announcer;

impl StageHandler for Announcer {
    fn connection_made(&mut self, ctx: &mut StageContext<'_>) {
        ctx.fire_event(Event::new("up"));
    }
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        ctx.fire_message(message);
        ctx.fire_event(Event::new("greeted"));
    }
}

/// Netty's `ctx.fireUserEventTriggered` from a handler: the event starts at
/// the next handler, so the stages before the one firing never see it.
#[test]
fn a_stage_can_fire_its_own_event_which_only_later_stages_and_the_handler_see() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("before", tap(&log, "before")),
        ("announcer", Stage::handler(Announcer)),
        ("after", tap(&log, "after")),
    ]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    assert_eq!(only(log.take(), "event"), ["after event up", "h event up"]);
    protocol.data_received(Bytes::from("hello"));
    assert_eq!(
        log.take(),
        [
            "before msg bytes hello",
            "after msg bytes hello",
            "h msg bytes hello",
            "after event greeted",
            "h event greeted",
            "before complete",
            "after complete",
            "h complete"
        ]
    );
}

/// Answers writer-idle events itself with a ping (a heartbeat), and passes
/// the others on.
struct Heartbeat;

impl StageHandler for Heartbeat {
    fn event_received(&mut self, ctx: &mut StageContext<'_>, event: Event) {
        match event.downcast_ref::<IdleStateEvent>() {
            Some(idle) if idle.state() == twill_protocols::handler::IdleState::WriterIdle => {
                ctx.write(Bytes::from_static(b"ping\n"));
            }
            _ => ctx.fire_event(event),
        }
    }
}

/// IdleStateHandler wraps the whole `PipelineProtocol` (it is a Protocol
/// wrapper in twill): its events enter at the first stage like any other,
/// so a stage can act on some (a heartbeat on writer idle) and the handler
/// gets the rest.
#[test]
fn idle_state_events_from_an_idle_state_handler_pass_through_the_stages_to_the_handler() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("tap", tap(&log, "tap")),
        ("heartbeat", Stage::handler(Heartbeat)),
    ]);
    let secs = Duration::from_secs;
    let clock = Clock::new();
    let mut idle = IdleStateHandler::new(
        PipelineProtocol::new(pipeline, Sink::new(&log)),
        secs(10),
        secs(4),
        Duration::ZERO,
    )
    .clock(Rc::new(clock.clone()));
    let transport = StringTransport::new();
    idle.connection_made(&transport.transport());
    log.take();

    clock.advance(secs(4));
    assert_eq!(transport.value(), b"ping\n");
    assert_eq!(
        log.take(),
        [
            "tap event IdleStateEvent(WRITER_IDLE, first)",
            "tap write bytes ping\\n"
        ]
    );
    clock.advance(secs(4));
    assert_eq!(transport.value(), b"ping\nping\n");
    log.take();
    clock.advance(secs(2));
    assert_eq!(
        only(log.take(), "READER"),
        [
            "tap event IdleStateEvent(READER_IDLE, first)",
            "h event IdleStateEvent(READER_IDLE, first)"
        ]
    );
    // A read starts a new streak.
    idle.data_received(Bytes::from("x"));
    log.take();
    clock.advance(secs(10));
    assert_eq!(
        only(log.take(), "h event"),
        ["h event IdleStateEvent(READER_IDLE, first)"]
    );
}

// --------------------------------------------------------------- exceptions

/// Netty §11.4: an exception goes from handler to handler through
/// `exceptionCaught` (whose default forwards it) to the tail. A recoverable
/// error does not close the connection when the handler does not.
#[test]
fn a_decode_error_from_the_first_stage_travels_through_every_later_stage_to_the_handler() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(3))),
        ("a", tap(&log, "a")),
        ("b", tap(&log, "b")),
    ]);
    let (mut protocol, transport) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from("ok\ntoolong\nfin\n"));
    let error = "frame length (7) exceeds the allowed maximum (3)";
    assert_eq!(
        only(log.take(), "error"),
        [
            format!("a error {error}"),
            format!("b error {error}"),
            format!("h error {error}")
        ]
    );
    assert!(!transport.disconnecting());
}

/// Logs errors and does not pass them on.
struct Swallow(Log);

impl StageHandler for Swallow {
    fn exception_caught(&mut self, _ctx: &mut StageContext<'_>, error: DecodeError) {
        self.0.push(format!("swallowed {error}"));
    }
}

/// Netty §11.4: a handler that handles the exception in `exceptionCaught`
/// and does not forward it ends its journey; a recoverable error leaves the
/// connection open even though the handler's default would close it.
#[test]
fn a_stage_that_handles_a_recoverable_error_stops_it_and_the_connection_stays_open() {
    struct DefaultErrors(Log);
    impl PipelineHandler for DefaultErrors {
        fn message_received(&mut self, _ctx: &PipelineContext, message: Message) {
            self.0.push(describe(&message));
        }
    }
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(3))),
        ("swallow", Stage::handler(Swallow(log.clone()))),
        ("after", tap(&log, "after")),
    ]);
    let (mut protocol, transport) = connect(pipeline, DefaultErrors(log.clone()));
    protocol.data_received(Bytes::from("ok\ntoolong\nfin\n"));
    assert_eq!(
        only(log.take(), "bytes"),
        [
            "after msg bytes ok",
            "bytes ok",
            "after msg bytes fin",
            "bytes fin"
        ]
    );
    assert!(!transport.disconnecting(), "{:?}", transport.failure());
}

#[test]
fn an_unrecoverable_error_closes_the_connection_even_if_a_stage_swallows_it() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(16))),
        ("utf8", Stage::message_decoder(StringDecoder)),
        ("swallow", Stage::handler(Swallow(log.clone()))),
    ]);
    let (mut protocol, transport) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from_static(b"a\n\xff\nb\n"));
    protocol.data_received(Bytes::from_static(b"c\n"));
    let events = log.take();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], "h msg str a");
    assert!(events[1].starts_with("swallowed frame is not valid UTF-8"));
    assert_eq!(
        transport.failure().unwrap(),
        "corrupt input: unrecoverable decode error"
    );
}

/// Netty logs an exception that reaches the tail; twill's handler default
/// closes the connection with it, even for a recoverable one.
#[test]
fn the_handler_default_exception_caught_closes_the_connection_even_for_a_recoverable_error() {
    struct Quiet;
    impl PipelineHandler for Quiet {
        fn message_received(&mut self, _ctx: &PipelineContext, _message: Message) {}
    }
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(3))),
        ("tap", tap(&log, "tap")),
    ]);
    let (mut protocol, transport) = connect(pipeline, Quiet);
    protocol.data_received(Bytes::from("toolong\nfin\n"));
    assert_eq!(
        only(log.take(), "error"),
        ["tap error frame length (7) exceeds the allowed maximum (3)"]
    );
    assert!(transport
        .failure()
        .unwrap()
        .contains("exceeds the allowed maximum"));
}

// ------------------------------------------------------------------- duplex

/// Netty's `ByteToMessageCodec`: one stage, decoding one way and encoding
/// the other, found by either type and removed as one (its leftover bytes
/// handed on).
#[test]
fn a_codec_stage_decodes_inbound_and_encodes_outbound_and_goes_as_one() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        (
            "lines",
            Stage::codec::<String, _, _>(LineBasedFrameDecoder::new(64), LineEncoder::new()),
        ),
        ("utf8", Stage::message_decoder(StringDecoder)),
    ]);
    assert!(format!("{pipeline:?}").contains("\"lines\": Stage(duplex"));
    let handler = Sink::new(&log).hook(|ctx, message| {
        let line = message.downcast_ref::<String>().expect("a String");
        if ctx.pipeline().names().contains(&"lines".to_owned()) {
            ctx.write(line.to_uppercase());
        } else {
            ctx.write(Bytes::from(line.to_uppercase()));
        }
    });
    let (mut protocol, transport) = connect(pipeline, handler);
    protocol.data_received(Bytes::from("ab\ncd\nef"));
    assert_eq!(transport.value(), b"AB\nCD\n");
    let pipeline = protocol.pipeline();
    assert_eq!(
        pipeline
            .get::<LineBasedFrameDecoder>("lines")
            .unwrap()
            .max_length(),
        64
    );
    assert!(pipeline.get::<LineEncoder>("lines").is_some());
    assert_eq!(pipeline.remove_type::<LineEncoder>(), Ok("lines".into()));
    // The unfinished "ef" went on to the string decoder and the handler.
    assert_eq!(transport.value(), b"AB\nCD\nEF");
    assert_eq!(pipeline.names(), ["utf8"]);
}

/// Decodes byte frames into `u32`s and encodes `u32`s into lines: a
/// `StageHandler` acting as Netty's `MessageToMessageCodec`.
struct Numbers;

impl StageHandler for Numbers {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        match message.downcast::<Bytes>() {
            Ok(frame) => {
                let n: u32 = std::str::from_utf8(&frame).unwrap().parse().unwrap();
                ctx.fire_message(n);
            }
            Err(other) => ctx.fire_message(other),
        }
    }
    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        match message.downcast::<u32>() {
            Ok(n) => ctx.write(Bytes::from(format!("{n}\n"))),
            Err(other) => ctx.write(other),
        }
        Ok(())
    }
}

#[test]
fn a_stage_handler_that_both_decodes_and_encodes() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(16))),
        ("numbers", Stage::handler(Numbers)),
    ]);
    let handler = Sink::new(&log).hook(|ctx, message| {
        if let Some(n) = message.downcast_ref::<u32>() {
            ctx.write(n * 2);
        }
    });
    let (mut protocol, transport) = connect(pipeline, handler);
    log.take();
    protocol.data_received(Bytes::from("1\n21\n"));
    assert_eq!(only(log.take(), "msg"), ["h msg u32 1", "h msg u32 21"]);
    assert_eq!(transport.value(), b"2\n42\n");
    // Other outbound messages pass through untouched.
    ctx_of(&protocol).write(Bytes::from("raw"));
    assert_eq!(transport.value(), b"2\n42\nraw");
}

/// Logs `in <tag>` on messages and `out <tag>` on writes, for the
/// directions it is given; on a message `"from-<tag>"` it writes through its
/// own context.
struct Directed {
    tag: &'static str,
    inbound: bool,
    outbound: bool,
    log: Log,
}

fn directed(log: &Log, tag: &'static str, inbound: bool, outbound: bool) -> Stage {
    Stage::handler(Directed {
        tag,
        inbound,
        outbound,
        log: log.clone(),
    })
}

impl StageHandler for Directed {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        if self.inbound {
            self.log.push(format!("in {}", self.tag));
            let wanted = format!("from-{}", self.tag);
            if message
                .downcast_ref::<Bytes>()
                .is_some_and(|b| *b == wanted)
            {
                ctx.write(Bytes::from(format!("reply-{}", self.tag)));
                return;
            }
        }
        ctx.fire_message(message);
    }
    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        if self.outbound {
            self.log.push(format!("out {}", self.tag));
        }
        ctx.write(message);
        Ok(())
    }
}

/// The ChannelPipeline javadoc example (netty.md §11.1): InboundA,
/// InboundB, OutboundA, OutboundB, Duplex added last in that order give the
/// inbound order 1, 2, 5 and the outbound order 5, 4, 3; `ctx.write` from a
/// handler starts at the outbound handler before it, skipping those after.
#[test]
fn the_javadoc_order_inbound_1_2_5_outbound_5_4_3_and_ctx_write_skips_later_stages() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("1", directed(&log, "1", true, false)),
        ("2", directed(&log, "2", true, false)),
        ("3", directed(&log, "3", false, true)),
        ("4", directed(&log, "4", false, true)),
        ("5", directed(&log, "5", true, true)),
    ]);
    let (mut protocol, transport) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from("x"));
    assert_eq!(only(log.take(), "in "), ["in 1", "in 2", "in 5"]);
    ctx_of(&protocol).write(Bytes::from("w|"));
    assert_eq!(log.take(), ["out 5", "out 4", "out 3"]);
    assert_eq!(transport.value(), b"w|");

    // InboundB writes: no outbound stage comes before it.
    protocol.data_received(Bytes::from("from-2"));
    assert_eq!(log.take(), ["in 1", "in 2"]);
    assert_eq!(transport.value(), b"w|reply-2");
    // The duplex stage writes: 4 and 3, not itself.
    protocol.data_received(Bytes::from("from-5"));
    assert_eq!(log.take(), ["in 1", "in 2", "in 5", "out 4", "out 3"]);
    assert_eq!(transport.value(), b"w|reply-2reply-5");
}

// ----------------------------------------------------------------- mutation

/// DefaultChannelPipelineTest.testFirstHandlerEmptyPipeline and
/// testLastHandlerEmptyPipeline, and `removeFirst` / `removeLast`: what
/// they take out hears `handler_removed`.
#[test]
fn remove_first_and_remove_last_take_out_the_ends_and_first_and_last_name_them() {
    let log = Log::default();
    let pipeline = Pipeline::new();
    assert_eq!(pipeline.first(), None);
    assert_eq!(pipeline.last(), None);
    assert_eq!(pipeline.remove_first(), None);
    assert_eq!(pipeline.remove_last(), None);
    for name in ["a", "b", "c"] {
        pipeline.add_last(name, tap(&log, name)).unwrap();
    }
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    let pipeline = protocol.pipeline();
    assert_eq!(pipeline.first().as_deref(), Some("a"));
    assert_eq!(pipeline.last().as_deref(), Some("c"));
    assert_eq!(pipeline.remove_first().as_deref(), Some("a"));
    assert_eq!(log.take(), ["a removed"]);
    assert_eq!(pipeline.remove_last().as_deref(), Some("c"));
    assert_eq!(log.take(), ["c removed"]);
    assert_eq!(pipeline.names(), ["b"]);
    assert_eq!(pipeline.first(), pipeline.last());
    protocol.data_received(Bytes::from("x"));
    assert_eq!(only(log.take(), "msg"), ["b msg bytes x", "h msg bytes x"]);
    assert_eq!(protocol.pipeline().remove_first().as_deref(), Some("b"));
    assert_eq!(protocol.pipeline().remove_last(), None);
}

/// DefaultChannelPipelineTest.testRemoveIfExists (`remove(TestHandler.class)`)
/// and testRemoveThrowNoSuchElementException: removing by type takes the
/// first stage of that type; a type no stage has is an error naming it.
#[test]
fn remove_type_removes_the_first_stage_of_that_type() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(16))),
        ("t1", tap(&log, "t1")),
        ("utf8", Stage::message_decoder(StringDecoder)),
        ("t2", tap(&log, "t2")),
    ]);
    let (protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    let pipeline = protocol.pipeline();
    assert_eq!(pipeline.remove_type::<Tap>(), Ok("t1".into()));
    assert_eq!(log.take(), ["t1 removed"]);
    assert_eq!(pipeline.remove_type::<StringDecoder>(), Ok("utf8".into()));
    let missing = pipeline.remove_type::<StringDecoder>().unwrap_err();
    assert_eq!(
        missing,
        PipelineError::NoSuchStage(std::any::type_name::<StringDecoder>().into())
    );
    assert!(missing.to_string().contains("StringDecoder"), "{missing}");
    assert_eq!(pipeline.names(), ["lines", "t2"]);
}

struct Generic<T>(std::marker::PhantomData<T>);

impl<T: 'static> StageHandler for Generic<T> {}

/// DefaultChannelPipelineTest.testAddLastVarArgsSkipsNull: handlers added
/// without a name are named `SimpleClassName#0`, `#1`, `#2`; a name
/// already taken is skipped.
#[test]
fn add_without_a_name_generates_type_hash_n_skipping_names_already_taken() {
    let log = Log::default();
    let pipeline = Pipeline::new();
    assert_eq!(pipeline.add(tap(&log, "x")), "Tap#0");
    pipeline.add_last("Tap#1", tap(&log, "x")).unwrap();
    assert_eq!(pipeline.add(tap(&log, "x")), "Tap#2");
    assert_eq!(
        pipeline.add(Stage::decoder(LineBasedFrameDecoder::new(8))),
        "LineBasedFrameDecoder#0"
    );
    // A codec is named after its decoder.
    assert_eq!(
        pipeline.add(Stage::codec::<String, _, _>(
            LineBasedFrameDecoder::new(8),
            LineEncoder::new()
        )),
        "LineBasedFrameDecoder#1"
    );
    assert_eq!(
        pipeline.add(Stage::encoder::<String, _>(LineEncoder::new())),
        "LineEncoder#0"
    );
    // Without the module path and the type parameters.
    assert_eq!(
        pipeline.add(Stage::handler(Generic::<u8>(std::marker::PhantomData))),
        "Generic#0"
    );
    assert_eq!(
        pipeline.add(Stage::handler(Generic::<u16>(std::marker::PhantomData))),
        "Generic#1"
    );
    assert_eq!(
        pipeline.add_last("Tap#0", tap(&log, "x")).unwrap_err(),
        PipelineError::DuplicateName("Tap#0".into())
    );
    assert_eq!(
        pipeline.names(),
        [
            "Tap#0",
            "Tap#1",
            "Tap#2",
            "LineBasedFrameDecoder#0",
            "LineBasedFrameDecoder#1",
            "LineEncoder#0",
            "Generic#0",
            "Generic#1"
        ]
    );
}

/// DefaultChannelPipelineTest.testReplaceHandlerChecksDuplicateNames (and
/// testReplaceChannelHandler: replacing under the same name is allowed). On
/// a live connection a refused stage is never added: it hears nothing, and
/// the stage it was to replace stays.
#[test]
fn duplicate_names_are_refused_by_replace_and_every_add_and_the_refused_stage_hears_nothing() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![("h1", tap(&log, "h1")), ("h2", tap(&log, "h2"))]);
    let (protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    let pipeline = protocol.pipeline();
    let duplicate = |name: &str| PipelineError::DuplicateName(name.into());
    assert_eq!(
        pipeline.replace("h1", "h2", tap(&log, "x")).unwrap_err(),
        duplicate("h2")
    );
    assert_eq!(
        pipeline.add_last("h1", tap(&log, "x")).unwrap_err(),
        duplicate("h1")
    );
    assert_eq!(
        pipeline.add_first("h2", tap(&log, "x")).unwrap_err(),
        duplicate("h2")
    );
    assert_eq!(
        pipeline.add_before("h2", "h1", tap(&log, "x")).unwrap_err(),
        duplicate("h1")
    );
    assert_eq!(
        pipeline.add_after("h1", "h2", tap(&log, "x")).unwrap_err(),
        duplicate("h2")
    );
    assert!(log.take().is_empty(), "refused stages are never added");
    assert_eq!(pipeline.names(), ["h1", "h2"]);

    pipeline.replace("h1", "h1", tap(&log, "new")).unwrap();
    assert_eq!(log.take(), ["new added", "h1 removed"]);
    assert_eq!(pipeline.names(), ["h1", "h2"]);
}

/// Looks itself and another stage up while it runs.
struct Inspector(Log);

impl StageHandler for Inspector {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        let pipeline = ctx.pipeline();
        // One look at a time: a guard `get` returns holds the pipeline.
        let me = pipeline.get::<Inspector>(ctx.name()).is_some();
        let other = pipeline.get::<Tap>("tap").is_some();
        let listed = pipeline.names().contains(&ctx.name().to_owned());
        self.0
            .push(format!("self {me} other {other} listed {listed}"));
        ctx.fire_message(message);
    }
}

/// `get` lends the stage's codec, which it cannot do while that stage runs:
/// a stage looking itself up gets `None` (the others, and its name, are
/// there).
#[test]
fn get_returns_none_for_a_stage_that_is_running() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("tap", tap(&log, "tap")),
        ("inspect", Stage::handler(Inspector(log.clone()))),
    ]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from("x"));
    assert_eq!(
        only(log.take(), "self"),
        ["self false other true listed true"]
    );
    assert!(protocol.pipeline().get::<Inspector>("inspect").is_some());
}

/// A hand-written byte decoder that takes one byte, then removes itself
/// (ByteToMessageDecoderTest's anonymous decoders): what it still holds is
/// handed on from `handler_removed`. It must never run again.
struct SkipOneThenLeave {
    buffer: BytesMut,
    removed: bool,
}

impl StageHandler for SkipOneThenLeave {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        assert!(!self.removed, "called after removing itself");
        let bytes = message.downcast::<Bytes>().expect("bytes");
        self.buffer.extend_from_slice(&bytes);
        self.buffer.advance(1);
        ctx.pipeline().remove(ctx.name()).unwrap();
        self.removed = true;
    }
    fn handler_removed(&mut self, ctx: &mut StageContext<'_>) {
        if !self.buffer.is_empty() {
            ctx.fire_message(self.buffer.split().freeze());
        }
    }
}

fn skip_one_then_leave() -> Stage {
    Stage::handler(SkipOneThenLeave {
        buffer: BytesMut::new(),
        removed: false,
    })
}

/// ByteToMessageDecoderTest.testRemoveItself and
/// testRemoveItselfWriteBuffer: a decoder that reads one byte of "abc" and
/// removes itself hands "bc" on, and later input ("d") is never decoded by
/// it: it goes straight on.
#[test]
fn a_stage_that_removes_itself_hands_its_leftover_bytes_on_before_later_input() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![("decoder", skip_one_then_leave())]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from("abc"));
    assert_eq!(only(log.take(), "msg"), ["h msg bytes bc"]);
    assert!(protocol.pipeline().names().is_empty());
    protocol.data_received(Bytes::from("d"));
    assert_eq!(only(log.take(), "msg"), ["h msg bytes d"]);
}

/// ByteToMessageDecoderTest.testInternalBufferClearReadAll: input read
/// whole before the decoder removes itself leaves nothing to hand on (no
/// message, and so no `read_complete`).
#[test]
fn a_stage_that_removes_itself_with_nothing_left_hands_nothing_on() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![("decoder", skip_one_then_leave())]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from("a"));
    assert!(log.take().is_empty());
    assert!(protocol.pipeline().names().is_empty());
}

/// Passes four bytes on one by one, then removes itself.
struct FourThenLeave(BytesMut);

impl StageHandler for FourThenLeave {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        let mut bytes = *message.downcast::<Bytes>().expect("bytes");
        for _ in 0..4 {
            ctx.fire_message(bytes.get_u8());
        }
        self.0.extend_from_slice(&bytes);
        ctx.pipeline().remove(ctx.name()).unwrap();
    }
    fn handler_removed(&mut self, ctx: &mut StageContext<'_>) {
        ctx.fire_message(self.0.split().freeze());
    }
}

/// ByteToMessageDecoderTest.testDisorder: what a decoder fired before
/// removing itself comes before the leftover it hands on.
#[test]
fn what_a_stage_fired_before_removing_itself_comes_before_its_leftovers() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![(
        "four",
        Stage::handler(FourThenLeave(BytesMut::new())),
    )]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from_static(&[1, 2, 3, 4, 5]));
    assert_eq!(
        only(log.take(), "msg"),
        [
            "h msg u8 1",
            "h msg u8 2",
            "h msg u8 3",
            "h msg u8 4",
            "h msg bytes \\x05"
        ]
    );
}

/// Joins the lines it gets with ',' until "UP", then removes itself and
/// hands the joined lines on.
struct JoinUntilUp(BytesMut);

impl StageHandler for JoinUntilUp {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        let line = message.downcast::<Bytes>().expect("a line");
        if *line == "UP" {
            ctx.pipeline().remove(ctx.name()).unwrap();
            return;
        }
        if !self.0.is_empty() {
            self.0.extend_from_slice(b",");
        }
        self.0.extend_from_slice(&line);
    }
    fn handler_removed(&mut self, ctx: &mut StageContext<'_>) {
        ctx.fire_message(self.0.split().freeze());
    }
}

/// The lines after "UP" are in the same read, but the line decoder before
/// the stage cuts them only after the stage's removal completed: its
/// leftovers come first.
#[test]
fn the_leftovers_of_a_stage_that_removes_itself_come_before_later_input_of_the_same_read() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(16))),
        ("join", Stage::handler(JoinUntilUp(BytesMut::new()))),
    ]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from("a\nb\nUP\nc\nd\n"));
    assert_eq!(
        only(log.take(), "msg"),
        ["h msg bytes a,b", "h msg bytes c", "h msg bytes d"]
    );
    assert_eq!(protocol.pipeline().names(), ["lines"]);
}

/// A handshake: one line, answered with "OK <line>", passed on as a
/// String; then it replaces itself with a decoder of 2-byte-length frames,
/// handing over the bytes after the line.
struct Handshake(BytesMut);

impl StageHandler for Handshake {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        let bytes = message.downcast::<Bytes>().expect("bytes");
        self.0.extend_from_slice(&bytes);
        let Some(end) = self.0.iter().position(|&b| b == b'\n') else {
            return;
        };
        let line = self.0.split_to(end + 1);
        let line = String::from_utf8_lossy(&line[..end]).into_owned();
        ctx.write(Bytes::from(format!("OK {line}\n")));
        ctx.fire_message(line);
        let frames = LengthFieldBasedFrameDecoder::new(1024, 0, 2, 0, 2).unwrap();
        ctx.pipeline()
            .replace(ctx.name(), "frames", Stage::decoder(frames))
            .unwrap();
    }
    fn handler_removed(&mut self, ctx: &mut StageContext<'_>) {
        if !self.0.is_empty() {
            ctx.fire_message(self.0.split().freeze());
        }
    }
}

/// The upgrade (netty.md §9.5, "the mechanism for STARTTLS / protocol
/// upgrade"): bytes after the handshake line, in the same read or split
/// anywhere, are decoded by the new decoder, in order.
#[test]
fn a_handshake_stage_replaces_itself_and_the_new_decoder_gets_the_rest_of_the_read() {
    const INPUT: &[u8] = b"HELLO v1\n\x00\x03abc\x00\x02de\x00\x00";
    let run = |chunks: &[&[u8]]| {
        let log = Log::default();
        let pipeline = pipeline_of(vec![(
            "handshake",
            Stage::handler(Handshake(BytesMut::new())),
        )]);
        let (mut protocol, transport) = connect(pipeline, Sink::new(&log));
        for chunk in chunks {
            protocol.data_received(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(transport.value(), b"OK HELLO v1\n");
        assert_eq!(protocol.pipeline().names(), ["frames"]);
        only(log.take(), "msg")
    };
    let expected = [
        "h msg str HELLO v1",
        "h msg bytes abc",
        "h msg bytes de",
        "h msg bytes ",
    ];
    assert_eq!(run(&[INPUT]), expected);
    for at in 0..=INPUT.len() {
        let (a, b) = INPUT.split_at(at);
        assert_eq!(run(&[a, b]), expected, "split at {at}");
    }
    let bytes: Vec<&[u8]> = INPUT.chunks(1).collect();
    assert_eq!(run(&bytes), expected, "byte by byte");
}

/// Holds the messages and the writes that reach it while `holding`, and
/// passes them on when removed: Netty's `BufferedTestHandler`.
struct Buffered {
    inbound: Vec<Message>,
    outbound: Vec<Message>,
}

fn buffered() -> Stage {
    Stage::handler(Buffered {
        inbound: Vec::new(),
        outbound: Vec::new(),
    })
}

impl StageHandler for Buffered {
    fn message_received(&mut self, _ctx: &mut StageContext<'_>, message: Message) {
        self.inbound.push(message);
    }
    fn write(&mut self, _ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        self.outbound.push(message);
        Ok(())
    }
    fn handler_removed(&mut self, ctx: &mut StageContext<'_>) {
        for message in self.inbound.drain(..) {
            ctx.fire_message(message);
        }
        for message in self.outbound.drain(..) {
            ctx.write(message);
        }
    }
}

/// DefaultChannelPipelineTest.testRemoveAndForwardInboundOutbound (and
/// testRemoveAndForwardInbound / testRemoveAndForwardOutbound): a removed
/// handler's held messages go to the handler after it, its held writes to
/// the one before it, all before `remove` returns.
#[test]
fn a_stage_removed_hands_held_messages_to_the_next_stage_and_writes_from_handler_removed_to_the_previous(
) {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("t1", tap(&log, "t1")),
        ("held", buffered()),
        ("t3", tap(&log, "t3")),
    ]);
    let (mut protocol, transport) = connect(pipeline, Sink::new(&log));
    protocol.data_received(Bytes::from("8"));
    ctx_of(&protocol).write(Bytes::from("w8"));
    let held = log.take();
    assert_eq!(only(held.clone(), "msg"), ["t1 msg bytes 8"]);
    assert_eq!(only(held, "write"), ["t3 write bytes w8"]);
    assert!(transport.value().is_empty());
    protocol.pipeline().remove("held").unwrap();
    let events = log.take();
    assert_eq!(
        only(events.clone(), "msg"),
        ["t3 msg bytes 8", "h msg bytes 8"]
    );
    assert_eq!(only(events, "write"), ["t1 write bytes w8"]);
    assert_eq!(transport.value(), b"w8");
}

/// DefaultChannelPipelineTest.testReplaceAndForwardInboundAndOutbound: what
/// the replaced handler forwards from its `handlerRemoved`, both ways, goes
/// through its replacement (Netty links the old context to the new one on
/// both sides).
#[test]
fn a_stage_replaced_hands_held_messages_and_writes_to_its_replacement() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("t1", tap(&log, "t1")),
        ("held", buffered()),
        ("t3", tap(&log, "t3")),
    ]);
    let (mut protocol, transport) = connect(pipeline, Sink::new(&log));
    protocol.data_received(Bytes::from("8"));
    ctx_of(&protocol).write(Bytes::from("w8"));
    log.take();
    protocol
        .pipeline()
        .replace("held", "new", tap(&log, "new"))
        .unwrap();
    let events = log.take();
    assert_eq!(events[0], "new added");
    assert_eq!(
        only(events.clone(), "msg"),
        ["new msg bytes 8", "t3 msg bytes 8", "h msg bytes 8"]
    );
    assert_eq!(
        only(events, "write"),
        ["new write bytes w8", "t1 write bytes w8"]
    );
    assert_eq!(transport.value(), b"w8");
}

// ------------------------------------------------------------- pull reading

/// The handler's context, automatic reading turned off.
fn read_off(protocol: &PipelineProtocol<Sink>) -> PipelineContext {
    let ctx = ctx_of(protocol);
    ctx.set_auto_read(false);
    ctx
}

/// FlowControlHandlerTest.testAutoReadingOn: turning automatic reading off
/// from the first message does not stop the other messages that read
/// decoded (three from one byte).
#[test]
fn without_flow_control_turning_auto_read_off_does_not_hold_back_what_a_read_decoded() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![("three", one_byte_to_three_strings())]);
    let handler = Sink::new(&log).hook(|ctx, _| ctx.set_auto_read(false));
    let (mut protocol, transport) = connect(pipeline, handler);
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert_eq!(
        only(log.take(), "msg"),
        ["h msg str 1", "h msg str 2", "h msg str 3"]
    );
    assert!(transport.reading_paused());
    assert!(!ctx_of(&protocol).auto_read());
}

/// FlowControlHandlerTest.testAutoReadingOff: with automatic reading off,
/// one `read()` lets one read happen, and all three messages it decoded
/// arrive.
#[test]
fn without_flow_control_one_read_request_delivers_every_message_of_that_read() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![("three", one_byte_to_three_strings())]);
    let (mut protocol, transport) = connect(pipeline, Sink::new(&log));
    let ctx = read_off(&protocol);
    assert!(transport.reading_paused(), "auto-read off pauses reading");
    ctx.read();
    assert!(!transport.reading_paused(), "read() reads once");
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert_eq!(
        log.take(),
        ["h msg str 1", "h msg str 2", "h msg str 3", "h complete"]
    );
    assert!(transport.reading_paused(), "and no more");
    ctx.set_auto_read(true);
    assert!(!transport.reading_paused());
}

/// Counts the `read()` requests that pass it.
struct ReadCounter(Rc<Cell<usize>>);

impl StageHandler for ReadCounter {
    fn read(&mut self, ctx: &mut StageContext<'_>) {
        self.0.set(self.0.get() + 1);
        ctx.read();
    }
}

/// ByteToMessageDecoderTest.testDoesNotOverRead: with automatic reading
/// off, a read that completes no frame makes the decoder ask for another
/// (or a partial frame would stall), and one that completes a frame does
/// not. Here the handler asks before each read, as it must for the read to
/// happen; the decoder's own requests are the ones beyond the handler's.
#[test]
fn with_auto_read_off_a_decoder_asks_for_another_read_only_when_a_read_completed_no_frame() {
    let log = Log::default();
    let reads = Rc::new(Cell::new(0));
    let pipeline = pipeline_of(vec![
        ("counter", Stage::handler(ReadCounter(reads.clone()))),
        (
            "frames",
            Stage::decoder(FixedLengthFrameDecoder::new(3).unwrap()),
        ),
    ]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    let ctx = read_off(&protocol);
    let mut asked = 0;
    let mut step = |data: &[u8]| {
        ctx.read();
        asked += 1;
        protocol.data_received(Bytes::copy_from_slice(data));
        reads.get() - asked
    };
    // 0 complete frames, 1 partial frame: SHOULD trigger a read.
    assert_eq!(step(&[0, 1]), 1);
    // 2 complete frames, 0 partial frames: should NOT trigger a read.
    assert_eq!(step(&[2, 3, 4, 5]), 1);
    // 1 complete frame, 1 partial frame: should NOT trigger a read.
    assert_eq!(step(&[6, 7, 8, 9]), 1);
    assert_eq!(step(&[10, 11, 12]), 1);
    // 0 complete frames, 1 partial frame: SHOULD trigger a read.
    assert_eq!(step(&[13]), 2);
    // 1 complete frame, 0 partial frames: should NOT trigger a read.
    assert_eq!(step(&[14]), 2);
    let frames: Vec<String> = (0..5)
        .map(|i| {
            format!(
                "h msg bytes {}",
                [i * 3, i * 3 + 1, i * 3 + 2].escape_ascii()
            )
        })
        .collect();
    assert_eq!(only(log.take(), "msg"), frames);
}

fn flow_pipeline() -> Pipeline {
    pipeline_of(vec![
        ("three", one_byte_to_three_strings()),
        ("flow", Stage::handler(FlowControlHandler::new())),
    ])
}

fn queued(protocol: &PipelineProtocol<Sink>) -> usize {
    protocol
        .pipeline()
        .get::<FlowControlHandler>("flow")
        .expect("a flow stage")
        .queued()
}

/// FlowControlHandlerTest.testFlowAutoReadOn: with automatic reading on,
/// the handler passes everything through and queues nothing.
#[test]
fn flow_control_with_auto_read_on_passes_everything_through() {
    let log = Log::default();
    let (mut protocol, _t) = connect(flow_pipeline(), Sink::new(&log));
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert_eq!(
        log.take(),
        ["h msg str 1", "h msg str 2", "h msg str 3", "h complete"]
    );
    assert_eq!(queued(&protocol), 0);
}

/// FlowControlHandlerTest.testFlowAutoReadOff: one message per `read()`;
/// the requests the queue answers do not reach the transport
/// (`reading_paused` stays on), and the one that finds it empty does.
#[test]
fn flow_control_releases_one_message_per_read_request() {
    let log = Log::default();
    let (mut protocol, transport) = connect(flow_pipeline(), Sink::new(&log));
    let ctx = read_off(&protocol);
    ctx.read();
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert_eq!(log.take(), ["h msg str 1"]);
    assert_eq!(queued(&protocol), 2);
    assert!(transport.reading_paused());
    ctx.read();
    assert_eq!(log.take(), ["h msg str 2"]);
    assert!(transport.reading_paused(), "answered from the queue");
    ctx.read();
    // The last one, then the end of the read it came from.
    assert_eq!(log.take(), ["h msg str 3", "h complete"]);
    assert_eq!(queued(&protocol), 0);
    assert!(transport.reading_paused());
    ctx.read();
    assert!(log.take().is_empty());
    assert!(
        !transport.reading_paused(),
        "an empty queue asks the transport"
    );
}

/// The same with a read that decoded ten frames: ten requests, ten
/// messages, one at a time.
#[test]
fn flow_control_releases_one_message_per_read_even_when_one_read_decoded_ten() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![
        ("lines", Stage::decoder(LineBasedFrameDecoder::new(16))),
        ("flow", Stage::handler(FlowControlHandler::new())),
    ]);
    let (mut protocol, _t) = connect(pipeline, Sink::new(&log));
    let ctx = read_off(&protocol);
    ctx.read();
    log.take();
    protocol.data_received(Bytes::from(lines(10)));
    for i in 0..10 {
        let mut expected = vec![format!("h msg bytes {i}")];
        if i == 9 {
            expected.push("h complete".into());
        }
        assert_eq!(log.take(), expected, "message {i}");
        assert_eq!(queued(&protocol), 9 - i);
        ctx.read();
    }
    assert!(log.take().is_empty());
}

/// FlowControlHandlerTest.testReentranceNotCausesNPE: a handler that asks
/// for the next message from `message_received` gets them all, one after
/// the other, without being re-entered.
#[test]
fn flow_control_serves_a_handler_that_reads_from_message_received_without_reentering_it() {
    let log = Log::default();
    let depth = Rc::new(Cell::new(0));
    let inside = depth.clone();
    let handler = Sink::new(&log).hook(move |ctx, _| {
        inside.set(inside.get() + 1);
        assert_eq!(inside.get(), 1, "re-entered");
        ctx.read();
        inside.set(inside.get() - 1);
    });
    let (mut protocol, _t) = connect(flow_pipeline(), handler);
    let ctx = read_off(&protocol);
    ctx.read();
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert_eq!(
        log.take(),
        ["h msg str 1", "h msg str 2", "h msg str 3", "h complete"]
    );
    assert_eq!(queued(&protocol), 0);
}

/// netty.md §10.5 (and FlowControlHandlerTest.testSwallowedReadComplete):
/// `channelReadComplete` waits while the queue holds messages and comes
/// once it drains; so does the peer's EOF, and the connection stays open
/// until the handler has it.
#[test]
fn flow_control_holds_read_complete_and_eof_behind_queued_messages() {
    let log = Log::default();
    let (mut protocol, transport) = connect(flow_pipeline(), Sink::new(&log));
    let ctx = read_off(&protocol);
    ctx.read();
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert!(
        protocol.eof_received(),
        "open until the handler has the EOF"
    );
    assert_eq!(log.take(), ["h msg str 1"]);
    assert!(!transport.disconnecting());
    ctx.read();
    assert_eq!(log.take(), ["h msg str 2"]);
    ctx.read();
    assert_eq!(log.take(), ["h msg str 3", "h complete", "h eof"]);
    assert!(
        transport.disconnecting(),
        "the handler did not keep it open"
    );

    // A read whose single message is released at once completes at once.
    let (mut protocol, _t) = connect(flow_pipeline(), Sink::new(&log));
    let ctx = read_off(&protocol);
    protocol.pipeline().remove("three").unwrap();
    ctx.read();
    log.take();
    protocol.data_received(Bytes::from("only"));
    assert_eq!(log.take(), ["h msg bytes only", "h complete"]);
}

/// FlowControlHandlerTest.testFlowToggleAutoRead, in twill's terms:
/// turning automatic reading back on releases what the queue holds (Netty's
/// `setAutoRead(true)` reads, and the handler's `read` drains while reading
/// is automatic) without waiting for anything new to arrive, until the
/// handler turns it off again.
#[test]
fn turning_auto_read_back_on_drains_the_flow_control_queue() {
    let log = Log::default();
    let handler = Sink::new(&log).hook(|ctx, _| ctx.set_auto_read(false));
    let (mut protocol, transport) = connect(flow_pipeline(), handler);
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert_eq!(log.take(), ["h msg str 1"]);
    assert_eq!(queued(&protocol), 2);
    assert!(transport.reading_paused());
    ctx_of(&protocol).set_auto_read(true);
    // The handler turned it off again from that message: the rest waits.
    assert_eq!(log.take(), ["h msg str 2"]);
    assert_eq!(queued(&protocol), 1);
    assert!(transport.reading_paused());

    // A toggle whose request finds the queue empty leaves no demand behind:
    // with reading off again, what was in flight waits for a read().
    let (mut protocol, _t) = connect(flow_pipeline(), Sink::new(&log));
    let ctx = read_off(&protocol);
    ctx.set_auto_read(true);
    ctx.set_auto_read(false);
    protocol.data_received(Bytes::from_static(&[1]));
    assert!(only(log.take(), "msg").is_empty());
    assert_eq!(queued(&protocol), 3);
    ctx.read();
    assert_eq!(log.take(), ["h msg str 1"]);
}

/// FlowControlHandlerTest.testFlowToggleAutoRead exactly: each time auto
/// reading goes back on, one message, because the handler turns it off
/// again from that message.
#[test]
fn turning_auto_read_back_on_releases_one_message_when_the_handler_turns_it_off_again() {
    let log = Log::default();
    let handler = Sink::new(&log).hook(|ctx, _| ctx.set_auto_read(false));
    let (mut protocol, _t) = connect(flow_pipeline(), handler);
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert_eq!(log.take(), ["h msg str 1"]);
    ctx_of(&protocol).set_auto_read(true);
    assert_eq!(log.take(), ["h msg str 2"]);
    ctx_of(&protocol).set_auto_read(true);
    assert_eq!(log.take(), ["h msg str 3", "h complete"]);
}

/// FlowControlHandlerTest.testRemoveFlowControl and netty.md §10.5 ("on
/// removal the queue is flushed downstream"): removed from outside a
/// callback, it delivers its queue before `remove` returns; removed from
/// the handler's callback, right after it.
#[test]
fn removing_the_flow_control_handler_flushes_its_queue_downstream() {
    let log = Log::default();
    let (mut protocol, _t) = connect(flow_pipeline(), Sink::new(&log));
    let ctx = read_off(&protocol);
    ctx.read();
    log.take();
    protocol.data_received(Bytes::from_static(&[1]));
    assert_eq!(log.take(), ["h msg str 1"]);
    protocol.pipeline().remove("flow").unwrap();
    assert_eq!(log.take(), ["h msg str 2", "h msg str 3", "h complete"]);

    let handler = Sink::new(&log).hook(|ctx, _| {
        if ctx.pipeline().names().contains(&"flow".to_owned()) {
            ctx.pipeline().remove("flow").unwrap();
        }
    });
    let (mut protocol, _t) = connect(flow_pipeline(), handler);
    let ctx = read_off(&protocol);
    ctx.read();
    log.take();
    protocol.data_received(Bytes::from_static(&[1, 1]));
    assert_eq!(
        log.take(),
        [
            "h msg str 1",
            "h msg str 2",
            "h msg str 3",
            "h msg str 1",
            "h msg str 2",
            "h msg str 3",
            "h complete"
        ]
    );
    assert_eq!(protocol.pipeline().names(), ["three"]);
}

/// What the server side of the slow-reader test saw.
#[derive(Default)]
struct SlowStats {
    /// Bytes read from the socket.
    read: Cell<u64>,
    /// The largest single read.
    largest_read: Cell<u64>,
    /// Bytes the handler consumed.
    consumed: Cell<u64>,
    /// The most bytes read and not yet consumed.
    held: Cell<u64>,
    /// The longest the FlowControlHandler's queue was.
    queued: Cell<usize>,
    /// Reads that came while the queue still held messages.
    early_reads: Cell<usize>,
    messages: Cell<u64>,
}

/// The first stage: measures every read and what the pipeline holds.
struct ReadMeter(Rc<SlowStats>);

impl StageHandler for ReadMeter {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        if let Some(bytes) = message.downcast_ref::<Bytes>() {
            let stats = &self.0;
            let n = bytes.len() as u64;
            stats.read.set(stats.read.get() + n);
            stats.largest_read.set(stats.largest_read.get().max(n));
            let held = stats.read.get() - stats.consumed.get();
            stats.held.set(stats.held.get().max(held));
            let waiting = ctx
                .pipeline()
                .get::<FlowControlHandler>("flow")
                .map_or(0, |flow| flow.queued());
            if waiting > 0 {
                stats.early_reads.set(stats.early_reads.get() + 1);
            }
        }
        ctx.fire_message(message);
    }
}

const FRAME: usize = 1024;

/// Takes one message per timer tick.
struct OnePerTick(Rc<SlowStats>);

impl PipelineHandler for OnePerTick {
    fn connection_made(&mut self, ctx: &PipelineContext) {
        ctx.set_auto_read(false);
        ctx.read();
    }
    fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
        let stats = &self.0;
        let frame = message.downcast::<Bytes>().expect("a frame");
        stats
            .consumed
            .set(stats.consumed.get() + frame.len() as u64);
        stats.messages.set(stats.messages.get() + 1);
        let waiting = ctx
            .pipeline()
            .get::<FlowControlHandler>("flow")
            .expect("flow")
            .queued();
        stats.queued.set(stats.queued.get().max(waiting));
        let ctx = ctx.clone();
        twill::call_later(Duration::from_millis(5), move || ctx.read());
    }
}

/// netty.md §10.5: the queue holds at most what one read brought, because
/// the socket is read again only when a request finds it empty. A peer
/// tries to send 20 MiB of 1 KiB frames to a handler taking one per 5 ms
/// tick: its writes stall (the rest stays in the kernel's buffers and the
/// peer), and what the server read but the handler has not taken never
/// exceeds one read (64 KiB at most) plus a partial frame.
#[test]
fn a_slow_handler_behind_flow_control_keeps_the_server_holding_at_most_one_read() {
    let reactor = Reactor::new().unwrap();
    let stats = Rc::new(SlowStats::default());
    let server_stats = stats.clone();
    let factory = move |_peer| {
        let pipeline = pipeline_of(vec![
            ("meter", Stage::handler(ReadMeter(server_stats.clone()))),
            (
                "frames",
                Stage::decoder(FixedLengthFrameDecoder::new(FRAME).unwrap()),
            ),
            ("flow", Stage::handler(FlowControlHandler::new())),
        ]);
        PipelineProtocol::new(pipeline, OnePerTick(server_stats.clone()))
    };
    let limit = 20 * MIB;
    let sent = serve(&reactor, factory, move |addr, handle| {
        then_stop(&handle, || {
            let mut stream = pressure::connect(addr);
            // A write that makes no progress for 300 ms: the server has
            // stopped reading (it reads 64 frames, 320 ms of ticks, apart).
            pressure::send_until_stalled(
                &mut stream,
                limit,
                Duration::from_millis(300),
                |_, buf| buf.fill(b'x'),
            )
        })
    });
    let max_read = stats.largest_read.get();
    eprintln!(
        "peer sent {:.1} MiB before stalling; server read {} KiB in reads of at most {} KiB, \
         handler took {} frames; held at most {} bytes, queue at most {}",
        mib(sent),
        stats.read.get() / 1024,
        max_read / 1024,
        stats.messages.get(),
        stats.held.get(),
        stats.queued.get()
    );
    assert!(sent < limit, "the peer was never stalled");
    assert!(
        stats.read.get() < sent,
        "the server read everything the peer sent"
    );
    assert!(stats.messages.get() > 0, "the handler got frames");
    assert!(max_read <= 64 * 1024, "{max_read}");
    assert!(
        stats.held.get() <= max_read + FRAME as u64,
        "held {} bytes, more than one read ({max_read}) and a partial frame",
        stats.held.get()
    );
    assert!(
        stats.queued.get() <= max_read as usize / FRAME,
        "{} queued",
        stats.queued.get()
    );
    assert_eq!(
        stats.early_reads.get(),
        0,
        "read while the queue held frames"
    );
}

// -------------------------------------------------------------------- panics

/// Panics on the message "boom", else passes it on.
struct Bomb;

impl StageHandler for Bomb {
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        if message
            .downcast_ref::<String>()
            .is_some_and(|s| s == "boom")
        {
            panic!("a stage blew up");
        }
        ctx.fire_message(message);
    }
}

/// Upper-cases lines; logs how its connection ended.
struct Upper(Log);

impl PipelineHandler for Upper {
    fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
        let line = message.downcast::<String>().expect("a String");
        ctx.write(line.to_uppercase());
    }
    fn connection_lost(&mut self, _ctx: &PipelineContext, reason: &Reason) {
        self.0.push(events::describe(reason));
    }
}

/// The Protocol contract ("a panic in any of these methods closes this
/// connection only"), through a stage: a stage's panic closes its
/// connection, whose handler hears why; another connection, open already
/// or opened after, is still served.
#[test]
fn a_panic_in_a_stage_closes_only_that_connection() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let factory = move |_peer| {
        let pipeline = pipeline_of(vec![
            ("lines", Stage::decoder(LineBasedFrameDecoder::new(64))),
            ("utf8", Stage::message_decoder(StringDecoder)),
            ("bomb", Stage::handler(Bomb)),
        ]);
        pipeline
            .add_first("encoder", Stage::encoder::<String, _>(LineEncoder::new()))
            .unwrap();
        PipelineProtocol::new(pipeline, Upper(server_log.clone()))
    };
    serve(&reactor, factory, |addr, handle| {
        then_stop(&handle, || {
            let mut doomed = Client::connect(addr);
            let mut other = Client::connect(addr);
            doomed.send(b"hi\n");
            assert_eq!(doomed.line_str(), "HI\n");
            doomed.send(b"boom\nafter\n");
            let mut rest = Vec::new();
            match doomed.stream().try_clone().unwrap().read_to_end(&mut rest) {
                Ok(_) => assert!(rest.is_empty(), "{:?}", rest.escape_ascii().to_string()),
                Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset),
            }
            other.send(b"still\n");
            assert_eq!(other.line_str(), "STILL\n");
            let mut late = TcpStream::connect(addr).unwrap();
            late.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            late.write_all(b"late\n").unwrap();
            let mut reply = [0; 5];
            late.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"LATE\n");
        });
    });
    let events = log.take();
    assert_eq!(
        events.first().map(String::as_str),
        Some("lost: failed data_received panicked: a stage blew up"),
        "{events:?}"
    );
    assert!(
        !events[1..].iter().any(|e| e.contains("panicked")),
        "{events:?}"
    );
}

/// Netty's `channelWritabilityChanged` is an inbound event: it passes
/// every stage, first to last, before the handler hears `pause_writing` /
/// `resume_writing`; write completion travels the same way.
#[test]
fn writability_changes_and_write_completion_pass_every_stage_to_the_handler() {
    let log = Log::default();
    let pipeline = pipeline_of(vec![("a", tap(&log, "a")), ("b", tap(&log, "b"))]);
    let (mut protocol, _transport) = connect(pipeline, Sink::new(&log));
    log.take();
    protocol.pause_writing();
    protocol.resume_writing();
    protocol.write_complete();
    assert_eq!(
        log.take(),
        [
            "a writable false",
            "b writable false",
            "h pause",
            "a writable true",
            "b writable true",
            "h resume",
            "a write complete",
            "b write complete",
            "h write complete",
        ]
    );
}

/// A stage that claims held work but passes nothing on would be asked
/// forever: the pipeline turns it into a panic in that stage (which, on a
/// reactor, closes that connection only) instead of spinning.
#[test]
#[should_panic(expected = "passed nothing on and has_pending is still true")]
fn a_stage_that_holds_work_but_produces_nothing_panics_rather_than_spinning() {
    struct Stuck;
    impl StageHandler for Stuck {
        fn has_pending(&self) -> bool {
            true
        }
    }
    let log = Log::default();
    let pipeline = pipeline_of(vec![("stuck", Stage::handler(Stuck))]);
    let (mut protocol, _transport) = connect(pipeline, Sink::new(&log));
    protocol.data_received(Bytes::from_static(b"x"));
}
