/**
 * Framing on stream transports: cutting a TCP or TLS byte stream back into the messages it carries.
 *
 * Implements:
 * - RFC 8489 §6.2.2 (STUN over TCP and TLS-over-TCP): STUN messages follow each other on the stream with no extra
 *   framing; a message is the 20-byte header plus the 16-bit Message Length at bytes 2–3, and its first two bits
 *   are 0, so its first byte is 0x00–0x3F.
 * - RFC 8656 §12.5 (ChannelData over TCP and TLS-over-TCP): ChannelData messages (first byte 0x40–0x4F) are
 *   interleaved with STUN messages and padded to a multiple of four bytes, the padding not counted in Length; a
 *   message occupies `4 + Length` rounded up to a multiple of four bytes of the stream.
 * - RFC 4571 §2, as used by ICE-TCP (RFC 6544 §3): each frame is preceded by a 16-bit big-endian LENGTH.
 *
 * A deframer is fed chunks as they arrive (`push`) and calls `onFrame` once per complete frame, in stream order.
 * It handles frames split across chunks and several frames in one chunk. A frame lying wholly inside a chunk is
 * handed over as a view into that chunk (no copy); a frame that straddles chunks is copied once, into a fresh array
 * of its exact size, allocated when its header is complete. The deframer never writes into a frame it has handed
 * over, but a view is only as stable as the chunk under it: a caller that reuses its read buffers must copy what
 * outlives the `onFrame` call. Per chunk the deframer allocates nothing on the common path: `onFrame` is passed in
 * (pass the same function every time, not a fresh closure), success is the shared `Either.void`, and state lives in
 * a handful of numeric fields.
 *
 * Choices:
 * - ChannelData frames are emitted without their padding (`4 + Length` bytes), so `TurnChannelData.decode` sees
 *   exactly one message; the padding bytes are consumed and ignored (their content is not checked), and the frame
 *   is emitted once its padding has arrived.
 * - RFC 4571 frames are emitted without the 2-byte LENGTH prefix. A LENGTH of 0 yields an empty frame.
 * - Only the framing is checked: the first byte (TURN streams) and the size against `maxFrameSize`. Whether a frame
 *   is a well-formed STUN message is the decoder's business.
 * - An unknown first byte or an oversized frame fails the stream: there is no way to find the next frame boundary,
 *   so the caller must close the connection. The failure is sticky: later `push` calls return the same error
 *   without looking at their input, until `reset`. Frames completed before the fault, in the same chunk, have
 *   already been delivered.
 * - An oversized frame is refused as soon as its header is complete, before anything is allocated for it.
 *
 * @since 0.1.0
 */
import { Data, Either } from "effect"

/**
 * Size of the STUN message header: RFC 8489 §5 ("STUN messages are encoded ... with a 20-byte header").
 *
 * @since 0.1.0
 * @category constants
 */
export const stunHeaderSize = 20

/**
 * Size of the ChannelData header: RFC 8656 §12.4.
 *
 * @since 0.1.0
 * @category constants
 */
export const channelDataHeaderSize = 4

/**
 * Size of the RFC 4571 LENGTH prefix: RFC 4571 §2.
 *
 * @since 0.1.0
 * @category constants
 */
export const rfc4571HeaderSize = 2

