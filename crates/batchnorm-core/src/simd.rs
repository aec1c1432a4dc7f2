//! A four-lane f32 vector with exactly the operations the kernels need (and a two-lane
//! f64 one for the f64 steps of four short rows at once).
//!
//! On `wasm32` with `+simd128` it is a `v128` and most methods are one `f32x4.*`
//! instruction; everywhere else (the scalar wasm build, native tests) it is a `[f32; 4]`
//! that the compiler lowers to scalar ops, or to the host's SIMD. The kernels are written
//! once against this type, so the scalar and SIMD builds cannot drift apart numerically:
//! both perform the same f32 operations in the same order.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use super::QuadMask;
    use core::arch::wasm32::*;

    /// Lane masks of four bits: entry `b` has all ones in lane `i` where bit `i` of `b` is set.
    #[repr(align(16))]
    struct LaneMasks([[u32; 4]; 16]);
    static LANE_MASKS: LaneMasks = LaneMasks({
        let mut t = [[0u32; 4]; 16];
        let mut b = 0;
        while b < 16 {
            let mut i = 0;
            while i < 4 {
                if b >> i & 1 != 0 {
                    t[b][i] = u32::MAX;
                }
                i += 1;
            }
            b += 1;
        }
        t
    });

    #[derive(Clone, Copy)]
    pub struct F32x4(v128);

    impl F32x4 {
        #[inline(always)]
        pub fn splat(v: f32) -> Self {
            Self(f32x4_splat(v))
        }
        #[inline(always)]
        pub fn zero() -> Self {
            Self(f32x4_splat(0.0))
        }
        #[inline(always)]
        pub fn load(s: &[f32; 4]) -> Self {
            // SAFETY: `s` is exactly 16 readable bytes; v128_load has no alignment requirement.
            Self(unsafe { v128_load(s.as_ptr() as *const v128) })
        }
        #[inline(always)]
        pub fn store(self, s: &mut [f32; 4]) {
            // SAFETY: `s` is exactly 16 writable bytes; v128_store has no alignment requirement.
            unsafe { v128_store(s.as_mut_ptr() as *mut v128, self.0) }
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            Self(f32x4_add(self.0, o.0))
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            Self(f32x4_sub(self.0, o.0))
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            Self(f32x4_mul(self.0, o.0))
        }
        /// ReLU: `max(v, 0)`; NaN stays NaN, -0 becomes +0 (as wasm's `f32x4.max`).
        /// Built as `pmax(v, 0) + 0`: `pmax` (`v < 0 ? 0 : v`) keeps NaN and -0, and adding
        /// +0 turns -0 into +0 and changes nothing else. V8 lowers `pmax` and the add to one
        /// x64 instruction each, but `f32x4.max` to about eight (its NaN and signed-zero
        /// rules), which made the fused ReLU cost ~9% of the forward pass.
        #[inline(always)]
        pub fn relu(self) -> Self {
            let z = f32x4_splat(0.0);
            Self(f32x4_add(f32x4_pmax(self.0, z), z))
        }
        /// `self` where `gate > 0`, else +0 (ReLU's backward, gated by its output).
        #[inline(always)]
        pub fn where_pos(self, gate: Self) -> Self {
            Self(v128_and(self.0, f32x4_gt(gate.0, f32x4_splat(0.0))))
        }
        /// Lanes `> 0` as four bits, lane `i` to bit `i` (NaN and -0 give 0).
        #[inline(always)]
        pub fn pos_bits(self) -> u32 {
            i32x4_bitmask(f32x4_gt(self.0, f32x4_splat(0.0))) as u32
        }
        /// [`pos_bits`](Self::pos_bits) of four quads as 16 bits, quad `j` lane `i` to bit
        /// `4 j + i`: a bitmask of each compare (one `movmskps` each in V8's code), the
        /// four merged with constant shifts. Narrowing the four masks to bytes for a single
        /// bitmask was meant to be cheaper, but LLVM turned the saturating narrows of the
        /// 0 / -1 lanes into min, max and a two-input shuffle, which V8 expands to about
        /// ten instructions; the forward writing the channels-last mask took 1.05-1.08x
        /// the time that way.
        #[inline(always)]
        pub fn pos_bits4(v: [Self; 4]) -> u32 {
            let z = f32x4_splat(0.0);
            let m = v.map(|v| i32x4_bitmask(f32x4_gt(v.0, z)) as u32);
            m[0] | m[1] << 4 | m[2] << 8 | m[3] << 12
        }
        /// `self` in the lanes whose bit is set in the low four bits of `bits`, else +0
        /// (ReLU's backward from a bit mask; the same bits as `where_pos` of the output).
        /// The lane mask is one load from a 256-byte table (in L1 after the first use):
        /// cheaper than splat, and, compare in loops that are close to compute-bound.
        #[inline(always)]
        pub fn keep_bits(self, bits: u32) -> Self {
            // SAFETY: the index is < 16 and each entry is 16 readable bytes.
            let m = unsafe { v128_load(LANE_MASKS.0.as_ptr().add((bits & 15) as usize) as *const v128) };
            Self(v128_and(self.0, m))
        }
        #[inline(always)]
        pub fn to_array(self) -> [f32; 4] {
            [
                f32x4_extract_lane::<0>(self.0),
                f32x4_extract_lane::<1>(self.0),
                f32x4_extract_lane::<2>(self.0),
                f32x4_extract_lane::<3>(self.0),
            ]
        }
    }

    impl F32x4 {
        #[inline(always)]
        pub fn from_array(a: [f32; 4]) -> Self {
            Self(f32x4(a[0], a[1], a[2], a[3]))
        }
        /// Four horizontal sums in one vector: lane `r` is `v[r].hsum()`, its lanes added
        /// in the same pairs, so the same bits (six shuffles and three adds for what four
        /// `hsum`s do in twelve lane extracts and twelve scalar adds).
        #[inline(always)]
        pub fn hsum4(v: [Self; 4]) -> Self {
            // [v0.0 + v0.1, v1.0 + v1.1, v0.2 + v0.3, v1.2 + v1.3], and the same of v2, v3.
            let pairs = |a: v128, b: v128| f32x4_add(i32x4_shuffle::<0, 4, 2, 6>(a, b), i32x4_shuffle::<1, 5, 3, 7>(a, b));
            let (a, b) = (pairs(v[0].0, v[1].0), pairs(v[2].0, v[3].0));
            Self(f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b)))
        }
    }

    /// Two f64 lanes: the per-row f64 steps of four short rows, two rows a vector.
    #[derive(Clone, Copy)]
    pub struct F64x2(v128);

    impl F64x2 {
        #[inline(always)]
        pub fn splat(v: f64) -> Self {
            Self(f64x2_splat(v))
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            Self(f64x2_add(self.0, o.0))
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            Self(f64x2_sub(self.0, o.0))
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            Self(f64x2_mul(self.0, o.0))
        }
        #[inline(always)]
        pub fn div(self, o: Self) -> Self {
            Self(f64x2_div(self.0, o.0))
        }
        #[inline(always)]
        pub fn sqrt(self) -> Self {
            Self(f64x2_sqrt(self.0))
        }
        /// `v` where `v > 0`, else +0 (NaN included): `moments::non_negative` a lane.
        #[inline(always)]
        pub fn non_negative(self) -> Self {
            Self(v128_and(self.0, f64x2_gt(self.0, f64x2_splat(0.0))))
        }
        /// Lanes 0-1 and 2-3 of `v`, widened (exact).
        #[inline(always)]
        pub fn widen(v: F32x4) -> [Self; 2] {
            [Self(f64x2_promote_low_f32x4(v.0)), Self(f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(v.0, v.0)))]
        }
        /// `a`'s lanes then `b`'s, each rounded to the nearest f32 (as `as f32`).
        #[inline(always)]
        pub fn narrow(a: Self, b: Self) -> F32x4 {
            F32x4(i32x4_shuffle::<0, 1, 4, 5>(f32x4_demote_f64x2_zero(a.0), f32x4_demote_f64x2_zero(b.0)))
        }
    }

    /// A 32-bit mask word splatted to every lane ([`QuadMask`]): one splat to build, for
    /// words of which a row reads only a few quads; [`OctetMask`] is cheaper a quad.
    /// Expanding the bits in the vector unit takes an and and a compare a quad, where
    /// [`F32x4::keep_bits`] takes a shift, an and, an address and a table load.
    #[derive(Clone, Copy)]
    pub struct MaskWord(v128);

    impl QuadMask for MaskWord {
        #[inline(always)]
        fn splat(word: u32) -> Self {
            Self(u32x4_splat(word))
        }
        #[inline(always)]
        fn next(self) -> Self {
            Self(u32x4_shr(self.0, 4))
        }
        #[inline(always)]
        fn keep(self, d: F32x4) -> F32x4 {
            let lanes = u32x4(1, 2, 4, 8);
            F32x4(v128_and(d.0, i32x4_eq(v128_and(self.0, lanes), lanes)))
        }
    }

    /// [`MaskWord`] for a word whose eight quads are all read: lane `i` holds the word
    /// shifted left by `3 - i`, so that every lane's bit of the current quad sits at bit
    /// 3, and a shift to the sign bit and an arithmetic shift back make the lane mask. A
    /// quad then takes two shifts where `MaskWord` takes an and and a compare that LLVM
    /// turns into a not-equal (a compare, an all-ones and a xor in V8's code); building
    /// the word takes three scalar shifts and three lane inserts where `MaskWord` takes a
    /// splat, which only eight quads repay (rows of 4-12 channels, a word each for one to
    /// three quads, ran the backward from the mask 1.05-1.19x slower this way).
    #[derive(Clone, Copy)]
    pub struct OctetMask(v128);

    impl QuadMask for OctetMask {
        #[inline(always)]
        fn splat(word: u32) -> Self {
            // Lane 0 needs bits 0, 4, .., 28 and lane 3 bits 3, .., 31: none is shifted out.
            Self(u32x4(word << 3, word << 2, word << 1, word))
        }
        #[inline(always)]
        fn next(self) -> Self {
            Self(u32x4_shr(self.0, 4))
        }
        #[inline(always)]
        fn keep(self, d: F32x4) -> F32x4 {
            F32x4(v128_and(d.0, i32x4_shr(i32x4_shl(self.0, 28), 31)))
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    use super::QuadMask;
    use core::ops::{Add, Mul, Sub};

    /// `N` lanes of `T` as an array: both vector types here, their lane-wise arithmetic
    /// written once.
    #[derive(Clone, Copy)]
    pub struct Lanes<T, const N: usize>([T; N]);

    pub type F32x4 = Lanes<f32, 4>;
    pub type F64x2 = Lanes<f64, 2>;

    // `add`, `sub`, `mul` are methods, not `std::ops` impls, as in the SIMD version:
    // the kernels read as chains of the wasm instructions they become.
    #[allow(clippy::should_implement_trait)]
    impl<T: Copy + Add<Output = T> + Sub<Output = T> + Mul<Output = T>, const N: usize> Lanes<T, N> {
        #[inline(always)]
        pub fn splat(v: T) -> Self {
            Self([v; N])
        }
        #[inline(always)]
        fn zip(self, o: Self, f: impl Fn(T, T) -> T) -> Self {
            Self(core::array::from_fn(|i| f(self.0[i], o.0[i])))
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            self.zip(o, |a, b| a + b)
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            self.zip(o, |a, b| a - b)
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            self.zip(o, |a, b| a * b)
        }
    }

    impl F32x4 {
        #[inline(always)]
        pub fn zero() -> Self {
            Self([0.0; 4])
        }
        #[inline(always)]
        pub fn load(s: &[f32; 4]) -> Self {
            Self(*s)
        }
        #[inline(always)]
        pub fn store(self, s: &mut [f32; 4]) {
            *s = self.0;
        }
        #[inline(always)]
        pub fn relu(self) -> Self {
            Self(self.0.map(super::relu))
        }
        #[inline(always)]
        pub fn where_pos(self, gate: Self) -> Self {
            self.zip(gate, super::where_pos)
        }
        #[inline(always)]
        pub fn pos_bits(self) -> u32 {
            (0..4).fold(0, |b, i| b | (((self.0[i] > 0.0) as u32) << i))
        }
        #[inline(always)]
        pub fn pos_bits4(v: [Self; 4]) -> u32 {
            v.iter().enumerate().fold(0, |b, (j, q)| b | (q.pos_bits() << (4 * j)))
        }
        #[inline(always)]
        pub fn keep_bits(self, bits: u32) -> Self {
            Self(core::array::from_fn(|i| if bits >> i & 1 != 0 { self.0[i] } else { 0.0 }))
        }
        #[inline(always)]
        pub fn to_array(self) -> [f32; 4] {
            self.0
        }
        #[inline(always)]
        pub fn from_array(a: [f32; 4]) -> Self {
            Self(a)
        }
        #[inline(always)]
        pub fn hsum4(v: [Self; 4]) -> Self {
            Self(v.map(|q| q.hsum()))
        }
    }

    impl F64x2 {
        #[inline(always)]
        pub fn div(self, o: Self) -> Self {
            self.zip(o, |a, b| a / b)
        }
        #[inline(always)]
        pub fn sqrt(self) -> Self {
            Self(self.0.map(f64::sqrt))
        }
        #[inline(always)]
        pub fn non_negative(self) -> Self {
            Self(self.0.map(|v| if v > 0.0 { v } else { 0.0 }))
        }
        #[inline(always)]
        pub fn widen(v: F32x4) -> [Self; 2] {
            let a = v.0;
            [Self([a[0] as f64, a[1] as f64]), Self([a[2] as f64, a[3] as f64])]
        }
        #[inline(always)]
        pub fn narrow(a: Self, b: Self) -> F32x4 {
            Lanes([a.0[0] as f32, a.0[1] as f32, b.0[0] as f32, b.0[1] as f32])
        }
    }

    /// See the wasm SIMD version: here the word itself, shifted down a quad at a time.
    #[derive(Clone, Copy)]
    pub struct MaskWord(u32);

    /// One form serves both here.
    pub type OctetMask = MaskWord;

    impl QuadMask for MaskWord {
        #[inline(always)]
        fn splat(word: u32) -> Self {
            Self(word)
        }
        #[inline(always)]
        fn next(self) -> Self {
            Self(self.0 >> 4)
        }
        #[inline(always)]
        fn keep(self, d: F32x4) -> F32x4 {
            d.keep_bits(self.0)
        }
    }
}

pub use imp::{F32x4, F64x2, MaskWord, OctetMask};

/// A 32-bit ReLU mask word read a quad (four bits) at a time: lane `i` of the current quad
/// is bit `i`, and [`next`](Self::next) moves to the next four bits. Two forms on wasm
/// SIMD: [`MaskWord`] (cheap to build) and [`OctetMask`] (cheaper a quad).
pub trait QuadMask: Copy {
    /// The word, at its first quad.
    fn splat(word: u32) -> Self;
    /// The next quad's four bits.
    fn next(self) -> Self;
    /// `d` in the lanes whose bit is set, else +0 (as [`F32x4::keep_bits`]).
    fn keep(self, d: F32x4) -> F32x4;
}

/// Scalar ReLU with the SIMD lanes' semantics: NaN stays NaN, -0 and negatives become +0.
#[inline(always)]
pub fn relu(v: f32) -> f32 {
    if v > 0.0 || v.is_nan() {
        v
    } else {
        0.0
    }
}

/// Scalar ReLU backward gated by the ReLU's output: `g` where `gate > 0`, else +0
/// (PyTorch's `threshold_backward(grad, output, 0)`).
#[inline(always)]
pub fn where_pos(g: f32, gate: f32) -> f32 {
    if gate > 0.0 {
        g
    } else {
        0.0
    }
}

impl F32x4 {
    /// Horizontal sum, lanes added pairwise.
    #[inline(always)]
    pub fn hsum(self) -> f32 {
        let a = self.to_array();
        (a[0] + a[1]) + (a[2] + a[3])
    }
}

/// Splits a slice into its 4-aligned body (as `&[f32; 4]` chunks) and a scalar tail.
#[inline(always)]
pub fn quads(s: &[f32]) -> (core::slice::ChunksExact<'_, f32>, &[f32]) {
    let c = s.chunks_exact(4);
    let tail = c.remainder();
    (c, tail)
}

/// `&[f32]` of length 4 to `&[f32; 4]`; the length check compiles away inside `chunks_exact(4)`.
#[inline(always)]
pub fn q(s: &[f32]) -> &[f32; 4] {
    s.try_into().expect("chunk of 4")
}

#[inline(always)]
pub fn q_mut(s: &mut [f32]) -> &mut [f32; 4] {
    s.try_into().expect("chunk of 4")
}

/// The first `nq` quads of `s` as arrays, a view exactly `nq` long. Loops over rows of
/// several inputs index such views by quad (`for k in 0..nq`) and carry no bounds checks;
/// with `c..c + 4` slices of a stepped index (`step_by(4)`) each access kept its check, and
/// V8 ran the channels-last passes that way at about half the planar ones' speed.
#[inline(always)]
pub fn quad_view(s: &[f32], nq: usize) -> &[[f32; 4]] {
    &s[..4 * nq].as_chunks::<4>().0[..nq]
}

/// The first `no` octets (32 values: eight quads, one mask word's worth) of `s`, a view
/// exactly `no` long (see [`quad_view`]).
#[inline(always)]
pub fn octet_view(s: &[f32], no: usize) -> &[[f32; 32]] {
    &s[..32 * no].as_chunks::<32>().0[..no]
}

/// `s` as its whole octets (its length is a multiple of 32 where this is used).
#[inline(always)]
pub fn octets_mut(s: &mut [f32]) -> &mut [[f32; 32]] {
    s.as_chunks_mut::<32>().0
}

/// An octet as its eight quads.
#[inline(always)]
pub fn quads8(o: &[f32; 32]) -> &[[f32; 4]; 8] {
    // SAFETY: [[f32; 4]; 8] has the size and alignment of [f32; 32].
    unsafe { &*(o as *const [f32; 32] as *const [[f32; 4]; 8]) }
}

/// [`quads8`], mutable.
#[inline(always)]
pub fn quads8_mut(o: &mut [f32; 32]) -> &mut [[f32; 4]; 8] {
    // SAFETY: as `quads8`.
    unsafe { &mut *(o as *mut [f32; 32] as *mut [[f32; 4]; 8]) }
}

/// The `tq` quads after a row's `no` octets (its tail).
#[inline(always)]
pub fn row_tail(r: &[f32], no: usize, tq: usize) -> &[[f32; 4]] {
    quad_view(&r[32 * no..], tq)
}

/// A row of `32 no + 4 tq` values as its octets and its tail's quads.
#[inline(always)]
pub fn row_split(r: &[f32], no: usize, tq: usize) -> RowParts<'_> {
    (octet_view(r, no), row_tail(r, no, tq))
}

