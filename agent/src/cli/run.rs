//! Running a client verb: build its protocol command, send it to the local agent (unix
//! socket) or a remote one (its remote API: gRPC over mutual TLS), print the reply; and
//! the local `tls` verbs.

use std::time::Duration;

use super::{exit, fail, print_reply, Cli, TlsVerb, Verb};
use crate::protocol::{Command, Mutation, Terms};

/// Runs a verb that talks to an agent and returns the exit code.
pub async fn client(cli: &Cli, verb: &Verb) -> i32 {
    let command = match verb.command(cli.dry_run) {
        Ok(Some(c)) => c,
        Ok(None) => return fail(cli.json, exit::USAGE, "this verb does not talk to an agent"),
        Err(e) => return fail(cli.json, exit::FAILED, e),
    };
    if cli.dry_run && !command.is_mutation() {
        let message = "--dry-run goes with a verb that changes routing";
        return fail(cli.json, exit::USAGE, message);
    }
    let flags = cli.local || cli.reason.is_some() || cli.if_generation.is_some();
    let command = match (command, flags) {
        (Command::Change(m), true) => Command::Change(Mutation {
            local: cli.local,
            terms: Terms {
                reason: cli.reason.clone(),
                if_generation: cli.if_generation,
            },
            ..m
        }),
        (_, true) => {
            let message =
                "--local, --reason and --if-generation go with a verb that changes routing";
            return fail(cli.json, exit::USAGE, message);
        }
        (command, false) => command,
    };
    let fleet = !cli.etcd.endpoints.is_empty();
    let command = match (cli.cluster || fleet, &command) {
        (false, _) => command,
        (true, Command::Status) => Command::ClusterStatus,
        (true, c) if c.is_mutation() || matches!(c, Command::History { .. }) => Command::Cluster {
            command: Box::new(command),
        },
        (true, _) => {
            let message = "--cluster goes with status, history or a verb that changes routing";
            return fail(cli.json, exit::USAGE, message);
        }
    };
    if fleet {
        return fleet_request(cli, &command).await;
    }
    if let Some(remote) = &cli.remote {
        return remote_request(cli, remote, &command).await;
    }
    let socket = match &cli.socket {
        Some(s) => s.clone(),
        None => match crate::config::socket_of(&cli.config) {
            Ok(socket) => socket,
            // Only the default path, absent, stands for the default socket.
            Err(_) if !cli.config.exists() && cli.config_given => {
                let message = format!(
                    "config {} (--config or CUTOVER_CONFIG) does not exist; the agent's \
                     socket is read from it (--socket names a socket alone)",
                    cli.config.display()
                );
                return fail(cli.json, exit::CONFIG, message);
            }
            Err(_) if !cli.config.exists() => crate::config::DEFAULT_SOCKET.into(),
            // The agent judges a broken config itself, and says why it refuses it.
            Err(_) if matches!(command, Command::ReloadConfig) => {
                match crate::config::socket_of_broken(&cli.config) {
                    Some(socket) => socket,
                    None => crate::config::DEFAULT_SOCKET.into(),
                }
            }
            Err(e) => return fail(cli.json, exit::CONFIG, e),
        },
    };
    let reply = crate::client::unix(&socket, &command, Duration::from_secs(cli.timeout), |p| {
        if !cli.json {
            eprintln!("{}", p.message);
        }
    })
    .await;
    match reply {
        Ok(reply) => print_reply(&command, &reply, cli.json),
        Err(e) => fail(cli.json, exit::UNAVAILABLE, e),
    }
}

