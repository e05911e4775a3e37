//! Wine on this machine: its loader and server, the prefix each job slot
//! grades Windows programs in, and the grader's own Windows-side program
//! (`wine_helper.c`: the probe of named sections and the reference peers),
//! built with mingw-w64 once per machine.
//!
//! A prefix is 693 MB and takes 6-8 s to make: one per slot, made by the
//! first grading that needs it and kept in the state directory
//! (`/var/lib/labgrade-wine/slot-N` as root), owned by the slot's learner
//! uid (Wine refuses a prefix its user does not own). A grading never
//! writes to it: as root, it grades in an overlay of it whose changes live
//! in the run's bounded storage and go with the grading
//! ([`crate::sandbox::Sandbox::start_wine`]).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The grader's Windows-side program, in C.
const HELPER_SOURCE: &str = include_str!("wine_helper.c");

/// bcryptprimitives.dll, which Wine 8.0 lacks and Rust programs import.
const PRNG_SOURCE: &str = include_str!("wine_prng.c");

/// Marks a slot's prefix as made, by this kit's way of making one (a
/// prefix of an older way is made again).
const DONE: &str = "prefix.v2.done";

/// The file name the helper is run as.
pub const HELPER: &str = "labgrade-win.exe";

/// The user name Windows programs see (their profile directory's name).
pub const USER: &str = "labgrade";

/// The mingw-w64 compilers Windows hand-ins are built with.
pub const CC: &str = "x86_64-w64-mingw32-gcc";
pub const CXX: &str = "x86_64-w64-mingw32-g++";
/// Where mingw-w64's Windows headers are.
pub const HEADERS: &str = "/usr/share/mingw-w64/include";
/// The Rust target Windows hand-ins in Rust are built for (mingw's gcc
/// links them).
pub const RUST_TRIPLE: &str = "x86_64-pc-windows-gnu";

/// Where Debian's wine64 keeps its loader and server (without the `wine`
/// package there is no `wine` on PATH).
const LOADERS: &[&str] = &["/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/bin/wine"];
const SERVERS: &[&str] = &[
    "/usr/lib/wine/wineserver",
    "/usr/bin/wineserver",
    "/usr/lib/wine/wineserver64",
];

/// Variables every Wine process of the grader's gets: no debug output but
/// the loader's errors (a DLL a program needs and nobody has), no installer
/// prompts for Mono and Gecko (no window, no network).
pub const QUIET: &[(&str, &str)] = &[
    ("WINEDEBUG", "-all,err+module"),
    // No Mono or Gecko installer; no debugger dumping a crashed
    // program's registers on its stdout (Wine's own line on stderr says
    // what happened).
    ("WINEDLLOVERRIDES", "mscoree,mshtml=;winedbg.exe=d"),
    ("USER", USER),
];

/// Every Wine process of a grading runs without address-space
/// randomisation: with it, now and then a program's first thread could not
/// map Windows' shared user data at its fixed address (c0000018, "failed to
/// map the shared user data") and the program died before it ran, a
/// failure of the platform charged to whichever program it hit.
pub const NO_RANDOMIZE: &[&str] = &["/usr/bin/setarch", "x86_64", "-R"];

/// What this machine lacks to grade Windows programs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("the mingw-w64 cross compiler ({CC}) is not installed")]
    Mingw,
    #[error("Wine (its wine64 loader) is not installed")]
    Wine,
}

impl Missing {
    /// What the machine's keeper should do.
    pub fn fix(&self) -> &'static str {
        "install gcc-mingw-w64-x86-64, g++-mingw-w64-x86-64, wine64 and libwine (apt-get install --no-install-recommends; `scripts/setup test` does it)"
    }
}

/// Wine's programs on this machine.
#[derive(Debug, Clone)]
pub struct Wine {
    pub loader: PathBuf,
    pub server: PathBuf,
}

/// Wine and mingw-w64, if both are here.
pub fn find() -> Result<Wine, Missing> {
    if crate::sandbox::find_in_path(CC).is_none() {
        return Err(Missing::Mingw);
    }
    let first = |list: &[&str]| list.iter().map(PathBuf::from).find(|p| p.is_file());
    match (first(LOADERS), first(SERVERS)) {
        (Some(loader), Some(server)) => Ok(Wine { loader, server }),
        _ => Err(Missing::Wine),
    }
}

