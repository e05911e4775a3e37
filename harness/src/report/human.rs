//! The terminal report: a line per check, then what went wrong with each
//! failure, then the total. Colour only where the output is a terminal
//! (anstream strips it elsewhere and honours NO_COLOR).

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use super::{CheckReport, Format, Report, points};
use crate::checks::Status;
use crate::runner::RunRecord;

pub struct Human;

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

fn mark(check: &CheckReport) -> (&'static str, Style) {
    match check.status {
        _ if !check.graded => ("!", YELLOW.bold()),
        Status::Passed => ("✓", GREEN),
        Status::Failed => ("✗", RED),
        Status::Skipped => ("–", YELLOW),
        Status::Error => ("!", RED.bold()),
    }
}

impl Format for Human {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let report = &report.visible();
        writeln!(
            out,
            "{BOLD}{}{BOLD:#} {DIM}({} {}){DIM:#}",
            report.rubric.title, report.grader.name, report.grader.version
        )?;
        writeln!(
            out,
            "{DIM}submission {} · sha256 {} · built with {}{DIM:#}",
            report.submission.path,
            &report.submission.sha256[..report.submission.sha256.len().min(12)],
            report.build.described()
        )?;
        let iso = &report.isolation;
        let notes = if iso.notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", iso.notes.join("; "))
        };
        if iso.degraded {
            writeln!(
                out,
                "{YELLOW}isolation: {} — DEGRADED{notes}{YELLOW:#}",
                iso.level
            )?;
        } else {
            writeln!(out, "{DIM}isolation: {}{notes}{DIM:#}", iso.level)?;
        }
        if let Some(error) = &report.error {
            writeln!(out, "\n{RED}! could not grade: {error}{RED:#}")?;
        }
        writeln!(out)?;

        let width = report.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for check in &report.checks {
            let (sym, style) = mark(check);
            let earned = if check.graded {
                points(check.score)
            } else {
                "–".to_string()
            };
            let pts = format!("{earned:>2}/{:<2}", points(check.max_score));
            write!(
                out,
                "  {style}{sym}{style:#} {pts}  {:<width$}  {}",
                check.id, check.name
            )?;
            if let Some(because) = &check.skipped_because {
                write!(out, " {DIM}(skipped: {because}){DIM:#}")?;
            }
            writeln!(out)?;
        }

        for check in report
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::Failed | Status::Error))
        {
            write_details(out, check)?;
        }

        writeln!(out)?;
        let total = format!(
            "Score: {}/{}",
            points(report.score),
            points(report.max_score)
        );
        if report.fully_graded() {
            writeln!(out, "{BOLD}{total}{BOLD:#}")?;
        } else {
            writeln!(
                out,
                "{BOLD}{total}{BOLD:#} {YELLOW}— incomplete, not a final grade: {}{YELLOW:#}",
                super::incomplete_because(report)
            )?;
        }
        if report.hidden_checks > 0 {
            writeln!(
                out,
                "{DIM}{} hidden check(s) are not shown.{DIM:#}",
                report.hidden_checks
            )?;
        }
        Ok(())
    }
}

fn write_details(out: &mut dyn Write, check: &CheckReport) -> io::Result<()> {
    let (sym, style) = mark(check);
    writeln!(
        out,
        "\n{style}{sym} {}{style:#}: {}",
        check.id, check.message
    )?;
    for run in &check.runs {
        writeln!(out, "    {DIM}ran:{DIM:#}      {}", describe_run(run))?;
    }
    for (label, value) in [
        ("expected", &check.expected),
        ("observed", &check.observed),
        ("hint", &check.hint),
    ] {
        if let Some(text) = value {
            let mut lines = text.lines();
            writeln!(
                out,
                "    {BOLD}{label}:{BOLD:#}{:pad$}{}",
                "",
                lines.next().unwrap_or(""),
                pad = 9 - label.len()
            )?;
            for line in lines {
                writeln!(out, "              {line}")?;
            }
        }
    }
    Ok(())
}

fn describe_run(run: &RunRecord) -> String {
    format!(
        "{}  →  {} ({} ms)",
        run.command_line(),
        run.describe_exit(),
        run.wall_ms
    )
}
