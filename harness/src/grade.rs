//! `labgrade grade`, the whole pipeline for one submission:
//! copy -> build -> run and observe (session, experiments) -> judge -> report.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::build::{self, Program};
use crate::hash::{seed, tree_sha256};
use crate::judge;
use crate::observe::trace::Tracer;
use crate::report::{
    BuildInfo, CheckReport, GraderInfo, IsolationInfo, PlatformInfo, ProgramInfo, Report,
    RubricInfo, SCHEMA_VERSION, SubmissionInfo,
};
use crate::rubric::Rubric;
use crate::sandbox::{Level, Sandbox};
use crate::session::Session;
use crate::watchdog::Progress;

#[derive(Debug, Clone)]
pub struct Options {
    /// Run only these checks (and what they need); report only these.
    pub only: Vec<String>,
    /// Show checks the rubric hides from learners.
    pub show_hidden: bool,
    /// The strongest isolation to use (the strongest that works is used).
    pub isolation: Level,
    /// Which job slot this grading is (picks its unprivileged uid).
    pub slot: u32,
    /// Whether the grader has its own mount namespace (see
    /// `sandbox::enter_private_mounts`).
    pub private_mounts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            only: Vec::new(),
            show_hidden: false,
            isolation: Level::Full,
            slot: 0,
            private_mounts: false,
        }
    }
}

/// Why nothing could be graded: a usage error, or this machine's fault
/// (never the learner's, who gets no report then).
#[derive(Debug, thiserror::Error)]
pub enum GradeError {
    #[error("{}: no such directory (give the directory holding the submission's sources)", .0.display())]
    NoDirectory(std::path::PathBuf),
    /// A check `--only` names that the rubric does not have.
    #[error("{0}")]
    Selection(String),
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    /// The grading's own files could not be made: what, and why.
    #[error("cannot {what}: {source}")]
    Setup {
        what: String,
        source: std::io::Error,
    },
}

