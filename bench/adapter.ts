// `npm run bench -- adapter`: the adapter Deno's WebGPU finds, as the device profile sees it.
// Last line: {"bench":"adapter","adapter":…,"hardware":true|false,…} (hardware false: a CPU
// implementation such as Mesa llvmpipe, i.e. no GPU driver was found).
import { init } from '../src/graph/runtime.ts';

export async function main(): Promise<void> {
  const r = await init();
  const p = r.profile;
  console.log(JSON.stringify({
    bench: 'adapter', adapter: p.adapterName, hardware: !p.software, software_kind: p.softwareKind,
    vendor: p.vendor, architecture: p.architecture, description: p.description,
    shader_f16: p.features.shaderF16, subgroups: p.features.subgroups, timestamp_query: p.features.timestampQuery,
    subgroup_size: p.subgroupSize, max_workgroup_storage: p.limits.maxComputeWorkgroupStorageSize,
  }));
}
