//! TLS for the gRPC and HTTP listeners (rustls), optional mutual TLS, and
//! certificate reload on SIGHUP without dropping connections: the
//! certificate is resolved per handshake from a swappable slot, so open
//! connections keep theirs and new ones get the new one. Handshakes happen in
//! `crate::listen::accept_loop`, within the listener's limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, VerifierBuilderError, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Turns on mutual TLS: clients must present a certificate signed by this CA.
    pub client_ca_file: Option<PathBuf>,
}

/// The server certificate, swappable at run time.
#[derive(Debug)]
pub struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
    settings: TlsSettings,
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Why the TLS settings cannot be used; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {}: {cause}", .path.display())]
    ReadCertificate { path: PathBuf, cause: PemError },
    #[error("no certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    #[error("cannot read private key {}: {cause}", .path.display())]
    ReadKey { path: PathBuf, cause: PemError },
    #[error(
        "certificate {} and key {} do not form a usable pair: {cause}",
        .cert.display(),
        .key.display()
    )]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        cause: rustls::Error,
    },
    #[error("cannot read client CA {}: {cause}", .path.display())]
    ReadClientCa { path: PathBuf, cause: PemError },
    #[error("bad client CA {}: {cause}", .path.display())]
    ClientCaPem { path: PathBuf, cause: PemError },
    #[error("bad client CA {}: {cause}", .path.display())]
    BadClientCa { path: PathBuf, cause: rustls::Error },
    #[error("no certificate in client CA {}", .0.display())]
    NoClientCa(PathBuf),
    #[error("client CA {}: {cause}", .path.display())]
    ClientVerifier {
        path: PathBuf,
        cause: VerifierBuilderError,
    },
    #[error("{0}")]
    Protocols(rustls::Error),
}

impl ReloadableCert {
    /// Loads the certificate and key files again; on error the current ones stay.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that could not be used.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current
            .store(Arc::new(load_certified_key(&self.settings)?));
        Ok(())
    }
}

fn load_certified_key(settings: &TlsSettings) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert_file)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|cause| TlsError::ReadCertificate {
            path: settings.cert_file.clone(),
            cause,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(settings.cert_file.clone()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|cause| TlsError::ReadKey {
            path: settings.key_file.clone(),
            cause,
        })?;
    CertifiedKey::from_der(certs, key, &default_provider()).map_err(|cause| TlsError::Pair {
        cert: settings.cert_file.clone(),
        key: settings.key_file.clone(),
        cause,
    })
}

fn client_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let path_buf = || path.to_path_buf();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|cause| TlsError::ReadClientCa {
        path: path_buf(),
        cause,
    })? {
        let cert = cert.map_err(|cause| TlsError::ClientCaPem {
            path: path_buf(),
            cause,
        })?;
        roots.add(cert).map_err(|cause| TlsError::BadClientCa {
            path: path_buf(),
            cause,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoClientCa(path_buf()));
    }
    Ok(roots)
}

/// Acceptors for gRPC (HTTP/2) and HTTP (HTTP/2 and 1.1), sharing one
/// reloadable certificate.
#[derive(Clone)]
pub struct TlsAcceptors {
    pub grpc: TlsAcceptor,
    pub http: TlsAcceptor,
    pub cert: Arc<ReloadableCert>,
}

/// Builds the acceptors from the settings.
///
/// # Errors
/// [`TlsError`] naming the file or setting that could not be used.
pub fn acceptors(settings: &TlsSettings) -> Result<TlsAcceptors, TlsError> {
    let cert = Arc::new(ReloadableCert {
        current: ArcSwap::from_pointee(load_certified_key(settings)?),
        settings: settings.clone(),
    });
    let build = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Protocols)?;
        let builder = match &settings.client_ca_file {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder(Arc::new(client_roots(ca)?))
                    .build()
                    .map_err(|cause| TlsError::ClientVerifier {
                        path: ca.clone(),
                        cause,
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    };
    Ok(TlsAcceptors {
        grpc: TlsAcceptor::from(build(&[b"h2"])?),
        http: TlsAcceptor::from(build(&[b"h2", b"http/1.1"])?),
        cert,
    })
}

impl std::fmt::Debug for TlsAcceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptors").finish_non_exhaustive()
    }
}
