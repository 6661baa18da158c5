/**
 * IceGatherer on the virtual network under TestClock.
 *
 * Topology: the internet's one-way latency is 10 ms; a STUN server on 192.0.2.1:3478 and a TURN server on
 * 198.51.100.9:3478 (UDP and TCP); site "home" behind a full-cone NAT (external 203.0.113.1, ports preserved) with
 * IPv6 (2001:db8:1::/64, EIF filtering); host "laptop" at 10.0.0.2 and 2001:db8:1::2. A Binding from the laptop is
 * answered 20 ms after it leaves; a TURN allocation is ready after two round trips (401, then success): 40 ms over
 * UDP, one more round trip for the TCP handshake over TCP.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Scope, Stream, SubscriptionRef, TestClock } from "effect"
import * as IceCandidate from "../src/IceCandidate.js"
import * as IceGatherer from "../src/IceGatherer.js"
import * as NatBehavior from "../src/NatBehavior.js"
import * as Network from "../src/Network.js"
import * as StunServer from "../src/StunServer.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TurnServer from "../src/TurnServer.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const stun = v4("192.0.2.1", 3478)
const turn = v4("198.51.100.9", 3478)
const auth = { mode: "static", username: "alice", password: "secret" } as const

const world = Effect.gen(function*() {
  const world = yield* VirtualNetwork.make({ seed: 7 })
  const stunHost = yield* world.addHost({ name: "stun", addresses: ["192.0.2.1"] })
  const turnHost = yield* world.addHost({ name: "turn", addresses: ["198.51.100.9"] })
  yield* StunServer.make({ address: "192.0.2.1", port: 3478, tcp: false }).pipe(
    Effect.provideService(Network.Network, stunHost.network)
  )
  const turnServer = yield* TurnServer.make({ addresses: ["198.51.100.9"], tcp: true, users: { alice: "secret" } })
    .pipe(Effect.provideService(Network.Network, turnHost.network))
  const home = yield* world.addSite({
    name: "home",
    nat: NatBehavior.fullCone,
    externalAddresses: ["203.0.113.1"],
    ipv6: { filtering: "endpoint-independent" }
  })
  const laptop = yield* world.addHost({ name: "laptop", addresses: ["10.0.0.2", "2001:db8:1::2"], site: "home" })
  return { world, home, laptop, turnServer }
})

/**
 * Runs a test body in a scope of its own, then closes it while moving the clock on (TURN allocations are released
 * with a Refresh that waits for its answer, and a TestClock does not move by itself).
 */
const scoped = <A, E>(body: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const exit = yield* Effect.exit(Scope.extend(body, scope))
    const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
    yield* TestClock.adjust("1 minute")
    yield* Fiber.join(closing)
    return yield* exit
  })

const describeGathered = (g: IceGatherer.Gathered) => {
  const c = g.local.candidate
  const related = c.relatedAddress === undefined ? "" : ` raddr ${c.relatedAddress}:${c.relatedPort}`
  return `${c.type} ${c.address}:${c.port}${related}`
}

