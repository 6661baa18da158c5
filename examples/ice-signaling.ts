/**
 * Two ICE agents in two processes, connected the way real applications connect them: through a signalling channel
 * that carries an SDP offer, an SDP answer and trickled candidates (RFC 8839 for the SDP, RFC 8838 for trickle).
 *
 * Run: `npx tsx examples/ice-signaling.ts`. The program is the offerer (controlling agent); it starts itself again
 * with `--answer` as a child process, the answerer (controlled agent). Their signalling channel is the child's
 * stdin and stdout, one JSON message per line:
 *
 * - `{ "type": "offer", "sdp": "..." }`: a whole SDP (`IceSdp.format`) with the offerer's ufrag and password,
 *   `a=ice-options:trickle` and the candidates it has gathered so far.
 * - `{ "type": "answer", "sdp": "..." }`: the same from the answerer.
 * - `{ "type": "candidate", "candidate": { "candidate": "candidate:...", "sdpMid": "0", ... } }`: one candidate
 *   gathered later (an `RTCIceCandidateInit`, as a browser sends it), and finally `"candidate": ""` for
 *   end-of-candidates.
 *
 * Both agents gather host candidates on the IPv4 loopback interface (no STUN or TURN server needed) with real UDP
 * sockets (`NodeNetwork`). Once connected, each sends a greeting over the selected pair and prints what it got; then
 * both exit 0. The offerer prints on stdout; the answerer's stdout is the signalling channel, so it prints on stderr,
 * which it shares with the offerer. Anything wrong (a message or SDP that does not parse, ICE failure, the other
 * process dying, 30 s passing) ends both processes with a message and exit code 1.
 */
import type { Scope } from "effect"
import {
  Cause,
  Chunk,
  Console,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Logger,
  Mailbox,
  Option,
  ParseResult,
  Queue,
  Schema,
  Stream
} from "effect"
import { spawn } from "node:child_process"
import * as readline from "node:readline"
import type { Readable, Writable } from "node:stream"
import { fileURLToPath } from "node:url"
import { IceAgent, IceCandidate, IceSdp, NodeNetwork } from "../src/index.js"

type Role = "offerer" | "answerer"

const options: IceAgent.Options = {
  includeLoopback: true,
  families: ["IPv4"],
  // Loopback only: both processes run on this machine.
  interfaceFilter: (i) => i.internal
}

/** How long either process may take, start to finish (on the live clock). */
const timeout = Duration.seconds(30)

/** The one media section of our SDP: its `a=mid`, and where trickled candidates say they belong. */
const mid = "0"
const mLineIndex = 0

// ---------------------------------------------------------------------------------------------------------------
// The signalling channel: JSON lines on a pair of streams
// ---------------------------------------------------------------------------------------------------------------

/** Something went wrong on the signalling path (a bad SDP or candidate is an `IceSdpError` or `CandidateParseError`). */
class SignallingError extends Data.TaggedError("SignallingError")<{
  readonly reason: "ChannelClosed" | "BadMessage" | "UnexpectedMessage" | "PeerExited" | "Timeout"
  readonly detail: string
}> {
  override get message(): string {
    return `${this.reason}: ${this.detail}`
  }
}

const CandidateInit = Schema.Struct({
  candidate: Schema.String,
  sdpMid: Schema.optional(Schema.NullOr(Schema.String)),
  sdpMLineIndex: Schema.optional(Schema.NullOr(Schema.Number)),
  usernameFragment: Schema.optional(Schema.NullOr(Schema.String))
})

const Message = Schema.Union(
  Schema.Struct({ type: Schema.Literal("offer", "answer"), sdp: Schema.String }),
  Schema.Struct({ type: Schema.Literal("candidate"), candidate: CandidateInit })
)
type Message = typeof Message.Type

const decodeJson = Schema.decodeEither(Schema.parseJson(Message))

/** One line of the channel as a `Message`, or a `BadMessage` that says what is wrong with it. */
const decodeMessage = (line: string): Either.Either<Message, SignallingError> =>
  Either.mapLeft(decodeJson(line), (error) => {
    const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
    const detail = issues.map((issue) => `${issue.path.join(".") || "message"}: ${issue.message}`).join("; ")
    return new SignallingError({ reason: "BadMessage", detail: `${JSON.stringify(line)}: ${detail}` })
  })

interface Channel {
  readonly send: (message: Message) => Effect.Effect<void>
  /** The next message; fails with `ChannelClosed` once the other side has closed its end. */
  readonly receive: Effect.Effect<Message, SignallingError>
}

