/**
 * STUN server load benchmark: Binding requests answered per second, and server CPU time per answer, on loopback,
 * for effect-ice's `StunServer`, coturn, the npm `stun` package's server, and a bare `node:dgram` echo (Node's
 * ceiling for one receive and one send), with the same load generator, in the same run. Prints answers/s and CPU
 * µs per answer for each, and the ratios ours/theirs.
 *
 * Targets (from the issue): effect-ice's CPU per answer ≤ 1.25× the echo's, and its throughput ≥ 2.8× `stun`'s.
 *
 * How:
 * - Each server runs in its own process, so its CPU time is its own: utime + stime of `/proc/<pid>/stat` (every
 *   thread of the process, so coturn's threads are all counted), read by the load generator at the start and the
 *   end of the measured window. The Node servers run with `node --import tsx` (the process is the server itself,
 *   and the loader only costs at startup).
 * - The load generator (`stun-server/load-generator.ts`) is one plain `node:dgram` process for every server: it
 *   keeps `window` Binding requests in flight (closed loop, no retransmissions: a request unanswered after
 *   `timeoutMs` is counted as lost), warms up, then counts the valid answers of the measured window.
 * - Each round starts every server afresh, in turn, so slow drifts of the machine touch all of them alike; the
 *   median of the rounds is reported (each of answers/s and CPU per answer separately). The generator also reads
 *   the whole machine's busy time (`/proc/stat`): a window in which other programs took more than a quarter of a
 *   core is measured again (at most twice), and the report warns when the medians are still disturbed.
 * - Everything is on a random `127.A.B.0/24` block (`pickLoopbackAddresses`), ports are port 0 or found free at
 *   run time, and every child is killed by its PID at the end, on error and on SIGINT/SIGTERM.
 *
 * Environment (all optional): `BENCH_ROUNDS` (default 3), `BENCH_WARMUP_MS` (2000), `BENCH_MEASURE_MS` (3000),
 * `BENCH_WINDOW` (requests in flight, 128), `BENCH_COTURN_THREADS` (coturn's `--relay-threads`, default 1),
 * `BENCH_SERVERS` (a comma-separated subset of effect-ice,echo,stun,coturn).
 *
 * Run: `npm run bench` (or `npx tsx bench/stun-server.bench.ts`).
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { coturnBinary, freeUdpTcpPort, peerAvailability, pickLoopbackAddresses } from "../test/interop/peers.js"
import type { Started } from "./processes.js"
import { children, exited, isRunning, root, start, stop } from "./processes.js"
import type { LoadConfig, LoadResult, ServerReady } from "./stun-server/protocol.js"

const here = (file: string) => Path.join(root, "bench", "stun-server", file)

const envNumber = (name: string, fallback: number): number => {
  const value = Number(process.env[name])
  return Number.isFinite(value) && value > 0 ? value : fallback
}
const rounds = Math.floor(envNumber("BENCH_ROUNDS", 3))
const warmupMs = envNumber("BENCH_WARMUP_MS", 2000)
const measureMs = envNumber("BENCH_MEASURE_MS", 3000)
const window = Math.floor(envNumber("BENCH_WINDOW", 128))
const coturnThreads = process.env.BENCH_COTURN_THREADS !== undefined
  ? Math.max(0, Math.floor(Number(process.env.BENCH_COTURN_THREADS)))
  : 1
const timeoutMs = 500
/** A window during which other programs used more than this (in cores) is measured again, at most `maxRetries`. */
const busyThreshold = 0.25
const maxRetries = 2
const readyTimeoutMs = 15_000

