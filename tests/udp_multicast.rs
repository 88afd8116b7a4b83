//! IPv4 multicast on the loopback interface, in-process and with the
//! `udp_multicast` example, plus its listener/sender pair as child
//! processes.
//!
//! Linux delivers IPv4 multicast on `lo` when the group is joined on the
//! interface with address 127.0.0.1 and the sender picks that interface
//! (`IP_MULTICAST_IF 127.0.0.1`) with multicast loopback on; no route and
//! no `MULTICAST` flag on `lo` are needed. (IPv6 multicast over `lo` needs
//! a route the usual container lacks, so IPv6 is covered by the option
//! tests in `tests/udp.rs` only.)

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use twill::{Bytes, DatagramConfig, DatagramProtocol, MulticastInterface, Reactor};
use twill_test_support::process::Proc;
use twill_test_support::reactor::run;

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 77);
const LOOPBACK: MulticastInterface = MulticastInterface::Address(Ipv4Addr::LOCALHOST);

struct Collect(Rc<RefCell<Vec<String>>>);

impl DatagramProtocol for Collect {
    fn datagram_received(&mut self, data: Bytes, _: SocketAddr) {
        let text = String::from_utf8_lossy(&data).into_owned();
        if text == "done" {
            twill::stop();
        }
        self.0.borrow_mut().push(text);
    }
}

#[test]
fn two_listeners_on_a_group_both_receive_what_is_sent_to_it() {
    let reactor = Reactor::new().unwrap();
    let config = DatagramConfig::new().reuse_address(true);
    let (first, second) = (Rc::default(), Rc::default());
    let a = reactor
        .listen_udp_with((GROUP, 0), &config, Collect(Rc::clone(&first)))
        .unwrap();
    let port = a.host().port();
    let b = reactor
        .listen_udp_with((GROUP, port), &config, Collect(Rc::clone(&second)))
        .unwrap();
    a.join_group(IpAddr::V4(GROUP), LOOPBACK).unwrap();
    b.join_group(IpAddr::V4(GROUP), LOOPBACK).unwrap();

    let sender = reactor
        .listen_udp("127.0.0.1:0", Collect(Rc::default()))
        .unwrap();
    sender.set_outgoing_interface(LOOPBACK).unwrap();
    sender.set_loopback_mode(true).unwrap();
    let group = SocketAddr::from((GROUP, port));
    sender.write("to both", group).unwrap();
    // Linux's IP_MULTICAST_ALL (on by default) still hands the group's
    // datagrams to a socket bound to the group while any socket on the
    // host is a member, so leaving is checked by its result only.
    b.leave_group(IpAddr::V4(GROUP), LOOPBACK).unwrap();
    assert!(
        b.leave_group(IpAddr::V4(GROUP), LOOPBACK).is_err(),
        "not a member any more"
    );
    sender.write("done", group).unwrap();
    run(&reactor);
    assert_eq!(*first.borrow(), ["to both", "done"]);
    assert_eq!(first.borrow()[..1], second.borrow()[..1]);
}

#[test]
fn the_multicast_example_delivers_to_every_listener() {
    let group = "239.255.77.79:17779";
    let listeners: Vec<Proc> = (0..2)
        .map(|_| Proc::example("twill", "udp_multicast", &["listen", group, "3"]))
        .collect();
    for listener in &listeners {
        listener.wait_stderr("listening on");
    }
    let mut sender = Proc::example("twill", "udp_multicast", &["send", group, "3"]);
    assert!(sender.wait_exit().success(), "{}", sender.transcript());
    for mut listener in listeners {
        assert!(listener.wait_exit().success(), "{}", listener.transcript());
        for n in 1..=3 {
            assert!(
                listener
                    .stdout_text()
                    .contains(&format!("datagram {n} of 3")),
                "{}",
                listener.transcript()
            );
        }
    }
}
