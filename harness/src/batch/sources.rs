//! Where a class's submissions come from: directories holding one entry per
//! learner (a directory, or a .zip / .tar.gz / .tgz archive), as GitHub
//! Classroom's "clone all" or a folder of hand-ins lays them out. Archives
//! are unpacked safely: nothing outside the target, no links, bounded size
//! and file count; a corrupt or hostile one is refused with a reason.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Bounds on what one archive may unpack to.
pub const MAX_BYTES: u64 = 64 << 20;
pub const MAX_FILES: usize = 2000;

/// One learner's submission, as found.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The learner's id: the directory's name, or the archive's stem.
    pub learner: String,
    /// Where it was found.
    pub origin: PathBuf,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Zip,
    TarGz,
}

/// Every submission under the SOURCE directories, by learner id. Fails
/// (naming both places) when a learner id appears twice, or a source is
/// not a readable directory.
pub fn discover(sources: &[PathBuf]) -> Result<BTreeMap<String, Submission>, String> {
    let mut found: BTreeMap<String, Submission> = BTreeMap::new();
    for source in sources {
        let entries = std::fs::read_dir(source).map_err(|e| {
            format!(
                "{}: not a readable directory of submissions ({e})",
                source.display()
            )
        })?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            // A learner's id is the entry's name as text: any byte that is
            // not UTF-8, any control character shown as an escape, so the
            // id is safe in a terminal, a file name and a report.
            let Some(name) = path.file_name().map(crate::text::name) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            let (learner, kind) = if meta.is_dir() {
                (name.clone(), Kind::Dir)
            } else if let Some(stem) = name.strip_suffix(".zip") {
                (stem.to_string(), Kind::Zip)
            } else if let Some(stem) = name
                .strip_suffix(".tar.gz")
                .or_else(|| name.strip_suffix(".tgz"))
            {
                (stem.to_string(), Kind::TarGz)
            } else {
                continue; // a README or the like beside the submissions
            };
            if learner.is_empty() {
                continue;
            }
            if let Some(first) = found.get(&learner) {
                return Err(format!(
                    "learner {learner:?} is given twice: {} and {}",
                    first.origin.display(),
                    path.display()
                ));
            }
            found.insert(
                learner.clone(),
                Submission {
                    learner,
                    origin: path,
                    kind,
                },
            );
        }
    }
    Ok(found)
}

/// Unpacks an archive submission into `dest` (which must be empty) and
/// returns the directory holding the sources: `dest`, or the one directory
/// the archive wraps them in.
pub fn unpack(sub: &Submission, dest: &Path) -> Result<PathBuf, String> {
    let result = match sub.kind {
        Kind::Dir => return Ok(sub.origin.clone()),
        Kind::Zip => unzip(&sub.origin, dest),
        Kind::TarGz => untar(&sub.origin, dest),
    };
    result?;
    // An archive of one folder: the sources are inside it.
    let entries: Vec<PathBuf> = std::fs::read_dir(dest)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    match entries.as_slice() {
        [only] if only.is_dir() => Ok(only.clone()),
        _ => Ok(dest.to_path_buf()),
    }
}

/// A relative path with no `..`, no root, no prefix: one that stays inside.
fn safe_relative(name: &str) -> Result<PathBuf, String> {
    let path = Path::new(name);
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "refused: entry {name:?} points outside the archive"
                ));
            }
        }
    }
    Ok(clean)
}

/// Counts what has been unpacked so far against the bounds.
struct Budget {
    bytes: u64,
    files: usize,
}

impl Budget {
    fn file(&mut self) -> Result<(), String> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(format!("refused: more than {MAX_FILES} files"));
        }
        Ok(())
    }

    /// Copies at most what the budget allows; the archive's own size claims
    /// are not trusted (a zip bomb lies about them).
    fn copy(&mut self, from: &mut dyn Read, to: &Path) -> Result<(), String> {
        let room = MAX_BYTES - self.bytes;
        let mut out = File::create(to).map_err(|e| e.to_string())?;
        let copied = io::copy(&mut from.take(room + 1), &mut out)
            .map_err(|e| format!("corrupt archive: {e}"))?;
        self.bytes += copied;
        if copied > room {
            return Err(format!(
                "refused: unpacks to more than {} MiB",
                MAX_BYTES >> 20
            ));
        }
        Ok(())
    }
}

fn unzip(archive: &Path, dest: &Path) -> Result<(), String> {
    let file = File::open(archive).map_err(|e| format!("cannot open: {e}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("corrupt zip: {e}"))?;
    let mut budget = Budget { bytes: 0, files: 0 };
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("corrupt zip: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("corrupt zip: {e}"))?
            .into_owned();
        let rel = safe_relative(&name)?;
        if entry.is_symlink() {
            return Err(format!("refused: {name:?} is a link"));
        }
        let target = dest.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            continue;
        }
        budget.file()?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        budget.copy(&mut entry, &target)?;
    }
    Ok(())
}

fn untar(archive: &Path, dest: &Path) -> Result<(), String> {
    let file = File::open(archive).map_err(|e| format!("cannot open: {e}"))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut budget = Budget { bytes: 0, files: 0 };
    let entries = tar.entries().map_err(|e| format!("corrupt archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("corrupt archive: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("corrupt archive: {e}"))?
            .to_string_lossy()
            .into_owned();
        let rel = safe_relative(&name)?;
        let target = dest.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                budget.file()?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                budget.copy(&mut entry, &target)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(format!("refused: {name:?} is a link"));
            }
            // Extended headers and the like carry no files.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_archive_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
        assert_eq!(safe_relative("./a/b.c").unwrap(), PathBuf::from("a/b.c"));
    }
}
