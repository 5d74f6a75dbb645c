// Moving through photos: the mode and filters choose a queue on the server, step() asks it for
// the next or previous photo, and showDetail() opens one. The workspace (mode, filters, photo,
// classes) is remembered per user in localStorage, so a reload comes back to the same place.
function PBNavigate(app) {
  const { S, root, $, msg } = app;

  function persist() {
    try { localStorage.setItem('pb.workspace', JSON.stringify({ mode: S.mode, filters: S.filters, imageId: S.image && S.image.id, currentClass: S.currentClass, recent: S.recent, hidden: [...S.hidden], user: S.session.username })); } catch (e) { /* private mode */ }
  }
  // Each mode is a preset of filters; the user may refine them in the toolbar afterwards.
  function setMode(m) {
    S.mode = m; S.queue = null;
    S.filters = m === 'review' ? { status: 'labelled' } : m === 'fraud' ? { flagged: 'true', status: 'new,in_progress,labelled,reviewed,rejected' } : {};
    for (const [k, sel] of app.FILTERS) $(sel).value = S.filters[k] || '';
    persist(); step('next', true);
  }
  function queryString(extra) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...S.filters, ...extra })) if (v !== '' && v !== null && v !== undefined) p.set(k, v);
    return p.toString();
  }
  // fromStart: the queue's first photo, not the one after the open photo.
  async function step(dir, fromStart) {
    if (S.saving) await app.waitSaved();
    const t0 = performance.now();
    try {
      const res = await app.api('GET', `/queue/${dir}?` + queryString(fromStart || !S.image ? {} : { after_id: S.image.id }));
      S.queue = res;
      if (!res.image) { msg(dir === 'next' ? 'The queue is empty for these filters.' : 'This is the first photo.'); app.renderProgress(); return; }
      await showDetail(res.image, t0);
    } catch (e) { msg('Could not load the queue: ' + e.message, true); }
  }
  async function openImage(id) {
    const t0 = performance.now();
    try { await showDetail(await app.api('GET', `/images/${id}`), t0); } catch (e) { msg('Could not open photo ' + id + ': ' + e.message, true); if (e.status === 404) step('next', true); }
  }
  // Annotations and predictions show at once; the photo follows when its blob is decoded. The
  // promise resolves when the photo is on screen (or another photo was opened meanwhile), which
  // .pb-app[data-drawn] tells tests and benchmarks too.
  function showDetail(d, t0) {
    S.image = { id: d.id, width: d.width, height: d.height, file_name: d.file_name, status: d.status, version: d.version, review_comment: d.review_comment, split: d.split };
    const hist = app.loadHistory(d.id, d.version);
    if (hist) S.uid = Math.max(S.uid, hist.uid);
    S.anns = d.annotations.map((a) => ({ ...a, key: S.uid++ }));
    S.serverIds = new Set(d.annotations.map((a) => a.id));
    S.preds = d.predictions;
    S.sel = null; S.selV = null; S.selPred = null; S.draw = null; S.conflict = null;
    S.undo = hist ? hist.undo : []; S.redo = hist ? hist.redo : [];
    $('.pb-conflict').hidden = true;
    app.clearAssist(true);
    const svg = $('.pb-svg'), img = $('.pb-img');
    img.setAttribute('width', d.width); img.setAttribute('height', d.height);
    app.fit();
    $('.pb-empty').hidden = true;
    persist();
    app.renderAll(); app.renderSide(); app.renderProgress();
    // Start the assist embedding now: it takes seconds, and the user has not asked yet.
    if (app.can('assist')) app.api('POST', `/images/${d.id}/assist/prepare`).catch(() => {});
    svg.dataset.imageId = String(d.id);
    return app.imageBlob(d.id).then((url) => new Promise((resolve) => {
      const pre = new Image();
      pre.onload = pre.onerror = () => {
        if (!S.image || S.image.id !== d.id) return resolve();
        img.setAttribute('href', url);
        requestAnimationFrame(() => {
          if (!S.image || S.image.id !== d.id) return resolve();
          S.stats.drawn = d.id; S.stats.drawnAt = performance.now(); S.stats.openMs = S.stats.drawnAt - (t0 || S.stats.drawnAt);
          root.querySelector('.pb-app').dataset.drawn = String(d.id);
          msg(`Photo ${d.id} (${d.file_name}) — ${S.anns.length} annotations, ${app.pendingPreds().length} pending predictions`);
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
      const res = await app.api('GET', '/queue/next?' + queryString({ after_id: S.image.id }));
      if (res.image) app.imageBlob(res.image.id).then((u) => { const p = new Image(); p.src = u; }).catch(() => {});
    } catch (e) { /* prefetch is best effort */ }
  }

  return { persist, setMode, step, openImage };
}
