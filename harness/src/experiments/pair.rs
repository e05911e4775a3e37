//! The writer/reader handoff: the grader drives a pair by what it
//! observes (the region ready, the writer waiting for its release), with a
//! deadline for every phase.

use std::time::{Duration, Instant};

use super::{
    GraderError, Role, RunEvidence, lock_if_shared, make_absent, read_trace, start, started,
};
use crate::ipc::{Entry, Seen};
use crate::observe::poll_until;
use crate::observe::trace::Trace;
use crate::rubric::{Ready, Release, Start};
use crate::runner::{self, Finished, SIGINT, SIGTERM};
use crate::session::{Session, Who};

/// How long a writer may live at most, whatever happens: every phase has
/// its own shorter deadline; this is the backstop.
const WRITER_BACKSTOP: Duration = Duration::from_secs(120);

/// One writer/reader handoff to make: a value, so that checks asking for
/// the same handoff share one run of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// Most random delay between readiness and the reader's start, drawn
    /// from `jitter_seed`.
    pub jitter: Duration,
    pub jitter_seed: u64,
    /// Keep the writer held for the rubric's `hold` after the reader, and
    /// require it to stay.
    pub hold: bool,
    /// The name both programs are given, when it is not the rubric's (a
    /// fresh one per grading, so that a program ignoring NAME is seen).
    pub name: Option<String>,
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

/// When a writer left before it was released, by the order of events: its
/// exit against the reader's start and end, whenever the grader noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    BeforeReady,
    /// Its region was ready, but it had exited before the reader started.
    BeforeReader,
    BeforeReaderDone,
    /// After the reader was done, before its release (during the hold).
    DuringHold,
    AtRelease,
}

impl Early {
    /// When a writer that exited at `at` left, against the reader's start
    /// and end (`reader`), if a reader ran.
    fn at(at: Instant, reader: Option<(Instant, Instant)>) -> Early {
        match reader {
            Some((began, _)) if at < began => Early::BeforeReader,
            Some((_, ended)) if at <= ended => Early::BeforeReaderDone,
            _ => Early::DuringHold,
        }
    }
}

/// How long a writer whose region holds the message, but which neither
/// waits for anything nor exits, is watched before it counts as ready: a
/// writer that fills its region and exits at once is seen to exit, however
/// the polls fall; a writer that waits is ready as soon as it waits.
const STEADY: Duration = Duration::from_millis(250);

/// How the writer was held after the reader was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// No hold was asked (or the writer was never ready, or gone).
    None,
    /// Released at once: every thread of it was blocked reading the stdin
    /// the grader holds, and it had armed no timer, so nothing but the
    /// release could wake it.
    Skipped,
    /// Held the rubric's full hold: it was not only waiting on its stdin.
    Full,
    /// Held the full hold, because it had armed a timer (the handoff was
    /// made again so: a timer may wake a program waiting on its stdin).
    FullForTimer,
    /// Held the full hold, because its timers could not be watched here
    /// (no seccomp watch): nothing says it armed none.
    FullUnwatched,
}

/// What became of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterFate {
    /// It was gone before it was released.
    Left(Early),
    /// It never got ready, and the grader stopped it.
    NeverReady,
    /// Released, it exited within its deadline, this long after.
    Exited { after_release: Duration },
    /// Released, it was still running at its deadline to exit.
    Stayed,
}

impl WriterFate {
    /// When it left early, if it did.
    pub fn early(self) -> Option<Early> {
        match self {
            WriterFate::Left(when) => Some(when),
            _ => None,
        }
    }

