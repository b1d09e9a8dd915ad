// `npm run bench -- loadcost`: what a load costs on this adapter, in multiply-adds. Kernels of
// 64 independent f32 fma chains per invocation (8 lanes a workgroup, 16384 workgroups) run a
// loop whose body adds 4 loads of one kind; the time over the bare loop, divided by the marginal
// cost of one more fma per iteration (from 64 → 128 chains), is the load's price. Also the fixed
// costs every kernel pays: one dispatch in a shared pass, and the wait for a submission.
// Why it matters: on llvmpipe a per-lane load is a gather (a scalar load per lane and component)
// costing ~15 fmas per component, and one shared by every lane is no cheaper unless its index is
// a compile-time constant — so the register kernels are shaped by their loads per fma (matmul's
// TA copies: 4 rows per vec4 load instead of a gather per row). Last line: JSON.
import { setup } from './harness.ts';

type Kind = 'storage lane f32' | 'storage lane vec4' | 'storage uniform vec4' | 'uniform dynamic vec4' | 'uniform constant vec4' | 'workgroup lane vec4';
const KINDS: Kind[] = ['storage lane f32', 'storage lane vec4', 'storage uniform vec4', 'uniform dynamic vec4', 'uniform constant vec4', 'workgroup lane vec4'];
const WORKGROUPS = 16384, ITERS = 200, LOADS = 4;

function shader(fmas: number, kind: Kind | null): string {
  const L = [
    'struct P { iters: u32, a: u32, b: u32, c: u32 }',
    '@group(0) @binding(0) var<uniform> p: P;',
    '@group(0) @binding(1) var<storage, read> S: array<vec4<f32>>;',
    '@group(0) @binding(2) var<uniform> U: array<vec4<f32>, 4096>;',
    '@group(0) @binding(3) var<storage, read_write> O: array<f32>;',
    'var<workgroup> W: array<vec4<f32>, 1024>;',
    '@compute @workgroup_size(8) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {',
    '  let lane = (gid.x * 37u) & 16383u;',
  ];
  if (kind === 'workgroup lane vec4') L.push('  for (var i = li; i < 1024u; i += 8u) { W[i] = S[i]; }', '  workgroupBarrier();');
  for (let i = 0; i < fmas; i++) L.push(`  var c${i} = f32(gid.x) * 1e-6 + ${i}.0;`);
  L.push('  for (var k = 0u; k < p.iters; k++) {');
  const vals: string[] = [];
  for (let j = 0; kind && j < LOADS; j++) {
    const at = `k * ${LOADS}u + ${j}u`;
    const expr = {
      'storage lane f32': `vec4<f32>(S[(lane + ${at}) & 16383u].x)`,
      'storage lane vec4': `S[(lane + ${at}) & 16383u]`,
      'storage uniform vec4': `S[(${at}) & 16383u]`,
      'uniform dynamic vec4': `U[(${at}) & 4095u]`,
      'uniform constant vec4': `U[${7 * j}]`,
      'workgroup lane vec4': `W[(li * 37u + ${at}) & 1023u]`,
    }[kind];
    L.push(`    let v${j} = ${expr};`);
    // A scalar load feeds one chain, a vec4 four (every loaded value is used).
    for (const c of kind === 'storage lane f32' ? ['x'] : ['x', 'y', 'z', 'w']) vals.push(`v${j}.${c}`);
  }
  if (!vals.length) vals.push('0.9999999');
  for (let i = 0; i < fmas; i++) L.push(`    c${i} = fma(c${i}, ${vals[i % vals.length]}, 1e-7);`);
  L.push('  }', `  O[gid.x] = ${Array.from({ length: fmas }, (_, i) => `c${i}`).join(' + ')};`, '}');
  return L.join('\n');
}

