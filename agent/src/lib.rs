//! cutover: owns the blue-green and canary routing decision for the services behind one
//! HAProxy or Nginx host, and carries it to the proxy with the least disruption.
#![forbid(unsafe_code)]

pub mod access;
pub mod agent;
pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod desired;
pub mod engine;
pub mod fsio;
#[doc(hidden)]
pub mod fuzzing;
pub mod gates;
pub mod generate;
pub mod logging;
pub mod mapfile;
pub mod metrics;
pub mod notify;
pub mod peers;
pub mod protocol;
pub mod proxy;
pub mod render;
pub mod requester;
pub mod state;
pub mod store;
