//! TLS on [rustls](https://docs.rs/rustls), as a protocol wrapper: Twisted's
//! `TLSMemoryBIOProtocol` and `startTLS`, Netty's `SslHandler`.
//!
//! A TLS connection is a plain TCP connection whose protocol is a
//! [`TlsProtocol`]: it decrypts what arrives and hands the plaintext to the
//! protocol inside it, which gets a [`Transport`](crate::Transport) of its
//! own whose writes are encrypted. So everything that runs on a connection
//! runs on a TLS connection unchanged: a plain [`Protocol`](crate::Protocol),
//! a codec stack, a pipeline. The wrapped protocol's transport behaves as a
//! TCP one does:
//!
//! - [`connection_made`](crate::Protocol::connection_made) comes when the
//!   TCP connection is made, as in Twisted; what the protocol writes before
//!   the handshake completes is sent, encrypted, right after it. A
//!   [`HandshakeCompleted`] event then arrives in
//!   [`event_received`](crate::Protocol::event_received), and
//!   [`Transport::tls`](crate::Transport::tls) says what was negotiated
//!   (version, cipher suite, ALPN protocol, server name, the peer's
//!   certificates).
//! - [`lose_connection`](crate::Transport::lose_connection) sends
//!   `close_notify` before closing, and so does
//!   [`write_eof`](crate::Transport::write_eof) (TLS's half-close). A peer's
//!   `close_notify` is [`eof_received`](crate::Protocol::eof_received); a
//!   peer that closes without one ends the connection with
//!   [`Reason::Lost`](crate::Reason::Lost) holding [`TlsError::Truncated`],
//!   never mistaken for a clean close.
//! - Flow control works through the layer: the watermarks, `pause_writing`
//!   and `resume_writing` are those of the encrypted bytes waiting to be
//!   sent, and `pause_reading` stops reading from the socket.
//! - A failed handshake (untrusted certificate, wrong name, plaintext sent
//!   to a TLS port) ends the connection with [`Reason::Failed`](crate::Reason::Failed)
//!   holding a [`TlsError`] that says why, and the peer gets TLS's alert. A
//!   handshake that does not complete within 10 seconds (Netty's default;
//!   [`TlsAcceptor::handshake_timeout`]) fails with
//!   [`TlsError::HandshakeTimeout`], and the peer, which stopped taking
//!   part, is reset rather than sent an alert.
//!
//! Configuration is rustls's own [`ServerConfig`] and
//! [`ClientConfig`]; [`config`] has helpers for the
//! common cases. Servers listen with
//! [`Reactor::listen_tls`](crate::Reactor::listen_tls), clients connect
//! with [`Reactor::connect_tls`](crate::Reactor::connect_tls), and a
//! plaintext connection upgrades with
//! [`Transport::start_tls`](crate::Transport::start_tls).
//!
//! The crypto provider is rustls's `ring`.
//!
//! # Examples
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use twill::tls::{config, TlsAcceptor, TlsConnector, TlsProtocol};
//! use twill::testing::loopback;
//! use twill::{Bytes, Protocol, Transport};
//!
//! # let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
//! # let (cert_pem, key_pem) = (key.cert.pem(), key.signing_key.serialize_pem());
//! // A certificate and key in PEM, and a client that trusts that certificate.
//! let server = config::server_config(
//!     config::certs_from_pem(cert_pem.as_bytes())?,
//!     config::key_from_pem(key_pem.as_bytes())?,
//! )?;
//! let client = config::client_config_trusting(config::certs_from_pem(cert_pem.as_bytes())?)?;
//!
//! struct Greeter;
//! impl Protocol for Greeter {
//!     fn connection_made(&mut self, transport: &Transport) {
//!         transport.write("hello over TLS");
//!     }
//!     fn data_received(&mut self, _: Bytes) {}
//! }
//!
//! #[derive(Clone, Default)]
//! struct Collect(Rc<RefCell<Vec<u8>>>);
//! impl Protocol for Collect {
//!     fn data_received(&mut self, data: Bytes) {
//!         self.0.borrow_mut().extend_from_slice(&data);
//!     }
//! }
//!
//! let got = Collect::default();
//! let pair = loopback(
//!     TlsProtocol::server(TlsAcceptor::new(server), Greeter),
//!     TlsProtocol::client(TlsConnector::new(client), "localhost", got.clone())?,
//! );
//! pair.flush();
//! assert_eq!(&got.0.borrow()[..], b"hello over TLS");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
mod endpoints;
mod error;
mod protocol;
mod session;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use rustls;
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};

pub(crate) use endpoints::start_tls;
pub use endpoints::TlsFactory;
pub use error::TlsError;
pub use protocol::TlsProtocol;

/// How long a handshake may take unless told otherwise: Netty's
/// `SslHandler` default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS: rustls's [`ServerConfig`] and how long a
/// handshake may take. tokio-rustls's `TlsAcceptor`, Netty's server
/// `SslContext`. Cheap to clone, and `Send + Sync`: build it once and
/// share it with reactors on other threads.
///
/// ```
/// use std::time::Duration;
/// use twill::tls::TlsAcceptor;
/// # let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// # let cert = twill::tls::config::certs_from_pem(key.cert.pem().as_bytes())?;
/// # let key = twill::tls::config::key_from_pem(key.signing_key.serialize_pem().as_bytes())?;
///
/// let config = twill::tls::config::server_config(cert, key)?;
/// let acceptor = TlsAcceptor::new(config).handshake_timeout(Duration::from_secs(5));
/// assert_eq!(acceptor.timeout(), Duration::from_secs(5));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    options: Options,
}

