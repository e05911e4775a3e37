//! Exercise 2: the writer and the reader, judged from handoffs the grader
//! drives: the learner's pair, each learner program with the reference
//! peer, the reader alone, many handoffs, and a large region.

use std::rc::Rc;

use super::file::{calls, describe_maps};
use super::{Verdict, bounded, ending_hint, ending_summary, escaped, has_line};
use crate::experiments::{self, Early, GraderError, PairOutcome, PairPlan, Readiness};
use crate::ipc::{Entry, Seen};
use crate::observe::watch;
use crate::rubric::{CheckConfig, ExpectExit, Release, fill};
use crate::runner::Ending;
use crate::session::{Session, Who};

const GONE_HINT: &str = "hold the region until the reader is done (wait for a line on stdin, then clean up); on Windows it vanishes with its last handle";

fn plan(session: &Session, writer: Who, reader: Option<Who>) -> PairPlan {
    PairPlan {
        writer,
        reader,
        size: session.rubric.region.size,
        message: session.rubric.region.message.clone(),
        trace: false,
        measure: false,
        jitter: std::time::Duration::ZERO,
        hold: true,
    }
}

/// The learner's writer and reader together, traced.
fn learner_pair(session: &mut Session) -> Result<Rc<PairOutcome>, GraderError> {
    let mut p = plan(session, Who::Learner, Some(Who::Learner));
    // Traced: the evidence of the pair's mappings comes from this run.
    p.trace = true;
    experiments::pair(session, "handoff", p)
}

/// The learner's writer with the reference reader.
fn writer_with_reference(session: &mut Session) -> Result<Rc<PairOutcome>, GraderError> {
    let p = plan(session, Who::Learner, Some(Who::Reference));
    experiments::pair(session, "writer_interop", p)
}

fn expected_line(session: &Session, message: &str) -> String {
    let r = &session.rubric.region;
    fill(&r.line, "", r.size, message)
}

