//! `labgrade doctor`: what this machine offers for grading, each finding
//! with its fix. It probes the way a grading does (the same sandbox probe,
//! and every build tool started the way a build starts it: contained, as
//! the learner's uid, with the build's PATH), so "it works here" means a
//! grading will find it working too.

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use crate::build::{self, ToolCheck};
use crate::observe::trace::{Tracer, Untraceable};
use crate::rubric::{Kind, Rubric};
use crate::runner::StartError;
use crate::sandbox::{BUDGET, Level, NotFull, Sandbox};
use crate::tools;

/// How a finding came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    /// Works, with a weaker guarantee than the best.
    Warning,
    /// Not there, or not usable.
    Missing,
}

/// One line of the diagnosis.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub topic: String,
    pub state: State,
    pub detail: String,
    pub fix: Option<String>,
    /// Whether the rubric (or `--require`) needs it: a needed finding that
    /// is not ok makes the machine not ready.
    pub needed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub rubric: String,
    /// The isolation level gradings get here.
    pub level: Level,
    pub findings: Vec<Finding>,
    /// Everything needed is here.
    pub ready: bool,
}

pub struct Options<'a> {
    pub rubric: &'a Rubric,
    /// Fail unless this level is reachable.
    pub require: Option<Level>,
    pub slot: u32,
    /// Whether this process has its own mount namespace (as a grading would).
    pub private_mounts: bool,
}

/// Probes the machine for what gradings with `rubric` need.
pub fn diagnose(opts: &Options) -> Diagnosis {
    let sandbox = Sandbox::probe(Level::Full, opts.slot, opts.private_mounts);
    let mut findings = vec![isolation(&sandbox, opts.require), bubblewrap(&sandbox)];
    findings.push(grader_reach(&sandbox));
    findings.push(strace(opts.rubric));
    findings.extend(build_tools(&sandbox, opts));
    findings.push(cgroups(&sandbox));
    findings.push(shm(&sandbox, opts));
    findings.push(wine(opts));
    let ready = findings
        .iter()
        .all(|f| !f.needed || f.state != State::Missing);
    Diagnosis {
        rubric: opts.rubric.origin.clone(),
        level: sandbox.level,
        findings,
        ready,
    }
}

fn finding(topic: &str, state: State, detail: impl Into<String>) -> Finding {
    Finding {
        topic: topic.to_string(),
        state,
        detail: detail.into(),
        fix: None,
        needed: false,
    }
}

impl Finding {
    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }

    fn needed(mut self, needed: bool) -> Finding {
        self.needed = needed;
        self
    }
}

fn isolation(sandbox: &Sandbox, require: Option<Level>) -> Finding {
    let as_uid = match sandbox.learner_uid() {
        Some(uid) => format!("learner code runs as uid {uid}"),
        None => "learner code runs as the grader's own user".to_string(),
    };
    let why = sandbox
        .why_not_full
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let (state, detail, fix) = match sandbox.level {
        Level::Full => (
            State::Ok,
            format!("full: bubblewrap namespaces for every process; {as_uid}"),
            None,
        ),
        Level::Uid => (
            State::Warning,
            format!(
                "uid, not full ({why}): shared /tmp and {}; {as_uid}",
                crate::sandbox::system_place()
            ),
            Some(full_fix(sandbox)),
        ),
        Level::Minimal => (
            State::Warning,
            format!("minimal, not full ({why}): process groups and limits only; {as_uid}"),
            Some(format!(
                "{}; or run as root for the uid level",
                full_fix(sandbox)
            )),
        ),
    };
    let short = require.is_some_and(|r| sandbox.level < r);
    let mut f = finding(
        "isolation",
        if short { State::Missing } else { state },
        detail,
    );
    if short {
        f.detail = format!(
            "{} (required: {})",
            f.detail,
            require.map_or("", Level::name)
        );
    }
    f.fix = fix;
    f.needed(require.is_some())
}

fn full_fix(sandbox: &Sandbox) -> String {
    match sandbox.why_not_full {
        Some(NotFull::NoBubblewrap) => {
            format!("for full isolation, {}", tools::how_to_install("bwrap"))
        }
        _ => "for full isolation, run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 kernel.apparmor_restrict_unprivileged_userns=0); a container needs them allowed by its seccomp profile".to_string(),
    }
}

