// genlab app: the page. Every number and image comes from the server (genlab's own functions); this file only
// sends what the user picked and shows what comes back. Slow requests are jobs polled for their progress.
"use strict";

const $ = (id) => document.getElementById(id);
let RUNS = [];
let run = null;        // the selected run's info (GET /api/runs)
const picks = { a: null, b: null };  // latent view: {source, image} of images A and B
let code = null;       // latent view: {z, shape} of A, moved by the sliders

async function api(path, body, raw) {
  const opts = body === undefined ? {} : { method: "POST", body: raw ? body : JSON.stringify(body),
    headers: raw ? { "X-Filename": encodeURIComponent(raw) } : { "Content-Type": "application/json" } };
  let res;
  try { res = await fetch(path, opts); } catch (err) { throw new Error("the app server does not answer: is it running?"); }
  let data = null;
  try { data = await res.json(); } catch (err) { /* not JSON */ }
  if (!res.ok) throw new Error((data && data.error) || `request failed (HTTP ${res.status})`);
  return data;
}

function showError(id, err) {
  const el = $(id);
  if (err) { el.textContent = err.message || String(err); el.hidden = false; } else { el.hidden = true; }
}

// Post a slow request, then poll it; the progress bar shows done / total as the job reports them.
async function runJob(path, body, prefix) {
  const bar = $(prefix + "-progress"), status = $(prefix + "-status");
  showError(prefix + "-error", null);
  bar.hidden = false; bar.removeAttribute("value"); status.textContent = "working...";
  try {
    let job = await api(path, body);
    while (job.state === "running") {
      await new Promise((r) => setTimeout(r, 150));
      job = await api(`/api/jobs/${job.id}`);
      if (job.total) { bar.max = job.total; bar.value = job.done; status.textContent = `${job.done} / ${job.total} ${job.unit}`; }
    }
    if (job.state === "error") throw new Error(job.error);
    status.textContent = "done";
    return job;
  } catch (err) {
    status.textContent = "";
    showError(prefix + "-error", err);
    return null;
  } finally { bar.hidden = true; }
}

function labelOptions(select) {
  select.innerHTML = "";
  const add = (v, t) => { const o = document.createElement("option"); o.value = v; o.textContent = t; select.appendChild(o); };
  if (run.label_optional || !run.num_classes) add("random", run.num_classes ? "random class" : "none");
  for (let k = 0; k < run.num_classes; k++) add(String(k), String(k));
  select.parentElement.hidden = !run.num_classes;
}

// --- run and tabs
async function selectRun(key) {
  run = RUNS.find((r) => r.key === key);
  $("run-info").textContent = `${run.model} on ${run.data} (${run.shape.join("x")}), step ${run.step}, ${run.path}`;
  for (const b of document.querySelectorAll("#tabs button")) {
    const v = b.dataset.view;
    const ok = v === "compare" || run.views[v];
    b.disabled = !ok;
    b.title = ok ? "" : `${run.model} has no ${v === "score" ? "likelihood" : v === "latent" ? "encoder and decoder" : v === "completion" ? "partial-image sampler" : "sampler"}`;
  }
  labelOptions($("sample-label")); labelOptions($("complete-label"));
  const sel = $("sample-sampler"); sel.innerHTML = "";
  for (const s of run.samplers) { const o = document.createElement("option"); o.value = o.textContent = s.name; sel.appendChild(o); }
  samplerOptions();
  $("complete-rows").max = run.shape[1] - 1; $("complete-rows").value = Math.floor(run.shape[1] / 2);
  picks.a = picks.b = null; code = null;
  for (const k in loaded) if (!k.startsWith("compare")) delete loaded[k];
  for (const id of ["slot-a", "slot-b", "latent-decoded", "manifold-point"]) $(id).removeAttribute("src");
  $("sliders").innerHTML = ""; $("interpolation").hidden = true;
  const active = document.querySelector("#tabs button.active");
  show(active && !active.disabled ? active.dataset.view : (document.querySelector("#tabs button:not(:disabled)") || {}).dataset.view);
}

