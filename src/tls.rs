//! TLS for the gRPC and HTTP listeners (rustls), optional mutual TLS, and
//! certificate reload on SIGHUP without dropping connections: the
//! certificate is resolved per handshake from a swappable slot, so open
//! connections keep theirs and new ones get the new one.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

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

impl ReloadableCert {
    /// Loads the certificate and key files again; on error the current ones stay.
    ///
    /// # Errors
    /// A message naming the file that could not be used.
    pub fn reload(&self) -> Result<(), String> {
        self.current
            .store(Arc::new(load_certified_key(&self.settings)?));
        Ok(())
    }
}

fn load_certified_key(settings: &TlsSettings) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert_file)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| {
            format!(
                "cannot read certificate {}: {e}",
                settings.cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate in {}",
            settings.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|e| {
        format!(
            "cannot read private key {}: {e}",
            settings.key_file.display()
        )
    })?;
    CertifiedKey::from_der(certs, key, &default_provider()).map_err(|e| {
        format!(
            "certificate {} and key {} do not form a usable pair: {e}",
            settings.cert_file.display(),
            settings.key_file.display()
        )
    })
}

fn client_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read client CA {}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| format!("bad client CA {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("bad client CA {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate in client CA {}", path.display()));
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
/// A message naming the file or setting that could not be used.
pub fn acceptors(settings: &TlsSettings) -> Result<TlsAcceptors, String> {
    let cert = Arc::new(ReloadableCert {
        current: ArcSwap::from_pointee(load_certified_key(settings)?),
        settings: settings.clone(),
    });
    let build = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &settings.client_ca_file {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder(Arc::new(client_roots(ca)?))
                    .build()
                    .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
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

/// A TLS connection accepted by [`accept_loop`].
#[derive(Debug)]
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    remote: SocketAddr,
    local: SocketAddr,
}

/// Accepts TCP connections and completes TLS handshakes concurrently (a slow
/// or failed handshake never blocks the others); yields finished connections.
pub fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor) -> mpsc::Receiver<TlsConnection> {
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().unwrap_or(remote);
            if sender.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender
                            .send(TlsConnection {
                                stream,
                                remote,
                                local,
                            })
                            .await;
                    }
                    Ok(Err(err)) => tracing::info!(%remote, error = %err, "TLS handshake refused"),
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    receiver
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: Some(self.local),
            remote_addr: Some(self.remote),
        }
    }
}

/// An axum listener over [`accept_loop`].
#[derive(Debug)]
pub struct TlsListener {
    pub connections: mpsc::Receiver<TlsConnection>,
    pub local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => {
                let remote = connection.remote;
                (connection, remote)
            }
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
