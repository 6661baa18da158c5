/**
 * The vocabulary of NAT behaviour, as RFC 4787 defines it and RFC 5780 measures it: how a NAT maps an internal
 * endpoint to an external one (§4.1), how it filters what comes back (§5), whether it hairpins (§6), how long an
 * idle mapping lives and what refreshes it (§4.3), and how it picks external ports (§4.2). Plus the classical
 * "cone" names of RFC 3489, which are combinations of the two: full cone = endpoint-independent mapping and
 * filtering, restricted cone = EIM with address-dependent filtering, port-restricted cone = EIM with
 * address-and-port-dependent filtering, symmetric = address-and-port-dependent mapping and filtering.
 *
 * `directPathLikely` predicts from two behaviours whether ICE finds a direct path with STUN only: endpoint-independent
 * mapping with open or address filtering always does, with port filtering only toward another endpoint-independent
 * mapping; otherwise one side must filter nothing, the other must not filter by port, and at least one must map
 * address-dependently (address-and-port-dependent mapping on both sides never connects directly).
 *
 * Pure data and functions: the simulator (`VirtualNetwork`) configures its NAT routers with these values, and
 * `NatDiscovery` reports what it measured in the same terms.
 *
 * @since 0.1.0
 */

/**
 * Mapping behaviour (RFC 4787 §4.1): what decides whether an outgoing packet reuses an existing mapping.
 * - `endpoint-independent`: one mapping per internal endpoint, whatever the destination (REQ-1).
 * - `address-dependent`: a new mapping per destination IP.
 * - `address-and-port-dependent`: a new mapping per destination IP and port.
 *
 * @since 0.1.0
 * @category models
 */
export type Mapping = "endpoint-independent" | "address-dependent" | "address-and-port-dependent"

/**
 * Filtering behaviour (RFC 4787 §5): which external endpoints may send through a mapping.
 * - `endpoint-independent`: anyone.
 * - `address-dependent`: only IPs the internal endpoint has sent to.
 * - `address-and-port-dependent`: only IP:port pairs the internal endpoint has sent to.
 *
 * @since 0.1.0
 * @category models
 */
export type Filtering = "endpoint-independent" | "address-dependent" | "address-and-port-dependent"

/**
 * All three behaviours, in order from most to least permissive.
 *
 * @since 0.1.0
 * @category constants
 */
export const behaviours: ReadonlyArray<Mapping> = [
  "endpoint-independent",
  "address-dependent",
  "address-and-port-dependent"
]

/**
 * How a NAT chooses the external port of a new mapping (RFC 4787 §4.2): keep the internal port when it is free
 * (`preserving`, falling back to the next free one), take the next port after the last one given (`sequential`),
 * or a random free port (`random`, from Effect's `Random` in the simulator).
 *
 * @since 0.1.0
 * @category models
 */
export type PortAssignment = "preserving" | "sequential" | "random"

/**
 * The classical RFC 3489 names. `"other"` is any combination none of the four names covers (for example
 * address-dependent mapping).
 *
 * @since 0.1.0
 * @category models
 */
export type ClassicalName = "full-cone" | "restricted-cone" | "port-restricted-cone" | "symmetric" | "other"

/**
 * A NAT's behaviour, as a router is configured with it.
 *
 * @since 0.1.0
 * @category models
 */
export interface NatBehavior {
  readonly mapping: Mapping
  readonly filtering: Filtering
  /** Whether packets from inside to the NAT's own external address are turned back in (RFC 4787 §6, REQ-9). */
  readonly hairpinning: boolean
  /** Idle time after which a UDP mapping is removed, in milliseconds; RFC 4787 REQ-5 asks for at least 2 minutes. */
  readonly mappingLifetimeMs: number
  /** Whether inbound packets refresh the mapping too (RFC 4787 REQ-6 says outbound must; inbound may). */
  readonly inboundRefresh: boolean
  readonly portAssignment: PortAssignment
}

/**
 * The default mapping lifetime: 300 s (five minutes, as the usual recommendation goes; RFC 4787 REQ-5 asks for at
 * least 2 minutes and recommends 5).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMappingLifetimeMs = 300_000

/**
 * A behaviour with defaults: hairpinning on, 300 s lifetime refreshed by outbound traffic only, port preserving.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  mapping: Mapping,
  filtering: Filtering,
  options: Partial<Omit<NatBehavior, "mapping" | "filtering">> = {}
): NatBehavior => ({
  mapping,
  filtering,
  hairpinning: options.hairpinning ?? true,
  mappingLifetimeMs: options.mappingLifetimeMs ?? defaultMappingLifetimeMs,
  inboundRefresh: options.inboundRefresh ?? false,
  portAssignment: options.portAssignment ?? "preserving"
})

/**
 * Full cone: endpoint-independent mapping and filtering.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fullCone: NatBehavior = make("endpoint-independent", "endpoint-independent")

/**
 * Restricted cone: endpoint-independent mapping, address-dependent filtering.
 *
 * @since 0.1.0
 * @category constructors
 */
export const restrictedCone: NatBehavior = make("endpoint-independent", "address-dependent")

/**
 * Port-restricted cone: endpoint-independent mapping, address-and-port-dependent filtering.
 *
 * @since 0.1.0
 * @category constructors
 */
export const portRestrictedCone: NatBehavior = make("endpoint-independent", "address-and-port-dependent")

/**
 * Symmetric: address-and-port-dependent mapping and filtering, random external ports (as most symmetric NATs do;
 * with preserving ports some pairings would connect by luck).
 *
 * @since 0.1.0
 * @category constructors
 */
