// Reads /status.json every 2 s and fills the page. Text goes in with textContent, never as
// HTML: prompts and notes come from strangers on the internet.
"use strict";

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(id, items, makeRow) {
  const body = document.getElementById(id);
  body.replaceChildren(...items.map(makeRow));
}

function shortId(id) { return id.slice(0, 12) + "…"; }

function show(data) {
  document.getElementById("provider").textContent = data.provider || "";
  const health = document.getElementById("health");
  health.textContent = data.healthy ? "ok" : "failing";
  health.className = data.healthy ? "ok" : "bad";
  health.title = data.problems.join("; ");
  document.getElementById("queue").textContent = data.queue_depth;
  document.getElementById("busy").textContent = data.engines_busy;
  document.getElementById("succeeded").textContent = data.counts.succeeded;
  document.getElementById("failed").textContent = data.counts.failed + " / " + data.counts.rejected;
  document.getElementById("earned").textContent = Math.floor(data.earned_msats / 1000);
  fill("relays", data.relays, (relay) => {
    const row = document.createElement("tr");
    cell(row, relay.url);
    cell(row, relay.connected ? "connected" : "disconnected", relay.connected ? "ok" : "bad");
    cell(row, relay.connects);
    return row;
  });
  fill("active", data.active, (job) => {
    const row = document.createElement("tr");
    row.dataset.job = job.id;
    cell(row, shortId(job.id), "id");
    cell(row, job.state);
    cell(row, job.encrypted ? "(encrypted)" : job.prompt);
    return row;
  });
  fill("recent", data.recent, (job) => {
    const row = document.createElement("tr");
    row.dataset.job = job.id;
    const thumb = cell(row, "");
    if (job.thumbnail && /^https?:\/\//.test(job.thumbnail)) {
      const img = document.createElement("img");
      img.className = "thumb";
      img.alt = "result of " + shortId(job.id);
      img.src = job.thumbnail;
      thumb.appendChild(img);
    }
    cell(row, shortId(job.id), "id");
    cell(row, job.status, "status-" + job.status);
    cell(row, job.encrypted ? "(encrypted)" : job.prompt);
    cell(row, job.note);
    return row;
  });
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

async function refresh() {
  try {
    const response = await fetch("/status.json", { cache: "no-store" });
    if (response.ok) show(await response.json());
  } catch (error) {
    document.getElementById("updated").textContent = "cannot reach the DVM: " + error;
  }
}

refresh();
setInterval(refresh, 2000);
