//! Process control on Unix: a process group per learner process, resource
//! limits set between fork and exec, group signals, and waiting for an exit
//! without reaping it, so that its resource usage can be read first.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustix::process::{Pid, Resource, Rlimit, Signal, kill_process_group, setrlimit};

/// Per-process limits, applied in the child before it runs the program.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// CPU seconds: SIGXCPU at this, SIGKILL one second later.
    pub cpu_secs: u64,
    /// Largest file the process may write.
    pub file_bytes: u64,
    /// Open file descriptors.
    pub open_files: u64,
}

/// What a sandbox adds to a process, applied between fork and exec.
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    /// Run as this unprivileged (uid, gid).
    pub uid: Option<(u32, u32)>,
    /// Processes the uid may have (RLIMIT_NPROC; only enforced for a uid
    /// other than root).
    pub processes: Option<u64>,
    /// Address space (RLIMIT_AS), where no memory cgroup can be had.
    pub address_space: Option<u64>,
    /// Open `cgroup.procs` files to join (writing "0" moves the writer).
    pub cgroups: Vec<Arc<File>>,
    /// Hand them to the sandbox's init as fds 4, 5... instead, for it to
    /// put only the learner's program in them: the grader's own processes
    /// (the init, strace, bubblewrap) stay out of the learner's limits, and
    /// what the program leaves charged there (its files in a tmpfs) can
    /// never starve them.
    pub cgroups_via_init: bool,
    /// Hand the child a pipe as fd 3, for the sandbox's init to report on.
    pub status_pipe: bool,
    /// The child runs in a PID namespace of its own (bubblewrap's): once
    /// it has exited, nothing it started can be alive anywhere, so there is
    /// no process group or orphan to look for on the host.
    pub own_pid_namespace: bool,
}

/// At most this many cgroups are joined (one per controller).
const MAX_CGROUPS: usize = 4;

