/**
 * SHA-1 (RFC 3174 / FIPS 180-4) and HMAC-SHA1 (RFC 2104) in plain JavaScript, for STUN MESSAGE-INTEGRITY
 * (RFC 8489 §14.5) on the per-packet path.
 *
 * The HMAC is split the way RFC 2104 §4 suggests ("the intermediate results of the compression function on the
 * B-byte blocks (K XOR ipad) and (K XOR opad) can be precomputed"): `hmacSha1Key` compresses the two padded key
 * blocks once and keeps the two chaining states, so each MAC afterwards costs only the compression of the message
 * blocks plus one outer block. `hmacSha1Into` and `hmacSha1Verify` allocate nothing: they work in module-level
 * scratch arrays, which is safe because they are synchronous and never re-entered.
 *
 * STUN hashes the header with the message length field adjusted to end at the integrity attribute. Rather than
 * copying or patching the datagram, the caller passes `lengthOverride`, and bytes 2..3 of the hashed range are read
 * as that big-endian 16-bit value.
 *
 * No `node:*` import: this module runs unchanged in browsers.
 *
 * @since 0.1.0
 * @internal
 */

/**
 * The two SHA-1 chaining states of an HMAC key (RFC 2104 §4): after compressing `K XOR ipad` and after
 * compressing `K XOR opad`, five 32-bit words each.
 *
 * @since 0.1.0
 * @category models
 */
export interface HmacSha1Key {
  readonly inner: Int32Array
  readonly outer: Int32Array
}

/** Message schedule scratch, W(0)..W(79) of FIPS 180-4 §6.1.2. */
import { load } from "./hashBlock.js"

const W = new Int32Array(80)
/** Chaining state scratch, H(0)..H(4). */
const H = new Int32Array(5)

/**
 * The SHA-1 compression function (FIPS 180-4 §6.1.2 steps 1-4): `w[0..15]` holds the block, `h` the chaining
 * state, which is updated in place; `w[16..79]` receives the message schedule.
 *
 * Written out round by round: V8 keeps a..e in registers, every array index is a constant and every round constant
 * an int32 literal, which runs about twice as fast as the same rounds in loops. Instead of shifting the five
 * working variables after each round (`e = d; d = c; c = ROTL30(b); b = a; a = T`), each round writes `T` into the
 * variable that held `e` and the roles rotate by one name per round, returning to a..e every five rounds.
 * Constants above 0x7fffffff are written as their signed 32-bit values.
 */
