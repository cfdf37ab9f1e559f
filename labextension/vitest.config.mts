// Unit tests run in Node: the materializer, transcript and MIME bundle parsing are
// DOM-free by design. Files that load JupyterLab models opt into jsdom themselves.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The golden test reads the event file and notebook a Python run wrote, which live
  // with the Python tests (`tests/golden/`), outside this package.
  server: { fs: { allow: ['.', '../tests/golden'] } },
  test: {
    include: ['test/**/*.spec.ts'],
    environment: 'node',
    // Test files that load JupyterLab's own models opt into jsdom (see their first
    // line); these packages ship ESM that Node cannot resolve without Vite's help.
    server: {
      deps: { inline: [/@jupyter\/web-components/, /@microsoft\/fast-/] }
    },
    // @jupyter/ydoc reads a new cell's text before inserting it into the document,
    // which makes yjs warn on every cell created; JupyterLab does the same. Drop only
    // that line so that the warnings that matter stay visible.
    onConsoleLog: log =>
      !log.includes(
        'Invalid access: Add Yjs type to a document before reading data'
      )
  }
});
