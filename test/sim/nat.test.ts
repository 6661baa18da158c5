/**
 * The simulated internet's NAT routers (RFC 4787 mapping, filtering, lifetime, hairpinning, port assignment),
 * nested NAT, IPv6 sites, firewalls, links (latency, jitter, loss, MTU) and TCP through NAT, in virtual time.
 *
 * The usual topology: a site "home" behind a NAT with external address 203.0.113.1, a private host "client" at
 * 10.0.0.2 (socket 10.0.0.2:5000), and a public host "server" with two IPs, 192.0.2.1 (A1) and 192.0.2.2 (A2),
 * on ports 3478 (P1) and 3479 (P2). Links have no latency of their own unless a test says so, and the internet's
 * one-way latency is 10 ms: a packet from the client reaches the server 10 ms after it is sent, an answer is back
 * 20 ms after the request left.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Option, TestClock } from "effect"
import * as NatBehavior from "../../src/NatBehavior.js"
import * as Network from "../../src/Network.js"
import * as StunMessage from "../../src/StunMessage.js"
import * as StunServer from "../../src/StunServer.js"
import * as StunTransaction from "../../src/StunTransaction.js"
import type { SocketAddress } from "../../src/TransportAddress.js"
import * as VirtualNetwork from "../../src/VirtualNetwork.js"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const v6 = (ip: string, port: number): SocketAddress => ({ family: "IPv6", ip, port })
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (data: Uint8Array): string => new TextDecoder().decode(data)

const a1 = "192.0.2.1"
const a2 = "192.0.2.2"
const external = "203.0.113.1"

/** Moves the clock to `ms` (absolute virtual time). */
const advanceTo = (ms: number) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => TestClock.adjust(Duration.millis(ms - now)))

interface Received {
  readonly at: number
  readonly text: string
  readonly from: SocketAddress
}

/** A UDP socket that records what arrives, with the virtual time of arrival. */
const recorder = (host: VirtualNetwork.Host, options?: Network.BindOptions) =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const socket = yield* host.network.bindUdp(options)
    const received: Array<Received> = []
    yield* socket.setHandler((data, from) => {
      received.push({ at: clock.unsafeCurrentTimeMillis(), text: text(data), from })
    })
    return { socket, received, send: (message: string, to: SocketAddress) => socket.unsafeSend(bytes(message), to) }
  })

/** One site behind `nat`, a client in it, and the two-IP public server. */
const homeWorld = (
  nat: NatBehavior.NatBehavior,
  options: VirtualNetwork.Options = {},
  site: Partial<VirtualNetwork.SiteOptions> = {}
) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make(options)
    const home = yield* world.addSite({ name: "home", nat, externalAddresses: [external], ...site })
    const client = yield* world.addHost({ name: "client", addresses: ["10.0.0.2"], site: "home" })
    const server = yield* world.addHost({ name: "server", addresses: [a1, a2] })
    return { world, home, client, server }
  })

/** The RFC 5780 STUN server on the public host: (A1,P1) (A1,P2) (A2,P1) (A2,P2). */
const stunServer = (host: VirtualNetwork.Host) =>
  StunServer.make({ address: a1, alternateAddress: a2, port: 3478, alternatePort: 3479, tcp: false }).pipe(
    Effect.provideService(Network.Network, host.network)
  )

/** A plain (non-RFC 5780) STUN server on the host's first address, port 3478. */
const plainStunServer = (host: VirtualNetwork.Host) =>
  StunServer.make({ address: host.addresses[0]!, port: 3478, tcp: false }).pipe(
    Effect.provideService(Network.Network, host.network)
  )

/** Runs a fiber for `duration` of virtual time and returns its result; fails the test if it has not finished. */
const within = <A, E, R>(duration: Duration.DurationInput, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust(duration)
    const exit = yield* Fiber.poll(fiber)
    if (Option.isNone(exit)) return assert.fail(`not finished after ${Duration.format(duration)}`)
    return yield* exit.value
  })

/** The XOR-MAPPED-ADDRESS a Binding request to `to` is answered with, `rtt` after it is sent. */
const mappedAddress = (
  client: StunTransaction.StunClient,
  to: SocketAddress,
  rtt: Duration.DurationInput = "20 millis"
) =>
  Effect.map(
    within(rtt, client.request(to, { method: StunMessage.StunMethod.Binding })),
    (response) => StunMessage.find(response.message, "XorMappedAddress")?.address
  )

const dropsOf = (world: VirtualNetwork.World) =>
  Effect.map(world.stats, (stats) => stats.drops.map((d) => [d.at, d.where, d.reason, d.detail]))

describe("NAT mapping (RFC 4787 §4.1): what a STUN server sees from 10.0.0.2:5000", () => {
  const destinations = [v4(a1, 3478), v4(a1, 3479), v4(a2, 3478)]
  const cases: ReadonlyArray<readonly [NatBehavior.Mapping, ReadonlyArray<SocketAddress>]> = [
    // One mapping for the socket, whatever the destination.
    ["endpoint-independent", [v4(external, 5000), v4(external, 5000), v4(external, 5000)]],
    // Same IP, other port: the same mapping; another IP: a new one (port 5000 is taken, so 5001).
    ["address-dependent", [v4(external, 5000), v4(external, 5000), v4(external, 5001)]],
    // Every destination endpoint gets its own mapping.
    ["address-and-port-dependent", [v4(external, 5000), v4(external, 5001), v4(external, 5002)]]
  ]
  for (const [mapping, expected] of cases) {
    it.scoped(`${NatBehavior.abbreviation("mapping", mapping)}: toward A1:P1, A1:P2 (same IP, other port), A2:P1`, () =>
      Effect.gen(function*() {
        const { client, home, server } = yield* homeWorld(NatBehavior.make(mapping, "endpoint-independent"))
        yield* stunServer(server)
        const stun = yield* StunTransaction.makeUdp(yield* client.network.bindUdp({ port: 5000 }))
        const seen: Array<SocketAddress | undefined> = []
        for (const to of destinations) seen.push(yield* mappedAddress(stun, to))
        assert.deepStrictEqual(seen, [...expected])
        const mappings = yield* home.mappings
        assert.deepStrictEqual(
          mappings.map((m) => [m.protocol, m.internal, m.external]),
          [...new Set(expected.map((e) => e.port))].map((port) => ["udp", v4("10.0.0.2", 5000), v4(external, port)])
        )
      }))
  }
})

