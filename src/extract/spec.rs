//! The compiled form of a metric block: `each` with captures, label templates, outputs.
//!
//! Parsing happens once, at config load (called by [`crate::config`]); extraction only walks
//! these structures.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::filters::Filters;
use super::selector::{Selected, Selector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
    /// No declared type: `untyped` in the 0.0.4 text format, `unknown` in OpenMetrics (what
    /// json_exporter writes by default).
    Untyped,
}

impl OnDuplicate {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDuplicate::First => "first",
            OnDuplicate::Last => "last",
            OnDuplicate::Sum => "sum",
            OnDuplicate::Min => "min",
            OnDuplicate::Max => "max",
            OnDuplicate::Count => "count",
            OnDuplicate::Error => "error",
        }
    }
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Untyped => "untyped",
        }
    }
}

/// Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A metric name made from the data (`name: "app_{key}"`): checked per series, since the
/// data decides it.
#[derive(Debug, Clone)]
pub struct DynamicName {
    pub template: Template,
    /// Type and help of every family it makes.
    pub family: Arc<DynamicFamily>,
    /// Names the config's own families expose (and the counter suffixes they own): a name
    /// from the data may not take one.
    pub taken: Arc<std::collections::HashSet<String>>,
}

/// Type and help of a family whose name came from the data.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicFamily {
    pub kind: MetricKind,
    pub help: String,
}

impl DynamicName {
    /// Why `name` cannot be a family name here, if it cannot.
    pub fn refuse(&self, name: &str) -> Option<String> {
        if !is_metric_name(name) {
            return Some("is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)".into());
        }
        if name.starts_with("jsonbridge_") {
            return Some("starts with jsonbridge_, reserved for self-metrics".into());
        }
        let exposed: &[String] = &match self.family.kind {
            MetricKind::Counter => vec![
                name.to_string(),
                format!("{name}_total"),
                format!("{name}_created"),
            ],
            _ => vec![name.to_string()],
        };
        exposed
            .iter()
            .find(|n| self.taken.contains(n.as_str()))
            .map(|n| format!("would expose {n}, which a metric of the config exposes"))
    }
}

/// One metric block of a source, ready to run: the items, their labels, and one or more
/// outputs (metrics) computed from each item.
#[derive(Debug, Clone)]
pub struct MetricSpec {
    pub each: Each,
    /// `name` with placeholders: the family of each series comes from the data. Its value
    /// rides along as one more label value (after the block's), removed when the block ends.
    pub name: Option<DynamicName>,
    pub label_names: Arc<[String]>,
    pub labels: Vec<Template>,
    pub outputs: Vec<Output>,
    pub on_duplicate: OnDuplicate,
    /// Whether `on_duplicate` was written: a chosen policy is no extraction error.
    pub on_duplicate_chosen: bool,
    /// `aggregate:` items grouped by their labels.
    pub aggregate: Option<GroupBy>,
    /// `fill:` per label (by position among the block's labels), the values always reported.
    pub fill: Vec<(usize, Vec<String>)>,
    pub timestamp: Option<TimestampSpec>,
}

/// `aggregate:` how the values of the items that share a label set become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// One metric computed from each item of a block.
#[derive(Debug, Clone)]
pub struct Output {
    /// The name as configured (used in self-metric labels and messages).
    pub name: String,
    /// The family name in the exposition: a counter's `_total` suffix is added by the encoder.
    pub family: String,
    pub kind: OutputKind,
    pub value: ValueSpec,
    pub conversion: Conversion,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    Gauge,
    Counter,
    Untyped,
    /// One gauge series per state, labelled `label="state"`: 1 for the current state, 0 for
    /// the others.
    StateSet {
        label: String,
        states: Vec<String>,
    },
}

impl OutputKind {
    /// How the family is exposed (a state set is a gauge in both text formats).
    pub fn metric_kind(&self) -> MetricKind {
        match self {
            OutputKind::Counter => MetricKind::Counter,
            OutputKind::Untyped => MetricKind::Untyped,
            _ => MetricKind::Gauge,
        }
    }
}

/// What to do when two items of a block give the same label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDuplicate {
    /// Keep the first item in document order (the default).
    #[default]
    First,
    Last,
    Sum,
    Min,
    Max,
    /// The number of items.
    Count,
    /// Fail the poll: the last good snapshot stays and the source reports `duplicate_series`.
    Error,
}

