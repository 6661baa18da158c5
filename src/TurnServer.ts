/**
 * A TURN server (RFC 8656) over UDP (and TCP, RFC 8656 §3.1 and §12.5) on any `Network`: allocations keyed by their
 * 5-tuple, permissions, channel bindings, the relay data plane, long-term credentials with expiring nonces
 * (RFC 8489 §9.2) and TURN REST shared secrets, quotas and a refusal of dangerous peer addresses by default.
 *
 * What is implemented, by RFC 8656 section:
 * - §7.1–§7.2 Allocate: REQUESTED-TRANSPORT must be UDP (17) else 442, missing 400; REQUESTED-ADDRESS-FAMILY chooses
 *   the relay's family (440 when the relay is of the other family); DONT-FRAGMENT is accepted (the relay never
 *   fragments on its own; the flag is not forwarded to the socket); EVEN-PORT is honoured (the relayed socket is bound
 *   again until its port is even); with its R bit the next port is bound too and reserved for 30 s under a
 *   RESERVATION-TOKEN, which a later Allocate (of any 5-tuple, as §7.2 allows) presents to get that port; an unknown
 *   or expired token gets 508, EVEN-PORT together with RESERVATION-TOKEN 400. An Allocate on a 5-tuple that already has an allocation is a retransmission when it is the
 *   same request (same transaction id, size and CRC-32): it gets the bytes of the original success response again;
 *   otherwise 437. The relayed socket is bound by the `Network` service on `relayAddress` (port 0 or
 *   `relayPortRange`); XOR-RELAYED-ADDRESS advertises `externalAddress` when set.
 * - §7.3, §8 Refresh: lifetime = max(default, min(requested, max)) (default 600 s, max 3600 s); LIFETIME 0 deletes
 *   the allocation at once. Each allocation has one timer fiber (a `FiberMap` keyed by allocation) that releases it
 *   exactly at its expiry: the relayed socket is closed with the allocation's scope.
 * - §9 Permissions (CreatePermission, one or more XOR-PEER-ADDRESS): 300 s, refreshed by CreatePermission and
 *   ChannelBind, keyed by the peer's IP only (§9: "the port is ignored"). Expiry is checked against `Clock` at each
 *   use and a sweeper removes expired entries.
 * - §11, §12 Channels (ChannelBind): 600 s; a channel number and a peer address stay reserved for 300 s after the
 *   binding expires (§12: "MUST NOT ... until 5 minutes after"), so they cannot be rebound to something else.
 * - §10, §11.4–§11.6, §12.4–§12.6 Data plane: Send indications and ChannelData from the client are relayed to the
 *   peer; datagrams from a peer arrive at the relayed socket and go to the client as ChannelData (when a channel is
 *   bound to that peer) or as a Data indication. Only peers with a live permission are relayed, both ways (one
 *   `Map` lookup by IP). All of this is plain code in the socket handlers (`unsafeSend`, `unsafeUpdate` metrics):
 *   no fiber and no Effect per packet. Over TCP, ChannelData is padded to 4 bytes (§12.5), and the stream is cut
 *   by `StreamFraming`'s TURN deframer with the RFC 5766 channel range allowed (see {@link maxLegacyChannelNumber});
 *   a framing error closes that connection, and closing a connection releases its allocation.
 * - Authentication (RFC 8489 §9.2, RFC 8656 §6.2): every request but Binding must carry USERNAME, REALM, NONCE and
 *   MESSAGE-INTEGRITY (or MESSAGE-INTEGRITY-SHA256). Without integrity: 401 with REALM and NONCE; with integrity but
 *   a missing USERNAME, REALM or NONCE: 400; a nonce that is not ours or has expired: 438 with a fresh NONCE; an
 *   unknown user or a wrong MESSAGE-INTEGRITY: 401. Users are static (`users`) or TURN REST (`restSecrets`, several
 *   for rotation: `<expiry>:<user>` and base64(HMAC-SHA1(secret, username)); an expired username is refused). The
 *   long-term key (MD5, RFC 8489 §9.2.2) is computed once per static user and cached for REST users, and verified in
 *   constant time by `StunIntegrity.verify`. Every response to an authenticated request (success or error) carries
 *   MESSAGE-INTEGRITY and FINGERPRINT. A request for an existing allocation with another username gets 441.
 * - An unknown username is answered like a wrong password (401), after the same HMAC work against a decoy key, so
 *   timing does not reveal which usernames exist.
 * - Nonces are stateless: `<expiry base36>-<16 hex of HMAC-SHA1(server key, expiry | transport | client IP)>`, with
 *   a server key drawn from Effect's `Random` at start-up. A flood of unauthenticated requests therefore costs no
 *   memory; a nonce is only good for the client IP it was issued to, and until `nonceLifetime` (default 10 min).
 *
 * Safety (RFC 8656 §21):
 * - Peer addresses. CreatePermission and ChannelBind to a denied peer get 403 Forbidden. Denied by default:
 *   "this network", loopback, RFC 1918 private, CGNAT (100.64/10), link-local, multicast, reserved and broadcast
 *   IPv4 ranges; IPv6 unspecified, loopback, unique-local (fc00::/7), link-local (fe80::/10), multicast (ff00::/8),
 *   IPv4-mapped and NAT64 (64:ff9b::/96) addresses; and the server's own addresses (listening, relay, external).
 *   `allowPeers` (CIDR list) lifts the default refusal (tests on loopback pass `["127.0.0.0/8"]`, as coturn needs
 *   `--allow-loopback-peers`); `denyPeers` (CIDR list) refuses more and wins over `allowPeers`. Whatever the lists
 *   say, a relayed socket never sends to one of the server's listening endpoints (no relay loops).
 * - Quotas: `userQuota` allocations per user (for REST users, the part after the first `:`) give 486, `totalQuota`
 *   allocations in all give 508; at most `maxPermissionsPerAllocation` permissions per allocation (508 beyond).
 * - Amplification: an unauthenticated request is never answered with more bytes than it carried, except the 401,
 *   which is kept small: header (20), ERROR-CODE "Unauthorized" (20), REALM, NONCE (at most 25 characters: 32) and
 *   FINGERPRINT (8), that is 80 bytes + the padded REALM attribute (96 bytes with the realm "example.org"), against
 *   28 bytes for the smallest Allocate (header and REQUESTED-TRANSPORT): a ratio of 3.4 with that realm, and at
 *   most 4 with any realm of up to 28 bytes. Other error answers to unauthenticated requests (400, 420,
 *   438) are sent only when they are not longer than the request, else dropped and counted ("amplification"); no
 *   unauthenticated answer carries SOFTWARE. Binding requests are answered the same way (XOR-MAPPED-ADDRESS and
 *   FINGERPRINT, only when not longer than the request).
 * - Garbage, truncated, oversized or badly framed input is dropped and counted; an exception in a handler is caught
 *   and counted ("internal-error"), never fatal. A retransmitted Allocate cannot create a second allocation.
 *
 * Metrics (`Metrics.ts`): `turnAllocations`, `turnPermissions`, `turnChannels` (up-down counters),
 * `turnRelayedPackets` and `turnRelayedBytes` by direction, `turnAuthFailures` by code, `turnDrops` by reason and
 * `turnRequests` by method and code.
 *
 * Not implemented: TCP relaying (RFC 6062), TLS/DTLS listeners, IPv4/IPv6 dual allocations
 * (ADDITIONAL-ADDRESS-FAMILY is ignored), PASSWORD-ALGORITHMS negotiation (MD5 keys
 * only), bandwidth limits, ICMP forwarding.
 *
 * @since 0.1.0
 */
import {
  Context,
  Duration,
  Effect,
  Either,
  ExecutionStrategy,
  Exit,
  FiberMap,
  FiberSet,
  Layer,
  Option,
  Random,
  Schedule,
  Scope
} from "effect"
import { crc32 } from "./internal/crc32.js"
import { hmacSha1Into, hmacSha1Key } from "./internal/sha1.js"
import type { HmacSha1Key } from "./internal/sha1.js"
import { utf8Bytes } from "./internal/utf8.js"
import * as Metrics from "./Metrics.js"
import * as Network from "./Network.js"
import * as StreamFraming from "./StreamFraming.js"
import * as StunAttribute from "./StunAttribute.js"
import * as StunIntegrity from "./StunIntegrity.js"
import * as StunMessage from "./StunMessage.js"
import type { Family, SocketAddress, TransportAddress } from "./TransportAddress.js"
import * as TransportAddressModule from "./TransportAddress.js"
import * as TurnAuth from "./TurnAuth.js"
import * as TurnChannelData from "./TurnChannelData.js"

