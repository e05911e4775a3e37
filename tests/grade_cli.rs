//! `labgrade grade` from the outside: arguments, rubric errors, exit codes,
//! both report formats, and the reference answer graded as a submission.

use std::path::Path;

use assert_cmd::Command;
use mmap_lab_kit::suite::{GRADING, Need, Suite};
use mmap_lab_kit::{fixture, grade_json, labgrade, rubric_with};
use predicates::prelude::*;
use std::process::ExitCode;

fn main() -> ExitCode {
    Suite::new()
        .test(
            "the_reference_copied_out_as_a_submission_scores_full_marks",
            &[Need::Full, Need::Strace, Need::Tool("cargo")],
            the_reference_copied_out_as_a_submission_scores_full_marks,
        )
        .test(
            "a_missing_directory_is_a_usage_error",
            &[],
            a_missing_directory_is_a_usage_error,
        )
        .test(
            "a_bad_rubric_names_its_line_and_key",
            &[],
            a_bad_rubric_names_its_line_and_key,
        )
        .test(
            "an_unknown_check_in_only_is_a_usage_error",
            &[],
            an_unknown_check_in_only_is_a_usage_error,
        )
        .test(
            "the_json_report_has_the_documented_fields",
            GRADING,
            the_json_report_has_the_documented_fields,
        )
        .test(
            "the_human_report_explains_failures_without_colour_when_piped",
            GRADING,
            the_human_report_explains_failures_without_colour_when_piped,
        )
        .test(
            "only_runs_prerequisites_but_reports_what_was_asked",
            GRADING,
            only_runs_prerequisites_but_reports_what_was_asked,
        )
        .test(
            "output_writes_the_report_to_a_file",
            GRADING,
            output_writes_the_report_to_a_file,
        )
        .test(
            "a_rubric_inside_the_submission_is_ignored_unless_named",
            GRADING,
            a_rubric_inside_the_submission_is_ignored_unless_named,
        )
        .test(
            "a_windows_api_submission_is_graded_under_wine",
            &[Need::Full, Need::Tool("wine")],
            a_windows_api_submission_is_graded_under_wine,
        )
        .test(
            "without_wine_a_windows_submission_is_not_graded_not_zero_points",
            &[],
            without_wine_a_windows_submission_is_not_graded,
        )
        .test(
            "doctor_says_what_the_machine_offers_and_exits_0_when_all_is_there",
            &[
                Need::Full,
                Need::Strace,
                Need::Tool("cc"),
                Need::Tool("c++"),
                Need::Tool("make"),
                Need::Tool("cmake"),
                Need::Tool("cargo"),
            ],
            doctor_says_what_the_machine_offers_and_exits_0_when_all_is_there,
        )
        .test(
            "doctor_names_a_missing_tool_with_its_fix_and_exits_1",
            &[],
            doctor_names_a_missing_tool_with_its_fix_and_exits_1,
        )
        .test(
            "doctor_with_a_bad_rubric_names_the_file_and_exits_2",
            &[],
            doctor_with_a_bad_rubric_names_the_file_and_exits_2,
        )
        .test(
            "a_deadline_shorter_than_the_rubrics_own_timeouts_is_a_bad_rubric",
            &[],
            a_deadline_shorter_than_the_rubrics_own_timeouts_is_a_bad_rubric,
        )
        .test(
            "a_missing_build_tool_is_the_graders_error",
            &[],
            a_missing_build_tool_is_the_graders_error,
        )
        .test(
            "grading_twice_gives_the_same_verdicts_and_messages",
            GRADING,
            grading_twice_gives_the_same_verdicts_and_messages,
        )
        .test(
            "a_rubric_can_release_the_writer_with_a_signal",
            GRADING,
            a_rubric_can_release_the_writer_with_a_signal,
        )
        .test(
            "past_the_overall_deadline_the_rest_is_not_run_and_a_report_is_still_written",
            GRADING,
            past_the_overall_deadline_the_rest_is_not_run_and_a_report_is_still_written,
        )
        .test(
            "a_grading_stuck_past_its_deadline_still_writes_every_report",
            GRADING,
            a_grading_stuck_past_its_deadline_still_writes_every_report,
        )
        .test(
            "a_rubric_cannot_point_the_build_outside_the_submission",
            &[],
            a_rubric_cannot_point_the_build_outside_the_submission,
        )
        .test(
            "file_names_that_are_not_utf8_are_graded_and_shown_escaped",
            GRADING,
            file_names_that_are_not_utf8_are_graded_and_shown_escaped,
        )
        .run()
}

