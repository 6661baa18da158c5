/**
 * Two ICE agents on a fresh simulated internet, for the simulation tests, the benchmark and the demo: a world with
 * a STUN server and (optionally) a TURN server on the internet, and two agents ("alice", controlling, and "bob",
 * controlled), each behind a site with the given RFC 4787 NAT behaviour and options, their signalling piped
 * directly (`IceAgent.pipeSignalling`, or a pipe that hides host candidates behind mDNS names). It reports
 * whether they connected, over which kind of pair, after how many virtual milliseconds and checks.
 *
 * Topology (the internet's one-way latency is 10 ms, every other link 0 ms unless an option says otherwise):
 *
 * - STUN server "stun": 192.0.2.1:3478 and [2001:db8:53::1]:3478 (UDP).
 * - TURN server "turn" (with `turn: true`): 198.51.100.9, UDP and TCP on 3478, TLS on 443 when a side asks for
 *   `tls` (in the simulator TLS is plain TCP); dual-stack (also [2001:db8:100::9], relaying from both) when a side
 *   is IPv6-only or asks for an IPv6 relayed address. Users `alice` and `bob`, password `secret`.
 * - `topology: "separate"` (default): site "a" (NAT external 203.0.113.1, IPv6 2001:db8:1::/64) holds "alice"
 *   10.0.1.2; site "b" (203.0.113.2, 2001:db8:2::/64) holds "bob" 10.0.2.2. An IPv6-only side has no NAT and only
 *   its IPv6 address; a dual-stack side has both.
 * - `topology: "same-site"`: both hosts on site "a" (alice 10.0.1.2, bob 10.0.1.3), behind `a.nat`.
 * - `topology: "carrier"`: a carrier-grade NAT "carrier" (external 203.0.113.100, behaviour `carrierNat`) holding
 *   two home sites "a" (external 100.64.0.2) and "b" (100.64.0.3), each with its own NAT; the hosts as in
 *   "separate".
 *
 * Everything is seeded (the world's loss, jitter and random ports; the agents' credentials, tie-breakers and STUN
 * transaction ids), so a scenario gives the same result on every run. {@link pairing} is the scoped effect, to be
 * run where the clock is driven (`VirtualNetwork.runInVirtualTime`); {@link runPairing} runs it so, bounded.
 *
 * @internal
 */
import type { Scope } from "effect"
import { Chunk, Clock, Duration, Effect, Either, Fiber, Option, Random, Stream } from "effect"
import * as IceAgent from "../IceAgent.js"
import type * as IceCandidate from "../IceCandidate.js"
import type * as IceGatherer from "../IceGatherer.js"
import * as NatBehavior from "../NatBehavior.js"
import * as Network from "../Network.js"
import * as StunServer from "../StunServer.js"
import * as StunTransaction from "../StunTransaction.js"
import type { Family, SocketAddress } from "../TransportAddress.js"
import * as TurnServer from "../TurnServer.js"
import * as VirtualNetwork from "../VirtualNetwork.js"

/** @internal */
export type Outcome = "direct" | "relay" | "failed"

/**
 * One side of a pairing: its host's site and how its agent reaches the TURN server.
 *
 * @internal
 */
export interface SideOptions {
  /** The NAT of the side's site (default full cone); with `topology: "same-site"`, `a.nat` is the shared one. */
  readonly nat?: NatBehavior.NatBehavior | undefined
  /** The host's address families (default `IPv4`): `IPv6` is an IPv6-only site without NAT. */
  readonly family?: "IPv4" | "IPv6" | "dual" | undefined
  /** The site's IPv6 filtering (default the NAT's filtering, or address-and-port-dependent). */
  readonly ipv6Filtering?: NatBehavior.Filtering | undefined
  /** The site's firewall (UDP blocked, only some TCP ports). */
  readonly firewall?: VirtualNetwork.Firewall | undefined
  /** Loss on the site's access link, in [0, 1]. */
  readonly loss?: number | undefined
  /** Give this side's agent the TURN server, when there is one (default true). */
  readonly useTurn?: boolean | undefined
  /** The transport to the TURN server (default `udp`; `tls` goes to port 443). */
  readonly turnTransport?: "udp" | "tcp" | "tls" | undefined
  /** The family of the relayed address to ask for (REQUESTED-ADDRESS-FAMILY; default the server's, IPv4). */
  readonly turnFamily?: Family | undefined
  /** Signal host candidates as mDNS names the peer cannot resolve (as browsers do), so no host pair forms. */
  readonly concealHost?: boolean | undefined
  /** More agent options (merged last). */
  readonly agent?: Partial<IceAgent.Options> | undefined
}

