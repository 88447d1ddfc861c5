// The demo page's script: a chat room over one channel (publish with fetch POST, receive with one
// EventSource) and an "ask" box that streams an answer from /v1/stream. Plain JavaScript, no
// library; text is always inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_SHOWN = 500; // messages kept on the page; older ones are removed

// ---- chat ----------------------------------------------------------------------------------

// State, exposed for tests and curious users: the EventSource, the last event id received, the
// room, and how many messages were shown.
const chat = { es: null, lastId: "", room: "", seen: 0, timer: 0, backoff: 0 };
window.hscChat = chat;

function setConn(state) {
  $("conn").dataset.state = state;
  $("conn").textContent = state;
}

function append(li) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function showMessage(id, who, text) {
  const li = document.createElement("li");
  li.className = "msg";
  li.dataset.id = id;
  if (who === $("name").value) li.classList.add("mine");
  const w = document.createElement("span");
  w.className = "who";
  w.textContent = who;
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = text;
  li.append(w, t);
  append(li);
  chat.seen++;
}

function showNotice(reason, text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.dataset.reason = reason;
  li.textContent = text;
  append(li);
}

// Every event of the room carries an id; keep the last one to resume from it.
function current(e) {
  if (e.target !== chat.es) return false; // an event of a stream we already left
  if (e.lastEventId) chat.lastId = e.lastEventId;
  return true;
}

function onChat(e) {
  if (!current(e)) return;
  let m = null;
  try {
    m = JSON.parse(e.data);
  } catch (err) {
    m = null;
  }
  if (m && typeof m.text === "string") showMessage(e.lastEventId, String(m.name || "anonymous"), m.text);
  else showMessage(e.lastEventId, "?", e.data);
}

// Events published without a type (curl -d, hsc publish) show up too.
function onPlain(e) {
  if (current(e)) showMessage(e.lastEventId, "—", e.data);
}

// hscd's notice when it cannot resume exactly (docs/api.md, "Resume").
function onGap(e) {
  if (e.target !== chat.es) return;
  let info = {};
  try {
    info = JSON.parse(e.data);
  } catch (err) {
    info = {};
  }
  const n = info.replayed || 0;
  const texts = {
    epoch: `The server restarted and its history was reset; ${n} message(s) since then follow.`,
    expired: `Some messages were too old to be replayed; the ${n} still kept follow.`,
    unknown: "Could not resume from the last message seen; new messages follow.",
  };
  showNotice(info.reason || "unknown", texts[info.reason] || texts.unknown);
}

// One EventSource for the room. A room just joined starts with the messages it still holds
// (lastEventId=earliest), so a new tab is not empty. The browser reconnects by itself, sending
// Last-Event-ID, which wins over that; when it gives up (a 5xx while hscd restarts, say), a new
// one resumes with lastEventId= the last id seen, after a backoff.
function connect() {
  clearTimeout(chat.timer);
  if (chat.es) chat.es.close();
  const url = "/v1/events?channel=" + encodeURIComponent(chat.room) +
    "&lastEventId=" + encodeURIComponent(chat.lastId || "earliest");
  const es = new EventSource(url);
  chat.es = es;
  setConn(chat.lastId ? "reconnecting" : "connecting");
  es.onopen = () => {
    if (es !== chat.es) return;
    chat.backoff = 0;
    setConn("live");
  };
  es.onerror = () => {
    if (es !== chat.es) return;
    setConn("reconnecting");
    if (es.readyState === EventSource.CLOSED) {
      chat.backoff = Math.min(30000, chat.backoff ? chat.backoff * 2 : 1000);
      chat.timer = setTimeout(connect, chat.backoff / 2 + Math.random() * chat.backoff / 2);
    }
  };
  es.addEventListener("chat", onChat);
  es.addEventListener("message", onPlain);
  es.addEventListener("hsc.gap", onGap);
}

function join() {
  const name = $("name").value.trim();
  const room = $("room").value.trim();
  if (!name || !room) return;
  chat.room = room;
  chat.lastId = "";
  chat.seen = 0;
  $("messages").replaceChildren();
  const q = new URLSearchParams({ room, name });
  history.replaceState(null, "", "?" + q.toString());
  connect();
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  join();
});

$("say-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !chat.room) return;
  $("send").disabled = true;
  $("say-error").textContent = "";
  try {
    // Not shown here: the message appears when it comes back over the EventSource, once.
    const res = await fetch("/v1/events?channel=" + encodeURIComponent(chat.room) + "&event=chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: $("name").value.trim(), text }),
    });
    if (!res.ok) throw new Error((await res.text()).trim() || "HTTP " + res.status);
    $("text").value = "";
  } catch (err) {
    $("say-error").textContent = "Not sent: " + err.message;
  } finally {
    $("send").disabled = false;
    $("text").focus();
  }
});

// ---- ask -----------------------------------------------------------------------------------

let ctrl = null;

$("ask").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (ctrl) ctrl.abort();
  const mine = new AbortController();
  ctrl = mine;
  const t0 = performance.now();
  let first = 0;
  $("answer").textContent = "";
  $("ask-meta").textContent = "";
  $("state").textContent = "streaming…";
  $("stop").disabled = false;
  try {
    const res = await fetch("/v1/stream", { method: "POST", body: $("q").value, signal: mine.signal });
    if (!res.ok) throw new Error((await res.text()).trim() || "HTTP " + res.status);
    // A cut answer (no last chunk) makes read() reject: it is never shown as complete.
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!first) first = performance.now();
      $("answer").textContent += value;
    }
    $("state").textContent = "complete";
  } catch (err) {
    if (ctrl !== mine && err.name === "AbortError") return; // replaced by a newer question
    $("state").textContent = err.name === "AbortError" ? "stopped" : "failed: " + err.message;
  } finally {
    if (ctrl === mine) {
      $("stop").disabled = true;
      ctrl = null;
      if (first)
        $("ask-meta").textContent = `first piece after ${Math.round(first - t0)} ms, ` +
          `${Math.round(performance.now() - t0)} ms in all`;
    }
  }
});

// Aborting the request closes its connection; hscd then stops the responder.
$("stop").addEventListener("click", () => ctrl && ctrl.abort());

// ---- start ---------------------------------------------------------------------------------

{
  const q = new URLSearchParams(location.search);
  $("name").value = q.get("name") || "guest-" + Math.floor(1000 + Math.random() * 9000);
  $("room").value = q.get("room") || "lobby";
  for (const el of document.querySelectorAll(".origin")) el.textContent = location.origin;
  join();
}
