/**
 * Two ICE agents on the simulated internet (VirtualNetwork, virtual time, fixed seeds), each behind its own NAT,
 * with a STUN server (192.0.2.1:3478) and a TURN server (198.51.100.9:3478, UDP and TCP) on the internet.
 *
 * Topology: the internet's one-way latency is 10 ms; site "a" (external 203.0.113.1) holds host "alice"
 * 10.0.1.2, site "b" (external 203.0.113.2) holds host "bob" 10.0.2.2. Alice is controlling unless a test says
 * otherwise. Signalling is instant (`IceAgent.pipeSignalling`). Each outcome's expected kind of selected pair is
 * written here with its reason, not computed by the code under test; time-to-connect is the virtual instant the
 * agent selected its pair, asserted exactly (the world, the agents' credentials, tie-breakers and transaction ids
 * are all seeded).
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Chunk,
  Clock,
  Duration,
  Effect,
  Exit,
  Fiber,
  Option,
  Random,
  Scope,
  Stream,
  SubscriptionRef,
  Supervisor
} from "effect"
import * as IceAgent from "../../src/IceAgent.js"
import type * as IceGatherer from "../../src/IceGatherer.js"
import * as NatBehavior from "../../src/NatBehavior.js"
import * as Network from "../../src/Network.js"
import * as StunServer from "../../src/StunServer.js"
import * as StunTransaction from "../../src/StunTransaction.js"
import type { SocketAddress } from "../../src/TransportAddress.js"
import * as TurnServer from "../../src/TurnServer.js"
import * as VirtualNetwork from "../../src/VirtualNetwork.js"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const stunAddress = v4("192.0.2.1", 3478)
const turnAddress = v4("198.51.100.9", 3478)
const turnUdp: IceGatherer.TurnServerConfig = {
  server: turnAddress,
  auth: { mode: "static", username: "alice", password: "secret" }
}

interface SiteSpec {
  readonly nat?: NatBehavior.NatBehavior | undefined
  readonly site?: Partial<VirtualNetwork.SiteOptions>
}

interface Scenario {
  readonly a: SiteSpec
  readonly b: SiteSpec
  /** Put both hosts on one site ("a"). */
  readonly sameLan?: boolean
  readonly world?: VirtualNetwork.Options
  readonly agentA?: IceAgent.Options
  readonly agentB?: IceAgent.Options
  readonly turn?: boolean
  readonly turnServer?: IceGatherer.TurnServerConfig
  readonly seed?: string
  /** A carrier-grade NAT (203.0.113.100) that sites given `parent: "carrier"` sit behind. */
  readonly carrier?: NatBehavior.NatBehavior
}

/** Builds the world and starts both servers, in the current scope. */
const worldOf = (scenario: Scenario) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make({ seed: scenario.seed ?? "ice", ...scenario.world })
    const stunHost = yield* world.addHost({ name: "stun", addresses: ["192.0.2.1"] })
    const turnHost = yield* world.addHost({ name: "turn", addresses: ["198.51.100.9"] })
    yield* StunServer.make({ address: "192.0.2.1", port: 3478, tcp: false }).pipe(
      Effect.provideService(Network.Network, stunHost.network)
    )
    const turnServer = yield* TurnServer.make({ addresses: ["198.51.100.9"], tcp: true, users: { alice: "secret" } })
      .pipe(Effect.provideService(Network.Network, turnHost.network))
    // The same server's "TLS" port: the simulator's TLS is plain TCP, so a TCP listener on 443 stands for it.
    yield* TurnServer.make({ addresses: ["198.51.100.9"], port: 443, tcp: true, users: { alice: "secret" } }).pipe(
      Effect.provideService(Network.Network, turnHost.network)
    )
    if (scenario.carrier !== undefined) {
      yield* world.addSite({ name: "carrier", nat: scenario.carrier, externalAddresses: ["203.0.113.100"] })
    }
    yield* world.addSite({
      name: "a",
      nat: scenario.a.nat ?? NatBehavior.fullCone,
      externalAddresses: ["203.0.113.1"],
      ...scenario.a.site
    })
    if (scenario.sameLan !== true) {
      yield* world.addSite({
        name: "b",
        nat: scenario.b.nat ?? NatBehavior.fullCone,
        externalAddresses: ["203.0.113.2"],
        ...scenario.b.site
      })
    }
    const aliceHost = yield* world.addHost({ name: "alice", addresses: ["10.0.1.2"], site: "a" })
    const bobHost = yield* world.addHost({
      name: "bob",
      addresses: [scenario.sameLan === true ? "10.0.1.3" : "10.0.2.2"],
      site: scenario.sameLan === true ? "a" : "b"
    })
    return { world, aliceHost, bobHost, turnServer }
  })

