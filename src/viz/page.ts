// The attention page: one self-contained HTML file (the image inlined as a data URL, the
// attention numbers as JSON, the drawing code inline) where hovering a word shows where the model
// looked while writing it, with layer/head selectors (or their average), the self-attention matrix
// and the expert routing per word. No runtime APIs: the CLI writes it to disk, the demo app
// serves it or mounts the same data.
import type { RGBImage } from '../data/images.ts';
import { colormapLUT, type ColormapName } from './colormap.ts';
import { type AttentionTrace, selfRow } from './heatmap.ts';
import { type ExpertUsage, usageShares } from './experts.ts';
import { matrixFigure, pngDataUrl, Raster } from './png.ts';

export interface AttentionPageData {
  title: string;
  /** The generated report as text. */
  report: string;
  /** Word written at each step. */
  words: string[];
  /** Token fed at each position (<sos>, then the words): the self-attention columns. */
  inputs: string[];
  layers: number;
  heads: number;
  grid: number;
  numExperts: number;
  /** Side of the displayed image in pixels. */
  displaySize: number;
  /** The image as the model saw it (centre crop), PNG data URL. */
  image: string;
  colormap: ColormapName;
  /** 256 × RGB colour table. */
  lut: number[];
  /** cross[t][l][h]: grid² weights. */
  cross: number[][][][];
  /** self[t][l][h]: t + 1 weights. */
  self: number[][][][];
  /** experts[t][l]. */
  experts: { experts: number[]; weights: number[] }[][];
  usage?: { counts: number[][]; shares: number[][]; tokens: number };
  /** Extra PNG figures (name, data URL) shown at the bottom. */
  figures: { name: string; src: string }[];
  notes: string[];
  /** Other explanation methods (src/viz/explain.ts): the page offers them next to layer/head. */
  explain?: PageExplain;
}

/** Per method, per step: the grid² map, a finer square map where the method has one, and per-head maps. */
export interface PageExplain {
  /** Method shown first ('attention' = the raw cross-attention above). */
  initial: string;
  maps: Record<string, { grid: number[]; fine?: { size: number; values: number[] }; perHead?: number[][][] }[]>;
}

/** Finest map side kept in the page (larger maps are averaged down: a 224² saliency map per word would make the page tens of MB). */
export const PAGE_FINE_MAX = 64;

/** Averages a square side×side map down to at most `max` per side (adaptive-pool bins). */
export function shrinkSquare(values: ArrayLike<number>, side: number, max = PAGE_FINE_MAX): { size: number; values: number[] } {
  if (side <= max) return { size: side, values: Array.from(values, f32) };
  const bins = Array.from({ length: max }, (_, i) => [Math.floor((i * side) / max), Math.ceil(((i + 1) * side) / max)]);
  const out: number[] = [];
  for (const [y0, y1] of bins)
    for (const [x0, x1] of bins) {
      let s = 0;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) s += values[y * side + x];
      out.push(f32(s / ((y1 - y0) * (x1 - x0))));
    }
  return { size: max, values: out };
}

/** f32 values printed with 9 significant digits round-trip exactly. */
const f32 = (x: number) => Number(x.toPrecision(9));

export interface PageDataOptions {
  title?: string;
  colormap?: ColormapName;
  usage?: ExpertUsage;
  figures?: { name: string; png: Uint8Array }[];
  notes?: string[];
  /** Add the self-attention matrix (averaged over layers and heads) as a PNG figure (default true). */
  selfFigure?: boolean;
  /** Explanation maps per method (one per step, square `fine` maps) and the method shown first. */
  explain?: { initial?: string; maps: Map<string, readonly { grid: ArrayLike<number>; fine?: { height: number; width: number; values: ArrayLike<number> }; perHead?: ArrayLike<number>[][] }[]> };
}

