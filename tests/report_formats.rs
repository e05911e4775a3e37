//! Every output format from one grading run, checked against what its
//! consumer expects: Gradescope and GitHub Classroom results against JSON
//! schemas written from their specifications, JUnit XML parsed back, the
//! Markdown report, the Gradescope package, and the Classroom workflow
//! parsed as YAML.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use mmap_lab_kit::suite::{GRADING, Suite};
use mmap_lab_kit::{copy_tree, fixture, labgrade};
use std::process::ExitCode;

fn main() -> ExitCode {
    Suite::new()
        .test(
            "one_run_writes_json_junit_markdown_and_classroom_that_agree",
            GRADING,
            one_run_writes_json_junit_markdown_and_classroom_that_agree,
        )
        .test(
            "gradescope_results_follow_the_specification",
            GRADING,
            gradescope_results_follow_the_specification,
        )
        .test(
            "gradescope_always_writes_results_even_when_grading_cannot_happen",
            GRADING,
            gradescope_always_writes_results_even_when_grading_cannot_happen,
        )
        .test(
            "gradescope_writes_results_even_when_the_grading_is_stuck",
            GRADING,
            gradescope_writes_results_even_when_the_grading_is_stuck,
        )
        .test(
            "the_gradescope_package_holds_setup_run_autograder_the_rubric_and_the_kit",
            &[],
            the_gradescope_package_holds_setup_run_autograder_the_rubric_and_the_kit,
        )
        .test(
            "the_classroom_workflow_feeds_the_reporter_one_runner_per_check",
            &[],
            the_classroom_workflow_feeds_the_reporter_one_runner_per_check,
        )
        .run()
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemas")
        .join(name);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, value: &serde_json::Value) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{value:#}");
}

/// Runs `labgrade grade` writing every format at once into `dir`.
fn grade_all(submission: &Path, dir: &Path, extra: &[&str]) -> i32 {
    let status = Command::new(labgrade())
        .arg("grade")
        .arg(submission)
        .args(["--format", "human", "--json"])
        .arg(dir.join("r.json"))
        .arg("--junit")
        .arg(dir.join("r.xml"))
        .arg("--markdown")
        .arg(dir.join("r.md"))
        .arg("--classroom")
        .arg(dir.join("outputs"))
        .args(extra)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    status.code().unwrap()
}

fn one_run_writes_json_junit_markdown_and_classroom_that_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let only = [
        "--only",
        "build",
        "file.runs",
        "file.output",
        "shm.reader_interop",
        "shm.cleanup",
    ];
    let code = grade_all(&fixture("c-reader-fixed-string"), tmp.path(), &only);
    assert_eq!(code, 1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("r.json")).unwrap()).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 5);

    // JUnit: one test case per check, the failure with its message and
    // account, points as properties.
    let xml = std::fs::read_to_string(tmp.path().join("r.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suites = doc.root_element();
    assert_eq!(suites.tag_name().name(), "testsuites");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), checks.len());
    let failed = cases
        .iter()
        .find(|c| c.attribute("name") == Some("shm.reader_interop"))
        .unwrap();
    let failure = failed
        .children()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert_eq!(
        failure.attribute("message"),
        Some("the reader did not print the line")
    );
    assert!(failure.text().unwrap().contains("fixed string"));
    let prop = |case: &roxmltree::Node, name: &str| {
        case.descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
            .map(String::from)
    };
    assert_eq!(prop(failed, "points").as_deref(), Some("0"));
    assert_eq!(prop(failed, "max_points").as_deref(), Some("10"));
    let build = cases
        .iter()
        .find(|c| c.attribute("name") == Some("build"))
        .unwrap();
    assert_eq!(prop(build, "points").as_deref(), Some("10"));
    assert_eq!(suites.attribute("failures"), Some("1"));

    // Markdown: the same content as the terminal report.
    let md = std::fs::read_to_string(tmp.path().join("r.md")).unwrap();
    assert!(md.contains("**Score: 25/35**"), "{md}");
    assert!(md.contains("| ❌ | 0/10 | `shm.reader_interop`"), "{md}");
    assert!(
        md.contains("**hint:**") && md.contains("fixed string"),
        "{md}"
    );

    // Classroom: one runner per check, ids without dots, each valid.
    let validator = schema("classroom-result.schema.json");
    let outputs = std::fs::read_to_string(tmp.path().join("outputs")).unwrap();
    let mut runners = Vec::new();
    for line in outputs.lines() {
        let (id, encoded) = line.split_once('=').unwrap();
        assert!(
            !id.contains('.') && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{id}"
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let result: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
        assert_valid(&validator, &result);
        runners.push((id.to_string(), result));
    }
    let ids: Vec<&str> = runners.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "build",
            "file_runs",
            "file_output",
            "shm_reader_interop",
            "shm_cleanup"
        ]
    );
    let interop = &runners[3].1;
    assert_eq!(interop["status"], "fail");
    assert_eq!(interop["max_score"], 10.0);
    assert_eq!(runners[0].1["tests"][0]["score"], 10.0);
}

