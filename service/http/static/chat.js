// The chat page: wires the form to streamChat (sse-client.mjs) and keeps the transcript.
// States (on #status's data-state): idle, waiting, streaming, done, stopped, error.
// Each question continues the page's conversation: the first sends conversation_id "new", the
// service issues an id in its metadata, and the page sends that id until "New conversation".
//
// Answers are Markdown, rendered by markdown-it (vendor/markdown-it.esm.min.mjs, MIT, vendored
// from npm; see markdown.mjs). Chosen over marked because it is safe on its own: with
// `html: false` it escapes raw HTML and it refuses javascript: links, where marked passes HTML
// through and needs a sanitiser (DOMPurify) as a second dependency. It is CommonMark-compliant
// and ships a self-contained ES module build, so there is nothing to build and no global.
import { renderMarkdown } from "./markdown.mjs";
import { streamChat } from "./sse-client.mjs";

const STOP_FALLBACK_MS = 5000;

const form = document.getElementById("ask");
const query = document.getElementById("query");
const apiKey = document.getElementById("api-key");
const send = document.getElementById("send");
const stop = document.getElementById("stop");
const status = document.getElementById("status");
const transcript = document.getElementById("transcript");
const notice = document.getElementById("notice");
const pipeline = document.getElementById("pipeline");
const newConversation = document.getElementById("new-conversation");
const conversation = document.getElementById("conversation");

let conversationId = "new";

let controller = null; // the current question's request, while it runs
let runId = null; // from the metadata event: what Stop deletes
let stopping = false;
let turn = null; // the current question's place in the transcript

// Stop is one request, DELETE /runs/{id}: the service then ends the answer's stream itself with a
// `cancelled` error event, so the POST /chat ends cleanly, with nothing aborted. (It used to abort
// first and then delete; the abort often ended the run first, and the DELETE got a 404.) Before
// the metadata names the run there is nothing to delete, so Stop aborts the request; it does so
// too if the DELETE fails, or if the stream has still not ended a few seconds after it.
async function stopRun() {
  if (controller === null || stopping) return;
  stopping = true;
  stop.disabled = true;
  const current = controller;
  const abort = () => {
    if (controller === current) current.abort();
  };
  if (runId === null) return abort();
  try {
    const response = await fetch(`runs/${encodeURIComponent(runId)}`, { method: "DELETE" });
    if (!response.ok) return abort();
  } catch {
    return abort();
  }
  setTimeout(abort, STOP_FALLBACK_MS);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (controller === null) ask();
});
stop.addEventListener("click", stopRun);
newConversation.addEventListener("click", () => {
  conversationId = "new";
  transcript.replaceChildren();
  turn = null;
  setState("idle", "Ask a question.");
  showConversation(null, 0);
});

async function ask() {
  const question = query.value;
  query.value = "";
  controller = new AbortController();
  runId = null;
  stopping = false;
  turn = addTurn(question);
  const current = turn;
  setBusy(true);
  setState("waiting", "Waiting for the answer…");
  try {
    await streamChat({
      query: question,
      apiKey: apiKey.value,
      fields: { conversation_id: conversationId, pipeline: pipeline.value },
      url: "chat", // relative to the page, so it also works under a path prefix
      signal: controller.signal,
      onMetadata: showMetadata,
      onText(text) {
        if (status.dataset.state !== "streaming") setState("streaming", "Answering…");
        current.text += text;
        renderSoon(current);
      },
    });
    render(current);
    setState("done", "Answer complete.");
    showConversation(conversationId, Number(conversation.dataset.turns) + 1);
  } catch (error) {
    render(current);
    if (error.kind === "aborted" || (stopping && error.type === "cancelled")) {
      setState("stopped", "Stopped. The answer above is incomplete.");
    } else {
      setState("error", error.message);
      if (error.kind === "http" && query.value === "") query.value = question; // refused: let them edit it
    }
  } finally {
    controller = null;
    runId = null;
    setBusy(false);
  }
}

function addTurn(question) {
  const element = document.createElement("article");
  element.className = "turn";
  const asked = document.createElement("p");
  asked.className = "question";
  asked.textContent = question;
  const answer = document.createElement("div");
  answer.className = "answer";
  const sources = document.createElement("p");
  sources.className = "sources hint";
  sources.hidden = true;
  element.append(asked, answer, sources);
  transcript.append(element);
  transcript.scrollTop = transcript.scrollHeight;
  return { answer, sources, text: "", frame: 0 };
}

// Renders at most once a frame while text streams in: each render parses the whole answer again.
function renderSoon(entry) {
  if (entry.frame === 0) entry.frame = requestAnimationFrame(() => render(entry));
}

// Follows the answer down while the reader is at the bottom; one who scrolled up to read stays put.
function render(entry) {
  cancelAnimationFrame(entry.frame);
  entry.frame = 0;
  const following = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 48;
  renderMarkdown(entry.answer, entry.text);
  if (following) transcript.scrollTop = transcript.scrollHeight;
}

function setState(state, message) {
  status.dataset.state = state;
  status.textContent = message;
}

function setBusy(busy) {
  send.disabled = busy;
  stop.disabled = !busy;
  newConversation.disabled = busy;
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
  turn.sources.hidden = !metadata.sources;
  turn.sources.textContent = files.length ? `Sources: ${files.join(", ")}` : "Sources: no document matched.";
}

// turns: completed turns the conversation holds (the ones the next question will see).
function showConversation(id, turns) {
  conversation.dataset.turns = String(turns);
  conversation.textContent =
    id === null ? "New conversation." : `Conversation: ${turns} earlier turn${turns === 1 ? "" : "s"} remembered.`;
}
