// The web app: WebGPU adapter check, loading a model (checkpoint, state dict + vocabulary +
// config, or a fresh tiny model), report generation word by word (greedy or beam search) with
// per-word cross-attention maps and expert routing, and fine-tuning in the tab with a live loss
// chart. All model, data, decoding, training and drawing code is the CLI's (src/); this file only
// wires it to the page. `window.micarDemo` exposes the page's state for the end-to-end test.
import { getGpu } from '../src/gpu/device.ts';
import { dispose, fromData, init, read } from '../src/graph/runtime.ts';
import { configureTuning, tuneEntries, tuningMode } from '../src/graph/tuner.ts';
import { matmul } from '../src/graph/ops/matmul.ts';
import type { RGBImage } from '../src/data/images.ts';
import { encodePng } from '../src/data/images.ts';
import { generatePhantomSample } from '../src/data/phantom.ts';
import type { DatasetFormat } from '../src/data/datasets.ts';
import type { Hypothesis } from '../src/generate/decode.ts';
import { type AttentionTrace, type ColormapName, type ExplainMap, type ExplainMethod, explainTrace, type HeadSel, type LayerSel } from '../src/viz/index.ts';
import { parsePrecision, type Precision, resolvePrecision } from '../src/model/precision.ts';
import { loadModelFiles, newTinyModel, type DemoModel, type PickedFile, type PresetName } from './model-loader.ts';
import { forgetStoredModels, listStoredModels, readStoredModel, storageAvailable, storedBytes, storeModel, type StoredModel } from './model-store.ts';
import { readSourceFiles } from '../src/model/load.ts';
import { setJpegWasm } from '../src/data/jpeg.ts';
import jpegWasmUrl from '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm?url';
import { generateBeam, generateGreedy, loadImage, type LoadedImage, modelPixels, traceHypothesis } from './generation.ts';
import { displayImage, drawAttention, drawExplanation, drawImage, drawLegend, formatWeight, type RenderedMap, routingRows } from './attention-view.ts';
import { builtInData, folderData, type FolderFile, formatDuration, modelCheckpoint, type TrainData, TrainingSession } from './training.ts';
import { drawLossChart } from './chart.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`demo: element #${id} is missing from index.html`);
  return el as T;
};

type PanelState = 'checking' | 'empty' | 'ready' | 'unsupported' | 'error';

/** Sets a panel's state attribute (styling, tests) and one of its status lines. */
export function setStatus(panelId: string, statusId: string, state: PanelState, text: string): void {
  $(panelId).dataset.state = state;
  $(statusId).textContent = text;
}

function addDetail(list: HTMLElement, name: string, value: string): void {
  const dt = document.createElement('dt');
  dt.textContent = name;
  const dd = document.createElement('dd');
  dd.textContent = value || '—';
  list.append(dt, dd);
}

function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

/** Finds the adapter and runs the kernel check; true when the GPU is usable. */
async function showAdapter(): Promise<boolean> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    setStatus(
      'adapter-panel', 'adapter-status', 'unsupported',
      'This browser has no WebGPU (navigator.gpu is missing), so the model cannot run here. Use a recent Chrome, Edge or Safari (or Firefox with WebGPU enabled), over https or localhost.',
    );
    return false;
  }
  let gpu;
  try {
    gpu = await getGpu();
  } catch (e) {
    setStatus('adapter-panel', 'adapter-status', 'error', `WebGPU is present but no device could be created: ${(e as Error).message}`);
    return false;
  }
  const info = (gpu.adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const details = $('adapter-details');
  addDetail(details, 'Adapter', gpu.adapterName);
  addDetail(details, 'Vendor', info?.vendor ?? '');
  addDetail(details, 'Architecture', info?.architecture ?? '');
  addDetail(details, 'Features', [gpu.hasF16 ? 'shader-f16' : '', gpu.hasTimestamps ? 'timestamp-query' : ''].filter(Boolean).join(', ') || 'none of shader-f16, timestamp-query');
  addDetail(details, 'Largest storage binding', formatBytes(gpu.device.limits.maxStorageBufferBindingSize));
  addDetail(details, 'Workgroup memory', formatBytes(gpu.device.limits.maxComputeWorkgroupStorageSize));
  details.hidden = false;
  $('adapter-status').textContent = `Running on ${gpu.adapterName}`;
  showPrecision();
  $('precision').addEventListener('change', showPrecision);
  $('tuning').addEventListener('change', () => void applyTuning());
  return kernelCheck();
}

/** Seconds of kernel timing per tab at most (shapes left over stay hand-picked until a later visit). */
const TUNE_BUDGET_S = 60;

/**
 * The Kernels selector: hand-picked kernels, or the autotuner (src/graph/tuner.ts) in 'cached'
 * mode: this browser's stored choices (OPFS), and shapes met for the first time timed on this
 * GPU right after the step that met them.
 */
