// Herald console: live figures on the overview. The server sends them, formatted, as
// Server-Sent Events once a second; this only puts the text in place. Every page works
// without it. It stops while the tab is hidden and starts again when it is shown.
(function () {
  'use strict';
  var live = document.querySelectorAll('[data-live]');
  if (!live.length || !window.EventSource) { return; }
  var stamp = document.getElementById('live-state');
  var source = null;
  var ended = false;

  function say(text) { if (stamp) { stamp.textContent = text; } }

  function cell(text) {
    var td = document.createElement('td');
    td.textContent = text;
    return td;
  }

  function waiting(rows) {
    var body = document.getElementById('waiting');
    if (!body) { return; }
    while (body.firstChild) { body.removeChild(body.firstChild); }
    if (!rows.length) {
      var tr = document.createElement('tr');
      var td = cell('Nothing waits.');
      td.colSpan = 3;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (w) {
      var tr = document.createElement('tr');
      tr.appendChild(cell(w.channel));
      tr.appendChild(cell(w.priority));
      tr.appendChild(cell(String(w.n)));
      body.appendChild(tr);
    });
  }

  function figures(event) {
    var f;
    try { f = JSON.parse(event.data); } catch (e) { return; }
    live.forEach(function (el) {
      var v = f[el.getAttribute('data-live')];
      if (typeof v === 'string' && el.textContent !== v) { el.textContent = v; }
    });
    if (Array.isArray(f.waiting)) { waiting(f.waiting); }
    say('Live, updated ' + new Date(f.at).toLocaleTimeString());
  }

  function start() {
    if (source || ended) { return; }
    source = new EventSource('/console/events');
    source.addEventListener('figures', figures);
    source.addEventListener('signed_out', function () {
      ended = true;
      stop();
      say('Signed out: reload the page to sign in again');
    });
    source.onerror = function () { say('Reconnecting…'); };
  }

  function stop() {
    if (source) { source.close(); source = null; }
  }

  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible') { start(); } else { stop(); }
  });
  start();
}());
