/**
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104, test vectors RFC 4231) in plain JavaScript, for STUN
 * MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6) on the per-packet path.
 *
 * Same shape as `sha1.ts`: `hmacSha256Key` precomputes the chaining states after the `K XOR ipad` and
 * `K XOR opad` blocks (RFC 2104 §4), and `hmacSha256Into` / `hmacSha256Verify` then cost the message blocks plus
 * one outer block, with no allocation (module-level scratch; the functions are synchronous and never re-entered).
 * `lengthOverride` makes bytes 2..3 of the hashed range read as the adjusted STUN message length without touching
 * the datagram.
 *
 * RFC 8489 §14.6 lets MESSAGE-INTEGRITY-SHA256 be truncated to 16..32 bytes (a multiple of 4), so
 * `hmacSha256Verify` compares a given number of leading bytes. It refuses fewer than 16, the RFC's minimum: a
 * shorter comparison would let a forger guess the MAC.
 *
 * No `node:*` import: this module runs unchanged in browsers.
 *
 * @since 0.1.0
 * @internal
 */

/**
 * The two SHA-256 chaining states of an HMAC key (RFC 2104 §4): after compressing `K XOR ipad` and after
 * compressing `K XOR opad`, eight 32-bit words each.
 *
 * @since 0.1.0
 * @category models
 */
export interface HmacSha256Key {
  readonly inner: Int32Array
  readonly outer: Int32Array
}

/** The initial hash value H(0) (FIPS 180-4 §5.3.3). */
const IV = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19
])

/** Message schedule scratch, W(0)..W(63) of FIPS 180-4 §6.2.2. */
import { load } from "./hashBlock.js"

const W = new Int32Array(64)
/** Chaining state scratch, H(0)..H(7). */
const H = new Int32Array(8)

/**
 * The SHA-256 compression function (FIPS 180-4 §6.2.2 steps 1-4): `w[0..15]` holds the block, `h` the chaining
 * state, which is updated in place; `w[16..63]` receives the message schedule.
 *
 * Written out round by round, for the reasons given in `sha1.ts`: the working variables stay in registers, array
 * indices are constants, and the round constants K(0)..K(63) (FIPS 180-4 §4.2.2, the first 32 bits of the
 * fractional parts of the cube roots of the first 64 primes) are int32 literals, values above 0x7fffffff written
 * as negative numbers. Each round writes `T1 + T2` into the variable that held `h` and adds `T1` to the one that
 * held `d`; the roles rotate by one name per round and return to a..h every eight rounds. `hh` stands for `h`,
 * which names the state array.
 */
