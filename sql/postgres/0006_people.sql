-- CHmail store, migration 0006 (PostgreSQL): what a chat shows of its people and its start. A participant's
-- display name as the mail wrote it (`"Ana Lima" <ana@example.com>`, or the mall's member and
-- shop names), and the opening of the conversation: the start of the mail's text or the mall
-- question, shown as the first item of the chat. Both are optional: older rooms have neither.
ALTER TABLE room_participants ADD COLUMN name TEXT;
ALTER TABLE rooms ADD COLUMN opening TEXT;
