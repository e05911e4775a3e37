//! One grading's means of running programs: the rubric, the built
//! programs, the run's directories, the sandbox and the tracer, and the
//! grading's seed. What was made with them is the experiments' store
//! (`experiments::Experiments`); this module knows nothing of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::build::BuildResult;
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

/// Whose program plays a part: the learner's, or the grader's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    Learner,
    Reference,
}

pub struct Session<'r> {
    rubric: &'r Rubric,
    build: BuildResult,
    /// This grading's private directory (work dirs, traces).
    run_dir: PathBuf,
    /// How learner code is contained, and this grading's area.
    sandbox: &'r Sandbox,
    area: &'r Area,
    tracer: Tracer,
    /// The grading's seed: each check draws from its own generator seeded
    /// from it and the check's id ([`Session::rng_for`]).
    seed: u64,
    /// labgrade itself, which carries the reference programs.
    labgrade: PathBuf,
    next_dir: usize,
    /// Directories made for runs, not yet discarded.
    made: Vec<PathBuf>,
    /// The region name of this grading's own, drawn once from its seed.
    fresh_name: String,
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
        let mut session = Session {
            rubric,
            build,
            run_dir: area.dir.clone(),
            sandbox,
            area,
            tracer,
            seed,
            labgrade: sandbox.labgrade().to_path_buf(),
            next_dir: 0,
            made: Vec::new(),
            fresh_name: String::new(),
        };
        session.fresh_name = crate::checks::fresh_name(&mut session.rng_for("region name"));
        session
    }

    /// A region name of this grading's own (the interop pairs give it, so
    /// a program ignoring NAME is seen): the same for the whole grading.
    pub fn fresh_name(&self) -> &str {
        &self.fresh_name
    }

    /// The random generator of the check `id`: seeded from the grading's
    /// seed and the id alone, so what one check draws does not depend on
    /// which checks ran before it (`--only` changes nothing).
    pub fn rng_for(&self, id: &str) -> fastrand::Rng {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(self.seed.to_le_bytes())
            .chain_update(id.as_bytes())
            .finalize();
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        fastrand::Rng::with_seed(u64::from_le_bytes(bytes))
    }

    pub fn rubric(&self) -> &'r Rubric {
        self.rubric
    }

    /// What the build made.
    pub fn build(&self) -> &BuildResult {
        &self.build
    }

    /// The uid learner code runs as, where it is not the grader's.
    pub fn learner_uid(&self) -> Option<u32> {
        self.sandbox.learner_uid()
    }

    /// Why system calls cannot be traced here, if they cannot.
    pub fn untraceable(&self) -> Option<&crate::observe::trace::Untraceable> {
        self.tracer.unavailable_reason()
    }

    /// This grading's regions: its mechanism, in its place.
    pub fn regions(&self) -> crate::ipc::Regions<'r> {
        let area: &'r Area = self.area;
        let mechanism: &'r dyn crate::ipc::Mechanism = match area.wine() {
            Some(_) => &crate::ipc::win_section::WinSection,
            None => area.mechanism,
        };
        crate::ipc::Regions {
            mechanism,
            place: &area.place,
            windows: area.wine().map(|home| crate::ipc::win_section::Sections {
                sandbox: self.sandbox,
                area,
                home,
            }),
        }
    }

    /// The name a program is given for the rubric's region `name`: on
    /// Windows `/X` is `Local\X`.
    pub fn platform_name(&self, name: &str) -> String {
        if self.area.wine().is_some() && !name.is_empty() {
            crate::ipc::win_section::windows_name(name)
        } else {
            name.to_string()
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
        let helper = self
            .area
            .wine()
            .is_some_and(|home| spec.program == home.helper);
        if helper {
            // The grader's own Windows peer: as the learner's uid (the
            // prefix is its), never traced.
            return (
                self.sandbox
                    .contain_served(spec, self.area, Purpose::Helper, None),
                None,
            );
        }
        let purpose = if reference {
            Purpose::Reference
        } else {
            Purpose::Run
        };
        // The grading's sandbox server starts what it can, a traced run
        // under strace inside its sandbox; elsewhere strace traces a
        // program's own sandbox from outside.
        let traced = trace && !reference && self.tracer.unavailable_reason().is_none();
        let mut spec = spec;
        if spec.wine_view {
            // Wine talks to its server with a read and a write for every
            // request, each one a stop for the watch: 140 ms a program. A
            // Windows program is watched where its calls are traced (the
            // runs whose evidence is judged) and where it is held.
            // A writer is watched too, for its quick release, unless the
            // pair does not hold it (`unwatched` set by the pair).
            spec.unwatched = spec.unwatched || (!traced && !spec.held_stdin);
        }
        if !traced {
            return (
                self.sandbox.contain_served(spec, self.area, purpose, None),
                None,
            );
        }
        // Each traced call stops the program for strace, and the kernel's
        // side of that is charged to the program's CPU time: a traced run
        // gets twice the CPU (20,000 opens take 0.3 s untraced, 3 s
        // traced), up to its whole deadline, so that a program that spins
        // still reaches its CPU limit within one more deadline.
        let mut spec = spec;
        let cpu = spec.limits.cpu_secs;
        spec.limits.cpu_secs = (cpu * 2).min(spec.timeout.as_secs().max(cpu));
        let out = self.trace_path(label);
        let inside = match self.build.target.evidence() {
            crate::target::Evidence::Strace => self.tracer.inside(crate::sandbox::serve::TRACE),
        };
        let spec = self.sandbox.contain_served(
            spec,
            self.area,
            purpose,
            inside.map(|(strace, args)| (strace, args, out.as_path())),
        );
        if spec.launcher.is_some() {
            return (spec, Some(out));
        }
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
        let env = crate::runner::clean_env(&dir);
        let limits = run_limits(self.rubric, timeout);
        let mut spec = Spec::command(role, shown, &dir, env, timeout, limits).running(program);
        spec.args = args;
        spec.held_stdin = held_stdin;
        spec
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
            Who::Reference if self.area.wine().is_some() => {
                let mut spec = self.windows_peer("writer", name, size, timeout, true);
                spec.env
                    .push((REF_MESSAGE_ENV.into(), message.to_string().into()));
                spec
            }
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
            Who::Reference if self.area.wine().is_some() => {
                self.windows_peer("reader", name, size, cfg.timeout, false)
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
        let name = self.platform_name(name);
        let args: Vec<String> = templates
            .iter()
            .map(|a| fill(a, &name, size, message))
            .collect();
        let shown = shown(binary, &args);
        let target = self.build.target;
        let program = self.learner_program(binary);
        let mut spec = self.spec(
            binary.to_string(),
            program,
            args,
            shown,
            timeout,
            held_stdin,
        );
        spec.target = target;
        self.under_wine(&mut spec);
        spec
    }

    /// Runs `spec`'s program under this grading's Wine, if it has one.
    fn under_wine(&self, spec: &mut Spec) {
        if let Some(home) = self.area.wine() {
            self.sandbox.under_wine(spec, home);
        }
    }

    /// The grader's Windows peer playing `role` ("writer", "reader").
    fn windows_peer(
        &mut self,
        role: &str,
        name: &str,
        size: u64,
        timeout: Duration,
        held_stdin: bool,
    ) -> Spec {
        let name = self.platform_name(name);
        let label = format!("reference shm_{role}");
        let shown = vec![label.clone(), name.clone(), size.to_string()];
        let args = vec![role.to_string(), name, size.to_string()];
        let program = self
            .area
            .wine()
            .map(|home| home.helper.clone())
            .unwrap_or_default();
        let mut spec = self.spec(label, program, args, shown, timeout, held_stdin);
        spec.target = &crate::target::Windows;
        self.under_wine(&mut spec);
        spec
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
}

/// A command as the learner would type it: `./shm_writer /MySharedMemory 1024`.
fn shown(binary: &str, args: &[String]) -> Vec<String> {
    std::iter::once(format!("./{binary}"))
        .chain(args.iter().cloned())
        .collect()
}
