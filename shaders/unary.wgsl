// Unary math, elementwise: exp, log, sqrt, rsqrt, neg, abs, tanh, sigmoid, clamp, and
// the 0/1 → additive mask conversion. Arithmetic is f32; the output has x's dtype.
//
// A file of its own rather than more op codes in activation.wgsl: activation's codes are
// the matmul epilogue's too, and these ops have their own parameters (clamp's bounds).
//
// WGSL leaves the builtins' results at special values (log 0, sqrt of a negative, exp
// overflow, NaN inputs) to the implementation, so the IEEE answers are written out here
// and every adapter returns the same values as the CPU backend.
//
// One invocation per output word pair (elements 2w, 2w+1), so 16-bit outputs are whole
// 32-bit words.

// #header
@group(0) @binding(0) var<storage, read> x: array<f32>;
fn load_x(i: u32) -> f32 { return x[i]; }
fn load2_x(w: u32) -> vec2<f32> { return vec2<f32>(x[2u * w], x[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
fn store_y(i: u32, v: f32) { y[i] = v; }
fn store2_y(w: u32, v: vec2<f32>) { y[2u * w] = v.x; y[2u * w + 1u] = v.y; }
// #end header

struct Params {
    n: u32,
    lo: f32,
    hi: f32,
    _pad0: u32,
}
@group(0) @binding(2) var<uniform> params: Params;

// 0 exp, 1 log, 2 sqrt, 3 rsqrt, 4 neg, 5 abs, 6 tanh, 7 sigmoid, 8 clamp(lo, hi),
// 9 additive mask (0 where x != 0, -inf where x == 0)
override OP: u32 = 0u;
override WORKGROUP: u32 = 256u;

const INF_BITS: u32 = 0x7f800000u;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > INF_BITS;
}

fn inf() -> f32 {
    return bitcast<f32>(INF_BITS);
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// exp with IEEE ends: +inf past the f32 range, 0 below it (exp(-inf) = 0)
fn exp_ieee(v: f32) -> f32 {
    if (v > 88.72283) {
        return inf();
    }
    if (v < -103.97208) {
        return 0.0;
    }
    return exp(v);
}

fn apply(v: f32) -> f32 {
    if (OP == 9u) {
        return select(-inf(), 0.0, v != 0.0);
    }
    if (is_nan(v)) {
        return v;
    }
    switch OP {
        case 1u: {
            if (v < 0.0) { return nan(); }
            if (v == 0.0) { return -inf(); }
            if (v == inf()) { return v; }
            return log(v);
        }
        case 2u: {
            if (v < 0.0) { return nan(); }
            if (v == 0.0 || v == inf()) { return v; }
            return sqrt(v);
        }
        case 3u: {
            if (v < 0.0) { return nan(); }
            // 1/sqrt(±0) = ±inf, as IEEE division gives
            if (v == 0.0) { return select(inf(), -inf(), bitcast<u32>(v) != 0u); }
            if (v == inf()) { return 0.0; }
            return inverseSqrt(v);
        }
        case 4u: {
            return -v;
        }
        case 5u: {
            return abs(v);
        }
        case 6u: {
            // tanh is ±1 to f32 precision past 9; some builtins overflow to NaN there
            if (abs(v) >= 9.0) { return sign(v); }
            return tanh(v);
        }
        case 7u: {
            // saturates cleanly: 1 / (1 + inf) = 0
            return 1.0 / (1.0 + exp_ieee(-v));
        }
        case 8u: {
            return min(max(v, params.lo), params.hi);
        }
        default: {
            return exp_ieee(v);
        }
    }
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
        let v = load2_x(w);
        store2_y(w, vec2<f32>(apply(v.x), apply(v.y)));
    } else {
        store_y(i0, apply(load_x(i0)));
    }
}
