//! Live reload: in-place writes, save-by-rename, a ConfigMap-style symlink swap, POST
//! /-/reload; broken files are kept out; unchanged sources keep polling without a gap.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::support::{Bridge, Reply, Upstream, sample, wait_for};

fn two_sources(url_a: &str, url_b: &str, b_metric: &str) -> String {
    format!(
        r#"
sources:
  - name: a
    url: {url_a}
    every: 1h
    metrics: [{{name: a_value, help: A., value: $.n}}]
  - name: b
    url: {url_b}
    every: 1h
    metrics: [{{name: {b_metric}, help: B., value: $.n}}]
"#
    )
}

const RELOAD_OK: &str = "jsonbridge_config_last_reload_successful 1";
const RELOAD_BAD: &str = "jsonbridge_config_last_reload_successful 0";

#[tokio::test]
async fn in_place_rewrite_is_applied_by_diff() {
    let ua = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let ub = Upstream::start(Reply::json(r#"{"n": 2}"#)).await;
    let b = Bridge::start(&two_sources(&ua.base, &ub.base, "b_value")).await;
    b.wait_metrics(10, "both sources", |m| {
        m.contains("\na_value 1") && m.contains("\nb_value 2")
    })
    .await;
    let a_hits = ua.hits();

    // Change source b only: rename its metric.
    std::fs::write(&b.config, two_sources(&ua.base, &ub.base, "b_renamed")).unwrap();
    let body = b
        .wait_metrics(10, "the renamed metric", |m| m.contains("\nb_renamed 2"))
        .await;
    assert!(!body.contains("\nb_value "), "old metric must vanish");
    // Source a was not restarted: its series stayed, and no extra poll happened.
    assert!(body.contains("\na_value 1"));
    assert_eq!(ua.hits(), a_hits, "unchanged source was re-polled");
    assert_eq!(ub.hits(), 2, "changed source polls at once");
    assert!(body.contains(RELOAD_OK));
    b.stop().await;
}

#[tokio::test]
async fn save_by_rename_is_seen() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let b = Bridge::start(&two_sources(&up.base, &up.base, "b_value")).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nb_value 1"))
        .await;
    // What editors do: write a temp file next to it, then rename over the original.
    let tmp = b.dir.path().join(".jsonbridge.yaml.swp");
    std::fs::write(&tmp, two_sources(&up.base, &up.base, "b_saved")).unwrap();
    std::fs::rename(&tmp, &b.config).unwrap();
    b.wait_metrics(10, "the new metric", |m| m.contains("\nb_saved 1"))
        .await;
    // The watch survives the rename: a second save is seen too.
    std::fs::write(&tmp, two_sources(&up.base, &up.base, "b_again")).unwrap();
    std::fs::rename(&tmp, &b.config).unwrap();
    b.wait_metrics(10, "the second save", |m| m.contains("\nb_again 1"))
        .await;
    b.stop().await;
}

/// Kubernetes mounts a ConfigMap as `file -> ..data/file`, `..data -> ..<timestamp>/`, and
/// updates it by creating a new timestamped dir and renaming a new `..data` symlink over the
/// old one. No event names the config file itself.
#[tokio::test]
async fn configmap_symlink_swap_is_seen() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write_version = |stamp: &str, metric: &str| {
        let v = root.join(stamp);
        std::fs::create_dir(&v).unwrap();
        std::fs::write(
            v.join("jsonbridge.yaml"),
            two_sources(&up.base, &up.base, metric),
        )
        .unwrap();
    };
    write_version("..2026_11_26_10_00_00.000000001", "b_v1");
    symlink("..2026_11_26_10_00_00.000000001", root.join("..data")).unwrap();
    symlink("..data/jsonbridge.yaml", root.join("jsonbridge.yaml")).unwrap();
    let config = root.join("jsonbridge.yaml");
    let b = Bridge::start_at(dir, config).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nb_v1 1"))
        .await;

    let root: &Path = b.dir.path();
    let stamp = "..2026_11_26_10_05_00.000000002";
    std::fs::create_dir(root.join(stamp)).unwrap();
    std::fs::write(
        root.join(stamp).join("jsonbridge.yaml"),
        two_sources(&up.base, &up.base, "b_v2"),
    )
    .unwrap();
    symlink(stamp, root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_11_26_10_00_00.000000001")).unwrap();

    let body = b
        .wait_metrics(10, "the swapped config", |m| m.contains("\nb_v2 1"))
        .await;
    assert!(!body.contains("\nb_v1 "));
    b.stop().await;
}

#[tokio::test]
async fn broken_files_are_kept_out_and_counted() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let good = two_sources(&up.base, &up.base, "b_value");
    let b = Bridge::start(&good).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nb_value 1"))
        .await;

    let broken = [
        (
            "syntax",
            "sources:\n  - name: a\n    url: 'unterminated\n".to_string(),
        ),
        ("empty", String::new()),
        ("invalid", good.replace("b_value", "b-value")),
    ];
    for (i, (what, text)) in broken.iter().enumerate() {
        std::fs::write(&b.config, text).unwrap();
        let body = b
            .wait_metrics(10, what, |m| {
                m.contains(RELOAD_BAD)
                    && sample(m, r#"jsonbridge_config_reloads_total{result="invalid"}"#)
                        .is_some_and(|n| n >= (i + 1) as f64)
            })
            .await;
        // The running config is untouched.
        assert!(body.contains("\na_value 1"), "{what}");
        assert!(body.contains("\nb_value 1"), "{what}");
        let (_, page) = b.get("/").await;
        assert!(page.contains("failed"), "{what}");
    }
    // Deleting the file is a read error; nothing else changes.
    std::fs::remove_file(&b.config).unwrap();
    b.wait_metrics(10, "a read error", |m| {
        sample(m, r#"jsonbridge_config_reloads_total{result="read"}"#) == Some(1.0)
    })
    .await;
    // A good file brings it back.
    std::fs::write(&b.config, good.replace("b_value", "b_fixed")).unwrap();
    let body = b
        .wait_metrics(10, "the fixed file", |m| {
            m.contains("\nb_fixed 1") && m.contains(RELOAD_OK)
        })
        .await;
    assert!(body.contains("\na_value 1"));
    b.stop().await;
}

#[tokio::test]
async fn post_reload_answers_with_the_result() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let good = two_sources(&up.base, &up.base, "b_value");
    let b = Bridge::start(&good).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nb_value 1"))
        .await;

    let (status, body) = b.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("unchanged [a b]"), "{body}");

    // A third source is added; it polls at once. Written with the watcher running, so
    // whichever reload sees it first applies it; the POST then reports no change or the add.
    let added = format!(
        "{good}  - name: c\n    url: {}\n    every: 1h\n    metrics: [{{name: c_value, help: C., value: $.n}}]\n",
        up.base
    );
    std::fs::write(&b.config, &added).unwrap();
    let (status, body) = b.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    b.wait_metrics(10, "the added source", |m| m.contains("\nc_value 1"))
        .await;

    std::fs::write(&b.config, good.replace("every: 1h", "every: 0s")).unwrap();
    let (status, body) = b.post("/-/reload").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("`every` must be at least 1s"), "{body}");
    assert!(body.contains("line 5 column 12"), "{body}");
    // Still serving the last good config, c included.
    let m = b.metrics().await;
    assert!(m.contains("\nc_value 1") && m.contains(RELOAD_BAD), "{m}");

    // A GET never reloads.
    let (status, _) = b.get("/-/reload").await;
    assert_eq!(status, 405);
    b.stop().await;
}

