/* Pipeline page: redraw the runs table from runs.json, every 3 s while a run is queued or running. */
(function () {
  "use strict";
  const root = document.getElementById("runs");
  if (!root) return;
  const { getJSON, showError, summary, timeElement } = window.IoTCast;
  const body = document.getElementById("runs-body");
  const errorBox = document.getElementById("runs-error");
  const status = document.getElementById("runs-status");
  const ACTIVE_MS = 3000;
  const IDLE_MS = 15000; // still look now and then: the scheduler queues runs on its own
  let timer = null;
  // Which runs' logs are expanded, so that the 3 s redraw does not fold them up under the reader.
  const openLogs = new Set();
  body.addEventListener("toggle", function (event) {
    const details = event.target;
    if (!details.classList || !details.classList.contains("run-log")) return;
    if (details.open) openLogs.add(details.dataset.run);
    else openLogs.delete(details.dataset.run);
  }, true);

  function cell(row, ...children) {
    const td = document.createElement("td");
    td.append(...children);
    row.append(td);
    return td;
  }

  function badge(text) {
    const span = document.createElement("span");
    span.className = "badge badge-" + text;
    span.textContent = text;
    return span;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + Math.floor(seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function progress(run) {
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = run.progress;
    const label = document.createElement("span");
    label.className = "small";
    label.textContent = " " + Math.round(run.progress) + "%";
    return [bar, label];
  }

  function messageCell(row, run) {
    const td = cell(row, run.message || "");
    const text = summary(run.result);
    if (text) {
      const div = document.createElement("div");
      div.className = "small muted";
      div.textContent = text;
      td.append(div);
    }
    if (run.error) {
      const details = document.createElement("details");
      details.className = "error-text";
      const head = document.createElement("summary");
      head.textContent = "error";
      const pre = document.createElement("pre");
      pre.textContent = run.error;
      details.append(head, pre);
      td.append(details);
    }
    if (run.log && run.log.length) td.append(logDetails(run));
  }

  /* The run's log lines, collapsed unless the operator had opened them before this redraw. */
  function logDetails(run) {
    const details = document.createElement("details");
    details.className = "run-log";
    details.dataset.run = run.id;
    details.open = openLogs.has(String(run.id));
    const head = document.createElement("summary");
    head.textContent = "log (" + run.log.length + " line" + (run.log.length === 1 ? "" : "s") + ")";
    const list = document.createElement("ol");
    list.className = "log-lines";
    run.log.forEach(function (line) {
      const item = document.createElement("li");
      item.className = "log-" + line.level;
      const level = document.createElement("span");
      level.className = "log-level";
      level.textContent = line.level;
      const message = document.createElement("span");
      message.className = "log-message";
      message.textContent = line.message;
      item.append(timeElement(line.t), " ", level, " ", message);
      list.append(item);
    });
    details.append(head, list);
    return details;
  }

  function render(runs) {
    if (!runs.length) return; // keep the server-rendered empty state
    const rows = runs.map(function (run) {
      const row = document.createElement("tr");
      cell(row, "#" + run.id);
      cell(row, run.kind);
      cell(row, badge(run.status));
      cell(row, ...progress(run));
      messageCell(row, run);
      cell(row, duration(run.duration_s));
      cell(row, timeElement(run.created_at));
      return row;
    });
    body.replaceChildren(...rows);
  }

  async function refresh() {
    let active = false;
    try {
      const data = await getJSON(root.dataset.runsUrl);
      showError(errorBox, "");
      render(data.runs);
      active = data.active;
      status.textContent = (active ? "refreshing while runs are active · " : "") + "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      showError(errorBox, error.message);
      if (error.status === 401) return; // signed out: stop polling
    }
    timer = setTimeout(refresh, active ? ACTIVE_MS : IDLE_MS);
  }

  timer = setTimeout(refresh, root.dataset.active === "true" ? ACTIVE_MS : IDLE_MS);
})();
