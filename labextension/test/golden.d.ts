// Vite's `?raw` imports: a file's text, bundled at test time (the golden files of
// `tests/golden/`, which the Python package writes).
declare module '*?raw' {
  const text: string;
  export default text;
}
