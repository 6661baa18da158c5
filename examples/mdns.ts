/**
 * Hide this machine's IPv4 addresses behind random `<uuid>.local` names, as a browser does for ICE host candidates
 * (draft-ietf-mmusic-mdns-ice-candidates), and resolve them again with a second mDNS engine, over real multicast on
 * the loopback interface (224.0.0.251:5353 joined on 127.0.0.1, so nothing leaves the machine).
 *
 * Run: `npx tsx examples/mdns.ts`. It prints one line per address: the name, what it resolved to and how long it
 * took, then shows that a name nobody registered fails with `Timeout` after the timeout.
 */
import { Duration, Effect } from "effect"
import { Mdns, Network, NodeNetwork } from "../src/index.js"

const program = Effect.gen(function*() {
  const network = yield* Network.Network
  const interfaces = yield* network.interfaces
  const ours = interfaces.filter((i) => i.family === "IPv4" && !i.internal).map((i) => i.address)
  const addresses = ours.length > 0 ? ours : ["127.0.0.1"]

  // Both engines share port 5353 (address reuse); the responder answers, the other one resolves.
  const responder = yield* Mdns.make({ interfaceAddress: "127.0.0.1" })
  const resolver = yield* Mdns.make({ interfaceAddress: "127.0.0.1" })

  for (const ip of addresses) {
    const name = yield* responder.register(ip)
    const [elapsed, resolved] = yield* Effect.timed(resolver.resolve(name))
    yield* Effect.log(`${name} -> ${resolved} (registered ${ip}; ${Duration.toMillis(elapsed).toFixed(1)} ms)`)
  }

  const unknown = "00000000-0000-4000-8000-000000000000.local"
  const error = yield* Effect.flip(resolver.resolve(unknown, { timeout: "1500 millis" }))
  yield* Effect.log(`${unknown}: ${error.reason} after ${error.queries} queries`)
})

program.pipe(
  Effect.scoped,
  Effect.provide(NodeNetwork.layer),
  Effect.catchTags({
    NetworkError: (e) => Effect.logError(`network: ${e.message}`),
    MdnsResolveError: (e) => Effect.logError(e.message)
  }),
  Effect.runPromise
)
