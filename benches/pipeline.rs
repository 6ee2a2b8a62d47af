//! Micro-benchmarks of the poll and scrape paths on the energy API's shape (deterministic
//! data built here, 10k pods): what a poll does (`read`: parse and extract in one pass, on
//! one thread or two), scanning alone (`skip_only`, the floor for a serde_json reader), the
//! same work through a full `serde_json::Value` tree (`parse` then `extract`, as polls did
//! before read plans), and encoding. Run with
//! `cargo bench --bench pipeline`; compare runs on the same machine only.

use std::sync::Arc;

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use jsonbridge::config::{self, Origin};
use jsonbridge::expose::{Format, encode};
use jsonbridge::extract::{Threads, extract, extract_bytes};
use jsonbridge::store::{Snapshot, View};

/// `{"apps": {APP: {NS: [{name, energy_consumed[4], co2_emitted[4], phase}]}}}`.
fn document(apps: usize, namespaces: usize, pods: usize) -> String {
    let mut seed = 533u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut out = String::from("{\"apps\":{");
    for a in 0..apps {
        if a > 0 {
            out.push(',');
        }
        out.push_str(&format!("\"app-{a:03}\":{{"));
        for n in 0..namespaces {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&format!("\"ns-{n:03}\":["));
            for p in 0..pods {
                if p > 0 {
                    out.push(',');
                }
                let e: Vec<String> = (0..4).map(|_| format!("{:.3}", next() * 5000.0)).collect();
                let c: Vec<String> = (0..4).map(|_| format!("{:.3}", next() * 900.0)).collect();
                out.push_str(&format!(
                    "{{\"name\":\"app-{a:03}-ns-{n:03}-{p:05}\",\"energy_consumed\":[{}],\"co2_emitted\":[{}],\"phase\":\"Running\"}}",
                    e.join(","),
                    c.join(",")
                ));
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push_str("}}");
    out
}

const CONFIG: &str = r#"
sources:
  - name: energy
    url: file:///energy.json
    metrics:
      - each: "$.apps.{app}.{namespace}[*]"
        labels: {app: "{app}", namespace: "{namespace}", pod: "{@.name}"}
        values:
          pod_energy_consumed: {value: "@.energy_consumed[-1]", help: Energy.}
          pod_co2_emitted: {value: "@.co2_emitted[-1]", help: CO2.}
"#;

fn bench(c: &mut Criterion) {
    let pods = 10 * 10 * 100;
    let text = document(10, 10, 100);
    let cfg = Arc::new(
        config::parse(
            CONFIG,
            &Origin {
                name: "bench".into(),
                base_dir: "/".into(),
            },
            &|_| None,
        )
        .unwrap(),
    );
    let source = cfg.sources[0].clone();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();

    let mut g = c.benchmark_group("poll");
    g.throughput(Throughput::Elements(pods as u64));
    assert!(source.plan.is_slotted());
    g.bench_function("read", |b| {
        b.iter(|| {
            extract_bytes(
                black_box(text.as_bytes()),
                &source.metrics,
                &source.plan,
                Threads::One,
            )
            .unwrap()
        })
    });
    g.bench_function("read_two_threads", |b| {
        b.iter(|| {
            extract_bytes(
                black_box(text.as_bytes()),
                &source.metrics,
                &source.plan,
                Threads::Two,
            )
            .unwrap()
        })
    });
    // The floor for any serde_json-based reader: scanning the document without building it.
    g.bench_function("skip_only", |b| {
        b.iter(|| serde_json::from_str::<serde::de::IgnoredAny>(black_box(&text)).unwrap())
    });
    g.bench_function("parse", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&text)).unwrap())
    });
    g.bench_function("extract", |b| {
        b.iter(|| extract(black_box(&doc), &source.metrics).unwrap())
    });
    g.finish();

    let x = extract(&doc, &source.metrics).unwrap();
    let view = View {
        config: cfg.clone(),
        snapshots: vec![(
            source.clone(),
            Arc::new(Snapshot {
                taken_at: std::time::SystemTime::now(),
                families: x.families,
            }),
        )],
    };
    let mut g = c.benchmark_group("scrape");
    g.throughput(Throughput::Elements(2 * pods as u64));
    g.bench_function("encode_text", |b| {
        b.iter(|| encode::encode(black_box(&view), None, Format::Text))
    });
    g.bench_function("encode_openmetrics", |b| {
        b.iter(|| encode::encode(black_box(&view), None, Format::OpenMetrics))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
