/**
 * IceAgent against a scripted peer on the virtual network, under TestClock.
 *
 * The agent runs on a public host 192.0.2.10 (no NAT, no STUN or TURN server: host candidates only); the scripted
 * peer is a raw UDP socket on 192.0.2.20:5000 that records every STUN request with the virtual instant it arrived,
 * and answers Binding requests with a success signed with the peer's password. The internet's one-way latency is
 * 10 ms, so an answer is back 20 ms after a check leaves. The pacing loop's first slot is at 0 ms, then every 50 ms
 * (Ta); remote credentials and the candidate are given right after the agent starts, so the first check leaves at
 * 50 ms.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Chunk,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  Metric,
  Option,
  Random,
  Scope,
  Stream,
  SubscriptionRef,
  TestClock
} from "effect"
import * as IceAgent from "../src/IceAgent.js"
import * as IceCandidate from "../src/IceCandidate.js"
import * as Mdns from "../src/Mdns.js"
import * as Metrics from "../src/Metrics.js"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunIntegrity from "../src/StunIntegrity.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"
import { capturedLines, captures } from "./fixtures/captured-candidates.js"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const peerAddress = v4("192.0.2.20", 5000)
const peerCredentials = { ufrag: "peer", pwd: "peerpasswordpeerpassword" }
const peerKey = Either.getOrThrow(StunIntegrity.shortTermKey(peerCredentials.pwd))
const agentCredentials = { ufrag: "agnt", pwd: "agentpasswordagentpassw" }
const agentKey = Either.getOrThrow(StunIntegrity.shortTermKey(agentCredentials.pwd))
const peerCandidate = IceCandidate.make({ type: "host", address: "192.0.2.20", port: 5000 })

interface Arrival {
  readonly at: number
  readonly message: StunMessage.DecodedStunMessage
}

const scoped = <A, E>(body: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const exit = yield* Effect.exit(Scope.extend(body, scope))
    const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
    yield* TestClock.adjust("1 minute")
    yield* Fiber.join(closing)
    return yield* exit
  })

/** The world, the scripted peer (answering when `answer` says so) and an agent on 192.0.2.10. */
const setup = (options: { readonly answer?: boolean; readonly agent?: IceAgent.Options } = {}) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make({ seed: 3 })
    const agentHost = yield* world.addHost({ name: "agent", addresses: ["192.0.2.10"] })
    const peerHost = yield* world.addHost({ name: "peer", addresses: ["192.0.2.20"] })
    const clock = yield* Effect.clock
    const socket = yield* peerHost.network.bindUdp({ port: 5000 })
    const arrivals: Array<Arrival> = []
    const responses: Array<Arrival> = []
    yield* socket.setHandler((data, from) => {
      const decoded = StunMessage.decode(data)
      if (Either.isLeft(decoded)) return
      const message = decoded.right
      const at = clock.unsafeCurrentTimeMillis()
      if (message.class !== StunMessage.StunClass.Request) {
        responses.push({ at, message })
        return
      }
      arrivals.push({ at, message })
      if (options.answer === false) return
      socket.unsafeSend(
        StunMessage.unsafeEncode(
          StunMessage.make(StunMessage.StunClass.SuccessResponse, message.method, message.transactionId, [
            StunAttribute.xorMappedAddress(from)
          ]),
          { integrity: peerKey, fingerprint: true }
        ),
        from
      )
    })
    const agent = yield* IceAgent.make({
      ...agentCredentials,
      tieBreaker: 1000n,
      ...options.agent
    }).pipe(Effect.provideService(Network.Network, agentHost.network))
    yield* agent.addRemoteCredentials(peerCredentials)
    yield* agent.addRemoteCandidate(peerCandidate)
    yield* agent.endOfRemoteCandidates
    /** Sends a request from the peer's socket to the agent's host candidate. */
    const request = (
      attributes: ReadonlyArray<StunAttribute.StunAttribute>,
      key: StunIntegrity.IntegrityKey | undefined
    ) =>
      Effect.sync(() =>
        socket.unsafeSend(
          StunMessage.unsafeEncode(
            StunMessage.make(
              StunMessage.StunClass.Request,
              StunMessage.StunMethod.Binding,
              new Uint8Array(12).fill(responses.length + 1),
              attributes
            ),
            { integrity: key, fingerprint: true }
          ),
          v4("192.0.2.10", 49152)
        )
      )
    return { agent, arrivals, responses, request, world }
  })

