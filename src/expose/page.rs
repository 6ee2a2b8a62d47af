//! The status pages: what runs, when it polls, how that went; one page per source with the
//! last response's size and what each metric matched.
//!
//! Server-rendered HTML, no JavaScript, readable on a phone, every dynamic string escaped.
//! URLs are shown as written in the config (with `${VAR}` unexpanded and passwords removed)
//! and error messages never contain header values, so no secret reaches a page.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::Exposer;
use crate::telemetry::SourceStats;

const HEAD: &str = concat!(
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    "<title>jsonbridge</title><style>",
    "body{font-family:system-ui,sans-serif;margin:1rem;color:#222;max-width:80rem}",
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;",
    "border-bottom:1px solid #ddd;vertical-align:top}.ok{color:#17692f}.bad{color:#b3261e}",
    "code,pre{font-size:.85em;word-break:break-all;white-space:pre-wrap}",
    ".scroll{overflow-x:auto}",
    // Narrow screens: each source becomes a card of labelled lines instead of a wide row.
    "@media (max-width:700px){table.cards thead{display:none}table.cards tr{display:block;",
    "border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.3rem}",
    "table.cards td{display:block;border:0;padding:.15rem .3rem}",
    "table.cards td::before{content:attr(data-label) \": \";font-weight:600}}",
    "</style></head><body>"
);

pub(super) async fn index(State(x): State<Arc<Exposer>>) -> Html<String> {
    Html(render_index(&x))
}

pub(super) async fn source(State(x): State<Arc<Exposer>>, Path(name): Path<String>) -> Response {
    match render_source(&x, &name) {
        Some(page) => Html(page).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no source named {name:?}\n")).into_response(),
    }
}

fn nav(h: &mut String) {
    let _ = write!(
        h,
        "<p><a href=\"/\">jsonbridge</a> {} · <a href=\"/metrics\">/metrics</a> · \
         <a href=\"/-/healthy\">/-/healthy</a> · <a href=\"/-/ready\">/-/ready</a></p>",
        crate::VERSION
    );
}

fn result(h: &mut String, st: Option<&SourceStats>) {
    match st {
        Some(t) if t.polled && t.up => h.push_str("<span class=\"ok\">ok</span>"),
        Some(t) if t.polled => {
            h.push_str("<span class=\"bad\">failed</span>");
            if let Some(e) = &t.last_error {
                h.push_str(": ");
                esc(h, e);
            }
        }
        _ => h.push_str("waiting for the first poll"),
    }
}

