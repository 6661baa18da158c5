/**
 * `TurnServer`'s pluggable credential store (`credentials`) on the simulated internet (`VirtualNetwork` under
 * `TestClock`, 10 ms one way): a user known only to the store allocates, an unknown user gets 401, answers are cached
 * for 60 s, a slow store delays the answer by exactly its own delay, and a store that fails is an unknown user.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Duration } from "effect"
import { Clock, Effect, Either, Exit, Option, Scope, TestClock } from "effect"
import * as Network from "../src/Network.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TurnClient from "../src/TurnClient.js"
import * as TurnServer from "../src/TurnServer.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"
import { run } from "./virtualTime.js"

const serverIp = "192.0.2.1"
const relayIp = "192.0.2.10"
const server: SocketAddress = { family: "IPv4", ip: serverIp, port: 3478 }

const setup = (credentials: TurnServer.Options["credentials"], extra: Partial<TurnServer.Options> = {}) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make()
    const serverHost = yield* world.addHost({ name: "server", addresses: [serverIp, relayIp] })
    const clientHost = yield* world.addHost({ name: "client", addresses: ["198.51.100.7"] })
    const turn = yield* TurnServer.make({
      addresses: [serverIp],
      relayAddress: relayIp,
      realm: "example.org",
      users: { alice: "secret" },
      restSecrets: ["rest-secret"],
      credentials,
      ...extra
    }).pipe(Effect.provideService(Network.Network, serverHost.network))
    return { clientHost, turn }
  })

/** Allocate with a long-term session; the STUN code (200 on success) and when the answer came. */
const allocateAs = (host: VirtualNetwork.Host, username: string, password: string) =>
  Effect.gen(function*() {
    const socket = yield* host.network.bindUdp({})
    const client = yield* StunTransaction.makeUdp(socket)
    const session = yield* StunTransaction.makeLongTermSession(username, password)
    const start = yield* Clock.currentTimeMillis
    const result = yield* run(
      Effect.either(
        client.request(server, {
          method: StunMessage.StunMethod.Allocate,
          attributes: [StunAttribute.requestedTransport(17)]
        }, {
          credentials: session
        })
      ),
      "1 millis",
      5000
    )
    const code = Either.isRight(result) ? 200 : result.left._tag === "StunErrorResponse" ? result.left.code : -1
    return { code, elapsed: (yield* Clock.currentTimeMillis) - start }
  })

/** A store that knows carol and counts its lookups by username. */
const countingStore = (delay: Duration.DurationInput = 0) => {
  const lookups: Array<string> = []
  const store = (username: string, realm: string) =>
    Effect.zipRight(
      Effect.sleep(delay),
      Effect.sync(() => {
        lookups.push(`${username}@${realm}`)
        return username === "carol" ? Option.some("carol-password") : Option.none()
      })
    )
  return { lookups, store }
}

describe("TurnServer credential store", () => {
  it.scoped("a user known only to the store allocates; an unknown user and a wrong password get 401", () =>
    Effect.gen(function*() {
      const { lookups, store } = countingStore()
      const { clientHost, turn } = yield* setup(store)
      const carol = yield* allocateAs(clientHost, "carol", "carol-password")
      // One 401 round trip (20 ms), then the authenticated request (20 ms): the lookup adds no time.
      assert.deepStrictEqual(carol, { code: 200, elapsed: 40 })
      assert.deepStrictEqual(turn.allocations().map((a) => a.username), ["carol"])
      assert.strictEqual((yield* allocateAs(clientHost, "mallory", "whatever")).code, 401)
      // Cached: a wrong password for carol is a 401 without asking the store again.
      assert.strictEqual((yield* allocateAs(clientHost, "carol", "wrong")).code, 401)
      // Static users are never looked up.
      assert.strictEqual((yield* allocateAs(clientHost, "alice", "secret")).code, 200)
      assert.deepStrictEqual(lookups, ["carol@example.org", "mallory@example.org"])
      assert.strictEqual(turn.allocationCount(), 2)
      // After 60 s the answers are asked for again.
      yield* TestClock.adjust("61 seconds")
      assert.strictEqual((yield* allocateAs(clientHost, "mallory", "whatever")).code, 401)
      assert.deepStrictEqual(lookups, ["carol@example.org", "mallory@example.org", "mallory@example.org"])
    }))

  it.scoped("TurnClient with a store user, SHA-256 keys derived from the stored password", () =>
    Effect.gen(function*() {
      const { store } = countingStore()
      const { clientHost, turn } = yield* setup(store)
      const scope = yield* Scope.make()
      // TurnClient picks SHA-256 from the server's PASSWORD-ALGORITHMS: this succeeds only if the server derived
      // the SHA-256 key from the stored password.
      const allocation = yield* run(
        TurnClient.allocate({ server, auth: { mode: "static", username: "carol", password: "carol-password" } }).pipe(
          Effect.provideService(Network.Network, clientHost.network),
          Scope.extend(scope)
        )
      )
      assert.strictEqual(allocation.relayed.ip, relayIp)
      assert.strictEqual(turn.allocationCount(), 1)
      yield* run(Scope.close(scope, Exit.void))
      assert.strictEqual(turn.allocationCount(), 0)
    }))

  it.scoped("a slow store delays the answer by its delay; one lookup serves the retransmissions meanwhile", () =>
    Effect.gen(function*() {
      const { lookups, store } = countingStore("700 millis")
      const { clientHost } = yield* setup(store)
      const carol = yield* allocateAs(clientHost, "carol", "carol-password")
      // 401 at 20 ms; the authenticated request reaches the server at 30 ms and is retransmitted at 520 ms (RTO
      // 500 ms); the store answers at 730 ms, both copies are handled then (the second is answered from the
      // allocation as a retransmission), and the answer is back at 740 ms.
      assert.deepStrictEqual(carol, { code: 200, elapsed: 740 })
      assert.deepStrictEqual(lookups, ["carol@example.org"])
    }))

  it.scoped("a store that fails or never answers counts as an unknown user (401)", () =>
    Effect.gen(function*() {
      const failing = yield* setup(() => Effect.die(new Error("store down")))
      assert.strictEqual((yield* allocateAs(failing.clientHost, "carol", "carol-password")).code, 401)
      const hanging = yield* setup(() => Effect.never, { addresses: [serverIp], port: 3479 })
      const socket = yield* hanging.clientHost.network.bindUdp({})
      const client = yield* StunTransaction.makeUdp(socket)
      const session = yield* StunTransaction.makeLongTermSession("carol", "carol-password")
      const result = yield* run(
        Effect.either(
          client.request({ ...server, port: 3479 }, {
            method: StunMessage.StunMethod.Allocate,
            attributes: [StunAttribute.requestedTransport(17)]
          }, { credentials: session })
        ),
        "100 millis",
        200
      )
      // The store times out after 5 s: the request is then answered 401.
      assert.isTrue(Either.isLeft(result) && result.left._tag === "StunErrorResponse" && result.left.code === 401)
    }))
})
