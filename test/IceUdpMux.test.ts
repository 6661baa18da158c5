/**
 * IceUdpMux: demultiplexing by ufrag and by address, counted drops, bounded tables, release on scope close (on the
 * virtual network, under TestClock: a mux on 192.0.2.50:3478, a scripted peer socket on 192.0.2.20:5000, 10 ms
 * one-way latency), and 100 agents on one real loopback port connecting concurrently to 100 clients (NodeNetwork).
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Effect, Either, Exit, Scope, Stream, TestClock } from "effect"
import * as IceAgent from "../src/IceAgent.js"
import type * as IceGatherer from "../src/IceGatherer.js"
import * as IceUdpMux from "../src/IceUdpMux.js"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunIntegrity from "../src/StunIntegrity.js"
import * as StunMessage from "../src/StunMessage.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const muxAddress = v4("192.0.2.50", 3478)
const key = Either.getOrThrow(StunIntegrity.shortTermKey("agentpasswordagentpassw"))

const bindingRequest = (username: string | undefined, id: number) =>
  StunMessage.unsafeEncode(
    StunMessage.make(
      StunMessage.StunClass.Request,
      StunMessage.StunMethod.Binding,
      new Uint8Array(12).fill(id),
      username === undefined ? [] : [StunAttribute.username(username), StunAttribute.priority(1)]
    ),
    { integrity: username === undefined ? undefined : key, fingerprint: true }
  )

/** What an agent answers: a success to `agnt:peer`, 401 to anything else (the agent's own rule, §7.3). */
const answer = (base: IceGatherer.Base) => (message: StunMessage.DecodedStunMessage, from: SocketAddress) => {
  const ok = StunMessage.find(message, "Username")?.value === "agnt:peer"
  base.unsafeSend(
    StunMessage.unsafeEncode(
      StunMessage.make(
        ok ? StunMessage.StunClass.SuccessResponse : StunMessage.StunClass.ErrorResponse,
        message.method,
        message.transactionId,
        [ok ? StunAttribute.xorMappedAddress(from) : StunAttribute.errorCode(401, "Unauthorized")]
      ),
      { fingerprint: true }
    ),
    from
  )
}

const setup = (options: Pick<IceUdpMux.Options, "maxAgents" | "maxAddresses"> = {}) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make({ seed: 1 })
    const server = yield* world.addHost({ name: "server", addresses: ["192.0.2.50"] })
    const peerHost = yield* world.addHost({ name: "peer", addresses: ["192.0.2.20", "192.0.2.21"] })
    const mux = yield* IceUdpMux.make({ address: "192.0.2.50", port: 3478, ...options }).pipe(
      Effect.provideService(Network.Network, server.network)
    )
    const peer = yield* peerHost.network.bindUdp({ address: "192.0.2.20", port: 5000 })
    const other = yield* peerHost.network.bindUdp({ address: "192.0.2.21", port: 5000 })
    const answers: Array<StunMessage.DecodedStunMessage> = []
    yield* peer.setHandler((data) => {
      const decoded = StunMessage.decode(data)
      if (Either.isRight(decoded)) answers.push(decoded.right)
    })
    return { mux, peer, other, answers }
  })

