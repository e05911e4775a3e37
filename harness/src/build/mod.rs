//! Building a submission: copy it (the learner's directory is never
//! written to), detect how it builds, build it through the runner, and find
//! each program the rubric names. A program that fails to build does not
//! stop the others from being graded.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

mod headers;
mod provenance;

use crate::hash::SKIPPED_DIRS;
use crate::rubric::Rubric;
use crate::runner::{self, Ending, Finished, Limits, RunRecord, Spec, StartError};
use crate::sandbox::{Area, Purpose, Sandbox, ToolchainProblem};
use crate::target::Target;
use crate::tools;

/// Where a Cargo submission's dependencies are vendored, in its copy.
const VENDOR_DIR: &str = ".labgrade-vendor";

/// Limits for build commands: compilers are big but finite.
const BUILD_LIMITS: Limits = Limits {
    cpu_secs: 900,
    file_bytes: 4 << 30,
    open_files: 4096,
};

/// How one program came out of the build.
#[derive(Debug, Clone)]
pub enum Program {
    Built(PathBuf),
    /// Not built: why, in a sentence, and the relevant compiler output.
    Missing {
        why: String,
    },
}

/// Everything the build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// How the build was chosen ("make", "cargo", "cmake", "cc", "rubric").
    pub method: String,
    /// Every command that ran, in order.
    pub runs: Vec<RunRecord>,
    /// Program binary name -> outcome.
    pub programs: BTreeMap<String, Program>,
    /// What the programs were built for, and run as.
    pub target: &'static dyn Target,
    /// Set when the sources are for a target this machine cannot build
    /// and run (Windows code without mingw-w64 and Wine).
    pub unsupported: Option<crate::target::Unsupported>,
    /// Set when the build could not run at all (a missing compiler, say):
    /// the grader's problem, never the learner's.
    pub grader_error: Option<BuildFault>,
    /// Programs whose sources read the console (`_getch()`), which returns
    /// at once when there is none: what a hint can name.
    pub reads_console: std::collections::BTreeSet<String>,
}

/// Why a build could not run on this machine: never the learner's doing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildFault {
    /// A build tool could not be started.
    #[error("{0}")]
    Tool(StartError),
    /// A Cargo hand-in, and no toolchain a build here could use.
    #[error("{0}")]
    Toolchain(ToolchainProblem),
    /// What the built programs run under could not be set up (Wine).
    #[error("{0}")]
    Runtime(String),
}

impl BuildFault {
    /// What the grading machine's keeper should do about it.
    pub fn fix(&self) -> String {
        match self {
            BuildFault::Tool(StartError::NotInstalled { program, .. }) => {
                match tools::tool(program) {
                    Some(tool) => format!(
                        "install {program} on the grading machine ({}); `labgrade doctor` lists everything grading needs",
                        tool.install
                    ),
                    None => format!(
                        "install {program} on the grading machine, or correct the rubric's build command; `labgrade doctor` checks it"
                    ),
                }
            }
            BuildFault::Tool(StartError::NotReadable { path, .. }) => format!(
                "make {} readable by every user, or grade at the full level (install bubblewrap); `labgrade doctor` checks it",
                path.display()
            ),
            BuildFault::Tool(StartError::Failed { .. }) => {
                "run `labgrade doctor` on the grading machine to see what is wrong".to_string()
            }
            BuildFault::Toolchain(problem) => problem.fix().to_string(),
            BuildFault::Runtime(_) => {
                "run `labgrade doctor` on the grading machine to see what is wrong with Wine"
                    .to_string()
            }
        }
    }
}

impl BuildResult {
    pub fn program(&self, name: &str) -> Option<&Path> {
        match self.programs.get(name) {
            Some(Program::Built(path)) => Some(path),
            _ => None,
        }
    }

    /// Moves every built program out of the build's reach: a copy in
    /// `dest`, owned by the grader and read-only to learner code, so no run
    /// can rewrite a program for the next (at the uid level no mount
    /// namespace keeps the build directory from later runs).
    pub fn fix_programs(&mut self, dest: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dest)?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))?;
        for (name, program) in self.programs.iter_mut() {
            if let Program::Built(path) = program {
                let fixed = dest.join(self.target.program_file(name));
                std::fs::copy(&*path, &fixed)?;
                std::fs::set_permissions(&fixed, std::fs::Permissions::from_mode(0o555))?;
                *path = fixed;
            }
        }
        Ok(())
    }
}