describe("NAT filtering (RFC 4787 §5): which of four senders reach 10.0.0.2:5000 after it sent to A1:P1", () => {
  const cases: ReadonlyArray<readonly [NatBehavior.Filtering, ReadonlyArray<string>]> = [
    ["endpoint-independent", ["A1:P1", "A1:P2", "A2:P1", "A2:P2"]],
    ["address-dependent", ["A1:P1", "A1:P2"]],
    ["address-and-port-dependent", ["A1:P1"]]
  ]
  for (const [filtering, expected] of cases) {
    const abbreviation = NatBehavior.abbreviation("filtering", filtering)
    it.scoped(`${abbreviation}: ${expected.join(", ")} get through`, () =>
      Effect.gen(function*() {
        const { client, server, world } = yield* homeWorld(NatBehavior.make("endpoint-independent", filtering))
        const inside = yield* recorder(client, { port: 5000 })
        const senders = [
          { name: "A1:P1", socket: yield* recorder(server, { address: a1, port: 3478 }) },
          { name: "A1:P2", socket: yield* recorder(server, { address: a1, port: 3479 }) },
          { name: "A2:P1", socket: yield* recorder(server, { address: a2, port: 3478 }) },
          { name: "A2:P2", socket: yield* recorder(server, { address: a2, port: 3479 }) }
        ]
        inside.send("open", v4(a1, 3478))
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(senders[0]!.socket.received, [{ at: 10, text: "open", from: v4(external, 5000) }])
        for (const sender of senders) sender.socket.send(sender.name, v4(external, 5000))
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(inside.received.map((r) => [r.at, r.text]), expected.map((name) => [20, name]))
        const dropped = senders.filter((s) => !expected.includes(s.name))
        assert.deepStrictEqual(
          yield* dropsOf(world),
          dropped.map(() => [20, "home", "Filtered", `filtered by ${abbreviation} at NAT home`])
        )
        assert.strictEqual((yield* world.stats).dropped.Filtered, dropped.length)
      }))
  }
})

describe("NAT mapping lifetime (RFC 4787 REQ-5, REQ-6)", () => {
  it.scoped("a mapping expires exactly 300 s after its last outbound packet", () =>
    Effect.gen(function*() {
      const { client, home, server, world } = yield* homeWorld(NatBehavior.portRestrictedCone)
      const inside = yield* recorder(client, { port: 5000 })
      const outside = yield* recorder(server, { address: a1, port: 3478 })
      inside.send("open", v4(a1, 3478))
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* home.mappings, [
        { protocol: "udp", internal: v4("10.0.0.2", 5000), external: v4(external, 5000), expiresAt: 300_000 }
      ])
      // The server's packets reach the NAT 10 ms after they are sent.
      yield* advanceTo(299_989)
      outside.send("reaches the NAT at 299999", v4(external, 5000))
      yield* advanceTo(299_990)
      outside.send("reaches the NAT at 300000", v4(external, 5000))
      yield* advanceTo(300_000)
      assert.deepStrictEqual(inside.received.map((r) => [r.at, r.text]), [[299_999, "reaches the NAT at 299999"]])
      assert.deepStrictEqual(yield* dropsOf(world), [
        [
          300_000,
          "home",
          "MappingExpired",
          "mapping 10.0.0.2:5000 -> 203.0.113.1:5000 expired at 300000 ms at NAT home"
        ]
      ])
      assert.deepStrictEqual(yield* home.mappings, [])
    }))

  it.scoped("a keepalive at lifetime - 1 s keeps it another 300 s", () =>
    Effect.gen(function*() {
      const { client, home, server, world } = yield* homeWorld(NatBehavior.portRestrictedCone)
      const inside = yield* recorder(client, { port: 5000 })
      const outside = yield* recorder(server, { address: a1, port: 3478 })
      inside.send("open", v4(a1, 3478))
      yield* advanceTo(299_000)
      inside.send("keepalive", v4(a1, 3478))
      yield* advanceTo(299_990)
      assert.deepStrictEqual((yield* home.mappings).map((m) => m.expiresAt), [599_000])
      outside.send("at 300000", v4(external, 5000))
      yield* advanceTo(598_989)
      outside.send("at 598999", v4(external, 5000))
      yield* advanceTo(598_990)
      outside.send("at 599000", v4(external, 5000))
      yield* advanceTo(599_000)
      assert.deepStrictEqual(inside.received.map((r) => [r.at, r.text]), [
        [300_000, "at 300000"],
        [598_999, "at 598999"]
      ])
      assert.deepStrictEqual((yield* dropsOf(world)).map((d) => [d[0], d[2]]), [[599_000, "MappingExpired"]])
    }))

  it.scoped("inbound traffic alone does not refresh a mapping (unless inboundRefresh)", () =>
    Effect.gen(function*() {
      for (const inboundRefresh of [false, true]) {
        const { client, server } = yield* homeWorld(
          NatBehavior.make("endpoint-independent", "address-and-port-dependent", { inboundRefresh })
        )
        const start = yield* Clock.currentTimeMillis
        const inside = yield* recorder(client, { port: 5000 })
        const outside = yield* recorder(server, { address: a1, port: 3478 })
        inside.send("open", v4(a1, 3478))
        // Every 100 s the server sends; its packets reach the NAT at 100, 200, 300 s.
        for (const at of [99_990, 199_990, 299_990]) {
          yield* advanceTo(start + at)
          outside.send(`${at + 10}`, v4(external, 5000))
        }
        yield* advanceTo(start + 300_000)
        assert.deepStrictEqual(
          inside.received.map((r) => r.text),
          inboundRefresh ? ["100000", "200000", "300000"] : ["100000", "200000"]
        )
      }
    }))

  it.scoped("a custom lifetime, and an expired mapping is made afresh by the next outbound packet", () =>
    Effect.gen(function*() {
      const { client, home } = yield* homeWorld(
        NatBehavior.make("endpoint-independent", "endpoint-independent", {
          mappingLifetimeMs: 30_000,
          portAssignment: "sequential"
        })
      )
      const inside = yield* recorder(client, { port: 5000 })
      inside.send("one", v4(a1, 3478))
      yield* TestClock.adjust("0 millis")
      assert.deepStrictEqual((yield* home.mappings).map((m) => [m.external.port, m.expiresAt]), [[49152, 30_000]])
      yield* advanceTo(30_000)
      assert.deepStrictEqual(yield* home.mappings, [])
      inside.send("two", v4(a1, 3478))
      yield* TestClock.adjust("0 millis")
      assert.deepStrictEqual((yield* home.mappings).map((m) => [m.external.port, m.expiresAt]), [[49153, 60_000]])
    }))
})

