/**
 * `StunServer` on the simulated internet (`VirtualNetwork`, under `TestClock`: 10 ms one way between hosts, so a
 * UDP answer is back 20 ms after the request left), and once on real loopback sockets (`NodeNetwork`).
 *
 * The server host has two IPs, 192.0.2.1 (A1) and 192.0.2.2 (A2); the RFC 5780 server uses ports 3478 (P1) and
 * 3479 (P2). The client host is 198.51.100.7, with no NAT, so the address the server sees is the client socket's.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Clock,
  ConfigProvider,
  Context,
  Duration,
  Effect,
  Either,
  FastCheck,
  Fiber,
  Layer,
  Metric,
  Option,
  TestClock
} from "effect"
import * as Metrics from "../src/Metrics.js"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import * as StreamFraming from "../src/StreamFraming.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunIntegrity from "../src/StunIntegrity.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunServer from "../src/StunServer.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TransportAddress from "../src/TransportAddress.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const a1 = "192.0.2.1"
const a2 = "192.0.2.2"
const clientIp = "198.51.100.7"
const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const rfc5780: StunServer.Options = { address: a1, alternateAddress: a2, port: 3478, alternatePort: 3479 }
const caching: StunServer.Options = { ...rfc5780, cacheResponses: true }

const { Binding } = StunMessage.StunMethod
const { ErrorResponse, Indication, Request, SuccessResponse } = StunMessage.StunClass
const binding: StunTransaction.RequestSpec = { method: Binding }

const tid = (n: number): Uint8Array => {
  const id = new Uint8Array(12).fill(0x5a)
  id[10] = n >> 8
  id[11] = n & 0xff
  return id
}

const request = (
  n: number,
  attributes: ReadonlyArray<StunAttribute.StunAttribute> = [],
  options: StunMessage.EncodeOptions = { fingerprint: true },
  method: number = Binding,
  cls: StunMessage.StunClass = Request
): Uint8Array => StunMessage.unsafeEncode(StunMessage.make(cls, method, tid(n), attributes), options)

/** An RFC 3489 message: no magic cookie, a 128-bit transaction id. */
const legacyRequest = (body: Uint8Array = new Uint8Array(0)): Uint8Array => {
  const bytes = new Uint8Array(20 + body.length)
  bytes[1] = 0x01
  bytes[2] = body.length >> 8
  bytes[3] = body.length & 0xff
  bytes.set([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 4)
  bytes.set(body, 20)
  return bytes
}

const decoded = (bytes: Uint8Array): StunMessage.DecodedStunMessage => Either.getOrThrow(StunMessage.decode(bytes))

/** Decodes an RFC 3489 response (whose cookie field is not the magic cookie). */
const decodedLegacy = (bytes: Uint8Array): StunMessage.DecodedStunMessage => {
  const copy = bytes.slice()
  copy.set([0x21, 0x12, 0xa4, 0x42], 4)
  return decoded(copy)
}

const tags = (message: StunMessage.StunMessage) => message.attributes.map((a) => a._tag)
const errorCode = (message: StunMessage.StunMessage) => StunMessage.find(message, "ErrorCode")?.code

const served = (transport: "udp" | "tcp", cls: string, method: string, outcome: string) =>
  Effect.map(
    Metric.value(
      Metrics.stunServerRequests.pipe(
        Metric.tagged("transport", transport),
        Metric.tagged("class", cls),
        Metric.tagged("method", method),
        Metric.tagged("outcome", outcome)
      )
    ),
    (state) => state.count
  )

/** Moves the clock to `ms` (absolute virtual time). */
const advanceTo = (ms: number) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => TestClock.adjust(Duration.millis(ms - now)))

const setup = Effect.gen(function*() {
  const world = yield* VirtualNetwork.make({ trace: true, logLimit: 100_000 })
  const serverHost = yield* world.addHost({ name: "server", addresses: [a1, a2] })
  const clientHost = yield* world.addHost({ name: "client", addresses: [clientIp] })
  return { world, serverHost, clientHost }
})

const start = (host: VirtualNetwork.Host, options: StunServer.Options) =>
  StunServer.make(options).pipe(Effect.provideService(Network.Network, host.network))

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
      received.push({ at: clock.unsafeCurrentTimeMillis(), data, from })
    })
    return { socket, received, send: (data: Uint8Array, to: SocketAddress) => socket.send(data, to) }
  })

/** A TCP connection whose incoming bytes are cut into STUN messages. Connecting takes one round trip. */
const rawTcp = (host: VirtualNetwork.Host, to: SocketAddress) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(host.network.connectTcp(to))
    yield* TestClock.adjust("20 millis")
    const connection = yield* Fiber.join(fiber)
    const frames: Array<Uint8Array> = []
    const deframer = StreamFraming.makeTurnStreamDeframer()
    const onFrame = (frame: Uint8Array) => void frames.push(frame.slice())
    yield* connection.setHandler((chunk) => void deframer.push(chunk, onFrame))
    return { connection, frames }
  })

/** Every datagram or segment the server host sent, by destination. */
const sentByServer = (world: VirtualNetwork.World) =>
  Effect.map(
    world.trace,
    (trace) => trace.filter((e) => e.event === "sent" && (e.from.ip === a1 || e.from.ip === a2) && e.protocol === "udp")
  )