/// Copies `src` into `dst`: regular files and directories only (links are
/// left out, so nothing in the copy points outside it), without version
/// control data or earlier build output.
pub fn copy_submission(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if kind.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| entry.file_name() == *s) {
                copy_submission(&entry.path(), &to)?;
            }
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// The environment builds run in: a minimal one, the toolchain first on
/// PATH, and a Cargo home of the build's own (dependencies come vendored).
pub fn build_env(home: &Path, toolchain_bin: Option<&Path>) -> Vec<(OsString, OsString)> {
    let mut env = runner::clean_env(home);
    if let Some(bin) = toolchain_bin {
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
        runner::set_env(&mut env, "PATH", path);
    }
    runner::set_env(&mut env, "CARGO_HOME", home.join(".cargo-home"));
    env
}

/// How a submission is built: the rubric's command, or what its files say.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    Rubric(Vec<String>),
    Make,
    Cargo,
    Cmake,
    /// Each program compiled from its own source file.
    Cc,
}

impl Method {
    /// Whether the build may run Cargo or rustc: a Cargo project, or any
    /// Rust source beside a Makefile, a CMakeLists or the rubric's command.
    fn may_use_rust(&self, dir: &Path) -> bool {
        match self {
            Method::Cargo => true,
            Method::Cc => false,
            Method::Rubric(_) | Method::Make | Method::Cmake => {
                std::fs::read_dir(dir).is_ok_and(|entries| {
                    entries.flatten().any(|e| {
                        let path = e.path();
                        path.extension().is_some_and(|x| x == "rs")
                            || e.file_name() == "Cargo.toml"
                            || path.join("Cargo.toml").is_file()
                    })
                })
            }
        }
    }

    fn detect(rubric: &Rubric, dir: &Path) -> Method {
        let has = |name: &str| dir.join(name).is_file();
        if let Some(command) = &rubric.build.command {
            Method::Rubric(command.clone())
        } else if ["Makefile", "makefile", "GNUmakefile"]
            .iter()
            .any(|m| has(m))
        {
            Method::Make
        } else if has("Cargo.toml") {
            Method::Cargo
        } else if has("CMakeLists.txt") {
            Method::Cmake
        } else {
            Method::Cc
        }
    }

    /// Its name in reports.
    fn name(&self) -> &'static str {
        match self {
            Method::Rubric(_) => "rubric",
            Method::Make => "make",
            Method::Cargo => "cargo",
            Method::Cmake => "cmake",
            Method::Cc => "cc",
        }
    }
}

/// A build's steps: each runs in the build's sandbox with what is left of
/// the build's one budget (so many slow steps cannot add up past it and
/// eat the overall deadline), and is recorded.
struct Steps<'a> {
    sandbox: &'a Sandbox,
    area: &'a Area,
    dir: &'a Path,
    env: Vec<(OsString, OsString)>,
    budget: std::time::Duration,
    started: std::time::Instant,
    runs: Vec<RunRecord>,
    fault: Option<BuildFault>,
    /// The grader's directories every step sees, read-only.
    shown_dirs: Vec<PathBuf>,
}

impl Steps<'_> {
    /// Runs `argv` as a build step; None when it could not be started (the
    /// grader's fault, kept in `fault`).
    fn run(&mut self, role: &str, argv: Vec<String>) -> Option<Finished> {
        self.run_all(vec![(role.to_string(), argv)]).pop().flatten()
    }

    /// Runs independent steps at once (each its own sandbox, in the same
    /// area), each to its end; None for one that could not be started.
    fn run_all(&mut self, steps: Vec<(String, Vec<String>)>) -> Vec<Option<Finished>> {
        let left = self.budget.saturating_sub(self.started.elapsed());
        let started: Vec<_> = steps
            .into_iter()
            .map(|(role, argv)| {
                let mut plain =
                    Spec::command(role, argv, self.dir, self.env.clone(), left, BUILD_LIMITS);
                plain.shown_dirs = self.shown_dirs.clone();
                let spec = self
                    .sandbox
                    .contain(plain.clone(), self.area, Purpose::Build);
                (plain, runner::start(spec))
            })
            .collect();
        started
            .into_iter()
            .map(|(plain, running)| {
                let finished = match running {
                    Ok(running) => running.finish(),
                    Err(err) => {
                        self.runs.push(not_started(&plain, &err));
                        self.fault.get_or_insert(BuildFault::Tool(err));
                        return None;
                    }
                };
                self.runs.push(finished.record.clone());
                if let Some(err) = finished.not_started {
                    self.fault.get_or_insert(BuildFault::Tool(err));
                    return None;
                }
                Some(finished)
            })
            .collect()
    }

    /// How a finished step failed, in words; empty when it did not.
    fn failure(&self, f: &Finished) -> String {
        failure(f, self.budget)
    }
}

