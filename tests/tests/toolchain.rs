//! Every cargo build of this repository uses the same C and C++ compilers whether or not ccache
//! is installed, and whether it runs through `make` or not: cargo fingerprints the value of CC
//! for crates built with cc-rs, so a first build without ccache (`make run` on a fresh machine
//! installs it) and a second one with it compiled RocksDB's C++ twice. The compilers are fixed
//! in `.cargo/config.toml` to the wrappers in `tools/`, which use ccache when it is there.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn cargo_config_fixes_the_compilers_to_the_wrappers() {
    let config = std::fs::read_to_string(repo().join(".cargo/config.toml")).expect(".cargo/config.toml");
    for (var, wrapper) in [("CC", "tools/cc"), ("CXX", "tools/c++")] {
        let line = config
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var} =")))
            .unwrap_or_else(|| panic!("{var} is not set in .cargo/config.toml"));
        assert!(
            line.contains(&format!("value = \"{wrapper}\"")) && line.contains("relative = true"),
            "{line}"
        );
        // Without force, a CC in the caller's environment (or an older Makefile's) would win.
        assert!(line.contains("force = true"), "{line}");
        assert!(repo().join(wrapper).is_file(), "{wrapper} is missing");
    }
    // Nothing else sets them: the Makefile used to choose by whether ccache existed.
    let makefile = std::fs::read_to_string(repo().join("Makefile")).expect("Makefile");
    assert!(
        !makefile
            .lines()
            .any(|l| l.contains("export CC") || l.contains("export CXX")),
        "the Makefile sets the compilers again"
    );
}

/// A directory holding only a `gcc`/`g++` stand-in that records that it ran and, if asked, a
/// `ccache` that records it and runs the rest of its command line; used as the whole PATH.
fn fake_path(with_ccache: bool, log: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("write stand-in");
        let mut perm = std::fs::metadata(&p).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).expect("chmod");
    };
    for compiler in ["gcc", "g++"] {
        script(compiler, format!("#!/bin/sh\necho {compiler} >> {}\n", log.display()));
    }
    if with_ccache {
        script(
            "ccache",
            format!("#!/bin/sh\necho ccache >> {}\nexec \"$@\"\n", log.display()),
        );
    }
    dir
}

/// What ran when the wrapper was called with this PATH.
fn ran(wrapper: &str, with_ccache: bool) -> Vec<String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("ran.log");
    let path = fake_path(with_ccache, &log);
    let status = Command::new(repo().join(wrapper))
        .arg("--version")
        .env_clear()
        .env("PATH", path.path())
        .status()
        .expect("running the wrapper");
    assert!(status.success());
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn the_wrappers_use_ccache_exactly_when_it_is_installed() {
    assert_eq!(ran("tools/cc", false), ["gcc"]);
    assert_eq!(ran("tools/cc", true), ["ccache", "gcc"]);
    assert_eq!(ran("tools/c++", false), ["g++"]);
    assert_eq!(ran("tools/c++", true), ["ccache", "g++"]);
}
