//! The same submission graded twice gives the same report, timings aside:
//! every fixture, submissions and hostile alike, graded by one batch run
//! twice (one grading at a time: two at a time on two cores, the
//! timing-bound hostile fixtures, whose writers fill /dev/shm after their
//! release, missed their exit deadline in one grading of two) and the two
//! journals compared report by report.
//!
//! This test found that which limit stopped hostile-memory-hog (its memory,
//! or its CPU time while the kernel paged memory in for it) depended on how
//! fast the machine faulted pages in: the memory limit is now small enough
//! (768 MiB, about 1 s of its 3 s) that it always comes first.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode};

use mmap_lab_kit::suite::{GRADING, Need, Suite};
use mmap_lab_kit::{fixture, labgrade};
use serde_json::Value;

fn main() -> ExitCode {
    let mut needs = GRADING.to_vec();
    needs.extend([Need::Tool("cmake"), Need::Tool("cargo")]);
    Suite::new()
        .test(
            "memory_figures_are_masked_and_nothing_else",
            &[],
            memory_figures_are_masked_and_nothing_else,
        )
        .case(
            "every_fixture_is_graded_the_same_twice",
            &needs,
            every_fixture_is_graded_the_same_twice,
        )
        .run()
}

/// What may differ between two gradings: how long things took and how much
/// memory they peaked at (which the shm.large check restates in MiB).
const TIMINGS: &[&str] = &["duration_ms", "wall_ms", "peak_rss_kib"];

/// `value` without its timings, and with memory figures ("257.5 MiB") in
/// its texts masked.
fn without_timings(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !TIMINGS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), without_timings(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_timings).collect()),
        Value::String(text) => Value::String(mask_mib(text)),
        other => other.clone(),
    }
}

/// "257.5 MiB" -> "N MiB".
fn mask_mib(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(" MiB") {
        let (head, tail) = rest.split_at(at);
        let number = head
            .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(0, |i| i + 1);
        if head[number..].contains('.') {
            out.push_str(&head[..number]);
            out.push('N');
        } else {
            out.push_str(head);
        }
        out.push_str(" MiB");
        rest = &tail[" MiB".len()..];
    }
    out.push_str(rest);
    out
}

/// Grades every fixture in one batch; the reports by learner.
fn batch(out: &Path) -> BTreeMap<String, Value> {
    let tmp = tempfile::tempdir().unwrap();
    let run = Command::new(labgrade())
        .arg("batch")
        .arg(fixture(""))
        .arg(fixture("../hostile"))
        .args(["--jobs", "1", "--out"])
        .arg(out)
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the batch failed: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    journal
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            (
                entry["learner"].as_str().unwrap().to_string(),
                entry["report"].clone(),
            )
        })
        .collect()
}

/// The paths at which two values differ, with both values.
fn differences(a: &Value, b: &Value, at: &str, found: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let null = Value::Null;
                let (p, q) = (x.get(key).unwrap_or(&null), y.get(key).unwrap_or(&null));
                differences(p, q, &format!("{at}.{key}"), found);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{at}[{i}]"), found);
            }
        }
        _ if a != b => found.push(format!("{at}: {a} / {b}")),
        _ => {}
    }
}

fn every_fixture_is_graded_the_same_twice() {
    let out = tempfile::tempdir().unwrap();
    let first = batch(&out.path().join("first"));
    let second = batch(&out.path().join("second"));
    let fixtures = std::fs::read_dir(fixture(""))
        .unwrap()
        .chain(std::fs::read_dir(fixture("../hostile")).unwrap())
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(first.len(), fixtures, "every fixture in the journal");
    let mut found = Vec::new();
    for (learner, report) in &first {
        let again = second
            .get(learner)
            .unwrap_or_else(|| panic!("{learner} missing from the second batch"));
        differences(
            &without_timings(report),
            &without_timings(again),
            learner,
            &mut found,
        );
    }
    assert!(
        found.is_empty(),
        "graded twice, {} thing(s) differ:\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

fn memory_figures_are_masked_and_nothing_else() {
    assert_eq!(
        mask_mib("writer peak 257.5 MiB + region 256.0 MiB; bound 64 MiB"),
        "writer peak N MiB + region N MiB; bound 64 MiB"
    );
}