/// What is wrong with a region the grader saw (or did not see).
fn region_problem(
    session: &Session,
    o: &PairOutcome,
    seen: Option<&Seen>,
    timed_out: bool,
) -> Verdict {
    let name = &o.writer_name;
    let size = o.plan.size;
    let message = &o.plan.message;
    let expected = format!(
        "region {name}: {size} bytes, starting {} and a NUL",
        escaped(message.as_bytes())
    );
    let within = humantime::format_duration(session.rubric.programs.writer.ready_timeout);
    let v = match seen {
        None => {
            let others: Vec<&String> = o
                .shm_seen
                .iter()
                .map(|e| &e.name)
                .filter(|n| *n != name)
                .collect();
            let observed = if others.is_empty() {
                match o.readiness {
                    Readiness::Settled { .. } => {
                        format!("the writer waited for its release, and there was no region named {name}")
                    }
                    _ => format!("no region named {name} appeared within {within}"),
                }
            } else {
                format!(
                    "no region named {name}; these appeared instead: {}",
                    others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            };
            let hint = if others.is_empty() {
                format!(
                    "create the region with {}; a plain file or a pipe is not shared memory",
                    calls_of(session).create
                )
            } else {
                format!("use the name the writer is given ({name}), exactly")
            };
            Verdict::fail(format!("the grader found no region {name}"))
                .observed(observed)
                .hint(hint)
        }
        Some(s) if !s.regular => Verdict::fail(format!("{name} is not a shared memory object"))
            .observed(format!("{name} is a special file, not a region"))
            .hint(format!("create it with {}", calls_of(session).open)),
        Some(s) if s.size != size => {
            let hint = if s.size == 0 {
                format!(
                    "the region is empty: size it with {}(fd, {size}) before mmap",
                    calls_of(session).size
                )
            } else {
                format!(
                    "size it with {}(fd, SIZE), SIZE being {size} here (the writer's second argument)",
                    calls_of(session).size
                )
            };
            Verdict::fail(format!("region {name} is {} bytes, not {size}", s.size))
                .observed(format!("{} bytes, starting {}", s.size, escaped(&s.head)))
                .hint(hint)
        }
        Some(s) => Verdict::fail(format!("region {name} does not hold the message"))
            .observed(format!("{} bytes, starting {}", s.size, escaped(&s.head)))
            .hint(if timed_out {
                "write the message and its NUL at offset 0 of the mapping, before waiting for release"
            } else {
                "write the message and its NUL at offset 0 before announcing readiness"
            }),
    };
    v.expected(expected).runs(o.runs())
}

/// The writer did not get its region ready: why.
fn readiness_problem(session: &Session, o: &PairOutcome) -> Option<Verdict> {
    match &o.readiness {
        Readiness::Ready { seen, .. } => match seen {
            Some(s) if s.holds(o.plan.size, &o.plan.message) => None,
            other => Some(region_problem(session, o, other.as_ref(), false)),
        },
        Readiness::TimedOut { last } | Readiness::Settled { last } => {
            Some(region_problem(session, o, last.as_ref(), true))
        }
        Readiness::WriterEnded => {
            let w = &o.writer;
            let wrote = o
                .left_region
                .as_ref()
                .is_some_and(|s| s.holds(o.plan.size, &o.plan.message));
            if wrote && w.ending.success() {
                return Some(
                    Verdict::fail(
                        "the writer filled the region, then exited at once instead of holding it",
                    )
                    .expected(format!(
                        "the writer alive, holding region {} until released",
                        o.writer_name
                    ))
                    .observed(format!(
                        "exit 0 after {} ms, leaving {} behind",
                        w.record.wall_ms, o.writer_name
                    ))
                    .hint(GONE_HINT)
                    .runs(o.runs()),
                );
            }
            let mut hint = ending_hint(w, "the writer");
            if hint.is_none() && w.ending == Ending::Exited(0) {
                hint = Some(GONE_HINT.to_string());
            }
            let mut observed = format!("the writer ended first: {}", ending_summary(w));
            if let Some(litter) = shm_litter(session, o, false) {
                observed.push_str(&format!("; {} was full: {litter}", place_shown(session)));
                hint = Some(litter_hint(session));
            }
            if let Some(left) = &o.left_region {
                observed.push_str(&format!(
                    "; it left {} behind ({} bytes)",
                    o.writer_name, left.size
                ));
            }
            Some(
                Verdict::fail(format!(
                    "the writer ended ({}) before its region was ready",
                    w.ending.describe()
                ))
                .expected(format!(
                    "the writer alive, holding region {}",
                    o.writer_name
                ))
                .observed(observed)
                .maybe_hint(hint)
                .runs(o.runs()),
            )
        }
    }
}

/// The reader's output, against the line expected for `message`.
fn reader_problem(
    session: &Session,
    o: &PairOutcome,
    message: &str,
    whose: &str,
) -> Option<Verdict> {
    let reader = o.reader.as_ref()?;
    let line = expected_line(session, message);
    let stdout = reader.stdout.text();
    let mode = session.rubric.output.mode;
    if reader.ending.success() && has_line(&stdout, &line, mode, message) {
        return None;
    }
    let v = if !reader.ending.success() {
        let mut hint = ending_hint(reader, "the reader");
        if hint.is_none()
            && let Some(trace) = &o.reader_trace
        {
            let mechanism = session.regions().mechanism;
            let opened: Vec<String> = trace
                .opened_paths()
                .iter()
                .filter_map(|p| mechanism.traced_region(p))
                .collect();
            if !opened.is_empty() && !opened.contains(&o.writer_name) {
                hint = Some(format!(
                    "the writer created {} but the reader opened {}: they must use the same name",
                    o.writer_name,
                    opened.join(", ")
                ));
            }
        }
        Verdict::fail(format!(
            "{whose} reader did not exit 0: {}",
            reader.ending.describe()
        ))
        .observed(ending_summary(reader))
        .maybe_hint(hint.or_else(|| {
            Some("it should open the region read-only, map it and print it, then exit 0".into())
        }))
    } else {
        let default = &session.rubric.region.message;
        let hint = if message != default && stdout.contains(default.as_str()) {
            format!(
                "it printed {default:?}, but the region held {message:?}: print what the region holds, not a fixed string"
            )
        } else if stdout.contains(message) {
            format!("the text is there, but the line must read exactly: {line}")
        } else {
            "print the region's bytes up to the first NUL, read from the mapping".to_string()
        };
        Verdict::fail(format!("{whose} reader did not print the line"))
            .observed(bounded(&stdout))
            .hint(hint)
    };
    Some(v.expected(line).runs(o.runs()))
}

/// The writer's behaviour once the reader is done: hold, release, exit 0.
fn release_problem(session: &Session, o: &PairOutcome) -> Option<Verdict> {
    let wcfg = &session.rubric.programs.writer;
    let w = &o.writer;
    if let Some(v) = left_on_its_own(session, o) {
        return Some(v);
    }
    if let Some(early) = o.early {
        let when = match early {
            Early::BeforeReady => "before its region was ready",
            Early::BeforeReaderDone => "while the reader was running",
            Early::DuringHold => "while it should have held the region",
            Early::AtRelease => "before the release line could be written",
        };
        return Some(
            Verdict::fail(format!(
                "the writer was gone before it was released ({})",
                w.ending.describe()
            ))
            .expected(format!(
                "the writer alive until released, {} after the reader is done",
                humantime::format_duration(wcfg.hold)
            ))
            .observed(format!("it ended {when}: {}", ending_summary(w)))
            .maybe_hint(ending_hint(w, "the writer").or(Some(GONE_HINT.into())))
            .runs(o.runs()),
        );
    }
    if o.exit_after_release.is_none() {
        let remove = calls_of(session).remove;
        let how = match wcfg.release {
            Release::StdinLine => format!("after the line on stdin, unmap, {remove} and return"),
            Release::StdinEof => format!("at end of file on stdin, unmap, {remove} and return"),
            Release::Sigterm | Release::Sigint => {
                format!("handle the signal: unmap, {remove} and exit")
            }
            Release::None => "exit on your own once the reader is done".to_string(),
        };
        return Some(
            Verdict::fail("the writer did not exit after its release")
                .expected(format!(
                    "exit 0 within {} of release",
                    humantime::format_duration(wcfg.exit_timeout)
                ))
                .observed(ending_summary(w))
                .hint(how)
                .runs(o.runs()),
        );
    };
    if !w.ending.success() {
        return Some(
            Verdict::fail(format!(
                "released, the writer did not exit 0: {}",
                w.ending.describe()
            ))
            .expected("exit 0 after release")
            .observed(ending_summary(w))
            .maybe_hint(
                ending_hint(w, "the writer").or(Some("clean up and return 0 once released".into())),
            )
            .runs(o.runs()),
        );
    }
    None
}

/// A writer that ended by itself without ever reading its stdin did not
/// wait for its release (it slept, say), whether it happened to end just
/// before the release or just after: one verdict, whatever the timing.
fn left_on_its_own(session: &Session, o: &PairOutcome) -> Option<Verdict> {
    let stdin_release = matches!(
        session.rubric.programs.writer.release,
        Release::StdinLine | Release::StdinEof
    );
    let ended_itself = matches!(
        o.early,
        Some(Early::BeforeReaderDone | Early::DuringHold | Early::AtRelease)
    ) || o.exit_after_release.is_some();
    // Only a blocking read of the grader's own pipe counts: a read of some
    // other pipe (one the program made itself, to wake on a timer) is not
    // waiting for release. Without the watch this cannot be told.
    let io = o.writer.io.as_ref()?;
    let never_read = !o
        .writer_stdin
        .is_some_and(|ino| watch::waited_on_pipe(io, ino));
    if !(stdin_release
        && ended_itself
        && never_read
        && matches!(o.writer.ending, Ending::Exited(_)))
    {
        return None;
    }
    Some(
        Verdict::fail("the writer left on its own instead of waiting for its release")
            .expected("the writer waits for a line on stdin, then cleans up")
            .observed(format!(
                "it never read its stdin, and ended by itself: {}",
                ending_summary(&o.writer)
            ))
            .hint(GONE_HINT)
            .runs(o.runs()),
    )
}

/// Everything a full learner handoff must get right, first problem first.
/// A writer gone while its reader still ran is the cause of whatever the
/// reader then did: named first, whichever way the race went.
fn handoff_problem(session: &Session, o: &PairOutcome) -> Option<Verdict> {
    pair_problem(session, o, || {
        reader_problem(session, o, &o.plan.message, "the")
    })
}

/// The writer's readiness, then the reader's part (`reader`), then the
/// writer's release; except that a writer gone while its reader still ran
/// is the cause of whatever the reader then did, and is named first,
/// whichever way the race went.
fn pair_problem(
    session: &Session,
    o: &PairOutcome,
    reader: impl FnOnce() -> Option<Verdict>,
) -> Option<Verdict> {
    let writer_left_first = o.early == Some(Early::BeforeReaderDone);
    readiness_problem(session, o)
        .or_else(|| {
            writer_left_first
                .then(|| release_problem(session, o))
                .flatten()
        })
        .or_else(reader)
        .or_else(|| release_problem(session, o))
}

/// `shm.observed`: the learner's writer holds the region the rubric says.
pub fn observed(session: &mut Session) -> Result<Verdict, GraderError> {
    let o = writer_with_reference(session)?;
    if let Some(v) = readiness_problem(session, &o) {
        return Ok(v);
    }
    // Holding means staying: a region seen for an instant does not count.
    if o.early.is_some()
        && let Some(v) = release_problem(session, &o)
    {
        return Ok(v);
    }
    let after = match &o.readiness {
        Readiness::Ready { after, .. } => after.as_millis(),
        _ => 0,
    };
    Ok(Verdict::pass(format!(
        "{} held {}: {} bytes with the message, {after} ms after start",
        o.writer.record.argv[0], o.writer_name, o.plan.size
    ))
    .runs(o.runs()))
}

/// `shm.handoff`: the learner's pair.
pub fn handoff(session: &mut Session) -> Result<Verdict, GraderError> {
    let o = learner_pair(session)?;
    Ok(handoff_problem(session, &o).unwrap_or_else(|| {
        Verdict::pass(format!(
            "the reader printed the message; the writer held on and exited 0 {} ms after release",
            o.exit_after_release.map_or(0, |d| d.as_millis())
        ))
        .runs(o.runs())
    }))
}

/// `shm.writer_interop`: the learner's writer, the reference reader.
pub fn writer_interop(session: &mut Session) -> Result<Verdict, GraderError> {
    let o = writer_with_reference(session)?;
    Ok(pair_problem(session, &o, || {
        reader_problem(session, &o, &o.plan.message, "the reference").map(|v| {
            v.hint("the reference reader could not read the region: create it with the given name and size, and the message at offset 0")
        })
    })
    .unwrap_or_else(|| {
        Verdict::pass("the reference reader read the message from the writer's region")
            .runs(o.runs())
    }))
}

/// `shm.reader_interop`: the reference writer with a fresh random message.
pub fn reader_interop(session: &mut Session) -> Result<Verdict, GraderError> {
    let mut p = plan(session, Who::Reference, Some(Who::Learner));
    p.message = session.random_message();
    p.hold = false;
    let o = experiments::pair(session, "reader_interop", p)?;
    if !matches!(o.readiness, Readiness::Ready { .. }) {
        // The grader's own writer failed: the learner's doing if learner
        // code took its name or filled its file system; else the grader's.
        return Ok(
            reference_writer_undone_by_learner(session, &o).unwrap_or_else(|| {
                Verdict::error(format!(
                    "the reference writer did not get ready: {}",
                    ending_summary(&o.writer)
                ))
                .runs(o.runs())
            }),
        );
    }
    let message = o.plan.message.clone();
    Ok(
        reader_problem(session, &o, &message, "the").unwrap_or_else(|| {
            Verdict::pass(format!(
                "printed the reference writer's message {message:?}"
            ))
            .runs(o.runs())
        }),
    )
}

/// What learner files filled the region place when a writer could not write its
/// region, if any did: too little room was left, or (`sigbus_says_full`,
/// for the grader's own writer, which sizes its region) it died of SIGBUS.
fn shm_litter(session: &Session, o: &PairOutcome, sigbus_says_full: bool) -> Option<String> {
    let learner = session.sandbox.learner_uid();
    let theirs = |e: &Entry| learner.is_none_or(|uid| e.uid == uid);
    let litter: Vec<&Entry> = o
        .shm_seen
        .iter()
        .filter(|e| theirs(e) && e.name != o.writer_name)
        .collect();
    let full = o.shm_free.is_some_and(|free| free < o.plan.size.max(4096))
        || (sigbus_says_full && o.writer.ending == Ending::Signalled(crate::runner::SIGBUS));
    if !full || litter.is_empty() {
        return None;
    }
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1 << 20) as f64);
    let list: Vec<String> = litter
        .iter()
        .take(5)
        .map(|e| format!("{} ({})", e.name, mib(e.allocated)))
        .collect();
    let more = if litter.len() > list.len() {
        ", ..."
    } else {
        ""
    };
    Some(format!(
        "{} of your files there: {}{more}",
        litter.len(),
        list.join(", ")
    ))
}

