/**
 * STUN attributes as typed values, and their wire codec.
 *
 * Implements the attribute formats of RFC 8489 §14 (MAPPED-ADDRESS, XOR-MAPPED-ADDRESS, USERNAME, USERHASH,
 * MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT, ERROR-CODE, REALM, NONCE, PASSWORD-ALGORITHM(S),
 * UNKNOWN-ATTRIBUTES, SOFTWARE, ALTERNATE-SERVER, ALTERNATE-DOMAIN), TURN's of RFC 8656 §18 (CHANNEL-NUMBER,
 * LIFETIME, XOR-PEER-ADDRESS, DATA, XOR-RELAYED-ADDRESS, REQUESTED-ADDRESS-FAMILY, EVEN-PORT,
 * REQUESTED-TRANSPORT, DONT-FRAGMENT, RESERVATION-TOKEN, ADDITIONAL-ADDRESS-FAMILY, ADDRESS-ERROR-CODE, ICMP),
 * RFC 5780 §7 (CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS, RESPONSE-PORT, PADDING), ICE's of RFC 8445 §16.1
 * (PRIORITY, USE-CANDIDATE, ICE-CONTROLLED, ICE-CONTROLLING) and the legacy RFC 3489 SOURCE-ADDRESS and
 * CHANGED-ADDRESS. Any other attribute is kept as `Unknown` with its raw value, so a message re-encodes as it
 * came and a server can list unknown comprehension-required attributes in a 420 answer.
 *
 * Values that are bytes (`Data`, `MessageIntegrity`, …) are views into the decoded datagram: copy them if they
 * must outlive it.
 *
 * @since 0.1.0
 */
import { Option } from "effect"
import { readUtf8, utf8Length, writeUtf8 } from "./internal/utf8.js"
import type { Family, SocketAddress } from "./TransportAddress.js"
import { formatIPv4, formatIPv6, parseIPv4Into, parseIPv6 } from "./TransportAddress.js"

/**
 * Attribute type codes (IANA "STUN Attributes" registry).
 *
 * @since 0.1.0
 * @category constants
 */
export const AttributeType = {
  MappedAddress: 0x0001, // MAPPED-ADDRESS
  ChangeRequest: 0x0003, // CHANGE-REQUEST (RFC 5780)
  SourceAddress: 0x0004, // SOURCE-ADDRESS (RFC 3489, legacy)
  ChangedAddress: 0x0005, // CHANGED-ADDRESS (RFC 3489, legacy)
  Username: 0x0006, // USERNAME
  MessageIntegrity: 0x0008, // MESSAGE-INTEGRITY
  ErrorCode: 0x0009, // ERROR-CODE
  UnknownAttributes: 0x000a, // UNKNOWN-ATTRIBUTES
  ChannelNumber: 0x000c, // CHANNEL-NUMBER (RFC 8656)
  Lifetime: 0x000d, // LIFETIME (RFC 8656)
  XorPeerAddress: 0x0012, // XOR-PEER-ADDRESS (RFC 8656)
  Data: 0x0013, // DATA (RFC 8656)
  Realm: 0x0014, // REALM
  Nonce: 0x0015, // NONCE
  XorRelayedAddress: 0x0016, // XOR-RELAYED-ADDRESS (RFC 8656)
  RequestedAddressFamily: 0x0017, // REQUESTED-ADDRESS-FAMILY (RFC 8656)
  EvenPort: 0x0018, // EVEN-PORT (RFC 8656)
  RequestedTransport: 0x0019, // REQUESTED-TRANSPORT (RFC 8656)
  DontFragment: 0x001a, // DONT-FRAGMENT (RFC 8656)
  MessageIntegritySha256: 0x001c, // MESSAGE-INTEGRITY-SHA256
  PasswordAlgorithm: 0x001d, // PASSWORD-ALGORITHM
  Userhash: 0x001e, // USERHASH
  XorMappedAddress: 0x0020, // XOR-MAPPED-ADDRESS
  ReservationToken: 0x0022, // RESERVATION-TOKEN (RFC 8656)
  Priority: 0x0024, // PRIORITY (RFC 8445)
  UseCandidate: 0x0025, // USE-CANDIDATE (RFC 8445)
  Padding: 0x0026, // PADDING (RFC 5780)
  ResponsePort: 0x0027, // RESPONSE-PORT (RFC 5780)
  AdditionalAddressFamily: 0x8000, // ADDITIONAL-ADDRESS-FAMILY (RFC 8656)
  AddressErrorCode: 0x8001, // ADDRESS-ERROR-CODE (RFC 8656)
  PasswordAlgorithms: 0x8002, // PASSWORD-ALGORITHMS
  AlternateDomain: 0x8003, // ALTERNATE-DOMAIN
  Icmp: 0x8004, // ICMP (RFC 8656)
  Software: 0x8022, // SOFTWARE
  AlternateServer: 0x8023, // ALTERNATE-SERVER
  Fingerprint: 0x8028, // FINGERPRINT
  IceControlled: 0x8029, // ICE-CONTROLLED (RFC 8445)
  IceControlling: 0x802a, // ICE-CONTROLLING (RFC 8445)
  ResponseOrigin: 0x802b, // RESPONSE-ORIGIN (RFC 5780)
  OtherAddress: 0x802c // OTHER-ADDRESS (RFC 5780)
} as const

/**
 * Password algorithm numbers (RFC 8489 §18.5).
 *
 * @since 0.1.0
 * @category constants
 */
export const PasswordAlgorithmNumber = {
  Md5: 0x0001, // MD5
  Sha256: 0x0002 // SHA-256
} as const

/**
 * The magic cookie, fixed in every RFC 5389/8489 message header (RFC 8489 §5).
 *
 * @since 0.1.0
 * @category constants
 */
export const magicCookie = 0x2112a442

