//! Exercise 1's experiment: mapfile in an empty directory, traced, and
//! datafile.bin as the grader reads it afterwards.

use std::os::unix::fs::OpenOptionsExt;

use super::{GraderError, read_trace, start, started};
use crate::observe::kind_of;
use crate::observe::trace::Trace;
use crate::runner::Finished;
use crate::session::{Session, Who};

/// What became of datafile.bin.
#[derive(Debug, Clone)]
pub enum FileSeen {
    /// No such file; the names that were in the directory instead.
    Missing { others: Vec<String> },
    /// Something that is not a regular file under that name (a symbolic
    /// link, a FIFO, a directory...): what it is, in words. Never followed
    /// or opened for reading.
    NotAFile { what: String },
    /// Its size and bytes (at most the first MiB), and which file it is
    /// (device, inode), for the watch's evidence.
    Present {
        size: u64,
        bytes: Vec<u8>,
        id: (u64, u64),
    },
}

#[derive(Debug)]
pub struct MapfileOutcome {
    pub run: Finished,
    pub file: FileSeen,
    pub trace: Option<Trace>,
}

/// Runs mapfile (traced) in an empty directory, then reads datafile.bin
/// through the grader's own mapping once mapfile and its group are gone.
/// One run: what it did and how it did it are judged from the same run.
pub fn run(session: &mut Session) -> Result<MapfileOutcome, GraderError> {
    let spec = session.mapfile_spec();
    let dir = spec.dir.clone();
    let (spec, trace_path) = session.prepare(spec, "mapfile", true);
    let run = start(spec)?.finish();
    let file = read_datafile(&dir, &session.rubric().file.name);
    session.discard_dirs();
    started(&run, Who::Learner)?;
    Ok(MapfileOutcome {
        run,
        file,
        trace: read_trace(trace_path),
    })
}

fn read_datafile(dir: &std::path::Path, name: &str) -> FileSeen {
    const KEEP: u64 = 1 << 20;
    let path = dir.join(name);
    // Whatever learner code left there: a link is not followed (it could
    // point at any file the grader may read), a FIFO does not block.
    if let Ok(meta) = path.symlink_metadata()
        && !meta.is_file()
    {
        return FileSeen::NotAFile {
            what: kind_of(&path, &meta),
        };
    }
    let file = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => f,
        Ok(_) => {
            return FileSeen::NotAFile {
                what: "not a regular file".into(),
            };
        }
        Err(_) => {
            let mut others: Vec<String> = std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(|e| Some(crate::text::name(&e.ok()?.file_name())))
                        .collect()
                })
                .unwrap_or_default();
            others.sort();
            // A directory of twenty thousand files is named by its first.
            const SHOWN: usize = 20;
            if others.len() > SHOWN {
                let more = others.len() - SHOWN;
                others.truncate(SHOWN);
                others.push(format!("and {more} more"));
            }
            return FileSeen::Missing { others };
        }
    };
    let meta = file.metadata().ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let id = meta.as_ref().map_or((0, 0), |m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    });
    let len = size.min(KEEP) as usize;
    let bytes = if len == 0 {
        Vec::new()
    } else {
        // SAFETY: every process that could change the file has been killed
        // (the runner ends the whole group), so the mapping is stable.
        match unsafe { memmap2::MmapOptions::new().len(len).map(&file) } {
            Ok(map) => map.to_vec(),
            Err(_) => Vec::new(),
        }
    };
    FileSeen::Present { size, bytes, id }
}
