/**
 * The ICE checklist of one data stream, as an immutable state machine: every function returns a new `Checklist`
 * and mutates nothing, so the agent keeps it in a `Ref` and tests replay any sequence of events. Components are
 * told apart by the `component` field of the candidates.
 *
 * Implements:
 * - RFC 8445 §6.1.2 checklists:
 *   - §6.1.2.2 forming pairs: a local and a remote candidate are paired when they have the same component, the
 *     same transport and the same IP family, and "IPv6 link-local addresses MUST NOT be paired with other than
 *     link-local addresses". An mDNS remote (`<uuid>.local`) is never paired: the agent resolves it and adds
 *     the resolved candidate. For TCP only `active`↔`passive` and `so`↔`so` are paired (RFC 6544 §6.2); a TCP
 *     candidate without `tcptype` is not paired.
 *   - §6.1.2.3 pair priority: `2^32 × MIN(G,D) + 2 × MAX(G,D) + (G > D ? 1 : 0)`, G the controlling agent's
 *     candidate priority, D the controlled agent's, as a `bigint` (it exceeds 2^53).
 *   - §6.1.2.4 pruning: a server reflexive local candidate is replaced by its base when pairing, so it forms the
 *     same pair (same id) as its host candidate and adds nothing; then any pair whose local base and remote
 *     candidate equal those of a higher-priority pair is removed.
 *   - §6.1.2.5 removing lower-priority pairs: at most `maxPairs` (default 100) pairs are kept, the lowest-priority
 *     ones dropped first; a pair that is in progress, succeeded or valid is never dropped.
 *   - §6.1.2.6 initial states: new pairs are frozen; then for each foundation that has no pair waiting, in progress
 *     or succeeded, the first frozen pair (lowest component, then highest priority, as the RFC orders them; with
 *     one component that is the highest-priority pair) becomes waiting. This runs after every `addLocal` and
 *     `addRemote`, so trickled candidates (RFC 8838) get the same treatment as the first ones.
 * - RFC 8445 §6.1.4.2 ordinary check selection (`nextOrdinary`): the highest-priority waiting pair, or else the
 *   highest-priority frozen pair whose foundation has no waiting or in-progress pair.
 * - RFC 8445 §7.2.5.3 success: §7.2.5.3.2 the valid list (`addValid`, which adds a pair built from a peer-reflexive
 *   local when the mapped address is new), §7.2.5.3.3 unfreezing every frozen pair of the succeeded pair's
 *   foundation (`setState`).
 * - RFC 8445 §8.1 nomination: `nominate`, the selected pair (the highest-priority valid nominated pair), and the
 *   checklist state (`updateState`): completed once a pair is valid and nominated (§8.1.2), failed when nothing is
 *   left to check, no pair is valid and neither side can add candidates any more (§6.1.2.1, §7.2.5.4; with
 *   trickle ICE, RFC 8838, only once both sides have ended their candidates).
 *
 * Pair identity: `pairId` is `key(local)->key(remote)` (see `IceCandidate.key`), where a server reflexive local
 * stands for its base. So `pairId(srflx, remote)` equals `pairId(host, remote)`, and a success whose mapped address
 * is the server reflexive candidate marks the host pair valid: both send from the same socket to the same place.
 * A peer-reflexive local has its own key, so it makes a new pair. Peer-reflexive locals given to `addValid` are not
 * added to `locals` and are never paired with later remote candidates (RFC 8445 §7.2.5.3.1).
 *
 * @since 0.1.0
 */
import { Option } from "effect"
import type { Candidate } from "./IceCandidate.js"
import * as IceCandidate from "./IceCandidate.js"

/**
 * The state of a candidate pair (RFC 8445 §6.1.2.6).
 *
 * @since 0.1.0
 * @category models
 */
export type PairState = "frozen" | "waiting" | "in-progress" | "succeeded" | "failed"

/**
 * The state of a checklist (RFC 8445 §6.1.2.1).
 *
 * @since 0.1.0
 * @category models
 */
export type ChecklistState = "running" | "completed" | "failed"

