/**
 * STUN messages: the header and attribute list of RFC 8489 §5 and §14, encoded and decoded as pure functions
 * on `Uint8Array`.
 *
 * - `decode` checks the header as RFC 8489 §5 and §6.3 require (the two top bits zero, the magic cookie, a
 *   length that is a multiple of 4 and equal to the bytes present), walks the attributes with their padding,
 *   decodes each known one to a typed value, and returns `Either<DecodedStunMessage, StunDecodeError>`: it
 *   never throws, whatever the bytes. The decoded message remembers where MESSAGE-INTEGRITY,
 *   MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are, so `StunIntegrity` can verify them without copying, and
 *   lists the comprehension-required attributes it did not understand, for a 420 answer (RFC 8489 §6.3.1).
 *   Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are left out, as
 *   RFC 8489 §14.5 says; FINGERPRINT must be the last attribute (§14.7).
 * - `encode` sizes the message, allocates one buffer and writes the header and attributes into it, then
 *   appends MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT when asked, each computed over the
 *   message with the length field adjusted as RFC 8489 §14.5–§14.7 say.
 *
 * The class and method are interleaved in the 14-bit message type as RFC 8489 §5 Figure 3 shows.
 *
 * @since 0.1.0
 */
import { Data, Either, Option } from "effect"
import { hmacSha1Into } from "./internal/sha1.js"
import { hmacSha256Into } from "./internal/sha256.js"
import { allocate } from "./internal/slab.js"
import type { StunAttribute, Tag, WithTag } from "./StunAttribute.js"
import {
  AttributeType,
  decodeValue,
  isComprehensionRequired,
  validate,
  valueLength,
  writeValue
} from "./StunAttribute.js"
import type { IntegrityKey } from "./StunIntegrity.js"
import { fingerprintOf } from "./StunIntegrity.js"

/**
 * Message classes (RFC 8489 §5): the C1 C0 bits of the message type.
 *
 * @since 0.1.0
 * @category constants
 */
export const StunClass = {
  Request: 0b00, // request
  Indication: 0b01, // indication
  SuccessResponse: 0b10, // success response
  ErrorResponse: 0b11 // error response
} as const

/**
 * A message class value.
 *
 * @since 0.1.0
 * @category models
 */
export type StunClass = typeof StunClass[keyof typeof StunClass]

/**
 * Methods (IANA "STUN Methods": RFC 8489 §18.2, RFC 8656 §17, RFC 6062 §6.1).
 *
 * @since 0.1.0
 * @category constants
 */
export const StunMethod = {
  Binding: 0x001, // Binding
  Allocate: 0x003, // Allocate
  Refresh: 0x004, // Refresh
  Send: 0x006, // Send
  Data: 0x007, // Data
  CreatePermission: 0x008, // CreatePermission
  ChannelBind: 0x009, // ChannelBind
  Connect: 0x00a, // Connect (RFC 6062)
  ConnectionBind: 0x00b, // ConnectionBind (RFC 6062)
  ConnectionAttempt: 0x00c // ConnectionAttempt (RFC 6062)
} as const

/**
 * The STUN header size in bytes (RFC 8489 §5).
 *
 * @since 0.1.0
 * @category constants
 */
export const headerLength = 20

/**
 * The largest message: the 16-bit length field plus the header.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxMessageLength = 0xffff + headerLength

/**
 * A STUN message: class, method, 96-bit transaction id and attributes in order.
 *
 * @since 0.1.0
 * @category models
 */
export interface StunMessage {
  readonly class: StunClass
  readonly method: number
  readonly transactionId: Uint8Array
  readonly attributes: ReadonlyArray<StunAttribute>
}

/**
 * A message as decoded from bytes. `raw` is the datagram (not copied); the offsets point at the headers of the
 * integrity and fingerprint attributes, or are -1.
 *
 * @since 0.1.0
 * @category models
 */
export interface DecodedStunMessage extends StunMessage {
  readonly raw: Uint8Array
  readonly integrityOffset: number
  readonly integritySha256Offset: number
  readonly fingerprintOffset: number
  /** Comprehension-required attribute types (0x0000–0x7FFF) this library does not understand. */
  readonly unknownComprehensionRequired: ReadonlyArray<number>
}

/**
 * What is wrong with bytes that do not decode.
 *
 * @since 0.1.0
 * @category errors
 */
export type StunDecodeErrorReason =
  | "TooShort"
  | "NotStun"
  | "BadMagicCookie"
  | "BadLength"
  | "AttributeTruncated"
  | "InvalidAttribute"
  | "FingerprintNotLast"

/**
 * Bytes that are not a valid STUN message. `offset` is where in the bytes the problem is; `attributeType` names
 * the attribute when one is at fault.
 *
 * @since 0.1.0
 * @category errors
 */
