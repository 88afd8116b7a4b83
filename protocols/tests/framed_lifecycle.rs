//! The lifecycle of a `Framed` handler beyond its messages: `read_complete`
//! (Netty's `channelReadComplete`), `write_complete`, `event_received`
//! (`userEventTriggered`, with `IdleStateHandler`'s events),
//! `Context::write_and_notify` (Netty's write promise), pull reading with
//! `Context::set_auto_read(false)` / `read()` (Netty's `AUTO_READ` with a
//! `FlowControlHandler`), and `LengthFieldPrepender` handing bodies over
//! uncopied through `Encoder::encode_parts`.
//!
//! Most run over real loopback sockets with `std::net` peers on other
//! threads, bounded by `twill_test_support::reactor::run`'s watchdog and
//! socket or channel timeouts; the rest drive a `Framed` on a
//! `StringTransport`.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use twill::defer::Deferred;
use twill::testing::{assert_no_result, StringTransport};
use twill::transport::NotSent;
use twill::{Event, Protocol, Reactor, Reason, Transport};
use twill_protocols::codec::{
    Context, Decoder, EncodeError, Encoder, Framed, Handler, LengthFieldBasedFrameDecoder,
    LengthFieldPrepender, LineBasedFrameDecoder, LineEncoder,
};
use twill_protocols::handler::{IdleState, IdleStateEvent, IdleStateHandler};
use twill_test_support::events::{describe, Log};
use twill_test_support::pressure::when_stuck;
use twill_test_support::pressure::{connect_small, send_until_stalled, SMALL_RCVBUF};
use twill_test_support::reactor::{connect, serve, LIMIT};

const MIB: usize = 1 << 20;

/// A 4-byte big-endian length before each body.
fn prepender() -> LengthFieldPrepender {
    LengthFieldPrepender::new(4).unwrap()
}

fn frame_decoder(max: usize) -> LengthFieldBasedFrameDecoder {
    prepender().matching_decoder(max).unwrap()
}

fn read_n(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream
        .read_exact(&mut buf)
        .expect("read within the timeout");
    buf
}

/// Logs how `d` ends and consumes its failure.
fn record(d: &Deferred<()>, log: &Log, name: &'static str) {
    let log = log.clone();
    d.add_both(move |outcome| {
        match outcome {
            Ok(()) => log.push(format!("{name} sent")),
            Err(failure) if failure.check::<NotSent>() => log.push(format!("{name} not sent")),
            Err(failure) if failure.check::<EncodeError>() => {
                log.push(format!("{name} failed to encode: {failure}"))
            }
            Err(failure) => log.push(format!("{name} failed: {failure}")),
        }
        Ok(())
    });
}

/// Wraps a protocol and watches its input: how many reads reached it (and
/// how many bytes), and the most its own input buffer held.
struct Watch<P> {
    inner: P,
    seen: Rc<Seen>,
}

#[derive(Default)]
struct Seen {
    reads: Cell<usize>,
    bytes: Cell<usize>,
    peak_input: Cell<usize>,
    log: Option<Log>,
}

impl Seen {
    fn read(&self, n: usize) {
        self.reads.set(self.reads.get() + 1);
        self.bytes.set(self.bytes.get() + n);
        if let Some(log) = &self.log {
            log.push(format!("read {n} bytes"));
        }
    }
}

impl<P: Protocol> Protocol for Watch<P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.inner.connection_made(transport);
    }
    fn data_received(&mut self, data: Bytes) {
        self.seen.read(data.len());
        self.inner.data_received(data);
    }
    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        self.inner.get_buffer()
    }
    fn buffer_updated(&mut self, appended: usize) {
        self.seen.read(appended);
        if let Some(held) = self.inner.get_buffer().map(|b| b.len()) {
            self.seen
                .peak_input
                .set(self.seen.peak_input.get().max(held));
        }
        self.inner.buffer_updated(appended);
    }
    fn eof_received(&mut self) -> bool {
        self.inner.eof_received()
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.inner.connection_lost(reason);
    }
    fn pause_writing(&mut self) {
        self.inner.pause_writing();
    }
    fn resume_writing(&mut self) {
        self.inner.resume_writing();
    }
    fn write_complete(&mut self) {
        self.inner.write_complete();
    }
    fn event_received(&mut self, event: Event) {
        self.inner.event_received(event);
    }
}

// ---------------------------------------------------------------------------
// read_complete
// ---------------------------------------------------------------------------

/// Counts messages; at each read_complete logs how many came since the
/// last one and answers with that count.
struct CountPerRead {
    log: Log,
    since: usize,
}

impl Handler for CountPerRead {
    type Message = Bytes;
    type Reply = Bytes;
    fn message_received(&mut self, _ctx: &Context<Bytes>, _frame: Bytes) {
        self.since += 1;
    }
    fn read_complete(&mut self, ctx: &Context<Bytes>) {
        self.log
            .push(format!("read_complete after {} messages", self.since));
        ctx.write(Bytes::from(format!("{:03}", self.since)));
        self.since = 0;
    }
    fn connection_lost(&mut self, _ctx: &Context<Bytes>, _reason: &Reason) {
        twill::stop();
    }
}

