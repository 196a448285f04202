//! Validation of a change before anything live is written: the proxy's own checker on a
//! staged copy of the whole tree (beside the live files, so relative includes resolve as
//! they do live), and the agent's own checks of what map values name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checked::Tree;
use super::error::{ApplyError, ErrorKind};
use super::files::Pending;
use super::Engine;
use crate::config::ValueCheck;
use crate::fsio::write_staged;
use crate::protocol::FileKind;
use crate::protocol::Step;
use crate::proxy::{CheckReport, Proxy};
use crate::state::State;

/// Whether `v` is a canary share: a whole number from 0 to 100, optionally followed by `:`
/// and a seed below 2^32 (`20:1840213577`).
pub fn is_percent(v: &str) -> bool {
    let (percent, seed) = v.split_once(':').unwrap_or((v, "0"));
    percent.len() <= 3
        && percent.parse::<u8>().is_ok_and(|n| n <= 100)
        && seed.len() <= 10
        && seed.bytes().all(|b| b.is_ascii_digit())
        && seed.parse::<u32>().is_ok()
}

/// Refuses the first entry of map `map` whose value is not one of the backends `known`
/// (as `whose` defines them), naming the map, the key and the missing backend.
pub fn check_backends(
    map: &str,
    entries: &crate::mapfile::MapEntries,
    known: &BTreeSet<String>,
    whose: &str,
) -> Result<(), ApplyError> {
    match entries.iter().find(|(_, v)| !known.contains(v.as_str())) {
        Some((k, v)) => Err(ApplyError::new(
            Step::Validate,
            ErrorKind::BadValue,
            format!("map {map}: key {k:?} names backend {v:?}, which {whose} does not define"),
        )),
        None => Ok(()),
    }
}

/// Staged copy of a path: beside it, hidden, with a suffix no include glob matches.
pub fn staged_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.cutover-staged"))
}

