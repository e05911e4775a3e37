//! Programs written against the Windows API: built with mingw-w64, run
//! under Wine in the grading's prefix (`wine.rs`), beside the grader's own
//! Windows-side probe and reference peers.

use std::path::{Path, PathBuf};

use super::{Crash, Evidence, Runtime, Target, wine};
use crate::rubric::BuildConfig;
use crate::runner::Ending;

pub struct Windows;

/// The programs Wine starts for itself in a prefix, by their process names.
const SERVICES: &[&str] = &[
    "services.exe",
    "winedevice.exe",
    "plugplay.exe",
    "svchost.exe",
    "rpcss.exe",
    "explorer.exe",
    "winemenubuilder",
    "conhost.exe",
    "wineboot.exe",
    "start.exe",
    "winedbg.exe",
];

/// Where a run sees the grading's Wine directory (its prefix and the
/// server's socket directory) when its sandbox binds it.
pub const INSIDE: &str = "/sandbox/wine";

impl Target for Windows {
    fn id(&self) -> &'static str {
        "windows"
    }

    fn program_file(&self, name: &str) -> String {
        format!("{name}.exe")
    }

    fn compilers<'r>(&self, _build: &'r BuildConfig) -> (&'r str, &'r str) {
        (wine::CC, wine::CXX)
    }

    fn compile_flags(&self, source: &[u8], cpp: bool) -> Vec<String> {
        let mut flags = Vec::new();
        if cpp {
            // Wine has no libstdc++-6.dll: without this a C++ program
            // fails to start (exit 53, c0000135).
            flags.push("-static".to_string());
        }
        if wide(source) {
            flags.extend(
                [
                    "-municode",
                    "-DUNICODE",
                    "-D_UNICODE",
                    "-D__USE_MINGW_ANSI_STDIO=0",
                ]
                .map(String::from),
            );
        }
        flags
    }

    fn rust_target(&self) -> Option<super::RustTarget> {
        Some(super::RustTarget {
            triple: wine::RUST_TRIPLE,
            linker: wine::CC,
        })
    }

    fn links(&self, lib: &str) -> bool {
        lib != "-lrt"
    }

    fn stub_headers(&self) -> &'static [(&'static str, &'static str)] {
        // A Visual Studio project's precompiled header includes what the
        // project uses: here windows.h, precompiled as such when it is the
        // first include.
        const PRECOMPILED: &str = "/* a stand-in, made by the grader */\n#include <windows.h>\n";
        &[
            ("stdafx.h", PRECOMPILED),
            ("pch.h", PRECOMPILED),
            (
                "targetver.h",
                "/* an empty stand-in, made by the grader */\n",
            ),
        ]
    }

    fn system_headers(&self) -> Option<&'static Path> {
        Some(Path::new(wine::HEADERS))
    }

    fn precompiled_headers(&self) -> &'static [&'static str] {
        &["windows.h"]
    }

    fn make_variables(&self, include: Option<&Path>) -> Vec<String> {
        // In the compiler's own variable, which a Makefile's CFLAGS (set
        // in it, or not used at all) cannot drop.
        let flag = include
            .map(|d| format!(" -I{}", d.display()))
            .unwrap_or_default();
        // C++ linked -static, as plain builds are: on the learner's own
        // machine MinGW's libstdc++-6.dll is on PATH; here and on other
        // Windows machines it is not.
        vec![
            format!("CC={}{flag}", wine::CC),
            format!("CXX={} -static{flag}", wine::CXX),
        ]
    }

    fn cmake_variables(&self, include: Option<&Path>) -> Vec<String> {
        let mut vars = vec![
            "-DCMAKE_SYSTEM_NAME=Windows".to_string(),
            format!("-DCMAKE_C_COMPILER={}", wine::CC),
            format!("-DCMAKE_CXX_COMPILER={}", wine::CXX),
            "-DCMAKE_EXE_LINKER_FLAGS=-static".to_string(),
        ];
        if let Some(dir) = include {
            // The first value of the project's flags, which it appends to.
            for lang in ["C", "CXX"] {
                vars.push(format!("-DCMAKE_{lang}_FLAGS_INIT=-I{}", dir.display()));
            }
        }
        vars
    }

    fn loader(&self, runtime: &Runtime) -> Vec<String> {
        let mut argv = loader_env(runtime);
        argv.extend(wine::NO_RANDOMIZE.iter().map(|a| a.to_string()));
        argv.push(runtime.loader.display().to_string());
        argv
    }

    fn crash(&self, ending: Ending, stderr: &str) -> Option<Crash> {
        let Ending::Exited(_) = ending else {
            return None;
        };
        // "0024:err:module:import_dll Library libstdc++-6.dll (which is
        // needed by L"...") not found", then exit 53 (c0000135).
        if let Some(line) = stderr
            .lines()
            .find(|l| l.contains("err:module:import_dll Library "))
        {
            let dll = line
                .split("import_dll Library ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("a DLL")
                .to_string();
            return Some(Crash {
                what: "a missing DLL",
                kind: super::CrashKind::NotLoaded { dll },
                report: self.tidy_stderr(line.trim()).into_owned(),
            });
        }
        // "wine: Unhandled page fault on write access to 0000000000000000
        // at address ... (thread 0024), starting debugger..."
        let report = stderr.lines().find(|l| l.starts_with("wine: Unhandled "))?;
        let what = if report.contains("page fault") {
            "an access violation"
        } else if report.contains("stack overflow") {
            "a stack overflow"
        } else if report.contains("divide by zero") {
            "a division by zero"
        } else {
            "an unhandled exception"
        };
        Some(Crash {
            what,
            kind: super::CrashKind::Exception,
            report: self.tidy_stderr(report.trim()).into_owned(),
        })
    }

    fn tidy_stderr<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        static THREAD: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re = THREAD.get_or_init(|| {
            regex::Regex::new(r"(?m)^(wine: .*)\(thread [0-9a-f]+\)").expect("a valid pattern")
        });
        // Wine's own error lines start with the thread's number too.
        static PREFIX: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let prefix = PREFIX.get_or_init(|| {
            regex::Regex::new(r"(?m)^[0-9a-f]{4}:(err|fixme|warn):").expect("a valid pattern")
        });
        match re.replace_all(text, "${1}(thread N)") {
            std::borrow::Cow::Borrowed(t) => prefix.replace_all(t, "${1}:"),
            std::borrow::Cow::Owned(t) => {
                std::borrow::Cow::Owned(prefix.replace_all(&t, "${1}:").into_owned())
            }
        }
    }

    fn is_machinery(&self, exe: &str, comm: &str) -> bool {
        match exe {
            "wineserver" | "wineserver64" => true,
            // Every Windows program runs Wine's loader: its own name tells
            // Wine's services from the learner's programs.
            "wine64" | "wine64-preloader" | "wine" | "wine-preloader" => SERVICES.contains(&comm),
            _ => false,
        }
    }

    fn evidence(&self) -> Evidence {
        Evidence::Strace
    }

    fn uses_wine(&self) -> bool {
        true
    }
}

