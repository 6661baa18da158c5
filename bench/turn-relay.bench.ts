/**
 * TURN relay benchmark: relayed messages per second and server CPU time per relayed message, on loopback, for
 * effect-ice's `TurnServer`, coturn and the npm `node-turn` server, with a plain `node:dgram` forwarder as Node's
 * ceiling, all driven by the same load generator in the same run; then the memory each server holds per idle
 * allocation, at 10,000 allocations.
 *
 * Targets (from the issue): effect-ice's server CPU per relayed ChannelData message ≤ 1.25× the forwarder's;
 * its Send/Data throughput ≥ 5× node-turn's; memory per idle allocation ≤ 8 KB at 10,000 allocations.
 *
 * Scenarios:
 * - `channel`: one allocation with a channel bound to the peer; ChannelData from the client is relayed to the peer,
 *   which sends each datagram straight back to the relayed address, so the server relays it again to the client as
 *   ChannelData. Both legs count as relayed messages (client → peer and peer → client are different code paths).
 * - `send`: the same with a permission and no channel: Send indications from the client, Data indications back.
 * - The forwarder (`turn-relay/forwarder.ts`) relays raw datagrams between its two sockets the same way, with no
 *   TURN: it is measured once per round and shown in both tables.
 * - `memory`: a fresh server, 10,000 allocations from 10,000 client sockets (`turn-relay/allocator.ts`), the
 *   server's VmRSS before and after (after a settling pause); (after − before) / allocations made. The Node servers
 *   run with `--expose-gc` and collect on SIGUSR2, which the allocator sends before each reading, so the figure is
 *   live memory (coturn, in C, has nothing to collect).
 *
 * How (the same method as `stun-server.bench.ts`):
 * - Each server runs in its own process, so its CPU time is its own: utime + stime of `/proc/<pid>/stat` (every
 *   thread, so coturn's threads are all counted), read by the load generator at the start and the end of the
 *   measured window. The Node servers run with `node --import tsx` (the loader only costs at start-up).
 * - The load generator (`turn-relay/load-generator.ts`, plain `node:dgram`, nothing from `src/`) holds the client
 *   and the peer sockets; it keeps `window` round trips in flight (closed loop, no retransmission: a round trip not
 *   completed within `timeoutMs` is lost and its slot starts a new one), warms up, then counts the relayed messages
 *   received by the peer and by the client during the measured window.
 * - Each round starts every server afresh for each scenario, in turn; the median of the rounds is reported. A
 *   window in which other programs took more than a quarter of a core is measured again (`BENCH_RETRIES` times),
 *   and the report warns when the medians are still disturbed.
 * - Everything is on a random `127.A.B.0/24` block (`pickLoopbackAddresses`: server, client and peer IPs), ports
 *   are port 0 or found free at run time, and every child is killed by its PID at the end, on error and on
 *   SIGINT/SIGTERM.
 *
 * Environment (all optional): `BENCH_ROUNDS` (default 1), `BENCH_WARMUP_MS` (1000), `BENCH_MEASURE_MS` (3000),
 * `BENCH_WINDOW` (round trips in flight, 64), `BENCH_PAYLOAD` (bytes per message, 160), `BENCH_ALLOCATIONS`
 * (10000), `BENCH_RETRIES` (1), `BENCH_COTURN_THREADS` (coturn's `--relay-threads`, default 1),
 * `BENCH_SERVERS` (a comma-separated subset of effect-ice,forwarder,coturn,node-turn), `BENCH_SCENARIOS` (a subset
 * of channel,send,memory).
 *
 * Run: `npm run bench` (or `npx tsx bench/turn-relay.bench.ts`).
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import { coturnBinary, freeUdpTcpPort, peerAvailability, pickLoopbackAddresses } from "../test/interop/peers.js"
import type { Started } from "./processes.js"
import { children, exited, isRunning, root, start, stop } from "./processes.js"
import type {
  AllocatorConfig,
  AllocatorResult,
  LoadConfig,
  LoadResult,
  Mode,
  ServerReady
} from "./turn-relay/protocol.js"
import { credentials } from "./turn-relay/protocol.js"

const here = (file: string) => Path.join(root, "bench", "turn-relay", file)

const envNumber = (name: string, fallback: number): number => {
  const value = Number(process.env[name])
  return Number.isFinite(value) && value > 0 ? value : fallback
}
const envList = <A extends string>(name: string, all: ReadonlyArray<A>): ReadonlyArray<A> => {
  const selected = (process.env[name] ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
  return selected.length === 0 ? all : all.filter((item) => selected.includes(item))
}
const rounds = Math.floor(envNumber("BENCH_ROUNDS", 1))
const warmupMs = envNumber("BENCH_WARMUP_MS", 1000)
const measureMs = envNumber("BENCH_MEASURE_MS", 3000)
const window = Math.floor(envNumber("BENCH_WINDOW", 64))
const payloadSize = Math.max(16, Math.floor(envNumber("BENCH_PAYLOAD", 160)))
const allocations = Math.floor(envNumber("BENCH_ALLOCATIONS", 10_000))
const retries = process.env.BENCH_RETRIES !== undefined ? Math.max(0, Math.floor(Number(process.env.BENCH_RETRIES))) : 1
const coturnThreads = process.env.BENCH_COTURN_THREADS !== undefined
  ? Math.max(0, Math.floor(Number(process.env.BENCH_COTURN_THREADS)))
  : 1
const timeoutMs = 500
/** A window during which other programs used more than this (in cores) is measured again. */
const busyThreshold = 0.25
/** A generator busier than this (in cores) may be what limits the throughput, not the server. */
const generatorBound = 0.9
const readyTimeoutMs = 15_000
/** Relay ports for coturn and node-turn: the kernel's default ephemeral range, which effect-ice's relays get. */
const relayPorts = [32768, 60999] as const

