//! A poll of a paginated source (`paginate:`): page after page, each fetched within the
//! poll's one deadline, read on the blocking pool as it comes and joined, then finished once
//! into one extraction, as a single response would be. A failed page fails the poll (the
//! last good snapshot stays), its number in the message.
//!
//! Where the next page is comes from the page itself (a URL or a cursor in the body, a `Link`
//! header) or from counting (page numbers, offsets). A next URL must stay on the source's
//! origin: an upstream cannot send jsonbridge, with its credentials, anywhere else.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::{PollError, Polled, read_page, settle};
use crate::config::Source;
use crate::config::request::{PageStyle, Paginate};
use crate::extract::{Pages, Selected, Selector, to_number};
use crate::fetch::{Fetcher, Page, request_url};
use crate::read::{Need, tree};
use crate::telemetry::{self, Limit};
use reqwest::Url;

/// What a page says of the pages after it.
#[derive(Debug, Default, PartialEq)]
struct Nav {
    next: Option<String>,
    has_more: Option<bool>,
    total: Option<f64>,
    /// Entries of the page's list (`paginate.items`): 0 where it is missing or empty.
    items: Option<usize>,
}

/// Where a poll is among the pages: what the pages said so far, and where the next one is.
struct Walk<'a> {
    source: &'a Source,
    paginate: &'a Paginate,
    /// The source's origin (scheme, host, port), serialized.
    origin: String,
    /// The first page's URL, rendered once per poll: a `{now - 30m}` window stays the same
    /// for every page.
    first: Url,
    /// The URL of the page last asked for (relative next URLs resolve against it).
    at: Url,
    cursors: HashSet<String>,
    /// Items read so far, and the total the first page announced.
    items: usize,
    total: Option<f64>,
    /// Pages read so far.
    n: usize,
}

impl<'a> Walk<'a> {
    fn new(source: &'a Source, paginate: &'a Paginate) -> Result<Self, PollError> {
        let first = request_url(&source.request, chrono::Utc::now())?
            .ok_or_else(|| PollError::Pagination("paginate needs an http(s) URL".into()))?;
        Ok(Self {
            source,
            paginate,
            origin: first.origin().ascii_serialization(),
            at: first.clone(),
            first,
            cursors: HashSet::new(),
            items: 0,
            total: None,
            n: 0,
        })
    }

    /// The first page's request.
    fn first(&self) -> (Option<Url>, Vec<(String, String)>) {
        (Some(self.first.clone()), first_query(&self.paginate.style))
    }

    /// After page `n` (with `found` items, what its body said, and its `Link` next target):
    /// the next page's request, or `None` when this one was the last.
    #[allow(clippy::type_complexity)]
    fn next(
        &mut self,
        found: usize,
        nav: Nav,
        link: Option<String>,
    ) -> Result<Option<(Option<Url>, Vec<(String, String)>)>, PollError> {
        self.n += 1;
        // The page's own list, where the config names it, says whether the page was empty.
        let found = nav.items.unwrap_or(found);
        self.items += found;
        if self.n == 1 {
            self.total = nav.total;
        }
        let (n, total, items) = (self.n, self.total, self.items);
        let next = match &self.paginate.style {
            _ if nav.has_more == Some(false) => None,
            PageStyle::NextUrl(_) | PageStyle::NextLink => {
                let target = match &self.paginate.style {
                    PageStyle::NextLink => link,
                    _ => nav.next,
                };
                match target.filter(|t| !t.trim().is_empty()) {
                    None => None,
                    Some(t) => {
                        let url = self.at.join(t.trim()).map_err(|e| {
                            PollError::Pagination(format!(
                                "the next page's URL {t:?} is not a URL: {e}"
                            ))
                        })?;
                        if url.origin().ascii_serialization() != self.origin {
                            return Err(PollError::Pagination(format!(
                                "the next page's URL leaves the source's origin ({}): refused",
                                url.origin().ascii_serialization()
                            )));
                        }
                        // A probe's pages pass `probe.allow_targets`, as its redirects do.
                        if !self.source.request.redirects.allows(&url) {
                            return Err(PollError::Pagination(
                                "the next page's URL is outside probe.allow_targets: refused"
                                    .into(),
                            ));
                        }
                        self.at = url.clone();
                        Some((Some(url), Vec::new()))
                    }
                }
            }
            PageStyle::Cursor { param, .. } => match nav.next.filter(|c| !c.is_empty()) {
                None => None,
                // A cursor seen before would loop: the pages end there.
                Some(c) if !self.cursors.insert(c.clone()) => {
                    tracing::warn!(
                        source = %self.source.name,
                        page = n,
                        "the upstream repeated a cursor; pagination stops there"
                    );
                    telemetry::limit_hit(Limit::CursorRepeated, &self.source.name);
                    None
                }
                Some(c) => Some((Some(self.first.clone()), vec![(param.clone(), c)])),
            },
            PageStyle::Page { param, first, size } => {
                (found > 0 && total.is_none_or(|t| (items as f64) < t)).then(|| {
                    let mut q = vec![(param.clone(), (first + n as u64).to_string())];
                    q.extend(size.iter().map(|(p, s)| (p.clone(), s.to_string())));
                    (Some(self.first.clone()), q)
                })
            }
            PageStyle::Offset { param, size } => {
                let offset = size.1 * n as u64;
                (found > 0 && total.is_none_or(|t| (offset as f64) < t)).then(|| {
                    (
                        Some(self.first.clone()),
                        vec![
                            (param.clone(), offset.to_string()),
                            (size.0.clone(), size.1.to_string()),
                        ],
                    )
                })
            }
        };
        if next.is_some() && n == self.paginate.max_pages {
            tracing::warn!(
                source = %self.source.name,
                max_pages = n,
                "max_pages reached: the poll keeps the pages read (raise paginate.max_pages)"
            );
            telemetry::limit_hit(Limit::MaxPages, &self.source.name);
            return Ok(None);
        }
        Ok(next)
    }

