// Class colours for the canvas: pure, no DOM (tests/test_browser_zoom.py loads it into a blank
// page). The taxonomy's own colours shade each group in one hue (26 damage reds a few units
// apart), so two neighbouring polygons of different classes look alike. Here the classes of a
// group (in id order) take colours by farthest-point sampling in OKLab, a space where equal
// distances look equally different: each next class gets the candidate colour farthest from
// every colour already given, so any two classes of a group differ as much as the number of
// classes allows. Candidates are saturated hues at lightness levels that stay visible over a
// photo; each group starts from its own hue (damage red, fake magenta, part teal).
const PBPalette = (function () {
  const LEVELS = [0.55, 0.63, 0.71, 0.79, 0.87];
  const HUE_STEP = 10;
  const MAX_CHROMA = 0.2;
  const START = { damage: [0.63, 25], fake: [0.63, 330], part: [0.79, 200] };

  function oklabToLinearRgb(L, a, b) {
    const l = (L + 0.3963377774 * a + 0.2158037573 * b) ** 3;
    const m = (L - 0.1055613458 * a - 0.0638541728 * b) ** 3;
    const s = (L - 0.0894841775 * a - 1.291485548 * b) ** 3;
    return [
      4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s,
      -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s,
      -0.0041960863 * l - 0.7034186147 * m + 1.707614701 * s,
    ];
  }
  const encode = (x) => (x <= 0.0031308 ? 12.92 * x : 1.055 * Math.pow(x, 1 / 2.4) - 0.055);
  const hex2 = (v) => Math.round(Math.min(1, Math.max(0, v)) * 255).toString(16).padStart(2, '0');

  // '#rrggbb' of OKLCH (L in 0..1, chroma, hue in degrees), chroma reduced into sRGB.
  function oklch(L, C, hue) {
    const h = (hue * Math.PI) / 180;
    for (let c = C; ; c -= 0.005) {
      const rgb = oklabToLinearRgb(L, Math.max(c, 0) * Math.cos(h), Math.max(c, 0) * Math.sin(h));
      if (c <= 0 || rgb.every((v) => v >= -1e-4 && v <= 1 + 1e-4)) return '#' + rgb.map((v) => hex2(encode(v))).join('');
    }
  }

  function oklab(L, C, hue) { const h = (hue * Math.PI) / 180; return [L, C * Math.cos(h), C * Math.sin(h)]; }
  // The candidates once: [hex, [L, a, b]] with the most chroma (up to MAX_CHROMA) in sRGB.
  let candidates = null;
  function allCandidates() {
    if (candidates) return candidates;
    candidates = [];
    for (const L of LEVELS) for (let hue = 0; hue < 360; hue += HUE_STEP) {
      const hex = oklch(L, MAX_CHROMA, hue);
      candidates.push({ hex, L, hue, lab: hexToOklab(hex) });
    }
    return candidates;
  }
  // Back from the rounded hex, so distances are those of the colours actually drawn.
  function hexToOklab(hex) {
    const lin = (i) => { const c = parseInt(hex.slice(i, i + 2), 16) / 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    const r = lin(1), g = lin(3), b = lin(5);
    const l = Math.cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
    const m = Math.cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
    const s = Math.cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
    return [0.2104542553 * l + 0.793617785 * m - 0.0040720468 * s, 1.9779984951 * l - 2.428592205 * m + 0.4505937099 * s, 0.0259040371 * l + 0.7827717662 * m - 0.808675766 * s];
  }
  const dist = (p, q) => Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);

  // {class id: '#rrggbb'} for [{id, group}, ...].
  function classColors(classes) {
    const out = {};
    const byGroup = {};
    for (const c of classes) (byGroup[c.group] = byGroup[c.group] || []).push(c);
    const cands = allCandidates();
    for (const [g, list] of Object.entries(byGroup)) {
      const [L0, h0] = START[g] || [0.71, 90];
      const near = oklab(L0, MAX_CHROMA, h0);
      // Farthest-point sampling; minD[i]: candidate i's distance to the nearest colour given.
      const minD = cands.map((c) => -dist(c.lab, near)); // the first pick: nearest the start
      list.slice().sort((a, b) => a.id - b.id).forEach((c) => {
        let best = 0;
        for (let i = 1; i < cands.length; i++) if (minD[i] > minD[best]) best = i;
        out[c.id] = cands[best].hex;
        const p = cands[best].lab;
        for (let i = 0; i < cands.length; i++) {
          const d = dist(cands[i].lab, p);
          minD[i] = minD[i] < 0 ? d : Math.min(minD[i], d);
        }
      });
    }
    return out;
  }

  // Colours of two groups closer than this (OKLab) would read as one class on a photo.
  const MIN_ACROSS = 0.08;
  // The colours of the classes on one photo: {class id: '#rrggbb'} for present [{id, group}],
  // from `colors` (classColors'). Each group is sampled on its own, so a damage class and a part
  // class may look alike; only the classes present need to differ, so a clash is resolved here,
  // per photo: a class whose colour lies within MIN_ACROSS of a present class of another group
  // (damage first, then fake, then part, each in id order) takes the candidate farthest from
  // every colour kept so far. Classes of one group keep their colours.
  function photoColors(present, colors) {
    const order = { damage: 0, fake: 1, part: 2 };
    const list = present.slice().sort((a, b) => (order[a.group] ?? 3) - (order[b.group] ?? 3) || a.id - b.id);
    const kept = []; // [group, lab]
    const out = {};
    for (const c of list) {
      let hex = colors[c.id];
      if (!hex) continue;
      let lab = hexToOklab(hex);
      if (kept.some(([g, q]) => g !== c.group && dist(q, lab) < MIN_ACROSS)) {
        let best = null, bestD = -1;
        for (const cand of allCandidates()) {
          const d = Math.min(...kept.map(([, q]) => dist(q, cand.lab)));
          if (d > bestD) { bestD = d; best = cand; }
        }
        hex = best.hex; lab = best.lab;
      }
      kept.push([c.group, lab]); out[c.id] = hex;
    }
    return out;
  }

  return { classColors, photoColors, hexToOklab, MIN_ACROSS };
})();
