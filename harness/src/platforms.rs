//! Where grades go: the Gradescope autograder (its command and its
//! package), and a GitHub Classroom workflow for student repositories.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::grade::{self, Options};
use crate::report::{Format, Gradescope, gradescope_failure, runner_id};
use crate::rubric::Rubric;

/// The kit's source tree, where this labgrade was built from (if it is
/// still there): what `package gradescope` puts in the autograder.
fn built_from() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    root.join("harness/Cargo.toml").is_file().then_some(root)
}

/// `labgrade gradescope`: grades ROOT/submission with ROOT/source/grading.toml
/// (the built-in rubric if there is none) and always writes
/// ROOT/results/results.json, whatever happens.
/// Gradescope gives a submission 10 minutes by default and records nothing
/// if it runs over: labgrade stops itself at `limit` (8 minutes by default),
/// or at the rubric's deadline if that is sooner.
pub fn gradescope(root: &Path, options: Options, limit: Duration) -> (ExitCode, Option<Duration>) {
    let started = Instant::now();
    // Before any learner code runs: the rubric, the secret key, the kit's
    // sources and the learners' metadata become the grader's alone (learner
    // code runs as another uid here, and could read anything else).
    seal(root);
    let results = root.join("results");
    let write = |text: &str| -> ExitCode {
        match std::fs::create_dir_all(&results)
            .and_then(|_| std::fs::write(results.join("results.json"), text))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "labgrade gradescope: cannot write {}: {e}",
                    results.display()
                );
                ExitCode::from(2)
            }
        }
    };
    let fail = |message: &str| {
        write(&gradescope_failure(
            message,
            started.elapsed().as_secs_f64(),
        ))
    };
    let source = root.join("source/grading.toml");
    let mut rubric = match Rubric::load_or_default(source.is_file().then_some(source.as_path())) {
        Ok(r) => r,
        Err(e) => {
            return (
                fail(&format!("the autograder's rubric is invalid: {e}")),
                None,
            );
        }
    };
    rubric.deadline = rubric.deadline.min(limit);
    let deadline = rubric.deadline;
    crate::cli::watch_deadline(deadline);
    // results.json, written by the main path, or by the watchdog if the
    // grading is stopped while the main path is stuck.
    let hidden_visibility = rubric.gradescope.hidden_visibility.as_str().to_string();
    let results_file = results.join("results.json");
    let sink: std::sync::Arc<crate::watchdog::Sink> = std::sync::Arc::new(move |report| {
        let format = Gradescope {
            hidden_visibility: hidden_visibility.clone(),
        };
        let mut text = Vec::new();
        let written = format
            .write(report, &mut text)
            .and_then(|_| std::fs::write(&results_file, &text));
        match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "labgrade gradescope: cannot write {}: {e}",
                    results_file.display()
                );
                ExitCode::from(2)
            }
        }
    });
    let progress = crate::watchdog::Progress::new();
    // results.json written is success to Gradescope, as on the main path.
    progress.watch(sink.clone(), 0);
    let graded = catch_unwind(AssertUnwindSafe(|| {
        grade::grade(&root.join("submission"), &rubric, &options, Some(&progress))
    }));
    let code = match graded {
        Ok(Ok(report)) => progress
            .deliver(&report, sink.as_ref())
            .unwrap_or(ExitCode::SUCCESS),
        Ok(Err(e)) => fail(&e.to_string()),
        Err(_) => fail("the grader failed unexpectedly (a bug in labgrade)"),
    };
    (code, Some(deadline))
}

/// Makes what in ROOT is the grader's readable by root only.
fn seal(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode: u32| {
        if path.exists() {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
        }
    };
    set(&root.join("source"), 0o700);
    set(&root.join("submission_metadata.json"), 0o600);
    let _ = std::fs::create_dir_all(root.join("results"));
    set(&root.join("results"), 0o700);
}

