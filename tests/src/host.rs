//! Host-level tools for fault and soak tests: a small tmpfs mounted over a directory (to
//! fill it or make it read-only), running a program as another uid/gid (`setpriv`), a
//! system group, and a process's open descriptors and resident memory from /proc.
//!
//! Each of these needs root or a tool that may be missing: the fallible constructors return
//! the reason as `Err(String)`, and tests pass it to [`crate::skip_or_fail`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A tmpfs mounted over a directory; unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
    filler: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes over `dir` and copies the regular files that were in
    /// `dir` onto it (same names, same content), so the paths that HAProxy and the agent
    /// use keep their content.
    pub fn mount_over(dir: &Path, size: u64) -> Result<Tmpfs, String> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push((
                    entry.file_name(),
                    fs::read(entry.path()).map_err(|e| e.to_string())?,
                ));
            }
        }
        run(
            "mount",
            &[
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                format!("size={size},mode=0755").as_ref(),
                "tmpfs".as_ref(),
                dir.as_os_str(),
            ],
        )?;
        let tmpfs = Tmpfs {
            dir: dir.to_owned(),
            filler: dir.join("filler"),
        };
        for (name, bytes) in files {
            fs::write(dir.join(&name), bytes).map_err(|e| format!("copy {name:?}: {e}"))?;
        }
        Ok(tmpfs)
    }

    /// Fills the file system to the last byte with a file `filler`; returns its size.
    pub fn fill(&self) -> u64 {
        let mut f = fs::File::create(&self.filler).expect("create filler");
        let block = vec![0u8; 4096];
        let mut written = 0u64;
        // Then byte by byte, so that not even a small write fits.
        for chunk in [&block[..], &block[..1]] {
            while f.write_all(chunk).is_ok() {
                written += chunk.len() as u64;
            }
        }
        let _ = f.sync_all();
        written
    }

    /// Removes the filler.
    pub fn free(&self) {
        let _ = fs::remove_file(&self.filler);
    }

    /// Remounts read-only (`true`) or read-write.
    pub fn set_read_only(&self, read_only: bool) {
        let opts = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        run(
            "mount",
            &["-o".as_ref(), opts.as_ref(), self.dir.as_os_str()],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if run("umount", &[self.dir.as_os_str()]).is_err() {
            let _ = run("umount", &["-l".as_ref(), self.dir.as_os_str()]);
        }
    }
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Who to run a program as.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// Whether programs can be run as other users here: root, with `setpriv` (util-linux).
pub fn can_switch_user() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not running as root".into());
    }
    Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("setpriv (util-linux) is missing: {e}"))
        .map(|_| ())
}

/// Runs `program args...` as `who` through `setpriv` (an argument vector, no shell).
pub fn run_as(who: &Identity, program: &Path, args: &[&str]) -> Output {
    let groups = if who.groups.is_empty() {
        "--clear-groups".to_owned()
    } else {
        format!(
            "--groups={}",
            who.groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    Command::new("setpriv")
        .arg(format!("--reuid={}", who.uid))
        .arg(format!("--regid={}", who.gid))
        .arg(groups)
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

/// The gid of system group `name`, created with `groupadd --system` when missing.
pub fn ensure_group(name: &str) -> Result<u32, String> {
    if let Ok(Some(g)) = nix::unistd::Group::from_name(name) {
        return Ok(g.gid.as_raw());
    }
    // Two tests may race to create it; whoever loses finds it afterwards.
    let created = run("groupadd", &["--system".as_ref(), name.as_ref()]);
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(created
            .err()
            .unwrap_or_else(|| format!("group {name} not found"))),
    }
}

/// The uid and primary gid of system user `name`, created with `useradd --system` (no
/// home, no login shell) and made a member of `groups` when missing.
pub fn ensure_user(name: &str, groups: &[&str]) -> Result<(u32, u32), String> {
    let lookup = || nix::unistd::User::from_name(name).ok().flatten();
    let created = if lookup().is_none() {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--system".as_ref(),
            "--no-create-home".as_ref(),
            "--shell".as_ref(),
            "/usr/sbin/nologin".as_ref(),
        ];
        let joined = groups.join(",");
        if !groups.is_empty() {
            args.push("--groups".as_ref());
            args.push(joined.as_ref());
        }
        args.push(name.as_ref());
        run("useradd", &args)
    } else if !groups.is_empty() {
        let joined = groups.join(",");
        run(
            "usermod",
            &[
                "--append".as_ref(),
                "--groups".as_ref(),
                joined.as_ref(),
                name.as_ref(),
            ],
        )
    } else {
        Ok(())
    };
    match lookup() {
        Some(u) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        None => Err(created
            .err()
            .unwrap_or_else(|| format!("user {name} not found"))),
    }
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// Resident memory of process `pid` (`VmRSS`), KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
