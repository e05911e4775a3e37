//! Exercise 1: mapfile, judged from one run in an empty directory and from
//! datafile.bin as the grader reads it afterwards.

use super::{
    Judging, Outcomes, Part, Verdict, bounded, ending_hint, ending_summary, escaped, has_line,
};
use crate::experiments::{FileSeen, GraderError, Plan};
use crate::observe::watch;
use crate::rubric::CheckConfig;
use crate::rubric::fill;

fn expected_line(j: &Judging) -> String {
    let f = &j.rubric.file;
    fill(&f.line, "", f.size, &f.message)
}

/// What every file check judges: mapfile's one run.
pub fn plans(_: &Judging, _: &CheckConfig, _: &mut fastrand::Rng) -> Vec<Plan> {
    vec![Plan::Mapfile]
}

/// `file.uses_mmap` needs the trace too: nothing to run where there is none.
pub fn traced_plans(j: &Judging, _: &CheckConfig, _: &mut fastrand::Rng) -> Vec<Plan> {
    match j.untraceable {
        Some(_) => Vec::new(),
        None => vec![Plan::Mapfile],
    }
}

/// `file.runs`: exit 0 in time, without a signal.
pub fn runs(j: &Judging, _: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    let out = got.mapfile(0)?;
    let run = &out.run;
    let runs = vec![run.record.clone()];
    let timeout = j.rubric.programs.mapfile.timeout;
    if let Some(disk) = run
        .limits
        .iter()
        .find(|l| matches!(l, crate::runner::Limit::Disk { .. }))
    {
        return Ok(Verdict::fail("mapfile filled the grading's storage")
            .expected("datafile.bin (1024 bytes) and little else in the working directory")
            .observed(format!("{}; {disk}", run.ending.describe()))
            .maybe_hint(ending_hint(run, Part::Mapfile))
            .runs(runs));
    }
    if run.ending.success() {
        return Ok(Verdict::pass(format!("{} exited 0 in time", run.record.argv[0])).runs(runs));
    }
    let mut hint = ending_hint(run, Part::Mapfile);
    if hint.is_none() && !run.stderr.text().trim().is_empty() {
        hint = Some("it reported an error on stderr (shown above): a system call failed".into());
    }
    Ok(
        Verdict::fail(format!("mapfile did not exit 0: {}", run.ending.describe()))
            .expected(format!(
                "exit 0 within {}",
                humantime::format_duration(timeout)
            ))
            .observed(ending_summary(run))
            .maybe_hint(hint)
            .runs(runs),
    )
}

/// `file.output`: the required line on stdout.
pub fn output(j: &Judging, _: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    let out = got.mapfile(0)?;
    let line = expected_line(j);
    let stdout = out.run.stdout.text();
    let runs = vec![out.run.record.clone()];
    let mode = j.rubric.output.mode;
    let message = &j.rubric.file.message;
    if has_line(&stdout, &line, mode, message) {
        return Ok(Verdict::pass("printed the line").runs(runs));
    }
    let stderr = out.run.stderr.text();
    let hint = if has_line(&stderr, &line, mode, message) {
        "the line went to stderr; print it on stdout".to_string()
    } else if stdout.contains(message.as_str()) {
        format!("the message is there, but the line must read exactly: {line}")
    } else if stdout.contains(&line.chars().take(20).collect::<String>()) {
        "the label is there but not the message: print the text read back from the mapping"
            .to_string()
    } else {
        format!("print this line, read back through the mapping: {line}")
    };
    Ok(Verdict::fail("the required line is missing from stdout")
        .expected(line)
        .observed(bounded(&stdout))
        .hint(hint)
        .runs(runs))
}

