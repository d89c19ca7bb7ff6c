import { defineConfig } from "vite";

// Everything the app needs is bundled into dist/: no CDN, no font or tile fetched at run
// time. `npm run dev` proxies the API to a hub on 127.0.0.1:8080.
export default defineConfig({
  base: "/",
  build: { outDir: "dist", assetsInlineLimit: 0, sourcemap: false, target: "es2022" },
  server: {
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
