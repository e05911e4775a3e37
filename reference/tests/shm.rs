//! `shm_writer` and `shm_reader`, driven from outside the way the grader
//! drives them: the writer started and held, the region observed by the
//! test itself, the reader run against it, the writer released, the name
//! gone afterwards.

#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::MetadataExt;

use assert_cmd::Command;
use common::{Writer, bin, shm_path, unique_name, wait_until};
use predicates::prelude::*;
use serial_test::file_serial;

const MESSAGE: &[u8] = b"Shared Memory Data!\0";
const LINE: &str = "Data from shared memory: Shared Memory Data!\n";

fn reader(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("shm_reader"));
    cmd.args(args).timeout(common::DEADLINE);
    cmd
}

/// What the test itself sees in the region: its size and first bytes.
fn observe(name: &str) -> (u64, Vec<u8>) {
    let bytes = std::fs::read(shm_path(name)).unwrap();
    (bytes.len() as u64, bytes[..MESSAGE.len()].to_vec())
}

#[test]
fn the_pair_hands_the_message_over_and_leaves_nothing() {
    let name = unique_name("pair");
    let writer = Writer::start(&[&name]);
    assert!(writer.wait_ready().contains("Shared Memory Data!"));

    let (size, head) = observe(&name);
    assert_eq!(size, 1024);
    assert_eq!(head, MESSAGE);

    reader(&[&name]).assert().success().stdout(LINE).stderr("");
    // A second reader while the writer still holds the region.
    reader(&[&name]).assert().success().stdout(LINE);

    let status = writer.release();
    assert!(status.success(), "writer exited with {status}");
    assert!(
        !shm_path(&name).exists(),
        "the name must be gone after release"
    );
}

#[test]
fn end_of_input_also_releases_the_writer() {
    let name = unique_name("eof");
    let writer = Writer::start(&[&name]);
    writer.wait_ready();
    assert!(writer.close_stdin().success());
    assert!(!shm_path(&name).exists());
}

#[test]
fn the_writer_holds_the_region_until_released() {
    let name = unique_name("hold");
    let mut writer = Writer::start(&[&name]);
    writer.wait_ready();
    // The reader has been and gone; the writer must still be there.
    reader(&[&name]).assert().success();
    assert!(
        writer.try_status().is_none(),
        "the writer left before release"
    );
    assert!(shm_path(&name).exists());
    assert!(writer.release().success());
}

#[test]
fn size_is_honoured_by_both_sides() {
    let name = unique_name("size");
    let writer = Writer::start(&[&name, "65536"]);
    writer.wait_ready();
    assert_eq!(observe(&name), (65536, MESSAGE.to_vec()));
    reader(&[&name, "65536"]).assert().success().stdout(LINE);
    assert!(writer.release().success());
}

#[test]
fn a_reader_told_a_larger_size_than_the_region_fails() {
    let name = unique_name("small");
    let writer = Writer::start(&[&name, "1024"]);
    writer.wait_ready();
    reader(&[&name, "4096"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(
            "1024 bytes, smaller than the 4096",
        ));
    assert!(writer.release().success());
}

#[test]
fn a_reader_without_a_region_fails_at_once_and_creates_nothing() {
    let name = unique_name("none");
    reader(&[&name])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("no shared memory region named"));
    assert!(
        !shm_path(&name).exists(),
        "the reader must not create the region"
    );
}

#[test]
fn a_writer_refuses_an_existing_region_and_leaves_it_alone() {
    let name = unique_name("taken");
    let stranger = shm_path(&name);
    std::fs::write(&stranger, b"somebody else's data").unwrap();
    let mut cmd = Command::new(bin("shm_writer"));
    cmd.arg(&name).write_stdin("\n").timeout(common::DEADLINE);
    cmd.assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(std::fs::read(&stranger).unwrap(), b"somebody else's data");
    std::fs::remove_file(stranger).unwrap();
}

#[test]
fn bad_arguments_are_refused_with_exit_2_and_leave_nothing() {
    let name = unique_name("args");
    let cases: &[(&[&str], &str)] = &[
        (&[&name, "0"], "at least 1 byte"),
        (&[&name, "lots"], "must be a number of bytes"),
        (&[&name, "-5"], "must be a number of bytes"),
        (&[&name, "19"], "too small"),
        (&["/bad/name"], "invalid region name"),
        (&["NoSlash"], "invalid region name"),
        (&[&name, "1024", "extra"], "unexpected argument"),
    ];
    for program in ["shm_writer", "shm_reader"] {
        for (args, why) in cases {
            Command::new(bin(program))
                .args(*args)
                .write_stdin("\n")
                .timeout(common::DEADLINE)
                .assert()
                .code(2)
                .stdout("")
                .stderr(predicate::str::contains(*why));
        }
    }
    assert!(!shm_path(&name).exists());
}

#[test]
fn a_256_mib_region_costs_the_writer_almost_no_memory() {
    const SIZE: u64 = 256 << 20;
    let name = unique_name("large");
    let writer = Writer::start(&[&name, &SIZE.to_string()]);
    writer.wait_ready();
    let meta = std::fs::metadata(shm_path(&name)).unwrap();
    assert_eq!(meta.len(), SIZE);
    // The writer is blocked on stdin now: its peak is final for this phase.
    let peak_kib = common::peak_rss_kib(writer.pid());
    let allocated_kib = meta.blocks() * 512 / 1024;
    assert!(peak_kib < 16 * 1024, "writer peak RSS {peak_kib} KiB");
    assert!(
        allocated_kib <= 64,
        "region has {allocated_kib} KiB allocated"
    );
    reader(&[&name, &SIZE.to_string()])
        .assert()
        .success()
        .stdout(LINE);
    assert!(writer.release().success());
    assert!(!shm_path(&name).exists());
}

/// The lab's own name, with no arguments at all. Every test anywhere in the
/// kit that uses this fixed name holds the same cross-process lock.
#[test]
// The same lock file labgrade takes for this name (see harness/src/lock.rs).
#[file_serial(MySharedMemory, path => "/tmp/labgrade-shm-MySharedMemory.lock")]
fn defaults_are_the_labs_name_and_size() {
    let name = "/MySharedMemory";
    let _ = std::fs::remove_file(shm_path(name)); // a leftover from elsewhere
    let writer = Writer::start(&[]);
    writer.wait_ready();
    wait_until("the default region", || shm_path(name).exists());
    assert_eq!(observe(name), (1024, MESSAGE.to_vec()));
    reader(&[]).assert().success().stdout(LINE);
    assert!(writer.release().success());
    assert!(!shm_path(name).exists());
}
