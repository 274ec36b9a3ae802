// Binary elementwise ops (add, sub, mul, div) with NumPy broadcasting or a scalar operand.
//
// Each invocation produces one output word pair (elements 2w and 2w+1), so 16-bit outputs
// are written as whole 32-bit words with no atomics. The grid may be folded into y when
// it exceeds 65535 workgroups (see fold_groups in src/gpu/mod.rs).

// #header
@group(0) @binding(0) var<storage, read> lhs: array<f32>;
fn load_lhs(i: u32) -> f32 { return lhs[i]; }
fn load2_lhs(w: u32) -> vec2<f32> { return vec2<f32>(lhs[2u * w], lhs[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> rhs: array<f32>;
fn load_rhs(i: u32) -> f32 { return rhs[i]; }
fn load2_rhs(w: u32) -> vec2<f32> { return vec2<f32>(rhs[2u * w], rhs[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
fn store_out(i: u32, v: f32) { out[i] = v; }
fn store2_out(w: u32, v: vec2<f32>) { out[2u * w] = v.x; out[2u * w + 1u] = v.y; }
// #end header

struct Params {
    n: u32,
    rank: u32,
    // 0: same shape, 1: broadcast through strides, 2: rhs is `scalar`,
    // 3: rhs repeats along the leading dimensions (a bias row): rhs index = i % rhs_len
    mode: u32,
    scalar: f32,
    out_shape: array<vec4<u32>, 2>,
    lhs_strides: array<vec4<u32>, 2>,
    rhs_strides: array<vec4<u32>, 2>,
    rhs_len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(3) var<uniform> params: Params;

// 0 add, 1 sub, 2 mul, 3 div
override OP: u32 = 0u;
override WORKGROUP: u32 = 256u;

fn apply(a: f32, b: f32) -> f32 {
    switch OP {
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        case 3u: { return a / b; }
        default: { return a + b; }
    }
}

fn operands(i: u32) -> vec2<f32> {
    if (params.mode == 2u) {
        return vec2<f32>(load_lhs(i), params.scalar);
    }
    if (params.mode == 0u) {
        return vec2<f32>(load_lhs(i), load_rhs(i));
    }
    if (params.mode == 3u) {
        return vec2<f32>(load_lhs(i), load_rhs(i % params.rhs_len));
    }
    var rem = i;
    var li = 0u;
    var ri = 0u;
    for (var d = i32(params.rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let size = params.out_shape[q][r];
        let c = rem % size;
        rem = rem / size;
        li += c * params.lhs_strides[q][r];
        ri += c * params.rhs_strides[q][r];
    }
    return vec2<f32>(load_lhs(li), load_rhs(ri));
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
    let pair = i0 + 1u < params.n;
    // Whole-word fast paths: one load per operand word, no index arithmetic.
    if (pair && params.mode == 0u) {
        let a = load2_lhs(w);
        let b = load2_rhs(w);
        store2_out(w, vec2<f32>(apply(a.x, b.x), apply(a.y, b.y)));
        return;
    }
    if (pair && params.mode == 2u) {
        let a = load2_lhs(w);
        store2_out(w, vec2<f32>(apply(a.x, params.scalar), apply(a.y, params.scalar)));
        return;
    }
    if (pair && params.mode == 3u && (params.rhs_len & 1u) == 0u) {
        let a = load2_lhs(w);
        let b = load2_rhs(w % (params.rhs_len / 2u));
        store2_out(w, vec2<f32>(apply(a.x, b.x), apply(a.y, b.y)));
        return;
    }
    let a = operands(i0);
    let v0 = apply(a.x, a.y);
    if (pair) {
        let b = operands(i0 + 1u);
        store2_out(w, vec2<f32>(v0, apply(b.x, b.y)));
    } else {
        store_out(i0, v0);
    }
}