const loaded = {};
function show(view) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
  const key = view + ":" + run.key;
  if (loaded[key]) return;
  loaded[key] = true;
  if (view === "latent") loadLatent();
  if (view === "compare") $("compare-frame").src = "/api/compare";
}

// --- samples
function samplerOptions() {
  const box = $("sample-options"); box.innerHTML = "";
  const s = run.samplers.find((x) => x.name === $("sample-sampler").value);
  if (!s) return;
  for (const f of s.options) {
    const label = document.createElement("label"); label.title = `${f.kind}${f.help ? ": " + f.help : ""}`;
    label.append(f.name + " ");
    let input;
    if (f.choices.length) {
      input = document.createElement("select");
      for (const c of f.choices) { const o = document.createElement("option"); o.value = o.textContent = c; input.appendChild(o); }
    } else { input = document.createElement("input"); input.type = "text"; }
    input.value = f.default; input.dataset.option = f.name;
    label.appendChild(input); box.appendChild(label);
  }
}

let lastSample = null;
async function drawSamples(ev) {
  ev.preventDefault();
  const options = {};
  for (const el of document.querySelectorAll("#sample-options [data-option]")) options[el.dataset.option] = el.value;
  const body = { seed: $("sample-seed").value, n: $("sample-n").value, label: $("sample-label").value,
                 sampler: $("sample-sampler").value, options };
  $("sample-go").disabled = true;
  const job = await runJob(`/api/runs/${run.key}/sample`, body, "sample");
  $("sample-go").disabled = false;
  if (!job) return;
  lastSample = job;
  const r = job.result, img = $("sample-image");
  img.src = r.image; img.hidden = false; img.dataset.job = job.id;
  const a = $("sample-download"); a.href = r.download; a.download = r.filename; a.hidden = false;
  a.textContent = `download ${r.filename}`;
  $("sample-command").textContent = r.command;
}

function sampleClicked(ev) {
  if (!lastSample) return;
  const lay = lastSample.result.layout, rect = ev.target.getBoundingClientRect();
  const col = Math.floor((ev.clientX - rect.left) / rect.width * lay.nrow);
  const row = Math.floor((ev.clientY - rect.top) / rect.height * lay.rows);
  const i = row * lay.nrow + col;
  if (i < 0 || i >= lay.n) return;
  const a = $("sample-one"); a.href = `/api/jobs/${lastSample.id}/sample/${i}.png`;
  a.textContent = `download sample ${i} alone`; a.hidden = false;
  a.click();
}

// --- latent space
async function loadLatent() {
  if (!run.views.latent) return;
  $("manifold-box").hidden = !run.views.manifold;
  if (run.views.manifold) $("manifold").src = `/api/runs/${run.key}/latent/manifold.png`;
  try {
    const data = await api(`/api/runs/${run.key}/test-images`);
    const box = $("latent-tests"); box.innerHTML = "";
    for (const t of data.images) {
      const img = document.createElement("img"); img.src = t.image; img.title = `test image ${t.index}`;
      img.dataset.index = t.index;
      img.addEventListener("click", () => pick({ test: t.index }, t.image));
      box.appendChild(img);
    }
  } catch (err) { showError("latent-error", err); }
}

async function pick(source, image) {
  const slot = document.querySelector("input[name=slot]:checked").value;
  picks[slot] = { source, image };
  $("slot-" + slot).src = image;
  showError("latent-error", null);
  if (slot !== "a") return;
  try {
    const c = await api(`/api/runs/${run.key}/latent/encode`, { source });
    code = { z: c.z.slice(), shape: c.shape };
    $("latent-decoded").src = c.image;
    const box = $("sliders"); box.innerHTML = "";
    for (let d = 0; d < c.sliders; d++) {
      const label = document.createElement("label"); label.textContent = `z${d + 1} `;
      const s = document.createElement("input"); s.type = "range"; s.step = "0.05";
      s.min = (c.z[d] - 3).toFixed(2); s.max = (c.z[d] + 3).toFixed(2); s.value = c.z[d]; s.dataset.dim = d;
      s.id = `slider-${d}`;
      s.addEventListener("input", () => { code.z[d] = parseFloat(s.value); decodeLatest(); });
      label.appendChild(s); box.appendChild(label);
    }
  } catch (err) { showError("latent-error", err); }
}

