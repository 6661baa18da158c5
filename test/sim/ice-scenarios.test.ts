/**
 * ICE in awkward places on the simulated internet, each scenario a fresh world built by `iceScenario.runPairing`: a
 * STUN server 192.0.2.1:3478 (and [2001:db8:53::1]:3478), a TURN server 198.51.100.9 (UDP and TCP on 3478, TLS on
 * 443 when a side uses it; dual-stack with [2001:db8:100::9] when a side is IPv6-only or asks for an IPv6 relayed
 * address), Alice (controlling) at 10.0.1.2 behind NAT "a" (203.0.113.1) and Bob (controlled) at 10.0.2.2 behind
 * NAT "b" (203.0.113.2) unless a scenario says otherwise. The internet is 10 ms one way, every other link 0 ms;
 * signalling is instant; everything is seeded, so the kind of Alice's selected pair (`<local>-<remote>`), her time
 * to connected in virtual ms and the simulator's drop counters are asserted exactly.
 *
 * Each scenario has a control where it makes sense: the same world without the thing that rescues it (TLS on 443,
 * hairpinning, a relay), which must fail.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Scenario from "../../src/internal/iceScenario.js"
import * as NatBehavior from "../../src/NatBehavior.js"

const run = (name: string, options: Scenario.PairingOptions) =>
  Effect.map(Scenario.runPairing(options), (result) => {
    const drops = Object.entries(result.dropped).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`).join(", ")
    console.log(
      `${name}: ${result.outcome} ${result.pair} (Bob ${result.pairB}), Alice ${result.virtualMs} ms, ` +
        `Bob ${result.virtualMsB ?? "-"} ms, ${result.checks} checks; drops: ${drops || "none"}` +
        (result.failure === undefined ? "" : `; ${result.failure.slice(0, 160)}`)
    )
    return result
  })

/** Only the drop reasons that happened. */
const drops = (result: Scenario.PairingResult) =>
  Object.fromEntries(Object.entries(result.dropped).filter(([, n]) => n > 0))

const connected = (
  result: Scenario.PairingResult,
  expected: { outcome: Scenario.Outcome; pair: string; pairB: string; ms: number; msB: number }
) => {
  assert.strictEqual(result.outcome, expected.outcome, result.failure)
  assert.strictEqual(result.pair, expected.pair)
  assert.strictEqual(result.pairB, expected.pairB)
  assert.strictEqual(result.virtualMs, expected.ms)
  assert.strictEqual(result.virtualMsB, expected.msB)
  assert.isTrue(result.delivered)
}

describe("firewalls", () => {
  it.effect("UDP blocked at Alice's site: she connects through TURN over TCP (her relayed candidate)", () =>
    Effect.gen(function*() {
      const result = yield* run("UDP blocked", {
        a: { firewall: { blockUdp: true }, turnTransport: "tcp" },
        b: { nat: NatBehavior.portRestrictedCone },
        turn: true
      })
      // Alice's UDP (STUN Binding, host checks) is dropped at her router; her allocation is over TCP.
      connected(result, { outcome: "relay", pair: "relay-srflx", pairB: "srflx-relay", ms: 1390, msB: 1370 })
      assert.deepStrictEqual(drops(result), { NoHost: 2, Blocked: 8 })
    }))

  it.effect("only TCP to port 443 allowed: TURN over TLS on 443 gets through", () =>
    Effect.gen(function*() {
      const result = yield* run("TCP 443 only, TURN over TLS", {
        a: { firewall: { blockUdp: true, allowTcpPorts: [443] }, turnTransport: "tls" },
        b: { nat: NatBehavior.portRestrictedCone },
        turn: true
      })
      connected(result, { outcome: "relay", pair: "relay-srflx", pairB: "srflx-relay", ms: 1390, msB: 1370 })
      assert.deepStrictEqual(drops(result), { NoHost: 2, Blocked: 8 })
    }))

  it.effect("UDP blocked at both sites: relay-relay, both allocations over TCP on one TURN server", () =>
    Effect.gen(function*() {
      // The server relays between its own relayed addresses (198.51.100.9) by default: no allowPeers needed.
      const result = yield* run("UDP blocked at both sites", {
        a: { firewall: { blockUdp: true }, turnTransport: "tcp" },
        b: { firewall: { blockUdp: true }, turnTransport: "tcp" },
        turn: true
      })
      connected(result, { outcome: "relay", pair: "relay-relay", pairB: "relay-relay", ms: 1340, msB: 1320 })
      assert.deepStrictEqual(drops(result), { Blocked: 12 })
    }))

  it.effect("control: only TCP to 443 allowed and TURN over TCP to 3478: Alice has no relay, ICE fails", () =>
    Effect.gen(function*() {
      const result = yield* run("TCP 443 only, TURN over TCP 3478", {
        a: { firewall: { blockUdp: true, allowTcpPorts: [443] }, turnTransport: "tcp" },
        b: { nat: NatBehavior.portRestrictedCone },
        turn: true
      })
      assert.strictEqual(result.outcome, "failed")
      assert.strictEqual(result.failureTag, "IceFailed")
      assert.isTrue(result.failure?.startsWith("IceFailed: ICE failed (AllPairsFailed)"), result.failure)
      // Her last check (to Bob's relayed address, sent at 150 ms) times out 39.5 s later.
      assert.strictEqual(result.virtualMs, 39650)
      assert.deepStrictEqual(drops(result), { NoHost: 7, Blocked: 29 })
    }))
})

