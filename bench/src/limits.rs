//! `limits`: what this machine can do at best, to put the brokers' numbers in proportion.
//! Three measurements, all in `metrics` (the top-level rates stay 0, as nothing here is a
//! record):
//!
//! * `disk_write_mb_per_s`: sequential 1 MiB writes to a new file in `--dir`, no sync. This
//!   mostly measures the page cache, which is where Kafka's appends go too.
//!   `disk_write_synced_mb_per_s` adds the one `fdatasync` at the end.
//! * `disk_write_fdatasync_mb_per_s`: the same with `fdatasync` after every MiB, the ceiling
//!   for a broker that syncs before acknowledging.
//! * `loopback_tcp_mb_per_s`: one thread writing to another over 127.0.0.1, the ceiling for
//!   any client-broker transfer on this machine.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::client::XorShift;
use crate::machine::Disk;
use crate::result::{per_s, ScenarioResult, BYTES_PER_MB};
use crate::Common;

/// Unit of every write: a typical broker flush, and the "per MiB" of the fdatasync test.
const CHUNK_BYTES: usize = 1 << 20;
/// Loopback writes: the socket buffer size Kafka clients commonly get.
const SOCKET_WRITE_BYTES: usize = 256 << 10;

#[derive(Args, Debug, Clone, Serialize)]
pub struct LimitsArgs {
    /// Directory on the disk the brokers' data lives on; a temporary file is written there.
    #[arg(long)]
    pub dir: PathBuf,
    /// Bytes per measurement (1 MiB .. 64 GiB).
    #[arg(long, default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range((1 << 20)..=(64 << 30)))]
    pub bytes: u64,
}

/// Writes `bytes` in CHUNK_BYTES pieces; returns (bytes written, write seconds, final sync
/// seconds). With `sync_each`, every chunk is followed by fdatasync (counted in the write time).
fn write_file(
    path: &Path,
    bytes: u64,
    chunk: &[u8],
    sync_each: bool,
    deadline: Instant,
) -> std::io::Result<(u64, f64, f64)> {
    let mut f: File = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let start = Instant::now();
    let mut written = 0u64;
    while written < bytes && Instant::now() < deadline {
        let n = chunk.len().min(usize::try_from(bytes - written).unwrap_or(usize::MAX));
        f.write_all(&chunk[..n])?;
        if sync_each {
            f.sync_data()?;
        }
        written += n as u64;
    }
    let write_s = start.elapsed().as_secs_f64();
    let sync_start = Instant::now();
    f.sync_data()?;
    Ok((written, write_s, sync_start.elapsed().as_secs_f64()))
}

/// Streams `bytes` from this thread to another over loopback TCP; returns (bytes the reader
/// got, seconds from the first write until the reader saw the end).
fn loopback(bytes: u64, chunk: &[u8], deadline: Instant) -> std::io::Result<(u64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut got = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(got),
                n => got += n as u64,
            }
        }
    });
    let mut w = TcpStream::connect(addr)?;
    let start = Instant::now();
    let mut sent = 0u64;
    'outer: while sent < bytes {
        for piece in chunk.chunks(SOCKET_WRITE_BYTES) {
            if sent >= bytes || Instant::now() >= deadline {
                break 'outer;
            }
            let n = piece.len().min(usize::try_from(bytes - sent).unwrap_or(usize::MAX));
            w.write_all(&piece[..n])?;
            sent += n as u64;
        }
    }
    w.shutdown(Shutdown::Write)?;
    let got = reader
        .join()
        .map_err(|_| std::io::Error::other("reader thread panicked"))??;
    Ok((got, start.elapsed().as_secs_f64()))
}

pub fn run(c: &Common, a: &LimitsArgs, r: &mut ScenarioResult) -> Result<(), String> {
    let start = Instant::now();
    std::fs::create_dir_all(&a.dir).map_err(|e| format!("{}: {e}", a.dir.display()))?;
    if let Some(m) = r.machine.as_mut() {
        m.disk = Some(Disk::of_dir(&a.dir));
    }
    // Random bytes: a compressing or deduplicating filesystem gets no free ride.
    let mut rng = XorShift(0xD15C);
    let chunk: Vec<u8> = (0..CHUNK_BYTES).map(|_| rng.next() as u8).collect();
    let path = a.dir.join(format!(".fjord-bench-limits-{}.tmp", std::process::id()));
    let mb = |b: u64, s: f64| per_s(b as f64 / BYTES_PER_MB, s);
    let capped = |b: u64, r: &mut ScenarioResult, what: &str| {
        if b < a.bytes {
            r.note(format!("{what}: stopped at the --max-s cap after {b} bytes"));
        }
    };

    let outcome = (|| -> Result<(), String> {
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let (n, write_s, sync_s) = write_file(&path, a.bytes, &chunk, false, c.deadline).map_err(io)?;
        r.metric("disk_write_mb_per_s", mb(n, write_s));
        r.metric("disk_write_synced_mb_per_s", mb(n, write_s + sync_s));
        r.metric("disk_final_sync_s", sync_s);
        capped(n, r, "disk write");
        std::fs::remove_file(&path).map_err(io)?;

        let (n, write_s, _) = write_file(&path, a.bytes, &chunk, true, c.deadline).map_err(io)?;
        r.metric("disk_write_fdatasync_mb_per_s", mb(n, write_s));
        r.metric(
            "fdatasync_per_mib_ms",
            per_s(write_s * 1000.0, n as f64 / CHUNK_BYTES as f64),
        );
        capped(n, r, "disk write with fdatasync");
        std::fs::remove_file(&path).map_err(io)?;

        let (n, secs) = loopback(a.bytes, &chunk, c.deadline).map_err(|e| format!("loopback: {e}"))?;
        r.metric("loopback_tcp_mb_per_s", mb(n, secs));
        capped(n, r, "loopback");
        Ok(())
    })();
    let _ = std::fs::remove_file(&path); // already gone unless a step failed
    r.bytes = a.bytes;
    r.duration_s = start.elapsed().as_secs_f64();
    outcome
}
