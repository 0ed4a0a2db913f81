import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The gateway serves index.html at "/" and the bundle at "/assets/...", so the build
// goes straight into the Python package.
export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: '../mcpproxy/webui_dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    // The gateway's Content-Security-Policy allows no data: URLs, so never inline assets.
    assetsInlineLimit: 0,
  },
})
