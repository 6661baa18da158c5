/**
 * `TurnServer` dual-stack allocations (RFC 8656 §7.2 ADDITIONAL-ADDRESS-FAMILY, REQUESTED-ADDRESS-FAMILY,
 * ADDRESS-ERROR-CODE, 440, 443): on `VirtualNetwork` under `TestClock` (10 ms one way), an IPv4-only peer and an
 * IPv6-only peer relayed through one allocation of our `TurnClient`; and on loopback (127.0.0.1 and ::1) with
 * `NodeNetwork`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Either, Exit, Fiber, Queue, Scope, Stream, TestClock } from "effect"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunMessage from "../src/StunMessage.js"
import * as StunTransaction from "../src/StunTransaction.js"
import type { SocketAddress } from "../src/TransportAddress.js"
import * as TurnClient from "../src/TurnClient.js"
import * as TurnServer from "../src/TurnServer.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"
import { run } from "./virtualTime.js"

const serverIp = "192.0.2.1"
const relay4 = "192.0.2.10"
const relay6 = "2001:db8::10"
const clientIp = "198.51.100.7"
const peer4Ip = "203.0.113.5"
const peer6Ip = "2001:db8:1::5"
const server: SocketAddress = { family: "IPv4", ip: serverIp, port: 3478 }
const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const v6 = (ip: string, port: number): SocketAddress => ({ family: "IPv6", ip, port })
const alice = { mode: "static", username: "alice", password: "secret" } as const

const setup = (options: Partial<TurnServer.Options> = {}) =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make()
    const serverHost = yield* world.addHost({ name: "server", addresses: [serverIp, relay4, relay6] })
    const clientHost = yield* world.addHost({ name: "client", addresses: [clientIp] })
    const peer4Host = yield* world.addHost({ name: "peer4", addresses: [peer4Ip] })
    const peer6Host = yield* world.addHost({ name: "peer6", addresses: [peer6Ip] })
    const turn = yield* TurnServer.make({
      addresses: [serverIp],
      relayAddresses: [relay4, relay6],
      realm: "example.org",
      users: { alice: "secret" },
      ...options
    }).pipe(Effect.provideService(Network.Network, serverHost.network))
    return { world, serverHost, clientHost, peer4Host, peer6Host, turn }
  })

/** A UDP socket that records what arrives. */
const peerSocket = (host: VirtualNetwork.Host, address: string, port: number) =>
  Effect.gen(function*() {
    const socket = yield* host.network.bindUdp({ address, port })
    const received: Array<{ readonly data: ReadonlyArray<number>; readonly from: SocketAddress }> = []
    yield* socket.setHandler((data, from) => {
      received.push({ data: [...data], from })
    })
    return { socket, received }
  })

/** Sends one Allocate with the given attributes through a long-term session; gives the response or the code. */
const rawAllocate = (host: VirtualNetwork.Host, attributes: ReadonlyArray<StunAttribute.StunAttribute>) =>
  Effect.gen(function*() {
    const socket = yield* host.network.bindUdp({})
    const client = yield* StunTransaction.makeUdp(socket)
    const session = yield* StunTransaction.makeLongTermSession("alice", "secret")
    const request = (method: number, extra: ReadonlyArray<StunAttribute.StunAttribute>) =>
      run(Effect.either(client.request(server, { method, attributes: extra }, { credentials: session })))
    const result = yield* request(StunMessage.StunMethod.Allocate, [
      StunAttribute.requestedTransport(17),
      ...attributes
    ])
    return { result, request }
  })

const codeOf = (result: Either.Either<StunTransaction.Response, StunTransaction.StunTransactionError>) =>
  Either.isRight(result) ? 200 : result.left._tag === "StunErrorResponse" ? result.left.code : -1

