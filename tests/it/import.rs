//! `jsonbridge import-json-exporter`: a config in json_exporter's documented format becomes a
//! jsonbridge config that yields the series json_exporter yields on the same JSON
//! (object metrics named `<name>_<value key>`).

use std::process::Command;

fn import(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jsonbridge"))
        .arg("import-json-exporter")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/json_exporter/config.yml"
        ))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn converted_config_yields_json_exporters_series() {
    let (code, yaml, stderr) = import(&["--target", "file://data.json"]);
    assert_eq!(code, 0, "{stderr}");
    // Reported, not silently dropped: only what has no equivalent.
    for dropped in [
        "modules.archive.http_client_config.tls_config.min_version: TLS10 is not offered by jsonbridge (TLS 1.2 at least); left at TLS12",
        "modules.archive.http_client_config.tls_config.max_version: no equivalent; dropped",
        "modules.archive.http_client_config.oauth2.proxy_connect_header: no equivalent; dropped",
    ] {
        assert!(stderr.contains(dropped), "{dropped}\n{stderr}");
    }
    assert!(!stderr.contains("tls_config: not supported"), "{stderr}");
    assert!(!stderr.contains("oauth2: not supported"), "{stderr}");
    assert!(
        stderr.contains("modules.default.metrics[ship_cel]: CEL expressions are not translated"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/json_exporter/data.json"
    ))
    .unwrap();
    std::fs::write(dir.path().join("data.json"), &data).unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(&cfg, &yaml).unwrap();
    let config = jsonbridge::config::load(&cfg).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let source = jsonbridge::inspect::pick(&config, Some("default")).unwrap();
    let out =
        jsonbridge::inspect::run(&config, source, &data, jsonbridge::expose::Format::Text).unwrap();
    let mut got: Vec<&str> = out
        .exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    got.sort();
    // What json_exporter exposes for this config and document.
    let want = [
        r#"fleet_total_ships{region="eu",home="port-rotterdam"} 3.0"#,
        r#"ship_cargo_tonnes{ship="aurora",class="static-A"} 340.5"#,
        r#"ship_cargo_tonnes{ship="cygnus",class="static-A"} 120.0"#,
        r#"ship_crew{ship="aurora",class="static-A"} 12.0"#,
        r#"ship_crew{ship="cygnus",class="static-A"} 9.0"#,
        r#"ship_sailing{ship="aurora",class="static-A"} 1.0"#,
        r#"ship_sailing{ship="cygnus",class="static-A"} 1.0"#,
        r#"ship_state_code{ship="aurora"} 1.0"#,
        r#"ship_state_code{ship="borealis"} 2.0"#,
        r#"ship_state_code{ship="cygnus"} 1.0"#,
    ];
    assert_eq!(got, want, "{}", out.exposition);
    // Types as json_exporter declares them: `valuetype: gauge` stays a gauge, and no
    // `valuetype` is json_exporter's default, untyped (`unknown` in OpenMetrics).
    for line in [
        "# TYPE fleet_total_ships gauge",
        "# TYPE ship_crew untyped",
        "# TYPE ship_state_code untyped",
    ] {
        assert!(out.exposition.contains(line), "{line}\n{}", out.exposition);
    }
    let om = jsonbridge::inspect::run(
        &config,
        source,
        &data,
        jsonbridge::expose::Format::OpenMetrics,
    )
    .unwrap();
    assert!(
        om.exposition
            .contains("# TYPE ship_crew unknown\nship_crew{"),
        "{}",
        om.exposition
    );
    // Headers, auth and the POST body came along.
    let default = &config.sources[0];
    assert!(default.request.headers.iter().any(|(k, _)| k == "x-team"));
    assert!(default.request.auth.is_some());
    assert_eq!(config.sources[1].request.method, "POST");
    // Status codes and redirect and HTTP/2 settings came along too, and were not reported.
    let archive = &config.sources[1].request;
    assert!(archive.accepts(503) && archive.accepts(200) && !archive.accepts(201));
    assert!(!archive.follow_redirects && !archive.http2);
    assert!(default.request.follow_redirects && default.request.accepts(204));
    assert!(!stderr.contains("valid_status_codes"), "{stderr}");
    assert!(!stderr.contains("follow_redirects"), "{stderr}");
    // The proxy came along; where none is set, the environment's is not used (Prometheus'
    // default, not jsonbridge's).
    assert!(
        matches!(
            &archive.proxy,
            jsonbridge::config::Proxying::Proxy { display, no_proxy: Some(n), .. }
                if display == "http://proxy.internal:3128" && n == "localhost"
        ),
        "{:?}",
        archive.proxy
    );
    assert!(matches!(
        default.request.proxy,
        jsonbridge::config::Proxying::Direct
    ));
    assert!(!stderr.contains("proxy_url"), "{stderr}");
    // TLS and OAuth2 came along, with the token endpoint's own TLS; Prometheus' ca_file
    // replaces the system roots, and so does jsonbridge's.
    let tls = default.request.tls.as_ref().unwrap();
    assert!(tls.insecure_skip_verify);
    let tls = archive.tls.as_ref().unwrap();
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca/internal.pem"))
    );
    assert!(!tls.system_roots);
    assert_eq!(
        tls.client.as_ref().map(|(c, _)| c.to_str().unwrap()),
        Some("/etc/tls/client.pem")
    );
    assert_eq!(
        tls.server_name.as_ref().map(|n| n.to_str().to_string()),
        Some("archive.internal".to_string())
    );
    let Some(jsonbridge::config::Auth::OAuth2(o)) = &archive.auth else {
        panic!("{:?}", archive.auth)
    };
    assert_eq!(o.token_url.as_str(), "https://auth.internal/oauth2/token");
    assert_eq!(o.scopes, ["archive.read"]);
    assert_eq!(o.endpoint_params, [("audience".into(), "archive".into())]);
    assert_eq!(
        o.tls.as_ref().unwrap().ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca/auth.pem"))
    );
    assert!(matches!(o.proxy, jsonbridge::config::Proxying::Direct));
}

#[test]
fn without_a_target_modules_serve_probe() {
    let (code, yaml, stderr) = import(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(yaml.contains("\nmodules:\n"), "{yaml}");
    assert!(yaml.contains("allow_targets: []"), "{yaml}");
    assert!(stderr.contains("list the URLs Prometheus may probe under probe.allow_targets"));
    let c = jsonbridge::config::parse(
        &yaml,
        &jsonbridge::config::Origin {
            name: "converted".into(),
            base_dir: "/".into(),
        },
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.sources.is_empty());
    assert_eq!(
        c.modules
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["default", "archive"]
    );
}

#[test]
fn not_a_json_exporter_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.yml");
    std::fs::write(&f, "sources: []\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jsonbridge"))
        .arg("import-json-exporter")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `modules:` map"));
}
