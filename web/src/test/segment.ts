// Test bundle: analytics-next exactly as a site bundles it from npm; the test page drives it.
import { AnalyticsBrowser } from '@segment/analytics-next'

;(window as unknown as { AnalyticsBrowser: typeof AnalyticsBrowser }).AnalyticsBrowser =
  AnalyticsBrowser