export const symmetric: NatBehavior = make("address-and-port-dependent", "address-and-port-dependent", {
  portAssignment: "random"
})

/**
 * The classical name of a mapping and filtering combination.
 *
 * @since 0.1.0
 * @category getters
 */
export const classicalName = (mapping: Mapping, filtering: Filtering): ClassicalName => {
  if (mapping === "endpoint-independent") {
    return filtering === "endpoint-independent"
      ? "full-cone"
      : filtering === "address-dependent"
      ? "restricted-cone"
      : "port-restricted-cone"
  }
  return mapping === "address-and-port-dependent" && filtering === "address-and-port-dependent" ? "symmetric" : "other"
}

/**
 * The short names used on command lines and in tables: `EIM`, `ADM`, `APDM` for mapping and `EIF`, `ADF`, `APDF`
 * for filtering.
 *
 * @since 0.1.0
 * @category getters
 */
export const abbreviation = (kind: "mapping" | "filtering", behaviour: Mapping): string =>
  (behaviour === "endpoint-independent" ? "EI" : behaviour === "address-dependent" ? "AD" : "APD") +
  (kind === "mapping" ? "M" : "F")

/**
 * Parses `EIM/APDF` (either order, case-insensitive, also the RFC 4787 spellings joined by `/` or `+`) into a
 * mapping and a filtering behaviour, or `undefined`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parsePair = (
  text: string
): { readonly mapping: Mapping; readonly filtering: Filtering } | undefined => {
  let mapping: Mapping | undefined
  let filtering: Filtering | undefined
  for (const part of text.split(/[/+,]/).map((p) => p.trim().toUpperCase())) {
    const found = parseOne(part)
    if (found === undefined) return undefined
    if (found.kind === "mapping") {
      if (mapping !== undefined) return undefined
      mapping = found.behaviour
    } else {
      if (filtering !== undefined) return undefined
      filtering = found.behaviour
    }
  }
  return mapping !== undefined && filtering !== undefined ? { mapping, filtering } : undefined
}

const parseOne = (
  part: string
): { readonly kind: "mapping" | "filtering"; readonly behaviour: Mapping } | undefined => {
  const short: Record<string, { readonly kind: "mapping" | "filtering"; readonly behaviour: Mapping }> = {
    EIM: { kind: "mapping", behaviour: "endpoint-independent" },
    ADM: { kind: "mapping", behaviour: "address-dependent" },
    APDM: { kind: "mapping", behaviour: "address-and-port-dependent" },
    EIF: { kind: "filtering", behaviour: "endpoint-independent" },
    ADF: { kind: "filtering", behaviour: "address-dependent" },
    APDF: { kind: "filtering", behaviour: "address-and-port-dependent" }
  }
  return short[part]
}

/**
 * Whether two peers behind NATs with these behaviours can usually reach each other directly using STUN only (no
 * relay), when each learns the other's server-reflexive address and both run ICE checks (RFC 8445, which accepts a
 * check only when its response comes from the address the request was sent to and arrives at the address it left).
 *
 * - Endpoint-independent mapping with endpoint-independent or address-dependent filtering connects with anyone:
 *   its server-reflexive address is the address it uses toward the peer too, and a peer's check to it is admitted
 *   (filtering by address admits the peer's IP once it has sent toward it), so the peer learns a working pair.
 * - Endpoint-independent mapping with address-and-port-dependent filtering connects only with another
 *   endpoint-independent mapping: the peer's checks must come from the exact address it sends to, which a peer
 *   that maps per destination never does.
 * - Otherwise (neither side is a cone that works with everyone) one side must filter nothing
 *   (`endpoint-independent` filtering) so that the other side's first check gets through at all; the other side
 *   must not filter by port, since the answer and the triggered check come from a mapping it never sent to; and at
 *   least one side must map address-dependently, so the pair keeps one mapping per peer IP. With
 *   address-and-port-dependent mapping on both sides every response and triggered check leaves from a new mapping
 *   (each new destination port makes one), so the peer learns yet another peer-reflexive address, and the
 *   symmetric-address check of ICE always fails: such pairings need a relay.
 *
 * This reproduces the classical table (port-restricted × symmetric and symmetric × symmetric need a relay; every
 * other cone pairing connects) and the 9 × 9 mapping × filtering matrix the simulated ICE agents establish.
 *
 * @since 0.1.0
 * @category predicates
 */
export const directPathLikely = (
  a: { readonly mapping: Mapping; readonly filtering: Filtering },
  b: { readonly mapping: Mapping; readonly filtering: Filtering }
): boolean => {
  const open = (x: { readonly mapping: Mapping; readonly filtering: Filtering }) =>
    x.mapping === "endpoint-independent" && x.filtering !== "address-and-port-dependent"
  if (open(a) || open(b)) return true
  if (a.mapping === "endpoint-independent" || b.mapping === "endpoint-independent") {
    // One side is EIM+APDF: direct only when the other maps endpoint-independently as well.
    return a.mapping === "endpoint-independent" && b.mapping === "endpoint-independent"
  }
  const oneWay = (
    from: { readonly mapping: Mapping; readonly filtering: Filtering },
    to: { readonly mapping: Mapping; readonly filtering: Filtering }
  ) => to.filtering === "endpoint-independent" && from.filtering !== "address-and-port-dependent"
  return (oneWay(a, b) || oneWay(b, a)) &&
    (a.mapping === "address-dependent" || b.mapping === "address-dependent")
}