async function applyTuning(): Promise<void> {
  const tuned = ($('tuning') as HTMLSelectElement).value === 'tuned';
  try {
    await init();
    await configureTuning(tuned ? { mode: 'cached', budgetS: TUNE_BUDGET_S, log: (l) => (log(l), showTuning()) } : 'off');
    showTuning();
  } catch (e) {
    setLine('tuning-status', `Kernel tuning is unavailable: ${errorText(e)}`, 'bad');
  }
}

function showTuning(): void {
  if (tuningMode() === 'off') return setLine('tuning-status', 'Hand-picked kernels.');
  const entries = [...tuneEntries().values()];
  const switched = entries.filter((e) => e.config !== e.hand).length;
  setLine('tuning-status', `Tuned on this GPU: ${entries.length} shape classes stored in this browser, ${switched} faster than the hand pick; new shapes are timed after the step that meets them (at most ${TUNE_BUDGET_S} s in this tab).`, 'ok');
}

/** The precision picked in the adapter panel (used for the next model loaded). */
function pickedPrecision(): Precision {
  return parsePrecision(($('precision') as HTMLSelectElement).value);
}

/** Says what the picked precision means on this adapter (auto's fallback; f16 refused without shader-f16). */
function showPrecision(): void {
  const line = $('precision-status');
  try {
    const r = resolvePrecision(pickedPrecision());
    line.textContent = r.note ?? (r.dtype === 'f16'
      ? 'f16: weights, activations and KV cache in half precision, sums in f32 (applies to the next model loaded).'
      : 'f32 everywhere (applies to the next model loaded).');
  } catch (e) {
    line.textContent = (e as Error).message;
  }
}

/** A 5×7·7×3 matmul with bias on the GPU against float64 on the CPU (loads shaders as the model will). */
async function kernelCheck(): Promise<boolean> {
  const line = $('kernel-check');
  line.textContent = 'Kernel check: running…';
  const M = 5, K = 7, N = 3;
  // Fixed, exactly representable inputs: small integers over 8.
  const A = Float32Array.from({ length: M * K }, (_, i) => ((i * 7) % 11) / 8 - 0.5);
  const B = Float32Array.from({ length: K * N }, (_, i) => ((i * 5) % 13) / 8 - 0.75);
  const bias = Float32Array.from({ length: N }, (_, i) => i / 4);
  const t0 = performance.now();
  try {
    await init();
    const a = fromData(A, [M, K]), b = fromData(B, [K, N]), c0 = fromData(bias, [N]);
    const c = matmul(a, b, { bias: c0 });
    const got = await read(c);
    dispose(a, b, c0, c);
    let num = 0, den = 0;
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = bias[n];
        for (let k = 0; k < K; k++) s += A[m * K + k] * B[k * N + n];
        num += (got[m * N + n] - s) ** 2;
        den += s * s;
      }
    const err = Math.sqrt(num / den);
    const ms = (performance.now() - t0).toFixed(0);
    if (!(err <= 1e-6)) throw new Error(`matmul differs from the CPU (relative L2 error ${err.toExponential(2)})`);
    $('adapter-panel').dataset.state = 'ready';
    line.textContent = `Kernel check: passed (matmul ${M}×${K}·${K}×${N}, ${ms} ms including shader compilation)`;
    line.className = 'status ok';
    return true;
  } catch (e) {
    $('adapter-panel').dataset.state = 'error';
    line.textContent = `Kernel check: failed: ${(e as Error).message}`;
    line.className = 'status bad';
    return false;
  }
}


// ------------------------------------------------------------------ app state

const DISPLAY = 256;
const COLORMAP: ColormapName = 'viridis';

interface AppState {
  gpuReady: boolean;
  model: DemoModel | null;
  image: (LoadedImage & { pixels: Float32Array | null; display: RGBImage | null }) | null;
  /** The shown report: tokens and their trace. */
  report: { tokens: number[]; words: string[]; trace: AttentionTrace | null; mode: 'greedy' | 'beam'; hypotheses: Hypothesis[]; explained?: Map<ExplainMethod, ExplainMap[]>; explaining?: Set<ExplainMethod> } | null;
  generating: boolean;
  step: number;
  pinned: number;
  rendered: RenderedMap | null;
  session: TrainingSession | null;
  folder: FolderFile[] | null;
  /** Models kept in this browser's storage (most recent first). */
  stored: StoredModel[];
  log: string[];
}

const app: AppState = { gpuReady: false, model: null, image: null, report: null, generating: false, step: -1, pinned: -1, rendered: null, session: null, folder: null, stored: [], log: [] };

