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
pub mod resolve;
// What is really the operating system's (process groups, /proc, waitid,
// limits): one file per OS, Linux the one there is (the sandbox needs its
// mounts and namespaces anyway).
#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod os;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sandbox::init::InitStatus;

pub use capture::{Capture, Captured};
pub use os::{
    Confinement, Limits, SIGBUS, SIGINT, SIGKILL, SIGSEGV, SIGTERM, SIGXCPU, SIGXFSZ,
    become_subreaper, peak_rss_kib, pidfd_pid, set_limits, signal_name, signal_process, wait_pidfd,
};
pub use resolve::StartError;

/// How much of each stream is kept; the rest is only counted.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// How much of each stream a report shows.
pub const EXCERPT_LIMIT: usize = 2 * 1024;
/// Between SIGTERM and SIGKILL when a process has to be stopped.
pub const GRACE: Duration = Duration::from_millis(200);

/// Children the runner started and has not reaped yet: the orphan sweep
/// never touches these, and an abort kills them all.
static LIVE: LazyLock<Mutex<HashSet<u32>>> = LazyLock::new(Default::default);
/// Set when grading must stop (interrupted, or past its overall deadline).
static ABORT: Mutex<Option<String>> = Mutex::new(None);
static ABORTED: std::sync::Condvar = std::sync::Condvar::new();

fn live() -> MutexGuard<'static, HashSet<u32>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts `pid` (a helper of the grader's, such as a sandbox server) among
/// the processes the runner started: never swept as an orphan, killed on
/// an abort.
pub fn adopt(pid: u32) {
    live().insert(pid);
}

/// The reverse of [`adopt`], once the helper is gone.
pub fn disown(pid: u32) {
    live().remove(&pid);
}

/// Stops everything: every running learner process is killed, and no new
/// one starts. `reason` says why, for the report.
pub fn abort_all(reason: &str) {
    ABORT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(|| reason.to_string());
    ABORTED.notify_all();
    for &pid in live().iter() {
        for p in os::process_tree(pid) {
            os::signal_process(p, SIGKILL);
        }
        os::signal_group(pid, SIGKILL);
    }
}

/// Why grading was aborted, if it was.
pub fn aborted() -> Option<String> {
    ABORT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Waits until grading is aborted; says why.
pub fn wait_aborted() -> String {
    let mut reason = ABORT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(why) = reason.clone() {
            return why;
        }
        reason = ABORTED.wait(reason).unwrap_or_else(|e| e.into_inner());
    }
}

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
    /// What the sandbox adds: uid, cgroups, process limits.
    pub confine: Confinement,
    /// Memory cgroups the process runs in, to tell a memory-limit kill.
    pub memory_cgroups: Vec<PathBuf>,
    /// The cgroup bounding its processes, to tell when it reached the bound.
    pub pids_cgroup: Option<PathBuf>,
    /// The bounded file system its files go to, to tell when it is full.
    pub storage: Option<PathBuf>,
    /// The platform the program was built for, which says what its
    /// ending means (a Windows program's exit code is an NTSTATUS).
    pub target: &'static dyn crate::target::Target,
    /// Who starts it, when not the grader itself as its child: a sandbox
    /// that starts its programs on request (`sandbox::serve`).
    pub launcher: Option<Arc<dyn Launcher>>,
    /// The command the program runs under, the program's path (as its
    /// sandbox sees it) after it: Wine's loader for a Windows program.
    pub loader: Vec<String>,
    /// Host directories its sandbox binds read-write, and where (a Windows
    /// program's prefix and server directory).
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Host directories of the grader's own its sandbox shows read-only
    /// (precompiled system headers for a build), where
    /// `Sandbox::shown_path` says.
    pub shown_dirs: Vec<PathBuf>,
    /// A Windows program: its working directory and program are where
    /// Wine's server sees them (`sandbox::serve::WINE_RUN`), since the
    /// server opens files for it by their paths.
    pub wine_view: bool,
    /// Run a learner's program without the init's seccomp watch of its
    /// reads and writes (Wine's loader and server protocol break under it).
    pub unwatched: bool,
}

