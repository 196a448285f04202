//! The reply to `show info` on the admin socket: which process answered, and its version.

use super::ReplyError;

/// The fields of `show info` cutover uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// PID of the worker that answered (`Pid:`).
    pub pid: u32,
    /// Its version (`Version:`), e.g. `3.2.26-1`.
    pub version: String,
    /// Whether it is an old worker, finishing its connections after a reload (`Stopping:
    /// 1`; absent is taken as 0).
    pub stopping: bool,
}

/// Parses `show info` (`Name: value` lines).
pub fn parse_show_info(reply: &str) -> Result<ProcessInfo, ReplyError> {
    if reply.trim().is_empty() {
        return Err(ReplyError::Empty);
    }
    let field = |name: &str| {
        reply.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim())
        })
    };
    let pid = field("Pid").and_then(|p| p.parse().ok());
    match (pid, field("Version")) {
        (Some(pid), Some(version)) => Ok(ProcessInfo {
            pid,
            version: version.to_owned(),
            stopping: field("Stopping").is_some_and(|s| s != "0"),
        }),
        _ if field("Name").is_none() => Err(ReplyError::refused(reply)),
        _ => Err(ReplyError::unexpected("show info", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_and_version() {
        let reply = "Name: HAProxy\nVersion: 3.2.26-1\nRelease_date: 2026/10/14\nNbthread: 2\nPid: 16772\nUptime: 0d 0h00m01s\n\n";
        assert_eq!(
            parse_show_info(reply),
            Ok(ProcessInfo {
                pid: 16772,
                version: "3.2.26-1".into(),
                stopping: false,
            })
        );
        let old = parse_show_info("Name: HAProxy\nVersion: 2.6.12\nPid: 7\nStopping: 1\n\n");
        assert!(old.is_ok_and(|info| info.stopping && info.pid == 7));
        assert_eq!(parse_show_info(""), Err(ReplyError::Empty));
        assert!(matches!(
            parse_show_info("Permission denied\n\n"),
            Err(ReplyError::Refused { .. })
        ));
        assert!(matches!(
            parse_show_info("Name: HAProxy\nPid: x\n"),
            Err(ReplyError::Unexpected { .. })
        ));
    }
}
