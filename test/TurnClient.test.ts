/**
 * TurnClient on the virtual network under TestClock, against a scripted TURN server written here: a small fake that
 * authenticates with long-term credentials (401 realm/nonce, 438 on a stale nonce), answers Allocate, Refresh,
 * CreatePermission and ChannelBind, relays Send indications and ChannelData to peers and peers' datagrams back as
 * Data indications or ChannelData, and records the virtual instant every request arrives.
 *
 * The fake also listens on TCP (RFC 8656 §12.5 framing, with `StreamFraming`'s deframer).
 *
 * Timing: the client's and the peer's access links have 10 ms latency, the server's and the internet's 0 ms; so a
 * request sent at t arrives at t + 10 ms, and its answer is back at t + 20 ms.
 * The allocation is ready at 40 ms (Allocate at 0 → 401 at 20 → Allocate again at 20 → success at 40).
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Duration, Effect, Either, Exit, Fiber, Scope, Stream, Supervisor, TestClock } from "effect"
import * as StreamFraming from "../src/StreamFraming.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunIntegrity from "../src/StunIntegrity.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TurnAuth from "../src/TurnAuth.js"
import * as TurnChannelData from "../src/TurnChannelData.js"
import * as TurnClient from "../src/TurnClient.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const serverIp = "203.0.113.1"
const server: SocketAddress = { family: "IPv4", ip: serverIp, port: 3478 }
const relayedAddress: SocketAddress = { family: "IPv4", ip: serverIp, port: 50000 }
const realm = "example.org"
const { Allocate, ChannelBind, CreatePermission, Refresh } = StunMessage.StunMethod

interface Received {
  readonly at: number
  readonly method: number
  readonly message: StunMessage.DecodedStunMessage
  readonly from: SocketAddress
  /** The fake's port the request arrived on (3478, or 3479 for the alternate). */
  readonly port: number
}

/** What the script does with the n-th (1-based, per method, authenticated) request of a method. */
type Action =
  | "drop"
  | {
    readonly code: number
    readonly reason: string
    readonly attributes?: ReadonlyArray<StunAttribute.StunAttribute>
  }
  | undefined

/** How the fake answers the client: a datagram back to its address, or a write on its TCP connection. */
type Reply = (bytes: Uint8Array) => void

interface FakeOptions {
  readonly users?: Record<string, string>
  readonly secret?: string
  readonly lifetime?: number
  readonly script?: (method: number, count: number, port: number) => Action
  /** Answer ADDITIONAL-ADDRESS-FAMILY IPv6 with an IPv6 relayed address (otherwise ADDRESS-ERROR-CODE 440). */
  readonly ipv6Relay?: boolean
}

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const alternateServer = v4(serverIp, 3479)
const relayedV6: SocketAddress = { family: "IPv6", ip: "2001:db8::1", port: 50000 }
const token = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])

