//! Per-process cgroups, where the grader may create them (usually as root):
//! a memory limit that counts what RLIMIT_AS cannot (shared memory pages),
//! and a process limit that holds whatever uid runs the code. Both cgroup
//! v2 (one hierarchy) and v1 (a hierarchy per controller) are handled.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where labgrade's cgroups go.
#[derive(Debug, Clone)]
pub enum Cgroups {
    /// cgroup v2: one parent with the memory and pids controllers.
    V2 { parent: PathBuf },
    /// cgroup v1: a parent in the memory and in the pids hierarchy.
    V1 { memory: PathBuf, pids: PathBuf },
}

impl std::fmt::Display for Cgroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cgroups::V2 { parent } => {
                write!(f, "cgroup v2, memory and pids, under {}", parent.display())
            }
            Cgroups::V1 { memory, pids } => write!(
                f,
                "cgroup v1, under {} and {}",
                memory.display(),
                pids.display()
            ),
        }
    }
}

/// One process's cgroups, joined by writing "0" to each `cgroup.procs`.
pub struct Group {
    pub procs: Vec<Arc<File>>,
    pub memory_dirs: Vec<PathBuf>,
    /// The cgroup that bounds its processes (pids.max, pids.current).
    pub pids_dir: PathBuf,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Cgroups {
    /// Finds a place labgrade can create cgroups in, or None.
    pub fn probe() -> Option<Cgroups> {
        let v2 = Path::new("/sys/fs/cgroup");
        if std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory") && c.contains("pids"))
        {
            let parent = v2.join("labgrade");
            if std::fs::create_dir_all(&parent).is_ok()
                && std::fs::write(v2.join("cgroup.subtree_control"), "+memory +pids").is_ok()
                && std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids").is_ok()
            {
                return Some(Cgroups::V2 { parent });
            }
        }
        let memory = v2.join("memory/labgrade");
        let pids = v2.join("pids/labgrade");
        (std::fs::create_dir_all(&memory).is_ok() && std::fs::create_dir_all(&pids).is_ok())
            .then_some(Cgroups::V1 { memory, pids })
    }

    /// A fresh cgroup (or pair) for one process, with the budget's limits.
    pub fn create(&self, memory_bytes: u64, processes: u64) -> std::io::Result<Group> {
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        match self {
            Cgroups::V2 { parent } => {
                let dir = parent.join(name);
                std::fs::create_dir(&dir)?;
                write(&dir.join("memory.max"), memory_bytes)?;
                write(&dir.join("memory.swap.max"), 0).ok();
                write(&dir.join("pids.max"), processes)?;
                Ok(Group {
                    procs: vec![Arc::new(
                        File::options().write(true).open(dir.join("cgroup.procs"))?,
                    )],
                    memory_dirs: vec![dir.clone()],
                    pids_dir: dir,
                })
            }
            Cgroups::V1 { memory, pids } => {
                let mem = memory.join(&name);
                let pid = pids.join(&name);
                std::fs::create_dir(&mem)?;
                std::fs::create_dir(&pid)?;
                write(&mem.join("memory.limit_in_bytes"), memory_bytes)?;
                write(&pid.join("pids.max"), processes)?;
                Ok(Group {
                    procs: vec![
                        Arc::new(File::options().write(true).open(mem.join("cgroup.procs"))?),
                        Arc::new(File::options().write(true).open(pid.join("cgroup.procs"))?),
                    ],
                    memory_dirs: vec![mem],
                    pids_dir: pid,
                })
            }
        }
    }

    /// Removes this grader's empty cgroups (those whose processes are
    /// gone), and any left by a grader that was killed before it could.
    pub fn clean(&self) {
        let me = std::process::id();
        let stale = |name: &str| {
            name.split_once('-')
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
                .is_some_and(|pid| pid == me || !Path::new(&format!("/proc/{pid}")).exists())
        };
        let parents: Vec<&PathBuf> = match self {
            Cgroups::V2 { parent } => vec![parent],
            Cgroups::V1 { memory, pids } => vec![memory, pids],
        };
        for parent in parents {
            if let Ok(dir) = std::fs::read_dir(parent) {
                for entry in dir.flatten() {
                    if stale(&entry.file_name().to_string_lossy()) {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
            }
        }
    }
}

fn write(path: &Path, value: u64) -> std::io::Result<()> {
    File::options()
        .write(true)
        .open(path)?
        .write_all(value.to_string().as_bytes())
}
