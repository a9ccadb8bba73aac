//! TLS and mutual TLS on both listeners, and certificate reload on SIGHUP.

use std::io::{Read, Write};
use std::sync::Arc;

use dialgate::proto::compliance_gateway_client::ComplianceGatewayClient;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Channel, Endpoint};

use crate::support::*;

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki {
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names`, signed by the CA: (cert PEM, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        (
            params.signed_by(&key, &self.issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }
}

fn client_config(
    pki: &Pki,
    identity: Option<&(String, String)>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A gRPC channel over TLS (tonic's transport with a rustls connector).
async fn tls_channel(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let addr = addr.trim_start_matches("http://").to_string();
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let config = Arc::clone(&config);
            let addr = addr.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

/// `GET path` over TLS; returns the status code and the server's certificate.
async fn https_get(
    addr: &str,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c[0].to_vec())
        .unwrap_or_default();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, peer))
}

fn tls_workspace(pki: &Pki, mutual: bool) -> Workspace {
    tls_workspace_with(pki, mutual, "")
}

/// [`tls_workspace`] with `settings` added to `[server]`.
fn tls_workspace_with(pki: &Pki, mutual: bool, settings: &str) -> Workspace {
    let client_ca = if mutual {
        "client_ca_file = \"ca.pem\"\n"
    } else {
        ""
    };
    let config = standard_config("").replace(
        "shutdown_grace_ms = 5000",
        &format!("shutdown_grace_ms = 5000\n{settings}\n\n[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\n{client_ca}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.issue(&["localhost", "127.0.0.1"]);
    std::fs::write(dir.path().join("server.pem"), cert).unwrap();
    std::fs::write(dir.path().join("server.key"), key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("dialgate.toml"), config).unwrap();
    Workspace { dir }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_tls_refuses_plaintext_and_reloads_on_sighup() {
    let pki = Pki::new();
    let ws = tls_workspace(&pki, false);
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();

    let channel = tls_channel(&server.grpc, client_config(&pki, None, b"h2"))
        .await
        .unwrap();
    let mut gateway = ComplianceGatewayClient::new(channel.clone());
    gateway
        .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
        .await
        .expect("CheckCall over TLS");
    let (code, first_cert) = https_get(
        &server.http,
        "/livez",
        client_config(&pki, None, b"http/1.1"),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);

    // Plaintext is refused on both ports.
    let mut plain = ComplianceGatewayClient::connect(server.grpc.clone())
        .await
        .ok();
    if let Some(client) = plain.as_mut() {
        assert!(
            client
                .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
                .await
                .is_err()
        );
    }
    let mut stream = std::net::TcpStream::connect(&server.http).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ =
        stream.write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        !answer.contains("200 OK"),
        "plain HTTP must not be served: {answer}"
    );

    // New certificate, SIGHUP: new connections get it, the open one keeps working.
    let (cert, key) = pki.issue(&["localhost", "127.0.0.1"]);
    std::fs::write(ws.dir.path().join("server.pem"), cert).unwrap();
    std::fs::write(ws.dir.path().join("server.key"), key).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, cert_now) = https_get(
            &server.http,
            "/livez",
            client_config(&pki, None, b"http/1.1"),
        )
        .await
        .unwrap();
        if cert_now != first_cert {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "certificate not reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    gateway
        .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
        .await
        .expect("the connection opened before the reload still works");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new();
    let ws = tls_workspace(&pki, true);
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let identity = pki.issue(&["dialer-floor-1"]);

    let without = tls_channel(&server.grpc, client_config(&pki, None, b"h2")).await;
    let refused = match without {
        Err(_) => true,
        Ok(channel) => ComplianceGatewayClient::new(channel)
            .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    assert!(
        https_get(
            &server.http,
            "/livez",
            client_config(&pki, None, b"http/1.1")
        )
        .await
        .is_err()
            || https_get(
                &server.http,
                "/livez",
                client_config(&pki, None, b"http/1.1")
            )
            .await
            .map(|r| r.0)
            .unwrap_or(0)
                != 200
    );

    let channel = tls_channel(&server.grpc, client_config(&pki, Some(&identity), b"h2"))
        .await
        .unwrap();
    ComplianceGatewayClient::new(channel)
        .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
        .await
        .expect("a client with a certificate of the CA is served");
    let (code, _) = https_get(
        &server.http,
        "/livez",
        client_config(&pki, Some(&identity), b"http/1.1"),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_slow_or_silent_tls_handshakes_and_silent_tls_connections_are_closed() {
    let pki = Pki::new();
    let ws = tls_workspace_with(
        &pki,
        false,
        "header_timeout_ms = 500\nidle_timeout_ms = 60000",
    );
    let server = ws.start();
    let grpc = server.grpc.trim_start_matches("http://").to_string();
    // Well below the handshake timeout dialgate had before (10 s).
    let bound = std::time::Duration::from_secs(8);
    for (addr, alpn) in [(&grpc, &b"h2"[..]), (&server.http, &b"http/1.1"[..])] {
        // A handshake that never completes: nothing, or half a ClientHello.
        let mut silent = std::net::TcpStream::connect(addr).unwrap();
        let mut partial = std::net::TcpStream::connect(addr).unwrap();
        partial
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
            .unwrap();
        assert!(
            crate::limits::closed_within(&mut silent, bound),
            "silent TLS handshake kept open on {addr}"
        );
        assert!(
            crate::limits::closed_within(&mut partial, bound),
            "half a ClientHello kept open on {addr}"
        );

        // A finished handshake, then no request.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client_config(&pki, None, alpn))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let closed = tokio::time::timeout(bound, async {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 1024];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "TLS connection without a request kept open on {addr}"
        );
    }
    let (code, _) = https_get(
        &server.http,
        "/readyz",
        client_config(&pki, None, b"http/1.1"),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
}

/// The TLS private key, like the checkpoint key, is named at start when
/// group or others can read it; an owner-only key is not.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_tls_key_readable_by_others_is_named_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    let ws = tls_workspace(&pki, false);
    let key = ws.dir.path().join("server.key");
    let warned = |mode: u32| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let (status, log) = ws.start().terminate();
        assert!(status.success(), "{log:?}");
        log.iter()
            .any(|line| line.contains("TLS private key") && line.contains("chmod 600"))
    };
    assert!(warned(0o644), "a key readable by others must be named");
    assert!(!warned(0o600), "an owner-only key is not named");
}
