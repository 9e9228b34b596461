// A small client for haystream's `POST /chat` event stream: fetch + a stream reader + an SSE parser.
//
// No dependencies and no build step: copy this file into a frontend and import it as an ES module.
//
//   import { streamChat, ChatStreamError } from "./sse-client.mjs";
//   const controller = new AbortController();            // controller.abort() stops the run on the server
//   try {
//     const { text } = await streamChat({ query, apiKey, signal: controller.signal, onText: (t) => show(t) });
//   } catch (error) {                                    // a ChatStreamError; error.kind says what happened
//     if (error.kind !== "aborted") showError(error.message);
//   }
//
// It never retries: every POST /chat starts a new (paid) generation, so retrying is the caller's choice.
// A stream that ends without an `end` event is an incomplete answer and rejects with kind "incomplete".

export const EVENT_STREAM = "text/event-stream";

// Why a ChatStreamError was raised:
//   "http"       the service refused the request before streaming (4xx, 503); `status` is set
//   "stream"     the service sent an `error` event; `type` and `retryable` come from it
//   "incomplete" the stream ended, or the connection dropped, before the `end` event
//   "network"    the request could not be sent or no response came back
//   "aborted"    the caller's signal aborted the request
export class ChatStreamError extends Error {
  constructor(kind, message, details = {}) {
    super(message);
    this.name = "ChatStreamError";
    this.kind = kind;
    this.status = details.status ?? null;
    this.type = details.type ?? null;
    this.retryable = details.retryable ?? false;
    this.retryAfter = details.retryAfter ?? null;
  }
}

// An incremental Server-Sent Events parser, following the WHATWG algorithm: lines end with CRLF, LF or
// CR (a CRLF split across two chunks counts once), `data` lines join with "\n", a blank line dispatches,
// comment lines (": keep-alive") go to onComment, and an event left unfinished at the end is dropped.
// Feed it decoded text; `readEventStream` below does the byte decoding.
export class EventStreamParser {
  #onEvent;
  #onComment;
  #partial = "";
  #afterCR = false;
  #data = [];
  #event = "";
  #lastEventId = "";
  #lineEnd = /\r\n|\r|\n/g;

  constructor({ onEvent, onComment = () => {} }) {
    this.#onEvent = onEvent;
    this.#onComment = onComment;
  }

  feed(text) {
    if (text === "") return;
    let start = 0;
    if (this.#afterCR) {
      this.#afterCR = false;
      if (text[0] === "\n") start = 1; // the second half of a CRLF that was split across reads
    }
    const lineEnd = this.#lineEnd;
    lineEnd.lastIndex = start;
    let match;
    while ((match = lineEnd.exec(text)) !== null) {
      const line = this.#partial + text.slice(start, match.index);
      this.#partial = "";
      start = lineEnd.lastIndex;
      if (match[0] === "\r" && start === text.length) this.#afterCR = true;
      this.#line(line);
    }
    this.#partial += text.slice(start);
  }

  #line(line) {
    if (line === "") return this.#dispatch();
    if (line[0] === ":") return this.#onComment(line.slice(1).trimStart());
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
    else if (field === "id" && !value.includes("\0")) this.#lastEventId = value;
    // "retry" and unknown fields are ignored: this client never reconnects by itself.
  }

  #dispatch() {
    const data = this.#data;
    const event = this.#event || "message";
    this.#data = [];
    this.#event = "";
    if (data.length === 0) return;
    this.#onEvent({ event, data: data.join("\n"), id: this.#lastEventId });
  }
}

// Reads a fetch Response body (a ReadableStream of bytes) into the parser until the stream ends or
// `shouldStop()` says so after a chunk. UTF-8 characters split across reads are decoded whole.
// After a stop the rest of the body is read, unparsed, in the background: the service ends it right
// after its last event, and cancelling before that would abort the request (browsers log it as a
// failed request). A body still going DRAIN_MS later is cancelled.
export async function readEventStream(body, parser, shouldStop = () => false) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
      if (shouldStop()) {
        drain(reader);
        return;
      }
    }
    parser.feed(decoder.decode());
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  }
}

