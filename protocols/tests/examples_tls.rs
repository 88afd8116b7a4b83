//! The chat examples with `--tls CERT KEY`, run as child processes against
//! real loopback sockets: the chat of `examples.rs`, over TLS, with rustls
//! clients in the test, and a client that does not speak TLS, for each of
//! `chat_server`, `chat_protocol` and `async_chat` (a module of tests named
//! after each); and README.md's "TLS" commands as written there (its
//! openssl certificate, `openssl s_client`, `tls_echo_client`), with
//! `chat_server` as README runs it.
//!
//! Certificates are made by rcgen when the tests run (or by README's
//! openssl command) and written to a temporary folder.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use twill::tls::config;
use twill::tls::rustls::{ClientConfig, ClientConnection, StreamOwned};
use twill::tls::ServerName;
use twill_test_support::client::{Client, WAIT};
use twill_test_support::files::TempDir;
use twill_test_support::process::Proc;

/// The examples' cargo package (its dev-dependency on twill turns on
/// twill's `tls` feature, so the chat examples need none of their own).
const PACKAGE: &str = "twill-protocols";

const PROMPT: &str = "What's your name?\r\n";

fn welcome(name: &str) -> String {
    format!("Welcome, {name}!\r\n")
}

fn said(name: &str, line: &str) -> String {
    format!("<{name}> {line}\r\n")
}

fn joined(name: &str) -> String {
    format!("* {name} has joined\r\n")
}

fn left(name: &str) -> String {
    format!("* {name} has left\r\n")
}

/// A certificate for `localhost` and its key, in PEM files.
struct Certificate {
    _dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    pem: String,
}

impl Certificate {
    fn localhost() -> Certificate {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = TempDir::new("chat-tls");
        let pem = made.cert.pem();
        Certificate {
            cert: dir.write("cert.pem", &pem),
            key: dir.write("key.pem", made.signing_key.serialize_pem()),
            _dir: dir,
            pem,
        }
    }

    /// A client that trusts this certificate only.
    fn client(&self) -> Arc<ClientConfig> {
        let certs = config::certs_from_pem(self.pem.as_bytes()).unwrap();
        Arc::new(config::client_config_trusting(certs).unwrap())
    }
}

/// The chat example `chat`, as `chat 127.0.0.1:0 --tls CERT KEY`.
fn tls_chat(chat: &str, cert: &Certificate) -> (Proc, SocketAddr) {
    let server = Proc::example(
        PACKAGE,
        chat,
        &[
            "127.0.0.1:0",
            "--tls",
            cert.cert.to_str().unwrap(),
            cert.key.to_str().unwrap(),
        ],
    );
    let addr = server.listening_addr();
    (server, addr)
}

/// A blocking TLS client: rustls's `StreamOwned` over a std `TcpStream`,
/// every read and write bounded by [`WAIT`].
struct TlsUser {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsUser {
    /// Connects to `addr` as a client of `localhost`; the handshake runs
    /// with the first read or write.
    fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsUser {
        let tcp = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.set_write_timeout(Some(WAIT)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = ClientConnection::new(config, name).unwrap();
        TlsUser {
            reader: BufReader::new(StreamOwned::new(tls, tcp)),
        }
    }

    /// Connects and reads the prompt.
    fn newcomer(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsUser {
        let mut user = TlsUser::connect(addr, config);
        assert_eq!(user.line(), PROMPT);
        user
    }

    fn send(&mut self, data: &str) {
        let stream = self.reader.get_mut();
        stream.write_all(data.as_bytes()).expect("send");
        stream.flush().expect("send");
    }

    /// The next line, with its line ending.
    fn line(&mut self) -> String {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) if line.ends_with(b"\n") => String::from_utf8(line).expect("UTF-8 line"),
            Ok(_) => panic!(
                "EOF instead of a line (got {:?})",
                String::from_utf8_lossy(&line)
            ),
            Err(err) => panic!(
                "no line within {WAIT:?}: {err} (got {:?})",
                String::from_utf8_lossy(&line)
            ),
        }
    }

    /// What TLS version the handshake agreed.
    fn version(&self) -> Option<twill::tls::rustls::ProtocolVersion> {
        self.reader.get_ref().conn.protocol_version()
    }

