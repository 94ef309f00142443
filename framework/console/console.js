// The zeroserve console: reads /zeroserve/status and /zeroserve/overview, draws each model.
// Every name and message from the server is written as text (textContent), never as markup.
"use strict";

const STATUS_EVERY_MS = 500;
const OVERVIEW_EVERY_MS = 2000;
const SYMBOLS = { zero: "○", starting: "◐", ready: "●", draining: "◑", failed: "✕", asleep: "☾" };
const cards = new Map();
let overview = null;

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.map((child) => (child instanceof Node ? child : String(child))));
  return node;
}

function seconds(value) {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(3)} s`;
}

function clock(date) {
  return date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
}

class ApiError extends Error {
  constructor(path, status, body) {
    const said = body && (body.error || body.message) ? `: ${body.error || body.message}` : "";
    super(`${path} answered ${status}${said}`);
  }
}

async function getJSON(path, options) {
  const answer = await fetch(path, { cache: "no-store", ...(options || {}) });
  const body = await answer.json().catch(() => null);
  if (!answer.ok) throw new ApiError(path, answer.status, body);
  return body;
}

function facts(pairs) {
  const list = el("dl", { class: "facts" });
  for (const [term, value] of pairs) list.append(el("dt", {}, term), el("dd", {}, value));
  return list;
}

function bars(rows, options) {
  // rows: {label, value, text, from?, attributes?}; options: {max, limit?, name}
  const list = el("ul", { class: "bars", "aria-label": options.name });
  const max = options.max > 0 ? options.max : 1;
  for (const row of rows) {
    const fill = el("span", { class: "fill" });
    const from = row.from || 0;
    fill.style.left = `${(100 * from) / max}%`;
    fill.style.width = `${(100 * Math.max(row.value - from, 0)) / max}%`;
    const track = el("span", { class: "track", "aria-hidden": "true" }, fill);
    if (options.limit !== undefined) {
      const limit = el("span", { class: "limit" });
      limit.style.left = `${Math.min((100 * options.limit) / max, 100)}%`;
      track.append(limit);
    }
    list.append(el("li", row.attributes || {}, el("span", { class: "label" }, row.label), track,
      el("span", { class: "value" }, row.text)));
  }
  return list;
}

function newCard(name) {
  const card = {
    name,
    state: null,
    transitions: [],
    lastCount: null,
    rate: null,
    root: el("section", { class: "model", "data-model": name, "aria-label": `model ${name}` }),
    badge: el("span", { class: "state", role: "status" }),
    facts: el("div"),
    history: el("ol", { class: "transitions", "aria-label": "state changes" }),
    traffic: el("div"),
    coldStart: el("div", { class: "cold-start" }),
    batching: el("div", { class: "batching" }),
    drift: el("div", { class: "drift" }),
    form: null,
    sizes: null,
  };
  card.root.append(el("h2", {}, name), card.badge, card.facts,
    el("h3", {}, "State changes"), card.history,
    el("h3", {}, "Traffic"), card.traffic,
    el("h3", {}, "Cold starts"), card.coldStart,
    card.batching, card.drift);
  document.getElementById("models").append(card.root);
  return card;
}

function drawState(card, model) {
  const state = model.state;
  card.badge.dataset.state = state;
  card.badge.textContent = `${SYMBOLS[state] || "?"} ${state}`;
  if (state !== card.state) {
    card.state = state;
    card.transitions.push({ state, at: new Date() });
    card.history.append(el("li", { "data-state": state }, `${clock(new Date())} ${state}`));
    card.history.scrollTop = card.history.scrollHeight;
  }
  const replicas = model.replicas || [];
  const ready = replicas.filter((replica) => replica.state === "ready" || replica.state === "RUNNING").length;
  const pairs = [
    ["replicas", `${ready} ready of ${replicas.length} (min ${model.min_replicas}, max ${model.max_replicas})`],
    ["in flight", model.in_flight ?? "–"],
    ["held", model.queued ?? 0],
    ["to zero after", `${model.scale_to_zero_after_s} s idle (idle ${Number(model.idle_s).toFixed(1)} s)`],
  ];
  if (model.serve_state) pairs.push(["Ray Serve", model.serve_state]);
  if (model.last_error) pairs.push(["last error", model.last_error]);
  card.facts.replaceChildren(facts(pairs));
}

function processStart(last) {
  // The worker's phases count from its process start; the start itself (the request's wait for
  // a fork or a spawn) is what the time to ready has beyond the worker's own "ready" mark.
  const phases = (last.worker_timeline && last.worker_timeline.phases) || [];
  const ready = phases.find((phase) => phase.name === "ready");
  if (!ready || last.ready_s === undefined) return 0;
  return Math.max(0, last.ready_s - ready.start_s);
}

function phaseRows(last, offset) {
  const phases = (last.worker_timeline && last.worker_timeline.phases) || [];
  const rows = phases
    .filter((phase) => phase.end_s !== null && phase.end_s !== undefined)
    .map((phase) => {
      const took = Math.round((phase.end_s - phase.start_s) * 10000) / 10000;
      return {
        label: phase.name,
        from: offset + phase.start_s,
        value: offset + phase.end_s,
        text: seconds(took),
        attributes: { "data-phase": phase.name, "data-seconds": String(took) },
      };
    });
  if (offset > 0) {
    const label = last.mode === "ray" ? "replica start" : `${last.mode} (until the worker runs)`;
    rows.unshift({ label, value: offset, text: seconds(offset), attributes: { "data-total": "process-start" } });
  }
  return rows;
}

function drawColdStart(card, model) {
  const last = model.last_cold_start;
  if (!last) {
    card.coldStart.replaceChildren(el("p", { class: "none" }, "No cold start yet: the model has not started from zero."));
    return;
  }
  const rows = phaseRows(last, processStart(last));
  const totals = [];
  if (last.ready_s !== undefined) totals.push({ label: "to ready", value: last.ready_s, text: seconds(last.ready_s), attributes: { "data-total": "ready" } });
  if (last.first_response_s !== undefined) totals.push({ label: "first answer", value: last.first_response_s, text: seconds(last.first_response_s), attributes: { "data-total": "first-answer" } });
  const max = Math.max(0, ...rows.map((row) => row.value), ...totals.map((row) => row.value));
  const parts = [
    el("p", {}, `Started by ${last.trigger} (${last.mode}); ready after ${seconds(last.ready_s)}, first answer after ${seconds(last.first_response_s)}.`),
    bars(rows.concat(totals), { max, name: "cold start phases" }),
  ];
  const recent = model.cold_starts || [];
  if (recent.length > 1) {
    const ready = recent.filter((start) => start.ready_s !== undefined);
    const most = Math.max(0, ...ready.map((start) => start.ready_s));
    parts.push(el("h3", {}, "Recent cold starts (to ready)"), bars(ready.map((start) => ({
      label: new Date(start.started_at * 1000).toLocaleTimeString([], { hour12: false }),
      value: start.ready_s,
      text: seconds(start.ready_s),
    })), { max: most, name: "recent cold starts" }));
  }
  card.coldStart.replaceChildren(...parts);
}

function drawTraffic(card) {
  const figures = overview && overview.models[card.name];
  if (!figures) {
    card.traffic.replaceChildren(el("p", { class: "none" }, "Reading traffic…"));
    return;
  }
  const errors = Object.entries(figures.errors);
  const ms = (value) => (value === null ? "–" : `${value} ms`);
  card.traffic.replaceChildren(facts([
    ["requests", figures.requests],
    ["rate", card.rate === null ? "–" : `${card.rate.toFixed(2)} /s`],
    ["latency p50", ms(figures.latency_ms.p50)],
    ["latency p99", ms(figures.latency_ms.p99)],
    ["errors", errors.length ? errors.map(([status, count]) => `${status} × ${count}`).join(", ") : "none"],
  ]));
}

function batchingForm(card, settings) {
  const size = el("input", { type: "number", name: "max_batch_size", min: "1", step: "1" });
  const latency = el("input", { type: "number", name: "max_latency_ms", min: "0", step: "any" });
  const split = el("input", { type: "checkbox", name: "split" });
  const result = el("p", { class: "result", role: "status", "aria-live": "polite" });
  const form = el("form", { class: "batching", "aria-label": `batching of ${card.name}` },
    el("label", {}, "max batch size", size), el("label", {}, "max latency (ms)", latency),
    el("label", {}, "split large requests", split), el("button", { type: "submit" }, "Apply"));
  const fill = (values) => {
    size.value = values.max_batch_size;
    latency.value = values.max_latency_ms;
    split.checked = values.split;
  };
  fill(settings);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const change = { max_batch_size: Number(size.value), max_latency_ms: Number(latency.value), split: split.checked };
    result.className = "result";
    result.textContent = "Applying…";
    try {
      const path = `/zeroserve/models/${encodeURIComponent(card.name)}/batching`;
      const answer = await getJSON(path, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(change) });
      fill(answer.batching);
      result.textContent = `Applied: max batch size ${answer.batching.max_batch_size}, max latency ${answer.batching.max_latency_ms} ms.`;
    } catch (error) {
      result.className = "result error";
      result.textContent = error.message;
    }
  });
  return { form, result, fill };
}

function drawBatching(card, model) {
  if (!model.batching) {
    card.batching.replaceChildren();
    return;
  }
  if (card.form === null) {
    card.form = batchingForm(card, model.batching);
    card.sizes = el("div");
    card.batching.replaceChildren(el("h3", {}, "Batching"), card.form.form, card.form.result,
      el("h3", {}, "Batch sizes"), card.sizes);
  }
  drawBatchSizes(card);
}

function drawBatchSizes(card) {
  if (!card.sizes) return;
  const figures = overview && overview.models[card.name];
  const sizes = figures ? figures.batch_sizes.filter((bucket) => bucket.count > 0) : [];
  card.sizes.replaceChildren(sizes.length ? bars(sizes.map((bucket) => ({
    label: `≤ ${bucket.le}`, value: bucket.count, text: String(bucket.count),
  })), { max: Math.max(...sizes.map((bucket) => bucket.count)), name: "batch sizes" })
    : el("p", { class: "none" }, "No batch dispatched yet."));
}

function drawDrift(card) {
  const figures = overview && overview.models[card.name];
  const features = figures ? Object.entries(figures.psi) : [];
  const outputs = figures ? Object.entries(figures.outputs) : [];
  if (!features.length && !outputs.length) {
    card.drift.replaceChildren();
    return;
  }
  const threshold = overview.drift_threshold;
  const parts = [];
  if (features.length) {
    const max = Math.max(threshold * 1.5, ...features.map(([, psi]) => psi));
    parts.push(el("h3", {}, `Input drift (PSI; threshold ${threshold})`), bars(features.map(([name, psi]) => {
      const drifted = figures.drifted.includes(name);
      return { label: name, value: psi, text: `${psi.toFixed(3)}${drifted ? " drifted" : ""}`,
        attributes: drifted ? { class: "drifted" } : {} };
    }), { max, limit: threshold, name: "input drift" }));
  }
  if (outputs.length) {
    parts.push(el("h3", {}, "Outputs"), bars(outputs.map(([value, count]) => ({ label: value, value: count, text: String(count) })),
      { max: Math.max(...outputs.map(([, count]) => count)), name: "outputs" }));
  }
  card.drift.replaceChildren(...parts);
}

function problem(message) {
  const node = document.getElementById("problem");
  node.hidden = !message;
  node.textContent = message || "";
}

async function readStatus() {
  try {
    const status = await getJSON("/zeroserve/status");
    const names = Object.keys(status.models).sort();
    for (const name of names) {
      const card = cards.get(name) || cards.set(name, newCard(name)).get(name);
      const model = status.models[name];
      drawState(card, model);
      drawColdStart(card, model);
      drawBatching(card, model);
    }
    const states = names.map((name) => status.models[name].state);
    const count = (state) => states.filter((each) => each === state).length;
    document.getElementById("summary").textContent =
      `${names.length} models: ${count("ready")} ready, ${count("starting")} starting, ${count("zero")} at zero, ` +
      `${count("failed")} failed · updated ${clock(new Date())}`;
    problem(null);
  } catch (error) {
    problem(`Cannot read the status: ${error.message}`);
  }
  setTimeout(readStatus, STATUS_EVERY_MS);
}

async function readOverview() {
  try {
    const read = await getJSON("/zeroserve/overview");
    const now = performance.now();
    for (const [name, figures] of Object.entries(read.models)) {
      const card = cards.get(name);
      if (!card) continue;
      if (card.lastCount !== null && figures.requests >= card.lastCount.requests) {
        card.rate = (figures.requests - card.lastCount.requests) / ((now - card.lastCount.at) / 1000);
      }
      card.lastCount = { requests: figures.requests, at: now };
    }
    overview = read;
    for (const card of cards.values()) {
      drawTraffic(card);
      drawBatchSizes(card);
      drawDrift(card);
    }
  } catch (error) {
    problem(`Cannot read the traffic figures: ${error.message}`);
  }
  setTimeout(readOverview, OVERVIEW_EVERY_MS);
}

readStatus();
readOverview();
