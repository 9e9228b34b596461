// The chat page: wires the form to streamChat (sse-client.mjs) and shows the run's state.
// States (on #status's data-state): idle, waiting, streaming, done, stopped, error.
// Each question continues the page's conversation: the first sends conversation_id "new", the
// service issues an id in its metadata, and the page sends that id until "New conversation".
import { streamChat } from "./sse-client.mjs";

const form = document.getElementById("ask");
const query = document.getElementById("query");
const apiKey = document.getElementById("api-key");
const send = document.getElementById("send");
const stop = document.getElementById("stop");
const status = document.getElementById("status");
const answer = document.getElementById("answer");
const notice = document.getElementById("notice");
const pipeline = document.getElementById("pipeline");
const newConversation = document.getElementById("new-conversation");
const conversation = document.getElementById("conversation");
const sources = document.getElementById("sources");

let conversationId = "new";

let controller = null;
let runId = null; // from the metadata event: what Stop deletes

// Stop stops reading, then ends the run on the server at once (DELETE /runs/{id}). Aborting alone
// would also cancel a plain POST /chat run, but only after the resume grace when one is configured.
// Reading stops first, so the run's own `cancelled` error event can never reach the page.
function stopRun() {
  const id = runId;
  controller?.abort();
  if (id !== null) {
    fetch(`runs/${encodeURIComponent(id)}`, { method: "DELETE", keepalive: true }).catch(() => {});
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (controller === null) ask();
});
stop.addEventListener("click", stopRun);
newConversation.addEventListener("click", () => {
  conversationId = "new";
  answer.textContent = "";
  sources.hidden = true;
  showConversation(null, 0);
});

async function ask() {
  controller = new AbortController();
  runId = null;
  answer.textContent = "";
  setBusy(true);
  setState("waiting", "Waiting for the answer…");
  try {
    const result = await streamChat({
      query: query.value,
      apiKey: apiKey.value,
      fields: { conversation_id: conversationId, pipeline: pipeline.value },
      url: "chat", // relative to the page, so it also works under a path prefix
      signal: controller.signal,
      onMetadata: showMetadata,
      onText(text) {
        if (status.dataset.state !== "streaming") setState("streaming", "Streaming…");
        answer.append(text);
      },
    });
    setState("done", `Done: ${result.end.chunks} chunks.`);
    showConversation(conversationId, Number(conversation.dataset.turns) + 1);
  } catch (error) {
    if (error.kind === "aborted") setState("stopped", "Stopped. The answer above is incomplete.");
    else setState("error", error.message);
  } finally {
    controller = null;
    runId = null;
    setBusy(false);
  }
}

function setState(state, message) {
  status.dataset.state = state;
  status.textContent = message;
}

function setBusy(busy) {
  send.disabled = busy;
  stop.disabled = !busy;
}

function showMetadata(metadata) {
  runId = metadata.run_id ?? null;
  notice.hidden = !metadata.notice;
  notice.textContent = metadata.notice ?? "";
  if (metadata.conversation_id) {
    conversationId = metadata.conversation_id;
    showConversation(conversationId, metadata.history_turns ?? 0);
  }
  const files = (metadata.sources ?? []).map((source) => source.file);
  sources.hidden = !metadata.sources;
  sources.textContent = files.length ? `Sources: ${files.join(", ")}` : "Sources: no document matched.";
}

// turns: completed turns the conversation holds (the ones the next question will see).
function showConversation(id, turns) {
  conversation.dataset.turns = String(turns);
  conversation.textContent =
    id === null ? "New conversation." : `Conversation: ${turns} earlier turn${turns === 1 ? "" : "s"} remembered.`;
}
