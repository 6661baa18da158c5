#!/usr/bin/env node
/**
 * Makes sure the third-party peers of the interop tests are installed, before `npm test` runs vitest:
 *
 * - coturn (`turnserver`, `turnutils_stunclient`, `turnutils_natdiscovery`, `turnutils_uclient`, `turnutils_peer`);
 * - aioice, imported by Debian's own `/usr/bin/python3` (not a pyenv/venv `python3` that may come first on PATH);
 * - `ip` and `nft` (iproute2, nftables), for the real Linux NAT the network-namespace tests build.
 *
 * What is missing is installed from Debian packages (`coturn`, `python3-aioice`) when this process is root and
 * `apt-get` exists (as on the CI image). Otherwise the exact install command is printed. Under `CI=true` a peer
 * still missing afterwards fails the run (exit 1); elsewhere the script exits 0 and the interop tests skip, saying
 * why. The result is written to `node_modules/.cache/effect-ice/peers.json`, which `test/interop/peers.ts` reads.
 *
 * After installing coturn, a system `turnserver` daemon the package may have started (systemd or SysV) is stopped
 * and disabled: the tests start their own coturn on loopback addresses and ports chosen at run time, never on
 * 3478, but a stray daemon should not linger either.
 *
 * Plain Node ESM with no dependencies; every child process has a time limit.
 */
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const outputFile = Path.join(root, "node_modules", ".cache", "effect-ice", "peers.json")
const python = "/usr/bin/python3"
const coturnBinaries = [
  "turnserver",
  "turnutils_stunclient",
  "turnutils_natdiscovery",
  "turnutils_uclient",
  "turnutils_peer"
]
const packages = { coturn: ["coturn"], aioice: ["python3-aioice"], netns: ["iproute2", "nftables"] }
const ci = process.env.CI === "true"
const minute = 60_000

const log = (line) => console.log(`[ensure-peers] ${line}`)

/** Runs a command without a shell; `inherit` shows its output. Never throws. */
const run = (command, args, { timeoutMs = 20_000, inherit = false, env } = {}) => {
  const result = spawnSync(command, args, {
    encoding: "utf8",
    timeout: timeoutMs,
    killSignal: "SIGKILL",
    stdio: inherit ? "inherit" : "pipe",
    env: env === undefined ? process.env : { ...process.env, ...env }
  })
  return {
    ok: result.error === undefined && result.status === 0,
    status: result.status,
    error: result.error,
    stdout: result.stdout ?? "",
    stderr: result.stderr ?? ""
  }
}