    /// Leaves cleanly: `close_notify`, then the TCP connection closes.
    fn close(mut self) {
        let stream = self.reader.get_mut();
        stream.conn.send_close_notify();
        stream.flush().expect("send close_notify");
    }
}

// One module per chat example, each running every specification below.
twill_test_support::tests_per_example!(
    [chat_server, chat_protocol, async_chat]
    [
        asks_names_announces_joins_relays_lines_and_announces_leaves,
        announces_a_user_whose_connection_is_cut_without_close_notify,
        drops_a_client_that_does_not_speak_tls_and_chats_on,
        fails_only_the_handshake_of_a_client_that_distrusts_its_certificate,
    ]
);

fn asks_names_announces_joins_relays_lines_and_announces_leaves(chat: &str) {
    let cert = Certificate::localhost();
    let (server, addr) = tls_chat(chat, &cert);

    let mut alice = TlsUser::newcomer(addr, cert.client());
    assert_eq!(
        alice.version(),
        Some(twill::tls::rustls::ProtocolVersion::TLSv1_3)
    );
    alice.send("alice\r\n");
    assert_eq!(alice.line(), welcome("alice"));

    let mut bob = TlsUser::newcomer(addr, cert.client());
    // A taken name is refused over TLS as over TCP.
    bob.send("alice\n");
    assert_eq!(bob.line(), "Name taken, please choose another.\r\n");
    bob.send("bob\n");
    assert_eq!(bob.line(), welcome("bob"));
    assert_eq!(alice.line(), joined("bob"));

    alice.send("h\u{e9}llo bob \u{2603}\r\n");
    assert_eq!(bob.line(), said("alice", "h\u{e9}llo bob \u{2603}"));
    bob.send("hi alice\n");
    // Had bob got his own line back, or alice hers, it would come first.
    assert_eq!(alice.line(), said("bob", "hi alice"));
    alice.send("bye\r\n");
    assert_eq!(bob.line(), said("alice", "bye"));

    bob.close();
    assert_eq!(alice.line(), left("bob"));
    server.wait_stderr("bob left");
    // The name is free again.
    let mut bob_again = TlsUser::newcomer(addr, cert.client());
    bob_again.send("bob\r\n");
    assert_eq!(bob_again.line(), welcome("bob"));
    assert_eq!(alice.line(), joined("bob"));
}

fn announces_a_user_whose_connection_is_cut_without_close_notify(chat: &str) {
    let cert = Certificate::localhost();
    let (server, addr) = tls_chat(chat, &cert);
    let mut alice = TlsUser::newcomer(addr, cert.client());
    alice.send("alice\n");
    assert_eq!(alice.line(), welcome("alice"));
    let mut bob = TlsUser::newcomer(addr, cert.client());
    bob.send("bob\n");
    assert_eq!(bob.line(), welcome("bob"));
    assert_eq!(alice.line(), joined("bob"));

    // The TCP connection closes with no close_notify first.
    drop(bob);
    assert_eq!(alice.line(), left("bob"));
    let line = server.wait_stderr("bob left");
    assert!(line.contains("close_notify"), "{line}");
}

fn drops_a_client_that_does_not_speak_tls_and_chats_on(chat: &str) {
    let cert = Certificate::localhost();
    let (server, addr) = tls_chat(chat, &cert);
    let mut alice = TlsUser::newcomer(addr, cert.client());
    alice.send("alice\n");
    assert_eq!(alice.line(), welcome("alice"));

    let mut plain = Client::connect(addr);
    plain.send(b"mallory\r\n");
    // No prompt in the clear: the server answers with a TLS alert, if
    // anything, and closes.
    let mut got = Vec::new();
    let _ = plain.stream().read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("name"),
        "plaintext reply: {got:?}"
    );
    server.wait_stderr("does not speak TLS");

    let mut bob = TlsUser::newcomer(addr, cert.client());
    bob.send("bob\n");
    assert_eq!(bob.line(), welcome("bob"));
    assert_eq!(alice.line(), joined("bob"));
}

/// What `chat` logs when a handshake fails: the callback forms see the
/// connection from its start and log its end; the async form's tasks start
/// once the handshake is done, and twill's stream layer logs the failure.
fn handshake_failure_log(chat: &str) -> &'static str {
    if chat == "async_chat" {
        "TLS handshake with"
    } else {
        "left without a name"
    }
}

fn fails_only_the_handshake_of_a_client_that_distrusts_its_certificate(chat: &str) {
    let cert = Certificate::localhost();
    let (server, addr) = tls_chat(chat, &cert);
    // A client that trusts another certificate fails the handshake.
    let other = Certificate::localhost();
    let mut wary = TlsUser::connect(addr, other.client());
    let mut line = String::new();
    let err = wary
        .reader
        .read_line(&mut line)
        .expect_err("the handshake must fail");
    // (Another certificate for the same name: its signature does not
    // verify.)
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    server.wait_stderr(handshake_failure_log(chat));

    let mut alice = TlsUser::newcomer(addr, cert.client());
    alice.send("alice\n");
    assert_eq!(alice.line(), welcome("alice"));
}

