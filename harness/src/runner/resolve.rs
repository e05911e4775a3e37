//! Finding the program a process is to run, the way `execvp` would, but
//! with a precise reason when it cannot: not installed anywhere on PATH,
//! installed where the sandbox's uid cannot reach it (and which directory
//! stops it), or failing to start for another reason. "Permission denied"
//! alone hides whether a compiler is missing or merely unreadable.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a program could not be started. Never the learner's doing when it
/// names a build tool or the grader's own helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StartError {
    /// Found in none of the PATH directories (ENOENT).
    #[error("{program} is not installed (not found in {searched})")]
    NotInstalled { program: String, searched: String },
    /// It exists, but the uid the process runs as cannot reach it (EACCES).
    #[error("{program} ({path}) cannot be run by uid {uid}: {blocked} is not readable by that uid")]
    NotReadable {
        program: String,
        path: PathBuf,
        blocked: PathBuf,
        uid: u32,
    },
    /// Anything else: the program exists and is reachable, and exec failed.
    #[error("{program} could not be started: {error}")]
    Failed { program: String, error: String },
}

impl StartError {
    /// The program, as it was asked for.
    pub fn program(&self) -> &str {
        match self {
            StartError::NotInstalled { program, .. }
            | StartError::NotReadable { program, .. }
            | StartError::Failed { program, .. } => program,
        }
    }
}

/// The first file named `program` in `path_var` that exists, as the current
/// user sees it (a `/` in `program` means it is already a path).
pub fn locate(program: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    candidates(program, path_var)
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
}

/// The file to exec for `program`: the first candidate the current user
/// may execute. `located` is where a more privileged look (before dropping
/// to the sandbox's uid) found it, so that "not reachable" can be told from
/// "not installed".
pub fn resolve(
    program: &OsStr,
    path_var: Option<&OsStr>,
    located: Option<&Path>,
) -> Result<PathBuf, StartError> {
    let name = program.to_string_lossy().into_owned();
    let all = candidates(program, path_var);
    if let Some(found) = all.iter().find(|p| executable(p)) {
        return Ok(found.clone());
    }
    let visible = all.iter().find(|p| p.symlink_metadata().is_ok());
    match located.or(visible.map(PathBuf::as_path)) {
        Some(path) => Err(StartError::NotReadable {
            program: name,
            path: path.to_path_buf(),
            blocked: first_blocker(path),
            uid: rustix::process::geteuid().as_raw(),
        }),
        None => Err(StartError::NotInstalled {
            program: name,
            searched: if program.as_encoded_bytes().contains(&b'/') {
                "its directory".to_string()
            } else {
                path_var
                    .map(|p| p.to_string_lossy().into_owned())
                    .filter(|p| !p.is_empty())
                    .map(|p| format!("PATH={p}"))
                    .unwrap_or_else(|| "an empty PATH".to_string())
            },
        }),
    }
}

fn candidates(program: &OsStr, path_var: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_encoded_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    path_var
        .map(|p| std::env::split_paths(p).map(|d| d.join(program)).collect())
        .unwrap_or_default()
}

/// Checked with the effective ids, which the sandbox's init sets to the
/// learner's while it looks.
fn executable(path: &Path) -> bool {
    path.is_file() && effective_access(path)
}

fn effective_access(path: &Path) -> bool {
    rustix::fs::accessat(
        rustix::fs::CWD,
        path,
        rustix::fs::Access::EXEC_OK,
        rustix::fs::AtFlags::EACCESS,
    )
    .is_ok()
}

/// The first directory on the way to `path` that the current user cannot
/// search, or `path` itself when every directory can be passed.
fn first_blocker(path: &Path) -> PathBuf {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    ancestors
        .into_iter()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| !effective_access(a))
        .unwrap_or(path)
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_program_on_path_is_found_and_a_missing_one_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent".as_ref(), dir.path()]).unwrap();
        assert_eq!(resolve("tool".as_ref(), Some(&path), None), Ok(tool));
        match resolve("no-such-tool".as_ref(), Some(&path), None) {
            Err(StartError::NotInstalled { program, searched }) => {
                assert_eq!(program, "no-such-tool");
                assert!(searched.contains("/nonexistent"), "{searched}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_program_that_cannot_be_executed_is_not_readable_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "data").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.path().as_os_str().to_owned();
        match resolve("tool".as_ref(), Some(&path), None) {
            Err(e @ StartError::NotReadable { .. }) => {
                assert!(e.to_string().contains("cannot be run by uid"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
}