/// Builds the submission copied at `dir`, with `home` as its HOME, in the
/// sandbox's area.
pub fn build(
    rubric: &Rubric,
    dir: &Path,
    home: &Path,
    sandbox: &Sandbox,
    area: &Area,
) -> BuildResult {
    let names = [
        rubric.programs.mapfile.binary.as_str(),
        rubric.programs.writer.binary.as_str(),
        rubric.programs.reader.binary.as_str(),
    ];
    let mut result = BuildResult {
        method: String::new(),
        runs: Vec::new(),
        programs: BTreeMap::new(),
        target: &crate::target::Native,
        unsupported: None,
        grader_error: None,
        reads_console: Default::default(),
    };
    let target = match crate::target::detect(dir, rubric.build.target) {
        Ok(target) => target,
        Err(unsupported) => {
            result.unsupported = Some(unsupported);
            result.method = "none (Windows API)".into();
            return result;
        }
    };
    result.target = target;
    for name in names {
        if let Some((source, _)) = find_source(dir, name)
            && reads_console(&std::fs::read(dir.join(source)).unwrap_or_default())
        {
            result.reads_console.insert(name.to_string());
        }
    }
    let search = search_dirs(rubric, dir);
    // Whatever was handed in under a program's name is not trusted: the
    // grader builds from the sources.
    for d in &search {
        for name in names {
            let _ = std::fs::remove_file(d.join(target.program_file(name)));
        }
    }
    let _ = sandbox.give(dir);
    let _ = sandbox.give(home);
    let method = Method::detect(rubric, dir);
    // The Rust toolchain is looked for (and put on PATH) only for a build
    // that may use it.
    let toolchain = method
        .may_use_rust(dir)
        .then(|| sandbox.toolchain_bin())
        .flatten();
    let mut steps = Steps {
        sandbox,
        area,
        dir,
        env: build_env(home, toolchain.as_deref()),
        budget: rubric.build.timeout,
        started: std::time::Instant::now(),
        runs: Vec::new(),
        fault: None,
        shown_dirs: Vec::new(),
    };
    result.method = method.name().into();
    let mut cargo_bins = BTreeMap::new();
    let mut vendor_run = None;
    let mut failure_note = String::new();
    match method {
        Method::Rubric(command) => {
            if let Some(f) = steps.run("build", command) {
                failure_note = steps.failure(&f);
            }
        }
        Method::Make => {
            let mut make = vec!["make".to_string()];
            let shims = shims_seen(sandbox, dir, target);
            make.extend(target.make_variables(shims.as_deref()));
            if let Some(f) = steps.run("build", make) {
                failure_note = steps.failure(&f);
            }
        }
        Method::Cargo => match sandbox.toolchain_problem(target.rust_target().map(|t| t.triple)) {
            Some(problem) => steps.fault = Some(BuildFault::Toolchain(problem)),
            None => {
                // Dependencies are fetched now, by the grader, into the
                // copy; the build itself runs offline.
                let left = steps.budget.saturating_sub(steps.started.elapsed());
                vendor_run = vendor(sandbox, dir, home, left);
                if let Some(f) = steps.run("build", cargo_build(sandbox, dir, target)) {
                    failure_note = steps.failure(&f);
                    let inside = sandbox.build_path(dir, "");
                    cargo_bins = cargo_executables(&f.stdout.text())
                        .into_iter()
                        .map(|(name, path)| match path.strip_prefix(&inside) {
                            Ok(rel) => (name, dir.join(rel)),
                            Err(_) => (name, path),
                        })
                        .collect();
                    // Cargo's JSON is for the grader, in whatever order its
                    // jobs finished: the report shows what it built, sorted.
                    if let Some(record) = steps.runs.last_mut() {
                        let built: Vec<&str> = cargo_bins.keys().map(String::as_str).collect();
                        record.stdout.excerpt = format!("programs built: {}", built.join(", "));
                    }
                }
            }
        },
        Method::Cmake => {
            let mut configure = [
                "cmake",
                "-S",
                ".",
                "-B",
                "build",
                "-DCMAKE_BUILD_TYPE=Release",
            ]
            .map(String::from)
            .to_vec();
            let shims = shims_seen(sandbox, dir, target);
            configure.extend(target.cmake_variables(shims.as_deref()));
            if let Some(f) = steps.run("build", configure) {
                failure_note = steps.failure(&f);
                let compile = ["cmake", "--build", "build"].map(String::from).to_vec();
                if f.ending.success()
                    && let Some(f) = steps.run("build", compile)
                {
                    failure_note = steps.failure(&f);
                }
            }
        }
        Method::Cc => {
            // The programs are independent: compiled all at once.
            let mut compiles = Vec::new();
            let shims = headers::shims(dir, target);
            for name in names {
                let Some((source, cpp)) = find_source(dir, name) else {
                    result.programs.insert(
                        name.to_string(),
                        Program::Missing {
                            why: format!("no {name}.c or {name}.cpp was handed in"),
                        },
                    );
                    continue;
                };
                let (cc, cxx) = target.compilers(&rubric.build);
                let compiler = if cpp { cxx } else { cc };
                let bytes = std::fs::read(dir.join(&source)).unwrap_or_default();
                let mut flags = rubric.build.cflags.clone();
                flags.extend(target.compile_flags(&bytes, cpp));
                let mut argv = vec![compiler.to_string()];
                argv.extend(flags.iter().cloned());
                if let Some(pch) = precompiled(target, compiler, &flags, cpp) {
                    argv.push(format!("-I{}", sandbox.shown_path(&pch).display()));
                    if !steps.shown_dirs.contains(&pch) {
                        steps.shown_dirs.push(pch);
                    }
                }
                argv.extend(shims.iter().cloned());
                argv.extend(["-o".to_string(), target.program_file(name), source]);
                argv.extend(
                    rubric
                        .build
                        .libs
                        .iter()
                        .filter(|lib| target.links(lib))
                        .cloned(),
                );
                compiles.push((name.to_string(), argv));
            }
            let roles: Vec<String> = compiles.iter().map(|(role, _)| role.clone()).collect();
            for (name, finished) in roles.into_iter().zip(steps.run_all(compiles)) {
                if let Some(f) = finished
                    && !f.ending.success()
                {
                    let why = format!("{name} did not compile ({})", steps.failure(&f));
                    result.programs.insert(name, Program::Missing { why });
                }
            }
        }
    }
    result.runs = steps.runs;
    result.grader_error = steps.fault;

    if let Some(run) = vendor_run {
        result.runs.insert(0, run);
    }
    let grader = provenance::Grader::running();
    if let Some(copy) = grader
        .as_ref()
        .and_then(|g| provenance::grader_copy(dir, g, &[VENDOR_DIR]))
    {
        let rel = copy
            .strip_prefix(dir)
            .unwrap_or(&copy)
            .display()
            .to_string();
        for name in names {
            result.programs.insert(
                name.to_string(),
                Program::Missing {
                    why: format!(
                        "the build put a copy of the grader itself in the submission ({rel}): nothing it built is trusted"
                    ),
                },
            );
        }
        return result;
    }
    for name in names {
        if result.programs.contains_key(name) {
            continue;
        }
        // The first file of that name where programs are looked for, link
        // or not: what it is decides whether it is accepted.
        let file = target.program_file(name);
        let found = cargo_bins.get(name).cloned().or_else(|| {
            search
                .iter()
                .map(|d| d.join(&file))
                .find(|p| p.symlink_metadata().is_ok_and(|m| !m.is_dir()))
        });
        let outcome = match found {
            Some(path) => match provenance::problem(name, &path, dir, grader.as_ref()) {
                None => Program::Built(path),
                Some(why) => Program::Missing { why },
            },
            None if !failure_note.is_empty() => Program::Missing {
                why: format!("the build failed ({failure_note}) and produced no {name}"),
            },
            None => Program::Missing {
                why: format!(
                    "the build produced no program named {name}{}",
                    what_was_there(&search, dir)
                ),
            },
        };
        result.programs.insert(name.to_string(), outcome);
    }
    result
}

