//! `chat_server --threads N`, run as a child process against real
//! loopback sockets: the chat's rules hold across the workers of its
//! reactor group (names unique everywhere, lines, joins and leaves seen by
//! the users of every worker). `examples.rs` runs the chat's whole
//! specification against the threaded form too.
//!
//! With `--placement round-robin` and a fresh server, the `i`th connection
//! lands on worker `i % N`; the server logs the worker of each connection,
//! and the tests check it, so that what they exercise crosses workers.
//! Every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use twill::tls::config;
use twill::tls::rustls::{ClientConnection, StreamOwned};
use twill::tls::ServerName;
use twill_test_support::client::{Client, WAIT};
use twill_test_support::files::TempDir;
use twill_test_support::process::Proc;

mod chat_support;
use chat_support::*;

/// The examples' cargo package.
const PACKAGE: &str = "twill-protocols";

/// The chat on 2 workers, round robin.
const ROUND_ROBIN_2: &[&str] = &[
    "127.0.0.1:0",
    "--threads",
    "2",
    "--placement",
    "round-robin",
];

/// A chat server, with the number of connections made to it so far, to
/// check where round robin put each.
struct Chat {
    server: Proc,
    addr: SocketAddr,
    workers: usize,
    connections: usize,
}

impl Chat {
    fn start(args: &[&str], workers: usize) -> Chat {
        let server = Proc::example(PACKAGE, "chat_server", args);
        let addr = server.listening_addr();
        Chat {
            server,
            addr,
            workers,
            connections: 0,
        }
    }

    /// A connection that has read the prompt and has no name yet, and was
    /// placed on the next worker in turn.
    fn newcomer(&mut self) -> Client {
        let mut client = Client::connect(self.addr);
        assert_eq!(client.line_str(), PROMPT);
        let me = client.stream().local_addr().unwrap();
        let logged = self
            .server
            .wait_stderr(&format!("new connection from {me} "));
        let worker = self.connections % self.workers;
        assert!(
            logged.ends_with(&format!("on worker {worker}")),
            "connection {} should be on worker {worker}: {logged:?}",
            self.connections
        );
        self.connections += 1;
        client
    }

    /// Connects and registers as `name`; each of `others` (already
    /// registered) reads the join announcement.
    fn join(&mut self, name: &str, others: &mut [Client]) -> Client {
        let mut client = self.newcomer();
        client.send(format!("{name}\r\n").as_bytes());
        assert_eq!(client.line_str(), welcome(name));
        for other in others {
            assert_eq!(other.line_str(), joined(name));
        }
        client
    }
}

#[test]
fn users_on_different_workers_see_each_others_lines_joins_and_leaves() {
    let mut chat = Chat::start(ROUND_ROBIN_2, 2);
    let mut users = Vec::new();
    // alice and carol on worker 0, bob and dave on worker 1.
    for name in ["alice", "bob", "carol", "dave"] {
        let user = chat.join(name, &mut users);
        users.push(user);
    }
    let names = ["alice", "bob", "carol", "dave"];
    for (speaker, name) in names.iter().enumerate() {
        let line = format!("h\u{e9}llo from {name} \u{2603}");
        users[speaker].send(format!("{line}\r\n").as_bytes());
        for (i, user) in users.iter_mut().enumerate() {
            if i != speaker {
                assert_eq!(user.line_str(), said(name, &line), "user {i}");
            }
        }
    }
    // Had dave got his own line back, he would read it before this.
    users[0].send(b"over\r\n");
    for user in &mut users[1..] {
        assert_eq!(user.line_str(), said("alice", "over"));
    }
    // bob (worker 1) leaves: everyone else, on both workers, is told.
    drop(users.remove(1));
    for user in &mut users {
        assert_eq!(user.line_str(), left("bob"));
    }
    // A user who never chose a name leaves unannounced.
    let nameless = chat.newcomer();
    drop(nameless);
    chat.server.wait_stderr("left without a name");
    users[2].send(b"still three of us\r\n");
    assert_eq!(users[0].line_str(), said("dave", "still three of us"));
    assert_eq!(users[1].line_str(), said("dave", "still three of us"));
}

