//! What the grader sees for itself: the shared region, read from outside,
//! and the system calls a program made.

pub mod region;
pub mod trace;
pub mod watch;
