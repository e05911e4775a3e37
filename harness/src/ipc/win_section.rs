//! Windows named sections (CreateFileMapping with a name), as Wine keeps
//! them: inside the grading's wineserver, where no Linux path shows them.
//! The grader looks with its Windows-side probe, run in the same prefix
//! (`labgrade-win probe NAME HEAD`: OpenFileMapping and MapViewOfFile,
//! read-only); a section lives exactly as long as a handle to it, so there
//! is nothing to remove between experiments but processes, which every
//! run's end takes.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::{Calls, Entry, Mechanism, NameError, Place, Seen, Share};
use crate::runner::{self, Limits, Spec};
use crate::sandbox::{Area, Purpose, Sandbox};
use crate::target::wine::Home;

/// How long one look may take (a warm wineserver starts a program in
/// 30-80 ms).
const PATIENCE: Duration = Duration::from_secs(10);

/// The name a rubric's POSIX-style name has on Windows: `/X` is
/// `Local\X` (the handout's `Local\MySharedMemory`); a name without the
/// slash is the rubric's Windows name already.
pub fn windows_name(name: &str) -> String {
    match name.strip_prefix('/') {
        Some(rest) => format!("Local\\{rest}"),
        None => name.to_string(),
    }
}

/// Named sections as a mechanism: what the judgments ask of one (its
/// calls, how its regions show in a trace). Where they live is Wine's
/// server's: [`Sections`] looks there.
pub struct WinSection;

static CALLS: Calls = Calls {
    create: "CreateFileMapping(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, SIZE, NAME)",
    open_read_only: "OpenFileMapping(FILE_MAP_READ, FALSE, NAME)",
    open: "OpenFileMapping",
    size: "CreateFileMapping",
    sized_on_fd: false,
    remove: "UnmapViewOfFile and CloseHandle (a section goes with its last handle)",
    create_flag: "CreateFileMapping",
};

impl Mechanism for WinSection {
    fn id(&self) -> &'static str {
        "windows_section"
    }

    fn check_name(&self, name: &str) -> Result<(), NameError> {
        let plain = windows_name(name);
        let rest = plain
            .strip_prefix("Local\\")
            .or_else(|| plain.strip_prefix("Global\\"))
            .unwrap_or(&plain);
        if rest.is_empty() || rest.contains('\\') || plain.len() > 260 {
            return Err(NameError {
                name: name.to_string(),
                rule: "a section name is Local\\NAME (or /NAME), NAME without a backslash".into(),
            });
        }
        Ok(())
    }

    fn system_dir(&self) -> &'static Path {
        Path::new("/nonexistent/wine-sections")
    }

    fn shares(&self, _place: &Place) -> Vec<Share> {
        Vec::new()
    }

    fn peek(&self, _place: &Place, _name: &str, _head: usize) -> io::Result<Option<Seen>> {
        Ok(None)
    }

    fn make_absent(&self, _place: &Place, _name: &str) -> io::Result<()> {
        Ok(())
    }

    fn entries(&self, _place: &Place) -> Vec<Entry> {
        Vec::new()
    }

    fn clear(&self, _place: &Place) {}

    fn capacity(&self, _place: &Place) -> io::Result<(u64, u64)> {
        Err(io::Error::other("sections live in Wine's server"))
    }

    /// A section's memory is a file of Wine's server (`tmpmap-*` in its
    /// directory), whatever the section is named: a trace cannot tell one
    /// section from another.
    fn traced_region(&self, path: &str) -> Option<String> {
        section_file(path).then(|| "a section".to_string())
    }

    fn traced_is(&self, path: &str, _name: &str) -> bool {
        section_file(path)
    }

    fn opened_by_path(&self) -> bool {
        false
    }

    fn creates(&self, _open_flags: &str) -> bool {
        false
    }

    fn give(&self, _name: &str, _uid: u32, _gid: u32) -> io::Result<()> {
        Ok(())
    }

    fn calls(&self) -> &'static Calls {
        &CALLS
    }
}

