//! `shm_reader [NAME [SIZE]]`: exercise 2, the reader. Opens the writer's
//! region read-only and prints `Data from shared memory: TEXT`.

use std::process::ExitCode;

use mmap_lab::contract::SHM_MESSAGE;
use mmap_lab::error::finish;
use mmap_lab::{RegionArgs, reader};

fn main() -> ExitCode {
    let result = RegionArgs::parse(std::env::args().skip(1), SHM_MESSAGE)
        .and_then(|args| reader::run(&args, &mut std::io::stdout()));
    finish("shm_reader", result)
}
