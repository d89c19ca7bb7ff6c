import { resolve } from "node:path";
import { defineConfig } from "vite";

// Everything the app needs is bundled into dist/: no CDN, no font or tile fetched at run
// time. Two pages: the control center (index.html) and the residents' status page
// (public.html, which the hub serves at /public/{tenant}/ and which imports none of the
// control center). `npm run dev` proxies the API to a hub on 127.0.0.1:8080.
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    assetsInlineLimit: 0,
    sourcemap: false,
    target: "es2022",
    rollupOptions: {
      input: {
        index: resolve(import.meta.dirname, "index.html"),
        public: resolve(import.meta.dirname, "public.html"),
      },
    },
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
