// The tracking snippet the collector serves at /v1/crm.js: Segment's analytics.js
// (analytics-next, bundled whole) configured for the collector that served this file.
//
//   <script src="https://collector.example.com/v1/crm.js?writeKey=KEY"></script>
//
// The script reads its own URL for the collector origin and the write key, loads the
// settings from that collector instead of Segment's CDN, delivers every call there and
// exposes window.analytics (page, track, identify, group, alias, screen, ...). Calls made
// before it ran, through Segment's usual stub (window.analytics as an array of
// [method, ...args]), are replayed in order. Query parameters: writeKey (required),
// page=false (no page view on load; by default one is sent, like Segment's snippet).
import { AnalyticsBrowser } from '@segment/analytics-next'

type Buffered = [string, ...unknown[]]
type Win = Window & { analytics?: unknown }

const SELF = /\/v1\/crm\.js(?:[?#].*)?$/

function ownScript(): HTMLScriptElement | null {
  const current = document.currentScript
  if (current instanceof HTMLScriptElement && SELF.test(current.src)) return current
  // currentScript is null in module scripts and callbacks: look the tag up instead.
  const tags = Array.from(document.querySelectorAll<HTMLScriptElement>('script[src]'))
  return tags.find((s) => SELF.test(s.src)) ?? null
}

function start(): void {
  const win = window as Win
  const script = ownScript()
  if (script === null) {
    console.error('[crm.js] cannot find its own <script src=".../v1/crm.js?writeKey=...">')
    return
  }
  const src = new URL(script.src, location.href)
  const writeKey = src.searchParams.get('writeKey') ?? script.dataset.writeKey ?? ''
  if (!writeKey) {
    console.error('[crm.js] no write key: use /v1/crm.js?writeKey=YOUR_WRITE_KEY')
    return
  }
  // The collector may sit under a path prefix (a reverse proxy): keep what precedes /v1.
  const base = src.pathname.replace(/\/v1\/crm\.js$/, '')
  const cdnURL = `${src.origin}${base}`
  const apiHost = `${src.host}${base}/v1`
  const protocol = src.protocol === 'http:' ? 'http' : 'https'
  const initialPageview = src.searchParams.get('page') !== 'false'

  const stub = win.analytics
  const buffered: Buffered[] = Array.isArray(stub) ? (stub.splice(0) as Buffered[]) : []

  const analytics = AnalyticsBrowser.load(
    { writeKey, cdnURL },
    { initialPageview, integrations: { 'Segment.io': { apiHost, protocol } } },
  )
  win.analytics = analytics
  const methods = analytics as unknown as Record<string, (...args: unknown[]) => unknown>
  for (const [method, ...args] of buffered) {
    const fn = methods[method]
    if (typeof fn === 'function') {
      Promise.resolve(fn.apply(analytics, args)).catch((err: unknown) =>
        console.error('[crm.js]', method, err),
      )
    } else {
      console.warn(`[crm.js] ignoring queued call to unknown method "${method}"`)
    }
  }
}

start()