/**
 * Whether an attribute type is comprehension-required (0x0000–0x7FFF, RFC 8489 §14): an agent that does not
 * understand one must reject the message (a server with 420).
 *
 * @since 0.1.0
 * @category predicates
 */
export const isComprehensionRequired = (type: number): boolean => type < 0x8000

/** Maximum USERNAME length in bytes (RFC 8489 §14.3: "fewer than 509 bytes"; RFC 5389 allowed 513). */
const maxUsernameBytes = 513
/** Maximum REALM/NONCE/SOFTWARE/reason length: fewer than 128 characters, at most 763 bytes (RFC 8489 §14). */
const maxTextBytes = 763

// ---------------------------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------------------------

/**
 * Address-valued attributes.
 *
 * @since 0.1.0
 * @category models
 */
export interface AddressAttribute<Tag extends string> {
  readonly _tag: Tag
  readonly address: SocketAddress
}

/**
 * Text-valued attributes (UTF-8 on the wire).
 *
 * @since 0.1.0
 * @category models
 */
export interface TextAttribute<Tag extends string> {
  readonly _tag: Tag
  readonly value: string
}

/**
 * Attributes whose value is opaque bytes.
 *
 * @since 0.1.0
 * @category models
 */
export interface BytesAttribute<Tag extends string> {
  readonly _tag: Tag
  readonly value: Uint8Array
}

/**
 * Attributes without a value (flags).
 *
 * @since 0.1.0
 * @category models
 */
export interface FlagAttribute<Tag extends string> {
  readonly _tag: Tag
}

/**
 * ERROR-CODE (RFC 8489 §14.8): a code 300–699 and a UTF-8 reason phrase.
 *
 * @since 0.1.0
 * @category models
 */
export interface ErrorCode {
  readonly _tag: "ErrorCode"
  readonly code: number
  readonly reason: string
}

/**
 * UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): the attribute types a server did not understand.
 *
 * @since 0.1.0
 * @category models
 */
export interface UnknownAttributes {
  readonly _tag: "UnknownAttributes"
  readonly types: ReadonlyArray<number>
}

/**
 * CHANGE-REQUEST (RFC 5780 §7.2).
 *
 * @since 0.1.0
 * @category models
 */
export interface ChangeRequest {
  readonly _tag: "ChangeRequest"
  readonly changeIp: boolean
  readonly changePort: boolean
}

/**
 * RESPONSE-PORT (RFC 5780 §7.5).
 *
 * @since 0.1.0
 * @category models
 */
export interface ResponsePort {
  readonly _tag: "ResponsePort"
  readonly port: number
}

/**
 * PADDING (RFC 5780 §7.6): the value's bytes carry no meaning; only the length is kept.
 *
 * @since 0.1.0
 * @category models
 */
export interface Padding {
  readonly _tag: "Padding"
  readonly length: number
}

/**
 * CHANNEL-NUMBER (RFC 8656 §18.1).
 *
 * @since 0.1.0
 * @category models
 */
export interface ChannelNumber {
  readonly _tag: "ChannelNumber"
  readonly channel: number
}

/**
 * LIFETIME (RFC 8656 §18.2), in seconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lifetime {
  readonly _tag: "Lifetime"
  readonly seconds: number
}

/**
 * REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6) and ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11).
 *
 * @since 0.1.0
 * @category models
 */
export interface AddressFamilyAttribute<Tag extends string> {
  readonly _tag: Tag
  readonly family: Family
}

/**
 * EVEN-PORT (RFC 8656 §18.7).
 *
 * @since 0.1.0
 * @category models
 */
export interface EvenPort {
  readonly _tag: "EvenPort"
  readonly reserveNext: boolean
}

/**
 * REQUESTED-TRANSPORT (RFC 8656 §18.8): an IANA protocol number (17 is UDP).
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestedTransport {
  readonly _tag: "RequestedTransport"
  readonly protocol: number
}

/**
 * ADDRESS-ERROR-CODE (RFC 8656 §18.12).
 *
 * @since 0.1.0
 * @category models
 */
export interface AddressErrorCode {
  readonly _tag: "AddressErrorCode"
  readonly family: Family
  readonly code: number
  readonly reason: string
}

/**
 * ICMP (RFC 8656 §18.13).
 *
 * @since 0.1.0
 * @category models
 */
export interface Icmp {
  readonly _tag: "Icmp"
  readonly type: number
  readonly code: number
  readonly data: number
}

/**
 * PRIORITY (RFC 8445 §16.1).
 *
 * @since 0.1.0
 * @category models
 */
export interface Priority {
  readonly _tag: "Priority"
  readonly value: number
}

/**
 * ICE-CONTROLLING and ICE-CONTROLLED (RFC 8445 §16.1): a 64-bit tie-breaker.
 *
 * @since 0.1.0
 * @category models
 */
export interface IceRoleAttribute<Tag extends string> {
  readonly _tag: Tag
  readonly tieBreaker: bigint
}

/**
 * FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message xor 0x5354554E.
 *
 * @since 0.1.0
 * @category models
 */
export interface Fingerprint {
  readonly _tag: "Fingerprint"
  readonly value: number
}

/**
 * One algorithm entry of PASSWORD-ALGORITHM / PASSWORD-ALGORITHMS (RFC 8489 §14.11, §14.12).
 *
 * @since 0.1.0
 * @category models
 */
export interface PasswordAlgorithmEntry {
  readonly algorithm: number
  readonly parameters: Uint8Array
}

/**
 * PASSWORD-ALGORITHM (RFC 8489 §14.12).
 *
 * @since 0.1.0
 * @category models
 */
export interface PasswordAlgorithm extends PasswordAlgorithmEntry {
  readonly _tag: "PasswordAlgorithm"
}

/**
 * PASSWORD-ALGORITHMS (RFC 8489 §14.11).
 *
 * @since 0.1.0
 * @category models
 */
