/**
 * Helpers for the interop tests against real third-party peers (coturn, aioice): which peers are installed, loopback
 * addresses and ports chosen at run time, coturn started and stopped by its PID, and client commands run with a time
 * limit. They follow the recipes of the design notes on peers (PEERS.md).
 *
 * - Availability comes from `node_modules/.cache/effect-ice/peers.json`, written by `scripts/ensure-peers.mjs`
 *   (the first step of `npm test`), when it says every peer is there and their files still are; otherwise (no
 *   file, a peer missing then, a recorded path gone since) the peers are checked again here. aioice is always
 *   checked with Debian's `/usr/bin/python3`, never a `python3` from PATH.
 * - {@link requirePeer}: under `CI=true` a missing peer registers a failing test (with the reason and the install
 *   command) and the others do not run; elsewhere the tests `skipIf` it, and the reason is printed.
 * - Addresses: a fresh `127.A.B.0/24` block per call with random A and B (Linux routes all of 127/8 to `lo`), so a
 *   server somebody else runs on `127.0.0.1:3478` is never reached by mistake. Ports: what the OS hands out for port
 *   0, checked to be free for UDP and TCP on every address that needs it.
 * - Real time is used only to wait for external processes, and every such wait is bounded.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { randomInt } from "node:crypto"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

// ---------------------------------------------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------------------------------------------

/** The third-party peers the interop tests use. */
export type PeerName = "coturn" | "aioice"

/** What is known about one peer. */
export interface PeerInfo {
  readonly available: boolean
  /** Debian package version (or what the tool prints). */
  readonly version?: string | undefined
  /** Why the peer is not available. */
  readonly reason?: string | undefined
  /** coturn: the path of each binary. */
  readonly paths?: Readonly<Record<string, string>> | undefined
  /** aioice: the interpreter that imports it. */
  readonly python?: string | undefined
}

/** Every peer, and the command that installs the missing ones. */
export interface Availability {
  readonly peers: Readonly<Record<PeerName, PeerInfo>>
  readonly installCommand: string | undefined
  /** Where the answer came from. */
  readonly source: "ensure-peers" | "checked"
}

/** Debian's interpreter: the one `python3-aioice` installs into (a pyenv `python3` may come first on PATH). */
export const debianPython = "/usr/bin/python3"

/** The coturn binaries the tests run. */
export const coturnBinaries = [
  "turnserver",
  "turnutils_stunclient",
  "turnutils_natdiscovery",
  "turnutils_uclient",
  "turnutils_peer"
] as const

/** Where `scripts/ensure-peers.mjs` writes its findings. */
export const availabilityFile = Path.resolve(
  Path.dirname(fileURLToPath(import.meta.url)),
  "../../node_modules/.cache/effect-ice/peers.json"
)

const packages: Record<PeerName, string> = { coturn: "coturn", aioice: "python3-aioice" }

const isExecutable = (file: string): boolean => {
  try {
    Fs.accessSync(file, Fs.constants.X_OK)
    return Fs.statSync(file).isFile()
  } catch {
    return false
  }
}

const which = (name: string): string | undefined => {
  const dirs = [...(process.env.PATH ?? "").split(Path.delimiter), "/usr/bin", "/usr/sbin", "/usr/local/bin"]
  for (const dir of dirs) {
    if (dir === "") continue
    const file = Path.join(dir, name)
    if (isExecutable(file)) return file
  }
  return undefined
}

const checkCoturn = (): PeerInfo => {
  const paths: Record<string, string> = {}
  const missing: Array<string> = []
  for (const name of coturnBinaries) {
    const file = which(name)
    if (file === undefined) missing.push(name)
    else paths[name] = file
  }
  if (missing.length > 0) return { available: false, reason: `coturn not installed: ${missing.join(", ")} not found` }
  const printed = spawnSync(paths.turnserver!, ["--version"], { encoding: "utf8", timeout: 10_000 })
  return { available: true, version: (printed.stdout ?? "").trim() || "unknown", paths }
}

