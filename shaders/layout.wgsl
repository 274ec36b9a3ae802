// Layout copies into contiguous tensors: permute (transpose), strided blocks (narrow,
// slice, split when the block is not one contiguous run) and concat.
//
// permute: one invocation per output word pair; each output element finds its source
// through the permuted strides (rank <= 8), from element src_offset of x. The same entry
// copies a strided block (the block's shape and x's strides, its start as src_offset).
// concat: one dispatch per input, one invocation per pair of source elements, each
// written at its place in the output. A pair that lands on one whole output word is
// stored as a word; otherwise (16-bit data at an odd offset) element by element.
//
// The bodies only move values, never compute on them, and name no element type
// (`vec2(..)` takes it from the accessors): with a u32 header x and y are u32 words, so
// u32 tensors (token ids) copy bit for bit, whatever their bits would mean as floats.

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
    rank: u32,
    // concat: source elements per outer index, output elements per outer index, and the
    // output offset of this input inside an outer block
    src_block: u32,
    dst_block: u32,
    dst_offset: u32,
    // permute: the element of x that output element 0 reads from
    src_offset: u32,
    _pad0: u32,
    _pad1: u32,
    out_shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
}
@group(0) @binding(2) var<uniform> params: Params;

override WORKGROUP: u32 = 256u;

fn source(i: u32) -> u32 {
    var rem = i;
    var s = params.src_offset;
    for (var d = i32(params.rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let size = params.out_shape[q][r];
        s += (rem % size) * params.src_strides[q][r];
        rem = rem / size;
    }
    return s;
}

@compute @workgroup_size(WORKGROUP)
fn permute(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let w = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    let i0 = 2u * w;
    if (i0 >= params.n) {
        return;
    }
    if (i0 + 1u < params.n) {
        store2_y(w, vec2(load_x(source(i0)), load_x(source(i0 + 1u))));
    } else {
        store_y(i0, load_x(source(i0)));
    }
}

fn destination(i: u32) -> u32 {
    let outer = i / params.src_block;
    return outer * params.dst_block + params.dst_offset + (i - outer * params.src_block);
}

@compute @workgroup_size(WORKGROUP)
fn concat(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i0 = 2u * ((wid.y * groups.x + wid.x) * WORKGROUP + lid);
    if (i0 >= params.n) {
        return;
    }
    let d0 = destination(i0);
    if (i0 + 1u < params.n) {
        let d1 = destination(i0 + 1u);
        if ((d0 & 1u) == 0u && d1 == d0 + 1u) {
            store2_y(d0 / 2u, vec2(load_x(i0), load_x(i0 + 1u)));
        } else {
            store_y(d0, load_x(i0));
            store_y(d1, load_x(i0 + 1u));
        }
    } else {
        store_y(d0, load_x(i0));
    }
}
