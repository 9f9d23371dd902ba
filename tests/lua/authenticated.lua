-- Authenticated mail: the milter deletes every CHmail and CHmail-Link copy the client supplied and
-- adds a signed CHmail field and a CHmail-Link field, which it prints for the test to verify.
-- Defines (-D): socket, lua_dir, login ({auth_authen}).

dofile(lua_dir .. "/common.lua")

local conn = chmail_connect("192.0.2.7", "client.example.test")
chmail_envelope(conn, "<alice@example.test>", "<bob@other.test>", "{auth_authen}", login,
    "{auth_type}", "PLAIN")
chmail_message(conn, {
    { "From", "Alice <alice@example.test>" },
    { "To", "Bob <bob@other.test>" },
    { "CHmail", "forged one" },
    { "Subject", "authenticated" },
    { "chmail-link", "<https://evil.example/c/1/x>" },
    { "CHMAIL", "v=1; d=example.test; s=sel1; l=mallory@example.test; b=AAAA" },
    { "Message-ID", "<authenticated@example.test>" },
})

assert(chmail_added(conn, "CHmail"), "no CHmail field added")
assert(chmail_added(conn, "CHmail-Link"), "no CHmail-Link field added")
assert(chmail_deleted(conn, "CHmail"), "the forged CHmail copies were not deleted")
assert(chmail_deleted(conn, "CHmail-Link"), "the forged CHmail-Link copy was not deleted")
chmail_print_added(conn, "CHmail")
chmail_print_added(conn, "CHmail-Link")
mt.disconnect(conn)
print("OK")