/// `file.contents`: datafile.bin as the grader reads it.
pub fn contents(j: &Judging, _: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    let out = got.mapfile(0)?;
    let f = &j.rubric.file;
    let runs = vec![out.run.record.clone()];
    let expected = format!(
        "{} of exactly {} bytes: {} and a NUL at offset 0, zeros after",
        f.name,
        f.size,
        escaped(f.message.as_bytes())
    );
    let (size, bytes) =
        match &out.file {
            FileSeen::Missing { others } => {
                let observed = if others.is_empty() {
                    "mapfile left its working directory empty".to_string()
                } else {
                    format!("no {}; the directory held: {}", f.name, others.join(", "))
                };
                return Ok(Verdict::fail(format!("no {} after mapfile ran", f.name))
                    .expected(expected)
                    .observed(observed)
                    .hint(format!(
                        "create {} in the working directory (O_CREAT), with this exact name",
                        f.name
                    ))
                    .runs(runs));
            }
            FileSeen::NotAFile { what } => {
                return Ok(Verdict::fail(format!("{} is {what}, not a file", f.name))
                .expected(expected)
                .observed(format!("{} is {what}; the grader neither follows nor reads it", f.name))
                .hint(format!(
                    "create {} as a plain file (open with O_CREAT), map it and leave it in place",
                    f.name
                ))
                .runs(runs));
            }
            FileSeen::Present { size, bytes, .. } => (*size, bytes),
        };
    if size != f.size {
        let hint = if size == 0 {
            "the file is empty: give it its size with ftruncate(fd, 1024) before mmap".to_string()
        } else {
            format!(
                "size it with ftruncate(fd, {}) before mmap, and nothing else",
                f.size
            )
        };
        return Ok(
            Verdict::fail(format!("{} is {size} bytes, not {}", f.name, f.size))
                .expected(expected)
                .observed(format!(
                    "{size} bytes, starting {}",
                    escaped(&bytes[..bytes.len().min(40)])
                ))
                .hint(hint)
                .runs(runs),
        );
    }
    let message = f.message.as_bytes();
    let n = message.len();
    if bytes.len() < n || &bytes[..n] != message {
        let hint = if bytes.iter().all(|&b| b == 0) {
            "the file is all zeros: the message never reached it; map it MAP_SHARED, so stores go to the file".to_string()
        } else {
            "write the message at offset 0 of the mapping".to_string()
        };
        return Ok(Verdict::fail("the message is not at offset 0")
            .expected(expected)
            .observed(format!(
                "starts {}",
                escaped(&bytes[..bytes.len().min(n + 8)])
            ))
            .hint(hint)
            .runs(runs));
    }
    if let Some(pos) = bytes[n..].iter().position(|&b| b != 0) {
        let at = n + pos;
        let what = if pos == 0 {
            "no NUL after the message".to_string()
        } else {
            format!("a non-zero byte at offset {at}")
        };
        return Ok(Verdict::fail(what)
            .expected(expected)
            .observed(format!("from offset {n}: {}", escaped(&bytes[n..(at + 12).min(bytes.len())])))
            .hint("copy the message with its NUL (strcpy, or memcpy of strlen + 1) and leave the rest of the file untouched")
            .runs(runs));
    }
    Ok(Verdict::pass(format!("{} bytes: the message, a NUL, then zeros", f.size)).runs(runs))
}

