//! The batch's journal: one JSON line per submission, appended and flushed
//! to disk as soon as its result is known, so a crash, kill -9 or Ctrl-C
//! loses at most the submissions being graded at that moment.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::Report;

/// One submission's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub learner: String,
    /// Where the submission was found.
    pub origin: String,
    /// Hash of its files (as `labgrade grade` computes it); empty when it
    /// could not even be read.
    pub submission_sha256: String,
    pub rubric_sha256: String,
    pub status: EntryStatus,
    /// Why it was not graded.
    pub why: Option<String>,
    /// The full report, hidden checks included.
    pub report: Option<Report>,
}

impl Entry {
    pub fn graded(&self) -> bool {
        self.status == EntryStatus::Graded
    }
}

/// What became of one submission (written in the journal as the words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryStatus {
    /// Every check graded: a final grade.
    #[serde(rename = "graded")]
    Graded,
    /// A report, but some check was not graded (a grader fault): not final.
    #[serde(rename = "incomplete")]
    Incomplete,
    /// No report at all: unreadable, or the grading could not be made.
    #[serde(rename = "not graded")]
    NotGraded,
}

impl std::fmt::Display for EntryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryStatus::Graded => "graded",
            EntryStatus::Incomplete => "incomplete",
            EntryStatus::NotGraded => "not graded",
        })
    }
}

/// An open journal, appended to.
pub struct Journal {
    file: File,
}

impl Journal {
    pub fn append_to(path: &Path) -> std::io::Result<Journal> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Journal { file })
    }

    /// Writes one entry as a line and makes it durable before returning.
    pub fn record(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

/// Reads journals entry by entry, in order (so for a learner seen twice,
/// the later entry comes later). A line cut short by a crash is skipped;
/// returns how many were.
pub fn for_each(paths: &[&Path], mut each: impl FnMut(Entry)) -> Result<usize, String> {
    let mut damaged = 0;
    for path in paths {
        let file = File::open(path)
            .map_err(|e| format!("{}: cannot read the journal: {e}", path.display()))?;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(entry) => each(entry),
                Err(_) => damaged += 1,
            }
        }
    }
    Ok(damaged)
}
