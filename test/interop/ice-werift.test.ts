/**
 * Our ICE agent (`IceAgent` on `NodeNetwork`) against werift-ice's `Connection` (a TypeScript ICE agent, in this
 * process, with its own sockets and timers), on real UDP sockets on loopback: both roles, host candidates on
 * 127.0.0.1 (werift skips loopback by itself, so it is given `additionalHostAddresses` and is bound on 127.0.0.1
 * only), relayed candidates through OUR `TurnServer` (127.A.B.1, relaying from 127.A.B.2; both sides relay-only,
 * werift with `forceTurn`), and both kinds at once (host ↔ host must win), each with trickle (candidates forwarded
 * as they come) and without (all candidates after gathering, then end-of-candidates, then `connect()`); role
 * conflicts both ways with our tie-breaker pinned to 0 or 2^64−1; and 7 s of consent freshness both ways. The test
 * carries the signalling; it asserts the selected pair on both sides, the exact bytes both ways (werift's greeting,
 * our bytes echoed back with a prefix) and the final roles. Every wait is bounded on the live clock; werift's
 * connection is closed when the test's scope closes.
 *
 * werift-ice 0.2.3 pairs its relayed base only with the remote candidates it knows when `connect()` starts (its TURN
 * protocol is never passed to `pairLocalProtocol`, unlike its host ones), so in trickle mode werift's `connect()` is
 * started once werift's own gathering has finished; our candidates still trickle to it before and after.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Either, Exit, Option, Queue, Stream, SubscriptionRef } from "effect"
import { Candidate, Connection } from "werift-ice"
import * as IceAgent from "../../src/IceAgent.js"
import * as IceCandidate from "../../src/IceCandidate.js"
import type * as Network from "../../src/Network.js"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as TurnServer from "../../src/TurnServer.js"
import { pickLoopbackAddresses } from "./peers.js"

const wait = Duration.seconds(20)
const hello = "hello from werift"
const prefix = "echo:"

const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>, what: string) =>
  Effect.timeoutFail(effect, { duration: wait, onTimeout: () => new Error(`timed out: ${what}`) })

/** Bytes both agents take for application data (first byte 0x80, RTP's range). */
const payload = Uint8Array.from({ length: 301 }, (_, i) => i === 0 ? 0x80 : (i * 5 + 11) & 0xff)
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")

const loopbackV4 = (i: Network.NetworkInterface) => i.internal && i.family === "IPv4" && i.address === "127.0.0.1"

/** werift writes the attribute value without `candidate:` (as `a=candidate:` carries it); ours wants the prefix. */
const parseTheirs = (sdp: string): IceCandidate.Candidate => {
  const parsed = IceCandidate.fromSdp(`candidate:${sdp}`)
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  return parsed.right
}

const oursToWerift = (candidate: IceCandidate.Candidate): Candidate =>
  Candidate.fromSdp(IceCandidate.toSdp(candidate).slice("candidate:".length))

type FromWerift =
  | { readonly _tag: "Candidate"; readonly sdp: string }
  | { readonly _tag: "End" }
  | { readonly _tag: "Failed"; readonly error: unknown }

interface Scenario {
  readonly role: IceAgent.Role
  readonly relay: boolean
  readonly trickle: boolean
  /** Start werift in the same role as ours, with our tie-breaker fixed; `expect` is our role in the end. */
  readonly conflict?: { readonly tieBreaker: bigint; readonly expect: IceAgent.Role } | undefined
  /**
   * Stay connected this long after the first exchange (our consent checks every 500 ms; werift's every 4–6 s), then
   * check both sides still consent and exchange data again.
   */
  readonly hold?: Duration.Duration | undefined
  /** With `relay`: host candidates too, on both sides (so host ↔ host must win over the relayed pairs). */
  readonly mixed?: boolean | undefined
}

