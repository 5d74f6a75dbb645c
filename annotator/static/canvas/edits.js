// Changes to the photo's annotations: undo and redo, autosave, and what is not saved yet. Every
// change goes through change(fn), which snapshots S.anns before fn, then repaints and saves.
// Saves are PUT with the photo's annotation version; the server answers 409 when someone else
// saved first, and nothing is saved again until the user picks a version in the conflict box.
//
// A save keeps going past a bad instance: each annotation is checked here by the server's own
// rules (PBGeometry.check), the set is sent with keep_going, and the server saves the valid ones
// and names the others. Those stay on screen, outlined with the reason beside them, until they
// are fixed or deleted; a stored one keeps its stored version meanwhile. Until the photo is
// saved clean, its edits are also kept in localStorage (per user and photo), and offered back
// when the photo is opened again (navigate.js).
function PBEdits(app) {
  const { S } = app;
  const G = PBGeometry;
  const MAX_UNDO = 100;
  // Undo entries are JSON snapshots of S.anns, without the render-only fields.
  const strip = (a) => ({ key: a.key, id: a.id, class_id: a.class_id, group: a.group, geometry: a.geometry, attributes: a.attributes || {}, source: a.source, prediction_id: a.prediction_id });
  const snap = () => JSON.stringify(S.anns.map(strip));
  // S.changeSeq counts edits; S.savedSeq is the count the last clean save carried.
  function pushUndo(before) { S.undo.push(before); if (S.undo.length > MAX_UNDO) S.undo.shift(); S.redo = []; S.changeSeq++; }
  function change(fn) {
    // Read-only: someone else holds the photo's lease (navigate.js showHolder).
    if (S.image && S.image.readOnly) { app.msg(`${S.image.heldBy || 'Someone'} is working on this photo; it is read-only.`, true); return; }
    const before = snap(); fn(); pushUndo(before); afterChange();
  }
  function afterChange() { S.changeSeq++; app.renderAll(); app.renderAttrs(); app.renderPredList(); save(); }
  function undo() { if (!S.undo.length) return; S.redo.push(snap()); S.anns = JSON.parse(S.undo.pop()); if (!app.selAnn()) S.sel = null; S.selV = null; afterChange(); app.msg(`Undone (${S.undo.length} more).`); }
  function redo() { if (!S.redo.length) return; S.undo.push(snap()); S.anns = JSON.parse(S.redo.pop()); if (!app.selAnn()) S.sel = null; S.selV = null; afterChange(); app.msg('Redone.'); }

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

  // ---- unsaved edits kept in the browser ----
  // One entry per user and photo; the origin (one server, one project) scopes it to the
  // project, and the photo's file name and size are checked again on restore.
  const localKey = (imageId) => `pb.unsaved:${S.session.username}:${imageId}`;
  function keepLocal() {
    if (!S.image || !S.session) return;
    try {
      localStorage.setItem(localKey(S.image.id), JSON.stringify({
        image_id: S.image.id, file_name: S.image.file_name, width: S.image.width, height: S.image.height,
        version: S.image.version, at: Date.now(), anns: S.anns.map(strip), rejected: [...S.rejected],
      }));
    } catch (e) { /* storage full or private mode: the edits live in this tab only */ }
  }
  function dropLocal(imageId) { try { localStorage.removeItem(localKey(imageId)); } catch (e) { /* private mode */ } }
  function readLocal(imageId) {
    try { return JSON.parse(localStorage.getItem(localKey(imageId)) || 'null'); } catch (e) { return null; }
  }
  // Every photo whose edits this browser keeps for the signed-in user, newest first.
  function keptPhotos() {
    const prefix = `pb.unsaved:${S.session.username}:`, out = [];
    try {
      for (let i = 0; i < localStorage.length; i++) {
        const k = localStorage.key(i);
        if (!k || !k.startsWith(prefix)) continue;
        const kept = readLocal(Number(k.slice(prefix.length)));
        if (kept && Number.isInteger(kept.image_id)) out.push(kept);
      }
    } catch (e) { /* private mode: nothing kept */ }
    return out.sort((a, b) => b.at - a.at);
  }

  // What would be lost by leaving the photo now, as a sentence, or null when nothing would.
  function unsavedWork() {
    if (!S.image) return null;
    const bad = S.rejected.size;
    if (S.conflict) return `Photo ${S.image.id} has a save conflict that is not resolved.`;
    if (bad) return `Photo ${S.image.id}: ${bad} shape${bad > 1 ? 's were' : ' was'} not saved (${[...S.rejected.values()][0]}).`;
    if (S.saveError) return `Photo ${S.image.id} is not saved: ${S.saveError}`;
    if (S.saving || S.dirty || S.changeSeq !== S.savedSeq) return `Photo ${S.image.id} has edits that are not saved yet.`;
    return null;
  }
  // The save label in the toolbar, for the open photo only.
  function showSaveState(text) {
    const l = app.$('.pb-save'); if (!l) return;
    const bad = S.rejected.size;
    l.textContent = text || (S.conflict ? 'CONFLICT' : S.saveError ? 'NOT SAVED' : bad ? `${bad} NOT SAVED · v${S.image.version}` : `saved · v${S.image.version}`);
    l.classList.toggle('pb-bad', !text && !!(S.conflict || S.saveError || bad));
  }

  // Each annotation's problem by the server's rules, keyed by its local key.
  function localProblems() {
    const out = new Map();
    for (const a of S.anns) { const r = G.check(a.geometry, S.image.width, S.image.height, S.maxVertices); if (r) out.set(a.key, r); }
    return out;
  }

  // The refused shapes: a red dashed outline and the reason beside it, above everything else.
  // While drawing, a refused Enter shows its reason by the drawn points (S.drawError).
  function renderRejected() {
    const svg = app.$('.pb-svg'); if (!svg) return;
    let g = svg.querySelector('.pb-l-rejected');
    if (!g) { g = app.sv('g', { class: 'pb-l-rejected' }); svg.appendChild(g); } else if (g !== svg.lastElementChild) svg.appendChild(g);
    g.textContent = '';
    if (!S.image) return;
    const s = app.scale();
    // Outlines let clicks through to the shape and its handles; a click on a reason selects
    // its shape (to fix its vertices, or Delete), even one too thin to hit.
    const label = (x, y, text, key) => {
      // Kept inside the view: a label that would run off the right edge ends at its point.
      const right = S.vb ? S.vb.x + S.vb.w : Infinity, wide = text.length * 7.5 / s;
      const end = x + wide > right && x - wide > (S.vb ? S.vb.x : -Infinity);
      if (end) x -= 24 / s;
      const t = app.sv('text', { x, y, 'text-anchor': end ? 'end' : 'start', class: 'pb-rejected-reason', 'font-size': 13 / s, fill: '#b00020', stroke: '#fff', 'stroke-width': 3 / s, 'paint-order': 'stroke', 'font-weight': 600, 'data-key': key, style: key === '' ? 'pointer-events:none' : 'cursor:pointer' });
      t.textContent = text; g.appendChild(t);
      if (key !== '') t.addEventListener('pointerdown', (e) => { if (e.button !== 0 || S.draw) return; e.stopPropagation(); S.sel = key; S.selV = null; S.selPred = null; app.renderAll(); app.renderAttrs(); });
    };
    for (const a of S.anns) {
      const why = S.rejected.get(a.key);
      if (!why || S.hidden.has(a.group)) continue;
      let d = '';
      for (const p of a.geometry || []) for (const ring of G.rings(p)) if (ring && ring.length) d += 'M' + ring.map((q) => q[0] + ' ' + q[1]).join('L') + 'Z';
      g.appendChild(app.sv('path', { d, class: 'pb-rejected', 'data-key': a.key, fill: 'none', stroke: '#b00020', 'stroke-width': 3 / s, 'stroke-dasharray': `${6 / s} ${4 / s}`, style: 'pointer-events:none' }));
      const pts = (a.geometry || []).flatMap((p) => p.exterior || []);
      const [x0, y0, , y1] = pts.length ? G.bbox(a.geometry) : [0, 0, 0, 0];
      // A shape with no area may be a single point: ring it so it can be found and deleted.
      g.appendChild(app.sv('circle', { cx: x0, cy: y0, r: 9 / s, class: 'pb-rejected-mark', fill: 'none', stroke: '#b00020', 'stroke-width': 2 / s, style: 'pointer-events:none' }));
      // Below the shape: the class label sits above it (render.js).
      label(x0, y1 + 22 / s, `Not saved: ${why} — fix or delete it`, a.key);
    }
    const D = S.drawError;
    if (D && S.draw && S.draw.points.length === D.n) label(D.at[0] + 12 / s, D.at[1] - 6 / s, D.reason, '');
  }

  function waitSaved() { return new Promise((res) => { const t = setInterval(() => { if (!S.saving) { clearInterval(t); res(); } }, 10); }); }
  // One save in flight at a time: a change made meanwhile marks S.dirty and is sent after it.
  async function save() {
    if (!S.image || S.conflict || S.image.readOnly) return;
    if (S.saving) { S.dirty = true; return; }
    S.saving = true; S.dirty = false;
    const imageId = S.image.id, seq = S.changeSeq;
    if (seq !== S.savedSeq) keepLocal();
    // Refused shapes are known before the answer: show them at once.
    const local = localProblems();
    S.rejected = new Map(local);
    renderRejected();
    // Annotations new since the last save go without an id; the server's answer gives each new
    // one's id by its client_id, the local key.
    const body = {
      version: S.image.version, keep_going: true,
      annotations: S.anns.map((a) => ({ id: a.id != null && S.serverIds.has(a.id) ? a.id : null, client_id: a.key, class_id: a.class_id, geometry: a.geometry, attributes: a.attributes || {}, source: a.source || 'manual', prediction_id: a.prediction_id ?? null })),
    };
    showSaveState('saving…');
    try {
      const res = await app.api('PUT', `/images/${imageId}/annotations`, body);
      if (!S.image || S.image.id !== imageId) return;
      const byKey = new Map(S.anns.map((a) => [a.key, a]));
      for (const c of res.created || []) { const a = byKey.get(c.client_id); if (a) a.id = c.id; }
      S.rejected = new Map(local);
      for (const r of res.rejected || []) if (byKey.has(r.client_id) && !local.has(r.client_id)) S.rejected.set(r.client_id, r.reason.replace(/^annotation \d+: /, ''));
      S.serverIds = new Set(res.annotations.map((a) => a.id));
      // Take the stored geometry (rounded, a crossing outline split) unless edited meanwhile.
      if (!S.dirty && !S.drag && S.changeSeq === seq) {
        const stored = new Map(res.annotations.map((a) => [a.id, a.geometry]));
        for (const a of S.anns) if (a.id != null && !S.rejected.has(a.key) && stored.has(a.id) && JSON.stringify(stored.get(a.id)) !== JSON.stringify(a.geometry)) a.geometry = stored.get(a.id);
      }
      S.image.version = res.version; S.image.status = res.status; S.preds = res.predictions;
      S.saveError = null; S.savedSeq = seq;
      S.stats.saves++; S.stats.lastSaved = performance.now();
      saveHistory();
      if (S.rejected.size || S.changeSeq !== seq) keepLocal(); else dropLocal(imageId);
      showSaveState();
      app.renderAll(); renderRejected(); app.renderWorkflow();
      if (S.rejected.size) app.msg(`Saved the rest; ${S.rejected.size} shape${S.rejected.size > 1 ? 's are' : ' is'} not saved (outlined in red): ${[...S.rejected.values()][0]}. Fix or delete it.`, true);
    } catch (e) {
      if (!S.image || S.image.id !== imageId) return;
      if (e.status === 409) { S.conflict = e.data.detail; app.showConflict(S.conflict); }
      else { S.saveError = e.message; showSaveState(); app.msg('Save failed: ' + e.message, true); }
      keepLocal();
    } finally {
      S.saving = false;
      if (S.dirty && !S.conflict && S.image && S.image.id === imageId) save();
      else S.dirty = false;
    }
  }

  return { snap, pushUndo, change, undo, redo, loadHistory, waitSaved, save, keepLocal, dropLocal, readLocal, keptPhotos, unsavedWork, showSaveState, renderRejected };
}
