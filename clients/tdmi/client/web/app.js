// The browser page of the TDMI pose service: a live webcam over the /v1/stream WebSocket, video
// jobs over /v1/pose, and cameras the server pulls (/v1/sources). Plain JavaScript, no
// dependencies; protocol in docs/websocket.md.
// Drawing follows clients/tdmi/protocol/overlay.py (same colours per track id, same score threshold).

const SCORE_THRESHOLD = 0.3;
const GOLDEN_RATIO = (Math.sqrt(5) - 1) / 2;
const NO_TRACK_COLOR = "rgb(200, 200, 200)";
const EXTRA_IN_FLIGHT = 4; // frames sent ahead of the server beyond its lookahead
const RETRY_MS = 1000; // asking again for the models while the server starts or is out of reach
const SOURCES_POLL_MS = 2000; // how often the cameras' status is asked for

const $ = (id) => document.getElementById(id);
const models = new Map(); // name -> ModelPublic

// ---------------------------------------------------------------- HTTP

function apiKey() {
  return $("api-key").value.trim();
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!response.ok) {
    let detail = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      detail = body.detail || detail;
    } catch (_) {
      // not an ErrorPublic body: keep the status line
    }
    throw Object.assign(new Error(detail), { status: response.status });
  }
  return response;
}

// The models are asked for as the page loads, each answer shown as it comes (the list does not
// wait for the readiness check, nor for a camera or a socket), and again every RETRY_MS while the
// server is unreachable or still loading them; a missing key waits for the key field.
let retry = null;

async function loadModels() {
  clearTimeout(retry);
  const [listed, ready] = await Promise.all([listModels(), showReadiness()]);
  if (!listed || !ready) retry = setTimeout(loadModels, RETRY_MS);
}

async function listModels() {
  const notice = $("model-notice");
  try {
    const body = await (await api("/v1/models")).json();
    const select = $("model");
    const chosen = select.value;
    select.replaceChildren(...body.models.map((model) => new Option(model.name, model.name)));
    models.clear();
    body.models.forEach((model) => models.set(model.name, model));
    if (models.has(chosen)) select.value = chosen;
    showModelNotice();
    return body.models.length > 0;
  } catch (error) {
    const keyed = error.status === 401 || error.status === 403;
    notice.textContent = keyed ? `models: ${error.message} (type the API key above)` : `models: ${error.message}`;
    notice.className = "notice";
    return keyed;
  }
}

async function showReadiness() {
  const badge = $("server-status");
  try {
    const ready = await fetch("/readyz").then((r) => r.json());
    badge.textContent = ready.status === "ok" ? "ready" : `not ready: ${ready.reason}`;
    badge.className = ready.status === "ok" ? "badge ok" : "badge bad";
    return ready.status === "ok";
  } catch (error) {
    badge.textContent = `server: ${error.message}`;
    badge.className = "badge bad";
    return false;
  }
}

function showModelNotice() {
  const notice = $("model-notice");
  const model = models.get($("model").value);
  notice.className = model?.synthetic_demo ? "notice demo" : "notice";
  if (!model) {
    notice.textContent = "the server has loaded no model yet";
  } else if (model.synthetic_demo) {
    notice.textContent = `Model ${model.name}: demo weights trained on synthetic figures only; it will ` +
      "not find real people (for real video: published weights, `tdmi weights pull`).";
  } else if (!model.checkpoint) {
    notice.textContent = `Model ${model.name}: untrained weights: its keypoints are noise.`;
  } else {
    notice.textContent = `Model ${model.name}: ${model.description} (weights ${model.checkpoint}).`;
  }
}

// ---------------------------------------------------------------- drawing (as clients/tdmi/protocol/overlay.py)

function hsvToRgb(h, s, v) {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return [Math.round(r * 255), Math.round(g * 255), Math.round(b * 255)];
}

