//! The peer listener: TCP with mutual TLS. A connection without a client certificate
//! signed by the configured CA fails the handshake; an established one speaks the same
//! JSON-lines protocol as the control socket, with the certificate's name as requester.

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::control::Transport;
use crate::requester::Requester;

pub struct TlsTransport {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsTransport {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsTransport {
        TlsTransport {
            listener,
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl Transport for TlsTransport {
    type Raw = TcpStream;
    type Stream = TlsStream<TcpStream>;

    async fn accept(&self) -> io::Result<TcpStream> {
        let (stream, _) = self.listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn establish(
        &self,
        raw: TcpStream,
    ) -> impl Future<Output = io::Result<(Self::Stream, Requester)>> + Send + 'static {
        let acceptor = self.acceptor.clone();
        async move {
            let peer = raw.peer_addr().ok();
            let stream = acceptor.accept(raw).await.map_err(|e| {
                io::Error::new(e.kind(), format!("TLS handshake with {peer:?}: {e}"))
            })?;
            let name = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map_or_else(|| "unknown".to_owned(), super::tls::peer_name);
            let who = Requester::Peer { name };
            Ok((stream, who))
        }
    }

    async fn refuse(_raw: TcpStream, _message: String) {
        // Nothing can be said before the handshake; closing is the answer.
    }
}
