import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { createHash, createHmac } from "node:crypto"
import * as zlib from "node:zlib"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunIntegrity from "../src/StunIntegrity.js"
import * as StunMessage from "../src/StunMessage.js"
import * as Arb from "./arbitraries.js"
import {
  fromHex,
  rfc5769Samples,
  sampleIpv4Response,
  sampleIpv6Response,
  sampleLongTermRequest,
  sampleRequest
} from "./fixtures/rfc5769.js"

const decodeOk = (bytes: Uint8Array): StunMessage.DecodedStunMessage => {
  const result = StunMessage.decode(bytes)
  if (Either.isLeft(result)) throw new Error(`unexpected decode failure: ${result.left.message}`)
  return result.right
}
const decodeErr = (bytes: Uint8Array): StunMessage.StunDecodeError => {
  const result = StunMessage.decode(bytes)
  if (Either.isRight(result)) throw new Error("expected a decode failure")
  return result.left
}
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const shortKey = (password: string) => Either.getOrThrow(StunIntegrity.shortTermKey(password))
const rfcLongKey = Either.getOrThrow(
  StunIntegrity.longTermKey(sampleLongTermRequest.username, sampleLongTermRequest.realm, sampleLongTermRequest.password)
)
const keyFor = (sample: typeof rfc5769Samples[number]) =>
  sample === sampleLongTermRequest ? rfcLongKey : shortKey(sample.password)

/** The sample's attributes without the ones `encode` computes. */
const withoutProtection = (m: StunMessage.StunMessage) =>
  m.attributes.filter((a) => a._tag !== "MessageIntegrity" && a._tag !== "Fingerprint")

