//! Evidence of reads and writes, from a seccomp watch the sandbox's init
//! keeps on the program it runs. Tracing every read and write with strace
//! costs a ptrace stop each (about 0.1 ms on these machines: a program
//! printing a few hundred MiB would take minutes), so these calls are
//! watched differently: a seccomp filter, installed in the program just
//! before exec, lets reads and writes of stdout and stderr through at full
//! speed and hands every other one to the init (SECCOMP_RET_USER_NOTIF),
//! which notes what file it touches (by inode, whatever name it was opened
//! under) and, for a write, whether it carries any byte other than zero,
//! then lets it go on (SECCOMP_USER_NOTIF_FLAG_CONTINUE). The filter is
//! inherited by everything the program starts.
//!
//! Timers a program arms (alarm, setitimer, timer_settime,
//! timerfd_settime) are handed over too, whatever their arguments: a
//! program that waits on its stdin with a timer pending may wake up by
//! itself, so the grader holds it the full hold.
//!
//! Linux 5.5 or later. Where the filter cannot be installed the program
//! runs unwatched, and the evidence checks say they cannot run here.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// What a kind of call did to one file, added up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoEvent {
    /// The system call: "write", "pwrite64", "readv", "sendfile"...
    pub call: String,
    /// Whether it moves data into the file (a write, or the out side of a
    /// copy) rather than out of it.
    pub writes: bool,
    /// The file as the program's descriptor named it (`/sandbox/work/x`,
    /// `pipe:[123]`).
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    /// How many such calls, and how many bytes they asked to move.
    pub calls: u64,
    pub bytes: u64,
    /// A write carried a byte other than zero (a copy from another file
    /// always counts as data).
    pub data: bool,
    /// A read on a descriptor in non-blocking mode (it waits for nothing).
    pub nonblocking: bool,
}

/// Everything watched in one run, bounded.
pub type IoEvents = Vec<IoEvent>;

/// The path an armed timer is noted under (it touches no file).
pub const TIMER: &str = "timer";

/// Whether the program armed a timer: it may wake up without any input.
pub fn armed_timer(events: &[IoEvent]) -> bool {
    events.iter().any(|e| e.path == TIMER && e.dev == 0)
}

/// The file `(dev, ino)` names, the grader's way to recognise a target
/// whatever path a program used.
pub type FileId = (u64, u64);

/// The calls that put data into `target`: their names, once each.
pub fn data_writes(events: &[IoEvent], target: FileId) -> Vec<String> {
    let mut calls: Vec<String> = Vec::new();
    for e in events {
        if e.writes && e.data && (e.dev, e.ino) == target && !calls.contains(&e.call) {
            calls.push(e.call.clone());
        }
    }
    calls
}

/// Bytes the program asked to read from `target` with read-like calls.
pub fn bytes_read(events: &[IoEvent], target: FileId) -> u64 {
    events
        .iter()
        .filter(|e| !e.writes && (e.dev, e.ino) == target)
        .map(|e| e.bytes)
        .sum()
}

/// Whether the program waited on the pipe `ino` (the grader's stdin): a
/// blocking read of it, which returns only once the grader writes or
/// closes it.
pub fn waited_on_pipe(events: &[IoEvent], ino: u64) -> bool {
    events
        .iter()
        .any(|e| !e.writes && e.ino == ino && e.path.starts_with("pipe:") && !e.nonblocking)
}

// ------------------------------------------------------------------ filter

#[repr(C)]
#[derive(Clone, Copy)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;
const ARG2_LOW: u32 = 32;

/// The calls watched, and which argument holds the descriptor that decides
/// (stdout and stderr there pass unwatched); None: every call is watched.
fn watched() -> Vec<(i64, Option<u32>)> {
    let mut calls = vec![
        (libc::SYS_read, Some(ARG0_LOW)),
        (libc::SYS_readv, Some(ARG0_LOW)),
        (libc::SYS_pread64, Some(ARG0_LOW)),
        (libc::SYS_preadv, Some(ARG0_LOW)),
        (libc::SYS_preadv2, Some(ARG0_LOW)),
        (libc::SYS_write, Some(ARG0_LOW)),
        (libc::SYS_writev, Some(ARG0_LOW)),
        (libc::SYS_pwrite64, Some(ARG0_LOW)),
        (libc::SYS_pwritev, Some(ARG0_LOW)),
        (libc::SYS_pwritev2, Some(ARG0_LOW)),
        (libc::SYS_sendfile, Some(ARG0_LOW)),
        (libc::SYS_copy_file_range, Some(ARG2_LOW)),
        (libc::SYS_splice, Some(ARG2_LOW)),
        (libc::SYS_setitimer, None),
        (libc::SYS_timer_settime, None),
        (libc::SYS_timerfd_settime, None),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.push((libc::SYS_alarm, None));
    calls.sort();
    calls
}

/// The seccomp program, built before fork (the child may not allocate).
pub struct Filter {
    prog: Vec<SockFilter>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter::new()
    }
}

