import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import * as StreamFraming from "../src/StreamFraming.js"
import * as TurnChannelData from "../src/TurnChannelData.js"

/** A minimal STUN Binding request with one SOFTWARE attribute carrying `value` (none when `value` is undefined). */
const stunMessage = (seed: number, value: Uint8Array | undefined): Uint8Array => {
  const attributeSize = value === undefined ? 0 : 4 + ((value.length + 3) & ~3)
  const message = new Uint8Array(20 + attributeSize)
  const view = new DataView(message.buffer)
  view.setUint16(0, 0x0001) // Binding request
  view.setUint16(2, attributeSize)
  view.setUint32(4, 0x2112a442) // magic cookie
  for (let i = 0; i < 12; i++) {
    message[8 + i] = (seed + i * 31) & 0xff
  }
  if (value !== undefined) {
    view.setUint16(20, 0x8022) // SOFTWARE
    view.setUint16(22, value.length)
    message.set(value, 24)
  }
  return message
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/** Cuts `stream` at the given points (taken modulo its length + 1, deduplicated). */
const split = (stream: Uint8Array, points: ReadonlyArray<number>): Array<Uint8Array> => {
  const cuts = [...new Set(points.map((p) => p % (stream.length + 1)))].sort((a, b) => a - b)
  const chunks: Array<Uint8Array> = []
  let start = 0
  for (const cut of cuts) {
    chunks.push(stream.subarray(start, cut))
    start = cut
  }
  chunks.push(stream.subarray(start))
  return chunks
}

const oneByteAtATime = (stream: Uint8Array): Array<Uint8Array> =>
  Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1))

/** Pushes every chunk and returns the frames (copied to plain arrays) and the first error. */
const run = (
  deframer: StreamFraming.StreamDeframer,
  chunks: ReadonlyArray<Uint8Array>
): { readonly frames: Array<Array<number>>; readonly error: StreamFraming.StreamFramingError | undefined } => {
  const frames: Array<Array<number>> = []
  const onFrame = (frame: Uint8Array) => {
    frames.push(Array.from(frame))
  }
  for (const chunk of chunks) {
    const result = deframer.push(chunk, onFrame)
    if (Either.isLeft(result)) {
      return { frames, error: result.left }
    }
  }
  return { frames, error: undefined }
}

const expectFailure = (result: Either.Either<void, StreamFraming.StreamFramingError>) => {
  if (Either.isRight(result)) {
    assert.fail("expected a StreamFramingError")
  }
  return result.left
}

type FrameSpec =
  | { readonly kind: "stun"; readonly seed: number; readonly value: Uint8Array | undefined }
  | { readonly kind: "channel"; readonly channel: number; readonly data: Uint8Array }

const frameSpecArb: FastCheck.Arbitrary<FrameSpec> = FastCheck.oneof(
  FastCheck.record({
    kind: FastCheck.constant("stun" as const),
    seed: FastCheck.integer({ min: 0, max: 255 }),
    value: FastCheck.option(FastCheck.uint8Array({ maxLength: 37 }), { nil: undefined })
  }),
  FastCheck.record({
    kind: FastCheck.constant("channel" as const),
    channel: FastCheck.integer({ min: 0x4000, max: 0x4fff }),
    data: FastCheck.uint8Array({ maxLength: 37 })
  })
)

/** The TURN stream for the frames (ChannelData padded, as over TCP) and the frames the deframer must emit. */
const turnStream = (specs: ReadonlyArray<FrameSpec>) => {
  const wire: Array<Uint8Array> = []
  const expected: Array<Array<number>> = []
  for (const spec of specs) {
    if (spec.kind === "stun") {
      const message = stunMessage(spec.seed, spec.value)
      wire.push(message)
      expected.push(Array.from(message))
    } else {
      wire.push(TurnChannelData.encode(spec.channel, spec.data, { padded: true }))
      expected.push(Array.from(TurnChannelData.encode(spec.channel, spec.data)))
    }
  }
  return { stream: concat(wire), expected }
}

