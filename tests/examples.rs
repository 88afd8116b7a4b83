//! The example programs, run as child processes against real loopback
//! sockets: the Spreader broadcast server (reference section 7.3) and its
//! client, the echo server and client, the echo server written on streams
//! (`async_echo`), and a graceful stop on SIGTERM.
//!
//! The examples are built once with `cargo build -p twill --examples` (by
//! `twill_test_support::process`); each child listens on 127.0.0.1:0 and
//! the test reads the port from its `listening on ADDR` log line. Children
//! are killed when a test ends, pass or fail.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use twill_test_support::client::{Client, WAIT};
use twill_test_support::pressure::{
    assert_stalled_with_flat_memory, connect_small, memory, read_expected, send_until_stalled, MIB,
    SMALL_RCVBUF,
};
use twill_test_support::process::{example, Proc};

/// The examples' cargo package.
const PACKAGE: &str = "twill";

fn welcome(number: usize) -> String {
    format!("Welcome to Spread Site, you are client user number {number}!\n")
}

/// Starts `broadcast_server` and connects `n` clients, each after the
/// previous one was welcomed (so their numbers are 1..=n).
fn spreader_with_clients(n: usize) -> (Proc, SocketAddr, Vec<Client>) {
    let server = Proc::example(PACKAGE, "broadcast_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut clients = Vec::new();
    for number in 1..=n {
        let mut client = Client::connect(addr);
        assert_eq!(client.line_str(), welcome(number));
        clients.push(client);
    }
    (server, addr, clients)
}

// ---------------------------------------------------------------------------
// broadcast_server
// ---------------------------------------------------------------------------

#[test]
fn broadcast_server_welcomes_each_client_with_the_number_connected_now() {
    // The welcome is checked inside spreader_with_clients: 1, 2, 3.
    let (server, addr, mut clients) = spreader_with_clients(3);
    // Numbers are the current count, so they are reused after a client
    // leaves.
    drop(clients.remove(0));
    server.wait_stderr("lost connect: 2");
    let mut fourth = Client::connect(addr);
    assert_eq!(fourth.line_str(), welcome(3));
}

#[test]
fn broadcast_server_relays_a_message_unchanged_to_every_other_client_but_not_the_sender() {
    let (_server, _addr, mut clients) = spreader_with_clients(3);
    let message: &[u8] = "h\u{e9}llo,\tevery one \u{2603}\r\n".as_bytes();
    clients[0].send(message);
    assert_eq!(clients[1].line(), message);
    assert_eq!(clients[2].line(), message);
    // Had the sender received its own message, it would read it before this.
    clients[1].send(b"reply from 2\n");
    assert_eq!(clients[0].line(), b"reply from 2\n");
    assert_eq!(clients[2].line(), b"reply from 2\n");
    clients[2].send(b"reply from 3\n");
    assert_eq!(clients[0].line(), b"reply from 3\n");
    assert_eq!(clients[1].line(), b"reply from 3\n");
}

/// `close` (as sent) ends the sender's connection only.
fn close_ends_only_the_senders_connection(close: &[u8]) {
    let (server, addr, mut clients) = spreader_with_clients(3);
    clients[0].send(close);
    clients[0].expect_eof();
    drop(clients.remove(0));
    server.wait_stderr("lost connect: 2");
    clients[0].send(b"still here\n");
    assert_eq!(clients[1].line(), b"still here\n");
    let mut newcomer = Client::connect(addr);
    assert_eq!(newcomer.line_str(), welcome(3), "the closed client left");
    clients[1].send(b"hello again\n");
    assert_eq!(clients[0].line(), b"hello again\n");
    assert_eq!(newcomer.line(), b"hello again\n");
}

#[test]
fn broadcast_server_closes_the_connection_of_a_client_that_sends_close() {
    close_ends_only_the_senders_connection(b"close");
}

#[test]
fn broadcast_server_accepts_close_with_a_newline() {
    close_ends_only_the_senders_connection(b"close\n");
}

#[test]
fn broadcast_server_accepts_close_with_crlf() {
    close_ends_only_the_senders_connection(b"close\r\n");
}

#[test]
fn broadcast_server_on_sigterm_closes_connections_cleanly_and_exits_with_status_0() {
    let (mut server, _addr, mut clients) = spreader_with_clients(2);
    // Traffic still flows right before the signal.
    clients[0].send(b"last words\n");
    assert_eq!(clients[1].line(), b"last words\n");
    server.terminate();
    for client in &mut clients {
        client.expect_eof();
    }
    drop(clients);
    server.expect_clean_exit();
}

// ---------------------------------------------------------------------------
// broadcast_client
// ---------------------------------------------------------------------------

#[test]
fn broadcast_client_prints_what_it_receives_and_says_hello_on_its_interval() {
    let (server, addr, mut clients) = spreader_with_clients(1);
    let addr = addr.to_string();
    let mut client = Proc::example(PACKAGE, "broadcast_client", &[&addr, "tester", "0.2"]);
    client.wait_stdout("Started to connect.");
    client.wait_stdout("Connected.");
    let welcomed = client.wait_stdout("Welcome to Spread Site");
    assert_eq!(format!("{welcomed}\n"), welcome(2));

    for _ in 0..2 {
        let hello = clients[0].line_str();
        let stamp = hello
            .strip_prefix("hello, I'm tester ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("not a hello: {hello:?}"));
        assert!(
            !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit()),
            "not a timestamp: {hello:?}"
        );
    }

    clients[0].send(b"hi, tester\n");
    client.wait_stdout("hi, tester");

    // The server going away ends the client too.
    server.terminate();
    client.wait_stdout("Lost connection.");
    let status = client.wait_exit();
    assert!(status.success(), "broadcast_client exited with {status}");
}

// ---------------------------------------------------------------------------
// echo_server, echo_client
// ---------------------------------------------------------------------------

/// Runs the echo server example `name` and checks it echoes a line, and a
/// payload bigger than the socket buffers (and than a stream reader's
/// 64 KiB limit) written while reading.
fn echoes_what_it_receives(name: &str) {
    let server = Proc::example(PACKAGE, name, &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut client = Client::connect(addr);
    client.send(b"ping\n");
    assert_eq!(client.line(), b"ping\n");

    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = client.stream().try_clone().unwrap();
    let sent = payload.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent));
    let echoed = client.read_exact(payload.len());
    writing.join().unwrap().expect("write the payload");
    assert!(echoed == payload, "the echo differs from what was sent");
}

