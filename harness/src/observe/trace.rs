//! Evidence of real mappings, from strace. A program is run under
//! `strace -f -y`: every file descriptor argument is printed with the path
//! it refers to (`3</work/datafile.bin>`), so each mmap is tied to the
//! file it touched without following descriptors by hand. `--seccomp-bpf`
//! keeps tracing cheap: untraced system calls never stop. Only calls a
//! program makes a few of are traced (opens, mappings, sizes, names);
//! reads and writes, which a program may make millions of, are seen by the
//! sandbox init's watch instead (`watch.rs`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::runner::Spec;

/// The system calls that say how a file or region was used.
const SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "ftruncate",
    "truncate",
    "mmap",
    "mmap2",
    "mremap",
    "unlink",
    "unlinkat",
    // A second name for the file or region, to read it under.
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "rename",
    "renameat",
    "renameat2",
    // A program asking whether it is traced.
    "ptrace",
];

/// Whether programs can be traced here, and how.
#[derive(Debug, Clone)]
pub enum Tracer {
    Available { strace: PathBuf, seccomp: bool },
    Unavailable(Untraceable),
}

/// Why programs cannot be traced here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untraceable {
    #[error("strace is not installed")]
    NotInstalled,
    /// strace is there and fails: what it said.
    #[error("strace cannot trace here: {0}")]
    Refused(String),
}

impl Tracer {
    /// Finds strace and tries it once on a trivial program.
    pub fn probe() -> Tracer {
        let Some(strace) = find_in_path("strace") else {
            return Tracer::Unavailable(Untraceable::NotInstalled);
        };
        let mut last_error = String::new();
        for seccomp in [true, false] {
            let mut cmd = Command::new(&strace);
            cmd.args(base_args(seccomp))
                .args(["-o", "/dev/null", "--", "true"]);
            match cmd.output() {
                Ok(out) if out.status.success() => return Tracer::Available { strace, seccomp },
                Ok(out) => last_error = String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => last_error = e.to_string(),
            }
        }
        Tracer::Unavailable(Untraceable::Refused(last_error))
    }

    /// `spec`, run under strace writing its trace to `out`.
    pub fn wrap(&self, spec: &Spec, out: &Path) -> Option<Spec> {
        let Tracer::Available { strace, seccomp } = self else {
            return None;
        };
        let mut args = base_args(*seccomp);
        args.push("-o".into());
        args.push(out.display().to_string());
        args.push("--".into());
        args.push(spec.program.display().to_string());
        args.extend(spec.args.iter().cloned());
        Some(Spec {
            program: strace.clone(),
            args,
            ..spec.clone()
        })
    }

    /// strace as a sandbox runs it around its program (the arguments end
    /// with its output, `out` inside the sandbox), when it can trace.
    pub fn inside(&self, out: &str) -> Option<(PathBuf, Vec<String>)> {
        let Tracer::Available { strace, seccomp } = self else {
            return None;
        };
        let mut args = base_args(*seccomp);
        args.extend(["-o".to_string(), out.to_string()]);
        Some((strace.clone(), args))
    }

    pub fn unavailable_reason(&self) -> Option<&Untraceable> {
        match self {
            Tracer::Available { .. } => None,
            Tracer::Unavailable(why) => Some(why),
        }
    }
}

fn base_args(seccomp: bool) -> Vec<String> {
    let calls: Vec<String> = SYSCALLS.iter().map(|c| format!("?{c}")).collect();
    let mut args: Vec<String> = vec![
        "-f".into(),
        "-qq".into(),
        "-y".into(),
        "-s".into(),
        "64".into(),
    ];
    if seccomp {
        args.push("--seccomp-bpf".into());
    }
    args.push("-e".into());
    args.push("signal=none".into());
    args.push("-e".into());
    args.push(format!("trace={}", calls.join(",")));
    args
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// One system call as strace printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub pid: u32,
    pub name: String,
    pub args: Vec<String>,
    pub ret: String,
}

impl Call {
    /// The path behind the file descriptor in argument `i` (`3</x>` -> `/x`).
    pub fn fd_path(&self, i: usize) -> Option<&str> {
        let arg = self.args.get(i)?;
        let start = arg.find('<')?;
        // strace puts "(deleted)" after the path of a removed file.
        let rest = &arg[start + 1..];
        let rest = rest.strip_suffix("(deleted)").unwrap_or(rest);
        rest.strip_suffix('>')
    }

