//! One grading: the rubric, the built programs, the run's directories, the
//! seeded randomness, and the experiments already made (several checks
//! judge the same run, so each experiment runs once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crate::build::BuildResult;
use crate::experiments::{MapfileOutcome, NoWriterOutcome, PairOutcome};
use crate::observe::trace::Tracer;
use crate::rubric::{Rubric, fill};
use crate::runner::{Limits, Spec};
use crate::sandbox::{Area, Purpose, Sandbox};

/// The variable that carries the reference writer's message.
pub const REF_MESSAGE_ENV: &str = "LABGRADE_REF_MESSAGE";

/// Limits for a learner's program at run time. CPU time is half the wall
/// deadline (at least a second), so a busy loop ends with SIGXCPU, told
/// apart from a program that merely waits (the runner gives a program that
/// is still computing at its deadline the time to reach its CPU limit, so
/// this holds on a loaded machine too). Files may be as large as the
/// largest region the rubric asks for (ftruncate counts against the limit),
/// plus room.
fn run_limits(rubric: &Rubric, timeout: Duration) -> Limits {
    Limits {
        cpu_secs: timeout.as_secs().div_ceil(2).max(1),
        file_bytes: rubric.largest_region() + (64 << 20),
        open_files: 256,
    }
}

/// One run of a learner's writer or reader, for the evidence checks.
#[derive(Debug, Clone)]
pub struct RunEvidence {
    /// "writer" or "reader".
    pub role: &'static str,
    /// The region it was to use (device, inode), when the grader saw one.
    pub region: Option<(u64, u64)>,
    /// What the watch saw; None where it could not watch.
    pub io: Option<crate::observe::watch::IoEvents>,
}

/// Whose program plays a part: the learner's, or the grader's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    Learner,
    Reference,
}

pub struct Session<'r> {
    pub rubric: &'r Rubric,
    pub build: BuildResult,
    /// This grading's private directory (work dirs, traces).
    pub run_dir: PathBuf,
    /// How learner code is contained, and this grading's area.
    pub sandbox: &'r Sandbox,
    pub area: &'r Area,
    pub tracer: Tracer,
    pub rng: fastrand::Rng,
    /// labgrade itself, which carries the reference programs.
    pub labgrade: PathBuf,
    next_dir: usize,
    /// Directories made for runs, not yet discarded.
    made: Vec<PathBuf>,
    /// mapfile's one run.
    pub(crate) mapfile: Option<Rc<MapfileOutcome>>,
    pub(crate) no_writer: HashMap<Duration, Rc<NoWriterOutcome>>,
    pub(crate) pairs: HashMap<String, Rc<PairOutcome>>,
    /// What the watch saw of every run of the learner's writer and reader,
    /// whichever check made it: how a program uses the region is judged on
    /// all its runs, watched or traced or not.
    pub(crate) evidence: Vec<RunEvidence>,
}

