//! A report always: the grading keeps a provisional report up to date as
//! each check is judged (the checks not yet judged marked not graded), and
//! a watchdog thread, once the grading is stopped (a signal, the overall
//! deadline), gives the main path a moment to finish and otherwise delivers
//! the provisional report itself and ends the process. Whatever the main
//! path is stuck on, the report is written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checks::Status;
use crate::report::Report;
use crate::runner;

/// How long the main path has, once the grading is stopped, to deliver its
/// own report (killing the learner's processes ends almost every wait).
const GRACE: Duration = Duration::from_secs(10);

/// Where a report goes: every file and stream the command was asked for.
pub type Sink = dyn Fn(&Report) -> std::process::ExitCode + Send + Sync;

#[derive(Default)]
pub struct Progress {
    /// The report as it stands, and the checks in it not judged yet.
    latest: Mutex<Option<(Report, Vec<String>)>>,
    delivered: Mutex<bool>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// The report as it stands, with the ids of the checks not judged yet.
    pub fn update(&self, report: Report, pending: Vec<String>) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some((report, pending));
    }

    /// Delivers `report` through `sink`, unless a report was delivered
    /// already: the main path and the watchdog never both write.
    pub fn deliver(&self, report: &Report, sink: &Sink) -> Option<std::process::ExitCode> {
        let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        if *delivered {
            return None;
        }
        *delivered = true;
        Some(sink(report))
    }

    /// Starts the watchdog for a grading delivering through `sink`; once it
    /// has delivered, the process exits with `exit_code` (the command's own
    /// code for an incomplete grading).
    pub fn watch(self: &Arc<Progress>, sink: Arc<Sink>, exit_code: i32) {
        let progress = self.clone();
        std::thread::spawn(move || {
            let reason = runner::wait_aborted();
            std::thread::sleep(GRACE);
            let latest = progress
                .latest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let Some((mut report, pending)) = latest else {
                return; // nothing began: the main path reports on its own
            };
            stopped(&mut report, &pending, &reason);
            if progress.deliver(&report, sink.as_ref()).is_some() {
                eprintln!(
                    "labgrade: {reason}; the grading was stuck, so its report was written as it stood"
                );
                // Nothing unwinds past exit: the run's files go now.
                runner::abort_all(&reason);
                crate::state::abandon_runs();
                std::process::exit(exit_code);
            }
        });
    }
}

/// The variable that makes the main path hang before a check, for the test
/// that a report is written whatever the main path is stuck on (nothing a
/// learner's program does reaches the grader's environment).
pub const STALL_ENV: &str = "LABGRADE_TEST_STALL_BEFORE";

/// Hangs forever if `STALL_ENV` names `check`.
pub fn stall_point(check: &str) {
    if std::env::var(STALL_ENV).is_ok_and(|id| id == check) {
        loop {
            std::thread::park();
        }
    }
}

/// Marks the checks of the provisional `report` not judged yet (`pending`)
/// as stopped by `reason`: not graded, the grade incomplete.
fn stopped(report: &mut Report, pending: &[String], reason: &str) {
    for c in report.checks.iter_mut().filter(|c| pending.contains(&c.id)) {
        c.message = format!("not run: {reason}");
        c.status = Status::Error;
        c.graded = false;
    }
    report.complete = false;
}