    /// The string argument `i` without its quotes.
    pub fn string_arg(&self, i: usize) -> Option<&str> {
        let arg = self.args.get(i)?;
        arg.strip_prefix('"')?.split('"').next()
    }

    /// The numeric result, if the call succeeded with one.
    pub fn ret_value(&self) -> Option<i64> {
        let first = self.ret.split([' ', '<']).next()?;
        if let Some(hex) = first.strip_prefix("0x") {
            i64::from_str_radix(hex, 16).ok()
        } else {
            first.parse().ok()
        }
    }

    pub fn failed(&self) -> bool {
        self.ret.starts_with('-') || self.ret.starts_with('?')
    }

    /// The path a successful open returned a descriptor for.
    pub fn opened_path(&self) -> Option<&str> {
        let start = self.ret.find('<')?;
        let rest = &self.ret[start + 1..];
        Some(&rest[..rest.rfind('>')?])
    }
}

/// A whole trace, in order.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub calls: Vec<Call>,
}

impl Trace {
    pub fn read(path: &Path) -> std::io::Result<Trace> {
        Ok(Trace::parse(&String::from_utf8_lossy(&std::fs::read(
            path,
        )?)))
    }

    /// Parses strace's `-f -o` output, joining calls that another thread
    /// interrupted (`<unfinished ...>` / `<... resumed>`).
    pub fn parse(text: &str) -> Trace {
        let mut pending: Vec<(u32, String)> = Vec::new();
        let mut calls = Vec::new();
        for line in text.lines() {
            let line = line.trim_end();
            let (pid, rest) = match line.split_once(' ') {
                Some((pid, rest)) => match pid.parse::<u32>() {
                    Ok(pid) => (pid, rest.trim_start()),
                    Err(_) => (0, line),
                },
                None => continue,
            };
            let full = if let Some(body) = rest.strip_suffix("<unfinished ...>") {
                pending.push((pid, body.trim_end().to_string()));
                continue;
            } else if let Some(resumed) = rest.strip_prefix("<... ") {
                let Some(end) = resumed.find(" resumed>") else {
                    continue;
                };
                let tail = &resumed[end + " resumed>".len()..];
                match pending.iter().position(|(p, _)| *p == pid) {
                    Some(i) => {
                        let (_, head) = pending.remove(i);
                        let sep = if head.ends_with(',') { " " } else { "" };
                        format!("{head}{sep}{}", tail.trim_start())
                    }
                    None => continue,
                }
            } else {
                rest.to_string()
            };
            if let Some(call) = parse_call(pid, &full) {
                calls.push(call);
            }
        }
        Trace { calls }
    }

