//! The experiments the checks judge: mapfile in an empty directory
//! ([`mapfile`]), a writer/reader pair or many in a row ([`pair`]), the
//! reader with no writer ([`no_writer`]). Each is asked for as a [`Plan`],
//! a value: checks that ask for the same plan share one run of it, kept in
//! the grading's [`Experiments`]. Each runs programs through the runner,
//! drives them by observed events with deadlines, and records what the
//! grader saw for itself. None of them decides a verdict.

pub mod mapfile;
pub mod no_writer;
pub mod pair;

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

pub use mapfile::{FileSeen, MapfileOutcome};
pub use no_writer::NoWriterOutcome;
pub use pair::{Early, Hold, PairOutcome, PairPlan, Readiness, RepeatOutcome, WriterFate};

use crate::lock::{NameLocks, lock_names};
use crate::observe::trace::Trace;
use crate::runner::{self, Finished, Running, Spec};
use crate::session::{Session, Who};

/// An experiment to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Plan {
    /// mapfile once, in an empty directory.
    Mapfile,
    /// The learner's reader alone, with this deadline.
    NoWriter { timeout: Duration },
    /// One handoff.
    Pair(PairPlan),
    /// Handoffs of one plan in a row, within a budget for all of them.
    Repeat {
        pair: PairPlan,
        rounds: u32,
        budget: Duration,
    },
}

/// What an experiment gave (each kept once, behind an `Rc`).
#[derive(Debug)]
pub enum Outcome {
    Mapfile(MapfileOutcome),
    NoWriter(NoWriterOutcome),
    Pair(Box<PairOutcome>),
    Repeat(RepeatOutcome),
}

/// Which of a pair's programs a run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Reader,
}

/// One run of a learner's writer or reader, for the evidence checks.
#[derive(Debug, Clone)]
pub struct RunEvidence {
    pub role: Role,
    /// The region it was to use (device, inode), when the grader saw one.
    pub region: Option<(u64, u64)>,
    /// What the watch saw; None where it could not watch.
    pub io: Option<crate::observe::watch::IoEvents>,
}

/// The experiments of one grading: each plan made at most once, and what
/// the watch saw of every run of the learner's writer and reader (how a
/// program uses the region is judged on all its runs).
#[derive(Default)]
pub struct Experiments {
    made: HashMap<Plan, Rc<Outcome>>,
    evidence: Vec<RunEvidence>,
}

impl Experiments {
    /// The outcome of `plan`, made now unless it was made already. A plan
    /// that could not be made is not remembered: the next check retries.
    pub fn get(&mut self, session: &mut Session, plan: &Plan) -> Result<Rc<Outcome>, GraderError> {
        if let Some(done) = self.made.get(plan) {
            return Ok(done.clone());
        }
        // Nothing an earlier experiment's programs left (other names,
        // semaphores, System V objects at the uid level) reaches this one.
        // The rounds of one Repeat are one experiment: what a round leaves
        // for the next is the learner's, as when run by hand.
        if !matches!(plan, Plan::Mapfile) {
            session.regions().clear();
        }
        let outcome = match plan {
            Plan::Mapfile => Outcome::Mapfile(mapfile::run(session)?),
            Plan::NoWriter { timeout } => Outcome::NoWriter(no_writer::run(session, *timeout)?),
            Plan::Pair(p) => Outcome::Pair(Box::new(pair::run(session, p.clone())?)),
            Plan::Repeat {
                pair: p,
                rounds,
                budget,
            } => Outcome::Repeat(pair::repeat(session, p, *rounds, *budget)?),
        };
        match &outcome {
            Outcome::Pair(o) => self.evidence.extend(o.evidence()),
            Outcome::Repeat(r) => {
                for o in &r.rounds {
                    self.evidence.extend(o.evidence());
                }
            }
            _ => {}
        }
        let outcome = Rc::new(outcome);
        self.made.insert(plan.clone(), outcome.clone());
        Ok(outcome)
    }

    /// Every run of the learner's writer and reader so far.
    pub fn evidence(&self) -> &[RunEvidence] {
        &self.evidence
    }
}

/// A run that could not even start: the grader's problem, not the learner's.
#[derive(Debug, Clone)]
pub struct GraderError(pub String);

pub(crate) fn start(spec: Spec) -> Result<Running, GraderError> {
    let shown = spec.shown.join(" ");
    runner::start(spec).map_err(|e| GraderError(format!("could not start `{shown}`: {e}")))
}

/// A program the sandbox could not start for a reason of the grader's or
/// the machine's: a grader error. Learner programs were built and placed
/// by the grader, so a program out of reach or not there is never the
/// learner's doing; an exec that fails on the program itself (not an
/// executable, a missing interpreter) is. Any failure of the grader's own
/// reference programs is the grader's.
pub(crate) fn started(run: &Finished, who: Who) -> Result<(), GraderError> {
    use runner::StartError;
    match &run.not_started {
        Some(e @ (StartError::NotReadable { .. } | StartError::NotInstalled { .. })) => {
            Err(GraderError(format!("could not start a program: {e}")))
        }
        Some(e) if who == Who::Reference => Err(GraderError(format!(
            "could not start a reference program: {e}"
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn read_trace(path: Option<PathBuf>) -> Option<Trace> {
    path.and_then(|p| Trace::read(&p).ok())
}

pub(crate) fn lock_if_shared<'a>(
    session: &Session,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Option<NameLocks>, GraderError> {
    if !session.shared_place() {
        return Ok(None);
    }
    lock_names(names)
        .map(Some)
        .map_err(|e| GraderError(format!("cannot lock the region names: {e}")))
}

pub(crate) fn make_absent(session: &Session, name: &str) -> Result<(), GraderError> {
    session
        .regions()
        .make_absent(name)
        .map_err(|e| GraderError(e.to_string()))
}
