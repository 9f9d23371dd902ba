//! Sign-in for senders: magic links mailed to the login's address, and session cookies.
//! (Being built.)
