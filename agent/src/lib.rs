//! cutover: owns the blue-green and canary routing decision for the services behind one
//! HAProxy or Nginx host, and carries it to the proxy with the least disruption.
//!
//! # Layers
//!
//! Every module of this crate (and `main.rs`, the binary) sits in one layer. The table lists
//! the layers from the highest to the lowest:
//!
//! | Layer       | Modules                                                  | What it holds |
//! |-------------|----------------------------------------------------------|---------------|
//! | `entry`     | `main`, `cli`, `agent`, `check`, `fuzzing`               | Entry points: the binary and its command line (with its man pages and completions), the daemon's wiring, `cutover check`, the fuzz targets' entry points. |
//! | `transport` | `control`, `peers`, `fleet`, `grpc`, `client`, `hooks`   | Bytes to typed requests and replies: the one accept loop of every listener, the peer listener and the cluster protocol between agents, the fleet store in etcd (watch, votes, leases, commits), the remote API (gRPC over mutual TLS), the client the command line and the peers use, the hooks that tell the outside world of events (webhooks, commands). |
//! | `engine`    | `engine`, `gates`                                        | The one path of a change (admit, plan, apply, confirm, persist) and its safety: the gate before a switch, pre-warm, the watch after it. |
//! | `proxy`     | `proxy`                                                  | Talking to a proxy: the `Proxy` trait, HAProxy, Nginx and the fake, and what a proxy reports (server health, backend counters). |
//! | `produce`   | `render`, `store`, `metrics`, `desired`                  | Producing files, persisting and counting: templates to candidate files, the state file and journal, the metrics registry, the desired-state file. |
//! | `data`      | `config`, `access`, `state`, `protocol`, `requester`, `mapfile` | Plain data and its validation: the agent's config (gates and cluster included), the access policy, the routing state, the wire protocol (every verb and reply, declared once), who asked, map-file syntax. |
//! | `leaves`    | `fsio`, `logging`, `notify`                              | Leaves: atomic file writes and file modes, log setup, systemd notifications. |
//!
//! The rule: a module uses (`crate::` paths) only modules of its own layer and of the layers
//! below it, never one above; within a layer the modules' uses form no cycle. A type two
//! layers share lives in the lower one. `agent/tests/layers.rs` reads this table and checks
//! every source file against it, and fails when a module is missing from it.
#![forbid(unsafe_code)]

pub mod access;
pub mod agent;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod desired;
pub mod engine;
#[cfg(feature = "etcd")]
pub mod fleet;
pub mod fsio;
#[doc(hidden)]
pub mod fuzzing;
pub mod gates;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod hooks;
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