export interface PasswordAlgorithms {
  readonly _tag: "PasswordAlgorithms"
  readonly algorithms: ReadonlyArray<PasswordAlgorithmEntry>
}

/**
 * An attribute this library does not interpret, kept with its raw value.
 *
 * @since 0.1.0
 * @category models
 */
export interface Unknown {
  readonly _tag: "Unknown"
  readonly type: number
  readonly value: Uint8Array
}

/**
 * Every STUN attribute.
 *
 * @since 0.1.0
 * @category models
 */
export type StunAttribute =
  | AddressAttribute<"MappedAddress">
  | AddressAttribute<"XorMappedAddress">
  | AddressAttribute<"XorPeerAddress">
  | AddressAttribute<"XorRelayedAddress">
  | AddressAttribute<"AlternateServer">
  | AddressAttribute<"ResponseOrigin">
  | AddressAttribute<"OtherAddress">
  | AddressAttribute<"SourceAddress">
  | AddressAttribute<"ChangedAddress">
  | TextAttribute<"Username">
  | TextAttribute<"Realm">
  | TextAttribute<"Nonce">
  | TextAttribute<"Software">
  | TextAttribute<"AlternateDomain">
  | BytesAttribute<"MessageIntegrity">
  | BytesAttribute<"MessageIntegritySha256">
  | BytesAttribute<"Userhash">
  | BytesAttribute<"Data">
  | BytesAttribute<"ReservationToken">
  | FlagAttribute<"UseCandidate">
  | FlagAttribute<"DontFragment">
  | ErrorCode
  | UnknownAttributes
  | ChangeRequest
  | ResponsePort
  | Padding
  | ChannelNumber
  | Lifetime
  | AddressFamilyAttribute<"RequestedAddressFamily">
  | AddressFamilyAttribute<"AdditionalAddressFamily">
  | EvenPort
  | RequestedTransport
  | AddressErrorCode
  | Icmp
  | Priority
  | IceRoleAttribute<"IceControlled">
  | IceRoleAttribute<"IceControlling">
  | Fingerprint
  | PasswordAlgorithm
  | PasswordAlgorithms
  | Unknown

/**
 * The `_tag` of any attribute.
 *
 * @since 0.1.0
 * @category models
 */
export type Tag = StunAttribute["_tag"]

/**
 * The attribute with a given tag.
 *
 * @since 0.1.0
 * @category models
 */
export type WithTag<T extends Tag> = Extract<StunAttribute, { readonly _tag: T }>

// ---------------------------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------------------------

/**
 * MAPPED-ADDRESS (RFC 8489 §14.1), for RFC 3489 clients.
 *
 * @since 0.1.0
 * @category constructors
 */
export const mappedAddress = (address: SocketAddress): WithTag<"MappedAddress"> => ({ _tag: "MappedAddress", address })
/**
 * XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the reflexive transport address.
 *
 * @since 0.1.0
 * @category constructors
 */
export const xorMappedAddress = (address: SocketAddress): WithTag<"XorMappedAddress"> => ({
  _tag: "XorMappedAddress",
  address
})
/**
 * XOR-PEER-ADDRESS (RFC 8656 §18.3): a peer of a TURN allocation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const xorPeerAddress = (address: SocketAddress): WithTag<"XorPeerAddress"> => ({
  _tag: "XorPeerAddress",
  address
})
/**
 * XOR-RELAYED-ADDRESS (RFC 8656 §18.5): the relayed transport address.
 *
 * @since 0.1.0
 * @category constructors
 */
export const xorRelayedAddress = (address: SocketAddress): WithTag<"XorRelayedAddress"> => ({
  _tag: "XorRelayedAddress",
  address
})
/**
 * ALTERNATE-SERVER (RFC 8489 §14.15), sent with 300 Try Alternate.
 *
 * @since 0.1.0
 * @category constructors
 */
export const alternateServer = (address: SocketAddress): WithTag<"AlternateServer"> => ({
  _tag: "AlternateServer",
  address
})
/**
 * RESPONSE-ORIGIN (RFC 5780 §7.3): where a response was sent from.
 *
 * @since 0.1.0
 * @category constructors
 */
export const responseOrigin = (address: SocketAddress): WithTag<"ResponseOrigin"> => ({
  _tag: "ResponseOrigin",
  address
})
/**
 * OTHER-ADDRESS (RFC 5780 §7.4): the server's alternate IP and port.
 *
 * @since 0.1.0
 * @category constructors
 */
export const otherAddress = (address: SocketAddress): WithTag<"OtherAddress"> => ({ _tag: "OtherAddress", address })
/**
 * USERNAME (RFC 8489 §14.3).
 *
 * @since 0.1.0
 * @category constructors
 */
export const username = (value: string): WithTag<"Username"> => ({ _tag: "Username", value })
/**
 * REALM (RFC 8489 §14.9).
 *
 * @since 0.1.0
 * @category constructors
 */
export const realm = (value: string): WithTag<"Realm"> => ({ _tag: "Realm", value })
/**
 * NONCE (RFC 8489 §14.10).
 *
 * @since 0.1.0
 * @category constructors
 */
export const nonce = (value: string): WithTag<"Nonce"> => ({ _tag: "Nonce", value })
/**
 * SOFTWARE (RFC 8489 §14.14).
 *
 * @since 0.1.0
 * @category constructors
 */
export const software = (value: string): WithTag<"Software"> => ({ _tag: "Software", value })
/**
 * ALTERNATE-DOMAIN (RFC 8489 §14.16).
 *
 * @since 0.1.0
 * @category constructors
 */
export const alternateDomain = (value: string): WithTag<"AlternateDomain"> => ({ _tag: "AlternateDomain", value })
/**
 * USERHASH (RFC 8489 §14.4): 32 bytes, see `StunIntegrity.userhash`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const userhash = (value: Uint8Array): WithTag<"Userhash"> => ({ _tag: "Userhash", value })
/**
 * DATA (RFC 8656 §18.4): application data in Send and Data indications.
 *
 * @since 0.1.0
 * @category constructors
 */
