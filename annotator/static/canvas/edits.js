// Changes to the photo's annotations: undo and redo, and autosave. Every change goes through
// change(fn), which snapshots S.anns before fn, then repaints and saves. Saves are PUT with the
// photo's annotation version; the server answers 409 when someone else saved first, and nothing
// is saved again until the user picks a version in the conflict box.
function PBEdits(app) {
  const { S } = app;
  const MAX_UNDO = 100;
  // Undo entries are JSON snapshots of S.anns, without the render-only fields.
  const strip = (a) => ({ key: a.key, id: a.id, class_id: a.class_id, group: a.group, geometry: a.geometry, attributes: a.attributes || {}, source: a.source, prediction_id: a.prediction_id });
  const snap = () => JSON.stringify(S.anns.map(strip));
  function pushUndo(before) { S.undo.push(before); if (S.undo.length > MAX_UNDO) S.undo.shift(); S.redo = []; }
  function change(fn) { const before = snap(); fn(); pushUndo(before); afterChange(); }
  function afterChange() { app.renderAll(); app.renderAttrs(); app.renderPredList(); save(); }
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

  function waitSaved() { return new Promise((res) => { const t = setInterval(() => { if (!S.saving) { clearInterval(t); res(); } }, 10); }); }
  // One save in flight at a time: a change made meanwhile marks S.dirty and is sent after it.
  async function save() {
    if (!S.image || S.conflict) return;
    if (S.saving) { S.dirty = true; return; }
    S.saving = true; S.dirty = false;
    const imageId = S.image.id;
    // Annotations new since the last save go without an id; the server's answer lists the ids it
    // gave them, in order, which are matched back by their local key.
    const sent = S.anns.map((a) => ({ key: a.key, id: a.id != null && S.serverIds.has(a.id) ? a.id : null }));
    const body = { version: S.image.version, annotations: S.anns.map((a, i) => ({ id: sent[i].id, class_id: a.class_id, geometry: a.geometry, attributes: a.attributes || {}, source: a.source || 'manual', prediction_id: a.prediction_id ?? null })) };
    app.$('.pb-save').textContent = 'saving…';
    try {
      const res = await app.api('PUT', `/images/${imageId}/annotations`, body);
      if (!S.image || S.image.id !== imageId) return;
      const sentIds = new Set(sent.map((x) => x.id).filter((x) => x != null));
      const fresh = res.annotations.map((a) => a.id).filter((id) => !sentIds.has(id)).sort((a, b) => a - b);
      sent.filter((x) => x.id == null).forEach((x, i) => { const a = S.anns.find((b) => b.key === x.key); if (a && fresh[i] != null) a.id = fresh[i]; });
      S.serverIds = new Set(res.annotations.map((a) => a.id));
      S.image.version = res.version; S.image.status = res.status; S.preds = res.predictions;
      S.stats.saves++; S.stats.lastSaved = performance.now();
      saveHistory();
      app.$('.pb-save').textContent = `saved · v${res.version}`;
      app.renderWorkflow();
    } catch (e) {
      if (e.status === 409) { S.conflict = e.data.detail; app.showConflict(S.conflict); }
      else { app.$('.pb-save').textContent = 'NOT SAVED'; app.msg('Save failed: ' + e.message, true); }
    } finally {
      S.saving = false;
      if (S.dirty && !S.conflict) save();
    }
  }

  return { snap, pushUndo, change, undo, redo, loadHistory, waitSaved, save };
}
