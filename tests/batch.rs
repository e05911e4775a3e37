//! `labgrade batch` and `labgrade merge` on a small class: outputs, archives
//! good and hostile, shards, and a batch killed midway then resumed.
//!
//! A trimmed rubric (no checks that hold a writer for a second) keeps these
//! fast; the full corpus is graded by tests/fixtures.rs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use mmap_lab_kit::suite::{GRADING, Suite};
use mmap_lab_kit::{fixture, labgrade, wait_until};
use std::process::ExitCode;

fn main() -> ExitCode {
    Suite::new()
        .test(
            "a_class_is_graded_into_a_gradebook_feedback_a_summary_and_a_plot",
            GRADING,
            a_class_is_graded_into_a_gradebook_feedback_a_summary_and_a_plot,
        )
        .test(
            "hostile_and_corrupt_archives_are_refused_and_reported_not_fatal",
            GRADING,
            hostile_and_corrupt_archives_are_refused_and_reported_not_fatal,
        )
        .test(
            "bad_arguments_stop_the_batch_with_exit_2",
            &[],
            bad_arguments_stop_the_batch_with_exit_2,
        )
        .test(
            "three_shards_merged_give_the_same_gradebook_as_one_run",
            GRADING,
            three_shards_merged_give_the_same_gradebook_as_one_run,
        )
        .test(
            "a_batch_killed_midway_resumes_to_the_same_gradebook",
            GRADING,
            a_batch_killed_midway_resumes_to_the_same_gradebook,
        )
        .test(
            "a_batch_asked_to_stop_stops_its_gradings_and_keeps_what_was_done",
            GRADING,
            a_batch_asked_to_stop_stops_its_gradings_and_keeps_what_was_done,
        )
        .test(
            "learner_names_are_escaped_in_every_output",
            GRADING,
            learner_names_are_escaped_in_every_output,
        )
        .run()
}

/// The default rubric without the checks that hold a writer for a second.
fn quick_rubric(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("grading.toml"))
        .unwrap();
    let mut kept = Vec::new();
    for block in text.split("\n[[check]]\n") {
        let slow = [
            "\"shm.observed\"",
            "\"shm.handoff\"",
            "\"shm.writer_interop\"",
            "shm.cleanup",
            "shm.repeat",
            "shm.uses_mmap",
            "shm.large",
        ]
        .iter()
        .any(|id| {
            block.contains(&format!("id = {id}")) || block.contains(&format!("id = \"{id}\""))
        });
        if !slow {
            kept.push(block);
        }
    }
    let path = dir.join("quick.toml");
    std::fs::write(&path, kept.join("\n[[check]]\n")).unwrap();
    path
}

/// A fixture as a learner's submission (without its expected verdicts).
fn copy_tree(from: &Path, to: &Path) {
    mmap_lab_kit::copy_tree(from, to, &["expected.toml"]);
}

fn zip_dir(src: &Path, archive: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(archive).unwrap());
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "expected.toml" {
            zip.start_file(
                entry.file_name().to_string_lossy(),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            zip.write_all(&std::fs::read(entry.path()).unwrap())
                .unwrap();
        }
    }
    zip.finish().unwrap();
}

/// A class: four learners as directories, one as a .zip, one as a .tar.gz.
fn class(root: &Path) -> PathBuf {
    let class = root.join("class");
    for (learner, fx) in [
        ("ada", "c-sample-port"),
        ("bo", "c-no-ftruncate"),
        ("cy", "c-reader-fixed-string"),
        ("di", "c-missing-program"),
    ] {
        copy_tree(&fixture(fx), &class.join(learner));
    }
    zip_dir(
        &fixture("c-reader-errors-on-stdout"),
        &class.join("eve.zip"),
    );
    let tgz = std::fs::File::create(class.join("fay.tar.gz")).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        tgz,
        flate2::Compression::default(),
    ));
    tar.append_dir_all("fay-lab", fixture("c-writer-polite-signal"))
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    std::fs::write(
        class.join("README.md"),
        "the class's own notes, not a submission",
    )
    .unwrap();
    class
}

/// Runs `labgrade batch` with a TMPDIR of its own, which must be empty
/// again afterwards.
fn batch(args: &[&str]) -> (i32, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    batch_in(tmp.path(), args)
}

