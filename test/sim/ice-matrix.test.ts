/**
 * ICE across NATs on the simulated internet: the classical 4 × 4 table (STUN only) and the 9 × 9 product of RFC 4787
 * mapping × filtering behaviours (with a TURN server), each pairing a fresh world built by `iceScenario.runPairing`:
 * a STUN server 192.0.2.1:3478, a TURN server 198.51.100.9:3478 (UDP; the 9 × 9 only), Alice (controlling) at
 * 10.0.1.2 behind NAT "a" (203.0.113.1) and Bob (controlled) at 10.0.2.2 behind NAT "b" (203.0.113.2), the internet
 * 10 ms one way, every other link 0 ms, signalling instant, everything seeded. The two private networks are
 * separate, so host/host pairs never work (their checks are dropped as `NoHost` and time out after 39.5 s).
 *
 * Every expectation is written here, not computed by the code under test: the outcome of each cell (literally), the
 * kind of Alice's selected pair (`<local>-<remote>`, by the rule stated below), and Alice's time to connected in
 * virtual ms (exact: the run is deterministic). Per cell the virtual ms and the checks sent by both agents are
 * printed as a table after each block.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Scenario from "../../src/internal/iceScenario.js"
import * as NatBehavior from "../../src/NatBehavior.js"

type Row = Record<string, Scenario.PairingResult>

/** A text table: one row per `rows` key, one column per `columns` key, each cell `cell(result)`. */
const table = (
  title: string,
  results: Record<string, Row>,
  rows: ReadonlyArray<string>,
  columns: ReadonlyArray<string>,
  cell: (r: Scenario.PairingResult) => string
) => {
  const width = Math.max(
    ...columns.map((c) => c.length),
    ...Object.values(results).flatMap((row) => Object.values(row).map((r) => cell(r).length))
  ) + 2
  const head = Math.max(...rows.map((r) => r.length)) + 2
  const lines = [title, "A \\ B".padEnd(head) + columns.map((c) => c.padEnd(width)).join("")]
  for (const row of rows) {
    lines.push(
      row.padEnd(head) + columns.map((c) => {
        const r = results[row]?.[c]
        return (r === undefined ? "-" : cell(r)).padEnd(width)
      }).join("")
    )
  }
  return lines.join("\n")
}

const record = (results: Record<string, Row>, row: string, column: string, result: Scenario.PairingResult) => {
  results[row] ??= {}
  results[row][column] = result
}

/** `srflx-prflx` seen from the other side is `prflx-srflx`. */
const mirror = (pair: string) => pair.split("-").reverse().join("-")

// -----------------------------------------------------------------------------------------------------------------
// The classical table, STUN only
// -----------------------------------------------------------------------------------------------------------------

const classical: ReadonlyArray<readonly [string, NatBehavior.NatBehavior]> = [
  ["full cone", NatBehavior.fullCone], // EIM + EIF
  ["restricted", NatBehavior.restrictedCone], // EIM + ADF
  ["port-restricted", NatBehavior.portRestrictedCone], // EIM + APDF
  ["symmetric", NatBehavior.symmetric] // APDM + APDF, random ports
]

/**
 * ARCHITECTURE.md's table; its "relay" means "needs a relay", so with STUN only those cells fail with `IceFailed`
 * (every pair failed). The pair kinds: a cone NAT maps endpoint-independently, so the peer sees its
 * server-reflexive address (srflx); a symmetric NAT gives the checks toward the peer a new mapping, which the peer
 * learns from the check as a peer-reflexive candidate (prflx), and so does Alice's own side (the mapped address in
 * the answer is not her srflx). Failed cells end when the last ordinary check (Alice's check to Bob's srflx, sent
 * at 100 ms) times out after 39.5 s: 39 600 ms.
 */