/**
 * A local candidate as the checklist sees it: the candidate plus the key of its base (the socket it is sent from).
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalCandidate {
  readonly candidate: Candidate
  /** Identity of the base (e.g. `"udp|10.0.0.1|5000"` of the host socket, or the relay). */
  readonly baseKey: string
  /** The base's own candidate (for a srflx local, the host candidate it was learned on); for host/relay itself. */
  readonly base: Candidate
}

/**
 * A candidate pair (RFC 8445 §6.1.2).
 *
 * @since 0.1.0
 * @category models
 */
export interface Pair {
  /** Stable identity, see `pairId`. */
  readonly id: string
  /** For a pair formed from a server reflexive candidate, its base (§6.1.2.4). */
  readonly local: LocalCandidate
  readonly remote: Candidate
  /** RFC 8445 §6.1.2.3 priority as a bigint (it exceeds 2^53). */
  readonly priority: bigint
  /** `${local.candidate.foundation}:${remote.foundation}`. */
  readonly foundation: string
  readonly state: PairState
  /** In the valid list (§7.2.5.3.2). */
  readonly valid: boolean
  /** §8.1.1: the controlling agent sent USE-CANDIDATE and got a success, or the controlled agent saw it. */
  readonly nominated: boolean
  /** Why it failed (e.g. `"timeout"`, `"487 role conflict"`, `"403"`, `"unreachable"`). */
  readonly failure?: string | undefined
}

/**
 * The checklist of one data stream.
 *
 * @since 0.1.0
 * @category models
 */
export interface Checklist {
  readonly controlling: boolean
  /** Sorted by priority, highest first (ties: by id). */
  readonly pairs: ReadonlyArray<Pair>
  readonly state: ChecklistState
  readonly maxPairs: number
  readonly locals: ReadonlyArray<LocalCandidate>
  readonly remotes: ReadonlyArray<Candidate>
}

/**
 * The default limit on the number of pairs: RFC 8445 §6.1.2.5 ("the default value for this limit is 100").
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxPairs = 100

/**
 * The pair priority of RFC 8445 §6.1.2.3: `2^32 × MIN(G,D) + 2 × MAX(G,D) + (G > D ? 1 : 0)`, where G is the
 * priority of the controlling agent's candidate and D the controlled agent's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const pairPriority = (controlling: boolean, local: Candidate, remote: Candidate): bigint => {
  const g = BigInt(controlling ? local.priority : remote.priority)
  const d = BigInt(controlling ? remote.priority : local.priority)
  const [min, max] = g < d ? [g, d] : [d, g]
  return (min << 32n) + 2n * max + (g > d ? 1n : 0n)
}

/** The candidate a local stands for in a pair: a server reflexive candidate is replaced by its base (§6.1.2.4). */
const pairingCandidate = (local: LocalCandidate): Candidate =>
  local.candidate.type === "srflx" ? local.base : local.candidate

/** The local of a pair formed from `local`: its base when it is server reflexive (§6.1.2.4). */
const pairingLocal = (local: LocalCandidate): LocalCandidate =>
  local.candidate.type === "srflx" ? { candidate: local.base, baseKey: local.baseKey, base: local.base } : local

/**
 * The id of the pair of `local` and `remote`: `${IceCandidate.key(l)}->${IceCandidate.key(remote)}`, where `l` is
 * the local's base when the local is server reflexive and the local itself otherwise.
 *
 * @since 0.1.0
 * @category constructors
 */
export const pairId = (local: LocalCandidate, remote: Candidate): string =>
  `${IceCandidate.key(pairingCandidate(local))}->${IceCandidate.key(remote)}`

/**
 * An empty checklist: no candidates, no pairs, state `running`, at most `maxPairs` (default 100) pairs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty = (options: { readonly controlling: boolean; readonly maxPairs?: number }): Checklist => ({
  controlling: options.controlling,
  pairs: [],
  state: "running",
  maxPairs: options.maxPairs ?? defaultMaxPairs,
  locals: [],
  remotes: []
})

const comparePairs = (a: Pair, b: Pair): number =>
  a.priority > b.priority ? -1 : a.priority < b.priority ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0

const sortPairs = (pairs: ReadonlyArray<Pair>): Array<Pair> => [...pairs].sort(comparePairs)

/**
 * Whether a pair must never be dropped by pruning or the pair limit: in progress, succeeded or valid.
 *
 * @since 0.1.0
 * @category guards
 */