describe("RFC 5769 sample messages", () => {
  it("2.1 request decodes to the RFC's values", () => {
    const m = decodeOk(sampleRequest.bytes)
    assert.strictEqual(m.class, StunMessage.StunClass.Request)
    assert.strictEqual(m.method, StunMessage.StunMethod.Binding)
    assert.strictEqual(hex(m.transactionId), sampleRequest.transactionId)
    assert.deepStrictEqual(m.attributes.map((a) => a._tag), [
      "Software",
      "Priority",
      "IceControlled",
      "Username",
      "MessageIntegrity",
      "Fingerprint"
    ])
    assert.strictEqual(StunMessage.find(m, "Software")?.value, "STUN test client")
    assert.strictEqual(StunMessage.find(m, "Priority")?.value, 0x6e0001ff)
    assert.strictEqual(StunMessage.find(m, "IceControlled")?.tieBreaker, 0x932ff9b151263b36n)
    assert.strictEqual(StunMessage.find(m, "Username")?.value, "evtj:h6vY")
    assert.strictEqual(m.integrityOffset, sampleRequest.messageIntegrityOffset)
    assert.strictEqual(m.fingerprintOffset, sampleRequest.fingerprintOffset)
    assert.strictEqual(StunMessage.find(m, "Fingerprint")?.value, sampleRequest.fingerprint)
  })

  it("2.2 and 2.3 responses decode the mapped addresses", () => {
    const v4 = decodeOk(sampleIpv4Response.bytes)
    assert.strictEqual(v4.class, StunMessage.StunClass.SuccessResponse)
    assert.deepStrictEqual(StunMessage.find(v4, "XorMappedAddress")?.address, {
      family: "IPv4",
      ip: "192.0.2.1",
      port: 32853
    })
    assert.strictEqual(StunMessage.find(v4, "Software")?.value, "test vector")
    const v6 = decodeOk(sampleIpv6Response.bytes)
    assert.deepStrictEqual(StunMessage.find(v6, "XorMappedAddress")?.address, {
      family: "IPv6",
      ip: "2001:db8:1234:5678:11:2233:4455:6677",
      port: 32853
    })
  })

  it("2.4 long-term request decodes USERNAME, NONCE and REALM", () => {
    const m = decodeOk(sampleLongTermRequest.bytes)
    assert.strictEqual(StunMessage.find(m, "Username")?.value, "\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9")
    assert.strictEqual(StunMessage.find(m, "Nonce")?.value, "f//499k954d6OL34oL9FSTvy64sA")
    assert.strictEqual(StunMessage.find(m, "Realm")?.value, "example.org")
    assert.strictEqual(m.fingerprintOffset, -1)
    assert.strictEqual(m.integrityOffset, sampleLongTermRequest.messageIntegrityOffset)
  })

  it("the long-term key is MD5(username:realm:password) as the RFC says", () => {
    assert.strictEqual(hex(rfcLongKey.bytes), sampleLongTermRequest.key)
    // RFC 8489 prepares passwords with OpaqueString, which refuses the soft hyphen of the unprepared form.
    const refused = StunIntegrity.longTermKey(
      sampleLongTermRequest.username,
      sampleLongTermRequest.realm,
      sampleLongTermRequest.passwordUnprepared
    )
    assert.isTrue(Either.isLeft(refused))
    if (Either.isLeft(refused)) assert.strictEqual(refused.left.reason, "DisallowedCharacter")
  })

  for (const sample of rfc5769Samples) {
    it(`${sample.section}: MESSAGE-INTEGRITY and FINGERPRINT verify with the RFC's credentials`, () => {
      const m = decodeOk(sample.bytes)
      const key = keyFor(sample)
      assert.isTrue(StunIntegrity.verifyIntegritySha1(m, key))
      assert.isTrue(Either.isRight(StunIntegrity.verify(m, key)))
      assert.strictEqual(StunIntegrity.verifyFingerprint(m), sample.fingerprint !== undefined)
      // The wrong password fails, with the reason.
      const wrong = StunIntegrity.verify(m, shortKey("not the password"))
      assert.isTrue(Either.isLeft(wrong))
      if (Either.isLeft(wrong)) assert.strictEqual(wrong.left.reason, "IntegrityMismatch")
    })

    it(`${sample.section}: re-encodes byte-identical, from typed attributes and from decoded ones`, () => {
      const m = decodeOk(sample.bytes)
      const paddingByte = sample === sampleLongTermRequest ? 0 : 0x20
      const rebuilt = StunMessage.unsafeEncode(
        StunMessage.make(m.class, m.method, m.transactionId, withoutProtection(m)),
        { integrity: keyFor(sample), fingerprint: sample.fingerprint !== undefined, paddingByte }
      )
      assert.strictEqual(hex(rebuilt), sample.hex)
      assert.strictEqual(hex(StunMessage.unsafeEncode(m, { paddingByte })), sample.hex)
    })

    it(`${sample.section}: any single flipped bit is caught by decode or verification`, () => {
      const key = keyFor(sample)
      const fp = sample.fingerprintOffset ?? -1
      for (let i = 0; i < sample.bytes.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const copy = sample.bytes.slice()
          copy[i]! ^= 1 << bit
          const decoded = StunMessage.decode(copy)
          if (Either.isLeft(decoded)) continue
          const m = decoded.right
          if (fp >= 0 && (i === fp || i === fp + 1)) {
            // A flipped FINGERPRINT type makes an unknown attribute after MESSAGE-INTEGRITY, which RFC 8489
            // §14.5 says to ignore: the message is then one without FINGERPRINT, still intact under MI.
            assert.strictEqual(m.fingerprintOffset, -1)
            assert.isTrue(Either.isRight(StunIntegrity.verify(m, key)))
            continue
          }
          // Everything else is covered by MI (which hashes the padding bytes too) or by FINGERPRINT.
          assert.isTrue(Either.isLeft(StunIntegrity.verify(m, key)), `byte ${i} bit ${bit} went unnoticed`)
        }
      }
    })
  }
})

