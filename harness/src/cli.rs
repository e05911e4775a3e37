//! The command line: `grade`, `batch`, `merge`, `gradescope`, `package`,
//! `init`, and the hidden reference programs and sandbox init.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mmap_lab::contract::SHM_MESSAGE;
use mmap_lab::error::finish;
use mmap_lab::{RegionArgs, reader, writer};

use crate::batch;
use crate::grade::{self, Options};
use crate::platforms;
use crate::report::{Classroom, Format, Human, JUnit, Json, Markdown};
use crate::rubric::Rubric;
use crate::runner;
use crate::sandbox::{self, Level};

#[derive(Parser)]
#[command(
    name = "labgrade",
    version,
    about = "Grades the memory-mapped files and shared memory lab (Module 03b)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a submission, run its programs, check what they did, score it.
    Grade(GradeArgs),
    /// Grade a whole class: every submission under SOURCE directories.
    Batch(BatchArgs),
    /// Combine batch journals (from shards) into one gradebook.
    Merge {
        /// The journals (journal.jsonl of each batch output directory).
        #[arg(required = true)]
        journals: Vec<PathBuf>,
        /// Where the gradebook, feedback, summary and plot go.
        #[arg(long, default_value = "labgrade-merged")]
        out: PathBuf,
        /// Include hidden checks in the feedback files.
        #[arg(long)]
        show_hidden: bool,
    },
    /// What Gradescope's run_autograder calls: grade /autograder/submission
    /// and always write /autograder/results/results.json.
    Gradescope {
        /// The autograder's root (for trying it outside Gradescope).
        #[arg(long, env = "LABGRADE_AUTOGRADER_ROOT", default_value = "/autograder")]
        root: PathBuf,
        /// Stop grading after this long, well inside the assignment's limit
        /// on Gradescope (10 minutes unless raised there; the rubric's own
        /// deadline applies if it is sooner).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "8min")]
        deadline: std::time::Duration,
        /// The strongest isolation to use (to try the uid level, as on
        /// Gradescope, elsewhere).
        #[arg(long, value_enum, default_value_t = Level::Full)]
        isolation: Level,
    },
    /// What this machine offers for grading: isolation, tools, limits;
    /// each problem with its fix. Exit 0 when the rubric has all it needs.
    Doctor(DoctorArgs),
    /// Package the kit for a grading platform.
    #[command(subcommand)]
    Package(PackageCmd),
    /// Set up a repository to be graded by CI.
    #[command(subcommand)]
    Init(InitCmd),
    /// The reference programs, run as peers of a learner's.
    #[command(hide = true, subcommand)]
    Ref(RefCmd),
    /// The first process of a grading's sandbox server (internal).
    #[command(hide = true)]
    SandboxServe {
        /// The grader's end of the socket requests come on.
        #[arg(long)]
        socket_fd: i32,
    },
    /// A traced program's first step inside its sandbox (internal).
    #[command(hide = true)]
    SandboxExec {
        #[arg(long)]
        uid: Option<String>,
        #[arg(long)]
        cgroup_fd: Vec<i32>,
        #[arg(long)]
        watch_fd: Option<i32>,
        #[arg(long)]
        guard: bool,
        /// The program's limits, as JSON (`init::ProgramLimits`).
        #[arg(long)]
        limits: Option<String>,
        #[arg(long)]
        arg0: std::ffi::OsString,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<std::ffi::OsString>,
    },
    /// The first process inside a learner's sandbox (internal).
    #[command(hide = true)]
    SandboxInit {
        /// Become this "UID:GID" before running the program.
        #[arg(long)]
        uid: Option<String>,
        /// Report on this descriptor why the program could not start, or
        /// how it ended, what it left behind and what the watch saw.
        #[arg(long)]
        status_fd: Option<i32>,
        /// Kill what the program leaves in the PID namespace (only inside
        /// a sandbox's own).
        #[arg(long)]
        sweep: bool,
        /// Watch the program's reads and writes.
        #[arg(long)]
        watch: bool,
        /// Forbid the program ptrace and process_vm_readv/writev.
        #[arg(long)]
        guard: bool,
        /// Put the program (only) in the cgroup whose cgroup.procs is open
        /// on this descriptor.
        #[arg(long)]
        cgroup_fd: Vec<i32>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<std::ffi::OsString>,
    },
}

