/**
 * A STUN Binding server (RFC 8489) with the NAT Behavior Discovery extensions of RFC 5780, over UDP and TCP, on any
 * `Network` (real sockets or the simulated internet).
 *
 * Every datagram or TCP frame is handled as plain code inside the socket's receive handler: header checks, cache
 * lookup, decode, answer, `unsafeSend`. No fiber and no Effect per packet; the only fiber is the cache sweeper.
 *
 * What it answers, in the order it checks (RFC 8489 §6.3, §6.3.1):
 * - Not STUN: fewer than 20 bytes, a first byte above 0x3F, a length field that is not a multiple of 4 or not the
 *   size of the message, or a wrong magic cookie (except an RFC 3489 Binding request, below): dropped silently
 *   (RFC 8489 §6.3) and counted.
 * - Indications and responses: ignored and counted (a server answers requests only).
 * - A request whose header is valid but whose attributes do not decode (truncated, a wrong length for its type,
 *   FINGERPRINT not last): 400 Bad Request. A request with a FINGERPRINT that does not match is dropped silently
 *   (RFC 8489 §6.3: a failed FINGERPRINT check means the message is not to be trusted as STUN).
 * - Unknown comprehension-required attributes (0x0000–0x7FFF): 420 Unknown Attribute with UNKNOWN-ATTRIBUTES listing
 *   exactly those types, each once, in the order they appeared (RFC 8489 §6.3.1, §14.13). Attributes after
 *   MESSAGE-INTEGRITY are not looked at (§14.5). A CHANGE-REQUEST sent to a server without an alternate address is
 *   treated as unknown: 420 listing 0x0003, whatever its flags (RFC 5780 §6).
 * - A request for any method other than Binding: 400 Bad Request. RFC 8489 has no "method not allowed" code: its
 *   error codes (§14.8) are 300, 400, 401, 420, 438 and 500, and 405 in the IANA STUN registry is RFC 8016's
 *   "Mobility Forbidden", so 405 would say something false. 400 is "the request was malformed".
 * - RFC 5780 checks (§6.1, §7.5): RESPONSE-PORT together with PADDING: 400; RESPONSE-PORT 0: 400 (nowhere to send
 *   to). Over TCP, a CHANGE-REQUEST with either flag set and any RESPONSE-PORT: 400, because the only way back to a
 *   TCP client is the connection the request came on (RFC 5780 §3: STUN forbids the server to open connections to
 *   the client, so the filtering tests are UDP only). A CHANGE-REQUEST with neither flag is the plain case.
 * - Otherwise a Binding success response: XOR-MAPPED-ADDRESS and MAPPED-ADDRESS of the request's source
 *   (RFC 8489 §14.1–§14.2; RFC 5780 §6.1 wants both), RESPONSE-ORIGIN (the address the answer leaves from, when
 *   the server is bound to a specific IP; RFC 5780 §7.3), OTHER-ADDRESS when an alternate address is configured
 *   (RFC 5780 §7.4), PADDING when asked, SOFTWARE (§14.14) and FINGERPRINT (§14.7).
 * Error responses carry ERROR-CODE, UNKNOWN-ATTRIBUTES for 420, SOFTWARE and FINGERPRINT, and always go back from
 * the socket that received the request to the request's source transport address.
 *
 * RFC 5780 (with `alternateAddress`). The server binds four UDP sockets, (A1,P1) (A1,P2) (A2,P1) (A2,P2), with the
 * same two ports on both IPs (RFC 5780 §6 requires that, or no OTHER-ADDRESS at all), and, with `tcp`, four TCP
 * listeners on the same four endpoints. For a request received on (Da,Dp), OTHER-ADDRESS is (Ca,Cp), the other IP
 * and the other port, whatever the flags; CHANGE-REQUEST "change IP" answers from Ca, "change port" from Cp, both
 * from (Ca,Cp) (RFC 5780 §6.1, Table 1), and RESPONSE-ORIGIN names the socket the answer left from. With port 0 the
 * server binds A1:0 to learn P1, takes P2 = P1 + 1, and binds (A1,P2) (A2,P1) (A2,P2) and the TCP listeners; when
 * any of them is in use it closes them all and starts again, up to `bindAttempts` times. No port is assumed free.
 *
 * Reflection and amplification (RFC 5780 §10, the security considerations; §9 is IANA):
 * - RESPONSE-PORT only changes the port: the answer goes to the request's source IP, never to another host
 *   (RFC 5780 §7.5), and it is refused together with PADDING, which would otherwise turn a small request into a
 *   large datagram aimed at a port the sender chose.
 * - PADDING: RFC 5780 §6.1 suggests padding the response to the outgoing MTU. Here the response is padded so that
 *   it is exactly as long as the request (the PADDING value is the request size minus the rest of the response),
 *   and never longer: when the rest of the response is already as long as the request, PADDING is present with a
 *   length of 0. A client that pads its request to the MTU (as RFC 5780 §5 asks) gets an MTU-sized answer, which is
 *   what the fragmentation test needs, and nobody gets more bytes back than they sent beyond the fixed size of an
 *   ordinary Binding response. The server never allocates more for PADDING than the request's size (§10).
 * - One request gets at most one response, to its source IP; retransmissions get one each.
 *
 * RFC 3489 clients (RFC 8489 §12). A message whose magic cookie is wrong but whose header is otherwise an RFC 3489
 * Binding request (type 0x0001, length a multiple of 4 and equal to the bytes present) is answered as RFC 8489 §12
 * says: the cookie field of the request is copied into the response, which carries MAPPED-ADDRESS instead of
 * XOR-MAPPED-ADDRESS, and SOURCE-ADDRESS and CHANGED-ADDRESS (the RFC 3489 names of RESPONSE-ORIGIN and
 * OTHER-ADDRESS) instead of the RFC 5780 attributes; no FINGERPRINT. RFC 3489 attributes the server does not know
 * (RESPONSE-ADDRESS 0x0002, PASSWORD 0x0007, REFLECTED-FROM 0x000B) get a 420, as §12 says; in particular
 * RESPONSE-ADDRESS is never obeyed, since it would let anyone aim the server at a third party. `rfc3489: false`
 * drops these messages as not STUN.
 *
 * Retransmissions (RFC 8489 §6.3.1). By default a retransmitted Binding request is answered by recomputing the
 * response: Binding is idempotent and the answer depends only on the request, the receiving socket and the source,
 * so the bytes are the same, and the server keeps no state for unauthenticated clients (§6.3.1: remembering
 * responses "is inappropriate for any requests which are not authenticated"). With `cacheResponses: true`, over
 * UDP every response (success or error) is kept for `responseCacheTtl`
 * (default 40 s, the "last 40 seconds" of §6.3.1, Ti = 39.5 s plus a margin) under the key (receiving socket,
 * source address, the 16 bytes of cookie and transaction id); a retransmitted request (same key, and the same size
 * and CRC-32 as the original, so the same bytes) gets the same bytes again from the same socket to the same
 * destination without being decoded; a different request under a used transaction id is answered afresh. Entries expire on Effect's
 * `Clock`: a lookup checks the expiry, and one sweeper fiber removes expired entries every half TTL. The cache holds
 * at most `maxCacheEntries` responses; when full, the oldest is evicted in O(1) (a ring of keys in insertion
 * order), so a flood of distinct requests costs a bounded amount of memory and time. Responses with PADDING are not cached (they can be as large as a datagram); since
 * Binding is idempotent and the response depends only on the request, the socket and the source, recomputing gives
 * the same bytes, which §6.3.1 allows. TCP needs no cache: a reliable transport has no retransmissions (§6.2.2).
 *
 * TCP (RFC 8489 §6.2.2). Each connection is cut into messages by `StreamFraming.makeTurnStreamDeframer`; each
 * request is answered on the same connection. A framing error (a first byte that is neither STUN nor ChannelData,
 * or an oversized frame) closes that connection; other connections and the UDP sockets are unaffected. ChannelData
 * frames and other non-STUN frames are dropped and counted. A connection that carries nothing for `tcpIdleTimeout`
 * (default 30 s, on Effect's clock: one timer per connection, moved by activity) is closed by the server, and at most
 * `maxTcpConnections` (default 1024) are served at once, so idle or abandoned connections cannot pile up.
 *
 * Metrics: every datagram or frame is counted in `Metrics.stunServerRequests` with the labels `transport`
 * (udp, tcp), `class` (request, indication, response, none), `method` (binding, other, none) and `outcome`
 * (success, cached, bad-request, unknown-attribute, not-stun, ignored, bad-fingerprint, framing-error,
 * internal-error, and for TCP connections connection-limit and idle-closed).
 *
 * @since 0.1.0
 */