/// Starts a process on the grader's behalf, somewhere the grader cannot
/// fork it itself (inside a running sandbox). Given the process's stdin,
/// stdout, stderr, its init's status pipe and the cgroups its program
/// joins, in that order, it returns a pidfd of the process (the first
/// process of a PID namespace of its own, which reports on the status pipe
/// as a sandbox's init does) and its pid in our PID namespace, read while
/// the pid is sure to be its.
pub trait Launcher: std::fmt::Debug + Send + Sync {
    fn launch(
        &self,
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> std::io::Result<(std::os::fd::OwnedFd, u32)>;
}

impl Spec {
    /// The command `argv` (its program first), shown as it is, in `dir`
    /// with exactly `env`, no stdin, and what the sandbox adds still to be
    /// added: the one way every Spec is made.
    pub fn command(
        role: impl Into<String>,
        argv: Vec<String>,
        dir: &Path,
        env: Vec<(OsString, OsString)>,
        timeout: Duration,
        limits: Limits,
    ) -> Spec {
        Spec {
            role: role.into(),
            program: PathBuf::from(&argv[0]),
            args: argv[1..].to_vec(),
            shown: argv,
            dir: dir.to_path_buf(),
            env,
            held_stdin: false,
            timeout,
            limits,
            confine: Default::default(),
            memory_cgroups: Vec::new(),
            pids_cgroup: None,
            storage: None,
            target: &crate::target::Native,
            launcher: None,
            loader: Vec::new(),
            binds: Vec::new(),
            shown_dirs: Vec::new(),
            unwatched: false,
            wine_view: false,
        }
    }

    /// Runs `program` instead of the command's first word (shown the same).
    pub fn running(mut self, program: PathBuf) -> Spec {
        self.program = program;
        self
    }

    /// Shows the command as `shown` in reports.
    pub fn shown_as(mut self, shown: Vec<String>) -> Spec {
        self.shown = shown;
        self
    }

