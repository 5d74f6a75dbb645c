// Finding and making elements ($, el, sv) and the status line (msg), for every module. User
// text (class names, notes, comments) only ever goes through textContent or .value, never
// innerHTML: el() sets text that way.
function PBDom(app) {
  const NS = 'http://www.w3.org/2000/svg';
  const $ = (sel) => app.root.querySelector(sel);
  // el('button', {class: 'x', onclick: fn, 'data-id': '3'}, 'label')
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function sv(tag, attrs) { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v); return e; }
  // The status line under the canvas; `bad` shows it as an error.
  function msg(text, bad) { const m = $('.pb-msg'); if (m) { m.textContent = text; m.classList.toggle('pb-bad', !!bad); } }
  // Resolves once the widget is on screen; with `afterHidden`, once it is shown again after
  // being hidden. A lead lands on the dashboard tab (the sign-in selects it a moment after the
  // workspace drew), and the workspace must not take a photo from the queue (a lease) before
  // it is opened.
  function whenShown(afterHidden) {
    const shown = () => app.root.getClientRects().length > 0;
    let hidden = !afterHidden || !shown();
    if (hidden && shown()) return Promise.resolve();
    return new Promise((resolve) => {
      const obs = new IntersectionObserver(() => {
        if (!shown()) hidden = true; else if (hidden) { obs.disconnect(); resolve(); }
      });
      obs.observe(app.root);
    });
  }
  return { $, el, sv, msg, whenShown };
}