/// Netty's `ByteToMessageDecoderTest` and `channelReadComplete`: one read
/// that completes 100 frames gives 100 messages, then one
/// `read_complete`. The 100 frames of 8 bytes go in one 800-byte write, far
/// under the loopback MSS (65 483 bytes), so the kernel hands them to one
/// read; the log of reads checks that too, and that each read completing
/// frames got exactly one `read_complete`.
#[test]
fn a_read_that_completes_100_frames_delivers_them_then_one_read_complete() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let replies = serve(
        &reactor,
        move |_peer| Watch {
            inner: Framed::new(
                frame_decoder(64),
                prepender(),
                CountPerRead {
                    log: server_log.clone(),
                    since: 0,
                },
            ),
            seen: Rc::new(Seen {
                log: Some(server_log.clone()),
                ..Seen::default()
            }),
        },
        |addr, _handle| {
            let mut client = connect(addr);
            let mut wire = BytesMut::new();
            for i in 0..100u32 {
                prepender()
                    .encode(Bytes::from(i.to_be_bytes().to_vec()), &mut wire)
                    .unwrap();
            }
            assert_eq!(wire.len(), 800);
            client.write_all(&wire).unwrap();
            let reply = read_n(&mut client, 7);
            client.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).unwrap();
            (reply, rest)
        },
    );
    assert_eq!(replies.0, b"\0\0\0\x03100");
    assert!(replies.1.is_empty());
    assert_eq!(
        log.events(),
        ["read 800 bytes", "read_complete after 100 messages"]
    );
}

/// Logs messages and read completions.
struct Lines {
    log: Log,
}

impl Handler for Lines {
    type Message = Bytes;
    type Reply = String;
    fn message_received(&mut self, _ctx: &Context<String>, line: Bytes) {
        self.log
            .push(format!("message {}", String::from_utf8_lossy(&line)));
    }
    fn read_complete(&mut self, _ctx: &Context<String>) {
        self.log.push("read_complete");
    }
}

#[test]
fn a_read_that_completes_no_message_gets_no_read_complete() {
    let log = Log::default();
    let recorder = StringTransport::new();
    let mut framed = Framed::new(
        LineBasedFrameDecoder::new(64),
        LineEncoder::new(),
        Lines { log: log.clone() },
    );
    framed.connection_made(&recorder.transport());
    framed.data_received(Bytes::from_static(b"ha"));
    framed.data_received(Bytes::from_static(b"lf"));
    assert!(log.events().is_empty());
    framed.data_received(Bytes::from_static(b"\nwhole\npart"));
    assert_eq!(
        log.take(),
        ["message half", "message whole", "read_complete"]
    );
}

// ---------------------------------------------------------------------------
// write_and_notify and write_complete
// ---------------------------------------------------------------------------

/// Writes one message with `write_and_notify` when connected.
struct Notified {
    log: Log,
    body: Bytes,
    /// Raise the hard cap and abort once the bytes are stuck.
    abort_when_stuck: Option<mpsc::Sender<()>>,
}

impl Handler for Notified {
    type Message = Bytes;
    type Reply = Bytes;
    fn connection_made(&mut self, ctx: &Context<Bytes>) {
        let transport = ctx.transport().clone();
        if self.abort_when_stuck.is_some() {
            transport.set_write_buffer_max(64 * MIB);
        }
        let sent = ctx.write_and_notify(self.body.clone());
        self.log.push(if sent.called() {
            "fired during the call"
        } else {
            "pending after the call"
        });
        record(&sent, &self.log, "message");
        if let Some(tell_peer) = self.abort_when_stuck.clone() {
            let log = self.log.clone();
            when_stuck(transport.clone(), move || {
                log.push("stuck");
                transport.abort_connection();
                tell_peer.send(()).unwrap();
            });
        }
    }
    fn message_received(&mut self, _ctx: &Context<Bytes>, _frame: Bytes) {}
    fn write_complete(&mut self, _ctx: &Context<Bytes>) {
        self.log.push("write_complete");
    }
    fn connection_lost(&mut self, _ctx: &Context<Bytes>, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

#[test]
fn write_and_notify_fires_once_the_message_is_in_the_kernel_and_the_peer_gets_it() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let got = serve(
        &reactor,
        move |_peer| {
            Framed::new(
                frame_decoder(64),
                prepender(),
                Notified {
                    log: server_log.clone(),
                    body: Bytes::from_static(b"hello"),
                    abort_when_stuck: None,
                },
            )
        },
        |addr, _handle| {
            let mut client = connect(addr);
            let got = read_n(&mut client, 9);
            client.shutdown(Shutdown::Write).unwrap();
            got
        },
    );
    assert_eq!(got, b"\0\0\0\x05hello");
    assert_eq!(
        log.events(),
        [
            "pending after the call",
            "message sent",
            "write_complete",
            "lost: done"
        ]
    );
}

#[test]
fn write_and_notify_fails_with_not_sent_when_the_connection_is_aborted_with_the_bytes_stuck() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (tell_peer, told) = mpsc::channel();
    serve(
        &reactor,
        move |_peer| {
            Framed::new(
                frame_decoder(64),
                prepender(),
                Notified {
                    log: server_log.clone(),
                    body: Bytes::from(vec![b'x'; 8 * MIB]),
                    abort_when_stuck: Some(tell_peer.clone()),
                },
            )
        },
        move |addr, _handle| {
            // Never reads until the server has aborted.
            let mut client = connect_small(addr, SMALL_RCVBUF);
            told.recv_timeout(LIMIT).expect("told of the abort");
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest);
        },
    );
    assert_eq!(
        log.events(),
        [
            "pending after the call",
            "stuck",
            "message not sent",
            "lost: aborted"
        ],
        "no write_complete: the buffer never emptied"
    );
}

