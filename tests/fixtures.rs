//! Every fixture submission, graded end to end and compared, verdict by
//! verdict, with the expected.toml beside it.

use std::collections::BTreeSet;

use mmap_lab_kit::assert_fixture;

macro_rules! fixtures {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                assert_fixture($name);
            }
        )*

        #[test]
        fn every_fixture_directory_has_a_test() {
            let listed: BTreeSet<&str> = [$($name),*].into_iter().collect();
            let on_disk: BTreeSet<String> = std::fs::read_dir(mmap_lab_kit::fixture(""))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
            assert_eq!(listed, on_disk, "list each fixture in tests/fixtures.rs");
            let table = std::fs::read_to_string(mmap_lab_kit::fixture("../README.md")).unwrap();
            for name in &listed {
                assert!(table.contains(&format!("| `{name}` |")), "{name} has no row in fixtures/README.md");
            }
        }
    };
}

fixtures! {
    c_extra_output => "c-extra-output",
    c_file_map_private => "c-file-map-private",
    c_file_no_nul => "c-file-no-nul",
    c_file_prints_only => "c-file-prints-only",
    c_file_read_syscall => "c-file-read-syscall",
    c_file_stdio => "c-file-stdio",
    c_file_wrong_size => "c-file-wrong-size",
    c_missing_program => "c-missing-program",
    c_names_differ => "c-names-differ",
    c_no_ftruncate => "c-no-ftruncate",
    c_pair_plain_file => "c-pair-plain-file",
    c_reader_copies_heap => "c-reader-copies-heap",
    c_reader_creates_region => "c-reader-creates-region",
    c_reader_does_not_compile => "c-reader-does-not-compile",
    c_reader_errors_on_stdout => "c-reader-errors-on-stdout",
    c_reader_fixed_string => "c-reader-fixed-string",
    c_reader_leaks_semaphore => "c-reader-leaks-semaphore",
    c_reader_ignores_size => "c-reader-ignores-size",
    c_reader_waits_forever => "c-reader-waits-forever",
    c_region_too_small => "c-region-too-small",
    c_sample_order => "c-sample-order",
    c_sample_port => "c-sample-port",
    c_warnings_only => "c-warnings-only",
    c_writer_crashes => "c-writer-crashes",
    c_writer_exits_at_once => "c-writer-exits-at-once",
    c_writer_memset => "c-writer-memset",
    c_writer_never_exits => "c-writer-never-exits",
    c_writer_no_unlink => "c-writer-no-unlink",
    c_writer_polite_signal => "c-writer-polite-signal",
    c_writer_sleeps => "c-writer-sleeps",
    cmake_sample_port => "cmake-sample-port",
    cpp_reader_string_copy => "cpp-reader-string-copy",
    make_bin_dir => "make-bin-dir",
    make_fails => "make-fails",
    rust_libc_memmap2 => "rust-libc-memmap2",
    rust_writer_fills_region => "rust-writer-fills-region",
}

/// Every check of the default rubric must fail for some fixture and pass
/// for another, or the corpus does not really test it.
#[test]
fn every_check_fails_somewhere_and_passes_somewhere() {
    let mut seen: std::collections::BTreeMap<String, (bool, bool)> = Default::default();
    for entry in std::fs::read_dir(mmap_lab_kit::fixture("")).unwrap() {
        let path = entry.unwrap().path().join("expected.toml");
        let expected: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (id, want) in expected["checks"].as_table().unwrap() {
            let status = want
                .as_str()
                .or_else(|| want.get("status").and_then(|s| s.as_str()))
                .unwrap();
            let entry = seen.entry(id.clone()).or_default();
            entry.0 |= status == "failed";
            entry.1 |= status == "passed";
        }
    }
    let rubric = std::fs::read_to_string(mmap_lab_kit::fixture("../../grading.toml")).unwrap();
    let rubric: toml::Table = toml::from_str(&rubric).unwrap();
    for check in rubric["check"].as_array().unwrap() {
        let id = check["id"].as_str().unwrap();
        assert_eq!(
            seen.get(id),
            Some(&(true, true)),
            "{id}: (fails somewhere, passes somewhere)"
        );
    }
}
