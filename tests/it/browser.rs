//! The status page as a person sees it: headless Chromium (Debian's `chromium`, installed by
//! ./test.sh) loads it from a running jsonbridge with a healthy and a failing source. A
//! phone-sized screenshot is written to target/screenshots/ (out of git) for a human look.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::{Bridge, Reply, Upstream, sample};

fn chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install Debian's `chromium`, or run ./test.sh which does")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_a_real_browser() {
    let up = Upstream::start(Reply::json(r#"{"pods": [{"name": "a", "n": 1}]}"#)).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "sources:\n  - name: healthy-api\n    url: {}/pods?token=${{TOKEN_NOT_SET_IS_FINE}}\n    every: 1h\n    metrics: [{{name: pods, help: P., each: \"$.pods[*]\", labels: {{pod: \"{{@.name}}\"}}, value: \"@.n\"}}]\n  - name: broken-api\n    url: http://127.0.0.1:{closed}/x\n    every: 1h\n    metrics: [{{name: other, help: O., value: $.n}}]\n",
        up.base
    )
    .replace("?token=${TOKEN_NOT_SET_IS_FINE}", "");
    let b = Bridge::start(&config).await;
    b.wait_metrics(10, "both polls", |m| {
        sample(m, r#"jsonbridge_source_up{source="healthy-api"}"#) == Some(1.0)
            && m.contains(r#"jsonbridge_source_polls_total{source="broken-api",result="connect"}"#)
    })
    .await;
    let url = format!("{}/", b.base);
    let dom = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || chromium(&["--dump-dom".into(), url]))
            .await
            .unwrap()
    };
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let html = String::from_utf8_lossy(&dom.stdout);
    for want in [
        "<h1>jsonbridge</h1>",
        ">healthy-api</a>",
        ">broken-api</a>",
        "<span class=\"ok\">ok</span>",
        "<span class=\"bad\">failed</span>: cannot connect",
        "Next poll",
        "href=\"/metrics\"",
    ] {
        assert!(
            html.contains(want),
            "the browser does not show {want:?}:\n{html}"
        );
    }
    // The detail page of the failing source, as rendered.
    let detail = {
        let url = format!("{}/source/broken-api", b.base);
        tokio::task::spawn_blocking(move || chromium(&["--dump-dom".into(), url]))
            .await
            .unwrap()
    };
    let detail = String::from_utf8_lossy(&detail.stdout);
    assert!(detail.contains("<h1>Source broken-api</h1>"), "{detail}");
    // A phone-sized screenshot for people to look at.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("status-page-phone.png");
    let _ = std::fs::remove_file(&png);
    let shot = {
        let args = vec![
            format!("--screenshot={}", png.display()),
            "--window-size=412,915".to_string(),
            "--hide-scrollbars".to_string(),
            url,
        ];
        tokio::task::spawn_blocking(move || chromium(&args))
            .await
            .unwrap()
    };
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "screenshot missing or empty: {size} bytes");
    tokio::time::sleep(Duration::from_millis(10)).await;
    b.stop().await;
}
