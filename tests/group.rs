//! A reactor group: connections placed on workers and served only there,
//! the three placements, messages between workers, and a group that stops
//! as one (gracefully, or when a worker dies). Real sockets on 127.0.0.1,
//! std clients on their own threads.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use twill::group::{
    worker_index, GroupHandle, Inbox, InboxSender, Placement, ReactorGroup, SendError,
};
use twill::{
    Bytes, ClientFactory, Connector, Factory, Phase, Protocol, Reason, SystemEvent, Transport,
};
use twill_test_support::client::Client;
use twill_test_support::reactor::run_group;

/// How long any test may take before its group is stopped and it fails.
const LIMIT: Duration = Duration::from_secs(20);

/// What happened to a connection, and on which worker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Built { worker: usize },
    Made { worker: usize, peer_port: u16 },
    Data { worker: usize, peer_port: u16 },
    Lost { worker: usize, peer_port: u16 },
}

/// Says which worker it is on as it connects, then echoes each line
/// prefixed with that worker's index; reports every callback.
struct Where {
    transport: Option<Transport>,
    seen: mpsc::Sender<Seen>,
    peer_port: u16,
}

fn here() -> usize {
    worker_index().expect("a protocol runs on a worker")
}

impl Protocol for Where {
    fn connection_made(&mut self, transport: &Transport) {
        self.peer_port = transport.peer().port().unwrap();
        let _ = self.seen.send(Seen::Made {
            worker: here(),
            peer_port: self.peer_port,
        });
        transport.write(format!("w{}\n", here()));
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        let _ = self.seen.send(Seen::Data {
            worker: here(),
            peer_port: self.peer_port,
        });
        if &data[..] == b"boom\n" {
            panic!("a protocol bug");
        }
        let text = String::from_utf8_lossy(&data);
        self.transport
            .as_ref()
            .unwrap()
            .write(format!("w{}:{text}", here()));
    }

    fn connection_lost(&mut self, _reason: &Reason) {
        let _ = self.seen.send(Seen::Lost {
            worker: here(),
            peer_port: self.peer_port,
        });
    }
}

/// A factory per worker that builds `Where`s.
fn where_factory(seen: mpsc::Sender<Seen>) -> impl Fn() -> WhereFactory + Send + Sync {
    let seen = Mutex::new(seen);
    move || WhereFactory {
        seen: seen.lock().unwrap().clone(),
        built_on: thread::current().id(),
    }
}

struct WhereFactory {
    seen: mpsc::Sender<Seen>,
    built_on: thread::ThreadId,
}

impl Factory for WhereFactory {
    type Protocol = Where;

    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Where> {
        assert_eq!(
            self.built_on,
            thread::current().id(),
            "a factory left its thread"
        );
        let _ = self.seen.send(Seen::Built { worker: here() });
        Some(Where {
            transport: None,
            seen: self.seen.clone(),
            peer_port: 0,
        })
    }
}

/// A group of `workers` serving [`Where`] on 127.0.0.1 as `placement`
/// says: the group, the port's address, and the callbacks it reports.
fn where_group(
    workers: usize,
    placement: Placement,
) -> (ReactorGroup, SocketAddr, mpsc::Receiver<Seen>) {
    let group = ReactorGroup::new(workers).unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let port = group
        .listen_tcp_with("127.0.0.1:0", placement, where_factory(seen_tx))
        .unwrap();
    let addr = port.host().tcp().unwrap();
    (group, addr, seen)
}

/// The worker a greeting names.
fn greeting_worker(client: &mut Client) -> usize {
    let greeting = client.line_str();
    greeting
        .trim_end()
        .strip_prefix('w')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected greeting {greeting:?}"))
}

