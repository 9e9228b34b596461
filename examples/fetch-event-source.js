import { fetchEventSource, EventStreamContentType } from "@microsoft/fetch-event-source";

class FatalError extends Error {}

// Streams one answer; resolves with the full text, rejects with a FatalError.
export async function ask(query, apiKey, { onText = () => {}, signal } = {}) {
  let text = "";
  let ended = false;
  await fetchEventSource("/chat", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, api_key: apiKey }),
    signal,                     // AbortController.abort() stops the run on the server too
    openWhenHidden: true,       // else a hidden tab aborts and re-POSTs: a second paid generation
    async onopen(response) {
      if (response.ok && response.headers.get("content-type") === EventStreamContentType) return;
      const body = await response.json().catch(() => ({}));
      throw new FatalError(body.message || `HTTP ${response.status}`);
    },
    onmessage(msg) {
      if (!msg.event) return;   // a keep-alive comment arrives as an empty message: ignore it
      const data = JSON.parse(msg.data);
      if (msg.event === "data") { text += data; onText(data); }
      else if (msg.event === "end") ended = true;
      else if (msg.event === "error") throw new FatalError(data.message);
    },
    onclose() {
      if (!ended) throw new FatalError("The stream ended before the answer was complete.");
    },
    onerror(err) {
      throw err;                // rethrow: a retry would POST again and start a new paid run
    },
  });
  return text;
}
