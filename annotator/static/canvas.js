// Panelbeater workspace widget, run by Gradio's gr.HTML js_on_load with `element`, `props`,
// `watch` in scope. The server is authoritative: every change is PUT to /api at once (autosave),
// with the image's annotation version for optimistic locking. Coordinates are original image
// pixels everywhere: the SVG viewBox is in image pixels and pointer positions go through
// getScreenCTM().inverse(). User text (class names, notes, comments) only ever goes through
// textContent / .value, never innerHTML.
(function () {
  const SHORTCUTS = __SHORTCUTS__;
  const NS = 'http://www.w3.org/2000/svg';
  const GROUPS = ['damage', 'fake', 'part'];
  const SEVERITIES = ['minor', 'moderate', 'severe'];
  const MAX_UNDO = 100;
  const root = element.querySelector('.pb-root') || element;
  const S = {
    session: null, classes: [], byId: {}, mode: 'annotate', filters: {}, image: null, anns: [], preds: [],
    serverIds: new Set(), sel: null, selV: null, selPred: null, tool: 'select', draw: null,
    assist: { points: [], labels: [], box: null, preview: null }, hidden: new Set(), recent: [],
    undo: [], redo: [], saving: false, dirty: false, conflict: null, currentClass: null, uid: 1,
    drag: null, vb: null, space: false, queue: null, tolerance: 1.0,
    stats: { saves: 0, lastSaved: 0, lastRelease: 0, drawn: 0, drawnAt: 0, assists: 0, lastAssist: 0, frames: 0 },
  };
  window.__pb = S;

  // ---------- small helpers ----------
  const $ = (sel) => root.querySelector(sel);
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function sv(tag, attrs) { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v); return e; }
  const can = (p) => !!(S.session && S.session.permissions && S.session.permissions.includes(p));
  const clone = (x) => JSON.parse(JSON.stringify(x));
  const cls = (id) => S.byId[id] || { id, name: 'class ' + id, display_name: 'class ' + id, group: 'damage', color: '#ff0000' };
  function msg(text, bad) { const m = $('.pb-msg'); if (m) { m.textContent = text; m.classList.toggle('pb-bad', !!bad); } }
  function geomD(geometry) {
    let d = '';
    for (const p of geometry) for (const ring of [p.exterior, ...(p.holes || [])]) {
      if (!ring.length) continue;
      d += 'M' + ring.map((q) => q[0].toFixed(1) + ' ' + q[1].toFixed(1)).join('L') + 'Z';
    }
    return d;
  }
  function bbox(geometry) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const p of geometry) for (const q of p.exterior) { x0 = Math.min(x0, q[0]); y0 = Math.min(y0, q[1]); x1 = Math.max(x1, q[0]); y1 = Math.max(y1, q[1]); }
    return [x0, y0, x1, y1];
  }
  function inRing(pt, ring) {
    let inside = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i], [xj, yj] = ring[j];
      if ((yi > pt[1]) !== (yj > pt[1]) && pt[0] < ((xj - xi) * (pt[1] - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + S.session.token };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch('/api' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const d = data && data.detail;
      const err = new Error(typeof d === 'string' ? d : (d && d.message) || (d ? JSON.stringify(d) : r.statusText));
      err.status = r.status; err.data = data; throw err;
    }
    return data;
  }
  // Photos are fetched with the Authorization header and shown from blob: URLs, so the token never
  // appears in a URL (server access logs, history). A few decoded blobs are kept for prefetching.
  const blobs = new Map();
  function fileUrl(id) {
    const side = Math.min(4096, Math.max(1024, Math.round(Math.max(window.screen.width, window.screen.height) * (window.devicePixelRatio || 1))));
    return `/api/images/${id}/file?max_side=${side}`;
  }
  function imageBlob(id) {
    if (!blobs.has(id)) {
      const p = fetch(fileUrl(id), { headers: { Authorization: 'Bearer ' + S.session.token } })
        .then((r) => { if (!r.ok) throw new Error(`photo ${id}: HTTP ${r.status}`); return r.blob(); })
        .then((b) => URL.createObjectURL(b));
      p.catch(() => blobs.delete(id));
      blobs.set(id, p);
      while (blobs.size > 4) {
        const [oldId, oldP] = blobs.entries().next().value;
        if (S.image && oldId === S.image.id) { blobs.delete(oldId); blobs.set(oldId, oldP); continue; }
        blobs.delete(oldId);
        oldP.then((u) => setTimeout(() => URL.revokeObjectURL(u), 1000)).catch(() => {});
      }
    }
    return blobs.get(id);
  }
  function persist() {
    try { localStorage.setItem('pb.workspace', JSON.stringify({ mode: S.mode, filters: S.filters, imageId: S.image && S.image.id, currentClass: S.currentClass, recent: S.recent, hidden: [...S.hidden], user: S.session.username })); } catch (e) { /* private mode */ }
  }

  // ---------- shell ----------
  function buildShell() {
    root.innerHTML = '';
    const app = el('div', { class: 'pb-app', tabindex: '0' });
    app.innerHTML = `
      <div class="pb-toolbar">
        <select class="pb-mode" title="mode"></select>
        <button class="pb-prev" title="previous photo (← or S)">◀ Prev</button>
        <button class="pb-next" title="next photo (→ or D)">Next ▶</button>
        <span class="pb-progress"></span>
        <span class="pb-sep"></span>
        <label>status <select class="pb-f-status"><option value="">open</option><option>new</option><option>in_progress</option><option>labelled</option><option>reviewed</option><option>rejected</option><option value="new,in_progress,labelled,reviewed,rejected">all</option></select></label>
        <label>flag <select class="pb-f-flagged"><option value="">any</option><option value="true">flagged</option><option value="false">not flagged</option></select></label>
        <label>split <select class="pb-f-split"><option value="">any</option><option>train</option><option>val</option><option>test</option></select></label>
        <label>class <select class="pb-f-class"><option value="">any</option></select></label>
        <span class="pb-sep"></span>
        <span class="pb-tools">
          <button data-tool="select" title="select / edit (V)">Edit</button>
          <button data-tool="draw" title="draw polygon (N)">Polygon</button>
          <button data-tool="hole" title="draw hole (H)">Hole</button>
          <button data-tool="part" title="add part (M)">Part</button>
          <button data-tool="assist" title="assist (A)">Assist</button>
        </span>
        <button class="pb-undo" title="undo (Ctrl+Z)">Undo</button>
        <button class="pb-redo" title="redo (Ctrl+Shift+Z)">Redo</button>
        <button class="pb-helpbtn" title="shortcuts (?)">?</button>
        <span class="pb-save"></span>
      </div>
      <div class="pb-conflict" hidden>
        <div class="pb-conflict-msg"></div>
        <div class="pb-conflict-cols"><div><b>Your version</b><ul class="pb-conflict-mine"></ul></div><div><b>Their version (saved)</b><ul class="pb-conflict-theirs"></ul></div></div>
        <button class="pb-conflict-load">Load their version</button> <button class="pb-conflict-keep">Keep mine (overwrite theirs)</button>
      </div>
      <div class="pb-main">
        <div class="pb-stage"><svg class="pb-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><image class="pb-img" x="0" y="0" width="10" height="10" preserveAspectRatio="none"/><g class="pb-l-anns"></g><g class="pb-l-preds"></g><g class="pb-l-sel"></g><g class="pb-l-draw"></g></svg><div class="pb-empty">No photo</div></div>
        <div class="pb-side">
          <div class="pb-card pb-workflow"><div class="pb-imginfo"></div><div class="pb-review-comment"></div><div class="pb-wf-buttons"></div></div>
          <div class="pb-card"><b>Class</b> <span class="pb-current-class"></span>
            <input class="pb-class-search" placeholder="type to search classes (/)"/>
            <div class="pb-recent"></div><div class="pb-classlist"></div></div>
          <div class="pb-card pb-attrs"></div>
          <div class="pb-card pb-assist-card"><b>Assist</b> <span class="pb-assist-info"></span><br/>
            <label>simplify <input type="range" class="pb-tol" min="0" max="10" step="0.5" value="1"/> <span class="pb-tol-v">1</span> px</label>
            <button class="pb-assist-accept">Accept (Enter)</button> <button class="pb-assist-clear">Clear (Esc)</button></div>
          <div class="pb-card pb-preds-card"><b>Predictions</b>
            <div class="pb-groups"></div>
            <label>threshold <input type="number" class="pb-thr" min="0" max="1" step="0.05" value="0.5"/></label>
            <button class="pb-accept-all" title="Shift+Y">Accept all ≥ threshold</button>
            <div class="pb-predlist"></div></div>
        </div>
      </div>
      <div class="pb-msg"></div>
      <div class="pb-help" hidden><b>Keyboard shortcuts</b><table class="pb-help-table"></table></div>`;
    root.appendChild(app);
    const modeSel = $('.pb-mode');
    for (const [m, perm, label] of [['annotate', 'annotate', 'Annotate'], ['review', 'review', 'Review'], ['fraud', 'fraud', 'Fraud queue']]) {
      if (can(perm)) modeSel.appendChild(el('option', { value: m }, label));
    }
    modeSel.value = S.mode;
    modeSel.addEventListener('change', () => setMode(modeSel.value));
    $('.pb-prev').addEventListener('click', () => step('previous'));
    $('.pb-next').addEventListener('click', () => step('next'));
    for (const [k, sel] of [['status', '.pb-f-status'], ['flagged', '.pb-f-flagged'], ['split', '.pb-f-split'], ['class_id', '.pb-f-class']]) {
      const s = $(sel);
      s.value = S.filters[k] || '';
      s.addEventListener('change', () => { S.filters[k] = s.value; persist(); step('next', true); });
    }
    root.querySelectorAll('[data-tool]').forEach((b) => b.addEventListener('click', () => setTool(b.dataset.tool)));
    $('.pb-undo').addEventListener('click', undo);
    $('.pb-redo').addEventListener('click', redo);
    $('.pb-helpbtn').addEventListener('click', () => { $('.pb-help').hidden = !$('.pb-help').hidden; });
    const table = $('.pb-help-table');
    for (const [k, v] of SHORTCUTS) { const tr = el('tr'); tr.appendChild(el('td', { class: 'pb-key' }, k)); tr.appendChild(el('td', {}, v)); table.appendChild(tr); }
    $('.pb-class-search').addEventListener('input', renderClassList);
    $('.pb-class-search').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { const b = root.querySelector('.pb-classlist button'); if (b) { pickClass(+b.dataset.id); e.target.value = ''; renderClassList(); e.target.blur(); } }
      if (e.key === 'Escape') { e.target.value = ''; renderClassList(); e.target.blur(); }
    });
    const tol = $('.pb-tol');
    tol.addEventListener('input', () => { S.tolerance = +tol.value; $('.pb-tol-v').textContent = tol.value; if (S.assist.points.length || S.assist.box) requestAssist(); });
    $('.pb-assist-accept').addEventListener('click', acceptAssist);
    $('.pb-assist-clear').addEventListener('click', clearAssist);
    $('.pb-accept-all').addEventListener('click', acceptAllAbove);
    const groups = $('.pb-groups');
    for (const g of GROUPS) {
      const cb = el('input', { type: 'checkbox', 'data-group': g });
      cb.checked = !S.hidden.has(g);
      cb.addEventListener('change', () => toggleGroup(g, !cb.checked));
      const lab = el('label'); lab.appendChild(cb); lab.appendChild(document.createTextNode(' ' + g + ' ')); groups.appendChild(lab);
    }
    $('.pb-conflict-load').addEventListener('click', () => { S.conflict = null; $('.pb-conflict').hidden = true; openImage(S.image.id); });
    $('.pb-conflict-keep').addEventListener('click', () => { S.image.version = S.conflict.current_version; S.conflict = null; $('.pb-conflict').hidden = true; save(); });
    const fcls = $('.pb-f-class');
    for (const c of S.classes) fcls.appendChild(el('option', { value: String(c.id) }, c.display_name));
    fcls.value = S.filters.class_id || '';
    bindCanvas();
    renderClassList();
    setTool('select');
  }

  // ---------- classes ----------
  function renderClassList() {
    const q = ($('.pb-class-search').value || '').trim().toLowerCase();
    const list = $('.pb-classlist');
    list.textContent = '';
    for (const g of GROUPS) {
      const items = S.classes.filter((c) => c.group === g && (!q || c.name.toLowerCase().includes(q) || c.display_name.toLowerCase().includes(q)));
      if (!items.length) continue;
      const total = S.classes.filter((c) => c.group === g).length;
      list.appendChild(el('div', { class: 'pb-group-h' }, `${g[0].toUpperCase() + g.slice(1)} (${total})`));
      const box = el('div', { class: 'pb-group-b' });
      for (const c of items) {
        const b = el('button', { 'data-id': String(c.id), class: 'pb-class-btn' }, c.display_name);
        b.style.borderLeft = '4px solid ' + c.color;
        b.addEventListener('click', () => pickClass(c.id));
        box.appendChild(b);
      }
      list.appendChild(box);
    }
    const rec = $('.pb-recent');
    rec.textContent = '';
    S.recent.forEach((id, i) => {
      const b = el('button', { class: 'pb-recent-btn', 'data-id': String(id) }, `${i + 1} ${cls(id).display_name}`);
      b.addEventListener('click', () => pickClass(id));
      rec.appendChild(b);
    });
    $('.pb-current-class').textContent = S.currentClass ? cls(S.currentClass).display_name : '';
  }
  function pickClass(id) {
    S.currentClass = id;
    S.recent = [id, ...S.recent.filter((x) => x !== id)].slice(0, 9);
    const a = selAnn();
    if (a && a.class_id !== id) change(() => { a.class_id = id; a.group = cls(id).group; });
    renderClassList(); persist();
  }

  // ---------- image loading ----------
  function setMode(m) {
    S.mode = m; S.queue = null;
    S.filters = m === 'review' ? { status: 'labelled' } : m === 'fraud' ? { flagged: 'true', status: 'new,in_progress,labelled,reviewed,rejected' } : {};
    for (const [k, sel] of [['status', '.pb-f-status'], ['flagged', '.pb-f-flagged'], ['split', '.pb-f-split'], ['class_id', '.pb-f-class']]) $(sel).value = S.filters[k] || '';
    persist(); step('next', true);
  }
  function queryString(extra) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...S.filters, ...extra })) if (v !== '' && v !== null && v !== undefined) p.set(k, v);
    return p.toString();
  }
  async function step(dir, fromStart) {
    if (S.saving) await waitSaved();
    const t0 = performance.now();
    try {
      const res = await api('GET', `/queue/${dir}?` + queryString(fromStart || !S.image ? {} : { after_id: S.image.id }));
      S.queue = res;
      if (!res.image) { msg(dir === 'next' ? 'The queue is empty for these filters.' : 'This is the first photo.'); renderProgress(); return; }
      await showDetail(res.image, t0);
    } catch (e) { msg('Could not load the queue: ' + e.message, true); }
  }
  async function openImage(id) {
    const t0 = performance.now();
    try { await showDetail(await api('GET', `/images/${id}`), t0); } catch (e) { msg('Could not open photo ' + id + ': ' + e.message, true); if (e.status === 404) step('next', true); }
  }
  function showDetail(d, t0) {
    S.image = { id: d.id, width: d.width, height: d.height, file_name: d.file_name, status: d.status, version: d.version, review_comment: d.review_comment, split: d.split };
    const hist = loadHistory(d.id, d.version);
    if (hist) S.uid = Math.max(S.uid, hist.uid);
    S.anns = d.annotations.map((a) => ({ ...a, key: S.uid++ }));
    S.serverIds = new Set(d.annotations.map((a) => a.id));
    S.preds = d.predictions;
    S.sel = null; S.selV = null; S.selPred = null; S.draw = null; S.conflict = null;
    S.undo = hist ? hist.undo : []; S.redo = hist ? hist.redo : [];
    $('.pb-conflict').hidden = true;
    clearAssist(true);
    const svg = $('.pb-svg'), img = $('.pb-img');
    img.setAttribute('width', d.width); img.setAttribute('height', d.height);
    fit();
    $('.pb-empty').hidden = true;
    persist();
    renderAll(); renderSide(); renderProgress();
    if (can('assist')) api('POST', `/images/${d.id}/assist/prepare`).catch(() => {});
    svg.dataset.imageId = String(d.id);
    return imageBlob(d.id).then((url) => new Promise((resolve) => {
      const pre = new Image();
      pre.onload = pre.onerror = () => {
        if (!S.image || S.image.id !== d.id) return resolve();
        img.setAttribute('href', url);
        requestAnimationFrame(() => {
          if (!S.image || S.image.id !== d.id) return resolve();
          S.stats.drawn = d.id; S.stats.drawnAt = performance.now(); S.stats.openMs = S.stats.drawnAt - (t0 || S.stats.drawnAt);
          root.querySelector('.pb-app').dataset.drawn = String(d.id);
          msg(`Photo ${d.id} (${d.file_name}) — ${S.anns.length} annotations, ${pendingPreds().length} pending predictions`);
          prefetchNext();
          resolve();
        });
      };
      pre.src = url;
    })).catch((e) => msg('Could not load the photo: ' + e.message, true));
  }
  async function prefetchNext() {
    if (!S.image) return;
    try {
      const res = await api('GET', '/queue/next?' + queryString({ after_id: S.image.id }));
      if (res.image) imageBlob(res.image.id).then((u) => { const p = new Image(); p.src = u; }).catch(() => {});
    } catch (e) { /* prefetch is best effort */ }
  }
  function renderProgress() {
    const q = S.queue, p = q && q.progress;
    $('.pb-progress').textContent = q ? `${q.position || '-'} / ${q.queue_length} in queue · ${p.done} / ${p.total} done` : '';
  }

  // ---------- rendering ----------
  function scale() { const m = $('.pb-svg').getScreenCTM(); return m ? Math.abs(m.a) || 1 : 1; }
  function fit() { S.vb = { x: 0, y: 0, w: S.image.width, h: S.image.height }; applyVB(); }
  function applyVB() { $('.pb-svg').setAttribute('viewBox', `${S.vb.x} ${S.vb.y} ${S.vb.w} ${S.vb.h}`); renderSel(); renderDraw(); }
  function pendingPreds() {
    const used = new Set(S.anns.map((a) => a.prediction_id).filter((x) => x != null));
    return S.preds.filter((p) => p.state === 'pending' && !used.has(p.id));
  }
  function selAnn() { return S.anns.find((a) => a.key === S.sel) || null; }
  function renderAll() { renderAnns(); renderPreds(); renderSel(); renderDraw(); }
  function renderAnns() {
    const g = $('.pb-l-anns'); g.textContent = '';
    const frag = document.createDocumentFragment();
    for (const a of S.anns) {
      if (S.hidden.has(a.group)) continue;
      const c = cls(a.class_id);
      const p = sv('path', { d: geomD(a.geometry), class: 'pb-ann' + (a.key === S.sel ? ' pb-selected' : '') + (a.attributes && a.attributes.fake ? ' pb-fake' : ''), 'data-key': a.key, 'fill-rule': 'evenodd', stroke: c.color, fill: c.color });
      frag.appendChild(p);
    }
    g.appendChild(frag);
  }
  function renderPreds() {
    const g = $('.pb-l-preds'); g.textContent = '';
    const s = scale();
    for (const p of pendingPreds()) {
      if (S.hidden.has(p.group)) continue;
      const c = cls(p.class_id);
      g.appendChild(sv('path', { d: geomD(p.geometry), class: 'pb-pred' + (p.id === S.selPred ? ' pb-selected' : ''), 'data-pid': p.id, 'fill-rule': 'evenodd', stroke: c.color }));
      const [x0, y0] = bbox(p.geometry);
      const t = sv('text', { x: x0, y: y0 - 4 / s, class: 'pb-pred-label', 'font-size': 13 / s, 'data-pid': p.id });
      t.textContent = `${c.display_name} ${p.score.toFixed(2)}`;
      g.appendChild(t);
    }
    renderPredList();
  }
  function renderSel() {
    const g = $('.pb-l-sel'); g.textContent = '';
    const a = selAnn(); if (!a || S.hidden.has(a.group)) return;
    const s = scale(), r = 5 / s;
    g.appendChild(sv('path', { d: geomD(a.geometry), class: 'pb-edge-hit', 'stroke-width': 10 / s }));
    a.geometry.forEach((poly, pi) => [poly.exterior, ...(poly.holes || [])].forEach((ring, ri) => ring.forEach((q, i) => {
      const isSel = S.selV && S.selV[0] === pi && S.selV[1] === ri && S.selV[2] === i;
      g.appendChild(sv('circle', { cx: q[0], cy: q[1], r, class: 'pb-vertex' + (isSel ? ' pb-vsel' : ''), 'data-p': pi, 'data-r': ri, 'data-i': i }));
    })));
  }
  function renderDraw() {
    const g = $('.pb-l-draw'); if (!g) return; g.textContent = '';
    if (!S.image) return;
    const s = scale();
    if (S.draw && S.draw.points.length) {
      const pts = [...S.draw.points, ...(S.draw.cursor ? [S.draw.cursor] : [])];
      g.appendChild(sv('polyline', { points: pts.map((q) => q.join(',')).join(' '), class: 'pb-drawing' }));
      S.draw.points.forEach((q, i) => g.appendChild(sv('circle', { cx: q[0], cy: q[1], r: (i === 0 ? 7 : 4) / s, class: 'pb-draw-pt' + (i === 0 ? ' pb-first' : '') })));
    }
    const A = S.assist;
    if (A.preview && A.preview.length) g.appendChild(sv('path', { d: geomD(A.preview), class: 'pb-preview', 'fill-rule': 'evenodd' }));
    if (A.box) g.appendChild(sv('rect', { x: Math.min(A.box[0], A.box[2]), y: Math.min(A.box[1], A.box[3]), width: Math.abs(A.box[2] - A.box[0]), height: Math.abs(A.box[3] - A.box[1]), class: 'pb-box' }));
    A.points.forEach((q, i) => g.appendChild(sv('circle', { cx: q[0], cy: q[1], r: 5 / s, class: A.labels[i] ? 'pb-pos' : 'pb-neg' })));
  }
  function updateAnnPath(a) {
    const p = root.querySelector(`.pb-ann[data-key="${a.key}"]`);
    if (p) p.setAttribute('d', geomD(a.geometry));
    const hit = root.querySelector('.pb-edge-hit');
    if (hit) hit.setAttribute('d', geomD(a.geometry));
  }

  // ---------- side panels ----------
  function renderSide() { renderWorkflow(); renderAttrs(); renderPredList(); renderClassList(); }
  function renderWorkflow() {
    const info = $('.pb-imginfo'), btns = $('.pb-wf-buttons'), rc = $('.pb-review-comment');
    btns.textContent = '';
    if (!S.image) { info.textContent = ''; rc.textContent = ''; return; }
    info.textContent = `#${S.image.id} ${S.image.file_name} · ${S.image.width}×${S.image.height} · ${S.image.split} · status: ${S.image.status} · version ${S.image.version}`;
    rc.textContent = S.image.review_comment ? 'Review comment: ' + S.image.review_comment : '';
    if (S.mode === 'review' && can('review')) {
      btns.appendChild(el('button', { class: 'pb-approve', onclick: () => setStatus('reviewed') }, 'Approve'));
      const ta = el('textarea', { class: 'pb-reject-comment', placeholder: 'what must be fixed (required to reject)' });
      btns.appendChild(ta);
      btns.appendChild(el('button', { class: 'pb-reject', onclick: () => setStatus('rejected', ta.value) }, 'Reject with comment'));
    } else if (S.mode === 'fraud' && can('fraud')) {
      btns.appendChild(el('button', { class: 'pb-fraud-confirm', onclick: () => fraudDecision(true) }, 'Confirm fake damage'));
      btns.appendChild(el('button', { class: 'pb-fraud-clear', onclick: () => fraudDecision(false) }, 'Clear (not fake)'));
    } else if (can('annotate')) {
      btns.appendChild(el('button', { class: 'pb-mark-labelled', onclick: () => setStatus('labelled') }, 'Mark labelled (Ctrl+Enter)'));
    }
  }
  async function setStatus(status, comment) {
    if (!S.image) return;
    if (S.saving) await waitSaved();
    try {
      const r = await api('POST', `/images/${S.image.id}/status`, { status, comment: comment || null });
      S.image.status = r.status; S.image.review_comment = r.review_comment;
      msg(`Photo ${S.image.id} is now ${r.status}.`); renderWorkflow();
    } catch (e) { msg(e.message, true); }
  }
  function partSuggestion(a) {
    const [x0, y0, x1, y1] = bbox(a.geometry), area = Math.max((x1 - x0) * (y1 - y0), 1e-6);
    let best = null;
    const cands = [...S.anns.filter((b) => b.group === 'part'), ...S.preds.filter((p) => p.group === 'part' && p.state !== 'rejected')];
    for (const b of cands) {
      const [u0, v0, u1, v1] = bbox(b.geometry);
      const ov = Math.max(0, Math.min(x1, u1) - Math.max(x0, u0)) * Math.max(0, Math.min(y1, v1) - Math.max(y0, v0)) / area;
      if (ov > 0 && (!best || ov > best.ov)) best = { id: b.class_id, ov };
    }
    return best;
  }
  function renderAttrs() {
    const box = $('.pb-attrs'); box.textContent = '';
    const a = selAnn();
    if (!a) { box.appendChild(el('div', { class: 'pb-hint' }, 'Select a polygon to edit its class and attributes.')); return; }
    const at = a.attributes || (a.attributes = {});
    box.appendChild(el('div', { class: 'pb-sel-class' }, `${cls(a.class_id).display_name} (${a.group}) · ${a.source || 'manual'}`));
    const sev = el('select', { class: 'pb-severity' });
    sev.appendChild(el('option', { value: '' }, '—'));
    for (const s of SEVERITIES) sev.appendChild(el('option', { value: s }, s));
    sev.value = at.severity || '';
    sev.addEventListener('change', () => change(() => { if (sev.value) a.attributes.severity = sev.value; else delete a.attributes.severity; }));
    const l1 = el('label', {}, 'severity '); l1.appendChild(sev); box.appendChild(l1);
    const part = el('select', { class: 'pb-part' });
    part.appendChild(el('option', { value: '' }, '—'));
    for (const c of S.classes.filter((c) => c.group === 'part')) part.appendChild(el('option', { value: String(c.id) }, c.display_name));
    part.value = at.part_id ? String(at.part_id) : '';
    part.addEventListener('change', () => change(() => { if (part.value) a.attributes.part_id = +part.value; else delete a.attributes.part_id; }));
    const l2 = el('label', {}, 'part '); l2.appendChild(part); box.appendChild(l2);
    if (a.group !== 'part') {
      const sug = partSuggestion(a);
      if (sug && sug.id !== at.part_id) {
        const b = el('button', { class: 'pb-part-suggest' }, `use suggested part: ${cls(sug.id).display_name} (${Math.round(sug.ov * 100)}% overlap)`);
        b.addEventListener('click', () => change(() => { a.attributes.part_id = sug.id; }));
        box.appendChild(b);
      }
    }
    const occ = el('input', { type: 'checkbox', class: 'pb-occluded' }); occ.checked = !!at.occluded;
    occ.addEventListener('change', () => change(() => { a.attributes.occluded = occ.checked; }));
    const l3 = el('label'); l3.appendChild(occ); l3.appendChild(document.createTextNode(' occluded')); box.appendChild(l3);
    if (can('fraud')) {
      const fk = el('input', { type: 'checkbox', class: 'pb-fake-check' }); fk.checked = !!at.fake;
      fk.addEventListener('change', () => change(() => { a.attributes.fake = fk.checked; }));
      const l4 = el('label'); l4.appendChild(fk); l4.appendChild(document.createTextNode(' fake damage')); box.appendChild(l4);
      const note = el('textarea', { class: 'pb-fake-note', placeholder: 'fraud note' }); note.value = at.fake_note || '';
      note.addEventListener('change', () => change(() => { if (note.value) a.attributes.fake_note = note.value; else delete a.attributes.fake_note; }));
      box.appendChild(note);
    } else if (at.fake) {
      box.appendChild(el('div', { class: 'pb-fake-flag' }, 'Flagged as fake damage' + (at.fake_note ? ': ' + at.fake_note : '')));
    }
    box.appendChild(el('button', { class: 'pb-delete', onclick: deleteSelected }, 'Delete polygon (Del)'));
  }
  function renderPredList() {
    const list = $('.pb-predlist'); if (!list) return; list.textContent = '';
    for (const p of pendingPreds()) {
      if (S.hidden.has(p.group)) continue;
      const row = el('div', { class: 'pb-pred-row' + (p.id === S.selPred ? ' pb-selected' : ''), 'data-pid': p.id });
      row.appendChild(el('span', {}, `${cls(p.class_id).display_name} ${p.score.toFixed(2)} `));
      row.appendChild(el('button', { class: 'pb-pred-accept', onclick: () => acceptPred(p.id) }, 'accept'));
      row.appendChild(el('button', { class: 'pb-pred-reject', onclick: () => rejectPred(p.id) }, 'reject'));
      list.appendChild(row);
    }
  }

  // ---------- changes, undo, autosave ----------
  const strip = (a) => ({ key: a.key, id: a.id, class_id: a.class_id, group: a.group, geometry: a.geometry, attributes: a.attributes || {}, source: a.source, prediction_id: a.prediction_id });
  const snap = () => JSON.stringify(S.anns.map(strip));
  function pushUndo(before) { S.undo.push(before); if (S.undo.length > MAX_UNDO) S.undo.shift(); S.redo = []; }
  function change(fn) { const before = snap(); fn(); pushUndo(before); afterChange(); }
  // Undo/redo survive a reload of the tab (sessionStorage), for the version they were made on.
  const HIST_KEY = 'pb.history';
  function saveHistory() {
    try {
      const text = JSON.stringify({ imageId: S.image.id, version: S.image.version, uid: S.uid, undo: S.undo, redo: S.redo });
      if (text.length < 4e6) sessionStorage.setItem(HIST_KEY, text); else sessionStorage.removeItem(HIST_KEY);
    } catch (e) { /* storage full: history stays in memory only */ }
  }
  function loadHistory(imageId, version) {
    try {
      const h = JSON.parse(sessionStorage.getItem(HIST_KEY) || 'null');
      return h && h.imageId === imageId && h.version === version ? h : null;
    } catch (e) { return null; }
  }
  function afterChange() { renderAll(); renderAttrs(); renderPredList(); save(); }
  function undo() { if (!S.undo.length) return; S.redo.push(snap()); S.anns = JSON.parse(S.undo.pop()); if (!selAnn()) S.sel = null; S.selV = null; afterChange(); msg(`Undone (${S.undo.length} more).`); }
  function redo() { if (!S.redo.length) return; S.undo.push(snap()); S.anns = JSON.parse(S.redo.pop()); if (!selAnn()) S.sel = null; S.selV = null; afterChange(); msg('Redone.'); }
  function waitSaved() { return new Promise((res) => { const t = setInterval(() => { if (!S.saving) { clearInterval(t); res(); } }, 10); }); }
  async function save() {
    if (!S.image || S.conflict) return;
    if (S.saving) { S.dirty = true; return; }
    S.saving = true; S.dirty = false;
    const imageId = S.image.id;
    const sent = S.anns.map((a) => ({ key: a.key, id: a.id != null && S.serverIds.has(a.id) ? a.id : null }));
    const body = { version: S.image.version, annotations: S.anns.map((a, i) => ({ id: sent[i].id, class_id: a.class_id, geometry: a.geometry, attributes: a.attributes || {}, source: a.source || 'manual', prediction_id: a.prediction_id ?? null })) };
    $('.pb-save').textContent = 'saving…';
    try {
      const res = await api('PUT', `/images/${imageId}/annotations`, body);
      if (!S.image || S.image.id !== imageId) return;
      const sentIds = new Set(sent.map((x) => x.id).filter((x) => x != null));
      const fresh = res.annotations.map((a) => a.id).filter((id) => !sentIds.has(id)).sort((a, b) => a - b);
      sent.filter((x) => x.id == null).forEach((x, i) => { const a = S.anns.find((b) => b.key === x.key); if (a && fresh[i] != null) a.id = fresh[i]; });
      S.serverIds = new Set(res.annotations.map((a) => a.id));
      S.image.version = res.version; S.image.status = res.status; S.preds = res.predictions;
      S.stats.saves++; S.stats.lastSaved = performance.now();
      saveHistory();
      $('.pb-save').textContent = `saved · v${res.version}`;
      renderWorkflow();
    } catch (e) {
      if (e.status === 409) showConflict(e.data.detail);
      else { $('.pb-save').textContent = 'NOT SAVED'; msg('Save failed: ' + e.message, true); }
    } finally {
      S.saving = false;
      if (S.dirty && !S.conflict) save();
    }
  }
  function showConflict(d) {
    S.conflict = d;
    const box = $('.pb-conflict'); box.hidden = false;
    $('.pb-conflict-msg').textContent = `Conflict: ${d.message}. Your version is based on version ${d.your_version}; the saved version is ${d.current_version}. Nothing was overwritten.`;
    const fill = (ul, items) => { ul.textContent = ''; for (const a of items) ul.appendChild(el('li', {}, `${cls(a.class_id).display_name}${a.attributes && a.attributes.fake ? ' (fake)' : ''} · ${a.geometry.length} part(s)`)); if (!items.length) ul.appendChild(el('li', {}, '(none)')); };
    fill($('.pb-conflict-mine'), S.anns);
    fill($('.pb-conflict-theirs'), d.current_annotations);
    $('.pb-save').textContent = 'CONFLICT';
    msg('Conflict: someone else saved this photo first. Choose a version above.', true);
  }

  // ---------- predictions ----------
  function predToAnn(p) { return { key: S.uid++, id: null, class_id: p.class_id, group: p.group, geometry: clone(p.geometry), attributes: {}, source: 'accepted_prediction', prediction_id: p.id }; }
  function acceptPred(pid) { const p = S.preds.find((x) => x.id === pid); if (!p) return; change(() => { const a = predToAnn(p); S.anns.push(a); S.sel = a.key; S.selPred = null; }); }
  async function rejectPred(pid) {
    try { await api('POST', `/predictions/${pid}/state`, { state: 'rejected' }); const p = S.preds.find((x) => x.id === pid); if (p) p.state = 'rejected'; S.selPred = null; renderPreds(); msg('Prediction rejected.'); } catch (e) { msg(e.message, true); }
  }
  function acceptAllAbove() {
    const t = +$('.pb-thr').value;
    const todo = pendingPreds().filter((p) => p.score >= t && !S.hidden.has(p.group));
    if (!todo.length) { msg('No pending prediction at or above ' + t); return; }
    change(() => { for (const p of todo) S.anns.push(predToAnn(p)); });
    msg(`Accepted ${todo.length} predictions.`);
  }
  async function fraudDecision(isFake) {
    const fakePreds = pendingPreds().filter((p) => p.group === 'fake');
    change(() => {
      if (isFake) for (const p of fakePreds) S.anns.push(predToAnn(p));
      for (const a of S.anns) if (a.group !== 'part' && (a.group === 'fake' || (a.attributes && a.attributes.fake) || S.sel === a.key)) { a.attributes = a.attributes || {}; a.attributes.fake = isFake; }
    });
    if (!isFake) for (const p of fakePreds) await rejectPred(p.id);
    msg(isFake ? 'Confirmed as fake damage.' : 'Cleared: not fake damage.');
  }
  function toggleGroup(g, hide) { if (hide) S.hidden.add(g); else S.hidden.delete(g); const cb = root.querySelector(`[data-group="${g}"]`); if (cb) cb.checked = !hide; renderAll(); renderPredList(); persist(); }

  // ---------- tools ----------
  function setTool(t) {
    if ((t === 'hole' || t === 'part') && !selAnn()) { msg('Select a polygon first.', true); t = 'select'; }
    S.tool = t; S.draw = (t === 'draw' || t === 'hole' || t === 'part') ? { points: [], target: t } : null;
    if (t !== 'assist') clearAssist(true);
    root.querySelectorAll('[data-tool]').forEach((b) => b.classList.toggle('pb-active', b.dataset.tool === t));
    const app = root.querySelector('.pb-app'); if (app) app.dataset.tool = t;
    renderDraw();
  }
  function finishDrawing() {
    const D = S.draw; if (!D || D.points.length < 3) { msg('A polygon needs at least 3 vertices.', true); return; }
    const ring = D.points.map((q) => [q[0], q[1]]);
    if (D.target === 'draw') {
      const cid = S.currentClass || (S.classes.find((c) => c.group === 'damage') || {}).id;
      change(() => { const a = { key: S.uid++, id: null, class_id: cid, group: cls(cid).group, geometry: [{ exterior: ring, holes: [] }], attributes: {}, source: 'manual', prediction_id: null }; S.anns.push(a); S.sel = a.key; });
    } else {
      const a = selAnn(); if (!a) return;
      change(() => {
        if (D.target === 'part') a.geometry.push({ exterior: ring, holes: [] });
        else { const poly = a.geometry.find((p) => inRing(ring[0], p.exterior)) || a.geometry[0]; (poly.holes = poly.holes || []).push(ring); }
      });
    }
    setTool('select');
  }
  function deleteSelected() {
    const a = selAnn(); if (!a) return;
    if (S.selV) return deleteVertex(...S.selV);
    change(() => { S.anns = S.anns.filter((b) => b.key !== a.key); S.sel = null; });
  }
  function deleteVertex(pi, ri, i) {
    const a = selAnn(); if (!a) return;
    const poly = a.geometry[pi], ring = ri === 0 ? poly.exterior : poly.holes[ri - 1];
    change(() => {
      if (ring.length > 3) ring.splice(i, 1);
      else if (ri > 0) poly.holes.splice(ri - 1, 1);
      else if (a.geometry.length > 1) a.geometry.splice(pi, 1);
      else { S.anns = S.anns.filter((b) => b.key !== a.key); S.sel = null; }
      S.selV = null;
    });
  }
  function clearAssist(quiet) { S.assist = { points: [], labels: [], box: null, preview: null }; if (!quiet) renderDraw(); const i = $('.pb-assist-info'); if (i) i.textContent = ''; }
  async function requestAssist() {
    if (!S.image) return;
    const A = S.assist, imageId = S.image.id, t0 = performance.now();
    const seq = (S.assistSeq = (S.assistSeq || 0) + 1);
    try {
      const r = await api('POST', `/images/${imageId}/assist`, { points: A.points, labels: A.labels, box: A.box, tolerance: S.tolerance });
      if (seq !== S.assistSeq || !S.image || S.image.id !== imageId) return;
      A.preview = r.geometry; renderDraw();
      S.stats.assists++; S.stats.lastAssist = performance.now() - t0;
      $('.pb-assist-info').textContent = r.geometry.length ? `${r.backend} · score ${(+r.score).toFixed(2)} · Enter accepts` : `${r.backend}: nothing found; add points`;
    } catch (e) { msg('Assist failed: ' + e.message, true); }
  }
  function acceptAssist() {
    const A = S.assist; if (!A.preview || !A.preview.length) { msg('No assist preview to accept.', true); return; }
    const cid = S.currentClass || (S.classes.find((c) => c.group === 'damage') || {}).id;
    const geom = clone(A.preview);
    change(() => { const a = { key: S.uid++, id: null, class_id: cid, group: cls(cid).group, geometry: geom, attributes: {}, source: 'assisted', prediction_id: null }; S.anns.push(a); S.sel = a.key; });
    clearAssist();
  }

  // ---------- pointer ----------
  function toImg(e) {
    const svg = $('.pb-svg'), pt = svg.createSVGPoint();
    pt.x = e.clientX; pt.y = e.clientY;
    const q = pt.matrixTransform(svg.getScreenCTM().inverse());
    return [Math.round(q.x * 100) / 100, Math.round(q.y * 100) / 100];
  }
  function nearestEdge(a, pt) {
    let best = null;
    a.geometry.forEach((poly, pi) => [poly.exterior, ...(poly.holes || [])].forEach((ring, ri) => {
      for (let i = 0; i < ring.length; i++) {
        const p0 = ring[i], p1 = ring[(i + 1) % ring.length];
        const dx = p1[0] - p0[0], dy = p1[1] - p0[1], L = dx * dx + dy * dy || 1e-9;
        const t = Math.max(0, Math.min(1, ((pt[0] - p0[0]) * dx + (pt[1] - p0[1]) * dy) / L));
        const x = p0[0] + t * dx, y = p0[1] + t * dy, d = Math.hypot(pt[0] - x, pt[1] - y);
        if (!best || d < best.d) best = { pi, ri, i: i + 1, d, q: [Math.round(x * 100) / 100, Math.round(y * 100) / 100] };
      }
    }));
    return best;
  }
  let raf = 0;
  function scheduleDragPaint() {
    if (raf) return;
    raf = requestAnimationFrame(() => {
      raf = 0; S.stats.frames++;
      const a = selAnn(); if (!a) return;
      updateAnnPath(a);
      const D = S.drag;
      if (D && D.kind === 'vertex') { const c = root.querySelector(`.pb-vertex[data-p="${D.pi}"][data-r="${D.ri}"][data-i="${D.i}"]`); if (c) { const q = ringOf(a, D.pi, D.ri)[D.i]; c.setAttribute('cx', q[0]); c.setAttribute('cy', q[1]); } }
      else if (D && D.kind === 'move') renderSel();
    });
  }
  const ringOf = (a, pi, ri) => (ri === 0 ? a.geometry[pi].exterior : a.geometry[pi].holes[ri - 1]);
  function bindCanvas() {
    const svg = $('.pb-svg');
    svg.addEventListener('pointerdown', (e) => {
      if (!S.image) return;
      root.querySelector('.pb-app').focus({ preventScroll: true });
      const pt = toImg(e), t = e.target;
      if (e.button === 1 || S.space) { S.drag = { kind: 'pan', x: e.clientX, y: e.clientY, vb: { ...S.vb } }; svg.setPointerCapture(e.pointerId); e.preventDefault(); return; }
      if (e.button !== 0) return;
      if (S.draw) {
        const P = S.draw.points;
        if (P.length >= 3 && Math.hypot(pt[0] - P[0][0], pt[1] - P[0][1]) * scale() < 9) finishDrawing();
        else { P.push(pt); renderDraw(); }
        return;
      }
      if (S.tool === 'assist') { S.drag = { kind: 'assist', start: pt, x: e.clientX, y: e.clientY, neg: e.shiftKey }; svg.setPointerCapture(e.pointerId); return; }
      const a = selAnn();
      if (t.classList.contains('pb-vertex') && a) {
        const pi = +t.dataset.p, ri = +t.dataset.r, i = +t.dataset.i;
        if (e.altKey) { deleteVertex(pi, ri, i); return; }
        S.selV = [pi, ri, i];
        S.drag = { kind: 'vertex', pi, ri, i, before: snap(), moved: false };
        svg.setPointerCapture(e.pointerId); renderSel(); return;
      }
      if (t.classList.contains('pb-edge-hit') && a) {
        const ne = nearestEdge(a, pt);
        if (ne && ne.d * scale() < 8) {
          const before = snap();
          ringOf(a, ne.pi, ne.ri).splice(ne.i, 0, ne.q);
          S.selV = [ne.pi, ne.ri, ne.i];
          S.drag = { kind: 'vertex', pi: ne.pi, ri: ne.ri, i: ne.i, before, moved: true };
          svg.setPointerCapture(e.pointerId); renderAnns(); renderSel(); return;
        }
      }
      if (t.classList.contains('pb-ann') || (t.classList.contains('pb-edge-hit') && a)) {
        const key = t.classList.contains('pb-ann') ? +t.dataset.key : a.key;
        if (S.sel !== key) { S.sel = key; S.selV = null; S.selPred = null; const b = selAnn(); if (b) { S.currentClass = b.class_id; } renderAnns(); renderSel(); renderAttrs(); renderPreds(); renderClassList(); }
        S.drag = { kind: 'move', start: pt, orig: clone(selAnn().geometry), before: snap(), moved: false };
        svg.setPointerCapture(e.pointerId); return;
      }
      if (t.classList.contains('pb-pred') || t.classList.contains('pb-pred-label')) { S.selPred = +t.dataset.pid; S.sel = null; S.selV = null; renderAll(); renderAttrs(); return; }
      S.sel = null; S.selV = null; S.selPred = null; renderAnns(); renderSel(); renderAttrs(); renderPreds();
    });
    svg.addEventListener('pointermove', (e) => {
      const D = S.drag;
      if (!D) { if (S.draw && S.draw.points.length) { S.draw.cursor = toImg(e); renderDraw(); } return; }
      if (D.kind === 'pan') { const s = scale(); S.vb.x = D.vb.x - (e.clientX - D.x) / s; S.vb.y = D.vb.y - (e.clientY - D.y) / s; applyVB(); return; }
      const pt = toImg(e), a = selAnn();
      if (D.kind === 'assist') { if (Math.hypot(e.clientX - D.x, e.clientY - D.y) > 4) { S.assist.box = [D.start[0], D.start[1], pt[0], pt[1]]; D.box = true; renderDraw(); } return; }
      if (!a) return;
      if (D.kind === 'vertex') { ringOf(a, D.pi, D.ri)[D.i] = pt; D.moved = true; }
      else if (D.kind === 'move') {
        const dx = pt[0] - D.start[0], dy = pt[1] - D.start[1];
        if (!D.moved && Math.hypot(dx, dy) * scale() < 3) return;
        D.moved = true;
        a.geometry = D.orig.map((p) => ({ exterior: p.exterior.map((q) => [q[0] + dx, q[1] + dy]), holes: (p.holes || []).map((h) => h.map((q) => [q[0] + dx, q[1] + dy])) }));
      }
      scheduleDragPaint();
    });
    const end = (e) => {
      const D = S.drag; if (!D) return;
      S.drag = null;
      try { svg.releasePointerCapture(e.pointerId); } catch (err) { /* already released */ }
      if (D.kind === 'assist') {
        if (D.box) { const b = S.assist.box; S.assist.box = [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])]; }
        else { S.assist.points.push(D.start); S.assist.labels.push(D.neg ? 0 : 1); }
        renderDraw(); requestAssist(); return;
      }
      if ((D.kind === 'vertex' || D.kind === 'move') && D.moved) {
        S.stats.lastRelease = performance.now();
        pushUndo(D.before); renderAnns(); renderSel(); renderAttrs(); save();
      }
    };
    svg.addEventListener('pointerup', end);
    svg.addEventListener('pointercancel', end);
    svg.addEventListener('wheel', (e) => {
      if (!S.image) return; e.preventDefault();
      const pt = toImg(e), k = e.deltaY < 0 ? 0.8 : 1.25;
      S.vb = { x: pt[0] - (pt[0] - S.vb.x) * k, y: pt[1] - (pt[1] - S.vb.y) * k, w: S.vb.w * k, h: S.vb.h * k };
      applyVB(); renderPreds();
    }, { passive: false });
    document.addEventListener('keydown', onKey);
    document.addEventListener('keyup', (e) => { if (e.key === ' ') S.space = false; });
  }
  function onKey(e) {
    if (!root.isConnected || root.offsetParent === null || !S.session) return;
    const tag = (e.target && e.target.tagName) || '';
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag) && !root.contains(e.target)) return;
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag) && e.key !== 'Escape') return;
    const k = e.key, ctrl = e.ctrlKey || e.metaKey;
    let done = true;
    if (ctrl && (k === 'z' || k === 'Z')) { if (e.shiftKey) redo(); else undo(); }
    else if (ctrl && (k === 'y' || k === 'Y')) redo();
    else if (ctrl && k === 'Enter') setStatus(S.mode === 'review' ? 'reviewed' : 'labelled');
    else if (k === 'Enter') { if (S.draw) finishDrawing(); else if (S.assist.preview) acceptAssist(); else done = false; }
    else if (k === 'Escape') { if (S.draw && S.draw.points.length) { S.draw.points = []; renderDraw(); } else if (S.assist.points.length || S.assist.box) clearAssist(); else { S.sel = null; S.selV = null; if (S.draw) setTool('select'); renderAll(); renderAttrs(); } $('.pb-help').hidden = true; }
    else if (k === 'Delete' || (k === 'Backspace' && !S.draw)) deleteSelected();
    else if (k === 'Backspace' && S.draw) { S.draw.points.pop(); renderDraw(); }
    else if (e.shiftKey && /^Digit[123]$/.test(e.code)) { const g = GROUPS[+e.code.slice(5) - 1]; toggleGroup(g, !S.hidden.has(g)); }
    else if (ctrl || e.altKey) done = false;
    else if (k === 'v' || k === 'V') setTool('select');
    else if (k === 'n' || k === 'N') setTool('draw');
    else if (k === 'h' || k === 'H') setTool('hole');
    else if (k === 'm' || k === 'M') setTool('part');
    else if (k === 'a' || k === 'A') setTool('assist');
    else if (k === 'Y') acceptAllAbove();
    else if (k === 'y') { if (S.selPred) acceptPred(S.selPred); }
    else if (k === 'x' || k === 'X') { if (S.selPred) rejectPred(S.selPred); }
    else if (k === 'ArrowRight' || k === 'd' || k === 'D') step('next');
    else if (k === 'ArrowLeft' || k === 's' || k === 'S') step('previous');
    else if (/^[1-9]$/.test(k)) { const id = S.recent[+k - 1]; if (id) pickClass(id); }
    else if (k === '/') $('.pb-class-search').focus();
    else if (k === '0') { if (S.image) fit(); }
    else if (k === '?') $('.pb-help').hidden = !$('.pb-help').hidden;
    else if (k === ' ') S.space = true;
    else done = false;
    if (done) e.preventDefault();
  }

  // ---------- start ----------
  async function start() {
    let sess = null;
    try { sess = props.value ? JSON.parse(props.value) : null; } catch (e) { sess = null; }
    if (!sess || !sess.token) { S.session = null; root.textContent = ''; root.appendChild(el('div', { class: 'pb-hint' }, 'Sign in to start.')); return; }
    if (S.session && S.session.token === sess.token && root.querySelector('.pb-app')) return;
    S.session = sess;
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem('pb.workspace') || '{}'); } catch (e) { saved = {}; }
    if (saved.user !== sess.username) saved = {};
    const modes = { annotate: 'annotate', review: 'review', fraud: 'fraud' };
    S.mode = saved.mode && can(modes[saved.mode]) ? saved.mode : (can('annotate') ? 'annotate' : 'review');
    S.filters = saved.filters || {}; S.recent = saved.recent || []; S.currentClass = saved.currentClass || null; S.hidden = new Set(saved.hidden || []);
    try {
      const tax = await api('GET', '/taxonomy');
      S.classes = tax.classes; S.byId = {}; for (const c of S.classes) S.byId[c.id] = c;
    } catch (e) { root.textContent = ''; root.appendChild(el('div', { class: 'pb-hint pb-bad' }, 'Could not load classes: ' + e.message)); return; }
    if (!S.currentClass) S.currentClass = (S.classes.find((c) => c.group === 'damage') || S.classes[0]).id;
    buildShell();
    if (saved.imageId) await openImage(saved.imageId); else await step('next', true);
  }
  S.openImage = openImage; S.step = step; S.setMode = setMode;
  watch('value', start);
  start();
})();
