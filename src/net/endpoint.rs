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

/// The listen backlog when none is given: Twisted's.
pub const DEFAULT_BACKLOG: u32 = 50;

/// The permissions of a Unix server's socket file when none are given:
/// Twisted's `0o666`, read and write for everyone, which the process's
/// umask then narrows.
pub const DEFAULT_UNIX_MODE: u32 = 0o666;

/// How long a client waits for its connection when no `timeout` is given:
/// Twisted's 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest Unix socket path, in bytes: `sun_path` less its closing
/// NUL. An abstract name has the same room after its leading NUL.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const UNIX_PATH_MAX: usize = 107;

/// The longest Unix socket path, in bytes: `sun_path` less its closing
/// NUL. An abstract name has the same room after its leading NUL.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const UNIX_PATH_MAX: usize = 103;

/// Where to listen: what [`parse_server`] makes of an endpoint string.
///
/// # Examples
///
/// ```
/// use twill::net::endpoint::{ServerDescription, UnixPath};
///
/// let server: ServerDescription = "unix:/run/app.sock:mode=660".parse()?;
/// assert_eq!(
///     server,
///     ServerDescription::Unix {
///         address: UnixPath::Path("/run/app.sock".into()),
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
        address: UnixPath,
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
        address: UnixPath,
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

/// Where a Unix socket lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnixPath {
    /// A file system path.
    Path(PathBuf),
    /// A Linux abstract socket name, without its leading NUL; written `@NAME`
    /// in an endpoint string.
    Abstract(Vec<u8>),
}

impl fmt::Display for UnixPath {
    /// Writes the path, or `@` and the abstract name; bytes that are not
    /// UTF-8 are replaced.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixPath::Path(path) => f.write_str(&path.to_string_lossy()),
            UnixPath::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
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

/// Parses a server endpoint string: `tcp:PORT`, `unix:PATH`, `tls:PORT:...`
/// with their keyword fields (see the [module documentation](self)).
///
/// # Errors
///
/// An [`EndpointError`] naming the field at fault.
///
/// # Examples
///
/// ```
/// use std::path::PathBuf;
/// use twill::net::endpoint::{parse_server, ServerDescription};
///
/// let server = parse_server("ssl:8443:privateKey=server.pem")?;
/// assert_eq!(
///     server,
///     ServerDescription::Tls {
///         interface: "0.0.0.0".parse().unwrap(),
///         port: 8443,
///         backlog: 50,
///         private_key: PathBuf::from("server.pem"),
///         cert_key: PathBuf::from("server.pem"),
///     }
/// );
/// assert_eq!(server.to_string(), "tls:8443:privateKey=server.pem");
/// # Ok::<(), twill::net::endpoint::EndpointError>(())
/// ```
pub fn parse_server(description: &str) -> Result<ServerDescription, EndpointError> {
    let (kind, fields) = split_type(description)?;
    match kind {
        EndpointType::Tcp => {
            let mut arguments = bind(
                description,
                "a tcp server",
                fields,
                &["port"],
                &["port", "interface", "backlog"],
            )?;
            let (interface, port, backlog) = listen_address(&mut arguments)?;
            Ok(ServerDescription::Tcp {
                interface,
                port,
                backlog,
            })
        }
        EndpointType::Unix => {
            let mut arguments = bind(
                description,
                "a unix server",
                fields,
                &["address"],
                &["address", "mode", "backlog", "lockfile"],
            )?;
            let address = arguments.required("address")?;
            let address = arguments.unix_path("address", &address)?;
            let mode = match arguments.take("mode") {
                Some(mode) => arguments.file_mode("mode", &mode)?,
                None => DEFAULT_UNIX_MODE,
            };
            let backlog = arguments.backlog()?;
            let lockfile = arguments.flag("lockfile", true)?;
            Ok(ServerDescription::Unix {
                address,
                mode,
                backlog,
                lockfile,
            })
        }
        EndpointType::Tls => {
            let mut arguments = bind(
                description,
                "a tls server",
                fields,
                &["port"],
                &["port", "interface", "backlog", "privateKey", "certKey"],
            )?;
            let (interface, port, backlog) = listen_address(&mut arguments)?;
            let private_key = arguments.required("privateKey")?;
            let private_key = arguments.file("privateKey", private_key)?;
            let cert_key = match arguments.take("certKey") {
                Some(cert_key) => arguments.file("certKey", cert_key)?,
                None => private_key.clone(),
            };
            Ok(ServerDescription::Tls {
                interface,
                port,
                backlog,
                private_key,
                cert_key,
            })
        }
    }
}

/// Parses a client endpoint string: `tcp:HOST:PORT`, `unix:PATH`,
/// `tls:HOST:PORT` with their keyword fields (see the
/// [module documentation](self)).
///
/// # Errors
///
/// An [`EndpointError`] naming the field at fault.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twill::net::endpoint::{parse_client, ClientDescription};
///
/// let client = parse_client(r"tls:\:\:1:8443:hostname=localhost:trustRoots=ca.pem")?;
/// assert_eq!(
///     client,
///     ClientDescription::Tls {
///         host: "::1".into(),
///         port: 8443,
///         timeout: Duration::from_secs(30),
///         bind_address: None,
///         hostname: "localhost".into(),
///         trust_roots: Some("ca.pem".into()),
///         certificate: None,
///         private_key: None,
///     }
/// );
/// # Ok::<(), twill::net::endpoint::EndpointError>(())
/// ```
pub fn parse_client(description: &str) -> Result<ClientDescription, EndpointError> {
    let (kind, fields) = split_type(description)?;
    match kind {
        EndpointType::Tcp => {
            let mut arguments = bind(
                description,
                "a tcp client",
                fields,
                &["host", "port"],
                &["host", "port", "timeout", "bindAddress"],
            )?;
            let (host, port, timeout, bind_address) = connect_address(&mut arguments)?;
            Ok(ClientDescription::Tcp {
                host,
                port,
                timeout,
                bind_address,
            })
        }
        EndpointType::Unix => {
            let mut arguments = bind(
                description,
                "a unix client",
                fields,
                &["path"],
                &["path", "timeout", "lockfile"],
            )?;
            let path = arguments.required("path")?;
            let address = arguments.unix_path("path", &path)?;
            let timeout = arguments.timeout()?;
            let lockfile = arguments.flag("lockfile", false)?;
            Ok(ClientDescription::Unix {
                address,
                timeout,
                lockfile,
            })
        }
        EndpointType::Tls => {
            let mut arguments = bind(
                description,
                "a tls client",
                fields,
                &["host", "port"],
                &[
                    "host",
                    "port",
                    "timeout",
                    "bindAddress",
                    "hostname",
                    "trustRoots",
                    "certificate",
                    "privateKey",
                ],
            )?;
            let (host, port, timeout, bind_address) = connect_address(&mut arguments)?;
            let hostname = match arguments.take("hostname") {
                Some(hostname) => arguments.host_name("hostname", &hostname)?,
                None => host.clone(),
            };
            let trust_roots = arguments.optional_file("trustRoots")?;
            let certificate = arguments.optional_file("certificate")?;
            let private_key = match (arguments.optional_file("privateKey")?, &certificate) {
                (Some(_), None) => {
                    return Err(arguments.error(
                        "privateKey",
                        "field privateKey: a private key needs a certificate".to_owned(),
                    ))
                }
                (Some(private_key), Some(_)) => Some(private_key),
                (None, certificate) => certificate.clone(),
            };
            Ok(ClientDescription::Tls {
                host,
                port,
                timeout,
                bind_address,
                hostname,
                trust_roots,
                certificate,
                private_key,
            })
        }
    }
}

/// Parses a server's address given either as an IP socket address
/// (`127.0.0.1:8007`, `[::1]:8007`: TCP on that interface and port, with
/// the default backlog) or as an endpoint string ([`parse_server`]).
///
/// The rule: text that parses as a [`SocketAddr`] is that address, and
/// anything else is an endpoint string. Host names are not taken: a server
/// binds an interface's address.
///
/// # Errors
///
/// The endpoint string's [`EndpointError`]; when its type is unknown, the
/// message says that the text is not an address either.
///
/// # Examples
///
/// ```
/// use twill::net::endpoint::parse_server_or_addr;
///
/// assert_eq!(parse_server_or_addr("127.0.0.1:8007")?.to_string(), "tcp:8007:interface=127.0.0.1");
/// assert_eq!(parse_server_or_addr("unix:@app")?.to_string(), "unix:@app");
/// # Ok::<(), twill::net::endpoint::EndpointError>(())
/// ```
pub fn parse_server_or_addr(text: &str) -> Result<ServerDescription, EndpointError> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(ServerDescription::Tcp {
            interface: address.ip(),
            port: address.port(),
            backlog: DEFAULT_BACKLOG,
        });
    }
    parse_server(text).map_err(|error| not_an_address_either(error, "127.0.0.1:8007"))
}

