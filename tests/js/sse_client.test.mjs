// node --test tests/js/  (run by tests/test_sse_client_module.py)
// The page's client module against crafted byte streams: every split point, CRLF halves in separate
// reads, multi-line data, comments, error events, truncated streams, refusals and abort.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { test } from "node:test";

import {
  ChatStreamError,
  DRAIN_MS,
  EventStreamParser,
  readEventStream,
  streamChat,
} from "../../service/http/static/sse-client.mjs";

const encoder = new TextEncoder();

function parseAll(chunks) {
  const events = [];
  const comments = [];
  const parser = new EventStreamParser({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c) });
  for (const chunk of chunks) parser.feed(chunk);
  return { events, comments };
}

function splitAt(text, ...points) {
  const parts = [];
  let start = 0;
  for (const point of points) {
    parts.push(text.slice(start, point));
    start = point;
  }
  parts.push(text.slice(start));
  return parts;
}

// A fetch Response whose body yields exactly these byte chunks, then ends (or errors, or hangs).
function eventStreamResponse(chunks, { status = 200, contentType = "text/event-stream", then = "close" } = {}) {
  const queue = chunks.map((c) => (typeof c === "string" ? encoder.encode(c) : c));
  const body = new ReadableStream({
    pull(controller) {
      if (queue.length > 0) return controller.enqueue(queue.shift());
      if (then === "close") controller.close();
      else if (then === "error") controller.error(new TypeError("network error"));
      // "hang": never settles, like a stalled connection
    },
  });
  return new Response(body, { status, headers: { "content-type": contentType } });
}

function fakeFetch(response, requests = []) {
  return async (url, init) => {
    requests.push({ url, init });
    return typeof response === "function" ? response(init) : response;
  };
}

const STREAM =
  "id: 0\nevent: metadata\ndata: {\"run_id\": \"run_x\", \"model\": \"demo\"}\n\n" +
  ": keep-alive\n\n" +
  'id: 1\nevent: data\ndata: "Hel"\n\n' +
  'id: 2\nevent: data\ndata: "lo\\n wörld ☃"\n\n' +
  'id: 3\nevent: end\ndata: {"finish_reason": "stop", "usage": null, "chunks": 2}\n\n';

const EXPECTED = [
  { event: "metadata", data: '{"run_id": "run_x", "model": "demo"}', id: "0" },
  { event: "data", data: '"Hel"', id: "1" },
  { event: "data", data: '"lo\\n wörld ☃"', id: "2" },
  { event: "end", data: '{"finish_reason": "stop", "usage": null, "chunks": 2}', id: "3" },
];

test("parses a whole stream in one read", () => {
  const { events, comments } = parseAll([STREAM]);
  assert.deepEqual(events, EXPECTED);
  assert.deepEqual(comments, ["keep-alive"]);
});

for (const [name, eol] of [
  ["LF", "\n"],
  ["CRLF", "\r\n"],
  ["CR", "\r"],
]) {
  test(`gives the same events for every two-way split of a ${name} stream`, () => {
    const text = STREAM.replaceAll("\n", eol);
    for (let point = 0; point <= text.length; point++) {
      assert.deepEqual(parseAll(splitAt(text, point)).events, EXPECTED, `split at ${point}`);
    }
  });

  test(`gives the same events when a ${name} stream arrives one character at a time`, () => {
    const text = STREAM.replaceAll("\n", eol);
    const { events, comments } = parseAll([...text]);
    assert.deepEqual(events, EXPECTED);
    assert.deepEqual(comments, ["keep-alive"]);
  });
}