// ---------------------------------------------------------------------------------------------------------------
// Constants and options
// ---------------------------------------------------------------------------------------------------------------

/**
 * The TURN port over UDP and TCP (RFC 8656 §3.1: the STUN port).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPort = 3478

/**
 * The default allocation lifetime: RFC 8656 §3.2 ("10 minutes").
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLifetime: Duration.Duration = Duration.minutes(10)

/**
 * The longest allocation lifetime the server grants (RFC 8656 §7.2 suggests 3600 s).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxLifetime: Duration.Duration = Duration.hours(1)

/**
 * Permission lifetime: RFC 8656 §9 ("300 seconds (= 5 minutes)").
 *
 * @since 0.1.0
 * @category constants
 */
export const permissionLifetime: Duration.Duration = Duration.minutes(5)

/**
 * Channel binding lifetime: RFC 8656 §12 ("10 minutes").
 *
 * @since 0.1.0
 * @category constants
 */
export const channelLifetime: Duration.Duration = Duration.minutes(10)

/**
 * How long a channel number and peer stay reserved after the binding expires: RFC 8656 §12 ("5 minutes").
 *
 * @since 0.1.0
 * @category constants
 */
export const channelReuseDelay: Duration.Duration = Duration.minutes(5)

/**
 * The default nonce lifetime (RFC 8489 §9.2 leaves it to the server; coturn uses 600 s).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultNonceLifetime: Duration.Duration = Duration.minutes(10)

/**
 * The default realm (RFC 8489 §14.9).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRealm = "effect-ice"

/**
 * Allocations per user by default (486 Allocation Quota Reached beyond).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultUserQuota = 10

/**
 * Allocations in all by default (508 Insufficient Capacity beyond).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTotalQuota = 1000

/**
 * Permissions per allocation by default (508 beyond).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxPermissionsPerAllocation = 256

/**
 * How often expired permissions and channels are removed from memory.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSweepInterval: Duration.Duration = Duration.seconds(10)

/**
 * How to run a server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The IP addresses to listen on (each with UDP, and TCP when `tcp`). */
  readonly addresses: ReadonlyArray<string>
  /** The port (default {@link defaultPort}); 0 lets the network choose one per listener (see `endpoints`). */
  readonly port?: number | undefined
  /** Also listen on TCP (default false). */
  readonly tcp?: boolean | undefined
  /** The IP relayed sockets are bound on (default: the first listening address, which must then be specific). */
  readonly relayAddress?: string | undefined
  /** The ports relayed sockets may use (default: any port the network gives). */
  readonly relayPortRange?: readonly [number, number] | undefined
  /** The IP advertised in XOR-RELAYED-ADDRESS instead of the relay's own (a server behind a 1:1 NAT). */
  readonly externalAddress?: string | undefined
  /** REALM (default {@link defaultRealm}). */
  readonly realm?: string | undefined
  /** Static long-term users: name → password. */
  readonly users?: Readonly<Record<string, string>> | undefined
  /** TURN REST shared secrets (any of them is accepted). */
  readonly restSecrets?: ReadonlyArray<string> | undefined
  /** How long a nonce is good for (default {@link defaultNonceLifetime}). */
  readonly nonceLifetime?: Duration.DurationInput | undefined
  /** The lifetime of an allocation when the client asks for less (default {@link defaultLifetime}). */
  readonly defaultLifetime?: Duration.DurationInput | undefined
  /** The longest lifetime granted (default {@link defaultMaxLifetime}). */
  readonly maxLifetime?: Duration.DurationInput | undefined
  /** Peer ranges (CIDR, `a.b.c.d/n` or `x::/n`) relayed to even if denied by default. */
  readonly allowPeers?: ReadonlyArray<string> | undefined
  /** Peer ranges (CIDR) always refused; wins over `allowPeers`. */
  readonly denyPeers?: ReadonlyArray<string> | undefined
  /** Allocations per user (default {@link defaultUserQuota}). */
  readonly userQuota?: number | undefined
  /** Allocations in all (default {@link defaultTotalQuota}). */
  readonly totalQuota?: number | undefined
  /** Permissions per allocation (default {@link defaultMaxPermissionsPerAllocation}). */
  readonly maxPermissionsPerAllocation?: number | undefined
  /** SOFTWARE on authenticated responses (default "effect-ice"); the empty string leaves it out. */
  readonly software?: string | undefined
  /** How often the sweeper runs (default {@link defaultSweepInterval}). */
  readonly sweepInterval?: Duration.DurationInput | undefined
}

/**
 * A snapshot of one allocation (for tests and operators).
 *
 * @since 0.1.0
 * @category models
 */
export interface AllocationInfo {
  /** The client's transport address as the server sees it. */
  readonly client: TransportAddress
  readonly username: string
  /** The address advertised in XOR-RELAYED-ADDRESS. */
  readonly relayed: SocketAddress
  /** The relayed socket's own address. */
  readonly relaySocket: SocketAddress
  /** When it expires (ms on Effect's clock). */
  readonly expiresAt: number
  /** Live permissions: peer IP and expiry (ms on Effect's clock). */
  readonly permissions: ReadonlyArray<{ readonly ip: string; readonly expiresAt: number }>
  /** Live channel bindings, with their expiry (ms on Effect's clock). */
  readonly channels: ReadonlyArray<
    { readonly channel: number; readonly peer: SocketAddress; readonly expiresAt: number }
  >
}

/**
 * A running server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The UDP listeners, in the order of `addresses`. */
  readonly udp: ReadonlyArray<TransportAddress>
  /** The TCP listeners (empty without `tcp`). */
  readonly tcp: ReadonlyArray<TransportAddress>
  /** `udp` then `tcp`. */
  readonly endpoints: ReadonlyArray<TransportAddress>
  /** How many allocations exist now (including ones whose relayed socket is being bound). */
  readonly allocationCount: () => number
  /** Live (unexpired) permissions over all allocations. */
  readonly permissionCount: () => number
  /** Live (unexpired) channel bindings over all allocations. */
  readonly channelCount: () => number
  /** A snapshot of every allocation. */
  readonly allocations: () => ReadonlyArray<AllocationInfo>
}

/**
 * The server as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class TurnServer extends Context.Tag("effect-ice/TurnServer")<TurnServer, Service>() {}

// ---------------------------------------------------------------------------------------------------------------
// Peer address policy
// ---------------------------------------------------------------------------------------------------------------

/**
 * An IP range: the address bytes and the prefix length.
 *
 * @since 0.1.0
 * @category models
 */
export interface Cidr {
  readonly bytes: Uint8Array
  readonly prefix: number
}

/**
 * Parses `a.b.c.d/n`, `x::/n` or a bare address (a /32 or /128). `None` for anything else.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseCidr = (text: string): Option.Option<Cidr> => {
  const slash = text.indexOf("/")
  const ip = slash < 0 ? text : text.slice(0, slash)
  const bytes = TransportAddressModule.ipToBytes(ip)
  if (Option.isNone(bytes)) return Option.none()
  const max = bytes.value.length * 8
  if (slash < 0) return Option.some({ bytes: bytes.value, prefix: max })
  const prefixText = text.slice(slash + 1)
  if (!/^[0-9]{1,3}$/.test(prefixText)) return Option.none()
  const prefix = Number(prefixText)
  return prefix > max ? Option.none() : Option.some({ bytes: bytes.value, prefix })
}

/**
 * Whether `ip` (as bytes) is in the range.
 *
 * @since 0.1.0
 * @category guards
 */
export const cidrContains = (cidr: Cidr, ip: Uint8Array): boolean => {
  if (ip.length !== cidr.bytes.length) return false
  const whole = cidr.prefix >> 3
  for (let i = 0; i < whole; i++) if (ip[i] !== cidr.bytes[i]) return false
  const rest = cidr.prefix & 7
  if (rest === 0) return true
  const mask = (0xff << (8 - rest)) & 0xff
  return (ip[whole]! & mask) === (cidr.bytes[whole]! & mask)
}

