//! Rust peers for the TLS tests over loopback: certificates made with
//! rcgen when the tests run, raw clients (a std `TcpStream`, with rustls
//! on top when they speak TLS) for other threads, a server protocol that
//! logs what it sees, and reasons described with the `TlsError` inside.
//!
//! Every client read and write is bounded by the socket timeouts of
//! `twill_test_support::pressure::connect` ([`WAIT`]); every reactor run by
//! the watchdog of `twill_test_support::reactor::run`.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use twill::tls::rustls::{self, ClientConfig, ClientConnection, ServerConfig, StreamOwned};
use twill::tls::{config, CertificateDer, HandshakeCompleted, PrivateKeyDer, TlsError};
use twill::transport::WriteBufferFull;
use twill::{Bytes, Event, Factory, Panicked, Protocol, Reactor, ReactorHandle, Reason, Transport};
use twill_test_support::client::WAIT;
use twill_test_support::events::Log;

/// A certificate authority made for one test, and the certificates it
/// issues.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate chain (its own certificate first) and its key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    /// The CA's own certificate, to trust.
    pub fn ca_cert(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A certificate for `names` signed by this CA, after `edit` had its
    /// say on the parameters (a validity period in the past, say).
    pub fn issue(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "twill test");
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (
            vec![cert.der().clone(), self.ca_cert()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    /// A server presenting a certificate for `localhost` from this CA.
    pub fn server_config(&self) -> ServerConfig {
        let (chain, key) = self.issue(&["localhost"], |_| {});
        config::server_config(chain, key).unwrap()
    }

    /// A client trusting this CA only.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::new(config::client_config_trusting(vec![self.ca_cert()]).unwrap())
    }
}

/// A rustls client over a blocking socket.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A rustls client session for `localhost`.
pub fn client_session(config: &Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap()
}

/// The first flight of a real client: a ClientHello, as rustls writes it.
pub fn client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let mut session = client_session(config);
    let mut hello = Vec::new();
    while session.wants_write() {
        session.write_tls(&mut hello).unwrap();
    }
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello
}

/// Completes a TLS handshake as a client over `sock`.
pub fn handshake<S: Read + Write>(
    sock: S,
    config: &Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, S> {
    finish_handshake(client_session(config), sock)
}

/// Completes the handshake `session` started over `sock`.
pub fn finish_handshake<S: Read + Write>(
    mut session: ClientConnection,
    mut sock: S,
) -> StreamOwned<ClientConnection, S> {
    while session.is_handshaking() {
        session
            .complete_io(&mut sock)
            .unwrap_or_else(|err| panic!("client handshake failed: {err}"));
    }
    StreamOwned::new(session, sock)
}

/// Connects to `addr` (with [`WAIT`] as every timeout) and completes a
/// TLS handshake.
pub fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsStream {
    handshake(twill_test_support::pressure::connect(addr), config)
}

/// Writes `message` and reads it back from an echo server.
pub fn echo(stream: &mut impl ReadWrite, message: &[u8]) {
    stream.write_all(message).expect("write to the echo server");
    stream.flush().expect("flush to the echo server");
    let mut back = vec![0; message.len()];
    stream
        .read_exact(&mut back)
        .unwrap_or_else(|err| panic!("no echo within {WAIT:?}: {err}"));
    assert_eq!(back, message);
}

/// What a client's TLS runs over: a socket, or a [`Tap`] on one.
pub trait Socket: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for Tap {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// A byte stream both ways.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Sends `close_notify`, shuts the writing side (FIN), and reads what is
/// left: the server's own `close_notify` makes this a clean EOF.
pub fn close_cleanly<S: Socket>(
    mut stream: StreamOwned<ClientConnection, S>,
) -> io::Result<Vec<u8>> {
    stream.conn.send_close_notify();
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut stream.sock)?;
    }
    stream.sock.tcp().shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).map(|_| rest)
}

/// Sets `SO_LINGER` to zero, so closing `sock` sends a reset.
pub fn linger_zero(sock: &TcpStream) {
    socket2::SockRef::from(sock)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// How a raw peer saw the server end its connection.
#[derive(Debug)]
pub struct Closed {
    /// What arrived before the end.
    pub bytes: Vec<u8>,
    /// `Ok` for a FIN, the error of a reset.
    pub end: Result<(), io::ErrorKind>,
    /// How long after the call the end came.
    pub after: Duration,
}

impl Closed {
    /// What arrived is nothing, or TLS records of the given types only
    /// (0x15 alert, 0x16 handshake), each whole.
    pub fn records(&self) -> Vec<u8> {
        let mut types = Vec::new();
        let mut rest = &self.bytes[..];
        while !rest.is_empty() {
            assert!(rest.len() >= 5, "a cut record: {:02x?}", self.bytes);
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            assert!(
                rest.len() >= 5 + len,
                "a cut record: {} of {} bytes",
                rest.len() - 5,
                len
            );
            types.push(rest[0]);
            rest = &rest[5 + len..];
        }
        types
    }
}

/// Reads from `sock` until the server closes it (FIN or reset), failing
/// the test if that takes longer than [`WAIT`].
pub fn read_until_closed(sock: &mut TcpStream) -> Closed {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0; 16 * 1024];
    let end = loop {
        match sock.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "the server did not close the connection within {WAIT:?} ({} bytes came)",
                    bytes.len()
                )
            }
            Err(err) => break Err(err.kind()),
        }
    };
    Closed {
        bytes,
        end,
        after: start.elapsed(),
    }
}

