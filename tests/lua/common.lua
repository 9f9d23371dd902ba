-- Shared steps of the CHmail miltertest scripts (loaded with dofile by each script).
--
-- miltertest ends a script silently with exit status 0 when the script calls a step the milter
-- negotiated away, so optional steps are guarded with mt.test_option, the steps CHmail needs are
-- asserted, and every script prints "OK" as its very last line for the test to check.

-- miltertest exits 1 on a failed assert but prints nothing: print the reason first.
local lua_assert = assert
function assert(condition, message, ...)
    if not condition then
        print("FAILED: " .. tostring(message))
    end
    return lua_assert(condition, message, ...)
end

-- Connects to `socket` (a -D define, "inet:PORT@127.0.0.1") and sends connect and HELO with the
-- client address and name the milter asks Postfix for.
function chmail_connect(client_addr, client_name)
    local conn = mt.connect(socket, 40, 0.25)
    assert(conn, "cannot connect to the milter at " .. tostring(socket))
    mt.macro(conn, SMFIC_CONNECT, "{client_addr}", client_addr, "{client_name}", client_name)
    assert(mt.conninfo(conn, client_name, client_addr) == nil, "mt.conninfo failed")
    assert(mt.getreply(conn) == SMFIR_CONTINUE, "connect was not continued")
    if not mt.test_option(conn, SMFIP_NOHELO) then
        assert(mt.helo(conn, client_name) == nil, "mt.helo failed")
    end
    return conn
end

-- MAIL FROM with the MAIL-stage macros (given as name, value pairs, all in one mt.macro call:
-- each call replaces the stage's macros), then one RCPT TO.
function chmail_envelope(conn, sender, recipient, ...)
    mt.macro(conn, SMFIC_MAIL, "i", "CHMAILTEST", ...)
    assert(mt.mailfrom(conn, sender) == nil, "mt.mailfrom failed")
    assert(mt.getreply(conn) == SMFIR_CONTINUE, "MAIL FROM was not continued")
    if not mt.test_option(conn, SMFIP_NORCPT) then
        assert(mt.rcptto(conn, recipient) == nil, "mt.rcptto failed")
        assert(mt.getreply(conn) == SMFIR_CONTINUE, "RCPT TO was not continued")
    end
end

-- The header fields ({name, value} pairs, in order), end of headers, a body and end of message;
-- returns the end-of-message reply.
function chmail_message(conn, fields)
    assert(not mt.test_option(conn, SMFIP_NOHDRS), "the milter must ask for the header fields")
    for _, field in ipairs(fields) do
        assert(mt.header(conn, field[1], field[2]) == nil, "mt.header " .. field[1] .. " failed")
    end
    if not mt.test_option(conn, SMFIP_NOEOH) then
        assert(mt.eoh(conn) == nil, "mt.eoh failed")
    end
    if not mt.test_option(conn, SMFIP_NOBODY) then
        assert(mt.bodystring(conn, "Hello Bob,\r\nsee you in the chat.\r\n") == nil, "mt.bodystring failed")
    end
    assert(mt.eom(conn) == nil, "mt.eom failed")
    local reply = mt.getreply(conn)
    assert(reply == SMFIR_ACCEPT or reply == SMFIR_CONTINUE,
        "end of message was not accepted (reply " .. tostring(reply) .. ")")
    return reply
end

-- Whether the milter added (or inserted) a field `name` at end of message.
function chmail_added(conn, name)
    return mt.eom_check(conn, MT_HDRADD, name) or mt.eom_check(conn, MT_HDRINSERT, name)
end

-- Whether the milter deleted a field `name` (a change to an empty value is a delete).
function chmail_deleted(conn, name)
    return mt.eom_check(conn, MT_HDRDELETE, name) or mt.eom_check(conn, MT_HDRCHANGE, name, "")
end

-- Whether the milter changed a field `name` in any way other than deleting it.
function chmail_changed(conn, name)
    return mt.eom_check(conn, MT_HDRCHANGE, name) and not chmail_deleted(conn, name)
end

-- Prints the value of the first added field `name` between BEGIN/END lines for the test to read.
function chmail_print_added(conn, name)
    local value = mt.getheader(conn, name, 0)
    if value == nil then
        value = mt.getheader(conn, name, 1)
    end
    assert(value ~= nil, "cannot read the added " .. name .. " field")
    print("BEGIN " .. name)
    print(value)
    print("END " .. name)
end
