// The lead's "Sides to resolve" screen: instances imported from a side-less label (a "mirror",
// a "door") carry `side: unknown` on the side the label map chose. This mode lists them all, each
// with a thumbnail of its photo; a click opens the photo with the instance selected, and the
// row's buttons settle the side (POST /review/side-unknown/{id}: the class becomes that side and
// the attribute goes, recorded in the photo's history like a save).
function PBSides(app) {
  const { S, $, el, msg } = app;
  const THUMB_SIDE = 96;
  const thumbs = new Map();
  // Thumbnails are fetched with the bearer token, like the photo itself (no token in a URL).
  function thumb(imageId) {
    if (!thumbs.has(imageId)) {
      thumbs.set(imageId, fetch(`/api/images/${imageId}/file?max_side=${THUMB_SIDE}`, { headers: { Authorization: 'Bearer ' + S.session.token } })
        .then((r) => { if (!r.ok) throw new Error('HTTP ' + r.status); return r.blob(); })
        .then((b) => URL.createObjectURL(b)));
    }
    return thumbs.get(imageId);
  }
  const pretty = (name) => { const c = S.classes.find((x) => x.name === name); return c ? c.display_name : name; };
  // openFirst: also open the first listed photo (on entering the mode).
  async function loadSides(openFirst) {
    const box = $('.pb-sides'); if (!box) return;
    try { S.sides = await app.api('GET', '/review/side-unknown'); } catch (e) { msg('Could not list the instances with an unknown side: ' + e.message, true); return; }
    renderSides();
    if (openFirst && S.sides.length) await openRow(S.sides[0]);
    else if (openFirst) msg('No instance waits for its side.');
  }
  async function openRow(row) {
    if (!S.image || S.image.id !== row.image.id) await app.openImage(row.image.id);
    const a = S.anns.find((x) => x.id === row.annotation.id);
    if (a) { S.sel = a.key; S.selV = null; app.renderAll(); app.renderAttrs(); }
  }
  async function resolve(row, className) {
    try {
      await app.api('POST', `/review/side-unknown/${row.annotation.id}`, { class_name: className });
      msg(`Instance ${row.annotation.id} on ${row.image.file_name} is now ${pretty(className)}.`);
      // The server saved the photo: reopen it at the new version, or the next save would conflict.
      if (S.image && S.image.id === row.image.id) await app.openImage(row.image.id);
      await loadSides(false);
    } catch (e) { msg(e.message, true); }
  }
  function renderSides() {
    const box = $('.pb-sides'); if (!box) return;
    box.textContent = '';
    const rows = S.sides || [];
    box.appendChild(el('div', { class: 'pb-hint' }, rows.length ? `${rows.length} instance(s) imported without a side` : 'No instance waits for its side.'));
    for (const row of rows) {
      const r = el('div', { class: 'pb-side-row' + (S.image && S.image.id === row.image.id ? ' pb-selected' : ''), 'data-aid': String(row.annotation.id) });
      const img = el('img', { class: 'pb-side-thumb', alt: row.image.file_name, width: String(THUMB_SIDE) });
      thumb(row.image.id).then((u) => { img.src = u; }).catch(() => {});
      img.addEventListener('click', () => openRow(row));
      r.appendChild(img);
      const info = el('div', { class: 'pb-side-info' });
      const name = el('a', { href: '#', class: 'pb-side-open' }, `${row.image.file_name} · #${row.annotation.id}`);
      name.addEventListener('click', (e) => { e.preventDefault(); openRow(row); });
      info.appendChild(name);
      info.appendChild(el('div', {}, `imported as ${pretty(row.class_name)}, side unknown`));
      const sides = [row.class_name, row.other_side].filter((x) => x).sort();
      for (const cn of sides) info.appendChild(el('button', { class: 'pb-side-set', 'data-class': cn, onclick: () => resolve(row, cn) }, pretty(cn)));
      r.appendChild(info);
      box.appendChild(r);
    }
  }
  return { loadSides, renderSides };
}
