/**
 * Child processes for the server benchmarks: started with their output captured, stopped with SIGTERM then SIGKILL,
 * and killed when the benchmark exits or is interrupted, so no server outlives a run.
 */
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

/** The project's root (the benchmarks run their children from there). */
export const root = fileURLToPath(new URL("..", import.meta.url))

export const children = new Set<ChildProcess>()

export const isRunning = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

export const signal = (child: ChildProcess, name: NodeJS.Signals): void => {
  if (child.pid === undefined || !isRunning(child)) return
  try {
    process.kill(child.pid, name)
  } catch {
    // it exited in between
  }
}

export const exited = (child: ChildProcess, ms: number): Promise<boolean> =>
  !isRunning(child) ? Promise.resolve(true) : new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

/** SIGTERM, then SIGKILL after 2 s; waits (bounded) for the exit. */
export const stop = async (child: ChildProcess): Promise<void> => {
  signal(child, "SIGTERM")
  if (!(await exited(child, 2_000))) {
    signal(child, "SIGKILL")
    await exited(child, 5_000)
  }
  children.delete(child)
}

process.once("exit", () => {
  for (const child of children) signal(child, "SIGKILL")
})
for (const name of ["SIGINT", "SIGTERM"] as const) {
  process.once(name, () => {
    for (const child of children) signal(child, "SIGKILL")
    process.exit(130)
  })
}

export interface Started {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
}

export const start = (command: string, args: ReadonlyArray<string>): Started => {
  const child = spawn(command, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
  children.add(child)
  let stdout = ""
  let stderr = ""
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk)
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    if (stderr.length < 64 * 1024) stderr += chunk
  })
  child.once("error", (error) => stderr += `spawn error: ${error.message}\n`)
  return { child, stdout: () => stdout, stderr: () => stderr }
}
