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
  return { $, el, sv, msg };
}
