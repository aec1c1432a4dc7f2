//! The one place that decides whether work runs on rayon's pool, so kernels carry no
//! `cfg` of their own. Without the `parallel` feature (the scalar and simd wasm builds)
//! everything runs on the calling thread.
//!
//! With it, a parallel call is a list of tasks that the **calling thread works through
//! itself**, while `threads() - 1` helper jobs on rayon's pool take tasks from the same
//! counter as soon as they start ([`run_tasks`]). The caller never waits for a helper to
//! wake up: a helper that starts after the tasks are gone does nothing, and the caller only
//! waits for helpers that are in the middle of a task. Why not plain rayon (`par_iter`):
//! a thread outside the pool (the JavaScript thread that calls into wasm) only injects the
//! work and sleeps until the pool has done all of it, so every call paid the pool's
//! wake-up. On this VM a pool idle for a millisecond or more took so long to wake that a
//! LayerNorm of (4096, 768) took as long on 2 threads as on one (1.09 against 1.01 ms,
//! interleaved with other calls; 0.6 ms back to back). Results are combined in task
//! order, so they do not depend on which thread ran what.

/// Default for [`min_parallel_elems`]: below 2^20 elements (4 MiB of f32) a kernel stays
/// on the calling thread. Measured with `bench/` on 2 and 16 cores: below it, waking the
/// pool and splitting the work cost more than another core saves (the kernels run at
/// memory speed; a 1-4 MiB tensor takes 0.1-0.5 ms on one core).
pub const DEFAULT_MIN_PARALLEL_ELEMS: usize = 1 << 20;

static MIN_PARALLEL_ELEMS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(DEFAULT_MIN_PARALLEL_ELEMS);

/// Tensors with fewer elements run single-threaded.
pub fn min_parallel_elems() -> usize {
    MIN_PARALLEL_ELEMS.load(core::sync::atomic::Ordering::Relaxed)
}

/// Sets [`min_parallel_elems`]: lower it on machines with many cores and fast wake-ups,
/// raise it where threads do not pay; tests lower it to reach the parallel code on small
/// tensors. Results do not depend on it: reductions cut their tasks by the shape alone
/// ([`units_per_reduction_task`], [`crate::moments::segment_len`]).
pub fn set_min_parallel_elems(n: usize) {
    MIN_PARALLEL_ELEMS.store(n, core::sync::atomic::Ordering::Relaxed);
}

/// Units (planes or rows of `unit_len` elements) per parallel task: about four tasks per
/// thread for balance, never fewer than `MIN_TASK_ELEMS` elements. Without `par`, one
/// task holds everything.
pub fn units_per_task(units: usize, unit_len: usize, par: bool) -> usize {
    const MIN_TASK_ELEMS: usize = 8192;
    let min_units = (MIN_TASK_ELEMS / unit_len.max(1)).max(1);
    if !par {
        return units.max(1);
    }
    units.div_ceil(threads() * 4).max(min_units)
}

/// Units (rows of `unit_len` elements) per task of a reduction across units, such as the
/// column sums of LayerNorm's backward: tasks of at least `REDUCTION_TASK_ELEMS` elements,
/// cut the same way with or without the pool and whatever its size, so the partial
/// results, combined in task order, are the same bits on any number of threads. 512 KiB
/// tasks: with 256 KiB, GroupNorm(32, 256)'s backward on (16, 256, 28, 28) ran 1.05x the
/// time of one task per thread on one thread (each task restarts its pipelined column
/// sums), with 512 KiB 1.02x; LayerNorm (4096, 768) 0.97x either way.
pub fn units_per_reduction_task(unit_len: usize) -> usize {
    const REDUCTION_TASK_ELEMS: usize = 1 << 17;
    REDUCTION_TASK_ELEMS.div_ceil(unit_len.max(1))
}

/// Whether a kernel over `elems` elements should use the pool.
#[inline]
pub fn worth_it(elems: usize) -> bool {
    #[cfg(feature = "parallel")]
    {
        elems >= min_parallel_elems() && rayon::current_num_threads() > 1
    }
    #[cfg(not(feature = "parallel"))]
    {
        let _ = elems;
        false
    }
}

/// Number of threads kernels may use (1 without the `parallel` feature).
pub fn threads() -> usize {
    #[cfg(feature = "parallel")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "parallel"))]
    {
        1
    }
}

/// Runs `f(0)`, ..., `f(tasks - 1)`, each once: on the calling thread alone, or with `par`
/// shared with helpers on rayon's pool (see the module comment). Tasks may run in any order
/// and on any of those threads; `f` must not care.
pub fn run_tasks<F: Fn(usize) + Sync>(tasks: usize, par: bool, f: F) {
    #[cfg(feature = "parallel")]
    if par && tasks > 1 {
        shared::run(tasks, threads().saturating_sub(1).min(tasks - 1), &f);
        return;
    }
    let _ = par;
    (0..tasks).for_each(f)
}

