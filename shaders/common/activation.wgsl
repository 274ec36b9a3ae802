// The activations, one numbering everywhere (Activation::code in src/ops/activation.rs):
// 0 none, 1 gelu (erf form), 2 gelu (tanh approximation), 3 silu, 4 relu. The same
// formulas as the CPU twin. The logistic forms are x / (1 + exp(-t)), which saturate
// cleanly where a tanh could give inf / inf = NaN. Called with an override constant as
// `code`, the switch folds away.

// erfc(z) for z >= 0 to a fractional error below 1.2e-7 (Numerical Recipes' erfcc,
// a Chebyshev fit); WGSL has no erf.
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(p);
}

fn activate(x: f32, code: u32) -> f32 {
    switch code {
        case 1u: {
            // gelu(x) = x * Phi(x) = x * erfc(-x / sqrt 2) / 2, written so the fit is
            // always evaluated at a non-negative argument
            let z = x * 0.7071067811865476;
            if (z >= 0.0) {
                return x * (1.0 - 0.5 * erfc_pos(z));
            }
            return x * 0.5 * erfc_pos(-z);
        }
        case 2u: {
            let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            return x / (1.0 + exp(-2.0 * u));
        }
        case 3u: {
            return x / (1.0 + exp(-x));
        }
        case 4u: {
            // not max(x, 0): WGSL leaves max's NaN result unspecified
            if (x > 0.0 || (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) {
                return x;
            }
            return 0.0;
        }
        default: {
            return x;
        }
    }
}
