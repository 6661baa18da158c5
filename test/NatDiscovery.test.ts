/**
 * `NatDiscovery` on the simulated internet, in virtual time (`TestClock`). The STUN server is our `StunServer` on a
 * public host with two IPs, 192.0.2.1 (A1) and 192.0.2.2 (A2), ports 3478 (P1) and 3479 (P2): RFC 5780's four
 * endpoints. The world's one-way latency is 10 ms, so a public host's Binding answer is back 20 ms after it left.
 *
 * Clients sit either on a public host (no NAT) or on a private host (10.0.0.2) in a NAT site whose router has the
 * RFC 4787 behaviour under test and the external address 203.0.113.1. The expected report of every NAT is written
 * here from its configuration, not computed by the code under test.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Fiber, Option, TestClock } from "effect"
import * as NatBehavior from "../src/NatBehavior.js"
import * as NatDiscovery from "../src/NatDiscovery.js"
import * as Network from "../src/Network.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunServer from "../src/StunServer.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const a1 = "192.0.2.1"
const a2 = "192.0.2.2"
const publicIp = "198.51.100.7"
const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const primary = v4(a1, 3478)
const rfc5780: StunServer.Options = { address: a1, alternateAddress: a2, port: 3478, alternatePort: 3479 }

/** A world with the STUN server host; the server itself is started by each test (with or without RFC 5780). */
const world = Effect.gen(function*() {
  const world = yield* VirtualNetwork.make({ seed: "nat-discovery" })
  const stunHost = yield* world.addHost({ name: "stun", addresses: [a1, a2] })
  return { world, stunHost }
})

const startServer = (host: VirtualNetwork.Host, options: StunServer.Options = rfc5780) =>
  StunServer.make(options).pipe(Effect.provideService(Network.Network, host.network))

/** Runs the discovery from `host` in a fiber (reproducible transaction ids). */
const fork = (host: VirtualNetwork.Host, options: NatDiscovery.Options) =>
  NatDiscovery.discover(options).pipe(
    Effect.provideService(Network.Network, host.network),
    Effect.provideService(StunTransaction.TransactionIdSource, StunTransaction.transactionIdsFromRandom),
    Effect.fork
  )

/** Moves the virtual clock in 10 s steps until the fiber is done (at most `limit`), and awaits it. */
const finish = <A, E>(fiber: Fiber.RuntimeFiber<A, E>, limit: Duration.DurationInput = "1 hour") =>
  Effect.gen(function*() {
    const end = Duration.toMillis(Duration.decode(limit))
    let waited = 0
    while (Option.isNone(yield* Fiber.poll(fiber)) && waited < end) {
      yield* TestClock.adjust("10 seconds")
      waited += 10_000
    }
    return yield* Fiber.await(fiber)
  })

const reportOf = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isFailure(exit)) throw new Error(`discovery failed: ${String(exit.cause)}`)
  return exit.value
}

const errorOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error(`discovery succeeded: ${JSON.stringify(exit.value)}`)
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (failure === undefined) throw new Error(`discovery died: ${String(exit.cause)}`)
  return failure
}