/**
 * Default `maxFrameSize` of `makeTurnStreamDeframer`: the largest STUN message, a 20-byte header plus the largest
 * 16-bit Message Length (RFC 8489 §5). It also admits the largest ChannelData message (4 + 65535 bytes).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTurnMaxFrameSize = 65535 + 20

/**
 * Default `maxFrameSize` of `makeRfc4571Deframer`: the largest 16-bit LENGTH (RFC 4571 §2).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRfc4571MaxFrameSize = 65535

/**
 * Why a byte stream cannot be deframed. `offset` is the position in the stream (counted from the first byte pushed
 * since the deframer was made or reset) of the first byte of the offending frame, and `byte` that byte's value.
 * - `UnknownFrameType`: on a TURN stream, a frame starts with a byte that is neither STUN (0x00–0x3F) nor
 *   ChannelData (0x40–0x4F).
 * - `FrameTooLarge`: the frame's header announces `frameSize` bytes (the frame as it would be emitted: the whole
 *   STUN message, the unpadded ChannelData message, the RFC 4571 payload), more than the deframer's `maxFrameSize`.
 *
 * Either way the stream cannot be resynchronised: close the connection.
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamFramingError extends Data.TaggedError("StreamFramingError")<{
  readonly reason: "UnknownFrameType" | "FrameTooLarge"
  readonly offset: number
  readonly byte: number
  readonly frameSize?: number
  readonly message: string
}> {}

/**
 * Options of a deframer.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeframerOptions {
  /**
   * The largest frame accepted, in bytes, measured as the frame is emitted (see `StreamFramingError`). It bounds
   * the memory one partial frame can hold. Defaults: `defaultTurnMaxFrameSize`, `defaultRfc4571MaxFrameSize`.
   */
  readonly maxFrameSize?: number | undefined
  /**
   * TURN streams only: also accept ChannelData with the channel numbers of RFC 5766, whose first byte is 0x40–0x7F
   * (RFC 8656 narrowed channels to 0x4000–0x4FFF, but deployed clients such as coturn's still use the old range).
   */
  readonly legacyChannelNumbers?: boolean | undefined
}

/**
 * An incremental deframer for one stream.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamDeframer {
  /**
   * Feeds the next chunk of the stream and calls `onFrame` for every frame it completes, in order. Returns
   * `Either.void`, or the stream's `StreamFramingError` (the connection must then be closed). An exception thrown by
   * `onFrame` propagates to the caller and leaves the rest of the chunk unread.
   */
  push(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): Either.Either<void, StreamFramingError>
  /**
   * Bytes of an incomplete frame received so far and held until the rest arrives (0 between frames): the figure
   * for back-pressure decisions.
   */
  readonly buffered: number
  /**
   * Drops any partial frame and a recorded failure and restarts stream offsets at 0, as for a new stream.
   */
  reset(): void
}

const modeTurn = 0
const modeRfc4571 = 1

/**
 * A first byte that may start a frame on a TURN stream: STUN (top two bits 00) or ChannelData (0x40 up to
 * `maxChannelByte`: 0x4F, or 0x7F with RFC 5766 channel numbers).
 */
const isTurnFrameStart = (byte: number, maxChannelByte: number): boolean => byte <= maxChannelByte

class Deframer implements StreamDeframer {
  readonly #mode: number
  readonly #headerSize: number
  readonly #maxFrameSize: number
  /** The last first byte that starts a ChannelData frame: 0x4F, or 0x7F with RFC 5766 channel numbers. */
  readonly #maxChannelByte: number
  /** The header bytes of a frame whose header is split across chunks. */
  readonly #header: Uint8Array
  /** Wire bytes of the current incomplete frame consumed so far; 0 between frames. */
  #consumed = 0
  /** The copy of a straddling frame, allocated once its header is complete. */
  #frame: Uint8Array | undefined = undefined
  /** Of the frame being measured or copied: its size on the wire, bytes emitted, and wire bytes before those. */
  #wireSize = 0
  #emitSize = 0
  #skipHead = 0
  /** Stream offset of the first byte of the current chunk, and of a frame whose header is incomplete. */
  #position = 0
  #frameStart = 0
  #failure: StreamFramingError | undefined = undefined

  constructor(mode: number, maxFrameSize: number, maxChannelByte = 0x4f) {
    if (!Number.isInteger(maxFrameSize) || maxFrameSize < 0) {
      throw new RangeError(`maxFrameSize must be a non-negative integer, got ${maxFrameSize}`)
    }
    this.#mode = mode
    this.#headerSize = mode === modeTurn ? channelDataHeaderSize : rfc4571HeaderSize
    this.#maxFrameSize = maxFrameSize
    this.#maxChannelByte = maxChannelByte
    this.#header = new Uint8Array(this.#headerSize)
  }

  get buffered(): number {
    return this.#consumed
  }

