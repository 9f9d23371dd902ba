-- Unauthenticated mail carrying one CHmail field: the milter keeps it (expect=keep) or deletes it
-- (expect=delete), and never signs the mail.
-- Defines (-D): socket, lua_dir, from (the From field), chmail (the CHmail field value), expect.

dofile(lua_dir .. "/common.lua")

assert(expect == "keep" or expect == "delete", "expect must be keep or delete, not " .. tostring(expect))

local conn = chmail_connect("198.51.100.25", "mx.foreign.test")
chmail_envelope(conn, "<sender@foreign.test>", "<bob@example.test>")
chmail_message(conn, {
    { "From", from },
    { "To", "Bob <bob@example.test>" },
    { "Subject", "incoming" },
    { "CHmail", chmail },
    { "Message-ID", "<incoming@foreign.test>" },
})

if expect == "keep" then
    assert(not chmail_deleted(conn, "CHmail"), "the CHmail field was deleted, expected it kept")
    assert(not chmail_changed(conn, "CHmail"), "the CHmail field was changed")
else
    assert(chmail_deleted(conn, "CHmail"), "the CHmail field was kept, expected it deleted")
end
assert(not chmail_added(conn, "CHmail"), "unauthenticated mail was signed")
assert(not chmail_added(conn, "CHmail-Link"), "unauthenticated mail got a CHmail-Link")
mt.disconnect(conn)
print("OK")
