/**
 * Transport addresses: an IP address, a port and a transport protocol.
 *
 * RFC 8489 §3 calls "transport address" the combination of IP address and port (and RFC 8445 adds the
 * transport protocol). This module parses and formats IPv4 and IPv6 addresses (RFC 4291 §2.2 text forms,
 * printed canonically as RFC 5952 says), the `ip:port` / `[ipv6]:port` forms, and converts to and from the
 * 4- or 16-byte network forms that STUN address attributes carry. Parsing never throws: it returns `Option`
 * or `Either` values.
 *
 * A `SocketAddress` is `{ family, ip, port }`: what a STUN address attribute carries. A `TransportAddress`
 * adds the transport (`udp`, `tcp`, `tls`). Both have a stable string `key` for use in maps: two equal
 * addresses written differently (`2001:DB8::1` and `2001:db8:0:0::1`) parse to the same key.
 *
 * @since 0.1.0
 */
import { Either, Option } from "effect"
import * as Data from "effect/Data"

/**
 * Address family, named as STUN's address attributes name it (0x01 IPv4, 0x02 IPv6).
 *
 * @since 0.1.0
 * @category models
 */
export type Family = "IPv4" | "IPv6"

/**
 * Transport protocol of a transport address.
 *
 * @since 0.1.0
 * @category models
 */
export type Transport = "udp" | "tcp" | "tls"

/**
 * An IP address and port, as carried by STUN address attributes.
 *
 * The `ip` is always in canonical text form (dotted quad for IPv4, RFC 5952 for IPv6), so two
 * `SocketAddress` values for the same endpoint compare equal field by field.
 *
 * @since 0.1.0
 * @category models
 */
export interface SocketAddress {
  readonly family: Family
  readonly ip: string
  readonly port: number
}

/**
 * A socket address together with the transport protocol used to reach it.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransportAddress extends SocketAddress {
  readonly transport: Transport
}

/**
 * Why an address could not be parsed.
 *
 * @since 0.1.0
 * @category errors
 */
export class AddressParseError extends Data.TaggedError("AddressParseError")<{
  readonly input: string
  readonly reason: "InvalidIp" | "InvalidPort" | "MissingPort" | "InvalidTransport"
}> {
  override get message(): string {
    return `cannot parse address ${JSON.stringify(this.input)}: ${this.reason}`
  }
}