fn litter_hint(session: &Session) -> String {
    format!(
        "remove what your programs create in {}, and do not fill it",
        place_shown(session)
    )
}

/// Where the learner's programs see this grading's regions, for messages.
fn place_shown(session: &Session) -> String {
    session
        .regions()
        .mechanism
        .system_dir()
        .display()
        .to_string()
}

/// The calls the learner's mechanism names in hints.
fn calls_of(session: &Session) -> &'static crate::ipc::Calls {
    session.regions().mechanism.calls()
}

/// Why the reference writer could not make its region, when learner code
/// is the cause: a name the grader had just made absent exists again (and
/// is the learner's, or no region at all), or the file system the regions
/// live in is full of the learner's files.
fn reference_writer_undone_by_learner(session: &Session, o: &PairOutcome) -> Option<Verdict> {
    let learner = session.sandbox.learner_uid();
    let theirs = |e: &Entry| learner.is_none_or(|uid| e.uid == uid);
    let name = &o.writer_name;
    let v = if let Some(litter) = shm_litter(session, o, true) {
        Verdict::fail(format!(
            "the grader's writer could not write region {name}: {} was full of files your programs left",
            place_shown(session)
        ))
        .observed(format!(
            "{litter}; the grader's writer {}",
            o.writer.ending.describe()
        ))
        .hint(litter_hint(session))
    } else if matches!(o.writer.ending, Ending::Exited(code) if code != 0)
        && let Some(e) = o
            .shm_seen
            .iter()
            .find(|e| &e.name == name && (theirs(e) || !e.regular))
    {
        // It could not create the name (it refuses one that exists), which
        // the grader had made absent just before: learner code made it.
        let what = if e.regular {
            "a file"
        } else {
            "something that is not a region"
        };
        Verdict::fail(format!(
            "the grader's writer could not create {name}: your program had put {what} there"
        ))
        .observed(format!(
            "{name} existed, made by your code, although the grader had removed it just before"
        ))
        .hint("never create the region's name outside the writer, and remove what your programs create")
    } else {
        return None;
    };
    Some(
        v.expected(format!(
            "the grader's writer holds {name} with a fresh message for your reader"
        ))
        .runs(o.runs()),
    )
}