#[test]
fn a_connection_handed_to_a_worker_is_served_only_on_that_worker() {
    let group = ReactorGroup::new(3).unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let port = group
        .listen_tcp_with("127.0.0.1:0", Placement::RoundRobin, where_factory(seen_tx))
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        let mut placed = Vec::new();
        for i in 0..6 {
            let mut client = Client::connect(addr);
            let worker = greeting_worker(&mut client);
            client.send(format!("hello {i}\n").as_bytes());
            assert_eq!(client.line_str(), format!("w{worker}:hello {i}\n"));
            let peer_port = client.stream().local_addr().unwrap().port();
            placed.push((peer_port, worker));
        }
        // Every connection's callbacks, to the last, then stop.
        let mut events = Vec::new();
        while events
            .iter()
            .filter(|e| matches!(e, Seen::Lost { .. }))
            .count()
            < 6
        {
            events.push(seen.recv_timeout(LIMIT).expect("callbacks"));
        }
        stopper.stop();
        (placed, events)
    });
    run_group(&group).unwrap();
    let (placed, events) = clients.join().unwrap();
    // Round robin from a fresh group: worker 0, 1, 2, 0, 1, 2.
    let workers: Vec<usize> = placed.iter().map(|&(_, w)| w).collect();
    assert_eq!(workers, [0, 1, 2, 0, 1, 2]);
    for (peer_port, worker) in placed {
        for event in &events {
            match *event {
                Seen::Made {
                    worker: w,
                    peer_port: p,
                }
                | Seen::Data {
                    worker: w,
                    peer_port: p,
                }
                | Seen::Lost {
                    worker: w,
                    peer_port: p,
                } if p == peer_port => {
                    assert_eq!(w, worker, "{event:?} for a connection placed on {worker}")
                }
                _ => {}
            }
        }
    }
    let built: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Seen::Built { worker } => Some(*worker),
            _ => None,
        })
        .collect();
    assert_eq!(built.len(), 6);
    for worker in 0..3 {
        assert_eq!(built.iter().filter(|&&w| w == worker).count(), 2);
    }
}

#[test]
fn least_connections_fills_the_worker_whose_connections_closed() {
    let group = ReactorGroup::new(2).unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let port = group
        .listen_tcp_with(
            "127.0.0.1:0",
            Placement::LeastConnections,
            where_factory(seen_tx),
        )
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let handle = group.handle();
    let clients = thread::spawn(move || {
        let mut open: Vec<(usize, Client)> = (0..4)
            .map(|_| {
                let mut client = Client::connect(addr);
                (greeting_worker(&mut client), client)
            })
            .collect();
        let first: Vec<usize> = open.iter().map(|(w, _)| *w).collect();
        // Close both of worker 0's connections, and wait until it has
        // seen them go.
        open.retain(|(w, _)| *w != 0);
        let mut lost = 0;
        while lost < 2 {
            if let Seen::Lost { worker: 0, .. } = seen.recv_timeout(LIMIT).unwrap() {
                lost += 1;
            }
        }
        let then: Vec<usize> = (0..2)
            .map(|_| {
                let mut client = Client::connect(addr);
                let worker = greeting_worker(&mut client);
                open.push((worker, client));
                worker
            })
            .collect();
        let loads = (handle.worker(0).load(), handle.worker(1).load());
        handle.stop();
        for (_, client) in &mut open {
            client.expect_closed();
        }
        (first, then, loads)
    });
    run_group(&group).unwrap();
    let (first, then, loads) = clients.join().unwrap();
    // Ties go round robin.
    assert_eq!(first, [0, 1, 0, 1]);
    assert_eq!(then, [0, 0], "the emptied worker takes the new ones");
    assert_eq!(loads, (2, 2));
}

#[test]
fn reuse_port_workers_each_listen_and_serve_what_the_kernel_gives_them() {
    let group = ReactorGroup::new(2).unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let port = group
        .listen_tcp_with("127.0.0.1:0", Placement::ReusePort, where_factory(seen_tx))
        .unwrap();
    assert_eq!(port.placement(), Placement::ReusePort);
    let addr = port.host().tcp().unwrap();
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        let mut workers = Vec::new();
        let mut open = Vec::new();
        for i in 0..32 {
            let mut client = Client::connect(addr);
            let worker = greeting_worker(&mut client);
            client.send(format!("{i}\n").as_bytes());
            assert_eq!(client.line_str(), format!("w{worker}:{i}\n"));
            workers.push(worker);
            open.push(client);
        }
        stopper.stop();
        for client in &mut open {
            client.expect_closed();
        }
        workers
    });
    run_group(&group).unwrap();
    let workers = clients.join().unwrap();
    assert!(workers.iter().all(|&w| w < 2));
    // Every connection was built on the worker that greeted it.
    let built = seen
        .try_iter()
        .filter(|e| matches!(e, Seen::Built { .. }))
        .count();
    assert_eq!(built, 32);
}