declare global {
  interface Window {
    micarDemo?: {
      app: AppState;
      /** The current model's checkpoint bytes (what "Download checkpoint" saves). */
      checkpoint(): Promise<Uint8Array>;
      /** The canvas's RGBA pixels. */
      canvasPixels(): { width: number; height: number; data: number[] };
      /** Decodes image bytes as the page does for a picked image (RGB). */
      decodeImage(bytes: number[], name: string): Promise<{ width: number; height: number; data: number[] }>;
      /** Destroys the GPU device (tests: a device loss as a driver reset would cause). */
      loseDevice(): Promise<void>;
    };
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function log(line: string): void {
  app.log.push(line);
  console.log(`[demo] ${line}`);
}

function setPanel(panelId: string, state: string): void {
  $(panelId).dataset.state = state;
}

function setLine(id: string, text: string, kind: 'ok' | 'bad' | '' = ''): void {
  const el = $(id);
  el.textContent = text;
  el.className = `status${kind ? ' ' + kind : ''}`;
}

function button(id: string): HTMLButtonElement {
  return $<HTMLButtonElement>(id);
}

/** Enables the controls that the current state allows. */
function refreshControls(): void {
  const training = !!app.session && (app.session.state === 'running' || app.session.state === 'paused');
  const busy = app.generating;
  $<HTMLInputElement>('model-files').disabled = !app.gpuReady || training || busy;
  button('model-new').disabled = !app.gpuReady || training || busy;
  $<HTMLInputElement>('model-url').disabled = !app.gpuReady || training || busy;
  button('model-url-load').disabled = !app.gpuReady || training || busy;
  const storeBusy = $('store').dataset.state === 'saving';
  $<HTMLSelectElement>('stored-models').disabled = !app.stored.length;
  button('stored-load').disabled = !app.gpuReady || training || busy || storeBusy || !app.stored.length;
  button('stored-forget').disabled = storeBusy || !app.stored.length;
  button('generate').disabled = !app.model || !app.image?.pixels || busy;
  button('training-start').disabled = !app.model || training || busy;
  button('training-pause').disabled = !training;
  button('training-pause').textContent = app.session?.state === 'paused' ? 'Resume' : 'Pause';
  button('training-stop').disabled = !training;
  button('training-download').disabled = !app.model || busy;
}

// ------------------------------------------------------------------ model

function showModel(m: DemoModel): void {
  const c = m.cfg;
  const dl = $('model-details');
  dl.replaceChildren();
  const params = m.weights.spec.filter((e) => e.kind === 'param').reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);
  addDetail(dl, 'Source', m.source);
  addDetail(dl, 'Architecture', `${c.backbone}, d_model ${c.d_model}, ${c.num_layers}+${c.num_layers} layers, ${c.num_heads} heads, ${c.num_experts} experts (top-${c.k}, ${c.moe_mode})`);
  addDetail(dl, 'Input', `${c.image_size}×${c.image_size} px, reports ≤ ${c.text_seq_len} tokens`);
  addDetail(dl, 'Vocabulary', `${m.tokenizer.vocabSize} tokens (${m.tokenizer.cleaner} cleaning)`);
  addDetail(dl, 'Parameters', params.toLocaleString('en'));
  dl.hidden = false;
  // Layer / head selectors for the attention map.
  const fill = (id: string, n: number, label: string, avg: string) => {
    const sel = $<HTMLSelectElement>(id);
    sel.replaceChildren();
    const opt = (v: string, t: string) => {
      const o = document.createElement('option');
      o.value = v;
      o.textContent = t;
      sel.append(o);
    };
    opt('avg', avg);
    for (let i = 0; i < n; i++) opt(String(i), `${label} ${i}`);
  };
  fill('attn-layer', c.num_layers, 'layer', 'mean of layers');
  fill('attn-head', c.num_heads, 'head', 'mean of heads');
  $<HTMLInputElement>('beam-width').value = String(c.beam_width ?? 3);
  if (app.model?.cfg.batch_size) $<HTMLInputElement>('train-batch').value = String(Math.min(16, c.batch_size ?? 8));
  $<HTMLInputElement>('train-lr').value = String(c.lr ?? 1e-3);
}

async function setModel(load: () => Promise<DemoModel>, what: string): Promise<boolean> {
  setPanel('model-panel', 'loading');
  setLine('model-status', `Loading ${what}…`);
  button('model-new').disabled = true;
  try {
    const m = await load();
    const old = app.model;
    app.model = m;
    if (old && old.weights !== m.weights) dispose(...old.weights.tensors.values());
    app.session = null;
    clearReport('No report yet: choose an image and press "Generate report".');
    showModel(m);
    if (app.image) app.image = { ...app.image, pixels: modelPixels(app.image.original, m), display: displayImage(app.image.original, m.cfg, DISPLAY) };
    if (app.image?.display) drawImage($<HTMLCanvasElement>('attention-canvas'), app.image.display);
    setPanel('model-panel', 'ready');
    setLine('model-status', `Loaded: ${m.source}.`, 'ok');
    setPanel('training-panel', 'ready');
    setLine('training-status', 'Ready to fine-tune this model.');
    log(`model loaded: ${m.source}`);
    refreshControls();
    return true;
  } catch (e) {
    setPanel('model-panel', 'error');
    setLine('model-status', `Could not load the model: ${errorText(e)}`, 'bad');
    log(`model load failed: ${errorText(e)}`);
    refreshControls();
    return false;
  }
}

// ------------------------------------------------------------------ models kept in the browser

function setStore(state: 'unavailable' | 'empty' | 'ready' | 'saving' | 'error', text: string): void {
  $('store').dataset.state = state;
  setLine('store-status', text, state === 'error' ? 'bad' : undefined);
  refreshControls();
}

/** Lists the stored models in the select and says how many there are. */
async function showStored(note = ''): Promise<void> {
  if (!storageAvailable()) {
    setStore('unavailable', 'Models cannot be kept in this browser (no Cache Storage: the page needs https or localhost).');
    return;
  }
  app.stored = await listStoredModels();
  const select = $<HTMLSelectElement>('stored-models');
  select.replaceChildren(...app.stored.map((m) => {
    const o = document.createElement('option');
    o.value = m.id;
    o.textContent = `${m.label} (${formatBytes(m.files.reduce((a, f) => a + f.size, 0))}, ${m.savedAt.slice(0, 16).replace('T', ' ')})`;
    return o;
  }));
  const n = app.stored.length;
  setStore(n ? 'ready' : 'empty', (note ? `${note} ` : '') + (n ? `${n} model${n > 1 ? 's' : ''} kept in this browser (${formatBytes(storedBytes(app.stored))}).` : 'No models kept in this browser.'));
}

/** Keeps the files a model was just loaded from, for the next visit. */
async function keepModel(label: string, files: PickedFile[], preset: PresetName | null): Promise<void> {
  if (!storageAvailable()) return;
  setStore('saving', `Keeping ${label} in this browser…`);
  try {
    await storeModel(label, files, preset);
    log(`model stored: ${label}`);
    await showStored(`Kept ${label}.`);
  } catch (e) {
    log(`model store failed: ${errorText(e)}`);
    await showStored().catch(() => undefined);
    setStore('error', `Could not keep ${label} in this browser: ${errorText(e)}`);
  }
}

function shortName(name: string): string {
  return name.split(/[\\/]/).filter(Boolean).pop() ?? name;
}

function setupModel(): void {
  const input = $<HTMLInputElement>('model-files');
  input.addEventListener('change', async () => {
    const files = [...(input.files ?? [])];
    input.value = '';
    if (!files.length) return;
    const picked: PickedFile[] = await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
    const preset = ($<HTMLSelectElement>('config-preset').value || null) as PresetName | null;
    const label = files.map((f) => f.name).join(', ');
    if (await setModel(() => loadModelFiles(picked, preset, pickedPrecision()), label)) await keepModel(label, picked, preset);
  });
  button('model-new').addEventListener('click', () => setModel(() => newTinyModel(1), 'a new tiny model'));

  // From a URL: a file (checkpoint, state dict) or a folder ending in "/" (Hugging Face or the
  // authors' layout). The fetched files are kept like picked ones.
  const loadUrl = async () => {
    const text = $<HTMLInputElement>('model-url').value.trim();
    if (!text) return;
    let url: URL;
    try {
      url = new URL(text, location.href);
    } catch {
      setPanel('model-panel', 'error');
      setLine('model-status', `Could not load the model: "${text}" is not a URL.`, 'bad');
      log(`model load failed: bad URL ${text}`);
      return;
    }
    const preset = ($<HTMLSelectElement>('config-preset').value || null) as PresetName | null;
    let fetched: PickedFile[] = [];
    const ok = await setModel(async () => {
      fetched = await readSourceFiles(url);
      return loadModelFiles(fetched, preset, pickedPrecision());
    }, url.href);
    if (ok) await keepModel(url.pathname.endsWith('/') ? url.href : shortName(url.pathname) + ` (${url.host})`, fetched, preset);
  };
  button('model-url-load').addEventListener('click', () => void loadUrl());
  $<HTMLInputElement>('model-url').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') void loadUrl();
  });

  button('stored-load').addEventListener('click', async () => {
    const entry = app.stored.find((m) => m.id === $<HTMLSelectElement>('stored-models').value) ?? app.stored[0];
    if (!entry) return;
    await setModel(async () => {
      const m = await loadModelFiles(await readStoredModel(entry), entry.preset, pickedPrecision());
      return { ...m, source: `${m.source}, kept in this browser` };
    }, `${entry.label} from this browser's storage`);
  });
  button('stored-forget').addEventListener('click', async () => {
    try {
      await forgetStoredModels();
      log('stored models forgotten');
      await showStored('Forgot the stored models.');
    } catch (e) {
      setStore('error', `Could not forget the stored models: ${errorText(e)}`);
    }
  });
}