/// `shm.no_writer`: the reader alone fails at once, on stderr, non-zero.
pub fn no_writer(session: &mut Session, check: &CheckConfig) -> Result<Verdict, GraderError> {
    let o = experiments::no_writer(session, check.timeout())?;
    let run = &o.run;
    let name = session.rubric.reader_name().to_string();
    let within = humantime::format_duration(check.timeout());
    let expected =
        format!("a non-zero exit within {within}, an error on stderr, and no region {name} left");
    let runs = vec![run.record.clone()];
    let fail = |message: String, hint: String| {
        Ok(Verdict::fail(message)
            .expected(expected.clone())
            .observed(ending_summary(run))
            .hint(hint)
            .runs(runs.clone()))
    };
    if o.created.is_some() {
        // Whatever else happened, this is the mistake to name first.
        return fail(
            format!("with no writer, the reader created {name}, which it must only open"),
            "open it without O_CREAT (O_RDONLY): a reader must never create the region".into(),
        );
    }
    match run.ending {
        Ending::TimedOut => {
            return fail(
                format!("with no writer, the reader was still running after {within}"),
                format!(
                    "when {} fails (ENOENT), report it and exit at once; do not wait or retry",
                    calls_of(session).open
                ),
            );
        }
        Ending::Signalled(_) => {
            return fail(
                format!("with no writer, the reader was {}", run.ending.describe()),
                ending_hint(run, "the reader").unwrap_or_else(|| {
                    format!("check {}'s result before using it", calls_of(session).open)
                }),
            );
        }
        Ending::Exited(0) if check.expect_exit() == ExpectExit::Nonzero => {
            return fail(
                "with no writer, the reader exited 0".into(),
                "report the error on stderr and exit non-zero (the lab's sample prints it and returns 0)".into(),
            );
        }
        _ => {}
    }
    if check.expect_stderr() && run.stderr.total == 0 {
        let hint = if run.stdout.total > 0 {
            "the error went to stdout; print it on stderr (perror or fprintf(stderr, ...))"
        } else {
            "say what went wrong on stderr (perror)"
        };
        return fail(
            "the reader failed silently: nothing on stderr".into(),
            hint.into(),
        );
    }
    Ok(Verdict::pass(format!("{} with an error on stderr", run.ending.describe())).runs(runs))
}

