// Runs examples/openai-fetch-event-source.js under node (with the little of `window` and `document`
// fetch-event-source touches); prints one JSON line. Usage: node openai_fes_driver.mjs EXAMPLE URL KEY
import { pathToFileURL } from "node:url";

globalThis.window = globalThis;
globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };

const [example, url, apiKey] = process.argv.slice(2);
const { complete } = await import(pathToFileURL(example).href);
const pieces = [];
try {
  const text = await complete([{ role: "user", content: "Resume me" }], apiKey, {
    url,
    onText: (piece) => pieces.push(piece),
  });
  console.log(JSON.stringify({ ok: true, text, pieces: pieces.length }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, name: error.constructor.name, message: error.message }));
}
