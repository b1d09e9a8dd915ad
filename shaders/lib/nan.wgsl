// NaN tests by bit pattern. WGSL lets compilers assume floats are never NaN (llvmpipe folds
// `x != x` to false), so a kernel that must see NaN (max, argmax and pooling propagate it, as
// PyTorch does) tests the bits: exponent all ones, mantissa not zero.
fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