impl<'r> Session<'r> {
    pub fn new(
        rubric: &'r Rubric,
        build: BuildResult,
        sandbox: &'r Sandbox,
        area: &'r Area,
        tracer: Tracer,
        seed: u64,
    ) -> Session<'r> {
        Session {
            rubric,
            build,
            run_dir: area.dir.clone(),
            sandbox,
            area,
            tracer,
            rng: fastrand::Rng::with_seed(seed),
            labgrade: sandbox.labgrade().to_path_buf(),
            next_dir: 0,
            made: Vec::new(),
            mapfile: None,
            no_writer: HashMap::new(),
            pairs: HashMap::new(),
            evidence: Vec::new(),
        }
    }

    /// This grading's regions: its mechanism, in its place.
    pub fn regions(&self) -> crate::ipc::Regions<'r> {
        crate::ipc::Regions {
            mechanism: self.area.mechanism,
            place: &self.area.place,
        }
    }

    /// Whether regions live in the machine-wide place, where fixed names
    /// must be locked against other gradings.
    pub fn shared_place(&self) -> bool {
        !self.area.place.private
    }

    /// `spec` as it really runs: contained at this grading's level (a
    /// learner's program under the init's watch of its reads and writes,
    /// always), and, when `trace` is asked for, under strace where it can be
    /// (outside the sandbox, where the program cannot reach its trace).
    /// Returns the trace's path too.
    pub fn prepare(&mut self, spec: Spec, label: &str, trace: bool) -> (Spec, Option<PathBuf>) {
        let reference = spec.program == self.labgrade;
        let purpose = if reference {
            Purpose::Reference
        } else {
            Purpose::Run
        };
        let spec = self.sandbox.contain(spec, self.area, purpose);
        if reference || !trace {
            return (spec, None);
        }
        let out = self.trace_path(label);
        // Where the evidence of its calls comes from is the target's to say.
        let wrapped = match self.build.target.evidence() {
            crate::target::Evidence::Strace => self.tracer.wrap(&spec, &out),
        };
        match wrapped {
            Some(wrapped) => (wrapped, Some(out)),
            None => (spec, None),
        }
    }

    /// A new empty directory inside the run, e.g. a program's working dir.
    pub fn fresh_dir(&mut self, label: &str) -> PathBuf {
        self.next_dir += 1;
        let dir = self.run_dir.join(format!("{:03}-{label}", self.next_dir));
        std::fs::create_dir_all(&dir).expect("create a directory in the run");
        self.made.push(dir.clone());
        dir
    }

    /// Removes the working (and temporary) directories of the programs run
    /// so far, once what they left has been looked at: what one run wrote
    /// never fills the run's storage for the next.
    pub fn discard_dirs(&mut self) {
        for dir in self.made.drain(..) {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(format!("{}.tmp", dir.display()));
        }
    }

    /// A path for a trace file inside the run.
    pub fn trace_path(&mut self, label: &str) -> PathBuf {
        self.next_dir += 1;
        self.run_dir
            .join(format!("{:03}-{label}.trace", self.next_dir))
    }

    fn spec(
        &mut self,
        role: String,
        program: PathBuf,
        args: Vec<String>,
        shown: Vec<String>,
        timeout: Duration,
        held_stdin: bool,
    ) -> Spec {
        let dir = self.fresh_dir(&role.replace(' ', "-"));
        Spec {
            role,
            program,
            args,
            shown,
            env: crate::runner::clean_env(&dir),
            dir,
            held_stdin,
            timeout,
            limits: run_limits(self.rubric, timeout),
            confine: Default::default(),
            memory_cgroups: Vec::new(),
            storage: None,
        }
    }

    /// The learner's `mapfile`, in a fresh empty directory.
    pub fn mapfile_spec(&mut self) -> Spec {
        let cfg = &self.rubric.programs.mapfile;
        let size = self.rubric.file.size;
        self.learner_spec(&cfg.binary, &cfg.args, "", size, cfg.timeout, false)
    }

    /// A writer: the learner's, or the reference holding `message`.
    /// `timeout` bounds its whole life; the pair enforces shorter deadlines.
    pub fn writer_spec(
        &mut self,
        who: Who,
        name: &str,
        size: u64,
        message: &str,
        timeout: Duration,
    ) -> Spec {
        let cfg = &self.rubric.programs.writer;
        match who {
            Who::Learner => self.learner_spec(&cfg.binary, &cfg.args, name, size, timeout, true),
            Who::Reference => {
                // The message goes in the environment, not the command line,
                // which every process on the machine may read.
                let mut spec = self.reference_spec("writer", name, size, &[], timeout, true);
                spec.env
                    .push((REF_MESSAGE_ENV.into(), message.to_string().into()));
                if let Some(uid) = self.sandbox.learner_uid() {
                    // Its region belongs to the learner, as if the learner's
                    // own writer had made it.
                    spec.args
                        .extend(["--share-with".to_string(), format!("{uid}:{uid}")]);
                }
                spec
            }
        }
    }

    /// A reader: the learner's or the reference.
    pub fn reader_spec(&mut self, who: Who, name: &str, size: u64) -> Spec {
        let cfg = &self.rubric.programs.reader;
        match who {
            Who::Learner => {
                self.learner_spec(&cfg.binary, &cfg.args, name, size, cfg.timeout, false)
            }
            Who::Reference => self.reference_spec("reader", name, size, &[], cfg.timeout, false),
        }
    }

    /// A learner's program with its argument templates filled in.
    fn learner_spec(
        &mut self,
        binary: &str,
        templates: &[String],
        name: &str,
        size: u64,
        timeout: Duration,
        held_stdin: bool,
    ) -> Spec {
        let message = &self.rubric.region.message;
        let args: Vec<String> = templates
            .iter()
            .map(|a| fill(a, name, size, message))
            .collect();
        let shown = shown(binary, &args);
        let (program, args) = self.build.target.launch(self.learner_program(binary), args);
        self.spec(
            binary.to_string(),
            program,
            args,
            shown,
            timeout,
            held_stdin,
        )
    }

    /// `labgrade ref ROLE NAME SIZE EXTRA...`: the reference program.
    fn reference_spec(
        &mut self,
        role: &str,
        name: &str,
        size: u64,
        extra: &[String],
        timeout: Duration,
        held_stdin: bool,
    ) -> Spec {
        let mut args = vec![
            "ref".to_string(),
            role.to_string(),
            name.to_string(),
            size.to_string(),
        ];
        args.extend(extra.iter().cloned());
        let label = format!("reference shm_{role}");
        let shown = vec![label.clone(), name.to_string(), size.to_string()];
        let program = self.labgrade.clone();
        let mut spec = self.spec(label, program, args, shown, timeout, held_stdin);
        spec.env.push(self.area.reference_env());
        spec
    }

    fn learner_program(&self, binary: &str) -> PathBuf {
        self.build
            .program(binary)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(binary))
    }

    /// A fresh message for the reference writer: random, and never the
    /// length of the rubric's, so a reader printing a fixed string fails.
    pub fn random_message(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
        let forbidden = self.rubric.region.message.len();
        let max = (self.rubric.region.size.saturating_sub(1) as usize).min(30);
        let lengths: Vec<usize> = (max.min(21)..=max).filter(|&l| l != forbidden).collect();
        let len = if lengths.is_empty() {
            max
        } else {
            lengths[self.rng.usize(..lengths.len())]
        };
        let mut message = String::from("Grader message ");
        while message.len() < len {
            message.push(ALPHABET[self.rng.usize(..ALPHABET.len())] as char);
        }
        message.truncate(len);
        message
    }
}

/// A command as the learner would type it: `./shm_writer /MySharedMemory 1024`.
fn shown(binary: &str, args: &[String]) -> Vec<String> {
    std::iter::once(format!("./{binary}"))
        .chain(args.iter().cloned())
        .collect()
}
