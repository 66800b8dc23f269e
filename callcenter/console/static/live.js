// The live panel (/console/live): asks the page's data-live URL every data-every seconds
// and redraws the two tables from its JSON. Text only (textContent), never markup from
// the server; a failed request is said in the status line and tried again.
(function () {
  "use strict";

  function cell(tr, text, className) {
    var td = document.createElement("td");
    if (className) { td.className = className; }
    td.textContent = text == null ? "—" : String(text);
    tr.appendChild(td);
    return td;
  }

  function callerCell(tr, row, callUrl) {
    var td = document.createElement("td");
    var a = document.createElement("a");
    a.href = callUrl.replace("CALLSID", encodeURIComponent(row.sid));
    a.textContent = row.caller;
    td.appendChild(a);
    if (row.who) {
      td.appendChild(document.createElement("br"));
      var who = document.createElement("span");
      who.className = "muted";
      who.textContent = row.who;
      td.appendChild(who);
    }
    tr.appendChild(td);
  }

  function withNote(tr, main, note) {
    var td = cell(tr, main);
    if (note) {
      td.appendChild(document.createElement("br"));
      var span = document.createElement("span");
      span.className = "muted";
      span.textContent = note;
      td.appendChild(span);
    }
  }

  function liveRow(row, callUrl) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-call-sid", row.sid);
    cell(tr, row.time, "time");
    callerCell(tr, row, callUrl);
    cell(tr, row.line);
    cell(tr, row.category);
    cell(tr, row.where);
    cell(tr, row.duration, "num");
    return tr;
  }

  function recentRow(row, callUrl) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-call-sid", row.sid);
    if (row.problems.length) { tr.className = "problem"; }
    cell(tr, row.time, "time");
    callerCell(tr, row, callUrl);
    cell(tr, row.line);
    cell(tr, row.category);
    withNote(tr, row.outcome, row.routing);
    cell(tr, row.ticket ? "№ " + row.ticket : (row.ticket_state || "—"));
    var td = document.createElement("td");
    row.problems.forEach(function (text) {
      var badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = text;
      td.appendChild(badge);
      td.appendChild(document.createTextNode(" "));
    });
    tr.appendChild(td);
    cell(tr, row.duration, "num");
    return tr;
  }

  function fill(tableId, emptyId, countId, rows, make, callUrl) {
    var body = document.querySelector("#" + tableId + " tbody");
    var fresh = document.createElement("tbody");
    rows.forEach(function (row) { fresh.appendChild(make(row, callUrl)); });
    body.parentNode.replaceChild(fresh, body);
    document.getElementById(emptyId).hidden = rows.length > 0;
    document.getElementById(countId).textContent = String(rows.length);
  }

  function start(panel) {
    var url = panel.getAttribute("data-live");
    var every = Number(panel.getAttribute("data-every")) * 1000 || 5000;
    var callUrl = panel.getAttribute("data-call-url");
    var status = document.getElementById("live-status");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error(String(response.status)); }
          return response.json();
        })
        .then(function (data) {
          fill("live-calls", "live-empty", "live-count", data.in_progress, liveRow, callUrl);
          fill("recent-calls", "recent-empty", "recent-count", data.recent, recentRow, callUrl);
          status.textContent = "Обновлено в " + data.at + "; обновляется каждые " +
            every / 1000 + " с.";
        })
        .catch(function () {
          status.textContent = "Не удалось обновить — новая попытка через " + every / 1000 + " с.";
        })
        .then(function () { window.setTimeout(poll, every); });
    }
    window.setTimeout(poll, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.getElementById("live");
    if (panel) { start(panel); }
  });
})();
