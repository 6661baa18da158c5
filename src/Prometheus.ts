/**
 * Effect metrics in the Prometheus text exposition format (version 0.0.4), and a minimal HTTP/1.1 endpoint that
 * serves them, so an operator can scrape a running TURN server (`effect-ice turn-server --metrics-port 9641`).
 *
 * `render` turns a `Metric.snapshot` into the text format: one `# HELP` (the metric's description) and one `# TYPE`
 * per metric name, then one sample line per label set. Names are sorted, and the samples of one name by their
 * label text, so the same metrics always give the same bytes. Label values are escaped (`\\`, `"`, newline);
 * characters a Prometheus name may not hold become `_`.
 *
 * - Counters: an Effect counter may go down unless it was made `incremental` (effect-ice's up-down counters such as
 *   `effect_ice_turn_allocations` do), and a Prometheus counter must not, so a counter is typed `counter` when it
 *   is incremental or its name ends in `_total` (the Prometheus naming rule for counters), and `gauge` otherwise.
 *   The value is written as it is.
 * - Gauges: `gauge`.
 * - Histograms: `histogram`, with cumulative `_bucket{le="…"}` lines (the last one `le="+Inf"`), `_sum` and
 *   `_count`.
 * - Summaries: `summary`, with `{quantile="…"}` lines (`NaN` when the quantile has no value yet), `_sum`, `_count`.
 * - Frequencies: `counter`, one line per observed word, the word in a `key` label.
 *
 * `serve` listens with `Network.listenTcp` (so it runs on `NodeNetwork` and on `VirtualNetwork` alike) and answers
 * one request per connection: `GET` or `HEAD` of the metrics path (default `/metrics`, a query string is ignored)
 * gets 200 with `Content-Type: text/plain; version=0.0.4; charset=utf-8`, any other path 404, any other method 405
 * (with `Allow: GET, HEAD`), a request line that does not parse 400, a head longer than {@link maxHeaderBytes} 431.
 * Every answer has `Content-Length` and `Connection: close`, and the connection is closed after it. A client that
 * does not finish its head within {@link headerTimeout} (on Effect's clock) is disconnected without an answer.
 * It is deliberately not a general HTTP server: no keep-alive, no request body, no chunked encoding.
 *
 * @since 0.1.0
 */
import { Deferred, Duration, Effect, Metric, Option } from "effect"
import type { MetricPair, Scope } from "effect"
import * as MetricKeyType from "effect/MetricKeyType"
import * as MetricState from "effect/MetricState"
import * as Network from "./Network.js"

/**
 * The content type of the text exposition format.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/**
 * The most bytes a request head (request line and headers, up to the blank line) may have: 8 KiB; more gets 431
 * Request Header Fields Too Large.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxHeaderBytes = 8192

/**
 * How long a client may take to send its request head before it is disconnected.
 *
 * @since 0.1.0
 * @category constants
 */
export const headerTimeout: Duration.Duration = Duration.seconds(10)

