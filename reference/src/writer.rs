//! Exercise 2, process 1: create the region, write the message, hold it
//! until released, then remove it.

use std::io::{BufRead, Write};

use crate::contract::{RegionArgs, put_message};
use crate::error::{Error, Result};
use crate::platform::WriterRegion;

/// Creates the region `args` names, stores `message` and a NUL in it, and
/// holds it until a line (or end of file) arrives on `release`. `args`
/// come from [`RegionArgs::parse`] with this same message, which makes sure
/// the region has room for it.
pub fn run(
    args: &RegionArgs,
    message: &str,
    release: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<()> {
    hold(
        WriterRegion::create(&args.name, args.size)?,
        args,
        message,
        release,
        out,
    )
}

/// The rest of [`run`], for a region already created: store `message`,
/// hold it until released, remove it. (A caller that must do something to
/// the new region first, such as the grader sharing it with another user,
/// creates it itself.)
pub fn hold(
    mut region: WriterRegion,
    args: &RegionArgs,
    message: &str,
    release: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<()> {
    put_message(region.bytes_mut(), message);
    writeln!(
        out,
        "Wrote {message:?} to {} ({} bytes); press Enter to release it",
        args.name, args.size
    )?;
    out.flush()?;

    // Hold the region while the reader, another process, maps and reads it.
    // Closing it now, as the lab's sample does, would leave the reader
    // nothing on Windows, where the region dies with its last handle.
    let mut line = Vec::new();
    let waited = release.read_until(b'\n', &mut line);

    // Released (or stdin is gone): unmap and remove the name either way, so
    // no region is left behind.
    let removed = region.remove();
    waited.map_err(|err| Error::os("cannot read the release line", err))?;
    removed
}
