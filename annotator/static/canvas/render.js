// The SVG layers over the photo: annotations with their class names, pending predictions, the
// selection's handles, and what is being drawn or assisted; and the HTML overlays on the stage
// (the legend of the photo's classes, the reviewer's comment). The viewBox is in image pixels
// (S.vb), so sizes meant in screen pixels (handles, labels, hit strokes) are divided by scale().
// Layers are rebuilt whole; during a drag only the moved path and handle are touched, once per
// animation frame. Zoom and the sharp region over the photo are in zoom.js.
function PBRender(app) {
  const { S, root, $, sv, el } = app;
  const G = PBGeometry;

  // One SVG path for all rings; drawn with fill-rule evenodd, holes show as holes.
  function pathData(geometry) {
    let d = '';
    for (const p of geometry) for (const ring of G.rings(p)) {
      if (!ring.length) continue;
      d += 'M' + ring.map((q) => q[0].toFixed(1) + ' ' + q[1].toFixed(1)).join('L') + 'Z';
    }
    return d;
  }
  // Screen pixels per image pixel at the current zoom.
  // A pre-annotation whose sided class appears twice on the photo (two "left" doors) carries the
  // model's sentence about it; it is shown beside the class name.
  function sideConflict(p) { return (p.extra && p.extra.side_conflict) || ''; }
  // A damage pre-annotation says which part it sits on (the part model's map, extra.part): the
  // annotator reads "Dent on front left door", as a damage report does.
  function partOf(p) {
    const part = p.extra && p.extra.part;
    if (!part || part.class_id == null) return '';
    const c = app.cls(part.class_id);
    return (c ? c.display_name : String(part.name || '').replace(/_/g, ' ')).toLowerCase();
  }
  function predName(p) {
    const part = partOf(p);
    return app.cls(p.class_id).display_name + (part ? ' on ' + part : '');
  }
  // A polygon imported from a label without a side (attributes.side 'unknown', see sides.js)
  // holds the side the label map guessed: its name leaves that side out and says "side?", as a
  // prediction with a side conflict does.
  function annName(a) {
    const n = app.cls(a.class_id).display_name;
    if (!(a.attributes && a.attributes.side === 'unknown')) return n;
    const bare = n.replace(/\b(left|right)\b\s*/i, '').trim() || n;
    return bare.charAt(0).toUpperCase() + bare.slice(1) + ' · side?';
  }
  function scale() { const m = $('.pb-svg').getScreenCTM(); return m ? Math.abs(m.a) || 1 : 1; }
  function fit() { S.vb = { x: 0, y: 0, w: S.image.width, h: S.image.height }; applyVB(); }
  // Handles and the drawing are sized by scale(), so they follow a zoom or pan; zoom.js updates
  // the zoom readout, the labels' size and the sharp region.
  function applyVB() { $('.pb-svg').setAttribute('viewBox', `${S.vb.x} ${S.vb.y} ${S.vb.w} ${S.vb.h}`); renderSel(); renderDraw(); app.viewChanged(); }

  function renderAll() { renderAnns(); renderPreds(); renderSel(); renderDraw(); renderComment(); }
  // The colours of the classes on the open photo (palette.js photoColors): a damage class and a
  // part class there never look alike. Worked out again at each render, as a relabel may bring
  // a clash.
  function photoPalette() {
    const ids = new Set([...S.anns.map((a) => a.class_id), ...app.pendingPreds().map((p) => p.class_id)]);
    const present = [...ids].map((id) => app.cls(id));
    const before = JSON.stringify(S.photoColors || {});
    S.photoColors = PBPalette.photoColors(present, Object.fromEntries(present.map((c) => [c.id, c.color])));
    // The class picker shows each class in the colour its outlines have on this photo.
    if (JSON.stringify(S.photoColors) !== before && app.renderClassList && $('.pb-classlist')) app.renderClassList();
  }
  const colorOf = (id) => (S.photoColors && S.photoColors[id]) || app.cls(id).color;
  function renderAnns() {
    photoPalette();
    const g = $('.pb-l-anns'); g.textContent = '';
    const frag = document.createDocumentFragment();
    for (const a of S.anns) {
      if (S.hidden.has(a.group)) continue;
      const c = app.cls(a.class_id);
      const m = marks(a);
      const p = sv('path', { d: pathData(a.geometry), class: 'pb-ann' + (a.key === S.sel ? ' pb-selected' : '') + m.map(([k]) => ' pb-' + k).join(''), 'data-key': a.key, 'fill-rule': 'evenodd', stroke: colorOf(a.class_id), fill: colorOf(a.class_id) });
      frag.appendChild(p);
    }
    g.appendChild(frag);
    renderLabels(); renderMarks(); renderLegend();
  }
  // What a polygon's outline and badge say about it, beyond its class: [style, badge] pairs
  // for a reviewer's rejection, a confirmed fake and a fraud-check suspect (S.suspects, fetched
  // for fraud analysts in navigate.js).
  function marks(a) {
    const out = [];
    if (a.review_state === 'rejected') out.push(['inst-rejected', '✗ rejected']);
    if (a.group === 'fake' || (a.attributes && a.attributes.fake)) out.push(['fake', 'fake']);
    if (S.suspects && a.id != null && S.suspects.has(a.id)) out.push(['suspect', '⚠ fraud check']);
    return out;
  }
  // The badges at the top right of each marked polygon's box; shown even with labels hidden,
  // since they carry decisions, not names.
  function renderMarks() {
    const g = $('.pb-l-marks'); if (!g) return; g.textContent = '';
    if (!S.image) return;
    const s = scale(), fs = 11 / s;
    for (const a of S.anns) {
      if (S.hidden.has(a.group) || !a.geometry.length) continue;
      const m = marks(a); if (!m.length) continue;
      const [, y0, x1] = G.bbox(a.geometry);
      const t = sv('text', { x: x1, y: Math.max(y0 - 3 / s, fs), 'text-anchor': 'end', 'font-size': fs, class: 'pb-mark ' + m.map(([k]) => 'pb-mark-' + k).join(' '), 'data-key': a.key });
      t.textContent = m.map(([, b]) => b).join(' · ');
      g.appendChild(t);
    }
  }
  // Each saved polygon's class name above its box, in the class's colour (L shows or hides them).
  // Text ignores the pointer, so a label never stands between a click and a polygon. Labels are
  // placed in turn (PBGeometry.placeLabels): one that would cover a label already placed moves
  // down and a little right, with a leader line back to its box's corner.
  function renderLabels() {
    const g = $('.pb-l-labels'); if (!g) return; g.textContent = '';
    g.dataset.shown = S.showLabels ? '1' : '0';
    if (!S.showLabels || !S.image) return;
    const s = scale(), fs = 12 / s, indent = 10 / s;
    const items = [];
    for (const a of S.anns) {
      if (S.hidden.has(a.group) || !a.geometry.length) continue;
      const [x0, y0] = G.bbox(a.geometry), base = Math.max(y0 - 3 / s, fs);
      const t = sv('text', { x: x0, y: base, class: 'pb-ann-label' + (a.key === S.sel ? ' pb-selected' : ''), 'font-size': fs, fill: colorOf(a.class_id), 'data-key': a.key });
      t.textContent = annName(a);
      g.appendChild(t);
      items.push({ a, t, x0, y0, base });
    }
    // Boxes as drawn (the font's whole line, in photo pixels); an estimate while the stage is
    // out of sight, as nothing is laid out then.
    const boxes = items.map(({ t, x0, base }) => {
      // On screen, the outline drawn round the letters makes the label larger than its glyphs.
      let b = null, r = null; try { b = t.getBBox(); r = t.getBoundingClientRect(); } catch (e) { b = null; }
      if (!b || !b.width || !r.width) return { x: x0, y: base - 1.45 * fs, w: 0.65 * fs * t.textContent.length + fs, h: 1.9 * fs };
      const w = Math.max(b.width, r.width / s), h = Math.max(b.height, r.height / s);
      return { x: b.x + (b.width - w) / 2, y: b.y + (b.height - h) / 2, w, h };
    });
    const spots = G.placeLabels(boxes, 1 / s, indent);
    items.forEach(({ a, t, x0, y0, base }, i) => {
      const q = spots[i], b = boxes[i];
      if (!q.moved) return;
      t.setAttribute('x', x0 + q.x - b.x); t.setAttribute('y', base + q.y - b.y); t.classList.add('pb-label-moved');
      const line = sv('line', { x1: x0, y1: y0, x2: q.x, y2: q.y + b.h / 2, class: 'pb-label-leader', stroke: colorOf(a.class_id), 'data-key': a.key });
      g.insertBefore(line, g.firstChild);
    });
    g.dataset.scale = String(s);
  }
  // The classes on this photo, each with its colour and how many polygons (and pending
  // predictions) it has; a hidden group's classes are dimmed.
  function renderLegend() {
    const box = $('.pb-legend'); if (!box) return; box.textContent = '';
    const count = new Map();
    const add = (id, k) => { const e = count.get(id) || [0, 0]; e[k]++; count.set(id, e); };
    if (S.image) { for (const a of S.anns) add(a.class_id, 0); for (const p of app.pendingPreds()) add(p.class_id, 1); }
    box.hidden = !count.size;
    if (!count.size) return;
    const ids = [...count.keys()].sort((a, b) => app.GROUPS.indexOf(app.cls(a).group) - app.GROUPS.indexOf(app.cls(b).group) || a - b);
    for (const id of ids) {
      const c = app.cls(id), [n, np] = count.get(id);
      const row = el('div', { class: 'pb-legend-row' + (S.hidden.has(c.group) ? ' pb-dim' : ''), 'data-id': String(id) });
      const sw = el('span', { class: 'pb-swatch' }); sw.style.background = colorOf(id);
      row.appendChild(sw);
      row.appendChild(el('span', { class: 'pb-legend-name' }, c.display_name));
      row.appendChild(el('span', { class: 'pb-legend-n' }, (n ? String(n) : '') + (np ? `${n ? ' + ' : ''}${np} predicted` : '')));
      box.appendChild(row);
    }
  }
  // A rejected photo carries the reviewer's comment on the canvas itself, where the fix is made.
  function renderComment() {
    const box = $('.pb-canvas-comment'); if (!box) return;
    const im = S.image, text = im && im.status === 'rejected' && im.review_comment ? im.review_comment : '';
    box.hidden = !text;
    box.textContent = text ? "Rejected — reviewer's comment: " + text : '';
  }
  function renderPreds() {
    photoPalette();
    const g = $('.pb-l-preds'); g.textContent = '';
    const s = scale();
    for (const p of app.pendingPreds()) {
      if (S.hidden.has(p.group)) continue;
      const c = app.cls(p.class_id);
      g.appendChild(sv('path', { d: pathData(p.geometry), class: 'pb-pred' + (p.id === S.selPred ? ' pb-selected' : ''), 'data-pid': p.id, 'fill-rule': 'evenodd', stroke: colorOf(p.class_id) }));
      const [x0, y0] = G.bbox(p.geometry);
      const t = sv('text', { x: x0, y: y0 - 4 / s, class: 'pb-pred-label', 'font-size': 13 / s, 'data-pid': p.id });
      t.textContent = `${predName(p)} ${p.score.toFixed(2)}` + (sideConflict(p) ? ' · side?' : '');
      g.appendChild(t);
    }
    app.renderPredList(); renderLegend();
  }
  // The selected annotation: a wide transparent outline (clicking it inserts a vertex) and one
  // circle per vertex, numbered by data-p / data-r / data-i for input.js.
  function renderSel() {
    const g = $('.pb-l-sel'); g.textContent = '';
    const a = app.selAnn(); if (!a || S.hidden.has(a.group)) return;
    const s = scale(), r = 5 / s;
    g.appendChild(sv('path', { d: pathData(a.geometry), class: 'pb-edge-hit', 'stroke-width': 10 / s }));
    a.geometry.forEach((poly, pi) => G.rings(poly).forEach((ring, ri) => ring.forEach((q, i) => {
      const isSel = S.selV && S.selV[0] === pi && S.selV[1] === ri && S.selV[2] === i;
      g.appendChild(sv('circle', { cx: q[0], cy: q[1], r, class: 'pb-vertex' + (isSel ? ' pb-vsel' : ''), 'data-p': pi, 'data-r': ri, 'data-i': i }));
    })));
  }
  // The polygon being drawn (with a rubber band to the cursor), and the assist prompt and preview.
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
    if (A.preview && A.preview.length) g.appendChild(sv('path', { d: pathData(A.preview), class: 'pb-preview', 'fill-rule': 'evenodd' }));
    if (A.box) g.appendChild(sv('rect', { x: Math.min(A.box[0], A.box[2]), y: Math.min(A.box[1], A.box[3]), width: Math.abs(A.box[2] - A.box[0]), height: Math.abs(A.box[3] - A.box[1]), class: 'pb-box' }));
    A.points.forEach((q, i) => g.appendChild(sv('circle', { cx: q[0], cy: q[1], r: 5 / s, class: A.labels[i] ? 'pb-pos' : 'pb-neg' })));
    app.renderRejected(); // refused shapes and their reasons (edits.js), sized for this zoom
  }
  function updateAnnPath(a) {
    const p = root.querySelector(`.pb-ann[data-key="${a.key}"]`);
    if (p) p.setAttribute('d', pathData(a.geometry));
    const hit = root.querySelector('.pb-edge-hit');
    if (hit) hit.setAttribute('d', pathData(a.geometry));
  }
  // Pointer moves come faster than frames: repaint a drag at most once per frame, and only the
  // dragged path and handle (a whole-layer rebuild is too slow on dense polygons).
  let raf = 0;
  function scheduleDragPaint() {
    if (raf) return;
    raf = requestAnimationFrame(() => {
      raf = 0; S.stats.frames++;
      const a = app.selAnn(); if (!a) return;
      updateAnnPath(a);
      const D = S.drag;
      if (D && D.kind === 'vertex') { const c = root.querySelector(`.pb-vertex[data-p="${D.pi}"][data-r="${D.ri}"][data-i="${D.i}"]`); if (c) { const q = G.ringOf(a.geometry, D.pi, D.ri)[D.i]; c.setAttribute('cx', q[0]); c.setAttribute('cy', q[1]); } }
      else if (D && D.kind === 'move') renderSel();
    });
  }

  return { colorOf, sideConflict, partOf, predName, annName, marks, renderMarks, scale, fit, applyVB, renderAll, renderAnns, renderLabels, renderLegend, renderComment, renderPreds, renderSel, renderDraw, scheduleDragPaint };
}
