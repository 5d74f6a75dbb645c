// Panelbeater workspace widget: the entry point, joined last. annotator/canvas.py joins the files
// of static/canvas/ in a fixed order into the one text Gradio's gr.HTML runs as js_on_load, with
// `element`, `props` and `watch` in scope.
//
// The server is authoritative: every change is PUT to /api at once (autosave), with the image's
// annotation version for optimistic locking. Coordinates are original image pixels everywhere:
// the SVG viewBox is in image pixels and pointer positions go through getScreenCTM().inverse().
//
// Every other file defines one factory, PBName(app), returning its functions. They are merged
// into `app`, and a module calls another's function as app.name(...), so each dependency across
// modules shows at the call. Factories may read app's fields and PBDom's functions (merged first)
// when they are made, but other modules' functions only when called.
const SHORTCUTS = __SHORTCUTS__;
const S = {
  session: null, classes: [], byId: {}, mode: 'annotate', filters: {}, image: null, anns: [], preds: [],
  serverIds: new Set(), sel: null, selV: null, selPred: null, tool: 'select', draw: null,
  assist: { points: [], labels: [], box: null, preview: null }, hidden: new Set(), recent: [],
  // Photos whose edits this browser kept, offered back since sign-in or reopen (navigate.js).
  keptOffer: [],
  undo: [], redo: [], saving: false, dirty: false, conflict: null, currentClass: null, uid: 1,
  // Per open photo (edits.js): refused shapes by key, the last save's error, edit counters.
  rejected: new Map(), saveError: null, drawError: null, changeSeq: 0, savedSeq: 0, maxVertices: null,
  drag: null, vb: null, space: false, queue: null, tolerance: 1.0,
  stats: { saves: 0, lastSaved: 0, lastRelease: 0, drawn: 0, drawnAt: 0, assists: 0, lastAssist: 0, frames: 0 },
};
// Tests and benchmarks read the state and call openImage/step/setMode through this.
window.__pb = S;

const app = {
  S,
  root: element.querySelector('.pb-root') || element,
  SHORTCUTS,
  GROUPS: ['damage', 'fake', 'part'],
  // The toolbar's filter selects, by query parameter.
  FILTERS: [['status', '.pb-f-status'], ['flagged', '.pb-f-flagged'], ['split', '.pb-f-split'], ['class_id', '.pb-f-class'], ['inspection_id', '.pb-f-inspection']],
  can: (p) => !!(S.session && S.session.permissions && S.session.permissions.includes(p)),
  clone: (x) => JSON.parse(JSON.stringify(x)),
  // A class the taxonomy no longer has still shows, by its id.
  cls: (id) => S.byId[id] || { id, name: 'class ' + id, display_name: 'class ' + id, group: 'damage', color: '#ff0000' },
  selAnn: () => S.anns.find((a) => a.key === S.sel) || null,
  // Predictions neither decided on nor already turned into an annotation.
  pendingPreds() {
    const used = new Set(S.anns.map((a) => a.prediction_id).filter((x) => x != null));
    return S.preds.filter((p) => p.state === 'pending' && !used.has(p.id));
  },
};
// Made one at a time, in this order, so that each factory finds PBDom's functions already merged.
const apiDeps = { token: () => S.session.token, pinnedId: () => (S.image ? S.image.id : null), keptIds: () => S.keptOffer };
for (const make of [PBDom, () => PBApi(apiDeps), PBRender, PBZoom, PBPanels, PBSides, PBEdits, PBActions, PBNavigate, PBInput]) {
  const part = make(app);
  // Object.assign would let a later module shadow an earlier one's function without a word.
  for (const name of Object.keys(part)) if (name in app) throw new Error(`canvas: two modules define ${name}`);
  Object.assign(app, part);
}

// Runs on load and whenever the widget's value (the signed-in user) changes.
async function start() {
  const { root, el } = app;
  let sess = null;
  try { sess = props.value ? JSON.parse(props.value) : null; } catch (e) { sess = null; }
  if (!sess || !sess.token) { try { sessionStorage.removeItem('pb.landed'); } catch (e) { /* private mode */ } S.session = null; root.textContent = ''; root.appendChild(el('div', { class: 'pb-hint' }, 'Sign in to start.')); return; }
  if (S.session && S.session.token === sess.token && root.querySelector('.pb-app')) return;
  S.session = sess;
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem('pb.workspace') || '{}'); } catch (e) { saved = {}; }
  if (saved.user !== sess.username) saved = {};
  const modes = { annotate: 'annotate', review: 'review', fraud: 'fraud', sides: 'dashboard' };
  S.mode = saved.mode && app.can(modes[saved.mode]) ? saved.mode : (app.can('annotate') ? 'annotate' : 'review');
  S.filters = saved.filters || {};
  // A fresh sign-in lands where the role works, at the head of that queue (where a rejected
  // photo waits for its author); a reload of the same tab comes back to where it was.
  let landed = null;
  try { landed = sessionStorage.getItem('pb.landed'); sessionStorage.setItem('pb.landed', sess.username); } catch (e) { landed = sess.username; }
  if (landed !== sess.username) { S.mode = app.landingMode(sess.role); S.filters = app.modeFilters(S.mode); saved.imageId = null; }
  S.recent = []; S.currentClass = saved.currentClass || null; S.hidden = new Set(saved.hidden || []);
  try {
    const tax = await app.api('GET', '/taxonomy');
    S.classes = tax.classes; S.byId = {}; for (const c of S.classes) S.byId[c.id] = c;
    // Distinct colours per class within each group (palette.js), in place of the taxonomy's shades.
    const pal = PBPalette.classColors(S.classes); for (const c of S.classes) c.color = pal[c.id] || c.color;
    // The recent classes (keys 1-9) follow the user, not the browser (actions.js saveRecent).
    S.recent = (await app.api('GET', '/me/recent-classes')).class_ids;
  } catch (e) { root.textContent = ''; root.appendChild(el('div', { class: 'pb-hint pb-bad' }, 'Could not load classes: ' + e.message)); return; }
  if (!S.currentClass) S.currentClass = (S.classes.find((c) => c.group === 'damage') || S.classes[0]).id;
  app.buildShell(); app.bindShell(); app.renderClassList(); app.setTool('select');
  // Edits a closed tab left in this browser: listed first, their photos kept leased meanwhile.
  S.keptOffer = app.keptPhotos().map((k) => k.image_id); app.showKept();
  // Not before the workspace is on screen: a photo from the queue is leased to its user.
  await app.whenShown(landed !== sess.username && sess.landing === 'dashboard');
  if (S.session !== sess) return; // signed out or in as someone else meanwhile
  // The lead's side list replaces the queue in its mode (sides.js).
  if (S.mode === 'sides') await app.loadSides(!saved.imageId);
  if (saved.imageId) await app.openImage(saved.imageId); else if (S.mode !== 'sides') await app.step('next', true);
}
S.openImage = app.openImage; S.step = app.step; S.setMode = app.setMode; S.zoomTo = app.zoomTo; S.zoomToSelected = app.zoomToSelected;
watch('value', start);
start();
