// Builds web/dist: the tracking snippet the collector serves (crm.js) and the bundles
// of the browser SDK tests. Single files, no code splitting (esbuild inlines dynamic
// imports), so nothing is fetched from a vendor CDN at run time.
import { build } from 'esbuild'
import { mkdir, copyFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, 'dist')

const common = {
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
}

await mkdir(join(out, 'test'), { recursive: true })
await Promise.all([
  build({ ...common, entryPoints: [join(here, 'src/crm.ts')], outfile: join(out, 'crm.js') }),
  build({
    ...common,
    entryPoints: [join(here, 'src/test/segment.ts')],
    outfile: join(out, 'test/segment.js'),
  }),
  build({
    ...common,
    entryPoints: [join(here, 'src/test/rudderstack.ts')],
    outfile: join(out, 'test/rudderstack.js'),
  }),
])
await copyFile(join(here, 'src/test/index.html'), join(out, 'test/index.html'))
console.log(`built ${out}: crm.js, test/segment.js, test/rudderstack.js, test/index.html`)