describe("header", () => {
  it("interleaves class and method bits as RFC 8489 Figure 3 shows", () => {
    const { Binding, Allocate, Send, Data, ChannelBind } = StunMessage.StunMethod
    const { ErrorResponse, Indication, Request, SuccessResponse } = StunMessage.StunClass
    assert.strictEqual(StunMessage.messageType(Request, Binding), 0x0001)
    assert.strictEqual(StunMessage.messageType(SuccessResponse, Binding), 0x0101)
    assert.strictEqual(StunMessage.messageType(ErrorResponse, Binding), 0x0111)
    assert.strictEqual(StunMessage.messageType(Indication, Binding), 0x0011)
    assert.strictEqual(StunMessage.messageType(Request, Allocate), 0x0003)
    assert.strictEqual(StunMessage.messageType(ErrorResponse, Allocate), 0x0113)
    assert.strictEqual(StunMessage.messageType(Indication, Send), 0x0016)
    assert.strictEqual(StunMessage.messageType(Indication, Data), 0x0017)
    assert.strictEqual(StunMessage.messageType(SuccessResponse, ChannelBind), 0x0109)
    assert.strictEqual(StunMessage.messageType(Request, 0xfff), 0x3eef)
  })

  it.prop("class and method survive the interleaving", {
    cls: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
    method: fc.integer({ min: 0, max: 0xfff })
  }, ({ cls, method }) => {
    const type = StunMessage.messageType(cls, method)
    assert.isTrue(type >= 0 && type <= 0x3fff)
    assert.strictEqual(StunMessage.classOf(type), cls)
    assert.strictEqual(StunMessage.methodOf(type), method)
  })

  const base = () => sampleIpv4Response.bytes.slice()

  it("refuses what RFC 8489 §6.3 says to refuse, saying what and where", () => {
    const cases: Array<[string, Uint8Array, StunMessage.StunDecodeErrorReason, number]> = [
      ["19 bytes", base().subarray(0, 19), "TooShort", 0],
      [
        "top bits set",
        (() => {
          const b = base()
          b[0] = 0x41
          return b
        })(),
        "NotStun",
        0
      ],
      [
        "wrong cookie",
        (() => {
          const b = base()
          b[6] = 0
          return b
        })(),
        "BadMagicCookie",
        4
      ],
      [
        "length not a multiple of 4",
        (() => {
          const b = base()
          b[3] = 0x3d
          return b
        })(),
        "BadLength",
        2
      ],
      [
        "length beyond the bytes",
        (() => {
          const b = base()
          b[3] = 0x40
          return b
        })(),
        "BadLength",
        2
      ],
      ["trailing bytes", new Uint8Array([...base(), 0, 0, 0, 0]), "BadLength", 2]
    ]
    for (const [name, bytes, reason, offset] of cases) {
      const error = decodeErr(bytes)
      assert.strictEqual(error.reason, reason, name)
      assert.strictEqual(error.offset, offset, name)
    }
  })

  it("isStun agrees with the header checks", () => {
    assert.isTrue(StunMessage.isStun(sampleRequest.bytes))
    assert.isFalse(StunMessage.isStun(sampleRequest.bytes.subarray(0, 100)))
    assert.isFalse(StunMessage.isStun(new Uint8Array([0x40, 0, 0, 4, 0, 0, 0, 0])))
  })
})

const build = (attributes: Array<[number, Uint8Array]>, type = 0x0001) => {
  const body: Array<number> = []
  for (const [t, v] of attributes) {
    body.push(t >> 8, t & 0xff, v.length >> 8, v.length & 0xff, ...v)
    while (body.length % 4 !== 0) body.push(0)
  }
  return new Uint8Array([
    type >> 8,
    type & 0xff,
    body.length >> 8,
    body.length & 0xff,
    0x21,
    0x12,
    0xa4,
    0x42,
    ...new Array(12).fill(7),
    ...body
  ])
}

