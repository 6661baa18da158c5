/**
 * Run a TURN server inside a program and use it: start `TurnServer` on 127.0.0.1 (port 0: the system picks free
 * ports, which the server reports), allocate a relayed address on it with `TurnClient`, permit a local UDP peer,
 * relay one message to that peer, and exit. Everything lives in the program's scope: closing it releases the
 * allocation (Refresh with LIFETIME 0), then stops the server.
 *
 * Run: `npx tsx examples/turn-server.ts`. For a stand-alone server, use the command line instead:
 * `npx tsx src/bin.ts turn-server --listen 127.0.0.1:3478 --user alice:secret`.
 */
import { Console, Effect, Queue } from "effect"
import { Network, NodeNetwork, TransportAddress, TurnClient, TurnServer } from "../src/index.js"

const program = Effect.gen(function*() {
  const server = yield* TurnServer.make({
    addresses: ["127.0.0.1"],
    port: 0,
    tcp: true,
    realm: "example.org",
    users: { alice: "secret" },
    // Peers on loopback are refused by default (RFC 8656 §21); this example's peer is on loopback.
    allowPeers: ["127.0.0.0/8"]
  })
  for (const endpoint of server.endpoints) {
    yield* Console.log(`TURN server listening on ${TransportAddress.key(endpoint)}`)
  }

  // The peer: a plain UDP socket that queues what it receives.
  const network = yield* Network.Network
  const peerSocket = yield* network.bindUdp({ address: "127.0.0.1" })
  const peer = { family: peerSocket.local.family, ip: peerSocket.local.ip, port: peerSocket.local.port }
  const inbox = yield* Queue.unbounded<{ readonly text: string; readonly from: string }>()
  yield* peerSocket.setHandler((data, from) =>
    void Queue.unsafeOffer(inbox, { text: new TextDecoder().decode(data), from: TransportAddress.format(from) })
  )

  const allocation = yield* TurnClient.allocate({
    server: server.udp[0]!,
    auth: { mode: "static", username: "alice", password: "secret" }
  })
  yield* Console.log(`allocated relayed address ${TransportAddress.format(allocation.relayed)}`)
  yield* Console.log(`the server holds ${server.allocationCount()} allocation(s)`)

  yield* allocation.permit([peer])
  yield* allocation.send(peer, new TextEncoder().encode("hello through the relay"))
  const received = yield* Queue.take(inbox)
  yield* Console.log(`peer ${TransportAddress.format(peer)} got "${received.text}" from ${received.from}`)
})

program.pipe(
  Effect.scoped,
  Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("timed out") }),
  Effect.provide(NodeNetwork.layer),
  Effect.tapErrorCause(Effect.logError),
  Effect.runPromise
).catch(() => process.exit(1))
