//! The one place that decides whether work runs on rayon's pool, so kernels carry no
//! `cfg` of their own. Without the `parallel` feature (the scalar and simd wasm builds)
//! everything runs on the calling thread.

/// Below this many elements a kernel stays on the calling thread: waking the pool costs
/// more than it saves on data that fits in L2 (measured with `bench/`, see README).
pub const PAR_MIN_ELEMS: usize = 1 << 16;

/// Whether a kernel over `elems` elements should use the pool.
#[inline]
pub fn worth_it(elems: usize) -> bool {
    #[cfg(feature = "parallel")]
    {
        elems >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1
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