// ------------------------------------------------------------------ image

async function setImage(bytes: Uint8Array, name: string, type: string): Promise<void> {
  const preview = $<HTMLImageElement>('image-preview');
  try {
    const img = await loadImage(bytes, name);
    const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: type || 'image/png' }));
    if (preview.src.startsWith('blob:')) URL.revokeObjectURL(preview.src);
    preview.src = url;
    preview.hidden = false;
    $('drop-text').hidden = true;
    const m = app.model;
    app.image = { ...img, pixels: m ? modelPixels(img.original, m) : null, display: m ? displayImage(img.original, m.cfg, DISPLAY) : null };
    clearReport(m ? 'Ready: press "Generate report".' : 'No report: a model must be loaded before a report can be generated.');
    if (app.image.display) drawImage($<HTMLCanvasElement>('attention-canvas'), app.image.display);
    setPanel('image-panel', 'ready');
    setLine('image-status', `${name}: ${img.original.width}×${img.original.height}` + (m ? `, seen by the model at ${m.cfg.image_size}×${m.cfg.image_size}.` : ' (load a model to analyse it).'), 'ok');
  } catch (e) {
    setPanel('image-panel', 'error');
    setLine('image-status', `${name}: ${errorText(e)}`, 'bad');
  }
  refreshControls();
}