/** The page's data from a trace, the vocabulary (id → word) and the displayed image. */
export function buildAttentionPageData(tr: AttentionTrace, vocab: readonly string[], display: RGBImage, opts: PageDataOptions = {}): AttentionPageData {
  const word = (id: number) => vocab[id] ?? `<${id}>`;
  const words = tr.tokens.map(word);
  const inputs = ['<sos>', ...words.slice(0, -1)];
  const T = words.length, n2 = tr.grid * tr.grid;
  const split = (a: Float32Array, n: number) => Array.from({ length: tr.heads }, (_, h) => Array.from(a.subarray(h * n, (h + 1) * n), f32));
  const figures = (opts.figures ?? []).map((f) => ({ name: f.name, src: pngDataUrl(f.png) }));
  if ((opts.selfFigure ?? true) && T > 0) {
    const rows = Array.from({ length: T }, (_, t) => selfRow(tr, t));
    const img = matrixFigure(rows, words, inputs, { colormap: opts.colormap, title: 'self-attention, mean of layers and heads' });
    const r = new Raster(img.width, img.height);
    r.blit(img, 0, 0);
    figures.unshift({ name: 'self-attention', src: pngDataUrl(r.toPng()) });
  }
  const r = new Raster(display.width, display.height);
  r.blit(display, 0, 0);
  return {
    title: opts.title ?? 'MicarVLMoE attention',
    report: words.filter((w) => w !== '<eos>').join(' '),
    words,
    inputs,
    layers: tr.layers,
    heads: tr.heads,
    grid: tr.grid,
    numExperts: tr.numExperts,
    displaySize: display.width,
    image: pngDataUrl(r.toPng()),
    colormap: opts.colormap ?? 'viridis',
    lut: Array.from(colormapLUT(opts.colormap ?? 'viridis')),
    cross: tr.cross.slice(0, T).map((ls) => ls.map((a) => split(a, n2))),
    self: tr.self.slice(0, T).map((ls, t) => ls.map((a) => split(a, t + 1))),
    experts: tr.experts.slice(0, T).map((ls) => ls.map((e) => ({ experts: [...e.indices], weights: e.weights.map(f32) }))),
    usage: opts.usage ? { counts: opts.usage.counts, shares: usageShares(opts.usage), tokens: opts.usage.tokens } : undefined,
    figures,
    notes: opts.notes ?? [],
    explain: opts.explain && {
      initial: opts.explain.initial ?? 'attention',
      maps: Object.fromEntries([...opts.explain.maps].map(([m, list]) => [m, list.slice(0, T).map((x) => ({
        grid: Array.from(x.grid, f32),
        fine: x.fine && (x.fine.height === x.fine.width ? shrinkSquare(x.fine.values, x.fine.height) : undefined),
        perHead: x.perHead?.map((l) => l.map((h) => Array.from(h, f32))),
      }))])),
    },
  };
}

/** The averaged cross row the page shows for (t, layer, head) — the same numbers as heatmap.crossRow. */
export function pageCrossRow(d: AttentionPageData, t: number, layer: number | 'avg', head: number | 'avg'): number[] {
  const ls = layer === 'avg' ? d.cross[t].map((_, l) => l) : [layer];
  const hs = head === 'avg' ? d.cross[t][0].map((_, h) => h) : [head];
  const out = new Array(d.grid * d.grid).fill(0);
  for (const l of ls) for (const h of hs) d.cross[t][l][h].forEach((v, i) => (out[i] += v));
  return out.map((v) => v / (ls.length * hs.length));
}

/**
 * The page's drawing core as JS source: `micarVizCore()` returns { bilinearWeights, upsample,
 * colorize, meanRow }. The page runs it in the browser; tests evaluate the same text and compare
 * it with heatmap.ts, so the page draws exactly what the PNGs show.
 */