describe("NatDiscovery without a NAT", () => {
  it.scoped("a public host: natPresent false, EIM/EIF (full cone), mapped address = own address, hairpinning", () =>
    Effect.gen(function*() {
      const { stunHost, world: w } = yield* world
      yield* startServer(stunHost)
      const client = yield* w.addHost({ name: "public", addresses: [publicIp] })
      const fiber = yield* fork(client, { server: primary })
      const report = reportOf(yield* finish(fiber))
      assert.strictEqual(report.natPresent, false)
      assert.deepStrictEqual(report.local, v4("0.0.0.0", 49152))
      assert.deepStrictEqual(report.mapped, v4(publicIp, 49152))
      assert.deepStrictEqual(report.server, primary)
      assert.deepStrictEqual(report.otherAddress, v4(a2, 3479))
      assert.deepStrictEqual(report.responseOrigin, primary)
      assert.strictEqual(report.mapping, "endpoint-independent")
      assert.strictEqual(report.filtering, "endpoint-independent")
      assert.strictEqual(report.classicalName, "full-cone")
      assert.strictEqual(report.directPathLikely, true)
      assert.strictEqual(report.hairpinning, true)
      assert.strictEqual(report.lifetime, "untested")
      assert.strictEqual(report.algDetected, false)
      assert.deepStrictEqual(report.mappedAddresses, { testI: report.mapped, testII: undefined, testIII: undefined })
      assert.strictEqual(Duration.toMillis(report.roundTrip), 20)
      assert.strictEqual(
        NatDiscovery.format(report),
        "no NAT: EIM/EIF (full-cone), mapped 198.51.100.7:49152, hairpinning yes, lifetime untested, direct path likely"
      )
    }))

  it.scoped("the application's socket is used as it is (bound to a specific address and port)", () =>
    Effect.gen(function*() {
      const { stunHost, world: w } = yield* world
      yield* startServer(stunHost)
      const client = yield* w.addHost({ name: "public", addresses: [publicIp] })
      const socket = yield* client.network.bindUdp({ address: publicIp, port: 6000 })
      const fiber = yield* fork(client, { server: primary, socket, tests: { hairpinning: false } })
      const report = reportOf(yield* finish(fiber))
      assert.deepStrictEqual(report.local, v4(publicIp, 6000))
      assert.deepStrictEqual(report.mapped, v4(publicIp, 6000))
      assert.strictEqual(report.natPresent, false)
      assert.strictEqual(report.hairpinning, "untested")
    }))

  it.scoped("a server without an alternate address: NoOtherAddress, as soon as test I is answered (20 ms)", () =>
    Effect.gen(function*() {
      const { stunHost, world: w } = yield* world
      yield* startServer(stunHost, { address: a1, port: 3478 })
      const client = yield* w.addHost({ name: "public", addresses: [publicIp] })
      const fiber = yield* fork(client, { server: primary })
      yield* TestClock.adjust("19 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 millis")
      const error = errorOf(yield* Fiber.await(fiber))
      assert.strictEqual(error._tag, "NatDiscoveryError")
      assert.strictEqual(error.reason, "NoOtherAddress")
      assert.strictEqual(error.test, "connectivity")
      assert.strictEqual(error.server, "192.0.2.1:3478")
      assert.strictEqual(error.remote, "192.0.2.1:3478")
    }))

  it.scoped("an unreachable server: NoAnswer from test I at exactly 39.5 s (RFC 8489 §6.2.1: Rc = 7, Rm = 16)", () =>
    Effect.gen(function*() {
      const { world: w } = yield* world
      const client = yield* w.addHost({ name: "public", addresses: [publicIp] })
      const nowhere = v4("192.0.2.99", 3478)
      const fiber = yield* fork(client, { server: nowhere })
      yield* TestClock.adjust("39499 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 millis")
      const error = errorOf(yield* Fiber.await(fiber))
      assert.strictEqual(error.reason, "NoAnswer")
      assert.strictEqual(error.test, "connectivity")
      assert.strictEqual(error.server, "192.0.2.99:3478")
      assert.include(error.detail, "7 sends")
      assert.strictEqual(yield* Clock.currentTimeMillis, 39_500)
    }))

  it.scoped("a server that answers CHANGE-REQUEST from the wrong address: InconsistentAnswers, not a false EIF", () =>
    Effect.gen(function*() {
      // A "server" whose OTHER-ADDRESS points at a host that is not it: test I looks fine, but the answer to
      // "change IP and port" comes from A1:P1 (it ignores CHANGE-REQUEST), which must not read as EIF.
      const { stunHost, world: w } = yield* world
      const socket = yield* stunHost.network.bindUdp({ address: a1, port: 3478 })
      yield* StunTransaction.makeUdp(socket, {
        onRequest: (message, from) => {
          const reply = StunMessage.unsafeEncode(
            StunMessage.make(StunMessage.StunClass.SuccessResponse, message.method, message.transactionId, [
              StunAttribute.xorMappedAddress(from),
              StunAttribute.otherAddress(v4(a2, 3479))
            ]),
            { fingerprint: true }
          )
          socket.unsafeSend(reply, from)
        }
      })
      const client = yield* w.addHost({ name: "public", addresses: [publicIp] })
      const fiber = yield* fork(client, { server: primary })
      const error = errorOf(yield* finish(fiber))
      assert.strictEqual(error.reason, "InconsistentAnswers")
      assert.strictEqual(error.test, "filtering-II")
      assert.include(error.detail, "192.0.2.1:3478")
    }))
})