/**
 * A pairing to run.
 *
 * @internal
 */
export interface PairingOptions {
  readonly a?: SideOptions | undefined
  readonly b?: SideOptions | undefined
  readonly topology?: "separate" | "same-site" | "carrier" | undefined
  /** The carrier-grade NAT of `topology: "carrier"` (default EIM/EIF, sequential ports, hairpinning). */
  readonly carrierNat?: NatBehavior.NatBehavior | undefined
  /** Put a TURN server on the internet and give both agents its address (default false). */
  readonly turn?: boolean | undefined
  /**
   * Peer ranges the TURN server relays to although its policy denies them by default (`TurnServer` `allowPeers`):
   * `["198.51.100.9/32"]` lets two allocations on this server reach each other (relay-to-relay).
   */
  readonly turnAllowPeers?: ReadonlyArray<string> | undefined
  /** Loss on the internet link, in [0, 1] (default 0). */
  readonly loss?: number | undefined
  /** The seed of the world and of the agents' randomness (default "ice-scenario"). */
  readonly seed?: string | undefined
  /** How long to wait for both agents (virtual time, default 2 minutes); later is `failed` ("Deadline"). */
  readonly deadline?: Duration.DurationInput | undefined
  /**
   * How far {@link runPairing} moves the virtual clock between looks at the run (default 1 s). Results do not
   * depend on it (every sleep due within a step still runs at its own instant); a larger step is faster.
   */
  readonly step?: Duration.DurationInput | undefined
  /** Keep the world's packet trace and return it as text (default false). */
  readonly trace?: boolean | undefined
}

/**
 * What a pairing gave.
 *
 * @internal
 */
export interface PairingResult {
  readonly outcome: Outcome
  /** Alice's selected pair as `<local type>-<remote type>` ("srflx-prflx", "relay-srflx", "host-host"), or "none". */
  readonly pair: string
  /** Bob's selected pair, the same way. */
  readonly pairB: string
  /** Alice's time to connected from the start (or to failure), virtual ms. */
  readonly virtualMs: number
  /** Bob's time to connected, virtual ms (undefined unless he connected). */
  readonly virtualMsB: number | undefined
  /** Checks sent by both agents (when both had connected, or one had failed). */
  readonly checks: number
  /** A datagram sent by Alice on the selected pair reached Bob. */
  readonly delivered: boolean
  /** Why it failed: `IceFailed (AllPairsFailed): …`, `Deadline`, `VirtualTimeExceeded`. */
  readonly failure?: string | undefined
  readonly failureTag?: "IceFailed" | "ConsentExpired" | "Deadline" | "VirtualTimeExceeded" | undefined
  /** The world's drop counters at the end. */
  readonly dropped: Readonly<Record<VirtualNetwork.DropReason, number>>
  /** The packet trace, one line per event (with `trace: true`). */
  readonly trace?: ReadonlyArray<string> | undefined
}

/** @internal */
export const stunIp = "192.0.2.1"
/** @internal */
export const stunIp6 = "2001:db8:53::1"
/** @internal */
export const turnIp = "198.51.100.9"
/** @internal */
export const turnIp6 = "2001:db8:100::9"
/** @internal */
export const turnPort = 3478
/** @internal */
export const turnTlsPort = 443
/** @internal */
export const defaultSeed = "ice-scenario"
/** @internal */
export const defaultDeadline: Duration.Duration = Duration.minutes(2)

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const v6 = (ip: string, port: number): SocketAddress => ({ family: "IPv6", ip, port })

/**
 * The behaviour used for a mapping × filtering cell of the 9 × 9 product: hairpinning, 300 s, outbound refresh;
 * ports preserved under endpoint-independent mapping, random otherwise (as `NatBehavior.symmetric`: a
 * destination-dependent NAT that preserved ports would hand out predictable neighbouring ports).
 *
 * @internal
 */
export const behaviour = (mapping: NatBehavior.Mapping, filtering: NatBehavior.Filtering): NatBehavior.NatBehavior =>
  NatBehavior.make(mapping, filtering, {
    portAssignment: mapping === "endpoint-independent" ? "preserving" : "random"
  })

