//! Filters: `{@.path | lower | replace "-" "_" | default "none"}` in label templates and
//! `"@.seen | time"` in values. Parsed and checked once at config load (a regex is compiled
//! there, a time format checked there); extraction only applies them.
//!
//! A piece of text flows through the filters left to right. A lookup that finds nothing (or
//! `null`), and a `regex` that does not match, give an *absent* piece, which the filters after
//! pass along until a `default` replaces it or `optional` leaves the label out; what is still
//! absent at the end skips the item, as a missing field does without filters.

use std::borrow::Cow;
use std::fmt::Write as _;

use regex::Regex;

use super::values::{parse_number, truncate_quoted};

/// The filters of one template part or value, in order (usually none).
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Filter>);

#[derive(Debug, Clone)]
pub enum Filter {
    Lower,
    Upper,
    Trim,
    /// Every occurrence of the first text, replaced by the second.
    Replace(String, String),
    /// The first capture group (the whole match when the pattern has no group); no match is
    /// absent.
    Regex(Regex),
    /// Replaces an absent piece.
    Default(String),
    /// Labels only, last: an absent piece leaves the label out of the series.
    Optional,
    /// Text to seconds since the epoch.
    Time(TimeFormat),
    /// Multiplies a number (or numeric text).
    Scale(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    Rfc3339,
    Rfc2822,
    /// A chrono `strftime` pattern; without an offset (`%z`) the time is read as UTC, without
    /// a time of day as midnight.
    Pattern(String),
}

/// Why a piece is absent.
#[derive(Debug, Clone, PartialEq)]
pub enum Absence {
    Missing,
    Null,
    NoMatch { pattern: String, found: String },
}

/// What flows through the filters.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece<'a> {
    Text(Cow<'a, str>),
    Number(f64),
    Absent(Absence),
}

/// A filter that cannot take the piece it was given.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterError {
    NotATime { format: String, found: String },
    NotANumber { filter: &'static str, found: String },
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Splits `@.path | lower | default 'x'` into the path and its filters, parsed.
    /// `label` says whether `optional` is allowed (labels) or not (values).
    pub fn split(text: &str, label: bool) -> Result<(&str, Self), String> {
        let stages = split_pipes(text);
        let filters = Self::compile(&stages[1..], label)?;
        Ok((stages[0], filters))
    }

    fn compile(stages: &[&str], label: bool) -> Result<Self, String> {
        let mut out = Vec::new();
        for (k, stage) in stages.iter().enumerate() {
            let words = words(stage)?;
            let Some((name, args)) = words.split_first() else {
                return Err("empty filter between `|`".into());
            };
            let arity = |n: usize, usage: &str| {
                if args.len() == n {
                    Ok(())
                } else {
                    Err(format!(
                        "filter `{name}` takes {}: {usage}",
                        match n {
                            0 => "no argument".to_string(),
                            1 => "one argument".to_string(),
                            n => format!("{n} arguments"),
                        }
                    ))
                }
            };
            let f = match name.as_str() {
                "lower" => arity(0, "`lower`").map(|_| Filter::Lower)?,
                "upper" => arity(0, "`upper`").map(|_| Filter::Upper)?,
                "trim" => arity(0, "`trim`").map(|_| Filter::Trim)?,
                "replace" => {
                    arity(2, "`replace \"from\" \"to\"`")?;
                    if args[0].is_empty() {
                        return Err("filter `replace`: the text to replace is empty".into());
                    }
                    Filter::Replace(args[0].clone(), args[1].clone())
                }
                "regex" => {
                    arity(1, "`regex \"pattern\"` (its first group is kept)")?;
                    let re = regex::RegexBuilder::new(&args[0])
                        // A config is trusted, but a pattern that compiles to hundreds of
                        // megabytes is a mistake worth a message, not an OOM.
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| format!("filter `regex`: invalid pattern: {e}"))?;
                    Filter::Regex(re)
                }
                "default" => {
                    arity(1, "`default \"text\"`")?;
                    Filter::Default(args[0].clone())
                }
                "optional" => {
                    arity(0, "`optional`")?;
                    if !label {
                        return Err(
                            "filter `optional` applies to labels (a value without a default skips the item)"
                                .into(),
                        );
                    }
                    if k + 1 != stages.len() {
                        return Err("filter `optional` must come last".into());
                    }
                    Filter::Optional
                }
                "time" => {
                    if args.len() > 1 {
                        return Err(
                            "filter `time` takes at most one argument: `time`, `time \"rfc2822\"` or `time \"%Y-%m-%d %H:%M:%S\"`"
                                .into(),
                        );
                    }
                    Filter::Time(time_format(args.first().map(String::as_str))?)
                }
                "scale" => {
                    arity(1, "`scale 0.001`")?;
                    let f: f64 = args[0]
                        .trim()
                        .parse()
                        .map_err(|_| format!("filter `scale`: {:?} is not a number", args[0]))?;
                    if !f.is_finite() {
                        return Err("filter `scale`: the factor must be finite".into());
                    }
                    Filter::Scale(f)
                }
                other => {
                    return Err(format!(
                        "unknown filter `{other}` (filters: lower, upper, trim, replace, regex, default, optional, time, scale)"
                    ));
                }
            };
            out.push(f);
        }
        Ok(Self(out))
    }

