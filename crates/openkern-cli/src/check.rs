//! `openkern check`: each op once on the chosen device against the CPU device, on odd
//! shapes, so a user can see their adapter computes the right numbers.

use openkern::{ops, DType, Device, Tensor};

fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn compare(name: &str, dtype: DType, got: &Tensor, want: &Tensor) -> openkern::Result<bool> {
    let g = got.to_f32_vec()?;
    let w = want.to_f32_vec()?;
    let tol = 4.0 * dtype.epsilon() as f32;
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0f32, f32::max);
    let ok = g.len() == w.len() && worst <= tol;
    println!(
        "{:<28} {:<5} {:>10.2e}  {}",
        name,
        dtype.name(),
        worst,
        if ok { "ok" } else { "FAIL" }
    );
    Ok(ok)
}

pub fn run(device: &Device) -> openkern::Result<()> {
    let cpu = Device::cpu();
    println!("checking {} against the CPU device\n", device.info().name);
    println!("{:<28} {:<5} {:>10}  result", "op", "dtype", "worst err");
    let mut all = true;
    for dtype in DType::ALL {
        let (a, b) = (pseudo_random(3 * 17 * 65, 1), pseudo_random(17 * 65, 2));
        let on = |d: &Device, v: &[f32], s: &[usize]| Tensor::from_f32(d, v, s, dtype);
        let (ga, gb) = (on(device, &a, &[3, 17, 65])?, on(device, &b, &[17, 65])?);
        let (ca, cb) = (on(&cpu, &a, &[3, 17, 65])?, on(&cpu, &b, &[17, 65])?);
        all &= compare(
            "add (broadcast 3x17x65)",
            dtype,
            &ops::add(&ga, &gb)?,
            &ops::add(&ca, &cb)?,
        )?;
        all &= compare(
            "mul (broadcast 3x17x65)",
            dtype,
            &ops::mul(&ga, &gb)?,
            &ops::mul(&ca, &cb)?,
        )?;
        all &= compare(
            "cast f32 roundtrip",
            dtype,
            &ga.cast(DType::F32)?.cast(dtype)?,
            &ca,
        )?;
    }
    if all {
        println!("\nall checks passed");
        Ok(())
    } else {
        Err(openkern::Error::Gpu {
            device: device.info().name.clone(),
            message: "some checks failed (see table)".into(),
        })
    }
}
