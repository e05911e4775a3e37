//! The experiments the checks judge: mapfile in an empty directory, a
//! writer/reader pair, a reader with no writer. Each one runs programs
//! through the runner, drives them by observed events with deadlines, and
//! records what the grader saw for itself. None of them decides a verdict.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::ipc::{Entry, Seen};
use crate::lock::{NameLocks, lock_names};
use crate::observe::trace::Trace;
use crate::observe::{kind_of, poll_until};
use crate::rubric::{Ready, Release, Start};
use crate::runner::{self, Finished, Running, SIGINT, SIGTERM, Spec};
use crate::session::{RunEvidence, Session, Who};

/// How long a writer may live at most, whatever happens: every phase has
/// its own shorter deadline; this is the backstop.
const WRITER_BACKSTOP: Duration = Duration::from_secs(120);

/// A run that could not even start: the grader's problem, not the learner's.
#[derive(Debug, Clone)]
pub struct GraderError(pub String);

fn start(spec: Spec) -> Result<Running, GraderError> {
    let shown = spec.shown.join(" ");
    runner::start(spec).map_err(|e| GraderError(format!("could not start `{shown}`: {e}")))
}

/// A program the sandbox could not start for a reason of the grader's or
/// the machine's: a grader error. Learner programs were built and placed
/// by the grader, so a program out of reach or not there is never the
/// learner's doing; an exec that fails on the program itself (not an
/// executable, a missing interpreter) is. Any failure of the grader's own
/// reference programs is the grader's.
fn started(run: &Finished, who: Who) -> Result<(), GraderError> {
    use runner::StartError;
    match &run.not_started {
        Some(e @ (StartError::NotReadable { .. } | StartError::NotInstalled { .. })) => {
            Err(GraderError(format!("could not start a program: {e}")))
        }
        Some(e) if who == Who::Reference => Err(GraderError(format!(
            "could not start a reference program: {e}"
        ))),
        _ => Ok(()),
    }
}

fn read_trace(path: Option<PathBuf>) -> Option<Trace> {
    path.and_then(|p| Trace::read(&p).ok())
}

// ---------------------------------------------------------------- mapfile

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
pub fn mapfile(session: &mut Session) -> Result<Rc<MapfileOutcome>, GraderError> {
    if let Some(done) = &session.mapfile {
        return Ok(done.clone());
    }
    let spec = session.mapfile_spec();
    let dir = spec.dir.clone();
    let (spec, trace_path) = session.prepare(spec, "mapfile", true);
    let run = start(spec)?.finish();
    let file = read_datafile(&dir, &session.rubric.file.name);
    session.discard_dirs();
    started(&run, Who::Learner)?;
    let outcome = Rc::new(MapfileOutcome {
        run,
        file,
        trace: read_trace(trace_path),
    });
    session.mapfile = Some(outcome.clone());
    Ok(outcome)
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

// ---------------------------------------------------------------- no writer

#[derive(Debug)]
pub struct NoWriterOutcome {
    pub run: Finished,
    /// A region of the reader's name existed after it ran: it created one.
    pub created: Option<Seen>,
}

/// The learner's reader, alone, with no region of its name.
pub fn no_writer(
    session: &mut Session,
    timeout: Duration,
) -> Result<Rc<NoWriterOutcome>, GraderError> {
    if let Some(done) = session.no_writer.get(&timeout) {
        return Ok(done.clone());
    }
    let name = session.rubric.reader_name().to_string();
    let _locks = lock_if_shared(session, [name.as_str()])?;
    make_absent(session, &name)?;
    let mut spec = session.reader_spec(Who::Learner, &name, session.rubric.region.size);
    spec.timeout = timeout;
    let (spec, _) = session.prepare(spec, "reader", false);
    let run = start(spec)?.finish();
    let created = session.regions().peek(&name, 64);
    make_absent(session, &name)?;
    session.discard_dirs();
    started(&run, Who::Learner)?;
    let outcome = Rc::new(NoWriterOutcome { run, created });
    session.no_writer.insert(timeout, outcome.clone());
    Ok(outcome)
}

fn lock_if_shared<'a>(
    session: &Session,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Option<NameLocks>, GraderError> {
    if !session.shared_place() {
        return Ok(None);
    }
    lock_names(names)
        .map(Some)
        .map_err(|e| GraderError(format!("cannot lock the region names: {e}")))
}

fn make_absent(session: &Session, name: &str) -> Result<(), GraderError> {
    session
        .regions()
        .make_absent(name)
        .map_err(|e| GraderError(e.to_string()))
}

// ---------------------------------------------------------------- the pair

/// One writer/reader handoff to make.
#[derive(Debug, Clone)]
pub struct PairPlan {
    pub writer: Who,
    /// None: the writer alone, observed and released.
    pub reader: Option<Who>,
    pub size: u64,
    /// What the writer is expected to write (the reference writes it).
    pub message: String,
    /// Run the learner's programs under strace too, for the evidence of
    /// their mappings (the watch of reads and writes is always on).
    pub trace: bool,
    /// Read the writer's peak memory while it holds the region.
    pub measure: bool,
    /// Most random delay between readiness and the reader's start.
    pub jitter: Duration,
    /// Keep the writer held for the rubric's `hold` after the reader, and
    /// require it to stay.
    pub hold: bool,
}

/// How the wait for the writer's readiness ended.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// Ready after this long; the region as the grader saw it then.
    Ready { after: Duration, seen: Option<Seen> },
    /// The writer ended first.
    WriterEnded,
    /// Not ready by the deadline; the region as last seen, if any.
    TimedOut { last: Option<Seen> },
    /// The writer sat waiting for its release on stdin without the region
    /// being ready: it is not going to be. The region as seen then.
    Settled { last: Option<Seen> },
}

