/**
 * ICE candidate gathering (RFC 8445 §5.1.1): host candidates on every interface address, server-reflexive
 * candidates from STUN servers and relayed candidates from TURN servers, as a `Stream` that ends with the
 * end-of-candidates indication (RFC 8838 §8.2), and the gathering state (`new`, `gathering`, `complete`, as
 * `RTCIceGatheringState` names them) as a `SubscriptionRef`.
 *
 * - Host candidates (§5.1.1.1): one UDP socket per interface address, IPv4 and IPv6, bound on that address (so
 *   its transport address is known) within `portRange` when given. Loopback addresses are left out unless
 *   `includeLoopback` is set, IPv6 link-local addresses always (§5.1.1.1 allows leaving them out; they are useless
 *   across links).
 * - Server-reflexive candidates (§5.1.1.2): a STUN Binding request (RFC 8489) to every STUN server of the socket's
 *   family, sent from the host candidate's own socket, so the NAT mapping the server sees is the one the agent's
 *   checks use. A mapped address equal to the host address (no NAT) gives no candidate (§5.1.3 would drop it).
 * - Relayed candidates (§5.1.1.2, RFC 8656): an allocation per TURN server (`TurnClient.allocate`) over UDP, TCP or
 *   TLS to the server; the relayed candidate's related address is the server-reflexive address the server saw.
 *   The allocation lives in the gatherer's scope: closing it releases the allocation (Refresh with LIFETIME 0).
 * - Servers come as addresses, or from WebRTC's `iceServers` and `iceTransportPolicy` ({@link fromIceServers}, RFC 7064
 *   and RFC 7065 URIs).
 * - ICE-TCP host candidates (RFC 6544 §5.1, `transports: ["udp", "tcp"]`, default UDP only): per interface address a
 *   passive candidate (a listening socket) and an active one (port 9, as browsers write it, connecting out per
 *   check); no server-reflexive or simultaneous-open TCP candidates. Priority (§4.2): the RFC's local preference
 *   formula `2^13 × direction-pref + other-pref` with its recommended direction preferences for host candidates
 *   (active 6, passive 4, so 2) and other-pref 8191 − 256 × interface index; type preference 90 ({@link
 *   tcpHostTypePreference}), so TCP pairs rank below UDP pairs (§4.2 recommends preferring UDP). Each TCP base
 *   frames STUN and data with RFC 4571 ({@link tcpBase}).
 * - Host bases made elsewhere (`hostBases`, as `IceUdpMux` gives) replace binding host sockets.
 * - Priorities and foundations come from `IceCandidate.priority`/`IceCandidate.foundation` (§5.1.2, §5.1.1.3),
 *   with a local preference that orders interfaces as the host lists them (IPv6 first, RFC 8421 style).
 *
 * Every host socket and every relayed address is a {@link Base}: the one place the agent sends checks and data from
 * and receives them on (§5.1.1.4 "base"). A base has one `StunTransaction` client, shared by the gatherer (its
 * Binding to the STUN server) and the agent (its connectivity checks), whose requests, indications and non-STUN
 * packets go to the handlers the agent installs with {@link Base.route}. A relayed base is a small adapter that
 * looks like a datagram socket: sending goes through the allocation (a ChannelBind per remote peer is made by
 * {@link Base.prepare} before the first check, RFC 8656 §12), and what the allocation's data `Stream` yields is fed
 * to the base's reader chunk by chunk, in plain code.
 *
 * @since 0.1.0
 */
import { Effect, Either, FiberSet, Option, Scope, Stream, SubscriptionRef } from "effect"
import * as IceCandidate from "./IceCandidate.js"
import type * as IceChecklist from "./IceChecklist.js"
import * as IceServer from "./IceServer.js"
import * as Network from "./Network.js"
import * as StreamFraming from "./StreamFraming.js"
import * as StunMessage from "./StunMessage.js"
import * as StunTransaction from "./StunTransaction.js"
import type { Family, SocketAddress } from "./TransportAddress.js"
import * as TransportAddress from "./TransportAddress.js"
import * as TurnClient from "./TurnClient.js"

// ---------------------------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------------------------

/**
 * The gathering state, named as `RTCIceGatheringState`.
 *
 * @since 0.1.0
 * @category models
 */
export type GatheringState = "new" | "gathering" | "complete"