/// `shm.cleanup`: after release, the name is gone and nothing is left.
pub fn cleanup(session: &mut Session) -> Result<Verdict, GraderError> {
    let o = learner_pair(session)?;
    let runs = o.runs();
    let expected = format!(
        "no region {} and no learner process once the writer has exited",
        o.writer_name
    );
    if let Some(left) = &o.left_region {
        return Ok(Verdict::fail(format!(
            "{} was still there after the writer exited",
            o.writer_name
        ))
        .expected(expected)
        .observed(format!(
            "{} of {} bytes left behind",
            o.writer_name, left.size
        ))
        .hint(format!(
            "remove the name with {} before exiting",
            calls_of(session).remove
        ))
        .runs(runs));
    }
    let left = o.left_behind();
    if left > 0 {
        return Ok(Verdict::fail(format!("{left} process(es) were left running"))
            .expected(expected)
            .observed(format!("{left} process(es) of the pair still alive after it ended (killed by the grader)"))
            .hint("wait for the processes you start, and do not leave any running")
            .runs(runs));
    }
    Ok(Verdict::pass(format!("{} removed, no process left", o.writer_name)).runs(runs))
}

/// `shm.repeat`: N handoffs in a row, with seeded jitter.
pub fn repeat(session: &mut Session, check: &CheckConfig) -> Result<Verdict, GraderError> {
    let runs_wanted = check.runs();
    let mut p = plan(session, Who::Learner, Some(Who::Learner));
    p.jitter = check.jitter();
    p.hold = false;
    let mut ok = 0;
    let mut first_failure: Option<(u32, Verdict)> = None;
    // All the handoffs together have the check's budget: slow handoffs are
    // the learner's, and cannot push the grading past its deadline.
    let budget = check.timeout();
    let started = std::time::Instant::now();
    let mut out_of_time = false;
    for i in 1..=runs_wanted {
        if started.elapsed() >= budget {
            out_of_time = true;
            break;
        }
        let o = experiments::run_pair(session, p.clone())?;
        match handoff_problem(session, &o) {
            None => ok += 1,
            Some(problem) => {
                let timed_out = matches!(o.readiness, Readiness::TimedOut { .. })
                    || o.writer.ending == Ending::TimedOut
                    || o.reader
                        .as_ref()
                        .is_some_and(|r| r.ending == Ending::TimedOut);
                if first_failure.is_none() {
                    first_failure = Some((i, problem));
                }
                if timed_out {
                    break;
                }
            }
        }
    }
    let fraction = if check.partial() {
        ok as f64 / runs_wanted as f64
    } else if ok == runs_wanted {
        1.0
    } else {
        0.0
    };
    match first_failure {
        None if out_of_time => {
            let mut v = Verdict::fail(format!(
                "{ok}/{runs_wanted} handoffs succeeded; the rest did not fit in the check's {}",
                humantime::format_duration(budget)
            ))
            .expected(format!(
                "{runs_wanted} handoffs within {}, each as in shm.handoff",
                humantime::format_duration(budget)
            ))
            .observed(format!(
                "{ok} handoffs took {} s in all",
                started.elapsed().as_secs()
            ))
            .hint(
                "a handoff takes milliseconds: get ready, and exit once released, without sleeping",
            );
            v.fraction = fraction;
            Ok(v)
        }
        None => Ok(Verdict::pass(format!(
            "{ok}/{runs_wanted} handoffs succeeded"
        ))),
        Some((i, problem)) => {
            let mut v = Verdict::fail(format!(
                "{ok}/{runs_wanted} handoffs succeeded; run {i} failed: {}",
                problem.message
            ))
            .expected(format!(
                "{runs_wanted} handoffs in a row, each as in shm.handoff"
            ))
            .observed(problem.observed.unwrap_or_default())
            .maybe_hint(problem.hint)
            .runs(problem.runs);
            v.fraction = fraction;
            Ok(v)
        }
    }
}