import {
  Config,
  Context,
  Duration,
  Effect,
  Either,
  ExecutionStrategy,
  Exit,
  Layer,
  Option,
  Schedule,
  Scope
} from "effect"
import type { ConfigError } from "effect"
import { crc32 } from "./internal/crc32.js"
import * as Metrics from "./Metrics.js"
import * as Network from "./Network.js"
import * as StreamFraming from "./StreamFraming.js"
import * as StunAttribute from "./StunAttribute.js"
import * as StunIntegrity from "./StunIntegrity.js"
import * as StunMessage from "./StunMessage.js"
import type { Family, SocketAddress, TransportAddress } from "./TransportAddress.js"
import * as TransportAddressModule from "./TransportAddress.js"

// ---------------------------------------------------------------------------------------------------------------
// Constants and options
// ---------------------------------------------------------------------------------------------------------------

/**
 * The STUN port over UDP and TCP (the IANA `stun` port, registered by RFC 8489 §18).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPort = 3478

/**
 * How long a response is kept for retransmissions: RFC 8489 §6.3.1 ("the last 40 seconds"; Ti is 39.5 s).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultResponseCacheTtl: Duration.Duration = Duration.seconds(40)

/**
 * The most responses the retransmission cache keeps before evicting the oldest.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxCacheEntries = 10_000

/**
 * The SOFTWARE attribute's default value (RFC 8489 §14.14).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSoftware = "effect-ice"

/**
 * How many times the server tries a new pair of ports when one of the sockets it needs is in use.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultBindAttempts = 16

/**
 * How long an idle TCP connection is kept (30 s).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTcpIdleTimeout: Duration.Duration = Duration.seconds(30)

/**
 * The most TCP connections served at once (1024).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxTcpConnections = 1024

/**
 * How to run a server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * The primary IP, A1. A wildcard (`0.0.0.0`, `::`) is accepted without an alternate; UDP answers then carry no
   * RESPONSE-ORIGIN, since the server does not know which of its addresses the request reached.
   */
  readonly address: string
  /** The primary port, P1 (default {@link defaultPort}); 0 lets the network choose. */
  readonly port?: number | undefined
  /** The alternate IP, A2, of the same family as A1: turns on RFC 5780 (OTHER-ADDRESS, CHANGE-REQUEST). */
  readonly alternateAddress?: string | undefined
  /**
   * The alternate port, P2. Needs `alternateAddress`. Default: P1 + 1; if a socket on it cannot be bound, the next
   * port after it (when P1 is fixed) or a new P1 from the network and its successor (when P1 is 0).
   */
  readonly alternatePort?: number | undefined
  /** SOFTWARE (default {@link defaultSoftware}); the empty string leaves it out; cut to 127 characters (§14.14). */
  readonly software?: string | undefined
  /** Also listen on TCP, on the same endpoints as UDP (default true). */
  readonly tcp?: boolean | undefined
  /**
   * Keep UDP responses for retransmissions (default false: Binding is idempotent, so a retransmission is answered
   * by recomputing the same bytes; RFC 8489 §6.3.1 calls remembering unauthenticated responses inappropriate).
   */
  readonly cacheResponses?: boolean | undefined
  /** How long cached responses are kept (default {@link defaultResponseCacheTtl}); 0 disables the cache. */
  readonly responseCacheTtl?: Duration.DurationInput | undefined
  /** The most cached responses (default {@link defaultMaxCacheEntries}); 0 disables the cache. */
  readonly maxCacheEntries?: number | undefined
  /** Answer RFC 3489 Binding requests (no magic cookie) as RFC 8489 §12 says (default true). */
  readonly rfc3489?: boolean | undefined
  /** How many port pairs to try when one is in use (default {@link defaultBindAttempts}). */
  readonly bindAttempts?: number | undefined
  /**
   * A TCP connection that has carried nothing for this long is closed (default {@link defaultTcpIdleTimeout}).
   * RFC 8489 §6.2.2 lets the server close a connection its client keeps idle; it must keep it at least long enough
   * for the answer to a request (the answer is written at once, so any positive value does that).
   */
  readonly tcpIdleTimeout?: Duration.DurationInput | undefined
  /** The most TCP connections open at once; a connection beyond it is closed at once (default {@link defaultMaxTcpConnections}). */
  readonly maxTcpConnections?: number | undefined
}