type ServerName = "effect-ice" | "effect-ice-nocache" | "echo" | "stun" | "coturn"
const defaultServers: ReadonlyArray<ServerName> = ["effect-ice", "echo", "stun", "coturn"]
/** Not run by default: effect-ice with the retransmission cache off (`maxCacheEntries: 0`), to see what it costs. */
const extraServers: ReadonlyArray<ServerName> = ["effect-ice-nocache"]
const selected = (process.env.BENCH_SERVERS ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
const servers = selected.length === 0
  ? defaultServers
  : [...defaultServers, ...extraServers].filter((name) => selected.includes(name))

// ---------------------------------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------------------------------

const node = (file: string, args: ReadonlyArray<string>): Started =>
  start(process.execPath, ["--import", "tsx", here(file), ...args])

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Waits (bounded) for the first line of a Node server child, `{"port":N}`. */
const readyLine = async (server: Started, name: string): Promise<number> => {
  const deadline = Date.now() + readyTimeoutMs
  while (Date.now() < deadline) {
    const newline = server.stdout().indexOf("\n")
    if (newline >= 0) return (JSON.parse(server.stdout().slice(0, newline)) as ServerReady).port
    if (!isRunning(server.child)) break
    await sleep(20)
  }
  throw new Error(`${name} did not start within ${readyTimeoutMs} ms\nstderr: ${server.stderr().slice(-2000)}`)
}

/** Sends Binding requests every 50 ms until one is answered (any answer with its transaction id), bounded. */
const probe = (host: string, port: number, isAlive: () => boolean): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = Dgram.createSocket({ type: "udp4" })
    const request = Buffer.alloc(20)
    request.writeUInt16BE(0x0001, 0)
    request.writeUInt32BE(0x2112a442, 4)
    randomBytes(12).copy(request, 8)
    let done = false
    const finish = (ok: boolean) => {
      if (done) return
      done = true
      clearInterval(timer)
      clearTimeout(deadline)
      socket.close()
      resolve(ok)
    }
    socket.on("message", (data) => {
      if (data.length >= 20 && data.subarray(8, 20).equals(request.subarray(8, 20))) finish(true)
    })
    socket.on("error", () => {}) // ICMP port unreachable while the server is not bound yet
    const timer = setInterval(() => {
      if (!isAlive()) return finish(false)
      socket.send(request, port, host)
    }, 50)
    const deadline = setTimeout(() => finish(false), readyTimeoutMs)
  })

// ---------------------------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------------------------

interface RunningServer {
  readonly pid: number
  readonly port: number
  readonly stop: () => Promise<void>
  /** What went wrong, for error messages. */
  readonly diagnostics: () => string
}

const startNodeServer = async (
  file: string,
  name: string,
  args: ReadonlyArray<string>,
  ip: string
): Promise<RunningServer> => {
  const server = node(file, args)
  try {
    const port = await readyLine(server, name)
    if (!(await probe(ip, port, () => isRunning(server.child)))) throw new Error(`${name} does not answer`)
    return { pid: server.child.pid!, port, stop: () => stop(server.child), diagnostics: server.stderr }
  } catch (error) {
    await stop(server.child)
    throw error
  }
}

/** The coturn command line used for the measured runs (without the per-run ports and paths). */
const coturnFlags = [
  "-n",
  "--no-tcp",
  "--no-tls",
  "--no-dtls",
  "--no-cli",
  "--stun-only",
  "--no-rfc5780",
  `--relay-threads=${coturnThreads}`,
  "--simple-log",
  "--no-stdout-log"
]

const startCoturn = async (ip: string): Promise<RunningServer> => {
  for (let attempt = 1;; attempt++) {
    const port = await freeUdpTcpPort(ip)
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ice-bench-coturn-"))
    const logFile = Path.join(dir, "coturn.log")
    const server = start(coturnBinary("turnserver"), [
      ...coturnFlags,
      `--listening-ip=${ip}`,
      `--listening-port=${port}`,
      `--log-file=${logFile}`,
      `--pidfile=${Path.join(dir, "coturn.pid")}`,
      `--userdb=${Path.join(dir, "turndb")}`
    ])
    const readLog = () => {
      try {
        return Fs.readFileSync(logFile, "utf8")
      } catch {
        return ""
      }
    }
    const cleanup = async () => {
      await stop(server.child)
      Fs.rmSync(dir, { recursive: true, force: true })
    }
    const ok = await probe(ip, port, () => isRunning(server.child) && !/Cannot bind/.test(readLog()))
    if (ok) {
      return {
        pid: server.child.pid!,
        port,
        stop: cleanup,
        diagnostics: () => `${server.stderr()}\n${readLog().slice(-2000)}`
      }
    }
    const log = readLog()
    await cleanup()
    if (!/Cannot bind/.test(log) || attempt === 3) {
      throw new Error(`coturn did not answer within ${readyTimeoutMs} ms\nlog:\n${log.slice(-2000)}`)
    }
  }
}

