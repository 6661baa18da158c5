import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import * as TurnChannelData from "../src/TurnChannelData.js"

const bytes = (...values: Array<number>): Uint8Array => Uint8Array.from(values)

const decodeError = (input: Uint8Array): TurnChannelData.TurnChannelDataDecodeError => {
  const result = TurnChannelData.decode(input)
  if (Either.isRight(result)) {
    assert.fail(`expected a decode error, got channel ${result.right.channel}`)
  }
  return result.left
}

const decodeOk = (input: Uint8Array): TurnChannelData.ChannelData => {
  const result = TurnChannelData.decode(input)
  if (Either.isLeft(result)) {
    assert.fail(`expected a ChannelData message, got ${result.left.reason} at ${result.left.offset}`)
  }
  return result.right
}

const channelArb = FastCheck.integer({ min: TurnChannelData.minChannelNumber, max: TurnChannelData.maxChannelNumber })

describe("TurnChannelData", () => {
  describe("channel numbers", () => {
    it("allows exactly 0x4000-0x4fff (RFC 8656 §12)", () => {
      assert.strictEqual(TurnChannelData.minChannelNumber, 0x4000)
      assert.strictEqual(TurnChannelData.maxChannelNumber, 0x4fff)
      assert.isFalse(TurnChannelData.isValidChannelNumber(0x3fff))
      assert.isTrue(TurnChannelData.isValidChannelNumber(0x4000))
      assert.isTrue(TurnChannelData.isValidChannelNumber(0x4abc))
      assert.isTrue(TurnChannelData.isValidChannelNumber(0x4fff))
      assert.isFalse(TurnChannelData.isValidChannelNumber(0x5000))
      assert.isFalse(TurnChannelData.isValidChannelNumber(0x7fff))
      assert.isFalse(TurnChannelData.isValidChannelNumber(0x4000 + 0.5))
      assert.isFalse(TurnChannelData.isValidChannelNumber(Number.NaN))
    })
  })

  describe("isChannelData", () => {
    it("needs a first byte of 0x40-0x4f and four bytes", () => {
      assert.isTrue(TurnChannelData.isChannelData(bytes(0x40, 0x00, 0x00, 0x00)))
      assert.isTrue(TurnChannelData.isChannelData(bytes(0x4f, 0xff, 0x00, 0x01, 0xaa)))
      assert.isFalse(TurnChannelData.isChannelData(bytes(0x3f, 0xff, 0x00, 0x00)))
      assert.isFalse(TurnChannelData.isChannelData(bytes(0x50, 0x00, 0x00, 0x00)))
      assert.isFalse(TurnChannelData.isChannelData(bytes(0x00, 0x01, 0x00, 0x00)))
      assert.isFalse(TurnChannelData.isChannelData(bytes(0x40, 0x00, 0x00)))
      assert.isFalse(TurnChannelData.isChannelData(bytes()))
    })
  })

  describe("encode", () => {
    it("writes channel, length and data without padding by default", () => {
      assert.deepStrictEqual(
        Array.from(TurnChannelData.encode(0x4001, bytes(1, 2, 3))),
        [0x40, 0x01, 0x00, 0x03, 1, 2, 3]
      )
      assert.deepStrictEqual(
        Array.from(TurnChannelData.encode(0x4fff, bytes(9), { padded: false })),
        [0x4f, 0xff, 0x00, 0x01, 9]
      )
    })

    it("pads with zeros to a multiple of four when padded, not counting the padding in Length", () => {
      assert.deepStrictEqual(
        Array.from(TurnChannelData.encode(0x4001, bytes(1, 2, 3), { padded: true })),
        [0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0]
      )
      assert.deepStrictEqual(
        Array.from(TurnChannelData.encode(0x4123, bytes(1, 2, 3, 4, 5), { padded: true })),
        [0x41, 0x23, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]
      )
      assert.deepStrictEqual(
        Array.from(TurnChannelData.encode(0x4123, bytes(1, 2, 3, 4), { padded: true })),
        [0x41, 0x23, 0x00, 0x04, 1, 2, 3, 4]
      )
      assert.deepStrictEqual(Array.from(TurnChannelData.encode(0x4000, bytes(), { padded: true })), [0x40, 0, 0, 0])
    })

    it("encodedSize gives the size encode produces", () => {
      assert.strictEqual(TurnChannelData.encodedSize(0, false), 4)
      assert.strictEqual(TurnChannelData.encodedSize(0, true), 4)
      assert.strictEqual(TurnChannelData.encodedSize(1, false), 5)
      assert.strictEqual(TurnChannelData.encodedSize(1, true), 8)
      assert.strictEqual(TurnChannelData.encodedSize(4, true), 8)
      assert.strictEqual(TurnChannelData.encodedSize(65535, true), 65540)
    })

    it("writes the largest message, 65535 bytes of data", () => {
      const data = new Uint8Array(65535).fill(7)
      const encoded = TurnChannelData.encode(0x4000, data, { padded: true })
      assert.strictEqual(encoded.length, 65540)
      assert.deepStrictEqual(Array.from(encoded.subarray(0, 4)), [0x40, 0x00, 0xff, 0xff])
      assert.strictEqual(encoded[65538], 7)
      assert.strictEqual(encoded[65539], 0)
      assert.strictEqual(decodeOk(encoded).data.length, 65535)
    })

    it("refuses an invalid channel number or data beyond the 16-bit Length", () => {
      assert.throws(() => TurnChannelData.encode(0x3fff, bytes(1)), RangeError)
      assert.throws(() => TurnChannelData.encode(0x5000, bytes(1)), RangeError)
      assert.throws(() => TurnChannelData.encode(0x4000, new Uint8Array(65536)), RangeError)
    })
  })

  describe("encodeInto", () => {
    it("writes at an offset, returns the bytes written and zeroes the padding of a dirty buffer", () => {
      const buffer = new Uint8Array(16).fill(0xee)
      const written = TurnChannelData.encodeInto(buffer, 3, 0x4002, bytes(0xa, 0xb), true)
      assert.strictEqual(written, 8)
      assert.deepStrictEqual(
        Array.from(buffer),
        [0xee, 0xee, 0xee, 0x40, 0x02, 0x00, 0x02, 0xa, 0xb, 0, 0, 0xee, 0xee, 0xee, 0xee, 0xee]
      )
      const unpadded = TurnChannelData.encodeInto(buffer, 0, 0x4003, bytes(0xc), false)
      assert.strictEqual(unpadded, 5)
      assert.deepStrictEqual(Array.from(buffer.subarray(0, 6)), [0x40, 0x03, 0x00, 0x01, 0xc, 0x00])
    })

    it("refuses a buffer too small, a bad offset or an invalid channel", () => {
      assert.throws(
        () => TurnChannelData.encodeInto(new Uint8Array(7), 0, 0x4000, bytes(1, 2, 3, 4), false),
        RangeError
      )
      assert.throws(() => TurnChannelData.encodeInto(new Uint8Array(8), 1, 0x4000, bytes(1, 2, 3), true), RangeError)
      assert.throws(() => TurnChannelData.encodeInto(new Uint8Array(8), -1, 0x4000, bytes(1), false), RangeError)
      assert.throws(() => TurnChannelData.encodeInto(new Uint8Array(8), 0, 0x5000, bytes(1), false), RangeError)
      assert.strictEqual(TurnChannelData.encodeInto(new Uint8Array(8), 0, 0x4000, bytes(1, 2, 3), true), 8)
    })
  })

  describe("decode", () => {
    it.prop(
      "round-trips any channel and data, padded or not, with data a view into the input",
      {
        channel: channelArb,
        data: FastCheck.uint8Array({ maxLength: 300 }),
        padded: FastCheck.boolean()
      },
      ({ channel, data, padded }) => {
        const encoded = TurnChannelData.encode(channel, data, { padded })
        assert.strictEqual(encoded.length, TurnChannelData.encodedSize(data.length, padded))
        if (padded) {
          assert.strictEqual(encoded.length % 4, 0)
        }
        const decoded = decodeOk(encoded)
        assert.strictEqual(decoded.channel, channel)
        assert.deepStrictEqual(Array.from(decoded.data), Array.from(data))
        assert.strictEqual(decoded.data.buffer, encoded.buffer)
        assert.strictEqual(decoded.data.byteOffset, 4)
      }
    )

    it("decodes a message inside a larger buffer as a view at the right place", () => {
      const backing = bytes(0xff, 0xff, 0x40, 0x10, 0x00, 0x02, 0x61, 0x62)
      const decoded = decodeOk(backing.subarray(2))
      assert.strictEqual(decoded.channel, 0x4010)
      assert.deepStrictEqual(Array.from(decoded.data), [0x61, 0x62])
      assert.strictEqual(decoded.data.byteOffset, 6)
      backing[6] = 0x7a
      assert.strictEqual(decoded.data[0], 0x7a)
    })

    it("accepts a zero-length message", () => {
      const decoded = decodeOk(bytes(0x4f, 0xff, 0x00, 0x00))
      assert.strictEqual(decoded.channel, 0x4fff)
      assert.strictEqual(decoded.data.length, 0)
    })

    it("accepts exactly the padding up to a multiple of four, whatever its content, and no more", () => {
      // 4 + 5 = 9 bytes of message, padded size 12
      const message = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5]
      for (const trailing of [[], [0], [0, 0], [0, 0, 0], [0xff, 0x12, 0x34]]) {
        const decoded = decodeOk(Uint8Array.from([...message, ...trailing]))
        assert.deepStrictEqual(Array.from(decoded.data), [1, 2, 3, 4, 5])
      }
      const tooLong = decodeError(Uint8Array.from([...message, 0, 0, 0, 0]))
      assert.strictEqual(tooLong.reason, "LengthMismatch")
      assert.strictEqual(tooLong.offset, 12)
    })

    it("accepts no trailing byte after a message already a multiple of four", () => {
      const aligned = bytes(0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4)
      assert.deepStrictEqual(Array.from(decodeOk(aligned).data), [1, 2, 3, 4])
      const error = decodeError(bytes(0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4, 0))
      assert.strictEqual(error.reason, "LengthMismatch")
      assert.strictEqual(error.offset, 8)
      const empty = decodeError(bytes(0x40, 0x00, 0x00, 0x00, 0))
      assert.strictEqual(empty.reason, "LengthMismatch")
      assert.strictEqual(empty.offset, 4)
    })

    it.prop(
      "accepts every trailing count up to the padding and rejects the next one at the padded size",
      { length: FastCheck.integer({ min: 0, max: 64 }), fill: FastCheck.integer({ min: 0, max: 255 }) },
      ({ fill, length }) => {
        const padded = (4 + length + 3) & ~3
        for (let total = 4 + length; total <= padded; total++) {
          const input = new Uint8Array(total).fill(fill)
          input.set(TurnChannelData.encode(0x4321, new Uint8Array(length).fill(fill)))
          assert.strictEqual(decodeOk(input).data.length, length)
        }
        const input = new Uint8Array(padded + 1)
        input.set(TurnChannelData.encode(0x4321, new Uint8Array(length)))
        const error = decodeError(input)
        assert.strictEqual(error.reason, "LengthMismatch")
        assert.strictEqual(error.offset, padded)
      }
    )

    it("fails Truncated at the end of the input when the header is incomplete", () => {
      for (let length = 0; length < 4; length++) {
        const error = decodeError(bytes(0x40, 0x00, 0x00, 0x00).subarray(0, length))
        assert.strictEqual(error._tag, "TurnChannelDataDecodeError")
        assert.strictEqual(error.reason, "Truncated")
        assert.strictEqual(error.offset, length)
        assert.instanceOf(error, TurnChannelData.TurnChannelDataDecodeError)
      }
    })

    it("fails InvalidChannelNumber at offset 0 outside 0x4000-0x4fff", () => {
      for (const channel of [0x0000, 0x0001, 0x3fff, 0x5000, 0x7fff, 0xffff]) {
        const error = decodeError(bytes(channel >>> 8, channel & 0xff, 0x00, 0x00))
        assert.strictEqual(error.reason, "InvalidChannelNumber")
        assert.strictEqual(error.offset, 0)
        assert.include(error.message, channel.toString(16).padStart(4, "0"))
      }
    })

    it("fails LengthMismatch at offset 2 when Length claims more than is present (RFC 8656 §12.6)", () => {
      const error = decodeError(bytes(0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4))
      assert.strictEqual(error.reason, "LengthMismatch")
      assert.strictEqual(error.offset, 2)
      const huge = decodeError(bytes(0x40, 0x00, 0xff, 0xff))
      assert.strictEqual(huge.reason, "LengthMismatch")
      assert.strictEqual(huge.offset, 2)
    })

    it.prop(
      "never throws on arbitrary bytes: a message or a typed error within the input",
      { input: FastCheck.uint8Array({ maxLength: 64 }) },
      ({ input }) => {
        const result = TurnChannelData.decode(input)
        if (Either.isRight(result)) {
          assert.isTrue(TurnChannelData.isChannelData(input))
          assert.isTrue(TurnChannelData.isValidChannelNumber(result.right.channel))
          assert.strictEqual(result.right.data.length, (input[2]! << 8) | input[3]!)
        } else {
          assert.instanceOf(result.left, TurnChannelData.TurnChannelDataDecodeError)
          assert.isAtLeast(result.left.offset, 0)
          assert.isAtMost(result.left.offset, input.length)
        }
      },
      { fastCheck: { numRuns: 1000 } }
    )

    it.prop(
      "never throws on bytes that start like ChannelData",
      {
        channel: channelArb,
        length: FastCheck.integer({ min: 0, max: 40 }),
        rest: FastCheck.uint8Array({ maxLength: 48 })
      },
      ({ channel, length, rest }) => {
        const input = Uint8Array.from([channel >>> 8, channel & 0xff, length >>> 8, length & 0xff, ...rest])
        const result = TurnChannelData.decode(input)
        const accepted = rest.length >= length && 4 + rest.length <= ((4 + length + 3) & ~3)
        assert.strictEqual(Either.isRight(result), accepted)
      }
    )
  })
})
