//! The model answer for Module 03b, "Memory-mapped files and shared memory".
//!
//! Three small programs live in `src/bin/`; each is a thin `main` around one
//! function of this library, so the grader can run exactly the same code as
//! its reference writer and reader:
//!
//! - [`mapfile::run`]: exercise 1, a file written and read back through mappings;
//! - [`writer::run`] and [`reader::run`]: exercise 2, a named shared-memory
//!   region handed from one process to another.
//!
//! What is specific to an operating system (POSIX `shm_open`, or Windows
//! `CreateFileMapping` with a name) sits in [`platform`]; everything else is
//! shared. The contract these programs keep is written out in `LAB.md`.

pub mod contract;
pub mod error;
pub mod mapfile;
pub mod names;
pub mod platform;
pub mod reader;
pub mod writer;

pub use contract::RegionArgs;
pub use error::{Error, Result};
