//! Talking to a peer over mutual TLS: the protocol client's TLS transport.

use std::sync::Arc;
use std::time::Duration;

use crate::client::ClientError;
use crate::protocol::{Command, Reply};

/// Sends `command` to the agent `name` at `address` (`host:port`) and returns its reply.
/// `name` must be the node name its certificate carries.
pub async fn request(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    address: &str,
    command: &Command,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    crate::client::tls(config, name, address, command, timeout).await
}
