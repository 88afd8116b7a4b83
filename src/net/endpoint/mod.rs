//! Twisted's endpoint strings ("strports"): one line of text that says
//! where to listen or what to connect to, such as
//! `tcp:8007:interface=127.0.0.1`, `unix:/run/app.sock:mode=660` or
//! `tls:example.com:443`, parsed into a [`ServerDescription`] or a
//! [`ClientDescription`].
//!
//! # Grammar
//!
//! Fields are separated by `:`. A backslash takes the next character
//! literally: `\:` is a colon inside a field, `\\` a backslash, `\=` an
//! equals sign that does not make a keyword. A field with an `=` is a
//! keyword field `key=value`; only its first `=` splits, so the value may
//! hold more. Other fields are positional and fill, in order, the
//! positional slots of the endpoint type that were not given by keyword:
//! `tcp:host=example.com:80` and `tcp:example.com:port=80` both mean
//! `tcp:example.com:80`.
//!
//! The first field is the endpoint type, whatever its case: `tcp`, `unix`,
//! or `tls` (`ssl` is taken as `tls`, as Twisted does). Keyword names are
//! Twisted's and, as there, case-sensitive.
//!
//! | Servers ([`parse_server`]) | positional | keywords and defaults |
//! |---|---|---|
//! | `tcp:8007` | `port` | `interface=0.0.0.0`, `backlog=50` |
//! | `unix:/run/app.sock` | `address` | `mode=666` (octal), `backlog=50`, `lockfile=1` |
//! | `tls:443:privateKey=key.pem` | `port` | `certKey=` the private key's file, `interface=0.0.0.0`, `backlog=50` |
//!
//! | Clients ([`parse_client`]) | positional | keywords and defaults |
//! |---|---|---|
//! | `tcp:example.com:80` | `host`, `port` | `timeout=30`, `bindAddress=` none |
//! | `unix:/run/app.sock` | `path` | `timeout=30`, `lockfile=0` |
//! | `tls:example.com:443` | `host`, `port` | `timeout=30`, `bindAddress=` none, `hostname=` the host, `trustRoots=` the platform's roots, `certificate=` none, `privateKey=` the certificate's file |
//!
//! An IPv6 address is written with its colons escaped, as in Twisted
//! (`tcp:\:\:1:8007`, `interface=\:\:1`), or in brackets
//! (`tcp:[::1]:8007`, `interface=[::1]`): a field or keyword value that
//! opens with `[` keeps its colons up to the `]`, which Twisted's grammar
//! does not have (write `\[` for a literal one). A Unix path that starts
//! with `@` is a Linux abstract socket name. A timeout is a number of
//! seconds, whole or decimal (`timeout=2.5`).
//!
//! Anything else is an [`EndpointError`] that names the field at fault.
//!
//! [`Display`](fmt::Display) writes a description back as its shortest
//! endpoint string, leaving out the defaults, so that parsing it again
//! gives the same description.
//!
//! # Examples
//!
//! ```
//! use std::net::Ipv4Addr;
//! use twill::net::endpoint::{parse_server, ServerDescription};
//!
//! let server = parse_server("tcp:8007:interface=127.0.0.1")?;
//! assert_eq!(
//!     server,
//!     ServerDescription::Tcp { interface: Ipv4Addr::LOCALHOST.into(), port: 8007, backlog: 50 }
//! );
//! assert_eq!(server.to_string(), "tcp:8007:interface=127.0.0.1");
//!
//! let error = parse_server("tcp:80x").unwrap_err();
//! assert_eq!(error.field(), Some("port"));
//! assert_eq!(
//!     error.to_string(),
//!     r#"endpoint "tcp:80x": field port: "80x" is not a port number (0-65535)"#
//! );
//! # Ok::<(), twill::net::endpoint::EndpointError>(())
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::{UnixAddress, DEFAULT_UNIX_MODE, MAX_UNIX_PATH};

/// The listen backlog when none is given: Twisted's.
pub const DEFAULT_BACKLOG: u32 = 50;

/// How long a client waits for its connection when no `timeout` is given:
/// Twisted's 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to listen: what [`parse_server`] makes of an endpoint string.
///
/// # Examples
///
/// ```
/// use twill::net::endpoint::ServerDescription;
/// use twill::net::UnixAddress;
///
/// let server: ServerDescription = "unix:/run/app.sock:mode=660".parse()?;
/// assert_eq!(
///     server,
///     ServerDescription::Unix {
///         address: UnixAddress::Path("/run/app.sock".into()),
///         mode: 0o660,
///         backlog: 50,
///         lockfile: true,
///     }
/// );
/// # Ok::<(), twill::net::endpoint::EndpointError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerDescription {
    /// A TCP port: `tcp:PORT[:interface=IP][:backlog=N]`.
    Tcp {
        /// The address to bind; `0.0.0.0` (every IPv4 interface) by default.
        interface: IpAddr,
        /// The port; 0 lets the system choose one.
        port: u16,
        /// The listen backlog; [`DEFAULT_BACKLOG`] by default.
        backlog: u32,
    },
    /// A Unix socket: `unix:PATH[:mode=OCTAL][:backlog=N][:lockfile=0|1]`.
    Unix {
        /// The socket's path or abstract name.
        address: UnixAddress,
        /// The socket file's permissions; [`DEFAULT_UNIX_MODE`] by default.
        /// Meaningless for an abstract name.
        mode: u32,
        /// The listen backlog; [`DEFAULT_BACKLOG`] by default.
        backlog: u32,
        /// Whether a lock file beside the socket guards it, so that a stale
        /// socket file is replaced only when nobody listens on it; true by
        /// default, as in Twisted.
        lockfile: bool,
    },
    /// A TLS port:
    /// `tls:PORT:privateKey=FILE[:certKey=FILE][:interface=IP][:backlog=N]`.
    Tls {
        /// The address to bind; `0.0.0.0` (every IPv4 interface) by default.
        interface: IpAddr,
        /// The port; 0 lets the system choose one.
        port: u16,
        /// The listen backlog; [`DEFAULT_BACKLOG`] by default.
        backlog: u32,
        /// The PEM file holding the server's private key.
        private_key: PathBuf,
        /// The PEM file holding the server's certificate chain; the private
        /// key's file (one PEM holding both) when `certKey` is not given.
        cert_key: PathBuf,
    },
}