const isExecutable = (file) => {
  try {
    Fs.accessSync(file, Fs.constants.X_OK)
    return Fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** The first executable named `name` on PATH, then in the usual system directories. */
const which = (name) => {
  const dirs = [...(process.env.PATH ?? "").split(Path.delimiter), "/usr/bin", "/usr/sbin", "/usr/local/bin"]
  for (const dir of dirs) {
    if (dir === "") continue
    const file = Path.join(dir, name)
    if (isExecutable(file)) return file
  }
  return undefined
}

const dpkgVersion = (pkg) => {
  const result = run("dpkg-query", ["-W", "-f=${Version}", pkg])
  return result.ok && result.stdout.trim() !== "" ? result.stdout.trim() : undefined
}

const checkCoturn = () => {
  const paths = {}
  const missing = []
  for (const name of coturnBinaries) {
    const file = which(name)
    if (file === undefined) missing.push(name)
    else paths[name] = file
  }
  if (missing.length > 0) {
    return { available: false, reason: `coturn not installed: ${missing.join(", ")} not found`, paths }
  }
  // `turnserver --version` prints the bare version (e.g. "4.6.1"); the Debian version is more precise.
  const printed = run(paths.turnserver, ["--version"], { timeoutMs: 10_000 })
  const version = dpkgVersion(packages.coturn[0]) ?? (printed.stdout.trim().split("\n")[0] || "unknown")
  return { available: true, version, paths }
}

const checkAioice = () => {
  if (!isExecutable(python)) {
    return { available: false, reason: `${python} (Debian's python3) not found`, python }
  }
  const result = run(python, ["-c", "import aioice, sys; sys.stdout.write(getattr(aioice, '__version__', '?'))"])
  if (!result.ok) {
    const detail = result.error?.message ?? (result.stderr.trim().split("\n").pop() || `exit ${result.status}`)
    return { available: false, reason: `aioice does not import in ${python}: ${detail}`, python }
  }
  return { available: true, version: dpkgVersion(packages.aioice[0]) ?? result.stdout.trim(), python }
}

/** `ip` (iproute2) and `nft` (nftables), for the tests that build a real Linux NAT in network namespaces. */
const checkNetns = () => {
  const ip = which("ip")
  const nft = which("nft")
  if (ip === undefined || nft === undefined) {
    return { available: false, reason: `${ip === undefined ? "ip (iproute2)" : "nft (nftables)"} not found` }
  }
  return { available: true, version: dpkgVersion(packages.netns[1]) ?? "unknown", paths: { ip, nft } }
}

const check = () => ({ coturn: checkCoturn(), aioice: checkAioice(), netns: checkNetns() })

const missingPackages = (peers) =>
  Object.entries(peers).filter(([, peer]) => !peer.available).flatMap(([name]) => packages[name])

const installCommand = (pkgs, asRoot) => {
  const sudo = asRoot ? "" : "sudo "
  return `${sudo}apt-get update && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y `
    + `--no-install-recommends ${pkgs.join(" ")}`
}

const isRoot = typeof process.getuid === "function" && process.getuid() === 0

/** Installs the packages with apt; returns whether apt succeeded. Output goes to the terminal. */
const aptInstall = (pkgs) => {
  // Another `npm test` may hold the dpkg lock: wait for it (bounded) rather than fail at once.
  const lock = ["-o", "DPkg::Lock::Timeout=180"]
  const env = { DEBIAN_FRONTEND: "noninteractive" }
  log(`installing ${pkgs.join(" ")} with apt-get (running as root)`)
  const started = process.hrtime.bigint()
  log("$ apt-get update")
  const update = run("apt-get", [...lock, "update"], { inherit: true, timeoutMs: 10 * minute, env })
  if (!update.ok) log(`apt-get update failed (${update.error?.message ?? `exit ${update.status}`}); trying install`)
  log(`$ apt-get install -y --no-install-recommends ${pkgs.join(" ")}`)
  const install = run("apt-get", [...lock, "install", "-y", "--no-install-recommends", ...pkgs], {
    inherit: true,
    timeoutMs: 15 * minute,
    env
  })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  log(`apt-get ${install.ok ? "finished" : "failed"} in ${seconds.toFixed(1)} s`)
  return { ok: install.ok, seconds }
}

/**
 * The Debian package may start a system `turnserver` (systemd unit `coturn`, or the SysV script when
 * `/etc/default/coturn` enables it). Stop and disable it: nothing of ours uses it, and it would sit on 3478.
 */
const stopSystemDaemon = () => {
  const systemctl = which("systemctl") !== undefined
  if (systemctl && Fs.existsSync("/run/systemd/system") && run("systemctl", ["is-active", "--quiet", "coturn"]).ok) {
    log("the coturn package started a system turnserver (systemd unit coturn): stopping it")
    run("systemctl", ["stop", "coturn"], { inherit: true, timeoutMs: minute })
  }
  // `is-enabled` and `disable` work on the unit files, with or without a running systemd (containers).
  if (systemctl && run("systemctl", ["is-enabled", "--quiet", "coturn"]).ok) {
    log("disabling the systemd unit coturn (the tests start their own turnserver)")
    run("systemctl", ["disable", "coturn"], { inherit: true, timeoutMs: minute })
  }
  // Without systemd, the SysV script starts a daemon only when /etc/default/coturn enables it.
  if (which("service") !== undefined && Fs.existsSync("/etc/init.d/coturn")) {
    // `service coturn status` exits 0 only when the init script's daemon runs.
    if (run("service", ["coturn", "status"], { timeoutMs: 30_000 }).ok) {
      log("the coturn package started a system turnserver (init script): stopping it")
      run("service", ["coturn", "stop"], { inherit: true, timeoutMs: minute })
    }
  }
  const pgrep = run("pgrep", ["-x", "turnserver"])
  if (pgrep.ok) {
    log(`note: turnserver processes not started by the tests are running (pids ${pgrep.stdout.trim().split("\n")})`)
    log("the tests do not use them: they start their own turnserver on addresses and ports chosen at run time")
  }
}

/** Writes the record atomically (another `npm test` may be reading it); the tests re-check without it. */
const write = (result) => {
  const temporary = `${outputFile}.${process.pid}.tmp`
  try {
    Fs.mkdirSync(Path.dirname(outputFile), { recursive: true })
    Fs.writeFileSync(temporary, JSON.stringify(result, null, 2) + "\n")
    Fs.renameSync(temporary, outputFile)
  } catch (error) {
    log(`could not write ${outputFile} (${error.message}); the tests will check the peers themselves`)
  }
}

const main = () => {
  let peers = check()
  let missing = missingPackages(peers)
  let install
  const canInstall = isRoot && which("apt-get") !== undefined
  if (missing.length > 0 && canInstall) {
    install = aptInstall(missing)
    if (missing.includes(packages.coturn)) stopSystemDaemon()
    peers = check()
    missing = missingPackages(peers)
  }
  const command = missing.length > 0 ? installCommand(missing, isRoot) : undefined
  write({
    checkedAt: new Date().toISOString(),
    ci,
    installCommand: command ?? null,
    install: install === undefined ? null : { packages: install.ok ? "installed" : "failed", seconds: install.seconds },
    peers
  })
  for (const [name, peer] of Object.entries(peers)) {
    log(peer.available ? `${name}: available (${peer.version})` : `${name}: MISSING (${peer.reason})`)
  }
  if (missing.length === 0) return 0
  if (which("apt-get") === undefined) {
    log(`install ${missing.join(" ")} (Debian/Ubuntu packages); with apt: ${command}`)
  } else {
    log(`to install the missing peers run:\n\n    ${command}\n`)
  }
  if (ci) {
    log(`CI=true: the interop tests need ${missing.join(" and ")}; failing the run`)
    return 1
  }
  log("the interop tests that need the missing peers will be skipped (CI=true would fail instead)")
  return 0
}

process.exitCode = main()
