// Softmax and log-softmax over the last dimension, one workgroup per row.
//
// logit_j = x_j * scale (+ mask_j) (-inf where the causal mask hides column j).
// Pass 1 streams the row once keeping an online (max, sum) pair per lane: when a larger
// value arrives the running sum is rescaled by exp(old_max - new_max), so max and
// normaliser come from one read. The lanes' pairs are merged with one max and one sum
// reduction (each lane's sum rescaled to the row max first). Pass 2 re-reads the row
// (from cache: a 32000-wide f32 row is 128 KiB) and writes exp(l - max) / sum, or
// l - max - log(sum) for log-softmax. A row of any length is handled by the lanes
// striding over it.
//
// Rows are walked in 32-bit words (element pairs), so 16-bit tensors load and store whole
// words; only a row's odd first or last element, sharing its word with a neighbouring
// row, goes through the single-element (atomic) store.
//
// Defined results: a row whose logits are all -inf (fully masked) gives 0 (softmax) or
// -inf (log-softmax) everywhere; a NaN or +inf logit makes its whole row NaN.

// #header
@group(0) @binding(0) var<storage, read> x: array<f32>;
fn load_x(i: u32) -> f32 { return x[i]; }
fn load2_x(w: u32) -> vec2<f32> { return vec2<f32>(x[2u * w], x[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> mask: array<f32>;
fn load_mask(i: u32) -> f32 { return mask[i]; }
fn load2_mask(w: u32) -> vec2<f32> { return vec2<f32>(mask[2u * w], mask[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
fn store_y(i: u32, v: f32) { y[i] = v; }
fn store2_y(w: u32, v: vec2<f32>) { y[2u * w] = v.x; y[2u * w + 1u] = v.y; }
// #end header

struct Params {
    n: u32,
    rows: u32,
    // rows per causal block (the size of the second-to-last dimension)
    q: u32,
    causal: u32,
    scale: f32,
    has_mask: u32,
    // rank of the leading (row) dimensions, for the mask's broadcast
    lead_rank: u32,
    // column limit offset: row i of a causal block sees columns j <= i + causal_offset
    causal_offset: i32,
    neg_inf: f32,
    nan: f32,
    _pad0: u32,
    _pad1: u32,
    lead_shape: array<vec4<u32>, 2>,
    // the mask's strides over the leading dimensions, in elements (0 where broadcast)
    mask_strides: array<vec4<u32>, 2>,
}
@group(0) @binding(3) var<uniform> params: Params;

override LOG: bool = false;
override WORKGROUP: u32 = 256u;

// #piece row_reduce
// Workgroup-wide reductions through shared memory: a tree over the WORKGROUP lanes
// (a power of two, at most 256). Every lane gets the same result. On adapters with
// SUBGROUP the launcher swaps this block for shaders/common/row_reduce_subgroup.wgsl, which reduces
// inside each subgroup in registers first. Call reduce_init once, from uniform control
// flow, before any reduction; call the reductions from uniform control flow.
var<workgroup> red_f: array<f32, 256>;
var<workgroup> red_u: array<u32, 256>;
var<private> red_lid: u32;

fn reduce_init(lid: u32) {
    red_lid = lid;
}

fn wg_sum(v: f32) -> f32 {
    red_f[red_lid] = v;
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s = s / 2u) {
        if (red_lid < s) {
            red_f[red_lid] = red_f[red_lid] + red_f[red_lid + s];
        }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32) -> f32 {
    red_f[red_lid] = v;
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s = s / 2u) {
        if (red_lid < s) {
            red_f[red_lid] = max(red_f[red_lid], red_f[red_lid + s]);
        }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

fn wg_max_u32(v: u32) -> u32 {
    red_u[red_lid] = v;
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s = s / 2u) {
        if (red_lid < s) {
            red_u[red_lid] = max(red_u[red_lid], red_u[red_lid + s]);
        }
        workgroupBarrier();
    }
    let r = red_u[0];
    workgroupBarrier();
    return r;
}

fn wg_min_u32(v: u32) -> u32 {
    red_u[red_lid] = v;
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s = s / 2u) {
        if (red_lid < s) {
            red_u[red_lid] = min(red_u[red_lid], red_u[red_lid + s]);
        }
        workgroupBarrier();
    }
    let r = red_u[0];
    workgroupBarrier();
    return r;
}
// #end piece row_reduce

var<private> row_base: u32;
var<private> mask_base: u32;
var<private> col_limit: i32;

fn logit(j: u32) -> f32 {
    var v = load_x(row_base + j) * params.scale;
    if (params.has_mask != 0u) {
        v += load_mask(mask_base + j);
    }
    if (params.causal != 0u && i32(j) > col_limit) {
        v = params.neg_inf;
    }
    return v;
}

// Elements 2w and 2w+1 of the buffer, both inside this row.
fn logit2(w: u32) -> vec2<f32> {
    let j = 2u * w - row_base;
    var v = load2_x(w) * params.scale;
    if (params.has_mask != 0u) {
        v += vec2<f32>(load_mask(mask_base + j), load_mask(mask_base + j + 1u));
    }
    if (params.causal != 0u) {
        if (i32(j) > col_limit) {
            v.x = params.neg_inf;
        }
        if (i32(j + 1u) > col_limit) {
            v.y = params.neg_inf;
        }
    }
    return v;
}

// Online softmax step: acc = (running max, sum of exp(l - running max)).
fn online(acc: vec2<f32>, v: f32) -> vec2<f32> {
    if (v > acc.x) {
        // rescale the sum to the new max (exp(-inf) = 0 on the first element)
        return vec2<f32>(v, acc.y * exp(acc.x - v) + 1.0);
    }
    if (v == params.neg_inf) {
        // masked: contributes nothing (and exp(-inf - -inf) would be NaN)
        return acc;
    }
    // a NaN lands here and poisons the sum, which marks the row NaN below
    return vec2<f32>(acc.x, acc.y + exp(v - acc.x));
}

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

var<private> row_max: f32;
var<private> row_sub: f32;
var<private> row_scale: f32;
// 0 normal, 1 fully masked, 2 NaN
var<private> row_state: u32;

fn finish(v: f32) -> f32 {
    if (row_state == 2u) {
        return params.nan;
    }
    if (row_state == 1u) {
        if (LOG) {
            return params.neg_inf;
        }
        return 0.0;
    }
    if (LOG) {
        // (v - max) first: exact for nearby values, where max + log(sum) would round
        // at the magnitude of max (1e4 -> 1e-3)
        return (v - row_max) - row_sub;
    }
    return exp(v - row_max) * row_scale;
}

// The online step over word w (elements 2w and 2w+1, both inside the row).
fn scan_word(acc: vec2<f32>, w: u32) -> vec2<f32> {
    let v = logit2(w);
    return online(online(acc, v.x), v.y);
}

// (max, sum) of the 8 words w, w + WORKGROUP, ..., folded on their own and then merged
// into the lane's pair: the running sum then grows by block totals, 16 times fewer
// roundings at its own magnitude (a 2^24-element row otherwise drifts by ~1e-3).
fn scan_block(w: u32) -> vec2<f32> {
    var b = vec2<f32>(params.neg_inf, 0.0);
    b = scan_word(b, w);
    b = scan_word(b, w + WORKGROUP);
    b = scan_word(b, w + 2u * WORKGROUP);
    b = scan_word(b, w + 3u * WORKGROUP);
    b = scan_word(b, w + 4u * WORKGROUP);
    b = scan_word(b, w + 5u * WORKGROUP);
    b = scan_word(b, w + 6u * WORKGROUP);
    return scan_word(b, w + 7u * WORKGROUP);
}

// Two (max, sum) pairs as one. A pair that saw only masked logits is (-inf, 0), or
// (-inf, NaN) after a NaN, which must reach the sum.
fn merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    if (b.x > a.x) {
        return vec2<f32>(b.x, a.y * exp(a.x - b.x) + b.y);
    }
    if (b.x == params.neg_inf) {
        return vec2<f32>(a.x, a.y + b.y);
    }
    return vec2<f32>(a.x, a.y + b.y * exp(b.x - a.x));
}

// The outputs of word w.
fn write_word(w: u32) {
    let v = logit2(w);
    store2_y(w, vec2<f32>(finish(v.x), finish(v.y)));
}

fn setup_row(row: u32) {
    row_base = row * params.n;
    col_limit = i32(row % params.q) + params.causal_offset;
    var rem = row;
    var mb = 0u;
    for (var d = i32(params.lead_rank) - 1; d >= 0; d--) {
        let size = params.lead_shape[u32(d) / 4u][u32(d) % 4u];
        mb += (rem % size) * params.mask_strides[u32(d) / 4u][u32(d) % 4u];
        rem = rem / size;
    }
    mask_base = mb;
}

// Sets row_max, row_scale, row_sub and row_state from the row's (max, sum).
fn conclude(m: f32, total: f32) {
    row_max = m;
    row_scale = 1.0 / total;
    row_sub = log(total);
    row_state = 0u;
    if (m == params.neg_inf) {
        row_state = 1u;
    }
    if (is_nan(total) || (m > 0.0 && m == -params.neg_inf)) {
        row_state = 2u;
    }
}

// #piece row_write_walk
// write_word(w) for each of this lane's words of [w0, w1), WORKGROUP apart. Eight per loop
// iteration: lavapipe ends every loop of an invocation once 65,535 iterations have run in
// all (src/gpu/driver_quirks.rs), which one word per iteration reached near 2^24-element
// rows. The kernel defines write_word.
fn write_words(w0: u32, w1: u32, lane: u32) {
    var w = w0 + lane;
    for (; w + 7u * WORKGROUP < w1; w += 8u * WORKGROUP) {
        write_word(w);
        write_word(w + WORKGROUP);
        write_word(w + 2u * WORKGROUP);
        write_word(w + 3u * WORKGROUP);
        write_word(w + 4u * WORKGROUP);
        write_word(w + 5u * WORKGROUP);
        write_word(w + 6u * WORKGROUP);
        write_word(w + 7u * WORKGROUP);
    }
    for (; w < w1; w += WORKGROUP) {
        write_word(w);
    }
}
// #end piece row_write_walk

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    reduce_init(lid);
    let row = wid.y * groups.x + wid.x;
    if (row >= params.rows) {
        return;
    }
    let n = params.n;
    setup_row(row);
    let head = row_base & 1u;
    let tail = (row_base + n) & 1u;
    let w0 = (row_base + head) / 2u;
    let w1 = (row_base + n) / 2u;

    // lavapipe (llvmpipe) silently ends every loop of an invocation once 65,535
    // iterations have run in total, across all its loops (LP_MAX_TGSI_LOOP_ITERATIONS in
    // Mesa's gallivm). Each lane therefore takes its words 8 at a time, which keeps a row
    // filling lavapipe's 128 MiB binding to 16,384 iterations per pass; the remainder
    // goes one word at a time.
    var acc = vec2<f32>(params.neg_inf, 0.0);
    var w = w0 + lid;
    for (; w + 7u * WORKGROUP < w1; w += 8u * WORKGROUP) {
        acc = merge(acc, scan_block(w));
    }
    for (; w < w1; w += WORKGROUP) {
        acc = scan_word(acc, w);
    }
    if (lid == 0u && head == 1u) {
        acc = online(acc, logit(0u));
    }
    if (lid == WORKGROUP - 1u && tail == 1u) {
        acc = online(acc, logit(n - 1u));
    }
    let m = wg_max(acc.x);
    // Rescale this lane's sum to the row max. A lane that saw only masked values has
    // sum 0 (or NaN after a NaN) and max -inf: keep its sum as it is.
    var s = acc.y;
    if (acc.x != params.neg_inf) {
        s = acc.y * exp(acc.x - m);
    }
    conclude(m, wg_sum(s));

    write_words(w0, w1, lid);
    if (lid == 0u && head == 1u) {
        store_y(row_base, finish(logit(0u)));
    }
    if (lid == WORKGROUP - 1u && tail == 1u) {
        store_y(row_base + n - 1u, finish(logit(n - 1u)));
    }
}

// Short rows (a few dozen elements: MoE router logits, tiny heads): one invocation per
// row, WORKGROUP rows per workgroup, no cross-lane reduction. Neighbouring lanes read
// neighbouring rows, so a warp's loads still stay within a few cache lines.
@compute @workgroup_size(WORKGROUP)
fn short_rows(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    if (row >= params.rows) {
        return;
    }
    let n = params.n;
    setup_row(row);
    let head = row_base & 1u;
    let tail = (row_base + n) & 1u;
    let w0 = (row_base + head) / 2u;
    let w1 = (row_base + n) / 2u;
    var acc = vec2<f32>(params.neg_inf, 0.0);
    if (head == 1u) {
        acc = online(acc, logit(0u));
    }
    for (var w = w0; w < w1; w++) {
        let v = logit2(w);
        acc = online(online(acc, v.x), v.y);
    }
    if (tail == 1u) {
        acc = online(acc, logit(n - 1u));
    }
    conclude(acc.x, acc.y);
    if (head == 1u) {
        store_y(row_base, finish(logit(0u)));
    }
    for (var w = w0; w < w1; w++) {
        let v = logit2(w);
        store2_y(w, vec2<f32>(finish(v.x), finish(v.y)));
    }
    if (tail == 1u) {
        store_y(row_base + n - 1u, finish(logit(n - 1u)));
    }
}
