/**
 * The competitors' halves of the codec benchmark. For each peer implementation, and for each operation, this file
 * has a function that does the job through that peer's public API.
 *
 * Peers:
 * - `stun`: the npm package `stun` (nodertc/stun) 2.1.0.
 * - `werift-ice`: the STUN message code in werift-ice 0.2.3 (`lib/ice/src/stun/message.js`, which re-exports
 *   `lib/ice-server/src/stun/message.js`).
 *
 * Every entry implements the same `Peer` interface and encodes the same inputs (`messages` below), so effect-ice's
 * own entry can be added next to them.
 *
 * What `decodeVerify` means here: true iff the bytes parse, MESSAGE-INTEGRITY is present and verifies under `key`,
 * and FINGERPRINT verifies if present. A missing FINGERPRINT is allowed, because RFC 5769 2.4 has none. What each
 * peer actually checks, and the ways it differs from that definition, is documented on each peer below.
 */
import { createRequire } from "node:module"
import { classes, methods } from "werift-ice/lib/ice/src/stun/const.js"
import { Message, parseMessage } from "werift-ice/lib/ice/src/stun/message.js"
import { sampleIpv4Response, sampleRequest } from "../test/fixtures/rfc5769.js"

// ---------------------------------------------------------------------------------------------------------------
// Shared inputs
// ---------------------------------------------------------------------------------------------------------------

const hexBytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, "hex"))

/**
 * What every implementation encodes. Each `encode*` call builds the whole message from these values: attributes,
 * MESSAGE-INTEGRITY (HMAC-SHA1, key = the password's UTF-8 bytes) and FINGERPRINT. Transaction ids are fixed, so
 * every implementation's output is deterministic.
 */
export const messages = {
  /** (a) RFC 5769 2.1: Binding request. */
  request: {
    transactionId: hexBytes(sampleRequest.transactionId),
    software: sampleRequest.software,
    priority: sampleRequest.priority,
    iceControlled: sampleRequest.iceControlled,
    username: sampleRequest.username,
    password: sampleRequest.password
  },
  /** (b) RFC 5769 2.2: Binding success response. */
  response: {
    transactionId: hexBytes(sampleIpv4Response.transactionId),
    software: sampleIpv4Response.software,
    mappedAddress: sampleIpv4Response.mappedAddress.address,
    mappedPort: sampleIpv4Response.mappedAddress.port,
    password: sampleIpv4Response.password
  },
  /** (c) A typical ICE connectivity check from the controlling agent. */
  check: {
    transactionId: hexBytes("a1b2c3d4e5f60718293a4b5c"),
    username: "abcd:efgh",
    priority: 1853824767,
    iceControlling: 0x0102030405060708n,
    /** 22 characters, the length browsers use for ice-pwd. */
    password: "q1pAU5zZzH2d3R7tV0wLxY"
  }
} as const

/**
 * The attribute order each encoder writes. 2.1 and 2.2 use the RFC's order. The byte values still differ from the
 * RFC: these encoders pad with zeros where the RFC pads with 0x20, and that changes MESSAGE-INTEGRITY and FINGERPRINT.
 */
export const attributeOrder = {
  request: ["SOFTWARE", "PRIORITY", "ICE-CONTROLLED", "USERNAME", "MESSAGE-INTEGRITY", "FINGERPRINT"],
  response: ["SOFTWARE", "XOR-MAPPED-ADDRESS", "MESSAGE-INTEGRITY", "FINGERPRINT"],
  check: ["USERNAME", "PRIORITY", "ICE-CONTROLLING", "USE-CANDIDATE", "MESSAGE-INTEGRITY", "FINGERPRINT"]
} as const

export interface Peer {
  readonly name: string
  /** Parse a message into the peer's own representation. */
  readonly decode: (bytes: Uint8Array) => unknown
  /**
   * Parse, then verify MESSAGE-INTEGRITY (HMAC-SHA1 under `key`) and FINGERPRINT (if present). `key` is the password's
   * UTF-8 bytes for short-term credentials, or MD5(username:realm:password) for long-term ones.
   */
  readonly decodeVerify: (bytes: Uint8Array, key: Uint8Array) => boolean
  /** Encode `messages.request`, a complete wire message with MESSAGE-INTEGRITY and FINGERPRINT. */
  readonly encodeRequest: () => Uint8Array
  /** Encode `messages.response`. */
  readonly encodeResponse: () => Uint8Array
  /** Encode `messages.check`. */
  readonly encodeCheck: () => Uint8Array
}

/** A Buffer view on the same memory (no copy). Both peers read through Buffer methods, so they need one. */
const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const uint64Buffer = (value: bigint): Buffer => {
  const buffer = Buffer.allocUnsafe(8)
  buffer.writeBigUInt64BE(value)
  return buffer
}

// ---------------------------------------------------------------------------------------------------------------
// npm `stun` 2.1.0
// ---------------------------------------------------------------------------------------------------------------