const seeded = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provideService(StunTransaction.TransactionIdSource, StunTransaction.transactionIdsFromRandom),
    Effect.withRandom(Random.make("unit"))
  )

describe("IceAgent credentials", () => {
  it.effect("generated with the RFC 8445 §5.3 lengths, from ice-chars, reproducibly from Random", () =>
    Effect.gen(function*() {
      const a = yield* seeded(IceAgent.generateCredentials)
      const b = yield* seeded(IceAgent.generateCredentials)
      assert.deepStrictEqual(a, b)
      assert.strictEqual(a.ufrag.length, 4)
      assert.strictEqual(a.pwd.length, 22)
      assert.match(a.ufrag + a.pwd, /^[A-Za-z0-9+/]+$/)
      assert.isTrue(Option.isNone(IceAgent.validateCredentials(a)))
      assert.isTrue(Option.isSome(IceAgent.validateCredentials({ ufrag: "abc", pwd: a.pwd })))
      assert.isTrue(Option.isSome(IceAgent.validateCredentials({ ufrag: "abcd", pwd: "short" })))
      const tieBreaker = yield* seeded(IceAgent.generateTieBreaker)
      assert.isTrue(tieBreaker >= 0n && tieBreaker < 2n ** 64n)
    }))
})

describe("IceAgent checks (RFC 8445 §7.2)", () => {
  it.effect("a check carries USERNAME remote:local, PRIORITY, ICE-CONTROLLING, integrity and fingerprint; then USE-CANDIDATE", () =>
    scoped(Effect.gen(function*() {
      const { agent, arrivals } = yield* setup()
      const states: Array<string> = []
      const connected = yield* Effect.fork(agent.connected)
      yield* TestClock.adjust("200 millis")
      const pair = yield* Fiber.join(connected)
      states.push(yield* SubscriptionRef.get(agent.state))
      // First check at 50 ms (arrives 60), answered at 70; the valid pair is the best possible one, so it is
      // nominated in the next slot (100 ms, arrives 110) and selected when that answer is back (120 ms).
      assert.deepStrictEqual(arrivals.map((a) => a.at), [60, 110])
      const [check, nomination] = arrivals.map((a) => a.message)
      assert.strictEqual(StunMessage.find(check!, "Username")?.value, "peer:agnt")
      const hostPriority = IceCandidate.priority({ type: "host", localPreference: 65535 })
      assert.strictEqual(
        StunMessage.find(check!, "Priority")?.value,
        IceCandidate.priority({ type: "prflx", localPreference: (hostPriority >>> 8) & 0xffff })
      )
      assert.strictEqual(StunMessage.find(check!, "IceControlling")?.tieBreaker, 1000n)
      assert.isFalse(StunMessage.has(check!, "UseCandidate"))
      assert.isTrue(Either.isRight(StunIntegrity.verify(check!, peerKey)))
      assert.isTrue(StunIntegrity.verifyFingerprint(check!))
      assert.isTrue(StunMessage.has(nomination!, "UseCandidate"))
      assert.strictEqual(pair.remote.address, "192.0.2.20")
      assert.strictEqual(pair.local.type, "host")
      // Gathering is complete and the remote sent end-of-candidates: completed.
      assert.deepStrictEqual(states, ["completed"])
      const stats = yield* agent.stats
      assert.strictEqual(stats.connectedAfterMs, 120)
      assert.strictEqual(stats.checksSent, 2)
    })))

  it.effect("an unreachable peer: failed with IceFailed naming the pair and 'timeout', at 50 ms + 39.5 s", () =>
    scoped(Effect.gen(function*() {
      const { agent, arrivals } = yield* setup({ answer: false })
      const result = yield* Effect.fork(Effect.either(agent.connected))
      yield* TestClock.adjust("39549 millis")
      assert.strictEqual(yield* SubscriptionRef.get(agent.state), "checking")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* SubscriptionRef.get(agent.state), "failed")
      const error = yield* Fiber.join(result)
      assert.isTrue(Either.isLeft(error))
      const failure = (error as Either.Left<IceAgent.IceFailed, unknown>).left
      assert.strictEqual(failure._tag, "IceFailed")
      assert.deepStrictEqual(failure.pairs, [{
        local: "host 192.0.2.10:49152",
        remote: "host 192.0.2.20:5000",
        reason: "timeout"
      }])
      assert.include(failure.message, "host 192.0.2.10:49152 -> host 192.0.2.20:5000: timeout")
      // The RFC 8489 schedule: 7 sends of the one check.
      assert.deepStrictEqual(arrivals.map((a) => a.at), [60, 560, 1560, 3560, 7560, 15560, 31560])
      const sendFailure = yield* Effect.flip(agent.send(new Uint8Array([0x80])))
      assert.strictEqual(sendFailure._tag, "NotConnected")
    })))

  it.effect("failAfter: failed with reason Timeout when nothing is selected in time", () =>
    scoped(Effect.gen(function*() {
      const { agent } = yield* setup({ answer: false, agent: { failAfter: "5 seconds" } })
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* SubscriptionRef.get(agent.state), "failed")
      const failure = yield* agent.failure
      assert.isTrue(Option.isSome(failure) && failure.value._tag === "IceFailed" && failure.value.reason === "Timeout")
    })))
})

