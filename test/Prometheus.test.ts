/**
 * `Prometheus.render` on real Effect metrics (taken from `Metric.snapshot`, filtered to this file's names), and
 * `Prometheus.serve` on the simulated network (10 ms one way, under `TestClock`) and on loopback with `fetch`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Metric, MetricBoundaries, Option, TestClock } from "effect"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import * as Prometheus from "../src/Prometheus.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const snapshotOf = (prefix: string) =>
  Effect.map(Metric.snapshot, (pairs) => pairs.filter((pair) => pair.metricKey.name.startsWith(prefix)))

describe("Prometheus.render", () => {
  it.effect("a counter with labels (escaped), an up-down counter as gauge, a gauge and a histogram, exactly", () =>
    Effect.gen(function*() {
      const requests = Metric.counter("prom_test_a_requests_total", { description: "Requests \\ served\nby method" })
      yield* Metric.incrementBy(Metric.tagged(requests, "method", "GET"), 3)
      yield* Metric.increment(Metric.tagged(Metric.tagged(requests, "method", "POST"), "path", "/a\"b\\c\nd"))
      const held = Metric.counter("prom_test_a_held", { description: "Things held now" })
      yield* Metric.incrementBy(held, 2)
      yield* Metric.incrementBy(held, -1)
      yield* Metric.set(Metric.gauge("prom_test_a_temperature"), -2.5)
      const latency = Metric.histogram(
        "prom_test_a_latency_ms",
        MetricBoundaries.fromIterable([10, 100]),
        "Latency"
      )
      for (const v of [5, 50, 50, 500]) yield* Metric.update(latency, v)
      const text = Prometheus.render(yield* snapshotOf("prom_test_a_"))
      assert.strictEqual(
        text,
        [
          "# HELP prom_test_a_held Things held now",
          "# TYPE prom_test_a_held gauge",
          "prom_test_a_held 1",
          "# HELP prom_test_a_latency_ms Latency",
          "# TYPE prom_test_a_latency_ms histogram",
          "prom_test_a_latency_ms_bucket{le=\"10\"} 1",
          "prom_test_a_latency_ms_bucket{le=\"100\"} 3",
          "prom_test_a_latency_ms_bucket{le=\"+Inf\"} 4",
          "prom_test_a_latency_ms_sum 605",
          "prom_test_a_latency_ms_count 4",
          "# HELP prom_test_a_requests_total Requests \\\\ served\\nby method",
          "# TYPE prom_test_a_requests_total counter",
          "prom_test_a_requests_total{method=\"GET\"} 3",
          "prom_test_a_requests_total{method=\"POST\",path=\"/a\\\"b\\\\c\\nd\"} 1",
          "# TYPE prom_test_a_temperature gauge",
          "prom_test_a_temperature -2.5",
          ""
        ].join("\n")
      )
    }))

  it.effect("a frequency is a counter per word, a summary has quantiles, odd names are sanitized", () =>
    Effect.gen(function*() {
      const words = Metric.frequency("prom_test_b_words", { description: "Words" })
      for (const w of ["b", "a", "b"]) yield* Metric.update(words, w)
      yield* Metric.set(Metric.gauge("prom_test_b_odd.name-x"), 7)
      const text = Prometheus.render(yield* snapshotOf("prom_test_b_"))
      assert.strictEqual(
        text,
        [
          "# TYPE prom_test_b_odd_name_x gauge",
          "prom_test_b_odd_name_x 7",
          "# HELP prom_test_b_words Words",
          "# TYPE prom_test_b_words counter",
          "prom_test_b_words{key=\"a\"} 1",
          "prom_test_b_words{key=\"b\"} 2",
          ""
        ].join("\n")
      )
      const summary = Metric.summary({
        name: "prom_test_c_size",
        maxAge: "1 minute",
        maxSize: 10,
        error: 0,
        quantiles: [0.5]
      })
      yield* Metric.update(summary, 4)
      const summaryText = Prometheus.render(yield* snapshotOf("prom_test_c_"))
      assert.strictEqual(
        summaryText,
        "# TYPE prom_test_c_size summary\nprom_test_c_size{quantile=\"0.5\"} 4\nprom_test_c_size_sum 4\n" +
          "prom_test_c_size_count 1\n"
      )
      assert.strictEqual(Prometheus.render([]), "")
    }))
})

const decoder = new TextDecoder()

/** Opens a connection, sends `request` in pieces, and collects everything until the server closes. */
const exchange = (network: Network.Service, to: Network.StreamListener["local"], request: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* network.connectTcp({ family: to.family, ip: to.ip, port: to.port })
    const chunks: Array<Uint8Array> = []
    yield* socket.setHandler((chunk) => void chunks.push(chunk.slice()))
    for (const piece of request) yield* socket.write(new TextEncoder().encode(piece))
    yield* socket.closed
    return chunks.map((c) => decoder.decode(c)).join("")
  }))

