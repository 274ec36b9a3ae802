// Online softmax over a stream of scores: a running max m, a running sum l of
// exp(s - m) and an output accumulated unnormalised. When a larger max m' arrives,
// everything accumulated so far is rescaled by exp(m - m'), so one pass over the keys
// gives the exact softmax. Hidden scores are OS_EMPTY (or -inf) and weigh 0; a row that
// saw no visible score keeps m = OS_EMPTY and l = 0 and finishes as 0 (never NaN).
const OS_EMPTY: f32 = -3.0e38;

// exp(m_old - m_new): the factor for what was accumulated under m_old (0 when nothing was).
fn os_rescale(m_old: f32, m_new: f32) -> f32 {
    if (m_old <= OS_EMPTY) {
        return 0.0;
    }
    return exp(m_old - m_new);
}

// exp(s - m): the weight of score s under the running max m (0 for a hidden score).
fn os_weight(s: f32, m: f32) -> f32 {
    if (s <= OS_EMPTY) {
        return 0.0;
    }
    return exp(s - m);
}

// acc / l, or 0 for a row that saw no visible key.
fn os_finish(acc: f32, l: f32) -> f32 {
    if (l > 0.0) {
        return acc / l;
    }
    return 0.0;
}