/// One slot's prefix and the helper built for it.
#[derive(Debug, Clone)]
pub struct Prefix {
    /// The prefix itself (`WINEPREFIX`).
    pub dir: PathBuf,
    /// The helper, built from this grader's source.
    pub helper: PathBuf,
    /// Whether this grading had to make it (and how long that took).
    pub made: Option<std::time::Duration>,
}

/// The prefix of job slot `slot`, made if it is not there yet, owned by
/// `ids` (the slot's learner uid and gid) when the grader is root.
/// `making` is told before a prefix is made, for the progress line.
pub fn prefix(
    wine: &Wine,
    slot: u32,
    ids: Option<(u32, u32)>,
    making: &dyn Fn(),
) -> std::io::Result<Prefix> {
    let base = base()?;
    let slot_dir = base.join(format!("slot-{slot}"));
    std::fs::create_dir_all(&slot_dir)?;
    let lock = std::fs::File::create(slot_dir.join(".lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let dir = slot_dir.join("prefix");
    let done = slot_dir.join(DONE);
    let mut made = None;
    if !done.is_file() {
        making();
        // Passable by the slot's uid while it makes its prefix, and only
        // then: learner code never reaches the prefix but through an
        // overlay (as root) or its own sandbox.
        std::fs::set_permissions(&slot_dir, std::fs::Permissions::from_mode(0o711))?;
        let began = std::time::Instant::now();
        make_prefix(wine, &slot_dir, &dir, ids)?;
        std::fs::write(&done, b"")?;
        made = Some(began.elapsed());
    }
    std::fs::set_permissions(&slot_dir, std::fs::Permissions::from_mode(0o700))?;
    let helper = helper(&slot_dir)?;
    Ok(Prefix { dir, helper, made })
}

/// Whether the prefix of job slot `slot` is made already.
pub fn prefix_made(slot: u32) -> bool {
    base().is_ok_and(|b| b.join(format!("slot-{slot}")).join(DONE).is_file())
}

/// Where the slots' prefixes are kept: beside the state directory as root
/// (which stays root's alone: a prefix is made by the slot's uid, which
/// must pass), inside it otherwise.
pub fn base() -> std::io::Result<PathBuf> {
    let base = if rustix::process::geteuid().is_root() {
        PathBuf::from("/var/lib/labgrade-wine")
    } else {
        crate::state::dir()?.join("wine")
    };
    std::fs::create_dir_all(&base)?;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711))?;
    Ok(base)
}

/// A command of Wine's for the prefix `prefix` whose server lives under
/// `tmp`: a clean environment, quiet, as Wine's uid (`ids`) when the grader
/// is root, its stdin empty.
fn command(program: &Path, prefix: &Path, tmp: &Path, ids: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", tmp)
        .env("TMPDIR", tmp)
        .env("WINEPREFIX", prefix)
        .envs(QUIET.iter().copied())
        .stdin(Stdio::null());
    if let Some((uid, gid)) = ids {
        // As root, std drops the supplementary groups too.
        c.uid(uid).gid(gid);
    }
    c
}