describe("TurnServer dual stack on VirtualNetwork", () => {
  it.scoped("one allocation, an IPv4 and an IPv6 relayed address: each peer is relayed through its own family", () =>
    Effect.gen(function*() {
      const { clientHost, peer4Host, peer6Host, serverHost, turn } = yield* setup()
      const scope = yield* Scope.make()
      const allocation = yield* run(
        TurnClient.allocate({ server, auth: alice, additionalFamily: "IPv6" }).pipe(
          Effect.provideService(Network.Network, clientHost.network),
          Scope.extend(scope)
        )
      )
      assert.strictEqual(allocation.addressError, undefined)
      assert.deepStrictEqual(allocation.relayedAddresses.map((a) => [a.family, a.ip]), [
        ["IPv4", relay4],
        ["IPv6", relay6]
      ])
      const [relayed4, relayed6] = allocation.relayedAddresses as [SocketAddress, SocketAddress]
      const [info] = turn.allocations()
      assert.deepStrictEqual(info!.relayedAddresses, [relayed4, relayed6])

      const p4 = yield* peerSocket(peer4Host, peer4Ip, 5000)
      const p6 = yield* peerSocket(peer6Host, peer6Ip, 6000)
      const peer4 = v4(peer4Ip, 5000)
      const peer6 = v6(peer6Ip, 6000)
      // One CreatePermission for both families.
      yield* run(allocation.permit([peer4, peer6]))
      assert.strictEqual(turn.permissionCount(), 2)

      // Send indications: each peer gets its datagram from the relayed address of its own family.
      yield* run(allocation.send(peer4, new Uint8Array([4])))
      yield* run(allocation.send(peer6, new Uint8Array([6])))
      yield* TestClock.adjust("50 millis")
      assert.deepStrictEqual(p4.received, [{ data: [4], from: relayed4 }])
      assert.deepStrictEqual(p6.received, [{ data: [6], from: relayed6 }])

      // Data indications back, each with its peer's address.
      const reading = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 2)))
      yield* p4.socket.send(new Uint8Array([40]), relayed4)
      yield* TestClock.adjust("30 millis")
      yield* p6.socket.send(new Uint8Array([60]), relayed6)
      yield* TestClock.adjust("30 millis")
      const back = Chunk.toReadonlyArray(yield* Fiber.join(reading))
      assert.deepStrictEqual(back.map((d) => [d.peer, [...d.data]]), [[peer4, [40]], [peer6, [60]]])

      // A channel to the IPv6 peer: ChannelData both ways through the IPv6 relayed socket.
      const channel = yield* run(allocation.bindChannel(peer6))
      assert.strictEqual(channel, 0x4000)
      yield* run(allocation.send(peer6, new Uint8Array([7, 7])))
      yield* TestClock.adjust("50 millis")
      assert.deepStrictEqual(p6.received.at(-1), { data: [7, 7], from: relayed6 })
      const reading2 = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 1)))
      yield* p6.socket.send(new Uint8Array([8, 8, 8]), relayed6)
      yield* TestClock.adjust("30 millis")
      const back2 = Chunk.toReadonlyArray(yield* Fiber.join(reading2))
      assert.deepStrictEqual(back2.map((d) => [d.peer, [...d.data]]), [[peer6, [8, 8, 8]]])
      // The IPv6 peer sending to the IPv4 relayed address is not possible (other family); the IPv4 peer sending to
      // the IPv6 one neither. Nothing else arrived anywhere.
      assert.strictEqual(p4.received.length, 1)
      assert.strictEqual(p6.received.length, 2)

      // Releasing closes both relayed sockets.
      yield* run(Scope.close(scope, Exit.void))
      assert.strictEqual(turn.allocationCount(), 0)
      // Both relayed ports can be bound again.
      for (const relayed of [relayed4, relayed6]) {
        yield* Effect.scoped(serverHost.network.bindUdp({ address: relayed.ip, port: relayed.port }))
      }
    }))

  it.scoped("Allocate checks: 400 for both family attributes or ADDITIONAL IPv4; 443 for the other family", () =>
    Effect.gen(function*() {
      const { clientHost } = yield* setup()
      const both = yield* rawAllocate(clientHost, [
        StunAttribute.requestedAddressFamily("IPv4"),
        StunAttribute.additionalAddressFamily("IPv6")
      ])
      assert.strictEqual(codeOf(both.result), 400)
      const additional4 = yield* rawAllocate(clientHost, [StunAttribute.additionalAddressFamily("IPv4")])
      assert.strictEqual(codeOf(additional4.result), 400)
      // REQUESTED-ADDRESS-FAMILY IPv6: an IPv6-only allocation; an IPv4 peer is 443 for it.
      const only6 = yield* rawAllocate(clientHost, [StunAttribute.requestedAddressFamily("IPv6")])
      assert.strictEqual(codeOf(only6.result), 200)
      const relayed = StunMessage.find(Either.getOrThrow(only6.result).message, "XorRelayedAddress")!.address
      assert.deepStrictEqual([relayed.family, relayed.ip], ["IPv6", relay6])
      const permit4 = yield* only6.request(StunMessage.StunMethod.CreatePermission, [
        StunAttribute.xorPeerAddress(v4(peer4Ip, 1))
      ])
      assert.strictEqual(codeOf(permit4), 443)
      const bind4 = yield* only6.request(StunMessage.StunMethod.ChannelBind, [
        StunAttribute.channelNumber(0x4001),
        StunAttribute.xorPeerAddress(v4(peer4Ip, 1))
      ])
      assert.strictEqual(codeOf(bind4), 443)
      const permit6 = yield* only6.request(StunMessage.StunMethod.CreatePermission, [
        StunAttribute.xorPeerAddress(v6(peer6Ip, 1))
      ])
      assert.strictEqual(codeOf(permit6), 200)
    }))

  it.scoped("a server with an IPv4 relay only: ADDITIONAL-ADDRESS-FAMILY gives IPv4 and ADDRESS-ERROR-CODE 440", () =>
    Effect.gen(function*() {
      const { clientHost } = yield* setup({ relayAddresses: [relay4] })
      const scope = yield* Scope.make()
      const allocation = yield* run(
        TurnClient.allocate({ server, auth: alice, additionalFamily: "IPv6" }).pipe(
          Effect.provideService(Network.Network, clientHost.network),
          Scope.extend(scope)
        )
      )
      assert.deepStrictEqual(allocation.relayedAddresses.map((a) => a.ip), [relay4])
      assert.deepStrictEqual(allocation.addressError, {
        family: "IPv6",
        code: 440,
        reason: "Address Family not Supported"
      })
      const only6 = yield* rawAllocate(clientHost, [StunAttribute.requestedAddressFamily("IPv6")])
      assert.strictEqual(codeOf(only6.result), 440)
      // The release of the TurnClient allocation (Refresh LIFETIME 0) needs the clock to move.
      yield* run(Scope.close(scope, Exit.void))
    }))

  it.scoped("a server with an IPv6 relay only: ADDITIONAL-ADDRESS-FAMILY gives IPv6 and ADDRESS-ERROR-CODE 440", () =>
    Effect.gen(function*() {
      const { clientHost } = yield* setup({ relayAddresses: [relay6] })
      const dual = yield* rawAllocate(clientHost, [StunAttribute.additionalAddressFamily("IPv6")])
      const message = Either.getOrThrow(dual.result).message
      const relayed = message.attributes.flatMap((a) => a._tag === "XorRelayedAddress" ? [a.address.ip] : [])
      assert.deepStrictEqual(relayed, [relay6])
      const error = StunMessage.find(message, "AddressErrorCode")
      assert.deepStrictEqual([error?.family, error?.code], ["IPv4", 440])
      // No family attribute means IPv4 (RFC 8656 §7.2), which this server has not: 440.
      const plain = yield* rawAllocate(clientHost, [])
      assert.strictEqual(codeOf(plain.result), 440)
    }))

  it.scoped("relayAddresses and externalAddresses are checked: one per family, externals of a relay's family", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      const host = yield* world.addHost({ name: "server", addresses: [serverIp, relay4, relay6] })
      const attempt = (options: Partial<TurnServer.Options>) =>
        Effect.scoped(
          TurnServer.make({ addresses: [serverIp], ...options }).pipe(
            Effect.provideService(Network.Network, host.network),
            Effect.as("ok"),
            Effect.catchAll((e) => Effect.succeed(e.reason))
          )
        )
      assert.strictEqual(yield* attempt({ relayAddresses: [relay4, "192.0.2.11"] }), "InvalidAddress")
      assert.strictEqual(yield* attempt({ relayAddresses: [] }), "InvalidAddress")
      assert.strictEqual(yield* attempt({ relayAddresses: ["0.0.0.0"] }), "InvalidAddress")
      assert.strictEqual(
        yield* attempt({ relayAddresses: [relay4], externalAddresses: ["2001:db8::99"] }),
        "InvalidAddress"
      )
      assert.strictEqual(
        yield* attempt({ relayAddresses: [relay4], externalAddresses: ["198.51.100.1", "198.51.100.2"] }),
        "InvalidAddress"
      )
      assert.strictEqual(
        yield* attempt({ relayAddresses: [relay4, relay6], externalAddresses: ["198.51.100.1", "2001:db8::99"] }),
        "ok"
      )
    }))

  it.scoped("externalAddresses: each relayed address is advertised with the external IP of its family", () =>
    Effect.gen(function*() {
      const { clientHost, turn } = yield* setup({ externalAddresses: ["198.51.100.99", "2001:db8::99"] })
      const dual = yield* rawAllocate(clientHost, [StunAttribute.additionalAddressFamily("IPv6")])
      const message = Either.getOrThrow(dual.result).message
      const relayed = message.attributes.flatMap((a) => a._tag === "XorRelayedAddress" ? [a.address.ip] : [])
      assert.deepStrictEqual(relayed, ["198.51.100.99", "2001:db8::99"])
      assert.deepStrictEqual(turn.allocations()[0]!.relaySocket.ip, relay4)
    }))
})

