//! Listening and connecting where an endpoint string says:
//! [`Reactor::server_from_string`] and [`Reactor::client_from_string`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::{parse_client_or_addr, parse_server_or_addr, ClientDescription, ServerDescription};
use crate::net::{Connector, DynClientFactory, HostPort, ListeningPort, UnixAddress};
use crate::protocol::{ClientFactory, Factory};
use crate::reactor::Reactor;

impl Reactor {
    /// Listens where `description` says and serves each connection with a
    /// protocol from `factory`: Twisted's `serverFromString(...).listen`.
    /// `description` is an endpoint string (`tcp:8007:interface=127.0.0.1`,
    /// `unix:/run/app.sock:mode=660`, `tls:8443:privateKey=key.pem`; see
    /// [`endpoint`](super)) or a plain socket address (`127.0.0.1:8007`),
    /// so a program can take either on its command line.
    ///
    /// # Errors
    ///
    /// `InvalidInput` with the [`EndpointError`](super::EndpointError)
    /// (which names the bad field) for a string that does not parse, and
    /// for `tls:` without the `tls` feature; any error of listening itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use twill::{Protocol, Reactor};
    ///
    /// struct Discard;
    /// impl Protocol for Discard {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let port = reactor.server_from_string("tcp:0:interface=127.0.0.1", |_peer| Discard)?;
    /// assert_ne!(port.host().port(), Some(0));
    ///
    /// let bad = reactor.server_from_string("tcp:80x", |_peer| Discard).unwrap_err();
    /// assert!(bad.to_string().contains("field port"), "{bad}");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn server_from_string(
        &self,
        description: &str,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        match parse_server_or_addr(description)? {
            ServerDescription::Tcp {
                interface,
                port,
                backlog,
            } => self.listen_tcp_with(
                SocketAddr::new(interface, port),
                clamp_backlog(backlog),
                false,
                Box::new(factory),
            ),
            ServerDescription::Unix {
                address,
                mode,
                backlog,
                lockfile,
            } => {
                refuse_abstract_outside_linux(&address)?;
                self.listen_unix_with(address, mode, clamp_backlog(backlog), lockfile, factory)
            }
            ServerDescription::Tls {
                interface,
                port,
                backlog,
                private_key,
                cert_key,
            } => self.listen_tcp_with(
                SocketAddr::new(interface, port),
                clamp_backlog(backlog),
                false,
                tls::server_factory(&private_key, &cert_key, factory)?,
            ),
        }
    }

    /// Connects where `description` says, reporting to `factory` as
    /// [`connect_tcp`](Self::connect_tcp) does: Twisted's
    /// `clientFromString(...).connect`. `description` is an endpoint
    /// string (`tcp:example.org:80:timeout=10`, `unix:/run/app.sock`,
    /// `tls:example.org:443`; see [`endpoint`](super)) or a plain
    /// `HOST:PORT`.
    ///
    /// # Errors
    ///
    /// As [`server_from_string`](Self::server_from_string); failures to
    /// connect reach the factory.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use twill::{Protocol, Reactor};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let port = reactor.server_from_string("tcp:0:interface=127.0.0.1", |_peer| Quiet)?;
    /// let there = format!("tcp:127.0.0.1:{}:timeout=5", port.host().port().unwrap());
    /// let connector = reactor.client_from_string(&there, |_peer| Quiet)?;
    /// assert_eq!(connector.destination(), port.host().tcp().unwrap());
    ///
    /// let bad = reactor.client_from_string("tcp:127.0.0.1:80:timeout=soon", |_peer| Quiet);
    /// assert!(bad.unwrap_err().to_string().contains("field timeout"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn client_from_string(
        &self,
        description: &str,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        match parse_client_or_addr(description)? {
            ClientDescription::Tcp {
                host,
                port,
                timeout,
                bind_address,
            } => self.connect_tcp_from(
                HostPort::new(host, port),
                timeout,
                bind_address,
                Box::new(factory),
            ),
            ClientDescription::Unix {
                address,
                timeout,
                lockfile,
            } => {
                refuse_abstract_outside_linux(&address)?;
                self.connect_unix_with(address, timeout, lockfile, factory)
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
                let client = tls::ClientFiles {
                    hostname,
                    trust_roots,
                    certificate,
                    private_key,
                };
                let factory = tls::client_factory(description, client, factory)?;
                self.connect_tcp_from(HostPort::new(host, port), timeout, bind_address, factory)
            }
        }
    }

    fn connect_tcp_from(
        &self,
        dest: HostPort,
        timeout: Duration,
        bind_address: Option<std::net::IpAddr>,
        factory: Box<dyn DynClientFactory>,
    ) -> io::Result<Connector> {
        let bind = bind_address.map(|ip| SocketAddr::new(ip, 0));
        self.connect_tcp_with(dest, timeout, bind, factory)
    }
}

