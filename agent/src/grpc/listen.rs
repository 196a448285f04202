//! The remote API's listener: TCP on `[remote] listen`, the TLS handshake (TLS 1.3 only,
//! a client certificate signed by the configured CA required) and then the client's first
//! bytes, each within `handshake_timeout`, at most `max_connections` connections, then HTTP/2 and gRPC by
//! tonic with the bounds of `[remote]`: request messages up to `max_message_bytes`, calls
//! up to `call_timeout` (or the client's shorter deadline), keepalive pings that drop a
//! dead client, and reflection for grpcurl. Each connection carries the identities of its
//! client certificate ([`ClientNames`]) to every request it makes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use super::pb::cutover_server::CutoverServer;
use super::service::{ClientNames, Service};
use crate::config::RemoteConfig;
use crate::requester::{Identity, MAX_IDENTITIES};

/// Largest reply message sent, bytes (the JSON-lines client's bound on a reply line).
pub const MAX_REPLY: usize = crate::client::MAX_REPLY;

/// Why the remote API could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The certificates.
    #[error("remote API TLS: {0}")]
    Tls(#[from] crate::peers::tls::TlsError),
    /// The address.
    #[error("binding the remote API on {addr}: {source}")]
    Bind {
        /// `[remote] listen`.
        addr: std::net::SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The reflection service (the API's descriptors did not load).
    #[error("remote API reflection: {0}")]
    Reflection(String),
    /// The server.
    #[error("serving the remote API: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// One established connection: the TLS stream, its client's identities, and its place
/// under the connection cap (freed when tonic drops the connection).
struct Conn {
    stream: TlsStream<TcpStream>,
    names: ClientNames,
    _permit: OwnedSemaphorePermit,
    /// Until the client's first bytes (HTTP/2's preface) arrive: when they must have. A
    /// client that connects and never speaks holds no place for long.
    speak_by: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Connected for Conn {
    type ConnectInfo = ClientNames;

    fn connect_info(&self) -> ClientNames {
        self.names.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(deadline) = self.speak_by.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not speak in time",
                )));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.speak_by = None;
        }
        read
    }
}

super::write_through!(Conn, stream);

/// The identities of a verified client certificate: its SAN DNS names, then its SAN
/// URIs, at most [`MAX_IDENTITIES`].
pub fn identities(cert: &rustls::pki_types::CertificateDer<'_>) -> Vec<Identity> {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return vec![];
    };
    let dns = cert.valid_dns_names().map(|n| Identity::Dns(n.to_owned()));
    let uris = cert.valid_uri_names().map(|u| Identity::Uri(u.to_owned()));
    dns.chain(uris).take(MAX_IDENTITIES).collect()
}

/// Binds `[remote] listen` (before the agent reports ready, so a bad address stops it).
pub async fn bind(config: &RemoteConfig) -> Result<TcpListener, ListenError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ListenError::Bind {
            addr: config.listen,
            source,
        })
}

/// Serves the remote API on `listener` until `shutdown` completes; requests go to the
/// engine through `service`.
pub async fn serve(
    listener: TcpListener,
    config: &RemoteConfig,
    service: Service,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ListenError> {
    let tls = crate::peers::tls::server_config_h2(&config.tls)?;
    let (tx, rx) = mpsc::channel::<Conn>(config.max_connections);
    let (stop_accepting, accepting_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(accept(
        listener,
        TlsAcceptor::from(tls),
        Arc::new(Semaphore::new(config.max_connections)),
        config.handshake_timeout,
        tx,
        accepting_stopped,
    ));
    let incoming = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (Ok::<_, io::Error>(c), rx))
    });
    // Reflection in both versions grpcurl and other tools ask for; it shows the schema
    // (public in the repository) to any client the TLS handshake admitted, and runs nothing.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(super::DESCRIPTOR_SET)
    };
    let reflection_error =
        |e: tonic_reflection::server::Error| ListenError::Reflection(e.to_string());
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let cutover = CutoverServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(MAX_REPLY);
    let streams = u32::try_from(config.max_streams_per_client).unwrap_or(u32::MAX);
    let served = tonic::transport::Server::builder()
        .timeout(config.call_timeout)
        .max_concurrent_streams(Some(streams))
        .http2_keepalive_interval(Some(config.handshake_timeout))
        .http2_keepalive_timeout(Some(config.handshake_timeout))
        .add_service(cutover)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = stop_accepting.send(());
    Ok(served?)
}

/// Accepts connections under the cap and finishes their TLS handshakes, each in a task of
/// its own bounded by `handshake`; hands the established ones to tonic.
async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    permits: Arc<Semaphore>,
    handshake: std::time::Duration,
    established: mpsc::Sender<Conn>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut stop => return,
            _ = established.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("remote API: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::info!("remote API: {addr}: too many connections; closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, established_tx) = (acceptor.clone(), established.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let names = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(identities)
                        .unwrap_or_default();
                    let conn = Conn {
                        stream,
                        names: ClientNames(Arc::new(names)),
                        _permit: permit,
                        speak_by: Some(Box::pin(tokio::time::sleep(handshake))),
                    };
                    let _ = established_tx.send(conn).await;
                }
                Ok(Err(e)) => tracing::info!("remote API: TLS handshake with {addr}: {e}"),
                Err(_) => tracing::info!("remote API: TLS handshake with {addr} timed out"),
            }
        });
    }
}
