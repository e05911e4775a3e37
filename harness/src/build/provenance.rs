//! Whether a built program is the build's own work: a regular file in the
//! build directory, and not the grader itself. A symbolic link would have
//! the sandbox bind (and run) whatever it points at on the host; a copy of
//! the grader is its reference in disguise. (A hard link to a file outside
//! cannot be made: the build directory is a mount of its own in the build's
//! sandbox, and the kernel's protected_hardlinks refuses another user's
//! file at the uid level; Cargo's own hard links are harmless.)

use std::cell::OnceCell;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Bytes every build of the grader carries (this static is read by
/// [`Grader::is_copy`], so no build can leave it out): a copy of any
/// labgrade, not only of the one running, is recognised by them.
pub static MARK: &[u8] = b"\0labgrade: the grader's own binary, never a learner's program\0";

/// Copies of the grader are several MiB: smaller files are not searched
/// for [`MARK`].
const SMALLEST_GRADER: u64 = 1 << 20;

/// The grader's own binary, recognised by size and then by hash, and any
/// other build of it by [`MARK`].
pub struct Grader {
    path: PathBuf,
    size: u64,
    digest: OnceCell<Option<Vec<u8>>>,
}

impl Grader {
    pub fn running() -> Option<Grader> {
        let path = std::env::current_exe().ok()?;
        let size = path.metadata().ok()?.len();
        Some(Grader {
            path,
            size,
            digest: OnceCell::new(),
        })
    }

    /// Whether `file` is the grader: exactly its bytes, or another build
    /// of it (found on this machine, say), which carries [`MARK`].
    pub fn is_copy(&self, file: &Path) -> bool {
        let Ok(meta) = file.metadata() else {
            return false;
        };
        if meta.len() == self.size {
            let mine = self.digest.get_or_init(|| digest(&self.path));
            if mine.is_some() && *mine == digest(file) {
                return true;
            }
        }
        meta.len() >= SMALLEST_GRADER && carries_mark(file)
    }
}

/// Whether `path` holds [`MARK`], read in chunks that overlap by its
/// length (read, not mapped: learner code could shrink a mapped file).
fn carries_mark(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let finder = memchr::memmem::Finder::new(MARK);
    let keep = MARK.len() - 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let n = match file.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        filled += n;
        if finder.find(&buf[..filled]).is_some() {
            return true;
        }
        if filled > keep {
            buf.copy_within(filled - keep..filled, 0);
            filled = keep;
        }
    }
}

fn digest(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf).ok()? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Some(hasher.finalize().to_vec())
}

/// Why the program at `path` cannot be accepted as `name`, if it cannot.
pub fn problem(
    name: &str,
    path: &Path,
    build_dir: &Path,
    grader: Option<&Grader>,
) -> Option<String> {
    let meta = match path.symlink_metadata() {
        Ok(meta) => meta,
        Err(_) => return Some(format!("the build produced no program named {name}")),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        return Some(format!(
            "{name} is a symbolic link (to {target}), not a program the build made: refused"
        ));
    }
    if !meta.is_file() {
        return Some(format!("{name} is not a regular file: refused"));
    }
    let inside = match (path.canonicalize(), build_dir.canonicalize()) {
        (Ok(p), Ok(d)) => p.starts_with(d),
        _ => false,
    };
    if !inside {
        return Some(format!("{name} lies outside the build directory: refused"));
    }
    if grader.is_some_and(|g| g.is_copy(path)) {
        return Some(format!("{name} is a copy of the grader itself: refused"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Some(format!("{name} is not executable"));
    }
    None
}

/// A file anywhere in the build directory that is a copy of the grader, if
/// there is one: a build that copies the grader is not trusted at all.
pub fn grader_copy(build_dir: &Path, grader: &Grader, skip: &[&str]) -> Option<PathBuf> {
    let mut todo = vec![build_dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !skip.iter().any(|s| entry.file_name() == *s) {
                    todo.push(entry.path());
                }
            } else if kind.is_file() && grader.is_copy(&entry.path()) {
                return Some(entry.path());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_build_of_the_grader_is_known_by_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, vec![7u8; 3 << 20]).unwrap();
        assert!(!carries_mark(&plain));
        // The mark straddling the first chunk's end is still found.
        let mut bytes = vec![7u8; (1 << 20) - 10];
        bytes.extend_from_slice(MARK);
        bytes.resize(3 << 20, 0);
        let marked = dir.path().join("marked");
        std::fs::write(&marked, &bytes).unwrap();
        assert!(carries_mark(&marked));
        // The running binary (this test's) links the grader, so carries it.
        let me = std::env::current_exe().unwrap();
        assert!(Grader::running().unwrap().is_copy(&me));
    }
}