/// When a writer left before it was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    BeforeReady,
    BeforeReaderDone,
    DuringHold,
    AtRelease,
}

#[derive(Debug)]
pub struct PairOutcome {
    pub plan: PairPlan,
    pub writer_name: String,
    pub reader_name: String,
    pub readiness: Readiness,
    pub writer: Finished,
    pub reader: Option<Finished>,
    /// The writer was gone before its release.
    pub early: Option<Early>,
    /// Released, it exited within its deadline, this long after release.
    pub exit_after_release: Option<Duration>,
    /// The region still existed once the writer had exited by itself.
    pub left_region: Option<Seen>,
    /// The writer's peak memory while holding, and the region's allocation.
    pub writer_peak_kib: Option<u64>,
    pub region_allocated: Option<u64>,
    pub writer_trace: Option<Trace>,
    pub reader_trace: Option<Trace>,
    /// The inode of the stdin pipe the grader released the writer through.
    pub writer_stdin: Option<u64>,
    /// What the shm directory held when readiness failed (for hints, and to
    /// tell whose doing a reference writer's failure was), and its free
    /// space then.
    pub shm_seen: Vec<Entry>,
    pub shm_free: Option<u64>,
}

impl PairOutcome {
    pub fn runs(&self) -> Vec<runner::RunRecord> {
        let mut runs = vec![self.writer.record.clone()];
        if let Some(r) = &self.reader {
            runs.push(r.record.clone());
        }
        runs
    }

    /// Learner processes left alive by either program.
    pub fn left_behind(&self) -> u32 {
        self.writer.record.left_behind + self.reader.as_ref().map_or(0, |r| r.record.left_behind)
    }
}

/// Makes (or recalls) the handoff `plan`, remembered under `key`.
pub fn pair(
    session: &mut Session,
    key: &str,
    plan: PairPlan,
) -> Result<Rc<PairOutcome>, GraderError> {
    if let Some(done) = session.pairs.get(key) {
        return Ok(done.clone());
    }
    let outcome = Rc::new(run_pair(session, plan)?);
    session.pairs.insert(key.to_string(), outcome.clone());
    Ok(outcome)
}

