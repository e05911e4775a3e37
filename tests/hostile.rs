//! The hostile corpus: submissions that attack the grader or the machine.
//! Each is graded with its expected verdicts; afterwards no learner process
//! may be left, nothing outside the run may have changed, and the report
//! must still be complete and name its isolation level.
//!
//! These gradings use job slot 7, so their learner code runs as uid
//! UID_BASE + 7 and no other test's processes are mistaken for leftovers;
//! they run one at a time (a file lock, so also under nextest). They need
//! root (that uid) and full isolation (the verdicts assume it): where the
//! machine lacks either, they are reported as ignored, and fail in CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mmap_lab_kit::suite::{Need, Suite};
use mmap_lab_kit::{assert_expected_at, grade_json, rubric_with, wait_until};
use serial_test::file_serial;

/// What every hostile grading needs.
const HOSTILE: &[Need] = &[Need::Root, Need::Full, Need::Strace];
/// What one at the uid level needs (as in Gradescope's container).
const AT_UID: &[Need] = &[Need::Root, Need::Strace];

const SLOT: &str = "7";
/// labgrade's first unprivileged uid (harness/src/sandbox/mod.rs), plus SLOT.
const LEARNER_UID: u32 = 64000 + 7;

fn main() -> ExitCode {
    Suite::new()
        .test(
            "learner_caused_errors_are_charged_to_the_learner",
            HOSTILE,
            learner_caused_errors_at_full,
        )
        .test(
            "learner_caused_errors_are_charged_to_the_learner_at_uid",
            AT_UID,
            learner_caused_errors_at_uid,
        )
        .test(
            "learner_code_cannot_run_or_copy_the_grader",
            HOSTILE,
            the_grader_out_of_reach_at_full,
        )
        .test(
            "learner_code_cannot_run_or_copy_the_grader_at_uid",
            AT_UID,
            the_grader_out_of_reach_at_uid,
        )
        .test(
            "the_rubric_and_the_secret_key_cannot_be_read",
            HOSTILE,
            the_rubric_and_the_secret_key_cannot_be_read,
        )
        .test(
            "on_gradescope_the_rubric_and_the_key_cannot_be_read_at_uid",
            AT_UID,
            on_gradescope_the_rubric_and_the_key_cannot_be_read_at_uid,
        )
        .test(
            "a_nested_grading_cannot_learn_the_random_message",
            HOSTILE,
            a_nested_grading_cannot_learn_the_random_message,
        )
        .test(
            "evidence_cannot_be_evaded",
            HOSTILE,
            evidence_cannot_be_evaded,
        )
        .test(
            "what_learner_code_leaves_is_never_followed_or_waited_on",
            HOSTILE,
            left_things_at_full,
        )
        .test(
            "what_learner_code_leaves_is_never_followed_or_waited_on_at_uid",
            AT_UID,
            left_things_at_uid,
        )
        .test(
            "inherited_descriptors_never_reach_learner_code",
            HOSTILE,
            inherited_descriptors_at_full,
        )
        .test(
            "inherited_descriptors_never_reach_learner_code_at_uid",
            AT_UID,
            inherited_descriptors_at_uid,
        )
        .test(
            "built_programs_cannot_be_rewritten_between_runs_at_uid",
            AT_UID,
            built_programs_are_fixed_at_uid,
        )
        .test(
            "the_disk_learner_code_can_fill_is_bounded",
            HOSTILE,
            the_disk_is_bounded,
        )
        .test(
            "the_disk_learner_code_can_fill_is_bounded_at_uid",
            AT_UID,
            the_disk_is_bounded_at_uid,
        )
        .test(
            "reports_cannot_be_poisoned",
            HOSTILE,
            reports_cannot_be_poisoned,
        )
        .test(
            "an_infinite_loop_is_stopped_by_its_cpu_limit",
            HOSTILE,
            an_infinite_loop_is_stopped_by_its_cpu_limit,
        )
        .test(
            "under_wine_limits_and_the_sweep_hold",
            &[Need::Root, Need::Full, Need::Strace, Need::Tool("wine")],
            under_wine_limits_and_the_sweep_hold,
        )
        .test(
            "a_windows_grading_killed_midway_leaves_no_wine_process",
            &[Need::Root, Need::Tool("wine")],
            a_windows_grading_killed_midway_leaves_no_wine_process,
        )
        .test(
            "a_program_that_sleeps_forever_is_stopped_at_its_deadline",
            HOSTILE,
            a_program_that_sleeps_forever_is_stopped_at_its_deadline,
        )
        .test(
            "a_fork_storm_is_contained",
            HOSTILE,
            a_fork_storm_is_contained,
        )
        .test(
            "detached_daemons_are_found_and_killed",
            HOSTILE,
            detached_daemons_are_found_and_killed,
        )
        .test(
            "an_output_flood_is_kept_to_a_bound_and_counted",
            HOSTILE,
            an_output_flood_is_kept_to_a_bound_and_counted,
        )
        .test(
            "a_huge_file_is_stopped_at_the_file_size_limit",
            HOSTILE,
            a_huge_file_is_stopped_at_the_file_size_limit,
        )
        .test(
            "a_memory_hog_is_stopped_at_the_memory_limit",
            HOSTILE,
            a_memory_hog_is_stopped_at_the_memory_limit,
        )
        .test(
            "killing_everything_reaches_only_the_sandbox",
            HOSTILE,
            killing_everything_reaches_only_the_sandbox,
        )
        .test(
            "writes_outside_the_working_directory_land_nowhere",
            HOSTILE,
            writes_outside_the_working_directory_land_nowhere,
        )
        .test(
            "other_submissions_cannot_be_read",
            HOSTILE,
            other_submissions_cannot_be_read,
        )
        .test(
            "a_hundred_shm_objects_leave_with_the_grading",
            HOSTILE,
            a_hundred_shm_objects_leave_with_the_grading,
        )
        .test(
            "a_writer_that_holds_forever_is_killed",
            HOSTILE,
            a_writer_that_holds_forever_is_killed,
        )
        .test(
            "fake_grader_output_changes_nothing",
            HOSTILE,
            fake_grader_output_changes_nothing,
        )
        .test(
            "a_hostile_makefile_is_contained_too",
            HOSTILE,
            a_hostile_makefile_is_contained_too,
        )
        .test(
            "at_the_uid_level_leftovers_are_still_swept",
            &[Need::Root, Need::Strace],
            at_the_uid_level_leftovers_are_still_swept,
        )
        .test(
            "an_interrupted_grading_still_writes_its_report",
            &[Need::Root],
            an_interrupted_grading_still_writes_its_report,
        )
        .run()
}