const compress = (h: Int32Array, w: Int32Array): void => {
  let a = h[0]
  let b = h[1]
  let c = h[2]
  let d = h[3]
  let e = h[4]
  let x = 0
  // t = 0..19: f = Ch(b, c, d), K = 0x5a827999
  e = (((a << 5) | (a >>> 27)) + (d ^ (b & (c ^ d))) + e + w[0] + 1518500249) | 0
  b = (b << 30) | (b >>> 2)
  d = (((e << 5) | (e >>> 27)) + (c ^ (a & (b ^ c))) + d + w[1] + 1518500249) | 0
  a = (a << 30) | (a >>> 2)
  c = (((d << 5) | (d >>> 27)) + (b ^ (e & (a ^ b))) + c + w[2] + 1518500249) | 0
  e = (e << 30) | (e >>> 2)
  b = (((c << 5) | (c >>> 27)) + (a ^ (d & (e ^ a))) + b + w[3] + 1518500249) | 0
  d = (d << 30) | (d >>> 2)
  a = (((b << 5) | (b >>> 27)) + (e ^ (c & (d ^ e))) + a + w[4] + 1518500249) | 0
  c = (c << 30) | (c >>> 2)
  e = (((a << 5) | (a >>> 27)) + (d ^ (b & (c ^ d))) + e + w[5] + 1518500249) | 0
  b = (b << 30) | (b >>> 2)
  d = (((e << 5) | (e >>> 27)) + (c ^ (a & (b ^ c))) + d + w[6] + 1518500249) | 0
  a = (a << 30) | (a >>> 2)
  c = (((d << 5) | (d >>> 27)) + (b ^ (e & (a ^ b))) + c + w[7] + 1518500249) | 0
  e = (e << 30) | (e >>> 2)
  b = (((c << 5) | (c >>> 27)) + (a ^ (d & (e ^ a))) + b + w[8] + 1518500249) | 0
  d = (d << 30) | (d >>> 2)
  a = (((b << 5) | (b >>> 27)) + (e ^ (c & (d ^ e))) + a + w[9] + 1518500249) | 0
  c = (c << 30) | (c >>> 2)
  e = (((a << 5) | (a >>> 27)) + (d ^ (b & (c ^ d))) + e + w[10] + 1518500249) | 0
  b = (b << 30) | (b >>> 2)
  d = (((e << 5) | (e >>> 27)) + (c ^ (a & (b ^ c))) + d + w[11] + 1518500249) | 0
  a = (a << 30) | (a >>> 2)
  c = (((d << 5) | (d >>> 27)) + (b ^ (e & (a ^ b))) + c + w[12] + 1518500249) | 0
  e = (e << 30) | (e >>> 2)
  b = (((c << 5) | (c >>> 27)) + (a ^ (d & (e ^ a))) + b + w[13] + 1518500249) | 0
  d = (d << 30) | (d >>> 2)
  a = (((b << 5) | (b >>> 27)) + (e ^ (c & (d ^ e))) + a + w[14] + 1518500249) | 0
  c = (c << 30) | (c >>> 2)
  e = (((a << 5) | (a >>> 27)) + (d ^ (b & (c ^ d))) + e + w[15] + 1518500249) | 0
  b = (b << 30) | (b >>> 2)
  x = w[13] ^ w[8] ^ w[2] ^ w[0]
  x = (x << 1) | (x >>> 31)
  w[16] = x
  d = (((e << 5) | (e >>> 27)) + (c ^ (a & (b ^ c))) + d + x + 1518500249) | 0
  a = (a << 30) | (a >>> 2)
  x = w[14] ^ w[9] ^ w[3] ^ w[1]
  x = (x << 1) | (x >>> 31)
  w[17] = x
  c = (((d << 5) | (d >>> 27)) + (b ^ (e & (a ^ b))) + c + x + 1518500249) | 0
  e = (e << 30) | (e >>> 2)
  x = w[15] ^ w[10] ^ w[4] ^ w[2]
  x = (x << 1) | (x >>> 31)
  w[18] = x
  b = (((c << 5) | (c >>> 27)) + (a ^ (d & (e ^ a))) + b + x + 1518500249) | 0
  d = (d << 30) | (d >>> 2)
  x = w[16] ^ w[11] ^ w[5] ^ w[3]
  x = (x << 1) | (x >>> 31)
  w[19] = x
  a = (((b << 5) | (b >>> 27)) + (e ^ (c & (d ^ e))) + a + x + 1518500249) | 0
  c = (c << 30) | (c >>> 2)

  // t = 20..39: f = Parity(b, c, d), K = 0x6ed9eba1
  x = w[17] ^ w[12] ^ w[6] ^ w[4]
  x = (x << 1) | (x >>> 31)
  w[20] = x
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + x + 1859775393) | 0
  b = (b << 30) | (b >>> 2)
  x = w[18] ^ w[13] ^ w[7] ^ w[5]
  x = (x << 1) | (x >>> 31)
  w[21] = x
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + x + 1859775393) | 0
  a = (a << 30) | (a >>> 2)
  x = w[19] ^ w[14] ^ w[8] ^ w[6]
  x = (x << 1) | (x >>> 31)
  w[22] = x
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + x + 1859775393) | 0
  e = (e << 30) | (e >>> 2)
  x = w[20] ^ w[15] ^ w[9] ^ w[7]
  x = (x << 1) | (x >>> 31)
  w[23] = x
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + x + 1859775393) | 0
  d = (d << 30) | (d >>> 2)
  x = w[21] ^ w[16] ^ w[10] ^ w[8]
  x = (x << 1) | (x >>> 31)
  w[24] = x
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + x + 1859775393) | 0
  c = (c << 30) | (c >>> 2)
  x = w[22] ^ w[17] ^ w[11] ^ w[9]
  x = (x << 1) | (x >>> 31)
  w[25] = x
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + x + 1859775393) | 0
  b = (b << 30) | (b >>> 2)
  x = w[23] ^ w[18] ^ w[12] ^ w[10]
  x = (x << 1) | (x >>> 31)
  w[26] = x
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + x + 1859775393) | 0
  a = (a << 30) | (a >>> 2)
  x = w[24] ^ w[19] ^ w[13] ^ w[11]
  x = (x << 1) | (x >>> 31)
  w[27] = x
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + x + 1859775393) | 0
  e = (e << 30) | (e >>> 2)
  x = w[25] ^ w[20] ^ w[14] ^ w[12]
  x = (x << 1) | (x >>> 31)
  w[28] = x
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + x + 1859775393) | 0
  d = (d << 30) | (d >>> 2)
  x = w[26] ^ w[21] ^ w[15] ^ w[13]
  x = (x << 1) | (x >>> 31)
  w[29] = x
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + x + 1859775393) | 0
  c = (c << 30) | (c >>> 2)
  x = w[27] ^ w[22] ^ w[16] ^ w[14]
  x = (x << 1) | (x >>> 31)
  w[30] = x
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + x + 1859775393) | 0
  b = (b << 30) | (b >>> 2)
  x = w[28] ^ w[23] ^ w[17] ^ w[15]
  x = (x << 1) | (x >>> 31)
  w[31] = x
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + x + 1859775393) | 0
  a = (a << 30) | (a >>> 2)
  x = w[29] ^ w[24] ^ w[18] ^ w[16]
  x = (x << 1) | (x >>> 31)
  w[32] = x
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + x + 1859775393) | 0
  e = (e << 30) | (e >>> 2)
  x = w[30] ^ w[25] ^ w[19] ^ w[17]
  x = (x << 1) | (x >>> 31)
  w[33] = x
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + x + 1859775393) | 0
  d = (d << 30) | (d >>> 2)
  x = w[31] ^ w[26] ^ w[20] ^ w[18]
  x = (x << 1) | (x >>> 31)
  w[34] = x
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + x + 1859775393) | 0
  c = (c << 30) | (c >>> 2)
  x = w[32] ^ w[27] ^ w[21] ^ w[19]
  x = (x << 1) | (x >>> 31)
  w[35] = x
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + x + 1859775393) | 0
  b = (b << 30) | (b >>> 2)
  x = w[33] ^ w[28] ^ w[22] ^ w[20]
  x = (x << 1) | (x >>> 31)
  w[36] = x
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + x + 1859775393) | 0
  a = (a << 30) | (a >>> 2)
  x = w[34] ^ w[29] ^ w[23] ^ w[21]
  x = (x << 1) | (x >>> 31)
  w[37] = x
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + x + 1859775393) | 0
  e = (e << 30) | (e >>> 2)
  x = w[35] ^ w[30] ^ w[24] ^ w[22]
  x = (x << 1) | (x >>> 31)
  w[38] = x
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + x + 1859775393) | 0
  d = (d << 30) | (d >>> 2)
  x = w[36] ^ w[31] ^ w[25] ^ w[23]
  x = (x << 1) | (x >>> 31)
  w[39] = x
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + x + 1859775393) | 0
  c = (c << 30) | (c >>> 2)

  // t = 40..59: f = Maj(b, c, d), K = 0x8f1bbcdc
  x = w[37] ^ w[32] ^ w[26] ^ w[24]
  x = (x << 1) | (x >>> 31)
  w[40] = x
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (d & (b | c))) + e + x - 1894007588) | 0
  b = (b << 30) | (b >>> 2)
  x = w[38] ^ w[33] ^ w[27] ^ w[25]
  x = (x << 1) | (x >>> 31)
  w[41] = x
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (c & (a | b))) + d + x - 1894007588) | 0
  a = (a << 30) | (a >>> 2)
  x = w[39] ^ w[34] ^ w[28] ^ w[26]
  x = (x << 1) | (x >>> 31)
  w[42] = x
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (b & (e | a))) + c + x - 1894007588) | 0
  e = (e << 30) | (e >>> 2)
  x = w[40] ^ w[35] ^ w[29] ^ w[27]
  x = (x << 1) | (x >>> 31)
  w[43] = x
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (a & (d | e))) + b + x - 1894007588) | 0
  d = (d << 30) | (d >>> 2)
  x = w[41] ^ w[36] ^ w[30] ^ w[28]
  x = (x << 1) | (x >>> 31)
  w[44] = x
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (e & (c | d))) + a + x - 1894007588) | 0
  c = (c << 30) | (c >>> 2)
  x = w[42] ^ w[37] ^ w[31] ^ w[29]
  x = (x << 1) | (x >>> 31)
  w[45] = x
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (d & (b | c))) + e + x - 1894007588) | 0
  b = (b << 30) | (b >>> 2)
  x = w[43] ^ w[38] ^ w[32] ^ w[30]
  x = (x << 1) | (x >>> 31)
  w[46] = x
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (c & (a | b))) + d + x - 1894007588) | 0
  a = (a << 30) | (a >>> 2)
  x = w[44] ^ w[39] ^ w[33] ^ w[31]
  x = (x << 1) | (x >>> 31)
  w[47] = x
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (b & (e | a))) + c + x - 1894007588) | 0
  e = (e << 30) | (e >>> 2)
  x = w[45] ^ w[40] ^ w[34] ^ w[32]
  x = (x << 1) | (x >>> 31)
  w[48] = x
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (a & (d | e))) + b + x - 1894007588) | 0
  d = (d << 30) | (d >>> 2)
  x = w[46] ^ w[41] ^ w[35] ^ w[33]
  x = (x << 1) | (x >>> 31)
  w[49] = x
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (e & (c | d))) + a + x - 1894007588) | 0
  c = (c << 30) | (c >>> 2)
  x = w[47] ^ w[42] ^ w[36] ^ w[34]
  x = (x << 1) | (x >>> 31)
  w[50] = x
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (d & (b | c))) + e + x - 1894007588) | 0
  b = (b << 30) | (b >>> 2)
  x = w[48] ^ w[43] ^ w[37] ^ w[35]
  x = (x << 1) | (x >>> 31)
  w[51] = x
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (c & (a | b))) + d + x - 1894007588) | 0
  a = (a << 30) | (a >>> 2)
  x = w[49] ^ w[44] ^ w[38] ^ w[36]
  x = (x << 1) | (x >>> 31)
  w[52] = x
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (b & (e | a))) + c + x - 1894007588) | 0
  e = (e << 30) | (e >>> 2)
  x = w[50] ^ w[45] ^ w[39] ^ w[37]
  x = (x << 1) | (x >>> 31)
  w[53] = x
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (a & (d | e))) + b + x - 1894007588) | 0
  d = (d << 30) | (d >>> 2)
  x = w[51] ^ w[46] ^ w[40] ^ w[38]
  x = (x << 1) | (x >>> 31)
  w[54] = x
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (e & (c | d))) + a + x - 1894007588) | 0
  c = (c << 30) | (c >>> 2)
  x = w[52] ^ w[47] ^ w[41] ^ w[39]
  x = (x << 1) | (x >>> 31)
  w[55] = x
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (d & (b | c))) + e + x - 1894007588) | 0
  b = (b << 30) | (b >>> 2)
  x = w[53] ^ w[48] ^ w[42] ^ w[40]
  x = (x << 1) | (x >>> 31)
  w[56] = x
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (c & (a | b))) + d + x - 1894007588) | 0
  a = (a << 30) | (a >>> 2)
  x = w[54] ^ w[49] ^ w[43] ^ w[41]
  x = (x << 1) | (x >>> 31)
  w[57] = x
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (b & (e | a))) + c + x - 1894007588) | 0
  e = (e << 30) | (e >>> 2)
  x = w[55] ^ w[50] ^ w[44] ^ w[42]
  x = (x << 1) | (x >>> 31)
  w[58] = x
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (a & (d | e))) + b + x - 1894007588) | 0
  d = (d << 30) | (d >>> 2)
  x = w[56] ^ w[51] ^ w[45] ^ w[43]
  x = (x << 1) | (x >>> 31)
  w[59] = x
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (e & (c | d))) + a + x - 1894007588) | 0
  c = (c << 30) | (c >>> 2)

  // t = 60..79: f = Parity(b, c, d), K = 0xca62c1d6
  x = w[57] ^ w[52] ^ w[46] ^ w[44]
  x = (x << 1) | (x >>> 31)
  w[60] = x
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + x - 899497514) | 0
  b = (b << 30) | (b >>> 2)
  x = w[58] ^ w[53] ^ w[47] ^ w[45]
  x = (x << 1) | (x >>> 31)
  w[61] = x
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + x - 899497514) | 0
  a = (a << 30) | (a >>> 2)
  x = w[59] ^ w[54] ^ w[48] ^ w[46]
  x = (x << 1) | (x >>> 31)
  w[62] = x
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + x - 899497514) | 0
  e = (e << 30) | (e >>> 2)
  x = w[60] ^ w[55] ^ w[49] ^ w[47]
  x = (x << 1) | (x >>> 31)
  w[63] = x
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + x - 899497514) | 0
  d = (d << 30) | (d >>> 2)
  x = w[61] ^ w[56] ^ w[50] ^ w[48]
  x = (x << 1) | (x >>> 31)
  w[64] = x
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + x - 899497514) | 0
  c = (c << 30) | (c >>> 2)
  x = w[62] ^ w[57] ^ w[51] ^ w[49]
  x = (x << 1) | (x >>> 31)
  w[65] = x
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + x - 899497514) | 0
  b = (b << 30) | (b >>> 2)
  x = w[63] ^ w[58] ^ w[52] ^ w[50]
  x = (x << 1) | (x >>> 31)
  w[66] = x
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + x - 899497514) | 0
  a = (a << 30) | (a >>> 2)
  x = w[64] ^ w[59] ^ w[53] ^ w[51]
  x = (x << 1) | (x >>> 31)
  w[67] = x
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + x - 899497514) | 0
  e = (e << 30) | (e >>> 2)
  x = w[65] ^ w[60] ^ w[54] ^ w[52]
  x = (x << 1) | (x >>> 31)
  w[68] = x
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + x - 899497514) | 0
  d = (d << 30) | (d >>> 2)
  x = w[66] ^ w[61] ^ w[55] ^ w[53]
  x = (x << 1) | (x >>> 31)
  w[69] = x
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + x - 899497514) | 0
  c = (c << 30) | (c >>> 2)
  x = w[67] ^ w[62] ^ w[56] ^ w[54]
  x = (x << 1) | (x >>> 31)
  w[70] = x
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + x - 899497514) | 0
  b = (b << 30) | (b >>> 2)
  x = w[68] ^ w[63] ^ w[57] ^ w[55]
  x = (x << 1) | (x >>> 31)
  w[71] = x
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + x - 899497514) | 0
  a = (a << 30) | (a >>> 2)
  x = w[69] ^ w[64] ^ w[58] ^ w[56]
  x = (x << 1) | (x >>> 31)
  w[72] = x
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + x - 899497514) | 0
  e = (e << 30) | (e >>> 2)
  x = w[70] ^ w[65] ^ w[59] ^ w[57]
  x = (x << 1) | (x >>> 31)
  w[73] = x
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + x - 899497514) | 0
  d = (d << 30) | (d >>> 2)
  x = w[71] ^ w[66] ^ w[60] ^ w[58]
  x = (x << 1) | (x >>> 31)
  w[74] = x
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + x - 899497514) | 0
  c = (c << 30) | (c >>> 2)
  x = w[72] ^ w[67] ^ w[61] ^ w[59]
  x = (x << 1) | (x >>> 31)
  w[75] = x
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + x - 899497514) | 0
  b = (b << 30) | (b >>> 2)
  x = w[73] ^ w[68] ^ w[62] ^ w[60]
  x = (x << 1) | (x >>> 31)
  w[76] = x
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + x - 899497514) | 0
  a = (a << 30) | (a >>> 2)
  x = w[74] ^ w[69] ^ w[63] ^ w[61]
  x = (x << 1) | (x >>> 31)
  w[77] = x
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + x - 899497514) | 0
  e = (e << 30) | (e >>> 2)
  x = w[75] ^ w[70] ^ w[64] ^ w[62]
  x = (x << 1) | (x >>> 31)
  w[78] = x
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + x - 899497514) | 0
  d = (d << 30) | (d >>> 2)
  x = w[76] ^ w[71] ^ w[65] ^ w[63]
  x = (x << 1) | (x >>> 31)
  w[79] = x
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + x - 899497514) | 0
  c = (c << 30) | (c >>> 2)
  h[0] = (h[0] + a) | 0
  h[1] = (h[1] + b) | 0
  h[2] = (h[2] + c) | 0
  h[3] = (h[3] + d) | 0
  h[4] = (h[4] + e) | 0
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

