//! `labgrade sandbox-init`: the first process of a learner's sandbox (or,
//! without one, the step between the grader and the program). It stays the
//! grader's (root, where the grader is), and runs the program as its child
//! under the learner's uid; with `--watch`, under the seccomp watch that
//! notes its reads and writes (`observe::watch`). It reports on its status
//! fd, as one JSON [`InitStatus`]: that the program could not be started
//! and precisely why (not installed, not readable by the uid, failing); or
//! how it ended, its peak memory, what the watch saw, and (with `--sweep`,
//! inside a PID namespace of its own) how many processes it left there,
//! killed since. It ends as the program ended.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

use serde::{Deserialize, Serialize};

use crate::observe::watch::{self, IoEvents, Watch};
use crate::runner::resolve::{self, StartError};

/// What the sandbox's init tells the grader on its status fd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitStatus {
    /// The program never ran.
    NotStarted(StartError),
    /// The program ran and ended.
    Ended {
        /// Processes it left in the namespace, killed since.
        left: u32,
        /// Its exit code, or the signal that ended it: the sandbox turns a
        /// signal death into an exit code above 128, this does not.
        code: Option<i32>,
        signal: Option<i32>,
        /// The program's peak resident memory; None when it ran under a
        /// tracer inside the sandbox, whose own would be counted with it.
        peak_kib: Option<u64>,
        /// What the watch saw it read and write; None when unwatched.
        #[serde(default)]
        io: Option<IoEvents>,
    },
}

/// How much of a status the reading side takes at most.
const STATUS_LIMIT: usize = 256 * 1024;

impl InitStatus {
    /// The init's side: the status, as one JSON value, on `out` (written
    /// once, before the init exits).
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        out.flush()
    }

    /// The grader's side: the status from the pipe's read end, waiting at
    /// most `patience` for the init to finish writing it. None if the init
    /// wrote nothing readable (it was killed, or never ran).
    pub fn read(mut pipe: impl Read + AsRawFd, patience: std::time::Duration) -> Option<Self> {
        // SAFETY: making our own pipe end non-blocking.
        unsafe {
            let fd = pipe.as_raw_fd();
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            );
        }
        let deadline = std::time::Instant::now() + patience;
        let mut text = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if text.len() < STATUS_LIMIT => text.extend_from_slice(&buf[..n]),
                Ok(_) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(_) => break,
            }
        }
        serde_json::from_slice(&text).ok()
    }
}

/// How the init runs its program.
pub struct InitOptions<'a> {
    /// "UID:GID" to run the program as.
    pub uid: Option<&'a str>,
    pub status_fd: Option<i32>,
    /// Kill what the program leaves in the PID namespace (only inside one
    /// of its own: elsewhere kill(-1) would reach far beyond it).
    pub sweep: bool,
    /// Watch its reads and writes.
    pub watch: bool,
    /// Forbid it to look into other processes ([`watch::Guard`]).
    pub guard: bool,
    /// cgroup.procs files to put the program (and only it) in.
    pub cgroup_fds: Vec<i32>,
    /// The program's whole environment; None: the init's own.
    pub env: Option<Vec<(OsString, OsString)>>,
    /// The program is the grader itself (a reference peer): forked and run
    /// in this process's image, without an exec.
    pub in_process: bool,
    /// Run the program under this tracer, inside the sandbox: the tracer
    /// stays the init's (root), and `labgrade sandbox-exec` at `helper`,
    /// its tracee, puts the program in its cgroups, under the watch and as
    /// the learner, then becomes it.
    pub trace: Option<InsideTrace>,
}

/// A tracer and its arguments (its output file included), and the
/// grader's binary as the sandbox sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InsideTrace {
    pub tracer: std::path::PathBuf,
    pub args: Vec<String>,
    pub helper: std::path::PathBuf,
    /// The program's limits, which the helper sets on itself alone.
    pub limits: Option<ProgramLimits>,
}

/// What a sandbox limits a program to (`runner::set_limits`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProgramLimits {
    pub limits: crate::runner::Limits,
    pub processes: Option<u64>,
    pub address_space: Option<u64>,
}

/// Runs `argv` as described above.
pub fn run(opts: &InitOptions, argv: &[OsString]) -> ExitCode {
    let status = supervise(opts, argv);
    report(opts.status_fd, &status);
    match status {
        InitStatus::NotStarted(_) => ExitCode::from(127),
        InitStatus::Ended {
            signal: Some(sig), ..
        } => {
            // End the same way, so the grader sees the program's signal.
            // SAFETY: restoring the default action and raising it on ourselves.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
            ExitCode::from(128u8.wrapping_add(sig as u8))
        }
        InitStatus::Ended { code, .. } => ExitCode::from(code.unwrap_or(1) as u8),
    }
}