/**
 * Parses a dotted-quad IPv4 address into `out[offset..offset+4)` without allocating, and tells whether it was one.
 * Leading zeros are refused (they are octal to some parsers, so accepting them would make the same text mean two
 * addresses). On failure `out` may have been partly written.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseIPv4Into = (text: string, out: Uint8Array, offset: number): boolean => {
  const length = text.length
  if (length < 7 || length > 15) return false
  let part = 0
  let value = 0
  let digits = 0
  for (let i = 0; i <= length; i++) {
    const c = i === length ? 46 : text.charCodeAt(i) // a final "." closes the last octet
    if (c === 46) {
      if (digits === 0 || part > 3) return false
      out[offset + part++] = value
      value = 0
      digits = 0
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return false // a leading zero
      value = value * 10 + (c - 48)
      if (++digits > 3 || value > 255) return false
    } else {
      return false
    }
  }
  return part === 4
}

/**
 * Parses a dotted-quad IPv4 address into its 4 bytes (see {@link parseIPv4Into}).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseIPv4 = (text: string): Option.Option<Uint8Array> => {
  const out = new Uint8Array(4)
  return parseIPv4Into(text, out, 0) ? Option.some(out) : Option.none()
}

const hexGroup = /^[0-9a-fA-F]{1,4}$/

/**
 * Parses an IPv6 address (RFC 4291 §2.2: full, `::`-compressed, or with an embedded dotted-quad tail) into
 * its 16 bytes. A zone index (`%eth0`) is not accepted here.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseIPv6 = (text: string): Option.Option<Uint8Array> => {
  if (text.length < 2 || text.length > 45) return Option.none()
  let body = text
  let tail: Uint8Array | undefined
  const lastColon = body.lastIndexOf(":")
  if (lastColon >= 0 && body.indexOf(".", lastColon) > lastColon) {
    const v4 = parseIPv4(body.slice(lastColon + 1))
    if (Option.isNone(v4)) return Option.none()
    tail = v4.value
    // "a:b::1.2.3.4" keeps its "::"; "a:b:c:d:e:f:1.2.3.4" drops the colon before the dotted quad.
    body = body.slice(0, lastColon + 1)
    if (!body.endsWith("::")) body = body.slice(0, -1)
  }
  const groupsWanted = tail === undefined ? 8 : 6
  const doubleColon = body.indexOf("::")
  if (doubleColon !== body.lastIndexOf("::") || body.includes(":::")) return Option.none()
  const parseGroups = (s: string): Array<number> | undefined => {
    if (s === "") return []
    const out: Array<number> = []
    for (const g of s.split(":")) {
      if (!hexGroup.test(g)) return undefined
      out.push(parseInt(g, 16))
    }
    return out
  }
  let groups: Array<number>
  if (doubleColon >= 0) {
    const head = parseGroups(body.slice(0, doubleColon))
    const rest = parseGroups(body.slice(doubleColon + 2))
    if (head === undefined || rest === undefined) return Option.none()
    const missing = groupsWanted - head.length - rest.length
    if (missing < 1) return Option.none()
    groups = [...head, ...new Array<number>(missing).fill(0), ...rest]
  } else {
    const all = parseGroups(body)
    if (all === undefined || all.length !== groupsWanted) return Option.none()
    groups = all
  }
  const out = new Uint8Array(16)
  for (let i = 0; i < groups.length; i++) {
    out[i * 2] = groups[i]! >> 8
    out[i * 2 + 1] = groups[i]! & 0xff
  }
  if (tail !== undefined) out.set(tail, 12)
  return Option.some(out)
}

/**
 * Formats 4 bytes at `offset` as a dotted quad.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatIPv4 = (bytes: Uint8Array, offset = 0): string =>
  bytes[offset] + "." + bytes[offset + 1] + "." + bytes[offset + 2] + "." + bytes[offset + 3]

/**
 * Formats 16 bytes at `offset` as an IPv6 address in the RFC 5952 canonical form: lower case, no leading
 * zeros, the longest run (of two or more) of zero groups compressed to `::` (the first one on a tie), and
 * IPv4-mapped addresses (`::ffff:a.b.c.d`) with a dotted-quad tail.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatIPv6 = (bytes: Uint8Array, offset = 0): string => {
  const groups = new Array<number>(8)
  for (let i = 0; i < 8; i++) groups[i] = (bytes[offset + i * 2]! << 8) | bytes[offset + i * 2 + 1]!
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 &&
    groups[5] === 0xffff
  ) {
    return "::ffff:" + formatIPv4(bytes, offset + 12)
  }
  let bestStart = -1
  let bestLength = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  if (bestLength < 2) return groups.map((g) => g.toString(16)).join(":")
  const head = groups.slice(0, bestStart).map((g) => g.toString(16)).join(":")
  const tail = groups.slice(bestStart + bestLength).map((g) => g.toString(16)).join(":")
  return head + "::" + tail
}

/**
 * The family of an IP address in text form, or `None` when it is neither.
 *
 * @since 0.1.0
 * @category parsing
 */
export const familyOf = (ip: string): Option.Option<Family> =>
  Option.isSome(parseIPv4(ip))
    ? Option.some("IPv4")
    : Option.isSome(parseIPv6(ip))
    ? Option.some("IPv6")
    : Option.none()

/**
 * Parses an IP address and returns its family and canonical text, or `None`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const canonicalIp = (ip: string): Option.Option<{ readonly family: Family; readonly ip: string }> => {
  const v4 = parseIPv4(ip)
  if (Option.isSome(v4)) return Option.some({ family: "IPv4", ip: formatIPv4(v4.value) })
  const v6 = parseIPv6(ip)
  if (Option.isSome(v6)) return Option.some({ family: "IPv6", ip: formatIPv6(v6.value) })
  return Option.none()
}

/**
 * The network-order bytes of an IP address (4 for IPv4, 16 for IPv6), or `None` when it does not parse.
 *
 * @since 0.1.0
 * @category conversions
 */
export const ipToBytes = (ip: string): Option.Option<Uint8Array> => {
  const v4 = parseIPv4(ip)
  return Option.isSome(v4) ? v4 : parseIPv6(ip)
}

/**
 * The text form of a 4- or 16-byte address, or `None` for any other length.
 *
 * @since 0.1.0
 * @category conversions
 */
export const ipFromBytes = (bytes: Uint8Array): Option.Option<string> =>
  bytes.length === 4
    ? Option.some(formatIPv4(bytes))
    : bytes.length === 16
    ? Option.some(formatIPv6(bytes))
    : Option.none()