export const isProtected = (pair: Pair): boolean =>
  pair.state === "in-progress" || pair.state === "succeeded" || pair.valid

const isLinkLocal = (candidate: Candidate): boolean => /^fe[89ab][0-9a-f]:/i.test(candidate.address)

const tcpCompatible = (local: Candidate, remote: Candidate): boolean =>
  (local.tcpType === "active" && remote.tcpType === "passive") ||
  (local.tcpType === "passive" && remote.tcpType === "active") ||
  (local.tcpType === "so" && remote.tcpType === "so")

/**
 * Whether RFC 8445 §6.1.2.2 (and RFC 6544 §6.2 for TCP) pairs these two candidates: same component, same
 * transport, same IP family (neither an mDNS name), IPv6 link-local only with link-local, and for TCP
 * `active`↔`passive` or `so`↔`so`.
 *
 * @since 0.1.0
 * @category guards
 */
export const canPair = (local: LocalCandidate, remote: Candidate): boolean => {
  const l = pairingCandidate(local)
  if (l.component !== remote.component || l.transport !== remote.transport) return false
  if (IceCandidate.isMdns(l) || IceCandidate.isMdns(remote)) return false
  const lf = IceCandidate.addressFamily(l)
  const rf = IceCandidate.addressFamily(remote)
  if (Option.isNone(lf) || Option.isNone(rf) || lf.value !== rf.value) return false
  if (lf.value === "IPv6" && isLinkLocal(l) !== isLinkLocal(remote)) return false
  return l.transport === "udp" || tcpCompatible(l, remote)
}

const makePair = (controlling: boolean, local: LocalCandidate, remote: Candidate, state: PairState): Pair => ({
  id: pairId(local, remote),
  local,
  remote,
  priority: pairPriority(controlling, local.candidate, remote),
  foundation: `${local.candidate.foundation}:${remote.foundation}`,
  state,
  valid: false,
  nominated: false
})

/** §6.1.2.4 pruning over a sorted list: drops an unprotected pair whose (local base, remote) a better pair has. */
const prune = (sorted: ReadonlyArray<Pair>): Array<Pair> => {
  const seen = new Set<string>()
  return sorted.filter((pair) => {
    const redundancy = `${pair.local.baseKey}->${IceCandidate.key(pair.remote)}`
    const redundant = seen.has(redundancy)
    seen.add(redundancy)
    return !redundant || isProtected(pair)
  })
}

/** §6.1.2.5 over a sorted list: keeps at most `maxPairs`, dropping the lowest-priority unprotected pairs first. */
const limit = (sorted: ReadonlyArray<Pair>, maxPairs: number): Array<Pair> => {
  let excess = sorted.length - maxPairs
  if (excess <= 0) return [...sorted]
  const kept: Array<Pair> = []
  for (let i = sorted.length - 1; i >= 0; i--) {
    const pair = sorted[i]!
    if (excess > 0 && !isProtected(pair)) excess--
    else kept.push(pair)
  }
  return kept.reverse()
}

const activeStates: ReadonlySet<PairState> = new Set(["waiting", "in-progress", "succeeded"])

/** §6.1.2.6: for each foundation with no waiting/in-progress/succeeded pair, its first frozen pair becomes waiting. */
const unfreezeInitial = (sorted: ReadonlyArray<Pair>): Array<Pair> => {
  const active = new Set<string>()
  for (const pair of sorted) if (activeStates.has(pair.state)) active.add(pair.foundation)
  const chosen = new Map<string, Pair>()
  for (const pair of sorted) {
    if (pair.state !== "frozen" || active.has(pair.foundation)) continue
    const current = chosen.get(pair.foundation)
    // Sorted by priority already, so the first seen wins unless a later one has a lower component ID.
    if (current === undefined || pair.remote.component < current.remote.component) chosen.set(pair.foundation, pair)
  }
  if (chosen.size === 0) return [...sorted]
  const unfreeze = new Set(Array.from(chosen.values(), (pair) => pair.id))
  return sorted.map((pair) => unfreeze.has(pair.id) ? { ...pair, state: "waiting" } : pair)
}

