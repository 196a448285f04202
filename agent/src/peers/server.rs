//! The peer listener's handshake: mutual TLS over TCP. A connection without a client
//! certificate signed by the configured CA fails the handshake; an established one speaks
//! the same JSON-lines protocol as the control socket ([`crate::control::lines`]), with the
//! certificate's name as requester ([`Requester::Peer`]). The listener itself is served by
//! [`crate::control::serve`].

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::control::Handshake;
use crate::requester::Requester;

/// Establishes peer connections: the TLS handshake, then the certificate's name.
pub struct TlsHandshake {
    acceptor: TlsAcceptor,
}

impl TlsHandshake {
    /// A handshake with the cluster's server configuration.
    pub fn new(config: Arc<rustls::ServerConfig>) -> TlsHandshake {
        TlsHandshake {
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl Handshake for TlsHandshake {
    type Conn = TcpStream;
    type Stream = TlsStream<TcpStream>;

    fn establish(
        &self,
        conn: TcpStream,
    ) -> impl Future<Output = io::Result<(Self::Stream, Requester)>> + Send + 'static {
        let acceptor = self.acceptor.clone();
        async move {
            let peer = conn.peer_addr().ok();
            let stream = acceptor.accept(conn).await.map_err(|e| {
                io::Error::new(e.kind(), format!("TLS handshake with {peer:?}: {e}"))
            })?;
            let name = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map_or_else(|| "unknown".to_owned(), super::tls::peer_name);
            Ok((stream, Requester::Peer { name }))
        }
    }
}
