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

/// Text that may carry learner text, made inert in Markdown: HTML's
/// specials as entities (no tag can open), Markdown's as backslash escapes
/// (no link, image, emphasis or code span can start), one line.
pub fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '!' | '|' | '~' | '#' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text shown as it is, in a code block it cannot close: a fence of more
/// backticks than the longest run of them inside (Markdown renders nothing
/// inside, HTML included), indented by `indent`.
pub fn fenced(text: &str, indent: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let body: Vec<String> = text.lines().map(|l| format!("{indent}{l}")).collect();
    format!("{indent}{fence}\n{}\n{indent}{fence}", body.join("\n"))
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    inline(text)
}

impl Format for Markdown {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let report = &report.visible();
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
            writeln!(out, "> ⚠️ Could not grade: {}\n", inline(error))?;
        }
        let iso = &report.isolation;
        let degraded = if iso.degraded { " (DEGRADED)" } else { "" };
        writeln!(
            out,
            "Graded by {} {} · isolation `{}`{degraded} · built with {} · submission `{}`\n",
            report.grader.name,
            report.grader.version,
            iso.level,
            report.build.described(),
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
    writeln!(
        out,
        "\n### {} `{}`: {}\n",
        mark(c),
        c.id,
        inline(&c.message)
    )?;
    out.write_all(check_details(c).as_bytes())
}

/// A failed check's commands, expected, observed and hint, as Markdown.
/// Learner text (a command, an excerpt, a hint quoting a compiler) is only
/// ever inside a code block it cannot close, or escaped.
pub fn check_details(c: &CheckReport) -> String {
    let mut s = String::new();
    for run in &c.runs {
        s.push_str(&format!(
            "- ran: {} → {}\n",
            inline(&run.command_line()),
            run.describe_exit()
        ));
    }
    for (label, value) in [("expected", &c.expected), ("observed", &c.observed)] {
        if let Some(text) = value {
            s.push_str(&format!("- {label}:\n\n{}\n", fenced(text, "  ")));
        }
    }
    if let Some(hint) = &c.hint {
        s.push_str(&format!("- **hint:** {}\n", inline(hint)));
    }
    s
}
