/**
 * Our TURN client (`TurnClient` on `NodeNetwork`) against coturn on real loopback sockets, over UDP and TCP, with a
 * static user (alice:secret) and with TURN REST API credentials (`--use-auth-secret`): allocate, permit a peer (a
 * plain UDP socket on another loopback address), send both ways with Send/Data indications and with ChannelData,
 * refresh, release; the bytes arrive intact both ways, and coturn's log shows the allocation deleted on release.
 * Also over TLS (`NodeNetwork.connectTls`) to a coturn with a self-signed certificate made at test time, which the
 * client trusts as its CA. Every wait is bounded.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Queue, Scope, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Network from "../../src/Network.js"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import type { SocketAddress } from "../../src/TransportAddress.js"
import * as TurnClient from "../../src/TurnClient.js"
import { selfSignedCertificate } from "../tls.js"
import type { Coturn } from "./peers.js"
import { pickLoopbackAddresses, requirePeer, startCoturn } from "./peers.js"

const coturnPeer = await requirePeer("coturn")
const wait = "5 seconds"
const secret = "rest-shared-secret"
const root = fileURLToPath(new URL("../..", import.meta.url))
const tsx = fileURLToPath(new URL("../../node_modules/.bin/tsx", import.meta.url))

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })

/** Bytes with every value 0–255 and an odd length, so padding and copying mistakes show. */
const payload = (seed: number, length = 1001) => Uint8Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff)

const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>, what: string) =>
  Effect.timeoutFail(effect, { duration: wait, onTimeout: () => new Error(`timed out: ${what}`) })

/** Polls coturn's log from offset `from` (at most 5 s: coturn writes its log a little after it answers). */
const logMatch = (coturn: Coturn, from: number, pattern: RegExp) =>
  Effect.gen(function*() {
    for (let i = 0; i < 50; i++) {
      const match = pattern.exec(coturn.log().slice(from))
      if (match !== null) return match
      yield* Effect.sleep("100 millis")
    }
    return null
  })

/** A TLS coturn and the PEM of its self-signed certificate. */
interface TlsServer {
  readonly coturn: Coturn
  readonly ca: string
}

const scenario = (
  servers: () => { readonly users: Coturn; readonly rest: Coturn; readonly tls: TlsServer },
  addresses: () => { readonly client: string; readonly peer: string },
  transport: "udp" | "tcp" | "tls",
  mode: "static" | "secret"
) =>
  Effect.gen(function*() {
    const coturn = transport === "tls" ? servers().tls.coturn : mode === "static" ? servers().users : servers().rest
    const serverPort = transport === "tls" ? coturn.tlsPort! : coturn.port
    const { client: clientIp, peer: peerIp } = addresses()
    const network = yield* Network.Network
    const peerSocket = yield* network.bindUdp({ address: peerIp })
    const peer = v4(peerIp, peerSocket.local.port)
    const inbox = yield* Queue.unbounded<{ readonly data: Uint8Array; readonly from: SocketAddress }>()
    yield* peerSocket.setHandler((data, from) => void Queue.unsafeOffer(inbox, { data: data.slice(), from }))

    const logStart = coturn.log().length
    const scope = yield* Scope.make()
    const auth: TurnClient.Auth = mode === "static"
      ? { mode: "static", username: "alice", password: "secret" }
      : { mode: "secret", secret, user: "carol", ttlSeconds: 600 }
    const allocation = yield* bounded(
      TurnClient.allocate({
        server: v4(coturn.ips[0], serverPort),
        transport,
        ...(transport === "tls" ? { tls: { ca: servers().tls.ca } } : {}),
        auth,
        localAddress: clientIp,
        lifetime: 1200
      }).pipe(Scope.extend(scope)),
      "Allocate"
    )
    assert.strictEqual(allocation.relayed.ip, coturn.relayIp)
    assert.strictEqual(yield* allocation.lifetime, 1200)
    if (transport === "udp") assert.deepStrictEqual(allocation.mapped, v4(clientIp, allocation.local.port))

    // Send indication → peer; peer → Data indication.
    yield* bounded(allocation.permit([peer]), "CreatePermission")
    const out1 = payload(1)
    yield* bounded(allocation.send(peer, out1), "Send")
    const got1 = yield* bounded(Queue.take(inbox), "peer receives a Send")
    assert.deepStrictEqual(got1.data, out1)
    assert.deepStrictEqual(got1.from, allocation.relayed)
    const in1 = payload(2, 999)
    const reading1 = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 1)))
    yield* peerSocket.send(in1, allocation.relayed)
    const data1 = Chunk.unsafeHead(yield* bounded(reading1.await.pipe(Effect.flatten), "Data indication"))
    assert.deepStrictEqual(data1.peer, peer)
    assert.deepStrictEqual(data1.data, in1)

    // ChannelData both ways.
    const channel = yield* bounded(allocation.bindChannel(peer), "ChannelBind")
    assert.strictEqual(channel, 0x4000)
    const out2 = payload(3, 1003)
    yield* allocation.send(peer, out2)
    const got2 = yield* bounded(Queue.take(inbox), "peer receives ChannelData")
    assert.deepStrictEqual(got2.data, out2)
    const in2 = payload(4, 37)
    const reading2 = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 1)))
    yield* peerSocket.send(in2, allocation.relayed)
    const data2 = Chunk.unsafeHead(yield* bounded(reading2.await.pipe(Effect.flatten), "ChannelData"))
    assert.deepStrictEqual(data2.peer, peer)
    assert.deepStrictEqual(data2.data, in2)

    // Refresh, then release.
    yield* bounded(allocation.refresh, "Refresh")
    assert.strictEqual(yield* allocation.lifetime, 1200)
    yield* bounded(Scope.close(scope, Exit.void), "release")
    // coturn logs the release as "refreshed, … lifetime=0" and deletes the session on its next timer tick (about a
    // second later over UDP): "session N: delete: realm=<…>, username=<…>". Only the log written since this
    // allocation began is searched (the previous test waited for its own deletion line), and only for its session.
    const username = mode === "static" ? "alice" : `\\d+:carol`
    const released = yield* logMatch(
      coturn,
      logStart,
      new RegExp(`session (\\d+): refreshed, realm=<${coturn.realm}>, username=<${username}>, lifetime=0`)
    )
    assert.isNotNull(released, `no LIFETIME 0 refresh in coturn's log:\n${coturn.log().slice(logStart)}`)
    const deleted = new RegExp(`session ${released![1]}: delete: realm=<${coturn.realm}>, username=<${username}>`)
    assert.isNotNull(
      yield* logMatch(coturn, logStart, deleted),
      `no deletion line in coturn's log:\n${coturn.log().slice(logStart)}`
    )
    if (transport === "tls") {
      // coturn logs the negotiated TLS version on the allocation's "new" line.
      assert.match(
        coturn.log().slice(logStart),
        /session \d+: new, realm=<[^>]*>, username=<alice>.*method=TLSv1\.[23]/
      )
    }
  })