/**
 * A running server: the endpoints it actually bound, and its cache.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * The UDP endpoints: `[(A1,P1)]`, or with an alternate address the four RFC 5780 endpoints in the order
   * (A1,P1) (A1,P2) (A2,P1) (A2,P2).
   */
  readonly udp: ReadonlyArray<TransportAddress>
  /** The TCP listeners, in the same order as `udp` (empty when `tcp` is false). */
  readonly tcp: ReadonlyArray<TransportAddress>
  /** Every endpoint: `udp` then `tcp`. */
  readonly endpoints: ReadonlyArray<TransportAddress>
  /** The primary UDP endpoint (A1,P1): what clients are configured with. */
  readonly primary: TransportAddress
  /** (A2,P2): the OTHER-ADDRESS of a request to the primary endpoint, or `undefined` without an alternate. */
  readonly other: TransportAddress | undefined
  /** How many responses the retransmission cache holds now. */
  readonly cachedResponses: () => number
}

/**
 * The server as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class StunServer extends Context.Tag("effect-ice/StunServer")<StunServer, Service>() {}

// ---------------------------------------------------------------------------------------------------------------
// Metrics labels
// ---------------------------------------------------------------------------------------------------------------

const transports = ["udp", "tcp"] as const
const classes = ["request", "indication", "response", "none"] as const
const methods = ["binding", "other", "none"] as const
const outcomes = [
  "success",
  "cached",
  "bad-request",
  "unknown-attribute",
  "not-stun",
  "ignored",
  "bad-fingerprint",
  "framing-error",
  "internal-error",
  "connection-limit",
  "idle-closed"
] as const

const udp = 0
const tcp = 1
const classRequest = 0
const classIndication = 1
const classResponse = 2
const classNone = 3
const methodBinding = 0
const methodOther = 1
const methodNone = 2
const outcomeSuccess = 0
const outcomeCached = 1
const outcomeBadRequest = 2
const outcomeUnknownAttribute = 3
const outcomeNotStun = 4
const outcomeIgnored = 5
const outcomeBadFingerprint = 6
const outcomeFramingError = 7
const outcomeInternalError = 8
const outcomeConnectionLimit = 9
const outcomeIdleClosed = 10

/** Every label set, built once: `labelTable[transport][class][method][outcome]`. */
const labelTable = transports.map((t) =>
  classes.map((c) =>
    methods.map((m) =>
      outcomes.map((o) => [
        Metrics.label("transport", t),
        Metrics.label("class", c),
        Metrics.label("method", m),
        Metrics.label("outcome", o)
      ])
    )
  )
)

