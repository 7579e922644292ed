// A run's page, live: the run's events (SSE) colour the graph's steps as they change, add to
// the event list, and once the run ends the panels below the graph are fetched again.
"use strict";
(function () {
  const root = document.getElementById("run");
  if (!root) return;
  const runId = root.getAttribute("data-run");
  const STEP = {
    "agent.task.started": "running", "agent.task.retrying": "running",
    "agent.task.completed": "succeeded", "agent.task.failed": "failed",
    "agent.task.skipped": "skipped", "agent.task.cancelled": "cancelled",
    "agent.task.compensated": "compensated", "agent.task.waiting": "waiting",
    "agent.task.held": "ready",
  };
  const FINAL = ["succeeded", "degraded", "failed", "compensated", "cancelled", "timed_out", "expired"];

  function setClass(el, status) {
    el.className.baseVal !== undefined
      ? el.setAttribute("class", "st-" + status)
      : (el.className = el.className.replace(/\bst-[a-z_]+/, "st-" + status));
  }

  function setStep(step, status) {
    document.querySelectorAll('.dag .node[data-step="' + CSS.escape(step) + '"]').forEach((node) => {
      const rect = node.querySelector("rect");
      if (rect.getAttribute("class") === "st-" + status) return;
      setClass(rect, status);
      node.querySelector(".stt").textContent = status;
      node.querySelector("title").textContent = step + ": " + status;
      node.setAttribute("data-status", status);
      node.classList.remove("changed");
      void node.getBoundingClientRect();
      node.classList.add("changed");
    });
    document.querySelectorAll('[data-step-badge="' + CSS.escape(step) + '"]').forEach((badge) => {
      setClass(badge, status);
      badge.textContent = status;
    });
  }

  function setRun(status) {
    const badge = document.getElementById("run-status");
    if (badge) { setClass(badge, status); badge.textContent = status; }
    root.setAttribute("data-status", status);
  }

  function addEvent(data) {
    const body = document.getElementById("event-rows");
    if (!body) return;
    const row = document.createElement("tr");
    [data.timestamp.replace("T", " ").slice(0, 19), data.event_type, data.actor, JSON.stringify(data.payload)]
      .forEach((text, i) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (i !== 2) cell.className = i === 3 ? "mono detail" : "mono";
        row.appendChild(cell);
      });
    body.appendChild(row);
  }

  async function refreshPanels() {
    try {
      const response = await fetch("/ui/runs/" + encodeURIComponent(runId) + "/panels",
        { credentials: "same-origin" });
      if (response.ok) document.getElementById("panels").innerHTML = await response.text();
    } catch (e) {
      // the page still shows the live graph
    }
  }

  // The stream first replays the stored events; those the page was rendered with are known.
  const seen = new Set();
  document.querySelectorAll("#event-rows tr[data-id]").forEach((row) => seen.add(row.getAttribute("data-id")));

  function onEvent(message) {
    // The page was drawn from the store after these: its colours are newer than they are.
    if (seen.has(message.lastEventId)) return;
    seen.add(message.lastEventId);
    const data = JSON.parse(message.data);
    const type = data.event_type;
    const p = data.payload || {};
    if (type === "run.started" || type === "run.resumed" || type === "run.replayed") setRun("running");
    if (type in STEP && typeof p.step === "string" && (p.index === undefined || p.index < 0)) {
      setStep(p.step, STEP[type]);
    }
    addEvent(data);
    if (type === "run.completed") {
      setRun(p.status || "succeeded");
      refreshPanels();
    } else if (type === "agent.task.waiting" || type === "run.replayed") {
      refreshPanels();
    }
  }

  const source = new EventSource("/ui/runs/" + encodeURIComponent(runId) + "/stream");
  Object.keys(STEP).concat(["run.queued", "run.started", "run.resumed", "run.replayed",
    "run.stopping", "run.completed", "run.cancel", "run.signal", "agent.task.fallback",
    "agent.task.throttled", "agent.task.compensation_failed"])
    .forEach((type) => source.addEventListener(type, onEvent));
  source.onerror = () => {
    if (FINAL.indexOf(root.getAttribute("data-status")) >= 0) source.close();
  };
})();
