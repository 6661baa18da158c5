/**
 * A simulated internet that implements the same `Network` service as real sockets, so STUN, TURN and ICE run on
 * it unchanged. Time is Effect's `Clock` (a packet's flight is a sleep on the world's clock, so `TestClock.adjust`
 * moves the whole world) and randomness is Effect's `Random`; nothing reads the real clock.
 *
 * This first form has public hosts only: each host has one or more IPv4 and/or IPv6 addresses on the simulated
 * internet and a `Network.Service` of its own (`host.network`, or `layer(host)`).
 *
 * Latency. A packet between two different hosts takes `sender.latency + world.latency + receiver.latency`
 * one way: the world's `latency` (default 10 ms) is the internet's, a host's `latency` (default 0) is the extra
 * delay of its own access link. A packet from a host to one of its own addresses takes 0 ms: it is still delivered
 * asynchronously, by the world's delivery fiber, at the same virtual instant. Packets that fall due at the same
 * instant are delivered in the order they were sent, and a TCP connection never reorders its segments.
 *
 * UDP. `bindUdp` accepts one of the host's addresses or the wildcard of a family the host has; port 0 takes the
 * next free ephemeral port from a per-host counter starting at 49152, `portRange` starts from a random port of the
 * range (the world's `Random`) and takes the first free one. A datagram leaves with the socket's address as its
 * source (a wildcard socket uses the host's first address of its family), the receiver is given a copy of the
 * bytes (so senders may reuse buffers), and a handler that returns an Effect has it run in a fiber owned by the
 * receiving socket. IPv4 and IPv6 are separate port spaces; a wildcard bind conflicts with a specific bind of the
 * same family and port, as on Linux without `SO_REUSEADDR`.
 *
 * TCP is simulated as segments (SYN, SYN-ACK, DATA, FIN, RST), each routed like a datagram: `connectTcp` completes
 * after one round trip, or fails with `ConnectionRefused` after one round trip when nothing listens (the RST), or
 * with `ConnectFailed` after `connectTimeout` (default 30 s) when no answer comes; the listener accepts on the
 * SYN and runs `onConnection` in a fiber and scope of its own, inside the listener's scope (closing the listener
 * ends its connections). Closing either side sends a FIN, which ends the peer's `closed` successfully one way
 * later; a segment for a connection that no longer exists is answered with an RST, which fails the peer's
 * `closed` with `ConnectionReset`.
 *
 * Every packet goes through one function, `route`, which resolves its destination and returns either a delivery
 * (the receiving node, the packet as it arrives, the one-way latency) or a drop with its reason. The world counts
 * packets sent and delivered, and every drop by reason, and keeps a bounded log of drops; with `trace: true` it
 * also keeps a bounded log of every packet sent, delivered and dropped. NAT routers (RFC 4787 mapping and
 * filtering, hairpinning, lifetimes) slot into `route`: a site's router rewrites the source on the way out and
 * filters and rewrites the destination on the way in, adding its links' latency or returning a drop.
 *
 * @since 0.1.0
 */
import type { Clock, Fiber, Scope } from "effect"
import {
  Cause,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  FiberHandle,
  FiberId,
  FiberSet,
  Layer,
  Option,
  Random
} from "effect"
import * as Network from "./Network.js"
import * as TransportAddress from "./TransportAddress.js"

// -----------------------------------------------------------------------------
// models
// -----------------------------------------------------------------------------

/**
 * Why the simulator dropped a packet.
 *
 * - `NoHost`: no node of the world has the destination IP.
 * - `PortUnreachable`: the destination host has no socket (UDP) or listener (TCP SYN) on that port.
 * - `SocketClosed`: the socket or connection the packet was for has closed.
 * - `FamilyMismatch`: an IPv4 socket sent to an IPv6 address or the other way round (the send also fails).
 * - `ReceiveBufferFull`: the socket has no handler and already holds `Network.maxPendingDatagrams` datagrams.
 *
 * @since 0.1.0
 * @category models
 */
export type DropReason = "NoHost" | "PortUnreachable" | "SocketClosed" | "FamilyMismatch" | "ReceiveBufferFull"

/**
 * What a packet is: a UDP datagram or one TCP segment.
 *
 * @since 0.1.0
 * @category models
 */
export type PacketKind = "datagram" | "SYN" | "SYN-ACK" | "DATA" | "FIN" | "RST"

/**
 * One dropped packet: when (virtual milliseconds on the world's clock), where (a host name, or `"internet"`), what
 * and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface Drop {
  readonly at: number
  readonly where: string
  readonly protocol: "udp" | "tcp"
  readonly kind: PacketKind
  readonly from: TransportAddress.SocketAddress
  readonly to: TransportAddress.SocketAddress
  readonly size: number
  readonly reason: DropReason
}

/**
 * One entry of the packet trace (kept only when the world was made with `trace: true`).
 *
 * @since 0.1.0
 * @category models
 */
export interface TraceEvent {
  readonly at: number
  readonly event: "sent" | "delivered" | "dropped"
  readonly protocol: "udp" | "tcp"
  readonly kind: PacketKind
  readonly from: TransportAddress.SocketAddress
  readonly to: TransportAddress.SocketAddress
  readonly size: number
  readonly reason?: DropReason | undefined
}

