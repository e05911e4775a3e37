//! The lab's contract in constants and two small rules: how `NAME` and `SIZE`
//! are read from the command line, and how text is stored in a mapping
//! (the message, then a NUL, as C's `strcpy` leaves it).

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::platform;

/// Exercise 1: the file `mapfile` creates in its working directory.
pub const FILE_NAME: &str = "datafile.bin";
/// Exercise 1: the size `datafile.bin` must have.
pub const FILE_SIZE: u64 = 1024;
/// Exercise 1: what `mapfile` writes at offset 0.
pub const FILE_MESSAGE: &str = "Hello, Memory-Mapped File!";
/// Exercise 1: the start of the line `mapfile` prints.
pub const FILE_LINE_PREFIX: &str = "Data from memory-mapped file: ";

/// Exercise 2: what the writer puts at offset 0 of the region.
pub const SHM_MESSAGE: &str = "Shared Memory Data!";
/// Exercise 2: the start of the line the reader prints.
pub const SHM_LINE_PREFIX: &str = "Data from shared memory: ";
/// Exercise 2: the region's size when none is given.
pub const DEFAULT_SIZE: u64 = 1024;

/// `[NAME [SIZE]]`, the arguments of `shm_writer` and `shm_reader`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionArgs {
    /// The region's name, e.g. `/MySharedMemory` or `Local\MySharedMemory`.
    pub name: String,
    /// The region's size in bytes.
    pub size: u64,
}

impl Default for RegionArgs {
    fn default() -> Self {
        RegionArgs {
            name: platform::DEFAULT_NAME.to_string(),
            size: DEFAULT_SIZE,
        }
    }
}

impl RegionArgs {
    /// Reads `[NAME [SIZE]]` (the program's name already removed).
    ///
    /// The name is checked against the platform's rules and the size must be
    /// a positive number of bytes with room for `message` and its NUL.
    pub fn parse<I, S>(args: I, message: &str) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut args = args.into_iter().map(Into::into);
        let mut parsed = RegionArgs::default();
        if let Some(name) = args.next() {
            parsed.name = name;
        }
        if let Some(size) = args.next() {
            parsed.size = parse_size(&size)?;
        }
        if let Some(extra) = args.next() {
            return Err(Error::usage(format!(
                "unexpected argument {extra:?} (usage: [NAME [SIZE]])"
            )));
        }
        platform::check_name(&parsed.name)?;
        let needed = message.len() as u64 + 1;
        if parsed.size < needed {
            return Err(Error::usage(format!(
                "SIZE {} is too small: the message and its NUL need {needed} bytes",
                parsed.size
            )));
        }
        Ok(parsed)
    }
}

fn parse_size(text: &str) -> Result<u64> {
    match text.parse::<u64>() {
        Ok(0) => Err(Error::usage("SIZE must be at least 1 byte, not 0")),
        Ok(size) => Ok(size),
        Err(_) => Err(Error::usage(format!(
            "SIZE must be a number of bytes, not {text:?}"
        ))),
    }
}

/// Stores `message` and a NUL at the start of `mapping`, like `strcpy`.
///
/// Only the bytes written are touched, so only the first page of a large
/// region ever becomes real memory. Panics if the mapping is too small;
/// callers check sizes first.
pub fn put_message(mapping: &mut [u8], message: &str) {
    let bytes = message.as_bytes();
    mapping[..bytes.len()].copy_from_slice(bytes);
    mapping[bytes.len()] = 0;
}

/// The text at the start of `mapping`: its bytes up to the first NUL (or
/// all of them if there is none), like `printf("%s")` but never past the end.
pub fn text_until_nul(mapping: &[u8]) -> Cow<'_, str> {
    let end = mapping
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(mapping.len());
    String::from_utf8_lossy(&mapping[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RegionArgs> {
        RegionArgs::parse(args.iter().copied(), SHM_MESSAGE)
    }

    #[test]
    fn defaults_apply_when_no_arguments_are_given() {
        assert_eq!(parse(&[]).unwrap(), RegionArgs::default());
    }

    #[test]
    fn sizes_must_be_positive_numbers_with_room_for_the_message() {
        let name = platform::DEFAULT_NAME;
        assert_eq!(parse(&[name, "4096"]).unwrap().size, 4096);
        assert_eq!(parse(&[name, "20"]).unwrap().size, 20);
        for bad in ["0", "-1", "1k", "", "19"] {
            let err = parse(&[name, bad]).unwrap_err();
            assert!(err.is_usage(), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn a_third_argument_is_refused() {
        assert!(parse(&[platform::DEFAULT_NAME, "1024", "x"]).is_err());
    }

    #[test]
    fn text_stops_at_the_first_nul_or_the_end() {
        let mut region = [b'x'; 32];
        put_message(&mut region, "hi");
        assert_eq!(text_until_nul(&region), "hi");
        assert_eq!(text_until_nul(b"abc"), "abc");
        assert_eq!(text_until_nul(b"\0abc"), "");
    }
}
