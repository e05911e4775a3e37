//! Every check judged on made-up outcomes, without a process: at least one
//! pass and one failure each, and the hint the failure chose.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::build::{BuildResult, Program};
use crate::experiments::{
    Early, FileSeen, MapfileOutcome, NoWriterOutcome, Outcome, PairOutcome, PairPlan, Readiness,
    RepeatOutcome, Role, RunEvidence, WriterFate,
};
use crate::ipc::{PosixShm, Seen};
use crate::observe::trace::Trace;
use crate::runner::{Captured, ExitRecord, Finished, RunRecord, StreamRecord};
use crate::session::Who;

const FILE_LINE: &str = "Data from memory-mapped file: Hello, Memory-Mapped File!\n";

fn rubric() -> Rubric {
    Rubric::default_rubric()
}

fn built(rubric: &Rubric) -> BuildResult {
    let p = &rubric.programs;
    BuildResult {
        method: "make".into(),
        runs: Vec::new(),
        programs: [&p.mapfile.binary, &p.writer.binary, &p.reader.binary]
            .into_iter()
            .map(|n| (n.clone(), Program::Built(PathBuf::from(n))))
            .collect::<BTreeMap<_, _>>(),
        target: &crate::target::Native,
        unsupported: None,
        reads_console: Default::default(),
        grader_error: None,
    }
}

fn judging<'a>(
    rubric: &'a Rubric,
    build: &'a BuildResult,
    evidence: &'a [RunEvidence],
) -> Judging<'a> {
    Judging {
        rubric,
        build,
        mechanism: &PosixShm,
        learner_uid: None,
        untraceable: None,
        region_capacity: Some(1 << 30),
        evidence,
        fresh_name: "/lab-fresh",
    }
}

fn captured(text: &str) -> Captured {
    Captured {
        head: text.as_bytes().to_vec(),
        total: text.len() as u64,
    }
}

fn finished(ending: Ending, stdout: &str, stderr: &str) -> Finished {
    Finished {
        ending,
        not_started: None,
        io: Some(Vec::new()),
        stdout: captured(stdout),
        stderr: captured(stderr),
        limits: Vec::new(),
        record: RunRecord {
            role: "program".into(),
            argv: vec!["./program".into()],
            exit: match ending {
                Ending::Exited(code) => ExitRecord::Exited(code),
                Ending::Signalled(sig) => ExitRecord::Signalled(crate::runner::signal_name(sig)),
                Ending::TimedOut => ExitRecord::TimedOut,
                Ending::Stopped => ExitRecord::StoppedByGrader,
            },
            stdout: StreamRecord {
                excerpt: stdout.into(),
                total_bytes: stdout.len() as u64,
            },
            stderr: StreamRecord {
                excerpt: stderr.into(),
                total_bytes: stderr.len() as u64,
            },
            wall_ms: 3,
            peak_rss_kib: Some(1024),
            left_behind: 0,
            limits_hit: Vec::new(),
            crashed: None,
        },
        began: std::time::Instant::now(),
        crash: None,
        ended: std::time::Instant::now(),
    }
}

fn check(rubric: &Rubric, kind: Kind) -> &CheckConfig {
    rubric.checks.iter().find(|c| c.kind() == kind).unwrap()
}

fn judge(kind: Kind, j: &Judging, outcomes: Vec<Outcome>) -> Verdict {
    let cfg = check(j.rubric, kind);
    let got = Outcomes(outcomes.into_iter().map(Rc::new).collect());
    (def(kind).judge)(j, cfg, &got).unwrap_or_else(Verdict::from)
}

fn passes(v: Verdict) {
    assert_eq!(v.status, Status::Passed, "{v:#?}");
}

/// The verdict's hint says `words`.
fn hints(v: &Verdict, words: &str) {
    let hint = v.hint.as_deref().unwrap_or("");
    assert!(
        hint.contains(words),
        "hint {hint:?} lacks {words:?}: {v:#?}"
    );
}

/// A failure whose hint says `words`.
fn fails_hinting(v: &Verdict, words: &str) {
    assert_eq!(v.status, Status::Failed, "{v:#?}");
    hints(v, words);
}

// ------------------------------------------------------------------ file

fn region_bytes(message: &str, size: usize) -> Vec<u8> {
    let mut bytes = message.as_bytes().to_vec();
    bytes.resize(size, 0);
    bytes
}