/// Runs `labgrade batch` with `tmp` as its TMPDIR, which must be empty
/// afterwards (whatever an earlier, killed batch left there included).
fn batch_in(tmp: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(labgrade())
        .arg("batch")
        .args(args)
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "the batch left {left:?} in its TMPDIR");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn a_class_is_graded_into_a_gradebook_feedback_a_summary_and_a_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let class = class(tmp.path());
    let rubric = quick_rubric(tmp.path());
    let out = tmp.path().join("out");
    let (code, stdout, stderr) = batch(&[
        class.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rubric",
        rubric.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let book = read(&out.join("gradebook.csv"));
    let lines: Vec<&str> = book.lines().collect();
    assert_eq!(
        lines[0],
        "learner,score,max,percent,build,file.runs,file.output,file.contents,file.uses_mmap,shm.reader_interop,shm.no_writer,status"
    );
    assert_eq!(lines.len(), 7, "{book}");
    assert_eq!(lines[1], "ada,50,50,100.0,10,5,5,10,5,10,5,graded");
    assert!(lines[3].starts_with("cy,40,50,"), "{book}");
    assert!(
        lines[5].starts_with("eve,45,50,"),
        "the zip was unpacked and graded: {book}"
    );
    assert!(
        lines[6].starts_with("fay,50,50,"),
        "the tar.gz (one folder inside) was graded: {book}"
    );
    for learner in ["ada", "bo", "cy", "di", "eve", "fay"] {
        let feedback = read(&out.join(format!("feedback/{learner}.md")));
        assert!(feedback.starts_with("## Module 03b"), "{feedback}");
    }
    assert!(read(&out.join("feedback/cy.md")).contains("fixed string"));
    assert_eq!(read(&out.join("journal.jsonl")).lines().count(), 6);
    let svg = read(&out.join("scores.svg"));
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(read(&out.join("summary.md")).contains("6 of 6 submissions graded"));
    assert!(stdout.contains("Checks failed most often:"), "{stdout}");
    assert!(stdout.contains("90-100%"), "{stdout}");
    assert!(
        stderr.contains("[6/6]"),
        "plain progress lines off a terminal: {stderr}"
    );
}

/// Writes a zip with one entry of `name` and `data`.
fn zip_with(path: &Path, name: &str, data: &[u8]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    zip.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(data).unwrap();
    zip.finish().unwrap();
}

fn hostile_and_corrupt_archives_are_refused_and_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let class = tmp.path().join("class");
    std::fs::create_dir_all(&class).unwrap();
    copy_tree(&fixture("c-sample-port"), &class.join("good"));
    zip_with(
        &class.join("traversal.zip"),
        "../../escaped.c",
        b"int main(void) { return 0; }\n",
    );
    // A zip bomb: 200 MiB of zeros that compress to almost nothing.
    let mut zip = zip::ZipWriter::new(std::fs::File::create(class.join("bomb.zip")).unwrap());
    zip.start_file("mapfile.c", zip::write::SimpleFileOptions::default())
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..200 {
        zip.write_all(&zeros).unwrap();
    }
    zip.finish().unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(class.join("link.zip")).unwrap());
    zip.add_symlink(
        "shm_reader.c",
        "/etc/passwd",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.finish().unwrap();
    let tgz = std::fs::File::create(class.join("tarlink.tar.gz")).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        tgz,
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    tar.append_link(&mut header, "shm_writer.c", "/etc/shadow")
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    std::fs::write(
        class.join("corrupt.zip"),
        b"PK\x03\x04 this is not really a zip",
    )
    .unwrap();

    let out = tmp.path().join("out");
    let rubric = quick_rubric(tmp.path());
    let (code, stdout, stderr) = batch(&[
        class.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rubric",
        rubric.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "some could not be graded: {stdout}\n{stderr}");
    let book = read(&out.join("gradebook.csv"));
    let row = |learner: &str| {
        book.lines()
            .find(|l| l.starts_with(&format!("{learner},")))
            .unwrap()
            .to_string()
    };
    assert!(row("good").ends_with(",graded"), "{book}");
    assert!(
        row("traversal").contains("points outside the archive"),
        "{book}"
    );
    assert!(row("bomb").contains("more than 64 MiB"), "{book}");
    assert!(row("link").contains("is a link"), "{book}");
    assert!(row("tarlink").contains("is a link"), "{book}");
    assert!(row("corrupt").contains("corrupt zip"), "{book}");
    assert!(!tmp.path().join("escaped.c").exists() && !Path::new("/tmp/escaped.c").exists());
    assert!(stdout.contains("Not fully graded:"), "{stdout}");
}

fn bad_arguments_stop_the_batch_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    copy_tree(&fixture("c-sample-port"), &a.join("sam"));
    copy_tree(&fixture("c-sample-port"), &b.join("sam"));
    let (code, _, stderr) = batch(&[
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        tmp.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("\"sam\" is given twice")
            && stderr.contains("a/sam")
            && stderr.contains("b/sam"),
        "{stderr}"
    );

    let (code, _, stderr) = batch(&[
        "/no/such/class",
        "--out",
        tmp.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/no/such/class: not a readable directory"),
        "{stderr}"
    );

    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let (code, _, stderr) = batch(&[a.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot create the output directory"),
        "{stderr}"
    );

    let out = Command::new(labgrade())
        .args(["batch", a.to_str().unwrap(), "--shard", "4/3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn three_shards_merged_give_the_same_gradebook_as_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let class = class(tmp.path());
    let rubric = quick_rubric(tmp.path());
    let whole = tmp.path().join("whole");
    let common = ["--rubric", rubric.to_str().unwrap()];
    let (code, stdout, stderr) = batch(
        &[
            &[class.to_str().unwrap(), "--out", whole.to_str().unwrap()],
            &common[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mut journals = Vec::new();
    let mut sizes = Vec::new();
    for k in 1..=3 {
        let out = tmp.path().join(format!("shard{k}"));
        let shard = format!("{k}/3");
        let (code, stdout, stderr) = batch(
            &[
                &[
                    class.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                    "--shard",
                    &shard,
                ],
                &common[..],
            ]
            .concat(),
        );
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let journal = out.join("journal.jsonl");
        sizes.push(read(&journal).lines().count());
        journals.push(journal);
    }
    assert_eq!(
        sizes.iter().sum::<usize>(),
        6,
        "every learner in exactly one shard: {sizes:?}"
    );
    let merged = tmp.path().join("merged");
    let out = Command::new(labgrade())
        .arg("merge")
        .args(&journals)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read(&merged.join("gradebook.csv")),
        read(&whole.join("gradebook.csv"))
    );
}

fn a_batch_killed_midway_resumes_to_the_same_gradebook() {
    let tmp = tempfile::tempdir().unwrap();
    let class = class(tmp.path());
    // Graded second (learners go in order, one at a time here), and for
    // seconds at least, since its reader waits out its deadlines: the kill
    // below lands while it is being graded, however loaded the machine.
    copy_tree(&fixture("c-reader-waits-forever"), &class.join("ben"));
    let rubric = quick_rubric(tmp.path());
    let whole = tmp.path().join("whole");
    let (code, ..) = batch(&[
        class.to_str().unwrap(),
        "--out",
        whole.to_str().unwrap(),
        "--rubric",
        rubric.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);

    // The same batch, killed with SIGKILL (its whole process group) as soon
    // as its first result (ada's) is in the journal.
    let out = tmp.path().join("killed");
    let killed_tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(labgrade());
    child
        .env("TMPDIR", killed_tmp.path())
        .arg("batch")
        .arg(&class)
        .args([
            "--out",
            out.to_str().unwrap(),
            "--rubric",
            rubric.to_str().unwrap(),
            "--jobs",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child.spawn().unwrap();
    let journal = out.join("journal.jsonl");
    wait_for_journal(&journal, 1);
    wait_for_entry(killed_tmp.path());
    // SAFETY: killing the process group we created.
    unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let done = read(&journal).lines().count();
    assert_eq!(done, 1, "the batch was killed while grading ben");
    assert!(
        std::fs::read_dir(killed_tmp.path()).unwrap().count() > 0,
        "a grading killed with SIGKILL leaves its working directory"
    );
    wait_for_graders_to_end(killed_tmp.path());

    // Resumed with the same TMPDIR: the dead gradings' directories are swept.
    let (code, stdout, _) = batch_in(
        killed_tmp.path(),
        &[
            class.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--rubric",
            rubric.to_str().unwrap(),
            "--resume",
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(
        !out.join(".work").exists(),
        "what the killed batch unpacked is swept"
    );
    assert_eq!(
        read(&out.join("gradebook.csv")),
        read(&whole.join("gradebook.csv"))
    );
    assert_eq!(
        read(&journal).lines().count(),
        7,
        "the journaled ones were not graded again"
    );

    // Resuming again grades nothing; changing a submission regrades it alone.
    std::fs::write(class.join("ada/notes.txt"), "changed").unwrap();
    let (code, ..) = batch(&[
        class.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rubric",
        rubric.to_str().unwrap(),
        "--resume",
    ]);
    assert_eq!(code, 0);
    let lines: Vec<String> = read(&journal).lines().map(String::from).collect();
    assert_eq!(lines.len(), 8);
    assert!(lines[7].contains("\"learner\":\"ada\""));
}

/// Waits until `journal` holds `lines` results.
fn wait_for_journal(journal: &Path, lines: usize) {
    wait_until(120, "a result in the journal", || {
        std::fs::read_to_string(journal).map_or(0, |j| j.lines().count()) >= lines
    });
}

/// Waits until the graders whose run directories are in `dir` have ended
/// (are gone, or zombies nobody has reaped yet), as a SIGKILL makes them.
fn wait_for_graders_to_end(dir: &Path) {
    let pids: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            let id = name.strip_prefix("labgrade-run.")?;
            Some(id.split(['-', '.']).next()?.to_string())
        })
        .collect();
    for pid in pids {
        wait_until(60, &format!("grader {pid} to end"), || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                let state = stat.rsplit_once(')').unwrap().1.trim_start();
                state.starts_with('Z')
            })
        });
    }
}

/// Waits until something is in `dir` (a grading's working directory).
fn wait_for_entry(dir: &Path) {
    wait_until(
        120,
        &format!("a grading to start in {}", dir.display()),
        || std::fs::read_dir(dir).unwrap().next().is_some(),
    );
}

fn a_batch_asked_to_stop_stops_its_gradings_and_keeps_what_was_done() {
    // SIGTERM (a CI job cancelled, a terminal closed) while ben is graded:
    // ben's grading is stopped too, nothing is left in TMPDIR, ada's result
    // is kept, and --resume grades the rest.
    let tmp = tempfile::tempdir().unwrap();
    let class = tmp.path().join("class");
    copy_tree(&fixture("c-sample-port"), &class.join("ada"));
    copy_tree(&fixture("c-reader-waits-forever"), &class.join("ben"));
    let rubric = quick_rubric(tmp.path());
    let out = tmp.path().join("out");
    let own_tmp = tempfile::tempdir().unwrap();
    let args = [
        class.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rubric",
        rubric.to_str().unwrap(),
        "--jobs",
        "1",
    ];
    let child = Command::new(labgrade())
        .env("TMPDIR", own_tmp.path())
        .arg("batch")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let journal = out.join("journal.jsonl");
    wait_for_journal(&journal, 1);
    wait_for_entry(own_tmp.path());
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(own_tmp.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the stopped batch left {left:?} in its TMPDIR"
    );
    let book = read(&out.join("gradebook.csv"));
    assert!(
        book.contains("\nada,50,50,"),
        "ada's result is kept: {book}"
    );
    assert!(
        book.lines()
            .any(|l| l.starts_with("ben,") && l.contains("SIGTERM") && !l.ends_with(",graded")),
        "ben is given no grade, and why: {book}"
    );

    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let (code, stdout, stderr) = batch_in(own_tmp.path(), &resumed);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let book = read(&out.join("gradebook.csv"));
    assert!(
        book.lines()
            .any(|l| l.starts_with("ben,") && l.ends_with(",graded")),
        "{book}"
    );
}

fn learner_names_are_escaped_in_every_output() {
    use std::os::unix::ffi::OsStrExt;
    // Names as a class download may have them: a spreadsheet formula, a
    // terminal escape, a newline, bytes that are not UTF-8.
    let tmp = tempfile::tempdir().unwrap();
    let class = tmp.path().join("class");
    let names: [&[u8]; 5] = [
        b"=HYPERLINK(\"evil.example\",\"x\")",
        b"+plus",
        b"esc\x1b[31mred",
        b"new\nline",
        b"caf\xe9",
    ];
    for name in names {
        copy_tree(
            &fixture("c-sample-port"),
            &class.join(std::ffi::OsStr::from_bytes(name)),
        );
    }
    let rubric = tmp.path().join("build-only.toml");
    std::fs::write(
        &rubric,
        "version = 1\n[[check]]\nid = \"build\"\nname = \"All three programs build\"\npoints = 10\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (code, stdout, stderr) = batch(&[
        class.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rubric",
        rubric.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for text in [&stdout, &stderr, &read(&out.join("summary.md"))] {
        assert!(!text.contains('\u{1b}'), "a raw escape: {text}");
    }
    let book = read(&out.join("gradebook.csv"));
    let learners: Vec<String> = csv::Reader::from_reader(book.as_bytes())
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    assert_eq!(
        learners,
        [
            "'+plus",
            "'=HYPERLINK(\"evil.example\",\"x\")",
            "caf\\xe9",
            "esc\\x1b[31mred",
            "new\\x0aline",
        ],
        "no cell starts a formula; every name on one line, as text"
    );
    let mut feedback: Vec<String> = std::fs::read_dir(out.join("feedback"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    feedback.sort();
    assert_eq!(
        feedback,
        [
            "+plus.md",
            "=HYPERLINK(\"evil.example\",\"x\").md",
            "caf\\xe9.md",
            "esc\\x1b[31mred.md",
            "new\\x0aline.md",
        ]
    );
}
