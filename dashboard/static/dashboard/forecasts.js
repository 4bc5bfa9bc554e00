/* Forecasts page: fetch history + forecast for the chosen device and metric and draw the fan chart. */
(function () {
  "use strict";
  const root = document.getElementById("forecast");
  if (!root) return;
  const { getJSON, showError } = window.IoTCast;
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

  async function load() {
    const params = new URLSearchParams(new FormData(form));
    history.replaceState(null, "", "?" + params.toString());
    status.textContent = "loading…";
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
