/**
 * `effect-ice demo` (what `npm start` runs): the 81 pairings of RFC 4787 mapping × filtering behaviours run in
 * virtual time, printed as `{ "cells": [...] }` with `--json`; the classical 4 × 4 cells against ARCHITECTURE.md's
 * table, written here literally; `--no-turn`; `--real` on loopback; and the executable itself in a child process.
 *
 * The in-process runs call the command's handler (`Cli.demo`) with a console that keeps what it prints, so they
 * check the printed JSON and the exit (success or `DemoFailed`), not an intermediate value.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as ChildProcess from "node:child_process"
import { fileURLToPath } from "node:url"
import * as Cli from "../src/Cli.js"
import * as NodeNetwork from "../src/NodeNetwork.js"

const root = fileURLToPath(new URL("..", import.meta.url))

/** Runs `effect` with a console whose `log` keeps the lines; returns them with the exit. */
const capture = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const console = yield* Effect.console
    const keep = (...args: ReadonlyArray<unknown>) => lines.push(args.map(String).join(" "))
    const exit = yield* Effect.exit(
      Effect.withConsole(effect, {
        ...console,
        log: (...args: ReadonlyArray<unknown>) => Effect.sync(() => keep(...args)),
        unsafe: { ...console.unsafe, log: keep }
      })
    )
    return { lines, exit }
  })

type Behaviour = { readonly mapping: string; readonly filtering: string }
type Cell = {
  readonly a: Behaviour
  readonly b: Behaviour
  readonly outcome: string
  readonly pair: string
  readonly virtualMs: number
  readonly checks: number
}

const ei = "endpoint-independent"
const ad = "address-dependent"
const apd = "address-and-port-dependent"

/** The nine behaviours in the demo's order: mapping first, then filtering. */
const behaviours: ReadonlyArray<Behaviour> = [ei, ad, apd].flatMap((mapping) =>
  [ei, ad, apd].map((filtering) => ({ mapping, filtering }))
)

/** ARCHITECTURE.md's table, literally ("relay" = needs a relay). */
const architecture: Record<string, Record<string, "direct" | "relay">> = {
  "full cone": { "full cone": "direct", restricted: "direct", "port-restricted": "direct", symmetric: "direct" },
  restricted: { "full cone": "direct", restricted: "direct", "port-restricted": "direct", symmetric: "direct" },
  "port-restricted": { "full cone": "direct", restricted: "direct", "port-restricted": "direct", symmetric: "relay" },
  symmetric: { "full cone": "direct", restricted: "direct", "port-restricted": "relay", symmetric: "relay" }
}

/** ARCHITECTURE.md: full cone = EIM+EIF, restricted cone = EIM+ADF, port-restricted = EIM+APDF, symmetric = APDM+APDF. */
const classical: Record<string, Behaviour> = {
  "full cone": { mapping: ei, filtering: ei },
  restricted: { mapping: ei, filtering: ad },
  "port-restricted": { mapping: ei, filtering: apd },
  symmetric: { mapping: apd, filtering: apd }
}

const find = (cells: ReadonlyArray<Cell>, a: Behaviour, b: Behaviour): Cell => {
  const found = cells.find((c) =>
    c.a.mapping === a.mapping && c.a.filtering === a.filtering && c.b.mapping === b.mapping &&
    c.b.filtering === b.filtering
  )
  assert.isDefined(found)
  return found!
}

const name = (b: Behaviour) => `${b.mapping}/${b.filtering}`

/** The handler with `--json` (and `--no-turn` when `turn` is false): the parsed cells and the exit. */
const runJson = (turn: boolean) =>
  capture(Cli.demo({ json: true, real: false, noTurn: !turn })).pipe(
    // The simulated demo does not use the `Network` service, but the command's type asks for it (for `--real`).
    Effect.provide(NodeNetwork.layer),
    Effect.map(({ exit, lines }) => {
      assert.strictEqual(lines.length, 1, "one line: the JSON object")
      const parsed = JSON.parse(lines[0]!) as { readonly cells: ReadonlyArray<Cell> }
      assert.deepStrictEqual(Object.keys(parsed), ["cells"])
      return { cells: parsed.cells, exit }
    })
  )