/// From the node found to a number: filters, an optional string-to-number map, a fallback, a
/// factor.
#[derive(Debug, Clone, Default)]
pub struct Conversion {
    /// `value: "@.seen | time"`: applied to the node first.
    pub filters: Filters,
    /// Keys are compared with the node as text (strings as they are, booleans as
    /// `true`/`false`, numbers as written, `null`).
    pub mapping: Option<HashMap<String, f64>>,
    /// Used when the lookup finds nothing usable (missing, null, unmapped, not numeric).
    pub default: Option<f64>,
    pub scale: Option<f64>,
}

/// When the sample was measured, from the data itself.
#[derive(Debug, Clone)]
pub struct TimestampSpec {
    pub lookup: Lookup,
    pub format: TimestampFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// `2026-11-26T10:00:00Z`, `2026-11-26T11:00:00.5+01:00`.
    Rfc3339,
    /// Seconds since the epoch (a number or a numeric string; fractions allowed).
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
}

/// Where a lookup starts: the current item, the document root, or a node bound by a capture
/// of `each` (an ancestor of the item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Item,
    Root,
    Capture(usize),
}

/// A node bound by a capture while iterating: its key (or index) and the node itself.
#[derive(Debug, Clone)]
pub struct Bound<'a> {
    pub key: Cow<'a, str>,
    pub node: &'a Value,
}

/// The item a block reads: a node of a built tree, or (streamed plans, see
/// [`super::plan`]) the nodes its lookups lead to, filled in while the item was parsed.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    Node(&'a Value),
    Slots {
        values: &'a [Option<Value>],
        /// Indexed by the lookups' ids (numbered by [`super::ReadPlan::new`]).
        bindings: &'a [Binding],
    },
}

/// Where a lookup's node is among an item's slots: the slot, then the path left to walk.
#[derive(Debug, Clone)]
pub struct Binding {
    pub(crate) slot: usize,
    pub(crate) rest: Selector,
}

/// A JSONPath that must select exactly one node.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub scope: Scope,
    pub selector: Selector,
    /// Position among the block's lookups (numbered by [`super::ReadPlan::new`]).
    pub(crate) id: usize,
    /// An aggregate from the root folded while the body is parsed: its place among the
    /// plan's folds (set by [`super::ReadPlan::new`]; see [`super::fold`]).
    pub(crate) fold: Option<usize>,
    /// As written, for messages.
    text: String,
}

impl Lookup {
    /// Compiles `@.x` (relative to the item), `$.x` (from the root) or `name.x` (relative to
    /// the node bound by capture `name` of `each`).
    pub fn compile(path: &str, captures: &[String]) -> Result<Self, String> {
        let path = path.trim();
        let (scope, rooted) = if let Some(rest) = path.strip_prefix('@') {
            (Scope::Item, format!("${rest}"))
        } else if path.starts_with('$') {
            (Scope::Root, path.to_string())
        } else if let Some((i, rest)) = captures.iter().enumerate().find_map(|(i, c)| {
            path.strip_prefix(c.as_str())
                .filter(|r| r.starts_with(['.', '[']))
                .map(|r| (i, r))
        }) {
            (Scope::Capture(i), format!("${rest}"))
        } else {
            return Err(format!(
                "{path:?} is not a JSONPath: start it with @ (the item), $ (the document root) or a capture of `each`"
            ));
        };
        let selector =
            Selector::compile(&rooted).map_err(|e| format!("invalid JSONPath {path:?}: {e}"))?;
        Ok(Self {
            scope,
            selector,
            id: 0,
            fold: None,
            text: path.to_string(),
        })
    }

    /// Where to start, and the path from there.
    fn start<'a, 's>(
        &'s self,
        item: Item<'a>,
        root: &'a Value,
        caps: &[Bound<'a>],
    ) -> Option<(&'a Value, &'s Selector)>
    where
        'a: 's,
    {
        match (self.scope, item) {
            (Scope::Item, Item::Node(v)) => Some((v, &self.selector)),
            (Scope::Item, Item::Slots { values, bindings }) => {
                let b = &bindings[self.id];
                values[b.slot].as_ref().map(|v| (v, &b.rest))
            }
            (Scope::Root, _) => Some((root, &self.selector)),
            (Scope::Capture(i), _) => Some((caps[i].node, &self.selector)),
        }
    }

    pub fn select<'a>(&self, item: Item<'a>, root: &'a Value, caps: &[Bound<'a>]) -> Selected<'a> {
        match self.start(item, root, caps) {
            Some((v, sel)) => sel.select_one(v),
            None => Selected::None,
        }
    }

    /// Every node selected (for aggregates).
    pub fn select_all<'a>(
        &self,
        item: Item<'a>,
        root: &'a Value,
        caps: &[Bound<'a>],
        out: &mut Vec<&'a Value>,
    ) {
        if let Some((v, sel)) = self.start(item, root, caps) {
            sel.select_into(v, out);
        }
    }

    /// The path as the user wrote it.
    pub fn display(&self) -> &str {
        &self.text
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Number of nodes selected (0 when none).
    Count,
    /// Length of the one node selected: array items, object members or string characters.
    Length,
    Sum,
    Min,
    Max,
    Avg,
}