/// Writes `status` on the status fd, if there is one.
pub fn report(status_fd: Option<i32>, status: &InitStatus) {
    if let Some(fd) = status_fd {
        // SAFETY: fd was handed to us for exactly this; written once.
        let mut pipe = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
        let _ = status.write(&mut *pipe);
    }
}

/// Runs the program to its end (and, with `sweep`, what it left after
/// it): how it went, for the status fd.
pub fn supervise(opts: &InitOptions, argv: &[OsString]) -> InitStatus {
    // The program must not inherit the status pipe (it could forge it), nor
    // the cgroups' files.
    for &fd in opts.status_fd.iter().chain(&opts.cgroup_fds) {
        // SAFETY: marking our own descriptor close-on-exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let cgroup_fds = opts.cgroup_fds.clone();
    if opts.sweep && !own_namespace() {
        // What the program leaves is found below us, whatever it does to
        // get away (a double fork, setsid).
        let _ = crate::runner::become_subreaper();
    }
    let not_started = |error: StartError| {
        eprintln!("sandbox-init: {error}");
        InitStatus::NotStarted(error)
    };
    let Some((program, args)) = argv.split_first() else {
        return not_started(StartError::Failed {
            program: String::new(),
            error: "no program given".into(),
        });
    };
    let failed = |error: String| StartError::Failed {
        program: program.to_string_lossy().into_owned(),
        error,
    };
    let ids = match opts.uid.map(parse_ids).transpose() {
        Ok(ids) => ids,
        Err(e) => return not_started(failed(e)),
    };
    let path_var = match &opts.env {
        Some(env) => env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone()),
        None => std::env::var_os("PATH"),
    };
    // Where the program is, as the grader sees it: so "unreadable by the
    // learner" is told from "not installed".
    let located = resolve::locate(program, path_var.as_deref());
    let resolved = match as_learner(ids, || {
        resolve::resolve(program, path_var.as_deref(), located.as_deref())
    }) {
        Ok(Ok(path)) => path,
        Ok(Err(e)) => return not_started(e),
        Err(e) => return not_started(failed(format!("cannot act as the learner: {e}"))),
    };
    let filter = opts.watch.then(watch::Filter::new);
    let guard = opts.guard.then(watch::Guard::new);
    let (ours, theirs) = match opts.watch.then(socket_pair).transpose() {
        Ok(pair) => pair.unzip(),
        Err(e) => return not_started(failed(format!("cannot set up the watch: {e}"))),
    };
    let their_fd = theirs.as_ref().map(|s| s.as_raw_fd());
    let mut cmd = match &opts.trace {
        None => {
            let mut cmd = Command::new(&resolved);
            cmd.arg0(program).args(args);
            cmd
        }
        Some(trace) => {
            let mut cmd = Command::new(&trace.tracer);
            cmd.args(&trace.args)
                .arg("--")
                .arg(&trace.helper)
                .arg("sandbox-exec");
            if let Some(uid) = opts.uid {
                cmd.args(["--uid", uid]);
            }
            for fd in &cgroup_fds {
                cmd.arg("--cgroup-fd").arg(fd.to_string());
            }
            if let Some(fd) = their_fd {
                cmd.arg("--watch-fd").arg(fd.to_string());
            }
            if let Some(limits) = &trace.limits {
                let json = serde_json::to_string(limits).unwrap_or_default();
                cmd.arg("--limits").arg(json);
            }
            if opts.guard {
                cmd.arg("--guard");
            }
            cmd.arg("--arg0")
                .arg(program)
                .arg("--")
                .arg(&resolved)
                .args(args);
            cmd
        }
    };
    if let Some(env) = &opts.env {
        cmd.env_clear().envs(env.iter().cloned());
    }
    let traced = opts.trace.is_some();
    // SAFETY: the child only makes system calls (the filter and its
    // message were built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            if traced {
                // The tracer only passes the cgroups and the watch's socket
                // on to the helper, which does the rest.
                for &fd in cgroup_fds.iter().chain(&their_fd) {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                }
                return Ok(());
            }
            enter(&cgroup_fds, ids)?;
            if let Some(guard) = &guard
                && !guard.install()
            {
                return Err(std::io::Error::last_os_error());
            }
            if let (Some(filter), Some(fd)) = (&filter, their_fd) {
                filter.install_and_send(fd);
            }
            Ok(())
        });
    }
    let child = if opts.in_process {
        match fork_grader(&opts.cgroup_fds, opts.env.as_deref(), argv) {
            Ok(pid) => pid,
            Err(err) => return not_started(failed(err.to_string())),
        }
    } else {
        match cmd.spawn() {
            Ok(child) => child.id(),
            Err(err) => return not_started(failed(err.to_string())),
        }
    };
    drop(theirs);
    let watching = ours
        .as_ref()
        .and_then(watch::receive_listener)
        .map(Watch::start);
    // A traced program is the tracer's child: its end is watched on a
    // pidfd, and what it left is swept before the tracer is waited for
    // (the tracer follows a daemon it left, and would wait for it).
    let mut left = 0;
    if traced {
        wait_for_traced_program(child);
        if opts.sweep {
            left = kill_the_rest(Some(child));
        }
    }
    // wait4, for the program's own peak memory: the sandbox around us does
    // not pass its children's resource usage on.
    let (status, peak_kib) = wait_with_usage(child);
    if opts.sweep && !traced {
        left = kill_the_rest(None);
    }
    let io = watching.map(Watch::finish);
    InitStatus::Ended {
        left,
        code: status.code(),
        signal: status.signal(),
        peak_kib: (!traced).then_some(peak_kib),
        io,
    }
}

