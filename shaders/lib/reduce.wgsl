// Workgroup tree reductions in workgroup memory, deterministic (the same tree on every run and
// adapter): at each step s = n/2, n/4, …, 1, lane l < s folds lane l + s into itself. The
// includer declares the tree's width (a power of two, at most the workgroup size):
//   const RED_N: u32 = …;
// and calls these with every invocation of the workgroup (uniform control flow: barriers).
// SUBGROUPS (a tunable choice; the includer then starts with `enable subgroups;`): wg_sum, wg_max
// (and lib/reduce_pair's red_pair_sum) fold through subgroup operations instead of the tree —
// see red_subgroup_slots.
var<workgroup> red: array<f32, RED_N>;

// For each of `cols` adjacent columns c, sums red[c + cols·l] over lanes l < `lanes` (a power
// of two, lanes·cols ≤ RED_N) into red[c]; li = c + cols·l is the caller's local index. The
// caller has written red[li]; ends with a barrier, so red[c] is readable by all.
fn red_tree_sum(li: u32, lanes: u32, cols: u32) {
  let lane = li / cols;
  workgroupBarrier();
  for (var s = lanes / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) { red[li] += red[li + s * cols]; }
    workgroupBarrier();
  }
}

#if ${SUBGROUPS}
// Which of red's RED_N slots this invocation folds, as (first, step): its rank among the active
// invocations of its subgroup, and their count. WGSL gives no relation between subgroups and
// local_invocation_index (nor a subgroup id), so each subgroup folds *all* slots — rank r takes
// r, r + n, r + 2n, … — and every subgroup ends with the whole workgroup's value. Valid for any
// subgroup size, partial subgroups included.
fn red_subgroup_slots() -> vec2<u32> {
  return vec2<u32>(subgroupExclusiveAdd(1u), subgroupAdd(1u));
}

// The subgroup results are equal in exact arithmetic but may differ in rounding from subgroup to
// subgroup; invocation 0's is the one every invocation returns. (wg_sum: 4 barriers in all, where
// the tree has log₂ RED_N + 2.)
fn red_broadcast(r: f32, li: u32) -> f32 {
  workgroupBarrier();   // every subgroup has read red
  if (li == 0u) { red[0] = r; }
  workgroupBarrier();
  let out = red[0];
  workgroupBarrier();   // red is free for the next reduction
  return out;
}

// Σ v over the RED_N invocations, returned to each; red is free for the next reduction.
fn wg_sum(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  let sl = red_subgroup_slots();
  var t = 0.0;
  for (var j = sl.x; j < RED_N; j += sl.y) { t += red[j]; }
  return red_broadcast(subgroupAdd(t), li);
}

#else
// Σ v over the RED_N invocations, returned to each; red is free for the next reduction.
fn wg_sum(v: f32, li: u32) -> f32 {
  red[li] = v;
  red_tree_sum(li, RED_N, 1u);
  let r = red[0];
  workgroupBarrier();
  return r;
}
#endif

#if ${SUBGROUPS}
// max v over the RED_N invocations, returned to each; red is free for the next reduction. Each
// invocation starts from one of red's slots (max is idempotent: a slot met twice is harmless).
fn wg_max(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  let sl = red_subgroup_slots();
  var t = red[min(sl.x, RED_N - 1u)];
  for (var j = sl.x; j < RED_N; j += sl.y) { t = max(t, red[j]); }
  return red_broadcast(subgroupMax(t), li);
}

#else
// max v over the RED_N invocations, returned to each; red is free for the next reduction.
fn wg_max(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = RED_N / 2u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
#endif
