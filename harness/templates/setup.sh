#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder's image.
set -euo pipefail

apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    ca-certificates curl git gcc g++ libc6-dev make cmake strace bubblewrap \
    gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 wine64 libwine

# Rust, where the unprivileged uid that runs learners' code can read it
# (learners' Cargo submissions are built with it).
export RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo
curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable --no-modify-path
export PATH=/usr/local/cargo/bin:$PATH

# The grading kit.
@INSTALL_KIT@
chmod -R a+rX /usr/local/rustup /usr/local/cargo

# The grader, its rubric, its key and the kit's sources are root's alone:
# learner code runs here as an unprivileged uid without namespaces, and can
# read whatever other users may.
chmod 700 /usr/local/bin/labgrade /autograder/source
chmod 600 /autograder/source/secret.key

# What this image offers for grading, each problem with its fix: stop here,
# rather than grade every submission incompletely, if the rubric lacks
# something it needs or learner code cannot run as an unprivileged uid.
labgrade doctor --rubric /autograder/source/grading.toml --require uid
