//! Helpers shared by the kit's end-to-end tests in `tests/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `labgrade` executable, built (or found up to date) by Cargo once per
/// test process, in the same profile as the tests themselves.
///
/// Cargo only hands a test the binaries of its own package, and this root
/// package's tests drive another package's binary, so they ask Cargo for it;
/// Cargo has released its build lock by the time tests run.
pub fn labgrade() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("labgrade", "labgrade"))
}

fn build_bin(package: &str, bin: &str) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "--message-format=json",
        "-p",
        package,
        "--bin",
        bin,
    ]);
    if in_release_profile() {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == bin)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build reported no executable for {bin}"))
}

/// Tests run from target/PROFILE/deps/.
fn in_release_profile() -> bool {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .is_some_and(|p| p == "release")
}

/// The kit's fixture submissions.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/submissions")
        .join(name)
}

/// Grades `dir` with `labgrade grade --format json` plus `args`; returns
/// the exit code and the parsed report. The grading gets a TMPDIR of its
/// own, which must be empty again when it is done: nothing of a grading
/// is left behind.
pub fn grade_json(dir: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let tmp = tempfile::tempdir().expect("a TMPDIR for the grading");
    let out = Command::new(labgrade())
        .arg("grade")
        .arg(dir)
        .args(["--format", "json"])
        .args(args)
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run labgrade");
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("read the grading's TMPDIR")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "grading {} left {left:?} in its TMPDIR",
        dir.display()
    );
    let code = out.status.code().expect("labgrade exited normally");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "labgrade printed no JSON report ({e}); exit {code}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// Grades a fixture and compares every verdict with its `expected.toml`:
/// each check's status, optionally a word its explanation must contain,
/// and the exit code. Panics with every difference at once.
pub fn assert_fixture(name: &str) {
    assert_expected(&fixture(name), &[]);
}

/// Grades the submission in `dir` (with `args`) and compares it with the
/// `expected.toml` beside its sources; returns the report for more checks.
pub fn assert_expected(dir: &Path, args: &[&str]) -> serde_json::Value {
    assert_expected_at(dir, args, None)
}

/// The same at an isolation level other than full: `expected.toml`'s
/// `[LEVEL]` table (an `exit`, and `[LEVEL.checks]` verdicts) overrides its
/// top-level expectations where they differ at that level.
pub fn assert_expected_at(dir: &Path, args: &[&str], level: Option<&str>) -> serde_json::Value {
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let expected_text = std::fs::read_to_string(dir.join("expected.toml"))
        .unwrap_or_else(|e| panic!("{name}/expected.toml: {e}"));
    let mut expected: toml::Table =
        toml::from_str(&expected_text).unwrap_or_else(|e| panic!("{name}/expected.toml: {e}"));
    let mut args = args.to_vec();
    if let Some(level) = level {
        args.extend(["--isolation", level]);
        let overrides = expected
            .get(level)
            .and_then(|t| t.as_table())
            .cloned()
            .unwrap_or_default();
        if let Some(exit) = overrides.get("exit") {
            expected.insert("exit".into(), exit.clone());
        }
        if let Some(checks) = overrides.get("checks").and_then(|c| c.as_table()) {
            let all = expected
                .get_mut("checks")
                .and_then(|c| c.as_table_mut())
                .expect("[checks] in expected.toml");
            for (id, want) in checks {
                all.insert(id.clone(), want.clone());
            }
        }
    }
    let (code, report) = grade_json(dir, &args);
    if let Some(level) = level {
        assert_eq!(
            report["isolation"]["level"], level,
            "{name} graded at another level"
        );
    }
    let checks = report["checks"].as_array().expect("checks in the report");
    let mut problems = Vec::new();

    let wanted_checks = expected["checks"]
        .as_table()
        .expect("[checks] in expected.toml");
    for (id, want) in wanted_checks {
        let (status, says) = match want {
            toml::Value::String(s) => (s.as_str(), None),
            toml::Value::Table(t) => (
                t["status"].as_str().expect("status"),
                t.get("says").and_then(|s| s.as_str()),
            ),
            other => panic!("{name}: {id} = {other}: use \"status\" or {{ status, says }}"),
        };
        let Some(got) = checks.iter().find(|c| c["id"] == id.as_str()) else {
            problems.push(format!("{id}: not in the report"));
            continue;
        };
        if got["status"] != status {
            problems.push(format!(
                "{id}: expected {status}, got {} ({})",
                got["status"], got["message"]
            ));
        }
        if let Some(word) = says {
            let text = ["message", "expected", "observed", "hint", "skipped_because"]
                .iter()
                .filter_map(|k| got[*k].as_str())
                .collect::<Vec<_>>()
                .join("\n");
            if !text.to_lowercase().contains(&word.to_lowercase()) {
                problems.push(format!(
                    "{id}: expected the report to say {word:?}; it says:\n{text}"
                ));
            }
        }
    }
    // `others = "passed"`: every check not named has that status, so a new
    // check does not need a line in every fixture.
    let others = expected.get("others").and_then(|o| o.as_str());
    for got in checks {
        if wanted_checks.contains_key(got["id"].as_str().unwrap_or("")) {
            continue;
        }
        match others {
            Some(status) if got["status"] == status => {}
            Some(status) => problems.push(format!(
                "{}: expected {status} (as every check not named), got {} ({})",
                got["id"], got["status"], got["message"]
            )),
            None => problems.push(format!("{}: reported but not expected", got["id"])),
        }
    }
    if let Some(want) = expected.get("exit").and_then(|e| e.as_integer())
        && want != code as i64
    {
        problems.push(format!("exit code: expected {want}, got {code}"));
    }
    assert!(
        problems.is_empty(),
        "fixture {name} graded unlike its expected.toml:\n  {}",
        problems.join("\n  ")
    );
    report
}

/// The default rubric with the first `from` replaced by `to`, written to
/// `dir/rubric.toml`.
pub fn rubric_with(dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("grading.toml"))
        .unwrap();
    assert!(text.contains(from), "grading.toml has no {from:?}");
    let path = dir.join("rubric.toml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

/// Polls `ready` every 5 ms until it holds; fails the test, saying `what`
/// was awaited, when it has not within `secs` seconds. Tests wait for
/// observable events this way, never for fixed sleeps.
pub fn wait_until(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(secs),
            "waited {secs} s in vain for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Copies a directory tree, leaving out entries with any of the names in
/// `skip` (a build's `target`, a fixture's `expected.toml`).
pub fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if skip.iter().any(|s| entry.file_name() == *s) {
            continue;
        }
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest, skip);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
pub mod suite;
