/**
 * What `TurnServer` keeps per allocation, and its hand-written data plane, on the simulated internet
 * (`VirtualNetwork`, under `TestClock`: 10 ms one way between hosts).
 *
 * - One expiry fiber serves every allocation: the server's live fibers are as many with 100 allocations as with
 *   one, and every allocation still expires at exactly its own lifetime (a refreshed one later).
 * - Data indications are written without the general encoder: they must be, byte for byte, what
 *   `StunMessage.encode` gives (IPv4 and IPv6 peers). Send indications of the common shape skip the general decoder:
 *   with and without FINGERPRINT they are relayed, with a wrong one dropped as before, and any other shape still
 *   goes through the decoder (relayed when valid).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Metric, Supervisor, TestClock } from "effect"
import * as Metrics from "../src/Metrics.js"
import * as Network from "../src/Network.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TurnServer from "../src/TurnServer.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"
import { advanceTo, run } from "./virtualTime.js"

const serverIp = "192.0.2.1"
const relayIp = "192.0.2.10"
const relayIp6 = "2001:db8::10"
const clientIp = "198.51.100.7"
const peerIp = "203.0.113.5"
const peerIp6 = "2001:db8:1::5"
const realm = "example.org"
const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const server = v4(serverIp, 3478)
const { Allocate, CreatePermission, Refresh, Send } = StunMessage.StunMethod

const setup = Effect.gen(function*() {
  const world = yield* VirtualNetwork.make()
  const serverHost = yield* world.addHost({ name: "server", addresses: [serverIp, relayIp, relayIp6] })
  const clientHost = yield* world.addHost({ name: "client", addresses: [clientIp] })
  const peerHost = yield* world.addHost({ name: "peer", addresses: [peerIp, peerIp6] })
  return { serverHost, clientHost, peerHost }
})

const start = (host: VirtualNetwork.Host, options: Partial<TurnServer.Options> = {}) =>
  TurnServer.make({
    addresses: [serverIp],
    port: 3478,
    relayAddresses: [relayIp, relayIp6],
    realm,
    users: { alice: "secret" },
    userQuota: 2000,
    totalQuota: 2000,
    ...options
  }).pipe(Effect.provideService(Network.Network, host.network))

/** A TURN test client: StunTransaction with a long-term session; Data indications received are kept whole. */
const turnClient = (host: VirtualNetwork.Host) =>
  Effect.gen(function*() {
    const socket = yield* host.network.bindUdp({})
    const indications: Array<StunMessage.DecodedStunMessage> = []
    const client = yield* StunTransaction.makeUdp(socket, {
      onIndication: (message) => {
        indications.push({ ...message, raw: message.raw.slice() })
      }
    })
    const session = yield* StunTransaction.makeLongTermSession("alice", "secret")
    const request = (method: number, attributes: ReadonlyArray<StunAttribute.StunAttribute> = []) =>
      client.request(server, { method, attributes }, { credentials: session })
    return { socket, client, request, indications }
  })

const dropped = (reason: string) =>
  Effect.map(Metric.value(Metrics.turnDrops.pipe(Metric.tagged("reason", reason))), (state) => state.count)

describe("TurnServer memory structure", () => {
  it.scoped(
    "100 allocations: as many live server fibers as with 1; each expires at exactly its lifetime",
    () =>
      Effect.gen(function*() {
        const count = 100
        const { clientHost, serverHost } = yield* setup
        const tracker = yield* Supervisor.track
        const turn = yield* Effect.supervised(start(serverHost), tracker)
        const fibers = Effect.map(tracker.value, (list) => list.length)
        const clients = yield* Effect.forEach(Array.from({ length: count }, (_, i) => i), () => turnClient(clientHost))
        yield* run(clients[0]!.request(Allocate, [StunAttribute.requestedTransport(17)]))
        yield* TestClock.adjust("100 millis")
        const withOne = yield* fibers
        yield* run(
          Effect.forEach(
            clients.slice(1),
            (c) => c.request(Allocate, [StunAttribute.requestedTransport(17)]),
            { concurrency: "unbounded", discard: true }
          )
        )
        yield* TestClock.adjust("100 millis")
        assert.strictEqual(turn.allocationCount(), count)
        assert.strictEqual(yield* fibers, withOne)
        assert.isAtMost(withOne, 8)

        // The first client refreshes (to 1200 s): it stays when the others expire, each at exactly its own time.
        yield* run(clients[0]!.request(Refresh, [StunAttribute.lifetime(1200)]))
        const expiries = turn.allocations().map((a) => a.expiresAt).sort((a, b) => a - b)
        const last = expiries[expiries.length - 1]!
        const others = expiries.slice(0, -1)
        yield* advanceTo(others[0]! - 1)
        assert.strictEqual(turn.allocationCount(), count)
        for (const at of [...new Set(others)]) {
          yield* advanceTo(at - 1)
          const before = turn.allocationCount()
          yield* advanceTo(at)
          assert.strictEqual(before - turn.allocationCount(), others.filter((x) => x === at).length)
        }
        assert.strictEqual(turn.allocationCount(), 1)
        yield* advanceTo(last - 1)
        assert.strictEqual(turn.allocationCount(), 1)
        yield* advanceTo(last)
        assert.strictEqual(turn.allocationCount(), 0)
        assert.isAtMost(yield* fibers, withOne)
      }),
    { timeout: 30_000 }
  )
})

