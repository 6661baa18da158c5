/**
 * Our `TurnServer` on real loopback sockets (`NodeNetwork`), driven by coturn's own test client `turnutils_uclient`
 * (UDP and TCP to the server; ChannelData and Send/Data indications with `-s`; relayed to `turnutils_peer`, the
 * coturn echo peer, or client-to-client with `-y`; static long-term credentials and TURN REST credentials with
 * `-W secret`). Every run must end with 0 % loss, and the server's relay counters must show that the packets
 * really went through its relayed sockets.
 *
 * Addresses: a `127.A.B.0/24` block picked for the run; the server listens on .1 (port chosen by the OS), relays on
 * .2, the echo peer is on .3 (a free port found at run time) and the client binds .4 (`-L`), so nothing can reach
 * the peer except through the relay. The server must be told to allow loopback peers (`allowPeers`), as coturn needs
 * `--allow-loopback-peers`. `-c` turns off uclient's RTCP allocations; one scenario keeps them, so EVEN-PORT with
 * the R bit and RESERVATION-TOKEN are exercised too. Every command is bounded in time and killed by PID.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Metrics from "../../src/Metrics.js"
import * as Network from "../../src/Network.js"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as TurnServer from "../../src/TurnServer.js"
import { selfSignedCertificate } from "../tls.js"
import { coturnBinary, freeUdpTcpPort, pickLoopbackAddresses, requirePeer, runCommandEffect } from "./peers.js"

const coturnPeer = await requirePeer("coturn")
const commandTimeoutMs = 30_000
const messages = 50
const clients = 2
const secret = "rest-shared-secret"

const relayedCount = (direction: "to-peer" | "to-client") =>
  Effect.map(
    Metric.value(Metrics.turnRelayedPackets.pipe(Metric.tagged("direction", direction))),
    (state) => state.count
  )

interface Outcome {
  readonly sent: number
  readonly received: number
  readonly lost: number
  readonly lossPercent: number
  readonly transcript: string
}

/** Parses uclient's summary (coturn 4.6.1 wording): the last totals line and the loss line. */
const parseOutcome = (stdout: string, transcript: string): Outcome => {
  const totals = [...stdout.matchAll(/tot_send_msgs=(\d+), tot_recv_msgs=(\d+)/g)].at(-1)
  const loss = /Total lost packets (\d+) \(([0-9.]+)%\)/.exec(stdout)
  assert.isDefined(totals, `no totals line: ${transcript}`)
  assert.isNotNull(loss, `no loss line: ${transcript}`)
  return {
    sent: Number(totals![1]),
    received: Number(totals![2]),
    lost: Number(loss![1]),
    lossPercent: Number(loss![2]),
    transcript
  }
}

