//! Benchmarks of the norms: bytes read + written per second. The fused residual add +
//! RMS norm is compared (peer) with the unfused add then rms_norm, same bytes counted.

use super::memory::{row, sweep, tensor};
use super::{BenchArgs, Row};
use openkern::{ops, Device};

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let q = args.quick;
    let shapes: &[[usize; 2]] = if q {
        &[[64, 4096]]
    } else {
        &[[4096, 4096], [512, 8192]]
    };
    sweep(shapes, |m, n, dtype| {
        let x = tensor(device, &[m, n], dtype, 1)?;
        let r = tensor(device, &[m, n], dtype, 2)?;
        let w = tensor(device, &[n], dtype, 3)?;
        let b = tensor(device, &[n], dtype, 4)?;
        let s = x.size_in_bytes() as f64;
        let mut rows = vec![
            row(
                device,
                "norm",
                format!("rms_norm {m}x{n}"),
                dtype,
                2.0 * s,
                q,
                || ops::rms_norm(&x, &w, 1e-6).map(drop),
            )?,
            row(
                device,
                "norm",
                format!("layer_norm {m}x{n}"),
                dtype,
                2.0 * s,
                q,
                || ops::layer_norm(&x, &w, &b, 1e-5).map(drop),
            )?,
        ];
        let unfused = row(device, "norm", String::new(), dtype, 4.0 * s, q, || {
            let h = ops::add(&x, &r)?;
            ops::rms_norm(&h, &w, 1e-6).map(drop)
        })?;
        let mut fused = row(
            device,
            "norm",
            format!("add_rms_norm {m}x{n}"),
            dtype,
            4.0 * s,
            q,
            || ops::add_rms_norm(&x, &r, &w, 1e-6).map(drop),
        )?;
        fused.peer = Some(("unfused", unfused.work / unfused.seconds));
        rows.push(fused);
        Ok(rows)
    })
}