/// Parses a client's address given as `HOST:PORT` (`127.0.0.1:8007`,
/// `[::1]:8007`, `localhost:8007`: TCP with the default timeout) or as an
/// endpoint string ([`parse_client`]).
///
/// The rule, in order: text that parses as a [`SocketAddr`] is that
/// address; text that starts with an endpoint type (`tcp`, `unix`, `tls`,
/// `ssl`, any case) and a `:` is an endpoint string, so `tcp:8007` is a
/// host named `8007` with no port, an error; `NAME:PORT` where `PORT` is
/// digits and `NAME` holds no `:`, `=`, `\` or brackets is a TCP host and port;
/// anything else is an endpoint string.
///
/// # Errors
///
/// The [`EndpointError`] of the endpoint string, or of the port.
///
/// # Examples
///
/// ```
/// use twill::net::endpoint::parse_client_or_addr;
///
/// assert_eq!(parse_client_or_addr("localhost:8007")?.to_string(), "tcp:localhost:8007");
/// assert_eq!(parse_client_or_addr("[::1]:8007")?.to_string(), r"tcp:\:\:1:8007");
/// assert_eq!(parse_client_or_addr("unix:/run/app.sock")?.to_string(), "unix:/run/app.sock");
/// # Ok::<(), twill::net::endpoint::EndpointError>(())
/// ```
pub fn parse_client_or_addr(text: &str) -> Result<ClientDescription, EndpointError> {
    let tcp = |host: String, port: u16| ClientDescription::Tcp {
        host,
        port,
        timeout: DEFAULT_TIMEOUT,
        bind_address: None,
    };
    if let Ok(address) = text.parse::<SocketAddr>() {
        let port = connect_port(text, &address.port().to_string())?;
        return Ok(tcp(address.ip().to_string(), port));
    }
    let starts_with_type = text
        .split_once(':')
        .is_some_and(|(prefix, _)| EndpointType::from_name(prefix).is_some());
    if !starts_with_type {
        if let Some((name, port)) = text.rsplit_once(':') {
            let plain_name = !name.is_empty() && !name.contains([':', '=', '\\', '[', ']']);
            if plain_name && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                let port = connect_port(text, port)?;
                return Ok(tcp(name.to_owned(), port));
            }
        }
    }
    parse_client(text).map_err(|error| not_an_address_either(error, "localhost:8007"))
}

impl FromStr for ServerDescription {
    type Err = EndpointError;

    /// [`parse_server`].
    fn from_str(description: &str) -> Result<Self, EndpointError> {
        parse_server(description)
    }
}

impl FromStr for ClientDescription {
    type Err = EndpointError;

    /// [`parse_client`].
    fn from_str(description: &str) -> Result<Self, EndpointError> {
        parse_client(description)
    }
}

impl fmt::Display for ServerDescription {
    /// Writes the shortest endpoint string for this description: the
    /// defaults are left out, and `tls` is written for `ssl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerDescription::Tcp {
                interface,
                port,
                backlog,
            } => {
                write!(f, "tcp:{port}")?;
                write_listen_options(f, interface, *backlog)
            }
            ServerDescription::Unix {
                address,
                mode,
                backlog,
                lockfile,
            } => {
                write!(f, "unix:{}", Escaped(&positional_unix_path(address)))?;
                if *mode != DEFAULT_UNIX_MODE {
                    write!(f, ":mode={mode:o}")?;
                }
                if *backlog != DEFAULT_BACKLOG {
                    write!(f, ":backlog={backlog}")?;
                }
                if !lockfile {
                    f.write_str(":lockfile=0")?;
                }
                Ok(())
            }
            ServerDescription::Tls {
                interface,
                port,
                backlog,
                private_key,
                cert_key,
            } => {
                write!(
                    f,
                    "tls:{port}:privateKey={}",
                    Escaped(&path_text(private_key))
                )?;
                if cert_key != private_key {
                    write!(f, ":certKey={}", Escaped(&path_text(cert_key)))?;
                }
                write_listen_options(f, interface, *backlog)
            }
        }
    }
}

impl fmt::Display for ClientDescription {
    /// Writes the shortest endpoint string for this description: the
    /// defaults are left out, and `tls` is written for `ssl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientDescription::Tcp {
                host,
                port,
                timeout,
                bind_address,
            } => {
                write!(f, "tcp:{}:{port}", Escaped(host))?;
                write_connect_options(f, *timeout, bind_address)
            }
            ClientDescription::Unix {
                address,
                timeout,
                lockfile,
            } => {
                write!(f, "unix:{}", Escaped(&positional_unix_path(address)))?;
                write_connect_options(f, *timeout, &None)?;
                if *lockfile {
                    f.write_str(":lockfile=1")?;
                }
                Ok(())
            }
            ClientDescription::Tls {
                host,
                port,
                timeout,
                bind_address,
                hostname,
                trust_roots,
                certificate,
                private_key,
            } => {
                write!(f, "tls:{}:{port}", Escaped(host))?;
                write_connect_options(f, *timeout, bind_address)?;
                if hostname != host {
                    write!(f, ":hostname={}", Escaped(hostname))?;
                }
                if let Some(trust_roots) = trust_roots {
                    write!(f, ":trustRoots={}", Escaped(&path_text(trust_roots)))?;
                }
                if let Some(certificate) = certificate {
                    write!(f, ":certificate={}", Escaped(&path_text(certificate)))?;
                }
                if let Some(private_key) = private_key
                    .as_ref()
                    .filter(|key| Some(*key) != certificate.as_ref())
                {
                    write!(f, ":privateKey={}", Escaped(&path_text(private_key)))?;
                }
                Ok(())
            }
        }
    }
}

