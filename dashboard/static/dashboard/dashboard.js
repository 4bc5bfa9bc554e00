/* IoTCast dashboard helpers shared by every page: local times, numbers with units, JSON fetches. */
(function () {
  "use strict";

  function utcText(date) {
    return date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function localText(date) {
    return date.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }

  /* A <time> showing iso in the viewer's zone, with UTC on hover. */
  function timeElement(iso) {
    const el = document.createElement("time");
    el.className = "ts";
    if (!iso) {
      el.textContent = "never";
      return el;
    }
    const date = new Date(iso);
    el.dateTime = iso;
    el.textContent = isNaN(date) ? iso : localText(date);
    el.title = isNaN(date) ? iso : utcText(date);
    return el;
  }

  /* Rewrite every server-rendered <time class="ts"> (UTC) into the viewer's zone. */
  function localizeTimes(root) {
    root.querySelectorAll("time.ts[datetime]").forEach(function (el) {
      const date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date)) {
        el.textContent = localText(date);
        el.title = utcText(date);
      }
    });
  }

  function formatNumber(value, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const text = Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 });
    return unit ? text + " " + unit : text;
  }

  /* Fetch JSON; throw an Error carrying the server's {"error"} message and the HTTP status. */
  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    let data = null;
    try {
      data = await response.json();
    } catch (ignored) {
      data = null;
    }
    if (!response.ok || !data || data.error) {
      const error = new Error((data && data.error) || "The server answered HTTP " + response.status + ".");
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  function showError(el, message) {
    if (!el) return;
    el.textContent = message || "";
    el.hidden = !message;
  }

  function summary(result, limit) {
    if (!result || typeof result !== "object") return "";
    const parts = Object.entries(result).map(function ([key, value]) {
      if (Array.isArray(value)) value = value.length + " items";
      else if (value && typeof value === "object") value = Object.keys(value).length + " entries";
      else if (typeof value === "number" && !Number.isInteger(value)) value = Number(value.toPrecision(4));
      return key.replace(/_/g, " ") + ": " + value;
    });
    limit = limit || 6;
    return parts.slice(0, limit).join(", ") + (parts.length > limit ? ", …" : "");
  }

  window.IoTCast = { timeElement, localizeTimes, formatNumber, getJSON, showError, summary, utcText, localText };
  localizeTimes(document);
})();
