/**
 * A simulated internet that implements the same `Network` service as real sockets, so STUN, TURN and ICE run on
 * it unchanged. Time is Effect's `Clock` (a packet's flight is a sleep on the world's clock, so `TestClock.adjust`
 * moves the whole world) and randomness is Effect's `Random`; nothing reads the real clock.
 *
 * Topology. A world holds public hosts on the internet and sites. A site is a private network behind a router: it
 * has an IPv4 NAT with an RFC 4787 behaviour (`NatBehavior`) and one or more external addresses, and/or public IPv6
 * for its hosts with a filtering behaviour but no translation, a firewall (UDP blocked; only some TCP ports
 * allowed), and an access link with latency, jitter, loss and MTU. A site may sit inside another site (`parent`):
 * its external addresses are then addresses of the parent's private network, and its packets go through both NATs
 * (carrier-grade NAT). Each site's private IPv4 space is its own (two sites may both use 192.168.1.2); IPv6
 * addresses are global. Each host has a `Network.Service` of its own (`host.network`, or `layer(host)`).
 *
 * Links and latency. A packet travels hop by hop: from node to node inside one network, where a node is a host, a
 * site's router seen from its parent network, or a network's own router (its gateway). A hop costs the access link
 * of the node it leaves (a host's `latency`, or a site's `latency` when its router sends up into the parent),
 * plus the internet's `latency` (default 10 ms) when the hop crosses the internet, plus the access link of the
 * node it reaches; a router's own side of its LAN costs nothing. So public host to public host is
 * `a.latency + world.latency + b.latency`, as before sites existed; a private host to a public one adds the
 * site's latency; two hosts of one site talk directly (`a.latency + b.latency`, no NAT); and a packet from a host
 * to one of its own addresses takes 0 ms, still delivered asynchronously by the world's delivery fiber. Each link
 * crossed adds a whole number of milliseconds of jitter drawn uniformly from [0, jitter], may drop a datagram with
 * probability `loss` (reason `Loss`), and drops datagrams whose IP packet (payload + 8 bytes of UDP header + 20 of
 * IPv4 or 40 of IPv6) is larger than its `mtu` (reason `Mtu`; fragmentation is not simulated). UDP may be
 * reordered by jitter; TCP never is (a segment never arrives before an earlier segment of its connection), is
 * never dropped for size (TCP fits its segments to the path), and is not lost: a loss on a link delays the segment
 * by a retransmission timeout instead (1 s, doubling, RFC 6298 §2 and §5.5) and only the seventh loss in a row
 * drops it. Packets that fall due at the same instant are handled in the order they were sent. Loss, jitter and
 * random external ports are drawn from one generator seeded from the world's `Random` when the world is made (or
 * from `seed`), so a seeded world drops the same packets every run.
 *
 * NAT (RFC 4787). A router handles a packet when the packet reaches it (not when it was sent). Outbound, the
 * packet's internal endpoint gets a mapping: one per internal endpoint (endpoint-independent mapping), per
 * internal endpoint and destination IP (address-dependent), or per internal endpoint and destination IP and port
 * (address-and-port-dependent). A new mapping takes an external IP by paired pooling (an internal IP keeps the
 * external IP it was first given, REQ-2) and an external port by the behaviour's `portAssignment`: `preserving`
 * (the internal port when free on that IP, otherwise the next free one), `sequential` (counting up from 49152
 * across all mappings), or `random` (a random port of 1024–65535, then the next free one). Every outbound packet
 * records its destination in the mapping and refreshes it: a mapping expires exactly `mappingLifetimeMs` after its
 * last outbound packet (REQ-6), checked against the clock when a packet asks, no timer per mapping; inbound packets
 * refresh it only with `inboundRefresh`. Inbound, a packet to an external endpoint without a mapping is dropped
 * (`NoMapping`), to an expired one `MappingExpired`, and one whose source the filtering behaviour does not admit
 * `Filtered` (endpoint-independent: anyone; address-dependent: an IP the mapping sent to; address-and-port-
 * dependent: an IP and port it sent to); otherwise its destination is rewritten to the internal endpoint. A packet
 * from inside to the NAT's own external address is hairpinned (RFC 4787 §6): translated out (its source becomes
 * the sender's mapping), then handled as inbound (filtering included) when `hairpinning` is on, dropped
 * (`NoHairpin`) when off. TCP (RFC 5382): an outbound SYN creates a mapping with the same behaviours, other
 * outbound segments need one; an inbound SYN is filtered like any inbound packet and dropped without an answer when
 * there is no mapping (no port forwarding), so a connect to a NAT fails with `ConnectFailed`. TCP mappings live
 * `tcpMappingLifetime` (default 2 h 4 min, RFC 5382 REQ-5) and are refreshed by segments in both directions.
 *
 * IPv6 in a site needs no translation: a host's IPv6 addresses are public, and the router keeps "pinholes" with
 * the same semantics as endpoint-independent mappings that leave the address alone, filtered by the site's IPv6
 * filtering behaviour. The firewall (`blockUdp`, `allowTcpPorts`) applies to every packet that crosses the router,
 * in either direction and in both families, but not to hairpinned ones.
 *
 * UDP. `bindUdp` accepts one of the host's addresses or the wildcard of a family the host has; port 0 takes the
 * next free ephemeral port from a per-host counter starting at 49152, `portRange` starts from a random port of the
 * range (the world's `Random`) and takes the first free one. A datagram leaves with the socket's address as its
 * source (a wildcard socket uses the host's first address of its family), the receiver is given a copy of the
 * bytes (so senders may reuse buffers), and a handler that returns an Effect has it run in a fiber owned by the
 * receiving socket. IPv4 and IPv6 are separate port spaces; a wildcard bind conflicts with a specific bind of the
 * same family and port, as on Linux without `SO_REUSEADDR`.
 *
 * Multicast. `bindMulticastUdp` binds the family's wildcard at a port with address reuse (any number of multicast
 * sockets share the port; a plain socket on it conflicts both ways) and joins a group. A datagram any UDP socket
 * sends to a multicast address reaches every host of the sender's own network that has a socket joined to that
 * group and port — the hosts of its site's private network, or the public hosts for a public sender — and there
 * every joined socket, the sender's host and socket included (loopback, 0 ms). It is never forwarded by a router,
 * so it never crosses a NAT (link-local scope, as 224.0.0.251 and ff02::fb are). Each copy costs the sender's
 * access link (crossed once for all copies), the network's link (the internet's, per copy) and the receiver's
 * access link, with their loss, jitter and MTU. A unicast datagram to a port held only by multicast sockets goes
 * to the first one bound.
 *
 * TCP is simulated as segments (SYN, SYN-ACK, DATA, FIN, RST), each routed like a datagram: `connectTcp` completes
 * after one round trip, or fails with `ConnectionRefused` after one round trip when nothing listens (the RST), or
 * with `ConnectFailed` after `connectTimeout` (default 30 s) when no answer comes; the listener accepts on the
 * SYN and runs `onConnection` in a fiber and scope of its own, inside the listener's scope (closing the listener
 * ends its connections). Closing either side sends a FIN, which ends the peer's `closed` successfully one way
 * later; a segment for a connection that no longer exists is answered with an RST, which fails the peer's
 * `closed` with `ConnectionReset`. The simulator does not encrypt: `connectTls` opens a plain simulated TCP
 * connection (its certificate options are ignored) and `listenTls` is a plain TCP listener (its certificate and key
 * are ignored), so engines that use TLS run unchanged, and a TLS client reaches a TLS listener.
 *
 * Accounting. The world counts packets sent by hosts and delivered to hosts, and every drop by reason, and keeps a
 * bounded log of drops (where, why, and for router and link drops a detail such as "filtered by APDF at NAT a");
 * with `trace: true` it also keeps a bounded log of every packet sent, forwarded by a router (with the addresses
 * before and after its rewrite), delivered and dropped, which `formatTraceEvent` turns into text.
 *
 * @since 0.1.0
 */