describe("hairpinning (RFC 4787 §6)", () => {
  const hairpin = (hairpinning: boolean, filtering: NatBehavior.Filtering = "endpoint-independent") =>
    Effect.gen(function*() {
      const { home, server, world } = yield* homeWorld(
        NatBehavior.make("endpoint-independent", filtering, { hairpinning })
      )
      const alice = yield* world.addHost({ name: "alice", addresses: ["10.0.0.3"], site: "home", latency: "1 millis" })
      const bob = yield* world.addHost({ name: "bob", addresses: ["10.0.0.4"], site: "home", latency: "1 millis" })
      yield* recorder(server, { address: a1, port: 3478 })
      const atBob = yield* recorder(bob, { port: 6000 })
      const atAlice = yield* recorder(alice, { port: 5000 })
      // Bob's mapping: 10.0.0.4:6000 -> 203.0.113.1:6000.
      atBob.send("to the server", v4(a1, 3478))
      yield* TestClock.adjust("20 millis")
      // Alice sends to Bob's public address: 1 ms to the NAT, turned around, 1 ms to Bob.
      atAlice.send("hairpin", v4(external, 6000))
      yield* TestClock.adjust("2 millis")
      return { world, home, received: atBob.received }
    })

  it.scoped("on: a packet to the NAT's own address comes back in, from the sender's mapping", () =>
    Effect.gen(function*() {
      const { home, received } = yield* hairpin(true)
      assert.deepStrictEqual(received, [{ at: 22, text: "hairpin", from: v4(external, 5000) }])
      assert.deepStrictEqual((yield* home.mappings).map((m) => [m.internal, m.external]), [
        [v4("10.0.0.4", 6000), v4(external, 6000)],
        [v4("10.0.0.3", 5000), v4(external, 5000)]
      ])
    }))

  it.scoped("off: dropped as NoHairpin", () =>
    Effect.gen(function*() {
      const { received, world } = yield* hairpin(false)
      assert.deepStrictEqual(received, [])
      assert.deepStrictEqual(yield* dropsOf(world), [[21, "home", "NoHairpin", "hairpinning is off at NAT home"]])
    }))

  it.scoped("a hairpinned packet never leaves the site: a firewall that blocks UDP does not stop it", () =>
    Effect.gen(function*() {
      const { world } = yield* homeWorld(NatBehavior.fullCone, {}, { firewall: { blockUdp: true } })
      const alice = yield* world.addHost({ name: "alice", addresses: ["10.0.0.3"], site: "home" })
      const bob = yield* world.addHost({ name: "bob", addresses: ["10.0.0.4"], site: "home" })
      const atAlice = yield* recorder(alice, { port: 5000 })
      const atBob = yield* recorder(bob, { port: 6000 })
      // Bob gets a mapping by hairpinning to a port nobody holds yet; then Alice reaches him through it.
      atBob.send("knock", v4(external, 5000))
      yield* TestClock.adjust("0 millis")
      atAlice.send("hairpin", v4(external, 6000))
      yield* TestClock.adjust("0 millis")
      assert.deepStrictEqual(atBob.received, [{ at: 0, text: "hairpin", from: v4(external, 5000) }])
      assert.deepStrictEqual(yield* dropsOf(world), [
        [0, "home", "NoMapping", "no mapping for 203.0.113.1:5000/udp at NAT home"]
      ])
    }))

  it.scoped("a hairpinned packet is filtered like any inbound one", () =>
    Effect.gen(function*() {
      const { received, world } = yield* hairpin(true, "address-and-port-dependent")
      assert.deepStrictEqual(received, [])
      assert.deepStrictEqual(yield* dropsOf(world), [[21, "home", "Filtered", "filtered by APDF at NAT home"]])
    }))
})

