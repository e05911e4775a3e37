//! One error type for the three programs: a sentence for the learner, and
//! whether it was a usage mistake (exit code 2) or a failure (exit code 1).

use std::fmt;
use std::io;
use std::process::ExitCode;

/// Something went wrong; `message` says what, in one line.
#[derive(Debug)]
pub struct Error {
    message: String,
    usage: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A run-time failure: the region is missing, a system call failed...
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            usage: false,
        }
    }

    /// The command line was wrong.
    pub fn usage(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            usage: true,
        }
    }

    /// A failed system call, with what we were trying to do.
    pub fn os(what: impl fmt::Display, err: impl Into<io::Error>) -> Self {
        Error::new(format!("{what}: {}", err.into()))
    }

    /// The exit code a program should end with after this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(if self.usage { 2 } else { 1 })
    }

    pub fn is_usage(&self) -> bool {
        self.usage
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::new(err.to_string())
    }
}

/// Ends a program: exit 0 on success, or the error on stderr (never stdout,
/// so it cannot be mistaken for data) and a non-zero exit code.
pub fn finish(program: &str, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err}");
            err.exit_code()
        }
    }
}
