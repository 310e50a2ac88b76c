//! What machine a result came from: CPU, memory, kernel, and the disk under the data directory.
//! Benchmarks from different machines are not comparable, so every result carries this.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may run on (what `nproc` prints).
    pub cpus: u64,
    /// `MemTotal` from /proc/meminfo.
    pub mem_total_bytes: u64,
    /// /proc/sys/kernel/osrelease.
    pub kernel: String,
    /// `PRETTY_NAME` from /etc/os-release.
    pub os: String,
    /// The client library the benchmark drives the broker with.
    pub client_library: String,
    /// The disk under the data directory, when the scenario was given one (`limits --dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<Disk>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    pub dir: String,
    /// The mount's source, e.g. `/dev/nvme0n1p2`.
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    /// /sys/block/DEV/device/model, when the device reports one.
    pub model: String,
    /// /sys/block/DEV/queue/rotational: `Some(true)` for a spinning disk.
    pub rotational: Option<bool>,
}

impl Machine {
    /// The machine this process runs on; fields it cannot read stay empty.
    pub fn current() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Machine {
            cpu_model: cpu_model(&read("/proc/cpuinfo")).unwrap_or_default(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(0),
            mem_total_bytes: meminfo_bytes(&read("/proc/meminfo"), "MemTotal").unwrap_or(0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os: os_pretty_name(&read("/etc/os-release")).unwrap_or_default(),
            client_library: format!("librdkafka {}", rdkafka::util::get_rdkafka_version().1),
            disk: None,
        }
    }

    /// One line for a report: "AMD EPYC 7B13, 2 CPUs, 23.5 GiB, Linux 6.1.0 (Debian 12)".
    pub fn summary(&self) -> String {
        format!(
            "{}, {} CPUs, {:.1} GiB RAM, Linux {} ({})",
            if self.cpu_model.is_empty() {
                "unknown CPU"
            } else {
                &self.cpu_model
            },
            self.cpus,
            self.mem_total_bytes as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.os
        )
    }
}

impl Disk {
    /// The disk holding `dir`, from /proc/mounts and /sys/block.
    pub fn of_dir(dir: &Path) -> Disk {
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut disk = Disk {
            dir: abs.display().to_string(),
            ..Disk::default()
        };
        if let Some((device, mount_point, fs_type)) = mount_of(&mounts, &abs.to_string_lossy()) {
            disk.device = device;
            disk.mount_point = mount_point;
            disk.fs_type = fs_type;
        }
        if let Some(block) = block_device_dir(&disk.device) {
            let read = |f: &str| std::fs::read_to_string(block.join(f)).map(|s| s.trim().to_string());
            disk.model = read("device/model").unwrap_or_default();
            disk.rotational = read("queue/rotational").ok().map(|r| r == "1");
        }
        disk
    }

    pub fn summary(&self) -> String {
        let kind = match self.rotational {
            Some(true) => "rotational",
            Some(false) => "non-rotational",
            None => "unknown kind",
        };
        let model = if self.model.is_empty() {
            String::new()
        } else {
            format!(" {}", self.model)
        };
        format!(
            "{} on {}{} ({}, {kind}) mounted at {}",
            self.dir, self.device, model, self.fs_type, self.mount_point
        )
    }
}

/// /sys/block/<disk> for a /dev node, walking from a partition up to its whole disk.
fn block_device_dir(device: &str) -> Option<std::path::PathBuf> {
    let name = device.strip_prefix("/dev/")?;
    let dev = std::fs::canonicalize(Path::new("/sys/class/block").join(name)).ok()?;
    if dev.join("partition").exists() {
        dev.parent().map(Path::to_path_buf)
    } else {
        Some(dev)
    }
}

/// `model name` of the first CPU in /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// A `/proc/meminfo`-style field (`MemTotal:  24570000 kB`) in bytes. Also reads the `VmRSS`
/// line of /proc/PID/status, which has the same shape.
pub fn meminfo_bytes(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.split(':').next() == Some(field))?;
    let mut words = line.split_once(':')?.1.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

fn os_pretty_name(os_release: &str) -> Option<String> {
    let line = os_release.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_string())
}

/// (device, mount point, fs type) of the mount that holds `path`: the longest mount point that
/// is `path` or one of its ancestors. Octal escapes (`\040` for space) are decoded.
pub fn mount_of(mounts: &str, path: &str) -> Option<(String, String, String)> {
    let mut best: Option<(String, String, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [device, mount_point, fs_type, ..] = f.as_slice() else {
            continue;
        };
        let mp = unescape_mount(mount_point);
        let contains =
            path == mp || mp == "/" || path.strip_prefix(mp.as_str()).is_some_and(|rest| rest.starts_with('/'));
        // Equal length: the later line is mounted on top of the earlier one.
        if contains && best.as_ref().is_none_or(|(_, b, _)| mp.len() >= b.len()) {
            best = Some((unescape_mount(device), mp, fs_type.to_string()));
        }
    }
    best
}

fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        let meminfo = "MemTotal:       24570000 kB\nMemFree:        1000 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(24_570_000 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_bytes(meminfo, "Mem"), None, "a prefix is not a field");
        assert_eq!(
            os_pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn finds_the_mount_of_a_path() {
        let mounts = "/dev/vda / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/vdb1 /data xfs rw 0 0\ntmpfs /data/tmp tmpfs rw 0 0\n/dev/vdc /my\\040disk ext4 rw 0 0\n";
        let m = |p| mount_of(mounts, p).map(|(d, mp, fs)| format!("{d} {mp} {fs}"));
        assert_eq!(m("/work/x").as_deref(), Some("/dev/vda / ext4"));
        assert_eq!(m("/data").as_deref(), Some("/dev/vdb1 /data xfs"));
        assert_eq!(m("/data/logs").as_deref(), Some("/dev/vdb1 /data xfs"));
        assert_eq!(
            m("/database").as_deref(),
            Some("/dev/vda / ext4"),
            "/data is no ancestor of /database"
        );
        assert_eq!(m("/data/tmp/a").as_deref(), Some("tmpfs /data/tmp tmpfs"));
        assert_eq!(m("/my disk/f").as_deref(), Some("/dev/vdc /my disk ext4"));
    }
}