const checkAioice = (): PeerInfo => {
  if (!isExecutable(debianPython)) {
    return { available: false, reason: `${debianPython} (Debian's python3) not found`, python: debianPython }
  }
  const result = spawnSync(debianPython, ["-c", "import aioice, sys; sys.stdout.write(aioice.__version__)"], {
    encoding: "utf8",
    timeout: 20_000
  })
  if (result.error !== undefined || result.status !== 0) {
    const detail = result.error?.message ?? ((result.stderr ?? "").trim().split("\n").pop() || `exit ${result.status}`)
    return { available: false, reason: `aioice does not import in ${debianPython}: ${detail}`, python: debianPython }
  }
  return { available: true, version: result.stdout.trim(), python: debianPython }
}

const installCommandFor = (missing: ReadonlyArray<PeerName>): string | undefined => {
  if (missing.length === 0) return undefined
  const sudo = typeof process.getuid === "function" && process.getuid() === 0 ? "" : "sudo "
  return `${sudo}apt-get update && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y `
    + `--no-install-recommends ${missing.map((name) => packages[name]).join(" ")}`
}

/** A recorded peer is still usable: it was available, and its binaries (or interpreter) are still there. */
const stillThere = (info: PeerInfo): boolean =>
  info.available && Object.values(info.paths ?? {}).concat(info.python ?? []).every(isExecutable)

const readAvailabilityFile = (): Availability | undefined => {
  try {
    const json = JSON.parse(Fs.readFileSync(availabilityFile, "utf8")) as {
      readonly peers: Record<PeerName, PeerInfo>
      readonly installCommand: string | null
    }
    if (json.peers?.coturn === undefined || json.peers?.aioice === undefined) return undefined
    if (!stillThere(json.peers.coturn) || !stillThere(json.peers.aioice)) return undefined
    return { peers: json.peers, installCommand: json.installCommand ?? undefined, source: "ensure-peers" }
  } catch {
    return undefined
  }
}

let cached: Availability | undefined

/**
 * Which peers are installed: what `scripts/ensure-peers.mjs` recorded, or (when vitest runs without it, or the
 * record is stale) a fresh check. Computed once per test file.
 */
export const peerAvailability = (): Availability => {
  if (cached !== undefined) return cached
  const recorded = readAvailabilityFile()
  if (recorded !== undefined) return cached = recorded
  const peers = { coturn: checkCoturn(), aioice: checkAioice() }
  const missing = (Object.keys(peers) as Array<PeerName>).filter((name) => !peers[name].available)
  return cached = { peers, installCommand: installCommandFor(missing), source: "checked" }
}

/** What a test file needs to know about one peer. */
export interface PeerRequirement {
  readonly name: PeerName
  readonly info: PeerInfo
  /** True when the tests must be skipped (peer missing, and not under `CI=true`). */
  readonly skip: boolean
  /** Why they are skipped ("" when they run). */
  readonly reason: string
}

/**
 * The peer must be installed. Await it at the top of a test file, then `describe.skipIf(peer.skip)(…)`. Missing
 * under `CI=true`: a test "<peer> is installed" fails with the reason and the install command, and the file's
 * other tests do not run. Missing elsewhere: the reason is printed and the tests are skipped. (Asynchronous because
 * vitest is imported only there: the rest of this module also serves programs outside vitest, such as benchmarks.)
 */
export const requirePeer = async (name: PeerName): Promise<PeerRequirement> => {
  const availability = peerAvailability()
  const info = availability.peers[name]
  if (info.available) return { name, info, skip: false, reason: "" }
  const install = availability.installCommand ?? installCommandFor([name])
  const why = `${name} is not available (${info.reason ?? "unknown reason"}); install it with: ${install}`
  if (process.env.CI === "true") {
    // A failing test (counted as failed, with the reason and the command) rather than a file that fails to load.
    const message = `CI=true requires the interop peer ${name}: ${why}`
    console.error(`[interop] ${message}`)
    const { it } = await import("@effect/vitest")
    it(`${name} is installed (required under CI=true)`, () => {
      throw new Error(message)
    })
    return { name, info, skip: true, reason: `not run: ${name} is missing under CI=true` }
  }
  const reason = `skipped: ${why}`
  console.warn(`[interop] ${reason}`)
  return { name, info, skip: true, reason }
}

