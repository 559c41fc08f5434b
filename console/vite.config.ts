import { defineConfig } from 'vite';

// Plain Vite with esbuild's JSX for Preact: no plugins. One script and one stylesheet, no
// inline code (the server's Content-Security-Policy forbids it), hashed names under assets/.
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
});
