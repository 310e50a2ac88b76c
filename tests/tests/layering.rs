//! The crates depend one way only: protocol <- storage <- controller <- broker. A crate that
//! reached up (storage using the controller, say) would tie the layers the cluster work must
//! keep apart; this test reads every manifest of the workspace and fails on such an edge,
//! in any dependency table (normal, dev, build, or target-specific).

use std::path::Path;

/// Each crate with the Fjord crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("protocol", &[]),
    ("storage", &["fjord-protocol"]),
    ("controller", &["fjord-protocol", "fjord-storage"]),
    ("broker", &["fjord-protocol", "fjord-storage", "fjord-controller"]),
    // The integration tests see the broker only through its socket and command line.
    ("tests", &[]),
    // Outside the workspace: the load generator is a client; the fuzz targets exercise the
    // wire layer.
    ("bench", &[]),
    ("fuzz", &["fjord-protocol"]),
];

/// The Fjord crates named in a manifest's dependency tables.
fn fjord_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let table = line.trim_matches(|c| c == '[' || c == ']');
            in_deps = table.ends_with("dependencies") || table.contains("dependencies.");
            // `[dependencies.fjord-x]` names the crate in the header itself.
            if let Some(name) = table.rsplit('.').next().filter(|n| n.starts_with("fjord-")) {
                out.push(name.to_string());
            }
            continue;
        }
        if !in_deps {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default().trim_matches('"');
        if name.starts_with("fjord-") {
            out.push(name.to_string());
        }
    }
    out
}

#[test]
fn crates_depend_only_on_the_layers_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut violations = Vec::new();
    for (dir, allowed) in ALLOWED {
        let path = root.join(dir).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for dep in fjord_dependencies(&manifest) {
            if !allowed.contains(&dep.as_str()) {
                violations.push(format!("{dir} depends on {dep}"));
            }
        }
    }
    assert!(violations.is_empty(), "layering broken: {violations:?}");
}

#[test]
fn every_workspace_member_is_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace manifest");
    let members = workspace
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line");
    for member in members.split('"').skip(1).step_by(2) {
        assert!(
            ALLOWED.iter().any(|(dir, _)| dir == &member),
            "workspace member {member} has no place in the layering table"
        );
    }
}

#[test]
fn the_parser_sees_every_way_of_naming_a_dependency() {
    let manifest = r#"
[package]
name = "fjord-storage"

[dependencies]
fjord-protocol.workspace = true
fjord-controller = { path = "../controller" }
tokio = "1"

[dev-dependencies]
"fjord-broker" = "0.1"

[target.'cfg(unix)'.build-dependencies.fjord-x]
path = "../x"
"#;
    assert_eq!(
        fjord_dependencies(manifest),
        ["fjord-protocol", "fjord-controller", "fjord-broker", "fjord-x"]
    );
}
