//! UDP ports over real loopback sockets: Twisted's `listenUDP` and
//! `DatagramProtocol` contract (twisted/test/test_udp.py: `test_oldAddress`,
//! `test_connectionRefused`, `test_badConnect`, `test_stopListening`), with
//! asyncio's `error_received`, against `std::net::UdpSocket` peers on other
//! threads. Every reactor run is bounded by a watchdog, every peer read by
//! a timeout.

mod support;

use std::cell::Cell;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use twill::net::DatagramTruncated;
use twill::{
    Bytes, DatagramConfig, DatagramProtocol, DatagramTransport, MulticastInterface, Reactor,
};
use twill_test_support::events::Log;
use twill_test_support::reactor::{run, LIMIT};

type OnDatagram = Box<dyn FnMut(&DatagramTransport, Bytes, SocketAddr)>;

/// Records what its port reports and runs `on_datagram` for each datagram.
struct Probe {
    transport: Option<DatagramTransport>,
    log: Log,
    on_datagram: OnDatagram,
    stop_on_error: bool,
}

impl Probe {
    fn new(
        log: &Log,
        on_datagram: impl FnMut(&DatagramTransport, Bytes, SocketAddr) + 'static,
    ) -> Probe {
        Probe {
            transport: None,
            log: log.clone(),
            on_datagram: Box::new(on_datagram),
            stop_on_error: false,
        }
    }
}

impl DatagramProtocol for Probe {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        self.log.push("start");
        self.transport = Some(transport.clone());
    }
    fn datagram_received(&mut self, data: Bytes, from: SocketAddr) {
        let transport = self.transport.clone().expect("started");
        (self.on_datagram)(&transport, data, from);
    }
    fn error_received(&mut self, error: std::io::Error) {
        self.log.push(format!("error {:?}", error.kind()));
        if let Some(truncated) = DatagramTruncated::from_io(&error) {
            self.log.push(format!(
                "truncated {} max {}",
                truncated.size, truncated.max
            ));
        }
        if self.stop_on_error {
            twill::stop();
        }
    }
    fn pause_writing(&mut self) {
        self.log.push("pause");
    }
    fn resume_writing(&mut self) {
        self.log.push("resume");
    }
    fn stop_protocol(&mut self) {
        self.log.push("stop");
    }
}

fn echo(transport: &DatagramTransport, data: Bytes, from: SocketAddr) {
    transport.write(data, from).expect("echo");
}

/// A client socket on 127.0.0.1 with [`LIMIT`] as its read timeout.
fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client");
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    socket
}

fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; 70_000];
    let (n, from) = socket
        .recv_from(&mut buf)
        .expect("a datagram within the limit");
    buf.truncate(n);
    (buf, from)
}

#[test]
fn a_std_client_gets_each_datagram_echoed_by_a_twill_port() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let port = reactor
        .listen_udp("127.0.0.1:0", Probe::new(&log, echo))
        .unwrap();
    let server = port.host();
    assert_eq!(server.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_ne!(server.port(), 0, "port 0 picks a real port");
    let handle = reactor.handle();
    let peer = thread::spawn(move || {
        let socket = client();
        let mut echoed = Vec::new();
        for message in ["one", "two", "three"] {
            socket.send_to(message.as_bytes(), server).unwrap();
            let (data, from) = recv(&socket);
            assert_eq!(from, server);
            echoed.push(String::from_utf8(data).unwrap());
        }
        handle.stop();
        echoed
    });
    run(&reactor);
    assert_eq!(peer.join().unwrap(), ["one", "two", "three"]);
    assert_eq!(
        log.events(),
        ["start", "stop"],
        "the reactor's stop stopped the port"
    );
    assert!(!port.is_listening());
}

#[test]
fn empty_and_ipv4_maximum_datagrams_arrive_whole_and_echo() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let sizes = Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = sizes.clone();
    let probe = Probe::new(&log, move |transport, data, from| {
        seen.borrow_mut().push(data.len());
        echo(transport, data, from);
    });
    let server = reactor.listen_udp("127.0.0.1:0", probe).unwrap().host();
    let handle = reactor.handle();
    let peer = thread::spawn(move || {
        let socket = client();
        let largest: Vec<u8> = (0..65_507).map(|i| (i % 251) as u8).collect();
        for payload in [Vec::new(), largest, Vec::new()] {
            socket.send_to(&payload, server).unwrap();
            let (data, _) = recv(&socket);
            assert_eq!(data, payload, "echoed whole");
        }
        handle.stop();
    });
    run(&reactor);
    peer.join().unwrap();
    assert_eq!(*sizes.borrow(), [0, 65_507, 0]);
}

