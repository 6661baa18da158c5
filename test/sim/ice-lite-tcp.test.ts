/**
 * ICE-lite (RFC 8445 §2.5), the UDP mux and ICE-TCP (RFC 6544) on the simulated internet (VirtualNetwork, virtual
 * time, fixed seeds).
 *
 * Topology: the internet's one-way latency is 10 ms; a STUN server at 192.0.2.1:3478; site "a" (external
 * 203.0.113.1, a port-restricted cone NAT unless a test says otherwise) holds host "alice" 10.0.1.2; the public host
 * "server" 192.0.2.50 runs the lite agent(s). Signalling is instant (`IceAgent.pipeSignalling`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Random, Stream } from "effect"
import * as IceAgent from "../../src/IceAgent.js"
import * as IceUdpMux from "../../src/IceUdpMux.js"
import * as NatBehavior from "../../src/NatBehavior.js"
import * as Network from "../../src/Network.js"
import * as StunServer from "../../src/StunServer.js"
import * as StunTransaction from "../../src/StunTransaction.js"
import type { SocketAddress } from "../../src/TransportAddress.js"
import * as VirtualNetwork from "../../src/VirtualNetwork.js"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const stunAddress = v4("192.0.2.1", 3478)
const text = (s: string) => new TextEncoder().encode(s)
const decode = (b: Uint8Array) => new TextDecoder().decode(b)

const seeded = <A, E, R>(effect: Effect.Effect<A, E, R>, seed = "lite") =>
  effect.pipe(
    Effect.provideService(StunTransaction.TransactionIdSource, StunTransaction.transactionIdsFromRandom),
    Effect.withRandom(Random.make(seed))
  )

const world = (options: { readonly sites?: number; readonly nat?: NatBehavior.NatBehavior } = {}) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make({ seed: "lite" })
    const stunHost = yield* world.addHost({ name: "stun", addresses: ["192.0.2.1"] })
    yield* StunServer.make({ address: "192.0.2.1", port: 3478, tcp: false }).pipe(
      Effect.provideService(Network.Network, stunHost.network)
    )
    const server = yield* world.addHost({ name: "server", addresses: ["192.0.2.50"] })
    const clients: Array<VirtualNetwork.Host> = []
    for (let i = 0; i < (options.sites ?? 1); i++) {
      yield* world.addSite({
        name: `site${i}`,
        nat: options.nat ?? NatBehavior.portRestrictedCone,
        externalAddresses: [`203.0.113.${i + 1}`]
      })
      clients.push(yield* world.addHost({ name: `client${i}`, addresses: [`10.0.${i + 1}.2`], site: `site${i}` }))
    }
    return { world, server, clients }
  })

/** Connects a full client to a server agent, sends one message each way; the virtual instants of selection. */
const exchange = (client: IceAgent.IceAgent, server: IceAgent.IceAgent, label: string) =>
  Effect.gen(function*() {
    const [pc, ps] = yield* Effect.all([client.connected, server.connected], { concurrency: 2 })
    const toServer = yield* Effect.fork(Stream.runCollect(Stream.take(server.data, 1)))
    const toClient = yield* Effect.fork(Stream.runCollect(Stream.take(client.data, 1)))
    yield* client.send(text(`hello ${label}`))
    const got = decode(Chunk.unsafeGet(yield* Fiber.join(toServer), 0))
    yield* server.send(text(got.toUpperCase()))
    const echoed = decode(Chunk.unsafeGet(yield* Fiber.join(toClient), 0))
    return {
      client: pc,
      server: ps,
      clientMs: (yield* client.stats).connectedAfterMs!,
      serverMs: (yield* server.stats).connectedAfterMs!,
      echoed
    }
  })

