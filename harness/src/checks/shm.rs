//! Exercise 2: the writer and the reader, judged from handoffs the grader
//! drives: the learner's pair, each learner program with the reference
//! peer, the reader alone, many handoffs, and a large region.

use super::file::{calls, describe_maps};
use super::{
    Judging, Outcomes, Part, Verdict, bounded, ending_hint, ending_summary, escaped, has_line,
};
use crate::experiments::{
    Early, GraderError, Hold, PairOutcome, PairPlan, Plan, Readiness, Role, WriterFate,
};
use crate::ipc::{Entry, Seen};
use crate::observe::watch;
use crate::rubric::{CheckConfig, ExpectExit, MatchMode, Release, fill};
use crate::runner::Ending;
use crate::session::Who;

const GONE_HINT: &str = "hold the region until the reader is done (wait for a line on stdin, then clean up); on Windows it vanishes with its last handle";

/// Why a writer let go of its region at once, as far as its source tells:
/// a console read (`_getch()`) returns at once with no console.
fn gone_hint(j: &Judging) -> String {
    if j.build
        .reads_console
        .contains(&j.rubric.programs.writer.binary)
    {
        "the writer waits for its release with a console read (_getch()), which returns at once when there is no console (the grader, a pipe, CI): read a line from stdin instead (getchar() or fgets), then clean up".to_string()
    } else {
        GONE_HINT.to_string()
    }
}

fn plan(j: &Judging, writer: Who, reader: Option<Who>) -> PairPlan {
    PairPlan {
        writer,
        reader,
        size: j.rubric.region.size,
        message: j.rubric.region.message.clone(),
        trace: false,
        measure: false,
        jitter: std::time::Duration::ZERO,
        jitter_seed: 0,
        hold: true,
        name: None,
    }
}

/// The learner's writer and reader together, traced (the evidence of the
/// pair's mappings comes from this run): shm.handoff, shm.cleanup and
/// shm.uses_mmap judge the same one.
pub fn learner_pair(j: &Judging, _: &CheckConfig, _: &mut fastrand::Rng) -> Vec<Plan> {
    let mut p = plan(j, Who::Learner, Some(Who::Learner));
    p.trace = true;
    vec![Plan::Pair(p)]
}

/// The learner's writer with the reference reader (shm.observed and
/// shm.writer_interop).
/// Under the grading's fresh name, unless the rubric says the writer's
/// name is fixed in its source: a writer that ignores NAME fails here.
pub fn writer_with_reference(j: &Judging, _: &CheckConfig, _: &mut fastrand::Rng) -> Vec<Plan> {
    let mut p = plan(j, Who::Learner, Some(Who::Reference));
    if j.rubric.programs.writer.name.is_none() {
        p.name = Some(j.fresh_name.to_string());
    }
    vec![Plan::Pair(p)]
}

/// The reference writer, with a fresh random message, and the learner's
/// reader (shm.reader_interop).
pub fn reference_writer(j: &Judging, _: &CheckConfig, rng: &mut fastrand::Rng) -> Vec<Plan> {
    let mut p = plan(j, Who::Reference, Some(Who::Learner));
    p.message = random_message(j, rng);
    p.hold = false;
    // Under the grading's fresh name too, unless the reader's is fixed: a
    // reader that ignores NAME fails here.
    if j.rubric.programs.reader.name.is_none() {
        p.name = Some(j.fresh_name.to_string());
    }
    vec![Plan::Pair(p)]
}

/// The learner's reader alone, for the check's time.
pub fn reader_alone(_: &Judging, check: &CheckConfig, _: &mut fastrand::Rng) -> Vec<Plan> {
    vec![Plan::NoWriter {
        timeout: check.reader_alone().timeout,
    }]
}

/// The check's number of handoffs, with seeded jitter, within its budget.
pub fn repeated(j: &Judging, check: &CheckConfig, rng: &mut fastrand::Rng) -> Vec<Plan> {
    let mut p = plan(j, Who::Learner, Some(Who::Learner));
    let params = check.repeat();
    p.jitter = params.jitter;
    p.jitter_seed = rng.u64(..);
    p.hold = false;
    vec![Plan::Repeat {
        pair: p,
        rounds: params.runs,
        budget: params.budget,
    }]
}

