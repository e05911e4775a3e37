//! Exercise 1: write a file through a mapping, then read it back through
//! another. `memmap2` does the mapping on every platform (mmap on POSIX,
//! CreateFileMapping + MapViewOfFile on Windows).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use memmap2::{Mmap, MmapMut};

use crate::contract::{
    FILE_LINE_PREFIX, FILE_MESSAGE, FILE_NAME, FILE_SIZE, put_message, text_until_nul,
};
use crate::error::{Error, Result};

/// Creates `datafile.bin` in `dir`, writes the message through a shared
/// mapping, reads it back through a read-only one and prints the line.
pub fn run(dir: &Path, out: &mut dyn Write) -> Result<()> {
    let path = dir.join(FILE_NAME);
    write_through_mapping(&path)?;
    let text = read_through_mapping(&path)?;
    writeln!(out, "{FILE_LINE_PREFIX}{text}")?;
    Ok(())
}

fn write_through_mapping(path: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .read(true) // mapping needs read access, even to write
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|err| Error::os(format_args!("cannot create {FILE_NAME}"), err))?;
    // A new file is empty, and a mapping cannot make a file longer: set its
    // size first (ftruncate), or the first store past the end is a SIGBUS.
    file.set_len(FILE_SIZE)
        .map_err(|err| Error::os(format_args!("cannot size {FILE_NAME}"), err))?;
    // MAP_SHARED, read-write: stores go to the file's own pages (the page
    // cache), so the file itself changes. A private mapping would not.
    // SAFETY: nobody else uses the file while we hold the mapping.
    let mut map = unsafe { MmapMut::map_mut(&file) }
        .map_err(|err| Error::os(format_args!("cannot map {FILE_NAME}"), err))?;
    put_message(&mut map, FILE_MESSAGE);
    // Other mappings see the stores at once; flush (msync) only asks for
    // them to reach the disk now rather than later.
    map.flush()
        .map_err(|err| Error::os(format_args!("cannot flush {FILE_NAME}"), err))?;
    Ok(()) // the mapping and the file are closed here (munmap, close)
}

fn read_through_mapping(path: &Path) -> Result<String> {
    let file =
        File::open(path).map_err(|err| Error::os(format_args!("cannot open {FILE_NAME}"), err))?;
    // A read-only mapping: PROT_READ, the same pages the writer filled.
    // SAFETY: as above.
    let map = unsafe { Mmap::map(&file) }
        .map_err(|err| Error::os(format_args!("cannot map {FILE_NAME}"), err))?;
    Ok(text_until_nul(&map).into_owned())
}
