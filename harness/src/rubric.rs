//! The rubric: what to build, how to run each program, what to look for, and
//! the checks with their points. Read from TOML (`grading.toml` is the
//! default, compiled in) and validated so that every mistake names its line
//! and key.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer};

use crate::hash::sha256_hex;

/// The default rubric, `grading.toml` at the repository's root.
pub const DEFAULT_RUBRIC: &str = include_str!("../../grading.toml");

/// A rubric that could not be read; `Display` gives `FILE:LINE:COL: key: what`.
#[derive(Debug)]
pub struct RubricError {
    pub origin: String,
    pub line: Option<(usize, usize)>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for RubricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some((line, col)) = self.line {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RubricError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rubric {
    pub version: u32,
    #[serde(default)]
    pub title: String,
    /// The whole grading's deadline: checks not done by then are reported
    /// as not run (a grader error, never the learner's). It must leave room
    /// for the worst case the rubric's own timeouts allow
    /// ([`Rubric::time_budget`]), so that learner code slow within those
    /// timeouts is charged for that, never left "not run".
    #[serde(default = "default_deadline", deserialize_with = "duration")]
    pub deadline: Duration,
    #[serde(default)]
    pub build: BuildConfig,
    #[serde(default)]
    pub programs: Programs,
    #[serde(default)]
    pub region: RegionConfig,
    #[serde(default)]
    pub file: FileConfig,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub gradescope: GradescopeConfig,
    #[serde(default, rename = "check")]
    pub checks: Vec<CheckConfig>,
    /// Where the rubric came from and its hash; not part of the TOML.
    #[serde(skip)]
    pub origin: String,
    #[serde(skip)]
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// A command that replaces detection, run in the submission's copy.
    pub command: Option<Vec<String>>,
    /// More directories to look for built programs in.
    pub binaries: Vec<PathBuf>,
    pub cc: String,
    pub cxx: String,
    pub cflags: Vec<String>,
    pub libs: Vec<String>,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// What the programs are built for: the sources say (`auto`), or
    /// the rubric does.
    pub target: TargetChoice,
}

/// `[build] target`: which platform the programs are built for and run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetChoice {
    /// Windows programs where the sources use the Windows API only.
    #[default]
    Auto,
    Native,
    /// Built with mingw-w64 and run under Wine.
    Windows,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            command: None,
            binaries: Vec::new(),
            cc: "cc".into(),
            cxx: "c++".into(),
            cflags: vec!["-O2".into(), "-Wall".into()],
            libs: vec!["-lrt".into()],
            timeout: Duration::from_secs(180),
            target: TargetChoice::Auto,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Programs {
    pub mapfile: MapfileConfig,
    pub writer: WriterConfig,
    pub reader: ReaderConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapfileConfig {
    pub binary: String,
    pub args: Vec<String>,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for MapfileConfig {
    fn default() -> Self {
        MapfileConfig {
            binary: "mapfile".into(),
            args: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    pub binary: String,
    pub args: Vec<String>,
    pub name: Option<String>,
    pub ready: Ready,
    #[serde(deserialize_with = "duration")]
    pub ready_timeout: Duration,
    pub release: Release,
    #[serde(deserialize_with = "duration")]
    pub hold: Duration,
    #[serde(deserialize_with = "duration")]
    pub exit_timeout: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            binary: "shm_writer".into(),
            args: vec!["{name}".into(), "{size}".into()],
            name: None,
            ready: Ready::Region,
            ready_timeout: Duration::from_secs(5),
            release: Release::StdinLine,
            hold: Duration::from_secs(1),
            exit_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReaderConfig {
    pub binary: String,
    pub args: Vec<String>,
    pub name: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            binary: "shm_reader".into(),
            args: vec!["{name}".into(), "{size}".into()],
            name: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// When the writer is ready for the reader.
#[derive(Debug, Clone)]
pub enum Ready {
    /// The grader sees the region with its size and message.
    Region,
    /// The writer prints a line matching this pattern.
    Stdout(Regex),
    /// A fixed delay: the last resort, for writers that give no sign.
    Delay(Duration),
}

impl<'de> Deserialize<'de> for Ready {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(d)?;
        if text == "region" {
            Ok(Ready::Region)
        } else if let Some(pattern) = text.strip_prefix("stdout:") {
            Regex::new(pattern)
                .map(Ready::Stdout)
                .map_err(D::Error::custom)
        } else if let Some(delay) = text.strip_prefix("delay:") {
            parse_duration(delay)
                .map(Ready::Delay)
                .map_err(D::Error::custom)
        } else {
            Err(D::Error::custom(format!(
                "unknown readiness {text:?}: use \"region\", \"stdout:REGEX\" or \"delay:DURATION\""
            )))
        }
    }
}

/// How the writer is told to let go of the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Release {
    StdinLine,
    StdinEof,
    Sigterm,
    Sigint,
    None,
}

/// What exit a reader must give when there is no region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectExit {
    Nonzero,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    WriterFirst,
    ReaderFirst,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionConfig {
    pub name: String,
    pub size: u64,
    pub message: String,
    pub line: String,
    pub start: Start,
    #[serde(deserialize_with = "duration")]
    pub reader_delay: Duration,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            name: "/MySharedMemory".into(),
            size: 1024,
            message: "Shared Memory Data!".into(),
            line: "Data from shared memory: {message}".into(),
            start: Start::WriterFirst,
            reader_delay: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub name: String,
    pub size: u64,
    pub message: String,
    pub line: String,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            name: "datafile.bin".into(),
            size: 1024,
            message: "Hello, Memory-Mapped File!".into(),
            line: "Data from memory-mapped file: {message}".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    #[serde(rename = "match")]
    pub mode: MatchMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradescopeConfig {
    /// What Gradescope shows of a hidden check: "hidden", "after_due_date",
    /// "after_published" or "visible".
    pub hidden_visibility: Visibility,
}

impl Default for GradescopeConfig {
    fn default() -> Self {
        GradescopeConfig {
            hidden_visibility: Visibility::AfterPublished,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Hidden,
    AfterDueDate,
    AfterPublished,
    Visible,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Hidden => "hidden",
            Visibility::AfterDueDate => "after_due_date",
            Visibility::AfterPublished => "after_published",
            Visibility::Visible => "visible",
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchMode {
    #[default]
    Line,
    Substring,
    Regex,
}

/// What a check does; several checks may share a kind with other parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Build,
    FileRuns,
    FileOutput,
    FileContents,
    FileUsesMmap,
    ShmObserved,
    ShmHandoff,
    ShmWriterInterop,
    ShmReaderInterop,
    ShmNoWriter,
    ShmCleanup,
    ShmRepeat,
    ShmUsesMmap,
    ShmLarge,
}

impl Kind {
    pub const ALL: [(Kind, &'static str); 14] = [
        (Kind::Build, "build"),
        (Kind::FileRuns, "file.runs"),
        (Kind::FileOutput, "file.output"),
        (Kind::FileContents, "file.contents"),
        (Kind::FileUsesMmap, "file.uses_mmap"),
        (Kind::ShmObserved, "shm.observed"),
        (Kind::ShmHandoff, "shm.handoff"),
        (Kind::ShmWriterInterop, "shm.writer_interop"),
        (Kind::ShmReaderInterop, "shm.reader_interop"),
        (Kind::ShmNoWriter, "shm.no_writer"),
        (Kind::ShmCleanup, "shm.cleanup"),
        (Kind::ShmRepeat, "shm.repeat"),
        (Kind::ShmUsesMmap, "shm.uses_mmap"),
        (Kind::ShmLarge, "shm.large"),
    ];

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.iter().find(|(_, n)| *n == text).map(|(k, _)| *k)
    }

    pub fn name(self) -> &'static str {
        Kind::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap()
    }

    /// The parameters a check of this kind accepts.
    fn params(self) -> &'static [&'static str] {
        match self {
            Kind::ShmRepeat => &["runs", "jitter", "timeout"],
            Kind::ShmLarge => &["size", "max_peak_mib"],
            Kind::ShmNoWriter => &["timeout", "expect_exit", "expect_stderr"],
            _ => &[],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub id: toml::Spanned<String>,
    pub kind: Option<toml::Spanned<String>>,
    pub name: String,
    pub points: toml::Spanned<f64>,
    #[serde(default)]
    pub needs: Vec<toml::Spanned<String>>,
    #[serde(default)]
    partial: Option<toml::Spanned<bool>>,
    #[serde(default)]
    pub hidden: bool,
    // The kinds' parameters as a rubric writes them; checks read
    // `params`, typed by kind.
    runs: Option<toml::Spanned<u32>>,
    #[serde(default, deserialize_with = "opt_duration")]
    jitter: Option<toml::Spanned<Duration>>,
    size: Option<toml::Spanned<u64>>,
    max_peak_mib: Option<toml::Spanned<u64>>,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<toml::Spanned<Duration>>,
    /// shm.no_writer: "nonzero" (the default) or "any", for labs whose
    /// reader reports a missing region but exits 0.
    expect_exit: Option<toml::Spanned<ExpectExit>>,
    /// shm.no_writer: whether an error must appear on stderr (default true).
    expect_stderr: Option<toml::Spanned<bool>>,
    /// Filled in by validation from `kind` (or `id`).
    #[serde(skip, default = "default_kind")]
    pub resolved: Kind,
    /// Filled in by validation: the parameters of its kind.
    #[serde(skip)]
    pub params: Params,
}

/// A check's own parameters, by its kind, defaults filled in: what the
/// check reads (the flat fields above are only how a rubric writes them,
/// each refused with its line where its kind takes no such parameter).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Params {
    /// The kinds that take none.
    #[default]
    None,
    /// shm.no_writer
    ReaderAlone(ReaderAlone),
    /// shm.repeat
    Repeat(Repeat),
    /// shm.large
    Large(Large),
}

/// `shm.no_writer`: the reader alone.
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderAlone {
    /// How long it may run (default 2 s).
    pub timeout: Duration,
    /// "nonzero" (the default), or "any" for labs whose reader reports a
    /// missing region but exits 0.
    pub expect_exit: ExpectExit,
    /// Whether an error must appear on stderr (default true).
    pub expect_stderr: bool,
}

/// `shm.repeat`: handoffs in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Repeat {
    /// How many (default 20).
    pub runs: u32,
    /// Most random delay before each reader (default 20 ms).
    pub jitter: Duration,
    /// How long all of them may take together (default 60 s); what is left
    /// when it runs out fails, the learner's slowness.
    pub budget: Duration,
    /// Points in proportion to the handoffs that succeeded.
    pub partial: bool,
}

/// `shm.large`: a large region.
#[derive(Debug, Clone, PartialEq)]
pub struct Large {
    /// Its size (default 256 MiB).
    pub size: u64,
    /// The most memory either program may use for it (default 64 MiB).
    pub max_peak_mib: u64,
}

/// How far a rubric may raise what it may set (README, "Limits").
pub struct Bounds {
    /// Any one program's timeout, and each phase of the writer's.
    pub program_timeout: Duration,
    /// The whole build.
    pub build_timeout: Duration,
    /// The whole grading (and shm.repeat's budget).
    pub deadline: Duration,
    /// A region's or the mapped file's size.
    pub region_bytes: u64,
}

pub const BOUNDS: Bounds = Bounds {
    program_timeout: Duration::from_secs(300),
    build_timeout: Duration::from_secs(1800),
    deadline: Duration::from_secs(4 * 3600),
    region_bytes: 256 << 20,
};

fn default_deadline() -> Duration {
    Duration::from_secs(600)
}

fn default_kind() -> Kind {
    Kind::Build
}

impl CheckConfig {
    pub fn id(&self) -> &str {
        self.id.get_ref()
    }
    pub fn kind(&self) -> Kind {
        self.resolved
    }
    pub fn points(&self) -> f64 {
        *self.points.get_ref()
    }
    pub fn partial(&self) -> bool {
        self.partial.as_ref().is_some_and(|p| *p.get_ref())
    }
    pub fn needs(&self) -> impl Iterator<Item = &str> {
        self.needs.iter().map(|n| n.get_ref().as_str())
    }
    /// A shm.repeat check's parameters (the kind guarantees them).
    pub fn repeat(&self) -> &Repeat {
        match &self.params {
            Params::Repeat(p) => p,
            other => panic!("{} has no shm.repeat parameters: {other:?}", self.id()),
        }
    }
    /// A shm.large check's parameters.
    pub fn large(&self) -> &Large {
        match &self.params {
            Params::Large(p) => p,
            other => panic!("{} has no shm.large parameters: {other:?}", self.id()),
        }
    }
    /// A shm.no_writer check's parameters.
    pub fn reader_alone(&self) -> &ReaderAlone {
        match &self.params {
            Params::ReaderAlone(p) => p,
            other => panic!("{} has no shm.no_writer parameters: {other:?}", self.id()),
        }
    }

    /// The typed parameters of its kind, from what the rubric wrote.
    fn typed_params(&self) -> Params {
        let get = |v: &Option<toml::Spanned<Duration>>, default: Duration| {
            v.as_ref().map_or(default, |t| *t.get_ref())
        };
        match self.resolved {
            Kind::ShmNoWriter => Params::ReaderAlone(ReaderAlone {
                timeout: get(&self.timeout, Duration::from_secs(2)),
                expect_exit: self
                    .expect_exit
                    .as_ref()
                    .map_or(ExpectExit::Nonzero, |e| *e.get_ref()),
                expect_stderr: self.expect_stderr.as_ref().is_none_or(|e| *e.get_ref()),
            }),
            Kind::ShmRepeat => Params::Repeat(Repeat {
                runs: self.runs.as_ref().map_or(20, |r| *r.get_ref()),
                jitter: get(&self.jitter, Duration::from_millis(20)),
                budget: get(&self.timeout, Duration::from_secs(60)),
                partial: self.partial(),
            }),
            Kind::ShmLarge => Params::Large(Large {
                size: self.size.as_ref().map_or(256 << 20, |s| *s.get_ref()),
                max_peak_mib: self.max_peak_mib.as_ref().map_or(64, |m| *m.get_ref()),
            }),
            _ => Params::None,
        }
    }

    /// The parameters given, with where they were given.
    fn given_params(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut given = Vec::new();
        if let Some(v) = &self.runs {
            given.push(("runs", v.span()));
        }
        if let Some(v) = &self.jitter {
            given.push(("jitter", v.span()));
        }
        if let Some(v) = &self.size {
            given.push(("size", v.span()));
        }
        if let Some(v) = &self.max_peak_mib {
            given.push(("max_peak_mib", v.span()));
        }
        if let Some(v) = &self.timeout {
            given.push(("timeout", v.span()));
        }
        if let Some(v) = &self.expect_exit {
            given.push(("expect_exit", v.span()));
        }
        if let Some(v) = &self.expect_stderr {
            given.push(("expect_stderr", v.span()));
        }
        given
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like \"5s\" or \"500ms\": {e}"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<toml::Spanned<Duration>>, D::Error> {
    let text = toml::Spanned::<String>::deserialize(d)?;
    let span = text.span();
    let value = parse_duration(text.get_ref()).map_err(serde::de::Error::custom)?;
    Ok(Some(toml::Spanned::new(span, value)))
}

impl Rubric {
    /// The rubric compiled into labgrade.
    pub fn default_rubric() -> Rubric {
        Rubric::parse(DEFAULT_RUBRIC, "grading.toml (built in)")
            .expect("the built-in grading.toml is valid")
    }

    /// Reads a rubric file.
    pub fn load(path: &Path) -> Result<Rubric, RubricError> {
        Rubric::load_with_text(Some(path)).map(|(rubric, _)| rubric)
    }

    /// The rubric file at `path`, or the built-in one without a path, with
    /// the text it was read from: every command loads its rubric here.
    pub fn load_with_text(path: Option<&Path>) -> Result<(Rubric, String), RubricError> {
        let Some(path) = path else {
            return Ok((Rubric::default_rubric(), DEFAULT_RUBRIC.to_string()));
        };
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| RubricError {
            origin: origin.clone(),
            line: None,
            key: None,
            message: format!("cannot read the rubric: {err}"),
        })?;
        Ok((Rubric::parse(&text, &origin)?, text))
    }

    /// The rubric file at `path`, or the built-in one.
    pub fn load_or_default(path: Option<&Path>) -> Result<Rubric, RubricError> {
        Rubric::load_with_text(path).map(|(rubric, _)| rubric)
    }

    /// Parses and validates rubric text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Rubric, RubricError> {
        let error = |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
            RubricError {
                origin: origin.to_string(),
                line: span.map(|s| line_col(text, s.start)),
                key,
                message,
            }
        };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| error(e.span(), None, e.message().to_string()))?;
        let mut rubric: Rubric = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let key = (path != ".").then_some(path);
            error(inner.span(), key, inner.message().to_string())
        })?;
        rubric.validate().map_err(|(span, key, message)| {
            let span = span.or_else(|| key_span(text, &key));
            error(span, Some(key), message)
        })?;
        rubric.origin = origin.to_string();
        rubric.sha256 = sha256_hex(text.as_bytes());
        Ok(rubric)
    }

    /// Checks what the types alone cannot: the version, unique ids, known
    /// kinds, parameters that fit the kind, and `needs` that point back.
    fn validate(&mut self) -> Result<(), (Option<std::ops::Range<usize>>, String, String)> {
        if self.version != 1 {
            return Err((
                None,
                "version".into(),
                format!("this labgrade reads rubric version 1, not {}", self.version),
            ));
        }
        if self.checks.is_empty() {
            return Err((None, "check".into(), "the rubric has no [[check]]".into()));
        }
        let mut seen = HashSet::new();
        for (i, check) in self.checks.iter_mut().enumerate() {
            let at = |field: &str| format!("check[{i}].{field}");
            let id = check.id.get_ref().clone();
            if id.is_empty() || id.contains(char::is_whitespace) {
                return Err((
                    Some(check.id.span()),
                    at("id"),
                    format!("{id:?} is not a valid check id"),
                ));
            }
            let (kind_text, kind_span) = match &check.kind {
                Some(k) => (k.get_ref().clone(), k.span()),
                None => (id.clone(), check.id.span()),
            };
            check.resolved = Kind::parse(&kind_text).ok_or_else(|| {
                let known: Vec<_> = Kind::ALL.iter().map(|(_, n)| *n).collect();
                (
                    Some(kind_span),
                    at(if check.kind.is_some() { "kind" } else { "id" }),
                    format!(
                        "unknown check kind {kind_text:?}; give `kind` one of: {}",
                        known.join(", ")
                    ),
                )
            })?;
            for need in &check.needs {
                if !seen.contains(need.get_ref().as_str()) {
                    return Err((
                        Some(need.span()),
                        at("needs"),
                        format!("{:?} is not a check defined above this one", need.get_ref()),
                    ));
                }
            }
            if !seen.insert(id.clone()) {
                return Err((
                    Some(check.id.span()),
                    at("id"),
                    format!("check {id:?} is defined twice"),
                ));
            }
            let points = *check.points.get_ref();
            if !(points.is_finite() && points >= 0.0) {
                return Err((
                    Some(check.points.span()),
                    at("points"),
                    "points must be a number of at least 0".into(),
                ));
            }
            if let Some(partial) = &check.partial
                && *partial.get_ref()
                && check.resolved != Kind::ShmRepeat
            {
                return Err((
                    Some(partial.span()),
                    at("partial"),
                    "partial credit applies to shm.repeat checks only".into(),
                ));
            }
            for (param, span) in check.given_params() {
                if !check.resolved.params().contains(&param) {
                    return Err((
                        Some(span),
                        at(param),
                        format!(
                            "`{param}` does not apply to a {} check",
                            check.resolved.name()
                        ),
                    ));
                }
            }
            if let Some(runs) = &check.runs
                && *runs.get_ref() == 0
            {
                return Err((
                    Some(runs.span()),
                    at("runs"),
                    "runs must be at least 1".into(),
                ));
            }
            check.params = check.typed_params();
        }
        self.within_bounds()?;
        // Region names follow the mechanism's rule, the one the reference
        // programs apply: a name they would refuse is the rubric's mistake,
        // not a learner's program failing with the reference.
        let mechanism = crate::ipc::default_mechanism();
        for (key, name) in [
            ("region.name", Some(&self.region.name)),
            ("programs.writer.name", self.programs.writer.name.as_ref()),
            ("programs.reader.name", self.programs.reader.name.as_ref()),
        ] {
            if let Some(name) = name
                && let Err(e) = mechanism.check_name(name)
            {
                return Err((None, key.into(), e.to_string()));
            }
        }
        // Names the grader joins to the submission's directory (and removes
        // there before building): plain names, so nothing outside the run is
        // ever touched.
        for (key, name) in [
            ("programs.mapfile.binary", &self.programs.mapfile.binary),
            ("programs.writer.binary", &self.programs.writer.binary),
            ("programs.reader.binary", &self.programs.reader.binary),
        ] {
            if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
                return Err((
                    None,
                    key.into(),
                    format!(
                        "{name:?} is not a program name: give a plain file name, without a directory"
                    ),
                ));
            }
        }
        for (i, dir) in self.build.binaries.iter().enumerate() {
            let inside = dir.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
            if !inside || dir.as_os_str().is_empty() {
                return Err((
                    None,
                    "build.binaries".into(),
                    format!(
                        "entry {i}, {}, must be a directory inside the submission (relative, without ..)",
                        dir.display()
                    ),
                ));
            }
        }
        if self.region.size == 0 || (self.region.message.len() as u64) >= self.region.size {
            return Err((
                None,
                "region.size".into(),
                format!(
                    "the region ({} bytes) must hold the message and its NUL",
                    self.region.size
                ),
            ));
        }
        if self.file.size == 0 || (self.file.message.len() as u64) >= self.file.size {
            return Err((
                None,
                "file.size".into(),
                format!(
                    "the file ({} bytes) must hold the message and its NUL",
                    self.file.size
                ),
            ));
        }
        let budget = self.time_budget();
        if self.deadline < budget.total {
            return Err((
                None,
                "deadline".into(),
                format!(
                    "{} is shorter than the worst case this rubric's own timeouts allow, {} ({}): raise it, or lower those timeouts",
                    humantime::format_duration(self.deadline),
                    humantime::format_duration(budget.total),
                    budget.describe()
                ),
            ));
        }
        if self.output.mode == MatchMode::Regex {
            for (key, line) in [
                ("region.line", &self.region.line),
                ("file.line", &self.file.line),
            ] {
                Regex::new(&line.replace("{message}", "x")).map_err(|e| {
                    (
                        None,
                        key.to_string(),
                        format!("not a regular expression: {e}"),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Limits a rubric may raise only so far (README, "Limits"): each
    /// program's timeouts, the build's, the whole grading's deadline, and
    /// the size of a region (the grading's region place holds the learner's
    /// largest region and the grader's beside it).
    fn within_bounds(&self) -> Result<(), (Option<std::ops::Range<usize>>, String, String)> {
        let too_long = |key: String, value: Duration, bound: Duration| {
            (value > bound).then(|| {
                (
                    None,
                    key,
                    format!(
                        "{} is more than the {} a rubric may give",
                        humantime::format_duration(value),
                        humantime::format_duration(bound)
                    ),
                )
            })
        };
        let p = &self.programs;
        let mut times = vec![
            (
                "programs.mapfile.timeout".to_string(),
                p.mapfile.timeout,
                BOUNDS.program_timeout,
            ),
            (
                "programs.reader.timeout".to_string(),
                p.reader.timeout,
                BOUNDS.program_timeout,
            ),
            (
                "programs.writer.ready_timeout".to_string(),
                p.writer.ready_timeout,
                BOUNDS.program_timeout,
            ),
            (
                "programs.writer.hold".to_string(),
                p.writer.hold,
                BOUNDS.program_timeout,
            ),
            (
                "programs.writer.exit_timeout".to_string(),
                p.writer.exit_timeout,
                BOUNDS.program_timeout,
            ),
            (
                "build.timeout".to_string(),
                self.build.timeout,
                BOUNDS.build_timeout,
            ),
            ("deadline".to_string(), self.deadline, BOUNDS.deadline),
        ];
        for (i, check) in self.checks.iter().enumerate() {
            if let Some(t) = &check.timeout {
                let bound = if check.kind() == Kind::ShmRepeat {
                    BOUNDS.deadline
                } else {
                    BOUNDS.program_timeout
                };
                times.push((format!("check[{i}].timeout"), *t.get_ref(), bound));
            }
        }
        if let Some(e) = times
            .into_iter()
            .find_map(|(key, value, bound)| too_long(key, value, bound))
        {
            return Err(e);
        }
        let mib = |b: u64| b >> 20;
        let mut sizes = vec![
            ("region.size".to_string(), None, self.region.size),
            ("file.size".to_string(), None, self.file.size),
        ];
        for (i, check) in self.checks.iter().enumerate() {
            if let Some(size) = &check.size {
                sizes.push((
                    format!("check[{i}].size"),
                    Some(size.span()),
                    *size.get_ref(),
                ));
            }
        }
        for (key, span, size) in sizes {
            if size > BOUNDS.region_bytes {
                return Err((
                    span,
                    key,
                    format!(
                        "{size} bytes ({} MiB) is more than the {} MiB a region or file may have",
                        mib(size),
                        mib(BOUNDS.region_bytes)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The total of all points.
    pub fn total_points(&self) -> f64 {
        self.checks.iter().map(CheckConfig::points).sum()
    }

    /// The longest a grading can take when learner code is as slow as every
    /// timeout allows (a program still computing at its deadline gets one
    /// more to reach its CPU limit, so a run counts twice its timeout), plus
    /// room for the grader's own work. The overall deadline must be at
    /// least this.
    pub fn time_budget(&self) -> TimeBudget {
        let run = |t: Duration| 2 * t;
        let w = &self.programs.writer;
        let reader_first = if self.region.start == Start::ReaderFirst {
            self.region.reader_delay
        } else {
            Duration::ZERO
        };
        let pair = reader_first
            + w.ready_timeout
            + run(self.programs.reader.timeout)
            + w.hold
            + w.exit_timeout
            + crate::runner::GRACE;
        let has = |kinds: &[Kind]| self.checks.iter().any(|c| kinds.contains(&c.kind()));
        let mut parts = vec![
            ("the build".to_string(), self.build.timeout),
            ("mapfile".to_string(), run(self.programs.mapfile.timeout)),
        ];
        for (kinds, name) in [
            (
                &[Kind::ShmObserved, Kind::ShmWriterInterop][..],
                "the writer with the reference reader",
            ),
            (
                &[Kind::ShmHandoff, Kind::ShmCleanup, Kind::ShmUsesMmap][..],
                "the learner's pair",
            ),
            (
                &[Kind::ShmReaderInterop][..],
                "the reference writer with the reader",
            ),
        ] {
            if has(kinds) {
                parts.push((name.to_string(), pair));
            }
        }
        for c in &self.checks {
            match c.kind() {
                Kind::ShmNoWriter => {
                    parts.push((c.id().to_string(), run(c.reader_alone().timeout)))
                }
                Kind::ShmLarge => parts.push((c.id().to_string(), pair)),
                // Its own budget, and the handoff under way when it ran out.
                Kind::ShmRepeat => {
                    let r = c.repeat();
                    parts.push((c.id().to_string(), r.budget + pair + r.jitter))
                }
                _ => {}
            }
        }
        parts.push(("the grader's own work".to_string(), GRADER_MARGIN));
        TimeBudget {
            total: parts.iter().map(|(_, d)| *d).sum(),
            parts,
        }
    }

    /// The largest region or file any check makes: the lab's region, its
    /// data file, and every `shm.large` check's size.
    pub fn largest_region(&self) -> u64 {
        self.checks
            .iter()
            .filter(|c| c.kind() == Kind::ShmLarge)
            .map(|c| c.large().size)
            .chain([self.region.size, self.file.size])
            .max()
            .unwrap_or(0)
    }

    /// The name the writer uses, and the name the reader looks for.
    pub fn writer_name(&self) -> &str {
        self.programs
            .writer
            .name
            .as_deref()
            .unwrap_or(&self.region.name)
    }
    pub fn reader_name(&self) -> &str {
        self.programs
            .reader
            .name
            .as_deref()
            .unwrap_or(&self.region.name)
    }
}

/// Room in the time budget for what the grader itself does: copying,
/// probing, starting sandboxes, reading traces.
const GRADER_MARGIN: Duration = Duration::from_secs(30);

/// The worst-case time of a grading, and what it is made of.
#[derive(Debug, Clone)]
pub struct TimeBudget {
    pub total: Duration,
    pub parts: Vec<(String, Duration)>,
}

impl TimeBudget {
    /// "the build 3m, mapfile 10s, ..."
    pub fn describe(&self) -> String {
        self.parts
            .iter()
            .map(|(what, d)| format!("{what} {}", humantime::format_duration(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where `key` ("deadline", "region.size") is set in `text`, for an error
/// found after parsing; None when it is not written (a default).
fn key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let (table, name) = match key.rsplit_once('.') {
        Some((table, name)) => (Some(table), name),
        None => (None, key),
    };
    let mut in_table = table.is_none();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim_matches(['[', ']']);
            in_table = table == Some(header);
        } else if in_table
            && let Some(rest) = trimmed.strip_prefix(name)
            && rest.trim_start().starts_with('=')
        {
            let start = offset + (line.len() - line.trim_start().len());
            return Some(start..start + name.len());
        }
        offset += line.len();
    }
    None
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Fills `{name}`, `{size}` and `{message}` into a template.
pub fn fill(template: &str, name: &str, size: u64, message: &str) -> String {
    template
        .replace("{name}", name)
        .replace("{size}", &size.to_string())
        .replace("{message}", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Rubric::parse(text, "r.toml").unwrap_err().to_string()
    }

    const MINIMAL: &str = "version = 1\n[[check]]\nid = \"build\"\nname = \"b\"\npoints = 10\n";

    #[test]
    fn the_default_rubric_is_valid_and_sums_to_100() {
        let rubric = Rubric::default_rubric();
        assert_eq!(rubric.total_points(), 100.0);
        assert_eq!(rubric.checks.len(), 14);
    }

    #[test]
    fn the_default_rubric_spells_out_the_built_in_defaults() {
        let minimal = Rubric::parse(MINIMAL, "m").unwrap();
        let default = Rubric::default_rubric();
        assert_eq!(
            format!("{:?}", minimal.build),
            format!("{:?}", default.build)
        );
        assert_eq!(
            format!("{:?}", minimal.programs),
            format!("{:?}", default.programs)
        );
        assert_eq!(
            format!("{:?}", minimal.region),
            format!("{:?}", default.region)
        );
        assert_eq!(format!("{:?}", minimal.file), format!("{:?}", default.file));
        assert_eq!(
            format!("{:?}", minimal.output),
            format!("{:?}", default.output)
        );
    }

    #[test]
    fn a_misspelt_key_names_its_line_and_key() {
        let e = err("version = 1\n[[check]]\nid = \"build\"\nname = \"b\"\npionts = 10\n");
        assert!(e.starts_with("r.toml:5:1: check[0]"), "{e}");
        assert!(e.contains("unknown field `pionts`"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_its_line_and_key() {
        let e = err("version = 1\n[region]\nsize = \"big\"\n");
        assert!(e.starts_with("r.toml:3:8: region.size:"), "{e}");
    }

    #[test]
    fn semantic_mistakes_name_their_line_and_key() {
        let e = err(&format!(
            "{MINIMAL}[[check]]\nid = \"x\"\nname = \"x\"\npoints = 1\n"
        ));
        assert!(
            e.starts_with("r.toml:7:6: check[1].id: unknown check kind"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}[[check]]\nid = \"file.runs\"\nname = \"x\"\npoints = 1\nneeds = [\"file.output\"]\n"
        ));
        assert!(e.starts_with("r.toml:10:"), "{e}");
        assert!(e.contains("check[1].needs"), "{e}");
        let e = err(&format!(
            "{MINIMAL}[[check]]\nid = \"build\"\nname = \"x\"\npoints = 1\n"
        ));
        assert!(e.contains("defined twice"), "{e}");
        let e = err(&format!(
            "{MINIMAL}[[check]]\nid = \"file.runs\"\nname = \"x\"\npoints = 1\nruns = 3\n"
        ));
        assert!(
            e.starts_with("r.toml:10:8: check[1].runs: `runs` does not apply"),
            "{e}"
        );
        let e = err("version = 1\n[programs.writer]\nhold = \"soon\"\n");
        assert!(e.starts_with("r.toml:3:8: programs.writer.hold"), "{e}");
        let e = err("version = 2\n");
        assert!(e.contains("version 1"), "{e}");
    }

    #[test]
    fn a_region_name_the_reference_would_refuse_is_a_bad_rubric() {
        // glibc would take "OS" as /dev/shm/OS; the reference programs (and
        // POSIX) do not: refused at load time, not charged to a learner.
        let e = err(&format!("{MINIMAL}[region]\nname = \"OS\"\n"));
        assert!(e.starts_with("r.toml:7:"), "{e}");
        assert!(e.contains("region.name: invalid region name \"OS\""), "{e}");
        let e = err(&format!("{MINIMAL}[programs.reader]\nname = \"/a/b\"\n"));
        assert!(e.contains("programs.reader.name"), "{e}");
        assert!(Rubric::parse(&format!("{MINIMAL}[region]\nname = \"/x\"\n"), "r").is_ok());
    }

    #[test]
    fn a_limit_is_raised_only_within_its_bound() {
        let e = err(&format!(
            "{MINIMAL}[programs.mapfile]\ntimeout = \"6min\"\n"
        ));
        assert!(
            e.contains("programs.mapfile.timeout: 6m is more than the 5m"),
            "{e}"
        );
        let e = err(&format!("deadline = \"5h\"\n{MINIMAL}"));
        assert!(e.contains("deadline: 5h is more than the 4h"), "{e}");
        let e = err(&format!("{MINIMAL}[region]\nsize = 536870912\n"));
        assert!(e.contains("region.size:"), "{e}");
        assert!(e.contains("more than the 256 MiB"), "{e}");
        let ok = format!("deadline = \"20min\"\n{MINIMAL}[programs.mapfile]\ntimeout = \"5min\"\n");
        assert!(Rubric::parse(&ok, "r").is_ok());
    }

    #[test]
    fn a_second_instance_of_a_kind_takes_its_own_parameters() {
        let text = format!(
            "{MINIMAL}[[check]]\nid = \"shm.repeat_many\"\nkind = \"shm.repeat\"\nname = \"x\"\npoints = 1\nruns = 100\n"
        );
        let rubric = Rubric::parse(&text, "m").unwrap();
        assert_eq!(rubric.checks[1].kind(), Kind::ShmRepeat);
        assert_eq!(rubric.checks[1].repeat().runs, 100);
    }

    #[test]
    fn readiness_and_release_are_read_from_strings() {
        let text = format!(
            "version = 1\n[programs.writer]\nready = \"stdout:^ready$\"\nrelease = \"sigterm\"\n{}",
            &MINIMAL["version = 1\n".len()..]
        );
        let rubric = Rubric::parse(&text, "m").unwrap();
        assert!(matches!(rubric.programs.writer.ready, Ready::Stdout(_)));
        assert_eq!(rubric.programs.writer.release, Release::Sigterm);
        let e = err("version = 1\n[programs.writer]\nready = \"whenever\"\n");
        assert!(
            e.contains("programs.writer.ready") && e.contains("unknown readiness"),
            "{e}"
        );
    }
}
