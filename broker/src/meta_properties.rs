//! `meta.properties`, the file Kafka keeps at the top of each log directory (`version`,
//! `cluster.id`, `node.id`, `directory.id`). Fjord keeps nothing of its own in it, but Kafka's
//! tools read it: `kafka-metadata-quorum.sh add-controller` takes the new controller's
//! directory id from there. It is written at every start, keeping the directory id it had.

use std::path::Path;

/// The file's name.
pub const FILE: &str = "meta.properties";

/// Writes `dir/meta.properties` for this node and returns its directory id (the one already
/// there, or a new one).
pub fn write(dir: &Path, cluster_id: &str, node_id: i32) -> std::io::Result<String> {
    let path = dir.join(FILE);
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let directory_id = value(&existing, "directory.id").unwrap_or_else(fjord_controller::new_kafka_id);
    let text = format!(
        "#\n# Written by Fjord in Kafka's format, for Kafka's tools.\n\
         cluster.id={cluster_id}\ndirectory.id={directory_id}\nnode.id={node_id}\nversion=1\n"
    );
    if text != existing {
        // Whole or not at all: a crash mid-write leaves the old file.
        let tmp = dir.join(format!("{FILE}.tmp"));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(directory_id)
}

/// The cluster id `dir/meta.properties` names, if the file is there and names one.
pub fn cluster_id(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    value(&text, "cluster.id")
}

/// The value of `key` in Java properties text (`key=value` lines; `#` starts a comment).
fn value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_id_survives_a_rewrite_and_the_rest_follows_the_node() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = write(dir.path(), "c1", 4).expect("write");
        assert_eq!(first.len(), 22);
        let text = std::fs::read_to_string(dir.path().join(FILE)).expect("read");
        assert_eq!(value(&text, "cluster.id").as_deref(), Some("c1"));
        assert_eq!(cluster_id(dir.path()).as_deref(), Some("c1"));
        assert_eq!(value(&text, "node.id").as_deref(), Some("4"));
        assert_eq!(value(&text, "version").as_deref(), Some("1"));
        assert_eq!(write(dir.path(), "c1", 4).expect("again"), first);
        assert_eq!(write(dir.path(), "c2", 5).expect("changed"), first);
        let text = std::fs::read_to_string(dir.path().join(FILE)).expect("read");
        assert_eq!(value(&text, "node.id").as_deref(), Some("5"));
    }
}