describe("StunServer over UDP", () => {
  it.scoped("binds the four RFC 5780 endpoints and answers Binding with every attribute, from the primary", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      assert.deepStrictEqual(server.udp.map(TransportAddress.key), [
        "udp/192.0.2.1:3478",
        "udp/192.0.2.1:3479",
        "udp/192.0.2.2:3478",
        "udp/192.0.2.2:3479"
      ])
      assert.deepStrictEqual(server.tcp.map(TransportAddress.key), [
        "tcp/192.0.2.1:3478",
        "tcp/192.0.2.1:3479",
        "tcp/192.0.2.2:3478",
        "tcp/192.0.2.2:3479"
      ])
      assert.strictEqual(TransportAddress.key(server.primary), "udp/192.0.2.1:3478")
      assert.strictEqual(server.other && TransportAddress.key(server.other), "udp/192.0.2.2:3479")
      assert.strictEqual(server.endpoints.length, 8)

      const before = yield* served("udp", "request", "binding", "success")
      const socket = yield* clientHost.network.bindUdp({ port: 5000 })
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(client.request(server.primary, binding))
      yield* TestClock.adjust("20 millis")
      const response = yield* Fiber.join(fiber)
      const message = response.message
      assert.strictEqual(Duration.toMillis(response.elapsed), 20)
      assert.deepStrictEqual(response.from, v4(a1, 3478))
      assert.strictEqual(message.class, SuccessResponse)
      assert.strictEqual(message.method, Binding)
      assert.deepStrictEqual(tags(message), [
        "XorMappedAddress",
        "MappedAddress",
        "ResponseOrigin",
        "OtherAddress",
        "Software",
        "Fingerprint"
      ])
      assert.deepStrictEqual(StunMessage.find(message, "XorMappedAddress")?.address, v4(clientIp, 5000))
      assert.deepStrictEqual(StunMessage.find(message, "MappedAddress")?.address, v4(clientIp, 5000))
      assert.deepStrictEqual(StunMessage.find(message, "ResponseOrigin")?.address, v4(a1, 3478))
      assert.deepStrictEqual(StunMessage.find(message, "OtherAddress")?.address, v4(a2, 3479))
      assert.strictEqual(StunMessage.find(message, "Software")?.value, "effect-ice")
      assert.strictEqual(message.fingerprintOffset, message.raw.length - 8)
      assert.isTrue(StunIntegrity.verifyFingerprint(message))
      assert.strictEqual(yield* served("udp", "request", "binding", "success"), before + 1)
    }))

  it.scoped("without an alternate: one socket, no OTHER-ADDRESS, and 420 for any CHANGE-REQUEST (RFC 5780 §6)", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, { address: a1, software: "" })
      assert.deepStrictEqual(server.udp.map(TransportAddress.key), ["udp/192.0.2.1:3478"])
      assert.deepStrictEqual(server.tcp.map(TransportAddress.key), ["tcp/192.0.2.1:3478"])
      assert.isUndefined(server.other)
      const socket = yield* clientHost.network.bindUdp({ port: 5000 })
      const client = yield* StunTransaction.makeUdp(socket)

      const fiber = yield* Effect.fork(client.request(server.primary, binding))
      yield* TestClock.adjust("20 millis")
      const message = (yield* Fiber.join(fiber)).message
      // software: "" leaves SOFTWARE out.
      assert.deepStrictEqual(tags(message), ["XorMappedAddress", "MappedAddress", "ResponseOrigin", "Fingerprint"])
      assert.deepStrictEqual(StunMessage.find(message, "ResponseOrigin")?.address, v4(a1, 3478))

      for (const flags of [{ changeIp: false, changePort: false }, { changeIp: true, changePort: true }]) {
        const failing = yield* Effect.fork(
          Effect.flip(
            client.request(server.primary, { method: Binding, attributes: [StunAttribute.changeRequest(flags)] })
          )
        )
        yield* TestClock.adjust("20 millis")
        const error = yield* Fiber.join(failing)
        assert.strictEqual(error._tag, "StunErrorResponse")
        if (error._tag !== "StunErrorResponse") continue
        assert.strictEqual(error.code, 420)
        assert.deepStrictEqual(StunMessage.find(error.response, "UnknownAttributes")?.types, [0x0003])
      }
    }))

  it.scoped("by default a retransmission is answered by recomputing: identical bytes, no state kept", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const client = yield* rawUdp(clientHost, 5000)
      const cached = yield* served("udp", "request", "binding", "cached")
      const successes = yield* served("udp", "request", "binding", "success")
      const bytes = request(7)
      yield* client.send(bytes, server.primary)
      yield* advanceTo(500)
      yield* client.send(bytes, server.primary) // RFC 8489 §6.2.1: the first retransmission, 500 ms later
      yield* advanceTo(600)
      assert.deepStrictEqual(client.received.map((r) => r.at), [20, 520])
      assert.deepStrictEqual(client.received[1]!.data, client.received[0]!.data)
      assert.strictEqual(server.cachedResponses(), 0)
      assert.strictEqual(yield* served("udp", "request", "binding", "cached"), cached)
      assert.strictEqual(yield* served("udp", "request", "binding", "success"), successes + 2)
    }))

  it.scoped("a retransmission gets the cached bytes until exactly the TTL; then the answer is recomputed", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, caching)
      const client = yield* rawUdp(clientHost, 5000)
      const successes = yield* served("udp", "request", "binding", "success")
      const cached = yield* served("udp", "request", "binding", "cached")
      const bytes = request(1)

      // Sent at 0, it reaches the server at 10 ms: cached until 40 010 ms.
      yield* client.send(bytes, server.primary)
      yield* advanceTo(20)
      assert.strictEqual(client.received.length, 1)
      assert.strictEqual(server.cachedResponses(), 1)
      yield* advanceTo(39_999)
      yield* client.send(bytes, server.primary) // arrives at 40 009: a retransmission within the TTL
      yield* advanceTo(40_000)
      yield* client.send(bytes, server.primary) // arrives at 40 010: the entry has just expired
      yield* advanceTo(40_019)
      assert.strictEqual(client.received.length, 2)
      yield* advanceTo(40_020)
      assert.strictEqual(client.received.length, 3)
      assert.strictEqual(yield* served("udp", "request", "binding", "cached"), cached + 1)
      assert.strictEqual(yield* served("udp", "request", "binding", "success"), successes + 2)
      // Binding is idempotent and the answer depends only on the request, the socket and the source: the
      // recomputed response is byte for byte the cached one.
      assert.deepStrictEqual(client.received.map((r) => r.at), [20, 40_019, 40_020])
      assert.deepStrictEqual(client.received[1]!.data, client.received[0]!.data)
      assert.deepStrictEqual(client.received[2]!.data, client.received[0]!.data)
      assert.deepStrictEqual(client.received.map((r) => r.from), [v4(a1, 3478), v4(a1, 3478), v4(a1, 3478)])

      // The sweeper forgets expired entries: none is left two TTLs later.
      yield* advanceTo(200_000)
      assert.strictEqual(server.cachedResponses(), 0)
    }))

  it.scoped("the cache is keyed by source and transaction id, and a different request under the same id is new", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, caching)
      const first = yield* rawUdp(clientHost, 5000)
      const second = yield* rawUdp(clientHost, 5001)
      const cached = yield* served("udp", "request", "binding", "cached")
      yield* first.send(request(7), server.primary)
      yield* second.send(request(7), server.primary)
      yield* first.send(request(7, [StunAttribute.software("other")]), server.primary)
      // Same size as the one before, other bytes: not a retransmission either.
      yield* first.send(request(7, [StunAttribute.software("thing")]), server.primary)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(yield* served("udp", "request", "binding", "cached"), cached)
      const mapped = (a: Arrival) => StunMessage.find(decoded(a.data), "XorMappedAddress")?.address
      assert.deepStrictEqual(first.received.map(mapped), [v4(clientIp, 5000), v4(clientIp, 5000), v4(clientIp, 5000)])
      assert.deepStrictEqual(second.received.map(mapped), [v4(clientIp, 5001)])
      assert.strictEqual(server.cachedResponses(), 2)
    }))

  it.scoped("the cache stays bounded under a flood of distinct requests, evicting the oldest", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, { ...caching, maxCacheEntries: 100 })
      const client = yield* rawUdp(clientHost, 5000)
      for (let n = 0; n < 1000; n++) yield* client.send(request(n), server.primary)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(client.received.length, 1000)
      assert.strictEqual(server.cachedResponses(), 100)
      const cached = yield* served("udp", "request", "binding", "cached")
      const successes = yield* served("udp", "request", "binding", "success")
      yield* client.send(request(999), server.primary) // among the newest 100: cached
      yield* client.send(request(0), server.primary) // evicted long ago: recomputed
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(yield* served("udp", "request", "binding", "cached"), cached + 1)
      assert.strictEqual(yield* served("udp", "request", "binding", "success"), successes + 1)
      assert.strictEqual(server.cachedResponses(), 100)
    }))

  it.scoped("420 lists exactly the unknown comprehension-required attributes, each once, in order", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const socket = yield* clientHost.network.bindUdp({ port: 5000 })
      const client = yield* StunTransaction.makeUdp(socket)
      const before = yield* served("udp", "request", "binding", "unknown-attribute")
      const fiber = yield* Effect.fork(Effect.flip(client.request(server.primary, {
        method: Binding,
        attributes: [
          StunAttribute.unknown(0x0041, new Uint8Array([1, 2, 3, 4])),
          StunAttribute.unknown(0x8fff, new Uint8Array([5])), // comprehension-optional: ignored
          StunAttribute.software("client"), // known
          StunAttribute.unknown(0x7abc, new Uint8Array(0)),
          StunAttribute.unknown(0x0041, new Uint8Array(0)), // a repeat
          StunAttribute.changeRequest({ changeIp: false, changePort: false }) // known to an RFC 5780 server
        ]
      })))
      yield* TestClock.adjust("20 millis")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "StunErrorResponse")
      if (error._tag !== "StunErrorResponse") return
      assert.strictEqual(error.code, 420)
      assert.strictEqual(error.reason, "Unknown Attribute")
      assert.deepStrictEqual(tags(error.response), ["ErrorCode", "UnknownAttributes", "Software", "Fingerprint"])
      assert.deepStrictEqual(StunMessage.find(error.response, "UnknownAttributes")?.types, [0x0041, 0x7abc])
      assert.isTrue(StunIntegrity.verifyFingerprint(error.response))
      assert.strictEqual(yield* served("udp", "request", "binding", "unknown-attribute"), before + 1)
    }))

  it.scoped("400 for malformed attributes, another method, RESPONSE-PORT 0 and RESPONSE-PORT with PADDING", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const client = yield* rawUdp(clientHost, 5000)
      const side = yield* rawUdp(clientHost, 6000)

      // CHANGE-REQUEST (0x0003) with a 2-byte value: the decoder refuses its length.
      const shortChange = new Uint8Array([0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, ...tid(1), 0, 3, 0, 2, 0, 0, 0, 0])
      // SOFTWARE announcing 100 bytes in an 8-byte body: truncated.
      const truncated = new Uint8Array([
        0,
        1,
        0,
        8,
        0x21,
        0x12,
        0xa4,
        0x42,
        ...tid(2),
        0x80,
        0x22,
        0,
        100,
        0x41,
        0,
        0,
        0
      ])
      // An attribute after FINGERPRINT.
      const withFingerprint = request(3)
      const afterFingerprint = new Uint8Array(withFingerprint.length + 8)
      afterFingerprint.set(withFingerprint)
      afterFingerprint.set([0x80, 0x22, 0, 4, 0x41, 0x41, 0x41, 0x41], withFingerprint.length)
      afterFingerprint[3] = afterFingerprint.length - 20
      const cases: ReadonlyArray<readonly [Uint8Array, number]> = [
        [shortChange, Binding],
        [truncated, Binding],
        [afterFingerprint, Binding],
        [request(4, [], { fingerprint: true }, StunMessage.StunMethod.Allocate), StunMessage.StunMethod.Allocate],
        [request(5, [StunAttribute.responsePort(0)]), Binding],
        [request(6, [StunAttribute.responsePort(6000), StunAttribute.padding(100)]), Binding]
      ]
      for (const [bytes] of cases) yield* client.send(bytes, server.primary)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(client.received.length, cases.length)
      assert.strictEqual(side.received.length, 0) // the 400 goes to the source port, not RESPONSE-PORT
      client.received.forEach((arrival, i) => {
        const message = decoded(arrival.data)
        assert.strictEqual(message.class, ErrorResponse, `case ${i}`)
        assert.strictEqual(errorCode(message), 400, `case ${i}`)
        assert.strictEqual(message.method, cases[i]![1], `case ${i}`)
        assert.deepStrictEqual(message.transactionId, tid(i + 1), `case ${i}`)
        assert.isTrue(StunIntegrity.verifyFingerprint(message), `case ${i}`)
        assert.deepStrictEqual(arrival.from, v4(a1, 3478), `case ${i}`)
      })
    }))

  it.scoped("drops silently what is not a STUN request: garbage, bad headers, indications, responses, bad FINGERPRINT", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost, world } = yield* setup
      const server = yield* start(serverHost, { ...rfc5780, rfc3489: false })
      const client = yield* rawUdp(clientHost, 5000)
      const notStun = yield* served("udp", "none", "none", "not-stun")
      const ignoredIndication = yield* served("udp", "indication", "binding", "ignored")
      const ignoredResponse = yield* served("udp", "response", "binding", "ignored")
      const badFingerprint = yield* served("udp", "request", "binding", "bad-fingerprint")

      const badLength = request(2)
      badLength[3] = badLength[3]! + 4
      const badFingerprintBytes = request(3)
      badFingerprintBytes[badFingerprintBytes.length - 1]! ^= 1
      const datagrams = [
        new Uint8Array([1, 2, 3]), // too short
        new Uint8Array(40).fill(0xff), // first byte above 0x3f
        badLength, // length field does not match the size
        legacyRequest(), // no magic cookie, and rfc3489 is off
        request(4, [], {}, Binding, Indication),
        request(5, [StunAttribute.xorMappedAddress(v4(clientIp, 1))], {}, Binding, SuccessResponse),
        badFingerprintBytes
      ]
      for (const bytes of datagrams) yield* client.send(bytes, server.primary)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(client.received.length, 0)
      assert.deepStrictEqual(yield* sentByServer(world), [])
      assert.strictEqual(yield* served("udp", "none", "none", "not-stun"), notStun + 4)
      assert.strictEqual(yield* served("udp", "indication", "binding", "ignored"), ignoredIndication + 1)
      assert.strictEqual(yield* served("udp", "response", "binding", "ignored"), ignoredResponse + 1)
      assert.strictEqual(yield* served("udp", "request", "binding", "bad-fingerprint"), badFingerprint + 1)
    }))

  it.scoped("answers an RFC 3489 Binding request with its cookie copied back and MAPPED-ADDRESS (RFC 8489 §12)", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const client = yield* rawUdp(clientHost, 5000)
      const plainRequest = legacyRequest()
      // RESPONSE-ADDRESS (0x0002) is not obeyed: it is unknown, so 420.
      const responseAddress = legacyRequest(new Uint8Array([0, 2, 0, 8, 0, 1, 0x13, 0x88, 203, 0, 113, 9]))
      yield* client.send(plainRequest, server.primary)
      yield* client.send(responseAddress, server.primary)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(client.received.length, 2)
      const [ok, refused] = client.received
      assert.deepStrictEqual(ok!.data.subarray(0, 2), new Uint8Array([0x01, 0x01]))
      assert.deepStrictEqual(ok!.data.subarray(4, 20), plainRequest.subarray(4, 20))
      const message = decodedLegacy(ok!.data)
      assert.deepStrictEqual(tags(message), ["MappedAddress", "SourceAddress", "ChangedAddress", "Software"])
      assert.deepStrictEqual(StunMessage.find(message, "MappedAddress")?.address, v4(clientIp, 5000))
      assert.deepStrictEqual(StunMessage.find(message, "SourceAddress")?.address, v4(a1, 3478))
      assert.deepStrictEqual(StunMessage.find(message, "ChangedAddress")?.address, v4(a2, 3479))
      assert.deepStrictEqual(refused!.data.subarray(4, 20), responseAddress.subarray(4, 20))
      const error = decodedLegacy(refused!.data)
      assert.strictEqual(error.class, ErrorResponse)
      assert.strictEqual(errorCode(error), 420)
      assert.deepStrictEqual(StunMessage.find(error, "UnknownAttributes")?.types, [0x0002])
    }))
})

