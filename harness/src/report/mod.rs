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

use crate::runner::RunRecord;

/// The JSON schema's version; fields are added, never renamed.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub grader: GraderInfo,
    pub rubric: RubricInfo,
    pub submission: SubmissionInfo,
    pub platform: PlatformInfo,
    pub isolation: IsolationInfo,
    pub score: f64,
    pub max_score: f64,
    /// False when a check errored or could not run here: the score then
    /// leaves those checks out.
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
    /// Program name -> where it was built, or why not.
    pub programs: BTreeMap<String, ProgramInfo>,
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
    pub status: String,
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
        } else if self.checks.iter().any(|c| c.status != "passed") {
            1
        } else {
            0
        }
    }
}

impl CheckReport {
    /// Whether the check counts towards the maximum: not a grader error,
    /// not a check this environment could not run.
    pub fn counted(&self) -> bool {
        !(self.status == "error" || (self.status == "skipped" && self.max_score == 0.0))
    }
}

/// One output format.
pub trait Format {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
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
