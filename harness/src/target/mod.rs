//! Target platforms: what a submission's programs are built for and run
//! as. One module per target behind [`Target`]; programs built for this
//! machine ([`native`]) are the one there is today. A submission's sources
//! say which target it is for ([`detect`]).

pub mod native;

use std::path::{Path, PathBuf};

pub use native::Native;

use crate::rubric::BuildConfig;
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
    /// The command that starts the built `program` with `args` inside the
    /// sandbox (a Windows program runs under its loader).
    fn launch(&self, program: PathBuf, args: Vec<String>) -> (PathBuf, Vec<String>);
    /// What a program's ending means on this target, from how the process
    /// ended here (a Windows exit code is an NTSTATUS cut to 8 bits).
    fn read_ending(&self, ending: Ending) -> Ending;
    /// Names of the files its own machinery runs (a loader, a server):
    /// such processes are never counted as a learner's leftovers.
    fn infrastructure(&self) -> &'static [&'static str];
    /// Where the evidence of its programs' calls comes from.
    fn evidence(&self) -> Evidence;
}

impl std::fmt::Debug for dyn Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// Sources written for a platform no target here can build and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The platform, in words: "the Windows API".
    pub platform: &'static str,
    /// The files that say so, for the report.
    pub files: String,
}

/// Every target there is, for what is asked of all of them.
pub fn all() -> &'static [&'static dyn Target] {
    &[&Native]
}

/// The target the sources in `dir` are written for.
pub fn detect(dir: &Path) -> Result<&'static dyn Target, Unsupported> {
    match windows_only(dir) {
        Some(files) => Err(Unsupported {
            platform: "the Windows API",
            files,
        }),
        None => Ok(&Native),
    }
}

/// Names of every target's machinery, for telling leftovers apart.
pub fn infrastructure() -> impl Iterator<Item = &'static str> {
    all()
        .iter()
        .flat_map(|t| t.infrastructure().iter().copied())
}

/// C or C++ sources written for Windows only: they include windows.h and
/// never sys/mman.h. Returns the files. Sources are read as bytes: one
/// saved in a Windows code page (a cp1252 "é" in a comment) is not UTF-8.
fn windows_only(dir: &Path) -> Option<String> {
    let mut windows = Vec::new();
    let mut posix = false;
    visit_sources(dir, dir, &mut |rel, bytes| {
        let lower = bytes.to_ascii_lowercase();
        let has = |needle: &[u8]| memchr::memmem::find(&lower, needle).is_some();
        if has(b"<windows.h>") || has(b"\"windows.h\"") {
            windows.push(rel.to_string());
        }
        if has(b"<sys/mman.h>") {
            posix = true;
        }
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
                .is_some_and(|e| ["c", "cc", "cpp", "cxx", "h", "hpp"].contains(&e))
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
        let found = detect(dir.path()).unwrap_err();
        assert_eq!(found.files, "shm_writer.c");
        std::fs::write(dir.path().join("mapfile.c"), b"#include <sys/mman.h>\n").unwrap();
        assert!(detect(dir.path()).is_ok(), "POSIX code beside it: native");
    }
}
