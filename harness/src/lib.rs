//! `labgrade`: grades a submission for the memory-mapped files and shared
//! memory lab. The pipeline, a module a stage:
//!
//! rubric -> build -> target/sandbox/runner -> ipc/observe -> experiments
//! -> checks -> judge -> report
//!
//! `grade` strings them together; `session` is one grading's state. A new
//! IPC mechanism is one module under `ipc/`, a new target platform one
//! under `target/`.

#[cfg(not(target_os = "linux"))]
compile_error!("labgrade grades on Linux: its sandbox needs Linux namespaces and mounts");

pub mod batch;
pub mod build;
pub mod checks;
pub mod cli;
pub mod doctor;
pub mod experiments;
pub mod grade;
pub mod hash;
pub mod ipc;
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
pub mod target;
pub mod text;
pub mod tools;
pub mod watchdog;