/** The path of a coturn binary (from the availability record, else PATH). */
export const coturnBinary = (name: typeof coturnBinaries[number]): string =>
  peerAvailability().peers.coturn.paths?.[name] ?? which(name) ?? name

// ---------------------------------------------------------------------------------------------------------------
// Addresses and ports
// ---------------------------------------------------------------------------------------------------------------

const bindUdp = (address: string, port: number): Promise<Dgram.Socket | undefined> =>
  new Promise((resolve) => {
    const socket = Dgram.createSocket({ type: address.includes(":") ? "udp6" : "udp4" })
    socket.once("error", () => {
      socket.close()
      resolve(undefined)
    })
    socket.bind({ address, port, exclusive: true }, () => resolve(socket))
  })

const listenTcp = (address: string, port: number): Promise<Net.Server | undefined> =>
  new Promise((resolve) => {
    const server = Net.createServer()
    server.once("error", () => resolve(undefined))
    server.listen({ host: address, port, exclusive: true }, () => resolve(server))
  })

type Held = Dgram.Socket | Net.Server

const release = (held: ReadonlyArray<Held>): Promise<void> =>
  Promise.all(held.map((h) => new Promise<void>((resolve) => h.close(() => resolve())))).then(() => undefined)

/**
 * `n` distinct loopback addresses `127.A.B.1` … `127.A.B.n` with random A (1–254) and B, each checked to be
 * bindable. Linux routes all of 127.0.0.0/8 to `lo`, so no setup is needed.
 */
export const pickLoopbackAddresses = async (n: number): Promise<Array<string>> => {
  if (n < 1 || n > 254) throw new Error(`pickLoopbackAddresses: n must be 1–254, got ${n}`)
  for (let attempt = 0; attempt < 10; attempt++) {
    const prefix = `127.${randomInt(1, 255)}.${randomInt(0, 256)}`
    const addresses = Array.from({ length: n }, (_, i) => `${prefix}.${i + 1}`)
    const sockets = await Promise.all(addresses.map((address) => bindUdp(address, 0)))
    await release(sockets.filter((s): s is Dgram.Socket => s !== undefined))
    if (sockets.every((s) => s !== undefined)) return addresses
  }
  throw new Error("pickLoopbackAddresses: no bindable 127.A.B.0/24 block after 10 attempts (is 127/8 routed to lo?)")
}

/**
 * A port P the OS handed out for port 0 on the first address, such that P … P+count−1 are free for both UDP and
 * TCP on every address given. The sockets are closed again before this returns, so the port is only very probably
 * still free when the caller binds it: callers that start a peer retry on a bind failure.
 */
export const freeUdpTcpPort = async (
  addresses: string | ReadonlyArray<string>,
  options: { readonly count?: number; readonly attempts?: number } = {}
): Promise<number> => {
  const list = typeof addresses === "string" ? [addresses] : addresses
  const count = options.count ?? 1
  const attempts = options.attempts ?? 50
  for (let attempt = 0; attempt < attempts; attempt++) {
    const first = await bindUdp(list[0]!, 0)
    if (first === undefined) throw new Error(`freeUdpTcpPort: cannot bind UDP on ${list[0]}`)
    const port = first.address().port
    const held: Array<Held> = [first]
    let ok = port + count - 1 <= 65535
    for (const address of list) {
      for (let k = 0; ok && k < count; k++) {
        if (!(address === list[0] && k === 0)) {
          const udp = await bindUdp(address, port + k)
          if (udp === undefined) ok = false
          else held.push(udp)
        }
        if (!ok) break
        const tcp = await listenTcp(address, port + k)
        if (tcp === undefined) ok = false
        else held.push(tcp)
      }
    }
    await release(held)
    if (ok) return port
  }
  throw new Error(`freeUdpTcpPort: no port free for UDP and TCP on ${list.join(", ")} after ${attempts} attempts`)
}

// ---------------------------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Children still running, killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>()
let exitHookInstalled = false
const track = (child: ChildProcess) => {
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.once("exit", () => {
      for (const c of running) {
        if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
          try {
            process.kill(c.pid, "SIGKILL")
          } catch {
            // already gone
          }
        }
      }
    })
  }
  running.add(child)
  child.once("exit", () => running.delete(child))
}

