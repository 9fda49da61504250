// The review page: one word at a time, keyboard first. Enter saves the typed text and moves on, Escape or
// Alt+S skips, Alt+I marks the word illegible. Keys a Bangla input method needs are left alone: nothing
// happens while a composition is open. After every action (and when the tab gets the focus again) the
// list is fetched from the server, so two tabs never overwrite each other's words.
"use strict";

const tab = Math.random().toString(36).slice(2, 10);
let items = [];
let current = null;
let busy = false;

const $ = (id) => document.getElementById(id);

async function refresh() {
  const response = await fetch("/api/items", {cache: "no-store"});
  const data = await response.json();
  items = data.items;
  showProgress(data.progress);
  $("command").textContent = data.train_command;
  $("command-box").hidden = data.progress.saved === 0;
  showQueue();
  const keep = current && items.find((item) => item.id === current.id && item.state !== "saved"
                                               && item.state !== "illegible");
  if (keep) {  // still to do: leave what is typed as it is
    current = keep;
    for (const li of $("queue").children) li.classList.toggle("current", Number(li.dataset.id) === keep.id);
    return;
  }
  show(nextItem());
}

function nextItem() {
  return items.find((item) => item.state === "pending") || items.find((item) => item.state === "skipped") || null;
}

function showProgress(p) {
  let line = `${p.reviewed} of ${p.total} reviewed, ${p.changed} changed`;
  if (p.illegible) line += `, ${p.illegible} illegible`;
  if (p.skipped) line += `, ${p.skipped} skipped`;
  $("progress").textContent = line;
  $("done").hidden = p.pending + p.skipped > 0;
}

function confidenceText(item) {
  return item.confidence === null ? "confidence unknown" : `confidence ${(item.confidence * 100).toFixed(1)}%`;
}

function showQueue() {
  const list = $("queue");
  list.replaceChildren(...items.map((item) => {
    const li = document.createElement("li");
    li.className = item.state + (current && item.id === current.id ? " current" : "");
    const shown = item.correction ?? item.reading ?? "(no reading)";
    li.textContent = `${shown} - ${confidenceText(item)} - ${item.state}`;
    li.dataset.id = item.id;
    li.addEventListener("click", () => show(items.find((other) => other.id === item.id)));
    return li;
  }));
}

function show(item) {
  current = item;
  $("word").hidden = item === null;
  if (item === null) return;
  $("broken").hidden = true;
  $("crop").hidden = false;
  $("crop").src = `/image/${item.id}`;
  $("confidence").textContent = confidenceText(item);
  $("source").textContent = item.source + (item.error ? ` (${item.error})` : "");
  const input = $("text");
  input.value = item.correction ?? item.reading ?? "";
  input.focus();
  input.select();
  $("message").textContent = "";
  for (const li of $("queue").children) li.classList.toggle("current", Number(li.dataset.id) === item.id);
}

async function act(action) {
  if (current === null || busy) return;
  busy = true;
  try {
    const body = {action, tab};
    if (action === "save") body.text = $("text").value;
    const response = await fetch(`/api/items/${current.id}`, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const data = await response.json();
    if (!response.ok) {
      $("message").textContent = data.error;
      return;
    }
    current = null;
    await refresh();
  } catch (err) {
    $("message").textContent = `not saved: ${err}`;
  } finally {
    busy = false;
  }
}

$("crop").addEventListener("error", () => {
  $("crop").hidden = true;
  $("broken").hidden = false;
});
$("form").addEventListener("submit", (event) => { event.preventDefault(); act("save"); });
$("save").addEventListener("click", () => act("save"));
$("skip").addEventListener("click", () => act("skip"));
$("illegible").addEventListener("click", () => act("illegible"));
document.addEventListener("keydown", (event) => {
  if (event.isComposing || event.keyCode === 229) return;  // an input method is composing: its keys
  const key = event.key.toLowerCase();
  if (event.key === "Escape" || (event.altKey && key === "s") || (event.altKey && event.code === "KeyS")) {
    event.preventDefault();
    act("skip");
  } else if (event.altKey && (key === "i" || event.code === "KeyI")) {
    event.preventDefault();
    act("illegible");
  }
});
window.addEventListener("focus", () => { if (!busy) refresh(); });
refresh();
