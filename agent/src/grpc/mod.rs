//! The remote API: the protocol's verbs over gRPC (`proto/cutover/v1/cutover.proto`) with
//! mutual TLS, for deploy pipelines and other tools in any language. A transport like the
//! control socket and the peer listener: every call becomes the protocol's [`Command`]
//! ([`convert`]), goes to the engine task as an [`Envelope`] with who asked (the client
//! certificate's identities, [`Requester::Remote`]), passes the one access check (the
//! roles of `[[remote.clients]]`, in [`crate::access`]) and is journaled there like any
//! request; its [`Reply`] comes back as the gRPC `Reply`.
//!
//! - [`convert`]: the messages to and from the protocol's types, nothing else;
//! - [`service`]: the RPCs, the per-identity cap on open calls, the `Watch` stream;
//! - [`listen`]: the TCP listener, the TLS handshake (TLS 1.3, client certificates
//!   required), the bounds of HTTP/2 and the tonic server with reflection;
//! - [`client`]: the command line's `--remote`;
//! - [`read_ahead`]: a stream whose first bytes were read before HTTP/2 takes it.
//!
//! [`Command`]: crate::protocol::Command
//! [`Reply`]: crate::protocol::Reply
//! [`Envelope`]: crate::control::Envelope
//! [`Requester::Remote`]: crate::requester::Requester::Remote

pub mod client;
pub mod convert;
pub mod listen;
pub mod read_ahead;
pub mod service;

/// `AsyncWrite` for a wrapper of a stream that only reads differently: every write goes
/// to the field named.
macro_rules! write_through {
    ($wrapper:ident $(<$param:ident>)?, $field:ident) => {
        impl$(<$param: tokio::io::AsyncWrite + Unpin>)? tokio::io::AsyncWrite for $wrapper$(<$param>)? {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$field).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$field).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$field).poll_shutdown(cx)
            }
        }
    };
}
use write_through;

/// The messages and service generated from `proto/cutover/v1/cutover.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("cutover.v1");
}

/// The encoded descriptors of the API, for reflection (`grpcurl list`, `describe`).
pub const DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cutover_descriptor");

/// The gRPC service's full name.
pub const SERVICE: &str = "cutover.v1.Cutover";
