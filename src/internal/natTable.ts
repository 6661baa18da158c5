/**
 * The state of a simulated router: RFC 4787 NAT mappings, or (with `"identity"` port assignment) the untranslated
 * "pinholes" of an IPv6 firewall that filters without translating. Plain code on plain maps, driven by the caller's
 * clock (`now`, in milliseconds) and random numbers (`random`, in [0, 1)), so that the simulator can run it inside
 * its delivery loop.
 *
 * A binding is found by its key (the internal endpoint, plus the destination IP for address-dependent mapping, plus
 * the destination port for address-and-port-dependent mapping; RFC 4787 §4.1) and by its external endpoint. It
 * expires exactly `lifetime` ms after it was last refreshed (`now >= refreshedAt + lifetime`); there is no timer per
 * binding: the check runs when a packet asks. An expired binding stays in the table as a tombstone (so that a late
 * packet is told "mapping expired" rather than "no mapping") until a new binding replaces it under the same key or
 * takes its external port.
 *
 * @internal
 */
import type * as NatBehavior from "../NatBehavior.js"
import type { SocketAddress } from "../TransportAddress.js"

/**
 * The transport of a binding.
 *
 * @internal
 */
export type Protocol = "udp" | "tcp"

/**
 * One mapping (or pinhole).
 *
 * @internal
 */
export interface Binding {
  readonly protocol: Protocol
  readonly internal: SocketAddress
  readonly external: SocketAddress
  readonly key: string
  readonly externalKey: string
  /** `ip|port` of every destination the binding has sent to, for address-and-port-dependent filtering. */
  readonly endpoints: Set<string>
  /** Every destination IP the binding has sent to, for address-dependent filtering. */
  readonly addresses: Set<string>
  readonly lifetime: number
  readonly createdAt: number
  refreshedAt: number
}

/**
 * The instant a binding expires.
 *
 * @internal
 */
export const expiresAt = (binding: Binding): number => binding.refreshedAt + binding.lifetime

/**
 * Whether a packet from `source` may pass through `binding` under a filtering behaviour (RFC 4787 §5).
 *
 * @internal
 */
export const permits = (filtering: NatBehavior.Filtering, binding: Binding, source: SocketAddress): boolean =>
  filtering === "endpoint-independent"
    ? true
    : filtering === "address-dependent"
    ? binding.addresses.has(source.ip)
    : binding.endpoints.has(source.ip + "|" + source.port)

/**
 * How a table is configured.
 *
 * @internal
 */
export interface TableOptions {
  readonly mapping: NatBehavior.Mapping
  /** `"identity"`: no translation (the external endpoint is the internal one), as an IPv6 firewall. */
  readonly portAssignment: NatBehavior.PortAssignment | "identity"
  /** The NAT's external IPv4 addresses (unused with `"identity"`). */
  readonly externalAddresses: ReadonlyArray<string>
  /** Lifetime of an idle binding, by protocol, in milliseconds. */
  readonly lifetime: { readonly udp: number; readonly tcp: number }
  readonly random: () => number
}

/**
 * The first port `sequential` assignment gives (then counting up).
 *
 * @internal
 */
export const firstSequentialPort = 49152

const lowestPort = 1024
const portCount = 65536 - lowestPort

/**
 * A router's bindings.
 *
 * @internal
 */
export class BindingTable {
  private readonly byKey = new Map<string, Binding>()
  private readonly byExternal = new Map<string, Binding>()
  /** Paired pooling (RFC 4787 REQ-2): each internal IP keeps the external IP it was first given. */
  private readonly pool = new Map<string, string>()
  private nextPool = 0
  private readonly nextPort: Record<Protocol, number> = { udp: firstSequentialPort, tcp: firstSequentialPort }
  /** Whether the last `outbound` call created its binding. */
  lastCreated = false

  constructor(readonly options: TableOptions) {}