/** The world, its servers and both agents (signalling piped), in the current scope. */
const setup = (scenario: Scenario) =>
  Effect.gen(function*() {
    const { aliceHost, bobHost, turnServer, world } = yield* worldOf(scenario)
    const { alice, bob } = yield* agents(scenario, aliceHost, bobHost)
    return { world, alice, bob, aliceHost, bobHost, turnServer }
  })

/** Both agents (Alice controlling, Bob controlled unless the scenario says otherwise), signalling piped. */
const agents = (scenario: Scenario, aliceHost: VirtualNetwork.Host, bobHost: VirtualNetwork.Host) =>
  Effect.gen(function*() {
    const servers: IceAgent.Options = {
      stunServers: [stunAddress],
      turnServers: scenario.turn === false ? [] : [scenario.turnServer ?? turnUdp]
    }
    const alice = yield* IceAgent.make({ ...servers, controlling: true, ...scenario.agentA }).pipe(
      Effect.provideService(Network.Network, aliceHost.network)
    )
    const bob = yield* IceAgent.make({ ...servers, controlling: false, ...scenario.agentB }).pipe(
      Effect.provideService(Network.Network, bobHost.network)
    )
    yield* IceAgent.pipeSignalling(alice, bob)
    return { alice, bob }
  })

/** Seeded randomness and transaction ids, so every run is the same run. */
const seeded = <A, E, R>(effect: Effect.Effect<A, E, R>, seed = "agents") =>
  effect.pipe(
    Effect.provideService(StunTransaction.TransactionIdSource, StunTransaction.transactionIdsFromRandom),
    Effect.withRandom(Random.make(seed))
  )

interface Outcome {
  readonly alice: IceAgent.SelectedPair
  readonly bob: IceAgent.SelectedPair
  readonly aliceMs: number
  readonly bobMs: number
  readonly checks: number
  readonly echoed: string
  readonly roles: readonly [IceAgent.Role, IceAgent.Role]
}

const text = (s: string) => new TextEncoder().encode(s)

/** Connects both agents and sends a message each way on the selected pair. */
const connect = (scenario: Scenario) =>
  VirtualNetwork.runInVirtualTime(
    seeded(Effect.gen(function*() {
      const { alice, bob } = yield* setup(scenario)
      const [pa, pb] = yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 })
      const inbox = yield* Effect.fork(Stream.runCollect(Stream.take(bob.data, 1)))
      yield* alice.send(text("hello bob"))
      const got = yield* Fiber.join(inbox)
      const sa = yield* alice.stats
      const sb = yield* bob.stats
      return {
        alice: pa,
        bob: pb,
        aliceMs: sa.connectedAfterMs!,
        bobMs: sb.connectedAfterMs!,
        checks: sa.checksSent + sb.checksSent,
        echoed: new TextDecoder().decode(Chunk.unsafeGet(got, 0)),
        roles: [yield* alice.role, yield* bob.role] as const
      } satisfies Outcome
    })),
    { step: "50 millis", limit: "3 minutes" }
  )

const kind = (pair: IceAgent.SelectedPair) => `${pair.local.type}/${pair.remote.type}`

const classical: ReadonlyArray<readonly [string, NatBehavior.NatBehavior]> = [
  ["full cone", NatBehavior.fullCone],
  ["restricted", NatBehavior.restrictedCone],
  ["port-restricted", NatBehavior.portRestrictedCone],
  ["symmetric", NatBehavior.symmetric]
]

/**
 * ARCHITECTURE.md's table, with the reason for each "relay": a symmetric NAT gives the peer a new port for every
 * destination, which a port-restricted (APDF) or symmetric peer filters out, since it never sent to that port.
 */
const expectedTable: Record<string, Record<string, "direct" | "relay">> = {
  "full cone": { "full cone": "direct", restricted: "direct", "port-restricted": "direct", symmetric: "direct" },
  restricted: { "full cone": "direct", restricted: "direct", "port-restricted": "direct", symmetric: "direct" },
  "port-restricted": { "full cone": "direct", restricted: "direct", "port-restricted": "direct", symmetric: "relay" },
  symmetric: { "full cone": "direct", restricted: "direct", "port-restricted": "relay", symmetric: "relay" }
}

