// The CNN of the example: two blocks of [3x3 conv -> BatchNorm2d with a fused ReLU -> 2x2
// max pool] (without batch norm: conv -> ReLU -> pool), then a dense layer to the 10
// classes. Batch norm is batchnorm-wasm's BatchNorm2d; the rest is plain JS (conv.js, and
// the dense layer and training utilities of ../mnist/nn.js).
import { BatchNorm2d } from "batchnorm-wasm";
import { Dense, ReLU, Rng, softmaxCrossEntropy } from "../mnist/nn.js";
import { Conv3x3, MaxPool2 } from "./conv.js";

/**
 * batchnorm-wasm's BatchNorm2d with the ReLU fused into its normalisation pass (bit for bit
 * BN then ReLU, one pass fewer); parameters and gradients live in wasm memory.
 */
class BN2dReLU {
  constructor(channels) {
    this.bn = new BatchNorm2d(channels, { activation: "relu" });
  }
  forward(x, shape) {
    return { y: this.bn.forward(x, shape), shape };
  }
  backward(dy) {
    return this.bn.backward(dy);
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

/** (x - mean) / std with MNIST's pixel statistics, as PyTorch's MNIST example does. */
class Standardize {
  forward(x, shape) {
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = (x[i] - 0.1307) / 0.3081;
    return { y, shape };
  }
  backward() {
    return null; // nothing before it learns
  }
}

/** ../mnist/nn.js's ReLU with the shape passed through. */
class Relu {
  relu = new ReLU();
  forward(x, shape) { return { y: this.relu.forward(x), shape }; }
  backward(dy) { return this.relu.backward(dy); }
}

/** ../mnist/nn.js's Dense on the flattened (N, C*H*W) input. */
class Head {
  constructor(inF, classes, rng) {
    this.dense = new Dense(inF, classes, rng);
  }
  forward(x, shape) { return { y: this.dense.forward(x, shape[0]), shape: [shape[0], this.dense.outF] }; }
  backward(dy) { return this.dense.backward(dy); }
  params() { return this.dense.params(); }
  zeroGrad() { this.dense.zeroGrad(); }
}

export class Cnn {
  /**
   * `bn`: with BatchNorm2d after each convolution (the convolutions then have no bias) or
   * without. The weights depend only on `seed`, so both variants start from the same ones.
   */
  constructor({ seed = 1, bn = true, channels = [8, 16], size = 28, classes = 10 } = {}) {
    const rng = new Rng(seed);
    Object.assign(this, { size, classes, layers: [new Standardize()] });
    let cin = 1, side = size;
    channels.forEach((cout, i) => {
      this.layers.push(new Conv3x3(cin, cout, rng, { bias: !bn, inputGrad: i > 0 }));
      this.layers.push(bn ? new BN2dReLU(cout) : new Relu(), new MaxPool2());
      cin = cout;
      side >>= 1;
    });
    this.layers.push(new Head(cin * side * side, classes, rng));
    this.params = this.layers.flatMap((l) => (l.params ? l.params() : []));
    this.velocity = this.params.map((p) => new Float32Array(p.value().length));
  }

  /** Logits (n x classes) of n images of size x size pixels. */
  forward(x, n) {
    let h = { y: x, shape: [n, 1, this.size, this.size] };
    for (const l of this.layers) h = l.forward(h.y, h.shape);
    return h.y;
  }

  train(mode = true) {
    for (const l of this.layers) l.train?.(mode);
  }

  /** One SGD step (with momentum) on a batch; returns its loss and accuracy before the update. */
  step(x, labels, n, { lr, momentum }) {
    this.train(true);
    const logits = this.forward(x, n);
    const { lossSum, correct, dlogits } = softmaxCrossEntropy(logits, labels, n, this.classes);
    for (const l of this.layers) l.zeroGrad?.();
    let g = dlogits;
    for (let i = this.layers.length - 1; i >= 0 && g; i--) g = this.layers[i].backward(g);
    this.params.forEach((p, i) => {
      const w = p.value(), dw = p.grad(), v = this.velocity[i];
      for (let j = 0; j < w.length; j++) {
        v[j] = momentum * v[j] + dw[j];
        w[j] -= lr * v[j];
      }
    });
    return { loss: lossSum / n, acc: correct / n };
  }

  /** Loss and accuracy in eval mode (batch norm uses its running statistics). */
  evaluate(xs, labels, count, batch = 250) {
    this.train(false);
    const px = this.size * this.size;
    let loss = 0, correct = 0;
    for (let s = 0; s < count; s += batch) {
      const n = Math.min(batch, count - s);
      const r = softmaxCrossEntropy(this.forward(xs.subarray(s * px, (s + n) * px), n), labels.subarray(s, s + n), n, this.classes);
      loss += r.lossSum;
      correct += r.correct;
    }
    this.train(true);
    return { loss: loss / count, acc: correct / count };
  }

  dispose() {
    for (const l of this.layers) l.dispose?.();
  }
}
