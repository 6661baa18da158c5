/**
 * Discover your server-reflexive address with one STUN Binding request, as a library user writes it: an Effect
 * program on the `Network` service, here run on real sockets (`NodeNetwork`).
 *
 * Run: `npx tsx examples/stun-binding.ts [ip:port]`. Without an argument it starts our own STUN server on
 * 127.0.0.1 (an ephemeral port) and asks it, so it needs no outside server. The same program runs unchanged on
 * `VirtualNetwork` (see test/StunServer.test.ts).
 */
import { Duration, Effect, Either } from "effect"
import { Network, NodeNetwork, StunMessage, StunServer, StunTransaction, TransportAddress } from "../src/index.js"

const program = Effect.gen(function*() {
  const argument = process.argv[2]
  const server = argument === undefined
    ? (yield* StunServer.make({ address: "127.0.0.1", port: 0 })).primary
    : Either.getOrThrow(TransportAddress.parse(argument))

  const network = yield* Network.Network
  const socket = yield* network.bindUdp({ family: server.family })
  const client = yield* StunTransaction.makeUdp(socket)

  const response = yield* client.request(server, { method: StunMessage.StunMethod.Binding })
  const mapped = StunMessage.find(response.message, "XorMappedAddress")?.address
  yield* Effect.log(
    `${TransportAddress.format(server)} says our address is ${mapped ? TransportAddress.format(mapped) : "unknown"}` +
      ` (local ${TransportAddress.format(socket.local)}, rtt ${Duration.format(response.elapsed)},` +
      ` ${response.attempts} send${response.attempts > 1 ? "s" : ""})`
  )
  return mapped
})

program.pipe(
  Effect.scoped,
  Effect.provide(NodeNetwork.layer),
  Effect.catchTags({
    StunTimeout: (e) => Effect.logError(`no answer: ${e.message}`),
    StunErrorResponse: (e) => Effect.logError(`error answer: ${e.code} ${e.reason}`),
    NetworkError: (e) => Effect.logError(`network: ${e.message}`)
  }),
  Effect.runPromise
)