const startServer = (name: ServerName, ip: string): Promise<RunningServer> => {
  switch (name) {
    case "effect-ice":
      return startNodeServer("effect-ice-server.ts", name, [ip], ip)
    case "effect-ice-nocache":
      return startNodeServer("effect-ice-server.ts", name, [ip, "--no-cache"], ip)
    case "echo":
      return startNodeServer("echo-server.ts", name, [ip], ip)
    case "stun":
      return startNodeServer("stun-package-server.ts", name, [ip], ip)
    case "coturn":
      return startCoturn(ip)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One measurement
// ---------------------------------------------------------------------------------------------------------------

interface Sample {
  readonly answersPerSec: number
  readonly cpuUsPerAnswer: number
  readonly serverCpu: number
  readonly generatorCpu: number
  /** CPU used by everything else on the machine during the window, in cores. */
  readonly otherCpu: number
  readonly result: LoadResult
}

const clockTicks = (() => {
  const printed = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5_000 })
  const value = Number((printed.stdout ?? "").trim())
  return Number.isFinite(value) && value > 0 ? value : 100
})()

const measureOnce = async (name: ServerName, serverIp: string, generatorIp: string): Promise<Sample> => {
  const server = await startServer(name, serverIp)
  try {
    const config: LoadConfig = {
      host: serverIp,
      port: server.port,
      localAddress: generatorIp,
      serverPid: server.pid,
      expect: name === "echo" ? "echo" : "stun",
      window,
      warmupMs,
      measureMs,
      timeoutMs
    }
    const generator = node("load-generator.ts", [JSON.stringify(config)])
    const finished = await exited(generator.child, warmupMs + measureMs + 20_000)
    if (!finished) {
      await stop(generator.child)
      throw new Error(`the load generator did not finish (${name})`)
    }
    children.delete(generator.child)
    if (generator.child.exitCode !== 0) {
      throw new Error(`the load generator failed (${name}): ${generator.stderr().slice(-2000)}`)
    }
    const result = JSON.parse(generator.stdout().trim()) as LoadResult
    if (result.answers === 0) throw new Error(`${name} answered nothing\n${server.diagnostics()}`)
    const seconds = result.elapsedNs / 1e9
    const serverSeconds = result.serverTicks / clockTicks
    const generatorSeconds = result.generatorCpuUs / 1e6
    return {
      answersPerSec: result.answers / seconds,
      cpuUsPerAnswer: (serverSeconds * 1e6) / result.answers,
      serverCpu: serverSeconds / seconds,
      generatorCpu: generatorSeconds / seconds,
      otherCpu: Math.max(0, result.machineBusyTicks / clockTicks - serverSeconds - generatorSeconds) / seconds,
      result
    }
  } finally {
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------------------------

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const ratio = (x: number): string => `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}x`
const int = (x: number): string => Math.round(x).toLocaleString("en-US")
const percent = (x: number): string => `${Math.round(x * 100)}%`

const render = (rows: ReadonlyArray<ReadonlyArray<string>>): void => {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  const line = (row: ReadonlyArray<string>) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join("  ")
  console.log(line(rows[0]!))
  console.log(widths.map((width) => "-".repeat(width)).join("  "))
  for (const row of rows.slice(1)) console.log(line(row))
}

const main = async () => {
  const coturn = peerAvailability().peers.coturn
  const names = servers.filter((name) => name !== "coturn" || coturn.available)
  const [serverIp, generatorIp] = await pickLoopbackAddresses(2)
  console.log(`STUN server load benchmark: Binding requests over UDP on loopback (${serverIp} <- ${generatorIp}).`)
  console.log(
    `${Os.cpus().length} CPUs (${Os.cpus()[0]?.model.trim() ?? "unknown"}), Node ${process.version}; the load ` +
      `generator and the server run in separate processes and take about one core each.`
  )
  console.log(
    `Load: ${window} requests in flight (closed loop, bare 20-byte Binding requests, distinct transaction ids), ` +
      `${warmupMs} ms warm-up then ${measureMs} ms measured, ${rounds} round(s), median reported.`
  )
  if (!coturn.available) console.log(`coturn skipped: ${coturn.reason ?? "not available"}`)
  else if (names.includes("coturn")) console.log(`coturn ${coturn.version ?? ""}: turnserver ${coturnFlags.join(" ")}`)
  console.log("")

  const samples = new Map<ServerName, Array<Sample>>(names.map((name) => [name, []]))
  for (let round = 1; round <= rounds; round++) {
    for (const name of names) {
      let sample = await measureOnce(name, serverIp!, generatorIp!)
      // Other programs took CPU during the window: measure again (at most twice) before settling for it.
      for (let retry = 0; retry < maxRetries && sample.otherCpu > busyThreshold; retry++) {
        console.log(
          `round ${round} ${name.padEnd(10)} disturbed (other CPU ${percent(sample.otherCpu)}), measuring again`
        )
        await sleep(1_000)
        sample = await measureOnce(name, serverIp!, generatorIp!)
      }
      samples.get(name)!.push(sample)
      const r = sample.result
      console.log(
        `round ${round} ${name.padEnd(10)} ${int(sample.answersPerSec).padStart(9)} answers/s  ` +
          `${sample.cpuUsPerAnswer.toFixed(2).padStart(6)} µs CPU/answer  server CPU ${percent(sample.serverCpu)}  ` +
          `generator CPU ${percent(sample.generatorCpu)}  other CPU ${percent(sample.otherCpu)}  lost ${r.lost}  ` +
          `stale ${r.stale}  invalid ${r.invalid}`
      )
    }
  }
  console.log("")

  const summary = new Map(
    names.map((name) => {
      const list = samples.get(name)!
      return [name, {
        answersPerSec: median(list.map((s) => s.answersPerSec)),
        cpuUsPerAnswer: median(list.map((s) => s.cpuUsPerAnswer)),
        serverCpu: median(list.map((s) => s.serverCpu)),
        generatorCpu: median(list.map((s) => s.generatorCpu)),
        otherCpu: median(list.map((s) => s.otherCpu)),
        lost: list.reduce((n, s) => n + s.result.lost, 0),
        invalid: list.reduce((n, s) => n + s.result.invalid, 0),
        first: list[0]!.result.firstAnswer
      }]
    })
  )
  const ours = summary.get("effect-ice")
  const rows: Array<Array<string>> = [[
    "server",
    "answers/s",
    "ours/theirs",
    "CPU µs/answer",
    "ours/theirs",
    "server CPU",
    "generator CPU",
    "other CPU",
    "lost",
    "answer bytes"
  ]]
  for (const name of names) {
    const s = summary.get(name)!
    const peer = name !== "effect-ice" && ours !== undefined
    rows.push([
      name,
      int(s.answersPerSec),
      peer ? ratio(ours.answersPerSec / s.answersPerSec) : "",
      s.cpuUsPerAnswer.toFixed(2),
      peer ? ratio(ours.cpuUsPerAnswer / s.cpuUsPerAnswer) : "",
      percent(s.serverCpu),
      percent(s.generatorCpu),
      percent(s.otherCpu),
      String(s.lost),
      name === "echo" ? "20 (echo)" : String(s.first?.size ?? "-")
    ])
  }
  render(rows)
  console.log(
    "ours/theirs: effect-ice's figure divided by the peer's (answers/s: above 1 means effect-ice answers more; " +
      "CPU µs/answer: below 1 means effect-ice spends less)."
  )
  console.log(
    "CPU = utime + stime of the server process (all threads) over the measured window, from /proc/<pid>/stat; " +
      "100% = one core. Other CPU: the rest of the machine's busy time (/proc/stat) in the window; when it is " +
      "high, the figures are disturbed."
  )
  for (const name of names) {
    const first = summary.get(name)!.first
    if (first === undefined) continue
    const mapped = first.xorMappedOk === true ? "XOR-MAPPED-ADDRESS checked" : "XOR-MAPPED-ADDRESS WRONG OR MISSING"
    console.log(`  ${name} answer attributes: ${first.attributes.join(" ")} (${mapped})`)
  }
  console.log("")

  const busy = names.filter((name) => summary.get(name)!.otherCpu > busyThreshold)
  if (busy.length > 0) {
    console.log(
      `WARNING: other programs used more than a quarter of a core while ${busy.join(", ")} ran: those figures ` +
        "(answers/s above all) are disturbed; run again on a quiet machine."
    )
  }
  const echo = summary.get("echo")
  const stun = summary.get("stun")
  if (ours !== undefined && echo !== undefined) {
    const r = ours.cpuUsPerAnswer / echo.cpuUsPerAnswer
    console.log(`target: CPU per answer <= 1.25x the echo's: ${ratio(r)}, ${r <= 1.25 ? "met" : "NOT met"}`)
  }
  if (ours !== undefined && stun !== undefined) {
    const r = ours.answersPerSec / stun.answersPerSec
    console.log(`target: throughput >= 2.8x stun's: ${ratio(r)}, ${r >= 2.8 ? "met" : "NOT met"}`)
  }
}

main().then(
  () => process.exit(0),
  async (error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error))
    await Promise.all([...children].map(stop))
    process.exit(1)
  }
)