const count = (transport: number, cls: number, method: number, outcome: number): void =>
  Metrics.increment(Metrics.stunServerRequests, labelTable[transport]![cls]![method]![outcome]!)

// ---------------------------------------------------------------------------------------------------------------
// The per-packet path
// ---------------------------------------------------------------------------------------------------------------

interface CacheEntry {
  readonly bytes: Uint8Array
  readonly from: number
  readonly to: SocketAddress
  /** The request's size and CRC-32: a retransmission is the same bytes, not just the same transaction id. */
  readonly requestLength: number
  readonly requestCrc: number
  readonly expiresAt: number
}

interface Endpoint {
  readonly address: SocketAddress
  /** Bound to a specific IP, so the address can be told to clients (RESPONSE-ORIGIN, OTHER-ADDRESS). */
  readonly specific: boolean
}

/** What every attempt shares: the server's settings and its cache. */
interface Shared {
  readonly software: StunAttribute.StunAttribute | undefined
  readonly rfc3489: boolean
  readonly cache: Map<string, CacheEntry>
  /** Insertion order, as a ring of `maxEntries` slots: the slot to fill next holds the oldest entry. */
  readonly ring: {
    readonly keys: Array<string | undefined>
    readonly entries: Array<CacheEntry | undefined>
    next: number
  }
  readonly ttl: number
  readonly maxEntries: number
  readonly now: () => number
  /** ms; see `Options.tcpIdleTimeout`. */
  readonly tcpIdleTimeout: number
  readonly maxTcpConnections: number
  /** TCP connections open now, over every listener. */
  readonly open: { count: number }
}

interface State extends Shared {
  readonly sockets: ReadonlyArray<Network.DatagramSocket>
  readonly udpEndpoints: ReadonlyArray<Endpoint>
  readonly tcpEndpoints: ReadonlyArray<Endpoint>
  /** Four sockets (RFC 5780) or one. */
  readonly rfc5780: boolean
}

const changeRequestType = StunAttribute.AttributeType.ChangeRequest
const requestType = 0x0001 // Binding request: RFC 3489 §11.1 and RFC 8489 §5

const plain = (address: SocketAddress): SocketAddress => ({
  family: address.family,
  ip: address.ip,
  port: address.port
})

/** Cache key: the receiving socket, the source, and bytes 4–20 (cookie and transaction id) as 8 UTF-16 units. */
const cacheKey = (index: number, remote: SocketAddress, data: Uint8Array): string =>
  index + remote.ip + "|" + remote.port + "|" + String.fromCharCode(
    (data[4]! << 8) | data[5]!,
    (data[6]! << 8) | data[7]!,
    (data[8]! << 8) | data[9]!,
    (data[10]! << 8) | data[11]!,
    (data[12]! << 8) | data[13]!,
    (data[14]! << 8) | data[15]!,
    (data[16]! << 8) | data[17]!,
    (data[18]! << 8) | data[19]!
  )

/** An RFC 3489 message with the RFC 8489 magic cookie written over its first four id bytes, so it decodes. */
const withMagicCookie = (data: Uint8Array): Uint8Array => {
  const copy = data.slice()
  copy[4] = 0x21
  copy[5] = 0x12
  copy[6] = 0xa4
  copy[7] = 0x42
  return copy
}

/** The wire size of a message with these attributes (and FINGERPRINT when asked). */
const encodedSize = (attributes: ReadonlyArray<StunAttribute.StunAttribute>, fingerprint: boolean): number => {
  let size = StunMessage.headerLength
  for (let i = 0; i < attributes.length; i++) size += 4 + ((StunAttribute.valueLength(attributes[i]!) + 3) & ~3)
  return fingerprint ? size + 8 : size
}

/** Encodes a response; for an RFC 3489 request, without FINGERPRINT and with the request's cookie copied back. */
const encodeResponse = (
  cls: StunMessage.StunClass,
  method: number,
  request: Uint8Array,
  legacy: boolean,
  attributes: ReadonlyArray<StunAttribute.StunAttribute>
): Uint8Array => {
  const bytes = StunMessage.unsafeEncode(
    StunMessage.make(cls, method, request.subarray(8, 20), attributes),
    // Every attribute is built here from the server's own socket addresses, the request's source and checked
    // request values, so validating them again per answer would be wasted work.
    { fingerprint: !legacy, validate: false }
  )
  if (legacy) bytes.set(request.subarray(4, 8), 4)
  return bytes
}

const dedupe = (types: ReadonlyArray<number>): ReadonlyArray<number> => {
  const out: Array<number> = []
  for (let i = 0; i < types.length; i++) if (!out.includes(types[i]!)) out.push(types[i]!)
  return out
}

