import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, TestClock } from "effect"
import * as Cli from "../src/Cli.js"
import * as NatBehavior from "../src/NatBehavior.js"
import * as StunServer from "../src/StunServer.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const world = Effect.gen(function*() {
  const world = yield* VirtualNetwork.make()
  const client = yield* world.addHost({ name: "client", addresses: ["192.0.2.1", "2001:db8::1"] })
  const stun = yield* world.addHost({ name: "stun.example", addresses: ["203.0.113.5", "2001:db8::5"] })
  return { client, stun }
})

describe("Cli", () => {
  it.scoped("resolveTarget accepts ip, ip:port, [v6]:port, bare v6 and host[:port], and says why it refuses", () =>
    Effect.gen(function*() {
      const { client } = yield* world
      const resolve = (text: string) =>
        Effect.either(Cli.resolveTarget(text, 3478).pipe(Effect.provide(VirtualNetwork.layer(client))))
      assert.deepStrictEqual(
        yield* resolve("203.0.113.5"),
        Either.right({ family: "IPv4", ip: "203.0.113.5", port: 3478 })
      )
      assert.deepStrictEqual(
        yield* resolve("203.0.113.5:5349"),
        Either.right({ family: "IPv4", ip: "203.0.113.5", port: 5349 })
      )
      assert.deepStrictEqual(
        yield* resolve("[2001:DB8::5]:19302"),
        Either.right({ family: "IPv6", ip: "2001:db8::5", port: 19302 })
      )
      assert.deepStrictEqual(
        yield* resolve("2001:db8::5"),
        Either.right({ family: "IPv6", ip: "2001:db8::5", port: 3478 })
      )
      assert.deepStrictEqual(
        yield* resolve("stun.example:19302"),
        Either.right({ family: "IPv4", ip: "203.0.113.5", port: 19302 })
      )
      assert.deepStrictEqual(
        yield* resolve("stun.example"),
        Either.right({ family: "IPv4", ip: "203.0.113.5", port: 3478 })
      )
      for (const bad of ["stun.example:0", "stun.example:70000", "stun.example:x", ":3478"]) {
        const result = yield* resolve(bad)
        assert.isTrue(Either.isLeft(result) && result.left._tag === "TargetError", bad)
      }
      const unknown = yield* resolve("nowhere.example:3478")
      assert.isTrue(Either.isLeft(unknown) && unknown.left.reason.includes("NotFound"))
    }))

  it.scoped("queryServer reports the mapped address, SOFTWARE and RTT in virtual time, over UDP and TCP", () =>
    Effect.gen(function*() {
      const { client, stun } = yield* world
      const server = yield* StunServer.make({ address: "203.0.113.5", port: 3478, software: "test server" }).pipe(
        Effect.provide(VirtualNetwork.layer(stun))
      )
      const query = (transport: "udp" | "tcp") =>
        Effect.gen(function*() {
          const fiber = yield* Effect.fork(
            Effect.scoped(Cli.queryServer(server.primary, transport)).pipe(Effect.provide(VirtualNetwork.layer(client)))
          )
          yield* TestClock.adjust("1 second")
          return yield* Fiber.join(fiber)
        })
      const udp = yield* query("udp")
      assert.strictEqual(udp.mapped, udp.local.replace("0.0.0.0", "192.0.2.1"))
      assert.strictEqual(udp.software, "test server")
      assert.strictEqual(udp.rttMs, 20) // 10 ms each way
      assert.strictEqual(udp.responseOrigin, "203.0.113.5:3478")
      const tcp = yield* query("tcp")
      assert.strictEqual(tcp.mapped, tcp.local)
      assert.strictEqual(tcp.rttMs, 20) // after the 20 ms connect
    }))

  it.live("nat-type --simulate reports the simulated NAT, lifetime included, in virtual time", () =>
    Effect.gen(function*() {
      const behaviour = NatBehavior.make("endpoint-independent", "address-dependent", { mappingLifetimeMs: 60_000 })
      const report = yield* VirtualNetwork.runInVirtualTime(Cli.simulateDiscovery(behaviour, { lifetime: true }), {
        step: "1 second"
      })
      const json = Cli.reportToJson(report)
      assert.strictEqual(json.mapping, "endpoint-independent")
      assert.strictEqual(json.filtering, "address-dependent")
      assert.strictEqual(json.classicalName, "restricted-cone")
      assert.strictEqual(json.mapped, "203.0.113.1:49152")
      assert.isTrue(json.natPresent)
      assert.strictEqual(json.hairpinning, true)
      const lifetime = json.lifetime as { lowerBoundMs: number; upperBoundMs: number }
      assert.isTrue(lifetime.lowerBoundMs <= 60_000 && lifetime.upperBoundMs >= 60_000, JSON.stringify(lifetime))
      assert.isTrue(lifetime.upperBoundMs - lifetime.lowerBoundMs <= 1_500, JSON.stringify(lifetime))
    }))

  it.live("runInVirtualTime fails with VirtualTimeExceeded instead of running forever", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        VirtualNetwork.runInVirtualTime(Effect.never, { step: "1 second", limit: "10 seconds" })
      )
      assert.deepStrictEqual([error._tag, error.limitMs], ["VirtualTimeExceeded", 10_000])
    }))
})