const scenario = ({ conflict, hold, mixed = false, relay, role, trickle }: Scenario) =>
  Effect.gen(function*() {
    const startedAt = Date.now()
    let agentOptions: IceAgent.Options = {
      role,
      includeLoopback: true,
      families: ["IPv4"],
      interfaceFilter: loopbackV4,
      failAfter: wait,
      ...(conflict === undefined ? {} : { tieBreaker: conflict.tieBreaker })
    }
    let relayIp = ""
    let turn: { readonly ip: string; readonly port: number } | undefined
    if (relay) {
      const [listenIp, relayAddress] = yield* Effect.promise(() => pickLoopbackAddresses(2))
      relayIp = relayAddress!
      const server = yield* TurnServer.make({
        addresses: [listenIp!],
        port: 0,
        relayAddress,
        users: { alice: "secret" },
        realm: "example.org",
        allowPeers: ["127.0.0.0/8"]
      })
      turn = { ip: server.udp[0]!.ip, port: server.udp[0]!.port }
      agentOptions = {
        ...agentOptions,
        host: mixed,
        turnServers: [{
          server: { family: "IPv4", ip: turn.ip, port: turn.port },
          transport: "udp",
          auth: { mode: "static", username: "alice", password: "secret" }
        }]
      }
    }
    const agent = yield* IceAgent.make(agentOptions).pipe(
      Effect.provideService(IceAgent.ConsentInterval, hold === undefined ? Duration.seconds(5) : Duration.millis(500))
    )

    // werift: host candidates on 127.0.0.1 only (no interface address of its own: useIpv4/useIpv6 false), its
    // sockets bound on 127.0.0.1; or relay-only through our TURN server (`forceTurn`); or both.
    const werift = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Connection(conflict !== undefined ? role === "controlling" : role === "controlled", {
          useIpv4: false,
          useIpv6: false,
          additionalHostAddresses: relay && !mixed ? [] : ["127.0.0.1"],
          interfaceAddresses: { udp4: "127.0.0.1" },
          ...(turn === undefined ? {} : {
            turnServer: [turn.ip, turn.port] as [string, number],
            turnUsername: "alice",
            turnPassword: "secret",
            turnTransport: "udp" as const,
            forceTurn: !mixed
          })
        })
      ),
      (connection) => Effect.promise(() => connection.close()).pipe(Effect.timeout("5 seconds"), Effect.ignore)
    )

    // werift → our agent: candidates as werift finds them (trickle), or all of them once its gathering ended.
    const fromWerift = yield* Queue.unbounded<FromWerift>()
    const received = yield* Queue.unbounded<Uint8Array>()
    werift.onIceCandidate.subscribe((candidate) =>
      void Queue.unsafeOffer(fromWerift, { _tag: "Candidate", sdp: candidate.toSdp() })
    )
    werift.onData.subscribe((data) => {
      Queue.unsafeOffer(received, Uint8Array.from(data))
      void werift.send(Buffer.concat([Buffer.from(prefix), data])).catch(() => {})
    })
    const gathering = werift.gatherCandidates()
    gathering.then(
      () => Queue.unsafeOffer(fromWerift, { _tag: "End" }),
      (error) => Queue.unsafeOffer(fromWerift, { _tag: "Failed", error })
    )
    yield* agent.addRemoteCredentials({ ufrag: werift.localUsername, pwd: werift.localPassword })
    const theirCandidates: Array<IceCandidate.Candidate> = []
    const forwardTheirs = Stream.fromQueue(fromWerift).pipe(
      Stream.takeUntil((e) => e._tag !== "Candidate"),
      Stream.runForEach((event) =>
        Effect.gen(function*() {
          if (event._tag === "Failed") return yield* Effect.fail(new Error(`werift gathering: ${event.error}`))
          if (event._tag === "Candidate") {
            const candidate = parseTheirs(event.sdp)
            theirCandidates.push(candidate)
            if (trickle) yield* agent.addRemoteCandidate(candidate)
            return
          }
          if (!trickle) { for (const candidate of theirCandidates) yield* agent.addRemoteCandidate(candidate) }
          yield* agent.endOfRemoteCandidates
        })
      )
    )

    // Our agent → werift.
    const ourCandidates: Array<IceCandidate.Candidate> = []
    const applyOurs = (event: IceAgent.LocalEvent): Effect.Effect<void, Error> =>
      event._tag === "Credentials"
        ? Effect.sync(() =>
          werift.setRemoteParams({
            iceLite: false,
            usernameFragment: event.credentials.ufrag,
            password: event.credentials.pwd
          })
        )
        : Effect.tryPromise({
          try: () => {
            if (event._tag === "Candidate") {
              ourCandidates.push(event.candidate)
              return werift.addRemoteCandidate(oursToWerift(event.candidate))
            }
            return werift.addRemoteCandidate(undefined)
          },
          catch: (error) => new Error(`werift addRemoteCandidate: ${error}`)
        })
    const ourEvents = agent.localCandidates.pipe(Stream.takeUntil((e) => e._tag === "EndOfCandidates"))
    let weriftConnect: Promise<void>
    if (trickle) {
      yield* Effect.forkScoped(Effect.orDie(forwardTheirs))
      // Our credentials at once (the stream's first event carries the same), then our candidates as they come,
      // while werift checks. werift's connect() waits for werift's own gathering: werift pairs a relayed base only
      // with the remote candidates known when connect() starts (its TURN protocol is never paired afterwards, unlike
      // its host ones), so connecting earlier leaves werift without a relayed pair.
      yield* applyOurs({ _tag: "Credentials", credentials: yield* agent.localCredentials })
      weriftConnect = gathering.then(() => werift.connect())
      yield* Effect.forkScoped(Effect.orDie(Stream.runForEach(ourEvents, applyOurs)))
    } else {
      yield* bounded(forwardTheirs, "werift's gathering")
      const ours = yield* bounded(Stream.runCollect(ourEvents), "our gathering")
      yield* Effect.forEach(ours, applyOurs)
      weriftConnect = werift.connect()
    }

    // A failure is awaited below; this only keeps a rejection that nobody awaits (the test failed first) quiet.
    weriftConnect.catch(() => {})

    const ours = yield* bounded(agent.connected, "our agent connects")
    const oursMs = Date.now() - startedAt
    yield* bounded(Effect.tryPromise(() => weriftConnect), "werift connects")
    const theirsMs = Date.now() - startedAt
    const nominated = werift.nominated
    assert.isDefined(nominated, "werift has no nominated pair")
    const theirLocal = parseTheirs(nominated!.localCandidate.toSdp())
    const theirRemote = parseTheirs(nominated!.remoteCandidate.toSdp())

    // Data both ways.
    const reading = yield* Effect.fork(Stream.runCollect(Stream.take(agent.data, 2)))
    yield* Effect.promise(() => werift.send(Buffer.from(hello)))
    yield* agent.send(payload)
    const got = Chunk.toArray(yield* bounded(Effect.flatten(reading.await), "data from werift")).map(hex)
    assert.sameMembers(got, [hex(Buffer.from(hello)), hex(Buffer.from(prefix)) + hex(payload)])
    assert.strictEqual(hex(yield* bounded(Queue.take(received), "werift receives our data")), hex(payload))

    // Roles: unchanged without a conflict; with one, the larger tie-breaker is controlling (RFC 8445 §7.3.1.1).
    const finalRole = conflict?.expect ?? role
    assert.strictEqual(yield* agent.role, finalRole)
    assert.strictEqual(werift.iceControlling, finalRole === "controlled")

    const mine = ourCandidates.filter((c) => c.transport === "udp")
    const theirs = theirCandidates.filter((c) => c.transport === "udp")
    if (mixed) {
      // One host and one relayed candidate each; the host ↔ host pair has the highest priority and works.
      assert.sameMembers(mine.map((c) => c.type), ["host", "relay"])
      assert.sameMembers(theirs.map((c) => c.type), ["host", "relay"])
    } else {
      assert.strictEqual(mine.length, 1)
      assert.strictEqual(theirs.length, 1)
    }
    const type = relay && !mixed ? "relay" : "host"
    const ip = type === "relay" ? relayIp : "127.0.0.1"
    const mineOne = mine.find((c) => c.type === type)
    const theirOne = theirs.find((c) => c.type === type)
    assert.deepStrictEqual([mineOne!.type, mineOne!.address], [type, ip])
    assert.deepStrictEqual([theirOne!.type, theirOne!.address], [type, ip])
    assert.deepStrictEqual(
      [ours.local.type, ours.local.address, ours.local.port],
      [type, ip, mineOne!.port]
    )
    assert.deepStrictEqual(
      [ours.remote.type, ours.remote.address, ours.remote.port],
      [type, ip, theirOne!.port],
      `our selected remote is ${IceAgent.describeCandidate(ours.remote)}`
    )
    assert.deepStrictEqual([theirLocal.type, theirLocal.port], [type, theirOne!.port])
    assert.deepStrictEqual([theirRemote.type, theirRemote.port], [type, mineOne!.port])
    if (hold !== undefined) {
      // Consent freshness both ways (RFC 7675): ours every 0.4–0.6 s answered by werift, werift's (every 4–6 s)
      // answered by us; still connected, and data flows again.
      const before = yield* agent.stats
      yield* Effect.sleep(hold)
      const after = yield* agent.stats
      assert.oneOf(yield* SubscriptionRef.get(agent.state), ["connected", "completed"])
      assert.isTrue(Option.isNone(yield* agent.failure))
      assert.isAtLeast(after.consentChecks - before.consentChecks, Math.floor(Duration.toMillis(hold) / 600))
      assert.isAtLeast(after.checksAnswered - before.checksAnswered, 1, "werift sent no consent check we answered")
      assert.oneOf(werift.state, ["connected", "completed"])
      const again = payload.map((b, i) => i === 0 ? b : b ^ 0x5a)
      const echoed = yield* Effect.fork(Stream.runCollect(Stream.take(agent.data, 1)))
      yield* agent.send(again)
      const echo = Chunk.toArray(yield* bounded(Effect.flatten(echoed.await), "echo after holding")).map(hex)
      assert.deepStrictEqual(echo, [hex(Buffer.from(prefix)) + hex(again)])
      assert.strictEqual(hex(yield* bounded(Queue.take(received), "werift receives our data again")), hex(again))
      console.log(
        `[ice-werift] held ${Duration.format(hold)}: ${
          after.consentChecks - before.consentChecks
        } consent checks of ours (state stayed connected: answered), ` +
          `${after.checksAnswered - before.checksAnswered} checks of werift's answered`
      )
    }
    const stats = yield* agent.stats
    console.log(
      `[ice-werift] ours ${role}${conflict === undefined ? "" : ` (conflict, now ${finalRole})`}, ` +
        `${mixed ? "host+relay" : relay ? "relay" : "host"}, ${trickle ? "trickle" : "no trickle"}: ` +
        `ours ${IceAgent.describeCandidate(ours.local)} -> ${IceAgent.describeCandidate(ours.remote)} ` +
        `after ${oursMs} ms (agent: ${stats.connectedAfterMs} ms from its start, ${stats.checksSent} checks); ` +
        `werift ${theirLocal.type} -> ${theirRemote.type} after ${theirsMs} ms`
    )
  })