const splitPointsArb = FastCheck.array(FastCheck.nat(), { maxLength: 40 })

describe("StreamFraming", () => {
  describe("TURN stream deframer", () => {
    const fixture = turnStream([
      { kind: "stun", seed: 1, value: Uint8Array.from([0x61, 0x62, 0x63]) },
      { kind: "channel", channel: 0x4001, data: Uint8Array.from([1, 2, 3, 4, 5]) },
      { kind: "channel", channel: 0x4fff, data: new Uint8Array(0) },
      { kind: "stun", seed: 2, value: undefined },
      { kind: "channel", channel: 0x4abc, data: Uint8Array.from([9, 8, 7, 6]) },
      { kind: "channel", channel: 0x4002, data: Uint8Array.from([0xaa]) }
    ])

    it("sizes the fixture as RFC 8489 §6.2.2 and RFC 8656 §12.5 say", () => {
      // 20 + 4 + 4 (SOFTWARE "abc" padded), 4 + 5 padded to 12, 4, 20, 4 + 4, 4 + 1 padded to 8
      assert.strictEqual(fixture.stream.length, 28 + 12 + 4 + 20 + 8 + 8)
      assert.deepStrictEqual(fixture.expected.map((frame) => frame.length), [28, 9, 4, 20, 8, 5])
    })

    it("yields every frame from one chunk", () => {
      const { error, frames } = run(StreamFraming.makeTurnStreamDeframer(), [fixture.stream])
      assert.isUndefined(error)
      assert.deepStrictEqual(frames, fixture.expected)
    })

    it("yields every frame when fed one byte at a time", () => {
      const deframer = StreamFraming.makeTurnStreamDeframer()
      const { error, frames } = run(deframer, oneByteAtATime(fixture.stream))
      assert.isUndefined(error)
      assert.deepStrictEqual(frames, fixture.expected)
      assert.strictEqual(deframer.buffered, 0)
    })

    it("emits ChannelData without padding, ready for TurnChannelData.decode", () => {
      const decoded: Array<TurnChannelData.ChannelData> = []
      const result = StreamFraming.makeTurnStreamDeframer().push(fixture.stream, (frame) => {
        if (TurnChannelData.isChannelData(frame)) {
          decoded.push(Either.getOrThrow(TurnChannelData.decode(frame)))
        }
      })
      assert.isTrue(Either.isRight(result))
      assert.deepStrictEqual(
        decoded.map(({ channel, data }) => [channel, Array.from(data)]),
        [[0x4001, [1, 2, 3, 4, 5]], [0x4fff, []], [0x4abc, [9, 8, 7, 6]], [0x4002, [0xaa]]]
      )
    })

    it.prop(
      "yields the same frames for every way of splitting the stream",
      { specs: FastCheck.array(frameSpecArb, { minLength: 1, maxLength: 8 }), points: splitPointsArb },
      ({ points, specs }) => {
        const { expected, stream } = turnStream(specs)
        const deframer = StreamFraming.makeTurnStreamDeframer()
        const { error, frames } = run(deframer, split(stream, points))
        assert.isUndefined(error)
        assert.deepStrictEqual(frames, expected)
        assert.strictEqual(deframer.buffered, 0)
        const whole = run(StreamFraming.makeTurnStreamDeframer(), [stream])
        assert.deepStrictEqual(whole.frames, expected)
        const bytewise = run(StreamFraming.makeTurnStreamDeframer(), oneByteAtATime(stream))
        assert.deepStrictEqual(bytewise.frames, expected)
      },
      { fastCheck: { numRuns: 300 } }
    )

    it("hands over frames inside a chunk as views and copies only a straddling frame", () => {
      const first = stunMessage(3, undefined)
      const second = TurnChannelData.encode(0x4005, Uint8Array.from([1, 2, 3, 4]))
      const stream = concat([first, second])
      const chunkA = stream.subarray(0, 22)
      const chunkB = stream.subarray(22)
      const frames: Array<Uint8Array> = []
      const deframer = StreamFraming.makeTurnStreamDeframer()
      assert.isTrue(Either.isRight(deframer.push(chunkA, (frame) => frames.push(frame))))
      assert.strictEqual(frames.length, 1)
      assert.strictEqual(frames[0]!.buffer, stream.buffer)
      assert.strictEqual(frames[0]!.byteOffset, 0)
      assert.strictEqual(deframer.buffered, 2)
      assert.isTrue(Either.isRight(deframer.push(chunkB, (frame) => frames.push(frame))))
      assert.strictEqual(frames.length, 2)
      assert.notStrictEqual(frames[1]!.buffer, stream.buffer)
      assert.strictEqual(frames[1]!.length, 8)
      assert.deepStrictEqual(Array.from(frames[1]!), Array.from(second))
      assert.strictEqual(deframer.buffered, 0)
    })

    it("reports buffered bytes of the incomplete frame and accepts empty chunks", () => {
      const message = stunMessage(4, new Uint8Array(8))
      const deframer = StreamFraming.makeTurnStreamDeframer()
      const frames: Array<Uint8Array> = []
      const onFrame = (frame: Uint8Array) => {
        frames.push(frame)
      }
      assert.isTrue(Either.isRight(deframer.push(message.subarray(0, 3), onFrame)))
      assert.strictEqual(deframer.buffered, 3)
      assert.isTrue(Either.isRight(deframer.push(new Uint8Array(0), onFrame)))
      assert.strictEqual(deframer.buffered, 3)
      assert.isTrue(Either.isRight(deframer.push(message.subarray(3, 30), onFrame)))
      assert.strictEqual(deframer.buffered, 30)
      assert.strictEqual(frames.length, 0)
      assert.isTrue(Either.isRight(deframer.push(message.subarray(30), onFrame)))
      assert.strictEqual(deframer.buffered, 0)
      assert.deepStrictEqual(frames.map((frame) => Array.from(frame)), [Array.from(message)])
    })

    it("waits for a ChannelData message's padding before emitting it, then skips it", () => {
      const padded = TurnChannelData.encode(0x4006, Uint8Array.from([1, 2, 3, 4, 5]), { padded: true })
      padded.fill(0xcc, 9) // padding content is ignored
      const next = TurnChannelData.encode(0x4007, Uint8Array.from([6, 7, 8, 9]))
      const deframer = StreamFraming.makeTurnStreamDeframer()
      const first = run(deframer, [padded.subarray(0, 10)])
      assert.deepStrictEqual(first.frames, [])
      assert.strictEqual(deframer.buffered, 10)
      const rest = run(deframer, [concat([padded.subarray(10), next])])
      assert.isUndefined(rest.error)
      assert.deepStrictEqual(rest.frames, [[0x40, 0x06, 0x00, 0x05, 1, 2, 3, 4, 5], Array.from(next)])
    })

    it("admits the largest STUN and ChannelData messages by default", () => {
      const stun = stunMessage(5, new Uint8Array(65528))
      assert.strictEqual(stun.length, 20 + 65532)
      const channel = TurnChannelData.encode(0x4000, new Uint8Array(65535).fill(1), { padded: true })
      const { error, frames } = run(StreamFraming.makeTurnStreamDeframer(), split(concat([stun, channel]), [1000]))
      assert.isUndefined(error)
      assert.deepStrictEqual(frames.map((frame) => frame.length), [65552, 65539])
      assert.strictEqual(StreamFraming.defaultTurnMaxFrameSize, 65555)
    })

    it("fails UnknownFrameType at the stream offset of a byte that is neither STUN nor ChannelData", () => {
      const stun = stunMessage(6, undefined)
      for (const byte of [0x50, 0x80, 0xff]) {
        const deframer = StreamFraming.makeTurnStreamDeframer()
        const { error, frames } = run(deframer, [concat([stun, Uint8Array.from([byte, 0, 0, 0])])])
        assert.deepStrictEqual(frames, [Array.from(stun)])
        assert.isDefined(error)
        assert.strictEqual(error!._tag, "StreamFramingError")
        assert.strictEqual(error!.reason, "UnknownFrameType")
        assert.strictEqual(error!.offset, 20)
        assert.strictEqual(error!.byte, byte)
        assert.isUndefined(error!.frameSize)
      }
    })

    it("accepts every first byte 0x00-0x4f and rejects 0x50-0xff", () => {
      for (let byte = 0; byte < 256; byte++) {
        const result = StreamFraming.makeTurnStreamDeframer().push(Uint8Array.from([byte]), () => {})
        assert.strictEqual(Either.isRight(result), byte <= 0x4f, `first byte ${byte}`)
      }
    })

    it("counts the offset across chunks and stays failed until reset", () => {
      const channel = TurnChannelData.encode(0x4008, Uint8Array.from([1, 2, 3]), { padded: true })
      const deframer = StreamFraming.makeTurnStreamDeframer()
      const frames: Array<Uint8Array> = []
      const onFrame = (frame: Uint8Array) => {
        frames.push(frame)
      }
      assert.isTrue(Either.isRight(deframer.push(channel.subarray(0, 5), onFrame)))
      const error = expectFailure(deframer.push(concat([channel.subarray(5), Uint8Array.from([0x7f])]), onFrame))
      assert.strictEqual(frames.length, 1)
      assert.strictEqual(error.reason, "UnknownFrameType")
      assert.strictEqual(error.offset, 8)
      assert.strictEqual(error.byte, 0x7f)
      assert.strictEqual(expectFailure(deframer.push(channel, onFrame)), error)
      assert.strictEqual(frames.length, 1)
      assert.strictEqual(deframer.buffered, 0)
      deframer.reset()
      assert.isTrue(Either.isRight(deframer.push(channel, onFrame)))
      assert.strictEqual(frames.length, 2)
    })

    it("reset drops a partial frame and restarts offsets", () => {
      const stun = stunMessage(7, undefined)
      const deframer = StreamFraming.makeTurnStreamDeframer()
      assert.isTrue(Either.isRight(deframer.push(stun.subarray(0, 10), () => {})))
      deframer.reset()
      assert.strictEqual(deframer.buffered, 0)
      const { error, frames } = run(deframer, [stun, Uint8Array.from([0x90])])
      assert.deepStrictEqual(frames, [Array.from(stun)])
      assert.strictEqual(error?.offset, 20)
    })

    it("fails FrameTooLarge when the header is complete, before buffering the frame", () => {
      const big = stunMessage(8, new Uint8Array(96)) // 20 + 100 bytes
      const deframer = StreamFraming.makeTurnStreamDeframer({ maxFrameSize: 119 })
      const small = stunMessage(9, undefined)
      const { error, frames } = run(deframer, [small, big.subarray(0, 3)])
      assert.isUndefined(error)
      assert.strictEqual(frames.length, 1)
      const failure = expectFailure(deframer.push(big.subarray(3, 4), () => {}))
      assert.strictEqual(failure.reason, "FrameTooLarge")
      assert.strictEqual(failure.offset, 20)
      assert.strictEqual(failure.byte, 0x00)
      assert.strictEqual(failure.frameSize, 120)
      assert.strictEqual(deframer.buffered, 0)
      const exact = run(StreamFraming.makeTurnStreamDeframer({ maxFrameSize: 120 }), [big])
      assert.isUndefined(exact.error)
      assert.strictEqual(exact.frames.length, 1)
    })

    it("measures ChannelData against maxFrameSize without its padding", () => {
      const channel = TurnChannelData.encode(0x4009, new Uint8Array(5), { padded: true }) // 9 bytes, 12 on the wire
      assert.isUndefined(run(StreamFraming.makeTurnStreamDeframer({ maxFrameSize: 9 }), [channel]).error)
      const { error } = run(StreamFraming.makeTurnStreamDeframer({ maxFrameSize: 8 }), [channel])
      assert.strictEqual(error?.reason, "FrameTooLarge")
      assert.strictEqual(error?.offset, 0)
      assert.strictEqual(error?.byte, 0x40)
      assert.strictEqual(error?.frameSize, 9)
    })

    it("refuses a nonsensical maxFrameSize", () => {
      assert.throws(() => StreamFraming.makeTurnStreamDeframer({ maxFrameSize: -1 }), RangeError)
      assert.throws(() => StreamFraming.makeRfc4571Deframer({ maxFrameSize: 1.5 }), RangeError)
    })

    it.prop(
      "never throws on arbitrary bytes: frames, then possibly one typed error",
      { chunks: FastCheck.array(FastCheck.uint8Array({ maxLength: 64 }), { maxLength: 8 }) },
      ({ chunks }) => {
        const deframer = StreamFraming.makeTurnStreamDeframer({ maxFrameSize: 200 })
        let failure: StreamFraming.StreamFramingError | undefined
        for (const chunk of chunks) {
          const result = deframer.push(chunk, (frame) => {
            assert.isAtMost(frame.length, 200)
            assert.isTrue(frame[0]! <= 0x4f)
          })
          if (Either.isLeft(result)) {
            assert.instanceOf(result.left, StreamFraming.StreamFramingError)
            if (failure !== undefined) {
              assert.strictEqual(result.left, failure)
            }
            failure = result.left
          }
        }
      },
      { fastCheck: { numRuns: 500 } }
    )
  })

  describe("RFC 4571", () => {
    it("frames a payload behind a 16-bit big-endian LENGTH", () => {
      assert.deepStrictEqual(Array.from(StreamFraming.frameRfc4571(Uint8Array.from([7, 8, 9]))), [0, 3, 7, 8, 9])
      assert.deepStrictEqual(Array.from(StreamFraming.frameRfc4571(new Uint8Array(0))), [0, 0])
      const large = StreamFraming.frameRfc4571(new Uint8Array(0x1234))
      assert.deepStrictEqual(Array.from(large.subarray(0, 2)), [0x12, 0x34])
      assert.strictEqual(large.length, 0x1236)
      assert.strictEqual(StreamFraming.frameRfc4571(new Uint8Array(65535)).length, 65537)
      assert.throws(() => StreamFraming.frameRfc4571(new Uint8Array(65536)), RangeError)
    })

    it("frameRfc4571Into writes at an offset and returns the bytes written", () => {
      const buffer = new Uint8Array(8).fill(0xee)
      assert.strictEqual(StreamFraming.frameRfc4571Into(buffer, 2, Uint8Array.from([1, 2])), 4)
      assert.deepStrictEqual(Array.from(buffer), [0xee, 0xee, 0, 2, 1, 2, 0xee, 0xee])
      assert.throws(() => StreamFraming.frameRfc4571Into(buffer, 5, Uint8Array.from([1, 2])), RangeError)
    })

    it.prop(
      "yields the same payloads for every way of splitting the stream",
      {
        payloads: FastCheck.array(FastCheck.uint8Array({ maxLength: 50 }), { minLength: 1, maxLength: 8 }),
        points: splitPointsArb
      },
      ({ payloads, points }) => {
        const stream = concat(payloads.map(StreamFraming.frameRfc4571))
        const expected = payloads.map((payload) => Array.from(payload))
        const deframer = StreamFraming.makeRfc4571Deframer()
        const { error, frames } = run(deframer, split(stream, points))
        assert.isUndefined(error)
        assert.deepStrictEqual(frames, expected)
        assert.strictEqual(deframer.buffered, 0)
        assert.deepStrictEqual(run(StreamFraming.makeRfc4571Deframer(), [stream]).frames, expected)
        assert.deepStrictEqual(run(StreamFraming.makeRfc4571Deframer(), oneByteAtATime(stream)).frames, expected)
      },
      { fastCheck: { numRuns: 300 } }
    )

    it("accepts any first byte, emits payloads as views, and an empty frame for LENGTH 0", () => {
      const stream = concat([
        StreamFraming.frameRfc4571(Uint8Array.from([0xff, 0x80])),
        StreamFraming.frameRfc4571(new Uint8Array(0)),
        StreamFraming.frameRfc4571(Uint8Array.from([0x00]))
      ])
      const frames: Array<Uint8Array> = []
      assert.isTrue(Either.isRight(StreamFraming.makeRfc4571Deframer().push(stream, (frame) => frames.push(frame))))
      assert.deepStrictEqual(frames.map((frame) => Array.from(frame)), [[0xff, 0x80], [], [0x00]])
      assert.strictEqual(frames[0]!.buffer, stream.buffer)
      assert.strictEqual(frames[0]!.byteOffset, 2)
    })

    it("copies a straddling payload without its prefix", () => {
      const stream = StreamFraming.frameRfc4571(Uint8Array.from([1, 2, 3, 4]))
      const deframer = StreamFraming.makeRfc4571Deframer()
      const frames: Array<Uint8Array> = []
      const onFrame = (frame: Uint8Array) => {
        frames.push(frame)
      }
      assert.isTrue(Either.isRight(deframer.push(stream.subarray(0, 1), onFrame)))
      assert.strictEqual(deframer.buffered, 1)
      assert.isTrue(Either.isRight(deframer.push(stream.subarray(1, 4), onFrame)))
      assert.strictEqual(deframer.buffered, 4)
      assert.isTrue(Either.isRight(deframer.push(stream.subarray(4), onFrame)))
      assert.strictEqual(frames.length, 1)
      assert.strictEqual(frames[0]!.length, 4)
      assert.strictEqual(frames[0]!.byteLength, frames[0]!.buffer.byteLength)
      assert.deepStrictEqual(Array.from(frames[0]!), [1, 2, 3, 4])
    })

    it("fails FrameTooLarge at the frame's stream offset when LENGTH exceeds maxFrameSize", () => {
      const deframer = StreamFraming.makeRfc4571Deframer({ maxFrameSize: 10 })
      const ok = StreamFraming.frameRfc4571(new Uint8Array(10))
      const { error, frames } = run(deframer, [ok, Uint8Array.from([0x00]), Uint8Array.from([0x0b, 1, 2])])
      assert.strictEqual(frames.length, 1)
      assert.strictEqual(error?.reason, "FrameTooLarge")
      assert.strictEqual(error?.offset, 12)
      assert.strictEqual(error?.byte, 0x00)
      assert.strictEqual(error?.frameSize, 11)
      assert.strictEqual(StreamFraming.defaultRfc4571MaxFrameSize, 65535)
    })
  })

  it("accepts RFC 5766 channel numbers (first byte up to 0x7F) only when asked", () => {
    const frame = new Uint8Array([0x7f, 0x5e, 0x00, 0x02, 0xaa, 0xbb, 0x00, 0x00])
    const refused = StreamFraming.makeTurnStreamDeframer().push(frame, () => {})
    assert.isTrue(Either.isLeft(refused) && refused.left.reason === "UnknownFrameType")
    const frames: Array<Uint8Array> = []
    const legacy = StreamFraming.makeTurnStreamDeframer({ legacyChannelNumbers: true })
    assert.isTrue(Either.isRight(legacy.push(frame, (f) => frames.push(f.slice()))))
    assert.deepStrictEqual(frames, [new Uint8Array([0x7f, 0x5e, 0x00, 0x02, 0xaa, 0xbb])])
    const beyond = legacy.push(new Uint8Array([0x80, 0, 0, 0]), () => {})
    assert.isTrue(Either.isLeft(beyond) && beyond.left.reason === "UnknownFrameType")
  })
})
