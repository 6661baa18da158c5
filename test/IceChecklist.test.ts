import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc, Option } from "effect"
import * as IceCandidate from "../src/IceCandidate.js"
import type { Candidate, CandidateTransport, TcpType } from "../src/IceCandidate.js"
import * as IceChecklist from "../src/IceChecklist.js"
import type { Checklist, LocalCandidate, Pair, PairState } from "../src/IceChecklist.js"

// ---------------------------------------------------------------- helpers

interface Opts {
  readonly component?: number
  readonly transport?: CandidateTransport
  readonly tcpType?: TcpType
  readonly localPreference?: number
  readonly priority?: number
  readonly foundation?: string
}

const cand = (type: Candidate["type"], address: string, port: number, opts: Opts = {}): Candidate =>
  IceCandidate.make({ type, address, port, ...opts })

const host = (address: string, port: number, opts: Opts = {}): LocalCandidate => {
  const candidate = cand("host", address, port, opts)
  return { candidate, baseKey: IceCandidate.key(candidate), base: candidate }
}

/** A server reflexive local learned on `base`. */
const srflx = (address: string, port: number, base: LocalCandidate, opts: Opts = {}): LocalCandidate => ({
  candidate: IceCandidate.make({
    type: "srflx",
    address,
    port,
    relatedAddress: base.candidate.address,
    relatedPort: base.candidate.port,
    serverAddress: "198.51.100.1",
    component: base.candidate.component,
    transport: base.candidate.transport,
    ...opts
  }),
  baseKey: base.baseKey,
  base: base.candidate
})

const relay = (address: string, port: number, opts: Opts = {}): LocalCandidate => {
  const candidate = cand("relay", address, port, { ...opts })
  return { candidate, baseKey: IceCandidate.key(candidate), base: candidate }
}

const build = (
  controlling: boolean,
  locals: ReadonlyArray<LocalCandidate>,
  remotes: ReadonlyArray<Candidate>,
  maxPairs?: number
): Checklist => {
  let list = IceChecklist.empty(maxPairs === undefined ? { controlling } : { controlling, maxPairs })
  for (const l of locals) list = IceChecklist.addLocal(list, l)
  for (const r of remotes) list = IceChecklist.addRemote(list, r)
  return list
}

const ids = (list: Checklist) => list.pairs.map((p) => p.id)
const states = (list: Checklist) => Object.fromEntries(list.pairs.map((p) => [p.id, p.state]))
const id = (l: LocalCandidate, r: Candidate) => IceChecklist.pairId(l, r)
const get = (list: Checklist, pairId: string): Pair => Option.getOrThrow(IceChecklist.find(list, pairId))

const hostPriority = 2130706431 // 2^24·126 + 2^8·65535 + 255
const srflxPriority = 1694498815 // 2^24·100 + 2^8·65535 + 255
const relayPriority = 16777215 // 0 + 2^8·65535 + 255
const two32 = 4294967296n

// ---------------------------------------------------------------- tests

