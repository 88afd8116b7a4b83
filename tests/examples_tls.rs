//! The `tls_echo_client` example, run as a child process (built with the
//! `tls` feature) against a twill TLS echo server that the test runs on
//! its own reactor: the lines it sends from its arguments or its standard
//! input come back and are printed, it logs what the handshake negotiated
//! (version, cipher suite, ALPN), and it exits with status 0 after a clean
//! close and 1 when the server's certificate is not to be trusted.
//!
//! Certificates are made by rcgen when the tests run and written to a
//! temporary folder. (`protocols/tests/examples_tls.rs` runs the client
//! against `chat_server --tls` as README.md does.)
#![cfg(feature = "tls")]

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use twill::tls::rustls::{self, ServerConfig};
use twill::tls::{config, HandshakeCompleted, StartTls, TlsAcceptor, TlsFactory};
use twill::{Bytes, Event, Protocol, Reactor, ReactorHandle, Reason, Transport};
use twill_test_support::files::TempDir;
use twill_test_support::process::{example_with_features, Proc};
use twill_test_support::reactor::serve;

/// The example's cargo package, and the features it needs.
const PACKAGE: &str = "twill";
const FEATURES: &[&str] = &["tls"];

/// How long the client may take for anything (it starts, handshakes,
/// sends and waits for the echo).
const CLIENT_WAIT: Duration = Duration::from_secs(15);

