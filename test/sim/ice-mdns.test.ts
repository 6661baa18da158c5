/**
 * ICE agents with mDNS host candidates (draft-ietf-mmusic-mdns-ice-candidates), on the simulated internet (virtual
 * time, fixed seeds) and on loopback with real sockets and real multicast.
 *
 * Topology (VirtualNetwork): the internet's one-way latency is 10 ms, a STUN server is at 192.0.2.1:3478; site "a"
 * (external 203.0.113.1, full cone) holds "alice" 10.0.1.2 (2 ms access link) and "bob" 10.0.1.3 (3 ms), one link,
 * so one multicast domain (5 ms one way between them); site "b" (external 203.0.113.2, full cone) holds "carol"
 * 10.0.2.2 (2 ms), where alice's names never reach.
 * Every agent has its own `Mdns` engine on its own host; signalling is instant (`IceAgent.pipeSignalling`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Effect, Fiber, Option, Random, Stream } from "effect"
import * as IceAgent from "../../src/IceAgent.js"
import * as IceCandidate from "../../src/IceCandidate.js"
import * as Mdns from "../../src/Mdns.js"
import * as NatBehavior from "../../src/NatBehavior.js"
import * as Network from "../../src/Network.js"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as StunServer from "../../src/StunServer.js"
import * as StunTransaction from "../../src/StunTransaction.js"
import type { SocketAddress } from "../../src/TransportAddress.js"
import * as VirtualNetwork from "../../src/VirtualNetwork.js"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const stunAddress = v4("192.0.2.1", 3478)
const uuidV4Local = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.local$/
const text = (s: string) => new TextEncoder().encode(s)

const world = Effect.gen(function*() {
  const world = yield* VirtualNetwork.make({ seed: "ice-mdns" })
  const stunHost = yield* world.addHost({ name: "stun", addresses: ["192.0.2.1"] })
  yield* StunServer.make({ address: "192.0.2.1", port: 3478, tcp: false }).pipe(
    Effect.provideService(Network.Network, stunHost.network)
  )
  yield* world.addSite({ name: "a", nat: NatBehavior.fullCone, externalAddresses: ["203.0.113.1"] })
  yield* world.addSite({ name: "b", nat: NatBehavior.fullCone, externalAddresses: ["203.0.113.2"] })
  const alice = yield* world.addHost({ name: "alice", addresses: ["10.0.1.2"], site: "a", latency: "2 millis" })
  const bob = yield* world.addHost({ name: "bob", addresses: ["10.0.1.3"], site: "a", latency: "3 millis" })
  const carol = yield* world.addHost({ name: "carol", addresses: ["10.0.2.2"], site: "b", latency: "2 millis" })
  return { alice, bob, carol }
})

/** An agent on a host with its own mDNS engine there. */
const agentOn = (host: VirtualNetwork.Host, options: IceAgent.Options, publish: boolean) =>
  Effect.gen(function*() {
    const service = yield* Mdns.make({ announce: false })
    return yield* IceAgent.make({ ...options, mdns: { service, publish } })
  }).pipe(Effect.provideService(Network.Network, host.network))

const seeded = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provideService(StunTransaction.TransactionIdSource, StunTransaction.transactionIdsFromRandom),
    Effect.withRandom(Random.make("mdns-agents"))
  )

const signalledCandidates = (agent: IceAgent.IceAgent) =>
  agent.localCandidates.pipe(
    Stream.takeWhile((e) => e._tag !== "EndOfCandidates"),
    Stream.filterMap((e) => e._tag === "Candidate" ? Option.some(e.candidate) : Option.none()),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray)
  )