const lineChannel = (input: Readable, output: Writable): Effect.Effect<Channel, never, Scope.Scope> =>
  Effect.gen(function*() {
    const lines = yield* Mailbox.make<string>()
    const reader = yield* Effect.acquireRelease(
      Effect.sync(() => readline.createInterface({ input, crlfDelay: Infinity })),
      (reader) => Effect.sync(() => reader.close())
    )
    reader.on("line", (line) => lines.unsafeOffer(line))
    reader.on("close", () => lines.unsafeDone(Exit.void))
    // Writing after the other process is gone fails with EPIPE; `receive` reports the closed channel instead.
    output.on("error", () => {})
    return {
      send: (message) => Effect.sync(() => void output.write(JSON.stringify(message) + "\n")),
      receive: lines.take.pipe(
        Effect.catchTag(
          "NoSuchElementException",
          () => new SignallingError({ reason: "ChannelClosed", detail: "the other process closed the channel" })
        ),
        Effect.flatMap(decodeMessage)
      )
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// One side of the exchange (the same code runs in both processes)
// ---------------------------------------------------------------------------------------------------------------

const describePair = (pair: IceAgent.SelectedPair) =>
  `${IceAgent.describeCandidate(pair.local)} -> ${IceAgent.describeCandidate(pair.remote)}`

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/** Our SDP (offer or answer): the credentials and the candidates gathered so far; later ones are trickled. */
const localDescription = (agent: IceAgent.IceAgent, gathered: Queue.Queue<IceAgent.LocalEvent>) =>
  Effect.gen(function*() {
    const { pwd, ufrag } = yield* agent.localCredentials
    const known = Chunk.toReadonlyArray(yield* Queue.takeAll(gathered))
    const media: IceSdp.IceMedia = {
      mid,
      mLineIndex,
      ufrag,
      pwd,
      options: ["trickle"],
      candidates: known.flatMap((event) => event._tag === "Candidate" ? [event.candidate] : []),
      endOfCandidates: known.some((event) => event._tag === "EndOfCandidates")
    }
    return { media, sdp: IceSdp.format({ lite: agent.lite, media: [media] }) }
  })

/** The peer's offer or answer: its credentials, the candidates it had, and end-of-candidates if it had finished. */
const applyDescription = (agent: IceAgent.IceAgent, sdp: string) =>
  Effect.gen(function*() {
    const description = yield* IceSdp.parse(sdp)
    const media = description.media[0]
    if (media === undefined) {
      return yield* new SignallingError({ reason: "BadMessage", detail: "the SDP has no media section" })
    }
    yield* agent.addRemoteCredentials({ ufrag: media.ufrag, pwd: media.pwd }, { lite: description.lite })
    for (const candidate of media.candidates) yield* agent.addRemoteCandidate(candidate, media.ufrag)
    if (media.endOfCandidates) yield* agent.endOfRemoteCandidates
    return media
  })

const summary = (media: IceSdp.IceMedia) =>
  `ufrag ${media.ufrag}, ${plural(media.candidates.length, "candidate")}` +
  `${media.endOfCandidates ? ", end-of-candidates" : ""}` +
  `${media.options.length > 0 ? `, ice-options ${media.options.join(" ")}` : ""}`

const runSide = (role: Role, channel: Channel, onChannelClosed: Effect.Effect<never, SignallingError>) =>
  Effect.gen(function*() {
    const say = (line: string) =>
      role === "offerer" ? Console.log(`${role}: ${line}`) : Console.error(`${role}: ${line}`)
    const agent = yield* IceAgent.make({ ...options, role: role === "offerer" ? "controlling" : "controlled" })
    // Everything the agent wants to tell its peer (credentials, candidates, end-of-candidates) lands here.
    const gathered = yield* Queue.unbounded<IceAgent.LocalEvent>()
    yield* Effect.forkScoped(Stream.runForEach(agent.localCandidates, (event) => Queue.offer(gathered, event)))

    const expect = (type: "offer" | "answer") =>
      Effect.gen(function*() {
        const message = yield* channel.receive
        if (message.type === "candidate" || message.type !== type) {
          const detail = `expected an ${type}, got ${JSON.stringify(message)}`
          return yield* new SignallingError({ reason: "UnexpectedMessage", detail })
        }
        return message.sdp
      })

    const sendDescription = (type: "offer" | "answer") =>
      Effect.gen(function*() {
        const { media, sdp } = yield* localDescription(agent, gathered)
        yield* channel.send({ type, sdp })
        yield* say(`sent ${type}: ${summary(media)}`)
      })

    // Trickle (RFC 8838): each candidate gathered after our SDP went out travels alone, then end-of-candidates.
    const trickle = Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(gathered), (event) => {
      const where = { sdpMid: mid, sdpMLineIndex: mLineIndex }
      switch (event._tag) {
        case "Candidate":
          return Effect.zipRight(
            channel.send({
              type: "candidate",
              candidate: IceCandidate.toInit(event.candidate, { ...where, usernameFragment: event.ufrag })
            }),
            say(`trickled ${IceAgent.describeCandidate(event.candidate)}`)
          )
        case "EndOfCandidates":
          return Effect.zipRight(
            channel.send({
              type: "candidate",
              candidate: { ...IceCandidate.endOfCandidates, ...where, usernameFragment: event.ufrag }
            }),
            say("trickled end-of-candidates")
          )
        case "Credentials":
          // Only an ICE restart brings new credentials, and those need a new offer; this example never restarts.
          return Effect.void
      }
    })))

    if (role === "offerer") {
      // Offer: our credentials and first candidates; then trickle the rest without waiting for the answer.
      yield* sendDescription("offer")
      yield* trickle
      // Answer: the peer's credentials and first candidates. Checks start as soon as the agent has both.
      const answer = yield* applyDescription(agent, yield* expect("answer"))
      yield* say(`got answer: ${summary(answer)}`)
    } else {
      // Offer first, then our answer, then our own trickle.
      const offer = yield* applyDescription(agent, yield* expect("offer"))
      yield* say(`got offer: ${summary(offer)}`)
      yield* sendDescription("answer")
      yield* trickle
    }

    // The peer's trickled candidates, until its end-of-candidates (`candidate: ""`) and the channel closing.
    const receiveCandidates = Effect.forever(Effect.gen(function*() {
      const message = yield* channel.receive
      if (message.type !== "candidate") {
        return yield* new SignallingError({ reason: "UnexpectedMessage", detail: `a second ${message.type}` })
      }
      const candidate = yield* IceCandidate.fromInit(message.candidate)
      if (Option.isNone(candidate)) {
        yield* agent.endOfRemoteCandidates
        yield* say("got end-of-candidates")
      } else {
        yield* agent.addRemoteCandidate(candidate.value, message.candidate.usernameFragment ?? undefined)
        yield* say(`got candidate ${IceAgent.describeCandidate(candidate.value)}`)
      }
    })).pipe(
      Effect.catchIf(
        (error) => error._tag === "SignallingError" && error.reason === "ChannelClosed",
        () => onChannelClosed
      )
    )

    // Connected: greet the peer over the ICE data path and wait for its greeting.
    const greet = Effect.gen(function*() {
      const pair = yield* agent.connected
      yield* say(`selected pair ${describePair(pair)}`)
      yield* agent.send(new TextEncoder().encode(`hello from the ${role}`))
      const received = yield* Stream.runHead(agent.data)
      if (Option.isNone(received)) {
        return yield* new SignallingError({ reason: "ChannelClosed", detail: "the agent closed before any data" })
      }
      yield* say(`received "${new TextDecoder().decode(received.value)}"`)
    })

    // A bad trickled candidate (or message) ends the exchange as surely as a failed connection.
    yield* Effect.raceFirst(greet, receiveCandidates)
  })

