//! Registering the families: a new registry holds every series a dashboard needs, at 0.

use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Unit;

use super::*;

impl Metrics {
    /// A registry with every family registered and the fixed series at 0.
    pub fn new() -> Metrics {
        // The process metrics keep their usual names; everything else is `cutover_*`.
        let mut root = Registry::default();
        root.register_collector(Box::new(super::process::Process::new()));
        let registry = root.sub_registry_with_prefix("cutover");
        let switches = Family::<ServiceResult, Counter>::default();
        let rollbacks = Family::<ReasonLabel, Counter>::default();
        let applies = Family::<ResultLabel, Counter>::default();
        let apply_failures = Family::<StepLabel, Counter>::default();
        let apply_duration = Histogram::new(duration_buckets());
        let proxy_reloads = Family::<ResultLabel, Counter>::default();
        let config_reloads = Family::<ResultLabel, Counter>::default();
        let drift_repairs = Counter::default();
        let live_colour = Family::<ServiceColour, Gauge>::default();
        let canary_percent = Family::<ServiceLabel, Gauge>::default();
        let generation = Gauge::default();
        let proxy_up = Gauge::default();
        let peers = Gauge::<i64>::default();
        let peers_agreeing = Gauge::<i64>::default();
        let store_up = Family::<StoreLabel, Gauge>::default();
        let fleet_generation = Gauge::default();
        let fault = Gauge::default();
        let watch_phase = Family::<ServicePhase, Gauge>::default();
        let last_switch = Family::<ServiceLabel, Gauge>::default();
        let last_proxy_reload = Gauge::default();
        let last_config_reload = Gauge::default();
        let desired_state_error = Gauge::default();

        registry.register(
            "switches",
            "Live-colour changes by service and result (ok: the live colour changed; unchanged: it was already live)",
            switches.clone(),
        );
        registry.register(
            "rollbacks",
            "Returns to an earlier routing state, by reason (requested, the post-switch watch, or the undo of a failed change)",
            rollbacks.clone(),
        );
        registry.register(
            "applies",
            "Routing changes (every request that may change routing) by result",
            applies.clone(),
        );
        registry.register(
            "apply_failures",
            "Routing changes refused, by the step that refused them",
            apply_failures.clone(),
        );
        registry.register_with_unit(
            "apply_duration",
            "Time from a routing request to its answer, whatever the result",
            Unit::Seconds,
            apply_duration.clone(),
        );
        registry.register(
            "proxy_reloads",
            "Proxy reloads made by the agent, by result",
            proxy_reloads.clone(),
        );
        registry.register(
            "config_reloads",
            "Agent config reloads (SIGHUP), by result (refused: the old config stays in force)",
            config_reloads.clone(),
        );
        registry.register(
            "drift_repairs",
            "Differences between the desired state and the files or the running proxy, repaired",
            drift_repairs.clone(),
        );
        registry.register(
            "live_colour",
            "1 for the live colour of each service, 0 for the other",
            live_colour.clone(),
        );
        registry.register(
            "canary_percent",
            "Share of each service's requests sent to its canary colour, percent (0: no canary)",
            canary_percent.clone(),
        );
        registry.register(
            "generation",
            "Generation of the applied routing state",
            generation.clone(),
        );
        registry.register(
            "proxy_up",
            "1 when the proxy answered the agent's last check, else 0",
            proxy_up.clone(),
        );
        registry.register(
            "peers",
            "Peer agents on other proxy hosts, as configured in [cluster]",
            peers.clone(),
        );
        registry.register(
            "peers_in_agreement",
            "Peer agents whose last fresh report shows the same routing (live colours and canaries) as this agent",
            peers_agreeing.clone(),
        );
        registry.register(
            "store_up",
            "1 while the fleet store answers the agent, 0 while it does not (label store: etcd)",
            store_up.clone(),
        );
        registry.register(
            "fleet_generation",
            "The fleet generation (etcd) this host applied last",
            fleet_generation.clone(),
        );
        let servers = servers::ServerGauges::register(registry);
        registry.register(
            "fault",
            "1 while the agent reports a fault (a check failing longer than its grace time, as status shows it), else 0",
            fault.clone(),
        );
        registry.register(
            "watch_phase",
            "1 for the phase of each service's post-switch watch (watching, passed, held, rolled_back, rollback_failed), 0 for the others; no series for a service without a watch",
            watch_phase.clone(),
        );
        registry.register_with_unit(
            "last_switch_timestamp",
            "When each service's live colour last moved, Unix time (0: not since the agent started)",
            Unit::Seconds,
            last_switch.clone(),
        );
        registry.register_with_unit(
            "last_proxy_reload_timestamp",
            "When the agent last reloaded the proxy successfully, Unix time (0: not since it started)",
            Unit::Seconds,
            last_proxy_reload.clone(),
        );
        registry.register_with_unit(
            "last_config_reload_timestamp",
            "When a config reload was last put in force, Unix time (0: not since the agent started)",
            Unit::Seconds,
            last_config_reload.clone(),
        );
        registry.register(
            "desired_state_error",
            "1 while the content of the watched desired-state file (agent.desired_state) is refused, else 0",
            desired_state_error.clone(),
        );
        registry.register(
            "build",
            "The running cutover build",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("CUTOVER_GIT_COMMIT")),
                ("build_date", env!("CUTOVER_BUILD_DATE")),
            ]),
        );

        let hooks = super::hooks::HookFamilies::register(registry);

        for result in RESULTS {
            let _ = applies.get_or_create(&ResultLabel { result });
        }
        for step in STEPS {
            let _ = apply_failures.get_or_create(&StepLabel { step });
        }
        for reason in RollbackReason::ALL {
            let _ = rollbacks.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        for result in ["ok", "failed"] {
            let _ = proxy_reloads.get_or_create(&ResultLabel { result });
        }
        for result in ["ok", "refused"] {
            let _ = config_reloads.get_or_create(&ResultLabel { result });
        }
        Metrics {
            inner: Arc::new(Inner {
                registry: root,
                switches,
                rollbacks,
                applies,
                apply_failures,
                apply_duration,
                proxy_reloads,
                config_reloads,
                drift_repairs,
                live_colour,
                canary_percent,
                generation,
                proxy_up,
                peers,
                peers_agreeing,
                store_up,
                fleet_generation,
                servers,
                hooks,
                fault,
                watch_phase,
                last_switch,
                last_proxy_reload,
                last_config_reload,
                desired_state_error,
                services: Mutex::new(BTreeSet::new()),
                watched: Mutex::new(BTreeSet::new()),
            }),
        }
    }
}
