//! Reading endpoint strings: fields, escapes, keywords, and the checks
//! that name the field at fault.

use super::*;

/// Parses a server endpoint string: `tcp:PORT`, `unix:PATH`, `tls:PORT:...`
/// with their keyword fields (see the [module documentation](super)).
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
/// [module documentation](super)).
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
pub(super) enum Field {
    Positional(String),
    Keyword(String, String),
}

/// Splits on unescaped `:`, and each field on its first unescaped `=`, as
/// Twisted's tokenizer does; beyond Twisted, a value that opens with `[`
/// keeps its colons up to the `]`, for IPv6 addresses.
pub(super) fn split_fields(description: &str) -> Result<Vec<Field>, EndpointError> {
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

    fn unix_path(&self, name: &str, value: &str) -> Result<UnixAddress, EndpointError> {
        let (address, length) = match value.strip_prefix('@') {
            Some(abstract_name) => {
                if abstract_name.is_empty() {
                    return Err(self.error(
                        name,
                        format!("field {name}: an abstract name needs at least one byte after @"),
                    ));
                }
                (
                    UnixAddress::Abstract(abstract_name.as_bytes().to_vec()),
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
                (UnixAddress::Path(PathBuf::from(value)), value.len())
            }
        };
        if length > MAX_UNIX_PATH {
            return Err(self.error(
                name,
                format!("unix path too long: {length} bytes, the limit is {MAX_UNIX_PATH}"),
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
