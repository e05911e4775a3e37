//! The machine-readable report: the model as JSON (schema in the README).

use std::io::{self, Write};

use super::{Format, Report};

pub struct Json;

impl Format for Json {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &report.visible())?;
        writeln!(out)
    }
}
