//! Containing learner code. An isolation ladder, probed once per grading
//! and named in every report:
//!
//! - `full`: bubblewrap puts each process in private PID, network, IPC,
//!   UTS and mount namespaces: the system read-only, a private /tmp, its own
//!   working directory, and this grading's shm directory (a size-bounded
//!   tmpfs) as /dev/shm. As root, learner code runs as an unprivileged uid.
//! - `uid`: root without namespaces (a container such as Gradescope's):
//!   learner code runs as an unprivileged uid; /dev/shm is the machine's.
//! - `minimal`: process groups and limits only, and a lock per region name.
//!
//! Every level adds per-process limits, cgroups where writable, and the
//! runner's process groups, deadlines and orphan sweep.

mod cgroup;
pub mod init;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::observe::region::SYSTEM_SHM_DIR;
use crate::runner::{Confinement, Spec};

pub use cgroup::Cgroups;

/// How strongly learner code is contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Minimal,
    Uid,
    Full,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Minimal => "minimal",
            Level::Uid => "uid",
            Level::Full => "full",
        }
    }
}

/// The first unprivileged uid (and gid) learner code runs as, when the
/// grader is root; job slot N uses this plus N.
pub const UID_BASE: u32 = 64000;

/// Limits every learner process gets, whatever the level.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Memory per process (a cgroup's limit, or RLIMIT_AS without one).
    pub memory_bytes: u64,
    /// Processes per process tree (a pids cgroup, or RLIMIT_NPROC).
    pub processes: u64,
    /// The size of this grading's shm directory, where it is a tmpfs.
    pub shm_bytes: u64,
}

pub const BUDGET: Budget = Budget {
    memory_bytes: 1 << 30,
    processes: 64,
    shm_bytes: 512 << 20,
};

/// Where the sandbox puts things, inside it.
const SANDBOX_ROOT: &str = "/sandbox";

/// What a process is, for how it is contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A learner's program (or a reference peer): no network.
    Run,
    /// A build: the submission writable, the toolchain readable, no network.
    Build,
}

/// The probed environment: which level, and what it is made of.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub level: Level,
    /// Why the level is not higher, and any weaker guarantee.
    pub notes: Vec<String>,
    /// Why the full level could not be had, when it could not.
    pub why_not_full: Option<String>,
    bwrap: Option<PathBuf>,
    root: bool,
    /// Learners' (uid, gid), when the grader is root.
    uid: Option<(u32, u32)>,
    cgroups: Option<Cgroups>,
    /// The Rust toolchain's sysroot, bound read-only into builds.
    toolchain: Option<PathBuf>,
    labgrade: PathBuf,
}

/// One grading's place: its directories and how its regions are kept.
pub struct Area {
    pub dir: PathBuf,
    /// Where regions appear as files for this grading.
    pub shm_dir: PathBuf,
    /// Whether `shm_dir` is this grading's alone (so no locks are needed).
    pub private_shm: bool,
    /// labgrade as learner code may run it (the reference peers run as the
    /// learner's uid, so they share regions with learner programs).
    pub labgrade: PathBuf,
    /// What of `shm_dir` goes when the grading ends.
    cleanup_shm: ShmCleanup,
}

/// How a grading's shm directory is taken away when it ends.
enum ShmCleanup {
    /// It is the machine's /dev/shm: nothing to take.
    Nothing,
    /// A directory of this grading's in the machine's /dev/shm.
    Remove(PathBuf),
    /// A tmpfs mounted for this grading: unmounted (with what is in it), so
    /// the run directory around it can be removed.
    Unmount(PathBuf),
}

