//! POSIX shared memory (`shm_open` + `ftruncate` + `mmap`, `shm_unlink`).
//! On Linux a region `/NAME` is the file NAME in /dev/shm, a tmpfs; a
//! grading that can mount gets a /dev/shm of its own, bound over the
//! sandbox's /dev/shm, so its regions are files in a directory of its run.
//!
//! Regions are read from outside with fstat and pread, which returns short
//! instead of raising SIGBUS when learner code shrinks the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Calls, Entry, Mechanism, NameError, Place, Seen, Share};

/// Where the system keeps POSIX shared memory objects as files.
const SYSTEM_DIR: &str = "/dev/shm";

pub struct PosixShm;

impl PosixShm {
    /// The file behind region `name` in the directory `dir`.
    fn file(dir: &Path, name: &str) -> PathBuf {
        dir.join(name.trim_start_matches('/'))
    }
}

static CALLS: Calls = Calls {
    create: "shm_open(name, O_CREAT | O_RDWR, 0600)",
    open_read_only: "shm_open(name, O_RDONLY, 0)",
    open: "shm_open",
    size: "ftruncate",
    sized_on_fd: true,
    remove: "shm_unlink",
    create_flag: "O_CREAT",
};

impl Mechanism for PosixShm {
    fn id(&self) -> &'static str {
        "posix_shm"
    }

    fn check_name(&self, name: &str) -> Result<(), NameError> {
        if mmap_lab::names::is_posix(name) {
            Ok(())
        } else {
            Err(NameError {
                name: name.to_string(),
                rule: mmap_lab::names::POSIX_RULE.to_string(),
            })
        }
    }

    fn system_dir(&self) -> &'static Path {
        Path::new(SYSTEM_DIR)
    }

    fn shares(&self, place: &Place) -> Vec<Share> {
        vec![Share::Dir {
            host: place.dir.clone(),
            inside: PathBuf::from(SYSTEM_DIR),
        }]
    }

    fn peek(&self, place: &Place, name: &str, head_len: usize) -> io::Result<Option<Seen>> {
        // O_NONBLOCK: a FIFO in the region's place must not block the grader;
        // O_NOFOLLOW: nor may a link send it elsewhere.
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(Self::file(&place.dir, name))
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let regular = meta.file_type().is_file();
        let mut head = vec![0u8; head_len.min(meta.len() as usize)];
        let mut got = 0;
        if regular {
            while got < head.len() {
                match file.read_at(&mut head[got..], got as u64) {
                    Ok(0) => break, // shrunk meanwhile
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        head.truncate(got);
        Ok(Some(Seen {
            size: meta.len(),
            allocated: meta.blocks() * 512,
            head,
            regular,
            id: (meta.dev(), meta.ino()),
            granule: 1,
        }))
    }

    fn make_absent(&self, place: &Place, name: &str) -> io::Result<()> {
        let path = Self::file(&place.dir, name);
        crate::observe::remove_left(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot remove {}: {e}", path.display())))
    }

    fn entries(&self, place: &Place) -> Vec<Entry> {
        let mut found: Vec<Entry> = std::fs::read_dir(&place.dir)
            .map(|dir| {
                dir.filter_map(|e| {
                    let e = e.ok()?;
                    let meta = e.path().symlink_metadata().ok()?;
                    Some(Entry {
                        name: format!("/{}", crate::text::name(&e.file_name())),
                        uid: meta.uid(),
                        allocated: meta.blocks() * 512,
                        regular: meta.is_file(),
                    })
                })
                .collect()
            })
            .unwrap_or_default();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    fn clear(&self, place: &Place) {
        use std::os::unix::fs::MetadataExt;
        crate::observe::remove_entries(&place.dir, |meta| {
            place.private || place.learner == Some(meta.uid())
        });
    }

    fn capacity(&self, place: &Place) -> io::Result<(u64, u64)> {
        let st = rustix::fs::statvfs(&place.dir)?;
        Ok((st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize))
    }

    fn traced_region(&self, path: &str) -> Option<String> {
        // A descriptor's path in a trace ends " (deleted)" once unlinked.
        let path = path.trim_end_matches(" (deleted)");
        let rest = path.strip_prefix(SYSTEM_DIR)?.strip_prefix('/')?;
        (!rest.is_empty() && !rest.contains('/')).then(|| format!("/{rest}"))
    }

    fn creates(&self, open_flags: &str) -> bool {
        open_flags.split('|').any(|f| f.trim() == "O_CREAT")
    }

    fn give(&self, name: &str, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(Self::file(self.system_dir(), name), Some(uid), Some(gid))
    }

    fn calls(&self) -> &'static Calls {
        &CALLS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(dir: &Path) -> Place {
        Place {
            dir: dir.to_path_buf(),
            private: true,
            learner: None,
        }
    }

    #[test]
    fn peek_reads_size_and_head_without_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let place = place(dir.path());
        assert_eq!(PosixShm.peek(&place, "/r", 8).unwrap(), None);
        let mut data = b"Hi\0".to_vec();
        data.resize(1024, 0);
        std::fs::write(dir.path().join("r"), &data).unwrap();
        let seen = PosixShm.peek(&place, "/r", 8).unwrap().unwrap();
        assert_eq!(seen.size, 1024);
        assert_eq!(seen.head, &data[..8]);
        assert!(seen.holds("Hi"));
        assert!(!seen.holds("H"));
    }

    #[test]
    fn a_fifo_in_the_regions_place_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a plain libc call on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let seen = PosixShm
            .peek(&place(dir.path()), "/fifo", 8)
            .unwrap()
            .unwrap();
        assert!(!seen.regular);
        assert!(!seen.holds(""));
    }

    #[test]
    fn a_directory_in_the_regions_place_is_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("r/deep")).unwrap();
        std::fs::write(dir.path().join("r/deep/f"), b"x").unwrap();
        PosixShm.make_absent(&place(dir.path()), "/r").unwrap();
        assert!(PosixShm.entries(&place(dir.path())).is_empty());
    }

    #[test]
    fn clearing_a_private_place_removes_everything_and_a_shared_one_only_the_learners() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sem.left"), b"").unwrap();
        std::fs::create_dir(dir.path().join("junk")).unwrap();
        PosixShm.clear(&place(dir.path()));
        assert!(PosixShm.entries(&place(dir.path())).is_empty());
        std::fs::write(dir.path().join("other"), b"").unwrap();
        let shared = Place {
            dir: dir.path().to_path_buf(),
            private: false,
            learner: Some(u32::MAX - 1),
        };
        PosixShm.clear(&shared);
        assert_eq!(PosixShm.entries(&shared).len(), 1, "not the learner's");
    }

    #[test]
    fn traced_paths_name_regions_only_in_the_shm_directory() {
        let m = PosixShm;
        assert_eq!(
            m.traced_region("/dev/shm/MySharedMemory (deleted)")
                .as_deref(),
            Some("/MySharedMemory")
        );
        assert_eq!(m.traced_region("/tmp/MySharedMemory"), None);
        assert_eq!(m.traced_region("/dev/shm/a/b"), None);
        assert_eq!(m.traced_region("/dev/shmX"), None);
    }

    #[test]
    fn only_o_creat_creates() {
        assert!(PosixShm.creates("O_RDWR|O_CREAT|O_EXCL"));
        assert!(!PosixShm.creates("O_RDONLY|O_NOFOLLOW"));
    }

    #[test]
    fn names_follow_the_reference_programs_rule() {
        assert!(PosixShm.check_name("/MySharedMemory").is_ok());
        let e = PosixShm.check_name("OS").unwrap_err();
        assert!(e.to_string().contains("a slash followed by"), "{e}");
    }
}