function trackColor(trackId) {
  if (trackId === null || trackId === undefined) return NO_TRACK_COLOR;
  const hue = (((trackId * GOLDEN_RATIO) % 1) + 1) % 1;
  const [r, g, b] = hsvToRgb(hue, 0.85, 1.0);
  return `rgb(${r}, ${g}, ${b})`;
}

function drawPoses(ctx, persons, edges) {
  const { width, height } = ctx.canvas;
  ctx.clearRect(0, 0, width, height);
  const thickness = Math.max(1, Math.round(Math.min(width, height) / 240));
  ctx.lineWidth = thickness;
  ctx.lineCap = "round";
  ctx.font = `${Math.round(12 * thickness)}px sans-serif`;
  ctx.textBaseline = "top";
  for (const person of persons) {
    const color = trackColor(person.track_id);
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    const [x1, y1, x2, y2] = person.box;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `id ${person.track_id}`;
    const textHeight = Math.round(14 * thickness);
    const top = Math.max(0, y1 - textHeight - 2);
    ctx.fillRect(x1, top, ctx.measureText(label).width + 4, textHeight + 2);
    ctx.fillStyle = "black";
    ctx.fillText(label, x1 + 2, top + 1);
    ctx.fillStyle = color;
    const points = person.keypoints.map(([x, y, score]) =>
      score >= SCORE_THRESHOLD && Number.isFinite(x) && Number.isFinite(y) ? [x, y] : null,
    );
    ctx.beginPath();
    for (const [a, b] of edges) {
      if (points[a] && points[b]) {
        ctx.moveTo(points[a][0], points[a][1]);
        ctx.lineTo(points[b][0], points[b][1]);
      }
    }
    ctx.stroke();
    for (const point of points) {
      if (!point) continue;
      ctx.beginPath();
      ctx.arc(point[0], point[1], thickness + 2, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

// ---------------------------------------------------------------- the live stream

function packFrame(frameId, timestampSeconds) {
  // tdmi.protocol.stream.pack_frame: "TDMI", u64 frame id, f64 capture timestamp, little endian
  const header = new ArrayBuffer(20);
  const view = new DataView(header);
  [..."TDMI"].forEach((c, i) => view.setUint8(i, c.charCodeAt(0)));
  view.setBigUint64(4, BigInt(frameId), true);
  view.setFloat64(12, timestampSeconds, true);
  return header;
}

function wsUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (apiKey()) url.searchParams.set("api_key", apiKey()); // browsers cannot set WebSocket headers
  return url.toString();
}

class LiveStream {
  constructor() {
    this.video = $("video");
    this.overlay = $("overlay");
    this.capture = document.createElement("canvas");
    this.ws = null;
    this.media = null;
    this.timer = null;
    this.reset();
  }

  reset() {
    this.nextId = 0;
    this.inFlight = new Map(); // frame id -> performance.now() at capture
    this.limit = EXTRA_IN_FLIGHT + 1;
    this.edges = [];
    this.counts = { sent: 0, results: 0, dropped: 0, skipped: 0 };
    this.resultTimes = [];
    this.encoding = false;
    this.ending = false; // "end" sent: no frame may follow it
  }

  async start() {
    this.reset();
    this.setState("opening camera");
    const deviceId = $("camera").value;
    this.media = await navigator.mediaDevices.getUserMedia({
      video: deviceId ? { deviceId: { exact: deviceId } } : true,
      audio: false,
    });
    this.video.srcObject = this.media;
    await this.video.play();
    await listCameras();
    this.setState("connecting");
    const ws = new WebSocket(wsUrl("/v1/stream"));
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      const config = { type: "config", model: $("model").value || null };
      const lookahead = $("lookahead").value;
      if (lookahead !== "") config.lookahead = Number(lookahead);
      ws.send(JSON.stringify(config));
    };
    ws.onmessage = (event) => this.onMessage(JSON.parse(event.data));
    ws.onclose = (event) => this.onClose(event);
    ws.onerror = () => showMessage("live-message", "WebSocket error (see the close reason below)", true);
  }

  onMessage(message) {
    switch (message.type) {
      case "ready":
        this.edges = models.get(message.model)?.skeleton.edges ?? [];
        this.limit = message.lookahead + EXTRA_IN_FLIGHT;
        $("stat-stream").textContent = message.stream_id;
        this.setState(`streaming (${message.model}, lookahead ${message.lookahead})`);
        this.schedule();
        break;
      case "result":
      case "dropped":
        this.ws.send(JSON.stringify({ type: "ack", frame_id: message.frame_id }));
        this.onAnswer(message);
        break;
      case "resumed":
        showMessage("live-message", `stream moved to another worker: ${message.reason}`);
        break;
      case "error":
        showMessage("live-message", `${message.error}: ${message.detail}`, true);
        break;
      case "ended":
        this.setState(`ended: ${message.frames} frames, ${message.dropped} dropped`);
        break;
      default:
        break;
    }
  }

  onAnswer(message) {
    const sentAt = this.inFlight.get(message.frame_id);
    for (const id of this.inFlight.keys()) if (id <= message.frame_id) this.inFlight.delete(id);
    if (message.type === "dropped") {
      this.counts.dropped += 1;
    } else {
      this.counts.results += 1;
      const now = performance.now();
      this.resultTimes.push(now);
      while (this.resultTimes.length && this.resultTimes[0] < now - 1000) this.resultTimes.shift();
      drawPoses(this.overlay.getContext("2d"), message.persons, this.edges);
      $("stat-persons").textContent = message.persons.length;
      $("stat-fps").textContent = this.resultTimes.length.toFixed(1);
      if (sentAt !== undefined) $("stat-latency").textContent = `${Math.round(now - sentAt)} ms`;
      $("stat-server-latency").textContent = `${Math.round(message.latency_ms)} ms`;
    }
    this.showCounts();
  }

  schedule() {
    clearInterval(this.timer);
    const fps = Math.min(30, Math.max(1, Number($("fps").value) || 10));
    this.timer = setInterval(() => this.sendFrame(), 1000 / fps);
  }

  sendFrame() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.video.videoWidth) return;
    if (this.encoding || this.inFlight.size >= this.limit) {
      this.counts.skipped += 1; // the server is behind: skip this tick rather than queue
      this.showCounts();
      return;
    }
    const maxWidth = Number($("width").value);
    const scale = Math.min(1, maxWidth / this.video.videoWidth);
    const width = Math.round(this.video.videoWidth * scale);
    const height = Math.round(this.video.videoHeight * scale);
    if (this.capture.width !== width || this.capture.height !== height) {
      this.capture.width = this.overlay.width = width;
      this.capture.height = this.overlay.height = height;
    }
    this.capture.getContext("2d").drawImage(this.video, 0, 0, width, height);
    const frameId = this.nextId++;
    const capturedAt = performance.now();
    const header = packFrame(frameId, (performance.timeOrigin + capturedAt) / 1000);
    this.encoding = true;
    this.capture.toBlob(
      (jpeg) => {
        this.encoding = false;
        // a frame still encoding when the user stopped must not follow the "end" message
        if (!jpeg || ws.readyState !== WebSocket.OPEN || this.ending) return;
        this.inFlight.set(frameId, capturedAt);
        ws.send(new Blob([header, jpeg]));
        this.counts.sent += 1;
        this.showCounts();
      },
      "image/jpeg",
      Number($("quality").value),
    );
  }

  onClose(event) {
    clearInterval(this.timer);
    this.timer = null;
    if (event.code !== 1000) {
      const why = event.code === 1008 ? "wrong or missing API key" : event.reason || "connection lost";
      showMessage("live-message", `stream closed (${event.code}): ${why}`, true);
    }
    this.setState(`closed (${event.code})`);
    this.stopCamera();
    setButtons(false);
  }

  stop() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      clearInterval(this.timer);
      this.ending = true;
      this.ws.send(JSON.stringify({ type: "end" })); // the server answers what it has, then closes
      this.setState("ending");
    } else {
      this.stopCamera();
      setButtons(false);
    }
  }

  stopCamera() {
    if (this.media) this.media.getTracks().forEach((track) => track.stop());
    this.media = null;
  }

  setState(text) {
    $("stat-state").textContent = text;
  }

  showCounts() {
    for (const [name, value] of Object.entries(this.counts)) $(`stat-${name}`).textContent = value;
  }
}