const expectedClassical: Record<string, Record<string, readonly [Scenario.Outcome, string, number]>> = {
  "full cone": {
    "full cone": ["direct", "srflx-srflx", 1170],
    restricted: ["direct", "srflx-srflx", 1170],
    "port-restricted": ["direct", "srflx-srflx", 1170],
    symmetric: ["direct", "srflx-prflx", 1220]
  },
  restricted: {
    "full cone": ["direct", "srflx-srflx", 1170],
    restricted: ["direct", "srflx-srflx", 1170],
    "port-restricted": ["direct", "srflx-srflx", 1170],
    symmetric: ["direct", "srflx-prflx", 1220]
  },
  "port-restricted": {
    "full cone": ["direct", "srflx-srflx", 1170],
    restricted: ["direct", "srflx-srflx", 1170],
    "port-restricted": ["direct", "srflx-srflx", 1170],
    symmetric: ["failed", "none", 39600]
  },
  symmetric: {
    "full cone": ["direct", "prflx-srflx", 1170],
    restricted: ["direct", "prflx-srflx", 1170],
    "port-restricted": ["failed", "none", 39600],
    symmetric: ["failed", "none", 39600]
  }
}

const classicalResults: Record<string, Row> = {}

describe("the classical 4 × 4 table, STUN only (no TURN): direct or IceFailed", () => {
  afterAll(() => {
    const names = classical.map(([name]) => name)
    console.log(table(
      "4 × 4, STUN only: outcome, Alice's pair, virtual ms, checks (both agents)",
      classicalResults,
      names,
      names,
      (r) => `${r.outcome} ${r.pair} ${r.virtualMs} ms ${r.checks}`
    ))
  })

  for (const [nameA, natA] of classical) {
    for (const [nameB, natB] of classical) {
      const [outcome, pair, ms] = expectedClassical[nameA]![nameB]!
      it.effect(`${nameA} × ${nameB}: ${outcome}`, () =>
        Effect.gen(function*() {
          const result = yield* Scenario.runPairing({ a: { nat: natA }, b: { nat: natB } })
          record(classicalResults, nameA, nameB, result)
          assert.strictEqual(result.outcome, outcome)
          assert.strictEqual(result.pair, pair)
          assert.strictEqual(result.virtualMs, ms)
          if (outcome === "failed") {
            assert.strictEqual(result.failureTag, "IceFailed")
            assert.isTrue(result.failure?.startsWith("IceFailed: ICE failed (AllPairsFailed)"), result.failure)
            assert.isFalse(result.delivered)
          } else {
            assert.strictEqual(result.pairB, mirror(pair))
            assert.isTrue(result.delivered)
          }
        }))
    }
  }
})

// -----------------------------------------------------------------------------------------------------------------
// 9 × 9 mapping × filtering, with TURN
// -----------------------------------------------------------------------------------------------------------------

const mappings: ReadonlyArray<readonly [string, NatBehavior.Mapping]> = [
  ["EIM", "endpoint-independent"],
  ["ADM", "address-dependent"],
  ["APDM", "address-and-port-dependent"]
]
const filterings: ReadonlyArray<readonly [string, NatBehavior.Filtering]> = [
  ["EIF", "endpoint-independent"],
  ["ADF", "address-dependent"],
  ["APDF", "address-and-port-dependent"]
]
const cells = mappings.flatMap(([m, mapping]) =>
  filterings.map(([f, filtering]) => ({ name: `${m}+${f}`, mapping, filtering }))
)

