// The REST client and the photo cache. Every call carries the bearer token from the widget's
// value; a failed call throws an Error whose message is the server's sentence, with `status` and
// `data` attached so callers can tell a 409 conflict or a 404 apart.
//   token():    the signed-in user's bearer token, read at each call (the user may change).
//   pinnedId(): the open photo's id, whose blob is never the one evicted.
//   keptIds():  photos whose unsaved edits the workspace offers back (navigate.js showKept); the
//               server keeps their leases while each call names them (X-Kept-Edits).
function PBApi({ token, pinnedId, keptIds }) {
  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + token() };
    const kept = keptIds();
    if (kept.length) headers['X-Kept-Edits'] = kept.join(',');
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch('/api' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const d = data && data.detail;
      const err = new Error(typeof d === 'string' ? d : (d && d.message) || (d ? JSON.stringify(d) : r.statusText));
      err.status = r.status; err.data = data; throw err;
    }
    return data;
  }

  // Photos are fetched with the Authorization header and shown from blob: URLs, so the token never
  // appears in a URL (server access logs, history). A few decoded blobs are kept for prefetching;
  // the Map's insertion order makes the oldest the first evicted.
  const MAX_BLOBS = 4;
  const blobs = new Map();
  // Ask for about the screen's size in device pixels: enough to zoom in a little, far less than a
  // 12-megapixel original.
  function fileUrl(id) {
    const side = Math.min(4096, Math.max(1024, Math.round(Math.max(window.screen.width, window.screen.height) * (window.devicePixelRatio || 1))));
    return `/api/images/${id}/file?max_side=${side}`;
  }
  // A promise of a blob: URL for the photo.
  function imageBlob(id) {
    if (!blobs.has(id)) {
      const p = fetch(fileUrl(id), { headers: { Authorization: 'Bearer ' + token() } })
        .then((r) => { if (!r.ok) throw new Error(`photo ${id}: HTTP ${r.status}`); return r.blob(); })
        .then((b) => URL.createObjectURL(b));
      p.catch(() => blobs.delete(id));
      blobs.set(id, p);
      while (blobs.size > MAX_BLOBS) {
        const [oldId, oldP] = blobs.entries().next().value;
        if (oldId === pinnedId()) { blobs.delete(oldId); blobs.set(oldId, oldP); continue; }
        blobs.delete(oldId);
        // Revoke a little later: an <img> may still be decoding from it.
        oldP.then((u) => setTimeout(() => URL.revokeObjectURL(u), 1000)).catch(() => {});
      }
    }
    return blobs.get(id);
  }

  return { api, imageBlob };
}