#[test]
fn a_datagram_over_the_maximum_is_dropped_and_reported_never_cut() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let delivered = Log::default();
    let record = delivered.clone();
    let probe = Probe::new(&log, move |_, data, _| {
        record.push(format!("{} bytes", data.len()));
        if data.len() == 100 {
            twill::stop();
        }
    });
    let config = DatagramConfig::new().max_datagram_size(100);
    let port = reactor
        .listen_udp_with("127.0.0.1:0", &config, probe)
        .unwrap();
    let socket = client();
    socket.send_to(&[1; 101], port.host()).unwrap();
    socket.send_to(&[2; 5000], port.host()).unwrap();
    socket.send_to(&[3; 100], port.host()).unwrap();
    run(&reactor);
    assert_eq!(delivered.events(), ["100 bytes"]);
    let events = log.events();
    assert_eq!(
        events[..3],
        ["start", "error InvalidData", "truncated 101 max 100"]
    );
    assert_eq!(
        events[3..5],
        ["error InvalidData", "truncated 5000 max 100"]
    );
    assert_eq!(port.truncated_datagrams(), 2);
}

#[test]
fn a_connected_port_writes_without_an_address_and_hears_only_its_peer() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let heard = Log::default();
    let record = heard.clone();
    let probe = Probe::new(&log, move |_, data, from| {
        record.push(format!(
            "{} from {}",
            String::from_utf8_lossy(&data),
            from.port()
        ));
        twill::stop();
    });
    let port = reactor.listen_udp("127.0.0.1:0", probe).unwrap();
    let (peer, stranger) = (client(), client());
    let not_yet = port.write_connected("too soon").unwrap_err();
    assert_eq!(not_yet.kind(), ErrorKind::NotConnected);

    port.connect(peer.local_addr().unwrap()).unwrap();
    assert_eq!(port.peer(), Some(peer.local_addr().unwrap()));
    port.write_connected("ping").unwrap();
    let (data, from) = recv(&peer);
    assert_eq!((data.as_slice(), from), (&b"ping"[..], port.host()));
    let elsewhere = port
        .write("no", stranger.local_addr().unwrap())
        .unwrap_err();
    assert_eq!(elsewhere.kind(), ErrorKind::InvalidInput);
    port.write("to the peer by address", peer.local_addr().unwrap())
        .unwrap();
    recv(&peer);

    // The kernel filters synchronously: had the stranger's datagram been
    // let in, it would be the first one read.
    stranger.send_to(b"stranger", port.host()).unwrap();
    peer.send_to(b"peer", port.host()).unwrap();
    run(&reactor);
    let peer_port = peer.local_addr().unwrap().port();
    assert_eq!(heard.events(), [format!("peer from {peer_port}")]);
}

#[test]
fn an_icmp_refusal_on_a_connected_port_reaches_error_received() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let mut probe = Probe::new(&log, |_, _, _| {});
    probe.stop_on_error = true;
    let port = reactor.listen_udp("127.0.0.1:0", probe).unwrap();
    let closed = client().local_addr().unwrap(); // bound, then closed
    port.connect(closed).unwrap();
    port.write_connected("anyone there?").unwrap();
    run(&reactor);
    assert_eq!(log.events()[..2], ["start", "error ConnectionRefused"]);
    assert!(!port.is_listening());
}

#[test]
fn a_panicking_datagram_received_is_logged_and_the_port_keeps_serving() {
    support::capture_logs();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let probe = Probe::new(&log, |transport, data, from| {
        if data.as_ref() == b"panic" {
            panic!("asked to panic by {from}");
        }
        echo(transport, data, from);
    });
    let server = reactor.listen_udp("127.0.0.1:0", probe).unwrap().host();
    let handle = reactor.handle();
    let peer = thread::spawn(move || {
        let socket = client();
        socket.send_to(b"panic", server).unwrap();
        socket.send_to(b"still there?", server).unwrap();
        let (data, _) = recv(&socket);
        handle.stop();
        data
    });
    run(&reactor);
    assert_eq!(peer.join().unwrap(), b"still there?");
    let logged = support::logged("panicked in datagram_received");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].starts_with("ERROR") && logged[0].contains("asked to panic"));
}

#[test]
fn stop_listening_calls_stop_protocol_once_and_frees_the_address() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let port = reactor
        .listen_udp("127.0.0.1:0", Probe::new(&log, |_, _, _| {}))
        .unwrap();
    let addr = port.host();
    port.stop_listening();
    port.stop_listening();
    assert_eq!(log.events(), ["start", "stop"]);
    assert!(!port.is_listening());
    assert_eq!(
        port.write("late", addr).unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert_eq!(port.set_ttl(3).unwrap_err().kind(), ErrorKind::NotConnected);
    UdpSocket::bind(addr).expect("the address is free again");
    reactor.stop();
    run(&reactor);
    assert_eq!(
        log.events(),
        ["start", "stop"],
        "the reactor's stop does not repeat it"
    );
}

