//! Issue 16 (reaching real APIs), point 5: which statuses are data, whether redirects are
//! followed, HTTP/2 offered or not. Upstreams on loopback.

use std::sync::atomic::Ordering;

use super::support::*;

#[tokio::test]
async fn a_503_whose_body_is_the_data_is_read_where_it_is_listed() {
    let up = Upstream::start(Reply {
        status: 503,
        ..Reply::json(r#"{"n": 7}"#)
    })
    .await;
    let url = format!("{}/health", up.base);
    let b = Bridge::start(&format!(
        "sources:\n{}{}",
        // Listed: data, and not retried (a status read as data is no failure).
        source(
            "listed",
            &url,
            "    valid_status_codes: [200, 503]\n    retries: 2\n    retry_backoff: 1ms\n"
        ),
        source("plain", &url, ""),
    ))
    .await;
    let m = b
        .wait_metrics(10, "both polled", |m| {
            m.contains("\nlisted_n 7") && polls(m, "plain", "http_status") == Some(1.0)
        })
        .await;
    assert_eq!(
        sample(&m, r#"jsonbridge_source_up{source="listed"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"jsonbridge_source_up{source="plain"}"#),
        Some(0.0)
    );
    assert!(!m.contains("\nplain_n"));
    assert_eq!(polls(&m, "listed", "success"), Some(1.0));
    assert_eq!(
        up.hits(),
        2,
        "one request each: the listed 503 was not retried"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_list_without_200_refuses_a_200() {
    let up = Upstream::start(Reply::json(r#"{"n": 7}"#)).await;
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source(
            "only503",
            &format!("{}/x", up.base),
            "    valid_status_codes: [503]\n"
        ),
    ))
    .await;
    let m = b
        .wait_metrics(10, "a refused poll", |m| {
            polls(m, "only503", "http_status") == Some(1.0)
        })
        .await;
    assert!(!m.contains("\nonly503_n"));
    b.stop().await;
}

#[tokio::test]
async fn with_follow_redirects_off_a_redirect_is_a_status_and_goes_nowhere() {
    // 302 to itself, forever: followed, it takes 11 requests (tested in `promises`); not
    // followed, one, and the poll fails on the status.
    let up = RawUpstream::start(Raw::RedirectLoop).await;
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source(
            "stay",
            &format!("{}/x", up.base),
            "    follow_redirects: false\n    enable_http2: false\n"
        ),
    ))
    .await;
    b.wait_metrics(10, "a failed poll", |m| {
        polls(m, "stay", "http_status") == Some(1.0)
    })
    .await;
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "the Location was not followed"
    );
    b.stop().await;
}