const compress = (h: Int32Array, w: Int32Array): void => {
  let a = h[0]
  let b = h[1]
  let c = h[2]
  let d = h[3]
  let e = h[4]
  let f = h[5]
  let g = h[6]
  let hh = h[7]
  let x = 0
  let s0 = 0
  let s1 = 0
  let t1 = 0
  // t = 0
  s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
  t1 = (hh + s1 + (g ^ (e & (f ^ g))) + w[0] + 1116352408) | 0
  s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
  d = (d + t1) | 0
  hh = (t1 + s0 + ((a & b) | (c & (a | b)))) | 0
  // t = 1
  s1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))
  t1 = (g + s1 + (f ^ (d & (e ^ f))) + w[1] + 1899447441) | 0
  s0 = ((hh >>> 2) | (hh << 30)) ^ ((hh >>> 13) | (hh << 19)) ^ ((hh >>> 22) | (hh << 10))
  c = (c + t1) | 0
  g = (t1 + s0 + ((hh & a) | (b & (hh | a)))) | 0
  // t = 2
  s1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))
  t1 = (f + s1 + (e ^ (c & (d ^ e))) + w[2] - 1245643825) | 0
  s0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))
  b = (b + t1) | 0
  f = (t1 + s0 + ((g & hh) | (a & (g | hh)))) | 0
  // t = 3
  s1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))
  t1 = (e + s1 + (d ^ (b & (c ^ d))) + w[3] - 373957723) | 0
  s0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))
  a = (a + t1) | 0
  e = (t1 + s0 + ((f & g) | (hh & (f | g)))) | 0
  // t = 4
  s1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))
  t1 = (d + s1 + (c ^ (a & (b ^ c))) + w[4] + 961987163) | 0
  s0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))
  hh = (hh + t1) | 0
  d = (t1 + s0 + ((e & f) | (g & (e | f)))) | 0
  // t = 5
  s1 = ((hh >>> 6) | (hh << 26)) ^ ((hh >>> 11) | (hh << 21)) ^ ((hh >>> 25) | (hh << 7))
  t1 = (c + s1 + (b ^ (hh & (a ^ b))) + w[5] + 1508970993) | 0
  s0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))
  g = (g + t1) | 0
  c = (t1 + s0 + ((d & e) | (f & (d | e)))) | 0
  // t = 6
  s1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))
  t1 = (b + s1 + (a ^ (g & (hh ^ a))) + w[6] - 1841331548) | 0
  s0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))
  f = (f + t1) | 0
  b = (t1 + s0 + ((c & d) | (e & (c | d)))) | 0
  // t = 7
  s1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))
  t1 = (a + s1 + (hh ^ (f & (g ^ hh))) + w[7] - 1424204075) | 0
  s0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))
  e = (e + t1) | 0
  a = (t1 + s0 + ((b & c) | (d & (b | c)))) | 0
  // t = 8
  s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
  t1 = (hh + s1 + (g ^ (e & (f ^ g))) + w[8] - 670586216) | 0
  s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
  d = (d + t1) | 0
  hh = (t1 + s0 + ((a & b) | (c & (a | b)))) | 0
  // t = 9
  s1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))
  t1 = (g + s1 + (f ^ (d & (e ^ f))) + w[9] + 310598401) | 0
  s0 = ((hh >>> 2) | (hh << 30)) ^ ((hh >>> 13) | (hh << 19)) ^ ((hh >>> 22) | (hh << 10))
  c = (c + t1) | 0
  g = (t1 + s0 + ((hh & a) | (b & (hh | a)))) | 0
  // t = 10
  s1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))
  t1 = (f + s1 + (e ^ (c & (d ^ e))) + w[10] + 607225278) | 0
  s0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))
  b = (b + t1) | 0
  f = (t1 + s0 + ((g & hh) | (a & (g | hh)))) | 0
  // t = 11
  s1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))
  t1 = (e + s1 + (d ^ (b & (c ^ d))) + w[11] + 1426881987) | 0
  s0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))
  a = (a + t1) | 0
  e = (t1 + s0 + ((f & g) | (hh & (f | g)))) | 0
  // t = 12
  s1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))
  t1 = (d + s1 + (c ^ (a & (b ^ c))) + w[12] + 1925078388) | 0
  s0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))
  hh = (hh + t1) | 0
  d = (t1 + s0 + ((e & f) | (g & (e | f)))) | 0
  // t = 13
  s1 = ((hh >>> 6) | (hh << 26)) ^ ((hh >>> 11) | (hh << 21)) ^ ((hh >>> 25) | (hh << 7))
  t1 = (c + s1 + (b ^ (hh & (a ^ b))) + w[13] - 2132889090) | 0
  s0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))
  g = (g + t1) | 0
  c = (t1 + s0 + ((d & e) | (f & (d | e)))) | 0
  // t = 14
  s1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))
  t1 = (b + s1 + (a ^ (g & (hh ^ a))) + w[14] - 1680079193) | 0
  s0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))
  f = (f + t1) | 0
  b = (t1 + s0 + ((c & d) | (e & (c | d)))) | 0
  // t = 15
  s1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))
  t1 = (a + s1 + (hh ^ (f & (g ^ hh))) + w[15] - 1046744716) | 0
  s0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))
  e = (e + t1) | 0
  a = (t1 + s0 + ((b & c) | (d & (b | c)))) | 0
  // t = 16
  x = w[1]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[14]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[0] + s0 + w[9] + s1) | 0
  w[16] = x
  s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
  t1 = (hh + s1 + (g ^ (e & (f ^ g))) + x - 459576895) | 0
  s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
  d = (d + t1) | 0
  hh = (t1 + s0 + ((a & b) | (c & (a | b)))) | 0
  // t = 17
  x = w[2]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[15]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[1] + s0 + w[10] + s1) | 0
  w[17] = x
  s1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))
  t1 = (g + s1 + (f ^ (d & (e ^ f))) + x - 272742522) | 0
  s0 = ((hh >>> 2) | (hh << 30)) ^ ((hh >>> 13) | (hh << 19)) ^ ((hh >>> 22) | (hh << 10))
  c = (c + t1) | 0
  g = (t1 + s0 + ((hh & a) | (b & (hh | a)))) | 0
  // t = 18
  x = w[3]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[16]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[2] + s0 + w[11] + s1) | 0
  w[18] = x
  s1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))
  t1 = (f + s1 + (e ^ (c & (d ^ e))) + x + 264347078) | 0
  s0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))
  b = (b + t1) | 0
  f = (t1 + s0 + ((g & hh) | (a & (g | hh)))) | 0
  // t = 19
  x = w[4]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[17]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[3] + s0 + w[12] + s1) | 0
  w[19] = x
  s1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))
  t1 = (e + s1 + (d ^ (b & (c ^ d))) + x + 604807628) | 0
  s0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))
  a = (a + t1) | 0
  e = (t1 + s0 + ((f & g) | (hh & (f | g)))) | 0
  // t = 20
  x = w[5]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[18]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[4] + s0 + w[13] + s1) | 0
  w[20] = x
  s1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))
  t1 = (d + s1 + (c ^ (a & (b ^ c))) + x + 770255983) | 0
  s0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))
  hh = (hh + t1) | 0
  d = (t1 + s0 + ((e & f) | (g & (e | f)))) | 0
  // t = 21
  x = w[6]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[19]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[5] + s0 + w[14] + s1) | 0
  w[21] = x
  s1 = ((hh >>> 6) | (hh << 26)) ^ ((hh >>> 11) | (hh << 21)) ^ ((hh >>> 25) | (hh << 7))
  t1 = (c + s1 + (b ^ (hh & (a ^ b))) + x + 1249150122) | 0
  s0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))
  g = (g + t1) | 0
  c = (t1 + s0 + ((d & e) | (f & (d | e)))) | 0
  // t = 22
  x = w[7]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[20]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[6] + s0 + w[15] + s1) | 0
  w[22] = x
  s1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))
  t1 = (b + s1 + (a ^ (g & (hh ^ a))) + x + 1555081692) | 0
  s0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))
  f = (f + t1) | 0
  b = (t1 + s0 + ((c & d) | (e & (c | d)))) | 0
  // t = 23
  x = w[8]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[21]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[7] + s0 + w[16] + s1) | 0
  w[23] = x
  s1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))
  t1 = (a + s1 + (hh ^ (f & (g ^ hh))) + x + 1996064986) | 0
  s0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))
  e = (e + t1) | 0
  a = (t1 + s0 + ((b & c) | (d & (b | c)))) | 0
  // t = 24
  x = w[9]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[22]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[8] + s0 + w[17] + s1) | 0
  w[24] = x
  s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
  t1 = (hh + s1 + (g ^ (e & (f ^ g))) + x - 1740746414) | 0
  s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
  d = (d + t1) | 0
  hh = (t1 + s0 + ((a & b) | (c & (a | b)))) | 0
  // t = 25
  x = w[10]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[23]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[9] + s0 + w[18] + s1) | 0
  w[25] = x
  s1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))
  t1 = (g + s1 + (f ^ (d & (e ^ f))) + x - 1473132947) | 0
  s0 = ((hh >>> 2) | (hh << 30)) ^ ((hh >>> 13) | (hh << 19)) ^ ((hh >>> 22) | (hh << 10))
  c = (c + t1) | 0
  g = (t1 + s0 + ((hh & a) | (b & (hh | a)))) | 0
  // t = 26
  x = w[11]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[24]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[10] + s0 + w[19] + s1) | 0
  w[26] = x
  s1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))
  t1 = (f + s1 + (e ^ (c & (d ^ e))) + x - 1341970488) | 0
  s0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))
  b = (b + t1) | 0
  f = (t1 + s0 + ((g & hh) | (a & (g | hh)))) | 0
  // t = 27
  x = w[12]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[25]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[11] + s0 + w[20] + s1) | 0
  w[27] = x
  s1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))
  t1 = (e + s1 + (d ^ (b & (c ^ d))) + x - 1084653625) | 0
  s0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))
  a = (a + t1) | 0
  e = (t1 + s0 + ((f & g) | (hh & (f | g)))) | 0
  // t = 28
  x = w[13]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[26]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[12] + s0 + w[21] + s1) | 0
  w[28] = x
  s1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))
  t1 = (d + s1 + (c ^ (a & (b ^ c))) + x - 958395405) | 0
  s0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))
  hh = (hh + t1) | 0
  d = (t1 + s0 + ((e & f) | (g & (e | f)))) | 0
  // t = 29
  x = w[14]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[27]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[13] + s0 + w[22] + s1) | 0
  w[29] = x
  s1 = ((hh >>> 6) | (hh << 26)) ^ ((hh >>> 11) | (hh << 21)) ^ ((hh >>> 25) | (hh << 7))
  t1 = (c + s1 + (b ^ (hh & (a ^ b))) + x - 710438585) | 0
  s0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))
  g = (g + t1) | 0
  c = (t1 + s0 + ((d & e) | (f & (d | e)))) | 0
  // t = 30
  x = w[15]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[28]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[14] + s0 + w[23] + s1) | 0
  w[30] = x
  s1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))
  t1 = (b + s1 + (a ^ (g & (hh ^ a))) + x + 113926993) | 0
  s0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))
  f = (f + t1) | 0
  b = (t1 + s0 + ((c & d) | (e & (c | d)))) | 0
  // t = 31
  x = w[16]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[29]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[15] + s0 + w[24] + s1) | 0
  w[31] = x
  s1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))
  t1 = (a + s1 + (hh ^ (f & (g ^ hh))) + x + 338241895) | 0
  s0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))
  e = (e + t1) | 0
  a = (t1 + s0 + ((b & c) | (d & (b | c)))) | 0
  // t = 32
  x = w[17]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[30]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[16] + s0 + w[25] + s1) | 0
  w[32] = x
  s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
  t1 = (hh + s1 + (g ^ (e & (f ^ g))) + x + 666307205) | 0
  s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
  d = (d + t1) | 0
  hh = (t1 + s0 + ((a & b) | (c & (a | b)))) | 0
  // t = 33
  x = w[18]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[31]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[17] + s0 + w[26] + s1) | 0
  w[33] = x
  s1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))
  t1 = (g + s1 + (f ^ (d & (e ^ f))) + x + 773529912) | 0
  s0 = ((hh >>> 2) | (hh << 30)) ^ ((hh >>> 13) | (hh << 19)) ^ ((hh >>> 22) | (hh << 10))
  c = (c + t1) | 0
  g = (t1 + s0 + ((hh & a) | (b & (hh | a)))) | 0
  // t = 34
  x = w[19]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[32]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[18] + s0 + w[27] + s1) | 0
  w[34] = x
  s1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))
  t1 = (f + s1 + (e ^ (c & (d ^ e))) + x + 1294757372) | 0
  s0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))
  b = (b + t1) | 0
  f = (t1 + s0 + ((g & hh) | (a & (g | hh)))) | 0
  // t = 35
  x = w[20]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[33]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[19] + s0 + w[28] + s1) | 0
  w[35] = x
  s1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))
  t1 = (e + s1 + (d ^ (b & (c ^ d))) + x + 1396182291) | 0
  s0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))
  a = (a + t1) | 0
  e = (t1 + s0 + ((f & g) | (hh & (f | g)))) | 0
  // t = 36
  x = w[21]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[34]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[20] + s0 + w[29] + s1) | 0
  w[36] = x
  s1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))
  t1 = (d + s1 + (c ^ (a & (b ^ c))) + x + 1695183700) | 0
  s0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))
  hh = (hh + t1) | 0
  d = (t1 + s0 + ((e & f) | (g & (e | f)))) | 0
  // t = 37
  x = w[22]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[35]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[21] + s0 + w[30] + s1) | 0
  w[37] = x
  s1 = ((hh >>> 6) | (hh << 26)) ^ ((hh >>> 11) | (hh << 21)) ^ ((hh >>> 25) | (hh << 7))
  t1 = (c + s1 + (b ^ (hh & (a ^ b))) + x + 1986661051) | 0
  s0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))
  g = (g + t1) | 0
  c = (t1 + s0 + ((d & e) | (f & (d | e)))) | 0
  // t = 38
  x = w[23]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[36]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[22] + s0 + w[31] + s1) | 0
  w[38] = x
  s1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))
  t1 = (b + s1 + (a ^ (g & (hh ^ a))) + x - 2117940946) | 0
  s0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))
  f = (f + t1) | 0
  b = (t1 + s0 + ((c & d) | (e & (c | d)))) | 0
  // t = 39
  x = w[24]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[37]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[23] + s0 + w[32] + s1) | 0
  w[39] = x
  s1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))
  t1 = (a + s1 + (hh ^ (f & (g ^ hh))) + x - 1838011259) | 0
  s0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))
  e = (e + t1) | 0
  a = (t1 + s0 + ((b & c) | (d & (b | c)))) | 0
  // t = 40
  x = w[25]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[38]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[24] + s0 + w[33] + s1) | 0
  w[40] = x
  s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
  t1 = (hh + s1 + (g ^ (e & (f ^ g))) + x - 1564481375) | 0
  s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
  d = (d + t1) | 0
  hh = (t1 + s0 + ((a & b) | (c & (a | b)))) | 0
  // t = 41
  x = w[26]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[39]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[25] + s0 + w[34] + s1) | 0
  w[41] = x
  s1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))
  t1 = (g + s1 + (f ^ (d & (e ^ f))) + x - 1474664885) | 0
  s0 = ((hh >>> 2) | (hh << 30)) ^ ((hh >>> 13) | (hh << 19)) ^ ((hh >>> 22) | (hh << 10))
  c = (c + t1) | 0
  g = (t1 + s0 + ((hh & a) | (b & (hh | a)))) | 0
  // t = 42
  x = w[27]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[40]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[26] + s0 + w[35] + s1) | 0
  w[42] = x
  s1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))
  t1 = (f + s1 + (e ^ (c & (d ^ e))) + x - 1035236496) | 0
  s0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))
  b = (b + t1) | 0
  f = (t1 + s0 + ((g & hh) | (a & (g | hh)))) | 0
  // t = 43
  x = w[28]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[41]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[27] + s0 + w[36] + s1) | 0
  w[43] = x
  s1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))
  t1 = (e + s1 + (d ^ (b & (c ^ d))) + x - 949202525) | 0
  s0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))
  a = (a + t1) | 0
  e = (t1 + s0 + ((f & g) | (hh & (f | g)))) | 0
  // t = 44
  x = w[29]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[42]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[28] + s0 + w[37] + s1) | 0
  w[44] = x
  s1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))
  t1 = (d + s1 + (c ^ (a & (b ^ c))) + x - 778901479) | 0
  s0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))
  hh = (hh + t1) | 0
  d = (t1 + s0 + ((e & f) | (g & (e | f)))) | 0
  // t = 45
  x = w[30]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[43]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[29] + s0 + w[38] + s1) | 0
  w[45] = x
  s1 = ((hh >>> 6) | (hh << 26)) ^ ((hh >>> 11) | (hh << 21)) ^ ((hh >>> 25) | (hh << 7))
  t1 = (c + s1 + (b ^ (hh & (a ^ b))) + x - 694614492) | 0
  s0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))
  g = (g + t1) | 0
  c = (t1 + s0 + ((d & e) | (f & (d | e)))) | 0
  // t = 46
  x = w[31]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[44]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[30] + s0 + w[39] + s1) | 0
  w[46] = x
  s1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))
  t1 = (b + s1 + (a ^ (g & (hh ^ a))) + x - 200395387) | 0
  s0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))
  f = (f + t1) | 0
  b = (t1 + s0 + ((c & d) | (e & (c | d)))) | 0
  // t = 47
  x = w[32]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[45]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[31] + s0 + w[40] + s1) | 0
  w[47] = x
  s1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))
  t1 = (a + s1 + (hh ^ (f & (g ^ hh))) + x + 275423344) | 0
  s0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))
  e = (e + t1) | 0
  a = (t1 + s0 + ((b & c) | (d & (b | c)))) | 0
  // t = 48
  x = w[33]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[46]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[32] + s0 + w[41] + s1) | 0
  w[48] = x
  s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
  t1 = (hh + s1 + (g ^ (e & (f ^ g))) + x + 430227734) | 0
  s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
  d = (d + t1) | 0
  hh = (t1 + s0 + ((a & b) | (c & (a | b)))) | 0
  // t = 49
  x = w[34]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[47]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[33] + s0 + w[42] + s1) | 0
  w[49] = x
  s1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))
  t1 = (g + s1 + (f ^ (d & (e ^ f))) + x + 506948616) | 0
  s0 = ((hh >>> 2) | (hh << 30)) ^ ((hh >>> 13) | (hh << 19)) ^ ((hh >>> 22) | (hh << 10))
  c = (c + t1) | 0
  g = (t1 + s0 + ((hh & a) | (b & (hh | a)))) | 0
  // t = 50
  x = w[35]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[48]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[34] + s0 + w[43] + s1) | 0
  w[50] = x
  s1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))
  t1 = (f + s1 + (e ^ (c & (d ^ e))) + x + 659060556) | 0
  s0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))
  b = (b + t1) | 0
  f = (t1 + s0 + ((g & hh) | (a & (g | hh)))) | 0
  // t = 51
  x = w[36]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[49]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[35] + s0 + w[44] + s1) | 0
  w[51] = x
  s1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))
  t1 = (e + s1 + (d ^ (b & (c ^ d))) + x + 883997877) | 0
  s0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))
  a = (a + t1) | 0
  e = (t1 + s0 + ((f & g) | (hh & (f | g)))) | 0
  // t = 52
  x = w[37]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[50]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[36] + s0 + w[45] + s1) | 0
  w[52] = x
  s1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))
  t1 = (d + s1 + (c ^ (a & (b ^ c))) + x + 958139571) | 0
  s0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))
  hh = (hh + t1) | 0
  d = (t1 + s0 + ((e & f) | (g & (e | f)))) | 0
  // t = 53
  x = w[38]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[51]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[37] + s0 + w[46] + s1) | 0
  w[53] = x
  s1 = ((hh >>> 6) | (hh << 26)) ^ ((hh >>> 11) | (hh << 21)) ^ ((hh >>> 25) | (hh << 7))
  t1 = (c + s1 + (b ^ (hh & (a ^ b))) + x + 1322822218) | 0
  s0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))
  g = (g + t1) | 0
  c = (t1 + s0 + ((d & e) | (f & (d | e)))) | 0
  // t = 54
  x = w[39]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[52]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[38] + s0 + w[47] + s1) | 0
  w[54] = x
  s1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))
  t1 = (b + s1 + (a ^ (g & (hh ^ a))) + x + 1537002063) | 0
  s0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))
  f = (f + t1) | 0
  b = (t1 + s0 + ((c & d) | (e & (c | d)))) | 0
  // t = 55
  x = w[40]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[53]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[39] + s0 + w[48] + s1) | 0
  w[55] = x
  s1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))
  t1 = (a + s1 + (hh ^ (f & (g ^ hh))) + x + 1747873779) | 0
  s0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))
  e = (e + t1) | 0
  a = (t1 + s0 + ((b & c) | (d & (b | c)))) | 0
  // t = 56
  x = w[41]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[54]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[40] + s0 + w[49] + s1) | 0
  w[56] = x
  s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
  t1 = (hh + s1 + (g ^ (e & (f ^ g))) + x + 1955562222) | 0
  s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
  d = (d + t1) | 0
  hh = (t1 + s0 + ((a & b) | (c & (a | b)))) | 0
  // t = 57
  x = w[42]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[55]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[41] + s0 + w[50] + s1) | 0
  w[57] = x
  s1 = ((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))
  t1 = (g + s1 + (f ^ (d & (e ^ f))) + x + 2024104815) | 0
  s0 = ((hh >>> 2) | (hh << 30)) ^ ((hh >>> 13) | (hh << 19)) ^ ((hh >>> 22) | (hh << 10))
  c = (c + t1) | 0
  g = (t1 + s0 + ((hh & a) | (b & (hh | a)))) | 0
  // t = 58
  x = w[43]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[56]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[42] + s0 + w[51] + s1) | 0
  w[58] = x
  s1 = ((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))
  t1 = (f + s1 + (e ^ (c & (d ^ e))) + x - 2067236844) | 0
  s0 = ((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))
  b = (b + t1) | 0
  f = (t1 + s0 + ((g & hh) | (a & (g | hh)))) | 0
  // t = 59
  x = w[44]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[57]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[43] + s0 + w[52] + s1) | 0
  w[59] = x
  s1 = ((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))
  t1 = (e + s1 + (d ^ (b & (c ^ d))) + x - 1933114872) | 0
  s0 = ((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))
  a = (a + t1) | 0
  e = (t1 + s0 + ((f & g) | (hh & (f | g)))) | 0
  // t = 60
  x = w[45]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[58]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[44] + s0 + w[53] + s1) | 0
  w[60] = x
  s1 = ((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))
  t1 = (d + s1 + (c ^ (a & (b ^ c))) + x - 1866530822) | 0
  s0 = ((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))
  hh = (hh + t1) | 0
  d = (t1 + s0 + ((e & f) | (g & (e | f)))) | 0
  // t = 61
  x = w[46]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[59]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[45] + s0 + w[54] + s1) | 0
  w[61] = x
  s1 = ((hh >>> 6) | (hh << 26)) ^ ((hh >>> 11) | (hh << 21)) ^ ((hh >>> 25) | (hh << 7))
  t1 = (c + s1 + (b ^ (hh & (a ^ b))) + x - 1538233109) | 0
  s0 = ((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))
  g = (g + t1) | 0
  c = (t1 + s0 + ((d & e) | (f & (d | e)))) | 0
  // t = 62
  x = w[47]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[60]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[46] + s0 + w[55] + s1) | 0
  w[62] = x
  s1 = ((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))
  t1 = (b + s1 + (a ^ (g & (hh ^ a))) + x - 1090935817) | 0
  s0 = ((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))
  f = (f + t1) | 0
  b = (t1 + s0 + ((c & d) | (e & (c | d)))) | 0
  // t = 63
  x = w[48]
  s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
  x = w[61]
  s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)
  x = (w[47] + s0 + w[56] + s1) | 0
  w[63] = x
  s1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))
  t1 = (a + s1 + (hh ^ (f & (g ^ hh))) + x - 965641998) | 0
  s0 = ((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))
  e = (e + t1) | 0
  a = (t1 + s0 + ((b & c) | (d & (b | c)))) | 0
  h[0] = (h[0] + a) | 0
  h[1] = (h[1] + b) | 0
  h[2] = (h[2] + c) | 0
  h[3] = (h[3] + d) | 0
  h[4] = (h[4] + e) | 0
  h[5] = (h[5] + f) | 0
  h[6] = (h[6] + g) | 0
  h[7] = (h[7] + hh) | 0
}