    /// How a page's request reads, for `jsonbridge test`.
    fn describe(&self, url: &Option<Url>, query: &[(String, String)]) -> String {
        let mut u = url.clone().unwrap_or_else(|| self.first.clone());
        if !query.is_empty() {
            let kept: Vec<(String, String)> = u
                .query_pairs()
                .filter(|(k, _)| !query.iter().any(|(n, _)| n == k))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            u.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .extend_pairs(query.iter().map(|(k, v)| (k, v)));
        }
        format!("{} {u}", self.source.request.method)
    }
}

/// Reads every page of `source` (at most `paginate.max_pages`).
pub(super) async fn poll_pages(
    fetcher: &Fetcher,
    source: &Arc<Source>,
    paginate: &Paginate,
) -> Result<Polled, PollError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + source.request.timeout;
    let mut walk = Walk::new(source, paginate)?;
    let (url, query) = walk.first();
    let mut page = Page::at(url, query, deadline);
    let mut joined: Option<Pages> = None;
    let (mut attempts, mut bytes, mut wire_bytes) = (0u32, 0usize, 0u64);
    let mut fetch = std::time::Duration::ZERO;
    loop {
        let number = walk.n + 1;
        let on_page = |e: PollError| PollError::OnPage {
            page: number,
            error: Box::new(e),
        };
        let asked = Instant::now();
        let fetched = fetcher
            .fetch_page(&source.request, &page)
            .await
            .map_err(|e| on_page(e.into()))?;
        fetch += asked.elapsed();
        attempts += fetched.attempts;
        bytes += fetched.body.len();
        wire_bytes += fetched.wire_bytes;
        let link = fetched.next_link.clone();
        let (src, p) = (source.clone(), paginate.clone());
        let (read, nav) = tokio::task::spawn_blocking(move || {
            let nav = navigate(&fetched.body, &p);
            let read = read_page(&fetched.body, fetched.content_type.as_deref(), &src, &[]);
            drop(fetched);
            (read, nav)
        })
        .await
        .map_err(|e| PollError::Internal(e.to_string()))?;
        let read = read.map_err(on_page)?;
        let found = read.items(&source.metrics);
        match &mut joined {
            None => joined = Some(read),
            Some(j) => j.join(read, &source.metrics),
        }
        let next = walk.next(found, nav, link).map_err(on_page)?;
        let Some((url, query)) = next else { break };
        // Pages beyond max_series would only be truncated away: a hostile or runaway
        // upstream cannot make a poll hold more than that.
        let held = joined.as_ref().map_or(0, Pages::series);
        if held >= source.max_series {
            tracing::warn!(
                source = %source.name,
                pages = walk.n,
                series = held,
                "max_series reached before the last page: the pages stop here"
            );
            telemetry::limit_hit(Limit::MaxSeries, &source.name);
            break;
        }
        page.url = url;
        page.query = query;
    }
    let pages = joined.unwrap_or_else(|| unreachable!("one page at least is read"));
    let src = source.clone();
    let extraction = tokio::task::spawn_blocking(move || {
        let mut x = pages.finish(&src.metrics)?;
        settle(&mut x, &src, std::time::SystemTime::now())?;
        Ok::<_, PollError>(x)
    })
    .await
    .map_err(|e| PollError::Internal(e.to_string()))??;
    tracing::debug!(
        source = %source.name,
        pages = walk.n,
        ms = started.elapsed().as_millis() as u64,
        "pages read"
    );
    Ok(Polled::of_requests(
        extraction,
        (attempts, bytes, wire_bytes),
        fetch,
        walk.n,
        None,
    ))
}

