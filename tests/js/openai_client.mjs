// Drives /v1/chat/completions with the official `openai` npm package; prints one JSON line.
// Usage: node openai_client.mjs MODULE_PATH BASE_URL API_KEY MODE   (MODE: stream | usage | whole | error)
import { pathToFileURL } from "node:url";

const [modulePath, baseURL, apiKey, mode] = process.argv.slice(2);
const { default: OpenAI } = await import(pathToFileURL(modulePath).href);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const request = { model: "haystream-chat", messages: [{ role: "user", content: "Hello from node" }] };

async function run() {
  if (mode === "whole") {
    const answer = await client.chat.completions.create(request);
    return { text: answer.choices[0].message.content, finish: answer.choices[0].finish_reason, id: answer.id };
  }
  const options = mode === "usage" ? { stream_options: { include_usage: true } } : {};
  const stream = await client.chat.completions.create({ ...request, ...options, stream: true });
  const texts = [];
  const ids = new Set();
  let finish = null;
  let usage = null;
  try {
    for await (const chunk of stream) {
      ids.add(chunk.id);
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      texts.push(choice.delta.content ?? "");
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  } catch (error) {
    return { text: texts.join(""), error: error.constructor.name, code: error.code ?? null };
  }
  return { text: texts.join(""), finish, usage, ids: [...ids] };
}

try {
  console.log(JSON.stringify(await run()));
} catch (error) {
  console.log(JSON.stringify({ error: error.constructor.name, status: error.status ?? null, code: error.code ?? null }));
}