    /// Runs the piece through every filter.
    pub fn apply<'a>(&self, mut piece: Piece<'a>) -> Result<Piece<'a>, FilterError> {
        for f in &self.0 {
            piece = f.apply(piece)?;
        }
        Ok(piece)
    }
}

impl Filter {
    fn apply<'a>(&self, piece: Piece<'a>) -> Result<Piece<'a>, FilterError> {
        let text = match (self, piece) {
            (Filter::Default(d), Piece::Absent(_)) => return Ok(Piece::Text(d.clone().into())),
            (Filter::Optional, Piece::Absent(_)) => return Ok(Piece::Text(Cow::Borrowed(""))),
            (_, Piece::Absent(a)) => return Ok(Piece::Absent(a)),
            (Filter::Default(_) | Filter::Optional, p) => return Ok(p),
            (Filter::Scale(f), Piece::Number(n)) => return Ok(Piece::Number(n * f)),
            (Filter::Scale(f), Piece::Text(t)) => {
                return match parse_number(&t) {
                    Some(n) => Ok(Piece::Number(n * f)),
                    None => Err(FilterError::NotANumber {
                        filter: "scale",
                        found: truncate_quoted(&t),
                    }),
                };
            }
            (Filter::Time(_), Piece::Number(n)) => {
                return Err(FilterError::NotATime {
                    format: self.describe_time(),
                    found: n.to_string(),
                });
            }
            (_, Piece::Number(n)) => Cow::Owned(number_text(n)),
            (_, Piece::Text(t)) => t,
        };
        Ok(match self {
            Filter::Lower => Piece::Text(Cow::Owned(text.to_lowercase())),
            Filter::Upper => Piece::Text(Cow::Owned(text.to_uppercase())),
            Filter::Trim => Piece::Text(match text {
                Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
            }),
            Filter::Replace(from, to) => Piece::Text(Cow::Owned(text.replace(from, to))),
            Filter::Regex(re) => match re.captures(&text) {
                Some(c) => {
                    let m = c.get(1).or_else(|| c.get(0)).map_or("", |m| m.as_str());
                    Piece::Text(Cow::Owned(m.to_string()))
                }
                // A group that took no part in the match counts as no match, so that a
                // `default` can fill it in.
                None => Piece::Absent(Absence::NoMatch {
                    pattern: re.as_str().to_string(),
                    found: truncate_quoted(&text),
                }),
            },
            Filter::Time(format) => match parse_time(format, text.trim()) {
                Some(secs) => Piece::Number(secs),
                None => {
                    return Err(FilterError::NotATime {
                        format: self.describe_time(),
                        found: truncate_quoted(&text),
                    });
                }
            },
            Filter::Default(_) | Filter::Optional | Filter::Scale(_) => {
                unreachable!("handled above")
            }
        })
    }

    fn describe_time(&self) -> String {
        match self {
            Filter::Time(TimeFormat::Rfc3339) => "RFC 3339 time".into(),
            Filter::Time(TimeFormat::Rfc2822) => "RFC 2822 time".into(),
            Filter::Time(TimeFormat::Pattern(p)) => format!("time as {p:?}"),
            _ => String::new(),
        }
    }
}

/// A number as a label shows it: integers without a fraction, others as Rust writes the
/// shortest text that reads back the same double.
pub fn number_text(n: f64) -> String {
    let mut s = String::new();
    let _ = write!(s, "{n}");
    s
}

