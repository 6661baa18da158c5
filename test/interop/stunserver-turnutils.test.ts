/**
 * Our `StunServer` on real sockets, queried by coturn's own clients: `turnutils_stunclient` (Binding plus the RFC
 * 5780 CHANGE-REQUEST probes it makes when the server reports OTHER-ADDRESS) and `turnutils_natdiscovery` (RFC 5780
 * mapping and filtering tests). Both speak UDP only (neither has a TCP option). The server runs on two addresses of
 * a `127.A.B.0/24` block picked for the run with ports the OS chose; the clients bind a third address of the block
 * (`-L`), so every address they print is one we can check exactly. A wrapper around `NodeNetwork` records the source
 * of every datagram the server receives, so the mapped addresses the clients print are compared with what the
 * server actually saw.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Network from "../../src/Network.js"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as StunServer from "../../src/StunServer.js"
import * as TransportAddress from "../../src/TransportAddress.js"
import { coturnBinary, pickLoopbackAddresses, requirePeer, runCommandEffect } from "./peers.js"

const coturnPeer = await requirePeer("coturn")
const commandTimeoutMs = 15_000

/** One datagram the server received: on which of its sockets, from where. */
interface Received {
  readonly local: string
  readonly remote: string
}

/** `NodeNetwork`, with every UDP socket's handler wrapped to record who sent what to which socket. */
const recordingNetwork = (received: Array<Received>) =>
  Layer.effect(
    Network.Network,
    Effect.map(NodeNetwork.make, (network): Network.Service => ({
      ...network,
      bindUdp: (options) =>
        Effect.map(network.bindUdp(options), (socket): Network.DatagramSocket => ({
          ...socket,
          setHandler: (handler) =>
            socket.setHandler((data, remote) => {
              received.push({ local: TransportAddress.format(socket.local), remote: TransportAddress.format(remote) })
              return handler(data, remote)
            })
        }))
    }))
  )

/** One "RFC 5780 response N" block of turnutils output. */
interface Printed {
  readonly index: number
  readonly origin: string | undefined
  readonly other: string | undefined
  readonly reflexive: string | undefined
  /** natdiscovery only: the client socket's own address. */
  readonly local: string | undefined
  readonly noAlg: boolean
}

const field = (block: string, label: RegExp): string | undefined => label.exec(block)?.[1]

/** Parses the response blocks turnutils_stunclient and turnutils_natdiscovery print (coturn 4.6.1 wording). */
const parseResponses = (stdout: string): Array<Printed> =>
  stdout.split("RFC 5780 response ").slice(1).map((block) => ({
    index: Number(block.slice(0, block.indexOf("\n"))),
    origin: field(block, /Response origin: : (\S+)/),
    other: field(block, /Other addr: : (\S+)/),
    reflexive: field(block, /UDP reflexive addr: (\S+)/),
    local: field(block, /Local addr: : (\S+)/),
    noAlg: block.includes("No ALG: Mapped == XOR-Mapped")
  }))

const run = (tool: "turnutils_stunclient" | "turnutils_natdiscovery", args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const result = yield* runCommandEffect(coturnBinary(tool), args, { timeoutMs: commandTimeoutMs })
    const transcript = `${result.command}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`
    assert.isFalse(result.timedOut, `timed out after ${commandTimeoutMs} ms: ${transcript}`)
    assert.strictEqual(result.code, 0, transcript)
    return { stdout: result.stdout, transcript }
  })

/** Our server with RFC 5780 on two picked loopback addresses, and a third address for the client. */
const start = Effect.gen(function*() {
  const [a1, a2, client] = yield* Effect.promise(() => pickLoopbackAddresses(3))
  const server = yield* StunServer.make({ address: a1!, alternateAddress: a2!, port: 0, software: "effect-ice test" })
  const [p1p1, p1p2, p2p1, p2p2] = server.udp.map(TransportAddress.format)
  return { server, client: client!, a1: p1p1!, a1p2: p1p2!, a2p1: p2p1!, a2: p2p2! }
})