describe("TurnServer data plane encoding", () => {
  it.scoped("Data indications are the bytes StunMessage.encode gives (IPv4 and IPv6 peers); Send indications", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost, serverHost } = yield* setup
      yield* start(serverHost)
      const c = yield* turnClient(clientHost)
      const allocated = yield* run(
        c.request(Allocate, [StunAttribute.requestedTransport(17), StunAttribute.additionalAddressFamily("IPv6")])
      )
      const relayed = allocated.message.attributes.flatMap((a) => a._tag === "XorRelayedAddress" ? [a.address] : [])
      assert.strictEqual(relayed.length, 2)
      const peer4 = yield* peerHost.network.bindUdp({ address: peerIp, port: 5000 })
      const peer6 = yield* peerHost.network.bindUdp({ address: peerIp6, family: "IPv6", port: 5001 })
      const atPeer: Array<Array<number>> = []
      yield* peer4.setHandler((data) => {
        atPeer.push([...data])
      })
      const peer4Address = v4(peerIp, 5000)
      const peer6Address: SocketAddress = { family: "IPv6", ip: peerIp6, port: 5001 }
      yield* run(
        c.request(CreatePermission, [
          StunAttribute.xorPeerAddress(peer4Address),
          StunAttribute.xorPeerAddress(peer6Address)
        ])
      )

      for (const size of [0, 1, 2, 3, 4, 5, 160, 1199]) {
        const payload = Uint8Array.from({ length: size }, (_, i) => (i * 7 + size) & 0xff)
        yield* peer4.send(payload, relayed[0]!)
        yield* peer6.send(payload, relayed[1]!)
      }
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(c.indications.length, 16)
      for (const message of c.indications) {
        const peer = StunMessage.find(message, "XorPeerAddress")!
        const data = StunMessage.find(message, "Data")!
        const expected = StunMessage.encode(
          StunMessage.make(StunMessage.StunClass.Indication, StunMessage.StunMethod.Data, message.transactionId, [
            StunAttribute.xorPeerAddress(peer.address),
            StunAttribute.data(data.value)
          ]),
          { fingerprint: true }
        )
        assert.isTrue(Either.isRight(expected))
        assert.deepStrictEqual([...message.raw], [...Either.getOrThrow(expected)])
      }
      assert.deepStrictEqual(
        c.indications.map((m) => StunMessage.find(m, "XorPeerAddress")!.address.family),
        Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? "IPv4" : "IPv6"))
      )

      // Send indications: without and with FINGERPRINT (relayed), a wrong FINGERPRINT (dropped, counted), another
      // attribute (the general decoder: relayed), a comprehension-required unknown one (dropped as before).
      const send = (data: number, extra: ReadonlyArray<StunAttribute.StunAttribute>, fingerprint: boolean) => {
        const bytes = Either.getOrThrow(StunMessage.encode(
          StunMessage.make(StunMessage.StunClass.Indication, Send, new Uint8Array(12).fill(data), [
            StunAttribute.xorPeerAddress(peer4Address),
            StunAttribute.data(new Uint8Array([data])),
            ...extra
          ]),
          { fingerprint }
        ))
        return bytes
      }
      const wrong = send(3, [], true)
      wrong[wrong.length - 1] ^= 1
      const badFingerprint = yield* dropped("bad-fingerprint")
      for (
        const bytes of [send(1, [], false), send(2, [], true), wrong, send(4, [StunAttribute.software("x")], true)]
      ) {
        yield* c.client.send(server, bytes)
      }
      yield* TestClock.adjust("50 millis")
      assert.deepStrictEqual(atPeer, [[1], [2], [4]])
      assert.strictEqual((yield* dropped("bad-fingerprint")) - badFingerprint, 1)
    }))
})