/// What to connect to: what [`parse_client`] makes of an endpoint string.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twill::net::endpoint::ClientDescription;
///
/// let client: ClientDescription = "tcp:example.com:80:timeout=2.5".parse()?;
/// assert_eq!(
///     client,
///     ClientDescription::Tcp {
///         host: "example.com".into(),
///         port: 80,
///         timeout: Duration::from_millis(2500),
///         bind_address: None,
///     }
/// );
/// # Ok::<(), twill::net::endpoint::EndpointError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientDescription {
    /// A TCP connection:
    /// `tcp:HOST:PORT[:timeout=SECONDS][:bindAddress=IP]`.
    Tcp {
        /// A host name or an IP address, without brackets.
        host: String,
        /// The port, 1 to 65535.
        port: u16,
        /// How long to wait for the connection; [`DEFAULT_TIMEOUT`] by
        /// default.
        timeout: Duration,
        /// The local address to bind before connecting, if any.
        bind_address: Option<IpAddr>,
    },
    /// A Unix socket connection: `unix:PATH[:timeout=SECONDS][:lockfile=0|1]`.
    Unix {
        /// The socket's path or abstract name.
        address: UnixAddress,
        /// How long to wait for the connection; [`DEFAULT_TIMEOUT`] by
        /// default.
        timeout: Duration,
        /// Whether to check the server's lock file first and fail at once
        /// when no live process holds it; false by default, as in Twisted.
        lockfile: bool,
    },
    /// A TLS connection: `tls:HOST:PORT[:timeout=SECONDS][:bindAddress=IP]`
    /// `[:hostname=NAME][:trustRoots=FILE][:certificate=FILE[:privateKey=FILE]]`.
    Tls {
        /// A host name or an IP address, without brackets.
        host: String,
        /// The port, 1 to 65535.
        port: u16,
        /// How long to wait for the connection; [`DEFAULT_TIMEOUT`] by
        /// default.
        timeout: Duration,
        /// The local address to bind before connecting, if any.
        bind_address: Option<IpAddr>,
        /// The name sent for SNI and checked against the server's
        /// certificate; the host by default.
        hostname: String,
        /// A PEM file of the certificate authorities to trust; the
        /// platform's roots when `None`.
        trust_roots: Option<PathBuf>,
        /// A PEM file with the client's certificate chain, if the client
        /// presents one.
        certificate: Option<PathBuf>,
        /// The PEM file with the client's private key; the certificate's
        /// file (one PEM holding both) when `privateKey` is not given. The
        /// parser gives it only with a certificate.
        private_key: Option<PathBuf>,
    },
}

/// An endpoint string that could not be parsed: the string, the field at
/// fault when there is one, and what is wrong with it.
///
/// Displayed as `endpoint "STRING": PROBLEM`; converts into an
/// [`io::Error`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput).
///
/// # Examples
///
/// ```
/// use twill::net::endpoint::parse_server;
///
/// let error = parse_server("unix:/run/app.sock:mode=999").unwrap_err();
/// assert_eq!(error.endpoint(), "unix:/run/app.sock:mode=999");
/// assert_eq!(error.field(), Some("mode"));
/// assert_eq!(error.problem(), r#"field mode: "999" is not an octal file mode"#);
///
/// let error: std::io::Error = error.into();
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    endpoint: String,
    field: Option<String>,
    problem: String,
}

impl EndpointError {
    fn new(endpoint: &str, field: Option<&str>, problem: String) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            field: field.map(str::to_owned),
            problem,
        }
    }

    /// The endpoint string that failed.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The name of the field at fault (`port`, `mode`, the unknown keyword,
    /// ...), or `None` when the fault is not in one field: an empty string,
    /// an unknown endpoint type, too many positional fields, a trailing
    /// backslash.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong, without the endpoint string: the message after
    /// `endpoint "STRING": `.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "endpoint \"{}\": {}", self.endpoint, self.problem)
    }
}

impl std::error::Error for EndpointError {}

impl From<EndpointError> for io::Error {
    fn from(error: EndpointError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, error)
    }
}

mod display;
mod open;
mod parse;
#[cfg(test)]
mod tests;

pub use parse::{parse_client, parse_client_or_addr, parse_server, parse_server_or_addr};