/**
 * The ranges refused by default (RFC 8656 §21.3 and the IANA special-purpose registries): not public unicast.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultDeniedPeers: ReadonlyArray<string> = [
  "0.0.0.0/8", // "this network"
  "10.0.0.0/8", // RFC 1918
  "100.64.0.0/10", // shared address space (CGNAT)
  "127.0.0.0/8", // loopback
  "169.254.0.0/16", // link-local
  "172.16.0.0/12", // RFC 1918
  "192.0.0.0/24", // IETF protocol assignments
  "192.168.0.0/16", // RFC 1918
  "198.18.0.0/15", // benchmarking
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved and broadcast
  "::/128", // unspecified
  "::1/128", // loopback
  "::ffff:0:0/96", // IPv4-mapped
  "64:ff9b::/96", // NAT64
  "fc00::/7", // unique local
  "fe80::/10", // link-local
  "ff00::/8" // multicast
]

const parseCidrs = (list: ReadonlyArray<string>, what: string): Either.Either<Array<Cidr>, Network.NetworkError> => {
  const out: Array<Cidr> = []
  for (const text of list) {
    const cidr = parseCidr(text)
    if (Option.isNone(cidr)) return Either.left(invalid(text, `${what}: not a CIDR range`))
    out.push(cidr.value)
  }
  return Either.right(out)
}

const anyContains = (list: ReadonlyArray<Cidr>, ip: Uint8Array): boolean => {
  for (let i = 0; i < list.length; i++) if (cidrContains(list[i]!, ip)) return true
  return false
}

// ---------------------------------------------------------------------------------------------------------------
// Metrics labels
// ---------------------------------------------------------------------------------------------------------------

const dropReasons = [
  "not-stun",
  "bad-fingerprint",
  "no-allocation",
  "no-permission",
  "no-channel",
  "bad-channel-data",
  "bad-indication",
  "amplification",
  "allocation-pending",
  "loop",
  "ignored",
  "framing-error",
  "internal-error"
] as const
type DropReason = typeof dropReasons[number]
const dropLabels = new Map<DropReason, ReadonlyArray<ReturnType<typeof Metrics.label>>>(
  dropReasons.map((r) => [r, [Metrics.label("reason", r)]])
)
const drop = (reason: DropReason): void => Metrics.increment(Metrics.turnDrops, dropLabels.get(reason))

const toPeer = [Metrics.label("direction", "to-peer")]
const toClient = [Metrics.label("direction", "to-client")]
const relayed = (labels: typeof toPeer, bytes: number): void => {
  Metrics.turnRelayedPackets.unsafeUpdate(1, labels)
  Metrics.turnRelayedBytes.unsafeUpdate(bytes, labels)
}

const authLabels = new Map<number, ReadonlyArray<ReturnType<typeof Metrics.label>>>()
const authFailure = (code: number): void => {
  let labels = authLabels.get(code)
  if (labels === undefined) authLabels.set(code, labels = [Metrics.label("code", String(code))])
  Metrics.increment(Metrics.turnAuthFailures, labels)
}

const methodNames: Record<number, string> = {
  [StunMessage.StunMethod.Binding]: "binding",
  [StunMessage.StunMethod.Allocate]: "allocate",
  [StunMessage.StunMethod.Refresh]: "refresh",
  [StunMessage.StunMethod.CreatePermission]: "create-permission",
  [StunMessage.StunMethod.ChannelBind]: "channel-bind"
}
const requestLabels = new Map<number, ReadonlyArray<ReturnType<typeof Metrics.label>>>()
const countRequest = (method: number, code: number): void => {
  const k = method * 1000 + code
  let labels = requestLabels.get(k)
  if (labels === undefined) {
    requestLabels.set(
      k,
      labels = [Metrics.label("method", methodNames[method] ?? "other"), Metrics.label("code", String(code))]
    )
  }
  Metrics.increment(Metrics.turnRequests, labels)
}

const gauge = (metric: typeof Metrics.turnAllocations, delta: number): void => {
  if (delta !== 0) metric.unsafeUpdate(delta, [])
}

// ---------------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------------

interface Channel {
  readonly number: number
  readonly peer: SocketAddress
  readonly peerKey: string
  expiresAt: number
}

/** Where the client is: how to send to it. */
interface ClientLink {
  readonly transport: "udp" | "tcp"
  readonly remote: SocketAddress
  readonly send: (bytes: Uint8Array) => void
}

interface Allocation {
  readonly id: number
  readonly key: string
  readonly link: ClientLink
  readonly username: string
  readonly quotaUser: string
  readonly family: Family
  /** The Allocate request that created it, for retransmissions (RFC 8656 §7.2). */
  readonly allocateTid: string
  readonly allocateLength: number
  readonly allocateCrc: number
  allocateResponse: Uint8Array | undefined
  socket: Network.DatagramSocket | undefined
  relayed: SocketAddress | undefined
  scope: Scope.CloseableScope | undefined
  expiresAt: number
  released: boolean
  /** Peer IP → expiry (ms). */
  readonly permissions: Map<string, number>
  readonly channelsByNumber: Map<number, Channel>
  /** `ip|port` → channel. */
  readonly channelsByPeer: Map<string, Channel>
}

interface Reservation {
  readonly id: number
  readonly token: string
  readonly socket: Network.DatagramSocket
  readonly scope: Scope.CloseableScope
}

interface UserKeys {
  readonly keys: ReadonlyArray<StunIntegrity.IntegrityKey>
  /** Unix seconds after which the username is refused (REST), or Infinity. */
  readonly expiresAt: number
}

interface State {
  readonly now: () => number
  readonly realm: string
  readonly realmAttribute: StunAttribute.StunAttribute
  readonly software: StunAttribute.StunAttribute | undefined
  readonly nonceKey: HmacSha1Key
  /** Checked against when the username is unknown (see `authenticate`). */
  readonly decoyKey: StunIntegrity.IntegrityKey
  readonly nonceLifetime: number
  readonly defaultLifetime: number
  readonly maxLifetime: number
  readonly permissionLifetime: number
  readonly channelLifetime: number
  readonly channelReuseDelay: number
  readonly staticUsers: Map<string, UserKeys>
  readonly restSecrets: ReadonlyArray<string>
  readonly restCache: Map<string, UserKeys>
  readonly allow: ReadonlyArray<Cidr>
  readonly deny: ReadonlyArray<Cidr>
  readonly defaultDeny: ReadonlyArray<Cidr>
  /** The server's own IPs (listening, relay, external). */
  readonly ownIps: Set<string>
  /** `ip|port` of every listening endpoint: never a relay destination. */
  readonly listeningEndpoints: Set<string>
  readonly listeningIps: Set<string>
  readonly userQuota: number
  readonly totalQuota: number
  readonly maxPermissions: number
  readonly relayIp: string
  readonly relayFamily: Family
  readonly relayPortRange: readonly [number, number] | undefined
  readonly externalIp: string | undefined
  readonly allocations: Map<string, Allocation>
  readonly perUser: Map<string, number>
  /** Ports reserved by EVEN-PORT with the R bit, by RESERVATION-TOKEN (hex). */
  readonly reservations: Map<string, Reservation>
  readonly indicationId: Uint8Array
  nextId: number
  /** Runs a control-plane effect in a fiber owned by the server. */
  runTask: (effect: Effect.Effect<void>) => void
  /** Runs (or replaces) the timer of allocation `id`. */
  runTimer: (id: number, effect: Effect.Effect<void>) => void
  readonly network: Network.Service
  readonly serverScope: Scope.Scope
}

const peerKeyOf = (address: SocketAddress): string => address.ip + "|" + address.port

const tidKey = (data: Uint8Array): string =>
  String.fromCharCode(
    (data[8]! << 8) | data[9]!,
    (data[10]! << 8) | data[11]!,
    (data[12]! << 8) | data[13]!,
    (data[14]! << 8) | data[15]!,
    (data[16]! << 8) | data[17]!,
    (data[18]! << 8) | data[19]!
  )

// ---------------------------------------------------------------------------------------------------------------
// Nonces
// ---------------------------------------------------------------------------------------------------------------

const hex = "0123456789abcdef"
const nonceMac = new Uint8Array(20)

const nonceSignature = (state: State, expiry: string, transport: string, ip: string): string => {
  const input = utf8Bytes(expiry + "|" + transport + "|" + ip)
  hmacSha1Into(state.nonceKey, input, 0, input.length, -1, nonceMac, 0)
  let out = ""
  for (let i = 0; i < 8; i++) out += hex[nonceMac[i]! >> 4]! + hex[nonceMac[i]! & 15]!
  return out
}

const makeNonce = (state: State, link: ClientLink): string => {
  const expiry = (state.now() + state.nonceLifetime).toString(36)
  return expiry + "-" + nonceSignature(state, expiry, link.transport, link.remote.ip)
}

