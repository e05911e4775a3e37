//! The naming rules of region names, on every platform alike, so that the
//! grader and its rubric loader apply exactly the rules these programs do.

/// Longest portable POSIX name, the leading slash included (NAME_MAX).
const POSIX_NAME_MAX: usize = 255;

/// Longest name Windows accepts for a mapping object.
const WINDOWS_MAX_PATH: usize = 260;

/// The POSIX rule, in words.
pub const POSIX_RULE: &str =
    "use a slash followed by up to 254 characters with no other slash, such as /MySharedMemory";

/// The Windows rule, in words.
pub const WINDOWS_RULE: &str = "use a name without backslashes, optionally after Local\\ or Global\\, such as Local\\MySharedMemory";

/// A portable POSIX name is one slash followed by 1 to 254 characters, none
/// of them a slash (POSIX leaves every other form implementation-defined:
/// glibc takes `OS` as /dev/shm/OS, other systems refuse it).
pub fn is_posix(name: &str) -> bool {
    match name.strip_prefix('/') {
        Some(rest) => {
            !rest.is_empty()
                && name.len() <= POSIX_NAME_MAX
                && !rest.contains(['/', '\0'])
                && rest != "."
                && rest != ".."
        }
        None => false,
    }
}

/// A Windows name is an optional `Local\` or `Global\` namespace, then at
/// least one character, no further backslash, at most MAX_PATH in all.
pub fn is_windows(name: &str) -> bool {
    let rest = name
        .strip_prefix("Local\\")
        .or_else(|| name.strip_prefix("Global\\"))
        .unwrap_or(name);
    !rest.is_empty() && !rest.contains(['\\', '\0']) && name.chars().count() <= WINDOWS_MAX_PATH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_names_follow_the_portable_form() {
        for good in [
            "/MySharedMemory",
            "/a",
            "/with space",
            &format!("/{}", "n".repeat(254)),
        ] {
            assert!(is_posix(good), "{good}");
        }
        let too_long = format!("/{}", "n".repeat(255));
        for bad in [
            "",
            "/",
            "OS",
            "MySharedMemory",
            "/a/b",
            "//a",
            "/.",
            "/..",
            "/a\0b",
            &too_long,
        ] {
            assert!(!is_posix(bad), "{bad}");
        }
    }

    #[test]
    fn windows_names_take_an_optional_namespace() {
        for good in ["Local\\MySharedMemory", "Global\\x", "plain"] {
            assert!(is_windows(good), "{good}");
        }
        for bad in ["", "Local\\", "Local\\a\\b", "a\0b"] {
            assert!(!is_windows(bad), "{bad}");
        }
    }
}