    /// Sets the variable `key` to `value`, replacing it if it is there.
    pub fn set_env(&mut self, key: &str, value: impl Into<OsString>) {
        set_env(&mut self.env, key, value);
    }
}

/// Sets `key` to `value` in `env`, replacing it if it is there.
pub fn set_env(env: &mut Vec<(OsString, OsString)>, key: &str, value: impl Into<OsString>) {
    env.retain(|(k, _)| k != key);
    env.push((key.into(), value.into()));
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub role: String,
    pub argv: Vec<String>,
    pub exit: ExitRecord,
    pub stdout: StreamRecord,
    pub stderr: StreamRecord,
    pub wall_ms: u64,
    pub peak_rss_kib: Option<u64>,
    /// Learner processes still alive after it ended (then killed): in its
    /// process group, re-parented orphans, or left in its sandbox.
    pub left_behind: u32,
    /// Limits it ran into: "output", "memory", "cpu", "file size".
    pub limits_hit: Vec<String>,
    /// How it crashed, where its platform said so ("crashed: an access
    /// violation", "could not start: a missing DLL").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crashed: Option<String>,
}

/// How a run ended, as reports keep it. Written in JSON as the flat
/// record of schema version 2 (`code`, `signal`, `timeout`,
/// `stopped_by_grader`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ExitFields", from = "ExitFields")]
pub enum ExitRecord {
    Exited(i32),
    /// Killed by the signal of that name.
    Signalled(String),
    /// Still running at its deadline, and stopped.
    TimedOut,
    /// Stopped by the grader once it had what it needed.
    StoppedByGrader,
    /// It never ran.
    NotStarted,
}

/// [`ExitRecord`] as the JSON schema has it.
#[derive(Serialize, Deserialize)]
struct ExitFields {
    code: Option<i32>,
    signal: Option<String>,
    timeout: bool,
    stopped_by_grader: bool,
}

impl From<ExitRecord> for ExitFields {
    fn from(exit: ExitRecord) -> ExitFields {
        let mut fields = ExitFields {
            code: None,
            signal: None,
            timeout: false,
            stopped_by_grader: false,
        };
        match exit {
            ExitRecord::Exited(code) => fields.code = Some(code),
            ExitRecord::Signalled(name) => fields.signal = Some(name),
            ExitRecord::TimedOut => fields.timeout = true,
            ExitRecord::StoppedByGrader => fields.stopped_by_grader = true,
            ExitRecord::NotStarted => {}
        }
        fields
    }
}

impl From<ExitFields> for ExitRecord {
    fn from(f: ExitFields) -> ExitRecord {
        match f {
            ExitFields { timeout: true, .. } => ExitRecord::TimedOut,
            ExitFields {
                stopped_by_grader: true,
                ..
            } => ExitRecord::StoppedByGrader,
            ExitFields {
                signal: Some(name), ..
            } => ExitRecord::Signalled(name),
            ExitFields {
                code: Some(code), ..
            } => ExitRecord::Exited(code),
            _ => ExitRecord::NotStarted,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub excerpt: String,
    pub total_bytes: u64,
}

impl RunRecord {
    /// The command as a shell would take it, quoted where it must be:
    /// `./shm_writer /MySharedMemory 1024 'Shared Memory Data!'`.
    pub fn command_line(&self) -> String {
        shlex::try_join(self.argv.iter().map(String::as_str))
            .unwrap_or_else(|_| self.argv.join(" "))
    }

    /// How the run ended, in words: "exit 0", "killed by SIGBUS"...
    pub fn describe_exit(&self) -> String {
        match &self.exit {
            ExitRecord::TimedOut => "timed out".to_string(),
            ExitRecord::StoppedByGrader => "stopped by the grader".to_string(),
            ExitRecord::Signalled(sig) => format!("killed by {sig}"),
            ExitRecord::Exited(code) => match &self.crashed {
                Some(what) => format!("{what} (exit {code})"),
                None => format!("exit {code}"),
            },
            ExitRecord::NotStarted => "did not start".to_string(),
        }
    }
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
    /// Set when the sandbox's init could not start the program at all.
    pub not_started: Option<StartError>,
    /// What the init's watch saw the program read and write (None when it
    /// was not watched).
    pub io: Option<crate::observe::watch::IoEvents>,
    pub stdout: Captured,
    pub stderr: Captured,
    /// The limits it ran into (their words are in `record.limits_hit`).
    pub limits: Vec<Limit>,
    pub record: RunRecord,
    /// When it was started and when it ended (or was ended): the order of
    /// events between programs, which their reports' times only round.
    pub began: Instant,
    pub ended: Instant,
    /// It crashed, by its platform's own report (a Windows program's exit
    /// code alone cannot say).
    pub crash: Option<crate::target::Crash>,
}

/// A limit a run ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// More output on a stream than is kept.
    Output {
        stream: &'static str,
        total: u64,
        kept: u64,
    },
    /// Its CPU time (SIGXCPU).
    Cpu { secs: u64 },
    /// The largest file it may write (SIGXFSZ).
    FileSize { bytes: u64 },
    /// The grading's storage, all but used up.
    Disk {
        used_mib: u64,
        size_mib: u64,
        inodes: bool,
    },
    /// Killed by the kernel at its memory cgroup's limit.
    Memory,
    /// As many processes as it may have: stopped there by the grader.
    Processes { max: u64 },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Output {
                stream,
                total,
                kept,
            } => {
                write!(f, "output: {total} bytes on {stream}, first {kept} kept")
            }
            Limit::Cpu { secs } => write!(f, "cpu: {secs} s of CPU time"),
            Limit::FileSize { bytes } => write!(f, "file size: {bytes} bytes"),
            Limit::Disk {
                inodes: true,
                size_mib,
                ..
            } => write!(
                f,
                "disk: no file could be added to the grading's {size_mib} MiB of storage (too many files)"
            ),
            Limit::Disk {
                used_mib, size_mib, ..
            } => write!(
                f,
                "disk: {used_mib} MiB of the grading's {size_mib} MiB of storage used"
            ),
            Limit::Memory => write!(f, "memory: it ran into the memory limit"),
            Limit::Processes { max } => write!(
                f,
                "processes: it reached the limit of {max} processes and was stopped there"
            ),
        }
    }
}

/// How long processes a program leaves are given to end by themselves
/// before they count as left running: a shell on its way out is not.
pub const STRAGGLER_GRACE: Duration = Duration::from_millis(200);

