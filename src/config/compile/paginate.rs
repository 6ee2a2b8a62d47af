//! `paginate:` on a source or module: one style of reaching the next page, its stop
//! conditions, and the bound on pages.

use super::Compiler;
use crate::config::raw::RawPaginate;
use crate::config::request::{DEFAULT_MAX_PAGES, PageStyle, Paginate};
use crate::extract::Selector;

impl Compiler<'_> {
    pub(super) fn paginate(&mut self, at: &str, p: &RawPaginate) -> Option<Paginate> {
        let at = format!("{at}.paginate");
        let before = self.diagnostics.len();
        let path = |c: &mut Self, field: &str, text: &Option<String>| -> Option<Selector> {
            let text = text.as_ref()?;
            if !text.trim().starts_with('$') {
                c.error(
                    format!("{at}.{field}"),
                    format!("{text:?}: start the JSONPath at the page's root ($)"),
                );
                return None;
            }
            match Selector::compile(text.trim()) {
                Ok(s) => Some(s),
                Err(e) => {
                    c.error(
                        format!("{at}.{field}"),
                        format!("invalid JSONPath {text:?}: {e}"),
                    );
                    None
                }
            }
        };
        let next_url = path(self, "next_url", &p.next_url);
        let cursor = path(self, "cursor", &p.cursor);
        let has_more = path(self, "has_more", &p.has_more);
        let total = path(self, "total", &p.total);
        let items = path(self, "items", &p.items);
        let chosen: Vec<&str> = [
            ("next_url", p.next_url.is_some()),
            ("next_link", p.next_link == Some(true)),
            ("cursor", p.cursor.is_some()),
            ("page_param", p.page_param.is_some()),
            ("offset_param", p.offset_param.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| n)
        .collect();
        if chosen.len() != 1 {
            self.error(
                &at,
                match chosen.len() {
                    0 => "say how to reach the next page: next_url, next_link, cursor, page_param or offset_param".to_string(),
                    _ => format!("set one way to the next page, not {}", chosen.join(" and ")),
                },
            );
            return None;
        }
        let param = |c: &mut Self, field: &str, v: &Option<String>| -> Option<String> {
            let v = v.as_ref()?;
            if v.is_empty() {
                c.error(format!("{at}.{field}"), "the parameter name is empty");
            }
            Some(v.clone())
        };
        let size = match (p.page_size, param(self, "size_param", &p.size_param)) {
            (Some(0), _) => {
                self.error(format!("{at}.page_size"), "page_size must be more than 0");
                None
            }
            (Some(n), Some(name)) => Some((name, n)),
            (Some(n), None) if p.offset_param.is_some() => Some(("limit".to_string(), n)),
            (Some(_), None) => {
                self.error(
                    format!("{at}.size_param"),
                    "page_size needs size_param: the query parameter to send it in",
                );
                None
            }
            (None, Some(_)) => {
                self.error(format!("{at}.page_size"), "size_param needs page_size");
                None
            }
            (None, None) => None,
        };
        let numbered = p.page_param.is_some() || p.offset_param.is_some();
        for (field, set) in [
            (
                "first_page",
                p.first_page.is_some() && p.page_param.is_none(),
            ),
            (
                "cursor_param",
                p.cursor_param.is_some() && p.cursor.is_none(),
            ),
            ("total", p.total.is_some() && !numbered),
            ("items", p.items.is_some() && !numbered),
            ("page_size", p.page_size.is_some() && !numbered),
        ] {
            if set {
                self.error(
                    format!("{at}.{field}"),
                    format!("`{field}` does not apply to {}", chosen[0]),
                );
            }
        }
        let style = match chosen[0] {
            "next_url" => PageStyle::NextUrl(next_url?),
            "next_link" => PageStyle::NextLink,
            "cursor" => PageStyle::Cursor {
                path: cursor?,
                param: param(self, "cursor_param", &p.cursor_param)
                    .unwrap_or_else(|| "cursor".into()),
            },
            "page_param" => PageStyle::Page {
                param: param(self, "page_param", &p.page_param)?,
                first: p.first_page.unwrap_or(1),
                size: size.clone(),
            },
            _ => {
                let Some(size) = size.clone() else {
                    self.error(
                        format!("{at}.page_size"),
                        "offset_param needs page_size: how far each page moves the offset",
                    );
                    return None;
                };
                PageStyle::Offset {
                    param: param(self, "offset_param", &p.offset_param)?,
                    size,
                }
            }
        };
        let max_pages = p.max_pages.unwrap_or(DEFAULT_MAX_PAGES);
        if max_pages == 0 {
            self.error(format!("{at}.max_pages"), "max_pages must be more than 0");
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Paginate {
            style,
            has_more,
            items,
            total,
            max_pages,
        })
    }
}