/// Forks a child that runs the grader's own command line `argv` (its
/// program's name first) with exactly `env`, in `cgroups`: a reference
/// peer without the exec of the grader's binary. Returns its pid.
fn fork_grader(
    cgroups: &[i32],
    env: Option<&[(OsString, OsString)]>,
    argv: &[OsString],
) -> std::io::Result<u32> {
    // SAFETY: the init is single-threaded here (a reference peer has no
    // watch); the child runs our own code and exits.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            if enter(cgroups, None).is_err() {
                std::process::exit(127);
            }
            for &fd in cgroups {
                // SAFETY: closing our own descriptor.
                unsafe { libc::close(fd) };
            }
            if let Some(env) = env {
                // SAFETY: the forked child has one thread.
                unsafe {
                    for (key, _) in std::env::vars_os() {
                        std::env::remove_var(key);
                    }
                    for (key, value) in env {
                        std::env::set_var(key, value);
                    }
                }
            }
            std::process::exit(crate::cli::run_in_process(argv))
        }
        pid => Ok(pid as u32),
    }
}

/// `labgrade sandbox-exec`: the traced program's first step (see
/// [`InsideTrace`]): into its cgroups, as the learner, under the watch,
/// with nothing but stdin, stdout and stderr open, then the program.
/// Returns only if it cannot.
pub fn exec_helper(
    uid: Option<&str>,
    cgroup_fds: &[i32],
    watch_fd: Option<i32>,
    guard: bool,
    limits: Option<&str>,
    arg0: &OsString,
    argv: &[OsString],
) -> ExitCode {
    let fail = |what: String| {
        eprintln!("sandbox-exec: {what}");
        ExitCode::from(127)
    };
    let Some((program, args)) = argv.split_first() else {
        return fail("no program given".into());
    };
    let ids = match uid.map(parse_ids).transpose() {
        Ok(ids) => ids,
        Err(e) => return fail(e),
    };
    // No supplementary group of root's goes on (the init dropped them when
    // it first acted as the learner; this one does not rely on that).
    // SAFETY: a plain system call.
    if ids.is_some() && unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return fail(format!(
            "cannot drop groups: {}",
            std::io::Error::last_os_error()
        ));
    }
    if let Some(json) = limits {
        let set = serde_json::from_str::<ProgramLimits>(json)
            .map_err(std::io::Error::other)
            .and_then(|l| crate::runner::set_limits(&l.limits, l.processes, l.address_space));
        if let Err(e) = set {
            return fail(format!("cannot set the program's limits: {e}"));
        }
    }
    if let Err(e) = enter(cgroup_fds, ids) {
        return fail(format!("cannot enter the learner's cgroups and uid: {e}"));
    }
    // SAFETY: in the process about to exec.
    if guard && !unsafe { watch::Guard::new().install() } {
        return fail(format!(
            "cannot forbid ptrace: {}",
            std::io::Error::last_os_error()
        ));
    }
    if let Some(fd) = watch_fd {
        // SAFETY: in the process about to exec; fd is the init's socket.
        unsafe { watch::Filter::new().install_and_send(fd) };
    }
    // SAFETY: closing every descriptor above stderr.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0) };
    let err = Command::new(program).arg0(arg0).args(args).exec();
    fail(format!("cannot run {}: {err}", program.to_string_lossy()))
}

