//! Every fixture submission, graded end to end and compared, verdict by
//! verdict, with the expected.toml beside it: one test per directory under
//! fixtures/submissions, named after it.

use std::process::ExitCode;

use mmap_lab_kit::suite::{GRADING, Need, Suite};
use mmap_lab_kit::{assert_fixture, fixture};

fn main() -> ExitCode {
    let mut suite = Suite::new()
        .test(
            "every_fixture_has_a_row_in_the_table",
            &[],
            every_fixture_has_a_row_in_the_table,
        )
        .test(
            "every_check_fails_somewhere_and_passes_somewhere",
            &[],
            every_check_fails_somewhere_and_passes_somewhere,
        );
    for name in fixture_names() {
        let mut needs = GRADING.to_vec();
        for (file, tool) in [("CMakeLists.txt", "cmake"), ("Cargo.toml", "cargo")] {
            if fixture(&name).join(file).is_file() {
                needs.push(Need::Tool(tool));
            }
        }
        // Windows hand-ins (their names say so) need mingw-w64 and Wine.
        if name.starts_with("win-") {
            needs.push(Need::Tool("wine"));
        }
        let test = name.replace('-', "_");
        suite = suite.case(&test, &needs, move || assert_fixture(&name));
    }
    suite.run()
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn every_fixture_has_a_row_in_the_table() {
    let table = std::fs::read_to_string(fixture("../README.md")).unwrap();
    for name in fixture_names() {
        assert!(
            table.contains(&format!("| `{name}` |")),
            "{name} has no row in fixtures/README.md (scripts/fixture-table writes it)"
        );
    }
}

/// Every check of the default rubric must fail for some fixture and pass
/// for another, or the corpus does not really test it.
fn every_check_fails_somewhere_and_passes_somewhere() {
    let rubric = std::fs::read_to_string(fixture("../../grading.toml")).unwrap();
    let rubric: toml::Table = toml::from_str(&rubric).unwrap();
    let ids: Vec<&str> = rubric["check"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let mut seen: std::collections::BTreeMap<String, (bool, bool)> = Default::default();
    for name in fixture_names() {
        let path = fixture(&name).join("expected.toml");
        let expected: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let listed = expected["checks"].as_table().unwrap();
        let others = expected.get("others").and_then(|o| o.as_str());
        for id in &ids {
            let status = match listed.get(*id) {
                Some(want) => want
                    .as_str()
                    .or_else(|| want.get("status").and_then(|s| s.as_str()))
                    .unwrap(),
                None => others.unwrap_or(""),
            };
            let entry = seen.entry(id.to_string()).or_default();
            entry.0 |= status == "failed";
            entry.1 |= status == "passed";
        }
    }
    for id in ids {
        assert_eq!(
            seen.get(id),
            Some(&(true, true)),
            "{id}: (fails somewhere, passes somewhere)"
        );
    }
}
