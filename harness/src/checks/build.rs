//! `build`: every program the rubric names was built.

use super::{Judging, Outcomes, Verdict, bounded};
use crate::build::Program;
use crate::experiments::GraderError;
use crate::rubric::CheckConfig;

/// It judges the build already made: no experiment.
pub fn build(j: &Judging, _: &CheckConfig, _: &Outcomes) -> Result<Verdict, GraderError> {
    Ok(verdict(j))
}

fn verdict(j: &Judging) -> Verdict {
    let build = &j.build;
    let missing: Vec<(&String, &String)> = build
        .programs
        .iter()
        .filter_map(|(name, p)| match p {
            Program::Missing { why } => Some((name, why)),
            Program::Built(_) => None,
        })
        .collect();
    let runs = build.runs.clone();
    if let Some(fault) = &build.grader_error {
        return Verdict::error(format!("the build could not run on this machine: {fault}"))
            .hint(fault.fix())
            .runs(runs);
    }
    if missing.is_empty() {
        let names: Vec<&str> = build.programs.keys().map(String::as_str).collect();
        return Verdict::pass(format!("built {} with {}", names.join(", "), build.method))
            .runs(runs);
    }
    let names: Vec<&str> = missing.iter().map(|(n, _)| n.as_str()).collect();
    let reasons: Vec<String> = missing.iter().map(|(_, why)| why.to_string()).collect();
    // The compiler's own words: the first failing command's stderr.
    let failed_output = build
        .runs
        .iter()
        .find(|r| r.exit != crate::runner::ExitRecord::Exited(0))
        .map(|r| format!("{}\n{}", r.argv.join(" "), r.stderr.excerpt));
    let first_error = failed_output
        .as_deref()
        .and_then(|out| out.lines().find(|l| l.contains("error")))
        .map(|l| l.trim().to_string());
    let hint = match first_error {
        Some(err) => format!("fix the first error the compiler reports: {err}"),
        None if build.method == "cc" => {
            "name each program's source after it (mapfile.c, shm_writer.c, shm_reader.c), or add a Makefile".to_string()
        }
        None => format!("make sure the {} build produces programs with exactly these names", build.method),
    };
    Verdict::fail(format!("not built: {}", names.join(", ")))
        .expected(format!("the programs {} built", session_names(j)))
        .observed(match failed_output {
            Some(out) => format!("{}\n{}", reasons.join("\n"), bounded(&out)),
            None => reasons.join("\n"),
        })
        .hint(hint)
        .runs(runs)
}

fn session_names(j: &Judging) -> String {
    let p = &j.rubric.programs;
    format!(
        "{}, {} and {}",
        p.mapfile.binary, p.writer.binary, p.reader.binary
    )
}