describe("ICE agents with mDNS names on the simulated internet", () => {
  it.effect("same LAN, both publishing: host/host via resolved names", () =>
    VirtualNetwork.runInVirtualTime(
      seeded(Effect.gen(function*() {
        const { alice: aliceHost, bob: bobHost } = yield* world
        const alice = yield* agentOn(aliceHost, { controlling: true }, true)
        const bob = yield* agentOn(bobHost, { controlling: false }, true)
        yield* IceAgent.pipeSignalling(alice, bob)
        const [pa, pb] = yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 })
        const aliceSignalled = yield* signalledCandidates(alice)
        const bobSignalled = yield* signalledCandidates(bob)
        assert.strictEqual(aliceSignalled.length, 1)
        assert.strictEqual(bobSignalled.length, 1)
        assert.match(aliceSignalled[0]!.address, uuidV4Local)
        assert.match(bobSignalled[0]!.address, uuidV4Local)
        assert.notStrictEqual(aliceSignalled[0]!.address, bobSignalled[0]!.address)
        assert.strictEqual(`${pa.local.type}/${pa.remote.type}`, "host/host")
        assert.strictEqual(pa.local.address, "10.0.1.2")
        assert.strictEqual(pa.remote.address, "10.0.1.3")
        assert.strictEqual(pb.remote.address, "10.0.1.2")
        // Priority, foundation and type are the signalled ones; only the address is the resolved IP.
        assert.deepStrictEqual(pa.remote, { ...bobSignalled[0]!, address: "10.0.1.3" })
        const inbox = yield* Effect.fork(Stream.runCollect(Stream.take(bob.data, 1)))
        yield* alice.send(text("hello bob"))
        assert.strictEqual(new TextDecoder().decode(Chunk.unsafeGet(yield* Fiber.join(inbox), 0)), "hello bob")
        const [sa, sb] = [yield* alice.stats, yield* bob.stats]
        // The mDNS query and its answer take one LAN round trip (10 ms) before bob's first check; alice selects when the
        // answer to her nominating check is back, 5 ms after bob selected on it.
        assert.deepStrictEqual([sa.connectedAfterMs, sb.connectedAfterMs], [110, 105])
        assert.deepStrictEqual(yield* alice.droppedCandidates, [])
      })),
      { step: "10 millis", limit: "1 minute" }
    ))

  it.effect("another site: alice's name does not resolve (Timeout at 3 s, dropped); srflx/srflx connects", () =>
    VirtualNetwork.runInVirtualTime(
      seeded(Effect.gen(function*() {
        const { alice: aliceHost, carol: carolHost } = yield* world
        const options = { stunServers: [stunAddress] }
        const alice = yield* agentOn(aliceHost, { ...options, controlling: true }, true)
        const carol = yield* agentOn(carolHost, { ...options, controlling: false }, false)
        yield* IceAgent.pipeSignalling(alice, carol)
        const [pa, pc] = yield* Effect.all([alice.connected, carol.connected], { concurrency: 2 })
        const signalled = yield* signalledCandidates(alice)
        assert.deepStrictEqual(signalled.map((c) => c.type), ["host", "srflx"])
        assert.match(signalled[0]!.address, uuidV4Local)
        assert.deepInclude(signalled[1]!, { address: "203.0.113.1", relatedAddress: "0.0.0.0", relatedPort: 0 })
        assert.strictEqual(`${pa.local.type}/${pa.remote.type}`, "srflx/srflx")
        assert.strictEqual(`${pc.local.type}/${pc.remote.type}`, "srflx/srflx")
        assert.deepStrictEqual(yield* carol.droppedCandidates, [])
        yield* Effect.sleep("3 seconds")
        const dropped = yield* carol.droppedCandidates
        assert.deepStrictEqual(dropped.map((d) => [d.reason, d.name]), [["Timeout", signalled[0]!.address]])
        assert.deepStrictEqual(
          [(yield* alice.stats).connectedAfterMs, (yield* carol.stats).connectedAfterMs],
          [1178, 1164]
        )
      })),
      { step: "10 millis", limit: "1 minute" }
    ))

  it.effect("another site, host only: carol does not fail before the resolution times out, then fails loudly", () =>
    VirtualNetwork.runInVirtualTime(
      seeded(Effect.gen(function*() {
        const { alice: aliceHost, carol: carolHost } = yield* world
        const alice = yield* agentOn(aliceHost, { controlling: true }, true)
        const carol = yield* agentOn(carolHost, { controlling: false }, false)
        yield* IceAgent.pipeSignalling(alice, carol)
        const error = yield* Effect.flip(carol.connected)
        // Carol's only remote candidate is a name that cannot resolve: she has end-of-candidates at 0 ms but waits for
        // the resolution, which fails at exactly 3 s (queries at 0 s and 1 s), and only then fails, with no pair.
        assert.strictEqual(yield* Clock.currentTimeMillis, 3000)
        assert.strictEqual(error._tag, "IceFailed")
        assert.deepInclude(error, { reason: "AllPairsFailed", pairs: [] })
        const dropped = yield* carol.droppedCandidates
        assert.deepStrictEqual(dropped.map((d) => d.reason), ["Timeout"])
        assert.match(dropped[0]!.message, /^mDNS candidate host .*\.local:\d+.* dropped \(Timeout\)$/)
        // Alice's one pair (to carol's private address in another site) fails when its check times out (RFC 8489
        // schedule, 39.5 s), listed in the error.
        const aliceError = yield* Effect.flip(alice.connected)
        assert.strictEqual(yield* Clock.currentTimeMillis, 39550)
        assert.strictEqual(
          aliceError.message,
          "ICE failed (AllPairsFailed): host 10.0.1.2:49152 -> host 10.0.2.2:49152: timeout"
        )
      })),
      { step: "100 millis", limit: "2 minutes" }
    ))
})

describe("ICE agents with mDNS names on loopback (NodeNetwork, real multicast)", () => {
  it.scopedLive("two agents publishing names connect host/host over 127.0.0.1 and exchange data", () =>
    Effect.gen(function*() {
      const options: IceAgent.Options = {
        includeLoopback: true,
        families: ["IPv4"],
        interfaceFilter: (i) => i.address === "127.0.0.1"
      }
      const mdnsA = yield* Mdns.make({ interfaceAddress: "127.0.0.1" })
      const mdnsB = yield* Mdns.make({ interfaceAddress: "127.0.0.1" })
      const alice = yield* IceAgent.make({ ...options, controlling: true, mdns: { service: mdnsA, publish: true } })
      const bob = yield* IceAgent.make({ ...options, controlling: false, mdns: { service: mdnsB, publish: true } })
      yield* IceAgent.pipeSignalling(alice, bob)
      const [pa, pb] = yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 }).pipe(
        Effect.timeout("5 seconds")
      )
      const signalled = yield* signalledCandidates(alice)
      assert.isTrue(signalled.every((c) => c.type === "host" && IceCandidate.isMdns(c)))
      assert.strictEqual(pa.remote.address, "127.0.0.1")
      assert.strictEqual(pb.remote.address, "127.0.0.1")
      const inbox = yield* Effect.fork(Stream.runCollect(Stream.take(bob.data, 1)))
      yield* alice.send(text("over loopback"))
      const got = yield* Fiber.join(inbox).pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(new TextDecoder().decode(Chunk.unsafeGet(got, 0)), "over loopback")
    }).pipe(Effect.provide(NodeNetwork.layer)))
})