/// Puts the child in a process group of its own (so it and everything it
/// starts can be signalled together), in its cgroups, with limits, no core
/// dumps, and its unprivileged uid. `status_fd` becomes its fd 3.
pub fn prepare(cmd: &mut Command, limits: Limits, confine: &Confinement, status_fd: Option<RawFd>) {
    cmd.process_group(0);
    let cgroups: Vec<RawFd> = confine.cgroups.iter().map(|f| f.as_raw_fd()).collect();
    let via_init = confine.cgroups_via_init && status_fd.is_some();
    assert!(
        cgroups.len() <= MAX_CGROUPS,
        "more cgroups than a process joins"
    );
    let confine = confine.clone();
    // SAFETY: the closure only makes async-signal-safe system calls; it
    // does not allocate or take locks (`cgroups` was collected before fork).
    unsafe {
        cmd.pre_exec(move || {
            if !via_init {
                for &fd in &cgroups {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            // The status pipe as 3 and the init's cgroups as 4, 5...: every
            // source is first copied to a free fd above the targets (so no
            // source is overwritten before it is placed), and all of it
            // before RLIMIT_NOFILE is lowered.
            let above = 4 + MAX_CGROUPS as RawFd;
            let mut sources = [-1 as RawFd; 1 + MAX_CGROUPS];
            let mut count = 0;
            if let Some(fd) = status_fd {
                sources[0] = fd;
                count = 1;
                if via_init {
                    sources[1..=cgroups.len()].copy_from_slice(&cgroups);
                    count += cgroups.len();
                }
            }
            for source in sources.iter_mut().take(count) {
                *source = libc::fcntl(*source, libc::F_DUPFD, above);
                if *source == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (target, &source) in (3..).zip(sources.iter().take(count)) {
                if libc::dup2(source, target) == -1 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(source);
            }
            let next = 3 + count as RawFd;
            set_limits(&limits, confine.processes, confine.address_space)?;
            // Nothing but stdin, stdout, stderr and the status pipe goes on:
            // descriptors whoever started the grader left open (a CI
            // runner's, a shell's) would be a way out of the run.
            // Close-on-exec rather than closed: the pipe std reports a failed
            // exec on must work until the exec itself.
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 4;
            let first = next as libc::c_uint;
            if libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
                for fd in first..65536 {
                    libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            if let Some((uid, gid)) = confine.uid
                && (libc::setgroups(0, std::ptr::null()) == -1
                    || libc::setgid(gid) == -1
                    || libc::setuid(uid) == -1)
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sets the resource limits of the calling process: no core dumps, CPU
/// (SIGXCPU, then SIGKILL a second later), file size, open files, and the
/// processes and address space a sandbox adds. Only system calls: safe
/// between fork and exec.
pub fn set_limits(
    limits: &Limits,
    processes: Option<u64>,
    address_space: Option<u64>,
) -> io::Result<()> {
    let set = |resource, soft: u64, hard: u64| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            },
        )
    };
    set(Resource::Core, 0, 0)?;
    set(Resource::Cpu, limits.cpu_secs, limits.cpu_secs + 1)?;
    set(Resource::Fsize, limits.file_bytes, limits.file_bytes)?;
    set(Resource::Nofile, limits.open_files, limits.open_files)?;
    if let Some(n) = processes {
        set(Resource::Nproc, n, n)?;
    }
    if let Some(bytes) = address_space {
        set(Resource::As, bytes, bytes)?;
    }
    Ok(())
}

/// The pid, in our PID namespace, of the process a pidfd refers to (the
/// kernel's fdinfo says it); None once it has been reaped.
pub fn pidfd_pid(pidfd: &impl AsRawFd) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse::<i64>().ok())
        .and_then(|p| u32::try_from(p).ok())
}

/// Blocks until the process of `pidfd` (not necessarily our child) has
/// exited.
pub fn wait_pidfd(pidfd: &impl AsRawFd) {
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    while unsafe { libc::poll(&mut poll, 1, -1) } == -1
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// How a process ended, read before it is reaped.
#[derive(Debug, Clone, Copy)]
pub struct RawExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Peak resident memory in KiB, the process's and its waited-for
    /// children's, where the system tells it.
    pub peak_rss_kib: Option<u64>,
}

/// Blocks until `pid` (our child) has exited, without reaping it.
pub fn wait_exit(pid: u32) -> io::Result<RawExit> {
    // SAFETY: plain C structs, for the kernel to fill in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let has_usage = loop {
        match waitid_nowait(pid, &mut info, &mut usage) {
            Ok(has_usage) => break has_usage,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    };
    // SAFETY: waitid filled in a child's status.
    let status = unsafe { info.si_status() };
    let (code, signal) = match info.si_code {
        libc::CLD_EXITED => (Some(status), None),
        _ => (None, Some(status)),
    };
    Ok(RawExit {
        code,
        signal,
        peak_rss_kib: has_usage.then_some(usage.ru_maxrss as u64),
    })
}

/// `waitid(P_PID, pid, WEXITED | WNOWAIT)`. Linux's system call takes a
/// fifth argument, a struct rusage, and fills it even with WNOWAIT: the peak
/// memory of a process that is still a zombie. Returns whether it did.
fn waitid_nowait(
    pid: u32,
    info: &mut libc::siginfo_t,
    usage: &mut libc::rusage,
) -> io::Result<bool> {
    // SAFETY: both out-pointers are valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            libc::P_PID,
            pid as libc::id_t,
            info as *mut libc::siginfo_t,
            libc::WEXITED | libc::WNOWAIT,
            usage as *mut libc::rusage,
        )
    };
    if rc == 0 {
        Ok(true)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Kills every process in the cgroup `dir` (its `cgroup.procs`) until it
/// is empty, or a bound is reached. Returns how many were there first,
/// other than `init` (the run's sandbox init).
pub fn sweep_cgroup(dir: &std::path::Path, init: u32) -> u32 {
    let members = || -> Vec<u32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    };
    let first: Vec<u32> = members().into_iter().filter(|&p| p != init).collect();
    for _ in 0..100 {
        let now = members();
        if now.is_empty() {
            break;
        }
        for pid in now {
            if let Some(pid) = self::pid(pid) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    first.len() as u32
}

/// Sends `signal` to every process in the group `pgid`.
pub fn signal_group(pgid: u32, signal: i32) {
    if let (Some(pid), Some(sig)) = (pid(pgid), Signal::from_named_raw(signal)) {
        let _ = kill_process_group(pid, sig);
    }
}

fn pid(raw: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(raw).ok()?)
}

pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;
pub const SIGINT: i32 = libc::SIGINT;

/// Live (not zombie) processes in the group `pgid`, other than `except`.
pub fn group_members(pgid: u32, except: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != except)
        .filter(|&p| {
            stat_fields(p)
                .is_some_and(|(state, _, pgrp)| pgrp == pgid && state != "Z" && state != "X")
        })
        .collect()
}

/// The number of read(2), as /proc/PID/syscall shows it.
#[cfg(target_arch = "x86_64")]
const READ: &str = "0";
#[cfg(target_arch = "aarch64")]
const READ: &str = "63";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const READ: &str = "none";

/// Whether `pid`, or a process below it (a program run under strace), is
/// blocked reading its standard input: a writer waiting for its release.
pub fn waiting_for_stdin(pid: u32) -> bool {
    process_tree(pid)
        .into_iter()
        .any(|p| reading_stdin(p, Path::new(&format!("/proc/{p}/syscall"))))
}

/// Whether the task of process `pid` whose `syscall` file
/// (`/proc/PID/syscall`, or a thread's) is at `path` sits in read(2) on
/// its standard input: fd 0, or a copy of it (Wine reads a handle's
/// descriptor, a dup of fd 0).
fn reading_stdin(pid: u32, path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|call| {
        let mut fields = call.split_whitespace();
        if fields.next() != Some(READ) {
            return false;
        }
        let Some(fd) = fields
            .next()
            .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        else {
            return false;
        };
        fd == 0 || {
            let link = |n: u64| std::fs::read_link(format!("/proc/{pid}/fd/{n}")).ok();
            link(fd).is_some_and(|l| Some(l) == link(0))
        }
    })
}

/// Whether every thread of `pid` is blocked reading its fd 0, and its fd 0
/// is the pipe `ino`: nothing but that pipe can wake it, short of a timer
/// or a signal.
pub fn blocked_on_pipe(pid: u32, ino: u64) -> bool {
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0"));
    if !stdin.is_ok_and(|link| link.as_os_str() == format!("pipe:[{ino}]").as_str()) {
        return false;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        if !reading_stdin(pid, &task.path().join("syscall")) {
            return false;
        }
        any = true;
    }
    any
}

/// `pid` and every live process below it, parents first.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        tree.push(p);
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    tree
}

