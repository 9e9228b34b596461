// The chat page: wires the form to streamChat (sse-client.mjs) and shows the run's state.
// States (on #status's data-state): idle, waiting, streaming, done, stopped, error.
import { streamChat } from "./sse-client.mjs";

const form = document.getElementById("ask");
const query = document.getElementById("query");
const apiKey = document.getElementById("api-key");
const send = document.getElementById("send");
const stop = document.getElementById("stop");
const status = document.getElementById("status");
const answer = document.getElementById("answer");
const notice = document.getElementById("notice");

let controller = null;

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (controller === null) ask();
});
stop.addEventListener("click", () => controller?.abort());

async function ask() {
  controller = new AbortController();
  answer.textContent = "";
  setBusy(true);
  setState("waiting", "Waiting for the answer…");
  try {
    const result = await streamChat({
      query: query.value,
      apiKey: apiKey.value,
      url: "chat", // relative to the page, so it also works under a path prefix
      signal: controller.signal,
      onMetadata: showNotice,
      onText(text) {
        if (status.dataset.state !== "streaming") setState("streaming", "Streaming…");
        answer.append(text);
      },
    });
    setState("done", `Done: ${result.end.chunks} chunks.`);
  } catch (error) {
    if (error.kind === "aborted") setState("stopped", "Stopped. The answer above is incomplete.");
    else setState("error", error.message);
  } finally {
    controller = null;
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

function showNotice(metadata) {
  notice.hidden = !metadata.notice;
  notice.textContent = metadata.notice ?? "";
}