fn labgrade_cmd() -> Command {
    Command::new(labgrade())
}

/// A copy of a fixture in a temporary directory, to add files to.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    mmap_lab_kit::copy_tree(&fixture(name), dir.path(), &[]);
    dir
}

fn the_reference_copied_out_as_a_submission_scores_full_marks() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("reference");
    mmap_lab_kit::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("reference"),
        &sub,
        &["target"],
    );
    let (code, report) = grade_json(&sub, &[]);
    let failed: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "passed")
        .map(|c| format!("{}: {}", c["id"], c["message"]))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(report["build"]["method"], "cargo");
    assert_eq!(
        (report["score"].as_f64(), report["max_score"].as_f64()),
        (Some(100.0), Some(100.0))
    );
    assert_eq!(code, 0);
}

fn a_missing_directory_is_a_usage_error() {
    labgrade_cmd()
        .args(["grade", "/no/such/submission"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "/no/such/submission: no such directory",
        ));
}

fn a_bad_rubric_names_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let rubric = dir.path().join("r.toml");
    std::fs::write(
        &rubric,
        "version = 1\n[[check]]\nid = \"build\"\nname = \"b\"\npionts = 10\n",
    )
    .unwrap();
    labgrade_cmd()
        .arg("grade")
        .arg(fixture("c-sample-port"))
        .arg("--rubric")
        .arg(&rubric)
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "r.toml:5:1: check[0].pionts: unknown field `pionts`",
        ));

    labgrade_cmd()
        .arg("grade")
        .arg(fixture("c-sample-port"))
        .args(["--rubric", "/no/such/rubric.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read the rubric"));
}

fn an_unknown_check_in_only_is_a_usage_error() {
    labgrade_cmd()
        .arg("grade")
        .arg(fixture("c-sample-port"))
        .args(["--only", "shm.nonsense"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no check \"shm.nonsense\"")
                .and(predicate::str::contains("shm.handoff")),
        );
}

