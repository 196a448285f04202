//! Registering the families: a new registry holds every series a dashboard needs, at 0.

use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Unit;

use super::*;

impl Metrics {
    /// A registry with every family registered and the fixed series at 0.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cutover");
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
        let servers = servers::ServerGauges::register(&mut registry);
        registry.register(
            "build",
            "The running cutover build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );

        let hooks = super::hooks::HookFamilies::register(&mut registry);

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
                registry,
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
                services: Mutex::new(BTreeSet::new()),
            }),
        }
    }
}