    /// How long after its release it exited, if it did in time.
    pub fn exit_after_release(self) -> Option<Duration> {
        match self {
            WriterFate::Exited { after_release } => Some(after_release),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct PairOutcome {
    pub plan: PairPlan,
    pub writer_name: String,
    pub reader_name: String,
    pub readiness: Readiness,
    pub writer: Finished,
    pub reader: Option<Finished>,
    pub fate: WriterFate,
    pub hold: Hold,
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

    /// What the watch saw of the learner's programs in this pair, by the
    /// region the grader saw ready: the evidence checks judge every run.
    pub fn evidence(&self) -> Vec<RunEvidence> {
        let region = match &self.readiness {
            Readiness::Ready { seen: Some(s), .. } => Some(s.id),
            _ => None,
        };
        let mut seen = Vec::new();
        // A run killed before its init could report has no record: it is
        // no evidence either way.
        if self.plan.writer == Who::Learner && self.writer.io.is_some() {
            seen.push(RunEvidence {
                role: Role::Writer,
                region,
                io: self.writer.io.clone(),
            });
        }
        if self.plan.reader == Some(Who::Learner)
            && let Some(r) = &self.reader
            && r.io.is_some()
        {
            seen.push(RunEvidence {
                role: Role::Reader,
                region,
                io: r.io.clone(),
            });
        }
        seen
    }
}

/// Handoffs in a row, with a budget for all of them.
#[derive(Debug)]
pub struct RepeatOutcome {
    /// The handoffs made, in order.
    pub rounds: Vec<PairOutcome>,
    /// How many were asked for.
    pub wanted: u32,
    /// The budget ran out before all were made.
    pub out_of_time: bool,
    /// The budget, and how long the handoffs took.
    pub budget: Duration,
    pub took: Duration,
}

impl PairOutcome {
    /// Whether something in it ran into its deadline: the next handoff would
    /// only wait as long again.
    pub fn timed_out(&self) -> bool {
        matches!(self.readiness, Readiness::TimedOut { .. })
            || self.writer.ending == runner::Ending::TimedOut
            || self
                .reader
                .as_ref()
                .is_some_and(|r| r.ending == runner::Ending::TimedOut)
    }
}

/// `rounds` handoffs of `plan`, each with its own jitter, stopping when the
/// budget is spent or a handoff ran into a deadline.
pub fn repeat(
    session: &mut Session,
    plan: &PairPlan,
    rounds: u32,
    budget: Duration,
) -> Result<RepeatOutcome, GraderError> {
    let started = Instant::now();
    let mut done = Vec::new();
    let mut out_of_time = false;
    for i in 0..rounds {
        if started.elapsed() >= budget {
            out_of_time = true;
            break;
        }
        let mut round = plan.clone();
        round.jitter_seed = plan.jitter_seed.wrapping_add(u64::from(i));
        let o = run(session, round)?;
        let stop = o.timed_out();
        done.push(o);
        if stop {
            break;
        }
    }
    Ok(RepeatOutcome {
        rounds: done,
        wanted: rounds,
        out_of_time,
        budget,
        took: started.elapsed(),
    })
}

/// Makes the handoff `plan`, one phase after another: the names made
/// absent, (the reader first, in a reader-first protocol,) the writer
/// started and its readiness awaited, the reader run while the writer
/// holds, the hold, the release, and what was left.
pub fn run(session: &mut Session, plan: PairPlan) -> Result<PairOutcome, GraderError> {
    let first = run_once(session, plan.clone(), true)?;
    // Released at once on the strength of its waiting, the writer may have
    // armed a timer all the same (the watch says so only at its end), or
    // not have been watched at all: then the handoff is made again, with
    // the full hold.
    let why = match first.writer.io.as_deref() {
        _ if first.hold != Hold::Skipped => return Ok(first),
        None => Hold::FullUnwatched,
        Some(io) if crate::observe::watch::armed_timer(io) => Hold::FullForTimer,
        Some(_) => return Ok(first),
    };
    let mut again = run_once(session, plan, false)?;
    if again.hold == Hold::Full {
        again.hold = why;
    }
    Ok(again)
}

/// One handoff; `quick`: a writer seen only waiting on its stdin is
/// released without the hold.
fn run_once(
    session: &mut Session,
    plan: PairPlan,
    quick: bool,
) -> Result<PairOutcome, GraderError> {
    let (writer_name, reader_name) = names(session, &plan);
    let _locks = lock_if_shared(session, [writer_name.as_str(), reader_name.as_str()])?;
    make_absent(session, &writer_name)?;
    make_absent(session, &reader_name)?;
    let protocol = Protocol::of(session, &plan);
    let head_len = plan.message.len() + 1;

    let early_reader = if protocol.reader_first
        && let Some(who) = plan.reader
    {
        Some(start_reader(session, who, &reader_name, &plan)?)
    } else {
        None
    };
    let mut spec = session.writer_spec(
        plan.writer,
        &writer_name,
        plan.size,
        &plan.message,
        WRITER_BACKSTOP,
    );
    // A Windows writer the pair does not hold needs no watch to be
    // released at once (the watch costs Wine programs dearly).
    spec.unwatched = spec.wine_view && !plan.hold && !plan.trace;
    let (spec, writer_tpath) = session.prepare(spec, "writer", plan.trace);
    let mut writer = start(spec)?;
    let writer_stdin = writer.stdin_inode();

    let regions = session.regions();
    let peek = |head: usize| regions.peek(&writer_name, head);
    let readiness = await_readiness(session, &protocol, &plan, &mut writer, &peek);
    let ready = matches!(readiness, Readiness::Ready { .. });
    let (shm_seen, shm_free) = if ready {
        (Vec::new(), None)
    } else {
        (
            regions.entries(),
            regions.capacity().ok().map(|(_, free)| free),
        )
    };
    let held = while_held(
        session,
        &plan,
        &mut writer,
        &readiness,
        early_reader,
        &reader_name,
        &peek,
    )?;
    let reader_span = held.reader.as_ref().map(|r| (r.began, r.ended));
    let (writer, fate, hold) =
        hold_and_release(session, &protocol, &plan, writer, ready, reader_span, quick);

    // After the writer's own exit, its name must be gone.
    let exited_itself = matches!(
        writer.ending,
        runner::Ending::Exited(_) | runner::Ending::Signalled(_)
    );
    let left_region = if exited_itself { peek(head_len) } else { None };
    make_absent(session, &writer_name)?;
    make_absent(session, &reader_name)?;
    session.discard_dirs();
    started(&writer, plan.writer)?;
    if let (Some(r), Some(who)) = (&held.reader, plan.reader) {
        started(r, who)?;
    }
    Ok(PairOutcome {
        plan,
        writer_name,
        reader_name,
        readiness,
        writer,
        reader: held.reader,
        fate,
        hold,
        left_region,
        writer_peak_kib: held.writer_peak_kib,
        region_allocated: held.region_allocated,
        writer_trace: read_trace(writer_tpath),
        reader_trace: read_trace(held.reader_trace),
        writer_stdin,
        shm_seen,
        shm_free,
    })
}

/// The names writer and reader are given: the reference writer creates the
/// region under the name the reader looks for; the reference reader looks
/// under the writer's name.
fn names(session: &Session, plan: &PairPlan) -> (String, String) {
    if let Some(name) = &plan.name {
        let name = session.platform_name(name);
        return (name.clone(), name);
    }
    let rubric = session.rubric();
    let (w, r) = match (plan.writer, plan.reader) {
        (Who::Reference, _) => (rubric.reader_name(), rubric.reader_name()),
        (Who::Learner, Some(Who::Reference)) | (Who::Learner, None) => {
            (rubric.writer_name(), rubric.writer_name())
        }
        (Who::Learner, Some(Who::Learner)) => (rubric.writer_name(), rubric.reader_name()),
    };
    (session.platform_name(w), session.platform_name(r))
}

/// How this pair's writer is released and says it is ready.
struct Protocol {
    release: Release,
    ready: Ready,
    reader_first: bool,
}

impl Protocol {
    /// The rubric's, for the learner's writer; the reference writer's own
    /// (ready with its region, released by a line) otherwise.
    fn of(session: &Session, plan: &PairPlan) -> Protocol {
        let rubric = session.rubric();
        let wcfg = &rubric.programs.writer;
        let (release, ready) = match plan.writer {
            Who::Reference => (Release::StdinLine, Ready::Region),
            Who::Learner => (wcfg.release, wcfg.ready.clone()),
        };
        Protocol {
            release,
            ready,
            reader_first: rubric.region.start == Start::ReaderFirst && plan.reader.is_some(),
        }
    }
}

/// A reader started before the writer (reader-first protocol): given its
/// head start, then left running.
fn start_reader(
    session: &mut Session,
    who: Who,
    name: &str,
    plan: &PairPlan,
) -> Result<(runner::Running, Option<std::path::PathBuf>), GraderError> {
    let spec = session.reader_spec(who, name, plan.size);
    let (spec, tpath) = session.prepare(spec, "reader", plan.trace);
    let mut running = start(spec)?;
    running.wait_exit(session.rubric().region.reader_delay);
    Ok((running, tpath))
}

/// Waits for the writer's readiness as the protocol defines it.
fn await_readiness(
    session: &Session,
    protocol: &Protocol,
    plan: &PairPlan,
    writer: &mut runner::Running,
    peek: &dyn Fn(usize) -> Option<Seen>,
) -> Readiness {
    let began = Instant::now();
    let deadline = began + session.rubric().programs.writer.ready_timeout;
    let head_len = plan.message.len() + 1;
    match &protocol.ready {
        Ready::Region => {
            let stdin_release = matches!(protocol.release, Release::StdinLine | Release::StdinEof);
            let mut held_since: Option<Instant> = None;
            poll_until(deadline, || {
                if writer.has_exited() {
                    return Some(Readiness::WriterEnded);
                }
                // Checked before the region, so that a region seen ready
                // after the writer settled still counts as ready.
                let settled = stdin_release && writer.waiting_for_stdin();
                match peek(head_len) {
                    Some(seen) if seen.holds(&plan.message) => {
                        let since = *held_since.get_or_insert_with(Instant::now);
                        (settled || writer.asleep() || since.elapsed() >= STEADY).then(|| {
                            Readiness::Ready {
                                after: began.elapsed(),
                                seen: Some(seen),
                            }
                        })
                    }
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
                Readiness::Ready {
                    after: began.elapsed(),
                    seen: peek(head_len),
                }
            }
        }
    }
}

/// What happened while the writer held the region.
struct Held {
    reader: Option<Finished>,
    reader_trace: Option<std::path::PathBuf>,
    writer_peak_kib: Option<u64>,
    region_allocated: Option<u64>,
}

/// While the writer holds a ready region: its memory measured (if asked),
/// then the reader run to its end (or the early reader's end awaited).
fn while_held(
    session: &mut Session,
    plan: &PairPlan,
    writer: &mut runner::Running,
    readiness: &Readiness,
    early_reader: Option<(runner::Running, Option<std::path::PathBuf>)>,
    reader_name: &str,
    peek: &dyn Fn(usize) -> Option<Seen>,
) -> Result<Held, GraderError> {
    let mut held = Held {
        reader: None,
        reader_trace: None,
        writer_peak_kib: None,
        region_allocated: None,
    };
    let (ready, seen) = match readiness {
        Readiness::Ready { seen, .. } => (true, seen.as_ref()),
        _ => (false, None),
    };
    if ready && plan.measure {
        held.writer_peak_kib = writer.peak_rss_kib();
        held.region_allocated = peek(0).map(|s| s.allocated);
    }
    if let Some((running, tpath)) = early_reader {
        held.reader = Some(running.finish());
        held.reader_trace = tpath;
    } else if ready && let Some(who) = plan.reader {
        if !plan.jitter.is_zero() {
            let pause =
                fastrand::Rng::with_seed(plan.jitter_seed).u64(..=plan.jitter.as_micros() as u64);
            std::thread::sleep(Duration::from_micros(pause));
        }
        let spec = session.reader_spec(who, reader_name, reader_size(plan, who, seen));
        let (spec, tpath) = session.prepare(spec, "reader", plan.trace);
        held.reader = Some(start(spec)?.finish());
        held.reader_trace = tpath;
    }
    Ok(held)
}

/// The SIZE a reader is given: the plan's; but the grader's own reader,
/// which refuses a region smaller than its SIZE, is given the size of a
/// smaller region that holds the message, so that a wrong size is judged
/// once (by the check of the region) and the handoff still shows whether
/// the message got across.
fn reader_size(plan: &PairPlan, who: Who, seen: Option<&Seen>) -> u64 {
    match (who, seen) {
        (Who::Reference, Some(s)) if s.size < plan.size && s.holds(&plan.message) => s.size,
        _ => plan.size,
    }
}

/// The hold (the writer must still be there after the reader is done),
/// then the release and the deadline to exit. When the writer left early
/// is decided by when it exited against the reader's start and end
/// (`reader`), not by when the grader looked.
fn hold_and_release(
    session: &Session,
    protocol: &Protocol,
    plan: &PairPlan,
    mut writer: runner::Running,
    ready: bool,
    reader: Option<(Instant, Instant)>,
    quick: bool,
) -> (Finished, WriterFate, Hold) {
    let wcfg = &session.rubric().programs.writer;
    if !ready {
        return if writer.has_exited() {
            (
                writer.finish(),
                WriterFate::Left(Early::BeforeReady),
                Hold::None,
            )
        } else {
            (writer.stop(), WriterFate::NeverReady, Hold::None)
        };
    }
    if protocol.release == Release::None {
        // Nobody releases it: it may leave on its own once the reader has
        // started (a consumer may well tell it to, before the reader ends).
        let released = reader.map(|(began, _)| began);
        writer.wait_exit(wcfg.exit_timeout);
        let fate = match writer.exited_at() {
            Some(at) if released.is_some_and(|r| at < r) => WriterFate::Left(Early::BeforeReader),
            Some(at) => WriterFate::Exited {
                after_release: at.saturating_duration_since(released.unwrap_or(at)),
            },
            None => WriterFate::Stayed,
        };
        return (writer.time_out(), fate, Hold::None);
    }
    if let Some(at) = writer.exited_at() {
        return (
            writer.finish(),
            WriterFate::Left(Early::at(at, reader)),
            Hold::None,
        );
    }
    // The hold is there to catch a writer that leaves by itself: one that
    // nothing but the release can wake need not be waited out.
    let hold = match (plan.hold, quick && writer.only_waits_on_stdin()) {
        (false, _) => Hold::None,
        (true, true) => Hold::Skipped,
        (true, false) => Hold::Full,
    };
    if hold == Hold::Full && writer.wait_exit(wcfg.hold) {
        return (writer.finish(), WriterFate::Left(Early::DuringHold), hold);
    }
    let released = Instant::now();
    match protocol.release {
        Release::StdinLine => {
            if writer.send_line().is_err() && writer.has_exited() {
                writer.close_stdin();
                let when = match writer.exited_at() {
                    Some(at) if at < released => Early::at(at, reader),
                    _ => Early::AtRelease,
                };
                return (writer.time_out(), WriterFate::Left(when), hold);
            }
            writer.close_stdin();
        }
        Release::StdinEof => writer.close_stdin(),
        Release::Sigterm => writer.signal(SIGTERM),
        Release::Sigint => writer.signal(SIGINT),
        Release::None => {}
    }
    writer.wait_exit(wcfg.exit_timeout);
    let fate = match writer.exited_at() {
        Some(at) => WriterFate::Exited {
            after_release: at.saturating_duration_since(released),
        },
        None => WriterFate::Stayed,
    };
    (writer.time_out(), fate, hold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writers_exit_is_placed_by_time_against_the_readers_run() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let reader = Some((ms(10), ms(20)));
        assert_eq!(Early::at(ms(5), reader), Early::BeforeReader);
        assert_eq!(Early::at(ms(15), reader), Early::BeforeReaderDone);
        assert_eq!(Early::at(ms(20), reader), Early::BeforeReaderDone);
        assert_eq!(Early::at(ms(25), reader), Early::DuringHold);
        assert_eq!(Early::at(ms(5), None), Early::DuringHold);
    }
}