#[derive(clap::Args)]
struct GradeArgs {
    /// The directory holding the submission's sources.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The rubric (default: the built-in grading.toml). A grading.toml
    /// inside the submission is never used unless named here.
    #[arg(long, value_name = "FILE")]
    rubric: Option<PathBuf>,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    /// Write that report to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write the Markdown report to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also append GitHub Classroom results, one `ID=BASE64` line per
    /// check, to FILE (in a workflow: "$GITHUB_OUTPUT").
    #[arg(long, value_name = "FILE")]
    classroom: Option<PathBuf>,
    /// Run only these checks (and the checks they need).
    #[arg(long, value_name = "CHECK", num_args = 1..)]
    only: Vec<String>,
    /// Include checks the rubric hides from learners.
    #[arg(long)]
    show_hidden: bool,
    /// The strongest isolation to use; the strongest that works here, up
    /// to this, is used and named in the report.
    #[arg(long, value_enum, default_value_t = Level::Full)]
    isolation: Level,
    /// The job slot of this grading (each slot runs learner code as its
    /// own unprivileged uid).
    #[arg(long, default_value_t = 0, hide = true)]
    slot: u32,
    /// Stop the whole grading after this long (e.g. "5min"), sooner than
    /// the rubric's deadline: a platform's own time limit. What is not done
    /// by then is not graded, and the grade is marked incomplete.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    deadline: Option<std::time::Duration>,
}

#[derive(clap::Args)]
struct DoctorArgs {
    /// The rubric to check for (default: the built-in grading.toml).
    #[arg(long, value_name = "FILE")]
    rubric: Option<PathBuf>,
    /// Fail unless this isolation level can be had here (for CI and for
    /// an autograder's setup).
    #[arg(long, value_enum, value_name = "LEVEL")]
    require: Option<Level>,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
    /// The job slot whose uid to check as.
    #[arg(long, default_value_t = 0, hide = true)]
    slot: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Human,
    Json,
    Markdown,
    Junit,
    Classroom,
}

impl OutputFormat {
    fn writer(self) -> Box<dyn Format> {
        match self {
            OutputFormat::Human => Box::new(Human),
            OutputFormat::Json => Box::new(Json),
            OutputFormat::Markdown => Box::new(Markdown),
            OutputFormat::Junit => Box::new(JUnit),
            OutputFormat::Classroom => Box::new(Classroom),
        }
    }
}

#[derive(clap::Args)]
struct BatchArgs {
    /// Directories holding one submission per learner: a directory or a
    /// .zip/.tar.gz archive named after the learner.
    #[arg(required = true)]
    sources: Vec<PathBuf>,
    /// Submissions graded at a time (default: the number of cores).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// The rubric (default: the built-in grading.toml).
    #[arg(long, value_name = "FILE")]
    rubric: Option<PathBuf>,
    /// Where the gradebook, feedback files, summary, plot and journal go.
    #[arg(long, default_value = "labgrade-out")]
    out: PathBuf,
    /// Continue a batch from its journal: submissions already graded with
    /// the same contents and rubric are not graded again.
    #[arg(long)]
    resume: bool,
    /// Grade only part K of N (by learner id), for a CI matrix; combine the
    /// parts' journals with `labgrade merge`.
    #[arg(long, value_name = "K/N")]
    shard: Option<batch::Shard>,
    /// Include hidden checks in the feedback files.
    #[arg(long)]
    show_hidden: bool,
    /// The strongest isolation to use for each submission.
    #[arg(long, value_enum, default_value_t = Level::Full)]
    isolation: Level,
}

