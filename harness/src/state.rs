//! labgrade's own files on this machine, kept where learner code cannot
//! reach them: `/var/lib/labgrade` as root (mode 0700), the user's state
//! directory otherwise. It holds the secret key (`secret.rs`) and, as root,
//! the sealed copy of the grader that sandboxes run as their init.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A new run directory in `parent` (TMPDIR, or the machine's region place),
/// named after this process (`labgrade-run.PID-START.XXXXXX`, START its
/// start time, so a reused pid is told apart), after removing those of
/// graders that are gone: a grader killed outright (SIGKILL, a batch killed
/// with its gradings) cannot clean up after itself, the next one does.
pub fn run_dir(parent: &Path) -> std::io::Result<tempfile::TempDir> {
    sweep_runs(parent);
    let me = std::process::id();
    let start = process_state(me).map_or(0, |(_, start)| start);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{RUN_PREFIX}{me}-{start}."))
        .tempdir_in(parent)?;
    RUNS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir.path().to_path_buf());
    Ok(dir)
}

/// This process's run directories, for [`abandon_runs`].
static RUNS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes this process's run directories when it must exit without
/// unwinding (the watchdog ending a stuck grading): what is mounted in
/// them is detached first (learner processes are dead by then).
pub fn abandon_runs() {
    let runs = std::mem::take(&mut *RUNS.lock().unwrap_or_else(|e| e.into_inner()));
    for dir in runs.iter().rev() {
        if !dir.exists() {
            continue;
        }
        for mount in [dir.join("shm"), dir.clone()] {
            let _ = rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

const RUN_PREFIX: &str = "labgrade-run.";

/// Removes the run directories in `parent`, this user's, whose grader has
/// ended (a zombie has ended too: its parent may be gone, and nobody reap
/// it for a while).
pub fn sweep_runs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let uid = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = name
            .to_str()
            .and_then(|n| n.strip_prefix(RUN_PREFIX))
            .and_then(|rest| rest.split('.').next())
            .and_then(|id| id.split_once('-'))
            .and_then(|(pid, start)| Some((pid.parse::<u32>().ok()?, start.parse::<u64>().ok()?)))
        else {
            continue;
        };
        let alive =
            process_state(pid).is_some_and(|(state, started)| state != 'Z' && started == start);
        let ours = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !alive && ours {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A process's state letter and start time (clock ticks after boot), from
/// /proc/PID/stat; None if there is no such process.
fn process_state(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold anything: fields are
    // counted after its last ')'. State is field 3, start time field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_directories_of_ended_graders_are_swept() {
        let parent = tempfile::tempdir().unwrap();
        let mine = run_dir(parent.path()).unwrap();
        let (_, start) = process_state(std::process::id()).unwrap();
        // A pid that is not running, and this pid with another start time
        // (a pid reused since): both ended.
        let gone = parent.path().join(format!("{RUN_PREFIX}4194304-1.abc"));
        let reused = parent.path().join(format!(
            "{RUN_PREFIX}{}-{}.abc",
            std::process::id(),
            start + 1
        ));
        let other = parent.path().join("not-a-run");
        for dir in [&gone, &reused, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        sweep_runs(parent.path());
        assert!(mine.path().is_dir(), "a live grader's directory stays");
        assert!(!gone.exists() && !reused.exists());
        assert!(other.is_dir(), "what is not a run directory stays");
    }
}
