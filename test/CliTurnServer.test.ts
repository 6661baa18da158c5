/**
 * `effect-ice turn-server`: the flags as `@effect/cli` parses them and the settings they give, and the real program
 * (`node --import tsx src/bin.ts turn-server …`, one process, so a signal reaches it directly) on loopback: it
 * prints its listeners, allocates for our `TurnClient`, serves the allocation gauge to `fetch`, and exits 0 on
 * SIGTERM; the same with a `--config` file whose values the flags override; and a bad flag exits 1 with one line.
 */
import { CliConfig, Options } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Option, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Cli from "../src/Cli.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import * as TransportAddress from "../src/TransportAddress.js"
import * as TurnClient from "../src/TurnClient.js"

const root = fileURLToPath(new URL("..", import.meta.url))

const parseFlags = (args: ReadonlyArray<string>) =>
  Options.processCommandLine(Options.all(Cli.turnServerFlags), args, CliConfig.defaultConfig).pipe(
    Effect.map(([, rest, flags]) => ({ rest, flags })),
    Effect.provide(NodeContext.layer)
  )

describe("effect-ice turn-server flags", () => {
  it.effect("repeatable and single flags parse to the settings the configuration file would give", () =>
    Effect.gen(function*() {
      const { flags, rest } = yield* parseFlags([
        "--listen",
        "127.0.0.1:3479",
        "--listen",
        "[::1]:3479",
        "--user",
        "u:p",
        "--user",
        "v:q:r",
        "--auth-secret",
        "s",
        "--realm",
        "r",
        "--relay-ip",
        "127.0.0.1",
        "--relay-ports",
        "50000-50100",
        "--allow-peer",
        "127.0.0.0/8",
        "--max-allocations",
        "7",
        "--max-bps",
        "1000",
        "--unauthenticated-rate-limit",
        "0",
        "--metrics-port",
        "0",
        "--no-tcp",
        "--config",
        "/etc/turn.conf"
      ])
      assert.deepStrictEqual(rest, [])
      assert.deepStrictEqual(flags.config, Option.some("/etc/turn.conf"))
      const settings = Either.getOrThrow(Cli.settingsFromFlags(flags))
      assert.deepStrictEqual(
        {
          ...settings,
          users: settings.users.map((u) => `${u.name}:${Redacted.value(u.password)}`),
          authSecrets: settings.authSecrets.map(Redacted.value)
        },
        {
          listen: [
            { family: "IPv4", ip: "127.0.0.1", port: 3479 },
            { family: "IPv6", ip: "::1", port: 3479 }
          ],
          tlsListen: [],
          cert: undefined,
          key: undefined,
          realm: "r",
          users: ["u:p", "v:q:r"],
          authSecrets: ["s"],
          relayIps: ["127.0.0.1"],
          relayPorts: [50000, 50100],
          externalIps: [],
          allowPeers: ["127.0.0.0/8"],
          denyPeers: [],
          maxAllocations: 7,
          userQuota: undefined,
          maxBps: 1000,
          unauthenticatedRateLimit: 0,
          lifetime: undefined,
          maxLifetime: undefined,
          software: undefined,
          noTcp: true,
          metricsPort: 0
        }
      )
    }))

  it.effect("a bad value is refused naming the flag", () =>
    Effect.gen(function*() {
      const refused = (args: ReadonlyArray<string>) =>
        Effect.map(parseFlags(args), ({ flags }) => {
          const settings = Cli.settingsFromFlags(flags)
          return Either.isLeft(settings) ? settings.left.message : "accepted"
        })
      assert.strictEqual(
        yield* refused(["--listen", "localhost:3478"]),
        "--listen: expected IP:PORT, [IPv6]:PORT or IP, got \"localhost:3478\""
      )
      assert.strictEqual(yield* refused(["--user", "nobody"]), "--user: expected NAME:PASSWORD")
      assert.strictEqual(
        yield* refused(["--max-allocations", "-3"]),
        "--max-allocations: expected a whole number, got \"-3\""
      )
      assert.strictEqual(yield* refused(["--user", "a:b"]), "accepted")
    }))
})

// ---------------------------------------------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------------------------------------------

interface Program {
  readonly child: ChildProcess.ChildProcess
  readonly stdout: () => ReadonlyArray<string>
  readonly stderr: () => string
  /** Completes with the exit code (or the signal's name) when the process ends. */
  readonly exit: Deferred.Deferred<number | string>
  /** Completes with the printed lines when a line starts with `metrics ` (the last one printed at start-up). */
  readonly started: Deferred.Deferred<ReadonlyArray<string>>
}

/** Runs `effect-ice turn-server …` for the scope (killed at the end if still running). */
const program = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const exit = yield* Deferred.make<number | string>()
      const started = yield* Deferred.make<ReadonlyArray<string>>()
      const child = ChildProcess.spawn(
        process.execPath,
        ["--import", "tsx", "src/bin.ts", "turn-server", ...args],
        { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
      )
      let out = ""
      let err = ""
      const lines = () => out.split("\n").filter((l) => l.length > 0)
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        out += chunk
        if (lines().some((l) => l.startsWith("metrics "))) Deferred.unsafeDone(started, Effect.succeed(lines()))
      })
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
        err += chunk
      })
      child.on("exit", (code, signal) => Deferred.unsafeDone(exit, Effect.succeed(code ?? signal ?? "unknown")))
      return { child, stdout: lines, stderr: () => err, exit, started } satisfies Program
    }),
    ({ child }) =>
      Effect.sync(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
  )

/** Waits for start-up (30 s at most) and returns the printed lines; fails with stderr if the program ended. */
const awaitStart = (p: Program) =>
  Effect.raceFirst(
    Deferred.await(p.started),
    Effect.flatMap(Deferred.await(p.exit), (code) => Effect.dieMessage(`exited ${code}: ${p.stderr()}`))
  ).pipe(Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(`no start-up: ${p.stderr()}`) }))

