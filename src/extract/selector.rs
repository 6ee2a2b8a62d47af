//! Compiled JSONPath selectors (RFC 9535, parsed by jsonpath-rust once at config load).
//!
//! Paths made only of names, indexes and wildcards (`$.apps.*`, `@.energy[-1]`) are walked
//! directly, without the general engine's per-match path strings; anything else (filters,
//! slices, descendants, unions) runs through jsonpath-rust. Both give the same results.

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector as JpSelector};
use serde_json::Value;

pub(crate) use crate::read::Step;

#[derive(Debug, Clone)]
pub struct Selector {
    source: String,
    plan: Plan,
    /// The leading names, indexes and wildcards of the path (all of it for a direct plan):
    /// what [`super::plan`] can follow without reading whole subtrees.
    prefix: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Plan {
    Direct(Vec<Step>),
    General(JpQuery),
}

impl Selector {
    /// Compiles a path that starts with `$`. The error is jsonpath-rust's message.
    pub fn compile(path: &str) -> Result<Self, String> {
        let query = jsonpath_rust::parser::parse_json_path(path).map_err(|e| e.to_string())?;
        let prefix: Vec<Step> = query.segments.iter().map_while(step_of).collect();
        let plan = if prefix.len() == query.segments.len() {
            Plan::Direct(prefix.clone())
        } else {
            Plan::General(query)
        };
        Ok(Self {
            source: path.to_string(),
            plan,
            prefix,
        })
    }

    /// The path made of `steps` (what is left of a path after a reader followed its start).
    pub(crate) fn from_steps(steps: Vec<Step>) -> Self {
        Self {
            source: String::new(),
            plan: Plan::Direct(steps.clone()),
            prefix: steps,
        }
    }

    /// The identity selector (`$`).
    pub fn root() -> Self {
        Self {
            source: "$".into(),
            plan: Plan::Direct(Vec::new()),
            prefix: Vec::new(),
        }
    }

    /// The path as written (after `@` was turned into `$`).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The steps a reader can follow from the start node, and whether they are the whole path
    /// (`false`: the rest needs the whole subtree where they end).
    pub(crate) fn steps(&self) -> (&[Step], bool) {
        (&self.prefix, matches!(self.plan, Plan::Direct(_)))
    }

    /// For a path that is steps, one filter, then steps (`$.pods[?@.phase == 'Running'].x`):
    /// the steps before the filter, what the filter reads of each candidate (relative paths
    /// of names and indexes, each with whether its value is compared or only tested for
    /// existence), and the steps after it. `None` for anything else, or a filter that reads
    /// more than the candidate (the root, a function of its own): a reader then keeps the
    /// whole subtree.
    pub(crate) fn filtered(&self) -> Option<Filtered> {
        use jsonpath_rust::parser::model::Segment;
        let Plan::General(q) = &self.plan else {
            return None;
        };
        let rest = &q.segments[self.prefix.len()..];
        let (Segment::Selector(JpSelector::Filter(f)), after) = rest.split_first()? else {
            return None;
        };
        let after: Vec<Step> = after.iter().map(step_of).collect::<Option<_>>()?;
        let mut reads = Vec::new();
        filter_reads(f, &mut reads)?;
        let query = JpQuery::new(vec![Segment::Selector(JpSelector::Filter(f.clone()))]);
        Some(Filtered {
            before: self.prefix.clone(),
            reads,
            after,
            test: Selector {
                source: format!("$[?{f}]"),
                plan: Plan::General(query),
                prefix: Vec::new(),
            },
        })
    }

    /// For a path that is steps, one descendant search by name, then steps
    /// (`$.apps..pods[*].name`): the steps before, the name, and the steps after (those up
    /// to anything else, with whether they are the whole rest). `None` for anything else.
    pub(crate) fn deep(&self) -> Option<Deep> {
        use jsonpath_rust::parser::model::Segment;
        let Plan::General(q) = &self.plan else {
            return None;
        };
        let rest = &q.segments[self.prefix.len()..];
        let (Segment::Descendant(inner), rest) = rest.split_first()? else {
            return None;
        };
        let Segment::Selector(JpSelector::Name(name)) = &**inner else {
            return None;
        };
        let after: Vec<Step> = rest.iter().map_while(step_of).collect();
        Some(Deep {
            before: self.prefix.clone(),
            name: name.clone(),
            after_exact: after.len() == rest.len(),
            after,
        })
    }

    /// Appends every node selected from `value` to `out`, in document order.
    pub fn select_into<'a>(&self, value: &'a Value, out: &mut Vec<&'a Value>) {
        match &self.plan {
            Plan::Direct(steps) => walk(steps, value, out),
            Plan::General(q) => {
                if let Ok(found) = jsonpath_rust::query::js_path_process(q, value) {
                    out.extend(found.into_iter().map(|r| r.val));
                }
            }
        }
    }