fn the_json_report_has_the_documented_fields() {
    let (code, r) = grade_json(
        &fixture("c-reader-fixed-string"),
        &["--only", "shm.reader_interop"],
    );
    assert_eq!(code, 1);
    assert_eq!(r["schema_version"], 2);
    assert!(r["grader"]["version"].is_string());
    assert_eq!(r["rubric"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(r["submission"]["sha256"].as_str().unwrap().len(), 64);
    assert!(r["platform"]["os"].is_string() && r["platform"]["arch"].is_string());
    assert!(r["isolation"]["level"].is_string());
    assert_eq!(
        (r["score"].as_f64(), r["max_score"].as_f64()),
        (Some(0.0), Some(10.0))
    );
    assert_eq!(r["complete"], true);
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1);
    let c = &checks[0];
    for key in [
        "id", "name", "status", "message", "expected", "observed", "hint",
    ] {
        assert!(c[key].is_string(), "{key}: {}", c[key]);
    }
    for key in ["score", "max_score", "duration_ms"] {
        assert!(c[key].is_number(), "{key}");
    }
    assert_eq!(c["graded"], true);
    assert!(c["skipped_because"].is_null());
    let runs = c["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let reader = &runs[1];
    assert_eq!(reader["role"], "shm_reader");
    assert_eq!(reader["argv"][0], "./shm_reader");
    assert_eq!(reader["exit"]["code"], 0);
    assert!(reader["exit"]["signal"].is_null());
    assert_eq!(reader["exit"]["timeout"], false);
    assert_eq!(
        reader["stdout"]["excerpt"],
        "Data from shared memory: Shared Memory Data!\n"
    );
    assert_eq!(reader["stdout"]["total_bytes"], 45);
    assert!(reader["stderr"]["total_bytes"].is_number());
    assert!(reader["wall_ms"].is_number());
    assert!(reader["peak_rss_kib"].as_u64().unwrap() > 0);
}

fn the_human_report_explains_failures_without_colour_when_piped() {
    labgrade_cmd()
        .arg("grade")
        .arg(fixture("c-no-ftruncate"))
        .args(["--only", "file.runs"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("✗  0/5   file.runs")
                .and(predicate::str::contains(
                    "ran:      ./mapfile  →  killed by SIGBUS",
                ))
                .and(predicate::str::contains("expected: exit 0 within 5s"))
                .and(predicate::str::contains("hint:     SIGBUS"))
                .and(predicate::str::contains("ftruncate"))
                .and(predicate::str::contains("Score: 0/5"))
                .and(predicate::str::contains("\u{1b}[").not()),
        );
}

fn only_runs_prerequisites_but_reports_what_was_asked() {
    let (code, r) = grade_json(&fixture("c-sample-port"), &["--only", "shm.cleanup"]);
    let ids: Vec<_> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, vec!["shm.cleanup"]);
    assert_eq!(r["checks"][0]["status"], "passed");
    assert_eq!(code, 0);
}

fn output_writes_the_report_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    labgrade_cmd()
        .arg("grade")
        .arg(fixture("c-sample-port"))
        .args(["--only", "build", "--format", "json", "--output"])
        .arg(&out)
        .assert()
        .code(0)
        .stdout("");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report["checks"][0]["id"], "build");
}

fn a_rubric_inside_the_submission_is_ignored_unless_named() {
    let sub = copy_fixture("c-sample-port");
    let own = sub.path().join("grading.toml");
    std::fs::write(
        &own,
        "version = 1\n[[check]]\nid = \"build\"\nname = \"free points\"\npoints = 1000\n",
    )
    .unwrap();
    let (_, r) = grade_json(sub.path(), &["--only", "build"]);
    assert_eq!(r["max_score"], 10.0);
    assert_eq!(r["rubric"]["origin"], "grading.toml (built in)");
    let (_, r) = grade_json(sub.path(), &["--rubric", own.to_str().unwrap()]);
    assert_eq!(r["max_score"], 1000.0);
    assert_eq!(r["checks"].as_array().unwrap().len(), 1);
}

/// A hand-in with only a Windows writer.
fn windows_writer_only() -> tempfile::TempDir {
    let sub = tempfile::tempdir().unwrap();
    std::fs::write(
        sub.path().join("shm_writer.c"),
        "#include <windows.h>\n#include <stdio.h>\nint main(void) { HANDLE h = CreateFileMapping(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 1024, \"Local\\\\MySharedMemory\"); return h == NULL; }\n",
    )
    .unwrap();
    sub
}