const isPort = (port: number): boolean => Number.isInteger(port) && port >= 0 && port <= 65535

/**
 * Builds a `SocketAddress` from an IP in any accepted text form and a port, canonicalizing the IP.
 *
 * @since 0.1.0
 * @category constructors
 */
export const socketAddress = (ip: string, port: number): Either.Either<SocketAddress, AddressParseError> => {
  const canonical = canonicalIp(ip)
  if (Option.isNone(canonical)) return Either.left(new AddressParseError({ input: ip, reason: "InvalidIp" }))
  if (!isPort(port)) return Either.left(new AddressParseError({ input: `${ip} ${port}`, reason: "InvalidPort" }))
  return Either.right({ family: canonical.value.family, ip: canonical.value.ip, port })
}

/**
 * Builds a `TransportAddress` from an IP, a port and a transport (default `udp`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  ip: string,
  port: number,
  transport: Transport = "udp"
): Either.Either<TransportAddress, AddressParseError> =>
  Either.map(socketAddress(ip, port), (address) => ({ ...address, transport }))

/**
 * Unsafe variant of {@link make} for addresses known to be valid (constants, tests): throws on bad input.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafeMake = (ip: string, port: number, transport: Transport = "udp"): TransportAddress =>
  Either.getOrThrow(make(ip, port, transport))

const portText = /^(?:0|[1-9][0-9]{0,4})$/

/**
 * Parses `ip:port` or `[ipv6]:port` (the forms of RFC 3986 §3.2.2) into a `SocketAddress`. A bare IPv6
 * address without brackets is refused, since its last group could be read as a port.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (text: string): Either.Either<SocketAddress, AddressParseError> => {
  let host: string
  let port: string
  if (text.startsWith("[")) {
    const close = text.indexOf("]")
    if (close < 0) return Either.left(new AddressParseError({ input: text, reason: "InvalidIp" }))
    host = text.slice(1, close)
    if (text[close + 1] !== ":") return Either.left(new AddressParseError({ input: text, reason: "MissingPort" }))
    port = text.slice(close + 2)
  } else {
    const colon = text.lastIndexOf(":")
    if (colon < 0) return Either.left(new AddressParseError({ input: text, reason: "MissingPort" }))
    host = text.slice(0, colon)
    if (host.includes(":")) return Either.left(new AddressParseError({ input: text, reason: "InvalidIp" }))
    port = text.slice(colon + 1)
  }
  if (!portText.test(port) || Number(port) > 65535) {
    return Either.left(new AddressParseError({ input: text, reason: "InvalidPort" }))
  }
  return Either.mapLeft(
    socketAddress(host, Number(port)),
    () => new AddressParseError({ input: text, reason: "InvalidIp" })
  )
}

/**
 * Parses `[transport/]ip:port` (for example `tcp/[::1]:3478`; default transport `udp`).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseTransport = (text: string): Either.Either<TransportAddress, AddressParseError> => {
  const slash = text.indexOf("/")
  let transport: Transport = "udp"
  let rest = text
  if (slash >= 0) {
    const name = text.slice(0, slash)
    if (name !== "udp" && name !== "tcp" && name !== "tls") {
      return Either.left(new AddressParseError({ input: text, reason: "InvalidTransport" }))
    }
    transport = name
    rest = text.slice(slash + 1)
  }
  return Either.map(parse(rest), (address) => ({ ...address, transport }))
}

/**
 * Formats a socket address as `ip:port`, or `[ipv6]:port`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (address: SocketAddress): string =>
  address.family === "IPv6" ? `[${address.ip}]:${address.port}` : `${address.ip}:${address.port}`

/**
 * A string key, equal for equal transport addresses, for use in `Map`s: `udp/1.2.3.4:5`.
 *
 * @since 0.1.0
 * @category conversions
 */
export const key = (address: TransportAddress): string => address.transport + "/" + format(address)

/**
 * Whether two socket addresses are the same IP and port (transport not compared).
 *
 * @since 0.1.0
 * @category predicates
 */
export const equals = (a: SocketAddress, b: SocketAddress): boolean => a.port === b.port && a.ip === b.ip

/**
 * Whether two socket addresses have the same IP (ports not compared), as a TURN permission does.
 *
 * @since 0.1.0
 * @category predicates
 */
export const sameIp = (a: SocketAddress, b: SocketAddress): boolean => a.ip === b.ip
