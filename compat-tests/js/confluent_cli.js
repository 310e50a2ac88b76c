'use strict'
// @confluentinc/kafka-javascript (librdkafka underneath) through its KafkaJS-compatible API,
// driven by test_js_clients.py:
//
//   node confluent_cli.js produce|consume|admin < input.json
//
// Each command reads one JSON object on stdin and prints JSON lines (see common.js).

const { KafkaJS, librdkafkaVersion } = require('@confluentinc/kafka-javascript')
const { emit, unhex, headersToObject, recordLine, describeError, sleep, main } = require('./common')

const { Kafka, CompressionTypes, ConsumerGroupStates, logLevel } = KafkaJS
// The library reports group states as numbers; the tests compare Kafka's names.
const stateName = n => Object.keys(ConsumerGroupStates).find(k => ConsumerGroupStates[k] === n) || String(n)

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.SNAPPY,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

// The default logger writes through console.info, onto stdout, where only JSON lines may go.
const stderrLogger = {
  level: process.env.FJORD_JS_DEBUG ? logLevel.DEBUG : logLevel.WARN,
  setLogLevel(l) {
    this.level = l
  },
  namespace() {
    return this
  },
  write(label, l, message, extra) {
    if (this.level >= l) process.stderr.write(JSON.stringify({ level: label, message, ...extra }) + '\n')
  },
  error(m, e) { this.write('ERROR', logLevel.ERROR, m, e) },
  warn(m, e) { this.write('WARN', logLevel.WARN, m, e) },
  info(m, e) { this.write('INFO', logLevel.INFO, m, e) },
  debug(m, e) { this.write('DEBUG', logLevel.DEBUG, m, e) },
}

function client(input) {
  return new Kafka({
    kafkaJS: {
      clientId: 'fjord-compat-confluent-js',
      brokers: [input.bootstrap],
      logger: stderrLogger,
      logLevel: stderrLogger.level,
    },
  })
}

// An empty Buffer as a header value goes out as a null value: src/producer.cc hands librdkafka
// node::Buffer::Data() of it, a null pointer for zero bytes, and librdkafka writes a header
// with a null pointer as null (-1). An empty string goes out as an empty value, so empty values
// are passed as ''. (Same against any broker; no upstream report found.)
const emptyAsString = v => (Buffer.isBuffer(v) && v.length === 0 ? '' : v)

function toMessage(r) {
  const headers = headersToObject(r.headers)
  for (const k of Object.keys(headers)) {
    headers[k] = Array.isArray(headers[k]) ? headers[k].map(emptyAsString) : emptyAsString(headers[k])
  }
  const m = { key: unhex(r.key), value: unhex(r.value), headers }
  if (r.partition !== null && r.partition !== undefined) m.partition = r.partition
  if (r.timestamp !== null && r.timestamp !== undefined) m.timestamp = String(r.timestamp)
  return m
}

// {bootstrap, topic, codec, idempotent, records}. One send() per record, all awaited together
// (the library's advice: librdkafka batches them), so each record gets its own offset back.
// Lines: {version}, {acks: [{partition, offset}, ...]} in record order.
async function produce(input) {
  emit({ version: librdkafkaVersion })
  const producer = client(input).producer({
    kafkaJS: {
      acks: -1,
      idempotent: !!input.idempotent,
      compression: CODECS[input.codec || 'none'],
      allowAutoTopicCreation: false,
    },
    'linger.ms': 5,
  })
  await producer.connect()
  try {
    const sent = await Promise.all(input.records.map(r => producer.send({ topic: input.topic, messages: [toMessage(r)] })))
    emit({ acks: sent.map(([md]) => ({ partition: md.partition, offset: Number(md.baseOffset), errorCode: md.errorCode })) })
  } finally {
    await producer.disconnect()
  }
}