/** Sends a response (on the connection, or from UDP socket `from` to `to`) and caches it when it may be. */
const respond = (
  state: State,
  connection: Network.StreamSocket | undefined,
  key: string | undefined,
  request: Uint8Array,
  bytes: Uint8Array,
  from: number,
  to: SocketAddress
): void => {
  if (connection !== undefined) return connection.unsafeWrite(bytes)
  state.sockets[from]!.unsafeSend(bytes, to)
  if (key === undefined) return
  const cache = state.cache
  const ring = state.ring
  // O(1) eviction of the oldest entry: the ring slot about to be reused (if that entry is still the current one
  // for its key). `Map.keys().next()` would walk over the holes deletions leave at the front of the map.
  const oldKey = ring.keys[ring.next]
  if (oldKey !== undefined && cache.get(oldKey) === ring.entries[ring.next]) cache.delete(oldKey)
  const entry: CacheEntry = {
    bytes,
    from,
    to,
    requestLength: request.length,
    requestCrc: crc32(request, 0, request.length),
    expiresAt: state.now() + state.ttl
  }
  cache.set(key, entry)
  ring.keys[ring.next] = key
  ring.entries[ring.next] = entry
  ring.next = ring.next + 1 === state.maxEntries ? 0 : ring.next + 1
}

/** Sends an error response from the receiving socket to the request's source. */
const respondError = (
  state: State,
  connection: Network.StreamSocket | undefined,
  key: string | undefined,
  request: Uint8Array,
  legacy: boolean,
  method: number,
  index: number,
  remote: SocketAddress,
  code: number,
  reason: string,
  unknown?: ReadonlyArray<number>
): void => {
  const attributes: Array<StunAttribute.StunAttribute> = [StunAttribute.errorCode(code, reason)]
  if (unknown !== undefined) attributes.push(StunAttribute.unknownAttributes(unknown))
  if (state.software !== undefined) attributes.push(state.software)
  const bytes = encodeResponse(StunMessage.StunClass.ErrorResponse, method, request, legacy, attributes)
  respond(state, connection, key, request, bytes, index, remote)
}

const isWildcard = (ip: string): boolean => ip === "0.0.0.0" || ip === "::"

/**
 * Handles one datagram (`connection` undefined) or TCP frame: answers it, or drops it, and counts it. Plain code,
 * no fiber.
 */
const handle = (
  state: State,
  data: Uint8Array,
  remote: SocketAddress,
  index: number,
  connection: Network.StreamSocket | undefined
): void => {
  const transport = connection === undefined ? udp : tcp
  const size = data.length
  // RFC 8489 §6.3: the first two bits, a length that is a multiple of 4 and matches the bytes present.
  if (
    size < StunMessage.headerLength || (data[0]! & 0xc0) !== 0 || (data[3]! & 3) !== 0 ||
    ((data[2]! << 8) | data[3]!) + StunMessage.headerLength !== size
  ) {
    return count(transport, classNone, methodNone, outcomeNotStun)
  }
  const type = (data[0]! << 8) | data[1]!
  const legacy = data[4] !== 0x21 || data[5] !== 0x12 || data[6] !== 0xa4 || data[7] !== 0x42
  if (legacy && !(state.rfc3489 && type === requestType)) return count(transport, classNone, methodNone, outcomeNotStun)
  const cls = StunMessage.classOf(type)
  const method = StunMessage.methodOf(type)
  const methodLabel = method === StunMessage.StunMethod.Binding ? methodBinding : methodOther
  if (cls !== StunMessage.StunClass.Request) {
    const classLabel = cls === StunMessage.StunClass.Indication ? classIndication : classResponse
    return count(transport, classLabel, methodLabel, outcomeIgnored)
  }

  // RFC 8489 §6.3.1: a retransmission gets the response the original got.
  let key: string | undefined
  if (connection === undefined && state.maxEntries > 0) {
    key = cacheKey(index, remote, data)
    const hit = state.cache.get(key)
    if (hit !== undefined) {
      if (hit.expiresAt > state.now() && hit.requestLength === size && hit.requestCrc === crc32(data, 0, size)) {
        state.sockets[hit.from]!.unsafeSend(hit.bytes, hit.to)
        return count(udp, classRequest, methodLabel, outcomeCached)
      }
      state.cache.delete(key)
    }
  }

  const decoded = StunMessage.decode(legacy ? withMagicCookie(data) : data)
  // The header passed the checks above, so what failed is an attribute: a malformed request.
  if (Either.isLeft(decoded)) {
    respondError(state, connection, key, data, legacy, method, index, remote, 400, "Bad Request")
    return count(transport, classRequest, methodLabel, outcomeBadRequest)
  }
  const message = decoded.right
  if (!legacy && message.fingerprintOffset >= 0 && !StunIntegrity.verifyFingerprint(message)) {
    return count(transport, classRequest, methodLabel, outcomeBadFingerprint)
  }

  const change = StunMessage.find(message, "ChangeRequest")
  let unknown = message.unknownComprehensionRequired
  if (change !== undefined && !state.rfc5780) unknown = [...unknown, changeRequestType]
  if (unknown.length > 0) {
    respondError(state, connection, key, data, legacy, method, index, remote, 420, "Unknown Attribute", dedupe(unknown))
    return count(transport, classRequest, methodLabel, outcomeUnknownAttribute)
  }

  const responsePort = StunMessage.find(message, "ResponsePort")
  const padding = StunMessage.find(message, "Padding")
  const changes = change !== undefined && (change.changeIp || change.changePort)
  if (
    method !== StunMessage.StunMethod.Binding ||
    (responsePort !== undefined && (padding !== undefined || responsePort.port === 0)) ||
    (connection !== undefined && (responsePort !== undefined || changes))
  ) {
    respondError(state, connection, key, data, legacy, method, index, remote, 400, "Bad Request")
    return count(transport, classRequest, methodLabel, outcomeBadRequest)
  }

  // RFC 5780 §6.1, Table 1: sockets are indexed (A1,P1) (A1,P2) (A2,P1) (A2,P2), so bit 1 is the IP, bit 0 the port.
  const from = change !== undefined && changes
    ? index ^ (change.changeIp ? 2 : 0) ^ (change.changePort ? 1 : 0)
    : index
  const to: SocketAddress = responsePort === undefined
    ? remote
    : { family: remote.family, ip: remote.ip, port: responsePort.port }
  let origin: SocketAddress | undefined
  let other: SocketAddress | undefined
  if (connection === undefined) {
    const endpoint = state.udpEndpoints[from]!
    if (endpoint.specific) origin = endpoint.address
    if (state.rfc5780) other = state.udpEndpoints[index ^ 3]!.address
  } else {
    if (!isWildcard(connection.local.ip)) origin = plain(connection.local)
    if (state.rfc5780) other = state.tcpEndpoints[index ^ 3]!.address
  }

  const attributes: Array<StunAttribute.StunAttribute> = []
  if (legacy) {
    attributes.push(StunAttribute.mappedAddress(remote))
    if (origin !== undefined) attributes.push({ _tag: "SourceAddress", address: origin })
    if (other !== undefined) attributes.push({ _tag: "ChangedAddress", address: other })
  } else {
    attributes.push(StunAttribute.xorMappedAddress(remote), StunAttribute.mappedAddress(remote))
    if (origin !== undefined) attributes.push(StunAttribute.responseOrigin(origin))
    if (other !== undefined) attributes.push(StunAttribute.otherAddress(other))
  }
  if (state.software !== undefined) attributes.push(state.software)
  if (padding !== undefined) {
    // RFC 5780 §6.1 and §10: pad to the request's size, never beyond it.
    const rest = encodedSize(attributes, !legacy) + 4
    attributes.push(StunAttribute.padding(size > rest ? (size - rest) & ~3 : 0))
  }
  const bytes = encodeResponse(StunMessage.StunClass.SuccessResponse, method, data, legacy, attributes)
  // Padded responses are not kept: they can be as large as a datagram, and recomputing gives the same bytes.
  respond(state, connection, padding === undefined ? key : undefined, data, bytes, from, to)
  count(transport, classRequest, methodLabel, outcomeSuccess)
}

