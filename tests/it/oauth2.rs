//! Issue 16, point 3: OAuth2 client credentials. A token endpoint on loopback that counts
//! its calls per client and expires tokens as told, and an upstream that accepts only live
//! tokens (and can revoke them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::support::*;

/// Client id -> (secret, token lifetime in seconds).
type Clients = HashMap<&'static str, (&'static str, u64)>;

#[derive(Default)]
struct State {
    /// Token -> (client, expiry).
    live: HashMap<String, (String, Instant)>,
    /// Token requests per client.
    calls: HashMap<String, usize>,
    /// Form bodies the endpoint received.
    forms: Vec<String>,
    /// Requests the upstream served with a live token, per client.
    served: HashMap<String, usize>,
    /// Requests refused with 401.
    refused: usize,
    next: usize,
}

#[derive(Clone)]
struct Auth {
    clients: Arc<Clients>,
    state: Arc<Mutex<State>>,
    base: String,
}

impl Auth {
    async fn start(clients: Clients) -> Self {
        let state: Arc<Mutex<State>> = Arc::default();
        let clients = Arc::new(clients);
        let (c, s) = (clients.clone(), state.clone());
        let token = move |headers: HeaderMap, body: String| {
            let (c, s) = (c.clone(), s.clone());
            async move {
                use base64::Engine;
                let basic = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                let (id, secret) = basic.split_once(':').unwrap_or_default();
                let mut st = s.lock().unwrap();
                *st.calls.entry(id.to_string()).or_default() += 1;
                st.forms.push(body.clone());
                let ok_form = body.contains("grant_type=client_credentials");
                match c.get(id) {
                    Some((want, life)) if *want == secret && ok_form => {
                        st.next += 1;
                        let t = format!("tok-{}-{}", id, st.next);
                        let exp = Instant::now() + Duration::from_secs(*life);
                        st.live.insert(t.clone(), (id.to_string(), exp));
                        (
                            StatusCode::OK,
                            format!(
                                r#"{{"access_token":"{t}","token_type":"Bearer","expires_in":{life}}}"#
                            ),
                        )
                    }
                    _ => (
                        StatusCode::UNAUTHORIZED,
                        r#"{"error":"invalid_client","error_description":"bad secret"}"#.into(),
                    ),
                }
            }
        };
        let s = state.clone();
        let data = move |headers: HeaderMap| {
            let s = s.clone();
            async move {
                let bearer = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_string();
                let mut st = s.lock().unwrap();
                match st.live.get(&bearer).cloned() {
                    Some((client, exp)) if Instant::now() < exp => {
                        *st.served.entry(client).or_default() += 1;
                        ([("content-type", "application/json")], r#"{"n": 4}"#).into_response()
                    }
                    _ => {
                        st.refused += 1;
                        StatusCode::UNAUTHORIZED.into_response()
                    }
                }
            }
        };
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .route("/data", axum::routing::get(data));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            clients,
            state,
            base,
        }
    }

    fn calls(&self, client: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(client)
            .copied()
            .unwrap_or(0)
    }

    fn served(&self, client: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .served
            .get(client)
            .copied()
            .unwrap_or(0)
    }

    /// Revokes every token of `client` (the upstream answers 401 to them from now on).
    fn revoke(&self, client: &str) {
        self.state
            .lock()
            .unwrap()
            .live
            .retain(|_, (c, _)| c != client);
    }
}

const SECRET_A: &str = "client-secret-a-5150";
const SECRET_B: &str = "client-secret-b-2112";

