"""The Web Admin's static files, served from flash (frozen / .mpy constants).

The pages carry no inline script or style: the CSP allows only these files.
app.js: the Dashboard's live values, from the event stream
/api/live/stream, or by polling /api/live every 2 s where the stream is
refused or unavailable; a 401 sends the browser to the login page.
app.css: also for phones (360 px): a table wider than the screen scrolls
inside itself, so no page scrolls sideways (tests/test_web_polish.py).
fw.js: the Firmware page's upload (meter/web/route_firmware.py): the
password for a ticket, then the file as the body of one XMLHttpRequest
(the browser's progress; Cancel aborts it), the device's progress polled
from /api/firmware; after a broken connection it asks the device what
happened; after the install it waits for the restart and reconnects.
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

FW_JS = b"""'use strict';
(function () {
  var form = document.getElementById('fw-form');
  if (!form) { return; }
  function $(id) { return document.getElementById(id); }
  var file = $('fw-file'), pass = $('fw-pass'), btn = $('fw-upload'), stop = $('fw-cancel');
  var bar = $('fw-bar'), sent = $('fw-sent'), dev = $('fw-dev'), msg = $('fw-msg');
  var restartS = parseInt(form.getAttribute('data-restart') || '20', 10);
  var xhr = null, timer = null;
  function say(kind, text) { msg.className = kind; msg.textContent = text; }
  function kb(n) { return Math.round(n / 1024) + ' KB'; }
  function sentence(s) {
    s = String(s || 'refused');
    if (!/[.!?]$/.test(s)) { s += '.'; }
    return s.charAt(0).toUpperCase() + s.slice(1);
  }
  function get(then, fail) {
    fetch('/api/firmware', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      return r.status === 401 ? { gone: true } : r.json();
    }).then(then, fail || function () {});
  }
  function busy(on) {
    btn.disabled = on; file.disabled = on; pass.disabled = on; stop.hidden = !on;
    if (!on && timer) { window.clearInterval(timer); timer = null; }
  }
  function failed(why) {
    busy(false);
    say('err', 'Not updated. ' + sentence(why) + ' The running firmware is unchanged.');
  }
  function device(d) {
    if (d && typeof d.progress === 'number') { dev.textContent = 'Written on the device: ' + d.progress + '%'; }
  }
  function back(v) {
    busy(false); btn.disabled = true; bar.value = 100;
    dev.textContent = 'Written and checked on the device.';
    say('ok', 'Installed ' + v + '. The device restarts now (about ' + restartS +
        ' s); this page reconnects by itself\\u2026');
    var t0 = Date.now();
    function again() {
      get(function (d) {
        if (d.gone) {
          say('ok', 'The device is running again. Log in again to see the result\\u2026');
          window.location.href = '/login?m=updated';
        } else { later(); }
      }, later);
    }
    function later() {
      if (Date.now() - t0 > 180000) {
        say('err', 'The device has not answered for 3 minutes. Look at its display; open the ' +
            'Web Admin again from its menu if needed.');
      } else { window.setTimeout(again, 2000); }
    }
    window.setTimeout(again, 2000);
  }
  function ended() {
    var tries = 0;
    function retry(ms, why) { if (++tries < 12) { window.setTimeout(ask, ms); } else { failed(why); } }
    function ask() {
      get(function (d) {
        var u = d.upload;
        if (d.gone) { window.location.href = '/login?m=ended'; return; }
        if (u && u.state === 'installed') { back(u.version); return; }
        if (u && u.state === 'failed') { failed(u.why); return; }
        retry(500, 'the connection to the device broke off');
      }, function () { retry(1000, 'the device does not answer'); });
    }
    ask();
  }
  function send(f, t) {
    xhr = new XMLHttpRequest();
    xhr.open('POST', '/firmware/upload?t=' + encodeURIComponent(t));
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    bar.hidden = false; bar.value = 0;
    say('warn', 'Uploading ' + f.name + ' (' + kb(f.size) + '). Keep this page open.');
    xhr.upload.onprogress = function (e) {
      var n = e.lengthComputable ? e.total : f.size, p = Math.floor(100 * e.loaded / n);
      bar.value = p; sent.textContent = 'Sent ' + p + '% (' + kb(e.loaded) + ' of ' + kb(n) + ')';
    };
    xhr.onload = function () {
      var d = null, ok = xhr.status === 200;
      try { d = JSON.parse(xhr.responseText); } catch (err) { d = null; }
      xhr = null;
      if (ok && d && d.version) { back(d.version); } else if (d && d.error) { failed(d.error); } else { ended(); }
    };
    xhr.onerror = function () { xhr = null; ended(); };
    xhr.onabort = function () { xhr = null; say('warn', 'Cancelled. Asking the device\\u2026'); ended(); };
    xhr.send(f);
    // the device's progress, once its signature check (heap) is past
    timer = window.setInterval(function () { get(device); }, 1500);
  }
  stop.addEventListener('click', function () { if (xhr) { xhr.abort(); } });
  // the button comes disabled: pressed before this script ran, the form
  // would post itself and show the ticket's raw JSON (seen on a loaded machine)
  btn.disabled = false;
  form.addEventListener('submit', function (e) {
    e.preventDefault();
    var f = file.files[0], max = parseInt(form.getAttribute('data-max'), 10);
    if (!f) { say('err', 'Choose the update file first.'); return; }
    if (f.size > max) {
      say('err', 'Not uploaded: the file is too large (' + f.size + ' bytes; the update slot ' +
          'takes at most ' + max + ').');
      return;
    }
    var body = new URLSearchParams();
    body.set('csrf', form.elements.csrf.value); body.set('password', pass.value);
    body.set('size', String(f.size));
    busy(true); bar.hidden = true; sent.textContent = ''; dev.textContent = '';
    say('warn', 'Checking the password\\u2026');
    fetch('/firmware/ticket', { method: 'POST', body: body, credentials: 'same-origin' }).then(function (r) {
      return r.json().catch(function () { return { error: 'the device answered HTTP ' + r.status }; });
    }).then(function (d) {
      pass.value = '';
      if (d.ticket) { send(f, d.ticket); } else { failed(d.error); }
    }, function () { failed('the device does not answer'); });
  });
  if (form.getAttribute('data-trial') === '1') {
    window.setInterval(function () { get(function (d) { if (!d.gone && !d.trial) { window.location.reload(); } }); }, 3000);
  }
})();
"""
