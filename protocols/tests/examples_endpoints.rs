//! The twill-protocols examples take an endpoint string where they took an
//! address: each chat serves over a Unix socket (`unix:PATH`) and removes
//! the socket file when stopped, and an endpoint string that does not parse
//! is a bad command line (status 2) whose error names the field at fault.
//!
//! Each test has a temporary folder of its own for its socket; every wait
//! is bounded, and children are killed when a test ends, pass or fail.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use twill_test_support::client::WAIT;
use twill_test_support::files::TempDir;
use twill_test_support::process::Proc;

/// The examples' cargo package.
const PACKAGE: &str = "twill-protocols";

twill_test_support::tests_per_example!(
    [chat_server, chat_protocol, async_chat]
    [
        chats_over_a_unix_socket_and_removes_it_on_sigterm,
        a_bad_endpoint_string_exits_with_status_2_naming_the_field,
    ]
);

/// A chat user on a Unix socket, reading line by line with a timeout.
struct UnixUser {
    reader: BufReader<UnixStream>,
}

impl UnixUser {
    fn connect(path: &Path) -> UnixUser {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|err| panic!("connect to {}: {err}", path.display()));
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        UnixUser {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, line: &str) {
        self.reader
            .get_mut()
            .write_all(line.as_bytes())
            .expect("send a line");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a line");
        line
    }

    fn expect_eof(&mut self) {
        let mut rest = String::new();
        match self.reader.read_line(&mut rest) {
            Ok(0) => {}
            Ok(_) => panic!("expected the end of the connection, got {rest:?}"),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
            Err(err) => panic!("expected the end of the connection: {err}"),
        }
    }
}

/// Connects a user to the chat on `path` and registers `name`.
fn join(path: &Path, name: &str) -> UnixUser {
    let mut user = UnixUser::connect(path);
    assert_eq!(user.line(), "What's your name?\r\n");
    user.send(&format!("{name}\n"));
    assert_eq!(user.line(), format!("Welcome, {name}!\r\n"));
    user
}

fn chats_over_a_unix_socket_and_removes_it_on_sigterm(chat: &str) {
    let dir = TempDir::new("chat-unix");
    let socket = dir.path().join("chat.sock");
    let endpoint = format!("unix:{}", socket.display());
    let mut server = Proc::example(PACKAGE, chat, &[&endpoint]);
    let listening = server.wait_stderr("listening on ");
    assert!(
        listening.ends_with(&format!("listening on {endpoint}")),
        "{listening:?}"
    );
    assert!(socket.exists(), "no socket file at {}", socket.display());

    let mut alice = join(&socket, "alice");
    let mut bob = join(&socket, "bob");
    assert_eq!(alice.line(), "* bob has joined\r\n");
    alice.send("hello, bob\r\n");
    assert_eq!(bob.line(), "<alice> hello, bob\r\n");
    bob.send("hello, alice\n");
    assert_eq!(alice.line(), "<bob> hello, alice\r\n");

    server.terminate();
    alice.expect_eof();
    bob.expect_eof();
    server.expect_clean_exit();
    assert!(
        !socket.exists(),
        "{} is still there after the server stopped",
        socket.display()
    );
}

fn a_bad_endpoint_string_exits_with_status_2_naming_the_field(chat: &str) {
    let mut server = Proc::example(PACKAGE, chat, &["tcp:80x"]);
    let error = server.wait_stderr("tcp:80x");
    assert!(error.contains("field port"), "{error:?}");
    server.wait_stderr(&format!("usage: {chat} [ENDPOINT]"));
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(2), "{}", server.transcript());
}
