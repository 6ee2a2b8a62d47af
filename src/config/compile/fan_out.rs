//! `fan_out:` on a source or module: the list's items, each one's request (templates from
//! the item), the labels it adds to its response's series, and the bounds.

use reqwest::header::HeaderName;

use super::Compiler;
use crate::config::raw::{RawFanOut, RawOnError, RawSource};
use crate::config::request::{
    DEFAULT_FAN_OUT_CONCURRENCY, DEFAULT_MAX_REQUESTS, FanOut, MAX_FAN_OUT_CONCURRENCY,
};
use crate::config::text;
use crate::extract::{Each, MetricSpec, Part, Template};

impl Compiler<'_> {
    pub(super) fn fan_out(&mut self, at: &str, rs: &RawSource, f: &RawFanOut) -> Option<FanOut> {
        let at = format!("{at}.fan_out");
        let before = self.diagnostics.len();
        if rs.paginate.is_some() {
            self.error(
                &at,
                "`fan_out` and `paginate` cannot be combined yet: page the list, or fan out from one response",
            );
        }
        let each = match Each::compile(&f.each) {
            Ok(e) => Some(e),
            Err(msg) => {
                self.error(format!("{at}.each"), msg);
                None
            }
        };
        let each = each?;
        let captures = each.captures.clone();
        let template =
            |c: &mut Self, path: String, text: &str| match Template::compile(text, &captures) {
                Ok(t) => Some(t),
                Err(msg) => {
                    c.error(path, msg);
                    None
                }
            };
        // The data may fill in the path and the query, never the host: the literal text
        // before the first placeholder must hold the whole origin and the `/` after it.
        let url = template(self, format!("{at}.url"), &f.url);
        if let Some(t) = &url {
            let head = match t.parts.first() {
                Some(Part::Literal(s)) => s.as_str(),
                _ => "",
            };
            let origin_written = reqwest::Url::parse(head).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && head
                        .find("://")
                        .is_some_and(|i| head[i + 3..].contains('/'))
            });
            if !origin_written {
                self.error(
                    format!("{at}.url"),
                    "write the scheme and host out (https://api.internal/clusters/{@.id}): the data may fill in the path and query, not the host",
                );
            }
        }
        let method = self.method(&at, f.method.as_deref());
        let mut query = Vec::new();
        for (k, v) in &f.query {
            if let Some(t) = template(self, format!("{at}.query.{k}"), v) {
                query.push((k.clone(), t));
            }
        }
        let mut headers = Vec::new();
        for (k, v) in &f.headers {
            let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
                self.error(
                    format!("{at}.headers.{k}"),
                    format!("invalid header name {k:?}"),
                );
                continue;
            };
            if let Some(t) = template(self, format!("{at}.headers.{k}"), v) {
                headers.push((name, t));
            }
        }
        let body = f
            .body
            .as_ref()
            .and_then(|b| template(self, format!("{at}.body"), b));
        let mut label_names = Vec::new();
        let mut labels = Vec::new();
        for (name, v) in &f.labels {
            if !text::is_label_name(name) {
                self.error(
                    format!("{at}.labels.{name}"),
                    format!(
                        "invalid label name {name:?}: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
                    ),
                );
                continue;
            }
            if let Some(t) = template(self, format!("{at}.labels.{name}"), v) {
                label_names.push(name.clone());
                labels.push(t);
            }
        }
        let concurrency = f.concurrency.unwrap_or(DEFAULT_FAN_OUT_CONCURRENCY);
        if !(1..=MAX_FAN_OUT_CONCURRENCY).contains(&concurrency) {
            self.error(
                format!("{at}.concurrency"),
                format!("concurrency must be 1 to {MAX_FAN_OUT_CONCURRENCY}"),
            );
        }
        let timeout = self
            .optional_duration(format!("{at}.timeout"), f.timeout.as_deref())
            .unwrap_or_default();
        let max_requests = f.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS);
        if max_requests == 0 {
            self.error(
                format!("{at}.max_requests"),
                "max_requests must be more than 0",
            );
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(FanOut {
            each,
            url: url?,
            method,
            query,
            headers,
            body,
            label_names,
            labels,
            concurrency,
            // Resolved against the source's timeout by the caller.
            timeout: timeout.unwrap_or_default(),
            skip_failed: f.on_error == Some(RawOnError::Skip),
            max_requests,
        })
    }

    /// Adds the item's labels to every block of a fan-out source: after the block's own,
    /// filled in from the item whose request gave the document.
    pub(super) fn parent_labels(&mut self, at: &str, f: &FanOut, metrics: &mut [MetricSpec]) {
        for (j, m) in metrics.iter_mut().enumerate() {
            for name in &f.label_names {
                if m.label_names.contains(name) {
                    self.error(
                        format!("{at}.metrics[{j}].labels.{name}"),
                        format!("label {name} is also a label of fan_out (from the list's item): rename one"),
                    );
                }
            }
            let mut names = m.label_names.to_vec();
            names.extend(f.label_names.iter().cloned());
            m.label_names = names.into();
            m.labels.extend((0..f.label_names.len()).map(|i| Template {
                parts: vec![Part::Parent(i)],
            }));
        }
    }
}
