/**
 * `NodeNetwork` on real loopback sockets (127.0.0.1 and ::1). Every port is one the OS chose (bind port 0, then use
 * the port we got) and every wait is bounded with `Effect.timeout`.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  Chunk,
  Context,
  Deferred,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  Option,
  Queue,
  Ref,
  Scope,
  Stream
} from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import { selfSignedCertificate } from "./tls.js"

const bytes = (...values: Array<number>) => Uint8Array.from(values)
const text = (s: string) => new TextEncoder().encode(s)
const decode = (b: Uint8Array) => new TextDecoder().decode(b)
const wait = "5 seconds"

const to = (socket: Network.DatagramSocket): SocketAddress => ({
  family: socket.local.family,
  ip: socket.local.ip,
  port: socket.local.port
})

interface Received {
  readonly data: Uint8Array
  readonly remote: SocketAddress
}

/** Installs a handler that records datagrams; `take(n)` waits (bounded) until `n` have arrived. */
const recorder = (socket: Network.DatagramSocket) =>
  Effect.gen(function*() {
    const received: Array<Received> = []
    const waiters: Array<{ readonly count: number; readonly done: Deferred.Deferred<void> }> = []
    yield* socket.setHandler((data, remote) => {
      received.push({ data, remote })
      for (const waiter of waiters) {
        if (received.length >= waiter.count) Deferred.unsafeDone(waiter.done, Exit.void)
      }
    })
    const take = (count: number) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<void>()
        waiters.push({ count, done })
        if (received.length >= count) yield* Deferred.succeed(done, undefined)
        yield* Deferred.await(done).pipe(Effect.timeout(wait))
        return received.slice(0, count)
      })
    return { received, take }
  })

const errorOf = <A>(effect: Effect.Effect<A, Network.NetworkError, Scope.Scope>) =>
  Effect.flip(effect).pipe(Effect.timeout(wait))

class Greeting extends Context.Tag("test/NodeNetwork/Greeting")<Greeting, string>() {}
const boundBy = FiberRef.unsafeMake("nobody")

