//! The report as Markdown, for feedback files and CI job summaries: the
//! same content as the terminal report.

use std::io::{self, Write};

use super::{CheckReport, Format, Report, points};
use crate::checks::Status;

pub struct Markdown;

fn mark(c: &CheckReport) -> &'static str {
    match c.status {
        _ if !c.graded => "⚠️",
        Status::Passed => "✅",
        Status::Failed => "❌",
        Status::Skipped => "➖",
        Status::Error => "⚠️",
    }
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

impl Format for Markdown {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "## {}\n", report.rubric.title)?;
        let total = format!(
            "**Score: {}/{}**",
            points(report.score),
            points(report.max_score)
        );
        if report.fully_graded() {
            writeln!(out, "{total}\n")?;
        } else {
            writeln!(
                out,
                "{total} — ⚠️ incomplete, not a final grade: {}\n",
                cell(&super::incomplete_because(report))
            )?;
        }
        if let Some(error) = &report.error {
            writeln!(out, "> ⚠️ Could not grade: {error}\n")?;
        }
        let iso = &report.isolation;
        let degraded = if iso.degraded { " (DEGRADED)" } else { "" };
        writeln!(
            out,
            "Graded by {} {} · isolation `{}`{degraded} · built with {} · submission `{}`\n",
            report.grader.name,
            report.grader.version,
            iso.level,
            report.build.method,
            &report.submission.sha256[..report.submission.sha256.len().min(12)]
        )?;
        writeln!(out, "| | points | check | |")?;
        writeln!(out, "|---|---|---|---|")?;
        for c in &report.checks {
            let earned = if c.graded {
                points(c.score)
            } else {
                "–".to_string()
            };
            let pts = format!("{earned}/{}", points(c.max_score));
            let note = c
                .skipped_because
                .as_deref()
                .map(|b| format!("skipped: {b}"))
                .unwrap_or_default();
            writeln!(
                out,
                "| {} | {pts} | `{}` {} | {} |",
                mark(c),
                c.id,
                cell(&c.name),
                cell(&note)
            )?;
        }
        for c in report
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::Failed | Status::Error))
        {
            write_details(out, c)?;
        }
        if report.hidden_checks > 0 {
            writeln!(
                out,
                "\n_{} hidden check(s) are not shown._",
                report.hidden_checks
            )?;
        }
        Ok(())
    }
}

fn write_details(out: &mut dyn Write, c: &CheckReport) -> io::Result<()> {
    writeln!(out, "\n### {} `{}`: {}\n", mark(c), c.id, c.message)?;
    out.write_all(check_details(c).as_bytes())
}

/// A failed check's commands, expected, observed and hint, as Markdown.
pub fn check_details(c: &CheckReport) -> String {
    let mut s = String::new();
    for run in &c.runs {
        s.push_str(&format!(
            "- ran: `{}` → {}\n",
            run.argv.join(" "),
            run.describe_exit()
        ));
    }
    for (label, value) in [("expected", &c.expected), ("observed", &c.observed)] {
        if let Some(text) = value {
            s.push_str(&format!("- {label}:\n\n  ```\n{}\n  ```\n", indent(text)));
        }
    }
    if let Some(hint) = &c.hint {
        s.push_str(&format!("- **hint:** {hint}\n"));
    }
    s
}

fn indent(text: &str) -> String {
    text.replace("```", "'''")
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
