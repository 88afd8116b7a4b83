//! The address of one end of a connection: TCP over IPv4 or IPv6, or a
//! Unix domain socket.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use socket2::SockAddr;

/// The longest Unix socket path, in bytes: `sun_path` holds 108 bytes on
/// Linux (104 on the BSDs), one of them the terminating NUL.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const MAX_UNIX_PATH: usize = 107;
/// The longest Unix socket path, in bytes: `sun_path` holds 104 bytes here,
/// one of them the terminating NUL.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const MAX_UNIX_PATH: usize = 103;

/// Where one end of a connection is: Twisted's `IPv4Address`,
/// `IPv6Address` and `UNIXAddress` in one type.
///
/// [`Factory::build_protocol`](crate::Factory::build_protocol) gets the
/// peer's, [`Transport::peer`](crate::Transport::peer) and
/// [`Transport::host`](crate::Transport::host) give both ends'.
///
/// An `Address` compares equal to the [`SocketAddr`] it holds, and it is
/// [`ToSocketAddrs`], so a listening port's address can be handed to any
/// TCP client (a Unix address gives an `InvalidInput` error there).
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use twill::net::{Address, UnixAddress};
///
/// let tcp = Address::from(SocketAddr::from(([127, 0, 0, 1], 8007)));
/// assert_eq!(tcp.port(), Some(8007));
/// assert_eq!(tcp.to_string(), "127.0.0.1:8007");
///
/// let unix = Address::Unix(UnixAddress::Path("/run/app.sock".into()));
/// assert_eq!(unix.port(), None);
/// assert_eq!(unix.to_string(), "unix:/run/app.sock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP (or UDP) address, IPv4 or IPv6.
    Tcp(SocketAddr),
    /// A Unix domain socket.
    Unix(UnixAddress),
}

/// Where a Unix domain socket is: Twisted's `UNIXAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnixAddress {
    /// A socket file in the file system.
    Path(PathBuf),
    /// A name in Linux's abstract namespace (written `@name`): no file,
    /// gone when the last socket bound to it closes.
    Abstract(Vec<u8>),
    /// A socket bound to no name: a client's end, or one of a
    /// `socketpair`.
    Unnamed,
}

impl Address {
    /// The IP address, for TCP.
    pub fn ip(&self) -> Option<IpAddr> {
        self.tcp().map(|addr| addr.ip())
    }

    /// The port, for TCP.
    pub fn port(&self) -> Option<u16> {
        self.tcp().map(|addr| addr.port())
    }

    /// The socket address, for TCP.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(addr) => Some(*addr),
            Address::Unix(_) => None,
        }
    }

    /// The Unix address, for a Unix domain socket.
    pub fn unix(&self) -> Option<&UnixAddress> {
        match self {
            Address::Tcp(_) => None,
            Address::Unix(addr) => Some(addr),
        }
    }

    /// Reads a socket's address as the OS gave it.
    pub(crate) fn from_sock_addr(addr: &SockAddr) -> Address {
        match addr.as_socket() {
            Some(tcp) => Address::Tcp(tcp),
            None => Address::Unix(UnixAddress::from_sock_addr(addr)),
        }
    }
}

impl UnixAddress {
    /// Parses `@name` as an abstract name (on Linux) and anything else as
    /// a path. A path that begins with `@` can be given as `./@name`.
    pub fn parse(text: &str) -> UnixAddress {
        match text.strip_prefix('@') {
            Some(name) if cfg!(any(target_os = "linux", target_os = "android")) => {
                UnixAddress::Abstract(name.as_bytes().to_vec())
            }
            _ => UnixAddress::Path(PathBuf::from(text)),
        }
    }

