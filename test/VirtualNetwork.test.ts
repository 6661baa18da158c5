import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Deferred, Effect, Exit, Fiber, Option, Scope, Stream, TestClock } from "effect"
import * as Network from "../src/Network.js"
import type { SocketAddress, TransportAddress } from "../src/TransportAddress.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (data: Uint8Array): string => new TextDecoder().decode(data)

interface Received {
  readonly text: string
  readonly remote: SocketAddress
}

/** A handler that records what arrives, synchronously, as the hot path does. */
const recorder = () => {
  const received: Array<Received> = []
  const handler: Network.DatagramHandler = (data, remote) => {
    received.push({ text: text(data), remote })
  }
  return { received, handler }
}

const twoHosts = (options?: VirtualNetwork.Options) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make(options)
    const a = yield* world.addHost({ name: "a", addresses: ["192.0.2.1", "2001:db8::1"] })
    const b = yield* world.addHost({ name: "b", addresses: ["198.51.100.7", "2001:db8::7"] })
    return { world, a, b }
  })

const noDrops: VirtualNetwork.Stats["dropped"] = {
  NoHost: 0,
  PortUnreachable: 0,
  SocketClosed: 0,
  FamilyMismatch: 0,
  ReceiveBufferFull: 0,
  Filtered: 0,
  NoMapping: 0,
  MappingExpired: 0,
  NoHairpin: 0,
  Blocked: 0,
  Mtu: 0,
  Loss: 0
}

