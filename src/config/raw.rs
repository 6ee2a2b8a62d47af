//! The YAML file as written: serde types that only check shape and types.
//!
//! This file is the config's reference: each field's doc comment is what `jsonbridge schema`
//! publishes for editors. Unknown fields are not denied here but collected while
//! deserializing (see [`unknown_field`]), so that all of them are reported together with the
//! validation errors instead of stopping at the first. Everything here is turned into
//! [`super::Config`] by [`super::parse`]; nothing downstream sees these types. Field order in
//! maps (`labels`, `headers`, `query`) is kept as written.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

/// jsonbridge configuration: the JSON APIs to poll and the metrics to extract from them.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(title = "jsonbridge configuration")]
#[schemars(deny_unknown_fields)]
pub struct RawConfig {
    /// The APIs to poll. Each has its own schedule, request and metrics.
    #[serde(default)]
    pub sources: Vec<RawSource>,
    /// Metric blocks without a URL, for `/probe?module=NAME&target=URL` (json_exporter's
    /// multi-target pattern). Targets must match `probe.allow_targets`.
    #[serde(default)]
    pub modules: Vec<RawModule>,
    /// Settings of `/probe`.
    #[serde(default)]
    pub probe: Option<RawProbe>,
    /// Prometheus remote write endpoints (Mimir, VictoriaMetrics, Thanos Receive, Cortex,
    /// Prometheus): after every good poll, the source's series are pushed to each.
    #[serde(default)]
    pub remote_write: Vec<RawRemoteWrite>,
}

/// A Prometheus remote write 1.0 endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "RemoteWrite")]
pub struct RawRemoteWrite {
    /// The `endpoint` label of its self-metrics (default: the URL's host and port); unique.
    #[serde(default)]
    pub name: Option<String>,
    /// e.g. `http://victoria-metrics:8428/api/v1/write`,
    /// `https://mimir.internal/api/v1/push`. `${VAR}` is expanded.
    pub url: String,
    /// Extra headers, e.g. `X-Scope-OrgID: team-a` for a Mimir or Cortex tenant.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Labels added to every series pushed (unless the series has the label already), e.g.
    /// `{cluster: eu-1, __replica__: a}` for a backend that deduplicates replicas.
    #[serde(default)]
    pub external_labels: IndexMap<String, String>,
    #[serde(default)]
    pub basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    #[serde(default)]
    pub oauth2: Option<RawOAuth2>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default)]
    pub no_proxy: Option<String>,
    #[serde(default)]
    pub proxy_from_environment: Option<bool>,
    /// Deadline of one send (default `30s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Samples waiting at most (default 500000); beyond, the oldest are dropped and counted.
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// Samples per request at most (default 2000).
    #[serde(default)]
    pub max_samples_per_send: Option<usize>,
    /// First pause before a failed send is tried again, doubled up to 5 s (default `100ms`).
    #[serde(default)]
    pub retry_backoff: Option<String>,
}

impl RawRemoteWrite {
    /// The endpoint as a source's request (POST to `url`), to share its validation: headers,
    /// auth, TLS, proxy and timeout compile as they do for sources.
    pub fn as_source(&self) -> RawSource {
        RawSource {
            name: self.name.clone().unwrap_or_default(),
            url: self.url.clone(),
            method: Some("POST".into()),
            headers: self.headers.clone(),
            query: IndexMap::new(),
            body: None,
            basic_auth: self.basic_auth.clone(),
            bearer_token: self.bearer_token.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            timeout: Some(self.timeout.clone().unwrap_or_else(|| "30s".into())),
            schedule: None,
            every: None,
            max_body_bytes: None,
            max_series: None,
            retries: None,
            retry_backoff: self.retry_backoff.clone(),
            valid_status_codes: None,
            follow_redirects: Some(false),
            enable_http2: None,
            proxy_url: self.proxy_url.clone(),
            no_proxy: self.no_proxy.clone(),
            proxy_from_environment: self.proxy_from_environment,
            tls: self.tls.clone(),
            oauth2: self.oauth2.clone(),
            max_staleness: None,
            paginate: None,
            fan_out: None,
            metrics: Vec::new(),
        }
    }
}

