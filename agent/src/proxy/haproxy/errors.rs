//! Which kind of [`ProxyError`] a failure of the HAProxy clients is: the admin-socket and
//! master-CLI errors become the kinds callers branch on, and stay their source.

use std::path::{Path, PathBuf};

use super::admin::AdminError;
use super::master::MasterError;
use crate::proxy::{Cause, ProxyError};

/// A map path that cannot be named on the HAProxy CLI.
#[derive(Debug, thiserror::Error)]
#[error("map path {} is not UTF-8", path.display())]
pub struct MapPathNotUtf8 {
    /// The map's file path, as configured.
    pub path: PathBuf,
}

/// A reload the master confirmed whose new workers did not answer the admin socket in time
/// (on 3.1+ a new worker is listed before it serves).
#[derive(Debug, thiserror::Error)]
#[error(
    "new worker(s) {workers:?} listed by the master but not answering the admin socket \
     within {waited:?}; last seen: {last}"
)]
pub struct WorkerNotServing {
    /// The PIDs of the workers the reload started.
    pub workers: Vec<u32>,
    /// How long the admin socket was polled.
    pub waited: std::time::Duration,
    /// Who answered instead, or the last error.
    pub last: String,
}

pub(super) fn map_name(path: &Path) -> Result<&str, ProxyError> {
    path.to_str().ok_or_else(|| ProxyError::InvalidArgument {
        source: Box::new(MapPathNotUtf8 {
            path: path.to_owned(),
        }),
    })
}

/// The kind of a failed admin-socket command, with the error kept as its source.
impl From<AdminError> for ProxyError {
    fn from(err: AdminError) -> ProxyError {
        match err {
            AdminError::Refused { ref reply, .. } => ProxyError::Refused {
                reply: reply.clone(),
                source: Box::new(err),
            },
            AdminError::Connect { .. } => ProxyError::Unreachable {
                source: Box::new(err),
            },
            AdminError::Io { .. } | AdminError::WorkerStopping { .. } => {
                ProxyError::ConnectionLost {
                    source: Box::new(err),
                }
            }
            AdminError::Timeout { .. } => ProxyError::Timeout {
                source: Box::new(err),
            },
            AdminError::PayloadDropped { .. } => ProxyError::PayloadDropped {
                source: Box::new(err),
            },
            AdminError::InvalidArgument { .. } | AdminError::EntryTooLong { .. } => {
                ProxyError::InvalidArgument {
                    source: Box::new(err),
                }
            }
            AdminError::MapNotFound { .. } => ProxyError::MapNotLoaded {
                source: Box::new(err),
            },
            AdminError::UnexpectedReply { .. }
            | AdminError::ReplyTooLarge { .. }
            | AdminError::EntryCountMismatch { .. } => ProxyError::UnexpectedReply {
                source: Box::new(err),
            },
        }
    }
}

/// The kind of a failed master-CLI command other than a reload.
pub(super) fn master_error(err: MasterError) -> ProxyError {
    let kind: fn(Cause) -> ProxyError = match err {
        MasterError::Connect { .. } => |source| ProxyError::Unreachable { source },
        MasterError::Io { .. } => |source| ProxyError::ConnectionLost { source },
        MasterError::Timeout { .. } => |source| ProxyError::Timeout { source },
        _ => |source| ProxyError::UnexpectedReply { source },
    };
    kind(Box::new(err))
}

/// The kind of a failed reload: refused by the master, not confirmed in time, or not sent
/// (the master could not be reached before it, or stayed busy with another reload).
pub(super) fn reload_error(err: MasterError) -> ProxyError {
    match err {
        MasterError::ReloadFailed { .. } => ProxyError::ReloadRefused {
            source: Box::new(err),
        },
        MasterError::Connect { .. } | MasterError::Busy { .. } => ProxyError::ReloadNotSent {
            source: Box::new(err),
        },
        // Anything else may have happened after the reload was written.
        _ => ProxyError::ReloadUnconfirmed {
            source: Box::new(err),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::haproxy::admin::AdminClient;
    use crate::proxy::haproxy::master::MasterClient;

    /// A socket that is not there is "unreachable", for commands and for reloads, and the
    /// client's error (socket, command, I/O error) stays the source.
    #[tokio::test]
    async fn unreachable_sockets_are_their_own_kind_with_the_client_error_as_source() {
        use std::error::Error as _;
        use std::os::unix::ffi::OsStrExt;
        let admin = AdminClient::new("/nonexistent/admin.sock");
        let err = ProxyError::from(admin.backends().await.unwrap_err());
        assert!(matches!(err, ProxyError::Unreachable { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("runtime API: haproxy admin /nonexistent/admin.sock: `show backend`"),
            "{err}"
        );
        let source = err.source().expect("source");
        assert!(source.downcast_ref::<AdminError>().is_some(), "{source:?}");
        assert!(source.source().is_some(), "the I/O error is kept");

        let master = MasterClient::new("/nonexistent/master.sock");
        let err = reload_error(master.reload(Duration::from_millis(100)).await.unwrap_err());
        assert!(matches!(err, ProxyError::ReloadNotSent { .. }), "{err:?}");
        assert!(err.to_string().starts_with("reload failed: "), "{err}");
        let err = master_error(master.epoch().await.unwrap_err());
        assert!(matches!(err, ProxyError::Unreachable { .. }), "{err:?}");

        let err = ProxyError::from(admin.set_map("/m.map", "a b", "v").await.unwrap_err());
        assert!(matches!(err, ProxyError::InvalidArgument { .. }), "{err:?}");
        let err = map_name(Path::new(std::ffi::OsStr::from_bytes(b"/m\xff.map"))).unwrap_err();
        assert!(matches!(err, ProxyError::InvalidArgument { .. }), "{err:?}");
    }
}