describe("NodeNetwork UDP", () => {
  it.scopedLive("a handler's effect sees the services and fiber refs of the fiber that bound the socket", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const seen = yield* Queue.unbounded<string>()
      const bind = (name: string) =>
        network.bindUdp({ address: "127.0.0.1" }).pipe(
          Effect.provideService(Greeting, `hello ${name}`),
          Effect.locally(boundBy, name)
        )
      // Two sockets bound one after another with the same services (they may share a runtime), then another.
      const sockets = [yield* bind("a"), yield* bind("a"), yield* bind("c")]
      for (const socket of sockets) {
        yield* socket.setHandler(() =>
          Effect.flatMap(
            Effect.all([Effect.serviceOption(Greeting), FiberRef.get(boundBy)]),
            ([greeting, who]) => Queue.offer(seen, `${Option.getOrElse(greeting, () => "none")}/${who}`)
          )
        )
      }
      const results: Array<string> = []
      for (const socket of sockets) {
        yield* sockets[0]!.send(bytes(1), to(socket))
        results.push(yield* Queue.take(seen).pipe(Effect.timeout(wait)))
      }
      assert.deepStrictEqual(results, ["hello a/a", "hello a/a", "hello c/c"])
    }))

  it.scopedLive("two IPv4 sockets exchange datagrams both ways with exact bytes and sender addresses", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const b = yield* network.bindUdp({ address: "127.0.0.1" })
      assert.deepStrictEqual({ ...a.local, port: 0 }, { family: "IPv4", ip: "127.0.0.1", port: 0, transport: "udp" })
      assert.isAbove(a.local.port, 0)
      assert.notStrictEqual(a.local.port, b.local.port)
      const atA = yield* recorder(a)
      const atB = yield* recorder(b)

      yield* a.send(bytes(1, 2, 3, 0, 255), to(b))
      yield* b.send(bytes(9, 8, 7), to(a))
      b.unsafeSend(bytes(42), to(a))

      const [first] = yield* atB.take(1)
      assert.deepStrictEqual(Array.from(first!.data), [1, 2, 3, 0, 255])
      assert.deepStrictEqual(first!.remote, { family: "IPv4", ip: "127.0.0.1", port: a.local.port })
      const fromB = yield* atA.take(2)
      assert.deepStrictEqual(fromB.map((d) => Array.from(d.data)), [[9, 8, 7], [42]])
      for (const d of fromB) assert.deepStrictEqual(d.remote, { family: "IPv4", ip: "127.0.0.1", port: b.local.port })
      assert.strictEqual(a.sendFailures(), 0)
      assert.strictEqual(b.sendFailures(), 0)
    }))

  it.scopedLive("two IPv6 sockets on ::1 exchange datagrams both ways", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "::1" })
      const b = yield* network.bindUdp({ address: "::1" })
      assert.strictEqual(a.local.family, "IPv6")
      assert.strictEqual(a.local.ip, "::1")
      const atA = yield* recorder(a)
      const atB = yield* recorder(b)
      yield* a.send(text("over v6"), to(b))
      yield* b.send(text("and back"), to(a))
      const [atBFirst] = yield* atB.take(1)
      const [atAFirst] = yield* atA.take(1)
      assert.strictEqual(decode(atBFirst!.data), "over v6")
      assert.deepStrictEqual(atBFirst!.remote, { family: "IPv6", ip: "::1", port: a.local.port })
      assert.strictEqual(decode(atAFirst!.data), "and back")
      assert.deepStrictEqual(atAFirst!.remote, { family: "IPv6", ip: "::1", port: b.local.port })
    }))

  it.scopedLive("a wildcard bind reports the wildcard of its family and the port the OS chose", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const v4 = yield* network.bindUdp()
      assert.strictEqual(v4.local.ip, "0.0.0.0")
      assert.strictEqual(v4.local.family, "IPv4")
      assert.isAbove(v4.local.port, 0)
      const v6 = yield* network.bindUdp({ family: "IPv6" })
      assert.strictEqual(v6.local.ip, "::")
      assert.strictEqual(v6.local.family, "IPv6")
      // The IPv6 socket is IPv6-only, so the same port number can also be bound for IPv4.
      const v4Same = yield* network.bindUdp({ port: v6.local.port })
      assert.strictEqual(v4Same.local.port, v6.local.port)
      // A datagram to the IPv4 wildcard's port on loopback reaches it.
      const sender = yield* network.bindUdp({ address: "127.0.0.1" })
      const at = yield* recorder(v4)
      yield* sender.send(bytes(5), { family: "IPv4", ip: "127.0.0.1", port: v4.local.port })
      const [d] = yield* at.take(1)
      assert.deepStrictEqual(d!.remote, { family: "IPv4", ip: "127.0.0.1", port: sender.local.port })
    }))

  it.scopedLive("datagrams that arrive before setHandler are delivered, in order, when it is installed", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const b = yield* network.bindUdp({ address: "127.0.0.1" })
      for (let i = 0; i < 5; i++) yield* a.send(bytes(i), to(b))
      // Give the event loop time to read them while no handler is installed (the order is asserted either way).
      yield* Effect.sleep("100 millis")
      const atB = yield* recorder(b)
      assert.strictEqual(atB.received.length, 5, "all five were queued and replayed by setHandler itself")
      const got = yield* atB.take(5)
      assert.deepStrictEqual(got.map((d) => d.data[0]), [0, 1, 2, 3, 4])
      for (const d of got) assert.strictEqual(d.remote.port, a.local.port)
    }))

  it.scopedLive("keeps at most maxPendingDatagrams before a handler and drops the rest", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const b = yield* network.bindUdp({ address: "127.0.0.1" })
      const total = Network.maxPendingDatagrams + 10
      for (let i = 0; i < total; i++) yield* a.send(bytes(i >> 8, i & 0xff), to(b))
      yield* Effect.sleep("200 millis")
      const atB = yield* recorder(b)
      const numbers = atB.received.map((d) => (d.data[0]! << 8) | d.data[1]!)
      assert.deepStrictEqual(numbers, Array.from({ length: Network.maxPendingDatagrams }, (_, i) => i))
      // After the first handler, datagrams go straight to the handler again.
      yield* a.send(bytes(0xff, 0xff), to(b))
      const got = yield* atB.take(Network.maxPendingDatagrams + 1)
      assert.deepStrictEqual(Array.from(got[Network.maxPendingDatagrams]!.data), [0xff, 0xff])
    }))

  it.scopedLive("a handler that returns an Effect has it run", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const b = yield* network.bindUdp({ address: "127.0.0.1" })
      const seen = yield* Deferred.make<readonly [string, number]>()
      yield* b.setHandler((data, remote) => Deferred.succeed(seen, [decode(data), remote.port] as const))
      yield* a.send(text("effectful"), to(b))
      const result = yield* Deferred.await(seen).pipe(Effect.timeout(wait))
      assert.deepStrictEqual(result, ["effectful", a.local.port])
    }))

  it.scopedLive("a handler that throws is logged and the socket keeps receiving", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const b = yield* network.bindUdp({ address: "127.0.0.1" })
      const seen = yield* Deferred.make<number>()
      yield* b.setHandler((data) => {
        if (data[0] === 0) throw new Error("boom")
        Deferred.unsafeDone(seen, Exit.succeed(data[0]!))
      })
      yield* a.send(bytes(0), to(b))
      yield* a.send(bytes(7), to(b))
      assert.strictEqual(yield* Deferred.await(seen).pipe(Effect.timeout(wait)), 7)
    }))

  it.scopedLive("the Network.datagrams Stream view yields what arrives", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const b = yield* network.bindUdp({ address: "127.0.0.1" })
      const stream = yield* Network.datagrams(b)
      const fiber = yield* Stream.take(stream, 3).pipe(Stream.runCollect, Effect.timeout(wait), Effect.fork)
      for (const s of ["one", "two", "three"]) yield* a.send(text(s), to(b))
      const got = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      assert.deepStrictEqual(got.map((d) => decode(d.data)), ["one", "two", "three"])
      for (const d of got) assert.deepStrictEqual(d.remote, { family: "IPv4", ip: "127.0.0.1", port: a.local.port })
    }))

  it.scopedLive("binding a port that is already bound fails with AddressInUse", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const error = yield* errorOf(network.bindUdp({ address: "127.0.0.1", port: a.local.port }))
      assert.strictEqual(error._tag, "NetworkError")
      assert.strictEqual(error.reason, "AddressInUse")
      assert.strictEqual(error.operation, "bind")
      assert.strictEqual(error.address, `127.0.0.1:${a.local.port}`)
      assert.strictEqual((error.cause as { code?: string }).code, "EADDRINUSE")
    }))

  it.scopedLive("a portRange of one busy port fails with AddressInUse", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const p = a.local.port
      const error = yield* errorOf(network.bindUdp({ address: "127.0.0.1", portRange: [p, p] }))
      assert.strictEqual(error.reason, "AddressInUse")
      assert.strictEqual(error.address, `127.0.0.1:${p}-${p}`)
    }))

  it.scopedLive("a portRange of several ports binds within the range, skipping busy ones", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const busy = yield* network.bindUdp({ address: "127.0.0.1" })
      const p = busy.local.port
      const lo = Math.min(p, 65535 - 8)
      const hi = lo + 8
      const ports = new Set<number>([p])
      for (let i = 0; i < 5; i++) {
        const s = yield* network.bindUdp({ address: "127.0.0.1", portRange: [lo, hi] })
        assert.isAtLeast(s.local.port, lo)
        assert.isAtMost(s.local.port, hi)
        assert.isFalse(ports.has(s.local.port), `port ${s.local.port} bound twice`)
        ports.add(s.local.port)
      }
    }))

  it.scopedLive("after its scope closes a socket's send fails with Closed and its port can be bound again", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const peer = yield* network.bindUdp({ address: "127.0.0.1" })
      const old = yield* Effect.scoped(network.bindUdp({ address: "127.0.0.1" }))
      const error = yield* Effect.flip(old.send(bytes(1), to(peer)))
      assert.strictEqual(error.reason, "Closed")
      assert.strictEqual(error.operation, "send")
      old.unsafeSend(bytes(1), to(peer))
      assert.strictEqual(old.sendFailures(), 1)
      const again = yield* network.bindUdp({ address: "127.0.0.1", port: old.local.port })
      assert.strictEqual(again.local.port, old.local.port)
    }))

  it.scopedLive("an IPv4 socket sending to ::1 fails with InvalidAddress instead of throwing", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const target: SocketAddress = { family: "IPv6", ip: "::1", port: 9 }
      const error = yield* Effect.flip(a.send(bytes(1), target))
      assert.strictEqual(error.reason, "InvalidAddress")
      assert.strictEqual(error.address, "[::1]:9")
      a.unsafeSend(bytes(1), target)
      assert.strictEqual(a.sendFailures(), 1)
      const v6 = yield* network.bindUdp({ address: "::1" })
      const back = yield* Effect.flip(v6.send(bytes(1), { family: "IPv4", ip: "127.0.0.1", port: 9 }))
      assert.strictEqual(back.reason, "InvalidAddress")
    }))

  it.scopedLive("a datagram larger than UDP allows fails with MessageTooLarge", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const a = yield* network.bindUdp({ address: "127.0.0.1" })
      const b = yield* network.bindUdp({ address: "127.0.0.1" })
      const error = yield* Effect.flip(a.send(new Uint8Array(70_000), to(b))).pipe(Effect.timeout(wait))
      assert.strictEqual(error.reason, "MessageTooLarge")
      a.unsafeSend(new Uint8Array(70_000), to(b))
      yield* a.send(bytes(1), to(b)) // the unsafeSend callback has run once a later send completed
      assert.strictEqual(a.sendFailures(), 1)
    }))

  it.scopedLive("bad bind options fail with InvalidAddress", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const host = yield* errorOf(network.bindUdp({ address: "localhost" }))
      assert.strictEqual(host.reason, "InvalidAddress")
      const mismatch = yield* errorOf(network.bindUdp({ address: "127.0.0.1", family: "IPv6" }))
      assert.strictEqual(mismatch.reason, "InvalidAddress")
      const range = yield* errorOf(network.bindUdp({ address: "127.0.0.1", portRange: [2000, 1000] }))
      assert.strictEqual(range.reason, "InvalidAddress")
      const port = yield* errorOf(network.bindUdp({ address: "127.0.0.1", port: 70000 }))
      assert.strictEqual(port.reason, "InvalidAddress")
    }))

  it.scopedLive("binding an address this host does not have fails with AddressNotAvailable", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a real interface.
      const error = yield* errorOf(network.bindUdp({ address: "192.0.2.1" }))
      assert.strictEqual(error.reason, "AddressNotAvailable")
    }))
})