describe("IceAgent answering checks (RFC 8445 §7.3)", () => {
  it.effect("400 without MESSAGE-INTEGRITY, 401 with a wrong ufrag or password, success with XOR-MAPPED-ADDRESS", () =>
    scoped(Effect.gen(function*() {
      const { request, responses } = yield* setup({ answer: false })
      const unauthorized = Metric.value(
        Metric.taggedWithLabels(Metrics.iceChecksAnswered, [Metrics.label("result", "401")])
      )
      const before = (yield* unauthorized).count
      const controlled = StunAttribute.iceControlled(5n)
      const priority = StunAttribute.priority(1234)
      yield* request([StunAttribute.username("agnt:peer"), priority, controlled], undefined)
      yield* request([StunAttribute.username("nope:peer"), priority, controlled], agentKey)
      yield* request([StunAttribute.username("agnt:peer"), priority, controlled], peerKey)
      yield* request([StunAttribute.username("agnt:peer"), priority, controlled], agentKey)
      yield* TestClock.adjust("40 millis")
      const codes = responses.map((r) =>
        r.message.class === StunMessage.StunClass.SuccessResponse
          ? "success"
          : String(StunMessage.find(r.message, "ErrorCode")?.code)
      )
      assert.deepStrictEqual(codes, ["400", "401", "401", "success"])
      assert.strictEqual((yield* unauthorized).count - before, 2)
      const success = responses[3]!.message
      assert.deepStrictEqual(StunMessage.find(success, "XorMappedAddress")?.address, peerAddress)
      assert.isTrue(Either.isRight(StunIntegrity.verify(success, agentKey)))
      assert.isTrue(StunIntegrity.verifyFingerprint(success))
    })))

  it.effect("role conflict (§7.3.1.1): a larger tie-breaker makes us controlled; a smaller one gets 487", () =>
    scoped(Effect.gen(function*() {
      const { agent, request, responses } = yield* setup({ answer: false })
      const priority = StunAttribute.priority(1234)
      const user = StunAttribute.username("agnt:peer")
      yield* request([user, priority, StunAttribute.iceControlling(5n)], agentKey)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(StunMessage.find(responses[0]!.message, "ErrorCode")?.code, 487)
      assert.isTrue(Either.isRight(StunIntegrity.verify(responses[0]!.message, agentKey)))
      assert.strictEqual(yield* agent.role, "controlling")
      yield* request([user, priority, StunAttribute.iceControlling(5000n)], agentKey)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(responses[1]!.message.class, StunMessage.StunClass.SuccessResponse)
      assert.strictEqual(yield* agent.role, "controlled")
    })))
})