describe("IceGatherer", () => {
  it.effect("host (IPv6 first, then IPv4), server-reflexive on the host socket, relayed; new → gathering → complete", () =>
    scoped(Effect.gen(function*() {
      const { home, laptop } = yield* world
      const gatherer = yield* IceGatherer.make({ stunServers: [stun], turnServers: [{ server: turn, auth }] }).pipe(
        Effect.provideService(Network.Network, laptop.network)
      )
      const initial = yield* SubscriptionRef.get(gatherer.state)
      const states = yield* Effect.fork(
        Stream.runCollect(Stream.takeUntil(gatherer.state.changes, (s) => s === "complete"))
      )
      const all = yield* Effect.fork(Stream.runCollect(gatherer.candidates))
      yield* TestClock.adjust("39 millis")
      assert.strictEqual(yield* SubscriptionRef.get(gatherer.state), "gathering")
      yield* TestClock.adjust("1 millis")
      const items = Chunk.toReadonlyArray(yield* Fiber.join(all))
      assert.deepStrictEqual(items.map(describeGathered), [
        "host 2001:db8:1::2:49152",
        // One port counter per simulated host, both families: the IPv4 socket is the second one.
        "host 10.0.0.2:49153",
        "srflx 203.0.113.1:49153 raddr 10.0.0.2:49153",
        // The TURN client's own socket (10.0.0.2:49154), as the server saw it through the NAT.
        "relay 198.51.100.9:49152 raddr 203.0.113.1:49154"
      ])
      assert.strictEqual(initial, "new")
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Fiber.join(states)), ["gathering", "complete"])
      // The server-reflexive candidate was learnt on the host candidate's own socket: its base is that socket and
      // the NAT holds one mapping for it (the one checks will use).
      const [v6, host, srflx, relay] = items
      assert.strictEqual(srflx!.base, host!.base)
      assert.strictEqual(srflx!.local.baseKey, "udp|10.0.0.2|49153")
      assert.deepStrictEqual(srflx!.local.base, host!.local.candidate)
      const mappings = yield* home.mappings
      assert.deepStrictEqual(
        mappings.filter((m) => m.protocol === "udp").map((m) => [m.internal.port, m.external.port]),
        [[49153, 49153], [49154, 49154]]
      )
      // Priorities (RFC 8445 §5.1.2): type preference first, then the local preference (IPv6 before IPv4).
      assert.strictEqual(v6!.local.candidate.priority, IceCandidate.priority({ type: "host", localPreference: 65535 }))
      assert.strictEqual(
        host!.local.candidate.priority,
        IceCandidate.priority({ type: "host", localPreference: 65279 })
      )
      assert.strictEqual(relay!.base.type, "relay")
      assert.strictEqual(relay!.local.baseKey, "relay|198.51.100.9|49152")
      assert.deepStrictEqual(yield* gatherer.failures, [])
    })))

  it.effect("a relayed base sends through the allocation after a ChannelBind, and receives what the peer sends", () =>
    scoped(Effect.gen(function*() {
      const { laptop, world: w } = yield* world
      const peerHost = yield* w.addHost({ name: "peer", addresses: ["192.0.2.77"] })
      const peer = yield* peerHost.network.bindUdp({ port: 4000 })
      const seen: Array<string> = []
      yield* peer.setHandler((data, from) => {
        seen.push(`${new TextDecoder().decode(data)} from ${from.ip}:${from.port}`)
        peer.unsafeSend(new TextEncoder().encode("pong"), from)
      })
      const gatherer = yield* IceGatherer.make({ turnServers: [{ server: turn, auth }], host: false }).pipe(
        Effect.provideService(Network.Network, laptop.network)
      )
      const fiber = yield* Effect.fork(Effect.zipRight(gatherer.complete, gatherer.gathered))
      yield* TestClock.adjust("40 millis")
      const [relay] = yield* Fiber.join(fiber)
      const got: Array<string> = []
      relay!.base.route({ onOther: (data, from) => void got.push(`${new TextDecoder().decode(data)} from ${from.ip}`) })
      const send = yield* Effect.fork(
        Effect.zipRight(
          relay!.base.prepare(v4("192.0.2.77", 4000)),
          relay!.base.send(new TextEncoder().encode("ping"), v4("192.0.2.77", 4000))
        )
      )
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(send)
      assert.strictEqual(relay!.base.allocation?.channelOf(v4("192.0.2.77", 4000)), 0x4000)
      assert.deepStrictEqual(seen, ["ping from 198.51.100.9:49152"])
      assert.deepStrictEqual(got, ["pong from 192.0.2.77"])
    })))

  it.effect("TURN over TCP gives a relayed candidate too; an unreachable STUN server is listed, gathering ends at 39.5 s", () =>
    scoped(Effect.gen(function*() {
      const { laptop } = yield* world
      const gatherer = yield* IceGatherer.make({
        families: ["IPv4"],
        stunServers: [v4("192.0.2.99", 3478)],
        turnServers: [{ server: turn, auth, transport: "tcp" }]
      }).pipe(Effect.provideService(Network.Network, laptop.network))
      yield* TestClock.adjust("39499 millis")
      assert.strictEqual(yield* SubscriptionRef.get(gatherer.state), "gathering")
      const types = (yield* gatherer.gathered).map((g) => g.local.candidate.type)
      assert.deepStrictEqual(types, ["host", "relay"])
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* SubscriptionRef.get(gatherer.state), "complete")
      const failures = yield* gatherer.failures
      assert.deepStrictEqual(failures.map((f) => [f.kind, f.server]), [["stun", "192.0.2.99:3478"]])
      assert.include(failures[0]!.reason, "no STUN response")
    })))

  it.effect("port range; loopback only when asked", () =>
    scoped(Effect.gen(function*() {
      const { laptop } = yield* world
      const withLoopback: Network.Service = {
        ...laptop.network,
        interfaces: Effect.map(laptop.network.interfaces, (list) => [
          { name: "lo", family: "IPv4" as const, address: "127.0.0.1", prefixLength: 8, internal: true },
          ...list
        ])
      }
      const run = (options: IceGatherer.Options) =>
        Effect.scoped(Effect.gen(function*() {
          const g = yield* IceGatherer.make(options)
          yield* g.complete
          return {
            candidates: (yield* g.gathered).map((c) => `${c.local.candidate.address}:${c.local.candidate.port}`),
            failures: (yield* g.failures).map((f) => `${f.kind} ${f.server}`)
          }
        })).pipe(Effect.provideService(Network.Network, withLoopback))
      const plain = yield* run({ portRange: [50000, 50009] })
      assert.strictEqual(plain.candidates.length, 2)
      for (const c of plain.candidates) {
        const port = Number(c.slice(c.lastIndexOf(":") + 1))
        assert.isTrue(port >= 50000 && port <= 50009, c)
      }
      assert.deepStrictEqual(plain.failures, [])
      // Asked for loopback, the gatherer tries it (the simulated host has no loopback address, so the bind fails
      // and is reported).
      const loopback = yield* run({ includeLoopback: true, families: ["IPv4"] })
      assert.deepStrictEqual(loopback.failures, ["host 127.0.0.1"])
      assert.deepStrictEqual(loopback.candidates, ["10.0.0.2:49152"])
    })))

  it.effect("fromIceServers: RTCIceServer entries (stun:, turn:?transport=tcp) and the relay policy", () =>
    scoped(Effect.gen(function*() {
      const { laptop } = yield* world
      const servers = [
        { urls: "stun:192.0.2.1" },
        { urls: ["turn:198.51.100.9?transport=tcp", "turns:198.51.100.9:443"], username: "alice", credential: "secret" }
      ]
      const all = yield* IceGatherer.fromIceServers(servers).pipe(
        Effect.provideService(Network.Network, laptop.network)
      )
      const auth = { mode: "static", username: "alice", password: "secret" } as const
      assert.deepStrictEqual(all, {
        stunServers: [stun],
        turnServers: [
          { server: turn, transport: "tcp", auth },
          { server: v4("198.51.100.9", 443), transport: "tls", auth }
        ],
        host: true
      })
      const relay = yield* IceGatherer.fromIceServers(servers, "relay").pipe(
        Effect.provideService(Network.Network, laptop.network)
      )
      assert.deepStrictEqual(relay.stunServers, [])
      assert.strictEqual(relay.host, false)
      const bad = yield* Effect.flip(
        IceGatherer.fromIceServers([{ urls: "turn:198.51.100.9" }]).pipe(
          Effect.provideService(Network.Network, laptop.network)
        )
      )
      assert.strictEqual(bad._tag, "IceServerError")
    })))
})