impl Drop for Area {
    fn drop(&mut self) {
        match &self.cleanup_shm {
            ShmCleanup::Nothing => {}
            ShmCleanup::Remove(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            ShmCleanup::Unmount(dir) => {
                let _ = rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH);
            }
        }
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Called first thing, while the grader is still one thread: as root, gives
/// the grader a private mount namespace, so the tmpfs each grading mounts
/// for its regions is invisible outside and vanishes with the grader.
pub fn enter_private_mounts() -> bool {
    if !is_root() {
        return false;
    }
    use rustix::mount::{MountPropagationFlags, mount_change};
    use rustix::thread::{UnshareFlags, unshare_unsafe};
    // SAFETY: called before any other thread exists.
    let unshared = unsafe { unshare_unsafe(UnshareFlags::NEWNS) }.is_ok();
    unshared
        && mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .is_ok()
}

impl Sandbox {
    /// Finds the strongest level up to `max` that works here. `slot` picks
    /// the unprivileged uid, so parallel gradings never share one.
    pub fn probe(max: Level, slot: u32, private_mounts: bool) -> Sandbox {
        let root = is_root();
        let labgrade = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("labgrade"));
        let mut notes = Vec::new();
        let uid = root.then_some((UID_BASE + slot, UID_BASE + slot));
        let cgroups = Cgroups::probe();
        if cgroups.is_none() {
            notes.push(
                "no writable cgroup: memory bounded by RLIMIT_AS, processes by RLIMIT_NPROC".into(),
            );
        }
        let toolchain = rust_sysroot();
        let mut sandbox = Sandbox {
            level: Level::Minimal,
            notes: Vec::new(),
            why_not_full: None,
            bwrap: None,
            root,
            uid,
            cgroups,
            toolchain,
            labgrade,
        };
        let bwrap = find_in_path("bwrap");
        let full = match (&bwrap, max >= Level::Full) {
            (_, false) => Err("full isolation was not asked for".to_string()),
            (None, true) => Err("bubblewrap (bwrap) is not installed".to_string()),
            (Some(path), true) => sandbox.bwrap_works(path),
        };
        match full {
            Ok(()) => {
                sandbox.level = Level::Full;
                sandbox.bwrap = bwrap;
                if !private_mounts {
                    notes.push(
                        "regions live in a directory of the machine's /dev/shm, bounded only by it"
                            .into(),
                    );
                }
            }
            Err(ref why) if root && max >= Level::Uid => {
                sandbox.level = Level::Uid;
                notes.push(format!(
                    "no namespaces ({why}): shared /tmp and /dev/shm, a lock per region name"
                ));
            }
            Err(ref why) => {
                sandbox.level = Level::Minimal;
                notes.push(format!(
                    "no sandbox ({why}); learner code runs as the grader's user"
                ));
                notes.push("process groups, limits and a lock per region name only".into());
            }
        }
        sandbox.why_not_full = full.err();
        if let Some(problem @ ToolchainProblem::Unreadable { .. }) = sandbox.toolchain_problem() {
            notes.push(format!("{problem}: Cargo submissions cannot be built"));
        }
        sandbox.notes = notes;
        sandbox
    }

    fn bwrap_works(&self, bwrap: &Path) -> Result<(), String> {
        let mut cmd = Command::new(bwrap);
        cmd.args(self.bwrap_namespaces(false)).args([
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "true",
        ]);
        match cmd.output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "bwrap cannot make namespaces here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("bwrap cannot run: {e}")),
        }
    }

