/**
 * A TURN server (RFC 8656) over UDP, TCP and TLS (RFC 8656 §3.1 and §12.5) on any `Network`: allocations keyed by
 * their 5-tuple (IPv4, IPv6 or both), permissions, channel bindings, the relay data plane, long-term credentials with
 * expiring nonces (RFC 8489 §9.2, MD5 and SHA-256 keys), TURN REST shared secrets and a pluggable credential store,
 * quotas, bandwidth and request-rate limits, and a refusal of dangerous peer addresses by default.
 *
 * What is implemented, by RFC 8656 section:
 * - §3.1 Transports to the client: UDP on `addresses` × `port`, TCP there too with `tcp`, and TLS with `tls` (on
 *   `tls.addresses`, default `addresses`, and `tls.port`, default 5349, with the given PEM certificate and key, through
 *   `Network.listenTls`). TLS is framed exactly like TCP (the same connection handler), so everything below holds on
 *   all three. DTLS is not offered.
 * - §7.1–§7.2 Allocate: REQUESTED-TRANSPORT must be UDP (17) else 442, missing 400. Address families: the relayed
 *   sockets are bound on `relayAddresses` (at most one IPv4 and one IPv6; default `relayAddress`, default the first
 *   listening address). Without a family attribute the allocation is IPv4; REQUESTED-ADDRESS-FAMILY asks for one
 *   family (440 Address Family not Supported when there is no relay IP of it); ADDITIONAL-ADDRESS-FAMILY IPv6 asks
 *   for both: with both relay IPs the allocation gets two relayed sockets (the IPv6 one in the same scope as the IPv4
 *   one) and two XOR-RELAYED-ADDRESS; with only one, that one and ADDRESS-ERROR-CODE 440 for the other family (508 if
 *   the second socket could not be bound). Both family attributes together, ADDITIONAL-ADDRESS-FAMILY IPv4, or
 *   either with RESERVATION-TOKEN: 400. DONT-FRAGMENT is accepted (the relay never fragments on its own; the flag is
 *   not forwarded to the socket). EVEN-PORT is honoured for the first relayed socket (bound again until its port is
 *   even); with its R bit the next port is bound too and reserved for 30 s under a RESERVATION-TOKEN, which a later
 *   Allocate (of any 5-tuple, as §7.2 allows) presents to get that port; an unknown or expired token gets 508,
 *   EVEN-PORT together with RESERVATION-TOKEN 400. An Allocate on a 5-tuple that already has an allocation is a
 *   retransmission when it is the same request (same transaction id, size and CRC-32): it gets the bytes of the
 *   original success response again; otherwise 437. Relayed ports are any the network gives, or `relayPortRange`;
 *   XOR-RELAYED-ADDRESS advertises the external IP of the socket's family when `externalAddresses` (or the
 *   single-address form `externalAddress`) names one.
 * - §7.3, §8 Refresh: lifetime = max(default, min(requested, max)) (default 600 s, max 3600 s); LIFETIME 0 deletes
 *   the allocation at once. One expiry fiber serves every allocation (and EVEN-PORT reservation): a min-heap on the
 *   expiry time, the fiber sleeping on Effect's `Clock` until the earliest and woken when an earlier one is
 *   scheduled, so each allocation is released exactly at its expiry; its relayed sockets are closed with the
 *   allocation's scope (forked from the server's, so closing the server closes them all).
 * - §9 Permissions (CreatePermission, one or more XOR-PEER-ADDRESS): 300 s, refreshed by CreatePermission and
 *   ChannelBind, keyed by the peer's IP only (§9: "the port is ignored"). A peer of a family the allocation has no
 *   relayed socket for gets 443 Peer Address Family Mismatch (CreatePermission and ChannelBind). Expiry is checked
 *   against `Clock` at each use and a sweeper removes expired entries.
 * - §11, §12 Channels (ChannelBind): 600 s; a channel number and a peer address stay reserved for 300 s after the
 *   binding expires (§12: "MUST NOT ... until 5 minutes after"), so they cannot be rebound to something else.
 * - §10, §11.4–§11.6, §12.4–§12.6 Data plane: Send indications and ChannelData from the client are relayed to the
 *   peer from the relayed socket of the peer's family; datagrams from a peer arrive at a relayed socket and go to the
 *   client as ChannelData (when a channel is bound to that peer) or as a Data indication. Only peers with a live
 *   permission are relayed, both ways (one `Map` lookup by IP). All of this is plain code in the socket handlers
 *   (`unsafeSend`, `unsafeUpdate` metrics): no fiber and no Effect per packet. ChannelData and Data indications
 *   (header, XOR-PEER-ADDRESS, DATA, FINGERPRINT: the bytes `StunMessage.encode` would give) are written straight
 *   into buffers of the exact size; a Send indication of the usual shape (one IPv4 XOR-PEER-ADDRESS, one DATA, an
 *   optional FINGERPRINT, which is checked) is read in place, and any other goes through `StunMessage.decode` as
 *   before (so §11.4's checks decide the same). Over TCP and TLS, ChannelData is padded
 *   to 4 bytes (§12.5), and the stream is cut by `StreamFraming`'s TURN deframer with the RFC 5766 channel range
 *   allowed (see {@link maxLegacyChannelNumber}); a framing error closes that connection, and closing a connection
 *   releases its allocation.
 * - Authentication (RFC 8489 §9.2, RFC 8656 §6.2): every request but Binding must carry USERNAME, REALM, NONCE and
 *   MESSAGE-INTEGRITY (or MESSAGE-INTEGRITY-SHA256). Without integrity: 401 with REALM and NONCE; with integrity but
 *   a missing USERNAME, REALM or NONCE: 400; a nonce that is not ours or has expired: 438 with a fresh NONCE; an
 *   unknown user or a wrong MESSAGE-INTEGRITY: 401. Users are static (`users`), TURN REST (`restSecrets`, several
 *   for rotation: `<expiry>:<user>` and base64(HMAC-SHA1(secret, username)); an expired username is refused), or
 *   known to the `credentials` store, which is asked (in a fiber of the server, at most 5 s) only for usernames that
 *   are neither; the requests that wait for it are handled again when it answers, and its answer (password or
 *   unknown) is cached for 60 s (a failure or a timeout counts as unknown for 5 s). Every response to an
 *   authenticated request (success or error) carries MESSAGE-INTEGRITY and FINGERPRINT. A request for an existing
 *   allocation with another username gets 441.
 * - Password algorithms (RFC 8489 §9.2.1, §9.2.4, §14.11, §14.12, §18.5): the long-term key is MD5 or SHA-256 of
 *   `username:realm:password` (RFC 8489 §9.2.2), computed once per static user, cached for REST and store users, and
 *   verified in constant time by `StunIntegrity.verify`. With "SHA-256" in `passwordAlgorithms` (the default is
 *   MD5 and SHA-256), every nonce starts with the cookie "obMatJos2" and the security feature set "gAAA" (the
 *   "Password algorithms" bit), and 401 and 438 carry PASSWORD-ALGORITHMS (the configured list, in order). A request
 *   with neither PASSWORD-ALGORITHM nor PASSWORD-ALGORITHMS uses MD5 (400 when MD5 is not accepted); otherwise both
 *   must be present, PASSWORD-ALGORITHMS must equal what was sent and PASSWORD-ALGORITHM must be one of its entries,
 *   else 400. With `["MD5"]` there is no cookie and no negotiation (RFC 5389 behaviour). coturn's
 *   `turnutils_uclient` (4.6) accepts the cookie nonce, ignores PASSWORD-ALGORITHMS and authenticates with MD5, so
 *   it works with the default (the interop tests run it) but not with `["SHA-256"]` alone (400); that is why MD5
 *   stays in the default list.
 * - An unknown username is answered like a wrong password (401), after the same HMAC work against a decoy key, so
 *   timing does not reveal which usernames exist (a username that goes to the `credentials` store is the exception:
 *   its first request waits for the store).
 * - Nonces are stateless: `[obMatJos2gAAA]<expiry base36>-<16 hex of HMAC-SHA1(server key, expiry | transport |
 *   client IP)>`, with a server key drawn from Effect's `Random` at start-up. A flood of unauthenticated requests
 *   therefore costs no memory beyond the rate limiter's table; a nonce is only good for the client IP it was issued
 *   to, and until `nonceLifetime` (default 10 min).
 *
 * Safety (RFC 8656 §21):
 * - Peer addresses. CreatePermission and ChannelBind to a denied peer get 403 Forbidden. Denied by default:
 *   "this network", loopback, RFC 1918 private, CGNAT (100.64/10), link-local, multicast, reserved and broadcast
 *   IPv4 ranges; IPv6 unspecified, loopback, unique-local (fc00::/7), link-local (fe80::/10), multicast (ff00::/8),
 *   IPv4-mapped and NAT64 (64:ff9b::/96) addresses; and the server's own addresses (listening, TLS, relay,
 *   external), except the relayed addresses of live allocations, so that two clients of this server can talk relay
 *   to relay (a permission for the relay IP is granted; a ChannelBind must name a live relayed address, and every
 *   datagram to the relay IP must be addressed to one, else it is dropped and counted "own-address"). `allowPeers` (CIDR list) lifts the default refusal (tests on loopback pass `["127.0.0.0/8"]`, as
 *   coturn needs `--allow-loopback-peers`); `denyPeers` (CIDR list) refuses more and wins over `allowPeers`. Whatever
 *   the lists say, a relayed socket never sends to one of the server's listening endpoints (no relay loops).
 * - Quotas: `userQuota` allocations per user (for REST users, the part after the first `:`) give 486, `totalQuota`
 *   allocations in all give 508; at most `maxPermissionsPerAllocation` permissions per allocation (508 beyond).
 * - Bandwidth: with `maxBytesPerSecond`, each allocation has a token bucket of relayed payload bytes, both
 *   directions together, holding one second's worth and refilled continuously from Effect's clock (read in the
 *   packet handler, no fiber); a datagram that does not fit is dropped and counted ("bandwidth").
 * - Request rate: answers to unauthenticated requests (401, 438, 400, 420 before the credentials are verified, and
 *   Binding responses) come from a token bucket per source IP, `unauthenticatedRateLimit` per second (default 50,
 *   holding one second's worth; 0 turns it off); beyond, requests are dropped silently and counted ("rate-limited").
 *   The table holds at most {@link maxRateLimitedSources} sources (the oldest is forgotten first) and the sweeper
 *   forgets sources whose bucket has refilled. `turnAuthFailures` still counts the requests that were not answered.
 * - Amplification: an unauthenticated request is never answered with more bytes than it carried, except the 401,
 *   which is kept small: header (20), ERROR-CODE "Unauthorized" (20), REALM, NONCE, PASSWORD-ALGORITHMS and
 *   FINGERPRINT (8). With the default algorithms the NONCE is at most 38 characters (13 of cookie: 44 bytes) and
 *   PASSWORD-ALGORITHMS (MD5, SHA-256) 12 bytes, so the 401 is 104 bytes + the padded REALM attribute: 120 bytes with
 *   the realm "example.org", against 28 bytes for the smallest Allocate (header and REQUESTED-TRANSPORT), a ratio of
 *   4.3, and at most 4.9 with any realm of up to 28 bytes. With `passwordAlgorithms: ["MD5"]` the NONCE is at most
 *   25 characters (32 bytes) and there is no PASSWORD-ALGORITHMS: 96 bytes with that realm (3.4), at most 4 with a
 *   realm of up to 28 bytes. The rate limit above bounds how often any one source gets it. Other error answers to
 *   unauthenticated requests (400, 420, 438) are sent only when they are not longer than the request, else dropped
 *   and counted ("amplification"); no unauthenticated answer carries SOFTWARE. Binding requests are answered the
 *   same way (XOR-MAPPED-ADDRESS and FINGERPRINT, only when not longer than the request).
 * - Garbage, truncated, oversized or badly framed input is dropped and counted; an exception in a handler is caught
 *   and counted ("internal-error"), never fatal. A retransmitted Allocate cannot create a second allocation.
 *
 * Metrics (`Metrics.ts`): `turnAllocations`, `turnPermissions`, `turnChannels` (up-down counters),
 * `turnRelayedPackets` and `turnRelayedBytes` by direction, `turnAuthFailures` by code, `turnDrops` by reason
 * (among them "bandwidth", "rate-limited" and "lookup-pending": too many requests waiting for the credential store)
 * and `turnRequests` by method and code.
 *
 * Not implemented: TCP relaying (RFC 6062), DTLS listeners, USERHASH (RFC 8489 §14.4: a request carrying it and no
 * USERNAME gets 400), ICMP forwarding (RFC 8656 §11.5), EVEN-PORT on the IPv6 socket of a dual-stack allocation, and
 * per-user (rather than per-allocation) bandwidth limits.
 *
 * @since 0.1.0
 */
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  ExecutionStrategy,
  Exit,
  FiberId,
  FiberSet,
  Layer,
  LogLevel,
  Option,
  Random,
  Schedule,
  Scope
} from "effect"
import { crc32 } from "./internal/crc32.js"
import { hmacSha1Into, hmacSha1Key } from "./internal/sha1.js"
import type { HmacSha1Key } from "./internal/sha1.js"
import { allocate } from "./internal/slab.js"
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
 * The TURN port over TLS: RFC 8656 §3.1 ("5349 for TURN over TLS", the STUN over TLS port).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTlsPort = 5349