/**
 * `<local type>-<remote type>` of a selected pair.
 *
 * @internal
 */
export const pairKind = (pair: IceAgent.SelectedPair): string => `${pair.local.type}-${pair.remote.type}`

const conceal = (event: IceAgent.LocalEvent, who: string): IceAgent.LocalEvent => {
  if (event._tag !== "Candidate" || event.candidate.type !== "host") return event
  const candidate: IceCandidate.Candidate = { ...event.candidate, address: `${who}-${event.candidate.port}.local` }
  return { ...event, candidate }
}

/** Each agent's events into the other, host candidates concealed where asked. */
const signal = (
  a: IceAgent.IceAgent,
  b: IceAgent.IceAgent,
  concealA: boolean,
  concealB: boolean
): Effect.Effect<void, never, Scope.Scope> =>
  !concealA && !concealB ? IceAgent.pipeSignalling(a, b) : Effect.asVoid(Effect.all([
    Effect.forkScoped(
      Stream.runForEach(a.localCandidates, (e) => Effect.ignore(b.receive(concealA ? conceal(e, "alice") : e)))
    ),
    Effect.forkScoped(
      Stream.runForEach(b.localCandidates, (e) => Effect.ignore(a.receive(concealB ? conceal(e, "bob") : e)))
    )
  ]))

interface Built {
  readonly world: VirtualNetwork.World
  readonly alice: VirtualNetwork.Host
  readonly bob: VirtualNetwork.Host
}

const siteOf = (
  name: string,
  side: SideOptions,
  external: string,
  parent: string | undefined
): VirtualNetwork.SiteOptions => {
  const family = side.family ?? "IPv4"
  const nat = side.nat ?? NatBehavior.fullCone
  const ipv6 = family === "IPv4"
    ? undefined
    : { filtering: side.ipv6Filtering ?? (side.nat?.filtering ?? "address-and-port-dependent") }
  return {
    name,
    ...(family === "IPv6" ? {} : { nat, externalAddresses: [external] }),
    ...(ipv6 === undefined ? {} : { ipv6 }),
    ...(parent === undefined ? {} : { parent }),
    ...(side.firewall === undefined ? {} : { firewall: side.firewall }),
    ...(side.loss === undefined ? {} : { loss: side.loss })
  }
}

const addressesOf = (side: SideOptions, ip4: string, ip6: string): ReadonlyArray<string> => {
  switch (side.family ?? "IPv4") {
    case "IPv4":
      return [ip4]
    case "IPv6":
      return [ip6]
    case "dual":
      return [ip4, ip6]
  }
}

const needsDualStackTurn = (options: PairingOptions) =>
  [options.a ?? {}, options.b ?? {}].some((s) => s.family === "IPv6" || s.turnFamily === "IPv6")

const needsTls = (options: PairingOptions) => [options.a ?? {}, options.b ?? {}].some((s) => s.turnTransport === "tls")

