//! What the grader sees for itself: the system calls a program made
//! ([`trace`]), its reads and writes ([`watch`]), and files learner code
//! left, never followed. Regions are the IPC mechanism's to see
//! (`crate::ipc`).

pub mod trace;
pub mod watch;

use std::path::Path;
use std::time::{Duration, Instant};

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
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(value) = done() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}
