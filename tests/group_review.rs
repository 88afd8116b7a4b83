//! A reactor group under hostile conditions: floods of connections that
//! open and close (or reset) at once, factories that refuse or panic,
//! handoffs still on their way when a port or the whole group stops,
//! inboxes at and past their edges, a boss out of file descriptors, and
//! panics where no callback's guard catches them. Real sockets on
//! 127.0.0.1; every test bounded in time.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use twill::group::{worker_index, GroupHandle, Inbox, Placement, ReactorGroup, WorkerHandle};
use twill::{
    Bytes, ClientFactory, Connector, Factory, Phase, Protocol, Reactor, Reason, SystemEvent,
    Transport,
};
use twill_test_support::process::Proc;
use twill_test_support::reactor::run_group;

/// How long any test may take before its group is stopped and it fails.
const LIMIT: Duration = Duration::from_secs(20);

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    BufReader::new(stream)
}

fn line(client: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    client.read_line(&mut line).expect("read a line");
    line
}

/// Reads to the end; a reset counts as an end.
fn drain_to_end(client: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(err) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}"),
    }
    rest
}

/// Waits until `done` holds, or fails after `LIMIT` with `what`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The server side's open sockets on `port`: entries of `/proc/net/tcp`
/// with that local port that are not the listener and still have an inode
/// (an open descriptor; sockets closed by their owner have none).
fn server_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|entry| {
            let fields: Vec<&str> = entry.split_whitespace().collect();
            let local_port = fields[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields[3] != "0A" && fields[9] != "0"
        })
        .count()
}

fn loads(workers: &[WorkerHandle]) -> Vec<usize> {
    workers.iter().map(WorkerHandle::load).collect()
}

/// Greets with its worker's index, then echoes; counts every connection
/// made and lost.
struct Echo {
    transport: Option<Transport>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    made: AtomicUsize,
    lost: AtomicUsize,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.counts.made.fetch_add(1, Ordering::SeqCst);
        transport.write(format!("w{}\n", worker_index().unwrap()));
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        self.transport.as_ref().unwrap().write(data);
    }

    fn connection_lost(&mut self, _reason: &Reason) {
        self.counts.lost.fetch_add(1, Ordering::SeqCst);
    }
}

fn echo(counts: &Arc<Counts>) -> Echo {
    Echo {
        transport: None,
        counts: counts.clone(),
    }
}

/// Dropped after its panic was caught and logged, it panics again, outside
/// any callback's guard.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("dropping the payload of a panic");
    }
}