type ServerName = "effect-ice" | "forwarder" | "coturn" | "node-turn"
type TurnServerName = Exclude<ServerName, "forwarder">
type Scenario = "channel" | "send" | "memory"
const servers = envList<ServerName>("BENCH_SERVERS", ["effect-ice", "forwarder", "coturn", "node-turn"])
const scenarios = envList<Scenario>("BENCH_SCENARIOS", ["channel", "send", "memory"])

// ---------------------------------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------------------------------

const node = (file: string, args: ReadonlyArray<string>): Started =>
  start(process.execPath, ["--expose-gc", "--import", "tsx", here(file), ...args])

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Waits (bounded) for the first line of a Node server child (`ServerReady`). */
const readyLine = async (server: Started, name: string): Promise<ServerReady> => {
  const deadline = Date.now() + readyTimeoutMs
  while (Date.now() < deadline) {
    const newline = server.stdout().indexOf("\n")
    if (newline >= 0) return JSON.parse(server.stdout().slice(0, newline)) as ServerReady
    if (!isRunning(server.child)) break
    await sleep(20)
  }
  throw new Error(`${name} did not start within ${readyTimeoutMs} ms\nstderr: ${server.stderr().slice(-2000)}`)
}

/**
 * Sends Binding requests every 50 ms until one is answered (any answer with its transaction id), bounded. The
 * request carries a 44-byte SOFTWARE attribute: effect-ice never answers with more bytes than it got.
 */
const probe = (host: string, port: number, isAlive: () => boolean): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = Dgram.createSocket({ type: "udp4" })
    const request = Buffer.alloc(20 + 4 + 44)
    request.writeUInt16BE(0x0001, 0)
    request.writeUInt16BE(48, 2)
    request.writeUInt32BE(0x2112a442, 4)
    randomBytes(12).copy(request, 8)
    request.writeUInt16BE(0x8022, 20)
    request.writeUInt16BE(44, 22)
    request.write("effect-ice turn-relay benchmark readiness ..", 24, "latin1")
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
  readonly relayPort?: number | undefined
  readonly stop: () => Promise<void>
  /** What went wrong, for error messages. */
  readonly diagnostics: () => string
}