describe("StunServer RFC 5780", () => {
  const cases: ReadonlyArray<{
    readonly to: SocketAddress
    readonly changeIp: boolean
    readonly changePort: boolean
    readonly from: SocketAddress
    readonly other: SocketAddress
  }> = [
    { to: v4(a1, 3478), changeIp: false, changePort: false, from: v4(a1, 3478), other: v4(a2, 3479) },
    { to: v4(a1, 3478), changeIp: true, changePort: false, from: v4(a2, 3478), other: v4(a2, 3479) },
    { to: v4(a1, 3478), changeIp: false, changePort: true, from: v4(a1, 3479), other: v4(a2, 3479) },
    { to: v4(a1, 3478), changeIp: true, changePort: true, from: v4(a2, 3479), other: v4(a2, 3479) },
    { to: v4(a2, 3479), changeIp: false, changePort: false, from: v4(a2, 3479), other: v4(a1, 3478) },
    { to: v4(a2, 3479), changeIp: true, changePort: false, from: v4(a1, 3479), other: v4(a1, 3478) },
    { to: v4(a2, 3479), changeIp: false, changePort: true, from: v4(a2, 3478), other: v4(a1, 3478) },
    { to: v4(a2, 3479), changeIp: true, changePort: true, from: v4(a1, 3478), other: v4(a1, 3478) },
    { to: v4(a1, 3479), changeIp: true, changePort: false, from: v4(a2, 3479), other: v4(a2, 3478) },
    { to: v4(a2, 3478), changeIp: false, changePort: true, from: v4(a2, 3479), other: v4(a1, 3479) }
  ]

  it.scoped("CHANGE-REQUEST answers from exactly the other IP and/or port, with RESPONSE-ORIGIN and OTHER-ADDRESS", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      yield* start(serverHost, rfc5780)
      const socket = yield* clientHost.network.bindUdp({ port: 5000 })
      const client = yield* StunTransaction.makeUdp(socket)
      for (const c of cases) {
        const label = `${TransportAddress.format(c.to)} ip=${c.changeIp} port=${c.changePort}`
        const fiber = yield* Effect.fork(client.request(c.to, {
          method: Binding,
          attributes: [StunAttribute.changeRequest({ changeIp: c.changeIp, changePort: c.changePort })]
        }))
        yield* TestClock.adjust("20 millis")
        const response = yield* Fiber.join(fiber)
        assert.deepStrictEqual(response.from, c.from, label)
        assert.deepStrictEqual(StunMessage.find(response.message, "ResponseOrigin")?.address, c.from, label)
        assert.deepStrictEqual(StunMessage.find(response.message, "OtherAddress")?.address, c.other, label)
        assert.deepStrictEqual(StunMessage.find(response.message, "XorMappedAddress")?.address, v4(clientIp, 5000))
      }
    }))

  it.scoped("RESPONSE-PORT sends the answer to the same IP at that port, and never to any other host", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost, world } = yield* setup
      const victim = yield* world.addHost({ name: "victim", addresses: ["203.0.113.9"] })
      const atVictim = yield* rawUdp(victim, 6000)
      const server = yield* start(serverHost, rfc5780)
      const client = yield* rawUdp(clientHost, 5000)
      const side = yield* rawUdp(clientHost, 6000)
      yield* client.send(request(1, [StunAttribute.responsePort(6000)]), server.primary)
      yield* client.send(
        request(2, [
          StunAttribute.responsePort(6000),
          StunAttribute.changeRequest({ changeIp: true, changePort: true })
        ]),
        server.primary
      )
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(client.received.length, 0)
      assert.strictEqual(side.received.length, 2)
      const [plain, changed] = side.received
      assert.deepStrictEqual(plain!.from, v4(a1, 3478))
      assert.deepStrictEqual(changed!.from, v4(a2, 3479))
      for (const arrival of side.received) {
        const message = decoded(arrival.data)
        assert.strictEqual(message.class, SuccessResponse)
        // The mapped address is where the request came from, not where the answer went.
        assert.deepStrictEqual(StunMessage.find(message, "XorMappedAddress")?.address, v4(clientIp, 5000))
      }
      assert.strictEqual(atVictim.received.length, 0)
      for (const packet of yield* sentByServer(world)) assert.strictEqual(packet.to.ip, clientIp)
    }))

  it.scoped("PADDING makes the answer as long as the request and never longer; padded answers are not cached", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, caching)
      const client = yield* rawUdp(clientHost, 5000)
      // 20 header + 4 + 1476 PADDING + 8 FINGERPRINT: 1508 bytes, an MTU-sized request.
      const big = request(1, [StunAttribute.padding(1476)])
      const small = request(2, [StunAttribute.padding(0)])
      assert.strictEqual(big.length, 1508)
      assert.strictEqual(small.length, 32)
      yield* client.send(big, server.primary)
      yield* client.send(small, server.primary)
      yield* TestClock.adjust("20 millis")
      const [bigAnswer, smallAnswer] = client.received.map((a) => a.data)
      // The unpadded answer is 20 + 4 × 12 (four addresses) + 16 (SOFTWARE) + 8 (FINGERPRINT) = 92 bytes.
      assert.strictEqual(bigAnswer!.length, 1508)
      assert.strictEqual(StunMessage.find(decoded(bigAnswer!), "Padding")?.length, 1508 - 92 - 4)
      assert.isTrue(StunIntegrity.verifyFingerprint(decoded(bigAnswer!)))
      assert.strictEqual(smallAnswer!.length, 96)
      assert.strictEqual(StunMessage.find(decoded(smallAnswer!), "Padding")?.length, 0)
      assert.strictEqual(server.cachedResponses(), 0)

      // A retransmission of the padded request is recomputed, to the same bytes.
      const cached = yield* served("udp", "request", "binding", "cached")
      yield* client.send(big, server.primary)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(yield* served("udp", "request", "binding", "cached"), cached)
      assert.deepStrictEqual(client.received[2]!.data, bigAnswer)
    }))
})

