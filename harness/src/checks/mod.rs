//! The checks: each one small, judging one thing from an experiment, and
//! explaining itself — what was expected, what was observed, and a hint
//! grounded in the observation. Each kind declares the experiments it
//! needs (plans, values) and judges their outcomes as a pure function
//! ([`def`]), so every check is tested on made-up outcomes.

mod build;
mod file;
mod shm;

use std::rc::Rc;

use crate::build::BuildResult;
use crate::experiments::{
    GraderError, MapfileOutcome, NoWriterOutcome, Outcome, PairOutcome, Plan, RepeatOutcome,
    RunEvidence,
};
use crate::ipc::Mechanism;
use crate::rubric::{CheckConfig, Kind, MatchMode, Rubric};
use crate::runner::{
    Ending, Finished, RunRecord, SIGBUS, SIGKILL, SIGSEGV, SIGXCPU, SIGXFSZ, excerpt,
};

/// How a check came out. In the JSON report, as lowercase words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Error => "error",
        }
    }
}

/// A check's judgement.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub status: Status,
    /// The share of the points earned, 0 to 1.
    pub fraction: f64,
    pub message: String,
    pub expected: Option<String>,
    pub observed: Option<String>,
    pub hint: Option<String>,
    pub skipped_because: Option<String>,
    /// Skipped because this environment cannot run it (not the learner's
    /// fault): taken out of the maximum, like an error.
    pub environment: bool,
    pub runs: Vec<RunRecord>,
}

impl Verdict {
    fn new(status: Status, fraction: f64, message: impl Into<String>) -> Verdict {
        Verdict {
            status,
            fraction,
            message: message.into(),
            expected: None,
            observed: None,
            hint: None,
            skipped_because: None,
            environment: false,
            runs: Vec::new(),
        }
    }

    pub fn pass(message: impl Into<String>) -> Verdict {
        Verdict::new(Status::Passed, 1.0, message)
    }

    pub fn fail(message: impl Into<String>) -> Verdict {
        Verdict::new(Status::Failed, 0.0, message)
    }

    /// The grader itself failed: never charged to the learner.
    pub fn error(message: impl Into<String>) -> Verdict {
        Verdict::new(Status::Error, 0.0, message)
    }

    /// A prerequisite failed: the check scores 0 of its points.
    pub fn skipped(because: impl Into<String>) -> Verdict {
        let because = because.into();
        let mut v = Verdict::new(Status::Skipped, 0.0, format!("not run: {because}"));
        v.skipped_because = Some(because);
        v
    }

    /// This environment cannot run the check: out of the maximum.
    pub fn unavailable(because: impl Into<String>) -> Verdict {
        let mut v = Verdict::skipped(because);
        v.environment = true;
        v
    }

    pub fn expected(mut self, text: impl Into<String>) -> Verdict {
        self.expected = Some(text.into());
        self
    }

    pub fn observed(mut self, text: impl Into<String>) -> Verdict {
        self.observed = Some(text.into());
        self
    }

    pub fn hint(mut self, text: impl Into<String>) -> Verdict {
        self.hint = Some(text.into());
        self
    }

    pub fn maybe_hint(mut self, text: Option<String>) -> Verdict {
        self.hint = text;
        self
    }

    pub fn runs(mut self, runs: Vec<RunRecord>) -> Verdict {
        self.runs = runs;
        self
    }

    /// A grader fault: the grader erred, or this machine cannot run the
    /// check. Never the learner's doing: such a check is not graded, its
    /// points stay in the maximum, and the grade is incomplete.
    pub fn fault(&self) -> bool {
        self.status == Status::Error || self.environment
    }
}

impl From<GraderError> for Verdict {
    fn from(err: GraderError) -> Verdict {
        Verdict::error(format!("the grader could not run this check: {}", err.0))
    }
}

/// Which of the learner's programs a kind of check runs: it is skipped
/// when one of them was not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Programs {
    None,
    Mapfile,
    Writer,
    Reader,
    /// The writer and the reader.
    Pair,
}