/**
 * The default path of the metrics endpoint.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPath = "/metrics"

// ---------------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------------

const sanitizeName = (name: string): string => {
  const cleaned = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[0-9]/.test(cleaned) ? "_" + cleaned : cleaned
}

const sanitizeLabelName = (name: string): string => {
  const cleaned = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[0-9]/.test(cleaned) ? "_" + cleaned : cleaned
}

const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const formatNumber = (value: number | bigint): string => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Infinity) return "+Inf"
  if (value === -Infinity) return "-Inf"
  return String(value)
}

type Labels = ReadonlyArray<readonly [string, string]>

const formatLabels = (labels: Labels): string =>
  labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`

type PrometheusType = "counter" | "gauge" | "histogram" | "summary"

interface Family {
  readonly name: string
  readonly type: PrometheusType
  readonly help: string | undefined
  readonly samples: Array<{ readonly sortKey: string; readonly lines: ReadonlyArray<string> }>
}

const typeOf = (name: string, keyType: unknown): PrometheusType | undefined => {
  if (MetricKeyType.isCounterKey(keyType)) {
    return keyType.incremental || name.endsWith("_total") ? "counter" : "gauge"
  }
  if (MetricKeyType.isGaugeKey(keyType)) return "gauge"
  if (MetricKeyType.isHistogramKey(keyType)) return "histogram"
  if (MetricKeyType.isSummaryKey(keyType)) return "summary"
  if (MetricKeyType.isFrequencyKey(keyType)) return "counter"
  return undefined
}

const samplesOf = (name: string, labels: Labels, state: MetricState.MetricState.Untyped): Array<string> => {
  if (MetricState.isCounterState(state)) return [`${name}${formatLabels(labels)} ${formatNumber(state.count)}`]
  if (MetricState.isGaugeState(state)) return [`${name}${formatLabels(labels)} ${formatNumber(state.value)}`]
  if (MetricState.isHistogramState(state)) {
    const lines: Array<string> = []
    let sawInfinity = false
    for (const [boundary, count] of state.buckets) {
      if (boundary === Infinity) sawInfinity = true
      lines.push(`${name}_bucket${formatLabels([...labels, ["le", formatNumber(boundary)]])} ${formatNumber(count)}`)
    }
    if (!sawInfinity) lines.push(`${name}_bucket${formatLabels([...labels, ["le", "+Inf"]])} ${state.count}`)
    lines.push(`${name}_sum${formatLabels(labels)} ${formatNumber(state.sum)}`)
    lines.push(`${name}_count${formatLabels(labels)} ${formatNumber(state.count)}`)
    return lines
  }
  if (MetricState.isSummaryState(state)) {
    const lines: Array<string> = []
    for (const [quantile, value] of state.quantiles) {
      lines.push(
        `${name}${formatLabels([...labels, ["quantile", formatNumber(quantile)]])} ${
          formatNumber(Option.getOrElse(value, () => NaN))
        }`
      )
    }
    lines.push(`${name}_sum${formatLabels(labels)} ${formatNumber(state.sum)}`)
    lines.push(`${name}_count${formatLabels(labels)} ${formatNumber(state.count)}`)
    return lines
  }
  if (MetricState.isFrequencyState(state)) {
    return [...state.occurrences].sort(([a], [b]) => compare(a, b)).map(([word, count]) =>
      `${name}${formatLabels([...labels, ["key", word]])} ${formatNumber(count)}`
    )
  }
  return []
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/**
 * Renders metrics (as `Metric.snapshot` gives them) in the Prometheus text exposition format 0.0.4. The output
 * ends with a newline, or is empty when there are no metrics.
 *
 * @since 0.1.0
 * @category rendering
 */
export const render = (snapshot: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  for (const pair of snapshot) {
    const key = pair.metricKey
    const name = sanitizeName(key.name)
    const type = typeOf(key.name, key.keyType)
    if (type === undefined) continue
    let family = families.get(name)
    if (family === undefined) {
      family = { name, type, help: Option.getOrUndefined(key.description), samples: [] }
      families.set(name, family)
    } else if (family.type !== type) {
      continue // the same name with another type: Prometheus cannot hold both; the first one wins
    }
    const labels: Labels = key.tags
      .map((tag): readonly [string, string] => [sanitizeLabelName(tag.key), tag.value])
      .sort(([a], [b]) => compare(a, b))
    family.samples.push({ sortKey: formatLabels(labels), lines: samplesOf(name, labels, pair.metricState) })
  }
  const out: Array<string> = []
  for (const family of [...families.values()].sort((a, b) => compare(a.name, b.name))) {
    if (family.help !== undefined) out.push(`# HELP ${family.name} ${escapeHelp(family.help)}`)
    out.push(`# TYPE ${family.name} ${family.type}`)
    for (const sample of family.samples.sort((a, b) => compare(a.sortKey, b.sortKey))) out.push(...sample.lines)
  }
  return out.length === 0 ? "" : out.join("\n") + "\n"
}

// ---------------------------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------------------------

/**
 * Where `serve` listens: the address (default `127.0.0.1`), the port (0: any free port, see the listener's
 * `local`), and the path of the metrics (default {@link defaultPath}).
 *
 * @since 0.1.0
 * @category models
 */
export interface ServeOptions {
  readonly address?: string | undefined
  readonly port: number
  readonly path?: string | undefined
}

const encoder = new TextEncoder()

const statusText: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  431: "Request Header Fields Too Large"
}

