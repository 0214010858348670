// Interop scenario for kafkajs against Petrel. Contract: tests/interop/README.md.
// Step results go to stdout as JSON lines; kafkajs logs and ours go to stderr.
'use strict'

const fs = require('fs')
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')

const PARTITIONS = 3
const PER_CODEC = 300
const RESUME_COUNT = 50
const CONSUME_TIMEOUT_MS = 60000

const bootstrap = process.env.PETREL_BOOTSTRAP
if (!bootstrap) {
  process.stderr.write('PETREL_BOOTSTRAP is not set\n')
  process.exit(2)
}
const client = process.env.INTEROP_CLIENT || 'kafkajs'
const topic = `interop-${client}`
const group = `${topic}-group`

// Third-party codecs: kafkajs only ships gzip. Each is registered if its
// package loads; otherwise the codec's steps are gaps with the reason.
const codecGaps = {}
try {
  CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy')
} catch (e) {
  codecGaps.snappy = `kafkajs has no built-in snappy codec; kafkajs-snappy failed to load: ${e.message}`
}
try {
  const LZ4Codec = require('kafkajs-lz4')
  CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
} catch (e) {
  codecGaps.lz4 = `kafkajs has no built-in lz4 codec; kafkajs-lz4 failed to load: ${e.message}`
}
codecGaps.zstd =
  'kafkajs has no built-in zstd codec; @kafkajs/zstd 0.1.1 depends on the native cppzst 2.0.6, ' +
  'whose binding.gyp forces -std=c++11 and so fails to compile against Node 20 headers ' +
  "(node.h: 'std::optional is only available from C++17 onwards')"

const CODECS = [
  ['none', CompressionTypes.None],
  ['gzip', CompressionTypes.GZIP],
  ['snappy', CompressionTypes.Snappy],
  ['lz4', CompressionTypes.LZ4],
  ['zstd', CompressionTypes.ZSTD],
]

let failed = false

function log(msg) {
  process.stderr.write(`[kafkajs scenario] ${msg}\n`)
}

function emit(step, ok, detail) {
  process.stdout.write(JSON.stringify({ step, ok, detail }) + '\n')
  if (!ok) failed = true
  log(`step ${step} ok=${ok}: ${detail}`)
}

function emitGap(step, gap) {
  process.stdout.write(JSON.stringify({ step, ok: null, gap }) + '\n')
  log(`step ${step} gap: ${gap}`)
}

// kafkajs's default logger writes JSON to stdout; send it to stderr instead
// (same level as the default, INFO, or DEBUG with INTEROP_LOG=debug).
const stderrLogCreator = () => ({ namespace, level, label, log: entry }) => {
  const { message, ...extra } = entry
  process.stderr.write(`[kafkajs ${label}] ${namespace}: ${message} ${JSON.stringify(extra)}\n`)
}

// The listener the runner chose: TLS with the broker's CA (PETREL_SSL_CA), a client
// certificate (PETREL_SSL_CERT, PETREL_SSL_KEY), SCRAM (PETREL_SASL_*); none on PLAINTEXT.
function security () {
  const env = process.env
  if (!env.PETREL_SSL_CA) return {}
  const ssl = { ca: [fs.readFileSync(env.PETREL_SSL_CA, 'utf-8')] }
  if (env.PETREL_SSL_CERT) {
    ssl.cert = fs.readFileSync(env.PETREL_SSL_CERT, 'utf-8')
    ssl.key = fs.readFileSync(env.PETREL_SSL_KEY, 'utf-8')
  }
  if (!env.PETREL_SASL_USER) return { ssl }
  const sasl = {
    mechanism: env.PETREL_SASL_MECHANISM.toLowerCase(),
    username: env.PETREL_SASL_USER,
    password: env.PETREL_SASL_PASSWORD,
  }
  return { ssl, sasl }
}

const kafka = new Kafka({
  ...security(),
  brokers: [bootstrap],
  logLevel: process.env.INTEROP_LOG === 'debug' ? logLevel.DEBUG : logLevel.INFO,
  logCreator: stderrLogCreator,
})

// ---- record data ----

