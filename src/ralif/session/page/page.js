
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
let state = null;
let chosen = null;  // an item the labeler jumped to; otherwise the first one waiting
const $ = id => document.getElementById(id);

function requestId() {
  // crypto.randomUUID exists only in secure contexts; getRandomValues exists everywhere.
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
}
// This browser's labeler identity, kept across reloads: sent with every label and undo, so
// that undo takes back this labeler's labels only, and the export says who gave each one.
const LABELER_KEY = "ralif-labeler";
function labelerId() {
  let id = null;
  try { id = localStorage.getItem(LABELER_KEY); } catch (e) { id = null; }
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    id = "web-" + requestId().slice(0, 12);
    try { localStorage.setItem(LABELER_KEY, id); } catch (e) { /* no storage: this visit only */ }
  }
  return id;
}
const WHO = labelerId();
async function api(path, body) {
  const opts = {headers: {"X-Ralif-Token": TOKEN}};
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = {};
  try { data = await r.json(); } catch (e) { data = {error: r.statusText}; }
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
function describe(it) {
  if (it.state === "labeled") return state.classes[it.label];
  if (it.state === "held_out") return "held out";
  return it.state;
}
function current() {
  if (!state) return null;
  if (chosen !== null) {
    const it = state.items.find(x => x.id === chosen);
    if (it) return it;
    chosen = null;
  }
  return state.items.find(x => x.state === "waiting") || null;
}
function showList(cur) {
  const list = $("list");
  list.replaceChildren();
  state.items.forEach(it => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.dataset.item = it.id;
    b.setAttribute("aria-current", cur && cur.id === it.id ? "true" : "false");
    const id = document.createElement("span");
    id.textContent = `${it.id}: `;
    const what = document.createElement("span");
    what.className = it.state;
    what.textContent = describe(it);
    b.append(id, what);
    b.disabled = it.state === "held_out";
    b.onclick = () => { chosen = it.id; show(); };
    li.appendChild(b);
    list.appendChild(li);
  });
}
function show() {
  const box = $("item");
  box.replaceChildren();
  const rounds = state.rounds.join(", ");
  if (state.rounds.length === 0) {
    $("status").textContent = "No batch yet: pick one below, or run ralif session next.";
  } else {
    $("status").textContent =
      `Round ${rounds}: ${state.done} of ${state.items.length} labeled` +
      (state.unsure ? `, ${state.unsure} unsure` : "");
  }
  const it = current();
  box.dataset.item = it ? it.id : "";
  showList(it);
  $("nextbox").hidden = state.waiting > 0;
  if (!$("budget").value) $("budget").value = state.next_budget;
  if (!it) {
    box.textContent = state.rounds.length ? "Batch done. Thank you!" : "Nothing to label.";
    return;
  }
  if (it.kind === "image") {
    const img = document.createElement("img");
    img.src = `/items/${it.id}?token=${encodeURIComponent(TOKEN)}`;
    img.alt = `item ${it.id}`;
    box.appendChild(img);
  } else {
    box.textContent = it.text || `item ${it.id}`;
  }
  if (it.state !== "waiting") {
    const note = document.createElement("p");
    note.textContent = `now: ${describe(it)}`;
    box.appendChild(note);
  }
}
function showClasses() {
  // Built again whenever the classes change (a class added or renamed while the page is open).
  const div = $("classes");
  const names = JSON.stringify(state.classes);
  if (div.dataset.names === names) return;
  div.dataset.names = names;
  div.replaceChildren();
  state.classes.forEach((name, k) => {
    const b = document.createElement("button");
    if (k < 9) {
      const key = document.createElement("kbd");
      key.textContent = String(k + 1);
      b.appendChild(key);
    }
    b.appendChild(document.createTextNode(name));
    b.dataset.class = k;
    b.onclick = () => label(k);
    div.appendChild(b);
  });
}
function fail(e) {
  $("error").textContent = e.message;
  // The refusal may come from a change made elsewhere (a class renamed): show it.
  api("/api/state").then(s => { state = s; showClasses(); show(); }).catch(() => {});
}
function done(s, message) {
  state = s;
  showClasses();
  chosen = null;
  $("error").textContent = "";
  if (message !== undefined) $("last").textContent = message;
  show();
  // The focus leaves the button just used: its ring would look like the next item's answer.
  $("item").focus({preventScroll: true});
}
async function send(body, message) {
  const it = current();
  if (!it) return;
  try {
    done(await api("/api/label", {item: it.id, request_id: requestId(), who: WHO, ...body}),
         `item ${it.id}: ${message}`);
  } catch (e) { fail(e); }
}
// By name: a class renamed or removed meanwhile is refused, never taken for another.
function label(k) { return send({label: state.classes[k]}, state.classes[k]); }
function unsure() { return send({unsure: true}, "unsure"); }
async function undo() {
  try {
    const r = await api("/api/undo", {who: WHO, request_id: requestId()});
    done(r, r.undone === null ? "nothing to undo" :
         `undone: item ${r.undone.item} is now ${r.undone.label === null ? "unlabeled" : state.classes[r.undone.label]}`);
    if (r.undone !== null) { chosen = r.undone.item; show(); }  // ready to be labeled again
  } catch (e) { fail(e); }
}
async function nextBatch() {
  try {
    const s = await api("/api/next", {budget: Number($("budget").value)});
    done(s, `round ${s.rounds[s.rounds.length - 1]} picked`);
  } catch (e) { fail(e); }
}
$("undo").onclick = undo;
$("unsure").onclick = unsure;
$("next").onclick = nextBatch;
document.addEventListener("keydown", ev => {
  if (ev.target instanceof HTMLInputElement) return;
  if (ev.key === "u" || ev.key === "Backspace") { ev.preventDefault(); undo(); return; }
  if (ev.key === "0") { unsure(); return; }
  const k = "123456789".indexOf(ev.key);
  if (k >= 0 && state && k < state.classes.length) label(k);
});
$("labeler").textContent = `You label as ${WHO}.`;
api("/api/state").then(s => {
  state = s;
  showClasses();
  show();
}).catch(e => { $("status").textContent = e.message; });
