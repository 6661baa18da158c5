import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { createHmac } from "node:crypto"
import * as TurnAuth from "../src/TurnAuth.js"

describe("TurnAuth", () => {
  it("REST passwords are base64(HMAC-SHA1(secret, username)), as coturn's use-auth-secret computes them", () => {
    const username = "1767225600:alice"
    const expected = createHmac("sha1", "north").update(username).digest("base64")
    assert.strictEqual(TurnAuth.restPassword("north", username), expected)
    assert.deepStrictEqual(TurnAuth.restCredentials("north", "alice", 1767225000, 600), {
      username,
      password: expected
    })
  })

  it("checks expiry and form, and gives one password per secret for rotation", () => {
    const { username } = TurnAuth.restCredentials("old", "bob", 1000, 60)
    assert.deepStrictEqual(
      TurnAuth.restPasswords(["new", "old"], username, 1059),
      Either.right([TurnAuth.restPassword("new", username), TurnAuth.restPassword("old", username)])
    )
    assert.deepStrictEqual(
      TurnAuth.restPasswords(["old"], username, 1060),
      Either.right([TurnAuth.restPassword("old", username)])
    )
    assert.deepStrictEqual(TurnAuth.restPasswords(["old"], username, 1061), Either.left("Expired"))
    assert.deepStrictEqual(TurnAuth.restPasswords(["old"], "bob", 0), Either.left("Malformed"))
    assert.deepStrictEqual(TurnAuth.restPasswords(["old"], "12a:bob", 0), Either.left("Malformed"))
  })
})
