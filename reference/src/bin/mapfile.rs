//! `mapfile`: exercise 1. Run it in an empty directory; it creates
//! datafile.bin (1024 bytes), writes the message through a mapping, and
//! prints what a second mapping reads back.

use std::path::Path;
use std::process::ExitCode;

use mmap_lab::error::{Error, finish};

fn main() -> ExitCode {
    let result = if std::env::args().len() > 1 {
        Err(Error::usage("takes no arguments"))
    } else {
        mmap_lab::mapfile::run(Path::new("."), &mut std::io::stdout())
    };
    finish("mapfile", result)
}
