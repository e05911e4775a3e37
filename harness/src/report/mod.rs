//! One result model for every output. Each format is a module behind the
//! small [`Format`] trait; all of them render the same [`Report`].

mod classroom;
mod gradescope;
mod human;
mod json;
mod junit;
mod markdown;

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

pub use classroom::{Classroom, runner_id};
pub use gradescope::{Gradescope, failure as gradescope_failure};
pub use human::Human;
pub use json::Json;
pub use junit::JUnit;
pub use markdown::Markdown;

use crate::checks::Status;
use crate::runner::RunRecord;

/// The JSON schema's version; fields are added, never renamed. Version 2:
/// `max_score` is always every check's full points (version 1 left grader
/// faults out of it), and each check says whether it was `graded`.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub grader: GraderInfo,
    pub rubric: RubricInfo,
    pub submission: SubmissionInfo,
    pub platform: PlatformInfo,
    pub isolation: IsolationInfo,
    pub score: f64,
    /// Every check's full points, whatever happened: a grader fault never
    /// shrinks it (so it never raises a percentage).
    pub max_score: f64,
    /// False when a check was not graded (a grader error, or a check this
    /// machine cannot run): the score is then not final.
    pub complete: bool,
    /// Why the submission could not be graded at all, if so.
    pub error: Option<String>,
    pub build: BuildInfo,
    pub checks: Vec<CheckReport>,
    /// Hidden checks left out of this report.
    pub hidden_checks: usize,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraderInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RubricInfo {
    pub origin: String,
    pub title: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmissionInfo {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformInfo {
    pub os: String,
    pub arch: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolationInfo {
    pub level: String,
    pub degraded: bool,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildInfo {
    pub method: String,
    /// What the programs were built for and run as: `native`, or
    /// `windows` (mingw-w64, run under Wine).
    #[serde(default = "native")]
    pub target: String,
    /// Program name -> where it was built, or why not.
    pub programs: BTreeMap<String, ProgramInfo>,
}

fn native() -> String {
    "native".into()
}

impl BuildInfo {
    /// "cc", or "cc for Windows (mingw-w64, run under Wine)".
    pub fn described(&self) -> String {
        if self.target == "windows" {
            format!("{} for Windows (mingw-w64, run under Wine)", self.method)
        } else {
            self.method.clone()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramInfo {
    pub built: bool,
    pub why: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    pub id: String,
    pub name: String,
    pub status: Status,
    /// False for a grader fault: not graded; `score` 0 of `max_score`, which
    /// stays the check's full points.
    #[serde(default = "graded_by_default")]
    pub graded: bool,
    pub score: f64,
    pub max_score: f64,
    pub message: String,
    pub expected: Option<String>,
    pub observed: Option<String>,
    pub hint: Option<String>,
    pub skipped_because: Option<String>,
    pub hidden: bool,
    pub duration_ms: u64,
    pub runs: Vec<RunRecord>,
}

impl Report {
    /// Whether every check could run and none hit a grader error.
    pub fn fully_graded(&self) -> bool {
        self.complete && self.error.is_none()
    }

    /// 0 full marks, 1 some check failed, 2 the grade is incomplete or
    /// could not be made.
    pub fn exit_code(&self) -> u8 {
        if !self.fully_graded() {
            2
        } else if self.checks.iter().any(|c| c.status != Status::Passed) {
            1
        } else {
            0
        }
    }
}

impl Report {
    /// The checks that were not graded (grader faults).
    pub fn not_graded(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks.iter().filter(|c| !c.graded)
    }
}

fn graded_by_default() -> bool {
    true
}

/// Why a report is not a final grade, in a sentence for every output.
pub fn incomplete_because(report: &Report) -> String {
    if let Some(error) = &report.error {
        return format!("it could not be graded ({error})");
    }
    let ids: Vec<&str> = report.not_graded().map(|c| c.id.as_str()).collect();
    let lost: f64 = report.not_graded().map(|c| c.max_score).sum();
    let first = report
        .not_graded()
        .next()
        .map(|c| format!(" ({})", c.message))
        .unwrap_or_default();
    format!(
        "{} of {} points not graded ({}){first}: a fault of the grader or this machine, not of the work; they count when regraded",
        points(lost),
        points(report.max_score),
        ids.join(", ")
    )
}

/// One output format. Each writes [`Report::visible`], never the raw
/// report, then escapes for its own medium on top.
pub trait Format {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
}

impl Report {
    /// The report with every text that may carry learner output (messages,
    /// excerpts, commands, paths) made inert: control characters shown as
    /// escapes (`crate::text::visible`).
    pub fn visible(&self) -> Report {
        let v = |s: &mut String| {
            if !crate::text::is_plain(s) {
                *s = crate::text::visible(s);
            }
        };
        let vo = |s: &mut Option<String>| {
            if let Some(s) = s {
                v(s);
            }
        };
        let mut r = self.clone();
        v(&mut r.submission.path);
        vo(&mut r.error);
        r.isolation.notes.iter_mut().for_each(v);
        for p in r.build.programs.values_mut() {
            vo(&mut p.why);
        }
        for c in &mut r.checks {
            v(&mut c.message);
            vo(&mut c.expected);
            vo(&mut c.observed);
            vo(&mut c.hint);
            vo(&mut c.skipped_because);
            for run in &mut c.runs {
                run.argv.iter_mut().for_each(v);
                v(&mut run.stdout.excerpt);
                v(&mut run.stderr.excerpt);
                run.limits_hit.iter_mut().for_each(v);
            }
        }
        r
    }
}

/// Points as people write them: 10, 7.5.
pub fn points(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round() as i64)
    } else {
        format!("{value:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}
