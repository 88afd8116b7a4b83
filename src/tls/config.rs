//! rustls configurations for the common cases: a certificate and key from
//! PEM, a client that trusts the platform's roots or a given CA, several
//! certificates chosen by server name (SNI), client certificates (mutual
//! TLS). Each returns rustls's own config, so ALPN and everything else
//! rustls offers can be set on it before it is used:
//!
//! ```
//! use twill::tls::config;
//! # let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
//! # let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
//!
//! let mut server = config::server_config(
//!     config::certs_from_pem(cert_pem.as_bytes())?,
//!     config::key_from_pem(key_pem.as_bytes())?,
//! )?;
//! server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
//! let acceptor = twill::tls::TlsAcceptor::new(server);
//! # let _ = acceptor;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Every config here uses rustls's `ring` provider and offers TLS 1.2 and
//! 1.3; for one version only, start from [`server_builder`] or
//! [`client_builder`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ConfigBuilder, RootCertStore, ServerConfig, SupportedProtocolVersion,
    WantsVerifier,
};

/// The crypto provider twill's configs use: rustls's `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: &str, err: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {err}"))
}

/// The certificates in a PEM text (`-----BEGIN CERTIFICATE-----`
/// blocks), in order: a chain, its own certificate first.
///
/// # Errors
///
/// `InvalidData` if the text holds no certificate or a malformed one.
pub fn certs_from_pem(pem: &[u8]) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid("bad PEM certificate", err))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the PEM text", "empty"));
    }
    Ok(certs)
}

/// The first private key in a PEM text (PKCS #8, PKCS #1 or SEC1).
///
/// # Errors
///
/// `InvalidData` if the text holds no key or a malformed one.
pub fn key_from_pem(pem: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|err| invalid("no usable private key in the PEM text", err))
}

/// [`certs_from_pem`] of a file.
///
/// # Errors
///
/// The file could not be read, or as `certs_from_pem`.
pub fn certs_from_pem_file(path: impl AsRef<Path>) -> io::Result<Vec<CertificateDer<'static>>> {
    certs_from_pem(&std::fs::read(path)?)
}

/// [`key_from_pem`] of a file.
///
/// # Errors
///
/// The file could not be read, or as `key_from_pem`.
pub fn key_from_pem_file(path: impl AsRef<Path>) -> io::Result<PrivateKeyDer<'static>> {
    key_from_pem(&std::fs::read(path)?)
}

/// rustls's server builder with twill's provider and the given versions
/// (`rustls::ALL_VERSIONS`, or `&[&rustls::version::TLS13]`), to go on
/// with rustls's own calls.
///
/// # Errors
///
/// The provider does not support the versions.
pub fn server_builder(
    versions: &[&'static SupportedProtocolVersion],
) -> io::Result<ConfigBuilder<ServerConfig, WantsVerifier>> {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(io::Error::other)
}

/// rustls's client builder with twill's provider and the given versions.
///
/// # Errors
///
/// The provider does not support the versions.
pub fn client_builder(
    versions: &[&'static SupportedProtocolVersion],
) -> io::Result<ConfigBuilder<ClientConfig, WantsVerifier>> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(io::Error::other)
}

/// A server that presents `chain` (its own certificate first) signed with
/// `key`, asks no client certificate, and speaks TLS 1.2 and 1.3.
///
/// # Errors
///
/// `InvalidInput` if the key does not fit the certificate or is of a kind
/// the provider does not support.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<ServerConfig> {
    server_builder(rustls::ALL_VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
}

/// A server that asks each client for a certificate signed by one of
/// `client_cas` (mutual TLS): a client without one is refused when
/// `required`, accepted without one otherwise. The certificate a client
/// presented is in [`TlsInfo::peer_certificates`](super::TlsInfo::peer_certificates).
///
/// # Errors
///
/// `InvalidInput` if a CA certificate cannot be used, or as
/// [`server_config`].
pub fn server_config_with_client_auth(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: Vec<CertificateDer<'static>>,
    required: bool,
) -> io::Result<ServerConfig> {
    let roots = Arc::new(root_store(client_cas)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
    let verifier = if required {
        verifier
    } else {
        verifier.allow_unauthenticated()
    };
    let verifier = verifier
        .build()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    server_builder(rustls::ALL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
}

/// A server that presents one certificate per server name, chosen by the
/// name the client asks for (SNI), with the [`SniResolver`]'s default for
/// clients that ask for none or for a name it does not know.
///
/// # Errors
///
/// The provider does not support TLS 1.2 and 1.3 (it does).
pub fn server_config_with_sni(resolver: SniResolver) -> io::Result<ServerConfig> {
    Ok(server_builder(rustls::ALL_VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver)))
}

fn root_store(cas: Vec<CertificateDer<'static>>) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    }
    Ok(roots)
}

fn client_with_roots(
    roots: RootCertStore,
) -> io::Result<ConfigBuilder<ClientConfig, WantsClientCert>> {
    Ok(client_builder(rustls::ALL_VERSIONS)?.with_root_certificates(roots))
}

/// A client that trusts the certificates `cas` (a private CA, or a
/// server's self-signed certificate) and nothing else.
///
/// # Errors
///
/// `InvalidInput` if a certificate cannot be used as a trust anchor.
pub fn client_config_trusting(cas: Vec<CertificateDer<'static>>) -> io::Result<ClientConfig> {
    Ok(client_with_roots(root_store(cas)?)?.with_no_client_auth())
}

/// A client that trusts the platform's roots (the system's certificate
/// store, read once per call).
///
/// # Errors
///
/// `NotFound` if no root certificate could be loaded.
pub fn client_config_with_platform_roots() -> io::Result<ClientConfig> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        log::debug!("while loading the platform's root certificates: {err}");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no root certificate found on this platform",
        ));
    }
    Ok(client_with_roots(roots)?.with_no_client_auth())
}

