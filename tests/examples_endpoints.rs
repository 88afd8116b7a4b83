//! The twill examples take an endpoint string where they took an address:
//! `echo_server` on `tcp:0:interface=127.0.0.1` and on `unix:PATH` with
//! `echo_client` connecting by endpoint string, `broadcast_server` on a
//! Unix socket with `broadcast_client`, and the command-line errors (an
//! endpoint string that does not parse; several threads on a Unix socket)
//! that exit with status 2.
//!
//! Each test has a temporary folder of its own for its socket; every wait
//! is bounded, and children are killed when a test ends, pass or fail.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use twill_test_support::client::{Client, WAIT};
use twill_test_support::files::TempDir;
use twill_test_support::process::Proc;

/// The examples' cargo package.
const PACKAGE: &str = "twill";

/// Starts the server example `name` on `endpoint` and checks that it logs
/// `listening on` the Unix socket `socket`.
fn serve_on_unix_socket(name: &str, socket: &Path) -> Proc {
    let endpoint = format!("unix:{}", socket.display());
    let server = Proc::example(PACKAGE, name, &[&endpoint]);
    let listening = server.wait_stderr("listening on ");
    assert!(
        listening.ends_with(&format!("listening on {endpoint}")),
        "{listening:?}"
    );
    server
}

/// Stops `server` with SIGTERM, checks it exits with status 0, and that
/// its socket file went with it.
fn stop_and_expect_socket_removed(mut server: Proc, socket: &Path) {
    server.terminate();
    server.expect_clean_exit();
    assert!(
        !socket.exists(),
        "{} is still there after the server stopped",
        socket.display()
    );
}

#[test]
fn echo_server_listens_on_a_tcp_endpoint_string() {
    let server = Proc::example(PACKAGE, "echo_server", &["tcp:0:interface=127.0.0.1"]);
    let addr = server.listening_addr();
    let mut client = Client::connect(addr);
    client.send(b"ping\n");
    assert_eq!(client.line(), b"ping\n");

    let endpoint = format!("tcp:host=127.0.0.1:port={}:timeout=5", addr.port());
    let mut echo_client = Proc::example(PACKAGE, "echo_client", &[&endpoint, "over tcp"]);
    assert_eq!(echo_client.wait_stdout("over"), "over tcp");
    let status = echo_client.wait_exit();
    assert!(status.success(), "echo_client exited with {status}");
}

#[test]
fn echo_server_on_a_unix_socket_echoes_to_echo_client_by_endpoint_string() {
    let dir = TempDir::new("echo-unix");
    let socket = dir.path().join("echo.sock");
    let server = serve_on_unix_socket("echo_server", &socket);

    let stream = UnixStream::connect(&socket).expect("connect to the echo socket");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream);
    reader.get_mut().write_all(b"ping\n").unwrap();
    let mut echoed = String::new();
    reader.read_line(&mut echoed).expect("read the echo");
    assert_eq!(echoed, "ping\n");
    drop(reader);

    let endpoint = format!("unix:path={}", socket.display());
    let mut echo_client = Proc::example(PACKAGE, "echo_client", &[&endpoint, "over unix"]);
    assert_eq!(echo_client.wait_stdout("over"), "over unix");
    let status = echo_client.wait_exit();
    assert!(status.success(), "echo_client exited with {status}");

    stop_and_expect_socket_removed(server, &socket);
}

#[test]
fn echo_server_with_threads_on_a_unix_socket_hands_its_connections_to_the_workers() {
    let dir = TempDir::new("echo-threads");
    let socket = dir.path().join("echo.sock");
    let endpoint = format!("unix:{}", socket.display());
    let server = Proc::example(
        PACKAGE,
        "echo_server",
        &[&endpoint, "2", "--placement", "round-robin"],
    );
    server.wait_stderr("listening on");
    for i in 0..4 {
        let stream = UnixStream::connect(&socket).expect("connect to the echo socket");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut reader = BufReader::new(stream);
        reader
            .get_mut()
            .write_all(format!("ping {i}\n").as_bytes())
            .unwrap();
        let mut echoed = String::new();
        reader.read_line(&mut echoed).expect("read the echo");
        assert_eq!(echoed, format!("ping {i}\n"));
    }
    stop_and_expect_socket_removed(server, &socket);
}

#[test]
fn echo_server_with_reuse_port_on_a_unix_socket_exits_with_status_2() {
    let dir = TempDir::new("echo-reuse");
    let endpoint = format!("unix:{}", dir.path().join("echo.sock").display());
    let mut server = Proc::example(
        PACKAGE,
        "echo_server",
        &[&endpoint, "2", "--placement", "reuse-port"],
    );
    server.wait_stderr("need a TCP endpoint");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(2), "{}", server.transcript());
}

#[test]
fn servers_exit_with_status_2_naming_the_field_of_a_bad_endpoint_string() {
    for name in ["echo_server", "broadcast_server", "async_echo"] {
        let mut server = Proc::example(PACKAGE, name, &["tcp:80x"]);
        let error = server.wait_stderr("tcp:80x");
        assert!(error.contains("field port"), "{name}: {error:?}");
        let status = server.wait_exit();
        assert_eq!(status.code(), Some(2), "{name}: {}", server.transcript());
    }
}

#[test]
fn broadcast_client_talks_to_broadcast_server_over_a_unix_socket() {
    let dir = TempDir::new("broadcast-unix");
    let socket = dir.path().join("broadcast.sock");
    let server = serve_on_unix_socket("broadcast_server", &socket);

    let listener = UnixStream::connect(&socket).expect("connect to the broadcast socket");
    listener.set_read_timeout(Some(WAIT)).unwrap();
    let mut listener = BufReader::new(listener);
    let mut line = String::new();
    listener.read_line(&mut line).expect("read the welcome");
    assert_eq!(
        line,
        "Welcome to Spread Site, you are client user number 1!\n"
    );

    let endpoint = format!("unix:{}", socket.display());
    let mut client = Proc::example(PACKAGE, "broadcast_client", &[&endpoint, "tester", "0.2"]);
    client.wait_stdout("Connected.");
    client.wait_stdout("you are client user number 2!");
    line.clear();
    listener.read_line(&mut line).expect("read the hello");
    assert!(line.starts_with("hello, I'm tester "), "{line:?}");

    listener.get_mut().write_all(b"hi, tester\n").unwrap();
    client.wait_stdout("hi, tester");

    stop_and_expect_socket_removed(server, &socket);
    client.wait_stdout("Lost connection.");
    let status = client.wait_exit();
    assert!(status.success(), "broadcast_client exited with {status}");
}