/// A process that is running (or has just ended).
pub struct Running {
    spec: Spec,
    pid: u32,
    /// Where the sandbox's init reports processes it found left behind.
    status: Option<os_pipe::PipeReader>,
    stdin: Option<os_pipe::PipeWriter>,
    /// The inode of the held stdin pipe, as a trace names it (`pipe:[N]`).
    stdin_inode: Option<u64>,
    stdout: Capture,
    stderr: Capture,
    /// Its exit, with the moment the waiter saw it: what a grader decides
    /// by order of events, whenever it asks.
    exits: Receiver<(os::RawExit, Instant)>,
    exit: Option<os::RawExit>,
    /// It reached its process limit and was stopped for it.
    at_process_limit: Option<u64>,
    started: Instant,
    ended: Option<Instant>,
    /// The grader's own child, when it is one (duct reaps it).
    _handle: Option<Arc<duct::Handle>>,
}

/// A clean environment for learner programs: no secrets, no tokens, no
/// RUST_BACKTRACE, HOME inside the run.
pub fn clean_env(home: &Path) -> Vec<(OsString, OsString)> {
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), home.as_os_str().to_owned()),
        ("TMPDIR".into(), home.as_os_str().to_owned()),
        ("LANG".into(), "C.UTF-8".into()),
    ]
}

/// Starts `spec`. An error here is the grader's (or the system's), not the
/// learner's: the program could not even be started.
pub fn start(spec: Spec) -> Result<Running, StartError> {
    let name = spec.shown.first().cloned().unwrap_or_default();
    if let Some(reason) = aborted() {
        return Err(StartError::Failed {
            program: name,
            error: format!("not started: {reason}"),
        });
    }
    let program = spec.program.clone();
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    spawn(spec).map_err(|error| {
        // Why, precisely: a program not on PATH or out of reach is named as
        // such; anything else is the system's error as it came.
        match resolve::resolve(program.as_os_str(), path.as_deref(), None) {
            Ok(_) => StartError::Failed {
                program: name,
                error: error.to_string(),
            },
            Err(why) => why,
        }
    })
}

fn spawn(mut spec: Spec) -> std::io::Result<Running> {
    if let Some(launcher) = spec.launcher.take() {
        return spawn_served(spec, launcher.as_ref());
    }
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
    let status = if spec.confine.status_pipe {
        Some(os_pipe::pipe()?)
    } else {
        None
    };
    let status_fd = status.as_ref().map(|(_, w)| w.as_raw_fd());
    let limits = spec.limits;
    let confine = spec.confine.clone();
    let expr = expr.before_spawn(move |cmd| {
        os::prepare(cmd, limits, &confine, status_fd);
        Ok(())
    });
    let started = Instant::now();
    let handle = {
        // Registered before anyone can sweep: the lock is held across spawn.
        let mut live = live();
        let handle = Arc::new(expr.start()?);
        live.insert(handle.pids()[0]);
        handle
    };
    // The expression held our copies of the pipes' write ends; with it gone,
    // end of file comes when the child's side closes.
    drop(expr);
    let status = status.map(|(r, _w)| r);
    let pid = handle.pids()[0];

    let (tx, exits) = channel();
    let reaper = handle.clone();
    thread::spawn(move || {
        if let Ok(exit) = os::wait_exit(pid) {
            let _ = tx.send((exit, Instant::now()));
        }
        let _ = reaper.wait(); // now reap it
        live().remove(&pid);
    });

    Ok(Running::new(
        spec,
        pid,
        (stdin, out_read, err_read, status),
        exits,
        started,
        Some(handle),
    ))
}

/// The grader's ends of a process's stdin (when held), stdout, stderr and
/// status pipe.
type Ends = (
    Option<os_pipe::PipeWriter>,
    os_pipe::PipeReader,
    os_pipe::PipeReader,
    Option<os_pipe::PipeReader>,
);