/// [`row_split`], mutable.
#[inline(always)]
pub fn row_split_mut(r: &mut [f32], no: usize, tq: usize) -> RowPartsMut<'_> {
    let (o, t) = r[..32 * no + 4 * tq].split_at_mut(32 * no);
    (octets_mut(o), quad_view_mut(t).0)
}

/// A row as its octets and its tail (see [`row_split`]).
pub type RowParts<'a> = (&'a [[f32; 32]], &'a [[f32; 4]]);
/// [`RowParts`], mutable.
pub type RowPartsMut<'a> = (&'a mut [[f32; 32]], &'a mut [[f32; 4]]);

/// Two consecutive rows of `ch = 32 no + 4 tq` values, each as its octets and its tail.
#[inline(always)]
pub fn row_pair(g: &[f32], ch: usize, no: usize, tq: usize) -> [RowParts<'_>; 2] {
    [row_split(&g[..ch], no, tq), row_split(&g[ch..], no, tq)]
}

/// [`row_pair`], mutable.
#[inline(always)]
pub fn row_pair_mut(g: &mut [f32], ch: usize, no: usize, tq: usize) -> [RowPartsMut<'_>; 2] {
    let (r0, r1) = g.split_at_mut(ch);
    [row_split_mut(r0, no, tq), row_split_mut(r1, no, tq)]
}

