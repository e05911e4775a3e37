//! The shared region, seen from outside by the grader. A learner's program
//! may resize the region at any moment, so it is never mapped while learner
//! code could still touch it: its size comes from fstat and its bytes from
//! pread, which returns short instead of raising SIGBUS.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where POSIX shared memory objects live as files. A sandbox later gives
/// each run its own directory here; everything asks [`region_path`].
pub const SYSTEM_SHM_DIR: &str = "/dev/shm";

/// The file behind the POSIX region `name`, in the shm directory `shm_dir`.
pub fn region_path(shm_dir: &Path, name: &str) -> PathBuf {
    shm_dir.join(name.trim_start_matches('/'))
}

/// What the grader saw of a region at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its size (st_size).
    pub size: u64,
    /// Bytes really allocated to it (st_blocks * 512): pages touched.
    pub allocated: u64,
    /// Its first bytes, as many as were asked for and exist.
    pub head: Vec<u8>,
    /// Whether it is a plain file (a region), rather than a FIFO or device.
    pub regular: bool,
    /// Which file it is (device, inode): what the watch's evidence names.
    pub id: (u64, u64),
}

impl Seen {
    /// Whether it holds `size` bytes starting with `message` and a NUL.
    pub fn holds(&self, size: u64, message: &str) -> bool {
        self.regular && self.size == size && starts_with_message(&self.head, message)
    }
}

/// `bytes` starts with `message` followed by a NUL.
pub fn starts_with_message(bytes: &[u8], message: &str) -> bool {
    let m = message.as_bytes();
    bytes.len() > m.len() && &bytes[..m.len()] == m && bytes[m.len()] == 0
}

/// Looks at the region: `Ok(None)` if there is none.
pub fn peek(path: &Path, head_len: usize) -> io::Result<Option<Seen>> {
    // O_NONBLOCK: a FIFO in the region's place must not block the grader;
    // O_NOFOLLOW: nor may a link send it elsewhere.
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
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
    }))
}

/// What a file that is not a regular one is, in words ("a symbolic link
/// to /etc/shadow", "a FIFO"), from its metadata (never followed).
pub fn kind_of(path: &Path, meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| crate::text::name(t.as_os_str()))
            .unwrap_or_default();
        format!("a symbolic link (to {target})")
    } else if kind.is_dir() {
        "a directory".into()
    } else if kind.is_fifo() {
        "a FIFO (named pipe)".into()
    } else if kind.is_socket() {
        "a socket".into()
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device".into()
    } else {
        "not a regular file".into()
    }
}

/// Whether a region of that name exists.
pub fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Makes sure nothing of that name exists: a region, or whatever learner
/// code put in its place (a directory with files in it, a FIFO, a link,
/// which is removed itself and never followed).
pub fn remove(path: &Path) -> io::Result<()> {
    let result = match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// An entry of the shm directory, as the grader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The region-style name: `/junk`.
    pub name: String,
    pub uid: u32,
    /// Bytes really allocated to it (a directory counts its own blocks).
    pub allocated: u64,
    pub regular: bool,
}

/// What is in the shm directory (links are not followed).
pub fn entries(shm_dir: &Path) -> Vec<Entry> {
    let mut found: Vec<Entry> = std::fs::read_dir(shm_dir)
        .map(|dir| {
            dir.filter_map(|e| {
                let e = e.ok()?;
                let meta = e.path().symlink_metadata().ok()?;
                Some(Entry {
                    name: format!("/{}", e.file_name().to_str()?),
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

/// The shm directory's file system: (total bytes, free bytes).
pub fn capacity(shm_dir: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(shm_dir)?;
    Ok((st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize))
}

/// The names in the shm directory, for hints ("found /mysharedmemory").
pub fn names_in(shm_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(shm_dir)
        .map(|dir| {
            dir.filter_map(|e| Some(format!("/{}", e.ok()?.file_name().to_str()?)))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Polls for `done` until `deadline`, starting fast and backing off to a few
/// milliseconds: readiness is an event the grader observes, never a sleep.
pub fn poll_until<T>(deadline: Instant, mut done: impl FnMut() -> Option<T>) -> Option<T> {
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(value) = done() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_size_and_head_without_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = region_path(dir.path(), "/r");
        assert_eq!(peek(&path, 8).unwrap(), None);
        let mut data = b"Hi\0".to_vec();
        data.resize(1024, 0);
        std::fs::write(&path, &data).unwrap();
        let seen = peek(&path, 8).unwrap().unwrap();
        assert_eq!(seen.size, 1024);
        assert_eq!(seen.head, &data[..8]);
        assert!(seen.holds(1024, "Hi"));
        assert!(!seen.holds(2048, "Hi"));
        assert!(!seen.holds(1024, "H"));
    }

    #[test]
    fn a_fifo_in_the_regions_place_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = region_path(dir.path(), "/fifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let seen = peek(&path, 8).unwrap().unwrap();
        assert!(!seen.regular);
        assert!(!seen.holds(0, ""));
    }
}
