// A small training stack for the MNIST example (not part of batchnorm-wasm's API):
// seeded PRNG, dense layers (plain JS, Float32Array), ReLU, softmax cross-entropy, SGD with
// momentum. Batch norm is batchnorm-wasm's: BatchNorm1d, or SyncBatchNorm when the model is
// one replica of data-parallel training (a process group of workers, each with a slice of
// every batch; gradients reduce-scattered, each replica updating its segment of the
// parameters, then the segments all-gathered: see Mlp.step).
import { BatchNorm1d, SyncBatchNorm } from "batchnorm-wasm";

/** mulberry32: a tiny deterministic PRNG. */
export class Rng {
  constructor(seed) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next() {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal (Box-Muller). */
  normal() {
    const u = 1 - this.next(), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** Fisher-Yates in place. */
  shuffle(a) {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const t = a[i]; a[i] = a[j]; a[j] = t;
    }
    return a;
  }
}

/**
 * `prev` if it holds `length` floats, else a new Float32Array: layers keep their outputs
 * and input gradients from one step to the next instead of allocating them, so training
 * allocates (almost) nothing per step and the garbage collector rarely stops a replica
 * (which in data-parallel training stops every replica, at the next collective).
 * A layer's output stays valid until its next forward (its input gradient: next backward).
 */
export function reuse(prev, length) {
  return prev !== undefined && prev.length === length ? prev : new Float32Array(length);
}

/** dst[d..d+len) += a * src[s..s+len), unrolled by 4 (V8 does not vectorise). */
function axpy(dst, d, a, src, s, len) {
  let j = 0;
  for (; j + 4 <= len; j += 4) {
    dst[d + j] += a * src[s + j];
    dst[d + j + 1] += a * src[s + j + 1];
    dst[d + j + 2] += a * src[s + j + 2];
    dst[d + j + 3] += a * src[s + j + 3];
  }
  // The tail is a function of its own: inline, Chromium ran the page at 0.8x the steps/s
  // (272 against 340, one worker). Its call gets type feedback when the module loads, below.
  if (j < len) axpyTail(dst, d, a, src, s, j, len);
}

function axpyTail(dst, d, a, src, s, j, len) {
  for (; j < len; j++) dst[d + j] += a * src[s + j];
}

// Only the last layer (10 outputs) has a tail, and V8 optimises axpy, inlined into the
// first layer's loops, before that layer ever runs: with no type feedback for the tail's
// call, Node 20 deoptimised there ~1.7 times a step on each replica, over and over, without
// discarding the code (3,336 deopts in 1,000 steps on 2 replicas, `node --trace-deopt`).
// So the call gets its feedback first, from a few calls here (V8 allocates a function's
// feedback only after a few calls). One axpy per layer width instead made the call sites
// polymorphic: V8 stopped inlining it and boxed every `a`, 271 KB of garbage a step
// against 31 KB.
{
  const t = new Float32Array(5);
  for (let i = 0; i < 32; i++) axpy(t, 0, 0.5, t, 0, 5);
}

/** y = x W + b, W stored [in][out] so the inner loops run over contiguous memory. */
export class Dense {
  constructor(inF, outF, rng, { inputGrad = true } = {}) {
    this.inF = inF;
    this.outF = outF;
    this.inputGrad = inputGrad;
    this.W = new Float32Array(inF * outF);
    const std = Math.sqrt(2 / inF); // He initialisation (ReLU follows)
    for (let i = 0; i < this.W.length; i++) this.W[i] = rng.normal() * std;
    this.b = new Float32Array(outF);
    this.gW = new Float32Array(inF * outF);
    this.gb = new Float32Array(outF);
  }
  forward(x, n) {
    const { inF, outF, W, b } = this;
    this.x = x;
    this.n = n;
    const y = (this.y = reuse(this.y, n * outF));
    const acc = (this.acc = reuse(this.acc, outF));
    for (let i = 0; i < n; i++) {
      const xo = i * inF;
      acc.set(b);
      for (let k = 0; k < inF; k++) {
        const xv = x[xo + k];
        if (xv === 0) continue; // MNIST pixels and ReLU outputs are mostly zero
        axpy(acc, 0, xv, W, k * outF, outF);
      }
      y.set(acc, i * outF);
    }
    return y;
  }
  /** Accumulates gW, gb; returns dx (or null for the first layer). */
  backward(dy) {
    const { inF, outF, W, gW, gb, x, n } = this;
    for (let i = 0; i < n; i++) {
      const xo = i * inF, yo = i * outF;
      for (let j = 0; j < outF; j++) gb[j] += dy[yo + j];
      for (let k = 0; k < inF; k++) {
        const xv = x[xo + k];
        if (xv === 0) continue;
        axpy(gW, k * outF, xv, dy, yo, outF);
      }
    }
    if (!this.inputGrad) return null;
    const dx = (this.dx = reuse(this.dx, n * inF));
    for (let i = 0; i < n; i++) {
      const xo = i * inF, yo = i * outF;
      for (let k = 0; k < inF; k++) {
        const wo = k * outF;
        let s = 0;
        for (let j = 0; j < outF; j++) s += dy[yo + j] * W[wo + j];
        dx[xo + k] = s;
      }
    }
    return dx;
  }
  params() {
    return [
      { name: "W", value: () => this.W, grad: () => this.gW },
      { name: "b", value: () => this.b, grad: () => this.gb },
    ];
  }
  zeroGrad() {
    this.gW.fill(0);
    this.gb.fill(0);
  }
}

export class ReLU {
  forward(x) {
    this.x = x;
    const y = (this.y = reuse(this.y, x.length));
    for (let i = 0; i < x.length; i++) y[i] = x[i] > 0 ? x[i] : 0;
    return y;
  }
  backward(dy) {
    const x = this.x, dx = (this.dx = reuse(this.dx, dy.length));
    for (let i = 0; i < dy.length; i++) dx[i] = x[i] > 0 ? dy[i] : 0;
    return dx;
  }
}

/** A batchnorm-wasm module (BatchNorm1d, or SyncBatchNorm across the group) as a layer. */
class BN {
  constructor(bn) {
    this.bn = bn;
  }
  // Into the layer's own arrays (see reuse): a step allocates no output or input gradient.
  forward(x, n) {
    this.y = reuse(this.y, x.length);
    return this.bn.forward(x, [n, this.bn.numFeatures], { out: this.y });
  }
  backward(dy) {
    this.dx = reuse(this.dx, dy.length);
    return this.bn.backward(dy, { out: this.dx });
  }
  params() {
    // Re-read .view on every use: wasm memory may grow and detach old views.
    return [
      { name: "gamma", value: () => this.bn.weight.view, grad: () => this.bn.weightGrad.view },
      { name: "beta", value: () => this.bn.bias.view, grad: () => this.bn.biasGrad.view },
    ];
  }
  zeroGrad() { this.bn.zeroGrad(); }
  train(mode) { this.bn.train(mode); }
  dispose() { this.bn.dispose(); }
}

/**
 * Softmax cross-entropy of `n` rows: the summed loss, the correct count, and the gradient
 * of (summed loss / `denom`) w.r.t. the logits (written into `out` when given). `denom`
 * is the whole batch's size, so the slices of a data-parallel batch add up to the
 * gradient of the batch's mean loss.
 */
export function softmaxCrossEntropy(logits, labels, n, k, denom = n, out = undefined) {
  const dl = out ?? new Float32Array(n * k);
  let loss = 0, correct = 0;
  for (let i = 0; i < n; i++) {
    const o = i * k;
    let max = -Infinity, arg = 0;
    for (let j = 0; j < k; j++) if (logits[o + j] > max) { max = logits[o + j]; arg = j; }
    let sum = 0;
    for (let j = 0; j < k; j++) sum += Math.exp(logits[o + j] - max);
    const y = labels[i];
    loss += Math.log(sum) - (logits[o + y] - max);
    if (arg === y) correct++;
    for (let j = 0; j < k; j++) dl[o + j] = Math.exp(logits[o + j] - max) / sum / denom;
    dl[o + y] -= 1 / denom;
  }
  return { lossSum: loss, correct, dlogits: dl };
}

/**
 * An MLP: 784 -> [Dense -> (BN) -> ReLU] per hidden size -> Dense -> 10 (BN and ReLU as
 * one fused layer when there is batch norm).
 * `bn`: "none", or batch norm: BatchNorm1d, or SyncBatchNorm over `comm` when given (the
 * model is then one replica of data-parallel training; `signals`: how many numbers a
 * step may sum over the replicas alongside the gradients, see `step`).
 * The dense weights depend only on `seed`, so every variant and every replica starts from
 * the same weights.
 */
/** The step's totals after the parameters: loss sum, correct count (then the signals). */
const TOTALS = 2;

/** SGD with momentum and weight decay on elements [lo, hi) (PyTorch's formula). */
function sgd(w, g, v, lo, hi, { lr, momentum, weightDecay }) {
  for (let j = lo; j < hi; j++) {
    v[j] = momentum * v[j] + g[j] + weightDecay * w[j];
    w[j] -= lr * v[j];
  }
}

export class Mlp {
  static async create({ seed = 1, hidden = [128, 64], bn = true, comm, inputs = 784, classes = 10, signals = 0 } = {}) {
    const m = new Mlp();
    const rng = new Rng(seed);
    m.classes = classes;
    m.inputs = inputs;
    m.comm = comm;
    m.layers = [];
    let inF = inputs;
    for (const h of hidden) {
      m.layers.push(new Dense(inF, h, rng, { inputGrad: inF !== inputs }));
      // With batch norm the ReLU is fused into it (one pass forward and backward, the
      // ReLU's 1-bit mask kept by the layer); without, a plain-JS ReLU. Same results.
      if (bn) {
        const opts = { activation: "relu" };
        m.layers.push(new BN(comm ? new SyncBatchNorm(h, comm, opts) : new BatchNorm1d(h, opts)));
      } else {
        m.layers.push(new ReLU());
      }
      inF = h;
    }
    m.layers.push(new Dense(inF, classes, rng));
    m.params = m.layers.flatMap((l) => (l.params ? l.params() : []));
    m.bns = m.layers.filter((l) => l instanceof BN);
    m.signals = signals;
    // Everything a step exchanges lives in flat arrays of one layout: [dense | batch norm |
    // totals (loss, correct count, signals)], one for the gradients (`flat`), one for the
    // parameters (`weights`). The dense layers' arrays are views into them (no copies);
    // batch norm's (wasm tensors) are copied in and out. With `comm` a step is two
    // collectives (ZeRO-1, as PyTorch's ZeroRedundancyOptimizer): reduceScatter sums the
    // gradients, each rank updates only its segment of the parameters, allGatherSegments
    // hands every rank every updated segment; the totals ride along (copied from the
    // reduced gradients into the parameters' tail). Two collectives where separate ones
    // took five, and each rank does 1/worldSize of the SGD update instead of all of it.
    const dense = m.layers.filter((l) => l instanceof Dense);
    m.paramLength = m.params.reduce((a, p) => a + p.value().length, 0);
    const length = m.paramLength + (comm ? TOTALS + signals : 0);
    m.flat = new Float32Array(length);
    m.weights = new Float32Array(length);
    m.velocity = new Float32Array(m.paramLength);
    let at = 0;
    const place = (a) => {
      const [g, w] = [m.flat, m.weights].map((f) => f.subarray(at, at + a.length));
      w.set(a);
      at += a.length;
      return [g, w];
    };
    for (const d of dense) {
      [d.gW, d.W] = place(d.W);
      [d.gb, d.b] = place(d.b);
    }
    m.denseLength = at;
    // The parameters in the flat arrays' order; `weights` holds the master copy of all.
    m.params = [...dense.flatMap((d) => d.params()), ...m.bns.flatMap((l) => l.params())];
    m.writeBatchNorm(m.weights, (p) => p.value());
    return m;
  }

