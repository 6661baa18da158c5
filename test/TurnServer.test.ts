/**
 * `TurnServer` on the simulated internet (`VirtualNetwork`, under `TestClock`: 10 ms one way between hosts, so a
 * request sent at t reaches the server at t + 10 ms and its answer is back at t + 20 ms).
 *
 * The server host is 192.0.2.1 (listening, UDP and TCP on 3478) with its relay on 192.0.2.10; clients are
 * 198.51.100.7 and 198.51.100.8; peers are 203.0.113.5 and 203.0.113.6. All of these are public test ranges, so the
 * default peer policy allows the peers, and the tests of refused peers use private, loopback and the server's own
 * addresses. The test client is `StunTransaction` with a long-term session (one 401 round trip, 438 handled once).
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Either, Exit, Fiber, Metric, Scope, TestClock } from "effect"
import * as Metrics from "../src/Metrics.js"
import * as Network from "../src/Network.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunIntegrity from "../src/StunIntegrity.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TurnAuth from "../src/TurnAuth.js"
import * as TurnChannelData from "../src/TurnChannelData.js"
import * as TurnClient from "../src/TurnClient.js"
import * as TurnServer from "../src/TurnServer.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"
import { advanceTo, run } from "./virtualTime.js"

const serverIp = "192.0.2.1"
const relayIp = "192.0.2.10"
const clientIp = "198.51.100.7"
const client2Ip = "198.51.100.8"
const peerIp = "203.0.113.5"
const peer2Ip = "203.0.113.6"
const realm = "example.org"
const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const server = v4(serverIp, 3478)

const { Allocate, ChannelBind, CreatePermission, Refresh, Send } = StunMessage.StunMethod
const baseOptions: TurnServer.Options = {
  addresses: [serverIp],
  port: 3478,
  tcp: true,
  relayAddress: relayIp,
  realm,
  users: { alice: "secret", bob: "hunter2" }
}

const setup = Effect.gen(function*() {
  const world = yield* VirtualNetwork.make()
  const serverHost = yield* world.addHost({ name: "server", addresses: [serverIp, relayIp] })
  const clientHost = yield* world.addHost({ name: "client", addresses: [clientIp] })
  const client2Host = yield* world.addHost({ name: "client2", addresses: [client2Ip] })
  const peerHost = yield* world.addHost({ name: "peer", addresses: [peerIp] })
  const peer2Host = yield* world.addHost({ name: "peer2", addresses: [peer2Ip] })
  return { world, serverHost, clientHost, client2Host, peerHost, peer2Host }
})

const start = (host: VirtualNetwork.Host, options: Partial<TurnServer.Options> = {}) =>
  TurnServer.make({ ...baseOptions, ...options }).pipe(Effect.provideService(Network.Network, host.network))

interface Arrival {
  readonly at: number
  readonly data: Uint8Array
  readonly from: SocketAddress
}

/** A UDP socket that records what arrives, with the virtual time of arrival. */
const rawUdp = (host: VirtualNetwork.Host, port?: number) =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const socket = yield* host.network.bindUdp(port === undefined ? {} : { port })
    const received: Array<Arrival> = []
    yield* socket.setHandler((data, from) => {
      received.push({ at: clock.unsafeCurrentTimeMillis(), data: data.slice(), from })
    })
    return { socket, received, send: (data: Uint8Array, to: SocketAddress) => socket.send(data, to) }
  })

/** A TURN test client: a StunTransaction client on its own socket, and everything else it receives. */
const turnClient = (host: VirtualNetwork.Host, username = "alice", password = "secret") =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const socket = yield* host.network.bindUdp({})
    const data: Array<Arrival & { readonly kind: "data-indication" | "channel-data"; readonly channel?: number }> = []
    const client = yield* StunTransaction.makeUdp(socket, {
      onIndication: (message) => {
        const peer = StunMessage.find(message, "XorPeerAddress")
        const value = StunMessage.find(message, "Data")
        if (message.method === StunMessage.StunMethod.Data && peer !== undefined && value !== undefined) {
          data.push({
            at: clock.unsafeCurrentTimeMillis(),
            data: value.value.slice(),
            from: peer.address,
            kind: "data-indication"
          })
        }
      },
      onOther: (bytes, from) => {
        const decoded = TurnChannelData.decode(bytes)
        if (Either.isRight(decoded)) {
          data.push({
            at: clock.unsafeCurrentTimeMillis(),
            data: decoded.right.data.slice(),
            from,
            kind: "channel-data",
            channel: decoded.right.channel
          })
        }
      }
    })
    const session = yield* StunTransaction.makeLongTermSession(username, password)
    const request = (method: number, attributes: ReadonlyArray<StunAttribute.StunAttribute> = []) =>
      client.request(server, { method, attributes }, { credentials: session })
    return { socket, client, session, data, request }
  })

const now = Clock.currentTimeMillis

const errorCodeOf = <A>(effect: Effect.Effect<A, StunTransaction.StunTransactionError>) =>
  Effect.map(
    Effect.either(effect),
    (result) =>
      Either.isLeft(result) && result.left._tag === "StunErrorResponse" ? result.left.code : Either.isLeft(result)
        ? result.left._tag
        : 200
  )

const allocateSpec = (extra: ReadonlyArray<StunAttribute.StunAttribute> = []) => [
  StunAttribute.requestedTransport(17),
  ...extra
]

/** Allocates and returns the relayed address from the response. */
const allocate = (
  c: Effect.Effect.Success<ReturnType<typeof turnClient>>,
  extra: ReadonlyArray<StunAttribute.StunAttribute> = []
) =>
  Effect.gen(function*() {
    const response = yield* run(c.request(Allocate, allocateSpec(extra)))
    const relayed = StunMessage.find(response.message, "XorRelayedAddress")
    assert.isDefined(relayed)
    return { response, relayed: relayed!.address }
  })

const counter = (metric: typeof Metrics.turnDrops, key: string, value: string) =>
  Effect.map(Metric.value(metric.pipe(Metric.tagged(key, value))), (state) => state.count)

