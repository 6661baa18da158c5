import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Either, Exit, Fiber, Metric, Option, TestClock } from "effect"
import * as Metrics from "../src/Metrics.js"
import type { DatagramHandler, DatagramSocket, StreamSocket } from "../src/Network.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunIntegrity from "../src/StunIntegrity.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"

const server: SocketAddress = { family: "IPv4", ip: "192.0.2.10", port: 3478 }
const mapped: SocketAddress = { family: "IPv4", ip: "198.51.100.7", port: 40000 }

interface Sent {
  readonly at: number
  readonly message: StunMessage.DecodedStunMessage
  readonly to: SocketAddress
}

/**
 * A UDP socket whose other end is a script: every send is recorded with its virtual time and handed to `respond`,
 * which may answer with bytes delivered at once to the client's handler.
 */
const scriptedSocket = (
  respond: (request: StunMessage.DecodedStunMessage, count: number) => Uint8Array | undefined
) => {
  const sent: Array<Sent> = []
  let handler: DatagramHandler | undefined
  const deliver = (data: Uint8Array, from: SocketAddress = server): Effect.Effect<void> => {
    const result = handler?.(data, from)
    return result === undefined ? Effect.void : result
  }
  const socket: DatagramSocket = {
    local: { family: "IPv4", ip: "10.0.0.2", port: 5000, transport: "udp" },
    send: (data, to) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        const message = Either.getOrThrow(StunMessage.decode(data))
        sent.push({ at, message, to })
        const answer = respond(message, sent.length)
        return answer === undefined ? Effect.void : deliver(answer)
      }),
    unsafeSend: () => {},
    setHandler: (h) => Effect.sync(() => void (handler = h)),
    sendFailures: () => 0
  }
  return { socket, sent, deliver }
}

const successFor = (
  request: StunMessage.StunMessage,
  options: StunMessage.EncodeOptions = { fingerprint: true },
  attributes: ReadonlyArray<StunAttribute.StunAttribute> = [StunAttribute.xorMappedAddress(mapped)]
) =>
  StunMessage.unsafeEncode(
    StunMessage.make(StunMessage.StunClass.SuccessResponse, request.method, request.transactionId, attributes),
    options
  )

const errorFor = (
  request: StunMessage.StunMessage,
  code: number,
  reason: string,
  attributes: ReadonlyArray<StunAttribute.StunAttribute> = [],
  options: StunMessage.EncodeOptions = { fingerprint: true }
) =>
  StunMessage.unsafeEncode(
    StunMessage.make(StunMessage.StunClass.ErrorResponse, request.method, request.transactionId, [
      StunAttribute.errorCode(code, reason),
      ...attributes
    ]),
    options
  )

const binding: StunTransaction.RequestSpec = { method: StunMessage.StunMethod.Binding }

/** Adjusts the clock to `ms` (absolute virtual time) and tells whether the fiber has finished. */
const at = <A, E>(fiber: Fiber.RuntimeFiber<A, E>, ms: number) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    yield* TestClock.adjust(Duration.millis(ms - now))
    return Option.isSome(yield* Fiber.poll(fiber))
  })