impl Filter {
    /// The program:
    ///
    /// ```text
    ///  0  ld arch; not the native ABI (i386 calls on x86_64 would slip
    ///  2     past the table) -> ENOSYS
    ///  3  ld nr; x32 calls (bit 30) -> ENOSYS
    ///  6  one jeq per watched call -> its check; none -> ALLOW
    ///     check: ld its descriptor; 1 or 2 -> ALLOW; else USER_NOTIF
    ///     (a call watched whatever its arguments: USER_NOTIF at once)
    ///     ALLOW
    /// ```
    pub fn new() -> Filter {
        let ins = |code, jt, jf, k| SockFilter { code, jt, jf, k };
        let ret = |k| ins(BPF_RET_K, 0, 0, k);
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let calls = watched();
        let n = calls.len();
        let mut prog = vec![
            ins(BPF_LD_W_ABS, 0, 0, ARCH),
            ins(BPF_JEQ_K, 1, 0, AUDIT_ARCH),
            ret(enosys),
            ins(BPF_LD_W_ABS, 0, 0, NR),
            ins(BPF_JGE_K, 0, 1, 0x4000_0000),
            ret(enosys),
        ];
        // From instruction j, a jump of k lands on j + 1 + k.
        for (i, (nr, _)) in calls.iter().enumerate() {
            prog.push(ins(BPF_JEQ_K, (n + 3 * i) as u8, 0, *nr as u32));
        }
        prog.push(ret(libc::SECCOMP_RET_ALLOW));
        for (i, (_, arg)) in calls.iter().enumerate() {
            let left = 4 * (n - i);
            match arg {
                Some(arg) => {
                    prog.push(ins(BPF_LD_W_ABS, 0, 0, *arg));
                    prog.push(ins(BPF_JEQ_K, (left - 2) as u8, 0, 1));
                    prog.push(ins(BPF_JEQ_K, (left - 3) as u8, 0, 2));
                }
                // Every block is four long, for the jumps above.
                None => prog.extend([ret(libc::SECCOMP_RET_USER_NOTIF); 3]),
            }
            prog.push(ret(libc::SECCOMP_RET_USER_NOTIF));
        }
        prog.push(ret(libc::SECCOMP_RET_ALLOW));
        Filter { prog }
    }

    /// In the child, between fork and exec: forbid new privileges, install
    /// the filter with a listener, and send the listener to the init over
    /// `sock` (or, if it cannot be installed, a byte that says so and go on
    /// unwatched). Only system calls: nothing is allocated.
    ///
    /// # Safety
    /// Call only in a forked child before exec; `sock` must be a connected
    /// Unix socket.
    pub unsafe fn install_and_send(&self, sock: RawFd) {
        let prog = SockFprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr(),
        };
        // SAFETY: plain system calls on valid arguments.
        let listener = unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                -1
            } else {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    &prog as *const SockFprog,
                ) as RawFd
            }
        };
        // SAFETY: a stack buffer for one descriptor, as CMSG_* describe.
        unsafe {
            let mut byte = [if listener >= 0 { 1u8 } else { 0u8 }];
            let mut iov = libc::iovec {
                iov_base: byte.as_mut_ptr().cast(),
                iov_len: 1,
            };
            let mut control = [0u64; 4];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if listener >= 0 {
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(4) as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), listener);
            }
            libc::sendmsg(sock, &msg, 0);
            if listener >= 0 {
                libc::close(listener);
            }
            libc::close(sock);
        }
    }
}

/// A filter that forbids a program to look into or steer other processes
/// of its uid (ptrace, process_vm_readv, process_vm_writev: EPERM). A
/// Windows program shares Wine's PID namespace and uid with the grader's
/// own Windows programs (the probe, the reference peers), which it must
/// not reach. Built before fork, like the watch's.
pub struct Guard {
    prog: Vec<SockFilter>,
}