describe("port assignment (RFC 4787 §4.2)", () => {
  /** Two hosts both send from port 5000; the external ports the NAT gives them. */
  const ports = (portAssignment: NatBehavior.PortAssignment, seed?: number) =>
    Effect.gen(function*() {
      const { home, world } = yield* homeWorld(
        NatBehavior.make("endpoint-independent", "endpoint-independent", { portAssignment }),
        seed === undefined ? {} : { seed }
      )
      for (const [name, ip] of [["h1", "10.0.0.11"], ["h2", "10.0.0.12"], ["h3", "10.0.0.13"]]) {
        const host = yield* world.addHost({ name: name!, addresses: [ip!], site: "home" })
        const socket = yield* recorder(host, { port: 5000 })
        socket.send("x", v4(a1, 3478))
      }
      yield* TestClock.adjust("0 millis")
      return (yield* home.mappings).map((m) => m.external.port)
    })

  it.scoped("preserving: the internal port when free, else the next free one", () =>
    Effect.map(ports("preserving"), (got) => assert.deepStrictEqual(got, [5000, 5001, 5002])))

  it.scoped("sequential: counting up from 49152", () =>
    Effect.map(ports("sequential"), (got) => assert.deepStrictEqual(got, [49152, 49153, 49154])))

  it.scoped("random: distinct ports from the world's seeded generator, the same every run", () =>
    Effect.gen(function*() {
      const first = yield* ports("random", 7)
      assert.deepStrictEqual(first, yield* ports("random", 7))
      assert.strictEqual(new Set(first).size, 3)
      assert.isTrue(first.every((p) => p >= 1024 && p <= 65535))
      assert.deepStrictEqual(first, [63994, 16116, 25265])
      assert.notDeepEqual(yield* ports("random", 8), first)
    }))

  it.scoped("paired pooling: each internal IP keeps one of several external addresses", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      const home = yield* world.addSite({
        name: "home",
        nat: NatBehavior.symmetric,
        externalAddresses: ["203.0.113.1", "203.0.113.2"]
      })
      yield* world.addHost({ name: "server", addresses: [a1, a2] })
      for (const [name, ip] of [["h1", "10.0.0.11"], ["h2", "10.0.0.12"]]) {
        const host = yield* world.addHost({ name: name!, addresses: [ip!], site: "home" })
        const socket = yield* recorder(host, { port: 5000 })
        socket.send("x", v4(a1, 3478))
        socket.send("y", v4(a2, 3479))
      }
      yield* TestClock.adjust("0 millis")
      assert.deepStrictEqual((yield* home.mappings).map((m) => [m.internal.ip, m.external.ip]), [
        ["10.0.0.11", "203.0.113.1"],
        ["10.0.0.11", "203.0.113.1"],
        ["10.0.0.12", "203.0.113.2"],
        ["10.0.0.12", "203.0.113.2"]
      ])
    }))
})

describe("firewalls", () => {
  it.scoped("a site with UDP blocked drops all UDP, out and in", () =>
    Effect.gen(function*() {
      const { client, server, world } = yield* homeWorld(NatBehavior.fullCone, {}, { firewall: { blockUdp: true } })
      const inside = yield* recorder(client, { port: 5000 })
      const outside = yield* recorder(server, { address: a1, port: 3478 })
      inside.send("out", v4(a1, 3478))
      outside.send("in", v4(external, 5000))
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual([inside.received, outside.received], [[], []])
      assert.deepStrictEqual(yield* dropsOf(world), [
        [0, "home", "Blocked", "UDP blocked at home"],
        [10, "home", "Blocked", "UDP blocked at home"]
      ])
      assert.strictEqual((yield* world.stats).dropped.Blocked, 2)
    }))

  it.scoped("a corporate firewall allowing only TCP to port 443: 443 connects, 80 times out, UDP is dropped", () =>
    Effect.gen(function*() {
      const { client, home, server, world } = yield* homeWorld(
        NatBehavior.portRestrictedCone,
        { connectTimeout: "5 seconds" },
        { firewall: { blockUdp: true, allowTcpPorts: [443] } }
      )
      const remotes: Array<SocketAddress> = []
      for (const port of [80, 443]) {
        yield* server.network.listenTcp({ port }, (socket) =>
          Effect.sync(() => {
            remotes.push({ family: socket.remote.family, ip: socket.remote.ip, port: socket.remote.port })
          }))
      }
      const https = yield* within("20 millis", client.network.connectTcp(v4(a1, 443)))
      assert.deepStrictEqual(https.local, { family: "IPv4", ip: "10.0.0.2", port: 49152, transport: "tcp" })
      assert.deepStrictEqual(remotes, [v4(external, 49152)])
      const http = yield* within("5 seconds", Effect.flip(client.network.connectTcp(v4(a1, 80))))
      assert.strictEqual(http.reason, "ConnectFailed")
      const udp = yield* recorder(client)
      udp.send("dns?", v4(a1, 53))
      yield* TestClock.adjust("0 millis")
      assert.deepStrictEqual((yield* dropsOf(world)).map((d) => [d[2], d[3]]), [
        ["Blocked", "TCP to port 80 blocked at home"],
        ["Blocked", "UDP blocked at home"]
      ])
      assert.deepStrictEqual((yield* home.mappings).map((m) => [m.protocol, m.internal, m.external]), [
        ["tcp", v4("10.0.0.2", 49152), v4(external, 49152)]
      ])
    }))
})

