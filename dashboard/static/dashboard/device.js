/* Device page: live charts of every metric and their min/mean/max, refreshed every 2 s without a reload; and the
   per-bucket aggregates table below them. */
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

/* Device page: min/mean/max/p95 per UTC minute/hour/day over the live section's window, refreshed every 10 s. */
(function () {
  "use strict";
  const root = document.getElementById("bucket-aggregates");
  if (!root) return;
  const { getJSON, formatNumber, showError, timeElement } = window.IoTCast;
  const table = document.getElementById("bucket-table");
  const picker = document.getElementById("aggregates-metric");
  const errorBox = document.getElementById("aggregates-error");
  const status = document.getElementById("aggregates-status");
  const STATS = ["min", "mean", "max", "p95"];
  const MAX_ROWS = 500; // newest buckets shown; a week per minute would be 10,080 rows
  const REFRESH_MS = 10000;
  let bucket = "hour";
  let last = null;
  let timer = null;

  function windowMinutes() {
    const pressed = document.querySelector("#live button.window[aria-pressed='true']");
    return pressed ? Number(pressed.dataset.minutes) : 60;
  }

  function cell(tag, content, className) {
    const el = document.createElement(tag);
    if (typeof content === "string") el.textContent = content;
    else el.append(content);
    if (className) el.className = className;
    return el;
  }

  function fillPicker(data) {
    const chosen = picker.value;
    const options = [new Option("All metrics", "")].concat(data.order.map(function (metric) {
      return new Option(data.metrics[metric].label, metric);
    }));
    picker.replaceChildren(...options);
    picker.value = data.order.includes(chosen) ? chosen : "";
  }

  function render(data) {
    const metrics = picker.value ? [picker.value] : data.order;
    const single = metrics.length === 1;
    const head = document.createElement("tr");
    head.append(cell("th", "Bucket (" + data.bucket + ")"), cell("th", "Readings", "num"));
    metrics.forEach(function (metric) {
      const meta = data.metrics[metric];
      const unit = meta.unit ? " (" + meta.unit + ")" : "";
      if (!single) {
        head.append(cell("th", meta.label + unit, "num"));
        return;
      }
      STATS.forEach(function (stat) { head.append(cell("th", stat[0].toUpperCase() + stat.slice(1) + unit, "num")); });
    });
    table.tHead.replaceChildren(head);
    const rows = data.buckets.slice(-MAX_ROWS).reverse().map(function (row) {
      const tr = document.createElement("tr");
      tr.append(cell("td", timeElement(row.bucket)), cell("td", String(row.count), "num"));
      metrics.forEach(function (metric) {
        const stats = row[metric] || {};
        const values = STATS.map(function (stat) { return formatNumber(stats[stat]); });
        if (single) values.forEach(function (text) { tr.append(cell("td", text, "num")); });
        else tr.append(cell("td", values.join(" / "), "num"));
      });
      return tr;
    });
    table.tBodies[0].replaceChildren(...rows);
    status.textContent = (data.buckets.length ? data.buckets.length + " buckets" : "no readings in this window") +
      (data.buckets.length > MAX_ROWS ? " (newest " + MAX_ROWS + " shown)" : "") +
      " · updated " + new Date().toLocaleTimeString();
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const data = await getJSON(root.dataset.aggregatesUrl + "?bucket=" + bucket + "&minutes=" + windowMinutes());
      showError(errorBox, "");
      last = data;
      fillPicker(data);
      render(data);
    } catch (error) {
      showError(errorBox, error.message);
      status.textContent = "";
      if (error.status === 401) clearInterval(timer);
    }
  }

  root.querySelectorAll("button.bucket").forEach(function (button) {
    button.addEventListener("click", function () {
      bucket = button.dataset.bucket;
      root.querySelectorAll("button.bucket").forEach(function (other) {
        other.setAttribute("aria-pressed", String(other === button));
      });
      refresh();
    });
  });
  // The live section's window buttons set the window; their own handler has updated aria-pressed by now.
  document.querySelectorAll("#live button.window").forEach(function (button) {
    button.addEventListener("click", refresh);
  });
  picker.addEventListener("change", function () { if (last) render(last); });
  document.addEventListener("visibilitychange", refresh);
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
})();