/**
 * The password algorithms accepted by default: MD5 and SHA-256 (RFC 8489 §18.5), advertised in that order.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPasswordAlgorithms: ReadonlyArray<"MD5" | "SHA-256"> = ["MD5", "SHA-256"]

/**
 * The nonce cookie of RFC 8489 §9.2 ("obMatJos2") followed by the STUN Security Feature set (§18.1) with only the
 * "Password algorithms" bit set (bit 0 of 24, base64 "gAAA"): the prefix of every nonce when SHA-256 is offered.
 *
 * @since 0.1.0
 * @category constants
 */
export const passwordAlgorithmsNoncePrefix = "obMatJos2gAAA"

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
  /**
   * Also listen for TURN over TLS (RFC 8656 §3.1): the certificate and key as PEM text, the port (default
   * {@link defaultTlsPort}; 0 lets the network choose) and the addresses (default `addresses`). Framed like TCP.
   */
  readonly tls?: {
    readonly certificate: string
    readonly key: string
    readonly port?: number | undefined
    readonly addresses?: ReadonlyArray<string> | undefined
  } | undefined
  /** The IP relayed sockets are bound on (default: the first listening address, which must then be specific). */
  readonly relayAddress?: string | undefined
  /**
   * The IPs relayed sockets are bound on, at most one IPv4 and one IPv6 (replaces `relayAddress` when given). With
   * both, an Allocate with ADDITIONAL-ADDRESS-FAMILY IPv6 gets a dual-stack allocation (RFC 8656 §7.2).
   */
  readonly relayAddresses?: ReadonlyArray<string> | undefined
  /** The ports relayed sockets may use (default: any port the network gives). */
  readonly relayPortRange?: readonly [number, number] | undefined
  /** The IP advertised in XOR-RELAYED-ADDRESS instead of the relay's own (a server behind a 1:1 NAT). */
  readonly externalAddress?: string | undefined
  /**
   * The IPs advertised instead of the relay's own, at most one per family, each of a family that has a relay IP
   * (`externalAddress` is the single-address form; both may be given, for different families).
   */
  readonly externalAddresses?: ReadonlyArray<string> | undefined
  /** REALM (default {@link defaultRealm}). */
  readonly realm?: string | undefined
  /** Static long-term users: name → password. */
  readonly users?: Readonly<Record<string, string>> | undefined
  /** TURN REST shared secrets (any of them is accepted). */
  readonly restSecrets?: ReadonlyArray<string> | undefined
  /**
   * A credential store: the password of a user, or `None` for an unknown one. Consulted for usernames that are
   * neither in `users` nor accepted as TURN REST usernames; the request is answered when the store answers (at most
   * 5 s; a failure or timeout counts as unknown for 5 s), and the answer is cached for 60 s (at most 10 000 users).
   */
  readonly credentials?: ((username: string, realm: string) => Effect.Effect<Option.Option<string>>) | undefined
  /**
   * The long-term key algorithms accepted (RFC 8489 §9.2.2, §18.5; default {@link defaultPasswordAlgorithms}). With
   * "SHA-256", challenges carry the nonce cookie and PASSWORD-ALGORITHMS (this list, in this order), and a client
   * may pick SHA-256 with PASSWORD-ALGORITHM (RFC 8489 §9.2.4). `["MD5"]` alone is the RFC 5389 behaviour.
   */
  readonly passwordAlgorithms?: ReadonlyArray<"MD5" | "SHA-256"> | undefined
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
  /**
   * Relayed bytes per second per allocation, both directions together (a token bucket holding one second's worth);
   * what does not fit is dropped and counted in `turnDrops` with reason "bandwidth" (so a datagram larger than this
   * never passes). Undefined or 0: unlimited.
   */
  readonly maxBytesPerSecond?: number | undefined
  /**
   * Unauthenticated answers (401, 438, 400, 420 before the credentials are verified, and Binding responses) per
   * second per source IP (a token bucket holding one second's worth; at most {@link maxRateLimitedSources} sources
   * tracked); beyond, requests are dropped silently and counted with reason "rate-limited". Default
   * {@link defaultUnauthenticatedRateLimit}; 0: unlimited.
   */
  readonly unauthenticatedRateLimit?: number | undefined
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
  /** The address advertised in XOR-RELAYED-ADDRESS (the first one of a dual-stack allocation). */
  readonly relayed: SocketAddress
  /** The relayed socket's own address. */
  readonly relaySocket: SocketAddress
  /** Every relayed address advertised: `relayed`, then the IPv6 one of a dual-stack allocation. */
  readonly relayedAddresses: ReadonlyArray<SocketAddress>
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
  /** The TLS listeners (transport `tls`; empty without `tls`), in the order of their addresses. */
  readonly tls: ReadonlyArray<TransportAddress>
  /** `udp`, then `tcp`, then `tls`. */
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
  "own-address",
  "ignored",
  "framing-error",
  "internal-error",
  "bandwidth",
  "rate-limited",
  "lookup-pending"
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
  readonly transport: "udp" | "tcp" | "tls"
  readonly remote: SocketAddress
  readonly send: (bytes: Uint8Array) => void
  /** Set when a TCP or TLS connection has ended (a request that waited for the credential store is then dropped). */
  closed?: boolean
}