    /// The single node selected, if exactly one is.
    pub fn select_one<'a>(&self, value: &'a Value) -> Selected<'a> {
        if let Plan::Direct(steps) = &self.plan
            && steps.iter().all(|s| !matches!(s, Step::Wildcard))
        {
            return match walk_single(steps, value) {
                Some(v) => Selected::One(v),
                None => Selected::None,
            };
        }
        let mut out = Vec::new();
        self.select_into(value, &mut out);
        match out.len() {
            0 => Selected::None,
            1 => Selected::One(out[0]),
            n => Selected::Many(n),
        }
    }
}

/// The step a segment is, if it is a name, an index or a wildcard.
fn step_of(seg: &Segment) -> Option<Step> {
    match seg {
        Segment::Selector(JpSelector::Name(n)) => Some(Step::Name(n.clone())),
        Segment::Selector(JpSelector::Index(i)) => Some(Step::Index(*i)),
        Segment::Selector(JpSelector::Wildcard) => Some(Step::Wildcard),
        _ => None,
    }
}

/// A path with one descendant search by name (see [`Selector::deep`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Deep {
    pub(crate) before: Vec<Step>,
    pub(crate) name: String,
    pub(crate) after: Vec<Step>,
    /// The steps after are the whole rest of the path (else what they reach is read whole).
    pub(crate) after_exact: bool,
}

/// What a filter reads of each candidate: relative paths, each with whether its value is
/// compared (`true`) or only tested for existence.
pub(crate) type FilterReads = Vec<(Vec<Step>, bool)>;

/// A path with one filter (see [`Selector::filtered`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filtered {
    pub(crate) before: Vec<Step>,
    /// Paths from each candidate, and whether the value there is read (not only tested).
    pub(crate) reads: FilterReads,
    pub(crate) after: Vec<Step>,
    /// The filter alone, to try one candidate with [`Selector::keeps`].
    pub(crate) test: Selector,
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Selector {
    /// Whether the filter of a [`Filtered::test`] lets `candidate` through: the filter run
    /// on a one-element array holding it (a filter sees only `@`, so the candidate's
    /// neighbours cannot change the answer).
    pub(crate) fn keeps(&self, candidate: &Value) -> bool {
        let one = Value::Array(vec![candidate.clone()]);
        let mut out = Vec::new();
        self.select_into(&one, &mut out);
        !out.is_empty()
    }
}

/// Collects the relative paths a filter reads; `None` if it reads anything else.
fn filter_reads(f: &jsonpath_rust::parser::model::Filter, out: &mut FilterReads) -> Option<()> {
    use jsonpath_rust::parser::model::{
        Comparable, Comparison, Filter, FilterAtom, SingularQuery, SingularQuerySegment,
    };
    let singular = |segs: &[SingularQuerySegment]| -> Vec<Step> {
        segs.iter()
            .map(|s| match s {
                SingularQuerySegment::Name(n) => Step::Name(n.clone()),
                SingularQuerySegment::Index(i) => Step::Index(*i),
            })
            .collect()
    };
    match f {
        Filter::Or(fs) | Filter::And(fs) => fs.iter().try_for_each(|f| filter_reads(f, out)),
        Filter::Atom(FilterAtom::Filter { expr, .. }) => filter_reads(expr, out),
        Filter::Atom(FilterAtom::Test { expr, .. }) => test_reads(expr, false, out),
        Filter::Atom(FilterAtom::Comparison(c)) => {
            let (Comparison::Eq(a, b)
            | Comparison::Ne(a, b)
            | Comparison::Gt(a, b)
            | Comparison::Gte(a, b)
            | Comparison::Lt(a, b)
            | Comparison::Lte(a, b)) = &**c;
            for side in [a, b] {
                match side {
                    Comparable::Literal(_) => {}
                    Comparable::SingularQuery(SingularQuery::Current(segs)) => {
                        out.push((singular(segs), true));
                    }
                    Comparable::Function(func) => function_reads(func, out)?,
                    Comparable::SingularQuery(SingularQuery::Root(_)) => return None,
                }
            }
            Some(())
        }
    }
}

/// What a test (`@.x`, or a function) reads of the candidate. `value`: what the query finds
/// is read (a function's argument), not only tested for existence. A query past its names
/// and indexes (`@.xs[*]`, `@..x`) reads the node where those end whole.
fn test_reads(
    t: &jsonpath_rust::parser::model::Test,
    value: bool,
    out: &mut FilterReads,
) -> Option<()> {
    use jsonpath_rust::parser::model::{Segment, Test};
    match t {
        Test::RelQuery(segs) => {
            let steps: Vec<Step> = segs
                .iter()
                .map_while(|seg| match seg {
                    Segment::Selector(JpSelector::Name(n)) => Some(Step::Name(n.clone())),
                    Segment::Selector(JpSelector::Index(i)) => Some(Step::Index(*i)),
                    _ => None,
                })
                .collect();
            let whole = steps.len() < segs.len();
            out.push((steps, value || whole));
            Some(())
        }
        Test::Function(func) => function_reads(func, out),
        Test::AbsQuery(_) => None,
    }
}

