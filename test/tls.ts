/**
 * Test helper: a self-signed certificate made with `openssl` (from Debian's package, on every machine here).
 */
import { execFileSync } from "node:child_process"
import * as Path from "node:path"

/**
 * Writes `cert.pem` and `key.pem` into `dir`: a one-day self-signed RSA certificate for CN=localhost whose
 * subjectAltName lists `ips`. Returns the two paths.
 */
export const selfSignedCertificate = (
  dir: string,
  ips: ReadonlyArray<string>
): { readonly cert: string; readonly key: string } => {
  const cert = Path.join(dir, "cert.pem")
  const key = Path.join(dir, "key.pem")
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    "/CN=localhost",
    "-addext",
    `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(",")}`
  ], { stdio: "ignore", timeout: 30_000 })
  return { cert, key }
}
