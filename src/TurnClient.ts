/**
 * The TURN client (RFC 8656): an {@link Allocation} on a TURN server as a scoped resource, with everything that
 * keeps it alive running on Effect's `Clock`.
 *
 * - Allocate (RFC 8656 §7.1, §7.3): over UDP or TCP to the server, REQUESTED-TRANSPORT UDP, optionally
 *   REQUESTED-ADDRESS-FAMILY (§7.1, RFC 8656 §18.8), long-term credentials (RFC 8489 §9.2) through
 *   `StunTransaction`'s long-term session: the 401 realm/nonce round trip and a 438 Stale Nonce retry happen there,
 *   and the session keeps realm, nonce and key for every later request. A 437 Allocation Mismatch on Allocate is
 *   retried from a new local port (§7.3). Closing the scope sends Refresh with LIFETIME 0 (§7.5) after every timer
 *   is interrupted. Optionally ADDITIONAL-ADDRESS-FAMILY IPv6 (dual stack, every XOR-RELAYED-ADDRESS kept, an
 *   ADDRESS-ERROR-CODE reported), DONT-FRAGMENT, EVEN-PORT (its RESERVATION-TOKEN exposed) or RESERVATION-TOKEN.
 *   A 300 Try Alternate (RFC 8489 §10) is followed once, to the ALTERNATE-SERVER over the same transport from a new
 *   socket, with the same credentials; a second 300 is {@link TryAlternate}.
 * - Refresh (§7.4, §7.5): one timer in a `FiberHandle`, sent a minute before the granted lifetime ends (at half the
 *   lifetime when it is two minutes or less). A refresh that fails (437, timeout, any error) fails the allocation:
 *   {@link Allocation.failed} fails with the typed error, the inbound stream fails with it, and `send` does too.
 * - Permissions (§9): CreatePermission for several peers in one request (one XOR-PEER-ADDRESS each); each peer IP
 *   keeps a refresh timer in a `FiberMap` keyed by the IP, every 240 s (the permission lifetime is 300 s, §9), until
 *   the peer is dropped with {@link Allocation.drop}, or, with `permissionIdleTimeout`, until nothing has been sent
 *   to or received from the IP for longer than that when its refresh is due.
 * - Channels (§12): ChannelBind gives a peer a channel number 0x4000–0x4FFF, refreshed every 540 s (the binding
 *   lasts 600 s, §12), which refreshes its permission too; a timer per peer in a `FiberMap`.
 * - Data (§10, §11, §12.4–§12.6): `send` uses ChannelData for a bound peer and a Send indication otherwise;
 *   inbound Data indications and ChannelData become a `Stream` of `{ peer, data }`. Per-packet work is plain code
 *   in the socket's receive handler (no fiber per packet). Over TCP the framing of RFC 8656 §12.5 applies: STUN and
 *   ChannelData are delimited by their length fields and ChannelData is padded to four bytes.
 * - Credentials: static username/password, or TURN REST API ephemeral credentials (`TurnAuth.restCredentials`) made
 *   from a shared secret, with the expiry taken from `Clock`.
 *
 * STUN error codes become typed errors (RFC 8656 §19): 401 {@link Unauthorized}, 438 {@link StaleNonce},
 * 437 {@link AllocationMismatch}, 486 {@link AllocationQuotaReached}, 508 {@link InsufficientCapacity},
 * 442 {@link UnsupportedTransport}, 403 {@link Forbidden}, 443 {@link PeerAddressFamilyMismatch}; other codes stay
 * `StunErrorResponse`, and a lost request is `StunTimeout` after the RFC 8489 retransmission schedule.
 *
 * @since 0.1.0
 */
import type { Stream } from "effect"
import {
  Clock,
  Context,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  ExecutionStrategy,
  Exit,
  FiberHandle,
  FiberMap,
  Mailbox,
  Option,
  Ref,
  Scope
} from "effect"
import * as Network from "./Network.js"
import * as StunAttribute from "./StunAttribute.js"
import type { CredentialError } from "./StunIntegrity.js"
import type { DecodedStunMessage, StunEncodeError } from "./StunMessage.js"
import * as StunMessage from "./StunMessage.js"
import type { StunClient, StunErrorResponse, StunTimeout } from "./StunTransaction.js"
import * as StunTransaction from "./StunTransaction.js"
import type { Family, SocketAddress } from "./TransportAddress.js"
import * as TransportAddress from "./TransportAddress.js"
import * as TurnAuth from "./TurnAuth.js"
import * as TurnChannelData from "./TurnChannelData.js"

// ---------------------------------------------------------------------------------------------------------------
// Constants and tunables
// ---------------------------------------------------------------------------------------------------------------

/**
 * The permission lifetime, 300 s (RFC 8656 §9: "permission lifetime").
 *
 * @since 0.1.0
 * @category constants
 */
export const permissionLifetimeSeconds = 300

