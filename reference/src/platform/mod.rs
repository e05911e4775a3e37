//! Named shared memory, one module per operating system.
//!
//! Each module offers the same small surface:
//! - `DEFAULT_NAME` and `check_name`, the platform's naming rules;
//! - `WriterRegion::create(name, size)`: make a new region, map it
//!   read-write, `bytes_mut()`, and `remove()` it at the end;
//! - `ReaderRegion::open(name, size)`: map an existing region read-only and
//!   look at its `bytes()`.

#[cfg(unix)]
mod posix;
#[cfg(unix)]
pub use posix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