/**
 * Which pairings have a direct path (with a TURN server every pairing connects, so the rest are "relay"). Alice and
 * Bob each send checks from their host socket to the other's server-reflexive address (srflx: the mapping the
 * STUN server saw), answer every check from where it came, learn its source as a peer-reflexive (prflx) candidate,
 * and send a triggered check back to it. A check succeeds only when its answer comes from the address it was sent
 * to (RFC 8445 §7.2.5.2.1); an answer from elsewhere fails the pair. Write X → Y for X's check to Y's srflx.
 *
 * 1. X → Y reaches Y's host when Y's srflx mapping admits X's packet. That mapping is the one toward the STUN
 *    server. With EIF it admits anyone. With ADF/APDF it must have sent to X: only possible when Y maps
 *    endpoint-independently (EIM: one mapping for everything, which carries Y's own checks to X's srflx); ADF then
 *    admits any port of X's IP, APDF only X's srflx itself, i.e. only when X is EIM too. Under ADM/APDM the srflx
 *    mapping has sent to the STUN server only, so ADF/APDF drop every check that comes to it.
 * 2. Once in, Y answers from its host socket. With Y EIM the answer leaves from Y's srflx, the address X sent to,
 *    and passes X's mapping (which sent exactly there): X's check succeeds. Hence: **Y = EIM+EIF or EIM+ADF connects
 *    directly with anyone, and EIM+APDF with any EIM**.
 * 3. With Y ADM or APDM the answer and Y's triggered check to X's source α leave from a new mapping γ. They pass
 *    X's mapping α unless X filters by port (α sent to Y's srflx: same IP as γ, another port). Y's check then
 *    succeeds when X's answer leaves from α again: X EIM, or ADM (α is X's mapping for all of Y's IP). If X is
 *    APDM, X answers from yet another mapping α′ (and learns γ); Y's γ admits α′ when Y does not filter by port,
 *    and X's triggered check from α′ to γ is answered from γ when Y is ADM (one mapping per IP): success. APDM on
 *    both sides never succeeds: every answer to a new address leaves from a new mapping, never the one checked.
 * 4. So, with neither side EIM+EIF/ADF and not both EIM: a direct path exists iff one side (Y) has EIF (so that
 *    step 1 lets the first check in), the other (X) does not filter by port (not APDF), and at least one of the two
 *    maps address-dependently (ADM). EIM+APDF with any ADM/APDM side is relay: X's checks come from a mapping
 *    other than its srflx, which APDF at Y never sent to, and Y's answers to X's srflx leave from Y's srflx, which
 *    X's new mapping never sent to.
 *
 * The table is symmetric, and its 4 classical cells agree with ARCHITECTURE.md. Peer-reflexive candidates and
 * triggered checks (steps 3 and 4) are what make ADM+EIF × APDM+ADF and ADM+ADF × ADM+EIF connect: there no check
 * to a server-reflexive address succeeds in either direction (the naive rule would say relay); only the checks to
 * the peer-reflexive addresses learnt on the way do.
 *
 * NATs: `iceScenario.behaviour`: hairpinning, 300 s, ports preserved under EIM and random under ADM/APDM.
 */
const expected9: Record<string, ReadonlyArray<"direct" | "relay">> = {
  // B:         EIM+EIF   EIM+ADF   EIM+APDF  ADM+EIF   ADM+ADF   ADM+APDF  APDM+EIF  APDM+ADF  APDM+APDF
  "EIM+EIF": ["direct", "direct", "direct", "direct", "direct", "direct", "direct", "direct", "direct"],
  "EIM+ADF": ["direct", "direct", "direct", "direct", "direct", "direct", "direct", "direct", "direct"],
  "EIM+APDF": ["direct", "direct", "direct", "relay", "relay", "relay", "relay", "relay", "relay"],
  "ADM+EIF": ["direct", "direct", "relay", "direct", "direct", "relay", "direct", "direct", "relay"],
  "ADM+ADF": ["direct", "direct", "relay", "direct", "relay", "relay", "direct", "relay", "relay"],
  "ADM+APDF": ["direct", "direct", "relay", "relay", "relay", "relay", "relay", "relay", "relay"],
  "APDM+EIF": ["direct", "direct", "relay", "direct", "direct", "relay", "relay", "relay", "relay"],
  "APDM+ADF": ["direct", "direct", "relay", "direct", "relay", "relay", "relay", "relay", "relay"],
  "APDM+APDF": ["direct", "direct", "relay", "relay", "relay", "relay", "relay", "relay", "relay"]
}

/**
 * Alice's time to connected (virtual ms), measured with these seeds. Direct pairs are nominated 1 s after the
 * first valid pair (host/host pairs stay in progress until they time out, so the nomination delay runs out):
 * 1170 ms when both map endpoint-independently, later when peer-reflexive rounds come first. Relay pairs come
 * later: the check to Bob's relayed address waits for Bob's permission (the relay-to-relay pair, which the server
 * allows between its own relayed addresses, succeeds first and shortens the wait in most relay cells). APDM+EIF on both sides is the slowest: every
 * triggered check there leaves from a fresh mapping that the other side learns as yet another prflx and checks
 * again, until each agent stops learning new ones (`IceAgent.maxPeerReflexive` per base) and the relay pairs get
 * their turn.
 */
