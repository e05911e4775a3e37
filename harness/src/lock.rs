//! A cross-process lock per fixed region name. Two gradings on one machine
//! that both use /MySharedMemory in the system's shm directory must take
//! turns, or one would see (or remove) the other's region. A private shm
//! directory per run makes this unnecessary; the lock is the fallback.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use rustix::fs::{FlockOperation, flock};

/// Held locks; released when dropped (closing the files releases them).
pub struct NameLocks {
    _files: Vec<File>,
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

/// Locks every name (each once, in sorted order so two graders never wait
/// for each other in a circle), blocking until all are held.
pub fn lock_names<'a>(names: impl IntoIterator<Item = &'a str>) -> io::Result<NameLocks> {
    let mut paths: Vec<PathBuf> = names.into_iter().map(lock_path).collect();
    paths.sort();
    paths.dedup();
    let mut files = Vec::new();
    for path in paths {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
            .or_else(|_| File::open(&path))?;
        flock(&file, FlockOperation::LockExclusive)?;
        files.push(file);
    }
    Ok(NameLocks { _files: files })
}