/// `env` with Wine's variables: where the grading's prefix and server are
/// (as the program sees them), and quiet. What follows it runs in them.
pub fn loader_env(runtime: &Runtime) -> Vec<String> {
    let mut argv = vec![
        "/usr/bin/env".to_string(),
        format!("WINEPREFIX={}", runtime.prefix.display()),
        format!("TMPDIR={}", runtime.tmp.display()),
    ];
    argv.extend(wine::QUIET.iter().map(|(k, v)| format!("{k}={v}")));
    argv
}

/// Whether a source's entry point is a wide one (`wmain`, `_tmain`,
/// `_tWinMain`, `wWinMain`), which mingw links only with -municode.
fn wide(source: &[u8]) -> bool {
    ["wmain", "_tmain", "wWinMain", "_tWinMain"]
        .iter()
        .any(|entry| {
            memchr::memmem::find_iter(source, entry.as_bytes()).any(|at| {
                let before = at.checked_sub(1).map(|i| source[i]);
                let after = source.get(at + entry.len()).copied();
                let word =
                    |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_');
                !word(before) && !word(after)
            })
        })
}

/// Where the grading's Wine directory is kept in the run.
pub fn run_dir(area_dir: &Path) -> PathBuf {
    area_dir.join("wine")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dll_is_named_from_wine_s_loader_error() {
        let stderr = "0024:err:module:import_dll Library libstdc++-6.dll (which is needed by L\"Z:\\sandbox\\run\\a.exe\") not found\n0024:err:module:LdrInitializeThunk Importing dlls for L\"Z:\\a.exe\" failed, status c0000135\n";
        let crash = Windows.crash(Ending::Exited(53), stderr).unwrap();
        assert_eq!(
            crash.kind,
            super::super::CrashKind::NotLoaded {
                dll: "libstdc++-6.dll".into()
            }
        );
        assert!(
            crash.report.starts_with("err:module:import_dll"),
            "{}",
            crash.report
        );
        assert_eq!(Windows.crash(Ending::Exited(53), "said nothing\n"), None);
    }

    #[test]
    fn only_wines_report_makes_an_exit_a_crash() {
        let said = "wine: Unhandled page fault on write access to 0000000000000000 at address 00000001400015C2 (thread 0024), starting debugger...\n";
        let crash = Windows.crash(Ending::Exited(5), said).unwrap();
        assert_eq!(crash.what, "an access violation");
        assert!(
            crash.report.contains("(thread N), starting debugger"),
            "{}",
            crash.report
        );
        assert_eq!(Windows.crash(Ending::Exited(5), "return 5\n"), None);
    }

    #[test]
    fn wide_entry_points_are_found_as_words() {
        assert!(wide(b"int _tmain(int argc, TCHAR **argv)"));
        assert!(wide(b"int wmain(void)"));
        assert!(!wide(b"int main(void) { my_wmain_helper(); }"));
    }
}