/// `wineboot --init` as the slot's user, then its wineserver stopped.
fn make_prefix(
    wine: &Wine,
    slot_dir: &Path,
    dir: &Path,
    ids: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let tmp = slot_dir.join("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all(&tmp)?;
    if let Some((uid, gid)) = ids {
        for d in [dir, tmp.as_path()] {
            std::os::unix::fs::chown(d, Some(uid), Some(gid))?;
        }
    }
    let command = |program: &Path, args: &[&str]| {
        let mut c = command(program, dir, &tmp, ids);
        c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };
    let boot = command(&wine.loader, &["wineboot", "--init"]).output()?;
    // The server it started goes with what it started.
    let _ = command(&wine.server, &["-w"]).status();
    let _ = command(&wine.server, &["-k"]).status();
    if !boot.status.success() || !dir.join("system.reg").is_file() {
        return Err(std::io::Error::other(format!(
            "wineboot could not make a prefix in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&boot.stderr).trim()
        )));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let system32 = dir.join("drive_c/windows/system32");
    build_exe(
        PRNG_SOURCE,
        &slot_dir.join(".prng.c"),
        &system32.join("bcryptprimitives.dll"),
        &["-shared"],
        &["-lbcrypt"],
    )?;
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(system32.join("bcryptprimitives.dll"), Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Builds `source` (C, kept at `scratch` meanwhile) into `out` with
/// mingw-w64.
fn build_exe(
    source: &str,
    scratch: &Path,
    out: &Path,
    flags: &[&str],
    libs: &[&str],
) -> std::io::Result<()> {
    std::fs::write(scratch, source)?;
    let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
    let built = Command::new(CC)
        .args(["-O2", "-Wall"])
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(scratch)
        .args(libs)
        .stdin(Stdio::null())
        .output();
    let _ = std::fs::remove_file(scratch);
    let built = built?;
    if !built.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::other(format!(
            "{CC} could not build the grader's {}: {}",
            out.display(),
            String::from_utf8_lossy(&built.stderr).trim()
        )));
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, out)
}

/// The helper built from this grader's source (once: named after its
/// digest), readable and runnable by everyone.
fn helper(slot_dir: &Path) -> std::io::Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(HELPER_SOURCE.as_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let exe = slot_dir.join(format!("labgrade-win-{tag}.exe"));
    if !exe.is_file() {
        let scratch = slot_dir.join(format!(".labgrade-win-{tag}.{}.c", std::process::id()));
        build_exe(HELPER_SOURCE, &scratch, &exe, &[], &[])?;
    }
    Ok(exe)
}

/// A grading's Wine: the prefix it grades in (an overlay of its slot's as
/// root, whose changes go with the grading; the slot's own otherwise), the
/// directory of its server's socket, its helper, and its server, started
/// once and kept for the grading with Wine's services, so that every
/// program of the grading meets the others' names.
pub struct Home {
    /// Wine's programs on this machine.
    pub wine: Wine,
    /// The prefix and the server's directory, on the host.
    pub prefix: PathBuf,
    pub tmp: PathBuf,
    /// The helper's copy in the run, read-only to learner code.
    pub helper: PathBuf,
    /// Whether this grading made the slot's prefix.
    pub made: Option<std::time::Duration>,
    /// The overlay mounted at `prefix`, to unmount.
    overlay: bool,
    /// Wine's server and services: their own run, killed (with its PID
    /// namespace, where it has one) when the grading ends.
    server: std::sync::Mutex<Option<crate::runner::Running>>,
    /// The resident probe, once started, and how many answers it gave.
    pub probe: std::sync::Mutex<Option<(crate::runner::Running, usize)>>,
    /// The uid and gid Wine runs as, when the grader is root.
    ids: Option<(u32, u32)>,
}

impl Drop for Home {
    fn drop(&mut self) {
        drop(self.probe.lock().unwrap_or_else(|e| e.into_inner()).take());
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if server.is_some() {
            // The server daemonised: where it has no PID namespace to die
            // with (the uid level) its run's end would leave it, and its
            // services, behind. Told to go, it takes every client along.
            self.kill_server();
        }
        drop(server);
        if self.overlay {
            let _ = rustix::mount::unmount(&self.prefix, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// How long `wineserver -k` may take to stop a grading's Wine.
const KILL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long Wine's server and services may take to be up in a prefix.
const BOOT: std::time::Duration = std::time::Duration::from_secs(60);

impl Home {
    /// `wineserver -k` for the grading's prefix, as Wine's uid: the server
    /// kills every program connected to it and ends.
    fn kill_server(&self) {
        let mut c = command(&self.wine.server, &self.prefix, &self.tmp, self.ids);
        c.arg("-k").stdout(Stdio::null()).stderr(Stdio::null());
        let Ok(mut child) = c.spawn() else {
            return;
        };
        let deadline = std::time::Instant::now() + KILL_PATIENCE;
        let done = crate::observe::poll_until(deadline, || child.try_wait().ok().flatten());
        if done.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets up the grading's Wine in `run` (a directory of the area's
    /// run): the slot's prefix (made first if need be, `making` told),
    /// the overlay, the helper's copy.
    pub fn new(
        run: &Path,
        slot: u32,
        ids: Option<(u32, u32)>,
        overlay: bool,
        making: &dyn Fn(),
    ) -> std::io::Result<Home> {
        let wine = find().map_err(std::io::Error::other)?;
        let slot_prefix = prefix(&wine, slot, ids, making)
            .map_err(|e| std::io::Error::other(format!("the prefix of slot {slot}: {e}")))?;
        let give = |dir: &Path| -> std::io::Result<()> {
            if let Some((uid, gid)) = ids {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
            }
            Ok(())
        };
        let dir = run.join("wine");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        give(&dir)?;
        give(&tmp)?;
        let helper_dir = run.join(".wine-helper");
        std::fs::create_dir_all(&helper_dir)?;
        std::fs::set_permissions(&helper_dir, std::fs::Permissions::from_mode(0o755))?;
        let helper = helper_dir.join(HELPER);
        std::fs::copy(&slot_prefix.helper, &helper)?;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o555))?;
        let mut home = Home {
            wine,
            prefix: slot_prefix.dir.clone(),
            tmp,
            helper,
            made: slot_prefix.made,
            overlay: false,
            server: std::sync::Mutex::new(None),
            probe: std::sync::Mutex::new(None),
            ids,
        };
        if overlay {
            // The upper layer beside, not inside, what programs are given.
            let layers = run.join(".wine-layers");
            let (upper, work) = (layers.join("upper"), layers.join("work"));
            std::fs::create_dir_all(&upper)?;
            std::fs::create_dir_all(&work)?;
            // The overlay's root is the upper layer's: the slot's uid's.
            give(&upper)?;
            let merged = dir.join("prefix");
            std::fs::create_dir_all(&merged)?;
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                slot_prefix.dir.display(),
                upper.display(),
                work.display()
            );
            let options = std::ffi::CString::new(options).map_err(std::io::Error::other)?;
            rustix::mount::mount(
                "overlay",
                &merged,
                "overlay",
                rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
                Some(options.as_c_str()),
            )
            .map_err(|e| std::io::Error::other(format!("an overlay of the prefix: {e}")))?;
            home.prefix = merged;
            home.overlay = true;
        }
        Ok(home)
    }

    /// Starts the server and Wine's services with `spec` (made by the
    /// caller, contained, running [`Home::server_script`]), and waits until
    /// they are up.
    pub fn start_server(&self, spec: crate::runner::Spec) -> std::io::Result<()> {
        let running = crate::runner::start(spec).map_err(std::io::Error::other)?;
        let up = running
            .stdout()
            .wait_for(std::time::Instant::now() + BOOT, |bytes| {
                memchr::memmem::find(bytes, b"wine is up").is_some()
            });
        if !up {
            let finished = running.stop();
            // Fontconfig's complaint about its cache is noise on every start.
            let said: Vec<String> = finished
                .stderr
                .text()
                .lines()
                .filter(|l| !l.starts_with("Fontconfig error") && !l.contains(":fixme:"))
                .take(10)
                .map(str::to_string)
                .collect();
            return Err(std::io::Error::other(format!(
                "Wine's server did not start in the grading's prefix ({}): {}",
                finished.ending.describe(),
                said.join("; ")
            )));
        }
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
        Ok(())
    }
}

/// What the server's run runs (under `loader`'s variables): a persistent
/// server, Wine's services started by a boot, a line saying so, then a
/// wait for as long as the server lives.
pub fn server_script(wine: &Wine) -> Vec<String> {
    let server = wine.server.display();
    let loader = wine.loader.display();
    let mut argv: Vec<String> = NO_RANDOMIZE.iter().map(|a| a.to_string()).collect();
    argv.extend([
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!(
            "{server} -p || {{ echo \"wineserver -p: $?\" >&2; exit 1; }}; WINEDEBUG=err+all {loader} wineboot || {{ echo \"wineboot: $?\" >&2; exit 1; }}; echo 'wine is up' && exec {server} -w"
        ),
    ]);
    argv
}

/// What the probe said of a section, parsed: `None` when it said it is
/// absent, `Err` when it said nothing a probe says.
pub fn parse_probe(stdout: &str) -> Result<Option<(u64, Vec<u8>)>, String> {
    let line = stdout.lines().next().unwrap_or("").trim();
    if line == "absent" {
        return Ok(None);
    }
    let rest = line
        .strip_prefix("size=")
        .ok_or_else(|| format!("the probe said {line:?}"))?;
    let (size, head) = rest
        .split_once(" head=")
        .ok_or_else(|| format!("the probe said {line:?}"))?;
    let size = size
        .parse()
        .map_err(|_| format!("the probe said {line:?}"))?;
    let bytes = (0..head.len() / 2)
        .map(|i| u8::from_str_radix(&head[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| format!("the probe said {line:?}"))?;
    Ok(Some((size, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_lines_are_read() {
        assert_eq!(parse_probe("absent\r\n"), Ok(None));
        assert_eq!(
            parse_probe("size=4096 head=48690000\r\n"),
            Ok(Some((4096, b"Hi\0\0".to_vec())))
        );
        assert!(parse_probe("size=x head=").is_err());
        assert!(parse_probe("").is_err());
    }
}