/**
 * The channel binding lifetime, 600 s (RFC 8656 §12: "channel binding lifetime").
 *
 * @since 0.1.0
 * @category constants
 */
export const channelLifetimeSeconds = 600

/**
 * How often a permission in use is refreshed: every 240 s, a minute before it would expire (RFC 8656 §9).
 *
 * @since 0.1.0
 * @category tunables
 */
export class PermissionRefreshInterval extends Context.Reference<PermissionRefreshInterval>()(
  "effect-ice/TurnClient/PermissionRefreshInterval",
  { defaultValue: (): Duration.DurationInput => "240 seconds" }
) {}

/**
 * How often a channel binding is refreshed: every 540 s, a minute before its 600 s lifetime ends (RFC 8656 §12).
 *
 * @since 0.1.0
 * @category tunables
 */
export class ChannelRefreshInterval extends Context.Reference<ChannelRefreshInterval>()(
  "effect-ice/TurnClient/ChannelRefreshInterval",
  { defaultValue: (): Duration.DurationInput => "540 seconds" }
) {}

/**
 * When to refresh an allocation whose granted lifetime is `seconds`: a minute before it ends, or at half-life when
 * the lifetime is two minutes or less (RFC 8656 §7.5 leaves the margin to the client).
 *
 * @since 0.1.0
 * @category constants
 */
export const refreshDelaySeconds = (seconds: number): number => seconds > 120 ? seconds - 60 : seconds / 2

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

interface ErrorFields {
  /** The TURN server, as `ip:port`. */
  readonly server: string
  /** The request that failed ("Allocate", "Refresh", "CreatePermission", "ChannelBind"). */
  readonly request: string
  /** The STUN error code. */
  readonly code: number
  /** The server's reason phrase. */
  readonly reason: string
}

const describeError = (name: string, e: ErrorFields) =>
  `TURN ${e.request} to ${e.server}: ${name} (${e.code} ${e.reason})`

/**
 * 401 Unauthorized: the credentials were refused (after the realm/nonce round trip).
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Data.TaggedError("Unauthorized")<ErrorFields> {
  override get message(): string {
    return describeError("unauthorized", this)
  }
}

/**
 * 438 Stale Nonce: the server refused the nonce again after the client retried with the new one.
 *
 * @since 0.1.0
 * @category errors
 */
export class StaleNonce extends Data.TaggedError("StaleNonce")<ErrorFields> {
  override get message(): string {
    return describeError("stale nonce", this)
  }
}

/**
 * 437 Allocation Mismatch: an Allocate on a 5-tuple that has an allocation, or a request on one that has none (the
 * allocation expired or was deleted).
 *
 * @since 0.1.0
 * @category errors
 */
export class AllocationMismatch extends Data.TaggedError("AllocationMismatch")<ErrorFields> {
  override get message(): string {
    return describeError("allocation mismatch", this)
  }
}

/**
 * 486 Allocation Quota Reached.
 *
 * @since 0.1.0
 * @category errors
 */
export class AllocationQuotaReached extends Data.TaggedError("AllocationQuotaReached")<ErrorFields> {
  override get message(): string {
    return describeError("allocation quota reached", this)
  }
}

/**
 * 508 Insufficient Capacity.
 *
 * @since 0.1.0
 * @category errors
 */
export class InsufficientCapacity extends Data.TaggedError("InsufficientCapacity")<ErrorFields> {
  override get message(): string {
    return describeError("insufficient capacity", this)
  }
}

/**
 * 442 Unsupported Transport Protocol.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnsupportedTransport extends Data.TaggedError("UnsupportedTransport")<ErrorFields> {
  override get message(): string {
    return describeError("unsupported transport", this)
  }
}

/**
 * 403 Forbidden: the server refuses the request (a denied peer address, for example).
 *
 * @since 0.1.0
 * @category errors
 */
export class Forbidden extends Data.TaggedError("Forbidden")<ErrorFields> {
  override get message(): string {
    return describeError("forbidden", this)
  }
}

/**
 * 443 Peer Address Family Mismatch: a peer of another family than the relayed address.
 *
 * @since 0.1.0
 * @category errors
 */
export class PeerAddressFamilyMismatch extends Data.TaggedError("PeerAddressFamilyMismatch")<ErrorFields> {
  override get message(): string {
    return describeError("peer address family mismatch", this)
  }
}

/**
 * The server's success response lacks what it must carry (XOR-RELAYED-ADDRESS on an Allocate success).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidResponse extends Data.TaggedError("InvalidResponse")<{
  readonly server: string
  readonly request: string
  readonly reason: string
}> {
  override get message(): string {
    return `TURN ${this.request} to ${this.server}: ${this.reason}`
  }
}

/**
 * The allocation was released (its scope closed) before the operation.
 *
 * @since 0.1.0
 * @category errors
 */
export class AllocationClosed extends Data.TaggedError("AllocationClosed")<{ readonly server: string }> {
  override get message(): string {
    return `the TURN allocation on ${this.server} is closed`
  }
}