    /// The namespaces: as root bwrap makes them without a user namespace and
    /// the sandbox's init drops to the learner uid; otherwise a user
    /// namespace comes first.
    fn bwrap_namespaces(&self, network: bool) -> Vec<&'static str> {
        let mut args = vec![
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ];
        if !network {
            args.push("--unshare-net");
        }
        if !self.root {
            args.push("--unshare-user");
        }
        args.extend(["--die-with-parent", "--new-session"]);
        args
    }

    /// The unprivileged uid learner code runs as, when it runs as another
    /// user than the grader's.
    pub fn learner_uid(&self) -> Option<u32> {
        self.uid.map(|(uid, _)| uid)
    }

    /// Where per-process cgroups are made, if anywhere.
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.cgroups.as_ref()
    }

    /// Why builds at this level cannot use the Rust toolchain, if they
    /// cannot: there is none, or (at the uid level, where nothing binds it
    /// into reach) the sandbox's uid cannot read it.
    pub fn toolchain_problem(&self) -> Option<ToolchainProblem> {
        let Some(toolchain) = &self.toolchain else {
            return Some(ToolchainProblem::Missing);
        };
        let (uid, _) = self.uid?;
        if self.level != Level::Uid {
            return None;
        }
        unreadable_by_others(toolchain).map(|blocked| ToolchainProblem::Unreadable {
            path: toolchain.clone(),
            blocked,
            uid,
        })
    }

    /// Sets up one grading's area in `dir`.
    pub fn area(&self, dir: &Path, private_mounts: bool) -> std::io::Result<Area> {
        let area = match self.level {
            Level::Full => {
                let (shm_dir, cleanup_shm) = if private_mounts {
                    let shm = dir.join("shm");
                    std::fs::create_dir_all(&shm)?;
                    mount_tmpfs(&shm, BUDGET.shm_bytes)?;
                    (shm.clone(), ShmCleanup::Unmount(shm))
                } else {
                    let shm = tempfile::Builder::new()
                        .prefix("labgrade-")
                        .tempdir_in(SYSTEM_SHM_DIR)?
                        .keep();
                    (shm.clone(), ShmCleanup::Remove(shm))
                };
                Area {
                    dir: dir.to_path_buf(),
                    shm_dir,
                    private_shm: true,
                    labgrade: self.labgrade.clone(),
                    cleanup_shm,
                }
            }
            Level::Uid | Level::Minimal => Area {
                dir: dir.to_path_buf(),
                shm_dir: PathBuf::from(SYSTEM_SHM_DIR),
                private_shm: false,
                labgrade: self.labgrade_for_others(dir)?,
                cleanup_shm: ShmCleanup::Nothing,
            },
        };
        self.give(&area.shm_dir)?;
        Ok(area)
    }

    /// At the uid level learner code runs as another user, straight from
    /// the run directory: let it pass through (but not list) the directory,
    /// and give it a copy of labgrade if the installed one is out of reach.
    fn labgrade_for_others(&self, dir: &Path) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        if self.uid.is_none() {
            return Ok(self.labgrade.clone());
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
        if unreadable_by_others(&self.labgrade).is_none() {
            return Ok(self.labgrade.clone());
        }
        let copy = dir.join("labgrade");
        std::fs::copy(&self.labgrade, &copy)?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
        Ok(copy)
    }

    /// Removes what this grading left in the system (its cgroups).
    pub fn finish(&self) {
        if let Some(cg) = &self.cgroups {
            cg.clean();
        }
    }

    /// Hands a directory (and what is in it) to the learner uid.
    pub fn give(&self, path: &Path) -> std::io::Result<()> {
        let Some((uid, gid)) = self.uid else {
            return Ok(());
        };
        if path.starts_with(SYSTEM_SHM_DIR) && path == Path::new(SYSTEM_SHM_DIR) {
            return Ok(());
        }
        chown_tree(path, uid, gid)
    }

    /// `spec` as it must run at this level: inside bubblewrap, as the
    /// learner uid, in cgroups, with limits.
    pub fn contain(&self, mut spec: Spec, area: &Area, purpose: Purpose) -> Spec {
        let mut confine = Confinement::default();
        match &self.cgroups {
            Some(cg) => match cg.create(BUDGET) {
                Ok(group) => {
                    confine.cgroups = group.procs;
                    spec.memory_cgroups = group.memory_dirs;
                }
                Err(_) => confine.address_space = Some(4 * BUDGET.memory_bytes),
            },
            None => confine.address_space = Some(4 * BUDGET.memory_bytes),
        }
        if self.uid.is_some() {
            confine.processes = Some(BUDGET.processes);
        }
        let _ = self.give(&spec.dir);
        match self.level {
            Level::Minimal => {}
            Level::Uid => {
                // The helper drops to the learner uid just before exec, so a
                // tracer around it can stay privileged.
                let (uid, gid) = self.uid.expect("the uid level needs root");
                let mut args = vec![
                    "sandbox-init".to_string(),
                    "--status-fd".into(),
                    "3".into(),
                    "--uid".into(),
                    format!("{uid}:{gid}"),
                    "--".into(),
                ];
                args.push(spec.program.display().to_string());
                args.append(&mut spec.args);
                spec.program = area.labgrade.clone();
                spec.args = args;
                confine.status_pipe = true;
            }
            Level::Full => {
                confine.status_pipe = true;
                spec = self.bwrapped(spec, area, purpose);
            }
        }
        spec.confine = confine;
        spec
    }

    fn bwrapped(&self, mut spec: Spec, area: &Area, purpose: Purpose) -> Spec {
        let bwrap = self.bwrap.clone().expect("the full level has bwrap");
        let mut a: Vec<String> = self
            .bwrap_namespaces(false)
            .into_iter()
            .map(String::from)
            .collect();
        let mut arg = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        for dir in [
            "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
        ] {
            arg(&["--ro-bind-try", dir, dir]);
        }
        arg(&[
            "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
        ]);
        // Directories bwrap makes on its own for a bind's parents copy the
        // host's modes (often 0700): make these ones explicitly.
        arg(&["--perms", "0755", "--dir", SANDBOX_ROOT]);
        arg(&["--perms", "0755", "--dir", &format!("{SANDBOX_ROOT}/prog")]);
        let shm = area.shm_dir.display().to_string();
        arg(&["--bind", &shm, "/dev/shm"]);
        let inside = |name: &str| format!("{SANDBOX_ROOT}/{name}");
        let labgrade = inside("labgrade");
        arg(&["--ro-bind", &self.labgrade.display().to_string(), &labgrade]);
        let work = spec.dir.display().to_string();
        let cwd = inside("work");
        arg(&["--bind", &work, &cwd, "--chdir", &cwd]);

        // The program itself: a file of the submission's (bound read-only),
        // labgrade (for the reference peers), or a system command.
        let program = if spec.program == self.labgrade || spec.program == area.labgrade {
            labgrade.clone()
        } else if spec.program.is_absolute() && !spec.program.starts_with("/usr") {
            let name = spec
                .program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dest = inside(&format!("prog/{name}"));
            arg(&["--ro-bind", &spec.program.display().to_string(), &dest]);
            dest
        } else {
            spec.program.display().to_string()
        };

        let mut env: Vec<(OsString, OsString)> = spec
            .env
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.to_str(),
                    Some("HOME" | "TMPDIR" | "PATH" | "CARGO_HOME" | "RUSTUP_HOME")
                )
            })
            .cloned()
            .collect();
        env.push(("HOME".into(), cwd.clone().into()));
        env.push(("TMPDIR".into(), "/tmp".into()));
        let mut path = String::from("/usr/local/bin:/usr/bin:/bin");
        if purpose == Purpose::Build {
            if let Some(tc) = &self.toolchain {
                let dest = inside("toolchain");
                arg(&["--ro-bind", &tc.display().to_string(), &dest]);
                path = format!("{dest}/bin:{path}");
            }
            env.push(("CARGO_HOME".into(), format!("{cwd}/.cargo-home").into()));
        }
        env.push(("PATH".into(), path.into()));

        // The sandbox's init: drops to the learner uid (as root), runs the
        // program, then counts and kills what it left behind.
        arg(&[
            "--",
            &labgrade,
            "sandbox-init",
            "--wait",
            "--status-fd",
            "3",
        ]);
        if let Some((uid, gid)) = self.uid {
            arg(&["--uid", &format!("{uid}:{gid}")]);
        }
        arg(&["--", &program]);
        a.append(&mut spec.args);
        spec.program = bwrap;
        spec.args = a;
        spec.env = env;
        spec
    }

    /// Where the toolchain appears to a build at this level (none when
    /// builds cannot use it).
    pub fn toolchain_bin(&self) -> Option<PathBuf> {
        if self.toolchain_problem().is_some() {
            return None;
        }
        match self.level {
            Level::Full => self
                .toolchain
                .as_ref()
                .map(|_| PathBuf::from(format!("{SANDBOX_ROOT}/toolchain/bin"))),
            _ => self.toolchain.as_ref().map(|t| t.join("bin")),
        }
    }

    /// The toolchain's sysroot outside any sandbox, for steps the grader
    /// runs itself (`cargo vendor`).
    pub fn toolchain(&self) -> Option<&Path> {
        self.toolchain.as_deref()
    }

    /// The same directory as the build sees it.
    pub fn build_path(&self, dir: &Path, sub: &str) -> PathBuf {
        match self.level {
            Level::Full => PathBuf::from(format!("{SANDBOX_ROOT}/work")).join(sub),
            _ => dir.join(sub),
        }
    }
}