const scenario = (options: {
  readonly flags: ReadonlyArray<string>
  readonly auth: "static" | "rest"
  readonly tcp?: boolean
  readonly tls?: boolean
  readonly rtcp?: boolean
}) =>
  Effect.gen(function*() {
    const [serverIp, relayIp, peerIp, clientIp] = yield* Effect.promise(() => pickLoopbackAddresses(4))
    const network = yield* NodeNetwork.make
    const certificate = options.tls === true
      ? yield* Effect.acquireRelease(
        Effect.sync(() => {
          const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ice-turns-uclient-"))
          const files = selfSignedCertificate(dir, [serverIp!])
          return { dir, cert: Fs.readFileSync(files.cert, "utf8"), key: Fs.readFileSync(files.key, "utf8") }
        }),
        ({ dir }) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      : undefined
    const turn = yield* TurnServer.make({
      addresses: [serverIp!],
      port: 0,
      tcp: options.tcp === true,
      ...(certificate === undefined ? {} : { tls: { certificate: certificate.cert, key: certificate.key, port: 0 } }),
      relayAddress: relayIp,
      realm: "example.org",
      users: { alice: "secret" },
      restSecrets: ["an-older-secret", secret],
      allowPeers: ["127.0.0.0/8"],
      userQuota: 100
    }).pipe(Effect.provideService(Network.Network, network))
    const port = (options.tls === true ? turn.tls[0]! : options.tcp === true ? turn.tcp[0]! : turn.udp[0]!).port

    const peerPort = yield* Effect.promise(() => freeUdpTcpPort(peerIp!))
    yield* Effect.forkScoped(
      runCommandEffect(coturnBinary("turnutils_peer"), ["-L", peerIp!, "-p", String(peerPort)], {
        timeoutMs: commandTimeoutMs * 2
      })
    )
    yield* Effect.sleep("300 millis")

    const toPeer = yield* relayedCount("to-peer")
    const toClient = yield* relayedCount("to-client")
    const credentials = options.auth === "static" ? ["-u", "alice", "-w", "secret"] : ["-u", "alice", "-W", secret]
    const result = yield* runCommandEffect(coturnBinary("turnutils_uclient"), [
      ...(options.rtcp === true ? [] : ["-c"]),
      ...options.flags,
      ...(options.tcp === true || options.tls === true ? ["-t"] : []),
      ...(options.tls === true ? ["-S"] : []),
      ...credentials,
      "-e",
      peerIp!,
      "-r",
      String(peerPort),
      "-n",
      String(messages),
      "-l",
      "171",
      "-m",
      String(clients),
      "-z",
      "5",
      "-p",
      String(port),
      "-L",
      clientIp!,
      serverIp!
    ], { timeoutMs: commandTimeoutMs })
    const transcript = `${result.command}\nstdout:\n${result.stdout.slice(-4000)}\nstderr:\n${
      result.stderr.slice(-2000)
    }`
    assert.isFalse(result.timedOut, `timed out after ${commandTimeoutMs} ms: ${transcript}`)
    assert.strictEqual(result.code, 0, transcript)
    const outcome = parseOutcome(result.stdout, transcript)
    assert.strictEqual(outcome.lost, 0, transcript)
    assert.strictEqual(outcome.lossPercent, 0, transcript)
    assert.strictEqual(outcome.sent, messages * clients, transcript)
    assert.strictEqual(outcome.received, outcome.sent, transcript)
    // The packets went through our relayed sockets: at least every message out and every echo back.
    assert.isAtLeast((yield* relayedCount("to-peer")) - toPeer, outcome.sent, transcript)
    assert.isAtLeast((yield* relayedCount("to-client")) - toClient, outcome.received, transcript)
    return { turn, outcome }
  })

describe.skipIf(coturnPeer.skip)("TurnServer against turnutils_uclient", () => {
  it.scopedLive(
    "UDP, ChannelData, static user, to turnutils_peer: 0 % loss",
    () => Effect.asVoid(scenario({ flags: [], auth: "static" })),
    60_000
  )

  it.scopedLive(
    "UDP, Send/Data indications (-s), static user, to turnutils_peer: 0 % loss",
    () => Effect.asVoid(scenario({ flags: ["-s"], auth: "static" })),
    60_000
  )

  it.scopedLive(
    "UDP, client-to-client (-y), ChannelData, static user: 0 % loss",
    () => Effect.asVoid(scenario({ flags: ["-y"], auth: "static" })),
    60_000
  )

  it.scopedLive(
    "UDP, TURN REST credentials (-W), ChannelData, to turnutils_peer: 0 % loss",
    () => Effect.asVoid(scenario({ flags: [], auth: "rest" })),
    60_000
  )

  it.scopedLive(
    "UDP, TURN REST credentials (-W), client-to-client with Send/Data (-y -s): 0 % loss",
    () => Effect.asVoid(scenario({ flags: ["-y", "-s"], auth: "rest" })),
    60_000
  )

  it.scopedLive(
    "UDP, RTP and RTCP allocations (EVEN-PORT R=1, RESERVATION-TOKEN), static user: 0 % loss",
    () => Effect.asVoid(scenario({ flags: [], auth: "static", rtcp: true })),
    60_000
  )

  it.scopedLive(
    "TCP to the server (-t), ChannelData, static user, to turnutils_peer: 0 % loss",
    () => Effect.asVoid(scenario({ flags: [], auth: "static", tcp: true })),
    60_000
  )

  it.scopedLive(
    "TLS to the server (-t -S), ChannelData, static user, to turnutils_peer: 0 % loss",
    () =>
      Effect.gen(function*() {
        const { turn } = yield* scenario({ flags: [], auth: "static", tls: true })
        assert.strictEqual(turn.tls.length, 1)
      }),
    60_000
  )

  it.scopedLive(
    "TLS to the server (-t -S), Send/Data indications (-s), TURN REST credentials: 0 % loss",
    () => Effect.asVoid(scenario({ flags: ["-s"], auth: "rest", tls: true })),
    60_000
  )
})