/// Written against the Windows API: built with mingw-w64 for Windows, and
/// graded like any other (the missing programs are the learner's).
fn a_windows_api_submission_is_graded_under_wine() {
    let sub = windows_writer_only();
    let (code, r) = grade_json(sub.path(), &["--only", "build"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["build"]["target"], "windows");
    assert_eq!(r["build"]["programs"]["shm_writer"]["built"], true);
    assert_eq!(r["build"]["programs"]["mapfile"]["built"], false);
    assert_eq!(r["complete"], true);
}

/// Where mingw-w64 and Wine are missing, a Windows hand-in is not graded:
/// the grade is incomplete with the whole maximum kept, and says what to
/// install (here the grader's PATH lacks the cross compiler).
fn without_wine_a_windows_submission_is_not_graded() {
    let sub = windows_writer_only();
    let bin = tempfile::tempdir().unwrap();
    for tool in ["bwrap", "strace"] {
        if let Some(found) = ["/usr/bin", "/bin", "/usr/local/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.is_file())
        {
            std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(labgrade())
        .args(["grade", "--format", "json"])
        .arg(sub.path())
        .env("PATH", bin.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("Windows API"), "{error}");
    assert!(error.contains("mingw"), "{error}");
    assert_eq!(r["complete"], false);
    assert_eq!(
        (r["score"].as_f64(), r["max_score"].as_f64()),
        (Some(0.0), Some(100.0)),
        "not graded is not a percentage: the maximum stays whole"
    );
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["graded"] == false)
    );
}

fn a_missing_build_tool_is_the_graders_error() {
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric_building_with(dir.path(), "no-such-compiler-here");
    let (code, r) = grade_json(
        &fixture("c-sample-port"),
        &["--rubric", rubric.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert_eq!(r["complete"], false);
    let build = &r["checks"][0];
    assert_eq!(build["status"], "error");
    assert!(
        build["message"]
            .as_str()
            .unwrap()
            .contains("no-such-compiler-here is not installed"),
        "{build}"
    );
    assert!(
        build["hint"].as_str().unwrap().contains("labgrade doctor"),
        "{build}"
    );
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["graded"] == false),
        "nothing may be charged to the learner"
    );
    assert_eq!(
        (r["score"].as_f64(), r["max_score"].as_f64()),
        (Some(0.0), Some(100.0)),
        "nor may the fault raise a percentage"
    );
}

/// The default rubric with its build command replaced.
fn rubric_building_with(dir: &Path, command: &str) -> std::path::PathBuf {
    rubric_with(
        dir,
        "# command = [\"make\", \"all\"]",
        &format!("command = [\"{command}\"]"),
    )
}

fn doctor_says_what_the_machine_offers_and_exits_0_when_all_is_there() {
    let out = labgrade_cmd()
        .args(["doctor", "--json", "--require", "full"])
        .output()
        .unwrap();
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{d:#}");
    assert_eq!(d["ready"], true);
    assert_eq!(d["level"], "full");
    let topics: Vec<&str> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["topic"].as_str().unwrap())
        .collect();
    for topic in [
        "isolation",
        "bubblewrap",
        "strace",
        "cc",
        "c++",
        "make",
        "cmake",
        "cargo",
        "cgroups",
        "/dev/shm",
    ] {
        assert!(topics.contains(&topic), "{topic} missing from {topics:?}");
    }
    // The terminal form says the same, in lines a person reads.
    labgrade_cmd()
        .arg("doctor")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Ready:"));
}

fn doctor_names_a_missing_tool_with_its_fix_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric_building_with(dir.path(), "no-such-compiler-here");
    let out = labgrade_cmd()
        .args(["doctor", "--json", "--rubric"])
        .arg(&rubric)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["ready"], false);
    let tool = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["topic"] == "no-such-compiler-here")
        .expect("a finding for the rubric's build command");
    assert_eq!(tool["state"], "missing");
    assert_eq!(tool["needed"], true);
    assert!(
        tool["detail"].as_str().unwrap().contains("not installed"),
        "{tool}"
    );
    assert!(tool["fix"].as_str().unwrap().contains("install"), "{tool}");
}

fn doctor_with_a_bad_rubric_names_the_file_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let rubric = dir.path().join("bad.toml");
    std::fs::write(&rubric, "version = 1\n[build]\ncomand = []\n").unwrap();
    labgrade_cmd()
        .args(["doctor", "--rubric"])
        .arg(&rubric)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml:3"));
}

