//! twill's streams against asyncio's, which twill did not write: Python's
//! `asyncio.open_connection` client against a twill `start_server` echo,
//! and a twill `open_connection` client against Python's
//! `asyncio.start_server` (`tests/support/stream_peer.py`). What crosses
//! the wire is plain TCP, so this shows the behaviours meet: lines,
//! megabytes sent while the echo comes back (twill's reader pausing and
//! resuming under asyncio's `drain`), half-closes both ways, and closes.
//!
//! Python is `$TWILL_TWISTED_PYTHON` if set, else `python3` (3.11 or
//! later, standard library only). Every wait is bounded: the peer's lines
//! and exit by [`Proc`]'s limits, the reactor by its watchdog.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use twill::stream;
use twill::Reactor;
use twill_test_support::process::Proc;
use twill_test_support::reactor::run;

/// `$TWILL_TWISTED_PYTHON` if set, else `python3`.
fn python() -> OsString {
    std::env::var_os("TWILL_TWISTED_PYTHON").unwrap_or_else(|| "python3".into())
}

/// The asyncio peer in `mode`, with `args`.
fn asyncio_peer(mode: &str, args: &[&str]) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/stream_peer.py");
    let mut command = Command::new(python());
    command.arg(script).arg(mode).args(args);
    Proc::start(&format!("stream_peer.py {mode}"), command)
}

#[test]
fn an_asyncio_client_talks_to_a_twill_streams_echo_server() {
    let reactor = Reactor::new().unwrap();
    let port = stream::start_server("127.0.0.1:0", |mut reader, writer| async move {
        loop {
            let data = reader.read(64 * 1024).await.unwrap();
            if data.is_empty() {
                break; // the client's EOF: return, which closes
            }
            writer.write(data);
            writer.drain().await.unwrap();
        }
    })
    .unwrap();
    let port_number = port.host().port().unwrap().to_string();
    let handle = reactor.handle();
    let peer = std::thread::spawn(move || {
        let mut peer = asyncio_peer("client", &[&port_number]);
        let status = peer.wait_exit();
        handle.stop();
        (status, peer.transcript())
    });
    run(&reactor);
    let (status, transcript) = peer.join().unwrap();
    assert!(status.success(), "the asyncio client failed:\n{transcript}");
    assert!(transcript.contains("client ok"), "{transcript}");
}

#[test]
fn a_twill_streams_client_talks_to_an_asyncio_server() {
    let mut peer = asyncio_peer("server", &[]);
    let line = peer.wait_stdout("listening on ");
    let addr: std::net::SocketAddr = line
        .rsplit("listening on ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let reactor = Reactor::new().unwrap();
    twill::spawn(async move {
        let (mut reader, writer) = stream::open_connection(addr).await.unwrap();
        writer.write("one\ntwo\n");
        assert_eq!(&reader.read_line().await.unwrap()[..], b"ONE\n");
        assert_eq!(&reader.read_line().await.unwrap()[..], b"TWO\n");
        // Our half-close: the server answers it, then closes.
        writer.write_eof();
        assert_eq!(&reader.read_line().await.unwrap()[..], b"bye\n");
        assert_eq!(&reader.read_line().await.unwrap()[..], b"");
        assert!(reader.at_eof());
        writer.wait_closed().await.unwrap();
        twill::stop();
    });
    run(&reactor);
    assert!(peer.wait_exit().success(), "{}", peer.transcript());
    assert!(peer.transcript().contains("server ok"));
}