impl Programs {
    /// Their binaries' names in `rubric`.
    pub fn of(self, rubric: &Rubric) -> Vec<&str> {
        let p = &rubric.programs;
        match self {
            Programs::None => vec![],
            Programs::Mapfile => vec![&p.mapfile.binary],
            Programs::Writer => vec![&p.writer.binary],
            Programs::Reader => vec![&p.reader.binary],
            Programs::Pair => vec![&p.writer.binary, &p.reader.binary],
        }
    }
}

/// What a check judges by besides its experiments' outcomes: the rubric,
/// the build, and what the grading knows of this machine and of the
/// learner's runs so far. Checks are pure judgments of these.
pub struct Judging<'a> {
    pub rubric: &'a Rubric,
    pub build: &'a BuildResult,
    /// The IPC mechanism the pairs used.
    pub mechanism: &'a dyn Mechanism,
    /// The uid learner code runs as, where it is not the grader's.
    pub learner_uid: Option<u32>,
    /// Why system calls cannot be traced here, if they cannot.
    pub untraceable: Option<String>,
    /// How large the file system regions live in is.
    pub region_capacity: Option<u64>,
    /// Every run of the learner's writer and reader so far.
    pub evidence: &'a [RunEvidence],
    /// A region name of this grading's own, drawn from its seed: the
    /// interop pairs give it, so a program ignoring NAME is seen.
    pub fresh_name: &'a str,
}

impl Judging<'_> {
    /// Whether `entry`, found where regions live, is the learner's: owned
    /// by the learner uid (or anybody's, where learner code runs as the
    /// grader and whose it is cannot be told).
    pub fn learners(&self, entry: &crate::ipc::Entry) -> bool {
        self.learner_uid.is_none_or(|uid| entry.uid == uid)
    }
}

/// A fresh portable region name from `rng`: a slash and letters and digits.
pub fn fresh_name(rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
    let tail: String = (0..10)
        .map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char)
        .collect();
    format!("/lab-{tail}")
}

/// The outcomes of a check's plans, in the order it declared them.
pub struct Outcomes(pub Vec<Rc<Outcome>>);

impl Outcomes {
    fn nth(&self, i: usize) -> Result<&Outcome, GraderError> {
        self.0
            .get(i)
            .map(Rc::as_ref)
            .ok_or_else(|| GraderError(format!("grader bug: no experiment {i} for this check")))
    }

    fn mismatch(i: usize, want: &str) -> GraderError {
        GraderError(format!("grader bug: experiment {i} is not {want}"))
    }

    pub fn mapfile(&self, i: usize) -> Result<&MapfileOutcome, GraderError> {
        match self.nth(i)? {
            Outcome::Mapfile(o) => Ok(o),
            _ => Err(Self::mismatch(i, "mapfile's run")),
        }
    }

    pub fn pair(&self, i: usize) -> Result<&PairOutcome, GraderError> {
        match self.nth(i)? {
            Outcome::Pair(o) => Ok(o),
            _ => Err(Self::mismatch(i, "a handoff")),
        }
    }

    pub fn no_writer(&self, i: usize) -> Result<&NoWriterOutcome, GraderError> {
        match self.nth(i)? {
            Outcome::NoWriter(o) => Ok(o),
            _ => Err(Self::mismatch(i, "the reader alone")),
        }
    }

    pub fn repeat(&self, i: usize) -> Result<&RepeatOutcome, GraderError> {
        match self.nth(i)? {
            Outcome::Repeat(o) => Ok(o),
            _ => Err(Self::mismatch(i, "handoffs in a row")),
        }
    }
}

/// The experiments a check asks for.
pub type Plans = fn(&Judging, &CheckConfig, &mut fastrand::Rng) -> Vec<Plan>;
/// A check's judgment of their outcomes.
pub type Judge = fn(&Judging, &CheckConfig, &Outcomes) -> Result<Verdict, GraderError>;

