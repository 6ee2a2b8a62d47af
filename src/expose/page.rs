//! The landing page: what runs, when it last polled, and how that went.
//!
//! Server-rendered HTML with every dynamic string escaped. It shows URLs as written in the
//! config (with `${VAR}` unexpanded and passwords removed) and error messages that never
//! contain header values, so no secret reaches the page.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::Html;

use super::Exposer;

pub(super) async fn index(State(x): State<Arc<Exposer>>) -> Html<String> {
    Html(render(&x))
}

fn render(x: &Exposer) -> String {
    let config = x.store.config();
    let state = x.telemetry.snapshot();
    let mut h = String::with_capacity(4096);
    h.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>jsonbridge</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}",
        "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;",
        "border-bottom:1px solid #ddd;vertical-align:top}.ok{color:#17692f}.bad{color:#b3261e}",
        "code{font-size:.9em;word-break:break-all}",
        "</style></head><body>"
    ));
    let _ = write!(
        h,
        "<h1>jsonbridge</h1><p>Version {} · <a href=\"/metrics\">/metrics</a> · \
         <a href=\"/-/healthy\">/-/healthy</a> · <a href=\"/-/ready\">/-/ready</a></p>",
        crate::VERSION
    );
    h.push_str("<p>Config file <code>");
    esc(&mut h, &x.config_file);
    h.push_str("</code>: last reload ");
    if state.reload.last_successful {
        h.push_str("<span class=\"ok\">succeeded</span>");
    } else {
        h.push_str("<span class=\"bad\">failed</span> (the previous config is still running)");
    }
    let _ = write!(h, " at {}.", time(Some(state.reload.last_success_at)));
    if let Some(e) = &state.reload.last_error {
        h.push_str("<pre>");
        esc(&mut h, e);
        h.push_str("</pre>");
    }
    h.push_str(
        "</p><h2>Sources</h2><table><thead><tr><th>Source</th><th>URL</th>\
        <th>Schedule</th><th>Last poll</th><th>Duration</th><th>Result</th><th>Series</th>\
        </tr></thead><tbody>",
    );
    for s in &config.sources {
        let st = state.sources.get(&s.name);
        h.push_str("<tr><td>");
        esc(&mut h, &s.name);
        h.push_str("</td><td><code>");
        esc(&mut h, &s.request.display_url);
        h.push_str("</code></td><td>");
        esc(&mut h, &s.schedule.to_string());
        h.push_str("</td><td>");
        h.push_str(&time(st.and_then(|t| t.last_poll_at)));
        h.push_str("</td><td>");
        if let Some(t) = st.filter(|t| t.polled) {
            let _ = write!(h, "{:.3} s", t.last_duration.as_secs_f64());
        }
        h.push_str("</td><td>");
        match st {
            Some(t) if t.polled && t.up => h.push_str("<span class=\"ok\">ok</span>"),
            Some(t) if t.polled => {
                h.push_str("<span class=\"bad\">failed</span>");
                if let Some(e) = &t.last_error {
                    h.push_str(": ");
                    esc(&mut h, e);
                }
            }
            _ => h.push_str("waiting for the first poll"),
        }
        h.push_str("</td><td>");
        let _ = write!(h, "{}", st.map(|t| t.series).unwrap_or(0));
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table></body></html>\n");
    h
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
