// The HTML around the canvas: the shell (toolbar, side cards, help), the class list, the workflow
// buttons, the selected polygon's attributes, the prediction list, progress and the conflict box.
// The shell's controls are bound once, in input.js; panels rebuilt on every render bind their own
// buttons here, since their handlers close over the row they belong to.
function PBPanels(app) {
  const { S, root, $, el } = app;
  const G = PBGeometry;
  const SEVERITIES = ['minor', 'moderate', 'severe'];

  // The markup is static (no user text); user-supplied names are added afterwards through el().
  function buildShell() {
    root.innerHTML = '';
    const shell = el('div', { class: 'pb-app', tabindex: '0' });
    shell.innerHTML = `
      <div class="pb-toolbar">
        <select class="pb-mode" title="mode"></select>
        <button class="pb-prev" title="previous photo (← or S)">◀</button>
        <button class="pb-next" title="next photo (→ or D)">▶</button>
        <span class="pb-progress"></span>
        <button class="pb-rejections" hidden title="rejected photos waiting for you to fix them; click to open the oldest"></button>
        <span class="pb-sep"></span>
        <details class="pb-filters"><summary title="filter the queue: status, flag, split, class, inspection">Filters<span class="pb-filter-n"></span></summary><div class="pb-filter-pop">
          <label>status <select class="pb-f-status"><option value="">open</option><option>new</option><option>in_progress</option><option>labelled</option><option>reviewed</option><option>rejected</option><option value="new,in_progress,labelled,reviewed,rejected">all</option></select></label>
          <label>flag <select class="pb-f-flagged"><option value="">any</option><option value="true">flagged</option><option value="false">not flagged</option></select></label>
          <label>split <select class="pb-f-split"><option value="">any</option><option>train</option><option>val</option><option>test</option></select></label>
          <label>class <select class="pb-f-class"><option value="">any</option></select></label>
          <label>inspection <select class="pb-f-inspection"><option value="">any</option></select></label>
        </div></details>
        <span class="pb-sep"></span>
        <span class="pb-tools">
          <button data-tool="select" title="select / edit (V)">Edit</button>
          <button data-tool="draw" title="draw polygon (N)">Polygon</button>
          <button data-tool="hole" title="draw hole (H)">Hole</button>
          <button data-tool="part" title="add part (M)">Part</button>
          <button data-tool="assist" title="assist (A)">Assist</button>
        </span>
        <button class="pb-undo" title="undo (Ctrl+Z)">↶</button>
        <button class="pb-redo" title="redo (Ctrl+Shift+Z)">↷</button>
        <span class="pb-zoombar"><button class="pb-zoom-out" title="zoom out (-)">−</button><span class="pb-zoom-level" title="zoom: screen pixels per photo pixel">100%</span><button class="pb-zoom-in" title="zoom in (+)">+</button><button class="pb-zoom-fit" title="fit the photo to the window (0)">Fit</button><button class="pb-zoom-sel" title="zoom to the selected polygon (F)">Zoom sel</button><button class="pb-labels-btn" title="show or hide class names on polygons (L)">Labels</button></span>
        <button class="pb-helpbtn" title="shortcuts (?)">?</button>
        <span class="pb-save"></span>
      </div>
      <div class="pb-conflict" hidden>
        <div class="pb-conflict-msg"></div>
        <div class="pb-conflict-cols"><div><b>Your version</b><ul class="pb-conflict-mine"></ul></div><div><b>Their version (saved)</b><ul class="pb-conflict-theirs"></ul></div></div>
        <button class="pb-conflict-load">Load their version</button> <button class="pb-conflict-keep">Keep mine (overwrite theirs)</button>
      </div>
      <div class="pb-main">
        <div class="pb-stage"><svg class="pb-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><image class="pb-img" x="0" y="0" width="10" height="10" preserveAspectRatio="none"/><image class="pb-region" x="0" y="0" width="0" height="0" preserveAspectRatio="none"/><g class="pb-l-anns"></g><g class="pb-l-labels"></g><g class="pb-l-marks"></g><g class="pb-l-preds"></g><g class="pb-l-sel"></g><g class="pb-l-draw"></g></svg><div class="pb-empty">No photo</div><div class="pb-canvas-comment" hidden></div><div class="pb-legend" hidden></div></div>
        <div class="pb-side">
          <div class="pb-card pb-sides-card" hidden><b>Sides to resolve</b><div class="pb-sides"></div></div>
          <div class="pb-card pb-workflow"><div class="pb-imginfo"></div><div class="pb-review-comment"></div><div class="pb-wf-buttons"></div></div>
          <div class="pb-card pb-assist-card" hidden><b>Assist</b> <span class="pb-assist-info"></span><br/>
            <label>simplify <input type="range" class="pb-tol" min="0" max="10" step="0.5" value="1"/> <span class="pb-tol-v">1</span> px</label>
            <button class="pb-assist-accept">Accept (Enter)</button> <button class="pb-assist-clear">Clear (Esc)</button></div>
          <div class="pb-card pb-preds-card"><b>Predictions</b>
            <div class="pb-groups"></div>
            <label>threshold <input type="number" class="pb-thr" min="0" max="1" step="0.05" value="0.5"/></label>
            <button class="pb-accept-all" title="Shift+Y">Accept all ≥ threshold</button>
            <div class="pb-predlist"></div></div>
          <div class="pb-card"><b>Class</b> <span class="pb-current-class"></span>
            <input class="pb-class-search" placeholder="type to search classes (/)"/>
            <div class="pb-recent"></div><div class="pb-classlist"></div></div>
          <div class="pb-card pb-attrs"></div>
        </div>
      </div>
      <div class="pb-msg"></div>
      <div class="pb-help" hidden><b>Keyboard shortcuts</b><table class="pb-help-table"></table></div>`;
    root.appendChild(shell);
    const modeSel = $('.pb-mode');
    for (const [m, perm, label] of [['annotate', 'annotate', 'Annotate'], ['review', 'review', 'Review'], ['fraud', 'fraud', 'Fraud queue'], ['sides', 'dashboard', 'Sides to resolve']]) {
      if (app.can(perm)) modeSel.appendChild(el('option', { value: m }, label));
    }
    modeSel.value = S.mode;
    const fcls = $('.pb-f-class');
    for (const c of S.classes) fcls.appendChild(el('option', { value: String(c.id) }, c.display_name));
    // The vehicles' inspections, for a queue of one inspection's photos (claims work).
    const finsp = $('.pb-f-inspection');
    app.api('GET', '/inspections').then((rows) => {
      for (const i of rows) finsp.appendChild(el('option', { value: String(i.id) }, `${i.name} (${i.kind})`));
      finsp.value = S.filters.inspection_id || '';
    }).catch(() => { finsp.parentElement.hidden = true; });
    for (const [k, sel] of app.FILTERS) $(sel).value = S.filters[k] || '';
    renderFilterCount();
    const table = $('.pb-help-table');
    for (const [k, v] of app.SHORTCUTS) { const tr = el('tr'); tr.appendChild(el('td', { class: 'pb-key' }, k)); tr.appendChild(el('td', {}, v)); table.appendChild(tr); }
    const groups = $('.pb-groups');
    for (const g of app.GROUPS) {
      const cb = el('input', { type: 'checkbox', 'data-group': g });
      cb.checked = !S.hidden.has(g);
      const lab = el('label'); lab.appendChild(cb); lab.appendChild(document.createTextNode(' ' + g + ' ')); groups.appendChild(lab);
    }
  }

  // The class picker. With the search box empty: the recent classes (keys 1-9), then all three
  // groups, each in a box of its own so that Fake and Part stay in view below Damage's 26. While
  // typing: one list ranked by PBFuzzy (names, display names and synonyms, so "windscreen" finds
  // the front windshield); among equal scores the recently used come first. Picking sets only the
  // class new drawings get; a selected polygon's class changes in its own card (renderAttrs).
  function classButton(c, withGroup) {
    const b = el('button', { 'data-id': String(c.id), class: 'pb-class-btn' + (c.id === S.currentClass ? ' pb-current' : '') }, c.display_name + (withGroup ? ` · ${c.group}` : ''));
    b.style.borderLeft = '4px solid ' + app.colorOf(c.id); // this photo's colour (render.js)
    b.title = c.name + (c.synonyms && c.synonyms.length ? ' (' + c.synonyms.join(', ') + ')' : '');
    b.addEventListener('click', () => app.pickClass(c.id));
    return b;
  }
  function searchClasses(q) {
    const recency = (id) => { const i = S.recent.indexOf(id); return i < 0 ? S.recent.length : i; };
    const ranked = PBFuzzy.rank(q, S.classes.map(PBFuzzy.classTexts));
    ranked.sort((a, b) => b[1] - a[1] || recency(S.classes[a[0]].id) - recency(S.classes[b[0]].id) || a[0] - b[0]);
    return ranked.map(([i]) => S.classes[i]);
  }
  function renderClassList() {
    const q = ($('.pb-class-search').value || '').trim();
    const list = $('.pb-classlist');
    list.textContent = '';
    if (q) {
      const hits = searchClasses(q);
      list.appendChild(el('div', { class: 'pb-group-h' }, hits.length ? `${hits.length} match${hits.length === 1 ? '' : 'es'} (Enter picks the first)` : `No class matches "${q}"`));
      const box = el('div', { class: 'pb-group-b pb-matches' });
      for (const c of hits) box.appendChild(classButton(c, true));
      list.appendChild(box);
    } else {
      for (const g of app.GROUPS) {
        const items = S.classes.filter((c) => c.group === g);
        list.appendChild(el('div', { class: 'pb-group-h', 'data-group-h': g }, `${g[0].toUpperCase() + g.slice(1)} (${items.length})`));
        const box = el('div', { class: `pb-group-b pb-group-${g}` });
        for (const c of items) box.appendChild(classButton(c, false));
        list.appendChild(box);
      }
    }
    const rec = $('.pb-recent');
    rec.textContent = '';
    S.recent.forEach((id, i) => {
      const b = el('button', { class: 'pb-recent-btn', 'data-id': String(id) }, `${i + 1} ${app.cls(id).display_name}`);
      b.style.borderLeft = '4px solid ' + app.colorOf(id);
      b.addEventListener('click', () => app.pickClass(id));
      rec.appendChild(b);
    });
    $('.pb-current-class').textContent = S.currentClass ? 'new polygons: ' + app.cls(S.currentClass).display_name : '';
  }

  function renderSide() { $('.pb-sides-card').hidden = S.mode !== 'sides'; if (S.mode === 'sides') app.renderSides(); renderWorkflow(); renderAttrs(); renderPredList(); renderClassList(); }
  // The photo's facts and the buttons the current mode and role allow.
  function renderWorkflow() {
    const info = $('.pb-imginfo'), btns = $('.pb-wf-buttons'), rc = $('.pb-review-comment');
    btns.textContent = '';
    if (!S.image) { info.textContent = ''; rc.textContent = ''; return; }
    info.textContent = `#${S.image.id} ${S.image.file_name} · ${S.image.width}×${S.image.height} · ${S.image.split} · status: ${S.image.status} · version ${S.image.version}`;
    if (S.image.status === 'rejected') rc.textContent = 'rejected: ' + (S.image.review_comment || '') + (S.image.rejected_for ? ` (back to ${S.image.rejected_for})` : '');
    else rc.textContent = S.image.review_comment ? 'Review comment: ' + S.image.review_comment : '';
    rc.classList.toggle('pb-rejected', S.image.status === 'rejected');
    if (S.mode === 'review' && app.can('review')) {
      btns.appendChild(el('button', { class: 'pb-approve', onclick: () => app.setStatus('reviewed') }, 'Approve'));
      const ta = el('textarea', { class: 'pb-reject-comment', placeholder: 'what must be fixed (required to reject)' });
      btns.appendChild(ta);
      btns.appendChild(el('button', { class: 'pb-reject', onclick: () => app.setStatus('rejected', ta.value) }, 'Reject with comment'));
    } else if (S.mode === 'fraud' && app.can('fraud')) {
      btns.appendChild(el('button', { class: 'pb-fraud-confirm', onclick: () => app.fraudDecision(true) }, 'Confirm fake damage'));
      btns.appendChild(el('button', { class: 'pb-fraud-clear', onclick: () => app.fraudDecision(false) }, 'Clear (not fake)'));
    } else if (app.can('annotate')) {
      btns.appendChild(el('button', { class: 'pb-mark-labelled', onclick: () => app.setStatus('labelled') }, 'Mark labelled (Ctrl+Enter)'));
    }
  }
  // Parts drawn or predicted on this photo (rejected predictions excluded) that a damage may sit on.
  function partCandidates() {
    return [...S.anns.filter((b) => b.group === 'part'), ...S.preds.filter((p) => p.group === 'part' && p.state !== 'rejected')];
  }
  // The selected polygon's class, severity, part, occlusion and (for fraud analysts) fake flag.
  function renderAttrs() {
    const box = $('.pb-attrs'); box.textContent = '';
    const a = app.selAnn();
    const pr = !a && S.selPred != null ? S.preds.find((p) => p.id === S.selPred) : null;
    if (pr) { renderPredCard(box, pr); return; }
    if (!a) { box.appendChild(el('div', { class: 'pb-hint' }, 'Select a polygon to edit its class and attributes.')); return; }
    const at = a.attributes || (a.attributes = {});
    box.appendChild(el('div', { class: 'pb-sel-class' }, `${app.annName(a)} (${a.group}) · ${a.source || 'manual'}`));
    const why = S.suspects && S.suspects.get(a.id);
    if (why) box.appendChild(el('div', { class: 'pb-suspect-reason' }, 'Fraud check: ' + why));
    if (at.side === 'unknown') box.appendChild(el('div', { class: 'pb-hint pb-side-unknown' }, 'Imported without a side: the side shown in the class list is a guess; a lead settles it under "Sides to resolve".'));
    // Changing this polygon's class is its own action, apart from the class new drawings get.
    const cs = el('select', { class: 'pb-sel-class-pick' });
    for (const g of app.GROUPS) {
      const og = el('optgroup'); og.label = g;
      for (const c of S.classes.filter((c) => c.group === g)) og.appendChild(el('option', { value: String(c.id) }, c.display_name));
      cs.appendChild(og);
    }
    cs.value = String(a.class_id);
    cs.addEventListener('change', () => app.change(() => { a.class_id = +cs.value; a.group = app.cls(+cs.value).group; }));
    const l0 = el('label', {}, 'class '); l0.appendChild(cs); box.appendChild(l0);
    const sev = el('select', { class: 'pb-severity' });
    sev.appendChild(el('option', { value: '' }, '—'));
    for (const s of SEVERITIES) sev.appendChild(el('option', { value: s }, s));
    sev.value = at.severity || '';
    sev.addEventListener('change', () => app.change(() => { if (sev.value) a.attributes.severity = sev.value; else delete a.attributes.severity; }));
    const l1 = el('label', {}, 'severity '); l1.appendChild(sev); box.appendChild(l1);
    const part = el('select', { class: 'pb-part' });
    part.appendChild(el('option', { value: '' }, '—'));
    for (const c of S.classes.filter((c) => c.group === 'part')) part.appendChild(el('option', { value: String(c.id) }, c.display_name));
    part.value = at.part_id ? String(at.part_id) : '';
    part.addEventListener('change', () => app.change(() => { if (part.value) a.attributes.part_id = +part.value; else delete a.attributes.part_id; }));
    const l2 = el('label', {}, 'part '); l2.appendChild(part); box.appendChild(l2);
    if (a.group !== 'part') {
      const sug = G.partSuggestion(a.geometry, partCandidates());
      if (sug && sug.id !== at.part_id) {
        const b = el('button', { class: 'pb-part-suggest' }, `use suggested part: ${app.cls(sug.id).display_name} (${Math.round(sug.ov * 100)}% overlap)`);
        b.addEventListener('click', () => app.change(() => { a.attributes.part_id = sug.id; }));
        box.appendChild(b);
      }
    }
    const occ = el('input', { type: 'checkbox', class: 'pb-occluded' }); occ.checked = !!at.occluded;
    occ.addEventListener('change', () => app.change(() => { a.attributes.occluded = occ.checked; }));
    const l3 = el('label'); l3.appendChild(occ); l3.appendChild(document.createTextNode(' occluded')); box.appendChild(l3);
    if (app.can('fraud')) {
      const fk = el('input', { type: 'checkbox', class: 'pb-fake-check' }); fk.checked = !!at.fake;
      fk.addEventListener('change', () => app.change(() => { a.attributes.fake = fk.checked; }));
      const l4 = el('label'); l4.appendChild(fk); l4.appendChild(document.createTextNode(' fake damage')); box.appendChild(l4);
      const note = el('textarea', { class: 'pb-fake-note', placeholder: 'fraud note' }); note.value = at.fake_note || '';
      note.addEventListener('change', () => app.change(() => { if (note.value) a.attributes.fake_note = note.value; else delete a.attributes.fake_note; }));
      box.appendChild(note);
    } else if (at.fake) {
      box.appendChild(el('div', { class: 'pb-fake-flag' }, 'Flagged as fake damage' + (at.fake_note ? ': ' + at.fake_note : '')));
    }
    box.appendChild(el('button', { class: 'pb-delete', onclick: app.deleteSelected }, 'Delete polygon (Del)'));
    renderInstanceReview(box, a);
  }
  // The selected pending prediction: what the model says, and the two decisions on it.
  function renderPredCard(box, p) {
    const side = app.sideConflict(p);
    box.appendChild(el('div', { class: 'pb-sel-class pb-sel-pred' }, `Prediction: ${app.predName(p)} (${p.group}) · score ${p.score.toFixed(2)}` + (side ? ' · side?' : '')));
    if (side) box.appendChild(el('div', { class: 'pb-hint' }, side));
    box.appendChild(el('button', { class: 'pb-pred-accept', onclick: () => app.acceptPred(p.id) }, 'Accept (Y)'));
    box.appendChild(el('button', { class: 'pb-pred-reject', onclick: () => app.rejectPred(p.id) }, 'Reject (X)'));
    box.appendChild(el('div', { class: 'pb-hint' }, 'Click again or press Tab for the next shape under the pointer.'));
  }
  // A reviewer's verdict on this one instance; everyone sees the verdict and its reason.
  function renderInstanceReview(box, a) {
    const wrap = el('div', { class: 'pb-inst-review' });
    if (a.review_state) wrap.appendChild(el('div', { class: 'pb-inst-state pb-inst-' + a.review_state }, `${a.review_state} by ${a.reviewed_by || '?'}${a.review_reason ? ': ' + a.review_reason : ''}`));
    if (app.can('review') && S.mode === 'review') {
      if (a.id == null || !S.serverIds.has(a.id)) wrap.appendChild(el('div', { class: 'pb-hint' }, 'Saving… the verdict buttons come when this polygon is saved.'));
      else {
        const reason = el('input', { class: 'pb-inst-reason', placeholder: 'reason (required to reject)' });
        wrap.appendChild(el('button', { class: 'pb-inst-accept', onclick: () => reviewInstance(a, 'accepted', reason.value) }, 'Accept instance'));
        wrap.appendChild(reason);
        wrap.appendChild(el('button', { class: 'pb-inst-reject', onclick: () => reviewInstance(a, 'rejected', reason.value) }, 'Reject instance'));
      }
    }
    if (wrap.childNodes.length) box.appendChild(wrap);
  }
  async function reviewInstance(a, decision, reason) {
    if (!S.image) return;
    try {
      const r = await app.api('POST', `/images/${S.image.id}/annotations/${a.id}/review`, { decision, reason: reason || null });
      a.review_state = r.annotation.review_state; a.review_reason = r.annotation.review_reason; a.reviewed_by = r.annotation.reviewed_by;
      S.image.status = r.image.status; S.image.review_comment = r.image.review_comment; S.image.rejected_for = r.image.rejected_for;
      app.msg(`Instance ${a.id} ${decision}` + (r.image.status === 'rejected' ? `; photo ${S.image.id} is rejected.` : '.'));
      renderWorkflow(); renderAttrs();
    } catch (e) { app.msg(e.message, true); }
  }
  function renderPredList() {
    const list = $('.pb-predlist'); if (!list) return; list.textContent = '';
    for (const p of app.pendingPreds()) {
      if (S.hidden.has(p.group)) continue;
      const row = el('div', { class: 'pb-pred-row' + (p.id === S.selPred ? ' pb-selected' : ''), 'data-pid': p.id });
      row.addEventListener('click', (e) => { if (e.target.tagName !== 'BUTTON') app.select('p:' + p.id); });
      const side = app.sideConflict(p);
      row.appendChild(el('span', side ? { title: side } : {}, `${app.predName(p)} ${p.score.toFixed(2)} ` + (side ? '· side? ' : '')));
      row.appendChild(el('button', { class: 'pb-pred-accept', onclick: () => app.acceptPred(p.id) }, 'accept'));
      row.appendChild(el('button', { class: 'pb-pred-reject', onclick: () => app.rejectPred(p.id) }, 'reject'));
      list.appendChild(row);
    }
  }
  function renderProgress() {
    const q = S.queue, p = q && q.progress;
    renderFilterCount();
    $('.pb-progress').textContent = q ? `${q.position || '-'} / ${q.queue_length} in queue · ${p.done} / ${p.total} done` : '';
  }
  // The Filters button says how many filters narrow the queue, as its selects are out of sight.
  function renderFilterCount() {
    const n = app.FILTERS.filter(([k]) => S.filters[k]).length, d = $('.pb-filters');
    if (!d) return;
    d.classList.toggle('pb-filtered', n > 0);
    $('.pb-filter-n').textContent = n ? ` (${n})` : '';
  }
  // Both versions side by side after a 409; the user picks one (bound in input.js).
  function showConflict(d) {
    const box = $('.pb-conflict'); box.hidden = false;
    $('.pb-conflict-msg').textContent = `Conflict: ${d.message}. Your version is based on version ${d.your_version}; the saved version is ${d.current_version}. Nothing was overwritten.`;
    const fill = (ul, items) => { ul.textContent = ''; for (const a of items) ul.appendChild(el('li', {}, `${app.cls(a.class_id).display_name}${a.attributes && a.attributes.fake ? ' (fake)' : ''} · ${a.geometry.length} part(s)`)); if (!items.length) ul.appendChild(el('li', {}, '(none)')); };
    fill($('.pb-conflict-mine'), S.anns);
    fill($('.pb-conflict-theirs'), d.current_annotations);
    $('.pb-save').textContent = 'CONFLICT';
    app.msg('Conflict: someone else saved this photo first. Choose a version above.', true);
  }

  return { buildShell, renderClassList, renderSide, renderWorkflow, renderAttrs, renderPredList, renderProgress, showConflict };
}