function setupImageInput(): void {
  const zone = $('drop-zone'), input = $<HTMLInputElement>('image-input');
  const take = async (file: File | undefined) => {
    if (!file) return;
    await setImage(new Uint8Array(await file.arrayBuffer()), file.name, file.type);
  };
  input.addEventListener('change', () => {
    void take(input.files?.[0]);
    input.value = '';
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    void take(e.dataTransfer?.files[0]);
  });
  let sampleIndex = 0;
  button('image-sample').addEventListener('click', () => {
    const size = Math.max(64, app.model?.cfg.image_size ?? 64);
    const s = generatePhantomSample(2024, sampleIndex++, size);
    void setImage(encodePng(s.image), `${s.id}.png (truth: ${s.report})`, 'image/png');
  });
}

// ------------------------------------------------------------------ report + attention

function clearReport(status: string): void {
  app.report = null;
  app.step = -1;
  app.pinned = -1;
  app.rendered = null;
  $('report-text').replaceChildren();
  $('nbest').replaceChildren();
  $('nbest').hidden = true;
  setLine('report-status', status);
  setPanel('report-panel', 'empty');
  setPanel('attention-panel', 'empty');
  setLine('attention-status', 'No attention map: nothing has been generated yet.');
  $('routing').querySelector('tbody')!.replaceChildren();
  $('legend-hi').textContent = '—';
  $('legend-lo').textContent = '—';
}

function wordOf(id: number): string {
  return app.model?.tokenizer.tokens[id] ?? `<${id}>`;
}

function appendWord(word: string, step: number): void {
  const span = document.createElement('span');
  span.className = 'word';
  span.textContent = word;
  span.dataset.step = String(step);
  span.tabIndex = 0;
  span.addEventListener('mouseenter', () => showStep(step));
  span.addEventListener('focus', () => showStep(step));
  span.addEventListener('mouseleave', () => app.pinned >= 0 && showStep(app.pinned));
  span.addEventListener('click', () => {
    app.pinned = app.pinned === step ? -1 : step;
    showStep(step);
  });
  $('report-text').append(span, ' ');
}

function selection(id: string): LayerSel {
  const v = $<HTMLSelectElement>(id).value;
  return v === 'avg' ? 'avg' : Number(v);
}

/** Computes `method`'s maps for every word of report `r` (one batched GPU pass per 8 words), then redraws. */
async function explainReport(r: NonNullable<AppState['report']>, method: ExplainMethod): Promise<void> {
  const m = app.model, img = app.image;
  if (!m || !img?.pixels || r.explaining?.has(method)) return;
  if (app.generating) {
    setLine('attention-status', `${method}: waiting for the report to finish.`);
    return;
  }
  (r.explaining ??= new Set()).add(method);
  setLine('attention-status', `Computing ${method} maps for ${r.tokens.length} words on the GPU…`);
  try {
    const maps = await explainTrace(m.weights, img.pixels, r.trace?.tokens ?? r.tokens, [method]);
    (r.explained ??= new Map()).set(method, maps.get(method)!);
  } catch (e) {
    setLine('attention-status', `${method} failed: ${(e as Error).message}`);
    return;
  } finally {
    r.explaining.delete(method);
  }
  if (app.report === r && $<HTMLSelectElement>('attn-method').value === method) showStep(app.pinned >= 0 ? app.pinned : app.step);
}

