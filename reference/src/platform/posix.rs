//! POSIX shared memory: `shm_open` + `ftruncate` + `mmap`, removed with
//! `shm_unlink`. On Linux a region is a file in /dev/shm (a tmpfs), so its
//! pages are memory, not disk.

use std::os::fd::OwnedFd;

use memmap2::{Mmap, MmapMut, MmapOptions};
use rustix::fs::{Mode, fstat, ftruncate};
use rustix::io::Errno;
use rustix::shm;

use crate::error::{Error, Result};

/// The lab's region name on POSIX systems.
pub const DEFAULT_NAME: &str = "/MySharedMemory";

/// A portable POSIX name ([`crate::names::is_posix`]).
pub fn check_name(name: &str) -> Result<()> {
    if crate::names::is_posix(name) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "invalid region name {name:?}: {}",
            crate::names::POSIX_RULE
        )))
    }
}

/// The writer's side: a region this process created and holds mapped.
pub struct WriterRegion {
    name: String,
    map: MmapMut,
}

impl WriterRegion {
    /// Creates the region `name` of exactly `size` bytes and maps it shared
    /// and writable. Fails, leaving nothing behind, if anything goes wrong;
    /// in particular it refuses a region that already exists, which could be
    /// another program's or a stale one from a crashed run.
    pub fn create(name: &str, size: u64) -> Result<Self> {
        check_name(name)?;
        let len = usize::try_from(size).map_err(|_| Error::usage("SIZE is too large"))?;
        // O_EXCL: create the region or fail, never adopt an existing one.
        let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
        let fd = shm::open(name, flags, Mode::RUSR | Mode::WUSR).map_err(|err| match err {
            Errno::EXIST => Error::new(format!(
                "region {name} already exists: another writer holds it, or an earlier \
                 run left it behind (on Linux, remove it with `rm /dev/shm/{}`)",
                &name[1..]
            )),
            err => Error::os(format_args!("cannot create region {name}"), err),
        })?;
        // The name now exists: if sizing or mapping fails, remove it again.
        size_and_map(&fd, size, len)
            .map(|map| WriterRegion {
                name: name.to_string(),
                map,
            })
            .inspect_err(|_| {
                let _ = shm::unlink(name);
            })
    }

    /// The region's bytes, writable. Stores are seen by every process that
    /// maps the region, at once: they go to the shared pages themselves.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// Unmaps the region and removes its name. Processes that still have it
    /// mapped keep their pages; nobody new can open it.
    pub fn remove(self) -> Result<()> {
        let WriterRegion { name, map } = self;
        drop(map); // munmap
        shm::unlink(name.as_str())
            .map_err(|err| Error::os(format_args!("cannot remove {name}"), err))
    }
}

fn size_and_map(fd: &OwnedFd, size: u64, len: usize) -> Result<MmapMut> {
    // A new region is 0 bytes long. Mapping it is allowed, but touching a
    // page beyond its end raises SIGBUS: give it its size first.
    ftruncate(fd, size).map_err(|err| Error::os("cannot size the region (ftruncate)", err))?;
    // MAP_SHARED, read-write: what we store lands in the region itself, where
    // the reader sees it, rather than in a private copy (MAP_PRIVATE).
    // SAFETY: the mapping is only used as plain bytes; another process
    // shrinking the region could fault us, which the lab accepts.
    unsafe { MmapOptions::new().len(len).map_mut(fd) }
        .map_err(|err| Error::os("cannot map the region (mmap)", err))
}

/// The reader's side: an existing region mapped read-only.
pub struct ReaderRegion {
    map: Mmap,
}

impl ReaderRegion {
    /// Opens the existing region `name`, which must hold at least `size`
    /// bytes, and maps its first `size` bytes read-only.
    pub fn open(name: &str, size: u64) -> Result<Self> {
        check_name(name)?;
        // Read-only and without O_CREAT: a reader that created the region
        // would "succeed" with nobody writing.
        let fd = shm::open(name, shm::OFlags::RDONLY, Mode::empty()).map_err(|err| match err {
            Errno::NOENT => Error::new(format!(
                "no shared memory region named {name}: start the writer first"
            )),
            err => Error::os(format_args!("cannot open region {name}"), err),
        })?;
        let actual = fstat(&fd)
            .map_err(|err| Error::os("cannot stat the region", err))?
            .st_size as u64;
        if actual < size {
            return Err(Error::new(format!(
                "region {name} is {actual} bytes, smaller than the {size} bytes expected"
            )));
        }
        let len = usize::try_from(size).map_err(|_| Error::usage("SIZE is too large"))?;
        // SAFETY: read as plain bytes; see WriterRegion.
        let map = unsafe { MmapOptions::new().len(len).map(&fd) }
            .map_err(|err| Error::os("cannot map the region (mmap)", err))?;
        Ok(ReaderRegion { map })
    }

    /// The region's bytes, as the writer left them.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_portable_posix_form() {
        assert!(check_name("/MySharedMemory").is_ok());
        assert!(check_name("OS").is_err());
    }
}
