/**
 * The TURN ChannelData message: the 4-byte-header framing a client and a TURN server use instead of Send and Data
 * indications once a channel is bound to a peer (RFC 8656 §12).
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Channel Number        |            Length             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * /                       Application Data                        /
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * Implements:
 * - RFC 8656 §12: channel numbers 0x4000 through 0x4FFF (RFC 8656 narrowed RFC 5766's 0x4000–0x7FFF so that the
 *   first byte, 64–79, never collides with the other protocols of RFC 7983; 0x5000–0xFFFF are reserved).
 * - RFC 8656 §12.4: the message layout; Length counts the application data only, 0 is a valid length.
 * - RFC 8656 §12.5: padding to a multiple of four bytes, mandatory over TCP and TLS-over-TCP, optional over UDP; the
 *   padding is not counted in Length. `encode` and `encodeInto` pad on request and write zero padding bytes.
 * - RFC 8656 §12.6: a receiver discards a ChannelData message whose datagram is shorter than 4 + Length.
 *
 * What `decode` accepts, precisely. A message is `4 + Length` bytes, and the only bytes that may legitimately follow
 * it in the same datagram are its padding, which brings the total to `4 + Length` rounded up to a multiple of four
 * (so 0 to 3 bytes, and exactly as many as that rounding needs: after a 4 + 8 = 12-byte message no trailing byte
 * is padding). `decode` therefore accepts `4 + Length <= bytes.length <= roundUp4(4 + Length)`, ignores the
 * padding's content (the RFC gives it no meaning and STUN receivers ignore padding), and rejects anything longer
 * with `LengthMismatch`: more trailing bytes cannot be padding, so the Length field and the datagram disagree. Over
 * TCP the stream deframer (`StreamFraming`) hands over the message without its padding.
 *
 * Decoding never throws and never copies: `data` is a view into the input. Encoding into a caller's buffer
 * (`encodeInto`) allocates nothing, for relays forwarding packets. Encoding an invalid channel number or more than
 * 65535 bytes of data is a programming error and throws a `RangeError`.
 *
 * @since 0.1.0
 */
import { Data, Either } from "effect"

/**
 * The lowest channel number a client may bind: RFC 8656 §12 ("0x4000 through 0x4FFF: These values are the allowed
 * channel numbers").
 *
 * @since 0.1.0
 * @category constants
 */
export const minChannelNumber = 0x4000

/**
 * The highest channel number a client may bind: RFC 8656 §12.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxChannelNumber = 0x4fff

/**
 * Size of the ChannelData header (Channel Number and Length): RFC 8656 §12.4.
 *
 * @since 0.1.0
 * @category constants
 */
export const headerSize = 4

/**
 * The largest application data a ChannelData message can carry: the 16-bit Length field of RFC 8656 §12.4.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxDataLength = 0xffff

/**
 * A decoded ChannelData message. `data` is a view into the decoded bytes, not a copy: copy it if it must outlive
 * the buffer it came from.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChannelData {
  readonly channel: number
  readonly data: Uint8Array
}

/**
 * Options for `encode`.
 *
 * @since 0.1.0
 * @category models
 */
export interface EncodeOptions {
  /**
   * Pad the message to a multiple of four bytes (RFC 8656 §12.5): required over TCP and TLS-over-TCP, optional over
   * UDP. Default `false`.
   */
  readonly padded?: boolean | undefined
}

/**
 * Why bytes are not a ChannelData message, and where. Offsets are relative to the start of the decoded bytes:
 * - `Truncated`: fewer than the 4 header bytes; `offset` is the input's length, where the header ran out.
 * - `InvalidChannelNumber`: the channel number is outside 0x4000–0x4FFF; `offset` 0.
 * - `LengthMismatch`: the Length field claims more data than the input holds (`offset` 2, the Length field), or the
 *   input has more trailing bytes than padding can explain (`offset` is the first byte beyond the padded size).
 *
 * @since 0.1.0
 * @category errors
 */
export class TurnChannelDataDecodeError extends Data.TaggedError("TurnChannelDataDecodeError")<{
  readonly reason: "Truncated" | "InvalidChannelNumber" | "LengthMismatch"
  readonly offset: number
  readonly message: string
}> {}

/**
 * Whether `channel` is a channel number a client may bind (0x4000–0x4FFF, RFC 8656 §12).
 *
 * @since 0.1.0
 * @category guards
 */
export const isValidChannelNumber = (channel: number): boolean =>
  Number.isInteger(channel) && channel >= minChannelNumber && channel <= maxChannelNumber

/**
 * Whether a packet looks like ChannelData: at least the 4 header bytes and a first byte of 0x40–0x4F (64–79, the
 * RFC 7983 "TURN Channel" range). This only demultiplexes; `decode` validates the rest.
 *
 * @since 0.1.0
 * @category guards
 */
