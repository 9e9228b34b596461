import { fetchEventSource, EventStreamContentType } from "@microsoft/fetch-event-source";

class FatalError extends Error {}
class Interrupted extends Error {}

// Streams one completion from /v1/chat/completions; resolves with its text, rejects with a FatalError.
// A dropped connection is resumed (the same completion, after the last chunk received), never re-generated.
export async function complete(messages, apiKey, { url = "/v1/chat/completions", onText = () => {}, maxRetries = 5 } = {}) {
  let text = "";
  let done = false;
  let retries = 0;
  await fetchEventSource(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Authorization: `Bearer ${apiKey}`,
      "Idempotency-Key": crypto.randomUUID(),  // one per question: a re-send attaches, never re-generates
    },
    body: JSON.stringify({ model: "haystream-chat", messages, stream: true }),
    openWhenHidden: true,
    async onopen(response) {
      if (response.ok && response.headers.get("content-type") === EventStreamContentType) return;
      const body = await response.json().catch(() => ({}));
      throw new FatalError(body.error?.message || `HTTP ${response.status}`);
    },
    onmessage(msg) {
      if (!msg.data) return;    // a keep-alive comment arrives as an empty message: ignore it
      if (msg.data === "[DONE]") { done = true; return; }
      const chunk = JSON.parse(msg.data);
      if (chunk.error) throw new FatalError(chunk.error.message);
      const piece = chunk.choices[0]?.delta?.content;
      if (piece) { text += piece; onText(piece); }
    },
    onclose() {
      if (!done) throw new Interrupted("The stream ended before the completion was.");
    },
    onerror(err) {
      if (err instanceof FatalError || ++retries > maxRetries) throw err;
      return 1000;              // retry in 1 s: the re-POST carries Last-Event-ID and resumes the completion
    },
  });
  return text;
}