const fetchText = (url: string) => Effect.promise(() => fetch(url).then((r) => r.text()))

/** Allocates as `u`/`p` on the printed UDP address, checks the metrics, SIGTERMs, expects exit 0. */
const exercise = (p: Program) =>
  Effect.gen(function*() {
    const lines = yield* awaitStart(p)
    assert.strictEqual(lines.length, 4, lines.join("\n"))
    const [udpLine, tcpLine, relayLine, metricsLine] = lines as [string, string, string, string]
    const udp = /^listening udp 127\.0\.0\.1:(\d+)$/.exec(udpLine)
    assert.isNotNull(udp, udpLine)
    assert.match(tcpLine, /^listening tcp 127\.0\.0\.1:\d+$/)
    assert.notStrictEqual(Number(udp![1]), 0)
    assert.strictEqual(relayLine, "relay 127.0.0.1")
    const metrics = /^metrics (http:\/\/127\.0\.0\.1:(\d+)\/metrics)$/.exec(metricsLine)
    assert.isNotNull(metrics, metricsLine)
    assert.notStrictEqual(Number(metrics![2]), 0)

    const server = Either.getOrThrow(TransportAddress.parse(`127.0.0.1:${udp![1]}`))
    yield* Effect.scoped(Effect.gen(function*() {
      const allocation = yield* TurnClient.allocate({ server, auth: { mode: "static", username: "u", password: "p" } })
      assert.strictEqual(allocation.relayed.ip, "127.0.0.1")
      // Loopback peers are refused by default (403): this succeeds only with allow-peer 127.0.0.0/8 applied.
      yield* allocation.permit([{ family: "IPv4", ip: "127.0.0.1", port: 9 }])
      const text = yield* fetchText(metrics![1]!)
      assert.include(
        text,
        "# HELP effect_ice_turn_allocations TURN allocations held by servers\n" +
          "# TYPE effect_ice_turn_allocations gauge\neffect_ice_turn_allocations 1\n"
      )
    })).pipe(Effect.provide(NodeNetwork.layer))
    // The allocation was released with the scope (Refresh with LIFETIME 0): the gauge is back to 0.
    assert.include(yield* fetchText(metrics![1]!), "\neffect_ice_turn_allocations 0\n")

    p.child.kill("SIGTERM")
    const code = yield* Deferred.await(p.exit).pipe(
      Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("no exit 10 s after SIGTERM") })
    )
    assert.strictEqual(code, 0, p.stderr())
    assert.strictEqual(p.stderr(), "")
  })

describe("effect-ice turn-server, the program", { timeout: 90_000 }, () => {
  it.scopedLive("prints its listeners with the real ports, allocates, serves metrics, exits 0 on SIGTERM", () =>
    Effect.gen(function*() {
      const p = yield* program([
        "--listen",
        "127.0.0.1:0",
        "--user",
        "u:p",
        "--realm",
        "r",
        "--allow-peer",
        "127.0.0.0/8",
        "--metrics-port",
        "0"
      ])
      yield* exercise(p)
    }))

  it.scopedLive("--config FILE, with flags winning over it (the file's password for u is wrong)", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ice-turn-"))),
        (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      const file = Path.join(dir, "turnserver.conf")
      Fs.writeFileSync(
        file,
        "# test\nlisten=127.0.0.1:0\nuser=u:wrong\nrealm=r\nallow-peer=127.0.0.0/8\nmetrics-port=0\n"
      )
      const p = yield* program(["--config", file, "--user", "u:p"])
      yield* exercise(p)
    }))

  it.scopedLive("invalid input: exit 1 and one line on stderr, no stack trace", () =>
    Effect.gen(function*() {
      const run = (args: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const p = yield* program(args)
          const code = yield* Deferred.await(p.exit).pipe(Effect.timeout("30 seconds"))
          return { code, stderr: p.stderr(), stdout: p.stdout() }
        })
      assert.deepStrictEqual(yield* run(["--listen", "127.0.0.1:0", "--user", "nobody"]), {
        code: 1,
        stderr: "effect-ice: --user: expected NAME:PASSWORD\n",
        stdout: []
      })
      const missing = yield* run(["--config", "/nonexistent/turn.conf", "--user", "u:p"])
      assert.strictEqual(missing.code, 1)
      assert.strictEqual(missing.stderr, "effect-ice: --config: cannot read /nonexistent/turn.conf (NotFound)\n")
      const badLine = yield* run(["--config", "/dev/null", "--listen", "0.0.0.0:0", "--user", "u:p"])
      assert.deepStrictEqual(badLine, {
        code: 1,
        stderr:
          "effect-ice: relay-ip: listening on 0.0.0.0 needs relay-ip (the specific IP relayed sockets are bound on)\n",
        stdout: []
      })
    }))

  it("examples/turn-server.ts relays a message from its allocation to a local peer", () => {
    const output = ChildProcess.execFileSync(process.execPath, ["--import", "tsx", "examples/turn-server.ts"], {
      cwd: root,
      encoding: "utf8",
      timeout: 60_000
    })
    const relayed = /^allocated relayed address (127\.0\.0\.1:\d+)$/m.exec(output)
    assert.isNotNull(relayed, output)
    assert.match(output, /^TURN server listening on udp\/127\.0\.0\.1:\d+$/m)
    assert.match(output, /^the server holds 1 allocation\(s\)$/m)
    // The peer sees the message come from the relayed address, not from the client.
    assert.match(
      output,
      new RegExp(`^peer 127\\.0\\.0\\.1:\\d+ got "hello through the relay" from ${relayed![1]}$`, "m")
    )
  })
})