/** `count` bytes of a pattern no misordering or duplication could reproduce. */
const pattern = (count: number, seed: number) => {
  const out = new Uint8Array(count)
  for (let i = 0; i < count; i++) out[i] = (i * 7 + seed + (i >> 8)) & 0xff
  return out
}

const concat = (chunks: ReadonlyArray<Uint8Array>) => {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let offset = 0
  for (const c of chunks) {
    out.set(c, offset)
    offset += c.length
  }
  return out
}

/** Installs a chunk handler that collects bytes; `until(n)` waits (bounded) for at least `n` bytes. */
const collector = (socket: Network.StreamSocket) =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    let total = 0
    let want = Infinity
    const enough = yield* Deferred.make<void>()
    yield* socket.setHandler((chunk) => {
      chunks.push(chunk)
      total += chunk.length
      if (total >= want) Deferred.unsafeDone(enough, Exit.void)
    })
    const until = (count: number) =>
      Effect.gen(function*() {
        want = count
        if (total >= count) yield* Deferred.succeed(enough, undefined)
        yield* Deferred.await(enough).pipe(Effect.timeout(wait))
        return concat(chunks)
      })
    return { chunks, until }
  })

describe("NodeNetwork TCP", () => {
  it.scopedLive("1 MB each way over loopback arrives intact and in order", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const serverSide = yield* Deferred.make<Network.StreamSocket>()
      const listener = yield* network.listenTcp({ address: "127.0.0.1" }, (socket) =>
        Effect.gen(function*() {
          yield* Deferred.succeed(serverSide, socket)
          // Echo every chunk back as it arrives (plain code in the handler), until the client leaves.
          yield* socket.setHandler((chunk) => socket.unsafeWrite(chunk))
          yield* socket.closed.pipe(Effect.ignore)
        }))
      assert.strictEqual(listener.local.ip, "127.0.0.1")
      assert.isAbove(listener.local.port, 0)

      const client = yield* network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port: listener.local.port })
      assert.deepStrictEqual(client.remote, {
        family: "IPv4",
        ip: "127.0.0.1",
        port: listener.local.port,
        transport: "tcp"
      })
      const server = yield* Deferred.await(serverSide).pipe(Effect.timeout(wait))
      assert.deepStrictEqual(server.remote, client.local)
      assert.deepStrictEqual(server.local, client.remote)

      const echoed = yield* collector(client)
      const payload = pattern(1024 * 1024, 3)
      const sizes = [1, 1000, 65536, 7, 31337, 4096]
      for (let offset = 0, i = 0; offset < payload.length; i++) {
        const size = Math.min(sizes[i % sizes.length]!, payload.length - offset)
        yield* client.write(payload.subarray(offset, offset + size))
        offset += size
      }
      const back = yield* echoed.until(payload.length)
      assert.strictEqual(back.length, payload.length)
      assert.isTrue(Buffer.from(back).equals(Buffer.from(payload)), "echoed bytes differ")
    }))

  it.scopedLive("closed completes when the peer closes; chunks that came before setHandler are delivered", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const listener = yield* network.listenTcp(
        { address: "127.0.0.1" },
        // The connection closes when this effect ends.
        (socket) => Effect.orDie(Effect.zipRight(socket.write(text("hello, ")), socket.write(text("goodbye"))))
      )
      const client = yield* network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port: listener.local.port })
      const closed = yield* client.closed.pipe(Effect.timeout(wait), Effect.exit)
      assert.isTrue(Exit.isSuccess(closed), "orderly close succeeds")
      const got = yield* collector(client)
      assert.strictEqual(decode(concat(got.chunks)), "hello, goodbye")
      const error = yield* Effect.flip(client.write(text("late")))
      assert.strictEqual(error.reason, "Closed")
    }))

  it.scopedLive("a server-side handler that reads, then the client's close ends the server's closed", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const serverClosed = yield* Deferred.make<Exit.Exit<void, Network.NetworkError>>()
      const received = yield* Ref.make("")
      const listener = yield* network.listenTcp({ address: "127.0.0.1" }, (socket) =>
        Effect.gen(function*() {
          yield* socket.setHandler((chunk) => Ref.update(received, (s) => s + decode(chunk)))
          yield* Deferred.succeed(serverClosed, yield* Effect.exit(socket.closed))
        }))
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port: listener.local.port })
        yield* client.write(text("ping"))
      }))
      const exit = yield* Deferred.await(serverClosed).pipe(Effect.timeout(wait))
      assert.isTrue(Exit.isSuccess(exit))
      assert.strictEqual(yield* Ref.get(received), "ping")
    }))

  it.scopedLive("connecting to a port nobody listens on fails with ConnectionRefused", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const port = yield* Effect.scoped(
        Effect.map(network.listenTcp({ address: "127.0.0.1" }, () => Effect.void), (l) => l.local.port)
      )
      const error = yield* errorOf(network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port }))
      assert.strictEqual(error.reason, "ConnectionRefused")
      assert.strictEqual(error.operation, "connect")
      assert.strictEqual(error.address, `127.0.0.1:${port}`)
    }))

  it.scopedLive("listening on a port in use fails with AddressInUse", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const listener = yield* network.listenTcp({ address: "127.0.0.1" }, () => Effect.void)
      const error = yield* errorOf(
        network.listenTcp({ address: "127.0.0.1", port: listener.local.port }, () => Effect.void)
      )
      assert.strictEqual(error.reason, "AddressInUse")
      assert.strictEqual(error.operation, "listen")
    }))

  it.scopedLive("closing the listener's scope interrupts the connection fibers and closes their sockets", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const scope = yield* Scope.make()
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const listener = yield* network.listenTcp(
        { address: "127.0.0.1" },
        () =>
          Deferred.succeed(started, undefined).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
      ).pipe(Scope.extend(scope))
      const client = yield* network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port: listener.local.port })
      yield* Deferred.await(started).pipe(Effect.timeout(wait))
      assert.isFalse(yield* Deferred.isDone(interrupted))
      yield* Scope.close(scope, Exit.void)
      yield* Deferred.await(interrupted).pipe(Effect.timeout(wait))
      yield* client.closed.pipe(Effect.ignore, Effect.timeout(wait))
      // The listener is gone too.
      const error = yield* errorOf(network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port: listener.local.port }))
      assert.strictEqual(error.reason, "ConnectionRefused")
    }))

  it.scopedLive("a connection's scope closing closes it, and the peer sees it", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const serverClosed = yield* Deferred.make<void, Network.NetworkError>()
      const listener = yield* network.listenTcp({ address: "127.0.0.1" }, (socket) =>
        Effect.asVoid(Deferred.complete(serverClosed, socket.closed)))
      const client = yield* Effect.scoped(
        network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port: listener.local.port })
      )
      yield* Deferred.await(serverClosed).pipe(Effect.timeout(wait))
      assert.isTrue(Option.isSome(yield* Effect.timeout(client.closed, wait).pipe(Effect.option)))
      const error = yield* Effect.flip(client.write(bytes(1)))
      assert.strictEqual(error.reason, "Closed")
    }))

  it.scopedLive("a peer that closes with unread data resets the connection: closed fails with ConnectionReset", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const release = yield* Deferred.make<void>()
      // The server never reads: past maxPendingStreamBytes it pauses, the rest stays unread in the kernel, and
      // closing a socket with unread data makes the kernel answer with RST.
      const listener = yield* network.listenTcp({ address: "127.0.0.1" }, () => Deferred.await(release))
      const client = yield* network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port: listener.local.port })
      const piece = pattern(64 * 1024, 1)
      for (let i = 0; i < (4 * NodeNetwork.maxPendingStreamBytes) / piece.length; i++) client.unsafeWrite(piece)
      yield* Effect.sleep("200 millis")
      yield* Deferred.succeed(release, undefined)
      const error = yield* Effect.flip(client.closed).pipe(Effect.timeout(wait))
      assert.strictEqual(error.reason, "ConnectionReset")
      assert.strictEqual(error.address, `127.0.0.1:${listener.local.port}`)
    }))

  it.scopedLive("a write the peer never drained fails with Closed when the connection is closed", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const listener = yield* network.listenTcp({ address: "127.0.0.1" }, () => Effect.never)
      const client = yield* network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port: listener.local.port })
      // Far more than the server's pending limit plus both kernels' buffers can hold: the write cannot finish.
      const fiber = yield* Effect.fork(client.write(new Uint8Array(64 * 1024 * 1024)))
      yield* Effect.sleep("100 millis")
      yield* client.close
      const exit = yield* Fiber.await(fiber).pipe(Effect.timeout(wait))
      assert.deepStrictEqual(
        Exit.isFailure(exit) ? Option.map(Cause.failureOption(exit.cause), (e) => e.reason) : undefined,
        Option.some("Closed")
      )
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(client.closed)))
    }))

  it.scopedLive("IPv6: listen and connect on ::1", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const listener = yield* network.listenTcp({ address: "::1" }, (socket) =>
        Effect.gen(function*() {
          yield* socket.setHandler((chunk) => socket.unsafeWrite(chunk))
          yield* socket.closed.pipe(Effect.ignore)
        }))
      assert.deepStrictEqual(listener.local, { family: "IPv6", ip: "::1", port: listener.local.port, transport: "tcp" })
      const client = yield* network.connectTcp({ family: "IPv6", ip: "::1", port: listener.local.port })
      assert.strictEqual(client.local.family, "IPv6")
      assert.strictEqual(client.local.ip, "::1")
      const echoed = yield* collector(client)
      yield* client.write(text("v6 bytes"))
      assert.strictEqual(decode(yield* echoed.until(8)), "v6 bytes")
    }))
})