describe("IceAgent signalling (trickle, RFC 8838)", () => {
  it.effect("localCandidates: the credentials, then each candidate, then end-of-candidates, replayed to late readers", () =>
    scoped(Effect.gen(function*() {
      const { agent } = yield* setup({ answer: false })
      yield* TestClock.adjust("10 millis")
      const events = yield* Stream.runCollect(
        Stream.takeUntil(agent.localCandidates, (e) => e._tag === "EndOfCandidates")
      )
      assert.deepStrictEqual(
        Chunk.toReadonlyArray(events).map((e) =>
          e._tag === "Credentials"
            ? `credentials ${e.credentials.ufrag}`
            : e._tag === "Candidate"
            ? `${e.ufrag} ${IceCandidate.toSdp(e.candidate)}`
            : `${e.ufrag} end-of-candidates`
        ),
        [
          "credentials agnt",
          `agnt candidate:${
            IceCandidate.foundation({ type: "host", baseAddress: "192.0.2.10", transport: "udp" })
          } 1 udp 2130706431 192.0.2.10 49152 typ host`,
          "agnt end-of-candidates"
        ]
      )
      assert.strictEqual(yield* agent.gatheringState, "complete")
    })))

  it.effect("a candidate of a generation whose credentials have not arrived waits for them; another one is ignored", () =>
    scoped(Effect.gen(function*() {
      const world = yield* VirtualNetwork.make({ seed: 3 })
      const host = yield* world.addHost({ name: "agent", addresses: ["192.0.2.10"] })
      const agent = yield* IceAgent.make({ ...agentCredentials }).pipe(
        Effect.provideService(Network.Network, host.network)
      )
      yield* agent.addRemoteCandidate(peerCandidate, "peer")
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* agent.pairs, [])
      yield* agent.addRemoteCredentials(peerCredentials)
      assert.deepStrictEqual((yield* agent.pairs).map((p) => p.id), ["udp|192.0.2.10|49152->udp|192.0.2.20|5000"])
      yield* agent.addRemoteCandidate(IceCandidate.make({ type: "host", address: "192.0.2.21", port: 1 }), "zzzz")
      assert.strictEqual((yield* agent.pairs).length, 1)
      const error = yield* Effect.flip(agent.addRemoteCredentials({ ufrag: "ab", pwd: "x" }))
      assert.strictEqual(error._tag, "InvalidCredentials")
    })))
})

