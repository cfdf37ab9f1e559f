// Unit tests run in Node: the modules they cover (materializer, transcript, MIME bundle
// parsing) are DOM-free by design.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.spec.ts'],
    environment: 'node',
    // @jupyter/ydoc reads a new cell's text before inserting it into the document,
    // which makes yjs warn on every cell created; JupyterLab does the same. Drop only
    // that line so that the warnings that matter stay visible.
    onConsoleLog: log =>
      !log.includes('Invalid access: Add Yjs type to a document before reading data')
  }
});
