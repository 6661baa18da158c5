/**
 * Our ICE agent (`IceAgent` on `NodeNetwork`, real UDP sockets on loopback) against aioice (Debian's
 * `python3-aioice`), driven by `test/interop/aioice_peer.py` over JSON lines: both roles, host candidates on
 * 127.0.0.1, relayed candidates through OUR `TurnServer` (listening on 127.A.B.1, relaying from 127.A.B.2, both
 * sides relay-only so the only pair is relay ↔ relay), and both kinds at once (host ↔ host must win), each with
 * trickle (every candidate forwarded as it comes, aioice connecting as soon as it has our credentials) and without
 * (all candidates after gathering completed, then end-of-candidates, and only then does aioice connect); role
 * conflicts both ways with our tie-breaker pinned to 0 or 2^64−1; and 7 s of consent freshness both ways. The test
 * carries the signalling; it asserts the selected pair on both sides (types and transport addresses), the exact bytes
 * both ways (aioice's own message, and our message echoed back with its prefix) and the final roles. aioice 0.8
 * nominates aggressively when controlling (USE-CANDIDATE on every check), which our controlled side accepts. Every
 * wait is bounded; aioice is stopped by its PID when the test's scope closes. Skipped locally without aioice, failing
 * under `CI=true` (`requirePeer`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Duration, Effect, Either, Exit, Option, Queue, Stream, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as IceAgent from "../../src/IceAgent.js"
import * as IceCandidate from "../../src/IceCandidate.js"
import type * as Network from "../../src/Network.js"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as TurnServer from "../../src/TurnServer.js"
import { debianPython, pickLoopbackAddresses, requirePeer } from "./peers.js"

const aioice = await requirePeer("aioice")
const script = fileURLToPath(new URL("./aioice_peer.py", import.meta.url))
const wait = Duration.seconds(20)
const hello = "hello from aioice"
const prefix = "echo:"

const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>, what: string, peer?: AioicePeer) =>
  Effect.timeoutFail(effect, {
    duration: wait,
    onTimeout: () => new Error(`timed out: ${what}${peer === undefined ? "" : `\naioice stderr:\n${peer.stderr()}`}`)
  })

/** Bytes aioice and our demultiplexer both take for application data (first byte 0x80, RTP's range). */
const payload = Uint8Array.from({ length: 301 }, (_, i) => i === 0 ? 0x80 : (i * 7 + 3) & 0xff)
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")
const text = (s: string) => new TextEncoder().encode(s)

// ---------------------------------------------------------------------------------------------------------------
// aioice_peer.py as a scoped child process
// ---------------------------------------------------------------------------------------------------------------

type PeerMessage =
  | { readonly type: "version"; readonly version: string }
  | { readonly type: "credentials"; readonly ufrag: string; readonly pwd: string }
  | { readonly type: "candidate"; readonly sdp: string }
  | { readonly type: "end-of-candidates" }
  | {
    readonly type: "connected"
    readonly ms: number
    readonly local: string | null
    readonly remote: string | null
    readonly role: IceAgent.Role
  }
  | { readonly type: "data"; readonly hex: string }
  | { readonly type: "error"; readonly message: string }

interface AioicePeer {
  readonly pid: number
  readonly messages: Queue.Dequeue<PeerMessage>
  readonly write: (message: object) => Effect.Effect<void>
  readonly stderr: () => string
}