describe("IceAgent pacing (RFC 8445 §6.1.4.2)", () => {
  const paced = (ta: number | undefined) =>
    scoped(Effect.gen(function*() {
      const world = yield* VirtualNetwork.make({ seed: 3 })
      const host = yield* world.addHost({ name: "agent", addresses: ["192.0.2.10"] })
      // Three peer addresses: three foundations, so no pair waits for another of its foundation (§6.1.2.6).
      const peer = yield* world.addHost({ name: "peer", addresses: ["192.0.2.20", "192.0.2.21", "192.0.2.22"] })
      const clock = yield* Effect.clock
      const arrivals: Array<string> = []
      for (const ip of ["192.0.2.20", "192.0.2.21", "192.0.2.22"]) {
        const socket = yield* peer.network.bindUdp({ address: ip, port: 5000 })
        yield* socket.setHandler(() => {
          arrivals.push(`${clock.unsafeCurrentTimeMillis()} ${ip}`)
        })
      }
      const make = IceAgent.make({ ...agentCredentials }).pipe(Effect.provideService(Network.Network, host.network))
      const agent = yield* (ta === undefined ? make : Effect.provideService(make, IceAgent.Ta, Duration.millis(ta)))
      yield* TestClock.adjust("1 millis")
      yield* agent.addRemoteCredentials(peerCredentials)
      for (const ip of ["192.0.2.20", "192.0.2.21", "192.0.2.22"]) {
        yield* agent.addRemoteCandidate(IceCandidate.make({ type: "host", address: ip, port: 5000 }))
      }
      yield* TestClock.adjust("300 millis")
      return arrivals.filter((a) => Number(a.split(" ")[0]) < 250)
    }))

  it.effect("one check every Ta (50 ms by default), each pair's first send 10 ms later at the peer", () =>
    Effect.gen(function*() {
      // The idle pacing loop ran one empty slot at 0 ms, so the first check waits for 50 ms, the next ones follow
      // every 50 ms; the retransmissions (500 ms later) are outside the window.
      assert.deepStrictEqual(yield* paced(undefined), ["60 192.0.2.20", "110 192.0.2.21", "160 192.0.2.22"])
    }))

  it.effect("Ta is a Context.Reference: 20 ms", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* paced(20), ["30 192.0.2.20", "50 192.0.2.21", "70 192.0.2.22"])
    }))
})

describe("IceAgent ICE-lite (RFC 8445 §2.5)", () => {
  const check = (extra: ReadonlyArray<StunAttribute.StunAttribute>) => [
    StunAttribute.username("agnt:peer"),
    StunAttribute.priority(IceCandidate.priority({ type: "prflx" })),
    ...extra
  ]

  it.effect("sends no checks, answers them, selects the pair the full peer nominates; no consent or keepalives", () =>
    scoped(Effect.gen(function*() {
      const { agent, arrivals, request, responses } = yield* setup({ agent: { lite: true } })
      assert.isTrue(agent.lite)
      assert.strictEqual(yield* agent.role, "controlled")
      const events = yield* Effect.fork(Stream.runCollect(Stream.take(agent.localCandidates, 1)))
      yield* TestClock.adjust("1 second")
      const [first] = Chunk.toReadonlyArray(yield* Fiber.join(events))
      assert.deepStrictEqual(first, { _tag: "Credentials", credentials: agentCredentials, lite: true })
      // Nothing sent in a second, though a remote candidate and credentials are known.
      assert.deepStrictEqual(arrivals, [])
      assert.strictEqual(yield* SubscriptionRef.get(agent.state), "new")
      yield* request(check([StunAttribute.iceControlling(5n)]), agentKey)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(responses.length, 1)
      assert.strictEqual(responses[0]!.message.class, StunMessage.StunClass.SuccessResponse)
      assert.deepStrictEqual(StunMessage.find(responses[0]!.message, "XorMappedAddress")?.address, peerAddress)
      // A valid pair, not nominated: still no triggered check and nothing selected.
      assert.deepStrictEqual(arrivals, [])
      assert.isTrue(Option.isNone(yield* SubscriptionRef.get(agent.selectedPair)))
      yield* request(check([StunAttribute.iceControlling(5n), StunAttribute.useCandidate]), agentKey)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(responses.length, 2)
      const selected = yield* SubscriptionRef.get(agent.selectedPair)
      assert.isTrue(Option.isSome(selected))
      assert.strictEqual(Option.getOrThrow(selected).remote.address, "192.0.2.20")
      assert.strictEqual(Option.getOrThrow(selected).local.address, "192.0.2.10")
      assert.strictEqual(yield* SubscriptionRef.get(agent.state), "completed")
      // Sent at 1000 ms, arrived at 1010: the nominated check was the second one, at 1030.
      assert.strictEqual((yield* agent.stats).connectedAfterMs, 1030)
      // A minute on: no consent checks and no keepalives from the lite agent, and it stays completed.
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(arrivals, [])
      assert.strictEqual(yield* SubscriptionRef.get(agent.state), "completed")
      const stats = yield* agent.stats
      assert.deepStrictEqual([stats.checksSent, stats.consentChecks, stats.keepalives, stats.checksAnswered], [
        0,
        0,
        0,
        2
      ])
    })))

  it.effect("a controlled peer gets 487 whatever its tie-breaker: the lite agent stays controlled (§6.1.1)", () =>
    scoped(Effect.gen(function*() {
      const { agent, request, responses } = yield* setup({ agent: { lite: true, tieBreaker: 2n ** 63n } })
      yield* request(check([StunAttribute.iceControlled(1n)]), agentKey)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(StunMessage.find(responses[0]!.message, "ErrorCode")?.code, 487)
      assert.strictEqual(yield* agent.role, "controlled")
    })))

  it.effect("a full agent told its peer is lite becomes controlling (§6.1.1)", () =>
    scoped(Effect.gen(function*() {
      const { agent, arrivals } = yield* setup({ agent: { controlling: false } })
      assert.strictEqual(yield* agent.role, "controlled")
      yield* agent.addRemoteCredentials(peerCredentials, { lite: true })
      assert.strictEqual(yield* agent.role, "controlling")
      yield* TestClock.adjust("200 millis")
      assert.strictEqual(StunMessage.find(arrivals[0]!.message, "IceControlling")?.tieBreaker, 1000n)
      assert.isTrue(StunMessage.has(arrivals[1]!.message, "UseCandidate"))
    })))
})

