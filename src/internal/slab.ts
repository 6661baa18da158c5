/**
 * Small-buffer allocation for encoders. V8 allocates a typed array of more than 64 bytes with its own off-heap
 * backing store, which costs ~10× a view on an existing `ArrayBuffer`; so, as Node's `Buffer` pool does, small
 * buffers are carved out of a shared 16 KiB slab. Regions are never reused, so every buffer handed out is
 * zero-filled and owned by its caller; a buffer's `.buffer` is the slab, so use `byteOffset`/`byteLength` (as
 * every `Uint8Array` consumer should).
 *
 * @internal
 */

const slabSize = 16 * 1024
const maxPooled = 2048

let slab = new ArrayBuffer(slabSize)
let used = 0

/**
 * A zero-filled `Uint8Array` of `size` bytes.
 *
 * @internal
 */
export const allocate = (size: number): Uint8Array => {
  if (size > maxPooled) return new Uint8Array(size)
  if (used + size > slabSize) {
    slab = new ArrayBuffer(slabSize)
    used = 0
  }
  const out = new Uint8Array(slab, used, size)
  used = (used + size + 7) & ~7
  return out
}