/**
 * A TURN server to allocate a relayed candidate on.
 *
 * @since 0.1.0
 * @category models
 */
export interface TurnServerConfig {
  readonly server: SocketAddress
  /** The transport to the server (default `udp`); the relayed transport is UDP. */
  readonly transport?: "udp" | "tcp" | "tls" | undefined
  readonly auth: TurnClient.Auth
  /** REQUESTED-ADDRESS-FAMILY of the relayed address (default the server's default, IPv4). */
  readonly family?: Family | undefined
  /** How to verify the server over TLS. */
  readonly tls?: Network.TlsConnectOptions | undefined
}

/**
 * What to gather.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** STUN servers for server-reflexive candidates. */
  readonly stunServers?: ReadonlyArray<SocketAddress> | undefined
  /** TURN servers for relayed candidates. */
  readonly turnServers?: ReadonlyArray<TurnServerConfig> | undefined
  /** Also gather on loopback interfaces (default false). */
  readonly includeLoopback?: boolean | undefined
  /** Keeps only the interface addresses this accepts (after the loopback and family rules). */
  readonly interfaceFilter?: ((networkInterface: Network.NetworkInterface) => boolean) | undefined
  /** Address families to gather host candidates of (default both). */
  readonly families?: ReadonlyArray<Family> | undefined
  /** Host candidates' ports are taken from this range (inclusive). */
  readonly portRange?: readonly [number, number] | undefined
  /** Gather host (and server-reflexive) candidates (default true); `false` gathers relayed candidates only. */
  readonly host?: boolean | undefined
  /** The component (default 1). */
  readonly component?: number | undefined
  /**
   * Host bases made elsewhere (a shared socket, `IceUdpMux`): when given, no host socket is bound and these are the
   * host candidates, in this order of preference (server-reflexive candidates are learnt on them as usual).
   */
  readonly hostBases?: ReadonlyArray<Base> | undefined
  /**
   * The transports of host candidates (default `["udp"]`). With `"tcp"`, each interface address also gets ICE-TCP
   * host candidates (RFC 6544): a passive one (a listening socket) and an active one (port 9, connecting out).
   */
  readonly transports?: ReadonlyArray<"udp" | "tcp"> | undefined
}

/**
 * A base (RFC 8445 §5.1.1.4): the transport address checks and data are sent from and received on, a host
 * socket or a TURN allocation's relayed address, with the STUN client that owns its reader.
 *
 * @since 0.1.0
 * @category models
 */
export interface Base {
  /**
   * The base's identity (`IceChecklist.LocalCandidate.baseKey`): `udp|<ip>|<port>`, `relay|<ip>|<port>` or
   * `tcp|<ip>|<port>|<tcptype>`.
   */
  readonly key: string
  readonly type: "host" | "relay"
  /** The transport of the base's candidates (`tcp` for an ICE-TCP base, RFC 6544). */
  readonly transport?: "udp" | "tcp" | undefined
  /** The ICE-TCP candidate kind of a TCP base. */
  readonly tcpType?: IceCandidate.TcpType | undefined
  /** The host socket's address, or the relayed address. */
  readonly address: SocketAddress
  /** The STUN transaction client on this base (the gatherer's Binding and the agent's checks share it). */
  readonly client: StunTransaction.StunClient
  /** Sends one datagram from the base (through the relay for a relayed base). */
  readonly send: (data: Uint8Array, to: SocketAddress) => Effect.Effect<void, Network.NetworkError>
  /** The hot-path send: returns at once, failures are not reported. */
  readonly unsafeSend: (data: Uint8Array, to: SocketAddress) => void
  /**
   * Gets the base ready to talk to a peer: nothing for a host base; a channel binding (and so a permission) on
   * the TURN server for a relayed base (RFC 8656 §12).
   */
  readonly prepare: (peer: SocketAddress) => Effect.Effect<void, TurnClient.TurnError>
  /** Installs the handlers for requests, indications and non-STUN packets arriving on the base (replacing any). */
  readonly route: (handlers: StunTransaction.Handlers) => void
  /** The allocation behind a relayed base. */
  readonly allocation: TurnClient.Allocation | undefined
}

/**
 * A gathered candidate: what the checklist sees, and the base it is sent from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Gathered {
  readonly local: IceChecklist.LocalCandidate
  readonly base: Base
}

/**
 * Why a server gave no candidate (gathering goes on without it).
 *
 * @since 0.1.0
 * @category models
 */