import type { Clock, Scope } from "effect"
import {
  Cause,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberHandle,
  FiberId,
  FiberSet,
  Hash,
  Layer,
  Option,
  Random,
  TestClock,
  TestContext,
  Utils
} from "effect"
import type { Binding } from "./internal/natTable.js"
import { BindingTable, expiresAt, permits } from "./internal/natTable.js"
import * as NatBehavior from "./NatBehavior.js"
import * as Network from "./Network.js"
import * as TransportAddress from "./TransportAddress.js"

// -----------------------------------------------------------------------------
// models
// -----------------------------------------------------------------------------

/**
 * Why the simulator dropped a packet.
 *
 * - `NoHost`: no node of the world has the destination IP (also: an IPv4 packet leaving a site that has no NAT, an
 *   IPv6 packet leaving or entering a site without IPv6).
 * - `PortUnreachable`: the destination host has no socket (UDP) or listener (TCP SYN) on that port.
 * - `SocketClosed`: the socket or connection the packet was for has closed.
 * - `FamilyMismatch`: an IPv4 socket sent to an IPv6 address or the other way round (the send also fails).
 * - `ReceiveBufferFull`: the socket has no handler and already holds `Network.maxPendingDatagrams` datagrams.
 * - `Filtered`: a NAT's (or an IPv6 router's) filtering behaviour does not admit the sender.
 * - `NoMapping`: an inbound packet to an external endpoint (IPv6: an internal endpoint) with no mapping (pinhole);
 *   an outbound TCP segment other than SYN without one; or no free external port.
 * - `MappingExpired`: the mapping exists but its lifetime has passed since its last refresh.
 * - `NoHairpin`: a packet from inside to the NAT's own external address, with hairpinning off.
 * - `Blocked`: the site's firewall (UDP blocked, or a TCP port not allowed).
 * - `Mtu`: a datagram larger than a link's MTU.
 * - `Loss`: a link's random loss.
 *
 * @since 0.1.0
 * @category models
 */
export type DropReason =
  | "NoHost"
  | "PortUnreachable"
  | "SocketClosed"
  | "FamilyMismatch"
  | "ReceiveBufferFull"
  | "Filtered"
  | "NoMapping"
  | "MappingExpired"
  | "NoHairpin"
  | "Blocked"
  | "Mtu"
  | "Loss"

/**
 * Every drop reason, in the order `Stats.dropped` lists them.
 *
 * @since 0.1.0
 * @category constants
 */
export const dropReasons: ReadonlyArray<DropReason> = [
  "NoHost",
  "PortUnreachable",
  "SocketClosed",
  "FamilyMismatch",
  "ReceiveBufferFull",
  "Filtered",
  "NoMapping",
  "MappingExpired",
  "NoHairpin",
  "Blocked",
  "Mtu",
  "Loss"
]

/**
 * What a packet is: a UDP datagram or one TCP segment.
 *
 * @since 0.1.0
 * @category models
 */
export type PacketKind = "datagram" | "SYN" | "SYN-ACK" | "DATA" | "FIN" | "RST"

/**
 * One dropped packet: when (virtual milliseconds on the world's clock), where (a host name, a site name, or
 * `"internet"`), what (as it was addressed where it was dropped: after any NAT rewrite on its way) and why. Drops
 * by routers and links carry a `detail`, such as `"filtered by APDF at NAT a"`.
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
  readonly detail?: string
}

/**
 * One entry of the packet trace (kept only when the world was made with `trace: true`):
 *
 * - `sent`: a host sent the packet (`where` is the host);
 * - `forwarded`: a site's router passed it on (`where` is the site); `from` and `to` are the packet as it leaves
 *   the router and `before` the packet as it arrived, when the router rewrote it; `detail` says when a new
 *   mapping was made, or that the packet was hairpinned;
 * - `delivered`: it reached a socket or connection of host `where`;
 * - `dropped`: it was dropped at `where` for `reason` (and `detail`).
 *
 * @since 0.1.0
 * @category models
 */
export interface TraceEvent {
  readonly at: number
  readonly event: "sent" | "forwarded" | "delivered" | "dropped"
  readonly where: string
  readonly protocol: "udp" | "tcp"
  readonly kind: PacketKind
  readonly from: TransportAddress.SocketAddress
  readonly to: TransportAddress.SocketAddress
  readonly size: number
  readonly before?: { readonly from: TransportAddress.SocketAddress; readonly to: TransportAddress.SocketAddress }
  readonly reason?: DropReason | undefined
  readonly detail?: string | undefined
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
 * The properties of a link: the one-way latency, the jitter (a whole number of milliseconds in [0, jitter] added
 * per packet), the probability that a datagram is lost (0..1), and the largest IP packet it carries.
 *
 * @since 0.1.0
 * @category models
 */
export interface LinkOptions {
  readonly latency?: Duration.DurationInput | undefined
  readonly jitter?: Duration.DurationInput | undefined
  /** Probability in [0, 1] that a datagram is lost on this link (TCP segments are delayed instead). */
  readonly loss?: number | undefined
  /** The largest IP packet, in bytes (payload + UDP or TCP header + IP header); none by default. */
  readonly mtu?: number | undefined
}

/**
 * Options of a world. `latency`, `jitter`, `loss` and `mtu` are the internet's, crossed by every packet between
 * public nodes (public hosts and the routers of top-level sites).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends LinkOptions {
  /** How long `connectTcp` waits for a SYN-ACK or RST before failing with `ConnectFailed`. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Keep a log of every packet sent, forwarded, delivered and dropped (default false). */
  readonly trace?: boolean | undefined
  /** The most entries the drop log and the trace each keep; older ones are forgotten (default 1000). */
  readonly logLimit?: number | undefined
  /**
   * Seed of the world's own `Random` (port ranges) and of its loss, jitter and random-port generator; without it
   * the world uses the `Random` of the fiber that made it, and seeds the generator from it.
   */
  readonly seed?: unknown
}

/**
 * A host to add to the world: a public host on the internet, or, with `site`, a host on that site's private
 * network. The host's `latency`, `jitter`, `loss` and `mtu` are those of its access link.
 *
 * @since 0.1.0
 * @category models
 */
export interface HostOptions extends LinkOptions {
  /** Unique within the world (hosts and sites); drop records name the host where a packet was dropped. */
  readonly name: string
  /**
   * IPv4 and/or IPv6 addresses; the first of each family is the default source. IPv4 addresses are unique within
   * the host's network and the networks around and inside it (two sibling sites may reuse private addresses); IPv6
   * addresses are public and unique in the world.
   */
  readonly addresses: ReadonlyArray<string>
  /** The site whose private network the host is on; omitted: a public host. */
  readonly site?: string | undefined
}

/**
 * A site's firewall, on its router: it applies to every packet crossing the router, in both directions and both
 * families (hairpinned packets do not leave the site and are not checked).
 *
 * @since 0.1.0
 * @category models
 */
export interface Firewall {
  /** Drop all UDP. */
  readonly blockUdp?: boolean | undefined
  /** Allow TCP only to these remote ports (and from them, inbound), as strict corporate networks allow only 443. */
  readonly allowTcpPorts?: ReadonlyArray<number> | undefined
}