/**
 * Absorbs `data[start, end)` into `H`, which already holds the state after `prefix` bytes (0 or one block), and
 * applies the final padding (FIPS 180-4 §5.1.1). With `override >= 0`, message bytes 2..3 read as that value.
 */
const absorb = (data: Uint8Array, start: number, end: number, prefix: number, override: number): void => {
  const w = W
  const h = H
  const len = end - start
  let p = start
  if (len >= 64) {
    const full = start + (len - (len & 63))
    load(w, data, p)
    if (override >= 0) w[0] = (w[0] & -65536) | (override & 0xffff)
    compress(h, w)
    p += 64
    for (; p < full; p += 64) {
      load(w, data, p)
      compress(h, w)
    }
  }
  const rem = end - p
  const words = rem >>> 2
  let i = 0
  for (; i < words; i++, p += 4) {
    w[i] = (data[p] << 24) | (data[p + 1] << 16) | (data[p + 2] << 8) | data[p + 3]
  }
  switch (rem & 3) {
    case 0:
      w[i] = -2147483648 // 0x80 then zeros
      break
    case 1:
      w[i] = (data[p] << 24) | 0x800000
      break
    case 2:
      w[i] = (data[p] << 24) | (data[p + 1] << 16) | 0x8000
      break
    default:
      w[i] = (data[p] << 24) | (data[p + 1] << 16) | (data[p + 2] << 8) | 0x80
  }
  for (i++; i < 16; i++) w[i] = 0
  if (override >= 0 && len < 64) {
    if (len >= 4) w[0] = (w[0] & -65536) | (override & 0xffff)
    else if (len === 3) w[0] = (w[0] & -65281) | (override & 0xff00)
  }
  if (rem >= 56) {
    compress(h, w)
    for (i = 0; i < 14; i++) w[i] = 0
  }
  const total = prefix + len
  w[14] = Math.floor(total / 0x20000000) | 0
  w[15] = total << 3
  compress(h, w)
}