export interface GatherFailure {
  readonly server: string
  readonly kind: "stun" | "turn" | "host"
  readonly reason: string
}

/**
 * A running gatherer.
 *
 * @since 0.1.0
 * @category models
 */
export interface Gatherer {
  /** Every candidate, from the first (replayed to late subscribers) to end-of-candidates, where the stream ends. */
  readonly candidates: Stream.Stream<Gathered>
  /** The gathering state. */
  readonly state: SubscriptionRef.SubscriptionRef<GatheringState>
  /** The candidates gathered so far. */
  readonly gathered: Effect.Effect<ReadonlyArray<Gathered>>
  /** Completes when gathering is complete. */
  readonly complete: Effect.Effect<void>
  /** The servers that gave no candidate, and why. */
  readonly failures: Effect.Effect<ReadonlyArray<GatherFailure>>
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/**
 * The key of a host base (`udp|<ip>|<port>`), as `IceCandidate.key` writes a UDP candidate.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hostBaseKey = (address: SocketAddress): string => `udp|${address.ip}|${address.port}`

/**
 * The key of a relayed base (`relay|<ip>|<port>`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const relayBaseKey = (address: SocketAddress): string => `relay|${address.ip}|${address.port}`

const plain = (a: SocketAddress): SocketAddress => ({ family: a.family, ip: a.ip, port: a.port })

const isLinkLocal = (ip: string) => /^fe[89ab][0-9a-f]:/i.test(ip)

interface Router {
  handlers: StunTransaction.Handlers
}

const routed = (router: Router): StunTransaction.Handlers => ({
  onRequest: (message, from) => router.handlers.onRequest?.(message, from),
  onIndication: (message, from) => router.handlers.onIndication?.(message, from),
  onOther: (data, from) => router.handlers.onOther?.(data, from)
})

/**
 * A host base on a bound socket.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hostBase = (socket: Network.DatagramSocket): Effect.Effect<Base> =>
  Effect.gen(function*() {
    const router: Router = { handlers: {} }
    const client = yield* StunTransaction.makeUdp(socket, routed(router))
    const address = plain(socket.local)
    return {
      key: hostBaseKey(address),
      type: "host",
      address,
      client,
      send: (data, to) => socket.send(data, to),
      unsafeSend: (data, to) => socket.unsafeSend(data, to),
      prepare: () => Effect.void,
      route: (handlers) => {
        router.handlers = handlers
      },
      allocation: undefined
    }
  })

/**
 * The key of an ICE-TCP host base (`tcp|<ip>|<port>|<tcptype>`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const tcpBaseKey = (address: SocketAddress, tcpType: IceCandidate.TcpType): string =>
  `tcp|${address.ip}|${address.port}|${tcpType}`

/**
 * The type preference of an ICE-TCP host candidate: 90, below UDP's host (126), peer-reflexive (110) and
 * server-reflexive (100), so every TCP pair ranks below a UDP pair of the same kinds (RFC 6544 §4.2 recommends
 * preferring UDP and leaves the value to the agent; 90 is what browsers use).
 *
 * @since 0.1.0
 * @category constants
 */
export const tcpHostTypePreference = 90

/**
 * The RFC 6544 §4.2 local preference of an ICE-TCP candidate: `2^13 × direction-pref + other-pref`, with the
 * direction preferences the RFC recommends for a directly reachable (host) candidate: active 6, passive 4, so 2
 * (other-pref 0–8191 orders interfaces).
 *
 * @since 0.1.0
 * @category constructors
 */
export const tcpLocalPreference = (tcpType: IceCandidate.TcpType, otherPref: number): number =>
  (tcpType === "active" ? 6 : tcpType === "passive" ? 4 : 2) * 0x2000 + Math.max(0, Math.min(8191, otherPref))

/**
 * An ICE-TCP host base (RFC 6544): the connections of one local TCP candidate, each framed with RFC 4571 (a 2-byte
 * length before every STUN message or data packet), seen as one datagram socket keyed by the peer's address.
 * An active base opens a connection on {@link Base.prepare} (the first check to a passive peer); a passive base
 * accepts them (`accept`, from the listener) and cannot open one, so `prepare` fails until the peer has connected.
 * STUN over it runs with the UDP client (a retransmission on a reliable stream is a duplicate the peer answers
 * again).
 *
 * @since 0.1.0
 * @category constructors
 */
export const tcpBase = (
  address: SocketAddress,
  tcpType: IceCandidate.TcpType
): Effect.Effect<
  Base & { readonly accept: (socket: Network.StreamSocket) => Effect.Effect<void> },
  never,
  Network.Network | Scope.Scope
> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const scope = yield* Effect.scope
    const connections = new Map<string, Network.StreamSocket>()
    let reader: Network.DatagramHandler | undefined
    let failures = 0
    const keyOf = (a: SocketAddress) => `${a.ip}|${a.port}`
    const noConnection = (to: SocketAddress) =>
      new Network.NetworkError({ reason: "Closed", operation: "send", address: TransportAddress.format(to) })