fn bubblewrap(sandbox: &Sandbox) -> Finding {
    match (sandbox.level, &sandbox.why_not_full) {
        (Level::Full, _) => finding("bubblewrap", State::Ok, "works: namespaces can be made"),
        (_, Some(NotFull::NoBubblewrap)) => finding("bubblewrap", State::Missing, "not installed")
            .fix(tools::how_to_install("bwrap")),
        (_, why) => finding(
            "bubblewrap",
            State::Missing,
            why.as_ref()
                .map_or_else(|| "not used".into(), ToString::to_string),
        )
        .fix(full_fix(sandbox)),
    }
}

/// Whether learner code could read the grader's binary where it runs
/// without namespaces (it can run none of it: the reference programs need
/// the grading's token).
fn grader_reach(sandbox: &Sandbox) -> Finding {
    let exe = sandbox.labgrade().display().to_string();
    let readable = crate::sandbox::unreadable_by_others(sandbox.labgrade()).is_none();
    match sandbox.level {
        Level::Uid if readable => finding(
            "grader",
            State::Warning,
            format!("{exe} can be read by learner code at the uid level"),
        )
        .fix(format!("install it root-only: chmod 700 {exe}")),
        Level::Minimal => finding(
            "grader",
            State::Warning,
            "learner code runs as the grader's own user: it can read and run the grader",
        )
        .fix(full_fix(sandbox)),
        _ => finding(
            "grader",
            State::Ok,
            format!("{exe} is out of learner code's reach"),
        ),
    }
}

/// Whether Windows hand-ins can be graded: mingw-w64 to build them, Wine
/// to run them (its version), and whether this slot's prefix is made yet.
fn wine(opts: &Options) -> Finding {
    use crate::target::wine;
    let purpose = "builds and runs Windows hand-ins";
    let found = match wine::find() {
        Ok(found) => found,
        Err(missing) => {
            return finding("wine", State::Missing, format!("{missing} · {purpose}"))
                .fix(missing.fix());
        }
    };
    let version = std::process::Command::new(&found.loader)
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "a version it does not tell".into());
    let prefix = if wine::prefix_made(opts.slot) {
        format!("the prefix of slot {} is made", opts.slot)
    } else {
        format!(
            "the prefix of slot {} is made by the first Windows grading (about 8 s, 693 MB)",
            opts.slot
        )
    };
    let rust = crate::sandbox::rust_sysroot()
        .map(|sysroot| crate::sandbox::builds_for(&sysroot, wine::RUST_TRIPLE));
    let detail = format!(
        "{version} ({}), {} · {purpose}; {prefix}",
        found.loader.display(),
        wine::CC
    );
    match rust {
        Some(false) => finding(
            "wine",
            State::Warning,
            format!(
                "{detail}; Rust Windows hand-ins cannot be built: the toolchain lacks {}",
                wine::RUST_TRIPLE
            ),
        )
        .fix(format!("rustup target add {}", wine::RUST_TRIPLE)),
        _ => finding("wine", State::Ok, detail),
    }
}

fn strace(rubric: &Rubric) -> Finding {
    let users: Vec<&str> = rubric
        .checks
        .iter()
        .filter(|c| matches!(c.kind(), Kind::FileUsesMmap | Kind::ShmUsesMmap))
        .map(|c| c.id())
        .collect();
    let needed_by = if users.is_empty() {
        "no check of this rubric needs it".to_string()
    } else {
        format!("needed by {}", users.join(", "))
    };
    let f = match Tracer::probe() {
        Tracer::Available { strace, seccomp } => finding(
            "strace",
            State::Ok,
            format!(
                "{} can trace{} · {needed_by}",
                strace.display(),
                if seccomp { " with a seccomp filter" } else { "" }
            ),
        ),
        Tracer::Unavailable(Untraceable::NotInstalled) => {
            finding("strace", State::Missing, format!("not installed · {needed_by}"))
                .fix(tools::how_to_install("strace"))
        }
        Tracer::Unavailable(why) => finding("strace", State::Missing, format!("{why} · {needed_by}"))
            .fix("allow ptrace (a container's seccomp profile or kernel.yama.ptrace_scope may forbid it); without it those checks are left out of the maximum"),
    };
    f.needed(!users.is_empty())
}