/** `handle`, made safe: whatever happens, the server keeps running, and an unexpected throw is counted. */
const safeHandle = (
  state: State,
  data: Uint8Array,
  remote: SocketAddress,
  index: number,
  connection: Network.StreamSocket | undefined
): void => {
  try {
    handle(state, data, remote, index, connection)
  } catch {
    count(connection === undefined ? udp : tcp, classNone, methodNone, outcomeInternalError)
  }
}

/** Drops expired entries. Entries are inserted in time order with one TTL, so the expired ones come first. */
const sweep = (state: State): void => {
  const now = state.now()
  for (const [key, entry] of state.cache) {
    if (entry.expiresAt > now) return
    state.cache.delete(key)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------------------------

interface Config {
  readonly primary: { readonly family: Family; readonly ip: string; readonly wildcard: boolean }
  readonly alternate: { readonly family: Family; readonly ip: string } | undefined
  readonly port: number
  readonly alternatePort: number | undefined
  readonly tcp: boolean
  readonly attempts: number
}

const invalid = (address: string, detail: string) =>
  new Network.NetworkError({ reason: "InvalidAddress", operation: "bind", address, cause: new Error(detail) })

const isPort = (port: number): boolean => Number.isInteger(port) && port >= 0 && port <= 65535

const parseConfig = (options: Options): Either.Either<Config, Network.NetworkError> => {
  const primary = TransportAddressModule.canonicalIp(options.address)
  if (Option.isNone(primary)) return Either.left(invalid(options.address, "not an IP address"))
  const port = options.port ?? defaultPort
  if (!isPort(port)) return Either.left(invalid(options.address, `invalid port ${port}`))
  const wildcard = isWildcard(primary.value.ip)
  const attempts = Math.max(1, Math.floor(options.bindAttempts ?? defaultBindAttempts))
  const tcpToo = options.tcp ?? true
  if (options.alternateAddress === undefined) {
    if (options.alternatePort !== undefined) {
      return Either.left(invalid(options.address, "alternatePort needs alternateAddress"))
    }
    return Either.right({
      primary: { ...primary.value, wildcard },
      alternate: undefined,
      port,
      alternatePort: undefined,
      tcp: tcpToo,
      attempts
    })
  }
  const alternate = TransportAddressModule.canonicalIp(options.alternateAddress)
  if (Option.isNone(alternate)) return Either.left(invalid(options.alternateAddress, "not an IP address"))
  const alternateWildcard = isWildcard(alternate.value.ip)
  if (wildcard || alternateWildcard) {
    return Either.left(invalid(options.alternateAddress, "RFC 5780 needs two specific IP addresses, not a wildcard"))
  }
  if (alternate.value.family !== primary.value.family) {
    return Either.left(invalid(options.alternateAddress, "the alternate address is not of the primary's family"))
  }
  if (alternate.value.ip === primary.value.ip) {
    return Either.left(invalid(options.alternateAddress, "the alternate address is the primary address"))
  }
  const alternatePort = options.alternatePort
  if (alternatePort !== undefined && (!isPort(alternatePort) || alternatePort === 0)) {
    return Either.left(invalid(options.alternateAddress, `invalid alternate port ${alternatePort}`))
  }
  if (alternatePort !== undefined && alternatePort === port) {
    return Either.left(invalid(options.alternateAddress, "the alternate port is the primary port"))
  }
  return Either.right({
    primary: { ...primary.value, wildcard },
    alternate: alternate.value,
    port,
    alternatePort,
    tcp: tcpToo,
    attempts
  })
}

/** The `k`-th port after `port`, wrapping around within 1024–65535. */
const portAfter = (port: number, k: number): number =>
  1024 + ((port - 1024 + k) % (65536 - 1024) + (65536 - 1024)) % (65536 - 1024)

interface Bound {
  readonly state: State
  readonly udp: ReadonlyArray<TransportAddress>
  readonly tcp: ReadonlyArray<TransportAddress>
}

/** One attempt: every socket and listener, in the caller's scope, with the handlers installed. */
const bindOnce = (
  network: Network.Service,
  config: Config,
  shared: Shared,
  attempt: number
): Effect.Effect<Bound, Network.NetworkError, Scope.Scope> =>
  Effect.gen(function*() {
    const family = config.primary.family
    const a1 = config.primary.ip
    const first = yield* network.bindUdp({ address: a1, family, port: config.port })
    const p1 = first.local.port
    const sockets: Array<Network.DatagramSocket> = [first]
    const endpoints: Array<SocketAddress> = [{ family, ip: a1, port: p1 }]
    if (config.alternate !== undefined) {
      const a2 = config.alternate.ip
      const p2 = config.alternatePort ?? (config.port === 0 ? portAfter(p1, 1) : portAfter(p1, 1 + attempt))
      endpoints.push({ family, ip: a1, port: p2 }, { family, ip: a2, port: p1 }, { family, ip: a2, port: p2 })
      for (let i = 1; i < 4; i++) {
        sockets.push(yield* network.bindUdp({ address: endpoints[i]!.ip, family, port: endpoints[i]!.port }))
      }
    }
    const specific = !config.primary.wildcard
    const state: State = {
      ...shared,
      sockets,
      udpEndpoints: endpoints.map((address) => ({ address, specific })),
      tcpEndpoints: config.tcp ? endpoints.map((address) => ({ address, specific })) : [],
      rfc5780: sockets.length === 4
    }
    const listeners: Array<TransportAddress> = []
    for (let i = 0; i < state.tcpEndpoints.length; i++) {
      const listener = yield* network.listenTcp(
        { address: endpoints[i]!.ip, family, port: endpoints[i]!.port },
        (connection) => serveConnection(state, i, connection)
      )
      listeners.push(listener.local)
    }
    for (let i = 0; i < sockets.length; i++) {
      yield* sockets[i]!.setHandler((data, remote) => safeHandle(state, data, remote, i, undefined))
    }
    return { state, udp: sockets.map((s) => s.local), tcp: listeners }
  })

/**
 * Serves one TCP connection until the peer closes it, it breaks the framing, it stays idle for `tcpIdleTimeout`, or
 * the server stops. A connection beyond `maxTcpConnections` is closed at once.
 */
const serveConnection = (
  state: State,
  index: number,
  connection: Network.StreamSocket
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.suspend(() => {
    if (state.open.count >= state.maxTcpConnections) {
      count(tcp, classNone, methodNone, outcomeConnectionLimit)
      return connection.close
    }
    state.open.count++
    const remote = plain(connection.remote)
    const deframer = StreamFraming.makeTurnStreamDeframer()
    let last = state.now()
    const onFrame = (frame: Uint8Array): void => safeHandle(state, frame, remote, index, connection)
    // Sleeps until the connection has been idle for the whole timeout; activity only moves `last`, so the
    // handler stays plain code and there is one timer per connection, not one per chunk.
    const idle: Effect.Effect<void> = Effect.suspend(() => {
      const wait = last + state.tcpIdleTimeout - state.now()
      return wait <= 0 ? Effect.void : Effect.zipRight(Effect.sleep(Duration.millis(wait)), idle)
    })
    return Effect.zipRight(
      connection.setHandler((chunk) => {
        last = state.now()
        if (Either.isRight(deframer.push(chunk, onFrame))) return
        count(tcp, classNone, methodNone, outcomeFramingError)
        return connection.close
      }),
      Effect.raceFirst(
        Effect.ignore(connection.closed),
        Effect.zipRight(
          idle,
          Effect.zipRight(Effect.sync(() => count(tcp, classNone, methodNone, outcomeIdleClosed)), connection.close)
        )
      )
    ).pipe(Effect.ensuring(Effect.sync(() => state.open.count--)))
  })

/**
 * Starts a server for the lifetime of the scope: binds its sockets (retrying other ports when `port` is 0 and a
 * socket is in use), starts the cache sweeper, and answers until the scope closes. Fails with `NetworkError` when
 * the options are invalid (`InvalidAddress`) or the sockets cannot be bound.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, Network.NetworkError, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* parseConfig(options)
    const network = yield* Network.Network
    const scope = yield* Effect.scope
    const clock = yield* Effect.clock
    const ttl = Duration.toMillis(Duration.decode(options.responseCacheTtl ?? defaultResponseCacheTtl))
    const maxEntries = options.cacheResponses === true && ttl > 0
      ? Math.max(0, Math.floor(options.maxCacheEntries ?? defaultMaxCacheEntries))
      : 0
    const softwareText = [...(options.software ?? defaultSoftware)].slice(0, 127).join("")
    const cache = new Map<string, CacheEntry>()
    const shared: Shared = {
      software: softwareText === "" ? undefined : StunAttribute.software(softwareText),
      rfc3489: options.rfc3489 ?? true,
      cache,
      ring: { keys: new Array(maxEntries), entries: new Array(maxEntries), next: 0 },
      ttl,
      maxEntries,
      now: () => clock.unsafeCurrentTimeMillis(),
      tcpIdleTimeout: Math.max(1, Duration.toMillis(Duration.decode(options.tcpIdleTimeout ?? defaultTcpIdleTimeout))),
      maxTcpConnections: Math.max(0, Math.floor(options.maxTcpConnections ?? defaultMaxTcpConnections)),
      open: { count: 0 }
    }
    // With both ports fixed there is nothing else to try.
    const retryable = config.port === 0 || (config.alternate !== undefined && config.alternatePort === undefined)
    let attempt = 0
    const bound: Bound = yield* Effect.suspend(() => {
      const current = attempt++
      return Effect.flatMap(
        Scope.fork(scope, ExecutionStrategy.sequential),
        (child) =>
          Scope.extend(bindOnce(network, config, shared, current), child).pipe(
            Effect.tapError((error) =>
              Effect.zipRight(
                Scope.close(child, Exit.void),
                Effect.logDebug("StunServer: could not bind, trying another pair of ports").pipe(
                  Effect.annotateLogs({ attempt: current, reason: error.reason, address: error.address ?? "" })
                )
              )
            )
          )
      )
    }).pipe(
      Effect.retry({
        times: retryable ? config.attempts - 1 : 0,
        while: (error) => error.reason === "AddressInUse"
      })
    )
    if (maxEntries > 0) {
      const running = bound.state
      yield* Effect.forkScoped(
        Effect.repeat(Effect.sync(() => sweep(running)), Schedule.spaced(Duration.millis(Math.max(1, ttl / 2))))
      )
    }
    yield* Effect.logDebug("StunServer: listening").pipe(
      Effect.annotateLogs({ udp: bound.udp.map(TransportAddressModule.format).join(" ") })
    )
    return {
      udp: bound.udp,
      tcp: bound.tcp,
      endpoints: [...bound.udp, ...bound.tcp],
      primary: bound.udp[0]!,
      other: bound.udp.length === 4 ? bound.udp[3] : undefined,
      cachedResponses: () => cache.size
    }
  }).pipe(Effect.withSpan("StunServer.make", { captureStackTrace: false }))

/**
 * The server as a scoped layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<StunServer, Network.NetworkError, Network.Network> =>
  Layer.scoped(StunServer, make(options))

/**
 * The options read from `Config` (environment variables by default): `STUN_ADDRESS` (default `0.0.0.0`),
 * `STUN_PORT` (default 3478), `STUN_ALTERNATE_ADDRESS` and `STUN_ALTERNATE_PORT` (RFC 5780, optional),
 * `STUN_TCP` (default true), `STUN_SOFTWARE`, `STUN_TCP_IDLE_TIMEOUT` (a duration such as `30 seconds`) and
 * `STUN_MAX_TCP_CONNECTIONS`.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  address: Config.string("STUN_ADDRESS").pipe(Config.withDefault("0.0.0.0")),
  port: Config.port("STUN_PORT").pipe(Config.withDefault(defaultPort)),
  alternateAddress: Config.option(Config.string("STUN_ALTERNATE_ADDRESS")),
  alternatePort: Config.option(Config.port("STUN_ALTERNATE_PORT")),
  tcp: Config.boolean("STUN_TCP").pipe(Config.withDefault(true)),
  software: Config.option(Config.string("STUN_SOFTWARE")),
  tcpIdleTimeout: Config.duration("STUN_TCP_IDLE_TIMEOUT").pipe(Config.withDefault(defaultTcpIdleTimeout)),
  maxTcpConnections: Config.integer("STUN_MAX_TCP_CONNECTIONS").pipe(Config.withDefault(defaultMaxTcpConnections))
}).pipe(Config.map((c): Options => ({
  address: c.address,
  port: c.port,
  alternateAddress: Option.getOrUndefined(c.alternateAddress),
  alternatePort: Option.getOrUndefined(c.alternatePort),
  tcp: c.tcp,
  software: Option.getOrUndefined(c.software),
  tcpIdleTimeout: c.tcpIdleTimeout,
  maxTcpConnections: c.maxTcpConnections
})))

/**
 * The server as a scoped layer configured by {@link config}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<StunServer, ConfigError.ConfigError | Network.NetworkError, Network.Network> =
  Layer.scoped(StunServer, Effect.flatMap(config, make))
