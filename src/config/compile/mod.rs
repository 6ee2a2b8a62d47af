//! Raw config (serde types, [`super::raw`]) to the compiled [`Config`], section by section:
//! sources and their requests and schedules (`sources`, `requests`), metric blocks and their
//! families (`metrics`), probe modules and the probe rule (`probes`). Every error is collected
//! with its path and position (see [`Diagnostic`]); nothing downstream parses strings.

mod fan_out;
mod metrics;
mod paginate;
mod probes;
mod remote_write;
mod requests;
mod sources;
mod tls;

#[cfg(test)]
pub(crate) use requests::display_url;

use std::path::Path;

use super::raw::{RawConfig, RawSource};
use super::{Config, Diagnostic, Locator};

/// Compiles one file: where it is (for positions, `${VAR}`, relative paths) and what it found.
pub(super) struct Compiler<'a> {
    pub(super) locator: &'a Locator,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    /// `check --allow-missing-env`: an unset `${VAR}` is a warning, checked with a stand-in.
    pub(super) allow_missing_env: bool,
    pub(super) base_dir: &'a Path,
    /// The names the config's own families expose, which names from the data may not take.
    pub(super) taken: std::sync::Arc<std::collections::HashSet<String>>,
    pub(super) diagnostics: Vec<Diagnostic>,
    pub(super) warnings: Vec<Diagnostic>,
}

impl Compiler<'_> {
    pub(super) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.diagnostics.push(Diagnostic {
            position: self.locator.find(&path),
            path,
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.warnings.push(Diagnostic {
            position: self.locator.find(&path),
            path,
            message: message.into(),
        });
    }

    /// The whole file: sources, probe modules and their rule, then the metric families
    /// across both.
    pub(super) fn config(&mut self, raw: &RawConfig) -> Config {
        self.taken = metrics::taken_names(raw).into();
        let sources = self.sources(raw);
        let (modules, module_sources) = self.modules(raw);
        let probe_allow = self.probe_allow(raw);
        let all: Vec<(String, RawSource)> = raw
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("sources[{i}]"), s.clone()))
            .chain(module_sources)
            .collect();
        let families = self.families(&all);
        let remote_write = self.remote_write(raw);
        Config {
            sources,
            families,
            warnings: Vec::new(),
            modules,
            probe_allow: probe_allow.into(),
            remote_write,
        }
    }
}
