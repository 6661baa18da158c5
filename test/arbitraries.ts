/**
 * fast-check arbitraries for STUN values, shared by the codec tests. Every value they make is one the encoder
 * accepts and the decoder gives back equal (addresses in canonical text form, texts within their RFC limits).
 */
import { FastCheck as fc } from "effect"
import type { StunAttribute } from "../src/StunAttribute.js"
import type { StunMessage } from "../src/StunMessage.js"
import { formatIPv4, formatIPv6 } from "../src/TransportAddress.js"
import type { SocketAddress } from "../src/TransportAddress.js"

export const bytes = (min: number, max: number) =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((b) => new Uint8Array(b))

export const socketAddress: fc.Arbitrary<SocketAddress> = fc.oneof(
  fc.tuple(bytes(4, 4), fc.integer({ min: 0, max: 65535 })).map(([b, port]) => ({
    family: "IPv4" as const,
    ip: formatIPv4(b),
    port
  })),
  fc.tuple(bytes(16, 16), fc.integer({ min: 0, max: 65535 })).map(([b, port]) => ({
    family: "IPv6" as const,
    ip: formatIPv6(b),
    port
  }))
)

/** Text whose UTF-8 form is at most `maxBytes` (any code points, including astral and combining ones). */
const text = (maxBytes: number) =>
  fc.string({ unit: "grapheme", maxLength: 40 }).filter((s) => new TextEncoder().encode(s).length <= maxBytes)

const family = fc.constantFrom("IPv4" as const, "IPv6" as const)
const u32 = fc.integer({ min: 0, max: 0xffffffff })
const errorCode = fc.integer({ min: 300, max: 699 })

/** Every attribute tag except the integrity ones and FINGERPRINT, which `encode` places itself. */
export const attribute: fc.Arbitrary<StunAttribute> = fc.oneof(
  fc.tuple(
    fc.constantFrom(
      "MappedAddress",
      "XorMappedAddress",
      "XorPeerAddress",
      "XorRelayedAddress",
      "AlternateServer",
      "ResponseOrigin",
      "OtherAddress",
      "SourceAddress",
      "ChangedAddress"
    ),
    socketAddress
  ).map(([_tag, address]) => ({ _tag, address }) as StunAttribute),
  fc.tuple(fc.constantFrom("Username", "Realm", "Nonce", "Software", "AlternateDomain"), text(120)).map((
    [_tag, value]
  ) => ({ _tag, value }) as StunAttribute),
  fc.tuple(fc.constant("Data" as const), bytes(0, 200)).map(([_tag, value]) => ({ _tag, value })),
  bytes(32, 32).map((value) => ({ _tag: "Userhash" as const, value })),
  bytes(8, 8).map((value) => ({ _tag: "ReservationToken" as const, value })),
  fc.constantFrom({ _tag: "UseCandidate" as const }, { _tag: "DontFragment" as const }),
  fc.tuple(errorCode, text(100)).map(([code, reason]) => ({ _tag: "ErrorCode" as const, code, reason })),
  fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 8 }).map((types) => ({
    _tag: "UnknownAttributes" as const,
    types
  })),
  fc.record({ changeIp: fc.boolean(), changePort: fc.boolean() }).map((r) => ({
    _tag: "ChangeRequest" as const,
    ...r
  })),
  fc.integer({ min: 0, max: 65535 }).map((port) => ({ _tag: "ResponsePort" as const, port })),
  fc.integer({ min: 0, max: 64 }).map((length) => ({ _tag: "Padding" as const, length })),
  fc.integer({ min: 0, max: 0xffff }).map((channel) => ({ _tag: "ChannelNumber" as const, channel })),
  u32.map((seconds) => ({ _tag: "Lifetime" as const, seconds })),
  family.map((f) => ({ _tag: "RequestedAddressFamily" as const, family: f })),
  family.map((f) => ({ _tag: "AdditionalAddressFamily" as const, family: f })),
  fc.boolean().map((reserveNext) => ({ _tag: "EvenPort" as const, reserveNext })),
  fc.integer({ min: 0, max: 255 }).map((protocol) => ({ _tag: "RequestedTransport" as const, protocol })),
  fc.tuple(family, errorCode, text(60)).map(([f, code, reason]) => ({
    _tag: "AddressErrorCode" as const,
    family: f,
    code,
    reason
  })),
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), u32).map(([type, code, data]) => ({
    _tag: "Icmp" as const,
    type,
    code,
    data
  })),
  u32.map((value) => ({ _tag: "Priority" as const, value })),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((tieBreaker) => ({ _tag: "IceControlled" as const, tieBreaker })),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((tieBreaker) => ({ _tag: "IceControlling" as const, tieBreaker })),
  fc.tuple(fc.integer({ min: 0, max: 0xffff }), bytes(0, 12)).map(([algorithm, parameters]) => ({
    _tag: "PasswordAlgorithm" as const,
    algorithm,
    parameters
  })),
  fc.array(fc.record({ algorithm: fc.integer({ min: 0, max: 0xffff }), parameters: bytes(0, 9) }), {
    maxLength: 4
  }).map((algorithms) => ({ _tag: "PasswordAlgorithms" as const, algorithms })),
  // Unknown attributes: types this library does not interpret (from the unassigned ranges).
  fc.tuple(fc.constantFrom(0x0030, 0x7f00, 0x8070, 0xc001, 0xfffe), bytes(0, 40)).map(([type, value]) => ({
    _tag: "Unknown" as const,
    type,
    value
  }))
)

export const transactionId = bytes(12, 12)

export const message: fc.Arbitrary<StunMessage> = fc.record({
  class: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
  method: fc.integer({ min: 0, max: 0xfff }),
  transactionId,
  attributes: fc.array(attribute, { maxLength: 12 })
})