/// Into the learner's limits and identity: the calling process (and what
/// it starts) joins the cgroups whose `cgroup.procs` are open on `cgroups`,
/// then becomes `ids`. Only system calls: safe between fork and exec.
fn enter(cgroups: &[i32], ids: Option<(u32, u32)>) -> std::io::Result<()> {
    for &fd in cgroups {
        // SAFETY: writing to a descriptor handed to us for this.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: plain system calls.
    if let Some((uid, gid)) = ids
        && unsafe { libc::setgid(gid) == -1 || libc::setuid(uid) == -1 }
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn parse_ids(spec: &str) -> Result<(u32, u32), String> {
    spec.split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("expected UID:GID, not {spec:?}"))
}

/// Runs `f` with the learner's effective uid and gid (and no supplementary
/// groups, which the init has no use for), then becomes root again.
fn as_learner<T>(ids: Option<(u32, u32)>, f: impl FnOnce() -> T) -> std::io::Result<T> {
    let Some((uid, gid)) = ids else {
        return Ok(f());
    };
    // SAFETY: plain system calls on this single-threaded process.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) == -1
            || libc::setegid(gid) == -1
            || libc::seteuid(uid) == -1
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    let value = f();
    // SAFETY: as above; the real uid is still root's.
    unsafe {
        if libc::seteuid(0) == -1 || libc::setegid(0) == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(value)
}

fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds receives two new descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits until the program the tracer `tracer` started (its first child)
/// has exited.
fn wait_for_traced_program(tracer: u32) {
    let children = || {
        std::fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse::<i32>().ok())
    };
    // The tracer forks it at once; if the tracer ended first, so did it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let Some(program) = crate::observe::poll_until(deadline, || {
        let alive = std::path::Path::new(&format!("/proc/{tracer}")).exists();
        match children() {
            Some(pid) => Some(Some(pid)),
            None if !alive => Some(None),
            None => None,
        }
    })
    .flatten() else {
        return;
    };
    let Some(pidfd) = rustix::process::Pid::from_raw(program)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
    else {
        return; // gone already
    };
    crate::runner::wait_pidfd(&pidfd);
}

/// Counts the processes of this PID namespace still alive a moment after
/// the program ended (other than its init, ourselves and `spare`, the
/// tracer), then kills them all. Returns the count.
fn kill_the_rest(spare: Option<u32>) -> u32 {
    // A process on its way out (the shell of a popen the program did not
    // pclose) is not left running: it gets a moment to end by itself, so
    // that the count does not depend on how the processes were scheduled.
    let mut alive = alive_others(spare);
    if alive > 0 {
        let deadline = std::time::Instant::now() + crate::runner::STRAGGLER_GRACE;
        crate::observe::poll_until(deadline, || {
            alive = alive_others(spare);
            (alive == 0).then_some(())
        });
    }
    if alive > 0 {
        match spare {
            // Everything we may signal in this namespace, which is
            // everything the learner started.
            // SAFETY: kill(-1) inside the sandbox's own PID namespace.
            None if own_namespace() => unsafe {
                libc::kill(-1, libc::SIGKILL);
            },
            // All but the tracer, one by one, again while a fork storm
            // makes more (its pids cgroup bounds it).
            _ => {
                for _ in 0..100 {
                    let left = others(spare);
                    if left.is_empty() {
                        break;
                    }
                    for pid in left {
                        crate::runner::signal_process(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
    alive
}

/// Whether this init is the first process of a PID namespace of its own
/// (a Windows program's shares Wine's: there its processes are those
/// below it, which it is the reaper of).
fn own_namespace() -> bool {
    std::process::id() == 1
}

/// How many processes of this PID namespace (or below this init, in a
/// shared one) are alive, other than its init, ourselves and `spare`.
fn alive_others(spare: Option<u32>) -> u32 {
    others(spare).len() as u32
}

/// The live processes of this PID namespace other than its init, ourselves
/// and `spare`; in a namespace shared with others, those below us.
fn others(spare: Option<u32>) -> Vec<u32> {
    let me = std::process::id();
    let live = |p: &u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
            let state = stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3));
            !matches!(state, Some("Z") | Some("X") | None)
        })
    };
    if !own_namespace() {
        return descendants(me)
            .into_iter()
            .filter(|&p| Some(p) != spare)
            .filter(live)
            .collect();
    }
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| p != 1 && p != me && Some(p) != spare)
                .filter(live)
                .collect()
        })
        .unwrap_or_default()
}

/// Every process below `pid`, children of any of their threads.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                    if !found.contains(&child) {
                        found.push(child);
                        todo.push(child);
                    }
                }
            }
        }
    }
    found
}

/// Waits for `pid` with wait4: its exit status and peak resident KiB.
fn wait_with_usage(pid: u32) -> (std::process::ExitStatus, u64) {
    let mut raw = 0;
    // SAFETY: plain C struct for the kernel to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid out-pointers; waiting for our own child.
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut raw, 0, &mut usage) };
        if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if rc != -1 && libc::WIFSTOPPED(raw) {
            // It made us its tracer (PTRACE_TRACEME): let it go on alone.
            // SAFETY: detaching from our own tracee.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, pid as libc::pid_t, 0, 0) };
            continue;
        }
        break;
    }
    (
        std::process::ExitStatus::from_raw(raw),
        usage.ru_maxrss as u64,
    )
}