/// One kind of check: the programs it runs, the experiments it asks for,
/// and how it judges them.
pub struct Def {
    pub programs: Programs,
    pub plans: Plans,
    pub judge: Judge,
}

fn no_plans(_: &Judging, _: &CheckConfig, _: &mut fastrand::Rng) -> Vec<Plan> {
    Vec::new()
}

/// Every kind of check, in one place.
pub fn def(kind: Kind) -> Def {
    use Programs::{Mapfile, Pair, Reader, Writer};
    let d = |programs: Programs, plans: Plans, judge: Judge| Def {
        programs,
        plans,
        judge,
    };
    match kind {
        Kind::Build => d(Programs::None, no_plans, build::build),
        Kind::FileRuns => d(Mapfile, file::plans, file::runs),
        Kind::FileOutput => d(Mapfile, file::plans, file::output),
        Kind::FileContents => d(Mapfile, file::plans, file::contents),
        Kind::FileUsesMmap => d(Mapfile, file::traced_plans, file::uses_mmap),
        Kind::ShmObserved => d(Writer, shm::writer_with_reference, shm::observed),
        Kind::ShmHandoff => d(Pair, shm::learner_pair, shm::handoff),
        Kind::ShmWriterInterop => d(Writer, shm::writer_with_reference, shm::writer_interop),
        Kind::ShmReaderInterop => d(Reader, shm::reference_writer, shm::reader_interop),
        Kind::ShmNoWriter => d(Reader, shm::reader_alone, shm::no_writer),
        Kind::ShmCleanup => d(Pair, shm::learner_pair, shm::cleanup),
        Kind::ShmRepeat => d(Pair, shm::repeated, shm::repeat),
        Kind::ShmUsesMmap => d(Pair, shm::traced_pair, shm::uses_mmap),
        Kind::ShmLarge => d(Pair, shm::large_pair, shm::large),
    }
}

// ------------------------------------------------------------ shared helpers

/// How a program is expected to print a required line, and whether it did.
pub fn has_line(stdout: &str, expected: &str, mode: MatchMode, message: &str) -> bool {
    let clean = |l: &str| l.trim_end_matches(['\r', '\0', ' ']).to_string();
    match mode {
        MatchMode::Line => stdout.lines().any(|l| clean(l) == expected),
        MatchMode::Substring => stdout.lines().any(|l| clean(l).contains(expected)),
        MatchMode::Regex => {
            // The template is a pattern with {message} as literal text.
            let pattern = expected.replace(message, &regex::escape(message));
            regex::Regex::new(&pattern)
                .is_ok_and(|re| stdout.lines().any(|l| re.is_match(&clean(l))))
        }
    }
}

/// The first lines of some output, bounded, for "observed".
pub fn bounded(text: &str) -> String {
    const LINES: usize = 8;
    const CHARS: usize = 600;
    if text.trim().is_empty() {
        return "nothing".to_string();
    }
    let mut out = text.lines().take(LINES).collect::<Vec<_>>().join("\n");
    let more = text.lines().count() > LINES;
    let cut = out.len() > CHARS;
    if cut {
        out = excerpt(out.as_bytes(), CHARS);
    }
    if more && !cut {
        out.push_str("\n[...]");
    }
    out
}

/// Bytes shown as C would write them: printable text, \0, \xNN.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            0 => out.push_str("\\0"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    format!("\"{out}\"")
}

/// A run's ending and what it said on stderr, in one line.
pub fn ending_summary(run: &Finished) -> String {
    let mut text = match &run.crash {
        // Its platform's own line says it: the program's stderr is not
        // quoted too.
        Some(crash) => {
            return format!(
                "{}: {} ({}); {}",
                crash.verb(),
                crash.what,
                run.ending.describe(),
                crash.report
            );
        }
        None => run.ending.describe(),
    };
    if !run.record.limits_hit.is_empty() {
        text.push_str(&format!(
            " (limit reached: {})",
            run.record.limits_hit.join("; ")
        ));
    }
    let stderr = run.stderr.text();
    let mut lines = stderr.lines().filter(|l| !l.trim().is_empty());
    if let Some(first) = lines.next() {
        text.push_str(&format!("; stderr: {}", first.trim()));
        // A Rust panic says where on its first line and why on the next.
        if first.contains("panicked at")
            && let Some(why) = lines.next()
        {
            text.push_str(&format!(" {}", why.trim()));
        }
    }
    text
}