describe("NodeNetwork interfaces and layer", () => {
  it.live("lookup resolves localhost and IP literals", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      assert.deepStrictEqual(yield* network.lookup("127.0.0.1"), [{ family: "IPv4", ip: "127.0.0.1" }])
      assert.deepStrictEqual(yield* network.lookup("0:0::1"), [{ family: "IPv6", ip: "::1" }])
      const localhost = yield* network.lookup("localhost")
      assert.isTrue(localhost.some((a) => a.ip === "127.0.0.1" || a.ip === "::1"), JSON.stringify(localhost))
      // IPv4 first: no IPv6 entry comes before an IPv4 one.
      const firstV6 = localhost.findIndex((a) => a.family === "IPv6")
      assert.isTrue(firstV6 < 0 || localhost.slice(firstV6).every((a) => a.family === "IPv6"))
    }))

  it.effect("interfaces includes the IPv4 loopback as an internal /8", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const all = yield* network.interfaces
      const loopback = all.find((i) => i.address === "127.0.0.1")
      assert.isDefined(loopback)
      assert.strictEqual(loopback!.family, "IPv4")
      assert.strictEqual(loopback!.internal, true)
      assert.strictEqual(loopback!.prefixLength, 8)
      const v6 = all.find((i) => i.address === "::1")
      if (v6 !== undefined) assert.strictEqual(v6.prefixLength, 128)
    }))

  it.scopedLive("layer provides Network", () =>
    Effect.gen(function*() {
      const network = yield* Network.Network
      const socket = yield* network.bindUdp({ address: "127.0.0.1" })
      assert.isAbove(socket.local.port, 0)
    }).pipe(Effect.provide(NodeNetwork.layer)))
})

