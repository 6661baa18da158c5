/**
 * `TurnServer` limits on the simulated internet (`VirtualNetwork` under `TestClock`, 10 ms one way between hosts):
 * `maxBytesPerSecond` (a token bucket per allocation over relayed bytes, both directions) and
 * `unauthenticatedRateLimit` (a token bucket per source IP over unauthenticated answers). Both buckets hold one
 * second's worth and refill continuously from Effect's clock, so the counts below are exact.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Metric, TestClock } from "effect"
import * as Metrics from "../src/Metrics.js"
import * as Network from "../src/Network.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TurnChannelData from "../src/TurnChannelData.js"
import * as TurnServer from "../src/TurnServer.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"
import { run } from "./virtualTime.js"

const serverIp = "192.0.2.1"
const relayIp = "192.0.2.10"
const clientIp = "198.51.100.7"
const client2Ip = "198.51.100.8"
const peerIp = "203.0.113.5"
const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const server = v4(serverIp, 3478)
const { Allocate, ChannelBind } = StunMessage.StunMethod

const setup = (options: Partial<TurnServer.Options>) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make()
    const serverHost = yield* world.addHost({ name: "server", addresses: [serverIp, relayIp] })
    const clientHost = yield* world.addHost({ name: "client", addresses: [clientIp] })
    const client2Host = yield* world.addHost({ name: "client2", addresses: [client2Ip] })
    const peerHost = yield* world.addHost({ name: "peer", addresses: [peerIp] })
    const turn = yield* TurnServer.make({
      addresses: [serverIp],
      relayAddress: relayIp,
      realm: "example.org",
      users: { alice: "secret" },
      ...options
    }).pipe(Effect.provideService(Network.Network, serverHost.network))
    return { world, serverHost, clientHost, client2Host, peerHost, turn }
  })

const counter = (metric: typeof Metrics.turnDrops, key: string, value: string) =>
  Effect.map(Metric.value(metric.pipe(Metric.tagged(key, value))), (state) => state.count)

/** A raw UDP socket that counts what arrives. */
const rawUdp = (host: VirtualNetwork.Host, port?: number) =>
  Effect.gen(function*() {
    const socket = yield* host.network.bindUdp(port === undefined ? {} : { port })
    const received: Array<Uint8Array> = []
    yield* socket.setHandler((data) => {
      received.push(data.slice())
    })
    return { socket, received }
  })

/** An allocation with a channel (0x4000) bound to the peer; ChannelData from the server lands in `channelData`. */
const allocateWithChannel = (host: VirtualNetwork.Host, peer: SocketAddress) =>
  Effect.gen(function*() {
    const socket = yield* host.network.bindUdp({})
    const channelData: Array<Uint8Array> = []
    const client = yield* StunTransaction.makeUdp(socket, {
      onOther: (bytes) => {
        const decoded = TurnChannelData.decode(bytes)
        if (Either.isRight(decoded)) channelData.push(decoded.right.data.slice())
      }
    })
    const session = yield* StunTransaction.makeLongTermSession("alice", "secret")
    const response = yield* run(
      client.request(server, { method: Allocate, attributes: [StunAttribute.requestedTransport(17)] }, {
        credentials: session
      })
    )
    const relayed = StunMessage.find(response.message, "XorRelayedAddress")!.address
    yield* run(
      client.request(server, {
        method: ChannelBind,
        attributes: [StunAttribute.channelNumber(0x4000), StunAttribute.xorPeerAddress(peer)]
      }, { credentials: session })
    )
    const sendChannelData = (data: Uint8Array) => socket.send(TurnChannelData.encode(0x4000, data), server)
    return { relayed: v4(relayed.ip, relayed.port), channelData, sendChannelData }
  })

const unauthenticatedAllocate = (n: number) => {
  const id = new Uint8Array(12)
  id[8] = n >>> 24
  id[9] = (n >>> 16) & 0xff
  id[10] = (n >>> 8) & 0xff
  id[11] = n & 0xff
  return StunMessage.unsafeEncode(
    StunMessage.make(StunMessage.StunClass.Request, Allocate, id, [StunAttribute.requestedTransport(17)]),
    { fingerprint: true }
  )
}