#[derive(Subcommand)]
enum PackageCmd {
    /// autograder.zip for a Gradescope programming assignment: setup.sh,
    /// run_autograder, the rubric, and the kit.
    Gradescope {
        #[arg(long, default_value = "autograder.zip")]
        out: PathBuf,
        /// The rubric to grade with (default: the built-in grading.toml).
        #[arg(long, value_name = "FILE")]
        rubric: Option<PathBuf>,
        /// The kit to install: a source directory to ship in the zip, or a
        /// git address (default: the sources labgrade was built from).
        #[arg(long)]
        kit: Option<String>,
    },
}

#[derive(Subcommand)]
enum InitCmd {
    /// .github/workflows/labgrade.yml for a student repository graded by
    /// GitHub Classroom.
    Github {
        /// The repository's root.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The rubric whose checks the reporter lists (default: built-in).
        #[arg(long, value_name = "FILE")]
        rubric: Option<PathBuf>,
        /// The git address the workflow installs the kit from.
        #[arg(long, default_value = "https://github.com/YOUR-ORG/mmap-lab-kit")]
        kit: String,
    },
}

/// The reference programs, which only the grader may run: it hands them
/// the grading's token, in the environment and in a file only it (and
/// they) can read.
#[derive(Subcommand)]
enum RefCmd {
    /// The reference shm_writer: [NAME [SIZE]], the message from the
    /// environment.
    Writer {
        args: Vec<String>,
        #[arg(long, env = crate::session::REF_MESSAGE_ENV, default_value = SHM_MESSAGE, hide_env_values = true)]
        message: String,
        /// Give the new region to this "UID:GID" (the learner's), as if
        /// the learner's own writer had made it.
        #[arg(long)]
        share_with: Option<String>,
    },
    /// The reference shm_reader: [NAME [SIZE]].
    Reader { args: Vec<String> },
}

pub fn main() -> ExitCode {
    run(Cli::parse())
}

/// `labgrade ARGS...` (ARGS[0] the program's name) in this very process,
/// as a forked sandbox init runs a reference peer without an exec: its
/// exit code.
pub fn run_in_process(args: &[std::ffi::OsString]) -> i32 {
    let code = match Cli::try_parse_from(args) {
        Ok(cli) => run(cli),
        Err(e) => {
            let _ = e.print();
            ExitCode::from(2)
        }
    };
    // ExitCode keeps its number to itself: find it.
    (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .map_or(1, i32::from)
}

fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Cmd::Grade(args) => grade_command(args),
        Cmd::Gradescope {
            root,
            deadline,
            isolation,
        } => {
            let private_mounts = prepare_grading();
            let options = Options {
                show_hidden: true,
                private_mounts,
                isolation,
                ..Options::default()
            };
            platforms::gradescope(&root, options, deadline).0
        }
        Cmd::Doctor(args) => doctor_command(args),
        Cmd::Package(PackageCmd::Gradescope { out, rubric, kit }) => {
            match load_rubric_text(rubric.as_deref()) {
                Ok((rubric, text)) => {
                    platforms::package_gradescope(&out, &rubric, &text, kit.as_deref())
                }
                Err(e) => cannot(e),
            }
        }
        Cmd::Init(InitCmd::Github { dir, rubric, kit }) => {
            match load_rubric_text(rubric.as_deref()) {
                Ok((rubric, _)) => platforms::init_github(&dir, &rubric, &kit),
                Err(e) => cannot(e),
            }
        }
        Cmd::Batch(args) => batch::run(batch::Options {
            sources: args.sources,
            jobs: args
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            rubric: args.rubric,
            out: args.out,
            resume: args.resume,
            shard: args.shard,
            show_hidden: args.show_hidden,
            isolation: args.isolation,
        }),
        Cmd::Merge {
            journals,
            out,
            show_hidden,
        } => batch::merge(&journals, &out, show_hidden),
        Cmd::Ref(cmd) => {
            if let Err(e) = sandbox::check_ref_token() {
                eprintln!("labgrade ref: {e}");
                return ExitCode::from(2);
            }
            reference(cmd)
        }
        Cmd::SandboxServe { socket_fd } => sandbox::serve::serve(socket_fd),
        Cmd::SandboxExec {
            uid,
            cgroup_fd,
            watch_fd,
            guard,
            limits,
            arg0,
            argv,
        } => sandbox::init::exec_helper(
            uid.as_deref(),
            &cgroup_fd,
            watch_fd,
            guard,
            limits.as_deref(),
            &arg0,
            &argv,
        ),
        Cmd::SandboxInit {
            uid,
            status_fd,
            sweep,
            watch,
            guard,
            cgroup_fd,
            argv,
        } => sandbox::init::run(
            &sandbox::init::InitOptions {
                uid: uid.as_deref(),
                status_fd,
                sweep,
                watch,
                guard,
                cgroup_fds: cgroup_fd,
                env: None,
                in_process: false,
                trace: None,
            },
            &argv,
        ),
    }
}