impl Guard {
    pub fn new() -> Guard {
        let ins = |code, jt, jf, k| SockFilter { code, jt, jf, k };
        let ret = |k| ins(BPF_RET_K, 0, 0, k);
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let denied = [
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
        ];
        let mut prog = vec![
            ins(BPF_LD_W_ABS, 0, 0, ARCH),
            // Another ABI's calls: denied as a whole (ENOSYS).
            ins(BPF_JEQ_K, 1, 0, AUDIT_ARCH),
            ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
            ins(BPF_LD_W_ABS, 0, 0, NR),
        ];
        for nr in denied {
            prog.push(ins(BPF_JEQ_K, 0, 1, nr as u32));
            prog.push(ret(eperm));
        }
        prog.push(ret(libc::SECCOMP_RET_ALLOW));
        Guard { prog }
    }

    /// In the child, between fork and exec: forbid new privileges and
    /// install the filter. Whether it took.
    ///
    /// # Safety
    /// Call only in a forked child before exec.
    pub unsafe fn install(&self) -> bool {
        let prog = SockFprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr(),
        };
        // SAFETY: plain system calls on valid arguments.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                && libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &prog as *const SockFprog,
                ) == 0
        }
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

/// The init's side: the listener the child sent, if it could install one.
pub fn receive_listener(sock: &OwnedFd) -> Option<OwnedFd> {
    // SAFETY: a stack buffer for one descriptor, as CMSG_* describe.
    unsafe {
        let timeout = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let mut byte = [0u8];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        if libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) != 1 || byte[0] != 1 {
            return None;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Some(OwnedFd::from_raw_fd(fd))
    }
}

// ------------------------------------------------------------------ watch

/// Distinct events kept; past this, calls are still let through, unnoted.
/// With paths cut to PATH_KEEP bytes, the init's report stays well inside
/// a pipe's buffer (64 KiB), so writing it never waits for the grader.
const MAX_EVENTS: usize = 128;
const PATH_KEEP: usize = 200;
/// Bytes of one write looked at to tell data from zeros.
const DATA_LOOK: usize = 64 * 1024;

/// The loop answering the filter's notifications, on a thread of the init.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<IoEvents>,
}

impl Watch {
    pub fn start(listener: OwnedFd) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(listener, &flag));
        Watch { stop, thread }
    }

    /// Once the program (and what it started) is gone: what was seen.
    pub fn finish(self) -> IoEvents {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

type Key = (String, bool, u64, u64, bool, bool);

fn serve(listener: OwnedFd, stop: &AtomicBool) -> IoEvents {
    let fd = listener.as_raw_fd();
    let mut seen: BTreeMap<Key, IoEvent> = BTreeMap::new();
    loop {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, 50) };
        if ready == 0 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            continue;
        }
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if poll.revents & libc::POLLIN == 0 {
            // POLLHUP: every watched process is gone.
            break;
        }
        // SAFETY: the kernel fills a zeroed request.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
            continue; // the caller died meanwhile
        }
        if seen.len() < MAX_EVENTS {
            for event in examine(&req) {
                let key = (
                    event.call.clone(),
                    event.writes,
                    event.dev,
                    event.ino,
                    event.data,
                    event.nonblocking,
                );
                let entry = seen.entry(key).or_insert_with(|| IoEvent {
                    calls: 0,
                    bytes: 0,
                    ..event.clone()
                });
                entry.calls += 1;
                entry.bytes += event.bytes;
            }
        }
        let resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        // SAFETY: a valid response for the request just received.
        unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    }
    seen.into_values().collect()
}

