/* Overview: pipeline health from /healthz (broker, lake, Redis, endpoint server), refreshed every 10 s. */
(function () {
  "use strict";
  const root = document.getElementById("health");
  if (!root) return;
  const { getJSON, showError } = window.IoTCast;
  const body = document.getElementById("health-checks");
  const status = document.getElementById("health-status");
  const errorBox = document.getElementById("health-error");
  const NAMES = { database: "database", redis: "Redis (task queue)", broker: "MQTT broker", lake: "lake",
    endpoint_server: "endpoint server" };

  function render(report) {
    const rows = Object.entries(report.checks).map(function ([name, check]) {
      const row = document.createElement("tr");
      const label = document.createElement("td");
      label.textContent = NAMES[name] || name;
      const state = document.createElement("td");
      const badge = document.createElement("span");
      badge.className = "badge " + (check.ok ? "badge-succeeded" : "badge-failed");
      badge.textContent = check.ok ? "ok" : "down";
      state.append(badge);
      const detail = document.createElement("td");
      detail.className = check.ok ? "muted small" : "error-text";
      detail.textContent = check.ok ? check.ms + " ms" : check.error;
      row.append(label, state, detail);
      return row;
    });
    body.replaceChildren(...rows);
  }

  async function refresh() {
    try {
      render(await getJSON(root.dataset.healthUrl));
      showError(errorBox, "");
    } catch (error) {
      if (error.data && error.data.checks) render(error.data); // 503 = degraded: still a report
      else showError(errorBox, "Could not check the pipeline's health: " + error.message);
    }
    status.textContent = "checked " + new Date().toLocaleTimeString();
  }

  refresh();
  setInterval(refresh, 10000);
})();
