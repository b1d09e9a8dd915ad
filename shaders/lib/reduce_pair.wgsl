// Two sums in one tree (lib/reduce's order, one barrier per step for both): red and red2, each
// RED_N wide (the includer declares RED_N, see lib/reduce).
#include "lib/reduce"
var<workgroup> red2: array<f32, RED_N>;

// Sums red[] and red2[] over the RED_N invocations into element 0 (the caller has written
// red[li] and red2[li]); ends with a barrier, so element 0 is readable by all.
fn red_pair_sum(li: u32) {
  workgroupBarrier();
#if ${SUBGROUPS}
  // Each subgroup folds all slots (lib/reduce red_subgroup_slots); invocation 0's sums are kept.
  let sl = red_subgroup_slots();
  var a = 0.0;
  var b = 0.0;
  for (var j = sl.x; j < RED_N; j += sl.y) {
    a += red[j];
    b += red2[j];
  }
  a = subgroupAdd(a);
  b = subgroupAdd(b);
  workgroupBarrier();   // every subgroup has read red and red2
  if (li == 0u) {
    red[0] = a;
    red2[0] = b;
  }
  workgroupBarrier();
#else
  for (var s = RED_N / 2u; s > 0u; s = s >> 1u) {
    if (li < s) {
      red[li] += red[li + s];
      red2[li] += red2[li + s];
    }
    workgroupBarrier();
  }
#endif
}
