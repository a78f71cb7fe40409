// The playground: a chat client of the server's own OpenAI API.
//
// Replies stream from POST v1/chat/completions (fetch + ReadableStream,
// server-sent events); in side-by-side mode the same conversation goes to an
// adapter's base model and to the adapter at once, each reply in its column.
// Nothing here trusts model output: it is rendered by markdown.js, which
// escapes it before adding its own few tags.
import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "parrot.apiKey"; // sessionStorage: this tab only
const SETTINGS_STORE = "parrot.settings"; // localStorage: sampling and the system prompt
const SETTINGS = ["temperature", "max-tokens", "top-p", "min-p", "system"];

const state = {
  models: [], // cards from GET v1/models
  turns: [], // {user, replies: [{model, text, ok}]}
  controllers: new Set(), // AbortControllers of the streams running
  admin: false, // the LoRA admin routes answer
  retry: 0, // timer reloading the models after a failure
  versions: new Map(), // adapter -> version last seen in system_fingerprint
};

// ---- HTTP -------------------------------------------------------------

class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

// errorText reads an error response: OpenAI's {"error": {"message"}},
// vLLM's admin {"message"}, or plain text.
async function errorText(resp) {
  const body = await resp.text().catch(() => "");
  let msg = body.trim();
  try {
    const j = JSON.parse(body);
    msg = j?.error?.message ?? j?.message ?? msg;
  } catch {
    // not JSON: the text as it is
  }
  return msg || resp.statusText || "no details";
}

async function request(path, init = {}) {
  let resp;
  try {
    resp = await fetch(path, { ...init, headers: headers(), cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new APIError(0, `Cannot reach the server (${err.message}). It may be restarting: try again in a moment.`);
  }
  if (!resp.ok) throw new APIError(resp.status, await errorText(resp));
  return resp;
}

// describe turns an error into a sentence for people.
function describe(err) {
  if (err.name === "AbortError") return "Stopped.";
  if (!(err instanceof APIError)) return `Error: ${err.message}`;
  if (err.status === 0) return err.message;
  if (err.status === "stream") return `The server stopped the reply: ${err.message}`;
  if (err.status === 401) return `The server needs an API key (401): ${err.message} Enter it under Access.`;
  return `The server answered ${err.status}: ${err.message}`;
}

function showError(err) {
  const box = $("error");
  box.textContent = typeof err === "string" ? err : describe(err);
  box.hidden = false;
  if (err instanceof APIError && err.status === 401) $("api-key").focus();
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// sseData yields the data of each server-sent event of a response body.
async function* sseData(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        } // event:, id:, retry: and comments are not used by chat completions
      }
    }
    if (data.length) yield data.join("\n");
  } finally {
    reader.releaseLock();
  }
}

// ---- models and adapters ----------------------------------------------

const bases = () => state.models.filter((m) => !m.parent);
const adapters = () => state.models.filter((m) => m.parent);

function option(value, label = value) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  return o;
}

function fillSelect(select, groups) {
  const keep = select.value;
  select.replaceChildren();
  for (const [label, models] of groups) {
    if (!models.length) continue;
    const g = document.createElement("optgroup");
    g.label = label;
    for (const m of models) g.append(option(m.id));
    select.append(g);
  }
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

async function loadModels() {
  clearTimeout(state.retry);
  const status = $("server-status");
  try {
    const resp = await request("v1/models");
    const list = await resp.json();
    state.models = Array.isArray(list.data) ? list.data : [];
    fillSelect($("model"), [["Base models", bases()], ["Adapters", adapters()]]);
    fillSelect($("adapter"), [["Adapters", adapters()]]);
    const n = adapters().length;
    $("compare").disabled = n === 0;
    if (n === 0) setCompare(false);
    status.textContent = `Connected: ${bases().length} model${bases().length === 1 ? "" : "s"}, ${n} adapter${n === 1 ? "" : "s"}`;
    status.dataset.state = "ok";
    await probeAdmin();
    renderAdapters();
  } catch (err) {
    status.textContent = describe(err);
    status.dataset.state = "error";
    if (err.status === 401) {
      showError(err);
      return; // waits for a key
    }
    state.retry = setTimeout(loadModels, 3000); // loading, restarting, down
  }
}

// probeAdmin finds out whether the admin routes exist: an empty body is
// refused by them (400) and by the router (404) when they are off.
async function probeAdmin() {
  try {
    await request("v1/load_lora_adapter", { method: "POST", body: "{}" });
    state.admin = true;
  } catch (err) {
    state.admin = err instanceof APIError && err.status !== 0 && err.status !== 404 && err.status !== 405 && err.status !== 401;
  }
  $("admin").hidden = !state.admin;
}

function renderAdapters() {
  const list = $("adapter-list");
  list.replaceChildren();
  if (!adapters().length) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = "No adapters are served.";
    list.append(li);
    return;
  }
  for (const a of adapters()) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = a.id;
    const info = document.createElement("span");
    info.className = "hint";
    const version = state.versions.get(a.id);
    info.textContent = `on ${a.parent} · servable${version ? ` · version ${version.slice(0, 12)}` : ""}`;
    li.append(name, " ", info);
    if (state.admin) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "secondary small";
      b.textContent = "Unload";
      b.setAttribute("aria-label", `Unload ${a.id}`);
      b.addEventListener("click", () => admin("unload", { lora_name: a.id }));
      li.append(" ", b);
    }
    list.append(li);
  }
}