describe("IceUdpMux demultiplexing", () => {
  it.scoped("routes by the ufrag before ':' in USERNAME, then by the learnt address; drops and counts the rest", () =>
    Effect.gen(function*() {
      const { answers, mux, other, peer } = yield* setup()
      const scope = yield* Scope.make()
      const base = yield* Scope.extend(mux.base("agnt"), scope)
      assert.deepStrictEqual(base.address, muxAddress)
      const requests: Array<string> = []
      const others: Array<string> = []
      base.route({
        onRequest: (message, from) => {
          requests.push(`${StunMessage.find(message, "Username")?.value} ${from.ip}:${from.port}`)
          answer(base)(message, from)
        },
        onOther: (data, from) => {
          others.push(`${new TextDecoder().decode(data)} ${from.ip}:${from.port}`)
        }
      })
      // Data before any check: no agent knows 192.0.2.20:5000 yet.
      yield* peer.send(new TextEncoder().encode("early"), muxAddress)
      // A check for another ufrag; one for ours that the agent rejects (401: nothing learnt), from the other
      // address; one it accepts.
      yield* peer.send(bindingRequest("zzzz:peer", 1), muxAddress)
      yield* other.send(bindingRequest("agnt:evil", 2), muxAddress)
      yield* peer.send(bindingRequest("agnt:peer", 3), muxAddress)
      yield* TestClock.adjust("10 millis")
      // Now the valid check's source is learnt: data from it reaches the agent, data from the other does not.
      yield* peer.send(new TextEncoder().encode("media"), muxAddress)
      yield* other.send(new TextEncoder().encode("stranger"), muxAddress)
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(requests, ["agnt:evil 192.0.2.21:5000", "agnt:peer 192.0.2.20:5000"])
      assert.deepStrictEqual(others, ["media 192.0.2.20:5000"])
      assert.deepStrictEqual(answers.map((a) => a.class), [StunMessage.StunClass.SuccessResponse])
      // The agent's own sends go out from the shared port.
      yield* base.send(new TextEncoder().encode("reply"), v4("192.0.2.20", 5000))
      let stats = yield* mux.stats
      assert.deepStrictEqual(
        [stats.agents, stats.addresses, stats.droppedUnknownUfrag, stats.droppedUnknownAddress, stats.delivered],
        [1, 1, 1, 2, 3]
      )
      // A second registration of the ufrag fails.
      const dup = yield* Effect.flip(Scope.extend(mux.base("agnt"), scope))
      assert.strictEqual(dup.reason, "UfragInUse")
      // Closing the agent's scope removes its ufrag and its addresses: the same check is now dropped.
      yield* Scope.close(scope, Exit.void)
      stats = yield* mux.stats
      assert.deepStrictEqual([stats.agents, stats.addresses, stats.transactions], [0, 0, 0])
      yield* peer.send(bindingRequest("agnt:peer", 4), muxAddress)
      yield* peer.send(new TextEncoder().encode("late"), muxAddress)
      yield* TestClock.adjust("10 millis")
      stats = yield* mux.stats
      assert.deepStrictEqual([stats.droppedUnknownUfrag, stats.droppedUnknownAddress, stats.delivered], [2, 3, 3])
      assert.strictEqual(answers.length, 1)
    }))

  it.scoped("a response goes to the agent whose request carried its transaction id", () =>
    Effect.gen(function*() {
      const { mux, peer } = yield* setup()
      const a = yield* mux.base("aaaa")
      const b = yield* mux.base("bbbb")
      // Both ask the same server; the peer answers each request (same source address for both).
      yield* peer.setHandler((data, from) => {
        const request = Either.getOrThrow(StunMessage.decode(data))
        peer.unsafeSend(
          StunMessage.unsafeEncode(
            StunMessage.make(StunMessage.StunClass.SuccessResponse, request.method, request.transactionId, [
              StunAttribute.xorMappedAddress(from)
            ]),
            { fingerprint: true }
          ),
          from
        )
      })
      const [ra, rb] = yield* Effect.all([
        Effect.fork(a.client.request(v4("192.0.2.20", 5000), { method: StunMessage.StunMethod.Binding })),
        Effect.fork(b.client.request(v4("192.0.2.20", 5000), { method: StunMessage.StunMethod.Binding }))
      ])
      yield* TestClock.adjust("20 millis")
      const [resA, resB] = yield* Effect.all([ra.await, rb.await])
      assert.isTrue(Exit.isSuccess(resA) && Exit.isSuccess(resB))
      assert.strictEqual((yield* mux.stats).transactions, 0)
    }))

  it.scoped("bounded tables: maxAgents refuses a registration, maxAddresses stops learning (counted)", () =>
    Effect.gen(function*() {
      const { mux, other, peer } = yield* setup({ maxAgents: 1, maxAddresses: 1 })
      const base = yield* mux.base("agnt")
      const refused = yield* Effect.flip(mux.base("more"))
      assert.strictEqual(refused.reason, "TooManyAgents")
      const seen: Array<string> = []
      base.route({
        onRequest: (message, from) => {
          seen.push(from.ip)
          answer(base)(message, from)
        }
      })
      yield* peer.send(bindingRequest("agnt:peer", 1), muxAddress)
      yield* other.send(bindingRequest("agnt:peer", 2), muxAddress)
      yield* TestClock.adjust("10 millis")
      // Both checks are delivered (routed by ufrag) and answered; only the first address is learnt.
      assert.deepStrictEqual(seen, ["192.0.2.20", "192.0.2.21"])
      const stats = yield* mux.stats
      assert.deepStrictEqual([stats.addresses, stats.addressTableFull], [1, 1])
    }))
})

describe("IceUdpMux on loopback (NodeNetwork)", () => {
  it.scopedLive("100 agents on one UDP port connect concurrently to 100 clients, and data echoes on each", () =>
    Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const mux = yield* IceUdpMux.make({ address: "127.0.0.1" })
      const loopback = {
        includeLoopback: true,
        families: ["IPv4"],
        interfaceFilter: (i: Network.NetworkInterface) => i.address === "127.0.0.1"
      } as const
      const n = 100
      const results = yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (i) =>
          Effect.gen(function*() {
            const server = yield* IceAgent.make({ mux, controlling: false })
            const client = yield* IceAgent.make({ ...loopback, controlling: true })
            yield* IceAgent.pipeSignalling(client, server)
            yield* Effect.forkScoped(Stream.runForEach(server.data, (d) => Effect.ignore(server.send(d))))
            const [pc, ps] = yield* Effect.all([client.connected, server.connected], { concurrency: 2 })
            const reply = yield* Effect.fork(Stream.runCollect(Stream.take(client.data, 1)))
            yield* client.send(new TextEncoder().encode(`ping ${i}`))
            const got = yield* reply.await.pipe(Effect.flatten)
            return { i, pc, ps, echoed: new TextDecoder().decode(Chunk.unsafeGet(got, 0)) }
          }),
        { concurrency: "unbounded" }
      ).pipe(
        Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error("100 agents did not connect in 30 s") })
      )
      const elapsed = (yield* Clock.currentTimeMillis) - started
      console.log(`IceUdpMux loopback: ${n} pairs connected and echoed in ${elapsed} ms`)
      assert.strictEqual(results.length, n)
      for (const r of results) {
        assert.strictEqual(r.echoed, `ping ${r.i}`)
        assert.strictEqual(r.ps.local.port, mux.local.port)
        assert.strictEqual(r.pc.remote.port, mux.local.port)
      }
      const stats = yield* mux.stats
      assert.strictEqual(stats.agents, n)
      assert.strictEqual(stats.droppedUnknownUfrag, 0)
      assert.isBelow(elapsed, 30_000)
    }).pipe(Effect.provide(NodeNetwork.layer)))
})