/**
 * The world's counters, over all packets (UDP datagrams and TCP segments), and its most recent drops (oldest
 * first, at most `logLimit`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly sent: number
  readonly delivered: number
  readonly dropped: Readonly<Record<DropReason, number>>
  readonly drops: ReadonlyArray<Drop>
}

/**
 * Options of a world.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** One-way latency of the internet between any two hosts (default {@link defaultLatency}). */
  readonly latency?: Duration.DurationInput | undefined
  /** How long `connectTcp` waits for a SYN-ACK or RST before failing with `ConnectFailed`. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Keep a log of every packet sent, delivered and dropped (default false). */
  readonly trace?: boolean | undefined
  /** The most entries the drop log and the trace each keep; older ones are forgotten (default 1000). */
  readonly logLimit?: number | undefined
  /** Seed of the world's own `Random`; without it the world uses the `Random` of the fiber that made it. */
  readonly seed?: unknown
}

/**
 * A public host to add to the world.
 *
 * @since 0.1.0
 * @category models
 */
export interface HostOptions {
  /** Unique within the world; drop records name the host where a packet was dropped. */
  readonly name: string
  /** IPv4 and/or IPv6 addresses, unique within the world; the first of each family is the default source. */
  readonly addresses: ReadonlyArray<string>
  /** Extra one-way delay of this host's access link, added to every packet it sends or receives (default 0). */
  readonly latency?: Duration.DurationInput | undefined
}

/**
 * A host of the world and its network service.
 *
 * @since 0.1.0
 * @category models
 */
export interface Host {
  readonly name: string
  /** The host's addresses in canonical form. */
  readonly addresses: ReadonlyArray<string>
  /** The extra one-way delay of the host's access link. */
  readonly latency: Duration.Duration
  /** The host's sockets: what `Network.Network` is when this host's layer is provided. */
  readonly network: Network.Service
}

/**
 * A simulated internet.
 *
 * @since 0.1.0
 * @category models
 */
export interface World {
  /** Adds a public host. */
  readonly addHost: (options: HostOptions) => Effect.Effect<Host, TopologyError>
  /** The host of that name. */
  readonly host: (name: string) => Option.Option<Host>
  /** A snapshot of the counters and the drop log. */
  readonly stats: Effect.Effect<Stats>
  /** A snapshot of the packet trace (empty unless the world was made with `trace: true`). */
  readonly trace: Effect.Effect<ReadonlyArray<TraceEvent>>
  /** Sets the counters to zero and empties the drop log and the trace. */
  readonly resetStats: Effect.Effect<void>
}

/**
 * A topology that cannot be built: a host name or address used twice, an address that does not parse, a latency
 * that is not a finite duration.
 *
 * @since 0.1.0
 * @category errors
 */
export class TopologyError extends Data.TaggedError("TopologyError")<{
  readonly reason: "DuplicateName" | "DuplicateAddress" | "InvalidAddress" | "InvalidLatency"
  readonly detail: string
}> {
  override get message(): string {
    return `invalid topology: ${this.reason}: ${this.detail}`
  }
}

/**
 * The internet's one-way latency when `make` is not given one.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLatency: Duration.Duration = Duration.millis(10)

/**
 * How long `connectTcp` waits for an answer to its SYN when `make` is not given a `connectTimeout`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultConnectTimeout: Duration.Duration = Duration.seconds(30)

/**
 * The first port of the ephemeral range (IANA dynamic ports, RFC 6335 §6), where port-0 binds start counting.
 *
 * @since 0.1.0
 * @category constants
 */
export const ephemeralPortStart = 49152

// -----------------------------------------------------------------------------
// internals: packets, the event queue, logs
// -----------------------------------------------------------------------------

interface Packet {
  readonly protocol: "udp" | "tcp"
  readonly kind: PacketKind
  readonly source: TransportAddress.SocketAddress
  readonly destination: TransportAddress.SocketAddress
  readonly data: Uint8Array
}

/** The outcome of routing a packet: where it arrives, as what, after how long; or why it is dropped and where. */
type Route =
  | { readonly _tag: "Deliver"; readonly host: HostState; readonly packet: Packet; readonly latency: number }
  | { readonly _tag: "Drop"; readonly reason: DropReason; readonly where: string }

interface Arrival {
  readonly at: number
  readonly seq: number
  readonly host: HostState
  readonly packet: Packet
}

const before = (a: Arrival, b: Arrival): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq)

/** A binary min-heap of arrivals ordered by (time, sequence number). */
class ArrivalQueue {
  private readonly items: Array<Arrival> = []
  get size(): number {
    return this.items.length
  }
  peek(): Arrival | undefined {
    return this.items[0]
  }
  clear(): void {
    this.items.length = 0
  }
  push(item: Arrival): void {
    const items = this.items
    let i = items.length
    items.push(item)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(item, items[parent]!)) break
      items[i] = items[parent]!
      i = parent
    }
    items[i] = item
  }
  pop(): Arrival | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    let i = 0
    const n = items.length
    for (;;) {
      const left = 2 * i + 1
      if (left >= n) break
      const right = left + 1
      const child = right < n && before(items[right]!, items[left]!) ? right : left
      if (!before(items[child]!, last)) break
      items[i] = items[child]!
      i = child
    }
    items[i] = last
    return top
  }
}

/** Keeps the last `limit` entries. */
class BoundedLog<A> {
  private items: Array<A> = []
  private start = 0
  constructor(private readonly limit: number) {}
  push(item: A): void {
    if (this.limit <= 0) return
    if (this.items.length < this.limit) {
      this.items.push(item)
    } else {
      this.items[this.start] = item
      this.start = (this.start + 1) % this.limit
    }
  }
  toArray(): ReadonlyArray<A> {
    return this.items.slice(this.start).concat(this.items.slice(0, this.start))
  }
  clear(): void {
    this.items = []
    this.start = 0
  }
}

// -----------------------------------------------------------------------------
// internals: hosts, sockets, connections
// -----------------------------------------------------------------------------