describe("attributes", () => {
  it("lists unknown comprehension-required attributes, keeps unknown optional ones", () => {
    const m = decodeOk(build([[0x0030, new Uint8Array([1, 2, 3])], [0xc001, new Uint8Array([9])], [
      0x7f00,
      new Uint8Array(0)
    ]]))
    assert.deepStrictEqual(m.unknownComprehensionRequired, [0x0030, 0x7f00])
    assert.deepStrictEqual(m.attributes.map((a) => a._tag === "Unknown" ? a.type : -1), [0x0030, 0xc001, 0x7f00])
  })

  it("ignores attributes after MESSAGE-INTEGRITY except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT", () => {
    const m = decodeOk(build([
      [0x0006, new TextEncoder().encode("user")],
      [0x0008, new Uint8Array(20)],
      [0x8022, new TextEncoder().encode("after")],
      [0x0030, new Uint8Array(4)],
      [0x001c, new Uint8Array(32)],
      [0x0024, new Uint8Array(4)],
      [0x8028, new Uint8Array(4)]
    ]))
    assert.deepStrictEqual(m.attributes.map((a) => a._tag), [
      "Username",
      "MessageIntegrity",
      "MessageIntegritySha256",
      "Fingerprint"
    ])
    assert.deepStrictEqual(m.unknownComprehensionRequired, [])
    assert.strictEqual(m.integrityOffset, 28)
    assert.strictEqual(m.integritySha256Offset, 72)
  })

  it("refuses an attribute after FINGERPRINT", () => {
    const error = decodeErr(build([[0x8028, new Uint8Array(4)], [0x8022, new Uint8Array(4)]]))
    assert.strictEqual(error.reason, "FingerprintNotLast")
    assert.strictEqual(error.offset, 28)
    assert.strictEqual(error.attributeType, 0x8022)
  })

  it("refuses truncated attributes and bad values with the attribute's offset and type", () => {
    const truncated = build([[0x8022, new Uint8Array(8)]])
    truncated[23] = 12 // the SOFTWARE length now runs past the message
    const e1 = decodeErr(truncated)
    assert.strictEqual(e1.reason, "AttributeTruncated")
    assert.strictEqual(e1.offset, 20)
    const cases: Array<[number, Uint8Array]> = [
      [0x0020, new Uint8Array([0, 1, 0, 0, 1, 2, 3])], // IPv4 address of 7 bytes
      [0x0020, new Uint8Array([0, 3, 0, 0, 1, 2, 3, 4])], // family 3
      [0x0008, new Uint8Array(19)], // MESSAGE-INTEGRITY of 19 bytes
      [0x001c, new Uint8Array(12)], // MESSAGE-INTEGRITY-SHA256 of 12 bytes
      [0x0009, new Uint8Array([0, 0, 7, 0])], // ERROR-CODE class 7
      [0x0009, new Uint8Array([0, 0, 4, 100])], // ERROR-CODE number 100
      [0x0006, new Uint8Array([0xff, 0xfe])], // USERNAME not UTF-8
      [0x0006, new Uint8Array(514).fill(0x61)], // USERNAME longer than 513 bytes
      [0x8029, new Uint8Array(4)], // ICE-CONTROLLED of 4 bytes
      [0x000a, new Uint8Array(3)] // UNKNOWN-ATTRIBUTES of odd length
    ]
    for (const [type, value] of cases) {
      const error = decodeErr(build([[0x8022, new Uint8Array(4)], [type, value]]))
      assert.strictEqual(error.reason, "InvalidAttribute", `type 0x${type.toString(16)}`)
      assert.strictEqual(error.offset, 28)
      assert.strictEqual(error.attributeType, type)
    }
  })

  it("decodes ERROR-CODE, CHANGE-REQUEST, LIFETIME, CHANNEL-NUMBER and REQUESTED-TRANSPORT from wire bytes", () => {
    const m = decodeOk(build([
      [0x0009, new Uint8Array([0, 0, 4, 20, ...new TextEncoder().encode("Unknown Attribute")])],
      [0x0003, new Uint8Array([0, 0, 0, 6])],
      [0x000d, new Uint8Array([0, 0, 0x02, 0x58])],
      [0x000c, new Uint8Array([0x40, 0x01, 0, 0])],
      [0x0019, new Uint8Array([17, 0, 0, 0])]
    ], 0x0111))
    assert.strictEqual(m.class, StunMessage.StunClass.ErrorResponse)
    assert.deepStrictEqual(StunMessage.find(m, "ErrorCode"), {
      _tag: "ErrorCode",
      code: 420,
      reason: "Unknown Attribute"
    })
    assert.deepStrictEqual(StunMessage.find(m, "ChangeRequest"), {
      _tag: "ChangeRequest",
      changeIp: true,
      changePort: true
    })
    assert.strictEqual(StunMessage.find(m, "Lifetime")?.seconds, 600)
    assert.strictEqual(StunMessage.find(m, "ChannelNumber")?.channel, 0x4001)
    assert.strictEqual(StunMessage.find(m, "RequestedTransport")?.protocol, 17)
  })

  it("encodes an ERROR-CODE as class and number", () => {
    const bytes = StunMessage.unsafeEncode(
      StunMessage.make(3, 1, new Uint8Array(12), [StunAttribute.errorCode(438, "Stale Nonce")])
    )
    // type 0x0009, length 4 + 11, two zero bytes, class 4, number 38, then the reason phrase
    assert.strictEqual(hex(bytes.subarray(20, 28)), "0009000f00000426")
    assert.strictEqual(new TextDecoder().decode(bytes.subarray(28, 39)), "Stale Nonce")
  })

  it("refuses to encode invalid values with a typed error", () => {
    const bad: Array<StunAttribute.StunAttribute> = [
      StunAttribute.xorMappedAddress({ family: "IPv4", ip: "::1", port: 1 }),
      StunAttribute.xorMappedAddress({ family: "IPv4", ip: "1.2.3.4", port: 70000 }),
      StunAttribute.errorCode(200, "no"),
      StunAttribute.priority(-1),
      StunAttribute.iceControlling(1n << 64n),
      StunAttribute.username("x".repeat(600))
    ]
    for (const attribute of bad) {
      const result = StunMessage.encode(StunMessage.make(0, 1, new Uint8Array(12), [attribute]))
      assert.isTrue(Either.isLeft(result), attribute._tag)
      if (Either.isLeft(result)) assert.strictEqual(result.left.reason, "InvalidAttribute")
    }
    const shortId = StunMessage.encode(StunMessage.make(0, 1, new Uint8Array(11)))
    assert.isTrue(Either.isLeft(shortId) && shortId.left.reason === "InvalidHeader")
    const huge = StunMessage.encode(
      StunMessage.make(0, 1, new Uint8Array(12), [StunAttribute.data(new Uint8Array(65532))])
    )
    assert.isTrue(Either.isLeft(huge) && huge.left.reason === "TooLarge")
  })
})