#[tokio::test]
async fn removed_sources_and_their_self_metrics_vanish() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let b = Bridge::start(&two_sources(&up.base, &up.base, "b_value")).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nb_value 1"))
        .await;
    let only_a = format!(
        "sources:\n  - name: a\n    url: {}\n    every: 1h\n    metrics: [{{name: a_value, help: A., value: $.n}}]\n",
        up.base
    );
    std::fs::write(&b.config, only_a).unwrap();
    let body = b
        .wait_metrics(10, "b to vanish", |m| !m.contains("b_value"))
        .await;
    assert!(!body.contains(r#"source="b""#), "{body}");
    assert!(body.contains("\na_value 1"));
    b.stop().await;
}

#[tokio::test]
async fn unchanged_source_series_are_in_every_scrape_during_reloads() {
    let ua = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let ub = Upstream::start(Reply::json(r#"{"n": 2}"#)).await;
    let b = Bridge::start(&two_sources(&ua.base, &ub.base, "b0")).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nb0 2"))
        .await;
    for i in 1..=20 {
        std::fs::write(&b.config, two_sources(&ua.base, &ub.base, &format!("b{i}"))).unwrap();
        let (status, _) = b.post("/-/reload").await;
        assert_eq!(status, 200);
        let m = b.metrics().await;
        assert!(m.contains("\na_value 1"), "scrape {i} lost source a:\n{m}");
    }
    wait_for(10, "b's polls", || ub.hits() >= 21).await;
    assert_eq!(ua.hits(), 1, "source a was never restarted");
    b.stop().await;
}

#[tokio::test]
async fn a_config_symlinked_from_elsewhere_is_watched_at_its_target() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let real_dir = tempfile::tempdir().unwrap();
    let real = real_dir.path().join("real.yaml");
    std::fs::write(&real, two_sources(&up.base, &up.base, "b_one")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jsonbridge.yaml");
    symlink(&real, &config).unwrap();
    let b = Bridge::start_at(dir, config).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nb_one 1"))
        .await;
    std::fs::write(&real, two_sources(&up.base, &up.base, "b_two")).unwrap();
    b.wait_metrics(10, "the edit at the target", |m| m.contains("\nb_two 1"))
        .await;
    b.stop().await;
}
