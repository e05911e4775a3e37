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
        }
    };
}

fixtures! {
    c_sample_port => "c-sample-port",
    c_no_ftruncate => "c-no-ftruncate",
    c_writer_exits_at_once => "c-writer-exits-at-once",
    c_reader_fixed_string => "c-reader-fixed-string",
    c_reader_creates_region => "c-reader-creates-region",
    c_reader_does_not_compile => "c-reader-does-not-compile",
    c_writer_polite_signal => "c-writer-polite-signal",
}
