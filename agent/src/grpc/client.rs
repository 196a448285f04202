//! The client side of the remote API, for the command line's `--remote`: one call over
//! gRPC with mutual TLS (TLS 1.3, HTTP/2 by ALPN, the server checked against the CA and
//! the name given), the command converted by [`super::convert`] and the reply converted
//! back, so the command line prints it as it prints the unix socket's. Failures are sorted
//! for the exit code: the agent could not be reached, a certificate was refused
//! (authentication), or the caller's role does not allow the call (authorisation).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use super::convert::{self, Call};
use super::pb;
use super::pb::cutover_client::CutoverClient;
use super::read_ahead::ReadAhead;
use crate::protocol::{Command, Reply};

/// Why a remote call did not bring a reply.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The command is not one the remote API carries.
    #[error(transparent)]
    NotACall(#[from] convert::NotACall),
    /// The agent could not be reached, broke off or did not answer in time.
    #[error("cannot reach the agent {peer}: {reason}")]
    Unreachable {
        /// `name (host:port)`.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A certificate was refused: the agent's (not valid for the name given, or not
    /// signed by the CA given) or this client's (refused by the agent).
    #[error("authentication with the agent {peer} failed: {reason}")]
    Authentication {
        /// `name (host:port)`.
        peer: String,
        /// Which certificate, and why.
        reason: String,
    },
    /// The agent knows the client but its role does not allow the call.
    #[error("the agent {peer} refused: {message}")]
    Denied {
        /// `name (host:port)`.
        peer: String,
        /// The agent's refusal: the identity and the role needed.
        message: String,
    },
    /// The agent refused the call itself (a bad argument, too many open calls, a message
    /// too large).
    #[error("the agent {peer} refused the call ({code:?}): {message}")]
    Refused {
        /// `name (host:port)`.
        peer: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The agent's message.
        message: String,
    },
}

/// Connects to the remote API of the agent `name` at `address` (`host:port`). `name` must
/// be a DNS name its certificate carries (`--remote-name`). `timeout` bounds connecting.
pub async fn connect(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    address: &str,
    timeout: Duration,
) -> Result<CutoverClient<Channel>, RemoteError> {
    Ok(
        CutoverClient::new(channel(config, name, address, timeout).await?)
            .max_decoding_message_size(super::listen::MAX_REPLY)
            .max_encoding_message_size(usize::MAX),
    )
}

/// The connection [`connect`] makes, for any service the agent serves (reflection too).
pub async fn channel(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    address: &str,
    timeout: Duration,
) -> Result<Channel, RemoteError> {
    let peer = format!("{name} ({address})");
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| {
        RemoteError::Unreachable {
            peer: peer.clone(),
            reason: format!("{name:?} is not a server name: {e}"),
        }
    })?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| RemoteError::Unreachable {
            peer: peer.clone(),
            reason: format!("{address:?} is not host:port: {e}"),
        })?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    let (tls, address) = (TlsConnector::from(config.clone()), address.to_owned());
    let connector = tower::service_fn(move |_| {
        let (tls, address, server_name) = (tls.clone(), address.clone(), server_name.clone());
        async move {
            let tcp = TcpStream::connect(&address).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tls.connect(server_name, tcp).await?;
            // In TLS 1.3 the client's handshake ends before the server has judged the
            // client's certificate: its verdict is its first flight after it, an alert or
            // (accepted) HTTP/2's SETTINGS, which an HTTP/2 server sends at once. Reading it
            // here puts a refusal in the connection's error, where `sort` finds it, rather
            // than in a closed connection hyper cannot explain.
            Ok::<_, std::io::Error>(TokioIo::new(ReadAhead::first(stream).await?))
        }
    });
    tokio::time::timeout(timeout, endpoint.connect_with_connector(connector))
        .await
        .map_err(|_| RemoteError::Unreachable {
            peer: peer.clone(),
            reason: format!("no connection within {} ms", timeout.as_millis()),
        })?
        .map_err(|e| sort(&peer, &e, e.to_string()))
}

