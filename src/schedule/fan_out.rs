//! A poll of a fan-out source (`fan_out:`): the list, then one request per item it selects,
//! at most `concurrency` at a time, each within its own `timeout` and all within the poll's.
//! Each answer is read with the item's labels and joined in the list's order, then finished
//! once, as one response would be.
//!
//! An item whose request fails fails the poll (the last good snapshot stays), or with
//! `on_error: skip` is left out and counted by kind. An item whose request cannot be made
//! (a field its URL needs is missing) is left out and counted as `template`. The data only
//! fills in the path and query of an item's URL (its host is written in the config), and
//! what it fills in is percent-encoded, so an item cannot reach another host or path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use reqwest::Url;
use serde_json::Value;

use super::{PollError, Polled, read_page, settle};
use crate::config::{FanOut, Source};
use crate::extract::{Pages, Part, Scope, render_node};
use crate::fetch::{Fetcher, Page};
use crate::read::{Need, Step, tree};
use crate::telemetry::{self, Limit};

/// What an item's task gives back: its place, its URL, its read answer, attempts, size,
/// size on the wire.
type Answer = (usize, Url, Result<Pages, PollError>, u32, usize, u64);

/// One item's request, rendered from the list.
struct Child {
    url: Url,
    headers: Vec<(reqwest::header::HeaderName, String)>,
    body: Option<String>,
    /// The item's `fan_out.labels`, in order.
    labels: Vec<String>,
}

/// What became of the item requests of one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FanOutStats {
    /// Item requests made.
    pub requests: usize,
    /// Items left out, by kind (`template`, or a failed request's kind with `skip`).
    pub skipped: BTreeMap<&'static str, u64>,
    /// The first item left out, and why.
    pub first_skip: Option<String>,
}

