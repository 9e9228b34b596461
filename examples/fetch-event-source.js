import { fetchEventSource, EventStreamContentType } from "@microsoft/fetch-event-source";

class FatalError extends Error {}
class Interrupted extends Error {}

// Streams one answer; resolves with the full text, rejects with a FatalError. A dropped connection
// is resumed (the same run, after the last event received), never generated a second time.
export async function ask(query, apiKey, { onText = () => {}, signal, maxRetries = 5 } = {}) {
  let text = "";
  let ended = false;
  let runId = null;
  let retries = 0;
  signal?.addEventListener("abort", () => {
    if (runId) fetch(`/runs/${runId}`, { method: "DELETE" });  // Stop: cancel the run at once
  });
  await fetchEventSource("/chat", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "Idempotency-Key": crypto.randomUUID(),  // one per question: a re-send attaches, never re-generates
    },
    body: JSON.stringify({ query, api_key: apiKey }),
    signal,
    openWhenHidden: true,       // else a hidden tab drops the stream (it would resume, but why reconnect)
    async onopen(response) {
      if (response.ok && response.headers.get("content-type") === EventStreamContentType) return;
      const body = await response.json().catch(() => ({}));
      throw new FatalError(body.message || `HTTP ${response.status}`);
    },
    onmessage(msg) {
      if (!msg.event) return;   // a keep-alive comment arrives as an empty message: ignore it
      const data = JSON.parse(msg.data);
      if (msg.event === "metadata") runId = data.run_id;
      else if (msg.event === "data") { text += data; onText(data); }
      else if (msg.event === "end") ended = true;
      else if (msg.event === "error") throw new FatalError(data.message);
    },
    onclose() {
      if (!ended) throw new Interrupted("The stream ended before the answer was complete.");
    },
    onerror(err) {
      if (err instanceof FatalError || ++retries > maxRetries) throw err;
      return 1000;              // retry in 1 s: the re-POST carries Last-Event-ID and resumes the run
    },
  });
  return text;
}
