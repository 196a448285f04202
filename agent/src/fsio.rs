//! How cutover writes a file: atomically and durably.
//!
//! Every file the agent writes (maps, proxy configs, state, the previous versions it keeps)
//! goes through [`write_atomic`], or through its steps one by one ([`stage`],
//! [`Staged::sync`], [`Staged::replace`] or [`keep_previous`] and [`Staged::publish`],
//! [`Replaced::keep`], [`sync_file`], [`sync_dir`])
//! where the engine runs them around a change: the new content is written to a temporary
//! file in the same directory, fsynced, renamed over the target and the directory is
//! fsynced, so a reader (or a crash) sees either the old content in full or the new content
//! in full. The temporary name starts with `.cutover-` and ends with `.tmp`, which no proxy
//! include glob written as `*.cfg`, `*.conf` or `*.map` can match. The replaced file is kept
//! next to the target as `<name>.prev`: the very file, by a hard link made before the
//! rename or by exchanging the two names (no copy, no fsync of content that is already on
//! disk), and the mode and owner of the replaced file carry over to the new one. [`set_mode_group`] gives a file the agent
//! creates by other means (a socket) its group and mode.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a file that did not exist before (owner read/write, group read).
pub const DEFAULT_MODE: u32 = 0o640;

/// What went wrong while writing a file.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The target path ends in no file name (`/`, `..`), so there is no directory entry to
    /// place a temporary file beside.
    #[error("{path} has no parent directory")]
    NoParent {
        /// The target path as given.
        path: PathBuf,
    },
    /// No temporary file could be created beside the target (permissions, full disk, or
    /// every candidate name taken).
    #[error("cannot create a temporary file in {dir}: {source}")]
    CreateTemp {
        /// The target's directory.
        dir: PathBuf,
        /// Why the last attempt failed.
        source: io::Error,
    },
    /// Writing the content, or setting the mode, of the temporary file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The temporary file.
        path: PathBuf,
        /// The write or chmod error.
        source: io::Error,
    },
    /// An fsync failed: the content or the rename may not survive a crash.
    #[error("cannot fsync {path}: {source}")]
    Sync {
        /// The temporary file, or the directory whose entries were being made durable.
        path: PathBuf,
        /// The fsync error.
        source: io::Error,
    },
    /// Renaming the temporary file over the target failed; the target is unchanged.
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The target.
        to: PathBuf,
        /// The rename error.
        source: io::Error,
    },
    /// A file could not be read by [`read_optional`], e.g. the current content before a
    /// write; a missing file is not this error.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The read error.
        source: io::Error,
    },
}

/// Options of one write.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Keep the replaced content as `<name>.prev`. Default: true.
    pub keep_previous: bool,
    /// Mode for a file that did not exist before. Default: [`DEFAULT_MODE`].
    pub new_mode: u32,
}

impl WriteOptions {
    /// The default options without keeping the replaced content: for files whose `.prev`
    /// already holds what matters, or that have no previous version worth keeping.
    pub fn no_previous() -> Self {
        Self {
            keep_previous: false,
            ..Self::default()
        }
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            keep_previous: true,
            new_mode: DEFAULT_MODE,
        }
    }
}

/// Path of the previous version kept beside `path`.
pub fn previous_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    path.with_file_name(name)
}

/// Reads a file, `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FsError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `content` to `path` atomically and durably (see the module doc).
///
/// Returns whether the file changed; writing identical content is a no-op (nothing is
/// renamed, the previous version is left alone).
pub fn write_atomic(path: &Path, content: &[u8], opts: WriteOptions) -> Result<bool, FsError> {
    let old = read_optional(path)?;
    if old.as_deref() == Some(content) {
        return Ok(false);
    }
    let meta = fs::metadata(path).ok();
    let new = stage_like(path, content, meta.as_ref(), opts.new_mode)?;
    new.sync()?;
    if opts.keep_previous {
        if let Some(old) = &old {
            keep_previous(path, old)?;
        }
    }
    new.publish()?;
    // One directory fsync makes both renames durable.
    sync_dir(dir_of(path))?;
    Ok(true)
}

/// Writes `content` to `path` through a temporary file and a rename, like
/// [`write_atomic`] but without any fsync and without keeping a previous version: for
/// staged copies that exist only while a checker reads them, where a crash loses nothing
/// (a leftover has a name no include glob matches, and the next start removes it).
pub fn write_staged(path: &Path, content: &[u8]) -> Result<(), FsError> {
    stage_like(path, content, None, DEFAULT_MODE)?.publish()
}

