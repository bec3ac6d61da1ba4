// medmat app: the page's logic. It talks to the JSON API of medmat/app/server.py and draws the
// probes, the proposed patches and brush strokes on a canvas over the image; every picture comes
// from the server as a PNG data URL. Every answer (a probe's alpha level, a stroke, a patch label)
// is fused into the model's alpha on the server.
"use strict";

const VIEW_SIZE = 512; // longest side of the viewer, in CSS pixels
const PATCH_COLOUR = "#00e5ff";
const SELECTED_COLOUR = "#ffe600";
const LABEL_COLOURS = { foreground: "#e63946", background: "#457be6", transition: "#ffc828" };
const PROBE_COLOUR = "#ffe600";

const app = {
  payload: null,      // the last state the server sent
  overlay: "alpha",   // key of the layer shown over the image
  selected: null,     // rank of the selected proposal
  probe: null,        // [row, col] of the point clicked with the probe tool, waiting for its level
  tool: "probe",
  brushLabel: "foreground",
  stroke: null,       // [[row, col], ...] while painting
  busy: false,
  lastUpdateMs: null, // click on a label -> new matte decoded and drawn
  updates: 0,
};
window.medmatApp = app; // read by the end-to-end test

const $ = (id) => document.getElementById(id);

// ---- server ---------------------------------------------------------------------------------

async function api(path, { body = null, json = null, method = "POST" } = {}) {
  const options = { method, headers: {} };
  if (method === "POST") {
    options.headers["X-Medmat"] = "1";
    if (json !== null) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(json);
    } else {
      options.headers["Content-Type"] = "application/octet-stream";
      options.body = body ?? new Uint8Array(0);
    }
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error("the medmat server does not answer; is `medmat serve` still running?");
  }
  let payload;
  try {
    payload = await response.json();
  } catch (error) {
    throw new Error(`the server answered ${response.status} ${response.statusText} without a message`);
  }
  if (!response.ok || payload.error) {
    throw new Error(payload.error || `the server answered ${response.status}`);
  }
  return payload;
}

// One request at a time: the page shows what it is doing and any error in the alert line.
async function perform(what, request) {
  if (app.busy) return null;
  app.busy = true;
  showMessage(`${what}…`, true);
  updateControls();
  try {
    const payload = await request();
    showMessage(null);
    return payload;
  } catch (error) {
    showMessage(error.message);
    return null;
  } finally {
    app.busy = false;
    updateControls();
  }
}

function showMessage(text, busy = false) {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text || "";
  box.classList.toggle("busy", busy);
}

// ---- rendering ------------------------------------------------------------------------------

function layer(key) {
  return app.payload?.layers.find((entry) => entry.key === key) || null;
}

// Set an <img>'s source and resolve once it is decoded (at once when unchanged).
function setImage(img, url) {
  if (!url) {
    img.removeAttribute("src");
    return Promise.resolve();
  }
  if (img.getAttribute("src") === url) return Promise.resolve();
  img.src = url;
  return img.decode().catch(() => undefined);
}