const expectedMs9: Record<string, ReadonlyArray<number>> = {
  // B:        EIM+EIF EIM+ADF EIM+APDF ADM+EIF ADM+ADF ADM+APDF APDM+EIF APDM+ADF APDM+APDF
  "EIM+EIF": [1170, 1170, 1170, 1220, 1220, 1220, 1220, 1220, 1220],
  "EIM+ADF": [1170, 1170, 1170, 1220, 1220, 1220, 1220, 1220, 1220],
  "EIM+APDF": [1170, 1170, 1170, 1440, 1440, 1440, 1440, 1440, 1440],
  "ADM+EIF": [1170, 1170, 1390, 1220, 1220, 1540, 1270, 1320, 1540],
  "ADM+ADF": [1170, 1170, 1390, 1270, 1440, 1440, 1270, 1440, 1440],
  "ADM+APDF": [1170, 1170, 1390, 1730, 1440, 1440, 1730, 1440, 1440],
  "APDM+EIF": [1170, 1170, 1390, 1220, 1220, 1540, 1890, 1790, 1540],
  "APDM+ADF": [1170, 1170, 1390, 1270, 1440, 1440, 1740, 1440, 1440],
  "APDM+APDF": [1170, 1170, 1390, 1730, 1440, 1440, 1730, 1440, 1440]
}

/**
 * Alice's selected pair: her local candidate is the address Bob saw her check come from: her srflx when she maps
 * endpoint-independently, else a peer-reflexive one (also toward the TURN server's relayed address, which is
 * another destination than the STUN server). The remote is Bob's srflx (Bob EIM) or a peer-reflexive candidate
 * (Bob ADM/APDM) on a direct path, and Bob's relayed candidate otherwise: Alice's host → Bob's relay outranks
 * Alice's relay → Bob's srflx (a host base has a higher type preference than a server-reflexive candidate).
 */
const expectedPair9 = (a: NatBehavior.Mapping, b: NatBehavior.Mapping, outcome: "direct" | "relay") => {
  const local = a === "endpoint-independent" ? "srflx" : "prflx"
  const remote = outcome === "relay" ? "relay" : b === "endpoint-independent" ? "srflx" : "prflx"
  return `${local}-${remote}`
}

const results9: Record<string, Row> = {}

describe("9 × 9 mapping × filtering with a TURN server: every pairing connects, directly when it can", () => {
  afterAll(() => {
    const names = cells.map((c) => c.name)
    console.log(table(
      "9 × 9 with TURN: outcome (d = direct, r = relay)/Alice's pair, virtual ms, checks (both agents)",
      results9,
      names,
      names,
      (r) => `${r.outcome[0]}/${r.pair} ${r.virtualMs} ${r.checks}`
    ))
  })

  it("the expected table is symmetric and agrees with the classical cells", () => {
    const names = cells.map((c) => c.name)
    for (const [i, a] of names.entries()) {
      for (const [j, b] of names.entries()) assert.strictEqual(expected9[a]![j], expected9[b]![i], `${a} × ${b}`)
    }
    const classicalNames: Record<string, string> = {
      "full cone": "EIM+EIF",
      restricted: "EIM+ADF",
      "port-restricted": "EIM+APDF",
      symmetric: "APDM+APDF"
    }
    for (const [a, row] of Object.entries(expectedClassical)) {
      for (const [b, [outcome]] of Object.entries(row)) {
        const cell = expected9[classicalNames[a]!]![names.indexOf(classicalNames[b]!)]
        assert.strictEqual(cell, outcome === "failed" ? "relay" : "direct", `${a} × ${b}`)
      }
    }
  })

  for (const a of cells) {
    for (const [j, b] of cells.entries()) {
      const name = `${a.name} × ${b.name}`
      const outcome = expected9[a.name]![j]!
      const pair = expectedPair9(a.mapping, b.mapping, outcome)
      const ms = expectedMs9[a.name]![j]!
      it.effect(`${name}: ${outcome} (${pair}, ${ms} ms)`, () =>
        Effect.gen(function*() {
          const result = yield* Scenario.runPairing({
            a: { nat: Scenario.behaviour(a.mapping, a.filtering) },
            b: { nat: Scenario.behaviour(b.mapping, b.filtering) },
            turn: true
          })
          record(results9, a.name, b.name, result)
          assert.strictEqual(result.outcome, outcome, result.failure)
          assert.strictEqual(result.pair, pair)
          assert.strictEqual(result.pairB, mirror(pair))
          assert.strictEqual(result.virtualMs, ms)
          assert.isTrue(result.delivered)
        }))
    }
  }
})