/** Draws word `step`'s map with the selected layer / head, its legend and routing. */
function showStep(step: number): void {
  const r = app.report, img = app.image;
  if (!r?.trace || !img?.display || step < 0 || step >= r.trace.tokens.length) return;
  app.step = step;
  document.querySelectorAll<HTMLElement>('#report-text .word').forEach((el) => {
    const s = Number(el.dataset.step);
    el.classList.toggle('cur', s === step);
    el.classList.toggle('pin', s === app.pinned);
  });
  const layer = selection('attn-layer'), head = selection('attn-head') as HeadSel;
  const alpha = Number($<HTMLInputElement>('attn-alpha').value);
  const method = $<HTMLSelectElement>('attn-method').value as ExplainMethod;
  const lsel = $<HTMLSelectElement>('attn-layer'), hsel = $<HTMLSelectElement>('attn-head');
  if (method !== 'attention') {
    const maps = r.explained?.get(method);
    if (!maps) {
      void explainReport(r, method);
      return;
    }
    if (!maps[step]) {
      setLine('attention-status', `Word ${step} is past text_seq_len: no ${method} map.`);
      return;
    }
    app.rendered = drawExplanation($<HTMLCanvasElement>('attention-canvas'), img.display, maps[step], layer, head, alpha, COLORMAP);
    const what = method === 'grad-attention' ? `(${lsel.selectedOptions[0]?.textContent}, ${hsel.selectedOptions[0]?.textContent})` : maps[step].fine ? `at ${maps[step].fine!.height}×${maps[step].fine!.width}` : 'on the 7×7 grid';
    setLine('attention-status', `Word ${step}: "${r.words[step]}" — ${method} ${what}, explaining the word's logit; colour scale from this map's minimum to maximum.`);
  } else {
    app.rendered = drawAttention($<HTMLCanvasElement>('attention-canvas'), img.display, r.trace, step, layer, head, alpha, COLORMAP);
    setLine('attention-status', `Word ${step}: "${r.words[step]}" — cross-attention weight per image cell (${lsel.selectedOptions[0]?.textContent}, ${hsel.selectedOptions[0]?.textContent}), bilinearly upsampled; colour scale from this map's minimum to maximum.`);
  }
  $('legend-hi').textContent = formatWeight(app.rendered.range[1]);
  $('legend-lo').textContent = formatWeight(app.rendered.range[0]);
  setPanel('attention-panel', 'ready');
  const body = $('routing').querySelector('tbody')!;
  body.replaceChildren();
  const head1 = document.createElement('tr');
  head1.innerHTML = '<th>layer</th><th>experts (gate weight)</th>';
  body.append(head1);
  for (const row of routingRows(r.trace, step)) {
    const tr = document.createElement('tr');
    tr.dataset.layer = String(row.layer);
    const a = document.createElement('td'), b = document.createElement('td');
    a.textContent = String(row.layer);
    b.textContent = row.text;
    tr.append(a, b);
    body.append(tr);
  }
}

async function runGenerate(): Promise<void> {
  const m = app.model, img = app.image;
  if (!m || !img?.pixels || app.generating) return;
  app.generating = true;
  refreshControls();
  clearReport('');
  setPanel('report-panel', 'running');
  const mode = $<HTMLSelectElement>('decode-mode').value === 'beam' ? 'beam' : 'greedy';
  const t0 = performance.now();
  try {
    if (mode === 'greedy') {
      setLine('report-status', 'Generating (greedy)…');
      const words: string[] = [];
      app.report = { tokens: [], words, trace: null, mode, hypotheses: [] };
      const res = await generateGreedy(m, img.pixels, (id, step) => {
        words.push(wordOf(id));
        app.report!.tokens.push(id);
        appendWord(wordOf(id), step);
        setLine('report-status', `Generating (greedy)… ${step + 1} tokens`);
      });
      app.report = { tokens: res.tokens, words: res.tokens.map(wordOf), trace: res.trace, mode, hypotheses: [] };
    } else {
      const K = Math.max(2, Math.min(16, Math.round(Number($<HTMLInputElement>('beam-width').value) || 3)));
      setLine('report-status', `Generating (beam search, width ${K})…`);
      const hyps = await generateBeam(m, img.pixels, K);
      const best = hyps[0];
      const list = $('nbest');
      list.replaceChildren();
      hyps.forEach((h, i) => {
        const li = document.createElement('li');
        li.dataset.index = String(i);
        li.textContent = `${m.tokenizer.decode(h.tokens)}  (score ${h.score.toFixed(3)}, log p ${h.logp.toFixed(3)}${h.finished ? '' : ', unfinished'})`;
        li.title = 'show this hypothesis';
        li.addEventListener('click', () => void showHypothesis(i));
        list.append(li);
      });
      list.hidden = false;
      app.report = { tokens: best.tokens, words: best.tokens.map(wordOf), trace: null, mode, hypotheses: hyps };
      await showHypothesis(0);
    }
    const r = app.report!;
    if (mode === 'greedy') {
      // Re-label the streamed words with their final form (identical ids; keeps one code path).
      $('report-text').replaceChildren();
      r.words.forEach((w, i) => appendWord(w, i));
    }
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    setLine('report-status', `${mode === 'greedy' ? 'Greedy' : 'Beam search'}: ${r.tokens.length} tokens in ${secs} s. ${r.tokens.at(-1) === m.cfg.eos_id ? '' : '(no <eos>: the length limit was reached) '}Hover or click a word.`, 'ok');
    setPanel('report-panel', 'ready');
    if (r.tokens.length) showStep(0);
    log(`report (${mode}): ${m.tokenizer.decode(r.tokens)}`);
  } catch (e) {
    setPanel('report-panel', 'error');
    setLine('report-status', `Generation failed: ${errorText(e)}`, 'bad');
    log(`generation failed: ${errorText(e)}`);
  } finally {
    app.generating = false;
    refreshControls();
  }
}

