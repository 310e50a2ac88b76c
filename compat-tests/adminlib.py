"""The admin calls the tests make, over confluent-kafka, kafka-python and the Java AdminClient.

Each `Admin` has the same methods; a broker error comes back as `KafkaCallError` carrying the Kafka
error code (`TOPIC_ALREADY_EXISTS` = 36, ...), whatever the client's own exception type, so a test
can assert one code for all three clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from clientlib import java

# Kafka protocol error codes (org.apache.kafka.common.protocol.Errors).
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
UNSUPPORTED_VERSION = 35
# Consumer groups.
COORDINATOR_NOT_AVAILABLE = 15
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79
GROUP_SUBSCRIBED_TO_TOPIC = 86

#: The Java client's exception for each code (it reports classes, not codes).
JAVA_EXCEPTIONS = {
    "OffsetOutOfRangeException": OFFSET_OUT_OF_RANGE,
    "UnknownTopicOrPartitionException": UNKNOWN_TOPIC_OR_PARTITION,
    "RecordTooLargeException": MESSAGE_TOO_LARGE,
    "InvalidTopicException": INVALID_TOPIC_EXCEPTION,
    "TopicExistsException": TOPIC_ALREADY_EXISTS,
    "InvalidPartitionsException": INVALID_PARTITIONS,
    "InvalidReplicationFactorException": INVALID_REPLICATION_FACTOR,
    "InvalidConfigurationException": INVALID_CONFIG,
    "UnsupportedVersionException": UNSUPPORTED_VERSION,
    "CoordinatorNotAvailableException": COORDINATOR_NOT_AVAILABLE,
    "IllegalGenerationException": ILLEGAL_GENERATION,
    "InconsistentGroupProtocolException": INCONSISTENT_GROUP_PROTOCOL,
    "UnknownMemberIdException": UNKNOWN_MEMBER_ID,
    "RebalanceInProgressException": REBALANCE_IN_PROGRESS,
    "GroupNotEmptyException": NON_EMPTY_GROUP,
    "GroupIdNotFoundException": GROUP_ID_NOT_FOUND,
    "GroupSubscribedToTopicException": GROUP_SUBSCRIBED_TO_TOPIC,
}

ADMINS = ("confluent", "kafka-python", "java")


class KafkaCallError(Exception):
    def __init__(self, code: int | None, name: str, message: str = ""):
        super().__init__(f"{name} (code {code}): {message}")
        self.code = code
        self.name = name


@dataclass(frozen=True)
class ConfigValue:
    value: str | None
    source: str  # Kafka's ConfigSource name: DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG, ...
    is_default: bool


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: str | None
    leaders: dict[int, int]  # partition -> leader node id


def make_admin(client: str, bootstrap: str):
    return {"confluent": ConfluentAdmin, "kafka-python": KafkaPythonAdmin, "java": JavaAdmin}[client](bootstrap)


class ConfluentAdmin:
    def __init__(self, bootstrap):
        from confluent_kafka.admin import AdminClient

        # Kept for the object's life: librdkafka cancels the futures of a destroyed client.
        self.a = AdminClient({"bootstrap.servers": bootstrap})

    def _wait(self, fut):
        from confluent_kafka import KafkaException

        try:
            return fut.result(timeout=30)
        except KafkaException as e:
            err = e.args[0]
            raise KafkaCallError(err.code(), err.name(), err.str()) from e

    def create_topic(self, name, partitions, configs=None, validate_only=False):
        from confluent_kafka.admin import NewTopic

        nt = NewTopic(name, partitions, 1, config={k: str(v) for k, v in (configs or {}).items()})
        self._wait(self.a.create_topics([nt], validate_only=validate_only, operation_timeout=20, request_timeout=25)[name])

    def delete_topic(self, name):
        self._wait(self.a.delete_topics([name], operation_timeout=20, request_timeout=25)[name])

    def create_partitions(self, name, total):
        from confluent_kafka.admin import NewPartitions

        self._wait(self.a.create_partitions([NewPartitions(name, total)], operation_timeout=20, request_timeout=25)[name])

    def list_topics(self) -> set[str]:
        return set(self.a.list_topics(timeout=10).topics)

    def describe_topic(self, name) -> TopicInfo:
        from confluent_kafka import TopicCollection

        d = self._wait(self.a.describe_topics(TopicCollection([name]), request_timeout=25)[name])
        return TopicInfo(d.name, str(d.topic_id), {p.id: p.leader.id for p in d.partitions})

    def describe_configs(self, name) -> dict[str, ConfigValue]:
        from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

        (fut,) = self.a.describe_configs([ConfigResource(ResourceType.TOPIC, name)], request_timeout=25).values()
        return {k: ConfigValue(e.value, ConfigSource(e.source).name, e.is_default) for k, e in self._wait(fut).items()}

    def alter_configs(self, name, set_=None, delete=()):
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

        entries = [ConfigEntry(k, str(v), incremental_operation=AlterConfigOpType.SET) for k, v in (set_ or {}).items()]
        entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in delete]
        (fut,) = self.a.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)]).values()
        self._wait(fut)


class KafkaPythonAdmin:
    def __init__(self, bootstrap):
        from kafka.admin import KafkaAdminClient

        self.a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=25000)

    def _call(self, fn, *args, **kwargs):
        from kafka.errors import KafkaError

        try:
            return fn(*args, **kwargs)
        except KafkaError as e:
            raise KafkaCallError(getattr(e, "errno", None), type(e).__name__, str(e)) from e

    def create_topic(self, name, partitions, configs=None, validate_only=False):
        from kafka.admin import NewTopic

        nt = NewTopic(name, partitions, 1, topic_configs={k: str(v) for k, v in (configs or {}).items()})
        return self._call(self.a.create_topics, [nt], validate_only=validate_only)

    def delete_topic(self, name):
        self._call(self.a.delete_topics, [name])

    def create_partitions(self, name, total):
        from kafka.admin import NewPartitions

        self._call(self.a.create_partitions, {name: NewPartitions(total)})

    def list_topics(self) -> set[str]:
        return set(self._call(self.a.list_topics))

    def describe_topic(self, name) -> TopicInfo:
        (d,) = self._call(self.a.describe_topics, [name])
        if d["error_code"]:
            raise KafkaCallError(d["error_code"], "describe_topics", str(d))
        return TopicInfo(d["name"], d["topic_id"], {p["partition_index"]: p["leader_id"] for p in d["partitions"]})

    def describe_configs(self, name) -> dict[str, ConfigValue]:
        from kafka.admin import ConfigResource, ConfigResourceType

        res = self._call(self.a.describe_configs, [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
        return {k: ConfigValue(v["value"], v["config_source"], v["config_source"] == "DEFAULT_CONFIG")
                for k, v in res["topic"][name].items()}

    def alter_configs(self, name, set_=None, delete=()):
        from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType

        configs = {k: (AlterConfigOp.SET, str(v)) for k, v in (set_ or {}).items()}
        configs.update({k: (AlterConfigOp.DELETE, None) for k in delete})
        res = self._call(self.a.alter_configs, [ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)],
                         incremental=True)
        status = res["topic"][name]
        if status != "OK":
            raise KafkaCallError(getattr(status, "errno", None), type(status).__name__, str(status))


class JavaAdmin:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def _run(self, *args):
        out = java(*args, "--bootstrap", self.bootstrap, expect_error=None)
        if out and "error" in out[-1]:
            err = out[-1]
            raise KafkaCallError(JAVA_EXCEPTIONS.get(err["error"]), err["error"], err["message"])
        return out

    def create_topic(self, name, partitions, configs=None, validate_only=False):
        args = ["admin-create-topic", "--topic", name, "--partitions", partitions]
        for k, v in (configs or {}).items():
            args += ["--config", f"{k}={v}"]
        if validate_only:
            args.append("--validate-only")
        return self._run(*args)[0]

    def delete_topic(self, name):
        self._run("admin-delete-topic", "--topic", name)

    def create_partitions(self, name, total):
        self._run("admin-create-partitions", "--topic", name, "--total", total)

    def list_topics(self) -> set[str]:
        return set(self._run("admin-list-topics")[0]["topics"])

    def describe_topic(self, name) -> TopicInfo:
        d = self._run("admin-describe-topic", "--topic", name)[0]
        return TopicInfo(d["name"], d["topic_id"], {p["partition"]: p["leader"] for p in d["partitions"]})

    def describe_configs(self, name) -> dict[str, ConfigValue]:
        d = self._run("admin-describe-configs", "--topic", name)[0]["configs"]
        return {k: ConfigValue(v["value"], v["source"], v["default"]) for k, v in d.items()}

    def alter_configs(self, name, set_=None, delete=()):
        args = ["admin-alter-configs", "--topic", name]
        for k, v in (set_ or {}).items():
            args += ["--set", f"{k}={v}"]
        for k in delete:
            args += ["--delete", k]
        self._run(*args)