/// Writes a message its 1-byte length field cannot hold, with `write` or
/// with `write_and_notify`.
struct TooLong {
    log: Log,
    notify: bool,
}

impl Handler for TooLong {
    type Message = Bytes;
    type Reply = Bytes;
    fn connection_made(&mut self, ctx: &Context<Bytes>) {
        let body = Bytes::from(vec![b'x'; 300]);
        if self.notify {
            let sent = ctx.write_and_notify(body);
            record(&sent, &self.log, "message");
        } else {
            ctx.write(body);
        }
    }
    fn message_received(&mut self, _ctx: &Context<Bytes>, _frame: Bytes) {}
    fn connection_lost(&mut self, _ctx: &Context<Bytes>, reason: &Reason) {
        match reason {
            Reason::Failed(err) => self.log.push(format!(
                "lost: failed with {} {err}",
                if err.downcast_ref::<EncodeError>().is_some() {
                    "the EncodeError"
                } else {
                    "another error:"
                }
            )),
            other => self.log.push(describe(other)),
        }
        twill::stop();
    }
}

fn too_long(notify: bool) -> (Vec<String>, Vec<u8>) {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let got = serve(
        &reactor,
        move |_peer| {
            Framed::new(
                LengthFieldBasedFrameDecoder::builder(64)
                    .length_field_length(1)
                    .build()
                    .unwrap(),
                LengthFieldPrepender::new(1).unwrap(),
                TooLong {
                    log: server_log.clone(),
                    notify,
                },
            )
        },
        |addr, _handle| {
            let mut client = connect(addr);
            let mut all = Vec::new();
            client.read_to_end(&mut all).unwrap();
            all
        },
    );
    (log.events(), got)
}

#[test]
fn write_and_notify_fails_with_the_encode_error_and_closes_the_connection_as_write_does() {
    let too_long_error = "message of 300 bytes is longer than the maximum of 255";
    let (by_write, nothing) = too_long(false);
    assert!(nothing.is_empty());
    assert_eq!(
        by_write,
        [format!(
            "lost: failed with the EncodeError {too_long_error}"
        )]
    );
    let (by_notify, nothing) = too_long(true);
    assert!(nothing.is_empty());
    assert_eq!(
        by_notify,
        [
            format!("message failed to encode: {too_long_error}"),
            format!("lost: failed with the EncodeError {too_long_error}"),
        ]
    );
}

// ---------------------------------------------------------------------------
// Pull reading: set_auto_read(false) and read()
// ---------------------------------------------------------------------------

/// A line of the pull test: its number, 15 digits, and `\n`.
fn numbered_line(seq: u64) -> [u8; 16] {
    let mut line = [b'\n'; 16];
    line[..15].copy_from_slice(format!("{seq:015}").as_bytes());
    line
}

#[derive(Default)]
struct PullState {
    /// Lines received, each checked against its number.
    lines: Cell<u64>,
    /// Lines and read completions while pulling.
    pulled: Cell<u64>,
    pulled_read_completes: Cell<u64>,
    /// Lines since the last read completion.
    since: Cell<u64>,
    /// Read completions that came after more than one line: `read()`s
    /// made while no line waited add up, and one socket read answers them.
    batches: Cell<u64>,
    ticks: Cell<u64>,
    ctx: RefCell<Option<Context<String>>>,
    eof: Cell<bool>,
}

/// Takes one line per 1 ms tick of a reactor timer while automatic
/// reading is off.
struct Puller {
    state: Rc<PullState>,
}

fn tick(state: Rc<PullState>) {
    let ctx = state.ctx.borrow().clone();
    let Some(ctx) = ctx else { return };
    if !ctx.auto_read() {
        state.ticks.set(state.ticks.get() + 1);
        ctx.read();
        twill::call_later(Duration::from_millis(1), move || tick(state));
    }
}

