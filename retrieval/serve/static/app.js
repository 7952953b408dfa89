// fewlabel labelling page: plain JavaScript, no libraries, nothing fetched but this server's own API.
"use strict";
const TOKEN_KEY = "fewlabel-token";
const ROUND = 10;  // suggestions fetched per round
const state = { labels: [], multi: false, queue: [], current: null, selected: new Set(), skipped: [],
                added: 0, answeredThisRound: 0, busy: false };
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) {
    $("token-form").hidden = false;
    $("token-input").focus();
    throw new Error("the server needs its token");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
  $("error").hidden = !error;
}

function renderStatus(s) {
  state.labels = s.labels; state.multi = s.multi_label;
  $("n-rows").textContent = s.n_rows;
  $("method").textContent = s.method + (s.stale ? " (stale)" : "");
  $("score").textContent = s.score ? `${s.score.metric}-F1 ${s.score.value.toFixed(3)} ± ${s.score.spread.toFixed(3)}`
                                   : "not measured yet";
  $("score").title = s.score ? s.score.how : "";
  $("added").textContent = state.added;
  const counts = $("counts");
  counts.replaceChildren(...s.labels.map((name) => {
    const chip = document.createElement("span");
    chip.className = "count"; chip.id = "count-" + name; chip.dataset.label = name;
    chip.textContent = `${name}: ${s.counts[name] || 0}`;
    return chip;
  }));
}

async function refreshStatus() { renderStatus(await api("GET", "/labelling/status")); }

function renderLabels() {
  const box = $("labels");
  box.replaceChildren(...state.labels.map((name, i) => {
    const b = document.createElement("button");
    b.className = "label-btn" + (state.selected.has(name) ? " on" : "");
    b.dataset.label = name;
    b.innerHTML = i < 9 ? `<kbd>${i + 1}</kbd> ` : "";
    b.append(document.createTextNode(name));
    b.addEventListener("click", () => pick(name));
    return b;
  }));
}

function showCurrent() {
  state.current = state.queue.shift() || null;
  $("queue").textContent = state.current ? `${state.queue.length} more in this round` : "";
  if (!state.current) {
    $("text").textContent = "Round done: refitting and fetching the next texts…";
    $("why").textContent = "";
    state.selected = new Set(); renderLabels();
    return nextRound();
  }
  $("text").textContent = state.current.text;
  const score = state.current.score === null ? "" : ` (score ${state.current.score.toFixed(2)})`;
  $("why").textContent = `guess: ${state.current.guess.join(", ") || "none"}${score} · ${state.current.reason}`;
  state.selected = new Set(state.current.guess);
  renderLabels();
}

async function answer(labels) {
  if (!state.current || state.busy || !labels.length) return;
  state.busy = true;
  try {
    await api("POST", "/examples", { rows: [{ text: state.current.text, labels }] });
    state.added += 1; state.answeredThisRound += 1;
    showError(null);
    await refreshStatus();
  } catch (error) { showError(error); state.busy = false; return; }
  state.busy = false;
  showCurrent();
}

function pick(name) {
  if (state.multi) {
    state.selected.has(name) ? state.selected.delete(name) : state.selected.add(name);
    renderLabels();
  } else {
    answer([name]);
  }
}

function skip() {
  if (!state.current || state.busy) return;
  state.skipped.push(state.current.text);
  showCurrent();
}

async function nextRound() {
  if (state.busy) return;
  state.busy = true;
  try {
    if (state.answeredThisRound) {
      renderStatus(await api("POST", "/labelling/refit?added=" + state.answeredThisRound));
      state.answeredThisRound = 0;
    }
    const data = await api("POST", "/suggest", { n: ROUND, strategy: "auto", exclude: state.skipped });
    state.queue = data.suggestions;
    showError(null);
  } catch (error) { showError(error); state.busy = false; return; }
  state.busy = false;
  if (!state.queue.length) { $("text").textContent = "Nothing left to suggest in the pool."; return; }
  showCurrent();
}

// ---- check tab ----------------------------------------------------------------------------------------------
function kept() { return new Set(JSON.parse(localStorage.getItem("fewlabel-kept") || "[]")); }

async function runCheck() {
  $("check-info").textContent = "refitting on folds…";
  try {
    const data = await api("POST", "/check", { limit: 200 });
    const skip = kept();
    $("check-info").textContent = `${data.suspects.length} suspects (method ${data.method}, ${data.folds} folds)`;
    const rows = data.suspects.filter((s) => !skip.has(s.id)).map((s) => {
      const tr = document.createElement("tr"); tr.className = "suspect"; tr.dataset.id = s.id;
      const cells = [s.rank, s.text, s.given.join(", "), s.suggested.join(", "), s.confidence.toFixed(2)];
      cells.forEach((value) => { const td = document.createElement("td"); td.textContent = value; tr.append(td); });
      const td = document.createElement("td");
      const keep = document.createElement("button"); keep.textContent = "keep"; keep.className = "keep";
      keep.addEventListener("click", () => {
        const k = kept(); k.add(s.id); localStorage.setItem("fewlabel-kept", JSON.stringify([...k]));
        tr.className = "done"; td.textContent = "kept";
      });
      const fix = document.createElement("button"); fix.textContent = "fix → " + s.suggested.join(", "); fix.className = "fix";
      fix.addEventListener("click", async () => {
        try {
          await api("DELETE", "/examples/" + encodeURIComponent(s.id));
          await api("POST", "/examples", { rows: [{ id: s.id, text: s.text, labels: s.suggested }] });
          tr.className = "done"; td.textContent = "fixed"; await refreshStatus();
        } catch (error) { showError(error); }
      });
      td.append(keep, " ", fix); tr.append(td);
      return tr;
    });
    document.querySelector("#suspects tbody").replaceChildren(...rows);
    $("conflicts").replaceChildren(...data.conflicts.map((c) => {
      const li = document.createElement("li");
      li.textContent = `${c.text} — ${c.ids.map((id, i) => id + ": " + c.labels[i].join(", ")).join("; ")}`;
      return li;
    }));
  } catch (error) { $("check-info").textContent = ""; showError(error); }
}

function switchTab(name) {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("on", b.dataset.tab === name));
  $("pane-label").hidden = name !== "label";
  $("pane-check").hidden = name !== "check";
}

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || $("pane-label").hidden) return;
  if (event.key >= "1" && event.key <= "9") {
    const name = state.labels[Number(event.key) - 1];
    if (name !== undefined) pick(name);
  } else if (event.key === "Enter") {
    event.preventDefault(); answer([...state.selected]);
  } else if (event.key === "s" || event.key === "S") {
    skip();
  }
});

$("accept").addEventListener("click", () => answer([...state.selected]));
$("skip").addEventListener("click", skip);
$("refit").addEventListener("click", () => { state.queue = []; state.current = null; nextRound(); });
$("run-check").addEventListener("click", runCheck);
document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => switchTab(b.dataset.tab)));
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  $("token-form").hidden = true;
  start();
});

async function start() {
  try { await refreshStatus(); showError(null); await nextRound(); } catch (error) { showError(error); }
}
start();