export const data = (value: Uint8Array): WithTag<"Data"> => ({ _tag: "Data", value })
/**
 * RESERVATION-TOKEN (RFC 8656 §18.9): 8 bytes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reservationToken = (value: Uint8Array): WithTag<"ReservationToken"> => ({
  _tag: "ReservationToken",
  value
})
/**
 * USE-CANDIDATE (RFC 8445 §7.1.2): the controlling agent nominates the pair.
 *
 * @since 0.1.0
 * @category constructors
 */
export const useCandidate: WithTag<"UseCandidate"> = { _tag: "UseCandidate" }
/**
 * DONT-FRAGMENT (RFC 8656 §18.8).
 *
 * @since 0.1.0
 * @category constructors
 */
export const dontFragment: WithTag<"DontFragment"> = { _tag: "DontFragment" }
/**
 * ERROR-CODE (RFC 8489 §14.8): a code 300–699 and its reason phrase.
 *
 * @since 0.1.0
 * @category constructors
 */
export const errorCode = (code: number, reason: string): ErrorCode => ({ _tag: "ErrorCode", code, reason })
/**
 * UNKNOWN-ATTRIBUTES (RFC 8489 §14.13), sent with 420.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unknownAttributes = (types: ReadonlyArray<number>): UnknownAttributes => ({
  _tag: "UnknownAttributes",
  types
})
/**
 * CHANGE-REQUEST (RFC 5780 §7.2): ask the server to answer from its other IP and/or port.
 *
 * @since 0.1.0
 * @category constructors
 */
export const changeRequest = (
  options: { readonly changeIp: boolean; readonly changePort: boolean }
): ChangeRequest => ({
  _tag: "ChangeRequest",
  changeIp: options.changeIp,
  changePort: options.changePort
})
/**
 * RESPONSE-PORT (RFC 5780 §7.5): the port the response should go to.
 *
 * @since 0.1.0
 * @category constructors
 */
export const responsePort = (port: number): ResponsePort => ({ _tag: "ResponsePort", port })
/**
 * PADDING (RFC 5780 §7.6) of `length` bytes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const padding = (length: number): Padding => ({ _tag: "Padding", length })
/**
 * CHANNEL-NUMBER (RFC 8656 §18.1).
 *
 * @since 0.1.0
 * @category constructors
 */
export const channelNumber = (channel: number): ChannelNumber => ({ _tag: "ChannelNumber", channel })
/**
 * LIFETIME (RFC 8656 §18.2) in seconds.
 *
 * @since 0.1.0
 * @category constructors
 */
export const lifetime = (seconds: number): Lifetime => ({ _tag: "Lifetime", seconds })
/**
 * REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6).
 *
 * @since 0.1.0
 * @category constructors
 */
export const requestedAddressFamily = (family: Family): WithTag<"RequestedAddressFamily"> => ({
  _tag: "RequestedAddressFamily",
  family
})
/**
 * ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11), for a dual-stack allocation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const additionalAddressFamily = (family: Family): WithTag<"AdditionalAddressFamily"> => ({
  _tag: "AdditionalAddressFamily",
  family
})
/**
 * EVEN-PORT (RFC 8656 §18.7), optionally reserving the next port.
 *
 * @since 0.1.0
 * @category constructors
 */
export const evenPort = (reserveNext: boolean): EvenPort => ({ _tag: "EvenPort", reserveNext })
/**
 * REQUESTED-TRANSPORT (RFC 8656 §18.8); the default 17 is UDP, the only value RFC 8656 defines.
 *
 * @since 0.1.0
 * @category constructors
 */
export const requestedTransport = (protocol = 17): RequestedTransport => ({ _tag: "RequestedTransport", protocol })
/**
 * ADDRESS-ERROR-CODE (RFC 8656 §18.12).
 *
 * @since 0.1.0
 * @category constructors
 */
export const addressErrorCode = (family: Family, code: number, reason: string): AddressErrorCode => ({
  _tag: "AddressErrorCode",
  family,
  code,
  reason
})
/**
 * ICMP (RFC 8656 §18.13).
 *
 * @since 0.1.0
 * @category constructors
 */
export const icmp = (type: number, code: number, data: number): Icmp => ({ _tag: "Icmp", type, code, data })
/**
 * PRIORITY (RFC 8445 §16.1): the priority a peer-reflexive candidate would have.
 *
 * @since 0.1.0
 * @category constructors
 */
export const priority = (value: number): Priority => ({ _tag: "Priority", value })
/**
 * ICE-CONTROLLED (RFC 8445 §16.1) with the agent's 64-bit tie-breaker.
 *
 * @since 0.1.0
 * @category constructors
 */
export const iceControlled = (tieBreaker: bigint): WithTag<"IceControlled"> => ({ _tag: "IceControlled", tieBreaker })
/**
 * ICE-CONTROLLING (RFC 8445 §16.1) with the agent's 64-bit tie-breaker.
 *
 * @since 0.1.0
 * @category constructors
 */
export const iceControlling = (tieBreaker: bigint): WithTag<"IceControlling"> => ({
  _tag: "IceControlling",
  tieBreaker
})
/**
 * PASSWORD-ALGORITHM (RFC 8489 §14.12).
 *
 * @since 0.1.0
 * @category constructors
 */
export const passwordAlgorithm = (
  algorithm: number,
  parameters: Uint8Array = new Uint8Array(0)
): PasswordAlgorithm => ({
  _tag: "PasswordAlgorithm",
  algorithm,
  parameters
})
/**
 * PASSWORD-ALGORITHMS (RFC 8489 §14.11).
 *
 * @since 0.1.0
 * @category constructors
 */