// ---------------------------------------------------------------------------
// README.md's "TLS" section, as written there
// ---------------------------------------------------------------------------

/// The words of the first command in README.md that starts with `prefix`.
fn readme_command(prefix: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("read README.md");
    let line = readme
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("README.md has no command starting with {prefix:?}"));
    line.split_whitespace().map(str::to_owned).collect()
}

/// README's command with its address (127.0.0.1:8007) replaced by `addr`.
fn at(words: Vec<String>, addr: SocketAddr) -> Vec<String> {
    assert!(
        words.iter().any(|word| word == "127.0.0.1:8007"),
        "{words:?}"
    );
    words
        .into_iter()
        .map(|word| {
            if word == "127.0.0.1:8007" {
                addr.to_string()
            } else {
                word
            }
        })
        .collect()
}

fn has_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// README's openssl certificate, made in a temporary folder.
fn readme_certificate() -> TempDir {
    let dir = TempDir::new("readme-tls");
    let words = readme_command("openssl req -x509");
    let out = Command::new(&words[0])
        .args(&words[1..])
        .current_dir(dir.path())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{words:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn readme_openssl_certificate_serves_the_chat_to_s_client_and_to_tls_echo_client() {
    if !has_openssl() {
        eprintln!("skipped: no openssl on this machine to run README.md's commands");
        return;
    }
    let dir = readme_certificate();
    // README's chat_server command, on a free port.
    let words = readme_command("cargo run -p twill-protocols --example chat_server --");
    let dashes = words.iter().position(|w| w == "--").unwrap();
    let mut args = vec!["127.0.0.1:0".to_owned()];
    args.extend(words[dashes + 1..].iter().map(|file| {
        // cert.pem and key.pem, in the folder openssl made them in.
        if file.ends_with(".pem") {
            dir.path().join(file).to_str().unwrap().to_owned()
        } else {
            file.clone()
        }
    }));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Proc::example(PACKAGE, "chat_server", &args);
    let addr = server.listening_addr();

    // A client of ours that trusts README's certificate.
    let pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
    let trusting =
        Arc::new(config::client_config_trusting(config::certs_from_pem(&pem).unwrap()).unwrap());
    let mut alice = TlsUser::newcomer(addr, trusting);
    alice.send("alice\n");
    assert_eq!(alice.line(), welcome("alice"));

    // openssl s_client as README runs it, typing a name and a line.
    let words = at(readme_command("openssl s_client"), addr);
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    let s_client = Proc::start_with_input("openssl s_client", command, b"olivia\nhi alice\n")
        .wait_limit(Duration::from_secs(20));
    s_client.wait_stdout("What's your name?");
    s_client.wait_stdout("Welcome, olivia!");
    assert_eq!(alice.line(), joined("olivia"));
    assert_eq!(alice.line(), said("olivia", "hi alice"));
    // s_client -quiet ignores the end of its input and stays.
    drop(s_client);
    assert_eq!(alice.line(), left("olivia"));

    // tls_echo_client as README runs it (from README's folder, where
    // cert.pem is), with a name and a line as arguments.
    let words = at(
        readme_command("cargo run --example tls_echo_client --features tls"),
        addr,
    );
    let dashes = words.iter().position(|w| w == "--").unwrap();
    let mut command = Command::new(twill_test_support::process::example_with_features(
        "twill",
        &["tls"],
        "tls_echo_client",
    ));
    command
        .args(&words[dashes + 1..])
        .args(["tessa", "hello from tessa"])
        .current_dir(dir.path());
    let mut client = Proc::start("tls_echo_client", command).wait_limit(Duration::from_secs(20));
    let done = client.wait_stderr("TLS handshake completed");
    assert!(done.contains("TLS 1.3"), "{done}");
    client.wait_stdout("What's your name?");
    client.wait_stdout("Welcome, tessa!");
    let status = client.wait_exit();
    assert!(
        status.success(),
        "tls_echo_client exited with {status}:\n{}",
        client.transcript()
    );
    assert_eq!(alice.line(), joined("tessa"));
    assert_eq!(alice.line(), said("tessa", "hello from tessa"));
    assert_eq!(alice.line(), left("tessa"));
}