/// What became of running a build tool the way a build would.
#[derive(Debug, Clone)]
pub enum ToolCheck {
    /// It ran; the first line it printed (its version, usually).
    Works(String),
    /// It could not be started, and why.
    NotStarted(StartError),
    /// It started and failed: how, in a line.
    Fails(String),
}

/// Runs `TOOL --version` exactly as a build step would run the tool: in
/// the build's sandbox, as the learner's uid, with the build's PATH, in
/// `dir` (an empty directory of the area's run).
pub fn try_tool(sandbox: &Sandbox, area: &Area, dir: &Path, tool: &str) -> ToolCheck {
    let _ = sandbox.give(dir);
    let plain = Spec::command(
        format!("{tool} --version"),
        vec![tool.to_string(), "--version".into()],
        dir,
        build_env(dir, sandbox.toolchain_bin().as_deref()),
        std::time::Duration::from_secs(30),
        BUILD_LIMITS,
    );
    match runner::run(sandbox.contain(plain, area, Purpose::Build)) {
        Err(e) => ToolCheck::NotStarted(e),
        Ok(Finished {
            not_started: Some(e),
            ..
        }) => ToolCheck::NotStarted(e),
        Ok(f) if f.ending.success() => ToolCheck::Works(
            f.stdout
                .text()
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string(),
        ),
        Ok(f) => ToolCheck::Fails(f.ending.describe()),
    }
}