export const passwordAlgorithms = (algorithms: ReadonlyArray<PasswordAlgorithmEntry>): PasswordAlgorithms => ({
  _tag: "PasswordAlgorithms",
  algorithms
})
/**
 * An attribute of any type with a raw value.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unknown = (type: number, value: Uint8Array): Unknown => ({ _tag: "Unknown", type, value })

// ---------------------------------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------------------------------

const tagOfType = new Map<number, Tag>(
  Object.entries(AttributeType).map(([tag, type]) => [type, tag as Tag])
)

/**
 * The wire type of an attribute.
 *
 * @since 0.1.0
 * @category getters
 */
export const typeOf = (attribute: StunAttribute): number =>
  attribute._tag === "Unknown" ? attribute.type : AttributeType[attribute._tag]

/**
 * The tag this library gives a wire type, or `Unknown`.
 *
 * @since 0.1.0
 * @category getters
 */
export const tagOf = (type: number): Tag => tagOfType.get(type) ?? "Unknown"

const familyCode = (family: Family): number => (family === "IPv4" ? 0x01 : 0x02)
const familyFromCode = (code: number): Family | undefined => code === 0x01 ? "IPv4" : code === 0x02 ? "IPv6" : undefined

const readU16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!
const readU32 = (b: Uint8Array, o: number): number =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0
const writeU16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = v >>> 8
  b[o + 1] = v
}
const writeU32 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = v >>> 24
  b[o + 1] = v >>> 16
  b[o + 2] = v >>> 8
  b[o + 3] = v
}

const decodeAddress = (
  tag: string,
  raw: Uint8Array,
  start: number,
  length: number,
  xor: boolean
): SocketAddress | string => {
  if (length < 4) return `${tag}: value of ${length} bytes is too short`
  const family = familyFromCode(raw[start + 1]!)
  if (family === undefined) return `${tag}: unknown address family 0x${raw[start + 1]!.toString(16)}`
  if (length !== (family === "IPv4" ? 8 : 20)) return `${tag}: ${family} value must not be ${length} bytes`
  let port = readU16(raw, start + 2)
  if (xor) port ^= 0x2112
  if (family === "IPv4") {
    if (!xor) return { family, ip: formatIPv4(raw, start + 4), port }
    const a = raw[start + 4]! ^ 0x21
    const b = raw[start + 5]! ^ 0x12
    const c = raw[start + 6]! ^ 0xa4
    const d = raw[start + 7]! ^ 0x42
    return { family, ip: a + "." + b + "." + c + "." + d, port }
  }
  if (!xor) return { family, ip: formatIPv6(raw, start + 4), port }
  const bytes = new Uint8Array(16)
  // The 16-byte mask is the magic cookie followed by the transaction id: raw[4..20) of the message.
  for (let i = 0; i < 16; i++) bytes[i] = raw[start + 4 + i]! ^ raw[4 + i]!
  return { family, ip: formatIPv6(bytes), port }
}

const decodeText = <T extends "Username" | "Realm" | "Nonce" | "Software" | "AlternateDomain">(
  tag: T,
  raw: Uint8Array,
  start: number,
  length: number,
  max: number
): TextAttribute<T> | string => {
  if (length > max) return `${tag}: ${length} bytes is longer than ${max}`
  const value = readUtf8(raw, start, start + length)
  return value === undefined ? `${tag}: not valid UTF-8` : { _tag: tag, value }
}

const fixed = (tag: string, length: number, expected: number): string | undefined =>
  length === expected ? undefined : `${tag}: value must be ${expected} bytes, not ${length}`

const decodeError = (raw: Uint8Array, start: number, length: number, tag: string): ErrorCode | string => {
  if (length < 4) return `${tag}: value of ${length} bytes is too short`
  const cls = raw[start + 2]! & 0x07
  const number = raw[start + 3]!
  if (cls < 3 || cls > 6 || number > 99) return `${tag}: invalid code class ${cls} number ${number}`
  if (length - 4 > maxTextBytes) return `${tag}: reason of ${length - 4} bytes is longer than ${maxTextBytes}`
  const reason = readUtf8(raw, start + 4, start + length)
  if (reason === undefined) return `${tag}: reason is not valid UTF-8`
  return { _tag: "ErrorCode", code: cls * 100 + number, reason }
}

const decodeAlgorithms = (
  raw: Uint8Array,
  start: number,
  length: number
): Array<PasswordAlgorithmEntry> | string => {
  const out: Array<PasswordAlgorithmEntry> = []
  let o = start
  const end = start + length
  while (o < end) {
    if (o + 4 > end) return "PasswordAlgorithms: truncated entry"
    const algorithm = readU16(raw, o)
    const paramLength = readU16(raw, o + 2)
    const padded = (paramLength + 3) & ~3
    if (o + 4 + padded > end) return "PasswordAlgorithms: parameters run past the attribute"
    out.push({ algorithm, parameters: raw.subarray(o + 4, o + 4 + paramLength) })
    o += 4 + padded
  }
  return out
}

