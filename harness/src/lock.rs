//! A cross-process lock per fixed region name. Two gradings on one machine
//! that both use /MySharedMemory in the system's shm directory must take
//! turns, or one would see (or remove) the other's region. A private shm
//! directory per run makes this unnecessary; the lock is the fallback.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use rustix::fs::{FlockOperation, flock};

/// Held locks; released when dropped. The holder removes each lock file
/// before closing it (a grading's fresh names would otherwise leave one in
/// /tmp each); a grading that locked a file removed meanwhile sees that
/// its path is another file now, and locks again.
pub struct NameLocks {
    files: Vec<(PathBuf, File)>,
}

impl Drop for NameLocks {
    fn drop(&mut self) {
        for (path, file) in &self.files {
            if same_file(path, file) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Whether `path` still names the file `file` is open on.
fn same_file(path: &std::path::Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (path.symlink_metadata(), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The lock file for a region name: in /tmp (not $TMPDIR, which differs
/// between users and sessions, so all gradings agree on it).
pub fn lock_path(name: &str) -> PathBuf {
    let safe: String = name
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from("/tmp").join(format!("labgrade-shm-{safe}.lock"))
}

/// How long a grading waits for another's pair to let a name go (a pair
/// takes seconds): past it, the lock is the grader's fault to report.
const WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Locks every name (each once, in sorted order so two graders never wait
/// for each other in a circle), waiting until all are held.
pub fn lock_names<'a>(names: impl IntoIterator<Item = &'a str>) -> io::Result<NameLocks> {
    let mut paths: Vec<PathBuf> = names.into_iter().map(lock_path).collect();
    paths.sort();
    paths.dedup();
    let deadline = std::time::Instant::now() + WAIT;
    let mut files = Vec::new();
    for path in paths {
        let file = loop {
            let file = open_lock(&path)?;
            while let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
                if e != rustix::io::Errno::WOULDBLOCK || std::time::Instant::now() >= deadline {
                    return Err(io::Error::other(format!(
                        "{} stayed locked by another grading",
                        path.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            // Locked; but the holder before may have removed the file as
            // it let go: then lock the one at the path now.
            if same_file(&path, &file) {
                break file;
            }
        };
        files.push((path, file));
    }
    Ok(NameLocks { files })
}

/// The lock file, as a regular file: in a /tmp that learner code may share
/// (the uid level) something else may have been put in its place, a link
/// to follow or a FIFO to block on; that is removed, never followed.
fn open_lock(path: &std::path::Path) -> io::Result<File> {
    let open = || {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    match open() {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(f),
        _ => {
            std::fs::remove_file(path)?;
            let f = open()?;
            if f.metadata()?.is_file() {
                Ok(f)
            } else {
                Err(io::Error::other(format!(
                    "{} is not a file",
                    path.display()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_leaves_no_file_and_a_waiter_gets_the_name_next() {
        let name = format!("/labgrade-lock-test-{}", std::process::id());
        let path = lock_path(&name);
        let first = lock_names([name.as_str()]).unwrap();
        assert!(path.exists());
        let waiter = {
            let name = name.clone();
            std::thread::spawn(move || {
                let held = lock_names([name.as_str()]).unwrap();
                // The waiter holds the file now at the path, not a removed one.
                assert!(same_file(&lock_path(&name), &held.files[0].1));
            })
        };
        // Whether the waiter is already waiting or not, it must end with
        // the file at the path locked.
        drop(first);
        waiter.join().unwrap();
        assert!(!path.exists(), "the last holder removed its lock file");
    }
}