/** The scripted TURN server: one allocation at a time (enough for these tests). */
const fakeTurn = (host: VirtualNetwork.Host, options: FakeOptions = {}) =>
  Effect.gen(function*() {
    const socket = yield* host.network.bindUdp({ address: serverIp, port: 3478 })
    const alternate = yield* host.network.bindUdp({ address: serverIp, port: alternateServer.port })
    const relay = yield* host.network.bindUdp({ address: serverIp, port: 50000 })
    const received: Array<Received> = []
    const counts = new Map<number, number>()
    const state = {
      nonce: "nonce-1",
      client: undefined as SocketAddress | undefined,
      permissions: new Set<string>(),
      channels: new Map<number, SocketAddress>(),
      relayedSends: 0,
      relayedChannelData: 0,
      usernames: [] as Array<string>,
      framingErrors: 0,
      deliver: undefined as Reply | undefined,
      tcp: false
    }
    const passwordOf = (username: string): string | undefined => {
      if (options.secret !== undefined) return TurnAuth.restPassword(options.secret, username)
      return (options.users ?? { alice: "secret" })[username]
    }
    const answer = (
      request: StunMessage.DecodedStunMessage,
      to: Reply,
      attributes: ReadonlyArray<StunAttribute.StunAttribute>,
      key: StunIntegrity.IntegrityKey | undefined,
      error = false
    ) =>
      Effect.sync(() =>
        to(StunMessage.unsafeEncode(
          StunMessage.make(
            error ? StunMessage.StunClass.ErrorResponse : StunMessage.StunClass.SuccessResponse,
            request.method,
            request.transactionId,
            attributes
          ),
          { integrity: key, fingerprint: true }
        ))
      )
    const onRequest = (
      message: StunMessage.DecodedStunMessage,
      from: SocketAddress,
      reply: Reply,
      tcp: boolean,
      port: number
    ) =>
      Effect.gen(function*() {
        const at = yield* Clock.currentTimeMillis
        received.push({ at, method: message.method, message, from, port })
        const username = StunMessage.find(message, "Username")?.value
        const password = username === undefined ? undefined : passwordOf(username)
        if (message.integrityOffset < 0 || username === undefined || password === undefined) {
          return yield* answer(
            message,
            reply,
            [
              StunAttribute.errorCode(401, "Unauthorized"),
              StunAttribute.realm(realm),
              StunAttribute.nonce(state.nonce)
            ],
            undefined,
            true
          )
        }
        const key = Either.getOrThrow(StunIntegrity.longTermKey(username, realm, password))
        if (Either.isLeft(StunIntegrity.verify(message, key))) {
          return yield* answer(
            message,
            reply,
            [
              StunAttribute.errorCode(401, "Unauthorized"),
              StunAttribute.realm(realm),
              StunAttribute.nonce(state.nonce)
            ],
            undefined,
            true
          )
        }
        if (StunMessage.find(message, "Nonce")?.value !== state.nonce) {
          return yield* answer(
            message,
            reply,
            [
              StunAttribute.errorCode(438, "Stale Nonce"),
              StunAttribute.realm(realm),
              StunAttribute.nonce(state.nonce)
            ],
            undefined,
            true
          )
        }
        state.usernames.push(username)
        const count = (counts.get(message.method) ?? 0) + 1
        counts.set(message.method, count)
        const action = options.script?.(message.method, count, port)
        if (action === "drop") return
        if (action !== undefined) {
          return yield* answer(
            message,
            reply,
            [StunAttribute.errorCode(action.code, action.reason), ...(action.attributes ?? [])],
            key,
            true
          )
        }
        const lifetime = options.lifetime ?? 600
        switch (message.method) {
          case Allocate: {
            if (state.client !== undefined) {
              return yield* answer(message, reply, [StunAttribute.errorCode(437, "Allocation Mismatch")], key, true)
            }
            state.client = from
            state.deliver = reply
            state.tcp = tcp
            const extra: Array<StunAttribute.StunAttribute> = []
            if (StunMessage.find(message, "AdditionalAddressFamily") !== undefined) {
              extra.push(
                options.ipv6Relay === true
                  ? StunAttribute.xorRelayedAddress(relayedV6)
                  : StunAttribute.addressErrorCode("IPv6", 440, "Address Family not Supported")
              )
            }
            if (StunMessage.find(message, "EvenPort")?.reserveNext === true) {
              extra.push(StunAttribute.reservationToken(token))
            }
            return yield* answer(message, reply, [
              StunAttribute.xorRelayedAddress(relayedAddress),
              ...extra,
              StunAttribute.xorMappedAddress(from),
              StunAttribute.lifetime(lifetime)
            ], key)
          }
          case Refresh: {
            const requested = StunMessage.find(message, "Lifetime")?.seconds
            if (requested === 0) state.client = state.deliver = undefined
            return yield* answer(message, reply, [StunAttribute.lifetime(requested === 0 ? 0 : lifetime)], key)
          }
          case CreatePermission: {
            for (const attribute of message.attributes) {
              if (attribute._tag === "XorPeerAddress") state.permissions.add(attribute.address.ip)
            }
            return yield* answer(message, reply, [], key)
          }
          case ChannelBind: {
            const channel = StunMessage.find(message, "ChannelNumber")!.channel
            const peer = StunMessage.find(message, "XorPeerAddress")!.address
            state.channels.set(channel, v4(peer.ip, peer.port))
            state.permissions.add(peer.ip)
            return yield* answer(message, reply, [], key)
          }
        }
      })
    const onPacket = (data: Uint8Array, from: SocketAddress, reply: Reply, tcp: boolean, port = 3478) => {
      if (TurnChannelData.isChannelData(data)) {
        const decoded = Either.getOrThrow(TurnChannelData.decode(data))
        const peer = state.channels.get(decoded.channel)
        if (peer === undefined) return
        state.relayedChannelData++
        relay.unsafeSend(decoded.data.slice(), peer)
        return
      }
      const message = Either.getOrThrow(StunMessage.decode(data))
      if (message.class === StunMessage.StunClass.Indication) {
        const peer = StunMessage.find(message, "XorPeerAddress")!.address
        if (!state.permissions.has(peer.ip)) return
        state.relayedSends++
        relay.unsafeSend(StunMessage.find(message, "Data")!.value.slice(), v4(peer.ip, peer.port))
        return
      }
      return Effect.orDie(onRequest(message, from, reply, tcp, port))
    }
    yield* socket.setHandler((data, from) => onPacket(data, from, (bytes) => socket.unsafeSend(bytes, from), false))
    yield* alternate.setHandler((data, from) =>
      onPacket(data, from, (bytes) => alternate.unsafeSend(bytes, from), false, alternateServer.port)
    )
    // TURN over TCP (RFC 8656 §12.5): STUN and ChannelData framed on the stream, ChannelData padded to 4 bytes.
    yield* host.network.listenTcp({ address: serverIp, port: 3478 }, (connection) =>
      Effect.gen(function*() {
        const from = v4(connection.remote.ip, connection.remote.port)
        const deframer = StreamFraming.makeTurnStreamDeframer()
        const reply = (bytes: Uint8Array) => connection.unsafeWrite(bytes)
        yield* connection.setHandler((chunk) => {
          const effects: Array<Effect.Effect<void>> = []
          const pushed = deframer.push(chunk, (frame) => {
            const effect = onPacket(frame.slice(), from, reply, true)
            if (effect !== undefined) effects.push(effect)
          })
          if (Either.isLeft(pushed)) state.framingErrors++
          return Effect.forEach(effects, (e) => e, { discard: true })
        })
        yield* Effect.ignore(connection.closed)
      }))
    yield* relay.setHandler((data, from) => {
      const deliver = state.deliver
      if (deliver === undefined || !state.permissions.has(from.ip)) return
      for (const [channel, peer] of state.channels) {
        if (peer.ip === from.ip && peer.port === from.port) {
          deliver(TurnChannelData.encode(channel, data, { padded: state.tcp }))
          return
        }
      }
      deliver(
        StunMessage.unsafeEncode(
          StunMessage.make(StunMessage.StunClass.Indication, StunMessage.StunMethod.Data, new Uint8Array(12), [
            StunAttribute.xorPeerAddress(from),
            StunAttribute.data(data)
          ])
        )
      )
    })
    const arrivals = (method: number) => received.filter((r) => r.method === method).map((r) => r.at)
    return { received, state, arrivals }
  })