const startNodeServer = async (
  file: string,
  name: string,
  args: ReadonlyArray<string>,
  ip: string,
  probed: boolean
): Promise<RunningServer> => {
  const server = node(file, args)
  try {
    const ready = await readyLine(server, name)
    if (probed && !(await probe(ip, ready.port, () => isRunning(server.child)))) {
      throw new Error(`${name} does not answer\nstderr: ${server.stderr().slice(-2000)}`)
    }
    return {
      pid: server.child.pid!,
      port: ready.port,
      relayPort: ready.relayPort,
      stop: () => stop(server.child),
      diagnostics: server.stderr
    }
  } catch (error) {
    await stop(server.child)
    throw error
  }
}

/** node-turn binds the port it is given: one found free at run time, another one if it was taken meanwhile. */
const startNodeTurn = async (ip: string): Promise<RunningServer> => {
  for (let attempt = 1;; attempt++) {
    const port = await freeUdpTcpPort(ip)
    try {
      return await startNodeServer("node-turn-server.ts", "node-turn", [ip, String(port)], ip, true)
    } catch (error) {
      if (attempt === 3) throw error
    }
  }
}

/** The coturn command line (without the per-run addresses, ports and paths). */
const coturnFlags = [
  "-n",
  "--no-tcp",
  "--no-tls",
  "--no-dtls",
  "--no-cli",
  "--no-rfc5780",
  "--lt-cred-mech",
  `--user=${credentials.username}:${credentials.password}`,
  `--realm=${credentials.realm}`,
  "--allow-loopback-peers",
  "--user-quota=0",
  "--total-quota=0",
  `--min-port=${relayPorts[0]}`,
  `--max-port=${relayPorts[1]}`,
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
      `--relay-ip=${ip}`,
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
      return startNodeServer("effect-ice-server.ts", name, [ip], ip, true)
    case "forwarder":
      return startNodeServer("forwarder.ts", name, [ip], ip, false)
    case "node-turn":
      return startNodeTurn(ip)
    case "coturn":
      return startCoturn(ip)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------------------------

interface Addresses {
  readonly server: string
  readonly client: string
  readonly peer: string
}

interface Sample {
  readonly relayedPerSec: number
  /** NaN when nothing was relayed. */
  readonly cpuUsPerMessage: number
  readonly serverCpu: number
  readonly generatorCpu: number
  /** CPU used by everything else on the machine during the window, in cores. */
  readonly otherCpu: number
  /** Round trips lost ÷ messages the client sent. */
  readonly loss: number
  readonly result: LoadResult
}

const clockTicks = (() => {
  const printed = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5_000 })
  const value = Number((printed.stdout ?? "").trim())
  return Number.isFinite(value) && value > 0 ? value : 100
})()

/** Runs a generator child to completion (bounded) and parses its JSON line. */
const runChild = async <A>(file: string, config: unknown, limitMs: number, what: string): Promise<A> => {
  const child = node(file, [JSON.stringify(config)])
  const finished = await exited(child.child, limitMs)
  if (!finished) {
    await stop(child.child)
    throw new Error(`${what}: ${file} did not finish within ${limitMs} ms\nstderr: ${child.stderr().slice(-2000)}`)
  }
  children.delete(child.child)
  if (child.child.exitCode !== 0) throw new Error(`${what}: ${child.stderr().slice(-2000).trim()}`)
  return JSON.parse(child.stdout().trim()) as A
}

