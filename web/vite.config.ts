// Production build of the web console: `vite build web` writes web/dist, which the fnvm server serves at /.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // CodeMirror is one 550 kB chunk; it is loaded only by the pages with an editor.
    chunkSizeWarningLimit: 600,
    rolldownOptions: {
      output: {
        // The two large libraries get chunks named after them, loaded only by the pages that use them (the
        // create and function pages: the editor; the function page: the charts); test/web-metrics.test.ts
        // checks the list page loads neither.
        codeSplitting: {
          groups: [
            { name: 'codemirror', test: /node_modules[\\/](@codemirror|codemirror|@lezer|@marijn|style-mod|w3c-keyname|crelt)[\\/]/ },
            { name: 'uplot', test: /node_modules[\\/]uplot[\\/]/ },
          ],
        },
      },
    },
  },
  // Dev server (`npx vite web`): the API is the fnvm server on its default port.
  server: { proxy: { '/v1': 'http://127.0.0.1:18080' } },
});
