// Thread-id flattening for 1-D kernels whose grid folds into y past 65535 workgroups
// (src/graph/ops/util.ts grid1d): thread index = gid.x + gid.y · (threads per grid row).
fn flat_id_wg(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
  return gid.x + gid.y * nwg.x * wg;
}

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return flat_id_wg(gid, nwg, 256u);
}

// Workgroup index of a grid of one workgroup per row (or tile), folded the same way.
fn flat_wg_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}