/// A new version of a file, written under a temporary name in its target's directory and
/// not yet in place: [`stage`] writes it (so a full disk or a read-only directory shows
/// here, before anything moves), [`Staged::sync`] makes its content durable and
/// [`Staged::publish`] renames it over the target. A `Staged` dropped before it was
/// published removes its temporary file.
///
/// [`write_atomic`] is these steps in a row; the engine splits them so that the fsync
/// runs while the proxy's runtime takes the change, which nothing reads at a reload or a
/// restart (see `engine::transition`).
#[derive(Debug)]
pub struct Staged {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    published: bool,
}

/// Writes `content` under a temporary name beside `path`, with the mode and owner of the
/// file it will replace (`new_mode` when there is none). Nothing is fsynced yet.
pub fn stage(path: &Path, content: &[u8], new_mode: u32) -> Result<Staged, FsError> {
    stage_like(path, content, fs::metadata(path).ok().as_ref(), new_mode)
}

/// [`stage`], with the mode and owner of `like`.
fn stage_like(
    path: &Path,
    content: &[u8],
    like: Option<&fs::Metadata>,
    new_mode: u32,
) -> Result<Staged, FsError> {
    let name = path.file_name().ok_or_else(|| FsError::NoParent {
        path: path.to_owned(),
    })?;
    let mode = like.map_or(new_mode, |m| m.permissions().mode() & 0o7777);
    let (tmp, file) = create_temp(dir_of(path), &name.to_string_lossy(), mode)?;
    let mut staged = Staged {
        file,
        tmp,
        path: path.to_owned(),
        published: false,
    };
    let write = |source| FsError::Write {
        path: staged.tmp.clone(),
        source,
    };
    staged.file.write_all(content).map_err(write)?;
    if let Some(m) = like {
        // Preserve ownership; only root may give a file away, so a failure here is not an
        // error for an unprivileged agent writing its own files.
        let _ = std::os::unix::fs::fchown(&staged.file, Some(m.uid()), Some(m.gid()));
        staged
            .file
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(write)?;
    }
    Ok(staged)
}

impl Staged {
    /// Fsyncs the staged content: after this, publishing it can never leave a torn file.
    pub fn sync(&self) -> Result<(), FsError> {
        self.file.sync_all().map_err(|source| FsError::Sync {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Renames the staged file over its target. Readers see the new content at once; the
    /// rename is durable after [`sync_dir`] of the target's directory.
    pub fn publish(mut self) -> Result<(), FsError> {
        fs::rename(&self.tmp, &self.path).map_err(|source| FsError::Rename {
            from: self.tmp.clone(),
            to: self.path.clone(),
            source,
        })?;
        self.published = true;
        Ok(())
    }
}

impl Staged {
    /// Puts the staged file in place and keeps the file it replaces (whose content is
    /// `old`): where the filesystem can, by exchanging the two names in one atomic step
    /// (`renameat2(RENAME_EXCHANGE)`), after which the temporary name holds the replaced
    /// file, returned for [`Replaced::keep`] to make it `<name>.prev` later (off the answer
    /// path). Otherwise (no regular file to replace, a filesystem that cannot exchange
    /// names) [`keep_previous`] then [`Staged::publish`], and `None`.
    pub fn replace(mut self, old: &[u8]) -> Result<Option<Replaced>, FsError> {
        let replaces_a_file = fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_file());
        if replaces_a_file
            && exchange(&self.tmp, &self.path).map_err(|source| self.rename_error(source))?
        {
            self.published = true;
            return Ok(Some(Replaced {
                tmp: self.tmp.clone(),
                prev: previous_path(&self.path),
            }));
        }
        keep_previous(&self.path, old)?;
        self.publish().map(|()| None)
    }

    fn rename_error(&self, source: io::Error) -> FsError {
        FsError::Rename {
            from: self.tmp.clone(),
            to: self.path.clone(),
            source,
        }
    }
}

/// A file [`Staged::replace`] replaced, still under the staged file's temporary name (a
/// name no include glob matches; a leftover of a crash is removed by the next start).
#[derive(Debug)]
pub struct Replaced {
    tmp: PathBuf,
    prev: PathBuf,
}

impl Replaced {
    /// Renames the replaced file over `<name>.prev`; durable after [`sync_dir`].
    pub fn keep(self) -> Result<(), FsError> {
        fs::rename(&self.tmp, &self.prev).map_err(|source| FsError::Rename {
            from: self.tmp.clone(),
            to: self.prev.clone(),
            source,
        })
    }
}

/// Exchanges the names `a` and `b` atomically; `false` where the filesystem (or the
/// platform) cannot, or `b` went away meanwhile.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(true),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_a: &Path, _b: &Path) -> io::Result<bool> {
    Ok(false)
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Keeps the file now at `path`, whose content is `old`, as its previous version
/// (`<name>.prev`), before something is renamed over it: a hard link to the file under a
/// temporary name, renamed over `<name>.prev`, so the previous version is the very inode
/// the proxy read until now, and nothing is copied or fsynced. Where a link cannot be made
/// (a filesystem without hard links), `old` is written as a copy (fsynced). Nothing happens
/// when `path` does not exist. The rename is durable after [`sync_dir`].
pub fn keep_previous(path: &Path, old: &[u8]) -> Result<(), FsError> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.is_file() {
        // A symlink (or anything but a plain file) is kept by its content.
        return write_previous(path, old, fs::metadata(path).ok().as_ref(), DEFAULT_MODE);
    }
    let prev = previous_path(path);
    if fs::symlink_metadata(&prev).is_ok_and(|p| p.ino() == meta.ino() && p.dev() == meta.dev()) {
        // Already kept (a change cut short after this step): a rename between two links of
        // one file would do nothing and leave the temporary link behind.
        return Ok(());
    }
    let name = prev.file_name().unwrap_or_default().to_string_lossy();
    let dir = dir_of(path);
    for attempt in 0..16u32 {
        let tmp = dir.join(format!(
            ".cutover-{name}.{}.{attempt}.tmp",
            std::process::id()
        ));
        match fs::hard_link(path, &tmp) {
            Ok(()) => {
                return fs::rename(&tmp, &prev).map_err(|source| {
                    let _ = fs::remove_file(&tmp);
                    FsError::Rename {
                        from: tmp.clone(),
                        to: prev.clone(),
                        source,
                    }
                })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&tmp);
            }
            Err(_) => break,
        }
    }
    write_previous(path, old, Some(&meta), DEFAULT_MODE)
}