const exited = (child: ChildProcess, ms: number): Promise<boolean> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(true)
    : new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms)
      child.once("exit", () => {
        clearTimeout(timer)
        resolve(true)
      })
    })

/** Stops a child by its PID: SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited (bounded). */
const killAndWait = async (child: ChildProcess, graceMs = 3_000): Promise<void> => {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(child.pid!, name)
    } catch {
      // it exited in between
    }
  }
  signal("SIGTERM")
  if (await exited(child, graceMs)) return
  signal("SIGKILL")
  if (!(await exited(child, 5_000))) throw new Error(`process ${child.pid} did not exit after SIGKILL`)
}

/** What a finished (or killed) command printed. */
export interface CommandResult {
  readonly command: string
  /** Exit code; null when it was killed. */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** True when the command ran past `timeoutMs` and was killed. */
  readonly timedOut: boolean
}

/** Options of {@link runCommand}. */
export interface RunCommandOptions {
  /** Kill the command (SIGKILL) after this long; the result then has `timedOut`. */
  readonly timeoutMs: number
  /** Aborting kills the command too (Effect interruption passes one). */
  readonly signal?: AbortSignal | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
  readonly cwd?: string | undefined
  /** Written to the command's stdin, which is then closed. */
  readonly input?: string | undefined
}

/** Runs a command (no shell) to completion or to its time limit, capturing stdout and stderr. */
export const runCommand = (
  command: string,
  args: ReadonlyArray<string>,
  options: RunCommandOptions
): Promise<CommandResult> =>
  new Promise((resolve, reject) => {
    const line = [command, ...args].join(" ")
    const child = spawn(command, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: options.env === undefined ? process.env : { ...process.env, ...options.env },
      cwd: options.cwd
    })
    track(child)
    let stdout = ""
    let stderr = ""
    let timedOut = false
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk)
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr += chunk)
    child.stdin!.on("error", () => {})
    child.stdin!.end(options.input ?? "")
    const kill = () => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid, "SIGKILL")
      }
    }
    const timer = setTimeout(() => {
      timedOut = true
      kill()
    }, options.timeoutMs)
    const onAbort = () => kill()
    options.signal?.addEventListener("abort", onAbort, { once: true })
    child.once("error", (error) => {
      clearTimeout(timer)
      options.signal?.removeEventListener("abort", onAbort)
      reject(new Error(`${line}: ${error.message}`))
    })
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      options.signal?.removeEventListener("abort", onAbort)
      resolve({ command: line, code, signal, stdout, stderr, timedOut })
    })
  })

/** {@link runCommand} as an Effect; interrupting it kills the command. */
export const runCommandEffect = (
  command: string,
  args: ReadonlyArray<string>,
  options: Omit<RunCommandOptions, "signal">
): Effect.Effect<CommandResult, Error> =>
  Effect.tryPromise({
    try: (signal) => runCommand(command, args, { ...options, signal }),
    catch: (error) => error instanceof Error ? error : new Error(String(error))
  })

// ---------------------------------------------------------------------------------------------------------------
// coturn
// ---------------------------------------------------------------------------------------------------------------

/** How coturn authenticates TURN requests. */
export type CoturnAuth =
  /** `--lt-cred-mech --user=name:password …` */
  | { readonly mode: "users"; readonly users: ReadonlyArray<readonly [string, string]> }
  /** `--use-auth-secret --static-auth-secret=SECRET` (REST API credentials). */
  | { readonly mode: "secret"; readonly secret: string }

/** Options of {@link startCoturn}; everything has a default. */
export interface CoturnOptions {
  /** Listening IP1, IP2 and relay IP3; a fresh `127.A.B.1–3` block by default. */
  readonly addresses?: readonly [string, string, string] | undefined
  /** Default: long-term credentials with user `alice`, password `secret`. */
  readonly auth?: CoturnAuth | undefined
  /** Default `example.org`. */
  readonly realm?: string | undefined
  /** RFC 5780 answers (on by default with two listening IPs); false adds `--no-rfc5780`. */
  readonly rfc5780?: boolean | undefined
  /** Relay port range on IP3; default a random block of 200 ports within 50000–59999. */
  readonly relayPorts?: readonly [number, number] | undefined
  /** More `turnserver` arguments. */
  readonly extraArgs?: ReadonlyArray<string> | undefined
  /** How long to wait for the listeners, per attempt (default 10 s). */
  readonly readyTimeoutMs?: number | undefined
  /**
   * TLS listeners with this certificate and key (PEM file paths): replaces `--no-tls` with `--cert` and `--pkey`,
   * and listens for TLS on `tlsPort` (P+2, alternate P+3) on both IPs. DTLS stays off.
   */
  readonly tls?: { readonly cert: string; readonly key: string } | undefined
}

