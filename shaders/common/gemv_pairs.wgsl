// K and A's strides, copied from `params` once per invocation by read_pair_params():
// read from the uniform buffer in the K loop, each use was a fresh load (on llvmpipe a
// gather over the eight lanes of a SIMD row, per use).
var<private> k_len: u32;
var<private> stride_am: u32;
var<private> stride_ak: u32;

fn read_pair_params() {
    k_len = params.k;
    stride_am = params.sam;
    stride_ak = params.sak;
}

// A pair (m, k), (m, k+1) of A, zero past K.
fn a_pair(base: u32, m: u32, k: u32) -> vec2<f32> {
    let i = base + m * stride_am + k * stride_ak;
    if (k + 1u < k_len) {
        if (VEC2_A) {
            return load2_a(i >> 1u);
        }
        return vec2<f32>(load_a(i), load_a(i + stride_ak));
    }
    if (k < k_len) {
        return vec2<f32>(load_a(i), 0.0);
    }
    return vec2<f32>(0.0);
}

// A pair (k, k+1) of the weight row starting at brow (B read along K), zero past K.
fn w_pair(brow: u32, k: u32) -> vec2<f32> {
    if (k + 1u < k_len) {
        if (VEC2_B) {
            return load2_b((brow + k) >> 1u);
        }
        return vec2<f32>(load_b(brow + k), load_b(brow + k + 1u));
    }
    if (k < k_len) {
        return vec2<f32>(load_b(brow + k), 0.0);
    }
    return vec2<f32>(0.0);
}

fn finish(acc: f32, col: u32) -> f32 {
    var x = acc;
    if (HAS_BIAS) {
        x += load_bias(col);
    }
    return activate(x, ACT);
}