/**
 * IPv6 on a site: its hosts' IPv6 addresses are public; the router translates nothing but filters inbound packets.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ipv6Options {
  readonly filtering: NatBehavior.Filtering
  /** Idle lifetime of a UDP pinhole (default the NAT's `mappingLifetimeMs`, or 300 s). */
  readonly lifetime?: Duration.DurationInput | undefined
}

/**
 * A site to add to the world: a private network behind a router. The link options are those of the router's
 * access link to the parent network (the internet, or the parent site's private network).
 *
 * @since 0.1.0
 * @category models
 */
export interface SiteOptions extends LinkOptions {
  /** Unique within the world (hosts and sites); drop records name the site where its router dropped a packet. */
  readonly name: string
  /** The IPv4 NAT; omitted: the site forwards no IPv4 (its hosts may still use IPv4 among themselves). */
  readonly nat?: NatBehavior.NatBehavior | undefined
  /**
   * The NAT's external IPv4 addresses (usually one; needed with `nat`): public addresses, or, inside a parent
   * site, addresses on the parent's private network.
   */
  readonly externalAddresses?: ReadonlyArray<string> | undefined
  /** The enclosing site (nested NAT, carrier-grade NAT); omitted: the site's router is on the internet. */
  readonly parent?: string | undefined
  /** Dual-stack or IPv6-only: hosts have public IPv6 addresses and the router filters inbound as configured. */
  readonly ipv6?: Ipv6Options | undefined
  readonly firewall?: Firewall | undefined
  /** Idle lifetime of TCP mappings and pinholes (default {@link defaultTcpMappingLifetime}). */
  readonly tcpMappingLifetime?: Duration.DurationInput | undefined
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
  /** The one-way latency of the host's access link. */
  readonly latency: Duration.Duration
  /** The site the host is in; `undefined` for a public host. */
  readonly site: string | undefined
  /** The host's sockets: what `Network.Network` is when this host's layer is provided. */
  readonly network: Network.Service
}

/**
 * A NAT mapping, as `Site.mappings` shows it: `expiresAt` is the virtual instant (ms) it expires unless refreshed.
 *
 * @since 0.1.0
 * @category models
 */
export interface NatMapping {
  readonly protocol: "udp" | "tcp"
  readonly internal: TransportAddress.SocketAddress
  readonly external: TransportAddress.SocketAddress
  readonly expiresAt: number
}

/**
 * An IPv6 pinhole (an internal endpoint that has sent out, and may be answered), as `Site.pinholes` shows it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Pinhole {
  readonly protocol: "udp" | "tcp"
  readonly internal: TransportAddress.SocketAddress
  readonly expiresAt: number
}

/**
 * A site of the world.
 *
 * @since 0.1.0
 * @category models
 */
export interface Site {
  readonly name: string
  /** The enclosing site, if any. */
  readonly parent: string | undefined
  readonly nat: NatBehavior.NatBehavior | undefined
  /** The NAT's external IPv4 addresses in canonical form (empty without a NAT). */
  readonly externalAddresses: ReadonlyArray<string>
  readonly ipv6: { readonly filtering: NatBehavior.Filtering } | undefined
  /** The NAT's live (unexpired) mappings, UDP and TCP, oldest first. */
  readonly mappings: Effect.Effect<ReadonlyArray<NatMapping>>
  /** The router's live IPv6 pinholes, oldest first. */
  readonly pinholes: Effect.Effect<ReadonlyArray<Pinhole>>
  /** Forgets every mapping and pinhole, as a router reboot does. */
  readonly resetMappings: Effect.Effect<void>
}

/**
 * A simulated internet.
 *
 * @since 0.1.0
 * @category models
 */
export interface World {
  /** Adds a host: public, or on a site's private network. */
  readonly addHost: (options: HostOptions) => Effect.Effect<Host, TopologyError>
  /** Adds a site: a private network behind a router (the parent site, if any, must exist). */
  readonly addSite: (options: SiteOptions) => Effect.Effect<Site, TopologyError>
  /** The host of that name. */
  readonly host: (name: string) => Option.Option<Host>
  /** The site of that name. */
  readonly site: (name: string) => Option.Option<Site>
  /** A snapshot of the counters and the drop log. */
  readonly stats: Effect.Effect<Stats>
  /** A snapshot of the packet trace (empty unless the world was made with `trace: true`). */
  readonly trace: Effect.Effect<ReadonlyArray<TraceEvent>>
  /** Sets the counters to zero and empties the drop log and the trace. */
  readonly resetStats: Effect.Effect<void>
}

/**
 * A topology that cannot be built: a name or address used twice, an address that does not parse or is of the
 * wrong family, a parent site that does not exist, a latency or jitter that is not a finite duration, or another
 * option out of range (loss outside [0, 1], an MTU below 68, a NAT without external addresses, a lifetime that is
 * not positive, a firewall port that is not a port).
 *
 * @since 0.1.0
 * @category errors
 */
