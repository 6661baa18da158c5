/**
 * What SHA-1 and SHA-256 share: reading a 64-byte block as sixteen big-endian 32-bit words.
 *
 * @internal
 */

/**
 * Loads the 64-byte block at `data[p]` into `w[0..15]` as big-endian words (unrolled: constant
 * offsets).
 *
 * @internal
 */
export const load = (w: Int32Array, data: Uint8Array, p: number): void => {
  w[0] = (data[p] << 24) | (data[p + 1] << 16) | (data[p + 2] << 8) | data[p + 3]
  w[1] = (data[p + 4] << 24) | (data[p + 5] << 16) | (data[p + 6] << 8) | data[p + 7]
  w[2] = (data[p + 8] << 24) | (data[p + 9] << 16) | (data[p + 10] << 8) | data[p + 11]
  w[3] = (data[p + 12] << 24) | (data[p + 13] << 16) | (data[p + 14] << 8) | data[p + 15]
  w[4] = (data[p + 16] << 24) | (data[p + 17] << 16) | (data[p + 18] << 8) | data[p + 19]
  w[5] = (data[p + 20] << 24) | (data[p + 21] << 16) | (data[p + 22] << 8) | data[p + 23]
  w[6] = (data[p + 24] << 24) | (data[p + 25] << 16) | (data[p + 26] << 8) | data[p + 27]
  w[7] = (data[p + 28] << 24) | (data[p + 29] << 16) | (data[p + 30] << 8) | data[p + 31]
  w[8] = (data[p + 32] << 24) | (data[p + 33] << 16) | (data[p + 34] << 8) | data[p + 35]
  w[9] = (data[p + 36] << 24) | (data[p + 37] << 16) | (data[p + 38] << 8) | data[p + 39]
  w[10] = (data[p + 40] << 24) | (data[p + 41] << 16) | (data[p + 42] << 8) | data[p + 43]
  w[11] = (data[p + 44] << 24) | (data[p + 45] << 16) | (data[p + 46] << 8) | data[p + 47]
  w[12] = (data[p + 48] << 24) | (data[p + 49] << 16) | (data[p + 50] << 8) | data[p + 51]
  w[13] = (data[p + 52] << 24) | (data[p + 53] << 16) | (data[p + 54] << 8) | data[p + 55]
  w[14] = (data[p + 56] << 24) | (data[p + 57] << 16) | (data[p + 58] << 8) | data[p + 59]
  w[15] = (data[p + 60] << 24) | (data[p + 61] << 16) | (data[p + 62] << 8) | data[p + 63]
}