/// A flood of 2,000 connections opened and closed at once (a third of
/// them reset with SO_LINGER 0 right after connecting, a third sending a
/// byte first): afterwards every worker's load is back to 0, every
/// connection made was lost, and no server-side socket is left open.
#[test]
fn a_flood_of_connect_close_and_reset_cycles_leaves_no_load_and_no_descriptor() {
    let group = ReactorGroup::new(2).unwrap();
    let counts = Arc::new(Counts::default());
    let made_by = counts.clone();
    let port = group
        .listen_tcp("127.0.0.1:0", move || {
            let counts = made_by.clone();
            move |_peer| echo(&counts)
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let workers = group.workers().to_vec();
    let stopper = group.handle();
    let flood = thread::spawn(move || {
        let senders: Vec<_> = (0..4)
            .map(|t| {
                thread::spawn(move || {
                    for i in 0..500 {
                        let stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
                        match (t + i) % 3 {
                            0 => socket2::SockRef::from(&stream)
                                .set_linger(Some(Duration::ZERO))
                                .unwrap(),
                            1 => {
                                let _ = (&stream).write_all(b"x");
                            }
                            _ => {}
                        }
                        drop(stream);
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }
        eventually("every connection counted off", || {
            loads(&workers) == [0, 0] && server_sockets(addr.port()) == 0
        });
        stopper.stop();
    });
    run_group(&group).unwrap();
    flood.join().unwrap();
    let (made, lost) = (
        counts.made.load(Ordering::SeqCst),
        counts.lost.load(Ordering::SeqCst),
    );
    assert_eq!(made, lost, "connection_made without connection_lost");
    assert!(made > 0);
}

/// A factory that refuses every third connection and panics in
/// `build_protocol` for every fifth: those clients see their connection
/// closed, the others are served, and the loads go back to 0.
#[test]
fn refusals_and_panics_in_build_protocol_close_only_those_and_loads_do_not_drift() {
    for placement in [Placement::LeastConnections, Placement::RoundRobin] {
        let group = ReactorGroup::new(2).unwrap();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        struct Picky {
            n: usize,
            counts: Arc<Counts>,
        }
        impl Factory for Picky {
            type Protocol = Echo;
            fn build_protocol(&mut self, _peer: twill::Address) -> Option<Echo> {
                self.n += 1;
                if self.n % 5 == 0 {
                    panic!("a factory bug");
                }
                (self.n % 3 != 0).then(|| echo(&self.counts))
            }
        }
        let port = group
            .listen_tcp_with("127.0.0.1:0", placement, move || Picky {
                n: 0,
                counts: shared.clone(),
            })
            .unwrap();
        let addr = port.host().tcp().unwrap();
        let workers = group.workers().to_vec();
        let stopper = group.handle();
        let clients = thread::spawn(move || {
            let mut served = 0;
            for _ in 0..120 {
                let mut client = connect(addr);
                let mut greeting = String::new();
                // A refused or failed connection ends with no greeting.
                if client.read_line(&mut greeting).unwrap_or(0) > 0 {
                    served += 1;
                    client.get_mut().write_all(b"ping\n").unwrap();
                    assert_eq!(line(&mut client), "ping\n");
                } else {
                    assert!(drain_to_end(&mut client).is_empty());
                }
            }
            eventually("loads back to 0", || {
                loads(&workers) == [0, 0] && server_sockets(addr.port()) == 0
            });
            stopper.stop();
            served
        });
        run_group(&group).unwrap();
        let served = clients.join().unwrap();
        // Per worker, build n = 1..: refused at 3, 6, 9, …; panics at 5, 10, ….
        assert!(
            served > 40 && served < 120,
            "{placement:?}: {served} served"
        );
        assert_eq!(counts.made.load(Ordering::SeqCst), served);
        assert_eq!(counts.lost.load(Ordering::SeqCst), served);
    }
}

/// What a factory saw, on which thread.
fn factory_events() -> (
    impl Fn() -> Recorder + Send + Sync + 'static,
    mpsc::Receiver<String>,
) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let make = move || Recorder {
        tx: tx.lock().unwrap().clone(),
        made_on: thread::current().name().map(str::to_owned),
    };
    (make, rx)
}

struct Recorder {
    tx: mpsc::Sender<String>,
    made_on: Option<String>,
}

impl Recorder {
    fn tell(&self, what: &str) {
        let thread = thread::current();
        let _ = self.tx.send(format!(
            "{what} {} {}",
            worker_index().map_or("boss".into(), |i| i.to_string()),
            thread.name().unwrap_or("?")
        ));
    }
}

impl Factory for Recorder {
    type Protocol = Echo;
    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Echo> {
        self.tell("build");
        Some(echo(&Arc::default()))
    }
    fn start_factory(&mut self) {
        assert_eq!(self.made_on.as_deref(), thread::current().name());
        self.tell("start");
    }
    fn stop_factory(&mut self) {
        self.tell("stop");
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.tell("drop");
    }
}

/// `stop_listening` and the group's stop in the same turn of the boss:
/// every worker's factory starts and stops exactly once, both on that
/// worker's thread, and is dropped before `run` returns; in each placement.
#[test]
fn stop_factory_runs_exactly_once_per_worker_on_its_thread_when_a_port_and_the_group_stop_together()
{
    for placement in [
        Placement::LeastConnections,
        Placement::RoundRobin,
        Placement::ReusePort,
    ] {
        let group = ReactorGroup::new(3).unwrap();
        let (make, events) = factory_events();
        let port = Rc::new(
            group
                .listen_tcp_with("127.0.0.1:0", placement, make)
                .unwrap(),
        );
        let addr = port.host().tcp().unwrap();
        let stopper = group.handle();
        let (go_tx, go) = mpsc::channel::<()>();
        // Every worker is serving before both stops.
        let client = thread::spawn(move || {
            let mut clients: Vec<_> = (0..6).map(|_| connect(addr)).collect();
            for client in &mut clients {
                line(client);
            }
            go_tx.send(()).unwrap();
            for client in &mut clients {
                drain_to_end(client);
            }
        });
        let boss = group.boss().clone();
        let both = port.clone();
        let poll = Rc::new(RefCell::new(None::<Box<dyn Fn()>>));
        let again = poll.clone();
        *poll.borrow_mut() = Some(Box::new(move || {
            if go.try_recv().is_ok() {
                both.stop_listening();
                stopper.stop();
                stopper.stop();
            } else {
                let again = again.clone();
                boss.call_later(Duration::from_millis(2), move || {
                    (again.borrow().as_ref().unwrap())()
                });
            }
        }));
        let first = poll.clone();
        group
            .boss()
            .call_later(Duration::ZERO, move || (first.borrow().as_ref().unwrap())());
        run_group(&group).unwrap();
        poll.borrow_mut().take();
        client.join().unwrap();
        let seen: Vec<String> = events.try_iter().collect();
        for worker in 0..3 {
            let own = format!(" {worker} twill-worker-{worker}");
            let mine: Vec<&str> = seen
                .iter()
                .filter(|e| e.ends_with(&own))
                .map(|e| e.split(' ').next().unwrap())
                .filter(|e| *e != "build")
                .collect();
            assert_eq!(
                mine,
                ["start", "stop", "drop"],
                "{placement:?}, worker {worker}: {seen:?}"
            );
        }
        assert!(
            seen.iter()
                .filter(|e| !e.starts_with("build"))
                .all(|e| !e.contains("boss")),
            "{placement:?}: {seen:?}"
        );
    }
}

/// A greeting protocol for a single worker, which a test keeps busy.
fn stuck_worker(worker: &WorkerHandle) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
    let (unstick, stuck) = mpsc::channel::<()>();
    let (is_stuck, wait_stuck) = mpsc::channel::<()>();
    worker
        .call_from_thread(move || {
            is_stuck.send(()).unwrap();
            let _ = stuck.recv_timeout(LIMIT);
        })
        .unwrap();
    (unstick, wait_stuck)
}

/// Connections the boss accepted and handed to a worker that had not yet
/// taken them when the port stopped listening are still served, and the
/// worker's factory stops after them, as `stop_listening` says.
#[test]
fn connections_handed_off_before_a_port_stops_are_served_before_its_factory_stops() {
    let group = ReactorGroup::new(1).unwrap();
    let (make, events) = factory_events();
    let port = group.listen_tcp("127.0.0.1:0", make).unwrap();
    let addr = port.host().tcp().unwrap();
    let worker = group.worker(0);
    let (unstick, wait_stuck) = stuck_worker(&worker);
    // Once five wait for the stuck worker, the boss stops listening.
    let port = Rc::new(port);
    let boss = group.boss().clone();
    let waiting = worker.clone();
    fn when(boss: &Reactor, test: impl Fn() -> bool + 'static, then: impl FnOnce() + 'static) {
        let again = boss.clone();
        boss.call_later(Duration::from_millis(2), move || {
            if test() {
                then();
            } else {
                when(&again, test, then);
            }
        });
    }
    let (stopped_tx, stopped) = mpsc::channel();
    let stopping = port.clone();
    when(
        &boss,
        move || waiting.load() == 5,
        move || {
            stopping.stop_listening();
            stopped_tx.send(()).unwrap();
        },
    );
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        wait_stuck.recv_timeout(LIMIT).unwrap();
        let mut clients: Vec<_> = (0..5).map(|_| connect(addr)).collect();
        stopped.recv_timeout(LIMIT).unwrap();
        unstick.send(()).unwrap();
        for client in &mut clients {
            assert_eq!(line(client), "w0\n");
            client.get_mut().write_all(b"still served\n").unwrap();
            assert_eq!(line(client), "still served\n");
        }
        stopper.stop();
    });
    run_group(&group).unwrap();
    clients.join().unwrap();
    let seen: Vec<String> = events
        .try_iter()
        .map(|e| e.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        seen,
        ["start", "build", "build", "build", "build", "build", "stop", "drop"]
    );
}

/// Connections still waiting for a stuck worker when the group stops are
/// closed (served or not), none is left open, and `run` returns.
#[test]
fn connections_handed_off_when_the_group_stops_are_closed_not_leaked() {
    let group = ReactorGroup::new(2).unwrap();
    group.set_shutdown_timeout(Duration::from_secs(5));
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    let port = group
        .listen_tcp_with("127.0.0.1:0", Placement::RoundRobin, move || {
            let counts = shared.clone();
            move |_peer| echo(&counts)
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let (unstick, wait_stuck) = stuck_worker(&group.worker(0));
    let stopper = group.handle();
    let worker0 = group.worker(0);
    let clients = thread::spawn(move || {
        wait_stuck.recv_timeout(LIMIT).unwrap();
        let mut clients: Vec<_> = (0..10).map(|_| connect(addr)).collect();
        eventually("five handed to the stuck worker", || worker0.load() == 5);
        stopper.stop();
        thread::sleep(Duration::from_millis(50));
        unstick.send(()).unwrap();
        for client in &mut clients {
            drain_to_end(client);
        }
        eventually("no server socket left", || server_sockets(addr.port()) == 0);
    });
    run_group(&group).unwrap();
    clients.join().unwrap();
    assert_eq!(
        counts.made.load(Ordering::SeqCst),
        counts.lost.load(Ordering::SeqCst)
    );
    assert_eq!(loads(group.workers()), [0, 0]);
}

/// `stop` before `run`, twice, from the group, its handle and a worker at
/// once: the group runs, stops once, and `run` returns.
#[test]
fn stopping_early_twice_and_from_everywhere_at_once_returns_once() {
    let group = ReactorGroup::new(2).unwrap();
    let stops = Rc::new(Cell::new(0));
    let counted = stops.clone();
    group.add_system_event_trigger(Phase::After, SystemEvent::Shutdown, move || {
        counted.set(counted.get() + 1)
    });
    group.stop();
    group.stop();
    group.handle().stop();
    group.worker(1).call_from_thread(twill::stop).unwrap();
    let handle = group.handle();
    group
        .worker(0)
        .call_from_thread(move || handle.stop())
        .unwrap();
    run_group(&group).unwrap();
    assert_eq!(stops.get(), 1);
    group.stop();
    assert!(group.run().is_err());
}

/// A worker whose thread dies while it stops (a panic in its own shutdown
/// trigger that escapes the trigger's guard): `run` still returns, with an
/// error naming it, and the other worker's client sees a clean end.
#[test]
fn a_worker_that_dies_during_shutdown_is_reported_and_run_returns() {
    let group = ReactorGroup::new(2).unwrap();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    let port = group
        .listen_tcp_with("127.0.0.1:0", Placement::RoundRobin, move || {
            let counts = shared.clone();
            move |_peer| echo(&counts)
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    group
        .worker(1)
        .call_from_thread(|| {
            twill::reactor().add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, || {
                std::panic::panic_any(PanicsWhenDropped)
            });
        })
        .unwrap();
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        let mut on_0 = connect(addr);
        let mut on_1 = connect(addr);
        assert_eq!(line(&mut on_0), "w0\n");
        assert_eq!(line(&mut on_1), "w1\n");
        stopper.stop();
        assert!(drain_to_end(&mut on_0).is_empty());
        drain_to_end(&mut on_1);
    });
    let started = Instant::now();
    let err = run_group(&group).expect_err("worker 1 died");
    clients.join().unwrap();
    assert!(err.to_string().contains("worker 1"), "{err}");
    assert!(!err.to_string().contains("worker 0"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// An inbox whose handler drops the inbox itself: delivery ends there,
/// without a panic, the rest are not handled, and senders see it closed.
#[test]
fn an_inbox_dropped_from_inside_its_own_handler_ends_cleanly() {
    let reactor = Reactor::new().unwrap();
    let slot: Rc<RefCell<Option<Inbox<u32>>>> = Rc::new(RefCell::new(None));
    let handled = Rc::new(RefCell::new(Vec::new()));
    let (own, log) = (slot.clone(), handled.clone());
    let inbox = Inbox::new(8, move |n: u32| {
        log.borrow_mut().push(n);
        if n == 2 {
            drop(own.borrow_mut().take());
        }
    });
    let sender = inbox.sender();
    *slot.borrow_mut() = Some(inbox);
    for n in 1..=4 {
        sender.send(n).unwrap();
    }
    let stopper = reactor.clone();
    reactor.call_later(Duration::from_millis(20), move || stopper.stop());
    reactor.run().unwrap();
    assert_eq!(*handled.borrow(), [1, 2]);
    assert!(sender.is_closed());
    assert!(sender.send(5).is_err());
}

/// Two workers bounce a counter between their inboxes (capacity 1, so
/// every message finds its inbox empty and must wake its reactor) 20,000
/// times: no wake-up is lost, and every send finds room.
#[test]
fn inboxes_of_capacity_one_ping_pong_between_workers_without_losing_a_wake_up() {
    const ROUNDS: u32 = 20_000;
    let group = ReactorGroup::new(2).unwrap();
    type Slot = Arc<Mutex<Option<twill::group::InboxSender<u32>>>>;
    let slots: [Slot; 2] = [Arc::default(), Arc::default()];
    let (ready_tx, ready) = mpsc::channel::<()>();
    let ready_tx = Mutex::new(ready_tx);
    let (peers, stopper) = (slots.clone(), group.handle());
    group
        .broadcast(move || {
            let me = worker_index().unwrap();
            let other = peers[1 - me].clone();
            let stopper = stopper.clone();
            let inbox = Inbox::new(1, move |n: u32| {
                if n == ROUNDS {
                    stopper.stop();
                    return;
                }
                let sender = other.lock().unwrap().clone().unwrap();
                sender.send(n + 1).expect("the other inbox had room");
            });
            *peers[me].lock().unwrap() = Some(inbox.sender());
            // Kept for the worker's life.
            std::mem::forget(inbox);
            ready_tx.lock().unwrap().send(()).unwrap();
        })
        .unwrap();
    let first = slots[0].clone();
    let starter = thread::spawn(move || {
        for _ in 0..2 {
            ready.recv_timeout(LIMIT).unwrap();
        }
        first.lock().unwrap().as_ref().unwrap().send(0).unwrap();
    });
    run_group(&group).unwrap();
    starter.join().unwrap();
}

/// An inbox of capacity 2 whose handler is busy with message 1 holds
/// message 2, and must then take at most one more: "at most `capacity`
/// messages not yet handled".
#[test]
fn an_inbox_never_holds_more_unhandled_messages_than_its_capacity() {
    let reactor = Reactor::new().unwrap();
    let (busy_tx, busy) = mpsc::channel::<()>();
    let (go_tx, go) = mpsc::channel::<()>();
    let inbox = Inbox::new(2, move |n: u32| {
        if n == 1 {
            busy_tx.send(()).unwrap();
            let _ = go.recv_timeout(LIMIT);
        }
    });
    let sender = inbox.sender();
    sender.send(1).unwrap();
    sender.send(2).unwrap();
    let stopper = reactor.handle();
    let filler = thread::spawn(move || {
        busy.recv_timeout(LIMIT).unwrap();
        // Message 2 is still unhandled: room for one more at most.
        let accepted = (3..10).filter(|&n| sender.send(n).is_ok()).count();
        go_tx.send(()).unwrap();
        stopper.stop();
        accepted
    });
    reactor.run().unwrap();
    let accepted = filler.join().unwrap();
    let unhandled = 1 + accepted;
    assert!(
        unhandled <= 2,
        "{unhandled} messages unhandled in an inbox of capacity 2"
    );
}

/// Closing (or dropping) an inbox drops the messages not yet handled, as
/// its documentation says, even while a sender is still around: a message
/// can hold a socket or a buffer.
#[test]
fn closing_an_inbox_drops_its_unhandled_messages_while_senders_live() {
    struct Held(Arc<AtomicUsize>);
    impl Drop for Held {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let reactor = Reactor::new().unwrap();
    let inbox = Inbox::new(4, |_: Held| {});
    let sender = inbox.sender();
    for _ in 0..3 {
        sender.send(Held(dropped.clone())).map_err(|_| ()).unwrap();
    }
    drop(inbox);
    drop(reactor);
    assert!(sender.is_closed());
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        3,
        "unhandled messages still held by a closed inbox"
    );
    drop(sender);
}

/// An inbox made on a thread with no reactor has no loop to deliver from:
/// it should refuse to be made there or refuse messages, not accept them
/// for ever.
#[test]
fn an_inbox_on_a_thread_with_no_reactor_does_not_swallow_messages() {
    let (result_tx, result) = mpsc::channel();
    let (end_tx, end) = mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        let made = std::panic::catch_unwind(|| Inbox::new(4, |_: u32| {}));
        let outcome = match &made {
            Err(_) => "refused to be made".to_owned(),
            Ok(inbox) => {
                let sender = inbox.sender();
                match sender.send(1) {
                    Err(_) => "refused the message".to_owned(),
                    Ok(()) => {
                        // The thread lives on (a plain worker thread, say).
                        thread::sleep(Duration::from_millis(50));
                        format!("accepted it; closed afterwards: {}", sender.is_closed())
                    }
                }
            }
        };
        result_tx.send(outcome).unwrap();
        let _ = end.recv_timeout(LIMIT);
    });
    let outcome = result.recv_timeout(LIMIT).unwrap();
    drop(end_tx);
    owner.join().unwrap();
    assert!(outcome.starts_with("refused"), "the inbox {outcome}");
}

/// A panic that escapes the boss's loop (the payload of a caught panic that
/// panics again when dropped) unwinds out of `run`: the workers must not be
/// left running, and dropping the group must not wait for them for ever.
#[test]
fn a_panic_out_of_the_boss_stops_the_workers_and_dropping_the_group_returns() {
    let (workers_tx, workers) = mpsc::channel::<Vec<WorkerHandle>>();
    let (progress_tx, progress) = mpsc::channel::<&'static str>();
    let owner = thread::spawn(move || {
        let group = ReactorGroup::new(2).unwrap();
        workers_tx.send(group.workers().to_vec()).unwrap();
        group.boss().call_later(Duration::from_millis(10), || {
            std::panic::panic_any(PanicsWhenDropped)
        });
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| group.run()));
        assert!(ran.is_err(), "the panic went through run");
        progress_tx.send("run unwound").unwrap();
        drop(group);
        progress_tx.send("group dropped").unwrap();
    });
    let workers = workers.recv_timeout(LIMIT).unwrap();
    assert_eq!(progress.recv_timeout(LIMIT), Ok("run unwound"));
    let still_running = workers
        .iter()
        .filter(|w| w.call_from_thread(|| {}).is_ok())
        .count();
    let dropped = progress.recv_timeout(Duration::from_secs(3));
    // Unstick the owner thread whatever happened, so the process is clean.
    for worker in &workers {
        let _ = worker.call_from_thread(twill::stop);
    }
    owner.join().unwrap();
    assert_eq!(
        (still_running, dropped),
        (0, Ok("group dropped")),
        "(workers still running after run unwound, how dropping the group ended)"
    );
}

/// A factory that cannot be made on one worker (`make_factory` panics
/// there) must not turn that worker into a hole: the connections placed
/// there are closed unserved, and least connections sends it every new one
/// because its load stays 0.
#[test]
fn a_worker_whose_factory_could_not_be_made_gets_no_connections() {
    let group = ReactorGroup::new(2).unwrap();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    let port = group
        .listen_tcp("127.0.0.1:0", move || {
            if worker_index() == Some(0) {
                panic!("no factory on worker 0");
            }
            let counts = shared.clone();
            move |_peer| echo(&counts)
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let stopper = group.handle();
    let clients = thread::spawn(move || {
        let mut open = Vec::new();
        let mut unserved = 0;
        for _ in 0..8 {
            let mut client = connect(addr);
            let mut greeting = String::new();
            if client.read_line(&mut greeting).unwrap_or(0) == 0 {
                unserved += 1;
            }
            open.push(client);
        }
        stopper.stop();
        unserved
    });
    run_group(&group).unwrap();
    let unserved = clients.join().unwrap();
    assert_eq!(unserved, 0, "{unserved} of 8 connections closed unserved");
}

/// A `worker(i).connect_tcp` that returns `Ok` as the worker stops, before
/// its turn: the attempt is not started (its factory is never made, and a
/// warning says so), and it no longer counts in the worker's load.
#[test]
fn a_client_connection_accepted_as_its_worker_stops_is_reported_and_not_counted() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let group = ReactorGroup::new(1).unwrap();
    let (in_after_tx, in_after) = mpsc::channel::<()>();
    let (go_tx, go) = mpsc::channel::<()>();
    let (in_after_tx, go) = (Mutex::new(in_after_tx), Mutex::new(go));
    group
        .worker(0)
        .call_from_thread(move || {
            twill::reactor().add_system_event_trigger(
                Phase::After,
                SystemEvent::Shutdown,
                move || {
                    in_after_tx.lock().unwrap().send(()).unwrap();
                    let _ = go.lock().unwrap().recv_timeout(LIMIT);
                },
            );
        })
        .unwrap();
    struct Told(mpsc::Sender<&'static str>);
    impl Factory for Told {
        type Protocol = Echo;
        fn build_protocol(&mut self, _peer: twill::Address) -> Option<Echo> {
            let _ = self.0.send("built");
            None
        }
    }
    impl ClientFactory for Told {
        fn client_connection_failed(&mut self, _: &Connector, _: &io::Error) {
            let _ = self.0.send("failed");
        }
    }
    let (told_tx, told) = mpsc::channel();
    let made = Arc::new(AtomicUsize::new(0));
    let worker = group.worker(0);
    let making = made.clone();
    let caller = thread::spawn(move || {
        in_after.recv_timeout(LIMIT).unwrap();
        let result = worker.connect_tcp(addr, move || {
            making.fetch_add(1, Ordering::SeqCst);
            Told(told_tx)
        });
        go_tx.send(()).unwrap();
        result.is_ok()
    });
    group.stop();
    run_group(&group).unwrap();
    let accepted = caller.join().unwrap();
    let load = group.worker(0).load();
    let made = made.load(Ordering::SeqCst);
    let told = told.recv_timeout(Duration::from_millis(200)).ok();
    // Accepted as the worker stopped, the attempt is either made and
    // reported to its factory, or never started (and logged as such): its
    // factory is not made half-way.
    assert!(
        !accepted || (made == 1 && told.is_some()) || (made == 0 && told.is_none()),
        "connect_tcp said Ok; factories made: {made}, told: {told:?}, load: {load}"
    );
    assert_eq!(load, 0, "a connection that never happened still counts");
}

/// After the group's stop closed every listening socket, its port still
/// says it is listening.
#[test]
fn a_group_port_is_not_listening_once_the_group_has_stopped() {
    for placement in [Placement::LeastConnections, Placement::ReusePort] {
        let group = ReactorGroup::new(2).unwrap();
        let counts = Arc::new(Counts::default());
        let port = group
            .listen_tcp_with("127.0.0.1:0", placement, move || {
                let counts = counts.clone();
                move |_peer| echo(&counts)
            })
            .unwrap();
        let addr = port.host().tcp().unwrap();
        group.stop();
        run_group(&group).unwrap();
        assert!(
            TcpStream::connect_timeout(&addr, LIMIT).is_err(),
            "{placement:?}: still accepting"
        );
        assert!(!port.is_listening(), "{placement:?}: says it is listening");
    }
}

/// A group that has run and stopped: `listen_tcp` binds a socket that no
/// one will ever accept on, and says nothing.
#[test]
fn listening_on_a_group_that_has_stopped_fails() {
    let group = ReactorGroup::new(1).unwrap();
    group.stop();
    run_group(&group).unwrap();
    let counts = Arc::new(Counts::default());
    let listened = group.listen_tcp("127.0.0.1:0", move || {
        let counts = counts.clone();
        move |_peer| echo(&counts)
    });
    assert!(
        listened.is_err(),
        "listened on {:?}",
        listened.map(|p| p.host())
    );
}

const EMFILE_CHILD: &str = "TWILL_GROUP_REVIEW_EMFILE_CHILD";

/// The boss out of file descriptors (the process limited to 64 with
/// `prlimit`, a crowd of 100 connections held open): it backs off instead
/// of spinning or failing, the connections it did accept are served, and
/// once the crowd leaves a new client is served again.
#[test]
fn a_boss_out_of_file_descriptors_backs_off_and_serves_again_once_they_free() {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=64:64")
        .arg(exe)
        .args([
            "--exact",
            "emfile_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EMFILE_CHILD, "1");
    let mut child = Proc::start("group under prlimit", command).wait_limit(LIMIT);
    let addr = child.listening_addr();
    let mut crowd: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect_timeout(&addr, LIMIT).expect("connect"))
        .collect();
    child.wait_stderr("pausing accepts");
    // Those it accepted are served: the first is.
    let mut first = BufReader::new(crowd.remove(0));
    first.get_ref().set_read_timeout(Some(LIMIT)).unwrap();
    assert!(line(&mut first).starts_with('w'));
    drop(first);
    drop(crowd);
    let mut late = connect(addr);
    assert!(line(&mut late).starts_with('w'), "{}", child.transcript());
    late.get_mut().write_all(b"quit\n").unwrap();
    child.expect_clean_exit();
    assert!(child.stdout_text().contains("group stopped"));
}

/// The child half of the test above: a two-worker group that echoes, and
/// stops when told `quit`. Does nothing unless run as that child.
#[test]
fn emfile_child_process() {
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return;
    }
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .try_init();
    struct Quits {
        transport: Option<Transport>,
        group: GroupHandle,
    }
    impl Protocol for Quits {
        fn connection_made(&mut self, transport: &Transport) {
            transport.write(format!("w{}\n", worker_index().unwrap()));
            self.transport = Some(transport.clone());
        }
        fn data_received(&mut self, data: Bytes) {
            if &data[..] == b"quit\n" {
                self.group.stop();
            }
            self.transport.as_ref().unwrap().write(data);
        }
    }
    let group = ReactorGroup::new(2).unwrap();
    group.set_shutdown_timeout(Duration::from_secs(2));
    let handle = group.handle();
    let port = group
        .listen_tcp("127.0.0.1:0", move || {
            let group = handle.clone();
            move |_peer| Quits {
                transport: None,
                group: group.clone(),
            }
        })
        .unwrap();
    eprintln!("listening on {}", port.host());
    run_group(&group).unwrap();
    println!("group stopped");
}