describe("ICE-lite on the simulated internet", () => {
  it.effect("a full agent behind a port-restricted NAT connects to a lite agent on a public host", () =>
    VirtualNetwork.runInVirtualTime(
      seeded(Effect.gen(function*() {
        const { clients, server } = yield* world()
        // The full agent starts controlled: told its peer is lite, it must take the controlling role.
        const alice = yield* IceAgent.make({ stunServers: [stunAddress], controlling: false }).pipe(
          Effect.provideService(Network.Network, clients[0]!.network)
        )
        const lite = yield* IceAgent.make({ lite: true, stunServers: [stunAddress] }).pipe(
          Effect.provideService(Network.Network, server.network)
        )
        yield* IceAgent.pipeSignalling(alice, lite)
        const out = yield* exchange(alice, lite, "lite")
        assert.strictEqual(out.client.local.type, "srflx")
        assert.strictEqual(yield* alice.role, "controlling")
        assert.strictEqual(yield* lite.role, "controlled")
        assert.strictEqual(out.echoed, "HELLO LITE")
        // The lite agent gathered its host candidate only (no server-reflexive one, though given a STUN server).
        const liteStats = yield* lite.stats
        assert.strictEqual(liteStats.checksSent, 0)
        assert.strictEqual(liteStats.consentChecks, 0)
        assert.strictEqual(out.client.remote.type, "host")
        assert.strictEqual(out.client.remote.address, "192.0.2.50")
        assert.strictEqual(out.server.local.address, "192.0.2.50")
        assert.strictEqual(out.server.remote.address, "203.0.113.1")
        // Alice's first check leaves at 50 ms (the pacing loop's idle slot was at 0), its answer is back at 70; the
        // pair is the best there is, so it is nominated in the next slot (100 ms): the lite agent selects it when the
        // USE-CANDIDATE check arrives (110 ms), Alice when its answer is back (120 ms).
        assert.deepStrictEqual([out.clientMs, out.serverMs], [120, 110])
      })),
      { step: "10 millis", limit: "1 minute" }
    ))
})

describe("IceUdpMux on the simulated internet", () => {
  for (const lite of [true, false]) {
    it.effect(`10 full agents behind NATs connect to 10 ${lite ? "lite" : "full"} agents sharing 192.0.2.50:3478`, () =>
      VirtualNetwork.runInVirtualTime(
        seeded(Effect.gen(function*() {
          const { clients, server } = yield* world({ sites: 10 })
          const mux = yield* IceUdpMux.make({ address: "192.0.2.50", port: 3478 }).pipe(
            Effect.provideService(Network.Network, server.network)
          )
          const pairs = yield* Effect.forEach(clients, (host) =>
            Effect.gen(function*() {
              const client = yield* IceAgent.make({ stunServers: [stunAddress], controlling: true }).pipe(
                Effect.provideService(Network.Network, host.network)
              )
              const agent = yield* IceAgent.make({ mux, lite, controlling: false }).pipe(
                Effect.provideService(Network.Network, server.network)
              )
              yield* IceAgent.pipeSignalling(client, agent)
              return [client, agent] as const
            }))
          const outs = yield* Effect.forEach(
            pairs,
            ([client, agent], i) => exchange(client, agent, `agent ${i}`),
            { concurrency: "unbounded" }
          )
          for (let i = 0; i < outs.length; i++) {
            const out = outs[i]!
            assert.strictEqual(out.echoed, `HELLO AGENT ${i}`)
            assert.strictEqual(out.server.local.address, "192.0.2.50")
            assert.strictEqual(out.server.local.port, 3478)
            assert.strictEqual(out.server.remote.address, `203.0.113.${i + 1}`)
          }
          // As with one pair: each client nominates at 100 ms. A lite server selects when the USE-CANDIDATE check
          // arrives (110 ms); a full controlled server sent its own triggered check in its 100 ms slot (the client's
          // first check arrived at 60 ms) and selects when that check's answer is back (120 ms), the nomination
          // having arrived at 110 ms for a pair still in progress (§7.3.1.5).
          const times = outs.map((o) => [o.clientMs, o.serverMs])
          assert.deepStrictEqual(times, Array.from({ length: 10 }, () => [120, lite ? 110 : 120]))
          const stats = yield* mux.stats
          assert.strictEqual(stats.agents, 10)
          assert.strictEqual(stats.droppedUnknownUfrag, 0)
          assert.strictEqual(stats.droppedUnknownAddress, 0)
          return { times, stats }
        })),
        { step: "10 millis", limit: "1 minute" }
      ))
  }
})