/// Why the Rust toolchain cannot serve builds at this level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolchainProblem {
    #[error("no Rust toolchain was found (rustc is not on the grader's PATH)")]
    Missing,
    #[error(
        "the Rust toolchain at {path} is not readable by the sandbox's uid {uid} ({blocked} is closed to other users)"
    )]
    Unreadable {
        path: PathBuf,
        blocked: PathBuf,
        uid: u32,
    },
}

impl ToolchainProblem {
    /// What to do about it.
    pub fn fix(&self) -> &'static str {
        match self {
            ToolchainProblem::Missing => "install Rust with rustup (https://rustup.rs)",
            ToolchainProblem::Unreadable { .. } => {
                "install the toolchain where every user can read it (rustup with RUSTUP_HOME and CARGO_HOME under /opt), or grade at the full level (install bubblewrap), where the sandbox binds it in"
            }
        }
    }
}

/// The first directory on the way to `path` (or `path` itself) that users
/// other than its owner and group cannot pass, as an unprivileged uid that
/// owns nothing would meet it; None when every one can be passed.
pub fn unreadable_by_others(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // Directories on the way need only be passed (x); the toolchain itself
    // is listed and read too (r and x).
    let mut chain: Vec<(&Path, u32)> = path.ancestors().skip(1).map(|a| (a, 0o001)).collect();
    chain.reverse();
    chain.push((path, 0o005));
    chain
        .into_iter()
        .find(|(a, need)| {
            !a.metadata()
                .is_ok_and(|m| m.permissions().mode() & need == *need)
        })
        .map(|(a, _)| a.to_path_buf())
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The sysroot of the `rustc` on the grader's PATH.
fn rust_sysroot() -> Option<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|p| p.join("bin/cargo").is_file())
}

fn mount_tmpfs(dir: &Path, bytes: u64) -> std::io::Result<()> {
    use rustix::mount::{MountFlags, mount};
    let options = std::ffi::CString::new(format!("size={bytes},mode=0700")).expect("no NUL");
    mount(
        "tmpfs",
        dir,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(options.as_c_str()),
    )?;
    Ok(())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.symlink_metadata()?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