/** Constant-time string comparison (same length assumed checked by the caller). */
const sameString = (a: string, b: string): boolean => {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}

/** Whether a nonce is one we issued to this client and has not expired. */
const nonceValid = (state: State, nonce: string, link: ClientLink): boolean => {
  const dash = nonce.indexOf("-")
  if (dash < 1 || dash > 12 || nonce.length !== dash + 17) return false
  const expiry = nonce.slice(0, dash)
  if (!/^[0-9a-z]+$/.test(expiry)) return false
  if (!sameString(nonce.slice(dash + 1), nonceSignature(state, expiry, link.transport, link.remote.ip))) return false
  return parseInt(expiry, 36) > state.now()
}

// ---------------------------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------------------------

const reasons: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  420: "Unknown Attribute",
  437: "Allocation Mismatch",
  438: "Stale Nonce",
  440: "Address Family not Supported",
  441: "Wrong Credentials",
  442: "Unsupported Transport Protocol",
  443: "Peer Address Family Mismatch",
  486: "Allocation Quota Reached",
  508: "Insufficient Capacity"
}

interface Authenticated {
  readonly username: string
  readonly quotaUser: string
  readonly key: StunIntegrity.IntegrityKey
}

const encode = (
  cls: StunMessage.StunClass,
  method: number,
  request: Uint8Array,
  attributes: ReadonlyArray<StunAttribute.StunAttribute>,
  key: StunIntegrity.IntegrityKey | undefined
): Uint8Array =>
  StunMessage.unsafeEncode(StunMessage.make(cls, method, request.subarray(8, 20), attributes), {
    integrity: key,
    fingerprint: true,
    validate: false
  })

/** A success response to an authenticated request: MESSAGE-INTEGRITY, SOFTWARE, FINGERPRINT. */
const success = (
  state: State,
  link: ClientLink,
  method: number,
  request: Uint8Array,
  auth: Authenticated,
  attributes: Array<StunAttribute.StunAttribute>
): Uint8Array => {
  if (state.software !== undefined) attributes.push(state.software)
  const bytes = encode(StunMessage.StunClass.SuccessResponse, method, request, attributes, auth.key)
  link.send(bytes)
  countRequest(method, 200)
  return bytes
}

/** An error response to an authenticated request: MESSAGE-INTEGRITY, SOFTWARE, FINGERPRINT. */
const failAuthenticated = (
  state: State,
  link: ClientLink,
  method: number,
  request: Uint8Array,
  auth: Authenticated,
  code: number,
  extra: ReadonlyArray<StunAttribute.StunAttribute> = []
): void => {
  const attributes: Array<StunAttribute.StunAttribute> = [StunAttribute.errorCode(code, reasons[code] ?? "Error")]
  attributes.push(...extra)
  if (state.software !== undefined) attributes.push(state.software)
  link.send(encode(StunMessage.StunClass.ErrorResponse, method, request, attributes, auth.key))
  countRequest(method, code)
}

/**
 * An error response to a request that is not (yet) authenticated: no SOFTWARE, no MESSAGE-INTEGRITY; never longer
 * than the request, except the 401.
 */
const failUnauthenticated = (
  link: ClientLink,
  method: number,
  request: Uint8Array,
  code: number,
  extra: ReadonlyArray<StunAttribute.StunAttribute> = []
): void => {
  const attributes: Array<StunAttribute.StunAttribute> = [StunAttribute.errorCode(code, reasons[code] ?? "Error")]
  attributes.push(...extra)
  const bytes = encode(StunMessage.StunClass.ErrorResponse, method, request, attributes, undefined)
  if (code !== 401 && bytes.length > request.length) return drop("amplification")
  link.send(bytes)
  countRequest(method, code)
}