fn time_format(arg: Option<&str>) -> Result<TimeFormat, String> {
    match arg.map(str::trim) {
        None | Some("rfc3339") | Some("RFC3339") => Ok(TimeFormat::Rfc3339),
        Some("rfc2822") | Some("RFC2822") => Ok(TimeFormat::Rfc2822),
        Some(p) => {
            use chrono::format::{Item, StrftimeItems};
            if !p.contains('%') {
                return Err(format!(
                    "filter `time`: {p:?} is neither rfc3339, rfc2822 nor a strftime pattern such as \"%Y-%m-%d %H:%M:%S\""
                ));
            }
            if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
                return Err(format!("filter `time`: invalid strftime pattern {p:?}"));
            }
            Ok(TimeFormat::Pattern(p.to_string()))
        }
    }
}

/// Seconds since the epoch, with the fraction the text has.
fn parse_time(format: &TimeFormat, s: &str) -> Option<f64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let secs = |d: DateTime<chrono::FixedOffset>| {
        d.timestamp() as f64 + f64::from(d.timestamp_subsec_nanos()) / 1e9
    };
    match format {
        TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(s).ok().map(secs),
        TimeFormat::Rfc2822 => DateTime::parse_from_rfc2822(s).ok().map(secs),
        TimeFormat::Pattern(p) => {
            if let Ok(d) = DateTime::parse_from_str(s, p) {
                return Some(secs(d));
            }
            let utc = |n: NaiveDateTime| {
                let d = n.and_utc();
                d.timestamp() as f64 + f64::from(d.timestamp_subsec_nanos()) / 1e9
            };
            if let Ok(n) = NaiveDateTime::parse_from_str(s, p) {
                return Some(utc(n));
            }
            NaiveDate::parse_from_str(s, p)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(utc)
        }
    }
}

/// Splits at the top-level `|`s (outside quotes, brackets and parentheses), trimmed: a
/// JSONPath filter's `||` stays inside its brackets.
fn split_pipes(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in top_level(text, 0).filter(|(_, b)| *b == b'|') {
        out.push(text[start..i].trim());
        start = i + 1;
    }
    out.push(text[start..].trim());
    out
}

/// The bytes of `text` from `from` on that are outside quoted strings (`'...'`, `"..."`,
/// with `\` escapes) and outside brackets and parentheses, with their offsets: where a
/// template's `}` or a filter's `|` may stand, so that `{@.a[?@.b == '}' || @.c]}` works.
pub(super) fn top_level(text: &str, from: usize) -> impl Iterator<Item = (usize, u8)> + '_ {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut depth = 0usize;
    let mut escaped = false;
    bytes
        .iter()
        .enumerate()
        .skip(from)
        .filter_map(move |(i, &b)| {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == q {
                    quote = None;
                }
                return None;
            }
            match b {
                b'\'' | b'"' => quote = Some(b),
                b'[' | b'(' => depth += 1,
                b']' | b')' => depth = depth.saturating_sub(1),
                _ if depth == 0 => return Some((i, b)),
                _ => {}
            }
            None
        })
}

