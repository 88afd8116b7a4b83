//! SIGTERM stops a whole reactor group gracefully: its own test binary,
//! since a signal reaches every reactor of the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use twill::group::{worker_index, Placement, ReactorGroup};
use twill::{Bytes, Phase, Protocol, SystemEvent, Transport};

const LIMIT: Duration = Duration::from_secs(20);

/// Greets with its worker's index; on shutdown, says goodbye before its
/// connection closes.
struct Polite(Option<Transport>);

impl Protocol for Polite {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(format!("w{}\n", worker_index().unwrap()));
        self.0 = Some(transport.clone());
    }
    fn data_received(&mut self, _data: Bytes) {}
}

#[test]
fn sigterm_drains_every_worker_then_run_returns() {
    let group = ReactorGroup::new(2).unwrap();
    let port = group
        .listen_tcp_with("127.0.0.1:0", Placement::RoundRobin, || {
            |_peer| Polite(None)
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let (before_tx, before) = mpsc::channel();
    group.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
        before_tx.send(()).unwrap();
    });
    let stopper = group.handle();
    let (done, wait) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        let fired = matches!(
            wait.recv_timeout(LIMIT),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if fired {
            stopper.stop();
        }
        fired
    });
    let clients = thread::spawn(move || {
        let mut clients: Vec<BufReader<TcpStream>> = (0..4)
            .map(|_| {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                BufReader::new(stream)
            })
            .collect();
        let mut workers = Vec::new();
        for client in &mut clients {
            let mut line = String::new();
            client.read_line(&mut line).unwrap();
            workers.push(line);
        }
        let status = Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for client in &mut clients {
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
            // The connection is closed for writing too, by then.
            let _ = client.get_mut().write_all(b"late");
        }
        workers
    });
    group.run().unwrap();
    drop(done);
    assert!(!watchdog.join().unwrap(), "SIGTERM did not stop the group");
    let workers = clients.join().unwrap();
    assert_eq!(workers, ["w0\n", "w1\n", "w0\n", "w1\n"]);
    before.try_recv().expect("the group's Before trigger ran");
}
