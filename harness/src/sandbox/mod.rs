//! Containing learner code. An isolation ladder, probed once per grading
//! and named in every report:
//!
//! - `full`: bubblewrap puts each process in private PID, network, IPC,
//!   UTS and mount namespaces: the system read-only, a private /tmp, its own
//!   working directory, and this grading's own region place (a
//!   size-bounded tmpfs, bound where the IPC mechanism wants it). As root,
//!   learner code runs as an unprivileged uid.
//! - `uid`: root without namespaces (a container such as Gradescope's):
//!   learner code runs as an unprivileged uid; the region place is the
//!   machine's.
//! - `minimal`: process groups and limits only, and a lock per region name.
//!
//! Every level adds per-process limits, cgroups where writable, and the
//! runner's process groups, deadlines and orphan sweep.

mod cgroup;
pub mod init;
pub mod serve;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde::Serialize;

use crate::ipc::{Mechanism, Place, Share};
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
    /// Memory per learner process (a cgroup's limit, or RLIMIT_AS without
    /// one). It counts the files the process writes to the run's storage
    /// (a tmpfs): one process is bounded by this before it can fill that.
    pub memory_bytes: u64,
    /// The same for a build (compilers need more).
    pub build_memory_bytes: u64,
    /// Processes per process tree (a pids cgroup, or RLIMIT_NPROC).
    pub processes: u64,
    /// The size of this grading's shm directory, where it is a tmpfs.
    pub shm_bytes: u64,
    /// The storage of the whole run (the submission's copy, its build,
    /// every working and temporary directory), where it is a tmpfs.
    pub disk_bytes: u64,
}

/// Memory and storage are sized so that the way a hog is stopped does not
/// depend on how fast the machine is: 768 MiB is touched in about 1 s of
/// system time here (2 s with another grading beside it), well inside the
/// 3 s CPU limit of a 5 s run, where 1.5 GiB was stopped by either limit
/// as the page faults fell; and the storage is smaller than the memory,
/// so that one program filling it is always named as the disk.
pub const BUDGET: Budget = Budget {
    memory_bytes: 768 << 20,
    build_memory_bytes: 2 << 30,
    processes: 64,
    shm_bytes: 512 << 20,
    disk_bytes: 640 << 20,
};

/// The processes (threads included) Wine's server and services may have
/// in their own run, and what the learner uid may have in all under Wine.
const WINE_PROCESSES: u64 = 512;

/// Where the sandbox puts things, inside it.
const SANDBOX_ROOT: &str = "/sandbox";

/// The system's directories, bound read-only into every sandbox.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// What a process is, for how it is contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A learner's program: the learner's uid, no network.
    Run,
    /// A build: the submission writable, the toolchain readable, no network.
    Build,
    /// A reference peer (the grader's own writer or reader): its own
    /// sandbox, run as the grader (root where the grader is root), never as
    /// the learner's uid, and given the grading's token that `labgrade ref`
    /// requires, which learner code never sees.
    Reference,
    /// The grader's own program that must run as the learner's uid: Wine's
    /// server and the Windows-side probe and peers (a prefix and its
    /// server are one user's). Not watched, never traced.
    Helper,
}

/// The variables that carry the reference token to a reference peer.
pub const REF_TOKEN_ENV: &str = "LABGRADE_REF_TOKEN";
pub const REF_TOKEN_FILE_ENV: &str = "LABGRADE_REF_TOKEN_FILE";

/// The probed environment: which level, and what it is made of.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub level: Level,
    /// Why the level is not higher, and any weaker guarantee.
    pub notes: Vec<String>,
    /// Why the full level could not be had, when it could not.
    pub why_not_full: Option<NotFull>,
    bwrap: Option<PathBuf>,
    root: bool,
    /// Learners' (uid, gid), when the grader is root.
    uid: Option<(u32, u32)>,
    cgroups: Option<Cgroups>,
    /// The Rust toolchain's sysroot, bound read-only into builds: asked of
    /// rustc only when a build needs it (a C hand-in never does).
    toolchain: std::sync::OnceLock<Option<PathBuf>>,
    /// The job slot this grading runs in (its uid, its Wine prefix).
    slot: u32,
    /// The running grader.
    labgrade: PathBuf,
    /// What sandboxes run as their init and as reference peers: as root, a
    /// copy only root can read or run (see `state::sealed_copy_of`).
    init: PathBuf,
}

/// Why a grading is not fully isolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFull {
    #[error("full isolation was not asked for")]
    NotAsked,
    #[error("bubblewrap (bwrap) is not installed")]
    NoBubblewrap,
    /// bwrap is there but cannot make namespaces: what it said.
    #[error("{0}")]
    Refused(String),
}

/// Where regions live machine-wide, for notes on what learner code shares.
pub fn system_place() -> String {
    crate::ipc::default_mechanism()
        .system_dir()
        .display()
        .to_string()
}