describe("links: latency, loss, MTU, jitter", () => {
  it.scoped("latency adds up along the path: host 1 + site 4 + internet 10 + server 2 = 17 ms each way", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      yield* world.addSite({
        name: "home",
        nat: NatBehavior.fullCone,
        externalAddresses: [external],
        latency: "4 millis"
      })
      const client = yield* world.addHost({
        name: "client",
        addresses: ["10.0.0.2"],
        site: "home",
        latency: "1 millis"
      })
      const server = yield* world.addHost({ name: "server", addresses: [a1], latency: "2 millis" })
      yield* plainStunServer(server)
      const stun = yield* StunTransaction.makeUdp(yield* client.network.bindUdp({ port: 5000 }))
      const fiber = yield* Effect.fork(stun.request(v4(a1, 3478), { method: StunMessage.StunMethod.Binding }))
      yield* TestClock.adjust("33 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 millis")
      const response = yield* Fiber.join(fiber)
      assert.deepStrictEqual(StunMessage.find(response.message, "XorMappedAddress")?.address, v4(external, 5000))
      assert.deepStrictEqual(response.elapsed, Duration.millis(34))
    }))

  it.scoped("loss with a fixed seed drops the same datagrams every run", () =>
    Effect.gen(function*() {
      const run = (seed: number) =>
        Effect.gen(function*() {
          const { client, server, world } = yield* homeWorld(NatBehavior.fullCone, { seed }, { loss: 0.25 })
          const inside = yield* recorder(client, { port: 5000 })
          const outside = yield* recorder(server, { address: a1, port: 3478 })
          for (let i = 0; i < 20; i++) inside.send(String(i), v4(a1, 3478))
          yield* TestClock.adjust("10 millis")
          const stats = yield* world.stats
          assert.strictEqual(stats.dropped.Loss, 20 - outside.received.length)
          assert.isTrue(
            stats.drops.every((d) => d.reason === "Loss" && d.where === "home" && d.detail === "lost on home")
          )
          return outside.received.map((r) => Number(r.text))
        })
      const first = yield* run(42)
      assert.deepStrictEqual(first, yield* run(42))
      // Datagrams 7 and 15 are lost, every run.
      assert.deepStrictEqual(first, [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19])
      assert.notDeepEqual(yield* run(43), first)
    }))

  it.scoped("a datagram larger than a link's MTU is dropped: 1372 bytes + 28 = 1400 passes, 1373 does not", () =>
    Effect.gen(function*() {
      const { client, server, world } = yield* homeWorld(NatBehavior.fullCone, {}, { mtu: 1400 })
      const inside = yield* client.network.bindUdp({ port: 5000 })
      const outside = yield* recorder(server, { address: a1, port: 3478 })
      inside.unsafeSend(new Uint8Array(1372), v4(a1, 3478))
      inside.unsafeSend(new Uint8Array(1373), v4(a1, 3478))
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(outside.received.map((r) => r.text.length), [1372])
      assert.deepStrictEqual(yield* dropsOf(world), [[0, "home", "Mtu", "1401 bytes > MTU 1400 on home"]])
    }))

  it.scoped("jitter: each datagram takes 10 to 15 ms (UDP may reorder); a TCP connection never reorders", () =>
    Effect.gen(function*() {
      const { client, server } = yield* homeWorld(NatBehavior.fullCone, { seed: 1 }, { jitter: "5 millis" })
      const inside = yield* recorder(client, { port: 5000 })
      const outside = yield* recorder(server, { address: a1, port: 3478 })
      for (let i = 0; i < 30; i++) inside.send(String(i), v4(a1, 3478))
      yield* TestClock.adjust("15 millis")
      const times = outside.received.map((r) => r.at)
      assert.strictEqual(times.length, 30)
      assert.isTrue(times.every((t) => t >= 10 && t <= 15))
      assert.isTrue(new Set(times).size > 1)
      const order = outside.received.map((r) => Number(r.text))
      assert.notDeepEqual(order, [...order].sort((x, y) => x - y))

      const chunks: Array<string> = []
      yield* server.network.listenTcp({ port: 443 }, (socket) =>
        Effect.zipRight(
          socket.setHandler((chunk) => {
            chunks.push(text(chunk))
          }),
          Effect.orDie(socket.closed)
        ))
      const connection = yield* within("30 millis", client.network.connectTcp(v4(a1, 443)))
      const words = Array.from({ length: 30 }, (_, i) => String(i))
      for (const word of words) yield* connection.write(bytes(word))
      yield* TestClock.adjust("15 millis")
      assert.deepStrictEqual(chunks, words)
    }))
})

