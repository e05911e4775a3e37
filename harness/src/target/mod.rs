//! Target platforms: what a submission's programs are built for and run
//! as. One module per target behind [`Target`]: programs built for this
//! machine ([`native`]), and Windows programs built with mingw-w64 and run
//! under Wine ([`windows`], [`wine`]). A submission's sources say which
//! target it is for ([`detect`]), unless the rubric does.

pub mod native;
pub mod windows;
pub mod wine;

use std::path::Path;

pub use native::Native;
pub use windows::Windows;

use crate::rubric::{BuildConfig, TargetChoice};
use crate::runner::Ending;

/// Where the evidence of a program's system calls comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// strace, wrapped around the program outside its sandbox.
    Strace,
}

/// One target platform.
pub trait Target: Sync {
    /// Its name in reports: `native`.
    fn id(&self) -> &'static str;
    /// The file a program called `name` is built as.
    fn program_file(&self, name: &str) -> String;
    /// The C and C++ compilers a plain build runs, given the rubric's.
    fn compilers<'r>(&self, build: &'r BuildConfig) -> (&'r str, &'r str);
    /// A run's stderr as a report shows it: what the platform itself wrote
    /// there that differs from run to run (Wine's thread numbers) made
    /// the same each time.
    fn tidy_stderr<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(text)
    }
    /// Flags a plain build adds for one source (its bytes): what the
    /// platform's compilers need that the rubric's flags cannot know.
    fn compile_flags(&self, _source: &[u8], _cpp: bool) -> Vec<String> {
        Vec::new()
    }
    /// Whether a plain build passes the rubric's library flag `lib` (mingw
    /// has no `-lrt`: Windows needs no POSIX realtime library).
    fn links(&self, _lib: &str) -> bool {
        true
    }
    /// Headers a plain build may stand in for when they are included but
    /// not handed in, each with the text of its stand-in.
    fn stub_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Where its C compilers' system headers are, for names written in
    /// another case than theirs (`<Windows.h>`, as Visual Studio writes it).
    fn system_headers(&self) -> Option<&'static Path> {
        None
    }
    /// System headers big enough to be worth precompiling once per machine
    /// (`windows.h`: most of a Windows hand-in's compile time).
    fn precompiled_headers(&self) -> &'static [&'static str] {
        &[]
    }
    /// Variables given to `make` on its command line (the compilers);
    /// `include`: a directory of the grader's shims the compilers must
    /// search (absolute, as the build sees it).
    fn make_variables(&self, _include: Option<&Path>) -> Vec<String> {
        Vec::new()
    }
    /// Variables given to CMake when it configures (a toolchain), with
    /// `include` as for [`Target::make_variables`].
    fn cmake_variables(&self, _include: Option<&Path>) -> Vec<String> {
        Vec::new()
    }
    /// The command a built program runs under, its path after it (a
    /// Windows program under Wine's loader): empty to run it as it is.
    /// `runtime`: where the program sees the target's machinery.
    fn loader(&self, _runtime: &Runtime) -> Vec<String> {
        Vec::new()
    }
    /// Whether a program that ended so, having said `stderr`, crashed,
    /// by its platform's own account: a Windows exit code is an NTSTATUS
    /// cut to 8 bits (5 is an access violation, but so is `return 5;`),
    /// and only Wine's report of the exception says it was one.
    fn crash(&self, _ending: Ending, _stderr: &str) -> Option<Crash> {
        None
    }
    /// Names of the files its own machinery runs (a loader, a server):
    /// such processes are never counted as a learner's leftovers.
    /// Whether a process running the file `exe` (its name) under the name
    /// `comm` is this target's own machinery (a loader's service, a
    /// server): such processes are never counted as a learner's.
    fn is_machinery(&self, _exe: &str, _comm: &str) -> bool {
        false
    }
    /// What Cargo builds for this target with, when it is not the
    /// machine's own: the target triple and the linker for it.
    fn rust_target(&self) -> Option<RustTarget> {
        None
    }
    /// Where the evidence of its programs' calls comes from.
    fn evidence(&self) -> Evidence;
    /// Whether its programs run under the grading's Wine.
    fn uses_wine(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for dyn Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// A Rust target other than the machine's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RustTarget {
    /// `x86_64-pc-windows-gnu`.
    pub triple: &'static str,
    /// The linker Cargo is told to use for it.
    pub linker: &'static str,
}

