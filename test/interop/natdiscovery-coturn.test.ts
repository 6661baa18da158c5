/**
 * Our RFC 5780 NAT discovery (`NatDiscovery.discover` on `NodeNetwork`) against coturn on real loopback sockets.
 * coturn listens on two addresses of a `127.A.B.0/24` block picked for the run (so RFC 5780 is on), on ports found
 * free at run time; our sockets bind a fourth address of the block. Loopback has no NAT and no filtering, so the
 * expected report is exact: the mapped address is the socket's own, endpoint-independent mapping and filtering,
 * OTHER-ADDRESS is coturn's second IP and alternate port, requests to our own address arrive (the hairpinning
 * test), and RESPONSE-PORT reaches the first socket (a one-probe lifetime search). Every wait is bounded.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as NatDiscovery from "../../src/NatDiscovery.js"
import * as Network from "../../src/Network.js"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as StunTransaction from "../../src/StunTransaction.js"
import type { SocketAddress } from "../../src/TransportAddress.js"
import type { Coturn } from "./peers.js"
import { pickLoopbackAddresses, requirePeer, startCoturn } from "./peers.js"

const coturnPeer = await requirePeer("coturn")
const bound = "20 seconds"

const v4 = (ip: string, port: number): SocketAddress => ({ family: "IPv4", ip, port })

/** Bounded everywhere: transactions give up after 0.1 + 0.2 + 0.4 + 4 × 0.4 s; the whole discovery after 20 s. */
const discover = (options: NatDiscovery.Options) =>
  NatDiscovery.discover(options).pipe(
    Effect.provideService(StunTransaction.Rto, Duration.millis(100)),
    Effect.provideService(StunTransaction.Rc, 3),
    Effect.provideService(StunTransaction.Rm, 4),
    Effect.timeoutFail({ duration: bound, onTimeout: () => new Error(`NAT discovery took more than ${bound}`) }),
    Effect.provide(NodeNetwork.layer)
  )

describe.skipIf(coturnPeer.skip)(
  `NatDiscovery against coturn ${coturnPeer.info.version ?? ""} ${coturnPeer.reason}`,
  () => {
    let coturn: Coturn | undefined
    let plainCoturn: Coturn | undefined
    let clientIp = ""

    beforeAll(async () => {
      const [ip1, ip2, relayIp, client, plainIp1, plainIp2, plainRelay] = await pickLoopbackAddresses(7)
      clientIp = client!
      coturn = await startCoturn({ addresses: [ip1!, ip2!, relayIp!] })
      plainCoturn = await startCoturn({ addresses: [plainIp1!, plainIp2!, plainRelay!], rfc5780: false })
    })

    afterAll(async () => {
      await Promise.all([coturn?.stop(), plainCoturn?.stop()])
    })

    const server = () => {
      if (coturn === undefined) throw new Error("coturn did not start")
      return coturn
    }

    it.scopedLive("loopback: no NAT, endpoint-independent mapping and filtering, hairpinning, exact addresses", () =>
      Effect.gen(function*() {
        const { altPort, ips, port } = server()
        const report = yield* discover({ server: v4(ips[0], port), bind: { address: clientIp } })
        assert.strictEqual(report.natPresent, false, NatDiscovery.format(report))
        assert.strictEqual(report.local.ip, clientIp)
        assert.deepStrictEqual(report.mapped, report.local)
        assert.deepStrictEqual(report.otherAddress, v4(ips[1], altPort))
        assert.deepStrictEqual(report.responseOrigin, v4(ips[0], port))
        assert.strictEqual(report.mapping, "endpoint-independent")
        assert.strictEqual(report.filtering, "endpoint-independent")
        assert.strictEqual(report.classicalName, "full-cone")
        assert.strictEqual(report.directPathLikely, true)
        assert.strictEqual(report.hairpinning, true)
        assert.strictEqual(report.lifetime, "untested")
        assert.strictEqual(report.algDetected, false)
        assert.deepStrictEqual(report.mappedAddresses, { testI: report.mapped, testII: undefined, testIII: undefined })
      }))

    it.scopedLive("the application's socket; RESPONSE-PORT reaches it after 1 s (lifetime ≥ max, one probe)", () =>
      Effect.gen(function*() {
        const { ips, port } = server()
        const network = yield* Network.Network
        const socket = yield* network.bindUdp({ address: clientIp })
        const report = yield* discover({
          server: v4(ips[0], port),
          socket,
          tests: { hairpinning: false, lifetime: { max: "1 second", precision: "500 millis" } }
        })
        assert.deepStrictEqual(report.local, v4(clientIp, socket.local.port))
        assert.deepStrictEqual(report.mapped, report.local)
        assert.strictEqual(report.hairpinning, "untested")
        assert.notStrictEqual(report.lifetime, "untested")
        if (report.lifetime === "untested") return
        assert.strictEqual(report.lifetime.probes, 1)
        assert.strictEqual(report.lifetime.upperBoundMs, undefined)
        assert.isAtLeast(report.lifetime.lowerBoundMs, 1000)
        assert.isBelow(report.lifetime.lowerBoundMs, 3000)
      }).pipe(Effect.provide(NodeNetwork.layer)))

    it.scopedLive("coturn with --no-rfc5780: NoOtherAddress from the connectivity test", () =>
      Effect.gen(function*() {
        if (plainCoturn === undefined) throw new Error("coturn (--no-rfc5780) did not start")
        const { ips, port } = plainCoturn
        const error = yield* Effect.flip(discover({ server: v4(ips[0], port), bind: { address: clientIp } }))
        assert.instanceOf(error, NatDiscovery.NatDiscoveryError)
        if (!(error instanceof NatDiscovery.NatDiscoveryError)) return
        assert.strictEqual(error.reason, "NoOtherAddress")
        assert.strictEqual(error.test, "connectivity")
        assert.strictEqual(error.server, `${ips[0]}:${port}`)
      }))
  }
)
