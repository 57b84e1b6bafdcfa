"""The console's one script: keeps a page's live region current without a reload.

Served from the console itself (`/static/console.js`, `script-src 'self'`: no CDN, no inline
script). Every few seconds it fetches the page again with `X-Koda-Part: 1` and swaps in the
region the server returns, keeping open `<details>`, the scroll position at the bottom of a
running timeline, and anything the person is typing into or has selected. A region that comes
back with `data-stop` is final (a run that ended) and is not fetched again.
"""

CONSOLE_JS = r"""
(function () {
  var region = document.getElementById('live');
  if (!region || !region.dataset.live) return;
  var every = Math.max(1, parseFloat(region.dataset.every || '5')) * 1000;
  var timer = null;
  function busy() {
    var a = document.activeElement;
    if (a && a !== document.body && region.contains(a) &&
        /INPUT|SELECT|TEXTAREA/.test(a.tagName)) return true;
    var s = window.getSelection && window.getSelection();
    return !!(s && !s.isCollapsed && region.contains(s.anchorNode));
  }
  function refresh() {
    if (document.hidden || busy()) return;
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    fetch(region.dataset.live, {credentials: 'same-origin', headers: {'X-Koda-Part': '1'}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var open = Array.prototype.map.call(region.querySelectorAll('details[open][id]'),
                                            function (d) { return d.id; });
        region.innerHTML = html;
        open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
        if (region.querySelector('[data-stop]')) { clearInterval(timer); }
        if (atBottom && region.querySelector('#timeline')) window.scrollTo(0, document.body.scrollHeight);
        document.dispatchEvent(new Event('koda:refreshed'));
      })
      .catch(function () {});
  }
  timer = setInterval(refresh, every);
})();
"""
