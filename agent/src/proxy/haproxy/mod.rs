//! HAProxy: runtime API over the admin socket, reloads through the master CLI.
pub mod admin;
pub mod master;
pub mod reply;