/// The grader's reference writer or reader.
fn reference(cmd: RefCmd) -> ExitCode {
    match cmd {
        RefCmd::Writer {
            args,
            message,
            share_with,
        } => finish(
            "reference shm_writer",
            RegionArgs::parse(args, &message).and_then(|args| {
                let region = mmap_lab::platform::WriterRegion::create(&args.name, args.size)?;
                if let Some(owner) = &share_with {
                    share_region(&args.name, owner)?;
                }
                writer::hold(
                    region,
                    &args,
                    &message,
                    &mut std::io::stdin().lock(),
                    &mut std::io::stdout(),
                )
            }),
        ),
        RefCmd::Reader { args } => finish(
            "reference shm_reader",
            RegionArgs::parse(args, SHM_MESSAGE)
                .and_then(|args| reader::run(&args, &mut std::io::stdout())),
        ),
    }
}

/// Gives the region `name` (in the mechanism's system place, which is
/// this sandbox's own) to "UID:GID".
fn share_region(name: &str, owner: &str) -> mmap_lab::Result<()> {
    let (uid, gid) = owner
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .ok_or_else(|| mmap_lab::Error::usage("--share-with takes UID:GID"))?;
    crate::ipc::default_mechanism()
        .give(name, uid, gid)
        .map_err(|e| mmap_lab::Error::os(format_args!("cannot share {name}"), e))
}

/// Exit 2 with a message on stderr: nothing could be graded.
fn cannot(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("labgrade: {message}");
    ExitCode::from(2)
}

/// What every grading needs first, while labgrade is still one thread:
/// its own mount namespace (as root), the reaper role, and a thread that
/// turns SIGINT and SIGTERM into an orderly stop with a report. Returns
/// whether the mount namespace is private.
fn prepare_grading() -> bool {
    let private_mounts = sandbox::enter_private_mounts();
    if let Err(e) = runner::become_subreaper() {
        eprintln!("labgrade: warning: cannot reap orphans ({e}); escaped processes may survive");
    }
    watch_signals();
    private_mounts
}

/// The rubric FILE (or the built-in one) and its text.
fn load_rubric_text(path: Option<&std::path::Path>) -> Result<(Rubric, String), String> {
    Rubric::load_with_text(path).map_err(|e| format!("bad rubric: {e}"))
}