describe("IceGatherer ICE-TCP host candidates (RFC 6544)", () => {
  it.effect("transports [udp, tcp]: per address a UDP host, a passive TCP (listening) and an active TCP (port 9)", () =>
    scoped(Effect.gen(function*() {
      const { laptop } = yield* world
      const gathered = yield* IceGatherer.gatherAll({ families: ["IPv4"], transports: ["udp", "tcp"] }).pipe(
        Effect.provideService(Network.Network, laptop.network)
      )
      const lines = gathered.map((g) => IceCandidate.toSdp(g.local.candidate).replace(/^candidate:\d+ /, ""))
      // §4.2: local preference 2^13 × direction-pref (active 6, passive 4) + other-pref (8191 for the first
      // address); type preference 90, below every UDP type but relayed.
      const passive = IceCandidate.priority({ type: "host", typePreference: 90, localPreference: 4 * 8192 + 8191 })
      const active = IceCandidate.priority({ type: "host", typePreference: 90, localPreference: 6 * 8192 + 8191 })
      assert.deepStrictEqual(lines, [
        "1 udp 2130706431 10.0.0.2 49152 typ host",
        `1 tcp ${passive} 10.0.0.2 49152 typ host tcptype passive`,
        `1 tcp ${active} 10.0.0.2 9 typ host tcptype active`
      ])
      // 90 × 2^24 + (4 × 8192 + 8191) × 2^8 + (256 − 1)
      assert.strictEqual(passive, 1520435199)
      assert.isBelow(active, IceCandidate.priority({ type: "srflx", localPreference: 0 }))
      assert.deepStrictEqual(gathered.map((g) => g.base.key), [
        "udp|10.0.0.2|49152",
        "tcp|10.0.0.2|49152|passive",
        "tcp|10.0.0.2|9|active"
      ])
      // The passive base is a listener: a peer connects and its RFC 4571-framed packets reach the base's reader.
      const got: Array<string> = []
      gathered[1]!.base.route({
        onOther: (data, from) => void got.push(`${new TextDecoder().decode(data)} ${from.ip}`)
      })
      const connection = yield* laptop.network.connectTcp(v4("10.0.0.2", 49152))
      yield* connection.write(new Uint8Array([0, 2, 0x80, 0x81]))
      yield* TestClock.adjust("10 millis")
      assert.strictEqual(got.length, 1)
      assert.match(got[0]!, / 10\.0\.0\.2$/)
    })))
})
