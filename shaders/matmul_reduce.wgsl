// Split-K reduction and epilogue: out = act(Σ_s partial[s] + bias). The partial sums
// are f32, laid out [splits, batch·M·N] by matmul_tiled.wgsl with splits > 1.
// One invocation per output word pair, so 16-bit outputs are whole-word stores.

// #header
@group(0) @binding(0) var<storage, read> partial: array<f32>;
fn load_partial(i: u32) -> f32 { return partial[i]; }
fn load2_partial(w: u32) -> vec2<f32> { return vec2<f32>(partial[2u * w], partial[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> bias: array<f32>;
fn load_bias(i: u32) -> f32 { return bias[i]; }
fn load2_bias(w: u32) -> vec2<f32> { return vec2<f32>(bias[2u * w], bias[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
fn store_c(i: u32, v: f32) { c[i] = v; }
fn store2_c(w: u32, v: vec2<f32>) { c[2u * w] = v.x; c[2u * w + 1u] = v.y; }
// #end header

// #piece matmul_params
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    // element strides of A's (m, k) and B's (k, n)
    sam: u32,
    sak: u32,
    sbk: u32,
    sbn: u32,
    tiles_m: u32,
    tiles_n: u32,
    splits: u32,
    // K elements per split (a multiple of BK when splits > 1)
    k_chunk: u32,
    batch_rank: u32,
    total_groups: u32,
    _pad0: u32,
    _pad1: u32,
    batch_shape: array<vec4<u32>, 2>,
    a_bstride: array<vec4<u32>, 2>,
    b_bstride: array<vec4<u32>, 2>,
}
// #end piece matmul_params
@group(0) @binding(3) var<uniform> params: Params;

override WG: u32 = 256u;
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;

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

// #piece matmul_batch_offsets
fn batch_offsets(bidx: u32) -> vec2<u32> {
    var rem = bidx;
    var off = vec2<u32>(0u, 0u);
    for (var d = i32(params.batch_rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let size = params.batch_shape[q][r];
        let i = rem % size;
        rem = rem / size;
        off += i * vec2<u32>(params.a_bstride[q][r], params.b_bstride[q][r]);
    }
    return off;
}
// #end piece matmul_batch_offsets

fn value(i: u32, total: u32) -> f32 {
    var s = 0.0;
    for (var p = 0u; p < params.splits; p++) {
        s += load_partial(p * total + i);
    }
    if (HAS_BIAS) {
        s += load_bias(i % params.n);
    }
    return activate(s, ACT);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let w = (wid.y * groups.x + wid.x) * WG + lid;
    let total = params.m * params.n * params.batch;
    let i0 = 2u * w;
    if (i0 >= total) {
        return;
    }
    let v0 = value(i0, total);
    if (i0 + 1u < total) {
        store2_c(w, vec2<f32>(v0, value(i0 + 1u, total)));
    } else {
        store_c(i0, v0);
    }
}