/** A self-signed certificate for `localhost` and 127.0.0.1, made with `openssl` in a temporary directory. */
const selfSigned = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ice-tls-"))
    const { cert, key } = selfSignedCertificate(dir, ["127.0.0.1"])
    return { dir, key: Fs.readFileSync(key, "utf8"), cert: Fs.readFileSync(cert, "utf8") }
  }),
  ({ dir }) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** A `node:tls` echo server on 127.0.0.1 for the lifetime of the scope; gives its port. */
const tlsEchoServer = (key: string, cert: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Tls.Server; readonly port: number }>((resume) => {
      const server = Tls.createServer({ key, cert }, (socket) => {
        socket.on("error", () => {})
        socket.pipe(socket)
      })
      server.on("tlsClientError", () => {})
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed({ server, port: typeof address === "object" && address !== null ? address.port : 0 }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
  )

describe("NodeNetwork TLS", () => {
  it.scopedLive("connectTls to a node:tls echo server, verified with the test's own CA, echoes bytes", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const { cert, key } = yield* selfSigned
      const { port } = yield* tlsEchoServer(key, cert)
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* network.connectTls({ family: "IPv4", ip: "127.0.0.1", port }, { ca: cert }).pipe(
          Effect.timeout(wait)
        )
        assert.deepStrictEqual(client.remote, { family: "IPv4", ip: "127.0.0.1", port, transport: "tcp" })
        assert.strictEqual(client.local.ip, "127.0.0.1")
        assert.isAbove(client.local.port, 0)
        const echoed = yield* collector(client)
        const payload = pattern(100_000, 5)
        yield* client.write(payload.subarray(0, 1))
        yield* client.write(payload.subarray(1))
        const back = yield* echoed.until(payload.length)
        assert.isTrue(Buffer.from(back).equals(Buffer.from(payload)), "echoed bytes differ")
      }))
    }))

  it.scopedLive("listenTls serves connectTls: the handshake verifies, plaintext both ways; no handshake, no call", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const { cert, key } = yield* selfSigned
      const accepted: Array<SocketAddress> = []
      const listener = yield* network.listenTls(
        { address: "127.0.0.1", port: 0, certificate: cert, key },
        (socket) =>
          Effect.gen(function*() {
            accepted.push(socket.remote)
            yield* socket.setHandler((chunk) => socket.unsafeWrite(chunk))
            yield* Effect.ignore(socket.closed)
          })
      )
      assert.strictEqual(listener.local.ip, "127.0.0.1")
      assert.isAbove(listener.local.port, 0)
      const port = listener.local.port
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* network.connectTls({ family: "IPv4", ip: "127.0.0.1", port }, { ca: cert }).pipe(
          Effect.timeout(wait)
        )
        const echoed = yield* collector(client)
        const payload = pattern(50_000, 3)
        yield* client.write(payload)
        const back = yield* echoed.until(payload.length)
        assert.isTrue(Buffer.from(back).equals(Buffer.from(payload)), "echoed bytes differ")
        assert.deepStrictEqual(accepted.map((a) => [a.ip, a.port]), [["127.0.0.1", client.local.port]])
      }))
      // A plain TCP client that never completes a handshake is not handed to onConnection.
      yield* Effect.scoped(Effect.gen(function*() {
        const plainClient = yield* network.connectTcp({ family: "IPv4", ip: "127.0.0.1", port })
        yield* plainClient.write(new TextEncoder().encode("not a TLS ClientHello\r\n"))
        yield* Effect.ignore(plainClient.closed.pipe(Effect.timeout(wait)))
      }))
      assert.strictEqual(accepted.length, 1)
      // A key that is not PEM fails the listen.
      const error = yield* errorOf(
        network.listenTls({ address: "127.0.0.1", port: 0, certificate: cert, key: "not a key" }, () => Effect.void)
      )
      assert.strictEqual(error.reason, "TlsFailed")
      assert.strictEqual(error.operation, "listen")
    }))

  it.scopedLive("a certificate that does not verify fails with TlsFailed", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const { cert, key } = yield* selfSigned
      const { port } = yield* tlsEchoServer(key, cert)
      const error = yield* errorOf(network.connectTls({ family: "IPv4", ip: "127.0.0.1", port }))
      assert.strictEqual(error.reason, "TlsFailed")
      assert.strictEqual(error.operation, "connect")
      assert.strictEqual(error.address, `127.0.0.1:${port}`)
      assert.instanceOf(error.cause, Error)
      // And the wrong name fails too, even with the right CA.
      const wrongName = yield* errorOf(
        network.connectTls({ family: "IPv4", ip: "127.0.0.1", port }, { ca: cert, serverName: "example.com" })
      )
      assert.strictEqual(wrongName.reason, "TlsFailed")
      // Not verifying connects.
      yield* Effect.scoped(
        network.connectTls({ family: "IPv4", ip: "127.0.0.1", port }, { rejectUnauthorized: false }).pipe(
          Effect.timeout(wait)
        )
      )
    }))
})
