// Pure polygon geometry for the canvas: no DOM, no widget state, no server. It is one object so
// that a test page can load this file alone (tests/test_canvas_geometry.py checks it in Chromium
// against core/geometry.py, whose conventions it follows).
//
// Coordinates are original image pixels. A geometry is the API's JSON form,
// [{exterior: [[x, y], ...], holes: [[[x, y], ...], ...]}, ...]; rings are stored open (the first
// point is not repeated). Within a polygon, ring index ri 0 is the exterior and ri k is hole k - 1,
// the order the canvas numbers vertex handles in.
const PBGeometry = (function () {
  'use strict';

  function rings(poly) { return [poly.exterior, ...(poly.holes || [])]; }
  function ringOf(geometry, pi, ri) { return ri === 0 ? geometry[pi].exterior : geometry[pi].holes[ri - 1]; }
  function distance(a, b) { return Math.hypot(a[0] - b[0], a[1] - b[1]); }

  // [x0, y0, x1, y1] over the exteriors only: holes lie inside them (core's Shape.bbox).
  function bbox(geometry) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const p of geometry) for (const q of p.exterior) { x0 = Math.min(x0, q[0]); y0 = Math.min(y0, q[1]); x1 = Math.max(x1, q[0]); y1 = Math.max(y1, q[1]); }
    return [x0, y0, x1, y1];
  }
  // A box dragged in any direction, as [left, top, right, bottom].
  function normalBox(b) { return [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])]; }

  // Unsigned shoelace area, like core.geometry.ring_area: orientation carries no meaning here.
  function ringArea(ring) {
    let s = 0;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) s += ring[j][0] * ring[i][1] - ring[i][0] * ring[j][1];
    return Math.abs(s) / 2;
  }
  // Exterior minus holes, never negative (core's Polygon.area); parts add up (Shape.area).
  function polygonArea(poly) { return Math.max(0, ringArea(poly.exterior) - (poly.holes || []).reduce((s, h) => s + ringArea(h), 0)); }
  function shapeArea(geometry) { return geometry.reduce((s, p) => s + polygonArea(p), 0); }

  // Even-odd ray crossing. A point exactly on an edge may go either way, as with any such test.
  function inRing(pt, ring) {
    let inside = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i], [xj, yj] = ring[j];
      if ((yi > pt[1]) !== (yj > pt[1]) && pt[0] < ((xj - xi) * (pt[1] - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  // Rings of one polygon combine even-odd and polygons unite: the rule core.geometry.shape_to_mask
  // rasterises with, so a hit here is a pixel there.
  function inPolygon(pt, poly) { return rings(poly).reduce((n, r) => n + (inRing(pt, r) ? 1 : 0), 0) % 2 === 1; }
  function inShape(pt, geometry) { return geometry.some((p) => inPolygon(pt, p)); }

  // The point of segment p0-p1 closest to pt, and its distance. A zero-length segment is its end.
  function closestOnSegment(pt, p0, p1) {
    const dx = p1[0] - p0[0], dy = p1[1] - p0[1], L = dx * dx + dy * dy || 1e-9;
    const t = Math.max(0, Math.min(1, ((pt[0] - p0[0]) * dx + (pt[1] - p0[1]) * dy) / L));
    const x = p0[0] + t * dx, y = p0[1] + t * dy;
    return { x, y, d: Math.hypot(pt[0] - x, pt[1] - y) };
  }
  // The edge of any ring nearest to pt, for inserting a vertex where the user clicks an outline:
  // i is the index the new vertex takes in ring (pi, ri), q the click projected onto the edge
  // (rounded to 0.01 px like pointer positions), d its distance. The first edge wins a tie.
  function nearestEdge(geometry, pt) {
    let best = null;
    geometry.forEach((poly, pi) => rings(poly).forEach((ring, ri) => {
      for (let i = 0; i < ring.length; i++) {
        const c = closestOnSegment(pt, ring[i], ring[(i + 1) % ring.length]);
        if (!best || c.d < best.d) best = { pi, ri, i: i + 1, d: c.d, q: [Math.round(c.x * 100) / 100, Math.round(c.y * 100) / 100] };
      }
    }));
    return best;
  }

  function translated(geometry, dx, dy) {
    return geometry.map((p) => ({ exterior: p.exterior.map((q) => [q[0] + dx, q[1] + dy]), holes: (p.holes || []).map((h) => h.map((q) => [q[0] + dx, q[1] + dy])) }));
  }

  // Which part a damage most likely sits on: of the candidates ({class_id, geometry}), the one
  // whose bounding box covers the largest share of this geometry's bounding box. Boxes, not
  // polygons: cheap enough to run on every render, and a suggestion only. Returns {id, ov} with
  // ov in (0, 1], or null when no box overlaps; the first candidate wins a tie.
  function partSuggestion(geometry, candidates) {
    const [x0, y0, x1, y1] = bbox(geometry), area = Math.max((x1 - x0) * (y1 - y0), 1e-6);
    let best = null;
    for (const b of candidates) {
      const [u0, v0, u1, v1] = bbox(b.geometry);
      const ov = Math.max(0, Math.min(x1, u1) - Math.max(x0, u0)) * Math.max(0, Math.min(y1, v1) - Math.max(y0, v0)) / area;
      if (ov > 0 && (!best || ov > best.ov)) best = { id: b.class_id, ov };
    }
    return best;
  }

  // ---- class labels that never overlap ----
  // Where each label goes, given [{x, y, w, h}] boxes (top left, size; any one unit) at the
  // places wanted, in the order to place them: each keeps its place unless its box would come
  // closer than `gap` to a label already placed; then it moves `indent` right (room for a leader
  // line) and down to the highest clear spot just under a placed label (its bottom plus `gap`).
  // Returns [{x, y, moved}] in the same order: the first label never moves, a label never moves
  // up, and no two placed boxes come closer than `gap`.
  function placeLabels(boxes, gap = 0, indent = 0) {
    const placed = [];
    const clear = (x, y, b) => !placed.some((p) => x < p.x + p.w + gap && p.x < x + b.w + gap && y < p.y + p.h + gap && p.y < y + b.h + gap);
    return boxes.map((b) => {
      let x = b.x, y = b.y;
      if (!clear(x, y, b)) {
        x = b.x + indent;
        // Below the lowest placed label is always clear, so one of these fits.
        const under = [...new Set(placed.map((p) => p.y + p.h + gap))].filter((v) => v >= b.y).sort((u, v) => u - v);
        y = under.find((v) => clear(x, v, b));
      }
      placed.push({ x, y, w: b.w, h: b.h });
      return { x, y, moved: x !== b.x || y !== b.y };
    });
  }

  // ---- picking among overlapping shapes ----
  // The refs of the shapes ([{ref, geometry, rank}]) that hold pt, in the order a click picks
  // them: lower rank first (the canvas ranks the user's own polygons before pending
  // predictions, so a prediction drawn over a polygon never takes its clicks), then the smaller
  // area first (a shape inside another stays reachable), then the given order.
  function hitsAt(pt, shapes) {
    return shapes
      .map((s, i) => ({ s, i, area: shapeArea(s.geometry) }))
      .filter((h) => inShape(pt, h.s.geometry))
      .sort((a, b) => (a.s.rank || 0) - (b.s.rank || 0) || a.area - b.area || a.i - b.i)
      .map((h) => h.s.ref);
  }
  // The ref after (dir 1) or before (dir -1) current in refs, wrapping round; the first (or,
  // backwards, the last) when current is not among them; null for no refs.
  function cycle(refs, current, dir = 1) {
    if (!refs.length) return null;
    const i = refs.indexOf(current);
    if (i < 0) return dir < 0 ? refs[refs.length - 1] : refs[0];
    return refs[(i + dir + refs.length) % refs.length];
  }

  // ---- what a save accepts (core.geometry.check_geometry), step for step ----
  // numpy's round(x, 2): scale, round half to even, scale back.
  function roundTo(x, ndigits) {
    const k = Math.pow(10, ndigits), y = x * k;
    let r = Math.round(y);
    if (r - y === 0.5 && r % 2 !== 0) r -= 1;
    return r / k;
  }
  const isNum = (v) => typeof v === 'number';
  // core.geometry.as_ring: [[x, y], ...] or flat [x0, y0, ...]; a repeated first point dropped.
  function asRing(points, where) {
    let pts;
    if (Array.isArray(points) && points.every(isNum)) {
      if (points.length % 2) throw new Error(`${where}: a flat coordinate list needs an even length, got ${points.length}`);
      pts = []; for (let i = 0; i < points.length; i += 2) pts.push([points[i], points[i + 1]]);
    } else if (Array.isArray(points) && points.every((q) => Array.isArray(q) && q.length === 2 && q.every(isNum))) {
      pts = points.map((q) => [q[0], q[1]]);
    } else throw new Error(`${where}: expected points shaped (K, 2)`);
    if (!pts.every((q) => Number.isFinite(q[0]) && Number.isFinite(q[1]))) throw new Error(`${where}: coordinates must be finite numbers (found NaN or infinity)`);
    const n = pts.length;
    if (n > 1 && pts[0][0] === pts[n - 1][0] && pts[0][1] === pts[n - 1][1]) pts.pop();
    if (pts.length < 3) throw new Error(`${where}: a polygon needs at least 3 points, got ${pts.length}`);
    return pts;
  }
  // Shape.from_json: the holes of a polygon are read before its exterior, as there.
  function parseShape(data) {
    if (!Array.isArray(data) || !data.length) throw new Error('geometry must be a non-empty list of polygons');
    return data.map((p, i) => {
      if (!p || typeof p !== 'object' || Array.isArray(p) || !('exterior' in p)) throw new Error(`polygon ${i + 1}: expected an object with 'exterior'`);
      const holes = (p.holes || []).map((h, j) => asRing(h, `polygon ${i + 1}, hole ${j + 1}`));
      return { exterior: asRing(p.exterior, `polygon ${i + 1}`), holes };
    });
  }
  // Twice the area in (10^-ndigits px)^2 as an exact integer (core's _area_units).
  function areaUnits(ring, ndigits) {
    const k = Math.pow(10, ndigits);
    const xs = ring.map((q) => Math.round(q[0] * k)), ys = ring.map((q) => Math.round(q[1] * k));
    const x0 = xs[0], y0 = ys[0];
    for (let i = 0; i < xs.length; i++) { xs[i] -= x0; ys[i] -= y0; }
    let s = 0;
    for (let i = 0, j = xs.length - 1; i < xs.length; j = i++) s += xs[j] * ys[i] - xs[i] * ys[j];
    return Math.abs(s);
  }
  // core's check_vertex_limit: per polygon, then all parts together.
  function checkVertices(shape, maxVertices) {
    if (!maxVertices) return;
    const limit = maxVertices.toLocaleString('en-US'), setting = 'setting PANELBEATER_MAX_VERTICES_PER_POLYGON';
    let total = 0;
    shape.forEach((p, i) => {
      const n = rings(p).reduce((t, r) => t + r.length, 0);
      if (n > maxVertices) throw new Error(`polygon ${i + 1} has ${n.toLocaleString('en-US')} points, more than the limit of ${limit}; simplify it, or raise the limit (${setting})`);
      total += n;
    });
    if (total > maxVertices) throw new Error(`its ${shape.length.toLocaleString('en-US')} parts have ${total.toLocaleString('en-US')} points together, more than the limit of ${limit}; simplify them, or raise the limit (${setting})`);
  }
  // core's image_reach: the image grown on every side by half its longer side.
  function imageReach(width, height) { const s = 0.5 * Math.max(width, height); return [-s, -s, width + s, height + s]; }
  // One Sutherland-Hodgman pass (core's _clip_ring_half), float for float.
  function clipHalf(ring, axis, bound, keepAbove) {
    const out = [], n = ring.length;
    for (let i = 0; i < n; i++) {
      const p = ring[i], q = ring[(i + 1) % n], a = p[axis], b = q[axis];
      const inA = keepAbove ? a >= bound : a <= bound, inB = keepAbove ? b >= bound : b <= bound;
      if (inA) out.push(p);
      if (inA !== inB) {
        const t = (bound - a) / (b - a), c = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])];
        c[axis] = bound;
        out.push(c);
      }
    }
    return out;
  }
  // core's _clip_to_image: each ring clipped to the image; rings of fewer than 3 points dropped.
  function clipToImage(shape, width, height) {
    const clip = (ring) => {
      for (const [axis, bound, above] of [[0, 0, true], [0, width, false], [1, 0, true], [1, height, false]]) ring = clipHalf(ring, axis, bound, above);
      return ring.length >= 3 ? ring : null;
    };
    const out = [];
    for (const p of shape) {
      const exterior = clip(p.exterior);
      if (exterior) out.push({ exterior, holes: p.holes.map(clip).filter((h) => h) });
    }
    return out;
  }
  // Why a save would refuse this geometry on a width x height photo, as the server words it
  // (after "annotation N: "), or null when it would store it (a shape reaching far outside the
  // photo is stored clipped to it).
  function check(geometry, width, height, maxVertices, ndigits = 2) {
    try {
      let shape = parseShape(geometry);
      checkVertices(shape, maxVertices);
      const r = (ring) => ring.map((q) => [roundTo(q[0], ndigits), roundTo(q[1], ndigits)]);
      const rounded = (s) => parseShape(s.map((p) => ({ exterior: r(p.exterior), holes: p.holes.map(r) })));
      shape = rounded(shape);
      const outside = `polygon lies outside the ${width}x${height} image`;
      const [x0, y0, x1, y1] = bbox(shape.flatMap((p) => rings(p).map((ring) => ({ exterior: ring }))));
      const [lx0, ly0, lx1, ly1] = imageReach(width, height);
      if (x1 < lx0 || y1 < ly0 || x0 > lx1 || y0 > ly1) throw new Error(outside);
      if (x0 < lx0 || y0 < ly0 || x1 > lx1 || y1 > ly1) {
        const cut = clipToImage(shape, width, height);
        if (!cut.length) throw new Error(outside);
        shape = rounded(cut);
        checkVertices(shape, maxVertices);
      }
      let total = 0;
      for (const p of shape) total += Math.max(0, areaUnits(p.exterior, ndigits) - p.holes.reduce((t, h) => t + areaUnits(h, ndigits), 0));
      if (total <= 0) throw new Error('polygon has zero area');
      return null;
    } catch (e) { return e.message; }
  }

  // ---- repairing a ring that crosses itself (core.geometry.split_ring), step for step ----
  function orient(p, q, r) { return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]); }
  // Where a-b and c-d cross inside both (rounded like a save); touching or overlapping is no crossing.
  function crossing(a, b, c, d) {
    const o1 = orient(a, b, c), o2 = orient(a, b, d), o3 = orient(c, d, a), o4 = orient(c, d, b);
    if (!(((o1 > 0 && o2 < 0) || (o1 < 0 && o2 > 0)) && ((o3 > 0 && o4 < 0) || (o3 < 0 && o4 > 0)))) return null;
    const t = o3 / (o3 - o4);
    return [roundTo(a[0] + t * (b[0] - a[0]), 2), roundTo(a[1] + t * (b[1] - a[1]), 2)];
  }
  // The ring cut at its first crossing into two loops, each cut again: a bow-tie becomes its
  // two triangles; a simple ring comes back alone.
  function splitRing(ring) {
    const pts = ring.map((q) => [q[0], q[1]]), n = pts.length;
    for (let i = 0; i < n; i++) {
      const a = pts[i], b = pts[(i + 1) % n];
      for (let j = i + 2; j < n; j++) {
        if (i === 0 && j === n - 1) continue;
        const p = crossing(a, b, pts[j], pts[(j + 1) % n]);
        if (p) return [...splitRing([p, ...pts.slice(i + 1, j + 1)]), ...splitRing([p, ...pts.slice(j + 1), ...pts.slice(0, i + 1)])];
      }
    }
    return [pts];
  }
  // core.geometry.repair_geometry: every self-crossing ring split; an outline into polygons, a
  // hole into holes, each hole with the first new polygon that holds its first point.
  function repair(geometry, maxPoints = 2000) {
    const split = (r) => (r.every((q) => Array.isArray(q)) && r.length >= 3 && r.length <= maxPoints ? splitRing(r) : [r]);
    const out = [];
    for (const p of geometry) {
      const parts = split(p.exterior);
      const holes = [];
      for (const h of p.holes || []) holes.push(...split(h));
      if (parts.length === 1) { out.push({ exterior: parts[0], holes }); continue; }
      const polys = parts.map((r) => ({ exterior: r, holes: [] }));
      for (const h of holes) (polys.find((q) => inRing(h[0], q.exterior)) || polys[0]).holes.push(h);
      out.push(...polys);
    }
    return out;
  }

  return Object.freeze({
    rings, ringOf, distance, bbox, normalBox, ringArea, polygonArea, shapeArea,
    inRing, inPolygon, inShape, closestOnSegment, nearestEdge, translated, partSuggestion, placeLabels, hitsAt, cycle,
    roundTo, check, splitRing, repair,
  });
})();