/** The part of the `stun` package's API used here. The package ships no type declarations. */
interface StunAttribute {
  readonly type: number
  readonly value: unknown
}
interface StunMessage {
  readonly type: number
  readonly transactionId: Buffer
  getAttribute(type: number): StunAttribute | undefined
}
interface StunRequest extends StunMessage {
  addSoftware(software: string): unknown
  addPriority(priority: number): unknown
  addIceControlled(tieBreaker: Buffer): unknown
  addIceControlling(tieBreaker: Buffer): unknown
  addUseCandidate(): unknown
  addUsername(username: string): unknown
  addXorAddress(address: string, port: number): unknown
  addMessageIntegrity(key: string | Buffer): boolean
  addFingerprint(): boolean
  toBuffer(): Buffer
}
interface StunModule {
  createMessage(type: number, transactionId?: Buffer): StunRequest
  decode(bytes: Buffer): StunMessage
  validateMessageIntegrity(message: StunMessage, key: string | Buffer): boolean
  validateFingerprint(message: StunMessage): boolean
  readonly constants: Readonly<Record<string, number>>
}

const stun = createRequire(import.meta.url)("stun") as StunModule
const STUN_BINDING_REQUEST = stun.constants.STUN_BINDING_REQUEST!
const STUN_BINDING_RESPONSE = stun.constants.STUN_BINDING_RESPONSE!
const STUN_ATTR_FINGERPRINT = stun.constants.STUN_ATTR_FINGERPRINT!

/**
 * npm `stun` 2.1.0.
 *
 * decode: `stun.decode(buffer)` parses the header and every attribute eagerly, using `binary-data` schemas, into a
 *   `StunResponse`. XOR addresses are un-XORed into strings, integers are read, strings stay Buffers. It does not
 *   look at the MESSAGE-INTEGRITY or FINGERPRINT values, and it does not check the magic cookie. It throws on a
 *   truncated message.
 *
 * decodeVerify: `stun.decode`, then `stun.validateMessageIntegrity(message, key)`, then `stun.validateFingerprint`
 *   when a FINGERPRINT attribute is present. Both validators RE-ENCODE the decoded message and hash that, not the
 *   bytes that arrived:
 *   - Padding is re-encoded as zeros. A message whose padding is not zero therefore fails both checks even when it
 *     is valid. The RFC 5769 vectors 2.1, 2.2 and 2.3 pad with 0x20, and `stun` rejects them. The opposite case
 *     also happens: a changed padding byte, or a changed reserved first byte of an (XOR-)address value, goes
 *     unnoticed, because re-encoding writes zero there again. Flipping every byte in turn confirms this: only
 *     padding bytes and address reserved bytes get through. Neither carries data.
 *   - validateMessageIntegrity assumes MESSAGE-INTEGRITY is the last attribute, or the second to last followed by
 *     FINGERPRINT. It cuts 24 (or 32) bytes off the end of the re-encoding. If other attributes follow
 *     MESSAGE-INTEGRITY, it hashes the wrong range and returns false. That fails safe.
 *   - validateFingerprint returns false when FINGERPRINT is missing, or when the message is RFC 3489 (no magic
 *     cookie). So this wrapper only calls it when FINGERPRINT is present.
 *   - Neither validator compares the header length field with the datagram length. binary-data reads `length` bytes
 *     of attributes, and trailing bytes are ignored.
 *
 * encode: `createMessage(type, transactionId)`, then the `add*` methods, then `addMessageIntegrity(password)`,
 *   `addFingerprint()` and `toBuffer()`. Each of the last three serializes the whole message again, so one encode
 *   costs three full serializations. `addPriority` rejects values of 2^31 and above (it checks for a signed int32).
 *   ICE priorities stay below 2^31, so that is not a limit in practice. ICE-CONTROLLED and ICE-CONTROLLING take an
 *   8-byte Buffer, not a number.
 */