/** Adds new frozen pairs, then prunes, sorts, limits and applies the initial unfreezing. */
const withNewPairs = (list: Checklist, formed: ReadonlyArray<Pair>, changes: Partial<Checklist>): Checklist => {
  const ids = new Set(list.pairs.map((pair) => pair.id))
  const fresh = formed.filter((pair) => {
    if (ids.has(pair.id)) return false
    ids.add(pair.id)
    return true
  })
  const pairs = fresh.length === 0
    ? list.pairs
    : unfreezeInitial(limit(prune(sortPairs([...list.pairs, ...fresh])), list.maxPairs))
  return { ...list, ...changes, pairs }
}

/**
 * Adds a local candidate and forms its pairs with every remote candidate (§6.1.2.2): see the module documentation
 * for the pairing rules, pruning (§6.1.2.4), the pair limit (§6.1.2.5) and the initial unfreezing (§6.1.2.6).
 * A local whose `key` is already known is ignored.
 *
 * @since 0.1.0
 * @category combinators
 */
export const addLocal = (list: Checklist, local: LocalCandidate): Checklist => {
  const k = IceCandidate.key(local.candidate)
  if (list.locals.some((l) => IceCandidate.key(l.candidate) === k)) return list
  const paired = pairingLocal(local)
  const formed = list.remotes.filter((remote) => canPair(local, remote)).map((remote) =>
    makePair(list.controlling, paired, remote, "frozen")
  )
  return withNewPairs(list, formed, { locals: [...list.locals, local] })
}

/**
 * Adds a remote candidate and forms its pairs with every local candidate (§6.1.2.2), as `addLocal` does. An mDNS
 * remote is kept in `remotes` but not paired. A remote whose `key` is already known is ignored.
 *
 * @since 0.1.0
 * @category combinators
 */
export const addRemote = (list: Checklist, remote: Candidate): Checklist => {
  const k = IceCandidate.key(remote)
  if (list.remotes.some((r) => IceCandidate.key(r) === k)) return list
  const formed = list.locals.filter((local) => canPair(local, remote)).map((local) =>
    makePair(list.controlling, pairingLocal(local), remote, "frozen")
  )
  return withNewPairs(list, formed, { remotes: [...list.remotes, remote] })
}

/**
 * Changes the agent's role (487 role conflict, ICE restart): recomputes every pair priority (§6.1.2.3) and sorts the
 * pairs again.
 *
 * @since 0.1.0
 * @category combinators
 */
export const setControlling = (list: Checklist, controlling: boolean): Checklist => ({
  ...list,
  controlling,
  pairs: sortPairs(
    list.pairs.map((pair) => ({ ...pair, priority: pairPriority(controlling, pair.local.candidate, pair.remote) }))
  )
})

/**
 * §6.1.4.2 ordinary check selection: the highest-priority waiting pair; if there is none, the highest-priority
 * frozen pair whose foundation has no waiting or in-progress pair (the pair the RFC unfreezes). `None` when nothing
 * is left to check. Changes nothing: the caller then sets the pair `in-progress` with `setState`.
 *
 * @since 0.1.0
 * @category getters
 */
export const nextOrdinary = (list: Checklist): Option.Option<Pair> => {
  const waiting = list.pairs.find((pair) => pair.state === "waiting")
  if (waiting !== undefined) return Option.some(waiting)
  const busy = new Set<string>()
  for (const pair of list.pairs) if (pair.state === "in-progress") busy.add(pair.foundation)
  return Option.fromNullable(list.pairs.find((pair) => pair.state === "frozen" && !busy.has(pair.foundation)))
}

/**
 * The pair with this id.
 *
 * @since 0.1.0
 * @category getters
 */
export const find = (list: Checklist, id: string): Option.Option<Pair> =>
  Option.fromNullable(list.pairs.find((pair) => pair.id === id))

/**
 * Sets a pair's state; `failure` is recorded when the state is `failed` and cleared otherwise. When a pair
 * succeeds, every frozen pair of the same foundation becomes waiting (§7.2.5.3.3). An unknown id leaves the list
 * unchanged (the same object).
 *
 * @since 0.1.0
 * @category combinators
 */