#[test]
fn echo_server_echoes_what_it_receives() {
    echoes_what_it_receives("echo_server");
}

#[test]
fn echo_client_prints_the_echo_and_exits() {
    let server = Proc::example(PACKAGE, "echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr().to_string();
    let mut client = Proc::example(PACKAGE, "echo_client", &[&addr, "hello from the test"]);
    let line = client.wait_stdout("hello");
    assert_eq!(line, "hello from the test");
    let status = client.wait_exit();
    assert!(status.success(), "echo_client exited with {status}");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn echo_server_out_of_file_descriptors_backs_off_instead_of_spinning() {
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=24:24")
        .arg(example(PACKAGE, "echo_server"))
        .arg("127.0.0.1:0");
    let server = Proc::start("echo_server", command);
    let addr = server.listening_addr();
    // Each accepted connection takes a descriptor; the kernel queues the
    // rest, so the listener stays readable while accept fails with EMFILE.
    let crowd: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    server.wait_stderr("pausing accepts");
    let before = cpu_ticks(server.pid());
    // A measurement window: a server that retried accept in a loop would
    // burn the whole second (100 ticks).
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(server.pid()) - before;
    assert!(
        used < 20,
        "the server used {used} ticks of CPU in 1 s while out of descriptors"
    );
    drop(crowd);
    // Once descriptors are free again, the server accepts and serves.
    let mut client = Client::connect(addr);
    client.send(b"still here\n");
    assert_eq!(client.line(), b"still here\n");
}

#[test]
fn echo_server_with_several_reactor_threads_echoes_on_each_and_stops_on_sigterm() {
    let mut server = Proc::example(PACKAGE, "echo_server", &["127.0.0.1:0", "3"]);
    let addr = server.listening_addr();
    let mut clients: Vec<Client> = (0..12).map(|_| Client::connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let line = format!("client {i}\n");
        client.send(line.as_bytes());
        assert_eq!(client.line(), line.as_bytes());
    }
    server.terminate();
    for client in &mut clients {
        client.expect_eof();
    }
    let status = server.wait_exit();
    assert!(status.success(), "echo_server exited with {status}");
}

// ---------------------------------------------------------------------------
// async_echo
// ---------------------------------------------------------------------------

/// Fills `buf` with a test stream from byte `offset` on: bytes counting
/// 0..251 over and over, so a lost, repeated or reordered piece shows.
fn counting_bytes(offset: u64, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = ((offset + i as u64) % 251) as u8;
    }
}

#[test]
fn async_echo_echoes_what_it_receives() {
    echoes_what_it_receives("async_echo");
}

#[test]
fn async_echo_serves_many_clients_at_once_each_its_own_bytes() {
    let server = Proc::example(PACKAGE, "async_echo", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut clients: Vec<Client> = (0..100).map(|_| Client::connect(addr)).collect();
    // Every client sends before any reads, so all the tasks are alive and
    // holding data at once.
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("client {i}, first\n").as_bytes());
    }
    for (i, client) in clients.iter_mut().enumerate().rev() {
        client.send(format!("client {i}, second\n").as_bytes());
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.line_str(), format!("client {i}, first\n"));
        assert_eq!(client.line_str(), format!("client {i}, second\n"));
    }
}