pub(super) async fn poll_fan_out(
    fetcher: &Fetcher,
    source: &Arc<Source>,
    f: &FanOut,
) -> Result<Polled, PollError> {
    let deadline = tokio::time::Instant::now() + source.request.timeout;
    let asked = Instant::now();
    let list = fetcher
        .fetch_page(&source.request, &Page::at(None, Vec::new(), deadline))
        .await
        .map_err(|e| PollError::OnList(Box::new(e.into())))?;
    let mut attempts = list.attempts;
    let mut bytes = list.body.len();
    let mut wire_bytes = list.wire_bytes;
    let src = source.clone();
    let (children, mut stats) = tokio::task::spawn_blocking(move || {
        let f = src.fan_out.as_ref().expect("a fan-out source");
        children(&list.body, f)
    })
    .await
    .map_err(|e| PollError::Internal(e.to_string()))??;
    if children.len() > f.max_requests {
        return Err(PollError::OnList(Box::new(PollError::Pagination(format!(
            "{} items, more than fan_out.max_requests ({})",
            children.len(),
            f.max_requests
        )))));
    }
    stats.requests = children.len();
    let mut answers: Vec<Option<Pages>> = (0..children.len()).map(|_| None).collect();
    // Series held so far: answers beyond the source's max_series would only be truncated
    // away, so no more are asked for (a runaway list cannot make a poll hold more).
    let held = std::sync::atomic::AtomicUsize::new(0);
    // An answer in: kept in its place, or counted (skip), or the poll's end (fail).
    let mut take = |done: Result<Answer, tokio::task::JoinError>| -> Result<(), PollError> {
        let (i, url, read, a, len, wire) = done.map_err(|e| PollError::Internal(e.to_string()))?;
        attempts += a;
        bytes += len;
        wire_bytes += wire;
        match read {
            Ok(p) => {
                held.fetch_add(p.series(), std::sync::atomic::Ordering::Relaxed);
                answers[i] = Some(p);
            }
            Err(e) if f.skip_failed => {
                *stats.skipped.entry(e.kind()).or_default() += 1;
                stats
                    .first_skip
                    .get_or_insert_with(|| format!("item {} ({}): {e}", i + 1, url.path()));
            }
            Err(e) => {
                return Err(PollError::OnItem {
                    item: i + 1,
                    path: url.path().to_string(),
                    error: Box::new(e),
                });
            }
        }
        Ok(())
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(f.concurrency));
    let mut running = tokio::task::JoinSet::new();
    for (i, child) in children.into_iter().enumerate() {
        if held.load(std::sync::atomic::Ordering::Relaxed) >= source.max_series {
            tracing::warn!(
                source = %source.name,
                items = i,
                series = held.load(std::sync::atomic::Ordering::Relaxed),
                "max_series reached before the last item: no more item requests"
            );
            telemetry::limit_hit(Limit::MaxSeries, &source.name);
            break;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (fetcher, src) = (fetcher.clone(), source.clone());
        let (timeout, method) = (f.timeout, f.method.clone());
        running.spawn(async move {
            let _slot = slot;
            let own = (tokio::time::Instant::now() + timeout).min(deadline);
            let page = Page {
                url: Some(child.url.clone()),
                query: Vec::new(),
                deadline: own,
                method: Some(method),
                headers: child.headers,
                body: child.body,
            };
            let fetched = match fetcher.fetch_page(&src.request, &page).await {
                Ok(r) => r,
                Err(e) => return (i, child.url, Err(PollError::from(e)), 0, 0, 0),
            };
            let (attempts, len, wire) = (fetched.attempts, fetched.body.len(), fetched.wire_bytes);
            let labels = child.labels;
            let read = tokio::task::spawn_blocking(move || {
                let read = read_page(
                    &fetched.body,
                    fetched.content_type.as_deref(),
                    &src,
                    &labels,
                );
                drop(fetched);
                read
            })
            .await
            .unwrap_or_else(|e| Err(PollError::Internal(e.to_string())));
            (i, child.url, read, attempts, len, wire)
        });
        // Answers already in: taken as the loop goes (a failure ends the poll at once;
        // dropping `running` aborts the rest).
        while let Some(done) = running.try_join_next() {
            take(done)?;
        }
    }
    while let Some(done) = running.join_next().await {
        take(done)?;
    }
    let fetch = asked.elapsed();
    let src = source.clone();
    let extraction = tokio::task::spawn_blocking(move || {
        let mut joined: Option<Pages> = None;
        for p in answers.into_iter().flatten() {
            match &mut joined {
                None => joined = Some(p),
                Some(j) => j.append(p),
            }
        }
        let mut x = match joined {
            Some(j) => j.finish(&src.metrics)?,
            None => crate::extract::Extraction::default(),
        };
        settle(&mut x, &src, std::time::SystemTime::now())?;
        Ok::<_, PollError>(x)
    })
    .await
    .map_err(|e| PollError::Internal(e.to_string()))??;
    Ok(Polled::of_requests(
        extraction,
        (attempts, bytes, wire_bytes),
        fetch,
        1,
        Some(stats),
    ))
}

/// The list's items, each as its request; items whose request cannot be rendered are left
/// out and counted.
fn children(list: &[u8], f: &FanOut) -> Result<(Vec<Child>, FanOutStats), PollError> {
    let invalid = |e: String| {
        PollError::OnList(Box::new(PollError::InvalidJson {
            error: e,
            content_type: None,
        }))
    };
    // Only the items and what the templates read from the root are built: a list of a
    // million entries with a few fields each costs what those fields cost.
    let doc: Value = match (std::str::from_utf8(list), list_need(f)) {
        (Ok(text), Some(need)) => tree::parse(text, &need).map_err(|e| invalid(e.to_string()))?,
        _ => serde_json::from_slice(list).map_err(|e| invalid(e.to_string()))?,
    };
    let mut out = Vec::new();
    let mut stats = FanOutStats::default();
    let mut n = 0usize;
    f.each.for_each(&doc, &mut |item, caps| {
        n += 1;
        let made = (|| {
            let url = render_node(&f.url, "url", item, &doc, caps, Some(encode_component))?;
            let mut headers = Vec::new();
            for (name, t) in &f.headers {
                headers.push((
                    name.clone(),
                    render_node(t, name.as_str(), item, &doc, caps, None)?,
                ));
            }
            let body = match &f.body {
                Some(t) => Some(render_node(t, "body", item, &doc, caps, None)?),
                None => None,
            };
            let mut query = Vec::new();
            for (k, t) in &f.query {
                query.push((k.clone(), render_node(t, k, item, &doc, caps, None)?));
            }
            let mut labels = Vec::new();
            for (k, t) in f.label_names.iter().zip(&f.labels) {
                labels.push(render_node(t, k, item, &doc, caps, None)?);
            }
            Ok::<_, crate::extract::ItemError>((url, headers, body, query, labels))
        })();
        let (url, headers, body, query, labels) = match made {
            Ok(m) => m,
            Err(e) => {
                *stats.skipped.entry("template").or_default() += 1;
                stats
                    .first_skip
                    .get_or_insert_with(|| format!("item {n}: {e}"));
                return;
            }
        };
        let Ok(mut url) = Url::parse(&url) else {
            *stats.skipped.entry("template").or_default() += 1;
            stats
                .first_skip
                .get_or_insert_with(|| format!("item {n}: the URL does not parse"));
            return;
        };
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        out.push(Child {
            url,
            headers,
            body,
            labels,
        });
    });
    Ok((out, stats))
}

/// Percent-encodes all but RFC 3986's unreserved characters: a value from the data stays
/// one path segment (no `/`, `..`, `?` or `#` of its own).
fn encode_component(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    // `.` and `..` alone would still move up the path.
    if value == "." || value == ".." {
        out.truncate(out.len() - value.len());
        out.push_str(if value == "." { "%2E" } else { "%2E%2E" });
    }
}

/// Offline (`jsonbridge test`): the list (`bodies[0]`) and the items' answers in the list's
/// order (`bodies[1..]`), read and joined as a poll would, with the request a poll would make
/// for each item; items whose answer is not given are listed, not read.
pub fn read_fan_out(
    bodies: &[Vec<u8>],
    source: &Source,
) -> Result<(crate::extract::Extraction, Vec<String>), PollError> {
    let f = source
        .fan_out
        .as_ref()
        .ok_or_else(|| PollError::Internal("not a fan-out source".into()))?;
    let Some((list, answers)) = bodies.split_first() else {
        return Err(PollError::EmptyBody);
    };
    let (children, stats) = children(list, f)?;
    let mut requests = vec![format!(
        "list: {} {}",
        source.request.method, source.request.display_url
    )];
    if let Some(first) = &stats.first_skip {
        requests.push(format!(
            "{} left out: {first}",
            stats.skipped.values().sum::<u64>()
        ));
    }
    let mut joined: Option<Pages> = None;
    for (i, child) in children.iter().enumerate() {
        let Some(body) = answers.get(i) else {
            requests.push(format!(
                "item {}: {} {} (not given: add its answer with another --input)",
                i + 1,
                f.method,
                child.url
            ));
            continue;
        };
        requests.push(format!("item {}: {} {}", i + 1, f.method, child.url));
        let read = read_page(body, None, source, &child.labels).map_err(|e| PollError::OnItem {
            item: i + 1,
            path: child.url.path().to_string(),
            error: Box::new(e),
        })?;
        match &mut joined {
            None => joined = Some(read),
            Some(j) => j.append(read),
        }
    }
    if answers.len() > children.len() {
        requests.push(format!(
            "{} answers given for {} items: the extra ones are not read",
            answers.len(),
            children.len()
        ));
    }
    let x = match joined {
        Some(j) => j.finish(&source.metrics)?,
        None => crate::extract::Extraction::default(),
    };
    Ok((x, requests))
}

/// What the list's items and templates read, for a pruned parse: `None` where `each` or a
/// template's path is more than plain steps (a filter, a search), which reads the whole list.
fn list_need(f: &FanOut) -> Option<Need> {
    let mut path = Vec::new();
    let mut captured = Vec::new();
    let fragments = f.each.fragments();
    for (k, fragment) in fragments.iter().enumerate() {
        let (steps, exact) = fragment.steps();
        if !exact {
            return None;
        }
        path.extend_from_slice(steps);
        if k + 1 < fragments.len() {
            path.push(Step::Wildcard);
            captured.push(path.len());
        }
    }
    let mut need = Need::default();
    need.at(&path).all = true;
    let templates = std::iter::once(&f.url)
        .chain(f.query.iter().map(|(_, t)| t))
        .chain(f.headers.iter().map(|(_, t)| t))
        .chain(f.body.iter())
        .chain(f.labels.iter());
    for t in templates {
        for part in &t.parts {
            let Part::Lookup(l, _) = part else { continue };
            let (steps, exact) = l.selector.steps();
            if !exact {
                return None;
            }
            match l.scope {
                // Inside the item, read whole already.
                Scope::Item => {}
                Scope::Root => need.at(steps).all = true,
                Scope::Capture(i) => {
                    let mut p = path[..*captured.get(i)?].to_vec();
                    p.extend_from_slice(steps);
                    need.at(&p).all = true;
                }
            }
        }
    }
    Some(need)
}