/**
 * A 300 Try Alternate (RFC 8489 §10) answered the Allocate sent to the alternate server too: the client follows one
 * redirection only.
 *
 * @since 0.1.0
 * @category errors
 */
export class TryAlternate extends Data.TaggedError("TryAlternate")<{
  /** The server first asked, as `ip:port`. */
  readonly server: string
  /** The alternate it named, which redirected again, as `ip:port`. */
  readonly alternate: string
  /** Where the alternate redirected to, as `ip:port` (not followed). */
  readonly next: string
}> {
  override get message(): string {
    return `TURN Allocate to ${this.server}: redirected to ${this.alternate}, which redirected again to ${this.next}`
  }
}

/**
 * Options of {@link allocate} that RFC 8656 §7.2 forbids together (the server would answer 400), refused before any
 * request is sent.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidAllocateOptions extends Data.TaggedError("InvalidAllocateOptions")<{ readonly reason: string }> {
  override get message(): string {
    return `TURN Allocate: ${this.reason}`
  }
}

/**
 * Everything a TURN operation can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type TurnError =
  | Unauthorized
  | StaleNonce
  | AllocationMismatch
  | AllocationQuotaReached
  | InsufficientCapacity
  | UnsupportedTransport
  | Forbidden
  | PeerAddressFamilyMismatch
  | InvalidResponse
  | AllocationClosed
  | TryAlternate
  | InvalidAllocateOptions
  | StunTimeout
  | StunErrorResponse
  | Network.NetworkError
  | StunEncodeError
  | CredentialError

const errorClasses: Record<number, new(fields: ErrorFields) => TurnError> = {
  401: Unauthorized,
  403: Forbidden,
  437: AllocationMismatch,
  438: StaleNonce,
  442: UnsupportedTransport,
  443: PeerAddressFamilyMismatch,
  486: AllocationQuotaReached,
  508: InsufficientCapacity
}

const methodNames: Record<number, string> = {
  [StunMessage.StunMethod.Allocate]: "Allocate",
  [StunMessage.StunMethod.Refresh]: "Refresh",
  [StunMessage.StunMethod.CreatePermission]: "CreatePermission",
  [StunMessage.StunMethod.ChannelBind]: "ChannelBind"
}

/**
 * The typed error for a STUN error response to a TURN request (RFC 8656 §19); codes without a class of their own
 * stay `StunErrorResponse`.
 *
 * @since 0.1.0
 * @category errors
 */
