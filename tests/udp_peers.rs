//! twill's UDP against Python's, which twill did not write
//! (`tests/support/udp_peer.py`): a plain-socket client and an asyncio
//! `create_datagram_endpoint` client against the `udp_echo` example, a
//! twill client against an asyncio echo server, and a twill listener on a
//! multicast group that a Python sender writes to on the loopback
//! interface.
//!
//! Python is `$TWILL_TWISTED_PYTHON` if set, else `python3` (standard
//! library only). Every wait is bounded: the peer's lines and exit by
//! [`Proc`]'s limits, the reactor by its watchdog.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use twill::{Bytes, DatagramProtocol, DatagramTransport, Reactor};
use twill_test_support::process::Proc;
use twill_test_support::reactor::run;

/// `$TWILL_TWISTED_PYTHON` if set, else `python3`; `None` (the test says
/// why and passes) only if neither runs.
fn python() -> Option<OsString> {
    let python = std::env::var_os("TWILL_TWISTED_PYTHON").unwrap_or_else(|| "python3".into());
    match Command::new(&python).arg("--version").output() {
        Ok(out) if out.status.success() => Some(python),
        _ => {
            eprintln!("skipped: no Python ({python:?} does not run)");
            None
        }
    }
}

fn peer(python: &OsString, mode: &str, args: &[&str]) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/udp_peer.py");
    let mut command = Command::new(python);
    command.arg(script).arg(mode).args(args);
    Proc::start(&format!("udp_peer.py {mode}"), command)
}

fn echo_client_against_the_example(mode: &str) {
    let Some(python) = python() else { return };
    let server = Proc::example("twill", "udp_echo", &["127.0.0.1:0"]);
    let port = server.listening_addr().port().to_string();
    let mut client = peer(&python, mode, &[&port]);
    assert!(client.wait_exit().success(), "{}", client.transcript());
    assert!(client.stdout_text().contains(&format!("{mode} ok")));
}

#[test]
fn a_python_socket_client_gets_empty_and_maximum_datagrams_echoed_by_udp_echo() {
    echo_client_against_the_example("socket-client");
}

#[test]
fn an_asyncio_datagram_endpoint_gets_every_datagram_echoed_by_udp_echo() {
    echo_client_against_the_example("asyncio-client");
}

struct Client {
    server: SocketAddr,
    replies: Vec<Bytes>,
}

impl DatagramProtocol for Client {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        transport.connect(self.server).unwrap();
        for message in ["one", "two", "bye"] {
            transport.write_connected(message).unwrap();
        }
    }
    fn datagram_received(&mut self, data: Bytes, from: SocketAddr) {
        assert_eq!(from, self.server);
        self.replies.push(data);
        if self.replies.len() == 3 {
            let mut replies = std::mem::take(&mut self.replies);
            replies.sort();
            assert_eq!(replies, ["BYE", "ONE", "TWO"]);
            twill::stop();
        }
    }
}

#[test]
fn a_connected_twill_port_talks_to_an_asyncio_echo_server() {
    let Some(python) = python() else { return };
    let mut server = peer(&python, "asyncio-server", &[]);
    let line = server.wait_stdout("listening on ");
    let addr: SocketAddr = line
        .rsplit("listening on ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let reactor = Reactor::new().unwrap();
    reactor
        .listen_udp(
            "127.0.0.1:0",
            Client {
                server: addr,
                replies: Vec::new(),
            },
        )
        .unwrap();
    run(&reactor);
    assert!(server.wait_exit().success(), "{}", server.transcript());
    assert!(server.stdout_text().contains("asyncio-server ok"));
}

/// Keeps what arrives until "done".
struct Gather(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

impl DatagramProtocol for Gather {
    fn datagram_received(&mut self, data: Bytes, _: SocketAddr) {
        let text = String::from_utf8_lossy(&data).into_owned();
        if text == "done" {
            twill::stop();
        }
        self.0.borrow_mut().push(text);
    }
}

#[test]
fn a_twill_listener_on_a_group_gets_what_a_python_sender_multicasts() {
    use std::net::{IpAddr, Ipv4Addr};
    use twill::{DatagramConfig, MulticastInterface};
    let Some(python) = python() else { return };
    let group = Ipv4Addr::new(239, 255, 77, 81);
    let reactor = Reactor::new().unwrap();
    let got = std::rc::Rc::default();
    let config = DatagramConfig::new().reuse_address(true);
    let port = reactor
        .listen_udp_with((group, 0), &config, Gather(std::rc::Rc::clone(&got)))
        .unwrap();
    port.join_group(
        IpAddr::V4(group),
        MulticastInterface::Address(Ipv4Addr::LOCALHOST),
    )
    .unwrap();
    let number = port.host().port().to_string();
    let mut sender = peer(
        &python,
        "multicast-send",
        &[&group.to_string(), &number, "5"],
    );
    run(&reactor);
    assert!(sender.wait_exit().success(), "{}", sender.transcript());
    let got = got.borrow();
    let expected: Vec<String> = (0..5)
        .map(|n| format!("python multicast {n}"))
        .chain(["done".to_owned()])
        .collect();
    assert_eq!(*got, expected);
}
