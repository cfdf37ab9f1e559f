/**
 * The few browser APIs JupyterLab's modules touch when they load, which jsdom lacks.
 * Import it first in a jsdom test file, before any `@jupyterlab/*` module.
 */

const globals = globalThis as unknown as Record<string, unknown>;

globals.DragEvent ??= class DragEvent extends MouseEvent {};

window.matchMedia ??= (query: string): MediaQueryList =>
  ({
    matches: false,
    media: query,
    onchange: null,
    addListener: () => undefined,
    removeListener: () => undefined,
    addEventListener: () => undefined,
    removeEventListener: () => undefined,
    dispatchEvent: () => false
  }) as MediaQueryList;