/// What one notified call does, to which files.
fn examine(req: &libc::seccomp_notif) -> Vec<IoEvent> {
    let pid = req.pid;
    let args = req.data.args;
    let nr = req.data.nr as i64;
    let name = |n: i64| -> &'static str {
        match n {
            libc::SYS_read => "read",
            libc::SYS_readv => "readv",
            libc::SYS_pread64 => "pread64",
            libc::SYS_preadv => "preadv",
            libc::SYS_preadv2 => "preadv2",
            libc::SYS_write => "write",
            libc::SYS_writev => "writev",
            libc::SYS_pwrite64 => "pwrite64",
            libc::SYS_pwritev => "pwritev",
            libc::SYS_pwritev2 => "pwritev2",
            libc::SYS_sendfile => "sendfile",
            libc::SYS_copy_file_range => "copy_file_range",
            libc::SYS_splice => "splice",
            libc::SYS_setitimer => "setitimer",
            libc::SYS_timer_settime => "timer_settime",
            libc::SYS_timerfd_settime => "timerfd_settime",
            #[cfg(target_arch = "x86_64")]
            libc::SYS_alarm => "alarm",
            _ => "?",
        }
    };
    let call = name(nr);
    let mut out = Vec::new();
    let mut note = |fd: u64, writes: bool, bytes: u64, data: bool| {
        if let Some(mut e) = describe_fd(pid, fd as i32) {
            e.call = call.to_string();
            e.writes = writes;
            e.bytes = bytes;
            e.data = data;
            out.push(e);
        }
    };
    match nr {
        libc::SYS_read | libc::SYS_pread64 => note(args[0], false, args[2], false),
        libc::SYS_readv | libc::SYS_preadv | libc::SYS_preadv2 => {
            note(args[0], false, iov_total(pid, args[1], args[2]), false)
        }
        libc::SYS_write | libc::SYS_pwrite64 => {
            let data = buffer_has_data(pid, args[1], args[2]);
            note(args[0], true, args[2], data)
        }
        libc::SYS_writev | libc::SYS_pwritev | libc::SYS_pwritev2 => {
            let (total, data) = iov_data(pid, args[1], args[2]);
            note(args[0], true, total, data)
        }
        libc::SYS_sendfile => {
            note(args[1], false, args[3], false);
            note(args[0], true, args[3], true);
        }
        libc::SYS_copy_file_range | libc::SYS_splice => {
            note(args[0], false, args[4], false);
            note(args[2], true, args[4], true);
        }
        _ if call != "?" => out.push(IoEvent {
            call: call.to_string(),
            writes: false,
            path: TIMER.to_string(),
            dev: 0,
            ino: 0,
            calls: 1,
            bytes: 0,
            data: false,
            nonblocking: false,
        }),
        _ => {}
    }
    out
}

/// The file behind `fd` of `pid`: only regular files and pipes are worth
/// noting (terminals, sockets and devices are not where the lab's data is).
fn describe_fd(pid: u32, fd: i32) -> Option<IoEvent> {
    let link = format!("/proc/{pid}/fd/{fd}");
    let mut path = std::fs::read_link(&link).ok()?.display().to_string();
    if path.len() > PATH_KEEP {
        let mut cut = PATH_KEEP;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
    }
    let meta = std::fs::metadata(&link).ok()?;
    let kind = meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    if !(kind.is_file() || kind.is_fifo()) {
        return None;
    }
    let nonblocking = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        })
        .is_some_and(|flags| flags & libc::O_NONBLOCK as u32 != 0);
    Some(IoEvent {
        call: String::new(),
        writes: false,
        path,
        dev: meta.dev(),
        ino: meta.ino(),
        calls: 0,
        bytes: 0,
        data: false,
        nonblocking,
    })
}