describe("StunTransaction over UDP", () => {
  it.effect("with no answer, sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s and fails at exactly 39.5 s", () =>
    Effect.gen(function*() {
      const { sent, socket } = scriptedSocket(() => undefined)
      const client = yield* StunTransaction.makeUdp(socket)
      const before = yield* Metric.value(Metrics.stunTimeouts)
      const fiber = yield* Effect.fork(client.request(server, binding))
      assert.isFalse(yield* at(fiber, 39_499))
      assert.deepStrictEqual(sent.map((s) => s.at), [0, 500, 1500, 3500, 7500, 15500, 31500])
      assert.isTrue(yield* at(fiber, 39_500))
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      const error = Either.getOrThrow(Either.flip(yield* Effect.either(Fiber.join(fiber))))
      assert.strictEqual(error._tag, "StunTimeout")
      if (error._tag === "StunTimeout") {
        assert.strictEqual(error.attempts, 7)
        assert.strictEqual(Duration.toMillis(error.elapsed), 39_500)
        assert.strictEqual(error.remote, "192.0.2.10:3478")
        assert.strictEqual(error.transactionId, StunMessage.transactionIdHex(sent[0]!.message.transactionId))
      }
      // Every retransmission is the same request: same transaction id, same bytes.
      for (const s of sent) assert.deepStrictEqual(s.message.raw, sent[0]!.message.raw)
      assert.strictEqual(client.pending(), 0)
      assert.strictEqual((yield* Metric.value(Metrics.stunTimeouts)).count, before.count + 1)
    }))

  it.effect("an answer after the third send stops retransmission", () =>
    Effect.gen(function*() {
      const { sent, socket } = scriptedSocket((request, count) => (count === 3 ? successFor(request) : undefined))
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(client.request(server, binding))
      assert.isTrue(yield* at(fiber, 1500))
      const response = yield* Fiber.join(fiber)
      assert.strictEqual(response.attempts, 3)
      assert.strictEqual(Duration.toMillis(response.elapsed), 1500)
      assert.deepStrictEqual(StunMessage.find(response.message, "XorMappedAddress")?.address, mapped)
      yield* TestClock.adjust("60 seconds")
      assert.deepStrictEqual(sent.map((s) => s.at), [0, 500, 1500])
    }))

  it.effect("inside an uninterruptible region (a finalizer) the answer still ends the transaction at once", () =>
    Effect.gen(function*() {
      const { sent, socket } = scriptedSocket((request, count) => (count === 3 ? successFor(request) : undefined))
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(Effect.uninterruptible(client.request(server, binding)))
      assert.isTrue(yield* at(fiber, 1500))
      assert.strictEqual((yield* Fiber.join(fiber)).attempts, 3)
      yield* TestClock.adjust("60 seconds")
      assert.deepStrictEqual(sent.map((s) => s.at), [0, 500, 1500])
    }))

  it.effect("a custom RTO scales every instant", () =>
    Effect.gen(function*() {
      const { sent, socket } = scriptedSocket(() => undefined)
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(
        client.request(server, binding).pipe(Effect.provideService(StunTransaction.Rto, Duration.millis(100)))
      )
      assert.isFalse(yield* at(fiber, 7899))
      assert.deepStrictEqual(sent.map((s) => s.at), [0, 100, 300, 700, 1500, 3100, 6300])
      assert.isTrue(yield* at(fiber, 7900))
    }))

  it.effect("Rc and Rm are tunable too", () =>
    Effect.gen(function*() {
      const { sent, socket } = scriptedSocket(() => undefined)
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(
        client.request(server, binding).pipe(
          Effect.provideService(StunTransaction.Rc, 3),
          Effect.provideService(StunTransaction.Rm, 4)
        )
      )
      assert.isFalse(yield* at(fiber, 3499))
      assert.deepStrictEqual(sent.map((s) => s.at), [0, 500, 1500])
      assert.isTrue(yield* at(fiber, 3500))
    }))

  it.effect("a response with a bad FINGERPRINT is ignored, and the transaction still times out", () =>
    Effect.gen(function*() {
      const { sent, socket } = scriptedSocket((request) => {
        const bytes = successFor(request)
        bytes[bytes.length - 1]! ^= 0xff
        return bytes
      })
      const client = yield* StunTransaction.makeUdp(socket)
      const dropped = yield* Metric.value(Metrics.stunResponsesDropped.pipe(Metric.tagged("reason", "fingerprint")))
      const fiber = yield* Effect.fork(client.request(server, binding))
      assert.isFalse(yield* at(fiber, 39_499))
      assert.isTrue(yield* at(fiber, 39_500))
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "StunTimeout")
      assert.strictEqual(sent.length, 7)
      const after = yield* Metric.value(Metrics.stunResponsesDropped.pipe(Metric.tagged("reason", "fingerprint")))
      assert.strictEqual(after.count, dropped.count + 7)
    }))

  it.effect("an error response fails with its code and reason", () =>
    Effect.gen(function*() {
      const { socket } = scriptedSocket((request) => errorFor(request, 420, "Unknown Attribute"))
      const client = yield* StunTransaction.makeUdp(socket)
      const error = yield* Effect.flip(client.request(server, binding))
      assert.strictEqual(error._tag, "StunErrorResponse")
      if (error._tag === "StunErrorResponse") {
        assert.strictEqual(error.code, 420)
        assert.strictEqual(error.reason, "Unknown Attribute")
        assert.strictEqual(error.method, StunMessage.StunMethod.Binding)
      }
    }))

  it.effect("a response that matches no transaction is dropped and counted", () =>
    Effect.gen(function*() {
      const { deliver, socket } = scriptedSocket(() => undefined)
      yield* StunTransaction.makeUdp(socket)
      const before = yield* Metric.value(Metrics.stunResponsesDropped.pipe(Metric.tagged("reason", "unmatched")))
      yield* deliver(successFor(StunMessage.make(0, 1, new Uint8Array(12).fill(9))))
      const after = yield* Metric.value(Metrics.stunResponsesDropped.pipe(Metric.tagged("reason", "unmatched")))
      assert.strictEqual(after.count, before.count + 1)
    }))

  it.effect("requests, indications and non-STUN packets go to their handlers", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const { deliver, socket } = scriptedSocket(() => undefined)
      yield* StunTransaction.makeUdp(socket, {
        onRequest: (m, from) => void seen.push(`request ${m.method} from ${from.port}`),
        onIndication: (m) => Effect.sync(() => seen.push(`indication ${m.method}`)),
        onOther: (data) => void seen.push(`other ${data[0]}`)
      })
      yield* deliver(StunMessage.unsafeEncode(StunMessage.make(0, 1, new Uint8Array(12))))
      yield* deliver(StunMessage.unsafeEncode(StunMessage.make(1, 7, new Uint8Array(12))))
      yield* deliver(new Uint8Array([0x40, 0x00, 0x00, 0x00]))
      yield* deliver(new Uint8Array([0x02, 0x00])) // looks like STUN, does not decode: dropped
      assert.deepStrictEqual(seen, ["request 1 from 3478", "indication 7", "other 64"])
    }))

  it.effect("an indication is sent once and never retransmitted", () =>
    Effect.gen(function*() {
      const { sent, socket } = scriptedSocket(() => undefined)
      const client = yield* StunTransaction.makeUdp(socket)
      yield* client.indication(server, { method: StunMessage.StunMethod.Binding })
      yield* TestClock.adjust("60 seconds")
      assert.strictEqual(sent.length, 1)
      assert.strictEqual(sent[0]!.message.class, StunMessage.StunClass.Indication)
      assert.isTrue(StunIntegrity.verifyFingerprint(sent[0]!.message))
    }))
})