    /// Calls whose file descriptor argument `fd_arg` refers to a path that
    /// satisfies `is_target`.
    fn on<'a>(
        &'a self,
        names: &'a [&str],
        fd_arg: usize,
        is_target: &'a dyn Fn(&str) -> bool,
    ) -> impl Iterator<Item = &'a Call> {
        self.calls.iter().filter(move |c| {
            names.contains(&c.name.as_str()) && c.fd_path(fd_arg).is_some_and(is_target)
        })
    }

    /// The error (`EINVAL`, `EACCES`...) of the first failed `name` call on
    /// a descriptor of the target (argument `fd_arg`), if one failed.
    pub fn failed_on(
        &self,
        names: &[&str],
        fd_arg: usize,
        is_target: &dyn Fn(&str) -> bool,
    ) -> Option<String> {
        self.on(names, fd_arg, is_target)
            .find(|c| c.failed())
            .and_then(|c| c.ret.split_whitespace().nth(1).map(str::to_string))
    }

    /// Successful mmaps of the target.
    pub fn mmaps<'a>(&'a self, is_target: &'a dyn Fn(&str) -> bool) -> Vec<Mapping> {
        self.on(&["mmap", "mmap2"], 4, is_target)
            .filter(|c| !c.failed())
            .map(|c| Mapping {
                len: c.args.get(1).and_then(|l| l.parse().ok()).unwrap_or(0),
                offset: c.args.get(5).and_then(|o| parse_number(o)).unwrap_or(0),
                writable: c.args.get(2).is_some_and(|p| p.contains("PROT_WRITE")),
                readable: c.args.get(2).is_some_and(|p| p.contains("PROT_READ")),
                shared: c.args.get(3).is_some_and(|f| f.contains("MAP_SHARED")),
            })
            .collect()
    }

    /// Successful calls that gave the target another name (a hard or
    /// symbolic link, a rename): `(call, new name)`. `is_target` gets each
    /// path argument as the program wrote it.
    pub fn new_names(&self, is_target: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
        self.calls
            .iter()
            .filter(|c| !c.failed())
            .filter_map(|c| {
                let (old, new) = match c.name.as_str() {
                    "link" | "symlink" | "rename" => (c.string_arg(0)?, c.string_arg(1)?),
                    "linkat" | "renameat" | "renameat2" => (c.string_arg(1)?, c.string_arg(3)?),
                    "symlinkat" => (c.string_arg(0)?, c.string_arg(2)?),
                    _ => return None,
                };
                is_target(old).then(|| (c.name.clone(), new.to_string()))
            })
            .collect()
    }

    /// Whether the program asked whether it is traced (ptrace, which a
    /// program of this lab has no use for).
    pub fn probed_tracing(&self) -> bool {
        self.calls.iter().any(|c| c.name == "ptrace")
    }

    /// Opens of the target path: (flags, succeeded).
    pub fn opens(&self, is_target: &dyn Fn(&str) -> bool) -> Vec<(String, bool)> {
        self.calls
            .iter()
            .filter_map(|c| {
                let (path, flags) = match c.name.as_str() {
                    "open" => (c.string_arg(0)?, c.args.get(1)?),
                    "openat" | "openat2" => (c.string_arg(1)?, c.args.get(2)?),
                    "creat" => (c.string_arg(0)?, &c.args[0]),
                    _ => return None,
                };
                let seen = c.opened_path().unwrap_or(path);
                is_target(seen).then(|| (flags.clone(), !c.failed()))
            })
            .collect()
    }

    /// Every path the program opened, once each, in order (the IPC
    /// mechanism tells which of them are regions).
    pub fn opened_paths(&self) -> Vec<String> {
        let mut found = Vec::new();
        for c in &self.calls {
            let path = match c.name.as_str() {
                "open" | "creat" => c.string_arg(0),
                "openat" | "openat2" => c.string_arg(1),
                _ => None,
            };
            if let Some(p) = path
                && !found.iter().any(|f| f == p)
            {
                found.push(p.to_string());
            }
        }
        found
    }
}

/// What one mmap of the target asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub len: u64,
    /// Where in the file it starts.
    pub offset: u64,
    pub readable: bool,
    pub writable: bool,
    pub shared: bool,
}

/// A number as strace prints it: decimal, or hexadecimal after 0x.
fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl Mapping {
    /// Whether stores through it reach the file's bytes `0..end`.
    pub fn stores_cover(&self, end: u64) -> bool {
        self.shared && self.writable && self.offset == 0 && self.len >= end
    }
}

/// `name(args) = ret` into a Call.
fn parse_call(pid: u32, text: &str) -> Option<Call> {
    let open = text.find('(')?;
    let name = text[..open].trim().to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    // strace pads short calls: `read(0, "\n", 16)   = 1`.
    let eq = text.rfind(" = ")?;
    let call = text[..eq].trim_end().strip_suffix(')')?;
    let args = split_args(call.get(open + 1..)?);
    let ret = text[eq + 3..].trim().to_string();
    Some(Call {
        pid,
        name,
        args,
        ret,
    })
}