/// A certificate for `localhost` and its key: in PEM files for the client,
/// in memory for the server.
struct Certificate {
    dir: TempDir,
    cert: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl Certificate {
    fn localhost() -> Certificate {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = TempDir::new("tls-echo-client");
        let cert_pem = made.cert.pem();
        Certificate {
            cert: dir.write("cert.pem", &cert_pem),
            dir,
            cert_pem,
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    /// A server presenting this certificate, offering the `versions`.
    fn server(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> ServerConfig {
        config::server_builder(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                config::certs_from_pem(self.cert_pem.as_bytes()).unwrap(),
                config::key_from_pem(self.key_pem.as_bytes()).unwrap(),
            )
            .unwrap()
    }

    fn ca(&self) -> &str {
        self.cert.to_str().unwrap()
    }
}

/// What the server saw, shared with the test.
#[derive(Clone, Default)]
struct Seen(Rc<RefCell<Vec<String>>>);

/// The echo server's protocol; an end of input (the client's
/// `close_notify`) closes the connection once the echo is sent.
struct Echo {
    transport: Option<Transport>,
    seen: Seen,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        self.transport.as_ref().unwrap().write(data);
    }

    fn event_received(&mut self, event: Event) {
        if let Some(done) = event.downcast_ref::<HandshakeCompleted>() {
            let name = done.info.server_name.clone().unwrap_or_default();
            self.seen
                .0
                .borrow_mut()
                .push(format!("handshake for {name}"));
        }
    }

    fn eof_received(&mut self) -> bool {
        self.seen.0.borrow_mut().push("eof".into());
        false
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.seen.0.borrow_mut().push(format!("lost: {reason}"));
    }
}

/// Stops the reactor when the client thread is done, even if it panics.
struct StopOnDrop(ReactorHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Runs a TLS echo server with `server` on this thread's reactor while
/// `client` (on another thread, with the server's address) runs the
/// example; returns what the client returned and what the server saw.
fn with_echo_server<R: Send + 'static>(
    server: ServerConfig,
    client: impl FnOnce(String) -> R + Send + 'static,
) -> (R, Vec<String>) {
    // Built before the reactor's time limit starts: on a fresh checkout,
    // building every example of the package takes longer than a test's
    // reactor may run.
    twill_test_support::process::example_with_features(PACKAGE, FEATURES, "tls_echo_client");
    let reactor = Reactor::new().unwrap();
    let seen = Seen::default();
    let log = seen.clone();
    let factory = TlsFactory::new(StartTls::Server(TlsAcceptor::new(server)), move |_peer| {
        Echo {
            transport: None,
            seen: log.clone(),
        }
    });
    let result = serve(&reactor, factory, move |addr, handle| {
        let _stop = StopOnDrop(handle);
        client(addr.to_string())
    });
    let seen = seen.0.borrow().clone();
    (result, seen)
}

/// `tls_echo_client ARGS`, built with the `tls` feature.
fn tls_echo_client(args: &[&str]) -> Proc {
    Proc::example_with_features(PACKAGE, FEATURES, "tls_echo_client", args).wait_limit(CLIENT_WAIT)
}

#[test]
fn tls_echo_client_sends_its_arguments_prints_the_echo_and_what_was_negotiated() {
    let cert = Certificate::localhost();
    let mut server = cert.server(rustls::ALL_VERSIONS);
    server.alpn_protocols = vec![b"twill-echo".to_vec()];
    let ca = cert.ca().to_owned();
    let ((status, stdout, negotiated), seen) = with_echo_server(server, move |addr| {
        let mut client = tls_echo_client(&[
            "--ca",
            &ca,
            "--server-name",
            "localhost",
            "--alpn",
            "other",
            "--alpn",
            "twill-echo",
            &addr,
            "hello over TLS",
            "and a second line",
        ]);
        let negotiated = client.wait_stderr("TLS handshake completed");
        client.wait_stderr("connection closed: connection was closed cleanly");
        let status = client.wait_exit();
        (status, client.stdout_text(), negotiated)
    });
    assert!(status.success(), "tls_echo_client exited with {status}");
    assert_eq!(stdout, "hello over TLS\nand a second line\n");
    assert!(
        negotiated.ends_with(
            "TLS handshake completed: TLS 1.3, TLS13_AES_256_GCM_SHA384, ALPN: twill-echo, \
             server name: localhost"
        ),
        "{negotiated}"
    );
    // SNI named localhost; the client's close_notify was an end of input.
    assert_eq!(
        seen,
        [
            "handshake for localhost",
            "eof",
            "lost: connection was closed cleanly"
        ]
    );
}

#[test]
fn tls_echo_client_sends_standard_input_line_by_line_until_it_ends() {
    let cert = Certificate::localhost();
    let server = cert.server(rustls::ALL_VERSIONS);
    let ca = cert.ca().to_owned();
    // Enough to go past the connection's high watermark (64 KiB) while
    // the echo comes back.
    let input: String = (0..3000)
        .map(|i| format!("line {i:04} {}\n", "x".repeat(i % 97)))
        .collect();
    let expected = input.clone();
    let ((status, stdout, stderr), _seen) = with_echo_server(server, move |addr| {
        let mut command =
            std::process::Command::new(example_with_features(PACKAGE, FEATURES, "tls_echo_client"));
        command.args(["--ca", &ca, "--server-name", "localhost", &addr]);
        let mut client = Proc::start_with_input("tls_echo_client", command, input.as_bytes())
            .wait_limit(CLIENT_WAIT);
        client.wait_stderr("connection closed");
        let status = client.wait_exit();
        (status, client.stdout_text(), client.stderr_text())
    });
    assert!(status.success(), "exited with {status}:\n{stderr}");
    assert!(
        stdout == expected,
        "the echo differs from the input ({} bytes for {})",
        stdout.len(),
        expected.len()
    );
    // No ALPN offered, none agreed.
    assert!(stderr.contains("ALPN: none"), "{stderr}");
}

#[test]
fn tls_echo_client_reports_tls_1_2_when_the_server_offers_only_that() {
    let cert = Certificate::localhost();
    let server = cert.server(&[&rustls::version::TLS12]);
    let ca = cert.ca().to_owned();
    let ((status, negotiated), _seen) = with_echo_server(server, move |addr| {
        let mut client = tls_echo_client(&["--ca", &ca, "--server-name", "localhost", &addr, "x"]);
        let negotiated = client.wait_stderr("TLS handshake completed");
        (client.wait_exit(), negotiated)
    });
    assert!(status.success(), "exited with {status}");
    // rcgen's keys are ECDSA P-256.
    assert!(
        negotiated.contains("TLS 1.2, TLS_ECDHE_ECDSA_WITH_"),
        "{negotiated}"
    );
}

#[test]
fn tls_echo_client_refuses_a_certificate_it_does_not_trust_or_for_another_name_and_exits_with_1() {
    let cert = Certificate::localhost();
    let other = Certificate::localhost();
    let (cert_ca, other_ca) = (cert.ca().to_owned(), other.ca().to_owned());
    let (outcomes, seen) = with_echo_server(cert.server(rustls::ALL_VERSIONS), move |addr| {
        let cases = [
            // Trusts another certificate.
            vec!["--ca", &other_ca, "--server-name", "localhost"],
            // Trusts this one, but for a name it is not for: by default,
            // ADDR's host, 127.0.0.1.
            vec!["--ca", &cert_ca],
        ];
        cases
            .into_iter()
            .map(|mut args| {
                args.extend([addr.as_str(), "never echoed"]);
                let mut client = tls_echo_client(&args);
                let error = client.wait_stderr("connection ended");
                (client.wait_exit(), error, client.stdout_text())
            })
            .collect::<Vec<_>>()
    });
    for (status, _error, stdout) in &outcomes {
        assert_eq!(status.code(), Some(1), "exited with {status}");
        assert_eq!(stdout, "", "nothing was sent, nothing came back");
    }
    assert!(
        outcomes[0].1.contains("invalid peer certificate"),
        "{}",
        outcomes[0].1
    );
    assert!(
        outcomes[1].1.contains("not valid for name \"127.0.0.1\""),
        "{}",
        outcomes[1].1
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
    for lost in seen {
        assert!(
            lost.starts_with("lost: protocol failed: TLS handshake failed"),
            "{lost}"
        );
    }
}

#[test]
fn tls_echo_client_with_a_bad_command_line_prints_its_usage_and_exits_with_2() {
    let cert = Certificate::localhost();
    let missing = cert.dir.path().join("missing.pem");
    let mut client = tls_echo_client(&["--ca"]);
    client.wait_stderr("--ca takes a value");
    client.wait_stderr("usage: tls_echo_client");
    assert_eq!(client.wait_exit().code(), Some(2));
    // A CA file that is not there: the error names it.
    let mut client = tls_echo_client(&["--ca", missing.to_str().unwrap(), "127.0.0.1:1", "x"]);
    client.wait_stderr("missing.pem: No such file");
    assert_eq!(client.wait_exit().code(), Some(1));
}