/// One grading's place: its directories and how its regions are kept.
pub struct Area {
    pub dir: PathBuf,
    /// The IPC mechanism this grading's pairs use, and where its regions
    /// live: every program of the grading is given what it shares.
    pub mechanism: &'static dyn Mechanism,
    pub place: Place,
    /// This grading's reference token, and the owner-only file holding it
    /// (in the run's `.grader/`, never given to the learner, never bound
    /// into a learner's sandbox).
    ref_token: String,
    ref_token_file: PathBuf,
    /// What of the region place goes when the grading ends.
    cleanup_shm: ShmCleanup,
    /// The run's bounded storage (a tmpfs over `dir`), where there is one.
    storage: Option<PathBuf>,
    /// The sandbox that starts this grading's untraced runs, once one was
    /// asked for (None: it could not start; each run gets its own).
    server: std::sync::OnceLock<Option<Arc<serve::Server>>>,
    /// This grading's Wine, for Windows programs ([`Sandbox::start_wine`]).
    wine: std::sync::OnceLock<crate::target::wine::Home>,
}

impl Area {
    /// The environment a reference peer needs besides its file: the token.
    pub fn reference_env(&self) -> (std::ffi::OsString, std::ffi::OsString) {
        (REF_TOKEN_ENV.into(), self.ref_token.clone().into())
    }

    /// This grading's Wine, once started.
    pub fn wine(&self) -> Option<&crate::target::wine::Home> {
        self.wine.get()
    }
}

/// How a grading's shm directory is taken away when it ends.
enum ShmCleanup {
    /// It is the machine's region place: nothing to take.
    Nothing,
    /// A directory of this grading's in the machine's region place.
    Remove(PathBuf),
    /// A tmpfs mounted for this grading: unmounted (with what is in it), so
    /// the run directory around it can be removed.
    Unmount(PathBuf),
}