describe("nested NAT (carrier-grade NAT)", () => {
  const carrier = Effect.gen(function*() {
    const world = yield* VirtualNetwork.make()
    const cgn = yield* world.addSite({
      name: "cgn",
      nat: NatBehavior.make("endpoint-independent", "endpoint-independent", { portAssignment: "sequential" }),
      externalAddresses: ["203.0.113.100"],
      latency: "5 millis"
    })
    const homes: Array<VirtualNetwork.Site> = []
    const clients: Array<VirtualNetwork.Host> = []
    for (const n of [1, 2]) {
      homes.push(
        yield* world.addSite({
          name: `home${n}`,
          parent: "cgn",
          nat: NatBehavior.fullCone,
          externalAddresses: [`100.64.0.${n + 1}`],
          latency: "2 millis"
        })
      )
      // Both homes use the same private address.
      clients.push(yield* world.addHost({ name: `client${n}`, addresses: ["192.168.1.2"], site: `home${n}` }))
    }
    const server = yield* world.addHost({ name: "server", addresses: [a1, a2] })
    yield* stunServer(server)
    return { world, cgn, homes, clients }
  })

  it.scoped("the STUN server sees the outer NAT's address; each NAT maps once; 2 + 5 + 10 ms each way", () =>
    Effect.gen(function*() {
      const { cgn, clients, homes } = yield* carrier
      const seen: Array<SocketAddress | undefined> = []
      for (const client of clients) {
        const stun = yield* StunTransaction.makeUdp(yield* client.network.bindUdp({ port: 5000 }))
        seen.push(yield* mappedAddress(stun, v4(a1, 3478), "34 millis"))
      }
      assert.deepStrictEqual(seen, [v4("203.0.113.100", 49152), v4("203.0.113.100", 49153)])
      assert.deepStrictEqual((yield* homes[0]!.mappings).map((m) => [m.internal, m.external]), [
        [v4("192.168.1.2", 5000), v4("100.64.0.2", 5000)]
      ])
      assert.deepStrictEqual((yield* cgn.mappings).map((m) => [m.internal, m.external]), [
        [v4("100.64.0.2", 5000), v4("203.0.113.100", 49152)],
        [v4("100.64.0.3", 5000), v4("203.0.113.100", 49153)]
      ])
    }))

  it.scoped("two homes of one carrier reach each other by hairpinning at the carrier's NAT", () =>
    Effect.gen(function*() {
      const { clients } = yield* carrier
      const one = yield* recorder(clients[0]!, { port: 5000 })
      const two = yield* recorder(clients[1]!, { port: 5000 })
      one.send("out", v4(a1, 3478))
      two.send("out", v4(a1, 3478))
      yield* TestClock.adjust("20 millis")
      // Client 1 -> home1 (2 ms) -> cgn, hairpinned -> home2 (2 ms) -> client 2.
      one.send("hello neighbour", v4("203.0.113.100", 49153))
      yield* TestClock.adjust("4 millis")
      assert.deepStrictEqual(two.received, [{ at: 24, text: "hello neighbour", from: v4("203.0.113.100", 49152) }])
    }))
})

describe("IPv6 sites: no translation, filtering still applies", () => {
  it.scoped("the server sees the host's own address; APDF admits only the contacted endpoint; no pinhole, no entry", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      const home = yield* world.addSite({
        name: "home",
        nat: NatBehavior.fullCone,
        externalAddresses: [external],
        ipv6: { filtering: "address-and-port-dependent" }
      })
      const client = yield* world.addHost({ name: "client", addresses: ["10.0.0.2", "2001:db8:1::2"], site: "home" })
      const server = yield* world.addHost({ name: "server", addresses: ["2001:db8::7"] })
      const inside = yield* recorder(client, { family: "IPv6", port: 5000 })
      yield* recorder(client, { family: "IPv6", port: 5001 })
      const p1 = yield* recorder(server, { family: "IPv6", port: 3478 })
      const p2 = yield* recorder(server, { family: "IPv6", port: 3479 })
      inside.send("hello", v6("2001:db8::7", 3478))
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(p1.received, [{ at: 10, text: "hello", from: v6("2001:db8:1::2", 5000) }])
      assert.deepStrictEqual(yield* home.pinholes, [
        { protocol: "udp", internal: v6("2001:db8:1::2", 5000), expiresAt: 300_000 }
      ])
      assert.deepStrictEqual(yield* home.mappings, [])
      p1.send("answer", v6("2001:db8:1::2", 5000))
      p2.send("other port", v6("2001:db8:1::2", 5000))
      p1.send("unsolicited", v6("2001:db8:1::2", 5001))
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(inside.received.map((r) => [r.at, r.text, r.from]), [
        [20, "answer", v6("2001:db8::7", 3478)]
      ])
      assert.deepStrictEqual(yield* dropsOf(world), [
        [20, "home", "Filtered", "filtered by APDF at IPv6 router home"],
        [20, "home", "NoMapping", "no pinhole for [2001:db8:1::2]:5001/udp at IPv6 router home"]
      ])
    }))

  it.scoped("an IPv6-only site forwards no IPv4; a site without IPv6 forwards no IPv6", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      yield* world.addSite({ name: "v6only", ipv6: { filtering: "endpoint-independent" } })
      yield* world.addSite({ name: "v4only", nat: NatBehavior.fullCone, externalAddresses: [external] })
      yield* world.addHost({ name: "server", addresses: [a1, "2001:db8::7"] })
      const six = yield* world.addHost({ name: "six", addresses: ["10.0.0.2", "2001:db8:1::2"], site: "v6only" })
      const four = yield* world.addHost({ name: "four", addresses: ["10.0.0.2", "2001:db8:2::2"], site: "v4only" })
      ;(yield* recorder(six)).send("v4", v4(a1, 3478))
      ;(yield* recorder(four, { family: "IPv6" })).send("v6", v6("2001:db8::7", 3478))
      yield* TestClock.adjust("0 millis")
      assert.deepStrictEqual(yield* dropsOf(world), [
        [0, "v6only", "NoHost", "no IPv4 beyond v6only"],
        [0, "v4only", "NoHost", "no IPv6 beyond v4only"]
      ])
    }))
})