export const isChannelData = (bytes: Uint8Array): boolean => bytes.length >= headerSize && (bytes[0]! & 0xf0) === 0x40

/**
 * The number of bytes `encode` produces for `dataLength` bytes of application data: `4 + dataLength`, rounded up to
 * a multiple of four when `padded` (RFC 8656 §12.5).
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodedSize = (dataLength: number, padded: boolean): number =>
  padded ? (headerSize + dataLength + 3) & ~3 : headerSize + dataLength

const checkEncodable = (channel: number, dataLength: number): void => {
  if (!isValidChannelNumber(channel)) {
    throw new RangeError(`ChannelData: channel number ${channel} is outside 0x4000-0x4FFF (RFC 8656 §12)`)
  }
  if (dataLength > maxDataLength) {
    throw new RangeError(`ChannelData: ${dataLength} bytes of data exceed the 16-bit Length field (RFC 8656 §12.4)`)
  }
}

const write = (buffer: Uint8Array, offset: number, channel: number, data: Uint8Array, size: number): void => {
  const length = data.length
  buffer[offset] = channel >>> 8
  buffer[offset + 1] = channel & 0xff
  buffer[offset + 2] = length >>> 8
  buffer[offset + 3] = length & 0xff
  buffer.set(data, offset + headerSize)
  const end = offset + headerSize + length
  if (offset + size > end) {
    buffer.fill(0, end, offset + size)
  }
}

/**
 * Writes a ChannelData message for `channel` carrying `data` into `buffer` at `offset`, padded to a multiple of four
 * bytes with zeros when `padded`, and returns the number of bytes written (`encodedSize(data.length, padded)`).
 * Allocates nothing. Throws a `RangeError` on an invalid channel number, more than 65535 bytes of data, or a buffer
 * too small.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeInto = (
  buffer: Uint8Array,
  offset: number,
  channel: number,
  data: Uint8Array,
  padded: boolean
): number => {
  checkEncodable(channel, data.length)
  const size = encodedSize(data.length, padded)
  if (!Number.isInteger(offset) || offset < 0 || offset + size > buffer.length) {
    throw new RangeError(`ChannelData: ${size} bytes do not fit at offset ${offset} of a ${buffer.length}-byte buffer`)
  }
  write(buffer, offset, channel, data, size)
  return size
}

/**
 * Encodes a ChannelData message for `channel` carrying `data` into a new buffer; with `padded` the message is padded
 * to a multiple of four bytes (RFC 8656 §12.5: mandatory over TCP and TLS-over-TCP, optional over UDP). Throws a
 * `RangeError` on an invalid channel number or more than 65535 bytes of data.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (channel: number, data: Uint8Array, options?: EncodeOptions): Uint8Array => {
  const padded = options?.padded === true
  checkEncodable(channel, data.length)
  const size = encodedSize(data.length, padded)
  const buffer = new Uint8Array(size)
  write(buffer, 0, channel, data, size)
  return buffer
}

/**
 * Decodes a ChannelData message (RFC 8656 §12.4, §12.6). Accepts `4 + Length` bytes optionally followed by the
 * padding that rounds the message up to a multiple of four bytes (whose content is ignored); see the module
 * documentation for exactly what is rejected. `data` is a view into `bytes`. Never throws.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (bytes: Uint8Array): Either.Either<ChannelData, TurnChannelDataDecodeError> => {
  const available = bytes.length
  if (available < headerSize) {
    return Either.left(
      new TurnChannelDataDecodeError({
        reason: "Truncated",
        offset: available,
        message: `ChannelData needs a 4-byte header, got ${available} bytes`
      })
    )
  }
  const channel = (bytes[0]! << 8) | bytes[1]!
  if (channel < minChannelNumber || channel > maxChannelNumber) {
    return Either.left(
      new TurnChannelDataDecodeError({
        reason: "InvalidChannelNumber",
        offset: 0,
        message: `channel number 0x${channel.toString(16).padStart(4, "0")} is outside 0x4000-0x4fff`
      })
    )
  }
  const length = (bytes[2]! << 8) | bytes[3]!
  const end = headerSize + length
  if (end > available) {
    return Either.left(
      new TurnChannelDataDecodeError({
        reason: "LengthMismatch",
        offset: 2,
        message: `Length field claims ${length} bytes of data, only ${available - headerSize} present`
      })
    )
  }
  const paddedEnd = (end + 3) & ~3
  if (available > paddedEnd) {
    return Either.left(
      new TurnChannelDataDecodeError({
        reason: "LengthMismatch",
        offset: paddedEnd,
        message: `${available - end} bytes follow a ${end}-byte ChannelData message; at most ${
          paddedEnd - end
        } may be padding`
      })
    )
  }
  return Either.right({ channel, data: bytes.subarray(headerSize, end) })
}