describe("IceChecklist", () => {
  describe("pair priority (RFC 8445 §6.1.2.3)", () => {
    const h = cand("host", "10.0.0.1", 5000)
    const s = cand("srflx", "203.0.113.1", 5000)
    const r = cand("relay", "198.51.100.9", 6000)

    it("computes 2^32·MIN(G,D) + 2·MAX(G,D) + (G>D ? 1 : 0) for both roles", () => {
      assert.strictEqual(h.priority, hostPriority)
      assert.strictEqual(s.priority, srflxPriority)
      assert.strictEqual(r.priority, relayPriority)
      // Controlling with the host locally: G = 2130706431 > D = 1694498815, so the tie-break bit is set.
      // 4294967296 × 1694498815 = 7277816993535754240; + 2 × 2130706431 = 4261412862; + 1.
      assert.strictEqual(IceChecklist.pairPriority(true, h, s), 7277816997797167103n)
      assert.strictEqual(IceChecklist.pairPriority(true, h, s), two32 * 1694498815n + 2n * 2130706431n + 1n)
      // Controlled, same candidates: G is now the remote's 1694498815 < D = 2130706431, no tie-break bit.
      assert.strictEqual(IceChecklist.pairPriority(false, h, s), 7277816997797167102n)
      // Relay against host: 4294967296 × 16777215 + 2 × 2130706431 (+ 1 when the host side controls).
      assert.strictEqual(IceChecklist.pairPriority(false, r, h), 72057594004373503n)
      assert.strictEqual(IceChecklist.pairPriority(true, r, h), 72057594004373502n)
      // Equal priorities: G = D, no bit.
      assert.strictEqual(IceChecklist.pairPriority(true, h, h), two32 * 2130706431n + 2n * 2130706431n)
      assert.strictEqual(IceChecklist.pairPriority(false, h, h), two32 * 2130706431n + 2n * 2130706431n)
      // It exceeds 2^53: a Number could not hold it.
      assert.isTrue(IceChecklist.pairPriority(true, h, s) > BigInt(Number.MAX_SAFE_INTEGER))
    })

    it.prop("agrees with a bigint reference and both agents compute the same value for the same pair", {
      a: fc.integer({ min: 1, max: 0xffffffff }),
      b: fc.integer({ min: 1, max: 0xffffffff }),
      controlling: fc.boolean()
    }, ({ a, b, controlling }) => {
      const local = { ...h, priority: a }
      const remote = { ...s, priority: b }
      const g = BigInt(controlling ? a : b)
      const d = BigInt(controlling ? b : a)
      const reference = (g < d ? g : d) * two32 + 2n * (g > d ? g : d) + (g > d ? 1n : 0n)
      assert.strictEqual(IceChecklist.pairPriority(controlling, local, remote), reference)
      // The peer sees the pair from the other side, with the other role.
      assert.strictEqual(IceChecklist.pairPriority(!controlling, remote, local), reference)
    })
  })

  describe("forming pairs (§6.1.2.2)", () => {
    it("pairs same component, same transport, same family", () => {
      const l4 = host("10.0.0.1", 5000)
      const l6 = host("2001:db8::1", 5002)
      const l4c2 = host("10.0.0.1", 5001, { component: 2 })
      const r4 = cand("host", "10.0.0.9", 7000)
      const r6 = cand("host", "2001:db8::9", 7002)
      const r4c2 = cand("host", "10.0.0.9", 7001, { component: 2 })
      const rTcp = cand("host", "10.0.0.9", 7003, { transport: "tcp", tcpType: "passive" })
      const list = build(true, [l4, l6, l4c2], [r4, r6, r4c2, rTcp])
      assert.sameMembers(ids(list), [id(l4, r4), id(l6, r6), id(l4c2, r4c2)])
      assert.strictEqual(id(l4, r4), "udp|10.0.0.1|5000->udp|10.0.0.9|7000")
      assert.isFalse(IceChecklist.canPair(l4, r6))
      assert.isFalse(IceChecklist.canPair(l4, r4c2))
      assert.isFalse(IceChecklist.canPair(l4, rTcp))
      // The same pairs whichever side arrives first.
      let late = IceChecklist.empty({ controlling: true })
      for (const r of [r4, r6, r4c2, rTcp]) late = IceChecklist.addRemote(late, r)
      for (const l of [l4, l6, l4c2]) late = IceChecklist.addLocal(late, l)
      assert.deepStrictEqual(ids(late), ids(list))
      assert.deepStrictEqual(states(late), states(list))
    })

    it("pairs TCP only active↔passive and so↔so (RFC 6544 §6.2)", () => {
      const tcp = (port: number, tcpType: TcpType) => host("10.0.0.1", port, { transport: "tcp", tcpType })
      const rtcp = (port: number, tcpType: TcpType) => cand("host", "10.0.0.9", port, { transport: "tcp", tcpType })
      const la = tcp(9, "active")
      const lp = tcp(6001, "passive")
      const ls = tcp(6002, "so")
      const ra = rtcp(9, "active")
      const rp = rtcp(7001, "passive")
      const rs = rtcp(7002, "so")
      const noType = cand("host", "10.0.0.9", 7003, { transport: "tcp" })
      const list = build(true, [la, lp, ls], [ra, rp, rs, noType])
      assert.sameMembers(ids(list), [id(la, rp), id(lp, ra), id(ls, rs)])
      assert.strictEqual(id(la, rp), "tcp|10.0.0.1|9|active->tcp|10.0.0.9|7001|passive")
    })

    it("does not pair an mDNS remote (kept in remotes), and pairs IPv6 link-local only with link-local", () => {
      const l = host("10.0.0.1", 5000)
      const mdns = cand("host", "0f9e5f4c-8d6c-4b3c-9a2b-6d1e2f3a4b5c.local", 7000)
      const list = build(true, [l], [mdns])
      assert.deepStrictEqual(list.pairs, [])
      assert.deepStrictEqual(list.remotes, [mdns])
      const ll = host("fe80::1", 5000)
      const global = host("2001:db8::1", 5001)
      const rll = cand("host", "fe80::9", 7000)
      const rglobal = cand("host", "2001:db8::9", 7001)
      assert.sameMembers(ids(build(true, [ll, global], [rll, rglobal])), [id(ll, rll), id(global, rglobal)])
    })

    it("ignores duplicate candidates (same key)", () => {
      const l = host("10.0.0.1", 5000)
      const r = cand("host", "10.0.0.9", 7000)
      const list = build(true, [l], [r])
      assert.strictEqual(IceChecklist.addLocal(list, host("10.0.0.1", 5000, { localPreference: 1 })), list)
      assert.strictEqual(IceChecklist.addRemote(list, { ...r, priority: 5, foundation: "zz" }), list)
    })

    it("replaces a srflx local by its base, so it forms the host's pair and is pruned (§6.1.2.4)", () => {
      const h = host("10.0.0.1", 5000)
      const s = srflx("203.0.113.1", 40000, h)
      const r = cand("host", "10.0.0.9", 7000)
      assert.strictEqual(id(s, r), id(h, r))
      for (const order of [[h, s], [s, h]]) {
        const list = build(true, order, [r])
        assert.strictEqual(list.pairs.length, 1)
        const pair = list.pairs[0]!
        assert.deepStrictEqual(pair.local.candidate, h.candidate)
        assert.strictEqual(pair.local.baseKey, h.baseKey)
        assert.strictEqual(pair.priority, IceChecklist.pairPriority(true, h.candidate, r))
        assert.strictEqual(pair.foundation, `${h.candidate.foundation}:${r.foundation}`)
        assert.strictEqual(list.locals.length, 2)
      }
    })

    it("prunes a pair whose local base and remote equal a higher-priority pair's", () => {
      // Two local candidates sharing one base (socket), the second with a lower priority.
      const a = host("10.0.0.1", 5000)
      const b = { ...host("10.0.0.1", 5001, { localPreference: 10 }), baseKey: a.baseKey }
      const r = cand("host", "10.0.0.9", 7000)
      assert.deepStrictEqual(ids(build(true, [b, a], [r])), [id(a, r)])
      assert.deepStrictEqual(ids(build(true, [a, b], [r])), [id(a, r)])
      // A relayed local has its own base and is kept.
      const rl = relay("198.51.100.9", 6000)
      assert.deepStrictEqual(ids(build(true, [a, b, rl], [r])), [id(a, r), id(rl, r)])
    })

    it("keeps at most maxPairs, dropping the lowest priority, never an in-progress/succeeded/valid pair", () => {
      const locals = [host("10.0.0.1", 5000), host("10.0.0.2", 5000, { localPreference: 100 })]
      const remotes = [cand("host", "10.0.0.9", 7000), cand("relay", "198.51.100.9", 6000)]
      const full = build(true, locals, remotes)
      assert.strictEqual(full.pairs.length, 4)
      const limited = build(true, locals, remotes, 2)
      assert.deepStrictEqual(ids(limited), ids(full).slice(0, 2))
      // Protect the lowest pair of three, then add more: it survives, the unprotected ones go.
      let list = build(true, [locals[0]!], remotes, 2)
      const lowest = list.pairs[1]!.id
      list = IceChecklist.setState(list, lowest, "in-progress")
      list = IceChecklist.addLocal(list, locals[1]!)
      assert.strictEqual(list.pairs.length, 2)
      assert.include(ids(list), lowest)
      assert.strictEqual(list.pairs[0]!.id, id(locals[0]!, remotes[0]!))
    })
  })

  describe("initial states (§6.1.2.6)", () => {
    it("makes the first pair of each foundation waiting and leaves the rest frozen", () => {
      const l1 = host("10.0.0.1", 5000)
      const l2 = host("10.0.0.2", 5000, { localPreference: 60000 })
      // Two remote candidates with the same foundation (same base IP, two ports).
      const r1 = cand("host", "10.0.0.9", 7000)
      const r2 = cand("host", "10.0.0.9", 7001, { localPreference: 50000 })
      assert.strictEqual(r1.foundation, r2.foundation)
      const list = build(true, [l1, l2], [r1, r2])
      assert.deepStrictEqual(states(list), {
        [id(l1, r1)]: "waiting",
        [id(l1, r2)]: "frozen",
        [id(l2, r1)]: "waiting",
        [id(l2, r2)]: "frozen"
      })
      // MIN(G,D) decides first: (l2,r1) has MIN = l2's priority, above r2's.
      assert.deepStrictEqual(ids(list), [id(l1, r1), id(l2, r1), id(l1, r2), id(l2, r2)])
    })

    it("unfreezes the lowest component of a foundation, even when a higher component has a higher priority", () => {
      // Same local and remote IPs, so (l1,r1) and (l2,r2) share a foundation; component 2 has the higher priority.
      const l1 = host("10.0.0.1", 5000, { localPreference: 100 })
      const l2 = host("10.0.0.1", 5001, { component: 2 })
      const r1 = cand("host", "10.0.0.9", 7000)
      const r2 = cand("host", "10.0.0.9", 7001, { component: 2 })
      let list = build(false, [l1, l2], [r2, r1])
      // (l2,r2) formed first and was unfrozen; (l1,r1) came later into an active foundation.
      assert.deepStrictEqual(states(list), { [id(l2, r2)]: "waiting", [id(l1, r1)]: "frozen" })
      assert.deepStrictEqual(ids(list), [id(l2, r2), id(l1, r1)])
      // Make the foundation idle with both pairs frozen, then add any candidate: the RFC order picks component 1.
      list = IceChecklist.setState(list, id(l2, r2), "frozen")
      const other = cand("srflx", "203.0.113.9", 7002, { foundation: "other" })
      list = IceChecklist.addRemote(list, other)
      assert.deepStrictEqual(states(list), {
        [id(l2, r2)]: "frozen",
        [id(l1, r1)]: "waiting",
        [id(l1, other)]: "waiting"
      })
    })

    it("unfreezes a trickled pair only when its foundation has nothing waiting, in progress or succeeded", () => {
      const l = host("10.0.0.1", 5000)
      const r1 = cand("host", "10.0.0.9", 7000)
      const r2 = cand("host", "10.0.0.9", 7001)
      const r3 = cand("host", "10.0.0.9", 7002)
      let list = build(true, [l], [r1])
      list = IceChecklist.addRemote(list, r2)
      assert.strictEqual(get(list, id(l, r2)).state, "frozen")
      list = IceChecklist.setState(list, id(l, r1), "failed", "timeout")
      list = IceChecklist.setState(list, id(l, r2), "failed", "timeout")
      list = IceChecklist.addRemote(list, r3)
      assert.strictEqual(get(list, id(l, r3)).state, "waiting")
    })
  })

  describe("check selection (§6.1.4.2)", () => {
    it("picks waiting pairs by priority, then frozen pairs of idle foundations, then nothing", () => {
      const l = host("10.0.0.1", 5000)
      const r1 = cand("host", "10.0.0.9", 7000)
      const r2 = cand("host", "10.0.0.9", 7001, { localPreference: 100 })
      const r3 = cand("srflx", "203.0.113.9", 7002, { foundation: "other" })
      let list = build(true, [l], [r1, r2, r3])
      // Waiting: (l,r1) and (l,r3) (two foundations); (l,r2) frozen behind (l,r1).
      assert.strictEqual(Option.getOrThrow(IceChecklist.nextOrdinary(list)).id, id(l, r1))
      assert.deepStrictEqual(IceChecklist.nextOrdinary(list), IceChecklist.nextOrdinary(list)) // pure
      list = IceChecklist.setState(list, id(l, r1), "in-progress")
      assert.strictEqual(Option.getOrThrow(IceChecklist.nextOrdinary(list)).id, id(l, r3))
      list = IceChecklist.setState(list, id(l, r3), "in-progress")
      // Only (l,r2) is left, frozen, and its foundation has a pair in progress.
      assert.isTrue(Option.isNone(IceChecklist.nextOrdinary(list)))
      list = IceChecklist.setState(list, id(l, r1), "failed", "timeout")
      const next = Option.getOrThrow(IceChecklist.nextOrdinary(list))
      assert.strictEqual(next.id, id(l, r2))
      assert.strictEqual(next.state, "frozen") // nextOrdinary changes nothing
      list = IceChecklist.setState(list, id(l, r2), "in-progress")
      list = IceChecklist.setState(list, id(l, r2), "failed")
      list = IceChecklist.setState(list, id(l, r3), "succeeded")
      assert.isTrue(Option.isNone(IceChecklist.nextOrdinary(list)))
    })
  })

  describe("setState and success (§7.2.5.3.3)", () => {
    it("unfreezes every frozen pair of the succeeded pair's foundation, and only those", () => {
      const l = host("10.0.0.1", 5000)
      const l2 = host("10.0.0.2", 5000)
      const rs = [7000, 7001, 7002].map((port) => cand("host", "10.0.0.9", port))
      let list = build(true, [l, l2], rs)
      assert.deepStrictEqual(list.pairs.filter((p) => p.state === "frozen").length, 4)
      list = IceChecklist.setState(list, id(l, rs[0]!), "in-progress")
      list = IceChecklist.setState(list, id(l, rs[0]!), "succeeded")
      assert.deepStrictEqual(states(list), {
        [id(l, rs[0]!)]: "succeeded",
        [id(l, rs[1]!)]: "waiting",
        [id(l, rs[2]!)]: "waiting",
        [id(l2, rs[0]!)]: "waiting",
        [id(l2, rs[1]!)]: "frozen",
        [id(l2, rs[2]!)]: "frozen"
      })
    })

    it("records the failure reason, clears it on another state, ignores unknown ids", () => {
      const l = host("10.0.0.1", 5000)
      const r = cand("host", "10.0.0.9", 7000)
      let list = build(true, [l], [r])
      list = IceChecklist.setState(list, id(l, r), "failed", "487 role conflict")
      assert.strictEqual(get(list, id(l, r)).failure, "487 role conflict")
      list = IceChecklist.setState(list, id(l, r), "waiting", "ignored")
      assert.isFalse("failure" in get(list, id(l, r)))
      assert.strictEqual(IceChecklist.setState(list, "nope", "failed", "x"), list)
      assert.isTrue(Option.isNone(IceChecklist.find(list, "nope")))
    })
  })

  describe("valid list (§7.2.5.3.2) and nomination (§8.1)", () => {
    const l = host("10.0.0.1", 5000)
    const r = cand("host", "10.0.0.9", 7000)
    const r2 = cand("host", "10.0.0.8", 7000)

    it("adds a new valid pair for a peer-reflexive local, not paired later", () => {
      let list = build(true, [l], [r])
      list = IceChecklist.setState(list, id(l, r), "succeeded")
      const prflx: LocalCandidate = {
        candidate: IceCandidate.make({
          type: "prflx",
          address: "203.0.113.50",
          port: 41000,
          relatedAddress: "10.0.0.1",
          relatedPort: 5000
        }),
        baseKey: l.baseKey,
        base: l.candidate
      }
      const [next, validId] = IceChecklist.addValid(list, prflx, r)
      assert.strictEqual(validId, "udp|203.0.113.50|41000->udp|10.0.0.9|7000")
      assert.notStrictEqual(validId, id(l, r))
      const pair = get(next, validId)
      assert.strictEqual(pair.state, "succeeded")
      assert.isTrue(pair.valid)
      assert.isFalse(pair.nominated)
      assert.deepStrictEqual(pair.local, prflx)
      assert.strictEqual(pair.priority, IceChecklist.pairPriority(true, prflx.candidate, r))
      assert.strictEqual(pair.foundation, `${prflx.candidate.foundation}:${r.foundation}`)
      assert.deepStrictEqual(IceChecklist.validPairs(next).map((p) => p.id), [validId])
      assert.strictEqual(next.locals, list.locals)
      // The checked pair is not valid, it only succeeded; sorting holds (host pair above the prflx one).
      assert.deepStrictEqual(ids(next), [id(l, r), validId])
      const later = IceChecklist.addRemote(next, r2)
      assert.sameMembers(ids(later), [id(l, r), validId, id(l, r2)])
    })

    it("marks an existing pair valid (state unchanged); a srflx mapped address means the host pair", () => {
      let list = build(true, [l], [r])
      list = IceChecklist.setState(list, id(l, r), "in-progress")
      const s = srflx("203.0.113.1", 40000, l)
      const [next, validId] = IceChecklist.addValid(list, s, r, { nominated: true })
      assert.strictEqual(validId, id(l, r))
      assert.strictEqual(next.pairs.length, 1)
      assert.deepStrictEqual(
        { state: next.pairs[0]!.state, valid: next.pairs[0]!.valid, nominated: next.pairs[0]!.nominated },
        { state: "in-progress", valid: true, nominated: true }
      )
      // Adding it again without `nominated` keeps the nomination.
      const [again] = IceChecklist.addValid(next, l, r)
      assert.isTrue(again.pairs[0]!.nominated)
    })

    it("selects the highest-priority valid nominated pair", () => {
      const lr = relay("198.51.100.9", 6000)
      let list = build(true, [l, lr], [r])
      const hostPair = id(l, r)
      const relayPair = id(lr, r)
      assert.isTrue(Option.isNone(IceChecklist.selected(list)))
      list = IceChecklist.nominate(list, hostPair) // nominated but not valid: not selected
      assert.isTrue(Option.isNone(IceChecklist.selected(list)))
      ;[list] = IceChecklist.addValid(list, lr, r, { nominated: true })
      assert.strictEqual(Option.getOrThrow(IceChecklist.selected(list)).id, relayPair)
      ;[list] = IceChecklist.addValid(list, l, r)
      assert.strictEqual(Option.getOrThrow(IceChecklist.selected(list)).id, hostPair)
      assert.deepStrictEqual(IceChecklist.validPairs(list).map((p) => p.id), [hostPair, relayPair])
      assert.strictEqual(IceChecklist.nominate(list, "nope"), list)
    })
  })

  describe("updateState", () => {
    const l = host("10.0.0.1", 5000)
    const r = cand("host", "10.0.0.9", 7000)
    const base = build(true, [l], [r])
    const pair = id(l, r)
    const withState = (state: PairState) => IceChecklist.setState(base, pair, state)
    const valid = IceChecklist.addValid(withState("succeeded"), l, r)[0]
    const nominated = IceChecklist.nominate(valid, pair)
    const failedButValid = IceChecklist.setState(valid, pair, "failed", "consent")

    const cases: ReadonlyArray<readonly [string, Checklist, boolean, boolean, IceChecklist.ChecklistState]> = [
      ["no pairs, still gathering", IceChecklist.empty({ controlling: true }), false, false, "running"],
      ["no pairs, remote still trickling", IceChecklist.empty({ controlling: true }), true, false, "running"],
      ["no pairs, local still gathering", IceChecklist.empty({ controlling: true }), false, true, "running"],
      ["no pairs, both done", IceChecklist.empty({ controlling: true }), true, true, "failed"],
      ["waiting pair, both done", withState("waiting"), true, true, "running"],
      ["frozen pair, both done", withState("frozen"), true, true, "running"],
      ["in-progress pair, both done", withState("in-progress"), true, true, "running"],
      ["all failed, both done", withState("failed"), true, true, "failed"],
      ["all failed, still gathering", withState("failed"), false, true, "running"],
      ["all failed, remote trickling", withState("failed"), true, false, "running"],
      ["succeeded but not valid, both done", withState("succeeded"), true, true, "failed"],
      ["valid, not nominated, both done", valid, true, true, "running"],
      ["valid pair failed later, both done", failedButValid, true, true, "running"],
      ["valid and nominated, still gathering", nominated, false, false, "completed"],
      ["valid and nominated, both done", nominated, true, true, "completed"]
    ]
    for (const [name, list, gatheringComplete, remoteEndOfCandidates, expected] of cases) {
      it(name, () => {
        const updated = IceChecklist.updateState(list, { gatheringComplete, remoteEndOfCandidates })
        assert.strictEqual(updated.state, expected)
        assert.deepStrictEqual(updated.pairs, list.pairs)
      })
    }

    it("goes back to running from failed when a new pair appears", () => {
      const failed = IceChecklist.updateState(withState("failed"), {
        gatheringComplete: true,
        remoteEndOfCandidates: true
      })
      assert.strictEqual(failed.state, "failed")
      const more = IceChecklist.addRemote(failed, cand("host", "10.0.0.9", 7001))
      assert.strictEqual(
        IceChecklist.updateState(more, { gatheringComplete: true, remoteEndOfCandidates: true }).state,
        "running"
      )
    })
  })

  describe("setControlling", () => {
    it("recomputes priorities and re-sorts on a role change", () => {
      // Locals and remotes with the priorities x > y crossed: (x,y) and (y,x) pairs have the same MIN and MAX and
      // differ only in the G>D bit, which the role decides.
      const x = 2130706431
      const y = 2130706175
      const lx = host("10.0.0.1", 5000, { priority: x })
      const ly = host("10.0.0.2", 5000, { priority: y })
      const rx = cand("host", "10.0.0.9", 7000, { priority: x })
      const ry = cand("host", "10.0.0.8", 7000, { priority: y })
      const controlling = build(true, [lx, ly], [rx, ry])
      const order = (list: Checklist) => ids(list).filter((i) => i === id(lx, ry) || i === id(ly, rx))
      assert.deepStrictEqual(order(controlling), [id(lx, ry), id(ly, rx)])
      const controlled = IceChecklist.setControlling(controlling, false)
      assert.isFalse(controlled.controlling)
      assert.deepStrictEqual(order(controlled), [id(ly, rx), id(lx, ry)])
      for (const p of controlled.pairs) {
        assert.strictEqual(p.priority, IceChecklist.pairPriority(false, p.local.candidate, p.remote))
      }
      assert.deepStrictEqual(states(controlled), states(controlling))
      assert.deepStrictEqual(IceChecklist.setControlling(controlled, true).pairs, controlling.pairs)
      assert.deepStrictEqual(ids(controlled), ids(build(false, [lx, ly], [rx, ry])))
    })
  })

  describe("invariants under random event sequences", () => {
    const h4 = host("10.0.0.1", 5000)
    const h4b = host("10.0.0.2", 5000, { localPreference: 40000 })
    const h6 = host("2001:db8::1", 5002)
    const h4c2 = host("10.0.0.1", 5001, { component: 2 })
    const localPool: ReadonlyArray<LocalCandidate> = [
      h4,
      h4b,
      h6,
      h4c2,
      srflx("203.0.113.1", 40000, h4),
      srflx("203.0.113.1", 40001, h4b),
      relay("198.51.100.9", 6000),
      relay("198.51.100.9", 6001, { component: 2 }),
      host("10.0.0.1", 9, { transport: "tcp", tcpType: "active" }),
      host("10.0.0.1", 6003, { transport: "tcp", tcpType: "passive" }),
      host("10.0.0.1", 6004, { transport: "tcp", tcpType: "so" })
    ]
    const remotePool: ReadonlyArray<Candidate> = [
      cand("host", "10.0.0.9", 7000),
      cand("host", "10.0.0.9", 7001, { localPreference: 30000 }),
      cand("host", "10.0.0.9", 7005, { component: 2 }),
      cand("srflx", "203.0.113.9", 7002, { foundation: "s9" }),
      cand("relay", "198.51.100.7", 7003, { foundation: "r7" }),
      cand("host", "2001:db8::9", 7004),
      cand("host", "0f9e5f4c-8d6c-4b3c-9a2b-6d1e2f3a4b5c.local", 7006),
      cand("host", "10.0.0.9", 9, { transport: "tcp", tcpType: "active" }),
      cand("host", "10.0.0.9", 7007, { transport: "tcp", tcpType: "passive" }),
      cand("host", "10.0.0.9", 7008, { transport: "tcp", tcpType: "so" })
    ]
    type Op =
      | { readonly _tag: "local"; readonly index: number }
      | { readonly _tag: "remote"; readonly index: number }
      | { readonly _tag: "state"; readonly index: number; readonly state: PairState }
      | { readonly _tag: "role"; readonly controlling: boolean }
      | { readonly _tag: "valid"; readonly index: number; readonly nominated: boolean }
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.nat(localPool.length - 1).map((index) => ({ _tag: "local" as const, index })),
      fc.nat(remotePool.length - 1).map((index) => ({ _tag: "remote" as const, index })),
      fc.record({
        _tag: fc.constant("state" as const),
        index: fc.nat(40),
        state: fc.constantFrom<PairState>("frozen", "waiting", "in-progress", "succeeded", "failed")
      }),
      fc.boolean().map((controlling) => ({ _tag: "role" as const, controlling })),
      fc.record({ _tag: fc.constant("valid" as const), index: fc.nat(40), nominated: fc.boolean() })
    )

    const checkInvariants = (list: Checklist) => {
      const seen = new Set<string>()
      list.pairs.forEach((pair, i) => {
        assert.isFalse(seen.has(pair.id), `duplicate ${pair.id}`)
        seen.add(pair.id)
        assert.strictEqual(pair.id, IceChecklist.pairId(pair.local, pair.remote))
        assert.strictEqual(
          pair.priority,
          IceChecklist.pairPriority(list.controlling, pair.local.candidate, pair.remote)
        )
        assert.isTrue(IceChecklist.canPair(pair.local, pair.remote), pair.id)
        assert.notStrictEqual(pair.local.candidate.type, "srflx")
        if (i > 0) {
          const prev = list.pairs[i - 1]!
          assert.isTrue(
            prev.priority > pair.priority || (prev.priority === pair.priority && prev.id < pair.id),
            `${prev.id} before ${pair.id}`
          )
        }
      })
      assert.isAtMost(list.pairs.length, list.maxPairs)
    }

    it.prop("sorted, unique ids, at most maxPairs, and never drops an in-progress/succeeded/valid pair", {
      ops: fc.array(op, { maxLength: 40 }),
      maxPairs: fc.constantFrom(3, 5, 8, 100),
      controlling: fc.boolean()
    }, ({ controlling, maxPairs, ops }) => {
      let list = IceChecklist.empty({ controlling, maxPairs })
      for (const o of ops) {
        const before = list
        switch (o._tag) {
          case "local":
            list = IceChecklist.addLocal(list, localPool[o.index]!)
            break
          case "remote":
            list = IceChecklist.addRemote(list, remotePool[o.index]!)
            break
          case "state": {
            const target = list.pairs[o.index % Math.max(1, list.pairs.length)]
            list = IceChecklist.setState(list, target?.id ?? "none", o.state)
            assert.strictEqual(list.pairs.length, before.pairs.length)
            break
          }
          case "role":
            list = IceChecklist.setControlling(list, o.controlling)
            break
          case "valid": {
            const target = list.pairs[o.index % Math.max(1, list.pairs.length)]
            if (target !== undefined) {
              const [next, validId] = IceChecklist.addValid(list, target.local, target.remote, o)
              assert.strictEqual(validId, target.id)
              assert.strictEqual(next.pairs.length, list.pairs.length)
              list = next
            }
            break
          }
        }
        checkInvariants(list)
        for (const pair of before.pairs.filter(IceChecklist.isProtected)) {
          const after = IceChecklist.find(list, pair.id)
          assert.isTrue(Option.isSome(after), `dropped ${pair.id}`)
          if (o._tag !== "state") {
            const kept = Option.getOrThrow(after)
            // Only the initial unfreezing may change a kept pair's state (a valid pair set back to frozen).
            if (!(pair.state === "frozen" && kept.state === "waiting")) assert.strictEqual(kept.state, pair.state)
            assert.isTrue(kept.valid || !pair.valid)
          }
        }
        if ((o._tag === "local" || o._tag === "remote") && list.pairs !== before.pairs) {
          // After an addition every foundation with a frozen pair has a pair waiting, in progress or succeeded.
          const active = new Set(
            list.pairs.filter((p) => ["waiting", "in-progress", "succeeded"].includes(p.state)).map((p) => p.foundation)
          )
          for (const p of list.pairs) if (p.state === "frozen") assert.isTrue(active.has(p.foundation), p.foundation)
        }
      }
    })
  })
})
