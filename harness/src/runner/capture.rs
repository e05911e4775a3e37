//! A child's stdout or stderr, read on a thread of its own into a bounded
//! buffer: the first `limit` bytes are kept, the rest only counted, so a
//! flood neither blocks the child nor grows the grader's memory. Waiters are
//! woken whenever more arrives.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

#[derive(Default)]
struct State {
    head: Vec<u8>,
    total: u64,
    eof: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Clone)]
pub struct Capture {
    shared: Arc<Shared>,
}

/// What a stream held at some moment.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// The first bytes, at most the capture's limit.
    pub head: Vec<u8>,
    /// Every byte the child wrote, kept or not.
    pub total: u64,
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }
}

impl Capture {
    /// Starts reading `source` until end of file, keeping `limit` bytes.
    pub fn spawn(mut source: impl Read + Send + 'static, limit: usize) -> Capture {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let capture = Capture {
            shared: shared.clone(),
        };
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) => 0,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                let mut state = lock(&shared.state);
                if n == 0 {
                    state.eof = true;
                } else {
                    let room = limit.saturating_sub(state.head.len()).min(n);
                    state.head.extend_from_slice(&buf[..room]);
                    state.total += n as u64;
                }
                let done = state.eof;
                drop(state);
                shared.changed.notify_all();
                if done {
                    break;
                }
            }
        });
        capture
    }

    pub fn snapshot(&self) -> Captured {
        let state = lock(&self.shared.state);
        Captured {
            head: state.head.clone(),
            total: state.total,
        }
    }

    /// Waits until `ready` holds for what was kept so far, or end of file,
    /// or `deadline`. Returns whether `ready` held.
    pub fn wait_for(&self, deadline: Instant, ready: impl Fn(&[u8]) -> bool) -> bool {
        let mut held = false;
        self.wait(deadline, |state| {
            held = ready(&state.head);
            held || state.eof
        });
        held
    }

    /// Waits for end of file until `deadline`; returns whether it came.
    pub fn wait_eof(&self, deadline: Instant) -> bool {
        self.wait(deadline, |state| state.eof)
    }

    /// Waits until `done` holds for the state (checked on every change) or
    /// `deadline`; returns whether it held.
    fn wait(&self, deadline: Instant, mut done: impl FnMut(&State) -> bool) -> bool {
        let mut state = lock(&self.shared.state);
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_the_head_and_counts_the_rest() {
        let data = vec![b'x'; 100_000];
        let cap = Capture::spawn(std::io::Cursor::new(data), 1000);
        assert!(cap.wait_eof(Instant::now() + Duration::from_secs(10)));
        let snap = cap.snapshot();
        assert_eq!(snap.head.len(), 1000);
        assert_eq!(snap.total, 100_000);
    }

    #[test]
    fn waiters_see_a_pattern_as_it_arrives() {
        let cap = Capture::spawn(std::io::Cursor::new(b"one\nready\n".to_vec()), 1000);
        let deadline = Instant::now() + Duration::from_secs(10);
        assert!(cap.wait_for(deadline, |b| b.windows(5).any(|w| w == b"ready")));
        assert!(!cap.wait_for(deadline, |b| b.ends_with(b"never")));
    }
}
