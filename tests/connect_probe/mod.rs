//! A client factory that records what a connector tells it, with the time
//! since the test began, and loopback destinations that refuse or never
//! answer: shared by the resolution and happy eyeballs tests.

#![allow(dead_code)]

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use twill::{Address, Bytes, ClientFactory, Connector, Factory, Protocol, Reason, Transport};

/// What the factory and its protocol were told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    StartFactory,
    StartedConnecting,
    Built(SocketAddr),
    Made,
    Failed(io::ErrorKind),
    Lost,
    StopFactory,
}

/// The events so far, each with its time since [`Events::new`].
#[derive(Clone)]
pub struct Events {
    epoch: Instant,
    list: Rc<RefCell<Vec<(Duration, Ev, String)>>>,
}

impl Events {
    pub fn new() -> Events {
        Events {
            epoch: Instant::now(),
            list: Rc::new(RefCell::new(Vec::new())),
        }
    }

    pub fn record(&self, ev: Ev, detail: String) {
        self.list
            .borrow_mut()
            .push((self.epoch.elapsed(), ev, detail));
    }

    pub fn kinds(&self) -> Vec<Ev> {
        self.list
            .borrow()
            .iter()
            .map(|(_, ev, _)| ev.clone())
            .collect()
    }

    /// When `want` first happened, and its detail (an error's message).
    pub fn when(&self, want: impl Fn(&Ev) -> bool) -> Option<(Duration, String)> {
        self.list
            .borrow()
            .iter()
            .find(|(_, ev, _)| want(ev))
            .map(|(at, _, detail)| (*at, detail.clone()))
    }

    pub fn count(&self, want: impl Fn(&Ev) -> bool) -> usize {
        self.list
            .borrow()
            .iter()
            .filter(|(_, ev, _)| want(ev))
            .count()
    }

    pub fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// What a [`Probe`] does when an attempt fails (e.g. connect again).
pub type OnFailed = Box<dyn FnMut(&Connector)>;

/// Records every callback; its protocol closes the connection once made.
/// The reactor stops when the connection is lost or the attempt fails,
/// unless `keep_running`.
pub struct Probe {
    pub events: Events,
    pub keep_running: bool,
    /// Runs inside `client_connection_failed`.
    pub on_failed: Option<OnFailed>,
}

impl Probe {
    pub fn new(events: &Events) -> Probe {
        Probe {
            events: events.clone(),
            keep_running: false,
            on_failed: None,
        }
    }
}

pub struct CloseOnConnect {
    events: Events,
}

impl Protocol for CloseOnConnect {
    fn connection_made(&mut self, transport: &Transport) {
        self.events.record(Ev::Made, String::new());
        transport.lose_connection();
    }
    fn data_received(&mut self, _data: Bytes) {}
}

impl Factory for Probe {
    type Protocol = CloseOnConnect;

    fn build_protocol(&mut self, peer: Address) -> Option<CloseOnConnect> {
        let Address::Tcp(peer) = peer else {
            panic!("a TCP peer, got {peer}")
        };
        self.events.record(Ev::Built(peer), String::new());
        Some(CloseOnConnect {
            events: self.events.clone(),
        })
    }
    fn start_factory(&mut self) {
        self.events.record(Ev::StartFactory, String::new());
    }
    fn stop_factory(&mut self) {
        self.events.record(Ev::StopFactory, String::new());
    }
}

impl ClientFactory for Probe {
    fn started_connecting(&mut self, _connector: &Connector) {
        self.events.record(Ev::StartedConnecting, String::new());
    }
    fn client_connection_failed(&mut self, connector: &Connector, reason: &io::Error) {
        self.events
            .record(Ev::Failed(reason.kind()), reason.to_string());
        if let Some(on_failed) = &mut self.on_failed {
            on_failed(connector);
        }
        if !self.keep_running && connector.state() == twill::ConnectorState::Disconnected {
            twill::stop();
        }
    }
    fn client_connection_lost(&mut self, _connector: &Connector, _reason: &Reason) {
        self.events.record(Ev::Lost, String::new());
        if !self.keep_running {
            twill::stop();
        }
    }
}

/// A server protocol that holds each connection open.
pub struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _data: Bytes) {}
}

/// A loopback address where nothing listens on `ip`: bound to find a free
/// port, then closed, so connecting is refused.
pub fn refused_on(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).expect("bind a loopback address");
    let addr = listener.local_addr().expect("local_addr");
    drop(listener);
    addr
}

/// A listener that never accepts, its accept queue full: Linux drops
/// further SYNs, so a connect to it stays pending (no answer, no refusal)
/// until the client gives up.
pub struct Unanswering {
    pub addr: SocketAddr,
    _listener: Socket,
    _fillers: Vec<Socket>,
}

impl Unanswering {
    pub fn on(ip: &str) -> Unanswering {
        let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
        let listener = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        listener.bind(&addr.into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let filler = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
            filler.set_nonblocking(true).unwrap();
            let _ = filler.connect(&addr.into());
            fillers.push(filler);
        }
        thread::sleep(Duration::from_millis(50));
        Unanswering {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }

    /// Sockets of this process still sending SYNs to this listener (Linux:
    /// from `/proc/net/tcp`), the fillers included.
    pub fn connecting_to(&self) -> usize {
        Unanswering::count_for(self.addr)
    }

    /// Sockets still sending SYNs to `addr`.
    pub fn count_for(addr: SocketAddr) -> usize {
        let SocketAddr::V4(v4) = addr else {
            panic!("IPv4 only")
        };
        let ip = u32::from_le_bytes(v4.ip().octets());
        let remote = format!("{ip:08X}:{:04X}", v4.port());
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // SYN_SENT is state 02.
                fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"02")
            })
            .count()
    }
}