fn write_listen_options(
    f: &mut fmt::Formatter<'_>,
    interface: &IpAddr,
    backlog: u32,
) -> fmt::Result {
    if *interface != IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        write!(f, ":interface={}", Escaped(&interface.to_string()))?;
    }
    if backlog != DEFAULT_BACKLOG {
        write!(f, ":backlog={backlog}")?;
    }
    Ok(())
}

fn write_connect_options(
    f: &mut fmt::Formatter<'_>,
    timeout: Duration,
    bind_address: &Option<IpAddr>,
) -> fmt::Result {
    if timeout != DEFAULT_TIMEOUT {
        write!(f, ":timeout={}", timeout.as_secs())?;
        let nanos = timeout.subsec_nanos();
        if nanos != 0 {
            let fraction = format!("{nanos:09}");
            write!(f, ".{}", fraction.trim_end_matches('0'))?;
        }
    }
    if let Some(bind_address) = bind_address {
        write!(f, ":bindAddress={}", Escaped(&bind_address.to_string()))?;
    }
    Ok(())
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A file path that starts with `@` would read back as an abstract name.
fn positional_unix_path(address: &UnixPath) -> String {
    match address {
        UnixPath::Path(path) => {
            let text = path_text(path);
            if text.starts_with('@') {
                format!("./{text}")
            } else {
                text
            }
        }
        UnixPath::Abstract(_) => address.to_string(),
    }
}

/// Writes a field with the separators it holds escaped. `=` is escaped
/// too: in a positional field it would otherwise make a keyword.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if matches!(c, ':' | '=' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndpointType {
    Tcp,
    Unix,
    Tls,
}

impl EndpointType {
    fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "tcp" => Some(EndpointType::Tcp),
            "unix" => Some(EndpointType::Unix),
            "tls" | "ssl" => Some(EndpointType::Tls),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Positional(String),
    Keyword(String, String),
}

