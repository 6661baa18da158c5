/**
 * Relay data through a TURN server, as a library user writes it: allocate a relayed address (the allocation lives
 * in the program's scope and is released when it closes), permit a peer, exchange a datagram with it through the
 * relay with Send/Data indications, bind a channel, and exchange another as ChannelData.
 *
 * Run: `npx tsx examples/turn-relay.ts SERVER_IP:PORT USERNAME PASSWORD [udp|tcp] [PEER_IP]`. The peer is a UDP
 * socket this program binds on PEER_IP (default 127.0.0.1); against a server on loopback, coturn needs
 * `--allow-loopback-peers`. With `USERNAME` of the form `secret:NAME`, PASSWORD is taken as the TURN REST shared
 * secret and ephemeral credentials are computed for NAME.
 */
import { Chunk, Effect, Either, Queue, Stream } from "effect"
import { Network, NodeNetwork, TransportAddress, TurnClient } from "../src/index.js"

const [serverText, username, password, transportText, peerIp] = process.argv.slice(2)
if (serverText === undefined || username === undefined || password === undefined) {
  console.error("usage: tsx examples/turn-relay.ts SERVER_IP:PORT USERNAME PASSWORD [udp|tcp] [PEER_IP]")
  process.exit(2)
}

const program = Effect.gen(function*() {
  const server = Either.getOrThrow(TransportAddress.parse(serverText))
  const auth: TurnClient.Auth = username.startsWith("secret:")
    ? { mode: "secret", secret: password, user: username.slice("secret:".length) }
    : { mode: "static", username, password }
  const allocation = yield* TurnClient.allocate({ server, auth, transport: transportText === "tcp" ? "tcp" : "udp" })
  yield* Effect.log(
    `relayed ${TransportAddress.format(allocation.relayed)}, lifetime ${yield* allocation.lifetime} s (local ${
      TransportAddress.format(allocation.local)
    })`
  )

  // The peer: a plain UDP socket.
  const network = yield* Network.Network
  const peerSocket = yield* network.bindUdp({ address: peerIp ?? "127.0.0.1" })
  const peer = { family: peerSocket.local.family, ip: peerSocket.local.ip, port: peerSocket.local.port }
  const inbox = yield* Queue.unbounded<string>()
  yield* peerSocket.setHandler((data) => void Queue.unsafeOffer(inbox, new TextDecoder().decode(data)))

  const exchange = (label: string) =>
    Effect.gen(function*() {
      yield* allocation.send(peer, new TextEncoder().encode(`hello peer (${label})`))
      yield* Effect.log(`peer got: ${yield* Queue.take(inbox)}`)
      const reply = yield* Effect.fork(Stream.runCollect(Stream.take(allocation.data, 1)))
      yield* peerSocket.send(new TextEncoder().encode(`hello client (${label})`), allocation.relayed)
      const [got] = Chunk.toReadonlyArray(yield* reply.await.pipe(Effect.flatten))
      yield* Effect.log(`client got from ${TransportAddress.format(got!.peer)}: ${new TextDecoder().decode(got!.data)}`)
    }).pipe(Effect.timeout("5 seconds"))

  yield* allocation.permit([peer])
  yield* exchange("Send/Data indications")
  const channel = yield* allocation.bindChannel(peer)
  yield* exchange(`ChannelData on 0x${channel.toString(16)}`)
  yield* Effect.log("releasing the allocation")
})

program.pipe(
  Effect.scoped,
  Effect.provide(NodeNetwork.layer),
  Effect.tapErrorCause(Effect.logError),
  Effect.runPromise
).catch(() => process.exit(1))
