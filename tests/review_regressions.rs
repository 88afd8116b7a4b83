//! Regressions found in review of the handler-model change (events, write
//! completion, flush Deferreds), over loopback.

use std::io::Read;

use twill::{Bytes, Event, Protocol, Reactor, Transport};
use twill_test_support::reactor::{connect, serve};

/// Fires one event per event received, `left` times, then writes "done".
struct Chain {
    transport: Option<Transport>,
    left: u32,
}

impl Protocol for Chain {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        transport.fire_event(Event::new(()));
    }
    fn data_received(&mut self, _: Bytes) {}
    fn event_received(&mut self, _event: Event) {
        let transport = self.transport.as_ref().unwrap();
        if self.left == 0 {
            transport.write("done");
            transport.lose_connection();
            return;
        }
        self.left -= 1;
        transport.fire_event(Event::new(()));
    }
}

/// An event fired from `event_received` is delivered after it returns;
/// a long chain of them (a state machine driven by its own events) must
/// not nest one delivery inside the last, or the stack overflows and the
/// whole process aborts.
#[test]
fn events_fired_from_event_received_do_not_nest() {
    let reactor = Reactor::new().unwrap();
    let got = serve(
        &reactor,
        move |_peer| Chain {
            transport: None,
            left: 200_000,
        },
        move |addr, handle| {
            let mut stream = connect(addr);
            let mut got = Vec::new();
            let _ = stream.read_to_end(&mut got);
            handle.stop();
            got
        },
    );
    assert_eq!(got, b"done");
}
