// Demo app shell: finds the WebGPU adapter and proves the kernels run here (a small matmul
// checked against the CPU), previews a chosen image, and shows honest "not loaded" states for
// the parts that are not wired up yet (model, report, attention map, training).
import { getGpu } from '../src/gpu/device.ts';
import { dispose, fromData, init, read } from '../src/graph/runtime.ts';
import { matmul } from '../src/graph/ops/matmul.ts';

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

async function showAdapter(): Promise<void> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    setStatus(
      'adapter-panel', 'adapter-status', 'unsupported',
      'This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or Firefox with WebGPU enabled, over https or localhost.',
    );
    return;
  }
  let gpu;
  try {
    gpu = await getGpu();
  } catch (e) {
    setStatus('adapter-panel', 'adapter-status', 'error', `WebGPU is present but no device could be created: ${(e as Error).message}`);
    return;
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
  await kernelCheck();
}

/** A 5×7·7×3 matmul with bias on the GPU against float64 on the CPU (loads shaders as the model will). */
async function kernelCheck(): Promise<void> {
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
  } catch (e) {
    $('adapter-panel').dataset.state = 'error';
    line.textContent = `Kernel check: failed: ${(e as Error).message}`;
    line.className = 'status bad';
  }
}

function setupImageInput(): void {
  const zone = $('drop-zone'), input = $<HTMLInputElement>('image-input'), preview = $<HTMLImageElement>('image-preview');
  let objectUrl: string | null = null;
  const show = (file: File | undefined) => {
    if (!file) return;
    if (!file.type.startsWith('image/')) {
      setStatus('image-panel', 'image-status', 'error', `${file.name} is not an image (${file.type || 'unknown type'}).`);
      return;
    }
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(file);
    preview.onload = () =>
      setStatus('image-panel', 'image-status', 'ready', `${file.name}: ${preview.naturalWidth}×${preview.naturalHeight} (not analysed: no model loaded).`);
    preview.onerror = () => setStatus('image-panel', 'image-status', 'error', `${file.name} could not be decoded.`);
    preview.src = objectUrl;
    preview.hidden = false;
    $('drop-text').hidden = true;
  };
  input.addEventListener('change', () => show(input.files?.[0]));
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    show(e.dataTransfer?.files[0]);
  });
}

/** Empty attention canvas with a note, until a generated report provides maps. */
function drawEmptyAttention(): void {
  const canvas = $<HTMLCanvasElement>('attention-canvas');
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  ctx.fillStyle = dark ? '#11151b' : '#eef1f5';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = dark ? '#98a2b3' : '#5d6878';
  ctx.font = '16px system-ui, sans-serif';
  ctx.textAlign = 'center';
  ctx.fillText('no attention map', canvas.width / 2, canvas.height / 2);
}

setupImageInput();
drawEmptyAttention();
showAdapter().catch((e) => setStatus('adapter-panel', 'adapter-status', 'error', `Unexpected error: ${(e as Error).message}`));