/** Writes the eight words of `h` big-endian at `out[o]`. */
const store = (h: Int32Array, out: Uint8Array, o: number): void => {
  for (let i = 0; i < 8; i++, o += 4) {
    const x = h[i]
    out[o] = x >>> 24
    out[o + 1] = x >>> 16
    out[o + 2] = x >>> 8
    out[o + 3] = x
  }
}

/**
 * SHA-256 of `data` (FIPS 180-4 §6.2), 32 bytes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const sha256 = (data: Uint8Array): Uint8Array => {
  H.set(IV)
  absorb(data, 0, data.length, 0, -1)
  const out = new Uint8Array(32)
  store(H, out, 0)
  return out
}

/** Compresses the 64-byte zero-padded `key` XOR `pad` from H(0) and returns the resulting state. */
const padState = (key: Uint8Array, pad: number): Int32Array => {
  const w = W
  for (let i = 0; i < 16; i++) {
    let x = 0
    for (let j = 0; j < 4; j++) {
      const k = (i << 2) + j
      x = (x << 8) | (k < key.length ? key[k] : 0)
    }
    w[i] = x ^ pad
  }
  const h = new Int32Array(IV)
  compress(h, w)
  return h
}

/**
 * Precomputes an HMAC-SHA256 key (RFC 2104): keys longer than the 64-byte block are hashed first, then the states
 * after `K XOR ipad` and `K XOR opad` are kept for `hmacSha256Into` and `hmacSha256Verify`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hmacSha256Key = (key: Uint8Array): HmacSha256Key => {
  const k = key.length > 64 ? sha256(key) : key
  return { inner: padState(k, 0x36363636), outer: padState(k, 0x5c5c5c5c) }
}

/**
 * Computes the HMAC of `data[start, end)` and leaves it in `H`. A range outside `data` is a bug in the caller (a
 * decoder computes it from lengths it has already checked), so it throws instead of hashing phantom zero bytes.
 */
