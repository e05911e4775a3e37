//! `labgrade sandbox-init`: the first process of a learner's sandbox (or,
//! without one, the step between a privileged tracer and the program). It
//! drops to the learner's uid and runs the program. Given a status fd it
//! reports on it, as one JSON [`InitStatus`]: that the program could not be
//! started and precisely why (not installed, not readable by the uid,
//! failing); or, when it runs the program as its child (`--wait`), how the
//! program ended, its peak memory, and how many processes it left in the
//! PID namespace (then killed). It ends as the program ended.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

use serde::{Deserialize, Serialize};

use crate::runner::resolve::{self, StartError};

/// What the sandbox's init tells the grader on its status fd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitStatus {
    /// The program never ran.
    NotStarted(StartError),
    /// The program ran and ended (reported only with `--wait`).
    Ended {
        /// Processes it left in the namespace, killed since.
        left: u32,
        /// Its exit code, or the signal that ended it: the sandbox turns a
        /// signal death into an exit code above 128, this does not.
        code: Option<i32>,
        signal: Option<i32>,
        peak_kib: u64,
    },
}

/// Runs `argv` as described above; `uid` is "UID:GID". With `wait`, the
/// program runs as a child and init stays to count what it left behind;
/// without, init becomes the program (a tracer around it stays privileged).
pub fn run(uid: Option<&str>, status_fd: Option<i32>, wait: bool, argv: &[OsString]) -> ExitCode {
    // The program must not inherit the status pipe (it could forge it).
    if let Some(fd) = status_fd {
        // SAFETY: marking our own descriptor close-on-exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let report = |status: &InitStatus| {
        if let Some(fd) = status_fd {
            // SAFETY: fd was handed to us for exactly this; written once,
            // and left open (close-on-exec) for the program's exec.
            let mut pipe = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let _ = serde_json::to_writer(&mut *pipe, status);
            let _ = pipe.flush();
        }
    };
    let not_started = |error: StartError| {
        eprintln!("sandbox-init: {error}");
        report(&InitStatus::NotStarted(error));
        ExitCode::from(127)
    };
    let Some((program, args)) = argv.split_first() else {
        return not_started(StartError::Failed {
            program: String::new(),
            error: "no program given".into(),
        });
    };
    let path_var = std::env::var_os("PATH");
    // Where the program is, as the grader sees it, before dropping to the
    // learner's uid: so "unreadable" is told from "not installed".
    let located = resolve::locate(program, path_var.as_deref());
    if let Some(spec) = uid
        && let Err(e) = drop_to(spec)
    {
        return not_started(StartError::Failed {
            program: program.to_string_lossy().into_owned(),
            error: format!("cannot become {spec}: {e}"),
        });
    }
    let resolved = match resolve::resolve(program, path_var.as_deref(), located.as_deref()) {
        Ok(path) => path,
        Err(e) => return not_started(e),
    };
    let mut cmd = Command::new(&resolved);
    cmd.arg0(program).args(args);
    let failed = |err: std::io::Error| StartError::Failed {
        program: program.to_string_lossy().into_owned(),
        error: err.to_string(),
    };
    if !wait {
        let err = cmd.exec(); // only returns on failure
        return not_started(failed(err));
    }
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => return not_started(failed(err)),
    };
    // wait4, for the program's own peak memory: the sandbox around us does
    // not pass its children's resource usage on.
    let (status, peak_kib) = wait_with_usage(child.id());
    let left = kill_the_rest();
    report(&InitStatus::Ended {
        left,
        code: status.code(),
        signal: status.signal(),
        peak_kib,
    });
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