fn render_index(x: &Exposer) -> String {
    let config = x.store.config();
    let state = x.telemetry.snapshot();
    let now = SystemTime::now();
    let mut h = String::with_capacity(4096);
    h.push_str(HEAD);
    h.push_str("<h1>jsonbridge</h1>");
    nav(&mut h);
    h.push_str("<p>Config file <code>");
    esc(&mut h, &x.config_file);
    h.push_str("</code>: last reload ");
    if state.reload.last_successful {
        h.push_str("<span class=\"ok\">succeeded</span>");
    } else {
        h.push_str("<span class=\"bad\">failed</span> (the previous config is still running)");
    }
    let _ = write!(
        h,
        "; last good load {}.",
        time(Some(state.reload.last_success_at))
    );
    h.push_str("</p>");
    if let Some(e) = &state.reload.last_error {
        h.push_str("<pre class=\"bad\">");
        esc(&mut h, e);
        h.push_str("</pre>");
    }
    h.push_str(
        "<h2>Sources</h2><div class=\"scroll\"><table class=\"cards\"><thead><tr><th>Source</th><th>Result</th>\
         <th>URL</th><th>Schedule</th><th>Last poll</th><th>Next poll</th><th>Duration</th>\
         <th>Series</th></tr></thead><tbody>",
    );
    for s in &config.sources {
        let st = state.sources.get(&s.name);
        h.push_str("<tr><td data-label=\"Source\"><a href=\"/source/");
        esc(&mut h, &s.name);
        h.push_str("\">");
        esc(&mut h, &s.name);
        h.push_str("</a></td><td data-label=\"Result\">");
        result(&mut h, st);
        h.push_str("</td><td data-label=\"URL\"><code>");
        esc(&mut h, &s.request.display_url);
        h.push_str("</code>");
        if s.request
            .tls
            .as_ref()
            .is_some_and(|t| t.insecure_skip_verify)
        {
            h.push_str(" <span class=\"bad\">(TLS not verified)</span>");
        }
        h.push_str("</td><td data-label=\"Schedule\">");
        esc(&mut h, &s.schedule.to_string());
        h.push_str("</td><td data-label=\"Last poll\">");
        h.push_str(&time(st.and_then(|t| t.last_poll_at)));
        h.push_str("</td><td data-label=\"Next poll\">");
        h.push_str(&time(
            s.schedule.next_poll(st.and_then(|t| t.last_poll_at), now),
        ));
        h.push_str("</td><td data-label=\"Duration\">");
        if let Some(t) = st.filter(|t| t.polled) {
            h.push_str(&span(t.last_duration));
        }
        h.push_str("</td><td data-label=\"Series\">");
        let _ = write!(h, "{}", st.map(|t| t.series).unwrap_or(0));
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table></div></body></html>\n");
    h
}

fn render_source(x: &Exposer, name: &str) -> Option<String> {
    let config = x.store.config();
    let s = config.sources.iter().find(|s| s.name == name)?;
    let state = x.telemetry.snapshot();
    let st = state.sources.get(name);
    let mut h = String::with_capacity(4096);
    h.push_str(HEAD);
    h.push_str("<h1>Source ");
    esc(&mut h, name);
    h.push_str("</h1>");
    nav(&mut h);
    h.push_str("<table><tbody><tr><th>URL</th><td><code>");
    esc(&mut h, &s.request.display_url);
    h.push_str("</code></td></tr><tr><th>Schedule</th><td>");
    esc(&mut h, &s.schedule.to_string());
    let _ = write!(
        h,
        "</td></tr><tr><th>Timeout</th><td>{}</td></tr><tr><th>Last poll</th><td>{}</td></tr>\
         <tr><th>Next poll</th><td>{}</td></tr><tr><th>Last success</th><td>{}</td></tr>\
         <tr><th>Result</th><td>",
        humantime::format_duration(s.request.timeout),
        time(st.and_then(|t| t.last_poll_at)),
        time(
            s.schedule
                .next_poll(st.and_then(|t| t.last_poll_at), SystemTime::now())
        ),
        time(st.and_then(|t| t.last_success_at)),
    );
    result(&mut h, st);
    h.push_str("</td></tr><tr><th>Connection</th><td>");
    connection(&mut h, &s.request);
    h.push_str("</td></tr><tr><th>Last response</th><td>");
    if let Some(b) = st.and_then(|t| t.last_response_bytes) {
        let _ = write!(h, "{b} bytes");
        if let Some(w) = st.and_then(|t| t.last_wire_bytes)
            && w != b as u64
        {
            let _ = write!(h, " ({w} on the wire)");
        }
        if s.paginate.is_some() {
            let pages = st.map_or(0, |t| t.last_pages);
            let _ = write!(h, " in {pages} page{}", if pages == 1 { "" } else { "s" });
        }
        if s.fan_out.is_some() {
            let items = st.map_or(0, |t| t.last_requests.saturating_sub(t.last_pages));
            let _ = write!(h, ": the list and {items} item requests");
            let skipped: u64 = st.map_or(0, |t| t.fan_out_skipped.values().sum());
            if skipped > 0 {
                let _ = write!(h, " ({skipped} items left out since start-up)");
            }
        }
        if let Some(t) = st.filter(|t| t.polled) {
            let _ = write!(h, "; fetched in {}", span(t.last_fetch));
        }
    }
    let _ = write!(h, "</td></tr><tr><th>Read as</th><td>{}", s.plan.describe());
    let _ = write!(
        h,
        "</td></tr><tr><th>Series served</th><td>{}</td></tr></tbody></table>",
        st.map(|t| t.series).unwrap_or(0)
    );
    h.push_str(
        "<h2>Metrics (last good poll)</h2><div class=\"scroll\"><table><thead><tr>\
         <th>Metric</th><th>Items matched</th><th>Series</th><th>Skipped</th></tr></thead><tbody>",
    );
    for r in st.map(|t| t.last_reports.as_slice()).unwrap_or_default() {
        h.push_str("<tr><td>");
        esc(&mut h, &r.metric);
        let _ = write!(h, "</td><td>{}</td><td>{}</td><td>", r.items, r.series);
        for p in st
            .map(|t| t.last_problems.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|p| p.metric == r.metric)
        {
            let _ = write!(h, "{} x{}: ", p.kind, p.count);
            esc(&mut h, &p.example);
            h.push_str("<br>");
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table></div><p><a href=\"/probe?source=");
    esc(&mut h, name);
    h.push_str("\">Poll now and show the result</a> (leaves the served snapshot alone)</p>");
    h.push_str("</body></html>\n");
    Some(h)
}

/// How the source reaches its upstream: TLS, proxy, credentials by kind. Names files and
/// URLs as written; never a secret.
fn connection(h: &mut String, r: &crate::config::Request) {
    use crate::config::{Auth, Proxying, Tls};
    fn tls(h: &mut String, t: &Tls) {
        if t.insecure_skip_verify {
            h.push_str(
                "<span class=\"bad\">TLS certificate NOT verified (insecure_skip_verify)</span>",
            );
        } else {
            h.push_str("TLS: trusts ");
            match (&t.ca_file, t.system_roots) {
                (Some(ca), sys) => {
                    h.push_str("<code>");
                    esc(h, &ca.display().to_string());
                    h.push_str("</code>");
                    if sys {
                        h.push_str(" and the system's roots");
                    }
                }
                (None, _) => h.push_str("the system's roots"),
            }
            if let Some(n) = &t.server_name {
                h.push_str(", verifies the name <code>");
                esc(h, &n.to_str());
                h.push_str("</code>");
            }
        }
        if let Some((cert, _)) = &t.client {
            h.push_str("; client certificate <code>");
            esc(h, &cert.display().to_string());
            h.push_str("</code>");
        }
        if t.min_version == crate::config::TlsVersion::Tls13 {
            h.push_str("; TLS 1.3 only");
        }
    }
    let mut parts = 0;
    let mut sep = |h: &mut String| {
        if parts > 0 {
            h.push_str("<br>");
        }
        parts += 1;
    };
    if let Some(t) = &r.tls {
        sep(h);
        tls(h, t);
    }
    if let Proxying::Proxy { display, .. } = &r.proxy {
        sep(h);
        h.push_str("through the proxy <code>");
        esc(h, display);
        h.push_str("</code>");
    }
    match &r.auth {
        Some(Auth::OAuth2(o)) => {
            sep(h);
            h.push_str("OAuth2 token from <code>");
            esc(h, &o.display_token_url);
            h.push_str("</code>");
            if let Some(t) = &o.tls {
                h.push_str(" (");
                tls(h, t);
                h.push(')');
            }
        }
        Some(Auth::Basic { .. }) => {
            sep(h);
            h.push_str("basic auth");
        }
        Some(Auth::Bearer(_)) => {
            sep(h);
            h.push_str("bearer token");
        }
        None => {}
    }
    if parts == 0 {
        h.push_str("default (system roots, no client certificate)");
    }
}

fn time(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
        None => "never".into(),
    }
}

fn esc(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A duration in a unit that fits it, with three significant digits: `840 µs`, `12.3 ms`,
/// `4.20 s`, `2 min 05 s` (a sub-millisecond poll is not "0.000 s").
pub(crate) fn span(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    let three = |v: f64, unit: &str| {
        if v >= 100.0 {
            format!("{v:.0} {unit}")
        } else if v >= 10.0 {
            format!("{v:.1} {unit}")
        } else {
            format!("{v:.2} {unit}")
        }
    };
    if s >= 60.0 {
        let whole = s.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else if s >= 1.0 {
        three(s, "s")
    } else if s >= 1e-3 {
        three(s * 1e3, "ms")
    } else {
        three(s * 1e6, "µs")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_in_units_that_fit() {
        for (d, want) in [
            (Duration::ZERO, "0.00 µs"),
            (Duration::from_nanos(800), "0.80 µs"),
            (Duration::from_micros(840), "840 µs"),
            (Duration::from_micros(800), "800 µs"),
            (Duration::from_micros(1_000), "1.00 ms"),
            (Duration::from_micros(12_345), "12.3 ms"),
            (Duration::from_millis(999), "999 ms"),
            (Duration::from_millis(4_200), "4.20 s"),
            (Duration::from_millis(59_400), "59.4 s"),
            (Duration::from_secs(125), "2 min 05 s"),
            (Duration::from_secs(3_600), "60 min 00 s"),
        ] {
            assert_eq!(super::span(d), want, "{d:?}");
        }
    }
}
