//! Issue 16, point 1: TLS to upstreams. Certificates are made in the test (a private CA,
//! a client CA, an expired certificate, one for another name); upstreams are rustls servers
//! on loopback, one of them requiring a client certificate.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::support::*;

/// A CA that signs certificates for the test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Self {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names`; `expired` puts its validity in 2020.
    pub fn issue(&self, names: &[&str], expired: bool) -> Issued {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        if expired {
            p.not_before = rcgen::date_time_ymd(2019, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

impl Issued {
    fn server_config(&self, client_ca: Option<&Ca>) -> rustls::ServerConfig {
        self.server_config_with(client_ca, rustls::DEFAULT_VERSIONS)
    }

    fn server_config_with(
        &self,
        client_ca: Option<&Ca>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ServerConfig {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.issuer.der().clone()).unwrap();
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(v)
            }
        };
        let mut c = builder.with_single_cert(certs, key).unwrap();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        c
    }
}

/// A TLS upstream answering `{"n": 1}`, counting the requests that got through and the
/// HTTP versions they used.
pub struct TlsUpstream {
    pub port: u16,
    pub served: Arc<AtomicUsize>,
    pub versions: Arc<Mutex<Vec<String>>>,
}

impl TlsUpstream {
    pub async fn start(config: rustls::ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (served.clone(), versions.clone());
        let app = axum::Router::new().fallback(move |version: axum::http::Version| {
            let (s, v) = (s.clone(), v.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                v.lock().unwrap().push(format!("{version:?}"));
                ([("content-type", "application/json")], r#"{"n": 1}"#)
            }
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(serve_tls(acceptor, tcp, app));
            }
        });
        Self {
            port,
            served,
            versions,
        }
    }
}

/// One connection: the handshake, then HTTP/1.1 or HTTP/2. A refused handshake is closed
/// as web servers close (nginx's lingering close): what the client already sent is read
/// and dropped first, so that the close is a FIN after the alert, not a reset that could
/// overtake it.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    app: axum::Router,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = match acceptor.accept(tcp).into_fallible().await {
        Ok(tls) => tls,
        Err((_, mut tcp)) => {
            let _ = tcp.shutdown().await;
            let mut sink = [0u8; 4096];
            let linger = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            while let Ok(Ok(n)) = tokio::time::timeout_at(linger, tcp.read(&mut sink)).await {
                if n == 0 {
                    break;
                }
            }
            return;
        }
    };
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(
            hyper_util::rt::TokioIo::new(tls),
            hyper_util::service::TowerToHyperService::new(app),
        )
        .await;
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// The last error a source's page shows.
async fn page(b: &Bridge, source: &str) -> String {
    b.get(&format!("/source/{source}")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ca_mutual_tls_and_each_failure_named_by_its_cause() {
    let ca = Ca::new("test private CA");
    let client_ca = Ca::new("test client CA");
    let stranger = Ca::new("nobody's CA");
    let good = ca.issue(&["localhost", "127.0.0.1"], false);
    let mtls = TlsUpstream::start(good.server_config(Some(&client_ca))).await;
    // TLS 1.3 refuses a client certificate after the handshake: the alert races the
    // request (a write may fail first, kind `request`, which the configuration reference
    // says). Under TLS 1.2 the refusal is part of the handshake, so the cause is named
    // every time: the refusals are checked there.
    let mtls12 =
        TlsUpstream::start(good.server_config_with(Some(&client_ca), &[&rustls::version::TLS12]))
            .await;
    let expired = TlsUpstream::start(ca.issue(&["localhost"], true).server_config(None)).await;
    let other = TlsUpstream::start(ca.issue(&["other.internal"], false).server_config(None)).await;
    let open = TlsUpstream::start(good.server_config(None)).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ca.pem", &ca.pem());
    let client = client_ca.issue(&["jsonbridge"], false);
    write(d, "client.pem", &client.cert);
    write(d, "client.key", &client.key);
    let refused = stranger.issue(&["jsonbridge"], false);
    write(d, "stranger.pem", &refused.cert);
    write(d, "stranger.key", &refused.key);

    let https = |port: u16| format!("https://localhost:{port}/x");
    let with_ca = "    tls:\n      ca_file: ca.pem\n";
    let mut config = String::from("sources:\n");
    for (name, port, extra) in [
        (
            "mtls",
            mtls.port,
            format!("{with_ca}      cert_file: client.pem\n      key_file: client.key\n"),
        ),
        (
            "nocert",
            mtls12.port,
            format!("{with_ca}    enable_http2: false\n"),
        ),
        (
            "badcert",
            mtls12.port,
            format!(
                "{with_ca}      cert_file: stranger.pem\n      key_file: stranger.key\n    enable_http2: false\n"
            ),
        ),
        ("noca", open.port, String::new()),
        ("expired", expired.port, with_ca.to_string()),
        ("wrongname", other.port, with_ca.to_string()),
        (
            "servername",
            other.port,
            format!("{with_ca}      server_name: other.internal\n"),
        ),
        (
            "insecure",
            expired.port,
            "    tls:\n      insecure_skip_verify: true\n".to_string(),
        ),
        (
            "merged",
            open.port,
            format!("{with_ca}      system_roots: true\n      min_version: TLS13\n"),
        ),
        (
            "http1",
            open.port,
            format!("{with_ca}    enable_http2: false\n"),
        ),
    ] {
        config += &source(name, &https(port), &extra);
    }
    std::fs::write(d.join("jsonbridge.yaml"), &config).unwrap();
    let file = d.join("jsonbridge.yaml");
    let b = Bridge::start_at(dir, file).await;
    let failing = ["nocert", "badcert", "noca", "expired", "wrongname"];
    let m = b
        .wait_metrics(20, "every source polled", |m| {
            ["mtls", "servername", "insecure", "merged", "http1"]
                .iter()
                .all(|s| m.contains(&format!("\n{s}_n 1")))
                && failing.iter().all(|s| polls(m, s, "tls") == Some(1.0))
        })
        .await;
    assert_eq!(
        mtls.served.load(Ordering::SeqCst),
        1,
        "only mtls got through"
    );
    for (name, cause) in [
        ("nocert", "requires a client certificate"),
        ("badcert", "refused the client certificate"),
        ("noca", "unknown authority"),
        ("expired", "has expired"),
        ("wrongname", "name mismatch"),
    ] {
        let p = page(&b, name).await;
        assert!(p.contains(cause), "{name}: want {cause:?} in\n{p}");
    }
    // HTTP/2 is offered over TLS unless switched off.
    let versions = open.versions.lock().unwrap().clone();
    assert!(versions.contains(&"HTTP/2.0".to_string()), "{versions:?}");
    assert!(versions.contains(&"HTTP/1.1".to_string()), "{versions:?}");
    // The status page says where certificates are not verified; the key is never shown.
    let insecure = page(&b, "insecure").await;
    assert!(insecure.contains("NOT verified"), "{insecure}");
    let index = b.get("/").await.1;
    assert!(index.contains("TLS not verified"), "{index}");
    let mut shown = m.clone() + &index;
    for s in ["mtls", "badcert"] {
        shown += &page(&b, s).await;
    }
    for key in [&client.key, &refused.key] {
        let body = key.lines().nth(1).unwrap();
        assert!(!shown.contains(body), "a key line is shown");
    }
    assert!(page(&b, "mtls").await.contains("client.pem"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_client_certificates_are_used_without_a_reload() {
    let ca = Ca::new("test private CA");
    let client_ca = Ca::new("test client CA");
    let up = TlsUpstream::start(
        ca.issue(&["localhost"], false)
            .server_config(Some(&client_ca)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ca.pem", &ca.pem());
    // First a certificate the upstream refuses (an expired one of the right CA).
    let old = client_ca.issue(&["jsonbridge"], true);
    write(d, "client.pem", &old.cert);
    write(d, "client.key", &old.key);
    let config = format!(
        "sources:\n  - name: rot\n    url: https://localhost:{}/x\n    every: 1s\n    enable_http2: false\n    tls:\n      ca_file: ca.pem\n      cert_file: client.pem\n      key_file: client.key\n    metrics:\n      - {{name: rot_n, help: N., value: $.n}}\n",
        up.port
    );
    std::fs::write(d.join("jsonbridge.yaml"), &config).unwrap();
    let file = d.join("jsonbridge.yaml");
    let b = Bridge::start_at(dir, file).await;
    b.wait_metrics(15, "a refused poll", |m| {
        polls(m, "rot", "tls").is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(
        page(&b, "rot")
            .await
            .contains("refused the client certificate")
    );
    // Rewritten in place, as cert-manager does: the next poll uses it.
    let new = client_ca.issue(&["jsonbridge"], false);
    write(b.dir.path(), "client.key", &new.key);
    write(b.dir.path(), "client.pem", &new.cert);
    let m = b
        .wait_metrics(15, "a poll with the new certificate", |m| {
            m.contains("\nrot_n 1")
        })
        .await;
    assert_eq!(
        sample(&m, "jsonbridge_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(up.served.load(Ordering::SeqCst) >= 1);
    // A key that does not belong to the certificate is a clear `tls` error, and the
    // snapshot stays.
    let stray = client_ca.issue(&["jsonbridge"], false);
    write(b.dir.path(), "client.key", &stray.key);
    let before = polls(&m, "rot", "tls").unwrap_or(0.0);
    let m = b
        .wait_metrics(15, "a poll with a mismatched key", |m| {
            polls(m, "rot", "tls").unwrap_or(0.0) > before
        })
        .await;
    assert!(m.contains("\nrot_n 1"), "the last snapshot stays");
    let p = page(&b, "rot").await;
    assert!(p.contains("do not work together"), "{p}");
    b.stop().await;
}

/// A TLS upstream that serves `body` to clients with a certificate of `client_ca`.
async fn serving(cert: &Issued, client_ca: &Ca, body: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config(Some(client_ca))));
    let app = axum::Router::new()
        .fallback(move || async move { ([("content-type", "application/json")], body) });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(serve_tls(acceptor, tcp, app));
        }
    });
    port
}

/// `examples/private-ca-mtls` as a user runs it: its config file unchanged but for the
/// address (the API is on loopback here), certificates where it expects them, and the
/// output equal to the example's golden file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_ca_example_runs_against_a_real_mutual_tls_server() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/private-ca-mtls");
    let body: &'static str = Box::leak(
        std::fs::read_to_string(example.join("response.json"))
            .unwrap()
            .into_boxed_str(),
    );
    let ca = Ca::new("inventory CA");
    let client_ca = Ca::new("inventory clients CA");
    // The certificate names the API, not its address: `server_name` bridges the two.
    let port = serving(&ca.issue(&["inventory.internal"], false), &client_ca, body).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    write(&certs, "ca.pem", &ca.pem());
    let client = client_ca.issue(&["jsonbridge"], false);
    write(&certs, "client.pem", &client.cert);
    write(&certs, "client.key", &client.key);
    let config = std::fs::read_to_string(example.join("jsonbridge.yaml"))
        .unwrap()
        .replace("10.0.12.7:8443", &format!("127.0.0.1:{port}"));
    assert!(config.contains(&format!("127.0.0.1:{port}")));
    std::fs::write(dir.path().join("jsonbridge.yaml"), config).unwrap();
    let file = dir.path().join("jsonbridge.yaml");
    let b = Bridge::start_at(dir, file).await;
    let m = b
        .wait_metrics(15, "the first poll", |m| {
            polls(m, "inventory", "success") == Some(1.0)
        })
        .await;
    let want = std::fs::read_to_string(example.join("expected.prom")).unwrap();
    for line in want.lines() {
        assert!(m.contains(line), "{line} missing from\n{m}");
    }
    b.stop().await;
}