#[test]
fn a_name_taken_on_one_worker_is_refused_on_the_other_and_free_once_its_holder_leaves() {
    let mut chat = Chat::start(ROUND_ROBIN_2, 2);
    let mut alice = chat.join("alice", &mut []); // worker 0
    let mut impostor = chat.newcomer(); // worker 1
    impostor.send(b"alice\r\n");
    assert_eq!(impostor.line_str(), TAKEN);
    impostor.send(b"alice\n");
    assert_eq!(impostor.line_str(), TAKEN);
    // Names are compared exactly.
    impostor.send(b"Alice\r\n");
    assert_eq!(impostor.line_str(), welcome("Alice"));
    assert_eq!(alice.line_str(), joined("Alice"));

    // A name taken on worker 1 is refused on worker 0 too.
    let mut third = chat.newcomer(); // worker 0
    third.send(b"Alice\r\n");
    assert_eq!(third.line_str(), TAKEN);

    // alice leaves: the name is free on either worker.
    drop(alice);
    assert_eq!(impostor.line_str(), left("alice"));
    let mut fourth = chat.newcomer(); // worker 1
    fourth.send(b"alice\r\n");
    assert_eq!(fourth.line_str(), welcome("alice"));
    assert_eq!(impostor.line_str(), joined("alice"));
    third.send(b"alice\r\n");
    assert_eq!(third.line_str(), TAKEN);
    third.send(b"carol\r\n");
    assert_eq!(third.line_str(), welcome("carol"));
    assert_eq!(impostor.line_str(), joined("carol"));
    assert_eq!(fourth.line_str(), joined("carol"));
}

#[test]
fn lines_sent_right_after_a_name_wait_for_its_answer_and_keep_their_order() {
    let mut chat = Chat::start(ROUND_ROBIN_2, 2);
    let mut alice = chat.join("alice", &mut []); // worker 0
                                                 // In one write: a taken name, a free one, then chat lines, all read
                                                 // while the names (on another thread) answer the first.
    let mut bob = chat.newcomer(); // worker 1
    bob.send(b"alice\r\nbob\r\none\r\ntwo\nthree\r\n");
    assert_eq!(bob.line_str(), TAKEN);
    assert_eq!(bob.line_str(), welcome("bob"));
    assert_eq!(alice.line_str(), joined("bob"));
    for line in ["one", "two", "three"] {
        assert_eq!(alice.line_str(), said("bob", line));
    }
    // Two who ask for the same free name at once: one gets it.
    let mut first = chat.newcomer(); // worker 0
    let mut second = chat.newcomer(); // worker 1
    first.send(b"carol\r\n");
    second.send(b"carol\r\n");
    let answers = [first.line_str(), second.line_str()];
    assert!(
        answers.contains(&welcome("carol")) && answers.contains(&TAKEN.to_owned()),
        "{answers:?}"
    );
}

#[test]
fn a_line_over_16384_bytes_closes_only_that_users_connection_on_any_worker() {
    let mut chat = Chat::start(ROUND_ROBIN_2, 2);
    let mut users = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let user = chat.join(name, &mut users);
        users.push(user);
    }
    // bob is on worker 1, the others on worker 0.
    let longest = "x".repeat(MAX_LINE);
    users[1].send(format!("{longest}\r\n").as_bytes());
    assert_eq!(users[0].line_str(), said("bob", &longest));
    assert_eq!(users[2].line_str(), said("bob", &longest));

    let _ = users[1].try_send(format!("{}\r\n", "y".repeat(MAX_LINE + 1)).as_bytes());
    users[1].expect_closed();
    drop(users.remove(1));
    assert_eq!(users[0].line_str(), left("bob"));
    assert_eq!(users[1].line_str(), left("bob"));
    users[1].send(b"what happened?\r\n");
    assert_eq!(users[0].line_str(), said("carol", "what happened?"));

    // Now one on worker 0, with a user on worker 1 to hear it.
    let mut dave = chat.join("dave", &mut users); // worker 1
    let _ = users[0].try_send("z".repeat(MAX_LINE + 1).as_bytes());
    users[0].expect_closed();
    assert_eq!(users[1].line_str(), left("alice"));
    assert_eq!(dave.line_str(), left("alice"));
    dave.send(b"bye alice\r\n");
    assert_eq!(users[1].line_str(), said("dave", "bye alice"));
}

