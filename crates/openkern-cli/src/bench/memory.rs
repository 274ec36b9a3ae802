//! Helpers the memory-bound families share: input data, iteration counts sized to the
//! bytes moved, and one timed row per op.

use super::{Bound, Row};
use openkern::{DType, Device, Tensor};

/// Deterministic data in [-2, 2): enough spread for softmax and norms to do real work.
pub fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97)) % 4001) as f32 * 1e-3 - 2.0
        })
        .collect()
}

/// A `dtype` tensor of `shape` filled by [`data`].
pub fn tensor(
    device: &Device,
    shape: &[usize],
    dtype: DType,
    seed: usize,
) -> openkern::Result<Tensor> {
    Tensor::from_f32(device, &data(shape.iter().product(), seed), shape, dtype)
}

/// Iterations for a kernel moving `bytes`: about 2 GB of traffic (fewer on the quick
/// path), at least 2 and at most 50.
pub fn iterations(bytes: f64, quick: bool) -> usize {
    let budget = if quick { 2e8 } else { 2e9 };
    ((budget / bytes) as usize).clamp(2, if quick { 5 } else { 50 })
}

/// Times `op` (after one untimed warm-up run) and returns its table row.
pub fn row(
    device: &Device,
    family: &'static str,
    case: String,
    dtype: DType,
    bytes: f64,
    quick: bool,
    mut op: impl FnMut() -> openkern::Result<()>,
) -> openkern::Result<Row> {
    op()?;
    device.sync()?;
    let t = device.time(iterations(bytes, quick), &mut op)?;
    Ok(Row {
        family,
        case,
        dtype: dtype.name(),
        seconds: t.seconds,
        work: bytes,
        bound: Bound::Memory,
        source: t.source,
        peer: None,
    })
}

/// Runs `f`, turning a tensor too large for this device's bindings into a skipped case
/// (printed) rather than a failed benchmark.
pub fn or_skip(case: &str, r: openkern::Result<Vec<Row>>) -> openkern::Result<Vec<Row>> {
    match r {
        Err(openkern::Error::TooLarge { bytes, limit, .. }) => {
            println!("(skipped {case}: needs a {bytes}-byte binding, this device allows {limit})");
            Ok(Vec::new())
        }
        other => other,
    }
}

/// Runs `case` for each `[rows, cols]` shape in f32 and f16, skipping (with a printed
/// line) the combinations too large for this device's bindings.
pub fn sweep(
    shapes: &[[usize; 2]],
    mut case: impl FnMut(usize, usize, DType) -> openkern::Result<Vec<Row>>,
) -> openkern::Result<Vec<Row>> {
    let mut out = Vec::new();
    for &[m, n] in shapes {
        for dtype in [DType::F32, DType::F16] {
            out.extend(or_skip(&format!("{m}x{n}"), case(m, n, dtype))?);
        }
    }
    Ok(out)
}