#[test]
fn stop_listening_inside_datagram_received_stops_the_protocol_after_it_returns() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let record = log.clone();
    let probe = Probe::new(&log, move |transport, _, _| {
        transport.stop_listening();
        record.push("callback returns");
        twill::stop();
    });
    let port = reactor.listen_udp("127.0.0.1:0", probe).unwrap();
    let socket = client();
    for _ in 0..3 {
        socket.send_to(b"x", port.host()).unwrap();
    }
    run(&reactor);
    assert_eq!(
        log.events(),
        ["start", "callback returns", "stop"],
        "one datagram, then none"
    );
}

#[test]
fn a_graceful_stop_does_not_wait_for_datagram_ports() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let port = reactor
        .listen_udp("127.0.0.1:0", Probe::new(&log, |_, _, _| {}))
        .unwrap();
    reactor.set_shutdown_timeout(Duration::from_secs(30));
    let started = std::time::Instant::now();
    reactor.stop();
    run(&reactor);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(log.events(), ["start", "stop"]);
    assert!(!port.is_listening());
}

#[test]
fn send_errors_come_back_from_write_when_immediate() {
    let reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_udp("127.0.0.1:0", Probe::new(&Log::default(), |_, _, _| {}))
        .unwrap();
    let to = client().local_addr().unwrap();
    let too_big = port.write(vec![0; 65_508], to).unwrap_err();
    assert_eq!(too_big.raw_os_error(), Some(90), "EMSGSIZE: {too_big}");
    assert_eq!(port.send_queue_size(), 0, "an error is not queued");
    port.write(Bytes::new(), to)
        .expect("an empty datagram is fine");
}

#[test]
fn limits_that_do_not_fit_together_are_refused() {
    let reactor = Reactor::new().unwrap();
    let bad = [
        DatagramConfig::new().max_datagram_size(0),
        DatagramConfig::new().max_datagram_size(65_536),
        DatagramConfig::new().send_queue_limits(10, 20, 30),
        DatagramConfig::new().send_queue_limits(20, 10, 15),
    ];
    for config in bad {
        let err = reactor
            .listen_udp_with(
                "127.0.0.1:0",
                &config,
                Probe::new(&Log::default(), |_, _, _| {}),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{config:?}: {err}");
    }
}

#[test]
fn socket_options_round_trip() {
    let reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_udp("127.0.0.1:0", Probe::new(&Log::default(), |_, _, _| {}))
        .unwrap();
    port.set_broadcast_allowed(true).unwrap();
    assert!(port.broadcast_allowed().unwrap());
    port.set_multicast_ttl(4).unwrap();
    assert_eq!(port.multicast_ttl().unwrap(), 4);
    port.set_loopback_mode(false).unwrap();
    assert!(!port.loopback_mode().unwrap());
    port.set_ttl(9).unwrap();
    let wrong = port
        .set_outgoing_interface(MulticastInterface::Index(1))
        .unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::InvalidInput);
    let paused = port.clone();
    paused.pause_reading();
    assert!(port.is_reading_paused());
    port.resume_reading();
    assert!(!port.is_reading_paused());
}

#[test]
fn pause_reading_holds_datagrams_in_the_kernel_until_resume() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let count = Rc::new(Cell::new(0));
    let seen = count.clone();
    let probe = Probe::new(&log, move |transport, _, _| {
        seen.set(seen.get() + 1);
        if seen.get() == 1 {
            transport.pause_reading();
            let resume = transport.clone();
            twill::call_later(Duration::from_millis(30), move || resume.resume_reading());
        } else if seen.get() == 3 {
            twill::stop();
        }
    });
    let port = reactor.listen_udp("127.0.0.1:0", probe).unwrap();
    let socket = client();
    for _ in 0..3 {
        socket.send_to(b"x", port.host()).unwrap();
    }
    let started = std::time::Instant::now();
    run(&reactor);
    assert_eq!(count.get(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "the rest waited for resume"
    );
}

#[test]
fn ipv6_ports_echo_and_take_ipv6_multicast_options() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let port = match reactor.listen_udp("[::1]:0", Probe::new(&log, echo)) {
        Ok(port) => port,
        Err(err) => panic!("no IPv6 loopback here ({err}); this test needs ::1"),
    };
    let server = port.host();
    assert_eq!(server.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    let group: IpAddr = "ff02::7777".parse().unwrap();
    let lo = MulticastInterface::Index(1);
    port.join_group(group, lo).unwrap();
    port.leave_group(group, lo).unwrap();
    port.set_outgoing_interface(lo).unwrap();
    port.set_multicast_ttl(2).unwrap();
    assert_eq!(port.multicast_ttl().unwrap(), 2);
    let wrong = port
        .join_group(group, MulticastInterface::Address(Ipv4Addr::LOCALHOST))
        .unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::InvalidInput);
    let handle = reactor.handle();
    let peer = thread::spawn(move || {
        let socket = UdpSocket::bind("[::1]:0").unwrap();
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        socket.send_to(b"six", server).unwrap();
        let (data, from) = recv(&socket);
        handle.stop();
        (data, from)
    });
    run(&reactor);
    assert_eq!(peer.join().unwrap(), (b"six".to_vec(), server));
}
