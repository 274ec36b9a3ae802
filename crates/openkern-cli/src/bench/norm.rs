//! Norms on the model shapes: RMS norm, and the residual add fused with it, over
//! `[tokens, hidden]`. Bytes read + written per second against the copy probe.

use super::memory::tensor;
use super::{kernel_label, measure, parse_dtype, run_cases, BenchArgs, Bound, Row};
use openkern::{ops, Device};

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    run_cases(args, "norm", |case| {
        let dtype = parse_dtype(&case.dtype);
        let (m, n) = (case.shape[0], case.shape[1]);
        let x = tensor(device, &[m, n], dtype, 1)?;
        let w = tensor(device, &[n], dtype, 3)?;
        let s = x.size_in_bytes() as f64;
        let e = (m * n) as f64;
        let kernel = kernel_label(device, &case.op);
        Ok(vec![match case.op.as_str() {
            "add_rms_norm" => {
                let r = tensor(device, &[m, n], dtype, 2)?;
                let t = measure(device, || ops::add_rms_norm(&x, &r, &w, 1e-6).map(drop))?;
                // reads x and the residual, writes the sum and the normalised rows
                Row::new(case, "norm", kernel, &t, 5.0 * e, 4.0 * s, Bound::Memory)
            }
            _ => {
                let t = measure(device, || ops::rms_norm(&x, &w, 1e-6).map(drop))?;
                Row::new(case, "norm", kernel, &t, 4.0 * e, 2.0 * s, Bound::Memory)
            }
        }])
    })
}