/// Fsyncs the file at `path` (a file renamed into place before its content was made
/// durable; see `engine::transition`).
pub fn sync_file(path: &Path) -> Result<(), FsError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| FsError::Sync {
            path: path.to_owned(),
            source,
        })
}

/// Writes `old` as the previous version of `path` (temp file, fsync, rename; no directory
/// fsync), with the mode and owner of `like`.
fn write_previous(
    path: &Path,
    old: &[u8],
    like: Option<&fs::Metadata>,
    new_mode: u32,
) -> Result<(), FsError> {
    let prev = stage_like(&previous_path(path), old, like, new_mode)?;
    prev.sync()?;
    prev.publish()
}

/// The directory `path` is in (`.` for a bare name).
pub fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn create_temp(dir: &Path, name: &str, mode: u32) -> Result<(PathBuf, File), FsError> {
    for attempt in 0..16u32 {
        let tmp = dir.join(format!(
            ".cutover-{name}.{}.{attempt}.tmp",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A leftover of a crashed write: it is ours by name, remove it and retry.
                let _ = fs::remove_file(&tmp);
            }
            Err(source) => {
                return Err(FsError::CreateTemp {
                    dir: dir.to_owned(),
                    source,
                })
            }
        }
    }
    Err(FsError::CreateTemp {
        dir: dir.to_owned(),
        source: io::Error::other("no free temporary name"),
    })
}

/// Removes what interrupted writes of `path` left in its directory: temporary files of
/// [`write_atomic`] (`.cutover-<name>.*.tmp`, also those of `<name>.prev`) and staged
/// copies (`.<name>.cutover-staged`). Only names this module and the engine create are
/// touched. Returns how many files were removed; a directory that cannot be read counts
/// as none (the write that needs it will report the problem).
pub fn remove_leftovers(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let name = name.to_string_lossy();
    let temp_prefix = format!(".cutover-{name}.");
    let staged = format!(".{name}.cutover-staged");
    let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let ours = (file.starts_with(&temp_prefix) && file.ends_with(".tmp")) || file == staged;
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if ours && regular && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Appends `line` (which ends in a newline) to the file at `path`, created with `mode`,
/// and fdatasyncs it when `sync`. A write that fails part-way is cut off again, so the next
/// line starts on a line of its own.
pub fn append_line(path: &Path, line: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)?;
    let before = f.metadata()?.len();
    let written = f
        .write_all(line)
        .and_then(|()| if sync { f.sync_data() } else { Ok(()) });
    if written.is_err() {
        let _ = f.set_len(before);
    }
    written
}

/// Fsyncs a directory so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| FsError::Sync {
            path: dir.to_owned(),
            source,
        })
}

