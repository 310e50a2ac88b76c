//! Configuration sources, as `kafka-server-start.sh` and the apache/kafka
//! image take them: a `server.properties` first argument, `--override
//! key=value`, and `KAFKA_*` environment variables. Bad keys or values make
//! the process exit non-zero and name the key, instead of starting with a
//! config the operator did not mean.

use std::time::{Duration, Instant};

use fjord_tests::broker::BrokerOptions;
use fjord_tests::{codes, error_name, Broker, Client};

/// How long a misconfigured broker may take to give up.
const EXIT_WITHIN: Duration = Duration::from_secs(15);

fn expect_rejected(opts: BrokerOptions, key: &str) {
    let report = Broker::run_until_exit(opts, EXIT_WITHIN);
    let status = report.status.unwrap_or_else(|| {
        panic!(
            "fjord kept running for {EXIT_WITHIN:?} with bad `{key}` (killed it)\nstderr:\n{}",
            report.stderr
        )
    });
    assert!(
        !status.success(),
        "fjord exited successfully with bad `{key}`\nstderr:\n{}",
        report.stderr
    );
    assert!(
        report.stderr.contains(key),
        "fjord's stderr does not name `{key}` ({status})\nstderr:\n{}\nstdout:\n{}",
        report.stderr,
        report.stdout
    );
}

#[test]
fn unknown_override_key_is_rejected() {
    expect_rejected(BrokerOptions::with_overrides(&[("no.such.key", "1")]), "no.such.key");
}

#[test]
fn malformed_override_value_is_rejected() {
    expect_rejected(
        BrokerOptions::with_overrides(&[("num.partitions", "abc")]),
        "num.partitions",
    );
}

#[test]
fn unknown_key_in_properties_file_is_rejected() {
    let opts = BrokerOptions {
        properties: Some("# a comment\nno.such.file.key=1\n".to_string()),
        ..BrokerOptions::default()
    };
    expect_rejected(opts, "no.such.file.key");
}

#[test]
fn malformed_value_in_properties_file_is_rejected() {
    let opts = BrokerOptions {
        properties: Some("message.max.bytes=ten\n".to_string()),
        ..BrokerOptions::default()
    };
    expect_rejected(opts, "message.max.bytes");
}

/// Ask Metadata for `topic` with auto-creation on until it has partitions
/// (Kafka first answers LEADER_NOT_AVAILABLE while it creates the topic),
/// and return how many.
fn auto_created_partitions(client: &mut Client, topic: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let md = client.metadata(Some(&[topic]), true);
        assert_eq!(md.topics.len(), 1, "metadata answered {} topics", md.topics.len());
        let t = &md.topics[0];
        match t.error_code {
            codes::NONE if !t.partitions.is_empty() => return t.partitions.len(),
            codes::NONE | codes::LEADER_NOT_AVAILABLE | codes::UNKNOWN_TOPIC_OR_PARTITION => {}
            other => panic!("auto-creating {topic}: {}", error_name(other)),
        }
        assert!(
            Instant::now() < deadline,
            "{topic} was not auto-created within 10 s: {md:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn properties_file_is_honoured() {
    let broker = Broker::start_with(BrokerOptions {
        properties: Some("# test config\nnum.partitions=4\nauto.create.topics.enable=true\n".to_string()),
        ..BrokerOptions::default()
    });
    let mut client = broker.client();
    assert_eq!(auto_created_partitions(&mut client, "cfg-file-topic"), 4);
}

/// `--override` wins over the file, as in `kafka-server-start.sh`.
#[test]
fn override_beats_properties_file() {
    let broker = Broker::start_with(BrokerOptions {
        properties: Some("num.partitions=4\n".to_string()),
        overrides: vec![("num.partitions".into(), "6".into())],
        ..BrokerOptions::default()
    });
    let mut client = broker.client();
    assert_eq!(auto_created_partitions(&mut client, "cfg-override-topic"), 6);
}

/// The apache/kafka image maps `KAFKA_NUM_PARTITIONS` to `num.partitions`.
#[test]
fn kafka_env_var_is_honoured() {
    let broker = Broker::start_with(BrokerOptions {
        env: vec![("KAFKA_NUM_PARTITIONS".into(), "5".into())],
        ..BrokerOptions::default()
    });
    let mut client = broker.client();
    assert_eq!(auto_created_partitions(&mut client, "cfg-env-topic"), 5);
}

/// The default is Kafka's: one partition, and auto-creation on.
#[test]
fn defaults_auto_create_one_partition() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    assert_eq!(auto_created_partitions(&mut client, "cfg-default-topic"), 1);
}
