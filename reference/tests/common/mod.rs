//! Drives the reference programs from outside, as the grader will: start a
//! writer, wait for events with deadlines (never fixed sleeps), look at the
//! region for ourselves, release the writer.

#![allow(dead_code)] // each test binary uses a different part of this

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single event may take before the test fails. Generous, so
/// a loaded CI machine does not fail a correct program.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn bin(name: &str) -> PathBuf {
    match name {
        "mapfile" => PathBuf::from(env!("CARGO_BIN_EXE_mapfile")),
        "shm_writer" => PathBuf::from(env!("CARGO_BIN_EXE_shm_writer")),
        "shm_reader" => PathBuf::from(env!("CARGO_BIN_EXE_shm_reader")),
        other => panic!("no binary {other}"),
    }
}

/// A region name no other test (or test process) uses.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("/mmaplab-ref-{}-{n}-{tag}", std::process::id())
}

/// Where Linux keeps a POSIX shared memory object.
pub fn shm_path(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name.trim_start_matches('/'))
}

/// Waits until `done` returns true, checking now and then, for at most
/// DEADLINE; panics with `what` if it never does.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// A running writer whose stdin we hold: dropping it kills the writer and
/// removes its region, so a failing test leaves nothing behind.
pub struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    name: Option<String>,
}

impl Writer {
    /// Starts `shm_writer ARGS...` with pipes on all three streams.
    pub fn start(args: &[&str]) -> Writer {
        let mut child = Command::new(bin("shm_writer"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shm_writer");
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, stdout) = channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Writer {
            child,
            stdin,
            stdout,
            name: args.first().map(|s| s.to_string()),
        }
    }

    /// Waits for the writer's first line, which it prints once the message
    /// is in the region.
    pub fn wait_ready(&self) -> String {
        self.stdout
            .recv_timeout(DEADLINE)
            .expect("the writer printed nothing before its deadline")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the writer has already exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Releases the writer the way the contract says (a line, then end of
    /// file) and waits for it to exit.
    pub fn release(mut self) -> ExitStatus {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        self.wait_exit()
    }

    /// Releases the writer by closing its stdin only.
    pub fn close_stdin(mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until("the writer to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(name) = &self.name {
                let _ = std::fs::remove_file(shm_path(name));
            }
        }
    }
}

/// Peak resident memory of a live process, in KiB (VmHWM).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