export const PAGE_CORE_JS = String.raw`
function micarVizCore() {
  function bilinearWeights(inSize, outSize) {
    var w = new Float64Array(outSize * inSize), scale = inSize / outSize;
    for (var o = 0; o < outSize; o++) {
      var src = Math.max(0, (o + 0.5) * scale - 0.5);
      var i0 = Math.min(Math.floor(src), inSize - 1), i1 = Math.min(i0 + 1, inSize - 1), l1 = src - i0;
      w[o * inSize + i0] += 1 - l1;
      w[o * inSize + i1] += l1;
    }
    return w;
  }
  function upsample(map, g, outSize) {
    var w = bilinearWeights(g, outSize), tmp = new Float64Array(g * outSize), out = new Float64Array(outSize * outSize);
    for (var r = 0; r < g; r++) for (var x = 0; x < outSize; x++) {
      var s = 0;
      for (var c = 0; c < g; c++) s += w[x * g + c] * map[r * g + c];
      tmp[r * outSize + x] = s;
    }
    for (var y = 0; y < outSize; y++) for (var r2 = 0; r2 < g; r2++) {
      var wy = w[y * g + r2];
      if (wy === 0) continue;
      for (var x2 = 0; x2 < outSize; x2++) out[y * outSize + x2] += wy * tmp[r2 * outSize + x2];
    }
    return out;
  }
  // base: RGBA pixels; returns RGBA with the colour-mapped values blended at opacity alpha.
  function colorize(base, values, lut, lo, hi, alpha) {
    var n = values.length, out = new Uint8ClampedArray(n * 4);
    for (var i = 0; i < n; i++) {
      var k = 0;
      if (hi > lo) k = Math.max(0, Math.min(255, Math.round((values[i] - lo) / (hi - lo) * 255)));
      for (var c = 0; c < 3; c++) out[4 * i + c] = Math.round((1 - alpha) * base[4 * i + c] + alpha * lut[3 * k + c]);
      out[4 * i + 3] = 255;
    }
    return out;
  }
  function meanRow(perLayer, layer, head) {
    var ls = layer === 'avg' ? perLayer.map(function (_, l) { return l; }) : [layer];
    var hs = head === 'avg' ? perLayer[0].map(function (_, h) { return h; }) : [head];
    var n = perLayer[0][0].length, out = new Array(n).fill(0);
    ls.forEach(function (l) { hs.forEach(function (h) { for (var i = 0; i < n; i++) out[i] += perLayer[l][h][i]; }); });
    return out.map(function (v) { return v / (ls.length * hs.length); });
  }
  return { bilinearWeights: bilinearWeights, upsample: upsample, colorize: colorize, meanRow: meanRow };
}
`;

