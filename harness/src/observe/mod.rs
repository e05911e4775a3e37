//! What the grader sees for itself: the system calls a program made
//! ([`trace`]), its reads and writes ([`watch`]), and files learner code
//! left, never followed. Regions are the IPC mechanism's to see
//! (`crate::ipc`).

pub mod trace;
pub mod watch;

use std::path::Path;
use std::time::{Duration, Instant};

/// Removes what learner code left at `path`: a directory with all in it,
/// or a file, FIFO or link (the link itself, never what it points at).
/// Nothing there is fine.
pub fn remove_left(path: &Path) -> std::io::Result<()> {
    let result = match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes each entry of `dir` whose own metadata (links not followed)
/// `theirs` accepts, as [`remove_left`] does; what cannot be removed stays.
pub fn remove_entries(dir: &Path, theirs: impl Fn(&std::fs::Metadata) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.symlink_metadata().is_ok_and(|meta| theirs(&meta)) {
            let _ = remove_left(&path);
        }
    }
}

/// What a file that is not a regular one is, in words ("a symbolic link
/// to /etc/shadow", "a FIFO"), from its metadata (never followed).
pub fn kind_of(path: &Path, meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| crate::text::name(t.as_os_str()))
            .unwrap_or_default();
        format!("a symbolic link (to {target})")
    } else if kind.is_dir() {
        "a directory".into()
    } else if kind.is_fifo() {
        "a FIFO (named pipe)".into()
    } else if kind.is_socket() {
        "a socket".into()
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device".into()
    } else {
        "not a regular file".into()
    }
}

/// Polls for `done` until `deadline`, starting fast and backing off to a few
/// milliseconds: readiness is an event the grader observes, never a sleep.
pub fn poll_until<T>(deadline: Instant, mut done: impl FnMut() -> Option<T>) -> Option<T> {
    let began = Instant::now();
    loop {
        if let Some(value) = done() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // An eighth of the time waited so far, from 200 µs up to 5 ms: an
        // event is seen at most an eighth late (a writer ready after 6 ms is
        // not seen at 11), and a long wait costs a look every 5 ms.
        let pause = ((now - began) / 8).clamp(Duration::from_micros(200), Duration::from_millis(5));
        std::thread::sleep(pause.min(deadline - now));
    }
}
