// Drives a real server-side Node SDK against the collector, for
// tests/integration/test_server_sdks.py.
//
//   node send.mjs segment|rudderstack < spec.json
//
// spec.json: {"host": "http://127.0.0.1:PORT", "writeKey": "...", "calls": [call, ...]}
// where a call is SDK-neutral: {"type": "identify"|"track"|"page"|"screen"|"group"|"alias",
// "messageId", "userId", "anonymousId", "timestamp" (ISO), "context", "integrations",
// "traits", "event", "properties", "name", "category", "groupId", "previousId"}.
// Each call goes through the SDK's public API as an application would make it; the
// SDK's own delivery report is printed as one JSON document on stdout:
// {"sdk": ..., "results": [{"messageId", "ok", "error"}], "errors": [...]}.
import { Analytics } from '@segment/analytics-node'
import RudderAnalytics from '@rudderstack/rudder-sdk-node'

const readStdin = async () => {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

const describe = (err) => {
  if (!err) return null
  if (err.response) return `${err.response.status} ${JSON.stringify(err.response.data)}`
  return String(err.reason ?? err.message ?? err)
}

// Only the fields a call has, with the SDK's own names.
const pick = (call, keys) =>
  Object.fromEntries(keys.filter((k) => call[k] !== undefined).map((k) => [k, call[k]]))

const COMMON = ['messageId', 'userId', 'anonymousId', 'context', 'integrations']
const FIELDS = {
  identify: [...COMMON, 'traits'],
  track: [...COMMON, 'event', 'properties'],
  page: [...COMMON, 'name', 'category', 'properties'],
  screen: [...COMMON, 'name', 'category', 'properties'],
  group: [...COMMON, 'groupId', 'traits'],
  alias: ['messageId', 'userId', 'previousId', 'context', 'integrations'],
}

async function segment(spec) {
  const errors = []
  const analytics = new Analytics({
    writeKey: spec.writeKey,
    host: spec.host,
    maxRetries: 2,
    flushInterval: 200,
  })
  analytics.on('error', (e) => errors.push(`${e.code}: ${describe(e.reason)}`))
  const pending = spec.calls.map(
    (call) =>
      new Promise((resolve) => {
        const params = pick(call, FIELDS[call.type])
        if (call.timestamp) params.timestamp = new Date(call.timestamp)
        analytics[call.type](params, (err) =>
          resolve({ messageId: call.messageId, ok: !err, error: describe(err) }),
        )
      }),
  )
  await analytics.closeAndFlush({ timeout: 30000 })
  return { results: await Promise.all(pending), errors }
}

async function rudderstack(spec) {
  const errors = []
  const client = new RudderAnalytics(spec.writeKey, {
    dataPlaneUrl: spec.host,
    flushInterval: 200,
    retryCount: 2,
    logLevel: 'error',
    // Without an errorHandler a failed flush is an unhandled rejection that kills the
    // process; with one, the error reaches the callbacks and this handler.
    errorHandler: (err) => errors.push(describe(err)),
  })
  const pending = spec.calls.map(
    (call) =>
      new Promise((resolve) => {
        const params = pick(call, FIELDS[call.type])
        // This SDK stamps originalTimestamp (never timestamp) with the call's time;
        // an application that knows when the action happened sets it the same way.
        if (call.timestamp) params.originalTimestamp = new Date(call.timestamp)
        client[call.type](params, (err) =>
          resolve({ messageId: call.messageId, ok: !err, error: describe(err) }),
        )
      }),
  )
  await client.flush().catch((err) => errors.push(describe(err)))
  return { results: await Promise.all(pending), errors }
}

const SDKS = { segment, rudderstack }
const name = process.argv[2]
if (!SDKS[name]) {
  console.error(`usage: node send.mjs ${Object.keys(SDKS).join('|')} < spec.json`)
  process.exit(2)
}
const report = await SDKS[name](await readStdin())
process.stdout.write(JSON.stringify({ sdk: name, ...report }) + '\n')
process.exit(0)