function mainRecord(codec, i) {
  return {
    key: `${codec}-${i}`,
    value: `${codec}:${i}:` + 'petrel'.repeat(i % 40),
    headers: [['codec', codec], ['i', String(i)]],
    codec,
    i,
  }
}

function resumeRecord(i) {
  return {
    key: `resume-${i}`,
    value: `resume:${i}`,
    headers: [['codec', 'resume'], ['i', String(i)]],
    codec: 'resume',
    i,
  }
}

function toMessage(w) {
  const headers = {}
  for (const [k, v] of w.headers) headers[k] = v
  return { key: w.key, value: w.value, headers }
}

async function produce(compression, records) {
  const producer = kafka.producer()
  await producer.connect()
  try {
    await producer.send({ topic, compression, messages: records.map(toMessage) })
  } finally {
    await producer.disconnect()
  }
}

// ---- consuming ----

// Runs a new group consumer until every expected key arrived (or the
// timeout), then lingers lingerMs more; commits the next offset of every
// partition it read, synchronously, and disconnects.
async function consume(expected, lingerMs) {
  const got = []
  const nextOffsets = {}
  const consumer = kafka.consumer({ groupId: group })
  const seen = new Set()
  let resolveDone
  const done = new Promise((resolve) => (resolveDone = resolve))
  const timer = setTimeout(resolveDone, CONSUME_TIMEOUT_MS)
  const problems = []
  let crashed = null
  consumer.on(consumer.events.CRASH, (e) => {
    crashed = e.payload.error
    log(`consumer crashed: ${e.payload.error && e.payload.error.stack}`)
    resolveDone()
  })
  try {
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const key = message.key === null ? null : message.key.toString()
        got.push({ partition, offset: message.offset, key, message })
        const next = BigInt(message.offset) + 1n
        if (nextOffsets[partition] === undefined || next > nextOffsets[partition]) {
          nextOffsets[partition] = next
        }
        if (expected.has(key) && !seen.has(key)) {
          seen.add(key)
          if (seen.size === expected.size) {
            clearTimeout(timer)
            setTimeout(resolveDone, lingerMs)
          }
        }
      },
    })
    await done
    clearTimeout(timer)
    if (crashed) problems.push(`consumer crashed: ${crashed.message}`)
    const offsets = Object.entries(nextOffsets).map(([p, o]) => ({
      topic,
      partition: Number(p),
      offset: o.toString(),
    }))
    if (offsets.length > 0) {
      try {
        await consumer.commitOffsets(offsets)
      } catch (e) {
        problems.push(`commitOffsets: ${e.message}`)
      }
    }
  } catch (e) {
    problems.push(`consumer: ${e.message}`)
  } finally {
    clearTimeout(timer)
    try {
      await consumer.disconnect()
    } catch (e) {
      problems.push(`disconnect: ${e.message}`)
    }
  }
  return { got, problems }
}

function list(xs) {
  return xs.length > 10 ? xs.slice(0, 10).join(', ') + ', ...' : xs.join(', ')
}

// Checks got against expected exactly: all present, no duplicates, nothing
// unexpected, exact key/value/headers, per partition and codec increasing i.
function check(got, expected) {
  const problems = []
  const seen = new Map()
  const last = new Map()
  const unexpected = []
  const dups = []
  const bad = []
  const order = []
  for (const c of got) {
    const w = expected.get(c.key)
    if (!w) {
      unexpected.push(`${JSON.stringify(c.key)}@p${c.partition}/o${c.offset}`)
      continue
    }
    seen.set(c.key, (seen.get(c.key) || 0) + 1)
    if (seen.get(c.key) > 1) {
      dups.push(c.key)
      continue
    }
    const value = c.message.value === null ? null : c.message.value.toString()
    if (value !== w.value) bad.push(`${c.key}: value ${JSON.stringify(String(value).slice(0, 60))}`)
    const hs = Object.entries(c.message.headers || {}).map(([k, v]) => [
      k,
      Array.isArray(v) ? v.map(String) : v === null || v === undefined ? v : v.toString(),
    ])
    if (JSON.stringify(hs) !== JSON.stringify(w.headers)) bad.push(`${c.key}: headers ${JSON.stringify(hs)}`)
    const k = `${c.partition}/${w.codec}`
    if (last.has(k) && w.i <= last.get(k)) {
      order.push(`p${c.partition}: ${c.key} after ${w.codec}-${last.get(k)}`)
    }
    last.set(k, w.i)
  }
  const missing = [...expected.keys()].filter((k) => !seen.has(k)).sort()
  if (missing.length) problems.push(`missing ${missing.length} records: ${list(missing)}`)
  if (dups.length) problems.push(`${dups.length} duplicates: ${list(dups)}`)
  if (unexpected.length) problems.push(`${unexpected.length} unexpected records: ${list(unexpected)}`)
  if (bad.length) problems.push(`${bad.length} records with wrong data: ${list(bad)}`)
  if (order.length) problems.push(`${order.length} out of order: ${list(order)}`)
  return problems
}