const MAPFILE_TRACE: &str = r#"7 openat(AT_FDCWD</w>, "datafile.bin", O_RDWR|O_CREAT, 0644) = 3</w/datafile.bin>
7 ftruncate(3</w/datafile.bin>, 1024) = 0
7 mmap(NULL, 1024, PROT_READ|PROT_WRITE, MAP_SHARED, 3</w/datafile.bin>, 0) = 0x7f0000000000
7 mmap(NULL, 1024, PROT_READ, MAP_SHARED, 3</w/datafile.bin>, 0) = 0x7f0000001000
"#;

fn mapfile(run: Finished, file: FileSeen, trace: &str) -> Vec<Outcome> {
    vec![Outcome::Mapfile(MapfileOutcome {
        run,
        file,
        trace: Some(Trace::parse(trace)),
    })]
}

fn good_file() -> FileSeen {
    FileSeen::Present {
        size: 1024,
        bytes: region_bytes("Hello, Memory-Mapped File!", 1024),
        id: (1, 2),
    }
}

#[test]
fn file_runs_passes_on_exit_0_and_names_a_sigbus() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let ok = mapfile(finished(Ending::Exited(0), FILE_LINE, ""), good_file(), "");
    passes(judge(Kind::FileRuns, &j, ok));
    let bus = mapfile(finished(Ending::Signalled(SIGBUS), "", ""), good_file(), "");
    let v = judge(Kind::FileRuns, &j, bus);
    assert_eq!(v.status, Status::Failed);
    assert!(v.message.contains("killed by SIGBUS"), "{}", v.message);
    hints(&v, "ftruncate");
}

#[test]
fn file_output_wants_the_line_and_says_when_only_the_label_is_there() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let ok = mapfile(finished(Ending::Exited(0), FILE_LINE, ""), good_file(), "");
    passes(judge(Kind::FileOutput, &j, ok));
    let label = mapfile(
        finished(Ending::Exited(0), "Data from memory-mapped file: \n", ""),
        good_file(),
        "",
    );
    let v = judge(Kind::FileOutput, &j, label);
    fails_hinting(&v, "label is there");
}

#[test]
fn file_contents_wants_the_size_and_the_message() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let ok = mapfile(finished(Ending::Exited(0), "", ""), good_file(), "");
    passes(judge(Kind::FileContents, &j, ok));
    let empty = FileSeen::Present {
        size: 0,
        bytes: Vec::new(),
        id: (1, 2),
    };
    let v = judge(
        Kind::FileContents,
        &j,
        mapfile(finished(Ending::Exited(0), "", ""), empty, ""),
    );
    fails_hinting(&v, "the file is empty");
    let link = FileSeen::NotAFile {
        what: "a symbolic link (to /etc/shadow)".into(),
    };
    let v = judge(
        Kind::FileContents,
        &j,
        mapfile(finished(Ending::Exited(0), "", ""), link, ""),
    );
    assert!(v.message.contains("symbolic link"), "{}", v.message);
}

#[test]
fn file_uses_mmap_wants_a_shared_writable_mapping_and_no_write() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let ok = mapfile(
        finished(Ending::Exited(0), FILE_LINE, ""),
        good_file(),
        MAPFILE_TRACE,
    );
    passes(judge(Kind::FileUsesMmap, &j, ok));
    let private = MAPFILE_TRACE.replace("MAP_SHARED", "MAP_PRIVATE");
    let v = judge(
        Kind::FileUsesMmap,
        &j,
        mapfile(
            finished(Ending::Exited(0), FILE_LINE, ""),
            good_file(),
            &private,
        ),
    );
    fails_hinting(&v, "use MAP_SHARED");
    let mut written = finished(Ending::Exited(0), FILE_LINE, "");
    written.io = Some(vec![crate::observe::watch::IoEvent {
        call: "write".into(),
        writes: true,
        path: "/w/datafile.bin".into(),
        dev: 1,
        ino: 2,
        calls: 1,
        bytes: 1024,
        data: true,
        nonblocking: false,
    }]);
    let v = judge(
        Kind::FileUsesMmap,
        &j,
        mapfile(written, good_file(), MAPFILE_TRACE),
    );
    assert!(v.message.contains("with write()"), "{}", v.message);
    let untraced = Judging {
        untraceable: Some("strace is not installed".into()),
        ..judging(&r, &b, &[])
    };
    assert!(judge(Kind::FileUsesMmap, &untraced, Vec::new()).fault());
}

// ------------------------------------------------------------------- shm