fn setup(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GradeError {
    let what = what.into();
    move |source| GradeError::Setup { what, source }
}

/// Why a Windows submission cannot be graded on this machine, and the fix.
fn unsupported_error(u: &crate::target::Unsupported) -> String {
    let files = if u.files.is_empty() {
        String::new()
    } else {
        format!(" ({})", u.files)
    };
    format!(
        "written against {}{files}, which this machine cannot build and run: {}; {}",
        u.platform,
        u.missing,
        u.missing.fix()
    )
}

/// Grades the submission in `dir`. An `Err` means nothing could be graded.
pub fn grade(
    dir: &Path,
    rubric: &Rubric,
    options: &Options,
    progress: Option<&Progress>,
) -> Result<Report, GradeError> {
    let started = Instant::now();
    if !dir.is_dir() {
        return Err(GradeError::NoDirectory(dir.to_path_buf()));
    }
    let (to_run, to_report) =
        judge::selection(rubric, &options.only).map_err(GradeError::Selection)?;
    let submission_sha = tree_sha256(dir).map_err(setup(format!("read {}", dir.display())))?;

    let secret = crate::secret::Secret::load()?;
    let run_dir = crate::state::run_dir(&std::env::temp_dir())
        .map_err(setup("create a working directory"))?;
    let mut sandbox = Sandbox::probe(options.isolation, options.slot, options.private_mounts);
    if sandbox.level == Level::Minimal {
        sandbox.notes.push(format!(
            "learner code runs as the grader's own user: it can read the grader's secret key ({}), so the reference writer's message can be predicted",
            secret.path.display()
        ));
    } else if secret.readable_by_others() {
        sandbox.notes.push(format!(
            "the secret key {} can be read by other users: make it readable by its owner only (chmod 600)",
            secret.path.display()
        ));
    }
    let area = sandbox
        .area(
            run_dir.path(),
            options.private_mounts,
            crate::ipc::default_mechanism(),
        )
        .map_err(setup("prepare the sandbox"))?;
    let src = run_dir.path().join("submission");
    let home = run_dir.path().join("home");
    std::fs::create_dir_all(&home).map_err(setup(format!("create {}", home.display())))?;
    build::copy_submission(dir, &src).map_err(setup(format!("copy {}", dir.display())))?;

    // Whether strace works is asked while the build runs.
    let tracer = std::thread::spawn(Tracer::probe);
    let mut built = build::build(rubric, &src, &home, &sandbox, &area);
    built
        .fix_programs(&run_dir.path().join(".programs"))
        .map_err(setup("keep the built programs"))?;
    if built.target.uses_wine() && built.grader_error.is_none() {
        let slot = options.slot;
        let making = move || {
            eprintln!(
                "labgrade: making the Wine prefix of job slot {slot} (once per machine, about 8 s)"
            );
        };
        if let Err(e) = sandbox.start_wine(&area, rubric.deadline, &making) {
            let why = format!("Windows programs cannot run under Wine here: {e}");
            for program in built.programs.values_mut() {
                *program = Program::Missing { why: why.clone() };
            }
            built.grader_error = Some(build::BuildFault::Runtime(why));
        }
    }
    let build_info = BuildInfo {
        method: built.method.clone(),
        target: built.target.id().to_string(),
        programs: built
            .programs
            .iter()
            .map(|(name, p)| {
                let info = match p {
                    Program::Built(_) => ProgramInfo {
                        built: true,
                        why: None,
                    },
                    Program::Missing { why } => ProgramInfo {
                        built: false,
                        why: Some(why.clone()),
                    },
                };
                (name.clone(), info)
            })
            .collect::<BTreeMap<_, _>>(),
    };
    let error = built.unsupported.as_ref().map(unsupported_error);

    let mut draft = Draft {
        pending: Vec::new(),
        report: Report {
            schema_version: SCHEMA_VERSION,
            grader: GraderInfo {
                name: "labgrade".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            rubric: RubricInfo {
                origin: rubric.origin.clone(),
                title: rubric.title.clone(),
                sha256: rubric.sha256.clone(),
            },
            submission: SubmissionInfo {
                path: crate::text::name(dir.as_os_str()),
                sha256: submission_sha.clone(),
            },
            platform: PlatformInfo {
                os: std::env::consts::OS.into(),
                arch: std::env::consts::ARCH.into(),
            },
            isolation: IsolationInfo {
                level: sandbox.level.name().into(),
                degraded: sandbox.level == Level::Minimal,
                notes: sandbox.notes.clone(),
            },
            score: 0.0,
            max_score: 0.0,
            complete: false,
            error,
            build: build_info,
            checks: Vec::new(),
            hidden_checks: 0,
            duration_ms: 0,
        },
    };
    for check in rubric.checks.iter().filter(|c| to_report.contains(c.id())) {
        if check.hidden && !options.show_hidden {
            draft.report.hidden_checks += 1;
        } else {
            draft.report.checks.push(pending(check));
            draft.pending.push(check.id().to_string());
        }
    }
    draft.total();
    if let Some(p) = progress {
        p.update(draft.report.clone(), draft.pending.clone());
    }

    let mut session = Session::new(
        rubric,
        built,
        &sandbox,
        &area,
        tracer.join().unwrap_or_else(|_| {
            Tracer::Unavailable(crate::observe::trace::Untraceable::Refused(
                "the probe of strace failed".into(),
            ))
        }),
        seed(&submission_sha, &rubric.sha256, &secret.key),
    );
    let mut experiments = crate::experiments::Experiments::default();
    judge::judge(&mut session, &mut experiments, &to_run, &mut |j| {
        if draft.set(j)
            && let Some(p) = progress
        {
            p.update(draft.report.clone(), draft.pending.clone());
        }
    });
    drop(session);
    sandbox.finish(area.mechanism);
    draft.report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(draft.report)
}

/// The report as it is built, one judged check at a time.
struct Draft {
    report: Report,
    /// The reported checks not judged yet.
    pending: Vec<String>,
}

impl Draft {
    /// Puts the judged check `j` in its place; false if it is not reported.
    fn set(&mut self, j: &judge::Judged) -> bool {
        let Some(slot) = self.report.checks.iter_mut().find(|c| c.id == j.check.id()) else {
            return false;
        };
        self.pending.retain(|id| id != j.check.id());
        let v = &j.verdict;
        *slot = CheckReport {
            id: j.check.id().to_string(),
            name: j.check.name.clone(),
            status: v.status,
            graded: !j.fault,
            score: j.score,
            max_score: j.max_score,
            message: v.message.clone(),
            expected: v.expected.clone(),
            observed: v.observed.clone(),
            hint: v.hint.clone(),
            skipped_because: v.skipped_because.clone(),
            hidden: j.check.hidden,
            duration_ms: j.duration_ms,
            runs: v.runs.clone(),
        };
        self.total();
        true
    }

    fn total(&mut self) {
        let r = &mut self.report;
        r.score = r.checks.iter().map(|c| c.score).sum();
        r.max_score = r.checks.iter().map(|c| c.max_score).sum();
        r.complete = r.error.is_none() && r.checks.iter().all(|c| c.graded);
    }
}

/// A check not judged yet: not graded, its points in the maximum.
fn pending(check: &crate::rubric::CheckConfig) -> CheckReport {
    CheckReport {
        id: check.id().to_string(),
        name: check.name.clone(),
        status: crate::checks::Status::Skipped,
        graded: false,
        score: 0.0,
        max_score: check.points(),
        message: "not graded yet".into(),
        expected: None,
        observed: None,
        hint: None,
        skipped_because: None,
        hidden: check.hidden,
        duration_ms: 0,
        runs: Vec::new(),
    }
}
