/* Device page: live charts of every metric and their min/mean/max, refreshed every 2 s without a reload. */
(function () {
  "use strict";
  const root = document.getElementById("live");
  if (!root) return;
  const { getJSON, formatNumber, showError, timeElement } = window.IoTCast;
  const charts = document.getElementById("charts");
  const latest = document.getElementById("latest");
  const empty = document.getElementById("live-empty");
  const errorBox = document.getElementById("live-error");
  const status = document.getElementById("live-status");
  const COLORS = ["#0f6cbd", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0e7490", "#a16207"];
  const REFRESH_MS = 2000;
  const ONLINE_MS = 5 * 60 * 1000; // dashboard.selectors.ONLINE_WINDOW
  let minutes = Number(root.dataset.minutes) || 60;
  let busy = false;
  let again = false; // a window change while a fetch is in flight refetches right after it
  let timer = null;

  function renderLatest(data) {
    latest.replaceChildren();
    if (!data.latest) return;
    data.order.forEach(function (metric) {
      const meta = data.metrics[metric];
      const box = document.createElement("div");
      box.className = "value";
      const label = document.createElement("span");
      label.textContent = meta.label;
      const value = document.createElement("b");
      value.textContent = formatNumber(data.latest.values[metric], meta.unit);
      box.append(label, value);
      latest.append(box);
    });
    const when = document.createElement("div");
    when.className = "value";
    const label = document.createElement("span");
    label.textContent = "Latest reading";
    const stamp = document.createElement("b");
    stamp.append(timeElement(data.latest.timestamp));
    when.append(label, stamp);
    latest.append(when);
  }

  // The header was rendered with the page: keep its "last reading" and online badge in step with the live data.
  function renderHeader(data) {
    const badge = document.getElementById("online-badge");
    const lastSeen = document.getElementById("last-seen");
    if (!data.latest || !badge || !lastSeen) return;
    lastSeen.replaceChildren(timeElement(data.latest.timestamp));
    const online = Date.now() - new Date(data.latest.timestamp).getTime() <= ONLINE_MS;
    badge.textContent = online ? "online" : "offline";
    badge.className = "badge badge-" + (online ? "online" : "offline");
  }

  function renderAggregates(data) {
    const wrap = document.getElementById("aggregates-wrap");
    const rows = data.order.map(function (metric) {
      const meta = data.metrics[metric];
      const stats = (data.aggregates || {})[metric] || {};
      const row = document.createElement("tr");
      [meta.label, formatNumber(stats.min, meta.unit), formatNumber(stats.mean, meta.unit),
        formatNumber(stats.max, meta.unit), String(stats.count || 0)].forEach(function (text, index) {
        const td = document.createElement(index ? "td" : "th");
        td.textContent = text;
        if (index) td.className = "num";
        row.append(td);
      });
      return row;
    });
    wrap.querySelector("tbody").replaceChildren(...rows);
    wrap.hidden = rows.length === 0;
  }

  function chartFor(metric) {
    let div = document.getElementById("chart-" + metric);
    if (!div) {
      div = document.createElement("div");
      div.id = "chart-" + metric;
      div.className = "chart";
      charts.append(div);
      if (observer) observer.observe(div);
    }
    return div;
  }

  function renderCharts(data) {
    if (!window.Plotly) {
      showError(errorBox, "The chart library did not load; reload the page.");
      return;
    }
    const x = data.timestamps.map(function (iso) { return new Date(iso); }); // Date objects plot in local time
    data.order.forEach(function (metric, index) {
      const meta = data.metrics[metric];
      const unit = meta.unit ? " " + meta.unit : "";
      const trace = {
        x: x, y: data.values[metric], type: "scatter", mode: x.length < 60 ? "lines+markers" : "lines",
        line: { width: 1.6, color: COLORS[index % COLORS.length] }, marker: { size: 4 },
        hovertemplate: "%{x|%Y-%m-%d %H:%M:%S}<br><b>%{y:.2f}" + unit + "</b><extra></extra>",
      };
      const layout = {
        title: { text: meta.label + (meta.unit ? " (" + meta.unit + ")" : ""), font: { size: 14 }, x: 0.02 },
        margin: { l: 55, r: 15, t: 36, b: 36 }, showlegend: false, uirevision: metric + ":" + minutes,
        xaxis: { type: "date" }, yaxis: { title: { text: meta.unit }, zeroline: false },
      };
      Plotly.react(chartFor(metric), [trace], layout, { responsive: true, displaylogo: false });
    });
    Array.from(charts.children).forEach(function (div) {
      if (!data.order.includes(div.id.slice("chart-".length))) div.remove();
    });
  }

  async function refresh() {
    if (document.hidden) return;
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const data = await getJSON(root.dataset.readingsUrl + "?minutes=" + minutes);
      showError(errorBox, "");
      empty.hidden = data.count > 0;
      renderLatest(data);
      renderHeader(data);
      renderAggregates(data);
      renderCharts(data);
      status.textContent = (data.resampled ? "means per " + data.resampled : data.count + " readings") +
        " · updated " + new Date().toLocaleTimeString();
    } catch (error) {
      showError(errorBox, error.message);
      status.textContent = "";
      if (error.status === 401) clearInterval(timer); // signed out: polling cannot recover
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  root.querySelectorAll("button.window").forEach(function (button) {
    button.addEventListener("click", function () {
      minutes = Number(button.dataset.minutes);
      root.querySelectorAll("button.window").forEach(function (other) {
        other.setAttribute("aria-pressed", String(other === button));
      });
      refresh();
    });
  });
  // Plotly's responsive option follows window resizes only. A chart's box also changes width when the grid reflows
  // (the first chart spans the row until the second arrives) or a scrollbar appears: redraw it at its box's size.
  const resized = new Set();
  const observer = window.ResizeObserver && new ResizeObserver(function (entries) {
    const first = resized.size === 0;
    entries.forEach(function (entry) { resized.add(entry.target); });
    if (!first) return;
    requestAnimationFrame(function () {
      resized.forEach(function (div) {
        if (div.isConnected && div.querySelector(".main-svg")) Plotly.Plots.resize(div);
      });
      resized.clear();
    });
  });
  document.addEventListener("visibilitychange", refresh);
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
})();
