/**
 * The npm `stun` package's server (nodertc/stun 2.1.0) for the STUN server benchmark, as its own example
 * (`examples/stun-server.js`) writes it: on `bindingRequest`, a Binding success response with the request's
 * transaction id, XOR-MAPPED-ADDRESS and SOFTWARE, sent with `server.send`.
 *
 * The socket is created and bound here and handed to `createServer({ type: "udp4", socket })`, because the
 * package does not tell which port `listen(0)` got.
 *
 * Usage: `node --import tsx bench/stun-server/stun-package-server.ts <ip>`. Binds `<ip>` port 0, prints
 * `{"port":N}` on stdout, and runs until killed.
 */
import * as Dgram from "node:dgram"
import { createRequire } from "node:module"
import type { ServerReady } from "./protocol.js"

/** The part of the `stun` package's API used here (the package ships no type declarations). */
interface StunResponse {
  addXorAddress(address: string, port: number): unknown
  addSoftware(software: string): unknown
}
interface StunServer {
  on(event: string, listener: (...args: Array<any>) => void): unknown
  send(message: StunResponse, port: number, address: string): boolean
}
interface StunModule {
  createServer(options: { readonly type: "udp4"; readonly socket: Dgram.Socket }): StunServer
  createMessage(type: number, transactionId?: Buffer): StunResponse
  readonly constants: Readonly<Record<string, number>>
}

const stun = createRequire(import.meta.url)("stun") as StunModule
const STUN_BINDING_RESPONSE = stun.constants.STUN_BINDING_RESPONSE!
const software = `node/${process.version} stun/v2.1.0`

const address = process.argv[2] ?? "127.0.0.1"
const socket = Dgram.createSocket({ type: "udp4" })
const server = stun.createServer({ type: "udp4", socket })
server.on("bindingRequest", (request: { readonly transactionId: Buffer }, rinfo: Dgram.RemoteInfo) => {
  const message = stun.createMessage(STUN_BINDING_RESPONSE, request.transactionId)
  message.addXorAddress(rinfo.address, rinfo.port)
  message.addSoftware(software)
  server.send(message, rinfo.port, rinfo.address)
})
// The server re-emits decode failures as 'error'; without a listener they would crash the process.
server.on("error", () => {})
socket.on("error", (error) => {
  process.stderr.write(`stun-package-server: ${error.message}\n`)
  process.exit(1)
})
socket.bind({ address, port: 0, exclusive: true }, () => {
  const ready: ServerReady = { port: socket.address().port }
  process.stdout.write(JSON.stringify(ready) + "\n")
})

// Exit normally on a signal, so `node --cpu-prof` writes its profile when this server is profiled.
for (const name of ["SIGINT", "SIGTERM"] as const) process.once(name, () => process.exit(0))