/**
 * Decodes one attribute value. `raw` is the whole message (the transaction id is read from it for the XOR
 * addresses), the value is `raw[start, start + length)`. Returns the attribute, or a string that says what is
 * wrong with it. This is the codec's inner loop: `StunMessage.decode` wraps a failure in a `StunDecodeError`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeValue = (type: number, raw: Uint8Array, start: number, length: number): StunAttribute | string => {
  switch (type) {
    case AttributeType.Username:
      return decodeText("Username", raw, start, length, maxUsernameBytes)
    case AttributeType.Priority:
      return fixed("Priority", length, 4) ?? { _tag: "Priority", value: readU32(raw, start) }
    case AttributeType.IceControlled:
    case AttributeType.IceControlling: {
      const tag = type === AttributeType.IceControlled ? "IceControlled" : "IceControlling"
      const bad = fixed(tag, length, 8)
      if (bad !== undefined) return bad
      const tieBreaker = (BigInt(readU32(raw, start)) << 32n) | BigInt(readU32(raw, start + 4))
      return { _tag: tag, tieBreaker }
    }
    case AttributeType.UseCandidate:
      return fixed("UseCandidate", length, 0) ?? useCandidate
    case AttributeType.MessageIntegrity:
      return fixed("MessageIntegrity", length, 20) ??
        { _tag: "MessageIntegrity", value: raw.subarray(start, start + length) }
    case AttributeType.MessageIntegritySha256:
      return length < 16 || length > 32 || (length & 3) !== 0
        ? `MessageIntegritySha256: value must be 16 to 32 bytes in steps of 4, not ${length}`
        : { _tag: "MessageIntegritySha256", value: raw.subarray(start, start + length) }
    case AttributeType.Fingerprint:
      return fixed("Fingerprint", length, 4) ?? { _tag: "Fingerprint", value: readU32(raw, start) }
    case AttributeType.XorMappedAddress:
    case AttributeType.XorPeerAddress:
    case AttributeType.XorRelayedAddress: {
      const tag = tagOf(type) as "XorMappedAddress" | "XorPeerAddress" | "XorRelayedAddress"
      const address = decodeAddress(tag, raw, start, length, true)
      return typeof address === "string" ? address : { _tag: tag, address }
    }
    case AttributeType.MappedAddress:
    case AttributeType.AlternateServer:
    case AttributeType.ResponseOrigin:
    case AttributeType.OtherAddress:
    case AttributeType.SourceAddress:
    case AttributeType.ChangedAddress: {
      const tag = tagOf(type) as
        | "MappedAddress"
        | "AlternateServer"
        | "ResponseOrigin"
        | "OtherAddress"
        | "SourceAddress"
        | "ChangedAddress"
      const address = decodeAddress(tag, raw, start, length, false)
      return typeof address === "string" ? address : { _tag: tag, address }
    }
    case AttributeType.Realm:
    case AttributeType.Nonce:
    case AttributeType.Software:
    case AttributeType.AlternateDomain: {
      return decodeText(
        tagOf(type) as "Realm" | "Nonce" | "Software" | "AlternateDomain",
        raw,
        start,
        length,
        maxTextBytes
      )
    }
    case AttributeType.ErrorCode:
      return decodeError(raw, start, length, "ErrorCode")
    case AttributeType.UnknownAttributes: {
      if ((length & 1) !== 0) return `UnknownAttributes: odd length ${length}`
      const types: Array<number> = []
      for (let o = start; o < start + length; o += 2) types.push(readU16(raw, o))
      return { _tag: "UnknownAttributes", types }
    }
    case AttributeType.ChangeRequest:
      return fixed("ChangeRequest", length, 4) ?? {
        _tag: "ChangeRequest",
        changeIp: (raw[start + 3]! & 0x04) !== 0,
        changePort: (raw[start + 3]! & 0x02) !== 0
      }
    case AttributeType.ResponsePort:
      return fixed("ResponsePort", length, 4) ?? { _tag: "ResponsePort", port: readU16(raw, start) }
    case AttributeType.Padding:
      return { _tag: "Padding", length }
    case AttributeType.ChannelNumber:
      return fixed("ChannelNumber", length, 4) ?? { _tag: "ChannelNumber", channel: readU16(raw, start) }
    case AttributeType.Lifetime:
      return fixed("Lifetime", length, 4) ?? { _tag: "Lifetime", seconds: readU32(raw, start) }
    case AttributeType.Data:
      return { _tag: "Data", value: raw.subarray(start, start + length) }
    case AttributeType.RequestedAddressFamily:
    case AttributeType.AdditionalAddressFamily: {
      const tag = tagOf(type) as "RequestedAddressFamily" | "AdditionalAddressFamily"
      const bad = fixed(tag, length, 4)
      if (bad !== undefined) return bad
      const family = familyFromCode(raw[start]!)
      return family === undefined ? `${tag}: unknown family 0x${raw[start]!.toString(16)}` : { _tag: tag, family }
    }
    case AttributeType.EvenPort:
      return fixed("EvenPort", length, 1) ?? { _tag: "EvenPort", reserveNext: (raw[start]! & 0x80) !== 0 }
    case AttributeType.RequestedTransport:
      return fixed("RequestedTransport", length, 4) ?? { _tag: "RequestedTransport", protocol: raw[start]! }
    case AttributeType.DontFragment:
      return fixed("DontFragment", length, 0) ?? dontFragment
    case AttributeType.ReservationToken:
      return fixed("ReservationToken", length, 8) ??
        { _tag: "ReservationToken", value: raw.subarray(start, start + length) }
    case AttributeType.Userhash:
      return fixed("Userhash", length, 32) ?? { _tag: "Userhash", value: raw.subarray(start, start + length) }
    case AttributeType.AddressErrorCode: {
      if (length < 4) return `AddressErrorCode: value of ${length} bytes is too short`
      const family = familyFromCode(raw[start]!)
      if (family === undefined) return `AddressErrorCode: unknown family 0x${raw[start]!.toString(16)}`
      const error = decodeError(raw, start, length, "AddressErrorCode")
      return typeof error === "string"
        ? error
        : { _tag: "AddressErrorCode", family, code: error.code, reason: error.reason }
    }
    case AttributeType.Icmp:
      return fixed("Icmp", length, 8) ?? {
        _tag: "Icmp",
        type: raw[start + 2]!,
        code: raw[start + 3]!,
        data: readU32(raw, start + 4)
      }
    case AttributeType.PasswordAlgorithm: {
      const entries = decodeAlgorithms(raw, start, length)
      if (typeof entries === "string") return entries.replace("PasswordAlgorithms", "PasswordAlgorithm")
      if (entries.length !== 1) return "PasswordAlgorithm: must hold exactly one algorithm"
      return { _tag: "PasswordAlgorithm", ...entries[0]! }
    }
    case AttributeType.PasswordAlgorithms: {
      const entries = decodeAlgorithms(raw, start, length)
      return typeof entries === "string" ? entries : { _tag: "PasswordAlgorithms", algorithms: entries }
    }
    default:
      return { _tag: "Unknown", type, value: raw.subarray(start, start + length) }
  }
}

/**
 * The number of bytes an attribute's value takes on the wire, before padding. The attribute must have passed
 * {@link validate}.
 *
 * @since 0.1.0
 * @category encoding
 */