// One decode in flight at a time; a slider moved meanwhile sends its latest value when the answer is in.
let decoding = false, decodePending = false;
async function decodeLatest() {
  if (decoding) { decodePending = true; return; }
  decoding = true;
  try {
    const r = await api(`/api/runs/${run.key}/latent/decode`, { z: code.z, shape: code.shape });
    $("latent-decoded").src = r.image;
  } catch (err) { showError("latent-error", err); }
  decoding = false;
  if (decodePending) { decodePending = false; decodeLatest(); }
}

let pointBusy = false;
async function manifoldAt(ev) {
  if (pointBusy) return;
  const rect = $("manifold").getBoundingClientRect();
  const u = (ev.clientX - rect.left) / rect.width, v = (ev.clientY - rect.top) / rect.height;
  if (u < 0 || u > 1 || v < 0 || v > 1) return;
  pointBusy = true;
  try {
    const r = await api(`/api/runs/${run.key}/latent/point`, { u, v });
    $("manifold-point").src = r.image;
    $("manifold-z").textContent = `z = (${r.z.map((x) => x.toFixed(2)).join(", ")})`;
  } catch (err) { showError("latent-error", err); }
  pointBusy = false;
}

async function interpolateAB() {
  if (!picks.a || !picks.b) { showError("latent-error", new Error("pick two images first: A, then B")); return; }
  try {
    const r = await api(`/api/runs/${run.key}/latent/interpolate`, { a: picks.a.source, b: picks.b.source });
    $("interpolation").src = r.image; $("interpolation").hidden = false;
    showError("latent-error", null);
  } catch (err) { showError("latent-error", err); }
}

async function uploadFile(file, errorId) {
  showError(errorId, null);
  try { return await api(`/api/runs/${run.key}/upload`, file, file.name || "drawing.png"); } catch (err) {
    showError(errorId, err); return null;
  }
}

// --- completion
let completionSource = null;
const canvas = $("canvas"), ctx = canvas.getContext("2d");
function clearCanvas() { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); completionSource = null; }
let drawing = false, last = null;
function stroke(ev) {
  if (!drawing) return;
  const r = canvas.getBoundingClientRect();
  const p = [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height];
  // A line from the last point, so a fast stroke (few pointer events) stays one stroke.
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.beginPath();
  ctx.moveTo(...(last || p)); ctx.lineTo(...p); ctx.stroke();
  last = p; completionSource = "canvas";
}

async function showTestOnCanvas() {
  try {
    const data = await api(`/api/runs/${run.key}/test-images?seed=${Math.floor(Math.random() * 1e6)}`);
    const t = data.images[0];
    const img = new Image();
    img.onload = () => { ctx.imageSmoothingEnabled = false; ctx.drawImage(img, 0, 0, canvas.width, canvas.height); };
    img.src = t.image;
    completionSource = { test: t.index };
  } catch (err) { showError("complete-error", err); }
}

async function completeImage(ev) {
  ev.preventDefault();
  let source = completionSource;
  if (source === null) { showError("complete-error", new Error("draw on the canvas, upload an image or take a test image first")); return; }
  if (source === "canvas") {
    const blob = await new Promise((r) => canvas.toBlob(r, "image/png"));
    const up = await uploadFile(blob, "complete-error");
    if (!up) return;
    source = { upload: up.token };
  }
  const body = { source, rows: $("complete-rows").value, completions: $("complete-k").value,
                 seed: $("complete-seed").value, label: $("complete-label").value };
  $("complete-go").disabled = true;
  const job = await runJob(`/api/runs/${run.key}/complete`, body, "complete");
  $("complete-go").disabled = false;
  if (job) { $("complete-image").src = job.result.image; $("complete-image").hidden = false; }
}