/** A running coturn. */
export interface Coturn {
  /** The two listening IPs (RFC 5780 primary and alternate). */
  readonly ips: readonly [string, string]
  /** `--listening-port`, on both IPs, UDP and TCP. */
  readonly port: number
  /** `--alt-listening-port` (port + 1), on both IPs, UDP and TCP (not opened with `rfc5780: false`). */
  readonly altPort: number
  /** `--tls-listening-port` (port + 2) on both IPs, when started with `tls`. */
  readonly tlsPort: number | undefined
  readonly relayIp: string
  readonly relayPorts: readonly [number, number]
  readonly realm: string
  readonly auth: CoturnAuth
  readonly pid: number
  /** The temporary directory holding the log, the pid file and the user database. */
  readonly dir: string
  readonly logFile: string
  /** The full `turnserver` command line. */
  readonly args: ReadonlyArray<string>
  /** The log so far (for assertion messages). */
  readonly log: () => string
  /** Kills coturn by its PID, waits for it to exit, and removes the temporary directory. */
  readonly stop: () => Promise<void>
}

/** The log lines that say every listener is open (printed with `-v`; coturn 4.6.1's wording). */
const listenerLines = (ips: ReadonlyArray<string>, ports: ReadonlyArray<number>): Array<string> =>
  ips.flatMap((ip) =>
    ports.flatMap((port) => [`UDP listener opened on: ${ip}:${port}`, `TCP listener opened on : ${ip}:${port}`])
  )

const readLog = (file: string): string => {
  try {
    return Fs.readFileSync(file, "utf8")
  } catch {
    return ""
  }
}

const tail = (text: string, lines = 30) => text.trimEnd().split("\n").slice(-lines).join("\n")

class CoturnBindError extends Error {}

