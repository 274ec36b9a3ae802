//! Benchmarks of the activations: bytes read + written per second. SwiGLU is compared
//! (peer) with silu then mul, same bytes counted.

use super::memory::{row, sweep, tensor};
use super::{BenchArgs, Row};
use openkern::{ops, Device};

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let q = args.quick;
    let shapes: &[[usize; 2]] = if q {
        &[[64, 4096]]
    } else {
        &[[4096, 4096], [512, 14336]]
    };
    sweep(shapes, |m, n, dtype| {
        let x = tensor(device, &[m, n], dtype, 1)?;
        let u = tensor(device, &[m, n], dtype, 2)?;
        let s = x.size_in_bytes() as f64;
        let mut rows = Vec::new();
        for act in [
            ops::Activation::Gelu,
            ops::Activation::GeluTanh,
            ops::Activation::Silu,
        ] {
            rows.push(row(
                device,
                "activation",
                format!("{} {m}x{n}", act.name()),
                dtype,
                2.0 * s,
                q,
                || ops::activation(act, &x).map(drop),
            )?);
        }
        let unfused = row(
            device,
            "activation",
            String::new(),
            dtype,
            3.0 * s,
            q,
            || ops::mul(&ops::silu(&x)?, &u).map(drop),
        )?;
        let mut fused = row(
            device,
            "activation",
            format!("swiglu {m}x{n}"),
            dtype,
            3.0 * s,
            q,
            || ops::swiglu(&x, &u).map(drop),
        )?;
        fused.peer = Some(("unfused", unfused.work / unfused.seconds));
        rows.push(fused);
        rows.push(row(
            device,
            "activation",
            format!("mul {m}x{n}"),
            dtype,
            3.0 * s,
            q,
            || ops::mul(&x, &u).map(drop),
        )?);
        rows.push(row(
            device,
            "activation",
            format!("div_scalar {m}x{n}"),
            dtype,
            2.0 * s,
            q,
            || ops::div_scalar(&x, 3.0).map(drop),
        )?);
        Ok(rows)
    })
}
