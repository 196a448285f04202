//! The fleet store: for sites of many proxy hosts, the desired routing lives in etcd
//! (`[cluster] store = "etcd"`), as confd, APISIX and Kubernetes controllers keep theirs.
//! etcd does the consensus; cutover only reads, watches and writes records with
//! transactions that compare revisions (docs/CLUSTER.md has the keys and the rules).
//!
//! - [`etcd`]: the key layout, the connection, typed and checked reads;
//! - [`lease`]: a lease renewed by a task of its own;
//! - [`propose`]: a change proposed, voted on by every live host ([`votes`]), committed
//!   with one transaction, and confirmed;
//! - [`follow`]: the agent's side: catch up, report itself under its lease, watch, vote,
//!   apply, check itself periodically, and ride out etcd's outages;
//! - [`host`]: what the engine task does for the fleet (a vote, an apply);
//! - [`query`]: `status --cluster` and `history --cluster` read from etcd.

pub mod etcd;
pub mod follow;
pub mod host;
pub mod lease;
pub mod propose;
pub mod query;
pub mod votes;
