// Workgroup-wide reductions through subgroup operations, for adapters with SUBGROUP.
// The launcher swaps this in for the `row_reduce` piece of a row kernel (see
// KernelSource::swaps in src/gpu/shader.rs); the interface is the same as the
// shared-memory form: reduce_init(lid) once, then wg_sum / wg_max / wg_max_u32 /
// wg_min_u32 from uniform control flow, every lane getting the same result.
//
// Each subgroup reduces its lanes in registers (subgroupAdd/Max/Min), its first lane
// parks the partial in shared memory, and after one barrier every lane folds the few
// partials (8 on a 32-wide GPU at 256 lanes) in the same order, so all lanes agree to the
// bit. Subgroups are numbered by an atomic counter at init rather than by
// local_invocation_index / subgroup_size, a layout WGSL does not promise.
var<workgroup> red_f: array<f32, 256>;
var<workgroup> red_u: array<u32, 256>;
var<workgroup> red_count: atomic<u32>;
var<workgroup> red_total: u32;
var<private> red_lane: u32;
var<private> red_slot: u32;
var<private> red_groups: u32;

fn reduce_init(lid: u32) {
    if (lid == 0u) {
        atomicStore(&red_count, 0u);
    }
    workgroupBarrier();
    red_lane = subgroupExclusiveAdd(1u);
    var slot = 0u;
    if (red_lane == 0u) {
        slot = atomicAdd(&red_count, 1u);
    }
    // Only the first lane holds a non-zero slot candidate; max hands it to the others.
    red_slot = subgroupMax(slot);
    workgroupBarrier();
    if (lid == 0u) {
        red_total = atomicLoad(&red_count);
    }
    red_groups = workgroupUniformLoad(&red_total);
}

fn wg_sum(v: f32) -> f32 {
    let s = subgroupAdd(v);
    if (red_lane == 0u) {
        red_f[red_slot] = s;
    }
    workgroupBarrier();
    var t = 0.0;
    for (var i = 0u; i < red_groups; i++) {
        t += red_f[i];
    }
    workgroupBarrier();
    return t;
}

fn wg_max(v: f32) -> f32 {
    let s = subgroupMax(v);
    if (red_lane == 0u) {
        red_f[red_slot] = s;
    }
    workgroupBarrier();
    var t = red_f[0];
    for (var i = 1u; i < red_groups; i++) {
        t = max(t, red_f[i]);
    }
    workgroupBarrier();
    return t;
}

fn wg_max_u32(v: u32) -> u32 {
    let s = subgroupMax(v);
    if (red_lane == 0u) {
        red_u[red_slot] = s;
    }
    workgroupBarrier();
    var t = 0u;
    for (var i = 0u; i < red_groups; i++) {
        t = max(t, red_u[i]);
    }
    workgroupBarrier();
    return t;
}

fn wg_min_u32(v: u32) -> u32 {
    let s = subgroupMin(v);
    if (red_lane == 0u) {
        red_u[red_slot] = s;
    }
    workgroupBarrier();
    var t = 0xffffffffu;
    for (var i = 0u; i < red_groups; i++) {
        t = min(t, red_u[i]);
    }
    workgroupBarrier();
    return t;
}