  async forward(x, n) {
    let h = x;
    for (const l of this.layers) h = await l.forward(h, n);
    return h;
  }

  train(mode = true) {
    for (const l of this.layers) l.train?.(mode);
  }

  /**
   * One SGD step. `n` rows of the batch are here; `batch` is the whole batch's size (larger
   * when this is one replica: the other rows are on the other ranks, and the gradients
   * are all-reduced, so every replica takes the same step). Returns the whole batch's
   * loss and accuracy (before the update). `signals` (a Float64Array of at most the
   * `signals` given to `create`) is summed over the replicas in place, in the gradients'
   * collective (the training loop's stop flag). Across replicas the totals travel as
   * float32: the loss is then rounded to float32 (about 1e-7 relative); the correct count
   * and small integer signals are exact.
   */
  async step(x, labels, n, { lr = 0.05, momentum = 0.9, weightDecay = 0, batch = n, signals } = {}) {
    if (this.comm && (signals?.length ?? 0) > this.signals) {
      throw new RangeError(`step got ${signals.length} signals; Mlp.create reserved ${this.signals}`);
    }
    this.train(true);
    const logits = await this.forward(x, n);
    this.dlogits = reuse(this.dlogits, n * this.classes);
    let { lossSum, correct, dlogits } = softmaxCrossEntropy(logits, labels, n, this.classes, batch, this.dlogits);
    for (const l of this.layers) l.zeroGrad?.();
    let g = dlogits;
    for (let i = this.layers.length - 1; i >= 0 && g; i--) g = await this.layers[i].backward(g);
    const opts = { lr, momentum, weightDecay };
    if (!this.comm) {
      this.writeBatchNorm(this.flat, (p) => p.grad());
      sgd(this.weights, this.flat, this.velocity, 0, this.paramLength, opts);
      this.readBatchNorm(this.weights, (p) => p.value());
      return { loss: lossSum / batch, acc: correct / batch };
    }
    const P = this.paramLength, t = this.flat;
    this.writeBatchNorm(t, (p) => p.grad());
    t[P] = lossSum;
    t[P + 1] = correct;
    t.fill(0, P + TOTALS);
    if (signals) t.set(signals, P + TOTALS);
    await this.comm.reduceScatter(t); // my segment: the whole batch's gradients and totals
    const [lo, hi] = this.comm.segment(t.length);
    sgd(this.weights, t, this.velocity, lo, Math.min(hi, P), opts);
    for (let j = Math.max(lo, P); j < hi; j++) this.weights[j] = t[j];
    await this.comm.allGatherSegments(this.weights);
    this.readBatchNorm(this.weights, (p) => p.value());
    lossSum = this.weights[P];
    correct = this.weights[P + 1];
    if (signals) for (let i = 0; i < signals.length; i++) signals[i] = this.weights[P + TOTALS + i];
    return { loss: lossSum / batch, acc: correct / batch };
  }