impl Aggregate {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "count" => Aggregate::Count,
            "length" => Aggregate::Length,
            "sum" => Aggregate::Sum,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "avg" => Aggregate::Avg,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub enum ValueSpec {
    Constant(f64),
    Lookup(Lookup),
    Aggregate(Aggregate, Lookup),
}

impl ValueSpec {
    /// A number, a JSONPath, or `count(...)`, `length(...)`, `sum(...)`, `min(...)`,
    /// `max(...)`, `avg(...)` of a JSONPath; without filters.
    pub fn compile(text: &str, captures: &[String]) -> Result<Self, String> {
        match Self::compile_filtered(text, captures)? {
            (v, f) if f.is_empty() => Ok(v),
            _ => Err("filters are not allowed here".into()),
        }
    }

    /// The value and its filters: `@.seen | time`.
    pub fn compile_filtered(text: &str, captures: &[String]) -> Result<(Self, Filters), String> {
        let (head, filters) = Filters::split(text.trim(), false)?;
        Ok((Self::compile_head(head, captures)?, filters))
    }

    fn compile_head(t: &str, captures: &[String]) -> Result<Self, String> {
        if let Ok(v) = t.parse::<f64>() {
            return Ok(ValueSpec::Constant(v));
        }
        if let Some(open) = t.find('(')
            && t.ends_with(')')
            && let Some(func) = Aggregate::parse(&t[..open])
        {
            let inner = &t[open + 1..t.len() - 1];
            return Ok(ValueSpec::Aggregate(
                func,
                Lookup::compile(inner, captures)?,
            ));
        }
        Ok(ValueSpec::Lookup(Lookup::compile(t, captures)?))
    }
}

/// A label value: literal text mixed with `{capture}`, `{@.path}` and `{$.path}`.
#[derive(Debug, Clone)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub enum Part {
    Literal(String),
    Capture(usize, Filters),
    Lookup(Lookup, Filters),
    /// A label of the list item whose request gave this document (`fan_out.labels`), by
    /// position: the same for every item of the document.
    Parent(usize),
}

