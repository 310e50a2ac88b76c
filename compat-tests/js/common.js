'use strict'
// What the JS client scripts share: one JSON object in on stdin, JSON lines out on stdout (the
// Python side, test_js_clients.py, reads nothing else there), client logs on stderr. Bytes
// travel as hex so that binary keys, values and headers survive the round trip exactly.

const fs = require('fs')

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const hex = b => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'))
const unhex = s => (s === null || s === undefined ? null : Buffer.from(s, 'hex'))

// [[key, hex value or null], ...] -> the KafkaJS headers object. Repeated keys become an array,
// which KafkaJS writes as one header per element, in order; so the Python side only sends
// headers grouped by key (an object cannot say "a, b, a").
function headersToObject(pairs) {
  const out = {}
  for (const [k, v] of pairs || []) {
    const value = unhex(v)
    if (!(k in out)) out[k] = value
    else if (Array.isArray(out[k])) out[k].push(value)
    else out[k] = [out[k], value]
  }
  return out
}

// The KafkaJS headers object as read back -> [[key, hex or null], ...], arrays expanded in place.
function headersToPairs(obj) {
  const out = []
  for (const [k, v] of Object.entries(obj || {})) {
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, hex(one)])
  }
  return out
}

function recordLine(topic, partition, m) {
  return {
    record: {
      topic,
      partition,
      offset: Number(m.offset),
      key: hex(m.key),
      value: hex(m.value),
      headers: headersToPairs(m.headers),
      timestamp: Number(m.timestamp),
    },
  }
}

// Node Kafka clients throw errors with different shapes; this keeps what identifies them.
function describeError(e) {
  const out = { error: (e && e.name) || 'Error', message: String((e && e.message) || e) }
  for (const f of ['type', 'code', 'retriable', 'fatal', 'abortable']) {
    if (e && e[f] !== undefined) out[f] = e[f]
  }
  if (e && e.cause) out.cause = describeError(e.cause)
  if (e && Array.isArray(e.errors)) out.errors = e.errors.map(describeError)
  // KafkaJSDeleteGroupsError: the per-group outcome.
  if (e && Array.isArray(e.groups)) {
    out.groups = e.groups.map(g => ({ groupId: g.groupId, errorCode: g.errorCode, type: g.error && g.error.type }))
  }
  return out
}

// A promise that settles when `ms` pass, and whose timer does not keep the process alive.
function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms).unref())
}

// Runs commands[argv[2]](input) with the stdin JSON; an exception becomes {"error": ...} and
// exit status 2. process.exit at the end: librdkafka's threads and KafkaJS's timers may
// otherwise keep the process alive after everything was closed.
function main(commands) {
  const name = process.argv[2]
  const command = commands[name]
  if (!command) {
    emit({ error: 'UsageError', message: `unknown command ${name}; one of ${Object.keys(commands)}` })
    process.exit(64)
  }
  const input = JSON.parse(fs.readFileSync(0, 'utf8') || '{}')
  command(input).then(
    () => process.exit(0),
    e => {
      emit(describeError(e))
      process.exit(2)
    }
  )
}

module.exports = { emit, hex, unhex, headersToObject, headersToPairs, recordLine, describeError, sleep, main }