describe("TurnServer dual stack on loopback", () => {
  it.scopedLive("127.0.0.1 and ::1: TurnClient with ADDITIONAL-ADDRESS-FAMILY relays to an IPv4 and an IPv6 peer", () =>
    Effect.gen(function*() {
      const network = yield* NodeNetwork.make
      const turn = yield* TurnServer.make({
        addresses: ["127.0.0.1"],
        port: 0,
        relayAddresses: ["127.0.0.1", "::1"],
        realm: "example.org",
        users: { alice: "secret" },
        allowPeers: ["127.0.0.0/8", "::1/128"]
      }).pipe(Effect.provideService(Network.Network, network))
      const inbox = yield* Queue.unbounded<{ readonly data: ReadonlyArray<number>; readonly from: SocketAddress }>()
      const p4 = yield* network.bindUdp({ address: "127.0.0.1" })
      const p6 = yield* network.bindUdp({ address: "::1", family: "IPv6" })
      yield* p4.setHandler((data, from) => void Queue.unsafeOffer(inbox, { data: [...data], from }))
      yield* p6.setHandler((data, from) => void Queue.unsafeOffer(inbox, { data: [...data], from }))
      const peer4 = v4("127.0.0.1", p4.local.port)
      const peer6 = v6("::1", p6.local.port)

      const allocation = yield* TurnClient.allocate({
        server: v4("127.0.0.1", turn.udp[0]!.port),
        auth: alice,
        additionalFamily: "IPv6"
      }).pipe(Effect.provideService(Network.Network, network), Effect.timeout("5 seconds"))
      assert.deepStrictEqual(allocation.relayedAddresses.map((a) => [a.family, a.ip]), [
        ["IPv4", "127.0.0.1"],
        ["IPv6", "::1"]
      ])
      const [relayed4, relayed6] = allocation.relayedAddresses as [SocketAddress, SocketAddress]
      yield* allocation.permit([peer4, peer6]).pipe(Effect.timeout("5 seconds"))
      yield* allocation.send(peer4, new Uint8Array([4]))
      const got4 = yield* Queue.take(inbox).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(got4, { data: [4], from: relayed4 })
      yield* allocation.bindChannel(peer6).pipe(Effect.timeout("5 seconds"))
      yield* allocation.send(peer6, new Uint8Array([6, 6]))
      const got6 = yield* Queue.take(inbox).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(got6, { data: [6, 6], from: relayed6 })

      const reading = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 2)))
      yield* p4.send(new Uint8Array([40]), relayed4)
      yield* p6.send(new Uint8Array([60]), relayed6)
      const back = Chunk.toReadonlyArray(yield* Fiber.join(reading).pipe(Effect.timeout("5 seconds")))
      const byFamily = [...back].sort((a, b) => a.peer.family.localeCompare(b.peer.family))
      assert.deepStrictEqual(byFamily.map((d) => [d.peer, [...d.data]]), [[peer4, [40]], [peer6, [60]]])
    }))
})