    /**
     * Registers a connection at once (so a send to its peer finds it), and returns the effect that serves it until
     * it ends: RFC 4571 deframing into the base's reader.
     */
    const attach = (socket: Network.StreamSocket): Effect.Effect<void> => {
      const from = plain(socket.remote)
      const key = keyOf(from)
      connections.set(key, socket)
      return Effect.gen(function*() {
        const deframer = StreamFraming.makeRfc4571Deframer()
        let effects: Array<Effect.Effect<void>> | undefined
        const onFrame = (frame: Uint8Array) => {
          const effect = reader?.(frame, from)
          if (effect !== undefined) (effects ??= []).push(effect)
        }
        yield* socket.setHandler((chunk) => {
          effects = undefined
          if (Either.isLeft(deframer.push(chunk, onFrame))) return socket.close
          const pending = effects as Array<Effect.Effect<void>> | undefined
          return pending === undefined ? undefined : Effect.forEach(pending, (e) => e, { discard: true })
        })
        yield* Effect.ignore(socket.closed)
        if (connections.get(key) === socket) connections.delete(key)
      })
    }

    const send = (data: Uint8Array, to: SocketAddress): Effect.Effect<void, Network.NetworkError> =>
      Effect.suspend(() => {
        const socket = connections.get(keyOf(to))
        return socket === undefined ? Effect.fail(noConnection(to)) : socket.write(StreamFraming.frameRfc4571(data))
      })
    const socket: Network.DatagramSocket = {
      local: { ...address, transport: "tcp" },
      send,
      unsafeSend: (data, to) => {
        const connection = connections.get(keyOf(to))
        if (connection === undefined) failures++
        else connection.unsafeWrite(StreamFraming.frameRfc4571(data))
      },
      setHandler: (handler) =>
        Effect.sync(() => {
          reader = handler
        }),
      sendFailures: () => failures
    }
    const router: Router = { handlers: {} }
    const client = yield* StunTransaction.makeUdp(socket, routed(router))
    const prepare = (peer: SocketAddress): Effect.Effect<void, TurnClient.TurnError> =>
      Effect.suspend(() => {
        if (connections.has(keyOf(peer))) return Effect.void
        if (tcpType === "passive") return Effect.fail(noConnection(peer))
        return Effect.gen(function*() {
          const connection = yield* Scope.extend(
            network.connectTcp(peer, { localAddress: address.ip }),
            scope
          )
          yield* Effect.forkIn(attach(connection), scope)
        })
      })
    return {
      key: tcpBaseKey(address, tcpType),
      type: "host",
      transport: "tcp",
      tcpType,
      address,
      client,
      send,
      unsafeSend: socket.unsafeSend,
      prepare,
      route: (handlers) => {
        router.handlers = handlers
      },
      allocation: undefined,
      accept: attach
    }
  })

const relayError = (allocation: TurnClient.Allocation, error: TurnClient.TurnError): Network.NetworkError =>
  error._tag === "NetworkError" ? error : new Network.NetworkError({
    reason: "SendFailed",
    operation: "send",
    address: TransportAddress.format(allocation.server),
    cause: error
  })

/**
 * A relayed base over an allocation: a datagram-socket adapter whose sends go through the relay and whose reader
 * is fed from the allocation's data stream (in a fiber of the caller's scope, one pass per chunk).
 *
 * @since 0.1.0
 * @category constructors
 */