const challenge = (state: State, link: ClientLink, method: number, request: Uint8Array, code: 401 | 438): void => {
  authFailure(code)
  failUnauthenticated(link, method, request, code, [
    state.realmAttribute,
    StunAttribute.nonce(makeNonce(state, link))
  ])
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication (RFC 8489 §9.2.4)
// ---------------------------------------------------------------------------------------------------------------

const maxRestCache = 10_000

const keysFor = (state: State, username: string): UserKeys | undefined => {
  const fixed = state.staticUsers.get(username)
  if (fixed !== undefined) return fixed
  if (state.restSecrets.length === 0) return undefined
  const nowSeconds = state.now() / 1000
  const cached = state.restCache.get(username)
  if (cached !== undefined) return cached.expiresAt >= nowSeconds ? cached : undefined
  const passwords = TurnAuth.restPasswords(state.restSecrets, username, nowSeconds)
  if (Either.isLeft(passwords)) return undefined
  const keys: Array<StunIntegrity.IntegrityKey> = []
  for (const password of passwords.right) {
    const key = StunIntegrity.longTermKey(username, state.realm, password)
    if (Either.isRight(key)) keys.push(key.right)
  }
  // `restPasswords` accepted the username, so it starts with a decimal expiry (up to the first ":", if any).
  const colon = username.indexOf(":")
  const entry: UserKeys = { keys, expiresAt: Number(colon < 0 ? username : username.slice(0, colon)) }
  if (state.restCache.size >= maxRestCache) state.restCache.clear()
  state.restCache.set(username, entry)
  return entry
}

const quotaUserOf = (state: State, username: string): string => {
  if (state.staticUsers.has(username)) return username
  const colon = username.indexOf(":")
  return colon < 0 ? username : username.slice(colon + 1)
}

/** Checks the credentials; answers and returns `undefined` when they are missing or wrong. */
const authenticate = (
  state: State,
  link: ClientLink,
  message: StunMessage.DecodedStunMessage,
  request: Uint8Array
): Authenticated | undefined => {
  const method = message.method
  if (message.integrityOffset < 0 && message.integritySha256Offset < 0) {
    challenge(state, link, method, request, 401)
    return undefined
  }
  const username = StunMessage.find(message, "Username")
  const realm = StunMessage.find(message, "Realm")
  const nonce = StunMessage.find(message, "Nonce")
  if (username === undefined || realm === undefined || nonce === undefined) {
    authFailure(400)
    failUnauthenticated(link, method, request, 400)
    return undefined
  }
  if (!nonceValid(state, nonce.value, link)) {
    challenge(state, link, method, request, 438)
    return undefined
  }
  const user = keysFor(state, username.value)
  if (user !== undefined) {
    for (let i = 0; i < user.keys.length; i++) {
      const key = user.keys[i]!
      if (Either.isRight(StunIntegrity.verify(message, key))) {
        return { username: username.value, quotaUser: quotaUserOf(state, username.value), key }
      }
    }
  } else {
    // An unknown user costs the same HMAC as a wrong password, so timing does not tell which usernames exist.
    StunIntegrity.verify(message, state.decoyKey)
  }
  challenge(state, link, method, request, 401)
  return undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Allocations
// ---------------------------------------------------------------------------------------------------------------

const livePermissions = (allocation: Allocation, now: number): number => {
  let n = 0
  for (const expiry of allocation.permissions.values()) if (expiry > now) n++
  return n
}

/** Removes the allocation from the tables at once (the relayed socket is closed by the caller's effect). */
const forget = (state: State, allocation: Allocation): void => {
  if (allocation.released) return
  allocation.released = true
  if (state.allocations.get(allocation.key) === allocation) state.allocations.delete(allocation.key)
  const count = (state.perUser.get(allocation.quotaUser) ?? 1) - 1
  if (count <= 0) state.perUser.delete(allocation.quotaUser)
  else state.perUser.set(allocation.quotaUser, count)
  gauge(Metrics.turnAllocations, -1)
  gauge(Metrics.turnPermissions, -allocation.permissions.size)
  gauge(Metrics.turnChannels, -allocation.channelsByNumber.size)
  allocation.permissions.clear()
  allocation.channelsByNumber.clear()
  allocation.channelsByPeer.clear()
}

const closeAllocation = (allocation: Allocation): Effect.Effect<void> =>
  Effect.suspend(() => allocation.scope === undefined ? Effect.void : Scope.close(allocation.scope, Exit.void))

/** Releases now: tables at once, the relayed socket in the allocation's timer fiber (replacing the timer). */
const release = (state: State, allocation: Allocation): void => {
  forget(state, allocation)
  state.runTimer(allocation.id, Effect.uninterruptible(closeAllocation(allocation)))
}

/** (Re)starts the allocation's expiry timer: release exactly at `expiresAt`. */
const armTimer = (state: State, allocation: Allocation): void => {
  const delay = Math.max(0, allocation.expiresAt - state.now())
  state.runTimer(
    allocation.id,
    Effect.zipRight(
      Effect.sleep(Duration.millis(delay)),
      Effect.uninterruptible(Effect.suspend(() => {
        forget(state, allocation)
        return closeAllocation(allocation)
      }))
    )
  )
}

const grantedLifetime = (state: State, requested: number | undefined): number => {
  const wanted = requested === undefined ? 0 : requested * 1000
  return Math.max(state.defaultLifetime, Math.min(wanted, state.maxLifetime))
}

/**
 * The highest channel number accepted: RFC 5766 §11 allowed 0x4000–0x7FFF, RFC 8656 §12 narrowed it to
 * 0x4000–0x4FFF. Clients of the RFC 5766 era (coturn's `turnutils_uclient` among them) still pick numbers up to
 * 0x7FFF, and coturn accepts them, so this server does too.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxLegacyChannelNumber = 0x7fff

/** A ChannelData message (RFC 8656 §12.4), padded to 4 bytes over TCP (§12.5). */
const encodeChannelData = (channel: number, data: Uint8Array, padded: boolean): Uint8Array => {
  const length = TurnChannelData.headerSize + data.length
  const bytes = new Uint8Array(padded ? (length + 3) & ~3 : length)
  bytes[0] = channel >> 8
  bytes[1] = channel & 0xff
  bytes[2] = data.length >> 8
  bytes[3] = data.length & 0xff
  bytes.set(data, TurnChannelData.headerSize)
  return bytes
}

/** Where relayed datagrams from peers go: plain code, per packet. */
const onPeerDatagram = (state: State, allocation: Allocation) => (data: Uint8Array, remote: SocketAddress): void => {
  try {
    if (allocation.released) return
    const now = state.now()
    const permission = allocation.permissions.get(remote.ip)
    if (permission === undefined || permission <= now) return drop("no-permission")
    const link = allocation.link
    const channel = allocation.channelsByPeer.get(peerKeyOf(remote))
    if (channel !== undefined && channel.expiresAt > now && data.length <= TurnChannelData.maxDataLength) {
      link.send(encodeChannelData(channel.number, data, link.transport === "tcp"))
    } else {
      const id = state.indicationId
      const counter = state.nextId++
      id[8] = (counter >>> 24) & 0xff
      id[9] = (counter >>> 16) & 0xff
      id[10] = (counter >>> 8) & 0xff
      id[11] = counter & 0xff
      const bytes = StunMessage.encode(
        StunMessage.make(StunMessage.StunClass.Indication, StunMessage.StunMethod.Data, id, [
          StunAttribute.xorPeerAddress({ family: remote.family, ip: remote.ip, port: remote.port }),
          StunAttribute.data(data)
        ]),
        { fingerprint: true, validate: false }
      )
      if (Either.isLeft(bytes)) return drop("bad-indication")
      link.send(bytes.right)
    }
    relayed(toClient, data.length)
  } catch {
    drop("internal-error")
  }
}

/** The peer policy: 403 unless this returns true. */
const peerAllowed = (state: State, peer: SocketAddress): boolean => {
  const bytes = TransportAddressModule.ipToBytes(peer.ip)
  if (Option.isNone(bytes)) return false
  if (anyContains(state.deny, bytes.value)) return false
  if (anyContains(state.allow, bytes.value)) return true
  if (state.ownIps.has(peer.ip)) return false
  return !anyContains(state.defaultDeny, bytes.value)
}

/** Sends from the relayed socket to a peer, never to one of the server's listening endpoints. */
const sendToPeer = (state: State, allocation: Allocation, data: Uint8Array, peer: SocketAddress): void => {
  if (state.listeningIps.has(peer.ip) && state.listeningEndpoints.has(peerKeyOf(peer))) return drop("loop")
  allocation.socket!.unsafeSend(data, peer)
  relayed(toPeer, data.length)
}

const evenPortAttempts = 32

/**
 * How long a port reserved by EVEN-PORT with the R bit is kept for the RESERVATION-TOKEN that names it
 * (RFC 8656 §7.2: "approximately 30 seconds").
 *
 * @since 0.1.0
 * @category constants
 */
export const reservationLifetime: Duration.Duration = Duration.seconds(30)

const bindRelay = (state: State, port = 0) =>
  state.network.bindUdp({
    address: state.relayIp,
    family: state.relayFamily,
    port,
    portRange: port === 0 ? state.relayPortRange : undefined
  })

interface Relay {
  readonly socket: Network.DatagramSocket
  readonly scope: Scope.CloseableScope
  readonly token: Uint8Array | undefined
}

const tokenKey = (token: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < token.length; i++) out += hex[token[i]! >> 4]! + hex[token[i]! & 15]!
  return out
}

/**
 * Binds a relayed socket, each in a scope of its own. With EVEN-PORT (RFC 8656 §14.6) it binds again, up to
 * `evenPortAttempts` times, until the port is even; with the R bit it also binds the next port and keeps it as a
 * reservation for {@link reservationLifetime}, named by a RESERVATION-TOKEN (§14.9).
 */
const bindRelayFor = (
  state: State,
  evenPort: StunAttribute.EvenPort | undefined
): Effect.Effect<Either.Either<Relay, Network.NetworkError | "NoEvenPort">> =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < evenPortAttempts; attempt++) {
      const scope = yield* Scope.fork(state.serverScope, ExecutionStrategy.sequential)
      const bound = yield* Effect.either(Scope.extend(bindRelay(state), scope))
      if (Either.isLeft(bound)) {
        yield* Scope.close(scope, Exit.void)
        return Either.left(bound.left)
      }
      const port = bound.right.local.port
      if (evenPort === undefined) return Either.right({ socket: bound.right, scope, token: undefined })
      if (port % 2 === 0 && !evenPort.reserveNext) return Either.right({ socket: bound.right, scope, token: undefined })
      if (port % 2 === 0 && port < 65535 && state.reservations.size < state.totalQuota) {
        const nextScope = yield* Scope.fork(state.serverScope, ExecutionStrategy.sequential)
        const next = yield* Effect.either(Scope.extend(bindRelay(state, port + 1), nextScope))
        if (Either.isRight(next)) {
          const id = state.nextId++
          const token = new Uint8Array(8)
          token.set(state.indicationId.subarray(0, 4), 0)
          token[4] = (id >>> 24) & 0xff
          token[5] = (id >>> 16) & 0xff
          token[6] = (id >>> 8) & 0xff
          token[7] = id & 0xff
          const key = tokenKey(token)
          yield* next.right.setHandler(() => drop("no-allocation"))
          state.reservations.set(key, { id, token: key, socket: next.right, scope: nextScope })
          state.runTimer(
            id,
            Effect.zipRight(
              Effect.sleep(reservationLifetime),
              Effect.uninterruptible(Effect.suspend(() => {
                state.reservations.delete(key)
                return Scope.close(nextScope, Exit.void)
              }))
            )
          )
          return Either.right({ socket: bound.right, scope, token })
        }
        yield* Scope.close(nextScope, Exit.void)
      }
      yield* Scope.close(scope, Exit.void)
    }
    return Either.left("NoEvenPort" as const)
  })

