//! The kit's test harness (libtest-mimic): each test says what it needs
//! from the machine (full isolation, root, strace, a build tool), and one
//! that cannot run here is never reported as passed. Outside CI it is
//! reported as ignored, with the reason and the fix printed once; in CI
//! (`CI` set, or `LABGRADE_TEST_STRICT=1` as `scripts/test` sets it) it
//! fails, since CI installs everything and a skip there is a defect.
//!
//! What the machine offers is asked of `labgrade doctor --json`, the same
//! probe gradings use, once per test process and only if a test needs it.

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Failed, Trial};

/// What a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// The full isolation level: the expected verdicts assume each program
    /// in its own namespaces, with its own /tmp and /dev/shm.
    Full,
    /// Running as root: learner code as an unprivileged uid of its own, the
    /// uid level, cgroups.
    Root,
    /// The evidence of real mappings: strace, and the sandbox init's
    /// seccomp watch of reads and writes.
    Strace,
    /// A build tool, as a build in the sandbox would start it.
    Tool(&'static str),
}

/// The full isolation level and strace: what every grading of a fixture
/// with its expected verdicts needs.
pub const GRADING: &[Need] = &[Need::Full, Need::Strace];

/// What the machine lacks, by need, with the fix.
struct Machine {
    missing: BTreeMap<Need, String>,
}

fn machine() -> &'static Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let mut missing = BTreeMap::new();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            missing.insert(
                Need::Root,
                "root: run the tests as root (learner code then runs as its own uid)".to_string(),
            );
        }
        let out = Command::new(crate::labgrade())
            .args(["doctor", "--json"])
            .output()
            .expect("run labgrade doctor");
        let doctor: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "labgrade doctor --json printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let findings = doctor["findings"].as_array().cloned().unwrap_or_default();
        let finding = |topic: &str| findings.iter().find(|f| f["topic"] == topic).cloned();
        let why = |f: &serde_json::Value| {
            let mut text = f["detail"].as_str().unwrap_or("").to_string();
            if let Some(fix) = f["fix"].as_str() {
                text.push_str(&format!(" (fix: {fix})"));
            }
            text
        };
        if doctor["level"] != "full" {
            let detail = finding("isolation").map(|f| why(&f)).unwrap_or_default();
            missing.insert(Need::Full, format!("full isolation: {detail}"));
        }
        // The evidence of real mappings: strace, and the init's watch of
        // reads and writes.
        for topic in ["strace", "watch"] {
            if let Some(f) = finding(topic).filter(|f| f["state"] != "ok") {
                missing.insert(Need::Strace, format!("{topic}: {}", why(&f)));
            }
        }
        for f in &findings {
            if let Some(tool) = TOOLS.iter().find(|t| f["topic"] == **t)
                && f["state"] != "ok"
            {
                missing.insert(Need::Tool(tool), format!("{tool}: {}", why(f)));
            }
        }
        Machine { missing }
    })
}

/// The build tools a test may name.
const TOOLS: &[&str] = &["cc", "c++", "make", "cmake", "cargo", "wine"];

/// Whether a missing need fails the test instead of ignoring it.
fn strict() -> bool {
    let set = |var: &str| {
        std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v.to_lowercase() != "false")
    };
    set("CI") || set("LABGRADE_TEST_STRICT")
}

/// A test binary's tests.
#[derive(Default)]
pub struct Suite {
    trials: Vec<Trial>,
    /// Ignored tests, by what the machine lacks for them.
    ignored: BTreeMap<String, Vec<String>>,
    ignored_count: usize,
}

impl Suite {
    pub fn new() -> Suite {
        Suite::default()
    }

    /// A test needing `needs`; it passes unless `test` panics.
    pub fn test(self, name: &str, needs: &[Need], test: fn()) -> Suite {
        self.case(name, needs, test)
    }

    /// The same with a closure, for tests made from data (one per fixture).
    pub fn case(
        mut self,
        name: &str,
        needs: &[Need],
        test: impl FnOnce() + Send + 'static,
    ) -> Suite {
        let lacking: Vec<String> = if needs.is_empty() {
            Vec::new()
        } else {
            let machine = machine();
            needs
                .iter()
                .filter_map(|n| machine.missing.get(n).cloned())
                .collect()
        };
        let run = move || {
            test();
            Ok(())
        };
        let trial = if lacking.is_empty() {
            Trial::test(name, run)
        } else if strict() {
            let message = format!(
                "this test needs what this machine lacks, and in CI nothing may be skipped (scripts/setup test installs it):\n  {}",
                lacking.join("\n  ")
            );
            Trial::test(name, move || Err(Failed::from(message)))
        } else {
            for why in lacking {
                self.ignored.entry(why).or_default().push(name.to_string());
            }
            self.ignored_count += 1;
            Trial::test(name, run).with_ignored_flag(true)
        };
        self.trials.push(trial);
        self
    }

    /// Runs the tests libtest-style, and says why any were ignored.
    pub fn run(self) -> ExitCode {
        let args = Arguments::from_args();
        if !args.list && self.ignored_count > 0 {
            eprintln!(
                "note: {} test(s) ignored: they need what this machine lacks (set CI=1 to fail them instead)",
                self.ignored_count
            );
            for (why, names) in &self.ignored {
                let which = if names.len() <= 3 {
                    names.join(", ")
                } else {
                    format!("{} tests", names.len())
                };
                eprintln!("  - {why}\n    needed by {which}");
            }
        }
        libtest_mimic::run(&args, self.trials).exit_code()
    }
}