// {bootstrap, topic, group, count, timeoutMs, readUncommitted}: joins the group, reads until
// `count` records arrived, commits the next offset of each partition it read explicitly
// (commitOffsets, auto commit off), then leaves. Lines: {record}..., {committed}, {done}.
async function consume(input) {
  const consumer = client(input).consumer({
    kafkaJS: {
      groupId: input.group,
      fromBeginning: true,
      autoCommit: false,
      sessionTimeout: 10000,
      heartbeatInterval: 500,
      readUncommitted: !!input.readUncommitted,
      allowAutoTopicCreation: false,
    },
  })
  const read = {}
  let got = 0
  let reached
  const reachedCount = new Promise(resolve => (reached = resolve))
  await consumer.connect()
  await consumer.subscribe({ topics: [input.topic] })
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      emit(recordLine(topic, partition, message))
      read[partition] = Number(message.offset) + 1
      got += 1
      if (got >= input.count) reached()
    },
  })
  const timedOut = await Promise.race([reachedCount.then(() => false), sleep(input.timeoutMs || 30000).then(() => true)])
  if (!timedOut) {
    const offsets = Object.entries(read).map(([p, o]) => ({ topic: input.topic, partition: Number(p), offset: String(o) }))
    await consumer.commitOffsets(offsets)
    const committed = await consumer.committed(offsets.map(({ topic, partition }) => ({ topic, partition })), 10000)
    emit({ committed: Object.fromEntries(committed.map(c => [c.partition, Number(c.offset)])) })
  }
  await consumer.disconnect()
  emit({ done: { count: got, timedOut } })
}

const ADMIN_OPS = {
  createTopics: (admin, o) =>
    admin.createTopics({
      topics: o.topics.map(t => ({
        topic: t.topic,
        numPartitions: t.partitions,
        replicationFactor: 1,
        configEntries: Object.entries(t.configs || {}).map(([name, value]) => ({ name, value: String(value) })),
      })),
      timeout: 15000,
    }),
  deleteTopics: (admin, o) => admin.deleteTopics({ topics: o.topics, timeout: 15000 }).then(() => true),
  listTopics: admin => admin.listTopics(),
  fetchTopicMetadata: async (admin, o) =>
    (await admin.fetchTopicMetadata({ topics: o.topics })).map(t => ({
      name: t.name,
      partitions: t.partitions
        .map(p => ({ partition: p.partitionId, errorCode: p.partitionErrorCode, leader: p.leader, replicas: p.replicas, isr: p.isr }))
        .sort((a, b) => a.partition - b.partition),
    })),
  fetchTopicOffsets: async (admin, o) =>
    (await admin.fetchTopicOffsets(o.topic))
      .map(p => ({ partition: p.partition, low: Number(p.low), high: Number(p.high) }))
      .sort((a, b) => a.partition - b.partition),
  listGroups: async admin => (await admin.listGroups()).groups.map(g => ({ groupId: g.groupId, protocolType: g.protocolType, state: stateName(g.state) })),
  describeGroups: async (admin, o) =>
    (await admin.describeGroups(o.groups)).groups.map(g => ({
      groupId: g.groupId,
      state: stateName(g.state),
      protocolType: g.protocolType,
      protocol: g.protocol,
      members: g.members.map(m => ({ clientId: m.clientId, assignment: m.assignment })),
    })),
  fetchOffsets: async (admin, o) =>
    (await admin.fetchOffsets({ groupId: o.group, topics: o.topics })).map(t => ({
      topic: t.topic,
      partitions: t.partitions.map(p => ({ partition: p.partition, offset: Number(p.offset) })).sort((a, b) => a.partition - b.partition),
    })),
}

// {bootstrap, ops: [{op, ...}]}: one line each, {op, result} or {op, error}.
async function admin(input) {
  const a = client(input).admin()
  await a.connect()
  try {
    for (const o of input.ops) {
      try {
        emit({ op: o.op, result: (await ADMIN_OPS[o.op](a, o)) ?? null })
      } catch (e) {
        emit({ op: o.op, error: describeError(e) })
      }
    }
  } finally {
    await a.disconnect()
  }
}

main({ produce, consume, admin })