/// What a function of a filter reads: its query arguments, whole (`length(@.xs)`,
/// `match(@.name, 'a.*')`, `count(@.xs[*])`). A function of jsonbridge's own making is not
/// followed.
fn function_reads(
    func: &jsonpath_rust::parser::model::TestFunction,
    out: &mut FilterReads,
) -> Option<()> {
    use jsonpath_rust::parser::model::{FnArg, TestFunction};
    let args: Vec<&FnArg> = match func {
        TestFunction::Length(a) => vec![&**a],
        TestFunction::Value(a) | TestFunction::Count(a) => vec![a],
        TestFunction::Search(a, b) | TestFunction::Match(a, b) => vec![a, b],
        TestFunction::Custom(..) => return None,
    };
    for a in args {
        match a {
            FnArg::Literal(_) => {}
            FnArg::Test(t) => test_reads(t, true, out)?,
            FnArg::Filter(f) => filter_reads(f, out)?,
        }
    }
    Some(())
}

/// What a path that must name one node found.
#[derive(Debug, PartialEq)]
pub enum Selected<'a> {
    None,
    One(&'a Value),
    Many(usize),
}

fn index(len: usize, i: i64) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if i < 0 { len + i } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

fn step<'a>(s: &Step, v: &'a Value) -> Option<&'a Value> {
    match (s, v) {
        (Step::Name(n), Value::Object(m)) => m.get(n),
        (Step::Index(i), Value::Array(a)) => index(a.len(), *i).map(|i| &a[i]),
        _ => None,
    }
}

fn walk_single<'a>(steps: &[Step], mut v: &'a Value) -> Option<&'a Value> {
    for s in steps {
        v = step(s, v)?;
    }
    Some(v)
}

/// Appends the nodes `steps` lead to from `v`, in document order.
pub(crate) fn walk<'a>(steps: &[Step], v: &'a Value, out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = steps.split_first() else {
        out.push(v);
        return;
    };
    match first {
        Step::Wildcard => match v {
            Value::Object(m) => m.values().for_each(|c| walk(rest, c, out)),
            Value::Array(a) => a.iter().for_each(|c| walk(rest, c, out)),
            _ => {}
        },
        s => {
            if let Some(c) = step(s, v) {
                walk(rest, c, out);
            }
        }
    }
}

/// Appends every member called `name` at or below `v`, in the order RFC 9535's descendant
/// segment gives them as jsonpath-rust implements it (`..name`): each object's own member
/// before those of its descendants, the descendants in document order.
pub(crate) fn descendants_named<'a>(v: &'a Value, name: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            out.extend(m.get(name));
            m.values().for_each(|c| descendants_named(c, name, out));
        }
        Value::Array(a) => a.iter().for_each(|c| descendants_named(c, name, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The order of a descendant search, checked against jsonpath-rust on a document where
    /// it differs from document order (an object's own member comes first).
    #[test]
    fn descendants_by_name_come_in_the_engine_order() {
        let doc = json!({
            "a": {"x": 1, "b": [{"x": 2}, {"y": {"x": 3}}]},
            "c": [[{"x": {"x": 4}}]],
            "x": 5,
            "d": "x"
        });
        let general = Selector::compile("$..x").unwrap();
        let mut want = Vec::new();
        general.select_into(&doc, &mut want);
        let mut got = Vec::new();
        descendants_named(&doc, "x", &mut got);
        assert_eq!(got, want);
        assert_eq!(got[0], &json!(5), "the root's own member first");
    }

    fn doc() -> Value {
        json!({"apps": {"a": {"x": [1, 2]}, "b": {"y": [3]}}, "list": [{"n": 1}, {"n": 5}]})
    }

    /// The direct walker must agree with jsonpath-rust on every path it accepts.
    #[test]
    fn direct_plan_matches_general_engine() {
        let d = doc();
        for p in [
            "$",
            "$.apps",
            "$.apps.*",
            "$.apps.*.*",
            "$.apps.*.*[*]",
            "$.apps.*.*[-1]",
            "$.list[0].n",
            "$.list[-1].n",
            "$.list[5]",
            "$['apps']['a']",
            "$.missing.x",
            "$.list.n",
        ] {
            let sel = Selector::compile(p).unwrap();
            assert!(matches!(sel.plan, Plan::Direct(_)), "{p}");
            let mut direct = Vec::new();
            sel.select_into(&d, &mut direct);
            let general: Vec<&Value> = jsonpath_rust::query::js_path(p, &d)
                .unwrap()
                .into_iter()
                .map(|r| r.val)
                .collect();
            assert_eq!(direct, general, "{p}");
        }
    }

    #[test]
    fn general_plan_for_filters_and_slices() {
        let d = doc();
        let sel = Selector::compile("$.list[?@.n > 2].n").unwrap();
        assert!(matches!(sel.plan, Plan::General(_)));
        assert_eq!(sel.select_one(&d), Selected::One(&json!(5)));
        let sel = Selector::compile("$..n").unwrap();
        assert_eq!(sel.select_one(&d), Selected::Many(2));
        assert_eq!(
            Selector::compile("$.list[9]").unwrap().select_one(&d),
            Selected::None
        );
    }

    #[test]
    fn compile_errors_are_reported() {
        assert!(Selector::compile("$.a[").is_err());
        assert!(Selector::compile("apps").is_err());
    }
}
