// Workgroup tree reductions in workgroup memory, deterministic (the same tree on every run and
// adapter): at each step s = n/2, n/4, …, 1, lane l < s folds lane l + s into itself. The
// includer declares the tree's width (a power of two, at most the workgroup size):
//   const RED_N: u32 = …;
// and calls these with every invocation of the workgroup (uniform control flow: barriers).
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

// Σ v over the RED_N invocations, returned to each; red is free for the next reduction.
fn wg_sum(v: f32, li: u32) -> f32 {
  red[li] = v;
  red_tree_sum(li, RED_N, 1u);
  let r = red[0];
  workgroupBarrier();
  return r;
}

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
