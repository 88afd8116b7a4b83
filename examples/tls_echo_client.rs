//! A TLS client for an echo server, or any line server: connects with TLS,
//! says what the handshake negotiated, sends lines, prints what comes back,
//! and exits once the server has closed the connection.
//!
//! ```text
//! cargo run --example tls_echo_client --features tls -- [OPTIONS] [ENDPOINT [LINE...]]
//!
//!   ENDPOINT            an address (127.0.0.1:8007, the default) or an
//!                       endpoint string (tcp:host=127.0.0.1:port=8007,
//!                       unix:/tmp/tls_echo.sock, tls:localhost:8007:trustRoots=ca.pem)
//!   LINE...             lines to send, each with a \n; without any, the lines
//!                       of standard input, sent as they are typed
//!   --ca FILE           trust the certificates in this PEM file (a private CA,
//!                       or the server's self-signed certificate) instead of
//!                       the platform's roots
//!   --server-name NAME  the name the server's certificate must hold, also
//!                       sent as SNI (default: ENDPOINT's host; localhost for
//!                       a Unix socket)
//!   --alpn PROTOCOL     offer this application protocol by ALPN (repeatable)
//! ```
//!
//! The connection goes where [`Reactor::client_from_string`] takes
//! `ENDPOINT`, and TLS runs over it, TCP or Unix socket alike, with the
//! options above. A `tls:` endpoint string carries its own TLS settings
//! (`trustRoots=`, `hostname=`), so it takes none of the options.
//!
//! With the chat server over TLS and the certificate README.md's "TLS"
//! section makes (its name is `localhost`, and the server listens on
//! 127.0.0.1):
//!
//! ```text
//! cargo run -p twill-protocols --example chat_server -- --tls cert.pem key.pem
//! cargo run --example tls_echo_client --features tls -- --ca cert.pem --server-name localhost 127.0.0.1:8007
//! ```
//!
//! Once its lines are sent (or standard input ends), the client closes its
//! side of the connection with TLS's `close_notify` and prints what still
//! comes back until the server closes too, as an echo server does when its
//! client's input ends; a server that keeps its side open is left after 5
//! seconds. The exit status is 0 after a clean close and 1 otherwise (a
//! failed handshake, a connection refused or cut short).

use std::cell::Cell;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use twill::defer::{defer_to_thread, Deferred, Failure};
use twill::net::endpoint::{parse_client_or_addr, ClientDescription};
use twill::tls::rustls::ProtocolVersion;
use twill::tls::{config, HandshakeCompleted, StartTls, TlsFactory, TlsInfo};
use twill::{
    Bytes, ClientFactory, Connector, Event, Factory, Protocol, Reactor, Reason, Transport,
};

/// How long the server may keep its side open once ours is closed.
const GRACE: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: tls_echo_client [--ca FILE] [--server-name NAME] [--alpn PROTOCOL]... \
                     [ENDPOINT [LINE...]]   (ENDPOINT: an address (127.0.0.1:8007, the default) \
                     or an endpoint string (tcp:host=127.0.0.1:port=8007, unix:/tmp/tls_echo.sock, \
                     tls:localhost:8007:trustRoots=ca.pem))";

/// What to send: the command line's lines, or standard input's.
#[derive(Clone)]
enum Input {
    Lines(Vec<String>),
    Stdin,
}

struct EchoClient {
    input: Input,
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, transport: &Transport) {
        // Written before the handshake completes, this is sent right
        // after it, encrypted.
        match &self.input {
            Input::Lines(lines) => {
                for line in lines {
                    transport.write(format!("{line}\n"));
                }
                end_input(transport);
            }
            Input::Stdin => send_stdin(transport.clone()),
        }
    }

    fn event_received(&mut self, event: Event) {
        if let Some(done) = event.downcast_ref::<HandshakeCompleted>() {
            log::info!("TLS handshake completed: {}", negotiated(&done.info));
        }
    }

    fn data_received(&mut self, data: Bytes) {
        let mut stdout = io::stdout().lock();
        // A closed stdout (`| head`) is no reason to stop reading.
        let _ = stdout.write_all(&data).and_then(|()| stdout.flush());
    }

    fn eof_received(&mut self) -> bool {
        log::info!("the server closed its side (close_notify)");
        false
    }
}

/// Closes our side of the connection (`close_notify`, then a TCP FIN) and
/// gives the server [`GRACE`] to close its own.
fn end_input(transport: &Transport) {
    transport.write_eof();
    let transport = transport.clone();
    twill::call_later(GRACE, move || {
        log::warn!("the server kept the connection open {GRACE:?} after our input ended");
        transport.lose_connection();
    });
}