async function render(payload) {
  app.payload = payload;
  const state = payload.state;
  const image = state.image;
  $("model").textContent = `model: ${state.model}${state.nig ? " (dugMatting NIG)" : ""}`;
  if (document.activeElement !== $("run-path")) $("run-path").value = state.run;
  $("notice").hidden = true;
  $("empty").hidden = Boolean(image);
  $("viewer-panel").hidden = !image;
  $("maps-panel").hidden = !image;
  if (!image) return;

  const proposals = state.proposals;
  if (app.selected !== null && app.selected >= proposals.length) app.selected = null;
  if (!layer(app.overlay)) app.overlay = "alpha";

  const [height, width] = image.shape;
  const scale = VIEW_SIZE / Math.max(height, width);
  const shown = [Math.round(width * scale), Math.round(height * scale)];
  for (const element of [$("base-image"), $("overlay-image")]) {
    element.width = shown[0];
    element.height = shown[1];
  }
  const canvas = $("marks");
  canvas.style.width = `${shown[0]}px`;
  canvas.style.height = `${shown[1]}px`;
  canvas.width = Math.round(shown[0] * devicePixelRatio);
  canvas.height = Math.round(shown[1] * devicePixelRatio);

  const info = [`${image.name}`, `${width} × ${height}`, `${image.channels === 1 ? "grey" : "colour"}`];
  if (image.num_slices > 1) info.push(`slice ${image.slice_index + 1} of ${image.num_slices}`);
  info.push(`prediction ${(state.seconds * 1000).toFixed(0)} ms on the server`);
  $("image-info").textContent = info.join(" · ");

  $("slice-control").hidden = image.num_slices <= 1;
  $("slice").max = String(image.num_slices - 1);
  $("slice").value = String(image.slice_index);
  $("slice-value").textContent = `${image.slice_index + 1} / ${image.num_slices}`;
  $("counter").textContent = String(state.num_interactions);

  renderOverlaySelect();
  renderProposals();
  const decoded = [
    setImage($("base-image"), layer("image")?.url),
    setImage($("overlay-image"), layer(app.overlay)?.url),
    ...renderMaps(),
    ...renderMasks(payload.masks),
  ];
  updateOpacity();
  drawMarks();
  updateControls();
  await Promise.all(decoded);
}

function renderOverlaySelect() {
  const select = $("overlay-select");
  const options = [["none", "None"], ...app.payload.layers.filter((entry) => entry.key !== "image")
    .map((entry) => [entry.key, entry.title])];
  const signature = options.map((option) => option[0]).join(",");
  if (select.dataset.signature !== signature) {
    select.replaceChildren(...options.map(([key, title]) => new Option(title, key)));
    select.dataset.signature = signature;
  }
  select.value = app.overlay;
}

function renderMaps() {
  const container = $("maps");
  const keys = app.payload.layers.map((entry) => entry.key);
  for (const figure of [...container.children]) {
    if (!keys.includes(figure.dataset.key)) figure.remove();
  }
  return app.payload.layers.map((entry, index) => {
    let figure = container.querySelector(`figure[data-key="${entry.key}"]`);
    if (!figure) {
      figure = document.createElement("figure");
      figure.dataset.key = entry.key;
      figure.append(document.createElement("img"), document.createElement("figcaption"));
      figure.addEventListener("click", () => chooseOverlay(entry.key === "image" ? "none" : entry.key));
    }
    container.insertBefore(figure, container.children[index] || null);
    const [img, caption] = figure.children;
    img.alt = entry.title;
    img.id = `map-${entry.key}`;
    const range = entry.range ? ` [${formatNumber(entry.range[0])}, ${formatNumber(entry.range[1])}]` : "";
    caption.textContent = entry.title + range;
    figure.classList.toggle("selected", entry.key === app.overlay);
    return setImage(img, entry.url);
  });
}

function renderMasks(urls) {
  const container = $("masks");
  while (container.children.length > urls.length) container.lastChild.remove();
  while (container.children.length < urls.length) {
    const img = document.createElement("img");
    img.alt = `sampled mask ${container.children.length + 1}`;
    container.append(img);
  }
  $("masks").previousElementSibling.hidden = urls.length === 0;
  return urls.map((url, index) => setImage(container.children[index], url));
}

function renderProposals() {
  const list = $("proposals");
  const state = app.payload.state;
  list.replaceChildren(...state.proposals.map((patch) => {
    const item = document.createElement("li");
    item.dataset.rank = String(patch.rank);
    item.textContent = `rows ${patch.top}–${patch.top + patch.height - 1}, columns ${patch.left}–`
      + `${patch.left + patch.width - 1}: mean epistemic ${formatNumber(patch.uncertainty)}`;
    item.classList.toggle("selected", patch.rank === app.selected);
    item.addEventListener("click", () => selectPatch(patch.rank));
    return item;
  }));
  $("hint").textContent = hintText(state);
}

