//! `labgrade`, the grader for Module 03b. For now it only demonstrates the
//! reference pair handing a message over; grading arrives with issue 3.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};

use clap::{Parser, Subcommand};
use mmap_lab::contract::SHM_MESSAGE;
use mmap_lab::error::finish;
use mmap_lab::{RegionArgs, reader, writer};

#[derive(Parser)]
#[command(
    version,
    about = "Grader for the memory-mapped files and shared memory lab"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the reference writer and reader as two processes and show the handoff.
    Demo,
    /// The reference programs, for pairing with a learner's.
    #[command(hide = true, subcommand)]
    Ref(RefCmd),
}

#[derive(Subcommand)]
enum RefCmd {
    /// The reference shm_writer.
    Writer {
        args: Vec<String>,
        #[arg(long, default_value = SHM_MESSAGE)]
        message: String,
    },
    /// The reference shm_reader.
    Reader { args: Vec<String> },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Demo => demo(),
        Cmd::Ref(RefCmd::Writer { args, message }) => finish(
            "labgrade ref writer",
            RegionArgs::parse(args, &message).and_then(|args| {
                writer::run(
                    &args,
                    &message,
                    &mut std::io::stdin().lock(),
                    &mut std::io::stdout(),
                )
            }),
        ),
        Cmd::Ref(RefCmd::Reader { args }) => finish(
            "labgrade ref reader",
            RegionArgs::parse(args, SHM_MESSAGE)
                .and_then(|args| reader::run(&args, &mut std::io::stdout())),
        ),
    }
}

/// Starts the reference writer, waits for its ready line, runs the reader
/// while the writer holds the region, then releases the writer.
fn demo() -> ExitCode {
    let name = format!("/labgrade-demo-{}", std::process::id());
    let me = std::env::current_exe().expect("path of labgrade");
    println!("$ shm_writer {name}");
    let mut writer = Command::new(&me)
        .args(["ref", "writer", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut ready = String::new();
    BufReader::new(writer.stdout.take().unwrap())
        .read_line(&mut ready)
        .expect("read the writer's line");
    print!("  {ready}");
    println!("$ shm_reader {name}");
    let out = Command::new(&me)
        .args(["ref", "reader", &name])
        .output()
        .expect("run the reader");
    print!("  {}", String::from_utf8_lossy(&out.stdout));
    writer
        .stdin
        .take()
        .unwrap()
        .write_all(b"\n")
        .expect("release the writer");
    let status = writer.wait().expect("wait for the writer");
    println!("released the writer: {status}");
    if out.status.success() && status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