async function admin(action, body) {
  const status = $("admin-status");
  status.textContent = action === "load" ? `Loading ${body.lora_name}…` : `Unloading ${body.lora_name}…`;
  try {
    const resp = await request(`v1/${action}_lora_adapter`, { method: "POST", body: JSON.stringify(body) });
    status.textContent = (await resp.text()) || "Done.";
  } catch (err) {
    status.textContent = describe(err);
  }
  await loadModels();
}

// ---- conversation -------------------------------------------------------

function setCompare(on) {
  $("compare").checked = on;
  $("compare-controls").hidden = !on;
  $("model").disabled = on; // the columns' models are the adapter and its base
}

function number(id) {
  const v = $(id).value.trim();
  if (v === "") return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

// sides are the models a message goes to: one, or an adapter's base and
// the adapter.
function sides() {
  if (!$("compare").checked) return [$("model").value].filter(Boolean);
  const adapter = adapters().find((m) => m.id === $("adapter").value);
  if (!adapter) return [];
  const base = bases().find((m) => m.id === adapter.parent) ?? bases()[0];
  return [base?.id, adapter.id].filter(Boolean);
}

// history is the conversation as the model in column col has seen it.
function history(col) {
  const msgs = [];
  const system = $("system").value.trim();
  if (system) msgs.push({ role: "system", content: system });
  for (const t of state.turns) {
    const r = t.replies[col] ?? t.replies[0];
    if (!r?.ok) continue; // failed or stopped: as if not sent
    msgs.push({ role: "user", content: t.user });
    if (r.text) msgs.push({ role: "assistant", content: r.text });
  }
  return msgs;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function atBottom(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
}

async function send() {
  const prompt = $("prompt");
  const text = prompt.value.trim();
  if (!text || state.controllers.size) return;
  const models = sides();
  if (!models.length) {
    showError("No model to send to: reload the models, or pick an adapter for side by side.");
    return;
  }
  clearError();
  $("empty")?.remove();
  const past = models.map((_, col) => history(col));
  const turn = { user: text, replies: models.map((model) => ({ model, text: "", ok: false })) };
  state.turns.push(turn);
  prompt.value = "";

  const box = $("conversation");
  const node = el("section", "turn");
  node.append(el("div", "msg user", text));
  const replies = el("div", models.length > 1 ? "replies pair" : "replies");
  node.append(replies);
  box.append(node);
  box.scrollTop = box.scrollHeight;

  setBusy(true);
  await Promise.all(
    models.map((model, col) => {
      const view = el("article", "msg assistant");
      view.setAttribute("aria-label", `Reply from ${model}`);
      const who = el("p", "who", model);
      if (models.length > 1) who.prepend(el("span", "tag", col === 0 ? "base" : "adapter"));
      const md = el("div", "md");
      const stats = el("p", "stats", "waiting…");
      view.append(who, md, stats);
      replies.append(view);
      return stream(model, [...past[col], { role: "user", content: text }], turn.replies[col], { view, md, stats });
    }),
  );
  setBusy(false);
  renderAdapters();
  if (document.activeElement !== $("api-key")) prompt.focus(); // a 401 sent it to the key
}

async function stream(model, messages, reply, ui) {
  const ctl = new AbortController();
  state.controllers.add(ctl);
  ui.view.setAttribute("aria-busy", "true");
  const box = $("conversation");
  let frame = 0;
  const paint = () => {
    frame = 0;
    const follow = atBottom(box);
    ui.md.innerHTML = renderMarkdown(reply.text);
    if (follow) box.scrollTop = box.scrollHeight;
  };
  const body = {
    model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: number("temperature"),
    top_p: number("top-p"),
    min_p: number("min-p"),
    max_tokens: number("max-tokens"),
  };
  const t0 = performance.now();
  let tFirst = 0;
  let chunks = 0;
  let usage = null;
  let finish = "";
  try {
    const resp = await request("v1/chat/completions", { method: "POST", body: JSON.stringify(body), signal: ctl.signal });
    for await (const data of sseData(resp.body)) {
      if (data === "[DONE]") break;
      const ev = JSON.parse(data);
      if (ev.error) throw new APIError("stream", ev.error.message ?? "no details");
      if (ev.system_fingerprint) state.versions.set(model, ev.system_fingerprint); // an adapter's version
      if (ev.usage) usage = ev.usage;
      for (const choice of ev.choices ?? []) {
        const piece = choice.delta?.content;
        if (piece) {
          if (!tFirst) tFirst = performance.now();
          chunks++;
          reply.text += piece;
          if (!frame) frame = requestAnimationFrame(paint);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (!tFirst) ui.stats.textContent = "prefill…";
    }
    reply.ok = true;
  } catch (err) {
    const e = el("p", "reply-error", describe(err));
    e.setAttribute("role", "alert");
    ui.view.append(e);
    if (err instanceof APIError && err.status === 401) showError(err);
  } finally {
    state.controllers.delete(ctl);
    if (frame) cancelAnimationFrame(frame);
    paint();
    if (!reply.text) ui.md.append(el("p", "hint", reply.ok ? "(empty reply)" : ""));
    ui.view.setAttribute("aria-busy", "false");
    const tEnd = performance.now();
    const tokens = usage?.completion_tokens ?? chunks;
    ui.stats.textContent = statsText(tFirst ? tFirst - t0 : NaN, tokens, tFirst ? tEnd - tFirst : NaN, finish);
    Object.assign(ui.stats.dataset, {
      ttftMs: tFirst ? (tFirst - t0).toFixed(1) : "",
      tokens: String(tokens),
      tokensPerSecond: rate(tokens, tEnd - tFirst) ?? "",
    });
  }
}

// rate is the decode speed: tokens after the first over the time since it.
function rate(tokens, ms) {
  if (!(tokens > 1) || !(ms > 0)) return null;
  return (((tokens - 1) * 1000) / ms).toFixed(1);
}

function statsText(ttft, tokens, decodeMs, finish) {
  const parts = [];
  if (Number.isFinite(ttft)) parts.push(`TTFT ${Math.round(ttft)} ms`);
  const r = rate(tokens, decodeMs);
  if (r !== null) parts.push(`${r} tok/s`);
  parts.push(`${tokens} token${tokens === 1 ? "" : "s"}`);
  if (finish) parts.push(finish);
  return parts.join(" · ");
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

function stop() {
  for (const c of state.controllers) c.abort();
}

function clearConversation() {
  stop();
  state.turns = [];
  const box = $("conversation");
  box.replaceChildren(el("p", "empty", "A new conversation."));
  box.firstChild.id = "empty";
  clearError();
  $("prompt").focus();
}

// ---- settings -------------------------------------------------------------

function restoreSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_STORE) ?? "{}");
    for (const id of SETTINGS) if (typeof saved[id] === "string") $(id).value = saved[id];
  } catch {
    // unreadable settings: the defaults
  }
  $("api-key").value = sessionStorage.getItem(KEY_STORE) ?? "";
}

function saveSettings() {
  const s = {};
  for (const id of SETTINGS) s[id] = $(id).value;
  localStorage.setItem(SETTINGS_STORE, JSON.stringify(s));
}

// ---- start ------------------------------------------------------------------

function start() {
  restoreSettings();
  $("settings").addEventListener("submit", (e) => e.preventDefault());
  $("settings").addEventListener("change", saveSettings);
  $("api-key").addEventListener("change", () => {
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    clearError();
    loadModels();
  });
  $("compare").addEventListener("change", () => setCompare($("compare").checked));
  $("refresh-models").addEventListener("click", loadModels);
  $("load-adapter").addEventListener("click", () => {
    const lora_name = $("load-name").value.trim();
    const lora_path = $("load-path").value.trim() || lora_name;
    if (lora_name) admin("load", { lora_name, lora_path });
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      send();
    }
  });
  $("stop").addEventListener("click", stop);
  $("clear").addEventListener("click", clearConversation);
  loadModels();
}

// For tests and the curious: the renderer, as the page uses it.
window.parrotPlayground = { renderMarkdown };
start();