fn pair_plan(r: &Rubric, writer: Who, reader: Option<Who>) -> PairPlan {
    PairPlan {
        writer,
        reader,
        size: r.region.size,
        message: r.region.message.clone(),
        trace: false,
        measure: false,
        jitter: Duration::ZERO,
        jitter_seed: 0,
        hold: true,
        name: None,
    }
}

fn ready_region(r: &Rubric, message: &str) -> Seen {
    Seen {
        size: r.region.size,
        allocated: 4096,
        head: region_bytes(message, message.len() + 1),
        regular: true,
        id: (5, 6),
        granule: 1,
    }
}

/// A writer that waited on the grader's stdin pipe (inode 9) and exited 0.
fn released_writer() -> Finished {
    let mut w = finished(Ending::Exited(0), "", "");
    w.io = Some(vec![crate::observe::watch::IoEvent {
        call: "read".into(),
        writes: false,
        path: "pipe:[9]".into(),
        dev: 0,
        ino: 9,
        calls: 1,
        bytes: 4096,
        data: false,
        nonblocking: false,
    }]);
    w
}

/// A handoff that went as the lab asks.
fn good_pair(r: &Rubric, writer: Who, reader: Option<Who>) -> PairOutcome {
    let plan = pair_plan(r, writer, reader);
    let line = format!("Data from shared memory: {}\n", plan.message);
    PairOutcome {
        writer_name: r.region.name.clone(),
        reader_name: r.region.name.clone(),
        readiness: Readiness::Ready {
            after: Duration::from_millis(2),
            seen: Some(ready_region(r, &plan.message)),
        },
        writer: released_writer(),
        reader: reader.map(|_| finished(Ending::Exited(0), &line, "")),
        fate: WriterFate::Exited {
            after_release: Duration::from_millis(1),
        },
        hold: crate::experiments::Hold::Skipped,
        left_region: None,
        writer_peak_kib: Some(1500),
        region_allocated: Some(4096),
        writer_trace: None,
        reader_trace: None,
        writer_stdin: Some(9),
        shm_seen: Vec::new(),
        shm_free: None,
        plan,
    }
}

fn pair(o: PairOutcome) -> Vec<Outcome> {
    vec![Outcome::Pair(Box::new(o))]
}

#[test]
fn shm_observed_wants_the_region_and_names_what_appeared_instead() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let ok = good_pair(&r, Who::Learner, Some(Who::Reference));
    passes(judge(Kind::ShmObserved, &j, pair(ok)));
    let mut wrong = good_pair(&r, Who::Learner, Some(Who::Reference));
    wrong.readiness = Readiness::TimedOut { last: None };
    wrong.shm_seen = vec![crate::ipc::Entry {
        name: "/mysharedmemory".into(),
        uid: 0,
        allocated: 4096,
        regular: true,
    }];
    let v = judge(Kind::ShmObserved, &j, pair(wrong));
    assert_eq!(v.status, Status::Failed);
    assert!(
        v.observed
            .as_deref()
            .unwrap_or("")
            .contains("/mysharedmemory"),
        "{v:?}"
    );
    hints(&v, "use the name the writer is given");
}

#[test]
fn shm_handoff_wants_the_line_and_a_writer_that_holds_on() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let ok = good_pair(&r, Who::Learner, Some(Who::Learner));
    passes(judge(Kind::ShmHandoff, &j, pair(ok)));
    let mut gone = good_pair(&r, Who::Learner, Some(Who::Learner));
    gone.fate = WriterFate::Left(Early::BeforeReaderDone);
    let v = judge(Kind::ShmHandoff, &j, pair(gone));
    fails_hinting(&v, "hold the region");
}

#[test]
fn shm_writer_interop_fails_when_the_reference_reader_cannot_read() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let ok = good_pair(&r, Who::Learner, Some(Who::Reference));
    passes(judge(Kind::ShmWriterInterop, &j, pair(ok)));
    let mut bad = good_pair(&r, Who::Learner, Some(Who::Reference));
    bad.reader = Some(finished(Ending::Exited(1), "", "region too small"));
    let v = judge(Kind::ShmWriterInterop, &j, pair(bad));
    fails_hinting(&v, "the reference reader could not read");
}

