//! The system tools grading relies on, and where each comes from: one
//! table for the build's messages and for `labgrade doctor`.

/// A tool the grader runs, and how to get it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The command, as it is looked up on PATH.
    pub command: &'static str,
    /// What it is for, in a few words.
    pub purpose: &'static str,
    /// How to install it, as a sentence fragment ("apt-get install gcc").
    pub install: &'static str,
}

pub const TOOLS: &[Tool] = &[
    Tool {
        command: "cc",
        purpose: "builds PROGRAM.c hand-ins",
        install: "apt-get install gcc libc6-dev",
    },
    Tool {
        command: "c++",
        purpose: "builds PROGRAM.cpp hand-ins",
        install: "apt-get install g++",
    },
    Tool {
        command: "make",
        purpose: "builds Makefile hand-ins",
        install: "apt-get install make",
    },
    Tool {
        command: "cmake",
        purpose: "builds CMakeLists.txt hand-ins",
        install: "apt-get install cmake",
    },
    Tool {
        command: "cargo",
        purpose: "builds Cargo hand-ins",
        install: "install Rust with rustup (https://rustup.rs)",
    },
    Tool {
        command: "strace",
        purpose: "evidence of real mappings",
        install: "apt-get install strace",
    },
    Tool {
        command: "bwrap",
        purpose: "the full isolation level",
        install: "apt-get install bubblewrap",
    },
];

/// The table's entry for `command` (a compiler named by its path or by a
/// common alias counts as the tool it is).
pub fn tool(command: &str) -> Option<&'static Tool> {
    let name = command.rsplit('/').next().unwrap_or(command);
    let name = match name {
        "gcc" | "clang" => "cc",
        "g++" | "clang++" => "c++",
        other => other,
    };
    TOOLS.iter().find(|t| t.command == name)
}

/// How to install `command`, for a message: "apt-get install cmake", or a
/// plain "install cmake" for a tool the table does not know.
pub fn how_to_install(command: &str) -> String {
    match tool(command) {
        Some(t) => t.install.to_string(),
        None => format!("install {command}"),
    }
}