impl Handler for Puller {
    type Message = Bytes;
    type Reply = String;
    fn connection_made(&mut self, ctx: &Context<String>) {
        ctx.set_auto_read(false);
        *self.state.ctx.borrow_mut() = Some(ctx.clone());
        let state = self.state.clone();
        twill::call_later(Duration::from_millis(1), move || tick(state));
    }
    fn message_received(&mut self, ctx: &Context<String>, line: Bytes) {
        let seq = self.state.lines.get();
        assert_eq!(&line[..], &numbered_line(seq)[..15], "line {seq}");
        self.state.lines.set(seq + 1);
        if !ctx.auto_read() {
            self.state.pulled.set(self.state.pulled.get() + 1);
            self.state.since.set(self.state.since.get() + 1);
        }
    }
    fn read_complete(&mut self, ctx: &Context<String>) {
        if !ctx.auto_read() {
            let s = &self.state;
            s.pulled_read_completes
                .set(s.pulled_read_completes.get() + 1);
            if s.since.replace(0) > 1 {
                s.batches.set(s.batches.get() + 1);
            }
        }
    }
    fn eof_received(&mut self, _ctx: &Context<String>) -> bool {
        self.state.eof.set(true);
        false
    }
    fn connection_lost(&mut self, _ctx: &Context<String>, _reason: &Reason) {
        self.state.ctx.borrow_mut().take();
        twill::stop();
    }
}

/// Turns automatic reading back on for the puller when it gets a line:
/// from outside the puller's callbacks.
struct Switch {
    state: Rc<PullState>,
    seen: Rc<Seen>,
    report: Rc<RefCell<Option<PullReport>>>,
}

/// What the pulling side saw until automatic reading came back on.
#[derive(Debug, Clone, Copy)]
struct PullReport {
    bytes_read: usize,
    socket_reads: usize,
    peak_input: usize,
    pulled: u64,
    read_completes: u64,
    batches: u64,
    lines_without_read_complete: u64,
    ticks: u64,
}

impl Handler for Switch {
    type Message = Bytes;
    type Reply = String;
    fn message_received(&mut self, ctx: &Context<String>, _line: Bytes) {
        let s = &self.state;
        *self.report.borrow_mut() = Some(PullReport {
            bytes_read: self.seen.bytes.get(),
            socket_reads: self.seen.reads.get(),
            peak_input: self.seen.peak_input.get(),
            pulled: s.pulled.get(),
            read_completes: s.pulled_read_completes.get(),
            batches: s.batches.get(),
            lines_without_read_complete: s.since.get(),
            ticks: s.ticks.get(),
        });
        let puller = s.ctx.borrow().clone().expect("the puller is connected");
        puller.set_auto_read(true);
        ctx.write("on");
    }
}

/// Netty's `FlowControlHandlerTest.testFlowAutoReadOff` (one message per
/// `read()`) and `testFlowToggleAutoRead` (turning it back on delivers the
/// rest), at scale: a peer sends 10 MiB of 16-byte lines to a handler
/// that takes one line per 1 ms tick. The server reads only while a line
/// is asked for and none waits, so it reads a few reads' worth (each at
/// most 64 KiB) and holds at most one read in its input buffer; the
/// peer's writes stall in the kernel. Each line released by `read()` is
/// followed by a `read_complete`. Turned back on from another connection's
/// callback, everything waiting is delivered, the rest is read, in order,
/// nothing lost.
#[test]
fn pull_reading_one_line_per_tick_keeps_a_10_mib_sender_stalled_with_a_small_input_buffer() {
    const LIMIT_BYTES: u64 = 10 * MIB as u64;
    let reactor = Reactor::new().unwrap();
    let state = Rc::new(PullState::default());
    let seen = Rc::new(Seen::default());
    let report = Rc::new(RefCell::new(None));
    let (state_f, seen_f, report_f) = (state.clone(), seen.clone(), report.clone());
    let mut accepted = 0;
    let sent = serve(
        &reactor,
        move |_peer| -> Box<dyn Protocol> {
            accepted += 1;
            if accepted == 1 {
                Box::new(Watch {
                    inner: Framed::new(
                        LineBasedFrameDecoder::new(64),
                        LineEncoder::new(),
                        Puller {
                            state: state_f.clone(),
                        },
                    ),
                    seen: seen_f.clone(),
                })
            } else {
                Box::new(Framed::new(
                    LineBasedFrameDecoder::new(64),
                    LineEncoder::new(),
                    Switch {
                        state: state_f.clone(),
                        seen: seen_f.clone(),
                        report: report_f.clone(),
                    },
                ))
            }
        },
        |addr, _handle| {
            let mut sender = connect(addr);
            let fill = |at: u64, buf: &mut [u8]| {
                for (i, b) in buf.iter_mut().enumerate() {
                    let offset = at + i as u64;
                    *b = numbered_line(offset / 16)[(offset % 16) as usize];
                }
            };
            let stalled_at =
                send_until_stalled(&mut sender, LIMIT_BYTES, Duration::from_millis(500), fill);
            // Switch automatic reading back on, then send the rest.
            let mut switch = connect(addr);
            switch.write_all(b"on\n").unwrap();
            assert_eq!(read_n(&mut switch, 3), b"on\n");
            let rest =
                send_until_stalled(&mut sender, LIMIT_BYTES - stalled_at, LIMIT, |at, buf| {
                    fill(stalled_at + at, buf)
                });
            assert_eq!(stalled_at + rest, LIMIT_BYTES, "the rest went through");
            sender.shutdown(Shutdown::Write).unwrap();
            let mut end = Vec::new();
            sender.read_to_end(&mut end).unwrap();
            stalled_at
        },
    );
    let report = report.borrow().expect("the switch was used");
    eprintln!("pull: {sent} bytes sent before the stall; {report:?}");
    // The kernel's buffers take a few MiB (about 4 here: the sender's
    // send buffer grows to its 4 MiB maximum); the server's own figures
    // below are what the rule is about.
    assert!(
        sent < LIMIT_BYTES,
        "all {sent} bytes went through: the server kept reading"
    );
    assert!(
        report.bytes_read <= 4 * 64 * 1024,
        "the server read {} bytes for {} lines taken",
        report.bytes_read,
        report.pulled
    );
    assert!(
        report.peak_input <= 64 * 1024 + 16,
        "the input buffer held {} bytes",
        report.peak_input
    );
    assert!(
        report.pulled > 0 && report.pulled <= report.ticks + 1,
        "{report:?}"
    );
    // Every line released by read() is followed by a read_complete: after
    // it alone, or, when read()s added up while nothing waited, after the
    // lines the next socket read completed for them.
    assert_eq!(report.lines_without_read_complete, 0, "{report:?}");
    assert!(
        report.read_completes > report.batches && report.read_completes <= report.pulled,
        "{report:?}"
    );
    assert!(
        report.batches <= report.socket_reads as u64,
        "a read_complete after several lines only for a socket read: {report:?}"
    );
    assert_eq!(state.lines.get(), LIMIT_BYTES / 16, "every line, in order");
    assert!(state.eof.get());
}