  /**
   * The binding an outgoing packet uses, refreshed and with the destination recorded; created when there is none
   * (or only an expired one) and `create` is true. Without `create` (a TCP segment other than SYN) a missing binding
   * is `"NoMapping"` and an expired one `"MappingExpired"`. `"NoPort"` when no external port is free.
   */
  outbound(
    protocol: Protocol,
    source: SocketAddress,
    destination: SocketAddress,
    create: boolean,
    now: number
  ): Binding | "NoMapping" | "MappingExpired" | "NoPort" {
    this.lastCreated = false
    const key = this.keyOf(protocol, source, destination)
    let binding = this.byKey.get(key)
    if (binding !== undefined && now >= expiresAt(binding)) {
      if (!create) return "MappingExpired"
      this.remove(binding)
      binding = undefined
    }
    if (binding === undefined) {
      if (!create) return "NoMapping"
      binding = this.create(protocol, key, source, now)
      if (binding === undefined) return "NoPort"
      this.lastCreated = true
    }
    binding.refreshedAt = now
    binding.endpoints.add(destination.ip + "|" + destination.port)
    binding.addresses.add(destination.ip)
    return binding
  }

  /** The binding (perhaps expired: check {@link expiresAt}) whose external endpoint is `destination`. */
  inbound(protocol: Protocol, destination: SocketAddress): Binding | undefined {
    return this.byExternal.get(externalKeyOf(protocol, destination.ip, destination.port))
  }

  /** The bindings alive at `now`, oldest first. */
  live(now: number): Array<Binding> {
    const out: Array<Binding> = []
    for (const binding of this.byKey.values()) if (now < expiresAt(binding)) out.push(binding)
    return out
  }

  /** Forgets every binding (a router reboot). */
  clear(): void {
    this.byKey.clear()
    this.byExternal.clear()
    this.pool.clear()
    this.nextPool = 0
  }

  private keyOf(protocol: Protocol, source: SocketAddress, destination: SocketAddress): string {
    const base = protocol + "|" + source.ip + "|" + source.port
    switch (this.options.mapping) {
      case "endpoint-independent":
        return base
      case "address-dependent":
        return base + "|" + destination.ip
      case "address-and-port-dependent":
        return base + "|" + destination.ip + "|" + destination.port
    }
  }

  private remove(binding: Binding): void {
    if (this.byKey.get(binding.key) === binding) this.byKey.delete(binding.key)
    if (this.byExternal.get(binding.externalKey) === binding) this.byExternal.delete(binding.externalKey)
  }

  private create(protocol: Protocol, key: string, source: SocketAddress, now: number): Binding | undefined {
    let external: SocketAddress
    if (this.options.portAssignment === "identity") {
      external = source
    } else {
      const ip = this.externalIpFor(source.ip)
      const port = this.choosePort(protocol, ip, source.port, now)
      if (port === undefined) return undefined
      external = { family: "IPv4", ip, port }
    }
    const externalKey = externalKeyOf(protocol, external.ip, external.port)
    const previous = this.byExternal.get(externalKey)
    if (previous !== undefined) this.remove(previous)
    const binding: Binding = {
      protocol,
      internal: source,
      external,
      key,
      externalKey,
      endpoints: new Set(),
      addresses: new Set(),
      lifetime: this.options.lifetime[protocol],
      createdAt: now,
      refreshedAt: now
    }
    this.byKey.set(key, binding)
    this.byExternal.set(externalKey, binding)
    return binding
  }

  private externalIpFor(internalIp: string): string {
    const known = this.pool.get(internalIp)
    if (known !== undefined) return known
    const addresses = this.options.externalAddresses
    const ip = addresses[this.nextPool % addresses.length]!
    this.nextPool++
    this.pool.set(internalIp, ip)
    return ip
  }

  /** RFC 4787 §4.2: the internal port if free (then counting up), the next sequential port, or a random one. */
  private choosePort(protocol: Protocol, ip: string, internalPort: number, now: number): number | undefined {
    const assignment = this.options.portAssignment
    let candidate = assignment === "preserving"
      ? internalPort
      : assignment === "sequential"
      ? this.nextPort[protocol]
      : lowestPort + Math.floor(this.options.random() * portCount)
    for (let tried = 0; tried <= portCount; tried++) {
      if (candidate >= 1 && candidate <= 65535) {
        const holder = this.byExternal.get(externalKeyOf(protocol, ip, candidate))
        if (holder === undefined || now >= expiresAt(holder)) {
          if (assignment === "sequential") this.nextPort[protocol] = candidate >= 65535 ? lowestPort : candidate + 1
          return candidate
        }
      }
      candidate = candidate >= 65535 ? lowestPort : candidate + 1
    }
    return undefined
  }
}

const externalKeyOf = (protocol: Protocol, ip: string, port: number): string => protocol + "|" + ip + "|" + port
