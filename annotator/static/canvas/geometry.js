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

  return Object.freeze({
    rings, ringOf, distance, bbox, normalBox, ringArea, polygonArea, shapeArea,
    inRing, inPolygon, inShape, closestOnSegment, nearestEdge, translated, partSuggestion,
  });
})();