/// Whether a traced path is the memory of a section: a file Wine's server
/// made for it in its directory (`.../wine-XXXXXX/server-D-I/tmpmap-N`).
fn section_file(path: &str) -> bool {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let mut parts = path.rsplit('/');
    let (Some(file), Some(server), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    file.starts_with("tmpmap-") && server.starts_with("server-") && dir.starts_with("wine-")
}

/// A grading's sections, seen through its probe.
#[derive(Clone, Copy)]
pub struct Sections<'a> {
    pub sandbox: &'a Sandbox,
    pub area: &'a Area,
    pub home: &'a Home,
}

impl Sections<'_> {
    /// The section `name` (a rubric name), if one opens: its size as
    /// Windows shows it (rounded up to pages) and its first `head` bytes.
    pub fn peek(&self, name: &str, head: usize) -> Option<Seen> {
        let out = self.probe(&windows_name(name), head).ok()?;
        let (size, head) = crate::target::wine::parse_probe(&out).ok()??;
        Some(Seen {
            size,
            // Which pages are touched cannot be seen from Windows: the
            // writer's own memory says it.
            allocated: 0,
            head,
            regular: true,
            id: (0, 0),
            granule: 4096,
        })
    }

    /// Asks the resident probe (started on first use, again if it has
    /// gone or answered its share); its answer line.
    fn probe(&self, name: &str, head: usize) -> Result<String, String> {
        if name.contains(['\n', '\r', '\t']) {
            return Err(format!("{name:?} cannot be asked of the probe"));
        }
        let mut held = self.home.probe.lock().unwrap_or_else(|e| e.into_inner());
        if held
            .as_mut()
            .is_none_or(|(running, answers)| *answers >= ANSWERS || running.has_exited())
        {
            *held = Some((self.start_probe()?, 0));
        }
        let Some((running, answers)) = held.as_mut() else {
            return Err("no probe".into());
        };
        running
            .write_stdin(format!("{head}\t{name}\n").as_bytes())
            .map_err(|e| format!("the probe does not listen: {e}"))?;
        let want = *answers + 1;
        let deadline = std::time::Instant::now() + PATIENCE;
        let lines = |bytes: &[u8]| bytes.iter().filter(|&&b| b == b'\n').count();
        if !running
            .stdout()
            .wait_for(deadline, |bytes| lines(bytes) >= want)
        {
            *held = None;
            return Err("the probe did not answer".into());
        }
        *answers = want;
        let text = running.stdout().snapshot().text();
        text.lines()
            .nth(want - 1)
            .map(str::to_string)
            .ok_or_else(|| "the probe's answer is lost".into())
    }

    /// Starts the resident probe, as the learner's uid, in the grading's
    /// Wine.
    fn start_probe(&self) -> Result<runner::Running, String> {
        let dir = self.area.dir.join(".wine-probe");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let _ = self.sandbox.give(&dir);
        let argv = vec![self.home.helper.display().to_string(), "serve".to_string()];
        let lifetime = Duration::from_secs(3600);
        let mut spec = Spec::command(
            "the grader's probe",
            argv,
            &dir,
            runner::clean_env(&dir),
            lifetime,
            Limits {
                cpu_secs: lifetime.as_secs(),
                file_bytes: 1 << 20,
                open_files: 256,
            },
        );
        spec.held_stdin = true;
        self.sandbox.under_wine(&mut spec, self.home);
        let spec = self
            .sandbox
            .contain_served(spec, self.area, Purpose::Helper, None);
        runner::start(spec).map_err(|e| e.to_string())
    }
}

/// How many answers one probe gives before the next is started (its
/// output is kept whole, up to the runner's limit).
const ANSWERS: usize = 150;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_files_are_told_from_others() {
        assert!(section_file(
            "/sandbox/wine/tmp/wine-UTUblh/server-27-2/tmpmap-2edb4996 (deleted)"
        ));
        assert!(!section_file("/sandbox/wine/tmp/tmpmap-1"));
        assert!(!section_file("/dev/shm/MySharedMemory"));
    }

    #[test]
    fn posix_names_become_local_names() {
        assert_eq!(windows_name("/MySharedMemory"), "Local\\MySharedMemory");
        assert_eq!(windows_name("Global\\X"), "Global\\X");
    }
}
