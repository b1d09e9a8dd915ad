// Strided-copy index decoding for copy.wgsl and copyruns.wgsl (their Params: srcOff, dstOff
// and per-axis dims, ss, ds as array<vec4<u32>, 2>, innermost axis last, from
// src/graph/kernels/copy.ts): the source and destination offsets (x, y) of index `i` of the
// box made of axes 0..last, decoded from axis `last` outwards.
fn copy_offsets(i: u32, last: i32) -> vec2<u32> {
  var rem = i;
  var si = p.srcOff;
  var di = p.dstOff;
  for (var d = last; d >= 0; d--) {
    let u = u32(d);
    let n = p.dims[u / 4u][u % 4u];
    let c = rem % n;
    rem = rem / n;
    si += c * p.ss[u / 4u][u % 4u];
    di += c * p.ds[u / 4u][u % 4u];
  }
  return vec2<u32>(si, di);
}