#[cfg(feature = "parallel")]
mod shared {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// High bit of [`Job::state`]: the caller has finished, helpers must not start.
    const CLOSED: usize = 1 << (usize::BITS - 1);

    type TaskFn = dyn Fn(usize) + Sync;

    /// One parallel call, shared by the caller and its helpers (an `Arc`: a helper may
    /// start long after the call returned, and must still find the job to see it closed).
    struct Job {
        /// The next task to take.
        next: AtomicUsize,
        tasks: usize,
        /// [`CLOSED`] once the caller is done; below it, the number of helpers working.
        state: AtomicUsize,
        /// Set when a task panicked on a helper: the caller panics too once all are out
        /// (natively; the wasm builds abort on a panic anyway).
        panicked: std::sync::atomic::AtomicBool,
        /// The caller's `f` with its lifetime erased. Called only by a helper that checked
        /// in (incremented `state`) before `CLOSED` was set, and the caller does not return
        /// (so `f` lives) until every helper that checked in has checked out.
        f: *const TaskFn,
    }

    // SAFETY: `f` is `Sync` and only called under the protocol above; the rest are atomics.
    unsafe impl Send for Job {}
    unsafe impl Sync for Job {}

    impl Job {
        fn work(&self) {
            // SAFETY: the caller or a checked-in helper (see `f`).
            let f = unsafe { &*self.f };
            loop {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                if i >= self.tasks {
                    break;
                }
                f(i);
            }
        }

        /// A helper's whole job: check in unless closed, work, check out.
        fn help(&self) {
            let open = |s: usize| (s & CLOSED == 0).then_some(s + 1);
            if self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, open).is_ok() {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work())).is_err() {
                    self.panicked.store(true, Ordering::Relaxed);
                }
                // Release: the tasks' writes happen before the caller's Acquire below.
                self.state.fetch_sub(1, Ordering::Release);
            }
        }
    }

    /// Closes the job and waits for the helpers inside, also when the caller's own task
    /// panics (unwinding must not free what a helper is still using).
    struct CloseOnDrop<'a>(&'a Job);

    impl Drop for CloseOnDrop<'_> {
        fn drop(&mut self) {
            self.0.state.fetch_or(CLOSED, Ordering::AcqRel);
            // Each helper still inside is finishing one task: a spin, never a sleep (the
            // caller may be a thread that must not block, and the wait is short).
            while self.0.state.load(Ordering::Acquire) != CLOSED {
                std::hint::spin_loop();
            }
        }
    }

    pub fn run(tasks: usize, helpers: usize, f: &(dyn Fn(usize) + Sync + '_)) {
        // SAFETY: only the lifetime changes; see `Job::f` for why the pointer stays valid
        // whenever it is used.
        let f: *const TaskFn = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const TaskFn>(f) };
        let job = Arc::new(Job { next: AtomicUsize::new(0), tasks, state: AtomicUsize::new(0), panicked: Default::default(), f });
        for _ in 0..helpers {
            let j = Arc::clone(&job);
            rayon::spawn(move || j.help());
        }
        {
            let _close = CloseOnDrop(&job);
            job.work();
        }
        assert!(!job.panicked.load(Ordering::Relaxed), "a parallel task panicked on a pool thread");
    }
}

/// A mutable slice handed out in chunks to parallel tasks: chunk `i` is what
/// `chunks_mut(chunk).nth(i)` would give, taken through a raw pointer so each task can
/// take its own.
struct ChunkPtr<T> {
    ptr: *mut T,
    len: usize,
    chunk: usize,
}

// SAFETY: tasks take disjoint chunks (each index once, see `get`) of a `T: Send` slice.
unsafe impl<T: Send> Send for ChunkPtr<T> {}
unsafe impl<T: Send> Sync for ChunkPtr<T> {}

impl<T> ChunkPtr<T> {
    fn new(s: &mut [T], chunk: usize) -> Self {
        assert!(chunk > 0, "chunk size must be > 0");
        ChunkPtr { ptr: s.as_mut_ptr(), len: s.len(), chunk }
    }

    /// Number of chunks (`chunks_mut`'s count).
    fn count(&self) -> usize {
        self.len.div_ceil(self.chunk)
    }

    /// Chunk `i`.
    /// # Safety
    /// `i < count()`, at most one live reference per `i`, and the slice outlives it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, i: usize) -> &mut [T] {
        let start = i * self.chunk;
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), self.chunk.min(self.len - start)) }
    }
}