#[test]
fn shm_reader_interop_catches_a_fixed_string() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let mut ok = good_pair(&r, Who::Reference, Some(Who::Learner));
    ok.plan.message = "Grader message abcdefg".into();
    ok.reader = Some(finished(
        Ending::Exited(0),
        "Data from shared memory: Grader message abcdefg\n",
        "",
    ));
    passes(judge(Kind::ShmReaderInterop, &j, pair(ok)));
    let mut fixed = good_pair(&r, Who::Reference, Some(Who::Learner));
    fixed.plan.message = "Grader message abcdefg".into();
    let v = judge(Kind::ShmReaderInterop, &j, pair(fixed));
    fails_hinting(&v, "not a fixed string");
}

#[test]
fn shm_no_writer_wants_a_quick_clean_failure() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let alone = |run: Finished, created: Option<Seen>| {
        vec![Outcome::NoWriter(NoWriterOutcome { run, created })]
    };
    let ok = alone(
        finished(Ending::Exited(1), "", "shm_open: No such file"),
        None,
    );
    passes(judge(Kind::ShmNoWriter, &j, ok));
    let waits = alone(finished(Ending::TimedOut, "", ""), None);
    let v = judge(Kind::ShmNoWriter, &j, waits);
    fails_hinting(&v, "exit at once");
    let creates = alone(
        finished(Ending::Exited(1), "", "x"),
        Some(ready_region(&r, "")),
    );
    let v = judge(Kind::ShmNoWriter, &j, creates);
    hints(&v, "without O_CREAT");
}

#[test]
fn shm_cleanup_wants_the_name_gone() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let ok = good_pair(&r, Who::Learner, Some(Who::Learner));
    passes(judge(Kind::ShmCleanup, &j, pair(ok)));
    let mut left = good_pair(&r, Who::Learner, Some(Who::Learner));
    left.left_region = Some(ready_region(&r, &r.region.message));
    let v = judge(Kind::ShmCleanup, &j, pair(left));
    fails_hinting(&v, "shm_unlink");
}

#[test]
fn shm_repeat_counts_the_handoffs_and_names_the_first_failure() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let cfg = check(&r, Kind::ShmRepeat);
    let rounds = |n: u32, bad: Option<usize>| {
        let mut all: Vec<PairOutcome> = (0..n)
            .map(|_| good_pair(&r, Who::Learner, Some(Who::Learner)))
            .collect();
        if let Some(i) = bad {
            all[i].fate = WriterFate::Left(Early::BeforeReaderDone);
        }
        vec![Outcome::Repeat(RepeatOutcome {
            rounds: all,
            wanted: cfg.repeat().runs,
            out_of_time: false,
            budget: cfg.repeat().budget,
            took: Duration::from_secs(1),
        })]
    };
    let all = cfg.repeat().runs;
    passes(judge(Kind::ShmRepeat, &j, rounds(all, None)));
    let v = judge(Kind::ShmRepeat, &j, rounds(all, Some(3)));
    assert_eq!(v.status, Status::Failed);
    assert!(v.message.contains("run 4 failed"), "{}", v.message);
    // Rounds stopped short with no failure judged: never a pass.
    let v = judge(Kind::ShmRepeat, &j, rounds(all - 1, None));
    assert_eq!(v.status, Status::Failed);
}

const WRITER_TRACE: &str = r#"9 openat(AT_FDCWD</w>, "/dev/shm/MySharedMemory", O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0600) = 3</dev/shm/MySharedMemory>
9 ftruncate(3</dev/shm/MySharedMemory>, 1024) = 0
9 mmap(NULL, 1024, PROT_READ|PROT_WRITE, MAP_SHARED, 3</dev/shm/MySharedMemory>, 0) = 0x7f0000000000
"#;
const READER_TRACE: &str = r#"10 openat(AT_FDCWD</w>, "/dev/shm/MySharedMemory", O_RDONLY|O_NOFOLLOW|O_CLOEXEC) = 3</dev/shm/MySharedMemory>
10 mmap(NULL, 1024, PROT_READ, MAP_SHARED, 3</dev/shm/MySharedMemory>, 0) = 0x7f0000000000
"#;

