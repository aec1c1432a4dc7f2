// The bandwidth limit: copying the bytes a tensor holds, with TypedArray.prototype.set
// and with wasm's bulk-memory memory.copy (a hand-written module, below).

// (module
//   (memory (export "mem") 1)
//   (func (export "copy") (param $dst i32) (param $src i32) (param $len i32)
//     local.get $dst  local.get $src  local.get $len  memory.copy))
const COPY_WASM = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type section: (i32 i32 i32) -> ()
  0x03, 0x02, 0x01, 0x00, // function section: func 0 has type 0
  0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, min 1 page, no max
  0x07, 0x0e, 0x02, // export section, 2 exports
  0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, //   "mem" memory 0
  0x04, 0x63, 0x6f, 0x70, 0x79, 0x00, 0x00, //   "copy" func 0
  0x0a, 0x0e, 0x01, 0x0c, 0x00, // code section, 1 body of 12 bytes, no locals
  0x20, 0x00, 0x20, 0x01, 0x20, 0x02, // local.get 0, 1, 2
  0xfc, 0x0a, 0x00, 0x00, // memory.copy 0 0
  0x0b, // end
]);

let instance;
function copyModule() {
  instance ??= new WebAssembly.Instance(new WebAssembly.Module(COPY_WASM), {});
  return instance.exports;
}

/** memory.copy of `n` floats (4n bytes) inside a wasm memory: returns the thunk to time. */
export function wasmCopy(n) {
  const { mem, copy } = copyModule();
  const bytes = 4 * n;
  const need = 2 * bytes + 64;
  if (mem.buffer.byteLength < need) mem.grow(Math.ceil((need - mem.buffer.byteLength) / 65536));
  const src = 0, dst = bytes + 64; // 64-byte aligned, no overlap
  new Float32Array(mem.buffer, src, n).fill(1.5);
  const check = () => new Float32Array(mem.buffer, dst, n);
  return { fn: () => copy(dst, src, bytes), check };
}

/** Float32Array.prototype.set of `n` floats between two ArrayBuffers. */
export function typedArraySet(n) {
  const src = new Float32Array(n).fill(1.5);
  const dst = new Float32Array(n);
  return { fn: () => dst.set(src), check: () => dst };
}

/** Traffic of a copy: read n*4 bytes, write n*4 bytes. */
export const COPY_BYTES_PER_ELEM = 8;