// ---------------------------------------------------------------------------------------------------------------
// The two processes
// ---------------------------------------------------------------------------------------------------------------

/** The offerer: starts the answerer (this file again, with `--answer`) and talks to it on its stdin and stdout. */
const offerer = Effect.gen(function*() {
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--answer"], {
        stdio: ["pipe", "pipe", "inherit"]
      })
    ),
    // On success the answerer has exited already; on failure or timeout, it must not outlive us.
    (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill())
  )
  const exited = yield* Deferred.make<number, SignallingError>()
  child.on(
    "error",
    (error) =>
      Deferred.unsafeDone(exited, Exit.fail(new SignallingError({ reason: "PeerExited", detail: error.message })))
  )
  child.on("exit", (code, signal) =>
    Deferred.unsafeDone(
      exited,
      code === null
        ? Exit.fail(new SignallingError({ reason: "PeerExited", detail: `the answerer was killed by ${signal}` }))
        : Exit.succeed(code)
    ))
  const exitCode = Deferred.await(exited).pipe(
    Effect.filterOrFail(
      (code) => code === 0,
      (code) => new SignallingError({ reason: "PeerExited", detail: `the answerer exited with code ${code}` })
    )
  )

  const channel = yield* lineChannel(child.stdout, child.stdin)
  // The answerer closes its stdout when it exits, possibly before we have read its greeting: not an error here;
  // how it exited is what tells.
  yield* Effect.raceFirst(runSide("offerer", channel, Effect.never), Effect.zipRight(exitCode, Effect.never))
  yield* Console.log(`offerer: answerer exited with code ${yield* exitCode}`)
})

/** The answerer: the offerer is at the other end of stdin and stdout. */
const answerer = Effect.gen(function*() {
  const channel = yield* lineChannel(process.stdin, process.stdout)
  // The offerer waits for us to exit, so a closed stdin means it went away.
  yield* runSide(
    "answerer",
    channel,
    new SignallingError({ reason: "ChannelClosed", detail: "the offerer went away" })
  )
})

const role: Role = process.argv.includes("--answer") ? "answerer" : "offerer"
const program = role === "offerer" ? offerer : answerer

program.pipe(
  Effect.timeoutFail({
    duration: timeout,
    onTimeout: () => new SignallingError({ reason: "Timeout", detail: `not done after ${Duration.format(timeout)}` })
  }),
  Effect.scoped,
  Effect.provide(NodeNetwork.layer),
  Effect.tapError((error) => Console.error(`${role} failed: ${error._tag}: ${error.message}`)),
  Effect.tapDefect((cause) => Console.error(`${role} failed: ${Cause.pretty(cause)}`)),
  // Library log lines go to stderr in both processes: the answerer's stdout carries only signalling.
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))),
  Effect.runPromise
).then(
  () => process.exit(0),
  () => process.exit(1)
)