/** The world, its servers and the two hosts, in the current scope. */
const build = (options: PairingOptions): Effect.Effect<Built, never, Scope.Scope> =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make({
      seed: options.seed ?? defaultSeed,
      ...(options.loss === undefined ? {} : { loss: options.loss }),
      trace: options.trace ?? false,
      logLimit: options.trace === true ? 100_000 : 1000
    })
    const a = options.a ?? {}
    const b = options.b ?? {}
    const stunHost = yield* world.addHost({ name: "stun", addresses: [stunIp, stunIp6] })
    yield* StunServer.make({ address: stunIp, port: 3478, tcp: false }).pipe(
      Effect.provideService(Network.Network, stunHost.network)
    )
    yield* StunServer.make({ address: stunIp6, port: 3478, tcp: false }).pipe(
      Effect.provideService(Network.Network, stunHost.network)
    )
    if (options.turn === true) {
      const dual = needsDualStackTurn(options)
      const turnHost = yield* world.addHost({ name: "turn", addresses: dual ? [turnIp, turnIp6] : [turnIp] })
      yield* TurnServer.make({
        addresses: dual ? [turnIp, turnIp6] : [turnIp],
        port: turnPort,
        tcp: true,
        ...(dual ? { relayAddresses: [turnIp, turnIp6] } : {}),
        ...(needsTls(options) ? { tls: { certificate: "simulated", key: "simulated", port: turnTlsPort } } : {}),
        users: { alice: "secret", bob: "secret" },
        ...(options.turnAllowPeers === undefined ? {} : { allowPeers: options.turnAllowPeers })
      }).pipe(Effect.provideService(Network.Network, turnHost.network))
    }
    const topology = options.topology ?? "separate"
    if (topology === "same-site") {
      yield* world.addSite(siteOf("a", a, "203.0.113.1", undefined))
      const alice = yield* world.addHost({
        name: "alice",
        site: "a",
        addresses: addressesOf(a, "10.0.1.2", "2001:db8:1::2")
      })
      const bob = yield* world.addHost({
        name: "bob",
        site: "a",
        addresses: addressesOf(b, "10.0.1.3", "2001:db8:1::3")
      })
      return { world, alice, bob }
    }
    let parent: string | undefined
    if (topology === "carrier") {
      yield* world.addSite({
        name: "carrier",
        nat: options.carrierNat ??
          NatBehavior.make("endpoint-independent", "endpoint-independent", { portAssignment: "sequential" }),
        externalAddresses: ["203.0.113.100"]
      })
      parent = "carrier"
    }
    const carrier = topology === "carrier"
    yield* world.addSite(siteOf("a", a, carrier ? "100.64.0.2" : "203.0.113.1", parent))
    yield* world.addSite(siteOf("b", b, carrier ? "100.64.0.3" : "203.0.113.2", parent))
    const alice = yield* world.addHost({
      name: "alice",
      site: "a",
      addresses: addressesOf(a, "10.0.1.2", "2001:db8:1::2")
    })
    const bob = yield* world.addHost({ name: "bob", site: "b", addresses: addressesOf(b, "10.0.2.2", "2001:db8:2::2") })
    return { world, alice, bob }
  }).pipe(Effect.orDie)

const agentOptions = (options: PairingOptions, side: SideOptions, user: string, controlling: boolean) => {
  const turnServers: Array<IceGatherer.TurnServerConfig> = []
  if (options.turn === true && side.useTurn !== false) {
    const transport = side.turnTransport ?? "udp"
    const port = transport === "tls" ? turnTlsPort : turnPort
    turnServers.push({
      server: side.family === "IPv6" ? v6(turnIp6, port) : v4(turnIp, port),
      transport,
      auth: { mode: "static", username: user, password: "secret" },
      ...(side.turnFamily === undefined ? {} : { family: side.turnFamily })
    })
  }
  const stunServers: Array<SocketAddress> = [v4(stunIp, 3478), v6(stunIp6, 3478)]
  return { stunServers, turnServers, controlling, ...side.agent } satisfies IceAgent.Options
}

const emptyDrops = (): Record<VirtualNetwork.DropReason, number> =>
  Object.fromEntries(VirtualNetwork.dropReasons.map((r) => [r, 0])) as Record<VirtualNetwork.DropReason, number>

const tagOf = (error: IceAgent.IceFailed | IceAgent.ConsentExpired) => error._tag

/**
 * Builds the world, starts both agents and waits (on the clock of the caller, which must be driven: see
 * {@link runPairing}) until both are connected, one has failed, or the deadline passes; then sends one datagram
 * from Alice to Bob on the selected pair. Closing the scope closes the agents, the servers and the world.
 *
 * @internal
 */
