// Conversion between f32, f16 and bf16 (round to nearest even; overflow to infinity;
// NaN stays NaN). One invocation per output word pair.

// #header
@group(0) @binding(0) var<storage, read> src: array<f32>;
fn load_src(i: u32) -> f32 { return src[i]; }
fn load2_src(w: u32) -> vec2<f32> { return vec2<f32>(src[2u * w], src[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
fn store_dst(i: u32, v: f32) { dst[i] = v; }
fn store2_dst(w: u32, v: vec2<f32>) { dst[2u * w] = v.x; dst[2u * w + 1u] = v.y; }
// #end header

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(2) var<uniform> params: Params;

override WORKGROUP: u32 = 256u;

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
        store2_dst(w, vec2<f32>(load_src(i0), load_src(i0 + 1u)));
    } else {
        store_dst(i0, load_src(i0));
    }
}