async function listCameras() {
  const select = $("camera");
  const chosen = select.value;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const cameras = devices.filter((d) => d.kind === "videoinput");
  select.replaceChildren(new Option("default camera", ""));
  cameras.forEach((camera, i) => select.append(new Option(camera.label || `camera ${i + 1}`, camera.deviceId)));
  select.value = chosen;
}

function setButtons(running) {
  $("start").disabled = running;
  $("stop").disabled = !running;
}

function showMessage(id, text, isError = false) {
  const element = $(id);
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// ---------------------------------------------------------------- video jobs

async function submitJob(event) {
  event.preventDefault();
  const file = $("job-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("render", $("job-render").checked ? "true" : "false");
  if ($("model").value) form.append("model", $("model").value);
  $("job-submit").disabled = true;
  $("job-result").hidden = true;
  try {
    showMessage("job-status", `uploading ${file.name}…`);
    const created = await (await api("/v1/pose", { method: "POST", body: form })).json();
    const job = await pollJob(created.job_id);
    if (job.status !== "done") throw new Error(`job ${job.status}${job.error ? `: ${job.error}` : ""}`);
    await showResult(job);
  } catch (error) {
    showMessage("job-status", error.message, true);
  } finally {
    $("job-submit").disabled = false;
  }
}

async function pollJob(jobId) {
  const progress = $("job-progress");
  progress.hidden = false;
  for (;;) {
    const job = await (await api(`/v1/pose/${jobId}`)).json();
    const { frames_done: done, frames_total: total } = job.progress;
    progress.max = total || 1;
    progress.value = done;
    showMessage("job-status", `job ${jobId}: ${job.status}, ${done}/${total ?? "?"} frames`);
    if (["done", "failed", "cancelled"].includes(job.status)) return job;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function showResult(job) {
  const result = await (await api(`/v1/pose/${job.job_id}/result`)).json();
  const persons = result.frames.reduce((n, frame) => n + frame.persons.length, 0);
  const tracks = new Set(result.frames.flatMap((frame) => frame.persons.map((p) => p.track_id)));
  const summary = {
    job: job.job_id,
    model: result.model,
    size: `${result.video.width}×${result.video.height}`,
    frames: result.frames.length,
    poses: persons,
    tracks: tracks.size,
  };
  $("job-summary").replaceChildren(
    ...Object.entries(summary).map(([name, value]) => {
      const row = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value;
      row.append(dt, dd);
      return row;
    }),
  );
  for (const button of document.querySelectorAll("#job-result [data-format]")) {
    button.onclick = () => download(`/v1/pose/${job.job_id}/result?format=${button.dataset.format}`,
      `${job.job_id}.${button.dataset.format}.json`);
  }
  const video = $("job-video");
  video.hidden = !job.links.video;
  if (job.links.video) {
    const blob = await (await api(`/v1/pose/${job.job_id}/video`)).blob();
    video.src = URL.createObjectURL(blob);
  }
  $("job-result").hidden = false;
  showMessage("job-status", `job ${job.job_id}: done`);
}

async function download(path, filename) {
  try {
    const blob = await (await api(path)).blob(); // a plain link could not carry the API key
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    showMessage("job-status", error.message, true);
  }
}

// ---------------------------------------------------------------- cameras the server pulls

// The list is polled (GET /v1/sources); a watched camera is the server's MJPEG overlay in an
// <img>, which carries the key as ?api_key= (an <img> cannot send headers) and needs no script.
let sourcesTimer = null;
let watching = null; // the id of the source whose overlay is shown

async function addSource(event) {
  event.preventDefault();
  const body = { url: $("source-url").value.trim() };
  if ($("model").value) body.model = $("model").value;
  const fps = Number($("source-fps").value);
  if (fps > 0) body.max_fps = fps;
  $("source-add").disabled = true;
  try {
    const response = await api("/v1/sources", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const created = await response.json();
    showMessage("source-message", `camera ${created.source_id} added: ${created.status}`);
    $("source-url").value = "";
    await refreshSources();
  } catch (error) {
    showMessage("source-message", `cannot add the camera: ${error.message}`, true);
  } finally {
    $("source-add").disabled = false;
  }
}

async function refreshSources() {
  clearTimeout(sourcesTimer);
  try {
    const body = await (await api("/v1/sources")).json();
    showSources(body.sources);
  } catch (error) {
    const keyed = error.status === 401 || error.status === 403;
    showMessage("source-state", `cameras: ${error.message}${keyed ? " (type the API key above)" : ""}`, true);
  } finally {
    sourcesTimer = setTimeout(refreshSources, SOURCES_POLL_MS);
  }
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function button(text, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}

function showSources(sources) {
  const rows = sources.map((source) => {
    const row = document.createElement("tr");
    row.dataset.source = source.source_id;
    const actions = document.createElement("td");
    actions.append(
      button("Watch", () => watchSource(source.source_id)),
      button("Remove", () => removeSource(source.source_id)),
    );
    row.append(
      cell(source.source_id),
      cell(source.status),
      cell(source.frames_processed),
      cell(source.processing_fps === null ? "–" : source.processing_fps.toFixed(1)),
      cell(source.url),
      cell(source.last_error ?? ""),
      actions,
    );
    return row;
  });
  $("source-list").replaceChildren(...rows);
  showMessage("source-state", sources.length ? "" : "no camera yet: add one by its URL");
  if (watching && !sources.some((source) => source.source_id === watching)) stopWatching();
}

function watchSource(sourceId) {
  const url = new URL(`/v1/sources/${encodeURIComponent(sourceId)}/overlay`, window.location.href);
  if (apiKey()) url.searchParams.set("api_key", apiKey());
  watching = sourceId;
  $("source-overlay").src = url.toString();
  $("source-stage").hidden = false;
  showMessage("source-message", `watching camera ${sourceId}`);
}

function stopWatching() {
  watching = null;
  $("source-overlay").removeAttribute("src"); // closes the MJPEG answer
  $("source-stage").hidden = true;
}

async function removeSource(sourceId) {
  try {
    const last = await (await api(`/v1/sources/${encodeURIComponent(sourceId)}`, { method: "DELETE" })).json();
    if (watching === sourceId) stopWatching();
    showMessage("source-message", `camera ${sourceId} removed after ${last.frames_processed} frames`);
  } catch (error) {
    showMessage("source-message", `cannot remove ${sourceId}: ${error.message}`, true);
  }
  await refreshSources();
}

// ---------------------------------------------------------------- wiring

const live = new LiveStream();

$("start").addEventListener("click", async () => {
  setButtons(true);
  showMessage("live-message", "");
  try {
    await live.start();
  } catch (error) {
    showMessage("live-message", `cannot start: ${error.message}`, true);
    live.stopCamera();
    setButtons(false);
  }
});
$("stop").addEventListener("click", () => live.stop());
$("fps").addEventListener("change", () => live.timer && live.schedule());
$("quality").addEventListener("input", () => {
  $("quality-value").textContent = Number($("quality").value).toFixed(2);
});
$("api-key").addEventListener("change", loadModels);
$("api-key").addEventListener("change", refreshSources);
$("model").addEventListener("change", showModelNotice);
$("job-form").addEventListener("submit", submitJob);
$("source-form").addEventListener("submit", addSource);
$("source-overlay").addEventListener("error", () => {
  if (watching) showMessage("source-message", `the overlay of camera ${watching} did not load`, true);
});

loadModels();
refreshSources();