const handleAllocate = (
  state: State,
  link: ClientLink,
  key: string,
  message: StunMessage.DecodedStunMessage,
  request: Uint8Array,
  auth: Authenticated
): void => {
  const method = message.method
  const existing = state.allocations.get(key)
  if (existing !== undefined) {
    // Not the same request (a retransmission is caught before authentication): RFC 8656 §7.2 step 2.
    return failAuthenticated(state, link, method, request, auth, 437)
  }
  const transport = StunMessage.find(message, "RequestedTransport")
  if (transport === undefined) return failAuthenticated(state, link, method, request, auth, 400)
  if (transport.protocol !== 17) return failAuthenticated(state, link, method, request, auth, 442)
  const evenPort = StunMessage.find(message, "EvenPort")
  const token = StunMessage.find(message, "ReservationToken")
  if (token !== undefined && evenPort !== undefined) return failAuthenticated(state, link, method, request, auth, 400)
  const reservation = token === undefined ? undefined : state.reservations.get(tokenKey(token.value))
  if (token !== undefined && reservation === undefined) {
    return failAuthenticated(state, link, method, request, auth, 508)
  }
  const family = StunMessage.find(message, "RequestedAddressFamily")?.family ?? "IPv4"
  if (family !== state.relayFamily) return failAuthenticated(state, link, method, request, auth, 440)
  const userCount = state.perUser.get(auth.quotaUser) ?? 0
  if (userCount >= state.userQuota) return failAuthenticated(state, link, method, request, auth, 486)
  if (state.allocations.size >= state.totalQuota) return failAuthenticated(state, link, method, request, auth, 508)
  const lifetime = grantedLifetime(state, StunMessage.find(message, "Lifetime")?.seconds)

  const allocation: Allocation = {
    id: state.nextId++,
    key,
    link,
    username: auth.username,
    quotaUser: auth.quotaUser,
    family,
    allocateTid: tidKey(request),
    allocateLength: request.length,
    allocateCrc: crc32(request, 0, request.length),
    allocateResponse: undefined,
    socket: undefined,
    relayed: undefined,
    scope: undefined,
    expiresAt: state.now() + lifetime,
    released: false,
    permissions: new Map(),
    channelsByNumber: new Map(),
    channelsByPeer: new Map()
  }
  state.allocations.set(key, allocation)
  state.perUser.set(auth.quotaUser, userCount + 1)
  gauge(Metrics.turnAllocations, 1)
  const requestCopy = request.slice()

  state.runTask(
    Effect.gen(function*() {
      let bound: Either.Either<Relay, Network.NetworkError | "NoEvenPort">
      if (reservation !== undefined) {
        // RFC 8656 §7.2: the socket reserved by an earlier Allocate with EVEN-PORT R=1; its timer is cancelled.
        state.reservations.delete(reservation.token)
        state.runTimer(reservation.id, Effect.void)
        bound = Either.right({ socket: reservation.socket, scope: reservation.scope, token: undefined })
      } else {
        bound = yield* bindRelayFor(state, evenPort)
      }
      if (Either.isLeft(bound)) {
        forget(state, allocation)
        yield* Effect.logWarning("TurnServer: could not bind a relayed socket").pipe(
          Effect.annotateLogs({ reason: typeof bound.left === "string" ? bound.left : bound.left.reason })
        )
        return failAuthenticated(state, link, method, requestCopy, auth, 508)
      }
      allocation.scope = bound.right.scope
      if (allocation.released) return yield* Scope.close(bound.right.scope, Exit.void)
      const socket = bound.right.socket
      allocation.socket = socket
      const relayedAddress: SocketAddress = {
        family: socket.local.family,
        ip: state.externalIp ?? socket.local.ip,
        port: socket.local.port
      }
      allocation.relayed = relayedAddress
      yield* socket.setHandler(onPeerDatagram(state, allocation))
      allocation.allocateResponse = success(state, link, method, requestCopy, auth, [
        StunAttribute.xorRelayedAddress(relayedAddress),
        StunAttribute.lifetime(Math.floor(lifetime / 1000)),
        StunAttribute.xorMappedAddress(link.remote),
        ...(bound.right.token === undefined ? [] : [StunAttribute.reservationToken(bound.right.token)])
      ])
      armTimer(state, allocation)
      yield* Effect.logDebug("TurnServer: allocation created").pipe(
        Effect.annotateLogs({
          client: TransportAddressModule.format(link.remote),
          relayed: TransportAddressModule.format(relayedAddress),
          username: auth.username
        })
      )
    })
  )
}

/** The allocation for this request's 5-tuple and user, or an error answered (437, 441) and `undefined`. */
const ownAllocation = (
  state: State,
  link: ClientLink,
  key: string,
  message: StunMessage.DecodedStunMessage,
  request: Uint8Array,
  auth: Authenticated
): Allocation | undefined => {
  const allocation = state.allocations.get(key)
  if (allocation === undefined || allocation.socket === undefined) {
    failAuthenticated(state, link, message.method, request, auth, 437)
    return undefined
  }
  if (allocation.username !== auth.username) {
    authFailure(441)
    failAuthenticated(state, link, message.method, request, auth, 441)
    return undefined
  }
  return allocation
}

const handleRefresh = (
  state: State,
  link: ClientLink,
  key: string,
  message: StunMessage.DecodedStunMessage,
  request: Uint8Array,
  auth: Authenticated
): void => {
  const allocation = ownAllocation(state, link, key, message, request, auth)
  if (allocation === undefined) return
  const requested = StunMessage.find(message, "Lifetime")?.seconds
  if (requested === 0) {
    release(state, allocation)
    success(state, link, message.method, request, auth, [StunAttribute.lifetime(0)])
    return
  }
  const lifetime = grantedLifetime(state, requested)
  allocation.expiresAt = state.now() + lifetime
  armTimer(state, allocation)
  success(state, link, message.method, request, auth, [StunAttribute.lifetime(Math.floor(lifetime / 1000))])
}

/** Installs or refreshes a permission; false when the allocation already has too many. */
const permit = (state: State, allocation: Allocation, ip: string, now: number): boolean => {
  const existing = allocation.permissions.get(ip)
  if (existing === undefined) {
    if (allocation.permissions.size >= state.maxPermissions) return false
    gauge(Metrics.turnPermissions, 1)
  }
  allocation.permissions.set(ip, now + state.permissionLifetime)
  return true
}

const handleCreatePermission = (
  state: State,
  link: ClientLink,
  key: string,
  message: StunMessage.DecodedStunMessage,
  request: Uint8Array,
  auth: Authenticated
): void => {
  const allocation = ownAllocation(state, link, key, message, request, auth)
  if (allocation === undefined) return
  const peers: Array<SocketAddress> = []
  for (const attribute of message.attributes) if (attribute._tag === "XorPeerAddress") peers.push(attribute.address)
  if (peers.length === 0) return failAuthenticated(state, link, message.method, request, auth, 400)
  for (const peer of peers) {
    if (peer.family !== allocation.family) return failAuthenticated(state, link, message.method, request, auth, 443)
    if (!peerAllowed(state, peer)) return failAuthenticated(state, link, message.method, request, auth, 403)
  }
  const now = state.now()
  let fresh = 0
  for (const peer of peers) if (!allocation.permissions.has(peer.ip)) fresh++
  if (allocation.permissions.size + fresh > state.maxPermissions) {
    return failAuthenticated(state, link, message.method, request, auth, 508)
  }
  for (const peer of peers) permit(state, allocation, peer.ip, now)
  success(state, link, message.method, request, auth, [])
}

const removeChannel = (allocation: Allocation, channel: Channel): void => {
  allocation.channelsByNumber.delete(channel.number)
  allocation.channelsByPeer.delete(channel.peerKey)
  gauge(Metrics.turnChannels, -1)
}

const handleChannelBind = (
  state: State,
  link: ClientLink,
  key: string,
  message: StunMessage.DecodedStunMessage,
  request: Uint8Array,
  auth: Authenticated
): void => {
  const allocation = ownAllocation(state, link, key, message, request, auth)
  if (allocation === undefined) return
  const number = StunMessage.find(message, "ChannelNumber")?.channel
  const peerAttribute = StunMessage.find(message, "XorPeerAddress")
  if (
    number === undefined || peerAttribute === undefined || number < TurnChannelData.minChannelNumber ||
    number > maxLegacyChannelNumber
  ) {
    return failAuthenticated(state, link, message.method, request, auth, 400)
  }
  const peer: SocketAddress = {
    family: peerAttribute.address.family,
    ip: peerAttribute.address.ip,
    port: peerAttribute.address.port
  }
  if (peer.family !== allocation.family) return failAuthenticated(state, link, message.method, request, auth, 443)
  if (!peerAllowed(state, peer)) return failAuthenticated(state, link, message.method, request, auth, 403)
  const now = state.now()
  const peerKey = peerKeyOf(peer)
  // RFC 8656 §12: a number or a peer stays tied to its binding until 5 minutes after it expires.
  const byNumber = allocation.channelsByNumber.get(number)
  if (byNumber !== undefined && byNumber.peerKey !== peerKey) {
    if (byNumber.expiresAt + state.channelReuseDelay > now) {
      return failAuthenticated(state, link, message.method, request, auth, 400)
    }
    removeChannel(allocation, byNumber)
  }
  const byPeer = allocation.channelsByPeer.get(peerKey)
  if (byPeer !== undefined && byPeer.number !== number) {
    if (byPeer.expiresAt + state.channelReuseDelay > now) {
      return failAuthenticated(state, link, message.method, request, auth, 400)
    }
    removeChannel(allocation, byPeer)
  }
  if (!allocation.permissions.has(peer.ip) && allocation.permissions.size >= state.maxPermissions) {
    return failAuthenticated(state, link, message.method, request, auth, 508)
  }
  const channel = allocation.channelsByNumber.get(number)
  if (channel === undefined) {
    const created: Channel = { number, peer, peerKey, expiresAt: now + state.channelLifetime }
    allocation.channelsByNumber.set(number, created)
    allocation.channelsByPeer.set(peerKey, created)
    gauge(Metrics.turnChannels, 1)
  } else {
    channel.expiresAt = now + state.channelLifetime
  }
  permit(state, allocation, peer.ip, now)
  success(state, link, message.method, request, auth, [])
}