#[test]
fn a_worker_stuck_in_a_callback_does_not_stall_the_others() {
    let (group, addr, _seen) = where_group(2, Placement::RoundRobin);
    let (unstick, stuck) = mpsc::channel::<()>();
    let (is_stuck, wait_stuck) = mpsc::channel::<()>();
    group
        .worker(0)
        .call_from_thread(move || {
            is_stuck.send(()).unwrap();
            stuck.recv_timeout(LIMIT).unwrap();
        })
        .unwrap();
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        wait_stuck.recv_timeout(LIMIT).unwrap();
        // Round robin: 0 (stuck), 1, 0 (stuck), 1.
        let mut clients: Vec<_> = (0..4).map(|_| Client::connect(addr)).collect();
        for client in clients.iter_mut().skip(1).step_by(2) {
            assert_eq!(client.line_str(), "w1\n");
            client.send(b"still served\n");
            assert_eq!(client.line_str(), "w1:still served\n");
        }
        unstick.send(()).unwrap();
        for client in clients.iter_mut().step_by(2) {
            assert_eq!(client.line_str(), "w0\n");
        }
        stopper.stop();
    });
    run_group(&group).unwrap();
    clients.join().unwrap();
}

#[test]
fn a_panic_in_a_protocol_closes_only_its_connection() {
    let group = ReactorGroup::new(1).unwrap();
    let (seen_tx, _seen) = mpsc::channel();
    let port = group
        .listen_tcp("127.0.0.1:0", where_factory(seen_tx))
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        let mut calm = Client::connect(addr);
        let mut faulty = Client::connect(addr);
        assert_eq!(calm.line_str(), "w0\n");
        assert_eq!(faulty.line_str(), "w0\n");
        faulty.send(b"boom\n");
        faulty.expect_closed();
        calm.send(b"still here\n");
        assert_eq!(calm.line_str(), "w0:still here\n");
        let late = Client::connect(addr);
        stopper.stop();
        late
    });
    run_group(&group).unwrap();
    clients.join().unwrap();
}

#[test]
fn stopping_runs_the_group_triggers_around_every_workers_shutdown() {
    let (group, addr, _seen) = where_group(2, Placement::RoundRobin);
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    let workers = group.handle();
    let (log, w) = (order.clone(), workers.clone());
    group.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        // Every connection is still open on its worker.
        log.borrow_mut().push(format!(
            "before: loads {} {}",
            w.worker(0).load(),
            w.worker(1).load()
        ));
    });
    let (log, w) = (order.clone(), workers.clone());
    group.add_system_event_trigger(Phase::After, SystemEvent::Shutdown, move || {
        let stopped = (0..2).all(|i| w.worker(i).call_from_thread(|| {}).is_err());
        log.borrow_mut()
            .push(format!("after: workers stopped {stopped}"));
    });
    // Each worker's own trigger runs on its thread as it stops.
    let (worker_stops, stopped) = mpsc::channel();
    let worker_stops = Mutex::new(worker_stops);
    group
        .broadcast(move || {
            let tell = worker_stops.lock().unwrap().clone();
            twill::reactor().add_system_event_trigger(
                Phase::Before,
                SystemEvent::Shutdown,
                move || {
                    tell.send(here()).unwrap();
                },
            );
        })
        .unwrap();
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        let mut clients: Vec<_> = (0..4).map(|_| Client::connect(addr)).collect();
        for client in &mut clients {
            client.line_str();
        }
        stopper.stop();
        for client in &mut clients {
            client.expect_closed();
        }
    });
    run_group(&group).unwrap();
    clients.join().unwrap();
    assert_eq!(
        *order.borrow(),
        ["before: loads 2 2", "after: workers stopped true"]
    );
    let mut stopped: Vec<usize> = stopped.try_iter().collect();
    stopped.sort();
    assert_eq!(stopped, [0, 1]);
}

/// Dropped after its panic was caught and logged, it panics again, outside
/// any callback's guard: the worker's thread dies.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("dropping the payload of a panic");
    }
}