fn oauth_source(name: &str, auth: &Auth, id: &str, secret_lines: &str, every: &str) -> String {
    format!(
        "  - name: {name}\n    url: {base}/data\n    every: {every}\n    oauth2:\n      client_id: {id}\n{secret_lines}      token_url: {base}/token\n      scopes: [read, metrics]\n      endpoint_params: {{audience: energy-api}}\n    metrics:\n      - {{name: {name}_n, help: N., value: $.n}}\n",
        base = auth.base
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cached_refreshed_on_401_and_before_they_expire() {
    let auth = Auth::start(HashMap::from([
        ("long", (SECRET_A, 3600)),
        ("short", (SECRET_B, 1)),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret-b"), format!("{SECRET_B}\n")).unwrap();
    let config = format!(
        "sources:\n{}{}{}",
        oauth_source(
            "long",
            &auth,
            "long",
            &format!("      client_secret: {SECRET_A}\n"),
            "1s"
        ),
        oauth_source(
            "short",
            &auth,
            "short",
            "      client_secret_file: secret-b\n",
            "1s"
        ),
        oauth_source(
            "wrong",
            &auth,
            "long",
            "      client_secret: not-the-secret-77\n",
            "1h"
        ),
    );
    std::fs::write(dir.path().join("jsonbridge.yaml"), &config).unwrap();
    let file = dir.path().join("jsonbridge.yaml");
    let b = Bridge::start_at(dir, file).await;

    // Three polls of each: `long` asks once, `short` (1 s tokens, replaced 0.25 s before
    // they expire, polled every second) asks at every poll, `wrong` is refused.
    let m = b
        .wait_metrics(20, "three polls each", |m| {
            polls(m, "long", "success").unwrap_or(0.0) >= 3.0
                && polls(m, "short", "success").unwrap_or(0.0) >= 3.0
                && polls(m, "wrong", "oauth2") == Some(1.0)
        })
        .await;
    assert!(m.contains("\nlong_n 4") && m.contains("\nshort_n 4"));
    // `wrong` shares the client id, with a bad secret: one refused call.
    assert_eq!(
        auth.calls("long"),
        2,
        "one token for all of long's polls, one refused"
    );
    // Three polls of `short` span two seconds at least (even if a late tick is made up
    // for at once), and each token is used for 0.75 s: two tokens at least, where `long`
    // needed one. Polls never failed on an expired token.
    assert!(
        auth.calls("short") >= 2,
        "short asks again as each token nears expiry"
    );
    assert_eq!(polls(&m, "short", "http_status"), None);
    let wrong = b.get("/source/wrong").await.1;
    assert!(
        wrong.contains("answered HTTP 401 (invalid_client)"),
        "the endpoint's error code is shown: {wrong}"
    );
    assert!(!wrong.contains("bad secret"), "its description is not");
    // The form carries the grant, the scopes and the extra parameters.
    let form = auth.state.lock().unwrap().forms[0].clone();
    for part in [
        "grant_type=client_credentials",
        "scope=read+metrics",
        "audience=energy-api",
    ] {
        assert!(form.contains(part), "{form}");
    }
    assert!(
        !form.contains(SECRET_A),
        "the secret goes in the header, not the form"
    );

    // Revoked upstream-side: the next poll gets a 401, asks for a new token once, and
    // succeeds: no failed poll.
    let before = polls(&b.metrics().await, "long", "success").unwrap();
    auth.revoke("long");
    // Two more successful polls: one may have been under way with the old token; the
    // other met the 401, got a new token and was sent again.
    let m = b
        .wait_metrics(10, "two polls after the revocation", |m| {
            polls(m, "long", "success").unwrap() >= before + 2.0
        })
        .await;
    assert_eq!(auth.calls("long"), 3, "one new token after the 401");
    assert_eq!(polls(&m, "long", "http_status"), None);
    assert!(
        auth.state.lock().unwrap().refused >= 1,
        "the revoked token met a 401"
    );
    assert!(
        auth.served("long") >= 3,
        "long's data was served with its tokens"
    );

    // No secret or token anywhere shown.
    let mut shown = b.metrics().await;
    for page in ["/", "/source/long", "/source/short", "/source/wrong"] {
        shown += &b.get(page).await.1;
    }
    assert!(
        shown.contains("OAuth2 token from"),
        "the page names the token URL"
    );
    for secret in [SECRET_A, SECRET_B, "not-the-secret-77", "tok-"] {
        assert!(!shown.contains(secret), "{secret} is shown");
    }
    let _ = &auth.clients;
    b.stop().await;
}

#[tokio::test]
async fn a_dead_token_endpoint_is_its_own_kind_and_never_reaches_the_upstream() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source(
            "s",
            &format!("{}/x", up.base),
            &format!(
                "    oauth2:\n      client_id: c\n      client_secret: s3\n      token_url: http://127.0.0.1:{port}/token\n"
            ),
        )
    ))
    .await;
    b.wait_metrics(10, "a failed poll", |m| {
        polls(m, "s", "oauth2") == Some(1.0)
    })
    .await;
    assert_eq!(up.hits(), 0);
    let p = b.get("/source/s").await.1;
    assert!(p.contains("the token endpoint http://127.0.0.1:"), "{p}");
    b.stop().await;
}