describe("StunServer robustness", () => {
  const key = Either.getOrThrow(StunIntegrity.shortTermKey("secret"))
  const templates: ReadonlyArray<Uint8Array> = [
    request(1),
    request(2, [
      StunAttribute.software("fuzz"),
      StunAttribute.changeRequest({ changeIp: true, changePort: false }),
      StunAttribute.unknown(0x0041, new Uint8Array(3)),
      StunAttribute.padding(8)
    ]),
    request(3, [StunAttribute.responsePort(5000), StunAttribute.unknown(0x8123, new Uint8Array(5))]),
    request(4, [StunAttribute.username("user"), StunAttribute.priority(1)], { integrity: key, fingerprint: true }),
    legacyRequest(new Uint8Array([0, 3, 0, 4, 0, 0, 0, 6]))
  ]
  const arbitraryBytes = FastCheck.uint8Array({ minLength: 0, maxLength: 120 })
  const mutated = FastCheck.tuple(
    FastCheck.constantFrom(...templates),
    FastCheck.array(FastCheck.tuple(FastCheck.nat(), FastCheck.integer({ min: 0, max: 255 })), {
      minLength: 1,
      maxLength: 4
    }),
    FastCheck.option(FastCheck.nat())
  ).map(([template, edits, cut]) => {
    const bytes = template.slice(0, cut === null ? template.length : cut % (template.length + 1))
    for (const [at, value] of edits) if (bytes.length > 0) bytes[at % bytes.length] = value
    return bytes
  })
  // A valid header (so the server gets as far as the attributes) over random attribute bytes.
  const validHeader = FastCheck.tuple(
    FastCheck.constantFrom(0x0001, 0x0011, 0x0101, 0x0003, 0x0002),
    FastCheck.uint8Array({ minLength: 0, maxLength: 60 }).map((b) => b.subarray(0, b.length & ~3))
  ).map(([type, body]) => {
    const bytes = new Uint8Array(20 + body.length)
    bytes[0] = type >> 8
    bytes[1] = type & 0xff
    bytes[3] = body.length
    bytes.set([0x21, 0x12, 0xa4, 0x42, ...tid(9)], 4)
    bytes.set(body, 20)
    return bytes
  })
  const samples = [
    ...FastCheck.sample(arbitraryBytes, { numRuns: 300, seed: 1 }),
    ...FastCheck.sample(mutated, { numRuns: 600, seed: 2 }),
    ...FastCheck.sample(validHeader, { numRuns: 600, seed: 3 })
  ]

  it.scoped("arbitrary bytes and mutated requests never crash it, and it keeps answering valid requests", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost, world } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const fuzzer = yield* rawUdp(clientHost, 5000)
      const internal = yield* served("udp", "none", "none", "internal-error")
      for (const bytes of samples) yield* fuzzer.send(bytes, server.udp[0]!)
      yield* TestClock.adjust("1 second")

      assert.strictEqual(yield* served("udp", "none", "none", "internal-error"), internal)
      const sent = yield* sentByServer(world)
      assert.isAtMost(sent.length, samples.length)
      assert.isAbove(fuzzer.received.length, 100)
      for (const packet of sent) assert.strictEqual(packet.to.ip, clientIp)
      // What came back is a well-formed response (RFC 3489 ones carry the request's cookie).
      for (const arrival of fuzzer.received) {
        const isModern = arrival.data[4] === 0x21 && arrival.data[5] === 0x12 && arrival.data[6] === 0xa4 &&
          arrival.data[7] === 0x42
        const message = isModern ? decoded(arrival.data) : decodedLegacy(arrival.data)
        assert.include([SuccessResponse, ErrorResponse], message.class)
      }

      const socket = yield* clientHost.network.bindUdp({ port: 7000 })
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(client.request(server.primary, binding))
      yield* TestClock.adjust("20 millis")
      const response = yield* Fiber.join(fiber)
      assert.deepStrictEqual(StunMessage.find(response.message, "XorMappedAddress")?.address, v4(clientIp, 7000))
    }))
})