/// Settings of `/probe`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Probe")]
pub struct RawProbe {
    /// Targets a module may be probed against: URL prefixes (`https://api.internal/v1/`,
    /// matched on scheme, host, port and path prefix) or `regex:...` on the whole URL.
    /// Empty: module probes are refused, so /probe is no open proxy.
    #[serde(default)]
    pub allow_targets: Vec<String>,
}

// The fields repeat `RawSource`'s on purpose: a shared struct would need `#[serde(flatten)]`,
// which hides unknown fields from the unknown-field report, or an optional `url`, which would
// take "url is required" out of the published schema. `as_source` maps it onto `RawSource`,
// so validation and compilation are shared. (Plain comments: doc comments become the schema.)
/// A source without URL and schedule: the request settings and metrics of a module.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Module")]
pub struct RawModule {
    /// Unique among modules.
    pub name: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    #[serde(default)]
    pub query: IndexMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub max_series: Option<usize>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub retry_backoff: Option<String>,
    #[serde(default)]
    pub valid_status_codes: Option<Vec<u16>>,
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    #[serde(default)]
    pub enable_http2: Option<bool>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default)]
    pub no_proxy: Option<String>,
    #[serde(default)]
    pub proxy_from_environment: Option<bool>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub oauth2: Option<RawOAuth2>,
    /// Read every page of a paginated target (as a source's `paginate`).
    #[serde(default)]
    pub paginate: Option<RawPaginate>,
    /// One request per item of the target's list (as a source's `fan_out`).
    #[serde(default)]
    pub fan_out: Option<RawFanOut>,
    #[serde(default)]
    pub metrics: Vec<RawMetric>,
}

/// The URL a module is compiled with; `/probe` replaces it with the target.
pub const MODULE_PLACEHOLDER_URL: &str = "http://probe-target.invalid/";

