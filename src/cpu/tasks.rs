//! Running a kernel's independent tasks on the calling thread and rayon's pool together,
//! with pool helpers that stay awake between calls.
//!
//! A rayon parallel iterator started from a thread outside the pool — the application's
//! thread, where every op call starts — cannot return before a pool worker has woken
//! and run its part, and rayon's workers go to sleep about 10 µs after running out of
//! work. On this backend's 2-core VM waking one took 20–95 µs (an empty `par_iter` from
//! the main thread: 39 µs back to back, 95 µs after 1 ms idle), as long as a whole
//! 16×384×384 linear on one core: the second core joined small products late or not at
//! all (it ran 5 % of a 16×384×384 linear's tasks and a third of a 72×1536×384 one's),
//! and the caller then slept on a lock until the pool woke it in turn. OpenMP runtimes
//! (PyTorch's) avoid this by spinning for a while after each parallel region.
//!
//! [`for_each`] publishes the call's tasks in one slot, claims them itself from a shared
//! counter, and has `threads − 1` helpers claim from the same counter: helpers that are
//! still lingering from an earlier call (they spin for [`LINGER`] after their last task,
//! running any other rayon jobs meanwhile with `rayon::yield_now`) pick the new call up
//! at once; missing ones are spawned into the pool. A helper that starts after the last
//! task was claimed runs nothing. The caller returns once every task has finished — it
//! spins only for tasks a helper is running, never for a helper to wake — and
//! `threads` threads work in all, never one more than the pool has.

use rayon::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a helper stays awake for the next call after its last task.
const LINGER: Duration = Duration::from_micros(300);

/// One [`for_each`] call as its helpers see it (shared ownership, so a helper that
/// reaches it after the call returned still finds it alive).
struct Call {
    /// The next task to claim (at least `tasks` once all are claimed).
    next: AtomicUsize,
    /// Tasks finished, by any thread.
    done: AtomicUsize,
    tasks: usize,
    /// Whether a task run by a helper panicked.
    panicked: AtomicBool,
    /// The caller's closure; called only for a claimed task (see [`for_each`]).
    run: Run,
}

/// The caller's task closure, lent to helpers as a raw pointer.
#[derive(Clone, Copy)]
struct Run(*const (dyn Fn(usize) + Sync));
// SAFETY: the pointee is `Sync`; it is called only for a claimed task, and every task is
// claimed and finished before `for_each` returns.
unsafe impl Send for Run {}
unsafe impl Sync for Run {}