fn grading_twice_gives_the_same_verdicts_and_messages() {
    let args = [
        "--only",
        "shm.reader_interop",
        "shm.no_writer",
        "file.contents",
    ];
    let (_, a) = grade_json(&fixture("c-reader-fixed-string"), &args);
    let (_, b) = grade_json(&fixture("c-reader-fixed-string"), &args);
    let strip = |r: &serde_json::Value| -> Vec<(String, String, String)> {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["status"].to_string(),
                    c["message"].to_string(),
                    c["expected"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(a["submission"]["sha256"], b["submission"]["sha256"]);
}

fn a_rubric_can_release_the_writer_with_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric_with(
        dir.path(),
        "release = \"stdin-line\"",
        "release = \"sigterm\"",
    );
    let rubric = rubric.to_str().unwrap();
    let only = ["--only", "shm.handoff", "shm.cleanup", "--rubric", rubric];
    let (code, r) = grade_json(&fixture("c-writer-polite-signal"), &only);
    assert_eq!(code, 0, "{:#}", r["checks"]);
    // A writer that ignores the signal dies of it, and is told so.
    let (code, r) = grade_json(&fixture("c-sample-port"), &only);
    assert_eq!(code, 1);
    assert_eq!(r["checks"][0]["status"], "failed");
    assert!(
        r["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("SIGTERM")
    );
}

fn past_the_overall_deadline_the_rest_is_not_run_and_a_report_is_still_written() {
    // mapfile waits forever, and may: its own deadline is far away (the
    // rubric's deadline covers that). The grading's deadline, a platform's
    // limit (--deadline), leaves the build ten seconds however loaded the
    // machine, then falls while mapfile waits: the grader's fault, so what
    // was not done is not graded and the maximum stays whole.
    let sub = copy_fixture("c-sample-port");
    std::fs::write(
        sub.path().join("mapfile.c"),
        "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric_with(
        dir.path(),
        "binary = \"mapfile\"\nargs = []\ntimeout = \"5s\"",
        "binary = \"mapfile\"\nargs = []\ntimeout = \"5min\"",
    );
    let text = std::fs::read_to_string(&rubric)
        .unwrap()
        .replace("deadline = \"10min\"", "deadline = \"40min\"");
    std::fs::write(&rubric, text).unwrap();
    let (code, r) = grade_json(
        sub.path(),
        &["--rubric", rubric.to_str().unwrap(), "--deadline", "10s"],
    );
    assert_eq!(code, 2);
    assert_eq!(r["complete"], false);
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 14, "every check is in the report");
    assert_eq!(
        checks[0]["status"], "passed",
        "what was done before the deadline stands"
    );
    for check in &checks[1..] {
        assert_eq!(check["status"], "error", "{check}");
        assert_eq!(check["graded"], false, "{check}");
        assert!(
            check["message"]
                .as_str()
                .unwrap()
                .contains("overall deadline"),
            "{check}"
        );
    }
    assert_eq!(
        (r["score"].as_f64(), r["max_score"].as_f64()),
        (Some(10.0), Some(100.0))
    );
}

fn a_deadline_shorter_than_the_rubrics_own_timeouts_is_a_bad_rubric() {
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric_with(dir.path(), "deadline = \"10min\"", "deadline = \"1min\"");
    labgrade_cmd()
        .args(["grade", "--rubric"])
        .arg(&rubric)
        .arg(fixture("c-sample-port"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("rubric.toml:")
                .and(predicate::str::contains(
                    "deadline: 1m is shorter than the worst case",
                ))
                .and(predicate::str::contains("the build 3m")),
        );
}

fn a_grading_stuck_past_its_deadline_still_writes_every_report() {
    // The grader's own main path hangs before shm.handoff (a test hook, set
    // in the grader's environment, which learner code cannot reach). At the
    // deadline the watchdog writes the report as it stood: what was judged
    // stands, the rest is not graded, and the command ends.
    let out = tempfile::tempdir().unwrap();
    let junit = out.path().join("junit.xml");
    let own_tmp = own_tmpdir();
    let assert = labgrade_cmd()
        .env("LABGRADE_TEST_STALL_BEFORE", "shm.handoff")
        .env("TMPDIR", own_tmp.path())
        .arg("grade")
        .arg(fixture("c-sample-port"))
        .args(["--format", "json", "--deadline", "20s", "--junit"])
        .arg(&junit)
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "its report was written as it stood",
        ));
    let r: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(r["complete"], false);
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 14, "every check is in the report");
    let at = checks
        .iter()
        .position(|c| c["id"] == "shm.handoff")
        .unwrap();
    for check in &checks[at..] {
        assert_eq!(check["status"], "error", "{check}");
        assert_eq!(check["graded"], false, "{check}");
        assert!(
            check["message"].as_str().unwrap().starts_with("not run"),
            "{check}"
        );
    }
    assert!(
        checks[..at]
            .iter()
            .all(|c| c["message"] != "not graded yet"),
        "what was judged before is kept as judged"
    );
    assert_eq!(
        r["max_score"].as_f64(),
        Some(100.0),
        "the maximum stays whole"
    );
    // Nothing unwinds past the watchdog's exit: it removed the run itself.
    let left: Vec<_> = std::fs::read_dir(own_tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the stuck grading left {left:?}");
    let xml = std::fs::read_to_string(&junit).expect("the JUnit file is written too");
    assert!(xml.contains("not run"), "{xml}");
}