type Run = (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void, never>

interface LocalAddress {
  readonly family: TransportAddress.Family
  readonly ip: string
}

interface UdpEndpoint {
  readonly key: string
  readonly local: TransportAddress.TransportAddress
  /** The source of its datagrams (for a wildcard socket, the host's first address of the family). */
  readonly source: TransportAddress.SocketAddress
  readonly run: Run
  handler: Network.DatagramHandler | undefined
  pending: Array<Network.Datagram>
  closed: boolean
  sendFailures: number
}

interface TcpListener {
  readonly key: string
  readonly local: TransportAddress.TransportAddress
  readonly run: Run
  readonly onConnection: (socket: Network.StreamSocket) => Effect.Effect<void, never, Scope.Scope>
}

interface TcpConnection {
  readonly key: string
  readonly local: TransportAddress.TransportAddress
  readonly remote: TransportAddress.TransportAddress
  /** `local` and `remote` without the transport, as packets carry them. */
  readonly localSocket: TransportAddress.SocketAddress
  readonly remoteSocket: TransportAddress.SocketAddress
  /** The port reservation a client connection holds, released when it ends. */
  readonly portKey: string | undefined
  readonly connected: Deferred.Deferred<void, Network.NetworkError>
  readonly closed: Deferred.Deferred<void, Network.NetworkError>
  state: "SynSent" | "Established" | "Closed"
  handler: Network.ChunkHandler | undefined
  pending: Array<Uint8Array>
  run: Run
  /** Arrival time of the last segment sent, so that no later segment overtakes it. */
  lastAt: number
}

interface HostState {
  readonly name: string
  readonly addresses: ReadonlyArray<LocalAddress>
  readonly latency: number
  readonly udp: Map<string, UdpEndpoint>
  /** Keys of UDP sockets that closed and were not bound again, to tell `SocketClosed` from `PortUnreachable`. */
  readonly udpClosed: Set<string>
  readonly tcpListeners: Map<string, TcpListener>
  readonly tcpClosed: Set<string>
  /** TCP port reservations (listeners and client connections), by `portKey`, with a count. */
  readonly tcpPorts: Map<string, number>
  readonly tcpConnections: Map<string, TcpConnection>
  readonly nextPort: { udp: number; tcp: number }
}

const wildcardOf = (family: TransportAddress.Family): string => family === "IPv4" ? "0.0.0.0" : "::"

const portKey = (ip: string, port: number): string => ip + "|" + port

const connectionKey = (local: TransportAddress.SocketAddress, remote: TransportAddress.SocketAddress): string =>
  local.ip + "|" + local.port + "|" + remote.ip + "|" + remote.port

/** Largest UDP payload: 65535 minus the IPv4 (20) and UDP (8) headers; IPv6 jumbograms are not simulated. */
const maxUdpPayload = (family: TransportAddress.Family): number => family === "IPv4" ? 65507 : 65527

const networkError = (
  reason: Network.NetworkErrorReason,
  operation: Network.NetworkError["operation"],
  address?: string
): Network.NetworkError => new Network.NetworkError({ reason, operation, address })

const isValidPort = (port: number): boolean => Number.isInteger(port) && port >= 1 && port <= 65535

const firstAddress = (host: HostState, family: TransportAddress.Family): string | undefined => {
  for (const address of host.addresses) if (address.family === family) return address.ip
  return undefined
}

/** Whether `port` is free at `ip` (or the wildcard) given the keys in use; a wildcard conflicts with any address. */
const isPortFree = (
  inUse: { has(key: string): boolean },
  host: HostState,
  family: TransportAddress.Family,
  ip: string,
  port: number
): boolean => {
  if (inUse.has(portKey(ip, port))) return false
  const wildcard = wildcardOf(family)
  if (ip !== wildcard) return !inUse.has(portKey(wildcard, port))
  for (const address of host.addresses) {
    if (address.family === family && inUse.has(portKey(address.ip, port))) return false
  }
  return true
}

/** Picks a port: the explicit one, the first free one of a range from `randomStart`, or the host's next one. */
const allocatePort = (
  inUse: { has(key: string): boolean },
  host: HostState,
  protocol: "udp" | "tcp",
  local: LocalAddress,
  port: number | undefined,
  range: readonly [number, number] | undefined,
  randomStart: number,
  operation: Network.NetworkError["operation"]
): number | Network.NetworkError => {
  if (port !== undefined && port !== 0) {
    if (!isValidPort(port)) return networkError("InvalidAddress", operation, `${local.ip} port ${port}`)
    return isPortFree(inUse, host, local.family, local.ip, port)
      ? port
      : networkError("AddressInUse", operation, TransportAddress.format({ ...local, port }))
  }
  if (range !== undefined) {
    const [low, high] = range
    if (!isValidPort(low) || !isValidPort(high) || low > high) {
      return networkError("InvalidAddress", operation, `${local.ip} ports ${low}-${high}`)
    }
    const count = high - low + 1
    for (let i = 0; i < count; i++) {
      const candidate = low + ((randomStart - low + i) % count)
      if (isPortFree(inUse, host, local.family, local.ip, candidate)) return candidate
    }
    return networkError("AddressInUse", operation, `${local.ip} ports ${low}-${high}`)
  }
  const count = 65536 - ephemeralPortStart
  for (let i = 0; i < count; i++) {
    const candidate = host.nextPort[protocol]
    host.nextPort[protocol] = candidate === 65535 ? ephemeralPortStart : candidate + 1
    if (isPortFree(inUse, host, local.family, local.ip, candidate)) return candidate
  }
  return networkError("AddressInUse", operation, `${local.ip} ephemeral ports`)
}

/** Resolves a bind address: one of the host's addresses, or the wildcard of a family the host has. */
const resolveLocal = (
  host: HostState,
  address: string | undefined,
  family: TransportAddress.Family | undefined,
  operation: Network.NetworkError["operation"]
): (LocalAddress & { readonly wildcard: boolean }) | Network.NetworkError => {
  let resolved: LocalAddress
  if (address === undefined) {
    resolved = { family: family ?? "IPv4", ip: wildcardOf(family ?? "IPv4") }
  } else {
    const canonical = TransportAddress.canonicalIp(address)
    if (Option.isNone(canonical)) return networkError("InvalidAddress", operation, address)
    if (family !== undefined && family !== canonical.value.family) {
      return networkError("InvalidAddress", operation, address)
    }
    resolved = canonical.value
  }
  if (resolved.ip === wildcardOf(resolved.family)) {
    return firstAddress(host, resolved.family) === undefined
      ? networkError("AddressNotAvailable", operation, resolved.ip)
      : { ...resolved, wildcard: true }
  }
  return host.addresses.some((a) => a.ip === resolved.ip)
    ? { ...resolved, wildcard: false }
    : networkError("AddressNotAvailable", operation, resolved.ip)
}

// -----------------------------------------------------------------------------
// the simulation
// -----------------------------------------------------------------------------

const emptyDropCounts = (): Record<DropReason, number> => ({
  NoHost: 0,
  PortUnreachable: 0,
  SocketClosed: 0,
  FamilyMismatch: 0,
  ReceiveBufferFull: 0
})

class Simulation {
  readonly hostsByName = new Map<string, { readonly state: HostState; readonly host: Host }>()
  /** Which node answers for an IP: a host now; NAT routers' external addresses later. */
  readonly owners = new Map<string, HostState>()
  readonly queue = new ArrivalQueue()
  seq = 0
  /** The instant the delivery fiber will next wake (Infinity when it is not sleeping on anything). */
  armedAt = Infinity
  draining = false
  closed = false
  sent = 0
  delivered = 0
  dropped = emptyDropCounts()
  readonly drops: BoundedLog<Drop>
  readonly traceLog: BoundedLog<TraceEvent>

  constructor(
    readonly clock: Clock.Clock,
    readonly random: Random.Random,
    readonly latency: number,
    readonly connectTimeout: Duration.Duration,
    readonly tracing: boolean,
    logLimit: number,
    readonly runDriver: Run
  ) {
    this.drops = new BoundedLog(logLimit)
    this.traceLog = new BoundedLog(logLimit)
  }

  now(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  // --- the path of a packet -------------------------------------------------

  /**
   * Resolves where a packet goes. Public hosts only for now: the destination IP's owner, after the sender's access
   * link, the internet and the receiver's access link. A NAT router will sit here: on the way out of a site it maps
   * (and rewrites) the source, on the way in it filters and rewrites the destination, each adding its links'
   * latency or returning a drop with its reason.
   */
  route(from: HostState, packet: Packet): Route {
    const owner = this.owners.get(packet.destination.ip)
    if (owner === undefined) return { _tag: "Drop", reason: "NoHost", where: "internet" }
    const latency = owner === from ? 0 : from.latency + this.latency + owner.latency
    return { _tag: "Deliver", host: owner, packet, latency }
  }

  /** Puts a packet on the wire. `connection` keeps a TCP connection's segments in order. */
  transmit(from: HostState, packet: Packet, connection?: TcpConnection): void {
    if (this.closed) return
    this.sent++
    if (this.tracing) this.traceEvent("sent", packet)
    const route = this.route(from, packet)
    if (route._tag === "Drop") {
      this.drop(packet, route.reason, route.where)
      return
    }
    let at = this.now() + route.latency
    if (connection !== undefined) {
      if (at < connection.lastAt) at = connection.lastAt
      connection.lastAt = at
    }
    this.queue.push({ at, seq: this.seq++, host: route.host, packet: route.packet })
    if (!this.draining && at < this.armedAt) this.arm()
  }

  /** (Re)starts the delivery fiber, replacing (interrupting) the one sleeping until a later instant. */
  arm(): void {
    const head = this.queue.peek()
    this.armedAt = head === undefined ? Infinity : head.at
    this.runDriver(this.driver)
  }

  /**
   * The delivery fiber: sleeps on the world's clock until the next arrival is due (or just yields when it is due
   * already, so that delivery is never synchronous with the send), delivers every arrival that is due, in
   * (time, sequence) order, and starts over. Arrivals queued while it delivers (zero-latency replies on the same
   * host) wait for the next turn, so a ping-pong between two sockets of one host cannot starve other fibers.
   */
  readonly driver: Effect.Effect<void> = Effect.suspend(() => {
    const head = this.queue.peek()
    if (head === undefined) {
      this.armedAt = Infinity
      return Effect.void
    }
    this.armedAt = head.at
    const wait = head.at - this.now()
    return Effect.zipRight(
      wait > 0 ? this.clock.sleep(Duration.millis(wait)) : Effect.yieldNow(),
      Effect.suspend(() => {
        this.deliverDue()
        return this.driver
      })
    )
  })

  deliverDue(): void {
    const now = this.now()
    const limit = this.seq
    this.draining = true
    try {
      for (;;) {
        const head = this.queue.peek()
        if (head === undefined || head.at > now || head.seq >= limit) break
        this.queue.pop()
        this.arrive(head.host, head.packet)
      }
    } finally {
      this.draining = false
    }
  }

  // --- accounting -------------------------------------------------------------

  drop(packet: Packet, reason: DropReason, where: string): void {
    this.dropped[reason]++
    const at = this.now()
    this.drops.push({
      at,
      where,
      protocol: packet.protocol,
      kind: packet.kind,
      from: packet.source,
      to: packet.destination,
      size: packet.data.length,
      reason
    })
    if (this.tracing) this.traceEvent("dropped", packet, reason)
  }

  deliveredPacket(packet: Packet): void {
    this.delivered++
    if (this.tracing) this.traceEvent("delivered", packet)
  }

  traceEvent(event: TraceEvent["event"], packet: Packet, reason?: DropReason): void {
    this.traceLog.push({
      at: this.now(),
      event,
      protocol: packet.protocol,
      kind: packet.kind,
      from: packet.source,
      to: packet.destination,
      size: packet.data.length,
      reason
    })
  }

  // --- arrival at a host ----------------------------------------------------

  arrive(host: HostState, packet: Packet): void {
    if (packet.protocol === "udp") this.arriveUdp(host, packet)
    else this.arriveTcp(host, packet)
  }

  arriveUdp(host: HostState, packet: Packet): void {
    const to = packet.destination
    const endpoint = host.udp.get(portKey(to.ip, to.port)) ?? host.udp.get(portKey(wildcardOf(to.family), to.port))
    if (endpoint === undefined) {
      const closed = host.udpClosed.has(portKey(to.ip, to.port)) ||
        host.udpClosed.has(portKey(wildcardOf(to.family), to.port))
      this.drop(packet, closed ? "SocketClosed" : "PortUnreachable", host.name)
      return
    }
    const handler = endpoint.handler
    if (handler === undefined) {
      if (endpoint.pending.length >= Network.maxPendingDatagrams) {
        this.drop(packet, "ReceiveBufferFull", host.name)
        return
      }
      this.deliveredPacket(packet)
      endpoint.pending.push({ data: packet.data, remote: packet.source })
      return
    }
    this.deliveredPacket(packet)
    callDatagramHandler(endpoint.run, handler, packet.data, packet.source)
  }

  arriveTcp(host: HostState, packet: Packet): void {
    const connection = host.tcpConnections.get(connectionKey(packet.destination, packet.source))
    if (packet.kind === "SYN") {
      if (connection !== undefined) {
        // A duplicate SYN for a connection already accepted.
        this.deliveredPacket(packet)
        return
      }
      const to = packet.destination
      const listener = host.tcpListeners.get(portKey(to.ip, to.port)) ??
        host.tcpListeners.get(portKey(wildcardOf(to.family), to.port))
      if (listener === undefined) {
        const closed = host.tcpClosed.has(portKey(to.ip, to.port)) ||
          host.tcpClosed.has(portKey(wildcardOf(to.family), to.port))
        this.drop(packet, closed ? "SocketClosed" : "PortUnreachable", host.name)
        this.reset(host, packet)
        return
      }
      this.deliveredPacket(packet)
      this.accept(host, listener, packet)
      return
    }
    if (connection === undefined || connection.state === "Closed") {
      if (packet.kind === "FIN") {
        // Both sides closed at once: the FIN is absorbed (TIME-WAIT), not answered.
        this.deliveredPacket(packet)
        return
      }
      this.drop(packet, "SocketClosed", host.name)
      if (packet.kind !== "RST") this.reset(host, packet)
      return
    }
    this.deliveredPacket(packet)
    switch (packet.kind) {
      case "SYN-ACK": {
        if (connection.state === "SynSent") {
          connection.state = "Established"
          Deferred.unsafeDone(connection.connected, Exit.void)
        }
        return
      }
      case "DATA": {
        const handler = connection.handler
        if (handler === undefined) connection.pending.push(packet.data)
        else callChunkHandler(connection.run, handler, packet.data)
        return
      }
      case "FIN": {
        this.endConnection(host, connection, Exit.void)
        return
      }
      case "RST": {
        if (connection.state === "SynSent") {
          Deferred.unsafeDone(
            connection.connected,
            Exit.fail(networkError("ConnectionRefused", "connect", TransportAddress.format(connection.remote)))
          )
        }
        this.endConnection(
          host,
          connection,
          Exit.fail(networkError("ConnectionReset", "write", TransportAddress.format(connection.remote)))
        )
        return
      }
      case "datagram":
        return
    }
  }

  /** Answers a segment nobody wants with an RST from where it was addressed. */
  reset(host: HostState, packet: Packet): void {
    this.transmit(host, {
      protocol: "tcp",
      kind: "RST",
      source: packet.destination,
      destination: packet.source,
      data: emptyBytes
    })
  }

  accept(host: HostState, listener: TcpListener, syn: Packet): void {
    const connection = this.newConnection(
      { ...syn.destination, transport: "tcp" },
      { ...syn.source, transport: "tcp" },
      "Established",
      listener.run,
      undefined
    )
    host.tcpConnections.set(connection.key, connection)
    this.transmit(host, {
      protocol: "tcp",
      kind: "SYN-ACK",
      source: syn.destination,
      destination: syn.source,
      data: emptyBytes
    }, connection)
    const socket = this.streamSocket(host, connection)
    listener.run(Effect.scoped(Effect.gen(this, function*() {
      const handlers = yield* FiberSet.make<void, never>()
      connection.run = yield* FiberSet.runtime(handlers)<never>()
      yield* Effect.addFinalizer(() => Effect.sync(() => this.closeConnection(host, connection)))
      yield* listener.onConnection(socket)
    })))
  }

  newConnection(
    local: TransportAddress.TransportAddress,
    remote: TransportAddress.TransportAddress,
    state: TcpConnection["state"],
    run: Run,
    reservation: string | undefined
  ): TcpConnection {
    return {
      key: connectionKey(local, remote),
      local,
      remote,
      localSocket: { family: local.family, ip: local.ip, port: local.port },
      remoteSocket: { family: remote.family, ip: remote.ip, port: remote.port },
      portKey: reservation,
      connected: Deferred.unsafeMake<void, Network.NetworkError>(FiberId.none),
      closed: Deferred.unsafeMake<void, Network.NetworkError>(FiberId.none),
      state,
      handler: undefined,
      pending: [],
      run,
      lastAt: -Infinity
    }
  }

  /** Ends a connection: forgets it, releases its port and completes `closed`. */
  endConnection(host: HostState, connection: TcpConnection, exit: Exit.Exit<void, Network.NetworkError>): void {
    if (connection.state === "Closed") return
    connection.state = "Closed"
    if (host.tcpConnections.get(connection.key) === connection) host.tcpConnections.delete(connection.key)
    if (connection.portKey !== undefined) releaseReservation(host.tcpPorts, connection.portKey)
    Deferred.unsafeDone(connection.closed, exit)
  }

  /** Closes a connection from this side: a FIN to the peer if it was established. */
  closeConnection(host: HostState, connection: TcpConnection): void {
    if (connection.state === "Closed") return
    if (connection.state === "Established") this.sendSegment(host, connection, "FIN", emptyBytes)
    this.endConnection(host, connection, Exit.void)
  }

  sendSegment(host: HostState, connection: TcpConnection, kind: PacketKind, data: Uint8Array): void {
    this.transmit(host, {
      protocol: "tcp",
      kind,
      source: connection.localSocket,
      destination: connection.remoteSocket,
      data
    }, connection)
  }

  streamSocket(host: HostState, connection: TcpConnection): Network.StreamSocket {
    const send = (data: Uint8Array): void => {
      if (data.length > 0) this.sendSegment(host, connection, "DATA", data.slice())
    }
    return {
      local: connection.local,
      remote: connection.remote,
      write: (data) =>
        Effect.suspend(() => {
          if (connection.state !== "Established") {
            return Effect.fail(networkError("Closed", "write", TransportAddress.format(connection.remote)))
          }
          send(data)
          return Effect.void
        }),
      unsafeWrite: (data) => {
        if (connection.state === "Established") send(data)
      },
      setHandler: (handler) =>
        Effect.sync(() => {
          connection.handler = handler
          const pending = connection.pending
          connection.pending = []
          for (const chunk of pending) callChunkHandler(connection.run, handler, chunk)
        }),
      closed: Deferred.await(connection.closed),
      close: Effect.sync(() => this.closeConnection(host, connection))
    }
  }

  // --- hosts ----------------------------------------------------------------

  /** Host names resolve to the host's addresses (IPv4 first); IP literals to themselves. */
  lookup(name: string): Effect.Effect<ReadonlyArray<Network.IpAddress>, Network.NetworkError> {
    const literal = TransportAddress.canonicalIp(name)
    if (Option.isSome(literal)) return Effect.succeed([literal.value])
    const entry = this.hostsByName.get(name)
    if (entry === undefined) {
      return Effect.fail(new Network.NetworkError({ reason: "NotFound", operation: "lookup", address: name }))
    }
    const addresses = entry.state.addresses.map((a) => ({ family: a.family, ip: a.ip }))
    return Effect.succeed([
      ...addresses.filter((a) => a.family === "IPv4"),
      ...addresses.filter((a) => a.family === "IPv6")
    ])
  }

  addHost(options: HostOptions): Effect.Effect<Host, TopologyError> {
    return Effect.suspend(() => {
      if (this.hostsByName.has(options.name)) {
        return Effect.fail(new TopologyError({ reason: "DuplicateName", detail: options.name }))
      }
      if (options.addresses.length === 0) {
        return Effect.fail(new TopologyError({ reason: "InvalidAddress", detail: `${options.name} has no address` }))
      }
      const addresses: Array<LocalAddress> = []
      for (const text of options.addresses) {
        const canonical = TransportAddress.canonicalIp(text)
        if (Option.isNone(canonical) || canonical.value.ip === wildcardOf(canonical.value.family)) {
          return Effect.fail(new TopologyError({ reason: "InvalidAddress", detail: `${options.name}: ${text}` }))
        }
        if (this.owners.has(canonical.value.ip) || addresses.some((a) => a.ip === canonical.value.ip)) {
          return Effect.fail(new TopologyError({ reason: "DuplicateAddress", detail: canonical.value.ip }))
        }
        addresses.push(canonical.value)
      }
      const latency = Duration.decode(options.latency ?? Duration.zero)
      const latencyMillis = Duration.toMillis(latency)
      if (!Number.isFinite(latencyMillis) || latencyMillis < 0) {
        return Effect.fail(
          new TopologyError({ reason: "InvalidLatency", detail: `${options.name}: ${String(options.latency)}` })
        )
      }
      const state: HostState = {
        name: options.name,
        addresses,
        latency: latencyMillis,
        udp: new Map(),
        udpClosed: new Set(),
        tcpListeners: new Map(),
        tcpClosed: new Set(),
        tcpPorts: new Map(),
        tcpConnections: new Map(),
        nextPort: { udp: ephemeralPortStart, tcp: ephemeralPortStart }
      }
      const interfaces: ReadonlyArray<Network.NetworkInterface> = addresses.map((a) => ({
        name: "eth0",
        family: a.family,
        address: a.ip,
        prefixLength: a.family === "IPv4" ? 32 : 128,
        internal: false
      }))
      const host: Host = {
        name: options.name,
        addresses: addresses.map((a) => a.ip),
        latency,
        network: {
          bindUdp: (bind) => this.bindUdp(state, bind),
          connectTcp: (remote, connect) => this.connectTcp(state, remote, connect),
          listenTcp: (listen, onConnection) => this.listenTcp(state, listen, onConnection),
          interfaces: Effect.succeed(interfaces),
          lookup: (name) => this.lookup(name)
        }
      }
      this.hostsByName.set(options.name, { state, host })
      for (const a of addresses) this.owners.set(a.ip, state)
      return Effect.succeed(host)
    })
  }

  /** The destination in canonical form, or undefined when its IP does not parse as its family. */
  resolveDestination(to: TransportAddress.SocketAddress): TransportAddress.SocketAddress | undefined {
    if (this.owners.has(to.ip)) return to
    const canonical = TransportAddress.canonicalIp(to.ip)
    if (Option.isNone(canonical) || canonical.value.family !== to.family) return undefined
    return canonical.value.ip === to.ip ? to : { family: to.family, ip: canonical.value.ip, port: to.port }
  }

  // --- UDP ------------------------------------------------------------------

  bindUdp(
    host: HostState,
    options: Network.BindOptions | undefined
  ): Effect.Effect<Network.DatagramSocket, Network.NetworkError, Scope.Scope> {
    return Effect.gen(this, function*() {
      const local = resolveLocal(host, options?.address, options?.family, "bind")
      if (local instanceof Network.NetworkError) return yield* local
      const range = options?.portRange
      const randomStart = range === undefined ? 0 : yield* this.random.nextIntBetween(range[0], range[1] + 1)
      const handlers = yield* FiberSet.make<void, never>()
      const run = yield* FiberSet.runtime(handlers)<never>()
      const port = allocatePort(host.udp, host, "udp", local, options?.port, range, randomStart, "bind")
      if (port instanceof Network.NetworkError) return yield* port
      const endpoint: UdpEndpoint = {
        key: portKey(local.ip, port),
        local: { family: local.family, ip: local.ip, port, transport: "udp" },
        source: { family: local.family, ip: local.wildcard ? firstAddress(host, local.family)! : local.ip, port },
        run,
        handler: undefined,
        pending: [],
        closed: false,
        sendFailures: 0
      }
      host.udp.set(endpoint.key, endpoint)
      host.udpClosed.delete(endpoint.key)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          endpoint.closed = true
          endpoint.handler = undefined
          endpoint.pending = []
          if (host.udp.get(endpoint.key) === endpoint) host.udp.delete(endpoint.key)
          host.udpClosed.add(endpoint.key)
        })
      )
      const socket: Network.DatagramSocket = {
        local: endpoint.local,
        send: (data, to) =>
          Effect.suspend(() => {
            const error = this.sendDatagram(host, endpoint, data, to)
            return error === undefined ? Effect.void : Effect.fail(error)
          }),
        unsafeSend: (data, to) => {
          if (this.sendDatagram(host, endpoint, data, to) !== undefined) endpoint.sendFailures++
        },
        setHandler: (handler) =>
          Effect.sync(() => {
            if (endpoint.closed) return
            endpoint.handler = handler
            const pending = endpoint.pending
            endpoint.pending = []
            for (const datagram of pending) callDatagramHandler(run, handler, datagram.data, datagram.remote)
          }),
        sendFailures: () => endpoint.sendFailures
      }
      return socket
    })
  }

  sendDatagram(
    host: HostState,
    endpoint: UdpEndpoint,
    data: Uint8Array,
    to: TransportAddress.SocketAddress
  ): Network.NetworkError | undefined {
    if (endpoint.closed) return networkError("Closed", "send", TransportAddress.format(endpoint.local))
    const destination = this.resolveDestination(to)
    if (destination === undefined || !isValidPort(to.port)) {
      return networkError("InvalidAddress", "send", `${to.ip} port ${to.port}`)
    }
    const family = endpoint.local.family
    const source = endpoint.source
    if (destination.family !== family) {
      const packet: Packet = { protocol: "udp", kind: "datagram", source, destination, data }
      this.sent++
      this.drop(packet, "FamilyMismatch", host.name)
      return networkError("Unreachable", "send", TransportAddress.format(destination))
    }
    if (data.length > maxUdpPayload(family)) {
      return networkError("MessageTooLarge", "send", TransportAddress.format(destination))
    }
    this.transmit(host, { protocol: "udp", kind: "datagram", source, destination, data: data.slice() })
    return undefined
  }

  // --- TCP ------------------------------------------------------------------

  listenTcp(
    host: HostState,
    options: Network.BindOptions,
    onConnection: (socket: Network.StreamSocket) => Effect.Effect<void, never, Scope.Scope>
  ): Effect.Effect<Network.StreamListener, Network.NetworkError, Scope.Scope> {
    return Effect.gen(this, function*() {
      const local = resolveLocal(host, options.address, options.family, "listen")
      if (local instanceof Network.NetworkError) return yield* local
      const range = options.portRange
      const randomStart = range === undefined ? 0 : yield* this.random.nextIntBetween(range[0], range[1] + 1)
      const connections = yield* FiberSet.make<void, never>()
      const run = yield* FiberSet.runtime(connections)<never>()
      const port = allocatePort(host.tcpPorts, host, "tcp", local, options.port, range, randomStart, "listen")
      if (port instanceof Network.NetworkError) return yield* port
      const listener: TcpListener = {
        key: portKey(local.ip, port),
        local: { family: local.family, ip: local.ip, port, transport: "tcp" },
        run,
        onConnection
      }
      reserve(host.tcpPorts, listener.key)
      host.tcpListeners.set(listener.key, listener)
      host.tcpClosed.delete(listener.key)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (host.tcpListeners.get(listener.key) === listener) host.tcpListeners.delete(listener.key)
          releaseReservation(host.tcpPorts, listener.key)
          host.tcpClosed.add(listener.key)
        })
      )
      return { local: listener.local }
    })
  }

  connectTcp(
    host: HostState,
    remote: TransportAddress.SocketAddress,
    options: Network.ConnectOptions | undefined
  ): Effect.Effect<Network.StreamSocket, Network.NetworkError, Scope.Scope> {
    return Effect.gen(this, function*() {
      const destination = this.resolveDestination(remote)
      if (destination === undefined || !isValidPort(remote.port)) {
        return yield* networkError("InvalidAddress", "connect", `${remote.ip} port ${remote.port}`)
      }
      const target = TransportAddress.format(destination)
      const requested = options?.localAddress === undefined
        ? undefined
        : resolveLocal(host, options.localAddress, undefined, "connect")
      if (requested instanceof Network.NetworkError) return yield* requested
      if (requested !== undefined && requested.family !== destination.family) {
        return yield* networkError("InvalidAddress", "connect", target)
      }
      const localIp = requested === undefined || requested.wildcard
        ? firstAddress(host, destination.family)
        : requested.ip
      if (localIp === undefined) return yield* networkError("Unreachable", "connect", target)
      const handlers = yield* FiberSet.make<void, never>()
      const run = yield* FiberSet.runtime(handlers)<never>()
      const local: LocalAddress = { family: destination.family, ip: localIp }
      const port = allocatePort(host.tcpPorts, host, "tcp", local, options?.localPort, undefined, 0, "connect")
      if (port instanceof Network.NetworkError) return yield* port
      const reservation = portKey(localIp, port)
      const connection = this.newConnection(
        { family: destination.family, ip: localIp, port, transport: "tcp" },
        { ...destination, transport: "tcp" },
        "SynSent",
        run,
        reservation
      )
      if (host.tcpConnections.has(connection.key)) return yield* networkError("AddressInUse", "connect", target)
      reserve(host.tcpPorts, reservation)
      host.tcpConnections.set(connection.key, connection)
      yield* Effect.addFinalizer(() => Effect.sync(() => this.closeConnection(host, connection)))
      this.sendSegment(host, connection, "SYN", emptyBytes)
      yield* Deferred.await(connection.connected).pipe(
        Effect.timeoutFail({
          duration: this.connectTimeout,
          onTimeout: () => networkError("ConnectFailed", "connect", target)
        }),
        Effect.onExit((exit) =>
          Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => this.closeConnection(host, connection))
        )
      )
      return this.streamSocket(host, connection)
    })
  }
}