/// Asks for one line when connected, and for the next one from a timer
/// after each line, echoing; says `bye` at EOF.
struct OneByOne {
    log: Log,
}

impl Handler for OneByOne {
    type Message = Bytes;
    type Reply = String;
    fn connection_made(&mut self, ctx: &Context<String>) {
        ctx.set_auto_read(false);
        ctx.read();
    }
    fn message_received(&mut self, ctx: &Context<String>, line: Bytes) {
        self.log
            .push(format!("message {}", String::from_utf8_lossy(&line)));
        ctx.write(String::from_utf8_lossy(&line));
        let ctx = ctx.clone();
        twill::call_later(Duration::from_millis(1), move || ctx.read());
    }
    fn read_complete(&mut self, _ctx: &Context<String>) {
        self.log.push("read_complete");
    }
    fn eof_received(&mut self, ctx: &Context<String>) -> bool {
        self.log.push("eof");
        ctx.write("bye");
        false
    }
    fn connection_lost(&mut self, _ctx: &Context<String>, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

/// Netty's `ByteToMessageDecoderTest.testFireChannelReadCompleteOnInactive`
/// order (messages, their read completion, then the end) with pull
/// reading: the peer's lines and its EOF arrive together; the EOF reaches
/// the handler only after every line it asked for one by one, and the
/// connection stays open for the replies until then.
#[test]
fn with_pull_reading_the_eof_is_delivered_after_the_waiting_messages_and_the_connection_stays_open()
{
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let got = serve(
        &reactor,
        move |_peer| {
            Framed::new(
                LineBasedFrameDecoder::new(64),
                LineEncoder::new(),
                OneByOne {
                    log: server_log.clone(),
                },
            )
        },
        |addr, _handle| {
            let mut client = connect(addr);
            client.write_all(b"a\nb\nc\n").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut all = Vec::new();
            client.read_to_end(&mut all).unwrap();
            all
        },
    );
    assert_eq!(got, b"a\nb\nc\nbye\n");
    assert_eq!(
        log.events(),
        [
            "message a",
            "read_complete",
            "message b",
            "read_complete",
            "message c",
            "read_complete",
            "eof",
            "lost: done"
        ]
    );
}

/// Delivers the events a `StringTransport` kept (the framer's own read
/// requests among them) to `framed`, as the reactor would.
fn deliver_events(recorder: &StringTransport, framed: &mut impl Protocol) {
    for event in recorder.take_events() {
        framed.event_received(event);
    }
}

/// Logs messages, read completions and the EOF; keeps its context.
struct Held {
    log: Log,
    ctx: Rc<RefCell<Option<Context<String>>>>,
}

impl Handler for Held {
    type Message = Bytes;
    type Reply = String;
    fn connection_made(&mut self, ctx: &Context<String>) {
        ctx.set_auto_read(false);
        *self.ctx.borrow_mut() = Some(ctx.clone());
    }
    fn message_received(&mut self, _ctx: &Context<String>, line: Bytes) {
        self.log
            .push(format!("message {}", String::from_utf8_lossy(&line)));
    }
    fn read_complete(&mut self, _ctx: &Context<String>) {
        self.log.push("read_complete");
    }
    fn eof_received(&mut self, _ctx: &Context<String>) -> bool {
        self.log.push("eof");
        false
    }
}

fn held() -> (
    Framed<LineBasedFrameDecoder, LineEncoder, Held>,
    StringTransport,
    Log,
    Context<String>,
) {
    let log = Log::default();
    let ctx = Rc::new(RefCell::new(None));
    let mut framed = Framed::new(
        LineBasedFrameDecoder::new(64),
        LineEncoder::new(),
        Held {
            log: log.clone(),
            ctx: ctx.clone(),
        },
    );
    let recorder = StringTransport::new();
    framed.connection_made(&recorder.transport());
    let ctx = ctx.borrow().clone().unwrap();
    (framed, recorder, log, ctx)
}

#[test]
fn an_eof_that_comes_while_messages_wait_is_held_behind_them_and_keeps_the_connection_open() {
    let (mut framed, recorder, log, ctx) = held();
    framed.data_received(Bytes::from_static(b"a\nb\n"));
    assert!(log.events().is_empty(), "nothing asked, nothing delivered");
    assert!(recorder.reading_paused());
    assert!(framed.eof_received(), "kept open for the waiting messages");
    assert!(log.events().is_empty());
    for _ in 0..3 {
        ctx.read();
        deliver_events(&recorder, &mut framed);
    }
    assert_eq!(
        log.take(),
        [
            "message a",
            "read_complete",
            "message b",
            "read_complete",
            "eof"
        ]
    );
    assert!(
        recorder.disconnecting(),
        "closed once the EOF was delivered"
    );
}

#[test]
fn turning_auto_read_back_on_delivers_everything_waiting_then_a_held_eof() {
    let (mut framed, recorder, log, ctx) = held();
    framed.data_received(Bytes::from_static(b"1\n2\n3\n4\n"));
    assert!(framed.eof_received());
    assert!(log.events().is_empty());
    ctx.set_auto_read(true);
    deliver_events(&recorder, &mut framed);
    assert_eq!(
        log.take(),
        [
            "message 1",
            "message 2",
            "message 3",
            "message 4",
            "read_complete",
            "eof"
        ]
    );
    assert!(recorder.disconnecting());
}

#[test]
fn with_auto_read_off_reading_pauses_while_nothing_is_asked_and_resumes_on_read() {
    let (mut framed, recorder, log, ctx) = held();
    assert!(recorder.reading_paused(), "nothing asked yet");
    ctx.read();
    deliver_events(&recorder, &mut framed);
    assert!(!recorder.reading_paused(), "a message is asked for");
    framed.data_received(Bytes::from_static(b"x\ny\n"));
    assert_eq!(log.take(), ["message x", "read_complete"]);
    assert!(recorder.reading_paused(), "y waits; nothing more is read");
    ctx.read();
    deliver_events(&recorder, &mut framed);
    assert_eq!(log.take(), ["message y", "read_complete"]);
    assert!(recorder.reading_paused(), "nothing asked again");
    ctx.read();
    deliver_events(&recorder, &mut framed);
    assert!(!recorder.reading_paused());
    assert!(log.events().is_empty());
}

// ---------------------------------------------------------------------------
// event_received
// ---------------------------------------------------------------------------

/// Says `idle` and fires an event of its own at the first reader-idle
/// event; closes when that event arrives.
struct IdleListener {
    log: Log,
}

impl Handler for IdleListener {
    type Message = Bytes;
    type Reply = String;
    fn message_received(&mut self, _ctx: &Context<String>, _line: Bytes) {}
    fn event_received(&mut self, ctx: &Context<String>, event: Event) {
        let event = match event.downcast::<IdleStateEvent>() {
            Ok(idle) => {
                if idle.state() == IdleState::ReaderIdle && idle.is_first() {
                    self.log.push(format!("{idle}"));
                    ctx.write("idle");
                    ctx.fire_event(Event::new("after idle"));
                    self.log.push("idle event returns");
                }
                return;
            }
            Err(event) => event,
        };
        let name = event.downcast::<&'static str>().unwrap();
        self.log.push(format!("event {name}"));
        ctx.lose_connection();
    }
    fn connection_lost(&mut self, _ctx: &Context<String>, reason: &Reason) {
        self.log.push(describe(reason));
        twill::stop();
    }
}

/// Netty's `IdleStateHandlerTest.testReaderIdle`, to a codec handler over a
/// real socket; an event the handler fires from inside the idle event
/// arrives after it returns.
#[test]
fn idle_state_events_reach_a_codec_handler_over_a_socket_and_events_it_fires_come_after() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let got = serve(
        &reactor,
        move |_peer| {
            IdleStateHandler::new(
                Framed::new(
                    LineBasedFrameDecoder::new(64),
                    LineEncoder::new(),
                    IdleListener {
                        log: server_log.clone(),
                    },
                ),
                Duration::from_millis(30),
                Duration::ZERO,
                Duration::ZERO,
            )
        },
        |addr, _handle| {
            let mut client = connect(addr);
            let mut all = Vec::new();
            client
                .read_to_end(&mut all)
                .map(|_| all)
                .map_err(|e| e.kind())
        },
    );
    assert_eq!(got, Ok(b"idle\n".to_vec()));
    assert_eq!(
        log.events(),
        [
            "IdleStateEvent(READER_IDLE, first)",
            "idle event returns",
            "event after idle",
            "lost: done"
        ]
    );
}

/// Panics at the first idle event.
struct PanicsWhenIdle {
    log: Log,
}

impl Handler for PanicsWhenIdle {
    type Message = Bytes;
    type Reply = String;
    fn message_received(&mut self, _ctx: &Context<String>, _line: Bytes) {}
    fn event_received(&mut self, _ctx: &Context<String>, event: Event) {
        let idle = event.downcast::<IdleStateEvent>().unwrap();
        panic!("cannot take {idle}");
    }
    fn connection_lost(&mut self, _ctx: &Context<String>, reason: &Reason) {
        match reason {
            Reason::Failed(err) => match err.downcast_ref::<twill::Panicked>() {
                Some(p) => self
                    .log
                    .push(format!("lost: {} panicked: {}", p.callback, p.message)),
                None => self.log.push(format!("lost: failed {err}")),
            },
            other => self.log.push(describe(other)),
        }
        twill::stop();
    }
}

/// As when the connection itself delivers an event: a panic in the
/// handler's `event_received` for an idle event closes that connection,
/// with `Panicked`, rather than being logged by the timer with the
/// connection left open.
#[test]
fn a_panic_in_a_handlers_idle_event_closes_that_connection() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let end = serve(
        &reactor,
        move |_peer| {
            IdleStateHandler::new(
                Framed::new(
                    LineBasedFrameDecoder::new(64),
                    LineEncoder::new(),
                    PanicsWhenIdle {
                        log: server_log.clone(),
                    },
                ),
                Duration::from_millis(30),
                Duration::ZERO,
                Duration::ZERO,
            )
        },
        |addr, handle| {
            let mut client = connect(addr);
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut all = Vec::new();
            let end = client.read_to_end(&mut all).map_err(|e| e.kind());
            // Stops the server if the connection stayed open.
            handle.stop();
            end
        },
    );
    assert_eq!(end, Ok(0), "closed with a FIN");
    assert_eq!(
        log.events(),
        ["lost: event_received panicked: cannot take IdleStateEvent(READER_IDLE, first)"]
    );
}

