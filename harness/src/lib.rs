//! `labgrade`: grades a submission for the memory-mapped files and shared
//! memory lab. The pipeline, a module a stage:
//!
//! rubric -> build -> runner (run) -> observe -> experiments + checks (judge) -> report
//!
//! `grade` strings them together; `session` is one grading's state.

pub mod batch;
pub mod build;
pub mod checks;
pub mod cli;
pub mod doctor;
pub mod experiments;
pub mod grade;
pub mod hash;
pub mod judge;
pub mod lock;
pub mod observe;
pub mod platforms;
pub mod report;
pub mod rubric;
pub mod runner;
pub mod sandbox;
pub mod secret;
pub mod session;
pub mod state;
pub mod text;
pub mod tools;
pub mod watchdog;