const mac = (key: HmacSha256Key, data: Uint8Array, start: number, end: number, override: number): void => {
  if (!(start >= 0 && start <= end && end <= data.length)) {
    throw new RangeError(`HmacSha256: range [${start}, ${end}) outside data of length ${data.length}`)
  }
  const h = H
  const w = W
  const inner = key.inner
  h[0] = inner[0]
  h[1] = inner[1]
  h[2] = inner[2]
  h[3] = inner[3]
  h[4] = inner[4]
  h[5] = inner[5]
  h[6] = inner[6]
  h[7] = inner[7]
  absorb(data, start, end, 64, override)
  w[0] = h[0]
  w[1] = h[1]
  w[2] = h[2]
  w[3] = h[3]
  w[4] = h[4]
  w[5] = h[5]
  w[6] = h[6]
  w[7] = h[7]
  w[8] = -2147483648 // 0x80 then zeros
  w[9] = 0
  w[10] = 0
  w[11] = 0
  w[12] = 0
  w[13] = 0
  w[14] = 0
  w[15] = (64 + 32) << 3
  const outer = key.outer
  h[0] = outer[0]
  h[1] = outer[1]
  h[2] = outer[2]
  h[3] = outer[3]
  h[4] = outer[4]
  h[5] = outer[5]
  h[6] = outer[6]
  h[7] = outer[7]
  compress(h, w)
}