const privateIp = "10.0.0.2"
const externalIp = "203.0.113.1"

/** The server, and a private host in a site behind `nat`. */
const natWorld = (nat: NatBehavior.NatBehavior) =>
  Effect.gen(function*() {
    const { stunHost, world: w } = yield* world
    yield* startServer(stunHost)
    const site = yield* w.addSite({ name: "home", nat, externalAddresses: [externalIp] })
    const client = yield* w.addHost({ name: "client", addresses: [privateIp], site: "home" })
    return { world: w, site, client }
  })

const behaviours = NatBehavior.behaviours

/** Hairpinned packets are filtered like any inbound packet (RFC 4787 §6): see the module doc of `NatDiscovery`. */
const hairpinObservable = (mapping: NatBehavior.Mapping, filtering: NatBehavior.Filtering) =>
  mapping === "endpoint-independent" || filtering === "endpoint-independent"

/** The classical names, written out (RFC 3489 names; ARCHITECTURE.md). */
const classical: Record<string, NatBehavior.ClassicalName> = {
  "endpoint-independent/endpoint-independent": "full-cone",
  "endpoint-independent/address-dependent": "restricted-cone",
  "endpoint-independent/address-and-port-dependent": "port-restricted-cone",
  "address-and-port-dependent/address-and-port-dependent": "symmetric"
}