describe("integrity", () => {
  const message = StunMessage.make(0, 1, fromHex("0102030405060708090a0b0c"), [
    StunAttribute.username("abcd:efgh"),
    StunAttribute.priority(1853824767),
    StunAttribute.iceControlling(0x0102030405060708n),
    StunAttribute.useCandidate
  ])
  const key = shortKey("0123456789abcdefghijkl")

  it("MESSAGE-INTEGRITY is the HMAC-SHA1 node:crypto computes over the adjusted length", () => {
    const bytes = StunMessage.unsafeEncode(message, { integrity: key, fingerprint: true })
    const m = decodeOk(bytes)
    const prefix = bytes.slice(0, m.integrityOffset)
    const adjusted = m.integrityOffset + 24 - 20
    prefix[2] = adjusted >> 8
    prefix[3] = adjusted & 0xff
    const expected = createHmac("sha1", "0123456789abcdefghijkl").update(prefix).digest("hex")
    assert.strictEqual(hex(bytes.subarray(m.integrityOffset + 4, m.integrityOffset + 24)), expected)
    const crc = (zlib.crc32(bytes.subarray(0, m.fingerprintOffset)) ^ 0x5354554e) >>> 0
    assert.strictEqual(StunMessage.find(m, "Fingerprint")?.value, crc)
    assert.isTrue(StunIntegrity.verifyFingerprint(m))
  })

  for (const length of [16, 20, 24, 28, 32]) {
    it(`MESSAGE-INTEGRITY-SHA256 truncated to ${length} bytes verifies, and a flipped byte does not`, () => {
      const bytes = StunMessage.unsafeEncode(message, {
        integrity: key,
        integrityAlgorithm: "sha256",
        integritySha256Length: length,
        fingerprint: true
      })
      const m = decodeOk(bytes)
      assert.strictEqual(m.integrityOffset, -1)
      assert.strictEqual(StunMessage.find(m, "MessageIntegritySha256")?.value.length, length)
      const prefix = bytes.slice(0, m.integritySha256Offset)
      const adjusted = m.integritySha256Offset + 4 + length - 20
      prefix[2] = adjusted >> 8
      prefix[3] = adjusted & 0xff
      const full = createHmac("sha256", "0123456789abcdefghijkl").update(prefix).digest("hex")
      assert.strictEqual(
        hex(bytes.subarray(m.integritySha256Offset + 4, m.integritySha256Offset + 4 + length)),
        full.slice(0, length * 2)
      )
      assert.isTrue(Either.isRight(StunIntegrity.verify(m, key)))
      const tampered = bytes.slice()
      tampered[24]! ^= 1
      assert.isTrue(Either.isLeft(StunIntegrity.verify(decodeOk(tampered), key)))
    })
  }

  it("with both algorithms, a receiver checks MESSAGE-INTEGRITY-SHA256", () => {
    const bytes = StunMessage.unsafeEncode(message, { integrity: key, integrityAlgorithm: "both" })
    const m = decodeOk(bytes)
    assert.isTrue(m.integrityOffset > 0 && m.integritySha256Offset === m.integrityOffset + 24)
    assert.isTrue(StunIntegrity.verifyIntegritySha1(m, key))
    assert.isTrue(StunIntegrity.verifyIntegritySha256(m, key))
    const broken = bytes.slice()
    broken[m.integritySha256Offset + 10]! ^= 0xff
    const result = StunIntegrity.verify(decodeOk(broken), key)
    assert.isTrue(Either.isLeft(result) && result.left.reason === "IntegrityMismatch")
  })

  it("a message without MESSAGE-INTEGRITY fails verification as MissingIntegrity", () => {
    const m = decodeOk(StunMessage.unsafeEncode(message, { fingerprint: true }))
    const result = StunIntegrity.verify(m, key)
    assert.isTrue(Either.isLeft(result) && result.left.reason === "MissingIntegrity")
  })

  it("long-term SHA-256 keys and USERHASH match RFC 8489's formulas", () => {
    const sha = Either.getOrThrow(StunIntegrity.longTermKey("user", "realm", "pass", 2))
    assert.strictEqual(hex(sha.bytes), createHash("sha256").update("user:realm:pass").digest("hex"))
    const md5 = Either.getOrThrow(StunIntegrity.longTermKey("user", "realm", "pass"))
    assert.strictEqual(hex(md5.bytes), createHash("md5").update("user:realm:pass").digest("hex"))
    const uh = Either.getOrThrow(StunIntegrity.userhash("user", "realm"))
    assert.strictEqual(hex(uh), createHash("sha256").update("user:realm").digest("hex"))
  })

  it("OpaqueString maps non-ASCII spaces, normalizes to NFC, refuses control characters and empty strings", () => {
    assert.deepStrictEqual(StunIntegrity.opaqueString("a\u00a0b"), Either.right("a b"))
    assert.deepStrictEqual(StunIntegrity.opaqueString("e\u0301"), Either.right("\u00e9"))
    assert.isTrue(Either.isLeft(StunIntegrity.opaqueString("a\u0007b")))
    assert.isTrue(Either.isLeft(StunIntegrity.opaqueString("")))
  })
})