async function completionUpload(ev) {
  const file = ev.target.files[0];
  if (!file) return;
  const up = await uploadFile(file, "complete-error");
  ev.target.value = "";
  if (!up) return;
  const img = new Image();
  img.onload = () => { ctx.imageSmoothingEnabled = false; ctx.drawImage(img, 0, 0, canvas.width, canvas.height); };
  img.src = up.preview;
  completionSource = { upload: up.token };
}

// --- outlier score
async function scoreUpload(ev) {
  const file = ev.target.files[0];
  if (!file) return;
  $("score-result").hidden = true;
  const up = await uploadFile(file, "score-error");
  ev.target.value = "";
  if (!up) return;
  const job = await runJob(`/api/runs/${run.key}/score`, { upload: up.token, seed: $("score-seed").value }, "score");
  if (!job) return;
  const r = job.result;
  $("score-preview").src = up.preview;
  const t = $("score-table");
  t.innerHTML = "<tr><th>score</th><th>what it is</th><th>bits/dim</th><th>percentile among test images</th><th>verdict (95% TPR)</th></tr>";
  for (const s of r.scores) {
    const tr = document.createElement("tr");
    const verdict = s.outlier_at_tpr95 === undefined ? "-" : s.outlier_at_tpr95 ? "OUTLIER" : "typical";
    for (const [text, cls] of [[s.name, ""], [s.label, ""], [s.value.toFixed(4), "num"],
      [s.percentile === undefined ? "-" : s.percentile.toFixed(1), "num"], [verdict, verdict === "OUTLIER" ? "outlier" : ""]]) {
      const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td);
    }
    t.appendChild(tr);
  }
  $("score-notes").textContent = [`likelihood: ${r.likelihood}`, `conversion: ${r.conversion}`, r.percentiles, ...r.log].join(" | ");
  if (r.histogram) { $("score-histogram").src = r.histogram; $("score-histogram").hidden = false; } else { $("score-histogram").hidden = true; }
  $("score-histogram-note").textContent = r.histogram_note || "where this image falls among the test images' scores";
  $("score-surprise").src = r.surprise;
  $("score-result").hidden = false;
}

// --- wiring
async function start() {
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));
  $("run").addEventListener("change", (e) => selectRun(e.target.value));
  $("sample-form").addEventListener("submit", drawSamples);
  $("sample-sampler").addEventListener("change", samplerOptions);
  $("sample-image").addEventListener("click", sampleClicked);
  const m = $("manifold");
  let dragging = false;
  m.addEventListener("mousedown", (e) => { dragging = true; manifoldAt(e); });
  m.addEventListener("mousemove", (e) => { if (dragging) manifoldAt(e); });
  window.addEventListener("mouseup", () => { dragging = false; });
  $("latent-upload").addEventListener("change", async (ev) => {
    const file = ev.target.files[0]; if (!file) return;
    const up = await uploadFile(file, "latent-error"); ev.target.value = "";
    if (up) pick({ upload: up.token }, up.preview);
  });
  $("interpolate").addEventListener("click", interpolateAB);
  clearCanvas();
  canvas.addEventListener("pointerdown", (e) => { drawing = true; last = null; stroke(e); });
  canvas.addEventListener("pointermove", stroke);
  window.addEventListener("pointerup", () => { drawing = false; last = null; });
  $("canvas-clear").addEventListener("click", clearCanvas);
  $("canvas-test").addEventListener("click", showTestOnCanvas);
  $("complete-upload").addEventListener("change", completionUpload);
  $("complete-form").addEventListener("submit", completeImage);
  $("score-upload").addEventListener("change", scoreUpload);
  $("compare-refresh").addEventListener("click", () => { $("compare-frame").src = "/api/compare?refresh=1"; });
  try {
    RUNS = (await api("/api/runs")).runs;
  } catch (err) { showError("global-error", err); return; }
  const sel = $("run");
  for (const r of RUNS) { const o = document.createElement("option"); o.value = r.key; o.textContent = `${r.label} (${r.model})`; sel.appendChild(o); }
  await selectRun(RUNS[0].key);
  document.body.dataset.ready = "1";  // for the browser tests: the page has its runs
}
start();