describe.skipIf(coturnPeer.skip)(
  `TurnClient against coturn ${coturnPeer.info.version ?? ""} ${coturnPeer.reason}`,
  () => {
    let users: Coturn | undefined
    let rest: Coturn | undefined
    let tls: TlsServer | undefined
    let certDir: string | undefined
    let clientIp = ""
    let peerIp = ""

    beforeAll(async () => {
      const [a1, a2, a3, b1, b2, b3, client, peer, c1, c2, c3] = await pickLoopbackAddresses(11)
      clientIp = client!
      peerIp = peer!
      users = await startCoturn({ addresses: [a1!, a2!, a3!] })
      rest = await startCoturn({ addresses: [b1!, b2!, b3!], auth: { mode: "secret", secret } })
      // A self-signed certificate for the TLS coturn's listening IPs, trusted by the client as its CA.
      certDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ice-coturn-tls-"))
      const { cert, key } = selfSignedCertificate(certDir, [c1!, c2!])
      tls = {
        coturn: await startCoturn({ addresses: [c1!, c2!, c3!], tls: { cert, key } }),
        ca: Fs.readFileSync(cert, "utf8")
      }
    })

    afterAll(async () => {
      await users?.stop()
      await rest?.stop()
      await tls?.coturn.stop()
      if (certDir !== undefined) Fs.rmSync(certDir, { recursive: true, force: true })
    })

    const servers = () => {
      if (users === undefined || rest === undefined || tls === undefined) throw new Error("coturn did not start")
      return { users, rest, tls }
    }
    const addresses = () => ({ client: clientIp, peer: peerIp })

    for (const transport of ["udp", "tcp"] as const) {
      for (const mode of ["static", "secret"] as const) {
        it.scopedLive(`${transport}, ${mode} credentials: allocate, Send/Data, ChannelData, refresh, release`, () =>
          scenario(servers, addresses, transport, mode).pipe(Effect.provide(NodeNetwork.layer)))
      }
    }

    it.scopedLive("tls, static credentials: allocate, Send/Data, ChannelData, refresh, release", () =>
      scenario(servers, addresses, "tls", "static").pipe(Effect.provide(NodeNetwork.layer)))

    it("examples/turn-relay.ts relays both ways through coturn (REST credentials, TCP)", () => {
      const { rest } = servers()
      const output = execFileSync(
        tsx,
        ["examples/turn-relay.ts", `${rest.ips[0]}:${rest.port}`, "secret:dave", secret, "tcp", peerIp],
        { cwd: root, encoding: "utf8", timeout: 30_000 }
      )
      assert.match(output, new RegExp(`relayed ${rest.relayIp.replaceAll(".", "\\.")}:\\d+, lifetime \\d+ s`))
      assert.include(output, "peer got: hello peer (Send/Data indications)")
      assert.include(output, "client got from")
      assert.include(output, "hello client (ChannelData on 0x4000)")
      assert.include(output, "releasing the allocation")
    })
  }
)