function hintText(state) {
  if (!state.interactive) return "";
  if (app.tool === "probe") return "Click a point of the image, then its alpha: 0, ¼, ½, ¾ or 1 (keys 0–4).";
  if (app.tool === "brush") return "Choose foreground or background, then paint on the image.";
  if (state.proposals.length === 0) return "No patch is proposed: every uncertain patch is labelled. Paint with the brush to go on.";
  return "Click a proposed patch (ranked 1 = most uncertain), then Foreground, Background or Transition (keys f, b, t).";
}

function formatNumber(value) {
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  return magnitude >= 0.01 && magnitude < 1000 ? value.toFixed(magnitude < 1 ? 3 : 2) : value.toExponential(2);
}

function updateOpacity() {
  $("overlay-image").style.opacity = String(Number($("opacity").value) / 100);
  $("overlay-image").hidden = app.overlay === "none";
}

function chooseOverlay(key) {
  app.overlay = key;
  $("overlay-select").value = key;
  setImage($("overlay-image"), layer(key)?.url);
  for (const figure of $("maps").children) figure.classList.toggle("selected", figure.dataset.key === key);
  updateOpacity();
}

function updateControls() {
  const state = app.payload?.state;
  const interactive = Boolean(state?.image && state.interactive);
  const ready = interactive && !app.busy;
  for (const button of document.querySelectorAll("button.label")) {
    button.disabled = !ready || (app.tool === "patch" && app.selected === null);
    button.classList.toggle("active", app.tool === "brush" && button.dataset.label === app.brushLabel);
    // A transition stroke says nothing about the alpha: only a NIG model's user map takes it.
    button.hidden = app.tool === "brush" && button.dataset.label === "transition" && !state?.nig;
  }
  for (const button of document.querySelectorAll("button.level")) button.disabled = !ready || app.probe === null;
  $("levels").hidden = !interactive || app.tool !== "probe";
  $("labels").hidden = !interactive || app.tool === "probe";
  $("undo").disabled = !ready || !state.can_undo;
  $("save").disabled = app.busy || !state?.image;
  $("interaction").querySelector(".segmented").hidden = !interactive;
  $("radius-control").hidden = !interactive || app.tool !== "brush";
  $("proposals").hidden = !interactive || app.tool !== "patch";
  $("marks").classList.toggle("brush", app.tool !== "patch");
}

// ---- the canvas: proposals and strokes --------------------------------------------------------

function canvasScale() {
  const [height, width] = app.payload.state.image.shape;
  const canvas = $("marks");
  return [canvas.width / width, canvas.height / height];
}

function drawMarks() {
  const canvas = $("marks");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const state = app.payload?.state;
  if (!state?.image) return;
  const [sx, sy] = canvasScale();
  const line = Math.max(1.5, 2 * devicePixelRatio);
  context.font = `${Math.round(13 * devicePixelRatio)}px system-ui, sans-serif`;
  context.textBaseline = "top";
  for (const patch of app.tool === "patch" ? state.proposals : []) {
    const selected = patch.rank === app.selected;
    context.lineWidth = selected ? 2 * line : line;
    context.strokeStyle = selected ? SELECTED_COLOUR : PATCH_COLOUR;
    context.strokeRect(patch.left * sx, patch.top * sy, patch.width * sx, patch.height * sy);
    context.fillStyle = context.strokeStyle;
    context.fillText(String(patch.rank + 1), patch.left * sx + 3 * devicePixelRatio, patch.top * sy + 2 * devicePixelRatio);
  }
  for (const probe of state.probes) {
    drawProbe(context, probe.row, probe.col, sx, sy, `${probe.value}`, line);
  }
  if (app.probe) drawProbe(context, app.probe[0], app.probe[1], sx, sy, "?", line, PROBE_COLOUR);
  if (app.stroke) {
    const radius = Number($("radius").value);
    context.fillStyle = LABEL_COLOURS[app.brushLabel];
    context.globalAlpha = 0.6;
    for (const [row, col] of app.stroke) {
      context.beginPath();
      context.ellipse((col + 0.5) * sx, (row + 0.5) * sy, radius * sx, radius * sy, 0, 0, 2 * Math.PI);
      context.fill();
    }
    context.globalAlpha = 1;
  }
}

