//! Plans: what a request would do (state change, gates, files, mechanisms), worked out by
//! the same steps as a real change up to and including validation, then stopped. Nothing
//! live changes and nothing is journaled.

use super::{ApplyError, Engine};
use crate::proxy::Proxy;
use crate::state::{Colour, Request};

pub use crate::protocol::Plan;

impl<P: Proxy> Engine<P> {
    /// Plans `req` as [`Engine::apply`] would carry it out. An `Err` names the step that
    /// would refuse it.
    pub async fn plan(&self, req: &Request, force: bool) -> Result<Plan, ApplyError> {
        let (next, change) = self
            .state
            .apply(req)
            .map_err(|e| ApplyError::new(super::Step::Request, e))?;
        if change.is_empty() {
            return Ok(Plan {
                generation: self.state.generation,
                services: vec![],
                gates: vec![],
                files: vec![],
                validated_by_proxy: false,
                servers: vec![],
            });
        }
        let next = self.with_drain_policy(&self.state, next);
        let gates = self.gate(&self.state, &next, force).await?;
        let (files, validated_by_proxy) = self.plan_files(&next).await?;
        let mut servers = Vec::new();
        for (name, s) in &next.services {
            let before = &self.state.services[name];
            for colour in Colour::ALL {
                let (had, want) = (
                    before.drained.contains(&colour),
                    s.drained.contains(&colour),
                );
                if had != want {
                    let backend = &self.config.services[name].colours[&colour].backend;
                    servers.push(format!(
                        "{} {backend}",
                        if want { "drain" } else { "undrain" }
                    ));
                }
            }
        }
        Ok(Plan {
            generation: next.generation,
            services: crate::state::diff(&self.state, &next),
            gates,
            files,
            validated_by_proxy,
            servers,
        })
    }
}