const PAGE_UI_JS = String.raw`
(function () {
  var D = JSON.parse(document.getElementById('micar-data').textContent);
  var core = micarVizCore();
  var S = D.displaySize, cur = 0, pinned = -1;
  var layerSel = document.getElementById('layer'), headSel = document.getElementById('head'), alphaIn = document.getElementById('alpha');
  function opt(sel, v, label) { var o = document.createElement('option'); o.value = v; o.textContent = label; sel.appendChild(o); }
  opt(layerSel, 'avg', 'mean of layers'); for (var l = 0; l < D.layers; l++) opt(layerSel, l, 'layer ' + l);
  opt(headSel, 'avg', 'mean of heads'); for (var h = 0; h < D.heads; h++) opt(headSel, h, 'head ' + h);
  function sel(s) { return s.value === 'avg' ? 'avg' : Number(s.value); }
  var methodSel = document.getElementById('method');
  opt(methodSel, 'attention', 'attention');
  if (D.explain) Object.keys(D.explain.maps).forEach(function (m) { if (m !== 'attention') opt(methodSel, m, m); });
  if (D.explain) methodSel.value = D.explain.initial;
  var canvas = document.getElementById('map'), ctx = canvas.getContext('2d');
  canvas.width = S; canvas.height = S;
  var base = null, img = new Image();
  img.onload = function () { ctx.drawImage(img, 0, 0); base = ctx.getImageData(0, 0, S, S).data; draw(); };
  img.src = D.image;
  var fmt = function (v) { return v === 0 ? '0' : Math.abs(v) >= 0.001 && Math.abs(v) < 1000 ? String(Number(v.toPrecision(3))) : v.toExponential(2); };
  var bar = document.getElementById('bar'), bctx = bar.getContext('2d');
  bar.width = 14; bar.height = S;
  for (var y = 0; y < S; y++) { var k = Math.round((S - 1 - y) / Math.max(1, S - 1) * 255); bctx.fillStyle = 'rgb(' + D.lut[3 * k] + ',' + D.lut[3 * k + 1] + ',' + D.lut[3 * k + 2] + ')'; bctx.fillRect(0, y, 14, 1); }
  function draw() {
    var t = pinned >= 0 ? pinned : cur;
    document.querySelectorAll('.w').forEach(function (e, i) { e.classList.toggle('cur', i === t); e.classList.toggle('pin', i === pinned); });
    if (!base || !D.words.length) return;
    var method = methodSel.value, row, g = D.grid, vals, what = layerSel.selectedOptions[0].textContent + ', ' + headSel.selectedOptions[0].textContent;
    if (method === 'attention') { row = core.meanRow(D.cross[t], sel(layerSel), sel(headSel)); vals = row; }
    else {
      var m = D.explain.maps[method][t];
      if (m.perHead) { row = core.meanRow(m.perHead, sel(layerSel), sel(headSel)); vals = row; }
      else { row = m.grid; vals = m.fine ? m.fine.values : row; g = m.fine ? m.fine.size : D.grid; what = m.fine ? g + '×' + g + ' map' : D.grid + '×' + D.grid + ' grid'; }
      what = method + ', ' + what;
    }
    var up = core.upsample(vals, g, S), lo = Infinity, hi = -Infinity;
    for (var i = 0; i < up.length; i++) { if (up[i] < lo) lo = up[i]; if (up[i] > hi) hi = up[i]; }
    var px = core.colorize(base, up, D.lut, lo, hi, Number(alphaIn.value));
    ctx.putImageData(new ImageData(px, S, S), 0, 0);
    document.getElementById('hi').textContent = fmt(hi);
    document.getElementById('lo').textContent = fmt(lo);
    document.getElementById('caption').textContent = 'word ' + t + ': "' + D.words[t] + '" (' + what + ')';
    var cells = '';
    var cmax = 0; for (var q = 0; q < row.length; q++) cmax = Math.max(cmax, Math.abs(row[q]));
    for (var r = 0; r < D.grid; r++) { cells += '<tr>'; for (var c = 0; c < D.grid; c++) { var v = row[r * D.grid + c]; cells += '<td>' + (cmax >= 0.01 && cmax < 100 ? v.toFixed(3) : v.toExponential(1)) + '</td>'; } cells += '</tr>'; }
    document.getElementById('cells').innerHTML = cells;
    var ex = '<tr><th>layer</th><th>experts (gate weight)</th></tr>';
    D.experts[t].forEach(function (e, l) { ex += '<tr><td>' + l + '</td><td>' + e.experts.map(function (x, j) { return 'E' + x + ' (' + e.weights[j].toFixed(3) + ')'; }).join(', ') + '</td></tr>'; });
    document.getElementById('routing').innerHTML = ex;
    drawSelf(t);
  }
  function drawSelf(t) {
    var L = sel(layerSel), H = sel(headSel), rows = D.self.map(function (s) { return core.meanRow(s, L, H); });
    var hi = 0; rows.forEach(function (r) { r.forEach(function (v) { if (v > hi) hi = v; }); });
    var html = '<tr><th></th>' + D.inputs.map(function (w) { return '<th class="up"><span>' + esc(w) + '</span></th>'; }).join('') + '</tr>';
    rows.forEach(function (r, i) {
      html += '<tr' + (i === t ? ' class="cur"' : '') + '><th>' + esc(D.words[i]) + '</th>';
      for (var j = 0; j < D.inputs.length; j++) {
        if (j < r.length) { var k = hi > 0 ? Math.round(r[j] / hi * 255) : 0; html += '<td title="' + r[j].toFixed(4) + '" style="background:rgb(' + D.lut[3 * k] + ',' + D.lut[3 * k + 1] + ',' + D.lut[3 * k + 2] + ')"></td>'; }
        else html += '<td class="na"></td>';
      }
      html += '</tr>';
    });
    document.getElementById('self').innerHTML = html;
  }
  function esc(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'); }
  var wordsEl = document.getElementById('words');
  D.words.forEach(function (w, i) {
    var s = document.createElement('span'); s.className = 'w'; s.textContent = w; s.title = 'step ' + i;
    s.onmouseenter = function () { cur = i; draw(); };
    s.onclick = function () { pinned = pinned === i ? -1 : i; cur = i; draw(); };
    wordsEl.appendChild(s); wordsEl.appendChild(document.createTextNode(' '));
  });
  var rt = '<tr><th>word</th>' + D.experts[0].map(function (_, l) { return '<th>layer ' + l + '</th>'; }).join('') + '</tr>';
  D.words.forEach(function (w, i) { rt += '<tr><td>' + esc(w) + '</td>' + D.experts[i].map(function (e) { return '<td>' + e.experts.map(function (x, j) { return 'E' + x + ':' + e.weights[j].toFixed(2); }).join(' ') + '</td>'; }).join('') + '</tr>'; });
  document.getElementById('allrouting').innerHTML = rt;
  if (D.usage) {
    var u = '<tr><th>layer</th>' + D.usage.counts[0].map(function (_, e) { return '<th>E' + e + '</th>'; }).join('') + '</tr>';
    D.usage.counts.forEach(function (row, l) { u += '<tr><td>' + l + '</td>' + row.map(function (c, e) { return '<td>' + c + ' (' + (100 * D.usage.shares[l][e]).toFixed(1) + '%)</td>'; }).join('') + '</tr>'; });
    document.getElementById('usage').innerHTML = u;
  }
  [layerSel, headSel, alphaIn, methodSel].forEach(function (e) { e.oninput = draw; });
})();
`;