fn hostile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hostile")
        .join(name)
}

/// Paths the hostile programs try to leave marks at, on this machine.
const MARKS: &[&str] = &[
    "/tmp/labgrade-hostile-was-here",
    "/labgrade-hostile-was-here",
    "/etc/labgrade-hostile-was-here",
    "/root/labgrade-hostile-was-here",
    "/tmp/labgrade-hostile-make-was-here",
    "/tmp/report.json",
    "/autograder",
];

/// Every file under `dir` with its contents, to see that nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Processes still running as the learner uid of SLOT.
fn learner_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let uid: u32 = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            (uid == LEARNER_UID && !zombie).then(|| {
                let cmd =
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!("{pid}: {}", cmd.replace('\0', " "))
            })
        })
        .collect()
}

/// What learner code left in the machine's /dev/shm and /tmp: anything its
/// uid owns, and the hostile corpus's own names.
fn shm_litter() -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    ["/dev/shm", "/tmp"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("labgrade-litter")
                || name.starts_with("junk-")
                || e.path()
                    .symlink_metadata()
                    .is_ok_and(|m| m.uid() == LEARNER_UID)
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Grades one hostile fixture at full isolation and checks the aftermath.
fn grade_hostile(name: &str) -> serde_json::Value {
    grade_hostile_at(name, None, &[])
}

/// The same at `level` (None: full), with more arguments for labgrade.
fn grade_hostile_at(name: &str, level: Option<&str>, args: &[&str]) -> serde_json::Value {
    let dir = hostile(name);
    let before = snapshot(&dir);
    let mut all = vec!["--slot", SLOT];
    all.extend(args);
    let report = assert_expected_at(&dir, &all, level);
    assert_eq!(report["isolation"]["level"], level.unwrap_or("full"));
    assert_eq!(
        report["complete"], true,
        "a hostile submission must not make the grade incomplete"
    );
    assert!(
        learner_processes().is_empty(),
        "left running: {:#?}",
        learner_processes()
    );
    for mark in MARKS {
        assert!(
            !Path::new(mark).exists(),
            "{name} left {mark} on the machine"
        );
    }
    assert!(
        shm_litter().is_empty(),
        "{name} left objects in /dev/shm: {:?}",
        shm_litter()
    );
    assert!(before == snapshot(&dir), "{name} changed its own sources");
    report
}

/// A run record of `check` whose role is `role`.
fn run_of<'a>(report: &'a serde_json::Value, check: &str, role: &str) -> &'a serde_json::Value {
    let c = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == check)
        .unwrap();
    c["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == role)
        .unwrap()
}