/// Splits strace's argument list at commas outside quotes and brackets.
fn split_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut escaped = false;
    let mut current = String::new();
    for ch in text.chars() {
        if in_str {
            current.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_str = false;
            }
            continue;
        }
        match ch {
            '"' => {
                in_str = true;
                current.push(ch);
            }
            '(' | '[' | '{' | '<' => {
                depth += 1;
                current.push(ch);
            }
            ')' | ']' | '}' | '>' => {
                depth -= 1;
                current.push(ch);
            }
            ',' if depth == 0 => {
                args.push(current.trim().to_string());
                current.clear();
            }
            _ => current.push(ch),
        }
    }
    if !current.trim().is_empty() {
        args.push(current.trim().to_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"101 openat(AT_FDCWD</w>, "/dev/shm/MySharedMemory", O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC, 0666) = 3</dev/shm/MySharedMemory>
101 ftruncate(3</dev/shm/MySharedMemory>, 1024) = 0
101 mmap(NULL, 1024, PROT_READ|PROT_WRITE, MAP_SHARED, 3</dev/shm/MySharedMemory>, 0) = 0x7f0000000000
101 read(0<pipe:[123]>,  <unfinished ...>
102 write(4</w/datafile.bin>, "Hello, Memory-Mapped File!\0\0\0"..., 1024) = 1024
101 <... read resumed>"\n", 4096)    = 1
102 read(4</w/datafile.bin>, "Hello"..., 1024) = 1024
101 unlink("/dev/shm/MySharedMemory") = 0
"#;

    #[test]
    fn a_failed_call_on_the_target_says_its_error() {
        let t = Trace::parse("5 ftruncate(3</dev/shm/r>, 1024) = -1 EINVAL (Invalid argument)\n");
        let r = |p: &str| p == "/dev/shm/r";
        assert_eq!(
            t.failed_on(&["ftruncate"], 0, &r).as_deref(),
            Some("EINVAL")
        );
        assert_eq!(t.failed_on(&["mmap"], 4, &r), None);
    }

    #[test]
    fn a_mappings_offset_is_read_in_decimal_or_hex() {
        let t = Trace::parse(
            "5 mmap(NULL, 10, PROT_READ|PROT_WRITE, MAP_SHARED, 3</w/datafile.bin>, 0x1000) = 0x7f0000000000\n",
        );
        let maps = t.mmaps(&|p: &str| p.ends_with("datafile.bin"));
        assert_eq!((maps[0].offset, maps[0].len), (4096, 10));
        assert!(!maps[0].stores_cover(27));
    }

    #[test]
    fn calls_are_tied_to_the_files_they_touch() {
        let trace = Trace::parse(SAMPLE);
        assert_eq!(trace.calls.len(), 7);
        let shm = |p: &str| p == "/dev/shm/MySharedMemory";
        assert_eq!(
            trace.mmaps(&shm),
            vec![Mapping {
                len: 1024,
                offset: 0,
                readable: true,
                writable: true,
                shared: true
            }]
        );
        assert_eq!(trace.opens(&shm).len(), 1);
        assert!(trace.opens(&shm)[0].0.contains("O_CREAT"));
        assert_eq!(
            trace.opened_paths(),
            vec!["/dev/shm/MySharedMemory".to_string()]
        );
    }

    #[test]
    fn second_names_and_tracer_probes_are_seen() {
        let trace = Trace::parse(concat!(
            "5 link(\"datafile.bin\", \"alias.bin\") = 0\n",
            "5 renameat2(AT_FDCWD</w>, \"tmp\", AT_FDCWD</w>, \"datafile.bin\", 0) = 0\n",
            "5 ptrace(PTRACE_TRACEME) = -1 EPERM (Operation not permitted)\n",
        ));
        assert_eq!(
            trace.new_names(&|p| p.rsplit('/').next() == Some("datafile.bin")),
            vec![("link".to_string(), "alias.bin".to_string())]
        );
        assert!(trace.probed_tracing());
    }

    #[test]
    fn arguments_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_args(r#"3</a,b>, "x, \"y\"", [{iov_base="z", iov_len=1}], 2"#),
            vec![
                "3</a,b>",
                r#""x, \"y\"""#,
                r#"[{iov_base="z", iov_len=1}]"#,
                "2"
            ]
        );
    }

    #[test]
    fn failed_calls_are_recognised() {
        let trace = Trace::parse(
            "7 openat(AT_FDCWD, \"/dev/shm/X\", O_RDONLY|O_NOFOLLOW|O_CLOEXEC) = -1 ENOENT (No such file or directory)\n",
        );
        assert_eq!(
            trace.opens(&|p| p == "/dev/shm/X"),
            vec![("O_RDONLY|O_NOFOLLOW|O_CLOEXEC".to_string(), false)]
        );
    }
}
