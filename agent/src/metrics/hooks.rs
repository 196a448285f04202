//! The hooks' families: deliveries by hook and result, and events dropped because a hook's
//! queue was full. Their label values are the configured hook names.

use super::*;

/// Results of one delivery (every attempt of it): `ok` or `failed`.
const HOOK_RESULTS: [&str; 2] = ["ok", "failed"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookResult {
    hook: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabel {
    hook: String,
}

/// `cutover_hook_runs_total` and `cutover_hook_dropped_total`.
pub(super) struct HookFamilies {
    runs: Family<HookResult, Counter>,
    dropped: Family<HookLabel, Counter>,
    /// Hooks whose series exist, to drop those of a hook removed from the config.
    names: Mutex<BTreeSet<String>>,
}

impl HookFamilies {
    pub(super) fn register(registry: &mut Registry) -> HookFamilies {
        let families = HookFamilies {
            runs: Family::default(),
            dropped: Family::default(),
            names: Mutex::new(BTreeSet::new()),
        };
        registry.register(
            "hook_runs",
            "Deliveries of an event to a hook, by hook and result (failed: every attempt failed)",
            families.runs.clone(),
        );
        registry.register(
            "hook_dropped",
            "Events not delivered to a hook because its queue was full",
            families.dropped.clone(),
        );
        families
    }
}

impl Metrics {
    /// The configured hooks are `names`: their series exist from now on (at 0), those of
    /// hooks no longer configured are dropped.
    pub fn hooks<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let h = &self.inner.hooks;
        let new: BTreeSet<String> = names.into_iter().map(str::to_owned).collect();
        let mut old = h.names.lock().expect("hook names lock");
        for gone in old.difference(&new) {
            for result in HOOK_RESULTS {
                h.runs.remove(&HookResult {
                    hook: gone.clone(),
                    result,
                });
            }
            h.dropped.remove(&HookLabel { hook: gone.clone() });
        }
        for hook in &new {
            for result in HOOK_RESULTS {
                let _ = h.runs.get_or_create(&HookResult {
                    hook: hook.clone(),
                    result,
                });
            }
            let _ = h.dropped.get_or_create(&HookLabel { hook: hook.clone() });
        }
        *old = new;
    }

    /// A delivery to `hook` ended: `ok` or not.
    pub fn hook_run(&self, hook: &str, ok: bool) {
        let result = HOOK_RESULTS[usize::from(!ok)];
        self.inner
            .hooks
            .runs
            .get_or_create(&HookResult {
                hook: hook.to_owned(),
                result,
            })
            .inc();
    }

    /// An event for `hook` was dropped: its queue was full.
    pub fn hook_dropped(&self, hook: &str) {
        self.inner
            .hooks
            .dropped
            .get_or_create(&HookLabel {
                hook: hook.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_series_follow_the_configured_hooks() {
        let m = Metrics::new();
        m.hooks(["chat", "pager"]);
        m.hook_run("chat", true);
        m.hook_run("pager", false);
        m.hook_dropped("pager");
        let text = m.render();
        for expected in [
            "cutover_hook_runs_total{hook=\"chat\",result=\"ok\"} 1",
            "cutover_hook_runs_total{hook=\"chat\",result=\"failed\"} 0",
            "cutover_hook_runs_total{hook=\"pager\",result=\"failed\"} 1",
            "cutover_hook_dropped_total{hook=\"pager\"} 1",
            "cutover_hook_dropped_total{hook=\"chat\"} 0",
        ] {
            assert!(text.contains(expected), "{expected} missing in:\n{text}");
        }
        m.hooks(["chat"]);
        let text = m.render();
        assert!(!text.contains("hook=\"pager\""), "{text}");
        assert!(text.contains("cutover_hook_runs_total{hook=\"chat\",result=\"ok\"} 1"));
    }
}