/// What the build left where programs are looked for, for a program not
/// found: the executables it produced, and the sources handed in (at the
/// top or in src/).
fn what_was_there(search: &[PathBuf], dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mut programs = Vec::new();
    let mut sources = Vec::new();
    let src = dir.join("src");
    for d in search.iter().chain([&src]) {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let name = crate::text::name(&entry.file_name());
            let rel = match d.strip_prefix(dir) {
                Ok(sub) if !sub.as_os_str().is_empty() => format!("{}/{name}", sub.display()),
                _ => name.clone(),
            };
            let source = [".c", ".cc", ".cpp", ".cxx", ".rs"]
                .iter()
                .any(|e| name.ends_with(e));
            if source {
                sources.push(rel);
            } else if *d != src && meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                programs.push(rel);
            }
        }
    }
    programs.sort();
    sources.sort();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "; it produced: {}; sources found: {}",
        list(&programs),
        list(&sources)
    )
}

/// How a build step failed, in words; empty when it did not.
fn failure(f: &Finished, budget: std::time::Duration) -> String {
    match f.ending {
        Ending::Exited(0) => String::new(),
        Ending::TimedOut => format!(
            "the whole build took longer than the {} it may take (build.timeout)",
            humantime::format_duration(budget)
        ),
        other => other.describe(),
    }
}

fn not_started(spec: &Spec, err: &StartError) -> RunRecord {
    RunRecord {
        role: spec.role.clone(),
        argv: spec.shown.clone(),
        exit: runner::ExitRecord::NotStarted,
        stdout: runner::StreamRecord {
            excerpt: String::new(),
            total_bytes: 0,
        },
        stderr: runner::StreamRecord {
            excerpt: err.to_string(),
            total_bytes: 0,
        },
        wall_ms: 0,
        peak_rss_kib: None,
        left_behind: 0,
        limits_hit: Vec::new(),
        crashed: None,
    }
}

/// Where built programs are looked for, in order.
fn search_dirs(rubric: &Rubric, dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![
        dir.to_path_buf(),
        dir.join("bin"),
        dir.join("build"),
        dir.join("target/release"),
    ];
    dirs.extend(rubric.build.binaries.iter().map(|b| dir.join(b)));
    dirs
}

/// PROGRAM.c, .cpp or .cc, at the top or in src/.
/// Whether a source calls a console read (`_getch`, `getch`, `_getche`,
/// `ReadConsole`): with no console it returns at once.
fn reads_console(source: &[u8]) -> bool {
    ["_getch(", "getch(", "_getche(", "getche(", "ReadConsole"]
        .iter()
        .any(|call| memchr::memmem::find(source, call.as_bytes()).is_some())
}