test("counts a CRLF split across two reads as one line break", () => {
  // Were the lone CR and the LF counted as two breaks, "a" would be dispatched on its own.
  const { events } = parseAll(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
  assert.deepEqual(events, [{ event: "message", data: "a\nb", id: "" }]);
});

test("dispatches on a blank line made of a CR that ends a read, without waiting for the next", () => {
  const events = [];
  const parser = new EventStreamParser({ onEvent: (e) => events.push(e) });
  parser.feed("data: x\r\r");
  assert.equal(events.length, 1);
  parser.feed("\ndata: y\n\n"); // this LF ends the CRLF begun above, not a line of its own
  assert.deepEqual(
    events.map((e) => e.data),
    ["x", "y"],
  );
});

test("joins multi-line data with newlines and keeps empty data lines", () => {
  const { events } = parseAll(["data: one\ndata:two\ndata\ndata:  three\n\n"]);
  assert.deepEqual(events, [{ event: "message", data: "one\ntwo\n\n three", id: "" }]);
});

test("ignores comments, unknown fields and retry, and resets the event name after each event", () => {
  const { events, comments } = parseAll([
    ":first\n: keep-alive\nevent: data\nretry: 10\nfoo: bar\ndata: 1\n\ndata: 2\n\nevent: x\n\n",
  ]);
  assert.deepEqual(comments, ["first", "keep-alive"]);
  assert.deepEqual(
    events.map((e) => [e.event, e.data]),
    [
      ["data", "1"],
      ["message", "2"],
    ],
  );
});

test("keeps the last event id, and ignores an id with a NUL", () => {
  const { events } = parseAll(["id: 7\ndata: a\n\nid: 8\0\ndata: b\n\ndata: c\n\n"]);
  assert.deepEqual(
    events.map((e) => e.id),
    ["7", "7", "7"],
  );
});

test("drops an event left unfinished when the stream ends", () => {
  assert.deepEqual(parseAll(['event: data\ndata: "partial"\n']).events, []);
});

test("decodes UTF-8 characters split across reads", async () => {
  const bytes = encoder.encode('event: data\ndata: "wörld ☃ 😀"\n\n');
  for (let point = 0; point <= bytes.length; point++) {
    const events = [];
    const parser = new EventStreamParser({ onEvent: (e) => events.push(e) });
    const body = eventStreamResponse([bytes.slice(0, point), bytes.slice(point)]).body;
    await readEventStream(body, parser);
    assert.deepEqual(
      events.map((e) => e.data),
      ['"wörld ☃ 😀"'],
      `split at byte ${point}`,
    );
  }
});

test("streamChat sends the question and key as JSON and assembles the exact text", async () => {
  const requests = [];
  const texts = [];
  const comments = [];
  const metadata = [];
  const result = await streamChat({
    query: "What?",
    apiKey: "sk-test",
    url: "http://service.test/chat",
    fetch: fakeFetch(eventStreamResponse(splitAt(STREAM.replaceAll("\n", "\r\n"), 5, 77, 78, 140)), requests),
    onText: (t) => texts.push(t),
    onComment: (c) => comments.push(c),
    onMetadata: (m) => metadata.push(m),
  });
  assert.equal(result.text, "Hello\n wörld ☃");
  assert.deepEqual(texts, ["Hel", "lo\n wörld ☃"]);
  assert.deepEqual(comments, ["keep-alive"]);
  assert.equal(result.runId, "run_x");
  assert.deepEqual(metadata, [{ run_id: "run_x", model: "demo" }]);
  assert.deepEqual(result.end, { finish_reason: "stop", usage: null, chunks: 2 });
  assert.equal(requests.length, 1);
  const [{ url, init }] = requests;
  assert.equal(url, "http://service.test/chat");
  assert.equal(init.method, "POST");
  assert.equal(init.headers["Content-Type"], "application/json");
  assert.deepEqual(JSON.parse(init.body), { query: "What?", api_key: "sk-test" });
});

test("streamChat sends further request fields, never letting them replace the query or key", async () => {
  const requests = [];
  await streamChat({
    query: "What?",
    apiKey: "sk-test",
    fields: { conversation_id: "new", pipeline: "documents", query: "other", api_key: "other" },
    fetch: fakeFetch(eventStreamResponse(['event: metadata\ndata: {}\n\nevent: end\ndata: {}\n\n']), requests),
  });
  assert.deepEqual(JSON.parse(requests[0].init.body), {
    conversation_id: "new",
    pipeline: "documents",
    query: "What?",
    api_key: "sk-test",
  });
});

test("streamChat rejects an error event with its type, message and retryable flag", async () => {
  const stream =
    'event: metadata\ndata: {"run_id": "r"}\n\nevent: data\ndata: "Hi"\n\n' +
    'event: error\ndata: {"type": "rate_limited", "message": "Slow down.", "retryable": true, "retry_after": 2}\n\n';
  const texts = [];
  const error = await streamChat({
    query: "q",
    apiKey: "k",
    fetch: fakeFetch(eventStreamResponse([stream])),
    onText: (t) => texts.push(t),
  }).catch((e) => e);
  assert.ok(error instanceof ChatStreamError);
  assert.equal(error.kind, "stream");
  assert.equal(error.type, "rate_limited");
  assert.equal(error.message, "Slow down.");
  assert.equal(error.retryable, true);
  assert.equal(error.retryAfter, 2);
  assert.deepEqual(texts, ["Hi"]);
});

test("streamChat reports a stream that ends without an end event as incomplete", async () => {
  const stream = 'event: metadata\ndata: {"run_id": "r"}\n\nevent: data\ndata: "Hi"\n\n';
  const error = await streamChat({ query: "q", apiKey: "k", fetch: fakeFetch(eventStreamResponse([stream])) }).catch(
    (e) => e,
  );
  assert.equal(error.kind, "incomplete");
  assert.match(error.message, /ended before the answer was complete/);
});

test("streamChat reports a connection dropped mid-stream as incomplete", async () => {
  const response = eventStreamResponse(['event: data\ndata: "Hi"\n\n'], { then: "error" });
  const error = await streamChat({ query: "q", apiKey: "k", fetch: fakeFetch(response) }).catch((e) => e);
  assert.equal(error.kind, "incomplete");
  assert.match(error.message, /dropped/);
});

test("streamChat rejects a refusal before the stream with the service's message and status", async () => {
  const body = JSON.stringify({ type: "at_capacity", message: "Every stream slot is taken.", retryable: true });
  const response = new Response(body, {
    status: 503,
    headers: { "content-type": "application/json", "retry-after": "3" },
  });
  const error = await streamChat({ query: "q", apiKey: "k", fetch: fakeFetch(response) }).catch((e) => e);
  assert.equal(error.kind, "http");
  assert.equal(error.status, 503);
  assert.equal(error.type, "at_capacity");
  assert.equal(error.message, "Every stream slot is taken.");
  assert.equal(error.retryable, true);
  assert.equal(error.retryAfter, 3);
});

test("streamChat refuses a 200 that is not an event stream", async () => {
  const response = new Response("<html>proxy login</html>", { status: 200, headers: { "content-type": "text/html" } });
  const error = await streamChat({ query: "q", apiKey: "k", fetch: fakeFetch(response) }).catch((e) => e);
  assert.equal(error.kind, "http");
  assert.equal(error.message, "HTTP 200");
});

test("streamChat reports a request that could not be sent as a network error", async () => {
  const failing = async () => {
    throw new TypeError("fetch failed");
  };
  const error = await streamChat({ query: "q", apiKey: "k", fetch: failing }).catch((e) => e);
  assert.equal(error.kind, "network");
  assert.match(error.message, /fetch failed/);
});

test("streamChat rejects an event whose data is not JSON", async () => {
  const response = eventStreamResponse(["event: data\ndata: not json\n\n"]);
  const error = await streamChat({ query: "q", apiKey: "k", fetch: fakeFetch(response) }).catch((e) => e);
  assert.equal(error.kind, "stream");
  assert.equal(error.type, "malformed_event");
});

test("streamChat stops reading at the end event and ignores anything after it", async () => {
  const stream = 'event: data\ndata: "a"\n\nevent: end\ndata: {"chunks": 1}\n\nevent: data\ndata: "b"\n\n';
  const result = await streamChat({
    query: "q",
    apiKey: "k",
    fetch: fakeFetch(eventStreamResponse([stream], { then: "hang" })),
  });
  assert.equal(result.text, "a");
});

// A real server that sends `events`, then ends the response `endAfterMs` later (never, if null).
// `ended()` says whether it has ended it yet; `finished` resolves with whether the response was
// ended by the server rather than cut by the client.
async function serveThenEnd(events, endAfterMs) {
  let settle;
  let ended = false;
  const finished = new Promise((resolve) => (settle = resolve));
  const server = createServer((request, response) => {
    response.writeHead(200, { "content-type": "text/event-stream" });
    response.write(events);
    if (endAfterMs !== null) setTimeout(() => response.end(() => (ended = true)), endAfterMs);
    response.on("close", () => settle(response.writableFinished));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, finished, ended: () => ended, url: `http://127.0.0.1:${server.address().port}/chat` };
}

// Regression: the reader was cancelled right after the terminal event, before the body's end, which
// aborts the request: the browser logged every answer, and every Stop, as a failed request.
for (const [name, last] of [
  ["end", 'event: end\ndata: {"chunks": 1}\n\n'],
  ["error", 'event: error\ndata: {"type": "cancelled", "message": "The run was stopped."}\n\n'],
]) {
  test(`after the ${name} event streamChat settles at once and reads the body to its end`, async () => {
    const { server, finished, ended, url } = await serveThenEnd(`event: data\ndata: "a"\n\n${last}`, DRAIN_MS / 2);
    try {
      await streamChat({ query: "q", apiKey: "k", url }).catch(() => {});
      assert.equal(ended(), false, "it waited for the body's end before settling");
      assert.equal(await finished, true, "the response was cut short instead of read to its end");
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
}

test("a body that goes on after the end event is cancelled DRAIN_MS later", async () => {
  const { server, finished, url } = await serveThenEnd('event: end\ndata: {"chunks": 0}\n\n', null);
  try {
    const started = Date.now();
    await streamChat({ query: "q", apiKey: "k", url });
    assert.equal(await finished, false);
    const waited = Date.now() - started;
    assert.ok(waited >= DRAIN_MS - 50 && waited < DRAIN_MS + 1000, `cancelled after ${waited} ms`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test("abort stops a real streaming request, rejects as aborted, and the server sees the client leave", async () => {
  let serverSawClose;
  const closed = new Promise((resolve) => (serverSawClose = resolve));
  const server = createServer((request, response) => {
    response.writeHead(200, { "content-type": "text/event-stream" });
    response.write('event: metadata\ndata: {"run_id": "r"}\n\nevent: data\ndata: "first"\n\n');
    response.on("close", () => serverSawClose(response.writableFinished));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const controller = new AbortController();
    const texts = [];
    const pending = streamChat({
      query: "q",
      apiKey: "k",
      url: `http://127.0.0.1:${server.address().port}/chat`,
      signal: controller.signal,
      onText: (t) => {
        texts.push(t);
        controller.abort();
      },
    }).catch((e) => e);
    const error = await pending;
    assert.ok(error instanceof ChatStreamError);
    assert.equal(error.kind, "aborted");
    assert.deepEqual(texts, ["first"]);
    assert.equal(await closed, false, "the response was cut short, not finished");
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test("abort before the response arrives rejects as aborted", async () => {
  const controller = new AbortController();
  controller.abort();
  const abortable = async (_url, init) => {
    init.signal.throwIfAborted();
    throw new Error("unreachable");
  };
  const error = await streamChat({ query: "q", apiKey: "k", signal: controller.signal, fetch: abortable }).catch(
    (e) => e,
  );
  assert.equal(error.kind, "aborted");
});
