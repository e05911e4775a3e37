//! IPC mechanisms: how a writer and a reader share a named region, and how
//! the grader sees that region for itself. One module per mechanism behind
//! [`Mechanism`]; POSIX shared memory ([`posix_shm`]) is the one there is
//! today. Nothing outside a mechanism's module knows where its regions live
//! or what its calls are named.
//!
//! A learner's program may resize or replace a region at any moment, so a
//! mechanism never maps what learner code can still touch: it reports what
//! it saw ([`Seen`]) from metadata and positioned reads.

pub mod posix_shm;
pub mod sysv;
pub mod win_section;

use std::io;
use std::path::{Path, PathBuf};

pub use posix_shm::PosixShm;

/// Why a name cannot name a region of a mechanism (the rubric loader, the
/// reference programs and the grader apply the same rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid region name {name:?}: {rule}")]
pub struct NameError {
    pub name: String,
    /// The rule, in words, with an example.
    pub rule: String,
}

/// What the grader saw of a region at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its size.
    pub size: u64,
    /// Bytes really allocated to it: pages touched.
    pub allocated: u64,
    /// Its first bytes, as many as were asked for and exist.
    pub head: Vec<u8>,
    /// Whether it is a region at all, rather than a FIFO, a device or a
    /// directory learner code put in its place.
    pub regular: bool,
    /// Which object it is (device, inode): what the watch's evidence names.
    pub id: (u64, u64),
    /// The unit its size is shown in: 1, or a page where the system rounds
    /// a region's size up to whole pages (Windows, as VirtualQuery shows).
    pub granule: u64,
}

impl Seen {
    /// Whether it is `want` bytes, as exactly as its system can show.
    pub fn has_size(&self, want: u64) -> bool {
        self.size == want
            || (self.granule > 1 && self.size == want.div_ceil(self.granule) * self.granule)
    }

    /// Whether it is a region starting with `message` and a NUL, whatever
    /// its size: a wrong size is its own fault, judged on its own.
    pub fn holds(&self, message: &str) -> bool {
        self.regular && starts_with_message(&self.head, message)
    }
}

/// `bytes` starts with `message` followed by a NUL.
pub fn starts_with_message(bytes: &[u8], message: &str) -> bool {
    let m = message.as_bytes();
    bytes.len() > m.len() && &bytes[..m.len()] == m && bytes[m.len()] == 0
}

/// A region (or whatever else) present where a grading's regions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name, as a program would pass it: `/junk`.
    pub name: String,
    pub uid: u32,
    /// Bytes really allocated to it.
    pub allocated: u64,
    pub regular: bool,
}

/// Where one grading's regions live: what the writer and the reader of a
/// pair must have in common, and where the grader looks.
#[derive(Debug, Clone)]
pub struct Place {
    /// The host directory the regions appear in.
    pub dir: PathBuf,
    /// Whether it is this grading's alone (else fixed names are locked
    /// against other gradings).
    pub private: bool,
    /// In a place shared with the machine: the uid whose objects there are
    /// the learner's (the uid level), if learner code has one of its own.
    pub learner: Option<u32>,
}

/// What a sandbox gives every program of a grading so that writer and
/// reader meet (each mechanism says what it needs; a sandbox that cannot
/// give one refuses to start the program rather than isolate the pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    /// A host directory, bound read-write at `inside`.
    Dir { host: PathBuf, inside: PathBuf },
}

/// The calls a mechanism's hints name ("create it with ...").
#[derive(Debug)]
pub struct Calls {
    /// How the writer creates the region.
    pub create: &'static str,
    /// How the reader opens it, read-only.
    pub open_read_only: &'static str,
    /// The call that opens a region, by its plain name.
    pub open: &'static str,
    /// How a region gets its size.
    pub size: &'static str,
    /// Whether that call takes a descriptor and the size (POSIX), or the
    /// size is given when the region is made (Windows).
    pub sized_on_fd: bool,
    /// How its name is removed.
    pub remove: &'static str,
    /// The open flag that creates a region.
    pub create_flag: &'static str,
}

impl Calls {
    /// How a region is given `size` bytes (a number, or a word standing
    /// for one), in words for a hint.
    pub fn sized(&self, size: impl std::fmt::Display) -> String {
        if self.sized_on_fd {
            format!("{}(fd, {size})", self.size)
        } else {
            format!("{} with a size of {size}", self.size)
        }
    }
}