/// Fires an event at its own connection from `message_received`.
struct FiresAtItself {
    log: Log,
}

impl Handler for FiresAtItself {
    type Message = Bytes;
    type Reply = String;
    fn message_received(&mut self, ctx: &Context<String>, line: Bytes) {
        let line = String::from_utf8_lossy(&line).into_owned();
        self.log.push(format!("message {line}"));
        ctx.fire_event(Event::new(line));
    }
    fn read_complete(&mut self, _ctx: &Context<String>) {
        self.log.push("read_complete");
    }
    fn event_received(&mut self, ctx: &Context<String>, event: Event) {
        let line = event.downcast::<String>().unwrap();
        self.log.push(format!("event {line}"));
        if line == "last" {
            ctx.write("done");
        }
    }
    fn connection_lost(&mut self, _ctx: &Context<String>, _reason: &Reason) {
        twill::stop();
    }
}

#[test]
fn an_event_a_handler_fires_at_itself_arrives_after_the_read_it_came_from() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    serve(
        &reactor,
        move |_peer| {
            Framed::new(
                LineBasedFrameDecoder::new(64),
                LineEncoder::new(),
                FiresAtItself {
                    log: server_log.clone(),
                },
            )
        },
        |addr, _handle| {
            let mut client = connect(addr);
            client.write_all(b"first\nlast\n").unwrap();
            assert_eq!(read_n(&mut client, 5), b"done\n");
        },
    );
    assert_eq!(
        log.events(),
        [
            "message first",
            "message last",
            "read_complete",
            "event first",
            "event last"
        ]
    );
}