/// `f(task_index, chunk)` over `out.chunks_mut(chunk)`, in parallel when `par`.
pub fn for_each_chunk_mut<F>(out: &mut [f32], chunk: usize, par: bool, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    let c = ChunkPtr::new(out, chunk);
    // SAFETY: task i takes chunk i only.
    run_tasks(c.count(), par, |i| f(i, unsafe { c.get(i) }));
}

/// [`for_each_chunk_mut`] over two outputs cut the same way: `f(task, chunk of a, chunk
/// of b)` (`None` for b when absent).
pub fn for_each_chunk_mut2<F>(a: &mut [f32], b: Option<&mut [f32]>, chunk: usize, par: bool, f: F)
where
    F: Fn(usize, &mut [f32], Option<&mut [f32]>) + Sync + Send,
{
    let Some(b) = b else {
        return for_each_chunk_mut(a, chunk, par, |t, c| f(t, c, None));
    };
    let (ca, cb) = (ChunkPtr::new(a, chunk), ChunkPtr::new(b, chunk));
    // SAFETY: task i takes chunk i of each only.
    run_tasks(ca.count().min(cb.count()), par, |i| f(i, unsafe { ca.get(i) }, Some(unsafe { cb.get(i) })));
}

/// `reduce(map(0), map(1), ...)` over `0..tasks`, in parallel when `par`; the results are
/// combined in task order either way.
pub fn map_reduce<T, M, R>(tasks: usize, par: bool, map: M, reduce: R) -> Option<T>
where
    T: Send,
    M: Fn(usize) -> T + Sync + Send,
    R: Fn(T, T) -> T + Sync + Send,
{
    map_collect(tasks, par, map).into_iter().reduce(reduce)
}

/// `map(0), map(1), ...` collected in order, in parallel when `par` (through [`run_tasks`]).
pub fn map_collect<T, M>(tasks: usize, par: bool, map: M) -> Vec<T>
where
    T: Send,
    M: Fn(usize) -> T + Sync + Send,
{
    let mut slots: Vec<Option<T>> = (0..tasks).map(|_| None).collect();
    let out = ChunkPtr::new(&mut slots, 1);
    // SAFETY: each task writes its own slot.
    run_tasks(tasks, par, |i| unsafe { out.get(i)[0] = Some(map(i)) });
    slots.into_iter().map(|v| v.expect("every task ran")).collect()
}

/// `f(task, chunk of a, chunk of b, chunk of c)` over three outputs cut in the same number
/// of chunks (`ca`, `cb`, `cc` elements each), in parallel when `par`.
#[allow(clippy::too_many_arguments)]
pub fn for_each_chunk_mut3<F>(a: &mut [f32], ca: usize, b: &mut [f32], cb: usize, c: &mut [f32], cc: usize, par: bool, f: F)
where
    F: Fn(usize, &mut [f32], &mut [f32], &mut [f32]) + Sync + Send,
{
    let (pa, pb, pc) = (ChunkPtr::new(a, ca), ChunkPtr::new(b, cb), ChunkPtr::new(c, cc));
    let n = pa.count().min(pb.count()).min(pc.count());
    // SAFETY: task i takes chunk i of each only.
    run_tasks(n, par, |i| unsafe { f(i, pa.get(i), pb.get(i), pc.get(i)) });
}

/// `f(task, chunk of a, chunk of b)` over two outputs of any element types cut in the same
/// number of chunks (`ca`, `cb` elements each; e.g. an output and its bit mask's words),
/// in parallel when `par`.
pub fn for_each_chunk_pair<U, F>(a: &mut [f32], ca: usize, b: &mut [U], cb: usize, par: bool, f: F)
where
    U: Send,
    F: Fn(usize, &mut [f32], &mut [U]) + Sync + Send,
{
    let (pa, pb) = (ChunkPtr::new(a, ca), ChunkPtr::new(b, cb));
    // SAFETY: task i takes chunk i of each only.
    run_tasks(pa.count().min(pb.count()), par, |i| unsafe { f(i, pa.get(i), pb.get(i)) });
}

/// `reduce(map(0, chunk 0), map(1, chunk 1), ...)` over `out.chunks_mut(chunk)`: tasks that
/// write their own part of an output and return a partial result (e.g. a backward pass
/// writing `dx` and returning parameter-gradient sums). In parallel when `par`; combined in
/// task order.
pub fn map_reduce_chunks_mut<T, M, R>(out: &mut [f32], chunk: usize, par: bool, map: M, reduce: R) -> Option<T>
where
    T: Send,
    M: Fn(usize, &mut [f32]) -> T + Sync + Send,
    R: Fn(T, T) -> T + Sync + Send,
{
    let c = ChunkPtr::new(out, chunk);
    // SAFETY: task i takes chunk i only.
    map_reduce(c.count(), par, |i| map(i, unsafe { c.get(i) }), reduce)
}
