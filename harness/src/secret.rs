//! The grader's secret key, mixed into every grading's seed: without it,
//! the "random" message of the reference writer would follow from the
//! submission and the rubric alone, and a build that graded its own
//! submission could learn it. With it, the same submission graded twice on
//! machines sharing the key still gives the same report.
//!
//! The key is the file `LABGRADE_SECRET_FILE` names, or one the grader
//! creates on first use in its state directory (`/var/lib/labgrade` as
//! root, `$XDG_STATE_HOME/labgrade` or `~/.local/state/labgrade`
//! otherwise), readable by its owner only. Machines grading shards of one
//! class share a key by pointing `LABGRADE_SECRET_FILE` at copies of it.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that names the key file.
pub const ENV: &str = "LABGRADE_SECRET_FILE";

/// Bytes of a new key.
const KEY_LEN: usize = 32;

/// A loaded key, and where it came from.
#[derive(Debug, Clone)]
pub struct Secret {
    pub key: Vec<u8>,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{ENV} names {0}, which does not exist (create one with `head -c 32 /dev/urandom > FILE; chmod 600 FILE`)"
    )]
    Missing(PathBuf),
    #[error("{0} is empty: a key needs some bytes")]
    Empty(PathBuf),
    #[error("cannot use the secret key {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("no place for the secret key: set {ENV}, or HOME")]
    Nowhere,
}

impl Secret {
    /// The key of this machine (or of `LABGRADE_SECRET_FILE`), created in
    /// the state directory on first use.
    pub fn load() -> Result<Secret, SecretError> {
        if let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            if !path.exists() {
                return Err(SecretError::Missing(path));
            }
            return read(&path);
        }
        let path = crate::state::dir()
            .map_err(|_| SecretError::Nowhere)?
            .join("secret.key");
        if !path.exists() {
            create(&path).map_err(|error| SecretError::Io {
                path: path.clone(),
                error,
            })?;
        }
        read(&path)
    }

    /// Whether users other than the key's owner could read it.
    pub fn readable_by_others(&self) -> bool {
        self.path
            .metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
    }
}

fn read(path: &Path) -> Result<Secret, SecretError> {
    let key = std::fs::read(path).map_err(|error| SecretError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if key.is_empty() {
        return Err(SecretError::Empty(path.to_path_buf()));
    }
    Ok(Secret {
        key,
        path: path.to_path_buf(),
    })
}

/// Writes a fresh key to `path`, owner-only, atomically: gradings that
/// start together all end up with the one key that got there first.
fn create(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::state::owner_only_dir(dir)?;
    let mut key = [0u8; KEY_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let tmp = dir.join(format!(".secret.key.{}", std::process::id()));
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&key)?;
    file.sync_all()?;
    drop(file);
    // link() fails if the key exists already: then the other one stands.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_owner_only_and_the_first_one_stands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/secret.key");
        create(&path).unwrap();
        let first = std::fs::read(&path).unwrap();
        assert_eq!(first.len(), KEY_LEN);
        create(&path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            first,
            "a key is never replaced"
        );
        let mode = path.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = path
            .parent()
            .unwrap()
            .metadata()
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