// ---- steps ----

async function stepCreateTopic(admin) {
  try {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    })
    if (!created) {
      emit('create_topic', false, `${topic} already existed`)
      return false
    }
    emit('create_topic', true, `${topic}, ${PARTITIONS} partitions`)
    return true
  } catch (e) {
    emit('create_topic', false, `createTopics: ${e.message}`)
    return false
  }
}

async function stepProduce(name, compression) {
  const step = `produce_${name}`
  if (codecGaps[name]) {
    emitGap(step, codecGaps[name])
    return false
  }
  const recs = []
  for (let i = 0; i < PER_CODEC; i++) recs.push(mainRecord(name, i))
  try {
    await produce(compression, recs)
    emit(step, true, `${PER_CODEC} records acknowledged`)
    return true
  } catch (e) {
    emit(step, false, `send: ${e.message}`)
    return false
  }
}

async function stepConsumeGroup(produced) {
  const expected = new Map()
  for (const c of produced) {
    for (let i = 0; i < PER_CODEC; i++) {
      const w = mainRecord(c, i)
      expected.set(w.key, w)
    }
  }
  const { got, problems } = await consume(expected, 0)
  problems.unshift(...check(got, expected))
  if (problems.length) {
    emit('consume_group', false, problems.join('; '))
    return false
  }
  emit('consume_group', true, `${got.length} records (${produced.join(', ')}) checked, committed`)
  return true
}

async function stepResume() {
  const expected = new Map()
  const recs = []
  for (let i = 0; i < RESUME_COUNT; i++) {
    const w = resumeRecord(i)
    recs.push(w)
    expected.set(w.key, w)
  }
  try {
    await produce(CompressionTypes.None, recs)
  } catch (e) {
    emit('resume_from_commit', false, `producing resume records: ${e.message}`)
    return false
  }
  const { got, problems } = await consume(expected, 2000)
  problems.unshift(...check(got, expected))
  if (problems.length) {
    emit('resume_from_commit', false, problems.join('; '))
    return false
  }
  emit('resume_from_commit', true, `exactly the ${got.length} new records, committed`)
  return true
}

async function stepListTopics(admin) {
  try {
    const topics = await admin.listTopics()
    if (!topics.includes(topic)) {
      emit('list_topics', false, `${topic} not listed; got ${JSON.stringify(topics)}`)
      return
    }
    emit('list_topics', true, `${topic} listed among ${topics.length} topics`)
  } catch (e) {
    emit('list_topics', false, `listTopics: ${e.message}`)
  }
}

async function stepDescribeTopic(admin) {
  try {
    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    const t = md.topics.find((x) => x.name === topic)
    if (!t) {
      emit('describe_topic', false, `${topic} missing from fetchTopicMetadata`)
      return
    }
    const problems = []
    if (t.partitions.length !== PARTITIONS) {
      problems.push(`${t.partitions.length} partitions, want ${PARTITIONS}`)
    }
    for (let p = 0; p < PARTITIONS; p++) {
      const pd = t.partitions.find((x) => x.partitionId === p)
      if (!pd) problems.push(`partition ${p} missing`)
      else if (pd.partitionErrorCode !== 0) problems.push(`partition ${p} error code ${pd.partitionErrorCode}`)
      else if (pd.leader !== 0) problems.push(`partition ${p} leader ${pd.leader}, want 0`)
    }
    if (problems.length) {
      emit('describe_topic', false, problems.join('; '))
      return
    }
    emit('describe_topic', true, `${topic}: ${PARTITIONS} partitions, leader 0 each`)
  } catch (e) {
    emit('describe_topic', false, `fetchTopicMetadata: ${e.message}`)
  }
}