/** Time-to-connect (Alice, Bob) in virtual ms for each cell, as measured with these seeds. */
const expectedTimes: Record<string, readonly [number, number]> = {
  // The host pairs (private addresses of another site) never answer; the best valid pair is nominated when the
  // nomination delay (1 s) after the first valid pair ends: 1.17 s for Alice, whose nomination answer is back
  // 10 ms after Bob's selection on the USE-CANDIDATE request.
  "full cone × full cone": [1170, 1160],
  "full cone × restricted": [1170, 1160],
  "full cone × port-restricted": [1170, 1160],
  "full cone × symmetric": [1220, 1210],
  "restricted × full cone": [1170, 1160],
  "restricted × restricted": [1170, 1160],
  "restricted × port-restricted": [1170, 1160],
  "restricted × symmetric": [1220, 1210],
  "port-restricted × full cone": [1170, 1160],
  "port-restricted × restricted": [1170, 1160],
  "port-restricted × port-restricted": [1170, 1160],
  "port-restricted × symmetric": [1440, 1420],
  "symmetric × full cone": [1170, 1160],
  "symmetric × restricted": [1170, 1160],
  "symmetric × port-restricted": [1390, 1370],
  "symmetric × symmetric": [1440, 1420]
}

/** Time-to-connect (Alice, Bob) with loss on the internet link, with these seeds. */
const expectedLossTimes: Record<string, readonly [number, number]> = {
  // With this seed an answer Alice waits for is lost, and its retransmission (the RFC 8489 schedule) decides when she
  // connects; Bob has selected at 1.31 s.
  "0.1": [2820, 1310],
  // Bob selects at 1.67 s, but answers to Alice's USE-CANDIDATE check are lost again and again with this seed: her
  // transaction runs on the RFC 8489 retransmission schedule until one gets through at 32.67 s. Nothing is stuck.
  "0.3": [32670, 1670]
}