export class TopologyError extends Data.TaggedError("TopologyError")<{
  readonly reason:
    | "DuplicateName"
    | "DuplicateAddress"
    | "InvalidAddress"
    | "InvalidLatency"
    | "UnknownSite"
    | "InvalidOption"
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

/**
 * The idle lifetime of a TCP mapping: RFC 5382 REQ-5, "established connection idle-timeout" of at least
 * 2 hours and 4 minutes.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTcpMappingLifetime: Duration.Duration = Duration.minutes(124)

/**
 * The first retransmission delay of a TCP segment lost on a link: the initial RTO of RFC 6298 §2.1 (1 s); each
 * further loss of the same segment doubles it (§5.5).
 *
 * @since 0.1.0
 * @category constants
 */
export const tcpRetransmissionTimeout: Duration.Duration = Duration.seconds(1)

/**
 * The smallest MTU a link may have: 68 bytes, the IPv4 minimum (RFC 791).
 *
 * @since 0.1.0
 * @category constants
 */
export const minimumMtu = 68

/**
 * One trace event as a line of text, for debugging: `"12 ms forwarded by home: udp datagram 10.0.0.2:5000 ->
 * 192.0.2.1:3478 became 203.0.113.1:5000 -> 192.0.2.1:3478 (20 bytes; new mapping)"`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatTraceEvent = (event: TraceEvent): string => {
  const what = `${event.protocol} ${event.kind}`
  const route = `${TransportAddress.format(event.from)} -> ${TransportAddress.format(event.to)}`
  const notes = [`${event.size} bytes`]
  if (event.reason !== undefined) notes.push(event.reason)
  if (event.detail !== undefined) notes.push(event.detail)
  const tail = ` (${notes.join("; ")})`
  switch (event.event) {
    case "sent":
      return `${event.at} ms sent by ${event.where}: ${what} ${route}${tail}`
    case "forwarded": {
      const before = event.before === undefined
        ? route
        : `${TransportAddress.format(event.before.from)} -> ${TransportAddress.format(event.before.to)} became ${route}`
      return `${event.at} ms forwarded by ${event.where}: ${what} ${before}${tail}`
    }
    case "delivered":
      return `${event.at} ms delivered to ${event.where}: ${what} ${route}${tail}`
    case "dropped":
      return `${event.at} ms dropped at ${event.where}: ${what} ${route}${tail}`
  }
}

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

/** A packet due at a node: a host (delivery) or a site's router (entered from outside when `inbound`). */
interface Arrival {
  readonly at: number
  readonly seq: number
  readonly node: HostState | SiteState
  readonly inbound: boolean
  readonly packet: Packet
  /** The sending TCP connection, whose segments must not overtake each other. */
  readonly flow: TcpConnection | undefined
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

/** A multicast socket: a UDP endpoint bound to the wildcard with address reuse, joined to `group`. */
interface MulticastEndpoint extends UdpEndpoint {
  readonly group: string
}

/** Key of a multicast group and port, in `Simulation.multicastMembers`. */
const groupKey = (group: string, port: number): string => group + "|" + port

/** The UDP ports in use on a host: plain sockets and multicast sockets. */
const udpPortsInUse = (host: HostState): { has(key: string): boolean } =>
  host.udpShared.size === 0 ? host.udp : { has: (key) => host.udp.has(key) || host.udpShared.has(key) }

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
  /** Per node on the path, the arrival time there of the last segment sent, so that no segment overtakes it. */
  readonly lastAt: Map<HostState | SiteState, number>
}

interface HostState {
  readonly kind: "host"
  readonly name: string
  readonly addresses: ReadonlyArray<LocalAddress>
  /** The network the host is on. */
  readonly realm: Realm
  /** The host's access link. */
  readonly link: Link
  readonly udp: Map<string, UdpEndpoint>
  /** Keys of UDP sockets that closed and were not bound again, to tell `SocketClosed` from `PortUnreachable`. */
  readonly udpClosed: Set<string>
  /** Multicast sockets (bound with address reuse), by `portKey` of the family's wildcard and the port. */
  readonly udpShared: Map<string, Array<MulticastEndpoint>>
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
// internals: links, networks, sites
// -----------------------------------------------------------------------------

/** A link's properties, in milliseconds and bytes; `name` is where drops on it are recorded. */
interface Link {
  readonly name: string
  readonly latency: number
  readonly jitter: number
  readonly loss: number
  readonly mtu: number
}

/** A network: the internet, or a site's private network. */
interface Realm {
  readonly name: string
  /** The site whose private network this is (set once, when the site is made); `undefined` for the internet. */
  site: SiteState | undefined
  /** Who answers for an IPv4 address here: a host, or a child site's router (its external addresses). */
  readonly v4: Map<string, HostState | SiteState>
  /** The internet's link; a private network adds nothing of its own. */
  readonly link: Link | undefined
}

interface SiteState {
  readonly kind: "site"
  readonly name: string
  /** The network the router's external side is on. */
  readonly outside: Realm
  /** The site's private network. */
  readonly inside: Realm
  /** The router's access link to `outside`. */
  readonly link: Link
  readonly nat: NatBehavior.NatBehavior | undefined
  readonly externals: ReadonlySet<string>
  readonly natTable: BindingTable | undefined
  readonly ipv6: NatBehavior.Filtering | undefined
  readonly pinholes: BindingTable | undefined
  readonly blockUdp: boolean
  readonly allowTcpPorts: ReadonlySet<number> | undefined
}

/** The size of a packet on the wire: payload, UDP (8) or TCP (20) header, IPv4 (20) or IPv6 (40) header. */
const ipPacketSize = (packet: Packet): number =>
  packet.data.length + (packet.protocol === "udp" ? 8 : 20) + (packet.destination.family === "IPv4" ? 20 : 40)

/** Whether `outer` is `inner` or one of the networks around it. */
const encloses = (outer: Realm, inner: Realm): boolean => {
  for (let realm: Realm | undefined = inner; realm !== undefined; realm = realm.site?.outside) {
    if (realm === outer) return true
  }
  return false
}

const millisOf = (input: Duration.DurationInput | undefined, fallback: Duration.Duration): number | undefined => {
  if (input === undefined) return Duration.toMillis(fallback)
  const decoded = Duration.decodeUnknown(input)
  if (Option.isNone(decoded)) return undefined
  const millis = Duration.toMillis(decoded.value)
  return Number.isFinite(millis) && millis >= 0 ? millis : undefined
}

/** Validates a link's options. */
const makeLink = (
  name: string,
  options: LinkOptions,
  defaultLatency: Duration.Duration
): Link | TopologyError => {
  const latency = millisOf(options.latency, defaultLatency)
  if (latency === undefined) {
    return new TopologyError({ reason: "InvalidLatency", detail: `${name}: latency ${String(options.latency)}` })
  }
  const jitter = millisOf(options.jitter, Duration.zero)
  if (jitter === undefined) {
    return new TopologyError({ reason: "InvalidLatency", detail: `${name}: jitter ${String(options.jitter)}` })
  }
  const loss = options.loss ?? 0
  if (!(loss >= 0 && loss <= 1)) {
    return new TopologyError({ reason: "InvalidOption", detail: `${name}: loss ${loss} is not in [0, 1]` })
  }
  const mtu = options.mtu ?? Infinity
  if (!(mtu === Infinity || (Number.isInteger(mtu) && mtu >= minimumMtu))) {
    return new TopologyError({ reason: "InvalidOption", detail: `${name}: MTU ${mtu}` })
  }
  return { name, latency, jitter: Math.floor(jitter), loss, mtu }
}

const toNatMapping = (binding: Binding): NatMapping => ({
  protocol: binding.protocol,
  internal: binding.internal,
  external: binding.external,
  expiresAt: expiresAt(binding)
})

const toPinhole = (binding: Binding): Pinhole => ({
  protocol: binding.protocol,
  internal: binding.internal,
  expiresAt: expiresAt(binding)
})

/** How many times a TCP segment may be lost on one link before it is dropped (six retransmissions). */
const maxTcpRetransmissions = 6

// -----------------------------------------------------------------------------
// the simulation
// -----------------------------------------------------------------------------

const emptyDropCounts = (): Record<DropReason, number> => ({
  NoHost: 0,
  PortUnreachable: 0,
  SocketClosed: 0,
  FamilyMismatch: 0,
  ReceiveBufferFull: 0,
  Filtered: 0,
  NoMapping: 0,
  MappingExpired: 0,
  NoHairpin: 0,
  Blocked: 0,
  Mtu: 0,
  Loss: 0
})

class Simulation {
  readonly hostsByName = new Map<string, { readonly state: HostState; readonly host: Host }>()
  readonly sitesByName = new Map<string, { readonly state: SiteState; readonly site: Site }>()
  readonly internet: Realm
  /** Every network: the internet first, then each site's, in the order the sites were added. */
  readonly realms: Array<Realm> = []
  /** Who has each IPv6 address (IPv6 addresses are global). */
  readonly v6 = new Map<string, HostState>()
  /** Every address in canonical form, to skip canonicalizing destinations that are already canonical. */
  readonly knownIps = new Set<string>()
  readonly queue = new ArrivalQueue()
  /** The hosts with a multicast socket joined to a group and port, by `groupKey`. */
  readonly multicastMembers = new Map<string, Set<HostState>>()
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
  readonly tcpRto: number

  constructor(
    readonly clock: Clock.Clock,
    readonly random: Random.Random,
    readonly prng: Utils.PCGRandom,
    internetLink: Link,
    readonly connectTimeout: Duration.Duration,
    readonly tracing: boolean,
    logLimit: number,
    readonly runDriver: Run
  ) {
    this.drops = new BoundedLog(logLimit)
    this.traceLog = new BoundedLog(logLimit)
    this.internet = { name: "internet", site: undefined, v4: new Map(), link: internetLink }
    this.realms.push(this.internet)
    this.tcpRto = Duration.toMillis(tcpRetransmissionTimeout)
  }