fn doctor_command(args: DoctorArgs) -> ExitCode {
    let private_mounts = sandbox::enter_private_mounts();
    let rubric = match load_rubric_text(args.rubric.as_deref()) {
        Ok((rubric, _)) => rubric,
        Err(e) => return cannot(e),
    };
    let diagnosis = crate::doctor::diagnose(&crate::doctor::Options {
        rubric: &rubric,
        require: args.require,
        slot: args.slot,
        private_mounts,
    });
    let mut out = anstream::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &diagnosis)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        crate::doctor::write_human(&diagnosis, &mut out)
    };
    if let Err(e) = written.and_then(|_| out.flush()) {
        return cannot(format!("cannot write the diagnosis: {e}"));
    }
    if diagnosis.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn grade_command(args: GradeArgs) -> ExitCode {
    let private_mounts = prepare_grading();
    let rubric = match Rubric::load_or_default(args.rubric.as_deref()) {
        Ok(r) => r,
        Err(e) => return cannot(format!("bad rubric: {e}")),
    };
    let options = Options {
        only: args.only,
        show_hidden: args.show_hidden,
        isolation: args.isolation,
        slot: args.slot,
        private_mounts,
    };
    watch_deadline(match args.deadline {
        Some(limit) => limit.min(rubric.deadline),
        None => rubric.deadline,
    });
    // One run, every format asked for: written by the main path, or by the
    // watchdog if the grading is stopped and the main path is stuck.
    let sink: std::sync::Arc<crate::watchdog::Sink> = std::sync::Arc::new(
        Outputs {
            stdout: args.output.is_none().then_some(args.format),
            files: [
                (args.output.clone(), args.format),
                (args.json.clone(), OutputFormat::Json),
                (args.junit.clone(), OutputFormat::Junit),
                (args.markdown.clone(), OutputFormat::Markdown),
                (args.classroom.clone(), OutputFormat::Classroom),
            ]
            .into_iter()
            .filter_map(|(path, format)| Some((path?, format)))
            .collect(),
        }
        .into_sink(),
    );
    let progress = crate::watchdog::Progress::new();
    progress.watch(sink.clone(), 2);
    let report = match grade::grade(&args.dir, &rubric, &options, Some(&progress)) {
        Ok(report) => report,
        Err(e) => return cannot(e),
    };
    progress
        .deliver(&report, sink.as_ref())
        .unwrap_or(ExitCode::from(2))
}

/// Every output a `grade` command was asked for.
struct Outputs {
    /// The format printed to stdout, unless --output took it to a file.
    stdout: Option<OutputFormat>,
    files: Vec<(PathBuf, OutputFormat)>,
}

impl Outputs {
    fn into_sink(self) -> impl Fn(&crate::report::Report) -> ExitCode + Send + Sync {
        move |report| {
            for (path, format) in &self.files {
                // Classroom lines are appended, as to $GITHUB_OUTPUT.
                let append = matches!(format, OutputFormat::Classroom);
                if let Err(e) = write_to_file(path, format.writer().as_ref(), report, append) {
                    return cannot(format!("cannot write {}: {e}", path.display()));
                }
            }
            if let Some(format) = self.stdout {
                let mut out = anstream::stdout().lock();
                if let Err(e) = format
                    .writer()
                    .write(report, &mut out)
                    .and_then(|_| out.flush())
                {
                    return cannot(format!("cannot write the report: {e}"));
                }
            }
            ExitCode::from(report.exit_code())
        }
    }
}

fn write_to_file(
    path: &std::path::Path,
    format: &dyn Format,
    report: &crate::report::Report,
    append: bool,
) -> std::io::Result<()> {
    let mut file = std::fs::File::options()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    // A file gets plain text: no terminal styling (learner text in it is
    // already escaped, so only the human format's own colours go).
    let mut plain = anstream::StripStream::new(&mut file);
    format.write(report, &mut plain)?;
    plain.flush()
}

/// On SIGINT, SIGTERM or SIGHUP: kill every learner process and let the
/// grading finish with what it knows (the rest marked as not run).
fn watch_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let name = runner::signal_name(sig);
            runner::abort_all(&format!("the grader was interrupted ({name})"));
        }
    });
}

/// After the overall deadline, stop as on an interrupt.
pub fn watch_deadline(deadline: std::time::Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        runner::abort_all(&format!(
            "the grading's overall deadline ({}) passed",
            humantime::format_duration(deadline)
        ));
    });
}
