//! `mapfile`, driven from outside: what it prints, and what it leaves in
//! datafile.bin, read by the test itself.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;

const LINE: &str = "Data from memory-mapped file: Hello, Memory-Mapped File!\n";
const MESSAGE: &[u8] = b"Hello, Memory-Mapped File!\0";

fn assert_datafile(dir: &std::path::Path) {
    let bytes = std::fs::read(dir.join("datafile.bin")).unwrap();
    assert_eq!(bytes.len(), 1024, "datafile.bin must be exactly 1024 bytes");
    assert_eq!(&bytes[..MESSAGE.len()], MESSAGE);
    assert!(
        bytes[MESSAGE.len()..].iter().all(|&b| b == 0),
        "the rest must stay zero"
    );
}

#[test]
fn in_an_empty_directory_it_writes_the_file_and_prints_the_line() {
    let dir = tempfile::tempdir().unwrap();
    Command::new(common::bin("mapfile"))
        .current_dir(dir.path())
        .assert()
        .success()
        .stdout(LINE)
        .stderr("");
    assert_datafile(dir.path());
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only datafile.bin is created");
}

#[test]
fn an_existing_larger_file_is_truncated_to_1024_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("datafile.bin"), vec![0xAA; 8192]).unwrap();
    Command::new(common::bin("mapfile"))
        .current_dir(dir.path())
        .assert()
        .success()
        .stdout(LINE);
    assert_datafile(dir.path());
}

#[test]
fn arguments_are_refused_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    Command::new(common::bin("mapfile"))
        .arg("extra")
        .current_dir(dir.path())
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("takes no arguments"));
    assert!(!dir.path().join("datafile.bin").exists());
}

#[test]
fn a_datafile_that_cannot_be_opened_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    // A directory in the file's place: opening it for writing fails, even as root.
    std::fs::create_dir(dir.path().join("datafile.bin")).unwrap();
    Command::new(common::bin("mapfile"))
        .current_dir(dir.path())
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("cannot create datafile.bin"));
}