const spawnAioice = (args: ReadonlyArray<string>): Effect.Effect<AioicePeer, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const messages = yield* Queue.unbounded<PeerMessage>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(debianPython, ["-u", script, ...args], { stdio: ["pipe", "pipe", "pipe"] })),
      (child) =>
        Effect.promise(() =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve()
            // Closing stdin asks the script to close its connection and exit; SIGKILL by PID after 3 s.
            const timer = setTimeout(() => {
              if (child.pid !== undefined) {
                try {
                  process.kill(child.pid, "SIGKILL")
                } catch {
                  // already gone
                }
              }
            }, 3_000)
            child.once("exit", () => {
              clearTimeout(timer)
              resolve()
            })
            child.stdin!.end()
          })
        )
    )
    if (child.pid === undefined) return yield* Effect.fail(new Error(`cannot start ${debianPython} ${script}`))
    let stderr = ""
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < 64 * 1024) stderr += chunk
    })
    let buffered = ""
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk
      let newline = buffered.indexOf("\n")
      while (newline >= 0) {
        const line = buffered.slice(0, newline).trim()
        buffered = buffered.slice(newline + 1)
        if (line !== "") {
          try {
            Queue.unsafeOffer(messages, JSON.parse(line) as PeerMessage)
          } catch {
            Queue.unsafeOffer(messages, { type: "error", message: `not JSON: ${line}` })
          }
        }
        newline = buffered.indexOf("\n")
      }
    })
    child.stdin!.on("error", () => {})
    return {
      pid: child.pid,
      messages,
      write: (message) => Effect.sync(() => void child.stdin!.write(JSON.stringify(message) + "\n")),
      stderr: () => stderr
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// One scenario
// ---------------------------------------------------------------------------------------------------------------

interface Scenario {
  readonly role: IceAgent.Role
  readonly relay: boolean
  readonly trickle: boolean
  /** Start aioice in the same role as ours, with our tie-breaker fixed; `expect` is our role in the end. */
  readonly conflict?: { readonly tieBreaker: bigint; readonly expect: IceAgent.Role } | undefined
  /**
   * Stay connected this long after the first exchange (our consent checks every 500 ms; aioice's every 4–6 s), then
   * check both sides still consent and exchange data again.
   */
  readonly hold?: Duration.Duration | undefined
  /** With `relay`: host candidates too, on both sides (so host ↔ host must win over the relayed pairs). */
  readonly mixed?: boolean | undefined
}

const loopbackV4 = (i: Network.NetworkInterface) => i.internal && i.family === "IPv4" && i.address === "127.0.0.1"

const toPeer = (event: IceAgent.LocalEvent): object =>
  event._tag === "Credentials"
    ? { type: "credentials", ufrag: event.credentials.ufrag, pwd: event.credentials.pwd }
    : event._tag === "Candidate"
    ? { type: "candidate", sdp: IceCandidate.toSdp(event.candidate) }
    : { type: "end-of-candidates" }

/** aioice writes the attribute value without `candidate:` (as `a=candidate:` carries it); ours wants the prefix. */
const parseTheirs = (sdp: string): IceCandidate.Candidate => {
  const parsed = IceCandidate.fromSdp(`candidate:${sdp}`)
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  return parsed.right
}

const scenario = ({ conflict, hold, mixed = false, relay, role, trickle }: Scenario) =>
  Effect.gen(function*() {
    const startedAt = Date.now()
    let turnArgs: Array<string> = []
    let agentOptions: IceAgent.Options = {
      role,
      includeLoopback: true,
      families: ["IPv4"],
      interfaceFilter: loopbackV4,
      failAfter: wait,
      ...(conflict === undefined ? {} : { tieBreaker: conflict.tieBreaker })
    }
    let relayIp = ""
    if (relay) {
      // Our TURN server listens on 127.A.B.1 and relays from 127.A.B.2, apart from the clients' 127.0.0.1, so a
      // relayed packet cannot reach its peer any other way (permissions are per IP).
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
      const listener = server.udp[0]!
      turnArgs = [
        "--turn",
        `${listener.ip}:${listener.port}`,
        "--turn-username",
        "alice",
        "--turn-password",
        "secret",
        ...(mixed ? [] : ["--relay-only"])
      ]
      agentOptions = {
        ...agentOptions,
        host: mixed,
        turnServers: [{
          server: { family: "IPv4", ip: listener.ip, port: listener.port },
          transport: "udp",
          auth: { mode: "static", username: "alice", password: "secret" }
        }]
      }
    }
    const agent = yield* IceAgent.make(agentOptions).pipe(
      Effect.provideService(IceAgent.ConsentInterval, hold === undefined ? Duration.seconds(5) : Duration.millis(500))
    )
    const peer = yield* spawnAioice([
      "--role",
      conflict !== undefined ? role : role === "controlling" ? "controlled" : "controlling",
      "--host",
      "127.0.0.1",
      "--timeout",
      "30",
      "--prefix",
      prefix,
      "--hello",
      hello,
      ...(trickle ? ["--trickle"] : []),
      ...turnArgs
    ])

    // aioice → our agent. Without trickle its candidates are applied together once its end-of-candidates came.
    const theirCandidates: Array<IceCandidate.Candidate> = []
    const peerConnected = yield* Deferred.make<Extract<PeerMessage, { type: "connected" }>, Error>()
    const peerData = yield* Queue.unbounded<string>()
    const errors: Array<string> = []
    let candidatesAt = 0
    yield* Effect.forkScoped(
      Stream.fromQueue(peer.messages).pipe(Stream.runForEach((message) =>
        Effect.gen(function*() {
          switch (message.type) {
            case "credentials":
              yield* agent.addRemoteCredentials({ ufrag: message.ufrag, pwd: message.pwd })
              break
            case "candidate": {
              const candidate = parseTheirs(message.sdp)
              theirCandidates.push(candidate)
              if (trickle) yield* agent.addRemoteCandidate(candidate)
              break
            }
            case "end-of-candidates":
              candidatesAt = Date.now()
              if (!trickle) { for (const candidate of theirCandidates) yield* agent.addRemoteCandidate(candidate) }
              yield* agent.endOfRemoteCandidates
              break
            case "connected":
              yield* Deferred.succeed(peerConnected, message)
              break
            case "data":
              yield* Queue.offer(peerData, message.hex)
              break
            case "error":
              errors.push(message.message)
              yield* Deferred.fail(peerConnected, new Error(`aioice: ${message.message}\n${peer.stderr()}`))
              break
          }
        })
      ))
    )

    // Our agent → aioice: each event as it comes (trickle), or everything once gathering completed.
    if (trickle) {
      yield* Effect.forkScoped(Stream.runForEach(agent.localCandidates, (event) => peer.write(toPeer(event))))
    } else {
      const all = yield* bounded(
        agent.localCandidates.pipe(Stream.takeUntil((e) => e._tag === "EndOfCandidates"), Stream.runCollect),
        "our gathering",
        peer
      )
      for (const event of all) yield* peer.write(toPeer(event))
    }

    const ours = yield* bounded(agent.connected, "our agent connects", peer)
    const oursMs = Date.now() - startedAt
    const theirs = yield* bounded(Deferred.await(peerConnected), "aioice connects", peer)
    const theirsMs = Date.now() - startedAt
    const ourCandidates = (yield* agent.localCandidates.pipe(
      Stream.takeUntil((e) => e._tag === "EndOfCandidates"),
      Stream.runCollect
    )).pipe(Chunk.toArray).flatMap((e) => e._tag === "Candidate" ? [e.candidate] : [])

    // Data both ways: aioice's greeting, and our bytes echoed with its prefix.
    const reading = yield* Effect.fork(Stream.runCollect(Stream.take(agent.data, 2)))
    yield* agent.send(payload)
    const got = Chunk.toArray(yield* bounded(Effect.flatten(reading.await), "data from aioice", peer)).map(hex)
    assert.sameMembers(got, [hex(text(hello)), hex(text(prefix)) + hex(payload)])
    assert.strictEqual(yield* bounded(Queue.take(peerData), "aioice receives our data", peer), hex(payload))
    assert.deepStrictEqual(errors, [])

    // Roles: unchanged without a conflict; with one, the larger tie-breaker is controlling (RFC 8445 §7.3.1.1).
    const finalRole = conflict?.expect ?? role
    assert.strictEqual(yield* agent.role, finalRole)
    assert.strictEqual(theirs.role, finalRole === "controlling" ? "controlled" : "controlling")

    // The selected pair, on both sides.
    const theirLocal = parseTheirs(theirs.local ?? "")
    const theirRemote = parseTheirs(theirs.remote ?? "")
    if (relay && !mixed) {
      // Both relay-only: the only candidates are the two relayed addresses on our TURN server's relay IP.
      assert.strictEqual(ourCandidates.length, 1)
      assert.strictEqual(theirCandidates.length, 1)
      const [ourRelay] = ourCandidates
      const [theirRelay] = theirCandidates
      assert.strictEqual(ourRelay!.type, "relay")
      assert.strictEqual(theirRelay!.type, "relay")
      assert.strictEqual(ourRelay!.address, relayIp)
      assert.strictEqual(theirRelay!.address, relayIp)
      assert.deepStrictEqual(
        [ours.local.type, ours.local.address, ours.local.port],
        ["relay", relayIp, ourRelay!.port]
      )
      assert.deepStrictEqual(
        [ours.remote.type, ours.remote.address, ours.remote.port],
        ["relay", relayIp, theirRelay!.port]
      )
      assert.deepStrictEqual([theirLocal.type, theirLocal.port], ["relay", theirRelay!.port])
      assert.deepStrictEqual([theirRemote.type, theirRemote.port], ["relay", ourRelay!.port])
    } else {
      if (mixed) {
        // One host and one relayed candidate each; the host ↔ host pair has the highest priority and works.
        assert.sameMembers(ourCandidates.map((c) => c.type), ["host", "relay"])
        assert.sameMembers(theirCandidates.map((c) => c.type), ["host", "relay"])
      } else {
        assert.strictEqual(ourCandidates.length, 1)
        assert.strictEqual(theirCandidates.length, 1)
      }
      const ourHost = ourCandidates.find((c) => c.type === "host")
      const theirHost = theirCandidates.find((c) => c.type === "host")
      assert.deepStrictEqual([ourHost!.type, ourHost!.address], ["host", "127.0.0.1"])
      assert.deepStrictEqual([theirHost!.type, theirHost!.address], ["host", "127.0.0.1"])
      assert.deepStrictEqual(
        [ours.local.type, ours.local.address, ours.local.port],
        ["host", "127.0.0.1", ourHost!.port]
      )
      assert.deepStrictEqual([ours.remote.address, ours.remote.port], ["127.0.0.1", theirHost!.port])
      assert.strictEqual(ours.remote.type, "host", `our selected remote is ${IceAgent.describeCandidate(ours.remote)}`)
      assert.deepStrictEqual([theirLocal.type, theirLocal.port], ["host", theirHost!.port])
      assert.deepStrictEqual([theirRemote.port], [ourHost!.port])
      assert.strictEqual(theirRemote.type, "host", `aioice's selected remote is ${theirs.remote}`)
    }
    if (hold !== undefined) {
      // Consent freshness both ways (RFC 7675): ours every 0.4–0.6 s answered by aioice, aioice's (every 4–6 s)
      // answered by us; still connected, and data flows again.
      const before = yield* agent.stats
      yield* Effect.sleep(hold)
      const after = yield* agent.stats
      assert.oneOf(yield* SubscriptionRef.get(agent.state), ["connected", "completed"])
      assert.isTrue(Option.isNone(yield* agent.failure))
      assert.isAtLeast(after.consentChecks - before.consentChecks, Math.floor(Duration.toMillis(hold) / 600))
      assert.isAtLeast(after.checksAnswered - before.checksAnswered, 1, "aioice sent no consent check we answered")
      const again = payload.map((b, i) => i === 0 ? b : b ^ 0x5a)
      const echoed = yield* Effect.fork(Stream.runCollect(Stream.take(agent.data, 1)))
      yield* agent.send(again)
      const echo = Chunk.toArray(yield* bounded(Effect.flatten(echoed.await), "echo after holding")).map(hex)
      assert.deepStrictEqual(echo, [hex(Buffer.from(prefix)) + hex(again)])
      assert.strictEqual(yield* bounded(Queue.take(peerData), "aioice receives our data again", peer), hex(again))
      console.log(
        `[ice-aioice] held ${Duration.format(hold)}: ${
          after.consentChecks - before.consentChecks
        } consent checks of ours (state stayed connected: answered), ` +
          `${after.checksAnswered - before.checksAnswered} checks of aioice's answered`
      )
    }
    const stats = yield* agent.stats
    console.log(
      `[ice-aioice] ours ${role}${conflict === undefined ? "" : ` (conflict, now ${finalRole})`}, ` +
        `${mixed ? "host+relay" : relay ? "relay" : "host"}, ${trickle ? "trickle" : "no trickle"}: ` +
        `ours ${IceAgent.describeCandidate(ours.local)} -> ${IceAgent.describeCandidate(ours.remote)} ` +
        `after ${oursMs} ms (${oursMs - (candidatesAt - startedAt)} ms after aioice's end-of-candidates; ` +
        `${stats.checksSent} checks); ` +
        `aioice ${theirLocal.type} -> ${theirRemote.type} after ${theirsMs} ms (connect() ${theirs.ms} ms)`
    )
  })

describe.skipIf(aioice.skip)(`IceAgent against aioice ${aioice.info.version ?? ""} ${aioice.reason}`, () => {
  for (const role of ["controlling", "controlled"] as const) {
    for (const relay of [false, true]) {
      for (const trickle of [true, false]) {
        it.scopedLive(
          `ours ${role} ↔ aioice ${role === "controlling" ? "controlled" : "controlling"}, ` +
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
    "ours controlling ↔ aioice controlled, host, trickle, held 7 s: consent both ways keeps the pair, data again",
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
  // smallest 64-bit value, so the outcome is known whatever aioice draws.
  for (const role of ["controlling", "controlled"] as const) {
    for (const [tieBreaker, expect] of [[2n ** 64n - 1n, "controlling"], [0n, "controlled"]] as const) {
      it.scopedLive(
        `role conflict: both ${role}, our tie-breaker ${tieBreaker === 0n ? "0" : "2^64-1"}: ` +
          `we end ${expect}, aioice the other, data both ways`,
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
