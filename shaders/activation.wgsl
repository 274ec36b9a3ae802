// Activations, elementwise: GELU (erf and tanh forms), SiLU, and SwiGLU fused with its
// gate product (out = silu(gate) * up, one pass instead of three).
//
// One invocation per output word pair (elements 2w, 2w+1), so 16-bit outputs are whole
// 32-bit words. The logistic forms are written as x / (1 + exp(-t)), which saturates
// cleanly (exp overflow gives x / inf = -0) where a tanh built from exp ratios would give
// inf / inf = NaN.

// #header
@group(0) @binding(0) var<storage, read> a: array<f32>;
fn load_a(i: u32) -> f32 { return a[i]; }
fn load2_a(w: u32) -> vec2<f32> { return vec2<f32>(a[2u * w], a[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> b: array<f32>;
fn load_b(i: u32) -> f32 { return b[i]; }
fn load2_b(w: u32) -> vec2<f32> { return vec2<f32>(b[2u * w], b[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
fn store_out(i: u32, v: f32) { out[i] = v; }
fn store2_out(w: u32, v: vec2<f32>) { out[2u * w] = v.x; out[2u * w + 1u] = v.y; }
// #end header

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(3) var<uniform> params: Params;

// the activation code: 1 gelu, 2 gelu (tanh approximation), 3 silu, 4 relu, 5 swiglu
override OP: u32 = 1u;
override WORKGROUP: u32 = 256u;

// #piece activation
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
// #end piece activation

// OP is an activation code (see the piece above), or 5: swiglu, silu(a) * b with a the
// gate and b the up projection.
fn apply(a: f32, b: f32) -> f32 {
    if (OP == 5u) {
        return activate(a, 3u) * b;
    }
    return activate(a, OP);
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let w = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    let i0 = 2u * w;
    if (i0 >= params.n) {
        return;
    }
    if (i0 + 1u < params.n) {
        let a = load2_a(w);
        let b = load2_b(w);
        store2_out(w, vec2<f32>(apply(a.x, b.x), apply(a.y, b.y)));
    } else {
        store_out(i0, apply(load_a(i0), load_b(i0)));
    }
}