export const pairing = (options: PairingOptions = {}): Effect.Effect<PairingResult, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { alice: aliceHost, bob: bobHost, world } = yield* build(options)
    const a = options.a ?? {}
    const b = options.b ?? {}
    const start = yield* Clock.currentTimeMillis
    const alice = yield* IceAgent.make(agentOptions(options, a, "alice", true)).pipe(
      Effect.provideService(Network.Network, aliceHost.network),
      Effect.orDie
    )
    const bob = yield* IceAgent.make(agentOptions(options, b, "bob", false)).pipe(
      Effect.provideService(Network.Network, bobHost.network),
      Effect.orDie
    )
    yield* signal(alice, bob, a.concealHost ?? false, b.concealHost ?? false)
    const timedAlice = Effect.zip(Effect.either(alice.connected), Clock.currentTimeMillis)
    const both = yield* Effect.all([timedAlice, Effect.either(bob.connected)], { concurrency: 2 }).pipe(
      Effect.timeoutOption(options.deadline ?? defaultDeadline)
    )
    const statsA = yield* alice.stats
    const statsB = yield* bob.stats
    const checks = statsA.checksSent + statsB.checksSent
    const end = yield* Clock.currentTimeMillis
    const finish = (result: Omit<PairingResult, "dropped" | "trace" | "checks">) =>
      Effect.gen(function*() {
        const stats = yield* world.stats
        const trace = options.trace === true
          ? (yield* world.trace).map(VirtualNetwork.formatTraceEvent)
          : undefined
        return { ...result, checks, dropped: stats.dropped, ...(trace === undefined ? {} : { trace }) }
      })
    if (Option.isNone(both)) {
      return yield* finish({
        outcome: "failed",
        pair: "none",
        pairB: "none",
        virtualMs: end - start,
        virtualMsB: undefined,
        delivered: false,
        failure: "Deadline",
        failureTag: "Deadline"
      })
    }
    const [[resultA, atA], resultB] = both.value
    if (Either.isLeft(resultA) || Either.isLeft(resultB)) {
      const error = Either.isLeft(resultA) ? resultA.left : Either.flip(resultB).pipe(Either.getOrThrow)
      return yield* finish({
        outcome: "failed",
        pair: Either.isRight(resultA) ? pairKind(resultA.right) : "none",
        pairB: Either.isRight(resultB) ? pairKind(resultB.right) : "none",
        virtualMs: Either.isRight(resultA) ? statsA.connectedAfterMs ?? atA - start : atA - start,
        virtualMsB: statsB.connectedAfterMs,
        delivered: false,
        failure: `${tagOf(error)}: ${error.message}`,
        failureTag: tagOf(error)
      })
    }
    const pairA = resultA.right
    const inbox = yield* Effect.fork(Stream.runCollect(Stream.take(bob.data, 1)))
    yield* Effect.ignore(alice.send(new TextEncoder().encode("ping")))
    const got = yield* inbox.await.pipe(
      Effect.flatten,
      Effect.timeoutOption("5 seconds")
    )
    const delivered = Option.isSome(got) && Chunk.size(got.value) === 1 &&
      new TextDecoder().decode(Chunk.unsafeGet(got.value, 0)) === "ping"
    const relayed = pairA.local.type === "relay" || pairA.remote.type === "relay"
    return yield* finish({
      outcome: relayed ? "relay" : "direct",
      pair: pairKind(pairA),
      pairB: pairKind(resultB.right),
      virtualMs: statsA.connectedAfterMs ?? atA - start,
      virtualMsB: statsB.connectedAfterMs,
      delivered
    })
  }).pipe(
    Effect.provideService(StunTransaction.TransactionIdSource, StunTransaction.transactionIdsFromRandom),
    Effect.withRandom(Random.make(options.seed ?? defaultSeed))
  )

/**
 * Runs {@link pairing} in virtual time (`VirtualNetwork.runInVirtualTime`, steps of `step`), bounded by the
 * deadline plus two minutes for closing (TURN allocations are released with a Refresh that waits for its answer).
 * Works inside a test (`it.effect`) and in a plain program alike: it brings its own `TestClock`, and leaves the
 * caller's clock alone.
 *
 * @internal
 */
export const runPairing = (options: PairingOptions = {}): Effect.Effect<PairingResult> => {
  const deadline = Duration.decode(options.deadline ?? defaultDeadline)
  const virtual = VirtualNetwork.runInVirtualTime(pairing(options), {
    step: options.step ?? "1 second",
    limit: Duration.sum(deadline, Duration.minutes(2))
  })
  // In a child fiber, awaited without inheriting its FiberRefs: `runInVirtualTime` provides `TestContext`, whose
  // TestClock otherwise stays the caller's clock afterwards (effect 3.22), and every later real sleep of the caller
  // would wait for a clock nobody moves.
  return Effect.flatMap(Effect.fork(virtual), (fiber) => Effect.flatten(Fiber.await(fiber))).pipe(
    Effect.catchTag("VirtualTimeExceeded", (error) =>
      Effect.succeed<PairingResult>({
        outcome: "failed",
        pair: "none",
        pairB: "none",
        virtualMs: error.limitMs,
        virtualMsB: undefined,
        checks: 0,
        delivered: false,
        failure: `VirtualTimeExceeded: ${error.message}`,
        failureTag: "VirtualTimeExceeded",
        dropped: emptyDrops()
      }))
  )
}