impl Drop for Area {
    fn drop(&mut self) {
        // Wine's server and services, then the prefix's overlay.
        drop(self.wine.take());
        // The server first: nothing of it may hold the mounts below.
        if let Some(Some(server)) = self.server.take() {
            crate::runner::disown(server.pid());
        }
        let unmount = |dir: &Path| {
            let _ = rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH);
        };
        match &self.cleanup_shm {
            ShmCleanup::Nothing => {}
            ShmCleanup::Remove(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            ShmCleanup::Unmount(dir) => unmount(dir),
        }
        if let Some(dir) = &self.storage {
            unmount(dir);
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
        // As root, sandboxes run a copy of the grader only root can read or
        // run; the binary itself may be readable by anyone.
        let init = if root {
            match crate::state::sealed_copy_of(&labgrade) {
                Ok(copy) => {
                    crate::runner::register_helper(&copy);
                    copy
                }
                Err(e) => {
                    notes.push(format!(
                        "no sealed copy of the grader ({e}): learner code may be able to read it"
                    ));
                    labgrade.clone()
                }
            }
        } else {
            labgrade.clone()
        };
        let mut sandbox = Sandbox {
            level: Level::Minimal,
            notes: Vec::new(),
            why_not_full: None,
            bwrap: None,
            root,
            uid,
            cgroups,
            toolchain: std::sync::OnceLock::new(),
            slot,
            labgrade,
            init,
        };
        let bwrap = find_in_path("bwrap");
        let full = match (&bwrap, max >= Level::Full) {
            (_, false) => Err(NotFull::NotAsked),
            (None, true) => Err(NotFull::NoBubblewrap),
            (Some(path), true) => sandbox.bwrap_works(path).map_err(NotFull::Refused),
        };
        match full {
            Ok(()) => {
                sandbox.level = Level::Full;
                sandbox.bwrap = bwrap;
                if !private_mounts {
                    notes.push(format!(
                        "regions live in a directory of the machine's {}, bounded only by it",
                        system_place()
                    ));
                }
            }
            Err(ref why) if root && max >= Level::Uid => {
                sandbox.level = Level::Uid;
                notes.push(format!(
                    "no namespaces ({why}): shared /tmp and {}, a lock per region name",
                    system_place()
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
        if sandbox.level == Level::Uid && unreadable_by_others(&sandbox.labgrade).is_none() {
            notes.push(format!(
                "learner code can read the grader's binary {} at this level (it cannot run its reference programs): install it root-only (chmod 700) to keep it out of reach",
                sandbox.labgrade.display()
            ));
        }
        if sandbox.level == Level::Uid
            && let Some(problem @ ToolchainProblem::Unreadable { .. }) =
                sandbox.toolchain_problem(None)
        {
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
    /// `triple`: the target the build is for, when it is not this machine.
    pub fn toolchain_problem(&self, triple: Option<&'static str>) -> Option<ToolchainProblem> {
        let Some(toolchain) = self.toolchain() else {
            return Some(ToolchainProblem::Missing);
        };
        if let Some(triple) = triple
            && !builds_for(toolchain, triple)
        {
            return Some(ToolchainProblem::NoTarget { triple });
        }
        let (uid, _) = self.uid?;
        if self.level != Level::Uid {
            return None;
        }
        unreadable_by_others(toolchain).map(|blocked| ToolchainProblem::Unreadable {
            path: toolchain.to_path_buf(),
            blocked,
            uid,
        })
    }

    /// Sets up one grading's area in `dir`.
    pub fn area(
        &self,
        dir: &Path,
        private_mounts: bool,
        mechanism: &'static dyn Mechanism,
    ) -> std::io::Result<Area> {
        // Without namespaces learner code sees the run where it is: every
        // directory above it must let others pass.
        if self.level != Level::Full
            && let Some((uid, _)) = self.uid
            && let Some(blocked) = dir.parent().and_then(impassable_to_others)
        {
            return Err(std::io::Error::other(format!(
                "learner code (uid {uid}) cannot reach {}: {} does not let other users pass; use a TMPDIR it can (such as /tmp), or chmod o+x {}",
                dir.display(),
                blocked.display(),
                blocked.display()
            )));
        }
        // As root in a mount namespace of the grader's own, the whole run
        // lives on a tmpfs of its own size: what learner code writes (its
        // working, build and, at the full level, temporary files) is
        // bounded, and goes with the grading. Elsewhere only each file is
        // (RLIMIT_FSIZE).
        let storage = if self.level != Level::Minimal && private_mounts {
            mount_tmpfs(dir, BUDGET.disk_bytes, 0o755)?;
            Some(dir.to_path_buf())
        } else {
            None
        };
        let grader_dir = dir.join(".grader");
        crate::state::owner_only_dir(&grader_dir)?;
        let ref_token = random_token()?;
        let ref_token_file = grader_dir.join("ref-token");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&ref_token_file)?
                .write_all(ref_token.as_bytes())?;
        }
        let area = match self.level {
            Level::Full => {
                let (shm_dir, cleanup_shm) = if private_mounts {
                    let shm = dir.join("shm");
                    std::fs::create_dir_all(&shm)?;
                    mount_tmpfs(&shm, BUDGET.shm_bytes, 0o700)?;
                    (shm.clone(), ShmCleanup::Unmount(shm))
                } else {
                    let shm = crate::state::run_dir(mechanism.system_dir())?.keep();
                    (shm.clone(), ShmCleanup::Remove(shm))
                };
                Area {
                    dir: dir.to_path_buf(),
                    mechanism,
                    place: Place {
                        dir: shm_dir,
                        private: true,
                        learner: None,
                    },
                    ref_token,
                    ref_token_file,
                    cleanup_shm,
                    storage,
                    server: Default::default(),
                    wine: Default::default(),
                }
            }
            Level::Uid | Level::Minimal => {
                self.open_for_learner(dir)?;
                Area {
                    dir: dir.to_path_buf(),
                    mechanism,
                    place: Place {
                        dir: mechanism.system_dir().to_path_buf(),
                        private: false,
                        learner: self.uid.map(|(uid, _)| uid),
                    },
                    ref_token,
                    ref_token_file,
                    cleanup_shm: ShmCleanup::Nothing,
                    storage,
                    server: Default::default(),
                    wine: Default::default(),
                }
            }
        };
        if area.place.private {
            self.give(&area.place.dir)?;
        }
        Ok(area)
    }

    /// At the uid level learner code runs as another user, straight from
    /// the run directory: let it pass through (but not list) the directory.
    fn open_for_learner(&self, dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if self.uid.is_some() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
        }
        Ok(())
    }

    /// The grader's own binary, which reference peers run as.
    pub fn labgrade(&self) -> &Path {
        &self.labgrade
    }

    /// Removes what this grading left in the system: its cgroups and,
    /// where learner code shared the machine's /tmp and region place (the
    /// uid level), whatever its uid left there (a slot's uid is one
    /// grading's at a time).
    pub fn finish(&self, mechanism: &dyn Mechanism) {
        if let Some(cg) = &self.cgroups {
            cg.clean();
        }
        if self.level == Level::Uid
            && let Some((uid, _)) = self.uid
        {
            for dir in [mechanism.system_dir(), Path::new("/tmp")] {
                remove_owned_by(dir, uid);
            }
            // The machine's IPC namespace is shared at this level too.
            crate::ipc::sysv::remove_owned_by(uid);
        }
    }

    /// Hands a directory (and what is in it) to the learner uid.
    pub fn give(&self, path: &Path) -> std::io::Result<()> {
        let Some((uid, gid)) = self.uid else {
            return Ok(());
        };
        chown_tree(path, uid, gid)
    }

    /// The limits every contained process gets, whatever starts it: its
    /// cgroups (or an address-space limit), processes, its directory
    /// handed to the learner, the run's storage.
    fn confinement(&self, spec: &mut Spec, area: &Area, purpose: Purpose) -> Confinement {
        let mut confine = Confinement::default();
        let memory = match purpose {
            Purpose::Build => BUDGET.build_memory_bytes,
            Purpose::Run | Purpose::Reference | Purpose::Helper => BUDGET.memory_bytes,
        };
        // Wine's server and services are some 30 threads, each counted as a
        // process: their run gets room for them.
        let processes = match purpose {
            Purpose::Helper => WINE_PROCESSES,
            _ => BUDGET.processes,
        };
        match &self.cgroups {
            Some(cg) => match cg.create(memory, processes) {
                Ok(group) => {
                    confine.cgroups = group.procs;
                    spec.memory_cgroups = group.memory_dirs;
                    spec.pids_cgroup = Some(group.pids_dir);
                }
                Err(_) => confine.address_space = Some(4 * memory),
            },
            None => confine.address_space = Some(4 * memory),
        }
        if self.uid.is_some() {
            // RLIMIT_NPROC counts every process of the uid: a Windows
            // program's include Wine's server and services, which the run's
            // pids cgroup leaves out.
            confine.processes = Some(if spec.wine_view {
                WINE_PROCESSES
            } else {
                BUDGET.processes
            });
        }
        let _ = self.give(&spec.dir);
        spec.storage = area.storage.clone();
        confine
    }

    /// `spec` as it must run at this level: inside bubblewrap, as the
    /// learner uid, in cgroups, with limits.
    pub fn contain(&self, mut spec: Spec, area: &Area, purpose: Purpose) -> Spec {
        let mut confine = self.confinement(&mut spec, area, purpose);
        if purpose == Purpose::Reference && self.level != Level::Full {
            // Run as the grader, straight: no uid to drop to, nothing to
            // hide the token file from but what its mode does.
            spec.env.push((
                REF_TOKEN_FILE_ENV.into(),
                area.ref_token_file.clone().into_os_string(),
            ));
            spec.confine = confine;
            return spec;
        }
        confine.status_pipe = true;
        match self.level {
            Level::Minimal | Level::Uid => {
                // The init stays the grader's and runs the program as its
                // child, as the learner uid; a tracer around it stays
                // privileged too. What a run leaves is the grader's to
                // sweep, except a helper's: a Wine server daemonises, and
                // must stay the helper's (its init reaps it) rather than
                // become an orphan of the grader's, which the next run's
                // sweep would kill (the next Windows program then starts
                // a server of its own, under its own limits).
                let mut args = self.init_args(
                    purpose,
                    purpose == Purpose::Helper,
                    confine.cgroups.len(),
                    spec.unwatched,
                    spec.wine_view,
                );
                args.append(&mut spec.loader);
                args.push(spec.program.display().to_string());
                args.append(&mut spec.args);
                spec.program = self.labgrade.clone();
                spec.args = args;
            }
            Level::Full => {
                confine.own_pid_namespace = !spec.wine_view;
                spec = self.bwrapped(spec, area, purpose, confine.cgroups.len());
            }
        }
        confine.cgroups_via_init = true;
        spec.confine = confine;
        spec
    }

    fn bwrapped(&self, mut spec: Spec, area: &Area, purpose: Purpose, cgroups: usize) -> Spec {
        let bwrap = self.bwrap.clone().expect("the full level has bwrap");
        let mut a = self.bwrap_base();
        if spec.wine_view {
            // One PID namespace for Wine's server and its programs (see
            // serve::start): the machine's, here.
            a.retain(|arg| arg != "--unshare-pid");
        }
        a.extend(shares_args(area));
        let mut arg = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        // Its /tmp: a directory of the run's bounded storage where there is
        // one, else a tmpfs of that size.
        match self.run_tmp(&spec.dir, area) {
            Some(tmp) => arg(&["--bind", &tmp.display().to_string(), "/tmp"]),
            None => {
                let size = BUDGET.disk_bytes.to_string();
                arg(&["--perms", "1777", "--size", &size, "--tmpfs", "/tmp"]);
            }
        }
        // Directories bwrap makes on its own for a bind's parents copy the
        // host's modes (often 0700): make these ones explicitly.
        arg(&["--perms", "0755", "--dir", SANDBOX_ROOT]);
        arg(&["--perms", "0755", "--dir", &format!("{SANDBOX_ROOT}/prog")]);
        let inside = |name: &str| format!("{SANDBOX_ROOT}/{name}");
        // The init (and reference peers): as root, a copy only root may read
        // or run, so learner code can run the grader in no mode.
        let init = inside("init");
        arg(&["--ro-bind", &self.init.display().to_string(), &init]);
        let work = spec.dir.display().to_string();
        let in_run = |path: &Path| {
            path.strip_prefix(&area.dir)
                .ok()
                .map(|rel| Path::new(serve::WINE_RUN).join(rel).display().to_string())
        };
        // A Windows program where Wine's server sees it (serve::WINE_RUN).
        let wine_view = |path: &Path| in_run(path).filter(|_| spec.wine_view);
        let cwd = wine_view(&spec.dir).unwrap_or_else(|| inside("work"));
        arg(&["--bind", &work, &cwd, "--chdir", &cwd]);
        if purpose == Purpose::Reference {
            let token = inside("ref-token");
            arg(&[
                "--ro-bind",
                &area.ref_token_file.display().to_string(),
                &token,
            ]);
            spec.env.push((REF_TOKEN_FILE_ENV.into(), token.into()));
        }

        // The program itself: a file of the submission's (bound read-only),
        // labgrade (for the reference peers), or a system command.
        let placed = self.placed(&spec.program);
        let program = wine_view(&spec.program).unwrap_or_else(|| placed.inside(&spec.program));
        if let Placed::Bound(_) = placed {
            arg(&["--ro-bind", &spec.program.display().to_string(), &program]);
        }
        for (host, dest) in &spec.binds {
            arg(&[
                "--bind",
                &host.display().to_string(),
                &dest.display().to_string(),
            ]);
        }
        if !spec.shown_dirs.is_empty() {
            arg(&["--perms", "0755", "--dir", &inside("shown")]);
        }
        for dir in &spec.shown_dirs {
            let dest = self.shown_path(dir);
            arg(&[
                "--ro-bind",
                &dir.display().to_string(),
                &dest.display().to_string(),
            ]);
        }

        let mut bin = None;
        if purpose == Purpose::Build {
            // Bound only once a build has asked for it.
            if let Some(Some(tc)) = self.toolchain.get() {
                let dest = inside("toolchain");
                arg(&["--ro-bind", &tc.display().to_string(), &dest]);
                bin = Some(format!("{dest}/bin"));
            }
        }
        let mut env = inside_env(&spec.env, bin.as_deref());
        if purpose == Purpose::Build {
            env.push(("CARGO_HOME".into(), format!("{cwd}/.cargo-home").into()));
        }

        // The sandbox's init: runs the program as the learner uid (a
        // reference peer as the grader), then counts and kills what it
        // left behind in the sandbox.
        arg(&["--", &init]);
        a.extend(self.init_args(purpose, true, cgroups, spec.unwatched, spec.wine_view));
        a.append(&mut spec.loader);
        a.push(program);
        a.append(&mut spec.args);
        spec.program = bwrap;
        spec.args = a;
        spec.env = env;
        spec
    }

    /// What every sandbox of this grader starts with, its own or a
    /// grading's: the namespaces, the system read-only, the grader's
    /// binaries masked, /proc and /dev.
    fn bwrap_base(&self) -> Vec<String> {
        let mut a: Vec<String> = self
            .bwrap_namespaces(false)
            .into_iter()
            .map(String::from)
            .collect();
        for dir in SYSTEM_DIRS {
            a.extend(["--ro-bind-try", dir, dir].map(String::from));
        }
        // The grader itself, where it is installed under a directory bound
        // above (/usr/local/bin, say): masked, so no build can copy it.
        for exe in self.grader_binaries() {
            a.extend([
                "--ro-bind".into(),
                "/dev/null".into(),
                exe.display().to_string(),
            ]);
        }
        a.extend(["--proc", "/proc", "--dev", "/dev"].map(String::from));
        a
    }

    /// The /tmp of the program working in `dir`: a directory of the run's
    /// bounded storage beside it, given to the learner, where there is
    /// such storage (else the sandbox makes a tmpfs).
    fn run_tmp(&self, dir: &Path, area: &Area) -> Option<PathBuf> {
        let tmp = PathBuf::from(format!("{}.tmp", dir.display()));
        (area.storage.is_some() && std::fs::create_dir_all(&tmp).is_ok()).then(|| {
            let _ = self.give(&tmp);
            tmp
        })
    }

    /// How a program is found inside a sandbox: the grader (reference
    /// peers) as the init, a file of the submission bound read-only at
    /// /sandbox/prog/NAME, or a system command as it is.
    fn placed(&self, program: &Path) -> Placed {
        if program == self.labgrade {
            Placed::Grader
        } else if program.is_absolute() && !program.starts_with("/usr") {
            let name = program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Placed::Bound(name)
        } else {
            Placed::System
        }
    }

    /// `spec` as it must run, started by this grading's sandbox server
    /// where there is one (the full level, as root): contained as
    /// [`Sandbox::contain`] contains it, in the same namespaces and limits,
    /// for a fork instead of a bubblewrap. Anything else (a build, another
    /// level, a run outside the run directory) is contained the usual way.
    /// `trace`: strace and its arguments (writing to `serve::TRACE`), to
    /// run the program under inside the sandbox, and the run's file that
    /// is bound there.
    pub fn contain_served(
        &self,
        mut spec: Spec,
        area: &Area,
        purpose: Purpose,
        trace: Option<(PathBuf, Vec<String>, &Path)>,
    ) -> Spec {
        let servable = purpose != Purpose::Build && self.level == Level::Full && self.root;
        let rel = |path: &Path| path.strip_prefix(&area.dir).ok().map(Path::to_path_buf);
        let (Some(work), true) = (rel(&spec.dir), servable) else {
            return self.contain(spec, area, purpose);
        };
        let placed = self.placed(&spec.program);
        let program = match &placed {
            Placed::Bound(name) => match rel(&spec.program) {
                Some(source) => Some((source, name.clone())),
                None => return self.contain(spec, area, purpose),
            },
            Placed::Grader | Placed::System => None,
        };
        let trace = match trace {
            None => None,
            Some((tracer, args, out)) => match (rel(out), root_only_file(out)) {
                (Some(file), Ok(())) => Some((
                    file,
                    init::InsideTrace {
                        tracer,
                        args,
                        helper: PathBuf::from(format!("{SANDBOX_ROOT}/init")),
                        limits: None,
                    },
                )),
                _ => return self.contain(spec, area, purpose),
            },
        };
        let Some(server) = self.server(area) else {
            return self.contain(spec, area, purpose);
        };
        let mut confine = self.confinement(&mut spec, area, purpose);
        let tmp = self
            .run_tmp(&spec.dir, area)
            .and_then(|tmp| rel(&tmp))
            .ok_or(BUDGET.disk_bytes);
        let mut env = spec.env.clone();
        let reference = purpose == Purpose::Reference;
        if reference {
            env.push((
                REF_TOKEN_FILE_ENV.into(),
                format!("{SANDBOX_ROOT}/ref-token").into(),
            ));
        }
        let mut binds = Vec::new();
        for (host, dest) in &spec.binds {
            match rel(host) {
                Some(source) => binds.push((source, dest.clone())),
                None => return self.contain(spec, area, purpose),
            }
        }
        let mut argv: Vec<OsString> = spec.loader.iter().map(OsString::from).collect();
        match (&program, spec.wine_view) {
            (Some((source, _)), true) => argv.push(Path::new(serve::WINE_RUN).join(source).into()),
            _ => argv.push(placed.inside(&spec.program).into()),
        }
        argv.extend(spec.args.iter().map(OsString::from));
        let request = serve::Request {
            argv,
            env: inside_env(&env, None),
            work,
            tmp,
            program,
            ref_token: reference.then(|| rel(&area.ref_token_file)).flatten(),
            in_process: reference,
            limits: spec.limits,
            processes: confine.processes,
            address_space: confine.address_space,
            uid: self
                .uid
                .filter(|_| !reference)
                .map(|(uid, gid)| format!("{uid}:{gid}")),
            watch: purpose == Purpose::Run && !spec.unwatched,
            trace,
            binds,
            wine_view: spec.wine_view,
            guard: spec.wine_view && purpose == Purpose::Run,
        };
        confine.own_pid_namespace = !spec.wine_view;
        confine.cgroups_via_init = true;
        spec.confine = confine;
        spec.launcher = Some(Arc::new(serve::Served { server, request }));
        spec
    }

    /// Starts this grading's Wine in `area`, before any of its programs
    /// run: the slot's prefix (made first if this machine has none yet,
    /// `making` told), as root an overlay of it whose changes go with the
    /// grading, and Wine's server and services in a run of their own, as
    /// the learner's uid, for the grading's whole life.
    pub fn start_wine<'a>(
        &self,
        area: &'a Area,
        timeout: std::time::Duration,
        making: &dyn Fn(),
    ) -> std::io::Result<&'a crate::target::wine::Home> {
        use crate::target::wine;
        if let Some(home) = area.wine.get() {
            return Ok(home);
        }
        let overlay = self.root && area.storage.is_some();
        let home = wine::Home::new(&area.dir, self.slot, self.uid, overlay, making)?;
        let home = area.wine.get_or_init(|| home);
        let (runtime, binds) = self.wine_runtime(home);
        let dir = area.dir.join(".wine-server");
        std::fs::create_dir_all(&dir)?;
        let mut argv = crate::target::windows::loader_env(&runtime);
        argv.extend(wine::server_script(&home.wine));
        let mut spec = Spec::command(
            "Wine's server",
            argv,
            &dir,
            crate::runner::clean_env(&dir),
            timeout,
            crate::runner::Limits {
                cpu_secs: timeout.as_secs().max(1),
                file_bytes: 1 << 30,
                open_files: 1024,
            },
        );
        spec.binds = binds;
        // The server opens files for its programs by their paths: it sees
        // the whole run where each program sees its own part of it.
        if self.level == Level::Full {
            spec.binds
                .push((area.dir.clone(), PathBuf::from(serve::WINE_RUN)));
        }
        spec.wine_view = true;
        let spec = self.contain_served(spec, area, Purpose::Helper, None);
        home.start_server(spec)?;
        Ok(home)
    }

    /// Makes `spec` a Windows program of this grading's Wine: run under
    /// Wine's loader, with the prefix and the server's directory bound,
    /// where Wine's server sees its files.
    pub fn under_wine(&self, spec: &mut Spec, home: &crate::target::wine::Home) {
        use crate::target::Target;
        let (runtime, binds) = self.wine_runtime(home);
        spec.loader = crate::target::Windows.loader(&runtime);
        spec.binds = binds;
        spec.wine_view = true;
    }

    /// Where a Windows program sees the grading's Wine, and what its
    /// sandbox binds for it (nothing where there is no sandbox to bind in:
    /// it sees the host's paths).
    pub fn wine_runtime(
        &self,
        home: &crate::target::wine::Home,
    ) -> (crate::target::Runtime, Vec<(PathBuf, PathBuf)>) {
        if self.level != Level::Full {
            let runtime = crate::target::Runtime {
                prefix: home.prefix.clone(),
                tmp: home.tmp.clone(),
                loader: home.wine.loader.clone(),
            };
            return (runtime, Vec::new());
        }
        let inside = Path::new(crate::target::windows::INSIDE);
        let runtime = crate::target::Runtime {
            prefix: inside.join("prefix"),
            tmp: inside.join("tmp"),
            loader: home.wine.loader.clone(),
        };
        let binds = vec![
            (home.prefix.clone(), runtime.prefix.clone()),
            (home.tmp.clone(), runtime.tmp.clone()),
        ];
        (runtime, binds)
    }

    /// This grading's sandbox server, started on first use.
    fn server(&self, area: &Area) -> Option<Arc<serve::Server>> {
        area.server
            .get_or_init(|| match self.start_server(area) {
                Ok(server) => {
                    crate::runner::adopt(server.pid());
                    Some(Arc::new(server))
                }
                Err(_) => None,
            })
            .clone()
    }

    /// Bubblewrap as every run's own would be, minus what is each run's:
    /// the run directory and the grader's init bound where only the
    /// server sees them.
    fn start_server(&self, area: &Area) -> std::io::Result<serve::Server> {
        let bwrap = self
            .bwrap
            .clone()
            .ok_or_else(|| std::io::Error::other("no bwrap"))?;
        let mut cmd = Command::new(bwrap);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .args(self.bwrap_base());
        cmd.args(["--perms", "0755", "--dir", SANDBOX_ROOT]);
        cmd.args(["--perms", "1777", "--dir", "/tmp"]);
        cmd.args(shares_args(area));
        cmd.arg("--bind").arg(&area.dir).arg(serve::RUN);
        cmd.arg("--ro-bind").arg(&self.init).arg(serve::INIT);
        cmd.arg("--");
        serve::Server::start(cmd, serve::INIT)
    }

    /// `sandbox-init` and its options, up to and including `--`: as the
    /// learner's uid unless a reference peer; a learner's program watched;
    /// with `sweep`, inside a PID namespace of its own.
    fn init_args(
        &self,
        purpose: Purpose,
        sweep: bool,
        cgroups: usize,
        unwatched: bool,
        guard: bool,
    ) -> Vec<String> {
        let mut args = vec!["sandbox-init".to_string(), "--status-fd".into(), "3".into()];
        // The learner's cgroups, handed over as fds 4, 5... (runner::unix).
        for i in 0..cgroups {
            args.extend(["--cgroup-fd".to_string(), (4 + i).to_string()]);
        }
        if sweep {
            args.push("--sweep".into());
        }
        if purpose == Purpose::Run && !unwatched {
            args.push("--watch".into());
        }
        if purpose == Purpose::Run && guard {
            args.push("--guard".into());
        }
        if let Some((uid, gid)) = self.uid
            && purpose != Purpose::Reference
        {
            args.extend(["--uid".to_string(), format!("{uid}:{gid}")]);
        }
        args.push("--".into());
        args
    }

    /// Copies of labgrade under a directory every sandbox binds: the running
    /// one and the one on PATH.
    fn grader_binaries(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = [Some(self.labgrade.clone()), find_in_path("labgrade")]
            .into_iter()
            .flatten()
            .filter_map(|p| p.canonicalize().ok())
            .filter(|p| SYSTEM_DIRS.iter().any(|d| p.starts_with(d)))
            .collect();
        found.dedup();
        found
    }

    /// Where the toolchain appears to a build at this level (none when
    /// builds cannot use it).
    pub fn toolchain_bin(&self) -> Option<PathBuf> {
        if self.toolchain_problem(None).is_some() {
            return None;
        }
        match self.level {
            Level::Full => self
                .toolchain()
                .map(|_| PathBuf::from(format!("{SANDBOX_ROOT}/toolchain/bin"))),
            _ => self.toolchain().map(|t| t.join("bin")),
        }
    }

    /// The toolchain's sysroot outside any sandbox, for steps the grader
    /// runs itself (`cargo vendor`).
    pub fn toolchain(&self) -> Option<&Path> {
        self.toolchain.get_or_init(rust_sysroot).as_deref()
    }

    /// Where a sandbox shows one of the grader's directories a [`Spec`]
    /// names in `shown_dirs`: under the sandbox's root (by its name), or
    /// where it is when there are no namespaces.
    pub fn shown_path(&self, dir: &Path) -> PathBuf {
        match (self.level, dir.file_name()) {
            (Level::Full, Some(name)) => Path::new(SANDBOX_ROOT).join("shown").join(name),
            _ => dir.to_path_buf(),
        }
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
    #[error(
        "the Rust toolchain cannot build for {triple} (its standard library for that target is not installed)"
    )]
    NoTarget { triple: &'static str },
}

impl ToolchainProblem {
    /// What to do about it.
    pub fn fix(&self) -> &'static str {
        match self {
            ToolchainProblem::Missing => "install Rust with rustup (https://rustup.rs)",
            ToolchainProblem::Unreadable { .. } => {
                "install the toolchain where every user can read it (rustup with RUSTUP_HOME and CARGO_HOME under /opt), or grade at the full level (install bubblewrap), where the sandbox binds it in"
            }
            ToolchainProblem::NoTarget { .. } => {
                "add the target with `rustup target add x86_64-pc-windows-gnu` (scripts/setup does)"
            }
        }
    }
}

/// The first directory on the way to `path` (or `path` itself) that users
/// other than its owner and group cannot pass, as an unprivileged uid that
/// owns nothing would meet it; None when every one can be passed.
pub fn unreadable_by_others(path: &Path) -> Option<PathBuf> {
    // Directories on the way need only be passed (x); the toolchain itself
    // is listed and read too (r and x).
    path.parent()
        .and_then(impassable_to_others)
        .or_else(|| (!others_may(path, 0o005)).then(|| path.to_path_buf()))
}

/// The first of `dir` and the directories above it that other users may
/// not pass through (no o+x), from the root down.
fn impassable_to_others(dir: &Path) -> Option<PathBuf> {
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    chain
        .into_iter()
        .find(|a| !others_may(a, 0o001))
        .map(Path::to_path_buf)
}

/// Whether other users have the permission bits `need` on `path`.
fn others_may(path: &Path, need: u32) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.permissions().mode() & need == need)
}