/** Shows beam hypothesis i: its words, and its attention traced by teacher forcing. */
async function showHypothesis(i: number): Promise<void> {
  const m = app.model, img = app.image, r = app.report;
  if (!m || !img?.pixels || !r || !r.hypotheses[i]) return;
  const h = r.hypotheses[i];
  document.querySelectorAll<HTMLElement>('#nbest li').forEach((li) => li.classList.toggle('cur', Number(li.dataset.index) === i));
  const trace = await traceHypothesis(m, img.pixels, h.tokens);
  app.report = { ...r, tokens: h.tokens, words: h.tokens.map(wordOf), trace };
  $('report-text').replaceChildren();
  app.report.words.forEach((w, t) => appendWord(w, t));
  app.pinned = -1;
  if (h.tokens.length) showStep(0);
}

function setupReport(): void {
  button('generate').addEventListener('click', () => void runGenerate());
  for (const id of ['attn-method', 'attn-layer', 'attn-head', 'attn-alpha']) $(id).addEventListener('input', () => showStep(app.pinned >= 0 ? app.pinned : app.step));
  drawLegend($<HTMLCanvasElement>('attention-legend'), COLORMAP);
}

// ------------------------------------------------------------------ training

function num(id: string): number {
  return Number($<HTMLInputElement>(id).value);
}

function trainSource(): 'builtin' | 'folder' {
  return (document.querySelector<HTMLInputElement>('input[name="train-source"]:checked')?.value ?? 'builtin') as 'builtin' | 'folder';
}

function chart(): void {
  const s = app.session;
  drawLossChart($<HTMLCanvasElement>('training-chart'), [
    { label: 'training loss', color: '#c0392b', points: s?.losses ?? [] },
    { label: 'validation loss', color: '#2471a3', points: s?.valLosses ?? [], dots: true },
  ]);
}

async function startTraining(): Promise<void> {
  const m = app.model;
  if (!m) return;
  const steps = Math.round(num('train-steps')), batchSize = Math.round(num('train-batch')), lr = num('train-lr'), valEvery = Math.max(1, Math.round(num('train-val-every')));
  const bad = !(steps >= 1) ? 'steps must be ≥ 1' : !(batchSize >= 2) ? 'batch must be ≥ 2 (BatchNorm needs batch statistics)' : !(lr > 0) ? 'learning rate must be > 0' : '';
  if (bad) {
    setLine('training-status', bad, 'bad');
    return;
  }
  button('training-start').disabled = true;
  setPanel('training-panel', 'running');
  let data: TrainData;
  try {
    const progress = (d: number, t: number) => setLine('training-status', `Preparing data… ${d}/${t} images`);
    if (trainSource() === 'builtin') {
      data = await builtInData(m.cfg, Math.round(num('train-count')), 7, progress);
    } else {
      if (!app.folder) throw new Error('choose a folder first (or pick the built-in dataset)');
      data = await folderData(app.folder, $<HTMLSelectElement>('train-format').value as DatasetFormat, m.cfg, Math.max(4, Math.round(num('train-limit'))), progress);
    }
  } catch (e) {
    setPanel('training-panel', 'error');
    setLine('training-status', `Data: ${errorText(e)}`, 'bad');
    refreshControls();
    return;
  }
  let session: TrainingSession;
  try {
    session = new TrainingSession(m, data, { steps, batchSize, lr, valEvery, seed: m.cfg.seed ?? 1 }, (p) => {
      $<HTMLProgressElement>('training-progress').value = p.done / p.total;
      $('training-step').textContent = `${p.done} / ${p.total} (model step ${p.step})`;
      $('training-loss').textContent = Number.isFinite(p.loss) ? p.loss.toFixed(4) : '—';
      const v = session.valLosses.at(-1);
      $('training-val').textContent = v ? `${v.loss.toFixed(4)} (step ${v.step})` : '—';
      $('training-lr').textContent = p.lr.toExponential(2);
      $('training-eta').textContent = `${formatDuration(p.elapsedS)} / ${p.done < p.total ? formatDuration(p.etaS) : 'done'}`;
      setLine('training-status', p.paused ? `Paused at ${p.done}/${p.total}.` : session.state === 'paused' ? 'Pausing after the current step…' : p.done < p.total ? `Training on ${data.description}…` : `Finished ${p.total} steps on ${data.description}.`);
      chart();
      refreshControls();
    });
  } catch (e) {
    setPanel('training-panel', 'error');
    setLine('training-status', errorText(e), 'bad');
    refreshControls();
    return;
  }
  app.session = session;
  setLine('training-status', `Training on ${data.description}…`);
  refreshControls();
  try {
    await session.run();
    setPanel('training-panel', 'ready');
    const first = session.losses[0]?.loss, last = session.losses.at(-1)?.loss;
    setLine('training-status', `${session.losses.length} steps on ${data.description}; loss ${first?.toFixed(4)} → ${last?.toFixed(4)}. Generate a report to see the fine-tuned model.`, 'ok');
    setLine('model-status', `Loaded: ${m.source}; fine-tuned in this tab to step ${m.state?.step ?? session.modelStep}.`, 'ok');
    log(`training done: ${session.losses.length} steps, loss ${first} → ${last}`);
  } catch (e) {
    setPanel('training-panel', 'error');
    setLine('training-status', `Training stopped: ${errorText(e)}`, 'bad');
    log(`training failed: ${errorText(e)}`);
  }
  refreshControls();
}

