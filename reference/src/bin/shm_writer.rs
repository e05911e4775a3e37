//! `shm_writer [NAME [SIZE]]`: exercise 2, the writer. Creates the region,
//! writes the message, and holds it until Enter (or end of input) on stdin.

use std::process::ExitCode;

use mmap_lab::contract::SHM_MESSAGE;
use mmap_lab::error::finish;
use mmap_lab::{RegionArgs, writer};

fn main() -> ExitCode {
    let result = RegionArgs::parse(std::env::args().skip(1), SHM_MESSAGE).and_then(|args| {
        writer::run(
            &args,
            SHM_MESSAGE,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout(),
        )
    });
    finish("shm_writer", result)
}