/// `shm.uses_mmap`: both programs opened the region as shared memory and
/// mapped it MAP_SHARED; the reader took the message from the mapping.
pub fn uses_mmap(session: &mut Session) -> Result<Verdict, GraderError> {
    if let Some(why) = session.tracer.unavailable_reason() {
        return Ok(Verdict::unavailable(format!(
            "system calls cannot be watched here ({why})"
        )));
    }
    let o = learner_pair(session)?;
    let runs = o.runs();
    let (Some(wt), Some(rt)) = (&o.writer_trace, &o.reader_trace) else {
        return Ok(Verdict::error("the traces of the pair could not be read").runs(runs));
    };
    // Reads and writes as the watch saw them in every run of the pair's
    // programs so far (this one, the interop pairs, the repeats...), by the
    // region's inode: a read under another name is still a read of it, and
    // a program that behaves only while traced is caught where it is not.
    if session.evidence.iter().any(|e| e.io.is_none()) {
        return Ok(Verdict::unavailable(
            "reads and writes cannot be watched here (the kernel's seccomp notifications are missing)",
        )
        .runs(runs));
    }
    let mut wrote: Vec<String> = Vec::new();
    let mut read = 0;
    for e in &session.evidence {
        let (Some(io), Some(region)) = (&e.io, e.region) else {
            continue;
        };
        match e.role {
            "writer" => {
                for call in watch::data_writes(io, region) {
                    if !wrote.contains(&call) {
                        wrote.push(call);
                    }
                }
            }
            _ => read += watch::bytes_read(io, region),
        }
    }
    let mechanism = session.regions().mechanism;
    let region_of = |p: &str| mechanism.traced_region(p);
    let is_w = |p: &str| region_of(p).as_ref() == Some(&o.writer_name);
    let is_r = |p: &str| region_of(p).as_ref() == Some(&o.reader_name);
    let wmaps = wt.mmaps(&is_w);
    let rmaps = rt.mmaps(&is_r);
    let reader_creates = rt
        .opens(&is_r)
        .iter()
        .any(|(flags, _)| flags.contains("O_CREAT"));
    let observed = format!(
        "writer: opened {} {} time(s), mmap {}; reader: opened {} {} time(s), mmap {}, {read} bytes read with read()",
        o.writer_name,
        wt.opens(&is_w).len(),
        describe_maps(&wmaps),
        o.reader_name,
        rt.opens(&is_r).len(),
        describe_maps(&rmaps)
    );
    let open = calls_of(session).open;
    let expected = format!(
        "writer: {open}, then mmap MAP_SHARED and PROT_WRITE, message stored in the mapping; reader: {open} without O_CREAT, mmap MAP_SHARED, message read from the mapping"
    );
    let fail = |message: &str, hint: &str| {
        Ok(Verdict::fail(message)
            .expected(expected.clone())
            .observed(observed.clone())
            .hint(hint)
            .runs(runs.clone()))
    };
    for (who, trace) in [("writer", wt), ("reader", rt)] {
        if trace.probed_tracing() {
            return fail(
                &format!(
                    "the {who} checked whether it was being traced (ptrace): what it does when watched cannot be trusted as evidence"
                ),
                "do not call ptrace; do the same thing whether or not anyone watches",
            );
        }
    }
    if wt.opens(&is_w).is_empty() {
        return fail(
            "the writer never opened the region as shared memory",
            &format!("create it with {open}; a plain file or a pipe is not shared memory"),
        );
    }
    if !wmaps.iter().any(|m| m.shared && m.writable) {
        return fail(
            "the writer did not map the region shared and writable",
            "map it with PROT_READ | PROT_WRITE and MAP_SHARED",
        );
    }
    if !wrote.is_empty() {
        return fail(
            &format!(
                "the writer stored the message with {}, not through the mapping",
                calls(&wrote)
            ),
            "copy the message into the mapped memory",
        );
    }
    let named = |p: &str| is_w(p) || is_r(p);
    for (who, trace) in [("writer", wt), ("reader", rt)] {
        if let Some((call, new)) = trace.new_names(&named).first() {
            return fail(
                &format!("the {who} gave the region a second name ({call} to {new})"),
                "map the region itself; do not read or write it under another name",
            );
        }
    }
    if rt.opens(&is_r).is_empty() {
        return fail(
            "the reader never opened the region as shared memory",
            &format!("open it with {}", calls_of(session).open_read_only),
        );
    }
    if reader_creates {
        return fail(
            "the reader opened the region with O_CREAT",
            "open it without O_CREAT: a reader must never create the region",
        );
    }
    if !rmaps.iter().any(|m| m.shared) {
        return fail(
            "the reader did not map the region MAP_SHARED",
            "map it with PROT_READ and MAP_SHARED",
        );
    }
    if read > 0 {
        return fail(
            "the reader took the message with read(), not from the mapping",
            "print from the mapped memory instead of read()",
        );
    }
    Ok(Verdict::pass(format!(
        "writer mmap {}; reader mmap {}",
        describe_maps(&wmaps),
        describe_maps(&rmaps)
    ))
    .runs(runs))
}

