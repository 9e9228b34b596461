// Renders a model's answer (Markdown) into an element, with a Copy button on each code block.
// The renderer is markdown-it (vendor/, see the comment at the top of chat.js for why), set so no
// HTML from the model reaches the DOM: `html: false` escapes raw HTML as text, and its link check
// refuses javascript:, vbscript:, file: and non-image data: URLs. The page's CSP blocks any inline
// script or handler on top of that.
import markdownit from "./vendor/markdown-it.esm.min.mjs";

const md = markdownit({ html: false, linkify: false, typographer: false });

// Links in an answer open in a new tab, so following one does not lose the conversation.
md.renderer.rules.link_open = (tokens, index, options, env, self) => {
  tokens[index].attrSet("target", "_blank");
  tokens[index].attrSet("rel", "noopener noreferrer");
  return self.renderToken(tokens, index, options);
};

// Replaces the element's content with `text` rendered; safe to call again as more text arrives.
export function renderMarkdown(element, text) {
  element.innerHTML = md.render(text);
  for (const pre of element.querySelectorAll("pre")) addCopyButton(pre);
}

function addCopyButton(pre) {
  const code = pre.querySelector("code") ?? pre;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.addEventListener("click", () => copy(button, code));
  const block = document.createElement("div");
  block.className = "code-block";
  pre.replaceWith(block);
  block.append(button, pre);
}

// The clipboard API needs a secure context (https, or localhost); elsewhere the code is selected
// instead, for Ctrl+C.
async function copy(button, code) {
  try {
    await navigator.clipboard.writeText(code.textContent);
    button.textContent = "Copied";
  } catch {
    getSelection()?.selectAllChildren(code);
    button.textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => {
    button.textContent = "Copy";
  }, 2000);
}