const emptyBytes = new Uint8Array(0)

const reserve = (ports: Map<string, number>, key: string): void => {
  ports.set(key, (ports.get(key) ?? 0) + 1)
}

const releaseReservation = (ports: Map<string, number>, key: string): void => {
  const count = ports.get(key)
  if (count === undefined) return
  if (count <= 1) ports.delete(key)
  else ports.set(key, count - 1)
}

const handlerDefect = (run: Run, error: unknown): void => {
  run(Effect.logError("VirtualNetwork: a socket handler threw", Cause.die(error)))
}

const callDatagramHandler = (
  run: Run,
  handler: Network.DatagramHandler,
  data: Uint8Array,
  remote: TransportAddress.SocketAddress
): void => {
  let result: Effect.Effect<void> | void
  try {
    result = handler(data, remote)
  } catch (error) {
    handlerDefect(run, error)
    return
  }
  if (result !== undefined && Effect.isEffect(result)) run(result)
}

const callChunkHandler = (run: Run, handler: Network.ChunkHandler, chunk: Uint8Array): void => {
  let result: Effect.Effect<void> | void
  try {
    result = handler(chunk)
  } catch (error) {
    handlerDefect(run, error)
    return
  }
  if (result !== undefined && Effect.isEffect(result)) run(result)
}

