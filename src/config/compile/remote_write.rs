//! `remote_write:` endpoints: the request part compiles as a source's (headers, auth, TLS,
//! proxy, timeout), then the queue and the labels added to every series.

use std::sync::Arc;

use super::Compiler;
use crate::config::raw::RawConfig;
use crate::config::{
    DEFAULT_REMOTE_WRITE_BATCH, DEFAULT_REMOTE_WRITE_QUEUE, RemoteWrite, Target, text,
};

impl Compiler<'_> {
    pub(super) fn remote_write(&mut self, raw: &RawConfig) -> Vec<Arc<RemoteWrite>> {
        let mut out: Vec<Arc<RemoteWrite>> = Vec::new();
        for (i, rw) in raw.remote_write.iter().enumerate() {
            let at = format!("remote_write[{i}]");
            let before = self.diagnostics.len();
            let request = self.request(&at, &rw.as_source());
            if let Some(r) = &request
                && !matches!(r.target, Target::Http { .. })
            {
                self.error(format!("{at}.url"), "remote write needs an http(s) URL");
            }
            let name = match (&rw.name, &request) {
                (Some(n), _) => n.clone(),
                (None, Some(r)) => endpoint_name(&r.display_url),
                (None, None) => String::new(),
            };
            if let Some(n) = &rw.name
                && !text::is_source_name(n)
            {
                self.error(
                    format!("{at}.name"),
                    format!("{n:?}: use letters, digits, `_`, `-` and `.`"),
                );
            }
            if out.iter().any(|o| o.name == name) {
                self.error(
                    format!("{at}.name"),
                    format!("another remote_write endpoint is named {name:?}: set `name` to tell them apart"),
                );
            }
            let mut external_labels = Vec::new();
            for (k, v) in &rw.external_labels {
                let lat = format!("{at}.external_labels.{k}");
                if !text::is_label_name(k) && !k.starts_with("__") {
                    self.error(&lat, format!("{k:?} is not a valid label name"));
                    continue;
                }
                if k == "__name__" {
                    self.error(&lat, "__name__ is the metric's name, not a label to add");
                    continue;
                }
                if let Some(v) = self.expand(&lat, v) {
                    external_labels.push((k.clone(), v));
                }
            }
            external_labels.sort();
            let queue_capacity = rw.queue_capacity.unwrap_or(DEFAULT_REMOTE_WRITE_QUEUE);
            let max_samples_per_send = rw
                .max_samples_per_send
                .unwrap_or(DEFAULT_REMOTE_WRITE_BATCH);
            if max_samples_per_send == 0 {
                self.error(
                    format!("{at}.max_samples_per_send"),
                    "max_samples_per_send must be more than zero",
                );
            }
            if queue_capacity < max_samples_per_send {
                self.error(
                    format!("{at}.queue_capacity"),
                    format!("queue_capacity must hold one send at least ({max_samples_per_send} samples)"),
                );
            }
            if self.diagnostics.len() > before {
                continue;
            }
            let Some(request) = request else { continue };
            out.push(Arc::new(RemoteWrite {
                name,
                request,
                external_labels,
                queue_capacity,
                max_samples_per_send,
            }));
        }
        out
    }
}

/// `host:port` of a URL as written (the default endpoint name).
fn endpoint_name(display_url: &str) -> String {
    let rest = display_url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(display_url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit('@')
        .next()
        .unwrap_or(authority)
        .to_string()
}