/// The shims a make or CMake build needs ([`headers::shims`]), as an
/// absolute directory as the build sees it (the build may change
/// directory).
fn shims_seen(sandbox: &Sandbox, dir: &Path, target: &dyn Target) -> Option<PathBuf> {
    headers::shims(dir, target).map(|_| sandbox.build_path(dir, headers::SHIMS_DIR))
}

/// The directory of the target's precompiled system headers for this
/// compile, made the first time (and said so); None when the target has
/// none, or they cannot be made here (the compile then reads the headers).
fn precompiled(
    target: &dyn Target,
    compiler: &str,
    flags: &[String],
    cpp: bool,
) -> Option<PathBuf> {
    let wanted = target.precompiled_headers();
    if wanted.is_empty() {
        return None;
    }
    let base = crate::target::wine::base().ok()?.join("pch");
    let making = || {
        eprintln!(
            "labgrade: precompiling {} for {compiler} (once per machine and flags, about 3 s)",
            wanted.join(", ")
        );
    };
    let stand_ins = target.stub_headers();
    headers::precompiled(&base, compiler, flags, cpp, wanted, stand_ins, &making)
        .ok()
        .flatten()
}

fn find_source(dir: &Path, name: &str) -> Option<(String, bool)> {
    for sub in ["", "src/"] {
        for (ext, cpp) in [("c", false), ("cpp", true), ("cc", true), ("cxx", true)] {
            let rel = format!("{sub}{name}.{ext}");
            if dir.join(&rel).is_file() {
                return Some((rel, cpp));
            }
        }
    }
    None
}

/// Binary name -> path, from `cargo build --message-format=json`.
fn cargo_executables(stdout: &str) -> BTreeMap<String, PathBuf> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_string();
            let exe = m["executable"].as_str()?;
            Some((name, PathBuf::from(exe)))
        })
        .collect()
}

/// `cargo build` offline, from what [`vendor`] fetched, with the diagnostics
/// and the executables' paths as JSON on stdout.
fn cargo_build(sandbox: &Sandbox, dir: &Path, target: &dyn Target) -> Vec<String> {
    let vendored = sandbox.build_path(dir, VENDOR_DIR);
    let mut argv = vec![
        "cargo".to_string(),
        "build".into(),
        "--release".into(),
        "--offline".into(),
        // No "Compiling"/"Finished" lines (their order and times vary);
        // warnings and errors are still shown.
        "--quiet".into(),
        "--message-format=json-render-diagnostics".into(),
        "--config".into(),
        "source.crates-io.replace-with=\"labgrade-vendored\"".into(),
        "--config".into(),
        format!(
            "source.labgrade-vendored.directory=\"{}\"",
            vendored.display()
        ),
    ];
    argv.extend(target.rust_target().iter().flat_map(|t| t.cargo_args()));
    argv
}

/// `cargo vendor` in the submission's copy, run by the grader (it runs no
/// code of the learner's, and needs the network the build will not have),
/// with the toolchain's own cargo: a rust-toolchain file cannot pick
/// another, and no wrapper the submission configures is run.
fn vendor(
    sandbox: &Sandbox,
    dir: &Path,
    home: &Path,
    timeout: std::time::Duration,
) -> Option<RunRecord> {
    let toolchain = sandbox.toolchain()?;
    let argv = vec!["cargo".into(), "vendor".into(), VENDOR_DIR.into()];
    let mut spec = Spec::command(
        "vendor",
        argv.clone(),
        dir,
        runner::clean_env(home),
        timeout,
        BUILD_LIMITS,
    )
    .running(toolchain.join("bin/cargo"))
    .shown_as(argv);
    spec.args = vec!["vendor".into(), "--quiet".into(), VENDOR_DIR.into()];
    for key in ["PATH", "HOME", "CARGO_HOME"] {
        if let Some(value) = std::env::var_os(key) {
            spec.set_env(key, value);
        }
    }
    spec.set_env("RUSTC", toolchain.join("bin/rustc"));
    spec.set_env("RUSTC_WRAPPER", "");
    let record = runner::run(spec).ok().map(|f| f.record);
    // The build (as the learner's uid) must be able to write beside it.
    let _ = sandbox.give(dir);
    record
}
