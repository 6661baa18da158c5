/**
 * Tests of the pure-JavaScript hash primitives (`src/internal/sha1.ts`, `sha256.ts`, `md5.ts`, `crc32.ts`):
 * published vectors (FIPS 180-2 examples, RFC 1321, RFC 2202, RFC 4231, RFC 5769 §2.1), every length across the
 * block and padding boundaries, and fast-check properties against `node:crypto` / `node:zlib`, including the
 * `lengthOverride` used by STUN MESSAGE-INTEGRITY and the constant-time verifiers.
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { createHash, createHmac } from "node:crypto"
import * as zlib from "node:zlib"
import { crc32 } from "../../src/internal/crc32.js"
import { md5 } from "../../src/internal/md5.js"
import { hmacSha1Into, hmacSha1Key, hmacSha1Verify, sha1 } from "../../src/internal/sha1.js"
import { hmacSha256Into, hmacSha256Key, hmacSha256Verify, sha256 } from "../../src/internal/sha256.js"

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")
const fromHex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"))
const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "latin1"))
const fill = (n: number, byte: number): Uint8Array => new Uint8Array(n).fill(byte)
const pattern = (n: number, seed = 0): Uint8Array => {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 167 + seed * 29 + 13) & 0xff
  return b
}

const nodeHash = (alg: "sha1" | "sha256" | "md5", data: Uint8Array): string =>
  createHash(alg).update(data).digest("hex")
const nodeHmac = (alg: "sha1" | "sha256", key: Uint8Array, data: Uint8Array): string =>
  createHmac(alg, key).update(data).digest("hex")

const ourHmacSha1 = (key: Uint8Array, data: Uint8Array): string => {
  const out = new Uint8Array(20)
  hmacSha1Into(hmacSha1Key(key), data, 0, data.length, -1, out, 0)
  return hex(out)
}
const ourHmacSha256 = (key: Uint8Array, data: Uint8Array): string => {
  const out = new Uint8Array(32)
  hmacSha256Into(hmacSha256Key(key), data, 0, data.length, -1, out, 0)
  return hex(out)
}

/** What `lengthOverride` must be equivalent to: a copy of the range with bytes 2..3 patched (where present). */
const patched = (data: Uint8Array, start: number, end: number, lengthOverride: number): Uint8Array => {
  const copy = data.slice(start, end)
  if (lengthOverride >= 0) {
    copy[2] = lengthOverride >>> 8 // writes past the end of a typed array are ignored
    copy[3] = lengthOverride & 0xff
  }
  return copy
}

/** Bitwise CRC-32 (reflected 0xEDB88320), the definition the table-driven version must agree with. */
const referenceCrc32 = (data: Uint8Array): number => {
  let c = 0xffffffff
  for (const byte of data) {
    c ^= byte
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1
  }
  return (c ^ 0xffffffff) >>> 0
}
const zlibCrc32 = (zlib as unknown as { readonly crc32?: (data: Uint8Array) => number }).crc32

/** Lengths around every padding and block boundary, for one and two blocks. */
const boundaryLengths = [0, 1, 2, 3, 4, 5, 54, 55, 56, 57, 63, 64, 65, 118, 119, 120, 121, 127, 128, 129, 191, 192, 193]

/** An array and a sub-range [start, end) of it. */
const arbitraryRange = FastCheck.uint8Array({ maxLength: 300 }).chain((data) =>
  FastCheck.tuple(FastCheck.nat(data.length), FastCheck.nat(data.length)).map(([i, j]) => ({
    data,
    start: Math.min(i, j),
    end: Math.max(i, j)
  }))
)
const arbitraryKey = FastCheck.uint8Array({ maxLength: 150 })
const arbitraryOverride = FastCheck.oneof(FastCheck.constant(-1), FastCheck.integer({ min: 0, max: 0xffff }))

/** RFC 5769 §2.1 sample request: short-term credential MESSAGE-INTEGRITY at offset 76, FINGERPRINT at 100. */
const rfc5769Request = fromHex(`
  00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
  00 24 00 04 6e 00 01 ff
  80 29 00 08 93 2f f9 b1 51 26 3b 36
  00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
  00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
  80 28 00 04 e5 7a 3b cf`)