impl Call {
    /// Claims and runs tasks until none is left; `on_pool` catches panics (a helper's
    /// panic must not unwind into rayon) and records them for the caller.
    fn work(&self, on_pool: bool) {
        loop {
            let t = self.next.fetch_add(1, Ordering::Relaxed);
            if t >= self.tasks {
                return;
            }
            // SAFETY: task `t` was claimed, so the caller is still inside `for_each`
            // (it waits for every claimed task) and the closure is alive.
            let run = unsafe { &*self.run.0 };
            if on_pool {
                if catch_unwind(AssertUnwindSafe(|| run(t))).is_err() {
                    self.panicked.store(true, Ordering::Relaxed);
                }
            } else {
                run(t);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// The call in progress (if any) and a count that changes with every call published.
struct Slot {
    call: Mutex<Option<Arc<Call>>>,
    serial: AtomicUsize,
    /// Helpers awake (running tasks or lingering).
    awake: AtomicUsize,
}

static SLOT: Slot = Slot {
    call: Mutex::new(None),
    serial: AtomicUsize::new(0),
    awake: AtomicUsize::new(0),
};

/// One helper on a pool thread: works on the published call, then lingers for the next.
fn helper(max_awake: usize) {
    if SLOT.awake.fetch_add(1, Ordering::SeqCst) >= max_awake {
        SLOT.awake.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let mut seen = usize::MAX;
    loop {
        let serial = SLOT.serial.load(Ordering::Acquire);
        if serial != seen {
            seen = serial;
            let call = SLOT.call.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(call) = call {
                call.work(true);
            }
        }
        // linger: spin for a new call, running other rayon jobs that come meanwhile
        let start = Instant::now();
        let mut spins = 0u32;
        while SLOT.serial.load(Ordering::Acquire) == seen && start.elapsed() < LINGER {
            spins += 1;
            if spins.is_multiple_of(64) {
                rayon::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if SLOT.serial.load(Ordering::SeqCst) == seen {
            SLOT.awake.fetch_sub(1, Ordering::SeqCst);
            // a caller that published after the check above may have counted this
            // helper as awake and spawned none: serve its call before leaving
            if SLOT.serial.load(Ordering::SeqCst) == seen {
                return;
            }
            if SLOT.awake.fetch_add(1, Ordering::SeqCst) >= max_awake {
                SLOT.awake.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Calls `run(t)` once for every `t < tasks`, on the calling thread and on up to
/// `rayon::current_num_threads() − 1` pool threads (from inside the pool: a plain
/// parallel iterator). Returns when every call has returned; a panic in any call is
/// raised here.
pub(crate) fn for_each(tasks: usize, run: impl Fn(usize) + Send + Sync) {
    let threads = rayon::current_num_threads().max(1);
    if tasks <= 1 || threads == 1 {
        (0..tasks).for_each(run);
        return;
    }
    if rayon::current_thread_index().is_some() {
        (0..tasks).into_par_iter().for_each(run);
        return;
    }
    let local: &(dyn Fn(usize) + Sync) = &run;
    // SAFETY (lifetime erased): the pointee is called only for a claimed task, and every
    // claimed task finishes before this function returns (the waits below).
    let lent = Run(unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(
            local,
        )
    });
    let call = Arc::new(Call {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        tasks,
        panicked: AtomicBool::new(false),
        run: lent,
    });
    let helpers = threads - 1;
    {
        // calls from several application threads at once: the slot serves the last
        // published; an earlier caller's tasks are all run by itself if no helper took
        // them, so every call completes
        let mut slot = SLOT.call.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Arc::clone(&call));
        SLOT.serial.fetch_add(1, Ordering::SeqCst);
    }
    for _ in SLOT.awake.load(Ordering::SeqCst).min(helpers)..helpers.min(tasks - 1) {
        rayon::spawn(move || helper(helpers));
    }
    let mine = catch_unwind(AssertUnwindSafe(|| call.work(false)));
    // close the call: a helper claiming from now on finds nothing left
    let claimed = call.next.swap(usize::MAX / 2, Ordering::AcqRel).min(tasks);
    let owed = claimed - usize::from(mine.is_err());
    let mut spins = 0u32;
    while call.done.load(Ordering::Acquire) < owed {
        spins += 1;
        if spins < 1 << 12 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    {
        let mut slot = SLOT.call.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &call)) {
            *slot = None;
        }
    }
    if let Err(p) = mine {
        std::panic::resume_unwind(p);
    }
    assert!(
        !call.panicked.load(Ordering::Relaxed),
        "a CPU kernel task panicked on a pool thread"
    );
}

#[cfg(test)]
mod tests {
    use super::for_each;
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every task runs exactly once, for task counts around the thread count, in calls
    /// back to back (helpers lingering from the last call) and after a pause (helpers
    /// gone back to the pool).
    #[test]
    fn every_task_runs_once() {
        for round in 0..200 {
            let tasks = round % 37;
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            for_each(tasks, |t| {
                hits[t].fetch_add(1, Ordering::Relaxed);
            });
            for (t, h) in hits.iter().enumerate() {
                assert_eq!(h.load(Ordering::Relaxed), 1, "task {t} of {tasks}");
            }
            if round % 50 == 49 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }

    /// Several application threads calling at once, and calls from inside the pool.
    #[test]
    fn concurrent_callers_and_pool_callers() {
        std::thread::scope(|s| {
            for caller in 0..3 {
                s.spawn(move || {
                    for round in 0..100 {
                        let tasks = 1 + (round * 7 + caller) % 23;
                        let sum = AtomicUsize::new(0);
                        for_each(tasks, |t| {
                            sum.fetch_add(t + 1, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), tasks * (tasks + 1) / 2);
                    }
                });
            }
        });
        let sums: Vec<usize> = (0..8usize)
            .into_par_iter()
            .map(|i| {
                let sum = AtomicUsize::new(0);
                for_each(10 + i, |t| {
                    sum.fetch_add(t, Ordering::Relaxed);
                });
                sum.into_inner()
            })
            .collect();
        for (i, s) in sums.iter().enumerate() {
            assert_eq!(*s, (10 + i) * (9 + i) / 2);
        }
    }

    /// A panicking task panics the caller (whichever thread ran it), after the other
    /// tasks in flight ended; the next call works.
    #[test]
    fn a_panicking_task_reaches_the_caller() {
        for bad in [0, 5, 15] {
            let r = std::panic::catch_unwind(|| {
                for_each(16, |t| {
                    if t == bad {
                        panic!("task {t}");
                    }
                    std::thread::sleep(std::time::Duration::from_micros(50));
                })
            });
            assert!(r.is_err(), "task {bad} panicked but the call returned");
        }
        let n = AtomicUsize::new(0);
        for_each(16, |_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.into_inner(), 16);
    }
}