describe("TCP through NAT (RFC 5382)", () => {
  it.scoped("an outbound connect gets a mapping and carries data both ways", () =>
    Effect.gen(function*() {
      const { client, home, server } = yield* homeWorld(NatBehavior.symmetric, { seed: 3 })
      const seen: Array<string> = []
      yield* server.network.listenTcp({ port: 443 }, (socket) =>
        Effect.gen(function*() {
          seen.push(`${socket.remote.ip}:${socket.remote.port}`)
          yield* socket.setHandler((chunk) => socket.unsafeWrite(bytes(text(chunk).toUpperCase())))
          yield* Effect.orDie(socket.closed)
        }))
      const connection = yield* within("20 millis", client.network.connectTcp(v4(a1, 443)))
      const mappings = yield* home.mappings
      assert.strictEqual(mappings.length, 1)
      const mapping = mappings[0]!
      assert.deepStrictEqual([mapping.protocol, mapping.internal, mapping.external.ip, mapping.expiresAt], [
        "tcp",
        v4("10.0.0.2", 49152),
        external,
        // The SYN-ACK reached the NAT at 20 ms and refreshed it (TCP mappings are refreshed both ways): 2 h 4 min later.
        20 + 7_440_000
      ])
      assert.deepStrictEqual(seen, [`${external}:${mapping.external.port}`])
      const echoed: Array<string> = []
      yield* connection.setHandler((chunk) => {
        echoed.push(text(chunk))
      })
      yield* connection.write(bytes("hello"))
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual(echoed, ["HELLO"])
    }))

  it.scoped("an inbound connect to the NAT finds no mapping: dropped without answer, ConnectFailed", () =>
    Effect.gen(function*() {
      const { client, server, world } = yield* homeWorld(NatBehavior.fullCone, { connectTimeout: "5 seconds" })
      yield* client.network.listenTcp({ port: 8080 }, () => Effect.void)
      const error = yield* within("5 seconds", Effect.flip(server.network.connectTcp(v4(external, 8080))))
      assert.strictEqual(error.reason, "ConnectFailed")
      assert.deepStrictEqual(yield* dropsOf(world), [
        [10, "home", "NoMapping", "no mapping for 203.0.113.1:8080/tcp at NAT home"]
      ])
    }))

  it.scoped("an inbound SYN to a mapped port is filtered like UDP (APDF: only the contacted endpoint)", () =>
    Effect.gen(function*() {
      const { client, server, world } = yield* homeWorld(NatBehavior.portRestrictedCone, {
        connectTimeout: "5 seconds"
      })
      yield* server.network.listenTcp({ address: a1, port: 443 }, (socket) => Effect.orDie(socket.closed))
      yield* within("20 millis", client.network.connectTcp(v4(a1, 443), { localPort: 7000 }))
      const error = yield* within(
        "5 seconds",
        Effect.flip(server.network.connectTcp(v4(external, 7000), { localAddress: a2 }))
      )
      assert.strictEqual(error.reason, "ConnectFailed")
      assert.deepStrictEqual((yield* dropsOf(world)).map((d) => [d[2], d[3]]), [
        ["Filtered", "filtered by APDF at NAT home"]
      ])
    }))
})

describe("TCP on lossy links: delayed by retransmissions, never reordered", () => {
  it.scoped("a lost segment arrives one RTO (1 s, then 2 s, ...) later; later segments wait for it", () =>
    Effect.gen(function*() {
      const { client, server } = yield* homeWorld(NatBehavior.fullCone, { seed: 5 }, { loss: 0.5 })
      const clock = yield* Effect.clock
      const chunks: Array<readonly [number, string]> = []
      yield* server.network.listenTcp({ port: 443 }, (socket) =>
        Effect.zipRight(
          socket.setHandler((chunk) => {
            chunks.push([clock.unsafeCurrentTimeMillis(), text(chunk)])
          }),
          Effect.orDie(socket.closed)
        ))
      const connectedAt = yield* Effect.fork(Effect.gen(function*() {
        const connection = yield* client.network.connectTcp(v4(a1, 443))
        for (const word of ["a", "b", "c", "d", "e", "f"]) yield* connection.write(bytes(word))
        return clock.unsafeCurrentTimeMillis()
      }))
      yield* TestClock.adjust("90 seconds")
      // The SYN was lost twice on the site's link: 1 s + 2 s + 10 ms there, 10 ms back.
      assert.strictEqual(yield* Fiber.join(connectedAt), 3020)
      assert.deepStrictEqual(chunks.map(([, word]) => word), ["a", "b", "c", "d", "e", "f"])
      // "a" was lost twice (arrives at 3020 + 3000 + 10); the others, sent at the same instant, wait for it.
      assert.deepStrictEqual(chunks.map(([at]) => at), [6030, 6030, 6030, 6030, 6030, 6030])
    }))

  it.scoped("the seventh loss in a row drops the segment", () =>
    Effect.gen(function*() {
      const { client, server, world } = yield* homeWorld(NatBehavior.fullCone, {}, { loss: 1 })
      yield* server.network.listenTcp({ port: 443 }, () => Effect.void)
      const error = yield* within("30 seconds", Effect.flip(client.network.connectTcp(v4(a1, 443))))
      assert.strictEqual(error.reason, "ConnectFailed")
      assert.deepStrictEqual(yield* dropsOf(world), [[0, "home", "Loss", "lost 7 times on home"]])
    }))
})