describe("StunServer over TCP", () => {
  it.scoped("answers on the connection, with the connection's source as the mapped address", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const before = yield* served("tcp", "request", "binding", "success")
      for (const [index, other] of [[0, v4(a2, 3479)], [3, v4(a1, 3478)]] as const) {
        const fiber = yield* Effect.fork(clientHost.network.connectTcp(server.tcp[index]!))
        yield* TestClock.adjust("20 millis")
        const connection = yield* Fiber.join(fiber)
        const client = yield* StunTransaction.makeTcp(connection)
        const request = yield* Effect.fork(client.request(server.tcp[index]!, binding))
        yield* TestClock.adjust("20 millis")
        const response = yield* Fiber.join(request)
        const message = response.message
        assert.deepStrictEqual(
          StunMessage.find(message, "XorMappedAddress")?.address,
          v4(clientIp, connection.local.port)
        )
        assert.deepStrictEqual(
          StunMessage.find(message, "ResponseOrigin")?.address,
          v4(server.tcp[index]!.ip, server.tcp[index]!.port)
        )
        assert.deepStrictEqual(StunMessage.find(message, "OtherAddress")?.address, other)
        assert.isTrue(StunIntegrity.verifyFingerprint(message))
      }
      assert.strictEqual(yield* served("tcp", "request", "binding", "success"), before + 2)
    }))

  it.scoped("requests split across chunks and several in one chunk are each answered, in order", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const { connection, frames } = yield* rawTcp(clientHost, server.tcp[0]!)
      const first = request(1)
      yield* connection.write(first.subarray(0, 3))
      yield* TestClock.adjust("5 millis")
      yield* connection.write(first.subarray(3, 25))
      yield* TestClock.adjust("5 millis")
      yield* connection.write(first.subarray(25))
      const both = new Uint8Array([...request(2), ...request(3, [StunAttribute.software("x")])])
      yield* connection.write(both)
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual(frames.map((f) => decoded(f).transactionId), [tid(1), tid(2), tid(3)])
      for (const frame of frames) assert.strictEqual(decoded(frame).class, SuccessResponse)
    }))

  it.scoped("CHANGE-REQUEST with a flag and RESPONSE-PORT are refused with 400 over TCP; no flags is fine", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const { connection, frames } = yield* rawTcp(clientHost, server.tcp[0]!)
      yield* connection.write(request(1, [StunAttribute.changeRequest({ changeIp: true, changePort: false })]))
      yield* connection.write(request(2, [StunAttribute.changeRequest({ changeIp: false, changePort: true })]))
      yield* connection.write(request(3, [StunAttribute.responsePort(5000)]))
      yield* connection.write(request(4, [StunAttribute.changeRequest({ changeIp: false, changePort: false })]))
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual(frames.map((f) => errorCode(decoded(f)) ?? "ok"), [400, 400, 400, "ok"])
    }))

  it.scoped("garbage closes that connection; the server keeps serving the others", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, rfc5780)
      const bad = yield* rawTcp(clientHost, server.tcp[0]!)
      const good = yield* rawTcp(clientHost, server.tcp[0]!)
      const framingErrors = yield* served("tcp", "none", "none", "framing-error")
      const closed = yield* Effect.fork(bad.connection.closed)
      yield* bad.connection.write(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]))
      yield* TestClock.adjust("20 millis")
      assert.isTrue(Option.isSome(yield* Fiber.poll(closed)))
      assert.strictEqual(yield* served("tcp", "none", "none", "framing-error"), framingErrors + 1)
      yield* good.connection.write(request(1))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(good.frames.length, 1)
      assert.deepStrictEqual(
        StunMessage.find(decoded(good.frames[0]!), "XorMappedAddress")?.address,
        v4(
          clientIp,
          good.connection.local.port
        )
      )
    }))
})