impl RawModule {
    /// The module as a source with a placeholder URL, to share the source's validation.
    pub fn as_source(&self) -> RawSource {
        RawSource {
            name: self.name.clone(),
            url: MODULE_PLACEHOLDER_URL.into(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            query: self.query.clone(),
            body: self.body.clone(),
            basic_auth: self.basic_auth.clone(),
            bearer_token: self.bearer_token.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            timeout: self.timeout.clone(),
            schedule: None,
            every: None,
            max_body_bytes: self.max_body_bytes,
            max_series: self.max_series,
            retries: self.retries,
            retry_backoff: self.retry_backoff.clone(),
            valid_status_codes: self.valid_status_codes.clone(),
            follow_redirects: self.follow_redirects,
            enable_http2: self.enable_http2,
            proxy_url: self.proxy_url.clone(),
            no_proxy: self.no_proxy.clone(),
            proxy_from_environment: self.proxy_from_environment,
            tls: self.tls.clone(),
            oauth2: self.oauth2.clone(),
            max_staleness: None,
            paginate: self.paginate.clone(),
            fan_out: self.fan_out.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// One API (or local file) polled on a schedule.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Source")]
pub struct RawSource {
    /// Unique name; letters, digits, `_`, `-`, `.`. The `source` label of self-metrics.
    pub name: String,
    /// `http://`, `https://` or `file://` (`file://data.json` is relative to the config file).
    /// `${VAR}` is expanded from the environment; `{now - 30m | rfc3339}` is rendered at every
    /// poll.
    pub url: String,
    /// HTTP method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers. `${VAR}` and `{now...}` work in values; values are never logged.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Query parameters appended to the URL. `${VAR}` and `{now...}` work in values.
    #[serde(default)]
    pub query: IndexMap<String, String>,
    /// Request body (text). `${VAR}` and `{now...}` work in it.
    #[serde(default)]
    pub body: Option<String>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<RawBasicAuth>,
    /// Sent as `Authorization: Bearer ...`. Use `${VAR}` rather than a literal token.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// File holding the bearer token, read at every poll (rotations need no reload); relative
    /// to the config file's directory.
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    /// Deadline for the whole fetch, e.g. `20s` (default `10s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Cron line with seconds, in UTC: `0 */30 * * * *`. Exclusive with `every`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Fixed interval, e.g. `30s`, `5m`, `1h30m` (default `1m` when neither is set).
    #[serde(default)]
    pub every: Option<String>,
    /// Largest response body accepted, in bytes (default 67108864, 64 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Most series one poll may produce (default 1000000); beyond, the snapshot is truncated
    /// deterministically and `jsonbridge_source_series_dropped` says by how many.
    #[serde(default)]
    pub max_series: Option<usize>,
    /// Extra attempts after a connection error, a cut-off body, a 5xx or a 429 (default 0).
    /// All attempts share `timeout`.
    #[serde(default)]
    pub retries: Option<u32>,
    /// First pause between attempts, doubled each time, with jitter (default `200ms`).
    #[serde(default)]
    pub retry_backoff: Option<String>,
    /// HTTP statuses whose body is read as data, e.g. `[200, 503]` for a health endpoint
    /// that answers 503 with the JSON wanted (default: any 2xx). Any other status fails the
    /// poll.
    #[serde(default)]
    pub valid_status_codes: Option<Vec<u16>>,
    /// Follow redirects (default `true`, at most 10 hops); with `false`, a 3xx is a status
    /// like any other (read only if in `valid_status_codes`).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// Offer HTTP/2 to TLS upstreams (default `true`); `false` speaks HTTP/1.1 only.
    #[serde(default)]
    pub enable_http2: Option<bool>,
    /// The proxy requests go through, `http://` or `https://`, with credentials in the URL if
    /// it asks for them (`http://user:${PROXY_PASSWORD}@proxy:3128`; never shown).
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Hosts reached without `proxy_url`, comma-separated as in `NO_PROXY`
    /// (`internal.example,10.0.0.0/8`).
    #[serde(default)]
    pub no_proxy: Option<String>,
    /// Without `proxy_url`, use the `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` environment
    /// variables (default `true`); `false` connects directly whatever they say.
    #[serde(default)]
    pub proxy_from_environment: Option<bool>,
    /// TLS to an `https://` upstream: a private CA, a client certificate (mutual TLS), the
    /// name to verify, the lowest version. Files are re-read at every poll, so a rotated
    /// certificate (cert-manager rewrites them in place) needs no reload.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// OAuth2 client credentials: a token from `token_url`, sent as
    /// `Authorization: Bearer ...`, cached until shortly before it expires and fetched again
    /// once on a 401. Exclusive with `basic_auth` and the bearer token.
    #[serde(default)]
    pub oauth2: Option<RawOAuth2>,
    /// While polls fail, serve the last good snapshot for at most this long (e.g. `1h`);
    /// default: until a poll succeeds.
    #[serde(default)]
    pub max_staleness: Option<String>,
    /// Read every page of a paginated API in each poll: the items of all pages feed the
    /// metric blocks as one response would.
    #[serde(default)]
    pub paginate: Option<RawPaginate>,
    /// List, then details: the response is a list, and each item `fan_out.each` selects
    /// drives one more request; the metrics read those responses, with the item's labels.
    #[serde(default)]
    pub fan_out: Option<RawFanOut>,
    /// Metric blocks.
    #[serde(default)]
    pub metrics: Vec<RawMetric>,
}

/// One request per item of the source's response (a list): the metrics read their answers.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "FanOut")]
pub struct RawFanOut {
    /// JSONPath selecting the list's items, with captures as in a metric's `each`.
    pub each: String,
    /// Each item's URL: a template (`https://api.internal/clusters/{@.id}/stats`) whose
    /// scheme and host are written out (the data fills in the path and query only); each
    /// value is percent-encoded. `{@.path}`, `{$.path}`, `{capture}` and filters work.
    pub url: String,
    /// HTTP method of the item requests (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// Query parameters (templates from the item).
    #[serde(default)]
    pub query: IndexMap<String, String>,
    /// Headers added to the source's (templates from the item).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Request body (a template from the item).
    #[serde(default)]
    pub body: Option<String>,
    /// Labels from the item, added to every series of its response.
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// Item requests in flight at once (default 8, at most 256).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Deadline of one item's request (default: the source's `timeout`); all of them end
    /// within the poll's `timeout`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// An item whose request fails: `fail` the poll (default), or `skip` it (its series
    /// are left out, counted in `jsonbridge_fan_out_failures_total`).
    #[serde(default)]
    pub on_error: Option<RawOnError>,
    /// Most item requests per poll (default 10000); beyond, the poll fails.
    #[serde(default)]
    pub max_requests: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "OnError")]
pub enum RawOnError {
    Fail,
    Skip,
}

/// How to reach the next page. Set one of `next_url`, `next_link`, `cursor`, `page_param`
/// or `offset_param`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Paginate")]
pub struct RawPaginate {
    /// JSONPath to the next page's URL in the body (`$.next`, `$.links.next`); a relative
    /// URL is resolved against the page's. Missing, null or empty: the last page.
    #[serde(default)]
    pub next_url: Option<String>,
    /// Follow the `Link` header's `rel="next"` (RFC 8288), as GitHub's API pages.
    #[serde(default)]
    pub next_link: Option<bool>,
    /// JSONPath to a cursor in the body, sent back as query parameter `cursor_param`.
    /// Missing, null, empty or a cursor seen before: the last page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The query parameter a cursor is sent in (default `cursor`).
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Page numbers in this query parameter (`page`), from `first_page`.
    #[serde(default)]
    pub page_param: Option<String>,
    /// The first page's number (default 1).
    #[serde(default)]
    pub first_page: Option<u64>,
    /// Offsets in this query parameter (`offset`), from 0, advanced by `page_size`.
    #[serde(default)]
    pub offset_param: Option<String>,
    /// Items per page, sent in `size_param` (needed with `offset_param`).
    #[serde(default)]
    pub page_size: Option<u64>,
    /// The query parameter the page size is sent in (`limit`, `per_page`).
    #[serde(default)]
    pub size_param: Option<String>,
    /// JSONPath to a boolean in the body: a page where it is false is the last.
    #[serde(default)]
    pub has_more: Option<String>,
    /// JSONPath to the page's list (`$.items`): with `page_param` or `offset_param`, a page
    /// where it is missing or empty is the last. Without it, a page where no metric's
    /// `each` matches anything is (which a filter in `each` can make too early).
    #[serde(default)]
    pub items: Option<String>,
    /// JSONPath to the total number of items in the body (read on the first page): with
    /// `page_param` or `offset_param`, the pages stop once that many were asked for.
    #[serde(default)]
    pub total: Option<String>,
    /// Most pages one poll reads (default 100); a poll that reaches it keeps what it read,
    /// logs a warning and counts `jsonbridge_limit_hits_total{limit="max_pages"}`.
    #[serde(default)]
    pub max_pages: Option<usize>,
}

/// HTTP basic authentication.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "BasicAuth")]
pub struct RawBasicAuth {
    pub username: String,
    /// Use `${VAR}` rather than a literal password.
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password, read at every poll; relative to the config file.
    #[serde(default)]
    pub password_file: Option<String>,
}

/// TLS settings for connections to an upstream (or a token endpoint).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Tls")]
pub struct RawTls {
    /// PEM file of the CA certificates the upstream's certificate must chain to (a private
    /// CA); relative to the config file. By default they replace the system's roots (as
    /// Prometheus' `ca_file` does); `system_roots: true` adds them to the system's instead.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Trust the system's CA roots too. Default: `true` without `ca_file`, `false` with it
    /// (only `ca_file` is trusted).
    #[serde(default)]
    pub system_roots: Option<bool>,
    /// PEM file of the client certificate (and its chain) for mutual TLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1; not
    /// encrypted); needs `cert_file`. Never shown.
    #[serde(default)]
    pub key_file: Option<String>,
    /// The name the upstream's certificate must be valid for, instead of the URL's host (an
    /// upstream reached by IP address or through an alias).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any certificate: no chain, name or expiry check (the handshake's signatures
    /// are still checked). For tests only: `check` warns and the status page says so.
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
    /// Lowest TLS version offered: `TLS12` (the default) or `TLS13`.
    #[serde(default)]
    pub min_version: Option<String>,
}

/// OAuth2 client credentials grant (RFC 6749, 4.4).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "OAuth2")]
pub struct RawOAuth2 {
    /// `${VAR}` is expanded.
    pub client_id: String,
    /// Use `${VAR}` rather than a literal secret. Exclusive with `client_secret_file`.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// File holding the client secret, read at every token request (rotations need no
    /// reload); relative to the config file.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// The token endpoint, `https://` (or `http://` on a trusted network).
    pub token_url: String,
    /// Scopes asked for (sent space-separated as `scope`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Extra form parameters of the token request (e.g. `audience`); `${VAR}` is expanded.
    #[serde(default)]
    pub endpoint_params: IndexMap<String, String>,
    /// TLS to the token endpoint (as the source's `tls`).
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Proxy for the token endpoint (as the source's `proxy_url`).
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Hosts reached without `proxy_url` (as the source's `no_proxy`).
    #[serde(default)]
    pub no_proxy: Option<String>,
    /// Without `proxy_url`, use the environment's proxy variables (default `true`).
    #[serde(default)]
    pub proxy_from_environment: Option<bool>,
}

/// A metric block: the items (`each`), their labels, and either one metric (`name` +
/// `value`) or several (`values`: metric name -> value or settings).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Metric")]
pub struct RawMetric {
    /// Metric name (single-metric form). A counter's `_total` suffix is handled for you.
    #[serde(default)]
    pub name: Option<String>,
    /// JSONPath selecting the items (one series per item; default: the document root).
    /// `.{name}` or `[{name}]` is a wildcard whose key or index is captured: `{name}` in a
    /// label is that key, `{name.path}` a lookup from the captured node.
    #[serde(default)]
    pub each: Option<String>,
    /// Label name -> template: text mixed with `{capture}`, `{@.path}` (from the item),
    /// `{$.path}` (from the root), `{capture.path}` (from a captured ancestor).
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// Several metrics from the same items: metric name -> value (a JSONPath or number), or
    /// -> `{value, help, type, mapping, default, scale, states, state_label}`.
    #[serde(default)]
    pub values: Option<IndexMap<String, RawOutputEntry>>,
    /// When two items give the same labels: keep the `first` (default) or `last`, their
    /// `sum`, `min`, `max` or `count` (how many items), or fail the poll (`error`). Unset,
    /// a duplicate is an extraction error (`duplicate_series`); set, it is a choice, counted
    /// in `jsonbridge_duplicates_merged_total`.
    #[serde(default)]
    pub on_duplicate: Option<RawOnDuplicate>,
    /// Group the items by their labels: one series per label set, whose value is the number
    /// of items (`count`: `value` optional) or the `sum`, `min`, `max` or `avg` of their
    /// values. "Pods per phase" is `labels: {phase: "{@.status.phase}"}` with
    /// `aggregate: count`.
    #[serde(default)]
    pub aggregate: Option<RawAggregate>,
    /// With `aggregate: count` or `sum`: label values always reported, 0 where no item has
    /// them, e.g. `{phase: [Pending, Running, Succeeded, Failed, Unknown]}`.
    #[serde(default)]
    pub fill: IndexMap<String, Vec<String>>,
    /// JSONPath to the time of each item's sample, attached to the sample. Opt-in: see the
    /// README on staleness.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// How `timestamp` is written (default `rfc3339`).
    #[serde(default)]
    pub timestamp_format: Option<RawTimestampFormat>,
    // Output settings, for the single-metric form (the same as RawOutputSettings: serde's
    // `flatten` would hide unknown fields from the unknown-field report).
    /// The value: a number, a JSONPath (`@.x`, `$.x`, `capture.x`), or `count(...)`,
    /// `length(...)`, `sum(...)`, `min(...)`, `max(...)`, `avg(...)` of a JSONPath.
    #[serde(default)]
    pub value: Option<RawValue>,
    /// HELP text.
    #[serde(default)]
    pub help: Option<String>,
    /// `gauge` (default), `counter`, `stateset` or `untyped`.
    #[serde(rename = "type", default)]
    pub kind: Option<RawMetricKind>,
    /// Text -> number, checked before the usual conversion, e.g. `{green: 0, yellow: 1}`.
    #[serde(default)]
    pub mapping: Option<IndexMap<String, f64>>,
    /// The value when the lookup finds nothing usable (missing, null, unmapped, not numeric).
    #[serde(default)]
    pub default: Option<f64>,
    /// Factor applied to the value (e.g. 3600 for Wh -> J).
    #[serde(default)]
    pub scale: Option<f64>,
    /// For `type: stateset`: the possible states; one series each, 1 for the current one.
    #[serde(default)]
    pub states: Option<Vec<String>>,
    /// For `type: stateset`: the label holding the state (default `state`).
    #[serde(default)]
    pub state_label: Option<String>,
}

impl RawMetric {
    /// The output settings written at block level.
    pub fn settings(&self) -> RawOutputSettings {
        RawOutputSettings {
            help: self.help.clone(),
            kind: self.kind,
            mapping: self.mapping.clone(),
            default: self.default,
            scale: self.scale,
            states: self.states.clone(),
            state_label: self.state_label.clone(),
        }
    }
}

/// Per-output settings, shared by the single-metric form and `values` entries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawOutputSettings {
    pub help: Option<String>,
    pub kind: Option<RawMetricKind>,
    pub mapping: Option<IndexMap<String, f64>>,
    pub default: Option<f64>,
    pub scale: Option<f64>,
    pub states: Option<Vec<String>>,
    pub state_label: Option<String>,
}

impl RawOutputSettings {
    /// Whether any setting is written (block-level settings conflict with `values`).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A `values` entry: `name: "@.path"` / `name: 1`, or `name: {value: ..., help: ..., ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutputEntry {
    pub value: RawValue,
    pub settings: RawOutputSettings,
}

/// One metric of a `values` map, with its settings.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Output")]
struct RawOutputObject {
    /// A number, a JSONPath, or an aggregate (`count(...)`, `sum(...)`...).
    value: RawValue,
    /// HELP text.
    #[serde(default)]
    help: Option<String>,
    /// `gauge` (default), `counter`, `stateset` or `untyped`.
    #[serde(rename = "type", default)]
    kind: Option<RawMetricKind>,
    /// Text -> number, checked before the usual conversion.
    #[serde(default)]
    mapping: Option<IndexMap<String, f64>>,
    /// The value when the lookup finds nothing usable.
    #[serde(default)]
    default: Option<f64>,
    /// Factor applied to the value.
    #[serde(default)]
    scale: Option<f64>,
    /// For `type: stateset`: the possible states.
    #[serde(default)]
    states: Option<Vec<String>>,
    /// For `type: stateset`: the label holding the state (default `state`).
    #[serde(default)]
    state_label: Option<String>,
}

impl JsonSchema for RawOutputEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OutputEntry".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let object = generator.subschema_for::<RawOutputObject>();
        schemars::json_schema!({
            "description": "A JSONPath or number, or the metric's value with its settings.",
            "anyOf": [{"type": ["string", "number"]}, object]
        })
    }
}

impl JsonSchema for RawValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Value".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A number, a JSONPath (@.x, $.x, capture.x), or count/length/sum/min/max/avg(JSONPath).",
            "type": ["string", "number"]
        })
    }
}