const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222}#words{font-size:18px;line-height:2;max-width:900px}
.w{padding:2px 3px;border-radius:3px;cursor:pointer}.w:hover,.w.cur{background:#fde725}.w.pin{outline:2px solid #440154}
.row{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}canvas{image-rendering:auto}#legend{display:flex;gap:4px}
#legend div{display:flex;flex-direction:column;justify-content:space-between}.note{font-size:11px;color:#666}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:2px 4px}#cells td{width:34px;text-align:right}#self td{width:12px;height:12px;padding:0}
#self td.na{background:#eee}#self th.up{height:80px;vertical-align:bottom;padding:0}#self th.up span{writing-mode:vertical-rl;transform:rotate(180deg)}
#self tr.cur th{background:#fde725}.fig img{max-width:100%}`;

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** JSON safe inside a <script> element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** The whole page as one HTML string (no external resources). */
export function renderAttentionPage(d: AttentionPageData): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(d.title)}</title><style>${CSS}</style></head>
<body>
<h1>${escapeHtml(d.title)}</h1>
<p>Hover a word to see where the model looked (decoder cross-attention over the ${d.grid}×${d.grid} image grid, bilinearly upsampled) while writing it; click to pin it.${d.explain ? ' Other methods explain the word\'s logit: rollout (attention through the residual paths), grad-attention (attention × its gradient, positive part), gradcam (on the vision encoder\'s maps), saliency (gradient × input per pixel), integrated gradients, occlusion (the drop when a window is covered); layer/head apply to attention and grad-attention.' : ''}</p>
<div id="words"></div>
<p><label>method <select id="method"></select></label> <label>layer <select id="layer"></select></label> <label>head <select id="head"></select></label>
<label>opacity <input id="alpha" type="range" min="0" max="1" step="0.05" value="0.6"></label></p>
<div class="row">
<div><canvas id="map"></canvas><div id="caption"></div></div>
<div id="legend"><canvas id="bar"></canvas><div><span id="hi"></span><span class="note">weight per<br>grid cell<br>(scale: this<br>map's range)</span><span id="lo"></span></div></div>
<div><h3>grid weights</h3><table id="cells"></table><h3>experts for this word</h3><table id="routing"></table></div>
</div>
<h2>Self-attention</h2><p>Row: the word being written; column: the token fed at that position. Same layer/head selection.</p>
<table id="self"></table>
<h2>Expert routing per word</h2><table id="allrouting"></table>
${d.usage ? `<h2>Expert usage over ${d.usage.tokens} tokens</h2><table id="usage"></table>` : ''}
${d.notes.map((n) => `<p>${escapeHtml(n)}</p>`).join('\n')}
${d.figures.map((f) => `<div class="fig"><h3>${escapeHtml(f.name)}</h3><img alt="${escapeHtml(f.name)}" src="${f.src}"></div>`).join('\n')}
<script type="application/json" id="micar-data">${scriptJson(d)}</script>
<script>${PAGE_CORE_JS}
${PAGE_UI_JS}</script>
</body></html>
`;
}