const response = (
  status: number,
  body: string,
  options: { readonly head?: boolean; readonly contentType?: string; readonly allow?: boolean } = {}
): Uint8Array => {
  const bytes = encoder.encode(body)
  const head = `HTTP/1.1 ${status} ${statusText[status]}\r\n` +
    `Content-Type: ${options.contentType ?? "text/plain; charset=utf-8"}\r\n` +
    `Content-Length: ${bytes.length}\r\n` +
    (options.allow === true ? "Allow: GET, HEAD\r\n" : "") +
    "Connection: close\r\n\r\n"
  const headBytes = encoder.encode(head)
  if (options.head === true) return headBytes
  const out = new Uint8Array(headBytes.length + bytes.length)
  out.set(headBytes, 0)
  out.set(bytes, headBytes.length)
  return out
}

/** Where the blank line ending the head starts in `bytes`, or -1. */
const headEnd = (bytes: Uint8Array, length: number): number => {
  for (let i = 3; i < length; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 && bytes[i - 3] === 13) return i - 3
  }
  return -1
}

type Head = { readonly _tag: "Head"; readonly text: string } | { readonly _tag: "TooLarge" }

/** Reads a request head (up to and without the blank line), bounded by `maxHeaderBytes`. */
const readHead = (socket: Network.StreamSocket): Effect.Effect<Head, Network.NetworkError> =>
  Effect.gen(function*() {
    const done = yield* Deferred.make<Head>()
    const buffer = new Uint8Array(maxHeaderBytes)
    let length = 0
    yield* socket.setHandler((chunk) => {
      if (length < 0) return
      const room = maxHeaderBytes - length
      buffer.set(chunk.subarray(0, room), length)
      const scanFrom = Math.max(0, length - 3)
      length += Math.min(room, chunk.length)
      const end = headEnd(buffer.subarray(scanFrom), length - scanFrom)
      if (end >= 0) {
        length = -1
        Deferred.unsafeDone(
          done,
          Effect.succeed({ _tag: "Head", text: new TextDecoder().decode(buffer.subarray(0, scanFrom + end)) })
        )
      } else if (chunk.length > room || length >= maxHeaderBytes) {
        length = -1
        Deferred.unsafeDone(done, Effect.succeed({ _tag: "TooLarge" }))
      }
    })
    return yield* Effect.raceFirst(
      Deferred.await(done),
      Effect.zipRight(socket.closed, Effect.fail(new Network.NetworkError({ reason: "Closed", operation: "listen" })))
    )
  })

/** The answer to one request head. */
const answer = (head: Head, path: string): Effect.Effect<Uint8Array> => {
  if (head._tag === "TooLarge") return Effect.succeed(response(431, "request head too large\n"))
  const requestLine = head.text.split("\r\n", 1)[0]!
  const match = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(requestLine)
  if (match === null) return Effect.succeed(response(400, "bad request\n"))
  const method = match[1]!
  const target = match[2]!
  const query = target.indexOf("?")
  const targetPath = query < 0 ? target : target.slice(0, query)
  if (method !== "GET" && method !== "HEAD") {
    return Effect.succeed(response(405, "method not allowed\n", { allow: true }))
  }
  if (targetPath !== path) return Effect.succeed(response(404, "not found\n", { head: method === "HEAD" }))
  return Effect.map(
    Metric.snapshot,
    (snapshot) => response(200, render(snapshot), { head: method === "HEAD", contentType })
  )
}

const serveConnection = (socket: Network.StreamSocket, path: string): Effect.Effect<void> =>
  readHead(socket).pipe(
    Effect.timeoutOption(headerTimeout),
    Effect.flatMap(Option.match({
      onNone: () => Effect.void,
      onSome: (head) => Effect.flatMap(answer(head, path), socket.write)
    })),
    Effect.ignore
  )

/**
 * Serves `Metric.snapshot` (the global metric registry) in the Prometheus text format over HTTP/1.1 on the
 * `Network`, for the lifetime of the scope. Each connection gets one answer and is closed. Fails with
 * `NetworkError` when the port cannot be bound.
 *
 * @since 0.1.0
 * @category constructors
 */
export const serve = (
  options: ServeOptions
): Effect.Effect<Network.StreamListener, Network.NetworkError, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const path = options.path ?? defaultPath
    return yield* network.listenTcp(
      { address: options.address ?? "127.0.0.1", port: options.port },
      (socket) => serveConnection(socket, path)
    )
  }).pipe(Effect.withSpan("Prometheus.serve", { captureStackTrace: false }))
