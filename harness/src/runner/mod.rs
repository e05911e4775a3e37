//! Every learner process, builds included, starts here: in a process group
//! of its own, with limits, a deadline, a clean environment, and its output
//! read on threads into bounded buffers. Checks ask for a run and get back a
//! record of what happened; they never touch processes themselves.
//!
//! Processes are started with duct; two things it cannot do are done beside
//! it (see the README's design notes): the exit is awaited with `waitid` and
//! WNOWAIT on a thread of our own, to read the peak memory before duct reaps
//! the process, and whole groups are signalled with `killpg`.

mod capture;
#[cfg(unix)]
mod unix;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use capture::{Capture, Captured};
#[cfg(unix)]
pub use unix::{
    Limits, SIGBUS, SIGINT, SIGKILL, SIGSEGV, SIGTERM, SIGXCPU, SIGXFSZ, peak_rss_kib, signal_name,
};

/// How much of each stream is kept; the rest is only counted.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// How much of each stream a report shows.
pub const EXCERPT_LIMIT: usize = 2 * 1024;
/// Between SIGTERM and SIGKILL when a process has to be stopped.
pub const GRACE: Duration = Duration::from_millis(200);

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// What this process is, for the report: "shm_writer", "reference shm_reader", "build"...
    pub role: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The command as the learner should read it in a report.
    pub shown: Vec<String>,
    pub dir: PathBuf,
    /// The whole environment of the process.
    pub env: Vec<(OsString, OsString)>,
    /// Hold a pipe to its stdin (true), or give it /dev/null.
    pub held_stdin: bool,
    /// Wall-clock limit for the whole run.
    pub timeout: Duration,
    pub limits: Limits,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signalled(i32),
    /// Still running at its deadline; stopped by the grader.
    TimedOut,
    /// Stopped by the grader once it had what it needed (not a fault).
    Stopped,
}

impl Ending {
    pub fn success(self) -> bool {
        self == Ending::Exited(0)
    }

    /// "exit 0", "killed by SIGBUS", "timed out".
    pub fn describe(self) -> String {
        match self {
            Ending::Exited(code) => format!("exit {code}"),
            Ending::Signalled(sig) => format!("killed by {}", signal_name(sig)),
            Ending::TimedOut => "still running at its deadline (timed out)".to_string(),
            Ending::Stopped => "stopped by the grader".to_string(),
        }
    }
}

/// What a report shows of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub role: String,
    pub argv: Vec<String>,
    pub exit: ExitRecord,
    pub stdout: StreamRecord,
    pub stderr: StreamRecord,
    pub wall_ms: u64,
    pub peak_rss_kib: Option<u64>,
    /// Processes of its group still alive after it ended (then killed).
    pub left_behind: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub timeout: bool,
    pub stopped_by_grader: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamRecord {
    pub excerpt: String,
    pub total_bytes: u64,
}

impl StreamRecord {
    fn from(captured: &Captured) -> StreamRecord {
        StreamRecord {
            excerpt: excerpt(&captured.head, EXCERPT_LIMIT),
            total_bytes: captured.total,
        }
    }
}

/// The first `limit` bytes as text, marked when cut.
pub fn excerpt(bytes: &[u8], limit: usize) -> String {
    let cut = bytes.len() > limit;
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned();
    if cut {
        text.push_str("[...]");
    }
    text
}

/// A finished run: the record for the report, and everything kept of its
/// output for the checks.
#[derive(Debug, Clone)]
pub struct Finished {
    pub ending: Ending,
    pub stdout: Captured,
    pub stderr: Captured,
    pub record: RunRecord,
}

/// A process that is running (or has just ended).
pub struct Running {
    spec: Spec,
    pid: u32,
    stdin: Option<os_pipe::PipeWriter>,
    stdout: Capture,
    stderr: Capture,
    exits: Receiver<unix::RawExit>,
    exit: Option<unix::RawExit>,
    started: Instant,
    ended: Option<Instant>,
    _handle: Arc<duct::Handle>,
}

/// Starts `spec`. An error here is the grader's (or the system's), not the
/// learner's: the program could not even be started.
pub fn start(spec: Spec) -> std::io::Result<Running> {
    let (out_read, out_write) = os_pipe::pipe()?;
    let (err_read, err_write) = os_pipe::pipe()?;
    // As an OsString, a bare name like `cc` is looked up in PATH (duct
    // would take a Path as relative to the current directory).
    let mut expr = duct::cmd(spec.program.as_os_str().to_owned(), &spec.args)
        .dir(&spec.dir)
        .full_env(spec.env.iter().cloned())
        .stdout_file(out_write)
        .stderr_file(err_write)
        .unchecked();
    let mut stdin = None;
    if spec.held_stdin {
        let (in_read, in_write) = os_pipe::pipe()?;
        expr = expr.stdin_file(in_read);
        stdin = Some(in_write);
    } else {
        expr = expr.stdin_null();
    }
    let limits = spec.limits;
    let expr = expr.before_spawn(move |cmd| {
        unix::prepare(cmd, limits);
        Ok(())
    });
    let started = Instant::now();
    let handle = Arc::new(expr.start()?);
    // The expression held our copies of the pipes' write ends; with it gone,
    // end of file comes when the child's side closes.
    drop(expr);
    let pid = handle.pids()[0];

    let (tx, exits) = channel();
    let reaper = handle.clone();
    thread::spawn(move || {
        if let Ok(exit) = unix::wait_exit(pid) {
            let _ = tx.send(exit);
        }
        let _ = reaper.wait(); // now reap it
    });

    Ok(Running {
        pid,
        stdin,
        stdout: Capture::spawn(out_read, OUTPUT_LIMIT),
        stderr: Capture::spawn(err_read, OUTPUT_LIMIT),
        exits,
        exit: None,
        started,
        ended: None,
        _handle: handle,
        spec,
    })
}

