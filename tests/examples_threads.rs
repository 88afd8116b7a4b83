//! `broadcast_server --threads N`, run as a child process against real
//! loopback sockets: clients placed on different workers of its reactor
//! group still see each other's messages, relayed between the workers'
//! inboxes.
//!
//! With `--placement round-robin` and a fresh server, client `i` lands on
//! worker `i % N`; the server logs the worker of each connection, and the
//! tests check it, so that a relay between workers is what they exercise.

use std::net::SocketAddr;

use twill_test_support::client::Client;
use twill_test_support::process::Proc;

/// The examples' cargo package.
const PACKAGE: &str = "twill";

fn welcome(number: usize) -> String {
    format!("Welcome to Spread Site, you are client user number {number}!\n")
}

/// Starts `broadcast_server` on 2 workers, round robin, and connects `n`
/// clients, each after the previous one was welcomed; checks that client
/// `i` is on worker `i % 2`.
fn spreader_with_clients(n: usize) -> (Proc, SocketAddr, Vec<Client>) {
    let server = Proc::example(
        PACKAGE,
        "broadcast_server",
        &[
            "127.0.0.1:0",
            "--threads",
            "2",
            "--placement",
            "round-robin",
        ],
    );
    let addr = server.listening_addr();
    let mut clients = Vec::new();
    for number in 1..=n {
        let mut client = Client::connect(addr);
        assert_eq!(client.line_str(), welcome(number));
        let logged = server.wait_stderr(&format!("new connect: {number} "));
        let worker = (number - 1) % 2;
        assert!(
            logged.ends_with(&format!("on worker {worker}")),
            "client {number} should be on worker {worker}: {logged:?}"
        );
        clients.push(client);
    }
    (server, addr, clients)
}

#[test]
fn relays_every_message_to_every_other_client_across_workers_but_not_the_sender() {
    let (_server, _addr, mut clients) = spreader_with_clients(4);
    for sender in 0..clients.len() {
        let message = format!("from {sender}: h\u{e9}llo \u{2603}\r\n");
        clients[sender].send(message.as_bytes());
        for (i, client) in clients.iter_mut().enumerate() {
            if i != sender {
                assert_eq!(client.line_str(), message, "client {i}");
            }
        }
    }
    // Had the last sender got its own message back, it would read it
    // before this.
    clients[0].send(b"the end\n");
    for client in &mut clients[1..] {
        assert_eq!(client.line(), b"the end\n");
    }
}

#[test]
fn messages_from_one_client_arrive_in_order_on_the_other_worker() {
    let (_server, _addr, mut clients) = spreader_with_clients(2);
    for i in 0..200 {
        clients[0].send(format!("message {i}\n").as_bytes());
    }
    // However the reads cut them, every byte comes, in order.
    let expected: String = (0..200).map(|i| format!("message {i}\n")).collect();
    assert_eq!(clients[1].read_exact(expected.len()), expected.as_bytes());
}

#[test]
fn counts_the_clients_of_every_worker_in_the_welcome() {
    let (server, addr, mut clients) = spreader_with_clients(3);
    // Client 2 (worker 1) leaves: the count is 2 on both workers.
    drop(clients.remove(1));
    server.wait_stderr("lost connect: 2");
    let mut fourth = Client::connect(addr);
    assert_eq!(fourth.line_str(), welcome(3));
}

#[test]
fn close_ends_only_the_senders_connection() {
    let (server, addr, mut clients) = spreader_with_clients(4);
    // Client 2 is on worker 1.
    clients[1].send(b"close\r\n");
    clients[1].expect_eof();
    drop(clients.remove(1));
    server.wait_stderr("lost connect: 3");
    clients[0].send(b"still here\n");
    for client in &mut clients[1..] {
        assert_eq!(client.line(), b"still here\n");
    }
    let mut newcomer = Client::connect(addr);
    assert_eq!(newcomer.line_str(), welcome(4), "the closed client left");
    clients[2].send(b"hello again\n");
    assert_eq!(clients[0].line(), b"hello again\n");
    assert_eq!(clients[1].line(), b"hello again\n");
    assert_eq!(newcomer.line(), b"hello again\n");
}

#[test]
fn on_sigterm_drains_every_worker_and_exits_with_status_0() {
    let (mut server, _addr, mut clients) = spreader_with_clients(4);
    // Traffic still flows between the workers right before the signal.
    clients[3].send(b"last words\n");
    for client in &mut clients[..3] {
        assert_eq!(client.line(), b"last words\n");
    }
    server.terminate();
    for client in &mut clients {
        client.expect_eof();
    }
    drop(clients);
    server.expect_clean_exit();
}

#[test]
fn each_placement_relays_between_workers() {
    for placement in ["least", "round-robin", "reuse-port"] {
        let server = Proc::example(
            PACKAGE,
            "broadcast_server",
            &["127.0.0.1:0", "--threads", "3", "--placement", placement],
        );
        let addr = server.listening_addr();
        let mut clients: Vec<Client> = (1..=6)
            .map(|number| {
                let mut client = Client::connect(addr);
                assert_eq!(client.line_str(), welcome(number), "{placement}");
                client
            })
            .collect();
        clients[5].send(b"to all\n");
        for client in &mut clients[..5] {
            assert_eq!(client.line(), b"to all\n", "{placement}");
        }
    }
}

#[test]
fn with_threads_a_unix_socket_or_a_bad_option_is_a_usage_error() {
    for args in [
        &["unix:/tmp/broadcast-threads.sock", "--threads", "2"][..],
        &["127.0.0.1:0", "--threads", "0"],
        &["127.0.0.1:0", "--threads"],
        &["127.0.0.1:0", "--threads", "2", "--placement", "random"],
        &["127.0.0.1:0", "--placement", "least"],
        &["127.0.0.1:0", "--thread", "2"],
    ] {
        let mut server = Proc::example(PACKAGE, "broadcast_server", args);
        server.wait_stderr("usage: broadcast_server [ENDPOINT] [--threads N");
        let status = server.wait_exit();
        assert_eq!(status.code(), Some(2), "{args:?}: {}", server.transcript());
    }
}