/** A client over UDP: a class, so that a link (kept by its allocation) holds no closure. */
class UdpLink implements ClientLink {
  readonly transport = "udp"
  constructor(readonly socket: Network.DatagramSocket, readonly remote: SocketAddress) {}
  send(bytes: Uint8Array): void {
    this.socket.unsafeSend(bytes, this.remote)
  }
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
  /** Relayed bytes, both ways, when `maxBytesPerSecond` is set. */
  readonly bandwidth: Bucket
  /** The IPv6 relayed socket of a dual-stack allocation (RFC 8656 §7.2), in the same scope as `socket`. */
  second: { readonly socket: Network.DatagramSocket; readonly relayed: SocketAddress } | undefined
  scope: Scope.CloseableScope | undefined
  readonly kind: "allocation"
  expiresAt: number
  /** Position in `State.expiries` (-1: not in it). */
  heapIndex: number
  released: boolean
  /**
   * Peer IP → expiry (ms). Shared and empty (`noPermissions`) until the first permission: most allocations of a busy
   * server are idle.
   */
  permissions: Map<string, number>
  /** Shared and empty (`noChannels`) until the first channel, as `channelsByPeer`. */
  channelsByNumber: Map<number, Channel>
  /** `ip|port` → channel. */
  channelsByPeer: Map<string, Channel>
  /** The last peer looked up in `channelsByPeer` and its channel (see `channelOfPeer`); reset when channels change. */
  lastPeer: { readonly ip: string; readonly port: number; readonly channel: Channel | undefined } | undefined
  /** The last peer of a Send indication, by its XOR-ed IPv4 address and port (see `fastSendIndication`). */
  lastSendPeer: { readonly xored: number; readonly port: number; readonly peer: SocketAddress } | undefined
}

/**
 * The tables of an allocation without permissions or channels: shared, and never written to (`permit` and
 * `handleChannelBind` give the allocation tables of its own first). Deleting from them or clearing them is harmless.
 */
const noPermissions: Map<string, number> = new Map()
const noChannels: Map<number, Channel> = new Map()
const noChannelsByPeer: Map<string, Channel> = new Map()

interface Reservation {
  readonly kind: "reservation"
  readonly token: string
  readonly socket: Network.DatagramSocket
  readonly scope: Scope.CloseableScope
  readonly expiresAt: number
  /** Position in `State.expiries` (-1: not in it). */
  heapIndex: number
}

/** What the expiry fiber releases when its time comes. */
type Expiring = Allocation | Reservation

interface UserKeys {
  /** MD5 keys (one per REST secret), or empty when MD5 is not accepted. */
  readonly keys: ReadonlyArray<StunIntegrity.IntegrityKey>
  /** SHA-256 keys, or empty when SHA-256 is not accepted. */
  readonly sha256Keys: ReadonlyArray<StunIntegrity.IntegrityKey>
  /** Unix seconds after which the username is refused (REST), or Infinity. */
  readonly expiresAt: number
}

interface State {
  readonly now: () => number
  readonly realm: string
  readonly realmAttribute: StunAttribute.StunAttribute
  readonly software: StunAttribute.StunAttribute | undefined
  readonly md5: boolean
  readonly sha256: boolean
  /** PASSWORD-ALGORITHMS sent in challenges, when SHA-256 is offered (else no negotiation, RFC 5389 style). */
  readonly passwordAlgorithms: StunAttribute.PasswordAlgorithms | undefined
  /** {@link passwordAlgorithmsNoncePrefix} when SHA-256 is offered, else "". */
  readonly noncePrefix: string
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
  readonly credentials: Options["credentials"]
  /** Answers of the `credentials` store: keys, or `undefined` for an unknown user, until `expiresAt`. */
  readonly storeCache: Map<string, { readonly user: UserKeys | undefined; readonly expiresAt: number }>
  /** Usernames being looked up in the store → the requests waiting for the answer. */
  readonly lookups: Map<
    string,
    Array<{ readonly link: ClientLink; readonly key: string; readonly request: Uint8Array }>
  >
  readonly allow: ReadonlyArray<Cidr>
  readonly deny: ReadonlyArray<Cidr>
  readonly defaultDeny: ReadonlyArray<Cidr>
  /** The server's own IPs (listening, relay, external). */
  readonly ownIps: Set<string>
  /** `ip|port` of every listening endpoint: never a relay destination. */
  readonly listeningEndpoints: Set<string>
  /**
   * The IPs of the server's relayed sockets as advertised (relay IPs, or external IPs in their place), and the
   * advertised relayed addresses of live allocations: a peer on one of those IPs is allowed only at one of those
   * addresses, so two clients of this server can talk relay to relay, but nothing else on the server is reachable.
   */
  readonly relayPeerIps: Set<string>
  readonly relayedEndpoints: Set<string>
  readonly listeningIps: Set<string>
  /** `listeningIps` and `relayPeerIps` together: the IPs whose datagrams `sendToPeer` checks further. */
  readonly guardedIps: Set<string>
  /** Bytes per second per allocation; 0: unlimited. */
  readonly maxBytesPerSecond: number
  /** Unauthenticated answers per second per source IP; 0: unlimited. */
  readonly unauthenticatedRate: number
  /** Source IP → its bucket of unauthenticated answers (insertion order: the oldest first). */
  readonly sources: Map<string, Bucket>
  readonly userQuota: number
  readonly totalQuota: number
  readonly maxPermissions: number
  /** The relay IP of each family (at least one is set). */
  readonly relayIps: Readonly<Record<Family, string | undefined>>
  readonly relayPortRange: readonly [number, number] | undefined
  /** The IP advertised instead of the relay's, by family. */
  readonly externalIps: Readonly<Record<Family, string | undefined>>
  readonly allocations: Map<string, Allocation>
  readonly perUser: Map<string, number>
  /** Ports reserved by EVEN-PORT with the R bit, by RESERVATION-TOKEN (hex). */
  readonly reservations: Map<string, Reservation>
  readonly indicationId: Uint8Array
  nextId: number
  /** Runs a control-plane effect in a fiber owned by the server. */
  runTask: (effect: Effect.Effect<void>) => void
  /** Every allocation and reservation, a binary min-heap on `expiresAt` (see `schedule`). */
  readonly expiries: Array<Expiring>
  /** When the expiry fiber wakes up next (Infinity: when woken). */
  sleepingUntil: number
  /** Completing it wakes the expiry fiber (an earlier expiry was scheduled). */
  wake: Deferred.Deferred<void>
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
  return state.noncePrefix + expiry + "-" + nonceSignature(state, expiry, link.transport, link.remote.ip)
}

/** Constant-time string comparison (same length assumed checked by the caller). */
const sameString = (a: string, b: string): boolean => {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}

/** Whether a nonce is one we issued to this client and has not expired. */
const nonceValid = (state: State, prefixed: string, link: ClientLink): boolean => {
  if (!prefixed.startsWith(state.noncePrefix)) return false
  const nonce = prefixed.slice(state.noncePrefix.length)
  const dash = nonce.indexOf("-")
  if (dash < 1 || dash > 12 || nonce.length !== dash + 17) return false
  const expiry = nonce.slice(0, dash)
  if (!/^[0-9a-z]+$/.test(expiry)) return false
  if (!sameString(nonce.slice(dash + 1), nonceSignature(state, expiry, link.transport, link.remote.ip))) return false
  return parseInt(expiry, 36) > state.now()
}

// ---------------------------------------------------------------------------------------------------------------
// Token buckets (bandwidth per allocation, unauthenticated answers per source IP)
// ---------------------------------------------------------------------------------------------------------------
//
// A bucket holds `rate` units per second, up to one second's worth. It is kept in thousandths of a unit, so that a
// whole number of units per second refills by a whole number each millisecond: the arithmetic is exact.

interface Bucket {
  /** Thousandths of a unit. */
  tokens: number
  /** When `tokens` was last brought up to date (ms on Effect's clock). */
  at: number
}

/** Takes `units` from the bucket if it holds that many (after the refill since `at`); plain code, no allocation. */
const take = (bucket: Bucket, rate: number, units: number, now: number): boolean => {
  const capacity = rate * 1000
  if (now > bucket.at) {
    bucket.tokens = Math.min(capacity, bucket.tokens + (now - bucket.at) * rate)
    bucket.at = now
  }
  const cost = units * 1000
  if (bucket.tokens < cost) return false
  bucket.tokens -= cost
  return true
}

/**
 * The most source IPs whose unauthenticated request rate is tracked; beyond, the least recently added is forgotten.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxRateLimitedSources = 10_000

/**
 * Unauthenticated answers per second per source IP by default (see `unauthenticatedRateLimit`).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultUnauthenticatedRateLimit = 50

/** Whether an unauthenticated answer may go to this IP now (its bucket had a token), per `unauthenticatedRateLimit`. */
const unauthenticatedAdmitted = (state: State, ip: string): boolean => {
  const rate = state.unauthenticatedRate
  if (rate <= 0) return true
  const now = state.now()
  let bucket = state.sources.get(ip)
  if (bucket === undefined) {
    if (state.sources.size >= maxRateLimitedSources) {
      const oldest = state.sources.keys().next()
      if (oldest.done !== true) state.sources.delete(oldest.value)
    }
    bucket = { tokens: rate * 1000, at: now }
    state.sources.set(ip, bucket)
  }
  return take(bucket, rate, 1, now)
}