#[test]
fn shm_uses_mmap_wants_both_programs_to_map_the_region() {
    let (r, b) = (rubric(), built(&rubric()));
    let evidence = [
        RunEvidence {
            role: Role::Writer,
            region: Some((5, 6)),
            io: Some(Vec::new()),
        },
        RunEvidence {
            role: Role::Reader,
            region: Some((5, 6)),
            io: Some(Vec::new()),
        },
    ];
    let j = judging(&r, &b, &evidence);
    let traced = |writer: &str, reader: &str| {
        let mut o = good_pair(&r, Who::Learner, Some(Who::Learner));
        o.writer_trace = Some(Trace::parse(writer));
        o.reader_trace = Some(Trace::parse(reader));
        pair(o)
    };
    let v = judge(Kind::ShmUsesMmap, &j, traced(WRITER_TRACE, READER_TRACE));
    assert_eq!(v.status, Status::Passed, "{v:?}");
    let creating = READER_TRACE.replace("O_RDONLY", "O_RDONLY|O_CREAT");
    let v = judge(Kind::ShmUsesMmap, &j, traced(WRITER_TRACE, &creating));
    fails_hinting(&v, "without O_CREAT");
    let v = judge(Kind::ShmUsesMmap, &j, traced(WRITER_TRACE, ""));
    hints(&v, "shm_open(name, O_RDONLY, 0)");
}

#[test]
fn shm_large_bounds_the_memory_and_knows_a_small_machine() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let cfg = check(&r, Kind::ShmLarge);
    let large = |writer_kib: u64| {
        let mut o = good_pair(&r, Who::Learner, Some(Who::Learner));
        o.plan.size = cfg.large().size;
        if let Readiness::Ready { seen: Some(s), .. } = &mut o.readiness {
            s.size = cfg.large().size;
        }
        o.writer_peak_kib = Some(writer_kib);
        o.region_allocated = Some(4096);
        pair(o)
    };
    passes(judge(Kind::ShmLarge, &j, large(2048)));
    let v = judge(Kind::ShmLarge, &j, large(cfg.large().size / 1024 + 1024));
    assert_eq!(v.status, Status::Failed, "{v:?}");
    let small = Judging {
        region_capacity: Some(64 << 20),
        ..judging(&r, &b, &[])
    };
    let mut rng = fastrand::Rng::with_seed(1);
    assert!((def(Kind::ShmLarge).plans)(&small, cfg, &mut rng).is_empty());
    assert!(judge(Kind::ShmLarge, &small, Vec::new()).fault());
}

#[test]
fn build_lists_what_was_not_built() {
    let r = rubric();
    let mut b = built(&r);
    let j = judging(&r, &b, &[]);
    passes(judge(Kind::Build, &j, Vec::new()));
    b.programs.insert(
        r.programs.reader.binary.clone(),
        Program::Missing {
            why: "no shm_reader.c or shm_reader.cpp was handed in".into(),
        },
    );
    let j = judging(&r, &b, &[]);
    let v = judge(Kind::Build, &j, Vec::new());
    assert_eq!(v.status, Status::Failed);
    assert!(
        v.observed
            .as_deref()
            .unwrap_or("")
            .contains("no shm_reader.c"),
        "{v:?}"
    );
}

#[test]
fn checks_that_share_a_handoff_ask_for_the_same_plan() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let plans = |kind: Kind| {
        let mut rng = fastrand::Rng::with_seed(7);
        (def(kind).plans)(&j, check(&r, kind), &mut rng)
    };
    assert_eq!(plans(Kind::ShmHandoff), plans(Kind::ShmCleanup));
    assert_eq!(plans(Kind::ShmHandoff), plans(Kind::ShmUsesMmap));
    assert_eq!(plans(Kind::ShmObserved), plans(Kind::ShmWriterInterop));
    assert_ne!(plans(Kind::ShmHandoff), plans(Kind::ShmWriterInterop));
}

// ------------------------------------------------- issue 14's verdicts

/// The default rubric with `from` replaced by `to`.
fn rubric_with(from: &str, to: &str) -> Rubric {
    let text = crate::rubric::DEFAULT_RUBRIC;
    assert!(text.contains(from), "no {from:?} in the default rubric");
    Rubric::parse(&text.replacen(from, to, 1), "test rubric").unwrap()
}

#[test]
fn the_reference_reader_is_judged_by_the_message_not_the_rubrics_line() {
    // A lab whose reader prints only the text: the learner's writer is
    // still right when the reference reader prints its own line.
    let r = rubric_with(
        "line = \"Data from shared memory: {message}\"",
        "line = \"{message}\"",
    );
    let b = built(&r);
    let j = judging(&r, &b, &[]);
    let ok = good_pair(&r, Who::Learner, Some(Who::Reference));
    passes(judge(Kind::ShmWriterInterop, &j, pair(ok)));
}

