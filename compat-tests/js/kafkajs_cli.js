'use strict'
// KafkaJS (pure JavaScript) driven by test_js_clients.py:
//
//   node kafkajs_cli.js produce|consume|admin|txn < input.json
//
// Each command reads one JSON object on stdin and prints JSON lines (see common.js).

const {
  Kafka,
  logLevel,
  CompressionTypes,
  CompressionCodecs,
  Partitioners,
  AssignerProtocol,
} = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const LZ4Codec = require('kafkajs-lz4')
const zstd = require('zstd-napi')
const { emit, unhex, headersToObject, recordLine, describeError, sleep, main } = require('./common')

// KafkaJS itself reads gzip only; the others are plugins registered by the application.
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
// @kafkajs/zstd 0.1.1, the codec KafkaJS's documentation names, does not build on Node >= 18:
// its only dependency, cppzst 2.0.6, compiles with -std=c++11 and Node's headers need C++17.
// This is that package's codec (compress the encoder's buffer, decompress a buffer) over
// zstd-napi, which builds.
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress(encoder) {
    return zstd.compress(encoder.buffer)
  },
  async decompress(buffer) {
    return zstd.decompress(buffer)
  },
})

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

// KafkaJS logs through console by default, i.e. onto stdout, where only JSON lines may go.
const stderrLogger = () => ({ namespace, label, log }) => {
  process.stderr.write(JSON.stringify({ level: label, namespace, ...log }) + '\n')
}

function client(input) {
  return new Kafka({
    clientId: 'fjord-compat-kafkajs',
    brokers: [input.bootstrap],
    logLevel: process.env.FJORD_JS_DEBUG ? logLevel.DEBUG : logLevel.WARN,
    logCreator: stderrLogger,
    connectionTimeout: 5000,
    requestTimeout: 15000,
  })
}

function toMessages(records) {
  return records.map(r => {
    const m = { key: unhex(r.key), value: unhex(r.value), headers: headersToObject(r.headers) }
    if (r.partition !== null && r.partition !== undefined) m.partition = r.partition
    if (r.timestamp !== null && r.timestamp !== undefined) m.timestamp = String(r.timestamp)
    return m
  })
}

const metadataLine = md =>
  md.map(m => ({ topic: m.topicName, partition: m.partition, errorCode: m.errorCode, baseOffset: Number(m.baseOffset) }))