#[test]
fn a_worker_that_dies_stops_the_group_cleanly_and_run_says_which() {
    let (group, addr, _seen) = where_group(2, Placement::RoundRobin);
    let killer = group.worker(1);
    let clients = thread::spawn(move || {
        let mut on_0 = Client::connect(addr);
        let mut on_1 = Client::connect(addr);
        assert_eq!(on_0.line_str(), "w0\n");
        assert_eq!(on_1.line_str(), "w1\n");
        killer
            .call_from_thread(|| std::panic::panic_any(PanicsWhenDropped))
            .unwrap();
        // Worker 0 stops gracefully: its client sees a clean end.
        on_0.expect_closed();
        let _ = on_1.stream().read_to_end(&mut Vec::new());
    });
    let err = run_group(&group).expect_err("a worker died");
    clients.join().unwrap();
    let message = err.to_string();
    assert!(message.contains("worker 1"), "{message}");
    assert!(message.contains("dropping the payload"), "{message}");
}

#[test]
fn a_worker_that_stops_itself_stops_the_group() {
    let group = ReactorGroup::new(3).unwrap();
    group.worker(2).call_from_thread(twill::stop).unwrap();
    run_group(&group).unwrap();
    assert!(group.worker(0).call_from_thread(|| {}).is_err());
}

