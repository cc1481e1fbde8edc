// Production build of the web console: `vite build web` writes web/dist, which the fnvm server serves at /.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1024 },
  // Dev server (`npx vite web`): the API is the fnvm server on its default port.
  server: { proxy: { '/v1': 'http://127.0.0.1:18080' } },
});