export const valueLength = (attribute: StunAttribute): number => {
  switch (attribute._tag) {
    case "MappedAddress":
    case "XorMappedAddress":
    case "XorPeerAddress":
    case "XorRelayedAddress":
    case "AlternateServer":
    case "ResponseOrigin":
    case "OtherAddress":
    case "SourceAddress":
    case "ChangedAddress":
      return attribute.address.family === "IPv4" ? 8 : 20
    case "Username":
    case "Realm":
    case "Nonce":
    case "Software":
    case "AlternateDomain":
      return utf8Length(attribute.value)
    case "MessageIntegrity":
    case "MessageIntegritySha256":
    case "Userhash":
    case "Data":
    case "ReservationToken":
    case "Unknown":
      return attribute.value.length
    case "UseCandidate":
    case "DontFragment":
      return 0
    case "ErrorCode":
      return 4 + utf8Length(attribute.reason)
    case "AddressErrorCode":
      return 4 + utf8Length(attribute.reason)
    case "UnknownAttributes":
      return attribute.types.length * 2
    case "Padding":
      return attribute.length
    case "EvenPort":
      return 1
    case "Icmp":
    case "IceControlled":
    case "IceControlling":
      return 8
    case "ChangeRequest":
    case "ResponsePort":
    case "ChannelNumber":
    case "Lifetime":
    case "RequestedAddressFamily":
    case "AdditionalAddressFamily":
    case "RequestedTransport":
    case "Priority":
    case "Fingerprint":
      return 4
    case "PasswordAlgorithm":
      return 4 + ((attribute.parameters.length + 3) & ~3)
    case "PasswordAlgorithms": {
      let n = 0
      for (const a of attribute.algorithms) n += 4 + ((a.parameters.length + 3) & ~3)
      return n
    }
  }
}

const writeAddress = (buffer: Uint8Array, o: number, address: SocketAddress, xor: boolean): void => {
  const family = address.family
  buffer[o] = 0
  buffer[o + 1] = familyCode(family)
  writeU16(buffer, o + 2, xor ? (address.port ^ 0x2112) : address.port)
  if (family === "IPv4") {
    // The common case, parsed straight into the message.
    if (!parseIPv4Into(address.ip, buffer, o + 4)) throw new TypeError(`invalid IPv4 address ${address.ip}`)
    if (xor) {
      buffer[o + 4] ^= 0x21
      buffer[o + 5] ^= 0x12
      buffer[o + 6] ^= 0xa4
      buffer[o + 7] ^= 0x42
    }
    return
  }
  const bytes = Option.getOrUndefined(parseIPv6(address.ip))
  if (bytes === undefined) {
    // Validated by `StunMessage.encode` before writing; unreachable for addresses built by TransportAddress.
    throw new TypeError(`invalid IPv6 address ${address.ip}`)
  }
  for (let i = 0; i < 16; i++) buffer[o + 4 + i] = xor ? bytes[i]! ^ buffer[4 + i]! : bytes[i]!
}

const scratch = new Uint8Array(4)

const inRange = (v: number, max: number): boolean => Number.isInteger(v) && v >= 0 && v <= max
const maxTieBreaker = 0xffffffffffffffffn

const writeAlgorithm = (buffer: Uint8Array, o: number, entry: PasswordAlgorithmEntry): number => {
  writeU16(buffer, o, entry.algorithm)
  writeU16(buffer, o + 2, entry.parameters.length)
  buffer.set(entry.parameters, o + 4)
  return o + 4 + ((entry.parameters.length + 3) & ~3)
}

