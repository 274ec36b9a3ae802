//! Activations on the model shapes, `[tokens, ffn]`: SwiGLU (gate and up in, one out) and
//! SiLU. Bytes read + written per second against the copy probe.

use super::memory::tensor;
use super::{kernel_label, measure, parse_dtype, run_cases, BenchArgs, Bound, Row};
use openkern::{ops, Device};

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    run_cases(args, "activation", |case| {
        let dtype = parse_dtype(&case.dtype);
        let x = tensor(device, &case.shape, dtype, 1)?;
        let s = x.size_in_bytes() as f64;
        let e = x.len() as f64;
        let kernel = kernel_label(device, &case.op);
        Ok(vec![match case.op.as_str() {
            "swiglu" => {
                let u = tensor(device, &case.shape, dtype, 2)?;
                let t = measure(device, || ops::swiglu(&x, &u).map(drop))?;
                Row::new(
                    case,
                    "activation",
                    kernel,
                    &t,
                    6.0 * e,
                    3.0 * s,
                    Bound::Memory,
                )
            }
            _ => {
                let t = measure(device, || ops::silu(&x).map(drop))?;
                Row::new(
                    case,
                    "activation",
                    kernel,
                    &t,
                    4.0 * e,
                    2.0 * s,
                    Bound::Memory,
                )
            }
        }])
    })
}