#[test]
fn on_sigterm_drains_every_worker_and_exits_with_status_0() {
    let mut chat = Chat::start(ROUND_ROBIN_2, 2);
    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let user = chat.join(name, &mut users);
        users.push(user);
    }
    let mut nameless = chat.newcomer();
    users[1].send(b"last words\r\n");
    assert_eq!(users[0].line_str(), said("bob", "last words"));
    chat.server.terminate();
    for user in &mut users {
        user.expect_eof();
    }
    nameless.expect_eof();
    drop((users, nameless));
    chat.server.expect_clean_exit();
}

#[test]
fn with_threads_a_unix_socket_or_a_bad_option_is_a_usage_error() {
    for args in [
        &["unix:/tmp/chat-threads.sock", "--threads", "2"][..],
        &["127.0.0.1:0", "--threads", "0"],
        &["127.0.0.1:0", "--threads"],
        &["127.0.0.1:0", "--threads", "2", "--placement", "random"],
        &["127.0.0.1:0", "--placement", "least"],
    ] {
        let mut server = Proc::example(PACKAGE, "chat_server", args);
        server.wait_stderr("usage: chat_server [ENDPOINT] [--tls CERT KEY]");
        let status = server.wait_exit();
        assert_eq!(status.code(), Some(2), "{args:?}: {}", server.transcript());
    }
}

/// A blocking TLS client of `localhost`, every read and write bounded by
/// [`WAIT`].
struct TlsUser(BufReader<StreamOwned<ClientConnection, TcpStream>>);

impl TlsUser {
    fn connect(addr: SocketAddr, pem: &str) -> TlsUser {
        let certs = config::certs_from_pem(pem.as_bytes()).unwrap();
        let client = Arc::new(config::client_config_trusting(certs).unwrap());
        let tcp = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.set_write_timeout(Some(WAIT)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = ClientConnection::new(client, name).unwrap();
        TlsUser(BufReader::new(StreamOwned::new(tls, tcp)))
    }

    fn send(&mut self, data: &str) {
        let stream = self.0.get_mut();
        stream.write_all(data.as_bytes()).expect("send");
        stream.flush().expect("send");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.0.read_line(&mut line).expect("a line within WAIT");
        assert!(line.ends_with('\n'), "EOF instead of a line: {line:?}");
        line
    }
}

#[test]
fn with_tls_users_on_different_workers_chat() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = TempDir::new("chat-threads-tls");
    let pem = made.cert.pem();
    let cert = dir.write("cert.pem", &pem);
    let key = dir.write("key.pem", made.signing_key.serialize_pem());
    let mut args = ROUND_ROBIN_2.to_vec();
    args.extend(["--tls", cert.to_str().unwrap(), key.to_str().unwrap()]);
    let server = Proc::example(PACKAGE, "chat_server", &args);
    let addr = server.listening_addr();

    let mut alice = TlsUser::connect(addr, &pem); // worker 0
    assert_eq!(alice.line(), PROMPT);
    alice.send("alice\r\n");
    assert_eq!(alice.line(), welcome("alice"));
    let mut bob = TlsUser::connect(addr, &pem); // worker 1
    assert_eq!(bob.line(), PROMPT);
    bob.send("alice\n");
    assert_eq!(bob.line(), TAKEN);
    bob.send("bob\n");
    assert_eq!(bob.line(), welcome("bob"));
    assert_eq!(alice.line(), joined("bob"));
    alice.send("hi bob\r\n");
    assert_eq!(bob.line(), said("alice", "hi bob"));
    bob.send("hi alice\r\n");
    assert_eq!(alice.line(), said("bob", "hi alice"));
    server.wait_stderr("on worker 1");
}