#[test]
fn factories_start_on_their_worker_and_stop_when_the_port_stops_listening() {
    let group = ReactorGroup::new(2).unwrap();
    let (events_tx, events) = mpsc::channel();
    let events_tx = Mutex::new(events_tx);
    struct Tracked(mpsc::Sender<String>);
    impl Factory for Tracked {
        type Protocol = Where;
        fn build_protocol(&mut self, _peer: twill::Address) -> Option<Where> {
            None
        }
        fn start_factory(&mut self) {
            self.0.send(format!("start {}", here())).unwrap();
        }
        fn stop_factory(&mut self) {
            self.0.send(format!("stop {}", here())).unwrap();
        }
    }
    let port = group
        .listen_tcp("127.0.0.1:0", move || {
            Tracked(events_tx.lock().unwrap().clone())
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let port = Rc::new(port);
    let stop_port = port.clone();
    let stopper = group.handle();
    let (stopped_tx, stopped) = mpsc::channel();
    group.boss().call_later(Duration::ZERO, move || {
        stop_port.stop_listening();
        stopped_tx.send(()).unwrap();
    });
    let client = thread::spawn(move || {
        stopped.recv_timeout(LIMIT).unwrap();
        let mut got: Vec<String> = (0..4)
            .map(|_| events.recv_timeout(LIMIT).unwrap())
            .collect();
        got.sort();
        let refused = TcpStream::connect(addr).is_err();
        stopper.stop();
        (got, refused)
    });
    run_group(&group).unwrap();
    let (got, refused) = client.join().unwrap();
    assert_eq!(got, ["start 0", "start 1", "stop 0", "stop 1"]);
    assert!(refused, "the port still accepts after stop_listening");
    assert!(!port.is_listening());
}

#[test]
fn listening_on_an_address_in_use_fails_at_once_in_every_placement() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let group = ReactorGroup::new(2).unwrap();
    for placement in [
        Placement::LeastConnections,
        Placement::RoundRobin,
        Placement::ReusePort,
    ] {
        let err = group
            .listen_tcp_with(addr, placement, || {
                |_peer| Where {
                    transport: None,
                    seen: mpsc::channel().0,
                    peer_port: 0,
                }
            })
            .expect_err("the address is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{placement:?}");
    }
}

#[test]
fn a_group_needs_a_worker_and_runs_once() {
    assert_eq!(
        ReactorGroup::new(0).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let group = ReactorGroup::new(1).unwrap();
    group.stop();
    run_group(&group).unwrap();
    assert!(group.run().is_err());
}

#[test]
fn a_group_dropped_without_running_ends_its_threads() {
    let ended = Arc::new(AtomicUsize::new(0));
    let group = ReactorGroup::new(2).unwrap();
    struct CountsDrop(Arc<AtomicUsize>);
    impl Drop for CountsDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    for worker in group.workers() {
        let guard = CountsDrop(ended.clone());
        // Queued for a run that never comes: dropped with the worker.
        worker.call_from_thread(move || drop(guard)).unwrap();
    }
    drop(group);
    assert_eq!(ended.load(Ordering::SeqCst), 2);
}

/// A client protocol that reports the worker it runs on, then closes.
struct Reports(mpsc::Sender<usize>);

impl Protocol for Reports {
    fn connection_made(&mut self, transport: &Transport) {
        self.0.send(here()).unwrap();
        transport.lose_connection();
    }
    fn data_received(&mut self, _data: Bytes) {}
}

struct ReportsFactory(mpsc::Sender<usize>);

impl Factory for ReportsFactory {
    type Protocol = Reports;
    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Reports> {
        Some(Reports(self.0.clone()))
    }
}

impl ClientFactory for ReportsFactory {
    fn client_connection_failed(&mut self, _: &Connector, reason: &io::Error) {
        panic!("could not connect: {reason}");
    }
}

#[test]
fn client_connections_go_to_the_chosen_worker_or_the_least_loaded() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let group = ReactorGroup::new(2).unwrap();
    let (made_tx, made) = mpsc::channel();
    let tx = made_tx.clone();
    group
        .worker(1)
        .connect_tcp(addr, move || ReportsFactory(tx))
        .unwrap();
    let tx = made_tx.clone();
    let chosen = group.connect_tcp(addr, move || ReportsFactory(tx)).unwrap();
    assert!(group
        .connect_tcp("no port here", || ReportsFactory(made_tx))
        .is_err());
    let stopper = group.handle();
    let accepter = thread::spawn(move || {
        let accepted: Vec<TcpStream> = (0..2).map(|_| server.accept().unwrap().0).collect();
        let mut on: Vec<usize> = (0..2).map(|_| made.recv_timeout(LIMIT).unwrap()).collect();
        stopper.stop();
        drop(accepted);
        on.sort();
        on
    });
    run_group(&group).unwrap();
    let on = accepter.join().unwrap();
    assert!(on.contains(&1));
    assert!(on.contains(&chosen.index()));
}

/// A chat line between workers: from a protocol on one worker to a
/// protocol on another, through an inbox, with no lock around either.
#[test]
fn an_inbox_carries_messages_from_one_workers_protocol_to_anothers() {
    let group = ReactorGroup::new(2).unwrap();
    // Each worker's inbox sender, once that worker is up.
    let inboxes: Arc<Mutex<Vec<Option<InboxSender<String>>>>> =
        Arc::new(Mutex::new(vec![None, None]));

    struct Relay {
        transport: Option<Transport>,
        inboxes: Arc<Mutex<Vec<Option<InboxSender<String>>>>>,
        room: Rc<std::cell::RefCell<Vec<Transport>>>,
    }
    impl Protocol for Relay {
        fn connection_made(&mut self, transport: &Transport) {
            self.room.borrow_mut().push(transport.clone());
            self.transport = Some(transport.clone());
            transport.write(format!("w{}\n", here()));
        }
        fn data_received(&mut self, data: Bytes) {
            let text = String::from_utf8_lossy(&data).into_owned();
            for sender in self.inboxes.lock().unwrap().iter().flatten() {
                sender.send(format!("from w{}: {text}", here())).unwrap();
            }
        }
    }

    let shared = inboxes.clone();
    let port = group
        .listen_tcp_with("127.0.0.1:0", Placement::RoundRobin, move || {
            let room = Rc::new(std::cell::RefCell::new(Vec::<Transport>::new()));
            let members = room.clone();
            let inbox = Inbox::new(64, move |line: String| {
                for member in members.borrow().iter() {
                    member.write(line.clone());
                }
            });
            shared.lock().unwrap()[here()] = Some(inbox.sender());
            // The inbox lives as long as the worker's factory.
            let inbox = Rc::new(inbox);
            let inboxes = shared.clone();
            move |_peer| {
                let _keep = &inbox;
                Relay {
                    transport: None,
                    inboxes: inboxes.clone(),
                    room: room.clone(),
                }
            }
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        let mut a = Client::connect(addr);
        let mut b = Client::connect(addr);
        assert_eq!(a.line_str(), "w0\n");
        assert_eq!(b.line_str(), "w1\n");
        a.send(b"hi from a\n");
        assert_eq!(a.line_str(), "from w0: hi from a\n");
        assert_eq!(b.line_str(), "from w0: hi from a\n");
        b.send(b"hi from b\n");
        assert_eq!(a.line_str(), "from w1: hi from b\n");
        assert_eq!(b.line_str(), "from w1: hi from b\n");
        stopper.stop();
    });
    run_group(&group).unwrap();
    clients.join().unwrap();
}

#[test]
fn an_inbox_is_bounded_and_says_when_it_is_full_or_closed() {
    let reactor = twill::Reactor::new().unwrap();
    let handled = Rc::new(Cell::new(0));
    let count = handled.clone();
    let inbox = Inbox::new(2, move |_: u8| count.set(count.get() + 1));
    let sender = inbox.sender();
    // The reactor has not run: nothing is taken yet.
    assert_eq!(sender.send(1), Ok(()));
    assert_eq!(sender.send(2), Ok(()));
    assert_eq!(sender.send(3), Err(SendError::Full(3)));
    assert_eq!(inbox.refused(), 1);
    let stopper = reactor.clone();
    reactor.call_later(Duration::from_millis(1), move || stopper.stop());
    reactor.run().unwrap();
    assert_eq!(handled.get(), 2);
    drop(inbox);
    assert!(sender.is_closed());
    assert_eq!(sender.send(4), Err(SendError::Closed(4)));
}

#[test]
fn an_inbox_closes_when_its_reactor_goes_and_survives_a_panicking_handler() {
    let (sender_tx, sender_rx) = mpsc::channel();
    let (handled_tx, handled) = mpsc::channel();
    let owner = thread::spawn(move || {
        let reactor = twill::Reactor::new().unwrap();
        let inbox = Inbox::new(8, move |n: u32| {
            assert!(n != 2, "handler bug on 2");
            handled_tx.send(n).unwrap();
            if n == 3 {
                twill::stop();
            }
        });
        sender_tx.send(inbox.sender()).unwrap();
        reactor.run().unwrap();
        // The inbox itself is still here, but its reactor is gone.
        drop(reactor);
        inbox
    });
    let sender: InboxSender<u32> = sender_rx.recv_timeout(LIMIT).unwrap();
    for n in 1..=3 {
        sender.send(n).unwrap();
    }
    let _inbox = owner.join().unwrap();
    assert_eq!(handled.try_iter().collect::<Vec<_>>(), [1, 3]);
    assert!(sender.is_closed());
    assert!(matches!(sender.send(9), Err(SendError::Closed(9))));
}

/// Sends from many threads at once arrive, each thread's in order.
#[test]
fn an_inbox_keeps_each_senders_order_under_concurrent_senders() {
    let reactor = twill::Reactor::new().unwrap();
    let last = Rc::new(std::cell::RefCell::new([0u32; 4]));
    let total = Rc::new(Cell::new(0u32));
    let (seen, sum) = (last.clone(), total.clone());
    let inbox = Inbox::new(100_000, move |(thread, n): (usize, u32)| {
        let mut last = seen.borrow_mut();
        assert_eq!(last[thread] + 1, n, "thread {thread} out of order");
        last[thread] = n;
        sum.set(sum.get() + 1);
        if sum.get() == 4 * 10_000 {
            twill::stop();
        }
    });
    let senders: Vec<_> = (0..4)
        .map(|thread| {
            let sender = inbox.sender();
            thread::spawn(move || {
                for n in 1..=10_000 {
                    sender.send((thread, n)).unwrap();
                }
            })
        })
        .collect();
    twill_test_support::reactor::run(&reactor);
    for sender in senders {
        sender.join().unwrap();
    }
    assert_eq!(total.get(), 40_000);
}

#[test]
fn handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<GroupHandle>();
    both::<twill::group::WorkerHandle>();
    both::<InboxSender<String>>();
}

