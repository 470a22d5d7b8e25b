// Live refresh for the console's lists and charts: every data-refresh seconds, fetch this page
// again and swap in its #live part. Plain JavaScript, same origin only; without it the pages
// are complete and a reload shows the latest state.
'use strict';
(function () {
  const seconds = Number(document.body.dataset.refresh || 0);
  const region = document.getElementById('live');
  const toggle = document.getElementById('live-toggle');
  const status = document.getElementById('live-status');
  if (!seconds || !region || !toggle) return;
  let on = true;
  toggle.hidden = false;
  toggle.addEventListener('click', function () {
    on = !on;
    toggle.setAttribute('aria-pressed', String(on));
    toggle.textContent = on ? 'Live refresh on' : 'Live refresh paused';
  });
  async function refresh() {
    const busy = region.contains(document.activeElement) && document.activeElement !== document.body;
    if (!on || document.hidden || busy) return;
    try {
      const reply = await fetch(window.location.href, { credentials: 'same-origin', cache: 'no-store' });
      if (!reply.ok || reply.redirected) return;
      const doc = new DOMParser().parseFromString(await reply.text(), 'text/html');
      const fresh = doc.getElementById('live');
      if (!fresh || !on) return;
      // swap only what changed: an unchanged page keeps its focus, scroll and open details
      if (fresh.innerHTML !== region.innerHTML) {
        region.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
      }
      status.textContent = 'Up to date at ' + new Date().toLocaleTimeString();
    } catch (e) {
      status.textContent = 'Live refresh failed; reload the page';
    }
  }
  window.setInterval(refresh, seconds * 1000);
})();