/// Which of the lab's programs a run was, for hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Mapfile,
    Writer,
    Reader,
}

impl Part {
    /// How a hint names it.
    pub fn words(self) -> &'static str {
        match self {
            Part::Mapfile => "mapfile",
            Part::Writer => "the writer",
            Part::Reader => "the reader",
        }
    }
}

/// A hint grounded in how a program ended, if the ending explains itself.
pub fn ending_hint(run: &Finished, part: Part) -> Option<String> {
    use crate::target::CrashKind;
    let what = part.words();
    use crate::runner::Limit;
    let memory = run.limits.contains(&Limit::Memory);
    let output = run.limits.iter().any(|l| matches!(l, Limit::Output { .. }));
    let disk = run.limits.iter().any(|l| matches!(l, Limit::Disk { .. }));
    if let Some(crash) = &run.crash
        && let CrashKind::NotLoaded { dll } = &crash.kind
    {
        return Some(format!(
            "{what} could not start: it needs {dll}, which Windows machines without mingw-w64 do not have either; link mingw's runtime in with -static (g++ -static), or do without the library"
        ));
    }
    if let Some(crash) = &run.crash {
        return Some(format!(
            "{what} crashed with {}, as Wine reported it ({}): check every call's result before using it (MapViewOfFile returns NULL when it fails) and touch no more of a view than it maps",
            crash.what, crash.report
        ));
    }
    match run.ending {
        Ending::Signalled(SIGBUS) if part == Part::Reader => Some(format!(
            "SIGBUS: {what} touched its mapping past the end of the region; map and read only as many bytes as the region holds (its SIZE, or fstat)"
        )),
        Ending::Signalled(SIGBUS) => Some(format!(
            "SIGBUS: {what} touched a mapping past the end of its file or region; size it with ftruncate before mmap"
        )),
        Ending::Signalled(SIGSEGV) => Some(
            "a segmentation fault: check every call's result (mmap returns MAP_FAILED, not NULL, when it fails)".into(),
        ),
        Ending::Signalled(SIGXCPU | SIGKILL) if memory => Some(format!(
            "{what} ran into the memory limit: it used far more memory than the lab needs"
        )),
        Ending::Signalled(SIGXCPU) => Some(format!("{what} used up its CPU time limit: look for an endless loop")),
        Ending::Signalled(SIGXFSZ) => Some(format!("{what} wrote a file past the file-size limit")),
        Ending::TimedOut => Some(format!(
            "{what} was still running at its deadline: it must not wait for input or loop"
        )),
        _ if disk => Some(format!(
            "{what} filled the grading's storage: the lab needs a few files of a few KiB in the working directory"
        )),
        _ if output => Some(format!("{what} printed far more than the lab asks for; only the start was kept")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_whole_with_trailing_noise_ignored() {
        let out = "hello\nData: x \r\nbye\n";
        assert!(has_line(out, "Data: x", MatchMode::Line, "x"));
        assert!(!has_line(out, "Data:", MatchMode::Line, "x"));
        assert!(has_line(out, "Data:", MatchMode::Substring, "x"));
        assert!(has_line(
            "Data: x.y\n",
            "^Data: x.y$",
            MatchMode::Regex,
            "x.y"
        ));
        assert!(!has_line(
            "Data: xzy\n",
            "^Data: x.y$",
            MatchMode::Regex,
            "x.y"
        ));
        assert!(has_line("Data: x\0\0\n", "Data: x", MatchMode::Line, "x"));
    }

    #[test]
    fn bytes_are_shown_escaped() {
        assert_eq!(escaped(b"Hi\0\xff"), "\"Hi\\0\\xff\"");
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod judged;
