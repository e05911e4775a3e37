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
        .map(|r| format!("{}\n{}", r.command_line(), r.stderr.excerpt));
    let first_error = build
        .runs
        .iter()
        .find(|r| r.exit != crate::runner::ExitRecord::Exited(0))
        .and_then(|r| first_diagnostic(&r.stderr.excerpt));
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

/// The diagnostic a learner should read first in a failed build's output:
/// a compiler's `file:line: error:`, else the linker's own words (`cannot
/// find -lrtt`, not collect2's summary), else make's complaint about the
/// Makefile, else Cargo's `error:`, else any line that says error.
pub fn first_diagnostic(stderr: &str) -> Option<String> {
    use std::sync::LazyLock;
    static COMPILER: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r":\d+(:\d+)?: (fatal )?error: ").unwrap());
    static MAKE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\*\*\* |: No rule to make target").unwrap());
    static MAKE_SUMMARY: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\*\*\* \[[^\]]*\] Error \d+$").unwrap());
    static CARGO: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^error(\[E\d+\])?: ").unwrap());
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let find = |pick: &dyn Fn(&str) -> bool| lines.iter().find(|l| pick(l)).map(|l| l.to_string());
    find(&|l| COMPILER.is_match(l))
        .or_else(|| {
            find(&|l| {
                (l.contains("ld: ") || l.contains("undefined reference to"))
                    && !l.starts_with("collect2")
            })
        })
        .or_else(|| find(&|l| MAKE.is_match(l) && !MAKE_SUMMARY.is_match(l)))
        .or_else(|| find(&|l| CARGO.is_match(l) && !l.starts_with("error: could not compile")))
        .or_else(|| find(&|l| l.contains("error") && !l.starts_with("collect2")))
}

fn session_names(j: &Judging) -> String {
    let p = &j.rubric.programs;
    format!(
        "{}, {} and {}",
        p.mapfile.binary, p.writer.binary, p.reader.binary
    )
}

#[cfg(test)]
mod tests {
    use super::first_diagnostic;

    #[test]
    fn the_first_diagnostic_is_the_one_to_fix() {
        let link = "/usr/bin/ld: cannot find -lrtt: No such file or directory\ncollect2: error: ld returned 1 exit status\n";
        assert_eq!(
            first_diagnostic(link).unwrap(),
            "/usr/bin/ld: cannot find -lrtt: No such file or directory"
        );
        let compile = "shm_reader.c: In function 'main':\nshm_reader.c:30:5: error: expected ';' before 'return'\n";
        assert!(
            first_diagnostic(compile)
                .unwrap()
                .starts_with("shm_reader.c:30:5: error:")
        );
        let make = "Makefile:4: *** missing separator.  Stop.\n";
        assert_eq!(
            first_diagnostic(make).unwrap(),
            "Makefile:4: *** missing separator.  Stop."
        );
        let rule = "make: *** No rule to make target 'writer.c', needed by 'shm_writer'.  Stop.\n";
        assert!(
            first_diagnostic(rule)
                .unwrap()
                .contains("No rule to make target")
        );
        let cargo =
            "error[E0425]: cannot find value `x` in this scope\nerror: could not compile `lab`\n";
        assert!(first_diagnostic(cargo).unwrap().starts_with("error[E0425]"));
    }
}