describe("TurnServer", () => {
  it.scoped("Allocate: 401 with REALM and NONCE first, then a relayed address, LIFETIME 600 and MESSAGE-INTEGRITY", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      assert.deepStrictEqual(turn.udp.map((a) => [a.ip, a.port, a.transport]), [[serverIp, 3478, "udp"]])
      assert.deepStrictEqual(turn.tcp.map((a) => [a.ip, a.port, a.transport]), [[serverIp, 3478, "tcp"]])
      const c = yield* turnClient(clientHost)
      const { relayed, response } = yield* allocate(c)
      assert.strictEqual(relayed.ip, relayIp)
      assert.strictEqual(StunMessage.find(response.message, "Lifetime")?.seconds, 600)
      assert.deepStrictEqual(
        StunMessage.find(response.message, "XorMappedAddress")?.address,
        v4(clientIp, c.socket.local.port)
      )
      assert.isAtLeast(response.message.integrityOffset, 0)
      assert.strictEqual(StunMessage.find(response.message, "Software")?.value, "effect-ice")
      // One 401 round trip (0 → 20 ms), then the authenticated request (20 → 40 ms).
      assert.strictEqual(response.attempts, 1)
      assert.strictEqual(yield* now, 40)
      const state = yield* StunTransaction.sessionState(c.session)
      assert.strictEqual(state.realm, realm)
      // The nonce cookie with the "Password algorithms" feature bit (RFC 8489 §9.2), then expiry and signature.
      assert.match(state.nonce!, /^obMatJos2gAAA[0-9a-z]+-[0-9a-f]{16}$/)
      assert.strictEqual(turn.allocationCount(), 1)
      const [info] = turn.allocations()
      assert.strictEqual(info!.relaySocket.port, relayed.port)
      // Created when the authenticated request arrived (30 ms): expires 600 s later.
      assert.strictEqual(info!.expiresAt, 30 + 600_000)
    }))

  it.scoped("an allocation expires at exactly its lifetime without refresh, and its relay port is closed", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const c = yield* turnClient(clientHost)
      const { relayed } = yield* allocate(c)
      const expiresAt = 30 + 600_000
      const rebind = serverHost.network.bindUdp({ address: relayIp, port: relayed.port })
      const inUse = yield* Effect.either(Effect.scoped(rebind))
      assert.isTrue(Either.isLeft(inUse) && inUse.left.reason === "AddressInUse")
      yield* advanceTo(expiresAt - 1)
      assert.strictEqual(turn.allocationCount(), 1)
      yield* advanceTo(expiresAt)
      assert.strictEqual(turn.allocationCount(), 0)
      // The relayed socket is closed: its port can be bound again.
      const again = yield* Effect.either(Effect.scoped(rebind))
      assert.isTrue(Either.isRight(again))
      // And a Refresh now finds no allocation.
      assert.strictEqual(yield* errorCodeOf(run(c.request(Refresh))), 437)
    }))

  it.scoped("Refresh: lifetime clamped to [600, 3600] s; LIFETIME 0 deletes at once; a new Allocate is 437", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const c = yield* turnClient(clientHost)
      yield* allocate(c)
      const long = yield* run(c.request(Refresh, [StunAttribute.lifetime(100_000)]))
      assert.strictEqual(StunMessage.find(long.message, "Lifetime")?.seconds, 3600)
      const short = yield* run(c.request(Refresh, [StunAttribute.lifetime(5)]))
      assert.strictEqual(StunMessage.find(short.message, "Lifetime")?.seconds, 600)
      // A second Allocate (another transaction id) on the same 5-tuple.
      assert.strictEqual(yield* errorCodeOf(run(c.request(Allocate, allocateSpec()))), 437)
      const gone = yield* run(c.request(Refresh, [StunAttribute.lifetime(0)]))
      assert.strictEqual(StunMessage.find(gone.message, "Lifetime")?.seconds, 0)
      assert.strictEqual(turn.allocationCount(), 0)
    }))

  it.scoped("Allocate checks: 442 for TCP, 400 without REQUESTED-TRANSPORT, 440 for IPv6, DONT-FRAGMENT accepted", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const c = yield* turnClient(clientHost)
      assert.strictEqual(yield* errorCodeOf(run(c.request(Allocate, [StunAttribute.requestedTransport(6)]))), 442)
      assert.strictEqual(yield* errorCodeOf(run(c.request(Allocate, []))), 400)
      assert.strictEqual(
        yield* errorCodeOf(run(c.request(Allocate, allocateSpec([StunAttribute.requestedAddressFamily("IPv6")])))),
        440
      )
      assert.strictEqual(turn.allocationCount(), 0)
      assert.strictEqual(yield* errorCodeOf(run(c.request(Allocate, allocateSpec([StunAttribute.dontFragment])))), 200)
      assert.strictEqual(turn.allocationCount(), 1)
    }))

  it.scoped("EVEN-PORT with R=1 reserves the next port for 30 s under a RESERVATION-TOKEN", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const bindRelayPort = (port: number) =>
        Effect.either(Effect.scoped(serverHost.network.bindUdp({ address: relayIp, port })))
      const a = yield* turnClient(clientHost)
      const b = yield* turnClient(clientHost)
      const c = yield* turnClient(clientHost)
      const { relayed, response } = yield* allocate(a, [StunAttribute.evenPort(true)])
      assert.strictEqual(relayed.port % 2, 0)
      const token = StunMessage.find(response.message, "ReservationToken")!.value
      assert.strictEqual(token.length, 8)
      // The reserved port is taken.
      assert.isTrue(Either.isLeft(yield* bindRelayPort(relayed.port + 1)))
      const second = yield* allocate(b, [StunAttribute.reservationToken(token)])
      assert.strictEqual(second.relayed.port, relayed.port + 1)
      // A token is used once; EVEN-PORT together with a token is malformed.
      const withToken = allocateSpec([StunAttribute.reservationToken(token)])
      assert.strictEqual(yield* errorCodeOf(run(c.request(Allocate, withToken))), 508)
      const both = allocateSpec([StunAttribute.evenPort(false), StunAttribute.reservationToken(token)])
      assert.strictEqual(yield* errorCodeOf(run(c.request(Allocate, both))), 400)
      assert.strictEqual(turn.allocationCount(), 2)
      // An unused reservation is released after exactly 30 s.
      const d = yield* turnClient(clientHost)
      const third = yield* allocate(d, [StunAttribute.evenPort(true)])
      const reservedAt = (yield* now) - 10
      assert.isTrue(Either.isLeft(yield* bindRelayPort(third.relayed.port + 1)))
      yield* advanceTo(reservedAt + 30_000 - 1)
      assert.isTrue(Either.isLeft(yield* bindRelayPort(third.relayed.port + 1)))
      yield* advanceTo(reservedAt + 30_000)
      assert.isTrue(Either.isRight(yield* bindRelayPort(third.relayed.port + 1)))
    }))

  it.scoped("Send/Data indications and ChannelData, both ways, only with a permission", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost, peer2Host, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const c = yield* turnClient(clientHost)
      const { relayed } = yield* allocate(c)
      const peer = yield* rawUdp(peerHost, 5000)
      const peer2 = yield* rawUdp(peer2Host, 5000)
      const peerAddress = v4(peerIp, 5000)
      const hello = new Uint8Array([1, 2, 3, 4, 5])
      const sendIndication = (to: SocketAddress, data: Uint8Array) =>
        c.client.indication(server, {
          method: Send,
          attributes: [StunAttribute.xorPeerAddress(to), StunAttribute.data(data)]
        })

      // No permission yet: both directions dropped, and counted.
      const noPermission = yield* counter(Metrics.turnDrops, "reason", "no-permission")
      const toPeerBefore = yield* counter(Metrics.turnRelayedPackets, "direction", "to-peer")
      const bytesBefore = yield* counter(Metrics.turnRelayedBytes, "direction", "to-peer")
      yield* sendIndication(peerAddress, hello)
      yield* peer.send(hello, relayed)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(peer.received.length, 0)
      assert.strictEqual(c.data.length, 0)
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "no-permission")) - noPermission, 2)

      yield* run(c.request(CreatePermission, [StunAttribute.xorPeerAddress(peerAddress)]))
      assert.strictEqual(turn.permissionCount(), 1)
      const t0 = yield* now
      yield* sendIndication(peerAddress, hello)
      yield* TestClock.adjust("30 millis")
      assert.strictEqual(peer.received.length, 1)
      assert.deepStrictEqual([...peer.received[0]!.data], [...hello])
      // Client → server 10 ms, relay → peer 10 ms; it comes from the relayed address.
      assert.strictEqual(peer.received[0]!.at, t0 + 20)
      assert.deepStrictEqual(peer.received[0]!.from, relayed)

      // Peer → client as a Data indication (no channel yet); peer2 has no permission.
      yield* peer.send(new Uint8Array([9, 9]), relayed)
      yield* peer2.send(new Uint8Array([7]), relayed)
      yield* TestClock.adjust("30 millis")
      assert.deepStrictEqual(c.data.map((d) => [d.kind, [...d.data], d.from.ip, d.from.port]), [
        ["data-indication", [9, 9], peerIp, 5000]
      ])

      // A channel: ChannelData both ways.
      yield* run(
        c.request(ChannelBind, [StunAttribute.channelNumber(0x4001), StunAttribute.xorPeerAddress(peerAddress)])
      )
      assert.strictEqual(turn.channelCount(), 1)
      yield* c.client.send(server, TurnChannelData.encode(0x4001, new Uint8Array([42, 43, 44])))
      yield* peer.send(new Uint8Array([8, 8, 8]), relayed)
      yield* TestClock.adjust("30 millis")
      assert.deepStrictEqual([...peer.received[1]!.data], [42, 43, 44])
      assert.deepStrictEqual(c.data.map((d) => [d.kind, d.channel ?? 0, [...d.data]]).slice(1), [
        ["channel-data", 0x4001, [8, 8, 8]]
      ])
      assert.strictEqual((yield* counter(Metrics.turnRelayedPackets, "direction", "to-peer")) - toPeerBefore, 2)
      assert.strictEqual((yield* counter(Metrics.turnRelayedBytes, "direction", "to-peer")) - bytesBefore, 5 + 3)
      // ChannelData on an unbound number is dropped.
      yield* c.client.send(server, TurnChannelData.encode(0x4002, new Uint8Array([1])))
      yield* TestClock.adjust("30 millis")
      assert.strictEqual(peer.received.length, 2)
      assert.strictEqual(peer2.received.length, 0)
    }))

  it.scoped("a permission expires at exactly 300 s", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const c = yield* turnClient(clientHost)
      const { relayed } = yield* allocate(c)
      const peer = yield* rawUdp(peerHost, 5000)
      const sentAt = yield* now
      yield* run(c.request(CreatePermission, [StunAttribute.xorPeerAddress(v4(peerIp, 5000))]))
      const expiresAt = sentAt + 10 + 300_000
      assert.deepStrictEqual(turn.allocations()[0]!.permissions, [{ ip: peerIp, expiresAt }])
      // Arrives at the relay 1 ms before expiry: relayed. Arrives at expiry: dropped.
      yield* advanceTo(expiresAt - 11)
      yield* peer.send(new Uint8Array([1]), relayed)
      yield* TestClock.adjust("1 millis")
      yield* peer.send(new Uint8Array([2]), relayed)
      yield* TestClock.adjust("30 millis")
      assert.deepStrictEqual(c.data.map((d) => [d.at, d.data[0]]), [[expiresAt - 1 + 10, 1]])
      assert.strictEqual(turn.permissionCount(), 0)
      // Client → peer is refused too.
      yield* c.client.indication(server, {
        method: Send,
        attributes: [StunAttribute.xorPeerAddress(v4(peerIp, 5000)), StunAttribute.data(new Uint8Array([3]))]
      })
      yield* TestClock.adjust("30 millis")
      assert.strictEqual(peer.received.length, 0)
    }))

  it.scoped("a channel expires at 600 s, and its number and peer are not reusable for 300 s more", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost, serverHost } = yield* setup
      // A nonce that outlives the test, so no request takes a 438 round trip.
      const turn = yield* start(serverHost, { nonceLifetime: "1 hour" })
      const c = yield* turnClient(clientHost)
      const { relayed } = yield* allocate(c, [StunAttribute.lifetime(3600)])
      const peer = yield* rawUdp(peerHost, 5000)
      const peerAddress = v4(peerIp, 5000)
      const otherPeer = v4(peerIp, 5001)
      const sentAt = yield* now
      yield* run(
        c.request(ChannelBind, [StunAttribute.channelNumber(0x4000), StunAttribute.xorPeerAddress(peerAddress)])
      )
      const expiresAt = sentAt + 10 + 600_000
      assert.deepStrictEqual(turn.allocations()[0]!.channels, [{ channel: 0x4000, peer: peerAddress, expiresAt }])
      // Keep the permission alive, so only the channel expires.
      for (const at of [250_000, 500_000]) {
        yield* advanceTo(sentAt + at)
        yield* run(c.request(CreatePermission, [StunAttribute.xorPeerAddress(peerAddress)]))
      }
      // The peer's datagram arriving 1 ms before expiry comes as ChannelData; at expiry as a Data indication.
      yield* advanceTo(expiresAt - 11)
      yield* peer.send(new Uint8Array([1]), relayed)
      yield* TestClock.adjust("1 millis")
      yield* peer.send(new Uint8Array([2]), relayed)
      yield* TestClock.adjust("30 millis")
      assert.deepStrictEqual(c.data.map((d) => [d.kind, d.data[0]]), [["channel-data", 1], ["data-indication", 2]])
      assert.strictEqual(turn.channelCount(), 0)
      // ChannelData on the expired number is no longer relayed.
      yield* c.client.send(server, TurnChannelData.encode(0x4000, new Uint8Array([5])))
      yield* TestClock.adjust("30 millis")
      assert.strictEqual(peer.received.length, 0)

      const bind = (number: number, to: SocketAddress) =>
        Effect.fork(
          errorCodeOf(c.request(ChannelBind, [StunAttribute.channelNumber(number), StunAttribute.xorPeerAddress(to)]))
        )
      // The number to another peer: 400 when the request arrives 1 ms before expiry + 300 s, 200 at that instant.
      yield* advanceTo(expiresAt + 300_000 - 11)
      const early = yield* bind(0x4000, otherPeer)
      yield* TestClock.adjust("1 millis")
      const onTime = yield* bind(0x4000, otherPeer)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(early), 400)
      assert.strictEqual(yield* Fiber.join(onTime), 200)
      assert.deepStrictEqual(turn.allocations()[0]!.channels.map((ch) => [ch.channel, ch.peer.port]), [[0x4000, 5001]])
    }))

  it.scoped("a peer stays tied to its expired channel for 300 s: another number for it is 400, then allowed", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost, { nonceLifetime: "1 hour" })
      const c = yield* turnClient(clientHost)
      yield* allocate(c, [StunAttribute.lifetime(3600)])
      const peerAddress = v4(peerIp, 5000)
      const bind = (number: number) =>
        Effect.fork(
          errorCodeOf(
            c.request(ChannelBind, [StunAttribute.channelNumber(number), StunAttribute.xorPeerAddress(peerAddress)])
          )
        )
      const sentAt = yield* now
      const firstBind = yield* bind(0x4000)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(firstBind), 200)
      const expiresAt = sentAt + 10 + 600_000
      assert.strictEqual(turn.allocations()[0]!.channels[0]!.expiresAt, expiresAt)
      yield* advanceTo(expiresAt + 300_000 - 11)
      const early = yield* bind(0x4abc)
      yield* TestClock.adjust("1 millis")
      const onTime = yield* bind(0x4abd)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(early), 400)
      assert.strictEqual(yield* Fiber.join(onTime), 200)
      assert.deepStrictEqual(turn.allocations()[0]!.channels.map((ch) => ch.channel), [0x4abd])
    }))

  it.scoped("an expired nonce gives 438 with a new NONCE, and the client recovers", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost, { nonceLifetime: "10 minutes" })
      const c = yield* turnClient(clientHost)
      yield* allocate(c, [StunAttribute.lifetime(3600)])
      const first = (yield* StunTransaction.sessionState(c.session)).nonce
      const stale = yield* counter(Metrics.turnAuthFailures, "code", "438")
      // The nonce was issued at 10 ms (the 401): good until 600 010 ms. One Refresh arrives 1 ms before, one at it.
      const refresh = Effect.fork(c.request(Refresh, [StunAttribute.lifetime(3600)]))
      yield* advanceTo(600_010 - 10 - 1)
      const early = yield* refresh
      yield* TestClock.adjust("1 millis")
      const onTime = yield* refresh
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(StunMessage.find((yield* Fiber.join(early)).message, "Lifetime")?.seconds, 3600)
      const late = yield* Fiber.join(onTime)
      assert.strictEqual(StunMessage.find(late.message, "Lifetime")?.seconds, 3600)
      // Exactly one 438: the second Refresh, answered at 600 020 ms and retried with the new nonce.
      assert.strictEqual(yield* counter(Metrics.turnAuthFailures, "code", "438"), stale + 1)
      assert.strictEqual(late.elapsed.pipe(Duration.toMillis), 20)
      assert.notStrictEqual((yield* StunTransaction.sessionState(c.session)).nonce, first)
      assert.strictEqual(turn.allocationCount(), 1)
    }))

  it.scoped("quotas: 486 past the per-user quota, 508 past the total", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost, { userQuota: 2, totalQuota: 3 })
      const clients = []
      for (let i = 0; i < 4; i++) clients.push(yield* turnClient(clientHost))
      const bobs = yield* turnClient(clientHost, "bob", "hunter2")
      const bob2 = yield* turnClient(clientHost, "bob", "hunter2")
      const codes = []
      for (const c of clients) codes.push(yield* errorCodeOf(run(c.request(Allocate, allocateSpec()))))
      assert.deepStrictEqual(codes, [200, 200, 486, 486])
      assert.strictEqual(yield* errorCodeOf(run(bobs.request(Allocate, allocateSpec()))), 200)
      assert.strictEqual(yield* errorCodeOf(run(bob2.request(Allocate, allocateSpec()))), 508)
      assert.strictEqual(turn.allocationCount(), 3)
      // Releasing one frees a slot for its user.
      yield* run(clients[0]!.request(Refresh, [StunAttribute.lifetime(0)]))
      assert.strictEqual(yield* errorCodeOf(run(clients[2]!.request(Allocate, allocateSpec()))), 200)
    }))

  it.scoped("denied peers give 403: private, loopback, link-local, multicast, the server's own, denyPeers", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      yield* start(serverHost, { denyPeers: ["203.0.113.128/25"], allowPeers: ["10.1.0.0/16", "203.0.113.0/24"] })
      const c = yield* turnClient(clientHost)
      yield* allocate(c)
      const permit = (ip: string) =>
        errorCodeOf(run(c.request(CreatePermission, [StunAttribute.xorPeerAddress(v4(ip, 1))])))
      const results: Record<string, unknown> = {}
      for (
        const ip of [
          "10.0.0.1",
          "192.168.1.1",
          "172.16.0.1",
          "127.0.0.1",
          "169.254.1.1",
          "224.0.0.1",
          "255.255.255.255",
          "0.0.0.0",
          "100.64.0.1",
          serverIp,
          relayIp,
          "203.0.113.200",
          "10.1.2.3",
          "203.0.113.5",
          "8.8.8.8"
        ]
      ) results[ip] = yield* permit(ip)
      assert.deepStrictEqual(results, {
        "10.0.0.1": 403,
        "192.168.1.1": 403,
        "172.16.0.1": 403,
        "127.0.0.1": 403,
        "169.254.1.1": 403,
        "224.0.0.1": 403,
        "255.255.255.255": 403,
        "0.0.0.0": 403,
        "100.64.0.1": 403,
        [serverIp]: 403,
        [relayIp]: 200, // the relay IP: only its live relayed addresses are reachable (see the relay-to-relay test)
        "203.0.113.200": 403, // denyPeers wins over allowPeers
        "10.1.2.3": 200, // allowPeers lifts the default refusal
        "203.0.113.5": 200,
        "8.8.8.8": 200
      })
      // ChannelBind obeys the same policy.
      assert.strictEqual(
        yield* errorCodeOf(
          run(
            c.request(ChannelBind, [
              StunAttribute.channelNumber(0x4000),
              StunAttribute.xorPeerAddress(v4("10.0.0.1", 9))
            ])
          )
        ),
        403
      )
    }))

  it.scoped("two clients of this server talk relay to relay; no other port of the relay IP is reachable", () =>
    Effect.gen(function*() {
      const { clientHost, client2Host, serverHost } = yield* setup
      yield* start(serverHost)
      const a = yield* turnClient(clientHost)
      const b = yield* turnClient(client2Host)
      const { relayed: relayedA } = yield* allocate(a)
      const { relayed: relayedB } = yield* allocate(b)
      assert.strictEqual(relayedA.ip, relayIp)
      yield* run(a.request(CreatePermission, [StunAttribute.xorPeerAddress(relayedB)]))
      yield* run(b.request(CreatePermission, [StunAttribute.xorPeerAddress(relayedA)]))
      // A ChannelBind names the port: a live relayed address is allowed, another port of the relay IP is not.
      yield* run(
        a.request(ChannelBind, [StunAttribute.channelNumber(0x4001), StunAttribute.xorPeerAddress(relayedB)])
      )
      const other = v4(relayIp, relayedB.port === 65000 ? 65001 : 65000)
      assert.strictEqual(
        yield* errorCodeOf(
          run(a.request(ChannelBind, [StunAttribute.channelNumber(0x4002), StunAttribute.xorPeerAddress(other)]))
        ),
        403
      )
      // Data both ways through the two relayed sockets.
      const hello = new TextEncoder().encode("relay to relay")
      yield* a.client.send(server, TurnChannelData.encode(0x4001, hello))
      yield* b.client.indication(server, {
        method: Send,
        attributes: [StunAttribute.xorPeerAddress(relayedA), StunAttribute.data(hello)]
      })
      // A Send indication to another port of the relay IP is dropped, and counted.
      const ownAddress = yield* counter(Metrics.turnDrops, "reason", "own-address")
      yield* a.client.indication(server, {
        method: Send,
        attributes: [StunAttribute.xorPeerAddress(other), StunAttribute.data(hello)]
      })
      yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(b.data.map((d) => [d.kind, d.from, new TextDecoder().decode(d.data)]), [
        ["data-indication", relayedA, "relay to relay"]
      ])
      assert.deepStrictEqual(a.data.map((d) => [d.kind, d.channel, new TextDecoder().decode(d.data)]), [
        ["channel-data", 0x4001, "relay to relay"]
      ])
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "own-address")) - ownAddress, 1)
    }))

  it.scoped("even with the server's address allowed, a relay never sends to a listening endpoint (no loops)", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      yield* start(serverHost, { allowPeers: [serverIp] })
      const c = yield* turnClient(clientHost)
      yield* allocate(c)
      yield* run(c.request(CreatePermission, [StunAttribute.xorPeerAddress(server)]))
      const loops = yield* counter(Metrics.turnDrops, "reason", "loop")
      const request = StunMessage.unsafeEncode(
        StunMessage.make(StunMessage.StunClass.Request, Allocate, tid(1), [StunAttribute.requestedTransport(17)])
      )
      yield* c.client.indication(server, {
        method: Send,
        attributes: [StunAttribute.xorPeerAddress(server), StunAttribute.data(request)]
      })
      yield* TestClock.adjust("100 millis")
      assert.strictEqual((yield* counter(Metrics.turnDrops, "reason", "loop")) - loops, 1)
    }))

  it.scoped("TURN REST credentials (two secrets), expired usernames refused; 441 for another user's allocation", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost, { restSecrets: ["old-secret", "new-secret"], userQuota: 1 })
      const nowSeconds = (yield* now) / 1000
      const fresh = TurnAuth.restCredentials("new-secret", "carol", nowSeconds, 3600)
      const old = TurnAuth.restCredentials("old-secret", "carol", nowSeconds, 3600)
      const expired = TurnAuth.restCredentials("new-secret", "dave", nowSeconds, -1)
      const a = yield* turnClient(clientHost, fresh.username, fresh.password)
      const b = yield* turnClient(clientHost, old.username, old.password)
      const d = yield* turnClient(clientHost, expired.username, expired.password)
      const wrong = yield* turnClient(clientHost, fresh.username, "not-the-password")
      assert.strictEqual(yield* errorCodeOf(run(a.request(Allocate, allocateSpec()))), 200)
      // Same user "carol" under the other secret: the per-user quota (1) counts her once.
      assert.strictEqual(yield* errorCodeOf(run(b.request(Allocate, allocateSpec()))), 486)
      assert.strictEqual(yield* errorCodeOf(run(d.request(Allocate, allocateSpec()))), 401)
      assert.strictEqual(yield* errorCodeOf(run(wrong.request(Allocate, allocateSpec()))), 401)
      assert.strictEqual(turn.allocationCount(), 1)
      // A static user on carol's 5-tuple: 441 Wrong Credentials.
      const alice = yield* StunTransaction.makeLongTermSession("alice", "secret")
      const code = yield* errorCodeOf(run(a.client.request(server, { method: Refresh }, { credentials: alice })))
      assert.strictEqual(code, 441)
    }))

  it.scoped("TCP: allocate over a connection, ChannelData padded, the allocation released when it closes", () =>
    Effect.gen(function*() {
      const { clientHost, peerHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const peer = yield* rawUdp(peerHost, 5000)
      const connected = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const connection = yield* clientHost.network.connectTcp(server)
        const frames: Array<Uint8Array> = []
        const client = yield* StunTransaction.makeTcp(connection, {
          onOther: (bytes) => void frames.push(bytes.slice())
        })
        const session = yield* StunTransaction.makeLongTermSession("alice", "secret")
        const response = yield* client.request(server, { method: Allocate, attributes: allocateSpec() }, {
          credentials: session
        })
        const relayed = StunMessage.find(response.message, "XorRelayedAddress")!.address
        yield* client.request(server, {
          method: ChannelBind,
          attributes: [StunAttribute.channelNumber(0x4000), StunAttribute.xorPeerAddress(v4(peerIp, 5000))]
        }, { credentials: session })
        yield* peer.send(new Uint8Array([1, 2, 3]), relayed)
        yield* peer.send(new Uint8Array([4, 5, 6, 7]), relayed)
        yield* Effect.sleep("100 millis")
        assert.strictEqual(turn.allocationCount(), 1)
        return frames
      })))
      yield* TestClock.adjust("1 second")
      const frames = yield* Fiber.join(connected)
      // 3 bytes of data, padded to 4 over TCP (RFC 8656 §12.5): the deframer skips the padding, so the second
      // message is found only because the first was padded.
      assert.deepStrictEqual(frames.map((f) => [...f]), [[0x40, 0x00, 0x00, 0x03, 1, 2, 3], [
        0x40,
        0x00,
        0x00,
        0x04,
        4,
        5,
        6,
        7
      ]])
      yield* TestClock.adjust("1 second")
      assert.strictEqual(turn.allocationCount(), 0)
    }))
})