// {bootstrap, topic, codec, acks, idempotent, records: [{key, value, headers, partition, timestamp}]}
// One send() for all records: KafkaJS makes one batch per partition of them.
async function produce(input) {
  const producer = client(input).producer({
    idempotent: !!input.idempotent,
    maxInFlightRequests: input.idempotent ? 5 : 1,
    allowAutoTopicCreation: false,
    // The Java client's murmur2 partitioner (KafkaJS's default since 2.0).
    createPartitioner: Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  try {
    const md = await producer.send({
      topic: input.topic,
      acks: input.acks === undefined ? -1 : input.acks,
      compression: CODECS[input.codec || 'none'],
      messages: toMessages(input.records),
    })
    emit({ sent: metadataLine(md) })
  } finally {
    await producer.disconnect()
  }
}

function decodeMember(m) {
  const assignment = m.memberAssignment && m.memberAssignment.length
    ? AssignerProtocol.MemberAssignment.decode(m.memberAssignment)
    : null
  const metadata = m.memberMetadata && m.memberMetadata.length
    ? AssignerProtocol.MemberMetadata.decode(m.memberMetadata)
    : null
  return {
    memberId: m.memberId,
    clientId: m.clientId,
    assignment: assignment && assignment.assignment,
    subscription: metadata && metadata.topics,
  }
}

// Admin operations, each {op, ...arguments}; one line each: {op, result} or {op, error}.
const ADMIN_OPS = {
  createTopics: (admin, o) =>
    admin.createTopics({
      topics: o.topics.map(t => ({
        topic: t.topic,
        numPartitions: t.partitions,
        replicationFactor: 1,
        configEntries: Object.entries(t.configs || {}).map(([name, value]) => ({ name, value: String(value) })),
      })),
      waitForLeaders: true,
      timeout: 15000,
    }),
  deleteTopics: (admin, o) => admin.deleteTopics({ topics: o.topics, timeout: 15000 }),
  listTopics: admin => admin.listTopics(),
  fetchTopicMetadata: async (admin, o) => {
    const md = await admin.fetchTopicMetadata({ topics: o.topics })
    return md.topics.map(t => ({
      name: t.name,
      partitions: t.partitions
        .map(p => ({ partition: p.partitionId, errorCode: p.partitionErrorCode, leader: p.leader, replicas: p.replicas, isr: p.isr }))
        .sort((a, b) => a.partition - b.partition),
    }))
  },
  fetchTopicOffsets: async (admin, o) =>
    (await admin.fetchTopicOffsets(o.topic))
      .map(p => ({ partition: p.partition, low: Number(p.low), high: Number(p.high) }))
      .sort((a, b) => a.partition - b.partition),
  describeConfigs: async (admin, o) => {
    const r = await admin.describeConfigs({
      resources: [{ type: 2 /* TOPIC */, name: o.topic, configNames: o.names }],
      includeSynonyms: false,
    })
    const out = {}
    for (const e of r.resources[0].configEntries) out[e.configName] = e.configValue
    return out
  },
  listGroups: async admin => (await admin.listGroups()).groups,
  describeGroups: async (admin, o) =>
    (await admin.describeGroups(o.groups)).groups.map(g => ({
      groupId: g.groupId,
      errorCode: g.errorCode,
      state: g.state,
      protocolType: g.protocolType,
      protocol: g.protocol,
      members: g.members.map(decodeMember),
    })),
  fetchOffsets: async (admin, o) =>
    (await admin.fetchOffsets({ groupId: o.group, topics: o.topics })).map(t => ({
      topic: t.topic,
      partitions: t.partitions
        .map(p => ({ partition: p.partition, offset: Number(p.offset), metadata: p.metadata }))
        .sort((a, b) => a.partition - b.partition),
    })),
  deleteGroups: (admin, o) => admin.deleteGroups(o.groups),
  describeCluster: admin => admin.describeCluster(),
  createPartitions: (admin, o) => admin.createPartitions({ topicPartitions: [{ topic: o.topic, count: o.count }], timeout: 15000 }),
  fetchTopicOffsetsByTimestamp: async (admin, o) =>
    (await admin.fetchTopicOffsetsByTimestamp(o.topic, o.timestamp))
      .map(p => ({ partition: p.partition, offset: Number(p.offset) }))
      .sort((a, b) => a.partition - b.partition),
  setOffsets: (admin, o) =>
    admin.setOffsets({ groupId: o.group, topic: o.topic, partitions: o.partitions.map(p => ({ partition: p.partition, offset: String(p.offset) })) }),
  deleteTopicRecords: (admin, o) =>
    admin.deleteTopicRecords({ topic: o.topic, partitions: o.partitions.map(p => ({ partition: p.partition, offset: String(p.offset) })) }),
}

async function runAdminOps(admin, ops) {
  for (const o of ops) {
    try {
      emit({ op: o.op, result: (await ADMIN_OPS[o.op](admin, o)) ?? null })
    } catch (e) {
      emit({ op: o.op, error: describeError(e) })
    }
  }
}

// {bootstrap, ops: [{op, ...}], retries}: `retries` (KafkaJS's default: 5, with backoff) 0
// makes an expected retriable error, such as deleting an unknown topic, come back at once.
async function admin(input) {
  const a = client(input).admin(input.retries === undefined ? {} : { retry: { retries: input.retries } })
  await a.connect()
  try {
    await runAdminOps(a, input.ops)
  } finally {
    await a.disconnect()
  }
}

// {bootstrap, topic, group, count, mode: eachMessage|eachBatch, commit: auto|manual|none,
//  commitMetadata, fromBeginning, readUncommitted, timeoutMs, whileMember: [admin ops]}
//
// Joins the group, reads until `count` records arrived (or the timeout), waits until the
// commits cover everything read (auto: KafkaJS commits after each batch; manual: eachBatch
// commits its own offsets with metadata), runs `whileMember` with an admin client while still
// in the group, then leaves. Lines: {joined}, {record} per record, {committed}, {op}...,
// {done: {count, timedOut}}.
async function consume(input) {
  const kafka = client(input)
  const consumer = kafka.consumer({
    groupId: input.group,
    sessionTimeout: 10000,
    heartbeatInterval: 500,
    rebalanceTimeout: 10000,
    readUncommitted: !!input.readUncommitted,
    maxWaitTimeInMs: 500,
    allowAutoTopicCreation: false,
    retry: { retries: 5 },
  })
  const target = input.count
  const read = {} // partition -> last offset read + 1
  const committed = {} // partition -> committed offset
  let got = 0
  let reached
  const reachedCount = new Promise(resolve => (reached = resolve))
  let commitSeen = () => {}

  consumer.on(consumer.events.GROUP_JOIN, e =>
    emit({ joined: { isLeader: e.payload.isLeader, assignment: e.payload.memberAssignment, protocol: e.payload.groupProtocol } })
  )
  consumer.on(consumer.events.COMMIT_OFFSETS, e => {
    for (const t of e.payload.topics) {
      if (t.topic !== input.topic) continue
      for (const p of t.partitions) committed[p.partition] = Number(p.offset)
    }
    commitSeen()
  })
  const onRecord = (partition, message) => {
    emit(recordLine(input.topic, partition, message))
    read[partition] = Number(message.offset) + 1
    got += 1
    if (got >= target) reached()
  }

  await consumer.connect()
  await consumer.subscribe({ topics: [input.topic], fromBeginning: input.fromBeginning !== false })
  const mode = input.mode || 'eachMessage'
  const runConfig = { autoCommit: input.commit === 'auto' }
  if (mode === 'eachMessage') {
    runConfig.eachMessage = async ({ partition, message }) => onRecord(partition, message)
  } else {
    runConfig.eachBatchAutoResolve = false
    runConfig.eachBatch = async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary }) => {
      for (const message of batch.messages) {
        onRecord(batch.partition, message)
        resolveOffset(message.offset)
      }
      if (input.commit === 'manual' && batch.messages.length) {
        const next = String(Number(batch.lastOffset()) + 1)
        await commitOffsetsIfNecessary({
          topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next, metadata: input.commitMetadata }] }],
        })
      }
      await heartbeat()
    }
  }
  await consumer.run(runConfig)

  const timedOut = await Promise.race([reachedCount.then(() => false), sleep(input.timeoutMs || 30000).then(() => true)])
  if (!timedOut && input.commit && input.commit !== 'none') {
    const covered = () => Object.entries(read).every(([p, o]) => committed[p] >= o)
    const deadline = Date.now() + 15000
    while (!covered() && Date.now() < deadline) {
      await Promise.race([new Promise(resolve => (commitSeen = resolve)), sleep(200)])
    }
    emit({ committed })
  }
  if (input.whileMember && input.whileMember.length) {
    const a = kafka.admin()
    await a.connect()
    await runAdminOps(a, input.whileMember)
    await a.disconnect()
  }
  await consumer.disconnect()
  emit({ done: { count: got, timedOut } })
}

// {bootstrap, transactionalId, topic, steps: [{records, sendOffsets: {group, topic, partitions:
//  [{partition, offset}]}, end: commit|abort, afterwards: [admin ops]}]}
// One transactional producer, one transaction per step; `afterwards` runs once the step ended.
async function txn(input) {
  const kafka = client(input)
  const producer = kafka.producer({
    transactionalId: input.transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  })
  const a = kafka.admin()
  await producer.connect()
  await a.connect()
  try {
    for (const [i, step] of input.steps.entries()) {
      const t = await producer.transaction()
      const md = await t.send({ topic: input.topic, messages: toMessages(step.records) })
      if (step.sendOffsets) {
        await t.sendOffsets({
          consumerGroupId: step.sendOffsets.group,
          topics: [{ topic: step.sendOffsets.topic, partitions: step.sendOffsets.partitions.map(p => ({ partition: p.partition, offset: String(p.offset) })) }],
        })
      }
      await (step.end === 'abort' ? t.abort() : t.commit())
      emit({ step: i, end: step.end, sent: metadataLine(md) })
      await runAdminOps(a, step.afterwards || [])
    }
  } finally {
    await a.disconnect()
    await producer.disconnect()
  }
}

main({ produce, consume, admin, txn })
