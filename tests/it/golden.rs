//! Golden exposition files: every config under `tests/fixtures/configs` (and every example
//! under `examples/`) is polled from its bundled response and encoded in both formats; the
//! result must equal the file under `tests/fixtures/expected` (or `examples/NAME/`), and pass
//! `promtool check metrics`. `UPDATE_GOLDEN=1 cargo test` rewrites the files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonbridge::config;
use jsonbridge::expose::{Format, encode};
use jsonbridge::extract::Problem;
use jsonbridge::schedule::poll_once;
use jsonbridge::store::{Snapshot, View};

use crate::support::fixtures;

struct Case {
    name: String,
    config: PathBuf,
    /// A saved response for the (single) source, run through `jsonbridge test`'s engine;
    /// `None`: poll the config's `file://` sources.
    input: Option<PathBuf>,
    /// Expected files: `<prefix>.prom` (0.0.4 text) and `<prefix>.om` (OpenMetrics).
    prefix: PathBuf,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let dir = fixtures().join("configs");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            out.push(Case {
                prefix: fixtures().join("expected").join(&name),
                name,
                config: p,
                input: None,
            });
        }
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for e in std::fs::read_dir(&examples).unwrap() {
        let d = e.unwrap().path();
        let cfg = d.join("jsonbridge.yaml");
        if cfg.exists() {
            out.push(Case {
                name: format!("examples/{}", d.file_name().unwrap().to_string_lossy()),
                config: cfg,
                input: Some(d.join("response.json")),
                prefix: d.join("expected"),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(out.len() >= 12, "fixtures missing: {}", out.len());
    out
}

/// A case's output in both formats, and the problems met.
async fn render_case(case: &Case) -> (String, String, Vec<Problem>) {
    let Some(input) = &case.input else {
        return render(&case.config).await;
    };
    let cfg = config::parse(
        &std::fs::read_to_string(&case.config).unwrap(),
        &config::Origin::file(&case.config),
        // Examples reference credentials through ${VAR}; any value does offline.
        &|_| Some("example-secret".into()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let body = std::fs::read(input).unwrap();
    let src = jsonbridge::inspect::pick(&cfg, None).unwrap();
    let text = jsonbridge::inspect::run(&cfg, src, &body, Format::Text).unwrap();
    let om = jsonbridge::inspect::run(&cfg, src, &body, Format::OpenMetrics).unwrap();
    (text.exposition, om.exposition, text.extraction.problems)
}

/// Polls every source of `config_path` once (they are file:// sources) and encodes them.
pub async fn render(config_path: &Path) -> (String, String, Vec<Problem>) {
    let cfg = Arc::new(config::load(config_path).unwrap_or_else(|e| panic!("{e}")));
    let mut snapshots = Vec::new();
    let mut problems = Vec::new();
    for s in &cfg.sources {
        let fetcher = jsonbridge::fetch::Fetcher::new(&s.request).unwrap();
        let x = poll_once(&fetcher, s)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        problems.extend(x.extraction.problems);
        snapshots.push((
            s.clone(),
            Arc::new(Snapshot {
                taken_at: std::time::SystemTime::UNIX_EPOCH,
                families: x.extraction.families,
            }),
        ));
    }
    let view = View {
        config: cfg,
        snapshots,
    };
    (
        encode::encode(&view, None, Format::Text),
        encode::encode(&view, None, Format::OpenMetrics),
        problems,
    )
}

fn compare(path: &Path, got: &str) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, got).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {} (run UPDATE_GOLDEN=1 cargo test)",
            path.display()
        )
    });
    (want != got).then(|| {
        format!(
            "{} differs:\n--- want\n{want}\n--- got\n{got}",
            path.display()
        )
    })
}

#[tokio::test]
async fn exposition_matches_golden_files() {
    let mut failures = Vec::new();
    for case in cases() {
        let (text, om, _) = render_case(&case).await;
        failures.extend(compare(&case.prefix.with_extension("prom"), &text));
        failures.extend(compare(&case.prefix.with_extension("om"), &om));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs `cmd` with `text` on its standard input: whether it succeeded, and what it printed
/// (stdout, then stderr).
fn piped(cmd: &mut std::process::Command, text: &str) -> std::io::Result<(bool, String)> {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), said))
}

/// Runs `promtool check metrics` on text; `Err` carries promtool's complaint.
pub fn promtool_check(text: &str) -> Result<(), String> {
    let (ok, said) = piped(
        std::process::Command::new("promtool").args(["check", "metrics"]),
        text,
    )
    .unwrap_or_else(|e| {
        panic!(
            "promtool not found ({e}): install Debian's `prometheus` package, or run ./test.sh which does"
        )
    });
    if ok && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

#[tokio::test]
async fn golden_outputs_pass_promtool() {
    let mut failures = Vec::new();
    for case in cases() {
        // promtool reads the 0.0.4 text format only (it takes an OpenMetrics counter's
        // `_total` sample for a family of its own), so the text output is what it checks.
        let (text, _, _) = render_case(&case).await;
        if let Err(e) = promtool_check(&text) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Parses OpenMetrics text with the reference parser of the Prometheus Python client
/// (`prometheus_client.openmetrics.parser`, strict: `# EOF`, counter `_total` samples, label
/// escaping, timestamps); `Err` carries its complaint. promtool 2.42 reads only the 0.0.4
/// text format, so this is the OpenMetrics check.
pub fn openmetrics_check(text: &str) -> Result<(), String> {
    const SCRIPT: &str = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nlist(p(sys.stdin.read()))\n";
    let (ok, said) = piped(
        std::process::Command::new("python3").args(["-c", SCRIPT]),
        text,
    )
    .expect("python3");
    assert!(
        !said.contains("No module named 'prometheus_client'"),
        "the Python Prometheus client is missing: pip install prometheus_client, or run ./test.sh which does"
    );
    if ok { Ok(()) } else { Err(said) }
}

#[tokio::test]
async fn golden_openmetrics_outputs_pass_the_reference_parser() {
    let mut failures = Vec::new();
    for case in cases() {
        let (_, om, _) = render_case(&case).await;
        if let Err(e) = openmetrics_check(&om) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And the check is one: a broken exposition is refused.
    assert!(openmetrics_check("# TYPE x counter\nx 1\n# EOF\n").is_err());
    assert!(openmetrics_check("# TYPE x gauge\nx 1\n").is_err());
}

#[tokio::test]
async fn bad_items_are_reported_by_kind() {
    let (_, _, problems) = render(&fixtures().join("configs/bad-items.yaml")).await;
    let got: Vec<(&str, u64)> = problems.iter().map(|p| (p.kind, p.count)).collect();
    assert_eq!(
        got,
        vec![
            ("duplicate_series", 1),
            ("label_missing", 1),
            ("label_not_scalar", 1),
            ("value_missing", 1),
            ("value_not_numeric", 1),
            ("value_null", 1),
        ]
    );
}