#[test]
fn cleanup_is_not_passed_when_nothing_was_made() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let mut never = good_pair(&r, Who::Learner, Some(Who::Learner));
    never.readiness = Readiness::Ready {
        after: Duration::from_millis(1),
        seen: None,
    };
    fails_hinting(
        &judge(Kind::ShmCleanup, &j, pair(never)),
        "create the region",
    );
}

#[test]
fn a_line_of_non_ascii_text_is_never_sliced_inside_a_character() {
    // 'é' is two bytes: byte 20 falls inside one.
    let r = rubric_with(
        "line = \"Data from memory-mapped file: {message}\"",
        "line = \"aéééééééééééééééééééé: {message}\"",
    );
    let b = built(&r);
    let j = judging(&r, &b, &[]);
    let label = mapfile(
        finished(Ending::Exited(0), "aéééééééééééééééééééé: \n", ""),
        good_file(),
        "",
    );
    fails_hinting(&judge(Kind::FileOutput, &j, label), "label is there");
}

#[test]
fn a_rust_panics_reason_stays_in_what_was_observed() {
    let run = finished(
        Ending::Exited(101),
        "",
        "thread 'main' panicked at src/bin/shm_writer.rs:12:5:\nSIZE must be a number\nnote: run with `RUST_BACKTRACE=1`\n",
    );
    let seen = ending_summary(&run);
    assert!(seen.contains("SIZE must be a number"), "{seen}");
}

#[test]
fn commands_are_shown_as_a_shell_takes_them() {
    let mut run = finished(Ending::Exited(0), "", "");
    run.record.argv = vec![
        "./shm_writer".into(),
        "/MySharedMemory".into(),
        "1024".into(),
        "Shared Memory Data!".into(),
    ];
    assert_eq!(
        run.record.command_line(),
        "./shm_writer /MySharedMemory 1024 'Shared Memory Data!'"
    );
}

#[test]
fn a_mapping_too_small_for_the_message_is_not_writing_through_it() {
    // Ten bytes mapped shared and writable: the message's 27 bytes are not
    // all within reach of the mapping.
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let small = MAPFILE_TRACE.replacen(
        "mmap(NULL, 1024, PROT_READ|PROT_WRITE",
        "mmap(NULL, 10, PROT_READ|PROT_WRITE",
        1,
    );
    let v = judge(
        Kind::FileUsesMmap,
        &j,
        mapfile(
            finished(Ending::Exited(0), FILE_LINE, ""),
            good_file(),
            &small,
        ),
    );
    assert!(v.message.contains("covers 10 bytes"), "{v:#?}");
    fails_hinting(&v, "from offset 0 for its whole size");
}

#[test]
fn a_region_opened_read_only_is_told_to_open_it_read_write() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let mut o = good_pair(&r, Who::Learner, Some(Who::Learner));
    o.readiness = Readiness::TimedOut {
        last: Some(Seen {
            size: 0,
            allocated: 0,
            head: Vec::new(),
            regular: true,
            id: (5, 6),
            granule: 1,
        }),
    };
    o.writer_trace = Some(Trace::parse(
        "9 openat(AT_FDCWD</w>, \"/dev/shm/MySharedMemory\", O_RDONLY|O_CREAT, 0600) = 3</dev/shm/MySharedMemory>\n9 ftruncate(3</dev/shm/MySharedMemory>, 1024) = -1 EINVAL (Invalid argument)\n",
    ));
    fails_hinting(&judge(Kind::ShmHandoff, &j, pair(o)), "open it with O_RDWR");
}

#[test]
fn a_wrong_size_fails_the_region_checks_only() {
    let (r, b) = (rubric(), built(&rubric()));
    let j = judging(&r, &b, &[]);
    let small = |writer, reader| {
        let mut o = good_pair(&r, writer, reader);
        if let Readiness::Ready { seen: Some(s), .. } = &mut o.readiness {
            s.size = 20;
        }
        o
    };
    let v = judge(
        Kind::ShmObserved,
        &j,
        pair(small(Who::Learner, Some(Who::Reference))),
    );
    assert_eq!(v.status, Status::Failed);
    assert!(v.message.contains("20 bytes, not 1024"), "{v:?}");
    hints(&v, "ftruncate(fd, SIZE)");
    // The message got across: the pairs pass, the size is not charged
    // again to each of them.
    passes(judge(
        Kind::ShmHandoff,
        &j,
        pair(small(Who::Learner, Some(Who::Learner))),
    ));
    passes(judge(
        Kind::ShmWriterInterop,
        &j,
        pair(small(Who::Learner, Some(Who::Reference))),
    ));
}