describe("ICE agent on the simulated internet", () => {
  it.effect("same LAN: a host/host pair", () =>
    Effect.gen(function*() {
      const out = yield* connect({ a: {}, b: {}, sameLan: true })
      console.log("same LAN", out.aliceMs, out.bobMs, out.checks)
      assert.strictEqual(kind(out.alice), "host/host")
      assert.strictEqual(kind(out.bob), "host/host")
      assert.strictEqual(out.echoed, "hello bob")
    }))

  describe("the classical 4 × 4 table (TURN available): the expected kind of selected pair", () => {
    for (const [nameA, natA] of classical) {
      for (const [nameB, natB] of classical) {
        const expected = expectedTable[nameA]![nameB]!
        it.effect(`${nameA} × ${nameB}: ${expected}`, () =>
          Effect.gen(function*() {
            const out = yield* connect({ a: { nat: natA }, b: { nat: natB } })
            console.log(`${nameA} × ${nameB}`, kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.checks)
            const relayed = kind(out.alice).includes("relay") || kind(out.bob).includes("relay")
            assert.strictEqual(relayed ? "relay" : "direct", expected)
            assert.strictEqual(out.alice.id.split("->").length, 2)
            assert.strictEqual(out.echoed, "hello bob")
            const times = expectedTimes[`${nameA} × ${nameB}`]
            assert.deepStrictEqual([out.aliceMs, out.bobMs], times)
          }))
      }
    }
  })

  describe("firewalls, loss, nested and hairpinning NATs", () => {
    it.effect("UDP blocked at Alice's site: TURN over TCP, a relayed pair", () =>
      Effect.gen(function*() {
        const out = yield* connect({
          a: { site: { firewall: { blockUdp: true } } },
          b: {},
          agentA: { turnServers: [{ ...turnUdp, transport: "tcp" }] }
        })
        console.log("udp blocked", kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.checks)
        assert.strictEqual(out.alice.local.type, "relay")
        assert.deepStrictEqual([out.aliceMs, out.bobMs], [1390, 1370])
        assert.strictEqual(out.echoed, "hello bob")
      }))

    it.effect("only TCP to port 443 at Alice's site: TURN over TLS on 443, a relayed pair", () =>
      Effect.gen(function*() {
        const out = yield* connect({
          a: { site: { firewall: { blockUdp: true, allowTcpPorts: [443] } } },
          b: {},
          agentA: { turnServers: [{ ...turnUdp, server: v4("198.51.100.9", 443), transport: "tls" }] }
        })
        console.log("tcp 443 only", kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.checks)
        assert.strictEqual(out.alice.local.type, "relay")
        assert.deepStrictEqual([out.aliceMs, out.bobMs], [1390, 1370])
        assert.strictEqual(out.echoed, "hello bob")
      }))

    for (const loss of [0.1, 0.3]) {
      it.effect(`${loss * 100} % loss on the internet: still connects, in exact virtual time`, () =>
        Effect.gen(function*() {
          const out = yield* connect({ a: {}, b: {}, world: { loss } })
          console.log(`loss ${loss}`, kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.checks)
          assert.notInclude(kind(out.alice), "relay")
          assert.deepStrictEqual([out.aliceMs, out.bobMs], expectedLossTimes[String(loss)])
        }))
    }

    it.effect("an IPv4-only and an IPv6-only peer meet through a dual-stack TURN server (an IPv6 relayed address)", () =>
      VirtualNetwork.runInVirtualTime(
        seeded(Effect.gen(function*() {
          const world = yield* VirtualNetwork.make({ seed: "dual" })
          const turnHost = yield* world.addHost({ name: "turn", addresses: ["198.51.100.9", "2001:db8:100::9"] })
          yield* TurnServer.make({
            addresses: ["198.51.100.9", "2001:db8:100::9"],
            relayAddresses: ["198.51.100.9", "2001:db8:100::9"],
            users: { alice: "secret" }
          }).pipe(Effect.provideService(Network.Network, turnHost.network))
          yield* world.addSite({ name: "a", nat: NatBehavior.portRestrictedCone, externalAddresses: ["203.0.113.1"] })
          yield* world.addSite({ name: "b", ipv6: { filtering: "address-and-port-dependent" } })
          const aliceHost = yield* world.addHost({ name: "alice", addresses: ["10.0.1.2"], site: "a" })
          const bobHost = yield* world.addHost({ name: "bob", addresses: ["2001:db8:2::2"], site: "b" })
          // Alice (IPv4 only) asks for an IPv6 relayed address over IPv4 (REQUESTED-ADDRESS-FAMILY, RFC 8656 §7.1);
          // Bob (IPv6 only) needs no server at all: his host candidate is public.
          const alice = yield* IceAgent.make({ controlling: true, turnServers: [{ ...turnUdp, family: "IPv6" }] }).pipe(
            Effect.provideService(Network.Network, aliceHost.network)
          )
          const bob = yield* IceAgent.make({ controlling: false }).pipe(
            Effect.provideService(Network.Network, bobHost.network)
          )
          yield* IceAgent.pipeSignalling(alice, bob)
          const [pa, pb] = yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 })
          const inbox = yield* Effect.fork(Stream.runCollect(Stream.take(bob.data, 1)))
          yield* alice.send(text("over the relay"))
          const got = new TextDecoder().decode(Chunk.unsafeGet(yield* Fiber.join(inbox), 0))
          const times = [(yield* alice.stats).connectedAfterMs, (yield* bob.stats).connectedAfterMs]
          console.log("v4-only × v6-only", kind(pa), kind(pb), pa.local.address, times)
          assert.strictEqual(kind(pa), "relay/host")
          assert.strictEqual(pa.local.address, "2001:db8:100::9")
          assert.strictEqual(pb.local.address, "2001:db8:2::2")
          assert.strictEqual(got, "over the relay")
          // Bob's first check reaches the relay before Alice's check installed the permission for his IP, and is
          // dropped there; its retransmission (500 ms later) gets through.
          assert.deepStrictEqual(times, [190, 590])
        })),
        { step: "50 millis", limit: "3 minutes" }
      ))

    it.effect("double NAT: Alice behind a home NAT behind a carrier-grade NAT connects directly", () =>
      Effect.gen(function*() {
        const out = yield* connect({
          carrier: NatBehavior.fullCone,
          a: { nat: NatBehavior.portRestrictedCone, site: { parent: "carrier", externalAddresses: ["100.64.0.2"] } },
          b: {}
        })
        console.log("double NAT", kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.checks)
        assert.notInclude(kind(out.alice) + kind(out.bob), "relay")
        assert.deepStrictEqual([out.aliceMs, out.bobMs], [1170, 1160])
        // Bob sees Alice at the carrier's address.
        assert.strictEqual(out.bob.remote.address, "203.0.113.100")
      }))

    it.effect("hairpinning: both behind one carrier-grade NAT, connected through its external address", () =>
      Effect.gen(function*() {
        const out = yield* connect({
          carrier: NatBehavior.fullCone,
          a: { site: { parent: "carrier", externalAddresses: ["100.64.0.2"] } },
          b: { site: { parent: "carrier", externalAddresses: ["100.64.0.3"] } }
        })
        console.log("hairpin", kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.checks)
        assert.notInclude(kind(out.alice) + kind(out.bob), "relay")
        assert.strictEqual(out.alice.remote.address, "203.0.113.100")
        assert.strictEqual(out.bob.remote.address, "203.0.113.100")
        // No internet crossing on the hairpinned path: the answers come back sooner than across the internet.
        assert.deepStrictEqual([out.aliceMs, out.bobMs], [1100, 1100])
      }))
  })

  it.effect("APDM/EIF on both sides: the chain of peer-reflexive candidates is bounded, and the relay wins", () =>
    Effect.gen(function*() {
      // Every triggered check leaves through a new mapping, which the other side learns as a new peer-reflexive
      // candidate and checks again; each answer comes from yet another port, so every direct pair fails the
      // symmetric check. At most `maxPeerReflexive` are learnt per base, so the relayed pairs stay in the list.
      const nat = NatBehavior.make("address-and-port-dependent", "endpoint-independent")
      const out = yield* connect({ a: { nat }, b: { nat } })
      console.log("apdm-eif", kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.checks)
      assert.include(kind(out.alice) + kind(out.bob), "relay")
      assert.deepStrictEqual([out.aliceMs, out.bobMs], [1890, 1870])
      assert.isBelow(out.checks, 60)
    }))

  it.effect("role conflict: both controlling resolves (one becomes controlled) and connects", () =>
    Effect.gen(function*() {
      const out = yield* connect({ a: {}, b: {}, agentB: { controlling: true } })
      console.log("both controlling", kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.roles)
      assert.strictEqual(out.echoed, "hello bob")
      assert.notStrictEqual(out.roles[0], out.roles[1])
    }))

  it.effect("role conflict: both controlled resolves (one becomes controlling) and connects", () =>
    Effect.gen(function*() {
      const out = yield* connect({ a: {}, b: {}, agentA: { controlling: false } })
      console.log("both controlled", kind(out.alice), kind(out.bob), out.aliceMs, out.bobMs, out.roles)
      assert.strictEqual(out.echoed, "hello bob")
      assert.notStrictEqual(out.roles[0], out.roles[1])
    }))

  it.effect("no fiber is left running once the agents' scope closes (TURN allocations released)", () =>
    VirtualNetwork.runInVirtualTime(
      seeded(Effect.gen(function*() {
        const { aliceHost, bobHost, turnServer } = yield* worldOf({
          a: { nat: NatBehavior.symmetric },
          b: { nat: NatBehavior.symmetric }
        })
        const supervisor = yield* Supervisor.track
        const scope = yield* Scope.make()
        const { alice, bob } = yield* Effect.supervised(
          Scope.extend(agents({ a: {}, b: {} }, aliceHost, bobHost), scope),
          supervisor
        )
        yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 })
        const running = yield* supervisor.value
        assert.isAtLeast(running.length, 10)
        assert.strictEqual(turnServer.allocationCount(), 2)
        yield* Scope.close(scope, Exit.void)
        // Both allocations were released (Refresh LIFETIME 0) before the scope finished closing.
        assert.strictEqual(turnServer.allocationCount(), 0)
        assert.strictEqual(yield* SubscriptionRef.get(alice.state), "closed")
        const left = yield* supervisor.value
        assert.deepStrictEqual(left.map((f) => f.id()), [])
      })),
      { step: "50 millis", limit: "3 minutes" }
    ))

  describe("keepalives, consent freshness and restart", () => {
    const sleepUntil = (ms: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sleep(Duration.millis(Math.max(0, ms - now))))
    const simulate = <A, E>(body: Effect.Effect<A, E, Scope.Scope>) =>
      VirtualNetwork.runInVirtualTime(seeded(body), { step: "1 second", limit: "10 minutes" })
    /** Records the agent's state changes with their virtual instants. */
    const recordStates = (agent: IceAgent.IceAgent) =>
      Effect.gen(function*() {
        const log: Array<readonly [number, IceAgent.State]> = []
        yield* Effect.forkScoped(Stream.runForEach(agent.state.changes, (s) =>
          Effect.map(Clock.currentTimeMillis, (t) => {
            log.push([t, s])
          })))
        return log
      })
    const untilState = (agent: IceAgent.IceAgent, state: IceAgent.State) =>
      Stream.runHead(Stream.filter(agent.state.changes, (s) => s === state))

    it.effect("keepalive: a Binding indication after 15 s without sending on the selected pair", () =>
      simulate(Effect.gen(function*() {
        const { alice, bob } = yield* setup({
          a: {},
          b: {},
          turn: false,
          agentA: { consent: false },
          agentB: { consent: false }
        })
        yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 })
        const t0 = (yield* alice.stats).connectedAfterMs!
        assert.strictEqual(t0, 1170)
        yield* sleepUntil(t0 + 14_999)
        assert.strictEqual((yield* alice.stats).keepalives, 0)
        yield* sleepUntil(t0 + 15_001)
        assert.strictEqual((yield* alice.stats).keepalives, 1)
        // Sending data resets the idle timer.
        yield* sleepUntil(20_000)
        yield* alice.send(text("data"))
        yield* sleepUntil(34_999)
        assert.strictEqual((yield* alice.stats).keepalives, 1)
        yield* sleepUntil(35_001)
        assert.strictEqual((yield* alice.stats).keepalives, 2)
        assert.strictEqual((yield* alice.stats).consentChecks, 0)
        assert.strictEqual(yield* SubscriptionRef.get(alice.state), "completed")
      })))

    it.effect("consent (RFC 7675): checks every 4–6 s; peer gone → disconnected, then failed 30 s after the last answer", () =>
      simulate(Effect.gen(function*() {
        const scenario: Scenario = { a: {}, b: {}, turn: false }
        const { aliceHost, bobHost } = yield* worldOf(scenario)
        const servers = { stunServers: [stunAddress] }
        const alice = yield* IceAgent.make({ ...servers, controlling: true }).pipe(
          Effect.provideService(Network.Network, aliceHost.network)
        )
        const bobScope = yield* Scope.make()
        const bob = yield* Scope.extend(
          IceAgent.make({ ...servers, controlling: false }).pipe(
            Effect.provideService(Network.Network, bobHost.network)
          ),
          bobScope
        )
        yield* IceAgent.pipeSignalling(alice, bob)
        const log = yield* recordStates(alice)
        yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 })
        yield* sleepUntil(10_000)
        const checksBefore = (yield* alice.stats).consentChecks
        // Connected at 1.17 s, then one check every 4–6 s: one or two by 10 s.
        assert.isTrue(checksBefore >= 1 && checksBefore <= 2, String(checksBefore))
        yield* Scope.close(bobScope, Exit.void)
        yield* untilState(alice, "failed")
        const failedAt = yield* Clock.currentTimeMillis
        const failure = yield* alice.failure
        assert.isTrue(Option.isSome(failure) && failure.value._tag === "ConsentExpired")
        const lastConsentAt = (failure as Option.Some<IceAgent.ConsentExpired>).value.lastConsentAt
        assert.strictEqual(failedAt, lastConsentAt + 30_000)
        console.log("consent", log, lastConsentAt, failedAt)
        const disconnected = log.find(([, s]) => s === "disconnected")
        assert.isDefined(disconnected)
        assert.isTrue(disconnected![0] > 10_000 && disconnected![0] < failedAt)
        assert.deepStrictEqual(log, [[0, "new"], [50, "checking"], [1170, "completed"], [14193, "disconnected"], [
          35326,
          "failed"
        ]])
        assert.strictEqual(lastConsentAt, 5326)
        const error = yield* Effect.flip(alice.send(text("late")))
        assert.strictEqual(error._tag, "ConsentExpired")
        const consentChecks = (yield* alice.stats).consentChecks
        yield* sleepUntil(failedAt + 60_000)
        assert.strictEqual((yield* alice.stats).consentChecks, consentChecks)
      })))

    it.effect("restart on a working path: data keeps flowing on the old pair until the new one is selected", () =>
      simulate(Effect.gen(function*() {
        const { alice, bob, turnServer } = yield* setup({ a: {}, b: {} })
        const first = yield* alice.connected
        yield* bob.connected
        yield* sleepUntil(3_000)
        assert.strictEqual(turnServer.allocationCount(), 2)
        const received: Array<string> = []
        yield* Effect.forkScoped(Stream.runForEach(bob.data, (d) =>
          Effect.sync(() => {
            received.push(new TextDecoder().decode(d))
          })))
        const old = yield* alice.localCredentials
        const bobOld = yield* bob.localCredentials
        const fresh = yield* alice.restart
        assert.notStrictEqual(fresh.ufrag, old.ufrag)
        // Right after the restart: still the old pair, and data still goes.
        assert.strictEqual(Option.getOrThrow(yield* SubscriptionRef.get(alice.selectedPair)).id, first.id)
        yield* alice.send(text("during"))
        const next = yield* Stream.runHead(
          Stream.filter(alice.selectedPair.changes, (p) => Option.isSome(p) && p.value.id !== first.id)
        )
        const switchedAt = yield* Clock.currentTimeMillis
        yield* alice.send(text("after"))
        yield* Effect.sleep("100 millis")
        assert.deepStrictEqual(received, ["during", "after"])
        // The old generation's sockets are closed and its allocations released; the new one has its own.
        assert.strictEqual(turnServer.allocationCount(), 2)
        assert.deepStrictEqual(
          turnServer.allocations().map((a) => a.relayed.port).sort(),
          [49154, 49155]
        )
        // New sockets: the new pair's local port is not the old one's.
        assert.notStrictEqual(Option.getOrThrow(Option.flatten(next)).local.port, first.local.port)
        assert.strictEqual(switchedAt, 4_170)
        // Bob saw new remote credentials and restarted too (RFC 8445 §9).
        assert.notStrictEqual((yield* bob.localCredentials).ufrag, bobOld.ufrag)
      })))

    it.effect("restart: the selected path breaks (NAT reboot), Bob restarts, a new pair is selected, data flows", () =>
      simulate(Effect.gen(function*() {
        const randomPorts = NatBehavior.make("endpoint-independent", "endpoint-independent", {
          portAssignment: "random"
        })
        const { alice, bob, world } = yield* setup({ a: { nat: randomPorts }, b: {}, turn: false })
        const aliceLog = yield* recordStates(alice)
        const bobLog = yield* recordStates(bob)
        const first = yield* alice.connected
        yield* bob.connected
        yield* sleepUntil(5_000)
        const site = Option.getOrThrow(world.site("a"))
        yield* site.resetMappings
        yield* untilState(bob, "disconnected")
        const brokeAt = yield* Clock.currentTimeMillis
        const before = yield* bob.localCredentials
        const after = yield* bob.restart
        assert.notStrictEqual(after.ufrag, before.ufrag)
        const [pa, pb] = yield* Effect.all([
          Stream.runHead(Stream.filter(alice.selectedPair.changes, (p) => Option.isSome(p) && p.value.id !== first.id)),
          Stream.runHead(Stream.filter(bob.selectedPair.changes, (p) => Option.isSome(p) && p.value.id !== first.id))
        ], { concurrency: 2 })
        const reselectedAt = yield* Clock.currentTimeMillis
        console.log("restart", first.id, brokeAt, reselectedAt, aliceLog, bobLog)
        assert.isTrue(Option.isSome(Option.flatten(pa)) && Option.isSome(Option.flatten(pb)))
        // Bob's consent check went unanswered (the NAT forgot the mapping Bob sends to): disconnected at 10.749 s,
        // restarted at once; the new pair is selected 1.17 s later (the nomination delay again).
        assert.deepStrictEqual([brokeAt, reselectedAt], [10_749, 11_919])
        assert.deepStrictEqual(bobLog.slice(3), [[10_749, "disconnected"], [10_749, "checking"], [11_909, "completed"]])
        const inbox = yield* Effect.fork(Stream.runCollect(Stream.take(alice.data, 1)))
        yield* bob.send(text("after restart"))
        assert.strictEqual(new TextDecoder().decode(Chunk.unsafeGet(yield* Fiber.join(inbox), 0)), "after restart")
        assert.include(["connected", "completed"], yield* SubscriptionRef.get(bob.state))
      })))
  })
})