/**
 * Checks that an attribute can be encoded: addresses parse and match their family, numbers are in range,
 * texts are within their RFC length. Returns a description of the problem, or `undefined`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const validate = (attribute: StunAttribute): string | undefined => {
  switch (attribute._tag) {
    case "MappedAddress":
    case "XorMappedAddress":
    case "XorPeerAddress":
    case "XorRelayedAddress":
    case "AlternateServer":
    case "ResponseOrigin":
    case "OtherAddress":
    case "SourceAddress":
    case "ChangedAddress": {
      const valid = attribute.address.family === "IPv4"
        ? parseIPv4Into(attribute.address.ip, scratch, 0)
        : Option.isSome(parseIPv6(attribute.address.ip))
      if (!valid) {
        return `${attribute._tag}: ${attribute.address.ip} is not an ${attribute.address.family} address`
      }
      return inRange(attribute.address.port, 0xffff) ? undefined : `${attribute._tag}: invalid port`
    }
    case "Username":
      return utf8Length(attribute.value) <= maxUsernameBytes ? undefined : "Username: too long"
    case "Realm":
    case "Nonce":
    case "Software":
    case "AlternateDomain":
      return utf8Length(attribute.value) <= maxTextBytes ? undefined : `${attribute._tag}: too long`
    case "ErrorCode":
    case "AddressErrorCode":
      return attribute.code >= 300 && attribute.code <= 699 && Number.isInteger(attribute.code) &&
          utf8Length(attribute.reason) <= maxTextBytes
        ? undefined
        : `${attribute._tag}: code ${attribute.code} out of 300..699 or reason too long`
    case "MessageIntegrity":
      return attribute.value.length === 20 ? undefined : "MessageIntegrity: must be 20 bytes"
    case "MessageIntegritySha256":
      return attribute.value.length >= 16 && attribute.value.length <= 32 && (attribute.value.length & 3) === 0
        ? undefined
        : "MessageIntegritySha256: must be 16 to 32 bytes in steps of 4"
    case "Userhash":
      return attribute.value.length === 32 ? undefined : "Userhash: must be 32 bytes"
    case "ReservationToken":
      return attribute.value.length === 8 ? undefined : "ReservationToken: must be 8 bytes"
    case "Unknown":
      return inRange(attribute.type, 0xffff) ? undefined : "Unknown: type out of range"
    case "UnknownAttributes":
      return attribute.types.every((t) => inRange(t, 0xffff)) ? undefined : "UnknownAttributes: type out of range"
    case "Padding":
      return inRange(attribute.length, 0xffff) ? undefined : "Padding: invalid length"
    case "ResponsePort":
      return inRange(attribute.port, 0xffff) ? undefined : "ResponsePort: invalid port"
    case "ChannelNumber":
      return inRange(attribute.channel, 0xffff) ? undefined : "ChannelNumber: out of range"
    case "Lifetime":
      return inRange(attribute.seconds, 0xffffffff) ? undefined : "Lifetime: out of range"
    case "Priority":
      return inRange(attribute.value, 0xffffffff) ? undefined : "Priority: out of range"
    case "Fingerprint":
      return inRange(attribute.value, 0xffffffff) ? undefined : "Fingerprint: out of range"
    case "RequestedTransport":
      return inRange(attribute.protocol, 0xff) ? undefined : "RequestedTransport: out of range"
    case "Icmp":
      return inRange(attribute.type, 0xff) && inRange(attribute.code, 0xff) && inRange(attribute.data, 0xffffffff)
        ? undefined
        : "Icmp: out of range"
    case "IceControlled":
    case "IceControlling":
      return attribute.tieBreaker >= 0n && attribute.tieBreaker <= maxTieBreaker
        ? undefined
        : `${attribute._tag}: tie-breaker out of 64 bits`
    case "PasswordAlgorithm":
      return inRange(attribute.algorithm, 0xffff) && attribute.parameters.length <= 0xffff
        ? undefined
        : "PasswordAlgorithm: out of range"
    case "PasswordAlgorithms":
      return attribute.algorithms.every((a) => inRange(a.algorithm, 0xffff) && a.parameters.length <= 0xffff)
        ? undefined
        : "PasswordAlgorithms: out of range"
    default:
      return undefined
  }
}

/**
 * Writes an attribute's value at `offset` of `buffer` (whose bytes 4..20 already hold the magic cookie and the
 * transaction id, used by the XOR addresses). The value must have passed {@link validate}.
 *
 * @since 0.1.0
 * @category encoding
 */
export const writeValue = (buffer: Uint8Array, offset: number, attribute: StunAttribute): void => {
  const o = offset
  switch (attribute._tag) {
    case "XorMappedAddress":
    case "XorPeerAddress":
    case "XorRelayedAddress":
      return writeAddress(buffer, o, attribute.address, true)
    case "MappedAddress":
    case "AlternateServer":
    case "ResponseOrigin":
    case "OtherAddress":
    case "SourceAddress":
    case "ChangedAddress":
      return writeAddress(buffer, o, attribute.address, false)
    case "Username":
    case "Realm":
    case "Nonce":
    case "Software":
    case "AlternateDomain":
      writeUtf8(buffer, o, attribute.value)
      return
    case "MessageIntegrity":
    case "MessageIntegritySha256":
    case "Userhash":
    case "Data":
    case "ReservationToken":
    case "Unknown":
      buffer.set(attribute.value, o)
      return
    case "UseCandidate":
    case "DontFragment":
    case "Padding":
      return
    case "ErrorCode":
    case "AddressErrorCode":
      buffer[o] = attribute._tag === "AddressErrorCode" ? familyCode(attribute.family) : 0
      buffer[o + 1] = 0
      buffer[o + 2] = Math.floor(attribute.code / 100)
      buffer[o + 3] = attribute.code % 100
      writeUtf8(buffer, o + 4, attribute.reason)
      return
    case "UnknownAttributes":
      for (let i = 0; i < attribute.types.length; i++) writeU16(buffer, o + i * 2, attribute.types[i]!)
      return
    case "ChangeRequest":
      buffer[o + 3] = (attribute.changeIp ? 0x04 : 0) | (attribute.changePort ? 0x02 : 0)
      return
    case "ResponsePort":
      return writeU16(buffer, o, attribute.port)
    case "ChannelNumber":
      return writeU16(buffer, o, attribute.channel)
    case "Lifetime":
      return writeU32(buffer, o, attribute.seconds)
    case "Priority":
      return writeU32(buffer, o, attribute.value)
    case "Fingerprint":
      return writeU32(buffer, o, attribute.value)
    case "RequestedAddressFamily":
    case "AdditionalAddressFamily":
      buffer[o] = familyCode(attribute.family)
      return
    case "EvenPort":
      buffer[o] = attribute.reserveNext ? 0x80 : 0
      return
    case "RequestedTransport":
      buffer[o] = attribute.protocol
      return
    case "Icmp":
      buffer[o + 2] = attribute.type
      buffer[o + 3] = attribute.code
      return writeU32(buffer, o + 4, attribute.data)
    case "IceControlled":
    case "IceControlling":
      writeU32(buffer, o, Number(attribute.tieBreaker >> 32n))
      return writeU32(buffer, o + 4, Number(attribute.tieBreaker & 0xffffffffn))
    case "PasswordAlgorithm":
      writeAlgorithm(buffer, o, attribute)
      return
    case "PasswordAlgorithms": {
      let p = o
      for (const entry of attribute.algorithms) p = writeAlgorithm(buffer, p, entry)
      return
    }
  }
}