/// Four views zipped as `((a, b), (c, d))`: the per-channel parameter streams of the
/// channels-last row loops (quads, octets, or a row's tail).
#[inline(always)]
pub fn zip4<'a, T>(a: &'a [T], b: &'a [T], c: &'a [T], d: &'a [T]) -> impl Iterator<Item = ((&'a T, &'a T), (&'a T, &'a T))> + Clone {
    a.iter().zip(b).zip(c.iter().zip(d))
}

/// Quad `j` of four parameter octets.
#[inline(always)]
pub fn octet_quad(((a, b), (c, d)): OctetParams<'_>, j: usize) -> ParamQuads<'_> {
    ((&quads8(a)[j], &quads8(b)[j]), (&quads8(c)[j], &quads8(d)[j]))
}

/// Four per-channel parameter quads loaded, in their order.
#[inline(always)]
pub fn load4(((a, b), (c, d)): ParamQuads<'_>) -> [F32x4; 4] {
    [a, b, c, d].map(F32x4::load)
}

/// Four per-channel parameter octets, as zipped by the masked channels-last row loops.
pub type OctetParams<'a> = ((&'a [f32; 32], &'a [f32; 32]), (&'a [f32; 32], &'a [f32; 32]));

/// Four per-channel parameter vectors at one channel quad, as zipped in pairs by the
/// channels-last row loops (`((a, b), (c, d))`).
pub type ParamQuads<'a> = ((&'a [f32; 4], &'a [f32; 4]), (&'a [f32; 4], &'a [f32; 4]));

/// `s` as its quads (exactly `s.len() / 4` of them) and the `s.len() % 4` elements after.
#[inline(always)]
pub fn quad_view_mut(s: &mut [f32]) -> (&mut [[f32; 4]], &mut [f32]) {
    let nq = s.len() / 4;
    let (body, tail) = s.as_chunks_mut::<4>();
    (&mut body[..nq], tail)
}

/// A 16-element slice as its four quads, to store four results of an unrolled step
/// (V8 does not unroll wasm loops: the hot loops do four vectors a step by hand).
#[inline(always)]
pub fn quads4_mut(s: &mut [f32]) -> [&mut [f32; 4]; 4] {
    let (s01, s23) = s.split_at_mut(8);
    let (s0, s1) = s01.split_at_mut(4);
    let (s2, s3) = s23.split_at_mut(4);
    [q_mut(s0), q_mut(s1), q_mut(s2), q_mut(s3)]
}