/** Whether `bytes` relayed bytes fit in the allocation's bandwidth now (`maxBytesPerSecond`); else counted. */
const bandwidthAdmitted = (state: State, allocation: Allocation, bytes: number): boolean => {
  if (state.maxBytesPerSecond <= 0 || take(allocation.bandwidth, state.maxBytesPerSecond, bytes, state.now())) {
    return true
  }
  drop("bandwidth")
  return false
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
  state: State,
  link: ClientLink,
  method: number,
  request: Uint8Array,
  code: number,
  extra: ReadonlyArray<StunAttribute.StunAttribute> = []
): void => {
  if (!unauthenticatedAdmitted(state, link.remote.ip)) return drop("rate-limited")
  sendUnauthenticated(link, method, request, code, extra)
}

const sendUnauthenticated = (
  link: ClientLink,
  method: number,
  request: Uint8Array,
  code: number,
  extra: ReadonlyArray<StunAttribute.StunAttribute>
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
  if (!unauthenticatedAdmitted(state, link.remote.ip)) return drop("rate-limited")
  const nonce = StunAttribute.nonce(makeNonce(state, link))
  sendUnauthenticated(
    link,
    method,
    request,
    code,
    state.passwordAlgorithms === undefined
      ? [state.realmAttribute, nonce]
      : [state.realmAttribute, nonce, state.passwordAlgorithms]
  )
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication (RFC 8489 §9.2.4)
// ---------------------------------------------------------------------------------------------------------------

const maxRestCache = 10_000

/** The long-term keys of a user for each accepted algorithm (RFC 8489 §9.2.2), one per password. */
const deriveKeys = (
  state: { readonly realm: string; readonly md5: boolean; readonly sha256: boolean },
  username: string,
  passwords: ReadonlyArray<string>
): Either.Either<Pick<UserKeys, "keys" | "sha256Keys">, StunIntegrity.CredentialError> => {
  const keys: Array<StunIntegrity.IntegrityKey> = []
  const sha256Keys: Array<StunIntegrity.IntegrityKey> = []
  for (const password of passwords) {
    if (state.md5) {
      const key = StunIntegrity.longTermKey(username, state.realm, password)
      if (Either.isLeft(key)) return Either.left(key.left)
      keys.push(key.right)
    }
    if (state.sha256) {
      const key = StunIntegrity.longTermKey(
        username,
        state.realm,
        password,
        StunAttribute.PasswordAlgorithmNumber.Sha256
      )
      if (Either.isLeft(key)) return Either.left(key.left)
      sha256Keys.push(key.right)
    }
  }
  return Either.right({ keys, sha256Keys })
}

/** Same algorithms, same order, no parameters: what RFC 8489 §9.2.4 means by "matches the value sent". */
const sameAlgorithms = (a: StunAttribute.PasswordAlgorithms, b: StunAttribute.PasswordAlgorithms): boolean => {
  if (a.algorithms.length !== b.algorithms.length) return false
  for (let i = 0; i < a.algorithms.length; i++) {
    const x = a.algorithms[i]!
    const y = b.algorithms[i]!
    if (x.algorithm !== y.algorithm || x.parameters.length !== y.parameters.length) return false
    for (let j = 0; j < x.parameters.length; j++) if (x.parameters[j] !== y.parameters[j]) return false
  }
  return true
}

/**
 * Which key algorithm the request uses (RFC 8489 §9.2.4, for a nonce with the password-algorithms cookie): neither
 * PASSWORD-ALGORITHM nor PASSWORD-ALGORITHMS means MD5; otherwise both must be there, PASSWORD-ALGORITHMS must be
 * exactly what we sent and PASSWORD-ALGORITHM one of its entries. `undefined`: a 400.
 */
const requestAlgorithm = (state: State, message: StunMessage.DecodedStunMessage): "MD5" | "SHA-256" | undefined => {
  if (state.passwordAlgorithms === undefined) return "MD5"
  const chosen = StunMessage.find(message, "PasswordAlgorithm")
  const offered = StunMessage.find(message, "PasswordAlgorithms")
  if (chosen === undefined && offered === undefined) return state.md5 ? "MD5" : undefined
  if (chosen === undefined || offered === undefined || !sameAlgorithms(offered, state.passwordAlgorithms)) {
    return undefined
  }
  if (chosen.parameters.length !== 0) return undefined
  if (chosen.algorithm === StunAttribute.PasswordAlgorithmNumber.Md5 && state.md5) return "MD5"
  if (chosen.algorithm === StunAttribute.PasswordAlgorithmNumber.Sha256 && state.sha256) return "SHA-256"
  return undefined
}

const keysFor = (state: State, username: string): UserKeys | undefined => {
  const fixed = state.staticUsers.get(username)
  if (fixed !== undefined) return fixed
  if (state.restSecrets.length === 0) return undefined
  const nowSeconds = state.now() / 1000
  const cached = state.restCache.get(username)
  if (cached !== undefined) return cached.expiresAt >= nowSeconds ? cached : undefined
  const passwords = TurnAuth.restPasswords(state.restSecrets, username, nowSeconds)
  if (Either.isLeft(passwords)) return undefined
  const keys = deriveKeys(state, username, passwords.right)
  if (Either.isLeft(keys)) return undefined
  // `restPasswords` accepted the username, so it starts with a decimal expiry (up to the first ":", if any).
  const colon = username.indexOf(":")
  const entry: UserKeys = { ...keys.right, expiresAt: Number(colon < 0 ? username : username.slice(0, colon)) }
  if (state.restCache.size >= maxRestCache) state.restCache.clear()
  state.restCache.set(username, entry)
  return entry
}

const quotaUserOf = (state: State, username: string): string => {
  if (state.staticUsers.has(username) || state.storeCache.get(username)?.user !== undefined) return username
  const colon = username.indexOf(":")
  return colon < 0 ? username : username.slice(colon + 1)
}

/**
 * How long an answer of the `credentials` store is kept (found or not found), and how long a failure or timeout
 * counts as "not found".
 */
const storeCacheLifetime = 60_000
const storeFailureLifetime = 5_000
/** How long the store may take before the request is answered as for an unknown user. */
const storeTimeout = Duration.seconds(5)
/** The most usernames looked up at once, and the most requests waiting for one username. */
const maxPendingLookups = 1000
const maxWaitingPerLookup = 8
const maxStoreCache = 10_000

/**
 * Asks the `credentials` store for the user's password in a fiber of the server (`runTask`); when it answers, the
 * keys (or "unknown") are cached and every request that waited for them is handled again from the start.
 */
const lookUp = (state: State, link: ClientLink, key: string, request: Uint8Array, username: string): void => {
  const waiting = state.lookups.get(username)
  const entry = { link, key, request: request.slice() }
  if (waiting !== undefined) {
    if (waiting.length >= maxWaitingPerLookup) return drop("lookup-pending")
    waiting.push(entry)
    return
  }
  if (state.lookups.size >= maxPendingLookups) return drop("lookup-pending")
  const queue = [entry]
  state.lookups.set(username, queue)
  state.runTask(
    state.credentials!(username, state.realm).pipe(
      Effect.timeout(storeTimeout),
      Effect.map((found) => ({ found, lifetime: storeCacheLifetime })),
      Effect.catchAllCause((cause) =>
        Effect.as(
          Effect.logWarning("TurnServer: the credential store failed").pipe(
            Effect.annotateLogs({ username, cause: String(cause) })
          ),
          { found: Option.none<string>(), lifetime: storeFailureLifetime }
        )
      ),
      Effect.flatMap(({ found, lifetime }) =>
        Effect.sync(() => {
          const keys = Option.isSome(found) ? deriveKeys(state, username, [found.value]) : undefined
          const user: UserKeys | undefined = keys !== undefined && Either.isRight(keys)
            ? { ...keys.right, expiresAt: Infinity }
            : undefined
          if (state.storeCache.size >= maxStoreCache && !state.storeCache.has(username)) {
            const oldest = state.storeCache.keys().next()
            if (oldest.done !== true) state.storeCache.delete(oldest.value)
          }
          state.storeCache.delete(username)
          state.storeCache.set(username, { user, expiresAt: state.now() + lifetime })
          state.lookups.delete(username)
          for (const w of queue) if (w.link.closed !== true) safeHandle(state, w.link, w.key, w.request)
        })
      ),
      Effect.ensuring(Effect.sync(() => {
        if (state.lookups.get(username) === queue) state.lookups.delete(username)
      }))
    )
  )
}

/** Checks the credentials; answers and returns `undefined` when they are missing or wrong. */
const authenticate = (
  state: State,
  link: ClientLink,
  key: string,
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
    failUnauthenticated(state, link, method, request, 400)
    return undefined
  }
  if (!nonceValid(state, nonce.value, link)) {
    challenge(state, link, method, request, 438)
    return undefined
  }
  const algorithm = requestAlgorithm(state, message)
  if (algorithm === undefined) {
    authFailure(400)
    failUnauthenticated(state, link, method, request, 400)
    return undefined
  }
  let user = keysFor(state, username.value)
  if (user === undefined && state.credentials !== undefined) {
    const stored = state.storeCache.get(username.value)
    if (stored === undefined || stored.expiresAt <= state.now()) {
      // Not known here: ask the credential store, and handle the request again when it answers.
      lookUp(state, link, key, request, username.value)
      return undefined
    }
    user = stored.user
  }
  if (user !== undefined) {
    const keys = algorithm === "MD5" ? user.keys : user.sha256Keys
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
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

// ---------------------------------------------------------------------------------------------------------------
// Expiry: one fiber for every allocation and reservation
// ---------------------------------------------------------------------------------------------------------------
//
// `state.expiries` is a binary min-heap on `expiresAt`; each item knows its index, so a refresh moves it in place
// and a release takes it out (no stale entries). One fiber sleeps on Effect's clock until the earliest expiry and
// releases what is due at exactly that instant; scheduling an expiry earlier than the one it sleeps for wakes it
// (`state.wake`), so it sleeps again for the new earliest.

const heapSwap = (heap: Array<Expiring>, i: number, j: number): void => {
  const a = heap[i]!
  const b = heap[j]!
  heap[i] = b
  heap[j] = a
  b.heapIndex = i
  a.heapIndex = j
}

const siftUp = (heap: Array<Expiring>, i: number): void => {
  while (i > 0) {
    const parent = (i - 1) >> 1
    if (heap[parent]!.expiresAt <= heap[i]!.expiresAt) return
    heapSwap(heap, i, parent)
    i = parent
  }
}

const siftDown = (heap: Array<Expiring>, i: number): void => {
  const n = heap.length
  for (;;) {
    const left = 2 * i + 1
    if (left >= n) return
    const right = left + 1
    const child = right < n && heap[right]!.expiresAt < heap[left]!.expiresAt ? right : left
    if (heap[i]!.expiresAt <= heap[child]!.expiresAt) return
    heapSwap(heap, i, child)
    i = child
  }
}

/** Takes an item out of the heap (nothing when it is not in it). */
const unschedule = (state: State, item: Expiring): void => {
  const heap = state.expiries
  const i = item.heapIndex
  if (i < 0) return
  item.heapIndex = -1
  const last = heap.pop()!
  if (i === heap.length) return
  heap[i] = last
  last.heapIndex = i
  siftUp(heap, i)
  siftDown(heap, last.heapIndex)
}

/** (Re)schedules an item at its `expiresAt`: the expiry fiber releases it exactly then. */
const schedule = (state: State, item: Expiring): void => {
  const heap = state.expiries
  if (item.heapIndex < 0) {
    item.heapIndex = heap.length
    heap.push(item)
  }
  siftUp(heap, item.heapIndex)
  siftDown(heap, item.heapIndex)
  if (item.expiresAt < state.sleepingUntil) {
    state.sleepingUntil = -Infinity
    Deferred.unsafeDone(state.wake, Exit.void)
  }
}

/** Removes the allocation from the tables and from the expiry heap at once (its relayed sockets stay open). */
const forget = (state: State, allocation: Allocation): void => {
  if (allocation.released) return
  allocation.released = true
  unschedule(state, allocation)
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
  allocation.lastPeer = undefined
  if (allocation.relayed !== undefined) state.relayedEndpoints.delete(peerKeyOf(allocation.relayed))
  if (allocation.second !== undefined) state.relayedEndpoints.delete(peerKeyOf(allocation.second.relayed))
}

/** Takes the allocation's scope (so it is closed once): `undefined` when it has none or it was taken. */
const takeScope = (allocation: Allocation): Scope.CloseableScope | undefined => {
  const scope = allocation.scope
  allocation.scope = undefined
  return scope
}

const closeScopes = (scopes: ReadonlyArray<Scope.CloseableScope>): Effect.Effect<void> =>
  Effect.forEach(scopes, (scope) => Scope.close(scope, Exit.void), { concurrency: "unbounded", discard: true })

/** Releases now: tables at once, the relayed sockets in a fiber of the server. */
const release = (state: State, allocation: Allocation): void => {
  forget(state, allocation)
  const scope = takeScope(allocation)
  if (scope !== undefined) state.runTask(Effect.uninterruptible(Scope.close(scope, Exit.void)))
}

/** Everything due at `now`, out of the tables; returns the scopes to close. */
const expireDue = (state: State, now: number): Array<Scope.CloseableScope> => {
  const heap = state.expiries
  const scopes: Array<Scope.CloseableScope> = []
  while (heap.length > 0 && heap[0]!.expiresAt <= now) {
    const item = heap[0]!
    unschedule(state, item)
    if (item.kind === "allocation") {
      forget(state, item)
      const scope = takeScope(item)
      if (scope !== undefined) scopes.push(scope)
    } else {
      if (state.reservations.get(item.token) === item) state.reservations.delete(item.token)
      scopes.push(item.scope)
    }
  }
  return scopes
}

/**
 * The expiry fiber: sleeps until the earliest expiry (or until woken by an earlier one), releases what is due, and
 * again, for the server's life.
 */
const expiryLoop = (state: State): Effect.Effect<never> =>
  Effect.suspend(() => {
    const wake = Deferred.unsafeMake<void>(FiberId.none)
    state.wake = wake
    const now = state.now()
    const due = expireDue(state, now)
    const next = state.expiries.length === 0 ? Infinity : state.expiries[0]!.expiresAt
    state.sleepingUntil = next
    const wait = next === Infinity
      ? Deferred.await(wake)
      : Effect.raceFirst(Effect.sleep(Duration.millis(next - now)), Deferred.await(wake))
    return Effect.zipRight(
      due.length === 0 ? wait : Effect.zipRight(Effect.uninterruptible(closeScopes(due)), wait),
      Effect.suspend(() => expiryLoop(state))
    )
  })

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
  const bytes = allocate(padded ? (length + 3) & ~3 : length)
  bytes[0] = channel >> 8
  bytes[1] = channel & 0xff
  bytes[2] = data.length >> 8
  bytes[3] = data.length & 0xff
  bytes.set(data, TurnChannelData.headerSize)
  return bytes
}

/**
 * The channel bound to a peer (by IP and port), if any. The last answer is kept on the allocation (until a channel
 * is added or removed), so a steady peer costs two comparisons instead of a key string and a lookup per datagram.
 */
const channelOfPeer = (allocation: Allocation, peer: SocketAddress): Channel | undefined => {
  const cached = allocation.lastPeer
  if (cached !== undefined && cached.port === peer.port && cached.ip === peer.ip) return cached.channel
  const channel = allocation.channelsByPeer.get(peerKeyOf(peer))
  allocation.lastPeer = { ip: peer.ip, port: peer.port, channel }
  return channel
}

/** The STUN magic cookie (RFC 8489 §5), for XOR-PEER-ADDRESS. */
const magicCookie = 0x2112a442
const ipv4Scratch = new Uint8Array(4)

/**
 * A Data indication (RFC 8656 §11.6): the header, XOR-PEER-ADDRESS, DATA and FINGERPRINT, written straight into a
 * buffer of the exact size (from the encoders' slab, as `StunMessage.encode` does); the bytes `StunMessage.encode` would give for the same message (a test compares them).
 * The transaction id is the server's random 8 bytes and a counter. `undefined` when it does not fit a STUN message.
 */
const encodeDataIndication = (state: State, peer: SocketAddress, data: Uint8Array): Uint8Array | undefined => {
  const ipv6 = peer.family === "IPv6"
  const addressLength = ipv6 ? 20 : 8
  const dataOffset = StunMessage.headerLength + 4 + addressLength + 4
  const fingerprintOffset = dataOffset + ((data.length + 3) & ~3)
  const bodyLength = fingerprintOffset + 8 - StunMessage.headerLength
  if (bodyLength > 0xffff) return undefined
  let ip: Uint8Array
  if (ipv6) {
    const parsed = TransportAddressModule.ipToBytes(peer.ip)
    if (Option.isNone(parsed) || parsed.value.length !== 16) return undefined
    ip = parsed.value
  } else {
    if (!TransportAddressModule.parseIPv4Into(peer.ip, ipv4Scratch, 0)) return undefined
    ip = ipv4Scratch
  }
  const bytes = allocate(fingerprintOffset + 8)
  bytes[1] = 0x17 // Data indication (RFC 8656 §18: method 0x007, class indication)
  bytes[2] = bodyLength >> 8
  bytes[3] = bodyLength & 0xff
  bytes[4] = 0x21
  bytes[5] = 0x12
  bytes[6] = 0xa4
  bytes[7] = 0x42
  const id = state.indicationId
  const counter = state.nextId++
  id[8] = (counter >>> 24) & 0xff
  id[9] = (counter >>> 16) & 0xff
  id[10] = (counter >>> 8) & 0xff
  id[11] = counter & 0xff
  bytes.set(id, 8)
  // XOR-PEER-ADDRESS (RFC 8656 §18.3, RFC 8489 §14.2): the port XOR the cookie's high half, the address XOR the
  // cookie (IPv4) or the cookie and the transaction id (IPv6).
  bytes[21] = 0x12
  bytes[23] = addressLength
  bytes[25] = ipv6 ? 2 : 1
  const port = peer.port ^ (magicCookie >>> 16)
  bytes[26] = port >> 8
  bytes[27] = port & 0xff
  for (let i = 0; i < ip.length; i++) bytes[28 + i] = ip[i]! ^ bytes[4 + i]!
  // DATA (RFC 8656 §18.4), zero padding.
  const dataType = dataOffset - 4
  bytes[dataType + 1] = 0x13
  bytes[dataType + 2] = data.length >> 8
  bytes[dataType + 3] = data.length & 0xff
  bytes.set(data, dataOffset)
  // FINGERPRINT (RFC 8489 §14.7).
  bytes[fingerprintOffset] = 0x80
  bytes[fingerprintOffset + 1] = 0x28
  bytes[fingerprintOffset + 3] = 4
  const crc = StunIntegrity.fingerprintOf(bytes, fingerprintOffset)
  bytes[fingerprintOffset + 4] = crc >>> 24
  bytes[fingerprintOffset + 5] = (crc >>> 16) & 0xff
  bytes[fingerprintOffset + 6] = (crc >>> 8) & 0xff
  bytes[fingerprintOffset + 7] = crc & 0xff
  return bytes
}

/** Where relayed datagrams from peers go: plain code, per packet. */
const onPeerDatagram = (state: State, allocation: Allocation) => (data: Uint8Array, remote: SocketAddress): void => {
  try {
    if (allocation.released) return
    const now = state.now()
    const permission = allocation.permissions.get(remote.ip)
    if (permission === undefined || permission <= now) return drop("no-permission")
    if (!bandwidthAdmitted(state, allocation, data.length)) return
    const link = allocation.link
    const channel = allocation.channelsByNumber.size === 0 ? undefined : channelOfPeer(allocation, remote)
    if (channel !== undefined && channel.expiresAt > now && data.length <= TurnChannelData.maxDataLength) {
      link.send(encodeChannelData(channel.number, data, link.transport !== "udp"))
    } else {
      const bytes = encodeDataIndication(state, remote, data)
      if (bytes === undefined) return drop("bad-indication")
      link.send(bytes)
    }
    relayed(toClient, data.length)
  } catch {
    drop("internal-error")
  }
}

/**
 * The peer policy: 403 unless this returns true. `port` says whether the peer's port is known (ChannelBind) or not
 * (CreatePermission: permissions are by IP, RFC 8656 §9). The server's own relayed addresses are allowed (relay to
 * relay between two clients of this server) — for a ChannelBind only a live relayed address; every data packet to
 * one of the server's IPs is checked again in `sendToPeer`.
 */
const peerAllowed = (state: State, peer: SocketAddress, port: boolean): boolean => {
  const bytes = TransportAddressModule.ipToBytes(peer.ip)
  if (Option.isNone(bytes)) return false
  if (anyContains(state.deny, bytes.value)) return false
  if (anyContains(state.allow, bytes.value)) return true
  if (state.relayPeerIps.has(peer.ip)) {
    return port ? state.relayedEndpoints.has(peerKeyOf(peer)) : true
  }
  if (state.ownIps.has(peer.ip)) return false
  return !anyContains(state.defaultDeny, bytes.value)
}

/** Whether the allocation has a relayed socket of this family (else 443 Peer Address Family Mismatch). */
const hasFamily = (allocation: Allocation, family: Family): boolean =>
  allocation.family === family || allocation.second !== undefined

/**
 * Sends from the relayed socket of the peer's family to the peer, never to one of the server's listening endpoints.
 */
const sendToPeer = (state: State, allocation: Allocation, data: Uint8Array, peer: SocketAddress): void => {
  // One Set lookup on the common path: only a datagram to one of the server's own IPs needs the endpoint checks.
  if (state.guardedIps.has(peer.ip)) {
    const key = peerKeyOf(peer)
    if (state.listeningEndpoints.has(key)) return drop("loop")
    if (state.relayPeerIps.has(peer.ip) && !state.relayedEndpoints.has(key)) return drop("own-address")
  }
  const socket = peer.family === allocation.family ? allocation.socket : allocation.second?.socket
  if (socket === undefined) return drop("no-permission")
  if (!bandwidthAdmitted(state, allocation, data.length)) return
  socket.unsafeSend(data, peer)
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

const bindRelay = (state: State, family: Family, port = 0) =>
  state.network.bindUdp({
    address: state.relayIps[family],
    family,
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
  family: Family,
  evenPort: StunAttribute.EvenPort | undefined
): Effect.Effect<Either.Either<Relay, Network.NetworkError | "NoEvenPort">> =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < evenPortAttempts; attempt++) {
      const scope = yield* Scope.fork(state.serverScope, ExecutionStrategy.sequential)
      const bound = yield* Effect.either(Scope.extend(bindRelay(state, family), scope))
      if (Either.isLeft(bound)) {
        yield* Scope.close(scope, Exit.void)
        return Either.left(bound.left)
      }
      const port = bound.right.local.port
      if (evenPort === undefined) return Either.right({ socket: bound.right, scope, token: undefined })
      if (port % 2 === 0 && !evenPort.reserveNext) return Either.right({ socket: bound.right, scope, token: undefined })
      if (port % 2 === 0 && port < 65535 && state.reservations.size < state.totalQuota) {
        const nextScope = yield* Scope.fork(state.serverScope, ExecutionStrategy.sequential)
        const next = yield* Effect.either(Scope.extend(bindRelay(state, family, port + 1), nextScope))
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
          const reservation: Reservation = {
            kind: "reservation",
            token: key,
            socket: next.right,
            scope: nextScope,
            expiresAt: state.now() + Duration.toMillis(reservationLifetime),
            heapIndex: -1
          }
          state.reservations.set(key, reservation)
          schedule(state, reservation)
          return Either.right({ socket: bound.right, scope, token })
        }
        yield* Scope.close(nextScope, Exit.void)
      }
      yield* Scope.close(scope, Exit.void)
    }
    return Either.left("NoEvenPort" as const)
  })

