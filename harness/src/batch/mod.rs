//! `labgrade batch`: a whole class, N submissions at a time, each graded by
//! its own `labgrade grade` process in its own job slot (its own
//! unprivileged uid and sandboxes), every result journaled as soon as it is
//! known; and `labgrade merge`, which turns journals into one gradebook.

mod gradebook;
mod journal;
mod sources;

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::hash::tree_sha256;
use crate::report::{Report, points};
use crate::rubric::Rubric;
use crate::sandbox::Level;
use gradebook::Row;
use journal::{Entry, EntryStatus, Journal};
use sources::Submission;

/// The batch's scratch space, inside its output directory.
const WORK_DIR: &str = ".work";

/// Extra time a grading process gets beyond the rubric's own deadline
/// (it stops itself then, and only needs to write its report).
const GRACE: Duration = Duration::from_secs(60);

/// `--shard K/N`: this machine grades the K-th of N stable parts.
#[derive(Debug, Clone, Copy)]
pub struct Shard {
    pub k: u64,
    pub n: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (k, n) = s.split_once('/').ok_or("use K/N, e.g. 1/3")?;
        let (k, n): (u64, u64) = (
            k.parse().map_err(|_| "K must be a number")?,
            n.parse().map_err(|_| "N must be a number")?,
        );
        if n == 0 || k == 0 || k > n {
            return Err(format!("{s}: K must be between 1 and N"));
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// Whether this shard grades `learner`: by a hash of the id, so the
    /// split is the same on every machine and in every run.
    fn takes(&self, learner: &str) -> bool {
        let digest = Sha256::digest(learner.as_bytes());
        let value = u64::from_le_bytes(digest[..8].try_into().unwrap());
        value % self.n == self.k - 1
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub sources: Vec<PathBuf>,
    pub jobs: usize,
    pub rubric: Option<PathBuf>,
    pub out: PathBuf,
    pub resume: bool,
    pub shard: Option<Shard>,
    pub show_hidden: bool,
    pub isolation: Level,
}

/// Exit 2: the batch itself could not run.
fn cannot(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("labgrade batch: {message}");
    ExitCode::from(2)
}

pub fn run(opts: Options) -> ExitCode {
    let started = Instant::now();
    let rubric = match Rubric::load_or_default(opts.rubric.as_deref()) {
        Ok(r) => r,
        Err(e) => return cannot(format!("bad rubric: {e}")),
    };
    let mut found = match sources::discover(&opts.sources) {
        Ok(found) => found,
        Err(e) => return cannot(e),
    };
    if let Some(shard) = opts.shard {
        found.retain(|learner, _| shard.takes(learner));
    }
    if let Err(e) = std::fs::create_dir_all(&opts.out) {
        return cannot(format!(
            "{}: cannot create the output directory: {e}",
            opts.out.display()
        ));
    }
    let journal_path = opts.out.join("journal.jsonl");
    let feedback = opts.out.join("feedback");
    let mut rows = BTreeMap::new();
    let mut prior = BTreeMap::new();
    if journal_path.exists() {
        if !opts.resume {
            return cannot(format!(
                "{} already holds a batch's journal: add --resume to continue it, or choose another --out",
                opts.out.display()
            ));
        }
        let read = journal::for_each(&[journal_path.as_path()], |entry| {
            // Only learners among this run's sources count.
            if !found.contains_key(&entry.learner) {
                return;
            }
            let _ = gradebook::write_feedback(&entry, &feedback, opts.show_hidden);
            if entry.graded() {
                prior.insert(
                    entry.learner.clone(),
                    (entry.submission_sha256.clone(), entry.rubric_sha256.clone()),
                );
            } else {
                prior.remove(&entry.learner);
            }
            rows.insert(entry.learner.clone(), Row::of(&entry));
        });
        match read {
            Ok(0) => {}
            Ok(damaged) => eprintln!(
                "labgrade batch: {damaged} damaged journal line(s) skipped; those submissions are graded again"
            ),
            Err(e) => return cannot(e),
        }
    }
    let journal = match Journal::append_to(&journal_path) {
        Ok(j) => j,
        Err(e) => {
            return cannot(format!(
                "{}: cannot write the journal: {e}",
                journal_path.display()
            ));
        }
    };

    // Archives are unpacked here, inside the output directory rather than
    // TMPDIR, so what a killed batch left is swept by the next run.
    let work = opts.out.join(WORK_DIR);
    let _ = std::fs::remove_dir_all(&work);
    if let Err(e) = std::fs::create_dir_all(&work) {
        return cannot(format!("{}: cannot create it: {e}", work.display()));
    }

    let total = found.len();
    let queue: VecDeque<Submission> = found.into_values().collect();
    let shared = Arc::new(Shared {
        queue: Mutex::new(queue),
        journal: Mutex::new(journal),
        rows: Mutex::new(rows),
        prior,
        feedback,
        work: work.clone(),
        progress: Progress::new(total),
        rubric_sha: rubric.sha256.clone(),
        deadline: rubric.deadline + GRACE,
        opts: opts.clone(),
        gradings: Mutex::new(Default::default()),
        stopped: Mutex::new(None),
    });
    watch_signals(&shared);
    let workers: Vec<_> = (0..opts.jobs.max(1))
        .map(|slot| {
            let shared = shared.clone();
            std::thread::spawn(move || worker(&shared, slot as u32))
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    shared.progress.finish();
    let _ = std::fs::remove_dir_all(&work);
    let rows = std::mem::take(&mut *shared.rows.lock().unwrap_or_else(|e| e.into_inner()));
    let code = finish(&rows, &opts.out, started);
    if let Some(signal) = shared
        .stopped
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        let kept = rows.values().filter(|r| r.graded()).count();
        eprintln!(
            "labgrade batch: stopped by {signal}: {kept} of {total} graded and kept in {}; run the same command with --resume to grade the rest",
            journal_path.display()
        );
        return ExitCode::from(1);
    }
    code
}

/// Writes the outputs and prints the gradebook and summary.
fn finish(rows: &BTreeMap<String, Row>, out: &Path, started: Instant) -> ExitCode {
    let outputs = match gradebook::write_all(rows, out) {
        Ok(o) => o,
        Err(e) => {
            return cannot(format!(
                "{}: cannot write the gradebook: {e}",
                out.display()
            ));
        }
    };
    println!("{}", outputs.table);
    println!("{}", outputs.summary);
    println!(
        "Wrote {} (gradebook.csv, feedback/, summary.md, scores.svg, journal) in {}.",
        out.display(),
        humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
    );
    if rows.values().all(Row::graded) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `labgrade merge JOURNAL... --out DIR`.
pub fn merge(journals: &[PathBuf], out: &Path, show_hidden: bool) -> ExitCode {
    let started = Instant::now();
    if let Err(e) = std::fs::create_dir_all(out) {
        return cannot(format!(
            "{}: cannot create the output directory: {e}",
            out.display()
        ));
    }
    let feedback = out.join("feedback");
    let paths: Vec<&Path> = journals.iter().map(PathBuf::as_path).collect();
    let mut rows = BTreeMap::new();
    let mut failed_write = None;
    let read = journal::for_each(&paths, |entry| {
        if let Err(e) = gradebook::write_feedback(&entry, &feedback, show_hidden) {
            failed_write.get_or_insert(e);
        }
        rows.insert(entry.learner.clone(), Row::of(&entry));
    });
    match read {
        Ok(0) => {}
        Ok(damaged) => eprintln!("labgrade merge: {damaged} damaged journal line(s) skipped"),
        Err(e) => return cannot(e),
    }
    if let Some(e) = failed_write {
        return cannot(format!(
            "{}: cannot write feedback: {e}",
            feedback.display()
        ));
    }
    finish(&rows, out, started)
}

struct Shared {
    queue: Mutex<VecDeque<Submission>>,
    journal: Mutex<Journal>,
    rows: Mutex<BTreeMap<String, Row>>,
    /// From a resumed journal: graded learners' (submission, rubric) hashes.
    prior: BTreeMap<String, (String, String)>,
    feedback: PathBuf,
    /// Where submissions are unpacked and reports land, one directory each.
    work: PathBuf,
    progress: Progress,
    rubric_sha: String,
    deadline: Duration,
    opts: Options,
    /// The `labgrade grade` processes running now.
    gradings: Mutex<std::collections::HashSet<u32>>,
    /// The signal that stopped the batch, if one did.
    stopped: Mutex<Option<String>>,
}

/// On SIGINT, SIGTERM or SIGHUP: no new grading starts, the ones running
/// are asked to stop (each still writes its report, its unfinished checks
/// not graded), and the batch ends as usual, with what it has journaled.
fn watch_signals(shared: &Arc<Shared>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let shared = shared.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            *shared.stopped.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(crate::runner::signal_name(sig));
            for &pid in shared
                .gradings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                crate::runner::signal_process(pid, crate::runner::SIGTERM);
            }
        }
    });
}