/// The client side of TLS: rustls's [`ClientConfig`] and how long a
/// handshake may take. tokio-rustls's `TlsConnector`. Cheap to clone.
///
/// ```
/// use twill::tls::TlsConnector;
///
/// // Trusts the platform's roots (and fails if it has none).
/// let connector = TlsConnector::new(twill::tls::config::client_config_with_platform_roots()?);
/// # let _ = connector;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    options: Options,
}

#[derive(Clone)]
struct Options {
    handshake_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

macro_rules! side_options {
    ($side:ident, $config:ty) => {
        impl $side {
            /// Uses `config`, with the default handshake timeout
            /// ([`DEFAULT_HANDSHAKE_TIMEOUT`]).
            pub fn new(config: impl Into<Arc<$config>>) -> $side {
                $side {
                    config: config.into(),
                    options: Options::default(),
                }
            }

            /// Fails a connection whose handshake has not completed after
            /// `timeout` with [`TlsError::HandshakeTimeout`].
            /// `Duration::MAX` means no limit.
            pub fn handshake_timeout(mut self, timeout: Duration) -> $side {
                self.options.handshake_timeout = timeout;
                self
            }

            /// The handshake timeout.
            pub fn timeout(&self) -> Duration {
                self.options.handshake_timeout
            }

            /// rustls's configuration.
            pub fn config(&self) -> &Arc<$config> {
                &self.config
            }
        }

        impl From<Arc<$config>> for $side {
            fn from(config: Arc<$config>) -> $side {
                $side::new(config)
            }
        }

        impl From<$config> for $side {
            fn from(config: $config) -> $side {
                $side::new(config)
            }
        }

        impl fmt::Debug for $side {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($side))
                    .field("config", &self.config)
                    .field("handshake_timeout", &self.options.handshake_timeout)
                    .finish()
            }
        }
    };
}

side_options!(TlsAcceptor, ServerConfig);
side_options!(TlsConnector, ClientConfig);

/// Which side of the handshake a connection takes when it starts TLS
/// ([`Transport::start_tls`](crate::Transport::start_tls)).
#[derive(Debug, Clone)]
pub enum StartTls {
    /// Accept the handshake, as a server.
    Server(TlsAcceptor),
    /// Start the handshake, as a client, for this server name (checked
    /// against the server's certificate and sent as SNI).
    Client(TlsConnector, ServerName<'static>),
}

impl StartTls {
    /// The client side, for `server_name` (a DNS name or an IP address).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `server_name` is neither.
    pub fn client(
        connector: impl Into<TlsConnector>,
        server_name: &str,
    ) -> std::io::Result<StartTls> {
        Ok(StartTls::Client(
            connector.into(),
            parse_server_name(server_name)?,
        ))
    }
}

impl From<TlsAcceptor> for StartTls {
    fn from(acceptor: TlsAcceptor) -> StartTls {
        StartTls::Server(acceptor)
    }
}

impl From<Arc<ServerConfig>> for StartTls {
    fn from(config: Arc<ServerConfig>) -> StartTls {
        StartTls::Server(TlsAcceptor::new(config))
    }
}

impl From<ServerConfig> for StartTls {
    fn from(config: ServerConfig) -> StartTls {
        StartTls::Server(TlsAcceptor::new(config))
    }
}

pub(crate) fn parse_server_name(name: &str) -> std::io::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|err| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid server name: {err}"),
        )
    })
}

/// What a TLS connection negotiated: [`Transport::tls`](crate::Transport::tls).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsInfo {
    /// Whether the handshake has completed; until then the fields below
    /// are mostly empty.
    pub handshake_complete: bool,
    /// TLS 1.2 or 1.3.
    pub protocol_version: Option<rustls::ProtocolVersion>,
    /// The cipher suite.
    pub cipher_suite: Option<rustls::SupportedCipherSuite>,
    /// The application protocol agreed by ALPN (`b"h2"`, `b"http/1.1"`).
    pub alpn_protocol: Option<Vec<u8>>,
    /// The server name: on a server, the one the client asked for (SNI);
    /// on a client, the one it connected to.
    pub server_name: Option<String>,
    /// The peer's certificate chain, its own first: the server's on a
    /// client; on a server, the client's if it sent one (mutual TLS).
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

/// The event a TLS connection's protocol gets in
/// [`event_received`](crate::Protocol::event_received) when the handshake
/// completes: Netty's `SslHandshakeCompletionEvent`, Twisted's
/// `IHandshakeListener.handshakeCompleted`. A failed handshake ends the
/// connection instead ([`TlsError`]).
#[derive(Debug, Clone)]
pub struct HandshakeCompleted {
    /// What was negotiated.
    pub info: TlsInfo,
}