impl RustTarget {
    /// What `cargo build` is given to build for it.
    pub fn cargo_args(&self) -> Vec<String> {
        vec![
            "--target".to_string(),
            self.triple.to_string(),
            "--config".to_string(),
            format!("target.{}.linker=\"{}\"", self.triple, self.linker),
        ]
    }
}

impl Crash {
    /// What the program did, in a word: "crashed", "could not start".
    pub fn verb(&self) -> &'static str {
        match self.kind {
            CrashKind::Exception => "crashed",
            CrashKind::NotLoaded { .. } => "could not start",
        }
    }
}

/// How a program crashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashKind {
    /// It ran, and an exception nothing handled ended it.
    Exception,
    /// It never ran: a library it needs was not found (`dll`).
    NotLoaded { dll: String },
}

/// A crash, as the platform reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// What happened, in words: "an access violation".
    pub what: &'static str,
    /// Whether the program ran at all.
    pub kind: CrashKind,
    /// The platform's own line about it.
    pub report: String,
}

/// Where a program sees its target's machinery in its sandbox: a Windows
/// program's prefix and the directory of Wine's server, and Wine's loader.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub prefix: std::path::PathBuf,
    pub tmp: std::path::PathBuf,
    pub loader: std::path::PathBuf,
}

/// Sources written for a target this machine lacks the tools for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The platform, in words: "the Windows API".
    pub platform: &'static str,
    /// The files that say so, for the report (empty when the rubric did).
    pub files: String,
    /// What is missing here.
    pub missing: wine::Missing,
}

/// Every target there is, for what is asked of all of them.
pub fn all() -> &'static [&'static dyn Target] {
    &[&Native, &Windows]
}

/// The target the sources in `dir` are written for, or the rubric's
/// choice: sources that include windows.h and never sys/mman.h are
/// Windows programs (portable sources with both are built natively).
pub fn detect(dir: &Path, choice: TargetChoice) -> Result<&'static dyn Target, Unsupported> {
    let files = match choice {
        TargetChoice::Native => return Ok(&Native),
        TargetChoice::Windows => windows_only(dir).unwrap_or_default(),
        TargetChoice::Auto => match windows_only(dir) {
            Some(files) => files,
            None => return Ok(&Native),
        },
    };
    match wine::find() {
        Ok(_) => Ok(&Windows),
        Err(missing) => Err(Unsupported {
            platform: "the Windows API",
            files,
            missing,
        }),
    }
}

/// Whether a process (its file's name, its own name) is any target's
/// machinery, for telling leftovers apart.
pub fn is_machinery(exe: &str, comm: &str) -> bool {
    all().iter().any(|t| t.is_machinery(exe, comm))
}

/// The headers the C and C++ sources in `dir` include, by the names they
/// are written with (`Windows.h`, `sys/mman.h`), each once, sorted.
pub fn includes(dir: &Path) -> Vec<String> {
    static INCLUDE: std::sync::OnceLock<regex::bytes::Regex> = std::sync::OnceLock::new();
    let re = INCLUDE.get_or_init(|| {
        regex::bytes::Regex::new(r#"(?m)^[ \t]*#[ \t]*include[ \t]*[<"]([^>"\r\n]+)[>"]"#)
            .expect("a valid pattern")
    });
    let mut names = std::collections::BTreeSet::new();
    visit_sources(dir, dir, &mut |rel, bytes| {
        if rel.ends_with(".rs") {
            return;
        }
        for c in re.captures_iter(bytes) {
            if let Ok(name) = std::str::from_utf8(&c[1]) {
                names.insert(name.trim().to_string());
            }
        }
    });
    names.into_iter().collect()
}

/// Whether any source in `dir` includes `header` ("stdafx.h").
pub fn included(dir: &Path, header: &str) -> bool {
    let needle = format!("\"{}\"", header.to_ascii_lowercase());
    let mut found = false;
    visit_sources(dir, dir, &mut |_, bytes| {
        found |= memchr::memmem::find(&bytes.to_ascii_lowercase(), needle.as_bytes()).is_some();
    });
    found
}

/// What says a source is written for Windows, or for POSIX: C and C++
/// include windows.h or sys/mman.h; Rust uses a crate of Windows bindings
/// (windows-sys, windows, winapi) or a Unix one (libc, nix, rustix,
/// std::os::unix). memmap2 runs on both and says neither.
const WINDOWS_MARKS: &[(&str, &[&[u8]])] = &[
    ("c", &[b"<windows.h>", b"\"windows.h\""]),
    ("rs", &[b"windows_sys::", b"windows::win32", b"winapi::"]),
];
const POSIX_MARKS: &[(&str, &[&[u8]])] = &[
    ("c", &[b"<sys/mman.h>"]),
    ("rs", &[b"libc::", b"nix::", b"rustix::", b"std::os::unix"]),
];

/// The language family a source file's extension belongs to, for its marks.
fn family(ext: &str) -> Option<&'static str> {
    match ext {
        "c" | "cc" | "cpp" | "cxx" | "h" | "hpp" => Some("c"),
        "rs" => Some("rs"),
        _ => None,
    }
}