const measureOnce = async (name: ServerName, mode: Mode, at: Addresses): Promise<Sample> => {
  const server = await startServer(name, at.server)
  try {
    const config: LoadConfig = {
      mode,
      host: at.server,
      port: server.port,
      relayPort: server.relayPort,
      clientAddress: at.client,
      peerAddress: at.peer,
      serverPid: server.pid,
      window,
      payloadSize,
      warmupMs,
      measureMs,
      timeoutMs
    }
    let result: LoadResult
    try {
      result = await runChild<LoadResult>(
        "load-generator.ts",
        config,
        warmupMs + measureMs + 30_000,
        `${name} (${mode})`
      )
    } catch (error) {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n${server.diagnostics()}`)
    }
    const seconds = result.elapsedNs / 1e9
    const relayed = result.peerReceived + result.clientReceived
    const serverSeconds = result.serverTicks / clockTicks
    const generatorSeconds = result.generatorCpuUs / 1e6
    return {
      relayedPerSec: relayed / seconds,
      cpuUsPerMessage: relayed === 0 ? NaN : (serverSeconds * 1e6) / relayed,
      serverCpu: serverSeconds / seconds,
      generatorCpu: generatorSeconds / seconds,
      otherCpu: Math.max(0, result.machineBusyTicks / clockTicks - serverSeconds - generatorSeconds) / seconds,
      loss: result.clientSent === 0 ? 0 : result.lost / result.clientSent,
      result
    }
  } finally {
    await server.stop()
  }
}

const measureMemory = async (name: TurnServerName, at: Addresses): Promise<AllocatorResult> => {
  const server = await startServer(name, at.server)
  try {
    await sleep(1_000) // let start-up settle before the first RSS reading
    const config: AllocatorConfig = {
      host: at.server,
      port: server.port,
      clientAddress: at.client,
      serverPid: server.pid,
      count: allocations,
      concurrency: 128,
      timeoutMs: 1_000,
      attempts: 5,
      settleMs: 2_000,
      collectGarbage: name !== "coturn"
    }
    try {
      return await runChild<AllocatorResult>("allocator.ts", config, 120_000, `${name} (memory)`)
    } catch (error) {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n${server.diagnostics()}`)
    }
  } finally {
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------------------------

const median = (values: ReadonlyArray<number>): number => {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const ratio = (x: number): string =>
  Number.isNaN(x) ? "-" : !Number.isFinite(x) ? "inf" : `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}x`
const int = (x: number): string => Math.round(x).toLocaleString("en-US")
const percent = (x: number): string => `${Math.round(x * 100)}%`
const fixed = (x: number, digits: number): string => Number.isNaN(x) ? "-" : x.toFixed(digits)

const render = (rows: ReadonlyArray<ReadonlyArray<string>>): void => {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  const line = (row: ReadonlyArray<string>) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join("  ")
  console.log(line(rows[0]!))
  console.log(widths.map((width) => "-".repeat(width)).join("  "))
  for (const row of rows.slice(1)) console.log(line(row))
}

interface Summary {
  readonly relayedPerSec: number
  readonly cpuUsPerMessage: number
  readonly serverCpu: number
  readonly generatorCpu: number
  readonly otherCpu: number
  readonly loss: number
  readonly first: LoadResult
}

const summarize = (list: ReadonlyArray<Sample>): Summary => ({
  relayedPerSec: median(list.map((s) => s.relayedPerSec)),
  cpuUsPerMessage: median(list.map((s) => s.cpuUsPerMessage)),
  serverCpu: median(list.map((s) => s.serverCpu)),
  generatorCpu: median(list.map((s) => s.generatorCpu)),
  otherCpu: median(list.map((s) => s.otherCpu)),
  loss: median(list.map((s) => s.loss)),
  first: list[0]!.result
})

const labels: Record<ServerName, string> = {
  "effect-ice": "effect-ice",
  forwarder: "dgram forwarder",
  coturn: "coturn",
  "node-turn": "node-turn"
}

const throughputTable = (title: string, rows: ReadonlyArray<readonly [ServerName, Summary]>): void => {
  console.log(title)
  const ours = rows.find(([name]) => name === "effect-ice")?.[1]
  const table: Array<Array<string>> = [[
    "server",
    "relayed msg/s",
    "ours/theirs",
    "CPU µs/msg",
    "ours/theirs",
    "server CPU",
    "generator CPU",
    "other CPU",
    "loss",
    "bytes out/in"
  ]]
  for (const [name, s] of rows) {
    const peer = name !== "effect-ice" && ours !== undefined
    table.push([
      labels[name],
      `${int(s.relayedPerSec)}${s.generatorCpu >= generatorBound ? "*" : ""}`,
      peer ? ratio(ours.relayedPerSec / s.relayedPerSec) : "",
      fixed(s.cpuUsPerMessage, 2),
      peer ? ratio(ours.cpuUsPerMessage / s.cpuUsPerMessage) : "",
      percent(s.serverCpu),
      percent(s.generatorCpu),
      percent(s.otherCpu),
      `${(s.loss * 100).toFixed(1)}%`,
      `${s.first.sentSize}/${s.first.receivedSize === 0 ? "-" : s.first.receivedSize}`
    ])
  }
  render(table)
  if (rows.some(([, s]) => s.generatorCpu >= generatorBound)) {
    console.log(
      `  * the load generator used ${percent(generatorBound)} of a core or more: that server may relay more than ` +
        "shown (a lower bound); its CPU µs/msg still holds."
    )
  }
  for (const [name, s] of rows) {
    if (s.relayedPerSec === 0) {
      console.log(
        `  ${labels[name]} relayed nothing: ${
          int(s.first.clientSent)
        } messages sent, ${s.first.peerReceived} reached ` +
          `the peer (server CPU ${percent(s.serverCpu)} all the same).` +
          (name === "node-turn"
            ? " node-turn 0.0.6 parses every datagram from a client as STUN (lib/network.js -> Message.read), " +
              "which returns false unless the first two bits are 00: ChannelData (0x4000-0x7FFF) never reaches " +
              "its relay."
            : "")
      )
    }
  }
  console.log("")
}

/** Why node-turn cannot run (undefined when it can). */
const nodeTurnAvailable = (): string | undefined => {
  try {
    createRequire(import.meta.url).resolve("node-turn")
    return undefined
  } catch {
    return "the npm package node-turn is not installed (npm install: it is a devDependency)"
  }
}

const main = async () => {
  const coturn = peerAvailability().peers.coturn
  const nodeTurn = nodeTurnAvailable()
  const names = servers.filter((name) =>
    (name !== "coturn" || coturn.available) && (name !== "node-turn" || nodeTurn === undefined)
  )
  const turnNames = names.filter((name): name is TurnServerName => name !== "forwarder")
  const [serverIp, clientIp, peerIp] = await pickLoopbackAddresses(3)
  const at: Addresses = { server: serverIp!, client: clientIp!, peer: peerIp! }
  console.log(
    `TURN relay benchmark: UDP on loopback (server ${at.server}, client ${at.client}, peer ${at.peer}).`
  )
  console.log(
    `${Os.cpus().length} CPUs (${Os.cpus()[0]?.model.trim() ?? "unknown"}), Node ${process.version}; the load ` +
      `generator (client and peer sockets) and the server run in separate processes.`
  )
  console.log(
    `Load: ${window} round trips in flight (client -> server -> peer -> server -> client, closed loop), ` +
      `${payloadSize}-byte payloads, ${warmupMs} ms warm-up then ${measureMs} ms measured, ${rounds} round(s), ` +
      `median reported. Memory: ${int(allocations)} idle allocations from as many client sockets.`
  )
  if (!coturn.available) console.log(`coturn skipped: ${coturn.reason ?? "not available"}`)
  else if (names.includes("coturn")) {
    console.log(`coturn ${coturn.version ?? ""}: turnserver ${coturnFlags.join(" ")}`)
  }
  if (nodeTurn !== undefined) console.log(`node-turn skipped: ${nodeTurn}`)
  else if (names.includes("node-turn")) {
    console.log("node-turn 0.0.6: long-term credentials, relay ports 32768-60999, log level FATAL")
  }
  console.log("")

  const throughput = scenarios.filter((s): s is "channel" | "send" => s !== "memory")
  /** Samples by `server|mode`. */
  const samples = new Map<string, Array<Sample>>()
  const runs: Array<readonly [ServerName, Mode]> = []
  for (const scenario of throughput) {
    for (const name of names) {
      if (name === "forwarder") {
        if (!runs.some(([n]) => n === "forwarder")) runs.push([name, "forward"])
      } else runs.push([name, scenario])
    }
  }
  for (let round = 1; round <= rounds; round++) {
    for (const [name, mode] of runs) {
      let sample = await measureOnce(name, mode, at)
      // Other programs took CPU during the window: measure again before settling for it.
      for (let retry = 0; retry < retries && sample.otherCpu > busyThreshold && sample.relayedPerSec > 0; retry++) {
        console.log(
          `round ${round} ${labels[name].padEnd(15)} ${mode.padEnd(7)} disturbed (other CPU ` +
            `${percent(sample.otherCpu)}), measuring again`
        )
        await sleep(500)
        sample = await measureOnce(name, mode, at)
      }
      const key = `${name}|${mode}`
      samples.set(key, [...(samples.get(key) ?? []), sample])
      const r = sample.result
      console.log(
        `round ${round} ${labels[name].padEnd(15)} ${mode.padEnd(7)} ${int(sample.relayedPerSec).padStart(9)} ` +
          `msg/s  ${fixed(sample.cpuUsPerMessage, 2).padStart(6)} µs CPU/msg  server CPU ` +
          `${percent(sample.serverCpu)}  generator CPU ${percent(sample.generatorCpu)}  other CPU ` +
          `${percent(sample.otherCpu)}  sent ${r.clientSent}  to peer ${r.peerReceived}  to client ` +
          `${r.clientReceived}  lost ${r.lost}  stale ${r.stale}  invalid ${r.invalid}`
      )
    }
  }

  const memory = new Map<TurnServerName, AllocatorResult>()
  if (scenarios.includes("memory")) {
    for (const name of turnNames) {
      const result = await measureMemory(name, at)
      memory.set(name, result)
      const failed = Object.entries(result.failures).map(([reason, n]) => `${reason}: ${n}`).join(", ")
      console.log(
        `memory ${labels[name].padEnd(15)} ${int(result.allocated)} allocations in ${
          (result.elapsedMs / 1000).toFixed(1)
        } s  RSS ${int(result.rssBeforeKb)} -> ${int(result.rssAfterKb)} kB (peak ${int(result.rssPeakKb)})  ` +
          `requests sent ${int(result.transmissions)}  challenges ${int(result.challenges)}` +
          (failed === "" ? "" : `  failed: ${failed}`) + (result.gaveUp ? "  (gave up)" : "")
      )
    }
  }
  console.log("")

  const summaries = new Map<string, Summary>()
  for (const [key, list] of samples) summaries.set(key, summarize(list))
  const forwarder = summaries.get("forwarder|forward")
  for (const scenario of throughput) {
    const rows: Array<readonly [ServerName, Summary]> = []
    for (const name of names) {
      const s = summaries.get(name === "forwarder" ? "forwarder|forward" : `${name}|${scenario}`)
      if (s !== undefined) rows.push([name, s])
    }
    throughputTable(
      scenario === "channel"
        ? "ChannelData (channel bound; ChannelData both ways; the forwarder relays raw datagrams):"
        : "Send/Data (permission, no channel; Send indications out, Data indications back; forwarder: raw):",
      rows
    )
  }
  if (throughput.length > 0) {
    console.log(
      "relayed msg/s: messages the server relayed (client -> peer plus peer -> client) per second. CPU µs/msg: " +
        "utime + stime of the server process (all threads, /proc/<pid>/stat) over the measured window, divided by " +
        "the messages relayed. ours/theirs: effect-ice's figure divided by the peer's (msg/s: above 1 means " +
        "effect-ice relays more; CPU µs/msg: below 1 means effect-ice spends less). 100% CPU = one core. Other " +
        "CPU: the rest of the machine's busy time (/proc/stat) in the window; when it is high, the figures are " +
        "disturbed. loss: round trips that timed out (500 ms) / messages sent."
    )
    console.log("")
  }

  if (memory.size > 0) {
    console.log(`Memory per idle allocation (${int(allocations)} allocations, each from its own client socket):`)
    if (names.includes("forwarder")) console.log("  (the dgram forwarder is not a TURN server: it has no allocations)")
    const perAllocation = (r: AllocatorResult) => r.allocated === 0 ? NaN : (r.rssAfterKb - r.rssBeforeKb) / r.allocated
    const ours = memory.get("effect-ice")
    const table: Array<Array<string>> = [[
      "server",
      "allocations",
      "failed",
      "time s",
      "RSS before MB",
      "RSS after MB",
      "KB/allocation",
      "ours/theirs"
    ]]
    for (const [name, r] of memory) {
      const failed = Object.values(r.failures).reduce((a, b) => a + b, 0)
      table.push([
        labels[name],
        int(r.allocated),
        failed === 0 ? "0" : `${int(failed)}${r.gaveUp ? " (gave up)" : ""}`,
        (r.elapsedMs / 1000).toFixed(1),
        (r.rssBeforeKb / 1024).toFixed(1),
        (r.rssAfterKb / 1024).toFixed(1),
        fixed(perAllocation(r), 2),
        name !== "effect-ice" && ours !== undefined ? ratio(perAllocation(ours) / perAllocation(r)) : ""
      ])
    }
    render(table)
    console.log(
      "KB/allocation: (VmRSS 2 s after the last allocation - VmRSS before the first, each read after a full GC in " +
        "the Node servers) / allocations made, in the " +
        "kB of /proc/<pid>/status (1024 bytes). Kernel socket memory is not in VmRSS. ours/theirs below 1 means " +
        "effect-ice holds less."
    )
    for (const [name, r] of memory) {
      if (r.allocated < allocations) {
        console.log(`  ${labels[name]} made only ${int(r.allocated)} of ${int(allocations)} allocations.`)
      }
    }
    console.log("")
  }

  const busy = [...summaries].filter(([, s]) => s.otherCpu > busyThreshold).map(([key]) => key.replace("|", " "))
  if (busy.length > 0) {
    console.log(
      `WARNING: other programs used more than a quarter of a core while ${busy.join(", ")} ran: those figures ` +
        "(msg/s above all) are disturbed; run again on a quiet machine."
    )
  }
  const oursChannel = summaries.get("effect-ice|channel")
  const oursSend = summaries.get("effect-ice|send")
  const nodeTurnSend = summaries.get("node-turn|send")
  if (oursChannel !== undefined && forwarder !== undefined) {
    const r = oursChannel.cpuUsPerMessage / forwarder.cpuUsPerMessage
    console.log(
      `target: CPU per relayed ChannelData message <= 1.25x the dgram forwarder's: ${
        fixed(oursChannel.cpuUsPerMessage, 2)
      } vs ${fixed(forwarder.cpuUsPerMessage, 2)} µs = ${ratio(r)}, ${r <= 1.25 ? "met" : "NOT met"}`
    )
  } else {
    console.log("target: CPU per relayed ChannelData message <= 1.25x the forwarder's: not measured in this run")
  }
  if (oursSend !== undefined && nodeTurnSend !== undefined) {
    const r = oursSend.relayedPerSec / nodeTurnSend.relayedPerSec
    console.log(
      `target: Send/Data throughput >= 5x node-turn's: ${int(oursSend.relayedPerSec)} vs ${
        int(nodeTurnSend.relayedPerSec)
      } msg/s = ${ratio(r)}, ${r >= 5 ? "met" : "NOT met"}` +
        (oursSend.generatorCpu >= generatorBound
          ? " (the generator was near one core: the ratio is a lower bound)"
          : "")
    )
  } else {
    console.log("target: Send/Data throughput >= 5x node-turn's: not measured in this run")
  }
  const oursMemory = memory.get("effect-ice")
  if (oursMemory !== undefined && oursMemory.allocated > 0) {
    const kb = (oursMemory.rssAfterKb - oursMemory.rssBeforeKb) / oursMemory.allocated
    const complete = oursMemory.allocated >= allocations && allocations >= 10_000
    console.log(
      `target: memory per idle allocation <= 8 KB at 10,000 allocations: ${kb.toFixed(2)} KB at ${
        int(oursMemory.allocated)
      } allocations, ${!complete ? "not measured at 10,000" : kb <= 8 ? "met" : "NOT met"}`
    )
  } else {
    console.log("target: memory per idle allocation <= 8 KB at 10,000 allocations: not measured in this run")
  }
}

main().then(
  async () => {
    await Promise.all([...children].map(stop))
    process.exit(0)
  },
  async (error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error))
    await Promise.all([...children].map(stop))
    process.exit(1)
  }
)