impl<P: Proxy> Engine<P> {
    /// The agent's own checks: every map value names what its file says it must. Backends
    /// are those `defined` by the config the proxy's checker just passed, when it lists
    /// them (a proxy that reloads for the change will serve exactly those); else those the
    /// live config file defines (what the next reload reads; no running proxy needed); else
    /// those the running proxy lists.
    pub(super) async fn check_values(
        &self,
        pending: &[Pending<'_>],
        defined: Option<&BTreeSet<String>>,
    ) -> Result<(), ApplyError> {
        let mut backends: Option<(BTreeSet<String>, String)> = defined.map(|d| {
            (
                d.clone(),
                format!("the checked {} config", self.proxy.name()),
            )
        });
        for p in pending {
            let Some(entries) = &p.entries else { continue };
            let (known, whose) = match p.spec.values {
                ValueCheck::Any => continue,
                ValueCheck::Percent => {
                    if let Some((k, v)) = entries.iter().find(|(_, v)| !is_percent(v)) {
                        return Err(ApplyError::new(
                            Step::Validate,
                            ErrorKind::BadValue,
                            format!(
                                "map {}: key {k:?} has {v:?}, not a percentage 0..=100 \
                                 (optionally :seed)",
                                p.spec.name
                            ),
                        ));
                    }
                    continue;
                }
                ValueCheck::Services => {
                    for (k, v) in entries {
                        if !self.config.services.contains_key(v) {
                            return Err(ApplyError::new(
                                Step::Validate,
                                ErrorKind::BadValue,
                                format!("map {}: key {k:?} names {v:?}, which is not a configured service", p.spec.name),
                            ));
                        }
                    }
                    continue;
                }
                ValueCheck::Backends => {
                    if backends.is_none() {
                        backends = Some(self.known_backends().await?);
                    }
                    backends.as_ref().expect("just set")
                }
            };
            check_backends(&p.spec.name, entries, known, whose)?;
        }
        Ok(())
    }

    /// The backends the live config file defines, or when the proxy cannot read them from
    /// the file, those the running proxy lists; with who says so, for a refusal.
    async fn known_backends(&self) -> Result<(BTreeSet<String>, String), ApplyError> {
        let path = &self.config.proxy.config;
        if let Some(defined) = self.proxy.config_backends(path) {
            return Ok((
                defined,
                format!("{} config {}", self.proxy.name(), path.display()),
            ));
        }
        let running = self.proxy.backends().await.map_err(|e| {
            ApplyError::caused(Step::Validate, ErrorKind::Proxy, e).context("listing backends")
        })?;
        Ok((running, format!("the running {}", self.proxy.name())))
    }

    /// The proxy's checker runs when a config file changed, or a map the agent cannot
    /// check itself changed and the main config is rendered (so it can be staged), and for
    /// every change of a proxy without runtime maps: it reloads the whole config for any
    /// change, so the whole config is validated first.
    pub(super) fn needs_proxy_check(&self, pending: &[Pending<'_>]) -> bool {
        if !self.proxy.has_runtime_maps() {
            return true;
        }
        let main_rendered = self
            .config
            .files
            .iter()
            .any(|f| f.path == self.config.proxy.config);
        pending.iter().any(|p| {
            p.spec.kind == FileKind::Config || (p.spec.values == ValueCheck::Any && main_rendered)
        })
    }

    /// Writes a staged copy of the main config and of the files in `changed` beside the
    /// live ones and runs the proxy's checker on the staged main config; the staged files
    /// are removed afterwards. Relative includes in the main config resolve as they do
    /// live: the staged copy is in the same directory. A file that does not change is read
    /// where it is (it is what the proxy reads anyway), so a large route map is neither
    /// rendered nor copied for a flip; `None` stages every file (a first start, before the
    /// live files exist). Staged copies are not fsynced: they live only while the checker
    /// reads them. A tree the checker passed recently is not checked again (see
    /// `checked`).
    pub(super) async fn validate_staged(
        &self,
        next: &State,
        changed: Option<&BTreeSet<&str>>,
    ) -> Result<CheckReport, ApplyError> {
        let Some(main) = self
            .config
            .files
            .iter()
            .find(|f| f.path == self.config.proxy.config)
        else {
            return Err(ApplyError::new(
                Step::Validate,
                ErrorKind::ProxyCheck,
                format!(
                    "a config file changed but the main config {} is not rendered by cutover, so the change cannot be validated as a whole",
                    self.config.proxy.config.display()
                ),
            ));
        };
        let is_staged = |f: &crate::config::FileSpec| {
            f.name == main.name || changed.is_none_or(|c| c.contains(f.name.as_str()))
        };
        let paths: BTreeMap<String, PathBuf> = self
            .config
            .files
            .iter()
            .map(|f| {
                let path = if is_staged(f) {
                    staged_path(&f.path)
                } else {
                    f.path.clone()
                };
                (f.name.clone(), path)
            })
            .collect();
        let staged: BTreeMap<String, PathBuf> = self
            .config
            .files
            .iter()
            .filter(|f| is_staged(f))
            .map(|f| (f.name.clone(), paths[&f.name].clone()))
            .collect();
        let mut rendered = BTreeMap::new();
        for f in self.config.files.iter().filter(|f| is_staged(f)) {
            let text = self
                .renderer
                .render(f, next, &paths)
                .map_err(|e| ApplyError::caused(Step::Render, ErrorKind::Template, e))?;
            rendered.insert(f.name.clone(), text);
        }
        // The whole tree as the checker reads it, rendered for generation 0 (an Nginx config
        // serves its generation, which changes at every switch and not the verdict): a tree
        // it passed a moment ago passes.
        let unnumbered = State {
            generation: 0,
            ..next.clone()
        };
        let tree: Option<Tree> = self
            .config
            .files
            .iter()
            .map(|f| match rendered.contains_key(&f.name) {
                true => self
                    .renderer
                    .render(f, &unnumbered, &paths)
                    .ok()
                    .map(|text| (f.name.clone(), Arc::from(text.as_str()))),
                false => self.files.get(&f.name).map(|t| (f.name.clone(), t.clone())),
            })
            .collect();
        if let Some(report) = tree.as_ref().and_then(|t| self.checked.get(t)) {
            return Ok(report);
        }
        let result = async {
            for (name, path) in &staged {
                write_staged(path, rendered[name].as_bytes()).map_err(|e| {
                    ApplyError::caused(Step::Validate, ErrorKind::Io, e).context("staging")
                })?;
            }
            let report = self
                .proxy
                .check(&staged[&main.name])
                .await
                .map_err(|e| ApplyError::caused(Step::Validate, ErrorKind::ProxyCheck, e))?;
            for w in &report.warnings {
                tracing::warn!("config check: {w}");
            }
            Ok(report)
        }
        .await;
        for p in staged.values() {
            let _ = std::fs::remove_file(p);
        }
        if let (Ok(report), Some(tree)) = (&result, tree) {
            self.checked.put(tree, report);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_share_is_a_percentage_with_an_optional_seed() {
        for ok in ["0", "20", "100", "20:1840213577", "5:1", "99:4294967295"] {
            assert!(super::is_percent(ok), "{ok}");
        }
        for bad in [
            "",
            "101",
            "-1",
            "20:",
            ":5",
            "20:x",
            "20:4294967296",
            "20:1:2",
            "20 5",
            "020:+1",
        ] {
            assert!(!super::is_percent(bad), "{bad}");
        }
    }
}
