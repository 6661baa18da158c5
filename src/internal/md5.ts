/**
 * MD5 (RFC 1321) in plain JavaScript. STUN uses it only to derive the long-term credential key,
 * `MD5(username ":" realm ":" password)` (RFC 8489 §9.2.2), once per credential, so this is written for clarity
 * rather than speed; it is still allocation-light and runs in browsers (no `node:*` import).
 *
 * MD5 is not collision resistant; it appears here only because the STUN long-term mechanism requires it.
 *
 * @since 0.1.0
 * @internal
 */

/** The sine table T[1..64] of RFC 1321 §3.4, `floor(abs(sin(i)) * 2^32)`. */
const T = new Int32Array([
  0xd76aa478,
  0xe8c7b756,
  0x242070db,
  0xc1bdceee,
  0xf57c0faf,
  0x4787c62a,
  0xa8304613,
  0xfd469501,
  0x698098d8,
  0x8b44f7af,
  0xffff5bb1,
  0x895cd7be,
  0x6b901122,
  0xfd987193,
  0xa679438e,
  0x49b40821,
  0xf61e2562,
  0xc040b340,
  0x265e5a51,
  0xe9b6c7aa,
  0xd62f105d,
  0x02441453,
  0xd8a1e681,
  0xe7d3fbc8,
  0x21e1cde6,
  0xc33707d6,
  0xf4d50d87,
  0x455a14ed,
  0xa9e3e905,
  0xfcefa3f8,
  0x676f02d9,
  0x8d2a4c8a,
  0xfffa3942,
  0x8771f681,
  0x6d9d6122,
  0xfde5380c,
  0xa4beea44,
  0x4bdecfa9,
  0xf6bb4b60,
  0xbebfbc70,
  0x289b7ec6,
  0xeaa127fa,
  0xd4ef3085,
  0x04881d05,
  0xd9d4d039,
  0xe6db99e5,
  0x1fa27cf8,
  0xc4ac5665,
  0xf4292244,
  0x432aff97,
  0xab9423a7,
  0xfc93a039,
  0x655b59c3,
  0x8f0ccc92,
  0xffeff47d,
  0x85845dd1,
  0x6fa87e4f,
  0xfe2ce6e0,
  0xa3014314,
  0x4e0811a1,
  0xf7537e82,
  0xbd3af235,
  0x2ad7d2bb,
  0xeb86d391
])

/** Per-round left rotation amounts (RFC 1321 §3.4), four per round. */
const S = new Int32Array([7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21])

/** The block X[0..15] of RFC 1321 §3.4, little-endian words. */
const X = new Int32Array(16)

/** Processes the block in `X` into the state `h` (RFC 1321 §3.4). */
const compress = (h: Int32Array): void => {
  let a = h[0]
  let b = h[1]
  let c = h[2]
  let d = h[3]
  for (let i = 0; i < 64; i++) {
    let f: number
    let g: number
    const round = i >>> 4
    if (round === 0) {
      f = (b & c) | (~b & d)
      g = i
    } else if (round === 1) {
      f = (b & d) | (c & ~d)
      g = (5 * i + 1) & 15
    } else if (round === 2) {
      f = b ^ c ^ d
      g = (3 * i + 5) & 15
    } else {
      f = c ^ (b | ~d)
      g = (7 * i) & 15
    }
    const s = S[(round << 2) | (i & 3)]
    const x = (a + f + T[i] + X[g]) | 0
    a = d
    d = c
    c = b
    b = (b + ((x << s) | (x >>> (32 - s)))) | 0
  }
  h[0] = (h[0] + a) | 0
  h[1] = (h[1] + b) | 0
  h[2] = (h[2] + c) | 0
  h[3] = (h[3] + d) | 0
}

/**
 * MD5 of `data` (RFC 1321), 16 bytes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const md5 = (data: Uint8Array): Uint8Array => {
  const h = new Int32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476])
  const len = data.length
  const full = len - (len & 63)
  let p = 0
  for (; p < full; p += 64) {
    for (let i = 0, q = p; i < 16; i++, q += 4) {
      X[i] = data[q] | (data[q + 1] << 8) | (data[q + 2] << 16) | (data[q + 3] << 24)
    }
    compress(h)
  }
  // Final block(s): the remaining bytes, 0x80, zeros, then the bit length as a 64-bit little-endian integer.
  const tail = new Uint8Array(len - p >= 56 ? 128 : 64)
  tail.set(data.subarray(p))
  tail[len - p] = 0x80
  const bits = tail.length - 8
  const lo = len << 3
  const hi = Math.floor(len / 0x20000000)
  tail[bits] = lo
  tail[bits + 1] = lo >>> 8
  tail[bits + 2] = lo >>> 16
  tail[bits + 3] = lo >>> 24
  tail[bits + 4] = hi
  tail[bits + 5] = hi >>> 8
  tail[bits + 6] = hi >>> 16
  tail[bits + 7] = hi >>> 24
  for (let b = 0; b < tail.length; b += 64) {
    for (let i = 0, q = b; i < 16; i++, q += 4) {
      X[i] = tail[q] | (tail[q + 1] << 8) | (tail[q + 2] << 16) | (tail[q + 3] << 24)
    }
    compress(h)
  }
  const out = new Uint8Array(16)
  for (let i = 0; i < 4; i++) {
    const x = h[i]
    out[i << 2] = x
    out[(i << 2) + 1] = x >>> 8
    out[(i << 2) + 2] = x >>> 16
    out[(i << 2) + 3] = x >>> 24
  }
  return out
}