const startCoturnOnce = async (
  ips: readonly [string, string],
  relayIp: string,
  options: CoturnOptions
): Promise<Coturn> => {
  const port = await freeUdpTcpPort(ips, { count: options.tls === undefined ? 2 : 4 })
  const altPort = port + 1
  const tlsPort = options.tls === undefined ? undefined : port + 2
  const tlsArgs = options.tls === undefined ? ["--no-tls"] : [
    `--cert=${options.tls.cert}`,
    `--pkey=${options.tls.key}`,
    `--tls-listening-port=${port + 2}`,
    `--alt-tls-listening-port=${port + 3}`
  ]
  const realm = options.realm ?? "example.org"
  const auth: CoturnAuth = options.auth ?? { mode: "users", users: [["alice", "secret"]] }
  const relayStart = 50000 + randomInt(0, 49) * 200
  const relayPorts = options.relayPorts ?? [relayStart, relayStart + 199] as const
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ice-coturn-"))
  const logFile = Path.join(dir, "coturn.log")
  const authArgs = auth.mode === "users"
    ? ["--lt-cred-mech", ...auth.users.map(([user, password]) => `--user=${user}:${password}`)]
    : ["--use-auth-secret", `--static-auth-secret=${auth.secret}`]
  const args = [
    "-n", // no configuration file
    "-v", // verbose: coturn logs "UDP listener opened on: …" only with it
    `--listening-ip=${ips[0]}`,
    `--listening-ip=${ips[1]}`,
    `--listening-port=${port}`,
    `--alt-listening-port=${altPort}`,
    `--relay-ip=${relayIp}`,
    `--min-port=${relayPorts[0]}`,
    `--max-port=${relayPorts[1]}`,
    "--allow-loopback-peers",
    ...authArgs,
    `--realm=${realm}`,
    "--fingerprint",
    ...tlsArgs,
    "--no-dtls",
    "--no-cli",
    ...(options.rfc5780 === false ? ["--no-rfc5780"] : []),
    `--userdb=${Path.join(dir, "turndb")}`,
    `--log-file=${logFile}`,
    "--simple-log",
    "--no-stdout-log",
    `--pidfile=${Path.join(dir, "coturn.pid")}`,
    ...(options.extraArgs ?? [])
  ]
  const child = spawn(coturnBinary("turnserver"), args, { stdio: ["ignore", "ignore", "pipe"] })
  track(child)
  let stderr = ""
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    if (stderr.length < 64 * 1024) stderr += chunk
  })
  let spawnError: Error | undefined
  child.once("error", (error) => spawnError = error)

  const cleanup = async () => {
    await killAndWait(child)
    Fs.rmSync(dir, { recursive: true, force: true })
  }
  const fail = async (what: string, ErrorClass: new(message: string) => Error = Error): Promise<never> => {
    const log = readLog(logFile)
    await cleanup()
    throw new ErrorClass(
      `coturn ${what}\ncommand: turnserver ${args.join(" ")}\nstderr: ${tail(stderr, 10)}\nlog:\n${tail(log)}`
    )
  }

  // With --no-rfc5780 coturn does not open the alternate port at all.
  const expected = [
    ...listenerLines(ips, options.rfc5780 === false ? [port] : [port, altPort]),
    ...(tlsPort === undefined ? [] : ips.map((ip) => `TLS/TCP listener opened on : ${ip}:${tlsPort}`))
  ]
  const timeoutMs = options.readyTimeoutMs ?? 10_000
  const polls = Math.ceil(timeoutMs / 50)
  for (let i = 0; i <= polls; i++) {
    if (spawnError !== undefined) return fail(`could not be started: ${spawnError.message}`)
    if (child.exitCode !== null || child.signalCode !== null) {
      return fail(`exited before it was ready (code ${child.exitCode}, signal ${child.signalCode})`)
    }
    const log = readLog(logFile)
    // coturn retries a busy port forever: give up at once and let the caller pick another port.
    if (/Cannot bind .* listener socket/.test(log)) return fail("could not bind a listener", CoturnBindError)
    if (expected.every((line) => log.includes(line))) {
      let stopped: Promise<void> | undefined
      return {
        ips,
        port,
        altPort,
        tlsPort,
        relayIp,
        relayPorts,
        realm,
        auth,
        pid: child.pid!,
        dir,
        logFile,
        args,
        log: () => readLog(logFile),
        stop: () => stopped ??= cleanup()
      }
    }
    await sleep(50)
  }
  const log = readLog(logFile)
  const missing = expected.find((line) => !log.includes(line))
  return fail(`did not open its listeners within ${timeoutMs} ms (no "${missing}" in the log)`)
}

/**
 * Starts `turnserver -n` (no configuration file, so `/etc/turnserver.conf` is ignored) on two listening IPs (so
 * RFC 5780 is on), a port P and `--alt-listening-port` P+1 found free at run time, relays on a third IP, no TLS
 * (unless `tls` is given), DTLS or CLI, a log file and pid file in a fresh temporary directory. Resolves once the log shows every UDP and
 * TCP listener open (the last being `UDP listener opened on: IP2:P+1`), within `readyTimeoutMs`. A port taken
 * meanwhile by somebody else is retried with another one (3 attempts).
 */
export const startCoturn = async (options: CoturnOptions = {}): Promise<Coturn> => {
  const [ip1, ip2, relayIp] = options.addresses ?? await pickLoopbackAddresses(3)
  for (let attempt = 1;; attempt++) {
    try {
      return await startCoturnOnce([ip1!, ip2!], relayIp!, options)
    } catch (error) {
      if (!(error instanceof CoturnBindError) || attempt === 3) throw error
    }
  }
}

/** {@link startCoturn} as a scoped resource: coturn is stopped when the scope closes. */
export const coturnScoped = (options: CoturnOptions = {}): Effect.Effect<Coturn, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startCoturn(options),
      catch: (error) => error instanceof Error ? error : new Error(String(error))
    }),
    (coturn) => Effect.promise(() => coturn.stop())
  )
