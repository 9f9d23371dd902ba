//! Look-ups for admins (part 50 of the method): a login, a port, a room. (Being built.)
