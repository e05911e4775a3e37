//! Gradescope's results.json: one test per check (name, number, score,
//! max_score, status, output as Markdown, visibility), the run's execution
//! time, a top-level output that says what went wrong when something did,
//! and labgrade's own stdout hidden from learners.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::json;

use super::markdown::{check_details, inline};
use super::{Format, Report, incomplete_because, points};
use crate::checks::Status;

/// Writes results.json. `hidden_visibility` is what Gradescope shows of a
/// check the rubric hides (`after_published` by default).
pub struct Gradescope {
    pub hidden_visibility: String,
}

#[derive(Serialize)]
struct Test {
    name: String,
    number: String,
    score: f64,
    max_score: f64,
    status: &'static str,
    output: String,
    output_format: &'static str,
    visibility: String,
    tags: Vec<String>,
}

impl Format for Gradescope {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let report = &report.visible();
        let mut tests: Vec<Test> = report
            .checks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut output = inline(&c.message);
                if let Some(because) = &c.skipped_because {
                    output = format!("Not run: {}.", inline(because));
                }
                if !c.graded {
                    output = format!(
                        "Not graded: {output}\n\nThis is the grader's problem, not yours: the check's points are kept out of reach until your instructor regrades it."
                    );
                }
                let details = check_details(c);
                if !details.is_empty() && c.status != Status::Passed {
                    output.push_str("\n\n");
                    output.push_str(&details);
                }
                Test {
                    name: format!("{} ({})", c.name, c.id),
                    number: (i + 1).to_string(),
                    score: c.score,
                    max_score: c.max_score,
                    status: if c.status == Status::Passed {
                        "passed"
                    } else {
                        "failed"
                    },
                    output,
                    output_format: "md",
                    visibility: if c.hidden {
                        self.hidden_visibility.clone()
                    } else {
                        "visible".into()
                    },
                    tags: vec![c.id.clone()],
                }
            })
            .collect();
        if !report.fully_graded() {
            // Seen by the learner beside the checks, and worth nothing: the
            // grade shown is not final, and why.
            tests.push(Test {
                name: "Grading incomplete".into(),
                number: (tests.len() + 1).to_string(),
                score: 0.0,
                max_score: 0.0,
                status: "failed",
                output: format!(
                    "⚠️ This grade is incomplete: {}. Your instructor will regrade it; the points not graded are not lost.",
                    incomplete_because(report)
                ),
                output_format: "md",
                visibility: "visible".into(),
                tags: vec!["labgrade.incomplete".into()],
            });
        }
        let results = json!({
            "score": report.score,
            "execution_time": report.duration_ms as f64 / 1000.0,
            "output": summary(report),
            "output_format": "md",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "extra_data": {
                "labgrade_version": report.grader.version,
                "isolation": report.isolation.level,
                "complete": report.complete,
                "incomplete": !report.fully_graded(),
                "submission_sha256": report.submission.sha256,
                "rubric_sha256": report.rubric.sha256,
            },
            "tests": tests,
        });
        serde_json::to_writer_pretty(&mut *out, &results)?;
        writeln!(out)
    }
}

/// The top-level output: the score, and what went wrong if anything did.
fn summary(report: &Report) -> String {
    let mut s = format!(
        "**{}**: {}/{} (graded by labgrade {}, isolation `{}`).",
        report.rubric.title,
        points(report.score),
        points(report.max_score),
        report.grader.version,
        report.isolation.level
    );
    if let Some(error) = &report.error {
        s.push_str(&format!("\n\n⚠️ Could not grade: {}", inline(error)));
    } else if !report.complete {
        s.push_str(&format!(
            "\n\n⚠️ Incomplete, not a final grade: {}.",
            incomplete_because(report)
        ));
    }
    s
}

/// A results.json for when there is no report at all: the grading itself
/// failed. Gradescope marks a submission "failed to execute" without one.
pub fn failure(message: &str, seconds: f64) -> String {
    let results = json!({
        "score": 0,
        "execution_time": seconds,
        "output": format!("⚠️ The autograder could not grade this submission: {message}\n\nThis is not a verdict on your work; your instructor has been told."),
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [],
    });
    serde_json::to_string_pretty(&results).unwrap_or_default() + "\n"
}