// A probe: a ring around the pixel and its answer beside it.
function drawProbe(context, row, col, sx, sy, text, line, colour = "#ffffff") {
  const x = (col + 0.5) * sx;
  const y = (row + 0.5) * sy;
  const radius = Math.max(5 * devicePixelRatio, 1.5 * sx);
  context.lineWidth = line;
  context.strokeStyle = "#000000";
  context.beginPath();
  context.arc(x, y, radius + line, 0, 2 * Math.PI);
  context.stroke();
  context.strokeStyle = colour;
  context.beginPath();
  context.arc(x, y, radius, 0, 2 * Math.PI);
  context.stroke();
  context.fillStyle = colour;
  context.fillText(text, x + radius + 2 * devicePixelRatio, y - radius);
}

// (row, col) of a pointer event in image pixel coordinates (pixel centres at integers).
function imagePoint(event) {
  const rect = $("marks").getBoundingClientRect();
  const [height, width] = app.payload.state.image.shape;
  const col = ((event.clientX - rect.left) / rect.width) * width - 0.5;
  const row = ((event.clientY - rect.top) / rect.height) * height - 0.5;
  return [Math.round(row * 100) / 100, Math.round(col * 100) / 100];
}

function patchAt([row, col]) {
  const patches = app.payload?.state.proposals || [];
  return patches.find((p) => row + 0.5 >= p.top && row + 0.5 < p.top + p.height
    && col + 0.5 >= p.left && col + 0.5 < p.left + p.width) || null;
}

function selectPatch(rank) {
  app.selected = rank;
  for (const item of $("proposals").children) item.classList.toggle("selected", Number(item.dataset.rank) === rank);
  drawMarks();
  updateControls();
}

function onPointerDown(event) {
  const state = app.payload?.state;
  if (!state?.image || !state.interactive || app.busy) return;
  if (app.tool === "probe") {
    const [height, width] = state.image.shape;
    const [row, col] = imagePoint(event);
    app.probe = [Math.min(Math.max(Math.round(row), 0), height - 1), Math.min(Math.max(Math.round(col), 0), width - 1)];
    drawMarks();
    updateControls();
    return;
  }
  if (app.tool === "patch") {
    const patch = patchAt(imagePoint(event));
    selectPatch(patch ? patch.rank : null);
    return;
  }
  app.stroke = [imagePoint(event)];
  $("marks").setPointerCapture(event.pointerId);
  drawMarks();
}

function onPointerMove(event) {
  if (!app.stroke) return;
  app.stroke.push(imagePoint(event));
  drawMarks();
}

function onPointerUp() {
  if (!app.stroke) return;
  const stroke = app.stroke;
  app.stroke = null;
  submitAction("/api/label", { label: app.brushLabel, stroke, radius: Number($("radius").value) });
}

// ---- actions --------------------------------------------------------------------------------

// Send one interaction (a label, a stroke or a probe) and show the new matte; times click to frame.
async function submitAction(path, request) {
  const started = performance.now();
  const payload = await perform("Updating the matte", () => api(path, { json: request }));
  if (!payload) {
    drawMarks();
    return;
  }
  app.selected = null;
  app.probe = null;
  await render(payload);
  // The new matte is decoded; wait for the frame that shows it.
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  app.lastUpdateMs = performance.now() - started;
  app.updates += 1;
  document.body.dataset.updates = String(app.updates);
  $("timing").textContent = `· updated in ${app.lastUpdateMs.toFixed(0)} ms`;
}

function onLabelButton(label) {
  if (app.tool === "brush") {
    app.brushLabel = label;
    updateControls();
    renderProposals();
    return;
  }
  if (app.selected === null) return;
  submitAction("/api/label", { label, patch: app.selected });
}

