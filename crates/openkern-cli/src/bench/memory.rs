//! Helpers the families share: input data, one timed row per op, and skips for shapes too
//! large for a device's bindings.

use super::{kernel_label, measure, Bound, Row};
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

/// Times `op` (median of samples after a warm-up) and returns its memory-bound row.
/// For families outside the shape list (attention); the listed ones use [`Row::new`].
#[allow(dead_code)]
pub fn row(
    device: &Device,
    family: &'static str,
    case: String,
    dtype: DType,
    bytes: f64,
    _quick: bool,
    op: impl FnMut() -> openkern::Result<()>,
) -> openkern::Result<Row> {
    let t = measure(device, op)?;
    Ok(Row {
        family,
        kernel: kernel_label(device, family),
        case,
        dtype: dtype.name(),
        seconds: t.median,
        min_seconds: t.min,
        max_seconds: t.max,
        samples: t.samples,
        work: bytes,
        bytes,
        bound: Bound::Memory,
        source: t.source,
        ..Default::default()
    })
}

/// Runs `f`, turning a tensor too large for this device's bindings into a skipped case
/// (printed) rather than a failed benchmark. For families outside the shape list.
#[allow(dead_code)]
pub fn or_skip(case: &str, r: openkern::Result<Vec<Row>>) -> openkern::Result<Vec<Row>> {
    match r {
        Err(openkern::Error::TooLarge { bytes, limit, .. }) => {
            super::skip(&format!(
                "{case}: needs a {bytes}-byte binding, this device allows {limit}"
            ));
            Ok(Vec::new())
        }
        other => other,
    }
}
