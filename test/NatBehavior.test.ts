import { assert, describe, it } from "@effect/vitest"
import * as NatBehavior from "../src/NatBehavior.js"

const cones = {
  "full-cone": NatBehavior.fullCone,
  "restricted-cone": NatBehavior.restrictedCone,
  "port-restricted-cone": NatBehavior.portRestrictedCone,
  symmetric: NatBehavior.symmetric
} as const

describe("NatBehavior", () => {
  it("names the classical combinations", () => {
    for (const [name, behaviour] of Object.entries(cones)) {
      assert.strictEqual(NatBehavior.classicalName(behaviour.mapping, behaviour.filtering), name)
    }
    assert.strictEqual(NatBehavior.classicalName("address-dependent", "endpoint-independent"), "other")
    assert.strictEqual(NatBehavior.classicalName("address-and-port-dependent", "address-dependent"), "other")
  })

  it("has RFC 4787's defaults: 300 s lifetime refreshed by outbound traffic only, hairpinning, preserved ports", () => {
    assert.deepStrictEqual(NatBehavior.make("endpoint-independent", "address-dependent"), {
      mapping: "endpoint-independent",
      filtering: "address-dependent",
      hairpinning: true,
      mappingLifetimeMs: 300_000,
      inboundRefresh: false,
      portAssignment: "preserving"
    })
    assert.strictEqual(NatBehavior.symmetric.portAssignment, "random")
  })

  it("parses EIM/APDF-style pairs in either order and refuses the rest", () => {
    assert.deepStrictEqual(NatBehavior.parsePair("EIM/APDF"), {
      mapping: "endpoint-independent",
      filtering: "address-and-port-dependent"
    })
    assert.deepStrictEqual(NatBehavior.parsePair("adf+apdm"), {
      mapping: "address-and-port-dependent",
      filtering: "address-dependent"
    })
    for (const bad of ["EIM", "EIM/EIM", "EIF/ADF", "EIM/XF", ""]) assert.isUndefined(NatBehavior.parsePair(bad), bad)
    assert.strictEqual(NatBehavior.abbreviation("mapping", "address-and-port-dependent"), "APDM")
    assert.strictEqual(NatBehavior.abbreviation("filtering", "endpoint-independent"), "EIF")
  })

  it("reproduces the classical direct/relay table of the architecture document, cell by cell", () => {
    // Written out by hand (../shared/design/ARCHITECTURE.md), not computed: rows and columns in the order
    // full cone, restricted, port-restricted, symmetric.
    const expected = [
      ["direct", "direct", "direct", "direct"],
      ["direct", "direct", "direct", "direct"],
      ["direct", "direct", "direct", "relay"],
      ["direct", "direct", "relay", "relay"]
    ]
    const order = Object.values(cones)
    order.forEach((a, i) =>
      order.forEach((b, j) => {
        const got = NatBehavior.directPathLikely(a, b) ? "direct" : "relay"
        assert.strictEqual(got, expected[i]![j], `row ${i} column ${j}`)
      })
    )
  })

  it("is symmetric in its two arguments over all 81 mapping × filtering pairings", () => {
    const all = NatBehavior.behaviours.flatMap((mapping) =>
      NatBehavior.behaviours.map((filtering) => ({ mapping, filtering }))
    )
    for (const a of all) {
      for (const b of all) assert.strictEqual(NatBehavior.directPathLikely(a, b), NatBehavior.directPathLikely(b, a))
    }
    // Two address-dependent mappings with open filtering still meet through peer-reflexive candidates.
    const adm = { mapping: "address-dependent", filtering: "endpoint-independent" } as const
    assert.isTrue(NatBehavior.directPathLikely(adm, adm))
  })

  it("agrees with the 9 × 9 mapping × filtering matrix of test/sim/ice-matrix.test.ts, cell by cell", () => {
    // Copied literally from `expected9` in test/sim/ice-matrix.test.ts (true = direct, false = relay), not computed.
    // Rows (A) and columns (B) in the order EIM+EIF, EIM+ADF, EIM+APDF, ADM+EIF, ADM+ADF, ADM+APDF, APDM+EIF,
    // APDM+ADF, APDM+APDF.
    const expected: ReadonlyArray<ReadonlyArray<boolean>> = [
      [true, true, true, true, true, true, true, true, true],
      [true, true, true, true, true, true, true, true, true],
      [true, true, true, false, false, false, false, false, false],
      [true, true, false, true, true, false, true, true, false],
      [true, true, false, true, false, false, true, false, false],
      [true, true, false, false, false, false, false, false, false],
      [true, true, false, true, true, false, false, false, false],
      [true, true, false, true, false, false, false, false, false],
      [true, true, false, false, false, false, false, false, false]
    ]
    const names = [
      "EIM+EIF",
      "EIM+ADF",
      "EIM+APDF",
      "ADM+EIF",
      "ADM+ADF",
      "ADM+APDF",
      "APDM+EIF",
      "APDM+ADF",
      "APDM+APDF"
    ]
    const order = names.map((name) => NatBehavior.parsePair(name)!)
    order.forEach((a, i) =>
      order.forEach((b, j) => {
        assert.strictEqual(NatBehavior.directPathLikely(a, b), expected[i]![j], `${names[i]} × ${names[j]}`)
      })
    )
    // The two cells that used to be predicted direct: APDM on both sides never is.
    const apdmEif = { mapping: "address-and-port-dependent", filtering: "endpoint-independent" } as const
    const apdmAdf = { mapping: "address-and-port-dependent", filtering: "address-dependent" } as const
    assert.isFalse(NatBehavior.directPathLikely(apdmEif, apdmEif))
    assert.isFalse(NatBehavior.directPathLikely(apdmEif, apdmAdf))
    assert.isFalse(NatBehavior.directPathLikely(apdmAdf, apdmEif))
  })
})