/** A Chromium-captured mDNS host line (default host obfuscation). */
const chromiumMdns = capturedLines.find((l) =>
  captures[l.capture].browser === "Chromium" && l.expected.type === "host" && l.expected.transport === "udp" &&
  IceCandidate.isMdns(l.expected)
)!

/** An mDNS engine that answers every name with `ip` after 10 ms (or fails as told), recording the names asked. */
const stubMdns = (answer: string | Mdns.MdnsResolveError) => {
  const asked: Array<string> = []
  const service: Mdns.Service = {
    register: () => Effect.die("not used"),
    unregister: () => Effect.void,
    resolve: (name) =>
      Effect.zipRight(
        Effect.sync(() => asked.push(name)),
        Effect.zipRight(
          Effect.sleep("10 millis"),
          typeof answer === "string" ? Effect.succeed(answer) : Effect.fail(answer)
        )
      ),
    registered: Effect.succeed(new Map()),
    malformed: () => 0
  }
  return { service, asked }
}

describe("IceAgent mDNS candidates (draft-ietf-mmusic-mdns-ice-candidates §3.2.1)", () => {
  it.effect("a Chromium-captured .local host line is accepted, resolved once per name, and paired with the IP", () =>
    seeded(scoped(Effect.gen(function*() {
      const line = IceCandidate.fromSdp(chromiumMdns.line)
      assert.isTrue(Either.isRight(line))
      const candidate = Either.getOrThrow(line)
      assert.match(candidate.address, /\.local$/)
      const { asked, service } = stubMdns("192.0.2.20")
      const { agent } = yield* setup({ agent: { mdns: { service } } })
      yield* agent.addRemoteCandidate(candidate)
      yield* agent.addRemoteCandidate({ ...candidate, port: candidate.port + 1 })
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(asked, [candidate.address.toLowerCase()], "one resolution for both candidates")
      const before = (yield* agent.pairs).map((p) => `${p.remote.address}:${p.remote.port}`)
      assert.deepStrictEqual(before, ["192.0.2.20:5000"])
      yield* TestClock.adjust("9 millis")
      const remotes = (yield* agent.pairs).map((p) => p.remote)
      const resolved = remotes.find((r) => r.port === candidate.port)
      assert.deepStrictEqual(resolved, { ...candidate, address: "192.0.2.20" }, "priority, foundation, type kept")
      assert.isDefined(remotes.find((r) => r.port === candidate.port + 1))
      assert.deepStrictEqual(yield* agent.droppedCandidates, [])
    }))))

  it.effect("without an mDNS engine, or when the name does not resolve, the candidate is dropped with its reason", () =>
    seeded(scoped(Effect.gen(function*() {
      const candidate = Either.getOrThrow(IceCandidate.fromSdp(chromiumMdns.line))
      const plain = yield* setup()
      yield* plain.agent.addRemoteCandidate(candidate)
      const [noResolver] = yield* plain.agent.droppedCandidates
      assert.deepInclude(noResolver, { _tag: "MdnsCandidateDropped", reason: "NoResolver", name: candidate.address })
      const failing = stubMdns(new Mdns.MdnsResolveError({ name: candidate.address, reason: "Timeout", queries: 2 }))
      const withEngine = yield* setup({ agent: { mdns: { service: failing.service } } })
      yield* withEngine.agent.addRemoteCandidate(candidate)
      assert.deepStrictEqual(yield* withEngine.agent.droppedCandidates, [])
      yield* TestClock.adjust("10 millis")
      const dropped = yield* withEngine.agent.droppedCandidates
      assert.deepStrictEqual(dropped.map((d) => [d.reason, d.name]), [["Timeout", candidate.address]])
      assert.deepStrictEqual((yield* withEngine.agent.pairs).map((p) => p.remote.address), ["192.0.2.20"])
    }))))
})

