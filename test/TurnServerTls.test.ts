/**
 * `TurnServer` over TLS (RFC 8656 §3.1) on real loopback sockets (`NodeNetwork`): our `TurnClient` with
 * `transport: "tls"`, verifying the server's self-signed certificate (made with `openssl` at test time), allocates
 * and relays both ways to a UDP peer; and on `VirtualNetwork` (where TLS is plain TCP) the listener's defaults.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Metric, Queue, Stream, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Metrics from "../src/Metrics.js"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TurnClient from "../src/TurnClient.js"
import * as TurnServer from "../src/TurnServer.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"
import { selfSignedCertificate } from "./tls.js"

const wait = "5 seconds"
const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })

const selfSigned = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ice-turns-"))
    const { cert, key } = selfSignedCertificate(dir, ["127.0.0.1"])
    return { dir, key: Fs.readFileSync(key, "utf8"), cert: Fs.readFileSync(cert, "utf8") }
  }),
  ({ dir }) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const relayedCount = (direction: "to-peer" | "to-client") =>
  Effect.map(
    Metric.value(Metrics.turnRelayedPackets.pipe(Metric.tagged("direction", direction))),
    (state) => state.count
  )

describe("TurnServer over TLS", () => {
  it.scopedLive("TurnClient allocates over TLS on loopback and relays to a UDP peer both ways", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const { cert, key } = yield* selfSigned
      const turn = yield* TurnServer.make({
        addresses: ["127.0.0.1"],
        port: 0,
        tls: { certificate: cert, key, port: 0 },
        realm: "example.org",
        users: { alice: "secret" },
        allowPeers: ["127.0.0.0/8"]
      }).pipe(Effect.provideService(Network.Network, network))
      assert.strictEqual(turn.tls.length, 1)
      const tls = turn.tls[0]!
      assert.strictEqual(tls.transport, "tls")
      assert.strictEqual(tls.ip, "127.0.0.1")
      assert.isAbove(tls.port, 0)
      assert.deepStrictEqual(turn.tcp, [])
      assert.deepStrictEqual(turn.endpoints, [...turn.udp, tls])

      const peerSocket = yield* network.bindUdp({ address: "127.0.0.1" })
      const peer = v4("127.0.0.1", peerSocket.local.port)
      const inbox = yield* Queue.unbounded<{ readonly data: Uint8Array; readonly from: SocketAddress }>()
      yield* peerSocket.setHandler((data, from) => void Queue.unsafeOffer(inbox, { data: data.slice(), from }))

      const toPeer = yield* relayedCount("to-peer")
      const toClient = yield* relayedCount("to-client")
      const allocation = yield* TurnClient.allocate({
        server: v4(tls.ip, tls.port),
        transport: "tls",
        tls: { ca: cert },
        auth: { mode: "static", username: "alice", password: "secret" }
      }).pipe(Effect.provideService(Network.Network, network), Effect.timeout(wait))
      assert.strictEqual(allocation.relayed.ip, "127.0.0.1")
      const [info] = turn.allocations()
      assert.strictEqual(info!.client.transport, "tls")
      assert.strictEqual(info!.client.port, allocation.local.port)

      // Send indication to the peer, Data indication back.
      yield* allocation.permit([peer]).pipe(Effect.timeout(wait))
      yield* allocation.send(peer, new Uint8Array([1, 2, 3]))
      const got1 = yield* Queue.take(inbox).pipe(Effect.timeout(wait))
      assert.deepStrictEqual([...got1.data], [1, 2, 3])
      assert.deepStrictEqual(got1.from, allocation.relayed)
      const reading1 = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 1)))
      yield* peerSocket.send(new Uint8Array([4, 5, 6, 7, 8]), allocation.relayed)
      const data1 = Chunk.unsafeHead(yield* Fiber.join(reading1).pipe(Effect.timeout(wait)))
      assert.deepStrictEqual(data1.peer, peer)
      assert.deepStrictEqual([...data1.data], [4, 5, 6, 7, 8])

      // ChannelData both ways (padded to 4 bytes on the TLS stream; 5 bytes makes the padding matter).
      const channel = yield* allocation.bindChannel(peer).pipe(Effect.timeout(wait))
      assert.strictEqual(channel, 0x4000)
      yield* allocation.send(peer, new Uint8Array([9, 9, 9, 9, 9]))
      const got2 = yield* Queue.take(inbox).pipe(Effect.timeout(wait))
      assert.deepStrictEqual([...got2.data], [9, 9, 9, 9, 9])
      const reading2 = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 2)))
      yield* peerSocket.send(new Uint8Array([10, 11, 12, 13, 14]), allocation.relayed)
      yield* peerSocket.send(new Uint8Array([15]), allocation.relayed)
      const data2 = Chunk.toReadonlyArray(yield* Fiber.join(reading2).pipe(Effect.timeout(wait)))
      assert.deepStrictEqual(data2.map((d) => [...d.data]), [[10, 11, 12, 13, 14], [15]])
      assert.strictEqual(allocation.channelOf(peer), 0x4000)

      assert.strictEqual((yield* relayedCount("to-peer")) - toPeer, 2)
      assert.strictEqual((yield* relayedCount("to-client")) - toClient, 3)
    }))
})

describe("TurnServer TLS listener on VirtualNetwork", () => {
  it.scoped("listens on 5349 by default on the listening addresses, or on tls.addresses", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      const host = yield* world.addHost({ name: "server", addresses: ["192.0.2.1", "192.0.2.2", "192.0.2.10"] })
      const first = yield* TurnServer.make({
        addresses: ["192.0.2.1"],
        tcp: true,
        relayAddress: "192.0.2.10",
        tls: { certificate: "ignored", key: "ignored" }
      }).pipe(Effect.provideService(Network.Network, host.network))
      assert.deepStrictEqual(
        first.endpoints.map((e) => `${e.transport}/${e.ip}:${e.port}`),
        ["udp/192.0.2.1:3478", "tcp/192.0.2.1:3478", "tls/192.0.2.1:5349"]
      )
      const second = yield* TurnServer.make({
        addresses: ["192.0.2.2"],
        port: 3479,
        relayAddress: "192.0.2.10",
        tls: { certificate: "ignored", key: "ignored", port: 443, addresses: ["192.0.2.1", "192.0.2.2"] }
      }).pipe(Effect.provideService(Network.Network, host.network))
      assert.deepStrictEqual(
        second.tls.map((e) => `${e.transport}/${e.ip}:${e.port}`),
        ["tls/192.0.2.1:443", "tls/192.0.2.2:443"]
      )
      yield* TestClock.adjust("1 second")
    }))
})