describe("sha1", () => {
  it("matches the FIPS 180-2 examples", () => {
    assert.strictEqual(hex(sha1(new Uint8Array(0))), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    assert.strictEqual(hex(sha1(ascii("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d")
    assert.strictEqual(
      hex(sha1(ascii("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
      "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    )
    assert.strictEqual(hex(sha1(fill(1_000_000, 0x61))), "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
  })

  it("matches node:crypto at every boundary length", () => {
    for (const n of boundaryLengths) {
      assert.strictEqual(hex(sha1(pattern(n, n))), nodeHash("sha1", pattern(n, n)), `n=${n}`)
    }
  })

  it.prop("matches node:crypto on any input", [FastCheck.uint8Array({ maxLength: 400 })], ([data]) => {
    assert.strictEqual(hex(sha1(data)), nodeHash("sha1", data))
  })
})

describe("hmacSha1", () => {
  it("matches the RFC 2202 test cases", () => {
    const cases: ReadonlyArray<readonly [Uint8Array, Uint8Array, string]> = [
      [fill(20, 0x0b), ascii("Hi There"), "b617318655057264e28bc0b6fb378c8ef146be00"],
      [ascii("Jefe"), ascii("what do ya want for nothing?"), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"],
      [fill(20, 0xaa), fill(50, 0xdd), "125d7342b9ac11cd91a39af48aa17b4f63f175d3"],
      [
        fromHex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
        fill(50, 0xcd),
        "4c9007f4026250c6bc8414f9bf50c86c2d7235da"
      ],
      [fill(20, 0x0c), ascii("Test With Truncation"), "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"],
      [
        fill(80, 0xaa),
        ascii("Test Using Larger Than Block-Size Key - Hash Key First"),
        "aa4ae5e15272d00e95705637ce8a3b55ed402112"
      ],
      [
        fill(80, 0xaa),
        ascii("Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"),
        "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"
      ]
    ]
    for (const [key, data, expected] of cases) {
      assert.strictEqual(ourHmacSha1(key, data), expected)
      assert.strictEqual(nodeHmac("sha1", key, data), expected)
    }
  })

  it("matches node:crypto for keys shorter than, equal to and longer than the block", () => {
    for (const k of [0, 1, 20, 63, 64, 65, 100, 200]) {
      for (const n of boundaryLengths) {
        const key = pattern(k, 7)
        const data = pattern(n, 3)
        assert.strictEqual(ourHmacSha1(key, data), nodeHmac("sha1", key, data), `key=${k} n=${n}`)
      }
    }
  })

  it("keeps the states after the ipad and opad blocks", () => {
    const key = hmacSha1Key(ascii("Jefe"))
    assert.strictEqual(key.inner.length, 5)
    assert.strictEqual(key.outer.length, 5)
    assert.notDeepEqual(Array.from(key.inner), Array.from(key.outer))
  })

  it("verifies the RFC 5769 §2.1 sample request with the adjusted length, without touching the datagram", () => {
    const datagram = rfc5769Request.slice()
    const key = hmacSha1Key(ascii("VOkJxbRl1RmTxUk/WvJxBt"))
    // MESSAGE-INTEGRITY starts at 76; the length covers the header through the end of its 20-byte value.
    assert.isTrue(hmacSha1Verify(key, datagram, 0, 76, 76 + 24 - 20, datagram, 80))
    const out = new Uint8Array(20)
    hmacSha1Into(key, datagram, 0, 76, 80, out, 0)
    assert.strictEqual(hex(out), "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2")
    assert.deepStrictEqual(datagram, rfc5769Request)
    // The unadjusted length (0x58, which also covers FINGERPRINT) gives another MAC.
    assert.isFalse(hmacSha1Verify(key, datagram, 0, 76, -1, datagram, 80))
    assert.isFalse(hmacSha1Verify(key, datagram, 0, 76, 0x58, datagram, 80))
  })

  it("writes exactly 20 bytes at the offset", () => {
    const key = hmacSha1Key(pattern(16))
    const data = pattern(100)
    const out = fill(30, 0xee)
    hmacSha1Into(key, data, 0, 100, -1, out, 5)
    assert.strictEqual(hex(out.subarray(5, 25)), nodeHmac("sha1", pattern(16), data))
    assert.deepStrictEqual(Array.from(out.subarray(0, 5)), [0xee, 0xee, 0xee, 0xee, 0xee])
    assert.deepStrictEqual(Array.from(out.subarray(25)), [0xee, 0xee, 0xee, 0xee, 0xee])
  })

  it.prop(
    "matches node:crypto over any range, key and length override",
    [arbitraryKey, arbitraryRange, arbitraryOverride],
    ([keyBytes, { data, end, start }, lengthOverride]) => {
      const before = data.slice()
      const key = hmacSha1Key(keyBytes)
      const out = new Uint8Array(20)
      hmacSha1Into(key, data, start, end, lengthOverride, out, 0)
      assert.strictEqual(hex(out), nodeHmac("sha1", keyBytes, patched(data, start, end, lengthOverride)))
      assert.deepStrictEqual(data, before)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "verify accepts the right MAC and rejects every single flipped bit",
    [arbitraryKey, arbitraryRange, arbitraryOverride, FastCheck.nat(16)],
    ([keyBytes, { data, end, start }, lengthOverride, offset]) => {
      const key = hmacSha1Key(keyBytes)
      const expected = fill(offset + 20 + 3, 0x5a)
      expected.set(fromHex(nodeHmac("sha1", keyBytes, patched(data, start, end, lengthOverride))), offset)
      assert.isTrue(hmacSha1Verify(key, data, start, end, lengthOverride, expected, offset))
      for (let bit = 0; bit < 160; bit++) {
        expected[offset + (bit >>> 3)] ^= 1 << (bit & 7)
        assert.isFalse(hmacSha1Verify(key, data, start, end, lengthOverride, expected, offset), `bit ${bit}`)
        expected[offset + (bit >>> 3)] ^= 1 << (bit & 7)
      }
      assert.isTrue(hmacSha1Verify(key, data, start, end, lengthOverride, expected, offset))
    },
    { fastCheck: { numRuns: 50 } }
  )

  it("verify rejects an expected buffer too short for the MAC", () => {
    const key = hmacSha1Key(pattern(16))
    const data = pattern(60)
    const mac = fromHex(nodeHmac("sha1", pattern(16), data))
    assert.isTrue(hmacSha1Verify(key, data, 0, 60, -1, mac, 0))
    assert.isFalse(hmacSha1Verify(key, data, 0, 60, -1, mac.subarray(0, 19), 0))
    assert.isFalse(hmacSha1Verify(key, data, 0, 60, -1, mac, 1))
    assert.isFalse(hmacSha1Verify(key, data, 0, 60, -1, mac, -1))
  })

  it("throws a RangeError for a range outside the data or an output without room", () => {
    const key = hmacSha1Key(pattern(16))
    const data = pattern(60)
    const out = new Uint8Array(20)
    assert.throws(() => hmacSha1Into(key, data, 0, 61, -1, out, 0), RangeError)
    assert.throws(() => hmacSha1Into(key, data, -1, 10, -1, out, 0), RangeError)
    assert.throws(() => hmacSha1Into(key, data, 10, 9, -1, out, 0), RangeError)
    assert.throws(() => hmacSha1Into(key, data, 0, 60, -1, out, 1), RangeError)
    assert.throws(() => hmacSha1Verify(key, data, 0, 61, -1, out, 0), RangeError)
    hmacSha1Into(key, data, 60, 60, -1, out, 0)
    assert.strictEqual(hex(out), nodeHmac("sha1", pattern(16), new Uint8Array(0)))
  })
})

describe("sha256", () => {
  it("matches the FIPS 180-2 examples", () => {
    assert.strictEqual(
      hex(sha256(new Uint8Array(0))),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert.strictEqual(
      hex(sha256(ascii("abc"))),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert.strictEqual(
      hex(sha256(ascii("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    )
    assert.strictEqual(
      hex(sha256(fill(1_000_000, 0x61))),
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    )
  })

  it("matches node:crypto at every boundary length", () => {
    for (const n of boundaryLengths) {
      assert.strictEqual(hex(sha256(pattern(n, n))), nodeHash("sha256", pattern(n, n)), `n=${n}`)
    }
  })

  it.prop("matches node:crypto on any input", [FastCheck.uint8Array({ maxLength: 400 })], ([data]) => {
    assert.strictEqual(hex(sha256(data)), nodeHash("sha256", data))
  })
})

describe("hmacSha256", () => {
  it("matches the RFC 4231 test cases", () => {
    const longKeyData = "This is a test using a larger than block-size key and a larger than block-size data. " +
      "The key needs to be hashed before being used by the HMAC algorithm."
    const cases: ReadonlyArray<readonly [Uint8Array, Uint8Array, string]> = [
      [fill(20, 0x0b), ascii("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"],
      [
        ascii("Jefe"),
        ascii("what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
      ],
      [fill(20, 0xaa), fill(50, 0xdd), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"],
      [
        fromHex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
        fill(50, 0xcd),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
      ],
      [
        fill(131, 0xaa),
        ascii("Test Using Larger Than Block-Size Key - Hash Key First"),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
      ],
      [fill(131, 0xaa), ascii(longKeyData), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"]
    ]
    for (const [key, data, expected] of cases) {
      assert.strictEqual(ourHmacSha256(key, data), expected)
      assert.strictEqual(nodeHmac("sha256", key, data), expected)
    }
  })

  it("verifies the RFC 4231 test case 5 truncated to 128 bits", () => {
    const key = hmacSha256Key(fill(20, 0x0c))
    const data = ascii("Test With Truncation")
    const truncated = fromHex("a3b6167473100ee06e0c796c2955552b")
    assert.isTrue(hmacSha256Verify(key, data, 0, data.length, -1, truncated, 0, 16))
    truncated[15] ^= 1
    assert.isFalse(hmacSha256Verify(key, data, 0, data.length, -1, truncated, 0, 16))
  })

  it("matches node:crypto for keys shorter than, equal to and longer than the block", () => {
    for (const k of [0, 1, 32, 63, 64, 65, 131, 200]) {
      for (const n of boundaryLengths) {
        const key = pattern(k, 5)
        const data = pattern(n, 9)
        assert.strictEqual(ourHmacSha256(key, data), nodeHmac("sha256", key, data), `key=${k} n=${n}`)
      }
    }
  })

  it("keeps the states after the ipad and opad blocks", () => {
    const key = hmacSha256Key(ascii("Jefe"))
    assert.strictEqual(key.inner.length, 8)
    assert.strictEqual(key.outer.length, 8)
  })

  it("writes exactly 32 bytes at the offset", () => {
    const key = hmacSha256Key(pattern(16))
    const data = pattern(100)
    const out = fill(40, 0xee)
    hmacSha256Into(key, data, 0, 100, -1, out, 4)
    assert.strictEqual(hex(out.subarray(4, 36)), nodeHmac("sha256", pattern(16), data))
    assert.deepStrictEqual(Array.from(out.subarray(0, 4)), [0xee, 0xee, 0xee, 0xee])
    assert.deepStrictEqual(Array.from(out.subarray(36)), [0xee, 0xee, 0xee, 0xee])
  })

  it.prop(
    "matches node:crypto over any range, key and length override",
    [arbitraryKey, arbitraryRange, arbitraryOverride],
    ([keyBytes, { data, end, start }, lengthOverride]) => {
      const before = data.slice()
      const key = hmacSha256Key(keyBytes)
      const out = new Uint8Array(32)
      hmacSha256Into(key, data, start, end, lengthOverride, out, 0)
      assert.strictEqual(hex(out), nodeHmac("sha256", keyBytes, patched(data, start, end, lengthOverride)))
      assert.deepStrictEqual(data, before)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "verify compares exactly the first expectedLength bytes and rejects every single flipped bit among them",
    [arbitraryKey, arbitraryRange, arbitraryOverride, FastCheck.integer({ min: 16, max: 32 }), FastCheck.nat(16)],
    ([keyBytes, { data, end, start }, lengthOverride, length, offset]) => {
      const key = hmacSha256Key(keyBytes)
      const mac = fromHex(nodeHmac("sha256", keyBytes, patched(data, start, end, lengthOverride)))
      const expected = fill(offset + 32 + 3, 0x5a)
      expected.set(mac.subarray(0, length), offset)
      assert.isTrue(hmacSha256Verify(key, data, start, end, lengthOverride, expected, offset, length))
      for (let bit = 0; bit < length * 8; bit++) {
        expected[offset + (bit >>> 3)] ^= 1 << (bit & 7)
        assert.isFalse(hmacSha256Verify(key, data, start, end, lengthOverride, expected, offset, length), `bit ${bit}`)
        expected[offset + (bit >>> 3)] ^= 1 << (bit & 7)
      }
      // Bytes after the truncated MAC are not compared.
      expected[offset + length] ^= 0xff
      assert.isTrue(hmacSha256Verify(key, data, start, end, lengthOverride, expected, offset, length))
    },
    { fastCheck: { numRuns: 50 } }
  )

  it("verify refuses MACs shorter than 16 or longer than 32 bytes, and expected buffers that are too short", () => {
    const key = hmacSha256Key(pattern(16))
    const data = pattern(60)
    const mac = fromHex(nodeHmac("sha256", pattern(16), data))
    const padded = new Uint8Array(40)
    padded.set(mac)
    assert.isTrue(hmacSha256Verify(key, data, 0, 60, -1, mac, 0, 32))
    assert.isTrue(hmacSha256Verify(key, data, 0, 60, -1, mac, 0, 16))
    assert.isFalse(hmacSha256Verify(key, data, 0, 60, -1, mac, 0, 15))
    assert.isFalse(hmacSha256Verify(key, data, 0, 60, -1, mac, 0, 0))
    assert.isFalse(hmacSha256Verify(key, data, 0, 60, -1, padded, 0, 33))
    assert.isFalse(hmacSha256Verify(key, data, 0, 60, -1, mac.subarray(0, 20), 0, 24))
    assert.isFalse(hmacSha256Verify(key, data, 0, 60, -1, mac, 1, 32))
    assert.isFalse(hmacSha256Verify(key, data, 0, 60, -1, mac, -1, 16))
  })

  it("throws a RangeError for a range outside the data or an output without room", () => {
    const key = hmacSha256Key(pattern(16))
    const data = pattern(60)
    const out = new Uint8Array(32)
    assert.throws(() => hmacSha256Into(key, data, 0, 61, -1, out, 0), RangeError)
    assert.throws(() => hmacSha256Into(key, data, -1, 10, -1, out, 0), RangeError)
    assert.throws(() => hmacSha256Into(key, data, 10, 9, -1, out, 0), RangeError)
    assert.throws(() => hmacSha256Into(key, data, 0, 60, -1, out, 1), RangeError)
    assert.throws(() => hmacSha256Verify(key, data, 0, 61, -1, out, 0, 32), RangeError)
    hmacSha256Into(key, data, 60, 60, -1, out, 0)
    assert.strictEqual(hex(out), nodeHmac("sha256", pattern(16), new Uint8Array(0)))
  })
})

describe("md5", () => {
  it("matches the RFC 1321 test suite", () => {
    const suite: ReadonlyArray<readonly [string, string]> = [
      ["", "d41d8cd98f00b204e9800998ecf8427e"],
      ["a", "0cc175b9c0f1b6a831c399e269772661"],
      ["abc", "900150983cd24fb0d6963f7d28e17f72"],
      ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
      ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
      ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"],
      [
        "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
        "57edf4a22be3c955ac49da2e2107b67a"
      ]
    ]
    for (const [input, expected] of suite) assert.strictEqual(hex(md5(ascii(input))), expected, input)
  })

  it("matches node:crypto at every boundary length", () => {
    for (const n of boundaryLengths) {
      assert.strictEqual(hex(md5(pattern(n, n))), nodeHash("md5", pattern(n, n)), `n=${n}`)
    }
  })

  it.prop("matches node:crypto on any input", [FastCheck.uint8Array({ maxLength: 400 })], ([data]) => {
    assert.strictEqual(hex(md5(data)), nodeHash("md5", data))
  })
})

describe("crc32", () => {
  it("gives the CRC-32/ISO-HDLC check value", () => {
    assert.strictEqual(crc32(ascii("123456789"), 0, 9), 0xcbf43926)
    assert.strictEqual(crc32(new Uint8Array(0), 0, 0), 0)
    assert.strictEqual(crc32(fill(32, 0xff), 0, 32), 0xff6cab0b)
  })

  it("gives the RFC 5769 §2.1 FINGERPRINT once XORed with 0x5354554e", () => {
    assert.strictEqual((crc32(rfc5769Request, 0, 100) ^ 0x5354554e) >>> 0, 0xe57a3bcf)
  })

  it("matches the bitwise definition at every length up to 40 and every start within 8", () => {
    const data = pattern(48, 1)
    for (let start = 0; start < 8; start++) {
      for (let end = start; end <= 48; end++) {
        assert.strictEqual(crc32(data, start, end), referenceCrc32(data.subarray(start, end)), `${start}..${end}`)
      }
    }
  })

  it.prop(
    "matches the bitwise definition and zlib.crc32 over any range",
    [arbitraryRange],
    ([{ data, end, start }]) => {
      const ours = crc32(data, start, end)
      assert.isTrue(Number.isInteger(ours) && ours >= 0 && ours <= 0xffffffff)
      assert.strictEqual(ours, referenceCrc32(data.subarray(start, end)))
      if (zlibCrc32 !== undefined) assert.strictEqual(ours, zlibCrc32(data.subarray(start, end)))
    },
    { fastCheck: { numRuns: 300 } }
  )
})
