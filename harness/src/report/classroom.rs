//! GitHub Classroom's autograding reporter: for each check a runner whose
//! result is base64 of a version-1 JSON object, written as GitHub step
//! outputs (`ID=BASE64` lines, for `$GITHUB_OUTPUT`). One runner per check,
//! because the reporter counts passed tests and would otherwise lose
//! per-check points; ids lose their dots (`file.runs` -> `file_runs`),
//! which step and output names may not contain.

use std::io::{self, Write};

use base64::Engine;
use serde_json::json;

use super::{Format, Report};
use crate::checks::Status;

pub struct Classroom;

/// The runner id for a check id.
pub fn runner_id(check: &str) -> String {
    check
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Format for Classroom {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let report = &report.visible();
        for c in &report.checks {
            // A check the grader could not grade is an error, its points
            // kept in max_score: the reporter's total then stays short of
            // full marks instead of shrinking to what was graded.
            let status = match c.status {
                _ if !c.graded => "error",
                Status::Passed => "pass",
                Status::Error => "error",
                Status::Failed | Status::Skipped => "fail",
            };
            let mut message = c.message.clone();
            if let Some(hint) = &c.hint {
                message.push_str(&format!(" (hint: {hint})"));
            }
            let result = json!({
                "version": 1,
                "status": status,
                "max_score": c.max_score,
                "tests": [{
                    "name": format!("{} ({})", c.name, c.id),
                    "status": status,
                    "score": c.score,
                    "message": message,
                    "test_code": format!("labgrade grade --only {}", c.id),
                    "filename": "",
                    "line_no": 0,
                    "duration": c.duration_ms,
                }],
            });
            let encoded = base64::engine::general_purpose::STANDARD.encode(result.to_string());
            writeln!(out, "{}={encoded}", runner_id(&c.id))?;
        }
        Ok(())
    }
}
