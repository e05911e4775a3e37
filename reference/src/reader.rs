//! Exercise 2, process 2: open the writer's region read-only and print what
//! it holds.

use std::io::Write;

use crate::contract::{RegionArgs, SHM_LINE_PREFIX, text_until_nul};
use crate::error::Result;
use crate::platform::ReaderRegion;

/// Opens the existing region `args` names and prints
/// `Data from shared memory: TEXT`, TEXT being its bytes up to the first NUL.
pub fn run(args: &RegionArgs, out: &mut dyn Write) -> Result<()> {
    let region = ReaderRegion::open(&args.name, args.size)?;
    let text = text_until_nul(region.bytes());
    writeln!(out, "{SHM_LINE_PREFIX}{text}")?;
    Ok(())
}