fn worker(shared: &Shared, slot: u32) {
    loop {
        if shared
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return;
        }
        let Some(sub) = shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
        else {
            return;
        };
        let outcome = grade_one(shared, &sub, slot);
        let Some(entry) = outcome else {
            shared.progress.skip(&sub.learner);
            continue;
        };
        if let Err(e) = shared
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(&entry)
        {
            eprintln!("labgrade batch: cannot write to the journal: {e}");
        }
        if let Err(e) = gradebook::write_feedback(&entry, &shared.feedback, shared.opts.show_hidden)
        {
            eprintln!(
                "labgrade batch: cannot write feedback for {}: {e}",
                entry.learner
            );
        }
        shared.progress.done(&entry);
        let row = Row::of(&entry);
        shared
            .rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.learner, row);
    }
}

/// Grades one submission; None when the journal already holds its result
/// for the same contents and rubric (with --resume).
fn grade_one(shared: &Shared, sub: &Submission, slot: u32) -> Option<Entry> {
    let mut entry = Entry {
        learner: sub.learner.clone(),
        origin: sub.origin.display().to_string(),
        submission_sha256: String::new(),
        rubric_sha256: shared.rubric_sha.clone(),
        status: EntryStatus::NotGraded,
        why: None,
        report: None,
    };
    let scratch = match tempfile::Builder::new()
        .prefix("grading-")
        .tempdir_in(&shared.work)
    {
        Ok(dir) => dir,
        Err(e) => {
            entry.why = Some(format!("grader error: no working directory ({e})"));
            return Some(entry);
        }
    };
    let unpacked = scratch.path().join("submission");
    if let Err(e) = std::fs::create_dir(&unpacked) {
        entry.why = Some(format!("grader error: no working directory ({e})"));
        return Some(entry);
    }
    let dir = match sources::unpack(sub, &unpacked) {
        Ok(dir) => dir,
        Err(why) => {
            entry.why = Some(why);
            return Some(entry);
        }
    };
    match tree_sha256(&dir) {
        Ok(sha) => entry.submission_sha256 = sha,
        Err(e) => {
            entry.why = Some(format!("cannot read the submission: {e}"));
            return Some(entry);
        }
    }
    if let Some((sha, rubric_sha)) = shared.prior.get(&sub.learner)
        && *sha == entry.submission_sha256
        && *rubric_sha == entry.rubric_sha256
    {
        return None;
    }
    let report_path = scratch.path().join("report.json");
    let result = run_grader(shared, &dir, &report_path, slot);
    let report = std::fs::read(&report_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Report>(&b).ok());
    match (report, result) {
        (Some(report), _) => {
            entry.status = if report.fully_graded() {
                EntryStatus::Graded
            } else {
                EntryStatus::Incomplete
            };
            if entry.status == EntryStatus::Incomplete {
                entry.why = Some(crate::report::incomplete_because(&report));
            }
            entry.report = Some(report);
        }
        (None, Err(why)) | (None, Ok(why)) => entry.why = Some(why),
    }
    if entry.report.is_none()
        && let Some(signal) = shared
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    {
        entry.why = Some(format!(
            "the batch was stopped by {signal} before this grading was done; --resume grades it"
        ));
    }
    Some(entry)
}

