//! Where a TCP client connects: a host (an IP address or a name still to
//! resolve) and a port.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::address::Address;

/// A host and a port, as given: an IP address, or a name that is resolved
/// off the reactor thread when a connection starts (Twisted's
/// `HostnameEndpoint` takes the same pair).
///
/// # Examples
///
/// ```
/// use twill::net::ToHostPort;
///
/// let dest = "example.org:80".to_host_port()?;
/// assert_eq!((dest.host(), dest.port()), ("example.org", 80));
/// assert_eq!(dest.ip(), None);
///
/// let literal = "[::1]:8007".to_host_port()?;
/// assert_eq!(literal.ip(), Some("::1".parse().unwrap()));
/// assert_eq!(literal.to_string(), "[::1]:8007");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: String,
    port: u16,
    /// An IPv6 address's interface (`fe80::1%2`), kept from the
    /// `SocketAddrV6` it came from: a link-local address needs it.
    scope_id: u32,
}

impl HostPort {
    /// A host (name or IP address, without brackets) and a port.
    pub fn new(host: impl Into<String>, port: u16) -> HostPort {
        let host = host.into();
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(inner) => inner.to_owned(),
            None => host,
        };
        HostPort {
            host,
            port,
            scope_id: 0,
        }
    }

    /// The host as given.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an IP address, when it is one: such a destination
    /// connects at once, with no resolution.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The socket address, when the host is an IP address (with its
    /// scope, for a scoped IPv6 address).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.ip()? {
            IpAddr::V6(ip) => Some(SocketAddrV6::new(ip, self.port, 0, self.scope_id).into()),
            ip => Some(SocketAddr::new(ip, self.port)),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scope_id != 0 {
            write!(f, "[{}%{}]:{}", self.host, self.scope_id, self.port)
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What a TCP client can be pointed at: like [`std::net::ToSocketAddrs`],
/// but nothing is resolved here, so a name never blocks the reactor.
pub trait ToHostPort {
    /// The host and port.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when a string is not `HOST:PORT` (an IPv6 address in
    /// brackets: `[::1]:80`).
    fn to_host_port(&self) -> io::Result<HostPort>;
}

impl ToHostPort for HostPort {
    fn to_host_port(&self) -> io::Result<HostPort> {
        Ok(self.clone())
    }
}

impl ToHostPort for SocketAddr {
    fn to_host_port(&self) -> io::Result<HostPort> {
        let mut dest = HostPort::new(self.ip().to_string(), self.port());
        if let SocketAddr::V6(v6) = self {
            dest.scope_id = v6.scope_id();
        }
        Ok(dest)
    }
}

impl ToHostPort for SocketAddrV4 {
    fn to_host_port(&self) -> io::Result<HostPort> {
        SocketAddr::V4(*self).to_host_port()
    }
}

impl ToHostPort for SocketAddrV6 {
    fn to_host_port(&self) -> io::Result<HostPort> {
        SocketAddr::V6(*self).to_host_port()
    }
}

impl ToHostPort for Address {
    fn to_host_port(&self) -> io::Result<HostPort> {
        match self {
            Address::Tcp(addr) => addr.to_host_port(),
            Address::Unix(addr) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr} is a Unix socket, not a TCP address"),
            )),
        }
    }
}

impl<H: AsRef<str>> ToHostPort for (H, u16) {
    fn to_host_port(&self) -> io::Result<HostPort> {
        Ok(HostPort::new(self.0.as_ref(), self.1))
    }
}

impl ToHostPort for str {
    fn to_host_port(&self) -> io::Result<HostPort> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return addr.to_host_port();
        }
        let invalid = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{self:?} is not HOST:PORT"),
            )
        };
        let (host, port) = self.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        if host.is_empty() || host.contains(':') {
            return Err(invalid());
        }
        Ok(HostPort::new(host, port))
    }
}

impl ToHostPort for String {
    fn to_host_port(&self) -> io::Result<HostPort> {
        self.as_str().to_host_port()
    }
}

impl<T: ToHostPort + ?Sized> ToHostPort for &T {
    fn to_host_port(&self) -> io::Result<HostPort> {
        (**self).to_host_port()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_parse_as_host_and_port_without_resolving() {
        let dest = "localhost:80".to_host_port().unwrap();
        assert_eq!(dest, HostPort::new("localhost", 80));
        assert_eq!(dest.ip(), None);
        let v6 = "[::1]:443".to_host_port().unwrap();
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.socket_addr(), Some("[::1]:443".parse().unwrap()));
        for bad in ["localhost", "localhost:http", ":80", "::1:80", "host:99999"] {
            let err = bad.to_host_port().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn tuples_and_socket_addresses_convert() {
        assert_eq!(
            ("example.org", 8007).to_host_port().unwrap().to_string(),
            "example.org:8007"
        );
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(addr.to_host_port().unwrap().socket_addr(), Some(addr));
    }
}