/// The OS takes a backlog as an `int`.
fn clamp_backlog(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}

fn refuse_abstract_outside_linux(address: &UnixAddress) -> io::Result<()> {
    if matches!(address, UnixAddress::Abstract(_))
        && !cfg!(any(target_os = "linux", target_os = "android"))
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{address}: abstract socket names exist only on Linux"),
        ));
    }
    Ok(())
}

/// What a `tls:` string needs from the `tls` feature: a factory wrapped
/// in TLS, from the PEM files it names.
mod tls {
    use std::io;
    use std::path::{Path, PathBuf};

    use crate::net::{DynClientFactory, DynFactory};
    use crate::protocol::{ClientFactory, Factory};

    /// A client's TLS files and the name it checks the server for.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(super) struct ClientFiles {
        pub(super) hostname: String,
        pub(super) trust_roots: Option<PathBuf>,
        pub(super) certificate: Option<PathBuf>,
        pub(super) private_key: Option<PathBuf>,
    }

    #[cfg(feature = "tls")]
    pub(super) fn server_factory(
        private_key: &Path,
        cert_key: &Path,
        factory: impl Factory,
    ) -> io::Result<Box<dyn DynFactory>> {
        use crate::tls::{config, StartTls, TlsAcceptor, TlsFactory};
        let server = config::server_config(
            config::certs_from_pem_file(cert_key)?,
            config::key_from_pem_file(private_key)?,
        )?;
        let side = StartTls::Server(TlsAcceptor::new(server));
        Ok(Box::new(TlsFactory::new(side, factory)))
    }

    #[cfg(feature = "tls")]
    pub(super) fn client_factory(
        description: &str,
        files: ClientFiles,
        factory: impl ClientFactory,
    ) -> io::Result<Box<dyn DynClientFactory>> {
        use crate::tls::{config, StartTls, TlsConnector, TlsFactory};
        let client = match (files.trust_roots, files.certificate) {
            (Some(roots), None) => {
                config::client_config_trusting(config::certs_from_pem_file(roots)?)?
            }
            (None, None) => config::client_config_with_platform_roots()?,
            (Some(roots), Some(certificate)) => {
                let key = files.private_key.unwrap_or_else(|| certificate.clone());
                config::client_config_with_client_auth(
                    config::certs_from_pem_file(roots)?,
                    config::certs_from_pem_file(&certificate)?,
                    config::key_from_pem_file(key)?,
                )?
            }
            (None, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "endpoint {description:?}: field trustRoots: a client \
                         certificate needs the CA certificates to trust"
                    ),
                ))
            }
        };
        let side = StartTls::client(TlsConnector::new(client), &files.hostname)?;
        Ok(Box::new(TlsFactory::new(side, factory)))
    }

    #[cfg(not(feature = "tls"))]
    pub(super) fn server_factory(
        _private_key: &Path,
        _cert_key: &Path,
        _factory: impl Factory,
    ) -> io::Result<Box<dyn DynFactory>> {
        Err(unavailable())
    }

    #[cfg(not(feature = "tls"))]
    pub(super) fn client_factory(
        _description: &str,
        _files: ClientFiles,
        _factory: impl ClientFactory,
    ) -> io::Result<Box<dyn DynClientFactory>> {
        Err(unavailable())
    }

    #[cfg(not(feature = "tls"))]
    fn unavailable() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "tls: endpoints need twill's `tls` feature",
        )
    }
}