fn read_memory(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; len];
    let n = mem.read_at(&mut buf, addr).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Whether the `len` bytes at `addr` hold anything but zeros (the first
/// DATA_LOOK of them; a buffer that cannot be read counts as data).
fn buffer_has_data(pid: u32, addr: u64, len: u64) -> bool {
    let len = (len as usize).min(DATA_LOOK);
    if len == 0 {
        return false;
    }
    read_memory(pid, addr, len).is_none_or(|bytes| bytes.iter().any(|&b| b != 0))
}

/// The iovec array at `iov` (`count` entries, at most 64).
fn iovecs(pid: u32, iov: u64, count: u64) -> Vec<(u64, u64)> {
    let count = count.min(64) as usize;
    let Some(raw) = read_memory(pid, iov, count * 16) else {
        return Vec::new();
    };
    raw.chunks_exact(16)
        .map(|c| {
            (
                u64::from_ne_bytes(c[..8].try_into().unwrap()),
                u64::from_ne_bytes(c[8..].try_into().unwrap()),
            )
        })
        .collect()
}

fn iov_total(pid: u32, iov: u64, count: u64) -> u64 {
    iovecs(pid, iov, count).iter().map(|(_, len)| len).sum()
}

fn iov_data(pid: u32, iov: u64, count: u64) -> (u64, bool) {
    let vecs = iovecs(pid, iov, count);
    let total = vecs.iter().map(|(_, len)| len).sum();
    let data = vecs
        .iter()
        .any(|&(base, len)| buffer_has_data(pid, base, len));
    (total, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter on one call, as the kernel would.
    fn run(filter: &Filter, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        run_prog(&filter.prog, arch, nr, args)
    }

    /// Runs a seccomp program on one call, as the kernel would.
    fn run_prog(prog: &[SockFilter], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as i32).to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            match ins.code {
                BPF_LD_W_ABS => {
                    let at = ins.k as usize;
                    acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                    pc += 1;
                }
                BPF_JEQ_K | BPF_JGE_K => {
                    let taken = if ins.code == BPF_JEQ_K {
                        acc == ins.k
                    } else {
                        acc >= ins.k
                    };
                    pc += 1 + if taken { ins.jt } else { ins.jf } as usize;
                }
                BPF_RET_K => return ins.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    #[test]
    fn the_guard_denies_reaching_into_other_processes_and_nothing_else() {
        let g = Guard::new();
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        for nr in [
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
        ] {
            assert_eq!(run_prog(&g.prog, AUDIT_ARCH, nr, [0; 6]), eperm, "{nr}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_mmap,
            libc::SYS_kill,
            libc::SYS_clone,
        ] {
            assert_eq!(
                run_prog(&g.prog, AUDIT_ARCH, nr, [0; 6]),
                libc::SECCOMP_RET_ALLOW,
                "{nr}"
            );
        }
    }

    #[test]
    fn the_filter_hands_over_file_io_and_lets_stdout_and_everything_else_through() {
        let f = Filter::new();
        let fd = |n: u64| [n, 0, 0, 0, 0, 0];
        // (target fd, its args for a call whose target is argument 2, what
        // the filter must answer, what it is)
        let cases = [
            (1, [5, 0, 1, 0, 0, 0], libc::SECCOMP_RET_ALLOW, "stdout"),
            (2, [5, 0, 2, 0, 0, 0], libc::SECCOMP_RET_ALLOW, "stderr"),
            (
                7,
                [1, 0, 7, 0, 0, 0],
                libc::SECCOMP_RET_USER_NOTIF,
                "a file",
            ),
        ];
        for (nr, arg) in watched() {
            for (target, low, want, what) in cases {
                let Some(arg) = arg else {
                    // A timer, whatever its arguments (alarm(1) too).
                    let got = run(&f, AUDIT_ARCH, nr, low);
                    assert_eq!(got, libc::SECCOMP_RET_USER_NOTIF, "{nr} with {low:?}");
                    continue;
                };
                let args = if arg == ARG2_LOW { low } else { fd(target) };
                assert_eq!(run(&f, AUDIT_ARCH, nr, args), want, "{nr} to {what}");
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            run(&f, AUDIT_ARCH, libc::SYS_alarm, fd(1)),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(
            run(&f, AUDIT_ARCH, libc::SYS_read, fd(0)),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(
            run(&f, AUDIT_ARCH, libc::SYS_getpid, fd(7)),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&f, 0x4000_0003, libc::SYS_getpid, fd(7)),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            run(&f, AUDIT_ARCH, libc::SYS_write | 0x4000_0000, fd(7)),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn evidence_is_judged_by_the_file_not_its_name() {
        let e = |call: &str, writes: bool, ino: u64, data: bool| IoEvent {
            call: call.into(),
            writes,
            path: format!("/w/name-{call}"),
            dev: 1,
            ino,
            calls: 1,
            bytes: 13,
            data,
            nonblocking: false,
        };
        let events = vec![
            e("pwrite64", true, 9, true),
            e("write", true, 9, false),
            e("read", false, 9, false),
            e("write", true, 8, true),
        ];
        assert_eq!(data_writes(&events, (1, 9)), vec!["pwrite64".to_string()]);
        assert_eq!(bytes_read(&events, (1, 9)), 13);
        assert_eq!(bytes_read(&events, (1, 7)), 0);
        let pipe = IoEvent {
            path: "pipe:[77]".into(),
            ino: 77,
            ..e("read", false, 77, false)
        };
        assert!(waited_on_pipe(std::slice::from_ref(&pipe), 77));
        assert!(!waited_on_pipe(
            &[IoEvent {
                nonblocking: true,
                ..pipe
            }],
            77
        ));
    }
}
