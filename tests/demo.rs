//! The README's first command: the reference pair handing a message over.

use assert_cmd::Command;
use predicates::prelude::*;

#[test]
fn the_demo_hands_the_message_over_and_releases_the_writer() {
    Command::new(mmap_lab_kit::labgrade())
        .arg("demo")
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Data from shared memory: Shared Memory Data!",
        ))
        .stdout(predicate::str::contains("exit status: 0"));
}