/// Sends `command` and returns the protocol's reply. `timeout` is the call's deadline,
/// sent to the agent too (`grpc-timeout`).
pub async fn call(
    client: &mut CutoverClient<Channel>,
    peer: &str,
    command: &Command,
    timeout: Duration,
) -> Result<Reply, RemoteError> {
    fn req<T>(message: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(timeout);
        r
    }
    use pb::change::Change as C;
    let answer = match convert::call(command)? {
        Call::Status(r) => client.status(req(r, timeout)).await,
        Call::History(r) => client.history(req(r, timeout)).await,
        Call::MapShow(r) => client.map_show(req(r, timeout)).await,
        Call::Metrics => client.metrics(req(pb::MetricsRequest {}, timeout)).await,
        Call::ReloadConfig => {
            client
                .reload_config(req(pb::ReloadConfigRequest {}, timeout))
                .await
        }
        Call::Change(pb::Change { change: None }) => unreachable!("convert builds a change"),
        Call::Change(pb::Change {
            change: Some(change),
        }) => match change {
            C::Switch(r) => client.switch(req(r, timeout)).await,
            C::Canary(r) => client.canary(req(r, timeout)).await,
            C::Promote(r) => client.promote(req(r, timeout)).await,
            C::Abort(r) => client.abort(req(r, timeout)).await,
            C::Rollback(r) => client.rollback(req(r, timeout)).await,
            C::Drain(r) => client.drain(req(r, timeout)).await,
            C::Undrain(r) => client.undrain(req(r, timeout)).await,
            C::Apply(r) => client.apply(req(r, timeout)).await,
        },
    };
    match answer {
        Ok(reply) => Ok(convert::from_reply(reply.into_inner())),
        Err(status) => Err(from_status(peer, status)),
    }
}

/// A failed call's status, sorted.
fn from_status(peer: &str, status: tonic::Status) -> RemoteError {
    use tonic::Code;
    let peer = peer.to_owned();
    let message = status.message().to_owned();
    match status.code() {
        Code::PermissionDenied => RemoteError::Denied { peer, message },
        Code::Unauthenticated => RemoteError::Authentication {
            peer,
            reason: message,
        },
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled => {
            sort(&peer, &status, format!("{message} ({:?})", status.code()))
        }
        code => RemoteError::Refused {
            peer,
            code,
            message,
        },
    }
}

/// A connection failure: a refused certificate (the TLS error in its chain) is an
/// authentication failure, anything else leaves the agent unreachable.
fn sort(peer: &str, error: &(dyn std::error::Error + 'static), fallback: String) -> RemoteError {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(reason) = tls.and_then(authentication) {
            return RemoteError::Authentication {
                peer: peer.to_owned(),
                reason,
            };
        }
        next = e.source();
    }
    RemoteError::Unreachable {
        peer: peer.to_owned(),
        reason: fallback,
    }
}

/// What a TLS error says about a certificate, in words, if it is about one.
fn authentication(e: &rustls::Error) -> Option<String> {
    use rustls::{AlertDescription as A, CertificateError as CE};
    match e {
        rustls::Error::InvalidCertificate(CE::NotValidForName)
        | rustls::Error::InvalidCertificate(CE::NotValidForNameContext { .. }) => Some(format!(
            "the agent's certificate is not valid for the name asked ({e}); give the name \
             it carries with --remote-name"
        )),
        rustls::Error::InvalidCertificate(c) => Some(format!(
            "the agent's certificate is not accepted ({c:?}): is it signed by the CA of \
             --tls-ca, and valid now?"
        )),
        rustls::Error::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateRequired
            | A::CertificateUnknown
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::DecryptError
            | A::AccessDenied),
        ) => Some(format!(
            "the agent refused this client's certificate ({alert:?}): it must be signed by \
             the agent's CA and valid now"
        )),
        _ => None,
    }
}