/// Sources written for Windows only: C or C++ that includes windows.h and
/// never sys/mman.h, Rust that uses Windows bindings and no Unix ones.
/// Returns the files. Sources are read as bytes: one saved in a Windows
/// code page (a cp1252 "é" in a comment) is not UTF-8.
fn windows_only(dir: &Path) -> Option<String> {
    let mut windows = Vec::new();
    let mut posix = false;
    visit_sources(dir, dir, &mut |rel, bytes| {
        let Some(family) = Path::new(rel)
            .extension()
            .and_then(|e| e.to_str())
            .and_then(family)
        else {
            return;
        };
        let lower = bytes.to_ascii_lowercase();
        let has = |marks: &[(&str, &[&[u8]])]| {
            marks
                .iter()
                .filter(|(f, _)| *f == family)
                .any(|(_, needles)| {
                    needles
                        .iter()
                        .any(|n| memchr::memmem::find(&lower, n).is_some())
                })
        };
        if has(WINDOWS_MARKS) {
            windows.push(rel.to_string());
        }
        posix |= has(POSIX_MARKS);
    });
    (!windows.is_empty() && !posix).then(|| windows.join(", "))
}

fn visit_sources(root: &Path, dir: &Path, f: &mut dyn FnMut(&str, &[u8])) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !crate::hash::SKIPPED_DIRS
                .iter()
                .any(|s| entry.file_name() == *s)
            {
                visit_sources(root, &path, f);
            }
        } else if kind.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .and_then(family)
                .is_some()
            && let Ok(bytes) = std::fs::read(&path)
        {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            f(&rel, &bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_sources_in_a_windows_code_page_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        // cp1252: "é" is the single byte 0xE9, which is not UTF-8.
        std::fs::write(
            dir.path().join("shm_writer.c"),
            b"/* cr\xe9\xe9 par moi */\n#include <Windows.h>\nint main(void) { return 0; }\n",
        )
        .unwrap();
        assert_eq!(windows_only(dir.path()).as_deref(), Some("shm_writer.c"));
        std::fs::write(dir.path().join("mapfile.c"), b"#include <sys/mman.h>\n").unwrap();
        assert_eq!(
            windows_only(dir.path()),
            None,
            "POSIX code beside it: native"
        );
        assert_eq!(
            detect(dir.path(), TargetChoice::Auto).unwrap().id(),
            "native"
        );
    }

    #[test]
    fn rust_with_windows_bindings_and_no_unix_ones_is_for_windows() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("src/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("shm_writer.rs"),
            "use windows_sys::Win32::System::Memory::CreateFileMappingA;\nfn main() {}\n",
        )
        .unwrap();
        std::fs::write(
            bin.join("mapfile.rs"),
            "use memmap2::MmapMut;\nfn main() {}\n",
        )
        .unwrap();
        assert_eq!(
            windows_only(dir.path()).as_deref(),
            Some("src/bin/shm_writer.rs"),
            "memmap2 runs on both"
        );
        std::fs::write(
            bin.join("shm_reader.rs"),
            "#[cfg(unix)]\nfn open() { unsafe { libc::shm_open(todo!(), 0, 0) }; }\nfn main() {}\n",
        )
        .unwrap();
        assert_eq!(windows_only(dir.path()), None, "portable: native");
    }
}