/// Removes the entries of `dir` that `uid` owns (links not followed).
fn remove_owned_by(dir: &Path, uid: u32) {
    use std::os::unix::fs::MetadataExt;
    crate::observe::remove_entries(dir, |meta| meta.uid() == uid);
}

pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether this process was started by the grader as a reference peer: it
/// holds the grading's token, and can read the file that holds it too.
pub fn check_ref_token() -> Result<(), String> {
    let refused = "only the grader runs its reference programs";
    let token = std::env::var(REF_TOKEN_ENV).map_err(|_| refused.to_string())?;
    let file = std::env::var_os(REF_TOKEN_FILE_ENV).ok_or_else(|| refused.to_string())?;
    match std::fs::read_to_string(&file) {
        Ok(expected) if !token.is_empty() && expected == token => Ok(()),
        _ => Err(refused.to_string()),
    }
}

/// A fresh random token, as hex.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether the toolchain at `sysroot` has the standard library of `triple`.
pub fn builds_for(sysroot: &Path, triple: &str) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir()
}

/// The sysroot of the `rustc` on the grader's PATH.
pub fn rust_sysroot() -> Option<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|p| p.join("bin/cargo").is_file())
}

fn mount_tmpfs(dir: &Path, bytes: u64, mode: u32) -> std::io::Result<()> {
    use rustix::mount::{MountFlags, mount};
    // Files too are bounded: one inode per 16 KiB of room (40960 for 640 MiB),
    // far more than the lab makes, and no longer the machine's RAM's worth.
    let inodes = (bytes >> 14).max(1024);
    let options = std::ffi::CString::new(format!("size={bytes},nr_inodes={inodes},mode={mode:o}"))
        .expect("no NUL");
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

/// Where a sandbox finds a program ([`Sandbox::placed`]).
enum Placed {
    Grader,
    Bound(String),
    System,
}

impl Placed {
    /// The program's path inside the sandbox.
    fn inside(&self, program: &Path) -> String {
        match self {
            Placed::Grader => format!("{SANDBOX_ROOT}/init"),
            Placed::Bound(name) => format!("{SANDBOX_ROOT}/prog/{name}"),
            Placed::System => program.display().to_string(),
        }
    }
}

/// What a grading's pairs need in common (the region place), bound into
/// every sandbox.
fn shares_args(area: &Area) -> Vec<String> {
    area.mechanism
        .shares(&area.place)
        .into_iter()
        .flat_map(|share| match share {
            Share::Dir { host, inside } => [
                "--bind".to_string(),
                host.display().to_string(),
                inside.display().to_string(),
            ],
        })
        .collect()
}

/// A process's environment as its sandbox gives it: HOME its working
/// directory, TMPDIR its /tmp, PATH the system's (after `bin`, if given);
/// no toolchain variables of the grader's.
fn inside_env(env: &[(OsString, OsString)], bin: Option<&str>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = env
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.to_str(),
                Some("HOME" | "TMPDIR" | "PATH" | "CARGO_HOME" | "RUSTUP_HOME")
            )
        })
        .cloned()
        .collect();
    env.push(("HOME".into(), format!("{SANDBOX_ROOT}/work").into()));
    env.push(("TMPDIR".into(), "/tmp".into()));
    let path = match bin {
        Some(bin) => format!("{bin}:/usr/local/bin:/usr/bin:/bin"),
        None => "/usr/local/bin:/usr/bin:/bin".to_string(),
    };
    env.push(("PATH".into(), path.into()));
    env
}

/// Makes `path` an empty file only root (the grader) may open.
fn root_only_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}