// ---------------------------------------------------------------------------------------------------------------
// The per-packet path from clients
// ---------------------------------------------------------------------------------------------------------------

const handleChannelData = (state: State, key: string, data: Uint8Array): void => {
  const allocation = state.allocations.get(key)
  if (allocation === undefined || allocation.socket === undefined) return drop("no-allocation")
  // RFC 8656 §12.4: the length must fit in the datagram; at most 3 bytes of padding may follow.
  const size = data.length
  if (size < TurnChannelData.headerSize) return drop("bad-channel-data")
  const length = (data[2]! << 8) | data[3]!
  const end = TurnChannelData.headerSize + length
  if (end > size || size > ((end + 3) & ~3)) return drop("bad-channel-data")
  const now = state.now()
  const channel = allocation.channelsByNumber.get((data[0]! << 8) | data[1]!)
  if (channel === undefined || channel.expiresAt <= now) return drop("no-channel")
  const permission = allocation.permissions.get(channel.peer.ip)
  if (permission === undefined || permission <= now) return drop("no-permission")
  sendToPeer(state, allocation, data.subarray(TurnChannelData.headerSize, end), channel.peer)
}

const handleSendIndication = (state: State, key: string, message: StunMessage.DecodedStunMessage): void => {
  const allocation = state.allocations.get(key)
  if (allocation === undefined || allocation.socket === undefined) return drop("no-allocation")
  const peer = StunMessage.find(message, "XorPeerAddress")
  const data = StunMessage.find(message, "Data")
  if (peer === undefined || data === undefined || message.unknownComprehensionRequired.length > 0) {
    return drop("bad-indication")
  }
  const permission = allocation.permissions.get(peer.address.ip)
  if (permission === undefined || permission <= state.now()) return drop("no-permission")
  sendToPeer(state, allocation, data.value, peer.address)
}

const dedupe = (types: ReadonlyArray<number>): Array<number> => [...new Set(types)]

/** One datagram or frame from a client. Plain code; control-plane work is handed to `runTask`. */
const handle = (state: State, link: ClientLink, key: string, data: Uint8Array): void => {
  const size = data.length
  if (size === 0) return drop("not-stun")
  const first = data[0]!
  if (first >= 0x40 && first <= 0x7f) return handleChannelData(state, key, data)
  if (
    size < StunMessage.headerLength || first > 3 || (data[3]! & 3) !== 0 ||
    ((data[2]! << 8) | data[3]!) + StunMessage.headerLength !== size ||
    data[4] !== 0x21 || data[5] !== 0x12 || data[6] !== 0xa4 || data[7] !== 0x42
  ) {
    return drop("not-stun")
  }
  const type = (first << 8) | data[1]!
  const cls = StunMessage.classOf(type)
  const method = StunMessage.methodOf(type)
  if (cls === StunMessage.StunClass.Request && method === StunMessage.StunMethod.Allocate) {
    // RFC 8656 §7.2: a retransmitted Allocate gets the original response, without re-authentication.
    const existing = state.allocations.get(key)
    if (
      existing !== undefined && existing.allocateTid === tidKey(data) && existing.allocateLength === size &&
      existing.allocateCrc === crc32(data, 0, size)
    ) {
      if (existing.allocateResponse === undefined) return drop("allocation-pending")
      link.send(existing.allocateResponse)
      return countRequest(method, 200)
    }
  }
  const decoded = StunMessage.decode(data)
  if (Either.isLeft(decoded)) {
    if (cls === StunMessage.StunClass.Request) return failUnauthenticated(link, method, data, 400)
    return drop("not-stun")
  }
  const message = decoded.right
  if (message.fingerprintOffset >= 0 && !StunIntegrity.verifyFingerprint(message)) return drop("bad-fingerprint")
  if (cls === StunMessage.StunClass.Indication) {
    if (method === StunMessage.StunMethod.Send) return handleSendIndication(state, key, message)
    return drop("ignored")
  }
  if (cls !== StunMessage.StunClass.Request) return drop("ignored")
  if (message.unknownComprehensionRequired.length > 0) {
    return failUnauthenticated(link, method, data, 420, [
      StunAttribute.unknownAttributes(dedupe(message.unknownComprehensionRequired))
    ])
  }
  if (method === StunMessage.StunMethod.Binding) {
    const bytes = encode(StunMessage.StunClass.SuccessResponse, method, data, [
      StunAttribute.xorMappedAddress(link.remote)
    ], undefined)
    if (bytes.length > size) return drop("amplification")
    link.send(bytes)
    return countRequest(method, 200)
  }
  if (
    method !== StunMessage.StunMethod.Allocate && method !== StunMessage.StunMethod.Refresh &&
    method !== StunMessage.StunMethod.CreatePermission && method !== StunMessage.StunMethod.ChannelBind
  ) {
    return failUnauthenticated(link, method, data, 400)
  }
  const auth = authenticate(state, link, message, data)
  if (auth === undefined) return
  switch (method) {
    case StunMessage.StunMethod.Allocate:
      return handleAllocate(state, link, key, message, data, auth)
    case StunMessage.StunMethod.Refresh:
      return handleRefresh(state, link, key, message, data, auth)
    case StunMessage.StunMethod.CreatePermission:
      return handleCreatePermission(state, link, key, message, data, auth)
    default:
      return handleChannelBind(state, link, key, message, data, auth)
  }
}