function onLevel(index) {
  const levels = app.payload?.state.probe_levels || [];
  if (app.tool !== "probe" || app.probe === null || index >= levels.length || app.busy) return;
  submitAction("/api/probe", { row: app.probe[0], col: app.probe[1], value: levels[index] });
}

async function openFile(file) {
  if (!file) return;
  const bytes = await file.arrayBuffer();
  const payload = await perform(`Opening ${file.name}`,
    () => api(`/api/open?name=${encodeURIComponent(file.name)}`, { body: bytes }));
  if (payload) {
    app.selected = null;
    $("saved").hidden = true;
    $("timing").textContent = "";
    await render(payload);
  }
}

async function simpleAction(what, path, json = {}) {
  const payload = await perform(what, () => api(path, { json }));
  if (payload) {
    app.selected = null;
    app.probe = null;
    await render(payload);
  }
  return payload;
}

async function save() {
  const payload = await simpleAction("Saving", "/api/save");
  if (!payload) return;
  const saved = payload.saved;
  const files = Object.values(saved.files).flat();
  const footer = $("saved");
  footer.hidden = false;
  footer.replaceChildren(
    document.createTextNode(`Saved ${saved.num_interactions} interaction(s) into ${saved.folder}: `),
    ...files.map((name) => {
      const code = document.createElement("code");
      code.textContent = `${name} `;
      return code;
    }),
  );
}

function bindEvents() {
  $("file").addEventListener("change", (event) => {
    openFile(event.target.files[0]);
    event.target.value = ""; // the same file can be opened again
  });
  $("run-form").addEventListener("submit", (event) => {
    event.preventDefault();
    simpleAction("Loading the run", "/api/run", { path: $("run-path").value });
  });
  $("overlay-select").addEventListener("change", (event) => chooseOverlay(event.target.value));
  $("opacity").addEventListener("input", updateOpacity);
  $("slice").addEventListener("input", () => {
    $("slice-value").textContent = `${Number($("slice").value) + 1} / ${Number($("slice").max) + 1}`;
  });
  $("slice").addEventListener("change", () => {
    $("timing").textContent = "";
    simpleAction("Predicting the slice", "/api/slice", { index: Number($("slice").value) });
  });
  $("radius").addEventListener("input", () => { $("radius-value").textContent = $("radius").value; });
  for (const radio of document.querySelectorAll('input[name="tool"]')) {
    radio.addEventListener("change", () => {
      app.tool = radio.value;
      app.probe = null;
      renderProposals();
      updateControls();
      drawMarks();
    });
  }
  for (const button of document.querySelectorAll("button.label")) {
    button.addEventListener("click", () => onLabelButton(button.dataset.label));
  }
  for (const button of document.querySelectorAll("button.level")) {
    button.addEventListener("click", () => onLevel(Number(button.dataset.level)));
  }
  $("undo").addEventListener("click", () => simpleAction("Undoing", "/api/undo"));
  $("save").addEventListener("click", save);
  const canvas = $("marks");
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", () => { app.stroke = null; drawMarks(); });
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.type === "text") return;
    const keys = { f: "foreground", b: "background", t: "transition" };
    if ((event.ctrlKey || event.metaKey) && event.key === "z") {
      event.preventDefault();
      if (!$("undo").disabled) simpleAction("Undoing", "/api/undo");
    } else if (event.ctrlKey || event.metaKey || event.altKey) {
      // other shortcuts are the browser's
    } else if (app.tool === "probe" && /^[0-4]$/.test(event.key)) {
      onLevel(Number(event.key));
    } else if (keys[event.key] && app.tool !== "probe") {
      onLabelButton(keys[event.key]);
    }
  });
}

async function start() {
  bindEvents();
  const payload = await perform("Connecting", () => api("/api/state", { method: "GET" }));
  if (payload) await render(payload);
  document.body.dataset.ready = "true";
}

start();