  now(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  // --- the path of a packet -------------------------------------------------

  /** Puts a packet on the wire. `connection` keeps a TCP connection's segments in order. */
  transmit(from: HostState, packet: Packet, connection?: TcpConnection): void {
    if (this.closed) return
    this.sent++
    if (this.tracing) this.traceEvent("sent", packet, from.name)
    this.hop(packet, from.realm, from, connection, this.now())
  }

  /**
   * The next node of a packet's path in `realm`: the host that has the destination IP there, the router of the
   * child site it lies behind (its external IPv4 address, or for IPv6 the site that encloses the owner), or else
   * the realm's own router (`realm.site`), which takes it out; `undefined` on the internet when nobody has the IP.
   */
  nextNode(realm: Realm, destination: TransportAddress.SocketAddress): HostState | SiteState | undefined {
    if (destination.family === "IPv4") return realm.v4.get(destination.ip) ?? realm.site
    const owner = this.v6.get(destination.ip)
    if (owner !== undefined) {
      if (owner.realm === realm) return owner
      for (let site = owner.realm.site; site !== undefined; site = site.outside.site) {
        if (site.outside === realm) return site
      }
    }
    return realm.site
  }

  /**
   * One hop: from `origin` (a host, a child site's router, or `realm`'s own router after it handled the packet)
   * across `realm` to the next node, through the origin's access link, the realm's link (the internet's) and the
   * next node's access link. Queues the arrival there, or records why a link dropped the packet.
   */
  hop(
    packet: Packet,
    realm: Realm,
    origin: HostState | SiteState,
    flow: TcpConnection | undefined,
    at: number
  ): void {
    const next = this.nextNode(realm, packet.destination)
    const gateway = realm.site
    if (next === undefined || (next === gateway && origin === gateway)) {
      this.drop(packet, "NoHost", realm.name, undefined, at)
      return
    }
    let delay = 0
    if (next !== origin) {
      if (origin !== gateway) {
        const d = this.linkDelay(origin.link, packet, at)
        if (d < 0) return
        delay += d
      }
      if (realm.link !== undefined) {
        const d = this.linkDelay(realm.link, packet, at)
        if (d < 0) return
        delay += d
      }
      if (next !== gateway) {
        const d = this.linkDelay(next.link, packet, at)
        if (d < 0) return
        delay += d
      }
    }
    let arrival = at + delay
    if (flow !== undefined) {
      const last = flow.lastAt.get(next)
      if (last !== undefined && arrival < last) arrival = last
      flow.lastAt.set(next, arrival)
    }
    this.queue.push({
      at: arrival,
      seq: this.seq++,
      node: next,
      inbound: next.kind === "site" && next !== gateway,
      packet,
      flow
    })
    if (!this.draining && arrival < this.armedAt) this.arm()
  }

  /** A link's delay for this packet (latency, jitter, TCP retransmissions), or -1 when it drops the packet. */
  linkDelay(link: Link, packet: Packet, at: number): number {
    let delay = link.latency
    if (packet.protocol === "udp") {
      if (link.mtu !== Infinity) {
        const size = ipPacketSize(packet)
        if (size > link.mtu) {
          this.drop(packet, "Mtu", link.name, `${size} bytes > MTU ${link.mtu} on ${link.name}`, at)
          return -1
        }
      }
      if (link.loss > 0 && this.prng.number() < link.loss) {
        this.drop(packet, "Loss", link.name, `lost on ${link.name}`, at)
        return -1
      }
    } else if (link.loss > 0) {
      let rto = this.tcpRto
      for (let losses = 0; this.prng.number() < link.loss; losses++) {
        if (losses === maxTcpRetransmissions) {
          this.drop(packet, "Loss", link.name, `lost ${losses + 1} times on ${link.name}`, at)
          return -1
        }
        delay += rto
        rto *= 2
      }
    }
    if (link.jitter > 0) delay += Math.floor(this.prng.number() * (link.jitter + 1))
    return delay
  }

  /** The firewall's verdict on a packet crossing the router: why it is blocked, or undefined. */
  firewall(site: SiteState, packet: Packet, outbound: boolean): string | undefined {
    if (packet.protocol === "udp") return site.blockUdp ? `UDP blocked at ${site.name}` : undefined
    const allowed = site.allowTcpPorts
    if (allowed === undefined) return undefined
    const port = outbound ? packet.destination.port : packet.source.port
    return allowed.has(port) ? undefined : `TCP ${outbound ? "to" : "from"} port ${port} blocked at ${site.name}`
  }

  /** A packet from inside reaches the site's router: firewall, mapping (or pinhole), hairpin, then out. */
  outbound(site: SiteState, packet: Packet, at: number, flow: TcpConnection | undefined): void {
    const v6 = packet.destination.family === "IPv6"
    const hairpin = !v6 && site.externals.has(packet.destination.ip)
    if (!hairpin) {
      const blocked = this.firewall(site, packet, true)
      if (blocked !== undefined) {
        this.drop(packet, "Blocked", site.name, blocked, at)
        return
      }
    }
    const table = v6 ? site.pinholes : site.natTable
    if (table === undefined) {
      this.drop(packet, "NoHost", site.name, `no ${v6 ? "IPv6" : "IPv4"} beyond ${site.name}`, at)
      return
    }
    const create = packet.protocol === "udp" || packet.kind === "SYN"
    const binding = table.outbound(packet.protocol, packet.source, packet.destination, create, at)
    if (typeof binding === "string") {
      const detail = binding === "NoPort"
        ? `no free external port at NAT ${site.name}`
        : `${binding === "NoMapping" ? "no" : "expired"} ${v6 ? "pinhole" : "mapping"} for ${
          TransportAddress.format(packet.source)
        }/${packet.protocol} at ${site.name}`
      this.drop(packet, binding === "NoPort" ? "NoMapping" : binding, site.name, detail, at)
      return
    }
    const created = table.lastCreated
      ? `new ${v6 ? "pinhole" : "mapping"} ${TransportAddress.format(binding.internal)} -> ${
        TransportAddress.format(binding.external)
      }`
      : undefined
    if (v6) {
      if (this.tracing) this.traceEvent("forwarded", packet, site.name, undefined, created)
      this.hop(packet, site.outside, site, flow, at)
      return
    }
    const translated: Packet = { ...packet, source: binding.external }
    if (this.tracing) {
      const detail = hairpin
        ? created === undefined ? "hairpin" : `${created}; hairpin`
        : created
      this.traceEvent("forwarded", translated, site.name, undefined, detail, packet)
    }
    if (hairpin) {
      if (!site.nat!.hairpinning) {
        this.drop(packet, "NoHairpin", site.name, `hairpinning is off at NAT ${site.name}`, at)
        return
      }
      this.inbound(site, translated, at, flow, true)
      return
    }
    this.hop(translated, site.outside, site, flow, at)
  }

  /** A packet from outside (or hairpinned) reaches the site's router: firewall, mapping, filtering, then in. */
  inbound(site: SiteState, packet: Packet, at: number, flow: TcpConnection | undefined, hairpin: boolean): void {
    if (!hairpin) {
      const blocked = this.firewall(site, packet, false)
      if (blocked !== undefined) {
        this.drop(packet, "Blocked", site.name, blocked, at)
        return
      }
    }
    const v6 = packet.destination.family === "IPv6"
    const table = v6 ? site.pinholes : site.natTable
    if (table === undefined) {
      this.drop(packet, "NoHost", site.name, `no ${v6 ? "IPv6" : "IPv4"} into ${site.name}`, at)
      return
    }
    const what = v6 ? "pinhole" : "mapping"
    const router = v6 ? `IPv6 router ${site.name}` : `NAT ${site.name}`
    const binding = table.inbound(packet.protocol, packet.destination)
    if (binding === undefined) {
      const detail = `no ${what} for ${TransportAddress.format(packet.destination)}/${packet.protocol} at ${router}`
      this.drop(packet, "NoMapping", site.name, detail, at)
      return
    }
    if (at >= expiresAt(binding)) {
      const detail = `${what} ${TransportAddress.format(binding.internal)} -> ${
        TransportAddress.format(binding.external)
      } expired at ${expiresAt(binding)} ms at ${router}`
      this.drop(packet, "MappingExpired", site.name, detail, at)
      return
    }
    const filtering = v6 ? site.ipv6! : site.nat!.filtering
    if (!permits(filtering, binding, packet.source)) {
      const detail = `filtered by ${NatBehavior.abbreviation("filtering", filtering)} at ${router}`
      this.drop(packet, "Filtered", site.name, detail, at)
      return
    }
    if (packet.protocol === "tcp" || site.nat?.inboundRefresh === true) binding.refreshedAt = at
    const translated: Packet = v6 ? packet : { ...packet, destination: binding.internal }
    if (this.tracing) this.traceEvent("forwarded", translated, site.name, undefined, undefined, v6 ? undefined : packet)
    this.hop(translated, site.inside, site, flow, at)
  }

  /** (Re)starts the delivery fiber, replacing (interrupting) the one sleeping until a later instant. */
  arm(): void {
    const head = this.queue.peek()
    this.armedAt = head === undefined ? Infinity : head.at
    this.runDriver(this.driver)
  }

  /**
   * The delivery fiber: sleeps on the world's clock until the next arrival is due (or just yields when it is due
   * already, so that delivery is never synchronous with the send), handles every arrival that is due, in
   * (time, sequence) order, and starts over. Arrivals queued while it works (zero-latency hops, replies on the same
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
        const node = head.node
        if (node.kind === "host") this.arrive(node, head.packet)
        else if (head.inbound) this.inbound(node, head.packet, head.at, head.flow, false)
        else this.outbound(node, head.packet, head.at, head.flow)
      }
    } finally {
      this.draining = false
    }
  }

  // --- accounting -------------------------------------------------------------

  drop(packet: Packet, reason: DropReason, where: string, detail?: string, at: number = this.now()): void {
    this.dropped[reason]++
    const base = {
      at,
      where,
      protocol: packet.protocol,
      kind: packet.kind,
      from: packet.source,
      to: packet.destination,
      size: packet.data.length,
      reason
    }
    this.drops.push(detail === undefined ? base : { ...base, detail })
    if (this.tracing) this.traceEvent("dropped", packet, where, reason, detail)
  }

  deliveredPacket(host: HostState, packet: Packet): void {
    this.delivered++
    if (this.tracing) this.traceEvent("delivered", packet, host.name)
  }

  traceEvent(
    event: TraceEvent["event"],
    packet: Packet,
    where: string,
    reason?: DropReason,
    detail?: string,
    before?: Packet
  ): void {
    const entry = {
      at: this.now(),
      event,
      where,
      protocol: packet.protocol,
      kind: packet.kind,
      from: packet.source,
      to: packet.destination,
      size: packet.data.length,
      reason,
      detail
    }
    this.traceLog.push(
      before === undefined ? entry : { ...entry, before: { from: before.source, to: before.destination } }
    )
  }

  // --- arrival at a host ----------------------------------------------------

  arrive(host: HostState, packet: Packet): void {
    if (packet.protocol === "udp") this.arriveUdp(host, packet)
    else this.arriveTcp(host, packet)
  }

  arriveUdp(host: HostState, packet: Packet): void {
    const to = packet.destination
    if (host.udpShared.size > 0 && this.arriveShared(host, packet)) return
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
      this.deliveredPacket(host, packet)
      endpoint.pending.push({ data: packet.data, remote: packet.source })
      return
    }
    this.deliveredPacket(host, packet)
    callDatagramHandler(endpoint.run, handler, packet.data, packet.source)
  }

  arriveTcp(host: HostState, packet: Packet): void {
    const connection = host.tcpConnections.get(connectionKey(packet.destination, packet.source))
    if (packet.kind === "SYN") {
      if (connection !== undefined) {
        // A duplicate SYN for a connection already accepted.
        this.deliveredPacket(host, packet)
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
      this.deliveredPacket(host, packet)
      this.accept(host, listener, packet)
      return
    }
    if (connection === undefined || connection.state === "Closed") {
      if (packet.kind === "FIN") {
        // Both sides closed at once: the FIN is absorbed (TIME-WAIT), not answered.
        this.deliveredPacket(host, packet)
        return
      }
      this.drop(packet, "SocketClosed", host.name)
      if (packet.kind !== "RST") this.reset(host, packet)
      return
    }
    this.deliveredPacket(host, packet)
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
      lastAt: new Map()
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

  // --- topology -------------------------------------------------------------

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

  nameTaken(name: string): boolean {
    return this.hostsByName.has(name) || this.sitesByName.has(name) || name === this.internet.name
  }

  /** Whether an IPv4 address is in use in `realm`, a network around it, or a network inside it. */
  v4InUse(realm: Realm, ip: string): boolean {
    for (const other of this.realms) {
      if (other.v4.has(ip) && (encloses(other, realm) || encloses(realm, other))) return true
    }
    return false
  }

  addHost(options: HostOptions): Effect.Effect<Host, TopologyError> {
    return Effect.suspend(() => {
      if (this.nameTaken(options.name)) {
        return Effect.fail(new TopologyError({ reason: "DuplicateName", detail: options.name }))
      }
      let realm = this.internet
      if (options.site !== undefined) {
        const site = this.sitesByName.get(options.site)
        if (site === undefined) {
          return Effect.fail(new TopologyError({ reason: "UnknownSite", detail: `${options.name}: ${options.site}` }))
        }
        realm = site.state.inside
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
        const { family, ip } = canonical.value
        const used = family === "IPv4" ? this.v4InUse(realm, ip) : this.v6.has(ip)
        if (used || addresses.some((a) => a.ip === ip)) {
          return Effect.fail(new TopologyError({ reason: "DuplicateAddress", detail: ip }))
        }
        addresses.push(canonical.value)
      }
      const link = makeLink(options.name, options, Duration.zero)
      if (link instanceof TopologyError) return Effect.fail(link)
      const state: HostState = {
        kind: "host",
        name: options.name,
        addresses,
        realm,
        link,
        udp: new Map(),
        udpClosed: new Set(),
        udpShared: new Map(),
        tcpListeners: new Map(),
        tcpClosed: new Set(),
        tcpPorts: new Map(),
        tcpConnections: new Map(),
        nextPort: { udp: ephemeralPortStart, tcp: ephemeralPortStart }
      }
      // A public host's addresses are its own (/32, /128); a site's hosts share the site's /24 and /64.
      const onSite = realm !== this.internet
      const interfaces: ReadonlyArray<Network.NetworkInterface> = addresses.map((a) => ({
        name: "eth0",
        family: a.family,
        address: a.ip,
        prefixLength: a.family === "IPv4" ? (onSite ? 24 : 32) : (onSite ? 64 : 128),
        internal: false
      }))
      const host: Host = {
        name: options.name,
        addresses: addresses.map((a) => a.ip),
        latency: Duration.millis(link.latency),
        site: options.site,
        network: {
          bindUdp: (bind) => this.bindUdp(state, bind),
          bindMulticastUdp: (options) => this.bindMulticastUdp(state, options),
          connectTcp: (remote, connect) => this.connectTcp(state, remote, connect),
          // The simulator does not encrypt: a TLS connection is a plain TCP connection, and no certificate is checked.
          connectTls: (remote, connect) => this.connectTcp(state, remote, connect),
          listenTcp: (listen, onConnection) => this.listenTcp(state, listen, onConnection),
          // Likewise a TLS listener is a plain TCP listener; the certificate and key are not even parsed.
          listenTls: (listen, onConnection) => this.listenTcp(state, listen, onConnection),
          interfaces: Effect.succeed(interfaces),
          lookup: (name) => this.lookup(name)
        }
      }
      this.hostsByName.set(options.name, { state, host })
      for (const a of addresses) {
        if (a.family === "IPv4") realm.v4.set(a.ip, state)
        else this.v6.set(a.ip, state)
        this.knownIps.add(a.ip)
      }
      return Effect.succeed(host)
    })
  }

  addSite(options: SiteOptions): Effect.Effect<Site, TopologyError> {
    return Effect.suspend(() => {
      const fail = (reason: TopologyError["reason"], detail: string) =>
        Effect.fail(new TopologyError({ reason, detail: `${options.name}: ${detail}` }))
      if (this.nameTaken(options.name)) {
        return Effect.fail(new TopologyError({ reason: "DuplicateName", detail: options.name }))
      }
      let outside = this.internet
      if (options.parent !== undefined) {
        const parent = this.sitesByName.get(options.parent)
        if (parent === undefined) return fail("UnknownSite", options.parent)
        outside = parent.state.inside
      }
      const link = makeLink(options.name, options, Duration.zero)
      if (link instanceof TopologyError) return Effect.fail(link)
      const nat = options.nat
      const externals: Array<string> = []
      for (const text of options.externalAddresses ?? []) {
        const canonical = TransportAddress.canonicalIp(text)
        if (Option.isNone(canonical) || canonical.value.family !== "IPv4" || canonical.value.ip === "0.0.0.0") {
          return fail("InvalidAddress", `external address ${text} is not an IPv4 address`)
        }
        const ip = canonical.value.ip
        if (this.v4InUse(outside, ip) || externals.includes(ip)) {
          return Effect.fail(new TopologyError({ reason: "DuplicateAddress", detail: ip }))
        }
        externals.push(ip)
      }
      if (nat === undefined && externals.length > 0) return fail("InvalidOption", "external addresses without a NAT")
      if (nat !== undefined && externals.length === 0) return fail("InvalidOption", "a NAT needs external addresses")
      const udpLifetime = nat?.mappingLifetimeMs ?? NatBehavior.defaultMappingLifetimeMs
      if (!(udpLifetime > 0 && Number.isFinite(udpLifetime))) {
        return fail("InvalidOption", `mapping lifetime ${udpLifetime} ms`)
      }
      const tcpLifetime = millisOf(options.tcpMappingLifetime, defaultTcpMappingLifetime)
      if (tcpLifetime === undefined || tcpLifetime <= 0) {
        return fail("InvalidOption", `TCP mapping lifetime ${String(options.tcpMappingLifetime)}`)
      }
      const pinholeLifetime = millisOf(options.ipv6?.lifetime, Duration.millis(udpLifetime))
      if (pinholeLifetime === undefined || pinholeLifetime <= 0) {
        return fail("InvalidOption", `IPv6 pinhole lifetime ${String(options.ipv6?.lifetime)}`)
      }
      const allowed = options.firewall?.allowTcpPorts
      if (allowed !== undefined && !allowed.every(isValidPort)) {
        return fail("InvalidOption", `allowed TCP ports ${allowed.join(", ")}`)
      }
      const random = () => this.prng.number()
      const inside: Realm = { name: options.name, site: undefined, v4: new Map(), link: undefined }
      const state: SiteState = {
        kind: "site",
        name: options.name,
        outside,
        inside,
        link,
        nat,
        externals: new Set(externals),
        natTable: nat === undefined ? undefined : new BindingTable({
          mapping: nat.mapping,
          portAssignment: nat.portAssignment,
          externalAddresses: externals,
          lifetime: { udp: udpLifetime, tcp: tcpLifetime },
          random
        }),
        ipv6: options.ipv6?.filtering,
        pinholes: options.ipv6 === undefined ? undefined : new BindingTable({
          mapping: "endpoint-independent",
          portAssignment: "identity",
          externalAddresses: [],
          lifetime: { udp: pinholeLifetime, tcp: tcpLifetime },
          random
        }),
        blockUdp: options.firewall?.blockUdp ?? false,
        allowTcpPorts: allowed === undefined ? undefined : new Set(allowed)
      }
      inside.site = state
      const site: Site = {
        name: options.name,
        parent: options.parent,
        nat,
        externalAddresses: externals,
        ipv6: options.ipv6 === undefined ? undefined : { filtering: options.ipv6.filtering },
        mappings: Effect.sync(() => state.natTable?.live(this.now()).map(toNatMapping) ?? []),
        pinholes: Effect.sync(() => state.pinholes?.live(this.now()).map(toPinhole) ?? []),
        resetMappings: Effect.sync(() => {
          state.natTable?.clear()
          state.pinholes?.clear()
        })
      }
      this.sitesByName.set(options.name, { state, site })
      this.realms.push(inside)
      for (const ip of externals) {
        outside.v4.set(ip, state)
        this.knownIps.add(ip)
      }
      return Effect.succeed(site)
    })
  }

  /** The destination in canonical form, or undefined when its IP does not parse as its family. */
  resolveDestination(to: TransportAddress.SocketAddress): TransportAddress.SocketAddress | undefined {
    if (this.knownIps.has(to.ip)) return to
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
      const port = allocatePort(udpPortsInUse(host), host, "udp", local, options?.port, range, randomStart, "bind")
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
    if (!this.knownIps.has(destination.ip) && Network.isMulticastAddress(destination.ip)) {
      this.multicast(host, { protocol: "udp", kind: "datagram", source, destination, data: data.slice() })
      return undefined
    }
    this.transmit(host, { protocol: "udp", kind: "datagram", source, destination, data: data.slice() })
    return undefined
  }

  // --- UDP multicast ----------------------------------------------------------

  /**
   * Sends a datagram to a multicast group: one copy to every host of the sender's network (its site's private
   * network, or the internet for a public host) with a socket joined to the group and port, the sender's own host
   * included (multicast loopback, 0 ms). The sender's access link is crossed once for all remote copies; the
   * network's link (the internet's) and each receiver's access link once per copy. Never forwarded by a router.
   */
  multicast(from: HostState, packet: Packet): void {
    if (this.closed) return
    this.sent++
    if (this.tracing) this.traceEvent("sent", packet, from.name)
    const members = this.multicastMembers.get(groupKey(packet.destination.ip, packet.destination.port))
    if (members === undefined) return
    const realm = from.realm
    const at = this.now()
    let senderDelay: number | undefined
    for (const member of members) {
      if (member.realm !== realm) continue
      let delay = 0
      if (member !== from) {
        if (senderDelay === undefined) senderDelay = this.linkDelay(from.link, packet, at)
        if (senderDelay < 0) continue
        delay = senderDelay
        if (realm.link !== undefined) {
          const d = this.linkDelay(realm.link, packet, at)
          if (d < 0) continue
          delay += d
        }
        const d = this.linkDelay(member.link, packet, at)
        if (d < 0) continue
        delay += d
      }
      const arrival = at + delay
      this.queue.push({ at: arrival, seq: this.seq++, node: member, inbound: false, packet, flow: undefined })
      if (!this.draining && arrival < this.armedAt) this.arm()
    }
  }

  /**
   * A datagram for a host that has multicast sockets: to a group, it goes to each of the host's sockets joined to
   * that group and port (each its own copy of the bytes); to a unicast address, to the first open multicast socket
   * on the port when no plain socket has it. Returns whether it was handled here.
   */
  arriveShared(host: HostState, packet: Packet): boolean {
    const to = packet.destination
    const shared = host.udpShared.get(portKey(wildcardOf(to.family), to.port))
    if (shared === undefined) return false
    if (this.knownIps.has(to.ip) || !Network.isMulticastAddress(to.ip)) {
      if (host.udp.has(portKey(to.ip, to.port))) return false
      this.deliverTo(host, shared[0]!, packet, packet.data)
      return true
    }
    let copies = 0
    for (const endpoint of shared) {
      if (endpoint.group !== to.ip) continue
      this.deliverTo(host, endpoint, packet, copies++ === 0 ? packet.data : packet.data.slice())
    }
    if (copies === 0) this.drop(packet, "PortUnreachable", host.name)
    return true
  }

  /** Hands a datagram to one socket: its handler, or its queue while it has none. */
  deliverTo(host: HostState, endpoint: UdpEndpoint, packet: Packet, data: Uint8Array): void {
    const handler = endpoint.handler
    if (handler === undefined) {
      if (endpoint.pending.length >= Network.maxPendingDatagrams) {
        this.drop(packet, "ReceiveBufferFull", host.name)
        return
      }
      this.deliveredPacket(host, packet)
      endpoint.pending.push({ data, remote: packet.source })
      return
    }
    this.deliveredPacket(host, packet)
    callDatagramHandler(endpoint.run, handler, data, packet.source)
  }

  bindMulticastUdp(
    host: HostState,
    options: Network.MulticastOptions
  ): Effect.Effect<Network.DatagramSocket, Network.NetworkError, Scope.Scope> {
    return Effect.gen(this, function*() {
      const canonical = TransportAddress.canonicalIp(options.group)
      if (
        Option.isNone(canonical) || !Network.isMulticastAddress(canonical.value.ip) ||
        (options.family !== undefined && options.family !== canonical.value.family)
      ) {
        return yield* networkError("InvalidAddress", "bind", options.group)
      }
      const { family, ip: group } = canonical.value
      const port = options.port
      if (!isValidPort(port)) return yield* networkError("InvalidAddress", "bind", `${group} port ${port}`)
      let sourceIp = firstAddress(host, family)
      if (options.interfaceAddress !== undefined) {
        const local = resolveLocal(host, options.interfaceAddress, family, "bind")
        if (local instanceof Network.NetworkError) return yield* local
        if (!local.wildcard) sourceIp = local.ip
      }
      if (sourceIp === undefined) return yield* networkError("AddressNotAvailable", "bind", wildcardOf(family))
      const wildcard = wildcardOf(family)
      if (!isPortFree(host.udp, host, family, wildcard, port)) {
        return yield* networkError("AddressInUse", "bind", TransportAddress.format({ family, ip: wildcard, port }))
      }
      const handlers = yield* FiberSet.make<void, never>()
      const run = yield* FiberSet.runtime(handlers)<never>()
      const endpoint: MulticastEndpoint = {
        key: portKey(wildcard, port),
        local: { family, ip: wildcard, port, transport: "udp" },
        source: { family, ip: sourceIp, port },
        run,
        handler: undefined,
        pending: [],
        closed: false,
        sendFailures: 0,
        group
      }
      const shared = host.udpShared.get(endpoint.key)
      if (shared === undefined) host.udpShared.set(endpoint.key, [endpoint])
      else shared.push(endpoint)
      const key = groupKey(group, port)
      const members = this.multicastMembers.get(key)
      if (members === undefined) this.multicastMembers.set(key, new Set([host]))
      else members.add(host)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          endpoint.closed = true
          endpoint.handler = undefined
          endpoint.pending = []
          const list = host.udpShared.get(endpoint.key)
          if (list === undefined) return
          const rest = list.filter((e) => e !== endpoint)
          if (rest.length === 0) host.udpShared.delete(endpoint.key)
          else host.udpShared.set(endpoint.key, rest)
          if (!rest.some((e) => e.group === group)) {
            const set = this.multicastMembers.get(key)
            set?.delete(host)
            if (set?.size === 0) this.multicastMembers.delete(key)
          }
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
 * fiber that makes it. Closing the scope stops its delivery fiber; packets still in flight are lost. Invalid
 * internet link options (a negative latency, a loss outside [0, 1]) are a defect.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<World, never, Scope.Scope> =>
  Effect.gen(function*() {
    const internet = makeLink("internet", options ?? {}, defaultLatency)
    if (internet instanceof TopologyError) return yield* Effect.dieMessage(`VirtualNetwork.make: ${internet.message}`)
    const clock = yield* Effect.clock
    const random = options?.seed === undefined ? yield* Effect.random : Random.make(options.seed)
    const prng = new Utils.PCGRandom(
      options?.seed === undefined ? yield* random.nextIntBetween(0, 0x7fffffff) : Hash.hash(options.seed)
    )
    const driver = yield* FiberHandle.make<void, never>()
    const runDriver = yield* FiberHandle.runtime(driver)<never>()
    const simulation = new Simulation(
      clock,
      random,
      prng,
      internet,
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
      addSite: (site) => simulation.addSite(site),
      host: (name) => Option.map(Option.fromNullable(simulation.hostsByName.get(name)), (entry) => entry.host),
      site: (name) => Option.map(Option.fromNullable(simulation.sitesByName.get(name)), (entry) => entry.site),
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

/**
 * Runs an effect in virtual time: the clock is a `TestClock` advanced in steps of `step` until the effect ends,
 * so a simulation of minutes finishes in milliseconds. Bounded: fails with `VirtualTimeExceeded` after `limit` of
 * virtual time.
 *
 * The `TestContext` is provided inside a fiber of its own, which is awaited (not joined, which would merge its
 * fiber refs back): providing it in the caller's fiber leaks the `TestClock` into the caller's default services, so
 * a later real sleep there would never wake. The caller's clock and services are untouched afterwards. Interrupting
 * the caller interrupts the run; the run's failure, defect or interruption is the caller's.
 *
 * @since 0.1.0
 * @category combinators
 */
export const runInVirtualTime = <A, E>(
  effect: Effect.Effect<A, E, Scope.Scope>,
  options: { readonly step?: Duration.DurationInput; readonly limit?: Duration.DurationInput } = {}
): Effect.Effect<A, E | VirtualTimeExceeded> =>
  Effect.gen(function*() {
    const step = Duration.decode(options.step ?? "100 millis")
    const steps = Math.ceil(Duration.toMillis(options.limit ?? "1 hour") / Duration.toMillis(step))
    const fiber = yield* Effect.fork(Effect.scoped(effect))
    for (let i = 0; i < steps; i++) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) return yield* Fiber.join(fiber)
      yield* TestClock.adjust(step)
    }
    yield* Fiber.interrupt(fiber)
    return yield* Effect.fail(new VirtualTimeExceeded({ limitMs: steps * Duration.toMillis(step) }))
  }).pipe(
    Effect.provide(TestContext.TestContext),
    (run) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.forkDaemon(restore(run)), (fiber) =>
          restore(Fiber.await(fiber)).pipe(
            Effect.onInterrupt(() => Fiber.interrupt(fiber)),
            Effect.flatten
          ))
      )
  )

/**
 * A virtual-time run did not finish within its limit.
 *
 * @since 0.1.0
 * @category errors
 */
export class VirtualTimeExceeded extends Data.TaggedError("VirtualTimeExceeded")<{ readonly limitMs: number }> {
  override get message(): string {
    return `the simulation did not finish within ${this.limitMs / 1000} s of virtual time`
  }
}