describe.skipIf(coturnPeer.skip)(`coturn's turnutils against our StunServer ${coturnPeer.reason}`, () => {
  it.scopedLive("turnutils_stunclient: mapped address, RESPONSE-ORIGIN and OTHER-ADDRESS exactly as sent", () => {
    const received: Array<Received> = []
    return Effect.gen(function*() {
      const { a1, a2, client, server } = yield* start
      const { stdout, transcript } = yield* run("turnutils_stunclient", [
        "-L",
        client,
        "-p",
        String(server.primary.port),
        server.primary.ip
      ])
      const responses = parseResponses(stdout)
      // A plain Binding, then (since we report OTHER-ADDRESS) its RFC 5780 probes with CHANGE-REQUEST.
      assert.strictEqual(responses.length, 3, transcript)
      const [first, second, third] = responses as [Printed, Printed, Printed]
      // The first request arrived on (A1,P1) from the client's socket: that source is the mapped address.
      const firstSource = received.find((r) => r.local === a1)
      assert.isDefined(firstSource, `no datagram reached ${a1}`)
      assert.deepStrictEqual(first, {
        index: 1,
        origin: a1,
        other: a2,
        reflexive: firstSource!.remote,
        local: undefined,
        noAlg: false
      }, transcript)
      assert.isTrue(first.reflexive!.startsWith(`${client}:`), transcript)
      // Change IP and port: answered from (A2,P2); OTHER-ADDRESS stays relative to (A1,P1), which received it.
      assert.deepStrictEqual(second, { ...first, index: 2, origin: a2 }, transcript)
      // A new client socket, again answered from (A2,P2): its own source, which the server saw.
      assert.strictEqual(third.origin, a2, transcript)
      assert.strictEqual(third.other, a2, transcript)
      assert.isTrue(third.reflexive!.startsWith(`${client}:`), transcript)
      assert.notStrictEqual(third.reflexive, first.reflexive)
      assert.isTrue(received.some((r) => r.remote === third.reflexive), transcript)
      // Every datagram the server got came from the client's address: nothing else talks to this block.
      assert.isTrue(received.every((r) => r.remote.startsWith(`${client}:`)))
    }).pipe(Effect.provide(recordingNetwork(received)))
  })

  it.scopedLive("turnutils_natdiscovery -m -f: endpoint-independent mapping and filtering, no NAT on loopback", () =>
    Effect.gen(function*() {
      const { a1, a1p2, a2, a2p1, client, server } = yield* start
      const { stdout, transcript } = yield* run("turnutils_natdiscovery", [
        "-m",
        "-f",
        "-L",
        client,
        "-p",
        String(server.primary.port),
        server.primary.ip
      ])
      assert.include(stdout, "NAT with Endpoint Independent Mapping!", transcript)
      assert.include(stdout, "NAT with Endpoint Independent Filtering!", transcript)
      assert.include(stdout, "No NAT! (Endpoint Independent Mapping)", transcript)
      assert.notMatch(stdout, /Dependent (Mapping|Filtering)/, transcript)
      const responses = parseResponses(stdout)
      assert.strictEqual(responses.length, 4, transcript)
      for (const response of responses) {
        // MAPPED-ADDRESS equals XOR-MAPPED-ADDRESS, and both equal the client socket's own address (no NAT).
        assert.isTrue(response.noAlg, transcript)
        assert.strictEqual(response.reflexive, response.local, transcript)
        assert.isTrue(response.reflexive!.startsWith(`${client}:`), transcript)
      }
      const [m1, m2, f1, f2] = responses as [Printed, Printed, Printed, Printed]
      // Mapping test I to (A1,P1), test II to (A2,P1): OTHER-ADDRESS is the other IP and the other port.
      assert.deepStrictEqual([m1.origin, m1.other], [a1, a2], transcript)
      assert.deepStrictEqual([m2.origin, m2.other], [a2p1, a1p2], transcript)
      assert.strictEqual(m2.reflexive, m1.reflexive, "the same socket is mapped the same way to both servers")
      // Filtering test I to (A1,P1), test II with change IP and port: answered from (A2,P2).
      assert.deepStrictEqual([f1.origin, f1.other], [a1, a2], transcript)
      assert.deepStrictEqual([f2.origin, f2.other], [a2, a2], transcript)
      assert.strictEqual(f2.reflexive, f1.reflexive, transcript)
    }).pipe(Effect.provide(NodeNetwork.layer)))

  it.scopedLive("turnutils_natdiscovery -m -f -P: the same answers to requests padded to 1500 bytes", () =>
    Effect.gen(function*() {
      const { client, server } = yield* start
      const { stdout, transcript } = yield* run("turnutils_natdiscovery", [
        "-m",
        "-f",
        "-P",
        "-L",
        client,
        "-p",
        String(server.primary.port),
        server.primary.ip
      ])
      assert.include(stdout, "NAT with Endpoint Independent Mapping!", transcript)
      assert.include(stdout, "NAT with Endpoint Independent Filtering!", transcript)
      const responses = parseResponses(stdout)
      assert.strictEqual(responses.length, 4, transcript)
      for (const response of responses) assert.strictEqual(response.reflexive, response.local, transcript)
    }).pipe(Effect.provide(NodeNetwork.layer)))
})