/// Makes the handoff `plan` afresh (for repeated runs).
pub fn run_pair(session: &mut Session, plan: PairPlan) -> Result<PairOutcome, GraderError> {
    let rubric = session.rubric;
    let wcfg = &rubric.programs.writer;
    // The reference writer creates the region under the name the reader
    // looks for; the reference reader looks under the writer's name.
    let (writer_name, reader_name) = match (plan.writer, plan.reader) {
        (Who::Reference, _) => (
            rubric.reader_name().to_string(),
            rubric.reader_name().to_string(),
        ),
        (Who::Learner, Some(Who::Reference)) | (Who::Learner, None) => (
            rubric.writer_name().to_string(),
            rubric.writer_name().to_string(),
        ),
        (Who::Learner, Some(Who::Learner)) => (
            rubric.writer_name().to_string(),
            rubric.reader_name().to_string(),
        ),
    };
    let _locks = lock_if_shared(session, [writer_name.as_str(), reader_name.as_str()])?;
    let regions = session.regions();
    let peek = |head: usize| regions.peek(&writer_name, head);
    make_absent(session, &writer_name)?;
    make_absent(session, &reader_name)?;

    let release = if plan.writer == Who::Reference {
        Release::StdinLine
    } else {
        wcfg.release
    };
    let ready_mode = if plan.writer == Who::Reference {
        Ready::Region
    } else {
        wcfg.ready.clone()
    };
    let reader_first = rubric.region.start == Start::ReaderFirst && plan.reader.is_some();

    // The reader first, when the lab's protocol says so.
    let mut early_reader = None;
    if reader_first && let Some(who) = plan.reader {
        let spec = session.reader_spec(who, &reader_name, plan.size);
        let (spec, tpath) = session.prepare(spec, "reader", plan.trace);
        let mut running = start(spec)?;
        running.wait_exit(rubric.region.reader_delay);
        early_reader = Some((running, tpath));
    }

    let spec = session.writer_spec(
        plan.writer,
        &writer_name,
        plan.size,
        &plan.message,
        WRITER_BACKSTOP,
    );
    let (spec, writer_tpath) = session.prepare(spec, "writer", plan.trace);
    let mut writer = start(spec)?;
    let writer_stdin = writer.stdin_inode();

    // 1. Readiness, as the rubric defines it.
    let began = Instant::now();
    let deadline = began + wcfg.ready_timeout;
    let head_len = plan.message.len() + 1;
    let readiness = match &ready_mode {
        Ready::Region => {
            let stdin_release = matches!(release, Release::StdinLine | Release::StdinEof);
            poll_until(deadline, || {
                if writer.has_exited() {
                    return Some(Readiness::WriterEnded);
                }
                // Checked before the region, so that a region seen ready
                // after the writer settled still counts as ready.
                let settled = stdin_release && writer.waiting_for_stdin();
                let seen = peek(head_len);
                match seen {
                    Some(seen) if seen.holds(plan.size, &plan.message) => Some(Readiness::Ready {
                        after: began.elapsed(),
                        seen: Some(seen),
                    }),
                    last if settled => Some(Readiness::Settled { last }),
                    _ => None,
                }
            })
            .unwrap_or_else(|| Readiness::TimedOut {
                last: peek(head_len),
            })
        }
        Ready::Stdout(pattern) => {
            let matched = writer.stdout().wait_for(deadline, |bytes| {
                String::from_utf8_lossy(bytes)
                    .lines()
                    .any(|l| pattern.is_match(l))
            });
            let seen = peek(head_len);
            if matched {
                Readiness::Ready {
                    after: began.elapsed(),
                    seen,
                }
            } else if writer.has_exited() {
                Readiness::WriterEnded
            } else {
                Readiness::TimedOut { last: seen }
            }
        }
        Ready::Delay(delay) => {
            if writer.wait_exit(*delay) {
                Readiness::WriterEnded
            } else {
                let seen = peek(head_len);
                Readiness::Ready {
                    after: began.elapsed(),
                    seen,
                }
            }
        }
    };
    let ready = matches!(readiness, Readiness::Ready { .. });
    let (shm_seen, shm_free) = if ready {
        (Vec::new(), None)
    } else {
        (
            regions.entries(),
            regions.capacity().ok().map(|(_, free)| free),
        )
    };

    // 2. While the writer holds the region: measure, then the reader.
    let mut writer_peak_kib = None;
    let mut region_allocated = None;
    if ready && plan.measure {
        writer_peak_kib = writer.peak_rss_kib();
        region_allocated = peek(0).map(|s| s.allocated);
    }
    let mut reader = None;
    let mut reader_tpath = None;
    if let Some((running, tpath)) = early_reader {
        reader = Some(running.finish());
        reader_tpath = tpath;
    } else if ready && let Some(who) = plan.reader {
        if !plan.jitter.is_zero() {
            let pause = session.rng.u64(..=plan.jitter.as_micros() as u64);
            std::thread::sleep(Duration::from_micros(pause));
        }
        let spec = session.reader_spec(who, &reader_name, plan.size);
        let (spec, tpath) = session.prepare(spec, "reader", plan.trace);
        reader = Some(start(spec)?.finish());
        reader_tpath = tpath;
    }

    // 3. Hold: the writer must still be there after the reader is done.
    let mut early = None;
    if !ready {
        if writer.has_exited() {
            early = Some(Early::BeforeReady);
        }
    } else if writer.has_exited() {
        early = Some(Early::BeforeReaderDone);
    } else if plan.hold && release != Release::None && writer.wait_exit(wcfg.hold) {
        early = Some(Early::DuringHold);
    }

    // 4. Release, and the deadline to exit.
    let mut exit_after_release = None;
    let writer = if !ready && early.is_none() {
        writer.stop()
    } else if early.is_some() {
        writer.finish()
    } else {
        let released = Instant::now();
        match release {
            Release::StdinLine => {
                if writer.send_line().is_err() && writer.has_exited() {
                    early = Some(Early::AtRelease);
                }
                writer.close_stdin();
            }
            Release::StdinEof => writer.close_stdin(),
            Release::Sigterm => writer.signal(SIGTERM),
            Release::Sigint => writer.signal(SIGINT),
            Release::None => {}
        }
        if early.is_none() && writer.wait_exit(wcfg.exit_timeout) {
            exit_after_release = Some(released.elapsed());
        }
        writer.time_out()
    };

    // 5. After the writer's own exit, its name must be gone.
    let exited_itself = matches!(
        writer.ending,
        runner::Ending::Exited(_) | runner::Ending::Signalled(_)
    );
    let left_region = if exited_itself { peek(head_len) } else { None };
    make_absent(session, &writer_name)?;
    make_absent(session, &reader_name)?;
    session.discard_dirs();
    started(&writer, plan.writer)?;
    if let (Some(r), Some(who)) = (&reader, plan.reader) {
        started(r, who)?;
    }

    // What the watch saw of the learner's programs, kept for the evidence
    // checks whichever check this pair is for.
    let region = match &readiness {
        Readiness::Ready { seen: Some(s), .. } => Some(s.id),
        _ => None,
    };
    if plan.writer == Who::Learner {
        session.evidence.push(RunEvidence {
            role: "writer",
            region,
            io: writer.io.clone(),
        });
    }
    if plan.reader == Some(Who::Learner)
        && let Some(r) = &reader
    {
        session.evidence.push(RunEvidence {
            role: "reader",
            region,
            io: r.io.clone(),
        });
    }

    Ok(PairOutcome {
        plan,
        writer_name,
        reader_name,
        readiness,
        writer,
        reader,
        early,
        exit_after_release,
        left_region,
        writer_peak_kib,
        region_allocated,
        writer_trace: read_trace(writer_tpath),
        reader_trace: read_trace(reader_tpath),
        writer_stdin,
        shm_seen,
        shm_free,
    })
}
