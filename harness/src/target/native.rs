//! Programs built for this machine, run as they are: what C, C++ and Rust
//! hand-ins written for POSIX become.

use super::{Evidence, Target};
use crate::rubric::BuildConfig;

pub struct Native;

impl Target for Native {
    fn id(&self) -> &'static str {
        "native"
    }

    fn program_file(&self, name: &str) -> String {
        name.to_string()
    }

    fn compilers<'r>(&self, build: &'r BuildConfig) -> (&'r str, &'r str) {
        (&build.cc, &build.cxx)
    }

    fn evidence(&self) -> Evidence {
        Evidence::Strace
    }
}
