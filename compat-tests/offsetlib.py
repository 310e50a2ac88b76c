"""ListOffsets, watermarks and DeleteRecords through each client that has them, with one
result shape for all: (offset, timestamp) pairs, (low, high) watermarks, and KafkaCallError."""

import re

from adminlib import JAVA_EXCEPTIONS, KafkaCallError
from clientlib import java, kcat


def offsets_for_times(client, bootstrap, topic, partition, ts):
    """(offset, timestamp) of the first record with timestamp >= ts, or None."""
    if client == "confluent":
        from confluent_kafka import Consumer, TopicPartition

        from clientlib import confluent_consumer_conf

        c = Consumer(confluent_consumer_conf(bootstrap))
        try:
            (r,) = c.offsets_for_times([TopicPartition(topic, partition, ts)], timeout=20)
            assert r.error is None, r.error
            # librdkafka gives only the offset; -1 (OFFSET_END) means none.
            return None if r.offset < 0 else (r.offset, None)
        finally:
            c.close()
    if client == "kafka-python":
        from kafka import TopicPartition

        from clientlib import kafka_python_consumer

        c = kafka_python_consumer(bootstrap)
        try:
            r = c.offsets_for_times({TopicPartition(topic, partition): ts})[TopicPartition(topic, partition)]
            return None if r is None else (r.offset, r.timestamp)
        finally:
            c.close()
    if client == "aiokafka":
        import asyncio

        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def go():
            c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
            await c.start()
            try:
                r = (await c.offsets_for_times({TopicPartition(topic, partition): ts}))[TopicPartition(topic, partition)]
                return None if r is None else (r.offset, r.timestamp)
            finally:
                await c.stop()

        return asyncio.run(go())
    if client == "java":
        (l,) = java("offsets-for-times", "--bootstrap", bootstrap, "--topic", topic, "--partition", partition,
                    "--timestamp", ts)
        return None if l["offset"] is None else (l["offset"], l["timestamp"])
    if client == "kcat":
        out = kcat("-Q", "-b", bootstrap, "-t", f"{topic}:{partition}:{ts}").stdout.decode()
        m = re.search(rf"{re.escape(topic)} \[{partition}\] offset (-?\d+)", out)
        assert m, out
        return None if int(m.group(1)) < 0 else (int(m.group(1)), None)
    raise ValueError(client)



def watermarks(client, bootstrap, topic, partition):
    """(low, high) watermark of one partition."""
    if client == "confluent":
        from confluent_kafka import Consumer, TopicPartition

        from clientlib import confluent_consumer_conf

        c = Consumer(confluent_consumer_conf(bootstrap))
        try:
            return tuple(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=20, cached=False))
        finally:
            c.close()
    if client == "kafka-python":
        from kafka import TopicPartition

        from clientlib import kafka_python_consumer

        c = kafka_python_consumer(bootstrap)
        tp = TopicPartition(topic, partition)
        try:
            return c.beginning_offsets([tp])[tp], c.end_offsets([tp])[tp]
        finally:
            c.close()
    if client == "aiokafka":
        import asyncio

        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def go():
            c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
            await c.start()
            tp = TopicPartition(topic, partition)
            try:
                return (await c.beginning_offsets([tp]))[tp], (await c.end_offsets([tp]))[tp]
            finally:
                await c.stop()

        return asyncio.run(go())
    if client == "java":
        (l,) = java("watermarks", "--bootstrap", bootstrap, "--topic", topic, "--partition", partition)
        return l["low"], l["high"]
    if client == "kcat":
        # -2 is OFFSET_BEGINNING, -1 is OFFSET_END in librdkafka's logical offsets; one query per
        # kcat run, as kcat keeps only one query per partition.
        def query(logical):
            out = kcat("-Q", "-b", bootstrap, "-t", f"{topic}:{partition}:{logical}").stdout.decode()
            m = re.search(rf"{re.escape(topic)} \[{partition}\] offset (-?\d+)", out)
            assert m, out
            return int(m.group(1))

        return query(-2), query(-1)
    raise ValueError(client)



def list_offsets_admin(client, bootstrap, topic, partition, spec):
    """Admin ListOffsets: spec is 'earliest', 'latest', 'max-timestamp' or a timestamp.
    Returns (offset, timestamp), offset -1 when there is none."""
    if client == "java":
        (l,) = java("list-offsets", "--bootstrap", bootstrap, "--topic", topic, "--partition", partition, "--spec", spec)
        return l["offset"], l["timestamp"]
    if client == "confluent":
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import AdminClient, OffsetSpec

        a = AdminClient({"bootstrap.servers": bootstrap})
        os_ = {"earliest": OffsetSpec.earliest(), "latest": OffsetSpec.latest(),
               "max-timestamp": OffsetSpec.max_timestamp()}.get(spec) or OffsetSpec.for_timestamp(spec)
        tp = TopicPartition(topic, partition)
        r = a.list_offsets({tp: os_}, request_timeout=20)[tp].result(30)
        return r.offset, r.timestamp
    if client == "kafka-python":
        from kafka import TopicPartition
        from kafka.admin import KafkaAdminClient, OffsetSpec

        a = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            os_ = {"earliest": OffsetSpec.EARLIEST, "latest": OffsetSpec.LATEST,
                   "max-timestamp": OffsetSpec.MAX_TIMESTAMP}.get(spec, spec)
            tp = TopicPartition(topic, partition)
            r = a.list_partition_offsets({tp: os_})[tp]
            return r.offset, r.timestamp
        finally:
            a.close()
    raise ValueError(client)



def delete_records(client, bootstrap, topic, partition, before):
    """DeleteRecords; returns the new low watermark or raises KafkaCallError."""
    if client == "confluent":
        from confluent_kafka import KafkaException, TopicPartition
        from confluent_kafka.admin import AdminClient

        a = AdminClient({"bootstrap.servers": bootstrap})
        (fut,) = a.delete_records([TopicPartition(topic, partition, before)], request_timeout=20, operation_timeout=20).values()
        try:
            return fut.result(30).low_watermark
        except KafkaException as e:
            raise KafkaCallError(e.args[0].code(), e.args[0].name(), e.args[0].str()) from e
    if client == "kafka-python":
        from kafka import TopicPartition
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        a = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            r = a.delete_records({TopicPartition(topic, partition): before})[TopicPartition(topic, partition)]
            if r["error_code"]:
                raise KafkaCallError(r["error_code"], "delete_records", str(r))
            return r["low_watermark"]
        except KafkaError as e:
            raise KafkaCallError(getattr(e, "errno", None), type(e).__name__, str(e)) from e
        finally:
            a.close()
    if client == "java":
        out = java("admin-delete-records", "--bootstrap", bootstrap, "--topic", topic, "--partition", partition,
                   "--before-offset", before, expect_error=None)
        if "error" in out[-1]:
            raise KafkaCallError(JAVA_EXCEPTIONS.get(out[-1]["error"]), out[-1]["error"], out[-1]["message"])
        return out[-1]["low_watermark"]
    raise ValueError(client)
