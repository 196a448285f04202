//! Admin-socket client.