const safeHandle = (state: State, link: ClientLink, key: string, data: Uint8Array): void => {
  try {
    handle(state, link, key, data)
  } catch {
    drop("internal-error")
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sweeper
// ---------------------------------------------------------------------------------------------------------------

/** Removes expired permissions and channels past their reuse delay; keeps the gauges honest. */
const sweep = (state: State): void => {
  const now = state.now()
  for (const allocation of state.allocations.values()) {
    for (const [ip, expiry] of allocation.permissions) {
      if (expiry <= now) {
        allocation.permissions.delete(ip)
        gauge(Metrics.turnPermissions, -1)
      }
    }
    for (const channel of allocation.channelsByNumber.values()) {
      if (channel.expiresAt + state.channelReuseDelay <= now) removeChannel(allocation, channel)
    }
  }
  if (state.restCache.size > 0) {
    const seconds = now / 1000
    for (const [name, entry] of state.restCache) if (entry.expiresAt < seconds) state.restCache.delete(name)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------------------------

const invalid = (address: string, detail: string) =>
  new Network.NetworkError({ reason: "InvalidAddress", operation: "bind", address, cause: new Error(detail) })

const isWildcard = (ip: string): boolean => ip === "0.0.0.0" || ip === "::"

const millis = (input: Duration.DurationInput): number => Duration.toMillis(Duration.decode(input))

/**
 * Starts a server for the lifetime of the scope. Fails with `NetworkError` when the options are invalid
 * (`InvalidAddress`) or a listener cannot be bound. Closing the scope releases every allocation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, Network.NetworkError, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const serverScope = yield* Effect.scope
    const clock = yield* Effect.clock
    if (options.addresses.length === 0) return yield* Effect.fail(invalid("", "no listening address"))
    const listen: Array<{ family: Family; ip: string }> = []
    for (const text of options.addresses) {
      const ip = TransportAddressModule.canonicalIp(text)
      if (Option.isNone(ip)) return yield* Effect.fail(invalid(text, "not an IP address"))
      listen.push(ip.value)
    }
    const port = options.port ?? defaultPort
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return yield* Effect.fail(invalid(options.addresses[0]!, `invalid port ${port}`))
    }
    const relay = TransportAddressModule.canonicalIp(options.relayAddress ?? listen[0]!.ip)
    if (Option.isNone(relay) || isWildcard(relay.value.ip)) {
      return yield* Effect.fail(
        invalid(options.relayAddress ?? listen[0]!.ip, "the relay address must be a specific IP")
      )
    }
    let externalIp: string | undefined
    if (options.externalAddress !== undefined) {
      const external = TransportAddressModule.canonicalIp(options.externalAddress)
      if (Option.isNone(external) || external.value.family !== relay.value.family) {
        return yield* Effect.fail(invalid(options.externalAddress, "not an IP of the relay's family"))
      }
      externalIp = external.value.ip
    }
    const allow = yield* parseCidrs(options.allowPeers ?? [], "allowPeers")
    const deny = yield* parseCidrs(options.denyPeers ?? [], "denyPeers")
    const defaultDeny = yield* parseCidrs(defaultDeniedPeers, "defaultDeniedPeers")
    const realm = options.realm ?? defaultRealm
    const staticUsers = new Map<string, UserKeys>()
    for (const [name, password] of Object.entries(options.users ?? {})) {
      const key = StunIntegrity.longTermKey(name, realm, password)
      if (Either.isLeft(key)) return yield* Effect.fail(invalid(name, `user ${name}: ${key.left.message}`))
      staticUsers.set(name, { keys: [key.right], expiresAt: Infinity })
    }
    const secret = new Uint8Array(32)
    for (let i = 0; i < secret.length; i++) secret[i] = yield* Random.nextIntBetween(0, 256)
    const indicationId = new Uint8Array(12)
    for (let i = 0; i < 8; i++) indicationId[i] = yield* Random.nextIntBetween(0, 256)
    const softwareText = [...(options.software ?? "effect-ice")].slice(0, 127).join("")

    const ownIps = new Set<string>([relay.value.ip, ...listen.map((l) => l.ip)])
    if (externalIp !== undefined) ownIps.add(externalIp)
    const state: State = {
      now: () => clock.unsafeCurrentTimeMillis(),
      realm,
      realmAttribute: StunAttribute.realm(realm),
      software: softwareText === "" ? undefined : StunAttribute.software(softwareText),
      nonceKey: hmacSha1Key(secret),
      decoyKey: new StunIntegrity.IntegrityKey(secret.slice(0, 16)),
      nonceLifetime: millis(options.nonceLifetime ?? defaultNonceLifetime),
      defaultLifetime: millis(options.defaultLifetime ?? defaultLifetime),
      maxLifetime: millis(options.maxLifetime ?? defaultMaxLifetime),
      permissionLifetime: Duration.toMillis(permissionLifetime),
      channelLifetime: Duration.toMillis(channelLifetime),
      channelReuseDelay: Duration.toMillis(channelReuseDelay),
      staticUsers,
      restSecrets: options.restSecrets ?? [],
      restCache: new Map(),
      allow,
      deny,
      defaultDeny,
      ownIps,
      listeningEndpoints: new Set(),
      listeningIps: new Set(listen.map((l) => l.ip)),
      userQuota: Math.max(0, Math.floor(options.userQuota ?? defaultUserQuota)),
      totalQuota: Math.max(0, Math.floor(options.totalQuota ?? defaultTotalQuota)),
      maxPermissions: Math.max(
        1,
        Math.floor(options.maxPermissionsPerAllocation ?? defaultMaxPermissionsPerAllocation)
      ),
      relayIp: relay.value.ip,
      relayFamily: relay.value.family,
      relayPortRange: options.relayPortRange,
      externalIp,
      allocations: new Map(),
      perUser: new Map(),
      reservations: new Map(),
      indicationId,
      nextId: 1,
      runTask: () => undefined,
      runTimer: () => undefined,
      network,
      serverScope
    }
    // Every allocation is released when the server stops (before the fibers are interrupted).
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const allocation of [...state.allocations.values()]) forget(state, allocation)
      })
    )
    const runTask = yield* FiberSet.makeRuntime<never, void, never>()
    const runTimer = yield* FiberMap.makeRuntime<never, number, never, void>()
    state.runTask = (effect) => {
      runTask(effect)
    }
    state.runTimer = (id, effect) => {
      runTimer(id, effect)
    }

    const udp: Array<TransportAddress> = []
    for (let i = 0; i < listen.length; i++) {
      const socket = yield* network.bindUdp({ address: listen[i]!.ip, family: listen[i]!.family, port })
      udp.push(socket.local)
      state.listeningEndpoints.add(peerKeyOf(socket.local))
      const prefix = "u" + i + "|"
      yield* socket.setHandler((data, remote) => {
        const key = prefix + remote.ip + "|" + remote.port
        const existing = state.allocations.get(key)
        const link: ClientLink = existing !== undefined ? existing.link : {
          transport: "udp",
          remote: { family: remote.family, ip: remote.ip, port: remote.port },
          send: (bytes) => socket.unsafeSend(bytes, remote)
        }
        safeHandle(state, link, key, data)
      })
    }
    const tcp: Array<TransportAddress> = []
    if (options.tcp === true) {
      for (let i = 0; i < listen.length; i++) {
        const prefix = "t" + i + "|"
        const listener = yield* network.listenTcp(
          { address: listen[i]!.ip, family: listen[i]!.family, port: port === 0 ? 0 : port },
          (connection) => serveConnection(state, prefix, connection)
        )
        tcp.push(listener.local)
        state.listeningEndpoints.add(peerKeyOf(listener.local))
      }
    }

    const sweepEvery = Math.max(1, millis(options.sweepInterval ?? defaultSweepInterval))
    yield* Effect.forkScoped(
      Effect.repeat(Effect.sync(() => sweep(state)), Schedule.spaced(Duration.millis(sweepEvery)))
    )
    yield* Effect.logDebug("TurnServer: listening").pipe(
      Effect.annotateLogs({ udp: udp.map(TransportAddressModule.format).join(" "), relay: state.relayIp })
    )
    const now = state.now
    return {
      udp,
      tcp,
      endpoints: [...udp, ...tcp],
      allocationCount: () => state.allocations.size,
      permissionCount: () => {
        const t = now()
        let n = 0
        for (const allocation of state.allocations.values()) n += livePermissions(allocation, t)
        return n
      },
      channelCount: () => {
        const t = now()
        let n = 0
        for (const allocation of state.allocations.values()) {
          for (const channel of allocation.channelsByNumber.values()) if (channel.expiresAt > t) n++
        }
        return n
      },
      allocations: () => {
        const t = now()
        const out: Array<AllocationInfo> = []
        for (const allocation of state.allocations.values()) {
          if (allocation.relayed === undefined || allocation.socket === undefined) continue
          out.push({
            client: { ...allocation.link.remote, transport: allocation.link.transport },
            username: allocation.username,
            relayed: allocation.relayed,
            relaySocket: {
              family: allocation.socket.local.family,
              ip: allocation.socket.local.ip,
              port: allocation.socket.local.port
            },
            expiresAt: allocation.expiresAt,
            permissions: [...allocation.permissions].filter(([, e]) => e > t).map(([ip, expiresAt]) => ({
              ip,
              expiresAt
            })),
            channels: [...allocation.channelsByNumber.values()].filter((c) => c.expiresAt > t).map((c) => ({
              channel: c.number,
              peer: c.peer,
              expiresAt: c.expiresAt
            }))
          })
        }
        return out
      }
    }
  }).pipe(Effect.withSpan("TurnServer.make", { captureStackTrace: false }))

/** Serves one TCP connection; its allocation (if any) is released when the connection ends (RFC 8656 §3.1). */
const serveConnection = (
  state: State,
  prefix: string,
  connection: Network.StreamSocket
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.suspend(() => {
    const remote: SocketAddress = {
      family: connection.remote.family,
      ip: connection.remote.ip,
      port: connection.remote.port
    }
    const key = prefix + remote.ip + "|" + remote.port
    const link: ClientLink = { transport: "tcp", remote, send: (bytes) => connection.unsafeWrite(bytes) }
    // RFC 5766 channel numbers (first byte up to 0x7F) too: see `maxLegacyChannelNumber`.
    const deframer = StreamFraming.makeTurnStreamDeframer({ legacyChannelNumbers: true })
    const onFrame = (frame: Uint8Array): void => safeHandle(state, link, key, frame)
    return connection.setHandler((chunk) => {
      if (Either.isRight(deframer.push(chunk, onFrame))) return
      drop("framing-error")
      return connection.close
    }).pipe(
      Effect.zipRight(Effect.ignore(connection.closed)),
      Effect.ensuring(Effect.suspend(() => {
        const allocation = state.allocations.get(key)
        if (allocation !== undefined) release(state, allocation)
        return Effect.void
      }))
    )
  })

/**
 * The server as a scoped layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<TurnServer, Network.NetworkError, Network.Network> =>
  Layer.scoped(TurnServer, make(options))
