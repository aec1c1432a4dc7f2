//! The one place that decides whether work runs on rayon's pool, so kernels carry no
//! `cfg` of their own. Without the `parallel` feature (the scalar and simd wasm builds)
//! everything runs on the calling thread.

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
/// tensors. Results do not depend on it beyond f32 rounding of partial sums.
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

/// `f(task_index, chunk)` over `out.chunks_mut(chunk)`, in parallel when `par`.
pub fn for_each_chunk_mut<F>(out: &mut [f32], chunk: usize, par: bool, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    #[cfg(feature = "parallel")]
    if par {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
        return;
    }
    let _ = par;
    out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
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
    #[cfg(feature = "parallel")]
    if par {
        use rayon::prelude::*;
        a.par_chunks_mut(chunk).zip(b.par_chunks_mut(chunk)).enumerate().for_each(|(i, (x, y))| f(i, x, Some(y)));
        return;
    }
    let _ = par;
    a.chunks_mut(chunk).zip(b.chunks_mut(chunk)).enumerate().for_each(|(i, (x, y))| f(i, x, Some(y)));
}

/// `reduce(map(0), map(1), ...)` over `0..tasks`, in parallel when `par`. `reduce` must be
/// associative; results are combined in index order when sequential and in a
/// rayon-determined tree when parallel.
pub fn map_reduce<T, M, R>(tasks: usize, par: bool, map: M, reduce: R) -> Option<T>
where
    T: Send,
    M: Fn(usize) -> T + Sync + Send,
    R: Fn(T, T) -> T + Sync + Send,
{
    #[cfg(feature = "parallel")]
    if par {
        use rayon::prelude::*;
        return (0..tasks).into_par_iter().map(map).reduce_with(reduce);
    }
    let _ = par;
    (0..tasks).map(map).reduce(reduce)
}

/// `map(0), map(1), ...` collected in order, in parallel when `par`.
pub fn map_collect<T, M>(tasks: usize, par: bool, map: M) -> Vec<T>
where
    T: Send,
    M: Fn(usize) -> T + Sync + Send,
{
    #[cfg(feature = "parallel")]
    if par {
        use rayon::prelude::*;
        return (0..tasks).into_par_iter().map(map).collect();
    }
    let _ = par;
    (0..tasks).map(map).collect()
}

/// `f(task, chunk of a, chunk of b, chunk of c)` over three outputs cut in the same number
/// of chunks (`ca`, `cb`, `cc` elements each), in parallel when `par`.
#[allow(clippy::too_many_arguments)]
pub fn for_each_chunk_mut3<F>(a: &mut [f32], ca: usize, b: &mut [f32], cb: usize, c: &mut [f32], cc: usize, par: bool, f: F)
where
    F: Fn(usize, &mut [f32], &mut [f32], &mut [f32]) + Sync + Send,
{
    #[cfg(feature = "parallel")]
    if par {
        use rayon::prelude::*;
        a.par_chunks_mut(ca)
            .zip(b.par_chunks_mut(cb))
            .zip(c.par_chunks_mut(cc))
            .enumerate()
            .for_each(|(i, ((x, y), z))| f(i, x, y, z));
        return;
    }
    let _ = par;
    a.chunks_mut(ca).zip(b.chunks_mut(cb)).zip(c.chunks_mut(cc)).enumerate().for_each(|(i, ((x, y), z))| f(i, x, y, z));
}

/// `f(task, chunk of a, chunk of b)` over two outputs of any element types cut in the same
/// number of chunks (`ca`, `cb` elements each; e.g. an output and its bit mask's words),
/// in parallel when `par`.
pub fn for_each_chunk_pair<U, F>(a: &mut [f32], ca: usize, b: &mut [U], cb: usize, par: bool, f: F)
where
    U: Send,
    F: Fn(usize, &mut [f32], &mut [U]) + Sync + Send,
{
    #[cfg(feature = "parallel")]
    if par {
        use rayon::prelude::*;
        a.par_chunks_mut(ca).zip(b.par_chunks_mut(cb)).enumerate().for_each(|(i, (x, y))| f(i, x, y));
        return;
    }
    let _ = par;
    a.chunks_mut(ca).zip(b.chunks_mut(cb)).enumerate().for_each(|(i, (x, y))| f(i, x, y));
}

/// `reduce(map(0, chunk 0), map(1, chunk 1), ...)` over `out.chunks_mut(chunk)`: tasks that
/// write their own part of an output and return a partial result (e.g. a backward pass
/// writing `dx` and returning parameter-gradient sums). In parallel when `par`.
pub fn map_reduce_chunks_mut<T, M, R>(out: &mut [f32], chunk: usize, par: bool, map: M, reduce: R) -> Option<T>
where
    T: Send,
    M: Fn(usize, &mut [f32]) -> T + Sync + Send,
    R: Fn(T, T) -> T + Sync + Send,
{
    #[cfg(feature = "parallel")]
    if par {
        use rayon::prelude::*;
        return out.par_chunks_mut(chunk).enumerate().map(|(i, c)| map(i, c)).reduce_with(reduce);
    }
    let _ = par;
    out.chunks_mut(chunk).enumerate().map(|(i, c)| map(i, c)).reduce(reduce)
}
