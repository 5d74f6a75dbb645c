// Input: the shell's buttons and fields, pointer gestures on the canvas, and the keyboard
// shortcuts (annotator/shortcuts.py lists them for the help table). Handlers decide what was
// asked and call actions; the drags (pan, vertex, move, assist box) live in S.drag.
function PBInput(app) {
  const { S, root, $ } = app;
  const G = PBGeometry;

  // Pointer position in image pixels, rounded to 0.01 px: the viewBox is in image pixels, so the
  // inverse screen matrix maps any zoom and device pixel ratio back exactly.
  function toImg(e) {
    const svg = $('.pb-svg'), pt = svg.createSVGPoint();
    pt.x = e.clientX; pt.y = e.clientY;
    const q = pt.matrixTransform(svg.getScreenCTM().inverse());
    return [Math.round(q.x * 100) / 100, Math.round(q.y * 100) / 100];
  }

  // Called once per shell (buildShell in panels.js).
  function bindShell() { bindControls(); bindCanvas(); }
  function bindControls() {
    const modeSel = $('.pb-mode');
    modeSel.addEventListener('change', () => app.setMode(modeSel.value));
    $('.pb-prev').addEventListener('click', () => app.step('previous'));
    $('.pb-next').addEventListener('click', () => app.step('next'));
    $('.pb-rejections').addEventListener('click', app.openWaiting);
    for (const [k, sel] of app.FILTERS) {
      const s = $(sel);
      // Leaving the photo asks first (navigate.js leaveOk); staying puts the filter back.
      s.addEventListener('change', async () => { if (!(await app.leaveOk())) { s.value = S.filters[k] || ''; return; } S.filters[k] = s.value; app.persist(); app.step('next', true, true); });
    }
    root.querySelectorAll('[data-tool]').forEach((b) => b.addEventListener('click', () => app.setTool(b.dataset.tool)));
    $('.pb-undo').addEventListener('click', app.undo);
    $('.pb-redo').addEventListener('click', app.redo);
    $('.pb-zoom-in').addEventListener('click', () => app.zoomBy(1.25));
    $('.pb-zoom-out').addEventListener('click', () => app.zoomBy(0.8));
    $('.pb-zoom-fit').addEventListener('click', () => { if (S.image) app.fit(); });
    $('.pb-zoom-sel').addEventListener('click', app.zoomToSelected);
    $('.pb-labels-btn').addEventListener('click', app.toggleLabels);
    $('.pb-labels-btn').classList.toggle('pb-active', S.showLabels);
    $('.pb-helpbtn').addEventListener('click', () => { $('.pb-help').hidden = !$('.pb-help').hidden; });
    $('.pb-class-search').addEventListener('input', app.renderClassList);
    $('.pb-class-search').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { const b = root.querySelector('.pb-classlist button'); if (b) { app.pickClass(+b.dataset.id); e.target.value = ''; app.renderClassList(); e.target.blur(); } }
      if (e.key === 'Escape') { e.target.value = ''; app.renderClassList(); e.target.blur(); }
    });
    const tol = $('.pb-tol');
    tol.addEventListener('input', () => { S.tolerance = +tol.value; $('.pb-tol-v').textContent = tol.value; if (S.assist.points.length || S.assist.box) app.requestAssist(); });
    $('.pb-assist-accept').addEventListener('click', app.acceptAssist);
    $('.pb-assist-clear').addEventListener('click', () => app.clearAssist());
    $('.pb-accept-all').addEventListener('click', app.acceptAllAbove);
    root.querySelectorAll('.pb-groups [data-group]').forEach((cb) => cb.addEventListener('change', () => app.toggleGroup(cb.dataset.group, !cb.checked)));
    $('.pb-conflict-load').addEventListener('click', () => { S.conflict = null; $('.pb-conflict').hidden = true; app.openImage(S.image.id); });
    $('.pb-conflict-keep').addEventListener('click', () => { S.image.version = S.conflict.current_version; S.conflict = null; $('.pb-conflict').hidden = true; app.save(); });
  }

  // Thresholds are in screen pixels (times app.scale()), so they feel the same at any zoom.
  const CLOSE_PX = 9, EDGE_PX = 8, MOVE_PX = 3, BOX_PX = 4;
  function bindCanvas() {
    const svg = $('.pb-svg');
    svg.addEventListener('pointerdown', (e) => {
      if (!S.image) return;
      root.querySelector('.pb-app').focus({ preventScroll: true });
      const pt = toImg(e), t = e.target;
      if (e.button === 1 || S.space) { S.drag = { kind: 'pan', x: e.clientX, y: e.clientY, vb: { ...S.vb } }; svg.setPointerCapture(e.pointerId); e.preventDefault(); return; }
      if (e.button !== 0) return;
      if (S.draw) {
        // A click near the first vertex closes the ring.
        const P = S.draw.points;
        if (P.length >= 3 && G.distance(pt, P[0]) * app.scale() < CLOSE_PX) app.finishDrawing();
        else { P.push(pt); app.renderDraw(); }
        return;
      }
      if (S.tool === 'assist') { S.drag = { kind: 'assist', start: pt, x: e.clientX, y: e.clientY, neg: e.shiftKey }; svg.setPointerCapture(e.pointerId); return; }
      const a = app.selAnn();
      if (t.classList.contains('pb-vertex') && a) {
        const pi = +t.dataset.p, ri = +t.dataset.r, i = +t.dataset.i;
        if (e.altKey) { app.deleteVertex(pi, ri, i); return; }
        S.selV = [pi, ri, i];
        S.drag = { kind: 'vertex', pi, ri, i, before: app.snap(), moved: false };
        svg.setPointerCapture(e.pointerId); app.renderSel(); return;
      }
      // On the selection's outline: insert a vertex there and drag it at once.
      if (t.classList.contains('pb-edge-hit') && a) {
        const ne = G.nearestEdge(a.geometry, pt);
        if (ne && ne.d * app.scale() < EDGE_PX) {
          const before = app.snap();
          G.ringOf(a.geometry, ne.pi, ne.ri).splice(ne.i, 0, ne.q);
          S.selV = [ne.pi, ne.ri, ne.i];
          S.drag = { kind: 'vertex', pi: ne.pi, ri: ne.ri, i: ne.i, before, moved: true };
          svg.setPointerCapture(e.pointerId); app.renderAnns(); app.renderSel(); return;
        }
      }
      // Which shape the click picks is decided by geometry, not by which SVG element lies on
      // top: own polygons before predictions, and a second click on the selected shape (one
      // that does not drag it) goes on to the next shape under the pointer.
      S.lastClick = pt;
      if (t.classList.contains('pb-pred-label')) { app.select('p:' + t.dataset.pid); return; }
      const hits = app.shapesAt(pt), cur = app.selRef();
      if (a && t.classList.contains('pb-edge-hit') && !hits.includes(cur)) hits.unshift(cur);
      if (!hits.length) { app.select(null); return; }
      const again = cur && hits.includes(cur);
      if (again && cur.startsWith('p:')) { app.select(G.cycle(hits, cur, 1)); return; }
      if (!again) app.select(hits[0]);
      if (!app.selAnn()) return;
      S.drag = { kind: 'move', start: pt, orig: app.clone(app.selAnn().geometry), before: app.snap(), moved: false, cycle: again && hits.length > 1 ? hits : null };
      svg.setPointerCapture(e.pointerId);
    });
    svg.addEventListener('pointermove', (e) => {
      const D = S.drag;
      if (!D) { if (S.draw && S.draw.points.length) { S.draw.cursor = toImg(e); app.renderDraw(); } return; }
      if (D.kind === 'pan') { const s = app.scale(); S.vb.x = D.vb.x - (e.clientX - D.x) / s; S.vb.y = D.vb.y - (e.clientY - D.y) / s; app.applyVB(); return; }
      const pt = toImg(e), a = app.selAnn();
      if (D.kind === 'assist') { if (Math.hypot(e.clientX - D.x, e.clientY - D.y) > BOX_PX) { S.assist.box = [D.start[0], D.start[1], pt[0], pt[1]]; D.box = true; app.renderDraw(); } return; }
      if (!a) return;
      if (D.kind === 'vertex') { G.ringOf(a.geometry, D.pi, D.ri)[D.i] = pt; D.moved = true; }
      else if (D.kind === 'move') {
        const dx = pt[0] - D.start[0], dy = pt[1] - D.start[1];
        // A click that wobbles a little is a selection, not a move.
        if (!D.moved && Math.hypot(dx, dy) * app.scale() < MOVE_PX) return;
        D.moved = true;
        a.geometry = G.translated(D.orig, dx, dy);
      }
      app.scheduleDragPaint();
    });
    // A drag becomes one undo step and one save when it ends, not one per pointer move.
    const end = (e) => {
      const D = S.drag; if (!D) return;
      S.drag = null;
      try { svg.releasePointerCapture(e.pointerId); } catch (err) { /* already released */ }
      if (D.kind === 'assist') {
        if (D.box) S.assist.box = G.normalBox(S.assist.box);
        else { S.assist.points.push(D.start); S.assist.labels.push(D.neg ? 0 : 1); }
        app.renderDraw(); app.requestAssist(); return;
      }
      if (D.kind === 'move' && !D.moved && D.cycle) { app.select(G.cycle(D.cycle, app.selRef(), 1)); return; }
      if ((D.kind === 'vertex' || D.kind === 'move') && D.moved) {
        S.stats.lastRelease = performance.now();
        app.pushUndo(D.before); app.renderAnns(); app.renderSel(); app.renderAttrs(); app.save();
      }
    };
    svg.addEventListener('pointerup', end);
    svg.addEventListener('pointercancel', end);
    // Zoom about the pointer.
    svg.addEventListener('wheel', (e) => {
      if (!S.image) return; e.preventDefault();
      app.zoomBy(e.deltaY < 0 ? 1.25 : 0.8, toImg(e), true);
    }, { passive: false });
    // onKey is one function per widget, so binding it again for a new shell adds no second listener.
    document.addEventListener('keydown', onKey);
    document.addEventListener('keyup', (e) => { if (e.key === ' ') S.space = false; });
  }

  function onKey(e) {
    // The listener is on the document: act only while this widget is shown and signed in, and
    // leave typing in other fields alone.
    if (!root.isConnected || root.offsetParent === null || !S.session) return;
    const tag = (e.target && e.target.tagName) || '';
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag) && !root.contains(e.target)) return;
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag) && e.key !== 'Escape') return;
    const k = e.key, ctrl = e.ctrlKey || e.metaKey;
    let done = true;
    if (ctrl && (k === 'z' || k === 'Z')) { if (e.shiftKey) app.redo(); else app.undo(); }
    else if (ctrl && (k === 'y' || k === 'Y')) app.redo();
    else if (k === 'Tab' && !ctrl && !e.altKey) { if (S.image && root.contains(e.target) && !S.draw) app.cycleSelection(e.shiftKey ? -1 : 1); else done = false; }
    else if (ctrl && k === 'Enter') app.setStatus(S.mode === 'review' ? 'reviewed' : 'labelled');
    else if (k === 'Enter') { if (S.draw) app.finishDrawing(); else if (S.assist.preview) app.acceptAssist(); else done = false; }
    else if (k === 'Escape') { if (S.draw && S.draw.points.length) { S.draw.points = []; app.renderDraw(); } else if (S.assist.points.length || S.assist.box) app.clearAssist(); else { S.sel = null; S.selV = null; if (S.draw) app.setTool('select'); app.renderAll(); app.renderAttrs(); } $('.pb-help').hidden = true; }
    else if (k === 'Delete' || (k === 'Backspace' && !S.draw)) app.deleteSelected();
    else if (k === 'Backspace' && S.draw) { S.draw.points.pop(); app.renderDraw(); }
    else if (e.shiftKey && /^Digit[123]$/.test(e.code)) { const g = app.GROUPS[+e.code.slice(5) - 1]; app.toggleGroup(g, !S.hidden.has(g)); }
    else if (ctrl || e.altKey) done = false;
    else if (k === 'v' || k === 'V') app.setTool('select');
    else if (k === 'n' || k === 'N') app.setTool('draw');
    else if (k === 'h' || k === 'H') app.setTool('hole');
    else if (k === 'm' || k === 'M') app.setTool('part');
    else if (k === 'a' || k === 'A') app.setTool('assist');
    else if (k === 'Y') app.acceptAllAbove();
    else if (k === 'y') { if (S.selPred) app.acceptPred(S.selPred); }
    else if (k === 'x' || k === 'X') { if (S.selPred) app.rejectPred(S.selPred); }
    else if (k === 'ArrowRight' || k === 'd' || k === 'D') app.step('next');
    else if (k === 'ArrowLeft' || k === 's' || k === 'S') app.step('previous');
    else if (/^[1-9]$/.test(k)) app.recentClass(+k);
    else if (k === '/') $('.pb-class-search').focus();
    else if (k === '0') { if (S.image) app.fit(); }
    else if (k === '+' || k === '=') app.zoomBy(1.25);
    else if (k === '-' || k === '_') app.zoomBy(0.8);
    else if (k === 'f' || k === 'F') app.zoomToSelected();
    else if (k === 'l' || k === 'L') app.toggleLabels();
    else if (k === '?') $('.pb-help').hidden = !$('.pb-help').hidden;
    else if (k === ' ') S.space = true;
    else done = false;
    if (done) e.preventDefault();
  }

  return { bindShell };
}