describe("StunTransaction with credentials", () => {
  const password = "0123456789abcdefghijkl"
  const key = Either.getOrThrow(StunIntegrity.shortTermKey(password))

  it.effect("short-term: USERNAME and MESSAGE-INTEGRITY are sent; an unsigned success response is dropped", () =>
    Effect.gen(function*() {
      const { sent, socket } = scriptedSocket((request) => successFor(request))
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(
        client.request(server, binding, { credentials: StunTransaction.shortTerm("rem:loc", key) })
      )
      assert.isTrue(yield* at(fiber, 39_500))
      assert.strictEqual((yield* Effect.flip(Fiber.join(fiber)))._tag, "StunTimeout")
      assert.strictEqual(StunMessage.find(sent[0]!.message, "Username")?.value, "rem:loc")
      assert.isTrue(StunIntegrity.verifyIntegritySha1(sent[0]!.message, key))
    }))

  it.effect("short-term: a response signed with the key is accepted, one signed with another key is not", () =>
    Effect.gen(function*() {
      const wrong = Either.getOrThrow(StunIntegrity.shortTermKey("another password!"))
      const { sent, socket } = scriptedSocket((request, count) =>
        successFor(request, { integrity: count === 1 ? wrong : key, fingerprint: true })
      )
      const client = yield* StunTransaction.makeUdp(socket)
      const fiber = yield* Effect.fork(
        client.request(server, binding, { credentials: StunTransaction.shortTerm("rem:loc", key) })
      )
      assert.isTrue(yield* at(fiber, 500))
      const response = yield* Fiber.join(fiber)
      assert.strictEqual(response.attempts, 2)
      assert.strictEqual(sent.length, 2)
    }))

  const realm = "example.org"
  const user = "alice"
  const secret = "wonderland"

  /** A long-term-credential server: 401 to requests without credentials, checks the MI of the others. */
  const longTermServer = (options: {
    readonly nonces: ReadonlyArray<string>
    readonly algorithms?: ReadonlyArray<number>
  }) => {
    let nonceIndex = 0
    const log: Array<string> = []
    const respond = (request: StunMessage.DecodedStunMessage) => {
      const nonce = StunMessage.find(request, "Nonce")?.value
      const extra = (n: string) => [
        StunAttribute.realm(realm),
        StunAttribute.nonce(n),
        ...(options.algorithms === undefined
          ? []
          : [StunAttribute.passwordAlgorithms(options.algorithms.map((algorithm) => ({
            algorithm,
            parameters: new Uint8Array(0)
          })))])
      ]
      if (nonce === undefined) {
        log.push("401 (no credentials)")
        return errorFor(request, 401, "Unauthorized", extra(options.nonces[nonceIndex]!))
      }
      if (nonce !== options.nonces[nonceIndex]) {
        log.push(`438 (stale ${nonce})`)
        return errorFor(request, 438, "Stale Nonce", extra(options.nonces[nonceIndex]!))
      }
      const algorithm = StunMessage.find(request, "PasswordAlgorithm")?.algorithm ?? 1
      const k = Either.getOrThrow(StunIntegrity.longTermKey(user, realm, secret, algorithm))
      if (!StunIntegrity.verifyIntegritySha1(request, k)) {
        log.push("401 (bad integrity)")
        return errorFor(request, 401, "Unauthorized", extra(options.nonces[nonceIndex]!))
      }
      log.push(`200 (algorithm ${algorithm})`)
      return successFor(request, { integrity: k, fingerprint: true })
    }
    return { log, respond, rotate: () => nonceIndex++ }
  }

  it.effect("long-term: 401 → retry with REALM, NONCE and MESSAGE-INTEGRITY → success; the session keeps them", () =>
    Effect.gen(function*() {
      const script = longTermServer({ nonces: ["n1"] })
      const { sent, socket } = scriptedSocket((r) => script.respond(r))
      const client = yield* StunTransaction.makeUdp(socket)
      const session = yield* StunTransaction.makeLongTermSession(user, secret)
      const response = yield* client.request(server, binding, { credentials: session })
      assert.deepStrictEqual(StunMessage.find(response.message, "XorMappedAddress")?.address, mapped)
      assert.deepStrictEqual(script.log, ["401 (no credentials)", "200 (algorithm 1)"])
      assert.notDeepEqual(sent[0]!.message.transactionId, sent[1]!.message.transactionId)
      assert.strictEqual(StunMessage.find(sent[1]!.message, "Username")?.value, user)
      assert.strictEqual(StunMessage.find(sent[1]!.message, "Realm")?.value, realm)
      // The next request goes straight with credentials.
      yield* client.request(server, binding, { credentials: session })
      assert.deepStrictEqual(script.log, ["401 (no credentials)", "200 (algorithm 1)", "200 (algorithm 1)"])
      assert.deepStrictEqual(yield* StunTransaction.sessionState(session), { realm, nonce: "n1", algorithm: 1 })
    }))

  it.effect("long-term: a 438 mid-session is retried once with the new nonce", () =>
    Effect.gen(function*() {
      const script = longTermServer({ nonces: ["n1", "n2"] })
      const { socket } = scriptedSocket((r) => script.respond(r))
      const client = yield* StunTransaction.makeUdp(socket)
      const session = yield* StunTransaction.makeLongTermSession(user, secret)
      yield* client.request(server, binding, { credentials: session })
      script.rotate()
      yield* client.request(server, binding, { credentials: session })
      assert.deepStrictEqual(script.log, [
        "401 (no credentials)",
        "200 (algorithm 1)",
        "438 (stale n1)",
        "200 (algorithm 1)"
      ])
      assert.strictEqual((yield* StunTransaction.sessionState(session)).nonce, "n2")
    }))

  it.effect("long-term: a wrong password fails with the second 401, after exactly one retry", () =>
    Effect.gen(function*() {
      const script = longTermServer({ nonces: ["n1"] })
      const { socket } = scriptedSocket((r) => script.respond(r))
      const client = yield* StunTransaction.makeUdp(socket)
      const session = yield* StunTransaction.makeLongTermSession(user, "not the password")
      const error = yield* Effect.flip(client.request(server, binding, { credentials: session }))
      assert.isTrue(error._tag === "StunErrorResponse" && error.code === 401)
      assert.deepStrictEqual(script.log, ["401 (no credentials)", "401 (bad integrity)"])
    }))

  it.effect("long-term: SHA-256 keys when the server offers them in PASSWORD-ALGORITHMS", () =>
    Effect.gen(function*() {
      const script = longTermServer({ nonces: ["obMatJos2AAAAn1"], algorithms: [2, 1] })
      const { sent, socket } = scriptedSocket((r) => script.respond(r))
      const client = yield* StunTransaction.makeUdp(socket)
      const session = yield* StunTransaction.makeLongTermSession(user, secret)
      yield* client.request(server, binding, { credentials: session })
      assert.deepStrictEqual(script.log, ["401 (no credentials)", "200 (algorithm 2)"])
      assert.strictEqual(StunMessage.find(sent[1]!.message, "PasswordAlgorithm")?.algorithm, 2)
      assert.deepStrictEqual(
        StunMessage.find(sent[1]!.message, "PasswordAlgorithms")?.algorithms.map((a) => a.algorithm),
        [2, 1]
      )
    }))
})