    /// The path, for a socket file.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            UnixAddress::Path(path) => Some(path),
            _ => None,
        }
    }

    /// The OS's form of this address, checked for length.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a path or name longer than [`MAX_UNIX_PATH`]
    /// bytes, an empty path, or an unnamed address.
    pub(crate) fn to_sock_addr(&self) -> io::Result<SockAddr> {
        use std::os::unix::ffi::OsStrExt;
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        match self {
            UnixAddress::Path(path) => {
                let len = path.as_os_str().len();
                if len == 0 {
                    return Err(invalid("an empty Unix socket path".into()));
                }
                if len > MAX_UNIX_PATH {
                    return Err(invalid(format!(
                        "Unix socket path too long: {len} bytes, the limit is {MAX_UNIX_PATH}: {}",
                        path.display()
                    )));
                }
                SockAddr::unix(path)
            }
            UnixAddress::Abstract(name) => {
                if name.is_empty() {
                    return Err(invalid("an empty abstract socket name".into()));
                }
                if name.len() > MAX_UNIX_PATH {
                    return Err(invalid(format!(
                        "abstract socket name too long: {} bytes, the limit is {MAX_UNIX_PATH}",
                        name.len()
                    )));
                }
                let mut bytes = Vec::with_capacity(name.len() + 1);
                bytes.push(0);
                bytes.extend_from_slice(name);
                SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))
            }
            UnixAddress::Unnamed => Err(invalid("an unnamed Unix socket has no address".into())),
        }
    }

    fn from_sock_addr(addr: &SockAddr) -> UnixAddress {
        if let Some(path) = addr.as_pathname() {
            return UnixAddress::Path(path.to_path_buf());
        }
        if let Some(name) = addr.as_abstract_namespace() {
            return UnixAddress::Abstract(name.to_vec());
        }
        UnixAddress::Unnamed
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

impl From<UnixAddress> for Address {
    fn from(addr: UnixAddress) -> Address {
        Address::Unix(addr)
    }
}

impl From<&str> for UnixAddress {
    /// As [`UnixAddress::parse`].
    fn from(text: &str) -> UnixAddress {
        UnixAddress::parse(text)
    }
}

impl From<String> for UnixAddress {
    /// As [`UnixAddress::parse`].
    fn from(text: String) -> UnixAddress {
        UnixAddress::parse(&text)
    }
}

impl From<&Path> for UnixAddress {
    fn from(path: &Path) -> UnixAddress {
        UnixAddress::Path(path.to_path_buf())
    }
}

impl From<PathBuf> for UnixAddress {
    fn from(path: PathBuf) -> UnixAddress {
        UnixAddress::Path(path)
    }
}

impl From<&PathBuf> for UnixAddress {
    fn from(path: &PathBuf) -> UnixAddress {
        UnixAddress::Path(path.clone())
    }
}

impl std::str::FromStr for Address {
    type Err = io::Error;

    /// Reads what [`Display`](fmt::Display) writes: `127.0.0.1:8007`,
    /// `[::1]:8007`, `unix:/run/app.sock`, `unix:@name`.
    fn from_str(text: &str) -> io::Result<Address> {
        if let Some(unix) = text.strip_prefix("unix:") {
            if unix == UNNAMED {
                return Ok(Address::Unix(UnixAddress::Unnamed));
            }
            if unix.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an empty Unix address",
                ));
            }
            return Ok(Address::Unix(UnixAddress::parse(unix)));
        }
        text.parse::<SocketAddr>().map(Address::Tcp).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{text:?} is neither IP:PORT nor unix:PATH"),
            )
        })
    }
}

impl PartialEq<SocketAddr> for Address {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.tcp() == Some(*other)
    }
}

impl PartialEq<Address> for SocketAddr {
    fn eq(&self, other: &Address) -> bool {
        other == self
    }
}

impl ToSocketAddrs for Address {
    type Iter = std::option::IntoIter<SocketAddr>;

    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        match self {
            Address::Tcp(addr) => Ok(Some(*addr).into_iter()),
            Address::Unix(addr) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr} is a Unix socket, not a TCP address"),
            )),
        }
    }
}

impl fmt::Display for Address {
    /// `127.0.0.1:8007`, `[::1]:8007`, `unix:/run/app.sock`,
    /// `unix:@name`, `unix:(unnamed)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => addr.fmt(f),
            Address::Unix(addr) => write!(f, "unix:{addr}"),
        }
    }
}

/// How an unnamed Unix address is written.
const UNNAMED: &str = "(unnamed)";

impl fmt::Display for UnixAddress {
    /// `/run/app.sock`, `@name` or `(unnamed)`. A relative path that
    /// begins with `@` is written `./@…`, so that it does not read back as
    /// an abstract name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddress::Path(path)
                if path.as_os_str().as_encoded_bytes().first() == Some(&b'@') =>
            {
                write!(f, "./{}", path.display())
            }
            UnixAddress::Path(path) => path.display().fmt(f),
            UnixAddress::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            UnixAddress::Unnamed => f.write_str(UNNAMED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_at_sign_names_the_abstract_namespace_on_linux() {
        if cfg!(target_os = "linux") {
            assert_eq!(
                UnixAddress::parse("@twill"),
                UnixAddress::Abstract(b"twill".to_vec())
            );
        }
        assert_eq!(
            UnixAddress::parse("./@twill"),
            UnixAddress::Path("./@twill".into())
        );
    }

    #[test]
    fn a_path_longer_than_sun_path_is_refused_with_its_length() {
        let long = "/tmp/".to_owned() + &"x".repeat(MAX_UNIX_PATH);
        let err = UnixAddress::parse(&long).to_sock_addr().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("too long"), "{err}");
        let longest = "/".to_owned() + &"x".repeat(MAX_UNIX_PATH - 1);
        UnixAddress::parse(&longest).to_sock_addr().unwrap();
    }

    #[test]
    fn os_addresses_read_back_as_they_were_made() {
        let path = UnixAddress::Path("/tmp/twill.sock".into());
        let read = UnixAddress::from_sock_addr(&path.to_sock_addr().unwrap());
        assert_eq!(read, path);
        if cfg!(target_os = "linux") {
            let name = UnixAddress::Abstract(b"twill-test".to_vec());
            let read = UnixAddress::from_sock_addr(&name.to_sock_addr().unwrap());
            assert_eq!(read, name);
        }
        let tcp = SocketAddr::from(([127, 0, 0, 1], 80));
        assert_eq!(Address::from_sock_addr(&tcp.into()), tcp);
    }

    #[test]
    fn addresses_read_back_what_they_write() {
        for text in [
            "127.0.0.1:8007",
            "[::1]:80",
            "unix:/run/app.sock",
            "unix:@name",
        ] {
            let address: Address = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
        for bad in ["unix:", "localhost:80", "8007"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_unix_address_is_not_a_tcp_destination() {
        let unix = Address::Unix(UnixAddress::Unnamed);
        assert_eq!(
            unix.to_socket_addrs().unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