/// shm.uses_mmap's pair: nothing to run where calls cannot be traced.
pub fn traced_pair(j: &Judging, check: &CheckConfig, rng: &mut fastrand::Rng) -> Vec<Plan> {
    match j.untraceable {
        Some(_) => Vec::new(),
        None => learner_pair(j, check, rng),
    }
}

/// A large region, the writer's memory measured while it holds it: nothing
/// to run where the region's file system is smaller than the region.
pub fn large_pair(j: &Judging, check: &CheckConfig, _: &mut fastrand::Rng) -> Vec<Plan> {
    let size = check.large().size;
    if j.region_capacity.is_some_and(|total| total < size) {
        return Vec::new();
    }
    let mut p = plan(j, Who::Learner, Some(Who::Learner));
    p.size = size;
    p.measure = true;
    p.hold = false;
    vec![Plan::Pair(p)]
}

/// A fresh message for the reference writer: random, and never the length
/// of the rubric's, so a reader printing a fixed string fails.
fn random_message(j: &Judging, rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
    let forbidden = j.rubric.region.message.len();
    let max = (j.rubric.region.size.saturating_sub(1) as usize).min(30);
    let lengths: Vec<usize> = (max.min(21)..=max).filter(|&l| l != forbidden).collect();
    let len = if lengths.is_empty() {
        max
    } else {
        lengths[rng.usize(..lengths.len())]
    };
    let mut message = String::from("Grader message ");
    while message.len() < len {
        message.push(ALPHABET[rng.usize(..ALPHABET.len())] as char);
    }
    message.truncate(len);
    message
}

fn expected_line(j: &Judging, message: &str) -> String {
    let r = &j.rubric.region;
    fill(&r.line, "", r.size, message)
}