describe("StunServer TCP connection bounds", () => {
  it.scoped("an idle connection is closed exactly tcpIdleTimeout after its last activity, counted as idle-closed", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, { address: a1, port: 3478 })
      const idleBefore = yield* served("tcp", "none", "none", "idle-closed")
      // Connect at 0: the server accepts when the SYN arrives (10 ms, the internet's one-way latency).
      const silent = yield* rawTcp(clientHost, server.tcp[0]!)
      const busy = yield* rawTcp(clientHost, server.tcp[0]!)
      const silentClosed = yield* Effect.fork(silent.connection.closed)
      const busyClosed = yield* Effect.fork(busy.connection.closed)
      // `busy` sends a request at 10 s (+ 20 ms of set-up); it reaches the server at 10.030 s.
      yield* TestClock.adjust("9980 millis")
      yield* busy.connection.write(request(1))
      // The silent one: closed by the server at 30.010 s, seen by the client at 30.020 s.
      yield* TestClock.adjust("19999 millis") // 30.019 s
      assert.isTrue(Option.isNone(yield* Fiber.poll(silentClosed)))
      yield* TestClock.adjust("1 millis") // 30.020 s
      assert.isTrue(Option.isSome(yield* Fiber.poll(silentClosed)))
      assert.isTrue(Option.isNone(yield* Fiber.poll(busyClosed)))
      assert.strictEqual(busy.frames.length, 1)
      // The busy one: last activity at 10.030 s, closed at 40.030 s, seen at 40.040 s.
      yield* TestClock.adjust("10019 millis") // 40.039 s
      assert.isTrue(Option.isNone(yield* Fiber.poll(busyClosed)))
      yield* TestClock.adjust("1 millis")
      assert.isTrue(Option.isSome(yield* Fiber.poll(busyClosed)))
      assert.strictEqual(yield* served("tcp", "none", "none", "idle-closed"), idleBefore + 2)
    }))

  it.scoped("beyond maxTcpConnections a connection is closed at once; a slot freed is reused", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const server = yield* start(serverHost, { address: a1, port: 3478, maxTcpConnections: 2 })
      const limited = yield* served("tcp", "none", "none", "connection-limit")
      const first = yield* rawTcp(clientHost, server.tcp[0]!)
      const second = yield* rawTcp(clientHost, server.tcp[0]!)
      const third = yield* rawTcp(clientHost, server.tcp[0]!)
      const thirdClosed = yield* Effect.fork(third.connection.closed)
      yield* TestClock.adjust("20 millis")
      assert.isTrue(Option.isSome(yield* Fiber.poll(thirdClosed)))
      assert.strictEqual(yield* served("tcp", "none", "none", "connection-limit"), limited + 1)
      yield* second.connection.close
      yield* TestClock.adjust("20 millis")
      const fourth = yield* rawTcp(clientHost, server.tcp[0]!)
      yield* fourth.connection.write(request(2))
      yield* first.connection.write(request(3))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(fourth.frames.length, 1)
      assert.strictEqual(first.frames.length, 1)
      assert.strictEqual(yield* served("tcp", "none", "none", "connection-limit"), limited + 1)
    }))
})