describe("VirtualNetwork", () => {
  describe("UDP", () => {
    it.scoped("delivers after exactly the one-way latency, with the sender's address, and a reply after one RTT", () =>
      Effect.gen(function*() {
        const { a, b, world } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        assert.deepStrictEqual(client.local, { family: "IPv4", ip: "0.0.0.0", port: 49152, transport: "udp" })
        assert.deepStrictEqual(server.local, { family: "IPv4", ip: "0.0.0.0", port: 3478, transport: "udp" })

        const atServer = recorder()
        yield* server.setHandler((data, remote) => {
          atServer.handler(data, remote)
          server.unsafeSend(bytes("pong"), remote)
        })
        const atClient = recorder()
        yield* client.setHandler(atClient.handler)

        yield* client.send(bytes("ping"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("9 millis")
        assert.deepStrictEqual(atServer.received, [])
        yield* TestClock.adjust("1 millis")
        assert.deepStrictEqual(atServer.received, [
          { text: "ping", remote: { family: "IPv4", ip: "192.0.2.1", port: 49152 } }
        ])
        yield* TestClock.adjust("9 millis")
        assert.deepStrictEqual(atClient.received, [])
        yield* TestClock.adjust("1 millis")
        assert.deepStrictEqual(atClient.received, [
          { text: "pong", remote: { family: "IPv4", ip: "198.51.100.7", port: 3478 } }
        ])
        const stats = yield* world.stats
        assert.deepStrictEqual(stats, { sent: 2, delivered: 2, dropped: noDrops, drops: [] })
      }))

    it.scoped("exchanges IPv6 datagrams from a specific address", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const client = yield* a.network.bindUdp({ address: "2001:DB8:0::1", port: 5000 })
        const server = yield* b.network.bindUdp({ family: "IPv6", port: 3478 })
        assert.deepStrictEqual(client.local, { family: "IPv6", ip: "2001:db8::1", port: 5000, transport: "udp" })
        assert.deepStrictEqual(server.local, { family: "IPv6", ip: "::", port: 3478, transport: "udp" })
        const atServer = recorder()
        yield* server.setHandler((data, remote) => {
          atServer.handler(data, remote)
          server.unsafeSend(data, remote)
        })
        const atClient = recorder()
        yield* client.setHandler(atClient.handler)
        client.unsafeSend(bytes("hello"), { family: "IPv6", ip: "2001:db8::7", port: 3478 })
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(atServer.received, [
          { text: "hello", remote: { family: "IPv6", ip: "2001:db8::1", port: 5000 } }
        ])
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(atClient.received, [
          { text: "hello", remote: { family: "IPv6", ip: "2001:db8::7", port: 3478 } }
        ])
      }))

    it.scoped("gives the receiver a copy: the sender may reuse its buffer", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        const atServer = recorder()
        yield* server.setHandler(atServer.handler)
        const buffer = bytes("first")
        client.unsafeSend(buffer, { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        buffer.set(bytes("XXXXX"))
        client.unsafeSend(buffer, { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(atServer.received.map((r) => r.text), ["first", "XXXXX"])
      }))

    it.scoped("delivers datagrams sent at the same instant in the order they were sent", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        const atServer = recorder()
        yield* server.setHandler(atServer.handler)
        const order = Array.from({ length: 20 }, (_, i) => `datagram ${i}`)
        for (const message of order) {
          client.unsafeSend(bytes(message), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        }
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(atServer.received.map((r) => r.text), order)
      }))

    it.scoped("keeps datagrams that arrive before the handler and delivers them to it first", () =>
      Effect.gen(function*() {
        const { a, b, world } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        const to = { family: "IPv4", ip: "198.51.100.7", port: 3478 } as const
        client.unsafeSend(bytes("one"), to)
        client.unsafeSend(bytes("two"), to)
        yield* TestClock.adjust("10 millis")
        client.unsafeSend(bytes("three"), to)
        const atServer = recorder()
        yield* server.setHandler(atServer.handler)
        assert.deepStrictEqual(atServer.received.map((r) => r.text), ["one", "two"])
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(atServer.received.map((r) => r.text), ["one", "two", "three"])
        assert.strictEqual((yield* world.stats).delivered, 3)
      }))

    it.scoped("drops datagrams beyond maxPendingDatagrams while no handler is installed", () =>
      Effect.gen(function*() {
        const { a, b, world } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        for (let i = 0; i < Network.maxPendingDatagrams + 3; i++) {
          client.unsafeSend(bytes(String(i)), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        }
        yield* TestClock.adjust("10 millis")
        const atServer = recorder()
        yield* server.setHandler(atServer.handler)
        assert.strictEqual(atServer.received.length, Network.maxPendingDatagrams)
        assert.strictEqual(atServer.received.at(-1)!.text, String(Network.maxPendingDatagrams - 1))
        const stats = yield* world.stats
        assert.strictEqual(stats.dropped.ReceiveBufferFull, 3)
        assert.strictEqual(stats.delivered, Network.maxPendingDatagrams)
      }))

    it.scoped("runs a handler's Effect in a fiber of the receiving socket", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        const got = yield* Deferred.make<string>()
        yield* server.setHandler((data) => Deferred.succeed(got, text(data)))
        client.unsafeSend(bytes("effectful"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("10 millis")
        assert.strictEqual(yield* Deferred.await(got), "effectful")
      }))

    it.scoped("a handler that throws does not stop the world", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        const atServer = recorder()
        yield* server.setHandler((data, remote) => {
          atServer.handler(data, remote)
          if (text(data) === "boom") throw new Error("boom")
        })
        const to = { family: "IPv4", ip: "198.51.100.7", port: 3478 } as const
        client.unsafeSend(bytes("boom"), to)
        client.unsafeSend(bytes("after"), to)
        yield* TestClock.adjust("10 millis")
        client.unsafeSend(bytes("later"), to)
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(atServer.received.map((r) => r.text), ["boom", "after", "later"])
      }))

    it.scoped("works with the Network.datagrams Stream view", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        const stream = yield* Network.datagrams(server)
        const fiber = yield* stream.pipe(Stream.take(2), Stream.runCollect, Effect.fork)
        client.unsafeSend(bytes("x"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        client.unsafeSend(bytes("y"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("10 millis")
        const got = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
        assert.deepStrictEqual(got.map((d) => [text(d.data), d.remote.port]), [["x", 49152], ["y", 49152]])
      }))

    it.scoped("counts and logs drops: NoHost at send time, PortUnreachable on arrival", () =>
      Effect.gen(function*() {
        const { a, world } = yield* twoHosts()
        const client = yield* a.network.bindUdp({ port: 4000 })
        yield* client.send(bytes("nobody"), { family: "IPv4", ip: "203.0.113.99", port: 3478 })
        yield* client.send(bytes("closed port"), { family: "IPv4", ip: "198.51.100.7", port: 9 })
        let stats = yield* world.stats
        assert.deepStrictEqual(stats.dropped, { ...noDrops, NoHost: 1 })
        yield* TestClock.adjust("10 millis")
        stats = yield* world.stats
        assert.deepStrictEqual(stats.dropped, { ...noDrops, NoHost: 1, PortUnreachable: 1 })
        assert.deepStrictEqual(stats.drops, [
          {
            at: 0,
            where: "internet",
            protocol: "udp",
            kind: "datagram",
            from: { family: "IPv4", ip: "192.0.2.1", port: 4000 },
            to: { family: "IPv4", ip: "203.0.113.99", port: 3478 },
            size: 6,
            reason: "NoHost"
          },
          {
            at: 10,
            where: "b",
            protocol: "udp",
            kind: "datagram",
            from: { family: "IPv4", ip: "192.0.2.1", port: 4000 },
            to: { family: "IPv4", ip: "198.51.100.7", port: 9 },
            size: 11,
            reason: "PortUnreachable"
          }
        ])
        assert.strictEqual(stats.sent, 2)
        assert.strictEqual(stats.delivered, 0)
        yield* world.resetStats
        assert.deepStrictEqual(yield* world.stats, { sent: 0, delivered: 0, dropped: noDrops, drops: [] })
      }))

    it.scoped("refuses to send across families, and counts it as FamilyMismatch", () =>
      Effect.gen(function*() {
        const { a, world } = yield* twoHosts()
        const client = yield* a.network.bindUdp()
        const error = yield* Effect.flip(client.send(bytes("x"), { family: "IPv6", ip: "2001:db8::7", port: 3478 }))
        assert.strictEqual(error.reason, "Unreachable")
        assert.strictEqual(error.operation, "send")
        client.unsafeSend(bytes("x"), { family: "IPv6", ip: "2001:db8::7", port: 3478 })
        assert.strictEqual(client.sendFailures(), 1)
        assert.strictEqual((yield* world.stats).dropped.FamilyMismatch, 2)
        const invalid = yield* Effect.flip(client.send(bytes("x"), { family: "IPv4", ip: "198.51.100.7", port: 0 }))
        assert.strictEqual(invalid.reason, "InvalidAddress")
        const tooLarge = yield* Effect.flip(
          client.send(new Uint8Array(65508), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        )
        assert.strictEqual(tooLarge.reason, "MessageTooLarge")
      }))

    it.scoped("bind: port 0 counts up from 49152, explicit busy ports and wildcard overlaps fail AddressInUse", () =>
      Effect.gen(function*() {
        const { a } = yield* twoHosts()
        const first = yield* a.network.bindUdp()
        const second = yield* a.network.bindUdp({ address: "192.0.2.1" })
        const v6 = yield* a.network.bindUdp({ family: "IPv6" })
        assert.deepStrictEqual([first.local.port, second.local.port, v6.local.port], [49152, 49153, 49154])

        yield* a.network.bindUdp({ address: "192.0.2.1", port: 3478 })
        const same = yield* Effect.flip(a.network.bindUdp({ address: "192.0.2.1", port: 3478 }))
        assert.deepStrictEqual([same.reason, same.operation, same.address], ["AddressInUse", "bind", "192.0.2.1:3478"])
        const wildcard = yield* Effect.flip(a.network.bindUdp({ port: 3478 }))
        assert.strictEqual(wildcard.reason, "AddressInUse")
        // Another family is another port space.
        const other = yield* a.network.bindUdp({ family: "IPv6", port: 3478 })
        assert.strictEqual(other.local.port, 3478)
        yield* a.network.bindUdp({ port: 5000 })
        const specific = yield* Effect.flip(a.network.bindUdp({ address: "192.0.2.1", port: 5000 }))
        assert.strictEqual(specific.reason, "AddressInUse")
      }))

    it.scoped("bind: an address that is not the host's fails AddressNotAvailable, a bad one InvalidAddress", () =>
      Effect.gen(function*() {
        const { world } = yield* twoHosts()
        const v4only = yield* world.addHost({ name: "c", addresses: ["203.0.113.5"] })
        const foreign = yield* Effect.flip(v4only.network.bindUdp({ address: "198.51.100.7" }))
        assert.deepStrictEqual([foreign.reason, foreign.address], ["AddressNotAvailable", "198.51.100.7"])
        const noV6 = yield* Effect.flip(v4only.network.bindUdp({ family: "IPv6" }))
        assert.strictEqual(noV6.reason, "AddressNotAvailable")
        const garbage = yield* Effect.flip(v4only.network.bindUdp({ address: "not an ip" }))
        assert.strictEqual(garbage.reason, "InvalidAddress")
        const mismatch = yield* Effect.flip(v4only.network.bindUdp({ address: "203.0.113.5", family: "IPv6" }))
        assert.strictEqual(mismatch.reason, "InvalidAddress")
      }))

    it.scoped("bind: portRange takes a free port of the range, and fails AddressInUse when all are busy", () =>
      Effect.gen(function*() {
        const { a } = yield* twoHosts({ seed: 42 })
        const ports: Array<number> = []
        for (let i = 0; i < 3; i++) ports.push((yield* a.network.bindUdp({ portRange: [40000, 40002] })).local.port)
        assert.deepStrictEqual([...ports].sort(), [40000, 40001, 40002])
        const full = yield* Effect.flip(a.network.bindUdp({ portRange: [40000, 40002] }))
        assert.strictEqual(full.reason, "AddressInUse")
      }))

    it.scoped("after the socket's scope closes, sends fail Closed and packets to it drop as SocketClosed", () =>
      Effect.gen(function*() {
        const { a, b, world } = yield* twoHosts()
        const scope = yield* Scope.make()
        const server = yield* b.network.bindUdp({ port: 3478 }).pipe(Scope.extend(scope))
        const client = yield* a.network.bindUdp()
        client.unsafeSend(bytes("in flight"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* Scope.close(scope, Exit.void)
        const error = yield* Effect.flip(server.send(bytes("late"), { family: "IPv4", ip: "192.0.2.1", port: 49152 }))
        assert.deepStrictEqual([error.reason, error.operation], ["Closed", "send"])
        server.unsafeSend(bytes("late"), { family: "IPv4", ip: "192.0.2.1", port: 49152 })
        assert.strictEqual(server.sendFailures(), 1)
        yield* TestClock.adjust("10 millis")
        const stats = yield* world.stats
        assert.deepStrictEqual(stats.dropped, { ...noDrops, SocketClosed: 1 })
        assert.deepStrictEqual(stats.drops.map((d) => [d.at, d.where, d.reason]), [[10, "b", "SocketClosed"]])
        // The port is free again.
        const again = yield* b.network.bindUdp({ port: 3478 })
        assert.strictEqual(again.local.port, 3478)
      }))

    it.scoped("a host's latency is added to its access link: 0 + 10 + 15 = 25 ms each way", () =>
      Effect.gen(function*() {
        const { a, world } = yield* twoHosts()
        const far = yield* world.addHost({ name: "far", addresses: ["203.0.113.9"], latency: "15 millis" })
        const client = yield* a.network.bindUdp()
        const server = yield* far.network.bindUdp({ port: 3478 })
        const atServer = recorder()
        yield* server.setHandler((data, remote) => {
          atServer.handler(data, remote)
          server.unsafeSend(data, remote)
        })
        const atClient = recorder()
        yield* client.setHandler(atClient.handler)
        client.unsafeSend(bytes("hi"), { family: "IPv4", ip: "203.0.113.9", port: 3478 })
        yield* TestClock.adjust("24 millis")
        assert.strictEqual(atServer.received.length, 0)
        yield* TestClock.adjust("1 millis")
        assert.strictEqual(atServer.received.length, 1)
        yield* TestClock.adjust("24 millis")
        assert.strictEqual(atClient.received.length, 0)
        yield* TestClock.adjust("1 millis")
        assert.strictEqual(atClient.received.length, 1)
      }))

    it.scoped("the world's latency option sets the internet's one-way delay", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts({ latency: "40 millis" })
        const client = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        const atServer = recorder()
        yield* server.setHandler(atServer.handler)
        client.unsafeSend(bytes("hi"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("39 millis")
        assert.strictEqual(atServer.received.length, 0)
        yield* TestClock.adjust("1 millis")
        assert.strictEqual(atServer.received.length, 1)
      }))

    it.scoped("a host reaches its own addresses in 0 ms, asynchronously", () =>
      Effect.gen(function*() {
        const { a } = yield* twoHosts()
        const one = yield* a.network.bindUdp({ address: "192.0.2.1" })
        const two = yield* a.network.bindUdp({ address: "192.0.2.1" })
        const atTwo = recorder()
        yield* two.setHandler(atTwo.handler)
        one.unsafeSend(bytes("loop"), { family: "IPv4", ip: "192.0.2.1", port: two.local.port })
        assert.strictEqual(atTwo.received.length, 0)
        yield* TestClock.adjust("0 millis")
        assert.deepStrictEqual(atTwo.received, [
          { text: "loop", remote: { family: "IPv4", ip: "192.0.2.1", port: one.local.port } }
        ])
      }))

    it.scoped("an earlier packet sent after a later one still arrives first", () =>
      Effect.gen(function*() {
        const { a, b, world } = yield* twoHosts()
        const far = yield* world.addHost({ name: "far", addresses: ["203.0.113.9"], latency: "100 millis" })
        const client = yield* far.network.bindUdp()
        const near = yield* a.network.bindUdp()
        const server = yield* b.network.bindUdp({ port: 3478 })
        const atServer = recorder()
        yield* server.setHandler(atServer.handler)
        client.unsafeSend(bytes("slow"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("5 millis")
        near.unsafeSend(bytes("fast"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("10 millis")
        assert.deepStrictEqual(atServer.received.map((r) => r.text), ["fast"])
        yield* TestClock.adjust("94 millis")
        assert.deepStrictEqual(atServer.received.map((r) => r.text), ["fast"])
        yield* TestClock.adjust("1 millis")
        assert.deepStrictEqual(atServer.received.map((r) => r.text), ["fast", "slow"])
      }))

    it.scoped("keeps a bounded trace when asked", () =>
      Effect.gen(function*() {
        const { a, b, world } = yield* twoHosts({ trace: true, logLimit: 2 })
        const client = yield* a.network.bindUdp()
        yield* b.network.bindUdp({ port: 3478 }).pipe(Effect.flatMap((s) => s.setHandler(() => {})))
        client.unsafeSend(bytes("1"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        client.unsafeSend(bytes("2"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("10 millis")
        const trace = yield* world.trace
        assert.deepStrictEqual(trace.map((e) => [e.at, e.event, e.size]), [[10, "delivered", 1], [10, "delivered", 1]])
        const quiet = yield* VirtualNetwork.make()
        assert.deepStrictEqual(yield* quiet.trace, [])
      }))
  })

  describe("TCP", () => {
    it.scoped("listenTls is a plain TCP listener: connectTcp and connectTls both reach it", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const listener = yield* b.network.listenTls(
          { port: 5349, certificate: "not a PEM", key: "nor this" },
          (socket) =>
            Effect.gen(function*() {
              yield* socket.setHandler((chunk) => socket.unsafeWrite(chunk))
              yield* Effect.ignore(socket.closed)
            })
        )
        assert.deepStrictEqual(listener.local, { family: "IPv4", ip: "0.0.0.0", port: 5349, transport: "tcp" })
        for (const connect of [a.network.connectTcp, a.network.connectTls]) {
          const connecting = yield* Effect.fork(connect({ family: "IPv4", ip: "198.51.100.7", port: 5349 }))
          yield* TestClock.adjust("20 millis")
          const client = yield* Fiber.join(connecting)
          const received: Array<string> = []
          yield* client.setHandler((chunk) => {
            received.push(text(chunk))
          })
          yield* client.write(bytes("hello"))
          yield* TestClock.adjust("20 millis")
          assert.deepStrictEqual(received, ["hello"])
        }
      }))

    it.scoped("connectTls is a plain TCP connection (the simulator does not encrypt; certificates are ignored)", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        yield* b.network.listenTcp({ port: 5349 }, (socket) =>
          Effect.gen(function*() {
            yield* socket.setHandler((chunk) => socket.unsafeWrite(chunk))
            yield* Effect.ignore(socket.closed)
          }))
        const connecting = yield* Effect.fork(
          a.network.connectTls({ family: "IPv4", ip: "198.51.100.7", port: 5349 }, { ca: "not a PEM", serverName: "x" })
        )
        yield* TestClock.adjust("20 millis")
        const client = yield* Fiber.join(connecting)
        assert.deepStrictEqual(client.remote, { family: "IPv4", ip: "198.51.100.7", port: 5349, transport: "tcp" })
        const received: Array<string> = []
        yield* client.setHandler((chunk) => {
          received.push(text(chunk))
        })
        yield* client.write(bytes("plain"))
        yield* TestClock.adjust("20 millis")
        assert.deepStrictEqual(received, ["plain"])
      }))

    it.scoped("connects after exactly one RTT, carries data both ways in order, and propagates close", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const serverReceived: Array<string> = []
        const serverSide = yield* Deferred.make<Network.StreamSocket>()
        const serverEnded = yield* Deferred.make<void>()
        const listener = yield* b.network.listenTcp({ port: 443 }, (socket) =>
          Effect.gen(function*() {
            yield* Deferred.succeed(serverSide, socket)
            yield* socket.setHandler((chunk) => {
              serverReceived.push(text(chunk))
              socket.unsafeWrite(bytes(text(chunk).toUpperCase()))
            })
            yield* Effect.orDie(socket.closed)
            yield* Deferred.succeed(serverEnded, undefined)
          }))
        assert.deepStrictEqual(listener.local, { family: "IPv4", ip: "0.0.0.0", port: 443, transport: "tcp" })

        const connecting = yield* Effect.fork(a.network.connectTcp({ family: "IPv4", ip: "198.51.100.7", port: 443 }))
        yield* TestClock.adjust("19 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(connecting)))
        yield* TestClock.adjust("1 millis")
        const client = yield* Fiber.join(connecting)
        assert.deepStrictEqual(client.local, { family: "IPv4", ip: "192.0.2.1", port: 49152, transport: "tcp" })
        assert.deepStrictEqual(client.remote, { family: "IPv4", ip: "198.51.100.7", port: 443, transport: "tcp" })
        const server = yield* Deferred.await(serverSide)
        assert.deepStrictEqual(server.local, { family: "IPv4", ip: "198.51.100.7", port: 443, transport: "tcp" })
        assert.deepStrictEqual(server.remote, { family: "IPv4", ip: "192.0.2.1", port: 49152, transport: "tcp" })

        const clientReceived: Array<string> = []
        yield* client.setHandler((chunk) => {
          clientReceived.push(text(chunk))
        })
        for (const word of ["one", "two", "three"]) yield* client.write(bytes(word))
        yield* TestClock.adjust("9 millis")
        assert.deepStrictEqual(serverReceived, [])
        yield* TestClock.adjust("1 millis")
        assert.deepStrictEqual(serverReceived, ["one", "two", "three"])
        yield* TestClock.adjust("9 millis")
        assert.deepStrictEqual(clientReceived, [])
        yield* TestClock.adjust("1 millis")
        assert.deepStrictEqual(clientReceived, ["ONE", "TWO", "THREE"])

        // t = 40: the client closes; the server's `closed` ends (successfully) at 50.
        yield* client.close
        const writeAfterClose = yield* Effect.flip(client.write(bytes("late")))
        assert.strictEqual(writeAfterClose.reason, "Closed")
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(client.closed)))
        yield* TestClock.adjust("9 millis")
        assert.isFalse(yield* Deferred.isDone(serverEnded))
        yield* TestClock.adjust("1 millis")
        yield* Deferred.await(serverEnded)
        assert.strictEqual((yield* Effect.flip(server.write(bytes("x")))).reason, "Closed")
      }))

    it.scoped("the server closing ends the client's closed after one way", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        yield* b.network.listenTcp({ port: 443 }, (socket) => socket.write(bytes("bye")).pipe(Effect.orDie))
        const connecting = yield* Effect.fork(a.network.connectTcp({ family: "IPv4", ip: "198.51.100.7", port: 443 }))
        yield* TestClock.adjust("20 millis")
        const client = yield* Fiber.join(connecting)
        // The server wrote and closed at 10 ms; the data and the FIN arrive at 20 ms, before the handler is set.
        const closed = yield* Effect.fork(client.closed)
        yield* TestClock.adjust("0 millis")
        assert.isTrue(Option.isSome(yield* Fiber.poll(closed)))
        const received: Array<string> = []
        yield* client.setHandler((chunk) => {
          received.push(text(chunk))
        })
        assert.deepStrictEqual(received, ["bye"])
      }))

    it.scoped("fails with ConnectionRefused after one RTT when nothing listens", () =>
      Effect.gen(function*() {
        const { a, world } = yield* twoHosts()
        const connecting = yield* Effect.fork(
          Effect.flip(a.network.connectTcp({ family: "IPv4", ip: "198.51.100.7", port: 443 }))
        )
        yield* TestClock.adjust("19 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(connecting)))
        yield* TestClock.adjust("1 millis")
        const error = yield* Fiber.join(connecting)
        assert.deepStrictEqual([error.reason, error.operation, error.address], [
          "ConnectionRefused",
          "connect",
          "198.51.100.7:443"
        ])
        const stats = yield* world.stats
        assert.deepStrictEqual(stats.drops.map((d) => [d.at, d.kind, d.reason]), [[10, "SYN", "PortUnreachable"]])
        // The refused connection released its port.
        const next = yield* Effect.fork(
          Effect.flip(a.network.connectTcp({ family: "IPv4", ip: "198.51.100.7", port: 443 }))
        )
        yield* TestClock.adjust("20 millis")
        yield* Fiber.join(next)
      }))

    it.scoped("fails with ConnectFailed after connectTimeout when the SYN goes nowhere", () =>
      Effect.gen(function*() {
        const { a, world } = yield* twoHosts({ connectTimeout: "5 seconds" })
        const connecting = yield* Effect.fork(
          Effect.flip(a.network.connectTcp({ family: "IPv4", ip: "203.0.113.99", port: 443 }))
        )
        yield* TestClock.adjust("4999 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(connecting)))
        yield* TestClock.adjust("1 millis")
        assert.strictEqual((yield* Fiber.join(connecting)).reason, "ConnectFailed")
        assert.strictEqual((yield* world.stats).dropped.NoHost, 1)
      }))

    it.scoped("closing the listener's scope ends its connections; then SYNs are refused", () =>
      Effect.gen(function*() {
        const { a, b, world } = yield* twoHosts()
        const scope = yield* Scope.make()
        yield* b.network.listenTcp({ port: 443 }, (socket) => Effect.orDie(socket.closed)).pipe(Scope.extend(scope))
        const connecting = yield* Effect.fork(a.network.connectTcp({ family: "IPv4", ip: "198.51.100.7", port: 443 }))
        yield* TestClock.adjust("20 millis")
        const client = yield* Fiber.join(connecting)
        const clientClosed = yield* Effect.fork(client.closed)
        yield* Scope.close(scope, Exit.void)
        yield* TestClock.adjust("9 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(clientClosed)))
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(clientClosed)
        const refused = yield* Effect.fork(
          Effect.flip(a.network.connectTcp({ family: "IPv4", ip: "198.51.100.7", port: 443 }))
        )
        yield* TestClock.adjust("20 millis")
        assert.strictEqual((yield* Fiber.join(refused)).reason, "ConnectionRefused")
        assert.strictEqual((yield* world.stats).dropped.SocketClosed, 1)
      }))

    it.scoped("connects over IPv6 from a chosen local address and port", () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoHosts()
        const remotes: Array<TransportAddress> = []
        yield* b.network.listenTcp({ family: "IPv6", port: 443 }, (socket) =>
          Effect.sync(() => {
            remotes.push(socket.remote)
          }))
        const connecting = yield* Effect.fork(
          a.network.connectTcp({ family: "IPv6", ip: "2001:db8::7", port: 443 }, {
            localAddress: "2001:db8::1",
            localPort: 6000
          })
        )
        yield* TestClock.adjust("20 millis")
        const client = yield* Fiber.join(connecting)
        assert.deepStrictEqual(client.local, { family: "IPv6", ip: "2001:db8::1", port: 6000, transport: "tcp" })
        assert.deepStrictEqual(remotes, [{ family: "IPv6", ip: "2001:db8::1", port: 6000, transport: "tcp" }])
      }))

    it.scoped("listen: a busy port fails AddressInUse", () =>
      Effect.gen(function*() {
        const { b } = yield* twoHosts()
        yield* b.network.listenTcp({ port: 443 }, () => Effect.void)
        const error = yield* Effect.flip(b.network.listenTcp({ address: "198.51.100.7", port: 443 }, () => Effect.void))
        assert.deepStrictEqual([error.reason, error.operation], ["AddressInUse", "listen"])
        // UDP is another port space.
        yield* b.network.bindUdp({ port: 443 })
      }))
  })

  describe("worlds and hosts", () => {
    it.scoped("lookup resolves host names to their addresses, IPv4 first, and literals to themselves", () =>
      Effect.gen(function*() {
        const { a, world } = yield* twoHosts()
        yield* world.addHost({ name: "c", addresses: ["2001:db8::9", "203.0.113.9"] })
        assert.deepStrictEqual(yield* a.network.lookup("b"), [
          { family: "IPv4", ip: "198.51.100.7" },
          { family: "IPv6", ip: "2001:db8::7" }
        ])
        assert.deepStrictEqual(yield* a.network.lookup("c"), [
          { family: "IPv4", ip: "203.0.113.9" },
          { family: "IPv6", ip: "2001:db8::9" }
        ])
        assert.deepStrictEqual(yield* a.network.lookup("2001:DB8::0:1"), [{ family: "IPv6", ip: "2001:db8::1" }])
        const error = yield* Effect.flip(a.network.lookup("nowhere.example"))
        assert.deepStrictEqual([error.reason, error.operation], ["NotFound", "lookup"])
      }))

    it.scoped("lists a host's addresses as interfaces", () =>
      Effect.gen(function*() {
        const { a, world } = yield* twoHosts()
        assert.deepStrictEqual(yield* a.network.interfaces, [
          { name: "eth0", family: "IPv4", address: "192.0.2.1", prefixLength: 32, internal: false },
          { name: "eth0", family: "IPv6", address: "2001:db8::1", prefixLength: 128, internal: false }
        ])
        assert.deepStrictEqual(
          Option.map(world.host("a"), (h) => h.addresses),
          Option.some(["192.0.2.1", "2001:db8::1"])
        )
        assert.isTrue(Option.isNone(world.host("nobody")))
      }))

    it.scoped("provides a host's sockets as the Network service", () =>
      Effect.gen(function*() {
        const { a } = yield* twoHosts()
        const interfaces = yield* Effect.flatMap(Network.Network, (network) => network.interfaces).pipe(
          Effect.provide(VirtualNetwork.layer(a))
        )
        assert.deepStrictEqual(interfaces.map((i) => i.address), ["192.0.2.1", "2001:db8::1"])
      }))

    it.scoped("refuses duplicate names and addresses and addresses that do not parse", () =>
      Effect.gen(function*() {
        const { world } = yield* twoHosts()
        const name = yield* Effect.flip(world.addHost({ name: "a", addresses: ["203.0.113.1"] }))
        assert.strictEqual(name.reason, "DuplicateName")
        const address = yield* Effect.flip(world.addHost({ name: "c", addresses: ["2001:DB8::1"] }))
        assert.deepStrictEqual([address.reason, address.detail], ["DuplicateAddress", "2001:db8::1"])
        const bad = yield* Effect.flip(world.addHost({ name: "c", addresses: ["300.1.1.1"] }))
        assert.strictEqual(bad.reason, "InvalidAddress")
        const none = yield* Effect.flip(world.addHost({ name: "c", addresses: [] }))
        assert.strictEqual(none.reason, "InvalidAddress")
      }))

    it.scoped("two worlds are independent, even with the same addresses", () =>
      Effect.gen(function*() {
        const one = yield* VirtualNetwork.make()
        const two = yield* VirtualNetwork.make({ latency: "50 millis" })
        const a1 = yield* one.addHost({ name: "a", addresses: ["192.0.2.1"] })
        const a2 = yield* two.addHost({ name: "a", addresses: ["192.0.2.1"] })
        const b2 = yield* two.addHost({ name: "b", addresses: ["198.51.100.7"] })
        const server2 = yield* b2.network.bindUdp({ port: 3478 })
        const at2 = recorder()
        yield* server2.setHandler(at2.handler)
        const client1 = yield* a1.network.bindUdp()
        const client2 = yield* a2.network.bindUdp()
        // 198.51.100.7 exists only in world two.
        client1.unsafeSend(bytes("from one"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        client2.unsafeSend(bytes("from two"), { family: "IPv4", ip: "198.51.100.7", port: 3478 })
        yield* TestClock.adjust("50 millis")
        assert.deepStrictEqual(at2.received.map((r) => r.text), ["from two"])
        assert.deepStrictEqual((yield* one.stats).dropped, { ...noDrops, NoHost: 1 })
        assert.deepStrictEqual(yield* two.stats, { sent: 1, delivered: 1, dropped: noDrops, drops: [] })
      }))
  })

  describe("runInVirtualTime", () => {
    it("leaves the caller's live clock in place afterwards, so a real sleep there still wakes", async () => {
      const result = await Effect.runPromise(
        Effect.gen(function*() {
          const before = yield* Effect.clock
          const virtual = yield* VirtualNetwork.runInVirtualTime(
            Effect.as(Effect.sleep("10 minutes"), "slept"),
            { step: "1 minute", limit: "1 hour" }
          )
          const after = yield* Effect.clock
          const start = yield* Clock.currentTimeMillis
          const woke = yield* Effect.sleep("5 millis").pipe(Effect.as(true), Effect.timeout("2 seconds"))
          const elapsed = (yield* Clock.currentTimeMillis) - start
          // The failure and interruption paths leave it in place too.
          yield* Effect.flip(VirtualNetwork.runInVirtualTime(Effect.never, { step: "1 second", limit: "3 seconds" }))
          yield* Effect.flip(VirtualNetwork.runInVirtualTime(Effect.fail("boom")))
          const stillSame = (yield* Effect.clock) === before
          return { virtual, same: after === before, woke, elapsed, stillSame }
        })
      )
      assert.strictEqual(result.virtual, "slept")
      assert.isTrue(result.same)
      assert.isTrue(result.woke)
      assert.isAtLeast(result.elapsed, 4)
      assert.isTrue(result.stillSame)
    })

    it("keeps its errors and interruption", async () => {
      const exceeded = await Effect.runPromise(
        Effect.flip(VirtualNetwork.runInVirtualTime(Effect.never, { step: "1 second", limit: "10 seconds" }))
      )
      assert.deepStrictEqual([exceeded._tag, exceeded.limitMs], ["VirtualTimeExceeded", 10_000])
      const failed = await Effect.runPromise(Effect.flip(VirtualNetwork.runInVirtualTime(Effect.fail("boom"))))
      assert.strictEqual(failed, "boom")
      // Interrupting the caller interrupts the virtual-time run, and its finalizers run.
      const interrupted = await Effect.runPromise(
        Effect.gen(function*() {
          const started = yield* Deferred.make<void>()
          const finalized = yield* Deferred.make<void>()
          const fiber = yield* Effect.fork(
            VirtualNetwork.runInVirtualTime(
              Effect.zipRight(
                Effect.addFinalizer(() => Deferred.succeed(finalized, undefined)),
                Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
              ),
              { step: "1 millis", limit: "1 hour" }
            )
          )
          yield* Deferred.await(started)
          const exit = yield* Fiber.interrupt(fiber)
          const done = yield* Deferred.await(finalized).pipe(Effect.as(true), Effect.timeout("2 seconds"))
          return { interrupted: Exit.isInterrupted(exit), done }
        })
      )
      assert.deepStrictEqual(interrupted, { interrupted: true, done: true })
    })
  })
})
