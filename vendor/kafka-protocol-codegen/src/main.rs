//! kafka-protocol's message generator, reading Kafka's message schemas from a directory.
//!
//! Upstream clones apache/kafka and checks out a pinned commit; Fjord takes the schemas from the
//! kafka-clients jar of the Kafka release it follows instead (`vendor/regenerate.sh` extracts
//! them), so that moving to a new Kafka release is a version bump and needs no git access.
//!
//! Usage: protocol_codegen <schema dir> <crate src/messages dir>

use failure::Error;
use std::fs;
use std::path::PathBuf;

pub mod generate_messages;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} <schema dir> <crate src/messages dir>", args[0]);
        std::process::exit(2);
    }
    let schema_dir = PathBuf::from(&args[1]);
    let output_path = fs::canonicalize(&args[2])?;
    let messages_module_dir = output_path.to_str().unwrap();

    // Clear the output directory: a message Kafka dropped must not survive as a stale file.
    for file in fs::read_dir(messages_module_dir)? {
        let file = file?;
        if file.file_type()?.is_file() {
            let path = file.path();
            if path.extension() == Some("rs".as_ref()) {
                fs::remove_file(path)?;
            }
        }
    }

    let mut input_file_paths = Vec::new();
    for file in fs::read_dir(&schema_dir)? {
        let file = file?;
        if file.file_type()?.is_file() {
            let path = file.path();
            if path.extension() == Some("json".as_ref()) {
                input_file_paths.push(path);
            }
        }
    }
    if input_file_paths.is_empty() {
        eprintln!("no *.json schemas in {}", schema_dir.display());
        std::process::exit(1);
    }

    generate_messages::run(messages_module_dir, input_file_paths)?;
    Ok(())
}
