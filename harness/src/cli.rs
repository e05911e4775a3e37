//! The command line: `labgrade grade`, and the hidden reference programs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mmap_lab::contract::SHM_MESSAGE;
use mmap_lab::error::finish;
use mmap_lab::{RegionArgs, reader, writer};

use crate::batch;
use crate::grade::{self, Options};
use crate::report::{Format, Human, Json, Markdown};
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
    /// The reference programs, run as peers of a learner's.
    #[command(hide = true, subcommand)]
    Ref(RefCmd),
    /// The first process inside a learner's sandbox (internal).
    #[command(hide = true)]
    SandboxInit {
        /// Become this "UID:GID" before running the program.
        #[arg(long)]
        uid: Option<String>,
        /// Report leftovers and the program's ending on this descriptor.
        #[arg(long)]
        status_fd: Option<i32>,
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
    /// Write the report to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
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
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Human,
    Json,
    Markdown,
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
enum RefCmd {
    /// The reference shm_writer: [NAME [SIZE]] --message TEXT.
    Writer {
        args: Vec<String>,
        #[arg(long, default_value = SHM_MESSAGE)]
        message: String,
    },
    /// The reference shm_reader: [NAME [SIZE]].
    Reader { args: Vec<String> },
}

pub fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Grade(args) => grade_command(args),
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
        Cmd::Ref(RefCmd::Writer { args, message }) => finish(
            "reference shm_writer",
            RegionArgs::parse(args, &message).and_then(|args| {
                writer::run(
                    &args,
                    &message,
                    &mut std::io::stdin().lock(),
                    &mut std::io::stdout(),
                )
            }),
        ),
        Cmd::SandboxInit {
            uid,
            status_fd,
            argv,
        } => sandbox::init::run(uid.as_deref(), status_fd, &argv),
        Cmd::Ref(RefCmd::Reader { args }) => finish(
            "reference shm_reader",
            RegionArgs::parse(args, SHM_MESSAGE)
                .and_then(|args| reader::run(&args, &mut std::io::stdout())),
        ),
    }
}

/// Exit 2 with a message on stderr: nothing could be graded.
fn cannot(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("labgrade: {message}");
    ExitCode::from(2)
}

fn grade_command(args: GradeArgs) -> ExitCode {
    // While labgrade is still a single thread: its own mount namespace (as
    // root), then the reaper role, then a thread that turns SIGINT and
    // SIGTERM into an orderly stop with a report.
    let private_mounts = sandbox::enter_private_mounts();
    if let Err(e) = runner::become_subreaper() {
        eprintln!("labgrade: warning: cannot reap orphans ({e}); escaped processes may survive");
    }
    watch_signals();
    let rubric = match &args.rubric {
        Some(path) => match Rubric::load(path) {
            Ok(r) => r,
            Err(e) => return cannot(format!("bad rubric: {e}")),
        },
        None => Rubric::default_rubric(),
    };
    let options = Options {
        only: args.only,
        show_hidden: args.show_hidden,
        isolation: args.isolation,
        slot: args.slot,
        private_mounts,
    };
    watch_deadline(rubric.deadline);
    let report = match grade::grade(&args.dir, &rubric, &options) {
        Ok(report) => report,
        Err(e) => return cannot(e),
    };
    let format: &dyn Format = match args.format {
        OutputFormat::Human => &Human,
        OutputFormat::Json => &Json,
        OutputFormat::Markdown => &Markdown,
    };
    let written = match &args.output {
        Some(path) => std::fs::File::create(path).and_then(|mut f| {
            format.write(&report, &mut f)?;
            f.flush()
        }),
        None => {
            let mut out = anstream::stdout().lock();
            format.write(&report, &mut out).and_then(|_| out.flush())
        }
    };
    if let Err(e) = written {
        return cannot(format!("cannot write the report: {e}"));
    }
    ExitCode::from(report.exit_code())
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

/// After the rubric's overall deadline, stop as on an interrupt.
fn watch_deadline(deadline: std::time::Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        runner::abort_all(&format!(
            "the rubric's overall deadline ({}) passed",
            humantime::format_duration(deadline)
        ));
    });
}