describe("TurnServer maxBytesPerSecond", () => {
  it.scoped("1000 B/s: 100-byte datagrams every 10 ms for 1 s → exactly 19 relayed, the other 81 dropped", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost } = yield* setup({ maxBytesPerSecond: 1000 })
      const peer = yield* rawUdp(peerHost, 5000)
      const allocation = yield* allocateWithChannel(clientHost, v4(peerIp, 5000))
      // Let the bucket fill up (it starts full anyway, and holds at most one second of bytes).
      yield* TestClock.adjust("2 seconds")
      const dropsBefore = yield* counter(Metrics.turnDrops, "reason", "bandwidth")
      const bytesBefore = yield* counter(Metrics.turnRelayedBytes, "direction", "to-client")
      // Peer → client: they arrive at the relay at t, t + 10, …, t + 990. 1000 bytes in the bucket, 1 byte more per
      // ms: 11 pass in a row (the bucket goes 1000 → 100 → 0 net of refills), then one in ten (90 ms refill 100).
      const payload = new Uint8Array(100).fill(7)
      for (let i = 0; i < 100; i++) {
        yield* peer.socket.send(payload, allocation.relayed)
        yield* TestClock.adjust("10 millis")
      }
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(allocation.channelData.length, 19)
      assert.strictEqual((yield* counter(Metrics.turnRelayedBytes, "direction", "to-client")) - bytesBefore, 1900)
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "bandwidth")) - dropsBefore, 81)
    }))

  it.scoped("both directions draw on the same bucket; an allocation without the option is not limited", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost } = yield* setup({ maxBytesPerSecond: 1000 })
      const peer = yield* rawUdp(peerHost, 5000)
      const allocation = yield* allocateWithChannel(clientHost, v4(peerIp, 5000))
      yield* TestClock.adjust("2 seconds")
      const dropsBefore = yield* counter(Metrics.turnDrops, "reason", "bandwidth")
      // 7 × 100 bytes from the peer and 4 × 100 from the client, all arriving at the server at the same instant:
      // 1000 bytes in the bucket, so 10 of the 11 get through, whichever way.
      const payload = new Uint8Array(100).fill(1)
      for (let i = 0; i < 7; i++) yield* peer.socket.send(payload, allocation.relayed)
      for (let i = 0; i < 4; i++) yield* allocation.sendChannelData(payload)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(allocation.channelData.length + peer.received.length, 10)
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "bandwidth")) - dropsBefore, 1)
      // One second later the bucket is full again: 10 more from the client alone (1000 bytes), the 11th dropped.
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 11; i++) yield* allocation.sendChannelData(payload)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(allocation.channelData.length + peer.received.length, 20)
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "bandwidth")) - dropsBefore, 2)
    }))

  it.scoped("without maxBytesPerSecond nothing is dropped for bandwidth", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost } = yield* setup({})
      const peer = yield* rawUdp(peerHost, 5000)
      const allocation = yield* allocateWithChannel(clientHost, v4(peerIp, 5000))
      const dropsBefore = yield* counter(Metrics.turnDrops, "reason", "bandwidth")
      for (let i = 0; i < 200; i++) yield* peer.socket.send(new Uint8Array(1000), allocation.relayed)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(allocation.channelData.length, 200)
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "bandwidth")) - dropsBefore, 0)
    }))
})

