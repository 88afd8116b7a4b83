//! Regressions found in review of the handler-model change (Framed,
//! pipeline stages, handlers).

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use twill::task::Clock;
use twill::testing::StringTransport;
use twill::Protocol;
use twill_protocols::codec::{Context, Framed, Handler, LineBasedFrameDecoder, LineEncoder};
use twill_protocols::handler::TrafficShapingHandler;

/// Turns automatic reading off and never asks.
#[derive(Default)]
struct NeverAsks {
    got: usize,
}

impl Handler for NeverAsks {
    type Message = Bytes;
    type Reply = String;
    fn connection_made(&mut self, ctx: &Context<String>) {
        ctx.set_auto_read(false);
    }
    fn message_received(&mut self, _ctx: &Context<String>, _line: Bytes) {
        self.got += 1;
    }
}

/// A shaper's read hold ends with `resume_reading` on the transport, which
/// also undoes the pause of a Framed whose handler asked for nothing. The
/// Framed must pause again when input comes that nobody asked for, or the
/// peer fills its input buffer without bound.
#[test]
fn framed_pauses_again_after_a_wrapper_resumed_reading() {
    let clock = Clock::new();
    let framed = Framed::new(
        LineBasedFrameDecoder::new(64),
        LineEncoder::new(),
        NeverAsks::default(),
    );
    let mut shaped = TrafficShapingHandler::new(framed)
        .read_limit(1000)
        .clock(Rc::new(clock.clone()));
    let recorder = StringTransport::new();
    shaped.connection_made(&recorder.transport());
    assert!(recorder.reading_paused(), "nothing asked: nothing read");

    shaped.data_received(Bytes::from("line\n".repeat(600))); // 3 s worth
    clock.advance(Duration::from_secs(60));
    assert!(
        !recorder.reading_paused(),
        "the shaper's hold ended with resume_reading (documented)"
    );

    // The peer goes on sending: the Framed did not ask for it.
    for _ in 0..10 {
        shaped.data_received(Bytes::from("more\n"));
        clock.advance(Duration::from_secs(60));
    }
    assert!(
        recorder.reading_paused(),
        "input nobody asked for pauses reading again"
    );
    assert_eq!(shaped.inner().handler().got, 0);
}