const withTurn = Effect.runSync(Effect.cached(runJson(true)))
const withoutTurn = Effect.runSync(Effect.cached(runJson(false)))

describe("effect-ice demo", () => {
  it.live(
    "--json: 81 cells, row-major (A = rows), exact keys and RFC 4787 spellings; all connect with TURN",
    () =>
      Effect.gen(function*() {
        const { cells, exit } = yield* withTurn
        assert.isTrue(Exit.isSuccess(exit), "exit code 0")
        assert.strictEqual(cells.length, 81)
        for (const [i, cell] of cells.entries()) {
          assert.deepStrictEqual(Object.keys(cell), ["a", "b", "outcome", "pair", "virtualMs", "checks"])
          assert.deepStrictEqual(Object.keys(cell.a), ["mapping", "filtering"])
          assert.deepStrictEqual(Object.keys(cell.b), ["mapping", "filtering"])
          assert.deepStrictEqual(cell.a, behaviours[Math.floor(i / 9)], `row of cell ${i}`)
          assert.deepStrictEqual(cell.b, behaviours[i % 9], `column of cell ${i}`)
          const where = `${name(cell.a)} × ${name(cell.b)}`
          assert.include(["direct", "relay"], cell.outcome, where)
          assert.match(cell.pair, /^(host|srflx|prflx|relay)-(host|srflx|prflx|relay)$/, where)
          assert.strictEqual(cell.outcome === "relay", cell.pair.includes("relay"), where)
          assert.isTrue(Number.isInteger(cell.virtualMs) && cell.virtualMs > 1000 && cell.virtualMs < 5000, where)
          assert.isTrue(Number.isInteger(cell.checks) && cell.checks > 0, where)
        }
        // A few cells written out whole (the 9 × 9 simulation test pins every one of them).
        assert.deepStrictEqual(find(cells, classical["full cone"]!, classical["full cone"]!), {
          a: { mapping: ei, filtering: ei },
          b: { mapping: ei, filtering: ei },
          outcome: "direct",
          pair: "srflx-srflx",
          virtualMs: 1170,
          checks: 11
        })
        const symmetric = find(cells, classical.symmetric!, classical.symmetric!)
        assert.strictEqual(symmetric.outcome, "relay")
        assert.strictEqual(symmetric.pair, "prflx-relay")
        assert.strictEqual(symmetric.virtualMs, 1440)
        // The count of direct pairings (42) and relayed ones (39).
        assert.strictEqual(cells.filter((c) => c.outcome === "direct").length, 42)
        assert.strictEqual(cells.filter((c) => c.outcome === "relay").length, 39)
      }),
    180_000
  )

  it.live(
    "the 16 classical cells agree with ARCHITECTURE.md's table: direct where it says direct, relay elsewhere",
    () =>
      Effect.gen(function*() {
        const { cells } = yield* withTurn
        for (const [nameA, row] of Object.entries(architecture)) {
          for (const [nameB, expected] of Object.entries(row)) {
            const cell = find(cells, classical[nameA]!, classical[nameB]!)
            assert.strictEqual(cell.outcome, expected, `${nameA} × ${nameB}`)
          }
        }
      }),
    180_000
  )

  it.live(
    "--no-turn: exactly the cells that needed the relay fail, the classical ones as the table says",
    () =>
      Effect.gen(function*() {
        const { cells: turn } = yield* withTurn
        const { cells, exit } = yield* withoutTurn
        assert.isTrue(Exit.isSuccess(exit), "every outcome as expected: exit code 0")
        assert.strictEqual(cells.length, 81)
        for (const [i, cell] of cells.entries()) {
          const where = `${name(cell.a)} × ${name(cell.b)}`
          assert.deepStrictEqual([cell.a, cell.b], [turn[i]!.a, turn[i]!.b])
          if (turn[i]!.outcome === "relay") {
            assert.strictEqual(cell.outcome, "failed", where)
            assert.strictEqual(cell.pair, "none", where)
          } else {
            assert.strictEqual(cell.outcome, "direct", where)
            assert.strictEqual(cell.pair, turn[i]!.pair, where)
          }
        }
        for (const [nameA, row] of Object.entries(architecture)) {
          for (const [nameB, expected] of Object.entries(row)) {
            const cell = find(cells, classical[nameA]!, classical[nameB]!)
            assert.strictEqual(cell.outcome, expected === "relay" ? "failed" : "direct", `${nameA} × ${nameB}`)
          }
        }
      }),
    180_000
  )

  it.live(
    "the text view: the matrix, the summary and the classical table marked ok, and ! on an unexpected cell",
    () =>
      Effect.gen(function*() {
        const { cells } = yield* withTurn
        const result = { cells: cells as ReadonlyArray<Cli.DemoCell>, turn: true, realMs: 9876, concurrency: 16 }
        const text = Cli.formatDemo(result)
        const lines = text.split("\n")
        assert.include(text, "81 pairings: 42 direct, 39 relay, 0 failed, all as expected; 9.9 s real time")
        assert.include(text, "16 of 16 cells agree with ARCHITECTURE.md")
        assert.notInclude(text, "DIFFERS")
        const header = lines.find((l) => l.startsWith("A \\ B     EIM/EIF"))
        assert.isDefined(header)
        const row = lines.find((l) => l.startsWith("EIM/EIF   "))
        assert.match(row!, /^EIM\/EIF {3}D ss 1170 11 D ss 1170 11 D ss /)
        assert.match(lines.find((l) => l.startsWith("symmetric "))!, /relay prflx-relay ok$/)
        // A cell that did not connect is marked, in the matrix and against the table.
        const broken = cells.map((c, i) => i === 80 ? { ...c, outcome: "failed", pair: "none" } : c)
        const marked = Cli.formatDemo({ ...result, cells: broken as ReadonlyArray<Cli.DemoCell> })
        assert.match(marked.split("\n").find((l) => l.startsWith("APDM/APDF "))!, /F -- +1440 +15!$/)
        assert.include(marked, "81 pairings: 42 direct, 38 relay, 1 failed, 1 not as expected")
        assert.include(marked, "failed DIFFERS (table: relay)")
        assert.include(marked, "15 of 16 cells agree")
      }),
    180_000
  )

  it.live(
    "--real: two agents and our TURN server on loopback connect and exchange a message each way",
    () =>
      Effect.gen(function*() {
        const result = yield* Cli.runRealDemo({ turn: true })
        assert.strictEqual(result.outcome, "direct")
        assert.strictEqual(result.pair, "host-host")
        assert.deepStrictEqual(result.received, ["hello bob", "hello alice"])
        assert.match(result.turnServer ?? "", /^127\.0\.0\.1:\d+$/)
        assert.isTrue(result.checks > 0 && result.realMs >= 0 && result.realMs < 10_000)
        assert.match(
          Cli.formatRealDemo(result),
          /^real loopback: direct host-host \d+ ms, \d+ checks \(TURN 127\.0\.0\.1:/
        )
        const { exit, lines } = yield* capture(Cli.demo({ json: true, real: true, noTurn: false }))
        assert.isTrue(Exit.isSuccess(exit))
        const printed = JSON.parse(lines[0]!)
        assert.deepStrictEqual(Object.keys(printed.real), ["outcome", "pair", "realMs", "checks", "turnServer"])
        assert.strictEqual(printed.real.pair, "host-host")
      }).pipe(Effect.provide(NodeNetwork.layer), Effect.timeout("30 seconds")),
    40_000
  )

  it.live("`node --import tsx src/bin.ts demo --json` prints 81 cells and exits 0", () =>
    Effect.gen(function*() {
      const { code, stdout } = yield* Effect.async<{ code: number | null; stdout: string }>((resume) => {
        const child = ChildProcess.execFile(
          process.execPath,
          ["--import", "tsx", "src/bin.ts", "demo", "--json"],
          { cwd: root, encoding: "utf8", timeout: 150_000, maxBuffer: 16 * 1024 * 1024 },
          (error, stdout) =>
            resume(Effect.succeed({ code: error === null ? 0 : (error.code as number | null), stdout }))
        )
        return Effect.sync(() => child.kill())
      })
      assert.strictEqual(code, 0)
      const parsed = JSON.parse(stdout) as { readonly cells: ReadonlyArray<Cell> }
      assert.strictEqual(parsed.cells.length, 81)
      assert.isTrue(parsed.cells.every((c) => c.outcome === "direct" || c.outcome === "relay"))
    }), 180_000)
})