/// A fake /autograder: the submission, optionally a rubric in source/.
fn autograder(submission: Option<&str>, rubric: Option<&str>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("source")).unwrap();
    std::fs::create_dir_all(root.path().join("submission")).unwrap();
    if let Some(name) = submission {
        copy_tree(
            &fixture(name),
            &root.path().join("submission"),
            &["expected.toml"],
        );
    }
    if let Some(text) = rubric {
        std::fs::write(root.path().join("source/grading.toml"), text).unwrap();
    }
    root
}

fn run_gradescope(root: &Path) -> serde_json::Value {
    run_gradescope_with(root, &[])
}

fn run_gradescope_with(root: &Path, args: &[&str]) -> serde_json::Value {
    run_gradescope_env(root, args, &[])
}

fn run_gradescope_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let status = Command::new(labgrade())
        .arg("gradescope")
        .args(args)
        .env("LABGRADE_AUTOGRADER_ROOT", root)
        .envs(env.iter().copied())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(root.join("results/results.json"))
        .expect("results.json is always written");
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_valid(&schema("gradescope-results.schema.json"), &results);
    results
}

fn rubric_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("grading.toml")).unwrap()
}

fn gradescope_results_follow_the_specification() {
    // Hidden checks take the rubric's visibility; the rest are visible.
    let rubric = rubric_text().replace(
        "id = \"shm.large\"\nname = \"A 256 MiB region without 256 MiB of memory\"",
        "id = \"shm.large\"\nname = \"A 256 MiB region without 256 MiB of memory\"\nhidden = true",
    );
    let root = autograder(Some("c-writer-memset"), Some(&rubric));
    let results = run_gradescope(root.path());
    let tests = results["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 14);
    assert_eq!(results["score"], 90.0);
    assert_eq!(results["stdout_visibility"], "hidden");
    assert!(results["execution_time"].as_f64().unwrap() > 0.0);
    let large = tests.iter().find(|t| t["tags"][0] == "shm.large").unwrap();
    assert_eq!(large["visibility"], "after_published");
    assert_eq!(large["status"], "failed");
    assert!(large["output"].as_str().unwrap().contains("memset"));
    assert!(
        tests
            .iter()
            .filter(|t| t["tags"][0] != "shm.large")
            .all(|t| t["visibility"] == "visible")
    );
    assert_eq!(tests[0]["number"], "1");
}

fn gradescope_always_writes_results_even_when_grading_cannot_happen() {
    // Nothing builds: every check reported, score 0.
    let root = autograder(None, None);
    std::fs::write(
        root.path().join("submission/notes.txt"),
        "I ran out of time",
    )
    .unwrap();
    let results = run_gradescope(root.path());
    assert_eq!(results["score"], 0.0);
    assert_eq!(results["tests"].as_array().unwrap().len(), 14);

    // A broken rubric: no grade, but a results.json that says why.
    let root = autograder(
        Some("c-sample-port"),
        Some("version = 1\n[[check]]\nid = \"nope\"\n"),
    );
    let results = run_gradescope(root.path());
    assert_eq!(results["tests"].as_array().unwrap().len(), 0);
    assert!(
        results["output"]
            .as_str()
            .unwrap()
            .contains("rubric is invalid")
    );

    // No submission directory at all.
    let root = autograder(None, None);
    std::fs::remove_dir(root.path().join("submission")).unwrap();
    let results = run_gradescope(root.path());
    assert!(
        results["output"]
            .as_str()
            .unwrap()
            .contains("no such directory")
    );

    // The overall deadline: what was not done is reported, not lost, and
    // not graded: its points stay in each test's max_score, a visible test
    // says the grade is incomplete, and extra_data says so to scripts. The
    // hand-in's reader waits out its 5 s in shm.no_writer, so the deadline
    // falls there however fast the rest is graded.
    let root = autograder(Some("c-reader-waits-forever"), None);
    let results = run_gradescope_with(root.path(), &["--deadline", "1500ms"]);
    assert!(
        results["output"].as_str().unwrap().contains("Incomplete"),
        "{results:#}"
    );
    assert_eq!(results["extra_data"]["incomplete"], true);
    let tests = results["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 15, "every check, and the incomplete notice");
    let notice = tests.last().unwrap();
    assert_eq!(notice["name"], "Grading incomplete");
    assert_eq!(notice["visibility"], "visible");
    assert_eq!(notice["max_score"], 0.0);
    assert!(notice["output"].as_str().unwrap().contains("regrade"));
    let last = &tests[13];
    assert!(
        last["output"]
            .as_str()
            .unwrap()
            .contains("overall deadline"),
        "{last:#}"
    );
    assert!(last["output"].as_str().unwrap().starts_with("Not graded"));
    assert_eq!(last["max_score"], 10.0, "the maximum stays whole");
    assert_eq!(last["score"], 0.0);
}

fn gradescope_writes_results_even_when_the_grading_is_stuck() {
    // The grader's main path hangs before shm.handoff (a test hook in the
    // grader's environment). At the deadline the watchdog writes
    // results.json as it stood, and the command exits 0 as Gradescope wants.
    let root = autograder(Some("c-sample-port"), None);
    let own_tmp = tempfile::tempdir().unwrap();
    let results = run_gradescope_env(
        root.path(),
        &["--deadline", "20s"],
        &[
            ("LABGRADE_TEST_STALL_BEFORE", "shm.handoff"),
            ("TMPDIR", own_tmp.path().to_str().unwrap()),
        ],
    );
    let left: Vec<_> = std::fs::read_dir(own_tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the stuck grading left {left:?}");
    assert_eq!(results["extra_data"]["incomplete"], true, "{results:#}");
    let tests = results["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 15, "every check, and the incomplete notice");
    let handoff = tests
        .iter()
        .find(|t| t["tags"][0] == "shm.handoff")
        .unwrap();
    assert!(
        handoff["output"]
            .as_str()
            .unwrap()
            .starts_with("Not graded"),
        "{handoff:#}"
    );
    assert_eq!(handoff["max_score"], 10.0, "the maximum stays whole");
}

fn the_gradescope_package_holds_setup_run_autograder_the_rubric_and_the_kit() {
    let tmp = tempfile::tempdir().unwrap();
    let zip_path = tmp.path().join("autograder.zip");
    let out = Command::new(labgrade())
        .args(["package", "gradescope", "--out"])
        .arg(&zip_path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    for needed in [
        "setup.sh",
        "run_autograder",
        "grading.toml",
        "kit/harness/Cargo.toml",
        "kit/Cargo.lock",
        "kit/grading.toml",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} missing from {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("kit/target/") || n.starts_with("kit/fixtures/"))
    );
    let mode = zip.by_name("run_autograder").unwrap().unix_mode().unwrap();
    assert_eq!(mode & 0o111, 0o111, "run_autograder must be executable");
    let mut setup = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("setup.sh").unwrap(), &mut setup).unwrap();
    assert!(
        setup.contains("apt-get install")
            && setup.contains("bubblewrap")
            && setup.contains("strace")
    );
    assert!(setup.contains("cargo install --locked --path /autograder/source/kit/harness"));
}

fn the_classroom_workflow_feeds_the_reporter_one_runner_per_check() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(labgrade())
        .args(["init", "github"])
        .arg(tmp.path())
        .args(["--kit", "https://example.org/kit.git"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let path: PathBuf = tmp.path().join(".github/workflows/labgrade.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let steps = docs[0]["jobs"]["grade"]["steps"].as_vec().unwrap();
    let grade = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("grade"))
        .expect("a step with id grade");
    let run = grade["run"].as_str().unwrap();
    assert!(
        run.contains("labgrade grade") && run.contains("--classroom \"$GITHUB_OUTPUT\""),
        "{run}"
    );
    assert!(
        run.contains("GITHUB_STEP_SUMMARY"),
        "the Markdown report goes to the job summary"
    );
    assert!(steps.iter().any(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/upload-artifact"))
    }));
    assert!(text.contains("cargo install --locked --git https://example.org/kit.git labgrade"));
    let reporter = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("classroom-resources/autograding-grading-reporter"))
        })
        .expect("the reporter step");
    let runners: Vec<&str> = reporter["with"]["runners"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(runners.len(), 14);
    for runner in runners {
        assert!(!runner.contains('.'), "{runner}");
        let env = reporter["env"][format!("{}_RESULTS", runner.to_uppercase()).as_str()].as_str();
        assert_eq!(
            env,
            Some(format!("${{{{ steps.grade.outputs.{runner} }}}}").as_str())
        );
    }
}