describe("StunServer configuration", () => {
  it.scoped("layerConfig reads STUN_* settings from the ConfigProvider", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const provider = ConfigProvider.fromMap(
        new Map([["STUN_ADDRESS", a1], ["STUN_PORT", "3480"], ["STUN_TCP", "false"], ["STUN_SOFTWARE", "cfg"]])
      )
      // Built in the test's scope, so the server outlives this statement.
      const context = yield* Layer.build(StunServer.layerConfig).pipe(
        Effect.provideService(Network.Network, serverHost.network),
        Effect.withConfigProvider(provider)
      )
      const server = Context.get(context, StunServer.StunServer)
      assert.deepStrictEqual(server.udp.map((u) => u.port), [3480])
      assert.deepStrictEqual(server.tcp, [])
      const client = yield* rawUdp(clientHost)
      yield* client.send(request(7), server.udp[0]!)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(client.received.length, 1)
      assert.strictEqual(StunMessage.find(decoded(client.received[0]!.data), "Software")?.value, "cfg")
      const bad = yield* Effect.flip(
        StunServer.config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["STUN_PORT", "70000"]]))))
      )
      assert.strictEqual(bad._op, "InvalidData")
    }))
})

describe("StunServer set-up", () => {
  it.scoped("with port 0 it finds ports free on both IPs, closing and retrying when one is taken", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      // The first pair the server would try is (49152, 49153): A2:49152 is taken.
      yield* serverHost.network.bindUdp({ address: a2, port: 49152 })
      const server = yield* start(serverHost, { address: a1, alternateAddress: a2, port: 0 })
      assert.deepStrictEqual(server.udp.map(TransportAddress.key), [
        "udp/192.0.2.1:49153",
        "udp/192.0.2.1:49154",
        "udp/192.0.2.2:49153",
        "udp/192.0.2.2:49154"
      ])
      assert.deepStrictEqual(server.tcp.map(TransportAddress.key), [
        "tcp/192.0.2.1:49153",
        "tcp/192.0.2.1:49154",
        "tcp/192.0.2.2:49153",
        "tcp/192.0.2.2:49154"
      ])
      // The sockets of the failed attempt were closed: A1:49152 is free again.
      yield* serverHost.network.bindUdp({ address: a1, port: 49152 })
      const socket = yield* clientHost.network.bindUdp({ port: 5000 })
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(client.request(server.udp[3]!, binding))
      yield* TestClock.adjust("20 millis")
      const response = yield* Fiber.join(fiber)
      assert.deepStrictEqual(StunMessage.find(response.message, "OtherAddress")?.address, v4(a1, 49153))
    }))

  it.scoped("fixed ports that are taken fail with AddressInUse; bad options with InvalidAddress", () =>
    Effect.gen(function*() {
      const { serverHost } = yield* setup
      yield* serverHost.network.bindUdp({ address: a2, port: 3479 })
      const taken = yield* Effect.flip(start(serverHost, rfc5780))
      assert.strictEqual(taken.reason, "AddressInUse")
      // Nothing of the failed attempt stays bound.
      yield* serverHost.network.bindUdp({ address: a1, port: 3478 })
      for (
        const options of [
          { address: "not an ip" },
          { address: a1, alternateAddress: a1 },
          { address: "0.0.0.0", alternateAddress: a2 },
          { address: a1, alternateAddress: "2001:db8::1" },
          { address: a1, alternatePort: 4000 },
          { address: a1, alternateAddress: a2, port: 3478, alternatePort: 3478 }
        ] satisfies ReadonlyArray<StunServer.Options>
      ) {
        const error = yield* Effect.flip(start(serverHost, options))
        assert.strictEqual(error.reason, "InvalidAddress", JSON.stringify(options))
      }
    }))

  it.scoped("layer provides the server as a service, closed with its scope", () =>
    Effect.gen(function*() {
      const { clientHost, serverHost } = yield* setup
      const primary = yield* Effect.scoped(
        Effect.gen(function*() {
          const server = yield* StunServer.StunServer
          return server.primary
        }).pipe(
          Effect.provide(
            StunServer.layer({ address: a1, tcp: false }).pipe(
              Layer.provide(VirtualNetwork.layer(serverHost))
            )
          )
        )
      )
      assert.strictEqual(TransportAddress.key(primary), "udp/192.0.2.1:3478")
      // The layer's scope has closed: the port is free, and nobody answers there.
      const client = yield* rawUdp(clientHost, 5000)
      yield* client.send(request(1), primary)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(client.received.length, 0)
      yield* serverHost.network.bindUdp({ address: a1, port: 3478 })
    }))
})