/// `labgrade package gradescope`: autograder.zip with setup.sh,
/// run_autograder, the rubric, and the kit's sources (or a git address
/// setup.sh installs it from).
pub fn package_gradescope(
    out: &Path,
    rubric: &Rubric,
    rubric_text: &str,
    kit: Option<&str>,
) -> ExitCode {
    let kit_dir = match kit {
        Some(k) if Path::new(k).is_dir() => Some(PathBuf::from(k)),
        Some(_) => None,
        None => built_from(),
    };
    let install = match (&kit_dir, kit) {
        (Some(_), _) => {
            "cargo install --locked --path /autograder/source/kit/harness --root /usr/local"
                .to_string()
        }
        (None, Some(url)) => {
            format!("cargo install --locked --git {url} labgrade --root /usr/local")
        }
        (None, None) => {
            eprintln!(
                "labgrade package: the kit's sources are not where labgrade was built; give --kit DIR or --kit GIT-URL"
            );
            return ExitCode::from(2);
        }
    };
    let setup = include_str!("../templates/setup.sh").replace("@INSTALL_KIT@", &install);
    let result = (|| -> Result<(), String> {
        let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut zip = zip::ZipWriter::new(file);
        let exe = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        let plain = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        let mut add = |name: &str, bytes: &[u8], options| -> Result<(), String> {
            zip.start_file(name, options).map_err(|e| e.to_string())?;
            zip.write_all(bytes).map_err(|e| e.to_string())
        };
        add("setup.sh", setup.as_bytes(), exe)?;
        add(
            "run_autograder",
            include_str!("../templates/run_autograder").as_bytes(),
            exe,
        )?;
        add("grading.toml", rubric_text.as_bytes(), plain)?;
        // The autograder's own secret key: regrades there give the same
        // reports, and no one without the zip can work out its messages.
        let mut key = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?,
            &mut key,
        )
        .map_err(|e| e.to_string())?;
        add(
            "secret.key",
            &key,
            zip::write::SimpleFileOptions::default().unix_permissions(0o600),
        )?;
        if let Some(dir) = &kit_dir {
            for file in kit_files(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
                let rel = file.strip_prefix(dir).unwrap_or(&file);
                let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                add(&format!("kit/{}", rel.display()), &bytes, plain)?;
            }
        }
        zip.finish().map_err(|e| e.to_string())?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            println!(
                "Wrote {}: upload it as the autograder of a Gradescope programming assignment ({} checks, {} points).",
                out.display(),
                rubric.checks.len(),
                crate::report::points(rubric.total_points())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("labgrade package: {e}");
            ExitCode::from(2)
        }
    }
}

/// The kit's files worth shipping: sources, manifests, the rubric; not
/// build output, history, or the sample submissions.
fn kit_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name();
            if [".git", "target", "fixtures"].iter().any(|s| name == *s) {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `labgrade init github [DIR]`: a GitHub Actions workflow for a student
/// repository that grades it, reports to GitHub Classroom (one runner per
/// check), writes the Markdown report to the job summary and keeps the
/// JSON report as an artifact.
pub fn init_github(dir: &Path, rubric: &Rubric, kit: &str) -> ExitCode {
    let runners: Vec<String> = rubric.checks.iter().map(|c| runner_id(c.id())).collect();
    let env: Vec<String> = runners
        .iter()
        .map(|r| {
            format!(
                "          {}_RESULTS: \"${{{{ steps.grade.outputs.{r} }}}}\"",
                r.to_uppercase()
            )
        })
        .collect();
    let workflow = include_str!("../templates/github-workflow.yml")
        .replace("@KIT@", kit)
        .replace("@ENV@", &env.join("\n"))
        .replace("@RUNNERS@", &runners.join(","));
    let path = dir.join(".github/workflows/labgrade.yml");
    let written = std::fs::create_dir_all(path.parent().unwrap())
        .and_then(|_| std::fs::write(&path, workflow));
    match written {
        Ok(()) => {
            println!("Wrote {}.", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("labgrade init: cannot write {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}
