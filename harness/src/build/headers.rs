//! Headers a plain build needs that the submission cannot bring: stand-ins
//! for a Visual Studio project's precompiled headers, names written in
//! another case than the system's (`<Windows.h>` on a case-sensitive
//! system whose header is `windows.h`), and the target's big system headers
//! precompiled once per machine, so that a hand-in's compile does not
//! parse 80 000 lines of `windows.h` every time.

use std::path::{Path, PathBuf};

use crate::target::Target;

/// Where the stand-ins and case aliases go, in the copy.
pub const SHIMS_DIR: &str = ".labgrade-include";

/// Writes the stand-ins and case aliases the sources in `dir` need into
/// [`SHIMS_DIR`]; returns the flag that points the compiler there, if any.
pub fn shims(dir: &Path, target: &dyn Target) -> Option<String> {
    let mut files: Vec<(String, String)> = target
        .stub_headers()
        .iter()
        .filter(|(h, _)| !dir.join(h).exists() && !dir.join("src").join(h).exists())
        .filter(|(h, _)| crate::target::included(dir, h))
        .map(|(h, text)| (h.to_string(), text.to_string()))
        .collect();
    if let Some(system) = target.system_headers() {
        for name in crate::target::includes(dir) {
            if files.iter().any(|(f, _)| f.eq_ignore_ascii_case(&name)) {
                continue;
            }
            if let Some(real) = case_alias(system, &name) {
                files.push((name, format!("#include <{real}>\n")));
            }
        }
    }
    if files.is_empty() {
        return None;
    }
    let shims = dir.join(SHIMS_DIR);
    for (name, text) in files {
        let path = shims.join(&name);
        std::fs::create_dir_all(path.parent()?).ok()?;
        std::fs::write(path, text).ok()?;
    }
    Some(format!("-I{SHIMS_DIR}"))
}

/// The system header `name` stands for when it is not there as written but
/// is in another case (`Windows.h` for `windows.h`): its real name.
fn case_alias(system: &Path, name: &str) -> Option<String> {
    if name.contains("..") || name.starts_with('/') || system.join(name).exists() {
        return None;
    }
    let mut dir = system.to_path_buf();
    let mut real = Vec::new();
    for part in name.split('/') {
        let entry = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(part))?;
        let found = entry.file_name().to_string_lossy().into_owned();
        dir = dir.join(&found);
        real.push(found);
    }
    Some(real.join("/"))
}

/// Precompiled system headers for one compiler and set of flags, made the
/// first time they are asked for and kept under `base`: the directory
/// to put first on the include path (`-I`), holding `NAME.gch` for each of
/// the target's precompiled headers (and for its names in other cases).
/// GCC uses one only when the flags and macros it was made with match
/// the compile's, and the header itself otherwise: a stale or unsuitable
/// one costs time, never a different build.
pub fn precompiled(
    base: &Path,
    compiler: &str,
    flags: &[String],
    cpp: bool,
    headers: &[&str],
    stand_ins: &[(&str, &str)],
    making: &dyn Fn(),
) -> std::io::Result<Option<PathBuf>> {
    if headers.is_empty() {
        return Ok(None);
    }
    let key = crate::hash::sha256_hex(
        format!(
            "{compiler}\0{}\0{cpp}\0{}\0{stand_ins:?}",
            flags.join("\0"),
            headers.join("\0")
        )
        .as_bytes(),
    );
    let dir = base.join(&key[..16]);
    if dir.join(DONE).is_file() {
        return Ok(Some(dir));
    }
    std::fs::create_dir_all(base)?;
    let lock = std::fs::File::create(base.join(".lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    if dir.join(DONE).is_file() {
        return Ok(Some(dir));
    }
    making();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for header in headers {
        let source = dir.join(format!("{header}.src"));
        std::fs::write(&source, format!("#include <{header}>\n"))?;
        let out = std::process::Command::new(compiler)
            .args(flags)
            .args(["-x", if cpp { "c++-header" } else { "c-header" }])
            .arg(&source)
            .arg("-o")
            .arg(dir.join(format!("{header}.gch")))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(std::process::Stdio::null())
            .output()?;
        std::fs::remove_file(&source)?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "{compiler} could not precompile {header}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // Visual Studio's own spelling, the shouting one, and the names
        // of the stand-ins that include it.
        let (stem, ext) = header.rsplit_once('.').unwrap_or((header, ""));
        let mut capital = stem.to_string();
        if let Some(first) = capital.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        let include = format!("#include <{header}>");
        let standins = stand_ins
            .iter()
            .filter(|(_, text)| text.contains(&include))
            .map(|(name, _)| name.to_string());
        for alias in [format!("{capital}.{ext}"), header.to_ascii_uppercase()]
            .into_iter()
            .chain(standins)
        {
            if alias != *header {
                std::os::unix::fs::symlink(
                    format!("{header}.gch"),
                    dir.join(format!("{alias}.gch")),
                )?;
            }
        }
    }
    // Readable by the learner uids that compile with them.
    use std::os::unix::fs::PermissionsExt;
    for header in headers {
        let gch = dir.join(format!("{header}.gch"));
        std::fs::set_permissions(gch, std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(dir.join(DONE), b"")?;
    Ok(Some(dir))
}

/// The marker of a finished set of precompiled headers.
const DONE: &str = ".done";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_in_another_case_is_found_by_its_real_name() {
        let system = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(system.path().join("sys")).unwrap();
        std::fs::write(system.path().join("windows.h"), "").unwrap();
        std::fs::write(system.path().join("sys/stat.h"), "").unwrap();
        assert_eq!(
            case_alias(system.path(), "Windows.h").as_deref(),
            Some("windows.h")
        );
        assert_eq!(
            case_alias(system.path(), "SYS/Stat.h").as_deref(),
            Some("sys/stat.h")
        );
        assert_eq!(case_alias(system.path(), "windows.h"), None, "as written");
        assert_eq!(case_alias(system.path(), "winsock2.h"), None);
        assert_eq!(case_alias(system.path(), "../windows.h"), None);
    }
}
