//! The command line as a client of the fleet store (`--etcd`): a deploy pipeline drives
//! every host of a site with the etcd credentials alone, no shell on a proxy host and no
//! local agent. The verbs are those of an agent's `--cluster`, answered the same way.

use std::time::Duration;

use super::EtcdArgs;
use crate::agent::fleet;
use crate::config::{EtcdAuth, EtcdConfig, EtcdTls, FleetConfig};
use crate::fleet::{etcd, propose};
use crate::protocol::{Command, Reply};

/// Why the command line cannot talk to the fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetArgsError {
    /// The `--etcd*` flags do not make a usable configuration.
    #[error("--etcd: {0}")]
    Flags(String),
}

/// The fleet configuration the flags make; the proposer's name is `--etcd-name` or
/// `cli-<hostname>`.
pub fn config(args: &EtcdArgs) -> Result<FleetConfig, FleetArgsError> {
    let mut etcd = EtcdConfig::new(args.endpoints.clone(), args.prefix.clone());
    etcd.tls = args.ca.clone().map(|ca| EtcdTls {
        ca,
        identity: args.cert.clone().zip(args.key.clone()),
    });
    etcd.auth = args
        .user
        .clone()
        .zip(args.password_file.clone())
        .map(|(user, password_file)| EtcdAuth {
            user,
            password_file,
        });
    etcd.vote_timeout = Duration::from_millis(args.vote_ms);
    etcd.wait = Duration::from_millis(args.wait_ms);
    let problems = etcd.problems();
    if !problems.is_empty() {
        return Err(FleetArgsError::Flags(problems.join("; ")));
    }
    let node = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        format!("cli-{host}")
    });
    if let Err(e) = crate::mapfile::check_name(&node) {
        return Err(FleetArgsError::Flags(format!("--etcd-name: {e}")));
    }
    Ok(FleetConfig {
        node,
        expect_hosts: vec![],
        etcd,
    })
}

/// Sends `command` (a `cluster` change, `cluster_status`, or `cluster` history) to the
/// fleet and returns the reply an agent would give.
pub async fn request(args: &EtcdArgs, command: &Command) -> Result<Reply, FleetArgsError> {
    let config = config(args)?;
    Ok(match command {
        Command::ClusterStatus => fleet::status(&config).await,
        Command::Cluster { command } => match &**command {
            Command::History { service, limit, .. } => {
                fleet::history(&config, service.as_deref(), *limit).await
            }
            Command::Change(m) => match etcd::connect(&config.etcd, etcd::any_start()).await {
                Ok((client, _)) => {
                    let change = propose::Change {
                        request: m.request.clone(),
                        force: m.force,
                        dry_run: m.dry_run,
                        by: config.node.clone(),
                        terms: m.terms.clone(),
                        // The proposer is this command line, named by --etcd-name.
                        asked_by: None,
                    };
                    propose::propose(&client, &config.etcd, change).await
                }
                Err(e) => Reply::error(e.to_string(), serde_json::Value::Null),
            },
            other => Reply::error(
                format!("{} does not go to the fleet", other.verb()),
                serde_json::Value::Null,
            ),
        },
        other => Reply::error(
            format!("{} does not go to the fleet", other.verb()),
            serde_json::Value::Null,
        ),
    })
}
