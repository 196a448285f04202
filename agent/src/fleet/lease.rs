//! A lease kept alive by a task of its own: the keys bound to it (a host's record, a
//! proposal, a vote) live while the holder does and vanish `ttl` after it stops renewing.

use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::etcd::{etcd_error, FleetError};
use crate::config::EtcdConfig;

/// A granted lease and the task that renews it every third of its time-to-live.
pub struct Lease {
    /// etcd's id of the lease.
    pub id: i64,
    lost: watch::Receiver<bool>,
    renewer: JoinHandle<()>,
    client: Client,
}

impl Lease {
    /// Grants a lease of `config.lease_ttl` and starts renewing it.
    pub async fn grant(client: &Client, config: &EtcdConfig) -> Result<Lease, FleetError> {
        let mut client = client.clone();
        let ttl = config.lease_ttl.as_secs().max(1) as i64;
        let id = client
            .lease_grant(ttl, None)
            .await
            .map_err(etcd_error(config))?
            .id();
        let (mut keeper, mut responses) = client
            .lease_keep_alive(id)
            .await
            .map_err(etcd_error(config))?;
        let (lost_tx, lost) = watch::channel(false);
        let every = Duration::from_millis(config.lease_ttl.as_millis() as u64 / 3)
            .max(Duration::from_millis(200));
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let renewed = match keeper.keep_alive().await {
                    Ok(()) => matches!(responses.message().await, Ok(Some(r)) if r.ttl() > 0),
                    Err(_) => false,
                };
                if !renewed {
                    let _ = lost_tx.send(true);
                    return;
                }
            }
        });
        Ok(Lease {
            id,
            lost,
            renewer,
            client,
        })
    }

    /// Completes when a renewal failed: the lease expired, or etcd could not be reached
    /// to renew it (it expires soon after).
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Stops renewing and revokes the lease, deleting its keys now rather than after the
    /// time-to-live. Errors are ignored: the lease expires by itself.
    pub async fn revoke(mut self) {
        self.renewer.abort();
        let _ = self.client.lease_revoke(self.id).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