  /** Copies batch norm's parameters or gradients (`of`) into their place in `flat`. */
  writeBatchNorm(flat, of) {
    let at = this.denseLength;
    for (const p of this.params.slice(this.params.length - 2 * this.bns.length)) {
      const v = of(p); // .view re-read at each use: wasm memory may have grown
      flat.set(v, at);
      at += v.length;
    }
  }

  /** Copies batch norm's parameters or gradients (`of`) back from their place in `flat`. */
  readBatchNorm(flat, of) {
    let at = this.denseLength;
    for (const p of this.params.slice(this.params.length - 2 * this.bns.length)) {
      const v = of(p);
      v.set(flat.subarray(at, at + v.length));
      at += v.length;
    }
  }

  /**
   * Loss and accuracy in eval mode (BN uses its running statistics) on `count` samples;
   * a replica evaluates its share of them and the totals are all-reduced.
   */
  async evaluate(xs, labels, count, batch = 500) {
    this.train(false);
    const rank = this.comm?.rank ?? 0, world = this.comm?.worldSize ?? 1;
    const lo = Math.floor((count * rank) / world), hi = Math.floor((count * (rank + 1)) / world);
    const totals = new Float64Array(2);
    for (let s = lo; s < hi; s += batch) {
      const n = Math.min(batch, hi - s);
      const logits = await this.forward(xs.subarray(s * this.inputs, (s + n) * this.inputs), n);
      const r = softmaxCrossEntropy(logits, labels.subarray(s, s + n), n, this.classes);
      totals[0] += r.lossSum;
      totals[1] += r.correct;
    }
    if (this.comm) await this.comm.allReduce(totals);
    this.train(true);
    return { loss: totals[0] / count, acc: totals[1] / count };
  }

  /** A checksum of every parameter's bits (replicas compare it: identical weights). */
  checksum() {
    let h = 0x811c9dc5;
    for (const p of this.params) {
      const u = new Uint32Array(p.value().slice().buffer);
      for (let i = 0; i < u.length; i++) h = Math.imul(h ^ u[i], 16777619) >>> 0;
    }
    return h;
  }

  dispose() {
    for (const l of this.layers) l.dispose?.();
  }
}
