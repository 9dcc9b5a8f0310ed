// Test bundle: RudderStack's JS SDK v3, the variant with its plugins bundled in (the
// default variant loads plugins from RudderStack's CDN at run time).
import { RudderAnalytics } from '@rudderstack/analytics-js/bundled'

;(window as unknown as { RudderAnalytics: typeof RudderAnalytics }).RudderAnalytics =
  RudderAnalytics