// ---------------------------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------------------------

const tid = (n: number): Uint8Array => {
  const id = new Uint8Array(12).fill(0x33)
  id[8] = n >>> 24
  id[9] = (n >>> 16) & 0xff
  id[10] = (n >>> 8) & 0xff
  id[11] = n & 0xff
  return id
}

const encodeRequest = (
  method: number,
  id: number,
  attributes: ReadonlyArray<StunAttribute.StunAttribute>,
  key?: StunIntegrity.IntegrityKey
) =>
  StunMessage.unsafeEncode(StunMessage.make(StunMessage.StunClass.Request, method, tid(id), attributes), {
    integrity: key,
    fingerprint: true
  })

const decoded = (bytes: Uint8Array) => Either.getOrThrow(StunMessage.decode(bytes))

describe("TurnServer under hostile input", () => {
  it.scoped("garbage, truncated, oversized, replayed and forged packets: no crash, no leak, bounded answers", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const raw = yield* rawUdp(clientHost, 4000)
      const sent: Array<Uint8Array> = []
      const send = (bytes: Uint8Array) => {
        sent.push(bytes)
        return raw.send(bytes, server)
      }
      // Garbage of every first byte and several sizes, truncated STUN, ChannelData without an allocation.
      for (let b = 0; b < 256; b++) {
        yield* send(new Uint8Array([b, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42]))
        yield* send(new Uint8Array(24).fill(b))
      }
      const valid = encodeRequest(Allocate, 1, [StunAttribute.requestedTransport(17)])
      for (let cut = 0; cut < valid.length; cut++) yield* send(valid.subarray(0, cut))
      // A header claiming more than is there, and an attribute running past the end.
      const lying = valid.slice()
      lying[3] = 0xfc
      yield* send(lying)
      const badAttribute = valid.slice()
      badAttribute[23] = 0xff
      yield* send(badAttribute)
      // Oversized: a 60 000-byte datagram of zeros and a 60 000-byte STUN message with a huge unknown attribute.
      yield* send(new Uint8Array(60_000))
      yield* send(encodeRequest(Allocate, 2, [StunAttribute.unknown(0x7777, new Uint8Array(59_000))]))
      yield* send(TurnChannelData.encode(0x4000, new Uint8Array(1000)))
      yield* send(valid)
      yield* TestClock.adjust("100 millis")

      // Every answer so far is an error no longer than its request, except 401s (at most 4.5 × the request here).
      const answers = raw.received.map((r) => decoded(r.data))
      for (const answer of answers) {
        const code = StunMessage.find(answer, "ErrorCode")?.code
        assert.isDefined(code)
        assert.isUndefined(StunMessage.find(answer, "Software"))
      }
      const byTid = new Map(
        sent.filter((s) => s.length >= 20).map((s) => [StunMessage.transactionIdHex(s.subarray(8, 20)), s])
      )
      for (const r of raw.received) {
        const request = byTid.get(StunMessage.transactionIdHex(r.data.subarray(8, 20)))!
        const code = StunMessage.find(decoded(r.data), "ErrorCode")!.code
        if (code === 401) assert.isAtMost(r.data.length, 4.5 * request.length)
        else assert.isAtMost(r.data.length, request.length, `code ${code}`)
      }
      // The 401: header, ERROR-CODE "Unauthorized" (20), REALM "example.org" (16), NONCE, PASSWORD-ALGORITHMS
      // (MD5, SHA-256: 12), FINGERPRINT (8).
      const unauth = raw.received.find((r) => StunMessage.find(decoded(r.data), "ErrorCode")!.code === 401)!
      const nonceLength = StunMessage.find(decoded(unauth.data), "Nonce")!.value.length
      assert.strictEqual(unauth.data.length, 20 + 20 + 16 + 4 + ((nonceLength + 3) & ~3) + 12 + 8)
      assert.deepStrictEqual(
        StunMessage.find(decoded(unauth.data), "PasswordAlgorithms")!.algorithms.map((a) => a.algorithm),
        [StunAttribute.PasswordAlgorithmNumber.Md5, StunAttribute.PasswordAlgorithmNumber.Sha256]
      )
      assert.deepStrictEqual(
        raw.received.map((r) => StunMessage.find(decoded(r.data), "ErrorCode")!.code).sort(),
        [401, 420]
      )
      assert.strictEqual(turn.allocationCount(), 0)

      // Wrong integrity: a correct nonce, a key from the wrong password → 401; no allocation.
      const nonce = StunMessage.find(decoded(unauth.data), "Nonce")!.value
      const credentials = [StunAttribute.username("alice"), StunAttribute.realm(realm), StunAttribute.nonce(nonce)]
      const wrongKey = Either.getOrThrow(StunIntegrity.longTermKey("alice", realm, "wrong"))
      const goodKey = Either.getOrThrow(StunIntegrity.longTermKey("alice", realm, "secret"))
      raw.received.length = 0
      yield* send(encodeRequest(Allocate, 10, [StunAttribute.requestedTransport(17), ...credentials], wrongKey))
      // A forged nonce → 438.
      const forged = [
        StunAttribute.username("alice"),
        StunAttribute.realm(realm),
        StunAttribute.nonce("zzzz-0000000000000000")
      ]
      yield* send(encodeRequest(Allocate, 11, [StunAttribute.requestedTransport(17), ...forged], goodKey))
      // A good request, then the same bytes replayed twice: one allocation, the same response bytes three times.
      const good = encodeRequest(Allocate, 12, [StunAttribute.requestedTransport(17), ...credentials], goodKey)
      yield* send(good)
      yield* TestClock.adjust("100 millis")
      yield* send(good)
      yield* send(good)
      // The same transaction id with different contents: not a retransmission, so 437.
      const sameId = encodeRequest(Allocate, 12, [
        StunAttribute.requestedTransport(17),
        StunAttribute.lifetime(900),
        ...credentials
      ], goodKey)
      yield* send(sameId)
      yield* TestClock.adjust("100 millis")
      const codes = raw.received.map((r) => StunMessage.find(decoded(r.data), "ErrorCode")?.code ?? 200)
      assert.deepStrictEqual(codes, [401, 438, 200, 200, 200, 437])
      assert.deepStrictEqual([...raw.received[3]!.data], [...raw.received[2]!.data])
      assert.deepStrictEqual([...raw.received[4]!.data], [...raw.received[2]!.data])
      assert.strictEqual(turn.allocationCount(), 1)

      // The good request replayed from another source port: another 5-tuple, but the nonce is bound to the IP, so
      // it is accepted as a new allocation only with the same credentials (and counted against alice's quota).
      const other = yield* rawUdp(clientHost, 4001)
      yield* other.send(good, server)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(turn.allocationCount(), 2)

      // Delete both; the count returns to 0.
      const del = (id: number) => encodeRequest(Refresh, id, [StunAttribute.lifetime(0), ...credentials], goodKey)
      yield* send(del(20))
      yield* other.send(del(21), server)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(turn.allocationCount(), 0)
    }))

  it.scoped("an unauthenticated flood costs no state and every allocation is gone when its lifetime ends", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      // Without the per-source rate limit, so that every request of the flood is answered (and measured).
      const turn = yield* start(serverHost, { unauthenticatedRateLimit: 0 })
      const raw = yield* rawUdp(clientHost, 4000)
      let sentBytes = 0
      for (let i = 0; i < 2000; i++) {
        const bytes = encodeRequest(i % 2 === 0 ? Allocate : CreatePermission, 100 + i, [
          StunAttribute.requestedTransport(17)
        ])
        sentBytes += bytes.length
        yield* raw.send(bytes, server)
      }
      yield* TestClock.adjust("1 second")
      assert.strictEqual(turn.allocationCount(), 0)
      assert.strictEqual(raw.received.length, 2000)
      const receivedBytes = raw.received.reduce((n, r) => n + r.data.length, 0)
      // 401s of 120 bytes at most (with the nonce cookie and PASSWORD-ALGORITHMS) for 28-byte requests.
      assert.isAtMost(receivedBytes / sentBytes, 120 / 28)
      // A few real allocations, left to expire.
      for (let i = 0; i < 3; i++) {
        const c = yield* turnClient(clientHost)
        yield* allocate(c)
      }
      assert.strictEqual(turn.allocationCount(), 3)
      yield* TestClock.adjust("601 seconds")
      assert.strictEqual(turn.allocationCount(), 0)
      assert.strictEqual(turn.permissionCount(), 0)
    }))

  it.scoped("a TCP connection that breaks the framing is closed; the server keeps serving", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const turn = yield* start(serverHost)
      const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const connection = yield* clientHost.network.connectTcp(server)
        yield* connection.write(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]))
        return yield* Effect.either(connection.closed)
      })))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      const c = yield* turnClient(clientHost)
      yield* allocate(c)
      assert.strictEqual(turn.allocationCount(), 1)
    }))
})