/// What is wrong with a region the grader saw (or did not see).
fn region_problem(j: &Judging, o: &PairOutcome, seen: Option<&Seen>, timed_out: bool) -> Verdict {
    let name = &o.writer_name;
    let size = o.plan.size;
    let message = &o.plan.message;
    let expected = format!(
        "region {name}: {size} bytes, starting {} and a NUL",
        escaped(message.as_bytes())
    );
    let within = humantime::format_duration(j.rubric.programs.writer.ready_timeout);
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
                    calls_of(j).create
                )
            } else if o.plan.name.is_some()
                && others.iter().any(|n| **n == j.rubric.region.name)
            {
                format!(
                    "the writer ignored its NAME argument: it was given {name} and made {} instead; create the region NAME names",
                    j.rubric.region.name
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
            .hint(format!("create it with {}", calls_of(j).open)),
        Some(s) if !s.has_size(size) => {
            // The trace may say why the size never took: sizing a region
            // opened read-only fails with EINVAL.
            let mechanism = j.mechanism;
            let is_region = |p: &str| mechanism.traced_is(p, name);
            let refused = o
                .writer_trace
                .as_ref()
                .and_then(|t| t.failed_on(&["ftruncate"], 0, &is_region));
            let hint = if let Some(errno) = refused {
                format!(
                    "{} failed with {errno}: a region opened read-only (O_RDONLY) cannot be sized; open it with O_RDWR",
                    calls_of(j).sized(size)
                )
            } else if s.size == 0 {
                format!(
                    "the region is empty: size it with {} before mapping it",
                    calls_of(j).sized(size)
                )
            } else {
                format!(
                    "size it with {}, SIZE being {size} here (the writer's second argument)",
                    calls_of(j).sized("SIZE")
                )
            };
            Verdict::fail(format!("region {name} is {} bytes, not {size}", s.size))
                .observed(format!("{} bytes, starting {}", s.size, escaped(&s.head)))
                .hint(hint)
        }
        Some(s) if wide_text(&s.head, message) => {
            Verdict::fail(format!("region {name} holds the message as UTF-16"))
                .observed(format!("{} bytes, starting {}", s.size, escaped(&s.head)))
                .hint(
                    "the message was written as wide characters (two bytes each, as wcscpy or _tcscpy with UNICODE write it): copy it as bytes, with strcpy or memcpy of a char string",
                )
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

/// Whether `head` starts with `message` in UTF-16LE (each character a byte
/// and a NUL), as far as it goes and for at least four characters.
fn wide_text(head: &[u8], message: &str) -> bool {
    let pairs = head.len().min(2 * message.len()) / 2;
    pairs >= 4
        && head
            .chunks_exact(2)
            .zip(message.bytes())
            .take(pairs)
            .all(|(pair, b)| pair == [b, 0])
}

/// A region that got ready holding the message, but not of the size asked:
/// judged by the checks of the region itself (shm.observed, shm.large),
/// not by every pair, whose reader may still read it.
fn size_problem(j: &Judging, o: &PairOutcome) -> Option<Verdict> {
    match &o.readiness {
        Readiness::Ready { seen: Some(s), .. } if !s.has_size(o.plan.size) => {
            Some(region_problem(j, o, Some(s), false))
        }
        _ => None,
    }
}

/// The writer did not get its region ready, with the message: why.
fn readiness_problem(j: &Judging, o: &PairOutcome) -> Option<Verdict> {
    match &o.readiness {
        Readiness::Ready { seen, .. } => match seen {
            Some(s) if s.holds(&o.plan.message) => None,
            other => Some(region_problem(j, o, other.as_ref(), false)),
        },
        Readiness::TimedOut { last } | Readiness::Settled { last } => {
            Some(region_problem(j, o, last.as_ref(), true))
        }
        Readiness::WriterEnded => {
            let w = &o.writer;
            let wrote = o
                .left_region
                .as_ref()
                .is_some_and(|s| s.holds(&o.plan.message));
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
                        "exit 0 without being released, leaving {} behind",
                        o.writer_name
                    ))
                    .hint(gone_hint(j))
                    .runs(o.runs()),
                );
            }
            let mut hint = ending_hint(w, Part::Writer);
            if hint.is_none() && w.ending == Ending::Exited(0) {
                hint = Some(gone_hint(j));
            }
            let mut observed = format!("the writer ended first: {}", ending_summary(w));
            if let Some(litter) = shm_litter(j, o, false) {
                observed.push_str(&format!("; {} was full: {litter}", place_shown(j)));
                hint = Some(litter_hint(j));
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
fn reader_problem(j: &Judging, o: &PairOutcome, message: &str, whose: &str) -> Option<Verdict> {
    let reader = o.reader.as_ref()?;
    // The reference reader prints its own line, whatever line the rubric
    // asks of the learner's: it is judged by the message it read.
    let (line, mode) = match o.plan.reader {
        Some(Who::Reference) => (
            format!("{}{message}", mmap_lab::contract::SHM_LINE_PREFIX),
            MatchMode::Line,
        ),
        _ => (expected_line(j, message), j.rubric.output.mode),
    };
    let stdout = reader.stdout.text();
    if reader.ending.success() && has_line(&stdout, &line, mode, message) {
        return None;
    }
    let v = if !reader.ending.success() {
        let mut hint = ending_hint(reader, Part::Reader);
        if hint.is_none()
            && let Some(trace) = &o.reader_trace
        {
            let mechanism = j.mechanism;
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
        // A fixed name shows as the rubric's name, or as "no such file",
        // in what the reader said.
        let said = format!("{}{}", reader.stdout.text(), reader.stderr.text());
        let looked_elsewhere =
            said.contains(&j.rubric.region.name) || said.contains("No such file");
        if hint.is_none()
            && o.plan.reader == Some(Who::Learner)
            && looked_elsewhere
            && let Some(given) = &o.plan.name
        {
            hint = Some(format!(
                "it was given NAME {given}, not {}: a reader that opens a fixed name fails here; open the region its NAME argument names",
                j.rubric.region.name
            ));
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
        let default = &j.rubric.region.message;
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
fn release_problem(j: &Judging, o: &PairOutcome) -> Option<Verdict> {
    let wcfg = &j.rubric.programs.writer;
    let w = &o.writer;
    if let Some(v) = left_on_its_own(j, o) {
        return Some(v);
    }
    if let Some(early) = o.fate.early() {
        let when = match early {
            Early::BeforeReady => "before its region was ready",
            Early::BeforeReader => "after its region was ready, before the reader started",
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
            .maybe_hint(ending_hint(w, Part::Writer).or(Some(match (early, o.hold) {
                (Early::DuringHold, Hold::FullForTimer) => "it armed a timer (alarm, setitimer, timer_settime) that ended it before its release: wait for the line on stdin with no timer pending, then clean up".to_string(),
                _ => gone_hint(j),
            })))
            .runs(o.runs()),
        );
    }
    if o.fate.exit_after_release().is_none() {
        let remove = calls_of(j).remove;
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
                ending_hint(w, Part::Writer).or(Some("clean up and return 0 once released".into())),
            )
            .runs(o.runs()),
        );
    }
    None
}

/// A writer that ended by itself without ever reading its stdin did not
/// wait for its release (it slept, say), whether it happened to end just
/// before the release or just after: one verdict, whatever the timing.
fn left_on_its_own(j: &Judging, o: &PairOutcome) -> Option<Verdict> {
    let stdin_release = matches!(
        j.rubric.programs.writer.release,
        Release::StdinLine | Release::StdinEof
    );
    let ended_itself = matches!(
        o.fate,
        WriterFate::Left(
            Early::BeforeReader | Early::BeforeReaderDone | Early::DuringHold | Early::AtRelease
        ) | WriterFate::Exited { .. }
    );
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
            .hint(gone_hint(j))
            .runs(o.runs()),
    )
}

/// Everything a full learner handoff must get right, first problem first.
/// A writer gone while its reader still ran is the cause of whatever the
/// reader then did: named first, whichever way the race went.
fn handoff_problem(j: &Judging, o: &PairOutcome) -> Option<Verdict> {
    pair_problem(j, o, || reader_problem(j, o, &o.plan.message, "the"))
}

/// The writer's readiness, then the reader's part (`reader`), then the
/// writer's release; except that a writer gone while its reader still ran
/// is the cause of whatever the reader then did, and is named first,
/// whichever way the race went.
fn pair_problem(
    j: &Judging,
    o: &PairOutcome,
    reader: impl FnOnce() -> Option<Verdict>,
) -> Option<Verdict> {
    let writer_left_first = matches!(
        o.fate,
        WriterFate::Left(Early::BeforeReader | Early::BeforeReaderDone)
    );
    readiness_problem(j, o)
        .or_else(|| writer_left_first.then(|| release_problem(j, o)).flatten())
        .or_else(reader)
        .or_else(|| release_problem(j, o))
}

/// `shm.observed`: the learner's writer holds the region the rubric says.
pub fn observed(j: &Judging, _: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    let o = got.pair(0)?;
    if let Some(v) = readiness_problem(j, o).or_else(|| size_problem(j, o)) {
        return Ok(v);
    }
    // Holding means staying: a region seen for an instant does not count.
    if o.fate.early().is_some()
        && let Some(v) = release_problem(j, o)
    {
        return Ok(v);
    }
    Ok(Verdict::pass(format!(
        "{} held {}: {} bytes with the message, until released",
        o.writer.record.argv[0], o.writer_name, o.plan.size
    ))
    .runs(o.runs()))
}

/// `shm.handoff`: the learner's pair.
pub fn handoff(j: &Judging, _: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    let o = got.pair(0)?;
    let hold = humantime::format_duration(j.rubric.programs.writer.hold);
    let held = match o.hold {
        Hold::None => "held on".to_string(),
        Hold::Skipped => "waited on its stdin alone (no timer), so was released at once,".into(),
        Hold::Full => {
            format!("was held {hold} after the reader (it was not only waiting on its stdin)")
        }
        Hold::FullForTimer => format!("was held {hold} after the reader (it armed a timer)"),
        Hold::FullUnwatched => format!(
            "was held {hold} after the reader (its timers cannot be watched on this machine)"
        ),
    };
    Ok(handoff_problem(j, o).unwrap_or_else(|| {
        Verdict::pass(format!(
            "the reader printed the message; the writer {held} and exited 0 once released"
        ))
        .runs(o.runs())
    }))
}

/// `shm.writer_interop`: the learner's writer, the reference reader.
pub fn writer_interop(
    j: &Judging,
    _: &CheckConfig,
    got: &Outcomes,
) -> Result<Verdict, GraderError> {
    let o = got.pair(0)?;
    Ok(pair_problem(j, o, || {
        reader_problem(j, o, &o.plan.message, "the reference").map(|v| {
            v.hint("the reference reader could not read the region: create it with the given name and size, and the message at offset 0")
        })
    })
    .unwrap_or_else(|| {
        Verdict::pass("the reference reader read the message from the writer's region")
            .runs(o.runs())
    }))
}

/// `shm.reader_interop`: the reference writer with a fresh random message.
pub fn reader_interop(
    j: &Judging,
    _: &CheckConfig,
    got: &Outcomes,
) -> Result<Verdict, GraderError> {
    let o = got.pair(0)?;
    if !matches!(o.readiness, Readiness::Ready { .. }) {
        // The grader's own writer failed: the learner's doing if learner
        // code took its name or filled its file system; else the grader's.
        return Ok(reference_writer_undone_by_learner(j, o).unwrap_or_else(|| {
            Verdict::error(format!(
                "the reference writer did not get ready: {}",
                ending_summary(&o.writer)
            ))
            .runs(o.runs())
        }));
    }
    let message = o.plan.message.clone();
    Ok(reader_problem(j, o, &message, "the").unwrap_or_else(|| {
        Verdict::pass(format!(
            "printed the reference writer's message {message:?}"
        ))
        .runs(o.runs())
    }))
}

/// What learner files filled the region place when a writer could not write its
/// region, if any did: too little room was left, or (`sigbus_says_full`,
/// for the grader's own writer, which sizes its region) it died of SIGBUS.
fn shm_litter(j: &Judging, o: &PairOutcome, sigbus_says_full: bool) -> Option<String> {
    let theirs = |e: &Entry| j.learners(e);
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

fn litter_hint(j: &Judging) -> String {
    format!(
        "remove what your programs create in {}, and do not fill it",
        place_shown(j)
    )
}

/// Where the learner's programs see this grading's regions, for messages.
fn place_shown(j: &Judging) -> String {
    j.mechanism.system_dir().display().to_string()
}

/// The calls the learner's mechanism names in hints.
fn calls_of(j: &Judging) -> &'static crate::ipc::Calls {
    j.mechanism.calls()
}

/// Why the reference writer could not make its region, when learner code
/// is the cause: a name the grader had just made absent exists again (and
/// is the learner's, or no region at all), or the file system the regions
/// live in is full of the learner's files.
fn reference_writer_undone_by_learner(j: &Judging, o: &PairOutcome) -> Option<Verdict> {
    let theirs = |e: &Entry| j.learners(e);
    let name = &o.writer_name;
    let v = if let Some(litter) = shm_litter(j, o, true) {
        Verdict::fail(format!(
            "the grader's writer could not write region {name}: {} was full of files your programs left",
            place_shown(j)
        ))
        .observed(format!(
            "{litter}; the grader's writer {}",
            o.writer.ending.describe()
        ))
        .hint(litter_hint(j))
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
pub fn no_writer(j: &Judging, check: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    let o = got.no_writer(0)?;
    let run = &o.run;
    let name = j.rubric.reader_name().to_string();
    let params = check.reader_alone();
    let within = humantime::format_duration(params.timeout);
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
            format!(
                "open it without {} (O_RDONLY): a reader must never create the region",
                calls_of(j).create_flag
            ),
        );
    }
    match run.ending {
        Ending::TimedOut => {
            return fail(
                format!("with no writer, the reader was still running after {within}"),
                format!(
                    "when {} fails (ENOENT), report it and exit at once; do not wait or retry",
                    calls_of(j).open
                ),
            );
        }
        _ if run.crash.is_some() => {
            return fail(
                format!("with no writer, the reader {}", ending_summary(run)),
                ending_hint(run, Part::Reader).unwrap_or_default(),
            );
        }
        Ending::Signalled(_) => {
            return fail(
                format!("with no writer, the reader was {}", run.ending.describe()),
                ending_hint(run, Part::Reader).unwrap_or_else(|| {
                    format!("check {}'s result before using it", calls_of(j).open)
                }),
            );
        }
        Ending::Exited(0) if params.expect_exit == ExpectExit::Nonzero => {
            return fail(
                "with no writer, the reader exited 0".into(),
                "report the error on stderr and exit non-zero (the lab's sample prints it and returns 0)".into(),
            );
        }
        _ => {}
    }
    if params.expect_stderr && run.stderr.total == 0 {
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
pub fn cleanup(j: &Judging, _: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    let o = got.pair(0)?;
    let runs = o.runs();
    let expected = format!(
        "no region {} and no learner process once the writer has exited",
        o.writer_name
    );
    // Nothing to clean up is not clean: the region must have existed
    // while the writer ran.
    if !matches!(
        &o.readiness,
        Readiness::Ready {
            seen: Some(Seen { regular: true, .. }),
            ..
        }
    ) {
        return Ok(Verdict::fail(format!(
            "there was no region {} to clean up: the writer never made it",
            o.writer_name
        ))
        .expected(expected)
        .observed(format!("no region {} while the writer ran", o.writer_name))
        .hint(format!(
            "create the region with {} first; cleaning up means removing what was made",
            calls_of(j).create
        ))
        .runs(runs));
    }
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
            calls_of(j).remove
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
pub fn repeat(j: &Judging, check: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    let r = got.repeat(0)?;
    let runs_wanted = r.wanted;
    let mut ok = 0;
    let mut first_failure: Option<(u32, Verdict)> = None;
    for (i, o) in r.rounds.iter().enumerate() {
        match handoff_problem(j, o) {
            None => ok += 1,
            Some(problem) => {
                if first_failure.is_none() {
                    first_failure = Some((i as u32 + 1, problem));
                }
            }
        }
    }
    let fraction = if check.repeat().partial {
        ok as f64 / runs_wanted as f64
    } else if ok == runs_wanted {
        1.0
    } else {
        0.0
    };
    match first_failure {
        None if r.out_of_time => {
            let mut v = Verdict::fail(format!(
                "{ok}/{runs_wanted} handoffs succeeded; the rest did not fit in the check's {}",
                humantime::format_duration(r.budget)
            ))
            .expected(format!(
                "{runs_wanted} handoffs within {}, each as in shm.handoff",
                humantime::format_duration(r.budget)
            ))
            .observed(format!("{ok} handoffs fitted in it"))
            .hint(
                "a handoff takes milliseconds: get ready, and exit once released, without sleeping",
            );
            v.fraction = fraction;
            Ok(v)
        }
        None if ok == runs_wanted => Ok(Verdict::pass(format!(
            "{ok}/{runs_wanted} handoffs succeeded"
        ))),
        None => {
            // The rounds stopped at one that ran into a deadline.
            let mut v = Verdict::fail(format!(
                "{ok}/{runs_wanted} handoffs succeeded; run {} ran into its deadline",
                ok + 1
            ))
            .expected(format!(
                "{runs_wanted} handoffs in a row, each as in shm.handoff"
            ))
            .hint(
                "a handoff takes milliseconds: get ready, and exit once released, without sleeping",
            );
            v.fraction = fraction;
            Ok(v)
        }
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
pub fn uses_mmap(j: &Judging, _: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    if let Some(why) = j.untraceable.as_deref() {
        return Ok(Verdict::unavailable(format!(
            "system calls cannot be watched here ({why})"
        )));
    }
    let o = got.pair(0)?;
    let runs = o.runs();
    let (Some(wt), Some(rt)) = (&o.writer_trace, &o.reader_trace) else {
        return Ok(Verdict::error("the traces of the pair could not be read").runs(runs));
    };
    // Reads and writes as the watch saw them in every run of the pair's
    // programs so far (this one, the interop pairs, the repeats...), by the
    // region's inode: a read under another name is still a read of it, and
    // a program that behaves only while traced is caught where it is not.
    // This pair ran to its end (shm.handoff passed): without a record of
    // its reads and writes, the watch does not work here. (A run the
    // grader had to kill may leave none; it is simply not evidence.)
    let watched = o.writer.io.is_some() && o.reader.as_ref().is_some_and(|r| r.io.is_some());
    if !watched {
        return Ok(Verdict::unavailable(
            "reads and writes cannot be watched here (the kernel's seccomp notifications are missing)",
        )
        .runs(runs));
    }
    let mut wrote: Vec<String> = Vec::new();
    let mut read = 0;
    for e in j.evidence {
        let (Some(io), Some(region)) = (&e.io, e.region) else {
            continue;
        };
        match e.role {
            Role::Writer => {
                for call in watch::data_writes(io, region) {
                    if !wrote.contains(&call) {
                        wrote.push(call);
                    }
                }
            }
            _ => read += watch::bytes_read(io, region),
        }
    }
    let mechanism = j.mechanism;
    let is_w = |p: &str| mechanism.traced_is(p, &o.writer_name);
    let is_r = |p: &str| mechanism.traced_is(p, &o.reader_name);
    let wmaps = wt.mmaps(&is_w);
    let rmaps = rt.mmaps(&is_r);
    let reader_creates = rt
        .opens(&is_r)
        .iter()
        .any(|(flags, _)| mechanism.creates(flags));
    let observed = format!(
        "writer: opened {} {} time(s), mmap {}; reader: opened {} {} time(s), mmap {}, {read} bytes read with read()",
        o.writer_name,
        wt.opens(&is_w).len(),
        describe_maps(&wmaps),
        o.reader_name,
        rt.opens(&is_r).len(),
        describe_maps(&rmaps)
    );
    let open = calls_of(j).open;
    let expected = format!(
        "writer: {open}, then mmap MAP_SHARED and PROT_WRITE, message stored in the mapping; reader: {open} without {}, mmap MAP_SHARED, message read from the mapping",
        calls_of(j).create_flag
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
    if mechanism.opened_by_path() && wt.opens(&is_w).is_empty() {
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
    if mechanism.opened_by_path() && rt.opens(&is_r).is_empty() {
        return fail(
            "the reader never opened the region as shared memory",
            &format!("open it with {}", calls_of(j).open_read_only),
        );
    }
    if reader_creates {
        return fail(
            &format!(
                "the reader opened the region with {}",
                calls_of(j).create_flag
            ),
            &format!(
                "open it without {}: a reader must never create the region",
                calls_of(j).create_flag
            ),
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
pub fn large(j: &Judging, check: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    // A machine whose region file system is smaller than the region from
    // the start cannot run this check: the grader's limitation.
    let size = check.large().size;
    if let Some(total) = j.region_capacity
        && total < size
    {
        return Ok(Verdict::unavailable(format!(
            "this machine's {} holds {} MiB, less than the {} MiB region (give it more room, e.g. docker run --shm-size=1g)",
            place_shown(j),
            total >> 20,
            size >> 20
        )));
    }
    let o = got.pair(0)?;
    if let Some(v) = readiness_problem(j, o)
        .or_else(|| size_problem(j, o))
        .or_else(|| handoff_problem(j, o))
    {
        return Ok(v);
    }
    let bound_kib = check.large().max_peak_mib * 1024;
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

#[cfg(test)]
mod tests {
    use super::wide_text;

    #[test]
    fn utf16_text_is_told_apart_from_bytes() {
        let wide: Vec<u8> = "Shared Memory Data!"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(wide_text(&wide[..20], "Shared Memory Data!"));
        assert!(wide_text(&wide, "Shared Memory Data!"));
        assert!(!wide_text(b"Shared Memory Data!\0", "Shared Memory Data!"));
        assert!(
            !wide_text(b"S\0h\0", "Shared Memory Data!"),
            "too little to tell"
        );
        assert!(!wide_text(&wide[..20], "Grader message"));
    }
}