impl Template {
    /// `{{` and `}}` stand for literal braces. Captures must be declared by `each`.
    pub fn compile(text: &str, captures: &[String]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(format!(
                        "unmatched '}}' at offset {i} (write '}}}}' for a literal brace)"
                    ));
                }
                '{' => {
                    let end = closing_brace(text, i + 1).ok_or_else(|| {
                        format!("unclosed '{{' at offset {i} (write '{{{{' for a literal brace)")
                    })?;
                    let (inner, filters) = Filters::split(text[i + 1..end].trim(), true)?;
                    while chars.peek().is_some_and(|(j, _)| *j <= end) {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    if let Some(n) = captures.iter().position(|c| c == inner) {
                        parts.push(Part::Capture(n, filters));
                    } else if inner.starts_with('@')
                        || inner.starts_with('$')
                        || captures.iter().any(|c| {
                            inner
                                .strip_prefix(c.as_str())
                                .is_some_and(|r| r.starts_with(['.', '[']))
                        })
                    {
                        parts.push(Part::Lookup(Lookup::compile(inner, captures)?, filters));
                    } else if captures.is_empty() {
                        return Err(format!(
                            "unknown capture {{{inner}}}: `each` declares no captures (use {{@.field}} for a field of the item)"
                        ));
                    } else {
                        return Err(format!(
                            "unknown capture {{{inner}}}: `each` declares {}",
                            captures
                                .iter()
                                .map(|c| format!("{{{c}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }
}

/// Index of the `}` closing a `{` whose content starts at `from`, skipping quoted strings and
/// brackets so that `{@.a[?@.b == '}']}` works.
fn closing_brace(text: &str, from: usize) -> Option<usize> {
    super::filters::top_level(text, from)
        .find(|(_, b)| *b == b'}')
        .map(|(i, _)| i)
}

/// `each`: a JSONPath in which `.{name}` or `[{name}]` is a wildcard whose key (or index)
/// is captured. Compiled as path fragments between the captures.
#[derive(Debug, Clone)]
pub struct Each {
    /// `captures.len() + 1` fragments; fragment `k+1` runs on each child bound to capture `k`.
    fragments: Vec<Selector>,
    pub captures: Vec<String>,
    /// No `each`: the document itself is the one item (of a paginated source, the first
    /// page's).
    pub whole: bool,
}

impl Each {
    /// No `each`: the document root is the one item.
    pub fn root() -> Self {
        Self {
            fragments: vec![Selector::root()],
            captures: Vec::new(),
            whole: true,
        }
    }

    pub fn compile(path: &str) -> Result<Self, String> {
        let path = path.trim();
        if !path.starts_with('$') {
            return Err(format!(
                "`each` must start at the document root ($), got {path:?}"
            ));
        }
        let mut fragments_text = Vec::new();
        let mut captures: Vec<String> = Vec::new();
        let bytes = path.as_bytes();
        let mut start = 0;
        let mut i = 0;
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(q) = quote {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
                i += 1;
                continue;
            }
            let capture = match b {
                b'\'' | b'"' => {
                    quote = Some(b);
                    None
                }
                b'.' if bytes.get(i + 1) == Some(&b'{') => {
                    capture_at(path, i + 2, b'}').map(|(name, end)| (name, end + 1))
                }
                b'[' if bytes.get(i + 1) == Some(&b'{') => capture_at(path, i + 2, b'}')
                    .filter(|(_, end)| bytes.get(end + 1) == Some(&b']'))
                    .map(|(name, end)| (name, end + 2)),
                _ => None,
            };
            match capture {
                Some((name, next)) => {
                    let before = &path[start..i];
                    if before.ends_with('.') {
                        return Err(format!(
                            "capture {{{name}}} cannot follow '..' (captures bind one level of keys)"
                        ));
                    }
                    if captures.iter().any(|c| c == name) {
                        return Err(format!("capture {{{name}}} is declared twice"));
                    }
                    fragments_text.push(before.to_string());
                    captures.push(name.to_string());
                    start = next;
                    i = next;
                }
                None => i += 1,
            }
        }
        fragments_text.push(path[start..].to_string());
        let fragments = fragments_text
            .iter()
            .enumerate()
            .map(|(k, text)| {
                let rooted = if k == 0 {
                    text.clone()
                } else {
                    format!("${text}")
                };
                Selector::compile(&rooted).map_err(|e| {
                    if captures.is_empty() {
                        format!("invalid JSONPath {path:?}: {e}")
                    } else {
                        format!("invalid JSONPath {path:?} (part {rooted:?}): {e}")
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            fragments,
            captures,
            whole: false,
        })
    }

    /// The path fragments between the captures (`captures.len() + 1` of them).
    pub(crate) fn fragments(&self) -> &[Selector] {
        &self.fragments
    }

    /// Calls `f` for every item with the nodes bound by the captures, in document order.
    pub fn for_each<'a>(&self, root: &'a Value, f: &mut dyn FnMut(&'a Value, &[Bound<'a>])) {
        let last = self.fragments.len() - 1;
        let mut found = Vec::new();
        self.walk(0, root, &mut Vec::new(), &mut |node, caps| {
            found.clear();
            self.fragments[last].select_into(node, &mut found);
            for item in found.drain(..) {
                f(item, caps);
            }
        });
    }

    /// Calls `f` with every node the captures bind, and the captures: the node is where the
    /// last part of the path starts (the root when there is no capture).
    pub(crate) fn for_each_bound<'a>(
        &self,
        root: &'a Value,
        f: &mut dyn FnMut(&'a Value, &[Bound<'a>]),
    ) {
        self.walk(0, root, &mut Vec::new(), f);
    }

    fn walk<'a>(
        &self,
        level: usize,
        node: &'a Value,
        caps: &mut Vec<Bound<'a>>,
        f: &mut dyn FnMut(&'a Value, &[Bound<'a>]),
    ) {
        if level == self.captures.len() {
            f(node, caps);
            return;
        }
        let mut found = Vec::new();
        self.fragments[level].select_into(node, &mut found);
        for parent in found {
            match parent {
                Value::Object(m) => {
                    for (k, child) in m {
                        caps.push(Bound {
                            key: Cow::Borrowed(k.as_str()),
                            node: child,
                        });
                        self.walk(level + 1, child, caps, f);
                        caps.pop();
                    }
                }
                Value::Array(a) => {
                    for (i, child) in a.iter().enumerate() {
                        caps.push(Bound {
                            key: Cow::Owned(i.to_string()),
                            node: child,
                        });
                        self.walk(level + 1, child, caps, f);
                        caps.pop();
                    }
                }
                _ => {}
            }
        }
    }
}

/// `{name}` starting at `from` (just after the `{`): the name and the index of `}`.
fn capture_at(path: &str, from: usize, close: u8) -> Option<(&str, usize)> {
    let end = from + path[from..].bytes().position(|b| b == close)?;
    let name = &path[from..end];
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    valid.then_some((name, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(each: &str, doc: &Value) -> Vec<(Value, Vec<String>)> {
        let e = Each::compile(each).unwrap();
        let mut out = Vec::new();
        e.for_each(doc, &mut |v, caps| {
            out.push((v.clone(), caps.iter().map(|c| c.key.to_string()).collect()))
        });
        out
    }

    #[test]
    fn captures_bind_map_keys_and_indexes() {
        let doc = json!({"apps": {"billing": {"prod": [{"n": 1}, {"n": 2}]}, "web": {"dev": [{"n": 3}]}}});
        let got = items("$.apps.{app}.{namespace}[*]", &doc);
        assert_eq!(
            got,
            vec![
                (json!({"n": 1}), vec!["billing".into(), "prod".into()]),
                (json!({"n": 2}), vec!["billing".into(), "prod".into()]),
                (json!({"n": 3}), vec!["web".into(), "dev".into()]),
            ]
        );
        let got = items("$.apps.billing.prod[{i}]", &doc);
        assert_eq!(got[1], (json!({"n": 2}), vec!["1".to_string()]));
        let got = items("$['apps'][{app}]", &doc);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, vec!["billing".to_string()]);
    }

    #[test]
    fn braces_inside_filter_strings_are_not_captures() {
        let doc = json!({"xs": [{"k": "{a}", "v": 1}, {"k": "b", "v": 2}]});
        let got = items("$.xs[?@.k == '{a}']", &doc);
        assert_eq!(got, vec![(json!({"k": "{a}", "v": 1}), vec![])]);
    }

    #[test]
    fn each_errors() {
        for (each, msg) in [
            ("apps[*]", "must start at the document root"),
            ("$.a.{x}.{x}", "declared twice"),
            ("$..{x}", "cannot follow '..'"),
            ("$.a.{x}b", "invalid JSONPath"),
            ("$.a[", "invalid JSONPath"),
        ] {
            let err = Each::compile(each).unwrap_err();
            assert!(err.contains(msg), "{each}: {err}");
        }
    }

    #[test]
    fn templates() {
        let caps = vec!["app".to_string()];
        let t = Template::compile("{app}/{@.name}-{{x}}", &caps).unwrap();
        assert!(matches!(t.parts[0], Part::Capture(0, _)));
        assert!(matches!(&t.parts[1], Part::Literal(s) if s == "/"));
        assert!(matches!(&t.parts[2], Part::Lookup(l, _) if l.scope == Scope::Item));
        assert!(matches!(&t.parts[3], Part::Literal(s) if s == "-{x}"));
        let t = Template::compile("{$.meta.region}", &caps).unwrap();
        assert!(matches!(&t.parts[0], Part::Lookup(l, _) if l.scope == Scope::Root));
        let t = Template::compile("", &caps).unwrap();
        assert!(matches!(&t.parts[0], Part::Literal(s) if s.is_empty()));
        for (text, msg) in [
            ("{ns}", "unknown capture {ns}: `each` declares {app}"),
            ("{app", "unclosed '{'"),
            ("a}", "unmatched '}'"),
            ("{@.a.}", "invalid JSONPath"),
            ("{@.a[}", "unclosed '{'"),
        ] {
            let err = Template::compile(text, &caps).unwrap_err();
            assert!(err.contains(msg), "{text}: {err}");
        }
        let err = Template::compile("{x}", &[]).unwrap_err();
        assert!(err.contains("declares no captures"), "{err}");
    }
}