// ---------------------------------------------------------------------------------------------------------------
// Password algorithms (RFC 8489 §9.2.1, §9.2.4, §14.11, §14.12)
// ---------------------------------------------------------------------------------------------------------------

/** A network whose UDP sockets also record every datagram they receive (to see what the server was sent). */
const capturing = (network: Network.Service, into: Array<Uint8Array>): Network.Service => ({
  ...network,
  bindUdp: (options) =>
    Effect.map(network.bindUdp(options), (socket) => ({
      ...socket,
      setHandler: (handler) =>
        socket.setHandler((data, remote) => {
          into.push(data.slice())
          return handler(data, remote)
        })
    }))
})

const { Md5, Sha256 } = StunAttribute.PasswordAlgorithmNumber
const algorithmsAttribute = (...numbers: ReadonlyArray<number>) =>
  StunAttribute.passwordAlgorithms(numbers.map((algorithm) => ({ algorithm, parameters: new Uint8Array(0) })))
const md5Key = Either.getOrThrow(StunIntegrity.longTermKey("alice", realm, "secret", Md5))
const sha256Key = Either.getOrThrow(StunIntegrity.longTermKey("alice", realm, "secret", Sha256))

/** A raw socket that fetches a nonce (a 401 to an unauthenticated Refresh) and answers requests with their code. */
const rawAuthClient = (host: VirtualNetwork.Host) =>
  Effect.gen(function*() {
    const raw = yield* rawUdp(host)
    let id = 500
    const ask = (attributes: ReadonlyArray<StunAttribute.StunAttribute>, key?: StunIntegrity.IntegrityKey) =>
      Effect.gen(function*() {
        raw.received.length = 0
        yield* raw.send(encodeRequest(Refresh, id++, attributes, key), server)
        yield* TestClock.adjust("20 millis")
        assert.strictEqual(raw.received.length, 1)
        const message = decoded(raw.received[0]!.data)
        return { message, code: StunMessage.find(message, "ErrorCode")?.code ?? 200 }
      })
    const challenge = yield* ask([])
    assert.strictEqual(challenge.code, 401)
    const nonce = StunMessage.find(challenge.message, "Nonce")!.value
    const credentials = [StunAttribute.username("alice"), StunAttribute.realm(realm), StunAttribute.nonce(nonce)]
    return { ask, challenge: challenge.message, nonce, credentials }
  })