/// `shm.large`: a large region handed over without its size in memory.
pub fn large(session: &mut Session, check: &CheckConfig) -> Result<Verdict, GraderError> {
    let mut p = plan(session, Who::Learner, Some(Who::Learner));
    p.size = check.size();
    p.measure = true;
    p.hold = false;
    // A machine whose region file system is smaller than the region from
    // the start cannot run this check: the grader's limitation.
    if let Ok((total, _)) = session.regions().capacity()
        && total < p.size
    {
        return Ok(Verdict::unavailable(format!(
            "this machine's {} holds {} MiB, less than the {} MiB region (give it more room, e.g. docker run --shm-size=1g)",
            place_shown(session),
            total >> 20,
            p.size >> 20
        )));
    }
    let o = experiments::pair(session, &format!("large-{}", p.size), p)?;
    if let Some(v) = handoff_problem(session, &o) {
        return Ok(v);
    }
    let bound_kib = check.max_peak_mib() * 1024;
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let runs = o.runs();
    let writer_kib = o.writer_peak_kib.unwrap_or(0) + o.region_allocated.unwrap_or(0) / 1024;
    let reader_kib = o
        .reader
        .as_ref()
        .and_then(|r| r.record.peak_rss_kib)
        .unwrap_or(0);
    let expected = format!(
        "each program under {} (region {} bytes)",
        mib(bound_kib),
        o.plan.size
    );
    let observed = format!(
        "writer peak {} + region allocated {}; reader peak {}",
        mib(o.writer_peak_kib.unwrap_or(0)),
        mib(o.region_allocated.unwrap_or(0) / 1024),
        mib(reader_kib)
    );
    if writer_kib > bound_kib {
        return Ok(Verdict::fail(format!("the writer used {} for a {}-byte region", mib(writer_kib), o.plan.size))
            .expected(expected)
            .observed(observed)
            .hint("touch only the pages you write: do not memset or fill the whole region (a new region is already zero)")
            .runs(runs));
    }
    if reader_kib > bound_kib {
        return Ok(
            Verdict::fail(format!("the reader used {}", mib(reader_kib)))
                .expected(expected)
                .observed(observed)
                .hint("print straight from the mapping; do not copy SIZE bytes into a buffer first")
                .runs(runs),
        );
    }
    Ok(Verdict::pass(observed).runs(runs))
}
