// The /serving/ page: weights as sliders + numbers (admins apply them), live metrics, rollout steps, Stop.
(function () {
  "use strict";
  const csrf = () => (document.querySelector("[name=csrfmiddlewaretoken]") || {}).value || "";
  const api = (path, options) => fetch(`/api/v1/endpoints/${path}`, {
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
    ...options,
  }).then(async (r) => ({ok: r.ok, status: r.status, body: await r.json().catch(() => ({}))}));

  function shares(card) {
    const inputs = [...card.querySelectorAll("input[type=number]")];
    const production = inputs.filter((i) => card.querySelector(`[data-share="${i.dataset.for}"]`).dataset.shadow !== "true");
    const total = production.reduce((sum, i) => sum + (parseFloat(i.value) || 0), 0);
    inputs.forEach((input) => {
      const cell = card.querySelector(`[data-share="${input.dataset.for}"]`);
      const share = total > 0 ? (100 * (parseFloat(input.value) || 0)) / total : 0;
      cell.textContent = cell.dataset.shadow === "true" ? `mirrors ${Math.min(100, share).toFixed(1)}%` : `${share.toFixed(1)}%`;
    });
  }

  function bindWeights(card, name, note) {
    const form = card.querySelector("[data-role=weights]");
    form.querySelectorAll("input[type=range]").forEach((slider) => {
      const number = form.querySelector(`input[data-for="${slider.name}"]`);
      slider.addEventListener("input", () => { number.value = slider.value; shares(card); });
      number.addEventListener("input", () => { slider.value = number.value; shares(card); });
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const weights = {};
      form.querySelectorAll("input[type=number]:not([disabled])").forEach((i) => { weights[i.dataset.for] = parseFloat(i.value); });
      const answer = await api(`${name}/weights`, {method: "PATCH", body: JSON.stringify({weights})});
      note.textContent = answer.ok ? `update #${answer.body.id} queued` : answer.body.message || `error ${answer.status}`;
    });
    shares(card);
  }

  function showOperation(card, name, detail) {
    const box = card.querySelector("[data-role=rollout]");
    const active = (detail.operations || []).find((op) => op.status === "queued" || op.status === "running");
    const shown = active || (detail.operations || [])[0];
    box.hidden = !active;
    card.querySelector("[data-role=status]").textContent = detail.status;
    if (!shown) return;
    box.querySelector("[data-role=op-title]").textContent = `${shown.kind} #${shown.id} (${shown.status})`;
    const list = box.querySelector("[data-role=steps]");
    list.replaceChildren(...shown.steps.map((step) => {
      const item = document.createElement("li");
      item.className = step.state;
      item.textContent = `${step.percent}%: ${step.message} [${step.state}]`;
      return item;
    }));
    const stop = box.querySelector("[data-role=stop]");
    if (stop) stop.onclick = () => api(`${name}/operations/${shown.id}/stop`, {method: "POST"});
  }

  const cell = (text, className) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  };
  const ms = (value) => (value === null || value === undefined ? "–" : `${Number(value).toFixed(1)} ms`);

  // The newest history lines (the page rendered the first ones): time in the viewer's zone, UTC on hover.
  function showHistory(card, history) {
    const list = card.querySelector("[data-role=history-lines]");
    if (!list || !history || !history.length) return;
    list.replaceChildren(...history.slice(0, 8).map((line) => {
      const item = document.createElement("li");
      const when = document.createElement("span");
      when.className = "history-when";
      when.append(window.IoTCast.timeElement(line.at));
      const what = document.createElement("span");
      what.className = "history-what";
      what.textContent = line.message;
      const who = document.createElement("span");
      who.className = "muted small";
      if (line.config) {
        const code = document.createElement("code");
        code.textContent = line.config;
        who.append("config ", code, " · ");
      }
      who.append(`by ${line.actor}`);
      item.append(when, " ", what, " ", who);
      return item;
    }));
  }

  // The shadow variant's latest answers next to production's: the median model latency of each side.
  async function showShadow(card, name) {
    const box = card.querySelector("[data-role=shadow]");
    if (!box) return;
    const answer = await api(`${name}/shadow?limit=10`);
    const summary = box.querySelector("[data-role=shadow-summary]");
    if (!answer.ok) {
      summary.textContent = answer.body.message || `shadow answers unavailable (${answer.status})`;
      return;
    }
    const data = answer.body;
    if (data.records.length) {
      const errors = data.shadow_errors ? `, ${data.shadow_errors} shadow error(s)` : "";
      summary.textContent = `Last ${data.records.length} mirrored requests: p50 model latency production ` +
        `${ms(data.production_p50_ms)}, shadow ${ms(data.shadow_p50_ms)}${errors}.`;
    }
    box.querySelector("[data-role=shadow-rows]").replaceChildren(...data.records.map((record) => {
      const row = document.createElement("tr");
      const when = document.createElement("td");
      when.append(window.IoTCast.timeElement(record.at));
      row.append(when, cell(record.production_variant || "–"), cell(ms(record.production_model_ms), "num"),
        cell(ms(record.model_ms), "num"), cell(String(record.status), record.status === 200 ? "" : "bad"));
      return row;
    }));
  }

  function plot(card, metrics) {
    const chart = card.querySelector("[data-role=chart]");
    if (!window.Plotly) return;
    const traces = [];
    const series = (points, field) => points.map((p) => (p[field] === undefined ? null : p[field]));
    Object.entries(metrics.variants || {}).forEach(([variant, data]) => {
      const x = data.points.map((p) => new Date(p.t * 1000));
      traces.push({x, y: data.points.map((p) => p.invocations / metrics.period), name: `${variant} req/s`, type: "scatter"});
      traces.push({x, y: series(data.points, "errors_4xx"), name: `${variant} 4xx`, type: "bar"});
      traces.push({x, y: series(data.points, "errors_5xx"), name: `${variant} 5xx`, type: "bar"});
      traces.push({x, y: series(data.points, "model_latency_ms"), name: `${variant} model ms`, yaxis: "y2", type: "scatter", line: {dash: "dot"}});
      traces.push({x, y: series(data.points, "overhead_latency_ms"), name: `${variant} overhead ms`, yaxis: "y2", type: "scatter", line: {dash: "dash"}});
    });
    // The bundled plotly.js (v4) takes axis titles as {text}: a plain string is no longer drawn.
    window.Plotly.react(chart, traces, {
      // room under the axis for the two-line date ticks, then the legend below them
      margin: {t: 10, r: 50, b: 100, l: 50}, height: 300, legend: {orientation: "h", y: -0.4, yanchor: "top"},
      barmode: "group",
      xaxis: {type: "date", range: [new Date(Date.now() - 15 * 60e3), new Date()]}, // the 15 min asked for
      yaxis: {title: {text: "req/s, errors"}, rangemode: "tozero"},
      yaxis2: {title: {text: "latency (ms)"}, overlaying: "y", side: "right", rangemode: "tozero"},
    }, {displayModeBar: false, responsive: true});
  }

  document.querySelectorAll("[data-endpoint]").forEach((card) => {
    const name = card.dataset.endpoint;
    const note = card.querySelector("[data-role=note]");
    bindWeights(card, name, note);
    let timer = null;
    const refresh = async () => {
      const detail = await api(name);
      if (detail.status === 401) return signedOut();
      if (detail.ok) {
        showOperation(card, name, detail.body);
        showHistory(card, detail.body.history);
      }
      await showShadow(card, name);
      const metrics = await api(`${name}/metrics?minutes=15&period=10`);
      if (metrics.status === 401) return signedOut();
      if (metrics.ok) plot(card, metrics.body);
      else note.textContent = metrics.body.message || "metrics unavailable";
    };
    // The session ended (signed out in another tab, or expired): stop polling instead of failing every 3 s.
    const signedOut = () => {
      clearInterval(timer);
      note.textContent = "Your session has ended: reload the page to sign in again.";
    };
    refresh();
    timer = setInterval(refresh, 3000);
  });
})();
