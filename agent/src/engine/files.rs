//! Planning the files of a change: render every managed file for the next state, keep
//! those whose text differs from what is on disk, parse the maps, and validate (the
//! proxy's checker on a staged tree where needed, and the agent's own checks of map
//! values; see `validate`). Nothing live is written: a dry run stops after this step, a
//! change carries the result to the proxy (see `transition`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::error::{ApplyError, ErrorKind};
use super::{ms, Engine};
use crate::config::{Config, FileSpec, ValueCheck};
use crate::mapfile::{MapEntries, MapSyntax};
use crate::protocol::FileKind;
use crate::protocol::Step;
use crate::proxy::Proxy;
use crate::state::State;

/// The validated effect of a state on the files, before anything is written.
pub(super) struct Prepared<'c> {
    /// The files whose text changes.
    pub(super) pending: Vec<Pending<'c>>,
    /// Whether the proxy's checker ran on a staged tree.
    pub(super) validated_by_proxy: bool,
    /// Warnings of the proxy's checker.
    pub(super) warnings: Vec<String>,
    /// A config file changed, or the proxy has no runtime maps: a reload applies it.
    pub(super) structural: bool,
    /// Milliseconds of `render` and `validate`.
    pub(super) timings: BTreeMap<&'static str, f64>,
}

/// A file whose rendered content differs from what is on disk.
pub(super) struct Pending<'a> {
    pub(super) spec: &'a FileSpec,
    pub(super) old: Arc<str>,
    pub(super) new: Arc<str>,
    /// Parsed new entries, for maps.
    pub(super) entries: Option<MapEntries>,
}

/// Parses a rendered map in the proxy's syntax and refuses one that is invalid, or empty
/// when its file does not allow that.
pub(super) fn parse_rendered(
    spec: &FileSpec,
    syntax: MapSyntax,
    text: &str,
) -> Result<MapEntries, ApplyError> {
    let entries = syntax.parse(text).map_err(|e| {
        ApplyError::caused(Step::Render, ErrorKind::Template, e)
            .context(format!("template {} renders an invalid map", spec.template))
    })?;
    spec.check_entries(&entries).map_err(|e| {
        ApplyError::new(
            Step::Render,
            ErrorKind::Template,
            format!("template {}: {e}", spec.template),
        )
    })?;
    Ok(entries)
}

impl<P: Proxy> Engine<P> {
    /// Renders every managed file for `state` with the given paths.
    pub(super) fn render_all(
        &self,
        state: &State,
        paths: &BTreeMap<String, PathBuf>,
        live: bool,
    ) -> Result<BTreeMap<String, Arc<str>>, ApplyError> {
        let mut out = BTreeMap::new();
        for f in &self.config.files {
            let text = match live {
                true => self.render_live(f, state, paths)?,
                false => self
                    .renderer
                    .render(f, state, paths)
                    .map(Arc::from)
                    .map_err(|e| ApplyError::caused(Step::Render, ErrorKind::Template, e))?,
            };
            out.insert(f.name.clone(), text);
        }
        Ok(out)
    }

    /// The text of `f` for `state` with live paths: the cached render of a file that does
    /// not use the state, borrowed (a large route map is neither rendered nor copied on a
    /// flip), or a fresh render.
    fn render_live(
        &self,
        f: &FileSpec,
        state: &State,
        paths: &BTreeMap<String, PathBuf>,
    ) -> Result<Arc<str>, ApplyError> {
        match self.static_files.get(&f.name) {
            Some(cached) => Ok(cached.clone()),
            None => self
                .renderer
                .render(f, state, paths)
                .map(Arc::from)
                .map_err(|e| ApplyError::caused(Step::Render, ErrorKind::Template, e)),
        }
    }

    /// Renders `next`, keeps the files that change, and validates them (own checks, and the
    /// proxy's checker on a staged tree when needed). Writes nothing live.
    pub(super) async fn prepare<'c>(
        &self,
        config: &'c Config,
        next: &State,
    ) -> Result<Prepared<'c>, ApplyError> {
        let mut timings = BTreeMap::new();
        let t = Instant::now();
        let live_paths = crate::render::live_paths(config);
        let mut pending = Vec::new();
        for spec in &config.files {
            let new = self.render_live(spec, next, &live_paths)?;
            let old = &self.files[&spec.name];
            if Arc::ptr_eq(old, &new) || **old == *new {
                continue;
            }
            let entries = match spec.kind {
                FileKind::Map => Some(parse_rendered(spec, self.syntax(), &new)?),
                FileKind::Config => None,
            };
            pending.push(Pending {
                spec,
                old: old.clone(),
                new,
                entries,
            });
        }
        timings.insert("render", ms(t));
        let t = Instant::now();
        let validated_by_proxy = !pending.is_empty() && self.needs_proxy_check(&pending);
        let report = if validated_by_proxy {
            let changed = pending.iter().map(|p| p.spec.name.as_str()).collect();
            Some(self.validate_staged(next, Some(&changed)).await?)
        } else {
            None
        };
        let defined = report.as_ref().and_then(|r| r.backends.as_ref());
        self.check_values(&pending, defined).await?;
        if let Some(defined) = defined {
            // The checked config is what the proxy will serve: the maps that do not change
            // must name only its backends too.
            self.check_unchanged_maps(config, &pending, defined)?;
        }
        timings.insert("validate", ms(t));
        let structural = pending.iter().any(|p| p.spec.kind == FileKind::Config)
            || (!pending.is_empty() && !self.proxy.has_runtime_maps());
        Ok(Prepared {
            pending,
            validated_by_proxy,
            warnings: report.map(|r| r.warnings).unwrap_or_default(),
            structural,
            timings,
        })
    }

    /// Checks the backend maps not in `pending` (their live text is what the proxy keeps)
    /// against the backends `defined` by the checked config.
    fn check_unchanged_maps(
        &self,
        config: &Config,
        pending: &[Pending<'_>],
        defined: &std::collections::BTreeSet<String>,
    ) -> Result<(), ApplyError> {
        let whose = format!("the checked {} config", self.proxy.name());
        for spec in config.files.iter().filter(|f| {
            f.values == ValueCheck::Backends && !pending.iter().any(|p| p.spec.name == f.name)
        }) {
            let Some(text) = self.files.get(&spec.name) else {
                continue;
            };
            let entries = parse_rendered(spec, self.syntax(), text)?;
            super::validate::check_backends(&spec.name, &entries, defined, &whose)?;
        }
        Ok(())
    }
}