/// The query of the first page: page numbers and offsets start there, with the page size.
fn first_query(style: &PageStyle) -> Vec<(String, String)> {
    match style {
        PageStyle::Page { param, first, size } => {
            let mut q = vec![(param.clone(), first.to_string())];
            q.extend(size.iter().map(|(p, s)| (p.clone(), s.to_string())));
            q
        }
        PageStyle::Offset { param, size } => vec![
            (param.clone(), "0".into()),
            (size.0.clone(), size.1.to_string()),
        ],
        _ => Vec::new(),
    }
}

/// The next URL or cursor, `has_more` and the total, from a page's body: only those paths
/// are built (a pruned parse), unless one of them needs the whole document. A body that is
/// no JSON says nothing here; reading it for items says what is wrong.
fn navigate(body: &[u8], p: &Paginate) -> Nav {
    let next = match &p.style {
        PageStyle::NextUrl(s) | PageStyle::Cursor { path: s, .. } => Some(s),
        _ => None,
    };
    let paths: Vec<&Selector> = [
        next,
        p.has_more.as_ref(),
        p.total.as_ref(),
        p.items.as_ref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if paths.is_empty() {
        return Nav::default();
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Nav::default();
    };
    let doc: Value = if paths.iter().all(|s| s.steps().1) {
        let mut need = Need::default();
        for s in [next, p.has_more.as_ref(), p.total.as_ref()]
            .into_iter()
            .flatten()
        {
            need.at(s.steps().0).all = true;
        }
        // The list's entries are counted, not built: each is a placeholder.
        if let Some(s) = &p.items {
            need.at(s.steps().0).any = Some(Box::new(Need {
                present: true,
                ..Need::default()
            }));
        }
        match tree::parse(text, &need) {
            Ok(d) => d,
            Err(_) => return Nav::default(),
        }
    } else {
        match serde_json::from_str(text) {
            Ok(d) => d,
            Err(_) => return Nav::default(),
        }
    };
    let one = |s: Option<&Selector>| match s.map(|s| s.select_one(&doc)) {
        Some(Selected::One(v)) if !v.is_null() => Some(v.clone()),
        _ => None,
    };
    Nav {
        next: one(next).and_then(|v| match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }),
        has_more: one(p.has_more.as_ref()).and_then(|v| to_number(&v).ok().map(|x| x != 0.0)),
        total: one(p.total.as_ref()).and_then(|v| to_number(&v).ok()),
        items: p.items.as_ref().map(|s| match s.select_one(&doc) {
            Selected::One(Value::Array(a)) => a.len(),
            Selected::One(Value::Object(o)) => o.len(),
            _ => 0,
        }),
    }
}

/// Offline (`jsonbridge test`): the saved pages, in order, read and joined as a poll would,
/// with the request a poll would make for each (a `Link` header is not in a saved body: with
/// `next_link`, the pages are taken as given). More pages than the walk asks for are
/// reported, not read.
pub fn read_pages(
    bodies: &[Vec<u8>],
    source: &Source,
) -> Result<(crate::extract::Extraction, Vec<String>), PollError> {
    let mut joined: Option<Pages> = None;
    let mut requests = Vec::new();
    let mut walk = source
        .paginate
        .as_ref()
        .map(|p| Walk::new(source, p))
        .transpose()?;
    let mut next = walk.as_ref().map(|w| w.first());
    for (i, body) in bodies.iter().enumerate() {
        let on_page = |e: PollError| PollError::OnPage {
            page: i + 1,
            error: Box::new(e),
        };
        if let (Some(w), Some((url, query))) = (&walk, &next) {
            requests.push(format!("page {}: {}", i + 1, w.describe(url, query)));
        } else if walk.is_some() {
            requests.push(format!(
                "page {}: not asked for (the pages before it end the walk); not read",
                i + 1
            ));
            break;
        }
        let read = read_page(body, None, source, &[]).map_err(on_page)?;
        let found = read.items(&source.metrics);
        match &mut joined {
            None => joined = Some(read),
            Some(j) => j.join(read, &source.metrics),
        }
        if let (Some(w), Some(p)) = (&mut walk, &source.paginate) {
            let link = matches!(p.style, PageStyle::NextLink)
                .then(|| "(next)".to_string())
                .filter(|_| i + 1 < bodies.len());
            next = w.next(found, navigate(body, p), link).map_err(on_page)?;
        }
    }
    if let (Some(w), Some((url, query))) = (&walk, &next)
        && !matches!(
            source.paginate.as_ref().map(|p| &p.style),
            Some(PageStyle::NextLink)
        )
    {
        requests.push(format!(
            "page {}: {} (not given: add its body with another --input)",
            bodies.len() + 1,
            w.describe(url, query)
        ));
    }
    let Some(pages) = joined else {
        return Err(PollError::EmptyBody);
    };
    Ok((pages.finish(&source.metrics)?, requests))
}
