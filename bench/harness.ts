/**
 * A small timing harness with no dependencies.
 *
 * `measure` first runs the function for `warmupMs` so the JIT settles. It then times `batches` batches of
 * `iterations` calls each, with `process.hrtime.bigint()`, and reports the MEDIAN batch's ns/op. The median holds up
 * better than the mean against GC pauses and scheduler noise. Without `iterations`, it picks a count that makes one
 * batch take about `targetBatchMs`.
 *
 * `printTable` prints one line per operation: ns/op for the baseline (effect-ice) and for each peer, and the ratio
 * ours/theirs for each peer.
 */

export interface MeasureOptions {
  /** Calls per timed batch. Default: calibrated so one batch takes about `targetBatchMs`. */
  readonly iterations?: number
  /** How long to run the function before timing it. Default 200 ms. */
  readonly warmupMs?: number
  /** Number of timed batches. The median is reported. Default 9. */
  readonly batches?: number
  /** Target length of one batch when calibrating `iterations`. Default 50 ms. */
  readonly targetBatchMs?: number
}

export interface Measurement {
  readonly name: string
  /** Median batch, in nanoseconds per call. */
  readonly nsPerOp: number
  readonly opsPerSec: number
  /** Fastest and slowest batch, in ns per call. */
  readonly minNsPerOp: number
  readonly maxNsPerOp: number
  readonly iterations: number
  readonly batches: number
}

/**
 * Every result is stored here, so the JIT cannot remove the call as dead code. Reading it through `blackhole()`
 * makes the store observable.
 */
let sink: unknown = undefined
export const blackhole = (): unknown => sink

const runBatch = (fn: () => unknown, iterations: number): bigint => {
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) {
    sink = fn()
  }
  return process.hrtime.bigint() - start
}

const median = (sorted: ReadonlyArray<number>): number => {
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Time `fn` and return the median batch's ns/op. */
export const measure = (name: string, fn: () => unknown, options: MeasureOptions = {}): Measurement => {
  const warmupMs = options.warmupMs ?? 200
  const batches = Math.max(1, Math.floor(options.batches ?? 9))
  const targetBatchNs = (options.targetBatchMs ?? 50) * 1e6

  // Warm up: keep calling, checking the clock every 64 calls, until warmupMs has passed.
  const warmupEnd = process.hrtime.bigint() + BigInt(Math.round(warmupMs * 1e6))
  do {
    runBatch(fn, 64)
  } while (process.hrtime.bigint() < warmupEnd)

  // Calibrate: double the batch until it takes at least a tenth of the target, then scale up to the target.
  let iterations = options.iterations
  if (iterations === undefined) {
    let n = 16
    let elapsed = Number(runBatch(fn, n))
    while (elapsed < targetBatchNs / 10 && n < 1 << 30) {
      n *= 2
      elapsed = Number(runBatch(fn, n))
    }
    iterations = Math.max(1, Math.round((n * targetBatchNs) / Math.max(elapsed, 1)))
  }
  iterations = Math.max(1, Math.floor(iterations))

  const perOp: Array<number> = []
  for (let b = 0; b < batches; b++) {
    perOp.push(Number(runBatch(fn, iterations)) / iterations)
  }
  perOp.sort((x, y) => x - y)
  const nsPerOp = median(perOp)
  return {
    name,
    nsPerOp,
    opsPerSec: 1e9 / nsPerOp,
    minNsPerOp: perOp[0]!,
    maxNsPerOp: perOp[perOp.length - 1]!,
    iterations,
    batches
  }
}

/** One cell of the results table: how long one implementation took for one operation. */
export interface Row {
  /** The operation, e.g. "decode RFC 5769 2.1" or "encode ICE check". */
  readonly operation: string
  /** The implementation, e.g. "effect-ice", "stun" or "werift-ice". */
  readonly implementation: string
  readonly nsPerOp: number
}

export interface PrintTableOptions {
  /** The implementation the ratios are computed for. Default "effect-ice". */
  readonly baseline?: string
  /** Where lines go. Default console.log. */
  readonly log?: (line: string) => void
}

const formatNs = (ns: number): string => {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`
  if (ns >= 1e4) return `${(ns / 1e3).toFixed(1)} µs`
  if (ns >= 100) return `${Math.round(ns).toLocaleString("en-US")} ns`
  return `${ns.toFixed(1)} ns`
}

const formatRatio = (ratio: number): string => `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}x`

/**
 * Print a table with one line per operation, in the order operations first appear in `rows`. The baseline comes
 * first, then each peer in the order it first appears. Each peer cell shows the peer's ns/op and the ratio
 * baseline/peer (ours/theirs): below 1 means the baseline is faster. A missing measurement prints as "-".
 */
export const printTable = (rows: ReadonlyArray<Row>, options: PrintTableOptions = {}): void => {
  const baseline = options.baseline ?? "effect-ice"
  const log = options.log ?? ((line: string) => console.log(line))

  const operations: Array<string> = []
  const implementations: Array<string> = [baseline]
  const cells = new Map<string, number>()
  const key = (operation: string, implementation: string) => `${operation}\u0000${implementation}`
  for (const row of rows) {
    if (!operations.includes(row.operation)) operations.push(row.operation)
    if (!implementations.includes(row.implementation)) implementations.push(row.implementation)
    cells.set(key(row.operation, row.implementation), row.nsPerOp)
  }
  const peerNames = implementations.slice(1)

  const header = ["operation", `${baseline} ns/op`, ...peerNames.map((peer) => `${peer} ns/op (ours/theirs)`)]
  const body = operations.map((operation) => {
    const ours = cells.get(key(operation, baseline))
    return [
      operation,
      ours === undefined ? "-" : formatNs(ours),
      ...peerNames.map((peer) => {
        const theirs = cells.get(key(operation, peer))
        if (theirs === undefined) return "-"
        if (ours === undefined) return formatNs(theirs)
        return `${formatNs(theirs)} (${formatRatio(ours / theirs)})`
      })
    ]
  })

  const widths = header.map((cell, column) => Math.max(cell.length, ...body.map((line) => line[column]!.length)))
  const render = (line: ReadonlyArray<string>) =>
    line.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join("  ")
  log(render(header))
  log(widths.map((width) => "-".repeat(width)).join("  "))
  for (const line of body) log(render(line))
  log(`ours/theirs = ${baseline} ns/op divided by the peer's ns/op; below 1 means ${baseline} is faster.`)
}
