//! `cutover_servers{service,colour,state}`: the servers of each colour by the state the
//! proxy last reported (the engine's periodic health poll). Every state of every colour of
//! every configured service has a series (0 when no server is in it); a service removed
//! from the config loses its series. On Nginx, whose open-source build cannot report its
//! servers, they are counted as `unknown`.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::protocol::{Colour, HealthState, ServiceHealth};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    service: String,
    colour: &'static str,
    state: &'static str,
}

/// The family and the services it has series for.
pub(super) struct ServerGauges {
    family: Family<ServerLabels, Gauge>,
    services: std::sync::Mutex<Vec<String>>,
}

impl ServerGauges {
    /// Registers `cutover_servers` in `registry`.
    pub(super) fn register(registry: &mut Registry) -> ServerGauges {
        let family = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "servers",
            "Servers of each service's colours by the state the proxy last reported (up, down, drain, maint; unknown where the proxy cannot report them)",
            family.clone(),
        );
        ServerGauges {
            family,
            services: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// The health poll's result: sets every series of the services in `health` and drops
    /// those of services no longer in it.
    pub fn servers(&self, health: &BTreeMap<String, ServiceHealth>) {
        let gauges = &self.inner.servers;
        let mut known = gauges.services.lock().expect("metrics lock");
        for gone in known.iter().filter(|s| !health.contains_key(*s)) {
            for colour in Colour::ALL {
                for state in HealthState::ALL {
                    gauges.family.remove(&ServerLabels {
                        service: gone.clone(),
                        colour: colour.as_str(),
                        state: state.as_str(),
                    });
                }
            }
        }
        for (service, h) in health {
            for colour in Colour::ALL {
                for state in HealthState::ALL {
                    gauges
                        .family
                        .get_or_create(&ServerLabels {
                            service: service.clone(),
                            colour: colour.as_str(),
                            state: state.as_str(),
                        })
                        .set(i64::from(h.colour(colour).count(state)));
                }
            }
        }
        *known = health.keys().cloned().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ColourHealth;

    #[test]
    fn every_state_has_a_series_and_a_removed_service_loses_them() {
        let m = Metrics::new();
        let web = ServiceHealth {
            polled_ms: 1,
            known: true,
            blue: ColourHealth {
                up: 2,
                down: 1,
                ..ColourHealth::default()
            },
            green: ColourHealth {
                maint: 1,
                ..ColourHealth::default()
            },
        };
        let mut health = BTreeMap::from([
            ("web".to_owned(), web),
            ("api".into(), ServiceHealth::default()),
        ]);
        m.servers(&health);
        let text = m.render();
        assert!(text.contains("# TYPE cutover_servers gauge"), "{text}");
        for line in [
            "cutover_servers{service=\"web\",colour=\"blue\",state=\"up\"} 2",
            "cutover_servers{service=\"web\",colour=\"blue\",state=\"down\"} 1",
            "cutover_servers{service=\"web\",colour=\"green\",state=\"maint\"} 1",
            "cutover_servers{service=\"web\",colour=\"green\",state=\"up\"} 0",
            "cutover_servers{service=\"api\",colour=\"green\",state=\"unknown\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        health.remove("api");
        m.servers(&health);
        let text = m.render();
        assert!(!text.contains("service=\"api\""), "{text}");
        assert!(text.contains("cutover_servers{service=\"web\",colour=\"blue\",state=\"up\"} 2"));
    }
}
