//! Judging: the rubric's checks in order, each run only when what it needs
//! passed and the programs it runs were built, scored by the rubric.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use crate::checks::{self, Judging, Outcomes, Status, Verdict};
use crate::experiments::{Experiments, GraderError};
use crate::rubric::{CheckConfig, Rubric};
use crate::runner;
use crate::session::Session;

/// A check's verdict, with its score.
pub struct Judged<'r> {
    pub check: &'r CheckConfig,
    pub verdict: Verdict,
    pub score: f64,
    /// Always the check's full points: a grader fault never shrinks it.
    pub max_score: f64,
    /// A grader fault: not graded, the grade incomplete.
    pub fault: bool,
    pub duration_ms: u64,
}

/// The checks to run for `only` (empty: all): those named and what they
/// need, transitively. Returns (run, report) sets of ids.
pub fn selection(
    rubric: &Rubric,
    only: &[String],
) -> Result<(HashSet<String>, HashSet<String>), String> {
    let all: HashMap<&str, &CheckConfig> = rubric.checks.iter().map(|c| (c.id(), c)).collect();
    if only.is_empty() {
        let ids: HashSet<String> = all.keys().map(|k| k.to_string()).collect();
        return Ok((ids.clone(), ids));
    }
    let mut run = HashSet::new();
    let mut todo: Vec<String> = Vec::new();
    for id in only {
        if !all.contains_key(id.as_str()) {
            let mut known: Vec<&str> = rubric.checks.iter().map(|c| c.id()).collect();
            known.sort();
            return Err(format!(
                "no check {id:?} in the rubric; its checks are: {}",
                known.join(", ")
            ));
        }
        todo.push(id.clone());
    }
    while let Some(id) = todo.pop() {
        if run.insert(id.clone()) {
            todo.extend(all[id.as_str()].needs().map(String::from));
        }
    }
    Ok((run, only.iter().cloned().collect()))
}

/// Runs the selected checks in rubric order; `each` sees every verdict as
/// it is made (for the provisional report).
pub fn judge<'r>(
    session: &mut Session<'r>,
    experiments: &mut Experiments,
    run: &HashSet<String>,
    each: &mut dyn FnMut(&Judged<'r>),
) {
    let rubric = session.rubric();
    let mut done: HashMap<&str, (Status, bool)> = HashMap::new();
    for check in &rubric.checks {
        if !run.contains(check.id()) {
            continue;
        }
        let started = Instant::now();
        crate::watchdog::stall_point(check.id());
        let mut verdict = match runner::aborted() {
            Some(reason) => Verdict::error(format!("not run: {reason}")),
            None => verdict_for(session, experiments, check, &done),
        };
        // A check cut short by an abort says nothing about the learner.
        if verdict.status != Status::Error
            && let Some(reason) = runner::aborted()
        {
            verdict = Verdict::error(format!("cut short: {reason}")).runs(verdict.runs);
        }
        let fault = verdict.fault();
        done.insert(check.id(), (verdict.status, fault));
        let score = if fault {
            0.0
        } else {
            check.points() * verdict.fraction
        };
        let j = Judged {
            check,
            verdict,
            score,
            max_score: check.points(),
            fault,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        each(&j);
    }
}

/// `done`: each check run so far, with whether it was a grader fault (an
/// error, or not runnable here): what needs such a check is not charged to
/// the learner either, and is not graded.
fn verdict_for(
    session: &mut Session,
    experiments: &mut Experiments,
    check: &CheckConfig,
    done: &HashMap<&str, (Status, bool)>,
) -> Verdict {
    if let Some(u) = &session.build().unsupported {
        return Verdict::unavailable(format!(
            "this submission is written against {}, and {} here ({})",
            u.platform,
            u.missing,
            u.missing.fix()
        ));
    }
    for need in check.needs() {
        match done.get(need) {
            Some((Status::Passed, _)) => {}
            Some((_, true)) => {
                return Verdict::unavailable(format!("needs {need}, which could not be graded"));
            }
            Some((status, false)) => {
                return Verdict::skipped(format!("needs {need}, which {}", past(*status)));
            }
            None => return Verdict::skipped(format!("needs {need}, which was not run")),
        }
    }
    for program in checks::def(check.kind()).programs.of(session.rubric()) {
        if session.build().program(program).is_none() {
            if let Some(err) = &session.build().grader_error {
                return Verdict::unavailable(format!("{program} could not be built here ({err})"));
            }
            return Verdict::skipped(format!("{program} was not built"));
        }
    }
    match catch_unwind(AssertUnwindSafe(|| {
        run_check(session, experiments, check).unwrap_or_else(Verdict::from)
    })) {
        Ok(verdict) => verdict,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Verdict::error(format!("grader bug while running this check: {what}"))
        }
    }
}

/// Makes (or recalls) the experiments `check` asks for, then judges them.
fn run_check(
    session: &mut Session,
    experiments: &mut Experiments,
    check: &CheckConfig,
) -> Result<Verdict, GraderError> {
    let def = checks::def(check.kind());
    let mut rng = session.rng_for(check.id());
    let plans = (def.plans)(&judging(session, experiments), check, &mut rng);
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in &plans {
        outcomes.push(experiments.get(session, plan)?);
    }
    (def.judge)(&judging(session, experiments), check, &Outcomes(outcomes))
}

/// What checks judge by, from the grading's state now.
fn judging<'a>(session: &'a Session, experiments: &'a Experiments) -> Judging<'a> {
    let regions = session.regions();
    Judging {
        rubric: session.rubric(),
        build: session.build(),
        mechanism: regions.mechanism,
        learner_uid: session.learner_uid(),
        untraceable: session.untraceable().map(ToString::to_string),
        region_capacity: regions.capacity().ok().map(|(total, _)| total),
        evidence: experiments.evidence(),
        fresh_name: session.fresh_name(),
    }
}

fn past(status: Status) -> &'static str {
    match status {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Skipped => "was skipped",
        Status::Error => "hit a grader error",
    }
}
