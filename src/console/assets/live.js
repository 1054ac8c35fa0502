// The live alert page: one EventSource on the console's own /live/events. The browser resumes by
// itself after a lost connection, sending the last event id it saw (the feed's sequence number).
// Rows are built with textContent only: event data is never parsed as HTML.
"use strict";
(function () {
  var table = document.getElementById("live-table");
  var body = document.getElementById("live-events");
  var status = document.getElementById("live-status");
  var MAX_ROWS = 500;
  function say(state) {
    status.textContent = status.dataset[state];
    status.dataset.state = state;
  }
  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }
  function add(event) {
    var row = document.createElement("tr");
    row.dataset.seq = String(event.seq);
    row.dataset.kind = event.kind;
    cell(row, String(event.seq), "num");
    cell(row, event.at);
    cell(row, event.kind_label);
    var rule = cell(row, "");
    if (event.href) {
      var link = document.createElement("a");
      link.href = event.href;
      link.textContent = event.rule;
      rule.appendChild(link);
    } else {
      rule.textContent = event.rule;
    }
    var severity = cell(row, "");
    if (event.severity) {
      var badge = document.createElement("span");
      badge.className = "sev " + event.severity_class;
      badge.textContent = event.severity;
      severity.appendChild(badge);
    }
    cell(row, event.institution, "mono");
    cell(row, event.subject, "mono subject");
    cell(row, event.alert_state + (event.escalation_level ? " · " + event.escalation_level : ""));
    cell(row, event.text);
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  }
  var source = new EventSource(table.dataset.events);
  source.addEventListener("open", function () { say("connected"); });
  source.addEventListener("error", function () { say("reconnecting"); });
  source.addEventListener("alert", function (message) { add(JSON.parse(message.data)); });
})();