export class StunDecodeError extends Data.TaggedError("StunDecodeError")<{
  readonly reason: StunDecodeErrorReason
  readonly offset: number
  readonly detail: string
  readonly attributeType?: number | undefined
}> {
  override get message(): string {
    return `invalid STUN message at byte ${this.offset}: ${this.reason}: ${this.detail}`
  }
}

/**
 * A message that cannot be encoded (an attribute out of range, or too large a message).
 *
 * @since 0.1.0
 * @category errors
 */
export class StunEncodeError extends Data.TaggedError("StunEncodeError")<{
  readonly reason: "InvalidHeader" | "InvalidAttribute" | "TooLarge"
  readonly detail: string
}> {
  override get message(): string {
    return `cannot encode STUN message: ${this.reason}: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Header helpers
// ---------------------------------------------------------------------------------------------------------------

/**
 * The 14-bit message type for a class and method (RFC 8489 §5, Figure 3).
 *
 * @since 0.1.0
 * @category encoding
 */
export const messageType = (cls: StunClass, method: number): number =>
  (method & 0x000f) | ((cls & 0b01) << 4) | ((method & 0x0070) << 1) | ((cls & 0b10) << 7) |
  ((method & 0x0f80) << 2)

/**
 * The class bits of a message type.
 *
 * @since 0.1.0
 * @category decoding
 */
export const classOf = (type: number): StunClass => (((type >> 4) & 0b01) | ((type >> 7) & 0b10)) as StunClass

/**
 * The method bits of a message type.
 *
 * @since 0.1.0
 * @category decoding
 */
export const methodOf = (type: number): number => (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2)

/**
 * A cheap test that a datagram looks like STUN (RFC 8489 §7: the top two bits zero, the magic cookie, the
 * length field matching the size), for demultiplexing STUN from other traffic on one socket.
 *
 * @since 0.1.0
 * @category guards
 */
export const isStun = (bytes: Uint8Array): boolean =>
  bytes.length >= headerLength && (bytes[0]! & 0xc0) === 0 && bytes[4] === 0x21 && bytes[5] === 0x12 &&
  bytes[6] === 0xa4 && bytes[7] === 0x42 && (((bytes[2]! << 8) | bytes[3]!) + headerLength) === bytes.length

// ---------------------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------------------

const noUnknown: ReadonlyArray<number> = []

const fail = (reason: StunDecodeErrorReason, offset: number, detail: string, attributeType?: number) =>
  Either.left(new StunDecodeError({ reason, offset, detail, attributeType }))

/**
 * Decodes a STUN message. Never throws: bad bytes give a `StunDecodeError` that says what and where.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (bytes: Uint8Array): Either.Either<DecodedStunMessage, StunDecodeError> => {
  const size = bytes.length
  if (size < headerLength) return fail("TooShort", 0, `${size} bytes is less than the 20-byte header`)
  const type = (bytes[0]! << 8) | bytes[1]!
  if ((type & 0xc000) !== 0) return fail("NotStun", 0, "the two most significant bits are not zero")
  if (bytes[4] !== 0x21 || bytes[5] !== 0x12 || bytes[6] !== 0xa4 || bytes[7] !== 0x42) {
    return fail("BadMagicCookie", 4, "the magic cookie is not 0x2112A442")
  }
  const length = (bytes[2]! << 8) | bytes[3]!
  if ((length & 3) !== 0) return fail("BadLength", 2, `length ${length} is not a multiple of 4`)
  if (length + headerLength !== size) {
    return fail("BadLength", 2, `length ${length} does not match the ${size - headerLength} bytes after the header`)
  }
  const attributes: Array<StunAttribute> = []
  let unknown: Array<number> | undefined
  let integrityOffset = -1
  let integritySha256Offset = -1
  let fingerprintOffset = -1
  let o = headerLength
  while (o < size) {
    if (fingerprintOffset >= 0) {
      return fail("FingerprintNotLast", o, "an attribute follows FINGERPRINT", (bytes[o]! << 8) | bytes[o + 1]!)
    }
    if (o + 4 > size) return fail("AttributeTruncated", o, "attribute header runs past the message")
    const attributeType = (bytes[o]! << 8) | bytes[o + 1]!
    const valueLen = (bytes[o + 2]! << 8) | bytes[o + 3]!
    const next = o + 4 + ((valueLen + 3) & ~3)
    if (next > size) {
      return fail("AttributeTruncated", o, `value of ${valueLen} bytes runs past the message`, attributeType)
    }
    const covered = integrityOffset < 0 && integritySha256Offset < 0
    if (
      covered || attributeType === AttributeType.Fingerprint ||
      (attributeType === AttributeType.MessageIntegritySha256 && integritySha256Offset < 0) ||
      (attributeType === AttributeType.MessageIntegrity && integrityOffset < 0)
    ) {
      const value = decodeValue(attributeType, bytes, o + 4, valueLen)
      if (typeof value === "string") return fail("InvalidAttribute", o, value, attributeType)
      if (attributeType === AttributeType.MessageIntegrity) integrityOffset = o
      else if (attributeType === AttributeType.MessageIntegritySha256) integritySha256Offset = o
      else if (attributeType === AttributeType.Fingerprint) fingerprintOffset = o
      else if (value._tag === "Unknown" && isComprehensionRequired(attributeType)) {
        ;(unknown ??= []).push(attributeType)
      }
      attributes.push(value)
    }
    o = next
  }
  return Either.right({
    class: classOf(type),
    method: methodOf(type),
    transactionId: bytes.subarray(8, 20),
    attributes,
    raw: bytes,
    integrityOffset,
    integritySha256Offset,
    fingerprintOffset,
    unknownComprehensionRequired: unknown ?? noUnknown
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------------------------

/**
 * How `encode` protects the message.
 *
 * @since 0.1.0
 * @category models
 */
export interface EncodeOptions {
  /** Append MESSAGE-INTEGRITY (and/or MESSAGE-INTEGRITY-SHA256, see `integrityAlgorithm`) with this key. */
  readonly integrity?: IntegrityKey | undefined
  /** Which integrity attributes to append: `sha1` (default), `sha256`, or `both` (RFC 8489 §9.2.4). */
  readonly integrityAlgorithm?: "sha1" | "sha256" | "both" | undefined
  /** Length of MESSAGE-INTEGRITY-SHA256, 16 to 32 in steps of 4 (RFC 8489 §14.6); default 32. */
  readonly integritySha256Length?: number | undefined
  /** Append FINGERPRINT (RFC 8489 §14.7). */
  readonly fingerprint?: boolean | undefined
  /** The byte written into attribute padding; 0 by default (RFC 5769's samples use 0x20). */
  readonly paddingByte?: number | undefined
  /**
   * Check every attribute before writing (default true). Turn it off only for attributes the program built from
   * values it has already checked (a server answering with addresses of its own sockets): an invalid value then
   * throws instead of giving a `StunEncodeError`.
   */
  readonly validate?: boolean | undefined
}

const invalidHeader = (detail: string) => Either.left(new StunEncodeError({ reason: "InvalidHeader", detail }))

/**
 * Encodes a message into a new buffer, appending MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
 * as `options` say. Attributes already in `message.attributes` (including integrity values copied from a
 * decoded message) are written as they are.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (
  message: StunMessage,
  options: EncodeOptions = {}
): Either.Either<Uint8Array, StunEncodeError> => {
  const { attributes, method, transactionId } = message
  if (transactionId.length !== 12) return invalidHeader(`transaction id is ${transactionId.length} bytes, not 12`)
  if (!(method >= 0 && method <= 0xfff && Number.isInteger(method))) return invalidHeader(`method ${method}`)
  if (!(message.class >= 0 && message.class <= 3)) return invalidHeader(`class ${message.class}`)
  const key = options.integrity
  const algorithm = options.integrityAlgorithm ?? "sha1"
  const withSha1 = key !== undefined && algorithm !== "sha256"
  const withSha256 = key !== undefined && algorithm !== "sha1"
  const sha256Length = options.integritySha256Length ?? 32
  if (withSha256 && !(sha256Length >= 16 && sha256Length <= 32 && (sha256Length & 3) === 0)) {
    return Either.left(
      new StunEncodeError({ reason: "InvalidAttribute", detail: `MESSAGE-INTEGRITY-SHA256 length ${sha256Length}` })
    )
  }
  let size = headerLength
  const check = options.validate ?? true
  for (let i = 0; i < attributes.length; i++) {
    const attribute = attributes[i]!
    const problem = check ? validate(attribute) : undefined
    if (problem !== undefined) return Either.left(new StunEncodeError({ reason: "InvalidAttribute", detail: problem }))
    const n = valueLength(attribute)
    if (n > 0xffff) return Either.left(new StunEncodeError({ reason: "TooLarge", detail: `${attribute._tag} value` }))
    size += 4 + ((n + 3) & ~3)
  }
  if (withSha1) size += 24
  if (withSha256) size += 4 + sha256Length
  if (options.fingerprint === true) size += 8
  if (size > maxMessageLength) {
    return Either.left(new StunEncodeError({ reason: "TooLarge", detail: `${size} bytes` }))
  }

  const buffer = allocate(size)
  const type = messageType(message.class, method)
  buffer[0] = type >>> 8
  buffer[1] = type
  buffer[4] = 0x21
  buffer[5] = 0x12
  buffer[6] = 0xa4
  buffer[7] = 0x42
  buffer.set(transactionId, 8)
  const pad = options.paddingByte ?? 0
  let o = headerLength
  for (let i = 0; i < attributes.length; i++) {
    const attribute = attributes[i]!
    const t = attribute._tag === "Unknown" ? attribute.type : AttributeType[attribute._tag]
    const n = valueLength(attribute)
    buffer[o] = t >>> 8
    buffer[o + 1] = t
    buffer[o + 2] = n >>> 8
    buffer[o + 3] = n
    writeValue(buffer, o + 4, attribute)
    const end = o + 4 + n
    o = o + 4 + ((n + 3) & ~3)
    if (pad !== 0) buffer.fill(pad, end, o)
  }
  if (withSha1) {
    buffer[o] = 0x00
    buffer[o + 1] = 0x08
    buffer[o + 2] = 0
    buffer[o + 3] = 20
    hmacSha1Into(key.sha1, buffer, 0, o, o + 24 - headerLength, buffer, o + 4)
    o += 24
  }
  if (withSha256) {
    buffer[o] = 0x00
    buffer[o + 1] = 0x1c
    buffer[o + 2] = 0
    buffer[o + 3] = sha256Length
    if (sha256Length === 32) {
      hmacSha256Into(key.sha256, buffer, 0, o, o + 4 + 32 - headerLength, buffer, o + 4)
    } else {
      const mac = new Uint8Array(32)
      hmacSha256Into(key.sha256, buffer, 0, o, o + 4 + sha256Length - headerLength, mac, 0)
      buffer.set(mac.subarray(0, sha256Length), o + 4)
    }
    o += 4 + sha256Length
  }
  const length = size - headerLength
  buffer[2] = length >>> 8
  buffer[3] = length
  if (options.fingerprint === true) {
    const crc = fingerprintOf(buffer, o)
    buffer[o] = 0x80
    buffer[o + 1] = 0x28
    buffer[o + 2] = 0
    buffer[o + 3] = 4
    buffer[o + 4] = crc >>> 24
    buffer[o + 5] = crc >>> 16
    buffer[o + 6] = crc >>> 8
    buffer[o + 7] = crc
  }
  return Either.right(buffer)
}

/**
 * Like {@link encode} for messages the program built itself and knows to be valid: throws a
 * `StunEncodeError` otherwise.
 *
 * @since 0.1.0
 * @category encoding
 */
export const unsafeEncode = (message: StunMessage, options?: EncodeOptions): Uint8Array => {
  const result = encode(message, options)
  if (Either.isLeft(result)) throw result.left
  return result.right
}

// ---------------------------------------------------------------------------------------------------------------
// Constructors and getters
// ---------------------------------------------------------------------------------------------------------------

/**
 * Builds a message.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  cls: StunClass,
  method: number,
  transactionId: Uint8Array,
  attributes: ReadonlyArray<StunAttribute> = []
): StunMessage => ({ class: cls, method, transactionId, attributes })

/**
 * The first attribute with the given tag, or `undefined` (the plain form, for hot paths).
 *
 * @since 0.1.0
 * @category getters
 */
export const find = <T extends Tag>(message: StunMessage, tag: T): WithTag<T> | undefined => {
  const attributes = message.attributes
  for (let i = 0; i < attributes.length; i++) {
    if (attributes[i]!._tag === tag) return attributes[i] as WithTag<T>
  }
  return undefined
}

/**
 * The first attribute with the given tag. RFC 8489 §14: when an attribute repeats, only the first one counts.
 *
 * @since 0.1.0
 * @category getters
 */
export const get = <T extends Tag>(message: StunMessage, tag: T): Option.Option<WithTag<T>> =>
  Option.fromNullable(find(message, tag))

/**
 * Whether the message has an attribute with the given tag.
 *
 * @since 0.1.0
 * @category getters
 */
export const has = (message: StunMessage, tag: Tag): boolean => find(message, tag) !== undefined

const hex = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/**
 * The transaction id as 24 lower-case hex digits (a map key, or for logs).
 *
 * @since 0.1.0
 * @category getters
 */
export const transactionIdHex = (transactionId: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < transactionId.length; i++) out += hex[transactionId[i]!]
  return out
}

const classNames = ["request", "indication", "success response", "error response"] as const
const methodNames = new Map<number, string>(Object.entries(StunMethod).map(([name, value]) => [value, name]))

/**
 * A one-line description for logs: `Binding success response 0a1b…`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (message: StunMessage): string =>
  `${methodNames.get(message.method) ?? `method 0x${message.method.toString(16)}`} ${classNames[message.class]} ${
    transactionIdHex(message.transactionId)
  }`