describe("TurnServer password algorithms", () => {
  it.scoped("TurnClient against the default server: PASSWORD-ALGORITHM SHA-256 and a SHA-256 key end to end", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const received: Array<Uint8Array> = []
      yield* TurnServer.make(baseOptions).pipe(
        Effect.provideService(Network.Network, capturing(serverHost.network, received))
      )
      const scope = yield* Scope.make()
      const allocation = yield* run(
        TurnClient.allocate({
          server,
          auth: { mode: "static", username: "alice", password: "secret" }
        }).pipe(Effect.provideService(Network.Network, clientHost.network), Scope.extend(scope))
      )
      assert.strictEqual(allocation.relayed.ip, relayIp)
      const allocates = received.map(decoded).filter((m) =>
        m.method === Allocate && m.class === StunMessage.StunClass.Request
      )
      // The first Allocate has no credentials (→ 401); the second chose SHA-256 from the list it was offered.
      assert.strictEqual(allocates.length, 2)
      assert.isUndefined(StunMessage.find(allocates[0]!, "PasswordAlgorithm"))
      const second = allocates[1]!
      assert.strictEqual(StunMessage.find(second, "PasswordAlgorithm")?.algorithm, Sha256)
      assert.deepStrictEqual(
        StunMessage.find(second, "PasswordAlgorithms")?.algorithms.map((a) => a.algorithm),
        [Md5, Sha256]
      )
      assert.match(StunMessage.find(second, "Nonce")!.value, /^obMatJos2gAAA/)
      // Its MESSAGE-INTEGRITY is under SHA-256(username:realm:password), not the MD5 key.
      assert.isTrue(Either.isRight(StunIntegrity.verify(second, sha256Key)))
      assert.isTrue(Either.isLeft(StunIntegrity.verify(second, md5Key)))
      // Permissions and refreshes go on with the same key.
      yield* run(allocation.permit([v4(peerIp, 9)]))
      yield* run(allocation.refresh)
      const refresh = received.map(decoded).filter((m) => m.method === Refresh).at(-1)!
      assert.isTrue(Either.isRight(StunIntegrity.verify(refresh, sha256Key)))
      // The release (Refresh LIFETIME 0) is answered, so closing the scope completes.
      yield* run(Scope.close(scope, Exit.void))
    }))

  it.scoped("RFC 8489 §9.2.4 checks: PASSWORD-ALGORITHMS must match what was sent, else 400; the key must match", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      yield* start(serverHost)
      const c = yield* rawAuthClient(clientHost)
      assert.deepStrictEqual(
        StunMessage.find(c.challenge, "PasswordAlgorithms")?.algorithms.map((a) => a.algorithm),
        [Md5, Sha256]
      )
      const both = algorithmsAttribute(Md5, Sha256)
      const sha = StunAttribute.passwordAlgorithm(Sha256)
      // A 437 (no allocation) means the request was authenticated.
      assert.strictEqual((yield* c.ask([...c.credentials, both, sha], sha256Key)).code, 437)
      const md5 = yield* c.ask([...c.credentials, both, StunAttribute.passwordAlgorithm(Md5)], md5Key)
      assert.strictEqual(md5.code, 437)
      assert.isTrue(Either.isRight(StunIntegrity.verify(md5.message, md5Key)))
      // Neither attribute: MD5, as RFC 5389 clients do.
      assert.strictEqual((yield* c.ask(c.credentials, md5Key)).code, 437)
      // The SHA-256 response is protected with the SHA-256 key.
      const answer = yield* c.ask([...c.credentials, both, sha], sha256Key)
      assert.isTrue(Either.isRight(StunIntegrity.verify(answer.message, sha256Key)))
      // SHA-256 chosen but the MD5 key used: 401.
      assert.strictEqual((yield* c.ask([...c.credentials, both, sha], md5Key)).code, 401)
      // PASSWORD-ALGORITHMS not what the server sent (reordered, shortened, missing): 400.
      assert.strictEqual((yield* c.ask([...c.credentials, algorithmsAttribute(Sha256, Md5), sha], sha256Key)).code, 400)
      assert.strictEqual((yield* c.ask([...c.credentials, algorithmsAttribute(Sha256), sha], sha256Key)).code, 400)
      assert.strictEqual((yield* c.ask([...c.credentials, sha], sha256Key)).code, 400)
      // PASSWORD-ALGORITHMS without PASSWORD-ALGORITHM, or an algorithm that is not in the list: 400.
      assert.strictEqual((yield* c.ask([...c.credentials, both], md5Key)).code, 400)
      assert.strictEqual((yield* c.ask([...c.credentials, both, StunAttribute.passwordAlgorithm(7)], md5Key)).code, 400)
      // The nonce with other security feature bits is not ours: 438 (the same length, so not an amplification).
      const other = [
        StunAttribute.username("alice"),
        StunAttribute.realm(realm),
        StunAttribute.nonce("obMatJos2wAAA" + c.nonce.slice("obMatJos2gAAA".length))
      ]
      const stale = yield* c.ask(other, md5Key)
      assert.strictEqual(stale.code, 438)
      assert.deepStrictEqual(
        StunMessage.find(stale.message, "PasswordAlgorithms")?.algorithms.map((a) => a.algorithm),
        [Md5, Sha256]
      )
    }))

  it.scoped("passwordAlgorithms MD5 only: no cookie, no PASSWORD-ALGORITHMS; SHA-256 only: MD5 requests get 400", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const md5Only = yield* Effect.scoped(Effect.gen(function*() {
        yield* start(serverHost, { passwordAlgorithms: ["MD5"] })
        const c = yield* rawAuthClient(clientHost)
        // Attributes a client adds anyway are ignored: the key is MD5.
        const sha = [algorithmsAttribute(Md5, Sha256), StunAttribute.passwordAlgorithm(Sha256)]
        return {
          challenge: c.challenge,
          nonce: c.nonce,
          codes: [(yield* c.ask(c.credentials, md5Key)).code, (yield* c.ask([...c.credentials, ...sha], md5Key)).code]
        }
      }))
      assert.match(md5Only.nonce, /^[0-9a-z]+-[0-9a-f]{16}$/)
      assert.isUndefined(StunMessage.find(md5Only.challenge, "PasswordAlgorithms"))
      // header, ERROR-CODE, REALM "example.org", NONCE, FINGERPRINT.
      assert.strictEqual(md5Only.challenge.raw.length, 20 + 20 + 16 + 4 + ((md5Only.nonce.length + 3) & ~3) + 8)
      assert.deepStrictEqual(md5Only.codes, [437, 437])

      yield* start(serverHost, { passwordAlgorithms: ["SHA-256"] })
      const c = yield* rawAuthClient(clientHost)
      assert.deepStrictEqual(
        StunMessage.find(c.challenge, "PasswordAlgorithms")?.algorithms.map((a) => a.algorithm),
        [Sha256]
      )
      assert.strictEqual((yield* c.ask(c.credentials, md5Key)).code, 400)
      const sha = [algorithmsAttribute(Sha256), StunAttribute.passwordAlgorithm(Sha256)]
      assert.strictEqual((yield* c.ask([...c.credentials, ...sha], sha256Key)).code, 437)
      const md5 = [algorithmsAttribute(Sha256), StunAttribute.passwordAlgorithm(Md5)]
      assert.strictEqual((yield* c.ask([...c.credentials, ...md5], md5Key)).code, 400)
    }))
})