/** The address a relayed socket is advertised as: the external IP of its family, if any, and its port. */
const advertised = (state: State, socket: Network.DatagramSocket): SocketAddress => ({
  family: socket.local.family,
  ip: state.externalIps[socket.local.family] ?? socket.local.ip,
  port: socket.local.port
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
  // RFC 8656 §7.2: REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY (IPv6 only), not both, neither with a token.
  const requestedFamily = StunMessage.find(message, "RequestedAddressFamily")?.family
  const additionalFamily = StunMessage.find(message, "AdditionalAddressFamily")?.family
  if (
    (requestedFamily !== undefined && additionalFamily !== undefined) ||
    (additionalFamily !== undefined && additionalFamily !== "IPv6") ||
    (token !== undefined && (requestedFamily !== undefined || additionalFamily !== undefined))
  ) {
    return failAuthenticated(state, link, method, request, auth, 400)
  }
  let family: Family = reservation !== undefined ? reservation.socket.local.family : requestedFamily ?? "IPv4"
  let secondFamily: Family | undefined
  /** The family of a dual-stack request that cannot be allocated here (ADDRESS-ERROR-CODE 440). */
  let unsupported: Family | undefined
  if (additionalFamily !== undefined) {
    if (state.relayIps.IPv4 === undefined) {
      family = "IPv6"
      unsupported = "IPv4"
    } else if (state.relayIps.IPv6 === undefined) {
      unsupported = "IPv6"
    } else {
      secondFamily = "IPv6"
    }
  } else if (state.relayIps[family] === undefined) {
    return failAuthenticated(state, link, method, request, auth, 440)
  }
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
    second: undefined,
    bandwidth: { tokens: state.maxBytesPerSecond * 1000, at: state.now() },
    scope: undefined,
    kind: "allocation",
    expiresAt: state.now() + lifetime,
    heapIndex: -1,
    released: false,
    permissions: noPermissions,
    channelsByNumber: noChannels,
    channelsByPeer: noChannelsByPeer,
    lastPeer: undefined,
    lastSendPeer: undefined
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
        unschedule(state, reservation)
        bound = Either.right({ socket: reservation.socket, scope: reservation.scope, token: undefined })
      } else {
        bound = yield* bindRelayFor(state, family, evenPort)
      }
      if (Either.isLeft(bound)) {
        forget(state, allocation)
        yield* Effect.logWarning("TurnServer: could not bind a relayed socket").pipe(
          Effect.annotateLogs({ reason: typeof bound.left === "string" ? bound.left : bound.left.reason })
        )
        return failAuthenticated(state, link, method, requestCopy, auth, 508)
      }
      if (allocation.released) return yield* Scope.close(bound.right.scope, Exit.void)
      allocation.scope = bound.right.scope
      const socket = bound.right.socket
      const relayedAddress = advertised(state, socket)
      const relayedAttributes = [StunAttribute.xorRelayedAddress(relayedAddress)]
      let addressError = unsupported === undefined ? undefined : StunAttribute.addressErrorCode(
        unsupported,
        440,
        reasons[440]!
      )
      if (secondFamily !== undefined) {
        // The IPv6 relayed socket lives and dies with the first one (RFC 8656 §7.2: one allocation, two addresses).
        const second = yield* Effect.either(Scope.extend(bindRelay(state, secondFamily), bound.right.scope))
        if (Either.isRight(second)) {
          const secondRelayed = advertised(state, second.right)
          allocation.second = { socket: second.right, relayed: secondRelayed }
          relayedAttributes.push(StunAttribute.xorRelayedAddress(secondRelayed))
          yield* second.right.setHandler(onPeerDatagram(state, allocation))
        } else {
          addressError = StunAttribute.addressErrorCode(secondFamily, 508, reasons[508]!)
        }
        if (allocation.released) return
      }
      allocation.socket = socket
      allocation.relayed = relayedAddress
      state.relayedEndpoints.add(peerKeyOf(relayedAddress))
      if (allocation.second !== undefined) state.relayedEndpoints.add(peerKeyOf(allocation.second.relayed))
      yield* socket.setHandler(onPeerDatagram(state, allocation))
      allocation.allocateResponse = success(state, link, method, requestCopy, auth, [
        ...relayedAttributes,
        ...(addressError === undefined ? [] : [addressError]),
        StunAttribute.lifetime(Math.floor(lifetime / 1000)),
        StunAttribute.xorMappedAddress(link.remote),
        ...(bound.right.token === undefined ? [] : [StunAttribute.reservationToken(bound.right.token)])
      ])
      schedule(state, allocation)
      // Built only when debug logs are on: the annotations cost strings and fiber-ref copies per allocation.
      yield* Effect.whenLogLevel(
        Effect.suspend(() =>
          Effect.logDebug("TurnServer: allocation created").pipe(
            Effect.annotateLogs({
              client: TransportAddressModule.format(link.remote),
              relayed: [relayedAddress, ...(allocation.second === undefined ? [] : [allocation.second.relayed])].map(
                TransportAddressModule.format
              ).join(" "),
              username: auth.username
            })
          )
        ),
        LogLevel.Debug
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
  schedule(state, allocation)
  success(state, link, message.method, request, auth, [StunAttribute.lifetime(Math.floor(lifetime / 1000))])
}

/** Installs or refreshes a permission; false when the allocation already has too many. */
const permit = (state: State, allocation: Allocation, ip: string, now: number): boolean => {
  const existing = allocation.permissions.get(ip)
  if (existing === undefined) {
    if (allocation.permissions.size >= state.maxPermissions) return false
    gauge(Metrics.turnPermissions, 1)
  }
  if (allocation.permissions === noPermissions) allocation.permissions = new Map()
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
    if (!hasFamily(allocation, peer.family)) {
      return failAuthenticated(state, link, message.method, request, auth, 443)
    }
    if (!peerAllowed(state, peer, false)) return failAuthenticated(state, link, message.method, request, auth, 403)
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
  allocation.lastPeer = undefined
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
  if (!hasFamily(allocation, peer.family)) return failAuthenticated(state, link, message.method, request, auth, 443)
  if (!peerAllowed(state, peer, true)) return failAuthenticated(state, link, message.method, request, auth, 403)
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
    if (allocation.channelsByNumber === noChannels) {
      allocation.channelsByNumber = new Map()
      allocation.channelsByPeer = new Map()
    }
    allocation.channelsByNumber.set(number, created)
    allocation.channelsByPeer.set(peerKey, created)
    allocation.lastPeer = undefined
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
  relaySend(state, allocation, peer.address, data.value)
}

/** RFC 8656 §11.5: a Send indication's DATA goes to its XOR-PEER-ADDRESS when a permission for the peer is live. */
const relaySend = (state: State, allocation: Allocation, peer: SocketAddress, data: Uint8Array): void => {
  const permission = allocation.permissions.get(peer.ip)
  if (permission === undefined || permission <= state.now()) return drop("no-permission")
  sendToPeer(state, allocation, data, peer)
}

const attributeXorPeerAddress = 0x0012
const attributeData = 0x0013
const attributeFingerprint = 0x8028

/**
 * The common Send indication (RFC 8656 §11.4–§11.5) without the general decoder: exactly one XOR-PEER-ADDRESS (IPv4),
 * exactly one DATA and an optional FINGERPRINT (last, and correct), nothing else. Anything else (IPv6, other
 * attributes, a bad FINGERPRINT or layout) returns false and goes through `StunMessage.decode` and
 * `handleSendIndication`, which then decide exactly as before; for what is handled here they would decide the same.
 * The header was checked by `handle`.
 */
const fastSendIndication = (state: State, key: string, data: Uint8Array): boolean => {
  const size = data.length
  let peerAt = -1
  let dataAt = -1
  let dataLength = 0
  let at = StunMessage.headerLength
  while (at < size) {
    if (at + 4 > size) return false
    const type = (data[at]! << 8) | data[at + 1]!
    const length = (data[at + 2]! << 8) | data[at + 3]!
    if (type === attributeXorPeerAddress) {
      if (peerAt >= 0 || length !== 8 || data[at + 5] !== 1) return false
      peerAt = at + 4
    } else if (type === attributeData) {
      if (dataAt >= 0) return false
      dataAt = at + 4
      dataLength = length
    } else if (type === attributeFingerprint) {
      if (length !== 4 || at + 8 !== size) return false
      const value = ((data[at + 4]! << 24) | (data[at + 5]! << 16) | (data[at + 6]! << 8) | data[at + 7]!) >>> 0
      if (StunIntegrity.fingerprintOf(data, at) !== value) return false
    } else {
      return false
    }
    at += 4 + ((length + 3) & ~3)
  }
  if (at !== size || peerAt < 0 || dataAt < 0) return false
  const allocation = state.allocations.get(key)
  if (allocation === undefined || allocation.socket === undefined) {
    drop("no-allocation")
    return true
  }
  const port = ((data[peerAt + 2]! << 8) | data[peerAt + 3]!) ^ (magicCookie >>> 16)
  const xored = ((data[peerAt + 4]! << 24) | (data[peerAt + 5]! << 16) | (data[peerAt + 6]! << 8) | data[peerAt + 7]!) |
    0
  let peer: SocketAddress
  const cached = allocation.lastSendPeer
  if (cached !== undefined && cached.xored === xored && cached.port === port) {
    peer = cached.peer
  } else {
    const ip = (xored ^ magicCookie) >>> 0
    peer = { family: "IPv4", ip: `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`, port }
    allocation.lastSendPeer = { xored, port, peer }
  }
  relaySend(state, allocation, peer, data.subarray(dataAt, dataAt + dataLength))
  return true
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
  if (
    cls === StunMessage.StunClass.Indication && method === StunMessage.StunMethod.Send &&
    fastSendIndication(state, key, data)
  ) {
    return
  }
  const decoded = StunMessage.decode(data)
  if (Either.isLeft(decoded)) {
    if (cls === StunMessage.StunClass.Request) return failUnauthenticated(state, link, method, data, 400)
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
    return failUnauthenticated(state, link, method, data, 420, [
      StunAttribute.unknownAttributes(dedupe(message.unknownComprehensionRequired))
    ])
  }
  if (method === StunMessage.StunMethod.Binding) {
    if (!unauthenticatedAdmitted(state, link.remote.ip)) return drop("rate-limited")
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
    return failUnauthenticated(state, link, method, data, 400)
  }
  const auth = authenticate(state, link, key, message, data)
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
  // A source whose bucket has refilled is the same as one never seen: forget it.
  const rate = state.unauthenticatedRate
  if (rate > 0) {
    for (const [ip, bucket] of state.sources) {
      if (bucket.tokens + (now - bucket.at) * rate >= rate * 1000) state.sources.delete(ip)
    }
  }
  for (const [name, entry] of state.storeCache) if (entry.expiresAt <= now) state.storeCache.delete(name)
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
    const tlsListen: Array<{ family: Family; ip: string }> = []
    for (const text of options.tls?.addresses ?? options.addresses) {
      const ip = TransportAddressModule.canonicalIp(text)
      if (Option.isNone(ip)) return yield* Effect.fail(invalid(text, "tls: not an IP address"))
      tlsListen.push(ip.value)
    }
    const tlsPort = options.tls?.port ?? defaultTlsPort
    if (!Number.isInteger(tlsPort) || tlsPort < 0 || tlsPort > 65535) {
      return yield* Effect.fail(invalid(tlsListen[0]?.ip ?? "", `invalid TLS port ${tlsPort}`))
    }
    const relayIps: Record<Family, string | undefined> = { IPv4: undefined, IPv6: undefined }
    const relayTexts = options.relayAddresses ?? [options.relayAddress ?? listen[0]!.ip]
    if (relayTexts.length === 0) return yield* Effect.fail(invalid("", "relayAddresses: no address"))
    for (const text of relayTexts) {
      const relay = TransportAddressModule.canonicalIp(text)
      if (Option.isNone(relay) || isWildcard(relay.value.ip)) {
        return yield* Effect.fail(invalid(text, "the relay address must be a specific IP"))
      }
      if (relayIps[relay.value.family] !== undefined) {
        return yield* Effect.fail(invalid(text, `relayAddresses: more than one ${relay.value.family} address`))
      }
      relayIps[relay.value.family] = relay.value.ip
    }
    const externalIps: Record<Family, string | undefined> = { IPv4: undefined, IPv6: undefined }
    const externalTexts = [
      ...(options.externalAddresses ?? []),
      ...(options.externalAddress === undefined ? [] : [options.externalAddress])
    ]
    for (const text of externalTexts) {
      const external = TransportAddressModule.canonicalIp(text)
      if (Option.isNone(external) || relayIps[external.value.family] === undefined) {
        return yield* Effect.fail(invalid(text, "not an IP of a relay's family"))
      }
      const previous = externalIps[external.value.family]
      if (previous !== undefined && previous !== external.value.ip) {
        return yield* Effect.fail(invalid(text, `externalAddresses: more than one ${external.value.family} address`))
      }
      externalIps[external.value.family] = external.value.ip
    }
    const allow = yield* parseCidrs(options.allowPeers ?? [], "allowPeers")
    const deny = yield* parseCidrs(options.denyPeers ?? [], "denyPeers")
    const defaultDeny = yield* parseCidrs(defaultDeniedPeers, "defaultDeniedPeers")
    const realm = options.realm ?? defaultRealm
    const algorithms = options.passwordAlgorithms ?? defaultPasswordAlgorithms
    if (algorithms.length === 0 || algorithms.some((a) => a !== "MD5" && a !== "SHA-256")) {
      return yield* Effect.fail(invalid("", `passwordAlgorithms: ${algorithms.join(",")}`))
    }
    const md5 = algorithms.includes("MD5")
    const sha256 = algorithms.includes("SHA-256")
    const staticUsers = new Map<string, UserKeys>()
    for (const [name, password] of Object.entries(options.users ?? {})) {
      const keys = deriveKeys({ realm, md5, sha256 }, name, [password])
      if (Either.isLeft(keys)) return yield* Effect.fail(invalid(name, `user ${name}: ${keys.left.message}`))
      staticUsers.set(name, { ...keys.right, expiresAt: Infinity })
    }
    const secret = new Uint8Array(32)
    for (let i = 0; i < secret.length; i++) secret[i] = yield* Random.nextIntBetween(0, 256)
    const indicationId = new Uint8Array(12)
    for (let i = 0; i < 8; i++) indicationId[i] = yield* Random.nextIntBetween(0, 256)
    const softwareText = [...(options.software ?? "effect-ice")].slice(0, 127).join("")

    const ownIps = new Set<string>(listen.map((l) => l.ip))
    for (const ip of [relayIps.IPv4, relayIps.IPv6, externalIps.IPv4, externalIps.IPv6]) {
      if (ip !== undefined) ownIps.add(ip)
    }
    if (options.tls !== undefined) { for (const l of tlsListen) ownIps.add(l.ip) }
    const state: State = {
      now: () => clock.unsafeCurrentTimeMillis(),
      realm,
      realmAttribute: StunAttribute.realm(realm),
      software: softwareText === "" ? undefined : StunAttribute.software(softwareText),
      md5,
      sha256,
      passwordAlgorithms: sha256
        ? StunAttribute.passwordAlgorithms(
          [...new Set(algorithms)].map((a) => ({
            algorithm: a === "MD5"
              ? StunAttribute.PasswordAlgorithmNumber.Md5
              : StunAttribute.PasswordAlgorithmNumber.Sha256,
            parameters: new Uint8Array(0)
          }))
        )
        : undefined,
      noncePrefix: sha256 ? passwordAlgorithmsNoncePrefix : "",
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
      credentials: options.credentials,
      storeCache: new Map(),
      lookups: new Map(),
      allow,
      deny,
      defaultDeny,
      ownIps,
      listeningEndpoints: new Set(),
      // A relay IP inside `allowPeers` is reachable at any port (the operator said so: tests on loopback).
      relayPeerIps: new Set(
        (["IPv4", "IPv6"] as const).flatMap((family) => {
          const ip = externalIps[family] ?? relayIps[family]
          const bytes = ip === undefined ? Option.none() : TransportAddressModule.ipToBytes(ip)
          return ip === undefined || (Option.isSome(bytes) && anyContains(allow, bytes.value)) ? [] : [ip]
        })
      ),
      relayedEndpoints: new Set(),
      guardedIps: new Set(),
      listeningIps: new Set([...listen, ...(options.tls === undefined ? [] : tlsListen)].map((l) => l.ip)),
      maxBytesPerSecond: Math.max(0, Math.floor(options.maxBytesPerSecond ?? 0)),
      unauthenticatedRate: Math.max(
        0,
        Math.floor(options.unauthenticatedRateLimit ?? defaultUnauthenticatedRateLimit)
      ),
      sources: new Map(),
      userQuota: Math.max(0, Math.floor(options.userQuota ?? defaultUserQuota)),
      totalQuota: Math.max(0, Math.floor(options.totalQuota ?? defaultTotalQuota)),
      maxPermissions: Math.max(
        1,
        Math.floor(options.maxPermissionsPerAllocation ?? defaultMaxPermissionsPerAllocation)
      ),
      relayIps,
      relayPortRange: options.relayPortRange,
      externalIps,
      allocations: new Map(),
      perUser: new Map(),
      reservations: new Map(),
      indicationId,
      nextId: 1,
      runTask: () => undefined,
      expiries: [],
      sleepingUntil: Infinity,
      wake: Deferred.unsafeMake<void>(FiberId.none),
      network,
      serverScope
    }
    for (const ip of [...state.listeningIps, ...state.relayPeerIps]) state.guardedIps.add(ip)
    // Every allocation is released when the server stops (before the fibers are interrupted).
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const allocation of [...state.allocations.values()]) forget(state, allocation)
      })
    )
    const runTask = yield* FiberSet.makeRuntime<never, void, never>()
    state.runTask = (effect) => {
      runTask(effect)
    }
    yield* Effect.forkScoped(expiryLoop(state))

    const udp: Array<TransportAddress> = []
    for (let i = 0; i < listen.length; i++) {
      const socket = yield* network.bindUdp({ address: listen[i]!.ip, family: listen[i]!.family, port })
      udp.push(socket.local)
      state.listeningEndpoints.add(peerKeyOf(socket.local))
      const prefix = "u" + i + "|"
      // The key of the last sender is kept: a steady client costs two comparisons, and its key (a string whose hash
      // V8 has already computed) is looked up without building a new one per datagram.
      let lastIp = ""
      let lastPort = -1
      let lastKey = ""
      yield* socket.setHandler((data, remote) => {
        if (remote.port !== lastPort || remote.ip !== lastIp) {
          lastIp = remote.ip
          lastPort = remote.port
          lastKey = prefix + remote.ip + "|" + remote.port
        }
        const key = lastKey
        const existing = state.allocations.get(key)
        const link: ClientLink = existing !== undefined
          ? existing.link
          : new UdpLink(socket, { family: remote.family, ip: remote.ip, port: remote.port })
        safeHandle(state, link, key, data)
      })
    }
    const tcp: Array<TransportAddress> = []
    if (options.tcp === true) {
      for (let i = 0; i < listen.length; i++) {
        const prefix = "t" + i + "|"
        const listener = yield* network.listenTcp(
          { address: listen[i]!.ip, family: listen[i]!.family, port: port === 0 ? 0 : port },
          (connection) => serveConnection(state, prefix, connection, "tcp")
        )
        tcp.push(listener.local)
        state.listeningEndpoints.add(peerKeyOf(listener.local))
      }
    }
    const tls: Array<TransportAddress> = []
    if (options.tls !== undefined) {
      for (let i = 0; i < tlsListen.length; i++) {
        const prefix = "s" + i + "|"
        const listener = yield* network.listenTls(
          {
            address: tlsListen[i]!.ip,
            family: tlsListen[i]!.family,
            port: tlsPort,
            certificate: options.tls.certificate,
            key: options.tls.key
          },
          (connection) => serveConnection(state, prefix, connection, "tls")
        )
        tls.push({ ...listener.local, transport: "tls" })
        state.listeningEndpoints.add(peerKeyOf(listener.local))
      }
    }

    const sweepEvery = Math.max(1, millis(options.sweepInterval ?? defaultSweepInterval))
    yield* Effect.forkScoped(
      Effect.repeat(Effect.sync(() => sweep(state)), Schedule.spaced(Duration.millis(sweepEvery)))
    )
    yield* Effect.logDebug("TurnServer: listening").pipe(
      Effect.annotateLogs({ udp: udp.map(TransportAddressModule.format).join(" "), relay: relayTexts.join(" ") })
    )
    const now = state.now
    return {
      udp,
      tcp,
      tls,
      endpoints: [...udp, ...tcp, ...tls],
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
            relayedAddresses: allocation.second === undefined
              ? [allocation.relayed]
              : [allocation.relayed, allocation.second.relayed],
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

/**
 * Serves one TCP or TLS connection (the same framing, RFC 8656 §3.1 and §12.5); its allocation (if any) is released
 * when the connection ends.
 */
const serveConnection = (
  state: State,
  prefix: string,
  connection: Network.StreamSocket,
  transport: "tcp" | "tls"
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.suspend(() => {
    const remote: SocketAddress = {
      family: connection.remote.family,
      ip: connection.remote.ip,
      port: connection.remote.port
    }
    const key = prefix + remote.ip + "|" + remote.port
    const link: ClientLink = { transport, remote, send: (bytes) => connection.unsafeWrite(bytes) }
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
        link.closed = true
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