/// A filter's name and arguments: bare words, or strings in `"..."` or `'...'` with `\`
/// escaping the quote and itself.
fn words(stage: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = stage.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("unclosed {c} in filter `{stage}`")),
                    Some('\\') => match chars.next() {
                        Some(e) if e == c || e == '\\' => s.push(e),
                        Some(e) => {
                            s.push('\\');
                            s.push(e);
                        }
                        None => return Err(format!("unclosed {c} in filter `{stage}`")),
                    },
                    Some(q) if q == c => break,
                    Some(o) => s.push(o),
                }
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(filters: &str, input: Piece<'static>) -> Result<Piece<'static>, FilterError> {
        let text = format!("@.x | {filters}");
        let (_, f) = Filters::split(&text, true).unwrap_or_else(|e| panic!("{filters}: {e}"));
        f.apply(input).map(|p| match p {
            Piece::Text(t) => Piece::Text(Cow::Owned(t.into_owned())),
            other => other,
        })
    }

    fn text(s: &str) -> Piece<'static> {
        Piece::Text(Cow::Owned(s.to_string()))
    }

    fn missing() -> Piece<'static> {
        Piece::Absent(Absence::Missing)
    }

    #[test]
    fn text_filters() {
        let cases: &[(&str, Piece<'static>, Piece<'static>)] = &[
            ("lower", text("Running"), text("running")),
            ("lower", text(""), text("")),
            ("lower", text("ÉTÉ Straße"), text("été straße")),
            ("upper", text("straße"), text("STRASSE")),
            ("upper", text("eu-west-1"), text("EU-WEST-1")),
            ("trim", text("  a b \t\n"), text("a b")),
            ("trim", text("   "), text("")),
            ("trim", text("\u{3000}wide\u{3000}"), text("wide")),
            ("replace '-' '_'", text("eu-west-1"), text("eu_west_1")),
            ("replace \"-\" \"\"", text("a-b-c"), text("abc")),
            ("replace 'x' 'y'", text(""), text("")),
            ("replace 'ü' 'ue'", text("Zürich"), text("Zuerich")),
            ("replace \"\\\"\" 'q'", text("a\"b"), text("aqb")),
            // Numbers from a filter become text when a text filter follows.
            ("scale 2 | replace '.' ','", text("1.25"), text("2,5")),
            ("lower", Piece::Number(3.0), text("3")),
            // Absent pieces pass through text filters untouched.
            ("lower | trim | replace 'a' 'b'", missing(), missing()),
        ];
        for (f, input, want) in cases {
            assert_eq!(run(f, input.clone()).unwrap(), *want, "{f} on {input:?}");
        }
    }

    #[test]
    fn regex_keeps_the_first_group() {
        let no_match = |pattern: &str, found: &str| {
            Piece::Absent(Absence::NoMatch {
                pattern: pattern.into(),
                found: found.into(),
            })
        };
        let cases: &[(&str, Piece<'static>, Piece<'static>)] = &[
            (r#"regex "^[^:]+:(.+)$""#, text("nginx:1.27"), text("1.27")),
            // No group: the whole match.
            ("regex '[0-9]+'", text("pod-42-x"), text("42")),
            ("regex '^(\\d+)ms$'", text("250ms"), text("250")),
            ("regex 'é(.)'", text("café!"), text("!")),
            (
                r#"regex "^[^:]+:(.+)$""#,
                text("nginx"),
                no_match("^[^:]+:(.+)$", "\"nginx\""),
            ),
            ("regex '(a)|b'", text("b"), text("b")),
            ("regex 'x'", text(""), no_match("x", "\"\"")),
            // No match, then a default.
            (
                r#"regex "^[^:]+:(.+)$" | default "latest""#,
                text("nginx"),
                text("latest"),
            ),
            ("regex 'x'", missing(), missing()),
        ];
        for (f, input, want) in cases {
            assert_eq!(run(f, input.clone()).unwrap(), *want, "{f} on {input:?}");
        }
    }

    #[test]
    fn default_and_optional() {
        let null = Piece::Absent(Absence::Null);
        let cases: &[(&str, Piece<'static>, Piece<'static>)] = &[
            ("default 'none'", missing(), text("none")),
            ("default \"none\"", null.clone(), text("none")),
            ("default 'none'", text(""), text("")),
            ("default 'none'", text("web"), text("web")),
            ("default ''", missing(), text("")),
            ("default 'n/a' | upper", missing(), text("N/A")),
            ("optional", missing(), text("")),
            ("optional", null, text("")),
            ("lower | optional", text("Web"), text("web")),
            ("default 'x' | optional", missing(), text("x")),
        ];
        for (f, input, want) in cases {
            assert_eq!(run(f, input.clone()).unwrap(), *want, "{f} on {input:?}");
        }
    }

    #[test]
    fn time_and_scale() {
        let n = Piece::Number;
        let cases: &[(&str, Piece<'static>, Piece<'static>)] = &[
            ("time", text("2026-11-26T10:00:00Z"), n(1_795_687_200.0)),
            (
                "time",
                text(" 2026-11-26T11:00:00+01:00 "),
                n(1_795_687_200.0),
            ),
            (
                "time",
                text("2026-11-26T10:00:00.250Z"),
                n(1_795_687_200.25),
            ),
            ("time 'rfc3339'", text("1970-01-01T00:00:00Z"), n(0.0)),
            (
                "time 'rfc2822'",
                text("Thu, 26 Nov 2026 10:00:00 +0000"),
                n(1_795_687_200.0),
            ),
            (
                "time '%Y-%m-%d %H:%M:%S'",
                text("2026-11-26 10:00:00"),
                n(1_795_687_200.0),
            ),
            (
                "time '%Y-%m-%d %H:%M:%S %z'",
                text("2026-11-26 12:00:00 +0200"),
                n(1_795_687_200.0),
            ),
            ("time '%d/%m/%Y'", text("26/11/2026"), n(1_795_651_200.0)),
            (
                "time | scale 1000",
                text("2026-11-26T10:00:00Z"),
                n(1_795_687_200_000.0),
            ),
            ("scale 0.001", n(1500.0), n(1.5)),
            ("scale 3600", text("2"), n(7200.0)),
            ("scale 2", text(" 1e3 "), n(2000.0)),
            ("scale -1", n(0.5), n(-0.5)),
            ("time", missing(), missing()),
            ("scale 2", missing(), missing()),
            ("time | default '0'", missing(), text("0")),
        ];
        for (f, input, want) in cases {
            assert_eq!(run(f, input.clone()).unwrap(), *want, "{f} on {input:?}");
        }
        let errors: &[(&str, Piece<'static>, FilterError)] = &[
            (
                "time",
                text("yesterday"),
                FilterError::NotATime {
                    format: "RFC 3339 time".into(),
                    found: "\"yesterday\"".into(),
                },
            ),
            (
                "time",
                text(""),
                FilterError::NotATime {
                    format: "RFC 3339 time".into(),
                    found: "\"\"".into(),
                },
            ),
            (
                "time",
                text("2026-13-01T00:00:00Z"),
                FilterError::NotATime {
                    format: "RFC 3339 time".into(),
                    found: "\"2026-13-01T00:00:00Z\"".into(),
                },
            ),
            (
                "time '%Y-%m-%d'",
                text("2026-11-26T10:00:00Z"),
                FilterError::NotATime {
                    format: "time as \"%Y-%m-%d\"".into(),
                    found: "\"2026-11-26T10:00:00Z\"".into(),
                },
            ),
            (
                "time",
                n(1.0),
                FilterError::NotATime {
                    format: "RFC 3339 time".into(),
                    found: "1".into(),
                },
            ),
            (
                "scale 2",
                text("n/a"),
                FilterError::NotANumber {
                    filter: "scale",
                    found: "\"n/a\"".into(),
                },
            ),
        ];
        for (f, input, want) in errors {
            assert_eq!(
                run(f, input.clone()).unwrap_err(),
                *want,
                "{f} on {input:?}"
            );
        }
    }

    #[test]
    fn bad_filters_are_config_errors() {
        for (text, label, msg) in [
            (
                "@.x | shout",
                true,
                "unknown filter `shout` (filters: lower,",
            ),
            ("@.x | lower 1", true, "filter `lower` takes no argument"),
            (
                "@.x | replace 'a'",
                true,
                "filter `replace` takes 2 arguments",
            ),
            ("@.x | replace '' 'b'", true, "the text to replace is empty"),
            ("@.x | regex '(a'", true, "filter `regex`: invalid pattern"),
            ("@.x | regex", true, "filter `regex` takes one argument"),
            ("@.x | default", true, "filter `default` takes one argument"),
            ("@.x | default 'a", true, "unclosed '"),
            ("@.x | optional | lower", true, "`optional` must come last"),
            ("@.x | optional", false, "`optional` applies to labels"),
            (
                "@.x | time 'iso'",
                true,
                "neither rfc3339, rfc2822 nor a strftime",
            ),
            ("@.x | time '%Q'", true, "invalid strftime pattern"),
            ("@.x | time 'a' 'b'", true, "at most one argument"),
            ("@.x | scale x", true, "\"x\" is not a number"),
            ("@.x | scale inf", true, "must be finite"),
            ("@.x | | lower", true, "empty filter"),
            ("@.x |", true, "empty filter"),
        ] {
            let err = Filters::split(text, label).unwrap_err();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }

    #[test]
    fn pipes_inside_paths_are_not_filters() {
        let (head, f) = Filters::split("@.a[?@.b == 'x|y' || @.c] | lower", true).unwrap();
        assert_eq!(head, "@.a[?@.b == 'x|y' || @.c]");
        assert_eq!(f.0.len(), 1);
        let (head, f) = Filters::split("count(@.a[?@.b || @.c])", false).unwrap();
        assert_eq!(head, "count(@.a[?@.b || @.c])");
        assert!(f.is_empty());
    }
}
