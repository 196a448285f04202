//! Server drains: the colour that lost its traffic stops taking new connections (where the
//! service's config says so), and a colour that takes traffic again leaves drain before the
//! traffic moves (out of maintenance too, where its drain ended: `health`). Draining is
//! runtime state on every proxy that supports it.

use super::error::{ApplyError, ErrorKind};
use super::Engine;
use crate::protocol::Colour;
use crate::protocol::Step;
use crate::proxy::{Proxy, ProxyError};
use crate::state::State;

/// `prev` with only the drains `next` keeps: the state of the servers between a change's
/// undrains (made before traffic moves) and its new drains (made after).
pub(super) fn drains_kept(prev: &State, next: &State) -> State {
    let mut mid = prev.clone();
    for (name, s) in mid.services.iter_mut() {
        if let Some(n) = next.services.get(name) {
            s.drained.retain(|c| n.drained.contains(c));
        }
    }
    mid
}

impl<P: Proxy> Engine<P> {
    /// Brings the proxy's server admin states to the drains of `next`, from those of
    /// `prev` (`None`: re-assert every drain and every undrain, as after a reload or an
    /// interrupted change). Draining is runtime state on every proxy that supports it.
    pub(super) async fn sync_drains(
        &self,
        prev: Option<&State>,
        next: &State,
    ) -> Result<(), ApplyError> {
        for (name, s) in &next.services {
            let Some(service) = self.config.services.get(name) else {
                continue;
            };
            for colour in Colour::ALL {
                let want = s.drained.contains(&colour);
                let had = prev
                    .and_then(|p| p.services.get(name))
                    .map(|p| p.drained.contains(&colour));
                // Without a previous state (a reconcile) what the proxy holds is unknown: a
                // drain left by an interrupted change must be lifted too, so every colour is
                // set, which the proxy does only for servers in the other state.
                if had == Some(want) {
                    continue;
                }
                let backend = &service.colours[&colour].backend;
                // A colour whose drain ended is in maintenance: it leaves it first.
                if had == Some(true) && !want && service.drain_timeout.is_some() {
                    self.proxy.set_maint(backend, false).await.map_err(|e| {
                        ApplyError::caused(Step::Apply, ErrorKind::Proxy, e)
                            .context(format!("taking servers of {backend} out of maintenance"))
                    })?;
                }
                match self.proxy.set_drain(backend, want).await {
                    Ok(()) => {}
                    Err(ProxyError::Unsupported { .. }) if !want || prev.is_none() => {}
                    Err(e) => {
                        let doing = if want { "draining" } else { "undraining" };
                        return Err(ApplyError::caused(Step::Apply, ErrorKind::Proxy, e)
                            .context(format!("{doing} servers of {backend}")));
                    }
                }
            }
        }
        Ok(())
    }
}