// ---------------------------------------------------------------------------
// LengthFieldPrepender: bodies handed over uncopied, the same bytes on the
// wire
// ---------------------------------------------------------------------------

const BODY_SIZES: [usize; 7] = [0, 1, 511, 512, 513, 4096, MIB];

fn body(size: usize) -> Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// What `encode` (everything copied into one buffer) writes for the bodies.
fn encoded_by_copy() -> Vec<u8> {
    let mut wire = BytesMut::new();
    for size in BODY_SIZES {
        prepender().encode(body(size), &mut wire).unwrap();
    }
    wire.to_vec()
}

/// Decodes `wire` with the prepender's matching decoder.
fn decode_all(wire: &[u8]) -> Vec<Bytes> {
    let mut decoder = frame_decoder(2 * MIB);
    let mut buf = BytesMut::from(wire);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    frames
}

#[test]
fn encode_parts_hands_the_body_back_as_the_same_bytes_after_the_header() {
    for size in BODY_SIZES {
        let body = body(size);
        let mut head = BytesMut::new();
        let tail = prepender().encode_parts(body.clone(), &mut head).unwrap();
        match tail {
            None => {
                // Short bodies are copied after the header: the write
                // buffer would copy them anyway.
                assert!(size <= 512, "size {size} was copied");
                assert_eq!(head[..4], (size as u32).to_be_bytes(), "size {size}");
                assert_eq!(&head[4..], &body[..], "size {size}");
            }
            Some(tail) => {
                assert!(size > 512, "size {size} was not copied");
                assert_eq!(&head[..], (size as u32).to_be_bytes(), "size {size}");
                assert_eq!(tail.as_ptr(), body.as_ptr(), "size {size}: not copied");
                assert_eq!(tail.len(), size);
            }
        }
    }
}

