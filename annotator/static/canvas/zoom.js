// Zoom and sharp zoom. The stage shows a downscaled copy of the photo (about the screen's size,
// api.js); zoomed in past that copy's resolution, the visible rectangle is fetched at full
// resolution from GET /api/images/{id}/region and drawn over the copy (the .pb-region image,
// placed in image pixels, so it follows every pan and zoom). During a pan or wheel zoom,
// requests wait until the view has been still for DEBOUNCE_MS. Regions snap to a grid and to
// √2 steps of scale, so that small pans and zooms ask for the same regions again (cached here,
// in the browser's HTTP cache and on the server), and a region that already covers the view at
// enough resolution is kept.
function PBZoom(app) {
  const { S, $ } = app;
  const G = PBGeometry;
  const MAX_SCALE = 32; // 3200%
  const DEBOUNCE_MS = 120;
  const GRID = 256; // output pixels
  const MAX_OUT = 8e6; // output pixels per region; under the server's default limit
  const KEEP = 12; // region images kept as blob: URLs
  const dpr = () => window.devicePixelRatio || 1;
  S.region = null;
  try { S.showLabels = localStorage.getItem('pb.labels') !== '0'; } catch (e) { S.showLabels = true; }

  function stageBox() { return $('.pb-svg').getBoundingClientRect(); }
  // The part of the photo the stage shows, in image pixels: [x0, y0, x1, y1] (may pass the edges).
  function visibleRect() {
    const svg = $('.pb-svg'), m = svg.getScreenCTM(); if (!m) return null;
    const r = svg.getBoundingClientRect(), inv = m.inverse();
    const at = (x, y) => { const p = svg.createSVGPoint(); p.x = x; p.y = y; return p.matrixTransform(inv); };
    const a = at(r.left, r.top), b = at(r.right, r.bottom);
    return [a.x, a.y, b.x, b.y];
  }
  // 100% = one screen (CSS) pixel per photo pixel.
  function zoomPct() { return Math.round(app.scale() * 1000) / 10; }
  function fitScale() { const r = stageBox(); return Math.min(r.width / S.image.width, r.height / S.image.height); }
  // A button, a key or zoomTo is one step: its region is asked for at once. Wheel and pan
  // come as streams of events: their region waits until the view has been still a moment.
  let now = false;
  function setView(vb, stream) { S.vb = vb; S.stats.zoomAt = performance.now(); now = !stream; app.applyVB(); app.renderPreds(); }
  // Zoom by k (> 1: closer) keeping the image point pt (default: the view's centre) in place;
  // stream: one of many wheel events.
  function zoomBy(k, pt, stream) {
    if (!S.image) return;
    const s = app.scale(), target = Math.min(MAX_SCALE, Math.max(fitScale() / 4, s * k)), f = s / target;
    const p = pt || [S.vb.x + S.vb.w / 2, S.vb.y + S.vb.h / 2];
    setView({ x: p[0] - (p[0] - S.vb.x) * f, y: p[1] - (p[1] - S.vb.y) * f, w: S.vb.w * f, h: S.vb.h * f }, stream);
  }
  function zoomTo(pct, pt) { if (S.image) zoomBy(pct / 100 / app.scale(), pt); }
  // Frame the selected polygon (or pending prediction) with a margin around it.
  function zoomToSelected() {
    if (!S.image) return;
    const a = app.selAnn(), p = !a && S.selPred ? S.preds.find((q) => q.id === S.selPred) : null;
    const geom = a ? a.geometry : p ? p.geometry : null;
    if (!geom || !geom.length) { app.msg('Select a polygon first, then zoom to it (F).'); return; }
    const [x0, y0, x1, y1] = G.bbox(geom), pad = 0.25 * Math.max(x1 - x0, y1 - y0, 16);
    const r = stageBox(), s = Math.min(MAX_SCALE, r.width / (x1 - x0 + 2 * pad), r.height / (y1 - y0 + 2 * pad));
    const w = r.width / s, h = r.height / s;
    setView({ x: (x0 + x1) / 2 - w / 2, y: (y0 + y1) / 2 - h / 2, w, h });
  }
  function toggleLabels() {
    S.showLabels = !S.showLabels;
    try { localStorage.setItem('pb.labels', S.showLabels ? '1' : '0'); } catch (e) { /* private mode */ }
    const b = $('.pb-labels-btn'); if (b) b.classList.toggle('pb-active', S.showLabels);
    app.renderLabels();
  }

  // Called by applyVB after every pan and zoom.
  let timer = 0;
  function viewChanged() {
    if (!S.image) return;
    const z = $('.pb-zoom-level'); if (z) z.textContent = zoomPct() + '%';
    const lab = $('.pb-l-labels');
    if (lab && S.showLabels && Math.abs(+lab.dataset.scale - app.scale()) > 1e-3 * app.scale()) { app.renderLabels(); app.renderMarks(); }
    if (S.region && S.region.id !== S.image.id) hideRegion();
    clearTimeout(timer); timer = setTimeout(loadRegion, now ? 0 : DEBOUNCE_MS);
    now = false;
  }
  function hideRegion() { const r = $('.pb-region'); if (r) { r.removeAttribute('href'); r.setAttribute('width', 0); } S.region = null; }

  // The copy's width in pixels, read from its decoded image once per photo.
  let copy = { href: null, width: 0 };
  async function copyWidth() {
    const href = $('.pb-img').getAttribute('href'); if (!href) return 0;
    if (copy.href !== href) {
      const im = new Image(); im.src = href;
      try { await im.decode(); } catch (e) { return 0; }
      copy = { href, width: im.naturalWidth };
    }
    return copy.width;
  }
  const blobs = new Map(); // region URL -> promise of a blob: URL
  function regionBlob(url) {
    if (!blobs.has(url)) {
      const p = fetch(url, { headers: { Authorization: 'Bearer ' + S.session.token } })
        .then((r) => { if (!r.ok) throw new Error(`region: HTTP ${r.status}`); return r.blob(); })
        .then((b) => URL.createObjectURL(b));
      p.catch(() => blobs.delete(url));
      blobs.set(url, p);
      while (blobs.size > KEEP) {
        const [k, old] = blobs.entries().next().value; blobs.delete(k);
        old.then((u) => setTimeout(() => URL.revokeObjectURL(u), 1000)).catch(() => {});
      }
    }
    return blobs.get(url);
  }
  // The region the view needs: snapped to the grid, inside the photo; null when the copy is
  // sharp enough.
  function wantedRegion(copyScale) {
    const need = app.scale() * dpr(); // device pixels per photo pixel
    // A copy at full size (a small photo) is the original: nothing sharper exists.
    if (copyScale >= 0.999 || need <= copyScale * 1.05) return null;
    const v = visibleRect(); if (!v) return null;
    const W = S.image.width, H = S.image.height;
    let sc = Math.min(1, Math.pow(2, Math.ceil(2 * Math.log2(need)) / 2));
    for (;;) {
      const g = GRID / sc;
      const x0 = Math.max(0, Math.floor(v[0] / g) * g), y0 = Math.max(0, Math.floor(v[1] / g) * g);
      const x1 = Math.min(W, Math.ceil(v[2] / g) * g), y1 = Math.min(H, Math.ceil(v[3] / g) * g);
      const r = { x: Math.round(x0), y: Math.round(y0), scale: +sc.toFixed(4) };
      r.w = Math.round(x1) - r.x; r.h = Math.round(y1) - r.y;
      if (r.w < 1 || r.h < 1) return null;
      if (r.w * r.h * sc * sc <= MAX_OUT || sc <= copyScale) return r;
      sc /= Math.SQRT2; // a very large screen: less than full sharpness, still sharper than the copy
    }
  }
  let seq = 0;
  async function loadRegion() {
    if (!S.image || !$('.pb-region')) return;
    const id = S.image.id, my = ++seq;
    // The copy of this photo is not on screen yet: look again shortly.
    if ($('.pb-app').dataset.drawn !== String(id)) { timer = setTimeout(loadRegion, DEBOUNCE_MS); return; }
    const cw = await copyWidth();
    if (my !== seq || !S.image || S.image.id !== id || !cw) return;
    const r = wantedRegion(cw / S.image.width);
    if (!r) { hideRegion(); return; }
    const cur = S.region;
    if (cur && cur.id === id && cur.scale >= r.scale && cur.x <= r.x && cur.y <= r.y && cur.x + cur.w >= r.x + r.w && cur.y + cur.h >= r.y + r.h) return;
    const url = `/api/images/${id}/region?x=${r.x}&y=${r.y}&w=${r.w}&h=${r.h}&scale=${r.scale}`;
    S.stats.regionRequests = (S.stats.regionRequests || 0) + 1;
    try {
      const u = await regionBlob(url);
      const im = new Image(); im.src = u; await im.decode();
      if (my !== seq || !S.image || S.image.id !== id) return;
      const el = $('.pb-region');
      for (const [k, v] of [['x', r.x], ['y', r.y], ['width', r.w], ['height', r.h], ['href', u]]) el.setAttribute(k, v);
      el.dataset.imageId = String(id);
      S.region = { id, ...r };
      requestAnimationFrame(() => {
        S.stats.regions = (S.stats.regions || 0) + 1;
        S.stats.sharpAt = performance.now(); S.stats.sharpMs = S.stats.sharpAt - (S.stats.zoomAt || S.stats.sharpAt);
      });
    } catch (e) { app.msg('Could not load the sharp view: ' + e.message, true); }
  }

  return { zoomBy, zoomTo, zoomPct, zoomToSelected, toggleLabels, viewChanged };
}
