/**
 * Two ICE agents on real sockets, as a library user writes them: each agent is a scoped resource on the `Network`
 * service (here `NodeNetwork`), the application carries credentials and candidates between them (its signalling;
 * here `IceAgent.pipeSignalling`, in process), waits for a selected pair, and exchanges data on it.
 *
 * Run: `npx tsx examples/ice-loopback.ts`. Host candidates on the IPv4 loopback interface only (no STUN or TURN
 * server needed), a message each way, then the program exits; closing the scope closes both agents.
 */
import { Chunk, Effect, Stream } from "effect"
import { IceAgent, NodeNetwork } from "../src/index.js"

const options: IceAgent.Options = {
  includeLoopback: true,
  interfaceFilter: (i) => i.internal && i.family === "IPv4"
}

const describe = (pair: IceAgent.SelectedPair) =>
  `${IceAgent.describeCandidate(pair.local)} -> ${IceAgent.describeCandidate(pair.remote)}`

const program = Effect.gen(function*() {
  const alice = yield* IceAgent.make({ ...options, role: "controlling" })
  const bob = yield* IceAgent.make({ ...options, role: "controlled" })
  yield* IceAgent.pipeSignalling(alice, bob)

  const [a, b] = yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 })
  yield* Effect.log(`alice connected: ${describe(a)}`)
  yield* Effect.log(`bob connected: ${describe(b)}`)

  const text = new TextEncoder()
  const receive = (agent: IceAgent.IceAgent) =>
    Effect.fork(
      Effect.map(Stream.runCollect(Stream.take(agent.data, 1)), (c) => new TextDecoder().decode(Chunk.unsafeGet(c, 0)))
    )
  const toBob = yield* receive(bob)
  const toAlice = yield* receive(alice)
  yield* alice.send(text.encode("hello bob"))
  yield* bob.send(text.encode("hello alice"))
  yield* Effect.log(`bob got: ${yield* toBob.await.pipe(Effect.flatten)}`)
  yield* Effect.log(`alice got: ${yield* toAlice.await.pipe(Effect.flatten)}`)
  const stats = yield* alice.stats
  yield* Effect.log(`alice: ${stats.checksSent} checks, connected after ${stats.connectedAfterMs} ms`)
})

program.pipe(
  Effect.timeout("10 seconds"),
  Effect.scoped,
  Effect.provide(NodeNetwork.layer),
  Effect.tapErrorCause(Effect.logError),
  Effect.runPromise
).then(
  () => process.exit(0),
  () => process.exit(1)
)
