// Embedding lookup and its deterministic backward (no float atomics).
// Forward (GATHER): out[t, f] = table[ids[t], f]; ids outside [0, V) give a zero row.
// Backward, in two passes over per-token linked lists kept in scratch buffers:
//   LINK    one thread per token t: next[t] = 1 + the next token with the same id (0: none);
//           the first token of each id writes head[id] = t + 1 (head was cleared to 0).
//           Each thread scans the id list (O(N²) loads in all, cheap for N of a few thousand).
//   SCATTER one thread per (row v, feature f): dtable[v, f] = Σ dy[t, f] over v's tokens in
//           token order, so the result is bit-reproducible.
// Specialisation (one kind flag true): GATHER, LINK, SCATTER.

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // N, V, D, total: src/graph/kernels/embedding.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

#if ${GATHER}
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> table: array<T>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat_id(gid, nwg);
  if (e >= p.total) { return; }
  let t = e / p.D;
  let f = e % p.D;
  let id = ids[t];
  var v = 0.0;
  if (id >= 0 && u32(id) < p.V) { v = f32(table[u32(id) * p.D + f]); }
  out[e] = T(v);
}
#elif ${LINK}
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> head: array<u32>;
@group(0) @binding(3) var<storage, read_write> next: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg);
  if (t >= p.N) { return; }
  let id = ids[t];
  if (id < 0 || u32(id) >= p.V) { next[t] = 0u; return; }
  var first = true;
  for (var k = 0u; k < t; k++) {
    if (ids[k] == id) { first = false; break; }
  }
  var nxt = 0u;
  for (var k = t + 1u; k < p.N; k++) {
    if (ids[k] == id) { nxt = k + 1u; break; }
  }
  next[t] = nxt;
  if (first) { head[u32(id)] = t + 1u; }
}
#elif ${SCATTER}
@group(0) @binding(1) var<storage, read> head: array<u32>;
@group(0) @binding(2) var<storage, read> next: array<u32>;
@group(0) @binding(3) var<storage, read> dy: array<T>;
@group(0) @binding(4) var<storage, read_write> dtable: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat_id(gid, nwg);
  if (e >= p.total) { return; }
  let v = e / p.D;
  let f = e % p.D;
  var acc = 0.0;
  var t = head[v];
  // At most N links; the bound also guards against a corrupt list.
  for (var guard = 0u; t != 0u && guard < p.N; guard++) {
    acc += f32(dy[(t - 1u) * p.D + f]);
    t = next[t - 1u];
  }
  dtable[e] = T(acc);
}
#endif