#[test]
fn async_echo_when_the_client_closes_its_side_sends_the_rest_and_closes() {
    let server = Proc::example(PACKAGE, "async_echo", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut client = Client::connect(addr);
    let mut payload = vec![0; 1_000_000];
    counting_bytes(0, &mut payload);
    // Written while reading: more than the kernel's buffers hold.
    let mut writer = client.stream().try_clone().unwrap();
    let sent = payload.clone();
    let writing = std::thread::spawn(move || {
        writer.write_all(&sent)?;
        writer.shutdown(Shutdown::Write)
    });
    let echoed = client.read_exact(payload.len());
    writing.join().unwrap().expect("write the payload and shut");
    assert!(echoed == payload, "the echo differs from what was sent");
    // The task saw the end of the stream and returned: the server closes.
    client.expect_eof();

    // And goes on serving others.
    let mut other = Client::connect(addr);
    other.send(b"still here\n");
    assert_eq!(other.line(), b"still here\n");
}

#[test]
fn async_echo_stalls_a_client_that_never_reads_with_flat_memory_and_serves_others() {
    const LIMIT: u64 = 200 * MIB;
    let server = Proc::example(PACKAGE, "async_echo", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let at_start = memory(server.pid());
    let mut hog = connect_small(addr, SMALL_RCVBUF);
    let sent = send_until_stalled(&mut hog, LIMIT, Duration::from_secs(1), counting_bytes);
    let when_stalled = memory(server.pid());
    println!(
        "sent {:.1} MiB before stalling; server {at_start} at start, {when_stalled} when stalled",
        sent as f64 / MIB as f64
    );
    assert_stalled_with_flat_memory(sent, LIMIT, at_start, when_stalled, 48 * MIB);

    // The stalled task costs the others nothing.
    let mut other = Client::connect(addr);
    other.send(b"not stuck\n");
    assert_eq!(other.line(), b"not stuck\n");

    // Once the client reads, everything it sent comes back, in order.
    read_expected(
        &mut hog,
        0,
        sent,
        Instant::now() + WAIT,
        counting_bytes,
        |_| {},
    );
}

#[test]
fn async_echo_on_sigterm_closes_connections_and_exits_with_status_0() {
    let mut server = Proc::example(PACKAGE, "async_echo", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    for client in &mut clients {
        client.send(b"last words\n");
        assert_eq!(client.line(), b"last words\n");
    }
    server.terminate();
    for client in &mut clients {
        client.expect_eof();
    }
    let status = server.wait_exit();
    assert!(
        status.success(),
        "async_echo exited with {status}:\n{}",
        server.transcript()
    );
}
