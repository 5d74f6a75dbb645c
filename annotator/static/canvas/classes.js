// Fuzzy class search for the class picker: a line-for-line port of core/fuzzy.py (read its
// docstring for the rules). Pure, like geometry.js: tests/test_fuzzy.py loads this file alone
// into a blank page and checks it gives core.fuzzy's scores on a shared table of queries.
// Change one only together with the other.
const PBFuzzy = (function () {
  'use strict';

  const ABBREVIATIONS = {
    fl: ['front', 'left'], fr: ['front', 'right'], rl: ['rear', 'left'], rr: ['rear', 'right'],
    lf: ['left', 'front'], rf: ['right', 'front'], lr: ['left', 'rear'],
    lh: ['left'], rh: ['right'], l: ['left'], r: ['right'],
  };
  const MIN_SIMILARITY = 0.75;
  const EXTRA_WORD_PENALTY = 0.02;

  function words(text) { return String(text).toLowerCase().split(/[^a-z0-9]+/).filter((w) => w); }

  function editDistance(a, b) {
    const rows = [];
    for (let i = 0; i <= a.length; i++) { rows.push(new Array(b.length + 1).fill(0)); rows[i][0] = i; }
    for (let j = 0; j <= b.length; j++) rows[0][j] = j;
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        const cost = a[i - 1] === b[j - 1] ? 0 : 1;
        let best = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
        if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2][j - 2] + 1);
        rows[i][j] = best;
      }
    }
    return rows[a.length][b.length];
  }

  function wordScore(q, w) {
    if (q === w) return 1.0;
    if (w.startsWith(q)) return 0.9;
    if (q.length >= 3 && w.includes(q)) return 0.7;
    if (q.length >= 4) {
      const similarity = 1 - editDistance(q, w) / Math.max(q.length, w.length);
      if (similarity >= MIN_SIMILARITY) return 0.8 * similarity;
    }
    return 0.0;
  }

  function readingScore(query, text) {
    let total = 0.0;
    for (const q of query) {
      let best = 0.0;
      for (const w of text) best = Math.max(best, wordScore(q, w));
      if (best === 0.0) return 0.0;
      total += best;
    }
    return total / query.length - EXTRA_WORD_PENALTY * Math.max(0, text.length - query.length);
  }

  function readings(query) {
    const typed = words(query);
    const expanded = [];
    for (const q of typed) expanded.push(...(ABBREVIATIONS[q] || [q]));
    return expanded.join(' ') === typed.join(' ') ? [typed] : [typed, expanded];
  }

  // Python's round(x, 6) for the scores here (never halfway cases that matter at 1e-6).
  const round6 = (x) => Math.round(x * 1e6) / 1e6;

  function textScore(query, text) {
    const textWords = words(text);
    if (!textWords.length) return 0.0;
    let best = 0.0;
    for (const reading of readings(query)) {
      if (!reading.length) continue;
      best = Math.max(best, readingScore(reading, textWords));
      const joined = reading.join(''), textJoined = textWords.join('');
      if (joined === textJoined) best = Math.max(best, 1.0);
      else if (joined.length >= 4 && textJoined.includes(joined)) best = Math.max(best, 0.6);
    }
    return round6(best);
  }

  function bestScore(query, texts) { let b = 0.0; for (const t of texts) b = Math.max(b, textScore(query, t)); return b; }

  // [[index, score], ...] of the entries (each a list of texts) matching query, best first.
  function rank(query, entries) {
    if (!words(query).length) return entries.map((_, i) => [i, 0.0]);
    const hits = entries.map((texts, i) => [i, bestScore(query, texts)]).filter((h) => h[1] > 0);
    hits.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    return hits;
  }

  // The texts a taxonomy class (as /api/taxonomy lists it) is searched by.
  function classTexts(c) { return [c.name, c.display_name, ...(c.synonyms || [])]; }

  return Object.freeze({ words, editDistance, wordScore, readings, textScore, bestScore, rank, classTexts });
})();
