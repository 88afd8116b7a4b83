//! The codec layer's backpressure: `Framed`, the pipeline and the Twisted
//! framers turn the transport's flow control on, a handler can turn it off,
//! and over a real socket a peer that never reads its replies holds the
//! server to about the high watermark, losing nothing.

use std::cell::Cell;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use twill::testing::StringTransport;
use twill::transport::DEFAULT_HIGH_WATERMARK;
use twill::{Protocol, Reactor};
use twill_protocols::basic::{
    Int32StringReceiver, LineContext, LineOnlyContext, LineOnlyReceiver, LineOnlyReceiverProtocol,
    LineReceiver, LineReceiverProtocol, NetstringReceiver, StringContext, StringReceiver,
};
use twill_protocols::codec::pipeline::{
    Message, Pipeline, PipelineContext, PipelineHandler, PipelineProtocol, Stage,
};
use twill_protocols::codec::{
    Context, Decoder, Framed, Handler, LineBasedFrameDecoder, LineEncoder, StringDecoder,
};
use twill_test_support::pressure::{connect_small, SMALL_RCVBUF};
use twill_test_support::reactor::{serve, LIMIT};

/// Echoes lines; records whether flow control was on when it was made, and
/// turns it off if asked.
struct Lines {
    turn_off: bool,
    seen_on: Rc<Cell<Option<bool>>>,
    peak: Rc<Cell<usize>>,
}

impl Lines {
    fn new(turn_off: bool) -> Lines {
        Lines {
            turn_off,
            seen_on: Rc::default(),
            peak: Rc::default(),
        }
    }
}

impl Handler for Lines {
    type Message = String;
    type Reply = String;

    fn connection_made(&mut self, ctx: &Context<String>) {
        self.seen_on.set(Some(ctx.transport().flow_control()));
        if self.turn_off {
            ctx.transport().set_flow_control(false);
        }
    }

    fn message_received(&mut self, ctx: &Context<String>, line: String) {
        ctx.write(line);
        let buffered = ctx.transport().write_buffer_size();
        self.peak.set(self.peak.get().max(buffered));
    }
}

fn framed(handler: Lines) -> impl Protocol {
    Framed::new(
        LineBasedFrameDecoder::new(1024).and_then(StringDecoder),
        LineEncoder::new(),
        handler,
    )
}

#[test]
fn framed_turns_flow_control_on_before_the_handler_runs() {
    let handler = Lines::new(false);
    let seen = handler.seen_on.clone();
    let recorder = StringTransport::new();
    framed(handler).connection_made(&recorder.transport());
    assert_eq!(seen.get(), Some(true));
    assert!(recorder.transport().flow_control());
}

#[test]
fn a_handler_turns_flow_control_off_in_connection_made() {
    let recorder = StringTransport::new();
    framed(Lines::new(true)).connection_made(&recorder.transport());
    assert!(!recorder.transport().flow_control());
}

#[test]
fn the_pipeline_turns_flow_control_on() {
    struct Quiet;
    impl PipelineHandler for Quiet {
        fn message_received(&mut self, _: &PipelineContext, _: Message) {}
    }
    let recorder = StringTransport::new();
    let pipeline = Pipeline::new();
    pipeline
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap();
    PipelineProtocol::new(pipeline, Quiet).connection_made(&recorder.transport());
    assert!(recorder.transport().flow_control());
}

#[test]
fn the_twisted_framers_turn_flow_control_on() {
    struct L;
    impl LineReceiver for L {
        fn line_received(&mut self, _: &LineContext, _: Bytes) {}
    }
    struct O;
    impl LineOnlyReceiver for O {
        fn line_received(&mut self, _: &LineOnlyContext, _: Bytes) {}
    }
    struct S;
    impl StringReceiver for S {
        fn string_received(&mut self, _: &StringContext, _: Bytes) {}
    }
    let protocols: Vec<Box<dyn Protocol>> = vec![
        Box::new(LineReceiverProtocol::new(L)),
        Box::new(LineOnlyReceiverProtocol::new(O)),
        Box::new(Int32StringReceiver::new(S)),
        Box::new(NetstringReceiver::new(S)),
    ];
    for mut protocol in protocols {
        let recorder = StringTransport::new();
        protocol.connection_made(&recorder.transport());
        assert!(recorder.transport().flow_control());
    }
}

#[test]
fn a_peer_that_never_reads_its_replies_holds_the_server_to_the_high_watermark() {
    let reactor = Reactor::new().unwrap();
    let peak = Rc::new(Cell::new(0));
    let server_peak = peak.clone();
    let (sent_lines, echoed) = serve(
        &reactor,
        move |_peer| {
            let mut handler = Lines::new(false);
            handler.peak = server_peak.clone();
            framed(handler)
        },
        |addr, handle| {
            let mut stream = connect_small(addr, SMALL_RCVBUF);
            stream
                .set_write_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            // 100-byte lines until the server stops taking them.
            let mut sent_lines = 0;
            let mut pending = Vec::new();
            loop {
                if pending.is_empty() {
                    pending = format!("{:099}\n", sent_lines).into_bytes();
                    sent_lines += 1;
                }
                match stream.write(&pending) {
                    Ok(n) => drop(pending.drain(..n)),
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == ErrorKind::TimedOut => break,
                    Err(err) => panic!("{err}"),
                }
                assert!(sent_lines < 2_000_000, "the server never stopped reading");
            }
            // Finish the line in progress, then read every reply.
            stream.set_write_timeout(Some(LIMIT)).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let writer = std::thread::spawn(move || {
                stream.write_all(&pending).unwrap();
                stream.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut echoed = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 {
                assert_eq!(line, format!("{:099}\n", echoed));
                echoed += 1;
                line.clear();
            }
            writer.join().unwrap();
            handle.stop();
            (sent_lines, echoed)
        },
    );
    assert_eq!(echoed, sent_lines, "every line came back");
    // The high watermark, plus the replies to one read (64 KiB at most).
    assert!(
        peak.get() <= DEFAULT_HIGH_WATERMARK + 64 * 1024,
        "the server buffered {} bytes",
        peak.get()
    );
}
