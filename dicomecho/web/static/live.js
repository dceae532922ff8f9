// dicomecho's live page: rows arrive as server-sent events, rendered (and
// escaped) by the server; this script only places them. The page works
// without it.
"use strict";

(function () {
  const table = document.getElementById("associations");
  if (!table || !window.EventSource) {
    return;
  }
  const rows = document.getElementById("rows");
  const status = document.getElementById("live");
  const maxRows = 1000;

  function setStatus(text, state) {
    if (status) {
      status.textContent = text;
      status.dataset.state = state;
    }
  }

  const source = new EventSource(table.dataset.events);
  let interrupted = false;
  source.addEventListener("open", function () {
    if (interrupted) {
      // Rows may have come while the stream was down: the server has them.
      window.location.reload();
      return;
    }
    setStatus("Live: new connections appear as they end.", "live");
  });
  source.addEventListener("error", function () {
    interrupted = true;
    setStatus("Live updates interrupted; reconnecting\u2026", "retrying");
  });
  source.addEventListener("association", function (event) {
    const data = JSON.parse(event.data);
    const known = document.getElementById("a" + data.number);
    if (known) {
      // A row that stands for more connections now (a flood from one source).
      known.outerHTML = data.row;
      return;
    }
    rows.insertAdjacentHTML("afterbegin", data.row);
    const row = rows.firstElementChild;
    row.classList.add("new");
    const empty = document.getElementById("empty");
    if (empty) {
      empty.remove();
    }
    while (rows.children.length > maxRows) {
      rows.lastElementChild.remove();
    }
  });
  source.addEventListener("counters", function (event) {
    const counters = document.getElementById("counters");
    if (counters) {
      counters.innerHTML = JSON.parse(event.data).counters;
    }
    scheduleChart(1000);
  });

  // A click anywhere on a row opens its details.
  rows.addEventListener("click", function (event) {
    const row = event.target.closest("tr.association");
    if (row && !event.target.closest("a")) {
      window.location.href = row.dataset.href;
    }
  });

  // The chart is drawn by the server: fetched again a second after new
  // connections (at most once a second), and each minute.
  let chartTimer = null;
  function redrawChart() {
    chartTimer = null;
    fetch("chart.svg", { cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (svg) {
        const chart = document.getElementById("chart");
        if (svg && chart) {
          chart.outerHTML = svg;
        }
      })
      .catch(function () {});
  }
  function scheduleChart(delay) {
    if (chartTimer === null) {
      chartTimer = window.setTimeout(redrawChart, delay);
    }
  }
  window.setInterval(function () { scheduleChart(0); }, 60000);
})();