describe("NatDiscovery behind a simulated NAT", () => {
  for (const mapping of behaviours) {
    for (const filtering of behaviours) {
      const name = `${NatBehavior.abbreviation("mapping", mapping)}/${NatBehavior.abbreviation("filtering", filtering)}`
      const title = `${name}: reported as configured, with its classical name and the mapped addresses of tests I–III`
      it.scoped(title, () =>
        Effect.gen(function*() {
          const { client } = yield* natWorld(NatBehavior.make(mapping, filtering, { portAssignment: "sequential" }))
          const fiber = yield* fork(client, { server: primary })
          const report = reportOf(yield* finish(fiber))
          assert.strictEqual(report.natPresent, true)
          assert.strictEqual(report.mapping, mapping)
          assert.strictEqual(report.filtering, filtering)
          assert.strictEqual(report.classicalName, classical[`${mapping}/${filtering}`] ?? "other")
          assert.strictEqual(
            report.directPathLikely,
            NatBehavior.directPathLikely({ mapping, filtering }, {
              mapping,
              filtering
            })
          )
          assert.deepStrictEqual(report.local, v4("0.0.0.0", 49152))
          // Sequential ports from 49152: the first mapping is the test socket's toward A1.
          assert.deepStrictEqual(report.mapped, v4(externalIp, 49152))
          assert.strictEqual(Duration.toMillis(report.roundTrip), 20)
          const { testI, testII, testIII } = report.mappedAddresses
          assert.deepStrictEqual(testI, v4(externalIp, 49152))
          if (mapping === "endpoint-independent") {
            assert.deepStrictEqual(testII, testI)
            assert.isUndefined(testIII)
          } else {
            // A new mapping for A2 (the next sequential port); for A2:P2 the same one (ADM) or yet another (APDM).
            assert.deepStrictEqual(testII, v4(externalIp, 49153))
            assert.deepStrictEqual(testIII, mapping === "address-dependent" ? testII : v4(externalIp, 49154))
          }
          assert.strictEqual(report.hairpinning, hairpinObservable(mapping, filtering))
        }))
    }
  }

  it.scoped("the classical table: full cone, restricted cone, port-restricted cone, symmetric (random ports)", () =>
    Effect.gen(function*() {
      const cases = [
        [NatBehavior.fullCone, "full-cone", true],
        [NatBehavior.restrictedCone, "restricted-cone", true],
        [NatBehavior.portRestrictedCone, "port-restricted-cone", true],
        [NatBehavior.symmetric, "symmetric", false]
      ] as const
      for (const [nat, name, direct] of cases) {
        const report = yield* Effect.scoped(Effect.gen(function*() {
          const { client } = yield* natWorld(nat)
          const fiber = yield* fork(client, { server: primary, tests: { hairpinning: false } })
          return reportOf(yield* finish(fiber))
        }))
        assert.strictEqual(report.classicalName, name)
        assert.strictEqual(report.mapping, nat.mapping, name)
        assert.strictEqual(report.filtering, nat.filtering, name)
        // Against a peer behind the same kind of NAT: only symmetric × symmetric needs a relay.
        assert.strictEqual(report.directPathLikely, direct, name)
        assert.strictEqual(report.hairpinning, "untested")
      }
    }))

  it.scoped("hairpinning off: reported false, for every filtering behaviour of an EIM NAT", () =>
    Effect.gen(function*() {
      for (const filtering of behaviours) {
        const report = yield* Effect.scoped(Effect.gen(function*() {
          const { client } = yield* natWorld(
            NatBehavior.make("endpoint-independent", filtering, { hairpinning: false })
          )
          const fiber = yield* fork(client, { server: primary })
          return reportOf(yield* finish(fiber))
        }))
        assert.strictEqual(report.hairpinning, false, filtering)
        assert.strictEqual(report.filtering, filtering)
      }
    }))

  it.scoped("hairpinning on, port-restricted cone: the requests cross in the NAT and arrive (true)", () =>
    Effect.gen(function*() {
      const { client } = yield* natWorld(NatBehavior.portRestrictedCone)
      const fiber = yield* fork(client, { server: primary })
      const report = reportOf(yield* finish(fiber))
      assert.strictEqual(report.hairpinning, true)
      assert.strictEqual(
        NatDiscovery.format(report),
        "NAT: EIM/APDF (port-restricted-cone), mapped 203.0.113.1:49152, hairpinning yes, lifetime untested, " +
          "direct path likely"
      )
    }))

  for (const lifetimeMs of [30_000, 120_000]) {
    it.scoped(`binding lifetime ${lifetimeMs / 1000} s: found within the precision, in few probes`, () =>
      Effect.gen(function*() {
        const { client } = yield* natWorld(
          NatBehavior.make("endpoint-independent", "address-and-port-dependent", { mappingLifetimeMs: lifetimeMs })
        )
        const fiber = yield* fork(client, {
          server: primary,
          tests: { hairpinning: false, lifetime: { max: "5 minutes", precision: "1 second" } }
        })
        const report = reportOf(yield* finish(fiber))
        const lifetime = report.lifetime
        assert.notStrictEqual(lifetime, "untested")
        if (lifetime === "untested") return
        assert.isDefined(lifetime.upperBoundMs)
        const upper = lifetime.upperBoundMs!
        assert.isAtMost(lifetime.lowerBoundMs, lifetimeMs)
        assert.isAtLeast(upper, lifetimeMs)
        // The search stops at 1 s; the upper bound adds twice the 20 ms round trip.
        assert.isAtMost(upper - lifetime.lowerBoundMs, 1000 + 40)
        // 1 + ⌈log2(300 s / 1 s)⌉ = 10 probes at most.
        assert.isAtMost(lifetime.probes, 10)
        assert.isAtLeast(lifetime.probes, 2)
      }))
  }

  it.scoped("binding lifetime longer than max: at least max, after a single probe", () =>
    Effect.gen(function*() {
      const { client } = yield* natWorld(NatBehavior.fullCone)
      const fiber = yield* fork(client, {
        server: primary,
        tests: { hairpinning: false, lifetime: { max: "1 minute", precision: "1 second" } }
      })
      const report = reportOf(yield* finish(fiber))
      assert.deepStrictEqual(report.lifetime, { lowerBoundMs: 60_000, upperBoundMs: undefined, probes: 1 })
    }))
})