/// Every tool a build may start, started as a build starts it.
fn build_tools(sandbox: &Sandbox, opts: &Options) -> Vec<Finding> {
    let build = &opts.rubric.build;
    let commands: Vec<String> = match &build.command {
        Some(argv) => argv.first().cloned().into_iter().collect(),
        None => vec![
            build.cc.clone(),
            build.cxx.clone(),
            "make".into(),
            "cmake".into(),
            "cargo".into(),
        ],
    };
    let run = match crate::state::run_dir(&std::env::temp_dir()) {
        Ok(dir) => dir,
        Err(e) => {
            return vec![
                finding(
                    "build tools",
                    State::Missing,
                    format!("cannot make a directory to try them in: {e}"),
                )
                .needed(true),
            ];
        }
    };
    let area = match sandbox.area(
        run.path(),
        opts.private_mounts,
        crate::ipc::default_mechanism(),
    ) {
        Ok(area) => area,
        Err(e) => {
            return vec![
                finding(
                    "build tools",
                    State::Missing,
                    format!("cannot prepare the sandbox: {e}"),
                )
                .needed(true),
            ];
        }
    };
    let mut findings = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let purpose = tools::tool(command).map_or("the rubric's build command", |t| t.purpose);
        if command == "cargo"
            && let Some(problem) = sandbox.toolchain_problem(None)
        {
            findings.push(
                finding(command, State::Missing, format!("{problem} · {purpose}"))
                    .fix(problem.fix())
                    .needed(true),
            );
            continue;
        }
        let dir = run.path().join(format!("tool-{i}"));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            findings.push(finding(command, State::Missing, e.to_string()).needed(true));
            continue;
        }
        let f = match build::try_tool(sandbox, &area, &dir, command) {
            ToolCheck::Works(version) => {
                finding(command, State::Ok, format!("{version} · {purpose}"))
            }
            ToolCheck::NotStarted(StartError::NotInstalled { program, searched }) => finding(
                command,
                State::Missing,
                format!("not installed · {purpose}; not found in {searched}"),
            )
            .fix(tools::how_to_install(&program)),
            ToolCheck::NotStarted(e @ StartError::NotReadable { .. }) => {
                finding(command, State::Missing, e.to_string())
                    .fix("install it where every user can read it, or grade at the full level (install bubblewrap)")
            }
            ToolCheck::NotStarted(e) => finding(command, State::Missing, e.to_string()),
            ToolCheck::Fails(how) => finding(
                command,
                State::Missing,
                format!("`{command} --version` failed: {how}"),
            ),
        };
        findings.push(f.needed(true));
    }
    findings.push(watch(sandbox, &area, run.path(), opts.rubric));
    let mechanism = area.mechanism;
    drop(area);
    sandbox.finish(mechanism);
    findings
}

/// Whether the sandbox's init can watch a program's reads and writes (a
/// seccomp filter with a listener, Linux 5.5 or later): tried on `true`.
fn watch(
    sandbox: &Sandbox,
    area: &crate::sandbox::Area,
    run: &std::path::Path,
    rubric: &Rubric,
) -> Finding {
    let needed_by: Vec<&str> = rubric
        .checks
        .iter()
        .filter(|c| matches!(c.kind(), Kind::FileUsesMmap | Kind::ShmUsesMmap))
        .map(|c| c.id())
        .collect();
    let dir = run.join("watch");
    let _ = std::fs::create_dir_all(&dir);
    let _ = sandbox.give(&dir);
    let limits = crate::runner::Limits {
        cpu_secs: 10,
        file_bytes: 1 << 20,
        open_files: 64,
    };
    let env = crate::runner::clean_env(&dir);
    let spec = crate::runner::Spec::command(
        "watch",
        vec!["true".into()],
        &dir,
        env,
        std::time::Duration::from_secs(30),
        limits,
    )
    .running("/bin/true".into());
    let spec = sandbox.contain(spec, area, crate::sandbox::Purpose::Run);
    let works = crate::runner::run(spec).is_ok_and(|f| f.io.is_some());
    let needed = !needed_by.is_empty();
    if works {
        finding(
            "watch",
            State::Ok,
            "the sandbox's init can watch reads and writes (seccomp notifications)",
        )
        .needed(needed)
    } else {
        finding(
            "watch",
            State::Missing,
            format!(
                "reads and writes cannot be watched (seccomp notifications: Linux 5.5 or later, allowed by any container's profile) · needed by {}",
                needed_by.join(", ")
            ),
        )
        .fix("grade on Linux 5.5 or later; in a container, allow the seccomp() system call")
        .needed(needed)
    }
}