/// Sends standard input line by line as it is typed. Reading blocks, so
/// each read runs on a thread of the pool (Twisted's `deferToThread`) and
/// the reactor writes what it read; while the server is slow to take it
/// (the transport is not writable), reading waits.
fn send_stdin(transport: Transport) {
    twill::spawn(async move {
        loop {
            let read = defer_to_thread(|| {
                let mut line = Vec::new();
                io::stdin().lock().read_until(b'\n', &mut line)?;
                Ok::<_, Failure>(line)
            })
            .await;
            if transport.is_closing() {
                // The handshake failed, or the server closed: nothing more
                // goes out.
                return;
            }
            match read {
                Ok(line) if !line.is_empty() => transport.write(line),
                Ok(_) => break,
                Err(failure) => {
                    log::error!("could not read standard input: {failure}");
                    break;
                }
            }
            if !transport.is_writable() {
                let writable = Deferred::new();
                let resolver = writable.resolver();
                transport.when_writable(move || resolver.callback(()));
                let _ = writable.await;
            }
        }
        end_input(&transport);
    });
}

/// "TLS 1.3, TLS13_AES_256_GCM_SHA384, ALPN: h2", and the server name if
/// the connection knows it.
fn negotiated(info: &TlsInfo) -> String {
    let version = match info.protocol_version {
        Some(ProtocolVersion::TLSv1_2) => "TLS 1.2".to_owned(),
        Some(ProtocolVersion::TLSv1_3) => "TLS 1.3".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown version".to_owned(),
    };
    let cipher = info.cipher_suite.map_or_else(
        || "unknown cipher suite".to_owned(),
        |suite| format!("{:?}", suite.suite()),
    );
    let alpn = info.alpn_protocol.as_deref().map_or_else(
        || "none".to_owned(),
        |protocol| String::from_utf8_lossy(protocol).into_owned(),
    );
    let mut negotiated = format!("{version}, {cipher}, ALPN: {alpn}");
    if let Some(name) = &info.server_name {
        negotiated.push_str(&format!(", server name: {name}"));
    }
    negotiated
}

/// Builds the one connection's protocol and stops the reactor when it is
/// over, remembering whether it went well.
struct OneConnection {
    input: Input,
    failed: Rc<Cell<bool>>,
}

impl Factory for OneConnection {
    type Protocol = EchoClient;

    fn build_protocol(&mut self, peer: twill::Address) -> Option<EchoClient> {
        log::info!("connected to {peer}");
        Some(EchoClient {
            input: self.input.clone(),
        })
    }
}

impl ClientFactory for OneConnection {
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        log::error!("connection failed: {reason}");
        self.failed.set(true);
        twill::stop();
    }

    fn client_connection_lost(&mut self, _connector: &Connector, reason: &Reason) {
        if reason.is_clean() {
            log::info!("connection closed: {reason}");
        } else {
            log::error!("connection ended: {reason}");
            self.failed.set(true);
        }
        twill::stop();
    }
}

/// The command line.
struct Args {
    ca: Option<String>,
    server_name: Option<String>,
    alpn: Vec<String>,
    endpoint: String,
    description: ClientDescription,
    input: Input,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut ca = None;
    let mut server_name = None;
    let mut alpn = Vec::new();
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} takes a value"));
        match arg.as_str() {
            "--ca" => ca = Some(value("--ca")?),
            "--server-name" => server_name = Some(value("--server-name")?),
            "--alpn" => alpn.push(value("--alpn")?),
            "-h" | "--help" => return Err(String::new()),
            "--" => positional.extend(args.by_ref()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let endpoint = positional.next().unwrap_or_else(|| "127.0.0.1:8007".into());
    let description = parse_client_or_addr(&endpoint).map_err(|err| err.to_string())?;
    let tls_options = ca.is_some() || server_name.is_some() || !alpn.is_empty();
    if tls_options && matches!(description, ClientDescription::Tls { .. }) {
        return Err(format!(
            "{endpoint:?} carries its own TLS settings: --ca, --server-name and --alpn \
             go with a tcp: or unix: endpoint"
        ));
    }
    let lines: Vec<String> = positional.collect();
    Ok(Args {
        ca,
        server_name,
        alpn,
        endpoint,
        description,
        input: if lines.is_empty() {
            Input::Stdin
        } else {
            Input::Lines(lines)
        },
    })
}

fn run(args: Args) -> io::Result<bool> {
    let reactor = Reactor::new()?;
    let failed = Rc::new(Cell::new(false));
    let factory = OneConnection {
        input: args.input,
        failed: failed.clone(),
    };
    let default_server_name = match &args.description {
        ClientDescription::Tcp { host, .. } => host.as_str(),
        ClientDescription::Unix { .. } => "localhost",
        ClientDescription::Tls { .. } => {
            reactor.client_from_string(&args.endpoint, factory)?;
            reactor.run()?;
            return Ok(!failed.get());
        }
    };
    let mut client = match &args.ca {
        Some(file) => config::certs_from_pem_file(file)
            .and_then(config::client_config_trusting)
            .map_err(|err| io::Error::new(err.kind(), format!("{file}: {err}")))?,
        None => config::client_config_with_platform_roots()?,
    };
    client.alpn_protocols = args.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let server_name = args.server_name.as_deref().unwrap_or(default_server_name);
    let side = StartTls::client(client, server_name)?;
    reactor.client_from_string(&args.endpoint, TlsFactory::new(side, factory))?;
    reactor.run()?;
    Ok(!failed.get())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("tls_echo_client: {err}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("tls_echo_client: {err}");
            ExitCode::FAILURE
        }
    }
}