describe("TurnServer unauthenticatedRateLimit", () => {
  it.scoped("1000 Allocates without credentials from one source: 50 answered at once; 200 over 1 s: 99", () =>
    Effect.gen(function*() {
      const { client2Host, clientHost, turn } = yield* setup({})
      const raw = yield* rawUdp(clientHost, 4000)
      const limitedBefore = yield* counter(Metrics.turnDrops, "reason", "rate-limited")
      // All at the same instant: the bucket holds one second's worth, 50.
      for (let i = 0; i < 1000; i++) yield* raw.socket.send(unauthenticatedAllocate(i), server)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(raw.received.length, 50)
      for (const bytes of raw.received) {
        assert.strictEqual(StunMessage.find(Either.getOrThrow(StunMessage.decode(bytes)), "ErrorCode")?.code, 401)
      }
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "rate-limited")) - limitedBefore, 950)
      assert.strictEqual(turn.allocationCount(), 0)
      // Another source is answered meanwhile.
      const other = yield* rawUdp(client2Host, 4000)
      yield* other.socket.send(unauthenticatedAllocate(5000), server)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(other.received.length, 1)

      // Two seconds later the bucket is full again. 200 more, one every 5 ms (over 995 ms): 50 + 995 ms × 0.05 =
      // 99.75, so 99 answered.
      yield* TestClock.adjust("2 seconds")
      raw.received.length = 0
      for (let i = 0; i < 200; i++) {
        yield* raw.socket.send(unauthenticatedAllocate(10_000 + i), server)
        yield* TestClock.adjust("5 millis")
      }
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(raw.received.length, 99)
      assert.strictEqual(turn.allocationCount(), 0)
    }))

  it.scoped("Binding answers count too; an authenticated client is never limited; 0 turns the limit off", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost } = yield* setup({ unauthenticatedRateLimit: 5 })
      const raw = yield* rawUdp(clientHost, 4000)
      const binding = StunMessage.unsafeEncode(
        StunMessage.make(StunMessage.StunClass.Request, StunMessage.StunMethod.Binding, new Uint8Array(12), [
          StunAttribute.software("a binding request long enough to be answered")
        ]),
        { fingerprint: true }
      )
      const limitedBefore = yield* counter(Metrics.turnDrops, "reason", "rate-limited")
      for (let i = 0; i < 10; i++) yield* raw.socket.send(binding, server)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(raw.received.length, 5)
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "rate-limited")) - limitedBefore, 5)
      // The same IP (another port) with credentials, the bucket nearly empty: the first Allocate's 401 is dropped,
      // its retransmission 500 ms later (the bucket then holds 2.75) gets the 401, and the client authenticates.
      const peer = yield* rawUdp(peerHost, 5000)
      const allocation = yield* allocateWithChannel(clientHost, v4(peerIp, 5000))
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "rate-limited")) - limitedBefore, 6)
      // Relayed traffic of an authenticated allocation is not limited by it: all 20 datagrams relayed.
      for (let i = 0; i < 20; i++) yield* peer.socket.send(new Uint8Array([i]), allocation.relayed)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(allocation.channelData.length, 20)
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "rate-limited")) - limitedBefore, 6)

      const unlimited = yield* setup({ unauthenticatedRateLimit: 0 })
      const raw2 = yield* rawUdp(unlimited.clientHost, 4000)
      for (let i = 0; i < 300; i++) yield* raw2.socket.send(unauthenticatedAllocate(i), server)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(raw2.received.length, 300)
    }))

  it.scoped("a source's bucket refills at the rate: 2 per second, half a token after 250 ms is not enough", () =>
    Effect.gen(function*() {
      const { clientHost } = yield* setup({ unauthenticatedRateLimit: 2, sweepInterval: "1 second" })
      const raw = yield* rawUdp(clientHost, 4000)
      for (let i = 0; i < 3; i++) yield* raw.socket.send(unauthenticatedAllocate(i), server)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(raw.received.length, 2)
      // 250 ms later half a token came back: still nothing.
      yield* TestClock.adjust("200 millis")
      yield* raw.socket.send(unauthenticatedAllocate(3), server)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(raw.received.length, 2)
      // Later the bucket has refilled (and the sweeper, every second here, has forgotten the source): 2 more.
      yield* TestClock.adjust("2 seconds")
      for (let i = 4; i < 8; i++) yield* raw.socket.send(unauthenticatedAllocate(i), server)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(raw.received.length, 4)
      assert.strictEqual(TurnServer.maxRateLimitedSources, 10_000)
    }))
})