fn a_rubric_cannot_point_the_build_outside_the_submission() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "mine").unwrap();
    for (from, to, key) in [
        (
            "binaries = []",
            format!("binaries = [{:?}]", victim.display().to_string()),
            "build.binaries",
        ),
        (
            "binaries = []",
            "binaries = [\"../..\"]".to_string(),
            "build.binaries",
        ),
        (
            "binary = \"mapfile\"",
            format!("binary = {:?}", victim.join("keep").display().to_string()),
            "programs.mapfile.binary",
        ),
    ] {
        let rubric = rubric_with(dir.path(), from, &to);
        let line = std::fs::read_to_string(&rubric)
            .unwrap()
            .lines()
            .position(|l| l.trim_start().starts_with(&to))
            .unwrap()
            + 1;
        labgrade_cmd()
            .args(["grade", "--rubric"])
            .arg(&rubric)
            .arg(fixture("c-sample-port"))
            .assert()
            .code(2)
            .stdout("")
            .stderr(
                predicate::str::contains(format!("rubric.toml:{line}:"))
                    .and(predicate::str::contains(key)),
            );
    }
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
}

fn file_names_that_are_not_utf8_are_graded_and_shown_escaped() {
    use std::os::unix::ffi::OsStrExt;
    // A learner's stray file with a name that is not UTF-8, another with a
    // terminal escape in it: the submission is graded as usual, and the
    // names appear escaped wherever they are shown.
    let sub = copy_fixture("c-sample-port");
    let odd = std::ffi::OsStr::from_bytes(b"notes-\xff\xfe.txt");
    std::fs::write(sub.path().join(odd), "latin-1").unwrap();
    std::fs::write(sub.path().join("x\u{1b}[2Jy.txt"), "escape").unwrap();
    let (_, r) = grade_json(sub.path(), &["--only", "file.contents"]);
    assert_eq!(r["complete"], true, "{r:#}");
    let text = r.to_string();
    assert!(!text.contains('\u{1b}'), "no raw escape in the report");
    let (_, again) = grade_json(sub.path(), &["--only", "file.contents"]);
    assert_eq!(
        r["submission"]["sha256"], again["submission"]["sha256"],
        "the same files hash the same"
    );
    labgrade_cmd()
        .arg("grade")
        .arg(sub.path())
        .args(["--only", "file.contents"])
        .assert()
        .stdout(predicate::str::contains('\u{1b}').not());
}

/// A TMPDIR of a test's own, which learner code (another uid) can pass.
fn own_tmpdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}