#[test]
fn a_worker_stuck_at_shutdown_is_left_behind_and_run_says_so() {
    let group = ReactorGroup::new(2).unwrap();
    group.set_shutdown_timeout(Duration::from_millis(100));
    let (unstick, stuck) = mpsc::channel::<()>();
    let (is_stuck, wait_stuck) = mpsc::channel::<()>();
    let stopper = group.handle();
    group
        .worker(1)
        .call_from_thread(move || {
            is_stuck.send(()).unwrap();
            // Held until the test is over; then the thread ends.
            let _ = stuck.recv_timeout(LIMIT);
        })
        .unwrap();
    let started = std::time::Instant::now();
    thread::spawn(move || {
        wait_stuck.recv_timeout(LIMIT).unwrap();
        stopper.stop();
    });
    let err = run_group(&group).expect_err("worker 1 never stopped");
    let took = started.elapsed();
    drop(unstick);
    assert!(err.to_string().contains("worker 1: did not stop"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// Greets a Unix-socket peer with its worker and the peer's process id.
struct UnixGreeter;

impl Protocol for UnixGreeter {
    fn connection_made(&mut self, transport: &Transport) {
        let pid = transport.peer_credentials().map(|c| c.pid).unwrap_or(0);
        transport.write(format!("w{} pid {pid}\n", here()));
    }
    fn data_received(&mut self, _data: Bytes) {}
}

#[test]
fn a_unix_socket_port_hands_its_connections_to_the_workers_too() {
    use std::os::unix::net::UnixStream;
    let dir = std::env::temp_dir().join(format!("twill-group-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("greeter.sock");
    let group = ReactorGroup::new(2).unwrap();
    let port = group
        .listen_unix(
            &path,
            twill::net::DEFAULT_UNIX_MODE,
            Placement::RoundRobin,
            || |_peer| UnixGreeter,
        )
        .unwrap();
    assert_eq!(port.host().to_string(), format!("unix:{}", path.display()));
    // The socket's lock keeps a second server off it; SO_REUSEPORT is TCP's.
    let again = group.listen_unix(&path, 0o600, Placement::LeastConnections, || {
        |_peer| UnixGreeter
    });
    assert_eq!(again.unwrap_err().kind(), io::ErrorKind::AddrInUse);
    let reuse = group.listen_unix(dir.join("other.sock"), 0o600, Placement::ReusePort, || {
        |_peer| UnixGreeter
    });
    assert_eq!(reuse.unwrap_err().kind(), io::ErrorKind::Unsupported);
    let stopper = group.handle();
    let client_path = path.clone();
    let clients = thread::spawn(move || {
        let greetings: Vec<String> = (0..4)
            .map(|_| {
                let stream = UnixStream::connect(&client_path).unwrap();
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).unwrap();
                line
            })
            .collect();
        stopper.stop();
        greetings
    });
    run_group(&group).unwrap();
    let pid = std::process::id();
    assert_eq!(
        clients.join().unwrap(),
        [0, 1, 0, 1].map(|w| format!("w{w} pid {pid}\n"))
    );
    assert!(!path.exists(), "the socket file outlived the group");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_inbox_needs_a_reactor_on_its_thread() {
    let made = thread::spawn(|| Inbox::new(1, |_: u8| {})).join();
    let panic = made.expect_err("no reactor here");
    let message = panic.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("needs a reactor"), "{message:?}");
}

/// The capacity bounds every message not yet handled, those the receiver
/// has already taken from the queue included.
#[test]
fn an_inbox_counts_the_messages_it_took_but_has_not_handled_against_its_capacity() {
    let reactor = twill::Reactor::new().unwrap();
    let slot: Rc<std::cell::RefCell<Option<InboxSender<u32>>>> = Rc::default();
    let results = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (sender_slot, log) = (slot.clone(), results.clone());
    let inbox = Inbox::new(2, move |n: u32| {
        if n == 1 {
            // 2 is taken and waiting: one more fits, then it is full.
            let sender = sender_slot.borrow().clone().unwrap();
            log.borrow_mut().push(format!("{:?}", sender.send(3)));
            log.borrow_mut().push(format!("{:?}", sender.send(4)));
        }
        log.borrow_mut().push(format!("handled {n}"));
        if n == 3 {
            twill::stop();
        }
    });
    *slot.borrow_mut() = Some(inbox.sender());
    inbox.sender().send(1).unwrap();
    inbox.sender().send(2).unwrap();
    twill_test_support::reactor::run(&reactor);
    assert_eq!(
        *results.borrow(),
        [
            "Ok(())",
            "Err(Full(..))",
            "handled 1",
            "handled 2",
            "handled 3"
        ]
    );
    assert_eq!(inbox.refused(), 1);
}