async function stepDescribeGroup(admin, wantSum) {
  const problems = []
  try {
    const { groups } = await admin.listGroups()
    if (!groups.some((g) => g.groupId === group)) {
      problems.push(`listGroups does not list ${group} (got ${JSON.stringify(groups.map((g) => g.groupId))})`)
    }
  } catch (e) {
    problems.push(`listGroups: ${e.message}`)
  }
  try {
    const { groups } = await admin.describeGroups([group])
    const g = groups.find((x) => x.groupId === group)
    if (!g) problems.push('describeGroups: group missing from response')
    else if (g.errorCode !== 0) problems.push(`describeGroups: error code ${g.errorCode}`)
    else {
      if (g.state !== 'Empty') problems.push(`state ${JSON.stringify(g.state)}, want Empty`)
      if (g.protocolType !== 'consumer') problems.push(`protocol type ${JSON.stringify(g.protocolType)}, want consumer`)
    }
  } catch (e) {
    problems.push(`describeGroups: ${e.message}`)
  }
  let sum = 0
  try {
    const res = await admin.fetchOffsets({ groupId: group, topics: [topic] })
    const t = res.find((x) => x.topic === topic)
    const parts = []
    for (let p = 0; p < PARTITIONS; p++) {
      const po = t && t.partitions.find((x) => x.partition === p)
      if (!po) {
        parts.push(`p${p}=none`)
        continue
      }
      parts.push(`p${p}=${po.offset}`)
      sum += Number(po.offset)
    }
    if (sum !== wantSum) {
      problems.push(`committed offsets ${parts.join(' ')} sum to ${sum}, want ${wantSum}`)
    }
  } catch (e) {
    problems.push(`fetchOffsets: ${e.message}`)
  }
  if (problems.length) {
    emit('describe_group', false, problems.join('; '))
    return
  }
  emit('describe_group', true, `${group} listed, state Empty, protocol type consumer, committed offsets sum ${sum}`)
}

async function stepDeleteTopic(admin) {
  try {
    await admin.deleteTopics({ topics: [topic] })
  } catch (e) {
    emit('delete_topic', false, `deleteTopics: ${e.message}`)
    return
  }
  try {
    const topics = await admin.listTopics()
    if (topics.includes(topic)) {
      emit('delete_topic', false, `${topic} still listed after deleteTopics succeeded`)
      return
    }
    emit('delete_topic', true, `${topic} deleted, no longer listed`)
  } catch (e) {
    emit('delete_topic', false, `listTopics after delete: ${e.message}`)
  }
}

const ALL_STEPS = [
  'create_topic',
  ...CODECS.map(([n]) => `produce_${n}`),
  'consume_group',
  'resume_from_commit',
  'list_topics',
  'describe_topic',
  'describe_group',
  'delete_topic',
]

async function main() {
  const admin = kafka.admin()
  try {
    await admin.connect()
  } catch (e) {
    for (const s of ALL_STEPS) emit(s, false, `not run: admin connect failed: ${e.message}`)
    return
  }
  try {
    if (!(await stepCreateTopic(admin))) {
      for (const s of ALL_STEPS.slice(1)) emit(s, false, 'not run: create_topic failed')
      return
    }
    const produced = []
    for (const [name, compression] of CODECS) {
      if (await stepProduce(name, compression)) produced.push(name)
    }
    if (await stepConsumeGroup(produced)) {
      await stepResume()
    } else {
      emit('resume_from_commit', false, 'not run: consume_group failed')
    }
    await stepListTopics(admin)
    await stepDescribeTopic(admin)
    await stepDescribeGroup(admin, produced.length * PER_CODEC + RESUME_COUNT)
    await stepDeleteTopic(admin)
  } finally {
    await admin.disconnect().catch((e) => log(`admin disconnect: ${e.message}`))
  }
}

main()
  .catch((e) => {
    log(`unexpected error: ${e.stack}`)
    failed = true
  })
  .finally(() => process.exit(failed ? 1 : 0))