describe("properties", () => {
  it.prop("encode then decode gives back every attribute", { message: Arb.message, withFingerprint: fc.boolean() }, (
    { message, withFingerprint }
  ) => {
    const bytes = StunMessage.unsafeEncode(message, { fingerprint: withFingerprint })
    const m = decodeOk(bytes)
    assert.strictEqual(m.class, message.class)
    assert.strictEqual(m.method, message.method)
    assert.deepStrictEqual(m.transactionId, message.transactionId)
    assert.deepStrictEqual(withoutProtection(m), message.attributes)
    assert.strictEqual(StunIntegrity.verifyFingerprint(m), withFingerprint)
    assert.deepStrictEqual(
      m.unknownComprehensionRequired,
      message.attributes.flatMap((a) => a._tag === "Unknown" && a.type < 0x8000 ? [a.type] : [])
    )
  }, { fastCheck: { numRuns: 500 } })

  it.prop("a message protected with any password verifies with it and with no other", {
    message: Arb.message,
    password: fc.string({ minLength: 1, maxLength: 40 }).filter((s) => /^[\x20-\x7e]+$/.test(s)),
    algorithm: fc.constantFrom("sha1" as const, "sha256" as const, "both" as const)
  }, ({ algorithm, message, password }) => {
    const key = shortKey(password)
    const bytes = StunMessage.unsafeEncode(message, {
      integrity: key,
      integrityAlgorithm: algorithm,
      fingerprint: true
    })
    const m = decodeOk(bytes)
    assert.isTrue(Either.isRight(StunIntegrity.verify(m, key)))
    assert.isTrue(Either.isLeft(StunIntegrity.verify(m, shortKey(password + "x"))))
  }, { fastCheck: { numRuns: 200 } })

  it.prop("arbitrary bytes decode to a message or a StunDecodeError, never a throw", {
    bytes: fc.oneof(Arb.bytes(0, 64), Arb.bytes(20, 300))
  }, ({ bytes }) => {
    const result = StunMessage.decode(bytes)
    if (Either.isLeft(result)) assert.strictEqual(result.left._tag, "StunDecodeError")
  }, { fastCheck: { numRuns: 5000 } })

  it.prop("mutated valid messages decode or fail typed, never throw", {
    message: Arb.message,
    edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
    cut: fc.option(fc.nat())
  }, ({ cut, edits, message }) => {
    const bytes = StunMessage.unsafeEncode(message, { fingerprint: true })
    for (const [position, value] of edits) bytes[position % bytes.length] = value
    // Keep the header valid most of the time so that mutations reach the attribute walk.
    bytes[4] = 0x21
    bytes[5] = 0x12
    bytes[6] = 0xa4
    bytes[7] = 0x42
    const input = cut === null ? bytes : bytes.subarray(0, cut % (bytes.length + 1))
    const result = StunMessage.decode(input)
    if (Either.isLeft(result)) assert.strictEqual(result.left._tag, "StunDecodeError")
    else assert.isArray(result.right.attributes)
  }, { fastCheck: { numRuns: 3000 } })
})
