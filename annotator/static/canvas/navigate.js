// Moving through photos: the mode and filters choose a queue on the server, step() asks it for
// the next or previous photo, and showDetail() opens one. The workspace (mode, filters, photo,
// current class) is remembered per user in localStorage, so a reload comes back to the same place;
// the recent classes are kept on the server (actions.js saveRecent).
function PBNavigate(app) {
  const { S, root, $, msg } = app;

  function persist() {
    try { localStorage.setItem('pb.workspace', JSON.stringify({ mode: S.mode, filters: S.filters, imageId: S.image && S.image.id, queue: S.queue && S.image && { position: S.queue.position, queue_length: S.queue.queue_length, progress: S.queue.progress, imageId: S.image.id }, currentClass: S.currentClass, hidden: [...S.hidden], user: S.session.username })); } catch (e) { /* private mode */ }
  }
  // Each mode is a preset of filters; the user may refine them in the toolbar afterwards.
  function modeFilters(m) {
    return m === 'review' ? { status: 'labelled' } : m === 'fraud' ? { flagged: 'true', status: 'new,in_progress,labelled,reviewed,rejected' } : {};
  }
  // Where a role works, and so where it lands on sign-in: reviewers review, fraud analysts start
  // in the fraud queue, everyone else annotates.
  function landingMode(role) {
    if (role === 'reviewer' && app.can('review')) return 'review';
    if (role === 'fraud_analyst' && app.can('fraud')) return 'fraud';
    return app.can('annotate') ? 'annotate' : 'review';
  }
  async function setMode(m) {
    if (!(await leaveOk())) { $('.pb-mode').value = S.mode; return; }
    S.mode = m; S.queue = null;
    S.filters = modeFilters(m);
    for (const [k, sel] of app.FILTERS) $(sel).value = S.filters[k] || '';
    $('.pb-sides-card').hidden = m !== 'sides';
    persist();
    if (m === 'sides') app.loadSides(true); else step('next', true, true);
  }
  // Whether the open photo may be left: saves what is pending first, then asks when something
  // would still be lost (a refused shape, a failed save, a conflict). Its edits stay in
  // localStorage either way, offered back when the photo is opened again.
  async function leaveOk() {
    if (!S.image) return true;
    if (S.saving) await app.waitSaved();
    if (!S.conflict && (S.saveError || S.changeSeq !== S.savedSeq)) { S.saveError = null; app.save(); await app.waitSaved(); }
    const why = app.unsavedWork();
    if (!why) return true;
    return window.confirm(`${why}\n\nLeave this photo anyway? Your edits stay in this browser and are offered back when you open the photo again.`);
  }
  function queryString(extra) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...S.filters, ...extra })) if (v !== '' && v !== null && v !== undefined) p.set(k, v);
    return p.toString();
  }
  // fromStart: the queue's first photo, not the one after the open photo.
  // checked: the caller has already asked leaveOk().
  async function step(dir, fromStart, checked) {
    if (!checked && !(await leaveOk())) return;
    if (S.saving) await app.waitSaved();
    const t0 = performance.now();
    try {
      const res = await app.api('GET', `/queue/${dir}?` + queryString(fromStart || !S.image ? {} : { after_id: S.image.id }));
      S.queue = res; showWaiting(res.rejections_waiting || 0);
      if (!res.image && !res.queue_length) { showEmpty(); return; }
      // Photos left, but every one handed to someone else (services.leases).
      if (!res.image && !S.image) { showEmpty(); $('.pb-empty').textContent = `All ${res.queue_length} photos of this queue are open with someone else right now; try Next again in a while.`; return; }
      if (!res.image) { msg(dir === 'next' ? 'This is the last photo of the queue.' : 'This is the first photo.'); app.renderProgress(); return; }
      await showDetail(res.image, t0);
      if (res.check_reasons && res.check_reasons.length) msg('Queued for a check: ' + res.check_reasons.join('; '));
    } catch (e) { msg('Could not load the queue: ' + e.message, true); }
  }
  async function openImage(id) {
    const t0 = performance.now();
    // After a reload the queue counter comes back from localStorage until the next step.
    if (!S.queue) { try { const q = JSON.parse(localStorage.getItem('pb.workspace') || '{}').queue; if (q && q.imageId === id) S.queue = q; } catch (e) { /* none kept */ } }
    try { await showDetail(await app.api('GET', `/images/${id}`), t0); } catch (e) { msg('Could not open photo ' + id + ': ' + e.message, true); if (e.status === 404) step('next', true); }
  }
  // Annotations and predictions show at once; the photo follows when its blob is decoded. The
  // promise resolves when the photo is on screen (or another photo was opened meanwhile), which
  // .pb-app[data-drawn] tells tests and benchmarks too.
  function showDetail(d, t0) {
    S.image = { id: d.id, width: d.width, height: d.height, file_name: d.file_name, status: d.status, version: d.version, review_comment: d.review_comment, rejected_for: d.rejected_for, split: d.split };
    showHolder(d);
    const hist = app.loadHistory(d.id, d.version);
    if (hist) S.uid = Math.max(S.uid, hist.uid);
    S.anns = d.annotations.map((a) => ({ ...a, key: S.uid++ }));
    S.serverIds = new Set(d.annotations.map((a) => a.id));
    S.preds = d.predictions;
    S.sel = null; S.selV = null; S.selPred = null; S.draw = null; S.conflict = null;
    S.undo = hist ? hist.undo : []; S.redo = hist ? hist.redo : [];
    // What is not saved belongs to one photo: the next one starts clean.
    S.rejected = new Map(); S.saveError = null; S.drawError = null; S.dirty = false; S.changeSeq = S.savedSeq = 0;
    app.showSaveState();
    $('.pb-conflict').hidden = true;
    offerRestore(d); showKept();
    app.clearAssist(true);
    const svg = $('.pb-svg'), img = $('.pb-img');
    img.setAttribute('width', d.width); img.setAttribute('height', d.height);
    app.fit();
    $('.pb-empty').hidden = true;
    delete root.querySelector('.pb-app').dataset.empty;
    persist();
    app.renderAll(); app.renderSide(); app.renderProgress();
    loadSuspects(d.id);
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
  // A fraud analyst sees which polygons put the photo in the fraud queue, and why; in the
  // fraud queue the first of them is selected, so its card names the reason.
  async function loadSuspects(id) {
    S.suspects = new Map();
    if (!app.can('fraud')) return;
    let check;
    try { check = await app.api('GET', `/images/${id}/fraud-check`); } catch (e) { return; }
    if (!S.image || S.image.id !== id) return;
    S.suspects = new Map(check.suspects.map((x) => [x.annotation_id, x.reason]));
    const first = S.mode === 'fraud' && S.sel == null && S.selPred == null && S.anns.find((a) => S.suspects.has(a.id));
    if (first) app.select('a:' + first.key); else { app.renderAnns(); app.renderAttrs(); }
  }
  async function prefetchNext() {
    if (!S.image) return;
    try {
      // lease=false: looking ahead must not take the next photo from the queue (services.leases).
      const res = await app.api('GET', '/queue/next?' + queryString({ after_id: S.image.id, lease: 'false' }));
      if (res.image) app.imageBlob(res.image.id).then((u) => { const p = new Image(); p.src = u; }).catch(() => {});
    } catch (e) { /* prefetch is best effort */ }
  }

  // An empty queue: no photo stays on the canvas, and the stage says so at its top.
  function showEmpty() {
    S.image = null; S.anns = []; S.preds = []; S.sel = null; S.selV = null; S.selPred = null; S.draw = null; S.undo = []; S.redo = [];
    app.clearAssist(true);
    $('.pb-img').removeAttribute('href');
    const which = S.mode === 'fraud' ? 'The fraud queue' : S.mode === 'review' ? 'The review queue' : 'The queue';
    const p = S.queue && S.queue.progress;
    const noPhotos = !!p && p.total === 0;
    const why = noPhotos ? (app.can('import') ? ' This project has no photos yet. Add them in the Dashboard tab under "Add photos", with `panelbeater import folder PATH` on the server, or with POST /api/images/upload.' : ' This project has no photos yet: a lead or admin adds them.')
      : S.mode === 'fraud' ? ' No photo has a fake-damage flag or prediction, severe damage, or a fraud-screen reason; a lead can run the fraud screen from the dashboard.' : ' No photo matches these filters.';
    const e = $('.pb-empty');
    e.textContent = `${which} is empty.${why}`; e.hidden = false;
    e.style.alignItems = 'flex-start'; e.style.paddingTop = '24px'; e.style.textAlign = 'center'; e.style.fontSize = '16px';
    const shell = root.querySelector('.pb-app'); if (shell) { delete shell.dataset.drawn; shell.dataset.empty = S.mode; }
    if (noPhotos) e.dataset.noPhotos = '1'; else delete e.dataset.noPhotos;
    persist(); app.renderAll(); app.renderSide(); app.renderProgress();
    $('.pb-progress').textContent = `${which} is empty` + (p ? ` · ${p.done} / ${p.total} photos done` : '');
    msg(`${which} is empty.`);
  }
  // Edits of this photo that this browser kept and the server does not have (the tab was
  // closed, or the user left with a refused shape): offered back in a bar above the photo.
  function offerRestore(d) {
    let box = $('.pb-restore');
    if (!box) {
      box = app.el('div', { class: 'pb-restore', role: 'alertdialog', style: 'border:2px solid #b26a00;background:#fff8e6;padding:8px;margin:4px 0;border-radius:4px' });
      box.appendChild(app.el('span', { class: 'pb-restore-msg' }));
      const bs = 'margin-left:8px;padding:2px 8px;border:1px solid #b26a00;border-radius:4px;background:white;cursor:pointer';
      box.appendChild(app.el('button', { class: 'pb-restore-yes', style: bs + ';font-weight:600' }, 'Restore my edits'));
      box.appendChild(app.el('button', { class: 'pb-restore-no', style: bs }, 'Discard them'));
      const main = $('.pb-main'); main.parentNode.insertBefore(box, main);
    }
    box.hidden = true;
    const kept = app.readLocal(d.id);
    if (!kept || d.read_only) return; // kept for when the photo is editable again
    const same = (x) => JSON.stringify(x.map((a) => [a.id, a.class_id, a.geometry, a.attributes || {}]));
    if (kept.file_name !== d.file_name || kept.width !== d.width || kept.height !== d.height || (!kept.rejected.length && same(kept.anns) === same(d.annotations))) { app.dropLocal(d.id); return; }
    const bad = kept.rejected.length, when = new Date(kept.at).toLocaleString();
    $('.pb-restore-msg').textContent = `This browser kept edits of photo ${d.id} that are not saved (${when}: ${kept.anns.length} shape${kept.anns.length === 1 ? '' : 's'}` +
      (bad ? `, ${bad} refused by the server` : '') + ')' +
      (kept.version !== d.version ? `; the photo was saved since (version ${kept.version}, now ${d.version}), and restoring replaces that.` : '.') + ' Restore them?';
    box.hidden = false;
    $('.pb-restore-yes').onclick = () => {
      box.hidden = true;
      if (!S.image || S.image.id !== d.id) return;
      const anns = kept.anns.map((a) => ({ ...a, key: S.uid++ }));
      app.change(() => { S.anns = anns; S.sel = null; S.selV = null; });
      msg(`Restored ${anns.length} shape${anns.length === 1 ? '' : 's'} kept in this browser.`);
      app.waitSaved().then(showKept);
    };
    $('.pb-restore-no').onclick = () => { box.hidden = true; app.dropLocal(d.id); showKept(); msg('Discarded the edits this browser kept.'); };
  }
  // Photos whose edits this browser kept (a closed tab, a photo left with a refused shape),
  // listed in a bar from sign-in or reopen: "2 photos have unsaved edits: open …". While the bar
  // stands, every call names them (api.js keptIds), so the server keeps them leased to this
  // user. A photo leaves the list once its edits are restored and saved, or discarded; "Not
  // now" ends the offer (the edits stay kept, and are listed again on the next sign-in).
  function showKept() {
    let bar = $('.pb-kept');
    if (!bar) {
      bar = app.el('div', { class: 'pb-kept', role: 'status', style: 'border:2px solid #b26a00;background:#fff8e6;padding:6px 8px;margin:4px 0;border-radius:4px' });
      const main = $('.pb-main'); main.parentNode.insertBefore(bar, main);
    }
    const kept = new Map(app.keptPhotos().map((k) => [k.image_id, k]));
    S.keptOffer = S.keptOffer.filter((id) => kept.has(id));
    bar.textContent = ''; bar.hidden = !S.keptOffer.length;
    if (!S.keptOffer.length) return;
    const n = S.keptOffer.length;
    bar.appendChild(app.el('span', { class: 'pb-kept-msg' }, `${n} photo${n === 1 ? ' has' : 's have'} unsaved edits kept in this browser: open`));
    const bs = 'margin-left:8px;padding:2px 8px;border:1px solid #b26a00;border-radius:4px;background:white;cursor:pointer';
    for (const id of S.keptOffer) {
      const k = kept.get(id);
      const b = app.el('button', { class: 'pb-kept-open', 'data-image-id': String(id), style: bs + ';font-weight:600', title: `Saved in this browser ${new Date(k.at).toLocaleString()}` }, `photo ${id} (${k.file_name})`);
      b.onclick = async () => { if (S.image && S.image.id === id) return; if (await leaveOk()) openImage(id); };
      bar.appendChild(b);
    }
    const later = app.el('button', { class: 'pb-kept-later', style: bs }, 'Not now');
    later.onclick = () => { S.keptOffer = []; showKept(); msg('The kept edits stay in this browser; they are listed again when you next sign in.'); };
    bar.appendChild(later);
  }
  // A photo someone else holds (the queue leased it to them) opens read-only, with a bar that
  // names them: edits.js saves nothing and the tools are greyed out (canvas.css) meanwhile.
  function showHolder(d) {
    S.image.readOnly = !!d.read_only; S.image.heldBy = d.held_by || null;
    let bar = $('.pb-held');
    if (!bar) { bar = app.el('div', { class: 'pb-held', role: 'status' }); const main = $('.pb-main'); main.parentNode.insertBefore(bar, main); }
    bar.textContent = S.image.readOnly ? `${S.image.heldBy || 'Someone'} is working on this photo. It is open read-only: your changes would not be saved.` : '';
    bar.hidden = !S.image.readOnly;
    const shell = root.querySelector('.pb-app');
    if (S.image.readOnly) shell.dataset.readOnly = '1'; else delete shell.dataset.readOnly;
  }
  // Closing or reloading the tab with something unsaved: the browser asks first.
  window.addEventListener('beforeunload', (e) => {
    if (!S.session || !app.unsavedWork()) return;
    app.keepLocal(); e.preventDefault(); e.returnValue = '';
  });

  // The toolbar badge: rejected photos waiting for this user (the queue puts them first).
  function showWaiting(n) {
    S.rejectionsWaiting = n;
    const b = $('.pb-rejections'); if (!b) return;
    b.hidden = !n; b.textContent = `${n} rejected: fix first`;
  }
  async function openWaiting() {
    try { const w = await app.api('GET', '/review/waiting'); showWaiting(w.count); if (w.images.length) await openImage(w.images[0].id); else msg('No rejected photo waits for you.'); } catch (e) { msg('Could not list your rejected photos: ' + e.message, true); }
  }

  return { persist, modeFilters, landingMode, setMode, leaveOk, step, openImage, openWaiting, showKept };
}