/// One IPC mechanism.
pub trait Mechanism: Sync {
    /// Its name in reports and rubrics: `posix_shm`.
    fn id(&self) -> &'static str;
    /// Whether `name` names a region of this mechanism.
    fn check_name(&self, name: &str) -> Result<(), NameError>;
    /// Where regions live when a grading has no place of its own.
    fn system_dir(&self) -> &'static Path;
    /// What the sandbox gives every program so that pairs meet in `place`.
    fn shares(&self, place: &Place) -> Vec<Share>;
    /// The region `name` in `place`, looked at without mapping it:
    /// `Ok(None)` if there is none. Links are not followed; nothing blocks.
    fn peek(&self, place: &Place, name: &str, head: usize) -> io::Result<Option<Seen>>;
    /// Makes sure nothing of that name exists: a region, or whatever learner
    /// code put in its place (removed itself, never followed).
    fn make_absent(&self, place: &Place, name: &str) -> io::Result<()>;
    /// Everything present in `place`, sorted by name.
    fn entries(&self, place: &Place) -> Vec<Entry>;
    /// Removes everything of the learner's in `place`: all of a private
    /// place, what the learner's uid owns in a shared one (nothing where
    /// learner code runs as the grader, which cannot tell whose it is).
    fn clear(&self, place: &Place);
    /// The storage behind `place`: (total bytes, free bytes).
    fn capacity(&self, place: &Place) -> io::Result<(u64, u64)>;
    /// The region name a path in a program's trace refers to, if it is one
    /// of this mechanism's regions (as the program saw it, in its sandbox).
    fn traced_region(&self, path: &str) -> Option<String>;
    /// Whether a path in a program's trace is the region `name`.
    fn traced_is(&self, path: &str, name: &str) -> bool {
        self.traced_region(path).as_deref() == Some(name)
    }
    /// Whether a program opens a region by a path a trace shows (POSIX);
    /// a Windows section's file is opened by Wine's server and handed over.
    fn opened_by_path(&self) -> bool {
        true
    }
    /// Whether a traced open of a region with these flags could create it.
    fn creates(&self, open_flags: &str) -> bool;
    /// Gives the region `name` in the system place to `uid`:`gid` (the
    /// reference writer's region, as if the learner's writer had made it).
    fn give(&self, name: &str, uid: u32, gid: u32) -> io::Result<()>;
    /// The calls its hints name.
    fn calls(&self) -> &'static Calls;
}

/// A mechanism bound to one grading's place: what experiments use. For
/// Windows programs, the grading's named sections instead, seen through
/// Wine (`windows`).
#[derive(Clone, Copy)]
pub struct Regions<'a> {
    pub mechanism: &'a dyn Mechanism,
    pub place: &'a Place,
    pub windows: Option<win_section::Sections<'a>>,
}

impl Regions<'_> {
    pub fn peek(&self, name: &str, head: usize) -> Option<Seen> {
        match &self.windows {
            Some(sections) => sections.peek(name, head),
            None => self.mechanism.peek(self.place, name, head).ok().flatten(),
        }
    }
    /// A section lives as long as a handle to it, and every run's
    /// processes end with it: there is nothing to remove.
    pub fn make_absent(&self, name: &str) -> io::Result<()> {
        match &self.windows {
            Some(_) => Ok(()),
            None => self.mechanism.make_absent(self.place, name),
        }
    }
    pub fn entries(&self) -> Vec<Entry> {
        match &self.windows {
            Some(_) => Vec::new(),
            None => self.mechanism.entries(self.place),
        }
    }
    pub fn capacity(&self) -> io::Result<(u64, u64)> {
        match &self.windows {
            Some(_) => Err(io::Error::other("sections live in Wine's server")),
            None => self.mechanism.capacity(self.place),
        }
    }
    /// Clears what learner code left in the grading's IPC namespace: the
    /// mechanism's place, and System V objects where the namespace is the
    /// machine's (at the full level each process has its own).
    pub fn clear(&self) {
        self.mechanism.clear(self.place);
        if !self.place.private
            && let Some(uid) = self.place.learner
        {
            sysv::remove_owned_by(uid);
        }
    }
}

/// The mechanism this kit grades with today.
pub fn default_mechanism() -> &'static dyn Mechanism {
    &PosixShm
}
