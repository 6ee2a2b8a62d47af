//! Under load: 200+ reloads while /metrics is scraped without pause; SIGTERM while scrapes
//! and polls are in flight; configs with 1,000 sources and 10 MB. Loopback only, bounded in
//! count and time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Daemon, Reply, Upstream, client, get_text, sample};

fn two_sources(stable: &str, changing: &str, metric: &str) -> String {
    format!(
        "sources:\n  - name: stable\n    url: {stable}/s\n    every: 1h\n    metrics: [{{name: stable_value, help: S., value: $.n}}]\n  - name: changing\n    url: {changing}/c\n    every: 1h\n    metrics: [{{name: {metric}, help: C., value: $.n}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reloads_under_continuous_scrapes() {
    let stable = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let changing = Upstream::start(Reply::json(r#"{"n": 2}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(&cfg, two_sources(&stable.base, &changing.base, "c0")).unwrap();
    let d = Daemon::start(&cfg, &["--web.enable-lifecycle", "--config.no-watch"], &[]);
    let base = format!("http://{}", d.addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get_text(&format!("{base}/metrics"))
        .await
        .contains("\nstable_value 1")
    {
        assert!(Instant::now() < deadline, "no first poll");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The load: two scrapers without pause, bounded to 120 s, alternating formats.
    let done = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let mut scrapers = Vec::new();
    for i in 0..2 {
        let (done, scrapes, base) = (done.clone(), scrapes.clone(), base.clone());
        scrapers.push(tokio::spawn(async move {
            let c = client();
            let stop = Instant::now() + Duration::from_secs(120);
            let mut failures = Vec::new();
            while !done.load(Ordering::SeqCst) && Instant::now() < stop {
                let mut req = c.get(format!("{base}/metrics"));
                if i == 1 {
                    req = req.header("accept", "application/openmetrics-text;version=1.0.0");
                }
                match req.send().await {
                    Ok(r) if r.status() == 200 => {
                        let body = r.text().await.unwrap_or_default();
                        let complete = if i == 1 {
                            body.ends_with("# EOF\n")
                        } else {
                            body.ends_with('\n')
                        };
                        if !complete || !body.contains("\nstable_value 1") {
                            failures.push(format!("partial or missing series:\n{body}"));
                        }
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("request failed: {e}")),
                }
                scrapes.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }

    let mut rss_after_warmup = 0;
    let mut tasks_after_warmup = 0.0;
    let reloads = 240;
    for i in 1..=reloads {
        let valid = i % 2 == 0;
        let text = if valid {
            two_sources(&stable.base, &changing.base, &format!("c{i}"))
        } else {
            two_sources(&stable.base, &changing.base, "bad-name")
        };
        std::fs::write(&cfg, text).unwrap();
        let r = client()
            .post(format!("{base}/-/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            if valid { 200 } else { 500 },
            "reload {i}"
        );
        if i == 40 {
            // Once the restarted source's poll has landed (its metric is named after the
            // reload), take the baseline.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !get_text(&format!("{base}/metrics"))
                .await
                .contains("\nc40 2")
            {
                assert!(Instant::now() < deadline, "reload 40 never polled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            rss_after_warmup = d.rss_kib();
            let m = get_text(&format!("{base}/metrics")).await;
            tasks_after_warmup = sample(&m, "jsonbridge_runtime_alive_tasks").unwrap();
        }
    }
    // The scrapers go on past the last reload (not a fixed pause: until they scraped again).
    let after = scrapes.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrapes.load(Ordering::SeqCst) < after + 10 {
        assert!(Instant::now() < deadline, "the scrapers stopped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.store(true, Ordering::SeqCst);
    for s in scrapers {
        let failures = s.await.unwrap();
        assert!(
            failures.is_empty(),
            "{} failed scrapes, first: {}",
            failures.len(),
            failures[0]
        );
    }
    let m = get_text(&format!("{base}/metrics")).await;
    assert_eq!(
        sample(&m, r#"jsonbridge_config_reloads_total{result="invalid"}"#),
        Some((reloads / 2) as f64)
    );
    assert_eq!(
        sample(&m, r#"jsonbridge_config_reloads_total{result="success"}"#),
        Some((reloads / 2) as f64)
    );
    assert!(m.contains(&format!("\nc{reloads} 2")));
    assert_eq!(stable.hits(), 1, "the unchanged source was never restarted");
    let tasks = sample(&m, "jsonbridge_runtime_alive_tasks").unwrap();
    let rss = d.rss_kib();
    let total = scrapes.load(Ordering::SeqCst);
    eprintln!(
        "{total} scrapes during {reloads} reloads; tasks {tasks_after_warmup} -> {tasks}; RSS {rss_after_warmup} -> {rss} KiB"
    );
    assert!(total >= reloads, "the scrapers barely ran: {total}");
    assert!(
        tasks <= tasks_after_warmup + 5.0,
        "tasks grew: {tasks_after_warmup} -> {tasks}"
    );
    // 200 reloads that each leaked a source's job, client and snapshot would add megabytes.
    assert!(
        rss < rss_after_warmup + 8 * 1024,
        "RSS grew: {rss_after_warmup} -> {rss} KiB"
    );
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_scrapes_and_slow_polls_exits_cleanly() {
    let slow = Upstream::start(Reply {
        delay: Duration::from_secs(30),
        ..Reply::json(r#"{"n": 1}"#)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sources:\n  - name: slow\n    url: {}/x\n    timeout: 60s\n    every: 1h\n    metrics: [{{name: n, help: N., value: $.n}}]\n",
            slow.base
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &[], &[]);
    let base = format!("http://{}", d.addr);
    // A poll is in flight (the upstream holds it for 30 s); scrapes run in a loop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.hits() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let scraped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s2, b2, n2) = (stop.clone(), base.clone(), scraped.clone());
    let scraper = tokio::spawn(async move {
        let mut complete = 0;
        let mut torn = 0;
        while !s2.load(Ordering::SeqCst) {
            match client().get(format!("{b2}/metrics")).send().await {
                Ok(r) => match r.text().await {
                    // Whole: the last family is there and the last line ends.
                    Ok(body)
                        if body.ends_with('\n')
                            && body.contains("jsonbridge_config_reloads_total") =>
                    {
                        complete += 1;
                        n2.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) | Err(_) => torn += 1,
                },
                // No answer began: refused once the listener is closed, or a keep-alive
                // connection the shutdown closed as the request went out (the scrape was
                // not served, so not cut off). A cut-off answer fails in `text()` above.
                Err(_) => break,
            }
        }
        (complete, torn)
    });
    // Scrapes are running (not a fixed pause): then the signal comes in among them.
    crate::support::wait_for(10, "scrapes to run", || scraped.load(Ordering::SeqCst) >= 5).await;
    let started = Instant::now();
    let (code, log) = d.terminate();
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (complete, torn) = scraper.await.unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(torn, 0, "a scrape was cut off");
    assert!(complete > 0);
    // Bounded: the 30 s poll was cancelled, not waited for.
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sources_and_a_ten_megabyte_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.json"), r#"{"n": 3}"#).unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(
        &cfg,
        "sources:\n  - name: first\n    url: file://data.json\n    every: 1h\n    metrics: [{name: n, help: N., value: $.n}]\n",
    )
    .unwrap();
    let d = Daemon::start(&cfg, &["--web.enable-lifecycle", "--config.no-watch"], &[]);
    let base = format!("http://{}", d.addr);
    // 1,000 sources whose help texts make the file about 10 MB.
    let help = "h".repeat(10_000);
    let mut text = String::from("sources:\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "  - name: s{i}\n    url: file://data.json\n    every: 1h\n    metrics: [{{name: n, help: \"{help}\", labels: {{i: \"{i}\"}}, value: $.n}}]\n"
        ));
    }
    assert!(text.len() > 10_000_000);
    std::fs::write(&cfg, &text).unwrap();
    let r = client()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = get_text(&format!("{base}/metrics")).await;
        if m.matches("\nn{i=").count() == 1000 {
            assert!(
                !m.contains("source=\"first\""),
                "the removed source is gone"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not all 1000 sources polled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The old config survives a broken 10 MB file.
    std::fs::write(&cfg, text.replace("name: s999\n", "name: s998\n")).unwrap();
    let r = client()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("duplicate source name \"s998\"")
    );
    let m = get_text(&format!("{base}/metrics")).await;
    assert_eq!(m.matches("\nn{i=").count(), 1000);
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn the_config_replaced_by_a_directory_or_half_written_keeps_the_old_one() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    let good = two_sources(&up.base, &up.base, "changing_value");
    std::fs::write(&cfg, &good).unwrap();
    let b = crate::support::Bridge::start_at(dir, cfg.clone()).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nchanging_value 1"))
        .await;
    std::fs::remove_file(&cfg).unwrap();
    std::fs::create_dir(&cfg).unwrap();
    let body = b
        .wait_metrics(10, "a read error", |m| {
            sample(m, r#"jsonbridge_config_reloads_total{result="read"}"#).is_some_and(|n| n >= 1.0)
        })
        .await;
    assert!(body.contains("\nchanging_value 1"));
    let (_, page) = b.get("/").await;
    assert!(
        page.contains("is a directory: only a regular file is read"),
        "{page}"
    );
    std::fs::remove_dir(&cfg).unwrap();
    // Written in two halves, as a slow writer would: the half never replaces the running
    // config; the whole file is applied.
    let whole = good.replace("changing_value", "changing_whole");
    let (first, second) = whole.split_at(whole.len() / 2);
    std::fs::write(&cfg, first).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mid = b.metrics().await;
    assert!(mid.contains("\nchanging_value 1"), "{mid}");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&cfg).unwrap();
        f.write_all(second.as_bytes()).unwrap();
    }
    b.wait_metrics(10, "the whole file", |m| {
        m.contains("\nchanging_whole 1") && m.contains("jsonbridge_config_last_reload_successful 1")
    })
    .await;
    b.stop().await;
}