// -----------------------------------------------------------------------------
// constructors
// -----------------------------------------------------------------------------

/**
 * Makes an empty world for the lifetime of the scope, on the `Clock` (and, without a `seed`, the `Random`) of the
 * fiber that makes it. Closing the scope stops its delivery fiber; packets still in flight are lost.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<World, never, Scope.Scope> =>
  Effect.gen(function*() {
    const latency = Duration.toMillis(Duration.decode(options?.latency ?? defaultLatency))
    if (!Number.isFinite(latency) || latency < 0) {
      return yield* Effect.dieMessage(`VirtualNetwork.make: invalid latency ${String(options?.latency)}`)
    }
    const clock = yield* Effect.clock
    const random = options?.seed === undefined ? yield* Effect.random : Random.make(options.seed)
    const driver = yield* FiberHandle.make<void, never>()
    const runDriver = yield* FiberHandle.runtime(driver)<never>()
    const simulation = new Simulation(
      clock,
      random,
      latency,
      Duration.decode(options?.connectTimeout ?? defaultConnectTimeout),
      options?.trace ?? false,
      options?.logLimit ?? 1000,
      runDriver
    )
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        simulation.closed = true
        simulation.queue.clear()
      })
    )
    const world: World = {
      addHost: (host) => simulation.addHost(host),
      host: (name) => Option.map(Option.fromNullable(simulation.hostsByName.get(name)), (entry) => entry.host),
      stats: Effect.sync(() => ({
        sent: simulation.sent,
        delivered: simulation.delivered,
        dropped: { ...simulation.dropped },
        drops: simulation.drops.toArray()
      })),
      trace: Effect.sync(() => simulation.traceLog.toArray()),
      resetStats: Effect.sync(() => {
        simulation.sent = 0
        simulation.delivered = 0
        simulation.dropped = emptyDropCounts()
        simulation.drops.clear()
        simulation.traceLog.clear()
      })
    }
    return world
  })

/**
 * Provides a host's sockets as the `Network` service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (host: Host): Layer.Layer<Network.Network> => Layer.succeed(Network.Network, host.network)