/** Sets `H` to the SHA-1 initial hash value H(0) (FIPS 180-4 §5.3.1). */
const init = (h: Int32Array): void => {
  h[0] = 0x67452301
  h[1] = -271733879 // 0xefcdab89
  h[2] = -1732584194 // 0x98badcfe
  h[3] = 0x10325476
  h[4] = -1009589776 // 0xc3d2e1f0
}

/** Writes the five words of `h` big-endian at `out[o]`. */
const store = (h: Int32Array, out: Uint8Array, o: number): void => {
  for (let i = 0; i < 5; i++, o += 4) {
    const x = h[i]
    out[o] = x >>> 24
    out[o + 1] = x >>> 16
    out[o + 2] = x >>> 8
    out[o + 3] = x
  }
}

/**
 * SHA-1 of `data` (FIPS 180-4 §6.1), 20 bytes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const sha1 = (data: Uint8Array): Uint8Array => {
  init(H)
  absorb(data, 0, data.length, 0, -1)
  const out = new Uint8Array(20)
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
  const h = new Int32Array(5)
  init(h)
  compress(h, w)
  return h
}

/**
 * Precomputes an HMAC-SHA1 key (RFC 2104): keys longer than the 64-byte block are hashed first, then the states
 * after `K XOR ipad` and `K XOR opad` are kept for `hmacSha1Into` and `hmacSha1Verify`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hmacSha1Key = (key: Uint8Array): HmacSha1Key => {
  const k = key.length > 64 ? sha1(key) : key
  return { inner: padState(k, 0x36363636), outer: padState(k, 0x5c5c5c5c) }
}

/**
 * Computes the HMAC of `data[start, end)` and leaves it in `H`. A range outside `data` is a bug in the caller (a
 * decoder computes it from lengths it has already checked), so it throws instead of hashing phantom zero bytes.
 */
