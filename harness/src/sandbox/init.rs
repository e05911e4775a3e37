//! `labgrade sandbox-init`: the first process of a learner's sandbox (or,
//! without one, the step between a privileged tracer and the program). It
//! drops to the learner's uid, runs the program, and, given a status fd,
//! afterwards counts the processes the program left in its PID namespace,
//! kills them, and reports the count, the program's ending and its peak
//! memory on that fd (`LEFT exit CODE PEAK_KIB` or `LEFT signal NUMBER
//! PEAK_KIB`); then it ends as the program ended.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

/// Runs `argv` as described above; `uid` is "UID:GID".
pub fn run(uid: Option<&str>, status_fd: Option<i32>, argv: &[OsString]) -> ExitCode {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("sandbox-init: no program given");
        return ExitCode::from(127);
    };
    // The program must not inherit the status pipe (it could forge it).
    if let Some(fd) = status_fd {
        // SAFETY: marking our own descriptor close-on-exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    if let Some(spec) = uid
        && let Err(e) = drop_to(spec)
    {
        eprintln!("sandbox-init: cannot become {spec}: {e}");
        return ExitCode::from(127);
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    let Some(fd) = status_fd else {
        let err = cmd.exec(); // only returns on failure
        eprintln!(
            "sandbox-init: cannot run {}: {err}",
            program.to_string_lossy()
        );
        return ExitCode::from(127);
    };
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!(
                "sandbox-init: cannot run {}: {err}",
                program.to_string_lossy()
            );
            return ExitCode::from(127);
        }
    };
    // wait4, for the program's own peak memory: the sandbox around us does
    // not pass its children's resource usage on.
    let (status, peak_kib) = wait_with_usage(child.id());
    let left = kill_the_rest();
    // The sandbox reports a signal death as an exit code above 128; this
    // line tells the grader exactly how the program ended.
    let ending = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "exit 1".to_string(),
    };
    // SAFETY: fd was handed to us for exactly this, and is used once.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = write!(pipe, "{left} {ending} {peak_kib}");
    drop(pipe);
    if let Some(sig) = status.signal() {
        // End the same way, so the grader sees the program's signal.
        // SAFETY: restoring the default action and raising it on ourselves.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return ExitCode::from(128u8.wrapping_add(sig as u8));
    }
    ExitCode::from(status.code().unwrap_or(1) as u8)
}

fn drop_to(spec: &str) -> std::io::Result<()> {
    let (uid, gid) = spec
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .ok_or_else(|| std::io::Error::other("expected UID:GID"))?;
    // SAFETY: plain system calls on this single-threaded process.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) == -1
            || libc::setgid(gid) == -1
            || libc::setuid(uid) == -1
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Counts the live processes of this PID namespace other than its init and
/// ourselves, then kills them all. Returns the count.
fn kill_the_rest() -> u32 {
    let me = std::process::id();
    let alive = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| p != 1 && p != me)
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                        let state = stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3));
                        !matches!(state, Some("Z") | Some("X") | None)
                    })
                })
                .count() as u32
        })
        .unwrap_or(0);
    if alive > 0 {
        // Everything we may signal in this namespace, which is everything
        // the learner started.
        // SAFETY: kill(-1) inside the sandbox's own PID namespace.
        unsafe { libc::kill(-1, libc::SIGKILL) };
    }
    alive
}

/// Waits for `pid` with wait4: its exit status and peak resident KiB.
fn wait_with_usage(pid: u32) -> (std::process::ExitStatus, u64) {
    let mut raw = 0;
    // SAFETY: plain C struct for the kernel to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid out-pointers; waiting for our own child.
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut raw, 0, &mut usage) };
        if rc != -1 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    (
        std::process::ExitStatus::from_raw(raw),
        usage.ru_maxrss as u64,
    )
}