/// `cutover services`: the names of the services the local agent routes, one per line, for
/// the shell completions, which call it as they complete. It says nothing on failure (no
/// config, no agent, a refusal, an unreadable reply): a completion has nowhere to say it.
pub async fn service_names(cli: &Cli) -> i32 {
    let socket = match &cli.socket {
        Some(s) => s.clone(),
        None => crate::config::socket_of(&cli.config)
            .unwrap_or_else(|_| crate::config::DEFAULT_SOCKET.into()),
    };
    // A completion waits for this: at most 2 s.
    let timeout = Duration::from_secs(cli.timeout.clamp(1, 2));
    let reply = crate::client::unix(&socket, &Command::Status, timeout, |_| {}).await;
    let snapshot = reply
        .ok()
        .filter(|r| r.status == crate::protocol::Status::Ok)
        .and_then(|r| serde_json::from_value::<crate::protocol::Snapshot>(r.data).ok());
    let Some(snapshot) = snapshot else {
        return exit::UNAVAILABLE;
    };
    let mut out = String::new();
    for s in &snapshot.services {
        out.push_str(&s.name);
        out.push('\n');
    }
    print!("{out}");
    exit::OK
}

/// Sends a command to the fleet in etcd (`--etcd`).
#[cfg(feature = "etcd")]
async fn fleet_request(cli: &Cli, command: &Command) -> i32 {
    match super::fleet::request(&cli.etcd, command).await {
        Ok(reply) => print_reply(command, &reply, cli.json),
        Err(e) => fail(cli.json, exit::CONFIG, e),
    }
}

/// `--etcd` in a build without the fleet store.
#[cfg(not(feature = "etcd"))]
async fn fleet_request(cli: &Cli, _command: &Command) -> i32 {
    let message = "--etcd: this cutover was built without the etcd feature";
    fail(cli.json, exit::USAGE, message)
}

/// Sends a command to a remote agent's remote API (gRPC over mutual TLS).
#[cfg(feature = "grpc")]
async fn remote_request(cli: &Cli, remote: &str, command: &Command) -> i32 {
    use crate::grpc::client::{self, RemoteError};
    let (Some(ca), Some(cert), Some(key)) = (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) else {
        let message = "--remote needs --tls-ca, --tls-cert and --tls-key";
        return fail(cli.json, exit::USAGE, message);
    };
    let files = crate::config::TlsFiles {
        ca: ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let config = match crate::peers::tls::client_config_h2(&files) {
        Ok(c) => c,
        Err(e) => return fail(cli.json, exit::CONFIG, e),
    };
    let name = cli.remote_name.clone().unwrap_or_else(|| {
        remote
            .rsplit_once(':')
            .map_or(remote, |(h, _)| h)
            .to_owned()
    });
    let timeout = Duration::from_secs(cli.timeout);
    let peer = format!("{name} ({remote})");
    let answer = match client::connect(&config, &name, remote, timeout).await {
        Ok(mut c) => client::call(&mut c, &peer, command, timeout).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(reply) => print_reply(command, &reply, cli.json),
        Err(e) => {
            let code = match e {
                RemoteError::NotACall(_) => exit::USAGE,
                RemoteError::Unreachable { .. } => exit::UNAVAILABLE,
                RemoteError::Authentication { .. } => exit::UNAUTHENTICATED,
                RemoteError::Denied { .. } => exit::DENIED,
                RemoteError::Refused { .. } => exit::FAILED,
            };
            fail(cli.json, code, e)
        }
    }
}

/// `--remote` in a build without the remote API.
#[cfg(not(feature = "grpc"))]
async fn remote_request(cli: &Cli, _remote: &str, _command: &Command) -> i32 {
    let message = "--remote: this cutover was built without the remote API (feature grpc)";
    fail(cli.json, exit::USAGE, message)
}

/// Runs `cutover tls ca|issue`.
pub fn tls(verb: &TlsVerb) -> Result<(), crate::peers::tls::TlsError> {
    use crate::peers::tls;
    match verb {
        TlsVerb::Ca { dir, name } => {
            let name = tls::make_ca(dir, name.as_deref())?;
            println!("wrote {0}/ca.pem and {0}/ca.key ({name})", dir.display());
        }
        TlsVerb::Issue {
            ca_dir,
            name,
            out,
            uris,
            ca_name,
        } => {
            let out = out.as_deref().unwrap_or(ca_dir);
            let options = tls::IssueOptions {
                uris: uris.clone(),
                expired: false,
            };
            tls::issue_with(ca_dir, ca_name.as_deref(), name, out, &options)?;
            println!("wrote {0}/{name}.pem and {0}/{name}.key", out.display());
        }
    }
    Ok(())
}