export async function main(): Promise<void> {
  const env = await setup();
  const device = env.device, U = GPUBufferUsage, C = GPUShaderStage.COMPUTE;
  if (!env.hasTimestamps) throw new Error('bench loadcost: needs timestamp-query');
  const sbuf = device.createBuffer({ size: 16384 * 16, usage: U.STORAGE | U.COPY_DST });
  device.queue.writeBuffer(sbuf, 0, new Float32Array(16384 * 4).fill(0.5));
  const ubuf = device.createBuffer({ size: 65536, usage: U.UNIFORM | U.COPY_DST });
  device.queue.writeBuffer(ubuf, 0, new Float32Array(16384).fill(0.5));
  const obuf = device.createBuffer({ size: WORKGROUPS * 8 * 4, usage: U.STORAGE });
  const pbuf = device.createBuffer({ size: 16, usage: U.UNIFORM | U.COPY_DST });
  device.queue.writeBuffer(pbuf, 0, new Uint32Array([ITERS, 0, 0, 0]));
  const bgl = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: C, buffer: { type: 'uniform' } }, { binding: 1, visibility: C, buffer: { type: 'read-only-storage' } }, { binding: 2, visibility: C, buffer: { type: 'uniform' } }, { binding: 3, visibility: C, buffer: { type: 'storage' } }] });
  const bg = device.createBindGroup({ layout: bgl, entries: [pbuf, sbuf, ubuf, obuf].map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const qs = device.createQuerySet({ type: 'timestamp', count: 2 });
  const res = device.createBuffer({ size: 16, usage: U.QUERY_RESOLVE | U.COPY_SRC });
  const rb = device.createBuffer({ size: 16, usage: U.MAP_READ | U.COPY_DST });
  /** Best GPU ms of one dispatch over `reps`, or of `count` dispatches in one pass. */
  const gpuMs = async (pipe: GPUComputePipeline, workgroups: number, count = 1, reps = 4): Promise<number> => {
    let best = Infinity;
    for (let r = 0; r <= reps; r++) {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
      for (let i = 0; i < count; i++) { pass.setPipeline(pipe); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(workgroups); }
      pass.end();
      enc.resolveQuerySet(qs, 0, 2, res, 0);
      enc.copyBufferToBuffer(res, 0, rb, 0, 16);
      device.queue.submit([enc.finish()]);
      await rb.mapAsync(GPUMapMode.READ);
      const ts = new BigUint64Array(rb.getMappedRange().slice(0));
      rb.unmap();
      if (r > 0) best = Math.min(best, Number(ts[1] - ts[0]) / 1e6);   // (the first run warms up)
    }
    return best;
  };
  const pipeline = (fmas: number, kind: Kind | null) => device.createComputePipelineAsync({
    layout: device.createPipelineLayout({ bindGroupLayouts: [bgl] }),
    compute: { module: device.createShaderModule({ code: shader(fmas, kind) }), entryPoint: 'main' },
  });
  const base = await pipeline(64, null), more = await pipeline(128, null);
  const pipes = await Promise.all(KINDS.map((k) => pipeline(64, k)));
  // Rounds alternate the kernels so a busy moment of the machine touches all of them.
  const best = { base: Infinity, more: Infinity, kinds: KINDS.map(() => Infinity) };
  for (let round = 0; round < 3; round++) {
    best.base = Math.min(best.base, await gpuMs(base, WORKGROUPS, 1, 2));
    best.more = Math.min(best.more, await gpuMs(more, WORKGROUPS, 1, 2));
    for (let i = 0; i < KINDS.length; i++) best.kinds[i] = Math.min(best.kinds[i], await gpuMs(pipes[i], WORKGROUPS, 1, 2));
  }
  const fmaMs = (best.more - best.base) / 64;
  const perLoad = Object.fromEntries(KINDS.map((k, i) => [k, +((best.kinds[i] - best.base) / fmaMs / LOADS).toFixed(1)]));
  const fmaGflops = (WORKGROUPS * 8 * ITERS * 64 * 2) / ((best.more - best.base) * 1e6);
  // Fixed costs: a dispatch of one workgroup in a shared pass, 1 against 201 of them; the wait
  // from submitting trivial work to its completion being reported.
  const one = await gpuMs(base, 1, 1), many = await gpuMs(base, 1, 201);
  const dispatchUs = ((many - one) / 200) * 1000;
  let waitMs = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    device.queue.writeBuffer(pbuf, 0, new Uint32Array([ITERS, 0, 0, 0]));
    await device.queue.onSubmittedWorkDone();
    waitMs = Math.min(waitMs, performance.now() - t0);
  }
  console.log(`adapter ${env.adapterName}: one more fma per iteration ${(fmaMs * 1e3).toFixed(1)} µs over ${WORKGROUPS * 8} invocations (${fmaGflops.toFixed(1)} GFLOP/s marginal)`);
  for (const k of KINDS) console.log(`  ${k.padEnd(24)} ${String(perLoad[k]).padStart(6)} fma per load`);
  console.log(`  a dispatch in a shared pass: ${dispatchUs.toFixed(1)} µs; a submission's wait for trivial work: ${waitMs.toFixed(2)} ms`);
  console.log(JSON.stringify({ bench: 'loadcost', adapter: env.adapterName, fma_gflops_marginal: +fmaGflops.toFixed(1), fma_per_load: perLoad, dispatch_us: +dispatchUs.toFixed(1), submit_wait_ms: +waitMs.toFixed(2) }));
}