/// Writes each body when connected, through `Context::write`.
struct Bodies;

impl Handler for Bodies {
    type Message = Bytes;
    type Reply = Bytes;
    fn connection_made(&mut self, ctx: &Context<Bytes>) {
        for size in BODY_SIZES {
            ctx.write(body(size));
        }
    }
    fn message_received(&mut self, _ctx: &Context<Bytes>, _frame: Bytes) {}
}

#[test]
fn framed_with_length_field_prepender_writes_the_same_bytes_as_encode_for_every_body_size() {
    let recorder = StringTransport::new();
    let mut framed = Framed::new(frame_decoder(64), prepender(), Bodies);
    framed.connection_made(&recorder.transport());
    let wire = recorder.value();
    assert_eq!(wire, encoded_by_copy());
    let frames = decode_all(&wire);
    assert_eq!(frames.len(), BODY_SIZES.len());
    for (frame, size) in frames.iter().zip(BODY_SIZES) {
        assert_eq!(*frame, body(size), "round trip of {size} bytes");
    }

    // The same through a bare Context, and through a message encoder put
    // in front (the body still handed over by the prepender).
    let recorder = StringTransport::new();
    let ctx: Context<Bytes> = Context::new(recorder.transport(), prepender());
    let strings = StringTransport::new();
    let text: Context<String> = Context::new(
        strings.transport(),
        <LengthFieldPrepender as Encoder<Bytes>>::after(prepender(), |s: String| {
            Ok::<_, EncodeError>(Bytes::from(s))
        }),
    );
    for size in BODY_SIZES {
        ctx.write(body(size));
        text.write("x".repeat(size));
    }
    assert_eq!(recorder.value(), encoded_by_copy());
    let texts = decode_all(&strings.value());
    for (frame, size) in texts.iter().zip(BODY_SIZES) {
        assert_eq!(*frame, "x".repeat(size).as_bytes());
    }
}

#[test]
fn framed_with_length_field_prepender_sends_the_same_bytes_over_a_socket() {
    struct BodiesThenClose;
    impl Handler for BodiesThenClose {
        type Message = Bytes;
        type Reply = Bytes;
        fn connection_made(&mut self, ctx: &Context<Bytes>) {
            for size in BODY_SIZES {
                ctx.write(body(size));
            }
            ctx.lose_connection();
        }
        fn message_received(&mut self, _ctx: &Context<Bytes>, _frame: Bytes) {}
        fn connection_lost(&mut self, _ctx: &Context<Bytes>, _reason: &Reason) {
            twill::stop();
        }
    }
    let reactor = Reactor::new().unwrap();
    let got = serve(
        &reactor,
        |_peer| Framed::new(frame_decoder(64), prepender(), BodiesThenClose),
        |addr, _handle| {
            let mut client = connect(addr);
            let mut all = Vec::new();
            match client.read_to_end(&mut all) {
                Ok(_) => Ok(all),
                Err(err) if err.kind() == ErrorKind::ConnectionReset => Err(all.len()),
                Err(err) => panic!("{err}"),
            }
        },
    );
    let wire = got.expect("a clean close after everything");
    assert!(
        wire == encoded_by_copy(),
        "the wire bytes differ from encode's"
    );
    assert_eq!(decode_all(&wire).len(), BODY_SIZES.len());
}

#[test]
fn write_and_notify_on_a_string_transport_waits_for_the_held_back_bytes() {
    let recorder = StringTransport::new();
    let ctx: Context<Bytes> = Context::new(recorder.transport(), prepender());
    recorder.set_write_buffer_size(1000);
    let sent = ctx.write_and_notify(body(512));
    assert_no_result(&sent);
    recorder.set_write_buffer_size(0);
    twill::testing::success_result_of(&sent);
    assert_eq!(decode_all(&recorder.value()), [body(512)]);
}