/** Checkpoint bytes of the current model (with the optimiser state when it was trained here). */
async function currentCheckpoint(): Promise<Uint8Array> {
  const m = app.model;
  if (!m) throw new Error('no model loaded');
  return modelCheckpoint(m);
}

function setupTraining(): void {
  button('training-start').addEventListener('click', () => void startTraining());
  button('training-pause').addEventListener('click', () => {
    const s = app.session;
    if (!s) return;
    if (s.state === 'paused') {
      s.resume();
      setLine('training-status', 'Resumed.');
    } else {
      s.pause();
      setLine('training-status', 'Pausing after the current step…');
    }
    refreshControls();
  });
  button('training-stop').addEventListener('click', () => {
    app.session?.stop();
    refreshControls();
  });
  button('training-download').addEventListener('click', async () => {
    try {
      const bytes = await currentCheckpoint();
      const a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/octet-stream' }));
      const m = app.model!;
      a.download = `micar-${(m.cfg.name ?? 'model').replace(/[^\w.-]+/g, '_')}-step${m.state?.step ?? 0}.safetensors`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (e) {
      setLine('training-status', `Download failed: ${errorText(e)}`, 'bad');
    }
  });
  const folder = $<HTMLInputElement>('train-folder');
  folder.addEventListener('change', async () => {
    const files = [...(folder.files ?? [])];
    if (!files.length) return;
    setLine('train-folder-status', `Reading ${files.length} files…`);
    app.folder = await Promise.all(files.map(async (f) => ({ path: f.webkitRelativePath || f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
    const top = app.folder[0].path.split('/')[0];
    setLine('train-folder-status', `${top}: ${files.length} files (${(files.reduce((a, f) => a + f.size, 0) / 2 ** 20).toFixed(1)} MiB).`);
    const radio = document.querySelector<HTMLInputElement>('input[name="train-source"][value="folder"]');
    if (radio) radio.checked = true;
  });
  chart();
}

// ------------------------------------------------------------------ start

// JPEGs are decoded by libjpeg-turbo (WASM), as in the CLI: Vite emits the .wasm as an asset.
setJpegWasm(jpegWasmUrl);

window.micarDemo = {
  app,
  checkpoint: currentCheckpoint,
  canvasPixels() {
    const c = $<HTMLCanvasElement>('attention-canvas');
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height);
    return { width: d.width, height: d.height, data: Array.from(d.data) };
  },
  async decodeImage(bytes, name) {
    const { original } = await loadImage(new Uint8Array(bytes), name);
    return { width: original.width, height: original.height, data: Array.from(original.data) };
  },
  async loseDevice() {
    (await getGpu()).device.destroy();
  },
};

/**
 * A lost GPU device (driver reset, tab in the background too long, device.destroy()) takes the
 * model's weights with it: say so in words and offer to start again (a new device; the model
 * files must be loaded again).
 */
function watchDeviceLoss(): void {
  void getGpu().then((gpu) => gpu.device.lost.then((info) => {
    app.gpuReady = false;
    app.model = null;
    app.session = null;
    setStatus('adapter-panel', 'adapter-status', 'error',
      `The GPU device was lost (${info.reason || 'unknown reason'}${info.message ? `: ${info.message}` : ''}). The model and any training in progress were on it. Press "Start again" for a new device, then load the model again.`);
    setPanel('model-panel', 'empty');
    setLine('model-status', 'No model loaded: the GPU device was lost.', 'bad');
    const again = document.createElement('button');
    again.id = 'adapter-restart';
    again.textContent = 'Start again';
    again.onclick = () => {
      again.remove();
      $('adapter-details').replaceChildren();
      setStatus('adapter-panel', 'adapter-status', 'checking', 'Checking for WebGPU…');
      void start();
    };
    $('adapter-panel').append(again);
    refreshControls();
  })).catch(() => undefined);
}

setupModel();
void showStored().catch((e) => setStore('error', `Could not read the stored models: ${errorText(e)}`));
setupImageInput();
setupReport();
setupTraining();
refreshControls();
function start(): Promise<void> {
  return showAdapter()
  .then((ok) => {
    app.gpuReady = ok;
    if (ok) watchDeviceLoss();
    // A model picked while the check ran keeps its status ("Loading…", "Loaded: …").
    const modelState = $('model-panel').dataset.state;
    if (ok) {
      if (!app.model && modelState !== 'loading' && modelState !== 'error') setLine('model-status', 'No model loaded: load model files, or start from a new tiny model.');
    } else setLine('model-status', 'No model can run here: this page needs WebGPU (see above).', 'bad');
    refreshControls();
  })
  .catch((e) => setStatus('adapter-panel', 'adapter-status', 'error', `Unexpected error: ${(e as Error).message}`));
}
void start();