/// A reason as the tests compare it, with the `TlsError` inside spelled
/// out: `Done`, `Failed(NotTls)`, `Failed(Handshake: …)`,
/// `Lost(UnexpectedEof, Truncated)`, `Failed(Panicked: …)`, …
pub fn tls_reason(reason: &Reason) -> String {
    match reason {
        Reason::Done => "Done".into(),
        Reason::Aborted => "Aborted".into(),
        Reason::Lost(err) => match err.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) {
            Some(tls) => format!("Lost({:?}, {})", err.kind(), tls_error(tls)),
            None => format!("Lost({:?})", err.kind()),
        },
        Reason::Failed(err) => {
            if let Some(tls) = err.downcast_ref::<TlsError>() {
                format!("Failed({})", tls_error(tls))
            } else if let Some(panicked) = err.downcast_ref::<Panicked>() {
                format!("Failed(Panicked: {panicked})")
            } else if let Some(full) = err.downcast_ref::<WriteBufferFull>() {
                format!("Failed(WriteBufferFull {})", full.limit)
            } else {
                format!("Failed(other: {err})")
            }
        }
        other => format!("{other}"),
    }
}

/// A `TlsError`'s variant, with rustls's error where it has one.
pub fn tls_error(error: &TlsError) -> String {
    match error {
        TlsError::Handshake(err) => format!("Handshake: {err}"),
        TlsError::Protocol(err) => format!("Protocol: {err}"),
        TlsError::HandshakeTimeout(after) => format!("HandshakeTimeout({after:?})"),
        TlsError::NotTls => "NotTls".into(),
        TlsError::ClosedDuringHandshake => "ClosedDuringHandshake".into(),
        TlsError::Truncated => "Truncated".into(),
        other => format!("{other:?}"),
    }
}

/// The rustls error inside a `Failed(Handshake)` or `Failed(Protocol)`.
pub fn rustls_error(reason: &Reason) -> Option<&rustls::Error> {
    match reason {
        Reason::Failed(err) => match err.downcast_ref::<TlsError>()? {
            TlsError::Handshake(err) | TlsError::Protocol(err) => Some(err),
            _ => None,
        },
        _ => None,
    }
}

/// A server protocol that echoes and logs, as `NAME: EVENT`, the
/// completed handshake, `eof_received` and how the connection ended;
/// stops the reactor when lost if told to.
pub struct Echo {
    pub name: String,
    pub log: Log,
    pub transport: Option<Transport>,
    pub stop_when_lost: bool,
}

impl Echo {
    pub fn new(name: impl Into<String>, log: &Log) -> Echo {
        Echo {
            name: name.into(),
            log: log.clone(),
            transport: None,
            stop_when_lost: false,
        }
    }

    /// Stops the reactor once the connection is lost.
    pub fn stopping(mut self) -> Echo {
        self.stop_when_lost = true;
        self
    }
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.transport.as_ref().unwrap().write(data);
    }
    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() {
            self.log.push(format!("{}: handshake", self.name));
        }
    }
    fn eof_received(&mut self) -> bool {
        self.log.push(format!("{}: eof_received", self.name));
        false
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log
            .push(format!("{}: lost {}", self.name, tls_reason(reason)));
        if self.stop_when_lost {
            twill::stop();
        }
    }
}

/// A factory of [`Echo`]s named `conn 1`, `conn 2`, … in the order they
/// are accepted.
pub fn numbered(log: &Log) -> impl FnMut(twill::Address) -> Echo + 'static {
    let (log, mut accepted) = (log.clone(), 0);
    move |_peer| {
        accepted += 1;
        Echo::new(format!("conn {accepted}"), &log)
    }
}

/// Listens with TLS on 127.0.0.1, runs `client` on another thread with
/// the port's address and a handle on the reactor, runs the reactor
/// (bounded, with a 1 s shutdown timeout) until it is stopped, and returns
/// what the client returned.
pub fn serve_tls<R: Send + 'static>(
    reactor: &Reactor,
    acceptor: impl Into<twill::tls::TlsAcceptor>,
    factory: impl Factory,
    client: impl FnOnce(SocketAddr, ReactorHandle) -> R + Send + 'static,
) -> R {
    let side = twill::tls::StartTls::Server(acceptor.into());
    serve_wrapped(reactor, twill::tls::TlsFactory::new(side, factory), client)
}

/// As [`serve_tls`], with a [`twill::tls::TlsFactory`] made by the test
/// (one with a clock of its own, say).
pub fn serve_wrapped<R: Send + 'static>(
    reactor: &Reactor,
    factory: impl Factory,
    client: impl FnOnce(SocketAddr, ReactorHandle) -> R + Send + 'static,
) -> R {
    let port = reactor.listen_tcp("127.0.0.1:0", factory).unwrap();
    let (addr, handle) = (port.host(), reactor.handle());
    let client = thread::spawn(move || client(addr.tcp().unwrap(), handle));
    reactor.set_shutdown_timeout(Duration::from_secs(1));
    twill_test_support::reactor::run(reactor);
    client.join().unwrap()
}

/// The same pseudo-random bytes on every run (xorshift64*).
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed | 1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }
}

/// A socket that keeps a copy of every byte read from it: what came over
/// the wire, under the TLS a client runs on top.
pub struct Tap {
    pub sock: TcpStream,
    pub seen: Vec<u8>,
}

impl Tap {
    pub fn new(sock: TcpStream) -> Tap {
        Tap {
            sock,
            seen: Vec::new(),
        }
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
