//! Benchmarks of softmax: bytes read + written per second (one read of the logits, one
//! write of the probabilities, plus the mask where there is one).

use super::memory::{or_skip, row, tensor};
use super::{BenchArgs, Row};
use openkern::ops::{self, SoftmaxOptions};
use openkern::{DType, Device};

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let q = args.quick;
    let shapes: &[&[usize]] = if q {
        &[&[64, 4096], &[16, 32000], &[2, 256, 256]]
    } else {
        &[
            &[4096, 4096],
            &[512, 32000],
            &[32, 2048, 2048],
            &[4, 262_144],
        ]
    };
    let mut out = Vec::new();
    for &shape in shapes {
        for dtype in [DType::F32, DType::F16] {
            let case = format!("softmax {shape:?}");
            out.extend(or_skip(
                &case,
                (|| {
                    let x = tensor(device, shape, dtype, 1)?;
                    let bytes = 2.0 * x.size_in_bytes() as f64;
                    let mut rows = vec![row(
                        device,
                        "softmax",
                        case.clone(),
                        dtype,
                        bytes,
                        q,
                        || ops::softmax(&x).map(drop),
                    )?];
                    if shape.len() == 3 {
                        // attention scores: scaled, causal
                        let o = SoftmaxOptions {
                            scale: 0.088,
                            causal: true,
                            mask: None,
                        };
                        rows.push(row(
                            device,
                            "softmax",
                            format!("causal {shape:?}"),
                            dtype,
                            bytes,
                            q,
                            || ops::softmax_with(&x, &o).map(drop),
                        )?);
                    }
                    if shape[0] == 512 || shape[0] == 16 {
                        rows.push(row(
                            device,
                            "softmax",
                            format!("log_softmax {shape:?}"),
                            dtype,
                            bytes,
                            q,
                            || ops::log_softmax(&x).map(drop),
                        )?);
                    }
                    Ok(rows)
                })(),
            )?);
        }
    }
    Ok(out)
}
