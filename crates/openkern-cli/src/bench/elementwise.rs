//! The residual add on the model shapes, `[tokens, hidden]`: three tensors' bytes per
//! second against the copy probe.

use super::memory::tensor;
use super::{kernel_label, measure, parse_dtype, run_cases, BenchArgs, Bound, Row};
use openkern::{ops, Device};

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    run_cases(args, "elementwise", |case| {
        let dtype = parse_dtype(&case.dtype);
        let a = tensor(device, &case.shape, dtype, 1)?;
        let b = tensor(device, &case.shape, dtype, 2)?;
        let s = a.size_in_bytes() as f64;
        let t = measure(device, || ops::add(&a, &b).map(drop))?;
        let kernel = kernel_label(device, &case.op);
        let e = a.len() as f64;
        Ok(vec![Row::new(
            case,
            "elementwise",
            kernel,
            &t,
            e,
            3.0 * s,
            Bound::Memory,
        )])
    })
}