const mac = (key: HmacSha1Key, data: Uint8Array, start: number, end: number, override: number): void => {
  if (!(start >= 0 && start <= end && end <= data.length)) {
    throw new RangeError(`HmacSha1: range [${start}, ${end}) outside data of length ${data.length}`)
  }
  const h = H
  const w = W
  const inner = key.inner
  h[0] = inner[0]
  h[1] = inner[1]
  h[2] = inner[2]
  h[3] = inner[3]
  h[4] = inner[4]
  absorb(data, start, end, 64, override)
  w[0] = h[0]
  w[1] = h[1]
  w[2] = h[2]
  w[3] = h[3]
  w[4] = h[4]
  w[5] = -2147483648 // 0x80 then zeros
  for (let i = 6; i < 15; i++) w[i] = 0
  w[15] = (64 + 20) << 3
  const outer = key.outer
  h[0] = outer[0]
  h[1] = outer[1]
  h[2] = outer[2]
  h[3] = outer[3]
  h[4] = outer[4]
  compress(h, w)
}

/**
 * Writes HMAC-SHA1(`key`, `data[start, end)`) as 20 bytes at `out[outOffset]`, allocating nothing. With
 * `lengthOverride >= 0`, the bytes at `data[start + 2]` and `data[start + 3]` are hashed as if they held the
 * big-endian 16-bit value `lengthOverride & 0xffff` (the adjusted STUN message length of RFC 8489 §14.5); `data` is
 * not modified. Throws a `RangeError` when `[start, end)` is not within `data` or `out` has no room for 20 bytes.
 *
 * @since 0.1.0
 * @category combinators
 */