#[file_serial(hostile)]
fn an_infinite_loop_is_stopped_by_its_cpu_limit() {
    let r = grade_hostile("hostile-infinite-loop");
    assert_eq!(
        run_of(&r, "file.runs", "mapfile")["exit"]["signal"],
        "SIGXCPU"
    );
}

/// A Windows hand-in that spins and spawns: the CPU limit stops the loop,
/// the writer's child is found and killed, and no Wine process (server,
/// services, programs) is left once the grading is over.
#[file_serial(hostile)]
fn under_wine_limits_and_the_sweep_hold() {
    let r = grade_hostile("hostile-windows");
    assert_eq!(
        run_of(&r, "file.runs", "mapfile")["exit"]["signal"],
        "SIGXCPU"
    );
    assert!(
        run_of(&r, "shm.cleanup", "shm_writer")["left_behind"]
            .as_u64()
            .unwrap()
            > 0
    );
}

/// A Windows grading interrupted while Wine runs the learner's programs
/// (SIGTERM, as a CI runner or a batch's Ctrl-C sends it), at both levels:
/// no process of the learner uid, Wine's server and services included, is
/// left once labgrade has exited. At the uid level the server daemonises
/// with nothing to die with but what the grader tells it.
#[file_serial(hostile)]
fn a_windows_grading_killed_midway_leaves_no_wine_process() {
    for level in ["uid", "full"] {
        let mut child = std::process::Command::new(mmap_lab_kit::labgrade())
            .args(["grade", "--slot", SLOT, "--isolation", level])
            .arg(mmap_lab_kit::fixture("win-sample-port"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed while a learner's Windows program is running.
        wait_until(120, "a learner's Windows program running", || {
            learner_processes().iter().any(|p| p.contains("shm_"))
        });
        // SAFETY: signalling our own child, still unreaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let mut ended = None;
        wait_until(60, "labgrade to end after SIGTERM", || {
            ended = child.try_wait().unwrap();
            ended.is_some()
        });
        assert!(
            learner_processes().is_empty(),
            "left running at {level}: {:#?}",
            learner_processes()
        );
    }
}

#[file_serial(hostile)]
fn a_program_that_sleeps_forever_is_stopped_at_its_deadline() {
    let r = grade_hostile("hostile-sleeps-forever");
    assert_eq!(run_of(&r, "file.runs", "mapfile")["exit"]["timeout"], true);
}

#[file_serial(hostile)]
fn a_fork_storm_is_contained() {
    grade_hostile("hostile-fork-storm");
}

#[file_serial(hostile)]
fn detached_daemons_are_found_and_killed() {
    let r = grade_hostile("hostile-daemons");
    assert!(
        run_of(&r, "shm.cleanup", "shm_writer")["left_behind"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[file_serial(hostile)]
fn an_output_flood_is_kept_to_a_bound_and_counted() {
    let r = grade_hostile("hostile-output-flood");
    let run = run_of(&r, "file.runs", "mapfile");
    assert!(run["stdout"]["total_bytes"].as_u64().unwrap() > 400 << 20);
    assert!(run["stdout"]["excerpt"].as_str().unwrap().len() < 4096);
    assert!(run["limits_hit"][0].as_str().unwrap().starts_with("output"));
}

#[file_serial(hostile)]
fn a_huge_file_is_stopped_at_the_file_size_limit() {
    let r = grade_hostile("hostile-huge-file");
    assert_eq!(
        run_of(&r, "file.runs", "mapfile")["exit"]["signal"],
        "SIGXFSZ"
    );
}

#[file_serial(hostile)]
fn a_memory_hog_is_stopped_at_the_memory_limit() {
    // Touching the 768 MiB memory limit takes about 1 s of system time
    // here, well inside mapfile's default CPU limit (half its 5 s); a
    // longer timeout keeps a wide margin on a loaded machine.
    let dir = tempfile::tempdir().unwrap();
    let rubric = mmap_lab_kit::rubric_with(
        dir.path(),
        "[programs.mapfile]\nbinary = \"mapfile\"\nargs = []\ntimeout = \"5s\"",
        "[programs.mapfile]\nbinary = \"mapfile\"\nargs = []\ntimeout = \"40s\"",
    );
    grade_hostile_at(
        "hostile-memory-hog",
        None,
        &["--rubric", rubric.to_str().unwrap()],
    );
}

#[file_serial(hostile)]
fn killing_everything_reaches_only_the_sandbox() {
    grade_hostile("hostile-kill-everything");
}

#[file_serial(hostile)]
fn writes_outside_the_working_directory_land_nowhere() {
    grade_hostile("hostile-writes-outside");
}

#[file_serial(hostile)]
fn other_submissions_cannot_be_read() {
    grade_hostile("hostile-reads-others");
}

#[file_serial(hostile)]
fn a_hundred_shm_objects_leave_with_the_grading() {
    grade_hostile("hostile-shm-litter");
}

#[file_serial(hostile)]
fn a_writer_that_holds_forever_is_killed() {
    grade_hostile("hostile-holds-forever");
}

#[file_serial(hostile)]
fn fake_grader_output_changes_nothing() {
    let r = grade_hostile("hostile-fake-report");
    assert_eq!(r["score"], 80.0);
    assert!(r["checks"][0]["status"] == "passed");
}

#[file_serial(hostile)]
fn a_hostile_makefile_is_contained_too() {
    let r = grade_hostile("hostile-makefile");
    let build = &r["checks"][0]["runs"][0];
    assert!(
        build["left_behind"].as_u64().unwrap() > 0,
        "the daemon make started was not seen"
    );
}

/// Below full isolation the grader must still survive and clean up, even
/// if the verdicts differ: a fork storm and daemons at the uid level.
#[file_serial(hostile)]
fn at_the_uid_level_leftovers_are_still_swept() {
    // System V objects live in the machine's IPC namespace at this level:
    // the learner uid's go with the grading.
    grade_hostile_at("hostile-sysv-litter", Some("uid"), &[]);
    let owned: Vec<String> = ["shm", "sem"]
        .iter()
        .flat_map(|table| {
            let text = std::fs::read_to_string(format!("/proc/sysvipc/{table}")).unwrap();
            text.lines()
                .skip(1)
                .filter(|l| {
                    // uid is the 8th column of shm, the 5th of sem.
                    let uid_at = if *table == "shm" { 7 } else { 4 };
                    l.split_whitespace().nth(uid_at) == Some(&LEARNER_UID.to_string())
                })
                .map(|l| format!("{table}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(owned.is_empty(), "left in the machine's IPC: {owned:#?}");
    let (_, r) = grade_json(
        &hostile("hostile-daemons"),
        &[
            "--slot",
            SLOT,
            "--isolation",
            "uid",
            "--only",
            "shm.cleanup",
        ],
    );
    assert_eq!(r["isolation"]["level"], "uid", "the uid level needs root");
    assert_eq!(r["checks"][0]["status"], "failed", "{}", r["checks"][0]);
    assert!(
        learner_processes().is_empty(),
        "left running: {:#?}",
        learner_processes()
    );
    let (_, r) = grade_json(
        &hostile("hostile-fork-storm"),
        &[
            "--slot",
            SLOT,
            "--isolation",
            "uid",
            "--only",
            "shm.no_writer",
        ],
    );
    assert_eq!(r["checks"][0]["status"], "failed");
    assert!(
        learner_processes().is_empty(),
        "left running: {:#?}",
        learner_processes()
    );
}

/// SIGTERM to the grader mid-grading: the learner processes die, the rest
/// of the checks are marked as not run, and the report is still written.
#[file_serial(hostile)]
fn an_interrupted_grading_still_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let report_path = out.path().join("report.json");
    let mut grader = std::process::Command::new(mmap_lab_kit::labgrade())
        .arg("grade")
        .arg(hostile("hostile-sleeps-forever"))
        .args(["--slot", SLOT, "--format", "json", "--output"])
        .arg(&report_path)
        .env("TMPDIR", tmp.path())
        .spawn()
        .unwrap();
    // Wait until learner code runs (its build, as a rule), then interrupt.
    mmap_lab_kit::wait_until(60, "a learner process to run", || {
        !learner_processes().is_empty()
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(grader.id() as i32, libc::SIGTERM) };
    let status = grader.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the interrupted grading left {left:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["complete"], false);
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 14);
    assert!(
        checks.iter().any(|c| c["message"]
            .as_str()
            .unwrap()
            .contains("interrupted (SIGTERM)")),
        "{checks:#?}"
    );
    assert!(
        learner_processes().is_empty(),
        "left running: {:#?}",
        learner_processes()
    );
}

#[file_serial(hostile)]
fn learner_caused_errors_at_full() {
    learner_caused_errors_are_charged_to_the_learner(None)
}

#[file_serial(hostile)]
fn learner_caused_errors_at_uid() {
    learner_caused_errors_are_charged_to_the_learner(Some("uid"))
}

#[file_serial(hostile)]
fn the_grader_out_of_reach_at_full() {
    learner_code_cannot_run_or_copy_the_grader(None)
}

#[file_serial(hostile)]
fn the_grader_out_of_reach_at_uid() {
    learner_code_cannot_run_or_copy_the_grader(Some("uid"))
}

/// What learner code makes the grader's own steps fail at is the learner's
/// failure, never a grader error: a directory where the region goes, a
/// /dev/shm filled so that the grader's writer dies, a build slow enough to
/// eat the deadline (each step in time, all of them not).
fn learner_caused_errors_are_charged_to_the_learner(level: Option<&str>) {
    for name in ["hostile-mkdir-region", "hostile-fills-shm"] {
        let r = grade_hostile_at(name, level, &[]);
        assert_eq!(r["complete"], true, "{name}");
        assert!(
            r["checks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["graded"] == true),
            "{name}: nothing the learner caused is a grader fault"
        );
        assert_eq!(r["max_score"], 100.0, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric_with(dir.path(), "timeout = \"3min\"", "timeout = \"6s\"");
    let r = grade_hostile_at(
        "hostile-slow-build",
        level,
        &["--rubric", rubric.to_str().unwrap()],
    );
    assert_eq!(
        (r["score"].as_f64(), r["max_score"].as_f64()),
        (Some(0.0), Some(100.0))
    );
}

/// Learner code can run the grader in no mode, nor pass off a link to, or
/// a copy of, a program from outside its build.
fn learner_code_cannot_run_or_copy_the_grader(level: Option<&str>) {
    for name in [
        "hostile-ref-exec",
        "hostile-prog-symlink",
        "hostile-prog-copy",
    ] {
        let r = grade_hostile_at(name, level, &[]);
        let shm_passed: Vec<&str> = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["id"].as_str().unwrap().starts_with("shm.")
                    && c["id"] != "shm.no_writer"
                    && c["status"] == "passed"
            })
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert!(shm_passed.is_empty(), "{name}: {shm_passed:?} passed");
    }
}

/// A rubric and a secret key with markers, in directories anyone may read:
/// (rubric, key, marker).
fn marked_rubric_and_key(dir: &Path) -> (PathBuf, PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let marker = format!("marker-{}-{}", std::process::id(), line!());
    let rubric = rubric_with(dir, "version = 1", &format!("version = 1\n# {marker}"));
    let key = dir.join("secret.key");
    std::fs::write(&key, format!("{marker} secret")).unwrap();
    for path in [dir, &rubric, &key] {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    (rubric, key, marker)
}

/// The build hunts for the rubric, the key and the reference's sources and
/// prints what it finds into its own output, which the report shows.
#[file_serial(hostile)]
fn the_rubric_and_the_secret_key_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let (rubric, key, marker) = marked_rubric_and_key(dir.path());
    let out = std::process::Command::new(mmap_lab_kit::labgrade())
        .arg("grade")
        .arg(hostile("hostile-read-the-rubric"))
        .args(["--slot", SLOT, "--format", "json", "--rubric"])
        .arg(&rubric)
        .env("LABGRADE_SECRET_FILE", &key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["checks"][0]["status"], "failed", "the build fails");
    assert!(
        !text.contains(&marker),
        "the build read the rubric or the key"
    );
}

/// The same on Gradescope's terms: the uid level, and an /autograder whose
/// files anyone may read until `labgrade gradescope` seals them.
#[file_serial(hostile)]
fn on_gradescope_the_rubric_and_the_key_cannot_be_read_at_uid() {
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let (_, key, marker) = marked_rubric_and_key(&source);
    std::fs::rename(source.join("rubric.toml"), source.join("grading.toml")).unwrap();
    mmap_lab_kit::copy_tree(
        &hostile("hostile-read-the-rubric"),
        &root.path().join("submission"),
        &["expected.toml"],
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let status = std::process::Command::new(mmap_lab_kit::labgrade())
        .args(["gradescope", "--isolation", "uid"])
        .env("LABGRADE_AUTOGRADER_ROOT", root.path())
        .env("LABGRADE_SECRET_FILE", &key)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let results = std::fs::read_to_string(root.path().join("results/results.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&results).unwrap();
    assert_eq!(r["extra_data"]["isolation"], "uid");
    assert_eq!(r["tests"][0]["status"], "failed", "the build fails");
    assert!(
        !results.contains(&marker),
        "the build read the rubric or the key"
    );
    assert!(learner_processes().is_empty());
}

/// A build that grades its own submission to learn the reference writer's
/// "random" message learns nothing: it cannot run the grader, and the
/// message is seeded with a key it cannot read.
#[file_serial(hostile)]
fn a_nested_grading_cannot_learn_the_random_message() {
    grade_hostile("hostile-nested-grade");
}

/// A pipe of one's own instead of stdin, writes split in two, reads through
/// a hard link, and mmap only when traced: none of them passes.
#[file_serial(hostile)]
fn evidence_cannot_be_evaded() {
    for name in [
        "hostile-own-pipe",
        "hostile-split-writes",
        "hostile-traceme",
    ] {
        grade_hostile(name);
    }
}

/// A symbolic link and a FIFO where the grader reads datafile.bin: seen for
/// what they are, neither followed nor waited on, and a report written.
fn what_learner_code_leaves(level: Option<&str>) {
    grade_hostile_at("hostile-datafile-symlink", level, &[]);
    grade_hostile_at("hostile-datafile-fifo", level, &[]);
}

#[file_serial(hostile)]
fn left_things_at_full() {
    what_learner_code_leaves(None)
}

#[file_serial(hostile)]
fn left_things_at_uid() {
    what_learner_code_leaves(Some("uid"));
    // Gradescope's command too writes its results (it hung and wrote none).
    let root = tempfile::tempdir().unwrap();
    mmap_lab_kit::copy_tree(
        &hostile("hostile-datafile-fifo"),
        &root.path().join("submission"),
        &["expected.toml"],
    );
    let status = std::process::Command::new(mmap_lab_kit::labgrade())
        .args(["gradescope", "--isolation", "uid"])
        .env("LABGRADE_AUTOGRADER_ROOT", root.path())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let results = std::fs::read_to_string(root.path().join("results/results.json")).unwrap();
    assert!(results.contains("FIFO"), "{results}");
}

/// The grader started with a host file on fd 7 and a host directory on fd
/// 8, as CI runners and shells may leave them: learner code (which writes
/// to and creates files through every descriptor it might have) reaches
/// neither.
fn inherited_descriptors(level: Option<&str>) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let host = tempfile::tempdir().unwrap();
    let file_path = host.path().join("host-file");
    std::fs::write(&file_path, "original\n").unwrap();
    let dir_path = host.path().join("host-dir");
    std::fs::create_dir(&dir_path).unwrap();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&file_path)
        .unwrap();
    let dir = std::fs::File::open(&dir_path).unwrap();
    let (f, d) = (file.as_raw_fd(), dir.as_raw_fd());
    let mut cmd = std::process::Command::new(mmap_lab_kit::labgrade());
    cmd.arg("grade")
        .arg(hostile("hostile-inherited-fds"))
        .args(["--slot", SLOT, "--format", "json"]);
    if let Some(level) = level {
        cmd.args(["--isolation", level]);
    }
    // SAFETY: dup2 only, in the child before exec; dup2 clears close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(f, 7) == -1 || libc::dup2(d, 8) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{:#}", r["checks"]);
    assert_eq!(r["isolation"]["level"], level.unwrap_or("full"));
    assert_eq!(std::fs::read_to_string(&file_path).unwrap(), "original\n");
    assert_eq!(std::fs::read_dir(&dir_path).unwrap().count(), 0);
    assert!(learner_processes().is_empty());
}

#[file_serial(hostile)]
fn inherited_descriptors_at_full() {
    inherited_descriptors(None)
}

#[file_serial(hostile)]
fn inherited_descriptors_at_uid() {
    inherited_descriptors(Some("uid"))
}

/// At the uid level there is no mount namespace: the programs are the
/// grader's copies, out of the learner's reach.
#[file_serial(hostile)]
fn built_programs_are_fixed_at_uid() {
    grade_hostile_at("hostile-rewrites-programs", Some("uid"), &[]);
    grade_hostile("hostile-rewrites-programs");
}

/// Twenty thousand files and 12 x 300 MiB: bounded by the run's storage,
/// named as such, and nothing kept.
#[file_serial(hostile)]
fn the_disk_is_bounded() {
    disk_bounded_at(None);
}

#[file_serial(hostile)]
fn the_disk_is_bounded_at_uid() {
    disk_bounded_at(Some("uid"));
}

/// The run's storage is full before the machine's is: the limit is named,
/// the learner charged, and (grade_json's check) nothing stays in TMPDIR.
fn disk_bounded_at(level: Option<&str>) {
    let r = grade_hostile_at("hostile-fills-disk", level, &[]);
    let runs = run_of(&r, "file.runs", "mapfile");
    assert!(
        runs["limits_hit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("disk: ")),
        "{runs}"
    );
}

/// Terminal escapes, fake grader lines and HTML in learner output and in a
/// build error: every format shows them inert.
#[file_serial(hostile)]
fn reports_cannot_be_poisoned() {
    grade_hostile("hostile-poison-output");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(mmap_lab_kit::labgrade())
        .arg("grade")
        .arg(hostile("hostile-poison-output"))
        .args(["--slot", SLOT, "--format", "human", "--json"])
        .arg(dir.path().join("r.json"))
        .arg("--markdown")
        .arg(dir.path().join("r.md"))
        .arg("--junit")
        .arg(dir.path().join("r.xml"))
        .arg("--classroom")
        .arg(dir.path().join("classroom"))
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&out.stdout).into_owned();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let classroom: String = read("classroom")
        .lines()
        .map(|l| {
            use base64::Engine;
            let (_, b64) = l.split_once('=').unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    for (name, text) in [
        ("terminal", human.clone()),
        ("json", read("r.json")),
        ("markdown", read("r.md")),
        ("junit", read("r.xml")),
        ("classroom", classroom),
    ] {
        assert!(
            !text.contains('\x1b') && !text.contains('\x07'),
            "{name} carries raw control characters"
        );
    }
    assert!(human.contains("\\x1b[2J"), "the escape is shown as text");
    // Inside a code block nothing renders; outside one, no tag and no link
    // may stand raw. The fences must hold: each closes where it should.
    let md = read("r.md");
    let mut outside = String::new();
    let mut fence: Option<String> = None;
    for line in md.lines() {
        let t = line.trim_start();
        let ticks: String = t.chars().take_while(|&c| c == '`').collect();
        match &fence {
            Some(open) if t == open.as_str() => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => {
                outside.push_str(line);
                outside.push('\n');
            }
        }
    }
    assert!(fence.is_none(), "a code block was left open");
    for raw in ["<h1>", "<img", "</details>", "](http", "**Score: 100/100**"] {
        assert!(
            !outside.contains(raw),
            "the Markdown report carries {raw:?} raw"
        );
    }
    roxmltree::Document::parse(&read("r.xml")).expect("well-formed JUnit XML");
}