describe("IPv4-only and IPv6-only peers through a dual-stack TURN server", () => {
  it.effect("Alice (IPv4 only) asks for an IPv6 relayed address; Bob (IPv6 only, no TURN) is reached on his host", () =>
    Effect.gen(function*() {
      const result = yield* run("IPv4 relay6 × IPv6", {
        a: { turnFamily: "IPv6" },
        b: { family: "IPv6", useTurn: false },
        turn: true
      })
      connected(result, { outcome: "relay", pair: "relay-host", pairB: "host-relay", ms: 190, msB: 590 })
      assert.deepStrictEqual(drops(result), {})
    }))

  it.effect("Bob (IPv6 only) allocates over IPv6 and gets an IPv4 relayed address; Alice (IPv4 only) reaches it", () =>
    Effect.gen(function*() {
      const result = yield* run("IPv4 × IPv6 relay4", {
        a: { useTurn: false },
        b: { family: "IPv6" },
        turn: true
      })
      connected(result, { outcome: "relay", pair: "srflx-relay", pairB: "relay-srflx", ms: 630, msB: 610 })
    }))

  it.effect("control: without TURN an IPv4-only and an IPv6-only agent have no pair at all", () =>
    Effect.gen(function*() {
      const result = yield* run("IPv4 × IPv6, no TURN", { b: { family: "IPv6" } })
      assert.strictEqual(result.outcome, "failed")
      assert.strictEqual(result.failure, "IceFailed: ICE failed (AllPairsFailed): no candidate pairs")
      // Both gatherings end at 20 ms (one STUN round trip), with nothing to pair.
      assert.strictEqual(result.virtualMs, 20)
    }))
})

describe("one site, one NAT", () => {
  it.effect("same LAN: a host-host pair, the best one, nominated as soon as it succeeds", () =>
    Effect.gen(function*() {
      const result = yield* run("same LAN", { topology: "same-site" })
      connected(result, { outcome: "direct", pair: "host-host", pairB: "host-host", ms: 100, msB: 100 })
      assert.deepStrictEqual(drops(result), {})
    }))

  it.effect("both behind one hairpinning NAT, host candidates hidden (mDNS): srflx-srflx through the hairpin", () =>
    Effect.gen(function*() {
      const result = yield* run("same NAT, hairpinning", {
        topology: "same-site",
        a: { nat: NatBehavior.portRestrictedCone, concealHost: true },
        b: { concealHost: true }
      })
      connected(result, { outcome: "direct", pair: "srflx-srflx", pairB: "srflx-srflx", ms: 100, msB: 550 })
      // Bob's first check arrives through the hairpin before Alice has sent to him: filtered by APDF, once.
      assert.deepStrictEqual(drops(result), { Filtered: 1 })
    }))

  it.effect("control: the same NAT without hairpinning (STUN only) fails; every check is dropped as NoHairpin", () =>
    Effect.gen(function*() {
      const result = yield* run("same NAT, no hairpinning", {
        topology: "same-site",
        a: {
          nat: NatBehavior.make("endpoint-independent", "address-and-port-dependent", { hairpinning: false }),
          concealHost: true
        },
        b: { concealHost: true }
      })
      assert.strictEqual(result.outcome, "failed")
      assert.strictEqual(result.failureTag, "IceFailed")
      assert.strictEqual(result.virtualMs, 39550)
      assert.deepStrictEqual(drops(result), { NoHairpin: 14 })
    }))
})

describe("double NAT: two homes (port-restricted cone) inside one carrier-grade NAT", () => {
  it.effect("the carrier hairpins: direct, srflx-srflx (the carrier's addresses), through its hairpin", () =>
    Effect.gen(function*() {
      const result = yield* run("CGNAT with hairpinning", {
        topology: "carrier",
        a: { nat: NatBehavior.portRestrictedCone },
        b: { nat: NatBehavior.portRestrictedCone },
        turn: true
      })
      connected(result, { outcome: "direct", pair: "srflx-srflx", pairB: "srflx-srflx", ms: 1350, msB: 1350 })
      assert.deepStrictEqual(drops(result), { NoHost: 4, Filtered: 1 })
    }))

  it.effect("the carrier does not hairpin: through the TURN relay", () =>
    Effect.gen(function*() {
      const result = yield* run("CGNAT without hairpinning", {
        topology: "carrier",
        carrierNat: NatBehavior.make("endpoint-independent", "endpoint-independent", {
          portAssignment: "sequential",
          hairpinning: false
        }),
        a: { nat: NatBehavior.portRestrictedCone },
        b: { nat: NatBehavior.portRestrictedCone },
        turn: true
      })
      connected(result, { outcome: "relay", pair: "srflx-relay", pairB: "relay-srflx", ms: 1390, msB: 1370 })
      assert.deepStrictEqual(drops(result), { NoHost: 4, NoHairpin: 4 })
    }))
})

describe("loss on the internet link (STUN only, both port-restricted cone): still direct, later", () => {
  it.effect("10 % loss", () =>
    Effect.gen(function*() {
      const result = yield* run("10 % loss", {
        a: { nat: NatBehavior.portRestrictedCone },
        b: { nat: NatBehavior.portRestrictedCone },
        loss: 0.1
      })
      connected(result, { outcome: "direct", pair: "srflx-srflx", pairB: "srflx-srflx", ms: 3140, msB: 2630 })
      assert.deepStrictEqual(drops(result), { NoHost: 6, Loss: 3 })
    }))

  it.effect("30 % loss", () =>
    Effect.gen(function*() {
      const result = yield* run("30 % loss", {
        a: { nat: NatBehavior.portRestrictedCone },
        b: { nat: NatBehavior.portRestrictedCone },
        loss: 0.3
      })
      connected(result, { outcome: "direct", pair: "srflx-srflx", pairB: "srflx-srflx", ms: 6140, msB: 6130 })
      assert.deepStrictEqual(drops(result), { NoHost: 8, Loss: 5 })
    }))
})
