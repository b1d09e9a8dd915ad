// The tiled GEMM core shared by matmul.wgsl (tiled kernel) and moe.wgsl (GMM, GMM_WGRAD): a
// workgroup of TX×TY invocations computes a TM×TN output tile, invocation (lid.x, lid.y)
// owning rows lid.y + i·TY (i < RM) and columns lid.x + j·TX (j < RN); the kernel stages each
// BK-deep slice of the A tile in As ([k][m]) and of the B tile in Bs ([k][n]). Tile sizes from
// the template holes TM, TN, BK, RM, RN.
const TM: u32 = ${TM}u;
const TN: u32 = ${TN}u;
const BK: u32 = ${BK}u;
const RM: u32 = ${RM}u;
const RN: u32 = ${RN}u;
const TX: u32 = TN / RN;   // threads along n
const TY: u32 = TM / RM;   // threads along m
const NT: u32 = TX * TY;

var<workgroup> As: array<f32, BK * TM>;   // [k][m]
var<workgroup> Bs: array<f32, BK * TN>;   // [k][n]

// acc[i][j] = fma(As[k][row i], Bs[k][column j], acc[i][j]) for k = 0 … BK−1 in order: the
// staged slice's contribution (between the barriers after the loads and before the next ones).
fn gemm_tile_fma(lid: vec3<u32>, acc: ptr<function, array<array<f32, RN>, RM>>) {
  for (var k = 0u; k < BK; k++) {
    var a: array<f32, RM>;
    var b: array<f32, RN>;
    for (var i = 0u; i < RM; i++) { a[i] = As[k * TM + lid.y + i * TY]; }
    for (var j = 0u; j < RN; j++) { b[j] = Bs[k * TN + lid.x + j * TX]; }
    for (var i = 0u; i < RM; i++) {
      for (var j = 0u; j < RN; j++) { (*acc)[i][j] = fma(a[i], b[j], (*acc)[i][j]); }
    }
  }
}
