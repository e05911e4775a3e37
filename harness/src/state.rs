//! labgrade's own files on this machine, kept where learner code cannot
//! reach them: `/var/lib/labgrade` as root (mode 0700), the user's state
//! directory otherwise. It holds the secret key (`secret.rs`) and, as root,
//! the sealed copy of the grader that sandboxes run as their init.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The state directory, made (owner-only) if it does not exist yet.
pub fn dir() -> std::io::Result<PathBuf> {
    let dir = if rustix::process::geteuid().is_root() {
        PathBuf::from("/var/lib/labgrade")
    } else if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        PathBuf::from(state).join("labgrade")
    } else {
        let home = std::env::var_os("HOME")
            .ok_or_else(|| std::io::Error::other("HOME is not set: no state directory"))?;
        PathBuf::from(home).join(".local/state/labgrade")
    };
    owner_only_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` if need be and makes it its owner's alone.
pub fn owner_only_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Copies older than this are removed when a new one is made (a grader
/// still running the old binary has long finished with it).
const STALE: Duration = Duration::from_secs(3600);

/// A copy of the running labgrade that only its owner can read or run, for
/// sandboxes to run as their init and reference peers: learner code, under
/// another uid, can neither run it nor read it. Made once per binary (named
/// after its inode, size and time) and reused.
pub fn sealed_copy_of(exe: &Path) -> std::io::Result<PathBuf> {
    let meta = exe.metadata()?;
    let dir = dir()?.join("bin");
    owner_only_dir(&dir)?;
    let name = format!("labgrade-{}-{}-{}", meta.ino(), meta.len(), meta.mtime());
    let dest = dir.join(&name);
    if dest.metadata().is_ok_and(|m| m.len() == meta.len()) {
        return Ok(dest);
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::copy(exe, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
    std::fs::rename(&tmp, &dest)?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry.path() != dest
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(dest)
}