export const setState = (list: Checklist, id: string, state: PairState, failure?: string): Checklist => {
  const target = list.pairs.find((pair) => pair.id === id)
  if (target === undefined) return list
  const pairs = list.pairs.map((pair): Pair => {
    if (pair.id === id) {
      const { failure: _, ...rest } = pair
      return state === "failed" && failure !== undefined ? { ...rest, state, failure } : { ...rest, state }
    }
    if (state === "succeeded" && pair.state === "frozen" && pair.foundation === target.foundation) {
      return { ...pair, state: "waiting" }
    }
    return pair
  })
  return { ...list, pairs }
}

/**
 * §7.2.5.3.2: records the valid pair of a successful check, made of the local candidate whose transport address is
 * the mapped address (a known local, or a new peer-reflexive one the caller built) and the remote candidate of the
 * checked pair. If a pair with that id is already in the list it is marked valid (its state is left alone);
 * otherwise it is added in state `succeeded`, valid. With `nominated` it is also marked nominated. Returns the list
 * and the valid pair's id.
 *
 * @since 0.1.0
 * @category combinators
 */
export const addValid = (
  list: Checklist,
  local: LocalCandidate,
  remote: Candidate,
  options?: { readonly nominated?: boolean }
): readonly [Checklist, string] => {
  const id = pairId(local, remote)
  const nominated = options?.nominated === true
  if (list.pairs.some((pair) => pair.id === id)) {
    const pairs = list.pairs.map((pair) =>
      pair.id === id ? { ...pair, valid: true, nominated: pair.nominated || nominated } : pair
    )
    return [{ ...list, pairs }, id]
  }
  const pair: Pair = { ...makePair(list.controlling, pairingLocal(local), remote, "succeeded"), valid: true, nominated }
  return [{ ...list, pairs: limit(sortPairs([...list.pairs, pair]), list.maxPairs) }, id]
}

/**
 * Marks a pair nominated (§8.1.1; meaningful for a valid pair). An unknown id leaves the list unchanged.
 *
 * @since 0.1.0
 * @category combinators
 */
export const nominate = (list: Checklist, id: string): Checklist =>
  list.pairs.some((pair) => pair.id === id)
    ? { ...list, pairs: list.pairs.map((pair) => pair.id === id ? { ...pair, nominated: true } : pair) }
    : list

/**
 * The valid list (§7.2.5.3.2), highest priority first.
 *
 * @since 0.1.0
 * @category getters
 */
export const validPairs = (list: Checklist): ReadonlyArray<Pair> => list.pairs.filter((pair) => pair.valid)

/**
 * The selected pair (§8.1.1): the highest-priority pair that is valid and nominated.
 *
 * @since 0.1.0
 * @category getters
 */
export const selected = (list: Checklist): Option.Option<Pair> =>
  Option.fromNullable(list.pairs.find((pair) => pair.valid && pair.nominated))

/**
 * Recomputes `state`: `completed` when a pair is valid and nominated (§8.1.2); `failed` when no pair is frozen,
 * waiting or in progress, none is valid, and both local gathering and the remote's candidates are complete
 * (§6.1.2.1, §7.2.5.4; with trickle ICE, RFC 8838, a new candidate could still arrive before that); `running`
 * otherwise. Components are not told apart here: one valid nominated pair completes the list and one valid pair
 * keeps it from failing; an agent with several components checks each one's selected pair itself.
 *
 * @since 0.1.0
 * @category combinators
 */
export const updateState = (
  list: Checklist,
  options: { readonly gatheringComplete: boolean; readonly remoteEndOfCandidates: boolean }
): Checklist => {
  const state: ChecklistState = list.pairs.some((pair) => pair.valid && pair.nominated)
    ? "completed"
    : options.gatheringComplete && options.remoteEndOfCandidates &&
        !list.pairs.some((pair) =>
          pair.valid || pair.state === "frozen" || pair.state === "waiting" || pair.state === "in-progress"
        )
    ? "failed"
    : "running"
  return state === list.state ? list : { ...list, state }
}