export const DRAIN_MS = 1000;

async function drain(reader) {
  const timer = setTimeout(() => reader.cancel().catch(() => {}), DRAIN_MS);
  try {
    while (!(await reader.read()).done);
  } catch {
    // the connection dropped, or the caller aborted: nothing is left to read either way
  } finally {
    clearTimeout(timer);
  }
}

// Streams one answer from `POST /chat`. Resolves with { text, runId, metadata, end } when the `end`
// event arrives; rejects with a ChatStreamError otherwise. onText gets each text chunk as it arrives.
// `fields` are further request fields, e.g. { conversation_id: "new", pipeline: "documents" }.
export async function streamChat({
  query,
  apiKey,
  fields = {},
  url = "/chat",
  signal,
  onMetadata = () => {},
  onText = () => {},
  onComment = () => {},
  fetch: fetchImpl = globalThis.fetch,
}) {
  const response = await send(fetchImpl, url, { ...fields, query, api_key: apiKey }, signal);
  if (!response.ok || !isEventStream(response)) throw await refusal(response);

  const answer = { text: "", runId: null, metadata: null, end: null };
  let failure = null;
  const parser = new EventStreamParser({
    onComment,
    onEvent({ event, data }) {
      if (answer.end || failure) return;
      const value = parseData(event, data);
      if (event === "metadata") {
        answer.metadata = value;
        answer.runId = value.run_id ?? null;
        onMetadata(value);
      } else if (event === "data") {
        answer.text += value;
        onText(value);
      } else if (event === "end") {
        answer.end = value;
      } else if (event === "error") {
        failure = streamFailure(value);
      }
    },
  });
  try {
    await readEventStream(response.body, parser, () => Boolean(answer.end || failure));
  } catch (error) {
    if (signal?.aborted) throw aborted(signal);
    if (error instanceof ChatStreamError) throw error;
    throw new ChatStreamError("incomplete", "The connection dropped before the answer was complete.");
  }
  if (failure) throw failure;
  if (!answer.end) {
    if (signal?.aborted) throw aborted(signal);
    throw new ChatStreamError("incomplete", "The stream ended before the answer was complete.");
  }
  return answer;
}

async function send(fetchImpl, url, body, signal) {
  try {
    return await fetchImpl(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: EVENT_STREAM },
      body: JSON.stringify(body),
      cache: "no-store",
      signal,
    });
  } catch (error) {
    if (signal?.aborted) throw aborted(signal);
    throw new ChatStreamError("network", `Could not reach the service: ${error.message || error}`);
  }
}

function isEventStream(response) {
  const type = response.headers.get("content-type") || "";
  return type.split(";")[0].trim().toLowerCase() === EVENT_STREAM;
}

async function refusal(response) {
  const body = await response.json().catch(() => null);
  const message = typeof body?.message === "string" ? body.message : `HTTP ${response.status}`;
  const retryAfter = Number(response.headers.get("retry-after")) || null;
  return new ChatStreamError("http", message, {
    status: response.status,
    type: body?.type,
    retryable: body?.retryable === true,
    retryAfter,
  });
}

function parseData(event, data) {
  try {
    return JSON.parse(data);
  } catch {
    throw new ChatStreamError("stream", `The service sent an unreadable '${event}' event.`, {
      type: "malformed_event",
    });
  }
}

function streamFailure(value) {
  const message = typeof value?.message === "string" ? value.message : "The service reported an error.";
  return new ChatStreamError("stream", message, {
    type: value?.type ?? "unknown",
    retryable: value?.retryable === true,
    retryAfter: value?.retry_after ?? null,
  });
}

function aborted(signal) {
  const reason = signal.reason instanceof Error && signal.reason.name !== "AbortError" ? signal.reason.message : "";
  return new ChatStreamError("aborted", reason || "The request was stopped.");
}