/** A world with the fake server, a client host and a peer host (latencies as in the module doc). */
const setup = (options: FakeOptions = {}) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make({ seed: "turn-client", latency: 0 })
    const turnHost = yield* world.addHost({ name: "turn", addresses: [serverIp], latency: 0 })
    const clientHost = yield* world.addHost({ name: "client", addresses: ["198.51.100.2"], latency: "10 millis" })
    const peerHost = yield* world.addHost({ name: "peer", addresses: ["192.0.2.50"], latency: "10 millis" })
    const fake = yield* fakeTurn(turnHost, options)
    const peerSocket = yield* peerHost.network.bindUdp({ address: "192.0.2.50", port: 7000 })
    const peerInbox: Array<string> = []
    yield* peerSocket.setHandler((data) => void peerInbox.push(new TextDecoder().decode(data)))
    return { world, clientHost, fake, peerSocket, peerInbox }
  })

const peer = v4("192.0.2.50", 7000)
const staticAuth: TurnClient.Auth = { mode: "static", username: "alice", password: "secret" }

/** Allocates in a scope of its own (so a test can close it), waiting the 40 ms the exchange takes. */
const allocateIn = (
  clientHost: VirtualNetwork.Host,
  options: Partial<TurnClient.AllocateOptions> = {},
  supervisor?: Supervisor.Supervisor<unknown>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    let effect = TurnClient.allocate({ server, auth: staticAuth, ...options }).pipe(
      Scope.extend(scope),
      Effect.provide(VirtualNetwork.layer(clientHost))
    )
    if (supervisor !== undefined) effect = Effect.supervised(effect, supervisor)
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust("100 millis")
    const allocation = yield* Fiber.join(fiber)
    return { allocation, scope }
  })

/** Moves the clock to the absolute virtual instant `ms`. */
const at = (ms: number) => Effect.flatMap(Clock.currentTimeMillis, (now) => TestClock.adjust(Duration.millis(ms - now)))

const text = (s: string) => new TextEncoder().encode(s)