export const relayBase = (allocation: TurnClient.Allocation): Effect.Effect<Base, never, Scope.Scope> =>
  Effect.gen(function*() {
    const fibers = yield* FiberSet.make()
    const run = yield* FiberSet.runtime(fibers)<never>()
    const address = plain(allocation.relayed)
    let failures = 0
    let reader: Network.DatagramHandler | undefined
    const send = (data: Uint8Array, to: SocketAddress) =>
      Effect.mapError(allocation.send(to, data), (e) => relayError(allocation, e))
    const socket: Network.DatagramSocket = {
      local: { ...address, transport: "udp" },
      send,
      unsafeSend: (data, to) => {
        run(Effect.catchAll(send(data, to), () => Effect.sync(() => failures++)))
      },
      setHandler: (handler) =>
        Effect.sync(() => {
          reader = handler
        }),
      sendFailures: () => failures
    }
    const router: Router = { handlers: {} }
    const client = yield* StunTransaction.makeUdp(socket, routed(router))
    yield* Effect.forkScoped(
      Stream.runForEachChunk(allocation.data, (chunk) => {
        let effects: Array<Effect.Effect<void>> | undefined
        for (const { data, peer } of chunk) {
          const effect = reader?.(data, peer)
          if (effect !== undefined) (effects ??= []).push(effect)
        }
        return effects === undefined ? Effect.void : Effect.all(effects, { discard: true })
      }).pipe(Effect.ignore)
    )
    return {
      key: relayBaseKey(address),
      type: "relay",
      address,
      client,
      send,
      unsafeSend: socket.unsafeSend,
      prepare: (peer) => Effect.asVoid(allocation.bindChannel(peer)),
      route: (handlers) => {
        router.handlers = handlers
      },
      allocation
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// Gathering
// ---------------------------------------------------------------------------------------------------------------

interface Log {
  readonly items: ReadonlyArray<Gathered>
  readonly complete: boolean
}

/**
 * Starts gathering in the caller's scope and returns at once; candidates arrive on {@link Gatherer.candidates}.
 * Closing the scope closes every socket and releases every allocation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Gatherer, never, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const component = options.component ?? 1
    const families = options.families ?? ["IPv4", "IPv6"]
    const state = yield* SubscriptionRef.make<GatheringState>("new")
    const log = yield* SubscriptionRef.make<Log>({ items: [], complete: false })
    const failures: Array<GatherFailure> = []
    const emit = (item: Gathered) => SubscriptionRef.update(log, (l) => ({ ...l, items: [...l.items, item] }))

    const gatherRelay = (turn: TurnServerConfig, index: number) =>
      Effect.gen(function*() {
        const allocation = yield* TurnClient.allocate({
          server: turn.server,
          transport: turn.transport,
          auth: turn.auth,
          family: turn.family,
          tls: turn.tls
        })
        const base = yield* relayBase(allocation)
        const related = allocation.mapped ?? allocation.local
        const candidate = IceCandidate.make({
          type: "relay",
          address: base.address.ip,
          port: base.address.port,
          component,
          baseAddress: base.address.ip,
          serverAddress: TransportAddress.format(turn.server),
          localPreference: 65535 - index,
          relatedAddress: related.ip,
          relatedPort: related.port
        })
        yield* emit({ local: { candidate, baseKey: base.key, base: candidate }, base })
      }).pipe(
        Effect.catchAll((error) =>
          Effect.gen(function*() {
            const server = `${turn.transport ?? "udp"}:${TransportAddress.format(turn.server)}`
            failures.push({ server, kind: "turn", reason: error.message })
            yield* Effect.logWarning(`ICE gathering: no relayed candidate from ${server}: ${error.message}`)
          })
        )
      )

    const gatherReflexive = (host: Gathered & { readonly localPreference: number }, server: SocketAddress) =>
      Effect.gen(function*() {
        const response = yield* host.base.client.request(server, { method: StunMessage.StunMethod.Binding })
        const mapped = StunMessage.find(response.message, "XorMappedAddress")?.address
        if (mapped === undefined || TransportAddress.equals(mapped, host.base.address)) return
        const current = yield* SubscriptionRef.get(log)
        const duplicate = current.items.some((g) =>
          g.local.candidate.type === "srflx" && g.base.key === host.base.key &&
          g.local.candidate.address === mapped.ip && g.local.candidate.port === mapped.port
        )
        if (duplicate) return
        const candidate = IceCandidate.make({
          type: "srflx",
          address: mapped.ip,
          port: mapped.port,
          component,
          baseAddress: host.base.address.ip,
          serverAddress: TransportAddress.format(server),
          localPreference: host.localPreference,
          relatedAddress: host.base.address.ip,
          relatedPort: host.base.address.port
        })
        yield* emit({ local: { candidate, baseKey: host.base.key, base: host.local.candidate }, base: host.base })
      }).pipe(
        Effect.catchAll((error) =>
          Effect.gen(function*() {
            const text = TransportAddress.format(server)
            failures.push({ server: text, kind: "stun", reason: error.message })
            yield* Effect.logDebug(`ICE gathering: no server-reflexive candidate from ${text}: ${error.message}`)
          })
        )
      )

    const tcpCandidate = (base: Base, tcpType: IceCandidate.TcpType, otherPref: number) => {
      const candidate = IceCandidate.make({
        type: "host",
        transport: "tcp",
        tcpType,
        address: base.address.ip,
        port: base.address.port,
        component,
        priority: IceCandidate.priority({
          type: "host",
          typePreference: tcpHostTypePreference,
          localPreference: tcpLocalPreference(tcpType, otherPref),
          component
        })
      })
      return emit({ local: { candidate, baseKey: base.key, base: candidate }, base })
    }

    /** RFC 6544 §5.1: a passive candidate (listening) and an active one (port 9) on the interface address. */
    const gatherTcp = (networkInterface: Network.NetworkInterface, otherPref: number) =>
      Effect.gen(function*() {
        const address = networkInterface.address
        let accept: ((socket: Network.StreamSocket) => Effect.Effect<void>) | undefined
        const listener = yield* Effect.either(network.listenTcp(
          { address, family: networkInterface.family, portRange: options.portRange },
          (socket) => accept?.(socket) ?? Effect.void
        ))
        if (Either.isLeft(listener)) {
          failures.push({ server: `tcp:${address}`, kind: "host", reason: listener.left.message })
          yield* Effect.logWarning(`ICE gathering: cannot listen on ${address}: ${listener.left.message}`)
        } else {
          const passive = yield* tcpBase(
            { family: networkInterface.family, ip: address, port: listener.right.local.port },
            "passive"
          )
          accept = passive.accept
          yield* tcpCandidate(passive, "passive", otherPref)
        }
        const active = yield* tcpBase({ family: networkInterface.family, ip: address, port: 9 }, "active")
        yield* tcpCandidate(active, "active", otherPref)
      })

    const gather = Effect.gen(function*() {
      yield* SubscriptionRef.set(state, "gathering")
      const hosts: Array<Gathered & { readonly localPreference: number }> = []
      const hostCandidate = (base: Base, localPreference: number) =>
        Effect.gen(function*() {
          const candidate = IceCandidate.make({
            type: "host",
            address: base.address.ip,
            port: base.address.port,
            component,
            localPreference
          })
          const gathered = { local: { candidate, baseKey: base.key, base: candidate }, base, localPreference }
          hosts.push(gathered)
          yield* emit({ local: gathered.local, base })
        })
      if (options.hostBases !== undefined) {
        if (options.host ?? true) {
          for (let index = 0; index < options.hostBases.length; index++) {
            yield* hostCandidate(options.hostBases[index]!, 65535 - 256 * index)
          }
        }
      } else if (options.host ?? true) {
        const interfaces = yield* Effect.orElseSucceed(network.interfaces, () => [])
        const usable = interfaces
          .filter((i) => families.includes(i.family))
          .filter((i) => (options.includeLoopback ?? false) || !i.internal)
          .filter((i) => !(i.family === "IPv6" && isLinkLocal(i.address)))
          .filter((i) => options.interfaceFilter?.(i) ?? true)
        // IPv6 before IPv4 (RFC 8421 §4 prefers IPv6 host candidates), then in the host's order.
        const ordered = [...usable.filter((i) => i.family === "IPv6"), ...usable.filter((i) => i.family === "IPv4")]
        let index = 0
        const transports = options.transports ?? ["udp"]
        let tcpIndex = 0
        for (const networkInterface of ordered) {
          if (transports.includes("udp")) {
            const bound = yield* Effect.either(network.bindUdp({
              address: networkInterface.address,
              family: networkInterface.family,
              portRange: options.portRange
            }))
            if (Either.isLeft(bound)) {
              failures.push({ server: networkInterface.address, kind: "host", reason: bound.left.message })
              yield* Effect.logWarning(
                `ICE gathering: cannot bind on ${networkInterface.address}: ${bound.left.message}`
              )
            } else {
              yield* hostCandidate(yield* hostBase(bound.right), 65535 - 256 * index++)
            }
          }
          if (transports.includes("tcp")) yield* gatherTcp(networkInterface, 8191 - 256 * tcpIndex++)
        }
      }
      const reflexive = hosts.flatMap((host) =>
        (options.stunServers ?? [])
          .filter((server) => server.family === host.base.address.family)
          .map((server) => gatherReflexive(host, server))
      )
      const relayed = (options.turnServers ?? []).map(gatherRelay)
      yield* Effect.all([...reflexive, ...relayed], { concurrency: "unbounded", discard: true })
      yield* SubscriptionRef.update(log, (l) => ({ ...l, complete: true }))
      yield* SubscriptionRef.set(state, "complete")
    })
    yield* Effect.forkScoped(gather)

    const candidates = Stream.suspend(() => {
      let seen = 0
      return log.changes.pipe(
        Stream.takeUntil((l) => l.complete),
        Stream.mapConcat((l) => {
          const fresh = l.items.slice(seen)
          seen = l.items.length
          return fresh
        })
      )
    })
    return {
      candidates,
      state,
      gathered: Effect.map(SubscriptionRef.get(log), (l) => l.items),
      complete: log.changes.pipe(Stream.filter((l) => l.complete), Stream.runHead, Effect.asVoid),
      failures: Effect.sync(() => failures.slice())
    }
  }).pipe(Effect.withSpan("IceGatherer.make", { captureStackTrace: false }))

/**
 * Gathering options from `RTCConfiguration.iceServers` (RFC 7064 `stun:`, RFC 7065 `turn:`/`turns:` URIs, parsed by
 * `IceServer.parse`) and `iceTransportPolicy`: each server's host is resolved with `Network.lookup` (an IP literal
 * is itself; a name gives its first address of each family); TURN URLs keep their transport (`?transport=tcp`,
 * `turns:` = TLS) and credentials. `stuns:` URLs are skipped (server-reflexive candidates are learnt over UDP, from
 * the host candidate's own socket). With the `relay` policy only TURN servers are used and no host candidate is
 * gathered.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromIceServers = (
  servers: ReadonlyArray<IceServer.RTCIceServerLike>,
  policy: IceServer.IceTransportPolicy = "all"
): Effect.Effect<Options, IceServer.IceServerError | Network.NetworkError, Network.Network> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const urls = IceServer.forPolicy(yield* IceServer.parse(servers), policy)
    const stunServers: Array<SocketAddress> = []
    const turnServers: Array<TurnServerConfig> = []
    for (const url of urls) {
      if (url.kind === "stun" && url.secure) continue
      const resolved = yield* network.lookup(url.host)
      const addresses = [
        resolved.find((a) => a.family === "IPv4"),
        resolved.find((a) => a.family === "IPv6")
      ].flatMap((a) => a === undefined ? [] : [{ family: a.family, ip: a.ip, port: url.port }])
      for (const server of addresses) {
        if (url.kind === "stun") stunServers.push(server)
        else {
          turnServers.push({
            server,
            transport: url.transport,
            auth: { mode: "static", username: url.username, password: url.credential }
          })
        }
      }
    }
    return { stunServers, turnServers, host: policy !== "relay" }
  })

/**
 * The candidate of a gathered item as an SDP `candidate:` line (RFC 8839 §5.1).
 *
 * @since 0.1.0
 * @category combinators
 */
export const toSdp = (gathered: Gathered): string => IceCandidate.toSdp(gathered.local.candidate)

/**
 * Gathers to completion and returns every candidate (a convenience for tests and one-shot tools).
 *
 * @since 0.1.0
 * @category combinators
 */
export const gatherAll = (
  options: Options = {}
): Effect.Effect<ReadonlyArray<Gathered>, never, Network.Network | Scope.Scope> =>
  Effect.flatMap(make(options), (g) => Effect.zipRight(g.complete, g.gathered))

/**
 * The first gathered candidate of a type, if any.
 *
 * @since 0.1.0
 * @category combinators
 */
export const firstOfType = (
  items: ReadonlyArray<Gathered>,
  type: IceCandidate.CandidateType
): Option.Option<Gathered> => Option.fromNullable(items.find((g) => g.local.candidate.type === type))