/// Runs `labgrade grade` on `dir` in job slot `slot`, writing the JSON
/// report to `report`. Ok(stderr) when it finished, Err(why) otherwise.
fn run_grader(shared: &Shared, dir: &Path, report: &Path, slot: u32) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("grader error: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("grade")
        .arg(dir)
        .args(["--format", "json", "--show-hidden", "--output"])
        .arg(report)
        .args([
            "--slot",
            &slot.to_string(),
            "--isolation",
            shared.opts.isolation.name(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(rubric) = &shared.opts.rubric {
        cmd.arg("--rubric").arg(rubric);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("grader error: cannot start labgrade grade ({e})"))?;
    let mut stderr = child.stderr.take();
    let pid = child.id();
    shared
        .gradings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pid);
    // Asked to stop in the moment it started: it stops too.
    if shared
        .stopped
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
    {
        crate::runner::signal_process(pid, crate::runner::SIGTERM);
    }
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(shared.deadline) {
        Ok(status) => status,
        Err(_) => {
            // Past its own deadline and grace: ask it to stop (it writes
            // what it knows), then make it.
            crate::runner::signal_process(pid, crate::runner::SIGTERM);
            match rx.recv_timeout(Duration::from_secs(15)) {
                Ok(status) => status,
                Err(_) => {
                    crate::runner::signal_process(pid, crate::runner::SIGKILL);
                    shared
                        .gradings
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&pid);
                    return Err("grader error: the grading did not finish".into());
                }
            }
        }
    };
    shared
        .gradings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pid);
    let mut text = String::new();
    if let Some(s) = stderr.as_mut() {
        let _ = s.take(4096).read_to_string(&mut text);
    }
    let text = text.trim().trim_start_matches("labgrade: ");
    match status {
        Ok(_) if !text.is_empty() => Ok(text.to_string()),
        Ok(status) => Err(format!(
            "grader error: the grading ended ({status}) without a report"
        )),
        Err(e) => Err(format!("grader error: {e}")),
    }
}

/// A progress bar on a terminal, plain lines otherwise (CI logs).
struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    count: Mutex<(usize, usize)>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} graded · {msg} · {per_sec} · eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message("0 not graded");
            bar
        });
        Progress {
            bar,
            total,
            count: Mutex::new((0, 0)),
        }
    }

    fn done(&self, entry: &Entry) {
        let (n, failed) = {
            let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
            c.0 += 1;
            c.1 += usize::from(!entry.graded());
            *c
        };
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{failed} not graded"));
            }
            None => {
                let what = match &entry.report {
                    Some(r) if entry.graded() => {
                        format!("{}/{}", points(r.score), points(r.max_score))
                    }
                    _ => format!("{}: {}", entry.status, entry.why.as_deref().unwrap_or("")),
                };
                eprintln!("[{n}/{}] {}: {what}", self.total, entry.learner);
            }
        }
    }

    fn skip(&self, learner: &str) {
        let n = {
            let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
            c.0 += 1;
            c.0
        };
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => eprintln!(
                "[{n}/{}] {learner}: unchanged since the journal's grade",
                self.total
            ),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
