//! Probe modules (`modules`, sources polled on `/probe` with a target) and the rule their
//! targets must pass (`probe.allow_targets`).

use std::collections::HashMap;
use std::sync::Arc;

use super::Compiler;
use crate::config::raw::{RawConfig, RawSource};
use crate::config::{Source, TargetRule};

impl Compiler<'_> {
    /// The `modules` list, each name once, compiled as sources are; and each as the raw
    /// source it stands for, with its path (for the families).
    pub(super) fn modules(
        &mut self,
        raw: &RawConfig,
    ) -> (Vec<Arc<Source>>, Vec<(String, RawSource)>) {
        let mut modules = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let module_sources: Vec<(String, RawSource)> = raw
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("modules[{i}]"), m.as_source()))
            .collect();
        for (i, (at, rs)) in module_sources.iter().enumerate() {
            if let Some(first) = seen.insert(&raw.modules[i].name, i) {
                self.error(
                    format!("{at}.name"),
                    format!(
                        "duplicate module name {:?} (also modules[{first}])",
                        rs.name
                    ),
                );
            }
            if let Some(s) = self.source(at, rs) {
                modules.push(Arc::new(s));
            }
        }
        (modules, module_sources)
    }

    /// `probe.allow_targets`: the rules every probe target (and every hop of a redirect)
    /// must pass.
    pub(super) fn probe_allow(&mut self, raw: &RawConfig) -> Vec<TargetRule> {
        let mut probe_allow = Vec::new();
        if let Some(p) = &raw.probe {
            for (i, rule) in p.allow_targets.iter().enumerate() {
                match TargetRule::parse(rule) {
                    Ok(r) => probe_allow.push(r),
                    Err(e) => self.error(format!("probe.allow_targets[{i}]"), e),
                }
            }
        }
        // What `import-json-exporter` writes without `--target`: valid, and refusing every
        // probe until someone lists the targets.
        if !raw.modules.is_empty() && probe_allow.is_empty() {
            let at = if raw.probe.is_some() {
                "probe.allow_targets"
            } else {
                "modules"
            };
            self.warn(
                at,
                "no target is allowed: every /probe?module=... request will be refused until the APIs to probe are listed under probe.allow_targets",
            );
        }
        probe_allow
    }
}