/// Starts `spec` and waits for it to end (or its deadline).
pub fn run(spec: Spec) -> std::io::Result<Finished> {
    Ok(start(spec)?.finish())
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn stdout(&self) -> &Capture {
        &self.stdout
    }

    /// Whether it has exited, without waiting.
    pub fn has_exited(&mut self) -> bool {
        self.wait_exit(Duration::ZERO)
    }

    /// Waits up to `timeout` for it to exit; returns whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        if self.exit.is_some() {
            return true;
        }
        let got = if timeout.is_zero() {
            self.exits.try_recv().ok()
        } else {
            self.exits.recv_timeout(timeout).ok()
        };
        if let Some(exit) = got {
            self.exit = Some(exit);
            self.ended = Some(Instant::now());
        }
        self.exit.is_some()
    }

    /// Time left before its deadline.
    pub fn remaining(&self) -> Duration {
        self.spec.timeout.saturating_sub(self.started.elapsed())
    }

    /// Writes a line to its stdin. An error means nobody reads it any more:
    /// the process is gone, or closed its stdin.
    pub fn send_line(&mut self) -> std::io::Result<()> {
        match self.stdin.as_mut() {
            Some(pipe) => pipe.write_all(b"\n"),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Closes its stdin: end of file for the process.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal to its process group: the program and anything it
    /// started. (Under strace, which blocks fatal signals while it traces
    /// into a file, this reaches the program itself.)
    pub fn signal(&self, signal: i32) {
        if self.exit.is_none() {
            unix::signal_group(self.pid, signal);
        }
    }

    /// Whether it sits blocked reading its stdin (waiting for release).
    pub fn waiting_for_stdin(&self) -> bool {
        self.exit.is_none() && unix::waiting_for_stdin(self.pid)
    }

    /// Peak resident memory so far, while it is alive.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid)
    }

    /// Waits for it to end until its deadline, stopping it there.
    pub fn finish(mut self) -> Finished {
        let in_time = self.wait_exit(self.remaining());
        self.end(if in_time {
            None
        } else {
            Some(Ending::TimedOut)
        })
    }

    /// Ends it now as timed out if it is still running: it missed a
    /// deadline shorter than its own (such as exiting once released).
    pub fn time_out(mut self) -> Finished {
        let running = !self.has_exited();
        self.end(running.then_some(Ending::TimedOut))
    }

    /// Stops it now if it is still running (the grader is done with it).
    pub fn stop(mut self) -> Finished {
        let running = !self.has_exited();
        self.end(running.then_some(Ending::Stopped))
    }

    /// Ends the run: if `forced`, the whole group gets SIGTERM, a grace
    /// period, then SIGKILL; either way whatever is left of the group is
    /// counted and killed, and the output collected.
    fn end(mut self, forced: Option<Ending>) -> Finished {
        if forced.is_some() {
            unix::signal_group(self.pid, SIGTERM);
            if !self.wait_exit(GRACE) {
                unix::signal_group(self.pid, SIGKILL);
                self.wait_exit(Duration::from_secs(5));
            }
        }
        self.stdin = None;
        let left = unix::group_members(self.pid, self.pid);
        if !left.is_empty() {
            unix::signal_group(self.pid, SIGKILL);
        }
        // Output written just before the exit is still in the pipes.
        let deadline = Instant::now() + GRACE;
        self.stdout.wait_eof(deadline);
        self.stderr.wait_eof(deadline);

        let raw = self.exit;
        let ending = match (forced, raw) {
            (Some(f), _) => f,
            (None, Some(e)) => match (e.code, e.signal) {
                (Some(code), _) => Ending::Exited(code),
                (None, Some(sig)) => Ending::Signalled(sig),
                (None, None) => Ending::Exited(-1),
            },
            (None, None) => Ending::TimedOut,
        };
        let ended = self.ended.unwrap_or_else(Instant::now);
        let stdout = self.stdout.snapshot();
        let stderr = self.stderr.snapshot();
        let record = RunRecord {
            role: self.spec.role.clone(),
            argv: self.spec.shown.clone(),
            exit: ExitRecord {
                code: raw.and_then(|e| e.code).filter(|_| forced.is_none()),
                signal: raw
                    .and_then(|e| e.signal)
                    .filter(|_| forced.is_none())
                    .map(signal_name),
                timeout: forced == Some(Ending::TimedOut),
                stopped_by_grader: forced == Some(Ending::Stopped),
            },
            stdout: StreamRecord::from(&stdout),
            stderr: StreamRecord::from(&stderr),
            wall_ms: ended.duration_since(self.started).as_millis() as u64,
            peak_rss_kib: raw.and_then(|e| e.peak_rss_kib),
            left_behind: left.len() as u32,
        };
        Finished {
            ending,
            stdout,
            stderr,
            record,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A run dropped without finish() (a panic, an early return) must not
        // leave its processes behind.
        if self.exit.is_none() && self.exits.try_recv().is_err() {
            unix::signal_group(self.pid, SIGKILL);
        }
    }
}
