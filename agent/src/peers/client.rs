//! Talking to a peer (or, for `cutover --remote`, to any agent) over mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cli::{exchange, ClientError};
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
    let connect_error = |e: std::io::Error| ClientError::Connect {
        path: format!("{name} ({address})").into(),
        source: e,
    };
    let server_name = super::tls::server_name(name)
        .map_err(|e| connect_error(std::io::Error::other(e.to_string())))?;
    let connect = async {
        let tcp = TcpStream::connect(address).await?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config.clone())
            .connect(server_name, tcp)
            .await
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| {
            connect_error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        })?
        .map_err(connect_error)?;
    exchange(
        stream,
        &format!("{name} ({address})"),
        command,
        timeout,
        |_| {},
    )
    .await
}
