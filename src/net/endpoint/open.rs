//! Listening and connecting where an endpoint string says:
//! [`Reactor::server_from_string`] and [`Reactor::client_from_string`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::{parse_client_or_addr, parse_server_or_addr, ClientDescription, ServerDescription};
use crate::net::{Connector, HostPort, ListeningPort, UnixAddress};
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
            } => {
                #[cfg(feature = "tls")]
                {
                    use crate::tls::{config, TlsAcceptor};
                    let server = config::server_config(
                        config::certs_from_pem_file(&cert_key)?,
                        config::key_from_pem_file(&private_key)?,
                    )?;
                    let factory = crate::tls::TlsFactory::new(
                        crate::tls::StartTls::Server(TlsAcceptor::new(server)),
                        factory,
                    );
                    self.listen_tcp_with(
                        SocketAddr::new(interface, port),
                        clamp_backlog(backlog),
                        false,
                        Box::new(factory),
                    )
                }
                #[cfg(not(feature = "tls"))]
                {
                    let _ = (interface, port, backlog, private_key, cert_key, factory);
                    Err(tls_unavailable())
                }
            }
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
            } => self.connect_tcp_from(HostPort::new(host, port), timeout, bind_address, factory),
            ClientDescription::Unix {
                address,
                timeout,
                lockfile: _,
            } => {
                refuse_abstract_outside_linux(&address)?;
                self.connect_unix_with_timeout(address, timeout, factory)
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
                #[cfg(feature = "tls")]
                {
                    use crate::tls::{config, StartTls, TlsConnector, TlsFactory};
                    let client = match (trust_roots, certificate) {
                        (Some(roots), None) => {
                            config::client_config_trusting(config::certs_from_pem_file(roots)?)?
                        }
                        (None, None) => config::client_config_with_platform_roots()?,
                        (Some(roots), Some(certificate)) => {
                            let key = private_key.unwrap_or_else(|| certificate.clone());
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
                    let side = StartTls::client(TlsConnector::new(client), &hostname)?;
                    self.connect_tcp_from(
                        HostPort::new(host, port),
                        timeout,
                        bind_address,
                        TlsFactory::new(side, factory),
                    )
                }
                #[cfg(not(feature = "tls"))]
                {
                    let _ = (
                        host,
                        port,
                        timeout,
                        bind_address,
                        hostname,
                        trust_roots,
                        certificate,
                        private_key,
                        factory,
                    );
                    Err(tls_unavailable())
                }
            }
        }
    }

    fn connect_tcp_from(
        &self,
        dest: HostPort,
        timeout: Duration,
        bind_address: Option<std::net::IpAddr>,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        let bind = bind_address.map(|ip| SocketAddr::new(ip, 0));
        self.connect_tcp_with(dest, timeout, bind, Box::new(factory))
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

#[cfg(not(feature = "tls"))]
fn tls_unavailable() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "tls: endpoints need twill's `tls` feature",
    )
}
