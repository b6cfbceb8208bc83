"""The Web Admin's static files, served from flash (frozen / .mpy constants).

The pages carry no inline script or style: the CSP allows only these files.
app.js: the Dashboard's live values, from the event stream
/api/live/stream, or by polling /api/live every 2 s where the stream is
refused or unavailable; a 401 sends the browser to the login page.
app.css: also for phones (360 px): a table wider than the screen scrolls
inside itself, so no page scrolls sideways (tests/test_web_polish.py).
"""

JS = b"""'use strict';
(function () {
  var box = document.getElementById('live');
  if (!box) { return; }
  function set(id, v) { var e = document.getElementById(id); if (e) { e.textContent = v; } }
  function f(x, n) { return (typeof x === 'number') ? x.toFixed(n) : '-'; }
  function show(d) {
    for (var i = 0; i < 3; i++) {
      set('v' + i, f(d.v[i], 1)); set('i' + i, f(d.i[i], 2));
      set('p' + i, f(d.p[i], 0)); set('pf' + i, f(d.pf[i], 2));
    }
    set('p3', f(d.p[3], 0)); set('pf3', f(d.pf[3], 2)); set('freq', f(d.freq, 2));
    set('imp', d.imp_kwh); set('exp', d.exp_kwh);
    set('fault', d.fault || 'none');
    set('updated', new Date().toLocaleTimeString());
    box.setAttribute('data-n', String((parseInt(box.getAttribute('data-n') || '0', 10) + 1)));
  }
  var timer = null;
  function poll() {
    fetch('/api/live', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      if (r.status === 401) { window.location.href = '/login?m=ended'; return null; }
      return r.ok ? r.json() : null;
    }).then(function (d) { if (d) { show(d); } }).catch(function () { set('updated', 'offline'); });
  }
  function polling() { if (!timer) { poll(); timer = window.setInterval(poll, 2000); } }
  if (window.EventSource) {
    var es = new EventSource('/api/live/stream');
    es.onmessage = function (e) { show(JSON.parse(e.data)); };
    es.onerror = function () { if (es.readyState === 2) { polling(); } else { set('updated', 'reconnecting'); } };
  } else {
    polling();
  }
})();
"""

CSS = b"""body{font-family:sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#1d3557;color:#fff;padding:.5em 1em;display:flex;flex-wrap:wrap;align-items:center;gap:1em}
header a{color:#fff;text-decoration:none}header a.on{text-decoration:underline}
header form{margin-left:auto}main{padding:1em;max-width:60em}
table{border-collapse:collapse;background:#fff;display:block;max-width:100%;overflow-x:auto}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#e9ecef}td.l,th.l{text-align:left}.warn{background:#fff3cd;border:1px solid #e0c060;padding:.6em}
.err{background:#f8d7da;border:1px solid #d08080;padding:.6em}.ok{background:#d1e7dd;border:1px solid #80b090;padding:.6em}
label{display:block;margin:.4em 0}input[type=text],input[type=password]{padding:.3em;width:16em}
button{padding:.35em 1em;margin:.3em 0}.danger{background:#b02a37;color:#fff;border:0}
.small{font-size:.85em;color:#555}#closes{font-size:.85em;color:#fff;padding:.1em .4em}
#closes.soon{background:#ffd166;color:#1d1d1d;font-weight:bold}
@media (max-width:30em){main{padding:.6em}td,th{padding:.2em .35em}header{gap:.6em}}fieldset.ro{border:0;margin:0;padding:0;opacity:.6}
"""