describe("IceAgent against werift-ice", () => {
  for (const role of ["controlling", "controlled"] as const) {
    for (const relay of [false, true]) {
      for (const trickle of [true, false]) {
        it.scopedLive(
          `ours ${role} ↔ werift ${role === "controlling" ? "controlled" : "controlling"}, ` +
            `${relay ? "relay ↔ relay through our TurnServer" : "host candidates"}, ` +
            `${trickle ? "trickle" : "no trickle"}: connects, data both ways`,
          () =>
            scenario({ role, relay, trickle }).pipe(
              Effect.provide(NodeNetwork.layer),
              Effect.onExit((exit) => Exit.isFailure(exit) ? Effect.logError(exit.cause) : Effect.void)
            ),
          40_000
        )
      }
    }
  }

  it.scopedLive(
    "ours controlling ↔ werift controlled, host, trickle, held 7 s: consent both ways keeps the pair, data again",
    () =>
      scenario({ role: "controlling", relay: false, trickle: true, hold: Duration.seconds(7) }).pipe(
        Effect.provide(NodeNetwork.layer),
        Effect.onExit((exit) => Exit.isFailure(exit) ? Effect.logError(exit.cause) : Effect.void)
      ),
    40_000
  )

  for (const role of ["controlling", "controlled"] as const) {
    it.scopedLive(
      `ours ${role}, host and relayed candidates on both sides, trickle: host ↔ host is selected on both sides`,
      () =>
        scenario({ role, relay: true, mixed: true, trickle: true }).pipe(
          Effect.provide(NodeNetwork.layer),
          Effect.onExit((exit) => Exit.isFailure(exit) ? Effect.logError(exit.cause) : Effect.void)
        ),
      40_000
    )
  }

  // Role conflicts (§7.3.1.1, §7.2.5.1): both sides start in the same role; our tie-breaker is the largest or the
  // smallest 64-bit value, so the outcome is known whatever werift draws.
  for (const role of ["controlling", "controlled"] as const) {
    for (const [tieBreaker, expect] of [[2n ** 64n - 1n, "controlling"], [0n, "controlled"]] as const) {
      it.scopedLive(
        `role conflict: both ${role}, our tie-breaker ${tieBreaker === 0n ? "0" : "2^64-1"}: ` +
          `we end ${expect}, werift the other, data both ways`,
        () =>
          scenario({ role, relay: false, trickle: false, conflict: { tieBreaker, expect } }).pipe(
            Effect.provide(NodeNetwork.layer),
            Effect.onExit((exit) => Exit.isFailure(exit) ? Effect.logError(exit.cause) : Effect.void)
          ),
        40_000
      )
    }
  }
})
