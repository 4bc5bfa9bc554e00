/* Forecasts page: fetch history + forecast for the chosen device, metric and variant and draw the fan chart;
   below it, the past forecasts with the actuals that arrived and the accuracy each variant achieved. */
(function () {
  "use strict";
  const root = document.getElementById("forecast");
  if (!root) return;
  const { getJSON, showError, formatNumber } = window.IoTCast;
  const form = document.getElementById("forecast-form");
  const errorBox = document.getElementById("forecast-error");
  const model = document.getElementById("forecast-model");
  const chart = document.getElementById("forecast-chart");
  const status = document.getElementById("forecast-status");
  const metaNode = document.getElementById("metrics-meta");
  const META = metaNode ? JSON.parse(metaNode.textContent) : {};

  function dates(list) {
    return list.map(function (iso) { return new Date(iso); }); // Date objects plot in local time
  }

  function traces(data, unit) {
    const f = data.forecast;
    const x = dates(f.timestamps);
    const q = f.quantiles || {};
    const hover = "%{x|%Y-%m-%d %H:%M}<br>%{y:.2f}" + (unit ? " " + unit : "");
    const out = [{
      x: dates(data.history.timestamps), y: data.history.values, name: "history", type: "scatter", mode: "lines",
      line: { color: "#344054", width: 1.5 }, hovertemplate: hover + "<extra>history</extra>",
    }];
    if (q["0.9"] && q["0.1"]) {
      out.push({ x: x, y: q["0.9"], name: "p90", type: "scatter", mode: "lines", line: { width: 0 },
        showlegend: false, hovertemplate: hover + "<extra>p90</extra>" });
      out.push({ x: x, y: q["0.1"], name: "p10–p90", type: "scatter", mode: "lines", line: { width: 0 },
        fill: "tonexty", fillcolor: "rgba(15, 108, 189, 0.2)", hovertemplate: hover + "<extra>p10</extra>" });
    }
    if (q["0.5"]) {
      out.push({ x: x, y: q["0.5"], name: "median (p50)", type: "scatter", mode: "lines",
        line: { color: "#0f6cbd", width: 2 }, hovertemplate: hover + "<extra>p50</extra>" });
    }
    out.push({ x: x, y: f.mean, name: "mean", type: "scatter", mode: "lines",
      line: { color: "#c2410c", width: 1.5, dash: "dash" }, hovertemplate: hover + "<extra>mean</extra>" });
    return out;
  }

  function draw(data) {
    const meta = META[data.metric] || { label: data.metric, unit: "" };
    const layout = {
      title: { text: data.device + " · " + meta.label + (meta.unit ? " (" + meta.unit + ")" : ""), font: { size: 15 }, x: 0.02 },
      margin: { l: 60, r: 20, t: 44, b: 40 }, legend: { orientation: "h", y: -0.12 },
      xaxis: { type: "date" }, yaxis: { title: { text: meta.unit }, zeroline: false }, hovermode: "x unified",
    };
    Plotly.react(chart, traces(data, meta.unit), layout, { responsive: true, displaylogo: false });
    model.textContent = "Served by model " + (data.model || "?") + (data.variant ? ", variant " + data.variant : "") +
      " · " + data.forecast.timestamps.length + " steps ahead";
    model.hidden = false;
  }

  const past = {
    chart: document.getElementById("past-chart"),
    error: document.getElementById("past-error"),
    empty: document.getElementById("past-empty"),
    note: document.getElementById("past-note"),
    table: document.getElementById("past-accuracy"),
  };
  const FANS = ["15, 108, 189", "194, 65, 12", "21, 128, 61", "124, 58, 237"];

  function pastTraces(data, unit) {
    const hover = "%{x|%Y-%m-%d %H:%M}<br>%{y:.2f}" + (unit ? " " + unit : "");
    const out = [];
    data.records.forEach(function (record, index) {
      const color = FANS[index % FANS.length];
      const x = dates(record.timestamps);
      const made = new Date(record.created_at).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
      const name = record.variant + " · " + made;
      if (record.p10 && record.p90) {
        out.push({ x: x, y: record.p90, type: "scatter", mode: "lines", line: { width: 0 }, showlegend: false,
          legendgroup: name, hovertemplate: hover + "<extra>p90</extra>" });
        out.push({ x: x, y: record.p10, type: "scatter", mode: "lines", line: { width: 0 }, showlegend: false,
          legendgroup: name, fill: "tonexty", fillcolor: "rgba(" + color + ", 0.12)", hovertemplate: hover + "<extra>p10</extra>" });
      }
      out.push({ x: x, y: record.p50 || record.mean, name: name, legendgroup: name, type: "scatter", mode: "lines",
        line: { color: "rgb(" + color + ")", width: 1.5 }, hovertemplate: hover + "<extra>" + name + " p50</extra>" });
    });
    out.push({ x: dates(data.actuals.timestamps), y: data.actuals.values, name: "actual", type: "scatter",
      mode: "lines+markers", line: { color: "#101828", width: 1.5 }, marker: { size: 5 },
      hovertemplate: hover + "<extra>actual</extra>" });
    return out;
  }

  function accuracyRows(rows) {
    const body = past.table.querySelector("tbody");
    body.replaceChildren();
    rows.forEach(function (row) {
      const tr = document.createElement("tr");
      const cells = [row.variant, row.model, formatNumber(row.records), formatNumber(row.points),
        row.wql === null ? "–" : Number(row.wql).toFixed(3), row.mape === null ? "–" : (row.mape * 100).toFixed(1) + " %"];
      cells.forEach(function (text, column) {
        const td = document.createElement("td");
        td.textContent = text;
        if (column >= 2) td.className = "num";
        tr.append(td);
      });
      body.append(tr);
    });
  }

  function drawPast(data) {
    const matured = data.accuracy.some(function (row) { return row.points > 0; });
    past.empty.hidden = matured;
    past.note.hidden = !matured;
    past.table.hidden = !matured;
    past.chart.hidden = !matured;  // an empty chart box would leave a tall blank card
    if (!matured) {
      if (window.Plotly) Plotly.purge(past.chart);
      return;
    }
    const meta = META[data.metric] || { label: data.metric, unit: "" };
    const layout = {
      margin: { l: 60, r: 20, t: 16, b: 40 }, legend: { orientation: "h", y: -0.15 },
      xaxis: { type: "date" }, yaxis: { title: { text: meta.unit }, zeroline: false }, hovermode: "closest",
    };
    Plotly.react(past.chart, pastTraces(data, meta.unit), layout, { responsive: true, displaylogo: false });
    accuracyRows(data.accuracy);
  }

  async function loadPast(params) {
    try {
      const data = await getJSON(root.dataset.pastUrl + "?" + params.toString());
      showError(past.error, "");
      drawPast(data);
    } catch (error) {
      showError(past.error, error.message);
      past.empty.hidden = past.note.hidden = past.table.hidden = past.chart.hidden = true;
      if (window.Plotly) Plotly.purge(past.chart);
    }
  }

  async function load() {
    const params = new URLSearchParams(new FormData(form));
    history.replaceState(null, "", "?" + params.toString());
    status.textContent = "loading…";
    loadPast(params);
    try {
      const data = await getJSON(root.dataset.url + "?" + params.toString());
      showError(errorBox, "");
      draw(data);
      status.textContent = "";
    } catch (error) {
      const hint = error.data && error.data.hint;
      showError(errorBox, error.message);
      if (hint && hint !== error.message) {
        const extra = document.createElement("div");
        extra.className = "small";
        extra.textContent = hint;
        errorBox.append(extra);
      }
      model.hidden = true;
      if (window.Plotly) Plotly.purge(chart);
      status.textContent = "";
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    load();
  });
  form.querySelectorAll("select").forEach(function (select) { select.addEventListener("change", load); });
  load();
})();