/// A client that trusts `cas` and presents `chain`, signed with `key`, to
/// servers that ask for a certificate (mutual TLS).
///
/// # Errors
///
/// `InvalidInput` if a CA certificate or the key cannot be used.
pub fn client_config_with_client_auth(
    cas: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<ClientConfig> {
    client_with_roots(root_store(cas)?)?
        .with_client_auth_cert(chain, key)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
}

/// Chooses the server's certificate by the name the client asks for (SNI):
/// several sites on one port. Names match exactly, without regard to case;
/// a client that asks for no name or an unknown one gets the default, or
/// fails the handshake if there is none.
///
/// ```
/// use twill::tls::config::{self, SniResolver};
/// # fn pair(name: &str) -> (Vec<twill::tls::CertificateDer<'static>>, twill::tls::PrivateKeyDer<'static>) {
/// #     let made = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
/// #     (vec![made.cert.der().clone()], twill::tls::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into()))
/// # }
///
/// let (a_chain, a_key) = pair("a.example");
/// let (b_chain, b_key) = pair("b.example");
/// let resolver = SniResolver::new()
///     .add("a.example", a_chain.clone(), a_key.clone_key())?
///     .add("b.example", b_chain, b_key)?
///     .default_cert(a_chain, a_key)?;
/// let server = config::server_config_with_sni(resolver)?;
/// # let _ = server;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Default)]
pub struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// A resolver with no certificate yet.
    pub fn new() -> SniResolver {
        SniResolver::default()
    }

    fn certified(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> io::Result<Arc<CertifiedKey>> {
        CertifiedKey::from_der(chain, key, &provider())
            .map(Arc::new)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
    }

    /// Presents `chain`, signed with `key`, to clients asking for `name`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the key does not fit the certificate or is of a
    /// kind the provider does not support.
    pub fn add(
        mut self,
        name: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> io::Result<SniResolver> {
        let certified = SniResolver::certified(chain, key)?;
        self.by_name.insert(name.to_ascii_lowercase(), certified);
        Ok(self)
    }

    /// Presents `chain` to clients that ask for no name or an unknown one.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub fn default_cert(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> io::Result<SniResolver> {
        self.default = Some(SniResolver::certified(chain, key)?);
        Ok(self)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()))
            .or(self.default.as_ref())
            .cloned()
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("SniResolver")
            .field("names", &names)
            .field("default", &self.default.is_some())
            .finish()
    }
}