describe("ICE-TCP (RFC 6544) on the simulated internet", () => {
  it.effect("a site that blocks UDP reaches a public peer's passive TCP candidate, with no TURN server", () =>
    VirtualNetwork.runInVirtualTime(
      seeded(Effect.gen(function*() {
        const world = yield* VirtualNetwork.make({ seed: "tcp" })
        const stunHost = yield* world.addHost({ name: "stun", addresses: ["192.0.2.1"] })
        yield* StunServer.make({ address: "192.0.2.1", port: 3478, tcp: false }).pipe(
          Effect.provideService(Network.Network, stunHost.network)
        )
        yield* world.addSite({
          name: "a",
          nat: NatBehavior.portRestrictedCone,
          externalAddresses: ["203.0.113.1"],
          firewall: { blockUdp: true }
        })
        const aliceHost = yield* world.addHost({ name: "alice", addresses: ["10.0.1.2"], site: "a" })
        const bobHost = yield* world.addHost({ name: "bob", addresses: ["192.0.2.50"] })
        const options: IceAgent.Options = { stunServers: [stunAddress], transports: ["udp", "tcp"] }
        const alice = yield* IceAgent.make({ ...options, controlling: true }).pipe(
          Effect.provideService(Network.Network, aliceHost.network)
        )
        const bob = yield* IceAgent.make({ ...options, controlling: false }).pipe(
          Effect.provideService(Network.Network, bobHost.network)
        )
        yield* IceAgent.pipeSignalling(alice, bob)
        const out = yield* exchange(alice, bob, "tcp")
        // Alice's active candidate connected to Bob's passive one through her NAT: she sees the NAT's mapping of her
        // connection as a peer-reflexive local candidate, Bob sees it as a peer-reflexive active remote.
        assert.strictEqual(out.client.id, "tcp|203.0.113.1|49153|active->tcp|192.0.2.50|49152|passive")
        assert.deepStrictEqual(
          [out.client.local.type, out.client.local.transport, out.client.local.tcpType, out.client.local.address],
          ["prflx", "tcp", "active", "203.0.113.1"]
        )
        assert.deepStrictEqual(
          [out.client.remote.type, out.client.remote.tcpType, out.client.remote.address],
          ["host", "passive", "192.0.2.50"]
        )
        assert.strictEqual(out.server.id, "tcp|192.0.2.50|49152|passive->tcp|203.0.113.1|49153|active")
        assert.deepStrictEqual([out.server.remote.type, out.server.remote.tcpType], ["prflx", "active"])
        const pairs = yield* alice.pairs
        const summary = pairs.map((p) => `${p.id} ${p.state}${p.failure === undefined ? "" : ` (${p.failure})`}`)
        // The UDP pair ranks first (RFC 6544 §4.2: TCP below UDP) but its check is blocked at Alice's site and still
        // retransmitting; her passive candidate cannot check Bob's active one (port 9): only Bob could connect.
        assert.deepStrictEqual(summary, [
          "udp|10.0.1.2|49152->udp|192.0.2.50|49152 in-progress",
          "tcp|203.0.113.1|49153|active->tcp|192.0.2.50|49152|passive succeeded",
          "tcp|10.0.1.2|9|active->tcp|192.0.2.50|49152|passive succeeded",
          "tcp|10.0.1.2|49152|passive->tcp|192.0.2.50|9|active failed (passive: the peer has not connected, RFC 6544 §6.2)"
        ])
        // The UDP check takes the 50 ms slot; the first TCP check's slot is at 100 ms: one round trip to connect
        // (SYN-ACK back at 120 ms), one for the check (answer at 140 ms). A better (UDP) pair is still in progress, so
        // Alice nominates in the first slot after the nomination delay (1 s from 140 ms): at 1150 ms, the
        // USE-CANDIDATE check reaches Bob at 1160 ms and its answer Alice at 1170 ms.
        assert.deepStrictEqual([out.clientMs, out.serverMs], [1170, 1160])
        assert.strictEqual(out.echoed, "HELLO TCP")
      })),
      { step: "10 millis", limit: "1 minute" }
    ))
})