describe("TurnClient", () => {
  it.scoped("allocates with the 401 round trip: relayed and mapped addresses, lifetime, REQUESTED-TRANSPORT", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup()
      const { allocation } = yield* allocateIn(clientHost, { family: "IPv4" })
      assert.deepStrictEqual(allocation.relayed, relayedAddress)
      assert.deepStrictEqual(allocation.mapped, v4("198.51.100.2", allocation.local.port))
      assert.strictEqual(yield* allocation.lifetime, 600)
      // Unauthenticated Allocate at 0 arrives at 10 ms; the retry after the 401 leaves at 20 and arrives at 30 ms.
      assert.deepStrictEqual(fake.arrivals(Allocate), [10, 30])
      const second = fake.received[1]!.message
      assert.strictEqual(StunMessage.find(second, "RequestedTransport")?.protocol, 17)
      assert.strictEqual(StunMessage.find(second, "RequestedAddressFamily")?.family, "IPv4")
      assert.strictEqual(StunMessage.find(second, "Username")?.value, "alice")
      assert.strictEqual(StunMessage.find(second, "Realm")?.value, realm)
    }))

  it.scoped("refresh leaves at exactly lifetime − 60 s and again after each answer", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup()
      const { allocation } = yield* allocateIn(clientHost)
      yield* at(1_200_000)
      // Ready at 40 ms; refresh sent at 540.040 s (arrives 540.050), answered at 540.060; next sent at 1080.060 s.
      assert.deepStrictEqual(fake.arrivals(Refresh), [540_050, 1_080_070])
      assert.strictEqual(yield* allocation.lifetime, 600)
    }))

  it.scoped("a short lifetime is refreshed at half-life", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup({ lifetime: 100 })
      yield* allocateIn(clientHost)
      yield* at(110_000)
      assert.deepStrictEqual(fake.arrivals(Refresh), [50_050, 100_070])
    }))

  it.scoped("permissions: several peers in one CreatePermission, refreshed every 240 s while used, none after drop", () =>
    Effect.gen(function*() {
      const { clientHost, fake, peerInbox } = yield* setup()
      const { allocation } = yield* allocateIn(clientHost)
      const other = v4("192.0.2.51", 9000)
      const fiber = yield* Effect.fork(allocation.permit([peer, other]))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(fiber)
      const first = fake.received.find((r) => r.method === CreatePermission)!.message
      assert.deepStrictEqual(
        first.attributes.filter((a) => a._tag === "XorPeerAddress").map((a) => a.address.ip),
        ["192.0.2.51", "192.0.2.50"].reverse()
      )
      // Sent at 100 ms (arrives 110), answered at 120; each IP's timer then sends every 240 s after its answer.
      yield* at(500_000)
      assert.deepStrictEqual(fake.arrivals(CreatePermission), [110, 240_130, 240_130, 480_150, 480_150])
      // Data flows through the permission (Send indication).
      yield* allocation.send(peer, text("hello"))
      yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(peerInbox, ["hello"])
      assert.strictEqual(fake.state.relayedSends, 1)
      yield* allocation.drop(peer)
      yield* allocation.drop(other)
      assert.deepStrictEqual(allocation.permissions(), [])
      yield* at(2_000_000)
      assert.deepStrictEqual(fake.arrivals(CreatePermission), [110, 240_130, 240_130, 480_150, 480_150])
    }))

  it.scoped("channels: ChannelBind 0x4000, refreshed before 600 s with its permission; data both ways", () =>
    Effect.gen(function*() {
      const { clientHost, fake, peerInbox, peerSocket } = yield* setup()
      const { allocation } = yield* allocateIn(clientHost)
      const inbound = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 2)))
      // Before the channel: a Send indication (which installs the permission first) and a Data indication back.
      const sent = yield* Effect.fork(allocation.send(peer, text("via send")))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(sent)
      yield* peerSocket.send(text("via data"), relayedAddress)
      yield* TestClock.adjust("100 millis")
      const bind = yield* Effect.fork(allocation.bindChannel(peer))
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(bind), 0x4000)
      assert.strictEqual(allocation.channelOf(peer), 0x4000)
      yield* allocation.send(peer, text("via channel"))
      yield* peerSocket.send(text("channel back"), relayedAddress)
      yield* TestClock.adjust("100 millis")
      const got = Chunk.toReadonlyArray(yield* Fiber.join(inbound)).map((
        d
      ) => [d.peer, new TextDecoder().decode(d.data)])
      assert.deepStrictEqual(got, [[peer, "via data"], [peer, "channel back"]])
      assert.deepStrictEqual(peerInbox, ["via send", "via channel"])
      assert.strictEqual(fake.state.relayedChannelData, 1)
      // CreatePermission (for the first send) at 100 ms (arrives 110, answered 120): refreshed at 240.120 (arrives
      // 240.130) and 480.140. ChannelBind at 300 ms (arrives 310, answered 320): refreshed at 540.320 (arrives
      // 540.330), before its 600 s run out; the permission's own timer keeps going beside it.
      yield* at(700_000)
      assert.deepStrictEqual(fake.arrivals(ChannelBind), [310, 540_330])
      assert.deepStrictEqual(fake.arrivals(CreatePermission), [110, 240_130, 480_150])
    }))

  it.scoped("over TCP: framed STUN, padded ChannelData both ways, Send/Data, refresh timer, release", () =>
    Effect.gen(function*() {
      const { clientHost, fake, peerInbox, peerSocket } = yield* setup()
      const { allocation, scope } = yield* allocateIn(clientHost, { transport: "tcp" })
      assert.strictEqual(allocation.transport, "tcp")
      assert.deepStrictEqual(allocation.relayed, relayedAddress)
      assert.isTrue(fake.state.tcp)
      const inbound = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 2)))
      const sent = yield* Effect.fork(allocation.send(peer, text("odd")))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(sent)
      yield* peerSocket.send(text("five5"), relayedAddress)
      const bind = yield* Effect.fork(allocation.bindChannel(peer))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(bind), 0x4000)
      // 7 bytes of data: a 12-byte padded frame, then a 1-byte one; a missing pad would break the framing.
      yield* allocation.send(peer, text("seven77"))
      yield* allocation.send(peer, text("1"))
      yield* peerSocket.send(text("back"), relayedAddress)
      yield* TestClock.adjust("1 second")
      const got = Chunk.toReadonlyArray(yield* Fiber.join(inbound)).map((d) => new TextDecoder().decode(d.data))
      assert.deepStrictEqual(got, ["five5", "back"])
      assert.deepStrictEqual(peerInbox, ["odd", "seven77", "1"])
      assert.strictEqual(fake.state.relayedChannelData, 2)
      assert.strictEqual(fake.state.framingErrors, 0)
      yield* at(600_000)
      assert.strictEqual(fake.arrivals(Refresh).length, 1)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      const last = fake.received[fake.received.length - 1]!
      assert.strictEqual(StunMessage.find(last.message, "Lifetime")?.seconds, 0)
      assert.isUndefined(fake.state.client)
    }))

  it.scoped("closing the scope sends Refresh LIFETIME 0 and interrupts every timer (no fiber left)", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup()
      const supervisor = yield* Supervisor.track
      const { allocation, scope } = yield* allocateIn(clientHost, {}, supervisor)
      const work = yield* Effect.fork(Effect.supervised(
        Effect.zipRight(allocation.permit([peer]), allocation.bindChannel(v4("192.0.2.50", 7001))),
        supervisor
      ))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(work)
      const live = yield* supervisor.value
      // The refresh timer, a permission timer and a channel timer at least.
      assert.isAtLeast(live.length, 3)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(closing)
      const last = fake.received[fake.received.length - 1]!
      assert.strictEqual(last.method, Refresh)
      assert.strictEqual(StunMessage.find(last.message, "Lifetime")?.seconds, 0)
      assert.strictEqual(last.at, 210)
      assert.isUndefined(fake.state.client)
      const left = yield* supervisor.value
      assert.deepStrictEqual(left.map((f) => f.id()), [])
      const count = fake.received.length
      yield* TestClock.adjust("2 hours")
      assert.strictEqual(fake.received.length, count)
      const error = yield* Effect.flip(allocation.send(peer, text("late")))
      assert.strictEqual(error._tag, "AllocationClosed")
    }))

  it.scoped("released by Effect.scoped (finalizers are uninterruptible): the answer ends it at once, not after 39.5 s", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup()
      const program = Effect.scoped(
        Effect.asVoid(TurnClient.allocate({ server, auth: staticAuth }))
      ).pipe(Effect.provide(VirtualNetwork.layer(clientHost)))
      const fiber = yield* Effect.fork(program)
      // Ready at 40 ms; the release leaves at once (arrives 50 ms) and its answer is back at 60 ms.
      yield* at(59)
      assert.isNull(fiber.unsafePoll())
      yield* at(60)
      const exit = fiber.unsafePoll()
      assert.isTrue(exit !== null && Exit.isSuccess(exit))
      assert.deepStrictEqual(fake.arrivals(Refresh), [50])
      assert.isUndefined(fake.state.client)
    }))

  it.scoped("a 438 mid-life is recovered with the new nonce, without losing the allocation", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup()
      const { allocation } = yield* allocateIn(clientHost)
      yield* at(300_000)
      fake.state.nonce = "nonce-2"
      yield* at(1_200_000)
      // 540.040: Refresh with the old nonce → 438 (back at 540.060) → again with nonce-2 (arrives 540.070).
      assert.deepStrictEqual(fake.arrivals(Refresh), [540_050, 540_070, 1_080_090])
      const retried = fake.received.filter((r) => r.method === Refresh)[1]!.message
      assert.strictEqual(StunMessage.find(retried, "Nonce")?.value, "nonce-2")
      assert.strictEqual(fake.arrivals(Allocate).length, 2)
      assert.isDefined(fake.state.client)
      const probe = yield* Effect.fork(Effect.either(allocation.failed))
      yield* TestClock.adjust("1 millis")
      assert.isNull(probe.unsafePoll())
    }))

  it.scoped("a lost refresh is retransmitted on the STUN schedule", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup({ script: (m, n) => m === Refresh && n <= 3 ? "drop" : undefined })
      const { allocation } = yield* allocateIn(clientHost)
      yield* at(600_000)
      // Sent at 540.040 + 0, 0.5, 1.5, 3.5 s; the fourth is answered.
      assert.deepStrictEqual(fake.arrivals(Refresh), [540_050, 540_550, 541_550, 543_550])
      assert.strictEqual(yield* allocation.lifetime, 600)
    }))

  it.scoped("a refresh answered 437 fails the allocation; its users see AllocationMismatch", () =>
    Effect.gen(function*() {
      const { clientHost } = yield* setup({
        script: (m) => m === Refresh ? { code: 437, reason: "Allocation Mismatch" } : undefined
      })
      const { allocation } = yield* allocateIn(clientHost)
      const failed = yield* Effect.fork(Effect.flip(allocation.failed))
      const streamed = yield* Effect.fork(Effect.flip(Stream.runDrain(allocation.data)))
      yield* at(541_000)
      const error = yield* Fiber.join(failed)
      assert.strictEqual(error._tag, "AllocationMismatch")
      if (error._tag !== "AllocationMismatch") return
      assert.strictEqual(error.server, "203.0.113.1:3478")
      assert.strictEqual(error.reason, "Allocation Mismatch")
      assert.strictEqual(error.request, "Refresh")
      assert.strictEqual((yield* Fiber.join(streamed))._tag, "AllocationMismatch")
      assert.strictEqual((yield* Effect.flip(allocation.send(peer, text("x"))))._tag, "AllocationMismatch")
    }))

  it.scoped("a refresh that times out fails the allocation with StunTimeout at 540.040 + 39.5 s", () =>
    Effect.gen(function*() {
      const { clientHost } = yield* setup({ script: (m) => m === Refresh ? "drop" : undefined })
      const { allocation } = yield* allocateIn(clientHost)
      const failed = yield* Effect.fork(Effect.flip(allocation.failed))
      yield* at(579_539)
      assert.isNull(failed.unsafePoll())
      yield* at(579_540)
      const error = yield* Fiber.join(failed)
      assert.strictEqual(error._tag, "StunTimeout")
    }))

  it.scoped("437 on Allocate is retried from a new local port", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup({
        script: (m, n) => m === Allocate && n === 1 ? { code: 437, reason: "Allocation Mismatch" } : undefined
      })
      const { allocation } = yield* allocateIn(clientHost)
      const ports = fake.received.filter((r) => r.method === Allocate).map((r) => r.from.port)
      // 401 and 437 from the first port; the session already holds realm and nonce, so the new port's first
      // Allocate is authenticated and succeeds.
      assert.strictEqual(ports.length, 3)
      assert.strictEqual(ports[0], ports[1])
      assert.notStrictEqual(ports[2], ports[1])
      assert.strictEqual(allocation.local.port, ports[2])
    }))

  it.scoped("typed errors: 486 AllocationQuotaReached, 401 Unauthorized, 403 Forbidden", () =>
    Effect.gen(function*() {
      const { clientHost } = yield* setup({
        script: (m) =>
          m === Allocate
            ? { code: 486, reason: "Allocation Quota Reached" }
            : undefined
      })
      const quota = yield* Effect.flip(Effect.scoped(
        Effect.provide(TurnClient.allocate({ server, auth: staticAuth }), VirtualNetwork.layer(clientHost))
      )).pipe(Effect.fork)
      const wrong = yield* Effect.flip(Effect.scoped(
        Effect.provide(
          TurnClient.allocate({ server, auth: { mode: "static", username: "alice", password: "nope" } }),
          VirtualNetwork.layer(clientHost)
        )
      )).pipe(Effect.fork)
      yield* TestClock.adjust("1 second")
      const q = yield* Fiber.join(quota)
      assert.strictEqual(q._tag, "AllocationQuotaReached")
      if (q._tag === "AllocationQuotaReached") {
        assert.strictEqual(q.code, 486)
        assert.strictEqual(q.reason, "Allocation Quota Reached")
        assert.strictEqual(q.server, "203.0.113.1:3478")
      }
      assert.strictEqual((yield* Fiber.join(wrong))._tag, "Unauthorized")
      const forbidden = TurnClient.fromErrorResponse(
        new StunTransaction.StunErrorResponse({
          method: CreatePermission,
          code: 403,
          reason: "Forbidden IP",
          remote: "203.0.113.1:3478",
          transactionId: "00",
          response: Either.getOrThrow(StunMessage.decode(StunMessage.unsafeEncode(
            StunMessage.make(StunMessage.StunClass.ErrorResponse, CreatePermission, new Uint8Array(12), [])
          )))
        })
      )
      assert.strictEqual(forbidden._tag, "Forbidden")
      assert.strictEqual(forbidden.message, "TURN CreatePermission to 203.0.113.1:3478: forbidden (403 Forbidden IP)")
    }))

  it.scoped("REST credentials: username <now + ttl>:user, the expiry from Clock", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_700_000_000_000)
      const { clientHost, fake } = yield* setup({ secret: "shared" })
      const { allocation } = yield* allocateIn(clientHost, {
        auth: { mode: "secret", secret: "shared", user: "bob", ttlSeconds: 3600 }
      })
      assert.deepStrictEqual(allocation.relayed, relayedAddress)
      assert.deepStrictEqual(fake.state.usernames, ["1700003600:bob"])
    }))

  it.scoped("ADDITIONAL-ADDRESS-FAMILY IPv6: both relayed addresses exposed, relayed the first", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup({ ipv6Relay: true })
      const { allocation } = yield* allocateIn(clientHost, { additionalFamily: "IPv6" })
      const sent = fake.received.filter((r) => r.method === Allocate)[1]!.message
      assert.strictEqual(StunMessage.find(sent, "AdditionalAddressFamily")?.family, "IPv6")
      assert.isUndefined(StunMessage.find(sent, "RequestedAddressFamily"))
      assert.isUndefined(StunMessage.find(sent, "DontFragment"))
      assert.isUndefined(StunMessage.find(sent, "EvenPort"))
      assert.deepStrictEqual(allocation.relayed, relayedAddress)
      assert.deepStrictEqual(allocation.relayedAddresses, [relayedAddress, relayedV6])
      assert.isUndefined(allocation.addressError)
      assert.isUndefined(allocation.reservationToken)
    }))

  it.scoped("ADDITIONAL-ADDRESS-FAMILY refused with ADDRESS-ERROR-CODE: reported, the IPv4 allocation stands", () =>
    Effect.gen(function*() {
      const { clientHost } = yield* setup()
      const { allocation } = yield* allocateIn(clientHost, { additionalFamily: "IPv6" })
      assert.deepStrictEqual(allocation.relayedAddresses, [relayedAddress])
      assert.deepStrictEqual(allocation.addressError, {
        family: "IPv6",
        code: 440,
        reason: "Address Family not Supported"
      })
      const probe = yield* Effect.fork(Effect.either(allocation.failed))
      yield* TestClock.adjust("1 millis")
      assert.isNull(probe.unsafePoll())
    }))

  it.scoped("DONT-FRAGMENT and EVEN-PORT on Allocate; the RESERVATION-TOKEN returned is sent by the next Allocate", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup()
      const { allocation, scope } = yield* allocateIn(clientHost, {
        dontFragment: true,
        evenPort: { reserveNext: true }
      })
      const sent = fake.received.filter((r) => r.method === Allocate)[1]!.message
      assert.isDefined(StunMessage.find(sent, "DontFragment"))
      assert.strictEqual(StunMessage.find(sent, "EvenPort")?.reserveNext, true)
      assert.isUndefined(StunMessage.find(sent, "ReservationToken"))
      assert.deepStrictEqual(allocation.reservationToken, token)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(closing)
      const second = yield* allocateIn(clientHost, { reservationToken: allocation.reservationToken! })
      const last = fake.received.filter((r) => r.method === Allocate).at(-1)!.message
      assert.deepStrictEqual(StunMessage.find(last, "ReservationToken")?.value, token)
      assert.isUndefined(StunMessage.find(last, "EvenPort"))
      assert.isUndefined(StunMessage.find(last, "DontFragment"))
      assert.isUndefined(second.allocation.reservationToken)
    }))

  it.scoped("EVEN-PORT with RESERVATION-TOKEN (or an address family) is InvalidAllocateOptions, nothing sent", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup()
      const refuse = (options: Partial<TurnClient.AllocateOptions>) =>
        Effect.flip(Effect.scoped(
          Effect.provide(
            TurnClient.allocate({ server, auth: staticAuth, ...options }),
            VirtualNetwork.layer(clientHost)
          )
        ))
      const both = yield* refuse({ evenPort: { reserveNext: false }, reservationToken: token })
      assert.strictEqual(both._tag, "InvalidAllocateOptions")
      assert.strictEqual(both.message, "TURN Allocate: EVEN-PORT and RESERVATION-TOKEN are mutually exclusive")
      assert.strictEqual((yield* refuse({ family: "IPv4", additionalFamily: "IPv6" }))._tag, "InvalidAllocateOptions")
      assert.strictEqual((yield* refuse({ family: "IPv4", reservationToken: token }))._tag, "InvalidAllocateOptions")
      assert.strictEqual(fake.received.length, 0)
    }))

  it.scoped("300 Try Alternate: the Allocate is sent again to ALTERNATE-SERVER from a new socket; it holds the allocation", () =>
    Effect.gen(function*() {
      const { clientHost, fake } = yield* setup({
        script: (m, _n, port) =>
          m === Allocate && port === server.port
            ? { code: 300, reason: "Try Alternate", attributes: [StunAttribute.alternateServer(alternateServer)] }
            : undefined
      })
      const { allocation } = yield* allocateIn(clientHost)
      // 401 back at 20, 300 back at 40, the alternate's Allocate leaves at once (arrives 50) with the same credentials.
      const allocates = fake.received.filter((r) => r.method === Allocate)
      assert.deepStrictEqual(allocates.map((r) => [r.at, r.port]), [[10, 3478], [30, 3478], [50, 3479]])
      assert.notStrictEqual(allocates[2]!.from.port, allocates[1]!.from.port)
      assert.strictEqual(allocation.local.port, allocates[2]!.from.port)
      assert.deepStrictEqual(allocation.server, alternateServer)
      assert.deepStrictEqual(allocation.relayed, relayedAddress)
      assert.strictEqual(fake.state.client?.port, allocation.local.port)
      // Ready at 60 ms: the refresh goes to the alternate at 540.060 (arrives 540.070).
      yield* at(600_000)
      assert.deepStrictEqual(fake.received.filter((r) => r.method === Refresh).map((r) => [r.at, r.port]), [[
        540_070,
        3479
      ]])
    }))

  it.scoped("a second 300 fails with TryAlternate naming both servers, at 60 ms", () =>
    Effect.gen(function*() {
      const next = v4(serverIp, 3480)
      const { clientHost, fake } = yield* setup({
        script: (m, _n, port) =>
          m === Allocate
            ? {
              code: 300,
              reason: "Try Alternate",
              attributes: [StunAttribute.alternateServer(port === server.port ? alternateServer : next)]
            }
            : undefined
      })
      const fiber = yield* Effect.fork(Effect.flip(Effect.scoped(
        Effect.provide(TurnClient.allocate({ server, auth: staticAuth }), VirtualNetwork.layer(clientHost))
      )))
      yield* at(59)
      assert.isNull(fiber.unsafePoll())
      yield* at(60)
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "TryAlternate")
      if (error._tag !== "TryAlternate") return
      assert.deepStrictEqual(
        [error.server, error.alternate, error.next],
        ["203.0.113.1:3478", "203.0.113.1:3479", "203.0.113.1:3480"]
      )
      assert.deepStrictEqual(fake.received.filter((r) => r.method === Allocate).map((r) => r.port), [3478, 3478, 3479])
      assert.isUndefined(fake.state.client)
    }))

  it.scoped("permissionIdleTimeout: a peer idle past it is not refreshed and leaves permissions; an active one is", () =>
    Effect.gen(function*() {
      const { clientHost, fake, peerSocket } = yield* setup()
      const { allocation } = yield* allocateIn(clientHost, { permissionIdleTimeout: "300 seconds" })
      const other = v4("192.0.2.51", 9000)
      const fiber = yield* Effect.fork(allocation.permit([peer, other]))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(fiber)
      // Both answered at 120 ms; peer used by a send at 200 s and a datagram back at 500.020 s, other never.
      yield* at(200_000)
      yield* allocation.send(peer, text("out"))
      yield* at(500_000)
      yield* peerSocket.send(text("in"), relayedAddress)
      // 240.120: both idle less than 300 s, refreshed. 480.140: other idle 480 s, dropped; peer (280 s) refreshed.
      // 720.160: peer idle 220 s, refreshed. 960.180: peer idle 460 s, dropped.
      yield* at(600_000)
      assert.deepStrictEqual(allocation.permissions(), [peer.ip])
      yield* at(1_500_000)
      const permissions = fake.received.filter((r) => r.method === CreatePermission)
      assert.deepStrictEqual(permissions.map((r) => r.at), [110, 240_130, 240_130, 480_150, 720_170])
      const refreshedIps = permissions.slice(3).map((r) => StunMessage.find(r.message, "XorPeerAddress")?.address.ip)
      assert.deepStrictEqual(refreshedIps, [peer.ip, peer.ip])
      assert.deepStrictEqual(allocation.permissions(), [])
    }))
})