export const stunPeer: Peer = {
  name: "stun",
  decode: (bytes) => stun.decode(asBuffer(bytes)),
  decodeVerify: (bytes, key) => {
    try {
      const message = stun.decode(asBuffer(bytes))
      if (!stun.validateMessageIntegrity(message, asBuffer(key))) return false
      return message.getAttribute(STUN_ATTR_FINGERPRINT) === undefined || stun.validateFingerprint(message)
    } catch {
      return false
    }
  },
  encodeRequest: () => {
    const m = messages.request
    const message = stun.createMessage(STUN_BINDING_REQUEST, Buffer.from(m.transactionId))
    message.addSoftware(m.software)
    message.addPriority(m.priority)
    message.addIceControlled(uint64Buffer(m.iceControlled))
    message.addUsername(m.username)
    message.addMessageIntegrity(m.password)
    message.addFingerprint()
    return message.toBuffer()
  },
  encodeResponse: () => {
    const m = messages.response
    const message = stun.createMessage(STUN_BINDING_RESPONSE, Buffer.from(m.transactionId))
    message.addSoftware(m.software)
    message.addXorAddress(m.mappedAddress, m.mappedPort)
    message.addMessageIntegrity(m.password)
    message.addFingerprint()
    return message.toBuffer()
  },
  encodeCheck: () => {
    const m = messages.check
    const message = stun.createMessage(STUN_BINDING_REQUEST, Buffer.from(m.transactionId))
    message.addUsername(m.username)
    message.addPriority(m.priority)
    message.addIceControlling(uint64Buffer(m.iceControlling))
    message.addUseCandidate()
    message.addMessageIntegrity(m.password)
    message.addFingerprint()
    return message.toBuffer()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// werift-ice 0.2.3
// ---------------------------------------------------------------------------------------------------------------

/**
 * werift-ice 0.2.3 (`parseMessage` and `Message` from `lib/ice/src/stun/message.js`).
 *
 * decode: `parseMessage(buffer)` first calls `isStunMessage`: at least 20 bytes, top two bits zero, magic cookie,
 *   length a multiple of 4, and the datagram exactly 20 + length bytes. Then it walks every attribute and unpacks the
 *   ones it knows into an `[name, value]` list. Unknown ones are kept raw. It returns `undefined` when the message
 *   does not parse.
 *   FINGERPRINT is ALWAYS verified during parse when present: a wrong CRC returns `undefined`. So werift's plain
 *   decode includes a CRC-32 over the message, which the other peers' decode does not do.
 *
 * decodeVerify: `parseMessage(buffer, key)`. Given a key, parse also requires MESSAGE-INTEGRITY, and returns
 *   `undefined` if it is missing or wrong. Both checks hash the RECEIVED bytes, with the header length rewritten as
 *   RFC 5389 requires, so non-zero padding is fine and the RFC 5769 vectors verify. A missing FINGERPRINT is
 *   accepted. Flipping every byte in turn is caught everywhere except in the FINGERPRINT type's high byte:
 *   0x8028 becomes 0x8128, an unknown comprehension-optional attribute, so the message counts as having no
 *   FINGERPRINT. MESSAGE-INTEGRITY still verifies, and RFC 5389 says to ignore unknown attributes after it, so this
 *   is correct. Attributes after MESSAGE-INTEGRITY (other than FINGERPRINT) are still parsed and returned, although
 *   MESSAGE-INTEGRITY does not cover them. Duplicate attributes overwrite one another: the last value wins, except
 *   that each MESSAGE-INTEGRITY or FINGERPRINT is checked where it appears.
 *
 * encode: `new Message(method, class, transactionId)`, then `setAttribute(name, value)` for each attribute, then
 *   `addMessageIntegrity(key)`, `addFingerprint()` and `.bytes`. `.bytes` serializes every attribute each time it is
 *   read. `addMessageIntegrity` reads it twice and `addFingerprint` once, so one encode costs four full
 *   serializations. Padding is written as zeros.
 */
export const weriftPeer: Peer = {
  name: "werift-ice",
  decode: (bytes) => parseMessage(asBuffer(bytes)),
  decodeVerify: (bytes, key) => {
    try {
      return parseMessage(asBuffer(bytes), asBuffer(key)) !== undefined
    } catch {
      return false
    }
  },
  encodeRequest: () => {
    const m = messages.request
    const message = new Message(methods.BINDING, classes.REQUEST, Buffer.from(m.transactionId))
    message
      .setAttribute("SOFTWARE", m.software)
      .setAttribute("PRIORITY", m.priority)
      .setAttribute("ICE-CONTROLLED", m.iceControlled)
      .setAttribute("USERNAME", m.username)
    return message.addMessageIntegrity(Buffer.from(m.password, "utf8")).addFingerprint().bytes
  },
  encodeResponse: () => {
    const m = messages.response
    const message = new Message(methods.BINDING, classes.RESPONSE, Buffer.from(m.transactionId))
    message
      .setAttribute("SOFTWARE", m.software)
      .setAttribute("XOR-MAPPED-ADDRESS", [m.mappedAddress, m.mappedPort])
    return message.addMessageIntegrity(Buffer.from(m.password, "utf8")).addFingerprint().bytes
  },
  encodeCheck: () => {
    const m = messages.check
    const message = new Message(methods.BINDING, classes.REQUEST, Buffer.from(m.transactionId))
    message
      .setAttribute("USERNAME", m.username)
      .setAttribute("PRIORITY", m.priority)
      .setAttribute("ICE-CONTROLLING", m.iceControlling)
      .setAttribute("USE-CANDIDATE", null)
    return message.addMessageIntegrity(Buffer.from(m.password, "utf8")).addFingerprint().bytes
  }
}

/** The competitor peers, in the order the benchmark table lists them. effect-ice's own entry is added by the bench. */
export const peers: ReadonlyArray<Peer> = [stunPeer, weriftPeer]