/// Gives the file at `path` (a socket the agent binds) its group, if any, and then its
/// mode: the control socket (also when SIGHUP brings a new `socket_mode` or
/// `socket_group`) and the Nginx access-log socket.
pub fn set_mode_group(path: &Path, mode: u32, group: Option<&str>) -> io::Result<()> {
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other(format!("no group named {group:?}")))?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(io::Error::other)?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_new_file_and_keeps_previous() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("routes.map");
        assert!(write_atomic(&p, b"a x\n", WriteOptions::default()).unwrap());
        assert!(!previous_path(&p).exists());
        assert!(write_atomic(&p, b"b y\n", WriteOptions::default()).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"b y\n");
        assert_eq!(fs::read(previous_path(&p)).unwrap(), b"a x\n");
        // Same content: nothing moves.
        assert!(!write_atomic(&p, b"b y\n", WriteOptions::default()).unwrap());
        assert_eq!(fs::read(previous_path(&p)).unwrap(), b"a x\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn the_previous_version_is_the_replaced_file_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("services.map");
        fs::write(&p, b"web web_blue\n").unwrap();
        let before = fs::metadata(&p).unwrap().ino();
        let staged = stage(&p, b"web web_green\n", DEFAULT_MODE).unwrap();
        keep_previous(&p, b"web web_blue\n").unwrap();
        staged.publish().unwrap();
        assert_eq!(fs::metadata(previous_path(&p)).unwrap().ino(), before);
        assert_eq!(fs::read(previous_path(&p)).unwrap(), b"web web_blue\n");
        assert_eq!(fs::read(&p).unwrap(), b"web web_green\n");
        sync_file(&p).unwrap();
        // Kept already (a change cut short after keeping it): nothing is left behind.
        keep_previous(&p, b"web web_green\n").unwrap();
        let staged = stage(&p, b"web web_red\n", DEFAULT_MODE).unwrap();
        keep_previous(&p, b"web web_green\n").unwrap();
        keep_previous(&p, b"web web_green\n").unwrap();
        staged.publish().unwrap();
        assert_eq!(fs::read(previous_path(&p)).unwrap(), b"web web_green\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        // Nothing to keep for a file that does not exist yet.
        keep_previous(&dir.path().join("new.map"), b"").unwrap();
        assert!(!previous_path(&dir.path().join("new.map")).exists());
    }

    #[test]
    fn preserves_mode_of_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("haproxy.cfg");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o604)).unwrap();
        write_atomic(&p, b"new", WriteOptions::default()).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o604
        );
    }

    #[test]
    fn new_file_gets_default_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"{}", WriteOptions::default()).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            DEFAULT_MODE
        );
    }

    #[test]
    fn replace_exchanges_the_names_and_keeps_the_very_file_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("services.map");
        fs::write(&path, "old\n").unwrap();
        let old_inode = fs::metadata(&path).unwrap().ino();
        let staged = stage(&path, b"new\n", DEFAULT_MODE).unwrap();
        let replaced = staged
            .replace(b"old\n")
            .unwrap()
            .expect("ext4 and tmpfs exchange");
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        // Until it is kept, the replaced file waits under a name no glob matches.
        assert!(!previous_path(&path).exists());
        replaced.keep().unwrap();
        let prev = previous_path(&path);
        assert_eq!(fs::read_to_string(&prev).unwrap(), "old\n");
        assert_eq!(fs::metadata(&prev).unwrap().ino(), old_inode);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // Nothing to replace: placed, nothing kept.
        let fresh = dir.path().join("idle.map");
        let staged = stage(&fresh, b"x\n", DEFAULT_MODE).unwrap();
        assert!(staged.replace(b"").unwrap().is_none());
        assert_eq!(fs::read_to_string(&fresh).unwrap(), "x\n");
    }

    #[test]
    fn leftovers_of_interrupted_writes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("services.map");
        for leftover in [
            ".cutover-services.map.123.0.tmp",
            ".cutover-services.map.prev.9.1.tmp",
            ".services.map.cutover-staged",
        ] {
            fs::write(dir.path().join(leftover), "x").unwrap();
        }
        for other in ["services.map", ".cutover-routes.map.1.0.tmp", "x.tmp"] {
            fs::write(dir.path().join(other), "x").unwrap();
        }
        assert_eq!(remove_leftovers(&p), 3);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".cutover-routes.map.1.0.tmp", "services.map", "x.tmp"]
        );
    }

    #[test]
    fn failure_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x.map");
        assert!(write_atomic(&p, b"x", WriteOptions::default()).is_err());
    }
}