describe("StunServer on NodeNetwork", () => {
  it.scopedLive("answers Binding on 127.0.0.1 over UDP and TCP, on ports the OS chose", () =>
    Effect.gen(function*() {
      const network = yield* Network.Network
      const server = yield* StunServer.make({ address: "127.0.0.1", port: 0 })
      assert.notStrictEqual(server.primary.port, 0)
      assert.strictEqual(server.tcp[0]!.port, server.primary.port)

      const socket = yield* network.bindUdp({ address: "127.0.0.1" })
      const udpClient = yield* StunTransaction.makeUdp(socket)
      const udpResponse = yield* udpClient.request(server.primary, binding).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(
        StunMessage.find(udpResponse.message, "XorMappedAddress")?.address,
        v4("127.0.0.1", socket.local.port)
      )
      assert.deepStrictEqual(
        StunMessage.find(udpResponse.message, "ResponseOrigin")?.address,
        v4("127.0.0.1", server.primary.port)
      )

      const connection = yield* network.connectTcp(server.tcp[0]!).pipe(Effect.timeout("5 seconds"))
      const tcpClient = yield* StunTransaction.makeTcp(connection)
      const tcpResponse = yield* tcpClient.request(server.tcp[0]!, binding).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(
        StunMessage.find(tcpResponse.message, "XorMappedAddress")?.address,
        v4("127.0.0.1", connection.local.port)
      )
    }).pipe(Effect.provide(NodeNetwork.layer)))
})
