/**
 * NAT behaviour discovery (RFC 5780) against a simulated NAT: build a small internet (a STUN server with two
 * public addresses, a home network behind a NAT with the behaviour you name), run `NatDiscovery.discover` from
 * inside it, and print what it found. It all runs in virtual time, so minutes of NAT timers take a second.
 *
 * Run: `npx tsx examples/nat-type.ts [MAPPING/FILTERING]`, for example `EIM/APDF` (port-restricted cone) or
 * `APDM/APDF` (symmetric). Against a real server: `npx effect-ice nat-type --server host:port`.
 */
import { Effect } from "effect"
import { NatBehavior, NatDiscovery, StunServer, VirtualNetwork } from "../src/index.js"

const pair = NatBehavior.parsePair(process.argv[2] ?? "EIM/APDF")
if (pair === undefined) throw new Error("expected MAPPING/FILTERING, for example EIM/APDF")

const world = Effect.gen(function*() {
  const internet = yield* VirtualNetwork.make()
  const stun = yield* internet.addHost({ name: "stun", addresses: ["198.51.100.1", "198.51.100.2"] })
  yield* internet.addSite({
    name: "home",
    nat: NatBehavior.make(pair.mapping, pair.filtering, { mappingLifetimeMs: 120_000 }),
    externalAddresses: ["203.0.113.1"]
  })
  const laptop = yield* internet.addHost({ name: "laptop", addresses: ["192.168.1.10"], site: "home" })

  const server = yield* StunServer.make({ address: "198.51.100.1", port: 3478, alternateAddress: "198.51.100.2" })
    .pipe(Effect.provide(VirtualNetwork.layer(stun)))
  const report = yield* NatDiscovery.discover({
    server: server.primary,
    tests: { hairpinning: true, lifetime: { max: "5 minutes", precision: "1 second" } }
  }).pipe(Effect.provide(VirtualNetwork.layer(laptop)))
  const stats = yield* internet.stats
  return { report, stats }
})

VirtualNetwork.runInVirtualTime(world, { step: "1 second" }).pipe(
  Effect.flatMap(({ report, stats }) =>
    Effect.sync(() => {
      console.log(NatDiscovery.format(report))
      console.log(`packets: ${stats.sent} sent, ${stats.delivered} delivered; dropped by reason:`)
      for (const [reason, count] of Object.entries(stats.dropped)) if (count > 0) console.log(`  ${reason}: ${count}`)
    })
  ),
  Effect.runPromise
)