describe("StunTransaction over TCP", () => {
  it.scoped("a request is sent once and fails at exactly 39.5 s", () =>
    Effect.gen(function*() {
      const writes: Array<number> = []
      const socket: StreamSocket = {
        local: { family: "IPv4", ip: "10.0.0.2", port: 5000, transport: "tcp" },
        remote: { family: "IPv4", ip: "192.0.2.10", port: 3478, transport: "tcp" },
        write: () => Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void writes.push(t))),
        unsafeWrite: () => {},
        setHandler: () => Effect.void,
        closed: Effect.never,
        close: Effect.void
      }
      const client = yield* StunTransaction.makeTcp(socket)
      const fiber = yield* Effect.fork(client.request(server, binding))
      assert.isFalse(yield* at(fiber, 39_499))
      assert.isTrue(yield* at(fiber, 39_500))
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.isTrue(error._tag === "StunTimeout" && error.attempts === 1)
      assert.deepStrictEqual(writes, [0])
    }))

  it.scoped("responses split across TCP chunks complete the transaction", () =>
    Effect.gen(function*() {
      let handler: ((chunk: Uint8Array) => Effect.Effect<void> | void) | undefined
      const socket: StreamSocket = {
        local: { family: "IPv4", ip: "10.0.0.2", port: 5000, transport: "tcp" },
        remote: { family: "IPv4", ip: "192.0.2.10", port: 3478, transport: "tcp" },
        write: (data) =>
          Effect.sync(() => {
            const request = Either.getOrThrow(StunMessage.decode(data))
            const response = successFor(request)
            for (let i = 0; i < response.length; i += 5) handler?.(response.subarray(i, i + 5))
          }),
        unsafeWrite: () => {},
        setHandler: (h) => Effect.sync(() => void (handler = h)),
        closed: Effect.never,
        close: Effect.void
      }
      const client = yield* StunTransaction.makeTcp(socket)
      const response = yield* client.request(server, binding)
      assert.deepStrictEqual(StunMessage.find(response.message, "XorMappedAddress")?.address, mapped)
      assert.strictEqual(response.attempts, 1)
    }))
})