/// Starts `spec` through its launcher: the same pipes as a child of ours
/// would get, handed over; its end seen on its pidfd, how it ended told by
/// its init on the status pipe.
fn spawn_served(spec: Spec, launcher: &dyn Launcher) -> std::io::Result<Running> {
    use std::os::fd::{AsFd, OwnedFd};
    let (out_read, out_write) = os_pipe::pipe()?;
    let (err_read, err_write) = os_pipe::pipe()?;
    let (stdin_read, stdin): (OwnedFd, _) = if spec.held_stdin {
        let (read, write) = os_pipe::pipe()?;
        (read.into(), Some(write))
    } else {
        (std::fs::File::open("/dev/null")?.into(), None)
    };
    let (status_read, status_write) = os_pipe::pipe()?;
    let started = Instant::now();
    let (pidfd, pid) = {
        let mut fds = vec![
            stdin_read.as_fd(),
            out_write.as_fd(),
            err_write.as_fd(),
            status_write.as_fd(),
        ];
        fds.extend(spec.confine.cgroups.iter().map(|f| f.as_fd()));
        // Registered before anyone can sweep or abort.
        let mut live = live();
        let (pidfd, pid) = launcher.launch(&fds)?;
        live.insert(pid);
        (pidfd, pid)
    };
    // Our copies of what the process got: end of file comes when its side
    // closes.
    drop((stdin_read, out_write, err_write, status_write));
    let (tx, exits) = channel();
    thread::spawn(move || {
        os::wait_pidfd(&pidfd);
        // How it ended comes from its init's status.
        let unknown = os::RawExit {
            code: None,
            signal: None,
            peak_rss_kib: None,
        };
        let _ = tx.send((unknown, Instant::now()));
        live().remove(&pid);
    });
    Ok(Running::new(
        spec,
        pid,
        (stdin, out_read, err_read, Some(status_read)),
        exits,
        started,
        None,
    ))
}

/// Starts `spec` and waits for it to end (or its deadline).
pub fn run(spec: Spec) -> Result<Finished, StartError> {
    Ok(start(spec)?.finish())
}