  reset(): void {
    this.#consumed = 0
    this.#frame = undefined
    this.#position = 0
    this.#failure = undefined
  }

  push(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): Either.Either<void, StreamFramingError> {
    if (this.#failure !== undefined) {
      return Either.left(this.#failure)
    }
    const length = chunk.length
    let pos = 0
    if (this.#consumed > 0) {
      pos = this.#continueFrame(chunk, onFrame)
      if (pos < 0) {
        return Either.left(this.#failure!)
      }
    }
    const headerSize = this.#headerSize
    while (pos < length) {
      const start = pos
      const first = chunk[start]!
      if (this.#mode === modeTurn && !isTurnFrameStart(first, this.#maxChannelByte)) {
        return Either.left(this.#fail(this.#unknownFrameType(this.#position + start, first)))
      }
      const remaining = length - start
      if (remaining < headerSize) {
        for (let i = 0; i < remaining; i++) {
          this.#header[i] = chunk[start + i]!
        }
        this.#consumed = remaining
        this.#frameStart = this.#position + start
        break
      }
      const error = this.#measure(
        this.#position + start,
        first,
        chunk[start + 1]!,
        headerSize > 2 ? chunk[start + 2]! : 0,
        headerSize > 3 ? chunk[start + 3]! : 0
      )
      if (error !== undefined) {
        return Either.left(this.#fail(error))
      }
      const emitStart = start + this.#skipHead
      if (this.#wireSize <= remaining) {
        pos = start + this.#wireSize
        onFrame(chunk.subarray(emitStart, emitStart + this.#emitSize))
      } else {
        const frame = new Uint8Array(this.#emitSize)
        const copyEnd = Math.min(length, emitStart + this.#emitSize)
        if (copyEnd > emitStart) {
          frame.set(chunk.subarray(emitStart, copyEnd))
        }
        this.#frame = frame
        this.#consumed = remaining
        break
      }
    }
    this.#position += length
    return Either.void
  }

  /** Continues the incomplete frame with the start of `chunk`; returns the chunk position after it, -1 on failure. */
  #continueFrame(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): number {
    const length = chunk.length
    const headerSize = this.#headerSize
    let pos = 0
    if (this.#frame === undefined) {
      const header = this.#header
      while (this.#consumed < headerSize && pos < length) {
        header[this.#consumed++] = chunk[pos++]!
      }
      if (this.#consumed < headerSize) {
        return length
      }
      const error = this.#measure(
        this.#frameStart,
        header[0]!,
        header[1]!,
        headerSize > 2 ? header[2]! : 0,
        headerSize > 3 ? header[3]! : 0
      )
      if (error !== undefined) {
        this.#fail(error)
        return -1
      }
      const frame = new Uint8Array(this.#emitSize)
      if (this.#skipHead === 0) {
        // TURN: the header is part of the frame (which is at least as long); RFC 4571 drops its LENGTH prefix
        frame.set(header)
      }
      this.#frame = frame
    }
    const consumed = this.#consumed
    const want = this.#wireSize - consumed
    const take = want < length - pos ? want : length - pos
    // the header is behind us (consumed >= headerSize >= skipHead): copy what falls before the ChannelData padding
    const to = Math.min(consumed + take, this.#skipHead + this.#emitSize)
    if (to > consumed) {
      this.#frame.set(chunk.subarray(pos, pos + to - consumed), consumed - this.#skipHead)
    }
    pos += take
    if (consumed + take < this.#wireSize) {
      this.#consumed = consumed + take
      return length
    }
    const frame = this.#frame
    this.#frame = undefined
    this.#consumed = 0
    onFrame(frame)
    return pos
  }

  /** Sizes the frame whose header bytes are given; returns an error if it must be refused. */
  #measure(offset: number, b0: number, b1: number, b2: number, b3: number): StreamFramingError | undefined {
    let emitSize: number
    if (this.#mode === modeRfc4571) {
      emitSize = (b0 << 8) | b1
      this.#skipHead = rfc4571HeaderSize
      this.#wireSize = rfc4571HeaderSize + emitSize
    } else if (b0 < 0x40) {
      emitSize = stunHeaderSize + ((b2 << 8) | b3)
      this.#skipHead = 0
      this.#wireSize = emitSize
    } else {
      emitSize = channelDataHeaderSize + ((b2 << 8) | b3)
      this.#skipHead = 0
      this.#wireSize = (emitSize + 3) & ~3
    }
    this.#emitSize = emitSize
    if (emitSize > this.#maxFrameSize) {
      return new StreamFramingError({
        reason: "FrameTooLarge",
        offset,
        byte: b0,
        frameSize: emitSize,
        message: `frame at stream offset ${offset} announces ${emitSize} bytes, more than the ${this.#maxFrameSize}` +
          " allowed"
      })
    }
    return undefined
  }

  #unknownFrameType(offset: number, byte: number): StreamFramingError {
    return new StreamFramingError({
      reason: "UnknownFrameType",
      offset,
      byte,
      message: `byte 0x${byte.toString(16).padStart(2, "0")} at stream offset ${offset} starts neither a STUN` +
        ` message (0x00-0x3f) nor a ChannelData message (0x40-0x${this.#maxChannelByte.toString(16)})`
    })
  }

  #fail(error: StreamFramingError): StreamFramingError {
    this.#failure = error
    this.#consumed = 0
    this.#frame = undefined
    return error
  }
}

/**
 * A deframer for a TURN (or plain STUN) connection over TCP or TLS-over-TCP, where STUN messages and padded
 * ChannelData messages are interleaved (RFC 8489 §6.2.2, RFC 8656 §12.5). It emits each STUN message whole and each
 * ChannelData message without its padding.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeTurnStreamDeframer = (options?: DeframerOptions): StreamDeframer =>
  new Deframer(
    modeTurn,
    options?.maxFrameSize ?? defaultTurnMaxFrameSize,
    options?.legacyChannelNumbers === true ? 0x7f : 0x4f
  )

/**
 * A deframer for RFC 4571 framing (ICE-TCP, RFC 6544 §3): it emits each frame's payload, without the LENGTH prefix.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRfc4571Deframer = (options?: DeframerOptions): StreamDeframer =>
  new Deframer(modeRfc4571, options?.maxFrameSize ?? defaultRfc4571MaxFrameSize)

/**
 * Writes `payload` with its RFC 4571 LENGTH prefix into `buffer` at `offset` and returns the bytes written
 * (`2 + payload.length`). Allocates nothing. Throws a `RangeError` if the payload exceeds 65535 bytes or does not
 * fit.
 *
 * @since 0.1.0
 * @category encoding
 */
export const frameRfc4571Into = (buffer: Uint8Array, offset: number, payload: Uint8Array): number => {
  const length = payload.length
  if (length > 0xffff) {
    throw new RangeError(`RFC 4571: a ${length}-byte frame exceeds the 16-bit LENGTH`)
  }
  const size = rfc4571HeaderSize + length
  if (!Number.isInteger(offset) || offset < 0 || offset + size > buffer.length) {
    throw new RangeError(`RFC 4571: ${size} bytes do not fit at offset ${offset} of a ${buffer.length}-byte buffer`)
  }
  buffer[offset] = length >>> 8
  buffer[offset + 1] = length & 0xff
  buffer.set(payload, offset + rfc4571HeaderSize)
  return size
}

/**
 * Frames `payload` for RFC 4571 (a 16-bit big-endian LENGTH, then the payload) into a new buffer. Throws a
 * `RangeError` if the payload exceeds 65535 bytes.
 *
 * @since 0.1.0
 * @category encoding
 */
export const frameRfc4571 = (payload: Uint8Array): Uint8Array => {
  if (payload.length > 0xffff) {
    throw new RangeError(`RFC 4571: a ${payload.length}-byte frame exceeds the 16-bit LENGTH`)
  }
  const buffer = new Uint8Array(rfc4571HeaderSize + payload.length)
  frameRfc4571Into(buffer, 0, payload)
  return buffer
}
