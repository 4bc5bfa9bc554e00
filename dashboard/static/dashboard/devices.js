/* Devices page: search and sort the table in place, and draw the offline map of device locations. */
(function () {
  "use strict";
  const table = document.getElementById("device-table");
  if (!table) return;
  const body = table.tBodies[0];
  const search = document.getElementById("device-search");
  const count = document.getElementById("device-count");
  const noMatch = document.getElementById("device-search-empty");

  function filter() {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    Array.from(body.rows).forEach(function (row) {
      const visible = words.every(function (word) { return row.dataset.search.includes(word); });
      row.hidden = !visible;
      shown += visible ? 1 : 0;
    });
    count.textContent = words.length ? shown + " of " + body.rows.length + " shown" : "";
    noMatch.hidden = shown > 0;
  }

  function sortBy(th) {
    const index = Array.from(th.parentNode.children).indexOf(th);
    const numeric = th.dataset.sort === "number";
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th[aria-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const rows = Array.from(body.rows).sort(function (a, b) {
      const x = a.cells[index].dataset.value, y = b.cells[index].dataset.value;
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return ascending ? order : -order;
    });
    body.append(...rows);
  }

  search.addEventListener("input", filter);
  table.querySelectorAll("th[data-sort] button").forEach(function (button) {
    button.addEventListener("click", function () { sortBy(button.parentNode); });
  });

  const mapDiv = document.getElementById("device-map");
  if (!mapDiv || !window.Plotly) return;
  const points = JSON.parse(document.getElementById("map-points").textContent);
  const trace = {
    type: "scattergeo", mode: "markers+text", lat: points.map(function (p) { return p.lat; }),
    lon: points.map(function (p) { return p.lon; }), text: points.map(function (p) { return p.name; }),
    textposition: "top center", customdata: points.map(function (p) { return p.url; }),
    marker: { size: 12, color: points.map(function (p) { return p.online ? "#1a7f37" : "#8c959f"; }),
      line: { width: 1, color: "#fff" } },
    hovertemplate: "<b>%{text}</b><br>%{lat:.4f}, %{lon:.4f}<extra></extra>",
  };
  // Padded bounds instead of fitbounds: markers on the edge would otherwise have their names cut off.
  function padded(values, minimum) {
    const low = Math.min.apply(null, values), high = Math.max.apply(null, values);
    const pad = Math.max(minimum, (high - low) * 0.3);
    return [low - pad, high + pad];
  }
  const lats = points.map(function (p) { return p.lat; }), lons = points.map(function (p) { return p.lon; });
  const latRange = padded(lats, 0.5).map(function (v) { return Math.max(-85, Math.min(85, v)); });
  const lonRange = padded(lons, 1.5).map(function (v) { return Math.max(-180, Math.min(180, v)); });
  const layout = {
    margin: { l: 10, r: 10, t: 10, b: 10 }, showlegend: false,
    geo: { projection: { type: "mercator" }, resolution: 50, showland: true, landcolor: "#eef1f4",
      showocean: true, oceancolor: "#dbe9f6", showlakes: true, lakecolor: "#dbe9f6",
      showcoastlines: true, coastlinecolor: "#9aa5b1", showcountries: true, countrycolor: "#c3ccd5",
      showframe: true, bgcolor: "#f8fafc",
      lataxis: { range: latRange, showgrid: true, gridcolor: "#dde3ea", dtick: 1 },
      lonaxis: { range: lonRange, showgrid: true, gridcolor: "#dde3ea", dtick: 1 } },
  };
  // topojsonURL points at the project, which ships Plotly's world base maps: no request leaves it.
  Plotly.newPlot(mapDiv, [trace], layout, { responsive: true, displaylogo: false, topojsonURL: mapDiv.dataset.topojsonUrl });
  mapDiv.on("plotly_click", function (event) {
    const url = event.points[0] && event.points[0].customdata;
    if (url) window.location.href = url;
  });
})();