/**
 * Writes HMAC-SHA256(`key`, `data[start, end)`) as 32 bytes at `out[outOffset]`, allocating nothing. With
 * `lengthOverride >= 0`, the bytes at `data[start + 2]` and `data[start + 3]` are hashed as if they held the
 * big-endian 16-bit value `lengthOverride & 0xffff` (the adjusted STUN message length of RFC 8489 §14.6); `data` is
 * not modified. Throws a `RangeError` when `[start, end)` is not within `data` or `out` has no room for 32 bytes.
 *
 * @since 0.1.0
 * @category combinators
 */
export const hmacSha256Into = (
  key: HmacSha256Key,
  data: Uint8Array,
  start: number,
  end: number,
  lengthOverride: number,
  out: Uint8Array,
  outOffset: number
): void => {
  if (!(outOffset >= 0 && outOffset + 32 <= out.length)) {
    throw new RangeError(`hmacSha256Into: no room for 32 bytes at offset ${outOffset} of ${out.length}`)
  }
  mac(key, data, start, end, lengthOverride)
  store(H, out, outOffset)
}

/**
 * Checks that `expected[expectedOffset, expectedOffset + expectedLength)` equals the first `expectedLength` bytes
 * of HMAC-SHA256(`key`, `data[start, end)`), with `lengthOverride` as in `hmacSha256Into`. Every one of those
 * bytes is compared without an early exit, so the time taken does not depend on where a forged MAC first differs.
 * Allocates nothing. Returns `false` when `expectedLength` is outside 16..32 (RFC 8489 §14.6) or `expected` is too
 * short; throws a `RangeError` when `[start, end)` is not within `data`.
 *
 * @since 0.1.0
 * @category guards
 */
export const hmacSha256Verify = (
  key: HmacSha256Key,
  data: Uint8Array,
  start: number,
  end: number,
  lengthOverride: number,
  expected: Uint8Array,
  expectedOffset: number,
  expectedLength: number
): boolean => {
  if (
    !(expectedLength >= 16 && expectedLength <= 32) || expectedOffset < 0 ||
    expectedOffset + expectedLength > expected.length
  ) return false
  mac(key, data, start, end, lengthOverride)
  const h = H
  let diff = 0
  for (let i = 0; i < expectedLength; i++) {
    diff |= ((h[i >>> 2] >>> (24 - ((i & 3) << 3))) & 0xff) ^ expected[expectedOffset + i]
  }
  return diff === 0
}