export const fromErrorResponse = (error: StunErrorResponse): TurnError => {
  const ErrorClass = errorClasses[error.code]
  return ErrorClass === undefined
    ? error
    : new ErrorClass({
      server: error.remote,
      request: methodNames[error.method] ?? `method 0x${error.method.toString(16)}`,
      code: error.code,
      reason: error.reason
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Options and models
// ---------------------------------------------------------------------------------------------------------------

/**
 * How the client authenticates: a static username and password, or TURN REST API ephemeral credentials computed
 * from the shared secret for `user`, valid `ttlSeconds` (default 86400) from now.
 *
 * @since 0.1.0
 * @category models
 */
export type Auth =
  | { readonly mode: "static"; readonly username: string; readonly password: string }
  | { readonly mode: "secret"; readonly secret: string; readonly user: string; readonly ttlSeconds?: number }

/**
 * Options of {@link allocate}.
 *
 * @since 0.1.0
 * @category models
 */
export interface AllocateOptions {
  /** The TURN server's address. */
  readonly server: SocketAddress
  /**
   * The transport to the server: `udp` (default), `tcp` or `tls` (TCP framing over TLS). The relayed transport is
   * always UDP.
   */
  readonly transport?: "udp" | "tcp" | "tls" | undefined
  /** How to verify the server when `transport` is `tls` (`localAddress` above, when set, overrides the one here). */
  readonly tls?: Network.TlsConnectOptions | undefined
  readonly auth: Auth
  /** REQUESTED-ADDRESS-FAMILY for the relayed address; omitted: the server's default (IPv4). */
  readonly family?: Family | undefined
  /** The LIFETIME to ask for, in seconds, on Allocate and every Refresh; omitted: the server's default. */
  readonly lifetime?: number | undefined
  /** The local address to bind (UDP) or connect from (TCP). */
  readonly localAddress?: string | undefined
  /** How many times an Allocate answered with 437 is tried again from a new local port (default 2). */
  readonly mismatchRetries?: number | undefined
  /**
   * ADDITIONAL-ADDRESS-FAMILY IPv6 (RFC 8656 §7.1): a dual-stack allocation, an IPv4 and an IPv6 relayed address.
   * Not with `family` nor `reservationToken` ({@link InvalidAllocateOptions}).
   */
  readonly additionalFamily?: "IPv6" | undefined
  /** DONT-FRAGMENT (RFC 8656 §7.1): asks the server to set the DF bit on relayed packets. */
  readonly dontFragment?: boolean | undefined
  /**
   * EVEN-PORT (RFC 8656 §7.1): an even relayed port, and with `reserveNext` the next port reserved; the
   * RESERVATION-TOKEN returned is {@link Allocation.reservationToken}. Not with `reservationToken`.
   */
  readonly evenPort?: { readonly reserveNext: boolean } | undefined
  /**
   * RESERVATION-TOKEN (RFC 8656 §7.1): the port another allocation reserved with EVEN-PORT. Not with `evenPort`,
   * `family` nor `additionalFamily` ({@link InvalidAllocateOptions}).
   */
  readonly reservationToken?: Uint8Array | undefined
  /**
   * Drops permissions not in use: when its 240 s refresh is due, a peer IP nothing was sent to or received from
   * (Send, ChannelData, Data) for longer than this is not refreshed and leaves {@link Allocation.permissions}; the
   * server lets it expire. Omitted: permissions are kept until {@link Allocation.drop}. Channels are kept until
   * `drop` either way (their refresh reinstalls the permission on the server).
   */
  readonly permissionIdleTimeout?: Duration.DurationInput | undefined
}

/**
 * Data relayed from a peer.
 *
 * @since 0.1.0
 * @category models
 */
export interface PeerData {
  readonly peer: SocketAddress
  readonly data: Uint8Array
}

/**
 * An allocation on a TURN server, alive until its scope closes or a refresh fails.
 *
 * @since 0.1.0
 * @category models
 */
export interface Allocation {
  /**
   * The server holding the allocation: the alternate after a 300 Try Alternate (RFC 8489 §10), which is asked with
   * the same credentials (the session learns its realm and nonce from its 401 if they differ).
   */
  readonly server: SocketAddress
  readonly transport: "udp" | "tcp" | "tls"
  /** XOR-RELAYED-ADDRESS: where peers send to reach us. */
  readonly relayed: SocketAddress
  /** Every XOR-RELAYED-ADDRESS the server returned, `relayed` first (two for a dual-stack allocation). */
  readonly relayedAddresses: ReadonlyArray<SocketAddress>
  /**
   * ADDRESS-ERROR-CODE in the Allocate success: the server could not allocate the additional family (RFC 8656 §7.2);
   * the allocation stands with the other family.
   */
  readonly addressError: { readonly family: Family; readonly code: number; readonly reason: string } | undefined
  /** RESERVATION-TOKEN returned for an EVEN-PORT with `reserveNext`, to allocate the reserved port with. */
  readonly reservationToken: Uint8Array | undefined
  /** XOR-MAPPED-ADDRESS: our address as the server sees it, when it said. */
  readonly mapped: SocketAddress | undefined
  /** The local socket's address. */
  readonly local: SocketAddress
  /** The lifetime granted by the last Allocate or Refresh, in seconds. */
  readonly lifetime: Effect.Effect<number>
  /** Installs (or confirms) permissions for the peers' IPs in one CreatePermission, and keeps them refreshed. */
  readonly permit: (peers: ReadonlyArray<SocketAddress>) => Effect.Effect<void, TurnError>
  /** Binds a channel to the peer (once; later calls return the same number) and keeps it refreshed. */
  readonly bindChannel: (peer: SocketAddress) => Effect.Effect<number, TurnError>
  /** Stops refreshing the peer's channel and the permission of its IP: the server lets them expire. */
  readonly drop: (peer: SocketAddress) => Effect.Effect<void>
  /**
   * Sends to a peer through the relay: ChannelData when a channel is bound to it, a Send indication otherwise. A
   * peer whose IP has no permission yet gets one first.
   */
  readonly send: (peer: SocketAddress, data: Uint8Array) => Effect.Effect<void, TurnError>
  /** Data from peers (Data indications and ChannelData); fails with the error that failed the allocation. */
  readonly data: Stream.Stream<PeerData, TurnError>
  /** Refreshes the allocation now (the timer is rescheduled from the answer). */
  readonly refresh: Effect.Effect<void, TurnError>
  /** Fails with the error that failed the allocation (a refresh that failed); never succeeds. */
  readonly failed: Effect.Effect<never, TurnError>
  /** The channel number bound to a peer, if any. */
  readonly channelOf: (peer: SocketAddress) => number | undefined
  /** The peer IPs whose permissions are being kept. */
  readonly permissions: () => ReadonlyArray<string>
}

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

const peerKey = (peer: SocketAddress) => TransportAddress.format(peer)

const plain = (address: SocketAddress): SocketAddress => ({
  family: address.family,
  ip: address.ip,
  port: address.port
})

const credentialsOf = (auth: Auth): Effect.Effect<TurnAuth.StaticCredentials> =>
  auth.mode === "static"
    ? Effect.succeed({ username: auth.username, password: auth.password })
    : Effect.map(
      Clock.currentTimeMillis,
      (now) => TurnAuth.restCredentials(auth.secret, auth.user, Math.floor(now / 1000), auth.ttlSeconds ?? 86400)
    )

interface Connection {
  readonly client: StunClient
  readonly local: SocketAddress
}

/**
 * Allocates a relayed address on a TURN server in the caller's `Scope`; closing the scope interrupts every timer
 * and releases the allocation (Refresh with LIFETIME 0, RFC 8656 §7.5).
 *
 * @since 0.1.0
 * @category constructors
 */
export const allocate = (
  options: AllocateOptions
): Effect.Effect<Allocation, TurnError, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const outer = yield* Effect.scope
    const original = plain(options.server)
    let server = original
    let serverText = TransportAddress.format(server)
    const transport = options.transport ?? "udp"
    const credentials = yield* credentialsOf(options.auth)
    const session = yield* StunTransaction.makeLongTermSession(credentials.username, credentials.password)
    const conflict = options.evenPort !== undefined && options.reservationToken !== undefined
      ? "EVEN-PORT and RESERVATION-TOKEN"
      : options.additionalFamily !== undefined && options.family !== undefined
      ? "REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY"
      : options.reservationToken !== undefined &&
          (options.family !== undefined || options.additionalFamily !== undefined)
      ? "RESERVATION-TOKEN and an address family"
      : undefined
    if (conflict !== undefined) {
      return yield* Effect.fail(new InvalidAllocateOptions({ reason: `${conflict} are mutually exclusive` }))
    }
    const clock = yield* Effect.clock
    /** When something was last sent to or received from each peer IP (for `permissionIdleTimeout`). */
    const lastUsed = new Map<string, number>()
    const touch = (ip: string) => void lastUsed.set(ip, clock.unsafeCurrentTimeMillis())

    // State shared by the receive handler (plain code) and the control plane.
    const channelPeers = new Map<number, SocketAddress>()
    const peerChannels = new Map<string, number>()
    const permitted = new Map<string, Deferred.Deferred<void, TurnError>>()
    const mailbox = yield* Mailbox.make<PeerData, TurnError>({ capacity: 4096, strategy: "dropping" })

    const fromServer = (from: SocketAddress) => from.port === server.port && from.ip === server.ip
    const onIndication = (message: DecodedStunMessage, from: SocketAddress) => {
      if (message.method !== StunMessage.StunMethod.Data || !fromServer(from)) return
      const peer = StunMessage.find(message, "XorPeerAddress")
      const data = StunMessage.find(message, "Data")
      if (peer === undefined || data === undefined) return
      touch(peer.address.ip)
      mailbox.unsafeOffer({ peer: plain(peer.address), data: data.value.slice() })
    }
    const onOther = (bytes: Uint8Array, from: SocketAddress) => {
      if (!TurnChannelData.isChannelData(bytes) || !fromServer(from)) return
      const decoded = TurnChannelData.decode(bytes)
      if (Either.isLeft(decoded)) return
      const peer = channelPeers.get(decoded.right.channel)
      if (peer === undefined) return
      touch(peer.ip)
      mailbox.unsafeOffer({ peer, data: decoded.right.data.slice() })
    }
    const handlers = { onIndication, onOther }

    const connect = (scope: Scope.Scope): Effect.Effect<Connection, Network.NetworkError> =>
      Scope.extend(
        transport === "udp"
          ? Effect.gen(function*() {
            const socket = yield* network.bindUdp({ family: server.family, address: options.localAddress })
            const client = yield* StunTransaction.makeUdp(socket, handlers)
            return { client, local: plain(socket.local) }
          })
          : Effect.gen(function*() {
            const from = options.localAddress === undefined ? {} : { localAddress: options.localAddress }
            const socket = yield* transport === "tls"
              ? network.connectTls(server, { ...options.tls, ...from })
              : network.connectTcp(server, from)
            const client = yield* StunTransaction.makeTcp(socket, handlers)
            return { client, local: plain(socket.local) }
          }),
        scope
      )

    const request = (client: StunClient, method: number, attributes: ReadonlyArray<StunAttribute.StunAttribute>) =>
      client.request(server, { method, attributes }, { credentials: session }).pipe(
        Effect.catchTag("StunErrorResponse", (e) => Effect.fail(fromErrorResponse(e)))
      )

    const lifetimeAttribute = options.lifetime === undefined ? [] : [StunAttribute.lifetime(options.lifetime)]
    const allocateAttributes = [
      StunAttribute.requestedTransport(17),
      ...(options.family === undefined ? [] : [StunAttribute.requestedAddressFamily(options.family)]),
      ...lifetimeAttribute,
      ...(options.additionalFamily === undefined
        ? []
        : [StunAttribute.additionalAddressFamily(options.additionalFamily)]),
      ...(options.evenPort === undefined ? [] : [StunAttribute.evenPort(options.evenPort.reserveNext)]),
      ...(options.reservationToken === undefined ? [] : [StunAttribute.reservationToken(options.reservationToken)]),
      ...(options.dontFragment === true ? [StunAttribute.dontFragment] : [])
    ]
    const alternateOf = (error: TurnError): SocketAddress | undefined =>
      error._tag === "StunErrorResponse" && error.code === 300
        ? StunMessage.find(error.response, "AlternateServer")?.address
        : undefined

    // Allocate, from a new local port after a 437 (RFC 8656 §7.3).
    let retries = options.mismatchRetries ?? 2
    let scope: Scope.CloseableScope
    let connection: Connection
    let response: StunTransaction.Response
    let redirected = false
    while (true) {
      scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
      const attempt = yield* Effect.either(
        Effect.flatMap(connect(scope), (c) =>
          Effect.map(request(c.client, StunMessage.StunMethod.Allocate, allocateAttributes), (r) =>
            [c, r] as const))
      )
      if (Either.isRight(attempt)) {
        connection = attempt.right[0]
        response = attempt.right[1]
        break
      }
      yield* Scope.close(scope, Exit.void)
      if (attempt.left._tag === "AllocationMismatch" && retries-- > 0) {
        yield* Effect.logDebug(`TURN Allocate to ${serverText}: 437, retrying from a new local port`)
        continue
      }
      // 300 Try Alternate (RFC 8489 §10): once, to the alternate, from a new socket, with the same credentials.
      const alternate = alternateOf(attempt.left)
      if (alternate !== undefined) {
        if (redirected) {
          return yield* Effect.fail(
            new TryAlternate({
              server: TransportAddress.format(original),
              alternate: serverText,
              next: TransportAddress.format(alternate)
            })
          )
        }
        redirected = true
        server = plain(alternate)
        serverText = TransportAddress.format(server)
        yield* Effect.logDebug(`TURN Allocate: 300 Try Alternate, trying ${serverText}`)
        continue
      }
      return yield* Effect.fail(attempt.left)
    }
    const client = connection.client
    const relayedAttribute = StunMessage.find(response.message, "XorRelayedAddress")
    if (relayedAttribute === undefined) {
      yield* Scope.close(scope, Exit.void)
      return yield* Effect.fail(
        new InvalidResponse({ server: serverText, request: "Allocate", reason: "no XOR-RELAYED-ADDRESS" })
      )
    }
    const relayed = plain(relayedAttribute.address)
    const relayedAddresses = response.message.attributes.flatMap((a) =>
      a._tag === "XorRelayedAddress" ? [plain(a.address)] : []
    )
    const addressErrorAttribute = StunMessage.find(response.message, "AddressErrorCode")
    const addressError = addressErrorAttribute === undefined ? undefined : {
      family: addressErrorAttribute.family,
      code: addressErrorAttribute.code,
      reason: addressErrorAttribute.reason
    }
    if (addressError !== undefined) {
      yield* Effect.logWarning(
        `TURN Allocate on ${serverText}: no ${addressError.family} relayed address (${addressError.code} ${addressError.reason})`
      )
    }
    const tokenAttribute = StunMessage.find(response.message, "ReservationToken")
    const mappedAttribute = StunMessage.find(response.message, "XorMappedAddress")
    const lifetime = yield* Ref.make(StunMessage.find(response.message, "Lifetime")?.seconds ?? 600)
    const failure = yield* Deferred.make<never, TurnError>()
    let closed = false
    let failedWith: TurnError | undefined
    /** Peer IPs whose permission the server has confirmed (the send path's check). */
    const confirmed = new Set<string>()

    // Release: runs after the timers below are interrupted (finalizers run in reverse order), before the socket
    // closes. Skipped when the allocation already failed: there is nothing left to release.
    yield* Scope.addFinalizer(
      scope,
      Effect.suspend(() => {
        closed = true
        return Effect.zipRight(
          mailbox.end,
          Effect.flatMap(Deferred.isDone(failure), (failed) =>
            failed ? Effect.void : request(client, StunMessage.StunMethod.Refresh, [StunAttribute.lifetime(0)]).pipe(
              Effect.tapError((e) =>
                Effect.logWarning(`TURN release on ${serverText} failed: ${e.message}`)
              ),
              Effect.ignore
            ))
        )
      })
    )
    const refreshHandle = yield* Scope.extend(FiberHandle.make<void, never>(), scope)
    const permissionFibers = yield* Scope.extend(FiberMap.make<string, void, never>(), scope)
    const channelFibers = yield* Scope.extend(FiberMap.make<string, void, never>(), scope)

    const fail = (error: TurnError) =>
      Effect.gen(function*() {
        if (!(yield* Deferred.fail(failure, error))) {
          return
        }
        failedWith = error
        confirmed.clear()
        yield* Effect.logWarning(`TURN allocation ${TransportAddress.format(relayed)} failed: ${error.message}`)
        yield* mailbox.fail(error)
        permitted.clear()
        yield* FiberMap.clear(permissionFibers)
        yield* FiberMap.clear(channelFibers)
      })

    /** From a permission or channel timer: fail in the refresh handle, since failing clears the timers' maps. */
    const failFromTimer = (error: TurnError) =>
      Effect.asVoid(FiberHandle.run(refreshHandle, fail(error)))

    const alive = Effect.suspend(() =>
      closed ? Effect.fail(new AllocationClosed({ server: serverText })) : Effect.void
    )
      .pipe(Effect.zipRight(Effect.flatMap(
        Deferred.poll(failure),
        Option.match({
          onNone: () => Effect.void,
          onSome: (exit) => exit
        })
      )))

    // Refresh (RFC 8656 §7.5): a minute before the lifetime ends, again after every answer.
    const doRefresh = Effect.gen(function*() {
      const answer = yield* request(client, StunMessage.StunMethod.Refresh, lifetimeAttribute)
      const granted = StunMessage.find(answer.message, "Lifetime")?.seconds
      if (granted !== undefined) yield* Ref.set(lifetime, granted)
    })
    const refreshLoop: Effect.Effect<void> = Effect.gen(function*() {
      while (true) {
        const seconds = yield* Ref.get(lifetime)
        yield* Effect.sleep(`${refreshDelaySeconds(seconds) * 1000} millis`)
        const result = yield* Effect.either(doRefresh)
        if (Either.isLeft(result)) return yield* fail(result.left)
      }
    })
    yield* FiberHandle.run(refreshHandle, refreshLoop)

    // Permissions (RFC 8656 §9): a refresh timer per peer IP; one idle past `permissionIdleTimeout` is let go.
    const idleMillis = options.permissionIdleTimeout === undefined
      ? undefined
      : Duration.toMillis(Duration.decode(options.permissionIdleTimeout))
    const permissionLoop = (peer: SocketAddress): Effect.Effect<void> =>
      Effect.gen(function*() {
        const interval = yield* PermissionRefreshInterval
        while (true) {
          yield* Effect.sleep(interval)
          if (idleMillis !== undefined && clock.unsafeCurrentTimeMillis() - (lastUsed.get(peer.ip) ?? 0) > idleMillis) {
            yield* Effect.logDebug(`TURN permission for ${peer.ip} idle, not refreshed`)
            permitted.delete(peer.ip)
            confirmed.delete(peer.ip)
            lastUsed.delete(peer.ip)
            return
          }
          const result = yield* Effect.either(
            request(client, StunMessage.StunMethod.CreatePermission, [StunAttribute.xorPeerAddress(peer)])
          )
          if (Either.isLeft(result)) {
            if (result.left._tag === "AllocationMismatch") return yield* failFromTimer(result.left)
            yield* Effect.logWarning(`TURN permission for ${peer.ip} not refreshed: ${result.left.message}`)
            permitted.delete(peer.ip)
            confirmed.delete(peer.ip)
            return
          }
        }
      })

    const permit = (peers: ReadonlyArray<SocketAddress>): Effect.Effect<void, TurnError> =>
      Effect.gen(function*() {
        yield* alive
        const fresh: Array<SocketAddress> = []
        const waits: Array<Deferred.Deferred<void, TurnError>> = []
        for (const peer of peers) {
          const existing = permitted.get(peer.ip)
          if (existing !== undefined) {
            waits.push(existing)
          } else if (!fresh.some((p) => p.ip === peer.ip)) {
            fresh.push(plain(peer))
            const deferred = Deferred.unsafeMake<void, TurnError>(yield* Effect.fiberId)
            permitted.set(peer.ip, deferred)
            waits.push(deferred)
          }
        }
        if (fresh.length > 0) {
          const result = yield* Effect.exit(request(
            client,
            StunMessage.StunMethod.CreatePermission,
            fresh.map((peer) => StunAttribute.xorPeerAddress(peer))
          ))
          for (const peer of fresh) {
            const deferred = permitted.get(peer.ip)
            if (deferred === undefined) continue
            if (Exit.isSuccess(result)) {
              confirmed.add(peer.ip)
              touch(peer.ip)
              yield* FiberMap.run(permissionFibers, peer.ip, permissionLoop(peer))
            } else {
              permitted.delete(peer.ip)
            }
            yield* Deferred.done(deferred, Exit.asVoid(result))
          }
        }
        yield* Effect.forEach(waits, Deferred.await, { discard: true })
      })

    // Channels (RFC 8656 §12): a refresh timer per bound peer.
    let nextChannel = TurnChannelData.minChannelNumber
    const pendingChannels = new Map<string, Deferred.Deferred<number, TurnError>>()
    const channelBind = (channel: number, peer: SocketAddress) =>
      request(client, StunMessage.StunMethod.ChannelBind, [
        StunAttribute.channelNumber(channel),
        StunAttribute.xorPeerAddress(peer)
      ])
    const channelLoop = (channel: number, peer: SocketAddress): Effect.Effect<void> =>
      Effect.gen(function*() {
        const interval = yield* ChannelRefreshInterval
        while (true) {
          yield* Effect.sleep(interval)
          const result = yield* Effect.either(channelBind(channel, peer))
          if (Either.isLeft(result)) {
            if (result.left._tag === "AllocationMismatch") return yield* failFromTimer(result.left)
            yield* Effect.logWarning(
              `TURN channel ${channel} for ${peerKey(peer)} not refreshed: ${result.left.message}`
            )
            channelPeers.delete(channel)
            peerChannels.delete(peerKey(peer))
            return
          }
        }
      })

    const bindChannel = (target: SocketAddress): Effect.Effect<number, TurnError> =>
      Effect.gen(function*() {
        yield* alive
        const peer = plain(target)
        const key = peerKey(peer)
        const bound = peerChannels.get(key)
        if (bound !== undefined) return bound
        const pending = pendingChannels.get(key)
        if (pending !== undefined) return yield* Deferred.await(pending)
        let channel = nextChannel
        while (channelPeers.has(channel)) {
          channel = channel === TurnChannelData.maxChannelNumber ? TurnChannelData.minChannelNumber : channel + 1
        }
        nextChannel = channel === TurnChannelData.maxChannelNumber ? TurnChannelData.minChannelNumber : channel + 1
        const deferred = Deferred.unsafeMake<number, TurnError>(yield* Effect.fiberId)
        pendingChannels.set(key, deferred)
        const result = yield* Effect.exit(channelBind(channel, peer))
        pendingChannels.delete(key)
        if (Exit.isSuccess(result)) {
          channelPeers.set(channel, peer)
          peerChannels.set(key, channel)
          yield* FiberMap.run(channelFibers, key, channelLoop(channel, peer))
          // ChannelBind installed the permission too (RFC 8656 §12.2); keep it alive with the others.
          if (!permitted.has(peer.ip)) {
            const permission = Deferred.unsafeMake<void, TurnError>(yield* Effect.fiberId)
            Deferred.unsafeDone(permission, Exit.void)
            permitted.set(peer.ip, permission)
            confirmed.add(peer.ip)
            touch(peer.ip)
            yield* FiberMap.run(permissionFibers, peer.ip, permissionLoop(peer))
          }
        }
        const exit = Exit.as(result, channel)
        yield* Deferred.done(deferred, exit)
        return yield* exit
      })

    const drop = (target: SocketAddress): Effect.Effect<void> =>
      Effect.gen(function*() {
        const key = peerKey(target)
        const channel = peerChannels.get(key)
        if (channel !== undefined) {
          peerChannels.delete(key)
          channelPeers.delete(channel)
          yield* FiberMap.remove(channelFibers, key)
        }
        permitted.delete(target.ip)
        confirmed.delete(target.ip)
        lastUsed.delete(target.ip)
        yield* FiberMap.remove(permissionFibers, target.ip)
      })

    const padded = transport !== "udp"
    const sendNow = (peer: SocketAddress, data: Uint8Array): Effect.Effect<void, TurnError> => {
      if (closed) return Effect.fail(new AllocationClosed({ server: serverText }))
      if (failedWith !== undefined) return Effect.fail(failedWith)
      touch(peer.ip)
      const channel = peerChannels.get(peerKey(peer))
      if (channel !== undefined) {
        return client.send(server, TurnChannelData.encode(channel, data, { padded }))
      }
      const indication = client.indication(server, {
        method: StunMessage.StunMethod.Send,
        attributes: [StunAttribute.xorPeerAddress(peer), StunAttribute.data(data)]
      })
      if (confirmed.has(peer.ip)) return indication
      return Effect.zipRight(permit([peer]), indication)
    }

    const send = (peer: SocketAddress, data: Uint8Array): Effect.Effect<void, TurnError> =>
      Effect.suspend(() => sendNow(peer, data))

    const allocation: Allocation = {
      server,
      transport,
      relayed,
      relayedAddresses,
      addressError,
      reservationToken: tokenAttribute?.value.slice(),
      mapped: mappedAttribute === undefined ? undefined : plain(mappedAttribute.address),
      local: connection.local,
      lifetime: Ref.get(lifetime),
      permit,
      bindChannel,
      drop,
      send,
      data: Mailbox.toStream(mailbox),
      refresh: Effect.zipRight(
        alive,
        Effect.tapError(doRefresh, fail).pipe(Effect.zipRight(FiberHandle.run(refreshHandle, refreshLoop)))
      ),
      failed: Deferred.await(failure),
      channelOf: (peer) => peerChannels.get(peerKey(peer)),
      permissions: () => Array.from(permitted.keys())
    }
    yield* Effect.logDebug(
      `TURN allocation ${TransportAddress.format(relayed)} on ${serverText} (${transport}), lifetime ${yield* Ref.get(
        lifetime
      )} s`
    )
    return allocation
  }).pipe(Effect.withSpan("TurnClient.allocate", { captureStackTrace: false }))