describe("topology", () => {
  it.scoped("hosts of one site talk directly: no NAT, host latencies only", () =>
    Effect.gen(function*() {
      const { home, world } = yield* homeWorld(NatBehavior.symmetric)
      const alice = yield* world.addHost({ name: "alice", addresses: ["10.0.0.3"], site: "home", latency: "1 millis" })
      const bob = yield* world.addHost({ name: "bob", addresses: ["10.0.0.4"], site: "home", latency: "2 millis" })
      const atAlice = yield* recorder(alice, { port: 5000 })
      const atBob = yield* recorder(bob, { port: 6000 })
      atAlice.send("hi bob", v4("10.0.0.4", 6000))
      yield* TestClock.adjust("3 millis")
      assert.deepStrictEqual(atBob.received, [{ at: 3, text: "hi bob", from: v4("10.0.0.3", 5000) }])
      assert.deepStrictEqual(yield* home.mappings, [])
    }))

  it.scoped("two sites may use the same private addresses", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      const server = yield* world.addHost({ name: "server", addresses: [a1] })
      const outside = yield* recorder(server, { port: 3478 })
      for (const n of [1, 2]) {
        yield* world.addSite({ name: `home${n}`, nat: NatBehavior.fullCone, externalAddresses: [`203.0.113.${n}`] })
        const host = yield* world.addHost({ name: `h${n}`, addresses: ["192.168.1.2"], site: `home${n}` })
        ;(yield* recorder(host, { port: 5000 })).send(`from ${n}`, v4(a1, 3478))
      }
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(outside.received.map((r) => [r.text, r.from]), [
        ["from 1", v4("203.0.113.1", 5000)],
        ["from 2", v4("203.0.113.2", 5000)]
      ])
    }))

  it.scoped("refuses bad topologies", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      yield* world.addSite({ name: "home", nat: NatBehavior.fullCone, externalAddresses: [external] })
      yield* world.addHost({ name: "a", addresses: ["10.0.0.2"], site: "home" })
      const attempts: ReadonlyArray<Effect.Effect<unknown, VirtualNetwork.TopologyError>> = [
        world.addSite({ name: "home", nat: NatBehavior.fullCone, externalAddresses: ["203.0.113.9"] }),
        world.addSite({ name: "a", nat: NatBehavior.fullCone, externalAddresses: ["203.0.113.9"] }),
        world.addSite({ name: "x", parent: "nowhere" }),
        world.addSite({ name: "x", nat: NatBehavior.fullCone }),
        world.addSite({ name: "x", externalAddresses: ["203.0.113.9"] }),
        world.addSite({ name: "x", nat: NatBehavior.fullCone, externalAddresses: ["2001:db8::1"] }),
        world.addSite({ name: "x", nat: NatBehavior.fullCone, externalAddresses: [external] }),
        world.addSite({ name: "x", loss: 1.5 }),
        world.addSite({ name: "x", mtu: 20 }),
        world.addSite({ name: "x", latency: Duration.infinity }),
        world.addSite({ name: "x", firewall: { allowTcpPorts: [0] } }),
        world.addHost({ name: "b", addresses: ["10.0.0.2"], site: "home" }),
        world.addHost({ name: "b", addresses: ["10.0.0.3"], site: "nowhere" })
      ]
      const reasons: Array<string> = []
      for (const attempt of attempts) reasons.push((yield* Effect.flip(attempt)).reason)
      assert.deepStrictEqual(reasons, [
        "DuplicateName",
        "DuplicateName",
        "UnknownSite",
        "InvalidOption",
        "InvalidOption",
        "InvalidAddress",
        "DuplicateAddress",
        "InvalidOption",
        "InvalidOption",
        "InvalidLatency",
        "InvalidOption",
        "DuplicateAddress",
        "UnknownSite"
      ])
      // A public address may not be reused inside a site (it would hide the public host).
      yield* world.addHost({ name: "pub", addresses: ["198.51.100.1"] })
      const hidden = yield* Effect.flip(world.addHost({ name: "c", addresses: ["198.51.100.1"], site: "home" }))
      assert.strictEqual(hidden.reason, "DuplicateAddress")
      assert.deepStrictEqual(Option.map(world.site("home"), (s) => s.externalAddresses), Option.some([external]))
      assert.deepStrictEqual(Option.map(world.host("a"), (h) => h.site), Option.some("home"))
    }))
})

describe("the packet trace", () => {
  it.scoped("shows each hop's rewrite", () =>
    Effect.gen(function*() {
      const { client, server, world } = yield* homeWorld(NatBehavior.portRestrictedCone, { trace: true })
      const inside = yield* recorder(client, { port: 5000 })
      const outside = yield* recorder(server, { address: a1, port: 3478 })
      inside.send("ping", v4(a1, 3478))
      yield* TestClock.adjust("10 millis")
      outside.send("pong", v4(external, 5000))
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual((yield* world.trace).map(VirtualNetwork.formatTraceEvent), [
        "0 ms sent by client: udp datagram 10.0.0.2:5000 -> 192.0.2.1:3478 (4 bytes)",
        "0 ms forwarded by home: udp datagram 10.0.0.2:5000 -> 192.0.2.1:3478 became 203.0.113.1:5000 -> " +
        "192.0.2.1:3478 (4 bytes; new mapping 10.0.0.2:5000 -> 203.0.113.1:5000)",
        "10 ms delivered to server: udp datagram 203.0.113.1:5000 -> 192.0.2.1:3478 (4 bytes)",
        "10 ms sent by server: udp datagram 192.0.2.1:3478 -> 203.0.113.1:5000 (4 bytes)",
        "20 ms forwarded by home: udp datagram 192.0.2.1:3478 -> 203.0.113.1:5000 became 192.0.2.1:3478 -> " +
        "10.0.0.2:5000 (4 bytes)",
        "20 ms delivered to client: udp datagram 192.0.2.1:3478 -> 10.0.0.2:5000 (4 bytes)"
      ])
    }))
})