impl<'de> Deserialize<'de> for RawOutputEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawOutputEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSONPath, a number, or a map with `value` and output settings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(short(RawValue::Text(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(short(RawValue::Number(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(short(RawValue::Number(v as f64)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(short(RawValue::Number(v as f64)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let o = RawOutputObject::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RawOutputEntry {
                    value: o.value,
                    settings: RawOutputSettings {
                        help: o.help,
                        kind: o.kind,
                        mapping: o.mapping,
                        default: o.default,
                        scale: o.scale,
                        states: o.states,
                        state_label: o.state_label,
                    },
                })
            }
        }
        fn short(value: RawValue) -> RawOutputEntry {
            RawOutputEntry {
                value,
                settings: RawOutputSettings::default(),
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "MetricType")]
pub enum RawMetricKind {
    Gauge,
    Counter,
    Stateset,
    /// No type (`unknown` in OpenMetrics): json_exporter's default.
    Untyped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "OnDuplicate")]
pub enum RawOnDuplicate {
    First,
    Last,
    Sum,
    Min,
    Max,
    Count,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Aggregate")]
pub enum RawAggregate {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "TimestampFormat")]
pub enum RawTimestampFormat {
    Rfc3339,
    Unix,
    UnixMs,
}

/// `value: 1` (a constant) or `value: "@.energy[-1]"` (a JSONPath or an aggregate).
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a JSONPath string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

const TOP_FIELDS: &[&str] = &["sources", "modules", "probe", "remote_write"];
const REMOTE_WRITE_FIELDS: &[&str] = &[
    "name",
    "url",
    "headers",
    "external_labels",
    "basic_auth",
    "bearer_token",
    "bearer_token_file",
    "oauth2",
    "tls",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "timeout",
    "queue_capacity",
    "max_samples_per_send",
    "retry_backoff",
];
const MODULE_FIELDS: &[&str] = &[
    "name",
    "method",
    "headers",
    "query",
    "body",
    "basic_auth",
    "bearer_token",
    "bearer_token_file",
    "timeout",
    "max_body_bytes",
    "max_series",
    "retries",
    "retry_backoff",
    "valid_status_codes",
    "follow_redirects",
    "enable_http2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "tls",
    "oauth2",
    "paginate",
    "fan_out",
    "metrics",
];
const PROBE_FIELDS: &[&str] = &["allow_targets"];
const SOURCE_FIELDS: &[&str] = &[
    "name",
    "url",
    "method",
    "headers",
    "query",
    "body",
    "basic_auth",
    "bearer_token",
    "bearer_token_file",
    "timeout",
    "schedule",
    "every",
    "max_body_bytes",
    "max_series",
    "retries",
    "retry_backoff",
    "valid_status_codes",
    "follow_redirects",
    "enable_http2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "tls",
    "oauth2",
    "max_staleness",
    "paginate",
    "fan_out",
    "metrics",
];
const FAN_OUT_FIELDS: &[&str] = &[
    "each",
    "url",
    "method",
    "query",
    "headers",
    "body",
    "labels",
    "concurrency",
    "timeout",
    "on_error",
    "max_requests",
];
const PAGINATE_FIELDS: &[&str] = &[
    "next_url",
    "next_link",
    "cursor",
    "cursor_param",
    "page_param",
    "first_page",
    "offset_param",
    "page_size",
    "size_param",
    "has_more",
    "items",
    "total",
    "max_pages",
];
const METRIC_FIELDS: &[&str] = &[
    "name",
    "help",
    "type",
    "each",
    "labels",
    "value",
    "values",
    "mapping",
    "default",
    "scale",
    "states",
    "state_label",
    "on_duplicate",
    "aggregate",
    "fill",
    "timestamp",
    "timestamp_format",
];
const OUTPUT_FIELDS: &[&str] = &[
    "value",
    "help",
    "type",
    "mapping",
    "default",
    "scale",
    "states",
    "state_label",
];
const BASIC_AUTH_FIELDS: &[&str] = &["username", "password", "password_file"];
const TLS_FIELDS: &[&str] = &[
    "ca_file",
    "system_roots",
    "cert_file",
    "key_file",
    "server_name",
    "insecure_skip_verify",
    "min_version",
];
const OAUTH2_FIELDS: &[&str] = &[
    "client_id",
    "client_secret",
    "client_secret_file",
    "token_url",
    "scopes",
    "endpoint_params",
    "tls",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
];

/// The message for a field that no struct at `parent` knows, with the closest known name.
pub fn unknown_field(parent: &str, key: &str) -> String {
    let level = parent
        .split('.')
        .map(|seg| seg.split('[').next().unwrap_or(seg))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    let known: &[&str] = match level.as_slice() {
        [] => TOP_FIELDS,
        ["sources"] => SOURCE_FIELDS,
        ["modules"] => MODULE_FIELDS,
        ["probe"] => PROBE_FIELDS,
        ["remote_write"] => REMOTE_WRITE_FIELDS,
        ["remote_write", "basic_auth"] => BASIC_AUTH_FIELDS,
        ["remote_write", "tls"] | ["remote_write", "oauth2", "tls"] => TLS_FIELDS,
        ["remote_write", "oauth2"] => OAUTH2_FIELDS,
        ["sources" | "modules", "metrics"] => METRIC_FIELDS,
        ["sources" | "modules", "metrics", "values", _] => OUTPUT_FIELDS,
        ["sources" | "modules", "basic_auth"] => BASIC_AUTH_FIELDS,
        ["sources" | "modules", "tls"] | ["sources" | "modules", "oauth2", "tls"] => TLS_FIELDS,
        ["sources" | "modules", "oauth2"] => OAUTH2_FIELDS,
        ["sources" | "modules", "paginate"] => PAGINATE_FIELDS,
        ["sources" | "modules", "fan_out"] => FAN_OUT_FIELDS,
        _ => &[],
    };
    let closest = known
        .iter()
        .map(|k| (edit_distance(k, key), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min();
    match closest {
        Some((_, k)) => format!("unknown field `{key}` (did you mean `{k}`?)"),
        None if known.is_empty() => format!("unknown field `{key}`"),
        None => format!(
            "unknown field `{key}`, expected one of: {}",
            known.join(", ")
        ),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// serde_ignored's path in this crate's notation: `sources[0].metrics[1].lables`.
pub fn ignored_path(p: &serde_ignored::Path<'_>) -> (String, String) {
    fn render(p: &serde_ignored::Path<'_>) -> String {
        use serde_ignored::Path;
        match p {
            Path::Root => String::new(),
            Path::Seq { parent, index } => format!("{}[{index}]", render(parent)),
            Path::Map { parent, key } => {
                let parent = render(parent);
                if parent.is_empty() {
                    key.clone()
                } else {
                    format!("{parent}.{key}")
                }
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => render(parent),
        }
    }
    match p {
        serde_ignored::Path::Map { parent, key } => (render(parent), key.clone()),
        other => (String::new(), render(other)),
    }
}

/// The JSON Schema of the config file (draft 2020-12), for editors and CI.
pub fn schema() -> String {
    let schema = schemars::schema_for!(RawConfig);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}
