/**
 * Our STUN client (`StunTransaction` on `NodeNetwork`) against coturn on real loopback sockets: Binding over UDP and
 * TCP, RFC 5780 CHANGE-REQUEST answered from coturn's other address and port, and long-term credentials on an
 * Allocate. coturn listens on two addresses of a `127.A.B.0/24` block picked for the run, on ports found free at
 * run time (never 3478); our sockets bind a fourth address of the block, so the mapped address coturn reports can
 * only be ours. Loopback has no NAT: XOR-MAPPED-ADDRESS must be exactly the socket's own address and port.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Network from "../../src/Network.js"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as StunAttribute from "../../src/StunAttribute.js"
import * as StunMessage from "../../src/StunMessage.js"
import * as StunTransaction from "../../src/StunTransaction.js"
import type { SocketAddress } from "../../src/TransportAddress.js"
import type { Coturn } from "./peers.js"
import { pickLoopbackAddresses, requirePeer, startCoturn } from "./peers.js"

const coturnPeer = await requirePeer("coturn")
const wait = "5 seconds"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })
const of = (address: SocketAddress): SocketAddress => v4(address.ip, address.port)

describe.skipIf(coturnPeer.skip)(`coturn ${coturnPeer.info.version ?? ""} as STUN server ${coturnPeer.reason}`, () => {
  let coturn: Coturn | undefined
  let clientIp = ""

  beforeAll(async () => {
    const [ip1, ip2, relayIp, client] = await pickLoopbackAddresses(4)
    clientIp = client!
    coturn = await startCoturn({ addresses: [ip1!, ip2!, relayIp!] })
  })

  afterAll(async () => {
    await coturn?.stop()
  })

  const server = () => {
    if (coturn === undefined) throw new Error("coturn did not start")
    return coturn
  }

  /** Binds a UDP socket on the client address and puts a transaction client on it. */
  const udpClient = Effect.gen(function*() {
    const network = yield* Network.Network
    const socket = yield* network.bindUdp({ address: clientIp })
    const client = yield* StunTransaction.makeUdp(socket)
    return { socket, client }
  })

  const binding = (
    client: StunTransaction.StunClient,
    to: SocketAddress,
    attributes: ReadonlyArray<StunAttribute.StunAttribute> = []
  ) =>
    client.request(to, { method: StunMessage.StunMethod.Binding, attributes }).pipe(
      Effect.timeoutFail({ duration: wait, onTimeout: () => new Error(`no answer from coturn at ${to.ip}:${to.port}`) })
    )

  const addressOf = (message: StunMessage.StunMessage, tag: "XorMappedAddress" | "ResponseOrigin" | "OtherAddress") => {
    const attribute = StunMessage.find(message, tag)
    assert.isDefined(attribute, `${tag} missing in ${StunMessage.describe(message)}`)
    return of(attribute!.address)
  }

  it.scopedLive("UDP Binding: XOR-MAPPED-ADDRESS is exactly our socket; SOFTWARE, RESPONSE-ORIGIN, OTHER-ADDRESS", () =>
    Effect.gen(function*() {
      const { ips, port, altPort } = server()
      const { socket, client } = yield* udpClient
      const response = yield* binding(client, v4(ips[0], port))
      const message = response.message
      assert.strictEqual(message.class, StunMessage.StunClass.SuccessResponse)
      assert.strictEqual(message.method, StunMessage.StunMethod.Binding)
      assert.deepStrictEqual(addressOf(message, "XorMappedAddress"), v4(clientIp, socket.local.port))
      assert.deepStrictEqual(of(response.from), v4(ips[0], port))
      assert.deepStrictEqual(addressOf(message, "ResponseOrigin"), v4(ips[0], port))
      // RFC 5780 §7.4: the address that differs in both IP and port from the one that received the request.
      assert.deepStrictEqual(addressOf(message, "OtherAddress"), v4(ips[1], altPort))
      const software = StunMessage.find(message, "Software")
      assert.isDefined(software, "coturn sends SOFTWARE")
      assert.match(software!.value, /^Coturn-\d+\.\d+\.\d+/)
      // coturn runs with --fingerprint: the answer carries a FINGERPRINT (and the client checked it).
      assert.isAtLeast(message.fingerprintOffset, 0)
      assert.strictEqual(response.attempts, 1)
    }).pipe(Effect.provide(NodeNetwork.layer)))

  it.scopedLive("UDP Binding to IP1:P+1: OTHER-ADDRESS is IP2:P, and a change of both answers from there", () =>
    Effect.gen(function*() {
      const { ips, port, altPort } = server()
      const { socket, client } = yield* udpClient
      const plain = yield* binding(client, v4(ips[0], altPort))
      assert.deepStrictEqual(addressOf(plain.message, "XorMappedAddress"), v4(clientIp, socket.local.port))
      assert.deepStrictEqual(of(plain.from), v4(ips[0], altPort))
      assert.deepStrictEqual(addressOf(plain.message, "ResponseOrigin"), v4(ips[0], altPort))
      assert.deepStrictEqual(addressOf(plain.message, "OtherAddress"), v4(ips[1], port))
      const changed = yield* binding(client, v4(ips[0], altPort), [
        StunAttribute.changeRequest({ changeIp: true, changePort: true })
      ])
      assert.deepStrictEqual(of(changed.from), v4(ips[1], port))
      assert.deepStrictEqual(addressOf(changed.message, "ResponseOrigin"), v4(ips[1], port))
    }).pipe(Effect.provide(NodeNetwork.layer)))

  it.scopedLive("coturn 4.6 pairs only IP1 with IP2: on IP2, OTHER-ADDRESS and change-IP stay on IP2", () =>
    Effect.gen(function*() {
      // Not what RFC 5780 §7.4 describes (the other address of IP2:P+1 would be IP1:P), but what coturn does; RFC
      // 5780 clients only start at the primary address, so our NAT discovery must not rely on IP2's OTHER-ADDRESS.
      const { ips, port, altPort } = server()
      const { client } = yield* udpClient
      const plain = yield* binding(client, v4(ips[1], altPort))
      assert.deepStrictEqual(of(plain.from), v4(ips[1], altPort))
      assert.deepStrictEqual(addressOf(plain.message, "OtherAddress"), v4(ips[1], port))
      const changed = yield* binding(client, v4(ips[1], altPort), [
        StunAttribute.changeRequest({ changeIp: true, changePort: true })
      ])
      assert.deepStrictEqual(of(changed.from), v4(ips[1], port))
    }).pipe(Effect.provide(NodeNetwork.layer)))

  it.scopedLive("CHANGE-REQUEST: the answer comes from the other IP and/or port that was asked for", () =>
    Effect.gen(function*() {
      const { ips, port, altPort } = server()
      const { socket, client } = yield* udpClient
      const mapped = v4(clientIp, socket.local.port)
      const cases = [
        { changeIp: true, changePort: true, origin: v4(ips[1], altPort) },
        { changeIp: true, changePort: false, origin: v4(ips[1], port) },
        { changeIp: false, changePort: true, origin: v4(ips[0], altPort) },
        { changeIp: false, changePort: false, origin: v4(ips[0], port) }
      ]
      for (const { changeIp, changePort, origin } of cases) {
        const label = `changeIp=${changeIp} changePort=${changePort}`
        const response = yield* binding(client, v4(ips[0], port), [
          StunAttribute.changeRequest({ changeIp, changePort })
        ])
        assert.deepStrictEqual(of(response.from), origin, `datagram source, ${label}`)
        assert.deepStrictEqual(addressOf(response.message, "ResponseOrigin"), origin, `RESPONSE-ORIGIN, ${label}`)
        // OTHER-ADDRESS is relative to where the request arrived (IP1:P), whichever address answered.
        assert.deepStrictEqual(addressOf(response.message, "OtherAddress"), v4(ips[1], altPort), label)
        assert.deepStrictEqual(addressOf(response.message, "XorMappedAddress"), mapped, label)
      }
    }).pipe(Effect.provide(NodeNetwork.layer)))

  it.scopedLive("TCP Binding: XOR-MAPPED-ADDRESS is exactly our connection's local address and port", () =>
    Effect.gen(function*() {
      const { ips, port } = server()
      const network = yield* Network.Network
      const connection = yield* network.connectTcp(v4(ips[0], port), { localAddress: clientIp }).pipe(
        Effect.timeout(wait)
      )
      assert.strictEqual(connection.local.ip, clientIp)
      const client = yield* StunTransaction.makeTcp(connection)
      const first = yield* binding(client, v4(ips[0], port))
      assert.strictEqual(first.message.class, StunMessage.StunClass.SuccessResponse)
      assert.deepStrictEqual(addressOf(first.message, "XorMappedAddress"), v4(clientIp, connection.local.port))
      assert.deepStrictEqual(addressOf(first.message, "ResponseOrigin"), v4(ips[0], port))
      assert.match(StunMessage.find(first.message, "Software")?.value ?? "", /^Coturn-/)
      // A second transaction on the same connection: framing of consecutive messages on the stream.
      const second = yield* binding(client, v4(ips[0], port))
      assert.notDeepEqual(second.message.transactionId, first.message.transactionId)
      assert.deepStrictEqual(addressOf(second.message, "XorMappedAddress"), v4(clientIp, connection.local.port))
    }).pipe(Effect.provide(NodeNetwork.layer)))

  it.scopedLive("long-term credentials: Allocate gets 401 with REALM and NONCE, then succeeds as alice", () =>
    Effect.gen(function*() {
      const { ips, port, realm, relayIp } = server()
      const { socket, client } = yield* udpClient
      const to = v4(ips[0], port)
      const allocate = {
        method: StunMessage.StunMethod.Allocate,
        attributes: [StunAttribute.requestedTransport(17), StunAttribute.lifetime(1200)]
      }
      // LIFETIME 1200: above the 600 s default (a smaller request gets 600, RFC 8656 §7.2) and below the maximum.
      // Without credentials: 401 Unauthorized, with the realm coturn was given and a nonce.
      const refused = yield* Effect.flip(client.request(to, allocate).pipe(Effect.timeout(wait)))
      assert.strictEqual(refused._tag, "StunErrorResponse")
      if (refused._tag !== "StunErrorResponse") return
      assert.strictEqual(refused.code, 401)
      assert.strictEqual(StunMessage.find(refused.response, "Realm")?.value, realm)
      assert.isAbove(StunMessage.find(refused.response, "Nonce")?.value.length ?? 0, 0)

      // With alice's password: 401, retry with USERNAME/REALM/NONCE/MESSAGE-INTEGRITY, success.
      const session = yield* StunTransaction.makeLongTermSession("alice", "secret")
      const allocated = yield* client.request(to, allocate, { credentials: session }).pipe(Effect.timeout(wait))
      assert.strictEqual(allocated.message.class, StunMessage.StunClass.SuccessResponse)
      assert.strictEqual(allocated.attempts, 1)
      const relayed = StunMessage.find(allocated.message, "XorRelayedAddress")
      assert.isDefined(relayed)
      assert.strictEqual(relayed!.address.ip, relayIp)
      assert.deepStrictEqual(addressOf(allocated.message, "XorMappedAddress"), v4(clientIp, socket.local.port))
      assert.strictEqual(StunMessage.find(allocated.message, "Lifetime")?.seconds, 1200)
      assert.strictEqual((yield* StunTransaction.sessionState(session)).realm, realm)

      // Release the allocation (Refresh with LIFETIME 0), authenticated with what the session learnt.
      const released = yield* client.request(to, {
        method: StunMessage.StunMethod.Refresh,
        attributes: [StunAttribute.lifetime(0)]
      }, { credentials: session }).pipe(Effect.timeout(wait))
      assert.strictEqual(released.message.class, StunMessage.StunClass.SuccessResponse)

      // A wrong password (from a fresh socket: coturn answers 437 on the released allocation's 5-tuple for a while)
      // is refused after the one retry: 401 again, no success.
      const other = yield* udpClient
      const wrong = yield* StunTransaction.makeLongTermSession("alice", "not-the-password")
      const denied = yield* Effect.flip(
        other.client.request(to, allocate, { credentials: wrong }).pipe(Effect.timeout(wait))
      )
      assert.strictEqual(denied._tag, "StunErrorResponse")
      if (denied._tag === "StunErrorResponse") assert.strictEqual(denied.code, 401)
    }).pipe(Effect.provide(NodeNetwork.layer)))
})
