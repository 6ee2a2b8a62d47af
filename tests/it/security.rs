//! The metrics server's own protection: TLS and basic auth from a web config, refused
//! oversized requests, and clear errors for a broken web config.

use std::time::Duration;

use crate::support::{Daemon, Reply, Upstream};

struct Setup {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    web: std::path::PathBuf,
    cert_pem: String,
}

fn setup(upstream: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_pem = key.cert.pem();
    std::fs::write(dir.path().join("server.crt"), &cert_pem).unwrap();
    std::fs::write(
        dir.path().join("server.key"),
        key.signing_key.serialize_pem(),
    )
    .unwrap();
    // Cost 4: the minimum, to keep the test fast; the format is what htpasswd -B writes.
    let hash = bcrypt::hash("s3cret-pw", 4).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("jsonbridge.yaml");
    std::fs::write(
        &config,
        format!("sources:\n  - name: s\n    url: {upstream}/x\n    metrics: [{{name: n, help: N., value: $.n}}]\n"),
    )
    .unwrap();
    Setup {
        _dir: dir,
        config,
        web,
        cert_pem,
    }
}

fn tls_client(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only(vec![
            reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap(),
        ])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_from_the_web_config() {
    let up = Upstream::start(Reply::json(r#"{"n": 7}"#)).await;
    let s = setup(&up.base);
    let web = s.web.to_str().unwrap().to_string();
    let d = Daemon::start(&s.config, &["--web.config.file", &web], &[]);
    let base = format!("https://{}", d.addr);
    let c = tls_client(&s.cert_pem);

    // No credentials, wrong ones, an unknown user: 401 with a challenge.
    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"jsonbridge\""
    );
    for (user, pw) in [("prometheus", "wrong"), ("nobody", "s3cret-pw")] {
        let r = c
            .get(format!("{base}/metrics"))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{user}:{pw}");
    }
    for path in ["/", "/metrics"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} is protected");
    }
    // The right credentials, twice (the second from the cache).
    for _ in 0..2 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = c
                .get(format!("{base}/metrics"))
                .basic_auth("prometheus", Some("s3cret-pw"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            if r.text().await.unwrap().contains("\nn 7") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Probes stay open.
    for path in ["/-/healthy", "/-/ready"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = crate::support::client()
        .get(format!("http://{}/metrics", d.addr))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let (code, log) = d.terminate();
    assert_eq!(code, Some(0));
    assert!(!log.contains("s3cret-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused() {
    let up = Upstream::start(Reply::json(r#"{"n": 7}"#)).await;
    let s = setup(&up.base);
    let d = Daemon::start(&s.config, &[], &[]);
    let c = crate::support::client();
    let ok = c
        .get(format!("http://{}/-/healthy", d.addr))
        .header("x-pad", "a".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let big = c
        .get(format!("http://{}/-/healthy", d.addr))
        .header("x-pad", "a".repeat(64 * 1024))
        .send()
        .await;
    // Either a 431 or a closed connection: refused both ways.
    if let Ok(r) = big {
        assert_eq!(r.status(), 431);
    }
    // Still serving.
    let again = c
        .get(format!("http://{}/-/healthy", d.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn broken_web_configs_fail_start_up_with_a_clear_message() {
    let s = setup("http://127.0.0.1:9");
    let cases = [
        (
            "basic_auth_users:\n  admin: plaintext\n",
            "basic_auth_users.admin: not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
            "cert_file",
        ),
        ("tls_server_config:\n  cert: x\n", "unknown field `cert`"),
    ];
    for (text, want) in cases {
        std::fs::write(&s.web, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jsonbridge"))
            .arg("--config.file")
            .arg(&s.config)
            .arg("--web.config.file")
            .arg(&s.web)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}