/// `file.uses_mmap`: the message went in and came back through mappings.
pub fn uses_mmap(j: &Judging, _: &CheckConfig, got: &Outcomes) -> Result<Verdict, GraderError> {
    if let Some(why) = j.untraceable.as_deref() {
        return Ok(Verdict::unavailable(format!(
            "system calls cannot be watched here ({why})"
        )));
    }
    let out = got.mapfile(0)?;
    let runs = vec![out.run.record.clone()];
    let Some(trace) = &out.trace else {
        return Ok(Verdict::error("the trace of mapfile could not be read"));
    };
    let Some(io) = &out.run.io else {
        return Ok(Verdict::unavailable(
            "reads and writes cannot be watched here (the kernel's seccomp notifications are missing)",
        )
        .runs(runs));
    };
    let name = j.rubric.file.name.clone();
    let suffix = format!("/{name}");
    let is_file = |p: &str| p.ends_with(&suffix);
    let named = |p: &str| p == name || p.ends_with(&suffix);
    let maps = trace.mmaps(&is_file);
    // The file by inode: a read through another name, or a write to a file
    // renamed into place, is still a read or write of it.
    let (read, data_writes) = match &out.file {
        FileSeen::Present { id, .. } => (watch::bytes_read(io, *id), watch::data_writes(io, *id)),
        FileSeen::Missing { .. } | FileSeen::NotAFile { .. } => (0, Vec::new()),
    };
    let observed = format!(
        "mmap of {name}: {}; bytes read with read(): {read}; calls writing data into it: {}",
        describe_maps(&maps),
        calls(&data_writes)
    );
    let expected = "a MAP_SHARED, writable mapping that the message is stored through, and the message read back from a mapping, with no read() or write() of it".to_string();
    let fail = |message: &str, hint: &str| {
        Ok(Verdict::fail(message)
            .expected(expected.clone())
            .observed(observed.clone())
            .hint(hint)
            .runs(runs.clone()))
    };
    if trace.probed_tracing() {
        return fail(
            "mapfile checked whether it was being traced (ptrace): what it does when watched cannot be trusted as evidence",
            "do not call ptrace; do the same thing whether or not anyone watches",
        );
    }
    if !data_writes.is_empty() {
        return fail(
            &format!(
                "the message went into {name} with {}, not through a mapping",
                calls(&data_writes)
            ),
            "store the message into the mapped memory (strcpy into the pointer mmap returned); fwrite/fprintf/write/pwrite go around the mapping",
        );
    }
    if !maps.iter().any(|m| m.shared && m.writable) {
        if maps.iter().any(|m| m.writable) {
            return fail(
                "the file was mapped MAP_PRIVATE",
                "MAP_PRIVATE stores stay in a private copy and never reach the file; use MAP_SHARED",
            );
        }
        return fail(
            "the file was never mapped writable and shared",
            "map it with PROT_READ|PROT_WRITE and MAP_SHARED",
        );
    }
    // The message and its NUL must be within what the mapping reaches.
    let need = j.rubric.file.message.len() as u64 + 1;
    if !maps.iter().any(|m| m.stores_cover(need)) {
        let widest = maps
            .iter()
            .filter(|m| m.shared && m.writable)
            .map(|m| (m.offset, m.len))
            .max_by_key(|(_, len)| *len)
            .unwrap_or((0, 0));
        return fail(
            &format!(
                "the shared writable mapping covers {} bytes from offset {}: the message and its NUL are bytes 0 to {need}",
                widest.1, widest.0
            ),
            &format!(
                "map the file from offset 0 for its whole size ({} bytes), then store the message at the start of the mapping",
                j.rubric.file.size
            ),
        );
    }
    if let Some((call, new)) = trace.new_names(&named).first() {
        return fail(
            &format!("mapfile gave {name} a second name ({call} to {new})"),
            "read the file back through a mapping of the file itself, not under another name",
        );
    }
    if read > 0 {
        return fail(
            "the file was read back with read(), not through a mapping",
            "map the file again (PROT_READ) and print from the mapped memory instead of read()/fread()",
        );
    }
    Ok(Verdict::pass(format!(
        "mapped shared and writable; {}",
        describe_maps(&maps)
    ))
    .runs(runs))
}

/// System call names as a learner reads them: "write(), pwrite64()".
pub fn calls(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|n| format!("{n}()"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn describe_maps(maps: &[crate::observe::trace::Mapping]) -> String {
    if maps.is_empty() {
        return "none".to_string();
    }
    maps.iter()
        .map(|m| {
            let prot = match (m.readable, m.writable) {
                (true, true) => "PROT_READ|PROT_WRITE",
                (false, true) => "PROT_WRITE",
                (true, false) => "PROT_READ",
                (false, false) => "PROT_NONE",
            };
            let kind = if m.shared {
                "MAP_SHARED"
            } else {
                "MAP_PRIVATE"
            };
            format!("{} bytes {prot} {kind}", m.len)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
