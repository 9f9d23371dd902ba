-- CHmail store, migration 0006 (PostgreSQL): what a chat shows: its people, its start and its pictures. A participant's
-- display name as the mail wrote it (`"Ana Lima" <ana@example.com>`, or the mall's member and
-- shop names), and the opening of the conversation: the start of the mail's text or the mall
-- question, shown as the first item of the chat. Both are optional: older rooms have neither.
ALTER TABLE room_participants ADD COLUMN name TEXT;
ALTER TABLE rooms ADD COLUMN opening TEXT;

-- Pictures sent in a chat: uploaded into a room first (checked by content and size), then
-- attached to the message that shows them. The bytes live here, served with their type.
CREATE TABLE chat_pictures (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id      TEXT   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    content_type TEXT   NOT NULL
        CHECK (content_type IN ('image/png', 'image/jpeg', 'image/gif', 'image/webp')),
    bytes        BYTEA  NOT NULL,
    created_ms   BIGINT NOT NULL
);
CREATE INDEX chat_pictures_room ON chat_pictures (room_id, id);
ALTER TABLE messages ADD COLUMN picture_id BIGINT REFERENCES chat_pictures (id) ON DELETE SET NULL;

-- A recipient's rooms (`rooms_of_recipient`: their chats on /me and in the mall's bar).
CREATE INDEX room_participants_address ON room_participants (address);
