// What the user can do to the open photo, whatever the key or button that asked: pick a class,
// draw and delete polygons, accept or reject predictions, ask the assist back end for a mask,
// set the workflow status, and show or hide a group. Edits go through app.change (edits.js).
function PBActions(app) {
  const { S, root, $, msg } = app;
  const G = PBGeometry;
  // Drawn and assisted polygons get the current class, or the first damage class.
  const drawClass = () => S.currentClass || (S.classes.find((c) => c.group === 'damage') || {}).id;
  function newAnn(cid, geometry, source) { return { key: S.uid++, id: null, class_id: cid, group: app.cls(cid).group, geometry, attributes: {}, source, prediction_id: null }; }

  // ---- classes ----
  // The class new polygons get. It never relabels the selected polygon: that is the class select
  // in its card (panels.js), so picking a class while a polygon is selected cannot change it by
  // surprise.
  function pickClass(id) {
    S.currentClass = id;
    S.recent = [id, ...S.recent.filter((x) => x !== id)].slice(0, 9);
    app.renderClassList(); app.persist(); saveRecent();
  }
  // The recent classes are kept per user on the server (services.accounts.recent_classes), so
  // that another browser signed in as the same user has the same keys 1-9.
  function saveRecent() {
    const sent = S.recent.slice();
    app.api('PUT', '/me/recent-classes', { class_ids: sent })
      .then((r) => { if (S.recent.join() === sent.join() && r.class_ids.join() !== sent.join()) { S.recent = r.class_ids; app.renderClassList(); } })
      .catch((e) => msg('Could not keep your recent classes on the server: ' + e.message, true));
  }

  // Keys 1-9: the n-th recent class becomes the selected polygon's class, or, with no polygon
  // selected, the class new polygons get. The recent list keeps its order, so a key keeps its
  // class while the user relabels one polygon after another.
  function recentClass(n) {
    const id = S.recent[n - 1]; if (!id) return;
    const a = app.selAnn();
    if (!a) { pickClass(id); return; }
    if (a.class_id === id) return;
    app.change(() => { a.class_id = id; a.group = app.cls(id).group; });
    msg(`Polygon is now ${app.cls(id).display_name}.`);
  }

  // ---- tools and drawing ----
  function setTool(t) {
    if ((t === 'hole' || t === 'part') && !app.selAnn()) { msg('Select a polygon first.', true); t = 'select'; }
    S.tool = t; S.draw = (t === 'draw' || t === 'hole' || t === 'part') ? { points: [], target: t } : null; S.drawError = null;
    if (t !== 'assist') clearAssist(true);
    root.querySelectorAll('[data-tool]').forEach((b) => b.classList.toggle('pb-active', b.dataset.tool === t));
    const shell = root.querySelector('.pb-app'); if (shell) shell.dataset.tool = t;
    // The Assist card's controls only act while the tool is on: out of sight otherwise, so
    // the predictions stay above the fold.
    const card = root.querySelector('.pb-assist-card'); if (card) card.hidden = t !== 'assist';
    app.renderDraw();
  }
  // The drawn ring becomes a new annotation, another part of the selected one, or a hole in the
  // selected one's polygon that holds its first point. An outline that crosses itself is split
  // where it crosses (PBGeometry.repair, as the server does); a result the server would refuse
  // (no area, too few points, far off the photo) is not added: the drawing stays, with the
  // reason beside it, to fix (Backspace, more points) or drop (Esc).
  function finishDrawing() {
    const D = S.draw; if (!D) return;
    const ring = D.points.map((q) => [q[0], q[1]]);
    const parts = G.repair([{ exterior: ring, holes: [] }]);
    let result = parts;
    const a = D.target === 'draw' ? null : app.selAnn();
    if (D.target !== 'draw' && !a) return;
    if (D.target === 'hole') {
      result = app.clone(a.geometry);
      const poly = result.find((p) => G.inRing(ring[0], p.exterior)) || result[0];
      (poly.holes = poly.holes || []).push(...parts.map((p) => p.exterior));
    }
    // A new part is judged alone; a hole by the polygon it leaves.
    const reason = D.points.length < 3 ? 'a polygon needs at least 3 points' : G.check(result, S.image.width, S.image.height, S.maxVertices);
    if (reason) {
      const what = D.target === 'hole' ? 'hole' : D.target === 'part' ? 'part' : 'shape';
      // Clicks on one spot make a ring the server reads as fewer points: say what the user did.
      const short = D.points.length >= 3 && /needs at least 3 points/.test(reason) ? 'the points lie on one spot, so it has no area' : reason.replace(/^polygon 1: /, '');
      S.drawError = { n: D.points.length, at: ring.length ? ring[0] : [0, 0], reason: `Not added: ${short}` };
      msg(`Not added: ${short} (${reason}). Add points around the ${what}, Backspace removes one, Esc starts again.`, true); app.renderRejected();
      return;
    }
    S.drawError = null;
    if (D.target === 'draw') {
      const cid = drawClass();
      app.change(() => { const b = newAnn(cid, parts, 'manual'); S.anns.push(b); S.sel = b.key; });
    } else if (D.target === 'part') app.change(() => { a.geometry.push(...parts); });
    else app.change(() => { a.geometry = result; });
    if (parts.length > 1) msg(`The outline crossed itself, so it was split into ${parts.length} parts where it crosses.`);
    setTool('select');
  }
  function deleteSelected() {
    const a = app.selAnn(); if (!a) return;
    if (S.selV) return deleteVertex(...S.selV);
    app.change(() => { S.anns = S.anns.filter((b) => b.key !== a.key); S.sel = null; });
  }
  // A ring keeps at least 3 vertices: deleting below that removes the hole, the part, or the
  // whole annotation.
  function deleteVertex(pi, ri, i) {
    const a = app.selAnn(); if (!a) return;
    const poly = a.geometry[pi], ring = G.ringOf(a.geometry, pi, ri);
    app.change(() => {
      if (ring.length > 3) ring.splice(i, 1);
      else if (ri > 0) poly.holes.splice(ri - 1, 1);
      else if (a.geometry.length > 1) a.geometry.splice(pi, 1);
      else { S.anns = S.anns.filter((b) => b.key !== a.key); S.sel = null; }
      S.selV = null;
    });
  }

  // ---- assist: positive/negative points and a box go to the server, which answers a preview ----
  function clearAssist(quiet) { S.assist = { points: [], labels: [], box: null, preview: null }; if (!quiet) app.renderDraw(); const i = $('.pb-assist-info'); if (i) i.textContent = ''; }
  async function requestAssist() {
    if (!S.image) return;
    const A = S.assist, imageId = S.image.id, t0 = performance.now();
    // Only the newest request may show its answer: prompts change faster than the server replies.
    const seq = (S.assistSeq = (S.assistSeq || 0) + 1);
    try {
      const r = await app.api('POST', `/images/${imageId}/assist`, { points: A.points, labels: A.labels, box: A.box, tolerance: S.tolerance });
      if (seq !== S.assistSeq || !S.image || S.image.id !== imageId) return;
      A.preview = r.geometry; app.renderDraw();
      S.stats.assists++; S.stats.lastAssist = performance.now() - t0;
      $('.pb-assist-info').textContent = r.geometry.length ? `${r.backend} · score ${(+r.score).toFixed(2)} · Enter accepts` : `${r.backend}: nothing found; add points`;
      if (r.note) { $('.pb-assist-info').textContent += ` · ${r.note}`; msg(r.note, true); } // the answer is only the box
    } catch (e) { msg('Assist failed: ' + e.message, true); }
  }
  function acceptAssist() {
    const A = S.assist; if (!A.preview || !A.preview.length) { msg('No assist preview to accept.', true); return; }
    const cid = drawClass();
    const geom = app.clone(A.preview);
    app.change(() => { const a = newAnn(cid, geom, 'assisted'); S.anns.push(a); S.sel = a.key; });
    clearAssist();
  }

  // ---- selection ----
  // A shape is named by a ref: 'a:<key>' for a polygon of the photo, 'p:<id>' for a pending
  // prediction. Clicks pick the polygons before predictions (PBGeometry.hitsAt); a second
  // click on the same spot, or Tab, goes on to the next shape there.
  const selRef = () => (S.sel != null ? 'a:' + S.sel : S.selPred != null ? 'p:' + S.selPred : null);
  function visibleShapes() {
    return [
      ...S.anns.filter((a) => !S.hidden.has(a.group)).map((a) => ({ ref: 'a:' + a.key, geometry: a.geometry, rank: 0 })),
      ...app.pendingPreds().filter((p) => !S.hidden.has(p.group)).map((p) => ({ ref: 'p:' + p.id, geometry: p.geometry, rank: 1 })),
    ];
  }
  function shapesAt(pt) { return G.hitsAt(pt, visibleShapes()); }
  // Selects the shape ref names (null: nothing), and brings its card into view.
  function select(ref) {
    const [kind, v] = ref ? ref.split(':') : [null, null];
    S.sel = kind === 'a' ? +v : null; S.selPred = kind === 'p' ? +v : null; S.selV = null;
    app.renderAll(); app.renderAttrs(); app.renderClassList();
    if (ref) { const card = $('.pb-attrs'); if (card && card.scrollIntoView) card.scrollIntoView({ block: 'nearest' }); }
  }
  // Tab: the next shape under the last click when several lie there, else the next of all.
  function cycleSelection(dir) {
    const here = S.lastClick ? shapesAt(S.lastClick) : [];
    const refs = here.length > 1 ? here : visibleShapes().map((s) => s.ref);
    const next = G.cycle(refs, selRef(), dir);
    if (next) select(next);
  }

  // ---- predictions ----
  // An accepted damage keeps the part the model placed it on (attributes.part_id), which the
  // annotator may still change on its card.
  function predToAnn(p) {
    const part = p.group === 'damage' && p.extra && p.extra.part;
    const attributes = part && part.class_id != null ? { part_id: part.class_id } : {};
    return { key: S.uid++, id: null, class_id: p.class_id, group: p.group, geometry: app.clone(p.geometry), attributes, source: 'accepted_prediction', prediction_id: p.id };
  }
  function acceptPred(pid) { const p = S.preds.find((x) => x.id === pid); if (!p) return; app.change(() => { const a = predToAnn(p); S.anns.push(a); S.sel = a.key; S.selPred = null; }); }
  async function rejectPred(pid) {
    try { await app.api('POST', `/predictions/${pid}/state`, { state: 'rejected' }); const p = S.preds.find((x) => x.id === pid); if (p) p.state = 'rejected'; S.selPred = null; app.renderPreds(); app.renderAttrs(); msg('Prediction rejected.'); } catch (e) { msg(e.message, true); }
  }
  function acceptAllAbove() {
    const t = +$('.pb-thr').value;
    const todo = app.pendingPreds().filter((p) => p.score >= t && !S.hidden.has(p.group));
    if (!todo.length) { msg('No pending prediction at or above ' + t); return; }
    app.change(() => { for (const p of todo) S.anns.push(predToAnn(p)); });
    msg(`Accepted ${todo.length} predictions.`);
  }

  // ---- workflow ----
  async function setStatus(status, comment) {
    if (!S.image) return;
    if (S.saving) await app.waitSaved();
    try {
      const r = await app.api('POST', `/images/${S.image.id}/status`, { status, comment: comment || null });
      S.image.status = r.status; S.image.review_comment = r.review_comment;
      msg(`Photo ${S.image.id} is now ${r.status}.`); app.renderWorkflow();
      // A scored (gold) photo's comparison, where the project shows it; 404 everywhere else.
      if (status === 'labelled') app.api('GET', `/quality/feedback/${S.image.id}`).then((f) => { const o = f.scores.overall, n = (x) => (x == null ? '–' : (+x).toFixed(2)); msg(`Checked against reference labels: precision ${n(o.precision)}, recall ${n(o.recall)}, mean IoU ${n(o.mean_iou)}.`); }).catch(() => {});
    } catch (e) { msg(e.message, true); }
  }
  // A fraud analyst's verdict on the photo: confirming accepts the pending fake-damage
  // predictions; either way every damage that is fake, flagged or selected gets the verdict.
  async function fraudDecision(isFake) {
    const fakePreds = app.pendingPreds().filter((p) => p.group === 'fake');
    app.change(() => {
      if (isFake) for (const p of fakePreds) S.anns.push(predToAnn(p));
      for (const a of S.anns) if (a.group !== 'part' && (a.group === 'fake' || (a.attributes && a.attributes.fake) || S.sel === a.key)) { a.attributes = a.attributes || {}; a.attributes.fake = isFake; }
    });
    if (!isFake) for (const p of fakePreds) await rejectPred(p.id);
    msg(isFake ? 'Confirmed as fake damage.' : 'Cleared: not fake damage.');
  }
  function toggleGroup(g, hide) { if (hide) S.hidden.add(g); else S.hidden.delete(g); const cb = root.querySelector(`[data-group="${g}"]`); if (cb) cb.checked = !hide; app.renderAll(); app.renderPredList(); app.persist(); }

  return {
    pickClass, recentClass, setTool, finishDrawing, deleteSelected, deleteVertex, clearAssist, requestAssist, acceptAssist,
    acceptPred, rejectPred, acceptAllAbove, setStatus, fraudDecision, toggleGroup,
    selRef, shapesAt, select, cycleSelection,
  };
}