/// Splits on unescaped `:`, and each field on its first unescaped `=`, as
/// Twisted's tokenizer does; beyond Twisted, a value that opens with `[`
/// keeps its colons up to the `]`, for IPv6 addresses.
fn split_fields(description: &str) -> Result<Vec<Field>, EndpointError> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut key: Option<String> = None;
    let mut in_brackets = false;
    let mut chars = description.chars();
    while let Some(c) = chars.next() {
        match c {
            '[' if current.is_empty() => {
                in_brackets = true;
                current.push(c);
            }
            ']' if in_brackets => {
                in_brackets = false;
                current.push(c);
            }
            ':' if in_brackets => current.push(c),
            '\\' => match chars.next() {
                Some(escaped) => current.push(escaped),
                None => {
                    return Err(EndpointError::new(
                        description,
                        None,
                        "a trailing backslash escapes nothing".to_owned(),
                    ))
                }
            },
            ':' => {
                let value = std::mem::take(&mut current);
                fields.push(match key.take() {
                    Some(key) => Field::Keyword(key, value),
                    None => Field::Positional(value),
                });
            }
            '=' if key.is_none() => key = Some(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    fields.push(match key {
        Some(key) => Field::Keyword(key, current),
        None => Field::Positional(current),
    });
    Ok(fields)
}

fn split_type(description: &str) -> Result<(EndpointType, Vec<Field>), EndpointError> {
    if description.is_empty() {
        return Err(EndpointError::new(
            description,
            None,
            "empty endpoint string".to_owned(),
        ));
    }
    let mut fields = split_fields(description)?;
    let first = fields.remove(0);
    let kind = match &first {
        Field::Positional(name) => EndpointType::from_name(name),
        Field::Keyword(..) => None,
    };
    let Some(kind) = kind else {
        let name = description.split(':').next().unwrap_or_default();
        return Err(EndpointError::new(
            description,
            None,
            format!("unknown endpoint type \"{name}\" (tcp, unix, tls or ssl)"),
        ));
    };
    Ok((kind, fields))
}

fn not_an_address_either(mut error: EndpointError, example: &str) -> EndpointError {
    if error.problem.starts_with("unknown endpoint type") {
        error
            .problem
            .push_str(&format!(", and not an address such as {example}"));
    }
    error
}

/// The fields of one endpoint string, matched to the names its type knows.
struct Arguments<'a> {
    endpoint: &'a str,
    values: Vec<(&'static str, String)>,
}

/// Matches keyword fields to `keywords`, then fills the `positional` slots
/// not given by keyword, in order, with the positional fields.
fn bind<'a>(
    endpoint: &'a str,
    role: &str,
    fields: Vec<Field>,
    positional: &[&'static str],
    keywords: &[&'static str],
) -> Result<Arguments<'a>, EndpointError> {
    let mut values: Vec<(&'static str, String)> = Vec::new();
    let mut positional_values = Vec::new();
    for field in fields {
        match field {
            Field::Positional(value) => positional_values.push(value),
            Field::Keyword(key, value) => {
                let Some(&name) = keywords.iter().find(|name| **name == key) else {
                    return Err(EndpointError::new(
                        endpoint,
                        Some(&key),
                        format!(
                            "unknown field \"{key}\" ({role} knows {})",
                            keywords.join(", ")
                        ),
                    ));
                };
                if values.iter().any(|(given, _)| *given == name) {
                    return Err(given_twice(endpoint, name));
                }
                values.push((name, value));
            }
        }
    }
    let free_slots: Vec<&'static str> = positional
        .iter()
        .filter(|slot| !values.iter().any(|(given, _)| given == *slot))
        .copied()
        .collect();
    let mut free_slots = free_slots.into_iter();
    for value in positional_values {
        match free_slots.next() {
            Some(name) => values.push((name, value)),
            None => {
                return Err(EndpointError::new(
                    endpoint,
                    None,
                    format!(
                        "too many positional fields: \"{value}\" ({role} takes {} by position)",
                        positional.join(", then ")
                    ),
                ))
            }
        }
    }
    Ok(Arguments { endpoint, values })
}

fn given_twice(endpoint: &str, name: &str) -> EndpointError {
    EndpointError::new(endpoint, Some(name), format!("a field given twice: {name}"))
}

impl Arguments<'_> {
    fn take(&mut self, name: &str) -> Option<String> {
        let index = self.values.iter().position(|(given, _)| *given == name)?;
        Some(self.values.swap_remove(index).1)
    }

    fn required(&mut self, name: &str) -> Result<String, EndpointError> {
        self.take(name)
            .ok_or_else(|| self.error(name, format!("missing field {name}")))
    }

    fn error(&self, name: &str, problem: String) -> EndpointError {
        EndpointError::new(self.endpoint, Some(name), problem)
    }

    fn invalid(&self, name: &str, value: &str, what: &str) -> EndpointError {
        self.error(name, format!("field {name}: \"{value}\" {what}"))
    }

    fn port(&self, name: &str, value: &str) -> Result<u16, EndpointError> {
        parse_digits::<u16>(value)
            .ok_or_else(|| self.invalid(name, value, "is not a port number (0-65535)"))
    }

    fn backlog(&mut self) -> Result<u32, EndpointError> {
        match self.take("backlog") {
            Some(backlog) => parse_digits::<u32>(&backlog)
                .ok_or_else(|| self.invalid("backlog", &backlog, "is not a number of connections")),
            None => Ok(DEFAULT_BACKLOG),
        }
    }

    fn ip_address(&self, name: &str, value: &str) -> Result<IpAddr, EndpointError> {
        without_brackets(value)
            .parse()
            .map_err(|_| self.invalid(name, value, "is not an IP address"))
    }

    fn host_name(&self, name: &str, value: &str) -> Result<String, EndpointError> {
        let host = without_brackets(value);
        if host.is_empty() {
            return Err(self.invalid(name, value, "is not a host name"));
        }
        Ok(host.to_owned())
    }

    fn timeout(&mut self) -> Result<Duration, EndpointError> {
        match self.take("timeout") {
            Some(timeout) => parse_seconds(&timeout).ok_or_else(|| {
                self.invalid(
                    "timeout",
                    &timeout,
                    "is not a number of seconds (such as 30 or 2.5)",
                )
            }),
            None => Ok(DEFAULT_TIMEOUT),
        }
    }

    fn flag(&mut self, name: &str, default: bool) -> Result<bool, EndpointError> {
        match self.take(name).as_deref() {
            None => Ok(default),
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(self.invalid(name, other, "is not 0 or 1")),
        }
    }

    fn file_mode(&self, name: &str, value: &str) -> Result<u32, EndpointError> {
        let digits = value
            .strip_prefix("0o")
            .or_else(|| value.strip_prefix("0O"))
            .unwrap_or(value);
        let octal = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if octal && mode <= 0o7777 => Ok(mode),
            _ => Err(self.invalid(name, value, "is not an octal file mode")),
        }
    }

    fn file(&self, name: &str, value: String) -> Result<PathBuf, EndpointError> {
        if value.is_empty() {
            return Err(self.error(name, format!("field {name}: empty file name")));
        }
        Ok(PathBuf::from(value))
    }

    fn optional_file(&mut self, name: &str) -> Result<Option<PathBuf>, EndpointError> {
        self.take(name)
            .map(|value| self.file(name, value))
            .transpose()
    }

    fn unix_path(&self, name: &str, value: &str) -> Result<UnixPath, EndpointError> {
        let (address, length) = match value.strip_prefix('@') {
            Some(abstract_name) => {
                if abstract_name.is_empty() {
                    return Err(self.error(
                        name,
                        format!("field {name}: an abstract name needs at least one byte after @"),
                    ));
                }
                (
                    UnixPath::Abstract(abstract_name.as_bytes().to_vec()),
                    abstract_name.len(),
                )
            }
            None => {
                if value.is_empty() {
                    return Err(self.error(name, format!("field {name}: empty path")));
                }
                if value.contains('\0') {
                    return Err(self.error(name, format!("field {name}: a path holds no NUL byte")));
                }
                (UnixPath::Path(PathBuf::from(value)), value.len())
            }
        };
        if length > UNIX_PATH_MAX {
            return Err(self.error(
                name,
                format!("unix path too long: {length} bytes, the limit is {UNIX_PATH_MAX}"),
            ));
        }
        Ok(address)
    }
}

fn listen_address(arguments: &mut Arguments<'_>) -> Result<(IpAddr, u16, u32), EndpointError> {
    let port = arguments.required("port")?;
    let port = arguments.port("port", &port)?;
    let interface = match arguments.take("interface") {
        Some(interface) => arguments.ip_address("interface", &interface)?,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let backlog = arguments.backlog()?;
    Ok((interface, port, backlog))
}

fn connect_address(
    arguments: &mut Arguments<'_>,
) -> Result<(String, u16, Duration, Option<IpAddr>), EndpointError> {
    let host = arguments.required("host")?;
    let host = arguments.host_name("host", &host)?;
    let port = arguments.required("port")?;
    let port = connect_port(arguments.endpoint, &port)?;
    let timeout = arguments.timeout()?;
    let bind_address = match arguments.take("bindAddress") {
        Some(address) => Some(arguments.ip_address("bindAddress", &address)?),
        None => None,
    };
    Ok((host, port, timeout, bind_address))
}

fn connect_port(endpoint: &str, value: &str) -> Result<u16, EndpointError> {
    match parse_digits::<u16>(value) {
        Some(port) if port != 0 => Ok(port),
        _ => Err(EndpointError::new(
            endpoint,
            Some("port"),
            format!("field port: \"{value}\" is not a port number to connect to (1-65535)"),
        )),
    }
}

/// `str::parse` also takes a leading `+`, which no port or count is
/// written with.
fn parse_digits<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whole or decimal seconds, exact to the nanosecond, unlike going
/// through `f64`, so that a timeout written back reads back the same.
fn parse_seconds(text: &str) -> Option<Duration> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds = parse_digits::<u64>(whole)?;
    if fraction.is_empty() {
        return (!text.ends_with('.')).then(|| Duration::from_secs(seconds));
    }
    if fraction.len() > 9 {
        return None;
    }
    let nanos = parse_digits::<u32>(fraction)? * 10u32.pow(9 - fraction.len() as u32);
    Some(Duration::new(seconds, nanos))
}

fn without_brackets(text: &str) -> &str {
    text.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn server(description: &str) -> ServerDescription {
        parse_server(description).unwrap_or_else(|error| panic!("{error}"))
    }

    fn client(description: &str) -> ClientDescription {
        parse_client(description).unwrap_or_else(|error| panic!("{error}"))
    }

    fn server_error(description: &str) -> EndpointError {
        match parse_server(description) {
            Ok(parsed) => panic!("{description} parsed as {parsed:?}"),
            Err(error) => error,
        }
    }

    fn client_error(description: &str) -> EndpointError {
        match parse_client(description) {
            Ok(parsed) => panic!("{description} parsed as {parsed:?}"),
            Err(error) => error,
        }
    }

    fn tcp_server(interface: &str, port: u16, backlog: u32) -> ServerDescription {
        ServerDescription::Tcp {
            interface: interface.parse().unwrap(),
            port,
            backlog,
        }
    }

    fn tcp_client(host: &str, port: u16) -> ClientDescription {
        ClientDescription::Tcp {
            host: host.to_owned(),
            port,
            timeout: DEFAULT_TIMEOUT,
            bind_address: None,
        }
    }

    fn unix_file(path: &str) -> UnixPath {
        UnixPath::Path(PathBuf::from(path))
    }

    // Splitting into fields.

    #[test]
    fn fields_split_on_colons_and_keywords_on_their_first_equals_sign() {
        assert_eq!(
            split_fields("tcp:8007:interface=127.0.0.1:x=a=b").unwrap(),
            vec![
                Field::Positional("tcp".into()),
                Field::Positional("8007".into()),
                Field::Keyword("interface".into(), "127.0.0.1".into()),
                Field::Keyword("x".into(), "a=b".into()),
            ]
        );
    }

    #[test]
    fn a_backslash_takes_the_next_character_literally() {
        assert_eq!(
            split_fields(r"a\:b:c\\d:k\=ey=v\:al:e\=q").unwrap(),
            vec![
                Field::Positional("a:b".into()),
                Field::Positional(r"c\d".into()),
                Field::Keyword("k=ey".into(), "v:al".into()),
                Field::Positional("e=q".into()),
            ]
        );
    }

    #[test]
    fn a_value_opening_with_a_bracket_keeps_its_colons_up_to_the_closing_bracket() {
        assert_eq!(
            split_fields("tcp:[::1]:8007:bindAddress=[fe80::1]:x=a[:]").unwrap(),
            vec![
                Field::Positional("tcp".into()),
                Field::Positional("[::1]".into()),
                Field::Positional("8007".into()),
                Field::Keyword("bindAddress".into(), "[fe80::1]".into()),
                Field::Keyword("x".into(), "a[".into()),
                Field::Positional("]".into()),
            ]
        );
        assert_eq!(
            split_fields(r"\[a:b]").unwrap(),
            vec![
                Field::Positional("[a".into()),
                Field::Positional("b]".into())
            ]
        );
    }

    #[test]
    fn a_trailing_backslash_is_an_error() {
        let error = server_error(r"tcp:8007\");
        assert_eq!(error.field(), None);
        assert_eq!(
            error.to_string(),
            r#"endpoint "tcp:8007\": a trailing backslash escapes nothing"#
        );
    }

    // Endpoint types.

    #[test]
    fn the_endpoint_type_is_case_insensitive() {
        assert_eq!(server("TCP:8007"), tcp_server("0.0.0.0", 8007, 50));
        assert_eq!(server("Tcp:8007"), tcp_server("0.0.0.0", 8007, 50));
        assert_eq!(client("UNIX:/s"), client("unix:/s"));
        assert_eq!(client("TLS:example.com:443"), client("tls:example.com:443"));
    }

    #[test]
    fn ssl_is_tls() {
        assert_eq!(
            server("ssl:443:privateKey=k.pem"),
            server("tls:443:privateKey=k.pem")
        );
        assert_eq!(client("SSL:example.com:443"), client("tls:example.com:443"));
    }

    #[test]
    fn an_empty_string_is_an_error() {
        assert_eq!(
            server_error("").to_string(),
            r#"endpoint "": empty endpoint string"#
        );
        assert_eq!(client_error("").problem(), "empty endpoint string");
    }

    #[test]
    fn an_unknown_type_is_an_error() {
        let error = server_error("udp:53");
        assert_eq!(error.field(), None);
        assert_eq!(
            error.to_string(),
            r#"endpoint "udp:53": unknown endpoint type "udp" (tcp, unix, tls or ssl)"#
        );
        assert_eq!(
            client_error("port=80").problem(),
            r#"unknown endpoint type "port=80" (tcp, unix, tls or ssl)"#
        );
    }

    // TCP servers.

    #[test]
    fn a_tcp_server_listens_on_every_ipv4_interface_with_a_backlog_of_50() {
        assert_eq!(server("tcp:8007"), tcp_server("0.0.0.0", 8007, 50));
        assert_eq!(server("tcp:0"), tcp_server("0.0.0.0", 0, 50));
    }

    #[test]
    fn a_tcp_server_takes_an_interface_and_a_backlog() {
        assert_eq!(
            server("tcp:8007:interface=127.0.0.1"),
            tcp_server("127.0.0.1", 8007, 50)
        );
        assert_eq!(
            server("tcp:8007:backlog=5:interface=127.0.0.1"),
            tcp_server("127.0.0.1", 8007, 5)
        );
    }

    #[test]
    fn a_tcp_server_takes_its_port_by_keyword() {
        assert_eq!(server("tcp:port=8007"), tcp_server("0.0.0.0", 8007, 50));
        assert_eq!(
            server("tcp:interface=127.0.0.1:port=8007"),
            tcp_server("127.0.0.1", 8007, 50)
        );
    }

    #[test]
    fn an_ipv6_interface_is_escaped_or_in_brackets() {
        let loopback = tcp_server("::1", 8007, 50);
        assert_eq!(server(r"tcp:8007:interface=\:\:1"), loopback);
        assert_eq!(server("tcp:8007:interface=[::1]"), loopback);
        assert_eq!(server(r"tcp:8007:interface=[\:\:1]"), loopback);
    }

    #[test]
    fn an_unescaped_ipv6_interface_splits_into_fields() {
        assert_eq!(
            server_error("tcp:8007:interface=::1").problem(),
            r#"too many positional fields: "" (a tcp server takes port by position)"#
        );
    }

    #[test]
    fn a_tcp_server_port_must_be_a_port_number() {
        let error = server_error("tcp:80x");
        assert_eq!(error.field(), Some("port"));
        assert_eq!(
            error.to_string(),
            r#"endpoint "tcp:80x": field port: "80x" is not a port number (0-65535)"#
        );
        for bad in ["65536", "+80", "-1", "", " 80"] {
            let error = server_error(&format!("tcp:{bad}"));
            assert_eq!(
                error.problem(),
                format!("field port: \"{bad}\" is not a port number (0-65535)")
            );
        }
    }

    #[test]
    fn a_tcp_server_needs_a_port() {
        let error = server_error("tcp");
        assert_eq!(error.field(), Some("port"));
        assert_eq!(error.to_string(), r#"endpoint "tcp": missing field port"#);
        assert_eq!(
            server_error("tcp:interface=127.0.0.1").problem(),
            "missing field port"
        );
    }

    #[test]
    fn a_tcp_server_interface_must_be_an_ip_address() {
        let error = server_error("tcp:80:interface=localhost");
        assert_eq!(error.field(), Some("interface"));
        assert_eq!(
            error.problem(),
            r#"field interface: "localhost" is not an IP address"#
        );
    }

    #[test]
    fn a_tcp_server_backlog_must_be_a_count() {
        let error = server_error("tcp:80:backlog=many");
        assert_eq!(error.field(), Some("backlog"));
        assert_eq!(
            error.problem(),
            r#"field backlog: "many" is not a number of connections"#
        );
    }

    #[test]
    fn a_tcp_server_rejects_unknown_fields_by_name() {
        let error = server_error("tcp:80:foo=1");
        assert_eq!(error.field(), Some("foo"));
        assert_eq!(
            error.problem(),
            r#"unknown field "foo" (a tcp server knows port, interface, backlog)"#
        );
        // Keyword names are case-sensitive, as in Twisted.
        assert_eq!(
            server_error("tcp:80:Interface=::1").field(),
            Some("Interface")
        );
    }

    #[test]
    fn a_field_given_twice_is_an_error() {
        let error = server_error("tcp:port=80:port=81");
        assert_eq!(error.field(), Some("port"));
        assert_eq!(error.problem(), "a field given twice: port");
        assert_eq!(
            server_error("tcp:80:backlog=1:backlog=2").problem(),
            "a field given twice: backlog"
        );
    }

    #[test]
    fn a_positional_field_whose_slot_was_given_by_keyword_is_one_too_many() {
        let error = server_error("tcp:80:port=81");
        assert_eq!(error.field(), None);
        assert_eq!(
            error.problem(),
            r#"too many positional fields: "80" (a tcp server takes port by position)"#
        );
        assert_eq!(
            server_error("tcp:80:81").problem(),
            r#"too many positional fields: "81" (a tcp server takes port by position)"#
        );
    }

    // Unix servers.

    #[test]
    fn a_unix_server_has_mode_666_backlog_50_and_a_lock_file() {
        assert_eq!(
            server("unix:/var/run/app.sock"),
            ServerDescription::Unix {
                address: unix_file("/var/run/app.sock"),
                mode: 0o666,
                backlog: 50,
                lockfile: true,
            }
        );
    }

    #[test]
    fn a_unix_server_takes_address_mode_backlog_and_lockfile() {
        let expected = ServerDescription::Unix {
            address: unix_file("/tmp/s"),
            mode: 0o660,
            backlog: 7,
            lockfile: false,
        };
        assert_eq!(
            server("unix:/tmp/s:mode=660:backlog=7:lockfile=0"),
            expected
        );
        assert_eq!(
            server("unix:lockfile=0:address=/tmp/s:backlog=7:mode=0660"),
            expected
        );
        assert_eq!(
            server("unix:address=/tmp/s:mode=0o660:backlog=7:lockfile=0"),
            expected
        );
    }

    #[test]
    fn a_unix_path_may_hold_escaped_colons_and_equals_signs() {
        let ServerDescription::Unix { address, .. } = server(r"unix:/tmp/a\:b\=c\\d") else {
            panic!("not a unix server");
        };
        assert_eq!(address, unix_file(r"/tmp/a:b=c\d"));
        // After the first `=` of a keyword field, `=` needs no escape.
        let ClientDescription::Unix { address, .. } = client("unix:path=/tmp/a=b") else {
            panic!("not a unix client");
        };
        assert_eq!(address, unix_file("/tmp/a=b"));
    }

    #[test]
    fn a_unix_path_starting_with_at_is_an_abstract_name() {
        let ServerDescription::Unix { address, .. } = server("unix:@app") else {
            panic!("not a unix server");
        };
        assert_eq!(address, UnixPath::Abstract(b"app".to_vec()));
        assert_eq!(address.to_string(), "@app");
    }

    #[test]
    fn a_unix_mode_must_be_octal() {
        let error = server_error("unix:/tmp/s:mode=999");
        assert_eq!(error.field(), Some("mode"));
        assert_eq!(
            error.to_string(),
            r#"endpoint "unix:/tmp/s:mode=999": field mode: "999" is not an octal file mode"#
        );
        for bad in ["", "rw", "17777", "+7", "0x1ff"] {
            assert_eq!(
                server_error(&format!("unix:/tmp/s:mode={bad}")).problem(),
                format!("field mode: \"{bad}\" is not an octal file mode")
            );
        }
    }

    #[test]
    fn a_lockfile_is_0_or_1() {
        let error = server_error("unix:/tmp/s:lockfile=yes");
        assert_eq!(error.field(), Some("lockfile"));
        assert_eq!(error.problem(), r#"field lockfile: "yes" is not 0 or 1"#);
    }

    #[test]
    fn a_unix_path_must_fit_in_sun_path() {
        let longest = format!("/{}", "a".repeat(UNIX_PATH_MAX - 1));
        server(&format!("unix:{longest}"));
        let too_long = format!("{longest}a");
        let error = server_error(&format!("unix:{too_long}"));
        assert_eq!(error.field(), Some("address"));
        assert_eq!(
            error.problem(),
            format!(
                "unix path too long: {} bytes, the limit is {UNIX_PATH_MAX}",
                too_long.len()
            )
        );
        server(&format!("unix:@{}", "a".repeat(UNIX_PATH_MAX)));
        let error = client_error(&format!("unix:@{}", "a".repeat(UNIX_PATH_MAX + 1)));
        assert_eq!(error.field(), Some("path"));
        assert_eq!(
            error.problem(),
            format!(
                "unix path too long: {} bytes, the limit is {UNIX_PATH_MAX}",
                UNIX_PATH_MAX + 1
            )
        );
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_linux_limit_is_107_bytes() {
        let error = server_error(&format!("unix:/{}", "a".repeat(107)));
        assert_eq!(
            error.problem(),
            "unix path too long: 108 bytes, the limit is 107"
        );
    }

    #[test]
    fn a_unix_path_is_not_empty() {
        let error = server_error("unix:");
        assert_eq!(error.field(), Some("address"));
        assert_eq!(error.problem(), "field address: empty path");
        assert_eq!(server_error("unix").problem(), "missing field address");
        assert_eq!(
            server_error("unix:@").problem(),
            "field address: an abstract name needs at least one byte after @"
        );
    }

    // TLS servers.

    #[test]
    fn a_tls_server_takes_its_certificate_from_the_private_key_file_by_default() {
        assert_eq!(
            server("tls:443:privateKey=server.pem"),
            ServerDescription::Tls {
                interface: Ipv4Addr::UNSPECIFIED.into(),
                port: 443,
                backlog: 50,
                private_key: "server.pem".into(),
                cert_key: "server.pem".into(),
            }
        );
    }

    #[test]
    fn a_tls_server_takes_all_its_fields() {
        assert_eq!(
            server(
                r"tls:privateKey=/k\:ey.pem:certKey=cert.pem:interface=\:\::backlog=9:port=8443"
            ),
            ServerDescription::Tls {
                interface: Ipv6Addr::UNSPECIFIED.into(),
                port: 8443,
                backlog: 9,
                private_key: "/k:ey.pem".into(),
                cert_key: "cert.pem".into(),
            }
        );
    }

    #[test]
    fn a_tls_server_needs_a_private_key() {
        let error = server_error("tls:443");
        assert_eq!(error.field(), Some("privateKey"));
        assert_eq!(
            error.to_string(),
            r#"endpoint "tls:443": missing field privateKey"#
        );
        assert_eq!(
            server_error("tls:443:privateKey=").problem(),
            "field privateKey: empty file name"
        );
    }

    #[test]
    fn a_tls_server_rejects_fields_not_yet_supported() {
        let error = server_error("tls:443:privateKey=k.pem:extraCertChain=chain.pem");
        assert_eq!(error.field(), Some("extraCertChain"));
        assert_eq!(
            error.problem(),
            r#"unknown field "extraCertChain" (a tls server knows port, interface, backlog, privateKey, certKey)"#
        );
    }

    // TCP clients.

    #[test]
    fn a_tcp_client_takes_host_and_port_by_position_or_keyword() {
        let expected = tcp_client("example.com", 80);
        assert_eq!(client("tcp:example.com:80"), expected);
        assert_eq!(client("tcp:host=example.com:port=80"), expected);
        assert_eq!(client("tcp:port=80:host=example.com"), expected);
        assert_eq!(client("tcp:host=example.com:80"), expected);
        assert_eq!(client("tcp:example.com:port=80"), expected);
        assert_eq!(client("tcp:port=80:example.com"), expected);
    }

    #[test]
    fn a_tcp_client_waits_30_seconds_by_default() {
        let ClientDescription::Tcp { timeout, .. } = client("tcp:example.com:80") else {
            panic!("not a tcp client");
        };
        assert_eq!(timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_tcp_client_takes_a_timeout_in_whole_or_decimal_seconds_and_a_bind_address() {
        assert_eq!(
            client("tcp:example.com:80:timeout=2.5:bindAddress=192.0.2.1"),
            ClientDescription::Tcp {
                host: "example.com".into(),
                port: 80,
                timeout: Duration::from_millis(2500),
                bind_address: Some("192.0.2.1".parse().unwrap()),
            }
        );
        let ClientDescription::Tcp { timeout, .. } = client("tcp:h:1:timeout=0.000000001") else {
            panic!("not a tcp client");
        };
        assert_eq!(timeout, Duration::from_nanos(1));
        let ClientDescription::Tcp { timeout, .. } = client("tcp:h:1:timeout=10") else {
            panic!("not a tcp client");
        };
        assert_eq!(timeout, Duration::from_secs(10));
    }

    #[test]
    fn an_ipv6_host_is_escaped_or_in_brackets() {
        let expected = tcp_client("::1", 8007);
        assert_eq!(client(r"tcp:\:\:1:8007"), expected);
        assert_eq!(client("tcp:host=[::1]:port=8007"), expected);
        assert_eq!(client(r"tcp:[\:\:1]:8007"), expected);
        assert_eq!(client("tcp:[::1]:8007"), expected);
        let ClientDescription::Tcp { bind_address, .. } =
            client(r"tcp:\:\:1:8007:bindAddress=\:\:1")
        else {
            panic!("not a tcp client");
        };
        assert_eq!(bind_address, Some(Ipv6Addr::LOCALHOST.into()));
    }

    #[test]
    fn a_tcp_client_needs_a_host_and_a_port_to_connect_to() {
        let error = client_error("tcp:example.com");
        assert_eq!(error.field(), Some("port"));
        assert_eq!(
            error.to_string(),
            r#"endpoint "tcp:example.com": missing field port"#
        );
        assert_eq!(client_error("tcp:port=80").problem(), "missing field host");
        assert_eq!(
            client_error("tcp::80").problem(),
            r#"field host: "" is not a host name"#
        );
        assert_eq!(
            client_error("tcp:example.com:0").problem(),
            r#"field port: "0" is not a port number to connect to (1-65535)"#
        );
        assert_eq!(
            client_error("tcp:example.com:http").problem(),
            r#"field port: "http" is not a port number to connect to (1-65535)"#
        );
    }

    #[test]
    fn a_timeout_is_a_plain_number_of_seconds() {
        for bad in [
            "",
            "soon",
            "-1",
            "1e3",
            "inf",
            ".5",
            "5.",
            "1.2.3",
            "0.0000000001",
        ] {
            let error = client_error(&format!("tcp:h:1:timeout={bad}"));
            assert_eq!(error.field(), Some("timeout"));
            assert_eq!(
                error.problem(),
                format!("field timeout: \"{bad}\" is not a number of seconds (such as 30 or 2.5)")
            );
        }
    }

    #[test]
    fn a_bind_address_is_an_ip_address() {
        let error = client_error("tcp:h:1:bindAddress=localhost");
        assert_eq!(error.field(), Some("bindAddress"));
        assert_eq!(
            error.problem(),
            r#"field bindAddress: "localhost" is not an IP address"#
        );
    }

    #[test]
    fn a_tcp_client_rejects_unknown_and_extra_fields() {
        let error = client_error("tcp:h:1:foo=bar");
        assert_eq!(error.field(), Some("foo"));
        assert_eq!(
            error.problem(),
            r#"unknown field "foo" (a tcp client knows host, port, timeout, bindAddress)"#
        );
        assert_eq!(
            client_error("tcp:h:1:2").problem(),
            r#"too many positional fields: "2" (a tcp client takes host, then port by position)"#
        );
        assert_eq!(
            client_error("tcp:h:1:timeout=1:timeout=2").field(),
            Some("timeout")
        );
    }

    // Unix clients.

    #[test]
    fn a_unix_client_takes_a_path_by_position_or_keyword() {
        let expected = ClientDescription::Unix {
            address: unix_file("/run/app.sock"),
            timeout: DEFAULT_TIMEOUT,
            lockfile: false,
        };
        assert_eq!(client("unix:/run/app.sock"), expected);
        assert_eq!(client("unix:path=/run/app.sock"), expected);
    }

    #[test]
    fn a_unix_client_takes_a_timeout_and_a_lockfile_check() {
        assert_eq!(
            client("unix:path=/run/app.sock:timeout=9:lockfile=1"),
            ClientDescription::Unix {
                address: unix_file("/run/app.sock"),
                timeout: Duration::from_secs(9),
                lockfile: true,
            }
        );
    }

    #[test]
    fn a_unix_client_names_its_path_field_path() {
        assert_eq!(client_error("unix:address=/s").field(), Some("address"));
        assert_eq!(client_error("unix:").problem(), "field path: empty path");
        assert_eq!(
            client_error("unix:timeout=1").problem(),
            "missing field path"
        );
    }

    // TLS clients.

    #[test]
    fn a_tls_client_checks_the_host_name_against_the_platform_roots_by_default() {
        assert_eq!(
            client("tls:example.com:443"),
            ClientDescription::Tls {
                host: "example.com".into(),
                port: 443,
                timeout: DEFAULT_TIMEOUT,
                bind_address: None,
                hostname: "example.com".into(),
                trust_roots: None,
                certificate: None,
                private_key: None,
            }
        );
    }

    #[test]
    fn a_tls_client_takes_all_its_fields() {
        assert_eq!(
            client(
                "tls:host=10.0.0.1:port=8443:timeout=1.25:bindAddress=10.0.0.2:hostname=db.internal\
                 :trustRoots=ca.pem:certificate=client.pem:privateKey=client.key"
            ),
            ClientDescription::Tls {
                host: "10.0.0.1".into(),
                port: 8443,
                timeout: Duration::from_millis(1250),
                bind_address: Some("10.0.0.2".parse().unwrap()),
                hostname: "db.internal".into(),
                trust_roots: Some("ca.pem".into()),
                certificate: Some("client.pem".into()),
                private_key: Some("client.key".into()),
            }
        );
    }

    #[test]
    fn a_client_certificate_without_a_private_key_holds_both() {
        let ClientDescription::Tls {
            certificate,
            private_key,
            ..
        } = client("tls:h:1:certificate=both.pem")
        else {
            panic!("not a tls client");
        };
        assert_eq!(certificate, Some("both.pem".into()));
        assert_eq!(private_key, Some("both.pem".into()));
    }

    #[test]
    fn a_client_private_key_needs_a_certificate() {
        let error = client_error("tls:h:1:privateKey=k.pem");
        assert_eq!(error.field(), Some("privateKey"));
        assert_eq!(
            error.problem(),
            "field privateKey: a private key needs a certificate"
        );
    }

    #[test]
    fn a_tls_client_rejects_twisted_ssl_fields_it_does_not_support() {
        let error = client_error("ssl:h:1:caCertsDir=/etc/ssl/certs");
        assert_eq!(error.field(), Some("caCertsDir"));
        assert!(error
            .problem()
            .starts_with(r#"unknown field "caCertsDir" (a tls client knows "#));
        assert_eq!(
            client_error("tls:h:1:hostname=").problem(),
            r#"field hostname: "" is not a host name"#
        );
    }

    // Errors.

    #[test]
    fn an_endpoint_error_is_an_invalid_input_io_error() {
        let error = server_error("tcp:80x");
        let message = error.to_string();
        let io_error: io::Error = error.into();
        assert_eq!(io_error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(io_error.to_string(), message);
    }

    // Writing back.

    #[test]
    fn display_writes_the_shortest_endpoint_string() {
        assert_eq!(server("TCP:port=8007:backlog=50").to_string(), "tcp:8007");
        assert_eq!(
            server(r"tcp:80:interface=[::1]").to_string(),
            r"tcp:80:interface=\:\:1"
        );
        assert_eq!(
            server("unix:address=/s:mode=666:lockfile=1").to_string(),
            "unix:/s"
        );
        assert_eq!(
            server("unix:/s:mode=0o600:lockfile=0").to_string(),
            "unix:/s:mode=600:lockfile=0"
        );
        assert_eq!(
            server("ssl:443:privateKey=k.pem:certKey=k.pem").to_string(),
            "tls:443:privateKey=k.pem"
        );
        assert_eq!(
            client("tcp:host=[::1]:port=80:timeout=30.0").to_string(),
            r"tcp:\:\:1:80"
        );
        assert_eq!(
            client("tcp:h:80:timeout=0.50").to_string(),
            "tcp:h:80:timeout=0.5"
        );
        assert_eq!(client("unix:path=/a=b").to_string(), r"unix:/a\=b");
        assert_eq!(
            client("tls:h:1:hostname=h:certificate=c.pem:privateKey=c.pem").to_string(),
            "tls:h:1:certificate=c.pem"
        );
    }

    #[test]
    fn a_relative_unix_path_starting_with_at_is_written_so_it_stays_a_file() {
        let description = ServerDescription::Unix {
            address: unix_file("@not-abstract"),
            mode: DEFAULT_UNIX_MODE,
            backlog: DEFAULT_BACKLOG,
            lockfile: true,
        };
        assert_eq!(description.to_string(), "unix:./@not-abstract");
        let ServerDescription::Unix { address, .. } = server(&description.to_string()) else {
            panic!("not a unix server");
        };
        assert_eq!(address, unix_file("./@not-abstract"));
    }

    #[test]
    fn parsing_what_display_writes_gives_the_same_description() {
        let servers = [
            "tcp:8007",
            "tcp:0:interface=127.0.0.1:backlog=1",
            r"tcp:8007:interface=\:\:1:backlog=4096",
            r"unix:/tmp/odd\:name\=x\\y:mode=0:backlog=3:lockfile=0",
            "unix:@abstract:mode=600",
            r"tls:443:privateKey=/etc/k\:ey.pem:certKey=/etc/cert.pem:interface=[::]",
            "ssl:443:privateKey=both.pem",
        ];
        for text in servers {
            let parsed = server(text);
            assert_eq!(server(&parsed.to_string()), parsed, "{text} -> {parsed}");
            assert_eq!(
                parsed.to_string().parse::<ServerDescription>().unwrap(),
                parsed
            );
        }
        let clients = [
            "tcp:example.com:80",
            r"tcp:\:\:1:8007:timeout=0.001:bindAddress=\:\:1",
            "tcp:host=a=b:port=1:timeout=123456.789",
            "unix:/run/app.sock:timeout=9:lockfile=1",
            r"unix:path=@x\:y",
            "tls:example.com:443",
            "tls:10.0.0.1:8443:timeout=1.25:bindAddress=10.0.0.2:hostname=db.internal\
             :trustRoots=ca.pem:certificate=client.pem:privateKey=client.key",
            "tls:h:1:certificate=both.pem",
        ];
        for text in clients {
            let parsed = client(text);
            assert_eq!(client(&parsed.to_string()), parsed, "{text} -> {parsed}");
            assert_eq!(
                parsed.to_string().parse::<ClientDescription>().unwrap(),
                parsed
            );
        }
    }

    // Plain addresses or endpoint strings.

    #[test]
    fn a_server_takes_an_ip_socket_address_or_an_endpoint_string() {
        assert_eq!(
            parse_server_or_addr("127.0.0.1:8007").unwrap(),
            tcp_server("127.0.0.1", 8007, 50)
        );
        assert_eq!(
            parse_server_or_addr("[::1]:8007").unwrap(),
            tcp_server("::1", 8007, 50)
        );
        assert_eq!(
            parse_server_or_addr("tcp:8007").unwrap(),
            tcp_server("0.0.0.0", 8007, 50)
        );
        assert_eq!(parse_server_or_addr("unix:/s").unwrap(), server("unix:/s"));
    }

    #[test]
    fn a_server_does_not_take_a_host_name() {
        let error = parse_server_or_addr("localhost:8007").unwrap_err();
        assert_eq!(
            error.problem(),
            r#"unknown endpoint type "localhost" (tcp, unix, tls or ssl), and not an address such as 127.0.0.1:8007"#
        );
        assert_eq!(
            parse_server_or_addr("8007").unwrap_err().problem(),
            r#"unknown endpoint type "8007" (tcp, unix, tls or ssl), and not an address such as 127.0.0.1:8007"#
        );
        assert_eq!(
            parse_server_or_addr("tcp:80x").unwrap_err().field(),
            Some("port")
        );
    }

    #[test]
    fn a_client_takes_host_and_port_or_an_endpoint_string() {
        assert_eq!(
            parse_client_or_addr("127.0.0.1:8007").unwrap(),
            tcp_client("127.0.0.1", 8007)
        );
        assert_eq!(
            parse_client_or_addr("[::1]:8007").unwrap(),
            tcp_client("::1", 8007)
        );
        assert_eq!(
            parse_client_or_addr("localhost:8007").unwrap(),
            tcp_client("localhost", 8007)
        );
        assert_eq!(
            parse_client_or_addr("tcp:localhost:8007").unwrap(),
            tcp_client("localhost", 8007)
        );
        assert_eq!(parse_client_or_addr("unix:/s").unwrap(), client("unix:/s"));
        assert_eq!(
            parse_client_or_addr("TLS:example.com:443").unwrap(),
            client("tls:example.com:443")
        );
    }

    #[test]
    fn a_client_address_that_starts_with_an_endpoint_type_is_an_endpoint_string() {
        assert_eq!(
            parse_client_or_addr("tcp:8007").unwrap_err().problem(),
            "missing field port"
        );
        assert_eq!(
            parse_client_or_addr("unix:8007").unwrap(),
            client("unix:8007")
        );
    }

    #[test]
    fn a_client_address_needs_a_port_to_connect_to() {
        let error = parse_client_or_addr("localhost:0").unwrap_err();
        assert_eq!(error.field(), Some("port"));
        assert_eq!(
            error.problem(),
            r#"field port: "0" is not a port number to connect to (1-65535)"#
        );
        assert_eq!(
            parse_client_or_addr("127.0.0.1:0").unwrap_err().problem(),
            r#"field port: "0" is not a port number to connect to (1-65535)"#
        );
        assert_eq!(
            parse_client_or_addr("localhost:99999")
                .unwrap_err()
                .problem(),
            r#"field port: "99999" is not a port number to connect to (1-65535)"#
        );
        assert_eq!(
            parse_client_or_addr("localhost").unwrap_err().problem(),
            r#"unknown endpoint type "localhost" (tcp, unix, tls or ssl), and not an address such as localhost:8007"#
        );
    }
}