impl Running {
    fn new(
        spec: Spec,
        pid: u32,
        (stdin, out_read, err_read, status): Ends,
        exits: Receiver<(os::RawExit, Instant)>,
        started: Instant,
        handle: Option<Arc<duct::Handle>>,
    ) -> Running {
        let stdin_inode = stdin
            .as_ref()
            .and_then(|w| rustix::fs::fstat(w).ok())
            .map(|st| st.st_ino);
        Running {
            pid,
            status,
            stdin,
            stdin_inode,
            stdout: Capture::spawn(out_read, OUTPUT_LIMIT),
            stderr: Capture::spawn(err_read, OUTPUT_LIMIT),
            exits,
            exit: None,
            at_process_limit: None,
            started,
            ended: None,
            _handle: handle,
            spec,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn stdout(&self) -> &Capture {
        &self.stdout
    }

    /// The inode of the stdin pipe the grader holds.
    pub fn stdin_inode(&self) -> Option<u64> {
        self.stdin_inode
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
        if let Some((exit, at)) = got {
            self.exit = Some(exit);
            self.ended = Some(at);
        }
        self.exit.is_some()
    }

    /// When it exited, if it has: the moment it did, not the moment asked.
    pub fn exited_at(&mut self) -> Option<Instant> {
        self.has_exited();
        self.exit.and(self.ended)
    }

    /// Whether every thread of every process of the learner's in it is
    /// blocked reading the stdin pipe the grader holds: only the release
    /// (or a timer it armed, or a signal) can wake it.
    pub fn only_waits_on_stdin(&self) -> bool {
        self.stdin_inode
            .is_some_and(|ino| self.every_learner_process(|p| os::blocked_on_pipe(p, ino)))
    }

    /// Whether every process of the learner's in it sleeps, waiting for
    /// something (its release, a timer): a program holding what it made,
    /// rather than one still at work or on its way out. Never said of a
    /// Windows program: Wine's sleep on its server's every answer, on the
    /// way out too (a writer that exits at once was seen asleep, holding
    /// its section, in one grading of two).
    pub fn asleep(&self) -> bool {
        !self.spec.wine_view && self.every_learner_process(os::asleep)
    }

    /// Whether it is still running, with at least one process of the
    /// learner's, and every one of them is `such`.
    fn every_learner_process(&self, such: impl Fn(u32) -> bool) -> bool {
        if self.exit.is_some() {
            return false;
        }
        let procs = learner_processes(self.pid);
        !procs.is_empty() && procs.into_iter().all(such)
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

    /// Writes `bytes` to its stdin.
    pub fn write_stdin(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.stdin.as_mut() {
            Some(pipe) => pipe.write_all(bytes),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Closes its stdin: end of file for the process.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal to the learner's processes: the program and anything
    /// it started, not the sandbox or tracer around them.
    pub fn signal(&self, signal: i32) {
        if self.exit.is_none() {
            for p in learner_processes(self.pid) {
                os::signal_process(p, signal);
            }
        }
    }

    /// Whether it sits blocked reading its stdin (waiting for release).
    pub fn waiting_for_stdin(&self) -> bool {
        self.exit.is_none() && os::waiting_for_stdin(self.pid)
    }

    /// Peak resident memory so far, while it is alive.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        learner_processes(self.pid)
            .into_iter()
            .filter_map(peak_rss_kib)
            .max()
    }

    /// Waits for it to end until its deadline, stopping it there. A
    /// program still computing at its deadline (a busy loop that got less
    /// than its share of a loaded machine) is not waiting for anything: it
    /// gets up to one more deadline to reach its CPU limit, which names it
    /// for what it is, whatever the load.
    ///
    /// A program that reaches its process limit is stopped there: nothing
    /// in the lab needs that many, and what a fork storm runs into next
    /// (its CPU, its memory, its deadline) would be a matter of timing.
    pub fn finish(mut self) -> Finished {
        let mut in_time = self.wait_exit_watching(self.remaining());
        if !in_time && self.at_process_limit.is_none() && self.computing() {
            in_time = self.wait_exit_watching(self.spec.timeout);
        }
        if self.at_process_limit.is_some() {
            return self.end(Some(Ending::Stopped));
        }
        self.end(if in_time {
            None
        } else {
            Some(Ending::TimedOut)
        })
    }

    /// [`Running::wait_exit`], looking every [`PIDS_POLL`] at whether it
    /// reached its process limit (then it returns false at once).
    fn wait_exit_watching(&mut self, timeout: Duration) -> bool {
        let Some(dir) = self.spec.pids_cgroup.clone() else {
            return self.wait_exit(timeout);
        };
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if self.wait_exit(left.min(PIDS_POLL)) {
                return true;
            }
            if let Some(max) = at_process_limit(&dir) {
                self.at_process_limit = Some(max);
                return false;
            }
            if left.is_zero() {
                return false;
            }
        }
    }

    /// Whether it has spent at least a fifth of its life on the CPU and
    /// could reach its CPU limit within another deadline: computing, not
    /// waiting.
    fn computing(&self) -> bool {
        let cpu = os::cpu_time(self.pid);
        let limit = Duration::from_secs(self.spec.limits.cpu_secs);
        limit <= self.spec.timeout && cpu * 5 >= self.started.elapsed()
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
            os::signal_group(self.pid, SIGTERM);
            if !self.wait_exit(GRACE) {
                os::signal_group(self.pid, SIGKILL);
                self.wait_exit(Duration::from_secs(5));
            }
        }
        self.stdin = None;
        // Only the learner's processes count as left behind: a sandbox's
        // own processes still on their way out after it (bwrap, the init)
        // are killed as well, but are not the learner's doing.
        let learner_left = |left: &[u32]| left.iter().filter(|&&p| is_learner(p)).count() as u32;
        // A PID namespace dies with its first process: after the sandbox
        // has exited there is nothing of it to look for (a scan of /proc
        // each, about 2 ms a run).
        let contained = self.spec.confine.own_pid_namespace && self.exit.is_some();
        let mut left = if contained {
            Vec::new()
        } else {
            os::group_members(self.pid, self.pid)
        };
        if forced.is_none() && learner_left(&left) > 0 {
            // What is on its way out gets a moment to end by itself.
            crate::observe::poll_until(Instant::now() + STRAGGLER_GRACE, || {
                left = os::group_members(self.pid, self.pid);
                (learner_left(&left) == 0).then_some(())
            });
        }
        let mut learner_left = learner_left(&left);
        if !left.is_empty() {
            os::signal_group(self.pid, SIGKILL);
        }
        // A run without a PID namespace of its own (a Windows program, in
        // Wine's) is swept by its cgroup, which nothing in it can leave.
        if !self.spec.confine.own_pid_namespace
            && self.spec.wine_view
            && let Some(dir) = &self.spec.pids_cgroup
        {
            learner_left = learner_left.max(os::sweep_cgroup(dir, self.pid));
        }
        // Orphans that escaped the group (setsid, double fork) were
        // re-parented to the grader: kill and reap them.
        let escaped = if contained {
            0
        } else {
            os::sweep_orphans(&live(), &is_learner)
        };
        // Inside a sandbox, its init reports what the program left behind,
        // and how it really ended (the sandbox turns a signal into 128+N),
        // or why it could not start it.
        let mut in_sandbox = 0;
        let mut not_started = None;
        let mut io = None;
        match self
            .status
            .take()
            .and_then(|pipe| InitStatus::read(pipe, Duration::from_secs(1)))
        {
            Some(InitStatus::Ended {
                left,
                code,
                signal,
                peak_kib,
                io: seen,
            }) => {
                in_sandbox = left;
                io = seen;
                if let Some(exit) = self.exit.as_mut() {
                    exit.code = code;
                    exit.signal = signal;
                    exit.peak_rss_kib = peak_kib;
                }
            }
            Some(InitStatus::NotStarted(why)) => not_started = Some(why),
            None => {}
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
        let crash = self.spec.target.crash(ending, &stderr.text());
        let mut limits = limits_hit(&self.spec, raw, &stdout, &stderr);
        if let Some(max) = self.at_process_limit {
            limits.insert(0, Limit::Processes { max });
        }
        let record = RunRecord {
            role: self.spec.role.clone(),
            argv: self.spec.shown.clone(),
            exit: match (forced, raw) {
                (Some(Ending::TimedOut), _) => ExitRecord::TimedOut,
                (Some(_), _) => ExitRecord::StoppedByGrader,
                (
                    None,
                    Some(os::RawExit {
                        signal: Some(sig), ..
                    }),
                ) => ExitRecord::Signalled(signal_name(sig)),
                (
                    None,
                    Some(os::RawExit {
                        code: Some(code), ..
                    }),
                ) => ExitRecord::Exited(code),
                (None, _) => ExitRecord::NotStarted,
            },
            stdout: StreamRecord::from(&stdout),
            stderr: {
                let mut record = StreamRecord::from(&stderr);
                record.excerpt = self.spec.target.tidy_stderr(&record.excerpt).into_owned();
                record
            },
            wall_ms: ended.duration_since(self.started).as_millis() as u64,
            peak_rss_kib: raw.and_then(|e| e.peak_rss_kib),
            // A run the grader ended had its processes ended with it: how
            // many were still there at that instant is a race, not a fact
            // about the program.
            left_behind: if forced.is_some() {
                0
            } else {
                learner_left + escaped + in_sandbox
            },
            limits_hit: limits.iter().map(Limit::to_string).collect(),
            crashed: crash.as_ref().map(|c| format!("{}: {}", c.verb(), c.what)),
        };
        Finished {
            ending,
            not_started,
            io,
            stdout,
            stderr,
            limits,
            record,
            began: self.started,
            ended,
            crash,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A run dropped without finish() (a panic, an early return) must not
        // leave its processes behind.
        if self.exit.is_none() && self.exits.try_recv().is_err() {
            os::signal_group(self.pid, SIGKILL);
        }
    }
}

/// The files labgrade's own helpers run from (itself, and the sealed copy
/// sandboxes run as their init), by device and inode.
static HELPERS: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Makes the file at `path` one of labgrade's own helpers: a process
/// running it is never taken for the learner's.
pub fn register_helper(path: &Path) {
    if let Some(id) = identity(path) {
        let mut helpers = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
        if !helpers.contains(&id) {
            helpers.push(id);
        }
    }
}

/// Names of the files the grader's own machinery runs around a learner's
/// program: the sandbox and the tracer. Each target adds its own.
const MACHINERY: &[&str] = &["bwrap", "strace"];

/// Whether the process `pid` is the learner's: not the sandbox, not the
/// tracer, not a target's machinery, not labgrade's own helper
/// (recognised by the file it runs, whatever path the sandbox shows it
/// under), and not a process on its way out whose file is gone already.
fn is_learner(pid: u32) -> bool {
    static ME: std::sync::Once = std::sync::Once::new();
    ME.call_once(|| {
        if let Ok(exe) = std::env::current_exe() {
            register_helper(&exe);
        }
    });
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let Ok(target) = std::fs::read_link(&exe) else {
        return false;
    };
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if MACHINERY.contains(&name) {
        return false;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if crate::target::is_machinery(name, comm.trim_end()) {
        return false;
    }
    let helpers = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    identity(&exe).is_some_and(|id| !helpers.contains(&id))
}

/// The processes under `root` that are the learner's ([`is_learner`]).
fn learner_processes(root: u32) -> Vec<u32> {
    os::process_tree(root)
        .into_iter()
        .filter(|&p| is_learner(p))
        .collect()
}

/// How often a waiting grader looks at a run's process count.
const PIDS_POLL: Duration = Duration::from_millis(20);

/// The limit of the pids cgroup at `dir`, if it holds that many processes
/// or nearly (a traced fork storm stays one or two short: a fork in flight
/// under the tracer holds a slot without making a process).
fn at_process_limit(dir: &std::path::Path) -> Option<u64> {
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let max = read("pids.max")?;
    (read("pids.current")? + 2 >= max).then_some(max)
}

/// Which limits a finished run ran into.
fn limits_hit(
    spec: &Spec,
    raw: Option<os::RawExit>,
    stdout: &Captured,
    stderr: &Captured,
) -> Vec<Limit> {
    let mut hit = Vec::new();
    for (name, stream) in [("stdout", stdout), ("stderr", stderr)] {
        if stream.total > OUTPUT_LIMIT as u64 {
            hit.push(Limit::Output {
                stream: name,
                total: stream.total,
                kept: OUTPUT_LIMIT as u64,
            });
        }
    }
    match raw.and_then(|e| e.signal) {
        Some(SIGXCPU) => hit.push(Limit::Cpu {
            secs: spec.limits.cpu_secs,
        }),
        Some(SIGXFSZ) => hit.push(Limit::FileSize {
            bytes: spec.limits.file_bytes,
        }),
        _ => {}
    }
    if let Some(storage) = &spec.storage
        && let Ok(st) = rustix::fs::statvfs(storage)
    {
        // Nearly full counts: a write that failed for want of room was
        // undone (a fallocate is all or nothing), so a full storage need
        // not look full afterwards. The lab itself needs a few MiB.
        let size = st.f_blocks * st.f_frsize;
        let free = st.f_bavail * st.f_frsize;
        let no_inodes = st.f_files > 0 && st.f_favail == 0;
        if no_inodes || free < size / 8 {
            hit.push(Limit::Disk {
                used_mib: (size - free) >> 20,
                size_mib: size >> 20,
                inodes: no_inodes,
            });
        }
    }
    let signalled = raw.and_then(|e| e.signal).is_some();
    if spec
        .memory_cgroups
        .iter()
        .any(|dir| ran_into_memory_limit(dir, signalled))
    {
        hit.push(Limit::Memory);
    }
    hit
}

/// Whether the kernel killed something in this memory cgroup for memory.
/// Whether the cgroup at `dir` ran into its memory limit: a process was
/// killed there for memory or, for a program that a signal ended
/// (`signalled`), an allocation hit the limit (then reclaim can spin so
/// long that the CPU limit ends the program first, and memory is still the
/// cause; a program that exits by itself may well have only filled caches).
fn ran_into_memory_limit(dir: &std::path::Path, signalled: bool) -> bool {
    let counter = |file: &str, key: &str| {
        std::fs::read_to_string(dir.join(file)).is_ok_and(|text| {
            text.lines().any(|l| {
                l.strip_prefix(key)
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    };
    counter("memory.events", "oom_kill ")
        || counter("memory.oom_control", "oom_kill ")
        || (signalled && (counter("memory.events", "max ") || counter("memory.failcnt", "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ending_keeps_the_flat_json_record_of_schema_2() {
        let json = serde_json::to_value(ExitRecord::Signalled("SIGBUS".into())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": null, "signal": "SIGBUS", "timeout": false, "stopped_by_grader": false})
        );
        for exit in [
            ExitRecord::Exited(3),
            ExitRecord::Signalled("SIGKILL".into()),
            ExitRecord::TimedOut,
            ExitRecord::StoppedByGrader,
            ExitRecord::NotStarted,
        ] {
            let back: ExitRecord =
                serde_json::from_value(serde_json::to_value(&exit).unwrap()).unwrap();
            assert_eq!(back, exit);
        }
    }
}