describe("Prometheus.serve", () => {
  it.scoped("answers GET, HEAD, 404, 405, 431 on the simulated network, and drops a silent client after 10 s", () =>
    Effect.gen(function*() {
      yield* Metric.set(Metric.gauge("prom_test_d_value", { description: "A value" }), 42)
      const world = yield* VirtualNetwork.make()
      const serverHost = yield* world.addHost({ name: "server", addresses: ["192.0.2.1"] })
      const clientHost = yield* world.addHost({ name: "client", addresses: ["198.51.100.7"] })
      const listener = yield* Prometheus.serve({ address: "192.0.2.1", port: 9641 }).pipe(
        Effect.provideService(Network.Network, serverHost.network)
      )
      assert.deepStrictEqual(listener.local, { family: "IPv4", ip: "192.0.2.1", port: 9641, transport: "tcp" })
      const run = (request: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const fiber = yield* Effect.fork(exchange(clientHost.network, listener.local, request))
          yield* TestClock.adjust("1 second")
          return yield* Fiber.join(fiber)
        })

      const ok = yield* run(["GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n", "Accept: */*\r\n\r\n"])
      const [head, body] = ok.split("\r\n\r\n") as [string, string]
      const lines = head.split("\r\n")
      assert.strictEqual(lines[0], "HTTP/1.1 200 OK")
      assert.include(lines, "Content-Type: text/plain; version=0.0.4; charset=utf-8")
      assert.include(lines, "Connection: close")
      assert.include(lines, `Content-Length: ${new TextEncoder().encode(body).length}`)
      assert.include(body, "# HELP prom_test_d_value A value\n# TYPE prom_test_d_value gauge\nprom_test_d_value 42\n")

      const headOnly = yield* run(["HEAD /metrics HTTP/1.1\r\n\r\n"])
      assert.isTrue(headOnly.startsWith("HTTP/1.1 200 OK\r\n"), headOnly)
      assert.isTrue(headOnly.endsWith("Connection: close\r\n\r\n"), headOnly)
      assert.notInclude(headOnly, "prom_test_d_value")

      assert.strictEqual(
        yield* run(["GET /other HTTP/1.1\r\n\r\n"]),
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n" +
          "Connection: close\r\n\r\nnot found\n"
      )
      assert.strictEqual(
        yield* run(["POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"]),
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 19\r\n" +
          "Allow: GET, HEAD\r\nConnection: close\r\n\r\nmethod not allowed\n"
      )
      assert.strictEqual(
        yield* run(["nonsense\r\n\r\n"]),
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n" +
          "Connection: close\r\n\r\nbad request\n"
      )
      const tooLarge = yield* run(["GET /metrics HTTP/1.1\r\n", "X-Big: " + "a".repeat(9000) + "\r\n\r\n"])
      assert.isTrue(tooLarge.startsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"), tooLarge.slice(0, 80))

      // A client that never finishes its head is disconnected at 10 s, with no answer.
      const clock = yield* Effect.clock
      const closedAt = yield* Deferred.make<number>()
      const silent = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const socket = yield* clientHost.network.connectTcp({ family: "IPv4", ip: "192.0.2.1", port: 9641 })
        const chunks: Array<Uint8Array> = []
        yield* socket.setHandler((chunk) => void chunks.push(chunk))
        yield* socket.write(new TextEncoder().encode("GET /metrics HTTP/1.1\r\n"))
        const start = clock.unsafeCurrentTimeMillis()
        yield* socket.closed
        yield* Deferred.succeed(closedAt, clock.unsafeCurrentTimeMillis() - start)
        return chunks.length
      })))
      yield* TestClock.adjust("9 seconds")
      assert.isTrue(Option.isNone(yield* Deferred.poll(closedAt)))
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* Fiber.join(silent), 0)
      // The server's 10 s start when it accepts (10 ms, the SYN's trip), so it closes at 10.010 s and the client,
      // connected at 20 ms, sees the close 10 ms later: exactly 10 s after its connect completed.
      assert.strictEqual(yield* Deferred.await(closedAt), 10_000)
    }))

  it.scopedLive("serves the metrics on loopback to fetch, port 0", () =>
    Effect.gen(function*() {
      yield* Metric.set(Metric.gauge("prom_test_e_live"), 5)
      const listener = yield* Prometheus.serve({ port: 0 }).pipe(Effect.provide(NodeNetwork.layer))
      assert.strictEqual(listener.local.ip, "127.0.0.1")
      assert.isTrue(listener.local.port > 0)
      const base = `http://127.0.0.1:${listener.local.port}`
      const ok = yield* Effect.promise(() => fetch(`${base}/metrics`))
      assert.strictEqual(ok.status, 200)
      assert.strictEqual(ok.headers.get("content-type"), Prometheus.contentType)
      const text = yield* Effect.promise(() => ok.text())
      assert.include(text, "# TYPE prom_test_e_live gauge\nprom_test_e_live 5\n")
      assert.strictEqual(Number(ok.headers.get("content-length")), new TextEncoder().encode(text).length)
      const missing = yield* Effect.promise(() => fetch(`${base}/nope`))
      assert.strictEqual(missing.status, 404)
      yield* Effect.promise(() => missing.text())
      const post = yield* Effect.promise(() => fetch(`${base}/metrics`, { method: "POST", body: "x" }))
      assert.deepStrictEqual([post.status, post.headers.get("allow")], [405, "GET, HEAD"])
      yield* Effect.promise(() => post.text())
    }))
})