export const hmacSha1Into = (
  key: HmacSha1Key,
  data: Uint8Array,
  start: number,
  end: number,
  lengthOverride: number,
  out: Uint8Array,
  outOffset: number
): void => {
  if (!(outOffset >= 0 && outOffset + 20 <= out.length)) {
    throw new RangeError(`hmacSha1Into: no room for 20 bytes at offset ${outOffset} of ${out.length}`)
  }
  mac(key, data, start, end, lengthOverride)
  store(H, out, outOffset)
}

/**
 * Checks that `expected[expectedOffset, expectedOffset + 20)` is HMAC-SHA1(`key`, `data[start, end)`), with
 * `lengthOverride` as in `hmacSha1Into`. All 20 bytes are compared without an early exit, so the time taken does
 * not depend on where a forged MAC first differs. Allocates nothing. Returns `false` when `expected` is too short;
 * throws a `RangeError` when `[start, end)` is not within `data`.
 *
 * @since 0.1.0
 * @category guards
 */
export const hmacSha1Verify = (
  key: HmacSha1Key,
  data: Uint8Array,
  start: number,
  end: number,
  lengthOverride: number,
  expected: Uint8Array,
  expectedOffset: number
): boolean => {
  if (expectedOffset < 0 || expectedOffset + 20 > expected.length) return false
  mac(key, data, start, end, lengthOverride)
  const h = H
  let diff = 0
  for (let i = 0, o = expectedOffset; i < 5; i++, o += 4) {
    const x = h[i]
    diff |= ((x >>> 24) ^ expected[o]) | (((x >>> 16) & 0xff) ^ expected[o + 1]) |
      (((x >>> 8) & 0xff) ^ expected[o + 2]) | ((x & 0xff) ^ expected[o + 3])
  }
  return diff === 0
}