/// Makes this process the reaper of its orphaned descendants, so that a
/// learner process that double-forks or calls setsid() is re-parented here
/// and can be found and killed.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(rustix::process::getpid().into())?;
    Ok(())
}

/// Kills and reaps the orphans re-parented to this process: its children
/// that are not among `known` (children the runner started and is waiting
/// for, never touched here). Each is reaped by its own pid, so no other
/// child's exit status is ever taken. Returns how many of those `counts`
/// were still alive.
pub fn sweep_orphans(known: &HashSet<u32>, counts: &dyn Fn(u32) -> bool) -> u32 {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut alive = 0;
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if known.contains(&pid) {
            continue;
        }
        let Some((state, ppid, _)) = stat_fields(pid) else {
            continue;
        };
        if ppid != me {
            continue;
        }
        if state != "Z" {
            if counts(pid) {
                alive += 1;
            }
            signal_process(pid, SIGKILL);
        }
        // SAFETY: reaping one specific orphan of ours.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
    }
    alive
}

/// State letter, parent pid and process group from /proc/PID/stat.
fn stat_fields(pid: u32) -> Option<(String, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.to_string();
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Whether `pid` sleeps, waiting for something (state S): not running,
/// not stopped, not on its way out.
pub fn asleep(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|(state, ..)| state == "S")
}

/// Sends `signal` to one process.
pub fn signal_process(target: u32, signal: i32) {
    if let (Some(pid), Some(sig)) = (pid(target), Signal::from_named_raw(signal)) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// CPU time (user and system, its own and its reaped children's) used so
/// far by `pid` and every live process below it.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let total: u64 = process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the name: state is the 3rd of the line, utime the
            // 14th, stime, cutime and cstime the three after it.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            Some(
                fields
                    .get(11..15)?
                    .iter()
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum::<u64>(),
            )
        })
        .sum();
    std::time::Duration::from_millis(total * 1000 / ticks)
}

/// Peak resident memory (VmHWM) of a live process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A signal's conventional name, like `SIGBUS`.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

pub const SIGBUS: i32 = libc::SIGBUS;
pub const SIGSEGV: i32 = libc::SIGSEGV;
pub const SIGXCPU: i32 = libc::SIGXCPU;
pub const SIGXFSZ: i32 = libc::SIGXFSZ;