fn cgroups(sandbox: &Sandbox) -> Finding {
    match sandbox.cgroups() {
        Some(cg) => finding("cgroups", State::Ok, format!("{cg}: a memory limit that counts shared memory, a process limit")),
        None => finding(
            "cgroups",
            State::Warning,
            "none writable: memory bounded by RLIMIT_AS (which counts reservations, not use), processes by RLIMIT_NPROC",
        )
        .fix("run as root on a machine whose /sys/fs/cgroup is writable"),
    }
}

fn shm(sandbox: &Sandbox, opts: &Options) -> Finding {
    let largest = opts.rubric.largest_region();
    let mib = |b: u64| format!("{} MiB", b.div_ceil(1 << 20));
    let system = crate::ipc::default_mechanism().system_dir();
    let shown = system.display().to_string();
    let (room, place) = if sandbox.level == Level::Full && opts.private_mounts {
        (
            BUDGET.shm_bytes,
            format!("a private {} tmpfs per grading", mib(BUDGET.shm_bytes)),
        )
    } else {
        match rustix::fs::statvfs(system) {
            Ok(st) => {
                let free = st.f_bavail * st.f_frsize;
                let room = free.min(if sandbox.level == Level::Full {
                    BUDGET.shm_bytes
                } else {
                    u64::MAX
                });
                (
                    room,
                    format!(
                        "the machine's {shown}, {} of {} free",
                        mib(free),
                        mib(st.f_blocks * st.f_frsize)
                    ),
                )
            }
            Err(e) => (0, format!("{shown} cannot be read: {e}")),
        }
    };
    let detail = format!("{place}; the rubric's largest region is {}", mib(largest));
    if largest <= room {
        finding(&shown, State::Ok, detail).needed(true)
    } else {
        finding(&shown, State::Missing, format!("{detail}, which does not fit"))
            .fix(format!("give {shown} more room (in Docker: --shm-size=1g), or lower the size of the rubric's shm.large checks"))
            .needed(true)
    }
}

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

/// The diagnosis for a terminal (colour stripped by anstream elsewhere).
pub fn write_human(d: &Diagnosis, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{BOLD}labgrade doctor{BOLD:#} {DIM}— what this machine offers for grading with {}{DIM:#}\n",
        d.rubric
    )?;
    let width = d.findings.iter().map(|f| f.topic.len()).max().unwrap_or(0);
    for f in &d.findings {
        let (mark, style) = match (f.state, f.needed) {
            (State::Ok, _) => ("✓", GREEN),
            (State::Warning, _) | (State::Missing, false) => ("!", YELLOW),
            (State::Missing, true) => ("✗", RED),
        };
        writeln!(
            out,
            "  {style}{mark}{style:#} {:<width$}  {}",
            f.topic, f.detail
        )?;
        if let Some(fix) = &f.fix {
            writeln!(out, "    {:<width$}  {DIM}fix: {fix}{DIM:#}", "")?;
        }
    }
    writeln!(out)?;
    let missing: Vec<&str> = d
        .findings
        .iter()
        .filter(|f| f.needed && f.state == State::Missing)
        .map(|f| f.topic.as_str())
        .collect();
    if d.ready {
        writeln!(
            out,
            "{GREEN}Ready:{GREEN:#} everything the rubric needs is here; gradings run at the {} level.",
            d.level.name()
        )
    } else {
        writeln!(
            out,
            "{RED}Not ready:{RED:#} {} (marked ✗); gradings here would be incomplete.",
            missing.join(", ")
        )
    }
}