describe("IceAgent ICE-TCP on loopback (NodeNetwork)", () => {
  it.scopedLive("two agents with only TCP candidates connect over RFC 4571 framing and exchange data both ways", () =>
    Effect.gen(function*() {
      const options: IceAgent.Options = {
        includeLoopback: true,
        families: ["IPv4"],
        interfaceFilter: (i) => i.address === "127.0.0.1",
        transports: ["tcp"]
      }
      const alice = yield* IceAgent.make({ ...options, controlling: true })
      const bob = yield* IceAgent.make({ ...options, controlling: false })
      yield* IceAgent.pipeSignalling(alice, bob)
      const [pa, pb] = yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 }).pipe(
        Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("no TCP pair in 10 s") })
      )
      assert.strictEqual(pa.local.transport, "tcp")
      assert.strictEqual(pa.remote.transport, "tcp")
      assert.strictEqual(pb.local.transport, "tcp")
      // One side's active candidate reached the other's passive one.
      assert.deepStrictEqual([pa.local.tcpType, pa.remote.tcpType].sort(), ["active", "passive"])
      assert.deepStrictEqual([pb.local.tcpType, pb.remote.tcpType].sort(), ["active", "passive"])
      assert.strictEqual(pa.local.port === 9 || pa.remote.port === 9, false)
      const toBob = yield* Effect.fork(Stream.runCollect(Stream.take(bob.data, 2)))
      const toAlice = yield* Effect.fork(Stream.runCollect(Stream.take(alice.data, 1)))
      yield* alice.send(new TextEncoder().encode("over tcp"))
      yield* alice.send(new Uint8Array(1200).fill(0x80))
      const atBob = Chunk.toReadonlyArray(yield* Fiber.join(toBob))
      assert.strictEqual(new TextDecoder().decode(atBob[0]!), "over tcp")
      assert.strictEqual(atBob[1]!.length, 1200)
      yield* bob.send(new TextEncoder().encode("and back"))
      assert.strictEqual(new TextDecoder().decode(Chunk.unsafeGet(yield* Fiber.join(toAlice), 0)), "and back")
    }).pipe(Effect.provide(NodeNetwork.layer)))
})
