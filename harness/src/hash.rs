//! Content hashes: what identifies a rubric and a submission in a report,
//! and what seeds the grader's randomness so a regrade gives the same report.

use std::path::Path;

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hash of a directory tree: every regular file's relative path and bytes,
/// in sorted order, so the same sources give the same hash anywhere.
/// Names are taken as bytes (a name that is not UTF-8, as archives made on
/// Windows have, is hashed and read as it is). Build output and
/// version-control data (`target/`, `.git/`) are left out.
pub fn tree_sha256(root: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(root, root, &mut files)?;
    files.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    let mut hasher = Sha256::new();
    for rel in files {
        let bytes = std::fs::read(root.join(&rel))?;
        hasher.update(rel.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex(&hasher.finalize()))
}

/// Directories never part of what a learner wrote.
pub const SKIPPED_DIRS: &[&str] = &[".git", "target"];

fn collect(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| entry.file_name() == *s) {
                collect(root, &path, out)?;
            }
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

/// A seed for the grader's randomness from the two hashes and the grader's
/// secret key: the same on every regrade with the same key, and not to be
/// worked out by anyone without it.
pub fn seed(submission_sha: &str, rubric_sha: &str, secret: &[u8]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(secret);
    hasher.update((secret.len() as u64).to_le_bytes());
    hasher.update(format!("{submission_sha}:{rubric_sha}").as_bytes());
    u64::from_le_bytes(hasher.finalize()[..8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::seed;

    #[test]
    fn the_seed_follows_the_secret_as_well_as_the_hashes() {
        let a = seed("sub", "rub", b"key one");
        assert_eq!(
            a,
            seed("sub", "rub", b"key one"),
            "a regrade gives the same seed"
        );
        assert_ne!(a, seed("sub", "rub", b"key two"));
        assert_ne!(a, seed("sub2", "rub", b"key one"));
    }
}
